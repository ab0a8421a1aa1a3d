// fuzz_region: an engine queue whose shared region the fuzzer writes.
//
// Each input creates a small, valid queue through the public API (backend::shm) and
// then runs a program of operations read from the input: sends and receives (try,
// timed with a deadline 100 µs ahead, on either of two open descriptors),
// attributes, O_NONBLOCK, notification registration (none, signal, thread) and its
// cancellation, the poll descriptor, the engine's statistics, close and reopen, and
// patches: bytes written at offsets of the queue's file in /dev/shm (the header with
// its locks and cursors, the rings, the side heap, the slots), by offsets relative to
// the queue just created so that the target stays meaningful when the layout changes,
// and changes of the file's size. The patches play a hostile process that can write
// the region; the descriptors opened before a patch see it as their live queue
// changing, those opened after it as a region to validate.
//
// Invariants (docs/engine.md, "Untrusted memory"; DESIGN.md, "Trust"):
//  * every call returns, within its deadline or a try's patience (libFuzzer's -timeout
//    catches a hang), and neither crashes nor touches memory outside the region
//    (ASan) nor has undefined behaviour (UBSan);
//  * every error is one that the operation documents, or one of pipc::errc;
//  * until the first patch the queue behaves as its model: a try_send succeeds iff
//    there is room, a receive returns the oldest message of the highest priority,
//    attributes show the depth.
// Nothing is left in /dev/shm: the queue is unlinked at the end of every input.
#include "fuzz_support.hpp"

#include "engine/layout.hpp"
#include "engine/queue.hpp"
#include "error_util.hpp"

#include <pipc/pipc.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace {

using namespace pipc;
using namespace std::chrono_literals;
using pipc::fuzz::describe;
using pipc::fuzz::documented_queue_error;

constexpr int max_operations = 24;

// The queue as a model: valid until the first patch.
struct model_message {
  unsigned priority;
  std::vector<std::byte> bytes;
};

struct model {
  bool valid = true;
  long capacity = 0;
  std::vector<model_message> messages;  // in arrival order

  // The message a receive must return: the oldest of the highest priority.
  std::size_t next() const {
    std::size_t best = 0;
    for (std::size_t i = 1; i < messages.size(); ++i) {
      if (messages[i].priority > messages[best].priority) best = i;
    }
    return best;
  }
};

struct session {
  std::string name;
  std::string path;  // the queue's file in /dev/shm
  long max_messages = 0;
  long message_size = 0;
  std::array<message_queue, 2> q;
  std::array<pipc::access, 2> how{pipc::access::read_write, pipc::access::read_write};
  model m;
};

const std::string& queue_name() {
  static const std::string name = pipc::fuzz::own_prefix("region");
  return name;
}

mq_options options(const session& s, pipc::access how, bool nonblocking) {
  mq_options o;
  o.backend = backend::shm;
  o.max_messages = s.max_messages;
  o.message_size = s.message_size;
  o.access = how;
  o.nonblocking = nonblocking;
  o.spin = 0ns;  // a spin only costs the fuzzer time
  return o;
}

unsigned fuzzed_priority(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      return 0;
    case 1:
      return in.ConsumeIntegralInRange<unsigned>(0, 3);
    case 2:
      return in.ConsumeIntegralInRange<unsigned>(0, max_priority);
    default:
      return in.ConsumeIntegral<unsigned>();  // mostly invalid (EINVAL)
  }
}

// The notification signal: ignored, and not one that libFuzzer handles (SIGUSR1 and
// SIGUSR2 end its run).
int notify_signo() { return SIGRTMIN + 3; }

// ---- the operations ----

void check_error(const char* op, const std::error_code& ec, std::initializer_list<int> errnos) {
  PIPC_FUZZ_CHECK(!ec || documented_queue_error(ec, errnos), std::string(op) + ": " + describe(ec));
}

