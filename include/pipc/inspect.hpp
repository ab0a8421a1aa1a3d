// Finding and inspecting the POSIX IPC objects of a host: the library under the `pipc`
// command-line tool (docs/cli.md), for any program that wants to do the same.
//
// Inspection is read-only: it opens nothing for writing, takes no lock of a queue and
// needs only read permission on an object. What it reads from an engine queue's shared
// memory is input from other processes: a region of another layout version, a foreign
// file or a corrupt header is reported (object_info::error), never trusted.
//
// Kernel message queues are read from the mqueue filesystem. When it is not mounted
// (/dev/mqueue), a process with CAP_SYS_ADMIN reads them through a private mount of it
// in a short-lived child (its own mount namespace; the host's mounts are untouched);
// otherwise object_listing::kernel_queues says why they are missing.
//
// Thread safety: every function may be called from any thread; they share no state.
#ifndef PIPC_INSPECT_HPP
#define PIPC_INSPECT_HPP

#include <pipc/common.hpp>
#include <pipc/export.hpp>
#include <pipc/message_queue.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace pipc {

enum class object_type {
  message_queue,  // "mq"
  semaphore,      // "sem" (named semaphores)
  shared_memory,  // "shm" (shm_open objects that are neither of the above)
};

// "mq", "sem", "shm"; and "shm", "kernel" for backends.
PIPC_EXPORT std::string_view to_string(object_type t) noexcept;
PIPC_EXPORT std::string_view to_string(pipc::backend b) noexcept;

// One object as list_objects() found it.
struct object_info {
  object_type type = object_type::shared_memory;
  pipc::backend backend = pipc::backend::shm;  // message queues only
  std::string name;                            // "/name", as the API opens it
  std::string path;                            // the file that holds it ("/dev/shm/sem.x", "/dev/mqueue/x")
  mode_t mode = 0;                             // permission bits; engine queues: the queue's mode
  uid_t uid = 0;
  gid_t gid = 0;
  // Bytes: shared memory: the object's size; semaphores and engine queues: their file;
  // kernel queues: the bytes of the messages queued (QSIZE).
  std::uint64_t size = 0;
  std::chrono::system_clock::time_point mtime{};
  // Message queues (-1 when unknown):
  long max_messages = -1;
  long message_size = -1;
  long current_messages = -1;
  // Semaphores (-1 when unknown):
  int value = -1;
  // Why the details above could not be read (permission, a region of another layout
  // version, a corrupt header...): empty when everything was read.
  std::error_code error;
  // More about `error` when there is more to say ("layout version 4; this pipc reads 3").
  std::string detail;
  // The file's identity, which users_of() looks for in /proc.
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
};

// Where list_objects() looked for kernel queues, and with what result.
struct kernel_queue_source {
  enum kind_t {
    mounted,      // read from the mqueue filesystem at `path`
    private_ns,   // read through a private mount in a child process (root)
    unavailable,  // not listed: `reason` says why and how to mount it
  } kind = unavailable;
  std::string path;
  std::string reason;
};

struct object_listing {
  std::vector<object_info> objects;  // sorted by name, then type
  kernel_queue_source kernel_queues;
};

// Every named POSIX IPC object of the host: kernel queues, engine queues, named
// semaphores and other shared memory objects. An object whose details cannot be read
// is listed with its error. Fails (throws std::system_error) only when the shared
// memory directory itself cannot be read.
PIPC_EXPORT object_listing list_objects();
PIPC_EXPORT object_listing list_objects(std::error_code& ec);

// A queue's state, read by name with read permission only (no lock, nothing opened
// for writing). Engine queues: attributes, depth, counters, the notification
// registrant and the blocked processes. Kernel queues: attributes, depth, QSIZE and
// the registrant, from the mqueue filesystem (mounted, or privately as root; without
// it only what mq_getattr tells). ENOENT for no such queue; pipc::errc for a region
// that is not a queue of this layout.
PIPC_EXPORT mq_stats inspect_queue(std::string_view name, pipc::backend which);
PIPC_EXPORT mq_stats inspect_queue(std::string_view name, pipc::backend which, std::error_code& ec) noexcept;

// A process that has an object open or mapped.
struct process_use {
  pid_t pid = 0;
  std::string command;               // /proc/PID/comm
  bool open = false;                 // has a descriptor of it (/proc/PID/fd)
  bool mapped = false;               // maps it (/proc/PID/maps)
  bool notify_registrant = false;    // queues: the registered notification process
  unsigned blocked_receivers = 0;    // engine queues: its threads blocked in a receive
};

// The live processes that use `object`, by pid. Processes whose /proc entries this
// process may not read (another user's, without CAP_SYS_PTRACE; a non-dumpable one)
// cannot be seen: their pids go to `unseen`, when given.
PIPC_EXPORT std::vector<process_use> users_of(const object_info& object, std::vector<pid_t>* unseen = nullptr);

}  // namespace pipc

#endif  // PIPC_INSPECT_HPP
