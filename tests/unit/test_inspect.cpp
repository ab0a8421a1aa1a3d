// The inspection API (include/pipc/inspect.hpp): list_objects, inspect_queue,
// message_queue::stats and users_of, on live objects of every kind and on hostile
// files in /dev/shm.
#include <pipc/inspect.hpp>

#include "support.hpp"

#include <fcntl.h>
#include <mqueue.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <thread>

namespace pipc::test {
namespace {

using namespace std::chrono_literals;

const object_info* find(const object_listing& l, const std::string& name, object_type t) {
  for (const auto& o : l.objects) {
    if (o.name == name && o.type == t) return &o;
  }
  return nullptr;
}

// A file in /dev/shm written raw, removed at the end.
struct raw_file {
  std::string path;
  raw_file(const std::string& leaf, const void* data, std::size_t size) : path("/dev/shm/" + leaf) {
    int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0);
    if (fd >= 0) {
      EXPECT_EQ(::write(fd, data, size), static_cast<ssize_t>(size));
      ::close(fd);
    }
  }
  ~raw_file() { ::unlink(path.c_str()); }
};

TEST(Inspect, ListsObjectsOfEveryKind) {
  const std::string q = unique_name("iq"), s = unique_name("is"), m = unique_name("im");
  unlink_guard gq(q, name_kind::engine_queue), gs(s, name_kind::semaphore), gm(m, name_kind::shared_memory);
  mq_options opt;
  opt.max_messages = 4;
  opt.message_size = 32;
  auto queue = message_queue::open(q, open_mode::create_only, opt);
  queue.send(as_bytes("abc"), 1);
  auto sem = named_semaphore::open(s, open_mode::create_only, 3);
  auto shm = shared_memory::open(m, open_mode::create_only);
  shm.resize(5000);

  object_listing l = list_objects();
  const object_info* oq = find(l, q, object_type::message_queue);
  ASSERT_NE(oq, nullptr);
  EXPECT_EQ(oq->backend, backend::shm);
  EXPECT_FALSE(oq->error) << oq->error.message();
  EXPECT_EQ(oq->max_messages, 4);
  EXPECT_EQ(oq->message_size, 32);
  EXPECT_EQ(oq->current_messages, 1);
  EXPECT_EQ(oq->mode, 0600u);  // the umask takes nothing from 0600 in practice
  EXPECT_EQ(oq->uid, ::geteuid());
  const object_info* os = find(l, s, object_type::semaphore);
  ASSERT_NE(os, nullptr);
  EXPECT_EQ(os->value, 3);
  const object_info* om = find(l, m, object_type::shared_memory);
  ASSERT_NE(om, nullptr);
  EXPECT_EQ(om->size, 5000u);
  EXPECT_EQ(to_string(object_type::message_queue), "mq");
  EXPECT_EQ(to_string(backend::kernel), "kernel");
}

TEST(Inspect, KernelQueuesAreListedOrExplained) {
  const std::string k = unique_name("ik");
  unlink_guard gk(k, name_kind::message_queue);
  mq_options opt;
  opt.backend = backend::kernel;
  opt.max_messages = 3;
  opt.message_size = 16;
  auto queue = message_queue::open(k, open_mode::create_only, opt);
  queue.send(as_bytes("12345"), 2);
  object_listing l = list_objects();
  if (l.kernel_queues.kind == kernel_queue_source::unavailable) {
    EXPECT_NE(l.kernel_queues.reason.find("mount"), std::string::npos);
    EXPECT_EQ(find(l, k, object_type::message_queue), nullptr);
    GTEST_SKIP() << l.kernel_queues.reason;
  }
  const object_info* o = find(l, k, object_type::message_queue);
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->backend, backend::kernel);
  EXPECT_EQ(o->max_messages, 3);
  EXPECT_EQ(o->current_messages, 1);
  EXPECT_EQ(o->size, 5u);  // QSIZE
  mq_stats s = inspect_queue(k, backend::kernel);
  EXPECT_EQ(s.current_messages, 1);
  EXPECT_EQ(s.queued_bytes, 5);
  EXPECT_FALSE(s.has_counters);
  mq_stats own = queue.stats();
  EXPECT_EQ(own.current_messages, 1);
  EXPECT_EQ(own.queued_bytes, 5);
}

