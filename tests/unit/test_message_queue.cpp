// Tests of pipc::message_queue.
//
// Every behaviour that both backends promise is a typed test, parameterised over the
// backend: adding a backend is adding one backend_tag to `Backends`. Behaviour that only
// the kernel backend has (its /proc limits, RLIMIT_MSGQUEUE, the mqd_t as a file) is in
// the plain MessageQueueKernel suite.
//
// Tests run in parallel with others as the same user, and the kernel charges every
// queue to that user's RLIMIT_MSGQUEUE: queues here are small (<= 10 messages of
// <= 256 bytes) except where a test checks the 8 KiB cap on purpose.
#include "support.hpp"

#include <pipc/message_queue.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

using pipc::message_queue;
using pipc::mq_options;
using pipc::open_mode;
using std::chrono::steady_clock;
using std::chrono::system_clock;

// Timed waits must never end before their deadline; how much later they may end is
// generous, because the suite runs in parallel and under sanitizers.
constexpr auto kLate = 2000ms;
// How long a child or a wait may take before the test calls it a hang.
constexpr auto kChildLimit = 10000ms;
// A buffer that holds any message these tests send.
constexpr std::size_t kBufferSize = 8192;

// ---------------------------------------------------------------------------------------
// Helpers

template <pipc::backend B>
struct backend_tag {
  static constexpr pipc::backend value = B;
};

using Backends = ::testing::Types<backend_tag<pipc::backend::shm>, backend_tag<pipc::backend::kernel>>;

// ThreadSanitizer cannot follow two things of glibc's kernel queues: the thread that
// glibc's mq_notify starts for SIGEV_THREAD is created inside libc, where TSan does not
// see it, and it crashes when that thread runs instrumented code; and TSan delays a
// signal handler until the thread next enters a function it intercepts, which a thread
// blocked in mq_receive (not intercepted) never does. These tests run in the dev and
// ASan builds; under TSan they are skipped for the kernel backend only.
#define SKIP_KERNEL_UNDER_TSAN(B, why)                                     \
  do {                                                                     \
    if (pipc::test::kThreadSanitizer && (B) == pipc::backend::kernel) GTEST_SKIP() << (why);      \
  } while (0)

std::string backend_label(pipc::backend b) {
  if (b == pipc::backend::kernel) return "kernel";
  if (b == pipc::backend::shm) return "shm";
  return "backend" + std::to_string(static_cast<int>(b));
}

struct BackendNames {
  template <class Tag>
  static std::string GetName(int) {
    return backend_label(Tag::value);
  }
};

std::error_code errno_code(int e) { return {e, std::system_category()}; }

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::string in_quotes(std::string_view name) { return std::string("\"").append(name).append("\""); }

// Runs `f` and returns the std::system_error it throws, if any.
template <class F>
std::optional<std::system_error> thrown_by(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const std::system_error& e) {
    return e;
  }
  return std::nullopt;
}

// A unique queue name, unlinked at scope exit for whichever backend made it (the
// unlink_guard covers the kernel; the explicit unlink covers any backend).
class queue_name {
 public:
  queue_name(pipc::backend b, std::string_view tag)
      : backend_(b), guard_(pipc::test::unique_name(tag), pipc::name_kind::message_queue) {}
  queue_name(const queue_name&) = delete;
  queue_name& operator=(const queue_name&) = delete;
  ~queue_name() {
    std::error_code ec;
    message_queue::unlink(guard_.name(), backend_, ec);
  }
  const std::string& str() const { return guard_.name(); }

 private:
  pipc::backend backend_;
  pipc::test::unlink_guard guard_;
};

mq_options options(pipc::backend b, long max_messages, long message_size,
                   pipc::access acc = pipc::access::read_write, mode_t permissions = 0600) {
  mq_options o;
  o.backend = b;
  o.access = acc;
  o.permissions = permissions;
  o.max_messages = max_messages;
  o.message_size = message_size;
  o.nonblocking = false;
  return o;
}

std::span<const std::byte> bytes(std::string_view text) { return pipc::as_bytes(text); }

std::string to_text(std::span<const std::byte> buffer, std::size_t size) {
  return std::string(reinterpret_cast<const char*>(buffer.data()), size);
}

struct text_message {
  std::string text;
  unsigned priority = 0;
};

// Receives the next message if there is one now.
std::optional<text_message> take(message_queue& q) {
  std::vector<std::byte> buffer(kBufferSize);
  auto r = q.try_receive(buffer);
  if (!r) return std::nullopt;
  return text_message{to_text(buffer, r->size), r->priority};
}

// Receives the next message, waiting at most `limit`.
std::optional<text_message> take_within(message_queue& q, std::chrono::milliseconds limit) {
  std::vector<std::byte> buffer(kBufferSize);
  auto r = q.receive_for(buffer, limit);
  if (!r) return std::nullopt;
  return text_message{to_text(buffer, r->size), r->priority};
}

double ms_since(steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(steady_clock::now() - start).count();
}

double ms(std::chrono::nanoseconds d) { return std::chrono::duration<double, std::milli>(d).count(); }

pid_t current_tid() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

// Waits until the task whose stat file is `stat_path` sleeps (state 'S'), at most
// `limit`. Best effort: used to let a waiter reach its wait before the test acts.
bool wait_sleeping(const std::string& stat_path, std::chrono::milliseconds limit) {
  auto until = steady_clock::now() + limit;
  do {
    std::ifstream in(stat_path);
    std::string line;
    std::getline(in, line);
    auto paren = line.rfind(')');
    if (paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'S') return true;
    std::this_thread::sleep_for(1ms);
  } while (steady_clock::now() < until);
  return false;
}

std::string thread_stat(pid_t tid) { return "/proc/self/task/" + std::to_string(tid) + "/stat"; }
std::string process_stat(pid_t pid) { return "/proc/" + std::to_string(pid) + "/stat"; }

// A pipe for ordering parent and children.
class pipe_pair {
 public:
  pipe_pair() {
    if (::pipe2(fds_.data(), O_CLOEXEC) != 0) fds_ = {-1, -1};
  }
  pipe_pair(const pipe_pair&) = delete;
  pipe_pair& operator=(const pipe_pair&) = delete;
  ~pipe_pair() {
    close_read();
    close_write();
  }
  bool ok() const { return fds_[0] >= 0 && fds_[1] >= 0; }
  void close_read() {
    if (fds_[0] >= 0) ::close(fds_[0]);
    fds_[0] = -1;
  }
  void close_write() {
    if (fds_[1] >= 0) ::close(fds_[1]);
    fds_[1] = -1;
  }
  bool write_byte(char c = 'x') { return ::write(fds_[1], &c, 1) == 1; }
  // Blocks until a byte arrives (true) or every writer has closed (false).
  bool read_byte_blocking() {
    char c = 0;
    for (;;) {
      auto n = ::read(fds_[0], &c, 1);
      if (n == 1) return true;
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
  }
  // Waits at most `limit` for one byte.
  bool read_byte(std::chrono::milliseconds limit) {
    pollfd p{fds_[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return false;
    return read_byte_blocking();
  }

 private:
  std::array<int, 2> fds_{-1, -1};
};

// Children of one test: the test waits for each with wait(); any child a failed
// assertion left behind is killed and reaped at scope exit, never left blocked.
class reaper {
 public:
  reaper() = default;
  explicit reaper(pid_t pid) { add(pid); }
  reaper(const reaper&) = delete;
  reaper& operator=(const reaper&) = delete;
  ~reaper() {
    for (pid_t pid : pids_) {
      if (pid > 0) pipc::test::wait_exit(pid, 0ms);
    }
  }
  void add(pid_t pid) { pids_.push_back(pid); }
  std::size_t size() const { return pids_.size(); }
  // The exit status of the i-th child (see pipc::test::wait_exit).
  int wait(std::size_t i = 0, std::chrono::milliseconds limit = kChildLimit) {
    int code = pipc::test::wait_exit(pids_[i], limit);
    pids_[i] = -1;
    return code;
  }

 private:
  std::vector<pid_t> pids_;
};

// Blocks `signo` in the calling thread (and in threads it creates from now on) so that
// it can be taken with sigtimedwait; at scope exit drains it and restores the mask.
class blocked_signal {
 public:
  explicit blocked_signal(int signo) : signo_(signo) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo_);
    ::pthread_sigmask(SIG_BLOCK, &set, &old_);
    drain();
  }
  blocked_signal(const blocked_signal&) = delete;
  blocked_signal& operator=(const blocked_signal&) = delete;
  ~blocked_signal() {
    drain();
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  // The next `signo`, waiting at most `limit`; nullopt if none came.
  std::optional<siginfo_t> wait(std::chrono::milliseconds limit) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo_);
    auto until = steady_clock::now() + limit;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(until - steady_clock::now());
      if (left < 0ns) left = 0ns;
      timespec ts{static_cast<time_t>(left.count() / 1000000000), static_cast<long>(left.count() % 1000000000)};
      siginfo_t info{};
      int r = ::sigtimedwait(&set, &info, &ts);
      if (r == signo_) return info;
      if (r < 0 && errno == EINTR) continue;
      return std::nullopt;
    }
  }

 private:
  void drain() {
    while (wait(0ms)) {
    }
  }
  int signo_;
  sigset_t old_{};
};

// Installs a handler for `signo` without SA_RESTART, so that blocking calls see EINTR;
// restores the previous action at scope exit.
std::atomic<int> g_handled_signals{0};
void count_signal(int) { g_handled_signals.fetch_add(1, std::memory_order_relaxed); }

class interrupting_handler {
 public:
  explicit interrupting_handler(int signo) : signo_(signo) {
    struct sigaction sa {};
    sa.sa_handler = count_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART
    ::sigaction(signo_, &sa, &old_);
  }
  interrupting_handler(const interrupting_handler&) = delete;
  interrupting_handler& operator=(const interrupting_handler&) = delete;
  ~interrupting_handler() { ::sigaction(signo_, &old_, nullptr); }

 private:
  int signo_;
  struct sigaction old_ {};
};

void unblock_in_this_thread(int signo) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, signo);
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

// In a child: opens `name` write-only and sends one message. Exit code 0 on success;
// an exception exits with 99 (pipc::test::spawn).
int child_send(const std::string& name, pipc::backend b, std::string_view text, unsigned priority) {
  auto q = message_queue::open(name, open_mode::open_only, options(b, 1, 1, pipc::access::write_only));
  q.send(bytes(text), priority);
  return 0;
}

// In a child: tries to take the notification slot with notify_none. Exit code 0 when
// it got EBUSY, 1 when it registered, 2 on another error.
int child_notify_busy(const std::string& name, pipc::backend b) {
  auto q = message_queue::open(name, open_mode::open_only, options(b, 1, 1, pipc::access::read_only));
  std::error_code ec;
  q.notify_none(ec);
  if (ec == errno_code(EBUSY)) return 0;
  if (!ec) return 1;
  std::fprintf(stderr, "notify_none: %s\n", ec.message().c_str());
  return 2;
}

// In a child: registers with notify_none and exits (registration ends with the process).
// Exit code 0 when it registered, 1 on EBUSY, 2 on another error.
int child_notify_registers(const std::string& name, pipc::backend b) {
  auto q = message_queue::open(name, open_mode::open_only, options(b, 1, 1, pipc::access::read_only));
  std::error_code ec;
  q.notify_none(ec);
  if (!ec) return 0;
  if (ec == errno_code(EBUSY)) return 1;
  std::fprintf(stderr, "notify_none: %s\n", ec.message().c_str());
  return 2;
}

template <class Tag>
class MessageQueueTest : public ::testing::Test {};
TYPED_TEST_SUITE(MessageQueueTest, Backends, BackendNames);

template <class Tag>
class MessageQueueSignals : public ::testing::Test {};
TYPED_TEST_SUITE(MessageQueueSignals, Backends, BackendNames);

template <class Tag>
class MessageQueueNotify : public ::testing::Test {};
TYPED_TEST_SUITE(MessageQueueNotify, Backends, BackendNames);

template <class Tag>
class MessageQueueMultiProcess : public ::testing::Test {};
TYPED_TEST_SUITE(MessageQueueMultiProcess, Backends, BackendNames);

// ---------------------------------------------------------------------------------------
// Opening and creating

