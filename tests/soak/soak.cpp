// pipc-soak: the chaos soak of the engine (backend::shm).
//
// Producers (sending by copy and by loan), consumers and "ops" workers run as separate
// processes (fork) on a few engine queues while the supervisor, which is also the
// killer and the auditor, SIGKILLs random workers at random moments and restarts them
// as new incarnations, or SIGSTOPs them for 1-200 ms. Ops workers open and close the queues, create, use and
// unlink temporary queues, register and cancel notifications and start the polling
// helper, so that kills also land there. At the end every message is audited from
// ledgers in shared memory that survive the death of any worker. docs/soak.md explains
// the accounting and what counts as a failure.
//
// Uses only pipc's public API. Single-threaded supervisor; workers are forked from it.

#include <pipc/pipc.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;

// ---- configuration -----------------------------------------------------------------

constexpr int kMaxProducers = 16;
constexpr int kMaxConsumers = 16;
constexpr int kMaxOps = 8;
constexpr int kMaxQueues = 8;
constexpr std::size_t kMaxMessage = 4096;
constexpr int kLevels = 5;
// Several priorities: the first one to arrive at an empty queue takes the ready ring,
// the others go to the side index (docs/engine.md, "How a message travels").
constexpr unsigned kPriorities[kLevels] = {0, 1, 9, 300, 32767};
constexpr std::uint64_t kSeqCapacity = std::uint64_t{1} << 28;  // sequence numbers per producer
constexpr std::uint32_t kMagic = 0x534f414bU;                    // "SOAK"

struct config {
  double seconds = 40;
  int producers = 4;
  int consumers = 4;
  int ops = 2;
  int queues = 3;
  std::uint64_t seed = 0;
  double kill_interval_ms = 20;  // mean time between two killer actions
  int stop_percent = 25;         // share of actions that are SIGSTOP/SIGCONT rather than SIGKILL
  double hang_limit = 10;        // seconds of stall that count as a hang
  bool quiet = false;
  // Test of the audit itself: consumer 0 fakes a fault every 1000th receive.
  enum class fault { none, lose, duplicate, tear } inject = fault::none;
};
config cfg;

struct queue_shape {
  long depth;
  long size;
};
// Small queues block often (full and empty); queue 1 carries large messages.
queue_shape shape_of(int q) {
  static constexpr queue_shape shapes[] = {{8, 256}, {64, 4096}, {4, 1024}, {16, 512}};
  return shapes[q % 4];
}

std::string run_tag;  // "soak<pid>": part of every name this run creates
std::string queue_name(int q) { return "/pipc-" + run_tag + "-q" + std::to_string(q); }
std::string temp_name(int w, std::uint64_t n) {
  return "/pipc-" + run_tag + "-t" + std::to_string(w) + "-" + std::to_string(n);
}

pipc::mq_options options_of(int q, pipc::access how) {
  pipc::mq_options o;
  o.backend = pipc::backend::shm;
  o.access = how;
  o.max_messages = shape_of(q).depth;
  o.message_size = shape_of(q).size;
  return o;
}

// ---- messages ----------------------------------------------------------------------

constexpr std::uint64_t mix(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::uint64_t checksum(const std::byte* p, std::size_t n) {
  std::uint64_t h = 0x6a09e667f3bcc909ULL ^ n;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = mix(h ^ w);
  }
  for (; i < n; ++i) h = mix(h ^ static_cast<std::uint64_t>(p[i]));
  return h;
}

// Every message starts with this header; the payload after it is a pattern of
// (producer, seq) and is covered by payload_sum; head_sum covers the header.
struct msg_head {
  std::uint32_t magic;
  std::uint16_t producer;
  std::uint8_t queue;
  std::uint8_t level;  // index into kPriorities
  std::uint32_t incarnation;
  std::uint32_t size;  // the whole message, header included
  std::uint64_t seq;
  std::uint64_t payload_sum;
  std::uint64_t head_sum;
};
static_assert(sizeof(msg_head) == 40);

std::uint64_t head_sum_of(const msg_head& h) {
  return checksum(reinterpret_cast<const std::byte*>(&h), offsetof(msg_head, head_sum));
}

int level_of(std::uint32_t producer, std::uint64_t seq) {
  auto r = mix(seq * 0x100000001b3ULL + producer + 7) % 100;
  return r < 50 ? 0 : r < 70 ? 1 : r < 85 ? 2 : r < 95 ? 3 : 4;
}

std::size_t size_of(std::uint32_t producer, std::uint64_t seq, long queue_size) {
  auto r = mix(seq ^ (std::uint64_t{producer} << 48) ^ 0x51);
  auto room = static_cast<std::uint64_t>(queue_size) - sizeof(msg_head);
  if (r % 10 == 0) return sizeof(msg_head) + (r >> 8) % (room + 1);  // large
  return sizeof(msg_head) + (r >> 8) % std::min<std::uint64_t>(57, room + 1);
}

std::size_t build_message(std::byte* out, std::uint32_t producer, int q, std::uint32_t incarnation,
                          std::uint64_t seq) {
  std::size_t size = size_of(producer, seq, shape_of(q).size);
  std::uint64_t pattern = mix(seq * 31 + producer);
  for (std::size_t i = sizeof(msg_head); i < size; i += 8) {
    std::uint64_t w = mix(pattern + i);
    std::memcpy(out + i, &w, std::min<std::size_t>(8, size - i));
  }
  msg_head h{};
  h.magic = kMagic;
  h.producer = static_cast<std::uint16_t>(producer);
  h.queue = static_cast<std::uint8_t>(q);
  h.level = static_cast<std::uint8_t>(level_of(producer, seq));
  h.incarnation = incarnation;
  h.size = static_cast<std::uint32_t>(size);
  h.seq = seq;
  h.payload_sum = checksum(out + sizeof h, size - sizeof h);
  h.head_sum = head_sum_of(h);
  std::memcpy(out, &h, sizeof h);
  return size;
}

// A whole, untorn message of this run for queue q: header, sums, size and priority agree.
// `size` and `priority` are what receive reported (or, for a receive cut short by a kill,
// the header's own size and priority).
bool valid_message(const std::byte* in, std::size_t size, unsigned priority, int q, msg_head& h) {
  if (size < sizeof h) return false;
  std::memcpy(&h, in, sizeof h);
  return h.magic == kMagic && h.head_sum == head_sum_of(h) && h.size == size && h.queue == q &&
         h.producer < cfg.producers && h.level < kLevels && kPriorities[h.level] == priority &&
         h.level == level_of(h.producer, h.seq) && size == size_of(h.producer, h.seq, shape_of(q).size) &&
         h.payload_sum == checksum(in + sizeof h, size - sizeof h);
}

// ---- ledgers in shared memory --------------------------------------------------------

