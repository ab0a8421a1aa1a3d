// Zero-copy send and receive: send_loan, received_message and the C API's
// pipc_mq_send_begin/commit/abort and pipc_mq_receive_begin/end (docs/engine.md,
// "Loans"). Ordering as for copying calls, loans that hold no lock, slots that come back
// when their holder aborts, closes or dies, and stopped holders that hold only their
// slot.
#include "capi_support.hpp"
#include "engine_support.hpp"
#include "support.hpp"

#include <pipc/c/mqueue.h>
#include <pipc/message_queue.hpp>

#include <gtest/gtest.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using pipc::backend;
using pipc::message_queue;
using pipc::name_kind;
using pipc::open_mode;
using pipc::test::unique_name;
using pipc::test::unlink_guard;

namespace {

std::span<const std::byte> bytes(const std::string& s) { return pipc::test::as_span(s.data(), s.size()); }

std::string text(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

void put(std::span<std::byte> into, const std::string& s) {
  ASSERT_GE(into.size(), s.size());
  std::memcpy(into.data(), s.data(), s.size());
}

// Receives one message by copy, as a string; "" with a failure if there is none.
std::string take(message_queue& q, unsigned* priority = nullptr) {
  std::vector<std::byte> buffer(static_cast<std::size_t>(q.attributes().message_size));
  auto got = q.try_receive(buffer);
  EXPECT_TRUE(got.has_value());
  if (!got) return {};
  if (priority != nullptr) *priority = got->priority;
  return text(std::span<const std::byte>(buffer).first(got->size));
}

long depth(const message_queue& q) { return q.attributes().current_messages; }

// A pipe to tell a parent that a child reached a point.
struct signal_pipe {
  int fd[2] = {-1, -1};
  signal_pipe() { EXPECT_EQ(::pipe(fd), 0); }
  ~signal_pipe() {
    ::close(fd[0]);
    ::close(fd[1]);
  }
  void tell() const { (void)!::write(fd[1], "x", 1); }
  bool heard(std::chrono::milliseconds limit = 10s) const {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      pollfd p{fd[0], POLLIN, 0};
      if (::poll(&p, 1, 50) == 1) {
        char c;
        return ::read(fd[0], &c, 1) == 1;
      }
    }
    return false;
  }
};

class Loans : public ::testing::TestWithParam<backend> {
 protected:
  message_queue open(const std::string& name, long max_messages, long message_size) {
    pipc::mq_options o;
    o.backend = GetParam();
    o.max_messages = max_messages;
    o.message_size = message_size;
    return message_queue::open(name, open_mode::create_only, o);
  }
  name_kind kind() const { return GetParam() == backend::kernel ? name_kind::message_queue : name_kind::engine_queue; }
};

}  // namespace

// ---- both backends: the same API, the same semantics ----

TEST_P(Loans, LoanCommitAndViewRoundTrip) {
  unlink_guard guard(unique_name("loan-rt"), kind());
  message_queue q = open(guard.name(), 4, 64);
  pipc::send_loan l = q.loan(5);
  ASSERT_TRUE(l);
  EXPECT_EQ(l.size(), 5u);
  put(l.data(), "hello");
  l.commit(3);
  EXPECT_FALSE(l);
  q.send_in_place(16, 1, [](std::span<std::byte> b) -> std::size_t {
    std::memcpy(b.data(), "abc", 3);
    return 3;  // fewer bytes than lent
  });
  EXPECT_EQ(depth(q), 2);
  {
    pipc::received_message m = q.receive_view();
    ASSERT_TRUE(m);
    EXPECT_EQ(text(m.data()), "hello");
    EXPECT_EQ(m.priority(), 3u);
  }
  std::string got = q.receive_in_place([](std::span<const std::byte> b, unsigned prio) {
    EXPECT_EQ(prio, 1u);
    return text(b);
  });
  EXPECT_EQ(got, "abc");
  EXPECT_FALSE(q.try_receive_view().has_value());
  EXPECT_EQ(depth(q), 0);
}

TEST_P(Loans, DestroyedOrAbortedLoanSendsNothing) {
  unlink_guard guard(unique_name("loan-abort"), kind());
  message_queue q = open(guard.name(), 2, 32);
  {
    pipc::send_loan l = q.loan(4);
    put(l.data(), "lost");
  }
  pipc::send_loan l2 = q.loan(4);
  l2.abort();
  l2.abort();  // idempotent
  EXPECT_THROW(q.send_in_place(4, 0, [](std::span<std::byte>) { throw std::runtime_error("fill failed"); }),
               std::runtime_error);
  EXPECT_EQ(depth(q), 0);
  // Both slots are free again.
  EXPECT_TRUE(q.try_send(bytes("a")));
  EXPECT_TRUE(q.try_send(bytes("b")));
  EXPECT_EQ(take(q), "a");
  EXPECT_EQ(take(q), "b");
}

