// The C API's process-wide descriptor table: pipc_mqd_t → engine::queue.
//
// Descriptors are file descriptors (docs/c-api.md, "Descriptors"). Each is an eventfd
// (a duplicate of one that the process's descriptors share, until it is made pollable),
// close-on-exec as the kernel's are, so it counts against
// RLIMIT_NOFILE, select/poll/epoll accept it, and the kernel never hands its number to
// anything else while it is open. The table is indexed by that number: up to 2^20
// (fs.nr_open's default; a higher number is EMFILE).
//
// Slots. Each slot is one cache line: an atomic state word, the queue pointer, and
// whether the slot owns its number's file descriptor.
//
//   state bits     meaning
//   0   open       the descriptor is valid for new calls
//   1   busy       the slot is taken: reserved by an opener, open, or closed while
//                  calls are still running on it
//   2..31 refs     calls now running on the slot's queue (in units of ref_unit)
//
// Invariants:
//   1. A free slot's word is 0.
//   2. refs grow only by a compare-and-swap that sees `open`, so nobody ever takes a
//      reference on a free or closed slot.
//   3. `queue` is owned by the slot while busy is set; it is written by the opener
//      before the release store that sets `open`, and read by callers after the
//      acquire CAS that took their reference.
//   4. Exactly one thread sees the word become busy-only (not open, no refs): the
//      closer, or the last call to finish after the close. That thread destroys the
//      queue, frees the slot, and then closes the number if the slot owns it. So a
//      number is reused by the kernel only after its slot is free, except:
//   5. A number closed behind pipc's back (close(2) or dup2 by a caller that does not
//      know it is a queue) can come back from the kernel while its slot is still open.
//      The opener that gets it retires the stale slot: it takes the slot's ownership of
//      the number away first (so no destroy closes the new descriptor), then closes the
//      slot. If calls are still running on the stale queue, the opener moves its new
//      descriptor to another number (insert() says so) and tries again.
// So a call costs one CAS to take its reference and one fetch_sub to drop it, on the
// descriptor's own cache line; no lock is ever taken. Closing a descriptor while another
// thread is blocked on it is safe: the blocked call keeps the queue (and the number)
// until it returns.
//
// Fork: the table is ordinary process memory and the eventfds are inherited, so a child
// has every descriptor, with its own copy of every engine::queue. No lock is ever held,
// so fork cannot leave the child's table locked. A call that was running in another
// parent thread at the moment of fork leaves its reference behind in the child, where
// that descriptor's queue is then never destroyed after close (a leak in the child
// only).
//
// Thread safety: every member may be called from any thread at any time.
#ifndef PIPC_SRC_CAPI_DESCRIPTOR_TABLE_HPP
#define PIPC_SRC_CAPI_DESCRIPTOR_TABLE_HPP

#include "engine/queue.hpp"
#include "sys/sys.hpp"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <new>

namespace pipc::capi {

class descriptor_table {
  struct slot;

 public:
  static constexpr std::uint32_t capacity = 1u << 20;

  // A reference that keeps a descriptor's queue alive for one call.
  class ref {
   public:
    ref() noexcept = default;
    ref(const ref&) = delete;
    ref& operator=(const ref&) = delete;
    ~ref() {
      if (slot_ != nullptr) descriptor_table::release(*slot_, number_);
    }
    explicit operator bool() const noexcept { return queue_ != nullptr; }
    engine::queue* operator->() const noexcept { return queue_; }
    engine::queue& operator*() const noexcept { return *queue_; }

   private:
    friend class descriptor_table;
    ref(slot* s, engine::queue* q, int number) noexcept : slot_(s), queue_(q), number_(number) {}
    slot* slot_ = nullptr;
    engine::queue* queue_ = nullptr;
    int number_ = -1;
  };

  // What insert() did.
  enum class inserted { done, failed, number_in_use };

  descriptor_table() noexcept = default;
  descriptor_table(const descriptor_table&) = delete;
  descriptor_table& operator=(const descriptor_table&) = delete;
  // Trivial on purpose: queues still open at exit are left to the operating system,
  // because other threads may still be using them while static objects are destroyed.
  ~descriptor_table() = default;

