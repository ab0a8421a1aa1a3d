// Name rules (check_name, describe_name_problem, max_name_length) and how the open and
// unlink calls of shared memory and named semaphores report a bad name.
#include "support.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <pipc/c/mqueue.h>

#include <cerrno>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace {

namespace pt = pipc::test;
using pipc::name_kind;

constexpr name_kind all_kinds[] = {name_kind::message_queue, name_kind::engine_queue, name_kind::shared_memory,
                                   name_kind::semaphore};

const char* kind_name(name_kind kind) {
  switch (kind) {
    case name_kind::message_queue:
      return "message_queue";
    case name_kind::engine_queue:
      return "engine_queue";
    case name_kind::shared_memory:
      return "shared_memory";
    case name_kind::semaphore:
      return "semaphore";
  }
  return "?";
}

using pipc::test::thrown;

using pipc::test::contains;

// A fresh name of exactly `length` bytes after the leading '/'.
std::string name_of_length(std::size_t length, std::string_view tag) {
  std::string name = pt::unique_name(tag);
  if (name.size() - 1 > length) return {};
  name.append(length - (name.size() - 1), 'x');
  return name;
}

const std::error_code einval(EINVAL, std::system_category());
const std::error_code enametoolong(ENAMETOOLONG, std::system_category());

}  // namespace

TEST(Names, MaxNameLengthPerKind) {
  EXPECT_EQ(pipc::max_name_length(name_kind::message_queue), 255u);
  EXPECT_EQ(pipc::max_name_length(name_kind::engine_queue), 247u);  // "/pipc.mq." + name fits NAME_MAX
  EXPECT_EQ(pipc::max_name_length(name_kind::shared_memory), 255u);
  EXPECT_EQ(pipc::max_name_length(name_kind::semaphore), 251u);
}

TEST(Names, ValidNamesAreAccepted) {
  for (name_kind kind : all_kinds) {
    SCOPED_TRACE(kind_name(kind));
    for (std::string_view name : {"/a", "/jobs", "/with.dot", "/with-dash_and_underscore", "/123",
                                  "/spaces are fine", "/\xc3\xa9t\xc3\xa9", "/sem", "/pipc.mq", "/my.sem.x"}) {
      SCOPED_TRACE(name);
      EXPECT_FALSE(pipc::check_name(name, kind));
      EXPECT_TRUE(pipc::describe_name_problem(name, kind).empty());
    }
  }
  // Reserved only for shared memory, whose objects share /dev/shm with them.
  for (name_kind kind : {name_kind::message_queue, name_kind::engine_queue, name_kind::semaphore}) {
    EXPECT_FALSE(pipc::check_name("/sem.x", kind));
    EXPECT_FALSE(pipc::check_name("/pipc.mq.x", kind));
  }
}

// In /dev/shm, "sem.NAME" is glibc's named semaphore NAME and "pipc.mq.NAME" the engine's
// queue NAME: a shared memory object of such a name would alias one of them.
TEST(Names, SharedMemoryNamesOfSemaphoresAndEngineQueuesAreReserved) {
  for (std::string_view name : {"/sem.x", "/pipc.mq.x", "/sem.", "/pipc.mq."}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(pipc::check_name(name, name_kind::shared_memory), std::errc::invalid_argument);
    EXPECT_TRUE(contains(pipc::describe_name_problem(name, name_kind::shared_memory), "reserved"));
    auto error = thrown([&] { (void)pipc::shared_memory::open(name, pipc::open_mode::open_or_create); });
    ASSERT_TRUE(error);
    EXPECT_EQ(error->code(), std::errc::invalid_argument);
    EXPECT_TRUE(contains(error->what(), "reserved")) << error->what();
  }
}

TEST(Names, InvalidNamesAreEinval) {
  using namespace std::string_view_literals;
  for (name_kind kind : all_kinds) {
    SCOPED_TRACE(kind_name(kind));
    for (std::string_view name : {""sv, "/"sv, "noslash"sv, "//"sv, "//a"sv, "/a/"sv, "/a/b"sv, "a/b"sv,
                                  "/a\0b"sv, "\0/a"sv, "/a\0"sv}) {
      SCOPED_TRACE(::testing::PrintToString(std::string(name)));
      std::error_code ec = pipc::check_name(name, kind);
      EXPECT_EQ(ec, std::errc::invalid_argument) << ec.message();
      EXPECT_EQ(ec.value(), EINVAL);
      EXPECT_FALSE(pipc::describe_name_problem(name, kind).empty());
    }
  }
}

