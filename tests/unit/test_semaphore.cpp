// pipc::named_semaphore and pipc::semaphore: counting, timed waits on both clocks,
// signals that interrupt waits, permissions, and use across threads and processes.
#include "support.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <functional>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace pt = pipc::test;
using namespace std::chrono_literals;
using pipc::named_semaphore;
using pipc::open_mode;
using steady = std::chrono::steady_clock;
using sysclock = std::chrono::system_clock;

constexpr auto sem_kind = pipc::name_kind::semaphore;

using pipc::test::thrown;

using pipc::test::contains;

std::error_code sys(int e) { return {e, std::system_category()}; }

using pipc::test::child;

// Installs a SIGUSR1 handler without SA_RESTART for the scope, so that a signal makes
// blocking calls fail with EINTR; counts deliveries.
// A lock-free atomic (async-signal-safe): the test's thread reads it while the
// waiter's handler writes it.
std::atomic<int> g_signals{0};
static_assert(std::atomic<int>::is_always_lock_free);
extern "C" void count_signal(int) { g_signals.fetch_add(1, std::memory_order_relaxed); }

// Sends SIGUSR1 to `thread` and waits (up to 5 s) until its handler has run, so that
// the next signal is not sent while this one is still pending: SIGUSR1 is not queued,
// and on a loaded machine two pending ones merge into one delivery.
void signal_and_await_handler(std::thread& thread) {
  const int before = g_signals;
  ::pthread_kill(thread.native_handle(), SIGUSR1);
  for (int i = 0; i < 5000 && g_signals == before; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

class sigusr1_handler {
 public:
  sigusr1_handler() {
    g_signals = 0;
    struct sigaction sa {};
    sa.sa_handler = count_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // deliberately no SA_RESTART
    ::sigaction(SIGUSR1, &sa, &old_);
  }
  sigusr1_handler(const sigusr1_handler&) = delete;
  sigusr1_handler& operator=(const sigusr1_handler&) = delete;
  ~sigusr1_handler() { ::sigaction(SIGUSR1, &old_, nullptr); }

 private:
  struct sigaction old_ {};
};

template <class D>
long long ms(D d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// Generous: a loaded CI machine (or a sanitizer build) may be slow to wake a thread.
constexpr auto slack = 1500ms;

}  // namespace

// =======================================================================================
// Named semaphores: opening

TEST(NamedSemaphore, CreateHonorsInitialValue) {
  const std::string name = pt::unique_name("sem-create");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 3);
  ASSERT_TRUE(sem.is_open());
  EXPECT_TRUE(static_cast<bool>(sem));
  EXPECT_NE(sem.handle(), nullptr);
  EXPECT_EQ(sem.name(), name);
  EXPECT_EQ(sem.value(), 3);
  EXPECT_TRUE(sem.try_wait());
  EXPECT_TRUE(sem.try_wait());
  EXPECT_TRUE(sem.try_wait());
  EXPECT_FALSE(sem.try_wait());
  EXPECT_EQ(sem.value(), 0);
  // glibc keeps named semaphores in /dev/shm as sem.<name>.
  struct stat st {};
  EXPECT_EQ(::stat(("/dev/shm/sem." + name.substr(1)).c_str(), &st), 0);
}

TEST(NamedSemaphore, CreateOnlyOnExistingNameFailsWithEexist) {
  const std::string name = pt::unique_name("sem-exist");
  pt::unlink_guard guard(name, sem_kind);
  auto first = named_semaphore::open(name, open_mode::create_only, 1);
  auto e = thrown([&] { (void)named_semaphore::open(name, open_mode::create_only, 5); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), sys(EEXIST)) << e->what();
  EXPECT_TRUE(contains(e->what(), "sem_open \"" + name + "\""));

  std::error_code ec;
  auto second = named_semaphore::open(name, open_mode::create_only, 5, 0600, ec);
  EXPECT_EQ(ec, sys(EEXIST));
  EXPECT_FALSE(second.is_open());
  EXPECT_EQ(first.value(), 1);  // untouched
}

TEST(NamedSemaphore, OpenOnlyOnMissingNameFailsWithEnoent) {
  const std::string name = pt::unique_name("sem-missing");
  pt::unlink_guard guard(name, sem_kind);
  auto e = thrown([&] { (void)named_semaphore::open(name, open_mode::open_only); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), sys(ENOENT)) << e->what();
  EXPECT_TRUE(contains(e->what(), "sem_open \"" + name + "\""));

  std::error_code ec;
  auto sem = named_semaphore::open(name, open_mode::open_only, 0, 0600, ec);
  EXPECT_EQ(ec, sys(ENOENT));
  EXPECT_FALSE(sem.is_open());
  EXPECT_EQ(sem.handle(), nullptr);
}

TEST(NamedSemaphore, OpenOrCreateCreatesThenOpensWithoutResetting) {
  const std::string name = pt::unique_name("sem-ooc");
  pt::unlink_guard guard(name, sem_kind);
  std::error_code ec = std::make_error_code(std::errc::io_error);
  auto a = named_semaphore::open(name, open_mode::open_or_create, 2, 0600, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(a.value(), 2);
  EXPECT_TRUE(a.try_wait());

  auto b = named_semaphore::open(name, open_mode::open_or_create, 7);  // initial ignored
  EXPECT_EQ(b.value(), 1);
  b.post();
  EXPECT_EQ(a.value(), 2);  // the same semaphore

  auto c = named_semaphore::open(name, open_mode::open_only);
  EXPECT_EQ(c.value(), 2);
}

TEST(NamedSemaphore, InitialAboveSemValueMaxIsEinval) {
  const std::string name = pt::unique_name("sem-toobig");
  pt::unlink_guard guard(name, sem_kind);
  const unsigned too_big = static_cast<unsigned>(SEM_VALUE_MAX) + 1u;
  auto e = thrown([&] { (void)named_semaphore::open(name, open_mode::create_only, too_big); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), sys(EINVAL)) << e->what();
  EXPECT_TRUE(contains(e->what(), "\"" + name + "\""));

  std::error_code ec;
  auto sem = named_semaphore::open(name, open_mode::open_or_create, UINT_MAX, 0600, ec);
  EXPECT_EQ(ec, sys(EINVAL));
  EXPECT_FALSE(sem.is_open());
  // Nothing was created.
  named_semaphore::open(name, open_mode::open_only, 0, 0600, ec);
  EXPECT_EQ(ec, sys(ENOENT));

  // SEM_VALUE_MAX itself is fine.
  auto max = named_semaphore::open(name, open_mode::create_only, static_cast<unsigned>(SEM_VALUE_MAX), 0600, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(max.value(), SEM_VALUE_MAX);
}

TEST(NamedSemaphore, PostBeyondSemValueMaxIsEoverflowNamingTheObject) {
  const std::string name = pt::unique_name("sem-overflow");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, static_cast<unsigned>(SEM_VALUE_MAX));
  std::error_code ec;
  sem.post(ec);
  EXPECT_EQ(ec, sys(EOVERFLOW));
  auto e = thrown([&] { sem.post(); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), sys(EOVERFLOW)) << e->what();
  EXPECT_TRUE(contains(e->what(), "sem_post"));
  EXPECT_TRUE(contains(e->what(), "\"" + name + "\""));
  EXPECT_EQ(sem.value(), SEM_VALUE_MAX);
}

TEST(NamedSemaphore, CreationModeIsMaskedByUmask) {
  const std::string n1 = pt::unique_name("sem-umask");
  const std::string n2 = pt::unique_name("sem-umask");
  pt::unlink_guard g1(n1, sem_kind);
  pt::unlink_guard g2(n2, sem_kind);
  auto mode_of = [](const std::string& name) -> unsigned {
    struct stat st {};
    if (::stat(("/dev/shm/sem." + name.substr(1)).c_str(), &st) != 0) return 07777;
    return st.st_mode & 07777;
  };
  int rc = pt::run_child(
      [&] {
        ::umask(027);
        auto a = named_semaphore::open(n1, open_mode::create_only, 0, 0666);
        if (mode_of(n1) != 0640) {
          std::fprintf(stderr, "umask 027, perms 0666: got %o\n", mode_of(n1));
          return 1;
        }
        ::umask(0);
        auto b = named_semaphore::open(n2, open_mode::create_only, 0, 0604);
        if (mode_of(n2) != 0604) {
          std::fprintf(stderr, "umask 0, perms 0604: got %o\n", mode_of(n2));
          return 2;
        }
        return 0;
      },
      10s);
  EXPECT_EQ(rc, 0);
}

TEST(NamedSemaphore, OpenWithoutPermissionFailsWithEacces) {
  if (!pt::running_as_root()) GTEST_SKIP() << "needs root to switch to user nobody";
  const std::string name = pt::unique_name("sem-eacces");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 1, 0600);
  int rc = pt::run_child(
      [&] {
        if (!pt::become_nobody()) return 10;
        std::error_code ec;
        auto s = named_semaphore::open(name, open_mode::open_only, 0, 0600, ec);
        if (ec != sys(EACCES) || s.is_open()) {
          std::fprintf(stderr, "open_only as nobody: %s\n", ec.message().c_str());
          return 1;
        }
        try {
          (void)named_semaphore::open(name, open_mode::open_or_create, 0);
          return 2;
        } catch (const std::system_error& e) {
          if (e.code() != sys(EACCES)) return 3;
          if (std::string_view(e.what()).find("sem_open \"" + name + "\"") == std::string_view::npos) return 4;
        }
        // Nor may nobody remove it (/dev/shm is sticky).
        named_semaphore::unlink(name, ec);
        if (ec != sys(EACCES) && ec != sys(EPERM)) return 5;
        return 0;
      },
      10s);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(sem.value(), 1);
}

// =======================================================================================
// Named semaphores: operations

TEST(NamedSemaphore, PostWaitTryWaitValue) {
  const std::string name = pt::unique_name("sem-ops");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  EXPECT_EQ(sem.value(), 0);
  EXPECT_FALSE(sem.try_wait());
  sem.post();
  sem.post();
  EXPECT_EQ(sem.value(), 2);
  sem.wait();  // does not block: a unit is there
  EXPECT_EQ(sem.value(), 1);
  EXPECT_TRUE(sem.try_wait());
  EXPECT_FALSE(sem.try_wait());
  EXPECT_EQ(sem.value(), 0);
}

TEST(NamedSemaphore, ErrorCodeOverloadsClearEcOnSuccess) {
  const std::string name = pt::unique_name("sem-ec");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  const std::error_code stale = std::make_error_code(std::errc::io_error);
  std::error_code ec = stale;
  sem.post(ec);
  EXPECT_FALSE(ec);
  ec = stale;
  EXPECT_EQ(sem.value(ec), 1);
  EXPECT_FALSE(ec);
  ec = stale;
  sem.wait(ec);
  EXPECT_FALSE(ec);
  ec = stale;
  EXPECT_FALSE(sem.try_wait(ec));  // nothing there: a result, not an error
  EXPECT_FALSE(ec);
  sem.post();
  ec = stale;
  EXPECT_TRUE(sem.try_wait(ec));
  EXPECT_FALSE(ec);
  ec = stale;
  EXPECT_FALSE(sem.wait_for(1ms, ec));  // timeout: a result, not an error
  EXPECT_FALSE(ec);
  sem.post();
  ec = stale;
  EXPECT_TRUE(sem.wait_for(1s, ec));
  EXPECT_FALSE(ec);
  ec = stale;
  EXPECT_FALSE(sem.wait_until(steady::now() + 1ms, ec));
  EXPECT_FALSE(ec);
  sem.post();
  ec = stale;
  EXPECT_TRUE(sem.wait_until(sysclock::now() + 1s, ec));
  EXPECT_FALSE(ec);
  ec = stale;
  named_semaphore::unlink(name, ec);
  EXPECT_FALSE(ec);
}

TEST(NamedSemaphore, WaitForTimesOutAfterTheDuration) {
  const std::string name = pt::unique_name("sem-waitfor");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  auto start = steady::now();
  EXPECT_FALSE(sem.wait_for(100ms));
  auto elapsed = steady::now() - start;
  EXPECT_GE(elapsed, 100ms) << ms(elapsed) << " ms";
  EXPECT_LT(elapsed, 100ms + slack) << ms(elapsed) << " ms";

  // Other duration types are converted, not truncated to zero.
  start = steady::now();
  EXPECT_FALSE(sem.wait_for(std::chrono::duration<double>(0.05)));
  elapsed = steady::now() - start;
  EXPECT_GE(elapsed, 50ms) << ms(elapsed) << " ms";
  start = steady::now();
  EXPECT_FALSE(sem.wait_for(50'000us));
  EXPECT_GE(steady::now() - start, 50ms);

  // Zero and negative durations only try.
  start = steady::now();
  EXPECT_FALSE(sem.wait_for(0ms));
  EXPECT_FALSE(sem.wait_for(-5s));
  EXPECT_LT(steady::now() - start, slack);
  EXPECT_EQ(sem.value(), 0);
}

TEST(NamedSemaphore, WaitUntilSteadyClockTimesOutAtTheDeadline) {
  const std::string name = pt::unique_name("sem-until-steady");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  auto deadline = steady::now() + 100ms;
  EXPECT_FALSE(sem.wait_until(deadline));
  auto now = steady::now();
  EXPECT_GE(now, deadline) << "returned " << ms(deadline - now) << " ms early";
  EXPECT_LT(now, deadline + slack);

  // A deadline in the past only tries.
  EXPECT_FALSE(sem.wait_until(steady::now() - 1s));
  sem.post();
  EXPECT_TRUE(sem.wait_until(steady::now() - 1s));
  EXPECT_EQ(sem.value(), 0);
}

TEST(NamedSemaphore, WaitUntilSystemClockTimesOutAtTheDeadline) {
  const std::string name = pt::unique_name("sem-until-system");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  const auto start = steady::now();
  auto deadline = sysclock::now() + 100ms;
  EXPECT_FALSE(sem.wait_until(deadline));
  EXPECT_GE(sysclock::now(), deadline);
  EXPECT_GE(steady::now() - start, 90ms);  // the system clock may be slewed a little
  EXPECT_LT(steady::now() - start, 100ms + slack);

  EXPECT_FALSE(sem.wait_until(sysclock::now() - 1h));
  sem.post();
  EXPECT_TRUE(sem.wait_until(sysclock::now() - 1h));
}

namespace {
// A clock that is neither steady_clock nor system_clock, with its own epoch.
struct offset_clock {
  using duration = std::chrono::microseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<offset_clock>;
  static constexpr bool is_steady = true;
  static time_point now() {
    return time_point(std::chrono::duration_cast<duration>(steady::now().time_since_epoch()) + 1000h);
  }
};
}  // namespace

TEST(NamedSemaphore, WaitUntilAnotherClockTimesOutAtTheDeadline) {
  const std::string name = pt::unique_name("sem-until-other");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  const auto start = steady::now();
  EXPECT_FALSE(sem.wait_until(offset_clock::now() + 100ms));
  const auto elapsed = steady::now() - start;
  EXPECT_GE(elapsed, 99ms) << ms(elapsed) << " ms";  // microsecond clock: allow the rounding
  EXPECT_LT(elapsed, 100ms + slack) << ms(elapsed) << " ms";
  sem.post();
  EXPECT_TRUE(sem.wait_until(offset_clock::now() + 10s));
}

TEST(NamedSemaphore, ExtremeDeadlinesAreResultsNotErrors) {
  const std::string name = pt::unique_name("sem-extreme");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  std::error_code ec;
  const auto start = steady::now();
  // Far in the past: only a try.
  EXPECT_FALSE(sem.wait_until(steady::time_point::min(), ec));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(sem.wait_until(sysclock::time_point::min(), ec));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(sem.wait_for(std::chrono::nanoseconds::min(), ec));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(sem.wait_for(std::chrono::hours::min()));
  EXPECT_FALSE(sem.wait_until(sysclock::time_point(std::chrono::seconds(-5))));
  EXPECT_LT(steady::now() - start, slack);
  // Far in the future: with a unit there, they succeed at once (no EINVAL from overflow).
  sem.post();
  EXPECT_TRUE(sem.wait_until(steady::time_point::max(), ec));
  EXPECT_FALSE(ec) << ec.message();
  sem.post();
  EXPECT_TRUE(sem.wait_until(sysclock::time_point::max(), ec));
  EXPECT_FALSE(ec) << ec.message();
  sem.post();
  EXPECT_TRUE(sem.wait_for(std::chrono::nanoseconds::max(), ec));
  EXPECT_FALSE(ec) << ec.message();
  sem.post();
  EXPECT_TRUE(sem.wait_for(std::chrono::hours::max()));
  EXPECT_EQ(sem.value(), 0);
}

TEST(NamedSemaphore, TimedWaitsSucceedAtOnceWhenAUnitIsThere) {
  const std::string name = pt::unique_name("sem-timed-ok");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 3);
  const auto start = steady::now();
  EXPECT_TRUE(sem.wait_for(10s));
  EXPECT_TRUE(sem.wait_until(steady::now() + 10s));
  EXPECT_TRUE(sem.wait_until(sysclock::now() + 10s));
  EXPECT_LT(steady::now() - start, slack);
  EXPECT_EQ(sem.value(), 0);
}

TEST(NamedSemaphore, TimedWaitsSucceedWhenPostedDuringTheWait) {
  const std::string name = pt::unique_name("sem-timed-post");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  auto poster = [&] {
    std::this_thread::sleep_for(50ms);
    sem.post();
  };
  for (int variant = 0; variant < 3; ++variant) {
    SCOPED_TRACE(variant);
    std::thread t(poster);
    const auto start = steady::now();
    bool got = false;
    if (variant == 0) got = sem.wait_for(5s);
    if (variant == 1) got = sem.wait_until(steady::now() + 5s);
    if (variant == 2) got = sem.wait_until(sysclock::now() + 5s);
    const auto elapsed = steady::now() - start;
    t.join();
    EXPECT_TRUE(got);
    EXPECT_GE(elapsed, 40ms) << "did not wait for the post";
    EXPECT_LT(elapsed, 50ms + slack) << "woke up late: " << ms(elapsed) << " ms";
    EXPECT_EQ(sem.value(), 0);
  }
}

TEST(NamedSemaphore, BlockedWaitIsWokenByPostFromAnotherThread) {
  const std::string name = pt::unique_name("sem-thread");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    sem.wait();
    done = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(done.load());
  sem.post();
  waiter.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(sem.value(), 0);
}

TEST(NamedSemaphore, UnlinkWhileOpenKeepsWorking) {
  const std::string name = pt::unique_name("sem-unlink");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 1);
  named_semaphore::unlink(name);

  std::error_code ec;
  auto gone = named_semaphore::open(name, open_mode::open_only, 0, 0600, ec);
  EXPECT_EQ(ec, sys(ENOENT));
  EXPECT_FALSE(gone.is_open());

  EXPECT_TRUE(sem.try_wait());
  sem.post();
  sem.post();
  EXPECT_EQ(sem.value(), 2);
  EXPECT_TRUE(sem.wait_for(100ms));

  named_semaphore::unlink(name, ec);
  EXPECT_EQ(ec, sys(ENOENT));
  auto e = thrown([&] { named_semaphore::unlink(name); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), sys(ENOENT));
  EXPECT_TRUE(contains(e->what(), "sem_unlink \"" + name + "\""));

  // The name now makes a new semaphore, independent of the old one.
  auto fresh = named_semaphore::open(name, open_mode::create_only, 0);
  EXPECT_EQ(fresh.value(), 0);
  EXPECT_EQ(sem.value(), 1);
}

TEST(NamedSemaphore, MoveTransfersAndCloseIsIdempotent) {
  const std::string name = pt::unique_name("sem-move");
  pt::unlink_guard guard(name, sem_kind);
  auto a = named_semaphore::open(name, open_mode::create_only, 1);
  sem_t* h = a.handle();
  named_semaphore b(std::move(a));
  EXPECT_FALSE(a.is_open());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_EQ(a.handle(), nullptr);
  EXPECT_TRUE(a.name().empty() || a.name() == name);
  EXPECT_EQ(b.handle(), h);
  EXPECT_EQ(b.name(), name);
  EXPECT_EQ(b.value(), 1);

  named_semaphore c;
  EXPECT_FALSE(c.is_open());
  c = std::move(b);
  EXPECT_FALSE(b.is_open());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(c.handle(), h);
  EXPECT_TRUE(c.try_wait());

  c.close();
  EXPECT_FALSE(c.is_open());
  EXPECT_EQ(c.handle(), nullptr);
  c.close();
  a.close();
}

TEST(NamedSemaphore, OperationsOnAClosedHandleFailCleanly) {
  named_semaphore sem;
  std::error_code ec;
  sem.post(ec);
  EXPECT_TRUE(ec);
  ec.clear();
  EXPECT_FALSE(sem.try_wait(ec));
  EXPECT_TRUE(ec);
  ec.clear();
  EXPECT_FALSE(sem.wait_for(1ms, ec));
  EXPECT_TRUE(ec);
  ec.clear();
  sem.wait(ec);  // must not block or crash
  EXPECT_TRUE(ec);
  EXPECT_THROW(sem.post(), std::system_error);
  EXPECT_THROW((void)sem.value(), std::system_error);
}

TEST(NamedSemaphore, TwoHandlesOfOneNameCloseIndependently) {
  // glibc hands out one sem_t per name and process, counting opens; closing one handle
  // must leave the other usable.
  const std::string name = pt::unique_name("sem-twohandles");
  pt::unlink_guard guard(name, sem_kind);
  auto a = named_semaphore::open(name, open_mode::create_only, 0);
  auto b = named_semaphore::open(name, open_mode::open_only);
  a.post();
  EXPECT_EQ(b.value(), 1);
  a.close();
  b.post();
  EXPECT_EQ(b.value(), 2);
  EXPECT_TRUE(b.try_wait());
  {
    auto c = named_semaphore::open(name, open_mode::open_only);
    EXPECT_EQ(c.value(), 1);
  }  // destructor closes c
  EXPECT_TRUE(b.wait_for(100ms));
}

// =======================================================================================
// Named semaphores across processes

TEST(NamedSemaphore, ChildBlockedInWaitIsWokenByParentPost) {
  const std::string name = pt::unique_name("sem-xwake");
  const std::string ready_name = pt::unique_name("sem-xready");
  pt::unlink_guard guard(name, sem_kind);
  pt::unlink_guard ready_guard(ready_name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  auto ready = named_semaphore::open(ready_name, open_mode::create_only, 0);

  child c([&] {
    auto s = named_semaphore::open(name, open_mode::open_only);
    auto r = named_semaphore::open(ready_name, open_mode::open_only);
    r.post();
    s.wait();
    return s.value() == 0 ? 0 : 1;
  });
  ASSERT_TRUE(ready.wait_for(5s)) << "child did not start";
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(c.running()) << "child's wait() returned without a unit";
  sem.post();
  EXPECT_EQ(c.wait(), 0);
  EXPECT_EQ(sem.value(), 0);
}

TEST(NamedSemaphore, ParentBlockedInWaitIsWokenByChildPost) {
  const std::string name = pt::unique_name("sem-xwake2");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  const auto start = steady::now();
  child c([&] {
    std::this_thread::sleep_for(50ms);
    auto s = named_semaphore::open(name, open_mode::open_only);
    s.post();
    return 0;
  });
  EXPECT_TRUE(sem.wait_for(10s));
  EXPECT_GE(steady::now() - start, 50ms);
  EXPECT_EQ(c.wait(), 0);
  EXPECT_EQ(sem.value(), 0);
}

TEST(NamedSemaphore, PingPongBetweenProcesses) {
  const std::string ping_name = pt::unique_name("sem-ping");
  const std::string pong_name = pt::unique_name("sem-pong");
  pt::unlink_guard g1(ping_name, sem_kind);
  pt::unlink_guard g2(pong_name, sem_kind);
  auto ping = named_semaphore::open(ping_name, open_mode::create_only, 0);
  auto pong = named_semaphore::open(pong_name, open_mode::create_only, 0);
  constexpr int rounds = 200;
  child c([&] {
    auto pi = named_semaphore::open(ping_name, open_mode::open_only);
    auto po = named_semaphore::open(pong_name, open_mode::open_only);
    for (int i = 0; i < rounds; ++i) {
      if (!pi.wait_for(5s)) return 1;
      po.post();
    }
    return 0;
  });
  for (int i = 0; i < rounds; ++i) {
    ping.post();
    ASSERT_TRUE(pong.wait_for(5s)) << "round " << i;
  }
  EXPECT_EQ(c.wait(), 0);
  EXPECT_EQ(ping.value(), 0);
  EXPECT_EQ(pong.value(), 0);
}

// =======================================================================================
// Signals: EINTR never escapes a wait, a timed wait keeps its deadline

TEST(NamedSemaphore, SignalDoesNotEndAWaitInAThread) {
  const std::string name = pt::unique_name("sem-eintr");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  sigusr1_handler handler;

  for (bool with_ec : {false, true}) {
    SCOPED_TRACE(with_ec ? "wait(ec)" : "wait()");
    g_signals = 0;
    std::atomic<bool> started{false}, done{false};
    std::error_code ec = std::make_error_code(std::errc::io_error);
    std::string failure;
    std::thread waiter([&] {
      started = true;
      try {
        if (with_ec) {
          sem.wait(ec);
        } else {
          sem.wait();
          ec.clear();
        }
      } catch (const std::exception& e) {
        failure = e.what();
      }
      done = true;
    });
    while (!started) std::this_thread::yield();
    for (int i = 0; i < 4; ++i) {
      std::this_thread::sleep_for(20ms);
      signal_and_await_handler(waiter);
    }
    std::this_thread::sleep_for(30ms);
    EXPECT_FALSE(done.load()) << "the wait ended without a post";
    sem.post();
    waiter.join();
    EXPECT_TRUE(done.load());
    EXPECT_EQ(failure, "");
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(static_cast<int>(g_signals), 4);
    EXPECT_EQ(sem.value(), 0);
  }
}

TEST(NamedSemaphore, SignalDoesNotEndAWaitInAChildProcess) {
  const std::string name = pt::unique_name("sem-eintr-x");
  const std::string ready_name = pt::unique_name("sem-eintr-ready");
  pt::unlink_guard guard(name, sem_kind);
  pt::unlink_guard ready_guard(ready_name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  auto ready = named_semaphore::open(ready_name, open_mode::create_only, 0);
  child c([&] {
    sigusr1_handler handler;
    auto s = named_semaphore::open(name, open_mode::open_only);
    auto r = named_semaphore::open(ready_name, open_mode::open_only);
    r.post();
    std::error_code ec;
    s.wait(ec);
    if (ec) {
      std::fprintf(stderr, "wait: %s\n", ec.message().c_str());
      return 1;
    }
    if (g_signals < 1) return 2;  // the signals did arrive during the wait
    return 0;
  });
  ASSERT_TRUE(ready.wait_for(5s));
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(20ms);
    ::kill(c.pid(), SIGUSR1);
  }
  std::this_thread::sleep_for(30ms);
  EXPECT_TRUE(c.running()) << "the child's wait ended without a post";
  sem.post();
  EXPECT_EQ(c.wait(), 0);
}

TEST(NamedSemaphore, SignalDoesNotShortenATimedWait) {
  const std::string name = pt::unique_name("sem-eintr-timed");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  sigusr1_handler handler;

  for (int variant = 0; variant < 3; ++variant) {
    SCOPED_TRACE(variant);
    g_signals = 0;
    std::atomic<bool> started{false};
    std::error_code ec = std::make_error_code(std::errc::io_error);
    bool got = true;
    steady::duration elapsed{};
    std::thread waiter([&] {
      started = true;
      const auto start = steady::now();
      if (variant == 0) got = sem.wait_for(200ms, ec);
      if (variant == 1) got = sem.wait_until(start + 200ms, ec);
      if (variant == 2) got = sem.wait_until(sysclock::now() + 200ms, ec);
      elapsed = steady::now() - start;
    });
    while (!started) std::this_thread::yield();
    for (int i = 0; i < 4; ++i) {
      std::this_thread::sleep_for(30ms);
      ::pthread_kill(waiter.native_handle(), SIGUSR1);
    }
    waiter.join();
    EXPECT_FALSE(got);
    EXPECT_FALSE(ec) << ec.message();
    // Four without sanitizers; ThreadSanitizer defers handlers during calls it does not
    // intercept (sem_clockwait) and merges the pending signals into one.
    EXPECT_GE(static_cast<int>(g_signals), 1);
    if (variant == 2) {
      EXPECT_GE(elapsed, 190ms) << "ended early: " << ms(elapsed) << " ms";  // system clock may slew
    } else {
      EXPECT_GE(elapsed, 200ms) << "ended early: " << ms(elapsed) << " ms";
    }
    EXPECT_LT(elapsed, 200ms + slack) << ms(elapsed) << " ms";
  }
}

TEST(NamedSemaphore, ThrowingTimedWaitInterruptedBySignalReturnsFalse) {
  const std::string name = pt::unique_name("sem-eintr-throw");
  pt::unlink_guard guard(name, sem_kind);
  auto sem = named_semaphore::open(name, open_mode::create_only, 0);
  sigusr1_handler handler;
  std::atomic<bool> started{false};
  std::string failure;
  bool got = true;
  steady::duration elapsed{};
  std::thread waiter([&] {
    started = true;
    const auto start = steady::now();
    try {
      got = sem.wait_for(150ms);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    elapsed = steady::now() - start;
  });
  while (!started) std::this_thread::yield();
  std::this_thread::sleep_for(40ms);
  ::pthread_kill(waiter.native_handle(), SIGUSR1);
  waiter.join();
  EXPECT_EQ(failure, "");
  EXPECT_FALSE(got);
  EXPECT_GE(elapsed, 150ms);
}

// =======================================================================================
// Unnamed semaphores

TEST(Semaphore, InitialValueAndBasicOperations) {
  pipc::semaphore sem(2, pipc::sharing::threads);
  EXPECT_NE(sem.handle(), nullptr);
  EXPECT_EQ(sem.value(), 2);
  sem.wait();
  EXPECT_TRUE(sem.try_wait());
  EXPECT_FALSE(sem.try_wait());
  EXPECT_FALSE(sem.wait_for(20ms));
  sem.post();
  EXPECT_TRUE(sem.wait_until(steady::now() + 1s));
  sem.post();
  EXPECT_TRUE(sem.wait_until(sysclock::now() + 1s));
  EXPECT_EQ(sem.value(), 0);

  pipc::semaphore process_shared(0);  // the default is sharing::processes
  EXPECT_EQ(process_shared.value(), 0);
  process_shared.post();
  EXPECT_EQ(process_shared.value(), 1);
}

TEST(Semaphore, ErrorCodeConstructorAndOverloads) {
  std::error_code ec = std::make_error_code(std::errc::io_error);
  pipc::semaphore sem(1, pipc::sharing::processes, ec);
  ASSERT_FALSE(ec) << ec.message();
  ec = std::make_error_code(std::errc::io_error);
  EXPECT_EQ(sem.value(ec), 1);
  EXPECT_FALSE(ec);
  EXPECT_TRUE(sem.try_wait(ec));
  EXPECT_FALSE(ec);
  EXPECT_FALSE(sem.try_wait(ec));
  EXPECT_FALSE(ec);
  EXPECT_FALSE(sem.wait_for(10ms, ec));
  EXPECT_FALSE(ec);
  sem.post(ec);
  EXPECT_FALSE(ec);
  sem.wait(ec);
  EXPECT_FALSE(ec);
}

TEST(Semaphore, InitialAboveSemValueMaxIsEinval) {
  const unsigned too_big = static_cast<unsigned>(SEM_VALUE_MAX) + 1u;
  auto e = thrown([&] { pipc::semaphore sem(too_big); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), sys(EINVAL)) << e->what();
  EXPECT_TRUE(contains(e->what(), "sem_init"));

  std::error_code ec;
  {
    pipc::semaphore bad(UINT_MAX, pipc::sharing::threads, ec);
    EXPECT_EQ(ec, sys(EINVAL));
  }  // its destructor must cope with the failed init

  pipc::semaphore max(static_cast<unsigned>(SEM_VALUE_MAX), pipc::sharing::threads);
  EXPECT_EQ(max.value(), SEM_VALUE_MAX);
  max.post(ec);
  EXPECT_EQ(ec, sys(EOVERFLOW));
  auto e2 = thrown([&] { max.post(); });
  ASSERT_TRUE(e2.has_value());
  EXPECT_EQ(e2->code(), sys(EOVERFLOW));
  EXPECT_TRUE(contains(e2->what(), "sem_post"));
}

TEST(Semaphore, ProducersAndConsumerThreads) {
  pipc::semaphore items(0, pipc::sharing::threads);
  constexpr int producers = 4;
  constexpr int per_producer = 1000;
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&] {
      for (int i = 0; i < per_producer; ++i) items.post();
    });
  }
  int taken = 0;
  for (; taken < producers * per_producer; ++taken) {
    if (!items.wait_for(5s)) break;
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(taken, producers * per_producer);
  EXPECT_FALSE(items.try_wait());
  EXPECT_EQ(items.value(), 0);
}

TEST(Semaphore, MutualExclusionBetweenThreads) {
  pipc::semaphore lock(1, pipc::sharing::threads);
  long counter = 0;
  constexpr int threads_n = 4;
  constexpr int per_thread = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < threads_n; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        lock.wait();
        counter = counter + 1;
        lock.post();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter, static_cast<long>(threads_n) * per_thread);
  EXPECT_EQ(lock.value(), 1);
}