TYPED_TEST(MessageQueueTest, CreateOnlyCreatesAndOpenOnlyOpensTheSameQueue) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "create");
  auto creator = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  ASSERT_TRUE(creator.is_open());
  EXPECT_TRUE(static_cast<bool>(creator));
  EXPECT_EQ(creator.name(), name.str());
  EXPECT_EQ(creator.backend(), B);
  EXPECT_GE(creator.native_handle(), 0);

  auto opener = message_queue::open(name.str(), open_mode::open_only, options(B, 4, 64));
  ASSERT_TRUE(opener.is_open());
  creator.send(bytes("hello"), 3);
  auto m = take(opener);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "hello");
  EXPECT_EQ(m->priority, 3u);
}

TYPED_TEST(MessageQueueTest, CreateOnlyOnExistingNameFailsWithEexist) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "eexist");
  auto first = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));

  auto e = thrown_by([&] { (void)message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64)); });
  ASSERT_TRUE(e) << "create_only on an existing name did not throw";
  EXPECT_EQ(e->code(), errno_code(EEXIST)) << e->code().message();
  EXPECT_TRUE(contains(e->what(), "mq_open " + in_quotes(name.str()))) << e->what();

  std::error_code ec;
  auto second = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64), ec);
  EXPECT_EQ(ec, errno_code(EEXIST)) << ec.message();
  EXPECT_FALSE(second.is_open());
  EXPECT_EQ(second.native_handle(), -1);
}

TYPED_TEST(MessageQueueTest, OpenOnlyOnMissingNameFailsWithEnoent) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "enoent");

  auto e = thrown_by([&] { (void)message_queue::open(name.str(), open_mode::open_only, options(B, 4, 64)); });
  ASSERT_TRUE(e) << "open_only on a missing name did not throw";
  EXPECT_EQ(e->code(), errno_code(ENOENT)) << e->code().message();
  EXPECT_TRUE(contains(e->what(), "mq_open " + in_quotes(name.str()))) << e->what();

  std::error_code ec;
  auto q = message_queue::open(name.str(), open_mode::open_only, options(B, 4, 64), ec);
  EXPECT_EQ(ec, errno_code(ENOENT)) << ec.message();
  EXPECT_FALSE(q.is_open());

  // open_only did not create it as a side effect.
  std::error_code ec2;
  (void)message_queue::open(name.str(), open_mode::open_only, options(B, 4, 64), ec2);
  EXPECT_EQ(ec2, errno_code(ENOENT));
}

TYPED_TEST(MessageQueueTest, OpenOrCreateCreatesThenOpensTheExistingQueue) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "ooc");
  auto first = message_queue::open(name.str(), open_mode::open_or_create, options(B, 3, 96));
  first.send(bytes("kept"), 1);

  // Capacity options matter only when the open creates the queue.
  auto second = message_queue::open(name.str(), open_mode::open_or_create, options(B, 7, 200));
  auto attr = second.attributes();
  EXPECT_EQ(attr.max_messages, 3);
  EXPECT_EQ(attr.message_size, 96);
  EXPECT_EQ(attr.current_messages, 1);
  auto m = take(second);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "kept");
}

TYPED_TEST(MessageQueueTest, ErrorCodeOverloadsClearTheCodeOnSuccess) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "ecclear");
  std::error_code ec = std::make_error_code(std::errc::io_error);
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64), ec);
  EXPECT_FALSE(ec) << ec.message();
  ASSERT_TRUE(q.is_open());

  ec = std::make_error_code(std::errc::io_error);
  q.send(bytes("a"), 0, ec);
  EXPECT_FALSE(ec) << ec.message();

  ec = std::make_error_code(std::errc::io_error);
  auto attr = q.attributes(ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(attr.current_messages, 1);

  std::vector<std::byte> buffer(64);
  ec = std::make_error_code(std::errc::io_error);
  auto r = q.receive(buffer, ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(to_text(buffer, r.size), "a");

  // Routine outcomes (empty, full, timeout) are results, not errors.
  ec = std::make_error_code(std::errc::io_error);
  EXPECT_FALSE(q.try_receive(buffer, ec));
  EXPECT_FALSE(ec) << ec.message();
  ec = std::make_error_code(std::errc::io_error);
  EXPECT_FALSE(q.receive_for(buffer, 1ms, ec));
  EXPECT_FALSE(ec) << ec.message();
  ASSERT_TRUE(q.try_send(bytes("1"), 0));
  ASSERT_TRUE(q.try_send(bytes("2"), 0));
  ec = std::make_error_code(std::errc::io_error);
  EXPECT_FALSE(q.try_send(bytes("3"), 0, ec));
  EXPECT_FALSE(ec) << ec.message();
  ec = std::make_error_code(std::errc::io_error);
  EXPECT_FALSE(q.send_for(bytes("3"), 0, 1ms, ec));
  EXPECT_FALSE(ec) << ec.message();

  ec = std::make_error_code(std::errc::io_error);
  message_queue::unlink(name.str(), B, ec);
  EXPECT_FALSE(ec) << ec.message();
}

TYPED_TEST(MessageQueueTest, ErrorCodeOverloadsAreNoexcept) {
  message_queue q;
  std::error_code ec;
  std::vector<std::byte> storage(8);
  std::span<std::byte> buffer(storage);
  const std::span<const std::byte> message = bytes("x");
  const std::chrono::milliseconds d{1};
  const auto steady = steady_clock::now();
  const auto sys = system_clock::now();
  static_assert(noexcept(message_queue::open("/x", open_mode::open_only, mq_options{}, ec)));
  static_assert(noexcept(message_queue::unlink("/x", pipc::backend::kernel, ec)));
  static_assert(noexcept(q.send(message, 0, ec)));
  static_assert(noexcept(q.try_send(message, 0, ec)));
  static_assert(noexcept(q.send_for(message, 0, d, ec)));
  static_assert(noexcept(q.send_until(message, 0, steady, ec)));
  static_assert(noexcept(q.receive(buffer, ec)));
  static_assert(noexcept(q.try_receive(buffer, ec)));
  static_assert(noexcept(q.receive_for(buffer, d, ec)));
  static_assert(noexcept(q.receive_until(buffer, sys, ec)));
  static_assert(noexcept(q.attributes(ec)));
  static_assert(noexcept(q.set_nonblocking(true, ec)));
  static_assert(noexcept(q.notify_none(ec)));
  static_assert(noexcept(q.cancel_notification(ec)));
  static_assert(noexcept(q.close()));
  static_assert(noexcept(q.native_handle()));
  SUCCEED();
}

TYPED_TEST(MessageQueueTest, InvalidNameFailsWithEinvalNamingIt) {
  constexpr auto B = TypeParam::value;
  for (std::string bad : {"no-leading-slash", "/two/slashes", "/", ""}) {
    std::error_code ec;
    auto q = message_queue::open(bad, open_mode::open_or_create, options(B, 2, 64), ec);
    EXPECT_EQ(ec, errno_code(EINVAL)) << "name '" << bad << "': " << ec.message();
    EXPECT_FALSE(q.is_open());
  }
  auto e = thrown_by([&] {
    (void)message_queue::open("no-leading-slash", open_mode::open_or_create, options(B, 2, 64));
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), errno_code(EINVAL));
  EXPECT_TRUE(contains(e->what(), "no-leading-slash")) << e->what();

  std::error_code ec;
  auto q = message_queue::open("/" + std::string(300, 'n'), open_mode::open_or_create, options(B, 2, 64), ec);
  EXPECT_EQ(ec, errno_code(ENAMETOOLONG)) << ec.message();
  EXPECT_FALSE(q.is_open());
}

TYPED_TEST(MessageQueueTest, NonPositiveAttributesFailWithEinval) {
  constexpr auto B = TypeParam::value;
  const std::pair<long, long> bad[] = {{0, 64}, {-1, 64}, {4, 0}, {4, -1}};
  for (auto [max_messages, message_size] : bad) {
    queue_name name(B, "badattr");
    std::error_code ec;
    auto q = message_queue::open(name.str(), open_mode::create_only, options(B, max_messages, message_size), ec);
    EXPECT_EQ(ec, errno_code(EINVAL)) << "max_messages " << max_messages << ", message_size " << message_size
                                      << ": " << ec.message();
    EXPECT_FALSE(q.is_open());
    // Nothing was created under the name.
    std::error_code ec2;
    (void)message_queue::open(name.str(), open_mode::open_only, options(B, 4, 64), ec2);
    EXPECT_EQ(ec2, errno_code(ENOENT)) << ec2.message();
  }
}

TYPED_TEST(MessageQueueTest, DefaultConstructedQueueIsClosed) {
  message_queue q;
  EXPECT_FALSE(q.is_open());
  EXPECT_FALSE(static_cast<bool>(q));
  EXPECT_EQ(q.native_handle(), -1);
  q.close();
  q.close();
  EXPECT_FALSE(q.is_open());
}

TYPED_TEST(MessageQueueTest, MoveTransfersTheDescriptorAndCloseIsIdempotent) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "move");
  auto a = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  const int fd = a.native_handle();

  message_queue b(std::move(a));
  EXPECT_FALSE(a.is_open());  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_EQ(a.native_handle(), -1);
  ASSERT_TRUE(b.is_open());
  EXPECT_EQ(b.native_handle(), fd);
  EXPECT_EQ(b.name(), name.str());
  b.send(bytes("moved"), 0);

  message_queue c;
  c = std::move(b);
  ASSERT_TRUE(c.is_open());
  EXPECT_FALSE(b.is_open());  // NOLINT(bugprone-use-after-move)
  auto m = take(c);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "moved");

  // Move-assigning over an open queue closes the old one.
  auto d = message_queue::open(name.str(), open_mode::open_only, options(B, 4, 64));
  c = std::move(d);
  EXPECT_TRUE(c.is_open());

  c.close();
  EXPECT_FALSE(c.is_open());
  EXPECT_EQ(c.native_handle(), -1);
  c.close();
  EXPECT_FALSE(c.is_open());
}

// ---------------------------------------------------------------------------------------
// Attributes and non-blocking mode

TYPED_TEST(MessageQueueTest, AttributesReportCapacityAndDepth) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "attr");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 5, 128));
  auto attr = q.attributes();
  EXPECT_EQ(attr.max_messages, 5);
  EXPECT_EQ(attr.message_size, 128);
  EXPECT_EQ(attr.current_messages, 0);
  EXPECT_FALSE(attr.nonblocking);

  for (int i = 0; i < 3; ++i) q.send(bytes("m"), 0);
  EXPECT_EQ(q.attributes().current_messages, 3);

  // Another description sees the same depth.
  auto other = message_queue::open(name.str(), open_mode::open_only, options(B, 1, 1, pipc::access::read_only));
  auto other_attr = other.attributes();
  EXPECT_EQ(other_attr.current_messages, 3);
  EXPECT_EQ(other_attr.max_messages, 5);
  EXPECT_EQ(other_attr.message_size, 128);

  ASSERT_TRUE(take(other));
  EXPECT_EQ(q.attributes().current_messages, 2);
}

TYPED_TEST(MessageQueueTest, NonblockingOptionAndSetNonblocking) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "nonblock");
  auto o = options(B, 2, 64);
  o.nonblocking = true;
  auto q = message_queue::open(name.str(), open_mode::create_only, o);
  EXPECT_TRUE(q.attributes().nonblocking);

  q.set_nonblocking(false);
  EXPECT_FALSE(q.attributes().nonblocking);
  q.set_nonblocking(true);
  EXPECT_TRUE(q.attributes().nonblocking);

  std::error_code ec = std::make_error_code(std::errc::io_error);
  q.set_nonblocking(false, ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(q.attributes().nonblocking);

  // Changing the flag leaves the capacity alone.
  auto attr = q.attributes();
  EXPECT_EQ(attr.max_messages, 2);
  EXPECT_EQ(attr.message_size, 64);
}

TYPED_TEST(MessageQueueTest, NonblockingIsPerOpenDescription) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "nbdesc");
  auto a = message_queue::open(name.str(), open_mode::create_only, options(B, 1, 64));
  auto b = message_queue::open(name.str(), open_mode::open_only, options(B, 1, 64));
  a.set_nonblocking(true);
  EXPECT_TRUE(a.attributes().nonblocking);
  EXPECT_FALSE(b.attributes().nonblocking);

  // b still blocks: a timed receive on it waits rather than failing with EAGAIN.
  std::vector<std::byte> buffer(64);
  std::error_code ec;
  auto start = steady_clock::now();
  EXPECT_FALSE(b.receive_for(buffer, 50ms, ec));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_GE(ms_since(start), 50.0);
}