void do_send(session& s, FuzzedDataProvider& in, message_queue& q, bool model_applies) {
  auto size = in.ConsumeIntegralInRange<std::size_t>(0, std::size_t(s.message_size) + 1);
  unsigned priority = fuzzed_priority(in);
  std::vector<std::byte> bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = std::byte(in.ConsumeIntegral<std::uint8_t>());
  int how = in.ConsumeIntegralInRange<int>(0, 2);
  std::error_code ec;
  bool sent = false;
  switch (how) {
    case 0:
      sent = q.try_send(bytes, priority, ec);
      break;
    case 1:
      sent = q.send_for(bytes, priority, 100us, ec);
      break;
    default:
      sent = q.send_until(bytes, priority, std::chrono::system_clock::now() + 100us, ec);
      break;
  }
  PIPC_FUZZ_TRACE("send q%d size %zu prio %u how %d: sent %d %s\n", int(&q - &s.q[0]), size, priority, how, sent,
                  describe(ec).c_str());
  check_error("send", ec, {EMSGSIZE, EINVAL, EBADF});
  PIPC_FUZZ_CHECK(!(sent && ec));
  if (!model_applies) return;
  model& m = s.m;
  if (!q.is_open() || s.how[std::size_t(&q - &s.q[0])] == pipc::access::read_only) {
    PIPC_FUZZ_CHECK(ec == std::errc::bad_file_descriptor, describe(ec));
  } else if (size > std::size_t(s.message_size)) {
    PIPC_FUZZ_CHECK(ec == std::errc::message_size, describe(ec));
  } else if (priority > max_priority) {
    PIPC_FUZZ_CHECK(ec == std::errc::invalid_argument, describe(ec));
  } else if (long(m.messages.size()) < m.capacity) {
    PIPC_FUZZ_CHECK(sent, "a send with room failed: " + describe(ec));
    m.messages.push_back({priority, std::move(bytes)});
  } else {
    PIPC_FUZZ_CHECK(!sent && !ec, "a send to a full queue: " + describe(ec));
  }
}

void do_receive(session& s, FuzzedDataProvider& in, message_queue& q, bool model_applies) {
  std::size_t capacity = in.ConsumeBool() ? std::size_t(s.message_size)
                                          : in.ConsumeIntegralInRange<std::size_t>(0, std::size_t(s.message_size) + 8);
  std::vector<std::byte> buffer(capacity);
  int how = in.ConsumeIntegralInRange<int>(0, 2);
  std::error_code ec;
  std::optional<received> r;
  switch (how) {
    case 0:
      r = q.try_receive(buffer, ec);
      break;
    case 1:
      r = q.receive_for(buffer, 100us, ec);
      break;
    default:
      r = q.receive_until(buffer, std::chrono::steady_clock::now() + 100us, ec);
      break;
  }
  PIPC_FUZZ_TRACE("receive q%d capacity %zu how %d: %s size %zu prio %u %s\n", int(&q - &s.q[0]), capacity, how,
                  r ? "got" : "none", r ? r->size : 0, r ? r->priority : 0, describe(ec).c_str());
  check_error("receive", ec, {EMSGSIZE, EBADF});
  PIPC_FUZZ_CHECK(!(r && ec));
  if (r) {
    // Whatever the region says, a receive reports what it wrote into the buffer.
    PIPC_FUZZ_CHECK(r->size <= capacity && r->size <= std::size_t(s.message_size) && r->priority <= max_priority);
  }
  if (!model_applies) return;
  model& m = s.m;
  if (!q.is_open() || s.how[std::size_t(&q - &s.q[0])] == pipc::access::write_only) {
    PIPC_FUZZ_CHECK(ec == std::errc::bad_file_descriptor, describe(ec));
  } else if (capacity < std::size_t(s.message_size)) {
    PIPC_FUZZ_CHECK(ec == std::errc::message_size, describe(ec));
  } else if (m.messages.empty()) {
    PIPC_FUZZ_CHECK(!r && !ec, "a receive from an empty queue: " + describe(ec));
  } else {
    PIPC_FUZZ_CHECK(r.has_value(), "a receive with messages queued failed: " + describe(ec));
    std::size_t i = m.next();
    const model_message& want = m.messages[i];
    PIPC_FUZZ_CHECK(r->priority == want.priority && r->size == want.bytes.size() &&
                        std::equal(want.bytes.begin(), want.bytes.end(), buffer.begin()),
                    "a receive returned another message than the oldest of the highest priority");
    m.messages.erase(m.messages.begin() + std::ptrdiff_t(i));
  }
}

