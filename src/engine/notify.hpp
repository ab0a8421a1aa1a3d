// Notification and the waiter table, as the send and receive paths use them
// (notify.cpp; docs/engine.md, "Notification").
#ifndef PIPC_SRC_ENGINE_NOTIFY_HPP
#define PIPC_SRC_ENGINE_NOTIFY_HPP

#include "engine/layout.hpp"
#include "engine/region.hpp"

#include <sys/types.h>

#include <cstdint>

namespace pipc::engine {

// Is the process `pid` that started at `start_time` still running?
bool same_process_alive(pid_t pid, std::uint64_t start_time) noexcept;
// This process's start time (cached; a forked child has its own).
std::uint64_t own_start_time() noexcept;

// Does process `pid` map the queue of region `r` (/proc/PID/maps)? Every legitimate
// registrant and blocked receiver does; a record naming another process was forged by
// a process that can write the region. `unknown` when pid's maps cannot be read
// (another user's process, without CAP_SYS_PTRACE).
sys::maps_answer mapped_by(pid_t pid, const region& r) noexcept;

// Counts a receiver of this process as blocked; returns the entry used (or nullptr
// when the table is full of live processes: the receiver then goes uncounted).
waiter_entry* enter_waiters(const region& r) noexcept;
// Takes back what enter_waiters counted (nothing for nullptr).
void leave_waiters(waiter_entry* w) noexcept;
// Is any receiver of a live process that maps this queue blocked on it? Other entries
// are cleared. Caller holds both locks.
bool receivers_blocked(const region& r) noexcept;

// A notification taken from the header (one-shot) to deliver after unlocking.
struct due_notification {
  std::uint32_t kind = notify_none_kind;
  pid_t pid = 0;
  int signo = 0;
  std::uint64_t value = 0;  // the whole sigval
};

}  // namespace pipc::engine

#endif  // PIPC_SRC_ENGINE_NOTIFY_HPP
