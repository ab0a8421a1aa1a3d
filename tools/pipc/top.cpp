// pipc top: every queue, refreshed, sorted by activity.
#include "commands.hpp"
#include "util.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <thread>

namespace pipc_tool {
namespace {

struct sample {
  pipc::object_info object;
  std::optional<pipc::mq_stats> stats;  // engine queues whose header could be read
};

struct snapshot {
  std::chrono::steady_clock::time_point at;
  std::map<std::string, sample> queues;  // by "backend name"
  pipc::kernel_queue_source kernel;
};

std::string key_of(const pipc::object_info& o) { return std::string(pipc::to_string(o.backend)) + " " + o.name; }

snapshot take_snapshot() {
  snapshot s;
  pipc::object_listing l = pipc::list_objects();
  s.at = std::chrono::steady_clock::now();
  s.kernel = l.kernel_queues;
  for (auto& o : l.objects) {
    if (o.type != pipc::object_type::message_queue) continue;
    sample smp{o, std::nullopt};
    if (o.backend == pipc::backend::shm && !o.error) {
      std::error_code ec;
      pipc::mq_stats st = pipc::inspect_queue(o.name, o.backend, ec);
      if (!ec) smp.stats = st;
    }
    s.queues.emplace(key_of(o), std::move(smp));
  }
  return s;
}

struct row {
  std::string name;
  std::string backend;
  long depth = -1, capacity = -1, high = -1;
  // Per second; NaN when unknown (kernel queues, the first sample).
  double in = NAN, out = NAN, bytes_in = NAN, bytes_out = NAN;
  long blocked_receivers = -1, blocked_senders = -1;
  std::string problem;

