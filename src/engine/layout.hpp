// The engine's shared memory layout, version 5. docs/engine.md has the full design;
// this file is its authoritative byte layout.
//
//   offset         size                  what
//   0              2048                  header
//   2048           M × 8                 free ring   (M = bit_ceil(max_messages + 1))
//   + M × 8        M × 8                 ready ring
//   + M × 8        max_messages × 16     side heap: {u32 slot, u32 priority, u64 seq}
//   round_up(64)   max_messages × stride slots (stride = round_up(32 + message_size, 64))
//
// Everything is proportional to max_messages; nothing to the priority range. A default
// queue (10 × 8192) is 85 056 bytes (default_region_size).
//
// Invariants, whenever neither lock is held (docs/engine.md, "Invariants"):
//   1. Every slot is in exactly one of: the free ring [free_head, free_tail), the ready
//      ring [ready_head, ready_tail), the side heap, or lent out: SEND_LOAN or RECV_LOAN,
//      naming its owner process (docs/engine.md, "Loans").
//   2. Ready ring slots are RING and of priority ring_priority, in seq order.
//   3. A slot is SIDE ⇔ exactly one entry of the side heap's first side_count names it,
//      and that entry carries the slot's priority and seq.
//   4. The side heap is a binary heap: no entry is received before its parent (higher
//      priority first, then lower seq).
//   5. next_seq exceeds the seq of every queued message.
// Slot numbers in the region are 1-based (0 = none). No pointers: offsets and slot
// numbers only. Ring entries are {u32 tag, u32 slot}; an entry is valid for position p
// when its tag is p + 1.
#ifndef PIPC_SRC_ENGINE_LAYOUT_HPP
#define PIPC_SRC_ENGINE_LAYOUT_HPP

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace pipc::engine {

inline constexpr std::uint64_t magic = 0x0500'514d'4350'4950ULL;  // "PIPCMQ\0\5" little-endian
inline constexpr std::uint32_t layout_version = 5;
// The magic's first seven bytes, "PIPCMQ\0", name a pipc queue of any version; the eighth
// is the version.
inline constexpr std::uint64_t magic_family_mask = 0x00ff'ffff'ffff'ffffULL;

// The header's share of the region: the header and room for it to grow. The rings
// follow it in the same page, so a small queue's whole index lives in its first page.
inline constexpr std::size_t header_size = 2048;
inline constexpr std::uint32_t priorities = 32768;  // MQ_PRIO_MAX
inline constexpr std::size_t waiter_entries = 64;

// The documented caps (docs/engine.md): beyond them open fails with EINVAL.
inline constexpr std::uint64_t max_max_messages = 1u << 20;     // 1 048 576
inline constexpr std::uint64_t max_message_size = 16u << 20;    // 16 MiB

using atomic_u32 = std::atomic<std::uint32_t>;
using atomic_u64 = std::atomic<std::uint64_t>;
static_assert(atomic_u32::is_always_lock_free && atomic_u64::is_always_lock_free,
              "shared atomics must be lock-free to be address-free");

// Slot states. SIDE is the commit word of a side send; RING marks a slot that a ring
// sender took (ring messages commit in the ready ring, not here).
inline constexpr std::uint32_t slot_free = 0;
inline constexpr std::uint32_t slot_side = 1;
inline constexpr std::uint32_t slot_ring = 2;
// A slot lent out (docs/engine.md, "Loans"): to a sender filling it in place, or to a
// receiver reading its message in place. owner_pid and owner_start name the process.
inline constexpr std::uint32_t slot_send_loan = 3;
inline constexpr std::uint32_t slot_recv_loan = 4;
// header::recv_taking: the slot number, with this bit for a side message (one from the
// side heap).
inline constexpr std::uint32_t taking_side = 1u << 31;

// One message slot. The fields belong to whoever holds the slot: a sender that took it
// from the free ring, the side heap (under recv_lock) or the receiver taking it.
struct slot_header {
  atomic_u32 state;           // slot_free | slot_side | slot_ring | slot_send_loan | slot_recv_loan
  std::uint32_t owner_pid;    // a loan's owner process (written before the loan state)
  std::uint32_t size;         // payload bytes (≤ message_size)
  std::uint32_t priority;     // < priorities
  std::uint64_t seq;          // arrival order
  std::uint32_t position;     // the free ring position the slot was last freed at
  std::uint32_t owner_start;  // low 32 bits of the loan owner's start time (0: unknown)
};
static_assert(sizeof(slot_header) == 32);
static_assert(offsetof(slot_header, state) == 0 && offsetof(slot_header, size) == 8);
static_assert(offsetof(slot_header, seq) == 16 && offsetof(slot_header, position) == 24);
static_assert(offsetof(slot_header, owner_pid) == 4 && offsetof(slot_header, owner_start) == 28);

// Ring entries and cursor words: two u32 halves of one u64, so that one store moves both.
constexpr std::uint64_t ring_entry(std::uint32_t position, std::uint32_t slot) noexcept {
  return (std::uint64_t{slot} << 32) | static_cast<std::uint32_t>(position + 1);
}
constexpr std::uint32_t entry_tag(std::uint64_t e) noexcept { return static_cast<std::uint32_t>(e); }
constexpr std::uint32_t entry_slot(std::uint64_t e) noexcept { return static_cast<std::uint32_t>(e >> 32); }
constexpr std::uint64_t cursors(std::uint32_t free_position, std::uint32_t ring_position) noexcept {
  return (std::uint64_t{ring_position} << 32) | free_position;
}
constexpr std::uint32_t free_cursor(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w); }
constexpr std::uint32_t ring_cursor(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w >> 32); }

