// Stress tests of the user-space queue engine (backend::shm): very deep queues, very
// large messages, the documented caps, and many producers and consumers in separate
// processes hammering one queue.
//
// Every check here is about messages: none lost, none duplicated, none reordered
// (highest priority first, FIFO within a priority), none altered. Sizes scale down
// under the sanitizers, which run every test again in CI.
#include "support.hpp"

#include "engine/layout.hpp"
#include "engine/lock.hpp"

#include <pipc/pipc.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <numeric>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <sys/statvfs.h>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

using pipc::test::engine_options;
using pipc::test::kSanitized;
using pipc::test::kThreadSanitizer;
using pipc::test::mix;

using pipc::message_queue;
using pipc::mq_options;
using pipc::open_mode;
using pipc::test::unique_name;
using pipc::test::unlink_guard;
using std::chrono::steady_clock;

// Fills `out` with the pattern of `seed`.
void fill_pattern(std::byte* out, std::size_t size, std::uint64_t seed) {
  std::uint64_t state = seed;
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    std::uint64_t v = mix(state++);
    std::memcpy(out + i, &v, 8);
  }
  if (i < size) {
    std::uint64_t v = mix(state);
    std::memcpy(out + i, &v, size - i);
  }
}

// The offset of the first byte that differs from the pattern of `seed`, or -1.
long check_pattern(const std::byte* in, std::size_t size, std::uint64_t seed) {
  std::uint64_t state = seed;
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    std::uint64_t v = mix(state++);
    if (std::memcmp(in + i, &v, 8) != 0) return static_cast<long>(i);
  }
  if (i < size) {
    std::uint64_t v = mix(state);
    if (std::memcmp(in + i, &v, size - i) != 0) return static_cast<long>(i);
  }
  return -1;
}

// The order in which a queue delivers messages sent with `priorities` (index = arrival):
// highest priority first, arrival order within a priority.
std::vector<std::size_t> delivery_order(const std::vector<unsigned>& priorities) {
  std::vector<std::size_t> order(priorities.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return priorities[a] > priorities[b]; });
  return order;
}

using pipc::test::as_span;

