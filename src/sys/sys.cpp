#include "sys/sys.hpp"

#include <fcntl.h>
#include <sched.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

namespace pipc::sys {
namespace {
// The errno of a call that reported failure with -1.
inline int result(int rc) noexcept { return rc == -1 ? errno : 0; }

// Held around the C library calls that are cancellation points (open, read, close,
// fopen...): pipc's functions are noexcept, and a cancellation must act only where the
// C API makes one (sys/interrupt.hpp), never by unwinding out of a /proc read.
class no_cancel {
 public:
  no_cancel() noexcept { ::pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &previous_); }
  no_cancel(const no_cancel&) = delete;
  no_cancel& operator=(const no_cancel&) = delete;
  ~no_cancel() { ::pthread_setcancelstate(previous_, nullptr); }

 private:
  int previous_ = PTHREAD_CANCEL_ENABLE;
};
}  // namespace

// The calls that an open and a close of a queue make use raw system calls where the C
// library's wrapper would be a cancellation point (open, pread, close): a raw system
// call never is, so it needs no no_cancel guard, whose two pthread_setcancelstate calls
// cost about 20 ns per call here (docs/engine.md, "Creation, opening, unlinking").
namespace {
inline int raw_result(long rc) noexcept { return rc == -1 ? errno : 0; }
}  // namespace

int close(int fd) noexcept {
  // Linux releases the descriptor even when close reports EINTR, so never retry.
  return raw_result(::syscall(SYS_close, fd));
}

int fstat(int fd, struct ::stat& st) noexcept {
#if defined(__x86_64__)
  // The fstat system call itself: the C library's fstat is fstatat(fd, "",
  // AT_EMPTY_PATH), whose empty path the kernel must read first (15 ns of an open's
  // three calls here). On x86-64 the kernel's struct stat is the C library's.
  return raw_result(::syscall(SYS_fstat, fd, &st));
#else
  return result(::fstat(fd, &st));
#endif
}

int ftruncate(int fd, std::size_t size) noexcept {
  if (size > static_cast<std::size_t>(INT64_MAX)) return EFBIG;
  int rc;
  do {
    rc = ::ftruncate(fd, static_cast<off_t>(size));
  } while (rc == -1 && errno == EINTR);
  return result(rc);
}

int read_long(const char* path, long& value) noexcept {
  no_cancel guard;
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
  no_cancel guard;
  fd = ::shm_open(name, oflag | O_CLOEXEC, mode);
  return fd == -1 ? errno : 0;
}

int shm_unlink(const char* name) noexcept { return result(::shm_unlink(name)); }

int memfd_create(const char* label, int& fd) noexcept {
  fd = ::memfd_create(label, MFD_CLOEXEC);
  return fd == -1 ? errno : 0;
}

