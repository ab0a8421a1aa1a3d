#include "support.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <thread>

#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace pipc::test {

std::string unique_name(std::string_view tag) {
  static std::atomic<unsigned> counter{0};
  return "/pipc-t" + std::to_string(::getpid()) + "-" + std::string(tag) + "-" + std::to_string(counter++);
}

unlink_guard::~unlink_guard() {
  std::error_code ec;
  switch (kind_) {
    case name_kind::message_queue:
      message_queue::unlink(name_, backend::kernel, ec);
      break;
    case name_kind::engine_queue:
      message_queue::unlink(name_, backend::shm, ec);
      break;
    case name_kind::shared_memory:
      shared_memory::unlink(name_, ec);
      break;
    case name_kind::semaphore:
      named_semaphore::unlink(name_, ec);
      break;
  }
}

pid_t spawn(std::function<int()> body) {
  std::fflush(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    // A child must not outlive a test process that a sanitizer or a timeout killed:
    // it would wait on its queue forever.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(98);
    int code = 99;
    try {
      code = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: %s\n", static_cast<int>(::getpid()), e.what());
    } catch (...) {
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  return pid;
}

int wait_exit(pid_t pid, std::chrono::milliseconds limit) {
  if (pid < 0) return -1;
  auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (r < 0) return -1;
    if (std::chrono::steady_clock::now() >= until) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

int run_child(std::function<int()> body, std::chrono::milliseconds limit) {
  return wait_exit(spawn(std::move(body)), limit);
}

child::~child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

bool child::running() const {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return false;
  return info.si_pid == 0;
}

int child::wait(std::chrono::milliseconds limit) {
  int r = wait_exit(pid_, limit);
  pid_ = -1;
  return r;
}

bool running_as_root() { return ::geteuid() == 0; }

mq_options engine_options(long max_messages, long message_size, access how) {
  mq_options o;
  o.backend = backend::shm;
  o.access = how;
  o.max_messages = max_messages;
  o.message_size = message_size;
  return o;
}

extern "C" void pipc_test_watchdog_fired(int) {
  static const char message[] = "\n[ watchdog ] the test exceeded its time limit (a hang): exiting\n";
  ssize_t ignored = ::write(2, message, sizeof message - 1);
  (void)ignored;
  ::_exit(97);
}

watchdog::watchdog(std::chrono::seconds limit) {
  struct sigaction sa {};
  sa.sa_handler = pipc_test_watchdog_fired;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGALRM, &sa, &old_);
  ::alarm(static_cast<unsigned>(limit.count()));
}

watchdog::~watchdog() {
  ::alarm(0);
  ::sigaction(SIGALRM, &old_, nullptr);
}

bool become_nobody() {
  if (::geteuid() != 0) return false;
  gid_t groups[] = {65534};
  if (::setgroups(1, groups) != 0) return false;
  if (::setgid(65534) != 0) return false;
  if (::setuid(65534) != 0) return false;
  return ::geteuid() == 65534;
}

std::uint64_t start_time_of(pid_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr) return 0;
  char buf[1024] = {};
  std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // The command (field 2) may hold spaces and parentheses: count from the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return 0;
  for (int field = 2; field < 22 && *p != '\0';) {
    if (*p++ == ' ') ++field;
  }
  return std::strtoull(p, nullptr, 10);
}

}  // namespace pipc::test
