// The engine's shared memory layout, version 1. docs/engine.md has the full design;
// this file is its authoritative byte layout.
//
//   offset         size                  what
//   0              4096                  header
//   4096           4096                  bitmap: 512 × u64, bit p ⇔ priority p has messages
//   8192           262144                priority table: 32768 × {u32 head, u32 tail}
//   270336         max_messages × stride slots (stride = round_up(32 + message_size, 64))
//
// Invariants, whenever nobody holds header::lock:
//   1. curmsgs equals the number of READY slots.
//   2. Each READY slot is in exactly one list, that of its priority, ordered by seq.
//   3. Each FREE slot is in the free list exactly once.
//   4. Bitmap bit p ⇔ list p non-empty; summary bit w ⇔ bitmap word w non-zero.
//   5. next_seq exceeds the seq of every READY slot.
// Slot numbers in the region are 1-based (0 = none), so zero-filled memory is a set of
// empty lists. No pointers: offsets and slot numbers only.
#ifndef PIPC_SRC_ENGINE_LAYOUT_HPP
#define PIPC_SRC_ENGINE_LAYOUT_HPP

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace pipc::engine {

inline constexpr std::uint64_t magic = 0x0100'514d'4350'4950ULL;  // "PIPCMQ\0\1" little-endian
inline constexpr std::uint32_t layout_version = 1;

inline constexpr std::size_t page = 4096;
inline constexpr std::size_t header_size = page;
inline constexpr std::uint32_t priorities = 32768;  // MQ_PRIO_MAX
inline constexpr std::size_t bitmap_words = priorities / 64;
inline constexpr std::size_t summary_words = bitmap_words / 64;
inline constexpr std::size_t waiter_entries = 64;

// The documented caps (docs/engine.md): beyond them open fails with EINVAL.
inline constexpr std::uint64_t max_max_messages = 1u << 20;     // 1 048 576
inline constexpr std::uint64_t max_message_size = 16u << 20;    // 16 MiB

using atomic_u32 = std::atomic<std::uint32_t>;
using atomic_u64 = std::atomic<std::uint64_t>;
static_assert(atomic_u32::is_always_lock_free && atomic_u64::is_always_lock_free,
              "shared atomics must be lock-free to be address-free");

// Slot states: the commit word of each slot.
inline constexpr std::uint32_t slot_free = 0;
inline constexpr std::uint32_t slot_ready = 1;

// One message slot. `state` is the commit point of send (FREE→READY) and receive
// (READY→FREE); everything else is meaningful only while the lock is held.
struct slot_header {
  atomic_u32 state;        // slot_free | slot_ready
  std::uint32_t next;      // next slot in the same list, 1-based; 0 ends it
  std::uint32_t size;      // payload bytes (≤ message_size)
  std::uint32_t priority;  // < priorities
  std::uint64_t seq;       // arrival order
  std::uint64_t reserved;
};
static_assert(sizeof(slot_header) == 32);
static_assert(offsetof(slot_header, state) == 0 && offsetof(slot_header, next) == 4);
static_assert(offsetof(slot_header, seq) == 16);

struct list_ends {
  std::uint32_t head;  // 1-based slot numbers; valid only while the bitmap bit is set
  std::uint32_t tail;
};
static_assert(sizeof(list_ends) == 8);

// A process's count of receivers blocked in it; pid 0 marks a free entry.
struct waiter_entry {
  atomic_u32 pid;
  atomic_u32 count;
};

// Notification kinds stored in the header.
inline constexpr std::uint32_t notify_none_kind = 0;
inline constexpr std::uint32_t notify_signal_kind = 1;
inline constexpr std::uint32_t notify_thread_kind = 2;

struct alignas(64) header {
  // ---- identity and geometry: written once at creation, read-only afterwards ----
  std::uint64_t magic_word;      // magic
  std::uint32_t version;         // layout_version
  std::uint32_t header_bytes;    // header_size
  std::uint64_t region_size;     // total bytes, equal to the file's size
  std::uint64_t max_messages;    // 1 … max_max_messages
  std::uint64_t message_size;    // 1 … max_message_size
  std::uint64_t slot_stride;     // round_up(32 + message_size, 64)
  std::uint64_t bitmap_offset;   // 4096
  std::uint64_t table_offset;    // 8192
  std::uint64_t slots_offset;    // 270336
  std::uint32_t mode;            // POSIX permission bits after the umask
  std::uint32_t reserved0;
  std::int64_t created_ns;       // CLOCK_REALTIME
  std::uint8_t pad0[40];

  // ---- the lock: robust, process-shared ----
  alignas(64) pthread_mutex_t lock;

  // ---- locked state: read and written only with the lock held, except curmsgs ----
  alignas(64) std::uint32_t free_head;  // free list, 1-based; 0 = no free slot
  atomic_u32 curmsgs;                   // written under the lock, read by anyone
  std::uint64_t next_seq;
  std::uint64_t summary[summary_words];  // bit w ⇔ bitmap word w ≠ 0

  // ---- waiting: futex words and sleeper counts, written only when a side sleeps ----
  // Waiters wait for curmsgs to change; these words exist to sleep on. A side bumps
  // its sequence and wakes only when the matching sleeper count is non-zero.
  alignas(64) atomic_u32 msg_seq;  // receivers sleep on it; bumped for them by senders
  atomic_u32 msg_sleepers;         // receivers that announced a sleep
  atomic_u32 space_seq;            // senders sleep on it; bumped for them by receivers
  atomic_u32 space_sleepers;
  atomic_u32 event_seq;            // poll helpers sleep on it; bumped by every change
  atomic_u32 event_watchers;       // poll helpers that announced a sleep

  // ---- notification: written under the lock; notify_seq is a futex ----
  alignas(64) atomic_u32 notify_pid;  // registrant; 0 = none
  std::uint32_t notify_kind;          // notify_*_kind
  std::int32_t notify_signo;
  std::int32_t notify_value;
  std::uint64_t notify_start_time;    // registrant's process start time
  std::uint64_t notify_token;         // the descriptor it registered with
  atomic_u32 notify_seq;              // bumped when a thread notification fires
  std::uint32_t notify_fired_pid;     // process whose thread notification fired and
  std::uint64_t notify_fired_token;   // ... the descriptor it was for; 0 once taken

  // ---- counters: written under the lock, read by anyone without it. Senders and
  // receivers each write only their own line, so they do not bounce it between CPUs.
  alignas(64) atomic_u64 messages_sent;
  atomic_u64 bytes_sent;
  atomic_u32 high_water;  // highest curmsgs seen
  atomic_u32 last_sender;
  atomic_u32 sender_cpu;  // 1 + the CPU the last send ran on; 0 = none yet
  alignas(64) atomic_u64 messages_received;
  atomic_u64 bytes_received;
  atomic_u32 last_receiver;
  atomic_u32 receiver_cpu;  // 1 + the CPU the last receive ran on; 0 = none yet

  // ---- blocked receivers per process, for "no receiver is blocked" ----
  alignas(64) waiter_entry waiters[waiter_entries];
};

static_assert(sizeof(header) <= header_size, "the header must fit its page");
static_assert(offsetof(header, magic_word) == 0 && offsetof(header, version) == 8);
static_assert(offsetof(header, region_size) == 16 && offsetof(header, max_messages) == 24);
static_assert(offsetof(header, slots_offset) == 64 && offsetof(header, mode) == 72);
static_assert(offsetof(header, created_ns) == 80);
static_assert(offsetof(header, lock) == 128 && sizeof(pthread_mutex_t) <= 64);
static_assert(offsetof(header, free_head) == 192);
static_assert(offsetof(header, curmsgs) == 196 && offsetof(header, summary) == 208);
static_assert(offsetof(header, msg_seq) == 320 && offsetof(header, space_seq) == 328);
static_assert(offsetof(header, event_seq) == 336 && offsetof(header, notify_pid) == 384);
static_assert(offsetof(header, messages_sent) == 448 && offsetof(header, messages_received) == 512);
static_assert(offsetof(header, waiters) == 576);

// Where everything lies for a queue of this geometry.
struct geometry {
  std::uint64_t max_messages;
  std::uint64_t message_size;
  std::uint64_t slot_stride;
  std::uint64_t bitmap_offset;
  std::uint64_t table_offset;
  std::uint64_t slots_offset;
  std::uint64_t region_size;
};

// Requires: 1 ≤ max_messages ≤ max_max_messages, 1 ≤ message_size ≤ max_message_size.
constexpr geometry compute_geometry(std::uint64_t max_messages, std::uint64_t message_size) noexcept {
  geometry g{};
  g.max_messages = max_messages;
  g.message_size = message_size;
  g.slot_stride = (sizeof(slot_header) + message_size + 63) / 64 * 64;
  g.bitmap_offset = header_size;
  g.table_offset = g.bitmap_offset + bitmap_words * sizeof(std::uint64_t);
  g.slots_offset = g.table_offset + priorities * sizeof(list_ends);
  g.region_size = g.slots_offset + max_messages * g.slot_stride;
  return g;
}
static_assert(compute_geometry(1, 1).slots_offset == 270336);

}  // namespace pipc::engine

#endif  // PIPC_SRC_ENGINE_LAYOUT_HPP
