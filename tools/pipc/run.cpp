// pipc run: an unmodified program on the engine, through libpipc-preload.so
// (docs/c-api.md, "Running unmodified programs"; docs/cli.md, "run").
#include "commands.hpp"
#include "util.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace pipc_tool {

namespace {

bool readable_file(const std::string& path) { return !path.empty() && ::access(path.c_str(), R_OK) == 0; }

// The directory of this executable, from /proc/self/exe ("" if unknown).
std::string own_directory() {
  std::vector<char> buffer(4096);
  ssize_t n = ::readlink("/proc/self/exe", buffer.data(), buffer.size() - 1);
  if (n <= 0) return {};
  std::string path(buffer.data(), static_cast<std::size_t>(n));
  return path.substr(0, path.rfind('/'));
}

}  // namespace

// Where the preload library is: $PIPC_PRELOAD; in the lib directory next to the bin
// directory this pipc runs from (so an installed tree may move); in this pipc's build
// tree; in the lib directory it was installed to.
std::string find_preload_library() {
  if (const char* given = std::getenv("PIPC_PRELOAD"); given != nullptr && *given != '\0') {
    if (!readable_file(given)) fail(std::string("run: $PIPC_PRELOAD names no readable file: ") + given);
    return given;
  }
  std::vector<std::string> candidates;
  if (std::string here = own_directory(); !here.empty()) {
    candidates.push_back(here + "/../" PIPC_PRELOAD_RELATIVE_LIBDIR "/libpipc-preload.so");
  }
#ifdef PIPC_PRELOAD_BUILD_PATH
  candidates.emplace_back(PIPC_PRELOAD_BUILD_PATH);
#endif
  candidates.emplace_back(PIPC_PRELOAD_INSTALL_PATH);
  for (const std::string& path : candidates) {
    if (readable_file(path)) return path;
  }
  fail("run: libpipc-preload.so not found (looked in " + candidates.back() + "; set $PIPC_PRELOAD)");
}

int run_program(const run_options& o) {
  if (o.command.empty()) fail("run: no program given (pipc run -- PROGRAM [ARGS...])", exit_usage);
  std::string preload = find_preload_library();
  std::string value = preload;
  if (const char* previous = std::getenv("LD_PRELOAD"); previous != nullptr && *previous != '\0') {
    value += ":";
    value += previous;
  }
  if (::setenv("LD_PRELOAD", value.c_str(), 1) != 0) fail(std::string("run: setenv: ") + std::strerror(errno));
  if (o.no_poll && ::setenv("PIPC_MQ_POLLABLE", "0", 1) != 0) {
    fail(std::string("run: setenv: ") + std::strerror(errno));
  }
  std::vector<char*> args;
  for (const std::string& a : o.command) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execvp(args[0], args.data());
  fail("run " + quote_name(o.command[0]) + ": " + std::strerror(errno));
}

}  // namespace pipc_tool