TYPED_TEST(MessageQueueTest, NonblockingSendOnFullFailsWithEagainWhileTrySendReturnsFalse) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "eagain");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64));
  q.set_nonblocking(true);
  q.send(bytes("1"), 0);
  q.send(bytes("2"), 0);

  auto e = thrown_by([&] { q.send(bytes("3"), 0); });
  ASSERT_TRUE(e) << "send on a full non-blocking queue did not fail";
  EXPECT_EQ(e->code(), errno_code(EAGAIN)) << e->code().message();
  EXPECT_TRUE(contains(e->what(), in_quotes(name.str()))) << e->what();

  std::error_code ec;
  q.send(bytes("3"), 0, ec);
  EXPECT_EQ(ec, errno_code(EAGAIN)) << ec.message();

  ec.clear();
  EXPECT_FALSE(q.try_send(bytes("3"), 0, ec));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(q.try_send(bytes("3"), 0));
  EXPECT_EQ(q.attributes().current_messages, 2);

  // And receive on an empty non-blocking queue.
  ASSERT_TRUE(take(q));
  ASSERT_TRUE(take(q));
  std::vector<std::byte> buffer(64);
  auto re = thrown_by([&] { (void)q.receive(buffer); });
  ASSERT_TRUE(re) << "receive on an empty non-blocking queue did not fail";
  EXPECT_EQ(re->code(), errno_code(EAGAIN)) << re->code().message();
  ec.clear();
  (void)q.receive(buffer, ec);
  EXPECT_EQ(ec, errno_code(EAGAIN)) << ec.message();
  ec.clear();
  EXPECT_FALSE(q.try_receive(buffer, ec));
  EXPECT_FALSE(ec) << ec.message();
}

TYPED_TEST(MessageQueueTest, TimedOperationsOnANonblockingDescriptionDoNotWait) {
  // POSIX: with O_NONBLOCK set, mq_timedsend/mq_timedreceive do not use the timeout.
  constexpr auto B = TypeParam::value;
  queue_name name(B, "nbtimed");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 1, 64));
  q.set_nonblocking(true);
  std::vector<std::byte> buffer(64);
  std::error_code ec;

  auto start = steady_clock::now();
  EXPECT_FALSE(q.receive_for(buffer, 1000ms, ec));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_LT(ms_since(start), 500.0) << "receive_for waited on a non-blocking description";

  q.send(bytes("fill"), 0);
  start = steady_clock::now();
  EXPECT_FALSE(q.send_until(bytes("x"), 0, steady_clock::now() + 1000ms, ec));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_LT(ms_since(start), 500.0) << "send_until waited on a non-blocking description";
}

TYPED_TEST(MessageQueueTest, OperationsOnAClosedQueueFailWithEbadf) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "closed");
  message_queue never_opened;
  auto closed = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64));
  closed.close();
  std::vector<std::byte> buffer(64);
  for (message_queue* q : {&never_opened, &closed}) {
    std::error_code ec;
    q->send(bytes("x"), 0, ec);
    EXPECT_EQ(ec, errno_code(EBADF)) << ec.message();
    ec.clear();
    EXPECT_FALSE(q->try_send(bytes("x"), 0, ec));
    EXPECT_EQ(ec, errno_code(EBADF)) << ec.message();
    ec.clear();
    (void)q->receive(buffer, ec);
    EXPECT_EQ(ec, errno_code(EBADF)) << ec.message();
    ec.clear();
    EXPECT_FALSE(q->receive_for(buffer, 10ms, ec));
    EXPECT_EQ(ec, errno_code(EBADF)) << ec.message();
    ec.clear();
    (void)q->attributes(ec);
    EXPECT_EQ(ec, errno_code(EBADF)) << ec.message();
    ec.clear();
    q->notify_none(ec);
    EXPECT_EQ(ec, errno_code(EBADF)) << ec.message();
    auto e = thrown_by([&] { q->send(bytes("x"), 0); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errno_code(EBADF));
  }
}

// ---------------------------------------------------------------------------------------
// Priorities and sizes

TYPED_TEST(MessageQueueTest, ReceivesHighestPriorityFirstAndFifoWithinAPriority) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "prio");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 10, 64));
  const std::vector<std::pair<unsigned, std::string>> sent = {
      {1, "a1"}, {5, "b1"}, {1, "a2"}, {0, "z1"}, {5, "b2"}, {pipc::max_priority, "top"}, {1, "a3"}, {0, "z2"}, {5, "b3"},
  };
  for (const auto& [prio, text] : sent) q.send(bytes(text), prio);
  EXPECT_EQ(q.attributes().current_messages, static_cast<long>(sent.size()));

  const std::vector<std::pair<unsigned, std::string>> expected = {
      {pipc::max_priority, "top"}, {5, "b1"}, {5, "b2"}, {5, "b3"}, {1, "a1"},
      {1, "a2"},                   {1, "a3"}, {0, "z1"}, {0, "z2"},
  };
  for (const auto& [prio, text] : expected) {
    auto m = take(q);
    ASSERT_TRUE(m) << "missing " << text;
    EXPECT_EQ(m->text, text);
    EXPECT_EQ(m->priority, prio) << text;
  }
  EXPECT_FALSE(take(q));
}

TYPED_TEST(MessageQueueTest, InterleavedSendAndReceiveKeepsOrder) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "interleave");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  // Exercise slot reuse: many more messages than slots, with priorities mixed.
  int next_low = 0;
  int expect_low = 0;
  for (int round = 0; round < 50; ++round) {
    q.send(bytes("low" + std::to_string(next_low++)), 2);
    q.send(bytes("low" + std::to_string(next_low++)), 2);
    q.send(bytes("high" + std::to_string(round)), 9);
    auto h = take(q);
    ASSERT_TRUE(h);
    EXPECT_EQ(h->text, "high" + std::to_string(round));
    EXPECT_EQ(h->priority, 9u);
    auto l = take(q);
    ASSERT_TRUE(l);
    EXPECT_EQ(l->text, "low" + std::to_string(expect_low++));
    auto l2 = take(q);
    ASSERT_TRUE(l2);
    EXPECT_EQ(l2->text, "low" + std::to_string(expect_low++));
  }
  EXPECT_EQ(q.attributes().current_messages, 0);
}

// Far more distinct priorities over time than the queue has slots, 0 and 32767 among
// them, messages of one priority sent far apart and among others, the queue filled and
// drained again and again: every receive returns what a model says, the oldest message
// of the highest priority.
TYPED_TEST(MessageQueueTest, ManyDistinctPrioritiesOverTimeKeepOrder) {
  constexpr auto B = TypeParam::value;
  constexpr long kDepth = 8;
  queue_name name(B, "many-prio");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, kDepth, 64));
  struct queued {
    unsigned priority;
    std::uint64_t id;
  };
  std::vector<queued> model;  // in arrival order
  std::set<unsigned> distinct;
  std::uint64_t next_id = 0, rng = 12345;
  auto random = [&] { return rng = pipc::test::mix(rng); };
  auto pick_priority = [&]() -> unsigned {
    switch (random() % 8) {
      case 0:
        return 0;
      case 1:
        return pipc::max_priority;
      case 2:
      case 3:
        return static_cast<unsigned>(1 + random() % 3);  // a few, often repeated
      default:
        return static_cast<unsigned>(random() % (pipc::max_priority + 1));
    }
  };
  for (int step = 0; step < 6000; ++step) {
    // Phases of filling and of draining, so that the queue is often full and often empty.
    const bool filling = (step / 40) % 2 == 0;
    const bool send = model.empty() ? true
                      : static_cast<long>(model.size()) == kDepth ? false
                      : filling ? random() % 4 != 0
                                : random() % 4 == 0;
    if (send) {
      const unsigned p = pick_priority();
      distinct.insert(p);
      const std::string text = std::to_string(next_id);
      ASSERT_TRUE(q.try_send(bytes(text), p)) << "full with " << model.size() << " messages";
      model.push_back({p, next_id++});
    } else {
      std::size_t best = 0;
      for (std::size_t i = 1; i < model.size(); ++i) {
        if (model[i].priority > model[best].priority) best = i;
      }
      auto m = take(q);
      ASSERT_TRUE(m) << "empty with " << model.size() << " messages";
      ASSERT_EQ(m->text, std::to_string(model[best].id)) << "step " << step;
      ASSERT_EQ(m->priority, model[best].priority);
      model.erase(model.begin() + static_cast<std::ptrdiff_t>(best));
    }
  }
  while (!model.empty()) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < model.size(); ++i) {
      if (model[i].priority > model[best].priority) best = i;
    }
    auto m = take(q);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->text, std::to_string(model[best].id));
    model.erase(model.begin() + static_cast<std::ptrdiff_t>(best));
  }
  EXPECT_FALSE(take(q));
  EXPECT_GT(distinct.size(), 1000u) << "the case meant many distinct priorities";
  EXPECT_TRUE(distinct.count(0) && distinct.count(pipc::max_priority));
}

TYPED_TEST(MessageQueueTest, PriorityAboveMaxFailsWithEinval) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "prioinval");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));

  auto e = thrown_by([&] { q.send(bytes("x"), pipc::max_priority + 1); });
  ASSERT_TRUE(e) << "priority 32768 was accepted";
  EXPECT_EQ(e->code(), errno_code(EINVAL)) << e->code().message();

  std::error_code ec;
  q.send(bytes("x"), pipc::max_priority + 1, ec);
  EXPECT_EQ(ec, errno_code(EINVAL)) << ec.message();
  ec.clear();
  EXPECT_FALSE(q.try_send(bytes("x"), 100000, ec));
  EXPECT_EQ(ec, errno_code(EINVAL)) << ec.message();
  ec.clear();
  EXPECT_FALSE(q.send_for(bytes("x"), pipc::max_priority + 1, 10ms, ec));
  EXPECT_EQ(ec, errno_code(EINVAL)) << ec.message();
  EXPECT_EQ(q.attributes().current_messages, 0);

  q.send(bytes("max"), pipc::max_priority);
  auto m = take(q);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->priority, pipc::max_priority);
}

TYPED_TEST(MessageQueueTest, MessageLongerThanMessageSizeFailsWithEmsgsize) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "emsgsize");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  const std::string too_long(65, 'x');

  auto e = thrown_by([&] { q.send(bytes(too_long), 0); });
  ASSERT_TRUE(e) << "a 65-byte message fit a 64-byte queue";
  EXPECT_EQ(e->code(), errno_code(EMSGSIZE)) << e->code().message();
  EXPECT_TRUE(contains(e->what(), in_quotes(name.str()))) << e->what();

  std::error_code ec;
  q.send(bytes(too_long), 0, ec);
  EXPECT_EQ(ec, errno_code(EMSGSIZE)) << ec.message();
  ec.clear();
  EXPECT_FALSE(q.try_send(bytes(too_long), 0, ec));
  EXPECT_EQ(ec, errno_code(EMSGSIZE)) << ec.message();
  EXPECT_EQ(q.attributes().current_messages, 0);

  // Exactly message_size fits.
  const std::string exact(64, 'y');
  q.send(bytes(exact), 0);
  auto m = take(q);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, exact);
}

TYPED_TEST(MessageQueueTest, ReceiveBufferSmallerThanMessageSizeFailsWithEmsgsize) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "smallbuf");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  q.send(bytes("short"), 0);  // the message fits, the buffer still must hold message_size

  std::vector<std::byte> small(63);
  auto e = thrown_by([&] { (void)q.receive(small); });
  ASSERT_TRUE(e) << "receive into a 63-byte buffer from a 64-byte queue did not fail";
  EXPECT_EQ(e->code(), errno_code(EMSGSIZE)) << e->code().message();

  std::error_code ec;
  (void)q.receive(small, ec);
  EXPECT_EQ(ec, errno_code(EMSGSIZE)) << ec.message();
  ec.clear();
  EXPECT_FALSE(q.try_receive(small, ec));
  EXPECT_EQ(ec, errno_code(EMSGSIZE)) << ec.message();
  ec.clear();
  EXPECT_FALSE(q.receive_for(small, 10ms, ec));
  EXPECT_EQ(ec, errno_code(EMSGSIZE)) << ec.message();

  // The message stayed in the queue.
  EXPECT_EQ(q.attributes().current_messages, 1);
  std::vector<std::byte> exact(64);
  auto r = q.receive(exact);
  EXPECT_EQ(to_text(exact, r.size), "short");
}

TYPED_TEST(MessageQueueTest, EmptyAndBinaryMessagesRoundTrip) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "binary");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 256));

  q.send(std::span<const std::byte>{}, 4);
  std::vector<std::byte> binary(256);
  for (std::size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<std::byte>(i);
  q.send(binary, 2);

  std::vector<std::byte> buffer(300, std::byte{0xEE});
  auto r = q.receive(buffer);
  EXPECT_EQ(r.size, 0u);
  EXPECT_EQ(r.priority, 4u);
  r = q.receive(buffer);
  ASSERT_EQ(r.size, binary.size());
  EXPECT_EQ(r.priority, 2u);
  EXPECT_TRUE(std::equal(binary.begin(), binary.end(), buffer.begin()));
  EXPECT_EQ(std::to_integer<int>(buffer[256]), 0xEE) << "receive wrote past the message";
}

