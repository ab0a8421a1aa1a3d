// pipc-shm-counter: worker processes add to one counter in shared memory, guarded by
// an unnamed semaphore that lives in that same memory.
//
// The parent creates a shared memory object and constructs, at its start, a block
// holding a process-shared pipc::semaphore and the counter. Each worker opens the
// object by name, maps it (maybe at another address: the semaphore works wherever it
// is mapped) and increments the counter M times, one semaphore hold per increment.
// With the semaphore no increment is lost: the total is exactly N x M.
#include <pipc/pipc.hpp>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace {

constexpr const char* usage_text =
    "usage: pipc-shm-counter [WORKERS [INCREMENTS]]\n"
    "\n"
    "Forks WORKERS processes (default 4) that each add 1 to a counter in shared memory\n"
    "INCREMENTS times (default 100000), holding a process-shared semaphore placed in\n"
    "the same memory, then compares the total with WORKERS x INCREMENTS.\n";

// The whole shared memory object. The parent constructs it with placement new and
// destroys it once every worker has exited; workers only attach to it.
struct shared_block {
  pipc::semaphore lock{1, pipc::sharing::processes};  // one unit: permission to touch `counter`
  long counter = 0;                                    // guarded by `lock`
};

// Parses a count in 1 .. limit.
bool parse_count(std::string_view text, long limit, long& value) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size() && value >= 1 && value <= limit;
}

// Removes the object's name however the parent's scope ends. Forked workers inherit a
// copy, but only the creator removes the name.
class remove_at_exit {
 public:
  explicit remove_at_exit(std::string name) : name_(std::move(name)) {}
  remove_at_exit(const remove_at_exit&) = delete;
  remove_at_exit& operator=(const remove_at_exit&) = delete;
  ~remove_at_exit() {
    if (::getpid() != owner_) return;
    std::error_code ec;
    pipc::shared_memory::unlink(name_, ec);
    if (ec) std::fprintf(stderr, "pipc-shm-counter: could not remove %s: %s\n", name_.c_str(), ec.message().c_str());
  }

 private:
  std::string name_;
  pid_t owner_ = ::getpid();
};

// The worker's whole life: attach, count, report. Runs in the child.
int run_worker(const std::string& name, int id, long increments) {
  auto memory = pipc::shared_memory::open(name, pipc::open_mode::open_only);
  auto view = memory.map();
  // The block was constructed by the parent; this process reaches it through bytes it
  // mapped itself, and std::launder is how C++ is told an object lives there.
  auto* block = std::launder(reinterpret_cast<shared_block*>(view.data()));
  for (long i = 0; i < increments; ++i) {
    block->lock.wait();
    ++block->counter;
    block->lock.post();
  }
  std::printf("worker %d (pid %d): added %ld\n", id, static_cast<int>(::getpid()), increments);
  std::fflush(stdout);
  return 0;
}

int run(long workers, long increments) {
  const std::string name = "/pipc-shm-counter-" + std::to_string(::getpid());
  auto memory = pipc::shared_memory::open(name, pipc::open_mode::create_only);
  remove_at_exit remover(name);
  memory.resize(sizeof(shared_block));
  auto view = memory.map();
  // A mapping starts on a page boundary, which satisfies shared_block's alignment.
  auto* block = new (view.data()) shared_block;
  std::printf("shared memory %s: a %zu-byte block with a semaphore and a counter\n", name.c_str(),
              sizeof(shared_block));
  std::printf("%ld workers x %ld increments each...\n", workers, increments);
  // Nothing may sit in stdio's buffer when fork copies it into the workers.
  std::fflush(stdout);

  const auto start = std::chrono::steady_clock::now();
  std::vector<pid_t> pids;
  int failed = 0;
  // Holding the semaphore while the workers start makes them all wait for it, so they
  // really compete instead of the first finishing before the last is forked.
  block->lock.wait();
  for (long id = 1; id <= workers; ++id) {
    pid_t pid = ::fork();
    if (pid < 0) {
      std::fprintf(stderr, "pipc-shm-counter: fork: %s\n", std::strerror(errno));
      ++failed;
      break;
    }
    if (pid == 0) {
      int code = 1;
      try {
        code = run_worker(name, static_cast<int>(id), increments);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "pipc-shm-counter: worker %ld: %s\n", id, e.what());
      }
      // _exit, not exit: the parent's destructors would remove the name and destroy
      // the semaphore that the other workers still use.
      ::_exit(code);
    }
    pids.push_back(pid);
  }
  block->lock.post();
  for (pid_t pid : pids) {
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;

  // Every worker has exited: nobody waits on the semaphore, so it may be destroyed.
  const long actual = block->counter;
  block->~shared_block();
  const long expected = workers * increments;
  std::printf("expected %ld, actual %ld (%.2f s)\n", expected, actual, elapsed.count());
  if (failed != 0) {
    std::fprintf(stderr, "pipc-shm-counter: %d worker(s) failed\n", failed);
    return 1;
  }
  if (actual != expected) {
    std::fprintf(stderr, "pipc-shm-counter: %ld increments were lost\n", expected - actual);
    return 1;
  }
  std::printf("OK: no increment lost\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  long workers = 4;
  long increments = 100000;
  if (argc > 1 && (std::string_view(argv[1]) == "-h" || std::string_view(argv[1]) == "--help")) {
    std::fputs(usage_text, stdout);
    return 0;
  }
  if (argc > 3 || (argc > 1 && !parse_count(argv[1], 256, workers)) ||
      (argc > 2 && !parse_count(argv[2], 100000000, increments))) {
    std::fprintf(stderr, "pipc-shm-counter: WORKERS must be 1..256 and INCREMENTS 1..100000000\n\n%s", usage_text);
    return 2;
  }
  try {
    return run(workers, increments);
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "pipc-shm-counter: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pipc-shm-counter: %s\n", e.what());
  }
  return 1;
}
