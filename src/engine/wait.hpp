// Waiting for the other side (docs/engine.md, "Waiting"): spinning, then sleeping on
// a futex word of the region, and the wake-up handshake that loses no wake-up.
//
// The rules every wait keeps:
//   1. A sleeper announces itself (sleeper count), fences, and looks at the queue again
//      before it sleeps; a waker commits, fences, and looks at the count. With both
//      fences sequentially consistent, one of the two sees the other's store.
//   2. Every sleep has a time limit (recheck_ns at most): a process killed between its
//      commit and its wake-up, or while holding a lock, wakes nobody.
//   3. Futexes are shared (never FUTEX_PRIVATE_FLAG): the words are in the region.
#ifndef PIPC_SRC_ENGINE_WAIT_HPP
#define PIPC_SRC_ENGINE_WAIT_HPP

#include "engine/region.hpp"
#include "sys/interrupt.hpp"

namespace pipc::engine {

// The spin before sleeping when the caller does not choose one.
// A spinning waiter looks at the queue after 1, 2, then 4 pauses: each look pulls the
// line the other side is writing, so looking less often lets it write several entries
// per transfer, while four pauses keep a waiting receiver's reaction within ~100 ns.
inline constexpr unsigned spin_backoff_max = 4;
// The least a spin adapts down to (see wait_while).
inline constexpr std::int64_t min_spin_ns = 1'000;

// The fences of the wake-up handshake (see "Waiting" below). ThreadSanitizer does not
// model fences (GCC warns that it does not support them), so its builds skip them and
// the waker reads the sleeper count with a read-modify-write instead, which is correct
// without fences: it reads the latest count, and when that includes a sleeper's
// announcement the two synchronise. Normal builds keep the fence and a plain load: a
// read-modify-write would take the waiting line exclusive on every message.
#if defined(__SANITIZE_THREAD__)
#define PIPC_HANDSHAKE_RMW 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PIPC_HANDSHAKE_RMW 1
#endif
#endif

inline void handshake_fence() noexcept {
#ifndef PIPC_HANDSHAKE_RMW
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

// Waiting (docs/engine.md, "Waiting"). A blocked side waits for the queue to leave the
// state that blocks it (no free slot for a sender; no message for a receiver): first
// by spinning, then asleep on a futex word. A sleeper announces itself in `sleepers`
// and never takes itself off; the other side, after its commit, wakes only if it finds
// sleepers, and then resets the count, bumps the word and wakes them all. So the
// uncontended path makes no system call, one sleep costs one FUTEX_WAKE however many
// operations follow it, and a sleeper that timed out or died costs at most one
// needless wake.
//
// No wake-up is lost: the sleeper announces itself, fences (handshake_fence()), and
// looks at the queue; the waker commits, fences, and looks at the count. With both
// fences sequentially consistent, one of the two sees the other's store.
//
// The waker's fence, after its commit and before it looks for sleepers.
inline void committed() noexcept { handshake_fence(); }

inline std::uint32_t sleepers_after_commit(atomic_u32& sleepers) noexcept {
#ifdef PIPC_HANDSHAKE_RMW
  return sleepers.fetch_add(0, std::memory_order_seq_cst);
#else
  return sleepers.load(std::memory_order_relaxed);
#endif
}

// Called after committed(), outside the locks.
inline void wake_sleepers(atomic_u32& word, atomic_u32& sleepers) noexcept {
  if (sleepers_after_commit(sleepers) != 0 && sleepers.exchange(0, std::memory_order_seq_cst) != 0) {
    word.fetch_add(1, std::memory_order_seq_cst);
    sys::futex_wake(&word, INT_MAX);
  }
}

inline bool deadline_passed(const detail::wait_limit& limit) noexcept {
  return limit.kind == detail::wait_limit::until && sys::now_ns(limit.when.clock) >= limit.when.ns;
}

// What wait_while returns when it slept a whole recheck_ns: time for the caller's
// periodic checks (a dead lock owner, a truncated file) before it looks again.
inline constexpr int recheck_due = -1;

// Spins for up to spin_ns, then sleeps on `word`, while blocked() holds. Returns 0 when
// the state may have changed, recheck_due after a sleep of recheck_ns, ETIMEDOUT when
// the limit passed, EINTR when a signal handler interrupted the sleep. A futex word in
// a truncated page makes the wait fail with EFAULT: that is 0 too, and the caller's
// next look at the region faults and sets its flag (region::faulted).
//
// An interruptible wait (`limit.interrupt`, the C API) returns EINTR only when a
// caught signal arrived since the call first slept and its handler lacks SA_RESTART
// (sys/interrupt.hpp: the signals stay blocked between sleeps, so none goes unseen);
// a cancellation request acts while it sleeps. Other waits (the C++ API) go on through
// handlers: EINTR from them means only "look again".
//
// Spinning only helps when the other side runs on another CPU; when the last
// operation of the other side (`peer_cpu`, 1 + its CPU) ran on this CPU, spinning
// would only keep it off the CPU, so the waiter goes to sleep at once.
//
// And it only helps while it usually succeeds. With more runnable processes than CPUs
// (two producers and two consumers on two CPUs, say) a spinner mostly keeps a peer that
// shares its CPU from running, then sleeps anyway. So the spin adapts, per open
// description and side (`budget`, starting at spin_ns): a spin that ends in success
// doubles the budget, up to spin_ns; one that ends in sleep halves it, down to
// min_spin_ns. With CPUs to spare nothing changes; oversubscribed, the queue behaves
// like a blocking one.
template <class Blocked>
int wait_while(Blocked blocked, atomic_u32& word, atomic_u32& sleepers, const atomic_u32& peer_cpu,
               std::int64_t spin_ns, std::atomic<std::int64_t>& budget, const detail::wait_limit& limit) {
  if (spin_ns > 0 && !last_ran_here(peer_cpu)) {
    const std::int64_t allowed = std::clamp(budget.load(std::memory_order_relaxed), min_spin_ns, spin_ns);
    const std::int64_t until = sys::now_ns(CLOCK_MONOTONIC) + allowed;
    unsigned backoff = 1;
    for (unsigned i = 1;; ++i) {
      if (!blocked()) {
        if (allowed < spin_ns) budget.store(std::min(allowed * 2, spin_ns), std::memory_order_relaxed);
        return 0;
      }
      for (unsigned k = 0; k < backoff; ++k) sys::cpu_relax();
      if (backoff < spin_backoff_max) backoff *= 2;
      if ((i & 15) == 0) {
        if (sys::now_ns(CLOCK_MONOTONIC) >= until) {
          budget.store(std::max(allowed / 2, min_spin_ns), std::memory_order_relaxed);
          break;
        }
        if (last_ran_here(peer_cpu)) break;
        if (deadline_passed(limit)) return ETIMEDOUT;
      }
    }
  }
  sys::interruption* interrupt = limit.interrupt;
  if (interrupt != nullptr && interrupt->before_sleep() == EINTR) return EINTR;
  std::uint32_t seen = word.load(std::memory_order_seq_cst);
  sleepers.fetch_add(1, std::memory_order_seq_cst);
  handshake_fence();
  if (!blocked()) return 0;
  // Sleep at most recheck_ns at a time: a process killed between changing the queue
  // and waking its sleepers (or while holding the lock) wakes nobody, so a sleeper
  // looks again now and then, and the caller's loop repairs or proceeds.
  std::int64_t now = sys::now_ns(CLOCK_MONOTONIC);
  std::int64_t wake_at = now + recheck_ns;
  bool limited = false;
  if (limit.kind == detail::wait_limit::until) {
    std::int64_t left = limit.when.ns - (limit.when.clock == CLOCK_MONOTONIC ? now : sys::now_ns(limit.when.clock));
    if (now + left <= wake_at) {
      wake_at = now + left;
      limited = true;
    }
  }
  if (interrupt == nullptr) {
    int e = sys::futex_wait(&word, seen, CLOCK_MONOTONIC, &wake_at);
    if (e == ETIMEDOUT && !limited) return recheck_due;
    return e == ETIMEDOUT || e == EINTR ? e : 0;
  }
  // Interruptible: sleep a tick at a time, acting on pending signals in between. The
  // announcement above stays good across ticks: a wake-up since `seen` changed the
  // word, and the next sleep returns at once.
  for (;;) {
    int e = interrupt->sleep(&word, seen, wake_at);
    if (e == ETIMEDOUT && sys::now_ns(CLOCK_MONOTONIC) >= wake_at) return limited ? ETIMEDOUT : recheck_due;
    if (e != ETIMEDOUT && e != EINTR) return 0;  // woken, or the word moved on
    if (interrupt->before_sleep() == EINTR) return EINTR;
  }
}

// Records a committed change of the queue for poll helpers. Called after committed().
inline void announce_event(header* h) noexcept { wake_sleepers(h->event_seq, h->event_watchers); }

}  // namespace pipc::engine

#endif  // PIPC_SRC_ENGINE_WAIT_HPP
