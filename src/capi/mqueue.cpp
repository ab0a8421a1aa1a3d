// The C API: POSIX mq_* on the engine (include/pipc/c/mqueue.h, docs/c-api.md).
//
// Each function looks its descriptor up in the process-wide table
// (descriptor_table.hpp), calls the engine's queue, and turns the engine's result into
// POSIX's: 0 or a value, else -1 with errno. pipc's own conditions become the errno
// nearest in meaning: an unsafe object in /dev/shm (another user's with O_CREAT, hard
// linked) EACCES, a missing /proc EOPNOTSUPP, and a region that is foreign, of another
// layout, or corrupt EBADMSG.
#include <pipc/c/mqueue.h>

#include "capi/descriptor_table.hpp"
#include "engine/queue.hpp"
#include "error_util.hpp"
#include "queue_backend.hpp"
#include "sys/interrupt.hpp"

#include <pipc/common.hpp>

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <string>

namespace pipc::capi {
namespace {

static_assert(PIPC_MQ_PRIO_MAX == engine::priorities);

// Constant-initialised (usable before any constructor runs) and trivially destroyed
// (usable by threads that outlive static destruction).
constinit descriptor_table the_table;

descriptor_table& table() noexcept { return the_table; }

// Sets errno from an engine result and returns -1.
int fail(int e) noexcept {
  if (e >= detail::errc_base) {
    switch (static_cast<errc>(e - detail::errc_base)) {
      case errc::foreign_owner:
      case errc::multiply_linked:
        e = EACCES;
        break;
      case errc::proc_unavailable:
        e = EOPNOTSUPP;
        break;
      default:
        e = EBADMSG;
        break;
    }
  }
  errno = e;
  return -1;
}

// The spin before sleeping: $PIPC_SPIN_NS (nanoseconds, ≥ 0), read once; otherwise
// the engine's default.
std::int64_t spin_ns() noexcept {
  static const std::int64_t value = [] {
    const char* text = std::getenv("PIPC_SPIN_NS");
    if (text == nullptr || *text == '\0') return std::int64_t{-1};
    char* end = nullptr;
    int saved = errno;
    errno = 0;
    long long v = std::strtoll(text, &end, 10);
    bool ok = errno == 0 && *end == '\0' && v >= 0;
    errno = saved;
    return ok ? static_cast<std::int64_t>(v) : std::int64_t{-1};
  }();
  return value;
}

// 0, or the errno for a queue name pipc_mq_open and pipc_mq_unlink cannot take:
// EACCES for a '/' after the first character, and for "/." and "/..", as Linux's
// mq_open and mq_unlink say (pipc's C++ API calls those EINVAL), else check_name's
// EINVAL or ENAMETOOLONG.
int check_queue_name(const char* name) noexcept {
  std::error_code ec = check_name(name, name_kind::engine_queue);
  if (!ec) return 0;
  return detail::name_refused_with_eacces(name, name_kind::engine_queue) ? EACCES : ec.value();
}

bool valid_timespec(const timespec& ts) noexcept { return ts.tv_nsec >= 0 && ts.tv_nsec < 1'000'000'000; }

// An absolute CLOCK_REALTIME timespec (valid) in nanoseconds, clamped to [0, ~292 years].
std::int64_t to_ns(const timespec& ts) noexcept {
  constexpr std::int64_t max_seconds = INT64_MAX / 1'000'000'000 - 1;
  if (ts.tv_sec < 0) return 0;
  if (ts.tv_sec > max_seconds) return max_seconds * 1'000'000'000;
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Runs `op(limit)` for a timed call. POSIX checks abs_timeout only if the call would
// block: an invalid one gets a non-blocking attempt, and EINVAL if that would block.
// NULL waits without limit, as glibc's mq_timed* do.
template <class Op>
int timed(const timespec* abs_timeout, Op op) {
  if (abs_timeout == nullptr) return op(detail::wait_limit::blocking());
  if (valid_timespec(*abs_timeout)) {
    return op(detail::wait_limit::at({CLOCK_REALTIME, to_ns(*abs_timeout)}));
  }
  int e = op(detail::wait_limit::immediate());
  return e == ETIMEDOUT ? EINVAL : e;
}

// send and receive are cancellation points (POSIX): a request pending at the call acts
// before it does anything, and one made while it waits acts in the wait
// (sys/interrupt.hpp). So neither is noexcept: cancellation unwinds through them.
int send(pipc_mqd_t mqdes, const char* msg_ptr, size_t msg_len, unsigned msg_prio,
         const timespec* abs_timeout, bool timed_call) {
  pipc::sys::test_cancel();
  if (msg_prio >= PIPC_MQ_PRIO_MAX) return fail(EINVAL);  // checked first, as Linux does
  descriptor_table::ref q = table().acquire(mqdes);
  if (!q) return fail(EBADF);
  auto op = [&](const detail::wait_limit& limit) { return q->send(msg_ptr, msg_len, msg_prio, limit, true); };
  int e = timed_call ? timed(abs_timeout, op) : op(detail::wait_limit::blocking());
  return e == 0 ? 0 : fail(e);
}

ssize_t receive(pipc_mqd_t mqdes, char* msg_ptr, size_t msg_len, unsigned* msg_prio, const timespec* abs_timeout,
                bool timed_call) {
  pipc::sys::test_cancel();
  descriptor_table::ref q = table().acquire(mqdes);
  if (!q) return fail(EBADF);
  std::size_t size = 0;
  unsigned priority = 0;
  auto op = [&](const detail::wait_limit& limit) {
    return q->receive(msg_ptr, msg_len, size, priority, limit, true);
  };
  int e = timed_call ? timed(abs_timeout, op) : op(detail::wait_limit::blocking());
  if (e != 0) return fail(e);
  if (msg_prio != nullptr) *msg_prio = priority;
  return static_cast<ssize_t>(size);
}

// The begin calls of the zero-copy extension: cancellation points as send and receive.
void* send_begin(pipc_mqd_t mqdes, size_t msg_len, const timespec* abs_timeout, bool timed_call) {
  pipc::sys::test_cancel();
  descriptor_table::ref q = table().acquire(mqdes);
  if (!q) {
    fail(EBADF);
    return nullptr;
  }
  std::byte* data = nullptr;
  auto op = [&](const detail::wait_limit& limit) { return q->send_begin(msg_len, limit, true, data); };
  int e = timed_call ? timed(abs_timeout, op) : op(detail::wait_limit::blocking());
  if (e != 0) {
    fail(e);
    return nullptr;
  }
  return data;
}

const void* receive_begin(pipc_mqd_t mqdes, size_t* msg_len, unsigned* msg_prio, const timespec* abs_timeout,
                          bool timed_call) {
  pipc::sys::test_cancel();
  descriptor_table::ref q = table().acquire(mqdes);
  if (!q) {
    fail(EBADF);
    return nullptr;
  }
  if (msg_len == nullptr) {
    fail(EINVAL);
    return nullptr;
  }
  const std::byte* data = nullptr;
  std::size_t size = 0;
  unsigned priority = 0;
  auto op = [&](const detail::wait_limit& limit) { return q->receive_begin(limit, true, data, size, priority); };
  int e = timed_call ? timed(abs_timeout, op) : op(detail::wait_limit::blocking());
  if (e != 0) {
    fail(e);
    return nullptr;
  }
  *msg_len = size;
  if (msg_prio != nullptr) *msg_prio = priority;
  return data;
}

// Could a queue be created with these attributes?
bool valid_attributes(const pipc_mq_attr& attr) noexcept {
  return attr.mq_maxmsg > 0 && attr.mq_msgsize > 0 &&
         static_cast<unsigned long>(attr.mq_maxmsg) <= engine::max_max_messages &&
         static_cast<unsigned long>(attr.mq_msgsize) <= engine::max_message_size;
}

// SIGEV_THREAD with sigev_notify_attributes: each notification runs on a new thread
// created with a copy of the caller's attributes (the caller may destroy its own once
// mq_notify returns), detached, as glibc does. The copy takes what the C library lets
// one read back: detach state (always detached), guard and stack size, scheduling
// (inheritance, policy, parameters, scope), CPU affinity and signal mask. A stack
// address is not copied: every notification thread needs a stack of its own.
class thread_attributes {
 public:
  // 0, or the error of reading or copying `from`.
  int copy(const pthread_attr_t& from) noexcept {
    if (int e = ::pthread_attr_init(&attr_); e != 0) return e;
    initialised_ = true;
    std::size_t size = 0;
    int value = 0;
    sched_param param{};
    cpu_set_t cpus;
    sigset_t mask;
    int e = ::pthread_attr_setdetachstate(&attr_, PTHREAD_CREATE_DETACHED);
    if (e == 0 && (e = ::pthread_attr_getguardsize(&from, &size)) == 0) e = ::pthread_attr_setguardsize(&attr_, size);
    if (e == 0 && (e = ::pthread_attr_getstacksize(&from, &size)) == 0) e = ::pthread_attr_setstacksize(&attr_, size);
    if (e == 0 && (e = ::pthread_attr_getinheritsched(&from, &value)) == 0) e = ::pthread_attr_setinheritsched(&attr_, value);
    if (e == 0 && (e = ::pthread_attr_getschedpolicy(&from, &value)) == 0) e = ::pthread_attr_setschedpolicy(&attr_, value);
    if (e == 0 && (e = ::pthread_attr_getschedparam(&from, &param)) == 0) e = ::pthread_attr_setschedparam(&attr_, &param);
    if (e == 0 && (e = ::pthread_attr_getscope(&from, &value)) == 0) e = ::pthread_attr_setscope(&attr_, value);
    if (e == 0 && ::pthread_attr_getaffinity_np(&from, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) != 0) {
      e = ::pthread_attr_setaffinity_np(&attr_, sizeof cpus, &cpus);
    }
    if (e == 0 && ::pthread_attr_getsigmask_np(&from, &mask) == 0) e = ::pthread_attr_setsigmask_np(&attr_, &mask);
    return e;
  }
  thread_attributes() noexcept = default;
  thread_attributes(const thread_attributes&) = delete;
  thread_attributes& operator=(const thread_attributes&) = delete;
  ~thread_attributes() {
    if (initialised_) ::pthread_attr_destroy(&attr_);
  }
  const pthread_attr_t* get() const noexcept { return &attr_; }

 private:
  pthread_attr_t attr_;
  bool initialised_ = false;
};

struct thread_call {
  void (*function)(union sigval);
  union sigval value;
};

void* run_thread_call(void* arg) {
  std::unique_ptr<thread_call> call(static_cast<thread_call*>(arg));
  call->function(call->value);
  return nullptr;
}

// Calls function(value) on a new thread made with `attributes`; on this thread if none
// can be made (the notification is still delivered).
void call_on_new_thread(const thread_attributes& attributes, void (*function)(union sigval), union sigval value) {
  auto* call = new (std::nothrow) thread_call{function, value};
  pthread_t thread;
  if (call != nullptr && ::pthread_create(&thread, attributes.get(), run_thread_call, call) == 0) return;
  delete call;
  function(value);
}

// The eventfd (counter 1: polls ready both ways) that descriptors duplicate until they
// are made pollable: a duplicate costs an fcntl (0.15 µs here) where a new eventfd
// costs 1.2 µs. Made at the first open, close-on-exec, never closed by pipc; made again
// if it was closed behind pipc's back.
std::atomic<int> shared_eventfd{-1};

int duplicate_shared_eventfd(int& fd) noexcept {
  for (;;) {
    int shared = shared_eventfd.load(std::memory_order_acquire);
    if (shared >= 0) {
      int e = sys::dup_cloexec(shared, fd);
      if (e != EBADF) return e;
      // Closed by somebody else: forget it (unless another thread already did).
      shared_eventfd.compare_exchange_strong(shared, -1, std::memory_order_acq_rel);
      continue;
    }
    int fresh = -1;
    if (int e = sys::eventfd_create(fresh, 1); e != 0) return e;
    if (!shared_eventfd.compare_exchange_strong(shared, fresh, std::memory_order_acq_rel)) sys::close(fresh);
  }
}

// Opens the file descriptor that is q's descriptor (docs/c-api.md, "Descriptors") and
// enters it in the table, which then owns q. An eventfd: a duplicate of the shared one
// until the descriptor's readiness is tracked (pipc_mq_pollable), or, with
// `own_eventfd`, one of its own (for a descriptor that is made pollable at once).
int new_descriptor(engine::queue& q, bool own_eventfd, int& d) noexcept {
  int fd = -1;
  if (int e = own_eventfd ? sys::eventfd_create(fd, 1) : duplicate_shared_eventfd(fd); e != 0) return e;
  for (;;) {
    int e = 0;
    switch (table().insert(&q, fd, e)) {
      case descriptor_table::inserted::done:
        d = fd;
        return 0;
      case descriptor_table::inserted::failed:
        sys::close(fd);
        return e;
      case descriptor_table::inserted::number_in_use: {
        // A stale descriptor of this number still has calls running: use another.
        int other = -1;
        e = sys::dup_cloexec(fd, other, fd + 1);
        sys::close(fd);
        if (e != 0) return e;
        fd = other;
        break;
      }
    }
  }
}

// $PIPC_MQ_POLLABLE=1: every descriptor this process opens is pollable from the start
// (read once; the preload library's default).
bool pollable_by_default() noexcept {
  static const bool value = [] {
    const char* text = std::getenv("PIPC_MQ_POLLABLE");
    return text != nullptr && std::strcmp(text, "1") == 0;
  }();
  return value;
}

int fill_attributes(const engine::queue& q, pipc_mq_attr& out) noexcept {
  bool nonblocking = false;
  int e = q.attributes(out.mq_maxmsg, out.mq_msgsize, out.mq_curmsgs, nonblocking);
  out.mq_flags = nonblocking ? O_NONBLOCK : 0;
  return e;
}

}  // namespace
}  // namespace pipc::capi

using pipc::capi::descriptor_table;
using pipc::capi::fail;
using pipc::capi::table;

extern "C" {

pipc_mqd_t pipc_mq_open(const char* name, int oflag, ...) {
  mode_t mode = 0;
  const pipc_mq_attr* attr = nullptr;
  if ((oflag & O_CREAT) != 0) {
    va_list ap;
    va_start(ap, oflag);
    mode = va_arg(ap, mode_t);
    attr = va_arg(ap, const pipc_mq_attr*);
    va_end(ap);
  }
  if (name == nullptr) return fail(EINVAL);
  if (int e = pipc::capi::check_queue_name(name); e != 0) return fail(e);

  pipc::engine::open_request request;
  request.name = name;
  request.flags = oflag;
  request.mode = mode;
  request.spin_ns = pipc::capi::spin_ns();
  if (attr != nullptr) {
    request.has_attributes = true;
    request.max_messages = attr->mq_maxmsg;
    request.message_size = attr->mq_msgsize;
  }

  std::unique_ptr<pipc::engine::queue> q;
  int e = pipc::engine::queue::open(request, q);
  if (e == EINVAL && attr != nullptr && !pipc::capi::valid_attributes(*attr) && (oflag & O_ACCMODE) != O_ACCMODE) {
    // POSIX validates attr only when the call creates the queue: if the name exists,
    // open it as if attr were fine (or fail with EEXIST under O_EXCL).
    request.flags = oflag & ~(O_CREAT | O_EXCL);
    request.has_attributes = false;
    int existing = pipc::engine::queue::open(request, q);
    if (existing != ENOENT) {
      if ((oflag & O_EXCL) != 0) {
        q.reset();
        return fail(EEXIST);
      }
      e = existing;
    }
  }
  if (e != 0) return fail(e);
  int d = -1;
  const bool pollable = pipc::capi::pollable_by_default();
  if ((e = pipc::capi::new_descriptor(*q, pollable, d)) != 0) return fail(e);
  if (pollable && (e = q->track_readiness(d, false)) != 0) {
    table().close(d);  // destroys q
    q.release();
    return fail(e);
  }
  q.release();  // the table owns it now
  return d;
}

int pipc_mq_pollable(pipc_mqd_t mqdes) {
  descriptor_table::ref q = table().acquire(mqdes);
  if (!q) return fail(EBADF);
  int e = q->track_readiness(mqdes, true);
  return e == 0 ? 0 : fail(e);
}

int pipc_mq_close(pipc_mqd_t mqdes) {
  int e = table().close(mqdes);
  return e == 0 ? 0 : fail(e);
}

int pipc_mq_unlink(const char* name) {
  if (name == nullptr) return fail(EINVAL);
  if (int e = pipc::capi::check_queue_name(name); e != 0) return fail(e);
  int e = 0;
  try {
    e = pipc::engine::queue::unlink(name);
  } catch (...) {
    e = ENOMEM;
  }
  return e == 0 ? 0 : fail(e);
}

int pipc_mq_send(pipc_mqd_t mqdes, const char* msg_ptr, size_t msg_len, unsigned msg_prio) {
  return pipc::capi::send(mqdes, msg_ptr, msg_len, msg_prio, nullptr, false);
}

int pipc_mq_timedsend(pipc_mqd_t mqdes, const char* msg_ptr, size_t msg_len, unsigned msg_prio,
                      const struct timespec* abs_timeout) {
  return pipc::capi::send(mqdes, msg_ptr, msg_len, msg_prio, abs_timeout, true);
}

ssize_t pipc_mq_receive(pipc_mqd_t mqdes, char* msg_ptr, size_t msg_len, unsigned* msg_prio) {
  return pipc::capi::receive(mqdes, msg_ptr, msg_len, msg_prio, nullptr, false);
}

ssize_t pipc_mq_timedreceive(pipc_mqd_t mqdes, char* PIPC_RESTRICT msg_ptr, size_t msg_len,
                             unsigned* PIPC_RESTRICT msg_prio, const struct timespec* PIPC_RESTRICT abs_timeout) {
  return pipc::capi::receive(mqdes, msg_ptr, msg_len, msg_prio, abs_timeout, true);
}

void* pipc_mq_send_begin(pipc_mqd_t mqdes, size_t msg_len) {
  return pipc::capi::send_begin(mqdes, msg_len, nullptr, false);
}

void* pipc_mq_timedsend_begin(pipc_mqd_t mqdes, size_t msg_len, const struct timespec* abs_timeout) {
  return pipc::capi::send_begin(mqdes, msg_len, abs_timeout, true);
}

int pipc_mq_send_commit(pipc_mqd_t mqdes, void* msg, size_t msg_len, unsigned msg_prio) {
  descriptor_table::ref q = table().acquire(mqdes);
  if (!q) return fail(EBADF);
  int e = q->send_commit(msg, msg_len, msg_prio);
  return e == 0 ? 0 : fail(e);
}

int pipc_mq_send_abort(pipc_mqd_t mqdes, void* msg) {
  descriptor_table::ref q = table().acquire(mqdes);
  if (!q) return fail(EBADF);
  int e = q->send_abort(msg);
  return e == 0 ? 0 : fail(e);
}

const void* pipc_mq_receive_begin(pipc_mqd_t mqdes, size_t* msg_len, unsigned* msg_prio) {
  return pipc::capi::receive_begin(mqdes, msg_len, msg_prio, nullptr, false);
}

const void* pipc_mq_timedreceive_begin(pipc_mqd_t mqdes, size_t* PIPC_RESTRICT msg_len,
                                       unsigned* PIPC_RESTRICT msg_prio,
                                       const struct timespec* PIPC_RESTRICT abs_timeout) {
  return pipc::capi::receive_begin(mqdes, msg_len, msg_prio, abs_timeout, true);
}

int pipc_mq_receive_end(pipc_mqd_t mqdes, const void* msg) {
  descriptor_table::ref q = table().acquire(mqdes);
  if (!q) return fail(EBADF);
  int e = q->receive_end(msg);
  return e == 0 ? 0 : fail(e);
}

int pipc_mq_getattr(pipc_mqd_t mqdes, struct pipc_mq_attr* mqstat) {
  descriptor_table::ref q = table().acquire(mqdes);
  if (!q) return fail(EBADF);
  if (mqstat == nullptr) return fail(EINVAL);
  if (int e = pipc::capi::fill_attributes(*q, *mqstat); e != 0) return fail(e);
  return 0;
}

int pipc_mq_setattr(pipc_mqd_t mqdes, const struct pipc_mq_attr* PIPC_RESTRICT mqstat,
                    struct pipc_mq_attr* PIPC_RESTRICT omqstat) {
  descriptor_table::ref q = table().acquire(mqdes);
  if (!q) return fail(EBADF);
  // Only O_NONBLOCK may be set or cleared; other flags are an error, as on Linux.
  if (mqstat != nullptr && (mqstat->mq_flags & ~static_cast<long>(O_NONBLOCK)) != 0) return fail(EINVAL);
  if (omqstat != nullptr) {
    if (int e = pipc::capi::fill_attributes(*q, *omqstat); e != 0) return fail(e);
  }
  if (mqstat != nullptr) q->set_nonblocking((mqstat->mq_flags & O_NONBLOCK) != 0);
  return 0;
}

int pipc_mq_notify(pipc_mqd_t mqdes, const struct sigevent* notification) {
  descriptor_table::ref q = table().acquire(mqdes);
  if (!q) return fail(EBADF);
  int e = EINVAL;
  if (notification == nullptr) {
    e = q->cancel_notification();
  } else {
    switch (notification->sigev_notify) {
      case SIGEV_NONE:
        e = q->notify_none();
        break;
      case SIGEV_SIGNAL:
        // The whole sigval: a pointer means something in this process only, and only
        // this process receives the signal.
        e = q->notify_signal(notification->sigev_signo,
                             reinterpret_cast<std::uintptr_t>(notification->sigev_value.sival_ptr));
        break;
      case SIGEV_THREAD: {
        void (*function)(union sigval) = notification->sigev_notify_function;
        if (function == nullptr) break;
        union sigval value = notification->sigev_value;
        try {
          if (notification->sigev_notify_attributes == nullptr) {
            e = q->notify_thread([function, value] { function(value); });
          } else {
            auto attributes = std::make_shared<pipc::capi::thread_attributes>();
            e = attributes->copy(*notification->sigev_notify_attributes);
            if (e == 0) {
              e = q->notify_thread(
                  [attributes, function, value] { pipc::capi::call_on_new_thread(*attributes, function, value); });
            }
          }
        } catch (...) {
          e = ENOMEM;
        }
        break;
      }
      default:
        break;
    }
  }
  return e == 0 ? 0 : fail(e);
}

}  // extern "C"
