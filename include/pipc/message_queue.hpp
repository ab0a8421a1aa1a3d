// POSIX message queues with one API over interchangeable backends.
//
// A message_queue is an open description of a named queue ("/name"). Messages carry a
// priority 0..32767 (max_priority); receive returns the oldest message of the highest
// priority. The backend is chosen at open:
//   backend::shm     (the default) pipc's engine: a queue in shared memory driven by
//                    futexes; no sysctl limits, no system call on the uncontended path,
//                    safe when a process using it is killed (docs/engine.md).
//   backend::kernel  the kernel's queues (mq_open), interoperable with any program that
//                    uses mq_* directly; limited by /proc/sys/fs/mqueue (msg_max,
//                    msgsize_max, queues_max) and RLIMIT_MSGQUEUE.
// Both have the same semantics; a queue's name lives in one backend's namespace, so
// processes must agree on the backend.
//
// Blocking, non-blocking and timed forms: send/receive block (unless the description
// is non-blocking, then they fail with EAGAIN); try_send/try_receive never block and
// report "full"/"empty" as false/nullopt; *_for/*_until wait up to a std::chrono
// duration or time point and report the timeout the same way. A signal handler that
// interrupts a wait does not end it (EINTR is retried, deadlines kept).
//
// Thread safety: one message_queue may be used by several threads at once for
// send/receive/attributes; open/close/move must not race with other use.
// Process safety: any number of processes may open the same queue.
#ifndef PIPC_MESSAGE_QUEUE_HPP
#define PIPC_MESSAGE_QUEUE_HPP

#include <pipc/common.hpp>
#include <pipc/export.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

namespace pipc {

// Priorities are 0 .. max_priority (MQ_PRIO_MAX - 1).
inline constexpr unsigned max_priority = 32767;

enum class backend {
  shm,     // pipc's user-space engine
  kernel,  // mq_open and friends
};

// The kind of name a queue of backend `b` takes (check_name, describe_name_problem).
PIPC_EXPORT name_kind name_kind_for(pipc::backend b) noexcept;

// Attributes of an open queue (struct mq_attr).
struct mq_attributes {
  long max_messages = 0;      // mq_maxmsg
  long message_size = 0;      // mq_msgsize
  long current_messages = 0;  // mq_curmsgs
  bool nonblocking = false;   // O_NONBLOCK on this open description
};

// How to open a queue. Capacity and permissions matter only when the open creates it.
struct mq_options {
  pipc::backend backend = pipc::backend::shm;
  pipc::access access = pipc::access::read_write;
  mode_t permissions = default_permissions;
  long max_messages = 10;    // the Linux default; kernel: ≤ msg_max; shm: ≤ 1 048 576
  long message_size = 8192;  // the Linux default; kernel: ≤ msgsize_max; shm: ≤ 16 MiB
  bool nonblocking = false;  // open the description with O_NONBLOCK
  // shm only: how long a blocked send or receive spins at most before it sleeps (it
  // spins less where spinning does not pay: docs/engine.md, "The spin policy"). Spinning
  // turns a ~50 µs futex wake-up into sub-microsecond hand-over when the peer runs on
  // another CPU. Unset: 20 µs plus 0.25 ns per byte of message_size (the time a peer
  // needs for one more message of that size: +262 µs at 1 MiB); 0 disables it; more
  // than a second is taken as one second; on a single-CPU machine it is always off.
  // (A call that leaves a message or a free slot to a competitor woken for it spins up
  // to that turn's 1 ms instead, unless 0: docs/engine.md, "Fairness".)
  std::optional<std::chrono::nanoseconds> spin;
};

// What a receive delivered.
struct received {
  std::size_t size = 0;  // bytes written to the buffer
  unsigned priority = 0;
};

// A queue's state and history (message_queue::stats(), pipc::inspect_queue()).
// Values read while other processes use the queue: each is exact at some moment, not
// all at the same one.
struct mq_stats {
  long max_messages = 0;
  long message_size = 0;
  long current_messages = 0;
  // kernel: bytes of the queued messages (QSIZE in /dev/mqueue); -1 when unknown.
  long long queued_bytes = -1;
  // The counters, kept by the engine only (has_counters), since the queue's creation.
  bool has_counters = false;
  std::uint64_t messages_sent = 0;
  std::uint64_t messages_received = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  long high_water = 0;     // the highest depth a receive found
  pid_t last_sender = 0;   // 0: none yet
  pid_t last_receiver = 0;
  std::chrono::system_clock::time_point created{};
  // The process registered for notification (mq_notify); 0: none.
  pid_t notify_pid = 0;
  int notify_signal = 0;  // its signal, for a signal notification; 0 otherwise
  // Engine queues read by name: receivers blocked in a receive, per process (from the
  // queue's waiter table), and senders asleep waiting for room (approximate: a count
  // the waker resets). -1: unknown.
  long blocked_receivers = -1;
  long blocked_senders = -1;
  // Engine queues: slots lent out now (send_loan, received_message), to senders filling
  // them and to receivers reading them; a process killed in the middle of a loan call may
  // leave a count one high until the next loan scan (docs/engine.md, "Loans"). -1: none
  // kept (kernel).
  long send_loans = -1;
  long receive_loans = -1;
  std::vector<pid_t> blocked_receiver_pids;
};

namespace detail {
class queue_backend;
}

class message_queue;

// A slot of a queue lent to a sender to fill in place (message_queue::loan): write the
// message into data(), then commit() it. Zero copy on backend::shm, where data() is the
// slot in the queue's shared memory; on backend::kernel a buffer of this process that
// commit() sends as send() would.
//
// The loan holds one of the queue's max_messages slots, and no lock: other senders and
// receivers go on meanwhile. A message's place in the queue is decided when it is
// committed (the oldest of the highest priority is received first, as for send()).
// Destroying or abort()ing an uncommitted loan gives the slot back and sends nothing; so
// does the death of the process (docs/engine.md, "Loans").
//
// Move-only. Not for concurrent use by several threads. It keeps its queue's open
// description alive (a close() of the message_queue takes effect when the last loan
// ends). Requires: use by the process that took it (not a child of fork).
class PIPC_EXPORT send_loan {
 public:
  send_loan() noexcept = default;
  send_loan(send_loan&& other) noexcept;
  send_loan& operator=(send_loan&& other) noexcept;
  send_loan(const send_loan&) = delete;
  send_loan& operator=(const send_loan&) = delete;
  ~send_loan();  // abort()

