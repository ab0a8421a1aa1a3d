// pipc: list, inspect, create, use and remove POSIX IPC objects (docs/cli.md).
#include "commands.hpp"
#include "util.hpp"

#include <pipc/version.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>
#include <iostream>

namespace {

using namespace pipc_tool;

void add_selector(CLI::App* cmd, selector& s) {
  cmd->add_option("--type", s.type, "Only objects of this type")->check(CLI::IsMember({"mq", "sem", "shm"}));
  cmd->add_option("--backend", s.backend, "Only queues of this backend")->check(CLI::IsMember({"shm", "kernel"}));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "pipc - list, inspect, create, use and remove POSIX IPC objects: message queues\n"
      "(kernel and pipc engine), named semaphores and shared memory.",
      "pipc"};
  app.set_version_flag("--version", std::string("pipc ") + PIPC_VERSION_STRING);
  app.require_subcommand(1);
  app.footer(
      "Names are POSIX names: \"/jobs\". Durations take units: 250ms, 2s, 1m.\n"
      "Sizes: 4096, 64K, 1M. Exit status: 0 success, 1 failure, 2 usage error.\n"
      "Run 'pipc COMMAND --help' for a command's options and examples; see also pipc(1).");

  std::function<int()> run;

  // ---- ls ----
  ls_options ls;
  auto* ls_cmd = app.add_subcommand("ls", "List every POSIX IPC object on the host");
  add_selector(ls_cmd, ls.select);
  ls_cmd->add_option("--sort", ls.sort, "Order: name, size, depth or mtime (newest first)")
      ->check(CLI::IsMember({"name", "size", "depth", "mtime"}));
  ls_cmd->add_flag("--json", ls.json, "Print JSON (docs/cli.md)");
  ls_cmd->add_option("pattern", ls.patterns, "Only names matching these glob patterns ('/jobs*')");
  ls_cmd->footer(
      "Examples:\n"
      "  pipc ls\n"
      "  pipc ls --type mq --sort depth\n"
      "  pipc ls --json '/frame*'");
  ls_cmd->callback([&] { run = [&] { return run_ls(ls); }; });

  // ---- stat ----
  stat_options st;
  auto* stat_cmd = app.add_subcommand("stat", "Show everything known about one object");
  stat_cmd->add_option("name", st.name, "The object's name (\"/jobs\")")->required();
  add_selector(stat_cmd, st.select);
  stat_cmd->add_flag("--json", st.json, "Print JSON (docs/cli.md)");
  stat_cmd->footer(
      "Examples:\n"
      "  pipc stat /jobs\n"
      "  pipc stat /jobs --type mq --backend kernel --json");
  stat_cmd->callback([&] { run = [&] { return run_stat(st); }; });

  // ---- rm ----
  rm_options rm;
  auto* rm_cmd = app.add_subcommand("rm", "Remove objects (refuses those in use unless --force)");
  rm_cmd->add_option("name", rm.names, "Names; with --orphans, glob patterns that limit it");
  add_selector(rm_cmd, rm.select);
  rm_cmd->add_flag("-f,--force", rm.force,
                   "Remove even when a live process has it open or mapped; with --orphans: also when some "
                   "processes cannot be inspected");
  rm_cmd->add_flag("--orphans", rm.orphans,
                   "Remove engine queues and shared memory objects that no live process has open or mapped");
  rm_cmd->add_flag("-n,--dry-run", rm.dry_run, "With --orphans: list what would be removed");
  rm_cmd->footer(
      "Examples:\n"
      "  pipc rm /jobs\n"
      "  pipc rm --type sem /lock\n"
      "  pipc rm --orphans --dry-run\n"
      "  pipc rm --orphans '/test-*'");
  rm_cmd->callback([&] {
    if (!rm.orphans && rm.names.empty()) throw CLI::ValidationError("rm", "name the objects to remove, or say --orphans");
    if (rm.dry_run && !rm.orphans) throw CLI::ValidationError("--dry-run", "only with --orphans");
    run = [&] { return run_rm(rm); };
  });

  // ---- mq ----
  mq_options_cli mq;
  auto* mq_cmd = app.add_subcommand("mq", "Message queues: create, send, recv, attr");
  mq_cmd->require_subcommand(1);
  auto backend_option = [&](CLI::App* c) {
    c->add_option("--backend", mq.backend, "shm (the engine) or kernel; found by name when omitted")
        ->check(CLI::IsMember({"shm", "kernel"}));
  };
  auto* mq_create = mq_cmd->add_subcommand("create", "Create a queue");
  mq_create->add_option("name", mq.name, "The queue's name")->required();
  mq_create->add_option("--max-messages", mq.max_messages, "Capacity in messages (default 10)")
      ->check(CLI::PositiveNumber);
  mq_create->add_option("--message-size", mq.message_size, "Longest message in bytes (default 8192)");
  mq_create->add_option("--mode", mq.mode, "Permissions in octal, exactly (default 0600 less the umask)");
  mq_create->add_option("--backend", mq.backend, "shm (the engine, default) or kernel")
      ->check(CLI::IsMember({"shm", "kernel"}));
  mq_create->footer(
      "Examples:\n"
      "  pipc mq create /jobs --max-messages 1000 --message-size 512\n"
      "  pipc mq create /legacy --backend kernel --mode 0660");
  mq_create->callback([&] { run = [&] { return run_mq_create(mq); }; });

