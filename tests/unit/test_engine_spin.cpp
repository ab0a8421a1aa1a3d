// Tests of the engine's spin policy (src/engine/wait.hpp, docs/engine.md "Waiting"):
// the budget a blocked side spins before it sleeps. It must not lock itself into
// sleeping while the peer answers quickly from another CPU, and it must back off when
// spinning cannot help (the peer needs this CPU, or answers too late).
#include "engine_support.hpp"
#include "support.hpp"

#include "engine/queue.hpp"
#include "engine/region.hpp"
#include "engine/wait.hpp"
#include "sys/sys.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

namespace {

namespace eng = pipc::engine;
using pipc::detail::wait_limit;
using pipc::test::affinity_guard;
using pipc::test::pin_to;
using pipc::test::two_cpus;
using pipc::test::unique_name;
using pipc::test::unlink_guard;

constexpr std::int64_t us = 1000;

// ---- the decision, as a function ----

TEST(SpinPolicy, SleepThatSpinningWouldHaveAvoidedRaisesTheBudgetFromTheFloor) {
  // The trap of the old policy: at its floor, a 1 µs spin never succeeds when a round
  // trip takes 3 µs, so it never grew again.
  const eng::slept_wait quick_peer{3 * us, /*peer_elsewhere=*/true, /*preempted=*/false};
  EXPECT_EQ(eng::budget_after_sleep(eng::min_spin_ns, quick_peer, 20 * us), 6 * us);
  // And from there the next spin covers the need: it succeeds, and doubles.
  EXPECT_EQ(eng::budget_after_spin(6 * us, false, 20 * us), 12 * us);
  EXPECT_EQ(eng::budget_after_spin(12 * us, false, 20 * us), 20 * us);
  // A spin that succeeded only after losing its CPU halves it.
  EXPECT_EQ(eng::budget_after_spin(12 * us, true, 20 * us), 6 * us);
}

TEST(SpinPolicy, BudgetStaysWithinTheFloorAndTheConfiguredSpin) {
  const eng::slept_wait almost_spin{19 * us, true, false};
  EXPECT_EQ(eng::budget_after_sleep(10 * us, almost_spin, 20 * us), 20 * us);
  const eng::slept_wait instant{0, true, false};
  EXPECT_EQ(eng::budget_after_sleep(eng::min_spin_ns, instant, 20 * us), 2 * eng::min_spin_ns);
  const eng::slept_wait slow{1'000 * us, true, false};
  EXPECT_EQ(eng::budget_after_sleep(eng::min_spin_ns, slow, 20 * us), eng::min_spin_ns);
  // A configured spin at or below the floor is kept as it is.
  EXPECT_EQ(eng::budget_after_sleep(500, instant, 500), 500);
}

TEST(SpinPolicy, BacksOffWhenSpinningCouldNotHaveHelped) {
  // The peer answered later than any allowed spin: sleeping was right.
  EXPECT_EQ(eng::budget_after_sleep(20 * us, {50 * us, true, false}, 20 * us), 10 * us);
  // The peer answered from this CPU: spinning would have kept it from running.
  EXPECT_EQ(eng::budget_after_sleep(20 * us, {2 * us, false, false}, 20 * us), 10 * us);
  // This thread lost its CPU while it spun: more runnable threads than CPUs, where a
  // spinner delays the others. Repeated, the budget reaches the floor and stays there.
  std::int64_t budget = 20 * us;
  for (int i = 0; i < 10; ++i) budget = eng::budget_after_sleep(budget, {2 * us, true, true}, 20 * us);
  EXPECT_EQ(budget, eng::min_spin_ns);
}

// ---- the policy at work, between two threads ----

struct spin_queue {
  unlink_guard guard;
  std::unique_ptr<eng::queue> q;
  explicit spin_queue(const char* tag, std::int64_t spin_ns)
      : guard(unique_name(tag), pipc::name_kind::engine_queue) {
    EXPECT_EQ(eng::queue::open(pipc::test::create_request(guard.name(), 4, 8, spin_ns), q), 0);
  }
};

// A thread's CPU times as the hog's rest reads them (sys::read_thread_cpu_times), made
// up from the clock: alone on its CPU (it runs all the time, never waits for it), or
// sharing it (runs half the time, waits the other half).
bool alone_on_cpu(pipc::sys::thread_cpu_times& t) {
  t = {pipc::sys::now_ns(CLOCK_MONOTONIC), 0};
  return true;
}
bool sharing_cpu(pipc::sys::thread_cpu_times& t) {
  const std::int64_t now = pipc::sys::now_ns(CLOCK_MONOTONIC);
  t = {now / 2, now / 2};
  return true;
}

// Makes the policy see `excess` more runnable threads than CPUs, whatever else runs,
// and each thread's CPU times as `times` says (by default sharing its CPU, so that only
// the tests about the hog's rest see one).
class cpus_seen_as {
 public:
  explicit cpus_seen_as(int excess, bool (*times)(pipc::sys::thread_cpu_times&) = sharing_cpu) {
    pipc::sys::override_cpus_oversubscribed(excess);
    pipc::sys::override_thread_cpu_times(times);
  }
  cpus_seen_as(const cpus_seen_as&) = delete;
  cpus_seen_as& operator=(const cpus_seen_as&) = delete;
  ~cpus_seen_as() {
    pipc::sys::override_cpus_oversubscribed(-1);
    pipc::sys::override_thread_cpu_times(nullptr);
  }
};

// A machine with CPUs to spare (ctest runs two tests at a time): for the tests about what
// the waits themselves show.
class cpus_to_spare : cpus_seen_as {
 public:
  cpus_to_spare() : cpus_seen_as(0) {}
};

// One blocking receive of a u64 message; 0 or the error.
int receive_one(eng::queue& q, std::uint64_t& v, const wait_limit& limit = wait_limit::blocking()) {
  std::size_t size = 0;
  unsigned priority = 0;
  return q.receive(&v, sizeof v, size, priority, limit, false);
}

int send_one(eng::queue& q, std::uint64_t v, const wait_limit& limit = wait_limit::blocking()) {
  return q.send(&v, sizeof v, 0, limit, false);
}

void busy_wait(std::chrono::microseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) {
  }
}

// A receiver whose sender was slow has backed off to the floor; once the sender answers
// within the spin from another CPU, the budget must come back (the old policy stayed at
// the floor for good: every 1 µs spin failed, and only a successful spin could raise it).
TEST(SpinPolicy, ReceiverBudgetRecoversWhenThePeerTurnsQuick) {
  const auto [cpu_a, cpu_b] = two_cpus();
  if (cpu_a < 0) GTEST_SKIP() << "needs two CPUs";
  constexpr std::int64_t spin = 400 * us;
  cpus_to_spare spare;
  spin_queue sq("spin-recover", spin);
  ASSERT_NE(sq.q, nullptr);
  eng::queue& q = *sq.q;
  constexpr int slow = 12;
  constexpr int quick = 200;
  std::atomic<std::int64_t> budget_after_slow{-1};
  std::atomic<std::int64_t> best_after{0};
  std::atomic<int> received{0};
  std::thread receiver([&, cpu = cpu_a] {
    pin_to(cpu);
    for (int i = 0; i < slow + quick; ++i) {
      std::uint64_t v = 0;
      ASSERT_EQ(receive_one(q, v), 0);
      received.store(i + 1);
      if (i + 1 == slow) budget_after_slow.store(q.receive_spin_budget());
      if (i + 1 > slow) best_after.store(std::max(best_after.load(), q.receive_spin_budget()));
    }
  });
  affinity_guard restore;
  pin_to(cpu_b);
  for (int i = 0; i < slow + quick; ++i) {
    // Each message after the receiver has started waiting for it: slow ones 2 ms after,
    // quick ones 40 µs after, busy on this CPU meanwhile (the peer keeps running).
    while (received.load() < i) {
    }
    if (i < slow) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    } else {
      busy_wait(std::chrono::microseconds(40));
    }
    ASSERT_EQ(send_one(q, static_cast<std::uint64_t>(i)), 0);
  }
  receiver.join();
  EXPECT_EQ(budget_after_slow.load(), eng::min_spin_ns) << "2 ms answers: the spin should have backed off";
  EXPECT_GE(best_after.load(), spin / 2) << "40 µs answers from another CPU: the spin should have come back";
}

