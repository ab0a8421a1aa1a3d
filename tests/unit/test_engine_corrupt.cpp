// Corruption tests of the user-space queue engine (backend::shm): the shared region is
// input that any process with access can scribble on, so a garbage header, ring entry,
// cursor, slot number, size, priority, count or side heap entry must yield an error
// (pipc::errc::corrupt_state, or not_a_pipc_object / layout_mismatch at open), a repair
// or a valid result — never a crash, a hang, or an access outside the region or the
// caller's buffer (docs/engine.md, "Untrusted memory"). The ASan build runs these with
// receive buffers of exactly message_size bytes on the heap, so an over-long copy is
// caught.
//
// The tests map /dev/shm/pipc.mq.<name> themselves and write at the offsets of
// src/engine/layout.hpp (layout version 5). Two areas are left alone by the random
// scribble tests on purpose:
//   * the lock words (header::send_lock, header::recv_lock) beyond the values that
//     ScribbledLockWordsAreRecoveredOrWaitedFor writes: a word naming a live thread is
//     indistinguishable from a holder (a stopped process looks the same), so random
//     garbage there can make blocking calls wait — tries and timed calls still return
//     on time, which LockWordOfALiveThreadOnlyDelaysTries and
//     EngineCrash.StoppedLockHolderDoesNotStretchDeadlines check;
//   * the notification record (header::notify_pid up to the counters): a forged
//     registrant makes a sender signal that pid, so random bytes there would send random
//     signals to random processes.
#include "engine_support.hpp"
#include "support.hpp"

#include "engine/layout.hpp"

#include <pipc/pipc.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

using pipc::test::engine_options;
using pipc::test::kSanitized;
using pipc::test::kThreadSanitizer;
using pipc::test::watchdog;

namespace eng = pipc::engine;
using pipc::message_queue;
using pipc::mq_options;
using pipc::open_mode;
using pipc::test::unique_name;
using pipc::test::unlink_guard;
using std::chrono::steady_clock;

using pipc::test::as_span;

using pipc::test::object_path;
using pipc::test::raw_region;


// Header offsets (src/engine/layout.hpp).
constexpr std::size_t off_magic = offsetof(eng::header, magic_word);
constexpr std::size_t off_version = offsetof(eng::header, version);
constexpr std::size_t off_header_bytes = offsetof(eng::header, header_bytes);
constexpr std::size_t off_region_size = offsetof(eng::header, region_size);
constexpr std::size_t off_max_messages = offsetof(eng::header, max_messages);
constexpr std::size_t off_message_size = offsetof(eng::header, message_size);
constexpr std::size_t off_slot_stride = offsetof(eng::header, slot_stride);
constexpr std::size_t off_heap_offset = offsetof(eng::header, heap_offset);
constexpr std::size_t off_slots_offset = offsetof(eng::header, slots_offset);
constexpr std::size_t off_ring_size = offsetof(eng::header, ring_size);
constexpr std::size_t off_free_ring_offset = offsetof(eng::header, free_ring_offset);
constexpr std::size_t off_ready_ring_offset = offsetof(eng::header, ready_ring_offset);
constexpr std::size_t off_send_lock = offsetof(eng::header, send_lock);
constexpr std::size_t off_recv_lock = offsetof(eng::header, recv_lock);
constexpr std::size_t off_send_cursors = offsetof(eng::header, send_cursors);
constexpr std::size_t off_next_seq = offsetof(eng::header, next_seq);
constexpr std::size_t off_ring_priority = offsetof(eng::header, ring_priority);
constexpr std::size_t off_claim_slot = offsetof(eng::header, claim_slot);
constexpr std::size_t off_claim_position = offsetof(eng::header, claim_position);
constexpr std::size_t off_recv_cursors = offsetof(eng::header, recv_cursors);
constexpr std::size_t off_side_count = offsetof(eng::header, side_count);
constexpr std::size_t off_recv_taking = offsetof(eng::header, recv_taking);
constexpr std::size_t off_msg_seq = offsetof(eng::header, msg_seq);
constexpr std::size_t off_notify = offsetof(eng::header, notify_pid);
constexpr std::size_t off_counters = offsetof(eng::header, messages_sent);
// The cursor words hold two u32 halves: {free_head, ready_tail} and {free_tail, ready_head}.
constexpr std::size_t off_free_head = off_send_cursors;
constexpr std::size_t off_ready_tail = off_send_cursors + 4;
constexpr std::size_t off_free_tail = off_recv_cursors;
constexpr std::size_t off_ready_head = off_recv_cursors + 4;
static_assert(off_heap_offset == 48 && off_ring_size == 80 && off_free_ring_offset == 88 &&
                  off_ready_ring_offset == 96,
              "the offsets docs/engine.md names");
static_assert(off_send_lock == 128 && off_recv_lock == 192, "the offsets docs/engine.md names");
static_assert(off_send_cursors == 256 && off_next_seq == 264 && off_ring_priority == 272 && off_claim_slot == 280 &&
                  off_claim_position == 284,
              "the offsets docs/engine.md names");
static_assert(off_recv_cursors == 320 && off_side_count == 328 && off_recv_taking == 332 && off_msg_seq == 384,
              "the offsets docs/engine.md names");
static_assert(off_notify == 448 && off_counters == 512, "the offsets docs/engine.md names");
// The locks lie between the geometry and the locked state; the notification record
// between notify_pid and the counters. The fuzz leaves both alone.
static_assert(off_ready_ring_offset < off_send_lock && off_recv_lock + 8 <= off_send_cursors);
static_assert(off_msg_seq < off_notify && off_notify < off_counters);

// A small queue: 8 slots of 32 bytes.
constexpr long kDepth = 8;
constexpr long kSize = 32;

std::string describe(const std::error_code& ec) { return ec ? ec.category().name() + std::string(":") + ec.message() : "ok"; }

bool is_pipc_error(const std::error_code& ec) { return ec.category() == pipc::category(); }

// ---------------------------------------------------------------------------------------
// At open: the header is checked against the file and the engine's own computation

// Creates a queue (`depth` × 32) with two messages, one on the ready ring and one in the
// side heap, and closes it: the name stays.
void make_closed_queue(const std::string& name, long depth = kDepth) {
  auto q = message_queue::open(name, open_mode::create_only, engine_options(depth, kSize));
  q.send(pipc::as_bytes("one"), 1);
  q.send(pipc::as_bytes("two"), 2);
}

std::error_code open_error(const std::string& name, open_mode mode = open_mode::open_only) {
  std::error_code ec;
  auto q = message_queue::open(name, mode, engine_options(kDepth, kSize), ec);
  if (!ec && !q.is_open()) return std::make_error_code(std::errc::bad_file_descriptor);
  return ec;
}

TEST(EngineCorrupt, BadMagicIsNotAPipcObject) {
  unlink_guard guard(unique_name("bad-magic"), pipc::name_kind::engine_queue);
  make_closed_queue(guard.name());
  {
    raw_region r(guard.name());
    r.put<std::uint64_t>(off_magic, r.get<std::uint64_t>(off_magic) ^ 1);
  }
  EXPECT_EQ(open_error(guard.name()), pipc::errc::not_a_pipc_object);
  // open_or_create must not take over (or rebuild) a foreign object; create_only sees the name.
  EXPECT_EQ(open_error(guard.name(), open_mode::open_or_create), pipc::errc::not_a_pipc_object);
  EXPECT_EQ(open_error(guard.name(), open_mode::create_only), std::errc::file_exists);
  try {
    message_queue::open(guard.name(), open_mode::open_only, engine_options(kDepth, kSize));
    ADD_FAILURE() << "opened a region without the magic";
  } catch (const std::system_error& e) {
    std::string what = e.what();
    EXPECT_EQ(e.code(), pipc::errc::not_a_pipc_object);
    EXPECT_NE(what.find(guard.name()), std::string::npos) << what;
    EXPECT_NE(what.find("pipc.mq." + guard.name().substr(1)), std::string::npos)
        << "the message should name the storage object: " << what;
  }
  {
    raw_region r(guard.name());
    r.put<std::uint64_t>(off_magic, 0);
  }
  EXPECT_EQ(open_error(guard.name()), pipc::errc::not_a_pipc_object);
}

TEST(EngineCorrupt, BadVersionOrHeaderSizeIsLayoutMismatch) {
  unlink_guard guard(unique_name("bad-version"), pipc::name_kind::engine_queue);
  make_closed_queue(guard.name());
  // 1, 2 and 3 are earlier layouts (1: one lock, a free list and curmsgs; 2: glibc
  // robust mutexes where version 3 has its lock words; 3: a fixed per-priority table
  // where version 4 has its side heap; 4: no loans, whose slots it would leak): none
  // may be read as this one.
  for (std::uint32_t version : {0u, 1u, 2u, 3u, 4u, 6u, 0xffffffffu}) {
    {
      raw_region r(guard.name());
      r.put<std::uint32_t>(off_version, version);
    }
    EXPECT_EQ(open_error(guard.name()), pipc::errc::layout_mismatch) << "version " << version;
  }
  for (std::uint32_t old : {1u, 2u, 3u, 4u}) {
    {
      // A queue made by an earlier layout (magic "PIPCMQ\0" + the version byte) is a
      // pipc queue of another layout, not a foreign object.
      raw_region r(guard.name());
      r.put<std::uint64_t>(0, (eng::magic & eng::magic_family_mask) | (std::uint64_t{old} << 56));
      r.put<std::uint32_t>(off_version, old);
    }
    EXPECT_EQ(open_error(guard.name()), pipc::errc::layout_mismatch) << "a layout " << old << " queue";
  }
  {
    raw_region r(guard.name());
    r.put<std::uint64_t>(0, eng::magic);
    r.put<std::uint32_t>(off_version, eng::layout_version);
    r.put<std::uint32_t>(off_header_bytes, 8192);
  }
  EXPECT_EQ(open_error(guard.name()), pipc::errc::layout_mismatch) << "header_bytes 8192";
  {
    raw_region r(guard.name());
    r.put<std::uint32_t>(off_header_bytes, static_cast<std::uint32_t>(eng::header_size));
  }
  EXPECT_FALSE(open_error(guard.name())) << "the restored header does not open";
}

