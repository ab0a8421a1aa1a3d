// pipc-micro: in-process costs of pipc's message queues (Google Benchmark), for the
// engine (backend::shm) and the kernel backend, at 64 B, 1 KiB and 8 KiB messages:
//   SendReceive      one send then one receive on the same queue, nobody else on it
//                    (the uncontended fast path: no waiting, no wake-up)
//   SendReceivePriorities  eight sends at eight priorities (0 and 32767 among them,
//                    one repeated), then eight receives: the engine's side heap
//                    (a message of another priority than the ring's)
//   TryReceiveEmpty  try_receive on an empty queue
//   OpenClose        open an existing queue by name and close it
//   CreateUnlink     create a new queue, close it, remove its name
//   CreateExisting   create_only (O_CREAT | O_EXCL) of a name that exists: EEXIST
// Cross-process numbers come from pipc-bench; see bench/README.md.

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstddef>
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

void OpenClose(benchmark::State& state, pipc::backend which) {
  const auto size = static_cast<std::size_t>(state.range(0));
  scratch_queue q("open", which, size);
  const pipc::mq_options o = options(which, size);
  for (auto _ : state) {
    pipc::message_queue other = pipc::message_queue::open(q.name(), pipc::open_mode::open_only, o);
    benchmark::DoNotOptimize(other);
    other.close();
  }
  state.SetItemsProcessed(state.iterations());
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

void sizes(benchmark::internal::Benchmark* b) { b->Arg(64)->Arg(1024)->Arg(8192); }

BENCHMARK_CAPTURE(SendReceive, shm, pipc::backend::shm)->Apply(sizes);
BENCHMARK_CAPTURE(SendReceive, kernel, pipc::backend::kernel)->Apply(sizes);
BENCHMARK_CAPTURE(SendReceivePriorities, shm, pipc::backend::shm)->Arg(64);
BENCHMARK_CAPTURE(SendReceivePriorities, kernel, pipc::backend::kernel)->Arg(64);
BENCHMARK_CAPTURE(TryReceiveEmpty, shm, pipc::backend::shm)->Apply(sizes);
BENCHMARK_CAPTURE(TryReceiveEmpty, kernel, pipc::backend::kernel)->Apply(sizes);
BENCHMARK_CAPTURE(OpenClose, shm, pipc::backend::shm)->Apply(sizes);
BENCHMARK_CAPTURE(OpenClose, kernel, pipc::backend::kernel)->Apply(sizes);
BENCHMARK_CAPTURE(CreateUnlink, shm, pipc::backend::shm)->Apply(sizes);
BENCHMARK_CAPTURE(CreateUnlink, kernel, pipc::backend::kernel)->Apply(sizes);
BENCHMARK_CAPTURE(CreateExisting, shm, pipc::backend::shm)->Arg(8192);
BENCHMARK_CAPTURE(CreateExisting, kernel, pipc::backend::kernel)->Arg(8192);

}  // namespace

BENCHMARK_MAIN();