  // The bytes to fill: as many as were asked for. Empty for an empty loan.
  std::span<std::byte> data() const noexcept { return {data_, size_}; }
  std::size_t size() const noexcept { return size_; }

  // Sends data() (or its first `size` bytes, size <= this->size()) with `priority`; the
  // loan is then empty. Never waits for room (the slot is already held) on backend::shm;
  // on backend::kernel it sends as send() does. EINVAL (priority > max_priority),
  // EMSGSIZE, or a backend error: the loan then stays, to commit again or abort.
  void commit(unsigned priority = 0);
  void commit(unsigned priority, std::error_code& ec) noexcept;
  void commit(std::size_t size, unsigned priority);
  void commit(std::size_t size, unsigned priority, std::error_code& ec) noexcept;
  // Gives the slot back without sending. Idempotent.
  void abort() noexcept;

  explicit operator bool() const noexcept { return data_ != nullptr; }

 private:
  friend class message_queue;
  std::shared_ptr<detail::queue_backend> q_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// A message received in place (message_queue::receive_view): data() is the message in
// the queue's slot (backend::shm: shared memory, no copy; backend::kernel: a buffer of
// this process). release() or destruction frees the slot for senders. The message has
// left the queue when the view is made: if the process dies holding it, the message is
// dropped, as if it had been received with receive() (docs/engine.md, "Loans").
//
// Move-only; not for concurrent use; keeps the open description alive as send_loan
// does. The bytes are in memory that every opener of the queue may write: copy what
// must not change under you before you validate it.
class PIPC_EXPORT received_message {
 public:
  received_message() noexcept = default;
  received_message(received_message&& other) noexcept;
  received_message& operator=(received_message&& other) noexcept;
  received_message(const received_message&) = delete;
  received_message& operator=(const received_message&) = delete;
  ~received_message();  // release()

  std::span<const std::byte> data() const noexcept { return {data_, size_}; }
  std::size_t size() const noexcept { return size_; }
  unsigned priority() const noexcept { return priority_; }
  // Frees the slot. Idempotent.
  void release() noexcept;

  explicit operator bool() const noexcept { return data_ != nullptr; }

 private:
  friend class message_queue;
  std::shared_ptr<detail::queue_backend> q_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  unsigned priority_ = 0;
};

class PIPC_EXPORT message_queue {
 public:
  message_queue() noexcept;
  message_queue(message_queue&& other) noexcept;
  message_queue& operator=(message_queue&& other) noexcept;
  message_queue(const message_queue&) = delete;
  message_queue& operator=(const message_queue&) = delete;
  ~message_queue();

  // Opens or creates the queue `name`. Fails with EEXIST (create_only, name taken),
  // ENOENT (open_only, no such queue), EACCES, EINVAL (bad name or attributes; the
  // exception's message names the kernel limit that was exceeded), EMFILE/ENOSPC
  // (kernel: RLIMIT_MSGQUEUE or queues_max; the message says which).
  static message_queue open(std::string_view name, open_mode mode, const mq_options& options = {});
  static message_queue open(std::string_view name, open_mode mode, const mq_options& options,
                            std::error_code& ec) noexcept;