TEST(EngineCorrupt, BadGeometryIsCorruptState) {
  unlink_guard guard(unique_name("bad-geometry"), pipc::name_kind::engine_queue);
  make_closed_queue(guard.name());
  const auto geo = eng::compute_geometry(kDepth, kSize);
  struct field_case {
    const char* field;
    std::size_t offset;
    std::uint64_t value;
  };
  const std::uint64_t huge = std::uint64_t{1} << 63;
  const field_case cases[] = {
      {"max_messages 0", off_max_messages, 0},
      {"max_messages one fewer", off_max_messages, kDepth - 1},
      {"max_messages one more", off_max_messages, kDepth + 1},
      {"max_messages beyond the cap", off_max_messages, eng::max_max_messages + 1},
      {"max_messages 2^63", off_max_messages, huge},
      {"max_messages all ones", off_max_messages, ~std::uint64_t{0}},
      {"message_size 0", off_message_size, 0},
      {"message_size larger", off_message_size, 4096},
      {"message_size beyond the cap", off_message_size, eng::max_message_size + 1},
      {"message_size all ones", off_message_size, ~std::uint64_t{0}},
      {"slot_stride 0", off_slot_stride, 0},
      {"slot_stride + 64", off_slot_stride, geo.slot_stride + 64},
      {"slot_stride all ones", off_slot_stride, ~std::uint64_t{0}},
      {"heap_offset 0", off_heap_offset, 0},
      {"heap_offset - 16", off_heap_offset, geo.heap_offset - 16},
      {"heap_offset + 16", off_heap_offset, geo.heap_offset + 16},
      {"heap_offset at the ready ring", off_heap_offset, geo.ready_ring_offset},
      {"heap_offset at the slots", off_heap_offset, geo.slots_offset},
      {"heap_offset past the end", off_heap_offset, geo.region_size},
      {"heap_offset all ones", off_heap_offset, ~std::uint64_t{0}},
      {"slots_offset + 64", off_slots_offset, geo.slots_offset + 64},
      {"slots_offset 0", off_slots_offset, 0},
      // The rings: a ring_size or ring offset that disagrees with the geometry would put
      // ring entries on the heap or the slots (or past the file) if it were believed.
      {"ring_size 0", off_ring_size, 0},
      {"ring_size one fewer", off_ring_size, geo.ring_size - 1},
      {"ring_size doubled", off_ring_size, geo.ring_size * 2},
      {"ring_size 2^31", off_ring_size, std::uint64_t{1} << 31},
      {"ring_size all ones", off_ring_size, ~std::uint64_t{0}},
      {"free_ring_offset - 8", off_free_ring_offset, geo.free_ring_offset - 8},
      {"free_ring_offset + 8", off_free_ring_offset, geo.free_ring_offset + 8},
      {"free_ring_offset 0", off_free_ring_offset, 0},
      {"free_ring_offset at the ready ring", off_free_ring_offset, geo.ready_ring_offset},
      {"free_ring_offset past the end", off_free_ring_offset, geo.region_size},
      {"free_ring_offset all ones", off_free_ring_offset, ~std::uint64_t{0}},
      {"ready_ring_offset - 8", off_ready_ring_offset, geo.ready_ring_offset - 8},
      {"ready_ring_offset + 8", off_ready_ring_offset, geo.ready_ring_offset + 8},
      {"ready_ring_offset 0", off_ready_ring_offset, 0},
      {"ready_ring_offset at the free ring", off_ready_ring_offset, geo.free_ring_offset},
      {"ready_ring_offset at the slots", off_ready_ring_offset, geo.slots_offset},
      {"ready_ring_offset all ones", off_ready_ring_offset, ~std::uint64_t{0}},
      {"region_size - 1", off_region_size, geo.region_size - 1},
      {"region_size + 4096", off_region_size, geo.region_size + 4096},
      {"region_size 0", off_region_size, 0},
      {"region_size all ones", off_region_size, ~std::uint64_t{0}},
  };
  // (A message_size that changes nothing else, 31 instead of 32 with the same stride, is
  // a consistent geometry of another queue: the engine cannot and need not tell.)
  //
  // One mapping, made while the header is valid, writes and restores every case: a
  // raw_region computes its geometry from the header it maps, which these cases make
  // garbage.
  {
    raw_region r(guard.name());
    for (const auto& c : cases) {
      const auto saved = r.get<std::uint64_t>(c.offset);
      r.put<std::uint64_t>(c.offset, c.value);
      EXPECT_EQ(open_error(guard.name()), pipc::errc::corrupt_state) << c.field;
      r.put<std::uint64_t>(c.offset, saved);
    }
  }
  // Restored, it opens and still has its messages.
  auto q = message_queue::open(guard.name(), open_mode::open_only, engine_options(kDepth, kSize));
  std::vector<std::byte> buffer(kSize);
  auto got = q.try_receive(buffer);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->priority, 2u);
}

// The ring size M is bit_ceil(N + 1), not N: a header that claims M = N (as a layout
// without the round-up would have it, whose positions would not wrap correctly at 2^32
// and whose lagging cursors could be overtaken), half of M, or a ready ring offset for
// such a ring, is refused even where the slots still start where the engine expects them.
TEST(EngineCorrupt, RingGeometryOfANonPowerOfTwoQueueIsChecked) {
  constexpr long depth = 5;
  unlink_guard guard(unique_name("bad-ring"), pipc::name_kind::engine_queue);
  make_closed_queue(guard.name(), depth);
  const auto geo = eng::compute_geometry(depth, kSize);
  ASSERT_EQ(geo.ring_size, 8u) << "the case assumes M = bit_ceil(5 + 1) = 8";
  // Rings of N entries would put the ready ring and the heap here; the slots would still
  // start in the same place (the heap's end rounds up to it).
  const std::uint64_t ready_for_n = geo.free_ring_offset + depth * sizeof(std::uint64_t);
  const std::uint64_t heap_for_n = ready_for_n + depth * sizeof(std::uint64_t);
  ASSERT_EQ(geo.slots_offset, (heap_for_n + depth * sizeof(eng::side_entry) + 63) / 64 * 64 + 64)
      << "the case assumes that rings of N entries would end one cache line earlier";
  struct ring_case {
    const char* what;
    std::uint64_t ring_size;
    std::uint64_t ready_ring_offset;
    std::uint64_t heap_offset;
  };
  const ring_case cases[] = {
      {"ring_size N instead of M", depth, geo.ready_ring_offset, geo.heap_offset},
      {"ring_size M / 2", geo.ring_size / 2, geo.ready_ring_offset, geo.heap_offset},
      {"ready_ring_offset for a ring of N entries", geo.ring_size, ready_for_n, geo.heap_offset},
      {"ring_size N and the offsets that go with it", depth, ready_for_n, heap_for_n},
  };
  for (const auto& c : cases) {
    {
      raw_region r(guard.name());
      r.put<std::uint64_t>(off_ring_size, c.ring_size);
      r.put<std::uint64_t>(off_ready_ring_offset, c.ready_ring_offset);
      r.put<std::uint64_t>(off_heap_offset, c.heap_offset);
    }
    EXPECT_EQ(open_error(guard.name()), pipc::errc::corrupt_state) << c.what;
  }
  {
    raw_region r(guard.name());
    r.put<std::uint64_t>(off_ring_size, geo.ring_size);
    r.put<std::uint64_t>(off_ready_ring_offset, geo.ready_ring_offset);
    r.put<std::uint64_t>(off_heap_offset, geo.heap_offset);
  }
  std::error_code ec;
  auto q = message_queue::open(guard.name(), open_mode::open_only, engine_options(depth, kSize), ec);
  ASSERT_FALSE(ec) << "the restored header does not open: " << describe(ec);
  EXPECT_EQ(q.attributes().current_messages, 2);
}

TEST(EngineCorrupt, WrongFileSizeIsAnError) {
  const auto geo = eng::compute_geometry(kDepth, kSize);
  struct size_case {
    std::uint64_t size;
    pipc::errc expected;
  };
  const size_case cases[] = {
      {geo.region_size - 1, pipc::errc::corrupt_state},
      {geo.region_size - 64, pipc::errc::corrupt_state},
      {geo.slots_offset, pipc::errc::corrupt_state},
      {geo.ready_ring_offset, pipc::errc::corrupt_state},
      {geo.free_ring_offset, pipc::errc::corrupt_state},
      {geo.heap_offset, pipc::errc::corrupt_state},
      {eng::header_size, pipc::errc::corrupt_state},
      {eng::header_size - 1, pipc::errc::not_a_pipc_object},
      {100, pipc::errc::not_a_pipc_object},
      {0, pipc::errc::not_a_pipc_object},
      {geo.region_size + 1, pipc::errc::corrupt_state},
      {geo.region_size + 4096, pipc::errc::corrupt_state},
  };
  for (const auto& c : cases) {
    unlink_guard guard(unique_name("bad-size"), pipc::name_kind::engine_queue);
    make_closed_queue(guard.name());
    ASSERT_EQ(::truncate(object_path(guard.name()).c_str(), static_cast<off_t>(c.size)), 0);
    EXPECT_EQ(open_error(guard.name()), c.expected) << "file of " << c.size << " bytes";
  }
}

