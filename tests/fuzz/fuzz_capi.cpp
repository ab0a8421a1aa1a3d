// fuzz_capi: random sequences of C API calls, checked against a model.
//
// The input is a program of pipc_mq_* calls on three queue names of this process's
// own, a few invalid names and NULL, and descriptors that are open, closed (stale) or
// garbage: open with fuzzed flags, modes and attributes (valid and invalid), send and
// receive (plain and timed, with deadlines in the past, a few milliseconds ahead, and
// invalid timespecs), getattr/setattr (garbage flags), notify with SIGEV_NONE, NULL and
// invalid kinds, close and unlink.
//
// The model (docs/c-api.md, include/pipc/c/mqueue.h) tracks queues, names and
// descriptors, and predicts every result: the return value, errno (exactly), the
// message a receive returns (the oldest of the highest priority) and the attributes.
// A call that would block without limit is never made.
#include "fuzz_support.hpp"

#include <pipc/c/mqueue.h>
#include <pipc/common.hpp>

#include <fcntl.h>
#include <signal.h>
#include <time.h>

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

using pipc::fuzz::one_of;

constexpr int max_calls = 48;
constexpr std::size_t name_count = 3;

// ---- the model ----

struct message {
  unsigned priority;
  std::vector<char> bytes;
};

struct queue_model {
  long maxmsg = 0;
  long msgsize = 0;
  std::vector<message> messages;        // in arrival order
  std::optional<pipc_mqd_t> registrant;  // the descriptor holding the notification

  std::size_t next() const {
    std::size_t best = 0;
    for (std::size_t i = 1; i < messages.size(); ++i) {
      if (messages[i].priority > messages[best].priority) best = i;
    }
    return best;
  }
};

struct descriptor_model {
  std::shared_ptr<queue_model> queue;
  int access;  // O_RDONLY, O_WRONLY, O_RDWR, or O_ACCMODE (neither sends nor receives)
  bool nonblocking;
};

struct world {
  std::array<std::string, name_count> names;
  std::array<std::shared_ptr<queue_model>, name_count> linked;  // what each name refers to
  std::map<pipc_mqd_t, descriptor_model> open;
  std::vector<pipc_mqd_t> ever_returned;  // for stale descriptors
};

const std::string& prefix() {
  static const std::string p = pipc::fuzz::own_prefix("capi");
  return p;
}

// ---- checking results ----

#define EXPECT_RESULT(got, want, want_errno, what)                                                      \
  do {                                                                                                   \
    long got_ = static_cast<long>(got);                                                                  \
    int errno_ = errno;                                                                                  \
    PIPC_FUZZ_CHECK(got_ == static_cast<long>(want) && (got_ != -1 || errno_ == (want_errno)),           \
                    std::string(what) + ": returned " + std::to_string(got_) + " errno " +               \
                        std::to_string(got_ == -1 ? errno_ : 0) + ", the model says " +                  \
                        std::to_string(static_cast<long>(want)) + " errno " + std::to_string(want_errno)); \
  } while (0)

// ---- choosing arguments ----

// A descriptor: an open one, a stale one, or garbage.
pipc_mqd_t pick_descriptor(world& w, FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0:
      if (!w.ever_returned.empty()) {
        return w.ever_returned[in.ConsumeIntegralInRange<std::size_t>(0, w.ever_returned.size() - 1)];
      }
      return -1;
    case 1:
      switch (in.ConsumeIntegralInRange<int>(0, 3)) {
        case 0:
          return -1;
        case 1:
          return 0;
        case 2:
          return in.ConsumeIntegralInRange<int>(0, 1023);  // a plausible file descriptor
        default:
          return in.ConsumeIntegral<int>();
      }
    default:
      if (w.open.empty()) return -1;
      auto it = w.open.begin();
      std::advance(it, in.ConsumeIntegralInRange<std::size_t>(0, w.open.size() - 1));
      return it->first;
  }
}

// A name: one of ours (index >= 0), or NULL / an invalid one (index -1, error set).
struct name_choice {
  int index = -1;
  std::string text;
  bool null = false;
  int error = 0;  // errno the name alone causes
};