// "/." and "/.." name no queue and no shared memory object: the kernel's mq_open and
// mq_unlink say EACCES, glibc's shm_open EINVAL. The engine created "pipc.mq." and
// "pipc.mq.." for them, so a program tested on the engine failed on the kernel (a
// review found it). pipc_mq_open and pipc_mq_unlink say EACCES, as Linux does; the
// C++ API EINVAL, as for the other bad names. A semaphore's file is "sem." plus the
// name, which glibc's sem_open accepts for them.
TEST(Names, DotAndDotDotNameNoQueueAndNoSharedMemory) {
  for (name_kind kind : all_kinds) {
    SCOPED_TRACE(kind_name(kind));
    for (const char* name : {"/.", "/.."}) {
      SCOPED_TRACE(name);
      std::error_code ec = pipc::check_name(name, kind);
      if (kind == name_kind::semaphore) {
        EXPECT_FALSE(ec);
      } else {
        EXPECT_EQ(ec.value(), EINVAL);
        EXPECT_FALSE(pipc::describe_name_problem(name, kind).empty());
      }
    }
    EXPECT_FALSE(pipc::check_name("/...", kind));
    EXPECT_FALSE(pipc::check_name("/.a", kind));
  }
  for (const char* name : {"/.", "/.."}) {
    SCOPED_TRACE(name);
    errno = 0;
    EXPECT_EQ(pipc_mq_open(name, O_RDWR | O_CREAT, 0600, nullptr), static_cast<pipc_mqd_t>(-1));
    EXPECT_EQ(errno, EACCES);
    errno = 0;
    EXPECT_EQ(pipc_mq_unlink(name), -1);
    EXPECT_EQ(errno, EACCES);
  }
}

TEST(Names, ExactlyMaxLengthIsValidAndOneMoreIsTooLong) {
  for (name_kind kind : all_kinds) {
    SCOPED_TRACE(kind_name(kind));
    const std::size_t max = pipc::max_name_length(kind);
    const std::string at_max = std::string("/").append(max, 'n');
    const std::string over = std::string("/").append(max + 1, 'n');
    EXPECT_FALSE(pipc::check_name(at_max, kind));
    EXPECT_TRUE(pipc::describe_name_problem(at_max, kind).empty());

    std::error_code ec = pipc::check_name(over, kind);
    EXPECT_EQ(ec, std::errc::filename_too_long) << ec.message();
    EXPECT_EQ(ec.value(), ENAMETOOLONG);
    EXPECT_FALSE(pipc::describe_name_problem(over, kind).empty());

    // Much longer still is too long, not something else.
    EXPECT_EQ(pipc::check_name(std::string("/").append(4 * max, 'n'), kind), std::errc::filename_too_long);
  }
  // 252 bytes is fine for shared memory and queues, too long for a semaphore.
  const std::string n252 = "/" + std::string(252, 'n');
  EXPECT_FALSE(pipc::check_name(n252, name_kind::shared_memory));
  EXPECT_FALSE(pipc::check_name(n252, name_kind::message_queue));
  EXPECT_EQ(pipc::check_name(n252, name_kind::semaphore), std::errc::filename_too_long);
  EXPECT_EQ(pipc::check_name(n252, name_kind::engine_queue), std::errc::filename_too_long);
}

TEST(Names, DescriptionsTellProblemsApart) {
  const auto kind = name_kind::shared_memory;
  std::string_view no_slash = pipc::describe_name_problem("abc", kind);
  std::string_view too_long = pipc::describe_name_problem("/" + std::string(300, 'n'), kind);
  std::string_view inner_slash = pipc::describe_name_problem("/a/b", kind);
  std::string_view empty = pipc::describe_name_problem("", kind);
  EXPECT_FALSE(no_slash.empty());
  EXPECT_FALSE(too_long.empty());
  EXPECT_FALSE(inner_slash.empty());
  EXPECT_FALSE(empty.empty());
  EXPECT_NE(no_slash, too_long);
  EXPECT_NE(inner_slash, too_long);
}