// ---------------------------------------------------------------------------------------
// Access mode

TYPED_TEST(MessageQueueTest, SendOnReadOnlyFailsWithEbadf) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "rdonly");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64, pipc::access::read_only));

  auto e = thrown_by([&] { q.send(bytes("x"), 0); });
  ASSERT_TRUE(e) << "send on a read-only description succeeded";
  EXPECT_EQ(e->code(), errno_code(EBADF)) << e->code().message();

  std::error_code ec;
  q.send(bytes("x"), 0, ec);
  EXPECT_EQ(ec, errno_code(EBADF)) << ec.message();
  ec.clear();
  EXPECT_FALSE(q.try_send(bytes("x"), 0, ec));
  EXPECT_EQ(ec, errno_code(EBADF)) << ec.message();
  ec.clear();
  EXPECT_FALSE(q.send_for(bytes("x"), 0, 10ms, ec));
  EXPECT_EQ(ec, errno_code(EBADF)) << ec.message();

  // Reading through it works.
  auto writer = message_queue::open(name.str(), open_mode::open_only, options(B, 4, 64, pipc::access::write_only));
  writer.send(bytes("for reader"), 0);
  auto m = take(q);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "for reader");
  EXPECT_EQ(q.attributes().current_messages, 0);
}

TYPED_TEST(MessageQueueTest, ReceiveOnWriteOnlyFailsWithEbadf) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "wronly");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64, pipc::access::write_only));
  q.send(bytes("pending"), 0);  // there is something to receive, access still forbids it

  std::vector<std::byte> buffer(64);
  auto e = thrown_by([&] { (void)q.receive(buffer); });
  ASSERT_TRUE(e) << "receive on a write-only description succeeded";
  EXPECT_EQ(e->code(), errno_code(EBADF)) << e->code().message();

  std::error_code ec;
  (void)q.receive(buffer, ec);
  EXPECT_EQ(ec, errno_code(EBADF)) << ec.message();
  ec.clear();
  EXPECT_FALSE(q.try_receive(buffer, ec));
  EXPECT_EQ(ec, errno_code(EBADF)) << ec.message();
  ec.clear();
  EXPECT_FALSE(q.receive_for(buffer, 10ms, ec));
  EXPECT_EQ(ec, errno_code(EBADF)) << ec.message();
  EXPECT_EQ(q.attributes().current_messages, 1);
}

// ---------------------------------------------------------------------------------------
// try_, _for and _until

TYPED_TEST(MessageQueueTest, TrySendOnFullReturnsFalseAndTryReceiveOnEmptyReturnsNullopt) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "try");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 3, 64));
  std::vector<std::byte> buffer(64);
  EXPECT_FALSE(q.try_receive(buffer));

  EXPECT_TRUE(q.try_send(bytes("1"), 0));
  EXPECT_TRUE(q.try_send(bytes("2"), 0));
  EXPECT_TRUE(q.try_send(bytes("3"), 0));
  auto start = steady_clock::now();
  EXPECT_FALSE(q.try_send(bytes("4"), 0));
  EXPECT_LT(ms_since(start), 1000.0) << "try_send blocked";
  EXPECT_EQ(q.attributes().current_messages, 3);
  EXPECT_FALSE(q.attributes().nonblocking) << "try_send changed the description's flags";

  for (std::string expected : {"1", "2", "3"}) {
    auto r = q.try_receive(buffer);
    ASSERT_TRUE(r);
    EXPECT_EQ(to_text(buffer, r->size), expected);
  }
  start = steady_clock::now();
  EXPECT_FALSE(q.try_receive(buffer));
  EXPECT_LT(ms_since(start), 1000.0) << "try_receive blocked";
}

TYPED_TEST(MessageQueueTest, SendForTimesOutOnFullQueue) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "sendfor");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 1, 64));
  q.send(bytes("fill"), 0);

  auto start = steady_clock::now();
  EXPECT_FALSE(q.send_for(bytes("late"), 0, 100ms));
  auto elapsed = ms_since(start);
  EXPECT_GE(elapsed, 100.0);
  EXPECT_LT(elapsed, 100.0 + ms(kLate));
  EXPECT_EQ(q.attributes().current_messages, 1);
}

TYPED_TEST(MessageQueueTest, ReceiveForTimesOutOnEmptyQueue) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "recvfor");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64));
  std::vector<std::byte> buffer(64);

  auto start = steady_clock::now();
  EXPECT_FALSE(q.receive_for(buffer, 100ms));
  auto elapsed = ms_since(start);
  EXPECT_GE(elapsed, 100.0);
  EXPECT_LT(elapsed, 100.0 + ms(kLate));

  // Other duration types convert too.
  start = steady_clock::now();
  EXPECT_FALSE(q.receive_for(buffer, std::chrono::duration<double, std::milli>(60.5)));
  EXPECT_GE(ms_since(start), 60.5);
  start = steady_clock::now();
  EXPECT_FALSE(q.receive_for(buffer, 60000us));
  EXPECT_GE(ms_since(start), 60.0);
}

TYPED_TEST(MessageQueueTest, TimedReceiveReturnsAsSoonAsAMessageArrives) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "recvwake");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64));
  std::thread sender([&] {
    std::this_thread::sleep_for(30ms);
    q.send(bytes("soon"), 6);
  });
  auto start = steady_clock::now();
  auto m = take_within(q, 5000ms);
  auto elapsed = ms_since(start);
  sender.join();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "soon");
  EXPECT_EQ(m->priority, 6u);
  EXPECT_LT(elapsed, 4000.0);
}

TYPED_TEST(MessageQueueTest, TimedSendReturnsAsSoonAsRoomAppears) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "sendwake");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 1, 64));
  q.send(bytes("first"), 0);
  std::thread receiver([&] {
    std::this_thread::sleep_for(30ms);
    (void)take(q);
  });
  auto start = steady_clock::now();
  EXPECT_TRUE(q.send_for(bytes("second"), 0, 5000ms));
  auto elapsed = ms_since(start);
  receiver.join();
  EXPECT_LT(elapsed, 4000.0);
  auto m = take(q);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "second");
}

TYPED_TEST(MessageQueueTest, UntilWithSystemClockDeadline) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "untilsys");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 1, 64));
  std::vector<std::byte> buffer(64);

  auto deadline = system_clock::now() + 80ms;
  auto start = steady_clock::now();
  EXPECT_FALSE(q.receive_until(buffer, deadline));
  EXPECT_GE(system_clock::now(), deadline) << "receive_until returned before its deadline";
  EXPECT_LT(ms_since(start), 80.0 + ms(kLate));

  q.send(bytes("fill"), 0);
  deadline = system_clock::now() + 80ms;
  start = steady_clock::now();
  EXPECT_FALSE(q.send_until(bytes("x"), 0, deadline));
  EXPECT_GE(system_clock::now(), deadline) << "send_until returned before its deadline";
  EXPECT_LT(ms_since(start), 80.0 + ms(kLate));

  // With a message there, it is received before the deadline.
  auto r = q.receive_until(buffer, system_clock::now() + 5s);
  ASSERT_TRUE(r);
  EXPECT_EQ(to_text(buffer, r->size), "fill");
  EXPECT_TRUE(q.send_until(bytes("room"), 0, system_clock::now() + 5s));
}

TYPED_TEST(MessageQueueTest, UntilWithSteadyClockDeadline) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "untilsteady");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 1, 64));
  std::vector<std::byte> buffer(64);

  auto deadline = steady_clock::now() + 80ms;
  EXPECT_FALSE(q.receive_until(buffer, deadline));
  auto now = steady_clock::now();
  EXPECT_GE(now, deadline) << "receive_until returned before its deadline";
  EXPECT_LT(ms(now - deadline), ms(kLate));

  q.send(bytes("fill"), 0);
  deadline = steady_clock::now() + 80ms;
  EXPECT_FALSE(q.send_until(bytes("x"), 0, deadline));
  now = steady_clock::now();
  EXPECT_GE(now, deadline) << "send_until returned before its deadline";
  EXPECT_LT(ms(now - deadline), ms(kLate));

  auto r = q.receive_until(buffer, steady_clock::now() + 5s);
  ASSERT_TRUE(r);
  EXPECT_EQ(to_text(buffer, r->size), "fill");
}

TYPED_TEST(MessageQueueTest, PastDeadlineStillSucceedsWhenTheOperationCanProceed) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "past");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  std::vector<std::byte> buffer(64);

  EXPECT_TRUE(q.send_until(bytes("s1"), 0, steady_clock::now() - 1s));
  EXPECT_TRUE(q.send_until(bytes("s2"), 0, system_clock::now() - 1s));
  EXPECT_TRUE(q.send_for(bytes("s3"), 0, 0ms));
  EXPECT_TRUE(q.send_for(bytes("s4"), 0, -5ms));

  auto r = q.receive_until(buffer, steady_clock::now() - 1s);
  ASSERT_TRUE(r);
  EXPECT_EQ(to_text(buffer, r->size), "s1");
  r = q.receive_until(buffer, system_clock::now() - 1s);
  ASSERT_TRUE(r);
  EXPECT_EQ(to_text(buffer, r->size), "s2");
  // A deadline decades ago (negative on the clock's epoch) is still just "past".
  r = q.receive_until(buffer, system_clock::time_point{} - 24h);
  ASSERT_TRUE(r);
  EXPECT_EQ(to_text(buffer, r->size), "s3");
  r = q.receive_for(buffer, -5ms);
  ASSERT_TRUE(r);
  EXPECT_EQ(to_text(buffer, r->size), "s4");
}

TYPED_TEST(MessageQueueTest, PastDeadlineOnEmptyOrFullQueueReturnsAtOnce) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "pastnow");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 1, 64));
  std::vector<std::byte> buffer(64);

  auto start = steady_clock::now();
  std::error_code ec;
  EXPECT_FALSE(q.receive_until(buffer, steady_clock::now() - 1s, ec));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(q.receive_until(buffer, system_clock::now() - 1s, ec));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(q.receive_for(buffer, 0ms, ec));
  EXPECT_FALSE(ec) << ec.message();
  q.send(bytes("fill"), 0);
  EXPECT_FALSE(q.send_until(bytes("x"), 0, steady_clock::now() - 1s, ec));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(q.send_until(bytes("x"), 0, system_clock::now() - 1s, ec));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(q.send_for(bytes("x"), 0, 0ms, ec));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_LT(ms_since(start), 1000.0);
}

TYPED_TEST(MessageQueueTest, FarFutureDeadlineDoesNotOverflow) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "farfuture");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 1, 64));
  q.send(bytes("x"), 0);
  std::vector<std::byte> buffer(64);
  // time_point::max() and duration::max() mean "wait as long as it takes".
  EXPECT_TRUE(q.receive_until(buffer, steady_clock::time_point::max()));
  EXPECT_TRUE(q.send_until(bytes("y"), 0, system_clock::time_point::max()));
  EXPECT_TRUE(q.receive_for(buffer, std::chrono::nanoseconds::max()));
}

// ---------------------------------------------------------------------------------------
// Unlink

TYPED_TEST(MessageQueueTest, UnlinkRemovesTheNameAtOnceAndDescriptorsKeepWorking) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "unlink");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  auto reader = message_queue::open(name.str(), open_mode::open_only, options(B, 4, 64, pipc::access::read_only));
  q.send(bytes("before"), 1);

  message_queue::unlink(name.str(), B);

  std::error_code ec;
  auto gone = message_queue::open(name.str(), open_mode::open_only, options(B, 4, 64), ec);
  EXPECT_EQ(ec, errno_code(ENOENT)) << ec.message();
  EXPECT_FALSE(gone.is_open());

  q.send(bytes("after"), 1);
  EXPECT_EQ(q.attributes().current_messages, 2);
  auto m = take(reader);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "before");
  m = take(reader);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "after");
}

TYPED_TEST(MessageQueueTest, OpenAfterUnlinkMakesANewEmptyQueue) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "reuse");
  auto old_queue = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  old_queue.send(bytes("old"), 0);
  message_queue::unlink(name.str(), B);

  auto new_queue = message_queue::open(name.str(), open_mode::open_or_create, options(B, 2, 128));
  auto attr = new_queue.attributes();
  EXPECT_EQ(attr.current_messages, 0);
  EXPECT_EQ(attr.max_messages, 2);
  EXPECT_EQ(attr.message_size, 128);
  new_queue.send(bytes("new"), 0);

  EXPECT_EQ(old_queue.attributes().current_messages, 1);
  EXPECT_EQ(old_queue.attributes().max_messages, 4);
  auto m = take(old_queue);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "old");
  EXPECT_FALSE(take(old_queue));
  m = take(new_queue);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "new");
}

