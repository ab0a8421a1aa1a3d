// The C API's process-wide descriptor table: pipc_mqd_t → engine::queue.
//
// Descriptors are file descriptors (docs/c-api.md, "Descriptors"). Each is an eventfd
// (a duplicate of one that the process's descriptors share, until it is made pollable),
// close-on-exec as the kernel's are, so it counts against RLIMIT_NOFILE,
// select/poll/epoll accept it, and the kernel never hands its number to anything else
// while it is open. The table is indexed by that number: up to 2^20 (fs.nr_open's
// default; a higher number is EMFILE).
//
// Slots. Each slot is one cache line: an atomic state word, the queue pointer, and
// whether the slot owns its number's file descriptor.
//
//   state bits     meaning
//   0   open       the descriptor is valid for new calls
//   1   busy       the slot is taken: reserved by an opener, open, or closed while
//                  calls are still running on it
//   2   dying      a thread has claimed the closed slot to destroy it
//   3   closed     closed, to be destroyed once no call runs on it (an opener's
//                  reservation, busy alone, is never mistaken for that)
//   4..31 refs     calls running on the slot's queue that counted themselves here
//                  (in units of ref_unit; see "Calls" for the others)
//   32..63         the slot's generation, one more at every open: a thread that
//                  found the slot closed cannot destroy a later incarnation of it
//
// Calls. A call must keep the queue alive while it runs, and a close must know when
// the last call has left. Counting each call in the slot's word costs two locked
// instructions per call, which wait for every memory access of the call before them to
// complete: with the queue's cache lines moving between two processes, that halved the
// C API's streaming rate (7.4 M against 14.8 M messages/s for the C++ API, 64-byte
// messages). So a call announces itself instead in a *hazard* entry of its own thread
// (thread_record), with a plain store, and then checks `open` with a plain load; a
// closer clears `open` and then runs the process barrier (sys::process_barrier,
// membarrier(2)), after which every call either has its hazard entry seen by the closer
// or sees the slot closed (an asymmetric fence: the expensive half is the closer's).
// A call leaves with a plain store that clears its entry, and then looks at `open`:
// a call that finds its slot closed is one that the closer may have waited for, and
// tries to destroy it itself (try_reclaim). Calls count in the word instead (refs) when
// the process cannot use the barrier (an old kernel, a seccomp filter, ThreadSanitizer,
// which does not see such fences, or a forked child whose registration failed) or when
// a thread is inside more than hazards_per_thread calls (a signal handler that calls in
// while its thread is blocked in a call).
//
// Invariants:
//   1. A free slot's word is 0 in its low half.
//   2. refs grow only by a compare-and-swap that sees `open`, and a hazard entry
//      counts only while its call found `open` after storing it, so nobody ever uses a
//      free or closed slot's queue.
//   3. `queue` is owned by the slot while busy is set; it is written by the opener
//      before the release store that sets `open`, and read by callers after the
//      acquire load that saw `open`.
//   4. A slot is destroyed only by the thread whose compare-and-swap took its word from
//      busy | closed (no refs) to busy | closed | dying, of one generation, after a process barrier after
//      which no hazard entry named the slot (try_reclaim). The closer, the last counted
//      call and every hazard call that leaves a closed slot try it, so the last of them
//      to leave succeeds. That thread destroys the queue, frees the slot, and then
//      closes the number if the slot owns it. So a number is reused by the kernel only
//      after its slot is free, except:
//   5. A number closed behind pipc's back (close(2) or dup2 by a caller that does not
//      know it is a queue) can come back from the kernel while its slot is still open.
//      The opener that gets it retires the stale slot: it takes the slot's ownership of
//      the number away first (so no destroy closes the new descriptor), then closes the
//      slot. If calls are still running on the stale queue, the opener moves its new
//      descriptor to another number (insert() says so) and tries again.
// No lock is ever taken. Closing a descriptor while another thread is blocked on it is
// safe: the blocked call keeps the queue (and the number) until it returns. A close
// costs one process barrier when other threads of the process have made C API calls
// (about a microsecond), none otherwise.
//
// Fork: the table is ordinary process memory and the eventfds are inherited, so a child
// has every descriptor, with its own copy of every engine::queue. No lock is ever held,
// so fork cannot leave the child's table locked. A call that was running in another
// parent thread at the moment of fork leaves its reference or hazard entry behind in the
// child, where that descriptor's queue is then never destroyed after close (a leak in
// the child only).
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

