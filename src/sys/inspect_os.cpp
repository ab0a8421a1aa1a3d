#include "sys/inspect_os.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <mqueue.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

namespace pipc::sys {
namespace {

// Closes a descriptor on every path out.
struct fd_closer {
  int fd;
  ~fd_closer() {
    if (fd >= 0) ::close(fd);
  }
};

bool is_number(const char* s) noexcept {
  if (*s == '\0') return false;
  for (; *s != '\0'; ++s) {
    if (*s < '0' || *s > '9') return false;
  }
  return true;
}

// Reads until EOF or `size` bytes.
std::size_t read_all(int fd, void* buffer, std::size_t size) noexcept {
  auto* p = static_cast<char*>(buffer);
  std::size_t got = 0;
  while (got < size) {
    ssize_t n = ::read(fd, p + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  return got;
}

bool write_all(int fd, const void* data, std::size_t size) noexcept {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// "QSIZE:0          NOTIFY:0     SIGNO:0     NOTIFY_PID:0": the value after `key`.
long long field_after(const char* text, const char* key) noexcept {
  const char* at = std::strstr(text, key);
  if (at == nullptr) return 0;
  return std::strtoll(at + std::strlen(key), nullptr, 10);
}

void read_one_queue(int dir_fd, const char* leaf, kernel_queue_record& r) noexcept {
  std::memset(&r, 0, sizeof r);
  std::snprintf(r.name, sizeof r.name, "%s", leaf);
  r.max_messages = r.message_size = r.current_messages = -1;
  r.queued_bytes = -1;
  struct ::stat st {};
  if (::fstatat(dir_fd, leaf, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    r.error = errno;
    return;
  }
  r.mode = st.st_mode & 07777;
  r.uid = st.st_uid;
  r.gid = st.st_gid;
  r.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  r.device = st.st_dev;
  r.inode = st.st_ino;
  // A descriptor opened on the mqueue filesystem is a queue descriptor: read() gives
  // the status line, mq_getattr the attributes.
  int fd = ::openat(dir_fd, leaf, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    r.error = errno;
    return;
  }
  fd_closer closer{fd};
  (void)read_queue_status(fd, r);
  struct ::mq_attr a {};
  if (::mq_getattr(static_cast<mqd_t>(fd), &a) != 0) {
    r.error = errno;
    return;
  }
  r.max_messages = a.mq_maxmsg;
  r.message_size = a.mq_msgsize;
  r.current_messages = a.mq_curmsgs;
}

// The child of read_kernel_queues_privately: never returns.
[[noreturn]] void private_reader(int out) noexcept {
  int e = 0;
  std::vector<kernel_queue_record> records;
  if (::unshare(CLONE_NEWNS) != 0) {
    e = errno;
  } else if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    e = errno;  // without it the mount below could propagate to the host
  } else {
    // Any existing directory serves as the mount point: the mount is seen only in this
    // namespace, which ends with this process.
    const char* target = nullptr;
    for (const char* d : {"/dev/mqueue", "/tmp", "/mnt", "/dev"}) {
      struct ::stat st {};
      if (::stat(d, &st) == 0 && S_ISDIR(st.st_mode)) {
        target = d;
        break;
      }
    }
    if (target == nullptr) {
      e = ENOENT;
    } else if (::mount("mqueue", target, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
      e = errno;
    } else {
      e = read_kernel_queues(target, records);
    }
  }
  std::uint64_t count = records.size();
  bool ok = write_all(out, &e, sizeof e) && write_all(out, &count, sizeof count) &&
            (records.empty() || write_all(out, records.data(), records.size() * sizeof(kernel_queue_record)));
  ::_exit(ok ? 0 : 1);
}

}  // namespace

int list_directory(const char* dir, std::vector<std::string>& names) noexcept {
  DIR* d = ::opendir(dir);
  if (d == nullptr) return errno;
  int e = 0;
  try {
    errno = 0;
    while (const dirent* ent = ::readdir(d)) {
      if (std::strcmp(ent->d_name, ".") == 0 || std::strcmp(ent->d_name, "..") == 0) continue;
      names.emplace_back(ent->d_name);
    }
    e = errno;
  } catch (const std::bad_alloc&) {
    e = ENOMEM;
  }
  ::closedir(d);
  return e;
}

int read_file_head(const char* path, struct ::stat& st, void* buffer, std::size_t size, std::size_t& got) noexcept {
  got = 0;
  int fd = ::open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return errno;
  fd_closer closer{fd};
  if (::fstat(fd, &st) != 0) return errno;
  if (!S_ISREG(st.st_mode)) return 0;  // nothing to read in a fifo or device
  while (got < size) {
    ssize_t n = ::pread(fd, static_cast<char*>(buffer) + got, size - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  return 0;
}

int lstat_path(const char* path, struct ::stat& st) noexcept { return ::lstat(path, &st) == 0 ? 0 : errno; }

int read_queue_status(int mqd, kernel_queue_record& r) noexcept {
  // pread: the status line is read from its start whatever reads came before.
  char text[256];
  ssize_t n = -1;
  do {
    n = ::pread(mqd, text, sizeof text - 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  text[n] = '\0';
  r.queued_bytes = field_after(text, "QSIZE:");
  r.notify_signal = static_cast<int>(field_after(text, "SIGNO:"));
  r.notify_pid = static_cast<int>(field_after(text, "NOTIFY_PID:"));
  return 0;
}

int read_text(const char* path, std::string& out, std::size_t limit) noexcept {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  fd_closer closer{fd};
  try {
    out.assign(limit, '\0');
    out.resize(read_all(fd, out.data(), limit));
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
  return 0;
}

int find_mqueue_mount(std::string& path) noexcept {
  std::FILE* f = std::fopen("/proc/self/mounts", "re");
  if (f == nullptr) return errno;
  char line[4096];
  int e = ENOENT;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    char device[1024], dir[2048], type[64];
    if (std::sscanf(line, "%1023s %2047s %63s", device, dir, type) == 3 && std::strcmp(type, "mqueue") == 0) {
      try {
        path = dir;
        e = 0;
      } catch (const std::bad_alloc&) {
        e = ENOMEM;
      }
      break;
    }
  }
  std::fclose(f);
  return e;
}

int read_kernel_queues(const char* dir, std::vector<kernel_queue_record>& out) noexcept {
  int dir_fd = ::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return errno;
  fd_closer closer{dir_fd};
  std::vector<std::string> names;
  if (int e = list_directory(dir, names); e != 0) return e;
  try {
    for (const std::string& n : names) {
      kernel_queue_record r;
      read_one_queue(dir_fd, n.c_str(), r);
      out.push_back(r);
    }
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
  return 0;
}

int read_kernel_queues_privately(std::vector<kernel_queue_record>& out) noexcept {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return errno;
  pid_t child = ::fork();
  if (child < 0) {
    int e = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return e;
  }
  if (child == 0) {
    ::close(fds[0]);
    private_reader(fds[1]);
  }
  ::close(fds[1]);
  fd_closer closer{fds[0]};
  int e = 0;
  std::uint64_t count = 0;
  if (read_all(fds[0], &e, sizeof e) != sizeof e || read_all(fds[0], &count, sizeof count) != sizeof count) {
    e = EIO;
  } else if (e == 0) {
    try {
      // Never more than the kernel allows (queues_max is at most 2^16 in practice);
      // a short read ends the list.
      for (std::uint64_t i = 0; i < count && i < (1u << 20); ++i) {
        kernel_queue_record r;
        if (read_all(fds[0], &r, sizeof r) != sizeof r) {
          e = EIO;
          break;
        }
        r.name[sizeof r.name - 1] = '\0';
        out.push_back(r);
      }
    } catch (const std::bad_alloc&) {
      e = ENOMEM;
    }
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return e;
}

int list_pids(std::vector<pid_t>& pids) noexcept {
  std::vector<std::string> names;
  if (int e = list_directory("/proc", names); e != 0) return e;
  try {
    for (const std::string& n : names) {
      if (is_number(n.c_str())) pids.push_back(static_cast<pid_t>(std::strtol(n.c_str(), nullptr, 10)));
    }
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
  return 0;
}

int process_has_open(pid_t pid, std::uint64_t dev, std::uint64_t ino) noexcept {
  char dir[64];
  std::snprintf(dir, sizeof dir, "/proc/%d/fd", static_cast<int>(pid));
  int dir_fd = ::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return errno == ENOENT ? 0 : -1;
  fd_closer closer{dir_fd};
  DIR* d = ::fdopendir(::dup(dir_fd));
  if (d == nullptr) return -1;
  int found = 0;
  while (const dirent* ent = ::readdir(d)) {
    if (!is_number(ent->d_name)) continue;
    struct ::stat st {};
    // Following the link reaches the open file itself, even one whose name is gone.
    if (::fstatat(dir_fd, ent->d_name, &st, 0) == 0 && st.st_dev == dev && st.st_ino == ino) {
      found = 1;
      break;
    }
  }
  ::closedir(d);
  return found;
}

int process_maps(pid_t pid, std::uint64_t dev, std::uint64_t ino) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/maps", static_cast<int>(pid));
  std::FILE* f = std::fopen(path, "re");
  if (f == nullptr) return errno == ENOENT || errno == ESRCH ? 0 : -1;
  // "start-end perms offset MAJ:MIN inode [path]"; a long line is read in pieces, and
  // only a piece at a line's start is parsed.
  char line[512];
  int found = 0;
  bool at_start = true;
  const unsigned want_major = major(static_cast<dev_t>(dev)), want_minor = minor(static_cast<dev_t>(dev));
  while (found == 0 && std::fgets(line, sizeof line, f) != nullptr) {
    const bool starts = at_start;
    at_start = std::strchr(line, '\n') != nullptr;
    if (!starts) continue;
    unsigned maj = 0, min = 0;
    unsigned long long inode = 0;
    if (std::sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &min, &inode) == 3 && maj == want_major &&
        min == want_minor && inode == ino) {
      found = 1;
    }
  }
  // A read error (EACCES on the first read, for another user's process) is unknown.
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  return failed && found == 0 ? -1 : found;
}

}  // namespace pipc::sys
