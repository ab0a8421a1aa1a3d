// The kernel backend: message_queue over the kernel's mq_* queues.
//
// Every descriptor is an mqd_t, which on Linux is a file descriptor, so it can be
// polled as it is. Capacity is capped by /proc/sys/fs/mqueue and RLIMIT_MSGQUEUE;
// explain_open_failure turns the kernel's bare EINVAL/EMFILE/ENOSPC into words.
#ifndef PIPC_SRC_KERNEL_KERNEL_QUEUE_HPP
#define PIPC_SRC_KERNEL_KERNEL_QUEUE_HPP

#include "queue_backend.hpp"

#include <memory>
#include <string>
#include <system_error>

namespace pipc::kernel {

// Opens `name` (already validated) as the options say. Returns nullptr and sets ec on failure.
std::unique_ptr<detail::queue_backend> open_queue(const std::string& name, open_mode mode, const mq_options& options,
                                                  std::error_code& ec) noexcept;

int unlink_queue(const std::string& name) noexcept;

// Why open_queue failed with `ec`, when the kernel's limits are the cause: e.g.
// "max_messages 11 exceeds /proc/sys/fs/mqueue/msg_max (10)". Empty otherwise.
std::string explain_open_failure(std::error_code ec, open_mode mode, const mq_options& options);

}  // namespace pipc::kernel

#endif  // PIPC_SRC_KERNEL_KERNEL_QUEUE_HPP
