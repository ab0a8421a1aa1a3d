// Uses each of pipc's object kinds once through the installed headers and library.
#include <pipc/pipc.hpp>

#include <cstdio>
#include <string>

#include <unistd.h>

int main() {
  const std::string base = "/pipc-package-" + std::to_string(::getpid());
  try {
    auto shm = pipc::shared_memory::open(base, pipc::open_mode::create_only);
    shm.resize(64);
    auto map = shm.map();
    map.bytes()[0] = std::byte{42};
    pipc::shared_memory::unlink(base);

    auto sem = pipc::named_semaphore::open(base, pipc::open_mode::create_only, 1);
    sem.wait();
    pipc::named_semaphore::unlink(base);

    pipc::mq_options options;
    options.max_messages = 2;
    options.message_size = 32;
    auto q = pipc::message_queue::open(base, pipc::open_mode::create_only, options);
    pipc::message_queue::unlink(base);
    q.send(pipc::as_bytes("installed"), 7);
    std::byte buffer[32];
    auto got = q.receive(buffer);
    if (got.size != 9 || got.priority != 7 || map.bytes()[0] != std::byte{42}) return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
  std::printf("pipc %s consumer: ok\n", PIPC_VERSION_STRING);
  return 0;
}
