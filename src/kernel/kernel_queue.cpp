#include "kernel/kernel_queue.hpp"

#include "notify_registry.hpp"
#include "sys/sys.hpp"

#include <fcntl.h>
#include <signal.h>

#include <mutex>

namespace pipc::kernel {
namespace {

void run_thread_notification(sigval value) {
  detail::notify_registry_fire(reinterpret_cast<detail::notify_key>(value.sival_ptr));
}

class kernel_queue final : public detail::queue_backend {
 public:
  kernel_queue(mqd_t q, bool can_send) noexcept : q_(q), can_send_(can_send) {}
  ~kernel_queue() override {
    sys::mq_close(q_);  // also ends this process's registration, if it has one
    withdraw_callback();
  }

  int send(std::span<const std::byte> message, unsigned priority, const detail::wait_limit& limit) noexcept override {
    return with_limit(limit, [&](const timespec* abs) {
      return sys::mq_timedsend(q_, message.data(), message.size(), priority, abs);
    });
  }

  int receive(std::span<std::byte> buffer, received& out, const detail::wait_limit& limit) noexcept override {
    return with_limit(limit, [&](const timespec* abs) {
      return sys::mq_timedreceive(q_, buffer.data(), buffer.size(), out.priority, abs, out.size);
    });
  }

  // A loan is a buffer of this process (queue_backend's default), refused at once on a
  // description that cannot send, as send would refuse it at commit.
  int send_begin(std::size_t size, const detail::wait_limit& limit, std::byte*& data) noexcept override {
    if (!can_send_) return EBADF;
    return queue_backend::send_begin(size, limit, data);
  }

  int get_attributes(mq_attributes& out) noexcept override {
    mq_attr attr{};
    int e = sys::mq_getattr(q_, attr);
    if (e != 0) return e;
    out.max_messages = attr.mq_maxmsg;
    out.message_size = attr.mq_msgsize;
    out.current_messages = attr.mq_curmsgs;
    out.nonblocking = (attr.mq_flags & O_NONBLOCK) != 0;
    return 0;
  }

  int set_nonblocking(bool on) noexcept override {
    mq_attr attr{};
    attr.mq_flags = on ? O_NONBLOCK : 0;
    return sys::mq_setattr(q_, attr);
  }

  int notify(detail::notification request) noexcept override {
    sigevent sev{};
    detail::notify_key key = 0;
    switch (request.kind) {
      case detail::notification::cancel: {
        int e = sys::mq_notify(q_, nullptr);
        if (e == 0) withdraw_callback();
        return e;
      }
      case detail::notification::none:
        sev.sigev_notify = SIGEV_NONE;
        break;
      case detail::notification::signal:
        sev.sigev_notify = SIGEV_SIGNAL;
        sev.sigev_signo = request.signo;
        sev.sigev_value.sival_int = request.value;
        break;
      case detail::notification::thread:
        try {
          key = detail::notify_registry_add(std::move(request.callback));
        } catch (...) {
          return ENOMEM;
        }
        sev.sigev_notify = SIGEV_THREAD;
        sev.sigev_notify_function = run_thread_notification;
        sev.sigev_value.sival_ptr = reinterpret_cast<void*>(key);
        break;
    }
    int e = sys::mq_notify(q_, &sev);
    if (e != 0) {
      if (key != 0) detail::notify_registry_remove(key);
      return e;
    }
    // A registration that replaced none: any earlier callback of ours is dead, because
    // the kernel allows one registration and this one succeeded.
    std::lock_guard lock(mutex_);
    if (callback_ != 0) detail::notify_registry_remove(callback_);
    callback_ = key;
    return 0;
  }

  int native_handle() const noexcept override { return static_cast<int>(q_); }

