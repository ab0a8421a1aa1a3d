// The fault guard (src/sys/fault_guard.hpp): a truncated guarded mapping reads zeros
// and sets its flag instead of killing the process; every other fault still behaves as
// it would without pipc. Anything that could kill runs in a forked child (or a death
// test's fresh process), and a child reports the first check that failed by its exit
// code.
#include "support.hpp"

#include "sys/fault_guard.hpp"
#include "sys/sys.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

namespace {

using pipc::test::kSanitized;
using pipc::test::run_child;

std::size_t page() { return pipc::sys::page_size(); }

// An unnamed /dev/shm file of `size` bytes, mapped shared (read-write or read-only).
struct mapped_file {
  int fd = -1;
  void* base = nullptr;
  std::size_t size = 0;

  // Returns false if any step fails.
  bool open(std::size_t bytes, bool writable = true) {
    size = bytes;
    if (pipc::sys::shm_create_unnamed(0600, fd) != 0) return false;
    if (pipc::sys::ftruncate(fd, bytes) != 0) return false;
    return pipc::sys::mmap_shared(fd, bytes, 0, writable, base) == 0;
  }
  ~mapped_file() {
    if (base != nullptr) pipc::sys::munmap(base, size);
    if (fd != -1) pipc::sys::close(fd);
  }
  volatile unsigned char* bytes() const { return static_cast<volatile unsigned char*>(base); }
};

// The exit status of a child that a synchronous signal killed: the signal itself, or,
// under a sanitizer (whose handler was the previous one and reports the fault), the
// sanitizer's exit code.
void expect_fatal_signal(int status, int signo) {
  if (kSanitized) {
    EXPECT_NE(status, 0);
    EXPECT_NE(status, -1) << "the child hung";
  } else {
    EXPECT_EQ(status, 128 + signo);
  }
}

// Maps 4 pages filled with 0xAB, guards them, truncates the file to `keep` bytes and
// touches every page: the kept ones are still shared, the lost ones read zeros, take
// writes privately, and the flag is set.
int truncate_and_touch(std::size_t keep) {
  const std::size_t pages = 4;
  mapped_file f;
  if (!f.open(pages * page())) return 1;
  std::memset(f.base, 0xAB, f.size);
  pipc::sys::guard_id id;
  if (pipc::sys::guard_region(f.base, f.size, true, id) != 0) return 2;
  if (pipc::sys::region_faulted(id)) return 3;
  if (pipc::sys::ftruncate(f.fd, keep) != 0) return 4;
  for (std::size_t p = 0; p < pages; ++p) {
    std::size_t first = p * page();
    std::size_t last = first + page() - 1;
    // A byte before the new end keeps its value; the rest of that page reads the
    // kernel's zeros (no fault); the pages after it fault and read pipc's zeros.
    auto want = [keep](std::size_t at) -> unsigned char { return at < keep ? 0xAB : 0; };
    if (f.bytes()[first] != want(first) || f.bytes()[last] != want(last)) return 10 + static_cast<int>(p);
    f.bytes()[first] = 0x5A;
    if (f.bytes()[first] != 0x5A) return 20 + static_cast<int>(p);
  }
  if (pipc::sys::region_faulted(id) != (keep < f.size)) return 5;
  // The kept pages are still the file's: a write through the descriptor shows.
  if (keep >= page()) {
    unsigned char one = 0x11;
    if (::pwrite(f.fd, &one, 1, 0) != 1 || f.bytes()[0] != 0x11) return 6;
  }
  // The writes past the end went nowhere: the file did not grow.
  if (keep < f.size && pipc::sys::fd_size_at_least(f.fd, keep + 1)) return 7;
  pipc::sys::unguard_region(id);
  return id ? 8 : 0;
}

TEST(FaultGuard, TruncationToZeroReadsZerosAndSetsTheFlag) {
  EXPECT_EQ(run_child([] { return truncate_and_touch(0); }), 0);
}

TEST(FaultGuard, TruncationToOnePageKeepsThatPageShared) {
  EXPECT_EQ(run_child([] { return truncate_and_touch(page()); }), 0);
}

TEST(FaultGuard, TruncationToHalfKeepsTheFirstHalfShared) {
  EXPECT_EQ(run_child([] { return truncate_and_touch(2 * page()); }), 0);
}

TEST(FaultGuard, TruncationInsideAPageLosesOnlyTheFollowingPages) {
  // A file that ends mid-page: the rest of that page reads zeros from the kernel (no
  // fault), the pages after it fault.
  EXPECT_EQ(run_child([] { return truncate_and_touch(page() + page() / 2); }), 0);
}

TEST(FaultGuard, NoTruncationNoFlag) {
  EXPECT_EQ(run_child([] { return truncate_and_touch(4 * page()); }), 0);
}

TEST(FaultGuard, FaultInAnUnguardedMappingStillKills) {
  // The handler is installed (a guarded region exists) and the fault is not in it: the
  // default action, or the sanitizer's handler that was there before.
  int status = run_child([] {
    mapped_file guarded, other;
    if (!guarded.open(page()) || !other.open(2 * page())) return 1;
    pipc::sys::guard_id id;
    if (pipc::sys::guard_region(guarded.base, guarded.size, true, id) != 0) return 2;
    if (pipc::sys::ftruncate(other.fd, 0) != 0) return 3;
    (void)other.bytes()[page()];
    return 4;  // survived
  });
  expect_fatal_signal(status, SIGBUS);
}

TEST(FaultGuard, FaultAfterUnguardKills) {
  int status = run_child([] {
    mapped_file f;
    if (!f.open(2 * page())) return 1;
    pipc::sys::guard_id id;
    if (pipc::sys::guard_region(f.base, f.size, true, id) != 0) return 2;
    pipc::sys::unguard_region(id);
    if (pipc::sys::ftruncate(f.fd, 0) != 0) return 3;
    (void)f.bytes()[0];
    return 4;
  });
  expect_fatal_signal(status, SIGBUS);
}

TEST(FaultGuard, SigbusSentWithKillStillKills) {
  int status = run_child([] {
    mapped_file f;
    if (!f.open(page())) return 1;
    pipc::sys::guard_id id;
    if (pipc::sys::guard_region(f.base, f.size, true, id) != 0) return 2;
    ::kill(::getpid(), SIGBUS);
    return 3;
  });
  expect_fatal_signal(status, SIGBUS);
}

TEST(FaultGuard, ReadOnlyRegionReadsZerosAndStaysReadOnly) {
  EXPECT_EQ(run_child([] {
              mapped_file f;
              if (!f.open(2 * page(), false)) return 1;
              pipc::sys::guard_id id;
              if (pipc::sys::guard_region(f.base, f.size, false, id) != 0) return 2;
              if (pipc::sys::ftruncate(f.fd, 0) != 0) return 3;
              if (f.bytes()[page()] != 0 || !pipc::sys::region_faulted(id)) return 4;
              return 0;
            }),
            0);
  int status = run_child([] {
    mapped_file f;
    if (!f.open(2 * page(), false)) return 1;
    pipc::sys::guard_id id;
    if (pipc::sys::guard_region(f.base, f.size, false, id) != 0) return 2;
    if (pipc::sys::ftruncate(f.fd, 0) != 0) return 3;
    (void)f.bytes()[0];
    f.bytes()[0] = 1;  // a write to a read-only mapping: SIGSEGV, as without pipc
    return 4;
  });
  expect_fatal_signal(status, SIGSEGV);
}

// ---- chaining to a handler installed before pipc's ----
// These run as death tests in the "threadsafe" style: gtest re-executes the test
// program for the statement, so the process is fresh and pipc's handler is installed
// after the test's, whatever ran before in this process.

std::atomic<void*> expected_address{nullptr};

extern "C" void earlier_siginfo_handler(int signo, siginfo_t* info, void* context) {
  (void)context;
  bool right = signo == SIGBUS && info->si_signo == SIGBUS && info->si_code == BUS_ADRERR &&
               info->si_addr == expected_address.load();
  ::_exit(right ? 42 : 41);
}

extern "C" void earlier_plain_handler(int signo) { ::_exit(signo == SIGBUS ? 43 : 41); }

// Installs `sa`, guards and faults a region (must survive, not reach the handler), then
// faults an unguarded mapping (must reach the handler, which exits).
void guarded_then_foreign(const struct sigaction& sa) {
  if (::sigaction(SIGBUS, &sa, nullptr) != 0) ::_exit(1);
  mapped_file guarded, other;
  if (!guarded.open(2 * page()) || !other.open(2 * page())) ::_exit(2);
  pipc::sys::guard_id id;
  if (pipc::sys::guard_region(guarded.base, guarded.size, true, id) != 0) ::_exit(3);
  if (!pipc::sys::fault_handler_installed()) ::_exit(4);
  if (pipc::sys::ftruncate(guarded.fd, 0) != 0 || pipc::sys::ftruncate(other.fd, 0) != 0) ::_exit(5);
  if (guarded.bytes()[page()] != 0 || !pipc::sys::region_faulted(id)) ::_exit(6);
  expected_address.store(const_cast<unsigned char*>(other.bytes() + page() + 8));
  (void)other.bytes()[page() + 8];
  ::_exit(7);  // survived a foreign fault
}

TEST(FaultGuardChain, ForeignFaultReachesAnEarlierSigInfoHandler) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  struct sigaction sa {};
  sa.sa_sigaction = earlier_siginfo_handler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  EXPECT_EXIT(guarded_then_foreign(sa), ::testing::ExitedWithCode(42), "");
}

