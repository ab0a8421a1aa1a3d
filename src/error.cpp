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
    }
    return "unknown pipc error " + std::to_string(condition);
  }
};

}  // namespace

const std::error_category& category() noexcept {
  static const pipc_category instance;
  return instance;
}

namespace detail {

void throw_error(std::error_code ec, std::string_view op, std::string_view name, name_kind kind,
                 std::string_view detail) {
  std::string what;
  what.reserve(op.size() + name.size() + detail.size() + 8);
  what.append(op);
  if (!name.empty()) {
    what.append(" \"").append(name).append("\"");
  }
  if (detail.empty() && !name.empty() && (ec == std::errc::invalid_argument || ec == std::errc::filename_too_long)) {
    detail = describe_name_problem(name, kind);
  }
  if (!detail.empty()) {
    what.append(": ").append(detail);
  }
  throw std::system_error(ec, what);
}

}  // namespace detail
}  // namespace pipc