TEST_P(Loans, TooLargeLoanIsEmsgsizeAndReadOnlyIsEbadf) {
  unlink_guard guard(unique_name("loan-errors"), kind());
  message_queue q = open(guard.name(), 2, 32);
  std::error_code ec;
  (void)q.loan(33, ec);
  EXPECT_EQ(ec, std::errc::message_size);
  pipc::send_loan l = q.loan(8);
  l.commit(9, 0, ec);
  EXPECT_EQ(ec, std::errc::message_size);
  EXPECT_TRUE(l);  // still outstanding
  l.commit(pipc::max_priority + 1, ec);
  EXPECT_EQ(ec, std::errc::invalid_argument);
  EXPECT_TRUE(l);
  l.commit(0, ec);
  EXPECT_FALSE(ec);
  pipc::mq_options o;
  o.backend = GetParam();
  o.access = pipc::access::read_only;
  message_queue reader = message_queue::open(guard.name(), open_mode::open_only, o);
  (void)reader.loan(1, ec);
  EXPECT_EQ(ec, std::errc::bad_file_descriptor);
}

TEST_P(Loans, OrderIsByCommitAndPriorityAsForSend) {
  unlink_guard guard(unique_name("loan-order"), kind());
  message_queue q = open(guard.name(), 8, 32);
  pipc::send_loan early = q.loan(5);
  put(early.data(), "early");
  q.send(bytes("copy1"), 1);
  pipc::send_loan high = q.loan(4);
  put(high.data(), "high");
  early.commit(1);  // after copy1, though taken before it
  q.send(bytes("copy2"), 1);
  high.commit(7);
  q.send(bytes("low"), 0);
  q.send(bytes("copy7"), 7);
  unsigned prio = 0;
  EXPECT_EQ(take(q, &prio), "high");
  EXPECT_EQ(prio, 7u);
  EXPECT_EQ(take(q), "copy7");
  EXPECT_EQ(take(q), "copy1");
  {
    pipc::received_message m = q.receive_view();
    EXPECT_EQ(text(m.data()), "early");
  }
  EXPECT_EQ(take(q), "copy2");
  EXPECT_EQ(take(q, &prio), "low");
  EXPECT_EQ(prio, 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, Loans, ::testing::Values(backend::shm, backend::kernel),
                         [](const auto& param_info) { return param_info.param == backend::shm ? "shm" : "kernel"; });

// ---- the engine: slots, locks and processes ----

namespace {
message_queue engine_queue(const std::string& name, long max_messages, long message_size) {
  return message_queue::open(name, open_mode::create_only, pipc::test::engine_options(max_messages, message_size));
}
}  // namespace

TEST(EngineLoans, LoanIsZeroCopyInTheRegion) {
  unlink_guard guard(unique_name("loan-zc"), name_kind::engine_queue);
  message_queue q = engine_queue(guard.name(), 2, 64);
  pipc::test::raw_region raw(guard.name());
  pipc::send_loan l = q.loan(64);
  std::memset(l.data().data(), 0x5a, 64);
  // The loan is a slot of the queue's file (seen here through a mapping of its own).
  auto filled = [&](std::uint32_t n) {
    for (std::size_t i = 0; i < 64; ++i) {
      if (raw.payload(n)[i] != std::byte{0x5a}) return false;
    }
    return true;
  };
  EXPECT_TRUE(filled(1) || filled(2)) << "the loan is not a slot of the region";
  const auto* at = l.data().data();
  l.commit(0);
  pipc::received_message m = q.receive_view();
  EXPECT_EQ(m.data().data(), at);  // the receiver reads the very bytes the sender wrote
}

TEST(EngineLoans, LoansHoldSlotsNotLocksAndAreNotMessages) {
  unlink_guard guard(unique_name("loan-slots"), name_kind::engine_queue);
  message_queue q = engine_queue(guard.name(), 3, 16);
  pipc::send_loan a = q.loan(1);
  EXPECT_EQ(depth(q), 0);
  EXPECT_EQ(q.stats().current_messages, 0);
  // Other senders and receivers go on while the loan is out (no lock is held).
  std::thread other([&] {
    message_queue q2 = message_queue::open(guard.name(), open_mode::open_only, pipc::test::engine_options(3, 16));
    EXPECT_TRUE(q2.try_send(bytes("x")));
    EXPECT_EQ(take(q2), "x");
  });
  other.join();
  pipc::send_loan b = q.loan(1);
  EXPECT_TRUE(q.try_send(bytes("y")));
  // Three slots: two lent, one message. Full.
  EXPECT_FALSE(q.try_send(bytes("z")));
  EXPECT_FALSE(q.try_loan(1).has_value());
  EXPECT_EQ(depth(q), 1);
  // A lent message is off the queue but holds its slot.
  pipc::received_message m = q.receive_view();
  EXPECT_EQ(depth(q), 0);
  EXPECT_FALSE(q.try_send(bytes("z")));
  m.release();
  EXPECT_TRUE(q.try_send(bytes("z")));
  a.abort();
  EXPECT_TRUE(q.try_send(bytes("w")));
  b.commit(0);
  EXPECT_EQ(depth(q), 3);
}

TEST(EngineLoans, BlockedLoanWakesWhenAViewIsReleased) {
  unlink_guard guard(unique_name("loan-wake"), name_kind::engine_queue);
  message_queue q = engine_queue(guard.name(), 1, 16);
  q.send(bytes("m"));
  pipc::received_message m = q.receive_view();
  std::atomic<bool> got{false};
  std::thread sender([&] {
    pipc::send_loan l = q.loan(1);  // blocks: the one slot is lent to the view
    got.store(true);
    put(l.data(), "n");
    l.commit(0);
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(got.load());
  m.release();
  sender.join();
  EXPECT_TRUE(got.load());
  EXPECT_EQ(take(q), "n");
}

TEST(EngineLoans, ClosingTheQueueWaitsForItsLoans) {
  unlink_guard guard(unique_name("loan-close"), name_kind::engine_queue);
  message_queue q = engine_queue(guard.name(), 2, 16);
  pipc::send_loan l = q.loan(3);
  q.close();  // the loan keeps the description open
  put(l.data(), "abc");
  l.commit(0);
  message_queue r = message_queue::open(guard.name(), open_mode::open_only, pipc::test::engine_options(2, 16));
  EXPECT_EQ(take(r), "abc");
}

TEST(EngineLoans, StatsCountLoans) {
  unlink_guard guard(unique_name("loan-stats"), name_kind::engine_queue);
  message_queue q = engine_queue(guard.name(), 4, 16);
  pipc::send_loan l = q.loan(1);
  q.send(bytes("m"));
  pipc::received_message m = q.receive_view();
  pipc::mq_stats s = q.stats();
  EXPECT_EQ(s.send_loans, 1);
  EXPECT_EQ(s.receive_loans, 1);
  EXPECT_EQ(s.current_messages, 0);
  l.commit(0);
  m.release();
  s = q.stats();
  EXPECT_EQ(s.send_loans, 0);
  EXPECT_EQ(s.receive_loans, 0);
  EXPECT_EQ(s.current_messages, 1);
}

TEST(EngineLoans, ManyThreadsMixingLoansAndCopiesLoseNothing) {
  unlink_guard guard(unique_name("loan-mix"), name_kind::engine_queue);
  message_queue q = engine_queue(guard.name(), 8, 64);
  constexpr int kPerThread = 2000;
  std::atomic<long> sum{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 1; i <= kPerThread; ++i) {
        const long v = t * 100000 + i;
        if (i % 2 == 0) {
          q.send_in_place(sizeof v, static_cast<unsigned>(i % 3), [&](std::span<std::byte> b) { std::memcpy(b.data(), &v, sizeof v); });
        } else {
          q.send(pipc::test::as_span(&v, sizeof v), static_cast<unsigned>(i % 3));
        }
      }
    });
    threads.emplace_back([&, t] {
      std::byte buffer[64];
      for (int i = 0; i < kPerThread; ++i) {
        long v = 0;
        if ((i + t) % 2 == 0) {
          q.receive_in_place([&](std::span<const std::byte> b, unsigned) { std::memcpy(&v, b.data(), sizeof v); });
        } else {
          auto r = q.receive(buffer);
          EXPECT_EQ(r.size, sizeof v);
          std::memcpy(&v, buffer, sizeof v);
        }
        sum.fetch_add(v);
      }
    });
  }
  for (auto& t : threads) t.join();
  long expected = 0;
  for (int t = 0; t < 2; ++t) {
    for (int i = 1; i <= kPerThread; ++i) expected += t * 100000 + i;
  }
  EXPECT_EQ(sum.load(), expected);
  EXPECT_EQ(depth(q), 0);
  EXPECT_EQ(q.stats().send_loans, 0);
}

