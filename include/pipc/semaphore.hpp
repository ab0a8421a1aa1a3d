// POSIX semaphores: named (sem_open) and unnamed (sem_init).
//
// Both kinds count: post() adds one, wait() takes one, blocking while the count is 0.
// Waits are retried when a signal handler interrupts them (EINTR never escapes a C++
// wait; a timed wait keeps its original deadline). Timed waits take any std::chrono
// duration or time point; a steady-clock deadline does not move when the system
// clock is set.
//
// Thread and process safety: every operation may be called concurrently from any
// thread of any process that has the semaphore.
//
// Death: a process that dies holding a unit (it waited and never posted) takes the
// unit with it, as POSIX semaphores have no SEM_UNDO: the count stays one lower for
// good, and with a binary semaphore used as a lock every other process then waits
// forever. pipc cannot repair this (the sem_t does not record who holds a unit). Use a
// semaphore as a lock only between processes that are restarted together, or keep the
// state it guards in something that recovers from a dead owner (an engine queue does).
#ifndef PIPC_SEMAPHORE_HPP
#define PIPC_SEMAPHORE_HPP

#include <pipc/common.hpp>
#include <pipc/export.hpp>

#include <semaphore.h>

#include <chrono>
#include <string>
#include <string_view>
#include <system_error>

namespace pipc {

namespace detail {
// The operations both semaphore kinds share, on a sem_t. Return 0 or an errno value;
// a timed or try wait that finds no unit returns ETIMEDOUT / EAGAIN.
PIPC_EXPORT int sem_post(sem_t* s) noexcept;
PIPC_EXPORT int sem_wait(sem_t* s, const deadline* until) noexcept;  // nullptr: forever
PIPC_EXPORT int sem_try_wait(sem_t* s) noexcept;
PIPC_EXPORT int sem_value(sem_t* s, int& value) noexcept;
}  // namespace detail

// The operations of a counting semaphore, on top of the sem_t* that Derived owns.
template <class Derived>
class basic_semaphore_ops {
 public:
  void post() { check(detail::sem_post(self()), "sem_post"); }
  void post(std::error_code& ec) noexcept { ec = to_ec(detail::sem_post(self())); }

  void wait() { check(detail::sem_wait(self(), nullptr), "sem_wait"); }
  void wait(std::error_code& ec) noexcept { ec = to_ec(detail::sem_wait(self(), nullptr)); }

  // Takes a unit if one is available at once; false otherwise.
  bool try_wait() { return outcome(detail::sem_try_wait(self()), "sem_trywait"); }
  bool try_wait(std::error_code& ec) noexcept { return outcome(detail::sem_try_wait(self()), ec); }

  // Waits until a unit is available or the time runs out (false).
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) {
    return timed(detail::make_deadline(d));
  }
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d, std::error_code& ec) noexcept {
    return timed(detail::make_deadline(d), ec);
  }
  template <class Clock, class Duration>
  bool wait_until(std::chrono::time_point<Clock, Duration> tp) {
    return timed(detail::make_deadline(tp));
  }
  template <class Clock, class Duration>
  bool wait_until(std::chrono::time_point<Clock, Duration> tp, std::error_code& ec) noexcept {
    return timed(detail::make_deadline(tp), ec);
  }

  // BasicLockable and Lockable, so std::lock_guard / std::unique_lock / std::scoped_lock
  // can hold a unit for a scope: lock() waits, unlock() posts, try_lock() try_waits.
  // A unit held by a process that dies is lost for good (POSIX semaphores have no
  // SEM_UNDO): the others then wait for a post that never comes. Where a peer may
  // crash while holding a unit, use a lock that detects its owner's death instead.
  void lock() { wait(); }
  void unlock() { post(); }
  bool try_lock() { return try_wait(); }

  // The current count (sem_getvalue; Linux never reports waiters as a negative value).
  int value() const {
    int v = 0;
    check(detail::sem_value(self(), v), "sem_getvalue");
    return v;
  }
  int value(std::error_code& ec) const noexcept {
    int v = 0;
    ec = to_ec(detail::sem_value(self(), v));
    return v;
  }

 private:
  sem_t* self() const noexcept { return static_cast<const Derived*>(this)->handle(); }
  static std::error_code to_ec(int e) noexcept { return {e, std::system_category()}; }
  void check(int e, const char* op) const {
    if (e != 0) static_cast<const Derived*>(this)->fail(op, e);
  }
  bool outcome(int e, const char* op) const {
    if (e == EAGAIN || e == ETIMEDOUT) return false;
    check(e, op);
    return true;
  }
  static bool outcome(int e, std::error_code& ec) noexcept {
    ec.clear();
    if (e == EAGAIN || e == ETIMEDOUT) return false;
    ec = to_ec(e);
    return e == 0;
  }
  bool timed(const detail::deadline& dl) { return outcome(detail::sem_wait(self(), &dl), "sem_clockwait"); }
  bool timed(const detail::deadline& dl, std::error_code& ec) noexcept {
    return outcome(detail::sem_wait(self(), &dl), ec);
  }
};