TEST(FaultGuardChain, ForeignFaultReachesAnEarlierPlainHandler) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  struct sigaction sa {};
  sa.sa_handler = earlier_plain_handler;
  sigemptyset(&sa.sa_mask);
  EXPECT_EXIT(guarded_then_foreign(sa), ::testing::ExitedWithCode(43), "");
}

TEST(FaultGuardChain, ForeignFaultWithTheDefaultActionDies) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  // Under a sanitizer the test's SIG_DFL replaced the sanitizer's handler too.
  EXPECT_EXIT(guarded_then_foreign(sa), ::testing::KilledBySignal(SIGBUS), "");
}

TEST(FaultGuardChain, ForeignFaultWithSigbusIgnoredDies) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  struct sigaction sa {};
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  EXPECT_EXIT(guarded_then_foreign(sa), ::testing::KilledBySignal(SIGBUS), "");
}

// ---- threads ----

TEST(FaultGuard, HelperThreadsKeepFaultSignalsUnblocked) {
  sigset_t mask;
  sigemptyset(&mask);
  pthread_t thread;
  ASSERT_EQ(pipc::sys::thread_start(
                [](void* arg) -> void* {
                  ::pthread_sigmask(SIG_SETMASK, nullptr, static_cast<sigset_t*>(arg));
                  return nullptr;
                },
                &mask, thread),
            0);
  pipc::sys::thread_join(thread);
  EXPECT_EQ(sigismember(&mask, SIGBUS), 0);
  EXPECT_EQ(sigismember(&mask, SIGSEGV), 0);
  EXPECT_EQ(sigismember(&mask, SIGILL), 0);
  EXPECT_EQ(sigismember(&mask, SIGFPE), 0);
  EXPECT_EQ(sigismember(&mask, SIGINT), 1);
  EXPECT_EQ(sigismember(&mask, SIGUSR1), 1);
}