enum : std::uint32_t { kIdle = 0, kReceiving = 1, kHave = 2 };

// What a worker is doing, so that the report can tell where the kills landed.
enum activity : std::uint32_t {
  act_other,
  act_open,
  act_create,
  act_close,
  act_unlink,
  act_send,
  act_receive,
  act_record,
  act_notify,
  act_cancel,
  act_poll,
  act_attributes,
  act_temp_io,
  kActivities
};
constexpr const char* kActivityNames[kActivities] = {
    "other", "open", "create", "close", "unlink", "send", "receive", "record", "notify registration",
    "notify cancel", "poll helper", "attributes", "temp send/receive"};
enum : std::uint32_t { kRun = 0, kStopProducers = 1, kDrain = 2 };

struct alignas(64) producer_rec {
  std::atomic<std::uint64_t> attempting;  // 1 + the seq being sent (stored before send)
  std::atomic<std::uint64_t> committed;   // 1 + the last seq whose send returned (stored after)
  std::atomic<std::uint32_t> incarnation;
};

// A consumer receives straight into `buffer`, here in shared memory, so that what it
// holds when it is killed can be read by the supervisor.
struct alignas(64) consumer_rec {
  std::atomic<std::uint32_t> state;    // kIdle, kReceiving (in receive), kHave (receive returned)
  std::atomic<std::uint32_t> counted;  // the message in hand has been recorded and classified
  std::atomic<std::uint32_t> receipt;  // receives started by this slot; low 24 bits tag the cells
  std::atomic<std::uint32_t> size;
  std::atomic<std::uint32_t> priority;
  std::atomic<std::uint32_t> incarnation;
  // Highest seq received per (producer, level) by this slot, over all its incarnations.
  std::int64_t last[kMaxProducers][kLevels];
  alignas(64) std::byte buffer[kMaxMessage];
};

struct alignas(64) queue_rec {
  std::atomic<std::uint64_t> received;
  std::atomic<std::uint64_t> last_receive_ns;
  std::atomic<std::uint64_t> max_gap_ns;
};

struct alignas(64) ops_rec {
  std::atomic<std::uint64_t> counter;  // temporary queues started by this slot
  std::atomic<std::uint32_t> incarnation;
};

struct dup_note {
  std::uint32_t producer;
  std::uint32_t cell;
  std::uint32_t tag;
  std::uint64_t seq;
};

struct control {
  std::atomic<std::uint32_t> phase;
  std::atomic<std::uint64_t> torn, duplicated, out_of_order, phantom, errors;
  std::atomic<std::uint64_t> reopens, temp_created, temp_bad, notify_registered, notify_busy, notify_fired,
      notify_thread_fired, polls, opens;
  std::atomic<std::uint32_t> note_lock;
  char first_error[512];
  std::atomic<std::uint32_t> dup_notes;
  dup_note dups[16];
  std::atomic<std::uint32_t> ooo_notes;
  dup_note ooos[16];
  std::atomic<std::uint32_t> doing[3][kMaxConsumers];
  producer_rec producers[kMaxProducers];
  consumer_rec consumers[kMaxConsumers];
  queue_rec queues[kMaxQueues];
  ops_rec ops[kMaxOps];
};

control* ctl = nullptr;
std::atomic<std::uint32_t>* doing = nullptr;  // this worker's activity word, ctl->doing[role][slot]
void now(activity a) { doing->store(a, std::memory_order_relaxed); }
// cells[p * kSeqCapacity + seq]: 0 = not received; otherwise the tag of the receipt
// that recorded it: (consumer slot + 1) << 24 | (receipt & 0xffffff).
std::atomic<std::uint32_t>* cells = nullptr;

constexpr std::uint32_t kRescueSlot = 200;  // tag slot for messages the supervisor drains at the end
std::uint32_t tag_of(std::uint32_t slot, std::uint32_t receipt) { return (slot + 1) << 24 | (receipt & 0xffffffU); }

void* map_shared(std::size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::system_error(errno, std::system_category(), "mmap");
  return p;
}

std::uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

void note_error(const char* role, int slot, const char* what, const std::string& detail) {
  ctl->errors.fetch_add(1);
  std::uint32_t zero = 0;
  if (ctl->note_lock.compare_exchange_strong(zero, 1)) {
    std::snprintf(ctl->first_error, sizeof ctl->first_error, "%s %d: %s: %s", role, slot, what, detail.c_str());
  }
}

void note(std::atomic<std::uint32_t>& n, dup_note* notes, dup_note d) {
  std::uint32_t i = n.fetch_add(1);
  if (i < 16) notes[i] = d;
}

enum class outcome { recorded, already, torn, phantom, duplicate };

// Checks and records one message that consumer slot `slot` holds in its buffer.
// `rescue`: the supervisor finishing the record of a consumer killed while it held the
// message; steps the consumer already made (order update, cell) are recognised, not
// repeated. Lock contract: none (atomics only); only slot's process, or the supervisor
// once that process is dead, calls it for a slot.
outcome record_message(int slot, int q, std::size_t size, unsigned priority, std::uint32_t tag, bool rescue) {
  consumer_rec& me = ctl->consumers[slot];
  msg_head h{};
  if (!valid_message(me.buffer, size, priority, q, h)) {
    ctl->torn.fetch_add(1);
    return outcome::torn;
  }
  if (h.seq >= ctl->producers[h.producer].attempting.load() || h.seq >= kSeqCapacity ||
      h.incarnation > ctl->producers[h.producer].incarnation.load()) {
    ctl->phantom.fetch_add(1);
    return outcome::phantom;
  }
  auto seq = static_cast<std::int64_t>(h.seq);
  std::int64_t& last = me.last[h.producer][h.level];
  if (!(rescue && last == seq)) {
    if (seq <= last) {
      ctl->out_of_order.fetch_add(1);
      note(ctl->ooo_notes, ctl->ooos, {h.producer, static_cast<std::uint32_t>(last), tag, h.seq});
    } else {
      last = seq;
    }
  }
  std::uint32_t expected = 0;
  if (cells[h.producer * kSeqCapacity + h.seq].compare_exchange_strong(expected, tag)) return outcome::recorded;
  if (rescue && expected == tag) return outcome::already;
  ctl->duplicated.fetch_add(1);
  note(ctl->dup_notes, ctl->dups, {h.producer, expected, tag, h.seq});
  return outcome::duplicate;
}

// ---- workers -------------------------------------------------------------------------

std::span<const std::byte> bytes(const std::byte* p, std::size_t n) { return {p, n}; }

