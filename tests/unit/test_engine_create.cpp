// Creating engine queues (docs/engine.md, "Layout" and "Creation, opening,
// unlinking"): a queue's region is as large as its messages need and no larger
// (nothing is proportional to the 32 768 priorities), an O_EXCL create of a name that
// exists fails before anything is built, and a /dev/shm without room for the region is
// ENOSPC at create, never a fault when the queue is used.
#include "engine_support.hpp"
#include "support.hpp"

#include "engine/layout.hpp"

#include <pipc/c/mqueue.h>
#include <pipc/pipc.hpp>

#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <system_error>
#include <vector>

namespace {

namespace eng = pipc::engine;
using pipc::message_queue;
using pipc::open_mode;
using pipc::test::engine_options;
using pipc::test::object_path;
using pipc::test::run_child;
using pipc::test::unique_name;
using pipc::test::unlink_guard;

struct ::stat file_status(const std::string& name) {
  struct ::stat st {};
  EXPECT_EQ(::stat(object_path(name).c_str(), &st), 0) << object_path(name) << ": " << std::strerror(errno);
  return st;
}

// The names in /dev/shm that contain `part` (other tests and other programs make and
// remove names there meanwhile).
std::set<std::string> shm_names(const std::string& part = "") {
  std::set<std::string> names;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (const dirent* e = ::readdir(d)) {
      if (std::string(e->d_name).find(part) != std::string::npos) names.insert(e->d_name);
    }
    ::closedir(d);
  }
  return names;
}

// The documented figure: a queue of mq_open's defaults (10 × 8192) is 85 056 bytes, all
// of it reserved in /dev/shm when the create returns (fallocate: ENOSPC now, not a
// fault later). Layout 3 made the same queue 353 152 bytes, 270 336 of them a table of
// every priority.
TEST(EngineCreate, DefaultQueueRegionIsTheDocumentedSize) {
  unlink_guard guard(unique_name("create-size"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(10, 8192));
  const struct ::stat st = file_status(guard.name());
  EXPECT_EQ(st.st_size, static_cast<off_t>(eng::default_region_size));
  EXPECT_EQ(eng::compute_geometry(10, 8192).region_size, eng::default_region_size);
  EXPECT_GE(static_cast<std::uint64_t>(st.st_blocks) * 512, (eng::default_region_size + 4095) / 4096 * 4096)
      << "the region is not all reserved";
  // Every priority works in it, the extremes too.
  q.send(pipc::as_bytes("low"), 0);
  q.send(pipc::as_bytes("high"), pipc::max_priority);
  std::vector<std::byte> buffer(8192);
  auto first = q.receive(buffer);
  EXPECT_EQ(first.priority, pipc::max_priority);
  auto second = q.receive(buffer);
  EXPECT_EQ(second.priority, 0u);
}

// Nothing in a region depends on the priority range: per message it holds the slot, two
// ring entries of two rings of at most 2N entries, and a side heap entry (16 bytes), and
// beyond that only the 2 KiB header.
TEST(EngineCreate, RegionGrowsWithItsMessagesOnly) {
  for (long n : {1L, 2L, 10L, 100L, 1000L}) {
    for (long size : {1L, 64L, 8192L}) {
      SCOPED_TRACE(std::to_string(n) + " × " + std::to_string(size));
      unlink_guard guard(unique_name("create-grow"), pipc::name_kind::engine_queue);
      auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(n, size));
      const auto stride = static_cast<std::uint64_t>((32 + size + 63) / 64 * 64);
      const auto file = static_cast<std::uint64_t>(file_status(guard.name()).st_size);
      const auto geo = eng::compute_geometry(static_cast<std::uint64_t>(n), static_cast<std::uint64_t>(size));
      EXPECT_EQ(file, geo.region_size);
      EXPECT_LE(file, eng::header_size + static_cast<std::uint64_t>(n) * (stride + 2 * 2 * 8 + 16) + 64);
    }
  }
  EXPECT_LT(eng::compute_geometry(1, 1).region_size, 4096u) << "a queue of one small message fits one page";
}

