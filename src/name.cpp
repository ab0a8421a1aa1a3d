#include <pipc/common.hpp>

#include "error_util.hpp"

#include <cerrno>
#include <climits>

namespace pipc {
namespace {
// The reasons a name can be rejected, in the order they are checked.
enum class name_problem { none, empty, no_slash, inner_slash, nul_byte, too_long, reserved, dot };

name_problem find_problem(std::string_view name, name_kind kind) noexcept {
  if (name.empty() || name == "/") return name_problem::empty;
  if (name.front() != '/') return name_problem::no_slash;
  std::string_view rest = name.substr(1);
  if (rest.find('/') != std::string_view::npos) return name_problem::inner_slash;
  if (rest.find('\0') != std::string_view::npos) return name_problem::nul_byte;
  if (rest.size() > max_name_length(kind)) return name_problem::too_long;
  // "/." and "/.." name no object: the kernel refuses them for its queues (EACCES)
  // and glibc for shared memory (EINVAL). (A semaphore's file is "sem." plus the name,
  // which glibc accepts.)
  if ((rest == "." || rest == "..") && kind != name_kind::semaphore) return name_problem::dot;
  // In /dev/shm, "pipc.mq.*" are the engine's queues and "sem.*" glibc's named
  // semaphores: a shared memory object of such a name would be one of them.
  if (kind == name_kind::shared_memory && (rest.starts_with("pipc.mq.") || rest.starts_with("sem."))) {
    return name_problem::reserved;
  }
  return name_problem::none;
}
}  // namespace

std::size_t max_name_length(name_kind kind) noexcept {
  switch (kind) {
    case name_kind::semaphore:
      return NAME_MAX - 4;  // glibc stores "/name" as /dev/shm/sem.name
    case name_kind::engine_queue:
      return NAME_MAX - 8;  // the engine stores "/name" as /dev/shm/pipc.mq.name
    case name_kind::message_queue:
    case name_kind::shared_memory:
      break;
  }
  return NAME_MAX;
}

std::error_code check_name(std::string_view name, name_kind kind) noexcept {
  switch (find_problem(name, kind)) {
    case name_problem::none:
      return {};
    case name_problem::too_long:
      return {ENAMETOOLONG, std::system_category()};
    default:
      return {EINVAL, std::system_category()};
  }
}

namespace detail {
bool name_refused_with_eacces(std::string_view name, name_kind kind) noexcept {
  const name_problem problem = find_problem(name, kind);
  return problem == name_problem::inner_slash || problem == name_problem::dot;
}
}  // namespace detail

std::string_view describe_name_problem(std::string_view name, name_kind kind) noexcept {
  switch (find_problem(name, kind)) {
    case name_problem::none:
      return {};
    case name_problem::empty:
      return "a name needs at least one character after the leading '/'";
    case name_problem::no_slash:
      return "a name must begin with '/'";
    case name_problem::inner_slash:
      return "a name may contain no '/' after the first character";
    case name_problem::nul_byte:
      return "a name may not contain a NUL byte";
    case name_problem::dot:
      return "\"/.\" and \"/..\" are not names of objects";
    case name_problem::too_long:
      switch (kind) {
        case name_kind::semaphore:
          return "a semaphore name may have at most 251 bytes after the '/'";
        case name_kind::engine_queue:
          return "a queue name of the shm backend may have at most 247 bytes after the '/'";
        case name_kind::message_queue:
        case name_kind::shared_memory:
          break;
      }
      return "a name may have at most 255 (NAME_MAX) bytes after the '/'";
    case name_problem::reserved:
      return "shared memory names beginning with \"pipc.mq.\" (the shm backend's queues) or \"sem.\" (named "
             "semaphores) are reserved";
  }
  return {};
}

}  // namespace pipc
