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

}  // namespace