TYPED_TEST(MessageQueueTest, UnlinkOfMissingNameFailsWithEnoent) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "unlinkmissing");
  auto e = thrown_by([&] { message_queue::unlink(name.str(), B); });
  ASSERT_TRUE(e) << "unlink of a missing name did not fail";
  EXPECT_EQ(e->code(), errno_code(ENOENT)) << e->code().message();
  EXPECT_TRUE(contains(e->what(), in_quotes(name.str()))) << e->what();

  std::error_code ec;
  message_queue::unlink(name.str(), B, ec);
  EXPECT_EQ(ec, errno_code(ENOENT)) << ec.message();

  // Unlinking twice: the second one finds nothing.
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64));
  ec = std::make_error_code(std::errc::io_error);
  message_queue::unlink(name.str(), B, ec);
  EXPECT_FALSE(ec) << ec.message();
  message_queue::unlink(name.str(), B, ec);
  EXPECT_EQ(ec, errno_code(ENOENT)) << ec.message();
}

// ---------------------------------------------------------------------------------------
// Threads of one process

TYPED_TEST(MessageQueueTest, ConcurrentProducerThreadsDeliverEachMessageOnceInOrder) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "threads");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 200;

  std::vector<std::thread> producers;
  std::atomic<int> failures{0};
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&q, &failures, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        std::error_code ec;
        q.send(bytes(std::to_string(p) + ":" + std::to_string(i)), 0, ec);
        if (ec) failures.fetch_add(1);
      }
    });
  }
  std::vector<int> next(kProducers, 0);
  int received_count = 0;
  bool in_order = true;
  for (; received_count < kProducers * kPerProducer; ++received_count) {
    auto m = take_within(q, 5000ms);
    if (!m) break;
    auto colon = m->text.find(':');
    int p = std::stoi(m->text.substr(0, colon));
    int i = std::stoi(m->text.substr(colon + 1));
    if (p < 0 || p >= kProducers || next[static_cast<std::size_t>(p)] != i) in_order = false;
    if (p >= 0 && p < kProducers) next[static_cast<std::size_t>(p)] = i + 1;
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(received_count, kProducers * kPerProducer);
  EXPECT_TRUE(in_order) << "a producer's messages arrived out of order or twice";
  EXPECT_FALSE(take(q));
}

// ---------------------------------------------------------------------------------------
// Signals: EINTR never escapes

TYPED_TEST(MessageQueueSignals, SignalDoesNotEndABlockingReceive) {
  constexpr auto B = TypeParam::value;
  SKIP_KERNEL_UNDER_TSAN(B, "TSan defers handlers while blocked in mq_receive");
  queue_name name(B, "eintrrecv");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64));
  interrupting_handler handler(SIGUSR1);

  std::atomic<pid_t> tid{0};
  std::atomic<bool> done{false};
  std::error_code receive_ec;
  std::string payload;
  std::thread receiver([&] {
    unblock_in_this_thread(SIGUSR1);
    tid = current_tid();
    std::vector<std::byte> buffer(64);
    auto r = q.receive(buffer, receive_ec);
    if (!receive_ec) payload = to_text(buffer, r.size);
    done = true;
  });
  while (tid.load() == 0) std::this_thread::yield();
  wait_sleeping(thread_stat(tid.load()), 2000ms);

  const int before = g_handled_signals.load();
  for (int i = 0; i < 5; ++i) {
    ::pthread_kill(receiver.native_handle(), SIGUSR1);
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GE(g_handled_signals.load() - before, 1) << "the handler never ran";
  EXPECT_FALSE(done.load()) << "a signal ended the blocking receive: " << receive_ec.message();

  q.send(bytes("after signals"), 0);
  receiver.join();
  EXPECT_FALSE(receive_ec) << receive_ec.message();
  EXPECT_EQ(payload, "after signals");
}

TYPED_TEST(MessageQueueSignals, SignalDoesNotEndABlockingSend) {
  constexpr auto B = TypeParam::value;
  SKIP_KERNEL_UNDER_TSAN(B, "TSan defers handlers while blocked in mq_send");
  queue_name name(B, "eintrsend");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 1, 64));
  q.send(bytes("fill"), 0);
  interrupting_handler handler(SIGUSR1);

  std::atomic<pid_t> tid{0};
  std::atomic<bool> done{false};
  std::error_code send_ec;
  std::thread sender([&] {
    unblock_in_this_thread(SIGUSR1);
    tid = current_tid();
    q.send(bytes("blocked"), 0, send_ec);
    done = true;
  });
  while (tid.load() == 0) std::this_thread::yield();
  wait_sleeping(thread_stat(tid.load()), 2000ms);

  const int before = g_handled_signals.load();
  for (int i = 0; i < 5; ++i) {
    ::pthread_kill(sender.native_handle(), SIGUSR1);
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GE(g_handled_signals.load() - before, 1) << "the handler never ran";
  EXPECT_FALSE(done.load()) << "a signal ended the blocking send: " << send_ec.message();

  auto first = take(q);
  sender.join();
  EXPECT_FALSE(send_ec) << send_ec.message();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->text, "fill");
  auto second = take(q);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->text, "blocked");
}

TYPED_TEST(MessageQueueSignals, SignalDoesNotShortenATimedReceive) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "eintrtimed");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64));
  interrupting_handler handler(SIGUSR1);

  std::atomic<pid_t> tid{0};
  std::atomic<bool> done{false};
  std::error_code receive_ec;
  bool got_message = true;
  double elapsed = 0;
  std::thread receiver([&] {
    unblock_in_this_thread(SIGUSR1);
    tid = current_tid();
    std::vector<std::byte> buffer(64);
    auto start = steady_clock::now();
    got_message = q.receive_for(buffer, 200ms, receive_ec).has_value();
    elapsed = ms_since(start);
    done = true;
  });
  while (tid.load() == 0) std::this_thread::yield();
  const int before = g_handled_signals.load();
  for (int i = 0; i < 6 && !done.load(); ++i) {
    std::this_thread::sleep_for(20ms);
    ::pthread_kill(receiver.native_handle(), SIGUSR1);
  }
  receiver.join();
  EXPECT_GE(g_handled_signals.load() - before, 1) << "the handler never ran";
  EXPECT_FALSE(receive_ec) << receive_ec.message();
  EXPECT_FALSE(got_message);
  EXPECT_GE(elapsed, 200.0) << "a signal shortened the wait";
  EXPECT_LT(elapsed, 200.0 + ms(kLate));
}

TYPED_TEST(MessageQueueSignals, SignalInAnotherProcessDoesNotEndItsBlockingReceive) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "eintrchild");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64));
  pipe_pair ready;
  ASSERT_TRUE(ready.ok());

  pid_t child = pipc::test::spawn([&]() -> int {
    interrupting_handler handler(SIGUSR1);
    unblock_in_this_thread(SIGUSR1);
    auto rq = message_queue::open(name.str(), open_mode::open_only, options(B, 1, 1, pipc::access::read_only));
    ready.write_byte();
    std::vector<std::byte> buffer(64);
    std::error_code ec;
    auto r = rq.receive(buffer, ec);
    if (ec) {
      std::fprintf(stderr, "child receive: %s\n", ec.message().c_str());
      return 1;
    }
    if (g_handled_signals.load() == 0) return 2;  // the test did not test anything
    return to_text(buffer, r.size) == "late" ? 0 : 3;
  });
  ASSERT_GT(child, 0);
  reaper reap(child);
  ASSERT_TRUE(ready.read_byte(kChildLimit));
  wait_sleeping(process_stat(child), 2000ms);
  for (int i = 0; i < 5; ++i) {
    ::kill(child, SIGUSR1);
    std::this_thread::sleep_for(20ms);
  }
  q.send(bytes("late"), 0);
  EXPECT_EQ(reap.wait(), 0);
}

// ---------------------------------------------------------------------------------------
// Notification

TYPED_TEST(MessageQueueNotify, NotifySignalDeliversTheValueWhenAnotherProcessSends) {
  constexpr auto B = TypeParam::value;
  blocked_signal sig(SIGUSR2);
  queue_name name(B, "notifysig");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  q.notify_signal(SIGUSR2, 4242);

  EXPECT_FALSE(sig.wait(50ms)) << "notified before any message";
  pid_t child = pipc::test::spawn([&] { return child_send(name.str(), B, "ping", 1); });
  ASSERT_GT(child, 0);
  reaper reap(child);
  auto info = sig.wait(5000ms);
  EXPECT_EQ(reap.wait(), 0);
  ASSERT_TRUE(info) << "no SIGUSR2 after a message arrived on the empty queue";
  EXPECT_EQ(info->si_signo, SIGUSR2);
  EXPECT_EQ(info->si_code, SI_MESGQ);
  EXPECT_EQ(info->si_value.sival_int, 4242);
  EXPECT_EQ(info->si_pid, child) << "si_pid should be the sender";
  EXPECT_EQ(info->si_uid, ::getuid());

  auto m = take(q);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "ping");
}

TYPED_TEST(MessageQueueNotify, NotificationIsOneShot) {
  constexpr auto B = TypeParam::value;
  blocked_signal sig(SIGUSR2);
  queue_name name(B, "oneshot");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  q.notify_signal(SIGUSR2, 1);

  ASSERT_EQ(pipc::test::run_child([&] { return child_send(name.str(), B, "first", 0); }, kChildLimit), 0);
  ASSERT_TRUE(sig.wait(5000ms)) << "the first message did not notify";
  ASSERT_TRUE(take(q));

  // The registration ended with the notification: the queue is empty again, yet a new
  // message does not notify, and another process may now register.
  ASSERT_EQ(pipc::test::run_child([&] { return child_send(name.str(), B, "second", 0); }, kChildLimit), 0);
  EXPECT_FALSE(sig.wait(150ms)) << "a one-shot notification fired twice";
  ASSERT_TRUE(take(q));
  EXPECT_EQ(pipc::test::run_child([&] { return child_notify_registers(name.str(), B); }, kChildLimit), 0);

  // Registering again arms it again.
  q.notify_signal(SIGUSR2, 2);
  ASSERT_EQ(pipc::test::run_child([&] { return child_send(name.str(), B, "third", 0); }, kChildLimit), 0);
  auto info = sig.wait(5000ms);
  ASSERT_TRUE(info) << "re-registration did not notify";
  EXPECT_EQ(info->si_value.sival_int, 2);
}

TYPED_TEST(MessageQueueNotify, OnlyAnArrivalOnAnEmptyQueueNotifies) {
  constexpr auto B = TypeParam::value;
  blocked_signal sig(SIGUSR2);
  queue_name name(B, "notifyempty");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  q.send(bytes("already there"), 0);
  q.notify_signal(SIGUSR2, 7);

  ASSERT_EQ(pipc::test::run_child([&] { return child_send(name.str(), B, "second", 0); }, kChildLimit), 0);
  EXPECT_FALSE(sig.wait(150ms)) << "notified although the queue was not empty";

  // The registration is still armed: once the queue is empty, the next arrival notifies.
  ASSERT_TRUE(take(q));
  ASSERT_TRUE(take(q));
  ASSERT_EQ(pipc::test::run_child([&] { return child_send(name.str(), B, "third", 0); }, kChildLimit), 0);
  auto info = sig.wait(5000ms);
  ASSERT_TRUE(info) << "registration lost after a message arrived on a non-empty queue";
  EXPECT_EQ(info->si_value.sival_int, 7);
}

TYPED_TEST(MessageQueueNotify, NoNotificationWhileAReceiverIsBlocked) {
  constexpr auto B = TypeParam::value;
  blocked_signal sig(SIGUSR2);  // before the thread starts, so it inherits the mask
  queue_name name(B, "notifyblocked");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  q.notify_signal(SIGUSR2, 9);

  std::atomic<pid_t> tid{0};
  std::string payload;
  std::error_code receive_ec;
  std::thread receiver([&] {
    tid = current_tid();
    std::vector<std::byte> buffer(64);
    auto r = q.receive_for(buffer, 10s, receive_ec);
    if (r) payload = to_text(buffer, r->size);
  });
  while (tid.load() == 0) std::this_thread::yield();
  wait_sleeping(thread_stat(tid.load()), 2000ms);
  std::this_thread::sleep_for(20ms);

  EXPECT_EQ(pipc::test::run_child([&] { return child_send(name.str(), B, "direct", 0); }, kChildLimit), 0);
  receiver.join();
  EXPECT_FALSE(receive_ec) << receive_ec.message();
  EXPECT_EQ(payload, "direct");
  EXPECT_FALSE(sig.wait(150ms)) << "notified although a receiver was blocked";

  // Still registered: with no receiver waiting, the next arrival notifies.
  EXPECT_EQ(pipc::test::run_child([&] { return child_send(name.str(), B, "queued", 0); }, kChildLimit), 0);
  auto info = sig.wait(5000ms);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->si_value.sival_int, 9);
}