// A sender killed while it fills a loan: its half-written message is never delivered,
// and its slot comes back (the next sender that finds the queue full scans for loans of
// dead processes).
TEST(EngineLoans, SenderKilledHoldingALoanLosesTheMessageNotTheSlot) {
  unlink_guard guard(unique_name("loan-kill-send"), name_kind::engine_queue);
  message_queue q = engine_queue(guard.name(), 1, 4096);
  const std::string name = guard.name();
  signal_pipe ready;
  pipc::test::child c([&]() -> int {
    message_queue cq = message_queue::open(name, open_mode::open_only, pipc::test::engine_options(1, 4096));
    pipc::send_loan l = cq.loan(4096);
    std::memset(l.data().data(), 'h', 2048);  // half written
    ready.tell();
    for (;;) ::pause();
  });
  ASSERT_TRUE(ready.heard());
  EXPECT_FALSE(q.try_send(bytes("full")));  // the only slot is lent to a live process
  EXPECT_EQ(q.stats().send_loans, 1);
  ::kill(c.pid(), SIGKILL);
  EXPECT_EQ(c.wait(), 128 + SIGKILL);
  EXPECT_TRUE(q.send_for(bytes("after"), 0, 5s));  // reclaimed
  EXPECT_EQ(take(q), "after");
  EXPECT_FALSE(q.try_receive_view().has_value());  // nothing of the dead sender
  EXPECT_EQ(q.stats().send_loans, 0);
}

