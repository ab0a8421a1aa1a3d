// An open queue description: opening, closing, send and receive (docs/engine.md,
// "How a message travels" and "Commit points"). The region, its locks, waiting,
// recovery, notification and polling each have a file of their own beside this one.
#include "engine/queue.hpp"

#include "engine/helpers.hpp"
#include "engine/notify.hpp"
#include "engine/region.hpp"
#include "engine/wait.hpp"

#include <fcntl.h>

#include <utility>

namespace pipc::engine {

using detail::encode;
using detail::wait_limit;

namespace {

// A token for a new open description: unique within the process, and unlike any other
// process's (a random start, drawn once per process and again in a child of fork). Not
// a secret: it is stored in the region. (A getrandom per open cost 0.3 µs.)
std::uint64_t next_token() noexcept {
  static std::atomic<std::uint64_t> seeded_for{0};
  static std::atomic<std::uint64_t> base{0};
  static std::atomic<std::uint64_t> count{0};
  const std::uint64_t generation = sys::fork_generation();
  if (seeded_for.load(std::memory_order_acquire) != generation) {
    base.store(sys::random64(), std::memory_order_relaxed);
    seeded_for.store(generation, std::memory_order_release);
  }
  const std::uint64_t n = count.fetch_add(1, std::memory_order_relaxed);
  return (base.load(std::memory_order_relaxed) + n * 0x9e37'79b9'7f4a'7c15ULL) | 1;
}

}  // namespace

queue::queue(std::shared_ptr<region> r, std::string name, int flags, std::int64_t spin_ns) noexcept
    : region_(std::move(r)),
      name_(std::move(name)),
      can_send_((flags & O_ACCMODE) == O_WRONLY || (flags & O_ACCMODE) == O_RDWR),
      can_receive_((flags & O_ACCMODE) == O_RDONLY || (flags & O_ACCMODE) == O_RDWR),
      nonblocking_((flags & O_NONBLOCK) != 0),
      spin_ns_(sys::online_cpus() > 1 ? (spin_ns < 0 ? default_spin_ns : spin_ns) : 0),
      send_spin_(spin_ns_),
      receive_spin_(spin_ns_),
      token_(next_token()),
      opener_pid_(sys::current_pid()) {}

std::string queue::object_name(const std::string& name) {
  // Built by appending: GCC 12 warns falsely (-Wrestrict) about "/" + std::string&&.
  std::string object = "/";
  object += leaf_name(name);
  return object;
}

int queue::open(const open_request& request, std::unique_ptr<queue>& out) noexcept {
  bool create = (request.flags & O_CREAT) != 0;
  bool exclusive = create && (request.flags & O_EXCL) != 0;
  // O_RDWR|O_WRONLY, as Linux has it: a call that creates the queue gets a descriptor
  // that can neither send nor receive (EBADF); on an existing queue it is EINVAL.
  const bool no_access = (request.flags & O_ACCMODE) == O_ACCMODE;
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

  // Every lock and registration names threads and processes that only /proc can tell
  // alive or dead.
  if (!sys::proc_available()) return encode(errc::proc_unavailable);

  std::string leaf;
  try {
    leaf = leaf_name(request.name);
  } catch (...) {
    return ENOMEM;
  }
  std::shared_ptr<region> r;
  int e = open_region(leaf, request.mode, create, exclusive || (create && no_access), bad_attributes, max_messages,
                      message_size, r);
  if (e == EEXIST && no_access && !exclusive) e = EINVAL;
  if (e == 0 && no_access && !create) e = EINVAL;
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
    // /dev/shm is sticky, so unlinking another user's file is EPERM; mq_unlink says
    // EACCES for a queue the caller may not remove, as the kernel's does.
    const int e = sys::shm_unlink_file(leaf_name(name).c_str());
    return e == EPERM ? EACCES : e;
  } catch (...) {
    return ENOMEM;
  }
}

queue::~queue() {
  stop_notify_helper();
  // Read only by the branches below, which find the region mapped (a registration and
  // a poll helper each mapped it): `base` is not read otherwise, as another thread may
  // be mapping the region for another descriptor right now.
  auto hdr = [this] { return region_->hdr(); };
  auto me = static_cast<std::uint32_t>(sys::current_pid());
  // Closing the registering descriptor ends the registration, and drops a thread
  // notification that fired for it but whose helper had not run (left in the header,
  // it would make every later registration EBUSY while this process lives).
  // (notify_fired_pid is atomic: this descriptor's notification helper may be clearing it
  // under the locks right now.)
  // Bounded: close never hangs on a lock whose holder is stopped (or forged); the
  // record is then left, and counts as absent once this process is gone.
  // Only a descriptor that registered can have a record (and a descriptor that never
  // did leaves the region untouched: closing a queue that was only created maps in no
  // page).
  if (header* h = nullptr; registered_.load(std::memory_order_relaxed) && (h = hdr()) != nullptr &&
      (h->notify_pid.load() == me || h->notify_fired_pid.load() == me) &&
      region_->lock_both(wait_limit::immediate()) == 0) {
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
    header* h = hdr();
    h->event_seq.fetch_add(1);
    sys::futex_wake(&h->event_seq, INT_MAX);
    sys::thread_join(poll->thread);
  }
}

// ---- send and receive ----

namespace {

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

int queue::send(const void* data, std::size_t size, unsigned priority, const wait_limit& caller_limit,
                bool interruptible) {
  if (!can_send_) return EBADF;
  sys::interruption interrupt;  // the caller's signal mask comes back with it
  wait_limit limit = caller_limit;
  if (interruptible) limit.interrupt = &interrupt;
  region& r = *region_;
  if (size > r.geo.message_size) return EMSGSIZE;
  if (priority >= priorities) return EINVAL;
  header* h = nullptr;
  const auto max = static_cast<std::uint32_t>(r.geo.max_messages);

  for (;;) {
    // The file was truncated (region.hpp), or this process has not mapped the region
    // yet: it does at its first send or receive, not at create or open.
    if (r.faulted()) [[unlikely]] {
      if (r.mapped.load(std::memory_order_acquire)) return corrupt;
      if (int e = r.map(); e != 0) return e;
      continue;
    }
    h = r.hdr();
    // Full? Then there is nothing to lock for: wait for room, or report. (Recovering a
    // dead owner's send never frees a slot, so a dead send_lock owner hides no room; the
    // next sender that finds room takes the lock over and repairs the side.)
    if (!r.has_room()) {
      if (r.faulted() || !r.cursors_plausible()) return corrupt;
      if (nonblocking_.load(std::memory_order_relaxed) || limit.kind == wait_limit::none || deadline_passed(limit)) {
        return would_block();
      }
      int e = wait_while([&] { return !r.has_room(); }, h->space_seq, h->space_sleepers, h->receiver_cpu, spin_ns_,
                         send_spin_, limit);
      if (e == EINTR && interruptible) return EINTR;
      if (e == recheck_due) r.check_size();
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
    // A side send puts its entry at side_count and stores side_count + 1, read once
    // here. With a slot free at free_head, the side heap holds at most N − 1 messages; a
    // larger count is garbage (all ones would wrap to 0 and hide the side heap from
    // receivers).
    const std::uint32_t side = ring ? 0 : h->side_count.load(std::memory_order_relaxed);
    if (side >= max) {
      unlock();
      return corrupt;
    }

    // A message on an empty queue with no receiver waiting: take the registration.
    due_notification due;
    bool notify = false;
    if (notify_check) {
      const std::uint32_t before = head + max - free_cursor(h->recv_cursors.load(std::memory_order_relaxed));
      if (before == 0 && h->notify_pid.load() != 0 && !receivers_blocked(r)) {
        due = {h->notify_kind, static_cast<pid_t>(h->notify_pid.load()), h->notify_signo,
               std::uint64_t{h->notify_value_high} << 32 | static_cast<std::uint32_t>(h->notify_value)};
        // Believed only if it names a live process that maps this queue: a process that
        // can write the region could otherwise have this sender signal anyone it may.
        notify = same_process_alive(due.pid, h->notify_start_time) && mapped_by(due.pid, r) == sys::maps_answer::yes;
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
      r.heap_push(side, {n, priority, seq});  // side < max was checked above
      h->side_count.store(side + 1, std::memory_order_release);
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
        if (due.signo != 0) sys::send_mesgq_signal(due.pid, due.signo, due.value);
      } else if (due.kind == notify_thread_kind) {
        h->notify_seq.fetch_add(1);
        sys::futex_wake(&h->notify_seq, INT_MAX);
      }
    }
    // A fault during this send (the file truncated under it) means the message went
    // nowhere: report it, as every later call will.
    return r.faulted() ? corrupt : 0;
  }
}

namespace {
// A blocked receiver's count in the waiter table (notify.hpp), taken back however the
// receive ends: a cancellation unwinds through it.
struct waiter_count {
  waiter_entry* entry = nullptr;
  waiter_count() noexcept = default;
  waiter_count(const waiter_count&) = delete;
  waiter_count& operator=(const waiter_count&) = delete;
  ~waiter_count() { leave_waiters(entry); }
};
}  // namespace

int queue::receive(void* buffer, std::size_t capacity, std::size_t& size, unsigned& priority,
                   const wait_limit& caller_limit, bool interruptible) {
  if (!can_receive_) return EBADF;
  region& r = *region_;
  if (capacity < r.geo.message_size) return EMSGSIZE;
  header* h = nullptr;
  // Declared before `waiting`, so destroyed after it: the mask comes back last.
  sys::interruption interrupt;
  wait_limit limit = caller_limit;
  if (interruptible) limit.interrupt = &interrupt;
  waiter_count waiting;

  std::uint64_t held_before = 0;  // recv_lock's word at the previous look
  for (;;) {
    // The file was truncated, or the region is not mapped yet (as in send).
    if (r.faulted()) [[unlikely]] {
      if (r.mapped.load(std::memory_order_acquire)) return corrupt;
      if (int e = r.map(); e != 0) return e;
      continue;
    }
    h = r.hdr();
    // Empty? Then there is nothing to lock for: wait for a message, or report. But a
    // side sender that died after its commit, holding recv_lock, hides its message
    // until the side is repaired: so a held recv_lock's owner is checked (a system call
    // or two) by a call about to give up, and by a waiter that found the same owner at
    // its previous look; a dead one sends this call to the locked path, which repairs.
    if (!r.has_message()) {
      const std::uint64_t held = h->recv_lock.load(std::memory_order_relaxed);
      const bool giving_up =
          nonblocking_.load(std::memory_order_relaxed) || limit.kind == wait_limit::none || deadline_passed(limit);
      const bool dead_owner = held != 0 && (giving_up || held == held_before) && !lock_owner_alive(held, r.file());
      held_before = held;
      if (!dead_owner) {
        if (r.faulted() || !r.cursors_plausible()) return corrupt;
        if (giving_up) return would_block();
        if (waiting.entry == nullptr) waiting.entry = enter_waiters(r);
        int e = wait_while([&] { return !r.has_message(); }, h->msg_seq, h->msg_sleepers, h->sender_cpu, spin_ns_,
                           receive_spin_, limit);
        if (e == EINTR && interruptible) return EINTR;
        if (e == recheck_due) r.check_size();
        continue;  // on ETIMEDOUT the check above reports it, unless a message came
      }
    }

    if (int e = r.lock_recv(lock_limit(limit)); e != 0) return e == ETIMEDOUT ? would_block() : e;
    // Caller holds recv_lock from here to unlock_recv().
    auto fail = [&] {
      r.unlock_recv();
      return corrupt;
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
      std::uint32_t n = 0, size = 0, priority = 0;
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
    if (side != 0) {
      // The side heap's first entry names its best message; the slot must be SIDE and
      // carry the entry's key.
      side_entry& top = r.side_heap()[0];
      side_c.n = read_once(top.slot);
      side_c.s = r.slot(side_c.n);
      if (side_c.s == nullptr || side_c.s->state.load(std::memory_order_relaxed) != slot_side) return fail();
      side_c.size = read_once(side_c.s->size);
      side_c.priority = read_once(side_c.s->priority);
      side_c.seq = read_once(side_c.s->seq);
      if (side_c.priority != read_once(top.priority) || side_c.seq != read_once(top.seq) ||
          side_c.priority >= priorities || side_c.size > r.geo.message_size) {
        return fail();
      }
    }
    // The oldest message of the highest priority: the side heap's best or the ring's.
    const bool from_side =
        side_c.s != nullptr && (ring_c.s == nullptr || received_before({0, side_c.priority, side_c.seq},
                                                                       {0, ring_c.priority, ring_c.seq}));
    const candidate& c = from_side ? side_c : ring_c;
    slot_header* s = c.s;
    const std::uint32_t n = c.n;
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
      r.heap_pop(side);
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
    // A fault during this receive means the message read may be zeros: report it.
    return r.faulted() ? corrupt : 0;
  }
}

int queue::attributes(long& max_messages, long& message_size, long& current_messages,
                      bool& nonblocking) const noexcept {
  if (int e = region_->use(); e != 0) return e;
  max_messages = static_cast<long>(region_->geo.max_messages);
  message_size = static_cast<long>(region_->geo.message_size);
  std::uint64_t depth = region_->depth();
  current_messages = static_cast<long>(std::min<std::uint64_t>(depth, region_->geo.max_messages));
  nonblocking = nonblocking_.load(std::memory_order_relaxed);
  region_->check_size();
  return region_->faulted() ? corrupt : 0;
}

queue_stats queue::stats() const noexcept {
  queue_stats s{};
  if (region_->use() != 0) return s;  // all zero: attributes() reports the error
  const header* h = region_->hdr();
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

}  // namespace pipc::engine