TEST(FaultGuard, HelperThreadSurvivesAFault) {
  EXPECT_EQ(run_child([] {
              mapped_file f;
              if (!f.open(4 * page())) return 1;
              std::memset(f.base, 0xAB, f.size);
              pipc::sys::guard_id id;
              if (pipc::sys::guard_region(f.base, f.size, true, id) != 0) return 2;
              if (pipc::sys::ftruncate(f.fd, 0) != 0) return 3;
              struct work {
                volatile unsigned char* bytes;
                std::size_t size;
                unsigned sum;
              } w{f.bytes(), f.size, 1};
              pthread_t thread;
              if (pipc::sys::thread_start(
                      [](void* arg) -> void* {
                        auto* job = static_cast<work*>(arg);
                        unsigned sum = 0;
                        for (std::size_t i = 0; i < job->size; i += 512) sum += job->bytes[i];
                        job->bytes[job->size - 1] = 7;
                        job->sum = sum;
                        return nullptr;
                      },
                      &w, thread) != 0) {
                return 4;
              }
              pipc::sys::thread_join(thread);
              if (w.sum != 0) return 5;
              if (!pipc::sys::region_faulted(id)) return 6;
              return 0;
            }),
            0);
}

TEST(FaultGuard, ManyThreadsFaultAtOnce) {
  EXPECT_EQ(run_child([] {
              const std::size_t pages = 32;
              const int threads = 8;
              mapped_file f;
              if (!f.open(pages * page())) return 1;
              pipc::sys::guard_id id;
              if (pipc::sys::guard_region(f.base, f.size, true, id) != 0) return 2;
              if (pipc::sys::ftruncate(f.fd, 0) != 0) return 3;
              std::atomic<int> ready{0};
              std::atomic<int> nonzero{0};
              std::vector<std::thread> workers;
              for (int t = 0; t < threads; ++t) {
                workers.emplace_back([&, t] {
                  ready.fetch_add(1);
                  while (ready.load() < threads) std::this_thread::yield();
                  // Each thread walks the pages from a different start, reading before
                  // it writes, so that faults on different pages race.
                  for (std::size_t k = 0; k < pages; ++k) {
                    std::size_t p = (k * 7 + static_cast<std::size_t>(t) * 5) % pages;
                    volatile unsigned char* at = f.bytes() + p * page() + static_cast<std::size_t>(t);
                    if (*at != 0) nonzero.fetch_add(1);
                    *at = static_cast<unsigned char>(t + 1);
                  }
                });
              }
              for (auto& w : workers) w.join();
              if (!pipc::sys::region_faulted(id)) return 4;
              // Every thread reads its own bytes before it writes them: zeros, whichever
              // thread's fault replaced the page.
              if (nonzero.load() != 0) return 5;
              pipc::sys::unguard_region(id);
              return 0;
            }),
            0);
}

