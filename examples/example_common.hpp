// What pipc-producer and pipc-consumer share: they meet at a queue, so they must
// agree on its backend and on the attributes whichever of them creates it.
#ifndef PIPC_EXAMPLES_EXAMPLE_COMMON_HPP
#define PIPC_EXAMPLES_EXAMPLE_COMMON_HPP

#include <pipc/pipc.hpp>

#include <optional>
#include <string_view>

namespace example {

// Processes must agree on the backend as on the name: each backend has its own
// namespace of queues.
inline std::optional<pipc::backend> parse_backend(std::string_view text) {
  if (text == "shm") return pipc::backend::shm;
  if (text == "kernel") return pipc::backend::kernel;
  return std::nullopt;
}

// Whichever program creates the queue creates it so.
inline pipc::mq_options queue_options(pipc::backend backend, pipc::access how) {
  pipc::mq_options options;
  options.backend = backend;
  options.access = how;
  options.max_messages = 10;  // the kernel backend's cap for unprivileged users
  options.message_size = 1024;
  return options;
}

}  // namespace example

#endif  // PIPC_EXAMPLES_EXAMPLE_COMMON_HPP
