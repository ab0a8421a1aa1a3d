// Waiting for the other side (docs/engine.md, "Waiting"): spinning, then sleeping on
// a futex word of the region, and the wake-up handshake that loses no wake-up.
//
// The rules every wait keeps:
//   1. A sleeper announces itself (sleeper count), fences, and looks at the queue again
//      before it sleeps; a waker commits, fences (committed(), or on x86 the locked
//      instruction of the unlock that ends its commit: committed_after_unlock()), and
//      looks at the count. With both fences sequentially consistent, one of the two
//      sees the other's store.
//   2. Every sleep has a time limit (recheck_ns at most): a process killed between its
//      commit and its wake-up, or while holding a lock, wakes nobody. (A sleep that
//      runs on a CLOCK_REALTIME deadline's clock lasts longer by as much as that clock
//      is set back meanwhile: see sleep_end_for.)
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
// The least a spin adapts down to (see budget_after_sleep).
inline constexpr std::int64_t min_spin_ns = 1'000;
// The longest spin a wait takes (the spin that wait_while is given is at most this):
// a description asked for more (nanoseconds::max() for "spin for good") takes this
// (queue.hpp, spin_for), which keeps the waits' time arithmetic (a start plus the spin,
// a budget doubled) far from overflow. A second of spinning is more than any wake-up
// it could save.
inline constexpr std::int64_t max_spin_ns = 1'000'000'000;

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
// fences sequentially consistent, one of the two sees the other's store. (A waker that
// has just released a lock uses committed_after_unlock(), below.)
//
// The waker's fence, after its commit and before it looks for sleepers.
inline void committed() noexcept { handshake_fence(); }

// The same when the waker has just released a lock (lock_release: a locked
// compare-exchange, which on x86 orders every earlier store before every later load,
// failed or not). There only the compiler must be kept from moving the loads above
// it, as Linux's smp_mb__after_atomic() does; the fence itself would cost a second
// full barrier on every send and receive (13 % of an uncontended send, measured).
// Elsewhere the fence.
inline void committed_after_unlock() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  std::atomic_signal_fence(std::memory_order_seq_cst);
#else
  committed();
#endif
}

inline std::uint32_t sleepers_after_commit(atomic_u32& sleepers) noexcept {
#ifdef PIPC_HANDSHAKE_RMW
  return sleepers.fetch_add(0, std::memory_order_seq_cst);
#else
  return sleepers.load(std::memory_order_relaxed);
#endif
}

// ---- Turns: fairness between the waiters of one side (docs/engine.md, "Fairness") ----
//
// Waiters of one side (two receivers, say) compete for each message, and one that
// spins beats one that sleeps: by the time the kernel has woken the sleeper, the
// spinner took what it was woken for, and it sleeps again. A receiver that had a CPU to
// itself starved a competitor that shared the producers' CPU (and so slept instead of
// spinning) down to 1 message in 250. So a wake-up comes with turns, as the kernel's
// queues hand a message to the receiver they wake: the waker counts the sleepers it
// wakes into the side's turn word, and until they have had their go (or turn_hold_us
// passed: a woken waiter that was stopped or died holds up the others no longer), a
// blocking call of that side that was not woken leaves every message (receivers) or
// free slot (senders) to them: a woken waiter that waits for a CPU may come long after
// the one message it was woken for, and what came meanwhile is as much its as the
// spinner's. A call about to give up (non-blocking, a try, a deadline passed) takes
// what is there: a message must never sit in the queue while a non-blocking receive
// reports EAGAIN.
//
// The word: {u32 count (low half), u32 stamp}: the turns, and when the first of them
// was granted (CLOCK_MONOTONIC µs, modulo 2^32; see add_turns). Whatever another
// process writes there only delays this side's calls by up to turn_hold_us each.
inline constexpr std::uint32_t turn_hold_us = 1000;
inline constexpr std::uint32_t max_turns = 64;

