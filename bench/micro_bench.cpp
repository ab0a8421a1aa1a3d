// pipc-micro: in-process costs of pipc's message queues (Google Benchmark), at 64 B,
// 1 KiB and 8 KiB messages, through four ways in (the second part of each row's name):
//   shm        pipc::message_queue on the engine (backend::shm)
//   shm-c      the C API on the engine (pipc_mq_*)
//   kernel     pipc::message_queue on the kernel (backend::kernel)
//   kernel-mq  raw mq_* on the kernel, without pipc
// Rows:
//   SendReceive      one send then one receive on the same queue, nobody else on it
//                    (the uncontended fast path: no waiting, no wake-up)
//   SendReceivePriorities  eight sends at eight priorities (0 and 32767 among them,
//                    one repeated), then eight receives: the engine's side heap
//                    (a message of another priority than the ring's)
//   TryReceiveEmpty  a non-blocking receive on an empty queue (try_receive; O_NONBLOCK
//                    and EAGAIN through the C API and mq_receive)
//   Open             open an existing queue by name that this process has no other
//                    descriptor of: only the open is timed (manual time, one clock
//                    read on each side of it); the close is not
//   OpenHeld         the same while the process holds another descriptor of the queue
//                    (the engine then reuses its mapping of the region)
//   Close            close the process's only descriptor of a queue (the engine unmaps
//                    the region): only the close is timed
//   OpenClose        Open and Close together, both timed
//   CreateUnlink     create a new queue, close it, remove its name
//   CreateExisting   create_only (O_CREAT | O_EXCL) of a name that exists: EEXIST
// Open/shm against Open/kernel-mq, in one run, is the engine's open as a multiple of
// the kernel's. Cross-process numbers come from pipc-bench; see bench/README.md.

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <mqueue.h>
#include <pipc/c/mqueue.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <pipc/pipc.hpp>
#include <string>
#include <system_error>
#include <vector>

namespace {

std::string queue_name(const char* what) {
  static int counter = 0;
  return "/pipc-micro-" + std::to_string(::getpid()) + "-" + what + "-" + std::to_string(++counter);
}

pipc::mq_options options(pipc::backend which, std::size_t size) {
  pipc::mq_options o;
  o.backend = which;
  o.max_messages = 10;  // the kernel's default cap; one message is ever in the queue
  o.message_size = static_cast<long>(size);
  return o;
}

// A queue that exists for one benchmark and is removed after it.
class scratch_queue {
 public:
  scratch_queue(const char* what, pipc::backend which, std::size_t size)
      : name_(queue_name(what)),
        backend_(which),
        queue_(pipc::message_queue::open(name_, pipc::open_mode::create_only, options(which, size))) {}
  ~scratch_queue() {
    queue_.close();
    std::error_code ec;
    pipc::message_queue::unlink(name_, backend_, ec);
  }
  scratch_queue(const scratch_queue&) = delete;
  scratch_queue& operator=(const scratch_queue&) = delete;

  pipc::message_queue& queue() { return queue_; }
  const std::string& name() const { return name_; }
  // Closes this process's descriptor and keeps the name: a later open is then the
  // process's first of the queue (the engine maps and checks the region anew).
  void let_go() { queue_.close(); }