// A receiver killed while it holds a lent message: the message is gone (delivered to a
// process that died, as after receive()), not redelivered, and its slot comes back.
TEST(EngineLoans, ReceiverKilledHoldingAViewDropsTheMessageAndFreesTheSlot) {
  unlink_guard guard(unique_name("loan-kill-recv"), name_kind::engine_queue);
  message_queue q = engine_queue(guard.name(), 1, 64);
  q.send(bytes("once"));
  const std::string name = guard.name();
  signal_pipe ready;
  pipc::test::child c([&]() -> int {
    message_queue cq = message_queue::open(name, open_mode::open_only, pipc::test::engine_options(1, 64));
    pipc::received_message m = cq.receive_view();
    if (text(m.data()) != "once") return 1;
    ready.tell();
    for (;;) ::pause();
  });
  ASSERT_TRUE(ready.heard());
  EXPECT_EQ(depth(q), 0);
  EXPECT_FALSE(q.try_send(bytes("full")));
  ::kill(c.pid(), SIGKILL);
  EXPECT_EQ(c.wait(), 128 + SIGKILL);
  EXPECT_TRUE(q.send_for(bytes("next"), 0, 5s));
  EXPECT_EQ(take(q), "next");  // not "once" again
  EXPECT_FALSE(q.try_receive_view().has_value());
}

// A blocked sender (not a try) also gets the dead holder's slot, within its periodic
// re-check.
TEST(EngineLoans, BlockedSenderGetsTheSlotOfALoanHolderThatDies) {
  unlink_guard guard(unique_name("loan-kill-blocked"), name_kind::engine_queue);
  message_queue q = engine_queue(guard.name(), 1, 64);
  const std::string name = guard.name();
  signal_pipe ready;
  pipc::test::child c([&]() -> int {
    message_queue cq = message_queue::open(name, open_mode::open_only, pipc::test::engine_options(1, 64));
    pipc::send_loan l = cq.loan(8);
    ready.tell();
    for (;;) ::pause();
  });
  ASSERT_TRUE(ready.heard());
  std::thread killer([&] {
    std::this_thread::sleep_for(200ms);
    ::kill(c.pid(), SIGKILL);
  });
  const auto start = std::chrono::steady_clock::now();
  q.send(bytes("late"));  // blocks until the slot is reclaimed
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  killer.join();
  EXPECT_EQ(c.wait(), 128 + SIGKILL);
  EXPECT_EQ(take(q), "late");
}

// A stopped loan holder holds its slot and nothing else: the others go on with the
// remaining slots, and its loan completes when it continues.
TEST(EngineLoans, StoppedHoldersHoldOnlyTheirSlots) {
  unlink_guard guard(unique_name("loan-stop"), name_kind::engine_queue);
  message_queue q = engine_queue(guard.name(), 3, 64);
  q.send(bytes("for-child"));
  const std::string name = guard.name();
  signal_pipe ready;
  signal_pipe go;
  pipc::test::child c([&]() -> int {
    message_queue cq = message_queue::open(name, open_mode::open_only, pipc::test::engine_options(3, 64));
    pipc::send_loan l = cq.loan(5);
    pipc::received_message m = cq.receive_view();
    put(l.data(), "child");
    ready.tell();
    if (!go.heard(20s)) return 2;
    l.commit(0);
    return text(m.data()) == "for-child" ? 0 : 1;
  });
  ASSERT_TRUE(ready.heard());
  ASSERT_EQ(::kill(c.pid(), SIGSTOP), 0);
  // One slot left for everyone else: it keeps working.
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(q.send_for(bytes(std::string("p").append(std::to_string(i))), 0, 2s)) << i;
    EXPECT_FALSE(q.try_send(bytes("no room")));
    EXPECT_EQ(take(q), std::string("p").append(std::to_string(i)));
  }
  EXPECT_EQ(q.stats().send_loans, 1);
  EXPECT_EQ(q.stats().receive_loans, 1);
  ASSERT_EQ(::kill(c.pid(), SIGCONT), 0);
  go.tell();
  EXPECT_EQ(c.wait(), 0);
  EXPECT_EQ(take(q), "child");
  EXPECT_EQ(depth(q), 0);
  EXPECT_TRUE(q.try_send(bytes("a")));
  EXPECT_TRUE(q.try_send(bytes("b")));
  EXPECT_TRUE(q.try_send(bytes("c")));
}

// The loan scan takes nothing from a live process: a sender that finds the queue full
// of another process's loans scans (and scans again) and still finds it full, and every
// loan commits afterwards.
TEST(EngineLoans, ScanLeavesLiveLoansOfAnotherProcessAlone) {
  unlink_guard guard(unique_name("loan-scan-live"), name_kind::engine_queue);
  message_queue q = engine_queue(guard.name(), 3, 64);
  const std::string name = guard.name();
  signal_pipe ready;
  signal_pipe go;
  pipc::test::child c([&]() -> int {
    message_queue cq = message_queue::open(name, open_mode::open_only, pipc::test::engine_options(3, 64));
    pipc::send_loan a = cq.loan(1), b = cq.loan(1), d = cq.loan(1);
    put(a.data(), "a");
    put(b.data(), "b");
    put(d.data(), "d");
    ready.tell();
    if (!go.heard(20s)) return 2;
    a.commit(0);
    b.commit(0);
    d.commit(0);
    return 0;
  });
  ASSERT_TRUE(ready.heard());
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(60ms);  // a scan is due again
    EXPECT_FALSE(q.try_send(bytes("x")));
  }
  EXPECT_EQ(q.stats().send_loans, 3);
  go.tell();
  EXPECT_EQ(c.wait(), 0);
  EXPECT_EQ(take(q), "a");
  EXPECT_EQ(take(q), "b");
  EXPECT_EQ(take(q), "d");
}