void do_attributes(session& s, message_queue& q, bool model_applies) {
  std::error_code ec;
  mq_attributes a = q.attributes(ec);
  PIPC_FUZZ_TRACE("attributes q%d: %ld %ld %ld %d %s (model %zu)\n", int(&q - &s.q[0]), a.max_messages,
                  a.message_size, a.current_messages, a.nonblocking, describe(ec).c_str(), s.m.messages.size());
  check_error("attributes", ec, {EBADF});
  if (!ec) {
    // The geometry is the engine's own copy, taken at open.
    PIPC_FUZZ_CHECK(a.max_messages == s.max_messages && a.message_size == s.message_size);
    PIPC_FUZZ_CHECK(a.current_messages >= 0 && a.current_messages <= a.max_messages,
                    "current_messages " + std::to_string(a.current_messages));
  }
  if (model_applies) {
    if (!q.is_open()) {
      PIPC_FUZZ_CHECK(ec == std::errc::bad_file_descriptor, describe(ec));
    } else {
      PIPC_FUZZ_CHECK(!ec && a.current_messages == long(s.m.messages.size()));
    }
  }
}

void do_notify(FuzzedDataProvider& in, message_queue& q) {
  std::error_code ec;
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      q.notify_none(ec);
      break;
    case 1:
      q.notify_signal(notify_signo(), in.ConsumeIntegral<int>(), ec);
      break;
    case 2:
      q.notify_thread([] {}, ec);
      break;
    default:
      q.cancel_notification(ec);
      break;
  }
  PIPC_FUZZ_TRACE("notify: %s\n", describe(ec).c_str());
  check_error("notify", ec, {EBADF, EBUSY, EINVAL, ENOMEM, EAGAIN});
}

void do_stats(session& s) {
  // The engine's statistics (what the CLI shows), read without the queue's lock.
  engine::open_request request;
  request.name = s.name;
  request.flags = O_RDONLY;
  std::unique_ptr<engine::queue> raw;
  int e = engine::queue::open(request, raw);
  PIPC_FUZZ_CHECK(e == 0 || (e > detail::errc_base && e <= detail::encode(errc::corrupt_state)) || pipc::fuzz::one_of(e, {ENOENT, EACCES, ENOMEM, EMFILE, ENFILE}),
                  "engine open: " + std::to_string(e));
  PIPC_FUZZ_CHECK(!s.m.valid || e == 0, "opening an intact queue: " + std::to_string(e));
  if (e != 0) return;
  engine::queue_stats st = raw->stats();
  PIPC_FUZZ_CHECK(st.max_messages == std::uint64_t(s.max_messages) &&
                  st.message_size == std::uint64_t(s.message_size));
  if (s.m.valid) PIPC_FUZZ_CHECK(st.current_messages == s.m.messages.size());
}

void do_poll(message_queue& q) {
  int fd = q.native_handle();
  if (fd < 0) return;
  pollfd p{fd, POLLIN | POLLOUT, 0};
  int n = ::poll(&p, 1, 0);
  PIPC_FUZZ_CHECK(n >= 0, std::strerror(errno));
}

void do_reopen(session& s, FuzzedDataProvider& in, int k) {
  auto how = static_cast<pipc::access>(in.ConsumeIntegralInRange<int>(0, 2));
  std::error_code ec;
  s.q[k] = message_queue::open(s.name, open_mode::open_only, options(s, how, in.ConsumeBool()), ec);
  s.how[std::size_t(k)] = how;
  PIPC_FUZZ_TRACE("reopen q%d: %s\n", k, describe(ec).c_str());
  check_error("open", ec, {ENOENT, EACCES, EINVAL, ENOMEM, EMFILE, ENFILE});
  PIPC_FUZZ_CHECK(bool(s.q[k]) == !ec);
  PIPC_FUZZ_CHECK(!s.m.valid || !ec, "reopening an intact queue: " + describe(ec));
}