TYPED_TEST(MessageQueueNotify, SecondRegistrationFromAnotherProcessFailsWithEbusy) {
  constexpr auto B = TypeParam::value;
  blocked_signal sig(SIGUSR2);
  queue_name name(B, "ebusy");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  q.notify_signal(SIGUSR2, 1);
  EXPECT_EQ(pipc::test::run_child([&] { return child_notify_busy(name.str(), B); }, kChildLimit), 0);

  // The child's attempt did not disturb the parent's registration.
  ASSERT_EQ(pipc::test::run_child([&] { return child_send(name.str(), B, "x", 0); }, kChildLimit), 0);
  auto info = sig.wait(5000ms);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->si_value.sival_int, 1);
}

TYPED_TEST(MessageQueueNotify, SecondRegistrationInTheSameProcessFailsWithEbusy) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "ebusyself");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  auto other = message_queue::open(name.str(), open_mode::open_only, options(B, 4, 64));
  q.notify_none();

  auto e = thrown_by([&] { q.notify_none(); });
  ASSERT_TRUE(e) << "a second registration succeeded";
  EXPECT_EQ(e->code(), errno_code(EBUSY)) << e->code().message();
  EXPECT_TRUE(contains(e->what(), in_quotes(name.str()))) << e->what();
  std::error_code ec;
  other.notify_none(ec);
  EXPECT_EQ(ec, errno_code(EBUSY)) << ec.message();
}

TYPED_TEST(MessageQueueNotify, CancelNotificationLetsAnotherProcessRegister) {
  constexpr auto B = TypeParam::value;
  blocked_signal sig(SIGUSR2);
  queue_name name(B, "cancel");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  q.notify_signal(SIGUSR2, 3);
  ASSERT_EQ(pipc::test::run_child([&] { return child_notify_busy(name.str(), B); }, kChildLimit), 0);

  std::error_code ec = std::make_error_code(std::errc::io_error);
  q.cancel_notification(ec);
  EXPECT_FALSE(ec) << ec.message();
  // No signal for an arrival after the cancel.
  ASSERT_EQ(pipc::test::run_child([&] { return child_send(name.str(), B, "x", 0); }, kChildLimit), 0);
  EXPECT_FALSE(sig.wait(150ms)) << "notified after cancel_notification";
  ASSERT_TRUE(take(q));

  // The slot is free: a child registers (its registration ends when it exits) ...
  EXPECT_EQ(pipc::test::run_child([&] { return child_notify_registers(name.str(), B); }, kChildLimit), 0);
  // ... and then the parent can register again.
  q.notify_signal(SIGUSR2, 4);
  // Cancelling without a registration is not an error.
  q.cancel_notification();
  q.cancel_notification();
}

TYPED_TEST(MessageQueueNotify, CancelFromAProcessThatIsNotRegisteredChangesNothing) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "cancelother");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  q.notify_none();
  int code = pipc::test::run_child(
      [&]() -> int {
        auto cq = message_queue::open(name.str(), open_mode::open_only, options(B, 1, 1, pipc::access::read_only));
        std::error_code ec;
        cq.cancel_notification(ec);
        return ec ? 1 : 0;
      },
      kChildLimit);
  EXPECT_EQ(code, 0);
  EXPECT_EQ(pipc::test::run_child([&] { return child_notify_busy(name.str(), B); }, kChildLimit), 0)
      << "another process's cancel removed this process's registration";
}

TYPED_TEST(MessageQueueNotify, ClosingTheRegisteringDescriptorRemovesTheRegistration) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "closereg");
  auto keeper = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  auto registrant = message_queue::open(name.str(), open_mode::open_only, options(B, 4, 64));
  registrant.notify_none();
  ASSERT_EQ(pipc::test::run_child([&] { return child_notify_busy(name.str(), B); }, kChildLimit), 0);

  registrant.close();
  EXPECT_EQ(pipc::test::run_child([&] { return child_notify_registers(name.str(), B); }, kChildLimit), 0)
      << "the registration outlived the descriptor that made it";
}

TYPED_TEST(MessageQueueNotify, RegistrationEndsWhenTheRegisteringProcessExits) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "exitreg");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  // The child registers and exits without closing anything explicitly.
  ASSERT_EQ(pipc::test::run_child(
                [&]() -> int {
                  auto cq = message_queue::open(name.str(), open_mode::open_only,
                                                options(B, 1, 1, pipc::access::read_only));
                  cq.notify_none();
                  std::fflush(nullptr);
                  ::_exit(0);
                },
                kChildLimit),
            0);
  std::error_code ec;
  q.notify_none(ec);
  EXPECT_FALSE(ec) << "registration of an exited process still holds the slot: " << ec.message();
}

TYPED_TEST(MessageQueueNotify, NotifyThreadRunsTheCallbackOnAnotherThread) {
  constexpr auto B = TypeParam::value;
  SKIP_KERNEL_UNDER_TSAN(B, "glibc's SIGEV_THREAD thread is invisible to TSan");
  queue_name name(B, "notifythread");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));

  struct shared_state {
    std::promise<std::thread::id> ran;
    std::atomic<int> calls{0};
  };
  auto state = std::make_shared<shared_state>();
  q.notify_thread([state] {
    if (state->calls.fetch_add(1) == 0) state->ran.set_value(std::this_thread::get_id());
  });
  auto ran = state->ran.get_future();
  EXPECT_EQ(ran.wait_for(50ms), std::future_status::timeout) << "callback ran before any message";

  ASSERT_EQ(pipc::test::run_child([&] { return child_send(name.str(), B, "wake", 0); }, kChildLimit), 0);
  ASSERT_EQ(ran.wait_for(5000ms), std::future_status::ready) << "the callback did not run";
  EXPECT_NE(ran.get(), std::this_thread::get_id());

  // One-shot here too.
  ASSERT_TRUE(take(q));
  ASSERT_EQ(pipc::test::run_child([&] { return child_send(name.str(), B, "again", 0); }, kChildLimit), 0);
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(state->calls.load(), 1);
  // The message is not consumed by the notification.
  auto m = take(q);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "again");
}

TYPED_TEST(MessageQueueNotify, NotifyThreadHoldsTheSlotUntilItFires) {
  constexpr auto B = TypeParam::value;
  SKIP_KERNEL_UNDER_TSAN(B, "glibc's SIGEV_THREAD thread is invisible to TSan");
  queue_name name(B, "notifythreadbusy");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  struct shared_state {
    std::promise<void> fired;
    std::atomic<bool> once{false};
  };
  auto state = std::make_shared<shared_state>();
  auto future = state->fired.get_future();
  q.notify_thread([state] {
    if (!state->once.exchange(true)) state->fired.set_value();
  });
  EXPECT_EQ(pipc::test::run_child([&] { return child_notify_busy(name.str(), B); }, kChildLimit), 0);
  q.send(bytes("local"), 0);  // a send from the registrant itself notifies as well
  ASSERT_EQ(future.wait_for(5000ms), std::future_status::ready);
  EXPECT_EQ(pipc::test::run_child([&] { return child_notify_registers(name.str(), B); }, kChildLimit), 0);
}

TYPED_TEST(MessageQueueNotify, NotifyThreadWithAnEmptyCallbackFailsWithEinval) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "notifynullcb");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  std::error_code ec;
  q.notify_thread(std::function<void()>{}, ec);
  EXPECT_EQ(ec, errno_code(EINVAL)) << ec.message();
  // Nothing was registered.
  EXPECT_EQ(pipc::test::run_child([&] { return child_notify_registers(name.str(), B); }, kChildLimit), 0);
}

TYPED_TEST(MessageQueueNotify, NotifyNoneHoldsTheRegistration) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "notifynone");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  q.notify_none();
  EXPECT_EQ(pipc::test::run_child([&] { return child_notify_busy(name.str(), B); }, kChildLimit), 0);

  // Nothing to observe on arrival, but the message is delivered normally.
  ASSERT_EQ(pipc::test::run_child([&] { return child_send(name.str(), B, "quiet", 0); }, kChildLimit), 0);
  auto m = take(q);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "quiet");

  q.cancel_notification();
  EXPECT_EQ(pipc::test::run_child([&] { return child_notify_registers(name.str(), B); }, kChildLimit), 0);
}

// ---------------------------------------------------------------------------------------
// native_handle with poll and epoll

TYPED_TEST(MessageQueueMultiProcess, PollInBecomesReadyWhenAnotherProcessSends) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "pollin");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64));
  const int fd = q.native_handle();
  ASSERT_GE(fd, 0);

  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "empty queue polled readable";

  pid_t child = pipc::test::spawn([&]() -> int {
    std::this_thread::sleep_for(50ms);
    return child_send(name.str(), B, "poll me", 0);
  });
  ASSERT_GT(child, 0);
  reaper reap(child);
  p = {fd, POLLIN, 0};
  auto start = steady_clock::now();
  int n = ::poll(&p, 1, 5000);
  EXPECT_EQ(reap.wait(), 0);
  ASSERT_EQ(n, 1) << "poll did not report the queue readable";
  EXPECT_TRUE(p.revents & POLLIN);
  EXPECT_LT(ms_since(start), 4000.0);

  auto m = take(q);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "poll me");
  p = {fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "drained queue still polled readable";
}

TYPED_TEST(MessageQueueMultiProcess, PollOutIsNotReadyWhenFullAndBecomesReadyWhenDrained) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "pollout");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64));
  const int fd = q.native_handle();

  pollfd p{fd, POLLOUT, 0};
  ASSERT_EQ(::poll(&p, 1, 0), 1) << "queue with room not writable";
  EXPECT_TRUE(p.revents & POLLOUT);
  q.send(bytes("1"), 0);
  q.send(bytes("2"), 0);
  p = {fd, POLLOUT, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "full queue polled writable";
  p = {fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 1);

  pid_t child = pipc::test::spawn([&]() -> int {
    std::this_thread::sleep_for(50ms);
    auto cq = message_queue::open(name.str(), open_mode::open_only, options(B, 1, 1, pipc::access::read_only));
    std::vector<std::byte> buffer(64);
    return cq.try_receive(buffer) ? 0 : 1;
  });
  ASSERT_GT(child, 0);
  reaper reap(child);
  p = {fd, POLLOUT, 0};
  int n = ::poll(&p, 1, 5000);
  EXPECT_EQ(reap.wait(), 0);
  ASSERT_EQ(n, 1) << "poll did not report room after another process received";
  EXPECT_TRUE(p.revents & POLLOUT);
}

TYPED_TEST(MessageQueueMultiProcess, EpollReportsReadableAndWritable) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "epoll");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 1, 64));
  const int fd = q.native_handle();
  struct epoll_fd {
    int handle = ::epoll_create1(EPOLL_CLOEXEC);
    ~epoll_fd() {
      if (handle >= 0) ::close(handle);
    }
  } ep;
  ASSERT_GE(ep.handle, 0);

  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 77;
  ASSERT_EQ(::epoll_ctl(ep.handle, EPOLL_CTL_ADD, fd, &ev), 0) << std::strerror(errno);

  epoll_event out{};
  EXPECT_EQ(::epoll_wait(ep.handle, &out, 1, 0), 0);
  pid_t child = pipc::test::spawn([&]() -> int {
    std::this_thread::sleep_for(50ms);
    return child_send(name.str(), B, "e", 0);
  });
  ASSERT_GT(child, 0);
  reaper reap(child);
  int n = ::epoll_wait(ep.handle, &out, 1, 5000);
  EXPECT_EQ(reap.wait(), 0);
  ASSERT_EQ(n, 1);
  EXPECT_TRUE(out.events & EPOLLIN);
  EXPECT_EQ(out.data.u64, 77u);

  // Now full: not writable; after a receive, writable.
  ev.events = EPOLLOUT;
  ASSERT_EQ(::epoll_ctl(ep.handle, EPOLL_CTL_MOD, fd, &ev), 0);
  EXPECT_EQ(::epoll_wait(ep.handle, &out, 1, 0), 0) << "full queue reported writable";
  ASSERT_TRUE(take(q));
  n = ::epoll_wait(ep.handle, &out, 1, 5000);
  ASSERT_EQ(n, 1);
  EXPECT_TRUE(out.events & EPOLLOUT);
}