// A commit killed after it marked its slot RING but before it published the message
// leaves a slot in no ring and no loan: the loan scan gives it back too.
TEST(EngineLoans, SlotOfACommitKilledBeforePublishingComesBack) {
  unlink_guard guard(unique_name("loan-kill-commit"), name_kind::engine_queue);
  message_queue q = engine_queue(guard.name(), 2, 64);
  const std::string name = guard.name();
  signal_pipe ready;
  pipc::test::child c([&]() -> int {
    message_queue cq = message_queue::open(name, open_mode::open_only, pipc::test::engine_options(2, 64));
    pipc::send_loan l = cq.loan(8);
    ready.tell();
    for (;;) ::pause();
  });
  ASSERT_TRUE(ready.heard());
  ::kill(c.pid(), SIGKILL);
  EXPECT_EQ(c.wait(), 128 + SIGKILL);
  {
    // As the commit would have left it at its death: RING, in neither ring.
    pipc::test::raw_region raw(guard.name());
    for (std::uint32_t n = 1; n <= 2; ++n) {
      if (raw.slot(n)->state.load() == pipc::engine::slot_send_loan) raw.slot(n)->state.store(pipc::engine::slot_ring);
    }
  }
  EXPECT_TRUE(q.try_send(bytes("1")));
  EXPECT_TRUE(q.send_for(bytes("2"), 0, 5s));
  EXPECT_EQ(take(q), "1");
  EXPECT_EQ(take(q), "2");
}

// Processes killed at random points of loan and copy operations, over and over: every
// message that is delivered is whole (a half-written loan never is), and afterwards
// every slot of the queue is usable again.
TEST(EngineLoans, RandomKillsLeaveWholeMessagesAndEverySlotUsable) {
  unlink_guard guard(unique_name("loan-chaos"), name_kind::engine_queue);
  constexpr long kSlots = 4;
  constexpr std::size_t kSize = 512;
  message_queue q = engine_queue(guard.name(), kSlots, static_cast<long>(kSize));
  const std::string name = guard.name();
  auto whole = [](std::span<const std::byte> b) {
    if (b.size() != kSize) return false;
    for (std::byte x : b) {
      if (x != b[0]) return false;
    }
    return true;
  };
  std::mt19937 random(12345);
  for (int round = 0; round < 25; ++round) {
    pipc::test::child sender([&]() -> int {
      message_queue cq = message_queue::open(name, open_mode::open_only, pipc::test::engine_options(kSlots, kSize));
      std::vector<std::byte> buffer(kSize);
      for (unsigned i = 0;; ++i) {
        const auto fill = static_cast<std::byte>(i);
        if (i % 3 != 0) {
          cq.send_in_place(kSize, i % 4, [&](std::span<std::byte> b) {
            for (std::size_t k = 0; k < b.size(); ++k) b[k] = fill;
          });
        } else {
          std::fill(buffer.begin(), buffer.end(), fill);
          cq.send(buffer, i % 4);
        }
      }
    });
    pipc::test::child receiver([&]() -> int {
      message_queue cq = message_queue::open(name, open_mode::open_only, pipc::test::engine_options(kSlots, kSize));
      std::vector<std::byte> buffer(kSize);
      for (unsigned i = 0;; ++i) {
        if (i % 2 == 0) {
          pipc::received_message m = cq.receive_view();
          if (!whole(m.data())) return 1;
        } else {
          auto r = cq.receive(buffer);
          if (!whole(std::span<const std::byte>(buffer).first(r.size))) return 1;
        }
      }
    });
    // Kill in the middle of the traffic, not before it starts.
    const std::uint64_t before = q.stats().messages_received;
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (q.stats().messages_received < before + 20 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(100us);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 5000));
    ::kill(random() % 2 ? sender.pid() : receiver.pid(), SIGKILL);
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 2000));
    ::kill(sender.pid(), SIGKILL);
    ::kill(receiver.pid(), SIGKILL);
    EXPECT_EQ(sender.wait(), 128 + SIGKILL);
    const int r = receiver.wait();
    EXPECT_TRUE(r == 128 + SIGKILL) << "the receiver saw a damaged message (exit " << r << ")";
    // Drain what is queued: every message whole.
    std::vector<std::byte> buffer(kSize);
    while (auto got = q.try_receive(buffer)) {
      EXPECT_TRUE(whole(std::span<const std::byte>(buffer).first(got->size))) << "round " << round;
    }
  }
  EXPECT_GT(q.stats().messages_received, 25u * 20);  // the kills hit running traffic
  // Every slot comes back (dead loans are reclaimed by the senders that find the queue
  // full), and nothing is left lent.
  for (long i = 0; i < kSlots; ++i) {
    std::vector<std::byte> m(kSize, std::byte{7});
    EXPECT_TRUE(q.send_for(m, 0, 5s)) << "slot " << i;
  }
  // A full queue makes a sender's try run a loan scan (at most every 50 ms per
  // descriptor), which sets the loan counts to the truth: none.
  std::this_thread::sleep_for(60ms);
  EXPECT_FALSE(q.try_send(bytes("x")));
  EXPECT_EQ(depth(q), kSlots);
  EXPECT_EQ(q.stats().send_loans, 0);
  EXPECT_EQ(q.stats().receive_loans, 0);
}

