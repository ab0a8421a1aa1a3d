// pipc-frames: large messages without copies. A forked renderer writes 1 MiB "frames"
// straight into the slots of an engine queue (message_queue::loan) and the parent reads
// each one where it lies (receive_view): no byte is copied into or out of the queue.
//
//   ./build/examples/pipc-frames [FRAMES]      (default 100)
//
// Exit status 0 when every frame arrived, in order and intact.
#include <pipc/pipc.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <system_error>

namespace {

constexpr std::size_t frame_bytes = 1 << 20;

// A frame is numbered in its first 8 bytes and filled with a value its number decides.
void render(std::span<std::byte> frame, std::uint64_t number) {
  std::memcpy(frame.data(), &number, sizeof number);
  std::memset(frame.data() + sizeof number, static_cast<int>(number & 0xff), frame.size() - sizeof number);
}

bool intact(std::span<const std::byte> frame, std::uint64_t number) {
  std::uint64_t got = 0;
  std::memcpy(&got, frame.data(), sizeof got);
  if (got != number || frame.size() != frame_bytes) return false;
  for (std::size_t i = sizeof got; i < frame.size(); ++i) {
    if (frame[i] != static_cast<std::byte>(number & 0xff)) return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const long frames = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 100;
  if (frames <= 0) {
    std::fprintf(stderr, "usage: pipc-frames [FRAMES > 0]\n");
    return 2;
  }
  const std::string name = "/pipc-frames-" + std::to_string(::getpid());
  pipc::mq_options options;  // backend::shm: the engine, where loans are zero copy
  options.max_messages = 4;  // four frames in flight: 4 MiB of slots
  options.message_size = static_cast<long>(frame_bytes);
  try {
    pipc::message_queue q = pipc::message_queue::open(name, pipc::open_mode::create_only, options);
    const pid_t renderer = ::fork();
    if (renderer < 0) throw std::system_error(errno, std::system_category(), "fork");
    if (renderer == 0) {
      try {
        pipc::message_queue out = pipc::message_queue::open(name, pipc::open_mode::open_only, options);
        for (long n = 0; n < frames; ++n) {
          // Waits for a free slot, lends it, and sends it when the lambda returns. If the
          // process died in between, the half-rendered frame would never be delivered.
          out.send_in_place(frame_bytes, 0, [&](std::span<std::byte> slot) { render(slot, static_cast<std::uint64_t>(n)); });
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "renderer: %s\n", e.what());
        ::_exit(1);
      }
      ::_exit(0);
    }
    const auto start = std::chrono::steady_clock::now();
    bool ok = true;
    for (long n = 0; n < frames && ok; ++n) {
      pipc::received_message frame = q.receive_view();  // the slot stays ours until released
      ok = intact(frame.data(), static_cast<std::uint64_t>(n));
      if (!ok) std::fprintf(stderr, "frame %ld arrived damaged or out of order\n", n);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    int status = 0;
    ::waitpid(renderer, &status, 0);
    pipc::message_queue::unlink(name);
    if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
    std::printf("%ld frames of 1 MiB, rendered and read in place: %.0f frames/s (%.0f MB/s)\n", frames,
                static_cast<double>(frames) / seconds, static_cast<double>(frames) * frame_bytes / seconds / 1e6);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pipc-frames: %s\n", e.what());
    std::error_code ec;
    pipc::message_queue::unlink(name, pipc::backend::shm, ec);
    return 1;
  }
}