// An entry of the side heap: a SIDE slot and the key it is received by, copied from
// the slot so that ordering the heap reads the heap's own lines, not the slots'.
struct side_entry {
  std::uint32_t slot;      // 1-based
  std::uint32_t priority;  // the slot's priority
  std::uint64_t seq;       // the slot's seq
};
static_assert(sizeof(side_entry) == 16 && offsetof(side_entry, seq) == 8);

// Is `a` received before `b`? The higher priority first, then the older (lower seq).
constexpr bool received_before(const side_entry& a, const side_entry& b) noexcept {
  return a.priority != b.priority ? a.priority > b.priority : a.seq < b.seq;
}

// A process's count of receivers blocked in it; pid 0 marks a free entry.
// One word, {pid << 32 | count}, changed only by compare-and-swap, so that claiming an
// entry, counting in it and clearing a dead owner's never interleave.
struct waiter_entry {
  atomic_u64 word;
};
static_assert(sizeof(waiter_entry) == 8);

// Notification kinds stored in the header.
inline constexpr std::uint32_t notify_none_kind = 0;
inline constexpr std::uint32_t notify_signal_kind = 1;
inline constexpr std::uint32_t notify_thread_kind = 2;

struct alignas(64) header {
  // ---- identity and geometry: written once at creation, read-only afterwards ----
  std::uint64_t magic_word;         // magic
  std::uint32_t version;            // layout_version
  std::uint32_t header_bytes;       // header_size
  std::uint64_t region_size;        // total bytes, equal to the file's size
  std::uint64_t max_messages;       // 1 … max_max_messages
  std::uint64_t message_size;       // 1 … max_message_size
  std::uint64_t slot_stride;        // round_up(32 + message_size, 64)
  std::uint64_t heap_offset;        // ready_ring_offset + M × 8
  std::uint64_t slots_offset;
  std::uint32_t mode;               // POSIX permission bits after the umask
  std::uint32_t reserved0;
  std::int64_t created_ns;          // CLOCK_REALTIME
  std::uint64_t ring_size;          // M: entries per ring, bit_ceil(max_messages + 1)
  std::uint64_t free_ring_offset;   // header_size
  std::uint64_t ready_ring_offset;  // free_ring_offset + M × 8
  std::uint8_t pad0[24];

  // ---- the locks: engine lock words (lock.hpp), each on a line of its own. Senders
  // take send_lock; receivers take recv_lock; a side send or a notification decision
  // takes both, send_lock first.
  alignas(64) atomic_u64 send_lock;
  alignas(64) atomic_u64 recv_lock;

  // ---- sender state: written under send_lock (claim: under both) ----
  alignas(64) atomic_u64 send_cursors;  // {free_head, ready_tail}
  std::uint64_t next_seq;
  std::uint32_t ring_priority;          // the priority of every ready ring message
  atomic_u32 loan_commit;               // the lent slot a commit is putting on the ready
                                        // ring (free_head stays); 0 = none
  atomic_u32 claim_slot;                // the slot a side send is filling; 0 = none
  std::uint32_t claim_position;         // the free ring position it was taken from
  // Slots lent to senders: raised before a loan is taken, lowered after it is committed
  // or given back, so never below the truth; a loan scan sets it exactly (any lock, or
  // none: read-modify-writes only).
  atomic_u32 send_loans;
  std::uint32_t reserved2;
  atomic_u64 sender_turns;              // turns of woken senders (wait.hpp); written by
                                        // receivers that wake senders, and by those senders

