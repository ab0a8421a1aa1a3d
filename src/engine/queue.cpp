#include "engine/queue.hpp"

#include "error_util.hpp"
#include "notify_registry.hpp"
#include "sys/sys.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PIPC_CPU_RELAX() _mm_pause()
#else
#define PIPC_CPU_RELAX() std::atomic_signal_fence(std::memory_order_seq_cst)
#endif

namespace pipc::engine {

using detail::deadline;
using detail::encode;
using detail::wait_limit;

namespace {
constexpr const char* object_prefix = "pipc.mq.";
constexpr int corrupt = encode(errc::corrupt_state);
constexpr std::uint64_t eventfd_full = 0xffff'ffff'ffff'fffeULL;  // polls not writable
// A spinning waiter looks at the queue after 1, 2, then 4 pauses: each look pulls the
// line the other side is writing, so looking less often lets it write several entries
// per transfer, while four pauses keep a waiting receiver's reaction within ~100 ns.
constexpr unsigned spin_backoff_max = 4;
// Regions up to this size get their page tables filled in when a process maps them.
constexpr std::uint64_t populate_limit = std::uint64_t{256} << 20;
// The least a spin adapts down to (see wait_while).
constexpr std::int64_t min_spin_ns = 1'000;
// A sender that waited for room waits up to this long for room_batch free slots.
constexpr std::uint32_t room_batch = 32;
constexpr std::int64_t room_batch_wait_ns = 2'000;
// The longest a blocked call sleeps before it looks at the queue again by itself.
constexpr std::int64_t recheck_ns = 250'000'000;
// How long a non-blocking call waits for a lock that another process holds.
constexpr std::int64_t try_lock_patience_ns = 500'000'000;
// glibc's __owner value for a robust mutex that can no longer be made consistent.
constexpr int mutex_not_recoverable = INT_MAX - 1;

// The fences of the wake-up handshake (see "Waiting" below). ThreadSanitizer does not
// model fences (GCC warns that it does not support them), so its builds skip them and
// the waker reads the sleeper count with a read-modify-write instead, which is correct
// without fences: it reads the latest count, and when that includes a sleeper's
// announcement the two synchronise. Normal builds keep the fence and a plain load: a
// read-modify-write would take the waiting line exclusive on every message.
#if defined(__SANITIZE_THREAD__)
#define PIPC_HANDSHAKE_RMW 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PIPC_HANDSHAKE_RMW 1
#endif
#endif

void handshake_fence() noexcept {
#ifndef PIPC_HANDSHAKE_RMW
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

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
bool last_ran_here(const atomic_u32& cpu) noexcept {
  return cpu.load(std::memory_order_relaxed) == sys::current_cpu() + 1;
}

// The futex word of a robust mutex (glibc: its first int).
int lock_word(pthread_mutex_t& m) noexcept {
  return std::atomic_ref<int>(m.__data.__lock).load(std::memory_order_acquire);
}

}  // namespace

// ---------------------------------------------------------------------------------
// The region: a mapping of one queue's shared memory object, with private copies of
// its geometry (the shared copy is never trusted after open).

struct region {
  int fd = -1;
  std::byte* base = nullptr;
  geometry geo{};
  std::atomic<pid_t> populated_by{0};  // the process whose page tables map it all

  ~region() {
    if (base != nullptr) sys::munmap(base, geo.region_size);
    if (fd >= 0) sys::close(fd);
  }

  header* hdr() const noexcept { return reinterpret_cast<header*>(base); }
  std::uint64_t* bitmap() const noexcept { return reinterpret_cast<std::uint64_t*>(base + geo.bitmap_offset); }
  list_ends* table() const noexcept { return reinterpret_cast<list_ends*>(base + geo.table_offset); }

  // Slot `n` (1-based); nullptr if n is out of range.
  slot_header* slot(std::uint32_t n) const noexcept {
    if (n == 0 || n > geo.max_messages) return nullptr;
    return reinterpret_cast<slot_header*>(base + geo.slots_offset + (n - 1) * geo.slot_stride);
  }
  std::byte* payload(slot_header* s) const noexcept { return reinterpret_cast<std::byte*>(s) + sizeof(slot_header); }

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

  // Messages in the queue, free_head + N − free_tail, read without a lock: free_head
  // is read on both sides of free_tail until it stands still, so the two belong to one
  // moment. A peer between its commit and its cursor store puts the value one off (−1
  // or N + 1); it is clamped to 0 … N.
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
    const auto d = static_cast<std::int32_t>(head + static_cast<std::uint32_t>(geo.max_messages) - tail);
    return static_cast<std::uint64_t>(std::clamp<std::int64_t>(d, 0, static_cast<std::int64_t>(geo.max_messages)));
  }
  // Can a sender take a slot now? (The free ring's entry at free_head is valid.)
  bool has_room() const noexcept {
    std::uint32_t n = 0;
    return entry_at(free_ring(), free_cursor(hdr()->send_cursors.load(std::memory_order_acquire)), n);
  }
  // Is there a message for a receiver now? (The ready ring's entry at ready_head is
  // valid, or the side index is not empty.)
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
    const bool sender_inside = lock_word(h->send_lock) != 0;
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
    if (spin_ns <= 0) return;
    const std::uint32_t batch = static_cast<std::uint32_t>(std::min<std::uint64_t>(room_batch, geo.max_messages / 4));
    if (batch <= 1) return;
    const header* h = hdr();
    if (last_ran_here(h->receiver_cpu)) return;
    std::uint32_t n = 0;
    auto enough = [&] {
      return entry_at(free_ring(), free_cursor(h->send_cursors.load(std::memory_order_acquire)) + batch - 1, n);
    };
    const std::int64_t until = sys::now_ns(CLOCK_MONOTONIC) + std::min<std::int64_t>(spin_ns, room_batch_wait_ns);
    while (!enough()) {
      for (int k = 0; k < 8; ++k) PIPC_CPU_RELAX();
      if (sys::now_ns(CLOCK_MONOTONIC) >= until || last_ran_here(h->receiver_cpu)) return;
    }
  }

  // ---- the locks ----

  // Takes `m`; runs `repair` if its previous owner died holding it.
  // Returns 0; ETIMEDOUT if `limit` ran out first (a process holding the lock may be
  // stopped: a timed or non-blocking call must still return on time); or corrupt if
  // the mutex is unusable (made unrecoverable by a foreign process, or garbage).
  //
  // A lock is held for a copy and a few stores, so a contender spins with trylock (a
  // compare-and-swap, no system call) before it sleeps in the kernel: sleeping and
  // waking cost microseconds, far longer than the wait.
  template <class Repair>
  int lock(pthread_mutex_t* m, const wait_limit& limit, Repair repair) noexcept {
    // A robust mutex released without being made consistent is unrecoverable for good.
    // glibc then answers ENOTRECOVERABLE once and, from trylock, leaves the mutex
    // locked for every later caller: look at the owner field before touching it.
    if (std::atomic_ref<int>(m->__data.__owner).load(std::memory_order_relaxed) == mutex_not_recoverable) {
      return corrupt;
    }
    int e = EBUSY;
    for (int i = 0; i < 4000 && e == EBUSY; ++i) {
      e = ::pthread_mutex_trylock(m);
      if (e == EBUSY) PIPC_CPU_RELAX();
    }
    if (e == EBUSY) {
      switch (limit.kind) {
        case wait_limit::forever:
          e = ::pthread_mutex_lock(m);
          break;
        case wait_limit::none:
        case wait_limit::until: {
          // A try waits for the lock a little (its holder may just have been
          // preempted), but never for long (its holder may be stopped). The wait is
          // on CLOCK_REALTIME: pthread_mutex_timedlock is the timed lock that every
          // tool knows (ThreadSanitizer does not intercept pthread_mutex_clocklock).
          std::int64_t left = limit.kind == wait_limit::until ? limit.when.ns - sys::now_ns(limit.when.clock)
                                                               : try_lock_patience_ns;
          timespec abs = sys::to_timespec(sys::now_ns(CLOCK_REALTIME) + std::max<std::int64_t>(left, 0));
          e = ::pthread_mutex_timedlock(m, &abs);
          if (e == ETIMEDOUT) return ETIMEDOUT;
          break;
        }
      }
    }
    if (e == EOWNERDEAD) {
      repair();
      ::pthread_mutex_consistent(m);
      return 0;
    }
    return e == 0 ? 0 : corrupt;
  }

