// Helpers for pipc's tests: unique object names, objects removed even when a test
// fails, and child processes created with fork whose outcome the parent checks.
#ifndef PIPC_TESTS_SUPPORT_HPP
#define PIPC_TESTS_SUPPORT_HPP

#include <pipc/pipc.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/types.h>

namespace pipc::test {

// A name no other test or test run uses: "/pipc-t<pid>-<tag>-<n>".
std::string unique_name(std::string_view tag);

// Unlinks a named object when it goes out of scope (also when an ASSERT returns
// early). Unlink errors are ignored: the test may have unlinked it already.
class unlink_guard {
 public:
  unlink_guard(std::string name, name_kind kind) : name_(std::move(name)), kind_(kind) {}
  unlink_guard(const unlink_guard&) = delete;
  unlink_guard& operator=(const unlink_guard&) = delete;
  ~unlink_guard();
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  name_kind kind_;
};

// Runs `body` in a child process created with fork. The child exits with body's return
// value; an exception or a failed expectation in the child exits with 99.
pid_t spawn(std::function<int()> body);

// Waits for `pid` at most `limit`. Returns its exit status (0..255), or 128 + signal
// number if a signal ended it. A child still running after `limit` is SIGKILLed and
// reported as -1 (a hang is a failure, never a stuck suite).
int wait_exit(pid_t pid, std::chrono::milliseconds limit = std::chrono::seconds(20));

// spawn + wait_exit.
int run_child(std::function<int()> body, std::chrono::milliseconds limit = std::chrono::seconds(20));

// A forked child (spawn) that is SIGKILLed and reaped if the test leaves before
// waiting for it.
class child {
 public:
  explicit child(std::function<int()> body) : pid_(spawn(std::move(body))) {}
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child();
  pid_t pid() const { return pid_; }
  // True while the child has not exited (does not reap it).
  bool running() const;
  // wait_exit on the child; afterwards the guard has nothing left to do.
  int wait(std::chrono::milliseconds limit = std::chrono::seconds(10));

 private:
  pid_t pid_;
};

// In a child: become the unprivileged user `nobody` (uid/gid 65534). Returns false if
// that is impossible (not root).
bool become_nobody();

// True when the tests run as root (needed to switch users for permission tests).
bool running_as_root();

// The start time of process (or thread) `pid`, field 22 of /proc/PID/stat, in clock
// ticks since boot; 0 if it cannot be read.
std::uint64_t start_time_of(pid_t pid);
// The lock word (src/engine/lock.hpp) that names process `pid`'s main thread as owner.
inline std::uint64_t lock_word_of(pid_t pid) {
  return (start_time_of(pid) << 32) | static_cast<std::uint32_t>(pid);
}

// The std::system_error that f() threw, or nullopt if it returned.
template <class F>
std::optional<std::system_error> thrown(F&& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return e;
  }
  return std::nullopt;
}

// `n` bytes at `p` as the byte span that send takes.
inline std::span<const std::byte> as_span(const void* p, std::size_t n) {
  return {static_cast<const std::byte*>(p), n};
}

// Success if `haystack` contains `needle`; the failure message shows both.
inline ::testing::AssertionResult contains(std::string_view haystack, std::string_view needle) {
  if (haystack.find(needle) != std::string_view::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << haystack << "\" does not contain \"" << needle << "\"";
}

// Whether this build runs under a sanitizer: slow tests scale their counts down.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif

// Options for a queue of pipc's engine (backend::shm).
mq_options engine_options(long max_messages, long message_size, access how = access::read_write);

// splitmix64: a cheap, well-mixed function of a 64-bit value, for priorities and
// payload patterns that any process can recompute from a seed.
constexpr std::uint64_t mix(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Ends a hung test with a message, sooner than ctest's timeout: SIGALRM after `limit`.
// alarm() is per process; forked children do not inherit it.
class watchdog {
 public:
  explicit watchdog(std::chrono::seconds limit);
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;
  ~watchdog();

 private:
  struct sigaction old_ {};
};

// Restores the calling thread's CPU affinity (a test whose main thread pins itself).
class affinity_guard {
 public:
  affinity_guard() { saved_ok_ = ::pthread_getaffinity_np(::pthread_self(), sizeof saved_, &saved_) == 0; }
  affinity_guard(const affinity_guard&) = delete;
  affinity_guard& operator=(const affinity_guard&) = delete;
  ~affinity_guard() {
    if (saved_ok_) ::pthread_setaffinity_np(::pthread_self(), sizeof saved_, &saved_);
  }

 private:
  cpu_set_t saved_{};
  bool saved_ok_ = false;
};

// Pins the calling thread to `cpu`.
inline bool pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set) == 0;
}

// Two CPUs this process may run on, or -1s.
inline std::pair<int, int> two_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return {-1, -1};
  int first = -1;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &set)) continue;
    if (first < 0) {
      first = c;
    } else {
      return {first, c};
    }
  }
  return {-1, -1};
}

}  // namespace pipc::test

#endif  // PIPC_TESTS_SUPPORT_HPP