  // ---- receiver state: written under recv_lock; side_count also read by senders ----
  alignas(64) atomic_u64 recv_cursors;  // {free_tail, ready_head}
  atomic_u32 side_count;                // messages in the side heap: its entries in use
  atomic_u32 recv_taking;               // the slot a receive is taking; | taking_side if
                                        // it comes from the side heap
  atomic_u32 recv_loans;                // slots lent to receivers (as send_loans)
  std::uint32_t reserved3;
  atomic_u64 receiver_turns;            // turns of woken receivers (wait.hpp); written by
                                        // senders that wake receivers, and by those receivers

  // ---- waiting: futex words and sleeper counts, written only when a side sleeps ----
  // Waiters wait for the queue to leave the state that blocks them; these words exist
  // to sleep on. A side bumps its sequence and wakes only when the matching sleeper
  // count is non-zero.
  alignas(64) atomic_u32 msg_seq;  // receivers sleep on it; bumped for them by senders
  atomic_u32 msg_sleepers;         // receivers that announced a sleep
  atomic_u32 space_seq;            // senders sleep on it; bumped for them by receivers
  atomic_u32 space_sleepers;
  atomic_u32 event_seq;            // poll helpers sleep on it; bumped by every change
  atomic_u32 event_watchers;       // poll helpers that announced a sleep
  // Where each side last ran, for waiters deciding whether to spin; stored only when it
  // changes, so this line stays shared between the CPUs.
  atomic_u32 sender_cpu;    // 1 + the CPU the last send ran on; 0 = none yet
  atomic_u32 receiver_cpu;  // 1 + the CPU the last receive ran on; 0 = none yet
  // When a side last woke the other's sleepers (CLOCK_MONOTONIC ns), so that a sleeper
  // learns how long its wait really needed (wait.hpp, the spin policy). Written only by
  // a waker that found sleepers; a queue made before these words existed leaves them 0.
  atomic_u64 msg_woken_ns;    // by senders, for receivers
  atomic_u64 space_woken_ns;  // by receivers, for senders
  // 1 while receivers wait for each message (the last receive that waited on an empty
  // queue was not behind a stream), 0 while they find messages ready: a sender moves a
  // message's lines toward the shared cache only for a waiting receiver (docs/engine.md,
  // "Cache lines"). A hint, stored only when it changes; 0 in a queue made before it.
  atomic_u32 receivers_wait;

  // ---- notification: written under both locks; notify_seq is a futex ----
  alignas(64) atomic_u32 notify_pid;  // registrant; 0 = none
  std::uint32_t notify_kind;          // notify_*_kind
  std::int32_t notify_signo;
  std::int32_t notify_value;
  std::uint64_t notify_start_time;    // registrant's process start time
  std::uint64_t notify_token;         // the descriptor it registered with
  atomic_u32 notify_seq;              // bumped when a thread notification fires
  atomic_u32 notify_fired_pid;        // process whose thread notification fired and
  std::uint64_t notify_fired_token;   // ... the descriptor it was for; 0 once taken
  std::uint32_t notify_value_high;    // the sigval's high half (notify_value: the low)

  // ---- counters: written under the side's lock, read by anyone without it. Senders
  // and receivers each write only their own line.
  alignas(64) atomic_u64 messages_sent;
  atomic_u64 bytes_sent;
  atomic_u32 last_sender;
  alignas(64) atomic_u64 messages_received;
  atomic_u64 bytes_received;
  atomic_u32 last_receiver;
  atomic_u32 high_water;  // the highest depth a receive found (see queue::receive)

  // ---- blocked receivers per process, for "no receiver is blocked" ----
  alignas(64) waiter_entry waiters[waiter_entries];
};