  int lock_send(const wait_limit& limit = wait_limit::blocking()) noexcept {
    return lock(&hdr()->send_lock, limit, [this] { recover_send(); });
  }
  int lock_recv(const wait_limit& limit = wait_limit::blocking()) noexcept {
    return lock(&hdr()->recv_lock, limit, [this] { recover_recv(); });
  }
  // Both locks, send_lock first (the only order anyone takes them in).
  int lock_both(const wait_limit& limit = wait_limit::blocking()) noexcept {
    if (int e = lock_send(limit); e != 0) return e;
    if (int e = lock_recv(limit); e != 0) {
      unlock_send();
      return e;
    }
    return 0;
  }
  void unlock_send() noexcept { ::pthread_mutex_unlock(&hdr()->send_lock); }
  void unlock_recv() noexcept { ::pthread_mutex_unlock(&hdr()->recv_lock); }
  void unlock_both() noexcept {
    unlock_recv();
    unlock_send();
  }

  // Did `m`'s owner die holding it (so its side awaits recovery)? The kernel marks the
  // lock word with FUTEX_OWNER_DIED when it finds such a lock.
  static bool owner_died(pthread_mutex_t& m) noexcept {
    return (lock_word(m) & FUTEX_OWNER_DIED) != 0;
  }

  // ---- the side index. Caller holds recv_lock. ----

  void set_bit(std::uint32_t p) noexcept {
    bitmap()[p / 64] |= std::uint64_t{1} << (p % 64);
    hdr()->summary[p / 4096] |= std::uint64_t{1} << ((p / 64) % 64);
  }
  void clear_bit(std::uint32_t p) noexcept {
    std::uint64_t& word = bitmap()[p / 64];
    word &= ~(std::uint64_t{1} << (p % 64));
    if (word == 0) hdr()->summary[p / 4096] &= ~(std::uint64_t{1} << ((p / 64) % 64));
  }
  bool has_bit(std::uint32_t p) const noexcept { return (bitmap()[p / 64] >> (p % 64)) & 1; }

  // The highest priority in the side index; false if the bitmaps say none (or disagree).
  bool top_priority(std::uint32_t& p) const noexcept {
    for (std::size_t i = summary_words; i-- > 0;) {
      std::uint64_t s = hdr()->summary[i];
      if (s == 0) continue;
      std::size_t w = i * 64 + (63 - static_cast<std::size_t>(std::countl_zero(s)));
      std::uint64_t word = bitmap()[w];
      if (word == 0) return false;
      p = static_cast<std::uint32_t>(w * 64 + (63 - static_cast<std::size_t>(std::countl_zero(word))));
      return true;
    }
    return false;
  }

  // Appends slot `n` (state SIDE, fields written) to the side list of priority `p`
  // (< priorities, checked by the caller). Returns false if the list's tail is not a
  // valid slot.
  bool side_append(std::uint32_t n, slot_header* s, std::uint32_t p) noexcept {
    list_ends& ends = table()[p];
    s->next = 0;
    if (has_bit(p)) {
      slot_header* tail = slot(read_once(ends.tail));
      if (tail == nullptr) return false;
      tail->next = n;
      ends.tail = n;
    } else {
      ends = {n, n};
      set_bit(p);
    }
    return true;
  }

  // Puts slot `n` on the free ring at free_tail: the commit of a receive. Caller holds
  // recv_lock and then stores the cursors. A slot leaving the side index records the
  // position (a side sender's claim asks whether its slot has been freed since); a ring
  // receive leaves the slot's line alone, as the sender will write it next.
  void push_free(std::uint32_t free_tail, std::uint32_t n, slot_header* s, bool from_side) noexcept {
    if (from_side) s->position = free_tail;
    entry(free_ring(), free_tail).store(ring_entry(free_tail, n), std::memory_order_release);
  }

  // Starts loading slot `n` for writing: it was last read by a receiver on another CPU,
  // and the next send will most likely fill it.
  void prefetch_for_send(std::uint32_t n) const noexcept {
    if (n == 0 || n > geo.max_messages) return;
    const std::byte* p = reinterpret_cast<const std::byte*>(slot(n));
    __builtin_prefetch(p, 1, 3);
    if (geo.slot_stride > 64) __builtin_prefetch(p + 64, 1, 3);
  }

  // ---- recovery (docs/engine.md, "Recovery") ----

  // send_lock's previous owner died. Caller holds send_lock.
  void recover_send() noexcept {
    header* h = hdr();
    std::uint64_t w = h->send_cursors.load(std::memory_order_relaxed);
    std::uint32_t head = free_cursor(w);
    std::uint32_t tail = ring_cursor(w);
    std::uint32_t n = 0;
    if (entry_at(ready_ring(), tail, n)) {
      // A ring send committed at ready_tail and died before moving the cursors.
      if (slot_header* s = slot(n)) h->next_seq = std::max(h->next_seq, s->seq + 1);
      h->send_cursors.store(cursors(head + 1, tail + 1), std::memory_order_release);
    } else if (std::uint32_t claimed = h->claim_slot.load(std::memory_order_relaxed);
               claimed != 0 && h->claim_position == head) {
      // A side send was under way. It committed if the slot is SIDE, or if it has been
      // received and freed since (at a later position than the claim's).
      slot_header* s = slot(claimed);
      if (s != nullptr && (s->state.load(std::memory_order_acquire) == slot_side || s->position != head)) {
        h->next_seq = std::max(h->next_seq, s->seq + 1);
        h->send_cursors.store(cursors(head + 1, tail), std::memory_order_release);
      }
    }
    h->claim_slot.store(0, std::memory_order_release);
    wake_everyone();
  }

  // recv_lock's previous owner died. Caller holds recv_lock; ring senders may run.
  void recover_recv() noexcept {
    header* h = hdr();
    std::uint64_t w = h->recv_cursors.load(std::memory_order_relaxed);
    std::uint32_t free_tail = free_cursor(w);
    std::uint32_t head = ring_cursor(w);
    std::uint32_t n = 0;
    slot_header* freed = nullptr;
    // (A receive pushes only slot numbers it checked: an entry naming no slot is garbage,
    // not a commit, and the next receive overwrites it. Taking it would put N + 1
    // entries on the free ring, and the next push would overwrite a free slot's.)
    if (entry_at(free_ring(), free_tail, n) && (freed = slot(n)) != nullptr) {
      // A receive committed at free_tail and died before moving the cursors; it
      // recorded where the message came from. (The ready ring cannot tell: once the
      // slot is free, a ring sender may put it at ready_head again.)
      const std::uint32_t taking = h->recv_taking.load(std::memory_order_acquire);
      std::uint32_t ring_slot = 0;
      const bool from_ring = (taking & ~taking_side) == n
                                 ? (taking & taking_side) == 0
                                 : entry_at(ready_ring(), head, ring_slot) && ring_slot == n;
      if (!from_ring) {
        std::uint32_t side = slot_side;
        freed->state.compare_exchange_strong(side, slot_free, std::memory_order_acq_rel);
      }
      free_tail += 1;
      h->recv_cursors.store(cursors(free_tail, from_ring ? head + 1 : head), std::memory_order_release);
    }

    // Rebuild the side index from the SIDE states: sorted by (priority, seq) in a
    // vector, or, if that memory cannot be had, by insertion into each list in seq order
    // (slower, allocates nothing, loses nothing).
    std::memset(bitmap(), 0, bitmap_words * sizeof(std::uint64_t));
    std::memset(h->summary, 0, sizeof h->summary);
    struct kept {
      std::uint32_t priority;
      std::uint64_t seq;
      std::uint32_t slot;
    };
    std::vector<kept> side;
    bool sorted = true;
    try {
      side.reserve(std::min<std::uint64_t>(h->side_count.load(std::memory_order_relaxed), geo.max_messages) + 1);
    } catch (...) {
    }
    std::uint32_t count = 0;
    for (std::uint32_t k = 1; k <= geo.max_messages; ++k) {
      slot_header* s = slot(k);
      if (s->state.load(std::memory_order_acquire) != slot_side) continue;
      const std::uint32_t p = read_once(s->priority);
      const std::uint64_t seq = read_once(s->seq);
      if (p >= priorities || read_once(s->size) > geo.message_size) {
        // Unusable (only a foreign write makes one): give the slot back to the free
        // ring, as a receive would.
        push_free(free_tail, k, s, true);
        s->state.store(slot_free, std::memory_order_release);
        free_tail += 1;
        h->recv_cursors.store(cursors(free_tail, head), std::memory_order_release);
        continue;
      }
      ++count;
      if (sorted) {
        try {
          side.push_back({p, seq, k});
          continue;
        } catch (...) {
          sorted = false;
          for (const kept& e : side) side_insert(e.slot, slot(e.slot), e.priority, e.seq);
          side.clear();
        }
      }
      side_insert(k, s, p, seq);
    }
    std::sort(side.begin(), side.end(), [](const kept& a, const kept& b) {
      return a.priority != b.priority ? a.priority < b.priority : a.seq < b.seq;
    });
    for (const kept& k : side) side_append(k.slot, slot(k.slot), k.priority);
    h->side_count.store(count, std::memory_order_release);
    wake_everyone();
  }