// A sender that shares the receiver's CPU: the receiver must not spin, and its budget
// backs off to the floor.
TEST(SpinPolicy, ReceiverBacksOffWhenThePeerNeedsItsCpu) {
  const auto [cpu_a, cpu_b] = two_cpus();
  if (cpu_a < 0) GTEST_SKIP() << "needs two CPUs (else no spin at all)";
  (void)cpu_b;
  spin_queue sq("spin-samecpu", 200 * us);
  ASSERT_NE(sq.q, nullptr);
  eng::queue& q = *sq.q;
  constexpr int count = 200;
  std::thread receiver([&, cpu = cpu_a] {
    pin_to(cpu);
    for (int i = 0; i < count; ++i) {
      std::uint64_t v = 0;
      ASSERT_EQ(receive_one(q, v), 0);
    }
  });
  affinity_guard restore;
  pin_to(cpu_a);
  for (int i = 0; i < count; ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    ASSERT_EQ(send_one(q, static_cast<std::uint64_t>(i)), 0);
  }
  receiver.join();
  EXPECT_EQ(q.receive_spin_budget(), eng::min_spin_ns);
}

}  // namespace

namespace {

// Busy processes pinned to `cpu`, killed when this goes out of scope.
class cpu_hogs {
 public:
  cpu_hogs(int cpu, int count) {
    for (int i = 0; i < count; ++i) {
      pid_t pid = ::fork();
      if (pid == 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        ::sched_setaffinity(0, sizeof set, &set);
        std::atomic<std::uint64_t> n{0};
        for (;;) n.fetch_add(1, std::memory_order_relaxed);
      }
      if (pid > 0) pids_.push_back(pid);
    }
  }
  cpu_hogs(const cpu_hogs&) = delete;
  cpu_hogs& operator=(const cpu_hogs&) = delete;
  ~cpu_hogs() {
    for (pid_t pid : pids_) ::kill(pid, SIGKILL);
    for (pid_t pid : pids_) ::waitpid(pid, nullptr, 0);
  }

 private:
  std::vector<pid_t> pids_;
};

// More runnable processes than CPUs: two busy processes share the receiver's CPU. Its
// spins would succeed (the sender answers within 40 µs from the other CPU), but only by
// taking the CPU from the busy ones, so the receiver's spin must back off.
TEST(SpinPolicy, ReceiverBacksOffWhenTheMachineIsOversubscribed) {
  const auto [cpu_a, cpu_b] = two_cpus();
  if (cpu_a < 0) GTEST_SKIP() << "needs two CPUs";
  constexpr std::int64_t spin = 200 * us;
  spin_queue sq("spin-busy", spin);
  ASSERT_NE(sq.q, nullptr);
  eng::queue& q = *sq.q;
  cpu_hogs hogs_a(cpu_a, 2);
  constexpr int count = 300;
  std::atomic<int> received{0};
  std::int64_t sum = 0;
  int at_floor = 0;
  std::thread receiver([&, cpu = cpu_a] {
    pin_to(cpu);
    for (int i = 0; i < count; ++i) {
      std::uint64_t v = 0;
      ASSERT_EQ(receive_one(q, v), 0);
      received.store(i + 1);
      sum += q.receive_spin_budget();
      if (q.receive_spin_budget() <= 4 * eng::min_spin_ns) ++at_floor;
    }
  });
  affinity_guard restore;
  pin_to(cpu_b);
  for (int i = 0; i < count; ++i) {
    while (received.load() < i) {
    }
    busy_wait(std::chrono::microseconds(40));
    ASSERT_EQ(send_one(q, static_cast<std::uint64_t>(i)), 0);
  }
  receiver.join();
  // With CPUs to spare these 40 µs answers keep the budget at the full 200 µs (the
  // test above); here most receives must find it backed off.
  EXPECT_GE(at_floor, count / 2) << "mean budget " << sum / count << " ns";
}

// A wait that leaves what it found to a woken waiter's turn spins for as long as the
// turn lasts, but not once it has lost its CPU: the waiter it waits for may be the one
// that took it (wait_words::stop_when_descheduled). With a busy process on its CPU, a
// spin allowed a whole second must end in a sleep as soon as the scheduler first
// takes the CPU away (a slice: milliseconds).
TEST(SpinPolicy, SpinThatStopsWhenDescheduledSleepsOnceItLosesItsCpu) {
  const auto [cpu_a, cpu_b] = two_cpus();
  if (cpu_a < 0) GTEST_SKIP() << "needs two CPUs";
  cpus_to_spare spare;  // (the hog below makes the CPUs crowded, which is not what ends this spin)
  constexpr std::int64_t second = 1'000'000'000;
  eng::atomic_u32 word{0}, sleepers{0}, peer_cpu{0};
  eng::atomic_u64 woken_ns{0};
  eng::wait_words words{word, sleepers, woken_ns, peer_cpu};
  words.stop_when_descheduled = true;
  std::atomic<bool> done{false};
  std::atomic<std::int64_t> slept_after{-1};
  std::thread watcher([&, cpu = cpu_b] {
    pin_to(cpu);
    const auto start = std::chrono::steady_clock::now();
    while (sleepers.load() == 0 && std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    slept_after.store(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start)
                          .count());
    done.store(true);
    eng::wake_sleepers(word, sleepers);
  });
  int e = 0;
  {
    affinity_guard restore;
    pin_to(cpu_a);
    cpu_hogs hog(cpu_a, 1);
    std::atomic<std::int64_t> budget{second};
    bool woken = false;
    const auto limit = wait_limit::at({CLOCK_MONOTONIC, pipc::sys::now_ns(CLOCK_MONOTONIC) + 5 * second});
    e = eng::wait_while([&] { return !done.load(); }, words, second, budget, woken, limit);
  }
  watcher.join();
  EXPECT_EQ(e, 0);
  EXPECT_GE(slept_after.load(), 0);
  EXPECT_LT(slept_after.load(), 500) << "ms before the wait slept: it spun on after losing its CPU";
}

// The test thread pinned to one CPU, and a peer pinned to another that ends each of its
// waits 20 µs after it began. wait() runs one wait_while, spinning up to a second with a
// budget of its own (spins that succeed do not shrink the next), and returns its result.
class waits_ended_from_another_cpu {
 public:
  static constexpr std::int64_t second = 1'000'000'000;
  waits_ended_from_another_cpu(int own_cpu, int peer_cpu)
      : peer_cpu_{static_cast<std::uint32_t>(peer_cpu + 1)}, peer_([this, peer_cpu] { run_peer(peer_cpu); }) {
    pin_to(own_cpu);
  }
  waits_ended_from_another_cpu(const waits_ended_from_another_cpu&) = delete;
  waits_ended_from_another_cpu& operator=(const waits_ended_from_another_cpu&) = delete;
  ~waits_ended_from_another_cpu() {
    over_.store(true);
    peer_.join();
  }
  int wait(bool& woken) {
    const int i = ++waits_;
    std::atomic<std::int64_t> budget{second};
    begun_.store(i);
    return eng::wait_while([&] { return done_.load() < i; }, words_, second, budget, woken, limit_);
  }

