#include <pipc/message_queue.hpp>

#include "engine/engine_backend.hpp"
#include "engine/queue.hpp"
#include "error_util.hpp"
#include "kernel/kernel_queue.hpp"
#include "queue_backend.hpp"

#include <utility>

namespace pipc {

using detail::errno_code;
using detail::wait_limit;

namespace {

// Would-block and timeout are results, not errors.
bool is_wait_outcome(int e) noexcept { return e == EAGAIN || e == ETIMEDOUT; }


}  // namespace

name_kind name_kind_for(pipc::backend b) noexcept {
  return b == backend::kernel ? name_kind::message_queue : name_kind::engine_queue;
}

message_queue::message_queue() noexcept = default;
message_queue::message_queue(message_queue&& other) noexcept = default;
message_queue& message_queue::operator=(message_queue&& other) noexcept = default;
message_queue::~message_queue() = default;

message_queue message_queue::open(std::string_view name, open_mode mode, const mq_options& options,
                                  std::error_code& ec) noexcept {
  ec = check_name(name, name_kind_for(options.backend));
  if (ec) return {};
  message_queue q;
  try {
    q.name_ = std::string(name);
  } catch (...) {
    ec = errno_code(ENOMEM);
    return {};
  }
  q.backend_ = options.backend;
  switch (options.backend) {
    case backend::shm:
      q.impl_ = engine::open_backend(q.name_, mode, options, ec);
      break;
    case backend::kernel:
      q.impl_ = kernel::open_queue(q.name_, mode, options, ec);
      break;
  }
  if (ec) return {};
  return q;
}

message_queue message_queue::open(std::string_view name, open_mode mode, const mq_options& options) {
  std::error_code ec;
  message_queue q = open(name, mode, options, ec);
  if (ec) {
    std::string detail;
    if (!check_name(name, name_kind_for(options.backend))) {
      detail = options.backend == backend::kernel ? kernel::explain_open_failure(ec, mode, options)
                                                  : engine::explain_open_failure(std::string(name), ec, mode, options);
    }
    detail::throw_error(ec, "mq_open", name, name_kind_for(options.backend), detail);
  }
  return q;
}

void message_queue::unlink(std::string_view name, pipc::backend which, std::error_code& ec) noexcept {
  ec = check_name(name, name_kind_for(which));
  if (ec) return;
  try {
    switch (which) {
      case backend::shm:
        ec = errno_code(engine::queue::unlink(std::string(name)));
        break;
      case backend::kernel:
        ec = errno_code(kernel::unlink_queue(std::string(name)));
        break;
    }
  } catch (...) {
    ec = errno_code(ENOMEM);
  }
}

void message_queue::unlink(std::string_view name, pipc::backend which) {
  std::error_code ec;
  unlink(name, which, ec);
  if (ec) detail::throw_error(ec, "mq_unlink", name, name_kind_for(which));
}

void message_queue::fail(const char* op, std::error_code ec) const {
  detail::throw_error(ec, op, name_, name_kind_for(backend_));
}

// ---- send ----

void message_queue::send(std::span<const std::byte> message, unsigned priority, std::error_code& ec) noexcept {
  ec = errno_code(impl_ ? impl_->send(message, priority, wait_limit::blocking()) : EBADF);
}

void message_queue::send(std::span<const std::byte> message, unsigned priority) {
  std::error_code ec;
  send(message, priority, ec);
  if (ec) fail("mq_send", ec);
}

bool message_queue::try_send(std::span<const std::byte> message, unsigned priority, std::error_code& ec) noexcept {
  int e = impl_ ? impl_->send(message, priority, wait_limit::immediate()) : EBADF;
  ec = errno_code(is_wait_outcome(e) ? 0 : e);
  return e == 0;
}

bool message_queue::try_send(std::span<const std::byte> message, unsigned priority) {
  std::error_code ec;
  bool sent = try_send(message, priority, ec);
  if (ec) fail("mq_send", ec);
  return sent;
}

bool message_queue::send_until_(std::span<const std::byte> message, unsigned priority, const detail::deadline& dl,
                                std::error_code& ec) noexcept {
  int e = impl_ ? impl_->send(message, priority, wait_limit::at(dl)) : EBADF;
  ec = errno_code(is_wait_outcome(e) ? 0 : e);
  return e == 0;
}

bool message_queue::send_until_(std::span<const std::byte> message, unsigned priority, const detail::deadline& dl) {
  std::error_code ec;
  bool sent = send_until_(message, priority, dl, ec);
  if (ec) fail("mq_timedsend", ec);
  return sent;
}

// ---- receive ----

received message_queue::receive(std::span<std::byte> buffer, std::error_code& ec) noexcept {
  received r;
  ec = errno_code(impl_ ? impl_->receive(buffer, r, wait_limit::blocking()) : EBADF);
  return ec ? received{} : r;
}

received message_queue::receive(std::span<std::byte> buffer) {
  std::error_code ec;
  received r = receive(buffer, ec);
  if (ec) fail("mq_receive", ec);
  return r;
}

std::optional<received> message_queue::try_receive(std::span<std::byte> buffer, std::error_code& ec) noexcept {
  received r;
  int e = impl_ ? impl_->receive(buffer, r, wait_limit::immediate()) : EBADF;
  ec = errno_code(is_wait_outcome(e) ? 0 : e);
  if (e != 0) return std::nullopt;
  return r;
}

std::optional<received> message_queue::try_receive(std::span<std::byte> buffer) {
  std::error_code ec;
  auto r = try_receive(buffer, ec);
  if (ec) fail("mq_receive", ec);
  return r;
}

std::optional<received> message_queue::receive_until_(std::span<std::byte> buffer, const detail::deadline& dl,
                                                      std::error_code& ec) noexcept {
  received r;
  int e = impl_ ? impl_->receive(buffer, r, wait_limit::at(dl)) : EBADF;
  ec = errno_code(is_wait_outcome(e) ? 0 : e);
  if (e != 0) return std::nullopt;
  return r;
}

std::optional<received> message_queue::receive_until_(std::span<std::byte> buffer, const detail::deadline& dl) {
  std::error_code ec;
  auto r = receive_until_(buffer, dl, ec);
  if (ec) fail("mq_timedreceive", ec);
  return r;
}

// ---- attributes ----

mq_attributes message_queue::attributes(std::error_code& ec) const noexcept {
  mq_attributes a;
  ec = errno_code(impl_ ? impl_->get_attributes(a) : EBADF);
  return a;
}

mq_attributes message_queue::attributes() const {
  std::error_code ec;
  mq_attributes a = attributes(ec);
  if (ec) fail("mq_getattr", ec);
  return a;
}

void message_queue::set_nonblocking(bool on, std::error_code& ec) noexcept {
  ec = errno_code(impl_ ? impl_->set_nonblocking(on) : EBADF);
}

void message_queue::set_nonblocking(bool on) {
  std::error_code ec;
  set_nonblocking(on, ec);
  if (ec) fail("mq_setattr", ec);
}

// ---- notification ----

namespace {
int request(detail::queue_backend* impl, detail::notification n) noexcept {
  return impl ? impl->notify(std::move(n)) : EBADF;
}
}  // namespace

void message_queue::notify_signal(int signo, int value, std::error_code& ec) noexcept {
  ec = errno_code(request(impl_.get(), {detail::notification::signal, signo, value, {}}));
}

void message_queue::notify_signal(int signo, int value) {
  std::error_code ec;
  notify_signal(signo, value, ec);
  if (ec) fail("mq_notify", ec);
}

void message_queue::notify_thread(std::function<void()> callback, std::error_code& ec) noexcept {
  if (!callback) {
    ec = errno_code(EINVAL);
    return;
  }
  ec = errno_code(request(impl_.get(), {detail::notification::thread, 0, 0, std::move(callback)}));
}

void message_queue::notify_thread(std::function<void()> callback) {
  std::error_code ec;
  notify_thread(std::move(callback), ec);
  if (ec) fail("mq_notify", ec);
}

void message_queue::notify_none(std::error_code& ec) noexcept {
  ec = errno_code(request(impl_.get(), {detail::notification::none, 0, 0, {}}));
}

void message_queue::notify_none() {
  std::error_code ec;
  notify_none(ec);
  if (ec) fail("mq_notify", ec);
}

void message_queue::cancel_notification(std::error_code& ec) noexcept {
  ec = errno_code(request(impl_.get(), {detail::notification::cancel, 0, 0, {}}));
}

void message_queue::cancel_notification() {
  std::error_code ec;
  cancel_notification(ec);
  if (ec) fail("mq_notify", ec);
}

// ---- lifetime ----

void message_queue::close() noexcept { impl_.reset(); }

int message_queue::native_handle() const noexcept { return impl_ ? impl_->native_handle() : -1; }

}  // namespace pipc
