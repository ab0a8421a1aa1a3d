// The region: one process's mapping of a queue's shared memory object, with private
// copies of its geometry (the shared copy is never trusted after open), and the
// lock-free and locked accessors that send, receive and recovery share.
//
// What the region keeps (docs/engine.md, "Invariants"; layout.hpp has the bytes):
//   1. Every slot is in exactly one of: the free ring, the ready ring, the side heap.
//   2. A message changes hands at exactly one store (a ring entry or a SIDE state).
//   3. Everything read from the region is input: each slot number, size, priority and
//      count is read once and bounds-checked before use; ring indices are masked.
//   4. No pointer into the region is stored in the region.
#ifndef PIPC_SRC_ENGINE_REGION_HPP
#define PIPC_SRC_ENGINE_REGION_HPP

#include "engine/layout.hpp"
#include "engine/lock.hpp"
#include "error_util.hpp"
#include "queue_backend.hpp"
#include "sys/fault_guard.hpp"
#include "sys/sys.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <climits>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>


namespace pipc::engine {

inline constexpr int corrupt = detail::encode(errc::corrupt_state);
// A sender that waited for room waits up to this long for room_batch free slots.
inline constexpr std::uint32_t room_batch = 32;
inline constexpr std::int64_t room_batch_wait_ns = 2'000;
// A receiver waiting for a batch of messages gives up when none came for this long.
inline constexpr std::int64_t message_batch_idle_ns = 500;
// The longest a blocked call sleeps before it looks at the queue again by itself.
inline constexpr std::int64_t recheck_ns = 250'000'000;

// Reads a field of the shared region exactly once. A plain read may be repeated by the
// compiler (it may assume nobody else writes the field), so a value checked once could
// be re-read, changed by a hostile process, and used unchecked.
template <class T>
T read_once(T& field) noexcept {
  return std::atomic_ref<T>(field).load(std::memory_order_relaxed);
}

// Did the last operation recorded in `cpu` (1 + its CPU, as sender_cpu and receiver_cpu
// hold it) run on this caller's CPU? Then waiting for that side by spinning would only
// keep it from running.
inline bool last_ran_here(const atomic_u32& cpu) noexcept {
  return cpu.load(std::memory_order_relaxed) == sys::current_cpu() + 1;
}

// Cache hints on a slot's lines (docs/engine.md, "Cache lines"). A slot starts a line
// (the slots start on one, and the stride is a whole number of lines); its first
// hinted_lines lines hold its header and the start of its payload, and a longer copy is
// left to the CPU's own prefetchers. Both counts stay within the slot, so no hint
// reaches past the region or into a neighbour's slot.
inline constexpr std::uint64_t hinted_lines = 4;
inline constexpr std::uint64_t demoted_lines = 16;

// The lines of a slot that the send and receive prefetches cover (at least its header's).
constexpr std::uint64_t slot_lines_hinted(const geometry& g) noexcept {
  return std::min<std::uint64_t>(g.slot_stride / 64, hinted_lines);
}

// The lines that hand a committed message of `size` payload bytes over (at most
// demoted_lines: the demote costs the sender ~7 ns a line).
constexpr std::uint64_t message_lines_demoted(std::size_t size) noexcept {
  return std::min<std::uint64_t>((sizeof(slot_header) + size + 63) / 64, demoted_lines);
}

// What faulted() reads for a region that is not mapped yet: always set.
inline constinit std::atomic<std::uint32_t> unmapped_flag{1};

struct region {
  int fd = -1;
  // The mapping, made by map() when this process first uses the queue (not at create
  // or open: a queue that is only created, or opened and closed, maps nothing). Valid
  // for a thread that has seen `mapped` true, or faulted() false; never changes after.
  std::byte* base = nullptr;
  geometry geo{};
  std::atomic<bool> mapped{false};
  // The guard's sticky fault flag once mapped; before, unmapped_flag, so that an
  // unmapped region reads as faulted and the hot paths' one check of faulted() sends
  // them to map() at no cost of their own (send and receive look at it first).
  std::atomic<const std::atomic<std::uint32_t>*> fault_flag{&unmapped_flag};
  std::atomic<pid_t> populated_by{0};  // the process whose page tables map it all
  dev_t dev = 0;  // the file's identity, to recognise it in /proc/PID/maps
  ino_t ino = 0;
  // The mapping is guarded (sys/fault_guard.hpp): if another process truncates the file
  // (or /dev/shm leaves a hole), an access past its end reads zeros instead of killing
  // this process, and sets the flag that faulted() reads.
  sys::guard_id guard;