name_choice pick_name(world& w, FuzzedDataProvider& in) {
  name_choice c;
  switch (in.ConsumeIntegralInRange<int>(0, 9)) {
    case 0:
      c.null = true;
      c.error = EINVAL;
      return c;
    case 1: {
      std::string text = in.ConsumeRandomLengthString(300);
      text.resize(std::strlen(text.c_str()));  // a C string ends at its first NUL
      std::error_code ec = pipc::check_name(text, pipc::name_kind::engine_queue);
      if (ec) {
        c.text = text;
        // The C API says EACCES for a '/' after the first character, as Linux does
        // (pipc's C++ API and check_name say EINVAL).
        const bool inner_slash = text.size() > 1 && text[0] == '/' && text.find('/', 1) != std::string::npos;
        c.error = ec.value() == EINVAL && inner_slash ? EACCES : ec.value();
        return c;
      }
      break;  // a valid name of someone else's: use one of ours instead
    }
    case 2:
      c.text = "/" + std::string(248, 'n');  // one byte too long for the engine
      c.error = ENAMETOOLONG;
      return c;
    default:
      break;
  }
  c.index = in.ConsumeIntegralInRange<int>(0, int(name_count) - 1);
  c.text = w.names[std::size_t(c.index)];
  return c;
}

// An absolute CLOCK_REALTIME deadline: past, a little ahead, or invalid.
struct deadline_choice {
  timespec ts{};
  bool valid = true;
};

deadline_choice pick_deadline(FuzzedDataProvider& in) {
  deadline_choice d;
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  switch (in.ConsumeIntegralInRange<int>(0, 6)) {
    case 0:
      d.ts = {0, 0};
      break;
    case 1:
      d.ts = {now.tv_sec - 1, now.tv_nsec};
      break;
    case 2:
      d.ts = {in.ConsumeIntegralInRange<time_t>(LONG_MIN, -1), in.ConsumeIntegralInRange<long>(0, 999'999'999)};
      break;
    case 3: {
      long ns = now.tv_nsec + in.ConsumeIntegralInRange<long>(0, 2'000'000);
      d.ts = {now.tv_sec + ns / 1'000'000'000, ns % 1'000'000'000};
      break;
    }
    case 4:
      d.ts = {now.tv_sec, -1};
      d.valid = false;
      break;
    case 5:
      d.ts = {now.tv_sec, 1'000'000'000};
      d.valid = false;
      break;
    default:
      d.ts = {in.ConsumeIntegral<time_t>(), in.ConsumeIntegral<long>()};
      d.valid = d.ts.tv_nsec >= 0 && d.ts.tv_nsec < 1'000'000'000;
      // A valid deadline far ahead would block the fuzzer: make it now.
      if (d.valid && d.ts.tv_sec > now.tv_sec) d.ts = now;
      break;
  }
  return d;
}

// ---- the calls ----

void call_open(world& w, FuzzedDataProvider& in) {
  name_choice n = pick_name(w, in);
  static constexpr int modes[] = {O_RDONLY, O_WRONLY, O_RDWR, O_ACCMODE};
  int access = modes[in.ConsumeIntegralInRange<int>(0, 3)];
  int oflag = access;
  if (in.ConsumeBool()) oflag |= O_CREAT;
  if (in.ConsumeBool()) oflag |= O_EXCL;
  if (in.ConsumeBool()) oflag |= O_NONBLOCK;
  if (in.ConsumeBool()) oflag |= O_CLOEXEC;
  // The owner keeps read-write access, so that the model needs no permission checks.
  mode_t mode = 0600 | (in.ConsumeIntegral<mode_t>() & 0177);
  pipc_mq_attr attr{};
  bool with_attr = in.ConsumeBool();
  if (with_attr) {
    attr.mq_flags = in.ConsumeIntegral<long>();  // ignored by open
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
      case 0:
        attr.mq_maxmsg = in.ConsumeIntegral<long>();
        attr.mq_msgsize = in.ConsumeIntegral<long>();
        break;
      case 1:
        attr.mq_maxmsg = in.ConsumeIntegralInRange<long>(-1, 0);
        attr.mq_msgsize = in.ConsumeIntegralInRange<long>(1, 64);
        break;
      default:
        attr.mq_maxmsg = in.ConsumeIntegralInRange<long>(1, 8);
        attr.mq_msgsize = in.ConsumeIntegralInRange<long>(1, 64);
        break;
    }
  }
  bool attr_valid = !with_attr || (attr.mq_maxmsg >= 1 && attr.mq_maxmsg <= (1 << 20) && attr.mq_msgsize >= 1 &&
                                   attr.mq_msgsize <= (16 << 20));
  // Valid but large attributes are not worth the memory: make them small.
  if (with_attr && attr_valid && (attr.mq_maxmsg > 8 || attr.mq_msgsize > 64)) {
    attr.mq_maxmsg = 1 + attr.mq_maxmsg % 8;
    attr.mq_msgsize = 1 + attr.mq_msgsize % 64;
  }

  // What the model expects.
  int want_errno = 0;
  std::shared_ptr<queue_model> existing = n.index >= 0 ? w.linked[std::size_t(n.index)] : nullptr;
  bool create = (oflag & O_CREAT) != 0;
  if (n.error != 0) {
    want_errno = n.error;
  } else if (access == O_ACCMODE) {
    // O_RDWR | O_WRONLY, as Linux has it: a call that creates the queue gets a
    // descriptor that neither sends nor receives; on an existing queue it is EINVAL.
    if (existing) {
      want_errno = create && (oflag & O_EXCL) != 0 ? EEXIST : EINVAL;
    } else if (!create) {
      want_errno = ENOENT;
    } else if (!attr_valid) {
      want_errno = EINVAL;
    }
  } else if (existing) {
    if (create && (oflag & O_EXCL) != 0) want_errno = EEXIST;
  } else if (!create) {
    want_errno = ENOENT;
  } else if (!attr_valid) {
    want_errno = EINVAL;
  }

  const char* name = n.null ? nullptr : n.text.c_str();
  errno = 0;
  pipc_mqd_t d = create ? pipc_mq_open(name, oflag, mode, with_attr ? &attr : nullptr) : pipc_mq_open(name, oflag);
  EXPECT_RESULT(d == -1 ? -1 : 0, want_errno == 0 ? 0 : -1, want_errno, "pipc_mq_open(" + n.text + ")");
  if (d == -1) return;

  PIPC_FUZZ_CHECK(d >= 0 && w.open.count(d) == 0, "a new descriptor is not a new value");
  if (!existing) {
    existing = std::make_shared<queue_model>();
    existing->maxmsg = with_attr ? attr.mq_maxmsg : 10;
    existing->msgsize = with_attr ? attr.mq_msgsize : 8192;
    w.linked[std::size_t(n.index)] = existing;
  }
  w.open[d] = {existing, access, (oflag & O_NONBLOCK) != 0};
  w.ever_returned.push_back(d);
}