TEST(Inspect, EngineCountersAndBlockedReceivers) {
  const std::string q = unique_name("ic");
  unlink_guard g(q, name_kind::engine_queue);
  mq_options opt;
  opt.max_messages = 8;
  opt.message_size = 64;
  auto queue = message_queue::open(q, open_mode::create_only, opt);
  for (int i = 0; i < 3; ++i) queue.send(as_bytes("hello"), 0);
  std::vector<std::byte> buf(64);
  ASSERT_TRUE(queue.try_receive(buf));

  mq_stats own = queue.stats();
  EXPECT_TRUE(own.has_counters);
  EXPECT_EQ(own.messages_sent, 3u);
  EXPECT_EQ(own.messages_received, 1u);
  EXPECT_EQ(own.bytes_sent, 15u);
  EXPECT_EQ(own.current_messages, 2);
  EXPECT_EQ(own.last_sender, ::getpid());

  mq_stats by_name = inspect_queue(q, backend::shm);
  EXPECT_EQ(by_name.messages_sent, 3u);
  EXPECT_EQ(by_name.bytes_received, 5u);
  EXPECT_EQ(by_name.current_messages, 2);
  EXPECT_GE(by_name.high_water, 2);
  EXPECT_EQ(by_name.blocked_receivers, 0);

  // Empty it, then block a receiver in a child: the waiter table names it.
  while (queue.try_receive(buf)) {
  }
  child c([&] {
    auto mine = message_queue::open(q, open_mode::open_only, opt);
    std::vector<std::byte> b(64);
    return mine.receive_for(b, 10s) ? 0 : 1;
  });
  mq_stats s;
  for (int i = 0; i < 500 && s.blocked_receivers != 1; ++i) {
    std::this_thread::sleep_for(10ms);
    s = inspect_queue(q, backend::shm);
  }
  EXPECT_EQ(s.blocked_receivers, 1);
  ASSERT_EQ(s.blocked_receiver_pids.size(), 1u);
  EXPECT_EQ(s.blocked_receiver_pids[0], c.pid());

  object_listing l = list_objects();
  const object_info* o = find(l, q, object_type::message_queue);
  ASSERT_NE(o, nullptr);
  auto users = users_of(*o);
  bool saw_child = false;
  for (const auto& u : users) {
    if (u.pid == c.pid()) {
      saw_child = true;
      EXPECT_TRUE(u.mapped);
      EXPECT_EQ(u.blocked_receivers, 1u);
    }
  }
  EXPECT_TRUE(saw_child);
  queue.send(as_bytes("go"), 0);
  EXPECT_EQ(c.wait(), 0);
}

TEST(Inspect, UsersOfSharedMemoryEndWithTheProcess) {
  const std::string m = unique_name("iu");
  unlink_guard g(m, name_kind::shared_memory);
  auto shm = shared_memory::open(m, open_mode::create_only);
  shm.resize(4096);
  shm.close();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  child c([&] {
    auto mine = shared_memory::open(m, open_mode::open_only);
    auto map = mine.map();
    mine.close();  // mapped, not open
    char x = 1;
    (void)!::write(ready[1], &x, 1);
    ::pause();
    return 0;
  });
  char x = 0;
  ASSERT_EQ(::read(ready[0], &x, 1), 1);
  ::close(ready[0]);
  ::close(ready[1]);
  object_listing l = list_objects();
  const object_info* o = find(l, m, object_type::shared_memory);
  ASSERT_NE(o, nullptr);
  auto users = users_of(*o);
  ASSERT_EQ(users.size(), 1u);
  EXPECT_EQ(users[0].pid, c.pid());
  EXPECT_TRUE(users[0].mapped);
  EXPECT_FALSE(users[0].open);
  EXPECT_FALSE(users[0].command.empty());
  ::kill(c.pid(), SIGKILL);
  c.wait();
  EXPECT_TRUE(users_of(*o).empty());
}