namespace {
// Moves `size` bytes with `io(done)`, a pread or pwrite of the part from byte `done`
// on, retrying short transfers and EINTR; `at_end` when a call moves nothing.
// (Raw system calls: no cancellation point, so no no_cancel guard.)
template <class Io>
int transfer_exact(std::size_t size, int at_end, Io io) noexcept {
  for (std::size_t done = 0; done < size;) {
    ssize_t n = io(done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return at_end;
    done += static_cast<std::size_t>(n);
  }
  return 0;
}
}  // namespace

int pread_exact(int fd, void* buffer, std::size_t size, std::size_t offset) noexcept {
  return transfer_exact(size, ENODATA, [&](std::size_t done) {
    return ::syscall(SYS_pread64, fd, static_cast<char*>(buffer) + done, size - done, static_cast<off_t>(offset + done));
  });
}

int pwrite_exact(int fd, const void* buffer, std::size_t size, std::size_t offset) noexcept {
  return transfer_exact(size, EIO, [&](std::size_t done) {
    return ::syscall(SYS_pwrite64, fd, static_cast<const char*>(buffer) + done, size - done,
                     static_cast<off_t>(offset + done));
  });
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

// glibc declares the buffer and the timeout of mq_timed* non-null: a blocking call goes
// to the untimed function, and an empty message gets a valid (unused) address.
int mq_timedsend(mqd_t q, const void* data, std::size_t size, unsigned prio, const timespec* abs) noexcept {
  static const char empty = 0;
  const char* bytes = data != nullptr ? static_cast<const char*>(data) : &empty;
  return result(abs != nullptr ? ::mq_timedsend(q, bytes, size, prio, abs) : ::mq_send(q, bytes, size, prio));
}

int mq_timedreceive(mqd_t q, void* data, std::size_t capacity, unsigned& prio, const timespec* abs,
                    std::size_t& size) noexcept {
  char empty = 0;
  char* bytes = data != nullptr ? static_cast<char*>(data) : &empty;
  ssize_t n = abs != nullptr ? ::mq_timedreceive(q, bytes, capacity, &prio, abs) : ::mq_receive(q, bytes, capacity, &prio);
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

// ---- engine support ----

namespace {
constexpr std::string_view shm_dir = "/dev/shm";
}  // namespace

const char* shm_directory() noexcept { return shm_dir.data(); }

int shm_create_unnamed(mode_t mode, int& fd) noexcept {
  no_cancel guard;
  fd = ::open(shm_directory(), O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
  return fd == -1 ? errno : 0;
}

int fchmod(int fd, mode_t mode) noexcept { return result(::fchmod(fd, mode)); }

int shm_link(int fd, const char* leaf) noexcept {
  // Linking the descriptor itself (AT_EMPTY_PATH) skips a walk through /proc; Linux
  // allows it without CAP_DAC_READ_SEARCH since 6.10 for a file the caller opened, and
  // says ENOENT before that. Then /proc/self/fd, which every version links. (A kernel
  // that said no once is not asked again.)
  static std::atomic<bool> empty_path_refused{false};
  std::string to = std::string(shm_directory()) + "/" + leaf;
  if (!empty_path_refused.load(std::memory_order_relaxed)) {
    if (::linkat(fd, "", AT_FDCWD, to.c_str(), AT_EMPTY_PATH) == 0) return 0;
    if (errno != ENOENT && errno != EPERM && errno != EINVAL) return errno;
    empty_path_refused.store(true, std::memory_order_relaxed);
  }
  char from[64];
  std::snprintf(from, sizeof from, "/proc/self/fd/%d", fd);
  return result(::linkat(AT_FDCWD, from, AT_FDCWD, to.c_str(), AT_SYMLINK_FOLLOW));
}

namespace {
// The flags of every open of a queue file by name. O_NOFOLLOW: a symlink planted at the
// name is ELOOP, never followed. O_NONBLOCK: a lease another user holds on the file
// fails the open (EWOULDBLOCK) instead of stalling it until the lease breaks, and a
// FIFO planted there opens at once (and is then refused as not a queue); it does not
// change how a regular file is used.
constexpr int shm_open_flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;

// shm_directory(), opened once per process (O_PATH), and its device: an open relative
// to it walks one component instead of "/", "dev", "shm" and a mount crossing, about
// 0.1 µs of an open's 1 µs here. -1: not open (yet, or any more). The descriptor is
// never closed by pipc; if the program closes it (or its number comes to name another
// file), shm_open_file notices and opens the directory again.
std::atomic<int> shm_dir_fd{-1};
std::atomic<dev_t> shm_dir_dev{0};
std::atomic<ino_t> shm_dir_ino{0};

// Opens `path` (relative to `dir`) with `flags`: 0, or the errno with `fd` -1. A raw
// openat: no cancellation point (above).
int raw_openat(int dir, const char* path, int flags, int& fd) noexcept {
  fd = static_cast<int>(::syscall(SYS_openat, dir, path, flags));
  return fd == -1 ? errno : 0;
}

// Reads the status of `fd`, which it closes (setting `fd` to -1) if that fails.
int stat_or_close(int& fd, struct ::stat& st) noexcept {
  if (int e = fstat(fd, st); e != 0) {
    close(fd);
    fd = -1;
    return e;
  }
  return 0;
}

// Opens `path` (relative to `dir`) with `flags` and reads its status: 0, or the errno
// with `fd` -1.
int open_and_stat(int dir, const char* path, int flags, int& fd, struct ::stat& st) noexcept {
  if (int e = raw_openat(dir, path, flags, fd); e != 0) return e;
  return stat_or_close(fd, st);
}

// The directory's descriptor, opened now if need be; -1 if it cannot be opened.
int shm_dir_handle() noexcept {
  int fd = shm_dir_fd.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  int fresh = -1;
  struct ::stat st {};
  if (open_and_stat(AT_FDCWD, shm_directory(), O_PATH | O_DIRECTORY | O_CLOEXEC, fresh, st) != 0) return -1;
  shm_dir_dev.store(st.st_dev, std::memory_order_relaxed);
  shm_dir_ino.store(st.st_ino, std::memory_order_relaxed);
  if (!shm_dir_fd.compare_exchange_strong(fd, fresh, std::memory_order_acq_rel)) {
    close(fresh);  // another thread's is as good
    return fd;
  }
  return fresh;
}

// Is `fd` still the directory pipc opened? (A system call: for the rare paths only.)
bool still_shm_dir(int fd) noexcept {
  struct ::stat st {};
  return fstat(fd, st) == 0 && st.st_dev == shm_dir_dev.load(std::memory_order_relaxed) &&
         st.st_ino == shm_dir_ino.load(std::memory_order_relaxed);
}

// Forgets `fd` as the directory's descriptor (not closing it: its number may be the
// program's now).
void forget_shm_dir(int fd) noexcept { shm_dir_fd.compare_exchange_strong(fd, -1, std::memory_order_acq_rel); }

// Opens shm_directory()/leaf by its full path and reads its status (when the
// directory's descriptor cannot be used).
int shm_open_by_path(const char* leaf, int& fd, struct ::stat& st) noexcept {
  // The path in a buffer of this frame, not a std::string (an allocation per open).
  char path[shm_dir.size() + 1 + NAME_MAX + 1];
  const std::size_t length = std::strlen(leaf);
  if (length > NAME_MAX) return ENAMETOOLONG;
  std::memcpy(path, shm_dir.data(), shm_dir.size());
  path[shm_dir.size()] = '/';
  std::memcpy(path + shm_dir.size() + 1, leaf, length + 1);
  return open_and_stat(AT_FDCWD, path, shm_open_flags, fd, st);
}
}  // namespace

int shm_open_file(const char* leaf, int& fd, struct ::stat& st) noexcept {
  const int dir = std::strchr(leaf, '/') == nullptr ? shm_dir_handle() : -1;
  if (dir < 0) return shm_open_by_path(leaf, fd, st);
  if (int e = raw_openat(dir, leaf, shm_open_flags, fd); e != 0) {
    // The program may have closed the directory's descriptor behind pipc's back (EBADF,
    // ENOTDIR) and reused its number for another directory (any error, ENOENT most
    // likely): an error is believed only from the directory itself.
    if (e != EBADF && e != ENOTDIR && still_shm_dir(dir)) return e;
    forget_shm_dir(dir);
    return shm_open_by_path(leaf, fd, st);
  }
  if (int e = stat_or_close(fd, st); e != 0) return e;
  // A file on another file system than the directory's: the number is no longer
  // pipc's descriptor of the directory (closed, and reused for another directory), or
  // the directory was on a file system since unmounted. Open by the path instead.
  if (st.st_dev != shm_dir_dev.load(std::memory_order_relaxed)) {
    close(fd);
    forget_shm_dir(dir);
    return shm_open_by_path(leaf, fd, st);
  }
  return 0;
}

uid_t shm_directory_owner() noexcept {
  static const uid_t owner = [] {
    struct ::stat st {};
    return ::stat(shm_directory(), &st) == 0 ? st.st_uid : uid_t{0};
  }();
  return owner;
}

int shm_unlink_file(const char* leaf) noexcept {
  std::string path = std::string(shm_directory()) + "/" + leaf;
  return result(::unlink(path.c_str()));
}

bool shm_file_exists(const char* leaf) noexcept {
  std::string path = std::string(shm_directory()) + "/" + leaf;
  struct ::stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

int fallocate(int fd, std::size_t size) noexcept {
  // posix_fallocate returns the error rather than setting errno.
  return ::posix_fallocate(fd, 0, static_cast<off_t>(size));
}

int mmap_rw(int fd, std::size_t length, void*& addr) noexcept { return mmap_shared(fd, length, 0, true, addr); }

int populate_write(void* addr, std::size_t length) noexcept {
#ifdef MADV_POPULATE_WRITE
  return result(::madvise(addr, length, MADV_POPULATE_WRITE));
#else
  (void)addr;
  (void)length;
  return EINVAL;
#endif
}

int futex_wait(const void* word, std::uint32_t expected, clockid_t clock, const std::int64_t* abs_ns) {
  timespec ts{};
  int op = FUTEX_WAIT_BITSET;
  if (abs_ns != nullptr) {
    ts = to_timespec(*abs_ns);
    if (clock == CLOCK_REALTIME) op |= FUTEX_CLOCK_REALTIME;
  }
  long rc = ::syscall(SYS_futex, word, op, expected, abs_ns != nullptr ? &ts : nullptr, nullptr,
                      FUTEX_BITSET_MATCH_ANY);
  return rc == -1 ? errno : 0;
}

int futex_wake(const void* word, int count) noexcept {
  const long woken = ::syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
  return woken > 0 ? static_cast<int>(woken) : 0;
}

int send_mesgq_signal(pid_t pid, int signo, std::uint64_t value) noexcept {
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  info.si_signo = signo;
  info.si_code = SI_MESGQ;  // negative codes may be sent to other processes
  info.si_pid = current_pid();
  info.si_uid = ::getuid();
  info.si_value.sival_ptr = reinterpret_cast<void*>(static_cast<std::uintptr_t>(value));  // sival_int: the low half
  return result(static_cast<int>(::syscall(SYS_rt_sigqueueinfo, pid, signo, &info)));
}

namespace {
// Reads /proc/PID/stat: the state letter (field 3) and the start time (field 22).
bool read_stat(pid_t pid, char& state, std::uint64_t& start_time) noexcept {
  no_cancel guard;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd == -1) return false;
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  // The command name (field 2) may contain spaces and parentheses: count fields from
  // the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return false;
  state = p[2];
  int field = 2;
  while (*p != '\0' && field < 22) {
    if (*p++ == ' ') ++field;
  }
  start_time = std::strtoull(p, nullptr, 10);
  return true;
}
}  // namespace

bool process_exists(pid_t pid) noexcept {
  // A zombie has closed everything it had: it no longer holds anything.
  std::uint64_t start = 0;
  return thread_state(pid, start) != thread_status::gone;
}

std::uint64_t process_start_time(pid_t pid) noexcept {
  char state = 0;
  std::uint64_t start = 0;
  return read_stat(pid, state, start) ? start : 0;
}

namespace {
// getpid is a real system call in glibc (and a slow one on some VMs), and the engine
// needs the pid on every send and receive: cache it, and refresh it in a forked child.
std::atomic<pid_t> cached_pid{0};
std::atomic<std::uint64_t> forks{1};  // fork_generation(); thread caches start at 0
void refresh_pid() noexcept { cached_pid.store(::getpid(), std::memory_order_relaxed); }
void in_forked_child() noexcept {
  refresh_pid();
  forks.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

pid_t current_pid() noexcept {
  pid_t pid = cached_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    static const int registered = ::pthread_atfork(nullptr, nullptr, in_forked_child);
    (void)registered;
    refresh_pid();
    pid = cached_pid.load(std::memory_order_relaxed);
  }
  return pid;
}

std::uint64_t fork_generation() noexcept {
  (void)current_pid();  // registers the fork handler that counts
  return forks.load(std::memory_order_relaxed);
}

pid_t current_tid() noexcept {
  // Keyed by fork generation: after fork the child's only thread has a new id, but the
  // same thread_local values as the thread that forked. (Not by pid: a child may get
  // the pid of an ancestor whose thread filled the cache.)
  thread_local std::uint64_t cached_for = 0;
  thread_local pid_t tid = 0;
  const std::uint64_t generation = fork_generation();
  if (cached_for != generation) {
    tid = static_cast<pid_t>(::syscall(SYS_gettid));
    cached_for = generation;
  }
  return tid;
}

thread_status thread_state(pid_t tid, std::uint64_t& start_time) noexcept {
  start_time = 0;
  // kill() accepts any thread's id; ESRCH means no such thread (EPERM: it exists).
  if (tid <= 0 || (::kill(tid, 0) != 0 && errno == ESRCH)) return thread_status::gone;
  char state = 0;
  if (!read_stat(tid, state, start_time)) {
    // It existed a moment ago: gone now, or hidden from us.
    return ::kill(tid, 0) != 0 && errno == ESRCH ? thread_status::gone : thread_status::unreadable;
  }
  return state == 'Z' || state == 'X' ? thread_status::gone : thread_status::alive;
}

bool proc_available() noexcept {
  // Keyed by fork generation, like the thread caches, so that a forked child (perhaps
  // in a new mount namespace) looks again.
  static std::atomic<std::uint64_t> checked_for{0};
  static std::atomic<bool> available{false};
  const std::uint64_t generation = fork_generation();
  if (checked_for.load(std::memory_order_acquire) != generation) {
    char state = 0;
    std::uint64_t start = 0;
    available.store(read_stat(current_pid(), state, start) && start != 0, std::memory_order_relaxed);
    checked_for.store(generation, std::memory_order_release);
  }
  return available.load(std::memory_order_relaxed);
}

maps_answer process_maps_file(pid_t pid, dev_t dev, ino_t ino) noexcept {
  no_cancel guard;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/maps", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd == -1) return errno == ENOENT || errno == ESRCH ? maps_answer::no : maps_answer::unknown;
  // Lines are "start-end perms offset MAJ:MIN inode [path]"; read in blocks, carrying a
  // partial line over. Lines longer than the buffer (very long paths) are skipped.
  char buf[8192];
  std::size_t have = 0;
  maps_answer answer = maps_answer::no;
  bool readable = false;
  for (;;) {
    ssize_t n = ::read(fd, buf + have, sizeof buf - 1 - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (n > 0) readable = true;
    have += static_cast<std::size_t>(n);
    buf[have] = '\0';
    char* line = buf;
    char* end = nullptr;
    while ((end = std::strchr(line, '\n')) != nullptr) {
      *end = '\0';
      // Skip the address range, the permissions and the offset.
      char* p = line;
      for (int field = 0; field < 3 && p != nullptr; ++field) {
        p = std::strchr(p, ' ');
        if (p != nullptr) ++p;
      }
      if (p != nullptr) {
        char* after = nullptr;
        unsigned long maj = std::strtoul(p, &after, 16);
        if (after != nullptr && *after == ':') {
          unsigned long min = std::strtoul(after + 1, &after, 16);
          unsigned long long inode = std::strtoull(after, nullptr, 10);
          if (maj == major(dev) && min == minor(dev) && inode == static_cast<unsigned long long>(ino)) {
            answer = maps_answer::yes;
          }
        }
      }
      line = end + 1;
    }
    if (answer == maps_answer::yes || n == 0) break;
    have = static_cast<std::size_t>(buf + have - line);
    if (have == sizeof buf - 1) have = 0;  // one line fills the buffer: drop it
    std::memmove(buf, line, have);
  }
  ::close(fd);
  // Another user's maps open but read as empty (the kernel's ptrace check at read time).
  if (answer == maps_answer::no && !readable) return maps_answer::unknown;
  return answer;
}

int online_cpus() noexcept {
  // glibc reads /sys/devices/system/cpu/online for it (three system calls, ~2 µs, at
  // every queue open): read once per process. It only decides whether spinning pays.
  static const int cpus = [] {
    long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : static_cast<int>(n);
  }();
  return cpus;
}

namespace {
std::atomic<int> oversubscribed_override{-1};
}  // namespace

void override_cpus_oversubscribed(int excess) noexcept { oversubscribed_override.store(excess); }

bool cpus_oversubscribed() noexcept { return runnable_beyond_cpus(1'000'000, now_ns(CLOCK_MONOTONIC)) > 0; }

namespace {
// Reads the small /proc file `path` into `buf` (`size` bytes, NUL-terminated): true if
// it read something. Not a cancellation point.
bool read_small_proc_file(const char* path, char* buf, std::size_t size) noexcept {
  no_cancel guard;
  ssize_t n = -1;
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    n = ::read(fd, buf, size - 1);
    ::close(fd);
  }
  if (n <= 0) return false;
  buf[n] = '\0';
  return true;
}
}  // namespace

int runnable_beyond_cpus(std::int64_t max_age_ns, std::int64_t now) noexcept {
  if (const int excess = oversubscribed_override.load(std::memory_order_relaxed); excess >= 0) return excess;
  static std::atomic<std::int64_t> sampled_at{0};
  static std::atomic<int> answer{0};
  std::int64_t last = sampled_at.load(std::memory_order_relaxed);
  if (now - last < max_age_ns || !sampled_at.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
    return answer.load(std::memory_order_relaxed);
  }
  // "0.52 0.58 0.59 3/219 12345": the fourth field is runnable/total scheduling entities.
  char buf[128];
  long running = 0;
  if (read_small_proc_file("/proc/loadavg", buf, sizeof buf)) {
    const char* slash = std::strchr(buf, '/');
    const char* p = slash;
    while (p != nullptr && p > buf && p[-1] >= '0' && p[-1] <= '9') --p;
    if (p != nullptr && p != slash) running = std::strtol(p, nullptr, 10);
  }
  const int excess = static_cast<int>(std::clamp<long>(running - online_cpus(), 0, 1 << 20));
  answer.store(excess, std::memory_order_relaxed);
  return excess;
}

namespace {
std::atomic<bool (*)(thread_cpu_times&)> thread_cpu_times_override{nullptr};
}  // namespace

void override_thread_cpu_times(bool (*fake)(thread_cpu_times&)) noexcept {
  thread_cpu_times_override.store(fake, std::memory_order_relaxed);
}

bool read_thread_cpu_times(thread_cpu_times& out) noexcept {
  if (auto* fake = thread_cpu_times_override.load(std::memory_order_relaxed); fake != nullptr) return fake(out);
  // "104676066 221933 70": time on a CPU, time runnable and waiting, timeslices.
  char buf[96];
  if (!read_small_proc_file("/proc/thread-self/schedstat", buf, sizeof buf)) return false;
  char* end = nullptr;
  const long long ran = std::strtoll(buf, &end, 10);
  if (end == buf) return false;
  char* end2 = nullptr;
  const long long waited = std::strtoll(end, &end2, 10);
  if (end2 == end || ran < 0 || waited < 0) return false;
  out = {static_cast<std::int64_t>(ran), static_cast<std::int64_t>(waited)};
  return true;
}

std::uint32_t current_cpu() noexcept {
  int cpu = ::sched_getcpu();
  return cpu < 0 ? 0 : static_cast<std::uint32_t>(cpu);
}

std::uint64_t random64() noexcept {
  std::uint64_t v = 0;
  if (::getrandom(&v, sizeof v, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof v)) {
    v = static_cast<std::uint64_t>(now_ns(CLOCK_MONOTONIC)) ^ (static_cast<std::uint64_t>(::getpid()) << 32);
  }
  return v;
}

uid_t effective_uid() noexcept { return ::geteuid(); }

bool in_group(gid_t gid) noexcept {
  if (::getegid() == gid) return true;
  gid_t groups[NGROUPS_MAX];
  int n = ::getgroups(NGROUPS_MAX, groups);
  for (int i = 0; i < n; ++i) {
    if (groups[i] == gid) return true;
  }
  return false;
}

bool is_anonymous_inode(int fd) noexcept {
  // Every eventfd (and epoll, timerfd, signalfd...) is a file of the kernel's one
  // anonymous inode; one fstat tells (a readlink of /proc/self/fd/N, which would name
  // the kind, costs six times as much).
  static const std::pair<dev_t, ino_t> anonymous = [] {
    std::pair<dev_t, ino_t> id{0, 0};
    int probe = ::eventfd(0, EFD_CLOEXEC);
    struct ::stat st {};
    if (probe >= 0 && ::fstat(probe, &st) == 0) id = {st.st_dev, st.st_ino};
    if (probe >= 0) ::close(probe);
    return id;
  }();
  struct ::stat st {};
  return ::fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == 0 && st.st_dev == anonymous.first &&
         st.st_ino == anonymous.second;
}

int dup_cloexec(int fd, int& out, int at_least) noexcept {
  out = ::fcntl(fd, F_DUPFD_CLOEXEC, at_least);
  return out == -1 ? errno : 0;
}

int dup_onto(int fd, int target) noexcept { return result(::dup3(fd, target, O_CLOEXEC)); }

namespace detail {
std::atomic<bool> process_barrier_ok{false};
}  // namespace detail

namespace {
bool register_process_barrier() noexcept {
  return ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}
}  // namespace

bool process_barrier_register() noexcept {
  static const bool registered = [] {
    const bool ok = register_process_barrier();
    // A child of fork has an address space of its own, which must register anew before
    // any of its threads relies on the barrier: the child handler runs before fork
    // returns there.
    if (ok) {
      ::pthread_atfork(nullptr, nullptr,
                       [] { detail::process_barrier_ok.store(register_process_barrier(), std::memory_order_release); });
    }
    detail::process_barrier_ok.store(ok, std::memory_order_release);
    return ok;
  }();
  (void)registered;
  return detail::process_barrier_ok.load(std::memory_order_acquire);
}

void process_barrier() noexcept {
  if (::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
    // Cannot fail once registered; should it, a fence is all that is left to do.
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

int eventfd_create(int& fd, unsigned initial) noexcept {
  fd = ::eventfd(initial, EFD_CLOEXEC | EFD_NONBLOCK);
  return fd == -1 ? errno : 0;
}

void eventfd_set(int fd, std::uint64_t value) noexcept {
  no_cancel guard;
  std::uint64_t drained;
  while (::read(fd, &drained, sizeof drained) == static_cast<ssize_t>(sizeof drained)) {
  }
  if (value != 0) {
    ssize_t ignored = ::write(fd, &value, sizeof value);
    (void)ignored;
  }
}

int thread_start(void* (*body)(void*), void* arg, pthread_t& thread) noexcept {
  // Block every signal in the new thread: an application's handlers expect to run on
  // its own threads, not on pipc's helpers. Except the signals of synchronous faults: the
  // kernel delivers them to the faulting thread only, and one that is blocked kills the
  // process at once (it resets the handler to the default action). SIGBUS must reach
  // pipc's fault guard (sys/fault_guard.hpp) when a helper touches a truncated queue
  // file; SIGSEGV, SIGILL and SIGFPE must reach the application's crash handler or a
  // sanitizer's report rather than kill silently.
  sigset_t all, old;
  sigfillset(&all);
  for (int signo : {SIGBUS, SIGSEGV, SIGILL, SIGFPE}) sigdelset(&all, signo);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = ::pthread_create(&thread, nullptr, body, arg);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return e;
}

void thread_join(pthread_t thread) noexcept { ::pthread_join(thread, nullptr); }

}  // namespace pipc::sys
