// Tests of the C API that are easier to write in C++: the descriptor table under
// threads, closing a descriptor that another thread is blocked on, and corrupt
// regions. The C API's behaviour, one function at a time, is tested from C in
// tests/c/test_capi.c.
#include "capi_support.hpp"
#include "engine_support.hpp"
#include "support.hpp"

#include "engine/layout.hpp"

#include <pipc/c/mqueue.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

using pipc::name_kind;
using pipc::test::unique_name;
using pipc::test::unlink_guard;

constexpr pipc_mqd_t kBad = pipc::test::kBadMqd;
using pipc::test::capi_create;
using pipc::test::realtime_in;

// The file that holds engine queue `name`.
std::string region_path(const std::string& name) { return "/dev/shm/pipc.mq." + name.substr(1); }

// Runs `scribble` on a writable mapping of the first `bytes` of queue `name`'s region.
void scribble(const std::string& name, std::size_t bytes, const std::function<void(std::byte*)>& scribble_fn) {
  int fd = ::open(region_path(name).c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
  scribble_fn(static_cast<std::byte*>(p));
  ::munmap(p, bytes);
}

// ---- Descriptors are file descriptors (docs/c-api.md, "Descriptors") ----

// The poll events of `fd` now (0 when none within `wait`).
short poll_events(int fd, std::chrono::milliseconds wait = 0ms) {
  pollfd p{fd, POLLIN | POLLOUT, 0};
  int n = ::poll(&p, 1, static_cast<int>(wait.count()));
  return n == 1 ? p.revents : 0;
}
short poll_in(int fd, std::chrono::milliseconds wait) {
  pollfd p{fd, POLLIN, 0};
  int n = ::poll(&p, 1, static_cast<int>(wait.count()));
  return n == 1 ? p.revents : 0;
}

std::string fd_target(int fd) {
  char target[128] = {};
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
  return n < 0 ? std::string() : std::string(target, static_cast<std::size_t>(n));
}

TEST(CApi, DescriptorsAreCloseOnExecFileDescriptors) {
  unlink_guard guard(unique_name("capi-desc"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 2, 16);
  ASSERT_NE(q, kBad) << std::strerror(errno);
  EXPECT_EQ(::fcntl(static_cast<int>(q), F_GETFD), FD_CLOEXEC);
  EXPECT_EQ(fd_target(q), "anon_inode:[eventfd]");
  // Not yet pollable: ready both ways, so a poller calls in and learns the truth.
  EXPECT_EQ(poll_events(q), POLLIN | POLLOUT);
  EXPECT_EQ(pipc_mq_close(q), 0);
  EXPECT_EQ(::fcntl(static_cast<int>(q), F_GETFD), -1);
}

// Descriptors count against RLIMIT_NOFILE, as the kernel's do: EMFILE at the limit.
TEST(CApi, DescriptorsCountAgainstTheOpenFileLimit) {
  unlink_guard guard(unique_name("capi-nofile"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 2, 16);
  ASSERT_NE(q, kBad);
  const std::string name = guard.name();
  EXPECT_EQ(pipc::test::run_child([&]() -> int {
              // Room for exactly 8 more descriptors above the highest open now.
              int highest = ::fcntl(0, F_DUPFD, 0);
              ::close(highest);
              rlimit limit{};
              ::getrlimit(RLIMIT_NOFILE, &limit);
              limit.rlim_cur = static_cast<rlim_t>(highest + 8);
              if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return 10;
              int opened = 0;
              for (; opened < 100; ++opened) {
                if (pipc_mq_open(name.c_str(), O_RDWR) == kBad) break;
              }
              if (errno != EMFILE) return 11;
              return opened >= 1 && opened <= 8 ? 0 : 12;
            }),
            0);
  EXPECT_EQ(pipc_mq_close(q), 0);
}

// pipc_mq_pollable: poll, select and epoll see the queue's state, also when another
// process changes it.
TEST(CApi, PollableDescriptorFollowsTheQueue) {
  unlink_guard guard(unique_name("capi-poll"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 2, 16);
  ASSERT_NE(q, kBad);
  ASSERT_EQ(pipc_mq_pollable(q), 0);
  ASSERT_EQ(pipc_mq_pollable(q), 0);  // again: nothing changes
  EXPECT_EQ(poll_events(q), POLLOUT);  // empty
  ASSERT_EQ(pipc_mq_send(q, "a", 1, 0), 0);
  EXPECT_EQ(poll_events(q, 1000ms), POLLIN | POLLOUT);
  ASSERT_EQ(pipc_mq_send(q, "b", 1, 0), 0);
  EXPECT_EQ(poll_events(q), POLLIN);  // full
  char buffer[16];
  ASSERT_EQ(pipc_mq_receive(q, buffer, sizeof buffer, nullptr), 1);
  ASSERT_EQ(pipc_mq_receive(q, buffer, sizeof buffer, nullptr), 1);
  EXPECT_EQ(poll_events(q), POLLOUT);

  // Another process sends: a blocked poll, select and epoll_wait wake.
  const std::string name = guard.name();
  auto send_later = [&] {
    return pipc::test::spawn([&]() -> int {
      std::this_thread::sleep_for(100ms);
      pipc_mqd_t w = pipc_mq_open(name.c_str(), O_WRONLY);
      return w != kBad && pipc_mq_send(w, "c", 1, 0) == 0 ? 0 : 1;
    });
  };
  pid_t child = send_later();
  EXPECT_EQ(poll_in(q, 5000ms), POLLIN);
  EXPECT_EQ(pipc::test::wait_exit(child), 0);
  ASSERT_EQ(pipc_mq_receive(q, buffer, sizeof buffer, nullptr), 1);

  child = send_later();
  fd_set readable;
  FD_ZERO(&readable);
  FD_SET(q, &readable);
  timeval limit{5, 0};
  EXPECT_EQ(::select(q + 1, &readable, nullptr, nullptr, &limit), 1);
  EXPECT_TRUE(FD_ISSET(q, &readable));
  EXPECT_EQ(pipc::test::wait_exit(child), 0);
  ASSERT_EQ(pipc_mq_receive(q, buffer, sizeof buffer, nullptr), 1);

  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  ASSERT_GE(ep, 0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = q;
  ASSERT_EQ(::epoll_ctl(ep, EPOLL_CTL_ADD, q, &ev), 0);
  child = send_later();
  epoll_event got{};
  EXPECT_EQ(::epoll_wait(ep, &got, 1, 5000), 1);
  EXPECT_EQ(got.data.fd, q);
  EXPECT_EQ(pipc::test::wait_exit(child), 0);
  ::close(ep);
  EXPECT_EQ(pipc_mq_close(q), 0);
}

// A caller that does not know a descriptor is a queue closes it (or dup2s over it):
// pipc neither fails nor touches the file that then gets the number.
TEST(CApi, CloseBehindPipcsBackDoesNoHarm) {
  unlink_guard guard(unique_name("capi-behind"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 4, 16);
  ASSERT_NE(q, kBad);
  ASSERT_EQ(pipc_mq_pollable(q), 0);  // its helper writes through its own copy
  ASSERT_EQ(::close(q), 0);
  // The number goes to a file of the caller's; pipc_mq_close must leave it open.
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  ASSERT_EQ(pipe_fds[0], q) << "the kernel gives the lowest free number";
  ASSERT_EQ(pipc_mq_send(q, "m", 1, 0), 0);  // the stale descriptor still reaches the queue
  EXPECT_EQ(pipc_mq_close(q), 0);
  EXPECT_EQ(::fcntl(pipe_fds[0], F_GETFD), 0) << "pipc closed the caller's pipe";
  ASSERT_EQ(::write(pipe_fds[1], "x", 1), 1);
  char c = 0;
  EXPECT_EQ(::read(pipe_fds[0], &c, 1), 1);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);

  // Closed behind pipc's back, and the kernel hands the number to pipc's next open: the
  // stale descriptor is retired, the new one works.
  pipc_mqd_t first = pipc_mq_open(guard.name().c_str(), O_RDWR);
  ASSERT_NE(first, kBad);
  ASSERT_EQ(::close(first), 0);
  pipc_mqd_t second = pipc_mq_open(guard.name().c_str(), O_RDWR);
  ASSERT_EQ(second, first);
  char buffer[16];
  EXPECT_EQ(pipc_mq_receive(second, buffer, sizeof buffer, nullptr), 1);
  EXPECT_EQ(pipc_mq_close(second), 0);
  EXPECT_EQ(pipc_mq_close(second), -1);
}

// The same while a call still runs on the stale descriptor: the new descriptor gets
// another number, and the running call finishes on its queue.
TEST(CApi, NumberOfAStaleDescriptorInUseIsNotReused) {
  unlink_guard guard(unique_name("capi-stale"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 4, 16);
  ASSERT_NE(q, kBad);
  std::atomic<int> received{-2};
  std::thread blocked([&] {
    char buffer[16];
    received.store(static_cast<int>(pipc_mq_receive(q, buffer, sizeof buffer, nullptr)));
  });
  std::this_thread::sleep_for(100ms);
  ASSERT_EQ(::close(q), 0);
  pipc_mqd_t fresh = pipc_mq_open(guard.name().c_str(), O_RDWR);
  ASSERT_NE(fresh, kBad);
  EXPECT_NE(fresh, q);
  EXPECT_EQ(fd_target(fresh), "anon_inode:[eventfd]");
  ASSERT_EQ(pipc_mq_send(fresh, "m", 1, 0), 0);
  blocked.join();
  EXPECT_EQ(received.load(), 1);
  EXPECT_EQ(pipc_mq_close(fresh), 0);
}

// Many threads open, use and close descriptors of one queue, while others call
// functions on descriptors that the first ones may be closing at that very moment.
// Every call must either work or fail with EBADF; nothing may crash (run under ASan
// and TSan for the full effect), and no message may be lost.
TEST(CApi, DescriptorTableIsThreadSafe) {
  unlink_guard guard(unique_name("capi-threads"), name_kind::engine_queue);
  pipc_mqd_t keeper = capi_create(guard.name(), 64, 32);
  ASSERT_NE(keeper, kBad) << std::strerror(errno);

  constexpr int kWorkers = 6;
  constexpr int kRounds = 300;
  std::atomic<pipc_mqd_t> recent[16];
  for (auto& r : recent) r.store(kBad);
  std::atomic<bool> stop{false};
  std::atomic<long> sent{0}, received{0}, unexpected{0};

  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      char buf[32];
      for (int i = 0; i < kRounds; ++i) {
        pipc_mqd_t q = pipc_mq_open(guard.name().c_str(), O_RDWR | O_NONBLOCK);
        if (q == kBad) {
          unexpected.fetch_add(1);
          continue;
        }
        recent[(w * kRounds + i) % 16].store(q);
        if (pipc_mq_send(q, "m", 1, static_cast<unsigned>(i % 4)) == 0) {
          sent.fetch_add(1);
        } else if (errno != EAGAIN) {
          unexpected.fetch_add(1);
        }
        if (pipc_mq_receive(q, buf, sizeof buf, nullptr) == 1) {
          received.fetch_add(1);
        } else if (errno != EAGAIN) {
          unexpected.fetch_add(1);
        }
        pipc_mq_attr attr{};
        if (pipc_mq_getattr(q, &attr) != 0 || attr.mq_maxmsg != 64) unexpected.fetch_add(1);
        if (pipc_mq_close(q) != 0) unexpected.fetch_add(1);
      }
    });
  }
  // Users of descriptors that other threads own and close at any moment.
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::minstd_rand rng(static_cast<unsigned>(t + 1));
      char buf[32];
      while (!stop.load()) {
        pipc_mqd_t q = recent[rng() % 16].load();
        pipc_mq_attr attr{};
        int r = 0;
        switch (rng() % 3) {
          case 0:
            r = pipc_mq_getattr(q, &attr);
            break;
          case 1:
            r = pipc_mq_send(q, "x", 1, 0);
            if (r == 0) sent.fetch_add(1);
            break;
          default:
            r = static_cast<int>(pipc_mq_receive(q, buf, sizeof buf, nullptr));
            if (r == 1) received.fetch_add(1);
            break;
        }
        if (r < 0 && errno != EBADF && errno != EAGAIN) unexpected.fetch_add(1);
      }
    });
  }
  for (int w = 0; w < kWorkers; ++w) threads[static_cast<std::size_t>(w)].join();
  stop.store(true);
  for (std::size_t i = kWorkers; i < threads.size(); ++i) threads[i].join();

  EXPECT_EQ(unexpected.load(), 0);
  pipc_mq_attr attr{};
  ASSERT_EQ(pipc_mq_getattr(keeper, &attr), 0);
  EXPECT_EQ(sent.load() - received.load(), attr.mq_curmsgs);
  EXPECT_EQ(pipc_mq_close(keeper), 0);
}

