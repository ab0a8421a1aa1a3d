// The engine's lock word: the contended paths, and telling a live owner from a dead
// one. The word's layout and invariants are in lock.hpp.
#include "engine/lock.hpp"

#include "sys/interrupt.hpp"

#include "sys/sys.hpp"

#include <algorithm>


namespace pipc::engine {

using detail::wait_limit;

namespace {

// A lock is held for a copy and a few stores, so a contender spins a while (looking,
// and trying when the word is free: a compare-and-swap, no system call) before it
// sleeps in the kernel, which costs microseconds.
constexpr int lock_spins = 4000;

const void* futex_of(const atomic_u64& word) noexcept { return &word; }  // the low half (little-endian)
std::uint32_t futex_value(std::uint64_t word) noexcept { return static_cast<std::uint32_t>(word); }

}  // namespace

std::uint64_t lock_identity() noexcept {
  // Keyed by fork generation: a forked child's thread has a tid and start time of its
  // own, but the same thread_local values as the thread that forked. (Not by pid: a
  // child may have the pid of an ancestor whose thread filled the cache, and would
  // then name that dead thread.)
  thread_local std::uint64_t cached_for = 0;
  thread_local std::uint64_t identity = 0;
  const std::uint64_t generation = sys::fork_generation();
  if (cached_for != generation) {
    const pid_t tid = sys::current_tid();
    // 0 when this thread cannot read its own /proc entry now (no file descriptor left,
    // say): the word then says "start time unknown" (see lock_owner_alive).
    std::uint64_t start = 0;
    if (sys::thread_state(tid, start) != sys::thread_status::alive) start = 0;
    identity = (start << 32) | (static_cast<std::uint64_t>(tid) & lock_tid_mask);
    cached_for = generation;
  }
  return identity;
}

bool lock_owner_alive(std::uint64_t word, const lock_file& file) noexcept {
  const auto tid = static_cast<pid_t>(word & lock_tid_mask);
  if (tid == 0) return false;
  std::uint64_t start = 0;
  switch (sys::thread_state(tid, start)) {
    case sys::thread_status::gone:
      return false;
    case sys::thread_status::unreadable:
      return true;  // invariant 4: it exists, and nothing says it is another thread
    case sys::thread_status::alive:
      break;
  }
  // A start time of 0 in the word is unknown (lock_identity could not read it): nothing
  // tells that owner from another thread with its tid, so it counts as alive while the
  // tid exists (invariant 4: a stall is possible, a wrong takeover is not).
  const auto started = static_cast<std::uint32_t>(word >> 32);
  if (started != 0 && started != static_cast<std::uint32_t>(start)) return false;
  // The owner's process must map the file (lock.hpp, lock_file): one that does not is a
  // new program that an execve put in the dead owner's place. Maps this process may not
  // read count as mapping it (invariant 4).
  return file.ino == 0 || sys::process_maps_file(tid, file.dev, file.ino) != sys::maps_answer::no;
}

namespace {
// Spins up to `spins` rounds for the word to come free, and takes it as `value`.
bool spin_for(atomic_u64& word, std::uint64_t value, int spins) noexcept {
  for (int i = 0; i < spins; ++i) {
    std::uint64_t w = word.load(std::memory_order_relaxed);
    if (w == 0 && word.compare_exchange_weak(w, value, std::memory_order_acquire, std::memory_order_relaxed)) {
      return true;
    }
    sys::cpu_relax();
  }
  return false;
}
}  // namespace

int lock_acquire_slow(atomic_u64& word, std::uint64_t me, const wait_limit& limit, bool& owner_died,
                      const lock_file& file) {
  if (spin_for(word, me, lock_spins)) return 0;

  // The time limit, on CLOCK_MONOTONIC.
  std::int64_t now = sys::now_ns(CLOCK_MONOTONIC);
  std::int64_t end = INT64_MAX;
  if (limit.kind == wait_limit::none) {
    end = now + lock_try_patience_ns;
  } else if (limit.kind == wait_limit::until) {
    const std::int64_t left = limit.when.clock == CLOCK_MONOTONIC ? limit.when.ns - now
                                                                   : limit.when.ns - sys::now_ns(limit.when.clock);
    end = now + std::max<std::int64_t>(left, 0);
  }

  // From here on this thread may sleep, so it takes the lock with the waiters bit set:
  // it cannot know whether others sleep too, and a needless wake costs little.
  bool check_owner = true;  // on the first round, and after each sleep that timed out
  for (;;) {
    std::uint64_t w = word.load(std::memory_order_relaxed);
    if (w == 0) {
      if (word.compare_exchange_weak(w, me | lock_waiters, std::memory_order_acquire, std::memory_order_relaxed)) {
        return 0;
      }
      continue;
    }
    if (check_owner) {
      check_owner = false;
      if (!lock_owner_alive(w, file)) {
        // Invariant 3: take it over from the dead owner, exactly once.
        if (word.compare_exchange_strong(w, me | lock_waiters, std::memory_order_acquire, std::memory_order_relaxed)) {
          owner_died = true;
          return 0;
        }
        check_owner = true;  // it changed meanwhile: look at the new owner
        continue;
      }
    }
    if ((w & lock_waiters) == 0) {
      if (!word.compare_exchange_weak(w, w | lock_waiters, std::memory_order_relaxed, std::memory_order_relaxed)) {
        continue;
      }
      w |= lock_waiters;
    }
    now = sys::now_ns(CLOCK_MONOTONIC);
    if (now >= end) {
      // A wake-up meant for this thread may have come with the deadline: pass it on.
      if (word.load(std::memory_order_relaxed) == 0) sys::futex_wake(futex_of(word), 1);
      return ETIMEDOUT;
    }
    const std::int64_t wake_at = std::min(end, now + lock_owner_check_ns);
    int e = 0;
    if (sys::interruption* interrupt = limit.interrupt; interrupt != nullptr) {
      // The C API: a holder may be stopped for good, so signals and cancellation must
      // reach this sleep too (sys/interrupt.hpp). The waiters bit stays: a needless wake.
      if (interrupt->before_sleep() == EINTR) return EINTR;
      e = interrupt->sleep(futex_of(word), futex_value(w), wake_at);
    } else {
      e = sys::futex_wait(futex_of(word), futex_value(w), CLOCK_MONOTONIC, &wake_at);
    }
    if (e == ETIMEDOUT) {
      check_owner = true;
    } else if (spin_for(word, me | lock_waiters, lock_spins)) {
      // Woken: spin again before the next sleep. A woken waiter that only looked once
      // lost the lock to a running contender nearly every time (it takes the lock again
      // within nanoseconds of releasing it), and slept again: starved.
      return 0;
    }
  }
}

void lock_release_slow(atomic_u64& word, std::uint64_t me, std::uint64_t seen) noexcept {
  // `seen` differs from `me`: the waiters bit is set, or the word is not this thread's.
  while ((seen & lock_tid_mask) == (me & lock_tid_mask) && (seen >> 32) == (me >> 32)) {
    if (word.compare_exchange_weak(seen, 0, std::memory_order_release, std::memory_order_relaxed)) {
      if ((seen & lock_waiters) != 0) sys::futex_wake(futex_of(word), 1);
      return;
    }
  }
}

}  // namespace pipc::engine