pipc::message_queue open_or_die(const char* role, int slot, const std::string& name, pipc::open_mode mode,
                                const pipc::mq_options& o) {
  std::error_code ec;
  now(mode == pipc::open_mode::open_only ? act_open : act_create);
  auto q = pipc::message_queue::open(name, mode, o, ec);
  now(act_other);
  if (ec) {
    note_error(role, slot, "open", name + ": " + ec.message());
    std::_Exit(3);
  }
  ctl->opens.fetch_add(1);
  return q;
}

int producer_main(int slot) {
  producer_rec& me = ctl->producers[slot];
  const int q = slot % cfg.queues;
  const std::uint32_t incarnation = me.incarnation.load();
  std::mt19937_64 rng(mix(cfg.seed ^ (std::uint64_t{1} << 40) ^ (std::uint64_t(slot) << 32) ^ incarnation));
  auto access = [&] { return rng() % 2 ? pipc::access::write_only : pipc::access::read_write; };
  auto mq = open_or_die("producer", slot, queue_name(q), pipc::open_mode::open_only, options_of(q, access()));
  std::uint64_t seq = me.attempting.load();
  long until_reopen = 20 + static_cast<long>(rng() % 1000);
  alignas(64) std::byte buffer[kMaxMessage];
  std::error_code ec;
  while (ctl->phase.load() == kRun) {
    if (seq >= kSeqCapacity) {
      std::this_thread::sleep_for(10ms);
      continue;
    }
    std::size_t size = build_message(buffer, static_cast<std::uint32_t>(slot), q, incarnation, seq);
    unsigned priority = kPriorities[level_of(static_cast<std::uint32_t>(slot), seq)];
    me.attempting.store(seq + 1);
    now(act_send);
    auto mode = rng() % 10;
    bool sent = false;
    if (mode < 4) {
      mq.send(bytes(buffer, size), priority, ec);
      sent = !ec;
    } else if (mode < 6) {
      // Zero copy: a loan written in place and committed. A kill before the commit sends
      // nothing, after it the message is queued, as for send (docs/engine.md, "Loans").
      pipc::send_loan loan = mq.loan(size, ec);
      if (!ec) {
        std::memcpy(loan.data().data(), buffer, size);
        loan.commit(priority, ec);
        sent = !ec;
      }
    } else {
      while (!sent && !ec) {
        sent = mode < 8 ? mq.send_for(bytes(buffer, size), priority, std::chrono::milliseconds(rng() % 50), ec)
                        : mq.try_send(bytes(buffer, size), priority, ec);
        if (!sent && !ec) {
          if (ctl->phase.load() != kRun) {
            me.attempting.store(seq);  // abandoned, never sent
            return 0;
          }
          if (mode >= 8) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
        }
      }
    }
    if (ec) {
      note_error("producer", slot, "send", ec.message());
      return 3;
    }
    me.committed.store(seq + 1);
    now(act_other);
    ++seq;
    if (--until_reopen == 0) {
      now(act_close);
      mq.close();
      now(act_other);
      if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
      mq = open_or_die("producer", slot, queue_name(q), pipc::open_mode::open_only, options_of(q, access()));
      ctl->reopens.fetch_add(1);
      until_reopen = 20 + static_cast<long>(rng() % 1000);
    }
  }
  return 0;
}

int consumer_main(int slot) {
  consumer_rec& me = ctl->consumers[slot];
  queue_rec& qr = ctl->queues[slot % cfg.queues];
  const int q = slot % cfg.queues;
  std::mt19937_64 rng(mix(cfg.seed ^ (std::uint64_t{2} << 40) ^ (std::uint64_t(slot) << 32) ^ me.incarnation.load()));
  auto access = [&] { return rng() % 2 ? pipc::access::read_only : pipc::access::read_write; };
  auto mq = open_or_die("consumer", slot, queue_name(q), pipc::open_mode::open_only, options_of(q, access()));
  long until_reopen = 20 + static_cast<long>(rng() % 1000);
  std::span<std::byte> buffer(me.buffer, kMaxMessage);
  std::error_code ec;
  for (;;) {
    std::memset(me.buffer, 0, sizeof(msg_head));
    std::uint32_t receipt = me.receipt.fetch_add(1) + 1;
    me.state.store(kReceiving);
    now(act_receive);
    auto mode = rng() % 10;
    std::optional<pipc::received> got;
    if (mode < 5) {
      auto r = mq.receive(buffer, ec);
      if (!ec) got = r;
    } else if (mode < 8) {
      got = mq.receive_for(buffer, std::chrono::milliseconds(1 + rng() % 100), ec);
    } else {
      got = mq.try_receive(buffer, ec);
    }
    if (ec) {
      me.state.store(kIdle);
      note_error("consumer", slot, "receive", ec.message());
      return 3;
    }
    if (got && cfg.inject != config::fault::none && slot == 0 && receipt % 1000 == 0) {
      if (cfg.inject == config::fault::lose) got.reset();  // dropped as if the queue had lost it
      if (cfg.inject == config::fault::tear) me.buffer[got->size - 1] ^= std::byte{0x20};
      if (cfg.inject == config::fault::duplicate) {
        // A record under another tag first; the real record below then finds the cell taken.
        msg_head h{};
        std::memcpy(&h, me.buffer, sizeof h);
        std::int64_t saved = me.last[h.producer % kMaxProducers][h.level % kLevels];
        record_message(slot, q, got->size, got->priority, tag_of(static_cast<std::uint32_t>(slot), receipt + 1), false);
        me.last[h.producer % kMaxProducers][h.level % kLevels] = saved;
      }
    }
    now(act_record);
    if (got) {
      me.size.store(static_cast<std::uint32_t>(got->size));
      me.priority.store(got->priority);
      me.counted.store(0);
      me.state.store(kHave);
      record_message(slot, q, got->size, got->priority, tag_of(static_cast<std::uint32_t>(slot), receipt), false);
      me.counted.store(1);
      std::uint64_t t = now_ns();
      std::uint64_t before = qr.last_receive_ns.exchange(t);
      if (before != 0 && t > before) {
        std::uint64_t gap = t - before, m = qr.max_gap_ns.load();
        while (gap > m && !qr.max_gap_ns.compare_exchange_weak(m, gap)) {
        }
      }
      qr.received.fetch_add(1);
    }
    me.state.store(kIdle);
    now(act_other);
    if (!got && mode >= 8) std::this_thread::sleep_for(std::chrono::microseconds(20 + rng() % 200));
    if (--until_reopen == 0) {
      now(act_close);
      mq.close();
      mq = open_or_die("consumer", slot, queue_name(q), pipc::open_mode::open_only, options_of(q, access()));
      ctl->reopens.fetch_add(1);
      until_reopen = 20 + static_cast<long>(rng() % 1000);
    }
  }
}

void on_notify_signal(int) { ctl->notify_fired.fetch_add(1); }

