// Recovery: repairing one side of a queue whose lock's owner died (docs/engine.md,
// "Recovery"). Each function runs with that side's lock held, taken over from the dead
// owner, and may run again if the recoverer itself dies: every step is idempotent.
//
// What recovery relies on:
//   1. Every store it reads was made with release order, in the order docs/engine.md
//      lists under "Commit points", and it reads them after acquiring the lock.
//   2. A message committed (a valid ring entry, or a SIDE state) is kept; one not
//      committed leaves no trace but a slot that goes back to where it was.
//   3. It only reads what it checks: slot numbers, sizes and priorities from the region
//      are bounds-checked like everywhere else.
#include "engine/notify.hpp"
#include "engine/region.hpp"

#include <new>
#include <vector>

namespace pipc::engine {

// send_lock's previous owner died. Caller holds send_lock.
void region::recover_send() noexcept {
  header* h = hdr();
  std::uint64_t w = h->send_cursors.load(std::memory_order_relaxed);
  std::uint32_t head = free_cursor(w);
  std::uint32_t tail = ring_cursor(w);
  std::uint32_t n = 0;
  if (entry_at(ready_ring(), tail, n)) {
    // A ring send committed at ready_tail and died before moving the cursors. A loan's
    // commit (loan_commit names the slot) took its slot from the free ring before: only
    // ready_tail moves.
    if (slot_header* s = slot(n)) h->next_seq = std::max(h->next_seq, s->seq + 1);
    const bool loan = h->loan_commit.load(std::memory_order_acquire) == n;
    h->send_cursors.store(cursors(loan ? head : head + 1, tail + 1), std::memory_order_release);
  } else if (std::uint32_t claimed = h->claim_slot.load(std::memory_order_relaxed);
             claimed != 0 && h->claim_position == head) {
    // A side send was under way. It committed if the slot is SIDE, or if it has been
    // received since: a receive records the free_tail it freed the slot at, and a
    // receive loan the one at which it took the slot from the side heap, each 1 … N + 1
    // positions past the claim's (the claimed slot was still the free ring's, and the
    // dead sender's message may be one more than N − 1 others). A position the side send
    // wrote itself, or one never written (a new queue writes no slot), is not that.
    // The state first: a receiver may be taking the message now (recv_lock is not
    // held here), and stores the position before the state that ends SIDE.
    slot_header* s = slot(claimed);
    const bool side = s != nullptr && s->state.load(std::memory_order_acquire) == slot_side;
    const std::uint32_t since = s != nullptr ? read_once(s->position) - head : 0;
    if (s != nullptr && (side || (since >= 1 && since <= geo.max_messages + 1))) {
      h->next_seq = std::max(h->next_seq, s->seq + 1);
      h->send_cursors.store(cursors(head + 1, tail), std::memory_order_release);
    }
  }
  h->claim_slot.store(0, std::memory_order_release);
  h->loan_commit.store(0, std::memory_order_release);
  wake_everyone();
}

// recv_lock's previous owner died. Caller holds recv_lock; ring senders may run.
void region::recover_recv() noexcept {
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

  // Rebuild the side heap from the SIDE states, pushing each slot in turn: in place,
  // O(N log N), and nothing to allocate. Every entry comes from a slot checked here, and
  // there are at most N of them.
  std::uint32_t count = 0;
  for (std::uint32_t k = 1; k <= geo.max_messages; ++k) {
    slot_header* s = slot(k);
    if (s->state.load(std::memory_order_acquire) != slot_side) continue;
    const std::uint32_t p = read_once(s->priority);
    const std::uint64_t seq = read_once(s->seq);
    if (p >= priorities || read_once(s->size) > geo.message_size) {
      // Unusable (only a foreign write makes one): give the slot back to the free
      // ring, as a receive would, naming it in `taking` as a side slot first, as
      // give_back does: a recovery after a death between the push and the cursor
      // store must move free_tail alone, not trust what `taking` held before.
      h->recv_taking.store(k | taking_side, std::memory_order_relaxed);
      push_free(free_tail, k, s, true);
      s->state.store(slot_free, std::memory_order_release);
      free_tail += 1;
      h->recv_cursors.store(cursors(free_tail, head), std::memory_order_release);
      continue;
    }
    heap_push(count, {k, p, seq});
    ++count;
  }
  h->side_count.store(count, std::memory_order_release);
  wake_everyone();
}

namespace {

// Is the process that a loan names alive, the same process (its start time's low 32
// bits; 0 = unknown, not compared), and does it map the queue? A process whose /proc
// entry or maps cannot be read counts as alive: a slot held too long, never one taken
// from a live owner.
bool loan_owner_alive(std::uint32_t pid, std::uint32_t start, const region& r) noexcept {
  if (pid == 0 || pid > 0x3fff'ffffu) return false;
  if (static_cast<pid_t>(pid) == sys::current_pid()) {
    return start == 0 || start == static_cast<std::uint32_t>(own_start_time());
  }
  std::uint64_t started = 0;
  switch (sys::thread_state(static_cast<pid_t>(pid), started)) {
    case sys::thread_status::gone:
      return false;
    case sys::thread_status::unreadable:
      return true;
    case sys::thread_status::alive:
      break;
  }
  if (start != 0 && static_cast<std::uint32_t>(started) != start) return false;
  return mapped_by(static_cast<pid_t>(pid), r) != sys::maps_answer::no;
}

}  // namespace

// Caller holds both locks, so no send or receive is under way: every slot is in the
// free ring [free_head, free_tail), the ready ring [ready_head, ready_tail), the side
// heap (state SIDE), or lent out. A slot in none of them whose state is not a loan of a
// live process is the remains of a loan whose owner died (or of a loan's commit killed
// before it published the message): it goes back to the free ring.
int region::reclaim_loans() noexcept {
  header* h = hdr();
  const auto max = static_cast<std::uint32_t>(geo.max_messages);
  std::vector<bool> present;
  try {
    present.assign(std::size_t{max} + 1, false);
  } catch (...) {
    return 0;
  }
  const std::uint64_t sw = h->send_cursors.load(std::memory_order_relaxed);
  const std::uint64_t rw = h->recv_cursors.load(std::memory_order_relaxed);
  auto walk = [&](atomic_u64* ring, std::uint32_t from, std::uint32_t to) {
    if (static_cast<std::uint32_t>(to - from) > max) return false;
    for (std::uint32_t p = from; p != to; ++p) {
      std::uint32_t n = 0;
      if (!entry_at(ring, p, n) || slot(n) == nullptr) return false;
      present[n] = true;
    }
    return true;
  };
  if (!walk(free_ring(), free_cursor(sw), free_cursor(rw)) || !walk(ready_ring(), ring_cursor(rw), ring_cursor(sw))) {
    return -1;
  }
  std::uint32_t sending = 0, receiving = 0;
  int reclaimed = 0;
  // Owners already looked at in this scan: loans mostly belong to a few processes, and
  // each look reads /proc (the maps file, too) while both locks are held.
  struct owner {
    std::uint32_t pid, start;
    bool alive;
  };
  constexpr std::size_t remembered = 8;
  owner seen[remembered] = {};
  std::size_t looks = 0;  // the latest `remembered` of them are in seen[]
  auto alive = [&](std::uint32_t pid, std::uint32_t start) {
    for (std::size_t i = 0; i < std::min(looks, remembered); ++i) {
      if (seen[i].pid == pid && seen[i].start == start) return seen[i].alive;
    }
    const bool a = loan_owner_alive(pid, start, *this);
    seen[looks++ % remembered] = {pid, start, a};
    return a;
  };
  for (std::uint32_t k = 1; k <= max; ++k) {
    if (present[k]) continue;
    slot_header* s = slot(k);
    const std::uint32_t state = s->state.load(std::memory_order_acquire);
    if (state == slot_side) continue;
    if ((state == slot_send_loan || state == slot_recv_loan) &&
        alive(read_once(s->owner_pid), read_once(s->owner_start))) {
      ++(state == slot_send_loan ? sending : receiving);
      continue;
    }
    give_back(k, s);
    ++reclaimed;
  }
  h->send_loans.store(sending, std::memory_order_relaxed);
  h->recv_loans.store(receiving, std::memory_order_relaxed);
  return reclaimed;
}

void region::count_loans(std::uint32_t& sending, std::uint32_t& receiving) const noexcept {
  const auto max = static_cast<std::uint32_t>(geo.max_messages);
  sending = std::min(hdr()->send_loans.load(std::memory_order_relaxed), max);
  receiving = std::min(hdr()->recv_loans.load(std::memory_order_relaxed), max);
}

// Waiters may have missed a wake-up from a process that died: wake them all to
// re-check.
void region::wake_everyone() noexcept {
  header* h = hdr();
  for (atomic_u32* word : {&h->msg_seq, &h->space_seq, &h->event_seq}) {
    word->fetch_add(1);
    sys::futex_wake(word, INT_MAX);
  }
}

}  // namespace pipc::engine
