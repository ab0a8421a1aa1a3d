// Helpers for the GoogleTest cases of the C API (pipc/c/mqueue.h).
#ifndef PIPC_TESTS_CAPI_SUPPORT_HPP
#define PIPC_TESTS_CAPI_SUPPORT_HPP

#include <pipc/c/mqueue.h>

#include <fcntl.h>

#include <chrono>
#include <ctime>
#include <string>

namespace pipc::test {

// What pipc_mq_open returns on failure.
inline constexpr pipc_mqd_t kBadMqd = static_cast<pipc_mqd_t>(-1);

// Creates (or opens) engine queue `name` read-write through the C API, with `flags`
// added to O_RDWR | O_CREAT.
inline pipc_mqd_t capi_create(const std::string& name, long maxmsg, long msgsize, int flags = 0) {
  pipc_mq_attr attr{};
  attr.mq_maxmsg = maxmsg;
  attr.mq_msgsize = msgsize;
  return pipc_mq_open(name.c_str(), O_RDWR | O_CREAT | flags, 0600, &attr);
}

// The CLOCK_REALTIME time `d` from now, as the timed calls take it.
inline timespec realtime_in(std::chrono::milliseconds d) {
  auto t = std::chrono::system_clock::now() + d;
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  return {static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

}  // namespace pipc::test

#endif  // PIPC_TESTS_CAPI_SUPPORT_HPP