  // Removes the name at once. Descriptors that are open keep working; the queue is
  // destroyed when the last one closes; a later open of the name makes a new queue.
  static void unlink(std::string_view name, pipc::backend which = pipc::backend::shm);
  static void unlink(std::string_view name, pipc::backend which, std::error_code& ec) noexcept;

  // Sends `message` with `priority` (<= max_priority). Blocks while the queue is full.
  // EMSGSIZE if message is longer than message_size; EBADF if opened read_only.
  void send(std::span<const std::byte> message, unsigned priority = 0);
  void send(std::span<const std::byte> message, unsigned priority, std::error_code& ec) noexcept;
  // Sends if there is room now; false if the queue is full.
  bool try_send(std::span<const std::byte> message, unsigned priority = 0);
  bool try_send(std::span<const std::byte> message, unsigned priority, std::error_code& ec) noexcept;
  template <class Rep, class Period>
  bool send_for(std::span<const std::byte> message, unsigned priority, std::chrono::duration<Rep, Period> d) {
    return send_until_(message, priority, detail::make_deadline(d));
  }
  template <class Rep, class Period>
  bool send_for(std::span<const std::byte> message, unsigned priority, std::chrono::duration<Rep, Period> d,
                std::error_code& ec) noexcept {
    return send_until_(message, priority, detail::make_deadline(d), ec);
  }
  template <class Clock, class Duration>
  bool send_until(std::span<const std::byte> message, unsigned priority,
                  std::chrono::time_point<Clock, Duration> tp) {
    return send_until_(message, priority, detail::make_deadline(tp));
  }
  template <class Clock, class Duration>
  bool send_until(std::span<const std::byte> message, unsigned priority, std::chrono::time_point<Clock, Duration> tp,
                  std::error_code& ec) noexcept {
    return send_until_(message, priority, detail::make_deadline(tp), ec);
  }

  // Receives the oldest message of the highest priority into `buffer`, which must hold
  // at least message_size bytes (EMSGSIZE otherwise). Blocks while the queue is empty.
  received receive(std::span<std::byte> buffer);
  received receive(std::span<std::byte> buffer, std::error_code& ec) noexcept;
  // Receives if a message is there now; nullopt if the queue is empty.
  std::optional<received> try_receive(std::span<std::byte> buffer);
  std::optional<received> try_receive(std::span<std::byte> buffer, std::error_code& ec) noexcept;
  template <class Rep, class Period>
  std::optional<received> receive_for(std::span<std::byte> buffer, std::chrono::duration<Rep, Period> d) {
    return receive_until_(buffer, detail::make_deadline(d));
  }
  template <class Rep, class Period>
  std::optional<received> receive_for(std::span<std::byte> buffer, std::chrono::duration<Rep, Period> d,
                                      std::error_code& ec) noexcept {
    return receive_until_(buffer, detail::make_deadline(d), ec);
  }
  template <class Clock, class Duration>
  std::optional<received> receive_until(std::span<std::byte> buffer, std::chrono::time_point<Clock, Duration> tp) {
    return receive_until_(buffer, detail::make_deadline(tp));
  }
  template <class Clock, class Duration>
  std::optional<received> receive_until(std::span<std::byte> buffer, std::chrono::time_point<Clock, Duration> tp,
                                        std::error_code& ec) noexcept {
    return receive_until_(buffer, detail::make_deadline(tp), ec);
  }

  // ---- zero copy (send_loan, received_message; docs/engine.md, "Loans") ----

  // Lends a free slot to fill with a message of up to `size` bytes (<= message_size,
  // EMSGSIZE otherwise). Waits for room as send() does (EAGAIN on a non-blocking
  // description); the try/for/until forms report a full queue as nullopt. EBADF if
  // opened read_only. backend::kernel: returns a buffer at once (see send_loan).
  send_loan loan(std::size_t size);
  send_loan loan(std::size_t size, std::error_code& ec) noexcept;
  std::optional<send_loan> try_loan(std::size_t size);
  std::optional<send_loan> try_loan(std::size_t size, std::error_code& ec) noexcept;
  template <class Rep, class Period>
  std::optional<send_loan> loan_for(std::size_t size, std::chrono::duration<Rep, Period> d) {
    return loan_until_(size, detail::make_deadline(d));
  }
  template <class Clock, class Duration>
  std::optional<send_loan> loan_until(std::size_t size, std::chrono::time_point<Clock, Duration> tp) {
    return loan_until_(size, detail::make_deadline(tp));
  }

