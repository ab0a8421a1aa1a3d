// The engine's lock: one 64-bit word in the shared region, owned by the engine, with
// no pointers in it (docs/engine.md, "The locks").
//
// Layout of the word (little-endian; the futex is its low half, at the word's address):
//
//   bits 0–29   tid of the owning thread; 0 = free
//   bit  30     waiters: a thread may sleep on the futex; the releaser must wake one
//   bit  31     reserved, 0 (a foreign write may set it; it is ignored)
//   bits 32–63  low 32 bits of the owner thread's start time (clock ticks since boot)
//
// Invariants:
//   1. The word is changed only by compare-and-swap (acquire, takeover, setting the
//      waiters bit) and by its owner's release. So the tid and start time in it always
//      belong together: they name one thread for good, even after its tid is reused.
//   2. A thread holds at most the two locks of a queue, and releases each before it
//      returns to the caller: a lock is never held across a blocking wait for the queue.
//   3. An owner is dead when no thread has its tid, or the thread with that tid is a
//      zombie, or started at another time, or its process does not map the queue's
//      file (an execve by another thread put a new program in the owner's place). A contender that finds the owner dead takes
//      the lock over with one compare-and-swap from the dead owner's word, and must then
//      repair that lock's side (recovery is idempotent: a recoverer that dies is itself a
//      dead owner). A stopped owner (SIGSTOP) is alive: its side waits for SIGCONT.
//   4. All processes using a queue see one PID namespace and /proc describes it (tids are
//      compared as numbers). An owner whose /proc entry cannot be read (hidepid) but that
//      exists counts as alive: a stall is possible, a wrong takeover is not. So does an
//      owner whose word has start time 0: it could not read its own start time.
//
// ThreadSanitizer: the word is a std::atomic, taken with acquire and released with
// release ordering, which TSan models like a mutex's synchronisation; a takeover from a
// dead owner (always in another process, which TSan cannot see) is an acquire CAS like
// any other. No annotation is needed, and none of glibc's interceptors is involved (the
// source of layout 2's "unlock of an unlocked mutex" reports).
//
// Nothing here trusts the word: any value a foreign process writes leads to a takeover
// (and a recovery, which checks what it reads), a wait (a forged live owner: the side
// stalls, as with a stopped owner), or a lock that is free; never to a write outside
// the word or its futex.
#ifndef PIPC_SRC_ENGINE_LOCK_HPP
#define PIPC_SRC_ENGINE_LOCK_HPP

#include "engine/layout.hpp"
#include "queue_backend.hpp"

#include <sys/types.h>

#include <bit>
#include <cstdint>

namespace pipc::engine {

static_assert(std::endian::native == std::endian::little, "the futex is the lock word's low half");

inline constexpr std::uint64_t lock_tid_mask = (std::uint64_t{1} << 30) - 1;
inline constexpr std::uint64_t lock_waiters = std::uint64_t{1} << 30;

// The calling thread's lock word value: {start time low 32 bits, tid}; start time 0
// if the thread could not read it. Cached per thread; a forked child computes its own.
std::uint64_t lock_identity() noexcept;

// The file whose mapping holds a lock word. An owner must map it (it holds the lock
// only inside an operation on the region): a live thread with the owner's tid and start
// time whose process does not map the file is the new program of an execve that ended
// the owner (the exec'ing thread inherits the tid and the start time of the thread
// group's leader). {0, 0}: not known, not checked.
struct lock_file {
  dev_t dev = 0;
  ino_t ino = 0;
};

// Is the thread that `word` names as owner alive (and, with `file`, does its process
// map that file, as far as /proc lets this process see)? false for a free word.
bool lock_owner_alive(std::uint64_t word, const lock_file& file = {}) noexcept;

// Is the lock held by a thread that died? Then its side needs recovery, which the next
// locker does. Reads /proc when the lock is held: not for hot paths.
inline bool lock_owner_dead(const atomic_u64& word, const lock_file& file = {}) noexcept {
  const std::uint64_t w = word.load(std::memory_order_acquire);
  return w != 0 && !lock_owner_alive(w, file);
}

// The contended path of lock_acquire.
// Not noexcept: a cancellation request may unwind out of its sleep (sys/interrupt.hpp).
int lock_acquire_slow(atomic_u64& word, std::uint64_t me, const detail::wait_limit& limit, bool& owner_died,
                      const lock_file& file);

// Takes the lock. Returns 0, with `owner_died` set when the previous owner died
// holding it (the caller must repair the lock's side before going on), or ETIMEDOUT
// when `limit` ran out first: a try waits up to lock_try_patience_ns for a holder that
// may just have been preempted, never longer (it may be stopped). An interruptible
// limit also gives EINTR.
inline int lock_acquire(atomic_u64& word, const detail::wait_limit& limit, bool& owner_died,
                        const lock_file& file = {}) {
  owner_died = false;
  const std::uint64_t me = lock_identity();
  std::uint64_t expected = 0;
  if (word.compare_exchange_strong(expected, me, std::memory_order_acquire, std::memory_order_relaxed)) return 0;
  return lock_acquire_slow(word, me, limit, owner_died, file);
}

// The contended path of lock_release.
void lock_release_slow(atomic_u64& word, std::uint64_t me, std::uint64_t seen) noexcept;

// Releases the lock, which the caller holds. A word that no longer names the caller
// (a foreign write) is left alone.
inline void lock_release(atomic_u64& word) noexcept {
  const std::uint64_t me = lock_identity();
  std::uint64_t expected = me;
  if (word.compare_exchange_strong(expected, 0, std::memory_order_release, std::memory_order_relaxed)) return;
  lock_release_slow(word, me, expected);
}

// How long a try waits for a held lock.
inline constexpr std::int64_t lock_try_patience_ns = 500'000'000;
// How often a sleeping contender looks whether the owner is still alive.
inline constexpr std::int64_t lock_owner_check_ns = 10'000'000;

}  // namespace pipc::engine

#endif  // PIPC_SRC_ENGINE_LOCK_HPP