TEST(Semaphore, SignalDoesNotEndAWait) {
  pipc::semaphore sem(0, pipc::sharing::threads);
  sigusr1_handler handler;
  std::atomic<bool> started{false}, done{false};
  std::string failure;
  std::thread waiter([&] {
    started = true;
    try {
      sem.wait();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    done = true;
  });
  while (!started) std::this_thread::yield();
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(20ms);
    signal_and_await_handler(waiter);
  }
  std::this_thread::sleep_for(30ms);
  EXPECT_FALSE(done.load());
  sem.post();
  waiter.join();
  EXPECT_EQ(failure, "");
  EXPECT_EQ(static_cast<int>(g_signals), 3);
}

namespace {
// What the processes share: a lock and the counter it protects.
struct shared_counter {
  pipc::semaphore lock{1, pipc::sharing::processes};
  pipc::semaphore done{0, pipc::sharing::processes};
  long value = 0;
};
}  // namespace

TEST(Semaphore, SharedCounterInAnonymousSharedMemory) {
  auto shm = pipc::shared_memory::anonymous(sizeof(shared_counter));
  auto m = shm.map();
  ASSERT_GE(m.size(), sizeof(shared_counter));
  auto* block = new (m.data()) shared_counter;

  constexpr int children = 4;
  constexpr int per_child = 2000;
  std::vector<pid_t> pids;
  for (int c = 0; c < children; ++c) {
    pids.push_back(pt::spawn([block] {
      for (int i = 0; i < per_child; ++i) {
        std::error_code ec;
        if (!block->lock.wait_for(5s, ec) || ec) return 1;
        // Read, pause, write: without the lock, updates would be lost.
        long v = block->value;
        if (i % 64 == 0) sched_yield();
        block->value = v + 1;
        block->lock.post(ec);
        if (ec) return 2;
      }
      block->done.post();
      return 0;
    }));
  }
  // The parent takes part too.
  for (int i = 0; i < per_child; ++i) {
    block->lock.wait();
    block->value = block->value + 1;
    block->lock.post();
  }
  for (int c = 0; c < children; ++c) EXPECT_TRUE(block->done.wait_for(10s)) << "child " << c;
  for (pid_t pid : pids) EXPECT_EQ(pt::wait_exit(pid, 10s), 0);
  EXPECT_EQ(block->value, static_cast<long>(children + 1) * per_child);
  EXPECT_EQ(block->lock.value(), 1);
  block->~shared_counter();
}

