#include "util.hpp"

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace pipc_tool {

void fail(std::string message, int status) { throw failure{status, std::move(message)}; }

std::string quote_name(std::string_view name) { return std::string("\"").append(escape(name)).append("\""); }

std::string cause(std::error_code ec, std::string_view kind) {
  if (ec == std::errc::no_such_file_or_directory) return "no such " + std::string(kind);
  if (ec == std::errc::file_exists) return "already exists";
  // strerror's text, as a clause: "permission denied".
  std::string m = ec.message();
  if (m.size() > 1 && m[0] >= 'A' && m[0] <= 'Z' && !(m[1] >= 'A' && m[1] <= 'Z')) m[0] = static_cast<char>(m[0] - 'A' + 'a');
  return m;
}

void fail(std::string_view op, std::string_view name, std::error_code ec, std::string_view kind) {
  fail(std::string(op) + " " + quote_name(name) + ": " + cause(ec, kind));
}

std::string_view kind_word(pipc::object_type t) {
  switch (t) {
    case pipc::object_type::message_queue:
      return "message queue";
    case pipc::object_type::semaphore:
      return "semaphore";
    case pipc::object_type::shared_memory:
      return "shared memory object";
  }
  return "object";
}

std::optional<pipc::object_type> parse_type(std::string_view s) {
  if (s == "mq") return pipc::object_type::message_queue;
  if (s == "sem") return pipc::object_type::semaphore;
  if (s == "shm") return pipc::object_type::shared_memory;
  return std::nullopt;
}

std::optional<pipc::backend> parse_backend(std::string_view s) {
  if (s == "shm") return pipc::backend::shm;
  if (s == "kernel") return pipc::backend::kernel;
  return std::nullopt;
}

void check_name_or_fail(std::string_view op, std::string_view name, pipc::name_kind kind) {
  if (pipc::check_name(name, kind)) {
    fail(std::string(op) + " " + quote_name(name) + ": " + std::string(pipc::describe_name_problem(name, kind)),
         exit_usage);
  }
}

std::chrono::nanoseconds parse_duration(std::string_view text, std::string_view option) {
  auto bad = [&]() -> std::chrono::nanoseconds {
    fail(std::string(option) + ": \"" + std::string(text) + "\" is not a duration (say 250ms, 2s, 1m)", exit_usage);
  };
  std::size_t digits = 0;
  while (digits < text.size() && ((text[digits] >= '0' && text[digits] <= '9') || text[digits] == '.')) ++digits;
  if (digits == 0) return bad();
  double value = 0;
  try {
    std::size_t used = 0;
    value = std::stod(std::string(text.substr(0, digits)), &used);
    if (used != digits) return bad();
  } catch (...) {
    return bad();
  }
  const std::string_view unit = text.substr(digits);
  double scale = 0;
  if (unit == "ns") scale = 1;
  else if (unit == "us" || unit == "µs") scale = 1e3;
  else if (unit == "ms") scale = 1e6;
  else if (unit == "s") scale = 1e9;
  else if (unit == "m" || unit == "min") scale = 60e9;
  else if (unit == "h") scale = 3600e9;
  else if (unit.empty() && value == 0) scale = 1;
  else return bad();
  const double ns = value * scale;
  if (!std::isfinite(ns) || ns > 1e18) return bad();
  return std::chrono::nanoseconds(static_cast<std::int64_t>(ns));
}

std::uint64_t parse_size(std::string_view text, std::string_view option) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  std::uint64_t scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "K" || unit == "k" || unit == "KiB") scale = 1ull << 10;
  else if (unit == "M" || unit == "MiB") scale = 1ull << 20;
  else if (unit == "G" || unit == "GiB") scale = 1ull << 30;
  if (ec != std::errc() || end == text.data() || scale == 0 || value > (~0ull) / scale) {
    fail(std::string(option) + ": \"" + std::string(text) + "\" is not a size (say 4096, 64K, 1M)", exit_usage);
  }
  return value * scale;
}

mode_t parse_mode(std::string_view text) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 8);
  if (ec != std::errc() || end != text.data() + text.size() || value > 07777) {
    fail("--mode: \"" + std::string(text) + "\" is not an octal mode (say 0600)", exit_usage);
  }
  return static_cast<mode_t>(value);
}

