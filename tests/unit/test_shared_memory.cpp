// pipc::shared_memory and pipc::mapping: opening, sizing, mapping, lifetime, permissions
// and sharing between real processes.
#include "support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace pt = pipc::test;
using namespace std::chrono_literals;
using pipc::access;
using pipc::open_mode;
using pipc::shared_memory;

constexpr auto shm_kind = pipc::name_kind::shared_memory;

using pipc::test::thrown;

using pipc::test::contains;

std::error_code sys(int e) { return {e, std::system_category()}; }

std::size_t page_size() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

// The permissions ("rw-s") of the mapping in /proc/self/maps that contains `p`; empty if
// no mapping contains it.
std::string mapping_perms(const void* p) {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    unsigned long long lo = 0, hi = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%llx-%llx %7s", &lo, &hi, perms) != 3) continue;
    if (addr >= lo && addr < hi) return perms;
  }
  return {};
}

bool fd_is_open(int fd) { return fd >= 0 && (::fcntl(fd, F_GETFD) != -1 || errno != EBADF); }

// Tries to store one byte at `p` through the kernel (read from a pipe): EFAULT instead of
// a SIGSEGV when the page is not writable. Returns 0 or the errno.
int kernel_store(void* p) {
  int fds[2];
  if (::pipe(fds) != 0) return errno;
  char c = 'k';
  int result = 0;
  if (::write(fds[1], &c, 1) != 1) {
    result = errno;
  } else if (::read(fds[0], p, 1) != 1) {
    result = errno;
  }
  ::close(fds[0]);
  ::close(fds[1]);
  return result;
}

using pipc::test::child;

std::byte pattern(std::size_t i) { return static_cast<std::byte>((i * 7 + 3) % 251); }