inline std::uint32_t now_us32() noexcept {
  return static_cast<std::uint32_t>(sys::now_ns(CLOCK_MONOTONIC) / 1000);
}

// A stamp this far ahead of a reader's `now` is still fresh: the reader may have read
// its clock just before another process read its own and granted the turns.
inline constexpr std::uint32_t turn_clock_skew_us = 100;

// The turns in word `w` at time `now`: 0 when none, or when they expired (or carry a
// stamp further ahead than the skew: a forged one).
constexpr std::uint32_t turns_in(std::uint64_t w, std::uint32_t now) noexcept {
  const auto stamp = static_cast<std::uint32_t>(w >> 32);
  const bool fresh = now - stamp <= turn_hold_us || stamp - now <= turn_clock_skew_us;
  if (static_cast<std::uint32_t>(w) == 0 || !fresh) return 0;
  return std::min(static_cast<std::uint32_t>(w), max_turns);
}

// The turns held now (no clock read when there are none: the usual case).
inline std::uint32_t turns_held(const atomic_u64& turns) noexcept {
  const std::uint64_t w = turns.load(std::memory_order_relaxed);
  return static_cast<std::uint32_t>(w) == 0 ? 0 : turns_in(w, now_us32());
}

// Adds `delta` turns (negative: takes some back, never below 0). The stamp is the time
// of the grant that found none: later grants and take-backs keep it, so a turn that
// nobody will take (its waiter was killed or stopped before its try) expires
// turn_hold_us after it was granted however busy the side is, instead of living as
// long as grants keep coming. (A waiter granted a turn while older ones are
// outstanding keeps it for less than turn_hold_us.)
inline void add_turns(atomic_u64& turns, std::int64_t delta) noexcept {
  const std::uint32_t now = now_us32();
  std::uint64_t w = turns.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint32_t held = turns_in(w, now);
    const auto count =
        static_cast<std::uint32_t>(std::clamp<std::int64_t>(std::int64_t{held} + delta, 0, max_turns));
    const std::uint32_t stamp = held == 0 ? now : static_cast<std::uint32_t>(w >> 32);
    const std::uint64_t next = count == 0 ? 0 : (std::uint64_t{stamp} << 32 | count);
    if (turns.compare_exchange_weak(w, next, std::memory_order_relaxed)) return;
  }
}

// A woken waiter has had its go. True when it held the last turn.
inline bool end_turn(atomic_u64& turns) noexcept {
  std::uint64_t w = turns.load(std::memory_order_relaxed);
  while (static_cast<std::uint32_t>(w) != 0) {
    const std::uint64_t next = static_cast<std::uint32_t>(w) == 1 ? 0 : w - 1;
    if (turns.compare_exchange_weak(w, next, std::memory_order_relaxed)) return next == 0;
  }
  return false;
}

// Before a commit that may end the other side's wait: a turn for each waiter that
// announced a sleep, so that a competitor that spins sees them as soon as it sees the
// change (the commit's release store publishes them). Returns how many, for
// wake_sleepers.
inline std::uint32_t grant_turns(const atomic_u32& sleepers, atomic_u64& turns) noexcept {
  const std::uint32_t announced = std::min(sleepers.load(std::memory_order_relaxed), max_turns);
  if (announced != 0) add_turns(turns, announced);
  return announced;
}

