// pipc-consumer: receives messages from a POSIX message queue and prints them with
// their priority, most urgent first.
//
// Run this in one terminal and pipc-producer in another:
//   pipc-consumer /jobs
//   pipc-producer /jobs "1 tidy the logs" "30 deploy the fix" "0 quit"
// It stops at a message "quit", after --count N messages, or on Ctrl-C, and then
// removes the queue's name unless --keep is given. Both programs use pipc's engine
// unless given --backend kernel.
#include <pipc/pipc.hpp>

#include "example_common.hpp"

#include <signal.h>

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

constexpr const char* usage_text =
    "usage: pipc-consumer [--backend shm|kernel] [--count N] [--keep] QUEUE\n"
    "\n"
    "Receives messages from the POSIX message queue QUEUE (a name like /jobs),\n"
    "creating the queue if it does not exist, and prints each with its priority.\n"
    "Stops at a message \"quit\", after N messages with --count N, or on Ctrl-C, then\n"
    "removes the queue unless --keep is given.\n"
    "\n"
    "--backend  shm (the default): pipc's engine; kernel: the kernel's mq_* queues.\n"
    "           pipc-producer must be given the same.\n"
    "\n"
    "example:\n"
    "  pipc-consumer /jobs            and in another terminal:\n"
    "  pipc-producer /jobs \"30 deploy the fix\" \"1 tidy the logs\" \"0 quit\"\n";

using example::parse_backend;

volatile std::sig_atomic_t stop_requested = 0;

extern "C" void request_stop(int) { stop_requested = 1; }

struct settings {
  std::string_view queue;
  pipc::backend backend = pipc::backend::shm;
  long count = 0;  // 0: until "quit"
  bool keep = false;
};

bool parse_arguments(int argc, char** argv, settings& s, std::string& problem) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--keep") {
      s.keep = true;
    } else if (args[i] == "--backend") {
      auto chosen = i + 1 < args.size() ? parse_backend(args[i + 1]) : std::nullopt;
      if (!chosen) {
        problem = "--backend takes shm or kernel";
        return false;
      }
      s.backend = *chosen;
      ++i;
    } else if (args[i] == "--count") {
      if (i + 1 == args.size()) {
        problem = "--count needs a number";
        return false;
      }
      std::string_view n = args[++i];
      auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), s.count);
      if (ec != std::errc() || end != n.data() + n.size() || s.count < 1) {
        problem = "--count needs a number of messages, 1 or more, not \"" + std::string(n) + "\"";
        return false;
      }
    } else if (args[i].starts_with("-")) {
      problem = "unknown option " + std::string(args[i]);
      return false;
    } else if (s.queue.empty()) {
      s.queue = args[i];
    } else {
      problem = "one queue only, not \"" + std::string(s.queue) + "\" and \"" + std::string(args[i]) + "\"";
      return false;
    }
  }
  if (s.queue.empty()) {
    problem = "which queue?";
    return false;
  }
  if (auto why = pipc::describe_name_problem(s.queue, pipc::name_kind_for(s.backend)); !why.empty()) {
    problem = "bad queue name \"" + std::string(s.queue) + "\": " + std::string(why);
    return false;
  }
  return true;
}

int run(const settings& s) {
  auto queue = pipc::message_queue::open(s.queue, pipc::open_mode::open_or_create, example::queue_options(s.backend, pipc::access::read_only));
  const auto attributes = queue.attributes();
  std::printf("waiting on %s (%s backend, %ld messages of up to %ld bytes; %ld queued now)\n", queue.name().c_str(),
              s.backend == pipc::backend::kernel ? "kernel" : "shm", attributes.max_messages,
              attributes.message_size, attributes.current_messages);

  // pipc retries a wait that a signal interrupts, so Ctrl-C only sets a flag, and the
  // receive wakes up now and then to look at it.
  struct sigaction action = {};
  action.sa_handler = request_stop;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  // A receive buffer must hold the largest message the queue accepts.
  std::vector<std::byte> buffer(static_cast<std::size_t>(attributes.message_size));
  long received = 0;
  bool quit = false;
  while (!stop_requested && !quit && (s.count == 0 || received < s.count)) {
    auto got = queue.receive_for(buffer, std::chrono::milliseconds(200));
    if (!got) continue;
    ++received;
    std::string_view text(reinterpret_cast<const char*>(buffer.data()), got->size);
    std::printf("prio %5u: %.*s\n", got->priority, static_cast<int>(text.size()), text.data());
    quit = text == "quit";
  }

  if (stop_requested) std::printf("interrupted\n");
  std::printf("received %ld message%s\n", received, received == 1 ? "" : "s");
  if (!s.keep) {
    // Messages still queued go with the queue; --keep leaves them for the next consumer.
    pipc::message_queue::unlink(queue.name(), s.backend);
    std::printf("removed %s\n", queue.name().c_str());
  }
  return stop_requested ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Line by line, so that a pipe shows each message as it arrives.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc == 1) {
    std::fputs(usage_text, stderr);
    return 2;
  }
  if (argc == 2 && (std::string_view(argv[1]) == "-h" || std::string_view(argv[1]) == "--help")) {
    std::fputs(usage_text, stdout);
    return 0;
  }
  settings s;
  std::string problem;
  if (!parse_arguments(argc, argv, s, problem)) {
    std::fprintf(stderr, "pipc-consumer: %s\nTry 'pipc-consumer --help'.\n", problem.c_str());
    return 2;
  }
  try {
    return run(s);
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "pipc-consumer: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pipc-consumer: %s\n", e.what());
  }
  return 1;
}