TEST(EngineCorrupt, GarbageFilesOfAnySizeAreRejected) {
  std::mt19937_64 rng(12345);
  // Among them the sizes of a real queue of 8 × 32 and of its parts: a file of the
  // right size with a random header is still refused.
  const auto geo = eng::compute_geometry(kDepth, kSize);
  const std::size_t sizes[] = {0,      1,      100,    4095,   4096,   4097, 8192, geo.free_ring_offset, geo.slots_offset,
                               geo.region_size, 300000, 1 << 20};
  for (std::size_t size : sizes) {
    for (int variant = 0; variant < 4; ++variant) {
      // 0: random bytes; 1: zeros; 2: the magic, then random; 3: magic, version and
      // header size right, the rest random.
      unlink_guard guard(unique_name("garbage"), pipc::name_kind::engine_queue);
      std::vector<std::byte> bytes(size);
      if (variant != 1) {
        for (auto& b : bytes) b = static_cast<std::byte>(rng());
      }
      if (variant >= 2 && size >= 8) std::memcpy(bytes.data(), &eng::magic, 8);
      if (variant == 3 && size >= 16) {
        std::uint32_t v[2] = {eng::layout_version, static_cast<std::uint32_t>(eng::header_size)};
        std::memcpy(bytes.data() + 8, v, 8);
      }
      int fd = ::open(object_path(guard.name()).c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
      ASSERT_GE(fd, 0) << std::strerror(errno);
      std::size_t done = 0;
      while (done < size) {
        ssize_t n = ::write(fd, bytes.data() + done, size - done);
        ASSERT_GT(n, 0);
        done += static_cast<std::size_t>(n);
      }
      ::close(fd);
      for (auto mode : {open_mode::open_only, open_mode::open_or_create}) {
        std::error_code ec = open_error(guard.name(), mode);
        EXPECT_TRUE(ec) << size << " bytes, variant " << variant << ": a garbage file opened as a queue";
        EXPECT_TRUE(is_pipc_error(ec)) << size << " bytes, variant " << variant << ": " << describe(ec);
      }
    }
  }
}

TEST(EngineCorrupt, NonRegularFilesUnderTheNameAreRejected) {
  watchdog dog(60s);
  unlink_guard target(unique_name("target"), pipc::name_kind::engine_queue);
  make_closed_queue(target.name());
  struct kind_case {
    const char* what;
    std::function<int(const std::string&)> make;
  };
  const kind_case cases[] = {
      {"a directory", [](const std::string& path) { return ::mkdir(path.c_str(), 0700); }},
      {"a FIFO", [](const std::string& path) { return ::mkfifo(path.c_str(), 0600); }},
      {"a symlink to a valid queue",
       [&](const std::string& path) { return ::symlink(object_path(target.name()).c_str(), path.c_str()); }},
      {"a dangling symlink", [](const std::string& path) { return ::symlink("/nonexistent/pipc", path.c_str()); }},
  };
  for (const auto& c : cases) {
    unlink_guard guard(unique_name("nonregular"), pipc::name_kind::engine_queue);
    const std::string& name = guard.name();
    std::string path = object_path(name);
    ASSERT_EQ(c.make(path), 0) << c.what << ": " << std::strerror(errno);
    auto t0 = steady_clock::now();
    std::error_code ec = open_error(name);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count();
    EXPECT_TRUE(ec) << c.what << " opened as a queue";
    EXPECT_LT(ms, 2000) << c.what;
    std::error_code ec2 = open_error(name, open_mode::open_or_create);
    EXPECT_TRUE(ec2) << c.what << " opened (open_or_create) as a queue";
    std::printf("[ corrupt  ] %s under the name: %s / %s\n", c.what, describe(ec).c_str(), describe(ec2).c_str());
    if (::rmdir(path.c_str()) != 0) ::unlink(path.c_str());
  }
}

// ---------------------------------------------------------------------------------------
// After open: scribbles on the rings, the cursors, the counts, the side heap and the slots

// One operation's outcome.
struct outcome {
  std::error_code ec;
  bool done = false;  // sent / received
  std::optional<pipc::received> got;
};

// Queue with messages 0..4 at priorities {2, 7, 2, 7, 0}; they take slots 1..5 from the
// free ring (which starts in slot order). The first message sets the ready ring's
// priority to 2, so messages 0 and 2 are on the ready ring (positions 0 and 1: slots 1
// and 3, state RING) and messages 1, 3, 4 in the side heap (state SIDE): its entries are
// {slot 2, priority 7, seq 2}, {4, 7, 4}, {5, 0, 5}, in that order. Hence free_head 5 and ready_tail 2 (senders), free_tail 8 and
// ready_head 0 (receivers), side_count 3, next_seq 6; the free ring holds slots 6, 7, 8
// at positions 5, 6, 7 and, at positions 0…4, the entries of the previous lap.
constexpr std::array<unsigned, 5> kScribblePriorities = {2, 7, 2, 7, 0};
constexpr std::uint32_t kFreeHead = 5;
constexpr std::uint32_t kReadyTail = 2;
constexpr std::uint32_t kFreeTail = 8;
constexpr std::uint32_t kReadyHead = 0;

// Sends the scribble messages: message i carries {i, its priority}.
void send_scribble_messages(message_queue& q) {
  for (std::uint32_t i = 0; i < kScribblePriorities.size(); ++i) {
    std::uint32_t payload[2] = {i, kScribblePriorities[i]};
    ASSERT_TRUE(q.try_send(as_span(payload, sizeof payload), kScribblePriorities[i]));
  }
}

// Checks that the region is laid out as the comment above says, so that the cases
// scribble what they mean to.
void expect_scribble_layout(const raw_region& r) {
  ASSERT_EQ(r.free_head(), kFreeHead) << "the layout the cases assume";
  ASSERT_EQ(r.ready_tail(), kReadyTail);
  ASSERT_EQ(r.free_tail(), kFreeTail);
  ASSERT_EQ(r.ready_head(), kReadyHead);
  ASSERT_EQ(r.hdr()->side_count.load(), 3u);
  ASSERT_EQ(r.hdr()->ring_priority, 2u);
  ASSERT_EQ(r.free_entry(kFreeHead).load(), eng::ring_entry(kFreeHead, 6));
  ASSERT_EQ(r.ready_entry(kReadyHead).load(), eng::ring_entry(kReadyHead, 1));
  ASSERT_EQ(r.ready_entry(kReadyHead + 1).load(), eng::ring_entry(kReadyHead + 1, 3));
  const eng::side_entry* heap = r.heap();
  ASSERT_EQ(heap[0].slot, 2u);
  ASSERT_EQ(heap[0].priority, 7u);
  ASSERT_EQ(heap[0].seq, 2u);
  ASSERT_EQ(heap[1].slot, 4u);
  ASSERT_EQ(heap[1].seq, 4u);
  ASSERT_EQ(heap[2].slot, 5u);
  ASSERT_EQ(heap[2].priority, 0u);
  ASSERT_EQ(r.slot(2)->state.load(), eng::slot_side);
  ASSERT_EQ(r.slot(1)->state.load(), eng::slot_ring);
}

// A valid entry (tag = position + 1) for `position` of the free or the ready ring,
// naming `slot`.
void put_free_entry(const raw_region& r, std::uint32_t position, std::uint32_t slot) {
  r.free_entry(position).store(eng::ring_entry(position, slot));
}
void put_ready_entry(const raw_region& r, std::uint32_t position, std::uint32_t slot) {
  r.ready_entry(position).store(eng::ring_entry(position, slot));
}

// Receives until the queue is empty (or an error); returns the messages' ids (the first
// word of the scribble payloads). Fails the test on an error, a message longer than
// message_size, or more than `limit` messages.
std::vector<std::uint32_t> drain(message_queue& q, std::size_t limit) {
  std::vector<std::byte> buffer(kSize);
  std::vector<std::uint32_t> order;
  for (;;) {
    std::error_code ec;
    auto got = q.try_receive(buffer, ec);
    EXPECT_FALSE(ec) << "after recovery: " << describe(ec);
    if (ec || !got) break;
    EXPECT_LE(got->size, static_cast<std::size_t>(kSize));
    std::uint32_t payload[2] = {};
    std::memcpy(payload, buffer.data(), sizeof payload);
    order.push_back(payload[0]);
    if (order.size() > limit) {
      ADD_FAILURE() << "more than " << limit << " messages";
      break;
    }
  }
  return order;
}

struct scribble_case {
  const char* what;
  std::function<void(raw_region&)> scribble;
  bool send_must_fail;     // the next send (priority 7, a side send) must report corrupt_state
  bool receive_must_fail;  // the next receive must report corrupt_state
};

// Runs one scribble case twice, each time on a fresh queue: once sending first, once
// receiving first (either operation can repair or mask what the other would find). The
// first operation must fail with corrupt_state if the case says so; everything after it
// must give pipc's own errors or valid results. Fails the test on anything else.
void run_scribble_case(const scribble_case& c) {
  for (int receive_first = 0; receive_first < 2; ++receive_first) {
    SCOPED_TRACE(std::string(c.what) + (receive_first ? ", receiving first" : ", sending first"));
    unlink_guard guard(unique_name("scribble"), pipc::name_kind::engine_queue);
    auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
    send_scribble_messages(q);
    raw_region r(guard.name());
    expect_scribble_layout(r);
    if (::testing::Test::HasFatalFailure()) return;
    c.scribble(r);

    // A buffer of exactly message_size bytes on the heap: ASan catches a longer copy.
    std::vector<std::byte> buffer(kSize);
    std::uint32_t payload[2] = {99, 7};
    std::error_code ec;
    auto check_received = [&](const std::optional<pipc::received>& got) {
      if (!got) return;
      EXPECT_LE(got->size, static_cast<std::size_t>(kSize));
      EXPECT_LE(got->priority, pipc::max_priority);
    };
    auto check_error = [&](const std::error_code& e, const char* op) {
      if (e) {
        EXPECT_TRUE(is_pipc_error(e)) << op << ": " << describe(e);
      }
    };
    auto first_send = [&](bool must_fail) {
      q.try_send(as_span(payload, sizeof payload), 7, ec);
      if (must_fail) {
        EXPECT_EQ(ec, pipc::errc::corrupt_state) << "send: " << describe(ec);
      } else {
        check_error(ec, "try_send");
      }
    };
    auto first_receive = [&](bool must_fail) {
      auto got = q.try_receive(buffer, ec);
      if (must_fail) {
        EXPECT_EQ(ec, pipc::errc::corrupt_state) << "receive: " << describe(ec);
        EXPECT_FALSE(got);
      } else {
        check_error(ec, "try_receive");
        check_received(got);
      }
    };
    if (receive_first) {
      first_receive(c.receive_must_fail);
      first_send(false);
    } else {
      first_send(c.send_must_fail);
      first_receive(false);
    }

    // Then anything goes, except crashes, hangs and foreign errors.
    auto t0 = steady_clock::now();
    for (int i = 0; i < 12; ++i) {
      unsigned prio = kScribblePriorities[static_cast<std::size_t>(i) % kScribblePriorities.size()];
      switch (i % 4) {
        case 0:
          q.try_send(as_span(payload, sizeof payload), prio, ec);
          check_error(ec, "try_send");
          break;
        case 1:
          check_received(q.try_receive(buffer, ec));
          check_error(ec, "try_receive");
          break;
        case 2:
          q.send_for(as_span(payload, sizeof payload), prio, 1ms, ec);
          check_error(ec, "send_for");
          break;
        case 3:
          check_received(q.receive_for(buffer, 1ms, ec));
          check_error(ec, "receive_for");
          break;
      }
    }
    auto a = q.attributes(ec);
    EXPECT_FALSE(ec);
    EXPECT_GE(a.current_messages, 0);
    EXPECT_LE(a.current_messages, kDepth) << "attributes report more messages than slots";
    EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count(), 2000);
  }
}

