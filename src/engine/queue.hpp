// The engine's open queue description: one process's handle on a queue region.
//
// Both the C++ backend (backend::shm) and the C API sit on this class. Every
// operation returns 0, an errno value, or detail::encode(pipc::errc) for a corrupt or
// foreign region; none throws. docs/engine.md describes the design.
//
// Thread safety: all operations may run concurrently on one queue object, except that
// destruction must not race with any other call.
#ifndef PIPC_SRC_ENGINE_QUEUE_HPP
#define PIPC_SRC_ENGINE_QUEUE_HPP

#include "engine/layout.hpp"
#include "queue_backend.hpp"

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace pipc::engine {

// The spin before sleeping when the caller does not choose one (docs/engine.md, "The
// spin policy"): 20 µs, plus, on a queue of large messages, 0.25 ns per byte of
// message size: a peer's step between two messages there is four passes over one (copy
// it out, read it, write the next, copy that in), ~0.18 ns per byte here, and the
// margin keeps a copying 1 MiB round trip from sleeping (262 µs more at 1 MiB, 2 µs
// at 8 KiB).
inline constexpr std::int64_t default_spin_ns = 20'000;
constexpr std::int64_t default_spin_for(std::uint64_t message_size) noexcept {
  return default_spin_ns + static_cast<std::int64_t>(message_size / 4);
}
// A description's spin for a requested one (open_request::spin_ns): the default for
// the message size when negative, none on a single CPU, at most max_spin_ns (wait.hpp).
// A request below min_spin_ns is kept: such a spin never adapts.
std::int64_t spin_for(std::int64_t requested, std::uint64_t message_size, int cpus) noexcept;
// How many of a description's receives that wait may then wait for a batch of messages
// (region::await_message_batch), after one that found two messages ready.
inline constexpr std::uint32_t streaming_receives = 16;

struct open_request {
  // "/name", already validated as name_kind::engine_queue. Requires: the characters
  // outlive the call to queue::open (which keeps no copy).
  std::string_view name;
  int flags = 0;                 // O_RDONLY | O_WRONLY | O_RDWR, O_CREAT, O_EXCL, O_NONBLOCK
  mode_t mode = 0600;            // with O_CREAT, before the umask
  bool has_attributes = false;   // with O_CREAT: use max_messages and message_size
  long max_messages = 10;        // the defaults when has_attributes is false
  long message_size = 8192;
  std::int64_t spin_ns = -1;     // < 0: default_spin_for the queue's message size
};

// What a queue's header shows without taking its lock (for tools and statistics).
struct queue_stats {
  std::uint64_t max_messages, message_size, current_messages;
  std::uint64_t messages_sent, messages_received, bytes_sent, bytes_received;
  std::uint32_t high_water, last_sender, last_receiver, mode, notify_pid;
  std::int64_t created_ns;
};

// The mapped region of one queue; shared by a queue object and its helper threads,
// which may outlive it briefly.
struct region;
// The message a receive picks (queue.cpp).
struct picked;

class queue {
 public:
  // Opens or creates a queue as `request` says; `out` receives it.
  static int open(const open_request& request, std::unique_ptr<queue>& out) noexcept;
  // Removes the name of queue `name` ("/name").
  static int unlink(const std::string& name) noexcept;
  // The shared memory object name of queue `name`: "/pipc.mq.name".
  static std::string object_name(const std::string& name);

  queue(const queue&) = delete;
  queue& operator=(const queue&) = delete;
  ~queue();  // closes: drops this descriptor's notification and its poll helper

  // `interruptible` (the C API): a caught signal interrupts a wait with EINTR (or
  // restarts it, SA_RESTART) and the wait is a cancellation point (sys/interrupt.hpp);
  // otherwise (the C++ API) waits go on through signal handlers. Not noexcept: a
  // cancellation unwinds out of an interruptible wait. Nothing else throws.
  int send(const void* data, std::size_t size, unsigned priority, const detail::wait_limit& limit,
           bool interruptible);
  int receive(void* buffer, std::size_t capacity, std::size_t& size, unsigned& priority,
              const detail::wait_limit& limit, bool interruptible);

  // Zero-copy loans (docs/engine.md, "Loans"). send_begin lends the caller a free slot
  // to fill in place: `data` gets its payload, message_size bytes of the region (size
  // is only checked against message_size). It waits for room as send does, and holds no
  // lock on return. send_commit queues the slot's first `size` bytes with `priority`,
  // exactly as a send at that moment would; send_abort gives the slot back. receive_begin
  // takes the next message as receive would, and lends its slot: `data` points at the
  // message in the region until receive_end gives the slot back. The slot stays this
  // process's until then (or until it dies). commit, abort and end take `data` as begin
  // gave it: EINVAL for anything that is not an outstanding loan of this description.
  // Loans still outstanding when the description is destroyed are given back.
  int send_begin(std::size_t size, const detail::wait_limit& limit, bool interruptible, std::byte*& data);
  int send_commit(const void* data, std::size_t size, unsigned priority) noexcept;
  int send_abort(const void* data) noexcept;
  int receive_begin(const detail::wait_limit& limit, bool interruptible, const std::byte*& data, std::size_t& size,
                    unsigned& priority);
  int receive_end(const void* data) noexcept;

  // 0, or corrupt_state (encoded) if the region's file was truncated.
  int attributes(long& max_messages, long& message_size, long& current_messages, bool& nonblocking) const noexcept;
  void set_nonblocking(bool on) noexcept { nonblocking_.store(on, std::memory_order_relaxed); }
  bool nonblocking() const noexcept { return nonblocking_.load(std::memory_order_relaxed); }

  // Notification registration: one registrant process per queue (EBUSY otherwise).
  // `value`: the whole sigval (a pointer of this process, or an int in its low half).
  int notify_signal(int signo, std::uint64_t value) noexcept;
  int notify_thread(std::function<void()> callback) noexcept;
  int notify_none() noexcept;
  int cancel_notification() noexcept;

  // An eventfd that polls readable while the queue has messages and writable while it
  // has room; starts the helper thread that keeps it so on first use.
  int poll_fd(int& fd) noexcept;
  // Keeps the eventfd `fd` (the caller's: the C API's descriptor) in step with the
  // queue as poll_fd's, through a copy of it that the helper owns, so that closing
  // `fd` does no harm. `own_eventfd`: first make the number `fd` an eventfd of its own
  // (it may be a duplicate of an eventfd that other descriptors share, which must not
  // be written). Idempotent; 0 or an errno value (EBADF: `fd` is no eventfd).
  int track_readiness(int fd, bool own_eventfd) noexcept;

  queue_stats stats() const noexcept;
  // The adaptive spin budgets of this description (wait.hpp, budget_after_sleep): for
  // tests and tools.
  std::int64_t send_spin_budget() const noexcept { return send_spin_.load(std::memory_order_relaxed); }
  std::int64_t receive_spin_budget() const noexcept { return receive_spin_.load(std::memory_order_relaxed); }
  // How many more waiting receives may wait for a batch (streaming_receives after a
  // receive that found two messages ready; one fewer each time one does). While it is
  // non-zero this description's waits do not ask senders to hand messages over
  // (header::receivers_wait).
  std::uint32_t batch_waits_left() const noexcept { return behind_.load(std::memory_order_relaxed); }
  // Sleeps of this description's sends and receives that ran to recheck_ns with nothing
  // waking them: a peer that died or stopped between its change and its wake-up, a peer
  // that took that long, or a lost wake-up.
  std::uint32_t rechecks() const noexcept { return rechecks_.load(std::memory_order_relaxed); }
  // Slots lent to senders and to receivers now, by the header's counts (which a death
  // in the middle of a loan operation may leave high until the next loan scan).
  void loans(std::uint32_t& sending, std::uint32_t& receiving) const noexcept;

 private:
  struct poll_helper;
  struct notify_helper;

  queue(std::shared_ptr<region> r, int flags, std::int64_t spin_ns) noexcept;
  int register_notification(std::uint32_t kind, int signo, std::uint64_t value) noexcept;
  int start_poll_helper(int fd) noexcept;
  detail::wait_limit lock_limit(const detail::wait_limit& limit) const noexcept;
  bool gives_up(const detail::wait_limit& limit) const noexcept;
  void rechecked() noexcept;
  int would_block() const noexcept;
  // Requires: the caller has just released a lock (see committed_after_unlock).
  void after_commit(atomic_u32& word, atomic_u32& sleepers, atomic_u64& woken_ns, atomic_u64& turns,
                    std::uint32_t granted) noexcept;
  void stop_notify_helper() noexcept;
  void sync_poll_helper() noexcept;
  struct send_call;
  struct receive_call;
  struct placement;
  int before_send(const detail::wait_limit& limit, bool interruptible, send_call& call);
  int before_receive(const detail::wait_limit& limit, bool interruptible, receive_call& call);
  int take_slot(const detail::wait_limit& limit, bool interruptible, send_call& call, std::uint64_t& w,
                std::uint32_t& n, slot_header*& s);
  int place(unsigned priority, std::uint32_t head, std::uint32_t tail, const detail::wait_limit& lock_limit,
            placement& p);
  void finish_send(const placement& p, const slot_header* s, std::size_t size, std::uint32_t granted) noexcept;
  int take_message(const detail::wait_limit& limit, bool interruptible, receive_call& call, picked& c);
  bool reclaim_dead_loans() noexcept;
  int reserve_loan() noexcept;
  void record_loan(std::uint32_t key) noexcept;
  bool forget_loan(std::uint32_t key) noexcept;
  int give_back_loan(std::uint32_t n, std::uint32_t state,
                     const detail::wait_limit& limit = detail::wait_limit::blocking()) noexcept;

  std::shared_ptr<region> region_;
  bool can_send_;
  bool can_receive_;
  std::atomic<bool> nonblocking_;
  std::int64_t spin_ns_;
  std::atomic<std::int64_t> send_spin_;     // the adaptive spin budgets (see wait_while)
  std::atomic<std::int64_t> receive_spin_;
  // How many more of this description's receives that wait may wait for a batch
  // (region::await_message_batch): set when a receive finds two messages ready.
  std::atomic<std::uint32_t> behind_{0};
  std::atomic<std::uint32_t> rechecks_{0};  // see rechecks()
  std::uint64_t token_;  // identifies this open description in notification records
  std::atomic<bool> registered_{false};  // it has registered a notification (ever)
  pid_t opener_pid_;     // the process that opened it (a forked child inherits a copy)

  // This description's outstanding loans: slot numbers, | loan_receive for a receive
  // loan. Capacity max_messages, reserved at the first loan, so recording never allocates.
  std::mutex loans_mutex_;
  std::vector<std::uint32_t> loans_;
  std::atomic<std::int64_t> next_loan_scan_ns_{0};  // CLOCK_MONOTONIC

  std::mutex helpers_mutex_;
  std::shared_ptr<poll_helper> poll_;
  std::atomic<poll_helper*> poll_active_{nullptr};  // poll_, for the hot path's check
  std::shared_ptr<notify_helper> notify_;
};

}  // namespace pipc::engine

#endif  // PIPC_SRC_ENGINE_QUEUE_HPP
