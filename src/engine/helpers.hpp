// The helper threads of an open queue description: the poll helper, which keeps an
// eventfd in step with the queue, and the notification helper, which runs a
// SIGEV_THREAD callback. Each holds the region, so it stays mapped while the helper runs.
#ifndef PIPC_SRC_ENGINE_HELPERS_HPP
#define PIPC_SRC_ENGINE_HELPERS_HPP

#include "engine/queue.hpp"
#include "engine/region.hpp"
#include "notify_registry.hpp"

#include <pthread.h>

#include <atomic>
#include <memory>
#include <mutex>

namespace pipc::engine {

// Keeps an eventfd's counter in step with the queue's depth (docs/engine.md, "Polling").
struct queue::poll_helper {
  std::shared_ptr<region> r;
  int fd = -1;
  std::atomic<bool> stop{false};
  pthread_t thread{};
  pid_t owner = 0;
  std::mutex mutex;        // serialises sync(), so the last writer wrote the latest depth
  std::uint64_t shown = 0;  // the eventfd's counter (all ones: not known)

  // Closes the eventfd in its owner only: in a child of fork the number is the
  // child's, which may have closed it and put a file of its own there.
  ~poll_helper() {
    if (fd >= 0 && owner == sys::current_pid()) sys::close(fd);
  }

  // Sets the counter from what a receive and a send would find now: 0 no message, 1
  // messages and room, 2^64-2 no room. With `look_for_dead`, a receive side whose
  // lock's owner died counts as ready: its next operation repairs the queue (and may
  // find a message that the dead owner had not published yet).
  void sync(bool look_for_dead = false) noexcept;
  static void* run(void* arg);
};

// Waits for this descriptor's thread notification to fire, then runs its callback.
struct queue::notify_helper {
  std::shared_ptr<region> r;
  std::uint64_t token = 0;
  detail::notify_key key = 0;
  std::atomic<bool> stop{false};
  pthread_t thread{};
  pid_t owner = 0;

  static void* run(void* arg);
};

}  // namespace pipc::engine

#endif  // PIPC_SRC_ENGINE_HELPERS_HPP
