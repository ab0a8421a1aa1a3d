// Tests of the engine's two paths for a message (docs/engine.md, "How a message
// travels"): the ready ring, which holds messages of the ring's priority, and the side
// index, which holds the others. Delivery must not depend on which path a message took:
// highest priority first, FIFO within a priority, in one process and across processes,
// across the 32-bit wrap of the ring positions, and with the high-water mark exact.
#include "engine_support.hpp"
#include "support.hpp"

#include "engine/layout.hpp"
#include "engine/queue.hpp"

#include <pipc/pipc.hpp>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>

using namespace std::chrono_literals;

namespace {

namespace eng = pipc::engine;
using pipc::message_queue;
using pipc::open_mode;
using pipc::test::engine_options;
using pipc::test::kSanitized;
using pipc::test::mix;
using pipc::test::raw_region;
using pipc::test::unique_name;
using pipc::test::unlink_guard;
using std::chrono::steady_clock;

struct tagged {
  std::uint64_t id;
  std::uint32_t priority;
  std::uint32_t check;  // a function of id and priority
};

std::uint32_t check_of(std::uint64_t id, std::uint32_t priority) {
  return static_cast<std::uint32_t>(mix(id * 40503u + priority));
}

std::span<const std::byte> bytes_of(const tagged& t) { return {reinterpret_cast<const std::byte*>(&t), sizeof t}; }

// The queue as POSIX defines it: per priority, a FIFO; receive takes the oldest of the
// highest priority.
class model {
 public:
  void send(std::uint64_t id, std::uint32_t priority) { lists_[priority].push_back(id); }
  bool empty() const { return lists_.empty(); }
  std::size_t size() const {
    std::size_t n = 0;
    for (const auto& [p, ids] : lists_) n += ids.size();
    return n;
  }
  // The message a receive must return: {id, priority}.
  std::pair<std::uint64_t, std::uint32_t> receive() {
    auto top = std::prev(lists_.end());
    std::pair<std::uint64_t, std::uint32_t> m{top->second.front(), top->first};
    top->second.pop_front();
    if (top->second.empty()) lists_.erase(top);
    return m;
  }

 private:
  std::map<std::uint32_t, std::deque<std::uint64_t>> lists_;
};

// Drives a queue and the model side by side: every try_send and try_receive must agree
// with the model on whether it succeeds and on which message comes out.
class model_driver {
 public:
  model_driver(message_queue& q, std::size_t depth) : q_(q), depth_(depth) {}

  void step(bool send, std::uint32_t priority, int operation) {
    if (send) {
      tagged t{next_id_, priority, check_of(next_id_, priority)};
      const bool sent = q_.try_send(bytes_of(t), priority);
      ASSERT_EQ(sent, m_.size() < depth_) << "operation " << operation;
      if (sent) m_.send(next_id_++, priority);
    } else {
      auto got = q_.try_receive(buffer_);
      ASSERT_EQ(got.has_value(), !m_.empty()) << "operation " << operation;
      if (!got) return;
      tagged t{};
      std::memcpy(&t, buffer_.data(), sizeof t);
      auto [want_id, want_priority] = m_.receive();
      ASSERT_EQ(t.id, want_id) << "operation " << operation << ": wrong message";
      ASSERT_EQ(got->priority, want_priority) << "operation " << operation;
      ASSERT_EQ(t.check, check_of(t.id, t.priority)) << "operation " << operation << ": payload altered";
    }
    ASSERT_EQ(q_.attributes().current_messages, static_cast<long>(m_.size())) << "operation " << operation;
  }

