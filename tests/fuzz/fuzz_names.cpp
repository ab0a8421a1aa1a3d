// fuzz_names: object names and queue attributes, from arbitrary bytes.
//
// 1. check_name, describe_name_problem and max_name_length against a model of the
//    rules (README, "Opening"): one leading '/', no other '/', no NUL, 1 to
//    max_name_length(kind) bytes after the slash, and for shared memory not a name of
//    the engine's or glibc's files in /dev/shm ("pipc.mq.*", "sem.*"; docs/engine.md);
//    EINVAL or ENAMETOOLONG otherwise.
// 2. The public open path of every object kind with the same name: an invalid name
//    fails with check_name's error before anything reaches the system.
// 3. message_queue::open on the engine with fuzzed mode, access, capacity, message
//    size, permissions and O_NONBLOCK, under a name of this process's own (the fuzzed
//    name's tail after a fixed prefix): success with exactly the attributes asked
//    for, or EINVAL for attributes outside 1 … 1 048 576 messages / 1 … 16 MiB, EEXIST,
//    ENOENT; then a second open, and unlink (ENOENT the second time).
#include "fuzz_support.hpp"

#include <pipc/pipc.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace {

using namespace pipc;
using pipc::fuzz::describe;

constexpr name_kind all_kinds[] = {name_kind::message_queue, name_kind::engine_queue, name_kind::shared_memory,
                                   name_kind::semaphore};

// The documented limits (README, "Opening"; include/pipc/common.hpp).
std::size_t documented_limit(name_kind kind) {
  switch (kind) {
    case name_kind::semaphore:
      return 251;
    case name_kind::engine_queue:
      return 247;
    case name_kind::message_queue:
    case name_kind::shared_memory:
      break;
  }
  return 255;
}

// The rules, written independently of src/name.cpp. errno values travel in the
// system category (include/pipc/error.hpp).
std::error_code expected_name_error(std::string_view name, name_kind kind) {
  bool shape_ok = name.size() >= 2 && name[0] == '/';
  for (std::size_t i = 1; shape_ok && i < name.size(); ++i) {
    if (name[i] == '/' || name[i] == '\0') shape_ok = false;
  }
  if (!shape_ok) return {EINVAL, std::system_category()};
  if (name.size() - 1 > documented_limit(kind)) return {ENAMETOOLONG, std::system_category()};
  // A shared memory object may not take the name of an engine queue's or a named
  // semaphore's file in /dev/shm.
  std::string_view rest = name.substr(1);
  if (kind == name_kind::shared_memory && (rest.starts_with("pipc.mq.") || rest.starts_with("sem."))) {
    return {EINVAL, std::system_category()};
  }
  // "/." and "/.." name no queue and no shared memory object (a semaphore's file is
  // "sem." plus the name, which glibc accepts).
  if ((rest == "." || rest == "..") && kind != name_kind::semaphore) return {EINVAL, std::system_category()};
  return {};
}

void check_name_rules(std::string_view name) {
  for (name_kind kind : all_kinds) {
    PIPC_FUZZ_CHECK(max_name_length(kind) == documented_limit(kind));
    std::error_code got = check_name(name, kind);
    std::error_code want = expected_name_error(name, kind);
    PIPC_FUZZ_CHECK(got == want, "check_name gave " + describe(got) + ", the rules say " + describe(want));
    std::string_view why = describe_name_problem(name, kind);
    PIPC_FUZZ_CHECK(why.empty() == !got, "describe_name_problem disagrees with check_name");
  }
}

// Every public open rejects an invalid name with check_name's error, and touches nothing.
void check_opens_reject(const std::string& name) {
  std::error_code want_q = check_name(name, name_kind::engine_queue);
  std::error_code want_k = check_name(name, name_kind::message_queue);
  std::error_code want_shm = check_name(name, name_kind::shared_memory);
  std::error_code want_sem = check_name(name, name_kind::semaphore);
  std::error_code ec;
  if (want_q) {
    mq_options o;
    auto q = message_queue::open(name, open_mode::open_or_create, o, ec);
    PIPC_FUZZ_CHECK(ec == want_q && !q, describe(ec));
    message_queue::unlink(name, backend::shm, ec);
    PIPC_FUZZ_CHECK(ec == want_q, describe(ec));
  }
  if (want_k) {
    mq_options o;
    o.backend = backend::kernel;
    auto q = message_queue::open(name, open_mode::open_or_create, o, ec);
    PIPC_FUZZ_CHECK(ec == want_k && !q, describe(ec));
    message_queue::unlink(name, backend::kernel, ec);
    PIPC_FUZZ_CHECK(ec == want_k, describe(ec));
  }
  if (want_shm) {
    auto s = shared_memory::open(name, open_mode::open_or_create, pipc::access::read_write, 0600, ec);
    PIPC_FUZZ_CHECK(ec == want_shm, describe(ec));
    shared_memory::unlink(name, ec);
    PIPC_FUZZ_CHECK(ec == want_shm, describe(ec));
  }
  if (want_sem) {
    auto s = named_semaphore::open(name, open_mode::open_or_create, 0, 0600, ec);
    PIPC_FUZZ_CHECK(ec == want_sem, describe(ec));
    named_semaphore::unlink(name, ec);
    PIPC_FUZZ_CHECK(ec == want_sem, describe(ec));
  }
}