 private:
  // Runs op with the absolute CLOCK_REALTIME timeout the kernel wants. EINTR is
  // retried; a monotonic deadline is converted again on each try, so a change of the
  // system clock neither shortens nor lengthens the wait by more than one try.
  template <class Op>
  static int with_limit(const detail::wait_limit& limit, Op op) noexcept {
    for (;;) {
      int e;
      switch (limit.kind) {
        case detail::wait_limit::forever:
          e = op(nullptr);
          break;
        case detail::wait_limit::none: {
          // A time in the past: the kernel does the operation if it can, and
          // otherwise returns ETIMEDOUT at once (EAGAIN if the description is non-blocking).
          timespec past{0, 0};
          e = op(&past);
          break;
        }
        default: {
          timespec abs;
          if (limit.when.clock == CLOCK_REALTIME) {
            abs = sys::to_timespec(limit.when.ns);
          } else {
            std::int64_t left = limit.when.ns - sys::now_ns(limit.when.clock);
            abs = sys::to_timespec(left <= 0 ? 0 : sys::now_ns(CLOCK_REALTIME) + left);
          }
          e = op(&abs);
          if (e == ETIMEDOUT && limit.when.clock != CLOCK_REALTIME &&
              sys::now_ns(limit.when.clock) < limit.when.ns) {
            continue;  // the realtime clock jumped forward; the real deadline is still ahead
          }
          break;
        }
      }
      if (e != EINTR) return e;
    }
  }

  void withdraw_callback() noexcept {
    std::lock_guard lock(mutex_);
    if (callback_ != 0) detail::notify_registry_remove(callback_);
    callback_ = 0;
  }

  mqd_t q_;
  bool can_send_;
  std::mutex mutex_;               // guards callback_
  detail::notify_key callback_ = 0;  // the registry key of our SIGEV_THREAD callback
};

int flags_for(open_mode mode, const mq_options& options) noexcept {
  int flags = 0;
  switch (options.access) {
    case access::read_only:
      flags = O_RDONLY;
      break;
    case access::write_only:
      flags = O_WRONLY;
      break;
    case access::read_write:
      flags = O_RDWR;
      break;
  }
  if (mode == open_mode::create_only) flags |= O_CREAT | O_EXCL;
  if (mode == open_mode::open_or_create) flags |= O_CREAT;
  if (options.nonblocking) flags |= O_NONBLOCK;
  return flags;
}

}  // namespace

std::unique_ptr<detail::queue_backend> open_queue(const std::string& name, open_mode mode, const mq_options& options,
                                                  std::error_code& ec) noexcept {
  mq_attr attr{};
  attr.mq_maxmsg = options.max_messages;
  attr.mq_msgsize = options.message_size;
  mqd_t q;
  int e = sys::mq_open(name.c_str(), flags_for(mode, options), options.permissions, &attr, q);
  ec = {e, std::system_category()};
  if (e != 0) return nullptr;
  try {
    return std::make_unique<kernel_queue>(q, options.access != access::read_only);
  } catch (...) {
    sys::mq_close(q);
    ec = {ENOMEM, std::system_category()};
    return nullptr;
  }
}

int unlink_queue(const std::string& name) noexcept { return sys::mq_unlink(name.c_str()); }

std::string explain_open_failure(std::error_code ec, open_mode mode, const mq_options& options) {
  if (mode == open_mode::open_only) return {};
  auto limit = [](const char* file, long& value) {
    return sys::read_long((std::string("/proc/sys/fs/mqueue/") + file).c_str(), value) == 0;
  };
  long value = 0;
  if (ec == std::errc::invalid_argument) {
    if (options.max_messages <= 0 || options.message_size <= 0) {
      return "max_messages and message_size must be positive";
    }
    if (limit("msg_max", value) && options.max_messages > value) {
      return "max_messages " + std::to_string(options.max_messages) + " exceeds /proc/sys/fs/mqueue/msg_max (" +
             std::to_string(value) + ")";
    }
    if (limit("msgsize_max", value) && options.message_size > value) {
      return "message_size " + std::to_string(options.message_size) + " exceeds /proc/sys/fs/mqueue/msgsize_max (" +
             std::to_string(value) + ")";
    }
  } else if (ec == std::errc::too_many_files_open) {
    struct ::rlimit rl {};
    if (sys::get_rlimit(RLIMIT_MSGQUEUE, rl) == 0) {
      return "this user's queues would exceed RLIMIT_MSGQUEUE (" + std::to_string(rl.rlim_cur) +
             " bytes; see ulimit -q)";
    }
  } else if (ec == std::errc::no_space_on_device && limit("queues_max", value)) {
    return "the host has reached /proc/sys/fs/mqueue/queues_max (" + std::to_string(value) + " queues)";
  }
  return {};
}

}  // namespace pipc::kernel
