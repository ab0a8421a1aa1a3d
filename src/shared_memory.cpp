#include <pipc/shared_memory.hpp>

#include "error_util.hpp"
#include "sys/sys.hpp"

#include <fcntl.h>

#include <utility>

namespace pipc {

using detail::errno_code;

// ---- mapping ----

mapping::mapping(void* base, std::size_t base_length, std::size_t skip, std::size_t size, bool writable) noexcept
    : base_(base),
      base_length_(base_length),
      data_(static_cast<std::byte*>(base) + skip),
      size_(size),
      writable_(writable) {}

mapping::mapping(mapping&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      base_length_(std::exchange(other.base_length_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      writable_(std::exchange(other.writable_, false)) {}

mapping& mapping::operator=(mapping&& other) noexcept {
  if (this != &other) {
    reset();
    base_ = std::exchange(other.base_, nullptr);
    base_length_ = std::exchange(other.base_length_, 0);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    writable_ = std::exchange(other.writable_, false);
  }
  return *this;
}

mapping::~mapping() { reset(); }

void mapping::reset() noexcept {
  if (base_ != nullptr) {
    sys::munmap(base_, base_length_);
  }
  base_ = nullptr;
  base_length_ = 0;
  data_ = nullptr;
  size_ = 0;
  writable_ = false;
}

// ---- shared_memory ----

void shared_memory::fail(const char* op, std::error_code ec, std::string_view detail) const {
  if (name_.empty()) detail::throw_unnamed_error(ec, op, detail);  // anonymous memory
  detail::throw_error(ec, op, name_, name_kind::shared_memory, detail);
}

shared_memory::shared_memory(int fd, std::string name, access how) noexcept
    : fd_(fd), name_(std::move(name)), access_(how) {}

shared_memory::shared_memory(shared_memory&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), name_(std::move(other.name_)), access_(other.access_) {}

shared_memory& shared_memory::operator=(shared_memory&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    name_ = std::move(other.name_);
    access_ = other.access_;
  }
  return *this;
}

shared_memory::~shared_memory() { close(); }

void shared_memory::close() noexcept {
  if (fd_ >= 0) {
    sys::close(fd_);
    fd_ = -1;
  }
}

shared_memory shared_memory::open(std::string_view name, open_mode mode, access how, mode_t perms,
                                  std::error_code& ec) noexcept {
  ec = check_name(name, name_kind::shared_memory);
  if (ec) return {};
  if (how == access::write_only) {
    // mmap needs read access to a shared object; POSIX shm has no write-only open.
    ec = errno_code(EINVAL);
    return {};
  }
  int flags = how == access::read_only ? O_RDONLY : O_RDWR;
  if (mode == open_mode::create_only) flags |= O_CREAT | O_EXCL;
  if (mode == open_mode::open_or_create) flags |= O_CREAT;

  std::string owned(name);
  int fd = -1;
  ec = errno_code(sys::shm_open(owned.c_str(), flags, perms, fd));
  if (ec) return {};
  return shared_memory(fd, std::move(owned), how);
}

shared_memory shared_memory::open(std::string_view name, open_mode mode, access how, mode_t perms) {
  std::error_code ec;
  shared_memory shm = open(name, mode, how, perms, ec);
  if (ec) {
    std::string_view detail;
    if (how == access::write_only && ec == std::errc::invalid_argument && !check_name(name, name_kind::shared_memory)) {
      detail = "shared memory cannot be opened write-only";
    }
    detail::throw_error(ec, "shm_open", name, name_kind::shared_memory, detail);
  }
  return shm;
}

shared_memory shared_memory::anonymous(std::size_t size, std::error_code& ec) noexcept {
  int fd = -1;
  ec = errno_code(sys::memfd_create("pipc", fd));
  if (ec) return {};
  shared_memory shm(fd, std::string(), access::read_write);
  ec = errno_code(sys::ftruncate(fd, size));
  if (ec) return {};
  return shm;
}

shared_memory shared_memory::anonymous(std::size_t size) {
  std::error_code ec;
  shared_memory shm = anonymous(size, ec);
  if (ec) detail::throw_unnamed_error(ec, "memfd_create");
  return shm;
}

void shared_memory::unlink(std::string_view name, std::error_code& ec) noexcept {
  ec = check_name(name, name_kind::shared_memory);
  if (ec) return;
  ec = errno_code(sys::shm_unlink(std::string(name).c_str()));
}

void shared_memory::unlink(std::string_view name) {
  std::error_code ec;
  unlink(name, ec);
  if (ec) detail::throw_error(ec, "shm_unlink", name, name_kind::shared_memory);
}

std::size_t shared_memory::size(std::error_code& ec) const noexcept {
  struct ::stat st {};
  ec = errno_code(fd_ < 0 ? EBADF : sys::fstat(fd_, st));
  return ec ? 0 : static_cast<std::size_t>(st.st_size);
}

std::size_t shared_memory::size() const {
  std::error_code ec;
  std::size_t n = size(ec);
  if (ec) fail("fstat", ec);
  return n;
}

void shared_memory::resize(std::size_t size, std::error_code& ec) noexcept {
  ec = errno_code(fd_ < 0 ? EBADF : sys::ftruncate(fd_, size));
}

void shared_memory::resize(std::size_t size) {
  std::error_code ec;
  resize(size, ec);
  if (ec) fail("ftruncate", ec);
}

mapping shared_memory::map(access how, std::size_t offset, std::size_t length, std::error_code& ec) const noexcept {
  std::size_t total = size(ec);
  if (ec) return {};
  if (how == access::write_only) {
    ec = errno_code(EINVAL);
    return {};
  }
  bool writable = how == access::read_write;
  if (writable && access_ != access::read_write) {
    // mmap would say EACCES too; saying it here keeps the reason obvious.
    ec = errno_code(EACCES);
    return {};
  }
  if (offset > total || (length == 0 && offset == total)) {
    ec = errno_code(EINVAL);
    return {};
  }
  if (length == 0) length = total - offset;
  if (length > total - offset) {
    // Touching pages past the end of the object raises SIGBUS; refuse to map them.
    ec = errno_code(EINVAL);
    return {};
  }
  std::size_t skip = offset % sys::page_size();
  void* base = nullptr;
  ec = errno_code(sys::mmap_shared(fd_, length + skip, offset - skip, writable, base));
  if (ec) return {};
  return mapping(base, length + skip, skip, length, writable);
}

mapping shared_memory::map(access how, std::size_t offset, std::size_t length) const {
  std::error_code ec;
  mapping m = map(how, offset, length, ec);
  if (ec) {
    std::string detail;
    if (ec == std::errc::invalid_argument) {
      std::error_code ignored;
      detail = "cannot map " + std::to_string(length) + " bytes at offset " + std::to_string(offset) +
               " of an object of " + std::to_string(size(ignored)) + " bytes";
      std::size_t total = size(ignored);
      if (total == 0) detail = "the object is empty: resize() it before mapping";
      if (how == access::write_only) detail = "a mapping cannot be write-only";
    } else if (ec == std::errc::permission_denied && how == access::read_write && access_ != access::read_write) {
      detail = "the object was opened read-only";
    }
    fail("mmap", ec, detail);
  }
  return m;
}

}  // namespace pipc
