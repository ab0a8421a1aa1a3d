#include "engine/engine_backend.hpp"

#include "engine/queue.hpp"
#include "error_util.hpp"

#include <fcntl.h>

namespace pipc::engine {
namespace {

class engine_backend final : public detail::queue_backend {
 public:
  explicit engine_backend(std::unique_ptr<queue> q) noexcept : q_(std::move(q)) {}

  int send(std::span<const std::byte> message, unsigned priority, const detail::wait_limit& limit) noexcept override {
    return q_->send(message.data(), message.size(), priority, limit, false);
  }

  int receive(std::span<std::byte> buffer, received& out, const detail::wait_limit& limit) noexcept override {
    return q_->receive(buffer.data(), buffer.size(), out.size, out.priority, limit, false);
  }

  int send_begin(std::size_t size, const detail::wait_limit& limit, std::byte*& data) noexcept override {
    return q_->send_begin(size, limit, false, data);
  }
  int send_commit(std::byte* data, std::size_t size, unsigned priority) noexcept override {
    return q_->send_commit(data, size, priority);
  }
  int send_abort(std::byte* data) noexcept override { return q_->send_abort(data); }
  int receive_begin(const detail::wait_limit& limit, const std::byte*& data, received& out) noexcept override {
    return q_->receive_begin(limit, false, data, out.size, out.priority);
  }
  int receive_end(const std::byte* data) noexcept override { return q_->receive_end(data); }

  int get_attributes(mq_attributes& out) noexcept override {
    return q_->attributes(out.max_messages, out.message_size, out.current_messages, out.nonblocking);
  }

  int set_nonblocking(bool on) noexcept override {
    q_->set_nonblocking(on);
    return 0;
  }

  int notify(detail::notification request) noexcept override {
    switch (request.kind) {
      case detail::notification::cancel:
        return q_->cancel_notification();
      case detail::notification::none:
        return q_->notify_none();
      case detail::notification::signal:
        return q_->notify_signal(request.signo, static_cast<std::uint32_t>(request.value));
      case detail::notification::thread:
        return q_->notify_thread(std::move(request.callback));
    }
    return EINVAL;
  }

  int native_handle() const noexcept override {
    int fd = -1;
    return q_->poll_fd(fd) == 0 ? fd : -1;
  }

  int get_stats(mq_stats& out) noexcept override {
    long max = 0, size = 0, depth = 0;
    bool nonblocking = false;
    if (int e = q_->attributes(max, size, depth, nonblocking); e != 0) return e;
    const queue_stats s = q_->stats();
    out.max_messages = max;
    out.message_size = size;
    out.current_messages = depth;
    out.has_counters = true;
    out.messages_sent = s.messages_sent;
    out.messages_received = s.messages_received;
    out.bytes_sent = s.bytes_sent;
    out.bytes_received = s.bytes_received;
    out.high_water = s.high_water;
    out.last_sender = static_cast<pid_t>(s.last_sender);
    out.last_receiver = static_cast<pid_t>(s.last_receiver);
    out.created = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(s.created_ns)));
    out.notify_pid = static_cast<pid_t>(s.notify_pid);
    std::uint32_t sending = 0, receiving = 0;
    q_->loans(sending, receiving);
    out.send_loans = sending;
    out.receive_loans = receiving;
    return 0;
  }

 private:
  std::unique_ptr<queue> q_;
};

}  // namespace

std::unique_ptr<detail::queue_backend> open_backend(const std::string& name, open_mode mode, const mq_options& options,
                                                    std::error_code& ec) noexcept {
  open_request request;
  request.name = name;
  switch (options.access) {
    case access::read_only:
      request.flags = O_RDONLY;
      break;
    case access::write_only:
      request.flags = O_WRONLY;
      break;
    case access::read_write:
      request.flags = O_RDWR;
      break;
  }
  if (mode == open_mode::create_only) request.flags |= O_CREAT | O_EXCL;
  if (mode == open_mode::open_or_create) request.flags |= O_CREAT;
  if (options.nonblocking) request.flags |= O_NONBLOCK;
  request.mode = options.permissions;
  request.has_attributes = true;
  request.max_messages = options.max_messages;
  request.message_size = options.message_size;
  if (options.spin) request.spin_ns = options.spin->count();

  std::unique_ptr<queue> q;
  ec = detail::errno_code(queue::open(request, q));
  if (ec) return nullptr;
  try {
    return std::make_unique<engine_backend>(std::move(q));
  } catch (...) {
    ec = detail::errno_code(ENOMEM);
    return nullptr;
  }
}

std::string explain_open_failure(const std::string& name, std::error_code ec, open_mode mode,
                                 const mq_options& options) {
  if (ec.category() == category()) {
    return "its storage, shared memory object \"" + queue::object_name(name) + "\", is not a usable queue";
  }
  if (ec == std::errc::no_such_file_or_directory) {
    return "no queue of the shm backend has this name (a kernel queue is opened with backend::kernel)";
  }
  if (mode == open_mode::open_only || ec != std::errc::invalid_argument) return {};
  if (options.max_messages <= 0 || options.message_size <= 0) return "max_messages and message_size must be positive";
  if (static_cast<std::uint64_t>(options.max_messages) > max_max_messages) {
    return "max_messages " + std::to_string(options.max_messages) + " exceeds the engine's cap (" +
           std::to_string(max_max_messages) + ")";
  }
  if (static_cast<std::uint64_t>(options.message_size) > max_message_size) {
    return "message_size " + std::to_string(options.message_size) + " exceeds the engine's cap (" +
           std::to_string(max_message_size) + " bytes)";
  }
  return {};
}

}  // namespace pipc::engine