  // Links SIDE slot `n` into the list of priority `p` after every slot of a lower seq.
  // Recovery's fallback when it cannot allocate; the list is being rebuilt, so its
  // links were all written by this recovery.
  void side_insert(std::uint32_t n, slot_header* s, std::uint32_t p, std::uint64_t seq) noexcept {
    list_ends& ends = table()[p];
    slot_header* first = has_bit(p) ? slot(ends.head) : nullptr;
    if (first == nullptr || read_once(first->seq) > seq) {
      s->next = first != nullptr ? ends.head : 0;
      ends.head = n;
      if (first == nullptr) ends.tail = n;
      set_bit(p);
      return;
    }
    slot_header* cur = first;
    for (;;) {
      const std::uint32_t next = cur->next;
      slot_header* after = slot(next);
      if (after == nullptr || read_once(after->seq) > seq) {
        s->next = after != nullptr ? next : 0;
        cur->next = n;
        if (after == nullptr) ends.tail = n;
        return;
      }
      cur = after;
    }
  }

  // Waiters may have missed a wake-up from a process that died: wake them all to
  // re-check.
  void wake_everyone() noexcept {
    header* h = hdr();
    for (atomic_u32* word : {&h->msg_seq, &h->space_seq, &h->event_seq}) {
      word->fetch_add(1);
      sys::futex_wake(word, INT_MAX);
    }
  }
};

namespace {

// ---------------------------------------------------------------------------------
// Creating and attaching regions.

std::string leaf_name(const std::string& name) { return object_prefix + name.substr(1); }

// The file's own permissions: read-write for each class that the queue's mode gives
// any access, because receiving writes shared state too (docs/engine.md).
mode_t file_mode(mode_t queue_mode) noexcept {
  mode_t m = 0;
  if (queue_mode & 0600) m |= 0600;
  if (queue_mode & 0060) m |= 0060;
  if (queue_mode & 0006) m |= 0006;
  return m;
}

// Each process takes a page fault the first time it touches each page of the region,
// and a send or receive touches its slot under a lock: a fault there (and the
// preemption it invites) makes every other sender or receiver wait. So a process fills
// in its page tables when it opens the queue, for regions up to populate_limit (larger
// ones fault in as they are used); a child of fork() does it again, as fork does not
// copy a shared mapping's page tables. Failure only means the faults come later.
void populate(region& r) noexcept {
  const pid_t me = sys::current_pid();
  if (r.populated_by.load(std::memory_order_relaxed) == me || r.geo.region_size > populate_limit) return;
  (void)sys::populate_write(r.base, r.geo.region_size);
  r.populated_by.store(me, std::memory_order_relaxed);
}

int map_region(int fd, const geometry& geo, std::shared_ptr<region>& out) noexcept {
  void* base = nullptr;
  int e = sys::mmap_rw(fd, geo.region_size, base);
  if (e != 0) return e;

  try {
    out = std::make_shared<region>();
  } catch (...) {
    sys::munmap(base, geo.region_size);
    return ENOMEM;
  }
  out->fd = fd;
  out->base = static_cast<std::byte*>(base);
  out->geo = geo;
  populate(*out);
  return 0;
}

// One mapping per queue file per process: every open of the same file (device and
// inode) shares the region. Opening again costs no mmap, and all of a process's threads
// see the queue at one address (which is also what ThreadSanitizer needs to follow
// their synchronisation). A region outlives its file's name, so an inode in the table
// cannot be reused while its region lives; entries of dead regions are dropped lazily.
class region_table {
 public:
  region_table() {
    // A child of fork() inherits the mappings, and the table with them; the lock must
    // not be inherited held.
    ::pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                     [] { instance().mutex_.unlock(); });
  }
  static region_table& instance() {
    static region_table* table = new region_table;  // never destroyed: used until exit
    return *table;
  }
  std::shared_ptr<region> find(const struct ::stat& st) {
    std::lock_guard lock(mutex_);
    for (const auto& e : entries_) {
      if (e.dev == st.st_dev && e.ino == st.st_ino) return e.r.lock();
    }
    return nullptr;
  }
  void add(const struct ::stat& st, const std::shared_ptr<region>& r) noexcept {
    std::lock_guard lock(mutex_);
    try {
      std::erase_if(entries_, [&](const entry& e) { return e.r.expired() || (e.dev == st.st_dev && e.ino == st.st_ino); });
      entries_.push_back({st.st_dev, st.st_ino, r});
    } catch (...) {
      // Out of memory: this region stays unshared, which costs only a mapping.
    }
  }

 private:
  struct entry {
    dev_t dev;
    ino_t ino;
    std::weak_ptr<region> r;
  };
  std::mutex mutex_;
  std::vector<entry> entries_;
};

// Builds a complete queue in an unnamed file and links it as `leaf`.
// Returns 0, EEXIST if the name is taken, or another errno.
int create_region(const std::string& leaf, mode_t mode, std::uint64_t max_messages, std::uint64_t message_size,
                  std::shared_ptr<region>& out) noexcept {
  geometry geo = compute_geometry(max_messages, message_size);
  mode_t queue_mode = mode & ~sys::current_umask() & 0777;
  int fd = -1;
  int e = sys::shm_create_unnamed(file_mode(queue_mode), fd);
  if (e != 0) return e;
  e = sys::fallocate(fd, geo.region_size);
  if (e == 0) e = map_region(fd, geo, out);
  if (e != 0) {
    sys::close(fd);
    return e;
  }
  region& r = *out;
  header* h = r.hdr();  // the file is new, so everything reads as zero
  h->version = layout_version;
  h->header_bytes = header_size;
  h->region_size = geo.region_size;
  h->max_messages = geo.max_messages;
  h->message_size = geo.message_size;
  h->slot_stride = geo.slot_stride;
  h->bitmap_offset = geo.bitmap_offset;
  h->table_offset = geo.table_offset;
  h->slots_offset = geo.slots_offset;
  h->ring_size = geo.ring_size;
  h->free_ring_offset = geo.free_ring_offset;
  h->ready_ring_offset = geo.ready_ring_offset;
  h->mode = queue_mode;
  h->created_ns = sys::now_ns(CLOCK_REALTIME);
  h->next_seq = 1;

  pthread_mutexattr_t attr;
  ::pthread_mutexattr_init(&attr);
  ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  e = ::pthread_mutex_init(&h->send_lock, &attr);
  if (e == 0) e = ::pthread_mutex_init(&h->recv_lock, &attr);
  ::pthread_mutexattr_destroy(&attr);
  if (e != 0) {
    out.reset();
    return e;
  }

  // Every slot starts on the free ring, slot n at position n − 1: free_head 0,
  // free_tail N.
  auto count = static_cast<std::uint32_t>(max_messages);
  for (std::uint32_t n = 1; n <= count; ++n) {
    r.slot(n)->position = n - 1;
    r.entry(r.free_ring(), n - 1).store(ring_entry(n - 1, n), std::memory_order_relaxed);
  }
  h->send_cursors.store(cursors(0, 0), std::memory_order_relaxed);
  h->recv_cursors.store(cursors(count, 0), std::memory_order_relaxed);
  std::atomic_ref<std::uint64_t>(h->magic_word).store(magic, std::memory_order_release);

  // The queue is complete: only now does it get its name.
  e = sys::shm_link(fd, leaf.c_str());
  if (e != 0) {
    out.reset();
    return e;
  }
  struct ::stat st {};
  if (sys::fstat(fd, st) == 0) region_table::instance().add(st, out);
  return 0;
}