std::uint64_t shm_available_bytes() {
  struct ::statvfs st {};
  if (::statvfs("/dev/shm", &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

// ---------------------------------------------------------------------------------------
// Deep queues

// A 16-byte message: (index, priority, check) where check is mix(index ^ salt).
struct small_message {
  std::uint32_t index;
  std::uint32_t priority;
  std::uint64_t check;
};
static_assert(sizeof(small_message) == 16);

// Priorities across the whole range, both ends included, in an irregular pattern.
unsigned priority_of(std::uint64_t i) {
  static constexpr std::array<unsigned, 9> levels = {0, 1, 2, 7, 100, 4095, 4096, 31000, pipc::max_priority};
  return levels[mix(i * 31 + 7) % levels.size()];
}

// Fills `q` (empty, capacity `count`) with messages 0..count-1, checks that it is then
// full, drains it and checks order and content.
void fill_and_drain(message_queue& q, std::uint32_t count, std::uint64_t salt) {
  std::vector<unsigned> priorities(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    priorities[i] = priority_of(i ^ salt);
    small_message m{i, priorities[i], mix(i ^ salt)};
    std::error_code ec;
    bool sent = q.try_send(as_span(&m, sizeof m), priorities[i], ec);
    ASSERT_FALSE(ec) << "message " << i << ": " << ec.message();
    ASSERT_TRUE(sent) << "the queue of " << count << " messages was full after " << i;
  }
  EXPECT_EQ(q.attributes().current_messages, static_cast<long>(count));
  small_message extra{count, 0, 0};
  EXPECT_FALSE(q.try_send(as_span(&extra, sizeof extra), 0)) << "message " << count + 1 << " fit into a full queue";
  EXPECT_FALSE(q.send_for(as_span(&extra, sizeof extra), pipc::max_priority, 1ms)) << "timed send into a full queue";

  auto order = delivery_order(priorities);
  std::array<std::byte, 16> buffer{};
  std::size_t wrong = 0;
  std::string first_wrong;
  for (std::size_t k = 0; k < order.size(); ++k) {
    std::error_code ec;
    auto r = q.try_receive(buffer, ec);
    ASSERT_FALSE(ec) << "receive " << k << ": " << ec.message();
    ASSERT_TRUE(r) << "the queue ran dry after " << k << " of " << count << " messages";
    small_message got{};
    std::memcpy(&got, buffer.data(), sizeof got);
    std::size_t want = order[k];
    bool ok = r->size == sizeof got && got.index == want && r->priority == priorities[want] &&
              got.priority == priorities[want] && got.check == mix(got.index ^ salt);
    if (!ok && wrong++ == 0) {
      first_wrong = "delivery " + std::to_string(k) + ": expected message " + std::to_string(want) + " (priority " +
                    std::to_string(priorities[want]) + "), got index " + std::to_string(got.index) + " priority " +
                    std::to_string(r->priority) + " size " + std::to_string(r->size);
    }
  }
  EXPECT_EQ(wrong, 0u) << first_wrong;
  EXPECT_FALSE(q.try_receive(buffer)) << "a message beyond the " << count << " sent";
  EXPECT_EQ(q.attributes().current_messages, 0);
}

TEST(EngineStress, HundredThousandMessagesFillDrainInPriorityOrder) {
  constexpr std::uint32_t kCount = 100'000;
  unlink_guard guard(unique_name("deep"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kCount, 16));
  auto a = q.attributes();
  ASSERT_EQ(a.max_messages, static_cast<long>(kCount));
  ASSERT_EQ(a.message_size, 16);

  auto t0 = steady_clock::now();
  fill_and_drain(q, kCount, 0);
  if (HasFatalFailure()) return;
  // Every slot has been used and freed once: a second round proves the free list and
  // the index survived a complete cycle.
  fill_and_drain(q, kCount, 0x5a5a);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count();
  RecordProperty("fill_drain_ms", static_cast<int>(ms));
}

// ---------------------------------------------------------------------------------------
// Large messages

// A 1 MiB message: the pattern of its seed, with the seed in its first 8 bytes.
void make_big(std::vector<std::byte>& out, std::size_t size, std::uint64_t seed) {
  out.resize(size);
  fill_pattern(out.data(), size, seed);
  std::memcpy(out.data(), &seed, sizeof seed);
}

// Checks a big message: returns "" or what is wrong with it.
std::string check_big(const std::byte* in, std::size_t size, std::uint64_t expected_seed, std::size_t expected_size) {
  if (size != expected_size) return "size " + std::to_string(size) + " instead of " + std::to_string(expected_size);
  std::uint64_t seed = 0;
  std::memcpy(&seed, in, sizeof seed);
  if (seed != expected_seed) return "seed " + std::to_string(seed) + " instead of " + std::to_string(expected_seed);
  std::vector<std::byte> copy(in, in + size);
  std::uint64_t first = mix(seed);
  std::memcpy(copy.data(), &first, std::min<std::size_t>(8, size));
  long bad = check_pattern(copy.data(), size, seed);
  if (bad >= 0) return "content differs at byte " + std::to_string(bad);
  return {};
}

TEST(EngineStress, OneMebibyteMessagesAcrossFork) {
  constexpr std::size_t kSize = std::size_t{1} << 20;
  const int count = kSanitized ? 12 : 40;
  unlink_guard to_child(unique_name("big-down"), pipc::name_kind::engine_queue);
  unlink_guard to_parent(unique_name("big-up"), pipc::name_kind::engine_queue);
  auto down = message_queue::open(to_child.name(), open_mode::create_only, engine_options(4, kSize));
  auto up = message_queue::open(to_parent.name(), open_mode::create_only, engine_options(4, kSize));

  // Sizes: full size mostly, with one byte less and a short one in between. Priorities
  // fall as the sequence goes on, so delivery order is the sending order although up to
  // three messages are in flight.
  auto size_of = [&](int i) -> std::size_t { return i % 5 == 3 ? kSize - 1 : i % 7 == 6 ? 4097 : kSize; };
  auto priority_of_big = [&](int i) -> unsigned { return static_cast<unsigned>((count - i) / 4); };

  // The child echoes each message back with seed + 1 after checking it.
  pid_t child = pipc::test::spawn([&]() -> int {
    auto in = message_queue::open(to_child.name(), open_mode::open_only, engine_options(4, kSize, pipc::access::read_only));
    auto out = message_queue::open(to_parent.name(), open_mode::open_only, engine_options(4, kSize, pipc::access::write_only));
    std::vector<std::byte> buffer(kSize);
    std::vector<std::byte> reply;
    for (int i = 0; i < count; ++i) {
      auto r = in.receive_for(buffer, 20s);
      if (!r) return 10;
      std::uint64_t seed = 1000 + static_cast<std::uint64_t>(i);
      std::string problem = check_big(buffer.data(), r->size, seed, size_of(i));
      if (!problem.empty()) {
        std::fprintf(stderr, "child: message %d: %s\n", i, problem.c_str());
        return 11;
      }
      if (r->priority != priority_of_big(i)) return 12;
      make_big(reply, r->size, seed + 1);
      if (!out.send_for(reply, priority_of_big(i), 20s)) return 13;
    }
    return 0;
  });
  ASSERT_GT(child, 0);

  std::vector<std::byte> message;
  std::vector<std::byte> buffer(kSize);
  int received = 0;
  std::string problem;
  // Keep up to 3 messages in flight so that both queues are used near capacity.
  int sent = 0;
  while (received < count && problem.empty()) {
    while (sent < count && sent - received < 3) {
      make_big(message, size_of(sent), 1000 + static_cast<std::uint64_t>(sent));
      if (!down.send_for(message, priority_of_big(sent), 20s)) {
        problem = "send " + std::to_string(sent) + " timed out";
        break;
      }
      ++sent;
    }
    if (!problem.empty()) break;
    auto r = up.receive_for(buffer, 20s);
    if (!r) {
      problem = "no reply " + std::to_string(received) + " within 20 s";
      break;
    }
    problem = check_big(buffer.data(), r->size, 1001 + static_cast<std::uint64_t>(received), size_of(received));
    if (problem.empty() && r->priority != priority_of_big(received)) problem = "wrong priority";
    if (!problem.empty()) problem = "reply " + std::to_string(received) + ": " + problem;
    ++received;
  }
  EXPECT_EQ(problem, "");
  EXPECT_EQ(pipc::test::wait_exit(child, 30s), 0);
  EXPECT_EQ(received, count);

  // Sizes at the edge: one byte too many to send, one byte too few to receive.
  std::vector<std::byte> too_big(kSize + 1);
  std::error_code ec;
  down.try_send(too_big, 0, ec);
  EXPECT_EQ(ec, std::errc::message_size);
  std::vector<std::byte> too_small(kSize - 1);
  up.try_receive(too_small, ec);
  EXPECT_EQ(ec, std::errc::message_size);
}

// ---------------------------------------------------------------------------------------
// Caps

TEST(EngineStress, CapsRejectOneBeyondWithAMessageNamingTheCap) {
  unlink_guard guard(unique_name("caps"), pipc::name_kind::engine_queue);
  struct beyond {
    long max_messages, message_size;
    std::string field, cap;
  };
  const beyond cases[] = {
      {static_cast<long>(pipc::engine::max_max_messages) + 1, 1, "max_messages", "1048576"},
      {1, static_cast<long>(pipc::engine::max_message_size) + 1, "message_size", "16777216"},
      {std::numeric_limits<long>::max(), 1, "max_messages", "1048576"},
      {1, std::numeric_limits<long>::max(), "message_size", "16777216"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.field + " " + std::to_string(c.max_messages) + " x " + std::to_string(c.message_size));
    std::error_code ec;
    auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(c.max_messages, c.message_size), ec);
    EXPECT_EQ(ec, std::errc::invalid_argument);
    EXPECT_FALSE(q.is_open());
    try {
      message_queue::open(guard.name(), open_mode::open_or_create, engine_options(c.max_messages, c.message_size));
      ADD_FAILURE() << "open beyond the cap succeeded";
    } catch (const std::system_error& e) {
      std::string what = e.what();
      EXPECT_EQ(e.code(), std::errc::invalid_argument);
      EXPECT_NE(what.find(c.field), std::string::npos) << what;
      EXPECT_NE(what.find(c.cap), std::string::npos) << "the message does not name the cap: " << what;
      EXPECT_NE(what.find(guard.name()), std::string::npos) << "the message does not name the queue: " << what;
    }
    // Nothing was created.
    message_queue::open(guard.name(), open_mode::open_only, engine_options(1, 1), ec);
    EXPECT_EQ(ec, std::errc::no_such_file_or_directory);
  }
}

TEST(EngineStress, MaxMessagesAtTheCapFillsAndDrains) {
  constexpr std::uint64_t kMax = pipc::engine::max_max_messages;
  // 1 048 576 slots of stride round_up(32 + 1, 64) = 64 bytes, after the 2 KiB header,
  // two rings of 2 × kMax 8-byte entries and the side heap of kMax 16-byte entries:
  // 112 MiB + 2 KiB.
  constexpr std::uint64_t kRegion = pipc::engine::compute_geometry(kMax, 1).region_size;
  static_assert(kRegion == 2048 + 2 * (2 * kMax * 8) + kMax * 16 + kMax * 64);
  if (shm_available_bytes() < kRegion + (64u << 20)) {
    GTEST_SKIP() << "/dev/shm has " << shm_available_bytes() << " bytes free; the queue needs " << kRegion;
  }
  if (kThreadSanitizer) {
    // Two million single-threaded operations take ~20 s under TSan and tell it nothing;
    // the Debug and ASan builds run this test in full.
    GTEST_SKIP() << "single-threaded and too slow under ThreadSanitizer; run by the other builds";
  }
  unlink_guard guard(unique_name("capmax"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(static_cast<long>(kMax), 1));
  EXPECT_EQ(q.attributes().max_messages, static_cast<long>(kMax));

  // Three priorities; byte i & 0xff. Delivery: all of priority 2 in arrival order, then 1, then 0.
  auto t0 = steady_clock::now();
  for (std::uint64_t i = 0; i < kMax; ++i) {
    auto b = static_cast<std::byte>(i & 0xff);
    bool sent = q.try_send(as_span(&b, 1), static_cast<unsigned>(i % 3));
    if (!sent) FAIL() << "full after " << i << " messages";
  }
  std::byte extra{};
  EXPECT_FALSE(q.try_send(as_span(&extra, 1), 2)) << "message 1048577 fit";
  EXPECT_EQ(q.attributes().current_messages, static_cast<long>(kMax));
  std::array<std::byte, 1> buffer{};
  std::uint64_t wrong = 0;
  for (unsigned prio = 3; prio-- > 0;) {
    for (std::uint64_t i = prio; i < kMax; i += 3) {
      auto r = q.try_receive(buffer);
      if (!r) FAIL() << "empty before message " << i;
      if (r->priority != prio || r->size != 1 || buffer[0] != static_cast<std::byte>(i & 0xff)) ++wrong;
    }
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_FALSE(q.try_receive(buffer));
  RecordProperty("fill_drain_ms",
                 static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count()));
}

TEST(EngineStress, MessageSizeAtTheCapRoundTrips) {
  constexpr std::size_t kSize = pipc::engine::max_message_size;
  constexpr std::uint64_t kRegion = pipc::engine::compute_geometry(2, kSize).region_size;
  if (shm_available_bytes() < kRegion + (64u << 20)) {
    GTEST_SKIP() << "/dev/shm has " << shm_available_bytes() << " bytes free; the queue needs " << kRegion;
  }
  unlink_guard guard(unique_name("capsize"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(2, static_cast<long>(kSize)));
  // Two 16 MiB messages: a random 4 KiB block repeated, each copy stamped with its index,
  // so that a lost, repeated or misplaced page shows; compared with memcmp (cheap under
  // the sanitizers).
  auto make = [&](std::uint64_t seed) {
    std::vector<std::byte> m(kSize);
    fill_pattern(m.data(), 4096, seed);
    for (std::size_t off = 4096; off < kSize; off += 4096) std::memcpy(m.data() + off, m.data(), 4096);
    for (std::uint64_t page = 0; page < kSize / 4096; ++page) std::memcpy(m.data() + page * 4096, &page, 8);
    return m;
  };
  const std::vector<std::byte> low = make(77), high = make(78);
  ASSERT_TRUE(q.try_send(low, 5));
  ASSERT_TRUE(q.try_send(high, 9));
  std::vector<std::byte> buffer(kSize);
  auto r = q.try_receive(buffer);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->priority, 9u);
  EXPECT_EQ(r->size, kSize);
  EXPECT_TRUE(buffer == high) << "the 16 MiB message of priority 9 came back altered";
  r = q.try_receive(buffer);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->priority, 5u);
  EXPECT_EQ(r->size, kSize);
  EXPECT_TRUE(buffer == low) << "the 16 MiB message of priority 5 came back altered";
}

// ---------------------------------------------------------------------------------------
// Non-blocking operations under contention

// try_send reports "full" only when the queue is full and try_receive "empty" only when
// it is empty (POSIX: EAGAIN for O_NONBLOCK only then) — not because another process
// holds the lock at that moment. Four processes hammer a queue that never fills (then
// never empties) while they run; every single call must succeed.
// A try waits at most lock_try_patience_ns (500 ms) for a lock whose holder is off the
// CPU, then says "full" or "empty" (docs/engine.md, "Waiting"): on a loaded machine,
// under a sanitizer, a holder descheduled that long is possible, and such a give-up is
// the documented behaviour, not a spurious answer. So a failed try that took at least
// the patience is counted apart (per phase); one that returned sooner must never
// happen, except as the one "empty" a message that never got in leaves for the end.
// With no give-ups (the usual run) the checks are: no false "full", no false "empty",
// and the queue ends empty.
TEST(EngineStress, TryOperationsFailOnlyWhenFullOrEmpty) {
  constexpr int kProcs = 4;
  const std::uint32_t per_proc = kSanitized ? 5'000 : 15'000;
  unlink_guard guard(unique_name("trycontend"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kProcs * per_proc, 16));
  struct shared_state {
    std::atomic<std::uint32_t> go;
    std::atomic<std::uint64_t> spurious_full, spurious_empty, errors, send_gave_up, receive_gave_up;
  };
  const auto patience = std::chrono::nanoseconds(pipc::engine::lock_try_patience_ns);
  auto memory = pipc::shared_memory::anonymous(sizeof(shared_state));
  auto view = memory.map();
  auto* sh = new (view.data()) shared_state{};

  auto run_phase = [&](bool sending) {
    sh->go.store(0);
    std::vector<pid_t> procs;
    for (int p = 0; p < kProcs; ++p) {
      procs.push_back(pipc::test::spawn([&, p]() -> int {
        auto own = message_queue::open(guard.name(), open_mode::open_only, engine_options(1, 1));
        auto until = steady_clock::now() + 10s;
        while (sh->go.load() == 0 && steady_clock::now() < until) {
        }
        std::array<std::byte, 16> buffer{};
        for (std::uint32_t i = 0; i < per_proc; ++i) {
          std::error_code ec;
          const auto started = steady_clock::now();
          bool done = false;
          if (sending) {
            small_message m{i, static_cast<std::uint32_t>(p), 0};
            done = own.try_send(as_span(&m, sizeof m), i % 4, ec);
          } else {
            done = own.try_receive(buffer, ec).has_value();
          }
          if (done) continue;
          if (ec) {
            sh->errors.fetch_add(1);
          } else if (steady_clock::now() - started >= patience) {
            (sending ? sh->send_gave_up : sh->receive_gave_up).fetch_add(1);
          } else {
            (sending ? sh->spurious_full : sh->spurious_empty).fetch_add(1);
          }
        }
        return 0;
      }));
    }
    std::this_thread::sleep_for(5ms);
    sh->go.store(1);
    for (pid_t pid : procs) EXPECT_EQ(pipc::test::wait_exit(pid, 60s), 0);
  };
  run_phase(true);
  auto after_sending = q.attributes().current_messages;
  run_phase(false);
  auto after_receiving = q.attributes().current_messages;
  std::printf("[ summary  ] %d processes x %u try_send then try_receive: %llu false \"full\", %llu false \"empty\", "
              "%llu + %llu gave up after the lock patience\n",
              kProcs, per_proc, static_cast<unsigned long long>(sh->spurious_full.load()),
              static_cast<unsigned long long>(sh->spurious_empty.load()),
              static_cast<unsigned long long>(sh->send_gave_up.load()),
              static_cast<unsigned long long>(sh->receive_gave_up.load()));
  EXPECT_EQ(sh->errors.load(), 0u);
  const std::uint64_t total = std::uint64_t{kProcs} * per_proc;
  EXPECT_EQ(sh->spurious_full.load(), 0u) << "try_send said \"full\" although the queue had room";
  EXPECT_EQ(static_cast<std::uint64_t>(after_sending), total - sh->send_gave_up.load());
  // Each receive try took a message, gave up on the lock, or found the queue empty: a
  // message left over is a receive that gave up, and an "empty" is a message that
  // never got in. Anything beyond is a false "empty".
  EXPECT_LE(static_cast<std::uint64_t>(after_receiving), sh->receive_gave_up.load());
  EXPECT_LE(sh->spurious_empty.load(), sh->send_gave_up.load())
      << "try_receive said \"empty\" although the queue had messages";
}

// ---------------------------------------------------------------------------------------
// Racing creators

// Processes that open_or_create one name at the same instant all end up on one queue:
// the loser of the race opens the winner's queue rather than replacing it.
TEST(EngineStress, RacingCreatorsAllOpenTheSameQueue) {
  constexpr int kRacers = 4;
  const int rounds = kThreadSanitizer ? 5 : kSanitized ? 10 : 30;
  unlink_guard guard(unique_name("race"), pipc::name_kind::engine_queue);
  auto memory = pipc::shared_memory::anonymous(64);
  auto view = memory.map();
  auto* go = new (view.data()) std::atomic<std::uint32_t>{0};
  int split_rounds = 0;
  for (int round = 0; round < rounds; ++round) {
    std::error_code ec;
    message_queue::unlink(guard.name(), pipc::backend::shm, ec);
    go->store(0);
    std::vector<pid_t> racers;
    for (int i = 0; i < kRacers; ++i) {
      racers.push_back(pipc::test::spawn([&, i]() -> int {
        auto until = steady_clock::now() + 10s;
        while (go->load() == 0 && steady_clock::now() < until) {
        }
        auto q = message_queue::open(guard.name(), open_mode::open_or_create, engine_options(8, 8));
        auto id = static_cast<std::uint8_t>(i);
        return q.send_for(as_span(&id, 1), 0, 10s) ? 0 : 3;
      }));
    }
    std::this_thread::sleep_for(5ms);
    go->store(1);
    for (pid_t r : racers) EXPECT_EQ(pipc::test::wait_exit(r, 20s), 0);
    auto q = message_queue::open(guard.name(), open_mode::open_only, engine_options(8, 8));
    auto depth = q.attributes().current_messages;
    if (depth != kRacers) ++split_rounds;
    EXPECT_EQ(depth, kRacers) << "round " << round << ": the racers did not all open the same queue";
  }
  EXPECT_EQ(split_rounds, 0);
}

// ---------------------------------------------------------------------------------------
// Many producers, many consumers, separate processes

constexpr int kProducers = 3;
constexpr int kConsumers = 3;
constexpr unsigned kLevels = 10;  // priorities 0..9

// A 32-byte message from producer `producer`: its sequence number, its priority and a check.
struct mpmc_message {
  std::uint32_t producer;
  std::uint32_t priority;
  std::uint64_t seq;
  std::uint64_t check;
  std::uint64_t pad;
};
static_assert(sizeof(mpmc_message) == 32);

std::uint64_t mpmc_check(std::uint32_t producer, std::uint64_t seq) { return mix((std::uint64_t{producer} << 40) ^ seq); }
unsigned mpmc_priority(std::uint32_t producer, std::uint64_t seq) {
  return static_cast<unsigned>(mix(mpmc_check(producer, seq)) % kLevels);
}

// What the processes share: outcome counters and, per (producer, seq), how many times a
// consumer received it.
struct mpmc_shared {
  std::atomic<std::uint64_t> received_total;
  std::atomic<std::uint64_t> bad_payload;
  std::atomic<std::uint64_t> order_violations;
  std::atomic<std::uint64_t> errors;
  std::atomic<std::int32_t> first_error;
  std::atomic<std::uint32_t> producers_done;
  std::atomic<std::uint32_t> per_consumer[kConsumers];
  // followed by kProducers × per_producer std::atomic<std::uint8_t> counts
};

TEST(EngineStress, ProducersAndConsumersInSeparateProcesses) {
  const std::uint64_t per_producer = kSanitized ? 5'000 : 20'000;
  const std::uint64_t total = per_producer * kProducers;
  unlink_guard guard(unique_name("mpmc"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(128, sizeof(mpmc_message)));

  std::size_t bytes = sizeof(mpmc_shared) + kProducers * per_producer;
  auto memory = pipc::shared_memory::anonymous(bytes);
  auto view = memory.map();
  auto* shared = new (view.data()) mpmc_shared{};
  auto* counts = reinterpret_cast<std::atomic<std::uint8_t>*>(view.data() + sizeof(mpmc_shared));
  static_assert(std::atomic<std::uint8_t>::is_always_lock_free);
  auto count_of = [&](std::uint32_t producer, std::uint64_t seq) -> std::atomic<std::uint8_t>& {
    return counts[producer * per_producer + seq];
  };
  auto record_error = [&](const std::error_code& ec) {
    shared->errors.fetch_add(1);
    std::int32_t none = 0;
    shared->first_error.compare_exchange_strong(none, ec.value());
  };

  auto t0 = steady_clock::now();
  std::vector<pid_t> children;
  for (int c = 0; c < kConsumers; ++c) {
    children.push_back(pipc::test::spawn([&, c]() -> int {
      auto in = message_queue::open(guard.name(), open_mode::open_only,
                                    engine_options(128, sizeof(mpmc_message), pipc::access::read_only));
      // last[producer][priority]: the last sequence number this consumer saw.
      std::vector<std::int64_t> last(kProducers * kLevels, -1);
      std::array<std::byte, sizeof(mpmc_message)> buffer{};
      // Until the producers are done and the queue is empty.
      for (;;) {
        bool producers_done = shared->producers_done.load() == kProducers;
        std::error_code ec;
        auto r = in.receive_for(buffer, 20ms, ec);
        if (ec) {
          record_error(ec);
          return 3;
        }
        if (!r) {
          if (producers_done) return 0;
          continue;
        }
        mpmc_message m{};
        std::memcpy(&m, buffer.data(), sizeof m);
        if (r->size != sizeof m || m.producer >= kProducers || m.seq >= per_producer ||
            m.check != mpmc_check(m.producer, m.seq) || m.priority != mpmc_priority(m.producer, m.seq) ||
            r->priority != m.priority) {
          shared->bad_payload.fetch_add(1);
        } else {
          count_of(m.producer, m.seq).fetch_add(1);
          std::int64_t& prev = last[m.producer * kLevels + m.priority];
          if (static_cast<std::int64_t>(m.seq) <= prev) shared->order_violations.fetch_add(1);
          prev = static_cast<std::int64_t>(m.seq);
        }
        shared->per_consumer[c].fetch_add(1);
        shared->received_total.fetch_add(1);
      }
    }));
  }
  for (int p = 0; p < kProducers; ++p) {
    children.push_back(pipc::test::spawn([&, p]() -> int {
      auto out = message_queue::open(guard.name(), open_mode::open_only,
                                     engine_options(128, sizeof(mpmc_message), pipc::access::write_only));
      auto producer = static_cast<std::uint32_t>(p);
      for (std::uint64_t seq = 0; seq < per_producer; ++seq) {
        mpmc_message m{producer, mpmc_priority(producer, seq), seq, mpmc_check(producer, seq), 0};
        std::error_code ec;
        bool sent = out.send_for(as_span(&m, sizeof m), m.priority, 30s, ec);
        if (ec) {
          record_error(ec);
          return 3;
        }
        if (!sent) return 4;
      }
      return 0;
    }));
  }
  for (pid_t child : children) {
    ASSERT_GT(child, 0);
  }
  // Producers first; however they ended, the consumers then drain and stop.
  for (int p = 0; p < kProducers; ++p) {
    EXPECT_EQ(pipc::test::wait_exit(children[kConsumers + p], 60s), 0) << "producer " << p;
  }
  shared->producers_done.store(kProducers);
  for (int c = 0; c < kConsumers; ++c) {
    EXPECT_EQ(pipc::test::wait_exit(children[c], 30s), 0) << "consumer " << c;
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count();

  EXPECT_EQ(shared->errors.load(), 0u) << "first error " << shared->first_error.load();
  EXPECT_EQ(shared->bad_payload.load(), 0u);
  EXPECT_EQ(shared->order_violations.load(), 0u)
      << "a consumer saw a producer's messages of one priority out of order";
  EXPECT_EQ(shared->received_total.load(), total);
  std::uint64_t lost = 0, duplicated = 0;
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    for (std::uint64_t s = 0; s < per_producer; ++s) {
      auto n = count_of(p, s).load();
      if (n == 0) ++lost;
      if (n > 1) ++duplicated;
    }
  }
  EXPECT_EQ(lost, 0u);
  EXPECT_EQ(duplicated, 0u);
  EXPECT_EQ(q.attributes().current_messages, 0);
  std::printf("[ summary  ] %d producers x %d consumers, %llu messages in %lld ms; per consumer %u/%u/%u; lost %llu, "
              "duplicated %llu\n",
              kProducers, kConsumers, static_cast<unsigned long long>(total), static_cast<long long>(ms),
              shared->per_consumer[0].load(), shared->per_consumer[1].load(), shared->per_consumer[2].load(),
              static_cast<unsigned long long>(lost), static_cast<unsigned long long>(duplicated));
  RecordProperty("messages", static_cast<int>(total));
  RecordProperty("elapsed_ms", static_cast<int>(ms));
}

}  // namespace
