// Helpers for tests that look inside the engine's shared region: its file, mapped
// directly, with the engine's own layout (src/engine/layout.hpp).
#ifndef PIPC_TESTS_ENGINE_SUPPORT_HPP
#define PIPC_TESTS_ENGINE_SUPPORT_HPP

#include "engine/layout.hpp"

#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <system_error>
#include <thread>

namespace pipc::test {

// The file that holds engine queue `name` ("/q" → /dev/shm/pipc.mq.q).
inline std::string object_path(const std::string& name) { return "/dev/shm/pipc.mq." + name.substr(1); }

// The whole file of a queue, mapped read-write, with the geometry it had when mapped.
class raw_region {
 public:
  explicit raw_region(const std::string& name) {
    fd_ = ::open(object_path(name).c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) throw std::system_error(errno, std::system_category(), "open " + object_path(name));
    struct ::stat st {};
    if (::fstat(fd_, &st) != 0) throw std::system_error(errno, std::system_category(), "fstat");
    size_ = static_cast<std::size_t>(st.st_size);
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::system_category(), "mmap");
    base_ = static_cast<std::byte*>(p);
    geo_ = engine::compute_geometry(hdr()->max_messages, hdr()->message_size);
  }
  raw_region(const raw_region&) = delete;
  raw_region& operator=(const raw_region&) = delete;
  ~raw_region() {
    ::munmap(base_, size_);
    ::close(fd_);
  }

  std::byte* base() const { return base_; }
  std::size_t size() const { return size_; }
  int fd() const { return fd_; }
  engine::header* hdr() const { return reinterpret_cast<engine::header*>(base_); }
  std::uint64_t* bitmap() const { return reinterpret_cast<std::uint64_t*>(base_ + geo_.bitmap_offset); }
  engine::list_ends* table() const { return reinterpret_cast<engine::list_ends*>(base_ + geo_.table_offset); }
  engine::slot_header* slot(std::uint32_t n) const {
    return reinterpret_cast<engine::slot_header*>(base_ + geo_.slots_offset + (n - 1) * geo_.slot_stride);
  }
  std::byte* payload(std::uint32_t n) const {
    return reinterpret_cast<std::byte*>(slot(n)) + sizeof(engine::slot_header);
  }
  const engine::geometry& geo() const { return geo_; }

  template <class T>
  void put(std::size_t offset, T value) const {
    std::memcpy(base_ + offset, &value, sizeof value);
  }
  template <class T>
  T get(std::size_t offset) const {
    T value{};
    std::memcpy(&value, base_ + offset, sizeof value);
    return value;
  }

  // The futex word of the queue's robust mutex (glibc: the mutex's first int). Bit
  // FUTEX_OWNER_DIED is set when its owner died holding it and nobody has taken it since.
  std::uint32_t lock_word() const {
    return __atomic_load_n(reinterpret_cast<const std::uint32_t*>(&hdr()->lock), __ATOMIC_SEQ_CST);
  }
  bool owner_died() const { return (lock_word() & FUTEX_OWNER_DIED) != 0; }

  // Makes the queue's robust mutex owner-dead, as if a process had died holding it: a
  // thread takes it through this mapping and exits without unlocking. The next locker
  // runs the engine's recovery.
  void kill_lock_holder() const {
    std::thread holder([this] { ::pthread_mutex_lock(&hdr()->lock); });
    holder.join();
  }

  // The highest priority whose bitmap bit is set, or -1.
  long top_priority() const {
    for (std::size_t w = engine::bitmap_words; w-- > 0;) {
      if (bitmap()[w] != 0) {
        return static_cast<long>(w * 64 + 63 - static_cast<std::size_t>(__builtin_clzll(bitmap()[w])));
      }
    }
    return -1;
  }

 private:
  int fd_ = -1;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  engine::geometry geo_{};
};

}  // namespace pipc::test

#endif  // PIPC_TESTS_ENGINE_SUPPORT_HPP
