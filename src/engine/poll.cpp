// Polling (docs/engine.md, "Polling"): an eventfd per open description that polls
// readable while the queue has messages and writable while it has room, kept so by a
// helper thread that sleeps on event_seq with the handshake of wait.hpp.
#include "engine/helpers.hpp"
#include "engine/wait.hpp"

namespace pipc::engine {

namespace {
constexpr std::uint64_t eventfd_full = 0xffff'ffff'ffff'fffeULL;  // polls not writable
}  // namespace

void queue::poll_helper::sync(bool look_for_dead) noexcept {
  std::lock_guard lock(mutex);
  header* h = r->hdr();
  // A dead recv_lock owner may hide a committed side message until the next receiver
  // repairs the side: such a queue counts as readable. Looking costs a system call or
  // two, so only the helper's periodic re-check does it. (A dead send_lock owner hides
  // no room: recovering a send never frees a slot.)
  const bool readable = r->has_message() || (look_for_dead && lock_owner_dead(h->recv_lock, r->file()));
  const bool writable = r->has_room();
  std::uint64_t want = !readable ? 0 : writable ? 1 : eventfd_full;
  // A truncated file: ready both ways, so that a poller calls in and learns of it.
  if (r->faulted()) want = 1;
  if (want != shown) {
    sys::eventfd_set(fd, want);
    shown = want;
  }
}

void* queue::poll_helper::run(void* arg) {
  auto* self = static_cast<poll_helper*>(arg);
  header* h = self->r->hdr();
  // The periodic look for a dead owner is due by the clock, not after a sleep that
  // timed out: wakes that change nothing (another descriptor's helper stopping, a
  // recovery's wake_everyone) may come more often than recheck_ns.
  std::int64_t look_due = sys::now_ns(CLOCK_MONOTONIC) + recheck_ns;
  while (!self->stop.load()) {
    // Announce, then look: a change after the look bumps event_seq and wakes us.
    std::uint32_t seen = h->event_seq.load();
    h->event_watchers.fetch_add(1);
    handshake_fence();
    std::int64_t now = sys::now_ns(CLOCK_MONOTONIC);
    const bool look_for_dead = now >= look_due;
    if (look_for_dead) {
      look_due = now + recheck_ns;
      self->r->check_size();  // a truncation this process has not touched yet
    }
    self->sync(look_for_dead);
    if (self->stop.load() || self->r->faulted()) break;
    // Bounded, like every sleep: a process killed between its commit and its wake-up
    // wakes nobody.
    std::int64_t wake_at = look_due;
    sys::futex_wait(&h->event_seq, seen, CLOCK_MONOTONIC, &wake_at);
  }
  return nullptr;
}

// Starts this process's poll helper on eventfd `fd`, which it then owns (and closes,
// also on failure). Caller holds helpers_mutex_, and this process has no helper yet.
int queue::start_poll_helper(int fd) noexcept {
  if (int e = region_->use(); e != 0) {
    sys::close(fd);
    return e;
  }
  std::shared_ptr<poll_helper> helper;
  try {
    helper = std::make_shared<poll_helper>();
  } catch (...) {
    sys::close(fd);
    return ENOMEM;
  }
  helper->r = region_;
  helper->owner = sys::current_pid();
  helper->fd = fd;
  helper->shown = ~std::uint64_t{0};  // unknown: the first sync writes the counter
  if (int e = sys::thread_start(poll_helper::run, helper.get(), helper->thread); e != 0) return e;
  helper->sync();
  poll_ = std::move(helper);
  poll_active_.store(poll_.get(), std::memory_order_release);
  return 0;
}

int queue::poll_fd(int& fd) noexcept {
  std::lock_guard lock(helpers_mutex_);
  if (!poll_ || poll_->owner != sys::current_pid()) {
    int created = -1;
    if (int e = sys::eventfd_create(created); e != 0) return e;
    if (int e = start_poll_helper(created); e != 0) return e;
  }
  fd = poll_->fd;
  return 0;
}

int queue::track_readiness(int fd, bool own_eventfd) noexcept {
  std::lock_guard lock(helpers_mutex_);
  if (poll_ && poll_->owner == sys::current_pid()) return 0;
  int own = -1;
  if (own_eventfd) {
    // A number that is no longer on the anonymous inode was closed behind pipc's back
    // and now holds somebody else's file: leave it alone.
    if (!sys::is_anonymous_inode(fd)) return EBADF;
    if (int e = sys::eventfd_create(own, 1); e != 0) return e;
    if (int e = sys::dup_onto(own, fd); e != 0) {
      sys::close(own);
      return e;
    }
  } else if (int e = sys::dup_cloexec(fd, own); e != 0) {
    return e;
  }
  return start_poll_helper(own);
}

}  // namespace pipc::engine
