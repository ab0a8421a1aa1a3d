// The C API's process-wide descriptor table: pipc_mqd_t → engine::queue.
//
// Descriptor numbers. A descriptor is 0x4000'0000 | generation << 16 | index:
//   bit 30         always set, so a descriptor is never a real file descriptor (the
//                  kernel caps fs.nr_open below 2^30) and close()/poll() on one fails
//                  with EBADF instead of touching an unrelated file;
//   bits 16..29    the slot's generation, bumped whenever the slot is freed, so a
//                  closed descriptor stays invalid (EBADF) even after its slot is
//                  reused, until the generation wraps after 16384 reuses;
//   bits 0..15     the slot index: up to 65536 open descriptors (EMFILE beyond).
// Every descriptor is a positive int, so pipc_mqd_t round-trips through int and -1
// stays free for errors. New descriptors take the lowest free index, as fds do.
//
// Slots. Each slot is one cache line: an atomic state word and the queue pointer.
//
//   state bits     meaning
//   0   open       the descriptor is valid for new calls
//   1   busy       the slot is taken: reserved by an opener, open, or closed while
//                  calls are still running on it
//   2..31 refs     calls now running on the slot's queue (in units of ref_unit)
//   32..45 gen     the generation of the current or next occupant
//
// Invariants:
//   1. A free slot's word is gen << 32 only.
//   2. refs grow only by a compare-and-swap that sees `open` and the caller's
//      generation, so nobody ever takes a reference on a free or closed slot.
//   3. `queue` is owned by the slot while busy is set; it is written by the opener
//      before the release store that sets `open`, and read by callers after the
//      acquire CAS that took their reference.
//   4. Exactly one thread sees the word become busy-only (not open, no refs): the
//      closer, or the last call to finish after the close. That thread destroys the
//      queue and frees the slot with the next generation.
// So a call costs one CAS to take its reference and one fetch_sub to drop it, on the
// descriptor's own cache line; no lock is ever taken. Closing a descriptor while
// another thread is blocked on it is safe: the blocked call keeps the queue alive
// until it returns.
//
// Fork: the table is ordinary process memory, so a child inherits every descriptor
// (and its own copy of every engine::queue). Since no lock is ever held, fork cannot
// leave the child's table locked. A call that was running in another parent thread at
// the moment of fork leaves its reference behind in the child, where that descriptor's
// queue is then never destroyed after close (a leak in the child only).
//
// Thread safety: every member may be called from any thread at any time.
#ifndef PIPC_SRC_CAPI_DESCRIPTOR_TABLE_HPP
#define PIPC_SRC_CAPI_DESCRIPTOR_TABLE_HPP

#include "engine/queue.hpp"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <new>

namespace pipc::capi {

class descriptor_table {
  struct slot;

 public:
  static constexpr int base = 0x4000'0000;
  static constexpr unsigned index_bits = 16;
  static constexpr unsigned generation_bits = 14;
  static constexpr std::uint32_t capacity = 1u << index_bits;
  static_assert(index_bits + generation_bits == 30, "descriptors must be positive ints above base");

  // A reference that keeps a descriptor's queue alive for one call.
  class ref {
   public:
    ref() noexcept = default;
    ref(const ref&) = delete;
    ref& operator=(const ref&) = delete;
    ~ref() {
      if (slot_ != nullptr) descriptor_table::release(*slot_);
    }
    explicit operator bool() const noexcept { return queue_ != nullptr; }
    engine::queue* operator->() const noexcept { return queue_; }
    engine::queue& operator*() const noexcept { return *queue_; }

   private:
    friend class descriptor_table;
    ref(slot* s, engine::queue* q) noexcept : slot_(s), queue_(q) {}
    slot* slot_ = nullptr;
    engine::queue* queue_ = nullptr;
  };

  descriptor_table() noexcept = default;
  descriptor_table(const descriptor_table&) = delete;
  descriptor_table& operator=(const descriptor_table&) = delete;
  // Trivial on purpose: queues still open at exit are left to the operating system,
  // because other threads may still be using them while static objects are destroyed.
  ~descriptor_table() = default;

  // Takes ownership of `q` and gives it a descriptor. On failure (EMFILE: the table
  // is full; ENOMEM) returns -1 with the error in `error`, and `q` stays the caller's.
  int insert(engine::queue* q, int& error) noexcept {
    for (std::uint32_t i = 0; i < capacity; ++i) {
      slot* chunk = chunk_of(i, true);
      if (chunk == nullptr) {
        error = ENOMEM;
        return -1;
      }
      slot& s = chunk[i % chunk_size];
      std::uint64_t w = s.state.load(std::memory_order_relaxed);
      if ((w & ~generation_field) != 0) continue;  // taken
      if (!s.state.compare_exchange_strong(w, w | busy_bit, std::memory_order_acquire, std::memory_order_relaxed)) {
        continue;
      }
      s.queue = q;
      s.state.store(w | busy_bit | open_bit, std::memory_order_release);
      return base | static_cast<int>(generation(w) << index_bits) | static_cast<int>(i);
    }
    error = EMFILE;
    return -1;
  }

