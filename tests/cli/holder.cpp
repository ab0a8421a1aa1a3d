// The CLI tests' helper: makes objects through the kernel's C API directly (mq_open,
// sem_open, shm_open), and holds objects open or mapped, blocked or busy, until killed,
// so that pipc sees live users. Prints "ready" once it holds what it was asked to.
//
//   holder kernel-mq NAME MAXMSG MSGSIZE MODE   create a kernel queue and exit
//   holder unlink-mq NAME                       remove a kernel queue
//   holder sem NAME VALUE MODE                  create a named semaphore and exit
//   holder shm NAME SIZE MODE                   create a shared memory object and exit
//   holder map-file PATH                        map a file, close it, wait
//   holder notify NAME                          register for notification on a kernel queue, wait
//   holder engine-recv NAME                     block in a receive on an engine queue
//   holder engine-traffic NAME                  send and receive on an engine queue until killed
#include <pipc/pipc.hpp>

#include <fcntl.h>
#include <mqueue.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

int die(const char* what) {
  std::fprintf(stderr, "holder: %s: %s\n", what, std::strerror(errno));
  return 1;
}

void ready() {
  std::printf("ready\n");
  std::fflush(stdout);
}

mode_t mode_arg(const char* s) { return static_cast<mode_t>(std::strtoul(s, nullptr, 8)); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  const std::string cmd = argv[1];
  const char* name = argv[2];
  ::umask(0);
  if (cmd == "kernel-mq" && argc == 6) {
    mq_attr a{};
    a.mq_maxmsg = std::atol(argv[3]);
    a.mq_msgsize = std::atol(argv[4]);
    mqd_t q = ::mq_open(name, O_CREAT | O_EXCL | O_RDWR, mode_arg(argv[5]), &a);
    if (q == static_cast<mqd_t>(-1)) return die("mq_open");
    ::mq_close(q);
    return 0;
  }
  if (cmd == "unlink-mq") return ::mq_unlink(name) == 0 ? 0 : die("mq_unlink");
  if (cmd == "sem" && argc == 5) {
    sem_t* s = ::sem_open(name, O_CREAT | O_EXCL, mode_arg(argv[4]), static_cast<unsigned>(std::atoi(argv[3])));
    if (s == SEM_FAILED) return die("sem_open");
    ::sem_close(s);
    return 0;
  }
  if (cmd == "shm" && argc == 5) {
    int fd = ::shm_open(name, O_CREAT | O_EXCL | O_RDWR, mode_arg(argv[4]));
    if (fd < 0) return die("shm_open");
    if (::ftruncate(fd, std::atol(argv[3])) != 0) return die("ftruncate");
    ::close(fd);
    return 0;
  }
  if (cmd == "map-file") {
    int fd = ::open(name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return die("open");
    struct stat st {};
    ::fstat(fd, &st);
    void* p = ::mmap(nullptr, st.st_size > 0 ? static_cast<size_t>(st.st_size) : 4096, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return die("mmap");
    ::close(fd);
    ready();
    for (;;) ::pause();
  }
  if (cmd == "notify") {
    mqd_t q = ::mq_open(name, O_RDONLY);
    if (q == static_cast<mqd_t>(-1)) return die("mq_open");
    sigevent ev{};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    ::signal(SIGUSR1, SIG_IGN);
    if (::mq_notify(q, &ev) != 0) return die("mq_notify");
    ready();
    for (;;) ::pause();
  }
  if (cmd == "engine-recv") {
    auto q = pipc::message_queue::open(name, pipc::open_mode::open_only);
    std::vector<std::byte> buf(static_cast<std::size_t>(q.attributes().message_size));
    ready();
    q.receive(buf);
    return 0;
  }
  if (cmd == "engine-traffic") {
    auto q = pipc::message_queue::open(name, pipc::open_mode::open_only);
    std::vector<std::byte> buf(static_cast<std::size_t>(q.attributes().message_size));
    ready();
    for (;;) {
      for (int i = 0; i < 10; ++i) (void)q.try_send(pipc::as_bytes("tick"), 1);
      for (int i = 0; i < 9; ++i) (void)q.try_receive(buf);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  return 2;
}