// ---------------------------------------------------------------------------------------
// Several processes

TYPED_TEST(MessageQueueMultiProcess, ChildSendsMixedPrioritiesParentReceivesInOrder) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "mpprio");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 10, 64));
  const std::vector<std::pair<unsigned, std::string>> sent = {
      {2, "c1"}, {0, "z1"}, {9, "x1"}, {2, "c2"}, {9, "x2"}, {0, "z2"}, {2, "c3"}, {32000, "top"},
  };
  int code = pipc::test::run_child(
      [&]() -> int {
        auto cq = message_queue::open(name.str(), open_mode::open_only, options(B, 1, 1, pipc::access::write_only));
        for (const auto& [prio, text] : sent) cq.send(bytes(text), prio);
        return 0;
      },
      kChildLimit);
  ASSERT_EQ(code, 0);
  EXPECT_EQ(q.attributes().current_messages, static_cast<long>(sent.size()));

  const std::vector<std::pair<unsigned, std::string>> expected = {
      {32000, "top"}, {9, "x1"}, {9, "x2"}, {2, "c1"}, {2, "c2"}, {2, "c3"}, {0, "z1"}, {0, "z2"},
  };
  for (const auto& [prio, text] : expected) {
    auto m = take(q);
    ASSERT_TRUE(m) << "missing " << text;
    EXPECT_EQ(m->text, text);
    EXPECT_EQ(m->priority, prio);
  }
  EXPECT_FALSE(take(q));
}

TYPED_TEST(MessageQueueMultiProcess, ReceiverBlockedInAnotherProcessIsWokenBySend) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "mpwake");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64));
  pipe_pair ready;
  ASSERT_TRUE(ready.ok());
  pid_t child = pipc::test::spawn([&]() -> int {
    auto cq = message_queue::open(name.str(), open_mode::open_only, options(B, 1, 1, pipc::access::read_only));
    ready.write_byte();
    std::vector<std::byte> buffer(64);
    auto r = cq.receive(buffer);
    return (to_text(buffer, r.size) == "wake up" && r.priority == 7) ? 0 : 1;
  });
  ASSERT_GT(child, 0);
  reaper reap(child);
  ASSERT_TRUE(ready.read_byte(kChildLimit));
  wait_sleeping(process_stat(child), 2000ms);
  std::this_thread::sleep_for(20ms);
  q.send(bytes("wake up"), 7);
  EXPECT_EQ(reap.wait(), 0);
  EXPECT_EQ(q.attributes().current_messages, 0);
}

TYPED_TEST(MessageQueueMultiProcess, SenderBlockedInAnotherProcessIsWokenByReceive) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "mpsendwake");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 1, 64));
  q.send(bytes("fill"), 0);
  pipe_pair ready;
  ASSERT_TRUE(ready.ok());
  pid_t child = pipc::test::spawn([&]() -> int {
    auto cq = message_queue::open(name.str(), open_mode::open_only, options(B, 1, 1, pipc::access::write_only));
    ready.write_byte();
    cq.send(bytes("from child"), 3);
    return 0;
  });
  ASSERT_GT(child, 0);
  reaper reap(child);
  ASSERT_TRUE(ready.read_byte(kChildLimit));
  wait_sleeping(process_stat(child), 2000ms);
  std::this_thread::sleep_for(20ms);
  auto first = take(q);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->text, "fill");
  EXPECT_EQ(reap.wait(), 0);
  auto second = take_within(q, 5000ms);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->text, "from child");
  EXPECT_EQ(second->priority, 3u);
}

TYPED_TEST(MessageQueueMultiProcess, InheritedDescriptorWorksAcrossFork) {
  constexpr auto B = TypeParam::value;
  queue_name name(B, "inherit");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64));
  q.send(bytes("to child"), 2);
  int code = pipc::test::run_child(
      [&]() -> int {
        auto m = take(q);
        if (!m || m->text != "to child" || m->priority != 2) return 1;
        q.send(bytes("to parent"), 5);
        return 0;
      },
      kChildLimit);
  ASSERT_EQ(code, 0);
  auto m = take(q);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "to parent");
  EXPECT_EQ(m->priority, 5u);
}

TYPED_TEST(MessageQueueMultiProcess, ExclusiveCreateRaceHasExactlyOneWinner) {
  constexpr auto B = TypeParam::value;
  constexpr int kChildren = 8;
  queue_name name(B, "race");
  pipe_pair start;
  ASSERT_TRUE(start.ok());
  reaper children;
  for (int i = 0; i < kChildren; ++i) {
    pid_t pid = pipc::test::spawn([&, i]() -> int {
      start.close_write();
      start.read_byte_blocking();  // returns at EOF: when every copy of the write end is closed
      std::error_code ec;
      auto cq = message_queue::open(name.str(), open_mode::create_only, options(B, 4, 64), ec);
      if (!ec) {
        cq.send(bytes("winner " + std::to_string(i)), 0);
        return 0;
      }
      if (ec == errno_code(EEXIST)) return 1;
      std::fprintf(stderr, "create_only: %s\n", ec.message().c_str());
      return 2;
    });
    ASSERT_GT(pid, 0);
    children.add(pid);
  }
  start.close_write();
  int winners = 0;
  int losers = 0;
  for (std::size_t i = 0; i < children.size(); ++i) {
    int code = children.wait(i);
    if (code == 0) ++winners;
    else if (code == 1) ++losers;
    else ADD_FAILURE() << "child exited with " << code;
  }
  EXPECT_EQ(winners, 1);
  EXPECT_EQ(losers, kChildren - 1);

  // The winner's queue is complete and holds its message.
  auto q = message_queue::open(name.str(), open_mode::open_only, options(B, 4, 64));
  EXPECT_EQ(q.attributes().max_messages, 4);
  EXPECT_EQ(q.attributes().message_size, 64);
  auto m = take(q);
  ASSERT_TRUE(m);
  EXPECT_TRUE(contains(m->text, "winner ")) << m->text;
  EXPECT_FALSE(take(q));
}

TYPED_TEST(MessageQueueMultiProcess, OpenOrCreateRaceYieldsOneSharedQueue) {
  constexpr auto B = TypeParam::value;
  constexpr int kChildren = 8;
  queue_name name(B, "oocrace");
  pipe_pair start;
  ASSERT_TRUE(start.ok());
  reaper children;
  for (int i = 0; i < kChildren; ++i) {
    pid_t pid = pipc::test::spawn([&, i]() -> int {
      start.close_write();
      start.read_byte_blocking();
      auto cq = message_queue::open(name.str(), open_mode::open_or_create, options(B, 10, 64));
      cq.send(bytes(std::to_string(i)), static_cast<unsigned>(i));
      return 0;
    });
    ASSERT_GT(pid, 0);
    children.add(pid);
  }
  start.close_write();
  for (std::size_t i = 0; i < children.size(); ++i) EXPECT_EQ(children.wait(i), 0);

  auto q = message_queue::open(name.str(), open_mode::open_only, options(B, 10, 64));
  EXPECT_EQ(q.attributes().current_messages, kChildren) << "racing creators made more than one queue";
  for (int i = kChildren - 1; i >= 0; --i) {
    auto m = take(q);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->text, std::to_string(i));
    EXPECT_EQ(m->priority, static_cast<unsigned>(i));
  }
}

TYPED_TEST(MessageQueueMultiProcess, ProducerProcessesAndConsumerKeepPerProducerOrder) {
  constexpr auto B = TypeParam::value;
  constexpr int kProducers = 3;
  constexpr int kPerProducer = 200;
  queue_name name(B, "mpstress");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 8, 64));
  reaper children;
  for (int p = 0; p < kProducers; ++p) {
    pid_t pid = pipc::test::spawn([&, p]() -> int {
      auto cq = message_queue::open(name.str(), open_mode::open_only, options(B, 1, 1, pipc::access::write_only));
      for (int i = 0; i < kPerProducer; ++i) cq.send(bytes(std::to_string(p) + ":" + std::to_string(i)), 1);
      return 0;
    });
    ASSERT_GT(pid, 0);
    children.add(pid);
  }
  std::vector<int> next(kProducers, 0);
  int received_count = 0;
  bool in_order = true;
  for (; received_count < kProducers * kPerProducer; ++received_count) {
    auto m = take_within(q, 5000ms);
    if (!m) break;
    auto colon = m->text.find(':');
    int p = std::stoi(m->text.substr(0, colon));
    int i = std::stoi(m->text.substr(colon + 1));
    if (p < 0 || p >= kProducers || next[static_cast<std::size_t>(p)] != i) in_order = false;
    if (p >= 0 && p < kProducers) next[static_cast<std::size_t>(p)] = i + 1;
  }
  for (std::size_t i = 0; i < children.size(); ++i) EXPECT_EQ(children.wait(i), 0);
  EXPECT_EQ(received_count, kProducers * kPerProducer);
  EXPECT_TRUE(in_order) << "a producer's messages arrived out of order or twice";
  EXPECT_FALSE(take(q));
}

// ---------------------------------------------------------------------------------------
// Permissions

TYPED_TEST(MessageQueueMultiProcess, OtherUserWithoutPermissionGetsEacces) {
  if (!pipc::test::running_as_root()) GTEST_SKIP() << "needs root to switch to nobody";
  constexpr auto B = TypeParam::value;
  queue_name name(B, "eacces");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64, pipc::access::read_write, 0600));
  int code = pipc::test::run_child(
      [&]() -> int {
        if (!pipc::test::become_nobody()) return 10;
        for (auto acc : {pipc::access::read_only, pipc::access::write_only, pipc::access::read_write}) {
          std::error_code ec;
          auto cq = message_queue::open(name.str(), open_mode::open_only, options(B, 2, 64, acc), ec);
          if (ec != errno_code(EACCES)) {
            std::fprintf(stderr, "open as nobody: %s\n", ec.message().c_str());
            return 1;
          }
        }
        // open_or_create of an existing queue checks permission the same way.
        std::error_code ec;
        (void)message_queue::open(name.str(), open_mode::open_or_create, options(B, 2, 64), ec);
        if (ec != errno_code(EACCES)) return 2;
        try {
          (void)message_queue::open(name.str(), open_mode::open_only, options(B, 2, 64));
          return 3;
        } catch (const std::system_error& e) {
          if (!contains(e.what(), "mq_open " + in_quotes(name.str()))) {
            std::fprintf(stderr, "what(): %s\n", e.what());
            return 4;
          }
        }
        return 0;
      },
      kChildLimit);
  EXPECT_EQ(code, 0);
}

TYPED_TEST(MessageQueueMultiProcess, PermissionBitsAreCheckedPerAccessMode) {
  if (!pipc::test::running_as_root()) GTEST_SKIP() << "needs root to switch to nobody";
  constexpr auto B = TypeParam::value;
  queue_name name(B, "permbits");
  // Others may read, not write.
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64, pipc::access::read_write, 0604));
  q.send(bytes("for nobody"), 1);
  int code = pipc::test::run_child(
      [&]() -> int {
        if (!pipc::test::become_nobody()) return 10;
        std::error_code ec;
        (void)message_queue::open(name.str(), open_mode::open_only, options(B, 2, 64, pipc::access::write_only), ec);
        if (ec != errno_code(EACCES)) return 1;
        (void)message_queue::open(name.str(), open_mode::open_only, options(B, 2, 64, pipc::access::read_write), ec);
        if (ec != errno_code(EACCES)) return 2;
        auto reader = message_queue::open(name.str(), open_mode::open_only, options(B, 2, 64, pipc::access::read_only), ec);
        if (B == pipc::backend::shm) {
          // The engine gives a class the queue only if its mode grants both read and
          // write (receiving writes the region): read-only is refused, and the file
          // itself is closed to the class (docs/engine.md, "Security").
          if (ec != errno_code(EACCES)) return 5;
          return ::open(("/dev/shm/pipc.mq." + name.str().substr(1)).c_str(), O_RDONLY) == -1 && errno == EACCES ? 0 : 6;
        }
        if (ec) {
          std::fprintf(stderr, "read-only open as nobody: %s\n", ec.message().c_str());
          return 3;
        }
        auto m = take(reader);
        return (m && m->text == "for nobody") ? 0 : 4;
      },
      kChildLimit);
  EXPECT_EQ(code, 0);
  EXPECT_EQ(q.attributes().current_messages, B == pipc::backend::shm ? 1 : 0);
}