 private:
  std::string name_;
  pipc::backend backend_;
  pipc::message_queue queue_;
};

void SendReceive(benchmark::State& state, pipc::backend which) {
  const auto size = static_cast<std::size_t>(state.range(0));
  scratch_queue q("pair", which, size);
  std::vector<std::byte> message(size, std::byte{0x5a});
  std::vector<std::byte> buffer(size);
  for (auto _ : state) {
    q.queue().send(message);
    pipc::received r = q.queue().receive(buffer);
    benchmark::DoNotOptimize(r);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
}

void SendReceivePriorities(benchmark::State& state, pipc::backend which) {
  static constexpr unsigned order[] = {3, 7, 1, 3, pipc::max_priority, 0, 7, 12};
  const auto size = static_cast<std::size_t>(state.range(0));
  scratch_queue q("prio", which, size);
  std::vector<std::byte> message(size, std::byte{0x5a});
  std::vector<std::byte> buffer(size);
  for (auto _ : state) {
    for (unsigned p : order) q.queue().send(message, p);
    for (std::size_t i = 0; i < std::size(order); ++i) {
      pipc::received r = q.queue().receive(buffer);
      benchmark::DoNotOptimize(r);
    }
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(std::size(order)));
}

void TryReceiveEmpty(benchmark::State& state, pipc::backend which) {
  const auto size = static_cast<std::size_t>(state.range(0));
  scratch_queue q("empty", which, size);
  std::vector<std::byte> buffer(size);
  for (auto _ : state) {
    auto r = q.queue().try_receive(buffer);
    benchmark::DoNotOptimize(r);
    if (r) state.SkipWithError("try_receive found a message in an empty queue");
  }
  state.SetItemsProcessed(state.iterations());
}

using clock_type = std::chrono::steady_clock;
double seconds(clock_type::duration d) { return std::chrono::duration<double>(d).count(); }

// Which part of an open-and-close cycle a row times: the open, the close (both by
// manual time), or the whole cycle (by Google Benchmark's own clock).
enum class cycle_part { open, close, both };

// Times `Part` of opening and closing an existing queue: `open_one()` returns a
// descriptor, `close_one(d)` closes it. Held: another descriptor of the queue stays
// open in this process meanwhile (the engine then reuses its mapping); otherwise each
// open is the process's first.
template <cycle_part Part, class OpenOne, class CloseOne>
void time_cycle(benchmark::State& state, OpenOne open_one, CloseOne close_one) {
  for (auto _ : state) {
    clock_type::time_point t0{}, t1{}, t2{};
    if constexpr (Part == cycle_part::open) t0 = clock_type::now();
    auto d = open_one();
    if constexpr (Part != cycle_part::both) t1 = clock_type::now();
    benchmark::DoNotOptimize(d);
    close_one(d);
    if constexpr (Part == cycle_part::close) t2 = clock_type::now();
    if constexpr (Part == cycle_part::open) state.SetIterationTime(seconds(t1 - t0));
    if constexpr (Part == cycle_part::close) state.SetIterationTime(seconds(t2 - t1));
  }
  state.SetItemsProcessed(state.iterations());
}

template <cycle_part Part, bool Held = false>
void OpenCycle(benchmark::State& state, pipc::backend which) {
  const auto size = static_cast<std::size_t>(state.range(0));
  scratch_queue q(Part == cycle_part::close ? "close" : "open", which, size);
  if (!Held) q.let_go();
  const pipc::mq_options o = options(which, size);
  time_cycle<Part>(
      state, [&] { return pipc::message_queue::open(q.name(), pipc::open_mode::open_only, o); },
      [](pipc::message_queue& d) { d.close(); });
}

void CreateUnlink(benchmark::State& state, pipc::backend which) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const std::string name = queue_name("create");
  const pipc::mq_options o = options(which, size);
  for (auto _ : state) {
    pipc::message_queue q = pipc::message_queue::open(name, pipc::open_mode::create_only, o);
    benchmark::DoNotOptimize(q);
    q.close();
    pipc::message_queue::unlink(name, which);
  }
  state.SetItemsProcessed(state.iterations());
}

void CreateExisting(benchmark::State& state, pipc::backend which) {
  const auto size = static_cast<std::size_t>(state.range(0));
  scratch_queue q("exists", which, size);
  const pipc::mq_options o = options(which, size);
  for (auto _ : state) {
    std::error_code ec;
    pipc::message_queue again = pipc::message_queue::open(q.name(), pipc::open_mode::create_only, o, ec);
    if (ec != std::errc::file_exists) state.SkipWithError("create_only of an existing name did not fail with EEXIST");
    benchmark::DoNotOptimize(again);
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- The C API on the engine and raw mq_* on the kernel: the same rows ----

// The calls of one C-style API: the C API (pipc_mq_*) or the kernel's (mq_*).
struct c_api {
  using descriptor = pipc_mqd_t;
  static descriptor create(const char* name, long depth, long size) {
    struct pipc_mq_attr attr {};
    attr.mq_maxmsg = depth;
    attr.mq_msgsize = size;
    return ::pipc_mq_open(name, O_CREAT | O_EXCL | O_RDWR, static_cast<mode_t>(0600), &attr);
  }
  static descriptor open(const char* name, int flags) { return ::pipc_mq_open(name, flags); }
  static int close(descriptor d) { return ::pipc_mq_close(d); }
  static int unlink(const char* name) { return ::pipc_mq_unlink(name); }
  static int send(descriptor d, const char* m, std::size_t n, unsigned p) { return ::pipc_mq_send(d, m, n, p); }
  static ssize_t receive(descriptor d, char* b, std::size_t n) { return ::pipc_mq_receive(d, b, n, nullptr); }
};

struct posix_api {
  using descriptor = mqd_t;
  static descriptor create(const char* name, long depth, long size) {
    struct mq_attr attr {};
    attr.mq_maxmsg = depth;
    attr.mq_msgsize = size;
    return ::mq_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600, &attr);
  }
  static descriptor open(const char* name, int flags) { return ::mq_open(name, flags | O_CLOEXEC); }
  static int close(descriptor d) { return ::mq_close(d); }
  static int unlink(const char* name) { return ::mq_unlink(name); }
  static int send(descriptor d, const char* m, std::size_t n, unsigned p) { return ::mq_send(d, m, n, p); }
  static ssize_t receive(descriptor d, char* b, std::size_t n) { return ::mq_receive(d, b, n, nullptr); }
};

template <class Api>
bool failed(typename Api::descriptor d) {
  return d == static_cast<typename Api::descriptor>(-1);
}

// A queue that exists for one benchmark and is removed after it; like scratch_queue.
template <class Api>
class scratch_c_queue {
 public:
  scratch_c_queue(const char* what, std::size_t size)
      : name_(queue_name(what)), d_(Api::create(name_.c_str(), 10, static_cast<long>(size))) {}
  ~scratch_c_queue() {
    if (!failed<Api>(d_)) Api::close(d_);
    Api::unlink(name_.c_str());
  }
  scratch_c_queue(const scratch_c_queue&) = delete;
  scratch_c_queue& operator=(const scratch_c_queue&) = delete;

  // False, with the benchmark skipped, if the queue could not be made.
  bool ok(benchmark::State& state) const {
    if (!failed<Api>(d_)) return true;
    state.SkipWithError(("create " + name_ + ": " + std::strerror(errno)).c_str());
    return false;
  }
  // As scratch_queue::let_go.
  void let_go() {
    Api::close(d_);
    d_ = static_cast<typename Api::descriptor>(-1);
  }
  typename Api::descriptor descriptor() const { return d_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  typename Api::descriptor d_;
};

template <class Api>
void SendReceiveC(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  scratch_c_queue<Api> q("pair", size);
  if (!q.ok(state)) return;
  std::vector<char> message(size, 0x5a);
  std::vector<char> buffer(size);
  for (auto _ : state) {
    if (Api::send(q.descriptor(), message.data(), size, 0) != 0) state.SkipWithError("send failed");
    ssize_t n = Api::receive(q.descriptor(), buffer.data(), size);
    if (n != static_cast<ssize_t>(size)) state.SkipWithError("receive failed");
    benchmark::DoNotOptimize(n);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
}

template <class Api>
void SendReceivePrioritiesC(benchmark::State& state) {
  static constexpr unsigned order[] = {3, 7, 1, 3, pipc::max_priority, 0, 7, 12};
  const auto size = static_cast<std::size_t>(state.range(0));
  scratch_c_queue<Api> q("prio", size);
  if (!q.ok(state)) return;
  std::vector<char> message(size, 0x5a);
  std::vector<char> buffer(size);
  for (auto _ : state) {
    for (unsigned p : order)
      if (Api::send(q.descriptor(), message.data(), size, p) != 0) state.SkipWithError("send failed");
    for (std::size_t i = 0; i < std::size(order); ++i) {
      ssize_t n = Api::receive(q.descriptor(), buffer.data(), size);
      if (n != static_cast<ssize_t>(size)) state.SkipWithError("receive failed");
      benchmark::DoNotOptimize(n);
    }
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(std::size(order)));
}

template <class Api>
void TryReceiveEmptyC(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  scratch_c_queue<Api> q("empty", size);
  if (!q.ok(state)) return;
  typename Api::descriptor d = Api::open(q.name().c_str(), O_RDONLY | O_NONBLOCK);
  if (failed<Api>(d)) {
    state.SkipWithError("open (O_NONBLOCK) failed");
    return;
  }
  std::vector<char> buffer(size);
  for (auto _ : state) {
    ssize_t n = Api::receive(d, buffer.data(), size);
    benchmark::DoNotOptimize(n);
    if (n >= 0 || errno != EAGAIN) state.SkipWithError("a receive on an empty queue did not fail with EAGAIN");
  }
  Api::close(d);
  state.SetItemsProcessed(state.iterations());
}

template <class Api, cycle_part Part, bool Held = false>
void OpenCycleC(benchmark::State& state) {
  scratch_c_queue<Api> q(Part == cycle_part::close ? "close" : "open", static_cast<std::size_t>(state.range(0)));
  if (!q.ok(state)) return;
  if (!Held) q.let_go();
  time_cycle<Part>(
      state,
      [&] {
        typename Api::descriptor d = Api::open(q.name().c_str(), O_RDWR);
        if (failed<Api>(d)) state.SkipWithError("open failed");
        return d;
      },
      [](typename Api::descriptor d) { Api::close(d); });
}

void sizes(benchmark::internal::Benchmark* b) { b->Arg(64)->Arg(1024)->Arg(8192); }

using backend_fn = void (*)(benchmark::State&, pipc::backend);

// Registers `row` for the four ways in, in the order shm, shm-c, kernel, kernel-mq, so
// that the rows to compare stand together; c_engine / c_kernel null: no such row.
void each(const std::string& row, backend_fn cxx, void (*c_engine)(benchmark::State&),
                                     void (*c_kernel)(benchmark::State&),
                                     void (*args)(benchmark::internal::Benchmark*), bool manual_time = false) {
  std::vector<benchmark::internal::Benchmark*> made;
  made.push_back(benchmark::RegisterBenchmark((row + "/shm").c_str(), cxx, pipc::backend::shm));
  if (c_engine) made.push_back(benchmark::RegisterBenchmark((row + "/shm-c").c_str(), c_engine));
  made.push_back(benchmark::RegisterBenchmark((row + "/kernel").c_str(), cxx, pipc::backend::kernel));
  if (c_kernel) made.push_back(benchmark::RegisterBenchmark((row + "/kernel-mq").c_str(), c_kernel));
  for (auto* b : made) {
    args(b);
    if (manual_time) b->UseManualTime();
  }
}

void size_64(benchmark::internal::Benchmark* b) { b->Arg(64); }
void size_8192(benchmark::internal::Benchmark* b) { b->Arg(8192); }

[[maybe_unused]] const bool registered = [] {
  each("SendReceive", SendReceive, SendReceiveC<c_api>, SendReceiveC<posix_api>, sizes);
  each("SendReceivePriorities", SendReceivePriorities, SendReceivePrioritiesC<c_api>,
       SendReceivePrioritiesC<posix_api>, size_64);
  each("TryReceiveEmpty", TryReceiveEmpty, TryReceiveEmptyC<c_api>, TryReceiveEmptyC<posix_api>, sizes);
  using enum cycle_part;
  each("Open", OpenCycle<open>, OpenCycleC<c_api, open>, OpenCycleC<posix_api, open>, sizes, true);
  each("OpenHeld", OpenCycle<open, true>, OpenCycleC<c_api, open, true>, OpenCycleC<posix_api, open, true>, sizes,
       true);
  each("Close", OpenCycle<close>, OpenCycleC<c_api, close>, OpenCycleC<posix_api, close>, sizes, true);
  each("OpenClose", OpenCycle<both>, OpenCycleC<c_api, both>, OpenCycleC<posix_api, both>, sizes);
  each("CreateUnlink", CreateUnlink, nullptr, nullptr, sizes);
  each("CreateExisting", CreateExisting, nullptr, nullptr, size_8192);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