 private:
  message_queue& q_;
  std::size_t depth_;
  model m_;
  std::uint64_t next_id_ = 0;
  std::array<std::byte, sizeof(tagged)> buffer_{};
};

// Random sends and receives against the model, in phases that favour one priority (the
// ring), a few (ring and side), or many (mostly side), with the queue swinging between
// empty and full so that the ring's priority changes often.
TEST(EngineRings, RandomTrafficMatchesThePosixModel) {
  constexpr long kDepth = 64;
  unlink_guard guard(unique_name("rings-model"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, sizeof(tagged)));
  model_driver driver(q, kDepth);
  const int rounds = kSanitized ? 20'000 : 200'000;
  for (int i = 0; i < rounds; ++i) {
    const std::uint64_t r = mix(static_cast<std::uint64_t>(i) + 7);
    const int phase = (i / 5000) % 4;
    // Phase 0: one priority; 1: two; 2: eight; 3: any of 32768.
    std::uint32_t priority = 0;
    switch (phase) {
      case 0: priority = 3; break;
      case 1: priority = (r >> 8) % 2 == 0 ? 3 : 9; break;
      case 2: priority = static_cast<std::uint32_t>((r >> 8) % 8); break;
      default: priority = static_cast<std::uint32_t>((r >> 8) % eng::priorities); break;
    }
    // Lean towards sending for 300 operations, then towards receiving.
    const bool filling = (i / 300) % 2 == 0;
    driver.step((r % 10) < (filling ? 7u : 3u), priority, i);
    if (HasFatalFailure()) return;
  }
}

// Across processes, with the sender switching priorities while the receiver drains:
// each priority's messages arrive complete, once each, in order. (Which priority comes
// first depends on timing, so only the per-priority order is checked here; the model
// test above checks the order between priorities.)
TEST(EngineRings, PriorityChangesAcrossProcessesKeepEveryPriorityInOrder) {
  constexpr std::uint32_t kPriorities = 4;
  const std::uint64_t messages = kSanitized ? 20'000 : 200'000;
  unlink_guard guard(unique_name("rings-procs"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(32, sizeof(tagged)));
  pid_t sender = pipc::test::spawn([&] {
    auto own = message_queue::open(guard.name(), open_mode::open_only, engine_options(1, 1));
    std::array<std::uint64_t, kPriorities> next{};
    for (std::uint64_t i = 0; i < messages; ++i) {
      // Runs of one priority, then of mixed ones.
      const std::uint64_t r = mix(i + 1);
      std::uint32_t p = (i / 1000) % 2 == 0 ? static_cast<std::uint32_t>((i / 1000 / 2) % kPriorities)
                                            : static_cast<std::uint32_t>(r % kPriorities);
      tagged t{next[p]++, p, 0};
      t.check = check_of(t.id, p);
      std::error_code ec;
      if (!own.send_for(bytes_of(t), p, 10s, ec) || ec) return 3;
    }
    return 0;
  });
  ASSERT_GT(sender, 0);
  std::array<std::uint64_t, kPriorities> expected{};
  std::array<std::byte, sizeof(tagged)> buffer{};
  std::uint64_t received = 0;
  std::uint64_t bad = 0;
  for (; received < messages; ++received) {
    std::error_code ec;
    auto got = q.receive_for(buffer, 10s, ec);
    ASSERT_FALSE(ec) << ec.message();
    ASSERT_TRUE(got) << "nothing for 10 s after " << received << " messages";
    tagged t{};
    std::memcpy(&t, buffer.data(), sizeof t);
    if (got->priority >= kPriorities || t.priority != got->priority || t.check != check_of(t.id, t.priority) ||
        t.id != expected[t.priority]) {
      if (++bad <= 5) {
        ADD_FAILURE() << "message " << received << ": priority " << got->priority << " id " << t.id << ", expected id "
                      << (got->priority < kPriorities ? expected[got->priority] : 0);
      }
      if (t.priority < kPriorities) expected[t.priority] = t.id + 1;
      continue;
    }
    ++expected[t.priority];
  }
  EXPECT_EQ(pipc::test::wait_exit(sender, 30s), 0);
  EXPECT_EQ(bad, 0u);
  EXPECT_FALSE(q.try_receive(buffer)) << "more messages than were sent";
}

// Ring positions are 32-bit counters. A queue whose positions are moved to just before
// 2^32 (as if 4 billion messages had passed) keeps working across the wrap.
TEST(EngineRings, PositionsWrapAt32Bits) {
  constexpr long kDepth = 6;  // M = 8: the ring's size divides 2^32
  unlink_guard guard(unique_name("rings-wrap"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, sizeof(tagged)));
  {
    // Rewrite the empty queue's rings as they would be at position 2^32 − 3: every slot
    // on the free ring at [P, P + N), all cursors there, every ready entry one lap old.
    raw_region r(guard.name());
    const std::uint32_t p = 0xffff'fffdu;
    const auto n = static_cast<std::uint32_t>(kDepth);
    const auto m = static_cast<std::uint32_t>(r.geo().ring_size);
    for (std::uint32_t k = 0; k < m; ++k) {
      r.ready_entry(p + k).store(eng::ring_entry(p + k - m, 1));
      r.free_entry(p + k).store(k < n ? eng::ring_entry(p + k, k + 1) : eng::ring_entry(p + k - m, 1));
    }
    for (std::uint32_t k = 1; k <= n; ++k) r.slot(k)->position = p + k - 1;
    r.hdr()->send_cursors.store(eng::cursors(p, p));
    r.hdr()->recv_cursors.store(eng::cursors(p + n, p));
  }
  model_driver driver(q, kDepth);
  for (int i = 0; i < 400; ++i) {
    const std::uint64_t r = mix(static_cast<std::uint64_t>(i) + 99);
    const std::uint32_t priority = (i / 40) % 2 == 0 ? 1 : static_cast<std::uint32_t>((r >> 8) % 3);
    driver.step((r % 10) < ((i / 12) % 2 == 0 ? 7u : 3u), priority, i);
    if (HasFatalFailure()) return;
  }
  raw_region r(guard.name());
  EXPECT_LT(r.free_head(), 1000u) << "the free ring's positions did not wrap";
}

// The high-water mark is the highest depth the queue has had, whichever path the
// messages took, including a peak that no receive has followed yet.
TEST(EngineRings, HighWaterMarkIsTheHighestDepth) {
  unlink_guard guard(unique_name("rings-hwm"), pipc::name_kind::engine_queue);
  std::unique_ptr<eng::queue> q;
  ASSERT_EQ(eng::queue::open(pipc::test::create_request(guard.name(), 16, 8, -1, O_NONBLOCK), q), 0);
  std::uint64_t value = 0;
  auto send = [&](unsigned priority) {
    return q->send(&value, sizeof value, priority, pipc::detail::wait_limit::immediate(), false);
  };
  auto receive = [&] {
    std::uint64_t out = 0;
    std::size_t size = 0;
    unsigned priority = 0;
    return q->receive(&out, sizeof out, size, priority, pipc::detail::wait_limit::immediate(), false);
  };
  EXPECT_EQ(q->stats().high_water, 0u);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(send(1), 0);
  EXPECT_EQ(q->stats().high_water, 3u) << "a peak no receive has followed";
  ASSERT_EQ(receive(), 0);
  ASSERT_EQ(send(7), 0);  // the side index
  ASSERT_EQ(send(1), 0);
  ASSERT_EQ(send(0), 0);
  EXPECT_EQ(q->stats().high_water, 5u);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(receive(), 0);
  EXPECT_EQ(q->stats().high_water, 5u) << "the mark stays when the queue drains";
  // Ping-pong at depth 1 does not move it; filling the queue takes it to the capacity.
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(send(static_cast<unsigned>(i % 3)), 0);
    ASSERT_EQ(receive(), 0);
  }
  EXPECT_EQ(q->stats().high_water, 5u);
  for (int i = 0; i < 16; ++i) ASSERT_EQ(send(static_cast<unsigned>(i % 2)), 0);
  EXPECT_EQ(send(0), EAGAIN);
  for (int i = 0; i < 16; ++i) ASSERT_EQ(receive(), 0);
  EXPECT_EQ(q->stats().high_water, 16u);
  EXPECT_EQ(q->stats().messages_sent, 3u + 3u + 100u + 16u);
  EXPECT_EQ(q->stats().messages_received, 1u + 5u + 100u + 16u);
}

// A sender blocked on a full queue waits a little for a batch of room while receivers
// are freeing slots (docs/engine.md, "Waiting"), but never for room that is not coming:
// one receive that frees one slot lets it through promptly.
TEST(EngineRings, BlockedSenderTakesASingleFreedSlotPromptly) {
  unlink_guard guard(unique_name("rings-batch"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(128, sizeof(tagged)));
  for (std::uint64_t i = 0; i < 128; ++i) {
    tagged t{i, 0, check_of(i, 0)};
    ASSERT_TRUE(q.try_send(bytes_of(t), 0));
  }
  std::atomic<long> waited_ms{-1};
  std::thread sender([&] {
    auto own = message_queue::open(guard.name(), open_mode::open_only, engine_options(1, 1));
    tagged t{128, 0, check_of(128, 0)};
    auto t0 = steady_clock::now();
    if (own.send_for(bytes_of(t), 0, 5s)) {
      waited_ms = static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count());
    }
  });
  std::this_thread::sleep_for(50ms);
  std::array<std::byte, sizeof(tagged)> buffer{};
  auto t0 = steady_clock::now();
  ASSERT_TRUE(q.try_receive(buffer));
  sender.join();
  const long since_receive =
      static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count());
  ASSERT_GE(waited_ms.load(), 0) << "the sender did not get the freed slot within 5 s";
  EXPECT_LT(since_receive, 300) << "the sender waited " << since_receive << " ms for more room than one slot";
  EXPECT_EQ(q.attributes().current_messages, 128);
}

}  // namespace

