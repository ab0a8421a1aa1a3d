// Reading an engine queue's header for inspection (include/pipc/inspect.hpp), from a
// copy of the file's first bytes: no mapping, no lock, nothing written. The copy is
// input from other processes and is validated before any of it is believed.
#ifndef PIPC_SRC_ENGINE_INSPECT_HPP
#define PIPC_SRC_ENGINE_INSPECT_HPP

#include "engine/layout.hpp"

#include <pipc/message_queue.hpp>

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace pipc::engine {

// How many bytes of the file inspect_header wants.
inline constexpr std::size_t inspect_bytes = header_size;

// Fills `out` (and `queue_mode`, the mode the queue was created with) from `raw`, the
// first `got` bytes of a queue file of `file_size` bytes. Returns 0, or an encoded
// pipc::errc: not_a_pipc_object (too short, no magic), layout_mismatch (another layout
// version: `found_version` says which), corrupt_state (geometry or size inconsistent).
int inspect_header(const void* raw, std::size_t got, std::uint64_t file_size, mq_stats& out, mode_t& queue_mode,
                   std::uint32_t& found_version) noexcept;

}  // namespace pipc::engine

#endif  // PIPC_SRC_ENGINE_INSPECT_HPP