  auto* mq_send = mq_cmd->add_subcommand("send", "Send a message (the argument, or standard input)");
  mq_send->add_option("name", mq.name, "The queue's name")->required();
  mq_send->add_option("message", mq.messages, "The message; '-' or none: read standard input");
  mq_send->add_option("-p,--priority", mq.priority, "Priority 0-32767 (default 0)")->check(CLI::Range(0, 32767));
  mq_send->add_option("-t,--timeout", mq.timeout, "Give up after this long when the queue is full (default: wait)");
  mq_send->add_flag("--lines", mq.lines, "From standard input: one message per line");
  backend_option(mq_send);
  mq_send->footer(
      "Examples:\n"
      "  pipc mq send /jobs 'resize image 42' --priority 10\n"
      "  printf 'a\\nb\\n' | pipc mq send /jobs --lines\n"
      "  pipc mq send /jobs - --timeout 2s < request.bin");
  mq_send->callback([&] { run = [&] { return run_mq_send(mq); }; });

  auto* mq_recv = mq_cmd->add_subcommand("recv", "Receive messages and print their priority and payload");
  mq_recv->add_option("name", mq.name, "The queue's name")->required();
  auto* count = mq_recv->add_option("-n,--count", mq.count, "How many messages (default 1)")->check(CLI::PositiveNumber);
  mq_recv->add_flag("-f,--follow", mq.follow, "Keep receiving (until interrupted, or idle for --timeout)")
      ->excludes(count);
  mq_recv->add_option("-t,--timeout", mq.timeout, "Give up after waiting this long (default: wait)");
  auto* hex = mq_recv->add_flag("--hex", mq.hex, "Payload as a hex dump");
  mq_recv->add_flag("--raw", mq.raw, "Payload bytes only, nothing else")->excludes(hex);
  backend_option(mq_recv);
  mq_recv->footer(
      "Output: one line per message, \"[PRIORITY] PAYLOAD\", with bytes that are not\n"
      "printable shown as \\xHH.\n"
      "Examples:\n"
      "  pipc mq recv /jobs\n"
      "  pipc mq recv /jobs -n 10 --timeout 2s\n"
      "  pipc mq recv /jobs --follow --hex");
  mq_recv->callback([&] { run = [&] { return run_mq_recv(mq); }; });

  auto* mq_attr = mq_cmd->add_subcommand("attr", "Show a queue's attributes (mq_getattr)");
  mq_attr->add_option("name", mq.name, "The queue's name")->required();
  mq_attr->add_option("--nonblocking", mq.nonblocking,
                      "Set O_NONBLOCK on this command's own open description first (mq_setattr)")
      ->check(CLI::IsMember({"on", "off"}));
  mq_attr->add_flag("--json", mq.json, "Print JSON");
  backend_option(mq_attr);
  mq_attr->footer("Example:\n  pipc mq attr /jobs");
  mq_attr->callback([&] { run = [&] { return run_mq_attr(mq); }; });

  // ---- sem ----
  sem_options_cli sem;
  auto* sem_cmd = app.add_subcommand("sem", "Named semaphores: create, post, wait, get");
  sem_cmd->require_subcommand(1);
  auto* sem_create = sem_cmd->add_subcommand("create", "Create a semaphore");
  sem_create->add_option("name", sem.name, "The semaphore's name")->required();
  sem_create->add_option("--value", sem.value, "Initial value (default 0)");
  sem_create->add_option("--mode", sem.mode, "Permissions in octal, exactly (default 0600 less the umask)");
  sem_create->footer("Example:\n  pipc sem create /lock --value 1");
  sem_create->callback([&] { run = [&] { return run_sem_create(sem); }; });
  auto* sem_post = sem_cmd->add_subcommand("post", "Add one to a semaphore");
  sem_post->add_option("name", sem.name, "The semaphore's name")->required();
  sem_post->footer("Example:\n  pipc sem post /lock");
  sem_post->callback([&] { run = [&] { return run_sem_post(sem); }; });
  auto* sem_wait = sem_cmd->add_subcommand("wait", "Take one from a semaphore, waiting while it is 0");
  sem_wait->add_option("name", sem.name, "The semaphore's name")->required();
  sem_wait->add_option("-t,--timeout", sem.timeout, "Give up after this long (default: wait)");
  sem_wait->footer("Example:\n  pipc sem wait /lock --timeout 500ms");
  sem_wait->callback([&] { run = [&] { return run_sem_wait(sem); }; });
  auto* sem_get = sem_cmd->add_subcommand("get", "Print a semaphore's value");
  sem_get->add_option("name", sem.name, "The semaphore's name")->required();
  sem_get->footer("Example:\n  pipc sem get /lock");
  sem_get->callback([&] { run = [&] { return run_sem_get(sem); }; });