  double activity() const { return (std::isnan(in) ? 0 : in) + (std::isnan(out) ? 0 : out); }
};

std::vector<row> make_rows(const snapshot* before, const snapshot& now) {
  std::vector<row> rows;
  for (const auto& [key, smp] : now.queues) {
    row r;
    r.name = smp.object.name;
    r.backend = pipc::to_string(smp.object.backend);
    r.depth = smp.object.current_messages;
    r.capacity = smp.object.max_messages;
    if (smp.object.error) r.problem = cause(smp.object.error, "queue");
    if (smp.stats) {
      const auto& st = *smp.stats;
      r.depth = st.current_messages;
      r.capacity = st.max_messages;
      r.high = st.high_water;
      r.blocked_receivers = st.blocked_receivers;
      r.blocked_senders = st.blocked_senders;
      if (before != nullptr) {
        auto it = before->queues.find(key);
        // The same queue (not one made anew under the name) with counters before.
        if (it != before->queues.end() && it->second.stats && it->second.stats->created == st.created) {
          const auto& b = *it->second.stats;
          const double dt = std::chrono::duration<double>(now.at - before->at).count();
          if (dt > 0) {
            auto rate = [dt](std::uint64_t a, std::uint64_t c) { return c >= a ? static_cast<double>(c - a) / dt : 0.0; };
            r.in = rate(b.messages_sent, st.messages_sent);
            r.out = rate(b.messages_received, st.messages_received);
            r.bytes_in = rate(b.bytes_sent, st.bytes_sent);
            r.bytes_out = rate(b.bytes_received, st.bytes_received);
          }
        }
      }
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

void sort_rows(std::vector<row>& rows, const std::string& by) {
  std::stable_sort(rows.begin(), rows.end(), [&by](const row& a, const row& b) {
    if (by == "name") return a.name < b.name;
    if (by == "depth" && a.depth != b.depth) return a.depth > b.depth;
    if (by == "high" && a.high != b.high) return a.high > b.high;
    if (by == "activity") {
      if (a.activity() != b.activity()) return a.activity() > b.activity();
      if (a.depth != b.depth) return a.depth > b.depth;
    }
    return a.name < b.name;
  });
}

std::string rate_text(double v, bool bytes) {
  if (std::isnan(v)) return "-";
  if (bytes) return format_bytes(static_cast<std::uint64_t>(std::llround(v)));
  char buf[32];
  if (v < 1000) std::snprintf(buf, sizeof buf, "%.0f", v);
  else if (v < 1e6) std::snprintf(buf, sizeof buf, "%.1fK", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.1fM", v / 1e6);
  return buf;
}

std::string render(const std::vector<row>& rows, std::size_t width) {
  table t({"NAME", "BACKEND", "DEPTH", "HIGH", "IN/s", "OUT/s", "IN B/s", "OUT B/s", "WAIT R/S"},
          {false, false, true, true, true, true, true, true, true});
  for (const row& r : rows) {
    if (!r.problem.empty()) {
      t.add({r.name, r.backend, "! " + r.problem});
      continue;
    }
    auto num = [](long v) { return v < 0 ? std::string("-") : std::to_string(v); };
    std::string wait = r.blocked_receivers < 0 ? "-" : num(r.blocked_receivers) + "/" + num(r.blocked_senders);
    t.add({r.name, r.backend, num(r.depth) + "/" + num(r.capacity), num(r.high), rate_text(r.in, false),
           rate_text(r.out, false), rate_text(r.bytes_in, true), rate_text(r.bytes_out, true), wait});
  }
  return t.render(width);
}

nlohmann::json rows_json(const std::vector<row>& rows, std::chrono::nanoseconds interval) {
  nlohmann::json j;
  j["interval_ns"] = interval.count();
  j["queues"] = nlohmann::json::array();
  auto num = [](long v) { return v < 0 ? nlohmann::json(nullptr) : nlohmann::json(v); };
  auto rate = [](double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); };
  for (const row& r : rows) {
    j["queues"].push_back({{"name", r.name},
                           {"backend", r.backend},
                           {"current_messages", num(r.depth)},
                           {"max_messages", num(r.capacity)},
                           {"high_water", num(r.high)},
                           {"messages_in_per_s", rate(r.in)},
                           {"messages_out_per_s", rate(r.out)},
                           {"bytes_in_per_s", rate(r.bytes_in)},
                           {"bytes_out_per_s", rate(r.bytes_out)},
                           {"blocked_receivers", num(r.blocked_receivers)},
                           {"blocked_senders", num(r.blocked_senders)},
                           {"error", r.problem.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.problem)}});
  }
  return j;
}

volatile sig_atomic_t stop_requested = 0;
extern "C" void on_stop_signal(int) { stop_requested = 1; }

// Raw keys from the terminal for the life of the view, and the screen restored after.
class terminal {
 public:
  terminal() {
    interactive_ = ::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &saved_) == 0;
    if (interactive_) {
      termios raw = saved_;
      raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      ::tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    std::fputs("\x1b[?1049h\x1b[?25l", stdout);  // the alternate screen, no cursor
    std::fflush(stdout);
  }
  ~terminal() {
    std::fputs("\x1b[?25h\x1b[?1049l", stdout);
    std::fflush(stdout);
    if (interactive_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  terminal(const terminal&) = delete;
  terminal& operator=(const terminal&) = delete;

  bool interactive() const { return interactive_; }

  // Waits up to `timeout` for a key; 0 if none came.
  char key(std::chrono::milliseconds timeout) const {
    pollfd p{STDIN_FILENO, POLLIN, 0};
    if (!interactive_) {
      std::this_thread::sleep_for(timeout);  // a signal ends the sleep early enough
      return 0;
    }
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return 0;
    char c = 0;
    return ::read(STDIN_FILENO, &c, 1) == 1 ? c : 0;
  }

  static std::size_t width() {
    winsize ws{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 80;
  }
  static std::size_t height() {
    winsize ws{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) return ws.ws_row;
    return 24;
  }

 private:
  termios saved_{};
  bool interactive_ = false;
};

}  // namespace

int run_top(const top_options& o) {
  const auto interval = parse_duration(o.interval, "--interval");
  if (interval < std::chrono::milliseconds(10)) fail("--interval: at least 10ms", exit_usage);
  std::string sort = o.sort;

  if (o.once) {
    snapshot first = take_snapshot();
    std::this_thread::sleep_for(interval);
    snapshot second = take_snapshot();
    auto rows = make_rows(&first, second);
    sort_rows(rows, sort);
    if (o.json) {
      std::cout << rows_json(rows, interval).dump(2) << '\n';
    } else {
      std::cout << render(rows, 0);
      if (second.kernel.kind == pipc::kernel_queue_source::unavailable) {
        std::fprintf(stderr, "pipc: note: %s\n", second.kernel.reason.c_str());
      }
    }
    return exit_ok;
  }

  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);

  terminal term;
  std::optional<snapshot> before;
  std::vector<row> rows;
  auto next = std::chrono::steady_clock::now();
  bool fresh = true;
  while (!stop_requested) {
    if (fresh) {
      snapshot now = take_snapshot();
      rows = make_rows(before ? &*before : nullptr, now);
      before = std::move(now);
      next = std::chrono::steady_clock::now() + interval;
    }
    sort_rows(rows, sort);
    std::string frame = "pipc top - " + local_time(std::chrono::system_clock::now(), "%H:%M:%S") + " - " +
                        std::to_string(rows.size()) + " queues - every " + format_duration(interval) +
                        " - sort: " + sort + "\n";
    frame += "keys: a activity  d depth  n name  h high water  q quit\n\n";
    frame += render(rows, terminal::width());
    if (before && before->kernel.kind == pipc::kernel_queue_source::unavailable) {
      frame += "\nnote: kernel queues not listed (the mqueue filesystem is not mounted)\n";
    }
    // Keep to the screen's height.
    std::size_t lines = 0, cut = frame.size();
    for (std::size_t i = 0; i < frame.size(); ++i) {
      if (frame[i] == '\n' && ++lines >= terminal::height()) {
        cut = i + 1;
        break;
      }
    }
    frame.resize(cut);
    std::string out = "\x1b[H\x1b[2J";
    for (char c : frame) {
      if (c == '\n') out += "\r\n";
      else out += c;
    }
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);

    fresh = false;
    while (!stop_requested && !fresh) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        fresh = true;
        break;
      }
      char k = term.key(left);
      if (k == 'q' || k == 'Q') return exit_ok;
      std::string by;
      if (k == 'a') by = "activity";
      if (k == 'd') by = "depth";
      if (k == 'n') by = "name";
      if (k == 'h') by = "high";
      if (!by.empty()) {
        sort = by;
        break;  // redraw now, with the same figures
      }
    }
  }
  return exit_ok;
}

}  // namespace pipc_tool
