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
#include "engine/region.hpp"

namespace pipc::engine {

// send_lock's previous owner died. Caller holds send_lock.
void region::recover_send() noexcept {
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
    // received and freed since: a receive frees it at free_tail, which lies 1 … N + 1
    // positions past the claim's (the claimed slot was still the free ring's, and the
    // dead sender's message may be one more than N − 1 others). A position the side send
    // wrote itself, or one never written (a new queue writes no slot), is not that.
    slot_header* s = slot(claimed);
    const std::uint32_t since = s != nullptr ? read_once(s->position) - head : 0;
    if (s != nullptr &&
        (s->state.load(std::memory_order_acquire) == slot_side || (since >= 1 && since <= geo.max_messages + 1))) {
      h->next_seq = std::max(h->next_seq, s->seq + 1);
      h->send_cursors.store(cursors(head + 1, tail), std::memory_order_release);
    }
  }
  h->claim_slot.store(0, std::memory_order_release);
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
      // ring, as a receive would.
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
