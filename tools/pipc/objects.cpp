// pipc ls, stat and rm: every object, one object, removal.
#include "commands.hpp"
#include "util.hpp"

#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

namespace pipc_tool {
namespace {

struct filter {
  std::optional<pipc::object_type> type;
  std::optional<pipc::backend> backend;
};

filter make_filter(const selector& s) {
  filter f;
  if (!s.type.empty()) f.type = parse_type(s.type);
  if (!s.backend.empty()) f.backend = parse_backend(s.backend);
  // --backend names queues.
  if (f.backend && !f.type) f.type = pipc::object_type::message_queue;
  return f;
}

bool selected(const pipc::object_info& o, const filter& f) {
  if (f.type && o.type != *f.type) return false;
  if (f.backend && (o.type != pipc::object_type::message_queue || o.backend != *f.backend)) return false;
  return true;
}

bool matches_any(const std::string& name, const std::vector<std::string>& patterns) {
  if (patterns.empty()) return true;
  for (const std::string& p : patterns) {
    if (::fnmatch(p.c_str(), name.c_str(), 0) == 0) return true;
  }
  return false;
}

// "mq/shm", "mq/kernel", "sem", "shm".
std::string type_label(const pipc::object_info& o) {
  std::string t(pipc::to_string(o.type));
  if (o.type == pipc::object_type::message_queue) t += "/" + std::string(pipc::to_string(o.backend));
  return t;
}

// Why an object's details are missing, in a few words for a table.
std::string short_problem(const pipc::object_info& o) {
  const std::error_code& e = o.error;
  if (e == pipc::errc::layout_mismatch) return "! other layout version";
  if (e == pipc::errc::corrupt_state) return "! corrupt header";
  if (e == pipc::errc::not_a_pipc_object) return "! not a pipc object";
  return "! " + cause(e, "object");
}

std::string long_problem(const pipc::object_info& o) {
  std::string s = cause(o.error, "object");
  if (!o.detail.empty()) s += " (" + o.detail + ")";
  return s;
}

void print_kernel_note(const pipc::kernel_queue_source& k) {
  if (k.kind == pipc::kernel_queue_source::unavailable) std::fprintf(stderr, "pipc: note: %s\n", k.reason.c_str());
}

nlohmann::json kernel_source_json(const pipc::kernel_queue_source& k) {
  nlohmann::json j;
  switch (k.kind) {
    case pipc::kernel_queue_source::mounted:
      j["source"] = "mounted";
      break;
    case pipc::kernel_queue_source::private_ns:
      j["source"] = "private_mount";
      break;
    case pipc::kernel_queue_source::unavailable:
      j["source"] = "unavailable";
      break;
  }
  j["listed"] = k.kind != pipc::kernel_queue_source::unavailable;
  j["path"] = k.path.empty() ? nlohmann::json(nullptr) : nlohmann::json(k.path);
  j["reason"] = k.reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(k.reason);
  return j;
}

// The objects named `name` that the selector admits. Several without --type: fails
// (usage) listing them.
std::vector<pipc::object_info> resolve(const std::string& op, const std::string& name, const selector& s,
                                       pipc::object_listing* listing_out = nullptr) {
  // Every kind takes at least the names a semaphore does; the longest is 255.
  check_name_or_fail(op, name, pipc::name_kind::message_queue);
  pipc::object_listing listing = pipc::list_objects();
  const filter f = make_filter(s);
  std::vector<pipc::object_info> found;
  for (auto& o : listing.objects) {
    if (o.name == name && selected(o, f)) found.push_back(o);
  }
  if (found.empty()) {
    std::string kind = f.type ? std::string(kind_word(*f.type)) : "object";
    std::string msg = op + " " + quote_name(name) + ": no such " + kind;
    if (listing.kernel_queues.kind == pipc::kernel_queue_source::unavailable &&
        (!f.type || *f.type == pipc::object_type::message_queue)) {
      msg += " (kernel queues could not be listed: the mqueue filesystem is not mounted)";
    }
    fail(msg);
  }
  if (found.size() > 1) {
    std::string msg = op + " " + quote_name(name) + ": the name is taken by " + std::to_string(found.size()) + " objects (";
    for (std::size_t i = 0; i < found.size(); ++i) {
      msg += (i ? ", " : "") + type_label(found[i]);
    }
    msg += "); say which with --type mq|sem|shm (and --backend shm|kernel)";
    fail(msg, exit_usage);
  }
  if (listing_out != nullptr) *listing_out = std::move(listing);
  return found;
}

void remove_object(const pipc::object_info& o, std::error_code& ec) {
  switch (o.type) {
    case pipc::object_type::message_queue:
      pipc::message_queue::unlink(o.name, o.backend, ec);
      break;
    case pipc::object_type::semaphore:
      pipc::named_semaphore::unlink(o.name, ec);
      break;
    case pipc::object_type::shared_memory:
      pipc::shared_memory::unlink(o.name, ec);
      break;
  }
}

std::string users_text(const std::vector<pipc::process_use>& users) {
  std::string s;
  for (std::size_t i = 0; i < users.size() && i < 4; ++i) {
    s += (i ? ", " : "") + std::string("pid ") + std::to_string(users[i].pid);
    if (!users[i].command.empty()) s += " (" + users[i].command + ")";
  }
  if (users.size() > 4) s += " and " + std::to_string(users.size() - 4) + " more";
  return s;
}

// The users other than this process (which opens nothing it inspects, but may be
// asked about a name it created).
std::vector<pipc::process_use> other_users(const pipc::object_info& o, std::vector<pid_t>* unseen) {
  auto users = pipc::users_of(o, unseen);
  const pid_t me = ::getpid();
  std::erase_if(users, [me](const pipc::process_use& u) { return u.pid == me; });
  return users;
}

std::string pids_text(const std::vector<pid_t>& pids) {
  if (!pids.empty() && pids.front() == 0) return "/proc could not be read";
  std::string s = "cannot read pid";
  if (pids.size() > 1) s += "s";
  for (std::size_t i = 0; i < pids.size() && i < 5; ++i) {
    s += (i ? ", " : " ") + std::to_string(pids[i]);
    std::string comm;
    if (std::FILE* f = std::fopen(("/proc/" + std::to_string(pids[i]) + "/comm").c_str(), "re")) {
      char buf[64] = {};
      if (std::fgets(buf, sizeof buf, f) != nullptr) comm = buf;
      std::fclose(f);
    }
    while (!comm.empty() && comm.back() == '\n') comm.pop_back();
    if (!comm.empty()) s += " (" + comm + ")";
  }
  if (pids.size() > 5) s += " and " + std::to_string(pids.size() - 5) + " more";
  return s;
}

std::string count_of(std::uint64_t n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

}  // namespace

int run_ls(const ls_options& opt) {
  pipc::object_listing listing = pipc::list_objects();
  const filter f = make_filter(opt.select);
  std::vector<pipc::object_info> shown;
  for (auto& o : listing.objects) {
    if (selected(o, f) && matches_any(o.name, opt.patterns)) shown.push_back(std::move(o));
  }
  auto depth = [](const pipc::object_info& o) { return o.current_messages; };
  if (opt.sort == "size") {
    std::stable_sort(shown.begin(), shown.end(), [](auto& a, auto& b) { return a.size > b.size; });
  } else if (opt.sort == "depth") {
    std::stable_sort(shown.begin(), shown.end(), [&](auto& a, auto& b) { return depth(a) > depth(b); });
  } else if (opt.sort == "mtime") {
    std::stable_sort(shown.begin(), shown.end(), [](auto& a, auto& b) { return a.mtime > b.mtime; });
  }
  if (opt.json) {
    nlohmann::json j;
    j["objects"] = nlohmann::json::array();
    for (const auto& o : shown) j["objects"].push_back(object_json(o));
    j["kernel_queues"] = kernel_source_json(listing.kernel_queues);
    std::cout << j.dump(2) << '\n';
    return exit_ok;
  }
  // Queues: "depth/capacity × message size"; semaphores: the value; or the problem.
  table t({"TYPE", "NAME", "MODE", "OWNER", "SIZE", "MODIFIED", "STATE"}, {false, false, false, false, true, false, false});
  for (const auto& o : shown) {
    std::string state;
    if (o.error) {
      state = short_problem(o);
    } else if (o.type == pipc::object_type::message_queue) {
      state = std::to_string(o.current_messages) + "/" + std::to_string(o.max_messages) + " \u00d7 " +
              format_bytes(static_cast<std::uint64_t>(o.message_size));
    } else if (o.type == pipc::object_type::semaphore) {
      state = "value " + std::to_string(o.value);
    }
    t.add({type_label(o), escape(o.name), format_mode(o.mode), user_name(o.uid), format_bytes(o.size),
           local_time(o.mtime, "%b %d %H:%M"), state});
  }
  std::cout << t.render();
  print_kernel_note(listing.kernel_queues);
  return exit_ok;
}

int run_stat(const stat_options& opt) {
  auto found = resolve("stat", opt.name, opt.select);
  const pipc::object_info& o = found.front();
  std::optional<pipc::mq_stats> st;
  std::error_code stats_error;
  if (o.type == pipc::object_type::message_queue && !o.error) {
    pipc::mq_stats s = pipc::inspect_queue(o.name, o.backend, stats_error);
    if (!stats_error) st = s;
  }
  std::vector<pid_t> unseen;
  auto users = other_users(o, &unseen);

  if (opt.json) {
    nlohmann::json j = object_json(o);
    if (st) {
      j["queued_bytes"] = st->queued_bytes < 0 ? nlohmann::json(nullptr) : nlohmann::json(st->queued_bytes);
      j["notify_pid"] = st->notify_pid == 0 ? nlohmann::json(nullptr) : nlohmann::json(st->notify_pid);
      j["notify_signal"] = st->notify_signal == 0 ? nlohmann::json(nullptr) : nlohmann::json(signal_name(st->notify_signal));
      if (st->has_counters) {
        j["messages_sent"] = st->messages_sent;
        j["messages_received"] = st->messages_received;
        j["bytes_sent"] = st->bytes_sent;
        j["bytes_received"] = st->bytes_received;
        j["high_water"] = st->high_water;
        j["last_sender"] = st->last_sender == 0 ? nlohmann::json(nullptr) : nlohmann::json(st->last_sender);
        j["last_receiver"] = st->last_receiver == 0 ? nlohmann::json(nullptr) : nlohmann::json(st->last_receiver);
        j["created"] = rfc3339(st->created);
        j["blocked_receivers"] = st->blocked_receivers;
        j["blocked_senders"] = st->blocked_senders;
        j["send_loans"] = st->send_loans;
        j["receive_loans"] = st->receive_loans;
      }
    }
    j["processes"] = nlohmann::json::array();
    for (const auto& u : users) {
      j["processes"].push_back({{"pid", u.pid},
                                {"command", u.command},
                                {"open", u.open},
                                {"mapped", u.mapped},
                                {"notify_registrant", u.notify_registrant},
                                {"blocked_receivers", u.blocked_receivers}});
    }
    j["processes_unseen"] = unseen;
    std::cout << j.dump(2) << '\n';
    return exit_ok;
  }

  auto line = [](const char* label, const std::string& value) { std::printf("  %-12s %s\n", label, value.c_str()); };
  std::string what(kind_word(o.type));
  if (o.type == pipc::object_type::message_queue) {
    what += o.backend == pipc::backend::shm ? " (pipc engine, backend shm)" : " (kernel, backend kernel)";
  }
  std::printf("%s: %s\n", escape(o.name).c_str(), what.c_str());
  line("path", o.path);
  line("mode", format_mode(o.mode) + "  owner " + user_name(o.uid) + " (" + std::to_string(o.uid) + ")  group " +
                   group_name(o.gid) + " (" + std::to_string(o.gid) + ")");
  std::string size_text = std::to_string(o.size) + " bytes";
  if (o.type == pipc::object_type::message_queue && o.backend == pipc::backend::kernel) size_text += " queued";
  line("size", size_text);
  line("modified", local_time(o.mtime, "%Y-%m-%d %H:%M:%S %Z"));
  if (o.error) line("error", long_problem(o));
  if (o.type == pipc::object_type::semaphore && !o.error) line("value", std::to_string(o.value));
  if (st) {
    std::string depth = std::to_string(st->current_messages) + " of " + std::to_string(st->max_messages);
    if (st->has_counters) depth += " (high water " + std::to_string(st->high_water) + ")";
    line("messages", depth);
    line("message size", std::to_string(st->message_size) + " bytes at most");
    if (st->has_counters) {
      line("created", local_time(st->created, "%Y-%m-%d %H:%M:%S %Z"));
      auto last = [](pid_t p) { return p == 0 ? std::string() : ", last by pid " + std::to_string(p); };
      line("sent", count_of(st->messages_sent, "message") + ", " + count_of(st->bytes_sent, "byte") +
                       last(st->last_sender));
      line("received", count_of(st->messages_received, "message") + ", " + count_of(st->bytes_received, "byte") +
                           last(st->last_receiver));
      line("blocked", count_of(static_cast<std::uint64_t>(st->blocked_receivers), "receiver") + " in receive, " +
                          count_of(static_cast<std::uint64_t>(st->blocked_senders), "sender") + " waiting for room");
      if (st->send_loans >= 0) {
        line("loans", count_of(static_cast<std::uint64_t>(st->send_loans), "slot") + " being filled in place, " +
                          count_of(static_cast<std::uint64_t>(st->receive_loans), "message") + " being read in place");
      }
    }
    std::string notify = "none";
    if (st->notify_pid != 0) {
      notify = "pid " + std::to_string(st->notify_pid);
      if (st->notify_signal != 0) notify += " (" + signal_name(st->notify_signal) + ")";
    }
    line("notify", notify);
  } else if (stats_error) {
    line("error", cause(stats_error, "message queue"));
  }
  if (users.empty()) {
    line("processes", unseen.empty() ? "none" : "none seen (" + pids_text(unseen) + ")");
  } else {
    bool first = true;
    for (const auto& u : users) {
      std::string how;
      auto add = [&how](const std::string& s) { how += (how.empty() ? "" : ", ") + s; };
      if (u.open) add("open");
      if (u.mapped) add("mapped");
      if (u.notify_registrant) add("notification registrant");
      if (u.blocked_receivers != 0) add("blocked in receive");
      line(first ? "processes" : "", std::to_string(u.pid) + " " + (u.command.empty() ? "?" : u.command) + " (" +
                                          how + ")");
      first = false;
    }
    if (!unseen.empty()) line("", "(" + pids_text(unseen) + ")");
  }
  return exit_ok;
}

int run_rm(const rm_options& opt) {
  int status = exit_ok;
  auto report = [&status](const std::string& msg, int s = exit_failure) {
    std::fprintf(stderr, "pipc: %s\n", msg.c_str());
    status = std::max(status, s);
  };

  if (opt.orphans) {
    pipc::object_listing listing = pipc::list_objects();
    for (const auto& o : listing.objects) {
      const bool candidate = (o.type == pipc::object_type::message_queue && o.backend == pipc::backend::shm) ||
                             o.type == pipc::object_type::shared_memory;
      if (!candidate || !matches_any(o.name, opt.names)) continue;
      std::vector<pid_t> unseen;
      auto users = other_users(o, &unseen);
      if (!users.empty()) continue;
      if (!unseen.empty() && !opt.force) {
        report("rm --orphans: kept " + type_label(o) + " " + quote_name(o.name) + ": " + pids_text(unseen) +
               ", which may use it (--force: remove it anyway)");
        continue;
      }
      if (opt.dry_run) {
        std::printf("would remove %s %s\n", type_label(o).c_str(), escape(o.name).c_str());
        continue;
      }
      std::error_code ec;
      remove_object(o, ec);
      if (ec) {
        report("rm " + quote_name(o.name) + ": " + cause(ec, std::string(kind_word(o.type))));
      } else {
        std::printf("removed %s %s\n", type_label(o).c_str(), escape(o.name).c_str());
      }
    }
    return status;
  }

  for (const std::string& name : opt.names) {
    try {
      auto found = resolve("rm", name, opt.select);
      const pipc::object_info& o = found.front();
      auto users = other_users(o, nullptr);
      if (!users.empty() && !opt.force) {
        report("rm " + quote_name(name) + ": in use by " + users_text(users) + "; not removed (--force removes it anyway)");
        continue;
      }
      std::error_code ec;
      remove_object(o, ec);
      if (ec) report("rm " + quote_name(name) + ": " + cause(ec, std::string(kind_word(o.type))));
    } catch (const failure& f) {
      report(f.message, f.status);
    }
  }
  return status;
}

}  // namespace pipc_tool