  ~region() {
    if (mapped.load(std::memory_order_relaxed)) sys::unguard_region(guard);
    if (base != nullptr) sys::munmap(base, geo.region_size);
    if (fd >= 0) sys::close(fd);
  }

  std::atomic<bool> short_file{false};  // check_size() found the file truncated
  std::mutex map_mutex;  // serialises map()

  // Maps the region if this process has not yet (region.cpp): 0, or the errno of mmap
  // or of guarding the mapping. The cold paths call it before they touch the region;
  // send and receive call map() when faulted() says so and the region is not mapped.
  int use() noexcept {
    if (mapped.load(std::memory_order_acquire)) return 0;
    return map();
  }
  int map() noexcept;

  // Did any access of this process to the region fault, or did check_size() find the
  // file shorter than the mapping (it was truncated)? Then everything read from the
  // region since may be zeros, and every operation fails with corrupt_state. True also
  // while the region is not mapped (see fault_flag). Three loads of process-local
  // memory; false means `base` may be used (the acquire pairs with map()).
  bool faulted() const noexcept {
    return fault_flag.load(std::memory_order_acquire)->load(std::memory_order_relaxed) != 0 ||
           short_file.load(std::memory_order_relaxed);
  }
  // Mapped, and faulted since? (For a region that may not be mapped yet.)
  bool faulted_if_mapped() const noexcept { return mapped.load(std::memory_order_acquire) && faulted(); }
  // Looks at the file's size (a system call), for the cold paths and periodic checks: a
  // process that has not touched the lost pages yet learns of a truncation here.
  void check_size() noexcept {
    if (!sys::fd_size_at_least(fd, geo.region_size)) short_file.store(true, std::memory_order_relaxed);
  }

  header* hdr() const noexcept { return reinterpret_cast<header*>(base); }
  side_entry* side_heap() const noexcept { return reinterpret_cast<side_entry*>(base + geo.heap_offset); }

  // Slot `n` (1-based); nullptr if n is out of range.
  slot_header* slot(std::uint32_t n) const noexcept {
    if (n == 0 || n > geo.max_messages) return nullptr;
    return reinterpret_cast<slot_header*>(base + geo.slots_offset + (n - 1) * geo.slot_stride);
  }
  std::byte* payload(slot_header* s) const noexcept { return reinterpret_cast<std::byte*>(s) + sizeof(slot_header); }
  // The slot whose payload starts at `p` (a loan's data, as handed to its owner); 0 if
  // `p` is no slot's payload. Compares addresses only: `p` is the caller's, not the
  // region's.
  std::uint32_t slot_of_payload(const void* p) const noexcept {
    const auto at = reinterpret_cast<std::uintptr_t>(p);
    const auto first = reinterpret_cast<std::uintptr_t>(base + geo.slots_offset + sizeof(slot_header));
    if (at < first) return 0;
    const std::uintptr_t offset = at - first;
    if (offset % geo.slot_stride != 0 || offset / geo.slot_stride >= geo.max_messages) return 0;
    return static_cast<std::uint32_t>(offset / geo.slot_stride) + 1;
  }

  // Slots lent out now (send_loans + recv_loans): never below the truth (layout.hpp).
  std::uint64_t loans() const noexcept {
    const header* h = hdr();
    return std::uint64_t{h->send_loans.load(std::memory_order_relaxed)} + h->recv_loans.load(std::memory_order_relaxed);
  }

  // ---- the rings ----