#if defined(__SANITIZE_THREAD__)
inline constexpr bool use_hazards = false;  // TSan does not see the process barrier
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool use_hazards = false;
#else
inline constexpr bool use_hazards = true;
#endif
#else
inline constexpr bool use_hazards = true;
#endif

class descriptor_table {
  struct slot;

 public:
  static constexpr std::uint32_t capacity = 1u << 20;
  static constexpr unsigned hazards_per_thread = 4;

  // One thread's hazard entries: the slots it is inside calls on. Written only by its
  // thread (and that thread's signal handlers, which nest: `depth` is taken before an
  // entry is written and given back after it is cleared); read by closers.
  struct alignas(64) thread_record {
    std::atomic<slot*> hazard[hazards_per_thread] = {};
    unsigned depth = 0;
    std::atomic<bool> in_use{true};    // false once its thread has exited
    thread_record* next = nullptr;     // the list of all records; set before publication
  };

  // A reference that keeps a descriptor's queue alive for one call.
  class ref {
   public:
    ref() noexcept = default;
    ref(const ref&) = delete;
    ref& operator=(const ref&) = delete;
    ~ref() {
      if (slot_ == nullptr) return;
      if (record_ != nullptr) {
        descriptor_table::leave(*record_, entry_, *slot_, number_);
      } else {
        descriptor_table::release(*slot_, number_);
      }
    }
    explicit operator bool() const noexcept { return queue_ != nullptr; }
    engine::queue* operator->() const noexcept { return queue_; }
    engine::queue& operator*() const noexcept { return *queue_; }

   private:
    friend class descriptor_table;
    ref(slot* s, engine::queue* q, int number, thread_record* record, unsigned entry) noexcept
        : slot_(s), queue_(q), number_(number), record_(record), entry_(entry) {}
    slot* slot_ = nullptr;
    engine::queue* queue_ = nullptr;
    int number_ = -1;
    thread_record* record_ = nullptr;  // null: counted in the slot's refs
    unsigned entry_ = 0;
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
    if (use_hazards) (void)sys::process_barrier_register();  // once per process
    slot* s = find(fd, true);
    if (s == nullptr) {
      error = fd >= 0 && static_cast<std::uint32_t>(fd) < capacity ? ENOMEM : EMFILE;
      return inserted::failed;
    }
    for (;;) {
      std::uint64_t w = s->state.load(std::memory_order_acquire);
      if ((w & low_mask) == 0) {
        const std::uint64_t reserved = (w & ~low_mask) + generation_unit + busy_bit;
        if (!s->state.compare_exchange_weak(w, reserved, std::memory_order_acquire, std::memory_order_relaxed)) {
          continue;
        }
        s->queue = q;
        s->owns_fd.store(true, std::memory_order_relaxed);
        s->state.store(reserved | open_bit, std::memory_order_release);
        return inserted::done;
      }
      // The kernel gave out this number, so the slot's own descriptor was closed
      // behind pipc's back (invariant 5): retire it without closing the number.
      s->owns_fd.store(false, std::memory_order_relaxed);
      if ((w & open_bit) != 0) {
        const std::uint64_t closed = (w & ~open_bit) | closed_bit;
        if (s->state.compare_exchange_weak(w, closed, std::memory_order_acq_rel, std::memory_order_relaxed) &&
            (closed & low_mask) == (busy_bit | closed_bit)) {
          try_reclaim(*s, fd);
        }
        if ((s->state.load(std::memory_order_acquire) & low_mask) == 0) continue;
      }
      return inserted::number_in_use;  // closed, but calls still run on it
    }
  }

