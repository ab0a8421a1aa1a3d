// The seam between message_queue and the backends that implement it.
//
// message_queue owns one queue_backend per open description and forwards every
// operation to it. A backend reports outcomes as errno values (0 for success), the
// same values POSIX's mq_* would set; the public layer turns them into exceptions,
// error codes or bool/optional results. Backends never throw.
#ifndef PIPC_SRC_QUEUE_BACKEND_HPP
#define PIPC_SRC_QUEUE_BACKEND_HPP

#include <pipc/message_queue.hpp>

#include <cerrno>
#include <cstddef>
#include <functional>
#include <span>

namespace pipc::sys {
class interruption;
}

namespace pipc::detail {

// How long an operation may wait for room or for a message.
struct wait_limit {
  enum kind_t { forever, none, until } kind = forever;
  deadline when{CLOCK_MONOTONIC, 0};  // used when kind == until
  // The C API's calls: signals interrupt the wait and cancellation acts in it
  // (sys/interrupt.hpp). Null for the C++ API, whose waits go on through handlers.
  sys::interruption* interrupt = nullptr;

  static wait_limit blocking() noexcept { return {}; }
  static wait_limit immediate() noexcept { return {none, {CLOCK_MONOTONIC, 0}, nullptr}; }
  static wait_limit at(const deadline& d) noexcept { return {until, d, nullptr}; }
};

// A notification request (mq_notify's sigevent, in C++ terms).
struct notification {
  enum kind_t { cancel, none, signal, thread } kind = cancel;
  int signo = 0;                  // signal
  int value = 0;                  // signal: si_value.sival_int
  std::function<void()> callback;  // thread
};

class queue_backend {
 public:
  virtual ~queue_backend() = default;

  // Returns 0, or EAGAIN (full and non-blocking), ETIMEDOUT (limit reached), EMSGSIZE,
  // EBADF, EINVAL, or another errno. A wait_limit of none never sleeps.
  virtual int send(std::span<const std::byte> message, unsigned priority, const wait_limit& limit) noexcept = 0;
  // As send; on success fills `out`.
  virtual int receive(std::span<std::byte> buffer, received& out, const wait_limit& limit) noexcept = 0;
  virtual int get_attributes(mq_attributes& out) noexcept = 0;
  virtual int set_nonblocking(bool on) noexcept = 0;
  virtual int notify(notification request) noexcept = 0;
  virtual int native_handle() const noexcept = 0;
  // Zero copy (send_loan, received_message). A backend that cannot lend its own memory
  // (the kernel's) lends a buffer of this process instead, through these defaults:
  // send_begin allocates message_size bytes without waiting for room, send_commit sends
  // them as send() with a blocking limit does (the loan stays if that fails),
  // receive_begin receives into a new buffer. `data` is what send_begin/receive_begin
  // gave; EINVAL for anything else where the backend can tell.
  virtual int send_begin(std::size_t size, const wait_limit& limit, std::byte*& data) noexcept;
  virtual int send_commit(std::byte* data, std::size_t size, unsigned priority) noexcept;
  virtual int send_abort(std::byte* data) noexcept;
  virtual int receive_begin(const wait_limit& limit, const std::byte*& data, received& out) noexcept;
  virtual int receive_end(const std::byte* data) noexcept;

  // The state and counters of the queue (message_queue::stats()); a backend without
  // its own reports ENOTSUP and message_queue reads what it can by itself.
  virtual int get_stats(mq_stats& out) noexcept {
    (void)out;
    return ENOTSUP;
  }
};

}  // namespace pipc::detail

#endif  // PIPC_SRC_QUEUE_BACKEND_HPP
