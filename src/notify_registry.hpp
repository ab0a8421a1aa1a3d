// Callbacks for thread notifications (SIGEV_THREAD), kept by key.
//
// A notification thread may start after the queue that registered it has been closed
// or its registration replaced. So the sigevent carries a key, never a pointer: the
// notification thread looks the key up and finds either the callback (and takes it:
// notifications are one-shot) or nothing (the registration was withdrawn).
//
// Thread safety: every function may be called from any thread.
#ifndef PIPC_SRC_NOTIFY_REGISTRY_HPP
#define PIPC_SRC_NOTIFY_REGISTRY_HPP

#include <cstdint>
#include <functional>

namespace pipc::detail {

using notify_key = std::uintptr_t;

// Stores `callback`; returns its key (never 0).
notify_key notify_registry_add(std::function<void()> callback);
// Forgets the callback of `key`, if it is still there.
void notify_registry_remove(notify_key key) noexcept;
// Takes the callback of `key` out of the registry and runs it; nothing if withdrawn.
void notify_registry_fire(notify_key key) noexcept;

}  // namespace pipc::detail

#endif  // PIPC_SRC_NOTIFY_REGISTRY_HPP