  // A reference to descriptor d's queue; empty (false) if d is not open.
  ref acquire(int d) noexcept {
    slot* s = find(d);
    if (s == nullptr) return ref();
    std::uint64_t gen = generation_of(d);
    std::uint64_t w = s->state.load(std::memory_order_relaxed);
    do {
      if ((w & open_bit) == 0 || generation(w) != gen) return ref();
    } while (!s->state.compare_exchange_weak(w, w + ref_unit, std::memory_order_acquire, std::memory_order_relaxed));
    return ref(s, s->queue);
  }

  // Closes d: returns 0, or EBADF if d is not open. The queue is destroyed now, or by
  // the last call still running on it.
  int close(int d) noexcept {
    slot* s = find(d);
    if (s == nullptr) return EBADF;
    std::uint64_t gen = generation_of(d);
    std::uint64_t w = s->state.load(std::memory_order_relaxed);
    do {
      if ((w & open_bit) == 0 || generation(w) != gen) return EBADF;
    } while (!s->state.compare_exchange_weak(w, w & ~open_bit, std::memory_order_acq_rel, std::memory_order_relaxed));
    if (((w & ~open_bit) & ~generation_field) == busy_bit) destroy(*s, w);
    return 0;
  }

 private:
  static constexpr std::uint32_t chunk_size = 1024;
  static constexpr std::uint32_t chunk_count = capacity / chunk_size;
  static constexpr std::uint64_t open_bit = 1;
  static constexpr std::uint64_t busy_bit = 2;
  static constexpr std::uint64_t ref_unit = 4;
  static constexpr unsigned generation_shift = 32;
  static constexpr std::uint64_t generation_mask = (std::uint64_t{1} << generation_bits) - 1;
  static constexpr std::uint64_t generation_field = generation_mask << generation_shift;

  struct alignas(64) slot {
    std::atomic<std::uint64_t> state{0};
    engine::queue* queue = nullptr;
  };
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

  static std::uint64_t generation(std::uint64_t w) noexcept { return (w >> generation_shift) & generation_mask; }
  static std::uint64_t generation_of(int d) noexcept {
    return (static_cast<std::uint32_t>(d) >> index_bits) & generation_mask;
  }

  // The slot of descriptor d, or nullptr if d cannot be a descriptor of this table.
  slot* find(int d) noexcept {
    if (d < base) return nullptr;  // also every negative int; d ≤ INT_MAX keeps bit 31 clear
    std::uint32_t i = static_cast<std::uint32_t>(d) & (capacity - 1);
    slot* chunk = chunk_of(i, false);
    return chunk == nullptr ? nullptr : &chunk[i % chunk_size];
  }

  // The chunk that holds index i; allocates it if `create` (nullptr if that fails).
  // Chunks are never freed, so a pointer read here stays valid.
  slot* chunk_of(std::uint32_t i, bool create) noexcept {
    std::atomic<slot*>& c = chunks_[i / chunk_size];
    slot* p = c.load(std::memory_order_acquire);
    if (p != nullptr || !create) return p;
    slot* fresh = new (std::nothrow) slot[chunk_size];
    if (fresh == nullptr) return nullptr;
    if (c.compare_exchange_strong(p, fresh, std::memory_order_acq_rel, std::memory_order_acquire)) return fresh;
    delete[] fresh;  // another thread installed one first
    return p;
  }

  // Drops one call's reference; the last one after a close destroys the queue.
  static void release(slot& s) noexcept {
    std::uint64_t w = s.state.fetch_sub(ref_unit, std::memory_order_acq_rel) - ref_unit;
    if ((w & ~generation_field) == busy_bit) destroy(s, w);
  }

  // Destroys the queue of a slot that is busy, closed and unreferenced, and frees the
  // slot with the next generation. Only the thread that made it so calls this.
  static void destroy(slot& s, std::uint64_t w) noexcept {
    engine::queue* q = s.queue;
    s.queue = nullptr;
    s.state.store(((generation(w) + 1) & generation_mask) << generation_shift, std::memory_order_release);
    delete q;
  }

  std::atomic<slot*> chunks_[chunk_count] = {};
};

}  // namespace pipc::capi

#endif  // PIPC_SRC_CAPI_DESCRIPTOR_TABLE_HPP