// The bytes of the region that an engine queue of these attributes needs, by the
// layout's formula (src/engine/layout.hpp), to keep the fuzzer's queues small.
std::uint64_t region_estimate(std::uint64_t max_messages, std::uint64_t message_size) {
  std::uint64_t ring = std::bit_ceil(max_messages + 1);
  std::uint64_t stride = (32 + message_size + 63) / 64 * 64;
  return 270336 + 2 * ring * 8 + max_messages * stride;
}

long fuzzed_attribute(FuzzedDataProvider& in, long cap) {
  switch (in.ConsumeIntegralInRange<int>(0, 5)) {
    case 0:
      return in.ConsumeIntegral<long>();  // anything, mostly out of range
    case 1:
      return cap + in.ConsumeIntegralInRange<long>(-2, 2);  // about the cap
    case 2:
      return in.ConsumeIntegralInRange<long>(-2, 2);  // about zero
    default:
      return in.ConsumeIntegralInRange<long>(1, 300);
  }
}

void check_queue_open(FuzzedDataProvider& in, std::string_view fuzzed_name) {
  // Our own prefix, then as much of the fuzzed name's tail as its shape allows.
  static const std::string prefix = pipc::fuzz::own_prefix("names") + ".";
  std::string name = prefix;
  for (char c : fuzzed_name.substr(fuzzed_name.empty() ? 0 : 1)) {
    if (c != '/' && c != '\0') name += c;
  }
  if (in.ConsumeBool()) name.resize(std::min<std::size_t>(name.size(), 1 + 247));  // mostly valid
  std::error_code name_error = expected_name_error(name, name_kind::engine_queue);

  mq_options o;
  o.backend = backend::shm;
  o.max_messages = fuzzed_attribute(in, 1 << 20);
  o.message_size = fuzzed_attribute(in, 16 << 20);
  o.permissions = in.ConsumeIntegral<mode_t>() & 07777;
  o.nonblocking = in.ConsumeBool();
  o.access = static_cast<pipc::access>(in.ConsumeIntegralInRange<int>(0, 2));
  o.spin = std::chrono::nanoseconds(in.ConsumeIntegralInRange<int>(0, 1000));
  auto mode = static_cast<open_mode>(in.ConsumeIntegralInRange<int>(0, 2));

  bool attributes_ok = o.max_messages >= 1 && o.max_messages <= (1 << 20) && o.message_size >= 1 &&
                       o.message_size <= (16 << 20);
  // A valid but large queue costs the fuzzer time and memory and tests nothing new.
  if (!name_error && attributes_ok && mode != open_mode::open_only &&
      region_estimate(std::uint64_t(o.max_messages), std::uint64_t(o.message_size)) > (8u << 20)) {
    return;
  }

  std::error_code ec;
  auto q = message_queue::open(name, mode, o, ec);
  if (name_error) {
    PIPC_FUZZ_CHECK(ec == name_error && !q, describe(ec));
    return;
  }
  if (mode == open_mode::open_only) {
    PIPC_FUZZ_CHECK(ec == std::errc::no_such_file_or_directory && !q, describe(ec));
    return;
  }
  if (!attributes_ok) {
    PIPC_FUZZ_CHECK(ec == std::errc::invalid_argument && !q, describe(ec));
    PIPC_FUZZ_CHECK(!message_queue::open(name, open_mode::open_only, o, ec));
    PIPC_FUZZ_CHECK(ec == std::errc::no_such_file_or_directory, "a rejected open left a queue: " + describe(ec));
    return;
  }
  PIPC_FUZZ_CHECK(!ec && q, "open with valid attributes: " + describe(ec));
  PIPC_FUZZ_CHECK(q.name() == name && q.backend() == backend::shm);

  mq_attributes a = q.attributes(ec);
  PIPC_FUZZ_CHECK(!ec, describe(ec));
  PIPC_FUZZ_CHECK(a.max_messages == o.max_messages && a.message_size == o.message_size &&
                  a.current_messages == 0 && a.nonblocking == o.nonblocking);

  // Attributes of a second open are the creator's; create_only is EEXIST.
  mq_options other = o;
  other.max_messages = fuzzed_attribute(in, 1 << 20);
  other.message_size = fuzzed_attribute(in, 16 << 20);
  auto again = message_queue::open(name, open_mode::create_only, other, ec);
  PIPC_FUZZ_CHECK(ec == std::errc::file_exists && !again, describe(ec));
  again = message_queue::open(name, in.ConsumeBool() ? open_mode::open_only : open_mode::open_or_create, other, ec);
  PIPC_FUZZ_CHECK(!ec && again, describe(ec));
  a = again.attributes();
  PIPC_FUZZ_CHECK(a.max_messages == o.max_messages && a.message_size == o.message_size);

  message_queue::unlink(name, backend::shm, ec);
  PIPC_FUZZ_CHECK(!ec, describe(ec));
  message_queue::unlink(name, backend::shm, ec);
  PIPC_FUZZ_CHECK(ec == std::errc::no_such_file_or_directory, describe(ec));
  // The open descriptors keep working after unlink.
  PIPC_FUZZ_CHECK(q.attributes(ec).max_messages == o.max_messages && !ec);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  pipc::fuzz::remove_stale_leftovers("names");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  std::string name = in.ConsumeRandomLengthString(300);
  check_name_rules(name);
  check_opens_reject(name);
  check_queue_open(in, name);
  return 0;
}
