// Signals and cancellation for the C API's blocking calls (docs/engine.md, "Signals
// and cancellation").
//
// POSIX makes mq_send, mq_receive and their timed forms fail with EINTR when a caught
// signal interrupts them while they wait (or restarts them, for a handler installed
// with SA_RESTART, as Linux does), and makes them cancellation points. The engine
// waits on futexes in bounded sleeps (it must look again now and then for a dead
// peer), and futex(2) cannot unblock signals atomically as ppoll(2) can: a handler
// that runs while the thread is between two sleeps, or whose signal arrives as a sleep
// times out (the kernel then reports ETIMEDOUT), would leave no trace, and the call
// would wait on.
//
// So an interruptible call keeps the catchable signals blocked from its first sleep to
// its return. A signal that arrives meanwhile stays pending, and the call looks for
// pending signals before every sleep but the first (none can be pending then) and every
// `tick_ns` while asleep: none is ever missed, and each is acted on within a tick. Acting on one means unblocking it, which
// runs its handler (or its default action) at once; then the call fails with EINTR,
// or, when every handler that ran has SA_RESTART (or none ran: an ignored signal),
// waits on. The faults a thread raises itself (SIGBUS, SIGSEGV, SIGILL, SIGFPE,
// SIGTRAP, SIGSYS) are never blocked.
//
// Cancellation: the sleeps themselves run with asynchronous cancellation enabled (and
// nothing else does), so pthread_cancel acts on a sleeping thread at once, as it does
// in the C library's own cancellation points. The thread unwinds through the callers'
// frames: every frame on that path is allowed to unwind (not noexcept) and releases
// what it holds in destructors. Nothing is held while asleep except what those
// destructors give back.
#ifndef PIPC_SRC_SYS_INTERRUPT_HPP
#define PIPC_SRC_SYS_INTERRUPT_HPP

#include <signal.h>
#include <time.h>

#include <cstdint>

namespace pipc::sys {

class interruption {
 public:
  // The longest a pending signal waits to be acted on while the call sleeps.
  static constexpr std::int64_t tick_ns = 10'000'000;

  interruption() noexcept = default;
  interruption(const interruption&) = delete;
  interruption& operator=(const interruption&) = delete;
  ~interruption() { unblock(); }

  // Before each sleep: blocks the catchable signals (the first time: no signal can be
  // pending yet), or acts on any that are pending (the later times). Returns 0 to sleep on, or EINTR: a handler without SA_RESTART
  // ran, and the caller must return EINTR (the signal mask is the caller's again).
  int before_sleep() noexcept;

  // One sleep on the futex `word` while it holds `expected`, until `abs_ns` on
  // CLOCK_MONOTONIC at the latest, cut to one tick. Returns futex(2)'s result: 0,
  // EAGAIN, ETIMEDOUT (`abs_ns` or the tick came), EINTR. A cancellation request acts
  // here, by unwinding.
  int sleep(const void* word, std::uint32_t expected, std::int64_t abs_ns);

 private:
  void unblock() noexcept;

  bool blocked_ = false;
  sigset_t callers_mask_;  // valid while blocked_; left unset on the fast path
};

// A cancellation point: acts on a pending cancellation request (pthread_testcancel).
void test_cancel();

}  // namespace pipc::sys

#endif  // PIPC_SRC_SYS_INTERRUPT_HPP
