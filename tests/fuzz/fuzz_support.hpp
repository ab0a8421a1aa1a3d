// What the fuzz targets share: failing loudly on a broken invariant, the errors pipc
// documents, and names of this process's own so that a fuzzer never touches a queue
// that another program (or another fuzzer) uses.
#ifndef PIPC_TESTS_FUZZ_FUZZ_SUPPORT_HPP
#define PIPC_TESTS_FUZZ_FUZZ_SUPPORT_HPP

#include <pipc/error.hpp>

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace pipc::fuzz {

// A broken invariant: say which, and abort so that libFuzzer saves the input.
[[noreturn]] inline void fail(const char* file, int line, const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "%s:%d: invariant broken: %s%s%s\n", file, line, what, detail.empty() ? "" : ": ",
               detail.c_str());
  std::abort();
}

#define PIPC_FUZZ_CHECK(cond, ...) \
  ((cond) ? void(0) : ::pipc::fuzz::fail(__FILE__, __LINE__, #cond __VA_OPT__(, ) __VA_ARGS__))

// PIPC_FUZZ_TRACE=1 makes a target print each step, to follow an input by hand.
inline bool tracing() {
  static const bool on = [] {
    const char* v = std::getenv("PIPC_FUZZ_TRACE");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  return on;
}

#define PIPC_FUZZ_TRACE(...) \
  (::pipc::fuzz::tracing() ? void(std::fprintf(stderr, __VA_ARGS__)) : void(0))

inline std::string describe(const std::error_code& ec) {
  return std::string(ec.category().name()) + ":" + std::to_string(ec.value()) + " (" + ec.message() + ")";
}

inline bool one_of(int e, std::initializer_list<int> allowed) {
  for (int a : allowed) {
    if (a == e) return true;
  }
  return false;
}

// Is `ec` an error that the C++ API documents for a queue operation? errno values in
// the system category, or pipc's own conditions.
inline bool documented_queue_error(const std::error_code& ec, std::initializer_list<int> errnos) {
  if (ec.category() == pipc::category()) {
    return one_of(ec.value(), {int(errc::not_a_pipc_object), int(errc::layout_mismatch), int(errc::corrupt_state)});
  }
  return ec.category() == std::system_category() && one_of(ec.value(), errnos);
}

// "/pipcfuzz.<target>.<pid>": a prefix that no other program uses, so that a fuzzer
// can create and unlink queues freely while other tests run on the same machine.
inline std::string own_prefix(std::string_view target) {
  return "/pipcfuzz." + std::string(target) + "." + std::to_string(::getpid());
}

// Removes the engine queue files of `prefix` ("/pipcfuzz.x.123"): the queue named so
// and those named prefix + "." + anything. Returns how many it removed.
inline int remove_leftovers(std::string_view prefix) {
  int removed = 0;
  const std::string file = "pipc.mq." + std::string(prefix.substr(1));
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) {
      std::string_view entry = e->d_name;
      if (entry == file || entry.starts_with(file + ".")) {
        if (::unlinkat(::dirfd(d), e->d_name, 0) == 0) ++removed;
      }
    }
    ::closedir(d);
  }
  return removed;
}

// Removes what earlier processes of this target left when they died without running
// their exit handlers (a crash, a timeout, a kill): the queues of "/pipcfuzz.<target>.<pid>"
// whose pid is no longer a process. Called once, when a target starts.
inline void remove_stale_leftovers(std::string_view target) {
  const std::string start = "pipc.mq.pipcfuzz." + std::string(target) + ".";
  std::vector<std::string> stale;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) {
      std::string_view entry = e->d_name;
      if (!entry.starts_with(start)) continue;
      std::string_view rest = entry.substr(start.size());
      std::string pid(rest.substr(0, rest.find('.')));
      if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
      if (::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH) stale.emplace_back(entry);
    }
    ::closedir(d);
  }
  for (const std::string& file : stale) ::unlink(("/dev/shm/" + file).c_str());
}

}  // namespace pipc::fuzz

#endif  // PIPC_TESTS_FUZZ_FUZZ_SUPPORT_HPP
