// The system calls of inspection (include/pipc/inspect.hpp): directory listings,
// read-only reads of object files, /proc, and the mqueue filesystem, mounted or
// reached through a private mount namespace. Like sys.hpp, each function returns 0 or
// an errno value and never throws (allocation failure is ENOMEM).
#ifndef PIPC_SRC_SYS_INSPECT_OS_HPP
#define PIPC_SRC_SYS_INSPECT_OS_HPP

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pipc::sys {

// One kernel queue as its mqueue filesystem shows it.
struct kernel_queue_record {
  char name[256];          // the file name: the queue's name without its '/'
  int error;               // 0, or why the queue could not be opened for reading
  std::uint32_t mode, uid, gid;
  std::int64_t mtime_ns;   // CLOCK_REALTIME
  std::uint64_t device, inode;
  long max_messages, message_size, current_messages;  // -1 when error != 0
  long long queued_bytes;  // QSIZE
  int notify_pid;          // NOTIFY_PID (0: none)
  int notify_signal;       // SIGNO
};

// The entries of directory `dir`, without "." and "..".
int list_directory(const char* dir, std::vector<std::string>& names) noexcept;

// Opens `path` read-only (never following a symlink, never blocking), fstat()s it into
// `st` and reads up to `size` bytes from offset 0 into `buffer`; `got` is how many
// bytes came. A file that is shorter than `size` is no error.
int read_file_head(const char* path, struct ::stat& st, void* buffer, std::size_t size, std::size_t& got) noexcept;

// lstat(2).
int lstat_path(const char* path, struct ::stat& st) noexcept;

// Reads a kernel queue descriptor's status line (what /dev/mqueue/NAME shows) into
// `r`'s queued_bytes, notify_pid and notify_signal. EBADF for a descriptor opened
// write-only.
int read_queue_status(int mqd, kernel_queue_record& r) noexcept;

// Reads a small text file (/proc/PID/comm) whole, up to `limit` bytes.
int read_text(const char* path, std::string& out, std::size_t limit = 4096) noexcept;

// The mount point of an mqueue filesystem in this process's mount namespace, from
// /proc/self/mounts; ENOENT if there is none.
int find_mqueue_mount(std::string& path) noexcept;

// Reads every queue of the mqueue filesystem mounted at `dir`.
int read_kernel_queues(const char* dir, std::vector<kernel_queue_record>& out) noexcept;

// The same without a mounted mqueue filesystem: a child process enters a mount
// namespace of its own (unshare(CLONE_NEWNS), which takes CAP_SYS_ADMIN), makes its
// mounts private so that nothing reaches the host's, mounts the mqueue filesystem of
// the IPC namespace it shares with the caller, reads it and reports through a pipe.
// EPERM without the capability.
int read_kernel_queues_privately(std::vector<kernel_queue_record>& out) noexcept;

// The numeric entries of /proc: the pids of this PID namespace.
int list_pids(std::vector<pid_t>& pids) noexcept;

// Does process `pid` have a descriptor open on the file `dev`:`ino`? 1 yes, 0 no, -1
// unknown (its /proc/PID/fd cannot be read).
int process_has_open(pid_t pid, std::uint64_t dev, std::uint64_t ino) noexcept;

// Does process `pid` map the file `dev`:`ino`? 1 yes, 0 no (also for a process with no
// mappings, such as a kernel thread, or one that is gone), -1 unknown (its
// /proc/PID/maps cannot be read: another user's process).
int process_maps(pid_t pid, std::uint64_t dev, std::uint64_t ino) noexcept;

}  // namespace pipc::sys

#endif  // PIPC_SRC_SYS_INSPECT_OS_HPP