// Checks that an existing file (`fd`, whose status is `st`) holds a queue this code can
// use, and maps it.
int attach_region(int fd, const struct ::stat& st, std::shared_ptr<region>& out) noexcept {
  auto file_size = static_cast<std::uint64_t>(st.st_size);
  if (file_size < header_size) return encode(errc::not_a_pipc_object);

  // Read the geometry from the header page once, into locals: the region is input.
  void* first = nullptr;
  int e = sys::mmap_shared(fd, header_size, 0, false, first);
  if (e != 0) return e;
  const auto* ph = static_cast<const header*>(first);
  const std::uint64_t magic_found = ph->magic_word;
  const std::uint32_t version = ph->version;
  const std::uint32_t header_bytes = ph->header_bytes;
  const geometry claimed{ph->max_messages, ph->message_size,     ph->slot_stride,
                         ph->bitmap_offset, ph->table_offset,    ph->ring_size,
                         ph->free_ring_offset, ph->ready_ring_offset, ph->slots_offset,
                         ph->region_size};
  sys::munmap(first, header_size);

  if ((magic_found & magic_family_mask) != (magic & magic_family_mask)) return encode(errc::not_a_pipc_object);
  if (magic_found != magic || version != layout_version || header_bytes != header_size) {
    return encode(errc::layout_mismatch);
  }
  if (claimed.max_messages < 1 || claimed.max_messages > max_max_messages || claimed.message_size < 1 ||
      claimed.message_size > max_message_size) {
    return corrupt;
  }
  geometry geo = compute_geometry(claimed.max_messages, claimed.message_size);
  if (claimed != geo || file_size != geo.region_size) return corrupt;
  return map_region(fd, geo, out);
}

// May the caller open a queue whose file is `st` and whose POSIX mode is `mode` for
// the access in `flags`?
bool permitted(const struct ::stat& st, std::uint32_t mode, int flags) noexcept {
  if (sys::effective_uid() == 0) return true;
  unsigned shift = st.st_uid == sys::effective_uid() ? 6 : sys::in_group(st.st_gid) ? 3 : 0;
  unsigned bits = (mode >> shift) & 7;
  int acc = flags & O_ACCMODE;
  bool need_read = acc == O_RDONLY || acc == O_RDWR;
  bool need_write = acc == O_WRONLY || acc == O_RDWR;
  return (!need_read || (bits & 4)) && (!need_write || (bits & 2));
}

int open_existing(const std::string& leaf, int flags, std::shared_ptr<region>& out) noexcept {
  int fd = -1;
  int e = sys::shm_open_file(leaf.c_str(), fd);
  if (e != 0) return e;
  struct ::stat st {};
  e = sys::fstat(fd, st);
  if (e == 0) {
    try {
      out = region_table::instance().find(st);
    } catch (...) {
      e = ENOMEM;
    }
  }
  if (e == 0 && out) {
    sys::close(fd);  // the shared region keeps its own descriptor
    populate(*out);  // in a child of fork, whose page tables for it are empty
  } else if (e == 0) {
    e = attach_region(fd, st, out);
    if (e == 0) region_table::instance().add(st, out);
  }
  if (e != 0 && !out) sys::close(fd);
  if (e == 0 && !permitted(st, out->hdr()->mode, flags)) e = EACCES;
  if (e != 0) out.reset();
  return e;
}

// ---------------------------------------------------------------------------------
// Processes, for notification and the waiter table.

// Is the process `pid` that started at `start_time` still running?
bool same_process_alive(pid_t pid, std::uint64_t start_time) noexcept {
  if (start_time == 0 || !sys::process_exists(pid)) return false;
  return sys::process_start_time(pid) == start_time;
}

std::uint64_t own_start_time() noexcept {
  // Cached per process; a forked child has its own start time, so key it by pid.
  static std::atomic<pid_t> cached_pid{0};
  static std::atomic<std::uint64_t> cached{0};
  pid_t me = sys::current_pid();
  if (cached_pid.load(std::memory_order_acquire) != me) {
    cached.store(sys::process_start_time(me), std::memory_order_relaxed);
    cached_pid.store(me, std::memory_order_release);
  }
  return cached.load(std::memory_order_relaxed);
}

// Counts a receiver of this process as blocked; returns the entry used (or nullptr
// when the table is full of live processes: the receiver then goes uncounted).
constexpr std::uint32_t waiter_pid(std::uint64_t word) noexcept { return static_cast<std::uint32_t>(word >> 32); }
constexpr std::uint32_t waiter_count(std::uint64_t word) noexcept { return static_cast<std::uint32_t>(word); }

waiter_entry* enter_waiters(header* h) noexcept {
  auto me = static_cast<std::uint32_t>(sys::current_pid());
  // Pass 0: this process's entry; 1: a free one; 2: one of a process that is gone.
  for (int pass = 0; pass < 3; ++pass) {
    for (waiter_entry& w : h->waiters) {
      std::uint64_t word = w.word.load(std::memory_order_relaxed);
      for (;;) {
        const std::uint32_t owner = waiter_pid(word);
        const bool mine = owner == me && waiter_count(word) != 0xffff'ffffu;
        const bool free = owner == 0;
        const bool gone = pass == 2 && owner != 0 && owner != me && !sys::process_exists(static_cast<pid_t>(owner));
        if (!(pass == 0 ? mine : pass == 1 ? free : gone)) break;
        const std::uint64_t next = pass == 0 ? word + 1 : (std::uint64_t{me} << 32) | 1;
        if (w.word.compare_exchange_weak(word, next)) return &w;
      }
    }
  }
  return nullptr;
}

void leave_waiters(waiter_entry* w) noexcept {
  if (w == nullptr) return;
  // Only this process counts in its entry and nobody takes over a live process's entry,
  // so the count is not zero here.
  w->word.fetch_sub(1);
}

// Is any receiver of a live process blocked on this queue? Entries of processes that
// are gone are cleared. Caller holds both locks.
bool receivers_blocked(header* h) noexcept {
  bool any = false;
  for (waiter_entry& w : h->waiters) {
    std::uint64_t word = w.word.load();
    const std::uint32_t owner = waiter_pid(word);
    if (owner == 0 || waiter_count(word) == 0) continue;
    if (sys::process_exists(static_cast<pid_t>(owner))) {
      any = true;
    } else {
      w.word.compare_exchange_strong(word, 0);  // unless it changed meanwhile
    }
  }
  return any;
}

// A notification taken from the header (one-shot) to deliver after unlocking.
struct due_notification {
  std::uint32_t kind = notify_none_kind;
  pid_t pid = 0;
  int signo = 0;
  int value = 0;
};

}  // namespace

// ---------------------------------------------------------------------------------
// Helper threads. Each holds the region, so it stays mapped while the helper runs.

// Keeps an eventfd's counter in step with the queue's depth (docs/engine.md, "Polling").
struct queue::poll_helper {
  std::shared_ptr<region> r;
  int fd = -1;
  std::atomic<bool> stop{false};
  pthread_t thread{};
  pid_t owner = 0;
  std::mutex mutex;        // serialises sync(), so the last writer wrote the latest depth
  std::uint64_t shown = 0;  // the eventfd's counter

  ~poll_helper() {
    if (fd >= 0) sys::close(fd);
  }

  // Sets the counter from what a receive and a send would find now: 0 no message, 1
  // messages and room, 2^64-2 no room. A side whose lock's owner died counts as ready:
  // its next operation repairs the queue (and may find a message its cursors hide).
  void sync() noexcept {
    std::lock_guard lock(mutex);
    header* h = r->hdr();
    const bool readable = r->has_message() || region::owner_died(h->recv_lock);
    const bool writable = r->has_room() || region::owner_died(h->send_lock);
    std::uint64_t want = !readable ? 0 : writable ? 1 : eventfd_full;
    if (want != shown) {
      sys::eventfd_set(fd, want);
      shown = want;
    }
  }

