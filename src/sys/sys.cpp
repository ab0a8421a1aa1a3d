#include "sys/sys.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace pipc::sys {
namespace {
// The errno of a call that reported failure with -1.
inline int result(int rc) noexcept { return rc == -1 ? errno : 0; }
}  // namespace

int close(int fd) noexcept {
  // Linux releases the descriptor even when close reports EINTR, so never retry.
  return result(::close(fd));
}

int fstat(int fd, struct ::stat& st) noexcept { return result(::fstat(fd, &st)); }

int ftruncate(int fd, std::size_t size) noexcept {
  if (size > static_cast<std::size_t>(INT64_MAX)) return EFBIG;
  int rc;
  do {
    rc = ::ftruncate(fd, static_cast<off_t>(size));
  } while (rc == -1 && errno == EINTR);
  return result(rc);
}

int read_long(const char* path, long& value) noexcept {
  std::FILE* f = std::fopen(path, "re");
  if (f == nullptr) return errno;
  int e = std::fscanf(f, "%ld", &value) == 1 ? 0 : EIO;
  std::fclose(f);
  return e;
}

int get_rlimit(int resource, struct ::rlimit& limit) noexcept {
  return result(::getrlimit(static_cast<__rlimit_resource_t>(resource), &limit));
}

int shm_open(const char* name, int oflag, mode_t mode, int& fd) noexcept {
  fd = ::shm_open(name, oflag | O_CLOEXEC, mode);
  return fd == -1 ? errno : 0;
}

int shm_unlink(const char* name) noexcept { return result(::shm_unlink(name)); }

int memfd_create(const char* label, int& fd) noexcept {
  fd = ::memfd_create(label, MFD_CLOEXEC);
  return fd == -1 ? errno : 0;
}

int mmap_shared(int fd, std::size_t length, std::size_t offset, bool writable, void*& addr) noexcept {
  int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  addr = ::mmap(nullptr, length, prot, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (addr == MAP_FAILED) {
    addr = nullptr;
    return errno;
  }
  return 0;
}

int munmap(void* addr, std::size_t length) noexcept { return result(::munmap(addr, length)); }

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

int sem_open(const char* name, int oflag, mode_t mode, unsigned value, sem_t*& sem) noexcept {
  sem = ::sem_open(name, oflag, mode, value);
  if (sem == SEM_FAILED) {
    sem = nullptr;
    return errno;
  }
  return 0;
}

int sem_close(sem_t* sem) noexcept { return result(::sem_close(sem)); }
int sem_unlink(const char* name) noexcept { return result(::sem_unlink(name)); }
int sem_init(sem_t* sem, bool shared, unsigned value) noexcept { return result(::sem_init(sem, shared ? 1 : 0, value)); }
int sem_destroy(sem_t* sem) noexcept { return result(::sem_destroy(sem)); }
int sem_post(sem_t* sem) noexcept { return result(::sem_post(sem)); }
int sem_wait(sem_t* sem) noexcept { return result(::sem_wait(sem)); }
int sem_trywait(sem_t* sem) noexcept { return result(::sem_trywait(sem)); }
int sem_clockwait(sem_t* sem, clockid_t clock, const timespec& abs) noexcept {
  return result(::sem_clockwait(sem, clock, &abs));
}
int sem_getvalue(sem_t* sem, int& value) noexcept { return result(::sem_getvalue(sem, &value)); }

int mq_open(const char* name, int oflag, mode_t mode, const mq_attr* attr, mqd_t& q) noexcept {
  // glibc's mq_open reads mode and attr only with O_CREAT; passing them always is safe.
  q = ::mq_open(name, oflag | O_CLOEXEC, mode, const_cast<mq_attr*>(attr));
  return q == static_cast<mqd_t>(-1) ? errno : 0;
}

int mq_close(mqd_t q) noexcept { return result(::mq_close(q)); }
int mq_unlink(const char* name) noexcept { return result(::mq_unlink(name)); }

int mq_timedsend(mqd_t q, const void* data, std::size_t size, unsigned prio, const timespec* abs) noexcept {
  return result(::mq_timedsend(q, static_cast<const char*>(data), size, prio, abs));
}

int mq_timedreceive(mqd_t q, void* data, std::size_t capacity, unsigned& prio, const timespec* abs,
                    std::size_t& size) noexcept {
  ssize_t n = ::mq_timedreceive(q, static_cast<char*>(data), capacity, &prio, abs);
  if (n < 0) return errno;
  size = static_cast<std::size_t>(n);
  return 0;
}

int mq_getattr(mqd_t q, mq_attr& attr) noexcept { return result(::mq_getattr(q, &attr)); }
int mq_setattr(mqd_t q, const mq_attr& attr) noexcept { return result(::mq_setattr(q, &attr, nullptr)); }
int mq_notify(mqd_t q, const sigevent* sev) noexcept { return result(::mq_notify(q, sev)); }

std::int64_t now_ns(clockid_t clock) noexcept {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace pipc::sys