TEST(Semaphore, ChildBlockedOnUnnamedSemaphoreIsWokenByParent) {
  auto shm = pipc::shared_memory::anonymous(2 * sizeof(pipc::semaphore));
  auto m = shm.map();
  auto* go = new (m.data()) pipc::semaphore(0);
  auto* back = new (m.data() + sizeof(pipc::semaphore)) pipc::semaphore(0);
  child c([&] {
    std::error_code ec;
    go->wait(ec);  // blocks until the parent posts
    if (ec) return 1;
    back->post();
    return 0;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(c.running());
  EXPECT_FALSE(back->try_wait());
  go->post();
  EXPECT_TRUE(back->wait_for(10s));
  EXPECT_EQ(c.wait(), 0);
  back->~semaphore();
  go->~semaphore();
}

TEST(Semaphore, AttachedThroughNamedSharedMemoryInAnotherProcess) {
  const std::string name = pt::unique_name("sem-in-shm");
  pt::unlink_guard guard(name, pipc::name_kind::shared_memory);
  auto shm = pipc::shared_memory::open(name, open_mode::create_only);
  shm.resize(4096);
  auto m = shm.map();
  auto* sem = new (m.data() + 64) pipc::semaphore(0);

  child c([&] {
    // A process that only attaches: maps the object anew and uses the sem_t in place.
    auto other = pipc::shared_memory::open(name, open_mode::open_only);
    auto om = other.map();
    auto* s = std::launder(reinterpret_cast<pipc::semaphore*>(om.data() + 64));
    for (int i = 0; i < 3; ++i) s->post();
    return 0;
  });
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(sem->wait_for(10s)) << i;
  EXPECT_EQ(c.wait(), 0);
  EXPECT_FALSE(sem->try_wait());
  sem->~semaphore();
}

// lock/unlock/try_lock make both kinds usable with the standard scope guards.
TEST(Semaphore, StandardLockGuardsHoldAUnitForAScope) {
  pipc::semaphore sem(1, pipc::sharing::threads);
  {
    std::lock_guard guard(sem);
    EXPECT_EQ(sem.value(), 0);
    EXPECT_FALSE(sem.try_lock());
  }
  EXPECT_EQ(sem.value(), 1);
  {
    std::unique_lock guard(sem, std::try_to_lock);
    EXPECT_TRUE(guard.owns_lock());
    EXPECT_EQ(sem.value(), 0);
  }
  EXPECT_EQ(sem.value(), 1);

  pipc::test::unlink_guard name(pipc::test::unique_name("lockguard"), pipc::name_kind::semaphore);
  auto named = pipc::named_semaphore::open(name.name(), pipc::open_mode::create_only, 1);
  {
    std::scoped_lock guard(named);
    EXPECT_EQ(named.value(), 0);
  }
  EXPECT_EQ(named.value(), 1);
}