  atomic_u64* free_ring() const noexcept { return reinterpret_cast<atomic_u64*>(base + geo.free_ring_offset); }
  atomic_u64* ready_ring() const noexcept { return reinterpret_cast<atomic_u64*>(base + geo.ready_ring_offset); }
  atomic_u64& entry(atomic_u64* ring, std::uint32_t position) const noexcept {
    return ring[position & (geo.ring_size - 1)];
  }
  // Does `ring` hold a valid entry for `position`? If so, `slot_number` is its slot
  // (not yet bounds-checked). Acquire: the entry publishes what was written before it.
  bool entry_at(atomic_u64* ring, std::uint32_t position, std::uint32_t& slot_number) const noexcept {
    std::uint64_t e = entry(ring, position).load(std::memory_order_acquire);
    slot_number = entry_slot(e);
    return entry_tag(e) == static_cast<std::uint32_t>(position + 1);
  }

  // Messages in the queue, free_head + N − free_tail − the slots lent out, read
  // without a lock: free_head is read on both sides of free_tail until it stands still,
  // so the two belong to one moment. A peer between its commit and its cursor store
  // puts the value one off (−1 or N + 1); it is clamped to 0 … N. (A lent slot is off
  // the free ring but is no message; the loan counts may run ahead of the cursors by a
  // loan being taken or given back.)
  std::uint64_t depth() const noexcept {
    const header* h = hdr();
    std::uint32_t head = free_cursor(h->send_cursors.load(std::memory_order_acquire));
    std::uint32_t tail = 0;
    for (int tries = 0; tries < 16; ++tries) {
      tail = free_cursor(h->recv_cursors.load(std::memory_order_acquire));
      std::uint32_t again = free_cursor(h->send_cursors.load(std::memory_order_acquire));
      if (again == head) break;
      head = again;
    }
    const auto d = static_cast<std::int64_t>(static_cast<std::int32_t>(head + static_cast<std::uint32_t>(geo.max_messages) - tail)) -
                   static_cast<std::int64_t>(std::min<std::uint64_t>(loans(), geo.max_messages));
    return static_cast<std::uint64_t>(std::clamp<std::int64_t>(d, 0, static_cast<std::int64_t>(geo.max_messages)));
  }
  // Can a sender take a slot now? (The free ring's entry at free_head is valid.)
  bool has_room() const noexcept {
    std::uint32_t n = 0;
    return entry_at(free_ring(), free_cursor(hdr()->send_cursors.load(std::memory_order_acquire)), n);
  }
  // Is there a message for a receiver now? (The ready ring's entry at ready_head is
  // valid, or the side heap is not empty.)
  bool has_message() const noexcept {
    std::uint32_t n = 0;
    return hdr()->side_count.load(std::memory_order_acquire) != 0 ||
           entry_at(ready_ring(), ring_cursor(hdr()->recv_cursors.load(std::memory_order_acquire)), n);
  }

  // Do the cursors claim a depth the queue cannot have? Under send_lock free_tail −
  // free_head lies in −1 … N (−1: a receiver between its commit and its cursor store);
  // under recv_lock in 0 … N + 1 (N + 1: a sender likewise). Reading the other side's
  // cursor costs a cache-line transfer, so the hot paths check every 64 positions
  // (check_due) and whenever they find the queue full or empty: forged cursors are
  // reported within 64 operations (docs/engine.md, "Untrusted memory").
  static bool check_due(std::uint32_t position) noexcept { return (position & 63) == 0; }
  bool send_cursors_sane(std::uint32_t free_head) const noexcept {
    std::uint32_t free_tail = free_cursor(hdr()->recv_cursors.load(std::memory_order_acquire));
    return static_cast<std::uint32_t>(free_tail - free_head + 1) <= geo.max_messages + 1;
  }
  bool recv_cursors_sane(std::uint32_t free_tail) const noexcept {
    std::uint32_t free_head = free_cursor(hdr()->send_cursors.load(std::memory_order_acquire));
    return static_cast<std::uint32_t>(free_tail - free_head) <= geo.max_messages + 1;
  }

