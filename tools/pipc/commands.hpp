// The pipc tool's commands, each a function of its parsed options that returns the
// exit status or throws pipc_tool::failure.
#ifndef PIPC_TOOLS_PIPC_COMMANDS_HPP
#define PIPC_TOOLS_PIPC_COMMANDS_HPP

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pipc_tool {

// Options every object command may take to say which object a name means.
struct selector {
  std::string type;     // "", "mq", "sem", "shm"
  std::string backend;  // "", "shm", "kernel"
};

struct ls_options {
  selector select;
  std::string sort = "name";  // name | size | depth | mtime
  std::vector<std::string> patterns;
  bool json = false;
};
int run_ls(const ls_options& o);

struct stat_options {
  selector select;
  std::string name;
  bool json = false;
};
int run_stat(const stat_options& o);

struct rm_options {
  selector select;
  std::vector<std::string> names;  // with --orphans: glob patterns
  bool force = false;
  bool orphans = false;
  bool dry_run = false;
};
int run_rm(const rm_options& o);

struct mq_options_cli {
  std::string name;
  std::string backend;  // "" (find it), "shm", "kernel"
  // create
  long max_messages = 10;
  std::string message_size = "8192";
  std::string mode;
  // send
  std::vector<std::string> messages;  // none or "-": stdin
  unsigned priority = 0;
  bool lines = false;
  std::string timeout;  // "" = block
  // recv
  long count = 1;
  bool follow = false;
  bool hex = false;
  bool raw = false;
  // attr
  std::string nonblocking;  // "", "on", "off"
  bool json = false;
};
int run_mq_create(const mq_options_cli& o);
int run_mq_send(const mq_options_cli& o);
int run_mq_recv(const mq_options_cli& o);
int run_mq_attr(const mq_options_cli& o);

struct sem_options_cli {
  std::string name;
  unsigned value = 0;
  std::string mode;
  std::string timeout;
};
int run_sem_create(const sem_options_cli& o);
int run_sem_post(const sem_options_cli& o);
int run_sem_wait(const sem_options_cli& o);
int run_sem_get(const sem_options_cli& o);

struct shm_options_cli {
  std::string name;
  std::string size;
  std::string mode;
  std::string offset = "0";
  std::string length;
  bool hex = false;
};
int run_shm_create(const shm_options_cli& o);
int run_shm_resize(const shm_options_cli& o);
int run_shm_cat(const shm_options_cli& o);
int run_shm_write(const shm_options_cli& o);

struct top_options {
  std::string interval = "1s";
  bool once = false;
  bool json = false;
  std::string sort = "activity";  // activity | depth | name | high
};
int run_top(const top_options& o);

struct run_options {
  bool no_poll = false;
  std::vector<std::string> command;  // the program and its arguments
};
// Execs the program under libpipc-preload.so; returns only on failure (throws).
int run_program(const run_options& o);

}  // namespace pipc_tool

#endif  // PIPC_TOOLS_PIPC_COMMANDS_HPP
