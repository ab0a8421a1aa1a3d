// Vocabulary shared by every pipc object: how to open it, with which access, and the
// deadlines that timed operations take.
#ifndef PIPC_COMMON_HPP
#define PIPC_COMMON_HPP

#include <pipc/export.hpp>

#include <sys/types.h>
#include <time.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace pipc {

// How open() treats the name (O_CREAT / O_EXCL without the flag soup).
enum class open_mode {
  create_only,     // O_CREAT | O_EXCL: fails with EEXIST if the name exists
  open_only,       // fails with ENOENT if the name does not exist
  open_or_create,  // O_CREAT: opens the existing object or creates it
};

// The access mode of an open description (O_RDONLY / O_WRONLY / O_RDWR).
enum class access {
  read_only,
  write_only,  // message queues only
  read_write,
};

// Permission bits used when an open creates the object; the process umask applies.
inline constexpr mode_t default_permissions = 0600;

// Which objects a name is for; each has its own length limit (see max_name_length).
enum class name_kind {
  message_queue,  // a kernel queue (backend::kernel)
  engine_queue,   // a queue of pipc's engine (backend::shm)
  shared_memory,
  semaphore,
};

// The longest name, in bytes after the leading '/', that objects of this kind accept.
// Kernel queues and shared memory allow NAME_MAX (255); glibc stores a named semaphore
// as "sem.<name>" in /dev/shm, which leaves 251; the engine stores queue "/q" as the
// shared memory object "/pipc.mq.q", which leaves 247.
PIPC_EXPORT std::size_t max_name_length(name_kind kind) noexcept;

// Checks a POSIX IPC object name: exactly one leading '/', no other '/', not empty,
// at most max_name_length(kind) bytes after the slash, no NUL byte; shared memory names
// may not begin with "pipc.mq." or "sem." after the slash (the files of engine queues
// and named semaphores in /dev/shm). Returns EINVAL or ENAMETOOLONG (std::errc), or an
// empty error_code for a valid name.
PIPC_EXPORT std::error_code check_name(std::string_view name, name_kind kind) noexcept;

// Why check_name rejected `name`, in words ("must begin with '/'"); empty when valid.
PIPC_EXPORT std::string_view describe_name_problem(std::string_view name, name_kind kind) noexcept;

// The bytes of a string, for sending text without a cast.
inline std::span<const std::byte> as_bytes(std::string_view text) noexcept {
  return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}

namespace detail {

// An absolute deadline on CLOCK_REALTIME or CLOCK_MONOTONIC, in nanoseconds since
// that clock's epoch. Timed operations take one; the public templates build it from
// any std::chrono duration or time point.
struct deadline {
  clockid_t clock;
  std::int64_t ns;
};

template <class Rep, class Period>
constexpr std::int64_t saturating_ns(std::chrono::duration<Rep, Period> d) noexcept {
  using std::chrono::duration_cast;
  using std::chrono::nanoseconds;
  // Beyond ~146 years any deadline is "never"; clamping keeps the arithmetic defined.
  constexpr auto limit = std::chrono::hours(24 * 365 * 146);
  if (d >= limit) return duration_cast<nanoseconds>(limit).count();
  if (d <= -limit) return -duration_cast<nanoseconds>(limit).count();
  return std::chrono::ceil<nanoseconds>(d).count();
}

template <class Clock, class Duration>
deadline make_deadline(std::chrono::time_point<Clock, Duration> tp) noexcept {
  if constexpr (std::is_same_v<Clock, std::chrono::system_clock>) {
    return {CLOCK_REALTIME, saturating_ns(tp.time_since_epoch())};
  } else if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
    // libstdc++ and libc++ both read steady_clock from CLOCK_MONOTONIC.
    return {CLOCK_MONOTONIC, saturating_ns(tp.time_since_epoch())};
  } else {
    // Another clock: carry the time left over to the steady clock.
    auto now = std::chrono::steady_clock::now().time_since_epoch();
    return {CLOCK_MONOTONIC, saturating_ns(now) + saturating_ns(tp - Clock::now())};
  }
}

template <class Rep, class Period>
deadline make_deadline(std::chrono::duration<Rep, Period> d) noexcept {
  auto now = std::chrono::steady_clock::now().time_since_epoch();
  return {CLOCK_MONOTONIC, saturating_ns(now) + saturating_ns(d)};
}

}  // namespace detail
}  // namespace pipc

#endif  // PIPC_COMMON_HPP