  static void* run(void* arg) {
    auto* self = static_cast<poll_helper*>(arg);
    header* h = self->r->hdr();
    while (!self->stop.load()) {
      // Announce, then look: a change after the look bumps event_seq and wakes us.
      std::uint32_t seen = h->event_seq.load();
      h->event_watchers.fetch_add(1);
      handshake_fence();
      self->sync();
      if (self->stop.load()) break;
      // Bounded, like every sleep: a process killed between its commit and its wake-up
      // wakes nobody.
      std::int64_t wake_at = sys::now_ns(CLOCK_MONOTONIC) + recheck_ns;
      sys::futex_wait(&h->event_seq, seen, CLOCK_MONOTONIC, &wake_at);
    }
    return nullptr;
  }
};

// Waits for this descriptor's thread notification to fire, then runs its callback.
struct queue::notify_helper {
  std::shared_ptr<region> r;
  std::uint64_t token = 0;
  detail::notify_key key = 0;
  std::atomic<bool> stop{false};
  pthread_t thread{};
  pid_t owner = 0;

  static void* run(void* arg) {
    auto* self = static_cast<notify_helper*>(arg);
    header* h = self->r->hdr();
    auto me = static_cast<std::uint32_t>(sys::current_pid());
    for (;;) {
      std::uint32_t seq = h->notify_seq.load();
      if (self->stop.load()) break;  // the descriptor clears a record left behind
      if (self->r->lock_both() != 0) break;
      bool fired = h->notify_fired_pid == me && h->notify_fired_token == self->token;
      bool still_registered = h->notify_pid.load() == me && h->notify_token == self->token;
      if (fired) {
        h->notify_fired_pid = 0;
        h->notify_fired_token = 0;
      }
      self->r->unlock_both();
      if (fired) {
        detail::notify_registry_fire(self->key);
        break;
      }
      if (!still_registered) break;
      // Bounded: a sender killed between recording the notification and waking this
      // helper wakes nobody.
      std::int64_t wake_at = sys::now_ns(CLOCK_MONOTONIC) + recheck_ns;
      sys::futex_wait(&h->notify_seq, seq, CLOCK_MONOTONIC, &wake_at);
    }
    detail::notify_registry_remove(self->key);
    return nullptr;
  }
};

// ---------------------------------------------------------------------------------
// queue

queue::queue(std::shared_ptr<region> r, std::string name, int flags, std::int64_t spin_ns) noexcept
    : region_(std::move(r)),
      name_(std::move(name)),
      can_send_((flags & O_ACCMODE) != O_RDONLY),
      can_receive_((flags & O_ACCMODE) != O_WRONLY),
      nonblocking_((flags & O_NONBLOCK) != 0),
      spin_ns_(sys::online_cpus() > 1 ? (spin_ns < 0 ? default_spin_ns : spin_ns) : 0),
      send_spin_(spin_ns_),
      receive_spin_(spin_ns_),
      token_(sys::random64() | 1),
      opener_pid_(sys::current_pid()) {}

std::string queue::object_name(const std::string& name) {
  // Built by appending: GCC 12 warns falsely (-Wrestrict) about "/" + std::string&&.
  std::string object = "/";
  object += leaf_name(name);
  return object;
}

int queue::open(const open_request& request, std::unique_ptr<queue>& out) noexcept {
  int acc = request.flags & O_ACCMODE;
  if (acc != O_RDONLY && acc != O_WRONLY && acc != O_RDWR) return EINVAL;
  bool create = (request.flags & O_CREAT) != 0;
  bool exclusive = create && (request.flags & O_EXCL) != 0;
  // Attributes matter only if this call creates the queue (they are ignored for an
  // existing one, as mq_open ignores them), so a bad one is reported only then.
  std::uint64_t max_messages = 10;
  std::uint64_t message_size = 8192;
  bool bad_attributes = false;
  if (create && request.has_attributes) {
    bad_attributes = request.max_messages <= 0 || request.message_size <= 0 ||
                     static_cast<std::uint64_t>(request.max_messages) > max_max_messages ||
                     static_cast<std::uint64_t>(request.message_size) > max_message_size;
    if (!bad_attributes) {
      max_messages = static_cast<std::uint64_t>(request.max_messages);
      message_size = static_cast<std::uint64_t>(request.message_size);
    }
  }

  std::string leaf;
  try {
    leaf = leaf_name(request.name);
  } catch (...) {
    return ENOMEM;
  }
  std::shared_ptr<region> r;
  int e = ENOENT;
  // A queue may be unlinked between a failed create and the open that follows, or
  // created between a failed open and the create: a few rounds settle every race.
  for (int round = 0; round < 100; ++round) {
    if (!exclusive) {
      e = open_existing(leaf, request.flags, r);
      if (e != ENOENT || !create) break;
    }
    if (bad_attributes) {
      // With O_EXCL an existing name is EEXIST whatever the attributes.
      e = exclusive && sys::shm_file_exists(leaf.c_str()) ? EEXIST : EINVAL;
      break;
    }
    e = create_region(leaf, request.mode, max_messages, message_size, r);
    if (e != EEXIST || exclusive) break;
  }
  if (e != 0) return e;
  try {
    out.reset(new queue(std::move(r), request.name, request.flags, request.spin_ns));
  } catch (...) {
    return ENOMEM;
  }
  return 0;
}

int queue::unlink(const std::string& name) noexcept {
  try {
    return sys::shm_unlink_file(leaf_name(name).c_str());
  } catch (...) {
    return ENOMEM;
  }
}

queue::~queue() {
  stop_notify_helper();
  header* h = region_->hdr();
  auto me = static_cast<std::uint32_t>(sys::current_pid());
  // Closing the registering descriptor ends the registration, and drops a thread
  // notification that fired for it but whose helper had not run (left in the header,
  // it would make every later registration EBUSY while this process lives).
  if ((h->notify_pid.load() == me || h->notify_fired_pid == me) && region_->lock_both() == 0) {
    if (h->notify_pid.load() == me && h->notify_token == token_) h->notify_pid.store(0);
    if (h->notify_fired_pid == me && h->notify_fired_token == token_) {
      h->notify_fired_pid = 0;
      h->notify_fired_token = 0;
    }
    region_->unlock_both();
  }
  std::shared_ptr<poll_helper> poll;
  {
    std::lock_guard lock(helpers_mutex_);
    poll = std::move(poll_);
  }
  poll_active_.store(nullptr);
  if (poll && poll->owner == sys::current_pid()) {
    poll->stop.store(true);
    h->event_seq.fetch_add(1);
    sys::futex_wake(&h->event_seq, INT_MAX);
    sys::thread_join(poll->thread);
  }
}

// ---- send and receive ----

