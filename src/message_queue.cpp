#include <pipc/message_queue.hpp>

#include "engine/engine_backend.hpp"
#include "engine/queue.hpp"
#include "error_util.hpp"
#include "kernel/kernel_queue.hpp"
#include "queue_backend.hpp"

#include <new>
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

// ---- zero copy ----

// The defaults of backends that lend a buffer of this process (queue_backend.hpp).
int detail::queue_backend::send_begin(std::size_t size, const wait_limit& limit, std::byte*& data) noexcept {
  (void)limit;
  mq_attributes a;
  if (int e = get_attributes(a); e != 0) return e;
  if (size > static_cast<std::size_t>(a.message_size)) return EMSGSIZE;
  data = new (std::nothrow) std::byte[static_cast<std::size_t>(a.message_size)];
  return data == nullptr ? ENOMEM : 0;
}

int detail::queue_backend::send_commit(std::byte* data, std::size_t size, unsigned priority) noexcept {
  if (data == nullptr) return EINVAL;
  int e = send({data, size}, priority, wait_limit::blocking());
  if (e == 0) delete[] data;
  return e;
}

int detail::queue_backend::send_abort(std::byte* data) noexcept {
  delete[] data;
  return 0;
}

int detail::queue_backend::receive_begin(const wait_limit& limit, const std::byte*& data, received& out) noexcept {
  mq_attributes a;
  if (int e = get_attributes(a); e != 0) return e;
  const auto capacity = static_cast<std::size_t>(a.message_size);
  auto* buffer = new (std::nothrow) std::byte[capacity];
  if (buffer == nullptr) return ENOMEM;
  if (int e = receive({buffer, capacity}, out, limit); e != 0) {
    delete[] buffer;
    return e;
  }
  data = buffer;
  return 0;
}

int detail::queue_backend::receive_end(const std::byte* data) noexcept {
  delete[] data;
  return 0;
}

send_loan::send_loan(send_loan&& other) noexcept
    : q_(std::move(other.q_)), data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

send_loan& send_loan::operator=(send_loan&& other) noexcept {
  if (this != &other) {
    abort();
    q_ = std::move(other.q_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

send_loan::~send_loan() { abort(); }

void send_loan::abort() noexcept {
  if (data_ != nullptr) q_->send_abort(data_);
  data_ = nullptr;
  size_ = 0;
  q_.reset();
}

void send_loan::commit(std::size_t size, unsigned priority, std::error_code& ec) noexcept {
  if (data_ == nullptr) {
    ec = errno_code(EINVAL);
    return;
  }
  if (size > size_) {
    ec = errno_code(EMSGSIZE);
    return;
  }
  ec = errno_code(q_->send_commit(data_, size, priority));
  if (ec) return;
  data_ = nullptr;
  size_ = 0;
  q_.reset();
}

void send_loan::commit(unsigned priority, std::error_code& ec) noexcept { commit(size_, priority, ec); }

void send_loan::commit(std::size_t size, unsigned priority) {
  std::error_code ec;
  commit(size, priority, ec);
  if (ec) detail::throw_unnamed_error(ec, "mq_send (commit of a loan)");
}

void send_loan::commit(unsigned priority) { commit(size_, priority); }

received_message::received_message(received_message&& other) noexcept
    : q_(std::move(other.q_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      priority_(other.priority_) {}

received_message& received_message::operator=(received_message&& other) noexcept {
  if (this != &other) {
    release();
    q_ = std::move(other.q_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    priority_ = other.priority_;
  }
  return *this;
}

received_message::~received_message() { release(); }

void received_message::release() noexcept {
  if (data_ != nullptr) q_->receive_end(data_);
  data_ = nullptr;
  size_ = 0;
  q_.reset();
}

int message_queue::loan_(std::size_t size, const detail::deadline* dl, bool wait, send_loan& out) noexcept {
  if (!impl_) return EBADF;
  const wait_limit limit = dl != nullptr ? wait_limit::at(*dl) : wait ? wait_limit::blocking() : wait_limit::immediate();
  std::byte* data = nullptr;
  if (int e = impl_->send_begin(size, limit, data); e != 0) return e;
  out.abort();
  out.q_ = impl_;
  out.data_ = data;
  out.size_ = size;
  return 0;
}

int message_queue::receive_view_(const detail::deadline* dl, bool wait, received_message& out) noexcept {
  if (!impl_) return EBADF;
  const wait_limit limit = dl != nullptr ? wait_limit::at(*dl) : wait ? wait_limit::blocking() : wait_limit::immediate();
  const std::byte* data = nullptr;
  received r;
  if (int e = impl_->receive_begin(limit, data, r); e != 0) return e;
  out.release();
  out.q_ = impl_;
  out.data_ = data;
  out.size_ = r.size;
  out.priority_ = r.priority;
  return 0;
}

send_loan message_queue::loan(std::size_t size, std::error_code& ec) noexcept {
  send_loan l;
  ec = errno_code(loan_(size, nullptr, true, l));
  return l;
}

send_loan message_queue::loan(std::size_t size) {
  std::error_code ec;
  send_loan l = loan(size, ec);
  if (ec) fail("mq_send (loan)", ec);
  return l;
}

std::optional<send_loan> message_queue::try_loan(std::size_t size, std::error_code& ec) noexcept {
  send_loan l;
  int e = loan_(size, nullptr, false, l);
  ec = errno_code(is_wait_outcome(e) ? 0 : e);
  if (e != 0) return std::nullopt;
  return l;
}

std::optional<send_loan> message_queue::try_loan(std::size_t size) {
  std::error_code ec;
  auto l = try_loan(size, ec);
  if (ec) fail("mq_send (loan)", ec);
  return l;
}

std::optional<send_loan> message_queue::loan_until_(std::size_t size, const detail::deadline& dl) {
  send_loan l;
  int e = loan_(size, &dl, true, l);
  if (e != 0 && !is_wait_outcome(e)) fail("mq_timedsend (loan)", errno_code(e));
  if (e != 0) return std::nullopt;
  return l;
}

received_message message_queue::receive_view(std::error_code& ec) noexcept {
  received_message m;
  ec = errno_code(receive_view_(nullptr, true, m));
  return m;
}

received_message message_queue::receive_view() {
  std::error_code ec;
  received_message m = receive_view(ec);
  if (ec) fail("mq_receive (in place)", ec);
  return m;
}

std::optional<received_message> message_queue::try_receive_view(std::error_code& ec) noexcept {
  received_message m;
  int e = receive_view_(nullptr, false, m);
  ec = errno_code(is_wait_outcome(e) ? 0 : e);
  if (e != 0) return std::nullopt;
  return m;
}

std::optional<received_message> message_queue::try_receive_view() {
  std::error_code ec;
  auto m = try_receive_view(ec);
  if (ec) fail("mq_receive (in place)", ec);
  return m;
}

std::optional<received_message> message_queue::receive_view_until_(const detail::deadline& dl) {
  received_message m;
  int e = receive_view_(&dl, true, m);
  if (e != 0 && !is_wait_outcome(e)) fail("mq_timedreceive (in place)", errno_code(e));
  if (e != 0) return std::nullopt;
  return m;
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