// ---- the C API ----

namespace {
constexpr pipc_mqd_t kBad = pipc::test::kBadMqd;
using pipc::test::realtime_in;
}  // namespace

TEST(CApiLoans, BeginCommitReceiveBeginEnd) {
  unlink_guard guard(unique_name("capi-loan"), name_kind::engine_queue);
  pipc_mqd_t q = pipc::test::capi_create(guard.name(), 4, 128);
  ASSERT_NE(q, kBad);
  void* slot = pipc_mq_send_begin(q, 128);
  ASSERT_NE(slot, nullptr);
  std::memcpy(slot, "in place", 8);
  ASSERT_EQ(pipc_mq_send_commit(q, slot, 8, 9), 0);
  ASSERT_EQ(pipc_mq_send(q, "copied", 6, 2), 0);
  size_t len = 0;
  unsigned prio = 0;
  const void* msg = pipc_mq_receive_begin(q, &len, &prio);
  ASSERT_NE(msg, nullptr);
  EXPECT_EQ(std::string(static_cast<const char*>(msg), len), "in place");
  EXPECT_EQ(prio, 9u);
  EXPECT_EQ(pipc_mq_receive_end(q, msg), 0);
  char buffer[128];
  EXPECT_EQ(pipc_mq_receive(q, buffer, sizeof buffer, &prio), 6);
  EXPECT_EQ(prio, 2u);
  EXPECT_EQ(pipc_mq_close(q), 0);
}

// Closing a descriptor while a stopped process holds the queue's locks waits no longer
// than a try does (500 ms), however many loans it gives back and whether or not it must
// also remove its notification registration: before, each loan, and the registration,
// waited 500 ms of its own (2 s here). The loans it could not give back stay lent to
// this process; the others get the queue back when the holder continues.
TEST(CApiLoans, CloseWaitsForAStoppedLockHolderNoLongerThanATry) {
  unlink_guard guard(unique_name("capi-loan-close-stop"), name_kind::engine_queue);
  pipc_mqd_t q = pipc::test::capi_create(guard.name(), 4, 16);
  ASSERT_NE(q, kBad);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(pipc_mq_send(q, "m", 1, 0), 0);
  for (int i = 0; i < 3; ++i) {
    size_t len = 0;
    ASSERT_NE(pipc_mq_receive_begin(q, &len, nullptr), nullptr) << i;
  }
  struct sigevent none {};
  none.sigev_notify = SIGEV_NONE;
  ASSERT_EQ(pipc_mq_notify(q, &none), 0);
  const pid_t holder = pipc::test::spawn_stopped_lock_holder(guard.name());
  ASSERT_GT(holder, 0);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(pipc_mq_close(q), 0);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(::kill(holder, SIGCONT), 0);
  EXPECT_EQ(pipc::test::wait_exit(holder, 10s), 0);
  EXPECT_LT(took, 1200ms) << "close took "
                          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                          << " ms while a stopped process held the locks";
  EXPECT_GE(took, 400ms) << "close should have waited for the locks";
}