static_assert(sizeof(header) <= header_size, "the header must fit its share of the region");
static_assert(offsetof(header, magic_word) == 0 && offsetof(header, version) == 8);
static_assert(offsetof(header, region_size) == 16 && offsetof(header, max_messages) == 24);
static_assert(offsetof(header, heap_offset) == 48 && offsetof(header, slots_offset) == 56);
static_assert(offsetof(header, mode) == 64 && offsetof(header, created_ns) == 72);
static_assert(offsetof(header, ring_size) == 80 && offsetof(header, free_ring_offset) == 88);
static_assert(offsetof(header, ready_ring_offset) == 96);
// The bytes an open reads and checks: the identity and geometry, magic_word to
// ready_ring_offset.
inline constexpr std::size_t identity_bytes = offsetof(header, pad0);
static_assert(identity_bytes == 104);
static_assert(offsetof(header, send_lock) == 128);
static_assert(offsetof(header, recv_lock) == 192);
static_assert(offsetof(header, send_cursors) == 256 && offsetof(header, next_seq) == 264);
static_assert(offsetof(header, ring_priority) == 272 && offsetof(header, claim_slot) == 280);
static_assert(offsetof(header, loan_commit) == 276 && offsetof(header, send_loans) == 288);
static_assert(offsetof(header, recv_loans) == 336);
static_assert(offsetof(header, recv_cursors) == 320 && offsetof(header, side_count) == 328);
static_assert(offsetof(header, recv_taking) == 332 && offsetof(header, msg_seq) == 384);
static_assert(offsetof(header, sender_turns) == 296 && offsetof(header, receiver_turns) == 344);
static_assert(offsetof(header, space_seq) == 392 && offsetof(header, event_seq) == 400);
static_assert(offsetof(header, sender_cpu) == 408 && offsetof(header, receiver_cpu) == 412);
static_assert(offsetof(header, msg_woken_ns) == 416 && offsetof(header, space_woken_ns) == 424);
static_assert(offsetof(header, receivers_wait) == 432);
static_assert(offsetof(header, notify_pid) == 448 && offsetof(header, notify_value_high) == 496);
static_assert(offsetof(header, messages_sent) == 512 && offsetof(header, messages_received) == 576);
static_assert(offsetof(header, waiters) == 640 && sizeof(header) == 1152);

// Where everything lies for a queue of this geometry.
struct geometry {
  std::uint64_t max_messages;
  std::uint64_t message_size;
  std::uint64_t slot_stride;
  std::uint64_t ring_size;
  std::uint64_t free_ring_offset;
  std::uint64_t ready_ring_offset;
  std::uint64_t heap_offset;
  std::uint64_t slots_offset;
  std::uint64_t region_size;

  friend constexpr bool operator==(const geometry&, const geometry&) = default;
};

// Requires: 1 ≤ max_messages ≤ max_max_messages, 1 ≤ message_size ≤ max_message_size.
constexpr geometry compute_geometry(std::uint64_t max_messages, std::uint64_t message_size) noexcept {
  geometry g{};
  g.max_messages = max_messages;
  g.message_size = message_size;
  g.slot_stride = (sizeof(slot_header) + message_size + 63) / 64 * 64;
  // More entries than messages: a cursor may lag its side's last commit by one, and a
  // ring of exactly N entries would then let the other side refill the entry the
  // lagging cursor still points at (docs/engine.md, "How a message travels").
  g.ring_size = std::bit_ceil(max_messages + 1);
  g.free_ring_offset = header_size;
  g.ready_ring_offset = g.free_ring_offset + g.ring_size * sizeof(std::uint64_t);
  g.heap_offset = g.ready_ring_offset + g.ring_size * sizeof(std::uint64_t);
  g.slots_offset = (g.heap_offset + max_messages * sizeof(side_entry) + 63) / 64 * 64;
  g.region_size = g.slots_offset + max_messages * g.slot_stride;
  return g;
}

// The region of a queue with the attributes mq_open defaults to (10 × 8192): what a
// create costs in memory (docs/engine.md, "Layout").
inline constexpr std::uint64_t default_region_size = 85056;
static_assert(compute_geometry(10, 8192).heap_offset == 2304);
static_assert(compute_geometry(10, 8192).slots_offset == 2496);
static_assert(compute_geometry(10, 8192).region_size == default_region_size);
static_assert(compute_geometry(1, 1).region_size == 2176);
// Positions are 32-bit counters that wrap; M must divide 2^32 so that position p keeps
// entry p mod M across the wrap.
static_assert(std::bit_ceil(max_max_messages + 1) <= (std::uint64_t{1} << 31));

}  // namespace pipc::engine

#endif  // PIPC_SRC_ENGINE_LAYOUT_HPP
