// POSIX shared memory objects (shm_open) and their mappings.
//
// A shared_memory is an open descriptor of a named object in /dev/shm, or of an
// anonymous object (memfd) that related processes inherit across fork. A new named
// object has size 0 until resize() gives it one; map() returns a move-only mapping
// that unmaps itself.
//
// Thread safety: distinct objects may be used from different threads; one object is
// not synchronised (like a file descriptor you share, serialise its use yourself).
// The mapped bytes are shared with every process that maps the object: coordinate
// access to them (a semaphore, atomics).
#ifndef PIPC_SHARED_MEMORY_HPP
#define PIPC_SHARED_MEMORY_HPP

#include <pipc/common.hpp>
#include <pipc/export.hpp>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

namespace pipc {

// A mapped range of a shared memory object. Move-only; unmaps on destruction.
class PIPC_EXPORT mapping {
 public:
  mapping() noexcept = default;
  mapping(mapping&& other) noexcept;
  mapping& operator=(mapping&& other) noexcept;
  mapping(const mapping&) = delete;
  mapping& operator=(const mapping&) = delete;
  ~mapping();

  std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::span<std::byte> bytes() const noexcept { return {data_, size_}; }
  bool writable() const noexcept { return writable_; }
  explicit operator bool() const noexcept { return data_ != nullptr; }

  // Unmaps now; the mapping becomes empty.
  void reset() noexcept;

 private:
  friend class shared_memory;
  mapping(void* base, std::size_t base_length, std::size_t skip, std::size_t size, bool writable) noexcept;

  void* base_ = nullptr;         // what mmap returned (page aligned)
  std::size_t base_length_ = 0;  // what munmap needs
  std::byte* data_ = nullptr;    // base_ + the offset's distance from its page
  std::size_t size_ = 0;
  bool writable_ = false;
};

class PIPC_EXPORT shared_memory {
 public:
  shared_memory() noexcept = default;
  shared_memory(shared_memory&& other) noexcept;
  shared_memory& operator=(shared_memory&& other) noexcept;
  shared_memory(const shared_memory&) = delete;
  shared_memory& operator=(const shared_memory&) = delete;
  ~shared_memory();

  // Opens or creates the named object `name` ("/name"). `how` is read_only or
  // read_write; `perms` (less the umask) applies when the call creates the object.
  static shared_memory open(std::string_view name, open_mode mode, access how = access::read_write,
                            mode_t perms = default_permissions);
  static shared_memory open(std::string_view name, open_mode mode, access how, mode_t perms,
                            std::error_code& ec) noexcept;

  // A new anonymous object of `size` bytes (memfd_create). It has no name; a child
  // created by fork inherits it, and so can map it too.
  static shared_memory anonymous(std::size_t size);
  static shared_memory anonymous(std::size_t size, std::error_code& ec) noexcept;

  // Removes the name; processes that have the object open or mapped keep it.
  static void unlink(std::string_view name);
  static void unlink(std::string_view name, std::error_code& ec) noexcept;

  // The object's current size in bytes.
  std::size_t size() const;
  std::size_t size(std::error_code& ec) const noexcept;

  // Sets the size (ftruncate): growth reads as zeros; shrinking discards the tail.
  // Requires: opened read_write.
  void resize(std::size_t size);
  void resize(std::size_t size, std::error_code& ec) noexcept;

  // Maps `length` bytes from `offset` (any offset; pipc aligns it to the page for
  // mmap). length 0 means "to the end of the object". read_write requires the object
  // to be open read_write. The range must lie within the object's size (EINVAL).
  mapping map(access how = access::read_write, std::size_t offset = 0, std::size_t length = 0) const;
  mapping map(access how, std::size_t offset, std::size_t length, std::error_code& ec) const noexcept;

  // Closes the descriptor now (mappings stay valid). Idempotent.
  void close() noexcept;

  // The name this object was opened with ("" for anonymous objects).
  const std::string& name() const noexcept { return name_; }
  // The file descriptor, for fstat, fchmod, sendmsg(SCM_RIGHTS)...; -1 when closed.
  int native_handle() const noexcept { return fd_; }
  bool is_open() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return is_open(); }

 private:
  shared_memory(int fd, std::string name, access how) noexcept;
  [[noreturn]] void fail(const char* op, std::error_code ec, std::string_view detail = {}) const;

  int fd_ = -1;
  std::string name_;
  access access_ = access::read_only;
};

}  // namespace pipc

#endif  // PIPC_SHARED_MEMORY_HPP
