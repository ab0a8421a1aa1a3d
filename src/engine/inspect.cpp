#include "engine/inspect.hpp"

#include "engine/notify.hpp"
#include "error_util.hpp"
#include "sys/sys.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>

namespace pipc::engine {

using detail::encode;

namespace {

// A pid read from the region: anything outside 1 … INT_MAX is no process.
pid_t as_pid(std::uint64_t v) noexcept { return v >= 1 && v <= INT_MAX ? static_cast<pid_t>(v) : 0; }

}  // namespace

// Touches no shared memory: `raw` is this process's copy.
int inspect_header(const void* raw, std::size_t got, std::uint64_t file_size, mq_stats& out, mode_t& queue_mode,
                   std::uint32_t& found_version) noexcept {
  found_version = 0;
  if (got < sizeof(header) || file_size < header_size) return encode(errc::not_a_pipc_object);
  alignas(header) std::byte copy[sizeof(header)];
  std::memcpy(copy, raw, sizeof copy);
  const auto* h = reinterpret_cast<const header*>(copy);

  if ((h->magic_word & magic_family_mask) != (magic & magic_family_mask)) return encode(errc::not_a_pipc_object);
  found_version = h->version;
  if (h->magic_word != magic || h->version != layout_version || h->header_bytes != header_size) {
    return encode(errc::layout_mismatch);
  }
  if (h->max_messages < 1 || h->max_messages > max_max_messages || h->message_size < 1 ||
      h->message_size > max_message_size) {
    return encode(errc::corrupt_state);
  }
  const geometry geo = compute_geometry(h->max_messages, h->message_size);
  const geometry claimed{h->max_messages,     h->message_size,      h->slot_stride,
                         h->ring_size,        h->free_ring_offset,  h->ready_ring_offset,
                         h->heap_offset,      h->slots_offset,      h->region_size};
  if (claimed != geo || file_size != geo.region_size) return encode(errc::corrupt_state);

  const auto n = static_cast<std::uint32_t>(geo.max_messages);
  out.max_messages = static_cast<long>(n);
  out.message_size = static_cast<long>(geo.message_size);
  // Depth as region::depth() computes it: free_head + N − free_tail − the slots lent
  // out, clamped to 0 … N.
  const std::uint32_t head = free_cursor(h->send_cursors.load(std::memory_order_relaxed));
  const std::uint32_t tail = free_cursor(h->recv_cursors.load(std::memory_order_relaxed));
  const std::uint32_t sending = std::min(h->send_loans.load(std::memory_order_relaxed), n);
  const std::uint32_t receiving = std::min(h->recv_loans.load(std::memory_order_relaxed), n);
  const auto d = static_cast<std::int64_t>(static_cast<std::int32_t>(head + n - tail)) - sending - receiving;
  out.current_messages = static_cast<long>(std::clamp<std::int64_t>(d, 0, n));
  out.send_loans = sending;
  out.receive_loans = receiving;
  out.has_counters = true;
  out.messages_sent = h->messages_sent.load(std::memory_order_relaxed);
  out.messages_received = h->messages_received.load(std::memory_order_relaxed);
  out.bytes_sent = h->bytes_sent.load(std::memory_order_relaxed);
  out.bytes_received = h->bytes_received.load(std::memory_order_relaxed);
  out.high_water = std::clamp<long>(static_cast<long>(h->high_water.load(std::memory_order_relaxed)),
                                    out.current_messages, static_cast<long>(n));
  out.last_sender = as_pid(h->last_sender.load(std::memory_order_relaxed));
  out.last_receiver = as_pid(h->last_receiver.load(std::memory_order_relaxed));
  out.created = std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::nanoseconds(h->created_ns)));
  queue_mode = static_cast<mode_t>(h->mode & 07777);

  // A registrant that died is cleared lazily by the engine: report only a live one.
  const pid_t registrant = as_pid(h->notify_pid.load(std::memory_order_relaxed));
  if (registrant != 0 && same_process_alive(registrant, h->notify_start_time)) {
    out.notify_pid = registrant;
    out.notify_signal = h->notify_kind == notify_signal_kind && h->notify_signo > 0 && h->notify_signo < 65
                            ? h->notify_signo
                            : 0;
  }

  // The waiter table: {pid, count} per process with receivers blocked. Entries of dead
  // processes linger until reused; they are not counted.
  long receivers = 0;
  try {
    for (const waiter_entry& w : h->waiters) {
      const std::uint64_t word = w.word.load(std::memory_order_relaxed);
      const pid_t pid = as_pid(word >> 32);
      const auto count = static_cast<std::uint32_t>(word);
      if (pid == 0 || count == 0 || count > (1u << 20) || !sys::process_exists(pid)) continue;
      receivers += count;
      out.blocked_receiver_pids.push_back(pid);
    }
  } catch (...) {
    // Out of memory for the list: the count stands.
  }
  out.blocked_receivers = receivers;
  out.blocked_senders = std::min<long>(h->space_sleepers.load(std::memory_order_relaxed), 1 << 20);
  return 0;
}

}  // namespace pipc::engine