// One round on a temporary queue of its own: create, fill, maybe unlink early or use a
// second descriptor, drain and check order and contents, close, unlink.
void temp_round(int w, std::mt19937_64& rng) {
  std::uint64_t n = ctl->ops[w].counter.fetch_add(1);
  std::string name = temp_name(w, n);
  long depth = 1 + static_cast<long>(rng() % 16);
  long size = 16 + static_cast<long>(rng() % 1024);
  pipc::mq_options o;
  o.max_messages = depth;
  o.message_size = size;
  std::error_code ec;
  now(act_create);
  auto mq = pipc::message_queue::open(name, pipc::open_mode::create_only, o, ec);
  now(act_temp_io);
  if (ec) {
    note_error("ops", w, "create", name + ": " + ec.message());
    ctl->temp_bad.fetch_add(1);
    return;
  }
  ctl->temp_created.fetch_add(1);
  struct sent_msg {
    unsigned priority;
    std::size_t index;
  };
  std::vector<sent_msg> sent;
  std::vector<std::byte> buf(static_cast<std::size_t>(size));
  auto fill = [&](std::size_t i) {
    std::size_t len = 8 + i % static_cast<std::size_t>(size - 7);
    for (std::size_t k = 0; k < len; ++k) buf[k] = static_cast<std::byte>(mix(n * 1000 + i) >> (k % 8 * 8));
    std::uint64_t idx = i;
    std::memcpy(buf.data(), &idx, 8);
    return len;
  };
  auto k = static_cast<std::size_t>(1 + rng() % static_cast<std::uint64_t>(depth));
  for (std::size_t i = 0; i < k; ++i) {
    unsigned priority = static_cast<unsigned>(rng() % 4) * 1000;
    std::size_t len = fill(i);
    if (!mq.try_send(bytes(buf.data(), len), priority, ec) || ec) {
      note_error("ops", w, "temp send", name + ": " + (ec ? ec.message() : "full"));
      ctl->temp_bad.fetch_add(1);
      return;
    }
    sent.push_back({priority, i});
  }
  bool unlinked = false;
  if (rng() % 2) {
    now(act_unlink);
    pipc::message_queue::unlink(name, pipc::backend::shm, ec);
    if (ec) note_error("ops", w, "temp unlink", name + ": " + ec.message());
    unlinked = true;
  }
  pipc::message_queue other;
  if (!unlinked && rng() % 2) {
    now(act_open);
    other = pipc::message_queue::open(name, pipc::open_mode::open_only, o, ec);
    now(act_temp_io);
    if (ec) note_error("ops", w, "temp reopen", name + ": " + ec.message());
  }
  pipc::message_queue& rx = other ? other : mq;
  std::stable_sort(sent.begin(), sent.end(), [](const sent_msg& a, const sent_msg& b) { return a.priority > b.priority; });
  std::vector<std::byte> in(static_cast<std::size_t>(size));
  for (const sent_msg& s : sent) {
    auto r = rx.try_receive(in, ec);
    std::size_t len = fill(s.index);
    if (ec || !r || r->priority != s.priority || r->size != len || std::memcmp(in.data(), buf.data(), len) != 0) {
      note_error("ops", w, "temp receive", name + (ec ? ": " + ec.message() : ": wrong message"));
      ctl->temp_bad.fetch_add(1);
      break;
    }
  }
  if (rx.try_receive(in, ec) || ec) {
    note_error("ops", w, "temp receive", name + ": a message too many");
    ctl->temp_bad.fetch_add(1);
  }
  now(act_close);
  other.close();
  mq.close();
  if (!unlinked) {
    now(act_unlink);
    pipc::message_queue::unlink(name, pipc::backend::shm, ec);
    if (ec) note_error("ops", w, "temp unlink", name + ": " + ec.message());
  }
}

int ops_main(int w) {
  std::mt19937_64 rng(mix(cfg.seed ^ (std::uint64_t{3} << 40) ^ (std::uint64_t(w) << 32) ^ ctl->ops[w].incarnation.load()));
  struct sigaction sa {};
  sa.sa_handler = on_notify_signal;
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGUSR1, &sa, nullptr);
  // A killed incarnation may have left its temporary queue behind.
  std::uint64_t n = ctl->ops[w].counter.load();
  std::error_code ec;
  for (std::uint64_t k = n >= 2 ? n - 2 : 0; k <= n; ++k) pipc::message_queue::unlink(temp_name(w, k), pipc::backend::shm, ec);
  while (ctl->phase.load() == kRun) {
    int q = static_cast<int>(rng() % static_cast<std::uint64_t>(cfg.queues));
    switch (rng() % 6) {
      case 0:
      case 1:
        temp_round(w, rng);
        break;
      case 2: {  // notification registration on "its" queue; nobody else registers there
        if (w >= cfg.queues) break;
        auto mq = open_or_die("ops", w, queue_name(w), pipc::open_mode::open_only, options_of(w, pipc::access::read_only));
        now(act_notify);
        switch (rng() % 3) {
          case 0:
            mq.notify_signal(SIGUSR1, w, ec);
            break;
          case 1:
            mq.notify_none(ec);
            break;
          default:
            mq.notify_thread([] { ctl->notify_thread_fired.fetch_add(1); }, ec);
            break;
        }
        if (ec == std::errc::device_or_resource_busy) {
          ctl->notify_busy.fetch_add(1);
          note_error("ops", w, "notify", queue_name(w) + ": " + ec.message() + " (a dead registrant's registration?)");
        } else if (ec) {
          note_error("ops", w, "notify", queue_name(w) + ": " + ec.message());
        } else {
          ctl->notify_registered.fetch_add(1);
        }
        now(act_other);
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
        if (rng() % 2) {
          now(act_cancel);
          mq.cancel_notification(ec);
          if (ec) note_error("ops", w, "cancel_notification", ec.message());
        }
        now(act_close);
        mq.close();  // ends any registration left
        break;
      }
      case 3: {  // the polling helper thread
        auto mq = open_or_die("ops", w, queue_name(q), pipc::open_mode::open_only, options_of(q, pipc::access::read_only));
        now(act_poll);
        int fd = mq.native_handle();
        if (fd >= 0) {
          pollfd p{fd, POLLIN, 0};
          ::poll(&p, 1, static_cast<int>(rng() % 2));
          ctl->polls.fetch_add(1);
        }
        now(act_close);
        mq.close();
        break;
      }
      case 4: {  // open_or_create of an existing queue, attributes, O_NONBLOCK
        auto mq = open_or_die("ops", w, queue_name(q), pipc::open_mode::open_or_create, options_of(q, pipc::access::write_only));
        now(act_attributes);
        auto a = mq.attributes(ec);
        if (!ec && (a.max_messages != shape_of(q).depth || a.message_size != shape_of(q).size)) {
          note_error("ops", w, "attributes", queue_name(q) + ": wrong attributes");
        }
        mq.set_nonblocking(rng() % 2 != 0, ec);
        now(act_close);
        mq.close();
        break;
      }
      default: {  // a bare open and close
        auto mq = open_or_die("ops", w, queue_name(q), pipc::open_mode::open_only, options_of(q, pipc::access::read_write));
        now(act_close);
        mq.close();
        break;
      }
    }
    now(act_other);
    if (rng() % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
  }
  return 0;
}

