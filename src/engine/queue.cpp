// An open queue description: opening, closing, send and receive (docs/engine.md,
// "How a message travels" and "Commit points"). The region, its locks, waiting,
// recovery, notification and polling each have a file of their own beside this one.
#include "engine/queue.hpp"

#include "engine/helpers.hpp"
#include "engine/notify.hpp"
#include "engine/region.hpp"
#include "engine/wait.hpp"

#include <fcntl.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace pipc::engine {

using detail::encode;
using detail::wait_limit;

namespace {

// queue::loans_ keys: a slot number, with this bit for a receive loan.
constexpr std::uint32_t loan_receive = 1u << 31;

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

std::int64_t spin_for(std::int64_t requested, std::uint64_t message_size, int cpus) noexcept {
  if (cpus <= 1) return 0;
  return requested < 0 ? default_spin_for(message_size) : std::min(requested, max_spin_ns);
}

queue::queue(std::shared_ptr<region> r, int flags, std::int64_t spin_ns) noexcept
    : region_(std::move(r)),
      can_send_((flags & O_ACCMODE) == O_WRONLY || (flags & O_ACCMODE) == O_RDWR),
      can_receive_((flags & O_ACCMODE) == O_RDONLY || (flags & O_ACCMODE) == O_RDWR),
      nonblocking_((flags & O_NONBLOCK) != 0),
      spin_ns_(spin_for(spin_ns, region_->geo.message_size, sys::online_cpus())),
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
    out.reset(new queue(std::move(r), request.flags, request.spin_ns));
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
  // Loans still outstanding go back: an uncommitted send loan sends nothing, a lent
  // message is dropped. (In a child of fork the copied list names the parent's loans,
  // which give_back_loan leaves alone.)
  // Bounded as a whole: every lock that close takes shares one try's patience (a stopped
  // lock holder would otherwise cost it 500 ms per loan, and as much again for the
  // registration below). A loan it could not give back stays lent to this process, and
  // is reclaimed once the process is gone.
  const wait_limit close_limit =
      wait_limit::at({CLOCK_MONOTONIC, sys::now_ns(CLOCK_MONOTONIC) + lock_try_patience_ns});
  std::vector<std::uint32_t> left;
  {
    std::lock_guard lock(loans_mutex_);
    left.swap(loans_);
  }
  for (std::uint32_t key : left) {
    give_back_loan(key & ~loan_receive, (key & loan_receive) != 0 ? slot_recv_loan : slot_send_loan, close_limit);
  }
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
      region_->lock_both(close_limit) == 0) {
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

// Brings this process's poll helper's eventfd up to date after a change of the queue.
// Only this process's: a child of fork has the parent's helper object copied, whose
// thread is not there, whose mutex may have been copied locked, and whose eventfd
// number the child may have closed and reused (the parent's helper keeps the shared
// eventfd current meanwhile; pipc_mq_pollable gives the child a helper of its own).
[[gnu::always_inline]] inline void queue::sync_poll_helper() noexcept {
  poll_helper* own = poll_active_.load(std::memory_order_acquire);
  if (own != nullptr && own->owner == sys::current_pid()) [[unlikely]] own->sync();
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
// Returns what it stored in `last_cpu`: 1 + this CPU.
std::uint32_t count_operation(atomic_u64& messages, atomic_u64& bytes, atomic_u32& last_pid, atomic_u32& last_cpu,
                              std::size_t size) noexcept {
  add_locked(messages, std::uint64_t{1});
  add_locked(bytes, std::uint64_t{size});
  store_if_changed(last_pid, static_cast<std::uint32_t>(sys::current_pid()));
  const std::uint32_t cpu = sys::current_cpu() + 1;
  store_if_changed(last_cpu, cpu);
  return cpu;
}

// A blocked receiver's count in the waiter table (notify.hpp), taken back however the
// receive ends: a cancellation unwinds through it.
struct waiter_count {
  waiter_entry* entry = nullptr;
  waiter_count() noexcept = default;
  waiter_count(const waiter_count&) = delete;
  waiter_count& operator=(const waiter_count&) = delete;
  ~waiter_count() { leave(); }
  // Takes the count back now: a receive that has its message is no longer blocked,
  // for a sender's notification decision after it (Linux takes the receiver off its
  // wait queue as it hands the message over).
  void leave() noexcept {
    leave_waiters(entry);
    entry = nullptr;
  }
};

// A call's turn (wait.hpp, "Turns"): held from a wake-up until the call's next try,
// and given back however the call ends (a cancellation unwinds through it). The last
// turn given back wakes the side's waiters that left the messages (or slots) to the
// woken.
struct waiter_turn {
  atomic_u64& turns;
  atomic_u32& word;      // the side's futex word
  atomic_u32& sleepers;  // and its sleeper count
  bool held = false;
  bool woken = false;    // the call's last wait ended with a wake-up (wait_while)

  waiter_turn(atomic_u64& t, atomic_u32& w, atomic_u32& s) noexcept : turns(t), word(w), sleepers(s) {}
  waiter_turn(const waiter_turn&) = delete;
  waiter_turn& operator=(const waiter_turn&) = delete;
  ~waiter_turn() { end(); }
  void end() noexcept {
    if (!held) return;
    held = false;
    if (end_turn(turns)) {
      committed();
      wake_sleepers(word, sleepers);
    }
  }
};

// A descriptor maps its region at its first send or receive, not at create or open
// (region.hpp): an unmapped region reads as faulted, so the one check of faulted() that
// every call makes anyway finds it. 0, or why the call fails.
int map_on_first_use(region& r) noexcept {
  if (!r.faulted()) [[likely]] return 0;
  // Mapped: the file was truncated, unless another thread's first use mapped the region
  // between the two looks (faulted() read the unmapped region's flag): look again.
  if (r.mapped.load(std::memory_order_acquire)) return r.faulted() ? corrupt : 0;
  return r.map();
}

// What before_send and before_receive return when the call should look at the queue
// again (distinct from errno values, corrupt and recheck_due).
constexpr int look_again = -2;

// How long a call that leaves what it found to woken waiters waits for them: until they
// have had their turns (turn_hold_us at most), or its own limit, if earlier.
wait_limit turn_wait_limit(const wait_limit& limit) noexcept {
  const std::int64_t now = sys::now_ns(CLOCK_MONOTONIC);
  wait_limit capped = wait_limit::at({CLOCK_MONOTONIC, now + std::int64_t{turn_hold_us} * 1000});
  capped.interrupt = limit.interrupt;
  if (limit.kind == wait_limit::until) {
    const std::int64_t left =
        limit.when.ns - (limit.when.clock == CLOCK_MONOTONIC ? now : sys::now_ns(limit.when.clock));
    if (now + left < capped.when.ns) capped.when.ns = now + left;
  }
  return capped;
}

// One wait of a call for its side (wait_while, with the description's spin and
// `budget`); the call holds a turn if the wait ended with a wake-up (wait.hpp, "Turns").
// Returns wait_while's result.
template <class Blocked>
int wait_for_side(Blocked blocked, const wait_words& words, std::int64_t spin_ns, std::atomic<std::int64_t>& budget,
                  waiter_turn& turn, const wait_limit& limit) {
  int e = wait_while(blocked, words, spin_ns, budget, turn.woken, limit);
  turn.held = turn.woken;
  return e;
}

// A call that found what it came for while woken waiters of its side hold turns
// (`owed`: wait.hpp, "Turns") leaves it to them, unless it holds a turn itself or
// is about to give up: 0 when it should go on now; otherwise it waits while turns are
// outstanding (whatever comes meanwhile is theirs too), and returns look_again (or
// EINTR, for an interruptible call): once they are used, an empty queue (or a full one)
// is waited for as usual, with a sleep announced.
//
// The wait spins for as long as a turn lasts (unless the queue's spin is 0), not for
// the description's budget, and stops spinning when this thread loses its CPU: a
// woken waiter that waits for a CPU can take milliseconds to come, and a competitor on
// another CPU that slept meanwhile would be woken with a turn of its own, and take
// what was left to the first (docs/engine.md, "Fairness").
template <class Owed>
int leave_to_turns(Owed owed, bool giving_up, bool interruptible, wait_words words, std::int64_t spin_ns,
                   waiter_turn& turn, const wait_limit& limit) {
  if (turn.held || giving_up || !owed()) return 0;
  constexpr std::int64_t hold_ns = std::int64_t{turn_hold_us} * 1000;
  std::atomic<std::int64_t> budget{hold_ns};  // this wait's alone: the description's is left as it is
  words.stop_when_descheduled = true;
  int e = wait_for_side(owed, words, spin_ns > 0 ? hold_ns : 0, budget, turn, turn_wait_limit(limit));
  return e == EINTR && interruptible ? EINTR : look_again;
}

// A send about to commit (both locks held) on a queue whose registrant must hear of a
// message arriving in an empty queue with no receiver waiting: takes the registration
// and returns true with `due` filled when this message is that one. `head` is the
// sender's free_head; lent slots are off the free ring but are not messages.
bool take_due_notification(region& r, std::uint32_t head, due_notification& due) noexcept {
  header* h = r.hdr();
  const auto max = static_cast<std::uint32_t>(r.geo.max_messages);
  const std::uint32_t before = head + max - free_cursor(h->recv_cursors.load(std::memory_order_relaxed));
  if (before > r.loans() || h->notify_pid.load() == 0 || receivers_blocked(r)) return false;
  due = {h->notify_kind, static_cast<pid_t>(h->notify_pid.load()), h->notify_signo,
         std::uint64_t{h->notify_value_high} << 32 | static_cast<std::uint32_t>(h->notify_value)};
  // Believed only if it names a live process that maps this queue: a process that can
  // write the region could otherwise have this sender signal anyone it may. A thread
  // notification signals nobody (it wakes the registrant's own helper, which checks the
  // record itself), so a registrant whose maps this sender may not read (another
  // user's) gets it too; a signal it could not send anyway.
  const sys::maps_answer maps =
      same_process_alive(due.pid, h->notify_start_time) ? mapped_by(due.pid, r) : sys::maps_answer::no;
  const bool notify = maps == sys::maps_answer::yes ||
                      (maps == sys::maps_answer::unknown && due.kind == notify_thread_kind);
  if (notify && due.kind == notify_thread_kind) {
    h->notify_fired_pid = static_cast<std::uint32_t>(due.pid);
    h->notify_fired_token = h->notify_token;
  }
  h->notify_pid.store(0);
  return notify;
}

// After the commit, outside the locks: delivers a notification take_due_notification took.
void deliver(header* h, const due_notification& due) noexcept {
  if (due.kind == notify_signal_kind) {
    if (due.signo != 0) sys::send_mesgq_signal(due.pid, due.signo, due.value);
  } else if (due.kind == notify_thread_kind) {
    h->notify_seq.fetch_add(1);
    sys::futex_wake(&h->notify_seq, INT_MAX);
  }
}

}  // namespace

// Where a message goes, decided by a sender holding send_lock about to commit at free
// position `head` and ready_tail `tail`, and the locks that takes.
struct queue::placement {
  bool ring = false;           // the ready ring, or the side heap
  bool both = false;           // recv_lock is held too
  std::uint32_t side = 0;      // a side message's entry in the side heap
  bool notify = false;         // `due` is to be delivered after the commit
  due_notification due;

  void unlock(region& r) const noexcept { both ? r.unlock_both() : r.unlock_send(); }
};

// One send's (or send_begin's) state across its looks at the queue.
struct queue::send_call {
  waiter_turn turn;
  bool waited = false;  // it found the queue full and waited
  explicit send_call(header* h) noexcept : turn(h->sender_turns, h->space_seq, h->space_sleepers) {}
};

// One receive's (or receive_begin's).
struct queue::receive_call {
  waiter_count waiting;
  waiter_turn turn;
  std::uint64_t held_before = 0;  // recv_lock's word at the previous look
  bool waited = false;             // it found the queue empty and waited
  explicit receive_call(header* h) noexcept : turn(h->receiver_turns, h->msg_seq, h->msg_sleepers) {}
};

// How long this call may wait for the lock: a non-blocking description waits no more
// than a try.
wait_limit queue::lock_limit(const wait_limit& limit) const noexcept {
  return nonblocking_.load(std::memory_order_relaxed) ? wait_limit::immediate() : limit;
}

// A sleep ran to recheck_ns with nothing waking it: counts it (rechecks()) and looks
// whether the file was truncated meanwhile.
void queue::rechecked() noexcept {
  rechecks_.fetch_add(1, std::memory_order_relaxed);
  region_->check_size();
}

// Does a call give up rather than wait: a non-blocking description, a try, or a
// deadline that has passed?
bool queue::gives_up(const wait_limit& limit) const noexcept {
  return nonblocking_.load(std::memory_order_relaxed) || limit.kind == wait_limit::none || deadline_passed(limit);
}

// What a call that cannot go on now reports: EAGAIN on a non-blocking description
// (O_NONBLOCK), ETIMEDOUT for a try or a deadline.
int queue::would_block() const noexcept {
  return nonblocking_.load(std::memory_order_relaxed) ? EAGAIN : ETIMEDOUT;
}

// After a commit and the unlock that ends it (every caller has just released a lock:
// see committed_after_unlock), outside the locks: wakes the other side's sleepers (on
// `word`, counted in `sleepers`) and the poll helpers, and brings this descriptor's
// eventfd up to date.
// Inline: it ends every send and receive, and an out-of-line call costs the
// uncontended pair about 5 ns (7 %).
// `turns` and `granted`: see wake_sleepers.
inline void queue::after_commit(atomic_u32& word, atomic_u32& sleepers, atomic_u64& woken_ns, atomic_u64& turns,
                                std::uint32_t granted) noexcept {
  committed_after_unlock();
  wake_sleepers(word, sleepers, &woken_ns, &turns, granted);
  announce_event(region_->hdr());
  sync_poll_helper();
}

// A send's (or send_begin's) look before it locks: 0 when it should lock and take a
// slot now; look_again when it waited, and must look again; or what the call returns.
// A full queue is waited for without a lock (dead owners' loans are given back first if
// a scan is due); free slots owed to woken senders (wait.hpp, "Turns") are left to them
// by a call that would not give up otherwise.
int queue::before_send(const wait_limit& limit, bool interruptible, send_call& call) {
  region& r = *region_;
  header* h = r.hdr();
  const wait_words words{h->space_seq, h->space_sleepers, h->space_woken_ns, h->receiver_cpu};
  const bool giving_up = gives_up(limit);
  if (r.has_room()) {
    auto owed = [&] { return turns_held(h->sender_turns) != 0; };
    return leave_to_turns(owed, giving_up, interruptible, words, spin_ns_, call.turn, limit);
  }
  // (Recovering a dead owner's send never frees a slot, so a dead send_lock owner hides
  // no room; the next sender that finds room takes the lock over and repairs the side.)
  // The cursors are checked (docs/engine.md, "Untrusted memory") by a call about to
  // give up, and by one that finds the queue full again after a wait; not on a first
  // look, which would pull the receivers' lines to this CPU just before they write them.
  if (r.faulted() || ((giving_up || call.waited) && !r.cursors_plausible())) return corrupt;
  if (reclaim_dead_loans()) return look_again;
  if (giving_up) return would_block();
  call.turn.end();
  call.waited = true;
  int e = wait_for_side([&] { return !r.has_room(); }, words, spin_ns_, send_spin_, call.turn, limit);
  if (e == EINTR && interruptible) return EINTR;
  if (e == recheck_due) rechecked();
  if (e == 0) r.await_room_batch(spin_ns_);
  return look_again;  // on ETIMEDOUT the next look reports it, unless room appeared
}

// A receive's (or receive_begin's) look before it locks, as before_send. An empty queue
// is waited for without a lock. But a side sender that died after its commit, holding
// recv_lock, hides its message until the side is repaired: so a held recv_lock's owner
// is checked (a system call or two) by a call about to give up, and by a waiter that
// found the same owner at its previous look; a dead one sends the call to the locked
// path, which repairs.
int queue::before_receive(const wait_limit& limit, bool interruptible, receive_call& call) {
  region& r = *region_;
  header* h = r.hdr();
  const wait_words words{h->msg_seq, h->msg_sleepers, h->msg_woken_ns, h->sender_cpu};
  const bool giving_up = gives_up(limit);
  if (r.has_message()) {
    // Two messages at once: a sender streams (in request and response there is never
    // more than one), which is when batching this receiver's next waits pays
    // (region::await_message_batch).
    if (r.ready_at_least(2)) {
      behind_.store(streaming_receives, std::memory_order_relaxed);
      store_if_changed(h->receivers_wait, 0);
    }
    auto owed = [&] { return turns_held(h->receiver_turns) != 0; };
    return leave_to_turns(owed, giving_up, interruptible, words, spin_ns_, call.turn, limit);
  }
  const std::uint64_t held = h->recv_lock.load(std::memory_order_relaxed);
  const bool dead_owner = held != 0 && (giving_up || held == call.held_before) && !lock_owner_alive(held, r.file());
  call.held_before = held;
  if (dead_owner) return 0;
  // Checked as in before_send: a first look leaves the senders' lines alone.
  if (r.faulted() || ((giving_up || call.waited) && !r.cursors_plausible())) return corrupt;
  if (giving_up) return would_block();
  // A receiver that waits and is not behind a stream waits for each message: senders
  // are to hand their messages over (finish_send). (A poll that gives up does not ask:
  // a consumer that polls a stream faster than it comes would have every message of
  // the stream moved, which costs the sender more than it saves.)
  if (behind_.load(std::memory_order_relaxed) == 0) store_if_changed(h->receivers_wait, 1);
  if (call.waiting.entry == nullptr) call.waiting.entry = enter_waiters(r);
  call.turn.end();
  call.waited = true;
  int e = wait_for_side([&] { return !r.has_message(); }, words, spin_ns_, receive_spin_, call.turn, limit);
  if (e == EINTR && interruptible) return EINTR;
  if (e == recheck_due) rechecked();
  if (e == 0 && !call.turn.held) {
    const std::uint32_t behind = behind_.load(std::memory_order_relaxed);
    if (behind != 0) {
      behind_.store(behind - 1, std::memory_order_relaxed);
      r.await_message_batch(spin_ns_);
    }
  }
  return look_again;  // on ETIMEDOUT the next look reports it, unless a message came
}

// How a send (or send_commit) ends once its message is committed in slot `s`, with the
// locks `p` says it holds: counts it, unlocks, hands the message over, wakes the
// receivers (`granted`: grant_turns before the commit) and delivers a due notification.
// Handing over: a receiver on another CPU that waits for each message reads it sooner
// from the shared cache than from this CPU's (a queue that streams, whose receiver finds
// messages ready, is left alone: moving every message costs the sender more than it
// saves).
// Always inline, as after_commit: it ends every send, where a call costs the
// uncontended pair several ns.
[[gnu::always_inline]] inline void queue::finish_send(const placement& p, const slot_header* s, std::size_t size,
                               std::uint32_t granted) noexcept {
  region& r = *region_;
  header* h = r.hdr();
  const std::uint32_t cpu = count_operation(h->messages_sent, h->bytes_sent, h->last_sender, h->sender_cpu, size);
  p.unlock(r);

  if (h->receivers_wait.load(std::memory_order_relaxed) != 0 &&
      h->receiver_cpu.load(std::memory_order_relaxed) != cpu) {
    r.demote_message(s, size);
  }
  after_commit(h->msg_seq, h->msg_sleepers, h->msg_woken_ns, h->receiver_turns, granted);
  if (p.notify) deliver(h, p.due);
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
  if (int e = map_on_first_use(r); e != 0) return e;
  header* h = r.hdr();
  send_call call(h);
  std::uint64_t w = 0;
  std::uint32_t n = 0;
  slot_header* s = nullptr;
  if (int e = take_slot(limit, interruptible, call, w, n, s); e != 0) return e;
  // Caller holds send_lock from here to the unlock.
  const std::uint32_t head = free_cursor(w);
  const std::uint32_t tail = ring_cursor(w);
  placement p;
  if (int e = place(priority, head, tail, lock_limit(limit), p); e != 0) return e == ETIMEDOUT ? would_block() : e;

  // Fill the slot, then commit with one store (docs/engine.md, "Commit points"); the
  // turns of sleeping receivers first (wait.hpp, "Turns").
  const std::uint32_t granted = grant_turns(h->msg_sleepers, h->receiver_turns);
  const std::uint64_t seq = h->next_seq;
  s->size = static_cast<std::uint32_t>(size);
  s->priority = priority;
  s->seq = seq;
  if (p.ring) {
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
    r.heap_push(p.side, {n, priority, seq});  // side < max: checked by place()
    h->side_count.store(p.side + 1, std::memory_order_release);
    h->next_seq = seq + 1;
    h->send_cursors.store(cursors(head + 1, tail), std::memory_order_release);
    h->claim_slot.store(0, std::memory_order_release);
  }

  if (std::uint32_t next = 0; r.entry_at(r.free_ring(), head + 1, next)) r.prefetch_for_send(next);
  finish_send(p, s, size, granted);
  // A fault during this send (the file truncated under it) means the message went
  // nowhere: report it, as every later call will.
  return r.faulted() ? corrupt : 0;
}

// The slot a send (or send_begin) fills: waits for room as the call allows, then takes
// send_lock and finds the slot at free_head. 0 with send_lock held, `w` the sender's
// cursors and `s` slot `n`; otherwise what the call returns, with no lock held.
inline int queue::take_slot(const wait_limit& limit, bool interruptible, send_call& call, std::uint64_t& w,
                     std::uint32_t& n, slot_header*& s) {
  region& r = *region_;
  header* h = r.hdr();
  for (;;) {
    if (r.faulted()) return corrupt;  // the file was truncated (region.hpp)
    if (int e = before_send(limit, interruptible, call); e != 0) {
      if (e == look_again) continue;
      return e;
    }
    if (int e = r.lock_send(lock_limit(limit)); e != 0) return e == ETIMEDOUT ? would_block() : e;
    w = h->send_cursors.load(std::memory_order_relaxed);
    const std::uint32_t head = free_cursor(w);
    const bool room = r.entry_at(r.free_ring(), head, n);
    if ((!room || region::check_due(head)) && !r.send_cursors_sane(head)) {
      r.unlock_send();
      return corrupt;
    }
    if (!room) {
      r.unlock_send();
      continue;  // filled up meanwhile
    }
    s = r.slot(n);
    if (s == nullptr) {
      r.unlock_send();
      return corrupt;
    }
    return 0;
  }
}

// Decides `p` for a message of `priority` (caller holds send_lock), taking recv_lock as
// `lock_limit` allows when the side heap or a notification decision needs it, and a
// due notification. 0 with the locks `p` says held; otherwise the error, with no lock
// held.
inline int queue::place(unsigned priority, std::uint32_t head, std::uint32_t tail, const wait_limit& lock_limit,
                 placement& p) {
  region& r = *region_;
  header* h = r.hdr();
  // The ready ring takes messages of its priority, and takes this message's priority
  // when the queue is empty: no side message, and receivers have reached ready_tail.
  // (Only senders add messages, and this one holds send_lock.)
  p.ring = priority == h->ring_priority;
  if (!p.ring && h->side_count.load(std::memory_order_acquire) == 0 &&
      ring_cursor(h->recv_cursors.load(std::memory_order_acquire)) == tail) {
    h->ring_priority = priority;
    p.ring = true;
  }
  // A side send, and a send that must decide on a notification (which needs the exact
  // depth before it), take recv_lock too.
  const bool notify_check = h->notify_pid.load(std::memory_order_relaxed) != 0;
  p.both = !p.ring || notify_check;
  if (p.both) {
    if (int e = r.lock_recv(lock_limit); e != 0) {
      r.unlock_send();
      return e;
    }
  }
  // A side send puts its entry at side_count and stores side_count + 1, read once here.
  // With a slot free at free_head (or lent to this commit), the side heap holds at most
  // N − 1 messages; a larger count is garbage (all ones would wrap to 0 and hide the side
  // heap from receivers).
  p.side = p.ring ? 0 : h->side_count.load(std::memory_order_relaxed);
  if (p.side >= r.geo.max_messages) {
    p.unlock(r);
    return corrupt;
  }
  // A message on an empty queue with no receiver waiting: take the registration.
  p.notify = notify_check && take_due_notification(r, head, p.due);
  return 0;
}

// The message a receive takes: the oldest of the highest priority.
struct picked {
  slot_header* s = nullptr;
  std::uint32_t n = 0, size = 0, priority = 0;
  std::uint64_t seq = 0;
  bool from_side = false;
  std::uint32_t free_tail = 0, head = 0, side_count = 0;  // the receiver state it was picked in
};

namespace {
// Picks the message a receive takes now, checking every field it reads, and keeps the
// high-water mark. 0, EAGAIN (no message), or corrupt. Caller holds recv_lock.
int pick_message(region& r, picked& out) noexcept {
  header* h = r.hdr();
  const std::uint64_t w = h->recv_cursors.load(std::memory_order_relaxed);
  const std::uint32_t free_tail = free_cursor(w);
  const std::uint32_t head = ring_cursor(w);
  std::uint32_t ring_n = 0;
  const bool in_ring = r.entry_at(r.ready_ring(), head, ring_n);
  const std::uint32_t side = h->side_count.load(std::memory_order_relaxed);
  if ((!in_ring && side == 0) || region::check_due(free_tail)) {
    if (!r.recv_cursors_sane(free_tail)) return corrupt;
  }
  if (!in_ring && side == 0) return EAGAIN;
  if (side > r.geo.max_messages) return corrupt;
  // Each candidate's fields are read once and checked; only those copies are used.
  struct candidate {
    slot_header* s = nullptr;
    std::uint32_t n = 0, size = 0, priority = 0;
    std::uint64_t seq = 0;
  };
  candidate ring_c;
  if (in_ring) {
    ring_c = {r.slot(ring_n), ring_n};
    if (ring_c.s == nullptr) return corrupt;
    r.prefetch_for_receive(ring_c.s);
    ring_c.size = read_once(ring_c.s->size);
    ring_c.priority = read_once(ring_c.s->priority);
    ring_c.seq = read_once(ring_c.s->seq);
    if (ring_c.size > r.geo.message_size || ring_c.priority >= priorities) return corrupt;
  }
  candidate side_c;
  if (side != 0) {
    // The side heap's first entry names its best message; the slot must be SIDE and
    // carry the entry's key.
    side_entry& top = r.side_heap()[0];
    side_c.n = read_once(top.slot);
    side_c.s = r.slot(side_c.n);
    if (side_c.s == nullptr) return corrupt;
    r.prefetch_for_receive(side_c.s);
    if (side_c.s->state.load(std::memory_order_relaxed) != slot_side) return corrupt;
    side_c.size = read_once(side_c.s->size);
    side_c.priority = read_once(side_c.s->priority);
    side_c.seq = read_once(side_c.s->seq);
    if (side_c.priority != read_once(top.priority) || side_c.seq != read_once(top.seq) ||
        side_c.priority >= priorities || side_c.size > r.geo.message_size) {
      return corrupt;
    }
  }
  // The oldest message of the highest priority: the side heap's best or the ring's.
  const bool from_side =
      side_c.s != nullptr && (ring_c.s == nullptr || received_before({0, side_c.priority, side_c.seq},
                                                                     {0, ring_c.priority, ring_c.seq}));
  const candidate& c = from_side ? side_c : ring_c;
  out = {c.s, c.n, c.size, c.priority, c.seq, from_side, free_tail, head, side};

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

  return 0;
}

}  // namespace

int queue::receive(void* buffer, std::size_t capacity, std::size_t& size, unsigned& priority,
                   const wait_limit& caller_limit, bool interruptible) {
  if (!can_receive_) return EBADF;
  region& r = *region_;
  if (capacity < r.geo.message_size) return EMSGSIZE;
  if (int e = map_on_first_use(r); e != 0) return e;
  header* h = r.hdr();
  // Declared before `call`, so destroyed after it: the mask comes back last.
  sys::interruption interrupt;
  wait_limit limit = caller_limit;
  if (interruptible) limit.interrupt = &interrupt;
  receive_call call(h);
  picked c;
  if (int e = take_message(limit, interruptible, call, c); e != 0) return e;
  // Caller holds recv_lock from here to unlock_recv().
  slot_header* s = c.s;
  const std::uint32_t n = c.n;
  const bool from_side = c.from_side;
  const std::uint32_t free_tail = c.free_tail;
  const std::uint32_t head = c.head;
  const std::uint32_t side = c.side_count;
  h->recv_taking.store(from_side ? n | taking_side : n, std::memory_order_relaxed);

  // Copy out, then commit with one store (docs/engine.md, "Commit points"); the turns
  // of sleeping senders first (wait.hpp, "Turns").
  const std::uint32_t granted = grant_turns(h->space_sleepers, h->sender_turns);
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
  call.waiting.leave();  // before the unlock: the next send decides on a notification under it
  r.unlock_recv();

  after_commit(h->space_seq, h->space_sleepers, h->space_woken_ns, h->sender_turns, granted);
  // A fault during this receive means the message read may be zeros: report it.
  return r.faulted() ? corrupt : 0;
}

// The message a receive (or receive_begin) takes: waits for one as the call allows,
// then takes recv_lock and picks it. 0 with recv_lock held and `c` set; otherwise what
// the call returns, with no lock held.
inline int queue::take_message(const wait_limit& limit, bool interruptible, receive_call& call, picked& c) {
  region& r = *region_;
  for (;;) {
    if (r.faulted()) return corrupt;  // the file was truncated (region.hpp)
    if (int e = before_receive(limit, interruptible, call); e != 0) {
      if (e == look_again) continue;
      return e;
    }
    if (int e = r.lock_recv(lock_limit(limit)); e != 0) return e == ETIMEDOUT ? would_block() : e;
    const int e = pick_message(r, c);
    if (e == 0) return 0;
    r.unlock_recv();
    if (e != EAGAIN) return e;
    // EAGAIN: another receiver was first.
  }
}

// ---- loans (docs/engine.md, "Loans") ----

namespace {

// A process gives dead owners' loans back at most this often per description: a scan
// holds both locks and reads /proc for every loan.
constexpr std::int64_t loan_scan_interval_ns = 50'000'000;

std::uint32_t own_start_low() noexcept { return static_cast<std::uint32_t>(own_start_time()); }

// Is slot `s` lent to this process, in `state`?
bool lent_to_me(const slot_header* s, std::uint32_t state) noexcept {
  return s->state.load(std::memory_order_acquire) == state &&
         read_once(s->owner_pid) == static_cast<std::uint32_t>(sys::current_pid()) &&
         read_once(s->owner_start) == own_start_low();
}

// Names this process as the owner of slot `s`, then stores the loan state (release).
void lend(slot_header* s, std::uint32_t state) noexcept {
  std::atomic_ref<std::uint32_t>(s->owner_pid).store(static_cast<std::uint32_t>(sys::current_pid()),
                                                     std::memory_order_relaxed);
  std::atomic_ref<std::uint32_t>(s->owner_start).store(own_start_low(), std::memory_order_relaxed);
  s->state.store(state, std::memory_order_release);
}

}  // namespace

int queue::reserve_loan() noexcept {
  std::lock_guard lock(loans_mutex_);
  if (loans_.capacity() >= region_->geo.max_messages) return 0;
  try {
    loans_.reserve(region_->geo.max_messages);
  } catch (...) {
    return ENOMEM;
  }
  return 0;
}

void queue::record_loan(std::uint32_t key) noexcept {
  std::lock_guard lock(loans_mutex_);
  if (loans_.size() < loans_.capacity()) loans_.push_back(key);  // never more than N slots
}

bool queue::forget_loan(std::uint32_t key) noexcept {
  std::lock_guard lock(loans_mutex_);
  for (auto& k : loans_) {
    if (k == key) {
      k = loans_.back();
      loans_.pop_back();
      return true;
    }
  }
  return false;
}

// Gives slot `n`, lent to this process in `state`, back to the free ring. Takes and
// releases recv_lock (waiting as `limit` allows: the destructor does not hang on a
// stopped holder).
int queue::give_back_loan(std::uint32_t n, std::uint32_t state, const wait_limit& limit) noexcept {
  region& r = *region_;
  header* h = r.hdr();
  slot_header* s = r.slot(n);
  if (s == nullptr) return corrupt;
  if (int e = r.lock_recv(limit); e != 0) return e;
  // The slot is this process's until it gives it back: anything else is a foreign write.
  if (!lent_to_me(s, state)) {
    r.unlock_recv();
    return corrupt;
  }
  const std::uint32_t granted = grant_turns(h->space_sleepers, h->sender_turns);
  r.give_back(n, s);
  (state == slot_send_loan ? h->send_loans : h->recv_loans).fetch_sub(1, std::memory_order_relaxed);
  r.unlock_recv();
  after_commit(h->space_seq, h->space_sleepers, h->space_woken_ns, h->sender_turns, granted);
  return r.faulted() ? corrupt : 0;
}

// Caller holds no lock. Takes both, at most once per loan_scan_interval_ns, and only
// while the header says slots are lent out.
bool queue::reclaim_dead_loans() noexcept {
  region& r = *region_;
  if (r.loans() == 0) return false;
  const std::int64_t now = sys::now_ns(CLOCK_MONOTONIC);
  std::int64_t due = next_loan_scan_ns_.load(std::memory_order_relaxed);
  if (now < due || !next_loan_scan_ns_.compare_exchange_strong(due, now + loan_scan_interval_ns)) return false;
  if (r.lock_both(wait_limit::immediate()) != 0) return false;
  const int reclaimed = r.reclaim_loans();
  r.unlock_both();
  if (reclaimed <= 0) return false;
  header* h = r.hdr();
  after_commit(h->space_seq, h->space_sleepers, h->space_woken_ns, h->sender_turns, 0);
  return true;
}

int queue::send_begin(std::size_t size, const wait_limit& caller_limit, bool interruptible, std::byte*& data) {
  if (!can_send_) return EBADF;
  sys::interruption interrupt;  // the caller's signal mask comes back with it
  wait_limit limit = caller_limit;
  if (interruptible) limit.interrupt = &interrupt;
  region& r = *region_;
  if (size > r.geo.message_size) return EMSGSIZE;
  if (int e = map_on_first_use(r); e != 0) return e;
  if (int e = reserve_loan(); e != 0) return e;
  header* h = r.hdr();
  send_call call(h);
  std::uint64_t w = 0;
  std::uint32_t n = 0;
  slot_header* s = nullptr;
  if (int e = take_slot(limit, interruptible, call, w, n, s); e != 0) return e;
  // Caller holds send_lock from here to the unlock.
  const std::uint32_t head = free_cursor(w);
  // Count the loan first (the count is never below the truth), name the owner, then
  // take the slot off the free ring: the cursor store is the loan's commit.
  h->send_loans.fetch_add(1, std::memory_order_relaxed);
  lend(s, slot_send_loan);
  h->send_cursors.store(cursors(head + 1, ring_cursor(w)), std::memory_order_release);
  r.unlock_send();

  record_loan(n);
  committed_after_unlock();
  announce_event(h);
  sync_poll_helper();
  data = r.payload(s);
  if (r.faulted()) {
    send_abort(data);
    return corrupt;
  }
  return 0;
}

namespace {
// The slot of loan `data` if this process holds it; 0 otherwise (a child of fork has
// its parent's list of loans, not the loans).
std::uint32_t own_loan_slot(const region& r, const void* data) noexcept {
  const std::uint32_t n = r.slot_of_payload(data);
  if (n == 0 || read_once(r.slot(n)->owner_pid) != static_cast<std::uint32_t>(sys::current_pid())) return 0;
  return n;
}
}  // namespace

int queue::send_abort(const void* data) noexcept {
  const std::uint32_t n = own_loan_slot(*region_, data);
  if (n == 0 || !forget_loan(n)) return EINVAL;
  return give_back_loan(n, slot_send_loan);
}

int queue::send_commit(const void* data, std::size_t size, unsigned priority) noexcept {
  region& r = *region_;
  const std::uint32_t n = own_loan_slot(r, data);
  if (n == 0) return EINVAL;
  {
    std::lock_guard lock(loans_mutex_);
    if (std::find(loans_.begin(), loans_.end(), n) == loans_.end()) return EINVAL;
  }
  // A bad size or priority leaves the loan outstanding: the caller may commit again or
  // abort.
  if (size > r.geo.message_size) return EMSGSIZE;
  if (priority >= priorities) return EINVAL;
  if (!forget_loan(n)) return EINVAL;  // another thread committed it meanwhile
  header* h = r.hdr();
  slot_header* s = r.slot(n);

  if (int e = r.lock_send(); e != 0) return e;
  // Caller holds send_lock from here to the unlock.
  if (!lent_to_me(s, slot_send_loan)) {
    r.unlock_send();
    return corrupt;
  }
  const std::uint64_t w = h->send_cursors.load(std::memory_order_relaxed);
  const std::uint32_t head = free_cursor(w);
  const std::uint32_t tail = ring_cursor(w);
  // As send. (The slot is off the free ring and counted in send_loans: it is not a
  // message yet, for the notification's "empty queue".)
  placement p;
  if (int e = place(priority, head, tail, wait_limit::blocking(), p); e != 0) return e;

  // The turns of sleeping receivers (wait.hpp, "Turns"), then the seq: a commit killed
  // after it leaves a gap, never a repeat.
  const std::uint32_t granted = grant_turns(h->msg_sleepers, h->receiver_turns);
  const std::uint64_t seq = h->next_seq;
  h->next_seq = seq + 1;
  s->size = static_cast<std::uint32_t>(size);
  s->priority = priority;
  s->seq = seq;
  if (p.ring) {
    // A death between the RING store and the commit leaves a slot in no ring and no
    // loan: a loan scan gives it back (the message is dropped).
    s->state.store(slot_ring, std::memory_order_relaxed);
    h->loan_commit.store(n, std::memory_order_release);
    r.entry(r.ready_ring(), tail).store(ring_entry(tail, n), std::memory_order_release);  // the commit
    h->send_cursors.store(cursors(head, tail + 1), std::memory_order_release);
    h->loan_commit.store(0, std::memory_order_release);
  } else {
    s->state.store(slot_side, std::memory_order_release);  // the commit
    r.heap_push(p.side, {n, priority, seq});
    h->side_count.store(p.side + 1, std::memory_order_release);
  }
  h->send_loans.fetch_sub(1, std::memory_order_relaxed);
  finish_send(p, s, size, granted);
  return r.faulted() ? corrupt : 0;
}

int queue::receive_begin(const wait_limit& caller_limit, bool interruptible, const std::byte*& data,
                         std::size_t& size, unsigned& priority) {
  if (!can_receive_) return EBADF;
  region& r = *region_;
  if (int e = map_on_first_use(r); e != 0) return e;
  header* h = r.hdr();
  sys::interruption interrupt;
  wait_limit limit = caller_limit;
  if (interruptible) limit.interrupt = &interrupt;
  if (int e = reserve_loan(); e != 0) return e;
  receive_call call(h);
  picked c;
  if (int e = take_message(limit, interruptible, call, c); e != 0) return e;
  // Caller holds recv_lock from here to unlock_recv().
  slot_header* s = c.s;
  // Count the loan first, name the owner, then take the message: the SIDE → RECV_LOAN
  // store for a side message, the ready_head store for a ring message, is the commit.
  h->recv_loans.fetch_add(1, std::memory_order_relaxed);
  // A side message records where it left the side heap, as a receive that frees it
  // records where: a side sender that died before moving the cursors committed it if
  // the slot moved on since its claim (region::recover_send), and a lent slot is neither
  // SIDE nor freed yet. free_tail lies 1 … N past that claim.
  if (c.from_side) s->position = c.free_tail;
  lend(s, slot_recv_loan);
  if (c.from_side) {
    r.heap_pop(c.side_count);
    h->side_count.store(c.side_count - 1, std::memory_order_release);
  } else {
    h->recv_cursors.store(cursors(c.free_tail, c.head + 1), std::memory_order_release);
  }
  count_operation(h->messages_received, h->bytes_received, h->last_receiver, h->receiver_cpu, c.size);
  call.waiting.leave();  // as in receive
  r.unlock_recv();

  record_loan(c.n | loan_receive);
  committed_after_unlock();
  announce_event(h);
  sync_poll_helper();
  data = r.payload(s);
  size = c.size;
  priority = c.priority;
  if (r.faulted()) {
    receive_end(data);
    return corrupt;
  }
  return 0;
}

int queue::receive_end(const void* data) noexcept {
  const std::uint32_t n = own_loan_slot(*region_, data);
  if (n == 0 || !forget_loan(n | loan_receive)) return EINVAL;
  return give_back_loan(n, slot_recv_loan);
}

void queue::loans(std::uint32_t& sending, std::uint32_t& receiving) const noexcept {
  sending = receiving = 0;
  if (region_->use() != 0) return;
  region_->count_loans(sending, receiving);
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
