// Notification (docs/engine.md, "Notification") and the table of blocked receivers
// that decides it ("no receiver is blocked").
//
// What this file keeps:
//   1. One registration per queue, written under both locks; a registration whose
//      process is gone (pid and start time) counts as absent.
//   2. A notification is taken (one-shot) by the send that puts a message on an empty
//      queue while no receiver is blocked, under both locks, and delivered after them.
//   3. The waiter table counts blocked receivers per process, each entry one word
//      changed by compare-and-swap.
#include "engine/notify.hpp"

#include "engine/helpers.hpp"
#include "engine/wait.hpp"

namespace pipc::engine {

bool same_process_alive(pid_t pid, std::uint64_t start_time) noexcept {
  // One look at /proc/PID/stat for both (a process whose entry cannot be read is not
  // known to be the same one).
  std::uint64_t start = 0;
  return start_time != 0 && sys::thread_state(pid, start) == sys::thread_status::alive && start == start_time;
}

std::uint64_t own_start_time() noexcept {
  // Cached per process. A forked child has its own start time, and may even get an
  // ancestor's pid, so the cache is keyed by the fork generation, as lock_identity's.
  static std::atomic<std::uint64_t> cached_generation{0};
  static std::atomic<std::uint64_t> cached{0};
  const std::uint64_t generation = sys::fork_generation();
  if (cached_generation.load(std::memory_order_acquire) != generation) {
    cached.store(sys::process_start_time(sys::current_pid()), std::memory_order_relaxed);
    cached_generation.store(generation, std::memory_order_release);
  }
  return cached.load(std::memory_order_relaxed);
}

namespace {
constexpr std::uint32_t waiter_pid(std::uint64_t word) noexcept { return static_cast<std::uint32_t>(word >> 32); }
constexpr std::uint32_t waiter_count(std::uint64_t word) noexcept { return static_cast<std::uint32_t>(word); }
}  // namespace

sys::maps_answer mapped_by(pid_t pid, const region& r) noexcept {
  return pid == sys::current_pid() ? sys::maps_answer::yes : sys::process_maps_file(pid, r.dev, r.ino);
}

waiter_entry* enter_waiters(const region& r) noexcept {
  header* h = r.hdr();
  auto me = static_cast<std::uint32_t>(sys::current_pid());
  // Pass 0: this process's entry; 1: a free one, or another's that counts nobody now
  // (a live process's entry stays named after its receivers leave: taken over only at
  // 0, by one compare-and-swap, it cannot lose a count, and 64 processes that once
  // blocked do not leave the 65th uncounted); 2: one of a process that is gone or does
  // not map the queue (a forged entry).
  for (int pass = 0; pass < 3; ++pass) {
    for (waiter_entry& w : h->waiters) {
      std::uint64_t word = w.word.load(std::memory_order_relaxed);
      for (;;) {
        const std::uint32_t owner = waiter_pid(word);
        const bool mine = owner == me && waiter_count(word) != 0xffff'ffffu;
        const bool free = owner == 0 || waiter_count(word) == 0;
        const bool gone = pass == 2 && owner != 0 && owner != me &&
                          (!sys::process_exists(static_cast<pid_t>(owner)) ||
                           mapped_by(static_cast<pid_t>(owner), r) == sys::maps_answer::no);
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
  // Only this process counts in its entry, and nobody takes over a live process's entry
  // while it counts anyone, so the count is not zero here.
  w->word.fetch_sub(1);
}

bool receivers_blocked(const region& r) noexcept {
  header* h = r.hdr();
  bool any = false;
  for (waiter_entry& w : h->waiters) {
    std::uint64_t word = w.word.load();
    const auto owner = static_cast<pid_t>(waiter_pid(word));
    if (owner == 0 || waiter_count(word) == 0) continue;
    // A process that is gone, or that does not map this queue (an entry forged by a
    // process that can write the region), blocks no receiver here: its entry is cleared,
    // unless it changed meanwhile. A process whose maps this one may not read (another
    // user's, without CAP_SYS_PTRACE) is not counted either, but its entry stays: a
    // forged entry must not suppress the notification for good, and the price is a
    // notification while another user's receiver is blocked (docs/engine.md, "Security").
    const sys::maps_answer maps = sys::process_exists(owner) ? mapped_by(owner, r) : sys::maps_answer::no;
    if (maps == sys::maps_answer::no) {
      w.word.compare_exchange_strong(word, 0);
    } else if (maps == sys::maps_answer::yes) {
      any = true;
    }
  }
  return any;
}

// Waits for this descriptor's thread notification to fire, then runs its callback.
void* queue::notify_helper::run(void* arg) {
  auto* self = static_cast<notify_helper*>(arg);
  header* h = self->r->hdr();
  auto me = static_cast<std::uint32_t>(sys::current_pid());
  for (;;) {
    std::uint32_t seq = h->notify_seq.load();
    if (self->stop.load()) break;  // the descriptor clears a record left behind
    if (self->r->faulted()) break;  // the file was truncated: nothing will fire
    // Bounded, so that the helper still sees `stop` if a lock's holder is stopped (or a
    // forged live owner holds it): it looks again after its sleep.
    const int locked = self->r->lock_both(detail::wait_limit::immediate());
    if (locked != 0 && locked != ETIMEDOUT) break;
    bool fired = false;
    bool still_registered = true;
    if (locked == 0) {
      fired = h->notify_fired_pid == me && h->notify_fired_token == self->token;
      still_registered = h->notify_pid.load() == me && h->notify_token == self->token;
      if (fired) {
        h->notify_fired_pid = 0;
        h->notify_fired_token = 0;
      }
      self->r->unlock_both();
    }
    if (fired) {
      detail::notify_registry_fire(self->key);
      break;
    }
    if (!still_registered) break;
    // Bounded: a sender killed between recording the notification and waking this
    // helper wakes nobody.
    std::int64_t wake_at = sys::now_ns(CLOCK_MONOTONIC) + recheck_ns;
    if (sys::futex_wait(&h->notify_seq, seq, CLOCK_MONOTONIC, &wake_at) == ETIMEDOUT) self->r->check_size();
  }
  detail::notify_registry_remove(self->key);
  return nullptr;
}

// Records this process and descriptor as the registrant. Takes and releases the lock.
int queue::register_notification(std::uint32_t kind, int signo, std::uint64_t value) noexcept {
  region& r = *region_;
  if (int e = r.use(); e != 0) return e;
  header* h = r.hdr();
  // mq_notify does not block: a lock held by a stopped process (or a forged live owner)
  // makes the registration EBUSY after the patience of a try, never a hang.
  if (int e = r.lock_both(detail::wait_limit::immediate()); e != 0) return e == ETIMEDOUT ? EBUSY : e;
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
  registered_.store(true, std::memory_order_relaxed);
  h->notify_fired_pid = 0;
  h->notify_fired_token = 0;
  h->notify_kind = kind;
  h->notify_signo = signo;
  h->notify_value = static_cast<std::int32_t>(static_cast<std::uint32_t>(value));
  h->notify_value_high = static_cast<std::uint32_t>(value >> 32);
  h->notify_start_time = own_start_time();
  h->notify_token = token_;
  h->notify_pid.store(static_cast<std::uint32_t>(sys::current_pid()));
  r.unlock_both();
  return 0;
}

// The thread notification's helper of this descriptor, if any, stops only once a new
// registration has taken its place: a registration refused (EBUSY: the queue, or this
// descriptor's own thread notification, is registered; or a stopped lock holder) leaves
// it waiting, as Linux leaves the registration that made mq_notify refuse.
int queue::notify_signal(int signo, std::uint64_t value) noexcept {
  // Signal 0 registers and, when the notification fires, sends nothing: Linux's
  // choice, which POSIX leaves open (valid_signal(0) in the kernel's mq_notify).
  if (signo < 0 || signo >= NSIG) return EINVAL;
  const int e = register_notification(notify_signal_kind, signo, value);
  if (e == 0) stop_notify_helper();
  return e;
}

int queue::notify_none() noexcept {
  const int e = register_notification(notify_none_kind, 0, 0);
  if (e == 0) stop_notify_helper();
  return e;
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

// Removes this process's registration (mq_notify(NULL)). The descriptor's helper stops
// only after that, and not at all when its notification has fired already: the callback
// of a notification that fired runs, as on Linux, whatever the process does next. A
// cancellation refused (EBUSY: a stopped lock holder) leaves the registration and its
// helper as they were.
int queue::cancel_notification() noexcept {
  region& r = *region_;
  if (int e = r.use(); e != 0) {
    stop_notify_helper();
    return e;
  }
  header* h = r.hdr();
  if (int e = r.lock_both(detail::wait_limit::immediate()); e != 0) return e == ETIMEDOUT ? EBUSY : e;
  const auto me = static_cast<std::uint32_t>(sys::current_pid());
  if (h->notify_pid.load() == me) h->notify_pid.store(0);
  const bool fired = h->notify_fired_pid == me && h->notify_fired_token == token_;
  r.unlock_both();
  if (!fired) stop_notify_helper();
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

}  // namespace pipc::engine