  // ---- shm ----
  shm_options_cli shm;
  auto* shm_cmd = app.add_subcommand("shm", "Shared memory: create, resize, cat, write");
  shm_cmd->require_subcommand(1);
  auto* shm_create = shm_cmd->add_subcommand("create", "Create a shared memory object");
  shm_create->add_option("name", shm.name, "The object's name")->required();
  shm_create->add_option("--size", shm.size, "Size in bytes (4096, 64K, 1M)")->required();
  shm_create->add_option("--mode", shm.mode, "Permissions in octal, exactly (default 0600 less the umask)");
  shm_create->footer("Example:\n  pipc shm create /frame --size 1M");
  shm_create->callback([&] { run = [&] { return run_shm_create(shm); }; });
  auto* shm_resize = shm_cmd->add_subcommand("resize", "Set an object's size (growth reads as zeros)");
  shm_resize->add_option("name", shm.name, "The object's name")->required();
  shm_resize->add_option("size,--size", shm.size, "The new size (4096, 64K, 1M)")->required();
  shm_resize->footer("Example:\n  pipc shm resize /frame 2M");
  shm_resize->callback([&] { run = [&] { return run_shm_resize(shm); }; });
  auto* shm_cat = shm_cmd->add_subcommand("cat", "Print an object's bytes");
  shm_cat->add_option("name", shm.name, "The object's name")->required();
  shm_cat->add_flag("--hex", shm.hex, "As a hex dump with offsets");
  shm_cat->add_option("--offset", shm.offset, "Start here (default 0)");
  shm_cat->add_option("--length", shm.length, "At most this many bytes (default: to the end)");
  shm_cat->footer(
      "Examples:\n"
      "  pipc shm cat /frame --hex --length 64\n"
      "  pipc shm cat /frame > frame.bin");
  shm_cat->callback([&] { run = [&] { return run_shm_cat(shm); }; });
  auto* shm_write = shm_cmd->add_subcommand("write", "Write standard input into an object (growing it if needed)");
  shm_write->add_option("name", shm.name, "The object's name")->required();
  shm_write->add_option("--offset", shm.offset, "Write here (default 0)");
  shm_write->footer("Example:\n  printf hello | pipc shm write /frame --offset 16");
  shm_write->callback([&] { run = [&] { return run_shm_write(shm); }; });

  // ---- top ----
  top_options top;
  auto* top_cmd = app.add_subcommand("top", "A live view of every queue, sorted by activity");
  top_cmd->add_option("-i,--interval", top.interval, "Time between refreshes (default 1s)");
  top_cmd->add_flag("--once", top.once, "Print one snapshot (rates over one interval) and exit");
  top_cmd->add_flag("--json", top.json, "With --once: print JSON");
  top_cmd->add_option("--sort", top.sort, "Order: activity, depth, name or high")
      ->check(CLI::IsMember({"activity", "depth", "name", "high"}));
  top_cmd->footer(
      "Keys: a activity, d depth, n name, h high water, q quit.\n"
      "Columns: DEPTH current/capacity, HIGH high water, IN/s and OUT/s messages sent\n"
      "and received per second, IN B/s and OUT B/s bytes, WAIT R/S receivers blocked\n"
      "and senders asleep. Kernel queues have no counters: their rates show '-'.\n"
      "Examples:\n"
      "  pipc top\n"
      "  pipc top --once --interval 500ms");
  top_cmd->callback([&] {
    if (top.json && !top.once) throw CLI::ValidationError("--json", "only with --once");
    run = [&] { return run_top(top); };
  });

  // ---- run ----
  run_options run_opts;
  auto* run_cmd = app.add_subcommand("run", "Run an unmodified mq_* program on the engine (libpipc-preload.so)");
  run_cmd->add_flag("--no-poll", run_opts.no_poll,
                    "Don't make its queue descriptors pollable (faster; for programs that never poll one)");
  run_cmd->add_option("command", run_opts.command, "The program and its arguments, after --")->required();
  run_cmd->prefix_command();
  run_cmd->footer(
      "The program's mq_* calls go to pipc's engine: no 10-message or 8 KiB caps,\n"
      "no /dev/mqueue. Its queues are engine queues (pipc ls shows them as mq/shm).\n"
      "The exit status is the program's. $PIPC_PRELOAD overrides where the library is.\n"
      "Examples:\n"
      "  pipc run -- ./server --queue /jobs\n"
      "  pipc run --no-poll -- python3 worker.py");
  run_cmd->callback([&] { run = [&] { return run_program(run_opts); }; });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "pipc: %s\nRun 'pipc --help' for usage.\n", e.what());
    return exit_usage;
  }

  try {
    return run ? run() : exit_usage;
  } catch (const failure& f) {
    std::fprintf(stderr, "pipc: %s\n", f.message.c_str());
    return f.status;
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "pipc: %s\n", e.what());
    return exit_failure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pipc: %s\n", e.what());
    return exit_failure;
  }
}