namespace {

// Waiting (docs/engine.md, "Waiting"). A blocked side waits for the queue to leave the
// state that blocks it (no free slot for a sender; no message for a receiver): first
// by spinning, then asleep on a futex word. A sleeper announces itself in `sleepers`
// and never takes itself off; the other side, after its commit, wakes only if it finds
// sleepers, and then resets the count, bumps the word and wakes them all. So the
// uncontended path makes no system call, one sleep costs one FUTEX_WAKE however many
// operations follow it, and a sleeper that timed out or died costs at most one
// needless wake.
//
// No wake-up is lost: the sleeper announces itself, fences (handshake_fence()), and
// looks at the queue; the waker commits, fences, and looks at the count. With both
// fences sequentially consistent, one of the two sees the other's store.
//
// The waker's fence, after its commit and before it looks for sleepers.
void committed() noexcept { handshake_fence(); }

std::uint32_t sleepers_after_commit(atomic_u32& sleepers) noexcept {
#ifdef PIPC_HANDSHAKE_RMW
  return sleepers.fetch_add(0, std::memory_order_seq_cst);
#else
  return sleepers.load(std::memory_order_relaxed);
#endif
}

// Called after committed(), outside the locks.
void wake_sleepers(atomic_u32& word, atomic_u32& sleepers) noexcept {
  if (sleepers_after_commit(sleepers) != 0 && sleepers.exchange(0, std::memory_order_seq_cst) != 0) {
    word.fetch_add(1, std::memory_order_seq_cst);
    sys::futex_wake(&word, INT_MAX);
  }
}

bool deadline_passed(const wait_limit& limit) noexcept {
  return limit.kind == wait_limit::until && sys::now_ns(limit.when.clock) >= limit.when.ns;
}

// Spins for up to spin_ns, then sleeps on `word`, while blocked() holds. Returns 0 when
// the state may have changed, ETIMEDOUT when the limit passed, EINTR when a signal
// handler interrupted the sleep.
//
// `interruptible` (the C API): EINTR is returned to the caller, except that an untimed
// call is restarted when every handler that could have run was installed with
// SA_RESTART, as the kernel restarts mq_receive (the kernel itself never restarts a
// futex wait that has a time limit, and every sleep here has one).
//
// Spinning only helps when the other side runs on another CPU; when the last
// operation of the other side (`peer_cpu`, 1 + its CPU) ran on this CPU, spinning
// would only keep it off the CPU, so the waiter goes to sleep at once.
//
// And it only helps while it usually succeeds. With more runnable processes than CPUs
// (two producers and two consumers on two CPUs, say) a spinner mostly keeps a peer that
// shares its CPU from running, then sleeps anyway. So the spin adapts, per open
// description and side (`budget`, starting at spin_ns): a spin that ends in success
// doubles the budget, up to spin_ns; one that ends in sleep halves it, down to
// min_spin_ns. With CPUs to spare nothing changes; oversubscribed, the queue behaves
// like a blocking one.
template <class Blocked>
int wait_while(Blocked blocked, atomic_u32& word, atomic_u32& sleepers, const atomic_u32& peer_cpu,
               std::int64_t spin_ns, std::atomic<std::int64_t>& budget, const wait_limit& limit,
               bool interruptible) noexcept {
  if (spin_ns > 0 && !last_ran_here(peer_cpu)) {
    const std::int64_t allowed = std::clamp(budget.load(std::memory_order_relaxed), min_spin_ns, spin_ns);
    const std::int64_t until = sys::now_ns(CLOCK_MONOTONIC) + allowed;
    unsigned backoff = 1;
    for (unsigned i = 1;; ++i) {
      if (!blocked()) {
        if (allowed < spin_ns) budget.store(std::min(allowed * 2, spin_ns), std::memory_order_relaxed);
        return 0;
      }
      for (unsigned k = 0; k < backoff; ++k) PIPC_CPU_RELAX();
      if (backoff < spin_backoff_max) backoff *= 2;
      if ((i & 15) == 0) {
        if (sys::now_ns(CLOCK_MONOTONIC) >= until) {
          budget.store(std::max(allowed / 2, min_spin_ns), std::memory_order_relaxed);
          break;
        }
        if (last_ran_here(peer_cpu)) break;
        if (deadline_passed(limit)) return ETIMEDOUT;
      }
    }
  }
  std::uint32_t seen = word.load(std::memory_order_seq_cst);
  sleepers.fetch_add(1, std::memory_order_seq_cst);
  handshake_fence();
  if (!blocked()) return 0;
  // Sleep at most recheck_ns at a time: a process killed between changing the queue
  // and waking its sleepers (or while holding the lock) wakes nobody, so a sleeper
  // looks again now and then, and the caller's loop repairs or proceeds.
  std::int64_t now = sys::now_ns(CLOCK_MONOTONIC);
  std::int64_t wake_at = now + recheck_ns;
  bool limited = false;
  if (limit.kind == wait_limit::until) {
    std::int64_t left = limit.when.ns - (limit.when.clock == CLOCK_MONOTONIC ? now : sys::now_ns(limit.when.clock));
    if (now + left <= wake_at) {
      wake_at = now + left;
      limited = true;
    }
  }
  int e = sys::futex_wait(&word, seen, CLOCK_MONOTONIC, &wake_at);
  if (e == ETIMEDOUT && !limited) return 0;
  if (e == EINTR && interruptible && limit.kind == wait_limit::forever && sys::unblocked_handlers_restart()) return 0;
  return e == ETIMEDOUT || e == EINTR ? e : 0;
}

// Records a committed change of the queue for poll helpers. Called after committed().
void announce_event(header* h) noexcept { wake_sleepers(h->event_seq, h->event_watchers); }

// Adds to a counter that only lock holders write: no read-modify-write needed.
template <class Atomic, class T>
void add_locked(Atomic& counter, T amount) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + amount, std::memory_order_relaxed);
}

// Stores `value` only if it differs: a word that others read on their hot path keeps
// its cache line shared while it does not change.
void store_if_changed(atomic_u32& word, std::uint32_t value) noexcept {
  if (word.load(std::memory_order_relaxed) != value) word.store(value, std::memory_order_relaxed);
}

// Counts one operation of a side (its lock held): messages, bytes, the last process and
// the CPU it ran on.
void count_operation(atomic_u64& messages, atomic_u64& bytes, atomic_u32& last_pid, atomic_u32& last_cpu,
                     std::size_t size) noexcept {
  add_locked(messages, std::uint64_t{1});
  add_locked(bytes, std::uint64_t{size});
  store_if_changed(last_pid, static_cast<std::uint32_t>(sys::current_pid()));
  store_if_changed(last_cpu, sys::current_cpu() + 1);
}

}  // namespace

// How long this call may wait for the lock: a non-blocking description waits no more
// than a try.
wait_limit queue::lock_limit(const wait_limit& limit) const noexcept {
  return nonblocking_.load(std::memory_order_relaxed) ? wait_limit::immediate() : limit;
}

// What a call that cannot go on now reports: EAGAIN on a non-blocking description
// (O_NONBLOCK), ETIMEDOUT for a try or a deadline.
int queue::would_block() const noexcept {
  return nonblocking_.load(std::memory_order_relaxed) ? EAGAIN : ETIMEDOUT;
}

// After a commit, outside the locks: wakes the other side's sleepers (on `word`, counted
// in `sleepers`) and the poll helpers, and brings this descriptor's eventfd up to date.
// Inline: it ends every send and receive, and an out-of-line call costs the
// uncontended pair about 5 ns (7 %).
inline void queue::after_commit(atomic_u32& word, atomic_u32& sleepers) noexcept {
  committed();
  wake_sleepers(word, sleepers);
  announce_event(region_->hdr());
  if (poll_helper* own = poll_active_.load(std::memory_order_acquire)) own->sync();
}