// The cursors, the side count and the sender state. (Layout version 1 kept a free-list
// head and a message count here; version 2 derives the depth from the cursors.)
TEST(EngineCorrupt, ScribbledLockedStateGivesErrorsNotCrashes) {
  watchdog dog(60s);
  auto put32 = [](std::size_t offset, std::uint32_t value) {
    return [offset, value](raw_region& r) { r.put<std::uint32_t>(offset, value); };
  };
  const scribble_case cases[] = {
      // side_count: a side send stores side_count + 1 and a receive side_count − 1, so a
      // count beyond the capacity must be refused before it is used, not wrapped (all
      // ones + 1 = 0 would hide the side heap from receivers), and a receive must not
      // read heap entries past max_messages.
      {"side_count beyond max_messages", put32(off_side_count, kDepth + 1), true, true},
      {"side_count all ones", put32(off_side_count, 0xffffffffu), true, true},
      {"side_count 0x80000000", put32(off_side_count, 0x80000000u), true, true},
      {"side_count max_messages (no slot could be free)", put32(off_side_count, kDepth), true, false},
      {"side_count 0 with side messages queued", put32(off_side_count, 0), false, false},
      {"side_count one more than queued", put32(off_side_count, 4), false, false},
      // The cursors: values that make the tags disagree look full or empty; values that
      // make them agree with an entry of an earlier lap hand out a slot in use, which
      // nothing in the region can tell from a valid state. Neither may crash.
      {"free_head at free_tail (looks full)", put32(off_free_head, kFreeTail), false, false},
      {"free_head all ones", put32(off_free_head, 0xffffffffu), false, false},
      {"free_head rewound onto an old entry that names a queued message", put32(off_free_head, 1), false, false},
      {"ready_tail behind ready_head", put32(off_ready_tail, 0), false, false},
      {"ready_tail all ones", put32(off_ready_tail, 0xffffffffu), false, false},
      {"ready_head past ready_tail (the ring looks empty)", put32(off_ready_head, kReadyTail + 1), false, false},
      // Position 2^32 − 1 is the one whose tag is 0, so a never-written (zero) entry is
      // valid there: it names slot 0, which the receive must refuse.
      {"ready_head all ones (its zero entry names slot 0)", put32(off_ready_head, 0xffffffffu), false, true},
      {"next_seq all ones (wraps)",
       [](raw_region& r) { r.put<std::uint64_t>(off_next_seq, ~std::uint64_t{0}); }, false, false},
      {"next_seq 0", [](raw_region& r) { r.put<std::uint64_t>(off_next_seq, 0); }, false, false},
      {"ring_priority beyond the priorities", put32(off_ring_priority, eng::priorities), false, false},
      {"ring_priority all ones", put32(off_ring_priority, 0xffffffffu), false, false},
      {"ring_priority 7 (the side messages' priority)", put32(off_ring_priority, 7), false, false},
      {"claim of a garbage slot at free_head (read only by recovery)",
       [](raw_region& r) {
         r.put<std::uint32_t>(off_claim_slot, 0xffffffffu);
         r.put<std::uint32_t>(off_claim_position, kFreeHead);
       },
       false, false},
  };
  for (const auto& c : cases) run_scribble_case(c);
}

// Cursors that put more than max_messages messages in the queue, or fewer than none
// (free_tail − free_head outside 0…N): a receive stores its freed slot at free_tail, over
// whatever the free ring holds there, and senders then find no valid entry and see a full
// queue for good. Such cursors must be reported, not used for long.
//
// Each side can check only within what it can see legitimately. Under send_lock,
// free_tail − free_head is −1…N (−1: a receiver between its commit and its cursor store,
// whose slot this sender already took). Under recv_lock it is 0…N + 1 (N + 1: a sender
// between its commit and its cursor store, or dead there, whose message a receiver has
// already taken and freed). Reading the other side's cursor costs a cache-line transfer,
// so the engine checks under its locks every 64 positions, and without a lock whenever an
// operation finds the queue full or empty (docs/engine.md, "Untrusted memory"): the report
// must come within a bounded number of operations, not necessarily the first. A cursor
// one off from a legitimate value is indistinguishable from a peer caught mid-operation;
// it may cost the queue a slot, but must not cost a crash or a foreign error.
TEST(EngineCorrupt, CursorsThatClaimMoreThanMaxMessagesAreCorruptState) {
  watchdog dog(60s);
  struct cursor_case {
    const char* what;
    std::size_t offset;
    std::uint32_t value;
    bool reported;  // corrupt_state must come within kOperations operations
  };
  const cursor_case cases[] = {
      {"free_tail one behind free_head (−1: depth N + 1; looks like a receiver mid-commit)", off_free_tail,
       kFreeHead - 1, false},
      {"free_tail N + 1 past free_head (depth −1)", off_free_tail, kFreeHead + kDepth + 1, true},
      {"free_tail N + 2 past free_head (depth −2)", off_free_tail, kFreeHead + kDepth + 2, true},
      {"free_head 2 past free_tail (depth N + 2)", off_free_head, kFreeTail + 2, true},
      {"free_tail 0 (depth N + 5)", off_free_tail, 0, true},
      {"free_tail 0xfffffff0", off_free_tail, 0xfffffff0u, true},
      {"free_tail all ones", off_free_tail, 0xffffffffu, true},
      {"free_head all ones", off_free_head, 0xffffffffu, true},
  };
  constexpr int kOperations = 200;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    unlink_guard guard(unique_name("scribble-cursors"), pipc::name_kind::engine_queue);
    auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
    send_scribble_messages(q);
    raw_region r(guard.name());
    expect_scribble_layout(r);
    if (::testing::Test::HasFatalFailure()) return;
    r.put<std::uint32_t>(c.offset, c.value);

    std::vector<std::byte> buffer(kSize);
    std::uint32_t payload[2] = {99, 7};
    int reported_at = -1;
    for (int i = 0; i < kOperations; ++i) {
      std::error_code ec;
      // Bursts of sends, then of receives, so that the queue goes both full and empty.
      if ((i / 12) % 2 == 0) {
        unsigned prio = kScribblePriorities[static_cast<std::size_t>(i) % kScribblePriorities.size()];
        q.try_send(as_span(payload, sizeof payload), prio, ec);
      } else {
        auto got = q.try_receive(buffer, ec);
        if (got) {
          EXPECT_LE(got->size, static_cast<std::size_t>(kSize));
        }
      }
      if (ec == pipc::errc::corrupt_state) {
        if (reported_at < 0) reported_at = i;
      } else if (ec) {
        ADD_FAILURE() << "operation " << i << ": " << describe(ec);
      }
    }
    if (c.reported) {
      EXPECT_GE(reported_at, 0) << "not reported within " << kOperations << " operations";
    }
  }
}