void call_close(world& w, FuzzedDataProvider& in) {
  pipc_mqd_t d = pick_descriptor(w, in);
  auto it = w.open.find(d);
  errno = 0;
  int rc = pipc_mq_close(d);
  EXPECT_RESULT(rc, it == w.open.end() ? -1 : 0, EBADF, "pipc_mq_close");
  if (it == w.open.end()) return;
  if (it->second.queue->registrant == d) it->second.queue->registrant.reset();
  w.open.erase(it);
}

void call_unlink(world& w, FuzzedDataProvider& in) {
  name_choice n = pick_name(w, in);
  int want_errno = n.error;
  if (want_errno == 0 && !w.linked[std::size_t(n.index)]) want_errno = ENOENT;
  errno = 0;
  int rc = pipc_mq_unlink(n.null ? nullptr : n.text.c_str());
  EXPECT_RESULT(rc, want_errno == 0 ? 0 : -1, want_errno, "pipc_mq_unlink(" + n.text + ")");
  if (rc == 0) w.linked[std::size_t(n.index)].reset();
}

void call_send(world& w, FuzzedDataProvider& in) {
  pipc_mqd_t d = pick_descriptor(w, in);
  auto it = w.open.find(d);
  std::size_t size = in.ConsumeIntegralInRange<std::size_t>(0, 65);
  std::vector<char> bytes(size);
  for (char& c : bytes) c = static_cast<char>(in.ConsumeIntegral<std::uint8_t>());
  unsigned priority = in.ConsumeBool() ? in.ConsumeIntegralInRange<unsigned>(0, 3) : in.ConsumeIntegral<unsigned>() % 40000;
  bool timed = in.ConsumeBool();
  deadline_choice dl = timed ? pick_deadline(in) : deadline_choice{};
  bool null_deadline = timed && in.ConsumeIntegralInRange<int>(0, 7) == 0;

  int want_errno = 0;
  if (priority >= PIPC_MQ_PRIO_MAX) {
    want_errno = EINVAL;
  } else if (it == w.open.end() || it->second.access == O_RDONLY || it->second.access == O_ACCMODE) {
    want_errno = EBADF;
  } else if (long(size) > it->second.queue->msgsize) {
    want_errno = EMSGSIZE;
  } else if (long(it->second.queue->messages.size()) >= it->second.queue->maxmsg) {
    if (it->second.nonblocking) {
      want_errno = EAGAIN;
    } else if (!timed || null_deadline) {
      return;  // would wait without limit
    } else {
      want_errno = dl.valid ? ETIMEDOUT : EINVAL;
    }
  }
  errno = 0;
  int rc = timed ? pipc_mq_timedsend(d, bytes.data(), size, priority, null_deadline ? nullptr : &dl.ts)
                 : pipc_mq_send(d, bytes.data(), size, priority);
  if (want_errno == ETIMEDOUT && rc == -1 && errno == EINTR) return;  // as for receive
  EXPECT_RESULT(rc, want_errno == 0 ? 0 : -1, want_errno, timed ? "pipc_mq_timedsend" : "pipc_mq_send");
  if (rc != 0) return;
  queue_model& q = *it->second.queue;
  // A message arriving on an empty queue, with no receiver blocked, ends the
  // registration (SIGEV_NONE notifies nobody).
  if (q.messages.empty()) q.registrant.reset();
  q.messages.push_back({priority, std::move(bytes)});
}