// mq_unlink of another user's queue is EACCES, for the kernel's queues and the
// engine's alike (the engine's file is in the sticky /dev/shm, where unlink(2) says
// EPERM); the queue is still there afterwards.
TYPED_TEST(MessageQueueMultiProcess, UnlinkOfAnotherUsersQueueIsEacces) {
  if (!pipc::test::running_as_root()) GTEST_SKIP() << "needs root to switch to nobody";
  constexpr auto B = TypeParam::value;
  queue_name name(B, "unlinkeacces");
  auto q = message_queue::open(name.str(), open_mode::create_only, options(B, 2, 64, pipc::access::read_write, 0600));
  int code = pipc::test::run_child(
      [&]() -> int {
        if (!pipc::test::become_nobody()) return 10;
        std::error_code ec;
        message_queue::unlink(name.str(), B, ec);
        if (ec != errno_code(EACCES)) {
          std::fprintf(stderr, "unlink as nobody: %s\n", ec.message().c_str());
          return 1;
        }
        return 0;
      },
      kChildLimit);
  EXPECT_EQ(code, 0);
  std::error_code ec;
  (void)message_queue::open(name.str(), open_mode::open_only, options(B, 2, 64), ec);
  EXPECT_FALSE(ec) << "the queue is gone: " << ec.message();
}

TYPED_TEST(MessageQueueMultiProcess, CreationModeIsMaskedByTheUmask) {
  if (!pipc::test::running_as_root()) GTEST_SKIP() << "needs root to switch to nobody";
  constexpr auto B = TypeParam::value;
  queue_name masked(B, "umask077");
  queue_name open_to_all(B, "umask000");
  queue_name group_masked(B, "umask022");

  auto create_with_umask = [&](const std::string& n, mode_t mask) {
    return pipc::test::run_child(
        [&, mask]() -> int {
          ::umask(mask);
          (void)message_queue::open(n, open_mode::create_only, options(B, 2, 64, pipc::access::read_write, 0666));
          return 0;
        },
        kChildLimit);
  };
  ASSERT_EQ(create_with_umask(masked.str(), 077), 0);
  ASSERT_EQ(create_with_umask(open_to_all.str(), 0), 0);
  ASSERT_EQ(create_with_umask(group_masked.str(), 022), 0);

  // What nobody (an "other" user) may open tells the effective mode.
  auto nobody_opens = [&](const std::string& n, pipc::access acc) {
    return pipc::test::run_child(
        [&, acc]() -> int {
          if (!pipc::test::become_nobody()) return 10;
          std::error_code ec;
          (void)message_queue::open(n, open_mode::open_only, options(B, 2, 64, acc), ec);
          if (!ec) return 0;
          if (ec == errno_code(EACCES)) return 1;
          return 2;
        },
        kChildLimit);
  };
  EXPECT_EQ(nobody_opens(masked.str(), pipc::access::read_only), 1) << "umask 077 did not remove 'other' read";
  EXPECT_EQ(nobody_opens(open_to_all.str(), pipc::access::read_write), 0) << "mode 0666 with umask 0 not open to all";
  // 0644 gives others read only: enough for the kernel's queue, not for the engine's,
  // which a class may open only with both read and write.
  EXPECT_EQ(nobody_opens(group_masked.str(), pipc::access::read_only), B == pipc::backend::shm ? 1 : 0);
  EXPECT_EQ(nobody_opens(group_masked.str(), pipc::access::write_only), 1) << "umask 022 did not remove 'other' write";
}

// ---------------------------------------------------------------------------------------
// Kernel backend only

long read_proc_long(const char* path) {
  std::ifstream in(path);
  long value = -1;
  in >> value;
  return value;
}

bool has_cap_sys_resource() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("CapEff:", 0) == 0) {
      auto caps = std::stoull(line.substr(7), nullptr, 16);
      return ((caps >> 24) & 1u) != 0;  // CAP_SYS_RESOURCE
    }
  }
  return false;
}

mq_options kernel_options(long max_messages, long message_size) {
  return options(pipc::backend::kernel, max_messages, message_size);
}

TEST(MessageQueueKernel, MaxMessagesAboveMsgMaxFailsNamingTheLimit) {
  if (has_cap_sys_resource()) GTEST_SKIP() << "CAP_SYS_RESOURCE lifts msg_max";
  const long msg_max = read_proc_long("/proc/sys/fs/mqueue/msg_max");
  ASSERT_GT(msg_max, 0);
  if (msg_max > 64) GTEST_SKIP() << "msg_max " << msg_max << " too large to exceed cheaply";
  pipc::test::unlink_guard guard(pipc::test::unique_name("msgmax"), pipc::name_kind::message_queue);

  auto e = thrown_by([&] { (void)message_queue::open(guard.name(), open_mode::create_only, kernel_options(msg_max + 1, 64)); });
  ASSERT_TRUE(e) << "max_messages " << msg_max + 1 << " was accepted";
  EXPECT_EQ(e->code(), errno_code(EINVAL)) << e->code().message();
  EXPECT_TRUE(contains(e->what(), "msg_max")) << e->what();
  EXPECT_TRUE(contains(e->what(), std::to_string(msg_max))) << e->what();
  EXPECT_TRUE(contains(e->what(), "mq_open " + in_quotes(guard.name()))) << e->what();

  std::error_code ec;
  auto q = message_queue::open(guard.name(), open_mode::create_only, kernel_options(msg_max + 1, 64), ec);
  EXPECT_EQ(ec, errno_code(EINVAL));
  EXPECT_FALSE(q.is_open());

  // At the limit it works.
  auto ok = message_queue::open(guard.name(), open_mode::create_only, kernel_options(msg_max, 64));
  EXPECT_EQ(ok.attributes().max_messages, msg_max);
}

TEST(MessageQueueKernel, MessageSizeAboveMsgsizeMaxFailsNamingTheLimit) {
  if (has_cap_sys_resource()) GTEST_SKIP() << "CAP_SYS_RESOURCE lifts msgsize_max";
  const long msgsize_max = read_proc_long("/proc/sys/fs/mqueue/msgsize_max");
  ASSERT_GT(msgsize_max, 0);
  if (msgsize_max > 65536) GTEST_SKIP() << "msgsize_max " << msgsize_max << " too large to exceed cheaply";
  pipc::test::unlink_guard guard(pipc::test::unique_name("msgsizemax"), pipc::name_kind::message_queue);

  auto e = thrown_by(
      [&] { (void)message_queue::open(guard.name(), open_mode::create_only, kernel_options(2, msgsize_max + 1)); });
  ASSERT_TRUE(e) << "message_size " << msgsize_max + 1 << " was accepted";
  EXPECT_EQ(e->code(), errno_code(EINVAL)) << e->code().message();
  EXPECT_TRUE(contains(e->what(), "msgsize_max")) << e->what();
  EXPECT_TRUE(contains(e->what(), std::to_string(msgsize_max))) << e->what();

  std::error_code ec;
  auto q = message_queue::open(guard.name(), open_mode::create_only, kernel_options(2, msgsize_max + 1), ec);
  EXPECT_EQ(ec, errno_code(EINVAL));
  EXPECT_FALSE(q.is_open());
}

TEST(MessageQueueKernel, MessageSizeAtMsgsizeMaxWorks) {
  const long msgsize_max = read_proc_long("/proc/sys/fs/mqueue/msgsize_max");
  ASSERT_GT(msgsize_max, 0);
  if (msgsize_max > 65536) GTEST_SKIP() << "msgsize_max " << msgsize_max << " too large for this test";
  pipc::test::unlink_guard guard(pipc::test::unique_name("msgsizecap"), pipc::name_kind::message_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, kernel_options(2, msgsize_max));
  EXPECT_EQ(q.attributes().message_size, msgsize_max);

  std::vector<std::byte> big(static_cast<std::size_t>(msgsize_max));
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 7);
  q.send(big, 1);
  std::vector<std::byte> buffer(big.size());
  auto r = q.receive(buffer);
  EXPECT_EQ(r.size, big.size());
  EXPECT_TRUE(buffer == big);
}

TEST(MessageQueueKernel, RlimitMsgqueueFailsWithEmfileNamingTheLimit) {
  pipc::test::unlink_guard guard(pipc::test::unique_name("rlimit"), pipc::name_kind::message_queue);
  // In a child, so that lowering the limit affects nothing else.
  int code = pipc::test::run_child(
      [&]() -> int {
        rlimit lim{};
        if (::getrlimit(RLIMIT_MSGQUEUE, &lim) != 0) return 10;
        lim.rlim_cur = 512;  // less than one 10 x 256 queue needs
        if (::setrlimit(RLIMIT_MSGQUEUE, &lim) != 0) return 11;
        try {
          (void)message_queue::open(guard.name(), open_mode::create_only, kernel_options(10, 256));
          return 1;
        } catch (const std::system_error& e) {
          if (e.code() != errno_code(EMFILE)) {
            std::fprintf(stderr, "expected EMFILE: %s\n", e.what());
            return 2;
          }
          if (!contains(e.what(), "RLIMIT_MSGQUEUE") || !contains(e.what(), "mq_open " + in_quotes(guard.name()))) {
            std::fprintf(stderr, "what() does not name RLIMIT_MSGQUEUE and the queue: %s\n", e.what());
            return 3;
          }
        }
        return 0;
      },
      kChildLimit);
  EXPECT_EQ(code, 0);
}

TEST(MessageQueueKernel, CreationModeIsPermissionsMaskedByUmask) {
  pipc::test::unlink_guard guard(pipc::test::unique_name("kmode"), pipc::name_kind::message_queue);
  int code = pipc::test::run_child(
      [&]() -> int {
        ::umask(077);
        auto q = message_queue::open(guard.name(), open_mode::create_only,
                                     options(pipc::backend::kernel, 2, 64, pipc::access::read_write, 0666));
        struct stat st {};
        if (::fstat(q.native_handle(), &st) != 0) return 1;
        if ((st.st_mode & 07777) != 0600) {
          std::fprintf(stderr, "mode %o\n", static_cast<unsigned>(st.st_mode & 07777));
          return 2;
        }
        return 0;
      },
      kChildLimit);
  EXPECT_EQ(code, 0);

  // And the default permissions are 0600.
  pipc::test::unlink_guard guard2(pipc::test::unique_name("kmodedefault"), pipc::name_kind::message_queue);
  mq_options o = kernel_options(2, 64);
  o.permissions = pipc::default_permissions;
  auto q = message_queue::open(guard2.name(), open_mode::create_only, o);
  struct stat st {};
  ASSERT_EQ(::fstat(q.native_handle(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777 & ~0600u, 0u);
}

TEST(MessageQueueKernel, InteroperatesWithRawMqCalls) {
  pipc::test::unlink_guard guard(pipc::test::unique_name("raw"), pipc::name_kind::message_queue);
  mq_attr attr{};
  attr.mq_maxmsg = 4;
  attr.mq_msgsize = 64;
  mqd_t raw = ::mq_open(guard.name().c_str(), O_CREAT | O_EXCL | O_RDWR, 0600, &attr);
  ASSERT_NE(raw, static_cast<mqd_t>(-1)) << std::strerror(errno);
  struct raw_closer {
    mqd_t d;
    ~raw_closer() { ::mq_close(d); }
  } closer{raw};

  auto q = message_queue::open(guard.name(), open_mode::open_only, kernel_options(1, 1));
  auto pattr = q.attributes();
  EXPECT_EQ(pattr.max_messages, 4);
  EXPECT_EQ(pattr.message_size, 64);

  ASSERT_EQ(::mq_send(raw, "raw", 3, 11), 0);
  auto m = take(q);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->text, "raw");
  EXPECT_EQ(m->priority, 11u);

  q.send(bytes("cpp"), 12);
  char buffer[64];
  unsigned prio = 0;
  auto n = ::mq_receive(raw, buffer, sizeof buffer, &prio);
  ASSERT_EQ(n, 3);
  EXPECT_EQ(std::string(buffer, 3), "cpp");
  EXPECT_EQ(prio, 12u);

  // native_handle is the mqd_t itself.
  mq_attr seen{};
  ASSERT_EQ(::mq_getattr(static_cast<mqd_t>(q.native_handle()), &seen), 0);
  EXPECT_EQ(seen.mq_maxmsg, 4);
  q.set_nonblocking(true);
  ASSERT_EQ(::mq_getattr(static_cast<mqd_t>(q.native_handle()), &seen), 0);
  EXPECT_TRUE(seen.mq_flags & O_NONBLOCK);
}

}  // namespace