namespace {

// A thread notification taken by a send (recorded as fired for its descriptor) whose
// helper has not run yet when the descriptor is closed must not keep the queue's
// registration busy: the record goes with the descriptor.
TEST(EngineRings, ClosingADescriptorDropsItsFiredNotification) {
  unlink_guard guard(unique_name("rings-fired"), pipc::name_kind::engine_queue);
  eng::open_request request = pipc::test::create_request(guard.name(), 8, 16);
  std::unique_ptr<eng::queue> registrant;
  ASSERT_EQ(eng::queue::open(request, registrant), 0);
  request.flags = O_RDWR;
  std::unique_ptr<eng::queue> other;
  ASSERT_EQ(eng::queue::open(request, other), 0);
  ASSERT_EQ(registrant->notify_thread([] {}), 0);
  {
    // What a send stores under both locks when it takes the registration, before it
    // bumps notify_seq to wake the helper (the sender preempted or killed there).
    raw_region r(guard.name());
    eng::header* h = r.hdr();
    ASSERT_EQ(r.take_lock(raw_region::side::send), 0);
    ASSERT_EQ(r.take_lock(raw_region::side::recv), 0);
    h->notify_fired_pid = h->notify_pid.load();
    h->notify_fired_token = h->notify_token;
    h->notify_pid.store(0);
    r.release_lock(raw_region::side::recv);
    r.release_lock(raw_region::side::send);
  }
  registrant.reset();
  EXPECT_EQ(other->notify_signal(SIGUSR1, 0), 0) << "the closed descriptor's fired notification keeps the queue busy";
  EXPECT_EQ(other->cancel_notification(), 0);
}

// The waiter table counts blocked receivers per process. Many threads of one process
// entering and leaving at once must leave the count exact: a count that drifts above
// zero would make every later notification wait for a receiver that is not there.
TEST(EngineRings, BlockedReceiverCountsStayExactUnderThreads) {
  unlink_guard guard(unique_name("rings-waiters"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(4, sizeof(tagged)));
  constexpr int kThreads = 6;
  const int rounds = kSanitized ? 20 : 100;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      std::array<std::byte, sizeof(tagged)> buffer{};
      for (int i = 0; i < rounds; ++i) (void)q.receive_for(buffer, 200us);  // enters and leaves the table
    });
  }
  for (auto& t : threads) t.join();
  raw_region r(guard.name());
  for (const auto& w : r.hdr()->waiters) {
    EXPECT_EQ(static_cast<std::uint32_t>(w.word.load()), 0u) << "a count left at " << static_cast<std::uint32_t>(w.word.load());
  }
}

}  // namespace

