#include "notify_registry.hpp"

#include <mutex>
#include <unordered_map>
#include <utility>

namespace pipc::detail {
namespace {

struct registry {
  std::mutex mutex;
  notify_key next = 1;
  std::unordered_map<notify_key, std::function<void()>> callbacks;
};

registry& the_registry() {
  // Never destroyed: a notification thread may still run while the process exits.
  static registry* instance = new registry;
  return *instance;
}

}  // namespace

notify_key notify_registry_add(std::function<void()> callback) {
  registry& r = the_registry();
  std::lock_guard lock(r.mutex);
  notify_key key = r.next++;
  r.callbacks.emplace(key, std::move(callback));
  return key;
}

void notify_registry_remove(notify_key key) noexcept {
  registry& r = the_registry();
  std::function<void()> doomed;  // destroyed outside the lock
  std::lock_guard lock(r.mutex);
  auto it = r.callbacks.find(key);
  if (it != r.callbacks.end()) {
    doomed = std::move(it->second);
    r.callbacks.erase(it);
  }
}

void notify_registry_fire(notify_key key) noexcept {
  registry& r = the_registry();
  std::function<void()> callback;
  {
    std::lock_guard lock(r.mutex);
    auto it = r.callbacks.find(key);
    if (it == r.callbacks.end()) return;
    callback = std::move(it->second);
    r.callbacks.erase(it);
  }
  if (callback) {
    try {
      callback();
    } catch (...) {
      // A notification thread has nobody to report to; an escaping exception would
      // terminate the whole process.
    }
  }
}

}  // namespace pipc::detail