  // The same without a lock, for a side that found the queue full or empty: exact
  // bounds whatever the others do meanwhile. free_tail − free_head read before it is at
  // least −1; free_tail − free_head read after it is at most N + 1 (one receiver and one
  // sender may each be between commit and cursor store). And positions before free_tail
  // hold valid entries until a sender takes them: a free_head behind free_tail whose
  // entry is invalid is a lie, unless a sender holds send_lock (it may have taken the
  // entry and not yet moved free_head, and receivers may have refilled the entry's place
  // one lap on) or free_head moved meanwhile.
  bool cursors_plausible() const noexcept {
    header* h = hdr();
    const std::uint32_t head_before = free_cursor(h->send_cursors.load(std::memory_order_acquire));
    const std::uint32_t tail = free_cursor(h->recv_cursors.load(std::memory_order_acquire));
    std::uint32_t n = 0;
    const bool valid = entry_at(free_ring(), head_before, n);
    const bool sender_inside = h->send_lock.load(std::memory_order_acquire) != 0;
    const std::uint32_t head_after = free_cursor(h->send_cursors.load(std::memory_order_acquire));
    const auto n_max = static_cast<std::int64_t>(geo.max_messages);
    if (static_cast<std::int32_t>(tail - head_before) < -1) return false;
    if (static_cast<std::int32_t>(tail - head_after) > n_max + 1) return false;
    return valid || sender_inside || head_after != head_before || static_cast<std::int32_t>(tail - head_before) < 1;
  }

  // A sender that found the queue full and now has room waits a little more, while a
  // receiver on another CPU is freeing slots, until room_batch slots are free. Taking
  // each slot the moment it is freed would pull the free ring's line from the receiver
  // on every message; the receiver is the slower side then, so the wait costs no
  // throughput. Never when the receiver last ran on this CPU: the wait would keep it
  // from running.
  void await_room_batch(std::int64_t spin_ns) const noexcept {
    const header* h = hdr();
    const std::uint32_t batch = batch_to_await(spin_ns, h->receiver_cpu);
    if (batch == 0) return;
    std::uint32_t n = 0;
    auto enough = [&] {
      return entry_at(free_ring(), free_cursor(h->send_cursors.load(std::memory_order_acquire)) + batch - 1, n);
    };
    const std::int64_t until = sys::now_ns(CLOCK_MONOTONIC) + std::min<std::int64_t>(spin_ns, room_batch_wait_ns);
    while (!enough()) {
      for (int k = 0; k < 8; ++k) sys::cpu_relax();
      if (sys::now_ns(CLOCK_MONOTONIC) >= until || last_ran_here(h->receiver_cpu)) return;
    }
  }

  // How many slots (or messages) a side that waited then waits for: 0 when it should not
  // wait at all (it does not spin; the queue is too small to batch; the other side,
  // whose CPU `peer_cpu` records, last ran on this CPU, and the wait would keep it off).
  std::uint32_t batch_to_await(std::int64_t spin_ns, const atomic_u32& peer_cpu) const noexcept {
    if (spin_ns <= 0) return 0;
    const auto batch = static_cast<std::uint32_t>(std::min<std::uint64_t>(room_batch, geo.max_messages / 4));
    return batch > 1 && !last_ran_here(peer_cpu) ? batch : 0;
  }

  // Are at least `k` messages on the ready ring, from ready_head on?
  bool ready_at_least(std::uint32_t k) const noexcept {
    const std::uint32_t head = ring_cursor(hdr()->recv_cursors.load(std::memory_order_relaxed));
    std::uint32_t n = 0;
    return entry_at(ready_ring(), head + k - 1, n);
  }

  // A receiver that waited for a message while a sender on another CPU streams waits a
  // little more, until room_batch messages are ready on the ready ring, as
  // await_room_batch does for senders: taking each message the moment it is committed
  // pulls the ready ring's and the slot's lines from the sender on every message, and
  // both sides then run at the speed of that transfer. It gives up as soon as the ring
  // stops growing (a sender that sent one message and now waits for an answer: the
  // caller decides whether to try at all), after room_batch_wait_ns, or when the sender
  // last ran on this CPU.
  void await_message_batch(std::int64_t spin_ns) const noexcept {
    const header* h = hdr();
    const std::uint32_t batch = batch_to_await(spin_ns, h->sender_cpu);
    if (batch == 0) return;
    const std::uint32_t head = ring_cursor(h->recv_cursors.load(std::memory_order_relaxed));
    std::uint32_t ready = 0;  // entries known valid from head on
    std::uint32_t n = 0;
    auto grow = [&] {
      const std::uint32_t before = ready;
      while (ready < batch && entry_at(ready_ring(), head + ready, n)) ++ready;
      return ready != before;
    };
    grow();
    std::int64_t now = sys::now_ns(CLOCK_MONOTONIC);
    const std::int64_t until = now + std::min<std::int64_t>(spin_ns, room_batch_wait_ns);
    std::int64_t grew_at = now;
    while (ready < batch) {
      for (int k = 0; k < 8; ++k) sys::cpu_relax();
      now = sys::now_ns(CLOCK_MONOTONIC);
      if (grow()) {
        grew_at = now;
      } else if (now - grew_at >= message_batch_idle_ns) {
        return;
      }
      if (now >= until || last_ran_here(h->sender_cpu)) return;
    }
  }