// Called after committed() (or committed_after_unlock()), outside the locks. `woken_ns`
// gets the time of the wake-up, for the sleepers' spin policy (budget_after_sleep).
// `turns`, with the `granted` turns that grant_turns gave before the commit, ends up
// with one turn per sleeper that the FUTEX_WAKE woke: those that announced a sleep but
// were not asleep (they saw the change themselves, or left) give theirs back at once,
// so that no turn is left that nobody will take. Both null for poll helpers, and for a
// waiter waking its own side.
inline void wake_sleepers(atomic_u32& word, atomic_u32& sleepers, atomic_u64* woken_ns = nullptr,
                          atomic_u64* turns = nullptr, std::uint32_t granted = 0) noexcept {
  int woke = 0;
  if (sleepers_after_commit(sleepers) != 0 && sleepers.exchange(0, std::memory_order_seq_cst) != 0) {
    if (woken_ns != nullptr) {
      woken_ns->store(static_cast<std::uint64_t>(sys::now_ns(CLOCK_MONOTONIC)), std::memory_order_relaxed);
    }
    word.fetch_add(1, std::memory_order_seq_cst);
    woke = sys::futex_wake(&word, INT_MAX);
  }
  if (turns != nullptr && static_cast<std::uint32_t>(woke) < granted) {
    add_turns(*turns, woke - std::int64_t{granted});
    // A waiter may have seen those turns and gone to sleep leaving the queue to them:
    // it is woken as when the last turn is given back (waiter_turn), not left to sleep
    // until they expire.
    handshake_fence();
    if (sleepers_after_commit(sleepers) != 0 && sleepers.exchange(0, std::memory_order_seq_cst) != 0) {
      word.fetch_add(1, std::memory_order_seq_cst);
      sys::futex_wake(&word, INT_MAX);
    }
  }
}

inline bool deadline_passed(const detail::wait_limit& limit) noexcept {
  return limit.kind == detail::wait_limit::until && sys::now_ns(limit.when.clock) >= limit.when.ns;
}

// What wait_while returns when it slept a whole recheck_ns: time for the caller's
// periodic checks (a dead lock owner, a truncated file) before it looks again.
inline constexpr int recheck_due = -1;

// The words a blocked side waits with (header, "waiting").
struct wait_words {
  atomic_u32& word;            // the futex it sleeps on (msg_seq or space_seq)
  atomic_u32& sleepers;        // where it announces a sleep
  const atomic_u64& woken_ns;  // when the other side last woke it
  const atomic_u32& peer_cpu;  // where the other side last ran (1 + CPU)
  // The spin ends when the waiter loses its CPU (its look at the clock shows a gap):
  // whoever it waits for may be the one that took the CPU.
  bool stop_when_descheduled = false;
};

// The spin policy (docs/engine.md, "Waiting"). Spinning pays when the other side runs
// on another CPU and answers within the spin; otherwise it only burns a CPU, or keeps
// off it the very process being waited for. Each open description keeps a budget per
// side, between min_spin_ns and the configured spin, and a wait spins at most that long.
//
// A spin that succeeds doubles the budget. A wait that slept learns what it needed: the
// other side stamps the time when it wakes its sleepers (wait_words::woken_ns), so the
// sleeper knows how long after its start the awaited change came, however late the
// kernel then woke it. If a spin that long (within the configured spin) would have
// succeeded, and spinning would have harmed nobody, the budget grows to twice the need
// at least; otherwise it halves. So one wait that shows spinning would have paid
// restores it: the budget cannot get stuck at its floor while the peer answers quickly
// (the trap of deciding only from whether the last spin was long enough).
//
// "Would have harmed nobody" is what the wait saw: the change came from another CPU
// (`peer_elsewhere`), and the CPUs had no other work (`crowded` is false). Crowded means
// more threads runnable than CPUs (sys::cpus_oversubscribed, looked at before a sleep
// and after a long spin), or this thread lost its CPU while it spun (a gap of more than
// descheduled_gap_ns between two looks at the clock). Then a spinner only delays other
// threads, maybe the very one it waits for, so the budget backs off, even after a spin
// that succeeded, as a blocking queue would.
struct slept_wait {
  std::int64_t needed_ns;  // from the wait's start to the change it waited for
  bool peer_elsewhere;     // the change was made on another CPU than this waiter's
  bool crowded;            // other threads wanted the CPUs meanwhile
};