void call_receive(world& w, FuzzedDataProvider& in) {
  pipc_mqd_t d = pick_descriptor(w, in);
  auto it = w.open.find(d);
  std::size_t capacity = in.ConsumeBool() ? 8192 : in.ConsumeIntegralInRange<std::size_t>(0, 80);
  std::vector<char> buffer(capacity + 1);
  bool with_priority = in.ConsumeBool();
  bool timed = in.ConsumeBool();
  deadline_choice dl = timed ? pick_deadline(in) : deadline_choice{};
  bool null_deadline = timed && in.ConsumeIntegralInRange<int>(0, 7) == 0;

  int want_errno = 0;
  if (it == w.open.end() || it->second.access == O_WRONLY || it->second.access == O_ACCMODE) {
    want_errno = EBADF;
  } else if (long(capacity) < it->second.queue->msgsize) {
    want_errno = EMSGSIZE;
  } else if (it->second.queue->messages.empty()) {
    if (it->second.nonblocking) {
      want_errno = EAGAIN;
    } else if (!timed || null_deadline) {
      return;  // would wait without limit
    } else {
      want_errno = dl.valid ? ETIMEDOUT : EINVAL;
    }
  }
  unsigned priority = 0xdeadbeef;
  errno = 0;
  ssize_t n = timed ? pipc_mq_timedreceive(d, buffer.data(), capacity, with_priority ? &priority : nullptr,
                                           null_deadline ? nullptr : &dl.ts)
                    : pipc_mq_receive(d, buffer.data(), capacity, with_priority ? &priority : nullptr);
  if (want_errno != 0) {
    // A call that waits fails with EINTR when a signal handler runs meanwhile
    // (docs/c-api.md, "EINTR"): libFuzzer's SIGALRM handler for -timeout does.
    if (want_errno == ETIMEDOUT && n == -1 && errno == EINTR) return;
    EXPECT_RESULT(n, -1, want_errno, timed ? "pipc_mq_timedreceive" : "pipc_mq_receive");
    return;
  }
  queue_model& q = *it->second.queue;
  std::size_t i = q.next();
  const message& want = q.messages[i];
  EXPECT_RESULT(n, long(want.bytes.size()), 0, "pipc_mq_receive's length");
  PIPC_FUZZ_CHECK(!with_priority || priority == want.priority, "the priority of a received message");
  PIPC_FUZZ_CHECK(std::equal(want.bytes.begin(), want.bytes.end(), buffer.begin()),
                  "a received message is not the oldest of the highest priority");
  q.messages.erase(q.messages.begin() + std::ptrdiff_t(i));
}

void check_attributes(const pipc_mq_attr& a, const descriptor_model& dm, const char* what) {
  PIPC_FUZZ_CHECK(a.mq_maxmsg == dm.queue->maxmsg && a.mq_msgsize == dm.queue->msgsize &&
                      a.mq_curmsgs == long(dm.queue->messages.size()) &&
                      a.mq_flags == (dm.nonblocking ? O_NONBLOCK : 0),
                  std::string(what) + ": attributes differ from the model");
}

void call_getattr(world& w, FuzzedDataProvider& in) {
  pipc_mqd_t d = pick_descriptor(w, in);
  auto it = w.open.find(d);
  bool null_out = in.ConsumeIntegralInRange<int>(0, 7) == 0;
  pipc_mq_attr a{};
  errno = 0;
  int rc = pipc_mq_getattr(d, null_out ? nullptr : &a);
  int want_errno = it == w.open.end() ? EBADF : null_out ? EINVAL : 0;
  EXPECT_RESULT(rc, want_errno == 0 ? 0 : -1, want_errno, "pipc_mq_getattr");
  if (rc == 0) check_attributes(a, it->second, "pipc_mq_getattr");
}