// Closing a descriptor that another thread is blocked on: the descriptor is closed for
// new calls at once; the blocked call goes on and completes when a message arrives.
TEST(CApi, CloseWhileAnotherThreadIsBlockedInReceive) {
  unlink_guard guard(unique_name("capi-closeblocked"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 4, 16);
  ASSERT_NE(q, kBad);
  std::atomic<bool> entered{false};
  ssize_t got = -2;
  int got_errno = 0;
  char buf[16] = {};
  std::thread receiver([&] {
    entered.store(true);
    got = pipc_mq_receive(q, buf, sizeof buf, nullptr);
    got_errno = errno;
  });
  while (!entered.load()) std::this_thread::yield();
  std::this_thread::sleep_for(50ms);  // let it block
  EXPECT_EQ(pipc_mq_close(q), 0);
  pipc_mq_attr attr{};
  errno = 0;
  EXPECT_EQ(pipc_mq_getattr(q, &attr), -1);
  EXPECT_EQ(errno, EBADF);

  pipc_mqd_t sender = pipc_mq_open(guard.name().c_str(), O_WRONLY);
  ASSERT_NE(sender, kBad);
  ASSERT_EQ(pipc_mq_send(sender, "late", 4, 0), 0);
  receiver.join();
  // It completed with the message (EBADF would be acceptable too; a crash is not).
  EXPECT_TRUE(got == 4 || (got == -1 && got_errno == EBADF)) << got << " " << got_errno;
  if (got == 4) {
    EXPECT_EQ(std::string(buf, 4), "late");
  }
  EXPECT_EQ(pipc_mq_close(sender), 0);
}

TEST(CApi, CloseWhileAnotherThreadIsBlockedInTimedReceive) {
  unlink_guard guard(unique_name("capi-closetimed"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 4, 16);
  ASSERT_NE(q, kBad);
  std::atomic<bool> entered{false};
  ssize_t got = -2;
  int got_errno = 0;
  std::thread receiver([&] {
    char buf[16];
    timespec t = realtime_in(300ms);
    entered.store(true);
    got = pipc_mq_timedreceive(q, buf, sizeof buf, nullptr, &t);
    got_errno = errno;
  });
  while (!entered.load()) std::this_thread::yield();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(pipc_mq_close(q), 0);
  receiver.join();
  EXPECT_EQ(got, -1);
  EXPECT_TRUE(got_errno == ETIMEDOUT || got_errno == EBADF) << got_errno;
}

// A thread notification whose descriptor is closed before it fires never runs.
TEST(CApi, ThreadNotificationDiesWithItsDescriptor) {
  unlink_guard guard(unique_name("capi-notifyclose"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 4, 16);
  ASSERT_NE(q, kBad);
  static std::atomic<int> calls{0};
  calls.store(0);
  sigevent ev{};
  ev.sigev_notify = SIGEV_THREAD;
  ev.sigev_notify_function = [](sigval) { calls.fetch_add(1); };
  ASSERT_EQ(pipc_mq_notify(q, &ev), 0);
  ASSERT_EQ(pipc_mq_close(q), 0);
  pipc_mqd_t other = pipc_mq_open(guard.name().c_str(), O_RDWR);
  ASSERT_NE(other, kBad);
  ASSERT_EQ(pipc_mq_send(other, "a", 1, 0), 0);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(calls.load(), 0);
  // And the queue is free for a new registration.
  EXPECT_EQ(pipc_mq_notify(other, &ev), 0);
  EXPECT_EQ(pipc_mq_close(other), 0);
}

TEST(CApi, ForeignRegionIsEbadmsg) {
  unlink_guard guard(unique_name("capi-magic"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 4, 16);
  ASSERT_NE(q, kBad);
  ASSERT_EQ(pipc_mq_close(q), 0);
  scribble(guard.name(), pipc::engine::header_size, [](std::byte* p) { std::memset(p, 0x5a, 8); });
  errno = 0;
  EXPECT_EQ(pipc_mq_open(guard.name().c_str(), O_RDWR), kBad);
  EXPECT_EQ(errno, EBADMSG);
  // O_CREAT without O_EXCL finds the name taken by something that is not a queue.
  errno = 0;
  EXPECT_EQ(pipc_mq_open(guard.name().c_str(), O_RDWR | O_CREAT, 0600, nullptr), kBad);
  EXPECT_EQ(errno, EBADMSG);
}

TEST(CApi, OtherLayoutVersionIsEbadmsg) {
  unlink_guard guard(unique_name("capi-version"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 4, 16);
  ASSERT_NE(q, kBad);
  ASSERT_EQ(pipc_mq_close(q), 0);
  scribble(guard.name(), pipc::engine::header_size, [](std::byte* p) {
    std::uint32_t version = pipc::engine::layout_version + 1;
    std::memcpy(p + offsetof(pipc::engine::header, version), &version, sizeof version);
  });
  errno = 0;
  EXPECT_EQ(pipc_mq_open(guard.name().c_str(), O_RDWR), kBad);
  EXPECT_EQ(errno, EBADMSG);
}

TEST(CApi, CorruptStateOfAnOpenQueueIsEbadmsg) {
  unlink_guard guard(unique_name("capi-corrupt"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 4, 16, O_NONBLOCK);
  ASSERT_NE(q, kBad);
  ASSERT_EQ(pipc_mq_send(q, "a", 1, 0), 0);
  // Slot numbers beyond the capacity where each side takes its next slot: in the free
  // ring's entry at free_head (position 1, after one send) for a sender, in the ready
  // ring's entry at ready_head (position 0) for a receiver. The entries keep valid tags
  // (position + 1), so the engine reads the slot numbers and must refuse them.
  namespace eng = pipc::engine;
  const eng::geometry geo = eng::compute_geometry(4, 16);
  scribble(guard.name(), geo.slots_offset, [&](std::byte* p) {
    const std::uint64_t free_entry = eng::ring_entry(1, 0xffff'fff0u);
    const std::uint64_t ready_entry = eng::ring_entry(0, 0xffff'fff0u);
    std::memcpy(p + geo.free_ring_offset + 1 * sizeof free_entry, &free_entry, sizeof free_entry);
    std::memcpy(p + geo.ready_ring_offset, &ready_entry, sizeof ready_entry);
  });
  char buf[16];
  errno = 0;
  EXPECT_EQ(pipc_mq_send(q, "b", 1, 0), -1);
  EXPECT_EQ(errno, EBADMSG);
  errno = 0;
  EXPECT_EQ(pipc_mq_receive(q, buf, sizeof buf, nullptr), -1);
  EXPECT_EQ(errno, EBADMSG);
  EXPECT_EQ(pipc_mq_close(q), 0);
}

}  // namespace

// The compat header, from C++: the POSIX names become pipc's. Last in the file,
// because its macros rename mq_* for everything after it.
#include <pipc/compat/mqueue.h>

namespace {

TEST(CApi, CompatHeaderWorksFromCxx) {
  unlink_guard guard(unique_name("capi-compat"), name_kind::engine_queue);
  mq_attr attr{};
  attr.mq_maxmsg = 50;  // beyond the kernel's default msg_max
  attr.mq_msgsize = 16;
  mqd_t q = mq_open(guard.name().c_str(), O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
  ASSERT_NE(q, static_cast<mqd_t>(-1)) << std::strerror(errno);
  ASSERT_EQ(mq_send(q, "hi", 2, 3), 0);
  char buf[16];
  unsigned prio = 0;
  EXPECT_EQ(mq_receive(q, buf, sizeof buf, &prio), 2);
  EXPECT_EQ(prio, 3u);
  // The queue is the engine's: pipc_mq_* sees it under the same descriptor.
  pipc_mq_attr seen{};
  EXPECT_EQ(pipc_mq_getattr(q, &seen), 0);
  EXPECT_EQ(seen.mq_maxmsg, 50);
  EXPECT_EQ(mq_close(q), 0);
  EXPECT_EQ(mq_unlink(guard.name().c_str()), 0);
}

}  // namespace

// ---- Signals and cancellation where the C API waits for a lock (sys/interrupt.hpp).
// tests/c/interrupt_program.c covers the waits for a message or for room; here a lock
// holder that never lets go (as a stopped process would) keeps the call waiting.

namespace interrupt {

// GCC 12's AddressSanitizer runtime aborts when a thread unwinds out of a signal
// handler through instrumented frames with cleanups, as an asynchronous cancellation
// of a blocked thread does (tests/c/interrupt_program.c, CAN_UNWIND_FROM_SIGNALS).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool can_unwind_from_signals = false;
#else
constexpr bool can_unwind_from_signals = true;
#endif

std::atomic<int> usr1_count{0};
void on_usr1(int) { usr1_count.fetch_add(1); }

// Holds queue `name`'s send_lock on a thread of its own until destroyed: a live
// holder, as a stopped process is.
class lock_holder {
 public:
  explicit lock_holder(const std::string& name) : region_(name) {
    thread_ = std::thread([this] {
      (void)region_.take_lock(pipc::test::raw_region::side::send);
      taken_.store(true);
      while (!release_.load()) std::this_thread::sleep_for(1ms);
      region_.release_lock(pipc::test::raw_region::side::send);
    });
    while (!taken_.load()) std::this_thread::sleep_for(1ms);
  }
  ~lock_holder() {
    release_.store(true);
    thread_.join();
  }

 private:
  pipc::test::raw_region region_;
  std::atomic<bool> taken_{false};
  std::atomic<bool> release_{false};
  std::thread thread_;
};

}  // namespace interrupt

TEST(CApiInterrupt, SignalInterruptsAWaitForALockThatIsNeverReleased) {
  unlink_guard guard(unique_name("capi-lock-eintr"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 4, 16);
  ASSERT_NE(q, kBad);
  struct sigaction sa {};
  sa.sa_handler = interrupt::on_usr1;  // no SA_RESTART
  struct sigaction old {};
  ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);
  interrupt::usr1_count.store(0);
  {
    interrupt::lock_holder holder(guard.name());
    const pthread_t me = ::pthread_self();
    std::thread signaller([me] {
      std::this_thread::sleep_for(200ms);
      ::pthread_kill(me, SIGUSR1);
    });
    sigset_t before, after;
    ::pthread_sigmask(SIG_SETMASK, nullptr, &before);
    auto start = std::chrono::steady_clock::now();
    errno = 0;
    EXPECT_EQ(pipc_mq_send(q, "x", 1, 0), -1);
    EXPECT_EQ(errno, EINTR);
    auto waited = std::chrono::steady_clock::now() - start;
    signaller.join();
    ::pthread_sigmask(SIG_SETMASK, nullptr, &after);
    EXPECT_EQ(interrupt::usr1_count.load(), 1);
    EXPECT_GE(waited, 190ms);
    EXPECT_LT(waited, 2s);
    for (int signo = 1; signo < NSIG; ++signo) {
      EXPECT_EQ(sigismember(&before, signo), sigismember(&after, signo)) << "signal " << signo;
    }
  }
  // The holder let go: the queue works, and the interrupted send left nothing behind.
  pipc_mq_attr attr{};
  ASSERT_EQ(pipc_mq_getattr(q, &attr), 0);
  EXPECT_EQ(attr.mq_curmsgs, 0);
  EXPECT_EQ(pipc_mq_send(q, "y", 1, 0), 0);
  ::sigaction(SIGUSR1, &old, nullptr);
  EXPECT_EQ(pipc_mq_close(q), 0);
}

namespace interrupt {
struct blocked_call {
  pipc_mqd_t q;
  bool receive;
  std::atomic<bool> started{false};
};
void* call_until_cancelled(void* arg) {
  auto* call = static_cast<blocked_call*>(arg);
  call->started.store(true);
  char buffer[16];
  if (call->receive) {
    (void)pipc_mq_receive(call->q, buffer, sizeof buffer, nullptr);
  } else {
    (void)pipc_mq_send(call->q, "x", 1, 0);
  }
  return nullptr;
}
// Cancels a thread blocked in `call`; true when it ended cancelled within a second.
bool cancel_blocked(blocked_call& call) {
  pthread_t t;
  if (::pthread_create(&t, nullptr, call_until_cancelled, &call) != 0) return false;
  while (!call.started.load()) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(100ms);
  auto start = std::chrono::steady_clock::now();
  ::pthread_cancel(t);
  void* result = nullptr;
  ::pthread_join(t, &result);
  return result == PTHREAD_CANCELED && std::chrono::steady_clock::now() - start < 1s;
}
}  // namespace interrupt

TEST(CApiInterrupt, CancellationActsInAWaitForALockThatIsNeverReleased) {
  if (!interrupt::can_unwind_from_signals) GTEST_SKIP() << "the ASan runtime cannot unwind from a signal handler";
  unlink_guard guard(unique_name("capi-lock-cancel"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 4, 16);
  ASSERT_NE(q, kBad);
  {
    interrupt::lock_holder holder(guard.name());
    interrupt::blocked_call call{q, false};
    EXPECT_TRUE(interrupt::cancel_blocked(call));
  }
  EXPECT_EQ(pipc_mq_send(q, "y", 1, 0), 0);
  EXPECT_EQ(pipc_mq_close(q), 0);
}

// A receiver counts itself in the queue's waiter table while it waits, and a
// notification is due only when no receiver waits: a cancelled receiver must take its
// count back as it unwinds, or the queue would never notify again.
TEST(CApiInterrupt, CancelledReceiverNoLongerCountsAsWaiting) {
  if (!interrupt::can_unwind_from_signals) GTEST_SKIP() << "the ASan runtime cannot unwind from a signal handler";
  unlink_guard guard(unique_name("capi-cancel-waiter"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 4, 16);
  ASSERT_NE(q, kBad);
  interrupt::blocked_call call{q, true};
  ASSERT_TRUE(interrupt::cancel_blocked(call));

  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigset_t old;
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &usr2, &old), 0);
  sigevent ev{};
  ev.sigev_notify = SIGEV_SIGNAL;
  ev.sigev_signo = SIGUSR2;
  ev.sigev_value.sival_int = 77;
  ASSERT_EQ(pipc_mq_notify(q, &ev), 0);
  ASSERT_EQ(pipc_mq_send(q, "m", 1, 0), 0);
  timespec wait{2, 0};
  siginfo_t info{};
  EXPECT_EQ(::sigtimedwait(&usr2, &info, &wait), SIGUSR2);
  EXPECT_EQ(info.si_value.sival_int, 77);
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  EXPECT_EQ(pipc_mq_close(q), 0);
}

// ---- Notification values and attributes ----

namespace notification {
int marker;  // its address is the sigval pointer
}  // namespace notification

// The whole sigval reaches the registrant, pointer included, even when another
// process's send fires the notification.
TEST(CApiNotify, SignalCarriesTheWholeSigvalFromAnotherProcess) {
  unlink_guard guard(unique_name("capi-notify-ptr"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 4, 16);
  ASSERT_NE(q, kBad);
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigset_t old;
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &usr2, &old), 0);
  sigevent ev{};
  ev.sigev_notify = SIGEV_SIGNAL;
  ev.sigev_signo = SIGUSR2;
  ev.sigev_value.sival_ptr = &notification::marker;
  ASSERT_GT(reinterpret_cast<std::uintptr_t>(&notification::marker), std::uintptr_t{0xffffffff})
      << "the test needs a pointer above 4 GiB";
  ASSERT_EQ(pipc_mq_notify(q, &ev), 0);
  const std::string name = guard.name();
  pid_t child = pipc::test::spawn([&]() -> int {
    pipc_mqd_t w = pipc_mq_open(name.c_str(), O_WRONLY);
    return w != kBad && pipc_mq_send(w, "m", 1, 0) == 0 ? 0 : 1;
  });
  EXPECT_EQ(pipc::test::wait_exit(child), 0);
  timespec wait{5, 0};
  siginfo_t info{};
  EXPECT_EQ(::sigtimedwait(&usr2, &info, &wait), SIGUSR2);
  EXPECT_EQ(info.si_code, SI_MESGQ);
  EXPECT_EQ(info.si_pid, child);
  EXPECT_EQ(info.si_value.sival_ptr, &notification::marker);
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  EXPECT_EQ(pipc_mq_close(q), 0);
}

namespace notification {
struct thread_report {
  std::atomic<bool> ran{false};
  std::size_t guard_size = 0;
  std::size_t stack_size = 0;
  int detach_state = -1;
  void* value = nullptr;
};
thread_report report;
void on_notify(union sigval value) {
  pthread_attr_t attr;
  if (::pthread_getattr_np(::pthread_self(), &attr) == 0) {
    ::pthread_attr_getguardsize(&attr, &report.guard_size);
    ::pthread_attr_getstacksize(&attr, &report.stack_size);
    ::pthread_attr_getdetachstate(&attr, &report.detach_state);
    ::pthread_attr_destroy(&attr);
  }
  report.value = value.sival_ptr;
  report.ran.store(true);
}
}  // namespace notification

namespace refused {
std::atomic<int> calls{0};
void on_notify(sigval) { calls.fetch_add(1); }
// A new queue `name`, with a thread notification registered that counts in `calls`
// (reset); kBad if either fails.
pipc_mqd_t queue_with_thread_notification(const std::string& name) {
  pipc_mqd_t q = capi_create(name, 4, 16);
  if (q == kBad) return kBad;
  calls.store(0);
  sigevent thread{};
  thread.sigev_notify = SIGEV_THREAD;
  thread.sigev_notify_function = on_notify;
  if (pipc_mq_notify(q, &thread) != 0) {
    pipc_mq_close(q);
    return kBad;
  }
  return q;
}
bool called_within(std::chrono::milliseconds limit) {
  for (auto waited = 0ms; calls.load() == 0 && waited < limit; waited += 10ms) std::this_thread::sleep_for(10ms);
  return calls.load() != 0;
}
}  // namespace refused

// A refused mq_notify leaves the registration that refused it working, as Linux does:
// this descriptor's thread notification still runs when a message comes. Before, a
// second mq_notify on the descriptor (SIGEV_SIGNAL or SIGEV_NONE, refused with EBUSY)
// stopped the first one's helper first: the callback never ran, and the queue stayed
// EBUSY for every process until the descriptor was closed (a review found it).
TEST(CApiNotify, RefusedRegistrationLeavesTheThreadNotificationWorking) {
  unlink_guard guard(unique_name("capi-notify-refused"), name_kind::engine_queue);
  const pipc_mqd_t q = refused::queue_with_thread_notification(guard.name());
  ASSERT_NE(q, kBad);
  sigevent signal{};
  signal.sigev_notify = SIGEV_SIGNAL;
  signal.sigev_signo = SIGUSR2;
  errno = 0;
  EXPECT_EQ(pipc_mq_notify(q, &signal), -1);
  EXPECT_EQ(errno, EBUSY);
  sigevent none{};
  none.sigev_notify = SIGEV_NONE;
  errno = 0;
  EXPECT_EQ(pipc_mq_notify(q, &none), -1);
  EXPECT_EQ(errno, EBUSY);
  ASSERT_EQ(pipc_mq_send(q, "m", 1, 0), 0);
  EXPECT_TRUE(refused::called_within(5s)) << "the thread notification did not run";
  EXPECT_EQ(pipc_mq_notify(q, &none), 0) << "the fired notification should have freed the queue";
  EXPECT_EQ(pipc_mq_close(q), 0);
}

// mq_notify(NULL) refused (EBUSY: a stopped process holds the queue's locks) leaves the
// registration and its helper as they were: the notification still runs once the
// holder continues. Before, the helper was stopped before the lock was tried.
TEST(CApiNotify, RefusedCancellationLeavesTheThreadNotificationWorking) {
  unlink_guard guard(unique_name("capi-notify-cancel-refused"), name_kind::engine_queue);
  const pipc_mqd_t q = refused::queue_with_thread_notification(guard.name());
  ASSERT_NE(q, kBad);
  const pid_t holder = pipc::test::spawn_stopped_lock_holder(guard.name());
  ASSERT_GT(holder, 0);
  errno = 0;
  EXPECT_EQ(pipc_mq_notify(q, nullptr), -1);
  EXPECT_EQ(errno, EBUSY);
  ASSERT_EQ(::kill(holder, SIGCONT), 0);
  EXPECT_EQ(pipc::test::wait_exit(holder, 10s), 0);
  ASSERT_EQ(pipc_mq_send(q, "m", 1, 0), 0);
  EXPECT_TRUE(refused::called_within(5s)) << "the thread notification did not run";
  EXPECT_EQ(pipc_mq_close(q), 0);
}

// SIGEV_THREAD with sigev_notify_attributes: the function runs on a thread made with
// (a copy of) those attributes, detached, whatever happens to the caller's object.
TEST(CApiNotify, ThreadNotificationUsesTheGivenAttributes) {
  unlink_guard guard(unique_name("capi-notify-attr"), name_kind::engine_queue);
  pipc_mqd_t q = capi_create(guard.name(), 4, 16);
  ASSERT_NE(q, kBad);
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t stack = 4u << 20;
  pthread_attr_t attr;
  ASSERT_EQ(::pthread_attr_init(&attr), 0);
  ASSERT_EQ(::pthread_attr_setguardsize(&attr, 3 * page), 0);
  ASSERT_EQ(::pthread_attr_setstacksize(&attr, stack), 0);
  ASSERT_EQ(::pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_JOINABLE), 0);
  sigevent ev{};
  ev.sigev_notify = SIGEV_THREAD;
  ev.sigev_notify_function = notification::on_notify;
  ev.sigev_notify_attributes = &attr;
  ev.sigev_value.sival_ptr = &notification::marker;
  ASSERT_EQ(pipc_mq_notify(q, &ev), 0);
  ::pthread_attr_destroy(&attr);  // pipc keeps its own copy
  ASSERT_EQ(pipc_mq_send(q, "m", 1, 0), 0);
  for (int i = 0; i < 500 && !notification::report.ran.load(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(notification::report.ran.load());
  EXPECT_EQ(notification::report.guard_size, 3 * page);
  EXPECT_GE(notification::report.stack_size, stack);
  EXPECT_EQ(notification::report.detach_state, PTHREAD_CREATE_DETACHED);
  EXPECT_EQ(notification::report.value, &notification::marker);
  EXPECT_EQ(pipc_mq_close(q), 0);
}