// A longer gap between two looks at the clock while spinning (they are ~2 µs apart)
// means the spinner lost its CPU.
inline constexpr std::int64_t descheduled_gap_ns = 50'000;
// A spin that succeeded after this long looks whether the CPUs are oversubscribed.
inline constexpr std::int64_t long_spin_ns = 10'000;

// A thread that has not slept in a wait for this long sleeps at its next wait, without
// spinning, while the CPUs are crowded: sleepless_excess more threads runnable than
// CPUs (docs/engine.md, "Fairness"). A thread whose spins always succeed never leaves
// its CPU, and the scheduler, which moves a waiting task to another CPU mostly when
// that CPU goes idle, can then leave the other runnable threads queued on one CPU for a
// whole 100 ms: in the 2+2 contention measurement, the process alone on a CPU had up to
// 3 times the CPU time of each of the other three, and up to 30 times the messages. A
// sleep a millisecond gives the scheduler its chance; it costs a wake-up a millisecond
// only on a crowded machine, where spinning has to back off anyway. It acts only on a
// thread that waited at least sleepless_min_waits times since it last slept: one that
// waits seldom spends its time elsewhere, its spins do not decide whether its CPU goes
// idle, and without this it would skip its spin at every wait (a wait every 2 ms,
// each one past the millisecond). (Long spins need no rule: one that succeeds after
// long_spin_ns on crowded CPUs halves the budget.) A form that spared threads that had
// left their CPU anyhow, by their voluntary context switches, also spared the spinner
// that starved the others, whose lock waits count as such.
inline constexpr std::int64_t sleepless_limit_ns = 1'000'000;
// The spinner that starved the others waited about 40 times a millisecond (a full
// queue, 64 B messages), so this spares nothing the rule is for.
inline constexpr std::uint32_t sleepless_min_waits = 8;
// The check runs in waits whose spins succeed, ping-pong's round trips among them, so
// it takes an answer of sys::runnable_beyond_cpus up to 10 ms old: a fresh read of
// /proc/loadavg (~1.5 µs) each millisecond on each side landed in 0.1% of round trips,
// and raised the 64 B p99.9 from 6.2–6.8 to 7.7–8.7 µs. And it wants two threads more
// than CPUs: the count includes passing kernel threads, and with one more, each side of
// a ping-pong slept now and then (the 8 KiB p99.9, a wake-up, rose by a third), while
// two producers and two consumers on two CPUs make two more most of the time.
inline constexpr std::int64_t sleepless_answer_age_ns = 10'000'000;
inline constexpr int sleepless_excess = 2;

// The calling thread's record for the rule above.
struct sleepless_record {
  std::int64_t last_slept_ns = 0;  // its last sleep in a wait, or firing (CLOCK_MONOTONIC; 0: not yet)
  std::uint32_t waits = 0;         // its waits with a spin since then, up to sleepless_min_waits
  void slept(std::int64_t now) noexcept {
    last_slept_ns = now;
    waits = 0;
  }
};
inline thread_local sleepless_record sleepless;

// Whether a wait starting at `now` sleeps at once under the rule above; a wait that
// may not (`may_fire` false) is only counted. A thread's first wait only starts the
// clock. A wait the rule sends to sleep counts as a sleep even if it then finds it need
// not sleep, so the rule fires once a millisecond at most.
inline bool sleepless_due(std::int64_t now, bool may_fire = true) noexcept {
  sleepless_record& r = sleepless;
  if (r.last_slept_ns == 0) {
    r.slept(now);
    return false;
  }
  if (r.waits < sleepless_min_waits) ++r.waits;
  if (!may_fire || now - r.last_slept_ns <= sleepless_limit_ns || r.waits < sleepless_min_waits) return false;
  if (sys::runnable_beyond_cpus(sleepless_answer_age_ns, now) < sleepless_excess) return false;
  r.slept(now);
  return true;
}

