// Tests of the engine's lock word (src/engine/lock.hpp) where telling a live owner from
// a dead one depends on more than a SIGKILL: an owner that could not read its own /proc
// entry, a forked child that has an ancestor's pid, an owner ended by another thread's
// execve. Each runs the owner in a child process, as the crash tests do.
#include "engine_support.hpp"
#include "support.hpp"

#include "engine/lock.hpp"

#include <pipc/pipc.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

namespace eng = pipc::engine;
using pipc::message_queue;
using pipc::open_mode;
using pipc::test::engine_options;
using pipc::test::raw_region;
using pipc::test::unique_name;
using pipc::test::unlink_guard;
using pipc::test::watchdog;
using side = raw_region::side;

// One byte from `fd` within `limit_ms`; false if none came.
bool read_byte(int fd, char& c, int limit_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, limit_ms) == 1 && ::read(fd, &c, 1) == 1;
}

// A live owner whose lock_identity() was computed while it could not open its own
// /proc entry (here: no file descriptor left) must still look alive to others. Its
// word then has no start time; before the fix the word said start time 0, others read
// the real one, and the lock was taken over from a live owner (docs/engine.md, "The
// locks": "never a lock taken from a live owner").
TEST(EngineLock, OwnerThatCouldNotReadItsStartTimeIsNotTakenOver) {
  watchdog dog(60s);
  unlink_guard guard(unique_name("lock-nofile"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(4, 16));
  raw_region peek(guard.name());
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pipc::test::child holder([&] {
    raw_region r(guard.name());
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 2;
    lim.rlim_cur = 0;  // every open fails with EMFILE
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) return 2;
    const char c = r.take_lock(side::send) == 0 ? 'y' : 'n';
    if (::write(ready[1], &c, 1) != 1) return 2;
    for (;;) ::pause();
  });
  char c = 0;
  ASSERT_TRUE(read_byte(ready[0], c, 20000)) << "the holder did not report";
  ASSERT_EQ(c, 'y');
  EXPECT_FALSE(peek.owner_died(side::send))
      << "the live holder's word " << std::hex << peek.lock_word(side::send) << " looks dead";
  bool died = false;
  const int e = eng::lock_acquire(*peek.lock(side::send), pipc::detail::wait_limit::immediate(), died);
  EXPECT_EQ(e, ETIMEDOUT) << (died ? "took the lock over from its live holder" : "took a held lock");
  if (e == 0) eng::lock_release(*peek.lock(side::send));
  ::close(ready[0]);
  ::close(ready[1]);
}

