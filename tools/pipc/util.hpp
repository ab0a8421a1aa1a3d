// What the pipc tool's commands share: failures with exit codes, parsing of durations,
// sizes and modes, and formatting for humans and for JSON. Built on the public API only.
#ifndef PIPC_TOOLS_PIPC_UTIL_HPP
#define PIPC_TOOLS_PIPC_UTIL_HPP

#include <pipc/inspect.hpp>
#include <pipc/pipc.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace pipc_tool {

// Exit statuses (docs/cli.md).
inline constexpr int exit_ok = 0;
inline constexpr int exit_failure = 1;
inline constexpr int exit_usage = 2;

// Thrown by a command to end the program with a one-line message on stderr.
struct failure {
  int status;
  std::string message;  // without the "pipc: " prefix
};
[[noreturn]] void fail(std::string message, int status = exit_failure);
// `op "name": <cause>`, the cause from `ec` in words (ENOENT: "no such <kind>").
[[noreturn]] void fail(std::string_view op, std::string_view name, std::error_code ec, std::string_view kind);
std::string quote_name(std::string_view name);
std::string cause(std::error_code ec, std::string_view kind);

// "message queue", "semaphore", "shared memory object".
std::string_view kind_word(pipc::object_type t);
// "mq", "sem", "shm" from --type; nullopt for "" (any).
std::optional<pipc::object_type> parse_type(std::string_view s);
std::optional<pipc::backend> parse_backend(std::string_view s);

// Checks a name as any object kind takes it; a bad one ends the program (usage).
void check_name_or_fail(std::string_view op, std::string_view name, pipc::name_kind kind);

// "250ms", "2s", "1.5s", "1m", "100us", "0": a duration; anything else ends the
// program (usage). Units are required except for 0.
std::chrono::nanoseconds parse_duration(std::string_view text, std::string_view option);
// "4096", "4K", "4KiB", "1M", "2G": bytes.
std::uint64_t parse_size(std::string_view text, std::string_view option);
// "0600", "600", "644": permission bits.
mode_t parse_mode(std::string_view text);

// Human formatting.
std::string format_duration(std::chrono::nanoseconds d);  // "250ms", "2s", "1.5s"
std::string format_bytes(std::uint64_t n);                // "812B", "4.9K", "265K", "1.0M"
std::string format_mode(mode_t m);                        // "0600"
std::string user_name(uid_t uid);                         // "root", or the number
std::string group_name(gid_t gid);
std::string local_time(std::chrono::system_clock::time_point t, const char* format);
std::string rfc3339(std::chrono::system_clock::time_point t);  // UTC, "2025-11-30T06:14:03Z"
std::string signal_name(int signo);                       // "SIGUSR1"
// Printable text: bytes outside printable ASCII as \xHH (\n, \t, \\ as such).
std::string escape(std::string_view bytes);

// A table whose columns align; right-aligned columns are numbers.
class table {
 public:
  explicit table(std::vector<std::string> headings, std::vector<bool> right_aligned);
  void add(std::vector<std::string> row);
  // Each line is cut to `width` columns (0: no limit).
  std::string render(std::size_t width = 0) const;

 private:
  std::vector<std::vector<std::string>> rows_;
  std::vector<bool> right_;
};

// The JSON of an object as ls shows it (docs/cli.md, "Objects").
nlohmann::json object_json(const pipc::object_info& o);

// Is this name a queue of backend b? (For commands that find the backend themselves.)
std::vector<pipc::backend> queue_backends_of(std::string_view name);

}  // namespace pipc_tool

#endif  // PIPC_TOOLS_PIPC_UTIL_HPP
