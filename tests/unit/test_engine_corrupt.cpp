// Corruption tests of the user-space queue engine (backend::shm): the shared region is
// input that any process with access can scribble on, so a garbage header, index, slot
// number, size or count must yield an error (pipc::errc::corrupt_state, or
// not_a_pipc_object / layout_mismatch at open) or a valid result — never a crash, a
// hang, or an access outside the region or the caller's buffer (docs/engine.md,
// "Untrusted memory"). The ASan build runs these with receive buffers of exactly
// message_size bytes on the heap, so an over-long copy is caught.
//
// The tests map /dev/shm/pipc.mq.<name> themselves and write at the offsets of
// src/engine/layout.hpp. Two areas are left alone on purpose:
//   * the robust mutex (header::lock): a lock word that names a live thread is
//     indistinguishable from a holder, so garbage there can block (which
//     EngineCrash.StoppedLockHolderDoesNotStretchDeadlines covers); its unrecoverable
//     state is EngineCrash.UnrecoverableLockIsReportedAsCorruptState;
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

std::span<const std::byte> as_span(const void* p, std::size_t n) { return {static_cast<const std::byte*>(p), n}; }

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
constexpr std::size_t off_bitmap_offset = offsetof(eng::header, bitmap_offset);
constexpr std::size_t off_table_offset = offsetof(eng::header, table_offset);
constexpr std::size_t off_slots_offset = offsetof(eng::header, slots_offset);
constexpr std::size_t off_free_head = offsetof(eng::header, free_head);
constexpr std::size_t off_curmsgs = offsetof(eng::header, curmsgs);
constexpr std::size_t off_next_seq = offsetof(eng::header, next_seq);
constexpr std::size_t off_summary = offsetof(eng::header, summary);
constexpr std::size_t off_lock = offsetof(eng::header, lock);
constexpr std::size_t off_msg_seq = offsetof(eng::header, msg_seq);
constexpr std::size_t off_notify = offsetof(eng::header, notify_pid);
constexpr std::size_t off_counters = offsetof(eng::header, messages_sent);
static_assert(off_free_head == 192 && off_curmsgs == 196, "the offsets docs/engine.md names");
// The notification record lies between notify_pid and the counters; the fuzz leaves it alone.
static_assert(off_lock < off_free_head && off_msg_seq < off_notify && off_notify < off_counters);

// A small queue: 8 slots of 32 bytes.
constexpr long kDepth = 8;
constexpr long kSize = 32;

std::string describe(const std::error_code& ec) { return ec ? ec.category().name() + std::string(":") + ec.message() : "ok"; }

bool is_pipc_error(const std::error_code& ec) { return ec.category() == pipc::category(); }

// ---------------------------------------------------------------------------------------
// At open: the header is checked against the file and the engine's own computation

// Creates a queue (8 × 32) with two messages, and closes it: the name stays.
void make_closed_queue(const std::string& name) {
  auto q = message_queue::open(name, open_mode::create_only, engine_options(kDepth, kSize));
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
  for (std::uint32_t version : {0u, 2u, 0xffffffffu}) {
    {
      raw_region r(guard.name());
      r.put<std::uint32_t>(off_version, version);
    }
    EXPECT_EQ(open_error(guard.name()), pipc::errc::layout_mismatch) << "version " << version;
  }
  {
    raw_region r(guard.name());
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
      {"bitmap_offset 0", off_bitmap_offset, 0},
      {"bitmap_offset past the end", off_bitmap_offset, geo.region_size},
      {"table_offset - 8", off_table_offset, geo.table_offset - 8},
      {"table_offset all ones", off_table_offset, ~std::uint64_t{0}},
      {"slots_offset + 64", off_slots_offset, geo.slots_offset + 64},
      {"slots_offset 0", off_slots_offset, 0},
      {"region_size - 1", off_region_size, geo.region_size - 1},
      {"region_size + 4096", off_region_size, geo.region_size + 4096},
      {"region_size 0", off_region_size, 0},
      {"region_size all ones", off_region_size, ~std::uint64_t{0}},
  };
  // (A message_size that changes nothing else, 31 instead of 32 with the same stride, is
  // a consistent geometry of another queue: the engine cannot and need not tell.)
  for (const auto& c : cases) {
    std::uint64_t saved = 0;
    {
      raw_region r(guard.name());
      saved = r.get<std::uint64_t>(c.offset);
      r.put<std::uint64_t>(c.offset, c.value);
    }
    EXPECT_EQ(open_error(guard.name()), pipc::errc::corrupt_state) << c.field;
    {
      raw_region r(guard.name());
      r.put<std::uint64_t>(c.offset, saved);
    }
  }
  // Restored, it opens and still has its messages.
  auto q = message_queue::open(guard.name(), open_mode::open_only, engine_options(kDepth, kSize));
  std::vector<std::byte> buffer(kSize);
  auto r = q.try_receive(buffer);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->priority, 2u);
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
      {geo.table_offset, pipc::errc::corrupt_state},
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
  const std::size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 8192, 270336, 270400, 300000, 1 << 20};
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
// After open: scribbles on the index, the counts and the slots

