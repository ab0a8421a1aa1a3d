// How pipc's throwing overloads build their exceptions.
#ifndef PIPC_SRC_ERROR_UTIL_HPP
#define PIPC_SRC_ERROR_UTIL_HPP

#include <pipc/common.hpp>
#include <pipc/error.hpp>

#include <string>
#include <string_view>
#include <system_error>

namespace pipc::detail {

// Internal layers report outcomes as int: 0, an errno value, or one of pipc's own
// conditions encoded as errc_base + pipc::errc.
inline constexpr int errc_base = 0x10000;
inline constexpr int encode(errc e) noexcept { return errc_base + static_cast<int>(e); }

// Such an int as an error_code: errno values in the system category, pipc's own in
// pipc::category(), 0 as no error.
inline std::error_code errno_code(int e) noexcept {
  if (e >= errc_base) return make_error_code(static_cast<errc>(e - errc_base));
  return {e, std::system_category()};
}

// Whether check_name refuses `name` for a reason that Linux's mq_open and mq_unlink
// report as EACCES rather than EINVAL: a '/' after the first character, or "/." and
// "/..". The C API says EACCES for those, as Linux does (src/name.cpp).
bool name_refused_with_eacces(std::string_view name, name_kind kind) noexcept;

// Throws std::system_error(ec) whose what() reads `op "name": detail: <ec message>`.
// Bytes of the name that are not printable are shown as \xHH. When ec is about the
// name itself (EINVAL/ENAMETOOLONG for an invalid name) and no detail is given, the
// detail says what is wrong with the name.
[[noreturn]] void throw_error(std::error_code ec, std::string_view op, std::string_view name, name_kind kind,
                              std::string_view detail = {});

// The same for an object without a name (anonymous memory, unnamed semaphores):
// `op: detail: <ec message>`.
[[noreturn]] void throw_unnamed_error(std::error_code ec, std::string_view op, std::string_view detail = {});

}  // namespace pipc::detail

#endif  // PIPC_SRC_ERROR_UTIL_HPP