  // ---- the locks (lock.hpp; docs/engine.md, "The locks") ----

  // The queue's file, which every lock owner maps.
  lock_file file() const noexcept { return {dev, ino}; }

  // Takes send_lock; if its previous owner died holding it, repairs the send side
  // first. Returns 0 or ETIMEDOUT (the limit ran out: the holder may be stopped), or
  // EINTR for an interruptible limit.
  int lock_send(const detail::wait_limit& limit = detail::wait_limit::blocking()) {
    bool died = false;
    int e = lock_acquire(hdr()->send_lock, limit, died, file());
    if (e == 0 && died) recover_send();
    return e;
  }
  // The same for recv_lock and the receive side.
  int lock_recv(const detail::wait_limit& limit = detail::wait_limit::blocking()) {
    bool died = false;
    int e = lock_acquire(hdr()->recv_lock, limit, died, file());
    if (e == 0 && died) recover_recv();
    return e;
  }
  // Both locks, send_lock first (the only order anyone takes them in).
  int lock_both(const detail::wait_limit& limit = detail::wait_limit::blocking()) noexcept {
    if (int e = lock_send(limit); e != 0) return e;
    if (int e = lock_recv(limit); e != 0) {
      unlock_send();
      return e;
    }
    return 0;
  }
  void unlock_send() noexcept { lock_release(hdr()->send_lock); }
  void unlock_recv() noexcept { lock_release(hdr()->recv_lock); }
  void unlock_both() noexcept {
    unlock_recv();
    unlock_send();
  }

  // ---- the side heap (docs/engine.md, "Priorities"). Caller holds recv_lock. ----
  //
  // A binary heap of `count` = side_count entries, the best (received_before) first.
  // Its entries are only compared and moved here, never followed: an index into the
  // heap is below `count`, which the caller checked against max_messages, and a slot
  // number from it is checked by whoever uses it. A heap that a foreign write disorders
  // yields messages out of order, not an access outside it.

  // Adds `e` to the heap of `count` entries. Requires: count < max_messages.
  void heap_push(std::uint32_t count, const side_entry& e) noexcept {
    side_entry* heap = side_heap();
    std::uint32_t i = count;
    while (i > 0) {
      const std::uint32_t parent = (i - 1) / 2;
      const side_entry above = heap[parent];
      if (!received_before(e, above)) break;
      heap[i] = above;
      i = parent;
    }
    heap[i] = e;
  }

  // Removes the first entry of the heap of `count` entries. Requires: 1 ≤ count ≤
  // max_messages.
  void heap_pop(std::uint32_t count) noexcept {
    side_entry* heap = side_heap();
    const std::uint32_t size = count - 1;
    if (size == 0) return;
    const side_entry last = heap[size];
    std::uint32_t i = 0;
    for (;;) {
      std::uint32_t child = 2 * i + 1;
      if (child >= size) break;
      side_entry best = heap[child];
      if (child + 1 < size) {
        const side_entry right = heap[child + 1];
        if (received_before(right, best)) {
          best = right;
          ++child;
        }
      }
      if (!received_before(best, last)) break;
      heap[i] = best;
      i = child;
    }
    heap[i] = last;
  }

  // Puts slot `n` on the free ring at free_tail: the commit of a receive. Caller holds
  // recv_lock and then stores the cursors. A slot leaving the side heap records the
  // position (a side sender's claim asks whether its slot has been freed since); a ring
  // receive leaves the slot's line alone, as the sender will write it next.
  void push_free(std::uint32_t free_tail, std::uint32_t n, slot_header* s, bool from_side) noexcept {
    if (from_side) s->position = free_tail;
    entry(free_ring(), free_tail).store(ring_entry(free_tail, n), std::memory_order_release);
  }