  // A reference to descriptor d's queue; empty (false) if d is not open.
  ref acquire(int d) noexcept {
    slot* s = find(d, false);
    if (s == nullptr) return ref();
    if (use_hazards && sys::process_barrier_registered()) {
      if (thread_record* r = my_record(); r != nullptr && r->depth < hazards_per_thread) {
        const unsigned k = r->depth;
        r->depth = k + 1;  // taken first: a signal handler that calls in uses the next
        std::atomic_signal_fence(std::memory_order_seq_cst);
        r->hazard[k].store(s, std::memory_order_relaxed);
        // Store, then load, with only a compiler barrier between: the closer's process
        // barrier orders them (see "Calls").
        std::atomic_signal_fence(std::memory_order_seq_cst);
        if ((s->state.load(std::memory_order_acquire) & open_bit) != 0) return ref(s, s->queue, d, r, k);
        leave(*r, k, *s, d);
        return ref();
      }
    }
    std::uint64_t w = s->state.load(std::memory_order_relaxed);
    do {
      if ((w & open_bit) == 0) return ref();
    } while (!s->state.compare_exchange_weak(w, w + ref_unit, std::memory_order_acquire, std::memory_order_relaxed));
    return ref(s, s->queue, d, nullptr, 0);
  }

  // Closes d: returns 0, or EBADF if d is not open. The queue is destroyed, and the
  // number closed, now or by the last call still running on it.
  int close(int d) noexcept {
    slot* s = find(d, false);
    if (s == nullptr) return EBADF;
    std::uint64_t w = s->state.load(std::memory_order_relaxed);
    std::uint64_t closed = 0;
    do {
      if ((w & open_bit) == 0) return EBADF;
      closed = (w & ~open_bit) | closed_bit;
    } while (!s->state.compare_exchange_weak(w, closed, std::memory_order_acq_rel, std::memory_order_relaxed));
    if ((closed & low_mask) == (busy_bit | closed_bit)) try_reclaim(*s, d);
    return 0;
  }

 private:
  static constexpr std::uint32_t chunk_size = 1024;
  static constexpr std::uint32_t chunk_count = capacity / chunk_size;
  static constexpr std::uint64_t open_bit = 1;
  static constexpr std::uint64_t busy_bit = 2;
  static constexpr std::uint64_t dying_bit = 4;
  static constexpr std::uint64_t closed_bit = 8;
  static constexpr std::uint64_t ref_unit = 16;
  static constexpr std::uint64_t low_mask = 0xffff'ffff;
  static constexpr std::uint64_t generation_unit = std::uint64_t{1} << 32;

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

  // ---- hazard entries ----

  // Every thread record ever made (records are reused, never freed).
  static inline std::atomic<thread_record*> records_{nullptr};

  // Gives the calling thread's record back when the thread exits.
  struct record_holder {
    thread_record* record = nullptr;
    ~record_holder() {
      current_record() = nullptr;
      if (record != nullptr) record->in_use.store(false, std::memory_order_release);
    }
  };

  // The calling thread's record, if it has one (trivially destroyed: readable on the
  // fast path without a guard, and during thread exit).
  static thread_record*& current_record() noexcept {
    static thread_local thread_record* current = nullptr;
    return current;
  }

  // The calling thread's record: a free one taken over, or a new one; nullptr if none
  // can be made (the call then counts in the slot).
  static thread_record* my_record() noexcept {
    thread_record*& current = current_record();
    if (current != nullptr) [[likely]] return current;
    static thread_local record_holder holder;  // gives it back at thread exit
    for (thread_record* r = records_.load(std::memory_order_acquire); r != nullptr; r = r->next) {
      bool used = r->in_use.load(std::memory_order_relaxed);
      if (!used && r->in_use.compare_exchange_strong(used, true, std::memory_order_acq_rel)) {
        r->depth = 0;
        return current = holder.record = r;
      }
    }
    auto* r = new (std::nothrow) thread_record;
    if (r == nullptr) return nullptr;
    thread_record* head = records_.load(std::memory_order_relaxed);
    do {
      r->next = head;
    } while (!records_.compare_exchange_weak(head, r, std::memory_order_acq_rel, std::memory_order_relaxed));
    return current = holder.record = r;
  }

