// The system calls pipc makes, and nothing else.
//
// Every other layer reaches the operating system through these functions, so this
// file is the complete list of pipc's contact with the kernel and libc's IPC calls.
// Each function returns 0 or the errno value the call failed with (never -1 and a
// global), and never throws.
#ifndef PIPC_SRC_SYS_SYS_HPP
#define PIPC_SRC_SYS_SYS_HPP

#include <mqueue.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <cstddef>
#include <cstdint>

namespace pipc::sys {

// Descriptors and files.
int close(int fd) noexcept;
int fstat(int fd, struct ::stat& st) noexcept;
int ftruncate(int fd, std::size_t size) noexcept;
// Reads one integer from a text file such as /proc/sys/fs/mqueue/msg_max.
int read_long(const char* path, long& value) noexcept;
int get_rlimit(int resource, struct ::rlimit& limit) noexcept;

// Shared memory.
int shm_open(const char* name, int oflag, mode_t mode, int& fd) noexcept;
int shm_unlink(const char* name) noexcept;
int memfd_create(const char* label, int& fd) noexcept;
int mmap_shared(int fd, std::size_t length, std::size_t offset, bool writable, void*& addr) noexcept;
int munmap(void* addr, std::size_t length) noexcept;
std::size_t page_size() noexcept;

// Semaphores.
int sem_open(const char* name, int oflag, mode_t mode, unsigned value, sem_t*& sem) noexcept;
int sem_close(sem_t* sem) noexcept;
int sem_unlink(const char* name) noexcept;
int sem_init(sem_t* sem, bool shared, unsigned value) noexcept;
int sem_destroy(sem_t* sem) noexcept;
int sem_post(sem_t* sem) noexcept;
int sem_wait(sem_t* sem) noexcept;  // EINTR is returned, not retried
int sem_trywait(sem_t* sem) noexcept;
int sem_clockwait(sem_t* sem, clockid_t clock, const timespec& abs) noexcept;
int sem_getvalue(sem_t* sem, int& value) noexcept;

// Kernel message queues. A null `abs` blocks without a time limit.
int mq_open(const char* name, int oflag, mode_t mode, const mq_attr* attr, mqd_t& q) noexcept;
int mq_close(mqd_t q) noexcept;
int mq_unlink(const char* name) noexcept;
int mq_timedsend(mqd_t q, const void* data, std::size_t size, unsigned prio, const timespec* abs) noexcept;
int mq_timedreceive(mqd_t q, void* data, std::size_t capacity, unsigned& prio, const timespec* abs,
                    std::size_t& size) noexcept;
int mq_getattr(mqd_t q, mq_attr& attr) noexcept;
int mq_setattr(mqd_t q, const mq_attr& attr) noexcept;
int mq_notify(mqd_t q, const sigevent* sev) noexcept;

// Clocks.
std::int64_t now_ns(clockid_t clock) noexcept;
inline timespec to_timespec(std::int64_t ns) noexcept {
  if (ns < 0) return {0, 0};
  return {static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

}  // namespace pipc::sys

#endif  // PIPC_SRC_SYS_SYS_HPP