std::string format_duration(std::chrono::nanoseconds d) {
  const auto ns = d.count();
  char buf[32];
  auto fmt = [&](double v, const char* unit) {
    if (v == std::floor(v)) std::snprintf(buf, sizeof buf, "%.0f%s", v, unit);
    else std::snprintf(buf, sizeof buf, "%.3g%s", v, unit);
    return std::string(buf);
  };
  if (ns % 1'000'000'000 == 0 || ns >= 10'000'000'000) return fmt(static_cast<double>(ns) / 1e9, "s");
  if (ns >= 1'000'000) return fmt(static_cast<double>(ns) / 1e6, "ms");
  if (ns >= 1'000) return fmt(static_cast<double>(ns) / 1e3, "us");
  return fmt(static_cast<double>(ns), "ns");
}

std::string format_bytes(std::uint64_t n) {
  char buf[32];
  if (n < 1024) {
    std::snprintf(buf, sizeof buf, "%lluB", static_cast<unsigned long long>(n));
    return buf;
  }
  const char* units = "KMGTPE";
  double v = static_cast<double>(n);
  int u = -1;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  if (v < 10) std::snprintf(buf, sizeof buf, "%.1f%c", v, units[u]);
  else std::snprintf(buf, sizeof buf, "%.0f%c", v, units[u]);
  return buf;
}

std::string format_mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

std::string user_name(uid_t uid) {
  struct passwd pw {};
  struct passwd* found = nullptr;
  char buf[4096];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) return found->pw_name;
  return std::to_string(uid);
}

std::string group_name(gid_t gid) {
  struct group gr {};
  struct group* found = nullptr;
  char buf[4096];
  if (::getgrgid_r(gid, &gr, buf, sizeof buf, &found) == 0 && found != nullptr) return found->gr_name;
  return std::to_string(gid);
}

std::string local_time(std::chrono::system_clock::time_point t, const char* format) {
  const std::time_t s = std::chrono::system_clock::to_time_t(t);
  struct tm tm {};
  ::localtime_r(&s, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t s = std::chrono::system_clock::to_time_t(t);
  struct tm tm {};
  ::gmtime_r(&s, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string signal_name(int signo) {
  if (const char* abbrev = ::sigabbrev_np(signo)) return std::string("SIG") + abbrev;
  if (signo >= SIGRTMIN && signo <= SIGRTMAX) return "SIGRTMIN+" + std::to_string(signo - SIGRTMIN);
  return "signal " + std::to_string(signo);
}

std::string escape(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (unsigned char c : bytes) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

table::table(std::vector<std::string> headings, std::vector<bool> right_aligned) : right_(std::move(right_aligned)) {
  right_.resize(headings.size(), false);
  rows_.push_back(std::move(headings));
}

void table::add(std::vector<std::string> row) {
  row.resize(rows_.front().size());
  rows_.push_back(std::move(row));
}

namespace {
// Display columns of UTF-8 text (one per code point; enough for names and units).
std::size_t columns(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}
}  // namespace

std::string table::render(std::size_t width) const {
  std::vector<std::size_t> w(rows_.front().size(), 0);
  for (const auto& r : rows_) {
    for (std::size_t i = 0; i < r.size(); ++i) w[i] = std::max(w[i], columns(r[i]));
  }
  std::string out;
  for (const auto& r : rows_) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      const std::size_t pad = w[i] - columns(r[i]);
      const bool last = i + 1 == r.size();
      if (right_[i]) line.append(pad, ' ');
      line += r[i];
      if (!right_[i] && !last) line.append(pad, ' ');
      if (!last) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    if (width != 0 && columns(line) > width) {
      // Cut at a code point boundary.
      std::size_t cols = 0, i = 0;
      for (; i < line.size(); ++i) {
        if ((static_cast<unsigned char>(line[i]) & 0xc0) != 0x80 && ++cols > width) break;
      }
      line.resize(i);
    }
    out += line;
    out += '\n';
  }
  return out;
}

nlohmann::json object_json(const pipc::object_info& o) {
  nlohmann::json j;
  j["type"] = pipc::to_string(o.type);
  if (o.type == pipc::object_type::message_queue) j["backend"] = pipc::to_string(o.backend);
  j["name"] = o.name;
  j["path"] = o.path;
  j["mode"] = format_mode(o.mode);
  j["uid"] = o.uid;
  j["gid"] = o.gid;
  j["owner"] = user_name(o.uid);
  j["size"] = o.size;
  j["mtime"] = rfc3339(o.mtime);
  auto or_null = [](long v) { return v < 0 ? nlohmann::json(nullptr) : nlohmann::json(v); };
  if (o.type == pipc::object_type::message_queue) {
    j["max_messages"] = or_null(o.max_messages);
    j["message_size"] = or_null(o.message_size);
    j["current_messages"] = or_null(o.current_messages);
  }
  if (o.type == pipc::object_type::semaphore) j["value"] = or_null(o.value);
  if (o.error) {
    std::string e = o.error.message();
    if (!o.detail.empty()) e += ": " + o.detail;
    j["error"] = e;
  } else {
    j["error"] = nullptr;
  }
  return j;
}

std::vector<pipc::backend> queue_backends_of(std::string_view name) {
  std::vector<pipc::backend> found;
  for (pipc::backend b : {pipc::backend::shm, pipc::backend::kernel}) {
    std::error_code ec;
    (void)pipc::inspect_queue(name, b, ec);
    if (!ec || (ec != std::errc::no_such_file_or_directory && ec != std::errc::invalid_argument &&
                ec != std::errc::filename_too_long)) {
      found.push_back(b);
    }
  }
  return found;
}

}  // namespace pipc_tool