// ---- supervisor ------------------------------------------------------------------------

enum class role { producer, consumer, ops };
const char* role_name(role r) { return r == role::producer ? "producer" : r == role::consumer ? "consumer" : "ops"; }

struct worker {
  role kind;
  int slot;
  pid_t pid = -1;
  bool stopped = false;
  std::uint64_t resume_ns = 0;
};

pid_t spawn(const worker& w) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::system_category(), "fork");
  if (pid > 0) return pid;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  doing = &ctl->doing[static_cast<int>(w.kind)][w.slot];
  now(act_other);
  int code = 4;
  try {
    code = w.kind == role::producer ? producer_main(w.slot) : w.kind == role::consumer ? consumer_main(w.slot) : ops_main(w.slot);
  } catch (const std::exception& e) {
    note_error(role_name(w.kind), w.slot, "exception", e.what());
  }
  std::_Exit(code);
}

struct audit_state {
  long kills = 0, stops = 0, restarts = 0, unexpected = 0;
  long kills_by_role[3] = {0, 0, 0};
  long kills_by_activity[kActivities] = {};
  long kills_receiving = 0;         // consumers killed inside receive
  long kills_receiving_whole = 0;   // ... with a whole message copied into their buffer
  long kills_have = 0;              // consumers killed after receive returned, before the record was done
  long rescued = 0;                 // ... whose message the supervisor recorded for them
  long kills_in_send = 0;           // producers killed inside send (or before their first send after one)
  std::vector<std::string> unexpected_notes;
  std::set<std::pair<std::uint32_t, std::uint64_t>> maybe_sent_set;  // (producer, seq)
  std::set<std::pair<std::uint32_t, std::uint64_t>> in_hand_set;     // whole message in a killed receive
};
audit_state st;

// Accounts for the death of `w` (reaped): what its ledgers say it was doing.
void account_death(const worker& w) {
  if (w.kind == role::producer) {
    producer_rec& p = ctl->producers[w.slot];
    std::uint64_t a = p.attempting.load(), c = p.committed.load();
    if (a > c) {
      ++st.kills_in_send;
      st.maybe_sent_set.insert({static_cast<std::uint32_t>(w.slot), a - 1});
    }
    return;
  }
  if (w.kind != role::consumer) return;
  consumer_rec& c = ctl->consumers[w.slot];
  const int q = w.slot % cfg.queues;
  std::uint32_t state = c.state.load();
  if (state == kReceiving) {
    ++st.kills_receiving;
    msg_head h{};
    std::memcpy(&h, c.buffer, sizeof h);
    if (h.magic == kMagic && h.size <= kMaxMessage && h.level < kLevels &&
        valid_message(c.buffer, h.size, kPriorities[h.level], q, h)) {
      ++st.kills_receiving_whole;
      st.in_hand_set.insert({h.producer, h.seq});
    }
  } else if (state == kHave) {
    ++st.kills_have;
    if (c.counted.load() == 0) {
      auto r = record_message(w.slot, q, c.size.load(), c.priority.load(),
                              tag_of(static_cast<std::uint32_t>(w.slot), c.receipt.load()), true);
      if (r == outcome::recorded) ++st.rescued;
      if (r == outcome::recorded || r == outcome::already) ctl->queues[q].received.fetch_add(1);
    }
  }
  c.state.store(kIdle);
}

void restart(worker& w) {
  if (w.kind == role::producer) ctl->producers[w.slot].incarnation.fetch_add(1);
  if (w.kind == role::consumer) ctl->consumers[w.slot].incarnation.fetch_add(1);
  if (w.kind == role::ops) ctl->ops[w.slot].incarnation.fetch_add(1);
  w.pid = spawn(w);
  w.stopped = false;
  ++st.restarts;
}

int reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

std::uint64_t parse_u64(const char* s, const char* flag) {
  char* end = nullptr;
  errno = 0;
  auto v = std::strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') {
    std::fprintf(stderr, "pipc-soak: %s needs a number, got \"%s\"\n", flag, s);
    std::exit(2);
  }
  return v;
}

void usage() {
  std::puts(
      "usage: pipc-soak [--seconds N] [--producers N] [--consumers N] [--ops N] [--queues N]\n"
      "                 [--seed N] [--kill-interval MS] [--stop-percent N] [--hang-limit S] [--quiet]\n"
      "                 [--inject lose|duplicate|tear]   (a test of the audit itself)\n"
      "Chaos soak of pipc's engine queues: workers in separate processes, SIGKILLed and\n"
      "SIGSTOPped at random, every message audited. Exit status 0 only if nothing was lost,\n"
      "duplicated, reordered or torn and the run made progress. See docs/soak.md.");
}

void parse(int argc, char** argv) {
  cfg.seed = std::random_device{}() & 0x7fffffff;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "pipc-soak: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--seconds") cfg.seconds = std::strtod(value(), nullptr);
    else if (a == "--producers") cfg.producers = static_cast<int>(parse_u64(value(), "--producers"));
    else if (a == "--consumers") cfg.consumers = static_cast<int>(parse_u64(value(), "--consumers"));
    else if (a == "--ops") cfg.ops = static_cast<int>(parse_u64(value(), "--ops"));
    else if (a == "--queues") cfg.queues = static_cast<int>(parse_u64(value(), "--queues"));
    else if (a == "--seed") cfg.seed = parse_u64(value(), "--seed");
    else if (a == "--kill-interval") cfg.kill_interval_ms = std::strtod(value(), nullptr);
    else if (a == "--stop-percent") cfg.stop_percent = static_cast<int>(parse_u64(value(), "--stop-percent"));
    else if (a == "--hang-limit") cfg.hang_limit = std::strtod(value(), nullptr);
    else if (a == "--quiet") cfg.quiet = true;
    else if (a == "--inject") {
      std::string f = value();
      if (f == "lose") cfg.inject = config::fault::lose;
      else if (f == "duplicate") cfg.inject = config::fault::duplicate;
      else if (f == "tear") cfg.inject = config::fault::tear;
      else {
        std::fprintf(stderr, "pipc-soak: --inject takes lose, duplicate or tear\n");
        std::exit(2);
      }
    }
    else if (a == "--help" || a == "-h") {
      usage();
      std::exit(0);
    } else {
      std::fprintf(stderr, "pipc-soak: unknown option %s\n", a.c_str());
      usage();
      std::exit(2);
    }
  }
  bool bad = cfg.seconds <= 0 || cfg.producers < 1 || cfg.producers > kMaxProducers || cfg.queues < 1 ||
             cfg.queues > kMaxQueues || cfg.consumers < cfg.queues || cfg.consumers > kMaxConsumers || cfg.ops < 0 ||
             cfg.ops > kMaxOps || cfg.kill_interval_ms <= 0 || cfg.stop_percent > 100 || cfg.hang_limit <= 0;
  if (bad) {
    std::fprintf(stderr,
                 "pipc-soak: bad configuration: need 1 <= producers <= %d, 1 <= queues <= %d, queues <= consumers <= "
                 "%d, ops <= %d, seconds, kill-interval and hang-limit > 0\n",
                 kMaxProducers, kMaxQueues, kMaxConsumers, kMaxOps);
    std::exit(2);
  }
}