TEST(FaultGuard, GuardChurnWhileAnotherThreadFaults) {
  EXPECT_EQ(run_child([] {
              const int rounds = kSanitized ? 100 : 500;
              mapped_file stable;
              if (!stable.open(page())) return 1;
              std::atomic<bool> stop{false};
              std::atomic<int> churn_errors{0};
              // Registers and unregisters many regions (more than one chunk of slots),
              // so that slots change under the handler's feet.
              std::thread churn([&] {
                std::vector<pipc::sys::guard_id> ids(150);
                while (!stop.load()) {
                  for (auto& id : ids) {
                    if (pipc::sys::guard_region(stable.base, stable.size, true, id) != 0) churn_errors.fetch_add(1);
                  }
                  for (auto& id : ids) pipc::sys::unguard_region(id);
                }
              });
              int failure = 0;
              for (int r = 0; r < rounds && failure == 0; ++r) {
                mapped_file f;
                if (!f.open(2 * page())) {
                  failure = 10;
                  break;
                }
                pipc::sys::guard_id id;
                if (pipc::sys::guard_region(f.base, f.size, true, id) != 0) failure = 11;
                if (failure == 0 && pipc::sys::ftruncate(f.fd, page()) != 0) failure = 12;
                if (failure == 0 && f.bytes()[page() + 100] != 0) failure = 13;
                if (failure == 0 && !pipc::sys::region_faulted(id)) failure = 14;
                pipc::sys::unguard_region(id);
              }
              stop.store(true);
              churn.join();
              if (churn_errors.load() != 0) return 2;
              return failure;
            }),
            0);
}

