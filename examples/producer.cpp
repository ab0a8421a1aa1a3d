// pipc-producer: sends prioritised messages to a POSIX message queue.
//
// Run pipc-consumer in one terminal and this in another:
//   pipc-consumer /jobs
//   pipc-producer /jobs "1 tidy the logs" "30 deploy the fix" "0 quit"
// Whichever of the two starts first creates the queue; messages sent before the
// consumer runs wait in the queue, and it then receives the most urgent first. Both
// use pipc's engine unless given --backend kernel.
#include <pipc/pipc.hpp>

#include "example_common.hpp"

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace {

constexpr const char* usage_text =
    "usage: pipc-producer [--backend shm|kernel] QUEUE [MESSAGE...]\n"
    "\n"
    "Sends messages to the POSIX message queue QUEUE (a name like /jobs), creating\n"
    "the queue if it does not exist. Each MESSAGE is \"PRIO TEXT\": a priority from 0 to\n"
    "32767 (higher is received first) and the text. Without MESSAGE arguments, reads\n"
    "one message per line from standard input. \"0 quit\" tells pipc-consumer to stop.\n"
    "\n"
    "--backend  shm (the default): pipc's engine; kernel: the kernel's mq_* queues.\n"
    "           pipc-consumer must be given the same.\n"
    "\n"
    "examples:\n"
    "  pipc-producer /jobs \"30 deploy the fix\" \"1 tidy the logs\"\n"
    "  printf '10 hello\\n0 quit\\n' | pipc-producer /jobs\n";

constexpr const char* help_hint = "Try 'pipc-producer --help'.\n";

using example::parse_backend;

struct message {
  unsigned priority = 0;
  std::string text;
};

// Parses "PRIO TEXT"; on failure says why in `problem`.
std::optional<message> parse(std::string_view line, std::string& problem) {
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  unsigned priority = 0;
  auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), priority);
  std::string_view rest(end, static_cast<std::size_t>(line.data() + line.size() - end));
  if (ec == std::errc::result_out_of_range || (ec == std::errc() && priority > pipc::max_priority)) {
    problem = "the priority must be 0 to " + std::to_string(pipc::max_priority);
    return std::nullopt;
  }
  if (ec != std::errc() || rest.size() < 2 || rest.front() != ' ') {
    problem = "expected \"PRIO TEXT\", like \"10 hello\"";
    return std::nullopt;
  }
  rest.remove_prefix(1);
  return message{priority, std::string(rest)};
}

// Sends one message. When the queue is full it says so before blocking, so that a
// producer waiting for a consumer does not look hung.
bool send(pipc::message_queue& queue, const message& m) {
  std::error_code ec;
  bool sent = queue.try_send(pipc::as_bytes(m.text), m.priority, ec);
  if (!sent && !ec) {
    std::fprintf(stderr, "pipc-producer: %s is full; waiting for a consumer to make room...\n",
                 queue.name().c_str());
    queue.send(pipc::as_bytes(m.text), m.priority, ec);
  }
  if (ec == std::errc::message_size) {
    std::fprintf(stderr, "pipc-producer: not sent: a message of %zu bytes is longer than %s takes (%ld)\n",
                 m.text.size(), queue.name().c_str(), queue.attributes().message_size);
    return false;
  }
  if (ec) {
    std::fprintf(stderr, "pipc-producer: not sent: mq_send \"%s\": %s\n", queue.name().c_str(),
                 ec.message().c_str());
    return false;
  }
  std::printf("sent prio %5u: %s\n", m.priority, m.text.c_str());
  return true;
}

int run(std::string_view name, pipc::backend backend, const std::vector<std::string_view>& arguments) {
  // Check every argument before sending any, so a typo does not send half a batch.
  std::vector<message> batch;
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    std::string problem;
    auto m = parse(arguments[i], problem);
    if (!m) {
      std::fprintf(stderr, "pipc-producer: message %zu \"%.*s\": %s\n%s", i + 1,
                   static_cast<int>(arguments[i].size()), arguments[i].data(), problem.c_str(), help_hint);
      return 2;
    }
    batch.push_back(std::move(*m));
  }

  auto queue = pipc::message_queue::open(name, pipc::open_mode::open_or_create, example::queue_options(backend, pipc::access::write_only));
  int failures = 0;
  if (!arguments.empty()) {
    for (const auto& m : batch) failures += send(queue, m) ? 0 : 1;
    return failures == 0 ? 0 : 1;
  }

  if (::isatty(STDIN_FILENO)) {
    std::fprintf(stderr, "Type one message per line as PRIO TEXT (e.g. \"30 deploy the fix\"); Ctrl-D ends.\n");
  }
  // Bad lines are skipped, not fatal: one typo should not end an interactive session.
  std::string line;
  for (long number = 1; std::getline(std::cin, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(' ') == std::string::npos) continue;
    std::string problem;
    auto m = parse(line, problem);
    if (!m) {
      std::fprintf(stderr, "pipc-producer: line %ld skipped: %s\n", number, problem.c_str());
      ++failures;
      continue;
    }
    failures += send(queue, *m) ? 0 : 1;
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Line by line, so that a pipe shows progress as it happens.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help") {
    std::fputs(usage_text, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  pipc::backend backend = pipc::backend::shm;
  if (args[0] == "--backend") {
    auto chosen = args.size() > 1 ? parse_backend(args[1]) : std::nullopt;
    if (!chosen) {
      std::fprintf(stderr, "pipc-producer: --backend takes shm or kernel\n%s", help_hint);
      return 2;
    }
    backend = *chosen;
    args.erase(args.begin(), args.begin() + 2);
  }
  if (args.empty()) {
    std::fprintf(stderr, "pipc-producer: which queue?\n%s", help_hint);
    return 2;
  }
  std::string_view name = args[0];
  if (auto problem = pipc::describe_name_problem(name, pipc::name_kind_for(backend)); !problem.empty()) {
    std::fprintf(stderr, "pipc-producer: bad queue name \"%.*s\": %.*s\n%s", static_cast<int>(name.size()),
                 name.data(), static_cast<int>(problem.size()), problem.data(), help_hint);
    return 2;
  }
  try {
    return run(name, backend, {args.begin() + 1, args.end()});
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "pipc-producer: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pipc-producer: %s\n", e.what());
  }
  return 1;
}