namespace {

// A sender between its commit and its cursor store still points free_head at the entry
// it took. Receivers may meanwhile take its message and free slots; with a ring of
// exactly N entries (N a power of two) their pushes would reach that entry one lap on,
// and other senders would see a full queue that holds no message. The ring has more
// entries than messages, so the entry survives.
TEST(EngineRings, LaggingSenderCursorKeepsItsFreeEntry) {
  constexpr long kDepth = 8;  // a power of two: the case a ring of N entries gets wrong
  unlink_guard guard(unique_name("rings-lag"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, sizeof(tagged)));
  raw_region r(guard.name());
  eng::header* h = r.hdr();
  ASSERT_GT(r.geo().ring_size, static_cast<std::uint64_t>(kDepth));
  // Move every cursor a lap on (send and receive N messages), so that free_tail is N
  // ahead of free_head as in steady use.
  std::array<std::byte, sizeof(tagged)> buffer{};
  for (std::uint64_t i = 0; i < kDepth; ++i) {
    tagged t{i, 0, check_of(i, 0)};
    ASSERT_TRUE(q.try_send(bytes_of(t), 0));
    ASSERT_TRUE(q.try_receive(buffer));
  }
  // A sender's commit, by hand, with send_lock held and the cursors not yet stored.
  ASSERT_EQ(r.take_lock(raw_region::side::send), 0);
  const std::uint32_t head = r.free_head();
  const std::uint32_t tail = r.ready_tail();
  const std::uint64_t e = r.free_entry(head).load();
  ASSERT_EQ(eng::entry_tag(e), head + 1);
  const std::uint32_t n = eng::entry_slot(e);
  tagged t{100, 0, check_of(100, 0)};
  eng::slot_header* s = r.slot(n);
  s->size = sizeof t;
  s->priority = 0;
  s->seq = h->next_seq;
  s->state.store(eng::slot_ring);
  std::memcpy(r.payload(n), &t, sizeof t);
  r.ready_entry(tail).store(eng::ring_entry(tail, n));
  // A receiver takes that message and frees its slot at free_tail = free_head + N.
  auto got = q.try_receive(buffer);
  ASSERT_TRUE(got);
  EXPECT_EQ(eng::entry_tag(r.free_entry(head).load()), head + 1)
      << "the receiver's push overwrote the entry the lagging sender's free_head points at";
  // The sender finishes.
  h->next_seq += 1;
  h->send_cursors.store(eng::cursors(head + 1, tail + 1));
  r.release_lock(raw_region::side::send);
  for (std::uint64_t i = 0; i < kDepth; ++i) {
    tagged m{200 + i, 0, check_of(200 + i, 0)};
    EXPECT_TRUE(q.try_send(bytes_of(m), 0)) << "message " << i << " of " << kDepth << ": the queue looks full";
  }
  EXPECT_EQ(q.attributes().current_messages, kDepth);
}

}  // namespace