// The hog's rest. The rule above does not always move anything: the scheduler moves a
// task to a CPU that goes idle only if the task has not run for a while (it keeps
// "cache-hot" tasks where they are), and three processes that take turns on one CPU all
// ran a moment ago; and a thread that sleeps now and then, briefly, is spared by the
// rule yet leaves its CPU idle too briefly for anything to move. So a thread whose own
// figures show that it had a CPU to itself while others queued rests a while, asleep:
// once a window, while the CPUs are crowded, a wait reads the thread's CPU times
// (sys::read_thread_cpu_times); if since the last look, hog_window_ns or more ago, it
// ran hog_ran_percent of the time and waited for a CPU hog_waited_percent of it or
// less, and a fresh count finds sleepless_excess more threads runnable than CPUs, the
// wait first sleeps hog_rest_ns on a word of its own. Its CPU then stays idle long
// enough for the scheduler to move one of the others there. Threads that share a CPU
// take turns on it (each waits about half of such a window), so they never qualify. A
// thread still alone at its next look rests again; after hog_rests_at_full_rate rests
// in a row its windows double, up to hog_window_max_ns, so where nothing can move (the
// others pinned to their CPUs, say) it gives up hog_rest_ns in each hog_window_max_ns
// at most. The rest delays what the wait waits for by up to hog_rest_ns: a message
// that comes meanwhile is taken after it (docs/engine.md, "Fairness").
inline constexpr std::int64_t hog_window_ns = 5'000'000;
inline constexpr std::int64_t hog_window_max_ns = 80'000'000;
inline constexpr std::int64_t hog_rest_ns = 2'000'000;
inline constexpr std::int64_t hog_ran_percent = 70;
inline constexpr std::int64_t hog_waited_percent = 15;
inline constexpr std::uint32_t hog_rests_at_full_rate = 5;

// The calling thread's record for the rest above.
struct hog_record {
  std::int64_t looked_ns = 0;   // when it last looked (CLOCK_MONOTONIC; 0: never)
  bool read = false;            // whether it read its CPU times then (the CPUs were crowded)
  sys::thread_cpu_times times;  // what it read
  std::uint32_t rests = 0;      // rests in a row since it was last found sharing its CPU
  std::int64_t window_ns = hog_window_ns;
  std::uint64_t rested = 0;     // rests in all (for tests)
};
inline thread_local hog_record hog;

// Did a thread whose CPU times went from `before` to `after` over `span_ns` have a CPU
// to itself (above)?
constexpr bool had_cpu_to_itself(std::int64_t span_ns, const sys::thread_cpu_times& before,
                                  const sys::thread_cpu_times& after) noexcept {
  const std::int64_t ran = after.ran_ns - before.ran_ns;
  const std::int64_t waited = after.waited_ns - before.waited_ns;
  return span_ns > 0 && ran * 100 >= span_ns * hog_ran_percent && waited >= 0 &&
         waited * 100 <= span_ns * hog_waited_percent;
}

// Whether a wait starting at `now` rests first (above). The thread looks once a window:
// while the CPUs are not crowded (by an answer up to sleepless_answer_age_ns old) that
// costs nothing more; while they are, it reads its CPU times, which the next look
// compares. A reading older than twice hog_window_max_ns only starts a new window.
inline bool hog_rest_due(std::int64_t now) noexcept {
  hog_record& h = hog;
  const std::int64_t span = now - h.looked_ns;
  if (span < h.window_ns) return false;
  h.looked_ns = now;
  sys::thread_cpu_times times;
  const bool read = sys::runnable_beyond_cpus(sleepless_answer_age_ns, now) >= sleepless_excess &&
                    sys::read_thread_cpu_times(times);
  const bool alone = read && h.read && span <= 2 * hog_window_max_ns && had_cpu_to_itself(span, h.times, times) &&
                     sys::runnable_beyond_cpus(0, now) >= sleepless_excess;
  h.read = read;
  h.times = times;
  if (!alone) {
    h.rests = 0;
    h.window_ns = hog_window_ns;
    return false;
  }
  if (++h.rests >= hog_rests_at_full_rate) h.window_ns = std::min(h.window_ns * 2, hog_window_max_ns);
  ++h.rested;
  return true;
}