// PIPC_FUZZ_SPARE_KNOWN=1 keeps the fuzzer away from what is known to break the engine
// and is not fixed yet (tests/fuzz/crashes/README.md), for a run that should not stop
// there: it does not write the header's two lock words (F2: a forged owner that is a
// live thread makes notification registration, its cancellation and close wait for
// ever; a forged dead owner is taken over, as it should be).
bool spare_known() {
  static const bool spare = [] {
    const char* v = std::getenv("PIPC_FUZZ_SPARE_KNOWN");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  return spare;
}

bool touches_a_lock(std::uint64_t offset, std::uint64_t n) {
  for (std::size_t at : {offsetof(engine::header, send_lock), offsetof(engine::header, recv_lock)}) {
    if (offset < at + sizeof(engine::header::send_lock) && at < offset + n) return true;
  }
  return false;
}

// Values worth writing into a word of the header: bounds, our own pid (the header
// records registrants and waiters by pid, and a lock word its owner's tid), and bits
// 30 and 31 (a lock word's waiters bit and reserved bit).
std::uint32_t telling_value(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 9)) {
    case 0:
      return 0;
    case 1:
      return 1;
    case 2:
      return 0xffffffffu;
    case 3:
      return 0x7fffffffu;
    case 4:
      return 0x80000000u;
    case 5:
      return static_cast<std::uint32_t>(::getpid());
    case 6:
      return 0x40000000u | static_cast<std::uint32_t>(::getpid());  // waiters | tid
    case 7:
      return in.ConsumeIntegralInRange<std::uint32_t>(0, 64);
    default:
      return in.ConsumeIntegral<std::uint32_t>();
  }
}

// Writes the fuzzer's bytes into the queue's file, or changes its size. Offsets are
// relative to the file of the queue just created: a 32-bit word of the header (where
// its live fields are), anywhere in the header's share of the region, anywhere in the
// rings and the side heap, a word of a side heap entry, anywhere, or counted from the
// end (the slots).
void do_patch(session& s, FuzzedDataProvider& in) {
  int fd = ::open(s.path.c_str(), O_RDWR | O_CLOEXEC);
  PIPC_FUZZ_CHECK(fd >= 0, s.path + ": " + std::strerror(errno));
  struct ::stat st {};
  PIPC_FUZZ_CHECK(::fstat(fd, &st) == 0);
  auto size = static_cast<std::uint64_t>(st.st_size);
  s.m.valid = false;
  const engine::geometry geo = engine::compute_geometry(std::uint64_t(s.max_messages), std::uint64_t(s.message_size));
  int kind = in.ConsumeIntegralInRange<int>(0, 9);
  if (kind == 9 || size < geo.slots_offset) {
    // Resize: grow (harmless to the engine, which keeps its own geometry) or shrink.
    auto to = in.ConsumeIntegralInRange<std::uint64_t>(0, 2 * std::max<std::uint64_t>(size, 4096));
    PIPC_FUZZ_TRACE("patch: size %llu -> %llu\n", (unsigned long long)size, (unsigned long long)to);
    PIPC_FUZZ_CHECK(::ftruncate(fd, off_t(to)) == 0, std::strerror(errno));
    ::close(fd);
    return;
  }
  std::uint64_t offset = 0;
  std::vector<std::uint8_t> bytes;
  switch (kind) {
    case 0:
    case 1:
    case 2:
    case 3: {
      // A word of the header, or of a side heap entry (its slot, priority or seq).
      offset = kind < 3 ? 4 * in.ConsumeIntegralInRange<std::uint64_t>(0, sizeof(engine::header) / 4 - 1)
                        : geo.heap_offset + 4 * in.ConsumeIntegralInRange<std::uint64_t>(
                                                    0, std::uint64_t(s.max_messages) * sizeof(engine::side_entry) / 4 - 1);
      std::uint32_t v = telling_value(in);
      bytes.resize(4);
      std::memcpy(bytes.data(), &v, 4);
      break;
    }
    case 4:
      offset = in.ConsumeIntegralInRange<std::uint64_t>(0, engine::header_size - 1);
      break;
    case 5:
      offset = in.ConsumeIntegralInRange<std::uint64_t>(geo.free_ring_offset, geo.slots_offset - 1);
      break;
    case 6:
      offset = in.ConsumeIntegralInRange<std::uint64_t>(0, size - 1);
      break;
    default:
      offset = size - 1 - in.ConsumeIntegralInRange<std::uint64_t>(0, size - 1);
      break;
  }
  if (bytes.empty()) bytes = in.ConsumeBytes<std::uint8_t>(in.ConsumeIntegralInRange<std::size_t>(1, 16));
  std::size_t n = std::min<std::uint64_t>(bytes.size(), size - offset);
  PIPC_FUZZ_TRACE("patch: %zu bytes at %llu\n", n, (unsigned long long)offset);
  if (n > 0 && !(spare_known() && touches_a_lock(offset, n))) {
    PIPC_FUZZ_CHECK(::pwrite(fd, bytes.data(), n, off_t(offset)) == ssize_t(n), std::strerror(errno));
  }
  ::close(fd);
}

