#include <pipc/error.hpp>

#include "error_util.hpp"

#include <string>

namespace pipc {
namespace {

class pipc_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "pipc"; }

  std::string message(int condition) const override {
    switch (static_cast<errc>(condition)) {
      case errc::not_a_pipc_object:
        return "not a pipc object (bad magic number)";
      case errc::layout_mismatch:
        return "pipc layout version mismatch";
      case errc::corrupt_state:
        return "corrupt shared state";
      case errc::foreign_owner:
        return "owned by another user (refused with O_CREAT in a shared directory; open it without creating)";
      case errc::multiply_linked:
        return "has more than one name (a hard link), refused";
      case errc::proc_unavailable:
        return "/proc is not mounted (the shm backend needs it to tell live processes)";
    }
    return "unknown pipc error " + std::to_string(condition);
  }

  std::error_condition default_error_condition(int condition) const noexcept override {
    switch (static_cast<errc>(condition)) {
      case errc::foreign_owner:
      case errc::multiply_linked:
        return std::errc::permission_denied;
      case errc::proc_unavailable:
        return std::errc::not_supported;
      default:
        return {condition, *this};
    }
  }
};

}  // namespace

const std::error_category& category() noexcept {
  static const pipc_category instance;
  return instance;
}

namespace detail {

namespace {
[[noreturn]] void throw_with(std::error_code ec, std::string what, std::string_view detail) {
  if (!detail.empty()) what.append(": ").append(detail);
  throw std::system_error(ec, what);
}
}  // namespace

void throw_error(std::error_code ec, std::string_view op, std::string_view name, name_kind kind,
                 std::string_view detail) {
  std::string what(op);
  what.append(" \"");
  for (char c : name) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      const char hex[] = "0123456789abcdef";
      what.append("\\x").push_back(hex[byte >> 4]);
      what.push_back(hex[byte & 15]);
    } else {
      what.push_back(c);
    }
  }
  what.append("\"");
  if (detail.empty() && (ec == std::errc::invalid_argument || ec == std::errc::filename_too_long)) {
    detail = describe_name_problem(name, kind);
  }
  throw_with(ec, std::move(what), detail);
}

void throw_unnamed_error(std::error_code ec, std::string_view op, std::string_view detail) {
  throw_with(ec, std::string(op), detail);
}

}  // namespace detail
}  // namespace pipc
