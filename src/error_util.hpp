// How pipc's throwing overloads build their exceptions.
#ifndef PIPC_SRC_ERROR_UTIL_HPP
#define PIPC_SRC_ERROR_UTIL_HPP

#include <pipc/common.hpp>

#include <string>
#include <string_view>
#include <system_error>

namespace pipc::detail {

// An errno value as an error_code of the system category (0 → no error).
inline std::error_code errno_code(int e) noexcept { return {e, std::system_category()}; }

// Throws std::system_error(ec) whose what() reads `op "name": detail: <ec message>`.
// When ec is about the name itself (EINVAL/ENAMETOOLONG for an invalid name) and no
// detail is given, the detail says what is wrong with the name.
[[noreturn]] void throw_error(std::error_code ec, std::string_view op, std::string_view name, name_kind kind,
                              std::string_view detail = {});

}  // namespace pipc::detail

#endif  // PIPC_SRC_ERROR_UTIL_HPP