  // Takes the next message (the oldest of the highest priority, as receive()) and lends
  // it in place until the view is released. Waits as receive() does.
  received_message receive_view();
  received_message receive_view(std::error_code& ec) noexcept;
  std::optional<received_message> try_receive_view();
  std::optional<received_message> try_receive_view(std::error_code& ec) noexcept;
  template <class Rep, class Period>
  std::optional<received_message> receive_view_for(std::chrono::duration<Rep, Period> d) {
    return receive_view_until_(detail::make_deadline(d));
  }
  template <class Clock, class Duration>
  std::optional<received_message> receive_view_until(std::chrono::time_point<Clock, Duration> tp) {
    return receive_view_until_(detail::make_deadline(tp));
  }

  // Sends a message of `size` bytes written in place by fill(std::span<std::byte>): a
  // loan, fill, commit. If fill returns a std::size_t, that many bytes (<= size) are
  // sent; any other result is ignored. If fill throws, nothing is sent and the exception
  // propagates.
  template <class Fill>
  void send_in_place(std::size_t size, unsigned priority, Fill&& fill) {
    send_loan l = loan(size);
    if constexpr (std::is_same_v<std::invoke_result_t<Fill&, std::span<std::byte>>, std::size_t>) {
      const std::size_t used = fill(l.data());
      l.commit(used, priority);
    } else {
      fill(l.data());
      l.commit(priority);
    }
  }
  // Receives the next message and calls read(std::span<const std::byte>, unsigned
  // priority) on it in place; the slot is freed when read returns (or throws). Returns
  // what read returns.
  template <class Read>
  decltype(auto) receive_in_place(Read&& read) {
    received_message m = receive_view();
    return read(m.data(), m.priority());
  }

  // The queue's attributes and current depth.
  mq_attributes attributes() const;
  mq_attributes attributes(std::error_code& ec) const noexcept;

  // The queue's state and, for the engine, its counters (see mq_stats). Kernel queues:
  // the attributes, and QSIZE and the registrant when the description may read.
  mq_stats stats() const;
  mq_stats stats(std::error_code& ec) const noexcept;

  // Sets or clears O_NONBLOCK on this open description (mq_setattr).
  void set_nonblocking(bool on);
  void set_nonblocking(bool on, std::error_code& ec) noexcept;

  // Notification (mq_notify): when a message arrives on an empty queue and no receiver
  // is blocked, the one registered process is told once, then the registration ends.
  // A second process registering gets EBUSY. Closing the registering descriptor
  // removes the registration.
  //
  // notify_signal: queue signal `signo` with `value` in si_value.sival_int (SIGEV_SIGNAL).
  void notify_signal(int signo, int value = 0);
  void notify_signal(int signo, int value, std::error_code& ec) noexcept;
  // notify_thread: call `callback` on a new thread (SIGEV_THREAD).
  void notify_thread(std::function<void()> callback);
  void notify_thread(std::function<void()> callback, std::error_code& ec) noexcept;
  // notify_none: hold the registration without being told (SIGEV_NONE).
  void notify_none();
  void notify_none(std::error_code& ec) noexcept;
  // Ends this process's registration, if any.
  void cancel_notification();
  void cancel_notification(std::error_code& ec) noexcept;

  // Closes the description now. Idempotent.
  void close() noexcept;

  // The descriptor to hand to poll/epoll: readable when the queue has messages,
  // writable when it has room. kernel: the mqd_t itself. shm: an eventfd that a
  // helper thread keeps in step with the queue (started by the first call); do not
  // read or write it. -1 when closed or if it cannot be made.
  int native_handle() const noexcept;

  const std::string& name() const noexcept { return name_; }
  pipc::backend backend() const noexcept { return backend_; }
  bool is_open() const noexcept { return impl_ != nullptr; }
  explicit operator bool() const noexcept { return is_open(); }

 private:
  bool send_until_(std::span<const std::byte> message, unsigned priority, const detail::deadline& dl);
  bool send_until_(std::span<const std::byte> message, unsigned priority, const detail::deadline& dl,
                   std::error_code& ec) noexcept;
  std::optional<received> receive_until_(std::span<std::byte> buffer, const detail::deadline& dl);
  std::optional<received> receive_until_(std::span<std::byte> buffer, const detail::deadline& dl,
                                         std::error_code& ec) noexcept;
  std::optional<send_loan> loan_until_(std::size_t size, const detail::deadline& dl);
  std::optional<received_message> receive_view_until_(const detail::deadline& dl);
  int loan_(std::size_t size, const detail::deadline* dl, bool wait, send_loan& out) noexcept;
  int receive_view_(const detail::deadline* dl, bool wait, received_message& out) noexcept;
  [[noreturn]] void fail(const char* op, std::error_code ec) const;

  std::shared_ptr<detail::queue_backend> impl_;
  std::string name_;
  pipc::backend backend_ = pipc::backend::shm;
};

}  // namespace pipc

#endif  // PIPC_MESSAGE_QUEUE_HPP