// An O_CREAT | O_EXCL open of a name that exists fails with EEXIST before it builds
// anything: it opens no file at all. In a child whose descriptor limit allows no new
// descriptor, any file it tried to make would fail with EMFILE instead.
TEST(EngineCreate, ExclusiveCreateOfATakenNameOpensNoFile) {
  unlink_guard guard(unique_name("create-excl"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(4, 64));
  // This process's test names: "pipc-t<pid>-...".
  const std::string ours = "pipc-t" + std::to_string(::getpid()) + "-";
  const auto before = shm_names(ours);
  const int code = run_child([&] {
    // Every call below once, so that what a process reads once (/proc, the CPU count)
    // is read. (The checks compare the error without a virtual call: UBSan checks those
    // through a pipe, which the limit leaves it no descriptor for.)
    auto is_eexist = [](const std::error_code& e) {
      return e.value() == EEXIST && e.category() == std::system_category();
    };
    {
      auto warm = message_queue::open(guard.name(), open_mode::open_only, engine_options(4, 64));
      std::error_code e;
      (void)message_queue::open(guard.name(), open_mode::create_only, engine_options(10, 8192), e);
      if (!is_eexist(e)) return 14;
    }
    int lowest = ::dup(0);
    if (lowest < 0) return 10;
    ::close(lowest);
    struct ::rlimit limit {};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 11;
    limit.rlim_cur = static_cast<rlim_t>(lowest);
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return 12;
    if (::dup(0) != -1 || errno != EMFILE) return 13;  // the limit holds

    std::error_code ec;
    (void)message_queue::open(guard.name(), open_mode::create_only, engine_options(10, 8192), ec);
    if (!is_eexist(ec)) {
      std::fprintf(stderr, "create_only: error %d\n", ec.value());
      return 1;
    }
    // Attributes far beyond what /dev/shm holds change nothing.
    (void)message_queue::open(guard.name(), open_mode::create_only, engine_options(1 << 20, 16 << 20), ec);
    if (!is_eexist(ec)) return 2;
    struct pipc_mq_attr attr {};
    attr.mq_maxmsg = 10;
    attr.mq_msgsize = 8192;
    errno = 0;
    pipc_mqd_t d = ::pipc_mq_open(guard.name().c_str(), O_CREAT | O_EXCL | O_RDWR, static_cast<mode_t>(0600), &attr);
    if (d != static_cast<pipc_mqd_t>(-1) || errno != EEXIST) {
      std::fprintf(stderr, "pipc_mq_open: %s\n", std::strerror(errno));
      return 3;
    }
    return 0;
  });
  EXPECT_EQ(code, 0) << "1, 2: the C++ API, 3: the C API did not fail with EEXIST; 10-14: setup";
  EXPECT_EQ(shm_names(ours), before) << "a file appeared in /dev/shm";
}

// An open by name is relative to a descriptor of /dev/shm that the process keeps. A
// program that closes that descriptor behind pipc's back, and perhaps gives its number
// to another directory (elsewhere, or in /dev/shm), still opens its queues: pipc finds
// out (EBADF; an error or a file from another directory) and opens by the full path.
TEST(EngineCreate, OpenByNameSurvivesTheProgramClosingTheShmDirectoryDescriptor) {
  unlink_guard guard(unique_name("create-dirfd"), pipc::name_kind::engine_queue);
  auto q = message_queue::open(guard.name(), open_mode::create_only, engine_options(4, 64));
  const std::string leaf = "pipc.mq." + guard.name().substr(1);
  const std::string subdir = "/dev/shm/pipc-t" + std::to_string(::getpid()) + "-dirfd";
  char elsewhere_template[] = "/tmp/pipc-dirfd-XXXXXX";
  ASSERT_NE(::mkdtemp(elsewhere_template), nullptr);
  const std::string elsewhere = elsewhere_template;
  ASSERT_EQ(::mkdir(subdir.c_str(), 0700), 0);
  const int decoy = ::open((elsewhere + "/" + leaf).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(decoy, 0);
  ::close(decoy);
  struct ::stat shm_st {}, elsewhere_st {};
  ASSERT_EQ(::stat("/dev/shm", &shm_st), 0);
  ASSERT_EQ(::stat(elsewhere.c_str(), &elsewhere_st), 0);
  const bool other_file_system = shm_st.st_dev != elsewhere_st.st_dev;  // else skip that step

  const int code = run_child([&] {
    // The descriptor pipc keeps: the one on /dev/shm's directory.
    auto shm_dir_fd = [] {
      for (int fd = 0; fd < 1024; ++fd) {
        char link[64], target[256] = {};
        std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        if (::readlink(link, target, sizeof target - 1) > 0 && std::strcmp(target, "/dev/shm") == 0) return fd;
      }
      return -1;
    };
    auto open_ok = [&] {
      std::error_code ec;
      auto again = message_queue::open(guard.name(), open_mode::open_only, engine_options(4, 64), ec);
      return !ec;
    };
    if (!open_ok()) return 10;
    int dir = shm_dir_fd();
    if (dir < 0) return 11;
    ::close(dir);  // EBADF
    if (!open_ok()) return 1;
    // Its number given to a directory elsewhere that has a file of the queue's name.
    // (The open that noticed opened by the path; the next one opens the directory.)
    if (!open_ok()) return 4;
    if (other_file_system) {
      if ((dir = shm_dir_fd()) < 0) return 12;
      const int other = ::open(elsewhere.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (other < 0 || ::dup2(other, dir) != dir) return 13;
      if (!open_ok()) return 2;
    }
    // ... and to another directory in /dev/shm, where the name does not exist.
    if (!open_ok()) return 5;
    if ((dir = shm_dir_fd()) < 0) return 14;
    const int other = ::open(subdir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (other < 0 || ::dup2(other, dir) != dir) return 15;
    if (!open_ok()) return 3;
    return 0;
  });
  ::unlink((elsewhere + "/" + leaf).c_str());
  ::rmdir(elsewhere.c_str());
  ::rmdir(subdir.c_str());
  EXPECT_EQ(code, 0) << "1, 4: after a close, 2, 5: a directory elsewhere, 3: one in /dev/shm; 10-15: setup";
}

// With /dev/shm full, a create fails with ENOSPC and leaves nothing; a queue that was
// created can be filled with full-size messages in every slot without a fault (a fault
// would show as corrupt_state: the engine turns SIGBUS in its region into that error).
// Runs as root in a private mount namespace with a 256 KiB tmpfs on /dev/shm.
TEST(EngineCreate, FullShmIsEnospcAtCreateNeverAFaultLater) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs on /dev/shm";
  const int code = run_child([] {
    if (::unshare(CLONE_NEWNS) != 0) return 50;
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 51;
    if (::mount("pipc-test", "/dev/shm", "tmpfs", 0, "size=256k,mode=1777") != 0) return 52;

    constexpr long depth = 10;
    constexpr long size = 8192;  // a default queue: 21 pages; three fit in 64
    std::vector<message_queue> made;
    std::vector<std::string> names;
    std::error_code ec;
    for (int i = 0; i < 8; ++i) {
      const std::string name = "/full-" + std::to_string(i);
      auto q = message_queue::open(name, open_mode::create_only, engine_options(depth, size), ec);
      if (ec) break;
      made.push_back(std::move(q));
      names.push_back(name);
    }
    if (ec != std::errc::no_space_on_device) {
      std::fprintf(stderr, "after %zu queues: %s\n", made.size(), ec ? ec.message().c_str() : "no error");
      return 1;
    }
    if (made.size() != 3) {
      std::fprintf(stderr, "%zu queues fit in 256 KiB\n", made.size());
      return 2;
    }
    // The failed create left no file.
    if (shm_names().size() != made.size() + 2) return 3;  // "." and ".."
    // The C API says ENOSPC too, and a larger queue fails the same way.
    struct pipc_mq_attr attr {};
    attr.mq_maxmsg = depth;
    attr.mq_msgsize = size;
    errno = 0;
    if (::pipc_mq_open("/full-c", O_CREAT | O_EXCL | O_RDWR, static_cast<mode_t>(0600), &attr) !=
            static_cast<pipc_mqd_t>(-1) ||
        errno != ENOSPC) {
      return 4;
    }
    (void)message_queue::open("/full-big", open_mode::create_only, engine_options(100, size), ec);
    if (ec != std::errc::no_space_on_device) return 5;

    // Every slot of every queue, every byte of every payload, at mixed priorities.
    std::vector<std::byte> out(size), in(size);
    auto pattern = [](long queue, long id, long at) { return static_cast<std::byte>(id * 7 + at + queue); };
    for (std::size_t k = 0; k < made.size(); ++k) {
      const auto kk = static_cast<long>(k);
      for (long i = 0; i < depth; ++i) {
        for (long b = 0; b < size; ++b) out[static_cast<std::size_t>(b)] = pattern(kk, i, b);
        made[k].send(out, static_cast<unsigned>(i % 3 == 0 ? 0 : i));
      }
      std::set<long> seen;
      for (long i = 0; i < depth; ++i) {
        auto r = made[k].receive(in);
        if (r.size != static_cast<std::size_t>(size)) return 6;
        const long id = (static_cast<long>(in[0]) - kk) / 7;
        for (long b = 0; b < size; ++b) {
          if (in[static_cast<std::size_t>(b)] != pattern(kk, id, b)) return 7;
        }
        seen.insert(id);
      }
      if (seen.size() != static_cast<std::size_t>(depth)) return 8;
      if (made[k].attributes(ec).current_messages != 0 || ec) return 9;
    }
    for (const auto& name : names) message_queue::unlink(name);
    return 0;
  });
  if (code == 50 || code == 51 || code == 52) GTEST_SKIP() << "cannot mount a tmpfs in a private mount namespace here";
  EXPECT_EQ(code, 0) << "1: no ENOSPC, 2: another count, 3: a file left, 4: the C API, 5: a larger queue, "
                        "6-9: a message lost or damaged; 128 + n: killed by signal n";
}

}  // namespace