int queue::send(const void* data, std::size_t size, unsigned priority, const wait_limit& limit,
                bool interruptible) noexcept {
  if (!can_send_) return EBADF;
  region& r = *region_;
  if (size > r.geo.message_size) return EMSGSIZE;
  if (priority >= priorities) return EINVAL;
  header* h = r.hdr();
  const auto max = static_cast<std::uint32_t>(r.geo.max_messages);

  for (;;) {
    // Full? Then there is nothing to lock for: wait for room, or report. (A lock whose
    // owner died mid-send goes to the locked path, which repairs it.)
    if (!r.has_room() && !region::owner_died(h->send_lock)) {
      if (!r.cursors_plausible()) return corrupt;
      if (nonblocking_.load(std::memory_order_relaxed) || limit.kind == wait_limit::none || deadline_passed(limit)) {
        return would_block();
      }
      int e = wait_while([&] { return !r.has_room(); }, h->space_seq, h->space_sleepers, h->receiver_cpu, spin_ns_,
                         send_spin_, limit, interruptible);
      if (e == EINTR && interruptible) return EINTR;
      if (e == 0) r.await_room_batch(spin_ns_);
      continue;  // on ETIMEDOUT the check above reports it, unless room appeared
    }

    if (int e = r.lock_send(lock_limit(limit)); e != 0) return e == ETIMEDOUT ? would_block() : e;
    // Caller holds send_lock from here to the unlock.
    const std::uint64_t w = h->send_cursors.load(std::memory_order_relaxed);
    const std::uint32_t head = free_cursor(w);
    const std::uint32_t tail = ring_cursor(w);
    std::uint32_t n = 0;
    const bool room = r.entry_at(r.free_ring(), head, n);
    if ((!room || region::check_due(head)) && !r.send_cursors_sane(head)) {
      r.unlock_send();
      return corrupt;
    }
    if (!room) {
      r.unlock_send();
      continue;  // filled up meanwhile
    }
    slot_header* s = r.slot(n);
    if (s == nullptr) {
      r.unlock_send();
      return corrupt;
    }

    // The ready ring takes messages of its priority, and takes this message's priority
    // when the queue is empty: no side message, and receivers have reached ready_tail.
    // (Only senders add messages, and this one holds send_lock.)
    bool ring = priority == h->ring_priority;
    if (!ring && h->side_count.load(std::memory_order_acquire) == 0 &&
        ring_cursor(h->recv_cursors.load(std::memory_order_acquire)) == tail) {
      h->ring_priority = priority;
      ring = true;
    }
    // A side send, and a send that must decide on a notification (which needs the
    // exact depth before it), take recv_lock too.
    const bool notify_check = h->notify_pid.load(std::memory_order_relaxed) != 0;
    const bool both = !ring || notify_check;
    if (both) {
      if (int e = r.lock_recv(lock_limit(limit)); e != 0) {
        r.unlock_send();
        return e == ETIMEDOUT ? would_block() : e;
      }
    }
    auto unlock = [&] { both ? r.unlock_both() : r.unlock_send(); };
    // A side send stores side_count + 1 and appends after its list's tail: both are
    // read from the region. With a slot free at free_head, the side index holds at most
    // N − 1 messages; a larger count is garbage (all ones would wrap to 0 and hide the
    // side index from receivers).
    if (!ring && (h->side_count.load(std::memory_order_relaxed) >= max ||
                  (r.has_bit(priority) && r.slot(r.table()[priority].tail) == nullptr))) {
      unlock();
      return corrupt;
    }

    // A message on an empty queue with no receiver waiting: take the registration.
    due_notification due;
    bool notify = false;
    if (notify_check) {
      const std::uint32_t before = head + max - free_cursor(h->recv_cursors.load(std::memory_order_relaxed));
      if (before == 0 && h->notify_pid.load() != 0 && !receivers_blocked(h)) {
        due = {h->notify_kind, static_cast<pid_t>(h->notify_pid.load()), h->notify_signo, h->notify_value};
        notify = same_process_alive(due.pid, h->notify_start_time);
        if (notify && due.kind == notify_thread_kind) {
          h->notify_fired_pid = static_cast<std::uint32_t>(due.pid);
          h->notify_fired_token = h->notify_token;
        }
        h->notify_pid.store(0);
      }
    }

    // Fill the slot, then commit with one store (docs/engine.md, "Commit points").
    const std::uint64_t seq = h->next_seq;
    s->size = static_cast<std::uint32_t>(size);
    s->priority = priority;
    s->seq = seq;
    if (ring) {
      s->state.store(slot_ring, std::memory_order_relaxed);
      if (size != 0) std::memcpy(r.payload(s), data, size);
      r.entry(r.ready_ring(), tail).store(ring_entry(tail, n), std::memory_order_release);
      h->next_seq = seq + 1;
      h->send_cursors.store(cursors(head + 1, tail + 1), std::memory_order_release);
    } else {
      s->position = head;  // before the claim: see recover_send
      h->claim_position = head;
      h->claim_slot.store(n, std::memory_order_release);
      if (size != 0) std::memcpy(r.payload(s), data, size);
      s->state.store(slot_side, std::memory_order_release);
      r.side_append(n, s, priority);  // its tail was checked above
      h->side_count.store(h->side_count.load(std::memory_order_relaxed) + 1, std::memory_order_release);
      h->next_seq = seq + 1;
      h->send_cursors.store(cursors(head + 1, tail), std::memory_order_release);
      h->claim_slot.store(0, std::memory_order_release);
    }

    if (std::uint32_t next = 0; r.entry_at(r.free_ring(), head + 1, next)) r.prefetch_for_send(next);
    count_operation(h->messages_sent, h->bytes_sent, h->last_sender, h->sender_cpu, size);
    unlock();

    after_commit(h->msg_seq, h->msg_sleepers);
    if (notify) {
      if (due.kind == notify_signal_kind) {
        sys::send_mesgq_signal(due.pid, due.signo, due.value);
      } else if (due.kind == notify_thread_kind) {
        h->notify_seq.fetch_add(1);
        sys::futex_wake(&h->notify_seq, INT_MAX);
      }
    }
    return 0;
  }
}

int queue::receive(void* buffer, std::size_t capacity, std::size_t& size, unsigned& priority,
                   const wait_limit& limit, bool interruptible) noexcept {
  if (!can_receive_) return EBADF;
  region& r = *region_;
  if (capacity < r.geo.message_size) return EMSGSIZE;
  header* h = r.hdr();
  waiter_entry* waiting = nullptr;  // this receiver's count in the waiter table
  auto done = [&](int e) {
    leave_waiters(waiting);
    return e;
  };

  for (;;) {
    // Empty? Then there is nothing to lock for: wait for a message, or report. (A lock
    // whose owner died mid-update goes to the locked path, which repairs the queue.)
    if (!r.has_message() && !region::owner_died(h->recv_lock)) {
      if (!r.cursors_plausible()) return done(corrupt);
      if (nonblocking_.load(std::memory_order_relaxed) || limit.kind == wait_limit::none || deadline_passed(limit)) {
        return done(would_block());
      }
      if (waiting == nullptr) waiting = enter_waiters(h);
      int e = wait_while([&] { return !r.has_message(); }, h->msg_seq, h->msg_sleepers, h->sender_cpu, spin_ns_,
                         receive_spin_, limit, interruptible);
      if (e == EINTR && interruptible) return done(EINTR);
      continue;  // on ETIMEDOUT the check above reports it, unless a message came
    }

    if (int e = r.lock_recv(lock_limit(limit)); e != 0) return done(e == ETIMEDOUT ? would_block() : e);
    // Caller holds recv_lock from here to unlock_recv().
    auto fail = [&] {
      r.unlock_recv();
      return done(corrupt);
    };
    const std::uint64_t w = h->recv_cursors.load(std::memory_order_relaxed);
    const std::uint32_t free_tail = free_cursor(w);
    const std::uint32_t head = ring_cursor(w);
    std::uint32_t ring_n = 0;
    const bool in_ring = r.entry_at(r.ready_ring(), head, ring_n);
    const std::uint32_t side = h->side_count.load(std::memory_order_relaxed);
    if ((!in_ring && side == 0) || region::check_due(free_tail)) {
      if (!r.recv_cursors_sane(free_tail)) return fail();
    }
    if (!in_ring && side == 0) {
      r.unlock_recv();
      continue;  // another receiver was first
    }
    if (side > r.geo.max_messages) return fail();
    // Each candidate's fields are read once and checked; only those copies are used.
    struct candidate {
      slot_header* s = nullptr;
      std::uint32_t n = 0, size = 0, priority = 0, next = 0;
      std::uint64_t seq = 0;
    };
    candidate ring_c;
    if (in_ring) {
      ring_c = {r.slot(ring_n), ring_n};
      if (ring_c.s == nullptr) return fail();
      ring_c.size = read_once(ring_c.s->size);
      ring_c.priority = read_once(ring_c.s->priority);
      ring_c.seq = read_once(ring_c.s->seq);
      if (ring_c.size > r.geo.message_size || ring_c.priority >= priorities) return fail();
    }
    candidate side_c;
    std::uint32_t p = 0;
    if (side != 0) {
      if (!r.top_priority(p)) return fail();
      side_c.n = read_once(r.table()[p].head);
      side_c.s = r.slot(side_c.n);
      if (side_c.s == nullptr || side_c.s->state.load(std::memory_order_relaxed) != slot_side) return fail();
      side_c.size = read_once(side_c.s->size);
      side_c.priority = read_once(side_c.s->priority);
      side_c.next = read_once(side_c.s->next);
      side_c.seq = read_once(side_c.s->seq);
      if (side_c.priority != p || side_c.size > r.geo.message_size ||
          (side_c.next != 0 && r.slot(side_c.next) == nullptr)) {
        return fail();
      }
    }
    // The oldest message of the highest priority: the side index's best or the ring's.
    const bool from_side = side_c.s != nullptr && (ring_c.s == nullptr || p > ring_c.priority ||
                                                   (p == ring_c.priority && side_c.seq < ring_c.seq));
    const candidate& c = from_side ? side_c : ring_c;
    slot_header* s = c.s;
    const std::uint32_t n = c.n;
    const std::uint32_t next = c.next;
    h->recv_taking.store(from_side ? n | taking_side : n, std::memory_order_relaxed);

    // The high-water mark. Every peak of the depth is followed by a receive, so the
    // receivers keep the mark: the depth exceeds it exactly when the ready ring holds a
    // message at ready_head + (mark − side_count), an entry usually on the line just
    // read. Only then are the senders' cursors read, for the exact depth. (stats() adds
    // the current depth, for a peak that no receive has followed yet.)
    if (std::uint32_t mark = h->high_water.load(std::memory_order_relaxed); mark < r.geo.max_messages) {
      std::uint32_t unused = 0;
      if (side > mark || r.entry_at(r.ready_ring(), head + (mark - side), unused)) {
        std::uint64_t depth = r.depth();
        if (depth > mark && depth <= r.geo.max_messages) {
          h->high_water.store(static_cast<std::uint32_t>(depth), std::memory_order_relaxed);
        }
      }
    }

    // Copy out, then commit with one store (docs/engine.md, "Commit points").
    size = c.size;
    priority = c.priority;
    if (size != 0) std::memcpy(buffer, r.payload(s), size);
    r.push_free(free_tail, n, s, from_side);
    if (from_side) {
      if (next == 0) {
        r.clear_bit(p);
      } else {
        r.table()[p].head = next;
      }
      h->side_count.store(side - 1, std::memory_order_release);
      // A ring sender may already have taken the slot and marked it RING.
      std::uint32_t was = slot_side;
      s->state.compare_exchange_strong(was, slot_free, std::memory_order_acq_rel);
      h->recv_cursors.store(cursors(free_tail + 1, head), std::memory_order_release);
    } else {
      h->recv_cursors.store(cursors(free_tail + 1, head + 1), std::memory_order_release);
    }
    count_operation(h->messages_received, h->bytes_received, h->last_receiver, h->receiver_cpu, size);
    r.unlock_recv();

    after_commit(h->space_seq, h->space_sleepers);
    return done(0);
  }
}