  // Gives slot `n` back to the free ring at free_tail, as a receive does, and stores the
  // receiver cursors: the end of a receive loan, the abort of a send loan, a reclaim.
  // Caller holds recv_lock, and the slot is in neither ring nor the side heap. The state
  // becomes FREE before the push (a sender may take the slot the moment it is pushed);
  // recv_taking names it as a side slot, so that a recovery after a death between the
  // push and the cursor store moves free_tail alone.
  void give_back(std::uint32_t n, slot_header* s) noexcept {
    header* h = hdr();
    const std::uint64_t w = h->recv_cursors.load(std::memory_order_relaxed);
    const std::uint32_t free_tail = free_cursor(w);
    h->recv_taking.store(n | taking_side, std::memory_order_relaxed);
    s->state.store(slot_free, std::memory_order_release);
    push_free(free_tail, n, s, true);  // the commit
    h->recv_cursors.store(cursors(free_tail + 1, ring_cursor(w)), std::memory_order_release);
  }

  // Starts loading slot `n` for writing: it was last read by a receiver on another CPU,
  // and the next send will most likely fill it.
  void prefetch_for_send(std::uint32_t n) const noexcept {
    if (n == 0 || n > geo.max_messages) return;
    sys::hint_lines<sys::line_hint::write>(slot(n), slot_lines_hinted(geo));
  }

  // Starts loading the payload lines of slot `s`, whose header a receive is about to
  // read: the loads that copy it depend on the header's checks, and would otherwise
  // start only after the header's line has come from the sender's CPU.
  void prefetch_for_receive(const slot_header* s) const noexcept {
    sys::hint_lines<sys::line_hint::read>(reinterpret_cast<const std::byte*>(s) + 64, slot_lines_hinted(geo) - 1);
  }

  // Moves the lines of the message just committed in slot `s` (`size` payload bytes)
  // toward the cache both CPUs share, for a receiver on another CPU that waits for it.
  void demote_message(const slot_header* s, std::size_t size) const noexcept {
    sys::hint_lines<sys::line_hint::demote>(s, message_lines_demoted(size));
  }

  // ---- recovery (recovery.cpp; docs/engine.md, "Recovery") ----

  // send_lock's previous owner died. Caller holds send_lock.
  void recover_send() noexcept;
  // recv_lock's previous owner died. Caller holds recv_lock; ring senders may run.
  void recover_recv() noexcept;
  // Waiters may have missed a wake-up from a process that died: wake them all to
  // re-check.
  void wake_everyone() noexcept;
  // The loan scan (docs/engine.md, "Loans"): gives every slot that is in neither ring
  // nor the side heap, and is not lent to a live process that maps the queue, back to
  // the free ring; sets send_loans and recv_loans to the live loans found. Returns the
  // slots given back, or -1 if the rings are not in a state it can walk (corrupt).
  // Caller holds both locks.
  int reclaim_loans() noexcept;
  // The slots lent out now, from the header's counts (never below the truth; a loan
  // scan makes them exact), without a lock (for tools).
  void count_loans(std::uint32_t& sending, std::uint32_t& receiving) const noexcept;
};

// ---- creating, opening and removing regions (region.cpp) ----

// The shared memory object's file name for queue `name` ("/name"): "pipc.mq.name".
std::string leaf_name(std::string_view name);

// Opens the queue file `leaf` read-write, or creates it when `create` (with `mode`
// before the umask and the given attributes) and it does not exist. Returns 0, EEXIST
// (exclusive and it exists), ENOENT, EACCES (the queue's mode does not give the
// caller's class both read and write), or another errno or encoded pipc::errc (an
// unsafe file: foreign_owner, multiply_linked; a foreign or corrupt region).
int open_region(const std::string& leaf, mode_t mode, bool create, bool exclusive,
                bool bad_attributes, std::uint64_t max_messages, std::uint64_t message_size,
                std::shared_ptr<region>& out) noexcept;

// Fills in this process's page tables for the region (see region.cpp). Requires: mapped.
void populate(region& r) noexcept;

}  // namespace pipc::engine

#endif  // PIPC_SRC_ENGINE_REGION_HPP