TEST(CApiLoans, ErrorsFollowTheCApisConventions) {
  unlink_guard guard(unique_name("capi-loan-err"), name_kind::engine_queue);
  pipc_mqd_t q = pipc::test::capi_create(guard.name(), 1, 16, O_NONBLOCK);
  ASSERT_NE(q, kBad);
  errno = 0;
  EXPECT_EQ(pipc_mq_send_begin(q, 17), nullptr);
  EXPECT_EQ(errno, EMSGSIZE);
  size_t len = 0;
  errno = 0;
  EXPECT_EQ(pipc_mq_receive_begin(q, &len, nullptr), nullptr);
  EXPECT_EQ(errno, EAGAIN);
  errno = 0;
  EXPECT_EQ(pipc_mq_receive_begin(q, nullptr, nullptr), nullptr);
  EXPECT_EQ(errno, EINVAL);
  void* slot = pipc_mq_send_begin(q, 16);
  ASSERT_NE(slot, nullptr);
  errno = 0;
  EXPECT_EQ(pipc_mq_send_begin(q, 1), nullptr);  // the only slot is lent
  EXPECT_EQ(errno, EAGAIN);
  char local[16];
  errno = 0;
  EXPECT_EQ(pipc_mq_send_commit(q, local, 1, 0), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(pipc_mq_send_commit(q, static_cast<char*>(slot) + 1, 1, 0), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(pipc_mq_send_commit(q, slot, 17, 0), -1);
  EXPECT_EQ(errno, EMSGSIZE);
  errno = 0;
  EXPECT_EQ(pipc_mq_send_commit(q, slot, 1, PIPC_MQ_PRIO_MAX), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(pipc_mq_receive_end(q, slot), -1);  // a send loan is not a received message
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(pipc_mq_send_commit(q + 1000, slot, 1, 0), -1);
  EXPECT_EQ(errno, EBADF);
  ASSERT_EQ(pipc_mq_send_abort(q, slot), 0);
  errno = 0;
  EXPECT_EQ(pipc_mq_send_abort(q, slot), -1);  // not outstanding any more
  EXPECT_EQ(errno, EINVAL);
  timespec bad{0, 2'000'000'000};
  slot = pipc_mq_send_begin(q, 1);
  ASSERT_NE(slot, nullptr);
  ASSERT_EQ(pipc_mq_send_commit(q, slot, 1, 0), 0);
  pipc_mq_attr attr{};
  attr.mq_flags = 0;
  ASSERT_EQ(pipc_mq_setattr(q, &attr, nullptr), 0);
  errno = 0;
  EXPECT_EQ(pipc_mq_timedsend_begin(q, 1, &bad), nullptr);
  EXPECT_EQ(errno, EINVAL);
  timespec soon = realtime_in(50ms);
  errno = 0;
  EXPECT_EQ(pipc_mq_timedsend_begin(q, 1, &soon), nullptr);
  EXPECT_EQ(errno, ETIMEDOUT);
  const void* msg = pipc_mq_timedreceive_begin(q, &len, nullptr, &bad);  // a message is there: no wait
  ASSERT_NE(msg, nullptr);
  EXPECT_EQ(pipc_mq_receive_end(q, msg), 0);
  soon = realtime_in(50ms);
  errno = 0;
  EXPECT_EQ(pipc_mq_timedreceive_begin(q, &len, nullptr, &soon), nullptr);
  EXPECT_EQ(errno, ETIMEDOUT);
  EXPECT_EQ(pipc_mq_close(q), 0);

  pipc_mqd_t ro = pipc_mq_open(guard.name().c_str(), O_RDONLY);
  ASSERT_NE(ro, kBad);
  errno = 0;
  EXPECT_EQ(pipc_mq_send_begin(ro, 1), nullptr);
  EXPECT_EQ(errno, EBADF);
  EXPECT_EQ(pipc_mq_close(ro), 0);
}

TEST(CApiLoans, ClosingADescriptorGivesItsLoansBack) {
  unlink_guard guard(unique_name("capi-loan-close"), name_kind::engine_queue);
  pipc_mqd_t q = pipc::test::capi_create(guard.name(), 2, 16);
  ASSERT_NE(q, kBad);
  ASSERT_EQ(pipc_mq_send(q, "m", 1, 0), 0);
  pipc_mqd_t other = pipc_mq_open(guard.name().c_str(), O_RDWR | O_NONBLOCK);
  ASSERT_NE(other, kBad);
  size_t len = 0;
  ASSERT_NE(pipc_mq_receive_begin(other, &len, nullptr), nullptr);
  ASSERT_NE(pipc_mq_send_begin(other, 4), nullptr);
  EXPECT_EQ(pipc_mq_close(other), 0);
  // Both slots are free: the lent message was dropped, the loan sent nothing.
  pipc_mq_attr attr{};
  ASSERT_EQ(pipc_mq_getattr(q, &attr), 0);
  EXPECT_EQ(attr.mq_curmsgs, 0);
  EXPECT_EQ(pipc_mq_send(q, "a", 1, 0), 0);
  EXPECT_EQ(pipc_mq_send(q, "b", 1, 0), 0);
  EXPECT_EQ(pipc_mq_close(q), 0);
}

TEST(CApiLoans, ForkedChildCannotCommitItsParentsLoan) {
  unlink_guard guard(unique_name("capi-loan-fork"), name_kind::engine_queue);
  pipc_mqd_t q = pipc::test::capi_create(guard.name(), 2, 16);
  ASSERT_NE(q, kBad);
  void* slot = pipc_mq_send_begin(q, 4);
  ASSERT_NE(slot, nullptr);
  EXPECT_EQ(pipc::test::run_child([&]() -> int {
              errno = 0;
              if (pipc_mq_send_commit(q, slot, 4, 0) != -1 || errno != EINVAL) return 1;
              return pipc_mq_close(q) == 0 ? 0 : 2;  // leaves the parent's loan alone
            }),
            0);
  std::memcpy(slot, "mine", 4);
  EXPECT_EQ(pipc_mq_send_commit(q, slot, 4, 0), 0);
  char buffer[16];
  EXPECT_EQ(pipc_mq_receive(q, buffer, sizeof buffer, nullptr), 4);
  EXPECT_EQ(pipc_mq_close(q), 0);
}

namespace {
std::atomic<int> loan_usr1{0};
void on_loan_usr1(int) { loan_usr1.fetch_add(1); }

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCanUnwindFromSignals = false;  // see CApiInterrupt in test_capi.cpp
#else
constexpr bool kCanUnwindFromSignals = true;
#endif

struct blocked_begin {
  pipc_mqd_t q;
  bool receive;
  std::atomic<bool> started{false};
};
void* begin_until_cancelled(void* arg) {
  auto* call = static_cast<blocked_begin*>(arg);
  call->started.store(true);
  size_t len = 0;
  if (call->receive) {
    (void)pipc_mq_receive_begin(call->q, &len, nullptr);
  } else {
    (void)pipc_mq_send_begin(call->q, 1);
  }
  return nullptr;
}
}  // namespace

TEST(CApiLoans, SignalInterruptsBlockedBeginCalls) {
  unlink_guard guard(unique_name("capi-loan-eintr"), name_kind::engine_queue);
  pipc_mqd_t q = pipc::test::capi_create(guard.name(), 1, 16);
  ASSERT_NE(q, kBad);
  struct sigaction sa {};
  sa.sa_handler = on_loan_usr1;  // no SA_RESTART
  struct sigaction old {};
  ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);
  for (bool receive : {true, false}) {
    if (!receive) {
      ASSERT_EQ(pipc_mq_send(q, "f", 1, 0), 0);  // full: send_begin blocks
    }
    loan_usr1.store(0);
    const pthread_t me = ::pthread_self();
    std::thread signaller([me] {
      std::this_thread::sleep_for(200ms);
      ::pthread_kill(me, SIGUSR1);
    });
    const auto start = std::chrono::steady_clock::now();
    size_t len = 0;
    errno = 0;
    const void* got = receive ? pipc_mq_receive_begin(q, &len, nullptr) : pipc_mq_send_begin(q, 1);
    const int e = errno;
    signaller.join();
    EXPECT_EQ(got, nullptr) << (receive ? "receive_begin" : "send_begin");
    EXPECT_EQ(e, EINTR);
    EXPECT_EQ(loan_usr1.load(), 1);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 190ms);
  }
  ::sigaction(SIGUSR1, &old, nullptr);
  // Nothing was lent by the interrupted calls.
  char buffer[16];
  EXPECT_EQ(pipc_mq_receive(q, buffer, sizeof buffer, nullptr), 1);
  EXPECT_EQ(pipc_mq_send(q, "g", 1, 0), 0);
  EXPECT_EQ(pipc_mq_close(q), 0);
}

TEST(CApiLoans, CancellationActsInBlockedBeginCalls) {
  if (!kCanUnwindFromSignals) GTEST_SKIP() << "the ASan runtime cannot unwind from a signal handler";
  unlink_guard guard(unique_name("capi-loan-cancel"), name_kind::engine_queue);
  pipc_mqd_t q = pipc::test::capi_create(guard.name(), 1, 16);
  ASSERT_NE(q, kBad);
  for (bool receive : {true, false}) {
    if (!receive) {
      ASSERT_EQ(pipc_mq_send(q, "f", 1, 0), 0);
    }
    blocked_begin call{q, receive};
    pthread_t t;
    ASSERT_EQ(::pthread_create(&t, nullptr, begin_until_cancelled, &call), 0);
    while (!call.started.load()) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(100ms);
    const auto start = std::chrono::steady_clock::now();
    ::pthread_cancel(t);
    void* result = nullptr;
    ::pthread_join(t, &result);
    EXPECT_EQ(result, PTHREAD_CANCELED);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  }
  char buffer[16];
  EXPECT_EQ(pipc_mq_receive(q, buffer, sizeof buffer, nullptr), 1);
  EXPECT_EQ(pipc_mq_close(q), 0);
}

// A C sender killed between begin and commit, and a C receiver killed between begin
// and end: as for the C++ API, no slot is lost.
TEST(CApiLoans, ProcessesKilledHoldingLoansLeaveNoSlotBehind) {
  unlink_guard guard(unique_name("capi-loan-kill"), name_kind::engine_queue);
  pipc_mqd_t q = pipc::test::capi_create(guard.name(), 2, 1024);
  ASSERT_NE(q, kBad);
  ASSERT_EQ(pipc_mq_send(q, "r", 1, 0), 0);
  const std::string name = guard.name();
  signal_pipe ready;
  pipc::test::child c([&]() -> int {
    pipc_mqd_t cq = pipc_mq_open(name.c_str(), O_RDWR);
    size_t len = 0;
    if (cq == kBad || pipc_mq_receive_begin(cq, &len, nullptr) == nullptr) return 1;
    void* slot = pipc_mq_send_begin(cq, 1024);
    if (slot == nullptr) return 2;
    std::memset(slot, 'x', 512);
    ready.tell();
    for (;;) ::pause();
  });
  ASSERT_TRUE(ready.heard());
  errno = 0;
  timespec soon = realtime_in(20ms);
  EXPECT_EQ(pipc_mq_timedsend(q, "n", 1, 0, &soon), -1);
  EXPECT_EQ(errno, ETIMEDOUT);
  ::kill(c.pid(), SIGKILL);
  EXPECT_EQ(c.wait(), 128 + SIGKILL);
  soon = realtime_in(5s);
  EXPECT_EQ(pipc_mq_timedsend(q, "a", 1, 0, &soon), 0);
  soon = realtime_in(5s);
  EXPECT_EQ(pipc_mq_timedsend(q, "b", 1, 0, &soon), 0);
  char buffer[1024];
  unsigned prio = 0;
  EXPECT_EQ(pipc_mq_receive(q, buffer, sizeof buffer, &prio), 1);
  EXPECT_EQ(buffer[0], 'a');
  EXPECT_EQ(pipc_mq_receive(q, buffer, sizeof buffer, &prio), 1);
  EXPECT_EQ(buffer[0], 'b');
  EXPECT_EQ(pipc_mq_close(q), 0);
}