  // Ends a hazard call: clears entry k of `r`, then, if the slot is no longer open,
  // tries to destroy it (a closer may have seen the entry and left the slot to it).
  static void leave(thread_record& r, unsigned k, slot& s, int number) noexcept {
    r.hazard[k].store(nullptr, std::memory_order_release);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    r.depth = k;
    if ((s.state.load(std::memory_order_acquire) & open_bit) == 0) [[unlikely]] try_reclaim(s, number);
  }

  // Drops one counted call's reference; the last one after a close tries to destroy.
  static void release(slot& s, int number) noexcept {
    std::uint64_t w = s.state.fetch_sub(ref_unit, std::memory_order_acq_rel) - ref_unit;
    if ((w & low_mask) == (busy_bit | closed_bit)) try_reclaim(s, number);
  }

  // Is any thread's hazard entry naming `s`? The caller's own count too: a close made by
  // a signal handler that interrupted a call on the same descriptor must leave the
  // slot to that call. With `other_threads`, also whether any record of another
  // running thread exists.
  static bool hazard_on(const slot* s, bool& other_threads) noexcept {
    other_threads = false;
    const thread_record* mine = current_record();
    for (thread_record* r = records_.load(std::memory_order_acquire); r != nullptr; r = r->next) {
      if (r != mine && r->in_use.load(std::memory_order_acquire)) other_threads = true;
      for (const auto& h : r->hazard) {
        if (h.load(std::memory_order_acquire) == s) return true;
      }
    }
    return false;
  }

  // Destroys slot `s` if it is closed, no call counts in it, no hazard entry names it,
  // and no other thread got there first (invariant 4).
  static void try_reclaim(slot& s, int number) noexcept {
    std::uint64_t w = s.state.load(std::memory_order_acquire);
    if ((w & low_mask) != (busy_bit | closed_bit)) return;  // open, free, dying, or counted calls run
    if (use_hazards && sys::process_barrier_registered()) {
      // Without another thread of the process in the table's records, nobody else can
      // be inside a call (a thread makes its record, with a locked instruction, before
      // its first hazard entry): the barrier is needed only when one is.
      bool others = false;
      std::atomic_thread_fence(std::memory_order_seq_cst);
      (void)hazard_on(&s, others);
      if (others) sys::process_barrier();
      if (hazard_on(&s, others)) return;  // that call will try again when it leaves
    }
    if (!s.state.compare_exchange_strong(w, w | dying_bit, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      return;  // another thread got there first, or the slot moved on (a new generation)
    }
    destroy(s, number);
  }

  // Destroys the queue of a slot this thread made dying, frees the slot, then closes
  // its number if the slot still owns it and it is still on the anonymous inode that
  // eventfds use (a caller that closed it behind pipc's back may have a file of its own
  // there now; only an eventfd, epoll, timerfd or signalfd of its own in that very
  // number would be mistaken for pipc's).
  static void destroy(slot& s, int number) noexcept {
    engine::queue* q = s.queue;
    s.queue = nullptr;
    const bool owns = s.owns_fd.exchange(false, std::memory_order_relaxed);
    s.state.store(s.state.load(std::memory_order_relaxed) & ~low_mask, std::memory_order_release);
    delete q;
    if (owns && sys::is_anonymous_inode(number)) (void)sys::close(number);
  }

  std::atomic<slot*> chunks_[chunk_count] = {};
};

}  // namespace pipc::capi

#endif  // PIPC_SRC_CAPI_DESCRIPTOR_TABLE_HPP