// A named semaphore ("/name"), visible to every process that knows the name.
// Move-only; closes (sem_close) on destruction. The name lives until unlink().
class PIPC_EXPORT named_semaphore : public basic_semaphore_ops<named_semaphore> {
 public:
  named_semaphore() noexcept = default;
  named_semaphore(named_semaphore&& other) noexcept;
  named_semaphore& operator=(named_semaphore&& other) noexcept;
  named_semaphore(const named_semaphore&) = delete;
  named_semaphore& operator=(const named_semaphore&) = delete;
  ~named_semaphore();

  // Opens or creates `name`. `initial` and `perms` (less the umask) apply only when the
  // call creates the semaphore. initial > SEM_VALUE_MAX fails with EINVAL.
  static named_semaphore open(std::string_view name, open_mode mode, unsigned initial = 0,
                              mode_t perms = default_permissions);
  static named_semaphore open(std::string_view name, open_mode mode, unsigned initial, mode_t perms,
                              std::error_code& ec) noexcept;

  // Removes the name; processes that have it open keep using it.
  static void unlink(std::string_view name);
  static void unlink(std::string_view name, std::error_code& ec) noexcept;

  // sem_close now; the handle becomes empty. Idempotent.
  void close() noexcept;

  const std::string& name() const noexcept { return name_; }
  sem_t* handle() const noexcept { return sem_; }
  bool is_open() const noexcept { return sem_ != nullptr; }
  explicit operator bool() const noexcept { return is_open(); }

 private:
  friend class basic_semaphore_ops<named_semaphore>;
  [[noreturn]] void fail(const char* op, int err) const;

  sem_t* sem_ = nullptr;
  std::string name_;
};

// Who may use an unnamed semaphore.
enum class sharing {
  threads,    // the threads of one process (pshared 0)
  processes,  // any process that maps the memory it lies in (pshared 1)
};

// An unnamed semaphore: the sem_t itself. Construct it where it is to live: in shared
// memory (placement new into a mapping) for processes, anywhere for threads. The
// constructor is sem_init, the destructor sem_destroy. Neither copyable nor movable
// (a sem_t must not change address).
//
// Requires: destroyed once, by one process, when no thread waits on it; a process
// that only attaches to an existing one (std::launder on the mapped bytes) must not
// destroy it.
class PIPC_EXPORT semaphore : public basic_semaphore_ops<semaphore> {
 public:
  // sem_init. Throws std::system_error (EINVAL for initial > SEM_VALUE_MAX).
  explicit semaphore(unsigned initial, sharing who = sharing::processes);
  // sem_init reporting through ec; on failure the object must not be used.
  semaphore(unsigned initial, sharing who, std::error_code& ec) noexcept;
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;
  ~semaphore();

  sem_t* handle() const noexcept { return const_cast<sem_t*>(&sem_); }

 private:
  friend class basic_semaphore_ops<semaphore>;
  [[noreturn]] void fail(const char* op, int err) const;

  sem_t sem_;
  bool initialised_ = false;
};

}  // namespace pipc

#endif  // PIPC_SEMAPHORE_HPP
