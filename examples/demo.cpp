// pipc-demo: several processes share one prioritised message queue and one counter.
//
//   pipc-demo [--backend shm|kernel]
//
// The parent creates three named POSIX objects:
//   /pipc-demo-<pid>          a message queue (10 messages of up to 256 bytes), kept
//                             by pipc's engine (shm, the default) or by the kernel
//   /pipc-demo-<pid>-counter  shared memory holding a counter of the messages sent
//   /pipc-demo-<pid>-lock     a named semaphore that guards the counter
// then forks three producers, which open the objects by name as unrelated programs
// would, and send three jobs each at different priorities. Once they are done it forks
// a consumer, which finds all nine jobs waiting and receives them most urgent first.
// Finally the parent checks the counter and removes the three names, on error paths
// too.
#include <pipc/pipc.hpp>

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace {

constexpr int producer_count = 3;
constexpr int jobs_per_producer = 3;
constexpr long queue_capacity = 10;
constexpr long message_size = 256;

// The consumer starts only after every job is queued, so all of them must fit.
static_assert(producer_count * jobs_per_producer <= queue_capacity);

constexpr unsigned urgent = 30;
constexpr unsigned normal = 10;
constexpr unsigned low = 1;

const char* priority_name(unsigned priority) {
  switch (priority) {
    case urgent: return "urgent";
    case normal: return "normal";
    case low: return "low";
    default: return "?";
  }
}

// Lives in the shared memory object. Every access holds the named semaphore.
struct tally {
  long messages_sent = 0;
};

// Set when the parent is asked to stop (Ctrl-C, kill). It only notes the request, so
// that it goes on to clean up as after any other error instead of dying with the
// demo's objects left behind.
volatile std::sig_atomic_t stop_requested = 0;

extern "C" void request_stop(int) { stop_requested = 1; }

void throw_if_stop_requested() {
  if (stop_requested) throw std::runtime_error("interrupted");
}

const char* backend_name(pipc::backend b) { return b == pipc::backend::kernel ? "kernel" : "shm"; }

// What the demo's processes must agree on to meet: the objects' names (the pid keeps
// two demos running at once apart) and which backend keeps the queue, since each
// backend has its own namespace of queue names.
struct names {
  std::string queue;
  std::string counter;
  std::string lock;
  pipc::backend backend;

  static names for_process(pid_t pid, pipc::backend backend) {
    std::string base = "/pipc-demo-" + std::to_string(pid);
    return {base, base + "-counter", base + "-lock", backend};
  }
};

// Prints lines prefixed by the process's role and pid. Each line goes out in one
// write(): lines of concurrent processes never mix mid-line, and nothing waits in a
// stdio buffer that fork() would copy into a child and print twice.
class reporter {
 public:
  explicit reporter(std::string role) : role_(std::move(role)) {}

  [[gnu::format(printf, 2, 3)]] void say(const char* format, ...) const {
    va_list args;
    va_start(args, format);
    emit(STDOUT_FILENO, format, args);
    va_end(args);
  }

  [[gnu::format(printf, 2, 3)]] void error(const char* format, ...) const {
    va_list args;
    va_start(args, format);
    emit(STDERR_FILENO, format, args);
    va_end(args);
  }

 private:
  void emit(int fd, const char* format, va_list args) const {
    char line[512];
    int prefix = std::snprintf(line, sizeof line, "[%-10s | pid %6d] ", role_.c_str(), static_cast<int>(::getpid()));
    if (prefix < 0) return;
    std::size_t used = static_cast<std::size_t>(prefix);
    int text = std::vsnprintf(line + used, sizeof line - used, format, args);
    if (text < 0) return;
    // Keep room for the newline when the text was cut short.
    used = std::min(used + static_cast<std::size_t>(text), sizeof line - 2);
    line[used++] = '\n';
    for (std::size_t done = 0; done < used;) {
      ssize_t n = ::write(fd, line + done, used - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      done += static_cast<std::size_t>(n);
    }
  }

  std::string role_;
};

// The names to remove when the demo ends, however it ends; the newest goes first. A
// child forked later inherits a copy, but only the process that created the names
// removes them.
class removal_list {
 public:
  using remover = std::function<void(std::error_code&)>;

  explicit removal_list(const reporter& out) : out_(out) {}
  removal_list(const removal_list&) = delete;
  removal_list& operator=(const removal_list&) = delete;

  ~removal_list() {
    if (::getpid() != owner_) return;
    for (auto it = items_.rbegin(); it != items_.rend(); ++it) {
      std::error_code ec;
      it->remove(ec);
      if (ec) {
        out_.error("could not remove %s: %s", it->what.c_str(), ec.message().c_str());
      } else {
        out_.say("removed %s", it->what.c_str());
      }
    }
  }

  void add(std::string what, remover remove) { items_.push_back({std::move(what), std::move(remove)}); }

 private:
  struct item {
    std::string what;
    remover remove;
  };
  const reporter& out_;
  std::vector<item> items_;
  pid_t owner_ = ::getpid();
};

// Holds the one unit of the named semaphore that guards the counter, and gives it
// back however the scope ends: a unit lost to an exception would stop every other
// process for good. POSIX semaphores have no owner, so a process that dies holding the
// unit loses it just the same; the bounded wait turns that into an error, not a hang.
class holding {
 public:
  explicit holding(pipc::named_semaphore& s) : s_(s) {
    if (!s_.wait_for(std::chrono::seconds(5))) {
      throw std::runtime_error("semaphore " + s_.name() +
                               " was not released within 5 s: did a process die holding it?");
    }
  }
  holding(const holding&) = delete;
  holding& operator=(const holding&) = delete;
  ~holding() {
    std::error_code ignored;  // a destructor must not throw; post fails only on a bad handle
    s_.post(ignored);
  }

 private:
  pipc::named_semaphore& s_;
};

// The processes this one forked. It waits for all of them before it goes away, so an
// error in the parent never leaves children running on behind it.
class children {
 public:
  explicit children(const reporter& out) : out_(out) {}
  children(const children&) = delete;
  children& operator=(const children&) = delete;
  ~children() { wait_all(); }

  // Runs `body(reporter&)` in a new process, which exits with body's result (1 if it
  // throws).
  template <class Body>
  void spawn(std::string role, Body body) {
    pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::system_category(), "fork");
    if (pid == 0) {
      // The children keep the default action: Ctrl-C ends them at once.
      std::signal(SIGINT, SIG_DFL);
      std::signal(SIGTERM, SIG_DFL);
      std::signal(SIGHUP, SIG_DFL);
      int code = 1;
      reporter me(role);
      try {
        code = body(me);
      } catch (const std::exception& e) {
        me.error("error: %s", e.what());
      } catch (...) {
        me.error("error: unknown exception");
      }
      // _exit, not exit: the parent's destructors (which remove the names and wait for
      // children) are the parent's business, and so are its stdio buffers.
      ::_exit(code);
    }
    running_.push_back({std::move(role), pid});
  }

  // Waits for every child; returns how many of them failed, after saying why.
  int wait_all() noexcept {
    int failed = 0;
    for (const auto& child : running_) {
      int status = 0;
      pid_t r;
      do {
        r = ::waitpid(child.pid, &status, 0);
      } while (r < 0 && errno == EINTR);
      if (r < 0) {
        out_.error("waitpid for %s (pid %d): %s", child.role.c_str(), static_cast<int>(child.pid),
                   std::strerror(errno));
        ++failed;
      } else if (WIFSIGNALED(status)) {
        out_.error("%s (pid %d) was killed by signal %d", child.role.c_str(), static_cast<int>(child.pid),
                   WTERMSIG(status));
        ++failed;
      } else if (WEXITSTATUS(status) != 0) {
        out_.error("%s (pid %d) failed with exit status %d", child.role.c_str(), static_cast<int>(child.pid),
                   WEXITSTATUS(status));
        ++failed;
      }
    }
    running_.clear();
    return failed;
  }

 private:
  struct process {
    std::string role;
    pid_t pid;
  };
  const reporter& out_;
  std::vector<process> running_;
};

// The jobs carry a sequence number, "#N", so that the consumer can check the order in
// which they arrived. Returns 0 if there is none.
long sequence_of(std::string_view text) {
  auto hash = text.rfind('#');
  if (hash == std::string_view::npos) return 0;
  long seq = 0;
  std::from_chars(text.data() + hash + 1, text.data() + text.size(), seq);
  return seq;
}

// A producer knows nothing but the names, as a separate program would: it opens the
// three objects itself rather than using what it inherited from the parent.
int run_producer(const reporter& out, const names& n, int id) {
  pipc::mq_options write_only;
  write_only.backend = n.backend;
  write_only.access = pipc::access::write_only;
  auto queue = pipc::message_queue::open(n.queue, pipc::open_mode::open_only, write_only);
  auto lock = pipc::named_semaphore::open(n.lock, pipc::open_mode::open_only);
  auto memory = pipc::shared_memory::open(n.counter, pipc::open_mode::open_only);
  auto view = memory.map();
  // The parent constructed the tally; this process reaches it through bytes it mapped
  // itself, and std::launder is how C++ is told that an object lives there.
  auto* counter = std::launder(reinterpret_cast<tally*>(view.data()));

  // Each producer sends its jobs in a different order of priority, so that arrival
  // order and priority order differ.
  constexpr unsigned levels[] = {urgent, normal, low};
  for (int job = 1; job <= jobs_per_producer; ++job) {
    unsigned priority = levels[(id + job) % 3];
    // Preparing a job takes a moment, outside the lock, as real work would: the
    // producers take turns instead of one sending all its jobs in a burst.
    ::usleep(20'000);
    // Counting and sending under one hold of the lock makes the sequence number the
    // order in which the jobs enter the queue.
    holding guard(lock);
    long seq = ++counter->messages_sent;
    std::string text = "job " + std::to_string(job) + " from producer " + std::to_string(id) + " (#" +
                       std::to_string(seq) + ")";
    queue.send(pipc::as_bytes(text), priority);
    out.say("sent     prio %2u %-6s  \"%s\"", priority, priority_name(priority), text.c_str());
  }
  return 0;
}

// Receives `expected` jobs and checks POSIX's rule: the highest priority first, and
// within one priority the oldest first.
int run_consumer(const reporter& out, const names& n, long expected) {
  pipc::mq_options read_only;
  read_only.backend = n.backend;
  read_only.access = pipc::access::read_only;
  auto queue = pipc::message_queue::open(n.queue, pipc::open_mode::open_only, read_only);
  // A receive buffer must hold the largest message the queue accepts.
  std::vector<std::byte> buffer(static_cast<std::size_t>(queue.attributes().message_size));

  unsigned last_priority = pipc::max_priority;
  long last_seq = 0;
  long out_of_order = 0;
  for (long i = 0; i < expected; ++i) {
    // A bounded wait: should a job go missing, the demo says so instead of hanging.
    auto got = queue.receive_for(buffer, std::chrono::seconds(5));
    if (!got) {
      out.error("only %ld of %ld jobs arrived within 5 s", i, expected);
      return 1;
    }
    std::string_view text(reinterpret_cast<const char*>(buffer.data()), got->size);
    long seq = sequence_of(text);
    bool in_order = got->priority < last_priority || (got->priority == last_priority && seq > last_seq);
    if (!in_order) ++out_of_order;
    last_priority = got->priority;
    last_seq = seq;
    out.say("received prio %2u %-6s  \"%.*s\"%s", got->priority, priority_name(got->priority),
            static_cast<int>(text.size()), text.data(), in_order ? "" : "  <- out of order!");
  }
  if (out_of_order != 0) {
    out.error("%ld of %ld jobs came out of priority order", out_of_order, expected);
    return 1;
  }
  out.say("received all %ld jobs: highest priority first, oldest first within a priority", expected);
  return 0;
}

// Creates the objects, runs the producers and then the consumer, and checks the
// outcome. Each object's name goes on `removals` as soon as it exists.
int run_demo(const reporter& out, const names& n, removal_list& removals) {
  out.say("pipc demo: %d producer processes and 1 consumer share a message queue and a counter",
          producer_count);

  // Small enough for the kernel backend, which caps an unprivileged user's queue at
  // /proc/sys/fs/mqueue/msg_max messages (10 by default); the engine has no such cap.
  pipc::mq_options options;
  options.backend = n.backend;
  options.max_messages = queue_capacity;
  options.message_size = message_size;
  auto queue = pipc::message_queue::open(n.queue, pipc::open_mode::create_only, options);
  removals.add("message queue  " + n.queue,
               [&n](std::error_code& ec) { pipc::message_queue::unlink(n.queue, n.backend, ec); });
  out.say("created message queue  %s (%s backend, %ld messages of up to %ld bytes)", n.queue.c_str(),
          backend_name(n.backend), queue_capacity, message_size);

  auto memory = pipc::shared_memory::open(n.counter, pipc::open_mode::create_only);
  removals.add("shared memory  " + n.counter,
               [&n](std::error_code& ec) { pipc::shared_memory::unlink(n.counter, ec); });
  memory.resize(sizeof(tally));
  auto view = memory.map();
  // A mapping starts on a page boundary, which satisfies tally's alignment.
  auto* counter = new (view.data()) tally{};
  out.say("created shared memory  %s (a counter of messages sent, now %ld)", n.counter.c_str(),
          counter->messages_sent);

  // One unit: whoever holds it may touch the counter.
  auto lock = pipc::named_semaphore::open(n.lock, pipc::open_mode::create_only, 1);
  removals.add("semaphore      " + n.lock, [&n](std::error_code& ec) { pipc::named_semaphore::unlink(n.lock, ec); });
  out.say("created semaphore      %s (value %d: guards the counter)", n.lock.c_str(), lock.value());

  // Whatever happens below, the children have finished before this function returns,
  // and so before the names go.
  children kids(out);
  {
    // Holding the lock while the producers start makes them all wait for it, and then
    // race from the same moment.
    holding start_gate(lock);
    for (int id = 1; id <= producer_count; ++id) {
      kids.spawn("producer " + std::to_string(id), [&n, id](const reporter& me) { return run_producer(me, n, id); });
    }
    out.say("started %d producers; letting them go at once", producer_count);
  }
  int failed = kids.wait_all();
  throw_if_stop_requested();
  if (failed != 0) {
    out.error("%d producer(s) failed", failed);
    return 1;
  }

  const long queued = queue.attributes().current_messages;
  out.say("all producers are done; %ld jobs wait in the queue", queued);
  out.say("starting the consumer only now, so priority alone decides the order it receives them in");

  kids.spawn("consumer", [&n, queued](const reporter& me) { return run_consumer(me, n, queued); });
  failed = kids.wait_all();
  throw_if_stop_requested();
  if (failed != 0) return 1;

  // Every child has exited, and waitpid orders their writes before this read; the
  // lock is taken anyway, as any reader of shared state should.
  long sent = 0;
  {
    holding guard(lock);
    sent = counter->messages_sent;
  }
  const long expected = producer_count * jobs_per_producer;
  const long left = queue.attributes().current_messages;
  out.say("shared counter: %ld messages sent (expected %d producers x %d jobs = %ld)", sent, producer_count,
          jobs_per_producer, expected);
  out.say("queue now holds %ld messages", left);
  if (sent != expected || queued != expected || left != 0) {
    out.error("FAILED: counter %ld, queued %ld, left over %ld; expected %ld, %ld, 0", sent, queued, left, expected,
              expected);
    return 1;
  }
  out.say("OK: %ld jobs from %d processes delivered urgent -> normal -> low; counter agrees", expected,
          producer_count);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  constexpr const char* usage = "usage: pipc-demo [--backend shm|kernel]\n";
  pipc::backend backend = pipc::backend::shm;
  std::string_view arg1 = argc > 1 ? argv[1] : "";
  std::string_view arg2 = argc > 2 ? argv[2] : "";
  if (arg1 == "-h" || arg1 == "--help") {
    std::fputs(usage, stdout);
    return 0;
  }
  if (argc == 3 && arg1 == "--backend" && (arg2 == "shm" || arg2 == "kernel")) {
    backend = arg2 == "kernel" ? pipc::backend::kernel : pipc::backend::shm;
  } else if (argc != 1) {
    std::fputs(usage, stderr);
    return 2;
  }

  struct sigaction action = {};
  action.sa_handler = request_stop;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGHUP, &action, nullptr);
  // `pipc-demo | head` closes the pipe early: a write should fail, not kill the parent
  // before it has removed its objects.
  std::signal(SIGPIPE, SIG_IGN);

  reporter out("parent");
  try {
    const names n = names::for_process(::getpid(), backend);
    // Outlives run_demo, so that an error is reported before the clean-up is.
    removal_list removals(out);
    try {
      return run_demo(out, n, removals);
    } catch (const std::system_error& e) {
      out.error("error: %s", e.what());
      if (backend == pipc::backend::kernel && e.code() == std::errc::function_not_supported) {
        out.error("hint: this kernel has no POSIX message queues; the default shm backend needs none");
      }
    } catch (const std::exception& e) {
      out.error("error: %s", e.what());
    }
  } catch (const std::exception& e) {
    out.error("error: %s", e.what());
  }
  return 1;
}
