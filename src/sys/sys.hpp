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
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace pipc::sys {

// A spin-wait hint to the CPU (PAUSE on x86): no system call, but the one place that
// knows the instruction.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

// Cache hints for a line another CPU wrote or will read. Asm statements, not
// __builtin_prefetch: GCC 12 takes a function whose only effect is that builtin for a
// pure one and drops the calls to it. Each is a hint that never faults, and a CPU that
// lacks it runs it as a no-op (PREFETCHW before Broadwell, CLDEMOTE before Sapphire
// Rapids).
enum class line_hint {
  read,    // start loading the line for reading
  write,   // start taking the line for writing: an exclusive copy, so that the stores
           // to it do not each wait for other CPUs to drop theirs
  demote,  // move the line, just written, from this CPU's private caches toward the
           // cache all CPUs share, where another CPU's next read finds it sooner
           // (x86 CLDEMOTE; nothing elsewhere)
};

template <line_hint Hint>
inline void hint_line(const void* p) noexcept {
#if defined(__x86_64__) || defined(__i386__)
  const char& line = *static_cast<const char*>(p);
  if constexpr (Hint == line_hint::read) {
    asm volatile("prefetcht0 %0" : : "m"(line));
  } else if constexpr (Hint == line_hint::write) {
    asm volatile("prefetchw %0" : : "m"(line));
  } else {
    asm volatile("cldemote %0" : : "m"(line));
  }
#else
  if constexpr (Hint != line_hint::demote) __builtin_prefetch(p, Hint == line_hint::write ? 1 : 0, 3);
  asm volatile("" : : "r"(p));  // keeps the function from being taken for a pure one
#endif
}

// The same hint on `count` consecutive 64-byte lines from `p`.
template <line_hint Hint>
inline void hint_lines(const void* p, std::uint64_t count) noexcept {
  for (std::uint64_t i = 0; i < count; ++i) hint_line<Hint>(static_cast<const char*>(p) + 64 * i);
}

// Descriptors and files.
int close(int fd) noexcept;
int fstat(int fd, struct ::stat& st) noexcept;
int ftruncate(int fd, std::size_t size) noexcept;
// Reads exactly `size` bytes at `offset` (retrying short reads and EINTR); ENODATA if
// the file ends first.
int pread_exact(int fd, void* buffer, std::size_t size, std::size_t offset) noexcept;
// Writes exactly `size` bytes at `offset` (retrying short writes and EINTR).
int pwrite_exact(int fd, const void* buffer, std::size_t size, std::size_t offset) noexcept;
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

// Files in the shared memory filesystem (/dev/shm), for objects that must be created
// atomically: an unnamed file is built completely, then linked under its name.
const char* shm_directory() noexcept;
// An unnamed, read-write tmpfs file in shm_directory() (O_TMPFILE), with permission
// bits `mode` as open(2) applies them: less the umask, unless the directory has a
// default ACL, which then decides instead.
int shm_create_unnamed(mode_t mode, int& fd) noexcept;
int fchmod(int fd, mode_t mode) noexcept;
// Links the unnamed file `fd` as shm_directory()/leaf; EEXIST if the name is taken.
int shm_link(int fd, const char* leaf) noexcept;
// Opens shm_directory()/leaf read-write (no O_CREAT, never follows a symlink, never
// waits for a lease), and reads its status into `st` (fstat). The open is relative to a
// descriptor of the directory that the process keeps (opened at its first call, close-
// on-exec, opened again if the program closed it): docs/engine.md, "Creation, opening,
// unlinking".
int shm_open_file(const char* leaf, int& fd, struct ::stat& st) noexcept;
// The owner of shm_directory() (root): with protected_regular's rule, a file of the
// directory's owner is as trusted as one of the caller's own.
uid_t shm_directory_owner() noexcept;
int shm_unlink_file(const char* leaf) noexcept;
bool shm_file_exists(const char* leaf) noexcept;
// Reserves `size` bytes of memory for fd now (ENOSPC now, rather than SIGBUS later).
int fallocate(int fd, std::size_t size) noexcept;
// mmap MAP_SHARED of [0, length) read-write.
int mmap_rw(int fd, std::size_t length, void*& addr) noexcept;
// Fills in the page tables of a shared writable mapping now (MADV_POPULATE_WRITE,
// Linux 5.14), so that later accesses take no page faults. Returns 0 or errno (EINVAL
// on older kernels: the pages then fault in on first use, as usual).
int populate_write(void* addr, std::size_t length) noexcept;

// Futexes on shared (not process-private) words. futex_wait returns 0 when woken (or
// spuriously), EAGAIN if *word != expected, ETIMEDOUT, or EINTR. `abs_ns`, if not
// null, is an absolute time on `clock` (CLOCK_REALTIME or CLOCK_MONOTONIC).
// Not noexcept, though it throws nothing: an interruptible wait runs it with
// asynchronous cancellation enabled, and a cancellation unwinds out of it
// (sys/interrupt.hpp).
int futex_wait(const void* word, std::uint32_t expected, clockid_t clock, const std::int64_t* abs_ns);
// Wakes up to `count` sleepers of `word`; returns how many it woke.
int futex_wake(const void* word, int count) noexcept;

// Processes and signals.
// Queues `signo` to `pid` as a message queue notification: si_code SI_MESGQ, si_value
// `value`, si_pid and si_uid of the caller (what the kernel's mq_notify delivers).
int send_mesgq_signal(pid_t pid, int signo, std::uint64_t value) noexcept;
// Is `pid` a running process (not a zombie)?
bool process_exists(pid_t pid) noexcept;
// The start time of a process in clock ticks since boot (field 22 of /proc/PID/stat);
// 0 if the process does not exist. With the pid it names one process for good.
std::uint64_t process_start_time(pid_t pid) noexcept;
pid_t current_pid() noexcept;
// How many fork()s made this process from the first that called current_pid(): it
// changes in every forked child. A per-thread cache keyed by it is refreshed in a
// child; one keyed by the pid is not when the child has an ancestor's pid again.
std::uint64_t fork_generation() noexcept;
// The calling thread's id (gettid), cached per thread and refreshed in a forked child.
pid_t current_tid() noexcept;
// What /proc/TID/stat says of a thread: does it exist and run (not a zombie), and when
// did it start. A thread that exists but whose status cannot be read (/proc hidden by
// hidepid) is `unreadable`: it may be alive.
enum class thread_status { gone, alive, unreadable };
thread_status thread_state(pid_t tid, std::uint64_t& start_time) noexcept;
// Is /proc mounted and describing this process's PID namespace? (Cached per process.)
bool proc_available() noexcept;
// Does process `pid` map the file `dev`:`ino` (/proc/PID/maps)? `unknown` when its maps
// cannot be read (another user's process, hidepid).
enum class maps_answer { no, yes, unknown };
maps_answer process_maps_file(pid_t pid, dev_t dev, ino_t ino) noexcept;
// CPUs online when the process first asked (cached: it only tunes spinning).
int online_cpus() noexcept;
// The CPU the caller runs on now (glibc reads it from rseq: no system call).
std::uint32_t current_cpu() noexcept;
// How many more threads are runnable on the machine than it has CPUs online (0 when no
// more, or when it cannot tell)? From the running count in /proc/loadavg (three system
// calls, ~1.5 µs), read again only when the answer at hand is older than `max_age_ns`
// at `now` (CLOCK_MONOTONIC; the process keeps one answer). It only tunes spinning.
int runnable_beyond_cpus(std::int64_t max_age_ns, std::int64_t now) noexcept;
// Is any more thread runnable than there are CPUs? (runnable_beyond_cpus, with an
// answer at most a millisecond old.)
bool cpus_oversubscribed() noexcept;
// For tests: make runnable_beyond_cpus() answer `excess` (≥ 0), or look again (-1).
void override_cpus_oversubscribed(int excess) noexcept;
// The calling thread's time on a CPU and time runnable but waiting for one, since it
// started (ns; /proc/thread-self/schedstat, three system calls, ~2 µs). False when it
// cannot tell. It only tunes spinning.
struct thread_cpu_times {
  std::int64_t ran_ns = 0;
  std::int64_t waited_ns = 0;
};
bool read_thread_cpu_times(thread_cpu_times& out) noexcept;
// For tests: make read_thread_cpu_times() answer through `fake`, or read again (null).
void override_thread_cpu_times(bool (*fake)(thread_cpu_times&)) noexcept;
std::uint64_t random64() noexcept;
// The credentials that file access checks use.
uid_t effective_uid() noexcept;
bool in_group(gid_t gid) noexcept;

// eventfd: a counter that polls readable when non-zero and writable below 2^64-2.
int eventfd_create(int& fd, unsigned initial = 0) noexcept;
// Sets the counter to `value` (0 … 2^64-2).
void eventfd_set(int fd, std::uint64_t value) noexcept;
// Is `fd` open on the kernel's anonymous inode, as every eventfd is (and epoll,
// timerfd and signalfd descriptors too)?
bool is_anonymous_inode(int fd) noexcept;
// A close-on-exec duplicate of `fd`, numbered `at_least` or above.
int dup_cloexec(int fd, int& out, int at_least = 0) noexcept;
// Makes descriptor `target` a close-on-exec duplicate of `fd`, closing what `target`
// was (dup3: one atomic step).
int dup_onto(int fd, int target) noexcept;

// The process barrier (membarrier(2), MEMBARRIER_CMD_PRIVATE_EXPEDITED): when
// process_barrier() returns, every other thread of the process has passed a full memory
// barrier since it was called, so a thread's plain stores before that point are seen
// by the caller and its loads after it see the caller's stores before the call. The
// other side of an asymmetric fence: its threads need only a compiler barrier.
// process_barrier_register() registers the process, once (a child of fork, which has
// an address space of its own, registers again as it starts): true if
// process_barrier() works in this process.
bool process_barrier_register() noexcept;
namespace detail {
extern std::atomic<bool> process_barrier_ok;
}  // namespace detail
// Has this process registered? One load, for the C API's every call.
inline bool process_barrier_registered() noexcept {
  return detail::process_barrier_ok.load(std::memory_order_acquire);
}
void process_barrier() noexcept;

// Threads.
// Starts a helper thread with every signal blocked except SIGBUS, SIGSEGV, SIGILL and
// SIGFPE (the faults a thread raises itself; see sys/fault_guard.hpp).
int thread_start(void* (*body)(void*), void* arg, pthread_t& thread) noexcept;
void thread_join(pthread_t thread) noexcept;

// Clocks.
std::int64_t now_ns(clockid_t clock) noexcept;
inline timespec to_timespec(std::int64_t ns) noexcept {
  if (ns < 0) return {0, 0};
  return {static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

}  // namespace pipc::sys

#endif  // PIPC_SRC_SYS_SYS_HPP