double secs(std::uint64_t ns) { return static_cast<double>(ns) / 1e9; }

}  // namespace

int main(int argc, char** argv) {
  parse(argc, argv);
  ::setvbuf(stdout, nullptr, _IOLBF, 0);
  run_tag = "soak" + std::to_string(::getpid());
  ::signal(SIGPIPE, SIG_IGN);
  ctl = new (map_shared(sizeof(control))) control{};
  cells = static_cast<std::atomic<std::uint32_t>*>(
      map_shared(static_cast<std::size_t>(cfg.producers) * kSeqCapacity * sizeof(std::uint32_t)));
  for (auto& c : ctl->consumers) {
    for (auto& row : c.last) std::fill(std::begin(row), std::end(row), -1);
  }
  std::printf("pipc-soak: seed %" PRIu64 ", %.0f s, %d producers, %d consumers, %d ops workers, %d queues, "
              "kill interval %.1f ms, %d%% stops (names /pipc-%s-*)\n",
              cfg.seed, cfg.seconds, cfg.producers, cfg.consumers, cfg.ops, cfg.queues, cfg.kill_interval_ms,
              cfg.stop_percent, run_tag.c_str());

  std::vector<pipc::message_queue> watch;  // the supervisor's own descriptors: depth for the stall clock
  for (int q = 0; q < cfg.queues; ++q) {
    std::error_code ignored;
    pipc::message_queue::unlink(queue_name(q), pipc::backend::shm, ignored);
    pipc::message_queue::open(queue_name(q), pipc::open_mode::create_only, options_of(q, pipc::access::read_write));
    watch.push_back(pipc::message_queue::open(queue_name(q), pipc::open_mode::open_only, options_of(q, pipc::access::read_only)));
  }

  std::vector<worker> workers;
  for (int i = 0; i < cfg.producers; ++i) workers.push_back({role::producer, i});
  for (int i = 0; i < cfg.consumers; ++i) workers.push_back({role::consumer, i});
  for (int i = 0; i < cfg.ops; ++i) workers.push_back({role::ops, i});
  for (auto& w : workers) w.pid = spawn(w);

  std::mt19937_64 rng(cfg.seed);
  const std::uint64_t t0 = now_ns();
  const auto run_ns = static_cast<std::uint64_t>(cfg.seconds * 1e9);
  auto next_action = [&] {
    return now_ns() + static_cast<std::uint64_t>(static_cast<double>(rng() % 2001) / 1000.0 * cfg.kill_interval_ms * 1e6);
  };
  std::uint64_t action_at = next_action();
  std::vector<std::uint64_t> seen(cfg.queues, 0), stall(cfg.queues, 0), max_stall(cfg.queues, 0);
  bool hung = false;
  std::string hang_note, stall_note;
  std::uint64_t longest_stall = 0;
  std::uint64_t last_tick = now_ns(), next_progress = t0 + 10'000'000'000ULL;

  auto handle_exit = [&](worker& w, int status, bool killed_by_us) {
    if (!killed_by_us || !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
      ++st.unexpected;
      if (st.unexpected_notes.size() < 10) {
        st.unexpected_notes.push_back(std::string(role_name(w.kind)) + " " + std::to_string(w.slot) + " ended by itself: " +
                                      describe_status(status));
      }
    }
    account_death(w);
  };

  // Ticks the stall clocks: a queue stalls while it holds messages, at least one of its
  // consumers is running (alive and not stopped) and no receive completes.
  auto tick = [&] {
    std::uint64_t t = now_ns(), dt = t - last_tick;
    last_tick = t;
    for (int q = 0; q < cfg.queues; ++q) {
      std::uint64_t r = ctl->queues[q].received.load();
      if (r != seen[q]) {
        seen[q] = r;
        stall[q] = 0;
        continue;
      }
      std::error_code ec;
      auto a = watch[q].attributes(ec);
      bool running = false;
      for (auto& w : workers) running |= w.kind == role::consumer && w.slot % cfg.queues == q && !w.stopped;
      if (!ec && a.current_messages > 0 && running) {
        stall[q] += dt;
        max_stall[q] = std::max(max_stall[q], stall[q]);
        // What everyone was doing, for the diagnosis of the longest stall and of a hang.
        auto snapshot = [&] {
          std::string out = "queue " + std::to_string(q) + " held " + std::to_string(a.current_messages) +
                            " messages for " + std::to_string(secs(stall[q])) +
                            " s with a running consumer and no receive, at " + std::to_string(secs(t - t0)) + " s;";
          for (auto& x : workers) {
            std::uint32_t act = ctl->doing[static_cast<int>(x.kind)][x.slot].load();
            out += std::string("\n    ") + role_name(x.kind) + " " + std::to_string(x.slot) + " pid " +
                   std::to_string(x.pid) + (x.stopped ? " (stopped)" : "") + ": " +
                   kActivityNames[act < kActivities ? act : act_other];
            if (x.kind == role::consumer) out += ", receive state " + std::to_string(ctl->consumers[x.slot].state.load());
          }
          return out;
        };
        if (stall[q] > longest_stall && stall[q] > 200'000'000ULL) {
          longest_stall = stall[q];
          stall_note = snapshot();
        }
        if (secs(stall[q]) > cfg.hang_limit && !hung) {
          hung = true;
          hang_note = snapshot();
        }
      } else {
        stall[q] = 0;
      }
    }
  };

  // ---- the chaos phase ----
  while (now_ns() - t0 < run_ns && !hung) {
    // Workers that ended by themselves: note, account, restart.
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      for (auto& w : workers) {
        if (w.pid != pid) continue;
        handle_exit(w, status, false);
        restart(w);
      }
    }
    std::uint64_t t = now_ns();
    for (auto& w : workers) {
      if (w.stopped && t >= w.resume_ns) {
        ::kill(w.pid, SIGCONT);
        w.stopped = false;
      }
    }
    if (t >= action_at) {
      worker& w = workers[rng() % workers.size()];
      if (!w.stopped && static_cast<int>(rng() % 100) < cfg.stop_percent) {
        ::kill(w.pid, SIGSTOP);
        w.stopped = true;
        w.resume_ns = t + (1 + rng() % 200) * 1'000'000ULL;
        ++st.stops;
      } else {
        ::kill(w.pid, SIGKILL);
        handle_exit(w, reap(w.pid), true);
        ++st.kills;
        ++st.kills_by_role[static_cast<int>(w.kind)];
        std::uint32_t a = ctl->doing[static_cast<int>(w.kind)][w.slot].load();
        ++st.kills_by_activity[a < kActivities ? a : act_other];
        restart(w);
      }
      action_at = next_action();
    }
    tick();
    if (!cfg.quiet && now_ns() >= next_progress) {
      std::uint64_t rcv = 0;
      for (int q = 0; q < cfg.queues; ++q) rcv += ctl->queues[q].received.load();
      std::printf("pipc-soak: %5.0f s: %ld kills, %ld stops, %" PRIu64 " messages received\n", secs(now_ns() - t0),
                  st.kills, st.stops, rcv);
      next_progress += 10'000'000'000ULL;
    }
    std::uint64_t wake = std::min<std::uint64_t>(action_at, now_ns() + 1000000);
    for (auto& w : workers) {
      if (w.stopped) wake = std::min(wake, w.resume_ns);
    }
    std::uint64_t n = now_ns();
    if (wake > n) std::this_thread::sleep_for(std::chrono::nanoseconds(wake - n));
  }
  const double chaos_seconds = secs(now_ns() - t0);

  // ---- the end: producers and ops stop, consumers drain, then they are killed ----
  for (auto& w : workers) {
    if (w.stopped) ::kill(w.pid, SIGCONT), w.stopped = false;
  }
  ctl->phase.store(kStopProducers);
  auto wait_exit = [&](worker& w, std::uint64_t limit_ns) {
    std::uint64_t until = now_ns() + limit_ns;
    for (;;) {
      int status = 0;
      pid_t r = ::waitpid(w.pid, &status, WNOHANG);
      if (r == w.pid) {
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) handle_exit(w, status, false);
        return true;
      }
      if (now_ns() >= until) return false;
      std::this_thread::sleep_for(1ms);
      tick();
    }
  };
  for (auto& w : workers) {
    if (w.kind == role::consumer) continue;
    if (!wait_exit(w, 30'000'000'000ULL)) {
      hung = true;
      hang_note += std::string(hang_note.empty() ? "" : "; ") + role_name(w.kind) + " " + std::to_string(w.slot) +
                   " did not finish within 30 s of the stop";
      ::kill(w.pid, SIGKILL);
      handle_exit(w, reap(w.pid), true);
    }
    w.pid = -1;
  }
  ctl->phase.store(kDrain);
  // Consumers drain until no receive completes for 1 s and none holds a message.
  std::vector<std::uint64_t> counts(cfg.queues, ~0ULL);
  std::uint64_t quiet_since = now_ns();
  for (;;) {
    bool changed = false;
    for (int q = 0; q < cfg.queues; ++q) {
      std::uint64_t r = ctl->queues[q].received.load();
      if (r != counts[q]) counts[q] = r, changed = true;
    }
    if (changed) quiet_since = now_ns();
    if (now_ns() - quiet_since > 1'000'000'000ULL || now_ns() - t0 > run_ns + 120'000'000'000ULL) break;
    std::this_thread::sleep_for(5ms);
    tick();
  }
  for (auto& w : workers) {
    if (w.kind != role::consumer) continue;
    ::kill(w.pid, SIGKILL);
    int status = reap(w.pid);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) handle_exit(w, status, false);
    else account_death(w);
    w.pid = -1;
  }
  // Anything still queued was left while consumers waited for 1 s: stranded. It is
  // recorded (so that it is not also called lost) and counted as a failure, unless a
  // killed receive had copied it without committing (then it was never taken).
  long stranded = 0, stranded_in_hand = 0;
  for (int q = 0; q < cfg.queues; ++q) {
    std::error_code ec;
    consumer_rec& scratch = ctl->consumers[q];  // its consumer is dead: the buffer is free
    std::uint32_t n = 0;
    for (;;) {
      std::memset(scratch.buffer, 0, sizeof(msg_head));
      auto r = watch[q].try_receive(std::span<std::byte>(scratch.buffer, kMaxMessage), ec);
      if (!r || ec) break;
      msg_head h{};
      std::memcpy(&h, scratch.buffer, sizeof h);
      if (st.in_hand_set.count({h.producer, h.seq})) ++stranded_in_hand;
      else ++stranded;
      record_message(q, q, r->size, r->priority, tag_of(kRescueSlot, ++n), false);
    }
    if (ec) note_error("supervisor", 0, "drain", queue_name(q) + ": " + ec.message());
  }

  // ---- the audit ----
  std::uint64_t committed = 0, received = 0, lost = 0, lost_in_hand = 0, maybe_delivered = 0, maybe_not = 0;
  std::vector<std::string> lost_notes;
  // The sets are small (one entry per kill at most); the cells are many: look a seq up
  // in a set only when its cell does not settle it.
  for (int p = 0; p < cfg.producers; ++p) {
    std::uint64_t a = ctl->producers[p].attempting.load(), c = ctl->producers[p].committed.load();
    if (a > c) st.maybe_sent_set.insert({static_cast<std::uint32_t>(p), a - 1});  // a send that never returned
  }
  for (auto [p, s] : st.maybe_sent_set) {
    if (s < std::min<std::uint64_t>(ctl->producers[p].attempting.load(), kSeqCapacity)) {
      (cells[p * kSeqCapacity + s].load() != 0 ? maybe_delivered : maybe_not) += 1;
    }
  }
  for (int p = 0; p < cfg.producers; ++p) {
    std::uint64_t end = std::min<std::uint64_t>(ctl->producers[p].attempting.load(), kSeqCapacity);
    for (std::uint64_t s = 0; s < end; ++s) {
      if (cells[p * kSeqCapacity + s].load(std::memory_order_relaxed) != 0) {
        ++received;
        continue;
      }
      std::pair<std::uint32_t, std::uint64_t> key{static_cast<std::uint32_t>(p), s};
      if (st.maybe_sent_set.count(key) != 0) continue;
      if (st.in_hand_set.count(key) != 0) {
        ++lost_in_hand;
      } else {
        ++lost;
        if (lost_notes.size() < 10) {
          lost_notes.push_back("producer " + std::to_string(p) + " seq " + std::to_string(s) + " (queue " +
                               std::to_string(p % cfg.queues) + ", priority " +
                               std::to_string(kPriorities[level_of(static_cast<std::uint32_t>(p), s)]) + ")");
        }
      }
    }
    committed += end;
  }
  committed -= maybe_delivered + maybe_not;
  // Temporary queues a killed ops worker left, and engine files that no name leads to.
  for (int w = 0; w < cfg.ops; ++w) {
    std::uint64_t n = ctl->ops[w].counter.load();
    std::error_code ec;
    for (std::uint64_t k = n >= 2 ? n - 2 : 0; k <= n; ++k) pipc::message_queue::unlink(temp_name(w, k), pipc::backend::shm, ec);
  }
  watch.clear();
  for (int q = 0; q < cfg.queues; ++q) {
    std::error_code ec;
    pipc::message_queue::unlink(queue_name(q), pipc::backend::shm, ec);
  }
  std::vector<std::string> leftovers;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) {
      if (std::strstr(e->d_name, run_tag.c_str()) != nullptr) leftovers.emplace_back(e->d_name);
    }
    ::closedir(d);
  }

  std::uint64_t max_gap = 0, max_eff = 0;
  int gap_q = 0, eff_q = 0;
  for (int q = 0; q < cfg.queues; ++q) {
    if (ctl->queues[q].max_gap_ns.load() > max_gap) max_gap = ctl->queues[q].max_gap_ns.load(), gap_q = q;
    if (max_stall[q] > max_eff) max_eff = max_stall[q], eff_q = q;
  }
  const std::uint64_t torn = ctl->torn.load(), dup = ctl->duplicated.load(), ooo = ctl->out_of_order.load(),
                      phantom = ctl->phantom.load(), errors = ctl->errors.load();
  const bool progress = received > 0 && st.kills > 0;
  const bool pass = lost == 0 && dup == 0 && ooo == 0 && torn == 0 && phantom == 0 && stranded == 0 && errors == 0 &&
                    st.unexpected == 0 && !hung && progress;

  std::printf("\npipc-soak report (seed %" PRIu64 ")\n", cfg.seed);
  std::printf("  duration            %.1f s of chaos, %.1f s in all\n", chaos_seconds, secs(now_ns() - t0));
  std::printf("  processes           %d producers, %d consumers, %d ops workers on %d queues\n", cfg.producers,
              cfg.consumers, cfg.ops, cfg.queues);
  std::printf("  kills               %ld (producers %ld, consumers %ld, ops %ld)\n", st.kills, st.kills_by_role[0],
              st.kills_by_role[1], st.kills_by_role[2]);
  std::printf("  kills landed in    ");
  for (std::uint32_t a = 0; a < kActivities; ++a) {
    if (st.kills_by_activity[a] != 0) std::printf(" %s %ld,", kActivityNames[a], st.kills_by_activity[a]);
  }
  std::printf("\n");
  std::printf("  stops               %ld (SIGSTOP 1-200 ms, then SIGCONT)\n", st.stops);
  std::printf("  restarts            %ld (%ld after an unexpected end)\n", st.restarts, st.unexpected);
  std::printf("  messages sent       %" PRIu64 " committed, %" PRIu64 " in doubt\n", committed, maybe_delivered + maybe_not);
  std::printf("  messages received   %" PRIu64 "\n", received);
  std::printf("  lost                %" PRIu64 "\n", lost);
  std::printf("  duplicated          %" PRIu64 "\n", dup);
  std::printf("  out-of-order        %" PRIu64 "\n", ooo);
  std::printf("  torn                %" PRIu64 "\n", torn);
  std::printf("  phantom             %" PRIu64 "\n", phantom);
  std::printf("  stranded            %ld (+%ld copied by a killed receive that had not committed)\n", stranded,
              stranded_in_hand);
  std::printf("  in hand at kill     %ld killed in receive (%ld with a whole message copied; %" PRIu64
              " of those taken: lost in hand), %ld after receive returned (%ld recorded by the supervisor)\n",
              st.kills_receiving, st.kills_receiving_whole, lost_in_hand, st.kills_have, st.rescued);
  std::printf("  maybe sent at kill  %" PRIu64 " (%" PRIu64 " delivered, %" PRIu64 " not; %ld producer kills inside send)\n",
              maybe_delivered + maybe_not, maybe_delivered, maybe_not, st.kills_in_send);
  std::printf("  longest stall       %.3f s (queue %d: messages waiting, a consumer running, no receive); "
              "longest gap between receives %.3f s (queue %d)\n",
              secs(max_eff), eff_q, secs(max_gap), gap_q);
  std::printf("  open/close          %" PRIu64 " opens, %" PRIu64 " reopens; temporary queues %" PRIu64
              " created, %" PRIu64 " bad\n",
              ctl->opens.load(), ctl->reopens.load(), ctl->temp_created.load(), ctl->temp_bad.load());
  std::printf("  notifications       %" PRIu64 " registered, %" PRIu64 " EBUSY, %" PRIu64 " signals and %" PRIu64
              " threads fired; %" PRIu64 " polls\n",
              ctl->notify_registered.load(), ctl->notify_busy.load(), ctl->notify_fired.load(),
              ctl->notify_thread_fired.load(), ctl->polls.load());
  std::printf("  errors              %" PRIu64 "%s%s\n", errors, errors ? ": first: " : "", errors ? ctl->first_error : "");
  std::printf("  leftover files      %zu in /dev/shm%s\n", leftovers.size(), leftovers.empty() ? "" : " (see below)");
  for (auto& s : leftovers) std::printf("    /dev/shm/%s\n", s.c_str());
  for (auto& s : st.unexpected_notes) std::printf("  unexpected: %s\n", s.c_str());
  for (auto& s : lost_notes) std::printf("  lost: %s\n", s.c_str());
  for (std::uint32_t i = 0; i < std::min<std::uint32_t>(16, ctl->dup_notes.load()); ++i) {
    auto& d = ctl->dups[i];
    std::printf("  duplicate: producer %u seq %" PRIu64 " recorded by tag %#x, again by tag %#x\n", d.producer, d.seq,
                d.cell, d.tag);
  }
  for (std::uint32_t i = 0; i < std::min<std::uint32_t>(16, ctl->ooo_notes.load()); ++i) {
    auto& d = ctl->ooos[i];
    std::printf("  out of order: producer %u seq %" PRIu64 " after seq %u (tag %#x)\n", d.producer, d.seq, d.cell, d.tag);
  }
  if (!stall_note.empty()) std::printf("  longest stall over 0.2 s, its last tick: %s\n", stall_note.c_str());
  if (hung) std::printf("  hang: %s\n", hang_note.c_str());
  if (!progress) std::printf("  no progress: nothing received or nobody killed\n");
  std::printf("  result              %s\n", pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