void queue::attributes(long& max_messages, long& message_size, long& current_messages,
                       bool& nonblocking) const noexcept {
  max_messages = static_cast<long>(region_->geo.max_messages);
  message_size = static_cast<long>(region_->geo.message_size);
  std::uint64_t depth = region_->depth();
  current_messages = static_cast<long>(std::min<std::uint64_t>(depth, region_->geo.max_messages));
  nonblocking = nonblocking_.load(std::memory_order_relaxed);
}

queue_stats queue::stats() const noexcept {
  const header* h = region_->hdr();
  queue_stats s{};
  s.max_messages = region_->geo.max_messages;
  s.message_size = region_->geo.message_size;
  s.current_messages = std::min<std::uint64_t>(region_->depth(), s.max_messages);
  s.messages_sent = h->messages_sent.load(std::memory_order_relaxed);
  s.messages_received = h->messages_received.load(std::memory_order_relaxed);
  s.bytes_sent = h->bytes_sent.load(std::memory_order_relaxed);
  s.bytes_received = h->bytes_received.load(std::memory_order_relaxed);
  s.high_water = static_cast<std::uint32_t>(
      std::max<std::uint64_t>(h->high_water.load(std::memory_order_relaxed), s.current_messages));
  s.last_sender = h->last_sender.load(std::memory_order_relaxed);
  s.last_receiver = h->last_receiver.load(std::memory_order_relaxed);
  s.mode = h->mode;
  s.notify_pid = h->notify_pid.load(std::memory_order_relaxed);
  s.created_ns = h->created_ns;
  return s;
}

// ---- notification ----

// Records this process and descriptor as the registrant. Takes and releases the lock.
int queue::register_notification(std::uint32_t kind, int signo, int value) noexcept {
  region& r = *region_;
  header* h = r.hdr();
  if (int e = r.lock_both(); e != 0) return e;
  std::uint32_t owner = h->notify_pid.load();
  if (owner != 0 && same_process_alive(static_cast<pid_t>(owner), h->notify_start_time)) {
    r.unlock_both();
    return EBUSY;
  }
  // A thread notification that fired but whose helper has not run yet still holds
  // the queue, so that its helper cannot mistake a newer record for its own; unless it
  // is this descriptor's own, whose helper this registration replaces.
  const bool own_fired = h->notify_fired_pid == static_cast<std::uint32_t>(sys::current_pid()) &&
                         h->notify_fired_token == token_;
  if (h->notify_fired_token != 0 && !own_fired && sys::process_exists(static_cast<pid_t>(h->notify_fired_pid))) {
    r.unlock_both();
    return EBUSY;
  }
  h->notify_fired_pid = 0;
  h->notify_fired_token = 0;
  h->notify_kind = kind;
  h->notify_signo = signo;
  h->notify_value = value;
  h->notify_start_time = own_start_time();
  h->notify_token = token_;
  h->notify_pid.store(static_cast<std::uint32_t>(sys::current_pid()));
  r.unlock_both();
  return 0;
}

int queue::notify_signal(int signo, int value) noexcept {
  if (signo <= 0 || signo >= NSIG) return EINVAL;
  stop_notify_helper();
  return register_notification(notify_signal_kind, signo, value);
}

int queue::notify_none() noexcept {
  stop_notify_helper();
  return register_notification(notify_none_kind, 0, 0);
}

int queue::notify_thread(std::function<void()> callback) noexcept {
  std::shared_ptr<notify_helper> helper;
  try {
    helper = std::make_shared<notify_helper>();
    helper->key = detail::notify_registry_add(std::move(callback));
  } catch (...) {
    return ENOMEM;
  }
  helper->r = region_;
  helper->token = token_;
  helper->owner = sys::current_pid();
  int e = register_notification(notify_thread_kind, 0, 0);
  if (e != 0) {
    detail::notify_registry_remove(helper->key);
    return e;
  }
  stop_notify_helper();
  // The helper owns a reference to itself for as long as its thread runs.
  auto* self = new (std::nothrow) std::shared_ptr<notify_helper>(helper);
  if (self == nullptr) {
    cancel_notification();
    return ENOMEM;
  }
  e = sys::thread_start(
      [](void* arg) -> void* {
        auto* owned = static_cast<std::shared_ptr<notify_helper>*>(arg);
        notify_helper::run(owned->get());
        delete owned;
        return nullptr;
      },
      self, helper->thread);
  if (e != 0) {
    delete self;
    cancel_notification();
    return e;
  }
  ::pthread_detach(helper->thread);
  std::lock_guard lock(helpers_mutex_);
  notify_ = std::move(helper);
  return 0;
}

int queue::cancel_notification() noexcept {
  stop_notify_helper();
  region& r = *region_;
  header* h = r.hdr();
  if (int e = r.lock_both(); e != 0) return e;
  if (h->notify_pid.load() == static_cast<std::uint32_t>(sys::current_pid())) h->notify_pid.store(0);
  r.unlock_both();
  return 0;
}

// Tells this descriptor's notification helper, if any, to finish without firing.
void queue::stop_notify_helper() noexcept {
  std::shared_ptr<notify_helper> helper;
  {
    std::lock_guard lock(helpers_mutex_);
    helper = std::move(notify_);
  }
  if (!helper) return;
  helper->stop.store(true);
  detail::notify_registry_remove(helper->key);
  header* h = region_->hdr();
  h->notify_seq.fetch_add(1);
  sys::futex_wake(&h->notify_seq, INT_MAX);
}

// ---- polling ----

int queue::poll_fd(int& fd) noexcept {
  std::lock_guard lock(helpers_mutex_);
  if (poll_ && poll_->owner == sys::current_pid()) {
    fd = poll_->fd;
    return 0;
  }
  std::shared_ptr<poll_helper> helper;
  try {
    helper = std::make_shared<poll_helper>();
  } catch (...) {
    return ENOMEM;
  }
  helper->r = region_;
  helper->owner = sys::current_pid();
  if (int e = sys::eventfd_create(helper->fd); e != 0) return e;
  if (int e = sys::thread_start(poll_helper::run, helper.get(), helper->thread); e != 0) return e;
  helper->sync();
  poll_ = std::move(helper);
  poll_active_.store(poll_.get(), std::memory_order_release);
  fd = poll_->fd;
  return 0;
}

}  // namespace pipc::engine