// A blocking call does not check the cursors on its first look at a full or empty queue
// (that would pull the other side's lines just before it writes them), but at the end of
// its first wait (docs/engine.md, "Untrusted memory"): cursors forged to look empty for
// good, or full for good, must end a blocking receive or send with corrupt_state, not
// leave it waiting. The first wait ends by the sleepers' periodic re-check (250 ms) at
// the latest.
TEST(EngineCorrupt, ForgedCursorsEndABlockingCallAfterItsFirstWait) {
  watchdog dog(60s);
  struct forged_case {
    const char* what;
    std::size_t offset;
    std::uint32_t value;
    bool receive;  // a blocking receive on a queue that looks empty; else a send, full
  };
  // A fresh queue: free_head 0, free_tail N (all slots free), no message.
  const forged_case cases[] = {
      {"free_tail N + 2 past free_head: looks empty, depth −2", off_free_tail, kDepth + 2, true},
      {"free_head 2 past free_tail: looks full, depth N + 2", off_free_head, kDepth + 2, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    unlink_guard guard(unique_name("forged-wait"), pipc::name_kind::engine_queue);
    auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
    raw_region r(guard.name());
    ASSERT_EQ(r.free_head(), 0u);
    ASSERT_EQ(r.free_tail(), static_cast<std::uint32_t>(kDepth));
    r.put<std::uint32_t>(c.offset, c.value);
    std::error_code ec;
    const auto start = std::chrono::steady_clock::now();
    if (c.receive) {
      std::vector<std::byte> buffer(kSize);
      (void)q.receive(buffer, ec);
    } else {
      std::uint32_t payload[2] = {1, 2};
      q.send(as_span(payload, sizeof payload), 0, ec);
    }
    EXPECT_EQ(ec, pipc::errc::corrupt_state) << describe(ec);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
  }
}

// The ring entries at the cursors: what a sender takes (free ring at free_head), what a
// receiver takes (ready ring at ready_head), and what recovery reads (free ring at
// free_tail, ready ring at ready_tail). A slot number from a valid entry is bounds-checked
// before use.
TEST(EngineCorrupt, ScribbledRingEntriesGiveErrorsNotCrashes) {
  watchdog dog(60s);
  const scribble_case cases[] = {
      {"free entry at free_head names slot 0", [](raw_region& r) { put_free_entry(r, kFreeHead, 0); }, true, false},
      {"free entry at free_head names slot max_messages + 1",
       [](raw_region& r) { put_free_entry(r, kFreeHead, kDepth + 1); }, true, false},
      {"free entry at free_head names slot 2^31",
       [](raw_region& r) { put_free_entry(r, kFreeHead, 0x80000000u); }, true, false},
      {"free entry at free_head names slot all ones",
       [](raw_region& r) { put_free_entry(r, kFreeHead, 0xffffffffu); }, true, false},
      {"free entry at free_head names a queued side message",
       [](raw_region& r) { put_free_entry(r, kFreeHead, 2); }, false, false},
      {"free entry at free_head names a queued ring message",
       [](raw_region& r) { put_free_entry(r, kFreeHead, 1); }, false, false},
      {"free entry at free_head of the previous lap (looks full)",
       [](raw_region& r) { put_free_entry(r, kFreeHead - static_cast<std::uint32_t>(r.geo().ring_size), 6); }, false,
       false},
      {"free entry at free_head zero (looks full)", [](raw_region& r) { r.free_entry(kFreeHead).store(0); }, false,
       false},
      {"free entry at free_head all ones", [](raw_region& r) { r.free_entry(kFreeHead).store(~std::uint64_t{0}); },
       false, false},
      {"free entry at free_tail valid, naming slot all ones",
       [](raw_region& r) { put_free_entry(r, kFreeTail, 0xffffffffu); }, false, false},
      {"ready entry at ready_head names slot 0", [](raw_region& r) { put_ready_entry(r, kReadyHead, 0); }, false,
       true},
      {"ready entry at ready_head names slot max_messages + 1",
       [](raw_region& r) { put_ready_entry(r, kReadyHead, kDepth + 1); }, false, true},
      {"ready entry at ready_head names slot all ones",
       [](raw_region& r) { put_ready_entry(r, kReadyHead, 0xffffffffu); }, false, true},
      {"ready entry at ready_head names a free slot", [](raw_region& r) { put_ready_entry(r, kReadyHead, 7); }, false,
       false},
      {"ready entry at ready_head names a side message",
       [](raw_region& r) { put_ready_entry(r, kReadyHead, 2); }, false, false},
      {"ready entry at ready_head zero (the ring looks empty)",
       [](raw_region& r) { r.ready_entry(kReadyHead).store(0); }, false, false},
      {"second ready entry names slot all ones", [](raw_region& r) { put_ready_entry(r, kReadyHead + 1, ~0u); },
       false, false},
      {"ready entry at ready_tail valid, naming slot all ones",
       [](raw_region& r) { put_ready_entry(r, kReadyTail, 0xffffffffu); }, false, false},
      {"every entry of both rings all ones",
       [](raw_region& r) {
         for (std::uint32_t k = 0; k < r.geo().ring_size; ++k) {
           r.free_entry(k).store(~std::uint64_t{0});
           r.ready_entry(k).store(~std::uint64_t{0});
         }
       },
       false, false},
      {"every entry of both rings valid where the cursors look, naming garbage slots",
       [](raw_region& r) {
         const auto m = static_cast<std::uint32_t>(r.geo().ring_size);
         for (std::uint32_t k = 0; k < m; ++k) {
           put_free_entry(r, kFreeHead + k, kDepth + 1 + k * 0x10001u);
           put_ready_entry(r, kReadyHead + k, 0xffffffffu - k);
         }
       },
       true, true},
  };
  for (const auto& c : cases) run_scribble_case(c);
}

// The side heap: a receive takes the slot its first entry names, after checking that the
// slot is SIDE and carries the entry's key; the heap's entries are only compared and
// moved, never followed, so a disordered heap delivers out of order but reads nothing
// outside it.
TEST(EngineCorrupt, ScribbledSideHeapGivesErrorsNotCrashes) {
  watchdog dog(60s);
  auto first = [](auto change) {
    return [change](raw_region& r) { change(r.heap()[0]); };
  };
  const scribble_case cases[] = {
      {"first entry names slot 0", first([](eng::side_entry& e) { e.slot = 0; }), false, true},
      {"first entry names a slot beyond max_messages", first([](eng::side_entry& e) { e.slot = kDepth + 1; }), false,
       true},
      {"first entry names slot all ones", first([](eng::side_entry& e) { e.slot = 0xffffffffu; }), false, true},
      {"first entry names a FREE slot", first([](eng::side_entry& e) { e.slot = 6; }), false, true},
      {"first entry names a ready ring (RING) slot", first([](eng::side_entry& e) { e.slot = 1; }), false, true},
      {"first entry names a SIDE slot of another key", first([](eng::side_entry& e) { e.slot = 5; }), false, true},
      {"first entry's priority is not its slot's", first([](eng::side_entry& e) { e.priority = 9; }), false, true},
      {"first entry's priority 32768", first([](eng::side_entry& e) { e.priority = eng::priorities; }), false, true},
      {"first entry's seq is not its slot's", first([](eng::side_entry& e) { e.seq = 3; }), false, true},
      {"first and last entries swapped (out of heap order)",
       [](raw_region& r) { std::swap(r.heap()[0], r.heap()[2]); }, false, false},
      {"second entry garbage", [](raw_region& r) { std::memset(static_cast<void*>(&r.heap()[1]), 0xa5, 16); }, false,
       false},
      {"entries past side_count garbage",
       [](raw_region& r) {
         for (std::uint32_t k = 3; k < kDepth; ++k) std::memset(static_cast<void*>(&r.heap()[k]), 0xff, 16);
       },
       false, false},
      {"every entry zero", [](raw_region& r) { std::memset(static_cast<void*>(r.heap()), 0, kDepth * 16); }, false,
       true},
      {"every entry all ones", [](raw_region& r) { std::memset(static_cast<void*>(r.heap()), 0xff, kDepth * 16); },
       false, true},
      {"every entry random",
       [](raw_region& r) {
         std::mt19937_64 rng(99);
         for (std::uint32_t k = 0; k < kDepth; ++k) {
           r.heap()[k] = {static_cast<std::uint32_t>(rng()), static_cast<std::uint32_t>(rng()), rng()};
         }
       },
       false, true},
  };
  for (const auto& c : cases) run_scribble_case(c);
}

TEST(EngineCorrupt, ScribbledSlotHeadersGiveErrorsNotCrashes) {
  watchdog dog(60s);
  // Slot 2 is the side heap's first (the next to be received), slot 1 the ready ring's
  // head, slot 6 the slot at free_head (the next to be sent in).
  const scribble_case cases[] = {
      {"side head slot state FREE", [](raw_region& r) { r.slot(2)->state.store(eng::slot_free); }, false, true},
      {"side head slot state RING", [](raw_region& r) { r.slot(2)->state.store(eng::slot_ring); }, false, true},
      {"side head slot state all ones", [](raw_region& r) { r.slot(2)->state.store(0xffffffffu); }, false, true},
      {"side head slot size message_size + 1", [](raw_region& r) { r.slot(2)->size = kSize + 1; }, false, true},
      {"side head slot size 4096", [](raw_region& r) { r.slot(2)->size = 4096; }, false, true},
      {"side head slot size all ones", [](raw_region& r) { r.slot(2)->size = 0xffffffffu; }, false, true},
      {"side head slot size message_size (valid)", [](raw_region& r) { r.slot(2)->size = kSize; }, false, false},
      {"side head slot priority 2 (not its heap entry's)", [](raw_region& r) { r.slot(2)->priority = 2; }, false, true},
      {"side head slot priority 32768", [](raw_region& r) { r.slot(2)->priority = eng::priorities; }, false, true},
      {"side head slot priority all ones", [](raw_region& r) { r.slot(2)->priority = 0xffffffffu; }, false, true},
      {"side head slot seq all ones (not its heap entry's)", [](raw_region& r) { r.slot(2)->seq = ~std::uint64_t{0}; },
       false, true},
      {"side head slot position all ones", [](raw_region& r) { r.slot(2)->position = 0xffffffffu; }, false, false},
      {"second side slot's seq changed", [](raw_region& r) { r.slot(4)->seq = 1; }, false, false},
      // The ready ring's head is checked before it is compared with the side heap's
      // best, so a bad one fails the receive even though a side message comes first.
      {"ring head slot size message_size + 1", [](raw_region& r) { r.slot(1)->size = kSize + 1; }, false, true},
      {"ring head slot size all ones", [](raw_region& r) { r.slot(1)->size = 0xffffffffu; }, false, true},
      {"ring head slot priority 32768", [](raw_region& r) { r.slot(1)->priority = eng::priorities; }, false, true},
      {"ring head slot priority all ones", [](raw_region& r) { r.slot(1)->priority = 0xffffffffu; }, false, true},
      {"ring head slot state FREE", [](raw_region& r) { r.slot(1)->state.store(eng::slot_free); }, false, false},
      {"ring head slot state SIDE", [](raw_region& r) { r.slot(1)->state.store(eng::slot_side); }, false, false},
      {"ring head slot priority 7 (another than the ring's)", [](raw_region& r) { r.slot(1)->priority = 7; }, false,
       false},
      // A sender reads nothing of the slot it takes: it writes every field (a slot on the
      // free ring may be FREE, RING, or for a moment SIDE).
      {"free head slot state SIDE", [](raw_region& r) { r.slot(6)->state.store(eng::slot_side); }, false, false},
      {"free head slot state all ones", [](raw_region& r) { r.slot(6)->state.store(0xffffffffu); }, false, false},
      {"free head slot reserved word all ones", [](raw_region& r) { r.slot(6)->owner_pid = 0xffffffffu; }, false, false},
      {"free head slot size and priority all ones",
       [](raw_region& r) {
         r.slot(6)->size = 0xffffffffu;
         r.slot(6)->priority = 0xffffffffu;
       },
       false, false},
      {"free head slot position all ones", [](raw_region& r) { r.slot(6)->position = 0xffffffffu; }, false, false},
      {"every slot header all ones",
       [](raw_region& r) {
         for (std::uint32_t n = 1; n <= kDepth; ++n) std::memset(static_cast<void*>(r.slot(n)), 0xff, sizeof(eng::slot_header));
       },
       false, true},
  };
  for (const auto& c : cases) run_scribble_case(c);
}

// The lock words (src/engine/lock.hpp). A word that names no live thread — a tid that
// no thread has, a live thread's tid with another start time, tid 0 with flag bits —
// is a dead owner: the next locker takes it over and recovers the side. Nothing in a
// lock word is ever followed as a pointer.
TEST(EngineCorrupt, ScribbledLockWordsAreRecoveredOrWaitedFor) {
  watchdog dog(60s);
  using side = raw_region::side;
  auto set_word = [](side which, std::uint64_t word) {
    return [which, word](raw_region& r) { r.lock(which)->store(word); };
  };
  // This thread's tid with a start time it does not have: its tid was reused.
  const std::uint64_t stale = eng::lock_identity() ^ (std::uint64_t{1} << 32);
  const scribble_case cases[] = {
      {"send_lock names a thread that does not exist", set_word(side::send, 0x3ffffff0u), false, false},
      {"recv_lock names a thread that does not exist", set_word(side::recv, 0x3ffffff0u), false, false},
      {"send_lock: tid 0 with the waiters and reserved bits", set_word(side::send, 0xc0000000u), false, false},
      {"recv_lock: tid 0 with the waiters and reserved bits", set_word(side::recv, 0xc0000000u), false, false},
      {"send_lock all ones", set_word(side::send, ~std::uint64_t{0}), false, false},
      {"recv_lock all ones", set_word(side::recv, ~std::uint64_t{0}), false, false},
      {"send_lock names a reused tid", set_word(side::send, stale), false, false},
      {"recv_lock names a reused tid", set_word(side::recv, stale), false, false},
      {"both locks name threads that do not exist",
       [](raw_region& r) {
         r.lock(side::send)->store(0x3ffffff0u | eng::lock_waiters);
         r.lock(side::recv)->store(0x3ffffff1u);
       },
       false, false},
  };
  for (const auto& c : cases) run_scribble_case(c);

  // A dead owner is repaired, not just survived: a side send (both locks) takes it
  // over, and every message is still there, in order.
  for (side which : {side::send, side::recv}) {
    SCOPED_TRACE(which == side::send ? "send_lock" : "recv_lock");
    unlink_guard guard(unique_name("owner-died"), pipc::name_kind::engine_queue);
    auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
    send_scribble_messages(q);
    raw_region r(guard.name());
    set_word(which, 0x3ffffff0u)(r);
    EXPECT_TRUE(r.owner_died());
    std::uint32_t fifth[2] = {5, 7};
    std::error_code ec;
    EXPECT_TRUE(q.try_send(as_span(fifth, sizeof fifth), 7, ec)) << describe(ec);
    EXPECT_FALSE(r.owner_died()) << "the dead owner is still there after the queue was used";
    EXPECT_EQ(r.lock_word(which), 0u);
    EXPECT_EQ(drain(q, 6), (std::vector<std::uint32_t>{1, 3, 5, 0, 2, 4}));
  }
}

// A lock word that names a live thread (here: pid 1, with its real start time) is a
// holder as far as anyone can tell, like a stopped process: nothing to report, nothing
// to repair. Blocking calls wait for it; tries and timed calls must still return on
// time, with "would block", and the queue works again once the word is cleared.
TEST(EngineCorrupt, LockWordOfALiveThreadOnlyDelaysTries) {
  watchdog dog(60s);
  using side = raw_region::side;
  const std::uint64_t init_word = pipc::test::lock_word_of(1);
  for (side which : {side::send, side::recv}) {
    SCOPED_TRACE(which == side::send ? "send_lock" : "recv_lock");
    unlink_guard guard(unique_name("lock-word"), pipc::name_kind::engine_queue);
    auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
    send_scribble_messages(q);
    raw_region r(guard.name());
    r.lock(which)->store(init_word);
    ASSERT_FALSE(r.owner_died()) << "pid 1 counts as dead: the start time was misread";
    std::vector<std::byte> buffer(kSize);
    std::uint32_t payload[2] = {99, 7};
    std::error_code ec;
    auto t0 = steady_clock::now();
    if (which == side::send) {
      EXPECT_FALSE(q.try_send(as_span(payload, sizeof payload), 2, ec));
      EXPECT_FALSE(ec) << describe(ec);
      EXPECT_FALSE(q.send_for(as_span(payload, sizeof payload), 2, 50ms, ec));
      EXPECT_FALSE(ec) << describe(ec);
      // Receives take recv_lock only.
      auto got = q.try_receive(buffer, ec);
      EXPECT_FALSE(ec) << describe(ec);
      EXPECT_TRUE(got);
    } else {
      EXPECT_FALSE(q.try_receive(buffer, ec));
      EXPECT_FALSE(ec) << describe(ec);
      EXPECT_FALSE(q.receive_for(buffer, 50ms, ec));
      EXPECT_FALSE(ec) << describe(ec);
      // A ring send takes send_lock only; a side send needs recv_lock too.
      EXPECT_TRUE(q.try_send(as_span(payload, sizeof payload), 2, ec));
      EXPECT_FALSE(ec) << describe(ec);
      EXPECT_FALSE(q.try_send(as_span(payload, sizeof payload), 7, ec));
      EXPECT_FALSE(ec) << describe(ec);
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count();
    EXPECT_LT(ms, 3000) << "a try waits for a held lock about 500 ms, a timed call until its deadline";
    r.lock(which)->store(0);
    EXPECT_TRUE(q.try_send(as_span(payload, sizeof payload), 7, ec)) << describe(ec);
    int received = 0;
    while (q.try_receive(buffer, ec)) ++received;
    EXPECT_FALSE(ec) << describe(ec);
    EXPECT_EQ(received, which == side::send ? 5 : 7);
  }
}

TEST(EngineCorrupt, ScribbledCountersAndWaitWordsAreHarmless) {
  watchdog dog(60s);
  auto fill = [](std::size_t from, std::size_t to, std::uint8_t byte) {
    return [from, to, byte](raw_region& r) { std::memset(r.base() + from, byte, to - from); };
  };
  const scribble_case cases[] = {
      {"futex words and sleeper counts all ones", fill(off_msg_seq, off_notify, 0xff), false, false},
      {"futex words and sleeper counts zero", fill(off_msg_seq, off_notify, 0x00), false, false},
      {"counters and waiter table all ones", fill(off_counters, eng::header_size, 0xff), false, false},
      {"counters and waiter table 0x7f", fill(off_counters, eng::header_size, 0x7f), false, false},
  };
  for (const auto& c : cases) run_scribble_case(c);
}

// The geometry is read once, when a process maps the queue: scribbling it afterwards
// changes nothing for open descriptors (they use the process's own copy), and once the
// process has closed them all, a new open refuses the region.
TEST(EngineCorrupt, GeometryScribbledAfterOpenIsNeverReread) {
  watchdog dog(60s);
  unlink_guard guard(unique_name("geo-after"), pipc::name_kind::engine_queue);
  std::optional<message_queue> opened = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
  message_queue& q = *opened;
  raw_region r(guard.name());
  r.put<std::uint64_t>(off_max_messages, eng::max_max_messages);
  r.put<std::uint64_t>(off_message_size, eng::max_message_size);
  r.put<std::uint64_t>(off_slot_stride, std::uint64_t{1} << 40);
  r.put<std::uint64_t>(off_slots_offset, std::uint64_t{1} << 40);
  r.put<std::uint64_t>(off_region_size, std::uint64_t{1} << 41);
  r.put<std::uint64_t>(off_ring_size, std::uint64_t{1} << 31);
  r.put<std::uint64_t>(off_free_ring_offset, std::uint64_t{1} << 40);
  r.put<std::uint64_t>(off_ready_ring_offset, ~std::uint64_t{0});
  for (std::uint32_t i = 0; i < kDepth; ++i) {
    ASSERT_TRUE(q.try_send(as_span(&i, sizeof i), i % 3));
  }
  EXPECT_FALSE(q.try_send(as_span("x", 1), 0));
  EXPECT_EQ(q.attributes().max_messages, kDepth);
  EXPECT_EQ(q.attributes().message_size, kSize);
  std::vector<std::byte> buffer(kSize);
  for (int i = 0; i < kDepth; ++i) {
    auto got = q.try_receive(buffer);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->size, sizeof(std::uint32_t));
  }
  // Another open while q is open shares q's mapping and its checked geometry.
  EXPECT_FALSE(open_error(guard.name()));
  opened.reset();
  EXPECT_EQ(open_error(guard.name()), pipc::errc::corrupt_state);
}

// ---------------------------------------------------------------------------------------
// Recovery rebuilds the side heap from the slots' states, and reads forged commits

// Every one of the 8 slots is free exactly once: 8 sends fit, a 9th does not.
void expect_every_slot_free_once(message_queue& q) {
  for (std::uint32_t i = 0; i < kDepth; ++i) {
    std::error_code ec;
    ASSERT_TRUE(q.try_send(as_span(&i, sizeof i), 0, ec)) << "slot lost after recovery " << describe(ec);
  }
  EXPECT_FALSE(q.try_send(as_span("x", 1), 0)) << "a slot listed twice after recovery";
}

TEST(EngineCorrupt, RecoveryRepairsAScribbledIndex) {
  watchdog dog(60s);
  unlink_guard guard(unique_name("repair"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
  send_scribble_messages(q);
  raw_region r(guard.name());
  expect_scribble_layout(r);
  // Everything the side heap derives from the slots' states is garbage: every entry and
  // side_count.
  std::mt19937_64 rng(7);
  for (std::uint32_t k = 0; k < kDepth; ++k) {
    r.heap()[k] = {static_cast<std::uint32_t>(rng()), static_cast<std::uint32_t>(rng()), rng()};
  }
  r.put<std::uint32_t>(off_side_count, 0xdeadbeef);
  r.kill_lock_holder(raw_region::side::recv);

  EXPECT_EQ(drain(q, 5), (std::vector<std::uint32_t>{1, 3, 0, 2, 4}));
  expect_every_slot_free_once(q);
}

// The same with side_count 0: the queue then looks as if it had only the ring's
// messages, but the dead recv_lock holder sends the receive to recovery, which finds the
// side messages by their state.
TEST(EngineCorrupt, RecoveryFindsSideMessagesThatTheCountHides) {
  watchdog dog(60s);
  unlink_guard guard(unique_name("repair-count"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
  send_scribble_messages(q);
  raw_region r(guard.name());
  expect_scribble_layout(r);
  r.put<std::uint32_t>(off_side_count, 0);
  std::memset(static_cast<void*>(r.heap()), 0, kDepth * sizeof(eng::side_entry));
  r.kill_lock_holder(raw_region::side::recv);
  EXPECT_EQ(drain(q, 5), (std::vector<std::uint32_t>{1, 3, 0, 2, 4}));
  expect_every_slot_free_once(q);
}

// Recovery keeps a SIDE slot only with a valid priority and size; any other is freed
// (pushed onto the free ring, as a receive would) — docs/engine.md, "Recovery", step 2.
// It orders the kept ones by seq, whatever their slot numbers, and leaves slots in any
// other state alone.
TEST(EngineCorrupt, RecoveryFreesSlotsWithGarbageFields) {
  watchdog dog(60s);
  unlink_guard guard(unique_name("repair-slots"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
  send_scribble_messages(q);
  // Message 5, priority 7: a side message in slot 6.
  std::uint32_t fifth[2] = {5, 7};
  ASSERT_TRUE(q.try_send(as_span(fifth, sizeof fifth), 7));
  raw_region r(guard.name());
  ASSERT_EQ(r.slot(6)->state.load(), eng::slot_side);
  r.slot(2)->priority = eng::priorities;   // message 1: impossible priority
  r.slot(5)->size = kSize + 1;             // message 4: too long
  r.slot(6)->seq = 1;                      // message 5: now older than message 3 (seq 4)
  r.slot(7)->state.store(0x1234);          // a free slot with a garbage state...
  r.slot(8)->size = 0xffffffffu;           // ...and one with garbage fields: both still free
  r.slot(8)->priority = 0xffffffffu;
  r.kill_lock_holder(raw_region::side::recv);

  // Priority 7: message 5 (seq 1), then message 3; then the ring, priority 2: messages 0
  // and 2. Messages 1 and 4 had garbage fields and were dropped.
  EXPECT_EQ(drain(q, 8), (std::vector<std::uint32_t>{5, 3, 0, 2}));
  expect_every_slot_free_once(q);
}

// A free slot forged into a valid-looking SIDE slot is kept by recovery: nothing in the
// slot tells it from a side message whose heap entry was lost. It is then in the side heap
// and on the free ring at once, which no bounds check can see; what follows (a message
// delivered twice, a slot handed out twice) must still be no crash, no foreign error and
// no access outside the region.
TEST(EngineCorrupt, ForgedSideSlotOnTheFreeRingIsHarmless) {
  watchdog dog(60s);
  const scribble_case cases[] = {
      {"a free slot forged SIDE, then recv_lock recovered",
       [](raw_region& r) {
         r.slot(8)->priority = 7;
         r.slot(8)->size = 8;
         r.slot(8)->seq = 1;
         r.slot(8)->state.store(eng::slot_side);
         r.kill_lock_holder(raw_region::side::recv);
       },
       false, false},
      // Recovery frees a SIDE slot with a garbage priority by pushing it onto the free
      // ring; this one is on the free ring already, so it is there twice afterwards.
      {"a free slot forged SIDE with a garbage priority, then recv_lock recovered",
       [](raw_region& r) {
         r.slot(7)->priority = 0xffffffffu;
         r.slot(7)->state.store(eng::slot_side);
         r.kill_lock_holder(raw_region::side::recv);
       },
       false, false},
      {"the slot at free_head forged SIDE, then recv_lock recovered",
       [](raw_region& r) {
         r.slot(6)->priority = 0;
         r.slot(6)->size = 0;
         r.slot(6)->state.store(eng::slot_side);
         r.kill_lock_holder(raw_region::side::recv);
       },
       false, false},
  };
  for (const auto& c : cases) run_scribble_case(c);
}

// send_lock's recovery reads the ready ring at ready_tail and the claim. A claim that
// names no slot, or not free_head's position, is dropped; a forged committed ring entry
// is taken as a committed send — and a garbage slot number in it is reported when a
// receiver reaches it, not used.
TEST(EngineCorrupt, SendRecoveryDropsGarbageClaimsAndReportsForgedEntries) {
  watchdog dog(60s);
  struct claim_case {
    const char* what;
    std::uint32_t slot;
    std::uint32_t position;
  };
  const claim_case claims[] = {
      {"a claim of slot max_messages + 1 at free_head", kDepth + 1, kFreeHead},
      {"a claim of slot all ones at free_head", 0xffffffffu, kFreeHead},
      {"a claim of the free slot at free_head (not committed)", 6, kFreeHead},
      {"a claim of a queued side message at another position", 2, kFreeHead + 1},
  };
  for (const auto& c : claims) {
    SCOPED_TRACE(c.what);
    unlink_guard guard(unique_name("repair-claim"), pipc::name_kind::engine_queue);
    auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
    send_scribble_messages(q);
    raw_region r(guard.name());
    expect_scribble_layout(r);
    r.put<std::uint32_t>(off_claim_position, c.position);
    r.hdr()->claim_slot.store(c.slot);
    r.kill_lock_holder(raw_region::side::send);
    // A send recovers send_lock: nothing was committed, so nothing moves.
    std::uint32_t payload[2] = {5, 7};
    std::error_code ec;
    EXPECT_TRUE(q.try_send(as_span(payload, sizeof payload), 7, ec)) << describe(ec);
    EXPECT_FALSE(r.owner_died());
    EXPECT_EQ(r.hdr()->claim_slot.load(), 0u) << "the claim was not cleared";
    EXPECT_EQ(r.free_head(), kFreeHead + 1);
    EXPECT_EQ(drain(q, 6), (std::vector<std::uint32_t>{1, 3, 5, 0, 2, 4}));
    expect_every_slot_free_once(q);
  }

  // A ring send that seemingly committed at ready_tail with a garbage slot: recovery
  // moves the sender cursors on, and the receive that reaches the entry reports it.
  unlink_guard guard(unique_name("repair-entry"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
  send_scribble_messages(q);
  raw_region r(guard.name());
  expect_scribble_layout(r);
  put_ready_entry(r, kReadyTail, kDepth + 1);
  r.kill_lock_holder(raw_region::side::send);
  std::uint32_t payload[2] = {5, 2};
  std::error_code ec;
  EXPECT_TRUE(q.try_send(as_span(payload, sizeof payload), 2, ec)) << describe(ec);
  EXPECT_EQ(r.ready_tail(), kReadyTail + 2) << "recovery did not take the forged entry as a committed send";
  std::vector<std::byte> buffer(kSize);
  std::vector<std::uint32_t> order;
  for (int i = 0; i < 4; ++i) {
    auto got = q.try_receive(buffer, ec);
    ASSERT_FALSE(ec) << describe(ec);
    ASSERT_TRUE(got);
    std::uint32_t ids[2];
    std::memcpy(ids, buffer.data(), sizeof ids);
    order.push_back(ids[0]);
  }
  EXPECT_EQ(order, (std::vector<std::uint32_t>{1, 3, 0, 2}));
  for (int i = 0; i < 2; ++i) {
    auto got = q.try_receive(buffer, ec);
    EXPECT_EQ(ec, pipc::errc::corrupt_state) << "the forged entry's slot: " << describe(ec);
    EXPECT_FALSE(got);
  }
}

// recv_lock's recovery reads the free ring at free_tail: a valid entry there is a receive
// that committed. One naming a queued side message completes that "receive" (the
// message is gone, its slot free). One naming no slot is garbage, not a commit: taking
// it would put N + 1 entries on the free ring, whose next push would overwrite a free
// slot's entry and leave the queue looking full for good; recovery ignores it and the
// next receive overwrites it.
TEST(EngineCorrupt, ReceiveRecoveryTakesForgedCommitsWithoutHarm) {
  watchdog dog(60s);
  {
    unlink_guard guard(unique_name("repair-free"), pipc::name_kind::engine_queue);
    auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
    send_scribble_messages(q);
    raw_region r(guard.name());
    expect_scribble_layout(r);
    put_free_entry(r, kFreeTail, 2);  // message 1 "received"
    r.kill_lock_holder(raw_region::side::recv);
    EXPECT_EQ(drain(q, 5), (std::vector<std::uint32_t>{3, 0, 2, 4}));
    EXPECT_EQ(r.slot(2)->state.load(), eng::slot_free);
    expect_every_slot_free_once(q);
  }
  {
    unlink_guard guard(unique_name("repair-free"), pipc::name_kind::engine_queue);
    auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
    send_scribble_messages(q);
    raw_region r(guard.name());
    expect_scribble_layout(r);
    put_free_entry(r, kFreeTail, 0xffffffffu);
    r.kill_lock_holder(raw_region::side::recv);
    EXPECT_EQ(drain(q, 5), (std::vector<std::uint32_t>{1, 3, 0, 2, 4}));
    EXPECT_EQ(r.free_tail(), kFreeTail + 5) << "recovery took the garbage entry for a receive";
    expect_every_slot_free_once(q);
  }
}

// ---------------------------------------------------------------------------------------
// Fuzz: random scribbles, then random operations

// Values that tend to break bounds checks, for u32 fields.
std::uint32_t interesting_u32(std::mt19937_64& rng) {
  static constexpr std::uint32_t values[] = {0,  1,  2,  kDepth - 1, kDepth, kDepth + 1, kSize, kSize + 1, 32767,
                                             32768, 0x7fffffffu, 0x80000000u, 0xffffffffu};
  if (rng() % 4 == 0) return static_cast<std::uint32_t>(rng());
  return values[rng() % std::size(values)];
}

TEST(EngineCorrupt, FuzzRandomScribblesThenOperations) {
  const long iterations = [] {
    const char* v = std::getenv("PIPC_FUZZ_ITERATIONS");
    return v != nullptr ? std::strtol(v, nullptr, 10) : (kThreadSanitizer ? 400L : kSanitized ? 1000L : 2000L);
  }();
  const auto seed = [] {
    const char* v = std::getenv("PIPC_FUZZ_SEED");
    return v != nullptr ? std::strtoull(v, nullptr, 10) : static_cast<unsigned long long>(std::random_device{}());
  }();
  std::printf("[ fuzz     ] seed %llu (PIPC_FUZZ_SEED), %ld iterations\n", seed, iterations);
  RecordProperty("seed", std::to_string(seed));
  watchdog dog(110s);
  std::mt19937_64 rng(seed);
  unlink_guard guard(unique_name("fuzz"), pipc::name_kind::engine_queue);
  const auto geo = eng::compute_geometry(kDepth, kSize);
  static constexpr unsigned prio_choices[] = {0, 1, 2, 7, 63, 64, 4095, 4096, 32767};

  std::map<std::string, long> outcomes;
  long foreign_errors = 0, recoveries = 0, reopen_refused = 0;
  std::string first_foreign;
  auto note = [&](const char* op, const std::error_code& ec, bool done) {
    if (ec && !is_pipc_error(ec)) {
      if (foreign_errors++ == 0) first_foreign = std::string(op) + ": " + describe(ec);
    }
    outcomes[std::string(op) + " " + (ec ? describe(ec) : done ? "ok" : "nothing")]++;
  };

  auto t0 = steady_clock::now();
  for (long it = 0; it < iterations; ++it) {
    std::error_code ec;
    message_queue::unlink(guard.name(), pipc::backend::shm, ec);
    auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
    std::vector<std::byte> buffer(kSize);
    std::array<std::byte, kSize> message{};
    for (auto& b : message) b = static_cast<std::byte>(rng());
    for (unsigned k = static_cast<unsigned>(rng() % (kDepth + 1)); k-- > 0;) {
      unsigned p = rng() % 5 == 0 ? static_cast<unsigned>(rng() % eng::priorities) : prio_choices[rng() % std::size(prio_choices)];
      q.try_send(std::span(message).first(rng() % (kSize + 1)), p);
    }
    for (unsigned k = static_cast<unsigned>(rng() % 3); k-- > 0;) q.try_receive(buffer);

    {
      raw_region r(guard.name());
      const auto m = static_cast<std::uint32_t>(r.geo().ring_size);
      for (unsigned k = 1 + static_cast<unsigned>(rng() % 6); k-- > 0;) {
        switch (rng() % 9) {
          case 0: {  // locked state: cursors, next_seq, ring_priority, claim, side_count, taking
            std::size_t off = off_send_cursors + (rng() % ((off_recv_taking + 4 - off_send_cursors) / 4)) * 4;
            r.put<std::uint32_t>(off, interesting_u32(rng));
            break;
          }
          case 1: {  // a side heap entry's slot number or priority
            eng::side_entry& e = r.heap()[rng() % kDepth];
            (rng() % 2 ? e.slot : e.priority) = interesting_u32(rng);
            break;
          }
          case 2: {  // a side heap entry's seq, or two entries swapped
            eng::side_entry* heap = r.heap();
            if (rng() % 2) {
              heap[rng() % kDepth].seq = rng() % 2 ? rng() : rng() % 16;
            } else {
              std::swap(heap[rng() % kDepth], heap[rng() % kDepth]);
            }
            break;
          }
          case 3: {  // a slot header field
            auto n = static_cast<std::uint32_t>(1 + rng() % kDepth);
            // state, reserved, size, priority, seq (2 words), position, reserved
            std::size_t field = (rng() % 8) * 4;
            r.put<std::uint32_t>(geo.slots_offset + (n - 1) * geo.slot_stride + field, interesting_u32(rng));
            break;
          }
          case 4: {  // futex words, counters, waiter table
            std::size_t off = rng() % 2 ? off_msg_seq + (rng() % ((off_notify - off_msg_seq) / 4)) * 4
                                        : off_counters + (rng() % ((eng::header_size - off_counters) / 4)) * 4;
            r.put<std::uint32_t>(off, interesting_u32(rng));
            break;
          }
          case 5: {  // geometry (seen by a new open only)
            std::size_t off = (rng() % (off_send_lock / 4)) * 4;
            r.put<std::uint32_t>(off, interesting_u32(rng));
            break;
          }
          case 6: {  // any byte outside the locks and the notification record
            std::size_t off = 0;
            do {
              off = off_send_cursors + rng() % (r.size() - off_send_cursors);
            } while (off >= off_notify && off < off_counters);
            r.base()[off] = static_cast<std::byte>(rng());
            break;
          }
          case 7: {  // a cursor: a step or two off, or an interesting value
            static constexpr std::size_t cursor_offsets[] = {off_free_head, off_ready_tail, off_free_tail, off_ready_head};
            std::size_t off = cursor_offsets[rng() % std::size(cursor_offsets)];
            auto value = r.get<std::uint32_t>(off);
            value = rng() % 3 == 0 ? interesting_u32(rng)
                                   : value + static_cast<std::uint32_t>(rng() % 5) - 2u;
            r.put<std::uint32_t>(off, value);
            break;
          }
          case 8: {  // a ring entry near a cursor
            const bool free_ring = rng() % 2 == 0;
            std::uint32_t base = free_ring ? (rng() % 2 ? r.free_head() : r.free_tail())
                                           : (rng() % 2 ? r.ready_head() : r.ready_tail());
            std::uint32_t position = base + static_cast<std::uint32_t>(rng() % 5) - 2u;
            std::uint64_t entry = 0;
            switch (rng() % 4) {
              case 0:  // valid tag, interesting slot number
                entry = eng::ring_entry(position, interesting_u32(rng));
                break;
              case 1:  // valid tag, a real slot (maybe in use elsewhere)
                entry = eng::ring_entry(position, static_cast<std::uint32_t>(1 + rng() % kDepth));
                break;
              case 2:  // a real slot with the tag of another lap
                entry = eng::ring_entry(position + (rng() % 2 ? m : -m), static_cast<std::uint32_t>(1 + rng() % kDepth));
                break;
              default:
                entry = rng();
                break;
            }
            (free_ring ? r.free_entry(position) : r.ready_entry(position)).store(entry);
            break;
          }
        }
      }
      if (rng() % 4 == 0) {
        // A dead holder of send_lock, recv_lock or both: the next locker recovers.
        switch (rng() % 3) {
          case 0:
            r.kill_lock_holder(raw_region::side::send);
            break;
          case 1:
            r.kill_lock_holder(raw_region::side::recv);
            break;
          default:
            r.kill_lock_holder(raw_region::side::send);
            r.kill_lock_holder(raw_region::side::recv);
            break;
        }
        ++recoveries;
      }
    }

    for (unsigned k = 0; k < 8; ++k) {
      unsigned p = prio_choices[rng() % std::size(prio_choices)];
      auto m = std::span(message).first(rng() % (kSize + 1));
      switch (rng() % 6) {
        case 0: {
          bool sent = q.try_send(m, p, ec);
          note("try_send", ec, sent);
          break;
        }
        case 1: {
          bool sent = q.send_for(m, p, 1ms, ec);
          note("send_for", ec, sent);
          break;
        }
        case 2: {
          auto got = q.try_receive(buffer, ec);
          note("try_receive", ec, got.has_value());
          if (got) {
            EXPECT_LE(got->size, static_cast<std::size_t>(kSize));
            EXPECT_LE(got->priority, pipc::max_priority);
          }
          break;
        }
        case 3: {
          auto got = q.receive_for(buffer, 1ms, ec);
          note("receive_for", ec, got.has_value());
          if (got) {
            EXPECT_LE(got->size, static_cast<std::size_t>(kSize));
            EXPECT_LE(got->priority, pipc::max_priority);
          }
          break;
        }
        case 4: {
          auto a = q.attributes(ec);
          EXPECT_GE(a.current_messages, 0);
          EXPECT_LE(a.current_messages, kDepth);
          break;
        }
        case 5: {
          auto other = message_queue::open(guard.name(), open_mode::open_only, engine_options(1, 1), ec);
          note("reopen", ec, other.is_open());
          if (ec) {
            ++reopen_refused;
          } else {
            std::vector<std::byte> big(static_cast<std::size_t>(other.attributes().message_size));
            auto got = other.try_receive(big, ec);
            note("reopened try_receive", ec, got.has_value());
            if (got) {
              EXPECT_LE(got->size, big.size());
            }
          }
          break;
        }
      }
    }
    if (HasFailure()) {
      std::printf("[ fuzz     ] first failure in iteration %ld (seed %llu)\n", it, seed);
      break;
    }
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - t0).count();
  std::printf("[ fuzz     ] %ld iterations in %lld ms, %ld with a forced recovery, %ld reopens refused\n", iterations,
              static_cast<long long>(ms), recoveries, reopen_refused);
  for (const auto& [what, n] : outcomes) std::printf("[ fuzz     ]   %-60s %ld\n", what.c_str(), n);
  EXPECT_EQ(foreign_errors, 0) << "errors other than pipc's own; first " << first_foreign;
  RecordProperty("iterations", static_cast<int>(iterations));
  RecordProperty("elapsed_ms", static_cast<int>(ms));
}

}  // namespace