// When a sleep of at most `length` from `now` (CLOCK_MONOTONIC) ends: `at` on `clock`,
// `limited` if the limit's deadline ends it. On CLOCK_MONOTONIC (a deadline on another
// clock carried over to it), except with `deadline_clock` for a deadline on
// CLOCK_REALTIME: then on that clock, so that the kernel ends the sleep as soon as the
// clock is set past the deadline (or past the sleep's end), as it ends the kernel
// queues' mq_timedreceive; carried over, the sleep would end up to `length` late. (Set
// back, the clock makes such a sleep longer by as much, as it does the kernel's.)
struct sleep_end {
  clockid_t clock = CLOCK_MONOTONIC;
  std::int64_t at = 0;
  bool limited = false;
};
inline sleep_end sleep_end_for(const detail::wait_limit& limit, std::int64_t now, std::int64_t length,
                               bool deadline_clock = false) noexcept {
  if (limit.kind != detail::wait_limit::until) return {CLOCK_MONOTONIC, now + length, false};
  const clockid_t clock = deadline_clock && limit.when.clock == CLOCK_REALTIME ? CLOCK_REALTIME : CLOCK_MONOTONIC;
  const std::int64_t from = clock == CLOCK_REALTIME ? sys::now_ns(CLOCK_REALTIME) : now;
  const std::int64_t left =
      limit.when.ns - (limit.when.clock == clock ? from : sys::now_ns(limit.when.clock));
  if (left > length) return {clock, from + length, false};
  return {clock, from + left, true};
}

// The hog's rest: asleep for hog_rest_ns on a word nobody wakes. 0 when it ended;
// ETIMEDOUT when the limit's deadline ended it; EINTR when a caught signal's handler
// without SA_RESTART ran (interruptible waits, as their sleeps; a cancellation request
// acts here too). A rest is a sleep for the sleepless rule, however it ends: the rule
// would otherwise send the wait after it to sleep again at once.
inline int rest_as_hog(const detail::wait_limit& limit) {
  sys::interruption* interrupt = limit.interrupt;
  if (interrupt != nullptr && interrupt->before_sleep() == EINTR) return EINTR;
  std::int64_t now = sys::now_ns(CLOCK_MONOTONIC);
  const sleep_end end = sleep_end_for(limit, now, hog_rest_ns);
  const atomic_u32 nobody{0};
  for (;;) {
    if (interrupt != nullptr) {
      (void)interrupt->sleep(&nobody, 0, end.at);
    } else {
      (void)sys::futex_wait(&nobody, 0, CLOCK_MONOTONIC, &end.at);
    }
    now = sys::now_ns(CLOCK_MONOTONIC);
    sleepless.slept(now);
    if (now >= end.at) return end.limited ? ETIMEDOUT : 0;
    if (interrupt != nullptr && interrupt->before_sleep() == EINTR) return EINTR;
  }
}

constexpr std::int64_t budget_after_sleep(std::int64_t budget, const slept_wait& w, std::int64_t spin_ns) noexcept {
  if (spin_ns <= min_spin_ns) return spin_ns;
  if (w.crowded || !w.peer_elsewhere || w.needed_ns > spin_ns) return std::max(budget / 2, min_spin_ns);
  return std::clamp(std::max(budget, w.needed_ns) * 2, min_spin_ns, spin_ns);
}

// How long a wait spins with budget `budget` under the configured spin: the budget,
// within [min_spin_ns, spin_ns]; spin_ns itself when that is less than min_spin_ns (a
// spin configured that short never adapts).
constexpr std::int64_t spin_allowed(std::int64_t budget, std::int64_t spin_ns) noexcept {
  return std::clamp(budget, std::min(min_spin_ns, spin_ns), spin_ns);
}