void run(FuzzedDataProvider& in) {
  session s;
  s.name = queue_name();
  s.path = "/dev/shm/pipc.mq." + s.name.substr(1);
  s.max_messages = in.ConsumeIntegralInRange<long>(1, 8);
  s.message_size = in.ConsumeIntegralInRange<long>(1, 64);
  s.m.capacity = s.max_messages;

  std::error_code ec;
  message_queue::unlink(s.name, backend::shm, ec);  // a previous input's, if it crashed
  s.q[0] = message_queue::open(s.name, open_mode::create_only, options(s, pipc::access::read_write, false), ec);
  PIPC_FUZZ_CHECK(!ec && s.q[0], "creating the queue: " + describe(ec));

  for (int n = 0; n < max_operations && in.remaining_bytes() > 0; ++n) {
    int k = in.ConsumeIntegralInRange<int>(0, 1);
    PIPC_FUZZ_TRACE("[%d] q%d%s: ", n, k, s.q[k].is_open() ? "" : " (closed)");
    message_queue& q = s.q[k];
    // The model holds until the first patch, for both descriptors, open or closed.
    bool model_applies = s.m.valid;
    switch (in.ConsumeIntegralInRange<int>(0, 11)) {
      case 0:
      case 1:
        do_send(s, in, q, model_applies);
        break;
      case 2:
      case 3:
        do_receive(s, in, q, model_applies);
        break;
      case 4:
        do_attributes(s, q, model_applies);
        break;
      case 5:
        q.set_nonblocking(in.ConsumeBool(), ec);
        check_error("set_nonblocking", ec, {EBADF});
        PIPC_FUZZ_TRACE("set_nonblocking: %s\n", describe(ec).c_str());
        break;
      case 6:
        do_notify(in, q);
        break;
      case 7:
        do_stats(s);
        break;
      case 8:
        do_poll(q);
        break;
      case 9:
        if (in.ConsumeBool()) {
          q.close();
          PIPC_FUZZ_TRACE("close\n");
        } else {
          do_reopen(s, in, k);
        }
        break;
      default:
        do_patch(s, in);
        break;
    }
  }
  for (message_queue& q : s.q) q.close();
  message_queue::unlink(s.name, backend::shm, ec);
  PIPC_FUZZ_CHECK(!ec, "unlink: " + describe(ec));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  pipc::fuzz::remove_stale_leftovers("region");
  ::signal(notify_signo(), SIG_IGN);
  // queue_name() first, so that its string outlives the exit handler.
  static const std::string& name = queue_name();
  std::atexit([] { pipc::fuzz::remove_leftovers(name); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  run(in);
  return 0;
}