TEST(FaultGuard, OnlyTheFaultedRegionIsFlagged) {
  EXPECT_EQ(run_child([] {
              // 199 guarded mappings of one file that keeps its size, then one of a file
              // that is truncated: more regions than one chunk of slots holds.
              mapped_file kept, cut;
              if (!kept.open(page()) || !cut.open(2 * page())) return 1;
              std::vector<void*> views;
              std::vector<pipc::sys::guard_id> ids;
              for (int i = 0; i < 199; ++i) {
                void* view = nullptr;
                if (pipc::sys::mmap_shared(kept.fd, page(), 0, true, view) != 0) return 2;
                views.push_back(view);
                ids.emplace_back();
                if (pipc::sys::guard_region(view, page(), true, ids.back()) != 0) return 3;
              }
              pipc::sys::guard_id cut_id;
              if (pipc::sys::guard_region(cut.base, cut.size, true, cut_id) != 0) return 4;
              if (pipc::sys::ftruncate(cut.fd, 0) != 0) return 5;
              if (cut.bytes()[page()] != 0) return 6;
              if (!pipc::sys::region_faulted(cut_id)) return 7;
              for (auto& id : ids) {
                if (pipc::sys::region_faulted(id)) return 8;
              }
              // The untouched mappings are still shared.
              static_cast<volatile unsigned char*>(views.front())[0] = 0x33;
              if (static_cast<volatile unsigned char*>(views.back())[0] != 0x33) return 9;
              for (std::size_t i = 0; i < views.size(); ++i) {
                pipc::sys::unguard_region(ids[i]);
                pipc::sys::munmap(views[i], page());
              }
              pipc::sys::unguard_region(cut_id);
              return 0;
            }),
            0);
}

TEST(FaultGuard, HandlerIsInstalledAtTheFirstGuardAndKeepsSaRestart) {
  EXPECT_EQ(run_child([] {
              // pipc's own handler must not change which calls a SIGBUS handler
              // interrupts: SA_RESTART as the previous handler had it (a sanitizer's,
              // say), or set when there was none.
              struct sigaction before {};
              if (::sigaction(SIGBUS, nullptr, &before) != 0) return 6;
              const bool had_handler = (before.sa_flags & SA_SIGINFO) != 0 ||
                                       (before.sa_handler != SIG_DFL && before.sa_handler != SIG_IGN);
              const int want = had_handler ? before.sa_flags & SA_RESTART : SA_RESTART;
              mapped_file f;
              if (!f.open(page())) return 1;
              pipc::sys::guard_id id;
              if (pipc::sys::guard_region(f.base, f.size, true, id) != 0) return 2;
              if (!pipc::sys::fault_handler_installed()) return 3;
              struct sigaction now {};
              if (::sigaction(SIGBUS, nullptr, &now) != 0 || (now.sa_flags & SA_RESTART) != want) return 4;
              pipc::sys::unguard_region(id);
              // Unregistering the last region leaves the handler in place.
              return pipc::sys::fault_handler_installed() ? 0 : 5;
            }),
            0);
}

// ---- arguments and helpers ----

TEST(FaultGuard, RejectsBadArguments) {
  pipc::sys::guard_id id;
  EXPECT_EQ(pipc::sys::guard_region(nullptr, page(), true, id), EINVAL);
  alignas(64) static unsigned char buffer[128];
  EXPECT_EQ(pipc::sys::guard_region(buffer + 1, 16, true, id), EINVAL);
  mapped_file f;
  ASSERT_TRUE(f.open(page()));
  EXPECT_EQ(pipc::sys::guard_region(f.base, 0, true, id), EINVAL);
  EXPECT_FALSE(id);
  pipc::sys::unguard_region(id);  // a null id is ignored
}

TEST(FaultGuard, FdSizeAtLeast) {
  mapped_file f;
  ASSERT_TRUE(f.open(3 * page()));
  EXPECT_TRUE(pipc::sys::fd_size_at_least(f.fd, 3 * page()));
  EXPECT_FALSE(pipc::sys::fd_size_at_least(f.fd, 3 * page() + 1));
  ASSERT_EQ(pipc::sys::ftruncate(f.fd, page()), 0);
  EXPECT_FALSE(pipc::sys::fd_size_at_least(f.fd, 3 * page()));
  EXPECT_FALSE(pipc::sys::fd_size_at_least(-1, 0));
}

}  // namespace
