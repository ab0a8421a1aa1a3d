// backend::shm: message_queue over the engine.
#ifndef PIPC_SRC_ENGINE_ENGINE_BACKEND_HPP
#define PIPC_SRC_ENGINE_ENGINE_BACKEND_HPP

#include "queue_backend.hpp"

#include <memory>
#include <string>
#include <system_error>

namespace pipc::engine {

// Opens `name` (already validated) as the options say. Returns nullptr and sets ec on failure.
std::unique_ptr<detail::queue_backend> open_backend(const std::string& name, open_mode mode, const mq_options& options,
                                                    std::error_code& ec) noexcept;

// Why open_backend failed with `ec`, in words, when there is more to say than strerror.
std::string explain_open_failure(const std::string& name, std::error_code ec, open_mode mode,
                                 const mq_options& options);

}  // namespace pipc::engine

#endif  // PIPC_SRC_ENGINE_ENGINE_BACKEND_HPP