namespace {

// A process fills in its page tables for a queue when it opens it, a child of fork too
// (fork does not copy a shared mapping's page tables): its sends and receives then take
// no page faults, which under a lock would make every other sender or receiver wait.
TEST(EngineRings, ForkedChildTakesNoPageFaultsInSendAndReceive) {
  if (kSanitized) {
    // ASan's and TSan's shadow memory for the region faults in as the region is first
    // touched, whatever the page tables of the region itself hold.
    GTEST_SKIP() << "the sanitizers' shadow memory takes page faults of its own";
  }
  constexpr long kDepth = 64;
  constexpr long kSize = 8192;
  unlink_guard guard(unique_name("rings-faults"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
  int code = pipc::test::run_child([&] {
    auto own = message_queue::open(guard.name(), open_mode::open_only, engine_options(1, 1));
    std::vector<std::byte> out(kSize, std::byte{7});
    std::vector<std::byte> in(kSize);
    // Warm this process's own buffers and code paths, then count.
    if (!own.try_send(out, 0) || !own.try_receive(in)) return 2;
    struct ::rusage before {};
    ::getrusage(RUSAGE_SELF, &before);
    for (int round = 0; round < 2; ++round) {
      for (long i = 0; i < kDepth; ++i) {
        if (!own.try_send(out, 0)) return 3;
      }
      for (long i = 0; i < kDepth; ++i) {
        if (!own.try_receive(in)) return 4;
      }
    }
    struct ::rusage after {};
    ::getrusage(RUSAGE_SELF, &after);
    const long faults = after.ru_minflt - before.ru_minflt;
    std::printf("[ faults   ] %ld minor faults in %ld sends and receives of 8 KiB\n", faults, 4 * kDepth);
    return faults <= 2 ? 0 : 10;  // a fault or two of the process's own, not one per page
  });
  EXPECT_EQ(code, 0) << "2-4: the queue failed; 10: the sends and receives took page faults";
}

}  // namespace