void call_setattr(world& w, FuzzedDataProvider& in) {
  pipc_mqd_t d = pick_descriptor(w, in);
  auto it = w.open.find(d);
  bool with_new = in.ConsumeIntegralInRange<int>(0, 5) != 0;
  bool with_old = in.ConsumeBool();
  pipc_mq_attr next{};
  next.mq_flags = in.ConsumeBool() ? (in.ConsumeBool() ? O_NONBLOCK : 0) : in.ConsumeIntegral<long>();
  next.mq_maxmsg = in.ConsumeIntegral<long>();  // ignored
  next.mq_msgsize = in.ConsumeIntegral<long>();
  pipc_mq_attr old{};
  int want_errno = 0;
  if (it == w.open.end()) {
    want_errno = EBADF;
  } else if (with_new && (next.mq_flags & ~long(O_NONBLOCK)) != 0) {
    want_errno = EINVAL;
  }
  errno = 0;
  int rc = pipc_mq_setattr(d, with_new ? &next : nullptr, with_old ? &old : nullptr);
  EXPECT_RESULT(rc, want_errno == 0 ? 0 : -1, want_errno, "pipc_mq_setattr");
  if (rc != 0) return;
  if (with_old) check_attributes(old, it->second, "pipc_mq_setattr's old attributes");
  if (with_new) it->second.nonblocking = (next.mq_flags & O_NONBLOCK) != 0;
}

void call_notify(world& w, FuzzedDataProvider& in) {
  pipc_mqd_t d = pick_descriptor(w, in);
  auto it = w.open.find(d);
  sigevent ev{};
  bool cancel = false;
  bool valid_kind = true;
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
    case 1:
      ev.sigev_notify = SIGEV_NONE;
      break;
    case 2:
      cancel = true;
      break;
    default:
      // Not a kind pipc takes: SIGEV_THREAD_ID (Linux's), a SIGEV_THREAD without a
      // function, or garbage.
      switch (in.ConsumeIntegralInRange<int>(0, 2)) {
        case 0:
          ev.sigev_notify = SIGEV_THREAD_ID;
          break;
        case 1:
          ev.sigev_notify = SIGEV_THREAD;
          ev.sigev_notify_function = nullptr;
          break;
        default:
          ev.sigev_notify = in.ConsumeIntegral<int>();
          if (one_of(ev.sigev_notify, {SIGEV_NONE, SIGEV_SIGNAL, SIGEV_THREAD})) ev.sigev_notify = 0x7fff;
          break;
      }
      valid_kind = false;
      break;
  }
  int want_errno = 0;
  if (it == w.open.end()) {
    want_errno = EBADF;
  } else if (!cancel && !valid_kind) {
    want_errno = EINVAL;
  } else if (!cancel && it->second.queue->registrant) {
    want_errno = EBUSY;  // one registration per queue, this process's included
  }
  errno = 0;
  int rc = pipc_mq_notify(d, cancel ? nullptr : &ev);
  EXPECT_RESULT(rc, want_errno == 0 ? 0 : -1, want_errno, cancel ? "pipc_mq_notify(NULL)" : "pipc_mq_notify");
  if (rc != 0) return;
  if (cancel) {
    it->second.queue->registrant.reset();  // this process's registration, by any descriptor
  } else {
    it->second.queue->registrant = d;
  }
}

void run(FuzzedDataProvider& in) {
  world w;
  for (std::size_t i = 0; i < name_count; ++i) {
    w.names[i] = prefix() + "." + std::to_string(i);
    pipc_mq_unlink(w.names[i].c_str());  // a previous input's, if it crashed
  }
  for (int n = 0; n < max_calls && in.remaining_bytes() > 0; ++n) {
    switch (in.ConsumeIntegralInRange<int>(0, 9)) {
      case 0:
      case 1:
        call_open(w, in);
        break;
      case 2:
        call_close(w, in);
        break;
      case 3:
        call_unlink(w, in);
        break;
      case 4:
      case 5:
        call_send(w, in);
        break;
      case 6:
      case 7:
        call_receive(w, in);
        break;
      case 8:
        if (in.ConsumeBool()) {
          call_getattr(w, in);
        } else {
          call_setattr(w, in);
        }
        break;
      default:
        call_notify(w, in);
        break;
    }
  }
  for (auto& [d, dm] : w.open) PIPC_FUZZ_CHECK(pipc_mq_close(d) == 0);
  for (std::size_t i = 0; i < name_count; ++i) {
    if (w.linked[i]) PIPC_FUZZ_CHECK(pipc_mq_unlink(w.names[i].c_str()) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  pipc::fuzz::remove_stale_leftovers("capi");
  static const std::string& p = prefix();  // first, so that it outlives the exit handler
  std::atexit([] { pipc::fuzz::remove_leftovers(p); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  run(in);
  return 0;
}