shared_memory create(const std::string& name, std::size_t size = 0) {
  auto shm = shared_memory::open(name, open_mode::create_only, access::read_write);
  if (size != 0) shm.resize(size);
  return shm;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Opening

TEST(SharedMemory, CreateOnlyCreatesAnEmptyObject) {
  const std::string name = pt::unique_name("shm-create");
  pt::unlink_guard guard(name, shm_kind);
  auto shm = shared_memory::open(name, open_mode::create_only);
  EXPECT_TRUE(shm.is_open());
  EXPECT_TRUE(static_cast<bool>(shm));
  EXPECT_GE(shm.native_handle(), 0);
  EXPECT_EQ(shm.name(), name);
  EXPECT_EQ(shm.size(), 0u);

  struct stat st {};
  ASSERT_EQ(::fstat(shm.native_handle(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
  // It is a real POSIX object, visible where glibc puts them.
  EXPECT_EQ(::stat(("/dev/shm" + name).c_str(), &st), 0);
}

TEST(SharedMemory, CreateOnlyOnExistingNameFailsWithEexist) {
  const std::string name = pt::unique_name("shm-exist");
  pt::unlink_guard guard(name, shm_kind);
  auto first = shared_memory::open(name, open_mode::create_only);

  auto e = thrown([&] { (void)shared_memory::open(name, open_mode::create_only); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), sys(EEXIST)) << e->what();
  EXPECT_TRUE(contains(e->what(), "shm_open \"" + name + "\""));

  std::error_code ec;
  auto second = shared_memory::open(name, open_mode::create_only, access::read_write, 0600, ec);
  EXPECT_EQ(ec, sys(EEXIST));
  EXPECT_FALSE(second.is_open());
}

TEST(SharedMemory, OpenOnlyOnMissingNameFailsWithEnoent) {
  const std::string name = pt::unique_name("shm-missing");
  pt::unlink_guard guard(name, shm_kind);
  auto e = thrown([&] { (void)shared_memory::open(name, open_mode::open_only); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), sys(ENOENT)) << e->what();
  EXPECT_TRUE(contains(e->what(), "shm_open \"" + name + "\""));

  std::error_code ec;
  auto shm = shared_memory::open(name, open_mode::open_only, access::read_only, 0600, ec);
  EXPECT_EQ(ec, sys(ENOENT));
  EXPECT_FALSE(shm.is_open());
  // open_only must not have created it.
  struct stat st {};
  EXPECT_NE(::stat(("/dev/shm" + name).c_str(), &st), 0);
}

TEST(SharedMemory, OpenOrCreateCreatesThenOpensTheSameObject) {
  const std::string name = pt::unique_name("shm-ooc");
  pt::unlink_guard guard(name, shm_kind);
  std::error_code ec;
  auto a = shared_memory::open(name, open_mode::open_or_create, access::read_write, 0600, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(a.size(), 0u);
  a.resize(100);
  auto ma = a.map();
  ma.data()[42] = std::byte{0x5a};

  auto b = shared_memory::open(name, open_mode::open_or_create);
  EXPECT_EQ(b.size(), 100u);  // opened, not re-created or truncated
  auto mb = b.map(access::read_only);
  EXPECT_EQ(mb.data()[42], std::byte{0x5a});

  auto c = shared_memory::open(name, open_mode::open_only, access::read_only);
  EXPECT_EQ(c.size(), 100u);
}

TEST(SharedMemory, WriteOnlyAccessIsRejectedWithEinval) {
  const std::string name = pt::unique_name("shm-wronly");
  pt::unlink_guard guard(name, shm_kind);
  auto e = thrown([&] { (void)shared_memory::open(name, open_mode::open_or_create, access::write_only); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), sys(EINVAL)) << e->what();
  EXPECT_TRUE(contains(e->what(), "\"" + name + "\""));

  std::error_code ec;
  auto shm = shared_memory::open(name, open_mode::open_or_create, access::write_only, 0600, ec);
  EXPECT_EQ(ec, sys(EINVAL));
  EXPECT_FALSE(shm.is_open());
  // Rejected before anything was created.
  struct stat st {};
  EXPECT_NE(::stat(("/dev/shm" + name).c_str(), &st), 0);

  // Nor can a mapping be write-only.
  auto rw = create(name, 4096);
  auto m = rw.map(access::write_only, 0, 0, ec);
  EXPECT_EQ(ec, sys(EINVAL));
  EXPECT_FALSE(m);
}

TEST(SharedMemory, DefaultConstructedIsClosed) {
  shared_memory shm;
  EXPECT_FALSE(shm.is_open());
  EXPECT_FALSE(shm);
  EXPECT_EQ(shm.native_handle(), -1);
  EXPECT_TRUE(shm.name().empty());
  shm.close();  // harmless
  // Operations on a closed object fail cleanly.
  std::error_code ec;
  EXPECT_EQ(shm.size(ec), 0u);
  EXPECT_EQ(ec, sys(EBADF));
  ec.clear();
  shm.resize(10, ec);
  EXPECT_EQ(ec, sys(EBADF));
  ec.clear();
  auto none = shm.map(access::read_only, 0, 0, ec);
  EXPECT_EQ(ec, sys(EBADF));
  EXPECT_FALSE(none);
  EXPECT_THROW((void)shm.size(), std::system_error);
  pipc::mapping m;
  EXPECT_FALSE(m);
  EXPECT_EQ(m.data(), nullptr);
  EXPECT_EQ(m.size(), 0u);
  m.reset();  // harmless
}

// ---------------------------------------------------------------------------------------
// Size

TEST(SharedMemory, ResizeGrowsWithZerosAndShrinks) {
  const std::string name = pt::unique_name("shm-resize");
  pt::unlink_guard guard(name, shm_kind);
  auto shm = create(name);
  const std::size_t big = 3 * page_size() + 17;
  shm.resize(big);
  EXPECT_EQ(shm.size(), big);
  {
    auto m = shm.map(access::read_only);
    ASSERT_EQ(m.size(), big);
    EXPECT_TRUE(std::all_of(m.data(), m.data() + m.size(), [](std::byte b) { return b == std::byte{0}; }));
  }
  {
    auto m = shm.map();
    std::memset(m.data(), 0xab, m.size());
  }
  shm.resize(10);
  EXPECT_EQ(shm.size(), 10u);
  std::error_code ec;
  EXPECT_EQ(shm.size(ec), 10u);
  EXPECT_FALSE(ec);
  // Growing again: the discarded tail comes back as zeros, the head is kept.
  shm.resize(page_size());
  auto m = shm.map(access::read_only);
  for (std::size_t i = 0; i < 10; ++i) EXPECT_EQ(m.data()[i], std::byte{0xab}) << i;
  for (std::size_t i = 10; i < m.size(); ++i) ASSERT_EQ(m.data()[i], std::byte{0}) << i;

  shm.resize(0, ec);
  EXPECT_FALSE(ec);
  EXPECT_EQ(shm.size(), 0u);
}

TEST(SharedMemory, ResizeOfReadOnlyOpenFails) {
  const std::string name = pt::unique_name("shm-ro-resize");
  pt::unlink_guard guard(name, shm_kind);
  auto rw = create(name, 64);
  auto ro = shared_memory::open(name, open_mode::open_only, access::read_only);
  std::error_code ec;
  ro.resize(128, ec);
  EXPECT_TRUE(ec == sys(EINVAL) || ec == sys(EBADF)) << ec.message();
  EXPECT_EQ(rw.size(), 64u);
  auto e = thrown([&] { ro.resize(128); });
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(contains(e->what(), "\"" + name + "\""));
  EXPECT_EQ(rw.size(), 64u);
}

// ---------------------------------------------------------------------------------------
// Mapping

TEST(SharedMemory, MapWholeObjectSharesBytesBetweenMappings) {
  const std::string name = pt::unique_name("shm-mapwhole");
  pt::unlink_guard guard(name, shm_kind);
  auto shm = create(name, 2 * page_size());
  auto a = shm.map();
  auto b = shm.map();
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  EXPECT_EQ(a.size(), 2 * page_size());
  EXPECT_TRUE(a.writable());
  EXPECT_NE(a.data(), b.data());
  EXPECT_EQ(a.bytes().data(), a.data());
  EXPECT_EQ(a.bytes().size(), a.size());
  for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = pattern(i);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0);
  EXPECT_EQ(mapping_perms(a.data()), "rw-s");
}

TEST(SharedMemory, MapPartAtUnalignedOffset) {
  const std::string name = pt::unique_name("shm-mappart");
  pt::unlink_guard guard(name, shm_kind);
  const std::size_t ps = page_size();
  const std::size_t total = 3 * ps;
  auto shm = create(name, total);
  auto whole = shm.map();
  for (std::size_t i = 0; i < total; ++i) whole.data()[i] = pattern(i);

  const std::size_t offset = ps + 123;
  auto part = shm.map(access::read_only, offset, 1000);
  ASSERT_TRUE(part);
  EXPECT_EQ(part.size(), 1000u);
  EXPECT_FALSE(part.writable());
  for (std::size_t i = 0; i < part.size(); ++i) ASSERT_EQ(part.data()[i], pattern(offset + i)) << i;

  // Length 0: to the end of the object.
  auto tail = shm.map(access::read_write, 77);
  ASSERT_TRUE(tail);
  EXPECT_EQ(tail.size(), total - 77);
  EXPECT_EQ(tail.data()[0], pattern(77));
  EXPECT_EQ(tail.data()[tail.size() - 1], pattern(total - 1));

  // Writes through an offset mapping land at the right place of the object.
  auto window = shm.map(access::read_write, 2 * ps + 5, 10);
  ASSERT_TRUE(window);
  std::memset(window.data(), 0xee, window.size());
  EXPECT_EQ(whole.data()[2 * ps + 4], pattern(2 * ps + 4));
  for (std::size_t i = 0; i < 10; ++i) EXPECT_EQ(whole.data()[2 * ps + 5 + i], std::byte{0xee});
  EXPECT_EQ(whole.data()[2 * ps + 15], pattern(2 * ps + 15));

  // The last byte alone.
  auto last = shm.map(access::read_only, total - 1, 1);
  ASSERT_TRUE(last);
  EXPECT_EQ(last.size(), 1u);
  EXPECT_EQ(last.data()[0], pattern(total - 1));
}

TEST(SharedMemory, ReadOnlyMappingIsNotWritable) {
  const std::string name = pt::unique_name("shm-romap");
  pt::unlink_guard guard(name, shm_kind);
  auto shm = create(name, page_size());  // opened read_write
  auto rw = shm.map();
  rw.data()[0] = std::byte{1};
  auto ro = shm.map(access::read_only);
  ASSERT_TRUE(ro);
  EXPECT_FALSE(ro.writable());
  EXPECT_EQ(ro.data()[0], std::byte{1});
  EXPECT_EQ(mapping_perms(ro.data()), "r--s");
  // A store into it fails (EFAULT from the kernel rather than SIGSEGV in the test).
  EXPECT_EQ(kernel_store(ro.data()), EFAULT);
  EXPECT_EQ(ro.data()[0], std::byte{1});
  // The same store into the writable mapping works, so the probe is sound.
  EXPECT_EQ(kernel_store(rw.data()), 0);
  EXPECT_EQ(ro.data()[0], std::byte{'k'});
}

TEST(SharedMemory, ReadWriteMapOfReadOnlyOpenFailsWithEacces) {
  const std::string name = pt::unique_name("shm-roopen");
  pt::unlink_guard guard(name, shm_kind);
  auto rw = create(name, page_size());
  auto ro = shared_memory::open(name, open_mode::open_only, access::read_only);

  auto e = thrown([&] { (void)ro.map(access::read_write); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), sys(EACCES)) << e->what();
  EXPECT_TRUE(contains(e->what(), "\"" + name + "\""));

  std::error_code ec;
  auto m = ro.map(access::read_write, 0, 0, ec);
  EXPECT_EQ(ec, sys(EACCES));
  EXPECT_FALSE(m);

  auto r = ro.map(access::read_only, 0, 0, ec);
  EXPECT_FALSE(ec);
  EXPECT_TRUE(r);
  EXPECT_FALSE(r.writable());
}

TEST(SharedMemory, MapOfEmptyObjectOrOutOfRangeFailsWithEinval) {
  const std::string name = pt::unique_name("shm-range");
  pt::unlink_guard guard(name, shm_kind);
  auto shm = create(name);
  std::error_code ec;

  auto m = shm.map(access::read_write, 0, 0, ec);  // size 0: nothing to map
  EXPECT_EQ(ec, sys(EINVAL));
  EXPECT_FALSE(m);
  auto e = thrown([&] { (void)shm.map(); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), sys(EINVAL)) << e->what();
  EXPECT_TRUE(contains(e->what(), "\"" + name + "\""));

  const std::size_t size = page_size() + 100;
  shm.resize(size);
  struct range {
    std::size_t offset, length;
  };
  for (range r : {range{0, size + 1}, range{size, 0}, range{size, 1}, range{size + 1, 0}, range{size - 1, 2},
                  range{10 * size, 1}, range{1, SIZE_MAX}, range{SIZE_MAX, 2}, range{SIZE_MAX - 10, 0}}) {
    SCOPED_TRACE(::testing::Message() << "offset " << r.offset << " length " << r.length);
    ec.clear();
    auto bad = shm.map(access::read_only, r.offset, r.length, ec);
    EXPECT_EQ(ec, sys(EINVAL)) << ec.message();
    EXPECT_FALSE(bad);
    EXPECT_THROW((void)shm.map(access::read_only, r.offset, r.length), std::system_error);
  }
  // Exactly the whole range is fine.
  auto ok = shm.map(access::read_only, 0, size, ec);
  EXPECT_FALSE(ec);
  EXPECT_EQ(ok.size(), size);
}

// ---------------------------------------------------------------------------------------
// Lifetime

TEST(SharedMemory, MappingMoveTransfersAndDestructorUnmaps) {
  const std::string name = pt::unique_name("shm-mapmove");
  pt::unlink_guard guard(name, shm_kind);
  auto shm = create(name, 2 * page_size());
  std::byte* addr = nullptr;
  {
    auto a = shm.map();
    addr = a.data();
    ASSERT_EQ(mapping_perms(addr), "rw-s");
    addr[5] = std::byte{9};

    pipc::mapping b(std::move(a));
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
    EXPECT_EQ(a.data(), nullptr);
    EXPECT_EQ(a.size(), 0u);
    EXPECT_EQ(b.data(), addr);
    EXPECT_EQ(b.size(), 2 * page_size());
    EXPECT_TRUE(b.writable());
    EXPECT_EQ(b.data()[5], std::byte{9});

    pipc::mapping c;
    c = std::move(b);
    EXPECT_FALSE(b);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(c.data(), addr);
    EXPECT_EQ(mapping_perms(addr), "rw-s");  // still mapped exactly once
  }
  EXPECT_EQ(mapping_perms(addr), "") << "destructor did not unmap";
}

TEST(SharedMemory, MappingMoveAssignmentUnmapsTheTarget) {
  const std::string name = pt::unique_name("shm-mapassign");
  pt::unlink_guard guard(name, shm_kind);
  auto shm = create(name, page_size());
  auto target = shm.map(access::read_only);
  auto source = shm.map();
  std::byte* old_addr = target.data();
  std::byte* new_addr = source.data();
  ASSERT_NE(mapping_perms(old_addr), "");
  target = std::move(source);
  EXPECT_EQ(target.data(), new_addr);
  EXPECT_TRUE(target.writable());
  EXPECT_EQ(mapping_perms(old_addr), "") << "the overwritten mapping leaked";
  EXPECT_EQ(mapping_perms(new_addr), "rw-s");

  target.reset();
  EXPECT_FALSE(target);
  EXPECT_EQ(mapping_perms(new_addr), "");
  target.reset();  // idempotent
}

TEST(SharedMemory, SharedMemoryMoveTransfersAndDestructorCloses) {
  const std::string name = pt::unique_name("shm-move");
  pt::unlink_guard guard(name, shm_kind);
  int fd = -1;
  {
    auto a = create(name, 100);
    fd = a.native_handle();
    ASSERT_TRUE(fd_is_open(fd));
    shared_memory b(std::move(a));
    EXPECT_FALSE(a.is_open());  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(a.native_handle(), -1);
    EXPECT_EQ(b.native_handle(), fd);
    EXPECT_EQ(b.name(), name);
    EXPECT_EQ(b.size(), 100u);

    shared_memory c;
    c = std::move(b);
    EXPECT_FALSE(b.is_open());  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(c.native_handle(), fd);
    EXPECT_TRUE(fd_is_open(fd));
  }
  EXPECT_FALSE(fd_is_open(fd)) << "destructor did not close fd " << fd;
}

TEST(SharedMemory, MoveAssignmentClosesTheTarget) {
  const std::string n1 = pt::unique_name("shm-massign");
  const std::string n2 = pt::unique_name("shm-massign");
  pt::unlink_guard g1(n1, shm_kind);
  pt::unlink_guard g2(n2, shm_kind);
  auto target = create(n1);
  auto source = create(n2);
  const int old_fd = target.native_handle();
  const int new_fd = source.native_handle();
  target = std::move(source);
  EXPECT_EQ(target.native_handle(), new_fd);
  EXPECT_EQ(target.name(), n2);
  EXPECT_FALSE(fd_is_open(old_fd)) << "the overwritten descriptor leaked";
}

TEST(SharedMemory, CloseKeepsMappingsAndIsIdempotent) {
  const std::string name = pt::unique_name("shm-close");
  pt::unlink_guard guard(name, shm_kind);
  auto shm = create(name, page_size());
  auto m = shm.map();
  const int fd = shm.native_handle();
  shm.close();
  EXPECT_FALSE(shm.is_open());
  EXPECT_EQ(shm.native_handle(), -1);
  EXPECT_FALSE(fd_is_open(fd));
  shm.close();
  m.data()[0] = std::byte{3};  // the mapping outlives the descriptor
  auto again = shared_memory::open(name, open_mode::open_only, access::read_only);
  EXPECT_EQ(again.map(access::read_only).data()[0], std::byte{3});
}

TEST(SharedMemory, UnlinkWhileMappedKeepsTheMappingAndRemovesTheName) {
  const std::string name = pt::unique_name("shm-unlink");
  pt::unlink_guard guard(name, shm_kind);
  auto shm = create(name, page_size());
  auto m = shm.map();
  m.data()[0] = std::byte{0x11};

  shared_memory::unlink(name);

  m.data()[1] = std::byte{0x22};
  EXPECT_EQ(m.data()[0], std::byte{0x11});
  auto m2 = shm.map(access::read_only);  // the open descriptor still works too
  EXPECT_EQ(m2.data()[1], std::byte{0x22});
  EXPECT_EQ(shm.size(), page_size());

  std::error_code ec;
  auto gone = shared_memory::open(name, open_mode::open_only, access::read_only, 0600, ec);
  EXPECT_EQ(ec, sys(ENOENT));
  EXPECT_FALSE(gone.is_open());

  // A second unlink finds nothing.
  shared_memory::unlink(name, ec);
  EXPECT_EQ(ec, sys(ENOENT));
  auto e = thrown([&] { shared_memory::unlink(name); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), sys(ENOENT));
  EXPECT_TRUE(contains(e->what(), "shm_unlink \"" + name + "\""));

  // The name is free for a new, different object.
  auto fresh = shared_memory::open(name, open_mode::create_only);
  EXPECT_EQ(fresh.size(), 0u);
  EXPECT_EQ(m.data()[0], std::byte{0x11});
}

// ---------------------------------------------------------------------------------------
// Permissions

TEST(SharedMemory, CreationModeIsMaskedByUmask) {
  const std::string n1 = pt::unique_name("shm-umask");
  const std::string n2 = pt::unique_name("shm-umask");
  const std::string n3 = pt::unique_name("shm-umask");
  pt::unlink_guard g1(n1, shm_kind);
  pt::unlink_guard g2(n2, shm_kind);
  pt::unlink_guard g3(n3, shm_kind);
  auto mode_of = [](const shared_memory& shm) -> mode_t {
    struct stat st {};
    if (::fstat(shm.native_handle(), &st) != 0) return 07777;
    return st.st_mode & 07777;
  };
  int rc = pt::run_child(
      [&] {
        ::umask(027);
        auto a = shared_memory::open(n1, open_mode::create_only, access::read_write, 0666);
        if (mode_of(a) != 0640) {
          std::fprintf(stderr, "umask 027, perms 0666: got %o\n", static_cast<unsigned>(mode_of(a)));
          return 1;
        }
        ::umask(0);
        auto b = shared_memory::open(n2, open_mode::create_only, access::read_write, 0604);
        if (mode_of(b) != 0604) {
          std::fprintf(stderr, "umask 0, perms 0604: got %o\n", static_cast<unsigned>(mode_of(b)));
          return 2;
        }
        ::umask(077);
        auto c = shared_memory::open(n3, open_mode::open_or_create, access::read_write, 0666);
        if (mode_of(c) != 0600) {
          std::fprintf(stderr, "umask 077, perms 0666: got %o\n", static_cast<unsigned>(mode_of(c)));
          return 3;
        }
        // Opening an existing object does not change its mode.
        ::umask(0);
        auto a2 = shared_memory::open(n1, open_mode::open_or_create, access::read_write, 0666);
        if (mode_of(a2) != 0640) return 4;
        return 0;
      },
      10s);
  EXPECT_EQ(rc, 0);
}

TEST(SharedMemory, OpenWithoutPermissionFailsWithEacces) {
  if (!pt::running_as_root()) GTEST_SKIP() << "needs root to switch to user nobody";
  const std::string private_name = pt::unique_name("shm-eacces");
  const std::string readable_name = pt::unique_name("shm-eacces");
  pt::unlink_guard g1(private_name, shm_kind);
  pt::unlink_guard g2(readable_name, shm_kind);
  auto priv = shared_memory::open(private_name, open_mode::create_only, access::read_write, 0600);
  auto readable = shared_memory::open(readable_name, open_mode::create_only, access::read_write, 0644);
  ASSERT_EQ(::fchmod(readable.native_handle(), 0644), 0);  // regardless of the test's umask
  readable.resize(16);

  int rc = pt::run_child(
      [&] {
        if (!pt::become_nobody()) return 10;
        std::error_code ec;
        auto a = shared_memory::open(private_name, open_mode::open_only, access::read_only, 0600, ec);
        if (ec != sys(EACCES) || a.is_open()) return 1;
        try {
          (void)shared_memory::open(private_name, open_mode::open_or_create, access::read_write);
          return 2;
        } catch (const std::system_error& e) {
          if (e.code() != sys(EACCES)) return 3;
          if (std::string_view(e.what()).find("\"" + private_name + "\"") == std::string_view::npos) return 4;
        }
        // 0644: nobody may read but not write.
        auto r = shared_memory::open(readable_name, open_mode::open_only, access::read_only, 0600, ec);
        if (ec || !r.is_open()) return 5;
        if (r.size() != 16) return 6;
        auto w = shared_memory::open(readable_name, open_mode::open_only, access::read_write, 0600, ec);
        if (ec != sys(EACCES) || w.is_open()) return 7;
        return 0;
      },
      10s);
  EXPECT_EQ(rc, 0);
}

// ---------------------------------------------------------------------------------------
// Anonymous objects and other processes

TEST(SharedMemory, AnonymousHasSizeAndNoName) {
  const std::size_t size = 3 * page_size() + 1;
  auto shm = shared_memory::anonymous(size);
  ASSERT_TRUE(shm.is_open());
  EXPECT_EQ(shm.size(), size);
  EXPECT_TRUE(shm.name().empty());
  auto m = shm.map();
  EXPECT_EQ(m.size(), size);
  EXPECT_TRUE(std::all_of(m.data(), m.data() + m.size(), [](std::byte b) { return b == std::byte{0}; }));

  std::error_code ec;
  auto other = shared_memory::anonymous(64, ec);
  EXPECT_FALSE(ec);
  EXPECT_EQ(other.size(ec), 64u);
  EXPECT_NE(other.native_handle(), shm.native_handle());
}

TEST(SharedMemory, AnonymousIsSharedWithForkedChild) {
  auto shm = shared_memory::anonymous(page_size());
  auto m = shm.map();
  const char hello[] = "from parent";
  std::memcpy(m.data(), hello, sizeof hello);

  int rc = pt::run_child(
      [&] {
        // Through the inherited mapping...
        if (std::memcmp(m.data(), hello, sizeof hello) != 0) return 1;
        // ...and through a new mapping of the inherited descriptor.
        auto mine = shm.map(access::read_write, 100, 50);
        if (mine.data()[0] != std::byte{0}) return 2;
        const char reply[] = "from child";
        std::memcpy(mine.data(), reply, sizeof reply);
        return 0;
      },
      10s);
  ASSERT_EQ(rc, 0);
  EXPECT_STREQ(reinterpret_cast<const char*>(m.data() + 100), "from child");
}

TEST(SharedMemory, ChildWritesNamedObjectParentReads) {
  const std::string name = pt::unique_name("shm-xproc");
  pt::unlink_guard guard(name, shm_kind);
  auto shm = create(name, 4096);
  auto m = shm.map(access::read_only);

  int rc = pt::run_child(
      [&] {
        std::error_code ec;
        auto other = shared_memory::open(name, open_mode::open_only, access::read_write, 0600, ec);
        if (ec) return 1;
        if (other.size() != 4096) return 2;
        auto w = other.map(access::read_write, 1000, 16, ec);
        if (ec) return 3;
        std::memcpy(w.data(), "child was here", 15);
        other.resize(8192, ec);  // visible to the parent too
        if (ec) return 4;
        return 0;
      },
      10s);
  ASSERT_EQ(rc, 0);
  EXPECT_STREQ(reinterpret_cast<const char*>(m.data() + 1000), "child was here");
  EXPECT_EQ(shm.size(), 8192u);
}

TEST(SharedMemory, ParentSeesChildWritesWhileBothRun) {
  const std::string name = pt::unique_name("shm-live");
  pt::unlink_guard guard(name, shm_kind);
  auto shm = create(name, 64);
  auto m = shm.map();
  auto* flag = reinterpret_cast<volatile std::uint32_t*>(m.data());

  child c([&] {
    auto other = shared_memory::open(name, open_mode::open_only);
    auto w = other.map();
    auto* f = reinterpret_cast<volatile std::uint32_t*>(w.data());
    f[1] = 0xC0FFEE;
    f[0] = 1;  // tell the parent
    auto until = std::chrono::steady_clock::now() + 5s;
    while (f[0] != 2) {  // wait for the answer
      if (std::chrono::steady_clock::now() > until) return 1;
      ::usleep(100);
    }
    return f[2] == 0xBEEF ? 0 : 2;
  });
  auto until = std::chrono::steady_clock::now() + 5s;
  while (flag[0] != 1 && std::chrono::steady_clock::now() < until) ::usleep(100);
  ASSERT_EQ(flag[0], 1u);
  EXPECT_EQ(flag[1], 0xC0FFEEu);
  flag[2] = 0xBEEF;
  flag[0] = 2;
  EXPECT_EQ(c.wait(), 0);
}