// One operation's outcome.
struct outcome {
  std::error_code ec;
  bool done = false;  // sent / received
  std::optional<pipc::received> got;
};

// Queue with messages 0..4 at priorities {2, 7, 2, 7, 0}; they occupy slots 1..5 (the
// free list starts in slot order), so the free list is 6 → 7 → 8, list 7 is 2 → 4,
// list 2 is 1 → 3, list 0 is 5.
constexpr std::array<unsigned, 5> kScribblePriorities = {2, 7, 2, 7, 0};

struct scribble_case {
  const char* what;
  std::function<void(raw_region&)> scribble;
  bool send_must_fail;     // the next send (priority 7) must report corrupt_state
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
    for (std::uint32_t i = 0; i < kScribblePriorities.size(); ++i) {
      std::uint32_t payload[2] = {i, kScribblePriorities[i]};
      ASSERT_TRUE(q.try_send(as_span(payload, sizeof payload), kScribblePriorities[i]));
    }
    raw_region r(guard.name());
    ASSERT_EQ(r.hdr()->free_head, 6u) << "the layout the cases assume";
    ASSERT_EQ(r.table()[7].head, 2u);
    ASSERT_EQ(r.table()[7].tail, 4u);
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

TEST(EngineCorrupt, ScribbledLockedStateGivesErrorsNotCrashes) {
  watchdog dog(60s);
  const std::uint32_t beyond = kDepth + 1;
  const scribble_case cases[] = {
      {"free_head 0 although slots are free", [](raw_region& r) { r.put<std::uint32_t>(off_free_head, 0); }, true, false},
      {"free_head beyond max_messages", [&](raw_region& r) { r.put<std::uint32_t>(off_free_head, beyond); }, true, false},
      {"free_head all ones", [](raw_region& r) { r.put<std::uint32_t>(off_free_head, 0xffffffffu); }, true, false},
      {"free_head names a READY slot", [](raw_region& r) { r.put<std::uint32_t>(off_free_head, 2); }, true, false},
      {"curmsgs beyond max_messages", [&](raw_region& r) { r.put<std::uint32_t>(off_curmsgs, beyond); }, true, true},
      {"curmsgs all ones", [](raw_region& r) { r.put<std::uint32_t>(off_curmsgs, 0xffffffffu); }, true, true},
      {"curmsgs 0 with messages queued", [](raw_region& r) { r.put<std::uint32_t>(off_curmsgs, 0); }, false, false},
      {"curmsgs max_messages (looks full)", [](raw_region& r) { r.put<std::uint32_t>(off_curmsgs, kDepth); }, false,
       false},
      {"curmsgs one more than queued", [](raw_region& r) { r.put<std::uint32_t>(off_curmsgs, 6); }, false, false},
      {"next_seq all ones (wraps)", [](raw_region& r) { r.put<std::uint64_t>(off_next_seq, ~std::uint64_t{0}); }, false,
       false},
      {"next_seq 0", [](raw_region& r) { r.put<std::uint64_t>(off_next_seq, 0); }, false, false},
  };
  for (const auto& c : cases) run_scribble_case(c);
}

TEST(EngineCorrupt, ScribbledBitmapAndSummaryGiveErrorsNotCrashes) {
  watchdog dog(60s);
  auto set_priority_bit = [](raw_region& r, unsigned p) {
    r.bitmap()[p / 64] |= std::uint64_t{1} << (p % 64);
    r.hdr()->summary[p / 4096] |= std::uint64_t{1} << ((p / 64) % 64);
  };
  const scribble_case cases[] = {
      {"bitmap and summary cleared with messages queued",
       [](raw_region& r) {
         std::memset(r.bitmap(), 0, eng::bitmap_words * 8);
         std::memset(r.hdr()->summary, 0, sizeof r.hdr()->summary);
       },
       false, true},
      {"summary bit without a bitmap word", [](raw_region& r) { r.hdr()->summary[7] |= std::uint64_t{1} << 63; }, false,
       true},
      {"bitmap bit of an empty priority (table entry zero)", [&](raw_region& r) { set_priority_bit(r, 30000); }, false,
       true},
      {"bitmap bit of priority 32767, table entry out of range",
       [&](raw_region& r) {
         set_priority_bit(r, 32767);
         r.table()[32767] = {kDepth + 1, kDepth + 1};
       },
       false, true},
      {"bitmap bit whose table entry names a FREE slot",
       [&](raw_region& r) {
         set_priority_bit(r, 20000);
         r.table()[20000] = {7, 7};
       },
       false, true},
      {"bitmap bit whose table entry names a READY slot of another priority",
       [&](raw_region& r) {
         set_priority_bit(r, 9);
         r.table()[9] = {1, 1};
       },
       false, true},
      {"bit of priority 7 cleared (summary kept)", [](raw_region& r) { r.bitmap()[0] &= ~(std::uint64_t{1} << 7); },
       false, false},
      {"bitmap all ones", [](raw_region& r) { std::memset(r.bitmap(), 0xff, eng::bitmap_words * 8); }, false, true},
      {"summary all ones", [](raw_region& r) { std::memset(r.hdr()->summary, 0xff, sizeof r.hdr()->summary); }, false,
       true},
  };
  for (const auto& c : cases) run_scribble_case(c);
}

TEST(EngineCorrupt, ScribbledPriorityTableGivesErrorsNotCrashes) {
  watchdog dog(60s);
  const scribble_case cases[] = {
      {"head 0", [](raw_region& r) { r.table()[7].head = 0; }, false, true},
      {"head beyond max_messages", [](raw_region& r) { r.table()[7].head = kDepth + 1; }, false, true},
      {"head all ones", [](raw_region& r) { r.table()[7].head = 0xffffffffu; }, false, true},
      {"head names a FREE slot", [](raw_region& r) { r.table()[7].head = 6; }, false, true},
      {"head names a slot of priority 2", [](raw_region& r) { r.table()[7].head = 1; }, false, true},
      {"tail 0", [](raw_region& r) { r.table()[7].tail = 0; }, true, false},
      {"tail beyond max_messages", [](raw_region& r) { r.table()[7].tail = kDepth + 1; }, true, false},
      {"tail all ones", [](raw_region& r) { r.table()[7].tail = 0xffffffffu; }, true, false},
      {"tail names the next free slot (a loop)", [](raw_region& r) { r.table()[7].tail = 6; }, false, false},
      {"tail names a slot of another list", [](raw_region& r) { r.table()[7].tail = 5; }, false, false},
      {"head and tail of every priority garbage",
       [](raw_region& r) {
         for (std::uint32_t p = 0; p < eng::priorities; ++p) r.table()[p] = {p * 7919u + 3u, p * 104729u + 11u};
       },
       true, true},
  };
  for (const auto& c : cases) run_scribble_case(c);
}

TEST(EngineCorrupt, ScribbledSlotHeadersGiveErrorsNotCrashes) {
  watchdog dog(60s);
  // Slot 2 is the head of priority 7 (the next to be received); slot 6 the free head.
  const scribble_case cases[] = {
      {"head slot state FREE", [](raw_region& r) { r.slot(2)->state.store(eng::slot_free); }, false, true},
      {"head slot state 2", [](raw_region& r) { r.slot(2)->state.store(2); }, false, true},
      {"head slot state all ones", [](raw_region& r) { r.slot(2)->state.store(0xffffffffu); }, false, true},
      {"head slot size message_size + 1", [](raw_region& r) { r.slot(2)->size = kSize + 1; }, false, true},
      {"head slot size 4096", [](raw_region& r) { r.slot(2)->size = 4096; }, false, true},
      {"head slot size all ones", [](raw_region& r) { r.slot(2)->size = 0xffffffffu; }, false, true},
      {"head slot size message_size (valid)", [](raw_region& r) { r.slot(2)->size = kSize; }, false, false},
      {"head slot next beyond max_messages", [](raw_region& r) { r.slot(2)->next = kDepth + 1; }, false, true},
      {"head slot next all ones", [](raw_region& r) { r.slot(2)->next = 0xffffffffu; }, false, true},
      {"head slot next to itself", [](raw_region& r) { r.slot(2)->next = 2; }, false, false},
      {"head slot next to a FREE slot", [](raw_region& r) { r.slot(2)->next = 7; }, false, false},
      {"head slot priority of another list", [](raw_region& r) { r.slot(2)->priority = 2; }, false, true},
      {"head slot priority 32768", [](raw_region& r) { r.slot(2)->priority = eng::priorities; }, false, true},
      {"head slot priority all ones", [](raw_region& r) { r.slot(2)->priority = 0xffffffffu; }, false, true},
      {"head slot seq all ones", [](raw_region& r) { r.slot(2)->seq = ~std::uint64_t{0}; }, false, false},
      {"free head slot state READY", [](raw_region& r) { r.slot(6)->state.store(eng::slot_ready); }, true, false},
      {"free head slot next beyond max_messages", [](raw_region& r) { r.slot(6)->next = kDepth + 1; }, true, false},
      {"free head slot next all ones", [](raw_region& r) { r.slot(6)->next = 0xffffffffu; }, true, false},
      {"free head slot next to a READY slot", [](raw_region& r) { r.slot(6)->next = 1; }, false, false},
      {"free head slot next to itself", [](raw_region& r) { r.slot(6)->next = 6; }, false, false},
      {"tail slot next beyond max_messages", [](raw_region& r) { r.slot(4)->next = kDepth + 1; }, false, false},
      {"every slot header all ones",
       [](raw_region& r) {
         for (std::uint32_t n = 1; n <= kDepth; ++n) std::memset(static_cast<void*>(r.slot(n)), 0xff, sizeof(eng::slot_header));
       },
       true, true},
  };
  for (const auto& c : cases) run_scribble_case(c);
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

// The geometry is read once, at open: scribbling it afterwards changes nothing for open
// descriptors (they use their own copy), and a new open refuses the region.
TEST(EngineCorrupt, GeometryScribbledAfterOpenIsNeverReread) {
  watchdog dog(60s);
  unlink_guard guard(unique_name("geo-after"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
  raw_region r(guard.name());
  r.put<std::uint64_t>(off_max_messages, eng::max_max_messages);
  r.put<std::uint64_t>(off_message_size, eng::max_message_size);
  r.put<std::uint64_t>(off_slot_stride, std::uint64_t{1} << 40);
  r.put<std::uint64_t>(off_slots_offset, std::uint64_t{1} << 40);
  r.put<std::uint64_t>(off_region_size, std::uint64_t{1} << 41);
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
  EXPECT_EQ(open_error(guard.name()), pipc::errc::corrupt_state);
}

// ---------------------------------------------------------------------------------------
// Recovery rebuilds the index from the slots' commit words

TEST(EngineCorrupt, RecoveryRepairsAScribbledIndex) {
  watchdog dog(60s);
  unlink_guard guard(unique_name("repair"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
  for (std::uint32_t i = 0; i < kScribblePriorities.size(); ++i) {
    std::uint32_t payload[2] = {i, kScribblePriorities[i]};
    ASSERT_TRUE(q.try_send(as_span(payload, sizeof payload), kScribblePriorities[i]));
  }
  raw_region r(guard.name());
  // Everything derived is garbage: bitmap, summary, table, free list, count, and the
  // links of every slot.
  std::mt19937_64 rng(7);
  for (std::size_t w = 0; w < eng::bitmap_words; ++w) r.bitmap()[w] = rng();
  for (auto& s : r.hdr()->summary) s = rng();
  for (std::uint32_t p = 0; p < eng::priorities; ++p) r.table()[p] = {static_cast<std::uint32_t>(rng()), static_cast<std::uint32_t>(rng())};
  r.put<std::uint32_t>(off_free_head, 0xdeadbeef);
  r.put<std::uint32_t>(off_curmsgs, 0xdeadbeef);
  for (std::uint32_t n = 1; n <= kDepth; ++n) r.slot(n)->next = static_cast<std::uint32_t>(rng());
  r.kill_lock_holder();

  std::vector<std::byte> buffer(kSize);
  std::vector<std::uint32_t> order;
  for (;;) {
    std::error_code ec;
    auto got = q.try_receive(buffer, ec);
    ASSERT_FALSE(ec) << "after recovery: " << describe(ec);
    if (!got) break;
    std::uint32_t payload[2];
    std::memcpy(payload, buffer.data(), sizeof payload);
    EXPECT_EQ(got->priority, payload[1]);
    order.push_back(payload[0]);
    ASSERT_LE(order.size(), 5u);
  }
  EXPECT_EQ(order, (std::vector<std::uint32_t>{1, 3, 0, 2, 4}));
  // All 8 slots free, each once.
  for (std::uint32_t i = 0; i < kDepth; ++i) {
    ASSERT_TRUE(q.try_send(as_span(&i, sizeof i), 0)) << "slot lost after recovery";
  }
  EXPECT_FALSE(q.try_send(as_span("x", 1), 0)) << "a slot listed twice after recovery";
}

TEST(EngineCorrupt, RecoveryFreesSlotsWithGarbageFields) {
  watchdog dog(60s);
  unlink_guard guard(unique_name("repair-slots"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
  for (std::uint32_t i = 0; i < kScribblePriorities.size(); ++i) {
    std::uint32_t payload[2] = {i, kScribblePriorities[i]};
    ASSERT_TRUE(q.try_send(as_span(payload, sizeof payload), kScribblePriorities[i]));
  }
  raw_region r(guard.name());
  r.slot(1)->priority = eng::priorities;       // message 0: impossible priority
  r.slot(4)->size = kSize + 1;                 // message 3: too long
  r.slot(7)->state.store(0x1234);              // a free slot with a garbage state
  r.slot(8)->state.store(eng::slot_ready);     // a free slot that claims a message...
  r.slot(8)->priority = 7;                     // ...with valid fields: recovery must keep it
  r.slot(8)->size = 8;
  r.slot(8)->seq = 1;                          // older than every real message
  std::uint32_t forged[2] = {42, 7};
  std::memcpy(reinterpret_cast<std::byte*>(r.slot(8)) + sizeof(eng::slot_header), forged, sizeof forged);
  r.kill_lock_holder();

  std::vector<std::byte> buffer(kSize);
  std::vector<std::uint32_t> order;
  for (;;) {
    std::error_code ec;
    auto got = q.try_receive(buffer, ec);
    ASSERT_FALSE(ec) << "after recovery: " << describe(ec);
    if (!got) break;
    ASSERT_LE(got->size, static_cast<std::size_t>(kSize));
    std::uint32_t payload[2];
    std::memcpy(payload, buffer.data(), sizeof payload);
    order.push_back(payload[0]);
    ASSERT_LE(order.size(), 8u);
  }
  // Priority 7: the forged slot (seq 1) first, then message 1; priority 2: message 2;
  // priority 0: message 4. Messages 0 and 3 had garbage fields and were dropped.
  EXPECT_EQ(order, (std::vector<std::uint32_t>{42, 1, 2, 4}));
  for (std::uint32_t i = 0; i < kDepth; ++i) {
    ASSERT_TRUE(q.try_send(as_span(&i, sizeof i), 0)) << "slot lost after recovery";
  }
  EXPECT_FALSE(q.try_send(as_span("x", 1), 0)) << "a slot listed twice after recovery";
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
    outcomes[std::string(op) + (ec ? " " + describe(ec) : done ? " ok" : " nothing")]++;
  };

  auto t0 = steady_clock::now();
  for (long it = 0; it < iterations; ++it) {
    std::error_code ec;
    message_queue::unlink(guard.name(), pipc::backend::shm, ec);
    auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(kDepth, kSize));
    std::vector<std::byte> buffer(kSize);
    std::array<std::byte, kSize> message{};
    for (auto& b : message) b = static_cast<std::byte>(rng());
    std::vector<unsigned> used;
    for (unsigned k = static_cast<unsigned>(rng() % (kDepth + 1)); k-- > 0;) {
      unsigned p = rng() % 5 == 0 ? static_cast<unsigned>(rng() % eng::priorities) : prio_choices[rng() % std::size(prio_choices)];
      used.push_back(p);
      q.try_send(std::span(message).first(rng() % (kSize + 1)), p);
    }
    for (unsigned k = static_cast<unsigned>(rng() % 3); k-- > 0;) q.try_receive(buffer);

    {
      raw_region r(guard.name());
      for (unsigned k = 1 + static_cast<unsigned>(rng() % 6); k-- > 0;) {
        switch (rng() % 7) {
          case 0: {  // locked state: free_head, curmsgs, next_seq, summary
            std::size_t off = off_free_head + (rng() % ((off_summary + sizeof(eng::header::summary) - off_free_head) / 4)) * 4;
            r.put<std::uint32_t>(off, interesting_u32(rng));
            break;
          }
          case 1: {  // bitmap: a bit of a used priority, or a random word
            if (!used.empty() && rng() % 2 == 0) {
              unsigned p = used[rng() % used.size()];
              r.bitmap()[p / 64] ^= std::uint64_t{1} << (p % 64);
            } else {
              r.bitmap()[rng() % eng::bitmap_words] = rng() % 2 ? rng() : std::uint64_t{1} << (rng() % 64);
            }
            break;
          }
          case 2: {  // table: head or tail of a used priority, or of any
            unsigned p = !used.empty() && rng() % 2 == 0 ? used[rng() % used.size()] : static_cast<unsigned>(rng() % eng::priorities);
            (rng() % 2 ? r.table()[p].head : r.table()[p].tail) = interesting_u32(rng);
            break;
          }
          case 3: {  // a slot header field
            auto n = static_cast<std::uint32_t>(1 + rng() % kDepth);
            std::size_t field = (rng() % 6) * 4;  // state, next, size, priority, seq (2 words)
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
            std::size_t off = (rng() % (off_lock / 4)) * 4;
            r.put<std::uint32_t>(off, interesting_u32(rng));
            break;
          }
          case 6: {  // any byte outside the lock and the notification record
            std::size_t off = 0;
            do {
              off = off_free_head + rng() % (r.size() - off_free_head);
            } while (off >= off_notify && off < off_counters);
            r.base()[off] = static_cast<std::byte>(rng());
            break;
          }
        }
      }
      if (rng() % 4 == 0) {
        r.kill_lock_holder();
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