// A forked child whose pid an ancestor had (pids are reused) must compute its own lock
// identity, not use the one its thread inherited from the ancestor's thread: that one
// names a dead thread, so every lock the child takes looks dead to everyone, and is
// taken over while the child is inside. A (computes its identity) forks B and exits; B
// forks until a child C gets A's pid (through ns_last_pid, root only).
TEST(EngineLock, ForkedChildWithAnAncestorsPidHasAnIdentityOfItsOwn) {
  if (::access("/proc/sys/kernel/ns_last_pid", W_OK) != 0) GTEST_SKIP() << "needs a writable ns_last_pid (root)";
  watchdog dog(60s);
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  const pid_t a = pipc::test::spawn([&]() -> int {
    (void)eng::lock_identity();  // cached in this thread, for this pid
    const pid_t mine = ::getpid();
    const pid_t b = ::fork();
    if (b != 0) return b > 0 ? 0 : 2;
    // B: wait until A is gone (reaped by the test), then fork until a child gets its pid.
    for (int i = 0; i < 1000 && ::kill(mine, 0) == 0; ++i) ::usleep(10'000);
    ::usleep(50'000);  // so that C starts at a later clock tick than A did
    char verdict = 's';
    for (int attempt = 0; attempt < 50 && verdict == 's'; ++attempt) {
      if (FILE* f = std::fopen("/proc/sys/kernel/ns_last_pid", "w")) {
        std::fprintf(f, "%d", static_cast<int>(mine) - 1);
        std::fclose(f);
      }
      const pid_t c = ::fork();
      if (c == 0) {
        if (::getpid() != mine) ::_exit(3);
        // C: its own identity must name a live thread: itself.
        ::_exit(eng::lock_owner_alive(eng::lock_identity()) ? 0 : 1);
      }
      int status = 0;
      if (c < 0 || ::waitpid(c, &status, 0) != c || !WIFEXITED(status)) {
        verdict = 'e';
      } else if (WEXITSTATUS(status) != 3) {
        verdict = WEXITSTATUS(status) == 0 ? 'y' : 'n';
      }
    }
    (void)!::write(report[1], &verdict, 1);
    ::_exit(0);
  });
  ASSERT_GT(a, 0);
  ASSERT_EQ(pipc::test::wait_exit(a), 0);
  char verdict = 0;
  ASSERT_TRUE(read_byte(report[0], verdict, 30000)) << "no verdict";
  ::close(report[0]);
  ::close(report[1]);
  if (verdict == 's') GTEST_SKIP() << "no child got the ancestor's pid again";
  EXPECT_EQ(verdict, 'y') << "n: the child's lock identity names its dead ancestor's thread; e: fork failed";
}

// The thread group leader holds a lock and another thread calls execve: the kernel
// kills the leader, and the exec'ing thread takes over its tid and its start time
// (fs/exec.c, de_thread). The word then names the new program's thread, which is alive,
// so the lock was never recovered (glibc's robust mutexes were: the kernel walks the
// killed thread's robust list). The new program does not map the queue, and an owner
// must: it is a dead owner now.
TEST(EngineLock, LeaderKilledByAnotherThreadsExecIsADeadOwner) {
  watchdog dog(60s);
  unlink_guard guard(unique_name("lock-exec"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(4, 16));
  raw_region peek(guard.name());
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pipc::test::child holder([&] {
    raw_region r(guard.name());
    const char c = r.take_lock(side::send) == 0 ? 'y' : 'n';
    if (::write(ready[1], &c, 1) != 1) return 2;
    std::thread([] {
      ::execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
      ::_exit(127);
    }).detach();
    for (;;) ::pause();
  });
  char c = 0;
  ASSERT_TRUE(read_byte(ready[0], c, 20000)) << "the holder did not report";
  ASSERT_EQ(c, 'y');
  std::string comm;
  for (int i = 0; i < 500 && comm != "sleep"; ++i) {
    std::this_thread::sleep_for(10ms);
    std::ifstream f("/proc/" + std::to_string(holder.pid()) + "/comm");
    std::getline(f, comm);
  }
  ASSERT_EQ(comm, "sleep") << "the holder did not exec";
  EXPECT_TRUE(peek.owner_died(side::send)) << "the lock's owner was killed by execve, but its word "
                                           << std::hex << peek.lock_word(side::send) << " looks alive";
  ::close(ready[0]);
  ::close(ready[1]);
}

// In a child: takes both locks and does a side send of `value` (priority `priority`,
// which must not be the ring's) up to its commit store, state = SIDE; then dies by
// SIGKILL holding both locks. Its message is committed but hidden (side_count is still
// 0) until a receiver repairs the receive side.
int die_after_side_commit(const std::string& name, std::uint32_t priority, std::uint32_t value) {
  raw_region r(name);
  if (r.take_lock(side::send) != 0 || r.take_lock(side::recv) != 0) return 20;
  eng::header* h = r.hdr();
  const std::uint32_t head = r.free_head();
  const std::uint64_t e = r.free_entry(head).load();
  if (eng::entry_tag(e) != head + 1 || priority == h->ring_priority) return 22;
  const std::uint32_t n = eng::entry_slot(e);
  eng::slot_header* s = r.slot(n);
  s->position = head;
  h->claim_position = head;
  h->claim_slot.store(n);
  s->size = sizeof value;
  s->priority = priority;
  s->seq = h->next_seq;
  std::memcpy(r.payload(n), &value, sizeof value);
  s->state.store(eng::slot_side);
  ::raise(SIGKILL);
  return 21;
}

// A side send that died after its commit (SIDE) and before its cursor store, whose
// message a receiver then holds in place (receive_view): the sender that next takes
// send_lock over must count that message as sent, as it counts one received by copy
// (region::recover_send). Before, it judged the send undone (the lent slot was neither
// SIDE nor freed): free_head stayed on the lent slot, the next send overwrote the
// message under the loan, and the queue took one message more than it has slots
// (a review found it, killing a sender in a debugger). Every slot must come back once.
TEST(EngineLock, DeadSideSendWhoseMessageIsLentIsCountedAsSent) {
  watchdog dog(60s);
  unlink_guard guard(unique_name("dead-side-lent"), pipc::name_kind::engine_queue);
  constexpr long depth = 4;
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(depth, 16));
  std::uint32_t first = 1;
  q.send(pipc::test::as_span(&first, sizeof first), 1);  // the ring's priority becomes 1
  std::vector<std::byte> buffer(16);
  ASSERT_TRUE(q.try_receive(buffer));
  ASSERT_EQ(pipc::test::run_child([&] { return die_after_side_commit(guard.name(), 3, 42); }), 128 + SIGKILL)
      << "the child could not set up the dead sender";
  auto value_of = [](std::span<const std::byte> bytes) {
    std::uint32_t v = 0;
    std::memcpy(&v, bytes.data(), std::min(bytes.size(), sizeof v));
    return v;
  };

  auto lent = q.try_receive_view();  // repairs the receive side and takes 42 in place
  ASSERT_TRUE(lent);
  EXPECT_EQ(value_of(lent->data()), 42u);
  EXPECT_EQ(lent->priority(), 3u);
  // The first send repairs the send side; the loan holds one slot of four.
  int accepted = 0;
  for (std::uint32_t v = 100; v < 100 + depth + 2; ++v) {
    if (!q.try_send(pipc::test::as_span(&v, sizeof v), 1)) break;
    ++accepted;
  }
  EXPECT_EQ(accepted, depth - 1) << "sends accepted while one slot of " << depth << " was lent";
  EXPECT_EQ(value_of(lent->data()), 42u) << "a send overwrote the lent message";
  lent->release();
  for (std::uint32_t v = 100; v < 100 + static_cast<std::uint32_t>(accepted); ++v) {
    auto got = q.try_receive(buffer);
    ASSERT_TRUE(got) << "message " << v;
    EXPECT_EQ(value_of(std::span(buffer).first(got->size)), v);
  }
  EXPECT_FALSE(q.try_receive(buffer)) << "a message came out twice";
  // Every slot came back once: the queue takes exactly `depth` again, intact.
  accepted = 0;
  for (std::uint32_t v = 200; v < 200 + depth + 2; ++v) {
    if (!q.try_send(pipc::test::as_span(&v, sizeof v), 1)) break;
    ++accepted;
  }
  EXPECT_EQ(accepted, depth);
  for (std::uint32_t v = 200; v < 200 + static_cast<std::uint32_t>(accepted); ++v) {
    auto got = q.try_receive(buffer);
    ASSERT_TRUE(got) << "message " << v;
    EXPECT_EQ(value_of(std::span(buffer).first(got->size)), v);
  }
  EXPECT_FALSE(q.try_receive(buffer));
}

// A child of fork does not run its parent's poll helper: the helper object is copied
// into the child, but its thread is not, its mutex may have been copied locked, and its
// eventfd's number is the child's to close and reuse. Before, the child's sends and
// receives synced that helper: a child that had put a file of its own at the number got
// 8 bytes written into it (and one whose copied mutex was locked hung), and closing the
// queue in the child closed that file. The parent's helper goes on keeping the shared
// eventfd current.
TEST(EnginePoll, ForkedChildLeavesItsParentsPollHelperAlone) {
  watchdog dog(60s);
  unlink_guard guard(unique_name("poll-fork"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(4, 16));
  const int fd = q.native_handle();  // starts this process's poll helper on that eventfd
  ASSERT_GE(fd, 0);
  char path[] = "/tmp/pipc-poll-fork-XXXXXX";
  const int file = ::mkstemp(path);
  ASSERT_GE(file, 0);
  ::unlink(path);
  const int code = pipc::test::run_child([&]() -> int {
    // The child's own file at the helper's number, as a closefrom and an open would put it.
    if (::dup2(file, fd) != fd) return 20;
    std::uint32_t v = 7;
    q.send(pipc::test::as_span(&v, sizeof v), 0);
    std::vector<std::byte> buffer(16);
    if (!q.try_receive(buffer)) return 21;
    struct stat st {};
    if (::fstat(fd, &st) != 0) return 22;
    if (st.st_size != 0) return 23;
    q = message_queue();  // closes the child's copy of the descriptor
    return ::fcntl(fd, F_GETFD) != -1 ? 0 : 24;
  });
  ::close(file);
  EXPECT_EQ(code, 0) << "23: pipc wrote into the child's file at its parent's helper's eventfd number; "
                        "24: closing the queue in the child closed that file";
  // The parent's descriptor still polls as the queue is.
  std::uint32_t v = 9;
  q.send(pipc::test::as_span(&v, sizeof v), 0);
  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 2000), 1);
}

// A poll helper reports a queue whose receive side has a dead owner as readable at its
// periodic re-check (docs/engine.md, "Polling"), so that an epoll-driven receiver
// receives, and so repairs, a message the owner committed but did not publish. The
// re-check must come even while other descriptors with poll helpers are opened and
// closed now and then: each close wakes every helper of the queue. Before the fix the
// re-check ran only after a sleep that timed out, which such wakes prevent.
TEST(EnginePoll, DeadReceiveSideIsReadableWhileOtherDescriptorsComeAndGo) {
  watchdog dog(60s);
  unlink_guard guard(unique_name("poll-dead"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(4, 16));
  std::uint32_t first = 1;
  q.send(pipc::test::as_span(&first, sizeof first), 1);  // the ring's priority becomes 1
  std::vector<std::byte> buffer(16);
  ASSERT_TRUE(q.try_receive(buffer));
  const int fd = q.native_handle();
  ASSERT_GE(fd, 0);

  std::atomic<bool> stop{false};
  std::thread churn([&] {
    while (!stop.load()) {
      auto other = message_queue::open(guard.name(), open_mode::open_only, engine_options(4, 16));
      (void)other.native_handle();
      std::this_thread::sleep_for(50ms);
    }
  });
  std::this_thread::sleep_for(100ms);
  const int code = pipc::test::run_child([&] { return die_after_side_commit(guard.name(), 3, 42); });
  pollfd p{fd, POLLIN, 0};
  const int ready = code == 128 + SIGKILL ? ::poll(&p, 1, 2000) : -1;
  stop.store(true);
  churn.join();
  ASSERT_EQ(code, 128 + SIGKILL) << "the child could not set up the dead sender";
  EXPECT_EQ(ready, 1) << "the queue holds a committed message behind a dead owner, but did not poll readable in 2 s";
  auto got = q.try_receive(buffer);
  ASSERT_TRUE(got);
  std::uint32_t value = 0;
  std::memcpy(&value, buffer.data(), sizeof value);
  EXPECT_EQ(value, 42u);
  EXPECT_EQ(got->priority, 3u);
}

}  // namespace