 private:
  void run_peer(int cpu) {
    pin_to(cpu);
    for (int i = 1;; ++i) {
      while (begun_.load() < i) {
        if (over_.load()) return;
      }
      busy_wait(std::chrono::microseconds(20));
      done_.store(i);
      eng::committed();
      eng::wake_sleepers(word_, sleepers_);
    }
  }
  eng::atomic_u32 word_{0}, sleepers_{0}, peer_cpu_;
  eng::atomic_u64 woken_ns_{0};
  const eng::wait_words words_{word_, sleepers_, woken_ns_, peer_cpu_};
  std::atomic<int> done_{0}, begun_{0};
  std::atomic<bool> over_{false};
  int waits_ = 0;
  const wait_limit limit_ = wait_limit::at({CLOCK_MONOTONIC, pipc::sys::now_ns(CLOCK_MONOTONIC) + 10 * second});
  affinity_guard restore_;  // (before the pinning in the constructor's body)
  std::thread peer_;
};

// On oversubscribed CPUs (sleepless_excess more runnable threads than CPUs), a thread
// whose spins would all succeed still sleeps in a wait once it has not slept for
// sleepless_limit_ns: the scheduler, which moves waiting tasks mostly to a CPU that
// goes idle, gets its chance (docs/engine.md, "Fairness"). With one thread fewer, or
// CPUs to spare, it never sleeps. Each of 400 waits, spinning up to a second, ends
// from another CPU 20 µs after it began. A thread that works 2 ms between its waits
// sleeps in one wait of sleepless_min_waits at most, not in every one.
TEST(SpinPolicy, ThreadThatNeverSleepsSleepsOnceAMillisecondOnOversubscribedCpus) {
  const auto [cpu_a, cpu_b] = two_cpus();
  if (cpu_a < 0) GTEST_SKIP() << "needs two CPUs";
  struct outcome {
    int slept = 0;
    std::int64_t took_ns = 0;
  };
  auto run = [&](int excess, int waits = 400, std::chrono::microseconds work = {}) {
    cpus_seen_as seen(excess);
    waits_ended_from_another_cpu peer(cpu_a, cpu_b);
    outcome out;
    const std::int64_t start = pipc::sys::now_ns(CLOCK_MONOTONIC);
    for (int i = 1; i <= waits; ++i) {
      bool woken = false;
      EXPECT_EQ(peer.wait(woken), 0);
      if (woken) ++out.slept;
      busy_wait(work);
    }
    out.took_ns = pipc::sys::now_ns(CLOCK_MONOTONIC) - start;
    return out;
  };
  const outcome crowded = run(eng::sleepless_excess);
  const std::int64_t most = crowded.took_ns / eng::sleepless_limit_ns + 1;
  EXPECT_GE(crowded.slept, 3) << "in " << crowded.took_ns / 1000 << " µs";
  EXPECT_LE(crowded.slept, most) << "more than one sleep a millisecond, in " << crowded.took_ns / 1000 << " µs";
  EXPECT_EQ(run(eng::sleepless_excess - 1).slept, 0) << "slept with one thread more than CPUs";
  EXPECT_EQ(run(0).slept, 0) << "slept with CPUs to spare";
  constexpr int seldom = 3 * static_cast<int>(eng::sleepless_min_waits);
  const outcome working = run(eng::sleepless_excess, seldom, std::chrono::milliseconds(2));
  EXPECT_GE(working.slept, 1) << "a thread that waits seldom never slept";
  EXPECT_LE(working.slept, 3) << "a thread that waits every 2 ms slept in more than one wait of "
                              << eng::sleepless_min_waits;
}

// The rule's decision (sleepless_due): a thread's first wait starts its clock; a wait
// fires when the thread has not slept in a wait (nor had the rule fire) for
// sleepless_limit_ns, has waited sleepless_min_waits times since, and sleepless_excess
// more threads are runnable than CPUs; a firing counts as a sleep. A wait that may not
// fire is counted all the same.
TEST(SpinPolicy, SleeplessRuleFiresOnceAMillisecondAtMost) {
  cpus_seen_as crowded(eng::sleepless_excess);
  constexpr std::int64_t ms = eng::sleepless_limit_ns;
  constexpr std::uint32_t enough = eng::sleepless_min_waits;
  eng::sleepless = {};
  const std::int64_t t = pipc::sys::now_ns(CLOCK_MONOTONIC);
  EXPECT_FALSE(eng::sleepless_due(t)) << "a thread's first wait only starts the clock";
  for (std::uint32_t i = 1; i < enough; ++i) {
    EXPECT_FALSE(eng::sleepless_due(t + i)) << "fired within the millisecond";
  }
  EXPECT_TRUE(eng::sleepless_due(t + ms + 1)) << "a millisecond without a sleep, " << enough << " waits, crowded";
  EXPECT_FALSE(eng::sleepless_due(t + ms + 2)) << "fired twice within a millisecond";
  for (std::uint32_t i = 1; i < enough - 2; ++i) EXPECT_FALSE(eng::sleepless_due(t + ms + 2 + i));
  EXPECT_FALSE(eng::sleepless_due(t + 2 * ms + 2, false)) << "fired in a wait that may not";
  EXPECT_TRUE(eng::sleepless_due(t + 2 * ms + 3)) << "the wait that may not fire was not counted";
  eng::sleepless.slept(t + 3 * ms);  // as a wait that slept
  for (std::uint32_t i = 1; i < enough; ++i) EXPECT_FALSE(eng::sleepless_due(t + 3 * ms + i));
  EXPECT_FALSE(eng::sleepless_due(t + 3 * ms + ms / 2)) << "fired for a thread that slept";
  pipc::sys::override_cpus_oversubscribed(eng::sleepless_excess - 1);
  EXPECT_FALSE(eng::sleepless_due(t + 5 * ms)) << "fired with one thread more than CPUs";
  pipc::sys::override_cpus_oversubscribed(eng::sleepless_excess);
  EXPECT_TRUE(eng::sleepless_due(t + 5 * ms));
  // A thread that waits seldom: a wait every 2 ms fires once in sleepless_min_waits.
  eng::sleepless.slept(t + 6 * ms);
  int fired = 0;
  for (std::uint32_t i = 1; i <= 4 * enough; ++i) fired += eng::sleepless_due(t + 6 * ms + 2 * ms * i) ? 1 : 0;
  EXPECT_EQ(fired, 4) << "a thread that waits every 2 ms";
}

// A wait that leaves what it found to woken waiters (wait_words::stop_when_descheduled)
// never takes the rule: a competitor that slept there would be granted a turn of its
// own. Seen in the sleeper count: a wait whose state has already changed returns from
// its spin without announcing a sleep, but announces one (and then finds it need not
// sleep) when the rule skips the spin.
TEST(SpinPolicy, SleeplessRuleSparesTheWaitThatLeavesToTurns) {
  cpus_seen_as crowded(eng::sleepless_excess);
  constexpr std::int64_t second = 1'000'000'000;
  eng::atomic_u32 word{0}, sleepers{0}, peer_cpu{0};
  eng::atomic_u64 woken_ns{0};
  eng::wait_words words{word, sleepers, woken_ns, peer_cpu};
  const auto limit = wait_limit::at({CLOCK_MONOTONIC, pipc::sys::now_ns(CLOCK_MONOTONIC) + second});
  auto wait_once = [&] {
    // The rule is due: the thread last slept 2 ms ago, and has waited often since.
    eng::sleepless = {pipc::sys::now_ns(CLOCK_MONOTONIC) - 2 * eng::sleepless_limit_ns, eng::sleepless_min_waits};
    std::atomic<std::int64_t> budget{second};
    bool woken = false;
    EXPECT_EQ(eng::wait_while([] { return false; }, words, second, budget, woken, limit), 0);
    EXPECT_FALSE(woken);
  };
  words.stop_when_descheduled = true;
  wait_once();
  EXPECT_EQ(sleepers.load(), 0u) << "the wait that leaves to turns took the rule";
  words.stop_when_descheduled = false;
  wait_once();
  EXPECT_EQ(sleepers.load(), 1u) << "the rule did not act in an ordinary wait";
}

// The hog's verdict (had_cpu_to_itself): ran hog_ran_percent of a window or more, and
// waited for a CPU hog_waited_percent of it or less.
TEST(SpinPolicy, HogIsAThreadThatRanAloneOnItsCpu) {
  constexpr std::int64_t ms = 1'000'000;
  using times = pipc::sys::thread_cpu_times;
  const times start{100 * ms, 50 * ms};
  EXPECT_TRUE(eng::had_cpu_to_itself(5 * ms, start, {start.ran_ns + 5 * ms, start.waited_ns}));
  EXPECT_TRUE(eng::had_cpu_to_itself(10 * ms, start, {start.ran_ns + 8 * ms, start.waited_ns + ms}));
  EXPECT_FALSE(eng::had_cpu_to_itself(10 * ms, start, {start.ran_ns + 8 * ms, start.waited_ns + 2 * ms}))
      << "waited for a CPU a fifth of the time";
  EXPECT_FALSE(eng::had_cpu_to_itself(10 * ms, start, {start.ran_ns + 5 * ms, start.waited_ns + 5 * ms}))
      << "took turns with another thread";
  EXPECT_TRUE(eng::had_cpu_to_itself(10 * ms, start, {start.ran_ns + 7 * ms, start.waited_ns}));
  EXPECT_FALSE(eng::had_cpu_to_itself(10 * ms, start, {start.ran_ns + 6 * ms, start.waited_ns})) << "slept";
  EXPECT_FALSE(eng::had_cpu_to_itself(0, start, start));
  EXPECT_FALSE(eng::had_cpu_to_itself(10 * ms, start, {start.ran_ns + 10 * ms, start.waited_ns - ms}))
      << "times that went back";
}

// A thread alone on its CPU while the CPUs are crowded rests hog_rest_ns at a wait, at
// most once a window; after hog_rests_at_full_rate rests in a row its windows double.
// Sharing its CPU, or with one thread fewer than crowded, it never rests. Each wait,
// spinning up to a second, ends from another CPU 20 µs after it began.
TEST(SpinPolicy, ThreadAloneOnItsCpuRestsWhileOthersQueueAndBacksOff) {
  const auto [cpu_a, cpu_b] = two_cpus();
  if (cpu_a < 0) GTEST_SKIP() << "needs two CPUs";
  constexpr std::int64_t run_for = 150'000'000;
  auto rests = [&](int excess, bool (*times)(pipc::sys::thread_cpu_times&)) {
    cpus_seen_as seen(excess, times);
    eng::sleepless = {};
    eng::hog = {};
    waits_ended_from_another_cpu peer(cpu_a, cpu_b);
    const std::int64_t start = pipc::sys::now_ns(CLOCK_MONOTONIC);
    while (pipc::sys::now_ns(CLOCK_MONOTONIC) - start < run_for) {
      bool woken = false;
      EXPECT_EQ(peer.wait(woken), 0);
    }
    return static_cast<int>(eng::hog.rested);
  };
  // The first look only reads the times; then a rest a window after each look (the
  // rest is part of the window): five 5 ms apart, then 10, 20 and 40 ms apart: 8 in
  // 150 ms. Without the back-off: about 30 (29 measured).
  const int alone = rests(eng::sleepless_excess, alone_on_cpu);
  EXPECT_GE(alone, static_cast<int>(eng::hog_rests_at_full_rate)) << "a thread alone on its CPU did not rest";
  EXPECT_LE(alone, 9) << "rests without backing off";
  EXPECT_EQ(rests(eng::sleepless_excess, sharing_cpu), 0) << "rested while sharing its CPU";
  EXPECT_EQ(rests(eng::sleepless_excess - 1, alone_on_cpu), 0) << "rested with one thread more than CPUs";
}

// The rest itself: what the wait waits for is not looked at meanwhile; a deadline cuts
// it short; a caught signal without SA_RESTART interrupts an interruptible wait (at the
// end of the rest or of a tick: the signals stay blocked, sys/interrupt.hpp).
std::atomic<int> rest_signals{0};
void on_rest_signal(int) { rest_signals.fetch_add(1); }

TEST(SpinPolicy, HogRestIgnoresTheQueueEndsAtTheDeadlineAndTakesSignals) {
  constexpr std::int64_t ms = 1'000'000;
  cpus_seen_as crowded(eng::sleepless_excess, alone_on_cpu);
  eng::atomic_u32 word{0}, sleepers{0}, peer_cpu{0};
  eng::atomic_u64 woken_ns{0};
  const eng::wait_words words{word, sleepers, woken_ns, peer_cpu};
  // Makes the next wait find this thread alone on its CPU for two windows.
  auto due = [] {
    const std::int64_t now = pipc::sys::now_ns(CLOCK_MONOTONIC);
    eng::hog = {now - 2 * eng::hog_window_ns, true, {now - 2 * eng::hog_window_ns, 0}, 0, eng::hog_window_ns};
  };
  auto took_ns = [](std::int64_t since) { return pipc::sys::now_ns(CLOCK_MONOTONIC) - since; };
  std::atomic<std::int64_t> budget{ms};
  bool woken = false;

  due();
  std::atomic<bool> blocked{true};
  std::int64_t t0 = pipc::sys::now_ns(CLOCK_MONOTONIC);
  std::thread change([&] {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    blocked.store(false);
    eng::committed();
    eng::wake_sleepers(word, sleepers);
  });
  EXPECT_EQ(eng::wait_while([&] { return blocked.load(); }, words, ms, budget, woken, wait_limit::blocking()), 0);
  change.join();
  EXPECT_GE(took_ns(t0), eng::hog_rest_ns) << "the rest ended when the state changed";

  due();
  const std::uint64_t rested = eng::hog.rested;
  t0 = pipc::sys::now_ns(CLOCK_MONOTONIC);
  EXPECT_EQ(eng::wait_while([] { return true; }, words, ms, budget, woken, wait_limit::at({CLOCK_MONOTONIC, t0 + ms / 2})),
            ETIMEDOUT);
  EXPECT_EQ(eng::hog.rested, rested + 1) << "the wait did not rest";
  t0 = pipc::sys::now_ns(CLOCK_MONOTONIC);
  EXPECT_EQ(eng::rest_as_hog(wait_limit::at({CLOCK_MONOTONIC, t0 + ms / 2})), ETIMEDOUT)
      << "the rest outlived the deadline";
  // The sleepless rule, due before the rest (its last sleep long ago, its waits
  // counted), is not due after it: the rest was a sleep.
  t0 = pipc::sys::now_ns(CLOCK_MONOTONIC);
  eng::sleepless = {t0 - 10 * ms, eng::sleepless_min_waits};
  EXPECT_EQ(eng::rest_as_hog(wait_limit::at({CLOCK_MONOTONIC, t0 + 10 * eng::hog_rest_ns})), 0)
      << "a deadline after the rest ended it";
  EXPECT_GE(took_ns(t0), eng::hog_rest_ns);
  EXPECT_FALSE(eng::sleepless_due(pipc::sys::now_ns(CLOCK_MONOTONIC))) << "the wait after the rest skips its spin";

  struct sigaction action {}, old {};
  action.sa_handler = on_rest_signal;  // no SA_RESTART
  sigemptyset(&action.sa_mask);
  ASSERT_EQ(::sigaction(SIGUSR1, &action, &old), 0);
  rest_signals = 0;
  due();
  // A signal every millisecond until the wait returns: one that comes before the wait
  // blocks the signals runs its handler outside it, and the next ends it.
  const pthread_t self = ::pthread_self();
  std::atomic<bool> returned{false};
  std::thread signaller([self, &returned] {
    while (!returned.load()) {
      ::pthread_kill(self, SIGUSR1);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  int e = 0;
  {
    pipc::sys::interruption interrupt;
    wait_limit limit = wait_limit::blocking();
    limit.interrupt = &interrupt;
    e = eng::wait_while([] { return true; }, words, ms, budget, woken, limit);
  }
  returned.store(true);
  signaller.join();
  ::sigaction(SIGUSR1, &old, nullptr);
  EXPECT_EQ(e, EINTR);
  EXPECT_GE(rest_signals.load(), 1);
}

// The hog's rest reads the calling thread's own figures: time on a CPU grows while it
// runs, and neither figure goes back. (The thread runs 20 ms of its own CPU time, by
// CLOCK_THREAD_CPUTIME_ID, however long that takes on a busy machine; the kernel's
// figure may lag by a scheduler tick.)
TEST(SpinPolicy, ThreadCpuTimesAreTheCallingThreads) {
  pipc::sys::thread_cpu_times before, after;
  ASSERT_TRUE(pipc::sys::read_thread_cpu_times(before)) << "no /proc/thread-self/schedstat";
  const std::int64_t cpu_start = pipc::sys::now_ns(CLOCK_THREAD_CPUTIME_ID);
  while (pipc::sys::now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu_start < 20'000'000) {
  }
  ASSERT_TRUE(pipc::sys::read_thread_cpu_times(after));
  EXPECT_GE(after.ran_ns - before.ran_ns, 10'000'000) << "20 ms of running showed less than 10 ms";
  EXPECT_GE(after.waited_ns, before.waited_ns);
  std::thread other([&] {
    pipc::sys::thread_cpu_times mine;
    ASSERT_TRUE(pipc::sys::read_thread_cpu_times(mine));
    EXPECT_LT(mine.ran_ns, after.ran_ns) << "a new thread read another thread's time";
  });
  other.join();
}

// The default spin covers a peer's step between two messages, four passes over one at
// the size of the queue's messages: 20 µs, plus 0.25 ns per byte of that size. A spin
// the caller chooses is taken as it is.
TEST(SpinPolicy, DefaultSpinGrowsWithTheMessageSize) {
  auto budget_of = [](long message_size, std::int64_t spin_ns) {
    unlink_guard guard(unique_name("spinsize"), pipc::name_kind::engine_queue);
    std::unique_ptr<eng::queue> q;
    EXPECT_EQ(eng::queue::open(pipc::test::create_request(guard.name(), 1, message_size, spin_ns), q), 0);
    return q ? q->receive_spin_budget() : -1;
  };
  const bool spins = pipc::sys::online_cpus() > 1;
  EXPECT_EQ(eng::default_spin_for(8192), 22'048);
  EXPECT_EQ(eng::default_spin_for(1 << 20), 282'144);
  EXPECT_EQ(budget_of(64, -1), spins ? eng::default_spin_for(64) : 0);
  EXPECT_EQ(budget_of(1 << 20, -1), spins ? eng::default_spin_for(1 << 20) : 0);
  EXPECT_EQ(budget_of(1 << 20, 5 * us), spins ? 5 * us : 0);
}

// A configured spin is bounded: "spin for good" (nanoseconds::max()) is taken as a
// second, which keeps the waits' arithmetic (a start plus the spin) from overflowing,
// and one shorter than the floor is kept as it is (the clamp of the budget between the
// floor and the spin had its bounds the wrong way round there). Both must wait and
// take a message that comes 2 ms later: under UBSan (the asan preset) the long one
// overflowed, and under _GLIBCXX_ASSERTIONS (the dev preset) the short one aborted.
TEST(SpinPolicy, ConfiguredSpinIsBoundedAndAShortOneIsKept) {
  EXPECT_EQ(eng::spin_for(-1, 64, 2), eng::default_spin_for(64));
  EXPECT_EQ(eng::spin_for(INT64_MAX, 64, 2), eng::max_spin_ns);
  EXPECT_EQ(eng::spin_for(500, 64, 2), 500);
  EXPECT_EQ(eng::spin_for(0, 64, 2), 0);
  EXPECT_EQ(eng::spin_for(-1, 64, 1), 0);
  EXPECT_EQ(eng::spin_for(INT64_MAX, 64, 1), 0);
  EXPECT_EQ(eng::spin_allowed(eng::min_spin_ns, 500), 500);
  EXPECT_EQ(eng::spin_allowed(0, 500), 500);
  EXPECT_EQ(eng::spin_allowed(0, 20 * us), eng::min_spin_ns);
  EXPECT_EQ(eng::spin_allowed(7 * us, 20 * us), 7 * us);
  EXPECT_EQ(eng::spin_allowed(50 * us, 20 * us), 20 * us);
  const bool spins = pipc::sys::online_cpus() > 1;
  for (const std::int64_t spin : {std::int64_t{500}, INT64_MAX}) {
    SCOPED_TRACE(spin);
    spin_queue sq("spin-bounds", spin);
    ASSERT_NE(sq.q, nullptr);
    EXPECT_EQ(sq.q->receive_spin_budget(), spins ? std::min(spin, eng::max_spin_ns) : 0);
    std::thread sender([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      EXPECT_EQ(send_one(*sq.q, 7), 0);
    });
    std::uint64_t v = 0;
    EXPECT_EQ(receive_one(*sq.q, v), 0);
    EXPECT_EQ(v, 7u);
    sender.join();
  }
}

// A sleep of a wait with a CLOCK_REALTIME deadline (the C API's, or a C++ call given a
// system_clock time) runs on that clock where nothing ticks (the C++ API's sleeps), so
// that the kernel ends it when the clock is set past the deadline; a deadline on
// another clock is carried over to CLOCK_MONOTONIC, and so are the interruptible
// waits' ticks, which look at the deadline on its own clock instead (the next test).
TEST(SpinPolicy, SleepEndsOnTheClockOfARealtimeDeadline) {
  const std::int64_t mono = pipc::sys::now_ns(CLOCK_MONOTONIC);
  const std::int64_t real = pipc::sys::now_ns(CLOCK_REALTIME);
  constexpr std::int64_t length = 250'000 * us;
  const auto far = eng::sleep_end_for(wait_limit::at({CLOCK_REALTIME, real + 3'600'000'000 * us}), mono, length, true);
  EXPECT_EQ(far.clock, CLOCK_REALTIME);
  EXPECT_FALSE(far.limited);
  EXPECT_GE(far.at, real + length);
  EXPECT_LE(far.at, pipc::sys::now_ns(CLOCK_REALTIME) + length);
  const auto near = eng::sleep_end_for(wait_limit::at({CLOCK_REALTIME, real + 5'000 * us}), mono, length, true);
  EXPECT_EQ(near.clock, CLOCK_REALTIME);
  EXPECT_TRUE(near.limited);
  EXPECT_EQ(near.at, real + 5'000 * us);
  // Carried over: without `deadline_clock`, and for a deadline on any other clock.
  const auto ticked = eng::sleep_end_for(wait_limit::at({CLOCK_REALTIME, real + 5'000 * us}), mono, length);
  EXPECT_EQ(ticked.clock, CLOCK_MONOTONIC);
  EXPECT_TRUE(ticked.limited);
  EXPECT_LE(ticked.at, mono + 5'000 * us);
  EXPECT_GE(ticked.at, mono + 4'000 * us);
  const auto mono_limit = eng::sleep_end_for(wait_limit::at({CLOCK_MONOTONIC, mono + 5'000 * us}), mono, length, true);
  EXPECT_EQ(mono_limit.clock, CLOCK_MONOTONIC);
  EXPECT_TRUE(mono_limit.limited);
  EXPECT_EQ(mono_limit.at, mono + 5'000 * us);
  const auto unlimited = eng::sleep_end_for(wait_limit::blocking(), mono, length, true);
  EXPECT_EQ(unlimited.clock, CLOCK_MONOTONIC);
  EXPECT_FALSE(unlimited.limited);
  EXPECT_EQ(unlimited.at, mono + length);
}

// An interruptible wait (the C API's) sleeps in CLOCK_MONOTONIC ticks; after each it
// looks at its deadline on the deadline's own clock, so a realtime clock set past the
// deadline ends the wait within a tick, not when the deadline carried over to
// CLOCK_MONOTONIC at the sleep's start comes (up to recheck_ns late). Nobody may set
// this machine's clock in a test, so a clock that runs ahead of CLOCK_MONOTONIC stands
// in for one set forward: the process's CPU clock, while two threads of the test burn
// CPU (about twice as fast, on two CPUs). Where they get one CPU between them the clocks
// run alike, and the test shows nothing, but it cannot fail then either.
TEST(SpinPolicy, InterruptibleWaitEndsWithinATickOfItsDeadlineOnItsOwnClock) {
  spin_queue sq("deadline-clock", 0);  // no spin: the wait sleeps at once
  ASSERT_NE(sq.q, nullptr);
  std::atomic<bool> done{false};
  std::vector<std::thread> burners;
  for (int i = 0; i < 2; ++i) {
    burners.emplace_back([&] {
      while (!done.load(std::memory_order_relaxed)) {
      }
    });
  }
  constexpr std::int64_t cpu_wait = 200'000 * us;
  const std::int64_t deadline = pipc::sys::now_ns(CLOCK_PROCESS_CPUTIME_ID) + cpu_wait;
  const std::int64_t start = pipc::sys::now_ns(CLOCK_MONOTONIC);
  std::uint64_t v = 0;
  std::size_t size = 0;
  unsigned priority = 0;
  const int e = sq.q->receive(&v, sizeof v, size, priority, wait_limit::at({CLOCK_PROCESS_CPUTIME_ID, deadline}), true);
  const std::int64_t late = pipc::sys::now_ns(CLOCK_PROCESS_CPUTIME_ID) - deadline;
  const std::int64_t wall = pipc::sys::now_ns(CLOCK_MONOTONIC) - start;
  done.store(true);
  for (auto& t : burners) t.join();
  EXPECT_EQ(e, ETIMEDOUT);
  EXPECT_GE(late, 0);
  // A tick is 10 ms: at most ~20 ms of CPU time on two CPUs, plus scheduling slack.
  EXPECT_LT(late, 80'000 * us) << "returned " << late / us << " µs of CPU time after the deadline, " << wall / us
                               << " µs after it started (the CPU clock ran " << (cpu_wait + late) * 100 / wall
                               << "% as fast as the monotonic one)";
}

// A receiver that fell behind a stream waits for batches afterwards
// (region::await_message_batch); a message that comes alone must still be taken at
// once, not held for a batch that never comes. Each round: a burst of eight that the
// receiver finds waiting (so it is "behind"), then, 200 µs later, one message alone,
// which the receiver spins for (a 50 ms spin, the threads on two CPUs) and then takes
// through the batch wait. All arrive, in order; at least one round must have gone
// through the batch wait (a round whose receiver slept instead holds a turn, and skips
// it: a loaded machine may make some do that).
TEST(SpinPolicy, ReceiverBehindAStreamStillTakesALoneMessage) {
  const auto [cpu_a, cpu_b] = two_cpus();
  if (cpu_a < 0) GTEST_SKIP() << "needs two CPUs";
  cpus_to_spare spare;
  unlink_guard guard(unique_name("spinlone"), pipc::name_kind::engine_queue);
  std::unique_ptr<eng::queue> q;
  ASSERT_EQ(eng::queue::open(pipc::test::create_request(guard.name(), 64, 8, 50'000 * us), q), 0);
  constexpr int rounds = 20;
  std::atomic<int> bursts_sent{0};
  std::atomic<int> bursts_taken{0};
  std::thread sender([&, cpu = cpu_b] {
    pin_to(cpu);
    std::uint64_t v = 0;
    for (int r = 0; r < rounds; ++r) {
      while (bursts_taken.load() < r) std::this_thread::yield();
      for (int i = 0; i < 8; ++i) EXPECT_EQ(send_one(*q, v++), 0);
      bursts_sent.store(r + 1);
      while (bursts_taken.load() <= r) std::this_thread::yield();
      busy_wait(std::chrono::microseconds(200));
      EXPECT_EQ(send_one(*q, v++), 0);
    }
  });
  affinity_guard restore;
  pin_to(cpu_a);
  int batch_waits = 0;
  std::uint64_t expected = 0;
  for (int r = 0; r < rounds; ++r) {
    while (bursts_sent.load() <= r) std::this_thread::yield();
    for (int i = 0; i < 9; ++i, ++expected) {
      if (i == 8) bursts_taken.store(r + 1);
      const std::uint32_t left = q->batch_waits_left();
      std::uint64_t v = ~std::uint64_t{0};
      const auto limit = wait_limit::at({CLOCK_MONOTONIC, pipc::sys::now_ns(CLOCK_MONOTONIC) + 5'000'000'000});
      ASSERT_EQ(receive_one(*q, v, limit), 0) << "message " << expected;
      ASSERT_EQ(v, expected);
      if (i == 7) {
        EXPECT_EQ(q->batch_waits_left(), eng::streaming_receives) << "round " << r;
      }
      if (i == 8 && q->batch_waits_left() == left - 1) ++batch_waits;
    }
  }
  sender.join();
  EXPECT_GE(batch_waits, 1) << "no round's lone message went through the batch wait";
}

// The wake-up handshake end to end (its ordering alone: test_engine_handshake.cpp).
// With no spin and one slot, a stream makes both sides sleep at nearly every call: the sender for the slot, the receiver for the message, each
// announcing its sleep while the other commits on another CPU. A lost wake-up leaves
// its sleeper asleep until the 250 ms re-check; nothing else here takes that long.
// Every call has a deadline, so that a failure ends the test instead of hanging it.
TEST(SpinPolicy, NoWakeUpIsLostWhenEveryWaitSleeps) {
  const auto [cpu_a, cpu_b] = two_cpus();
  if (cpu_a < 0) GTEST_SKIP() << "needs two CPUs";
  unlink_guard guard(unique_name("nolost"), pipc::name_kind::engine_queue);
  std::unique_ptr<eng::queue> q;
  ASSERT_EQ(eng::queue::open(pipc::test::create_request(guard.name(), 1, 8, 0), q), 0);
  constexpr std::uint64_t messages = 20000;
  const auto limit = wait_limit::at({CLOCK_MONOTONIC, pipc::sys::now_ns(CLOCK_MONOTONIC) + 60'000'000'000});
  std::thread sender([&, cpu = cpu_b] {
    pin_to(cpu);
    for (std::uint64_t i = 0; i < messages; ++i) {
      const int e = send_one(*q, i, limit);
      EXPECT_EQ(e, 0) << "message " << i;
      if (e != 0) return;
    }
  });
  affinity_guard restore;
  pin_to(cpu_a);
  std::uint64_t received = 0;
  for (; received < messages; ++received) {
    std::uint64_t v = ~std::uint64_t{0};
    const int e = receive_one(*q, v, limit);
    EXPECT_EQ(e, 0) << "message " << received;
    EXPECT_EQ(v, received);
    if (e != 0 || v != received) break;
  }
  sender.join();
  EXPECT_EQ(received, messages);
  EXPECT_EQ(q->rechecks(), 0u) << "a sleep ran to its re-check: a wake-up was lost (or a thread stalled for 250 ms)";
}


// The cache hints (docs/engine.md, "Cache lines") touch only the slot they are for:
// every slot starts a line, the prefetches cover the header's line and at most the
// slot's stride, and the demote covers a committed message whole (up to its cap) and
// no line past the slot, for every geometry: so no hint reaches a neighbour's slot or
// past the region's end.
TEST(HandOver, CacheHintsStayWithinTheirSlot) {
  const std::uint64_t sizes[] = {1, 8, 31, 32, 33, 63, 64, 96, 100, 480, 481, 992, 993, 1000, 8192, 65536, 1u << 20};
  for (const std::uint64_t depth : {1u, 3u, 10u, 1024u}) {
    for (const std::uint64_t size : sizes) {
      SCOPED_TRACE(testing::Message() << depth << " messages of " << size << " bytes");
      const eng::geometry g = eng::compute_geometry(depth, size);
      EXPECT_EQ(g.slots_offset % 64, 0u);
      EXPECT_EQ(g.slot_stride % 64, 0u);
      EXPECT_LE(g.slots_offset + depth * g.slot_stride, g.region_size);
      const std::uint64_t hinted = eng::slot_lines_hinted(g);
      EXPECT_GE(hinted, 1u);
      EXPECT_LE(hinted * 64, g.slot_stride);
      for (const std::uint64_t payload : {std::uint64_t{0}, std::uint64_t{1}, size / 2, size}) {
        const std::uint64_t demoted = eng::message_lines_demoted(payload);
        EXPECT_LE(demoted * 64, g.slot_stride) << payload << " payload bytes";
        const std::uint64_t message = sizeof(eng::slot_header) + payload;
        EXPECT_GE(demoted * 64, std::min(message, eng::demoted_lines * 64)) << payload << " payload bytes";
      }
    }
  }
}

// header::receivers_wait, the hint that makes senders hand each message over to a
// waiting receiver's CPU (docs/engine.md, "Cache lines"): set by a receive that waits
// on an empty queue, cleared by one that finds a stream (two messages ready), left
// clear by a description behind a stream until its batch waits are used up, and never
// set by a try that gives up.
TEST(HandOver, ReceiversWaitHintFollowsWhetherReceiversWait) {
  const auto [cpu_a, cpu_b] = two_cpus();
  if (cpu_a < 0) GTEST_SKIP() << "needs two CPUs";
  cpus_to_spare spare;
  // A spin long enough that each wait below that a message ends saw it come (a wait
  // woken from a sleep holds a turn and leaves the batch count alone).
  spin_queue s("handover", 1'000'000 * us);
  ASSERT_NE(s.q, nullptr);
  std::unique_ptr<eng::queue>& q = s.q;
  pipc::test::raw_region r(s.guard.name());
  auto hint = [&] { return r.hdr()->receivers_wait.load(); };
  auto try_receive = [&] {
    std::uint64_t v = 0;
    return receive_one(*q, v, wait_limit::immediate());
  };
  auto wait_briefly = [&] {
    std::uint64_t v = 0;
    return receive_one(*q, v, wait_limit::at({CLOCK_MONOTONIC, pipc::sys::now_ns(CLOCK_MONOTONIC) + 2'000'000}));
  };

  EXPECT_EQ(hint(), 0u) << "a new queue has no receiver yet";
  EXPECT_EQ(try_receive(), ETIMEDOUT);
  EXPECT_EQ(hint(), 0u) << "a try that gives up does not ask for hand-over";
  EXPECT_EQ(wait_briefly(), ETIMEDOUT);
  EXPECT_EQ(hint(), 1u) << "a receive waited on the empty queue";
  // Request and response: one message at a time keeps it set.
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(send_one(*q, 1), 0);
    ASSERT_EQ(try_receive(), 0);
    EXPECT_EQ(hint(), 1u) << "round " << i;
  }
  // A stream clears it, and a wait of the description behind it leaves it clear.
  for (int i = 0; i < 3; ++i) ASSERT_EQ(send_one(*q, 1), 0);
  ASSERT_EQ(try_receive(), 0);
  EXPECT_EQ(hint(), 0u) << "the receive found three messages ready";
  EXPECT_EQ(q->batch_waits_left(), eng::streaming_receives);
  ASSERT_EQ(try_receive(), 0);
  ASSERT_EQ(try_receive(), 0);
  EXPECT_EQ(wait_briefly(), ETIMEDOUT);
  EXPECT_EQ(hint(), 0u) << "a description behind a stream waited";

  // Waits that see their message come use the batch waits up; then a wait sets it.
  std::atomic<int> asked{0};
  std::atomic<bool> done{false};
  std::thread sender([&, cpu = cpu_b] {
    pin_to(cpu);
    for (int sent = 0; !done.load();) {
      if (asked.load() == sent) {
        std::this_thread::yield();
        continue;
      }
      busy_wait(std::chrono::microseconds(100));
      EXPECT_EQ(send_one(*q, 1), 0);
      ++sent;
    }
  });
  affinity_guard restore;
  pin_to(cpu_a);
  int rounds = 0;
  for (; q->batch_waits_left() != 0 && rounds < 500; ++rounds) {
    asked.fetch_add(1);
    std::uint64_t v = 0;
    const auto limit = wait_limit::at({CLOCK_MONOTONIC, pipc::sys::now_ns(CLOCK_MONOTONIC) + 5'000'000'000});
    ASSERT_EQ(receive_one(*q, v, limit), 0) << "round " << rounds;
    EXPECT_EQ(hint(), 0u) << "round " << rounds << ", batch waits left " << q->batch_waits_left();
  }
  done.store(true);
  sender.join();
  EXPECT_EQ(q->batch_waits_left(), 0u) << "after " << rounds << " waits";
  EXPECT_EQ(wait_briefly(), ETIMEDOUT);
  EXPECT_EQ(hint(), 1u) << "the stream has ended";
  // Any value another process leaves there is only a hint: messages go through alike.
  r.hdr()->receivers_wait.store(0xdeadbeef);
  ASSERT_EQ(send_one(*q, 7), 0);
  std::uint64_t v = 0;
  EXPECT_EQ(receive_one(*q, v, wait_limit::immediate()), 0);
  EXPECT_EQ(v, 7u);
}
}  // namespace

// ---- turns: fairness between the waiters of one side ----

namespace {

TEST(Turns, WordCountsTurnsUntilTheyExpire) {
  // Turns expire turn_hold_us after they were granted: a run of this part that lost its
  // CPU for that long (ctest runs two tests at a time) says nothing, and is tried again.
  bool timely = false;
  for (int attempt = 0; attempt < 20 && !timely; ++attempt) {
    const std::uint32_t start = eng::now_us32();
    std::atomic<std::uint64_t> turns{0};
    const std::uint32_t none = eng::turns_held(turns);
    eng::add_turns(turns, 2);
    const std::uint32_t two = eng::turns_held(turns);
    const bool first_back = eng::end_turn(turns);
    const bool last_back = eng::end_turn(turns);
    const std::uint64_t after = turns.load();
    const bool below_zero = eng::end_turn(turns);
    // Taking back more than there are leaves none.
    eng::add_turns(turns, 1);
    eng::add_turns(turns, -3);
    const std::uint64_t taken_back = turns.load();
    if (eng::now_us32() - start >= eng::turn_hold_us / 2) continue;
    timely = true;
    EXPECT_EQ(none, 0u);
    EXPECT_EQ(two, 2u);
    EXPECT_FALSE(first_back);
    EXPECT_TRUE(last_back) << "the last turn given back says so";
    EXPECT_EQ(after, 0u);
    EXPECT_FALSE(below_zero) << "never below 0";
    EXPECT_EQ(taken_back, 0u);
  }
  ASSERT_TRUE(timely) << "never ran within half a turn's hold";
  // Expired turns count as none, whatever the count.
  const std::uint32_t long_ago = eng::now_us32() - 2 * eng::turn_hold_us;
  EXPECT_EQ(eng::turns_in(std::uint64_t{long_ago} << 32 | 5, eng::now_us32()), 0u);
  // A forged count is capped.
  const std::uint32_t now = eng::now_us32();
  EXPECT_EQ(eng::turns_in(std::uint64_t{now} << 32 | 0xffffffffu, now), eng::max_turns);
  // A stamp a little ahead of the reader's clock (another process read its clock just
  // after this one) is fresh; one far ahead is forged, and counts as none.
  EXPECT_EQ(eng::turns_in(std::uint64_t{now + 1} << 32 | 3, now), 3u);
  EXPECT_EQ(eng::turns_in(std::uint64_t{now + eng::turn_clock_skew_us} << 32 | 3, now), 3u);
  EXPECT_EQ(eng::turns_in(std::uint64_t{now + eng::turn_clock_skew_us + 1} << 32 | 3, now), 0u);
  EXPECT_EQ(eng::turns_in(std::uint64_t{now + 1'000'000} << 32 | 3, now), 0u);
  // Grants and take-backs while turns are outstanding keep the first grant's stamp, so
  // a turn nobody takes expires on time however busy the side is; one that finds none
  // stamps anew. (A stamp half a hold old: fresh for the few µs these lines take.)
  const std::uint32_t earlier = eng::now_us32() - eng::turn_hold_us / 2;
  std::atomic<std::uint64_t> busy{std::uint64_t{earlier} << 32 | 1};
  eng::add_turns(busy, 2);
  EXPECT_EQ(busy.load() >> 32, earlier) << "a grant renewed older turns";
  EXPECT_EQ(static_cast<std::uint32_t>(busy.load()), 3u);
  eng::add_turns(busy, -1);
  EXPECT_EQ(busy.load() >> 32, earlier) << "a take-back renewed the turns";
  std::atomic<std::uint64_t> expired{std::uint64_t{long_ago} << 32 | 4};
  eng::add_turns(expired, 1);
  EXPECT_EQ(static_cast<std::uint32_t>(expired.load()), 1u) << "expired turns count as none";
  EXPECT_GE(expired.load() >> 32, now) << "a grant that finds none stamps anew";
}

// A receiver that sleeps (no spin) and one that spins compete for messages sent one at
// a time. Without turns the spinner took nearly every message: by the time the kernel
// woke the sleeper, it was gone. With turns, a message that woke the sleeper is its own.
TEST(Turns, WokenReceiverGetsTheMessageItWasWokenFor) {
  const auto [cpu_a, cpu_b] = two_cpus();
  if (cpu_a < 0) GTEST_SKIP() << "needs two CPUs";
  cpus_to_spare spare;
  spin_queue sq("turns-recv", 0);  // the sleeper's description: no spin
  ASSERT_NE(sq.q, nullptr);
  eng::open_request request;
  request.name = sq.guard.name();
  request.flags = O_RDWR;
  request.spin_ns = 1'000'000'000;  // the spinner's: spins (almost) for good
  std::unique_ptr<eng::queue> spinner_q;
  ASSERT_EQ(eng::queue::open(request, spinner_q), 0);
  constexpr int count = 400;
  std::atomic<int> taken[2] = {0, 0};
  std::atomic<bool> stop{false};
  auto receive_loop = [&](eng::queue& q, int who) {
    for (;;) {
      std::uint64_t v = 0;
      const int e =
          receive_one(q, v, wait_limit::at({CLOCK_MONOTONIC, pipc::sys::now_ns(CLOCK_MONOTONIC) + 50'000'000}));
      if (stop.load()) return;
      if (e == 0) taken[who].fetch_add(1);
    }
  };
  // The spinner has a CPU of its own; the sleeper shares the sender's, which the
  // sender leaves free while it waits (a spinner that shared a CPU would lose it, and
  // then sleep and compete with turns of its own, as wait_words::stop_when_descheduled
  // wants: not what this test is about).
  std::thread sleeper([&, cpu = cpu_a] {
    pin_to(cpu);
    receive_loop(*sq.q, 0);
  });
  std::thread spinner([&, cpu = cpu_b] {
    pin_to(cpu);
    receive_loop(*spinner_q, 1);
  });
  affinity_guard restore;
  pin_to(cpu_a);
  for (int i = 0; i < count; ++i) {
    // One message at a time, each after both receivers are waiting again.
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    ASSERT_EQ(send_one(*sq.q, static_cast<std::uint64_t>(i)), 0);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (taken[0].load() + taken[1].load() <= i && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
  stop.store(true);
  for (int i = 0; i < 2; ++i) send_one(*sq.q, 0, wait_limit::immediate());
  sleeper.join();
  spinner.join();
  EXPECT_EQ(taken[0].load() + taken[1].load(), count);
  EXPECT_GE(taken[0].load(), count / 2) << "sleeper " << taken[0].load() << ", spinner " << taken[1].load();
}

}  // namespace

namespace {

// Every turn granted is taken or given back: when a ping-pong's reply has come back, no
// turn of the queue the request went through is counted (a turn that nobody takes holds
// up every other receiver until it expires). No spinning, so that every wait announces
// a sleep, and some announcers see the message before they sleep: their turns must go
// back.
// A waiter that had announced its sleep but was not asleep yet when the waker came
// (its FUTEX_WAIT then says EAGAIN: the word moved on) counts as woken, on purpose:
// the waker took back the turn it had granted it, but the waiter preempted between its
// announcement and its sleep is the one on the crowded CPU, and treating it as holding
// no turn made contention fairness worse (docs/engine.md, "Fairness"). Here the waker
// runs inside the wait's look after the announcement, just before the sleep.
TEST(Turns, WaiterWokenBeforeItsSleepBeganCountsAsWoken) {
  eng::atomic_u32 word{0};
  eng::atomic_u32 sleepers{0};
  eng::atomic_u32 peer_cpu{0};
  eng::atomic_u64 woken_ns{0};
  eng::atomic_u64 turns{0};
  const eng::wait_words w{word, sleepers, woken_ns, peer_cpu};
  std::atomic<std::int64_t> budget{0};
  bool waker_came = false;
  auto blocked = [&] {
    if (!waker_came && sleepers.load() != 0) {
      waker_came = true;
      const std::uint32_t granted = eng::grant_turns(sleepers, turns);
      EXPECT_EQ(granted, 1u);
      eng::committed();
      eng::wake_sleepers(word, sleepers, &woken_ns, &turns, granted);
    }
    return true;  // what the waker committed went to somebody else
  };
  bool woken = false;
  EXPECT_EQ(eng::wait_while(blocked, w, 0, budget, woken, wait_limit::blocking()), 0);
  EXPECT_TRUE(waker_came);
  EXPECT_TRUE(woken) << "a waiter whose wake-up came before its sleep should count as woken";
  EXPECT_EQ(eng::turns_held(turns), 0u) << "the waker takes back the turn of a waiter it found not asleep";
}

TEST(Turns, NoTurnIsLeftThatNobodyWillTake) {
  spin_queue requests("turns-left-req", 0);
  spin_queue replies("turns-left-rep", 0);
  ASSERT_NE(requests.q, nullptr);
  ASSERT_NE(replies.q, nullptr);
  pipc::test::raw_region raw(requests.guard.name());
  constexpr int count = 3000;
  // Every call has a deadline far beyond a round trip: a side whose call failed stops,
  // and the other then fails too (ETIMEDOUT) instead of waiting for it for good.
  auto deadline = [] {
    return wait_limit::at({CLOCK_MONOTONIC, pipc::sys::now_ns(CLOCK_MONOTONIC) + 30'000'000'000});
  };
  std::jthread echo([&] {  // (joined however the test returns)
    for (int i = 0; i < count; ++i) {
      std::uint64_t v = 0;
      ASSERT_EQ(receive_one(*requests.q, v, deadline()), 0) << "echo's receive " << i;
      ASSERT_EQ(send_one(*replies.q, v, deadline()), 0) << "echo's send " << i;
    }
  });
  int left = 0;
  for (int i = 0; i < count; ++i) {
    std::uint64_t v = static_cast<std::uint64_t>(i);
    ASSERT_EQ(send_one(*requests.q, v, deadline()), 0) << "request " << i;
    ASSERT_EQ(receive_one(*replies.q, v, deadline()), 0) << "reply " << i;
    // The count itself, expired or not: a turn nobody took stays counted until the
    // next grant overwrites it.
    if (static_cast<std::uint32_t>(raw.hdr()->receiver_turns.load()) != 0) ++left;
  }
  echo.join();
  EXPECT_EQ(left, 0) << "round trips after which a turn was left";
}

}  // namespace

namespace {

// A woken receiver that is stopped (SIGSTOP) before it takes what it was woken for holds
// up the others only until its turn expires (turn_hold_us), not until it runs again.
TEST(Turns, StoppedWokenReceiverHoldsUpOthersOnlyUntilItsTurnExpires) {
  spin_queue sq("turns-stopped", 0);
  ASSERT_NE(sq.q, nullptr);
  pipc::test::raw_region raw(sq.guard.name());
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    eng::open_request request;
    request.name = sq.guard.name();
    request.flags = O_RDONLY;
    request.spin_ns = 0;
    std::unique_ptr<eng::queue> mine;
    if (eng::queue::open(request, mine) != 0) ::_exit(2);
    std::uint64_t v = 0;
    ::_exit(receive_one(*mine, v) == 0 ? 0 : 3);
  }
  // The child announces its sleep; then it is stopped, and a message wakes it (the
  // kernel counts a stopped sleeper as woken), with a turn it cannot take.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (raw.hdr()->msg_sleepers.load() == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_NE(raw.hdr()->msg_sleepers.load(), 0u) << "the child never slept";
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(::kill(child, SIGSTOP), 0);
  // (Taken before the send: no turn of this test is stamped earlier.)
  const auto granted = std::chrono::steady_clock::now();
  ASSERT_EQ(send_one(*sq.q, 42), 0);
  // If the kernel still had the stopped child on the futex, it counted it as woken, and
  // the child holds a turn. Often a stopped task is off the futex before the send (and
  // under ThreadSanitizer the child may not have reached its FUTEX_WAIT): then give it
  // the turn it would have had, one that nobody will take.
  if (eng::turns_held(raw.hdr()->receiver_turns) == 0) eng::add_turns(raw.hdr()->receiver_turns, 1);
  ASSERT_NE(eng::turns_held(raw.hdr()->receiver_turns), 0u);
  // Two more messages: the child's turn keeps them all (not only one of the three)
  // from a receiver that was not woken, until it expires.
  ASSERT_EQ(send_one(*sq.q, 43), 0);
  ASSERT_EQ(send_one(*sq.q, 44), 0);
  // A blocking receive here leaves the messages to the child's turn, then takes them.
  const auto deadline = wait_limit::at({CLOCK_MONOTONIC, pipc::sys::now_ns(CLOCK_MONOTONIC) + 5'000'000'000});
  for (std::uint64_t expected = 42; expected <= 44; ++expected) {
    std::uint64_t v = 0;
    const int e = receive_one(*sq.q, v, deadline);
    EXPECT_EQ(e, 0) << "message " << expected << " stayed with the stopped child";
    EXPECT_EQ(v, expected);
    if (expected == 42) {
      const auto waited = std::chrono::steady_clock::now() - granted;
      EXPECT_GE(waited, std::chrono::microseconds(eng::turn_hold_us) * 9 / 10)
          << "a receiver took a message while a woken receiver's turn was fresh";
    }
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
}

}  // namespace

namespace {

// A descriptor maps its region at its first send or receive. Two threads whose first
// calls on one descriptor race must both find it mapped: the one that loses the race
// must not take the other's fresh mapping for a truncated file (corrupt).
TEST(EngineMapping, RacingFirstCallsOnOneDescriptorAreNotCorrupt) {
  for (int round = 0; round < 3000; ++round) {
    spin_queue sq("first-use", 0);
    ASSERT_NE(sq.q, nullptr);
    std::atomic<int> ready{0};
    int results[2] = {-1, -1};
    auto first_call = [&](int k) {
      ready.fetch_add(1);
      while (ready.load() < 2) {
      }
      results[k] = send_one(*sq.q, static_cast<std::uint64_t>(k), wait_limit::immediate());
    };
    std::thread other(first_call, 1);
    first_call(0);
    other.join();
    ASSERT_EQ(results[0], 0) << "round " << round;
    ASSERT_EQ(results[1], 0) << "round " << round;
  }
}

}  // namespace