// The operating system accepts names of exactly the maximum length.
TEST(Names, SharedMemoryOfMaxLengthNameCanBeCreated) {
  const std::string name = name_of_length(pipc::max_name_length(name_kind::shared_memory), "shmmax");
  ASSERT_EQ(name.size(), 256u);
  pt::unlink_guard guard(name, name_kind::shared_memory);
  std::error_code ec;
  auto shm = pipc::shared_memory::open(name, pipc::open_mode::create_only, pipc::access::read_write,
                                       pipc::default_permissions, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(shm.is_open());
  EXPECT_EQ(shm.name(), name);
}

TEST(Names, SemaphoreOfMaxLengthNameCanBeCreated) {
  const std::string name = name_of_length(pipc::max_name_length(name_kind::semaphore), "semmax");
  ASSERT_EQ(name.size(), 252u);
  pt::unlink_guard guard(name, name_kind::semaphore);
  std::error_code ec;
  auto sem = pipc::named_semaphore::open(name, pipc::open_mode::create_only, 1, pipc::default_permissions, ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(sem.is_open());
  EXPECT_EQ(sem.name(), name);
}

TEST(Names, SharedMemoryOpenThrowsEinvalNamingTheObject) {
  for (auto mode : {pipc::open_mode::create_only, pipc::open_mode::open_only, pipc::open_mode::open_or_create}) {
    auto e = thrown([&] { (void)pipc::shared_memory::open("bad", mode); });
    ASSERT_TRUE(e.has_value()) << "no exception for \"bad\"";
    EXPECT_EQ(e->code().value(), EINVAL) << e->what();
    EXPECT_EQ(e->code().category(), std::system_category()) << e->what();
    EXPECT_TRUE(contains(e->what(), "shm_open \"bad\""));
  }
  auto e = thrown([] { (void)pipc::shared_memory::open("/a/b", pipc::open_mode::open_or_create); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), einval) << e->what();
  EXPECT_TRUE(contains(e->what(), "shm_open \"/a/b\""));
}

// The empty name is an offending name too: the message quotes it ("") and says why.
TEST(Names, EmptyNameMessageQuotesTheNameAndTheCause) {
  auto e = thrown([] { (void)pipc::shared_memory::open("", pipc::open_mode::open_or_create); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), einval) << e->what();
  EXPECT_TRUE(contains(e->what(), "shm_open \"\""));
  EXPECT_TRUE(contains(e->what(), pipc::describe_name_problem("", name_kind::shared_memory)));

  e = thrown([] { (void)pipc::named_semaphore::open("", pipc::open_mode::open_or_create, 0); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), einval) << e->what();
  EXPECT_TRUE(contains(e->what(), "sem_open \"\""));
  EXPECT_TRUE(contains(e->what(), pipc::describe_name_problem("", name_kind::semaphore)));
}

// what() is a C string: a NUL byte copied from the name would cut the message short
// and lose the cause.
TEST(Names, NulByteNameMessageKeepsTheCause) {
  using namespace std::string_view_literals;
  const std::string_view name = "/a\0b"sv;
  const std::string_view cause = pipc::describe_name_problem(name, name_kind::shared_memory);
  ASSERT_FALSE(cause.empty());
  auto e = thrown([&] { (void)pipc::shared_memory::open(name, pipc::open_mode::open_or_create); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), einval);
  EXPECT_TRUE(contains(e->what(), "shm_open \"/a"));
  EXPECT_TRUE(contains(e->what(), cause));

  e = thrown([&] { (void)pipc::named_semaphore::open(name, pipc::open_mode::open_or_create, 0); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), einval);
  EXPECT_TRUE(contains(e->what(), pipc::describe_name_problem(name, name_kind::semaphore)));
}

TEST(Names, SharedMemoryOpenThrowsEnametoolongNamingTheObject) {
  const std::string name = name_of_length(pipc::max_name_length(name_kind::shared_memory) + 1, "shmlong");
  pt::unlink_guard guard(name, name_kind::shared_memory);
  auto e = thrown([&] { (void)pipc::shared_memory::open(name, pipc::open_mode::open_or_create); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), enametoolong) << e->what();
  EXPECT_TRUE(contains(e->what(), "shm_open \"" + name + "\""));
}

TEST(Names, SharedMemoryErrorCodeOverloadsDoNotThrow) {
  std::error_code ec = std::make_error_code(std::errc::io_error);
  pipc::shared_memory shm;
  EXPECT_NO_THROW(shm = pipc::shared_memory::open("", pipc::open_mode::open_or_create, pipc::access::read_write,
                                                  0600, ec));
  EXPECT_EQ(ec, einval);
  EXPECT_FALSE(shm.is_open());
  EXPECT_EQ(shm.native_handle(), -1);

  const std::string long_name = "/" + std::string(256, 'l');
  EXPECT_NO_THROW(shm = pipc::shared_memory::open(long_name, pipc::open_mode::open_or_create,
                                                  pipc::access::read_write, 0600, ec));
  EXPECT_EQ(ec, enametoolong);
  EXPECT_FALSE(shm.is_open());

  EXPECT_NO_THROW(pipc::shared_memory::unlink("bad", ec));
  EXPECT_EQ(ec, einval);
  EXPECT_NO_THROW(pipc::shared_memory::unlink(long_name, ec));
  EXPECT_EQ(ec, enametoolong);
}

TEST(Names, SharedMemoryUnlinkThrowsNamingTheObject) {
  auto e = thrown([] { pipc::shared_memory::unlink("bad"); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), einval) << e->what();
  EXPECT_TRUE(contains(e->what(), "shm_unlink"));
  EXPECT_TRUE(contains(e->what(), "\"bad\""));
}

TEST(Names, NamedSemaphoreOpenThrowsEinvalNamingTheObject) {
  for (auto mode : {pipc::open_mode::create_only, pipc::open_mode::open_only, pipc::open_mode::open_or_create}) {
    auto e = thrown([&] { (void)pipc::named_semaphore::open("bad", mode, 0); });
    ASSERT_TRUE(e.has_value()) << "no exception for \"bad\"";
    EXPECT_EQ(e->code().value(), EINVAL) << e->what();
    EXPECT_EQ(e->code().category(), std::system_category()) << e->what();
    EXPECT_TRUE(contains(e->what(), "sem_open \"bad\""));
  }
  auto e = thrown([] { (void)pipc::named_semaphore::open("/", pipc::open_mode::open_or_create, 0); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), einval) << e->what();
  EXPECT_TRUE(contains(e->what(), "sem_open \"/\""));
}

TEST(Names, NamedSemaphoreOpenThrowsEnametoolongNamingTheObject) {
  // 252 bytes: valid for shared memory, one too many for a semaphore.
  const std::string name = name_of_length(pipc::max_name_length(name_kind::semaphore) + 1, "semlong");
  pt::unlink_guard guard(name, name_kind::semaphore);
  auto e = thrown([&] { (void)pipc::named_semaphore::open(name, pipc::open_mode::open_or_create, 0); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), enametoolong) << e->what();
  EXPECT_TRUE(contains(e->what(), "sem_open \"" + name + "\""));
}

TEST(Names, NamedSemaphoreErrorCodeOverloadsDoNotThrow) {
  std::error_code ec = std::make_error_code(std::errc::io_error);
  pipc::named_semaphore sem;
  EXPECT_NO_THROW(sem = pipc::named_semaphore::open("/x/y", pipc::open_mode::open_or_create, 0, 0600, ec));
  EXPECT_EQ(ec, einval);
  EXPECT_FALSE(sem.is_open());
  EXPECT_EQ(sem.handle(), nullptr);

  const std::string long_name = "/" + std::string(252, 'l');
  EXPECT_NO_THROW(sem = pipc::named_semaphore::open(long_name, pipc::open_mode::open_or_create, 0, 0600, ec));
  EXPECT_EQ(ec, enametoolong);
  EXPECT_FALSE(sem.is_open());

  EXPECT_NO_THROW(pipc::named_semaphore::unlink("bad", ec));
  EXPECT_EQ(ec, einval);
  EXPECT_NO_THROW(pipc::named_semaphore::unlink(long_name, ec));
  EXPECT_EQ(ec, enametoolong);
}

TEST(Names, NamedSemaphoreUnlinkThrowsNamingTheObject) {
  auto e = thrown([] { pipc::named_semaphore::unlink("bad"); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code(), einval) << e->what();
  EXPECT_TRUE(contains(e->what(), "sem_unlink"));
  EXPECT_TRUE(contains(e->what(), "\"bad\""));
}