// After a spin that succeeded.
constexpr std::int64_t budget_after_spin(std::int64_t budget, bool crowded, std::int64_t spin_ns) noexcept {
  return crowded ? std::max(budget / 2, min_spin_ns) : std::min(budget * 2, spin_ns);
}

// Spins for up to the budget, then sleeps on `w.word`, while blocked() holds. Returns 0
// when the state may have changed, recheck_due after a sleep of recheck_ns, ETIMEDOUT
// when the limit passed, EINTR when a signal handler interrupted the sleep. A futex
// word in a truncated page makes the wait fail with EFAULT: that is 0 too, and the
// caller's next look at the region faults and sets its flag (region::faulted).
//
// An interruptible wait (`limit.interrupt`, the C API) returns EINTR only when a
// caught signal arrived since the call first slept and its handler lacks SA_RESTART
// (sys/interrupt.hpp: the signals stay blocked between sleeps, so none goes unseen);
// a cancellation request acts while it sleeps. Other waits (the C++ API) go on through
// handlers: EINTR from them means only "look again".
//
// When the last operation of the other side ran on this CPU, spinning would only keep
// it from running, so the waiter sleeps at once; so does a thread that has not slept
// for sleepless_limit_ns while the CPUs are crowded (sleepless_due). The spin's
// length is the budget (`budget`, per open description and side; see
// budget_after_sleep).
//
// `woken` is set when the wait ends with a wake-up (see "Turns" above): the caller
// then holds a turn, until its next try. Also, on purpose, when the wake-up came
// between the announcement and the sleep (FUTEX_WAIT says EAGAIN), whose waker took
// back the turn it had granted, and after a wake that grants none: strictly such a
// waiter holds no turn, and its end of turn may take a real holder's; but the waiter
// preempted between announcing and sleeping is the one on the crowded CPU, and
// holding no turn there let it fall further behind (docs/engine.md, "Fairness": 6
// contention values below 0.5 against 2 in 4 800, lowest 0.03 against 0.20).
template <class Blocked>
int wait_while(Blocked blocked, const wait_words& w, std::int64_t spin_ns, std::atomic<std::int64_t>& budget,
               bool& woken, const detail::wait_limit& limit) {
  std::int64_t start = spin_ns > 0 ? sys::now_ns(CLOCK_MONOTONIC) : 0;
  bool descheduled = false;
  woken = false;
  // (The hog's rest sleeps on a word of its own: it announces nothing, and is taken in
  // any wait.)
  if (spin_ns > 0 && hog_rest_due(start)) {
    if (int e = rest_as_hog(limit); e != 0) return e;
    start = sys::now_ns(CLOCK_MONOTONIC);
  }
  // (Counted, but never sent to sleep, in a wait that leaves what it found to woken
  // waiters, stop_when_descheduled: a competitor that slept there would be granted a
  // turn of its own.)
  const bool skip_spin = spin_ns > 0 && sleepless_due(start, !w.stop_when_descheduled);
  if (spin_ns > 0 && !skip_spin && !last_ran_here(w.peer_cpu)) {
    const std::int64_t allowed = spin_allowed(budget.load(std::memory_order_relaxed), spin_ns);
    const std::int64_t until = start + allowed;
    std::int64_t looked = start;
    unsigned backoff = 1;
    for (unsigned i = 1;; ++i) {
      if (!blocked()) {
        // (i ≥ 16: the clock was read, and `looked` is recent.)
        const bool crowded =
            descheduled || (i >= 16 && looked - start >= long_spin_ns && sys::cpus_oversubscribed());
        if (allowed < spin_ns || crowded) {
          budget.store(budget_after_spin(allowed, crowded, spin_ns), std::memory_order_relaxed);
        }
        return 0;
      }
      for (unsigned k = 0; k < backoff; ++k) sys::cpu_relax();
      if (backoff < spin_backoff_max) backoff *= 2;
      if ((i & 15) == 0) {
        const std::int64_t now = sys::now_ns(CLOCK_MONOTONIC);
        if (now - looked > descheduled_gap_ns) descheduled = true;
        looked = now;
        if (now >= until || last_ran_here(w.peer_cpu) || (descheduled && w.stop_when_descheduled)) break;
        if (deadline_passed(limit)) return ETIMEDOUT;
      }
    }
  }
  sys::interruption* interrupt = limit.interrupt;
  if (interrupt != nullptr && interrupt->before_sleep() == EINTR) return EINTR;
  // Where this thread slept, and whether others wanted the CPUs, for the policy.
  const std::uint32_t cpu_before = spin_ns > 0 ? sys::current_cpu() + 1 : 0;
  const bool crowded = spin_ns > 0 && (descheduled || sys::cpus_oversubscribed());
  // Called when the state changed while this wait slept (or was about to).
  auto learn = [&] {
    if (spin_ns <= 0) return;
    const std::int64_t now = sys::now_ns(CLOCK_MONOTONIC);
    // The waker's stamp, if it belongs to this wait (a foreign value falls outside it);
    // else the whole wait is the need.
    const auto stamp = static_cast<std::int64_t>(w.woken_ns.load(std::memory_order_relaxed));
    const std::int64_t needed = stamp >= start && stamp <= now ? stamp - start : now - start;
    const std::uint32_t peer = w.peer_cpu.load(std::memory_order_relaxed);
    const slept_wait what{needed, peer == 0 || peer != cpu_before, crowded};
    budget.store(budget_after_sleep(budget.load(std::memory_order_relaxed), what, spin_ns), std::memory_order_relaxed);
  };
  std::uint32_t seen = w.word.load(std::memory_order_seq_cst);
  w.sleepers.fetch_add(1, std::memory_order_seq_cst);
  handshake_fence();
  if (!blocked()) {
    learn();
    return 0;
  }
  // Sleep at most recheck_ns at a time: a process killed between changing the queue
  // and waking its sleepers (or while holding the lock) wakes nobody, so a sleeper
  // looks again now and then, and the caller's loop repairs or proceeds.
  std::int64_t now = sys::now_ns(CLOCK_MONOTONIC);
  sleepless.slept(now);
  if (interrupt == nullptr) {
    const sleep_end end = sleep_end_for(limit, now, recheck_ns, true);
    int e = sys::futex_wait(&w.word, seen, end.clock, &end.at);
    if (e == ETIMEDOUT && !end.limited) return recheck_due;
    if (e == ETIMEDOUT || e == EINTR) return e;
    learn();
    woken = true;
    return 0;
  }
  // Interruptible: sleep a tick at a time, acting on pending signals in between. The
  // announcement above stays good across ticks: a wake-up since `seen` changed the
  // word, and the next sleep returns at once. The ticks are on CLOCK_MONOTONIC (a
  // realtime clock set back must not stretch one), so the deadline is looked at on its
  // own clock after each: one set past it ends the wait within a tick.
  const sleep_end end = sleep_end_for(limit, now, recheck_ns);
  for (;;) {
    int e = interrupt->sleep(&w.word, seen, end.at);
    if (e == ETIMEDOUT && sys::now_ns(CLOCK_MONOTONIC) >= end.at) return end.limited ? ETIMEDOUT : recheck_due;
    if (e == ETIMEDOUT && deadline_passed(limit)) return ETIMEDOUT;
    if (e != ETIMEDOUT && e != EINTR) {
      learn();
      woken = true;
      return 0;  // woken, or the word moved on
    }
    if (interrupt->before_sleep() == EINTR) return EINTR;
  }
}

// Records a committed change of the queue for poll helpers. Called after committed()
// (or committed_after_unlock()).
inline void announce_event(header* h) noexcept { wake_sleepers(h->event_seq, h->event_watchers); }

}  // namespace pipc::engine

#endif  // PIPC_SRC_ENGINE_WAIT_HPP
