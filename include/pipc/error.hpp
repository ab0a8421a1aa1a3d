// pipc's error model.
//
// pipc follows std::filesystem: every fallible operation has a throwing overload that
// throws std::system_error, whose what() names the operation and the object
// (`mq_open "/jobs": Permission denied`), and a noexcept overload that reports through
// a std::error_code&. errno values travel unchanged in std::system_category(); the
// conditions that are pipc's own (a region that is not a pipc object, a layout of
// another version, corrupt shared state, an unsafe object in /dev/shm) use pipc::errc
// in pipc::category(). foreign_owner and multiply_linked compare equal to
// std::errc::permission_denied, proc_unavailable to std::errc::not_supported.
//
// Routine outcomes are not errors: a full queue for try_send, an empty one for
// try_receive and an expired deadline are results (bool / std::optional).
#ifndef PIPC_ERROR_HPP
#define PIPC_ERROR_HPP

#include <pipc/export.hpp>

#include <string>
#include <string_view>
#include <system_error>

namespace pipc {

// Conditions that no errno describes.
enum class errc {
  not_a_pipc_object = 1,  // the shared region has no pipc magic number
  layout_mismatch,        // a pipc region of another layout version
  corrupt_state,          // an index, offset, size or count out of bounds
  foreign_owner,          // O_CREAT found an object of another user in the sticky /dev/shm
  multiply_linked,        // the object has more than one name (a hard link)
  proc_unavailable,       // /proc is not mounted: the engine cannot tell live processes
};

// The category of pipc::errc; its name() is "pipc".
PIPC_EXPORT const std::error_category& category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), category()};
}

}  // namespace pipc

template <>
struct std::is_error_code_enum<pipc::errc> : std::true_type {};

#endif  // PIPC_ERROR_HPP