  // Makes file descriptor `fd` (which the caller just opened) the descriptor of `q`,
  // taking ownership of both: `done`. Otherwise both stay the caller's: `failed` with
  // the error in `error` (EMFILE: `fd` is beyond the table; ENOMEM), or
  // `number_in_use`: calls still run on a stale descriptor of that number
  // (invariant 5), and the caller should move `fd` to another number and try again.
  inserted insert(engine::queue* q, int fd, int& error) noexcept {
    slot* s = find(fd, true);
    if (s == nullptr) {
      error = fd >= 0 && static_cast<std::uint32_t>(fd) < capacity ? ENOMEM : EMFILE;
      return inserted::failed;
    }
    for (;;) {
      std::uint64_t w = s->state.load(std::memory_order_acquire);
      if (w == 0) {
        if (!s->state.compare_exchange_weak(w, busy_bit, std::memory_order_acquire, std::memory_order_relaxed)) {
          continue;
        }
        s->queue = q;
        s->owns_fd.store(true, std::memory_order_relaxed);
        s->state.store(busy_bit | open_bit, std::memory_order_release);
        return inserted::done;
      }
      // The kernel gave out this number, so the slot's own descriptor was closed
      // behind pipc's back (invariant 5): retire it without closing the number.
      s->owns_fd.store(false, std::memory_order_relaxed);
      if ((w & open_bit) != 0) {
        if (s->state.compare_exchange_weak(w, w & ~open_bit, std::memory_order_acq_rel, std::memory_order_relaxed) &&
            (w & ~open_bit) == busy_bit) {
          destroy(*s, fd);
        }
        continue;
      }
      return inserted::number_in_use;  // closed, but calls still run on it
    }
  }

  // A reference to descriptor d's queue; empty (false) if d is not open.
  ref acquire(int d) noexcept {
    slot* s = find(d, false);
    if (s == nullptr) return ref();
    std::uint64_t w = s->state.load(std::memory_order_relaxed);
    do {
      if ((w & open_bit) == 0) return ref();
    } while (!s->state.compare_exchange_weak(w, w + ref_unit, std::memory_order_acquire, std::memory_order_relaxed));
    return ref(s, s->queue, d);
  }

  // Closes d: returns 0, or EBADF if d is not open. The queue is destroyed, and the
  // number closed, now or by the last call still running on it.
  int close(int d) noexcept {
    slot* s = find(d, false);
    if (s == nullptr) return EBADF;
    std::uint64_t w = s->state.load(std::memory_order_relaxed);
    do {
      if ((w & open_bit) == 0) return EBADF;
    } while (!s->state.compare_exchange_weak(w, w & ~open_bit, std::memory_order_acq_rel, std::memory_order_relaxed));
    if ((w & ~open_bit) == busy_bit) destroy(*s, d);
    return 0;
  }

 private:
  static constexpr std::uint32_t chunk_size = 1024;
  static constexpr std::uint32_t chunk_count = capacity / chunk_size;
  static constexpr std::uint64_t open_bit = 1;
  static constexpr std::uint64_t busy_bit = 2;
  static constexpr std::uint64_t ref_unit = 4;

  struct alignas(64) slot {
    std::atomic<std::uint64_t> state{0};
    engine::queue* queue = nullptr;
    std::atomic<bool> owns_fd{false};  // destroying the slot closes its number
  };
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

  // The slot of descriptor d; nullptr if d cannot be one (or, with `create`, if its
  // chunk cannot be allocated).
  slot* find(int d, bool create) noexcept {
    if (d < 0 || static_cast<std::uint32_t>(d) >= capacity) return nullptr;
    const auto i = static_cast<std::uint32_t>(d);
    slot* chunk = chunk_of(i, create);
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
  static void release(slot& s, int number) noexcept {
    std::uint64_t w = s.state.fetch_sub(ref_unit, std::memory_order_acq_rel) - ref_unit;
    if (w == busy_bit) destroy(s, number);
  }

  // Destroys the queue of a slot that is busy, closed and unreferenced, frees the slot,
  // then closes its number if the slot still owns it and it is still on the anonymous
  // inode that eventfds use (a caller that closed it behind pipc's back may have a file
  // of its own there now; only an eventfd, epoll, timerfd or signalfd of its own in
  // that very number would be mistaken for pipc's).
  // Only the thread that made the slot so calls this.
  static void destroy(slot& s, int number) noexcept {
    engine::queue* q = s.queue;
    s.queue = nullptr;
    const bool owns = s.owns_fd.exchange(false, std::memory_order_relaxed);
    s.state.store(0, std::memory_order_release);
    delete q;
    if (owns && sys::is_anonymous_inode(number)) (void)sys::close(number);
  }

  std::atomic<slot*> chunks_[chunk_count] = {};
};

}  // namespace pipc::capi

#endif  // PIPC_SRC_CAPI_DESCRIPTOR_TABLE_HPP