TEST(Inspect, HostileFilesAreListedWithTheirProblem) {
  const std::string base = unique_name("ih").substr(1);
  // Garbage: not a pipc object.
  std::vector<unsigned char> junk(5000, 0xab);
  raw_file garbage("pipc.mq." + base + "-junk", junk.data(), junk.size());
  // The magic of another layout version.
  std::vector<unsigned char> v9(8192, 0);
  const std::uint64_t magic9 = 0x0900'514d'4350'4950ULL;
  std::memcpy(v9.data(), &magic9, 8);
  const std::uint32_t version9 = 9;
  std::memcpy(v9.data() + 8, &version9, 4);
  raw_file other("pipc.mq." + base + "-v9", v9.data(), v9.size());
  // Too short for a header, and a semaphore too short for a sem_t.
  raw_file tiny("pipc.mq." + base + "-tiny", "PIPC", 4);
  raw_file bad_sem("sem." + base + "-sem", "x", 1);

  object_listing l = list_objects();
  auto error_of = [&](const std::string& suffix, object_type t) {
    const object_info* o = find(l, "/" + base + suffix, t);
    EXPECT_NE(o, nullptr) << suffix;
    return o ? o->error : std::error_code();
  };
  EXPECT_EQ(error_of("-junk", object_type::message_queue), errc::not_a_pipc_object);
  EXPECT_EQ(error_of("-v9", object_type::message_queue), errc::layout_mismatch);
  EXPECT_EQ(error_of("-tiny", object_type::message_queue), errc::not_a_pipc_object);
  EXPECT_TRUE(error_of("-sem", object_type::semaphore));
  const object_info* o = find(l, "/" + base + "-v9", object_type::message_queue);
  ASSERT_NE(o, nullptr);
  EXPECT_NE(o->detail.find("version 9"), std::string::npos) << o->detail;

  std::error_code ec;
  inspect_queue("/" + base + "-v9", backend::shm, ec);
  EXPECT_EQ(ec, errc::layout_mismatch);
  inspect_queue("/" + base + "-missing", backend::shm, ec);
  EXPECT_EQ(ec, std::errc::no_such_file_or_directory);
  inspect_queue("no-slash", backend::shm, ec);
  EXPECT_EQ(ec, std::errc::invalid_argument);
}

TEST(Inspect, CorruptGeometryIsReportedNotTrusted) {
  const std::string q = unique_name("ig");
  unlink_guard g(q, name_kind::engine_queue);
  mq_options opt;
  opt.max_messages = 2;
  opt.message_size = 8;
  auto queue = message_queue::open(q, open_mode::create_only, opt);
  // Scribble over max_messages (offset 24) in the file.
  const std::string path = "/dev/shm/pipc.mq." + q.substr(1);
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const std::uint64_t huge = ~0ull;
  ASSERT_EQ(::pwrite(fd, &huge, 8, 24), 8);
  ::close(fd);
  std::error_code ec;
  inspect_queue(q, backend::shm, ec);
  EXPECT_EQ(ec, errc::corrupt_state);
  object_listing l = list_objects();
  const object_info* o = find(l, q, object_type::message_queue);
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->error, errc::corrupt_state);
  EXPECT_EQ(o->max_messages, -1);
}

TEST(Inspect, ReadsWithReadPermissionOnly) {
  if (!running_as_root()) GTEST_SKIP() << "needs root to switch users";
  const std::string q = unique_name("ip"), s = unique_name("ips");
  unlink_guard gq(q, name_kind::engine_queue), gs(s, name_kind::semaphore);
  mq_options opt;
  opt.max_messages = 2;
  opt.message_size = 8;
  opt.permissions = 0600;
  auto queue = message_queue::open(q, open_mode::create_only, opt);
  auto sem = named_semaphore::open(s, open_mode::create_only, 1, 0644);
  // 0644 gives others read: nobody reads the semaphore's value; the queue (0600) is
  // listed with EACCES.
  EXPECT_EQ(run_child([&] {
              if (!become_nobody()) return 10;
              object_listing l = list_objects();
              const object_info* oq = find(l, q, object_type::message_queue);
              const object_info* os = find(l, s, object_type::semaphore);
              if (oq == nullptr || os == nullptr) return 11;
              if (oq->error != std::errc::permission_denied) return 12;
              if (oq->uid != 0) return 13;
              if (os->error || os->value != 1) return 14;
              std::error_code ec;
              inspect_queue(q, backend::shm, ec);
              return ec == std::errc::permission_denied ? 0 : 15;
            }),
            0);
}

}  // namespace
}  // namespace pipc::test
