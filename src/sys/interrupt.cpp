// Signals and cancellation for the C API's blocking calls: see interrupt.hpp.
#include "sys/interrupt.hpp"

#include "sys/sys.hpp"

#include <pthread.h>

#include <algorithm>
#include <cerrno>

namespace pipc::sys {

namespace {

// Every signal except those a thread raises itself, which must reach their handlers
// (fault_guard's among them) when the fault happens. The C library removes the
// signals it uses for cancellation and set*id from any mask it installs.
sigset_t catchable_signals() noexcept {
  sigset_t set;
  sigfillset(&set);
  for (int signo : {SIGBUS, SIGSEGV, SIGILL, SIGFPE, SIGTRAP, SIGSYS}) sigdelset(&set, signo);
  return set;
}

}  // namespace

int interruption::before_sleep() noexcept {
  static const sigset_t catchable = catchable_signals();
  if (!blocked_) {
    if (::pthread_sigmask(SIG_BLOCK, &catchable, &callers_mask_) != 0) return 0;  // cannot fail
    blocked_ = true;
    // Nothing to look for yet: a signal that came before this moment found the
    // caller's mask and was delivered (its handler ran before the call waited, as if it
    // had come before the call), and one that comes from now on stays pending and is
    // acted on at the end of the first sleep's tick at the latest. Skipping the
    // sigpending here saves a system call on every call that sleeps.
    return 0;
  }
  sigset_t pending;
  if (::sigpending(&pending) != 0) return 0;
  bool any = false;
  bool handled = false;
  bool restart = true;
  for (int signo = 1; signo < NSIG; ++signo) {
    if (sigismember(&pending, signo) != 1 || sigismember(&callers_mask_, signo) == 1) continue;
    any = true;
    struct sigaction sa {};
    if (::sigaction(signo, nullptr, &sa) != 0) continue;
    if ((sa.sa_flags & SA_SIGINFO) != 0 || (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN)) {
      handled = true;
      if ((sa.sa_flags & SA_RESTART) == 0) restart = false;
    }
  }
  if (!any) return 0;
  // Deliver them: their handlers (or default actions) run as the mask opens.
  unblock();
  if (handled && !restart) return EINTR;
  (void)::pthread_sigmask(SIG_BLOCK, &catchable, nullptr);
  blocked_ = true;
  return 0;
}

int interruption::sleep(const void* word, std::uint32_t expected, std::int64_t abs_ns) {
  const std::int64_t until = std::min(abs_ns, now_ns(CLOCK_MONOTONIC) + tick_ns);
  int type = PTHREAD_CANCEL_DEFERRED;
  // Acts at once on a cancellation requested before the sleep.
  ::pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &type);
  int e = futex_wait(word, expected, CLOCK_MONOTONIC, &until);
  ::pthread_setcanceltype(type, nullptr);
  return e;
}

void interruption::unblock() noexcept {
  if (!blocked_) return;
  blocked_ = false;
  (void)::pthread_sigmask(SIG_SETMASK, &callers_mask_, nullptr);
}

void test_cancel() { ::pthread_testcancel(); }

}  // namespace pipc::sys
