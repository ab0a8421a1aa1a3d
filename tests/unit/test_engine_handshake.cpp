// The wake-up handshake's ordering (src/engine/wait.hpp, "Waiting"; docs/engine.md,
// "Waiting"), tested on the primitives themselves. This file is built with -O2 in every
// build (tests/CMakeLists.txt): unoptimised, the calls and spills between the waker's
// store and its load let the store drain first, and a debug build whose unlock was a
// plain store passed five runs of five; with this file at -O2 it failed six of six.

#include "engine_support.hpp"
#include "support.hpp"

#include "engine/lock.hpp"
#include "engine/wait.hpp"
#include "sys/sys.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>

namespace {

namespace eng = pipc::engine;
namespace test = pipc::test;

// The two sides' steps, out of line so that each is one tight sequence.
[[gnu::noinline]] std::uint32_t waker_steps(eng::atomic_u32& commit, eng::atomic_u64& lock, eng::atomic_u32& sleepers,
                                        std::uint32_t value) {
  bool died = false;
  if (eng::lock_acquire(lock, pipc::detail::wait_limit::blocking(), died) != 0) return ~std::uint32_t{0};
  commit.store(value, std::memory_order_release);
  eng::lock_release(lock);
  eng::committed_after_unlock();
  return eng::sleepers_after_commit(sleepers);
}

[[gnu::noinline]] std::uint32_t sleeper_steps(eng::atomic_u32& sleepers, eng::atomic_u32& commit) {
  sleepers.fetch_add(1, std::memory_order_seq_cst);
  eng::handshake_fence();
  return commit.load(std::memory_order_acquire);
}

// A litmus test. Each round, on two CPUs at once: the waker stores its commit, releases
// a lock (lock_release), orders (committed_after_unlock) and looks at the sleeper count
// (sleepers_after_commit); the sleeper adds itself to the count, fences
// (handshake_fence) and looks at the commit. In no round may both miss the other's
// store: that would be a lost wake-up. (With the unlock made a plain release store, 1
// to 196 rounds of the million did, in each of six runs of a debug build.)
TEST(Handshake, WakerAndSleeperNeverBothMissTheOther) {
  const auto [cpu_a, cpu_b] = test::two_cpus();
  if (cpu_a < 0) GTEST_SKIP() << "needs two CPUs";
  struct alignas(64) word32 {
    eng::atomic_u32 v{0};
  };
  struct alignas(64) word64 {
    eng::atomic_u64 v{0};
  };
  word32 commit, sleepers;
  word64 lock;
  std::atomic<std::uint64_t> go{0}, done{0};
  std::atomic<std::uint32_t> sleeper_saw{0};
  constexpr std::uint64_t rounds = 1'000'000;
  std::thread sleeper([&, cpu = cpu_b] {
    test::pin_to(cpu);
    for (std::uint64_t r = 1; r <= rounds; ++r) {
      while (go.load(std::memory_order_acquire) != r) {
      }
      sleeper_saw.store(sleeper_steps(sleepers.v, commit.v), std::memory_order_relaxed);
      done.store(r, std::memory_order_release);
    }
  });
  test::affinity_guard restore;
  test::pin_to(cpu_a);
  // Round r's stores are the value r (the commit) and the count's r-th increment, never
  // reset: each line was last touched by the other side, so each store must wait for
  // the line to come over, which is when a missing barrier shows.
  // The waker starts its commit a varying moment after the go (0 to 63 pauses, ~0.6 µs
  // here), so that some rounds put the two sequences right on top of each other.
  std::uint64_t both_missed = 0;
  for (std::uint64_t r = 1; r <= rounds; ++r) {
    go.store(r, std::memory_order_release);
    for (std::uint64_t k = 0; k < (r * 7) % 64; ++k) pipc::sys::cpu_relax();
    const std::uint32_t waker_saw = waker_steps(commit.v, lock.v, sleepers.v, static_cast<std::uint32_t>(r));
    if (waker_saw == ~std::uint32_t{0}) ADD_FAILURE() << "round " << r << ": the lock could not be taken";
    while (done.load(std::memory_order_acquire) != r) {
    }
    if (waker_saw < r && sleeper_saw.load(std::memory_order_relaxed) < r) ++both_missed;
  }
  sleeper.join();
  EXPECT_EQ(both_missed, 0u) << "rounds where the waker missed the sleeper and the sleeper missed the commit";
}

}  // namespace
