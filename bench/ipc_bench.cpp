// pipc-bench: pipc's message queues against kernel queues, pipes, AF_UNIX sockets and
// Boost.Interprocess, measured between real processes, side by side.
//
// Three measurements, each at every message size and repeated (median, min–max):
//   ping-pong   one process sends a message, a forked peer echoes it; round-trip time
//               of every exchange after a warm-up; p50, p99, p99.9.
//   stream      a forked sender sends as fast as it can for a fixed time; the receiver
//               checks every message (sequence number and every payload word) and the
//               count at the end; messages/s and MB/s.
//   contention  two forked producers and two forked consumers on one channel for a
//               fixed time; every message checked, per-producer counts and checksums
//               reconciled; messages/s and fairness (min/max of producer counts and of
//               consumer counts). pipc's transports run each repetition a second time
//               with one producer and one consumer pinned to each CPU ("… pinned").
// A transport is a one-way channel: the parent creates it before fork() (a queue, a
// pipe, a socket pair); each process then opens its own end (queues by name, after
// the fork). Nothing here is a thread standing in for a process.
//
// Any mismatch (wrong size, sequence, payload, count or checksum) aborts the run with
// a non-zero exit status: a broken transport cannot post a number.
// bench/README.md describes the options, the method and the columns.

#include <pipc/pipc.hpp>

#if defined(PIPC_BENCH_HAVE_BOOST)
#include <boost/interprocess/ipc/message_queue.hpp>
#endif
#include <pipc/c/mqueue.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <x86intrin.h>
#define PIPC_BENCH_PAUSE() _mm_pause()
#define PIPC_BENCH_HAVE_TSC 1
#else
#define PIPC_BENCH_PAUSE() std::atomic_signal_fence(std::memory_order_seq_cst)
#endif

#include <fcntl.h>
#include <limits.h>
#include <mqueue.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

namespace {

// ---------------------------------------------------------------------------------
// Failure. Anything wrong ends the run: a message on stderr, the names this process
// created removed, exit status 1 (2 for a usage error).

// Names of the objects alive now, kept in fixed storage so that the SIGALRM handler
// can remove them too. kind: 'q' kernel queue (mq_unlink), 's' shared memory object
// (shm_unlink: an engine queue's object or a Boost queue).
struct live_name {
  char kind = 0;
  char name[200] = {};
};
live_name g_live[32];

void remember_name(char kind, const std::string& name) {
  for (auto& n : g_live) {
    if (n.kind == 0) {
      n.kind = kind;
      std::snprintf(n.name, sizeof n.name, "%s", name.c_str());
      return;
    }
  }
}
void forget_name(const std::string& name) {
  for (auto& n : g_live) {
    if (n.kind != 0 && name == n.name) n.kind = 0;
  }
}
void remove_live_names() noexcept {
  for (auto& n : g_live) {
    if (n.kind == 'q') ::mq_unlink(n.name);
    if (n.kind == 's') ::shm_unlink(n.name);
    n.kind = 0;
  }
}

pid_t g_main_pid = 0;

[[noreturn]] void die(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void die(const char* fmt, ...) {
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "pipc-bench%s: FAILED: %s\n", ::getpid() == g_main_pid ? "" : " (child)", text);
  std::fflush(stderr);
  if (::getpid() == g_main_pid) {
    remove_live_names();
    std::exit(1);
  }
  ::_exit(1);  // a child: the parent sees the status and reports it
}

std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));  // printf to a string

[[noreturn]] void sys_fail(const char* what) {
  int e = errno;
  die("%s: %s", what, std::strerror(e));
}

// The children of the measurement in progress. A child that fails ends the run at
// once (SIGCHLD), rather than leaving the parent blocked on a message that will never
// come; waitid(WNOWAIT) looks without reaping, so wait_for still collects them.
volatile sig_atomic_t g_children[4] = {0, 0, 0, 0};

extern "C" void on_child(int) {
  const int saved = errno;
  for (auto& c : g_children) {
    const pid_t pid = c;
    if (pid <= 0) continue;
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) continue;
    if (info.si_code == CLD_EXITED && info.si_status == 0) continue;
    static const char text[] = "pipc-bench: FAILED: a child process failed (its message is above)\n";
    ssize_t ignored = ::write(2, text, sizeof text - 1);
    (void)ignored;
    remove_live_names();
    ::_exit(1);
  }
  errno = saved;
}

extern "C" void on_alarm(int) {
  static const char text[] = "pipc-bench: FAILED: a measurement did not finish in time (transport hung?)\n";
  ssize_t ignored = ::write(2, text, sizeof text - 1);
  (void)ignored;
  remove_live_names();
  ::_exit(1);
}

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------------------------
// Message contents. A message is whole 64-bit words: word 0 is its tag (producer in
// bits 48..62, sequence number in bits 0..47, bit 63 marks the end-of-stream message);
// words 1.. are a pattern that the tag determines. The receiver recomputes the pattern
// and compares every word, so a lost, repeated, reordered, truncated or corrupted
// message is caught.

constexpr std::uint64_t end_bit = std::uint64_t{1} << 63;
constexpr std::uint64_t seq_mask = (std::uint64_t{1} << 48) - 1;
constexpr std::uint64_t golden = 0x9e37'79b9'7f4a'7c15ULL;

std::uint64_t mix(std::uint64_t x) noexcept {  // splitmix64
  x += golden;
  x = (x ^ (x >> 30)) * 0xbf58'476d'1ce4'e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d0'49bb'1331'11ebULL;
  return x ^ (x >> 31);
}

std::uint64_t make_tag(unsigned producer, std::uint64_t seq) noexcept {
  return (std::uint64_t{producer} << 48) | (seq & seq_mask);
}

// A message buffer: aligned words, seen as bytes by the transports.
class message {
 public:
  explicit message(std::size_t size) : size_(size), words_(size / 8) {}
  std::byte* bytes() noexcept { return reinterpret_cast<std::byte*>(words_.data()); }
  std::size_t size() const noexcept { return size_; }
  std::uint64_t tag() const noexcept { return words_[0]; }

  void fill(std::uint64_t tag) noexcept {
    std::uint64_t* w = words_.data();
    const std::size_t n = words_.size();
    w[0] = tag;
    std::uint64_t v = mix(tag);
    for (std::size_t i = 1; i < n; ++i) {
      v += golden;
      w[i] = v;
    }
  }
  // Whether the buffer holds exactly what fill(tag) writes.
  bool intact(std::uint64_t tag) const noexcept {
    const std::uint64_t* w = words_.data();
    const std::size_t n = words_.size();
    std::uint64_t diff = w[0] ^ tag;
    std::uint64_t v = mix(tag);
    for (std::size_t i = 1; i < n; ++i) {
      v += golden;
      diff |= w[i] ^ v;
    }
    return diff == 0;
  }

 private:
  std::size_t size_;
  std::vector<std::uint64_t> words_;
};

// ---------------------------------------------------------------------------------
// Transports. A channel is one-way; the parent makes it before fork(), and each
// process opens the end it uses after the fork. The channel's destructor (in the
// parent) removes it.

class endpoint {
 public:
  virtual ~endpoint() = default;
  // Sends `size` bytes as one message; blocks while the channel is full.
  virtual void send(const std::byte* data, std::size_t size) = 0;
  // Receives one message into `buffer` (capacity = the channel's message size);
  // blocks while the channel is empty. Returns the message's size.
  virtual std::size_t receive(std::byte* buffer, std::size_t capacity) = 0;
};

class channel {
 public:
  virtual ~channel() = default;
  virtual std::unique_ptr<endpoint> open_sender() = 0;
  virtual std::unique_ptr<endpoint> open_receiver() = 0;
};

int g_name_counter = 0;
std::string unique_name(const char* prefix) {
  return std::string(prefix) + "pipc-bench-" + std::to_string(g_main_pid) + "-" + std::to_string(++g_name_counter);
}

// ---- pipc::message_queue (engine or kernel backend) ----

std::optional<std::chrono::nanoseconds> g_engine_spin;  // --spin-ns

class pipc_endpoint final : public endpoint {
 public:
  explicit pipc_endpoint(pipc::message_queue q) : q_(std::move(q)) {}
  void send(const std::byte* data, std::size_t size) override { q_.send({data, size}); }
  std::size_t receive(std::byte* buffer, std::size_t capacity) override { return q_.receive({buffer, capacity}).size; }

 private:
  pipc::message_queue q_;
};

class pipc_channel final : public channel {
 public:
  pipc_channel(pipc::backend which, long depth, std::size_t size) : name_(unique_name("/")), backend_(which) {
    options_.backend = which;
    options_.max_messages = depth;
    options_.message_size = static_cast<long>(size);
    if (which == pipc::backend::shm) options_.spin = g_engine_spin;
    keeper_ = pipc::message_queue::open(name_, pipc::open_mode::create_only, options_);
    if (which == pipc::backend::kernel) {
      remember_name('q', name_);
    } else {
      remember_name('s', "/pipc.mq." + name_.substr(1));  // the engine's object (common.hpp)
    }
  }
  ~pipc_channel() override {
    keeper_.close();
    std::error_code ec;
    pipc::message_queue::unlink(name_, backend_, ec);
    forget_name(name_);
    forget_name("/pipc.mq." + name_.substr(1));
  }
  std::unique_ptr<endpoint> open_sender() override { return open_end(pipc::access::write_only); }
  std::unique_ptr<endpoint> open_receiver() override { return open_end(pipc::access::read_only); }

 private:
  std::unique_ptr<endpoint> open_end(pipc::access a) {
    pipc::mq_options o = options_;
    o.access = a;
    return std::make_unique<pipc_endpoint>(pipc::message_queue::open(name_, pipc::open_mode::open_only, o));
  }

  std::string name_;
  pipc::backend backend_;
  pipc::mq_options options_;
  pipc::message_queue keeper_;  // keeps the queue alive from creation to removal
};

// ---- the C API over the engine (pipc_mq_*) ----

class capi_endpoint final : public endpoint {
 public:
  explicit capi_endpoint(pipc_mqd_t q) : q_(q) {}
  ~capi_endpoint() override { ::pipc_mq_close(q_); }
  void send(const std::byte* data, std::size_t size) override {
    while (::pipc_mq_send(q_, reinterpret_cast<const char*>(data), size, 0) != 0) {
      if (errno != EINTR) sys_fail("pipc_mq_send");
    }
  }
  std::size_t receive(std::byte* buffer, std::size_t capacity) override {
    for (;;) {
      ssize_t n = ::pipc_mq_receive(q_, reinterpret_cast<char*>(buffer), capacity, nullptr);
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno != EINTR) sys_fail("pipc_mq_receive");
    }
  }

 private:
  pipc_mqd_t q_;
};

class capi_channel final : public channel {
 public:
  capi_channel(long depth, std::size_t size) : name_(unique_name("/")) {
    struct pipc_mq_attr attr {};
    attr.mq_maxmsg = depth;
    attr.mq_msgsize = static_cast<long>(size);
    keeper_ = ::pipc_mq_open(name_.c_str(), O_CREAT | O_EXCL | O_RDWR, static_cast<mode_t>(0600), &attr);
    if (keeper_ == static_cast<pipc_mqd_t>(-1)) sys_fail("pipc_mq_open (create)");
    remember_name('s', "/pipc.mq." + name_.substr(1));
  }
  ~capi_channel() override {
    ::pipc_mq_close(keeper_);
    ::pipc_mq_unlink(name_.c_str());
    forget_name("/pipc.mq." + name_.substr(1));
  }
  std::unique_ptr<endpoint> open_sender() override { return open_end(O_WRONLY); }
  std::unique_ptr<endpoint> open_receiver() override { return open_end(O_RDONLY); }

 private:
  std::unique_ptr<endpoint> open_end(int flags) {
    pipc_mqd_t q = ::pipc_mq_open(name_.c_str(), flags);
    if (q == static_cast<pipc_mqd_t>(-1)) sys_fail("pipc_mq_open");
    return std::make_unique<capi_endpoint>(q);
  }
  std::string name_;
  pipc_mqd_t keeper_;
};

// ---- raw kernel queues (mq_*) ----

class mq_endpoint final : public endpoint {
 public:
  explicit mq_endpoint(mqd_t q) : q_(q) {}
  ~mq_endpoint() override { ::mq_close(q_); }
  void send(const std::byte* data, std::size_t size) override {
    while (::mq_send(q_, reinterpret_cast<const char*>(data), size, 0) != 0) {
      if (errno != EINTR) sys_fail("mq_send");
    }
  }
  std::size_t receive(std::byte* buffer, std::size_t capacity) override {
    for (;;) {
      ssize_t n = ::mq_receive(q_, reinterpret_cast<char*>(buffer), capacity, nullptr);
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno != EINTR) sys_fail("mq_receive");
    }
  }

 private:
  mqd_t q_;
};

class mq_channel final : public channel {
 public:
  mq_channel(long depth, std::size_t size) : name_(unique_name("/")) {
    struct mq_attr attr {};
    attr.mq_maxmsg = depth;
    attr.mq_msgsize = static_cast<long>(size);
    keeper_ = ::mq_open(name_.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600, &attr);
    if (keeper_ == static_cast<mqd_t>(-1)) sys_fail("mq_open (create)");
    remember_name('q', name_);
  }
  ~mq_channel() override {
    ::mq_close(keeper_);
    ::mq_unlink(name_.c_str());
    forget_name(name_);
  }
  std::unique_ptr<endpoint> open_sender() override { return open_end(O_WRONLY); }
  std::unique_ptr<endpoint> open_receiver() override { return open_end(O_RDONLY); }

 private:
  std::unique_ptr<endpoint> open_end(int flags) {
    mqd_t q = ::mq_open(name_.c_str(), flags | O_CLOEXEC);
    if (q == static_cast<mqd_t>(-1)) sys_fail("mq_open");
    return std::make_unique<mq_endpoint>(q);
  }
  std::string name_;
  mqd_t keeper_;
};

// ---- Boost.Interprocess message_queue ----

#if defined(PIPC_BENCH_HAVE_BOOST)
namespace bip = boost::interprocess;

class boost_endpoint final : public endpoint {
 public:
  explicit boost_endpoint(const std::string& name) : q_(bip::open_only, name.c_str()) {}
  void send(const std::byte* data, std::size_t size) override { q_.send(data, size, 0); }
  std::size_t receive(std::byte* buffer, std::size_t capacity) override {
    bip::message_queue::size_type got = 0;
    unsigned priority = 0;
    q_.receive(buffer, capacity, got, priority);
    return got;
  }

 private:
  bip::message_queue q_;
};

class boost_channel final : public channel {
 public:
  boost_channel(long depth, std::size_t size) : name_(unique_name("")) {
    bip::message_queue::remove(name_.c_str());
    keeper_ = std::make_unique<bip::message_queue>(bip::create_only, name_.c_str(),
                                                   static_cast<bip::message_queue::size_type>(depth), size);
    remember_name('s', "/" + name_);
  }
  ~boost_channel() override {
    keeper_.reset();
    bip::message_queue::remove(name_.c_str());
    forget_name("/" + name_);
  }
  std::unique_ptr<endpoint> open_sender() override { return std::make_unique<boost_endpoint>(name_); }
  std::unique_ptr<endpoint> open_receiver() override { return std::make_unique<boost_endpoint>(name_); }

 private:
  std::string name_;
  std::unique_ptr<bip::message_queue> keeper_;
};
#endif

// ---- pipes: a byte stream, so a receive reads exactly one message's bytes ----

void write_all(int fd, const std::byte* data, std::size_t size, const char* what) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      sys_fail(what);
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

class pipe_endpoint final : public endpoint {
 public:
  pipe_endpoint(int fd, std::size_t message_size) : fd_(fd), message_size_(message_size) {}
  void send(const std::byte* data, std::size_t size) override { write_all(fd_, data, size, "write (pipe)"); }
  std::size_t receive(std::byte* buffer, std::size_t capacity) override {
    std::size_t want = std::min(capacity, message_size_);
    std::size_t got = 0;
    while (got < want) {
      ssize_t n = ::read(fd_, buffer + got, want - got);
      if (n < 0) {
        if (errno == EINTR) continue;
        sys_fail("read (pipe)");
      }
      if (n == 0) die("read (pipe): unexpected end of file");
      got += static_cast<std::size_t>(n);
    }
    return got;
  }

 private:
  int fd_;  // owned by the channel
  std::size_t message_size_;
};

class pipe_channel final : public channel {
 public:
  explicit pipe_channel(std::size_t size) : size_(size) {
    if (::pipe2(fds_, O_CLOEXEC) != 0) sys_fail("pipe2");
  }
  ~pipe_channel() override {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  std::unique_ptr<endpoint> open_sender() override { return std::make_unique<pipe_endpoint>(fds_[1], size_); }
  std::unique_ptr<endpoint> open_receiver() override { return std::make_unique<pipe_endpoint>(fds_[0], size_); }

 private:
  std::size_t size_;
  int fds_[2] = {-1, -1};
};

// ---- AF_UNIX SOCK_SEQPACKET socket pair: one side sends, the other receives ----

class seqpacket_endpoint final : public endpoint {
 public:
  explicit seqpacket_endpoint(int fd) : fd_(fd) {}
  void send(const std::byte* data, std::size_t size) override {
    for (;;) {
      ssize_t n = ::send(fd_, data, size, MSG_NOSIGNAL);
      if (n == static_cast<ssize_t>(size)) return;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) sys_fail("send (seqpacket)");
      die("send (seqpacket): sent %zd of %zu bytes", n, size);
    }
  }
  std::size_t receive(std::byte* buffer, std::size_t capacity) override {
    for (;;) {
      // MSG_TRUNC: the result is the packet's real length, so truncation shows.
      ssize_t n = ::recv(fd_, buffer, capacity, MSG_TRUNC);
      if (n >= 0) {
        if (static_cast<std::size_t>(n) > capacity) die("recv (seqpacket): a %zd-byte packet was truncated", n);
        if (n == 0) die("recv (seqpacket): the peer closed the socket");
        return static_cast<std::size_t>(n);
      }
      if (errno != EINTR) sys_fail("recv (seqpacket)");
    }
  }

 private:
  int fd_;  // owned by the channel
};

class seqpacket_channel final : public channel {
 public:
  seqpacket_channel() {
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds_) != 0) sys_fail("socketpair");
  }
  ~seqpacket_channel() override {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  std::unique_ptr<endpoint> open_sender() override { return std::make_unique<seqpacket_endpoint>(fds_[0]); }
  std::unique_ptr<endpoint> open_receiver() override { return std::make_unique<seqpacket_endpoint>(fds_[1]); }

 private:
  int fds_[2] = {-1, -1};
};

// ---- the reference "limit": a bare single-producer/single-consumer spin ring ----
//
// Not a product: no blocking (it busy-polls), no priorities, no second producer or
// consumer, no crash safety, no names. It is the fastest honest way to hand fixed-size
// messages from one process to another through shared memory, so its row says what
// the machine allows; the queues' rows are read against it.
//
// Layout: one anonymous MAP_SHARED mapping, made by the parent before fork():
//
//   offset 0     head   (std::atomic<uint64_t>) messages ever published; sender writes
//   offset 128   tail   (std::atomic<uint64_t>) messages ever consumed; receiver writes
//   offset 256   depth slots of stride bytes (the message size rounded up to 64)
//
// head and tail are 128 bytes apart, so the adjacent-line prefetcher does not pair
// their lines either. Invariants:
//   1. 0 <= head - tail <= depth; depth is a power of two.
//   2. Message i (tail <= i < head) is in slot i % depth, complete: the sender copies it
//      in before it publishes head = i + 1 (release), and the receiver reads head with
//      acquire before it copies the slot out.
//   3. The sender reuses slot i % depth only once tail > i - depth (acquire on tail,
//      published with release after the receiver's copy).
//   4. The shared tail may lag the receiver's own: it publishes it every depth/16
//      messages (every message at depth 1) and whenever it has caught up with the head
//      it knows of, so always before it waits.
// Each side keeps its own index and a cached copy of the other's, so a side reads the
// shared word of the other only when its cached copy says "full" or "empty". The
// batched tail (4) keeps a sender that polls a full ring from pulling tail's line
// away from the receiver on every message (1 KiB streaming: +25-40 % here, pinned).
//
// Waiting is a spin that looks at the other side's word about every 60 ns: a pause
// instruction, then the time-stamp counter read until 160 ticks have passed since the
// pause began. Looking after every pause (~10 ns here) made the ring slower: 64 B
// ping-pong p50 0.40-0.49 µs against 0.34-0.36 µs spaced, three alternating runs of
// five repetitions; streaming did not change. Every 256 looks (about 15 µs) without
// progress it calls sched_yield(): it never sleeps, but if the scheduler put both
// processes on one CPU the peer gets to run (without it a hand-over would cost a time
// slice). With a CPU for each side a wait of a few µs never gets that far.
//
// The bench's message is copied into a slot and out of it, as every queue here copies
// it; the fill and the check of every word happen outside the transport, as for all.

struct ring_indices {
  alignas(128) std::atomic<std::uint64_t> head;
  alignas(128) std::atomic<std::uint64_t> tail;
};
constexpr std::size_t ring_slots_offset = 256;
static_assert(sizeof(ring_indices) == ring_slots_offset && offsetof(ring_indices, tail) == 128);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// One wait between two looks of the ring (see above).
inline void ring_pause() noexcept {
#if defined(PIPC_BENCH_HAVE_TSC)
  const unsigned long long start = __rdtsc();
  PIPC_BENCH_PAUSE();
  while (__rdtsc() - start < 160) {
  }
#else
  PIPC_BENCH_PAUSE();
#endif
}

template <class Ready>
void spin_until(Ready ready) {
  for (unsigned n = 1; !ready(); ++n) {
    ring_pause();
    if ((n & 255) == 0) ::sched_yield();
  }
}

class ring_sender final : public endpoint {
 public:
  ring_sender(void* base, std::size_t size, std::size_t stride, std::uint64_t depth)
      : idx_(static_cast<ring_indices*>(base)),
        slots_(static_cast<std::byte*>(base) + ring_slots_offset),
        size_(size),
        stride_(stride),
        depth_(depth),
        head_(idx_->head.load(std::memory_order_relaxed)),
        cached_tail_(idx_->tail.load(std::memory_order_acquire)) {}
  void send(const std::byte* data, std::size_t size) override {
    if (size != size_) die("limit-spin-ring: a %zu-byte message on a ring of %zu-byte slots", size, size_);
    std::memcpy(slot_to_fill(), data, size);
    publish();
  }
  std::size_t receive(std::byte*, std::size_t) override { die("limit-spin-ring: receive on the sending end"); }

  // In place: the slot the next message is to be written in, once the receiver has
  // freed it; publish() sends it.
  std::byte* slot_to_fill() {
    if (head_ - cached_tail_ == depth_) {  // full as far as we know: look again
      spin_until([this] {
        cached_tail_ = idx_->tail.load(std::memory_order_acquire);
        return head_ - cached_tail_ < depth_;
      });
    }
    return slots_ + (head_ & (depth_ - 1)) * stride_;
  }
  void publish() {
    ++head_;
    idx_->head.store(head_, std::memory_order_release);
  }

 private:
  ring_indices* idx_;
  std::byte* slots_;
  std::size_t size_, stride_;
  std::uint64_t depth_;
  std::uint64_t head_;         // ours: the next message's number
  std::uint64_t cached_tail_;  // the receiver's tail, as last read
};

class ring_receiver final : public endpoint {
 public:
  ring_receiver(void* base, std::size_t size, std::size_t stride, std::uint64_t depth)
      : idx_(static_cast<ring_indices*>(base)),
        slots_(static_cast<std::byte*>(base) + ring_slots_offset),
        size_(size),
        stride_(stride),
        depth_(depth),
        tail_(idx_->tail.load(std::memory_order_relaxed)),
        published_(tail_),
        batch_(std::max<std::uint64_t>(1, depth / 16)),
        cached_head_(idx_->head.load(std::memory_order_acquire)) {}
  void send(const std::byte*, std::size_t) override { die("limit-spin-ring: send on the receiving end"); }
  std::size_t receive(std::byte* buffer, std::size_t capacity) override {
    if (capacity < size_) die("limit-spin-ring: a %zu-byte buffer for %zu-byte slots", capacity, size_);
    std::memcpy(buffer, next_message(), size_);
    release();
    return size_;
  }

  // In place: the next message, in its slot, once the sender has published it;
  // release() gives the slot back.
  const std::byte* next_message() {
    if (tail_ == cached_head_) {  // empty as far as we know: look again
      spin_until([this] {
        cached_head_ = idx_->head.load(std::memory_order_acquire);
        return cached_head_ != tail_;
      });
    }
    return slots_ + (tail_ & (depth_ - 1)) * stride_;
  }
  void release() {
    ++tail_;
    // Publish the freed slots in batches, and always before waiting: a sender that
    // finds the ring full polls tail, and a store per message would pull its line back
    // and forth once per message.
    if (tail_ - published_ >= batch_ || tail_ == cached_head_) {
      idx_->tail.store(tail_, std::memory_order_release);
      published_ = tail_;
    }
  }

 private:
  ring_indices* idx_;
  std::byte* slots_;
  std::size_t size_, stride_;
  std::uint64_t depth_;
  std::uint64_t tail_;         // ours: the next message's number
  std::uint64_t published_;    // the tail last stored for the sender
  std::uint64_t batch_;        // free slots published at a time
  std::uint64_t cached_head_;  // the sender's head, as last read
};

class ring_channel final : public channel {
 public:
  // Requires: depth is a power of two.
  ring_channel(std::uint64_t depth, std::size_t size)
      : size_(size), stride_((size + 63) / 64 * 64), depth_(depth), bytes_(ring_slots_offset + depth * stride_) {
    // MAP_POPULATE: the pages exist before the first message, as the engine's do
    // after its open, so no first-touch fault lands in a timed part.
    base_ = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (base_ == MAP_FAILED) sys_fail("mmap (limit-spin-ring)");
    new (base_) ring_indices{};
  }
  ~ring_channel() override { ::munmap(base_, bytes_); }
  std::unique_ptr<endpoint> open_sender() override { return ring_sender_end(); }
  std::unique_ptr<endpoint> open_receiver() override { return ring_receiver_end(); }
  // The ends as themselves, for their in-place calls.
  std::unique_ptr<ring_sender> ring_sender_end() {
    return std::make_unique<ring_sender>(base_, size_, stride_, depth_);
  }
  std::unique_ptr<ring_receiver> ring_receiver_end() {
    return std::make_unique<ring_receiver>(base_, size_, stride_, depth_);
  }

 private:
  std::size_t size_, stride_;
  std::uint64_t depth_;
  std::size_t bytes_;
  void* base_ = nullptr;
};

// ---- a deliberately broken transport, to show that the checks catch one ----
//
// With PIPC_BENCH_BREAK=drop|duplicate|corrupt|truncate|reorder in the environment,
// the transport "broken" (a socket pair) damages its 5000th message that way.
// pipc-bench --only broken must then fail; bench/README.md shows how.

class broken_endpoint final : public endpoint {
 public:
  broken_endpoint(std::unique_ptr<endpoint> inner, std::string how) : inner_(std::move(inner)), how_(std::move(how)) {}
  void send(const std::byte* data, std::size_t size) override {
    ++sent_;
    if (sent_ == 5001 && !held_.empty()) {  // reorder: the held message follows this one
      inner_->send(data, size);
      inner_->send(held_.data(), held_.size());
      return;
    }
    if (sent_ != 5000) return inner_->send(data, size);
    if (how_ == "drop") return;
    if (how_ == "duplicate") {
      inner_->send(data, size);
      return inner_->send(data, size);
    }
    if (how_ == "truncate") return inner_->send(data, size - 8);
    std::vector<std::byte> copy(data, data + size);
    if (how_ == "corrupt") {
      copy[size - 1] = static_cast<std::byte>(static_cast<unsigned>(copy[size - 1]) + 1);
      return inner_->send(copy.data(), size);
    }
    if (how_ == "reorder") {
      held_ = std::move(copy);
      return;
    }
    die("PIPC_BENCH_BREAK=%s: want drop, duplicate, corrupt, truncate or reorder", how_.c_str());
  }
  std::size_t receive(std::byte* buffer, std::size_t capacity) override { return inner_->receive(buffer, capacity); }

 private:
  std::unique_ptr<endpoint> inner_;
  std::string how_;
  std::uint64_t sent_ = 0;
  std::vector<std::byte> held_;
};

class broken_channel final : public channel {
 public:
  explicit broken_channel(std::string how) : how_(std::move(how)) {}
  std::unique_ptr<endpoint> open_sender() override {
    return std::make_unique<broken_endpoint>(inner_.open_sender(), how_);
  }
  std::unique_ptr<endpoint> open_receiver() override { return inner_.open_receiver(); }

 private:
  seqpacket_channel inner_;
  std::string how_;
};

// ---- the list ----

struct transport {
  std::string name;         // what --only matches and the tables show: "pipc-shm/1024"
  std::string description;  // one line for --list and the README
  long depth;               // capacity in messages; 0: a kernel byte buffer (pipe, socket)
  bool latency;             // ping-pong at this depth (one message is in flight at a time,
                            // so depth does not matter; measured once per transport)
  bool byte_stream;         // messages over PIPE_BUF may interleave with two writers
  std::function<std::unique_ptr<channel>(std::size_t size)> make;
  bool stream = true;       // streamed (false: a configuration for ping-pong only)
  std::string no_contention = {};  // why contention does not apply at all, if it does not
  // Why a message of this size cannot go through this transport here ("" if it can).
  std::function<std::string(std::size_t size)> size_limit = {};
};

// Kernel queues: msgsize_max (raised only by root), and RLIMIT_MSGQUEUE, which every
// queue of this user counts against (a ping-pong has two queues; the kernel charges
// each message's size plus some bookkeeping, here taken as 64 bytes).
std::string kernel_mq_limit(long depth, std::size_t size) {
  long max = 8192;
  if (std::FILE* f = std::fopen("/proc/sys/fs/mqueue/msgsize_max", "r")) {
    if (std::fscanf(f, "%ld", &max) != 1) max = 8192;
    std::fclose(f);
  }
  if (static_cast<long>(size) > max)
    return strf("n/a: larger than msgsize_max (%ld here, /proc/sys/fs/mqueue/msgsize_max)", max);
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_MSGQUEUE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      2 * static_cast<rlim_t>(depth) * (size + 64) > rl.rlim_cur)
    return strf("n/a: two queues of %ld × %zu B exceed RLIMIT_MSGQUEUE (%llu B)", depth, size,
                static_cast<unsigned long long>(rl.rlim_cur));
  return "";
}

// AF_UNIX datagrams: a packet must fit the socket's send buffer (SO_SNDBUF, whose
// default is net.core.wmem_default). Tried on a fresh socket pair, once per size.
std::string seqpacket_limit(std::size_t size) {
  static std::map<std::size_t, std::string> known;
  if (auto it = known.find(size); it != known.end()) return it->second;
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) sys_fail("socketpair");
  std::vector<std::byte> probe(size);
  std::string why;
  if (::send(fds[0], probe.data(), size, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno == EMSGSIZE) {
    int sndbuf = 0;
    socklen_t len = sizeof sndbuf;
    ::getsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, &len);
    why = strf("n/a: a packet must fit the socket's send buffer (SO_SNDBUF %d here): EMSGSIZE", sndbuf);
  }
  ::close(fds[0]);
  ::close(fds[1]);
  return known[size] = why;
}

std::vector<transport> all_transports() {
  std::vector<transport> t;
  const std::string ring = "reference, not a product: bare SPSC ring in shared memory, busy-polling, no blocking, "
                           "no priorities — the machine's limit";
  t.push_back({"limit-spin-ring/1", ring + "; 1 slot (ping-pong)", 1, true, false,
               [](std::size_t size) { return std::make_unique<ring_channel>(1, size); }, false,
               "single producer, single consumer (reference only)"});
  t.push_back({"limit-spin-ring/1024", ring + "; 1024 slots (streaming)", 1024, false, false,
               [](std::size_t size) { return std::make_unique<ring_channel>(1024, size); }, true,
               "single producer, single consumer (reference only)"});
  for (long depth : {10L, 1024L}) {
    t.push_back({"pipc-shm/" + std::to_string(depth), "pipc engine, C++ API (pipc::message_queue, backend::shm)", depth,
                 depth == 10, false, [depth](std::size_t size) {
                   return std::make_unique<pipc_channel>(pipc::backend::shm, depth, size);
                 }});
  }
  for (long depth : {10L, 1024L}) {
    t.push_back({"pipc-shm-c/" + std::to_string(depth), "pipc engine, C API (pipc_mq_*)", depth, depth == 10, false,
                 [depth](std::size_t size) { return std::make_unique<capi_channel>(depth, size); }});
  }
  t.push_back({"pipc-kernel/10", "pipc::message_queue, backend::kernel (mq_* underneath)", 10, true, false,
               [](std::size_t size) { return std::make_unique<pipc_channel>(pipc::backend::kernel, 10, size); },
               true, "", [](std::size_t size) { return kernel_mq_limit(10, size); }});
  t.push_back({"kernel-mq/10", "raw kernel queue: mq_open/mq_send/mq_receive, maxmsg 10 (msg_max here)", 10, true,
               false, [](std::size_t size) { return std::make_unique<mq_channel>(10, size); }, true, "",
               [](std::size_t size) { return kernel_mq_limit(10, size); }});
  t.push_back({"pipe", "pipe2(), one write()/read() of the message size per message", 0, true, true,
               [](std::size_t size) { return std::make_unique<pipe_channel>(size); }});
  t.push_back({"unix-seqpacket", "socketpair(AF_UNIX, SOCK_SEQPACKET)", 0, true, false,
               [](std::size_t) { return std::make_unique<seqpacket_channel>(); }, true, "", seqpacket_limit});
  if (const char* how = std::getenv("PIPC_BENCH_BREAK")) {
    std::string h = how;
    t.push_back({"broken", "a socket pair that damages its 5000th message (PIPC_BENCH_BREAK=" + h + ")", 0, true, false,
                 [h](std::size_t) { return std::make_unique<broken_channel>(h); }});
  }
#if defined(PIPC_BENCH_HAVE_BOOST)
  for (long depth : {10L, 1024L}) {
    t.push_back({"boost/" + std::to_string(depth), "boost::interprocess::message_queue (header-only Boost)", depth,
                 depth == 10, false,
                 [depth](std::size_t size) { return std::make_unique<boost_channel>(depth, size); }});
  }
#endif
  return t;
}

// ---------------------------------------------------------------------------------
// Processes.

struct settings {
  int reps = 5;
  long round_trips = 100'000;  // timed round trips per ping-pong repetition
  long warmup_round_trips = 1'000;
  long stream_warmup = 4096;  // messages received before a stream's clock starts
  double stream_ms = 100;     // timed part of one stream repetition
  double contention_ms = 100;
  double contention_warmup_ms = 30;  // running, not counted, before the measured phase
  long create_rounds = 10;  // per create repetition: rounds of create_batch per transport
  long create_batch = 200;
  bool pin = false;
  bool latency_all_depths = false;
  std::vector<std::size_t> sizes = {64, 1024, 8192};
  std::vector<std::string> only;
  std::vector<std::string> measurements = {"latency", "stream", "contention", "create", "large"};
  std::string csv_path;
  std::string md_path;
};

std::vector<int> g_cpus;  // the CPUs this process may use (for --pin)

void pin_to(int slot) {
  if (g_cpus.empty()) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(g_cpus[static_cast<std::size_t>(slot) % g_cpus.size()], &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) sys_fail("sched_setaffinity");
}

// Forks a child that runs `body`, then exits 0 (non-zero if body fails). The child
// dies with the parent. `cpu_slot` >= 0 pins it when --pin is on.
pid_t spawn(const settings& s, int cpu_slot, const std::function<void()>& body) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) sys_fail("fork");
  if (pid > 0) {
    for (auto& c : g_children) {
      if (c == 0) {
        c = pid;
        break;
      }
    }
    return pid;
  }
  ::signal(SIGCHLD, SIG_DFL);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != g_main_pid) ::_exit(1);
  ::alarm(0);
  if (s.pin && cpu_slot >= 0) pin_to(cpu_slot);
  try {
    body();
  } catch (const std::exception& e) {
    die("%s", e.what());
  }
  std::fflush(nullptr);
  ::_exit(0);  // no destructors: the parent's objects are the parent's to release
}

void wait_for(pid_t pid, const char* role) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) sys_fail("waitpid");
  }
  for (auto& c : g_children)
    if (c == pid) c = 0;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  if (WIFSIGNALED(status)) die("the %s process was killed by signal %d", role, WTERMSIG(status));
  die("the %s process failed (exit status %d)", role, WEXITSTATUS(status));
}

// A small anonymous shared region for the processes of one measurement: the phase
// flag, where the peer runs, and each child's tallies. Read on the measured paths: the
// phase (read-mostly, written twice per run) and the peer's CPU (every 256 messages).
enum phase : int { warming = 0, measuring = 1, stopping = 2 };
// Where a process's time went, from the scheduler's own accounting
// (/proc/self/schedstat, in ns): on a CPU, and runnable but waiting for one. The rest
// of a stretch of wall time it spent blocked (here: sleeping in the transport).
struct sched_times {
  std::uint64_t ran_ns;
  std::uint64_t queued_ns;
};

sched_times read_sched_times() noexcept {
  sched_times t{0, 0};
  int fd = ::open("/proc/self/schedstat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return t;
  char text[128];
  ssize_t n = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  if (n <= 0) return t;
  text[n] = '\0';
  unsigned long long ran = 0, queued = 0;
  if (std::sscanf(text, "%llu %llu", &ran, &queued) == 2) t = {ran, queued};
  return t;
}

struct tally {
  std::uint64_t count[2];   // messages per producer
  std::uint64_t hash[2];    // sum of mix(tag) per producer
  std::uint64_t marked[2];  // count[] when the measured phase began
  std::int64_t mark_ns;     // when this process saw the measured phase begin
  std::int64_t end_ns;      // when this process finished
  sched_times at_mark, at_end;

  void mark_begin() noexcept {
    mark_ns = now_ns();
    at_mark = read_sched_times();
  }
  void mark_end() noexcept {
    end_ns = now_ns();
    at_end = read_sched_times();
  }
};
struct control_block {
  alignas(64) std::atomic<int> phase;
  alignas(64) std::atomic<int> peer_cpu;  // the child's CPU, as it last saw it
  alignas(64) tally producer[2];
  tally consumer[2];
};
control_block* g_control = nullptr;

void reset_control() {
  g_control->phase.store(warming);
  g_control->peer_cpu.store(-1);
  std::memset(static_cast<void*>(g_control->producer), 0, sizeof g_control->producer);
  std::memset(static_cast<void*>(g_control->consumer), 0, sizeof g_control->consumer);
}

// Samples whether this process runs on the CPU where the child last said it runs:
// unpinned, the scheduler often puts a waker and its wakee on one CPU, which decides
// how blocking and spinning transports perform.
class placement {
 public:
  void child_sample() noexcept { g_control->peer_cpu.store(::sched_getcpu(), std::memory_order_relaxed); }
  void parent_sample() noexcept {
    const int peer = g_control->peer_cpu.load(std::memory_order_relaxed);
    if (peer < 0) return;
    ++samples_;
    if (peer == ::sched_getcpu()) ++same_;
  }
  double same_cpu_share() const noexcept {
    return samples_ ? static_cast<double>(same_) / static_cast<double>(samples_) : 0;
  }

 private:
  std::uint64_t samples_ = 0, same_ = 0;
};

// Arms the watchdog for one measurement.
void watchdog(double expected_seconds) { ::alarm(static_cast<unsigned>(60 + 10 * expected_seconds)); }

// ---------------------------------------------------------------------------------
// The measurements.

struct latency_result {
  double p50_ns, p99_ns, p999_ns;
  double same_cpu;  // share of samples with both processes on one CPU
};

// Nearest-rank percentile of sorted samples.
double percentile(const std::vector<std::int64_t>& sorted, double p) {
  auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]);
}

latency_result ping_pong(const transport& t, std::size_t size, const settings& s) {
  auto ping = t.make(size);  // parent -> child
  auto pong = t.make(size);  // child -> parent
  reset_control();
  pid_t child = spawn(s, 1, [&] {
    auto in = ping->open_receiver();
    auto out = pong->open_sender();
    message m(size);
    placement where;
    for (std::uint64_t i = 0;; ++i) {
      std::size_t n = in->receive(m.bytes(), size);
      if (n != size) die("%s: echo received %zu bytes, expected %zu", t.name.c_str(), n, size);
      out->send(m.bytes(), n);
      if (m.tag() & end_bit) return;
      if ((i & 255) == 0) where.child_sample();
    }
  });
  auto out = ping->open_sender();
  auto in = pong->open_receiver();
  message request(size), reply(size);
  std::vector<std::int64_t> rtt(static_cast<std::size_t>(s.round_trips));
  placement where;
  const long total = s.warmup_round_trips + s.round_trips;
  for (long i = 0; i < total; ++i) {
    if ((i & 255) == 128) where.parent_sample();
    const std::uint64_t tag = make_tag(0, static_cast<std::uint64_t>(i));
    request.fill(tag);
    const std::int64_t t0 = now_ns();
    out->send(request.bytes(), size);
    const std::size_t n = in->receive(reply.bytes(), size);
    const std::int64_t t1 = now_ns();
    if (n != size || !reply.intact(tag))
      die("%s: ping-pong reply %ld is wrong (%zu bytes, tag %#" PRIx64 ")", t.name.c_str(), i, n, reply.tag());
    if (i >= s.warmup_round_trips) rtt[static_cast<std::size_t>(i - s.warmup_round_trips)] = t1 - t0;
  }
  request.fill(end_bit | make_tag(0, static_cast<std::uint64_t>(total)));
  out->send(request.bytes(), size);
  in->receive(reply.bytes(), size);
  wait_for(child, "echo");
  std::sort(rtt.begin(), rtt.end());
  return {percentile(rtt, 0.50), percentile(rtt, 0.99), percentile(rtt, 0.999), where.same_cpu_share()};
}

struct stream_result {
  double msgs_per_s;
  std::uint64_t messages;  // timed messages, all verified
  double same_cpu;
};

stream_result stream(const transport& t, std::size_t size, const settings& s) {
  auto ch = t.make(size);
  reset_control();
  pid_t child = spawn(s, 1, [&] {
    auto out = ch->open_sender();
    message m(size);
    placement where;
    std::uint64_t seq = 0;
    while (g_control->phase.load(std::memory_order_relaxed) != stopping) {
      if ((seq & 255) == 0) where.child_sample();
      m.fill(make_tag(0, seq));
      out->send(m.bytes(), size);
      ++seq;
    }
    m.fill(end_bit | make_tag(0, seq));
    out->send(m.bytes(), size);
  });
  auto in = ch->open_receiver();
  message m(size);
  placement where;
  const auto warm = static_cast<std::uint64_t>(s.stream_warmup);
  const auto timed_ns = static_cast<std::int64_t>(s.stream_ms * 1e6);
  std::uint64_t expected = 0;
  std::int64_t t0 = 0, t1 = 0;
  for (;;) {
    const std::size_t n = in->receive(m.bytes(), size);
    if (n != size) die("%s: stream message %" PRIu64 " has %zu bytes, expected %zu", t.name.c_str(), expected, n, size);
    const std::uint64_t tag = m.tag();
    if (tag & end_bit) {
      t1 = now_ns();
      if (tag != (end_bit | make_tag(0, expected)) || !m.intact(tag))
        die("%s: the end of the stream says %" PRIu64 " messages, %" PRIu64 " arrived", t.name.c_str(), tag & seq_mask,
            expected);
      break;
    }
    if (tag != make_tag(0, expected) || !m.intact(tag))
      die("%s: stream message %" PRIu64 " is wrong (tag %#" PRIx64 ")", t.name.c_str(), expected, tag);
    ++expected;
    if (expected == warm) {
      t0 = now_ns();
    } else if (expected > warm && (expected & 255) == 128) {
      where.parent_sample();
      if (g_control->phase.load(std::memory_order_relaxed) != stopping && now_ns() - t0 >= timed_ns)
        g_control->phase.store(stopping, std::memory_order_relaxed);
    }
  }
  wait_for(child, "sender");
  if (expected <= warm) die("%s: the stream ended after %" PRIu64 " messages", t.name.c_str(), expected);
  const std::uint64_t timed = expected - warm;
  return {static_cast<double>(timed) * 1e9 / static_cast<double>(t1 - t0), timed, where.same_cpu_share()};
}

// How the two processes of one role (producers or consumers) spent the timed part, as
// shares of their own timed stretch (from /proc/self/schedstat): on a CPU, runnable but
// waiting for one, and blocked (the rest: sleeping in the transport). `lower` is the
// one that moved fewer messages. It tells a transport that made a process wait apart
// from a scheduler that gave it less of a CPU.
struct time_split {
  double ran, queued, blocked;
};
struct role_times {
  double cpu_fairness;  // min/max of the two processes' CPU time
  time_split lower, higher;
};

time_split split_of(const tally& t) noexcept {
  const double window = static_cast<double>(std::max<std::int64_t>(1, t.end_ns - t.mark_ns));
  const double ran = static_cast<double>(t.at_end.ran_ns - t.at_mark.ran_ns) / window;
  const double queued = static_cast<double>(t.at_end.queued_ns - t.at_mark.queued_ns) / window;
  return {ran, queued, std::max(0.0, 1.0 - ran - queued)};
}

role_times times_of(const tally& a, double moved_a, const tally& b, double moved_b) noexcept {
  const double ran_a = static_cast<double>(a.at_end.ran_ns - a.at_mark.ran_ns);
  const double ran_b = static_cast<double>(b.at_end.ran_ns - b.at_mark.ran_ns);
  role_times r{};
  r.cpu_fairness = std::max(ran_a, ran_b) > 0 ? std::min(ran_a, ran_b) / std::max(ran_a, ran_b) : 0;
  const bool a_lower = moved_a <= moved_b;
  r.lower = split_of(a_lower ? a : b);
  r.higher = split_of(a_lower ? b : a);
  return r;
}

struct contention_result {
  double msgs_per_s;
  double producer_fairness;  // min/max of the producers' counts (1 = equal shares)
  double consumer_fairness;  // min/max of the consumers' counts
  double jain;               // Jain's index over the producers' counts (0.5 .. 1 for two)
  std::uint64_t messages;
  role_times producers, consumers;
};

void read_exactly(int fd, std::size_t n) {
  char buf[8];
  while (n > 0) {
    ssize_t r = ::read(fd, buf, std::min(n, sizeof buf));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) sys_fail("read (start gate)");
    n -= static_cast<std::size_t>(r);
  }
}

// Sleeps `ms` milliseconds, whatever signals arrive meanwhile.
void sleep_ms(double ms) {
  timespec left{static_cast<time_t>(ms / 1000), static_cast<long>(std::fmod(ms, 1000.0) * 1e6)};
  while (::nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
}

contention_result contention(const transport& t, std::size_t size, const settings& s) {
  auto ch = t.make(size);
  reset_control();
  int ready[2], gate[2];
  if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(gate, O_CLOEXEC) != 0) sys_fail("pipe2 (start gate)");
  auto arrive = [&] {  // tell the parent this process is ready, wait for the start
    const char c = 'r';
    if (::write(ready[1], &c, 1) != 1) sys_fail("write (start gate)");
    read_exactly(gate[0], 1);
  };
  std::vector<pid_t> children;
  for (unsigned p = 0; p < 2; ++p) {
    children.push_back(spawn(s, static_cast<int>(p), [&, p] {
      auto out = ch->open_sender();
      message m(size);
      std::uint64_t seq = 0, hash = 0, marked = 0;
      bool mark_taken = false;
      arrive();
      for (;;) {
        const int ph = g_control->phase.load(std::memory_order_relaxed);
        if (ph != warming && !mark_taken) {
          marked = seq;
          mark_taken = true;
          g_control->producer[p].mark_begin();
        }
        if (ph == stopping) break;
        const std::uint64_t tag = make_tag(p, seq);
        m.fill(tag);
        out->send(m.bytes(), size);
        hash += mix(tag);
        ++seq;
      }
      m.fill(end_bit | make_tag(p, seq));
      out->send(m.bytes(), size);
      g_control->producer[p].count[p] = seq;
      g_control->producer[p].hash[p] = hash;
      g_control->producer[p].marked[p] = marked;
      g_control->producer[p].mark_end();
    }));
  }
  for (unsigned c = 0; c < 2; ++c) {
    children.push_back(spawn(s, static_cast<int>(c), [&, c] {
      auto in = ch->open_receiver();
      message m(size);
      tally mine{};
      bool mark_taken = false;
      std::uint64_t next[2] = {0, 0};  // lowest sequence number still possible per producer
      arrive();
      for (;;) {  // until one end-of-stream message (there are two, one per consumer)
        if (!mark_taken && g_control->phase.load(std::memory_order_relaxed) != warming) {
          mine.marked[0] = mine.count[0];
          mine.marked[1] = mine.count[1];
          mine.mark_begin();
          mark_taken = true;
        }
        const std::size_t n = in->receive(m.bytes(), size);
        if (n != size) die("%s: contention: received %zu bytes, expected %zu", t.name.c_str(), n, size);
        const std::uint64_t tag = m.tag();
        const auto p = static_cast<unsigned>((tag >> 48) & 0x7fff);
        const std::uint64_t seq = tag & seq_mask;
        if (p > 1) die("%s: contention: a message from producer %u", t.name.c_str(), p);
        if (!m.intact(tag)) die("%s: contention: message %u/%" PRIu64 " is corrupt", t.name.c_str(), p, seq);
        if (tag & end_bit) break;
        if (seq < next[p])
          die("%s: contention: producer %u's message %" PRIu64 " came after %" PRIu64 " (order or duplicate)",
              t.name.c_str(), p, seq, next[p] - 1);
        next[p] = seq + 1;
        ++mine.count[p];
        mine.hash[p] += mix(tag);
      }
      mine.mark_end();
      g_control->consumer[c] = mine;
    }));
  }
  ::close(ready[1]);
  ::close(gate[0]);
  read_exactly(ready[0], 4);
  const char go[4] = {'g', 'g', 'g', 'g'};
  if (::write(gate[1], go, 4) != 4) sys_fail("write (start gate)");
  sleep_ms(s.contention_warmup_ms);
  const std::int64_t t0 = now_ns();
  g_control->phase.store(measuring);
  sleep_ms(s.contention_ms);
  g_control->phase.store(stopping);
  const char* roles[] = {"producer 0", "producer 1", "consumer 0", "consumer 1"};
  for (std::size_t i = 0; i < children.size(); ++i) wait_for(children[i], roles[i]);
  ::close(ready[0]);
  ::close(gate[1]);

  const tally* prod = g_control->producer;
  const tally* cons = g_control->consumer;
  std::uint64_t total = 0;
  for (unsigned p = 0; p < 2; ++p) {
    const std::uint64_t got = cons[0].count[p] + cons[1].count[p];
    const std::uint64_t hash = cons[0].hash[p] + cons[1].hash[p];
    if (got != prod[p].count[p] || hash != prod[p].hash[p])
      die("%s: contention: producer %u sent %" PRIu64 " messages, consumers received %" PRIu64 "%s", t.name.c_str(), p,
          prod[p].count[p], got, got == prod[p].count[p] ? " (checksum differs)" : "");
    total += got;
  }
  // The measured phase: what the consumers took out after the mark, over the time from
  // the mark until both had drained the channel; producers' shares likewise.
  std::uint64_t timed = 0;
  for (unsigned c = 0; c < 2; ++c) timed += cons[c].count[0] + cons[c].count[1] - cons[c].marked[0] - cons[c].marked[1];
  (void)total;
  const std::int64_t end = std::max(cons[0].end_ns, cons[1].end_ns);
  const double a = static_cast<double>(prod[0].count[0] - prod[0].marked[0]);
  const double b = static_cast<double>(prod[1].count[1] - prod[1].marked[1]);
  const double ca = static_cast<double>(cons[0].count[0] + cons[0].count[1] - cons[0].marked[0] - cons[0].marked[1]);
  const double cb = static_cast<double>(cons[1].count[0] + cons[1].count[1] - cons[1].marked[0] - cons[1].marked[1]);
  contention_result r{};
  r.messages = timed;
  r.msgs_per_s = static_cast<double>(timed) * 1e9 / static_cast<double>(end - t0);
  r.producer_fairness = std::max(a, b) > 0 ? std::min(a, b) / std::max(a, b) : 0;
  r.consumer_fairness = std::max(ca, cb) > 0 ? std::min(ca, cb) / std::max(ca, cb) : 0;
  r.jain = (a + b) > 0 ? (a + b) * (a + b) / (2 * (a * a + b * b)) : 0;
  r.producers = times_of(prod[0], a, prod[1], b);
  r.consumers = times_of(cons[0], ca, cons[1], cb);
  return r;
}

// ---------------------------------------------------------------------------------
// Creating a queue (measurement "create"), in this process: what a create costs for a
// queue of mq_open's default attributes (10 messages of 8192 bytes), for pipc's engine
// through the C++ API and the C API, and for raw kernel mq_open. Two operations:
//   create  create the queue (O_CREAT | O_EXCL), close it, remove its name
//   exists  O_CREAT | O_EXCL on a name that exists: fails with EEXIST, nothing is made
// Each repetition runs create_rounds rounds; in a round every transport runs
// create_batch operations in turn, so the transports alternate and a slow moment of
// the machine falls on all of them alike. A repetition's figure is its mean per
// operation.

constexpr long create_depth = 10;
constexpr long create_size = 8192;

struct creator {
  std::string name;  // the table's row
  std::string description;
  char kind;         // for remember_name: 'q' kernel queue, 's' shared memory object
  std::string (*object)(const std::string& queue);  // what remember_name records
  void (*make)(const std::string& queue);            // create, close, keep the name
  bool (*exists)(const std::string& queue);          // O_EXCL on a taken name: EEXIST?
  void (*remove)(const std::string& queue);
};

std::string engine_object(const std::string& queue) { return "/pipc.mq." + queue.substr(1); }
std::string same_name(const std::string& queue) { return queue; }

pipc::mq_options create_options() {
  pipc::mq_options o;
  o.max_messages = create_depth;
  o.message_size = create_size;
  return o;
}

// The floor under the engine's create: the system calls it makes for a queue of
// create_depth x create_size (docs/engine.md, "Creation, opening, unlinking"), made
// from plain code, without pipc: what is left of the engine's time is pipc's own.
constexpr std::size_t floor_region_bytes = 85056;  // the engine's region of such a queue
std::string floor_path(const std::string& queue) { return "/dev/shm" + queue; }

void floor_make(const std::string& queue) {
  struct ::stat st {};
  if (::lstat(floor_path(queue).c_str(), &st) == 0) die("%s exists", floor_path(queue).c_str());
  int fd = ::open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) sys_fail("open(O_TMPFILE)");
  if (::fstat(fd, &st) != 0) sys_fail("fstat");
  if (int e = ::posix_fallocate(fd, 0, floor_region_bytes); e != 0) {
    errno = e;
    sys_fail("posix_fallocate");
  }
  static const std::vector<char> first(2128, 1);  // the header and a free ring of 10
  if (::pwrite(fd, first.data(), first.size(), 0) != static_cast<ssize_t>(first.size())) sys_fail("pwrite");
  void* base = ::mmap(nullptr, floor_region_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) sys_fail("mmap");
  if (::linkat(fd, "", AT_FDCWD, floor_path(queue).c_str(), AT_EMPTY_PATH) != 0) sys_fail("linkat(AT_EMPTY_PATH)");
  ::munmap(base, floor_region_bytes);
  ::close(fd);
}

std::vector<creator> all_creators() {
  return {
      {"pipc-shm", "pipc engine, C++ API: message_queue::open(create_only), close(), message_queue::unlink", 's',
       engine_object,
       [](const std::string& q) { pipc::message_queue::open(q, pipc::open_mode::create_only, create_options()); },
       [](const std::string& q) {
         std::error_code ec;
         (void)pipc::message_queue::open(q, pipc::open_mode::create_only, create_options(), ec);
         return ec == std::errc::file_exists;
       },
       [](const std::string& q) { pipc::message_queue::unlink(q); }},
      {"pipc-shm-c", "pipc engine, C API: pipc_mq_open(O_CREAT | O_EXCL), pipc_mq_close, pipc_mq_unlink", 's',
       engine_object,
       [](const std::string& q) {
         struct pipc_mq_attr attr {};
         attr.mq_maxmsg = create_depth;
         attr.mq_msgsize = create_size;
         pipc_mqd_t d = ::pipc_mq_open(q.c_str(), O_CREAT | O_EXCL | O_RDWR, static_cast<mode_t>(0600), &attr);
         if (d == static_cast<pipc_mqd_t>(-1)) sys_fail("pipc_mq_open (create)");
         ::pipc_mq_close(d);
       },
       [](const std::string& q) {
         struct pipc_mq_attr attr {};
         attr.mq_maxmsg = create_depth;
         attr.mq_msgsize = create_size;
         pipc_mqd_t d = ::pipc_mq_open(q.c_str(), O_CREAT | O_EXCL | O_RDWR, static_cast<mode_t>(0600), &attr);
         return d == static_cast<pipc_mqd_t>(-1) && errno == EEXIST;
       },
       [](const std::string& q) {
         if (::pipc_mq_unlink(q.c_str()) != 0) sys_fail("pipc_mq_unlink");
       }},
      {"kernel-mq", "raw kernel queue: mq_open(O_CREAT | O_EXCL), mq_close, mq_unlink", 'q', same_name,
       [](const std::string& q) {
         struct mq_attr attr {};
         attr.mq_maxmsg = create_depth;
         attr.mq_msgsize = create_size;
         mqd_t d = ::mq_open(q.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600, &attr);
         if (d == static_cast<mqd_t>(-1)) sys_fail("mq_open (create)");
         ::mq_close(d);
       },
       [](const std::string& q) {
         struct mq_attr attr {};
         attr.mq_maxmsg = create_depth;
         attr.mq_msgsize = create_size;
         mqd_t d = ::mq_open(q.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600, &attr);
         return d == static_cast<mqd_t>(-1) && errno == EEXIST;
       },
       [](const std::string& q) {
         if (::mq_unlink(q.c_str()) != 0) sys_fail("mq_unlink");
       }},
      {"shm-syscalls", "the engine's system calls alone, from plain code: lstat, open(O_TMPFILE), fstat, fallocate, "
                       "pwrite, mmap, linkat, munmap, close; unlink. exists: the lstat",
       's', same_name, floor_make,
       [](const std::string& q) {
         struct ::stat st {};
         return ::lstat(floor_path(q).c_str(), &st) == 0;
       },
       [](const std::string& q) {
         if (::unlink(floor_path(q).c_str()) != 0) sys_fail("unlink");
       }},
  };
}

struct create_result {
  double create_ns = 0;  // create + close + unlink
  double exists_ns = 0;  // a failing O_CREAT | O_EXCL
};

// One repetition for every creator: the mean cost of each operation, the creators
// alternating in rounds of `batch` operations.
std::vector<create_result> create_once(const std::vector<creator>& cs, long rounds, long batch) {
  std::vector<create_result> out(cs.size());
  std::vector<std::string> names;
  for (const auto& c : cs) {
    names.push_back(unique_name("/"));
    remember_name(c.kind, c.object(names.back()));
  }
  for (long round = 0; round < rounds; ++round) {
    for (std::size_t i = 0; i < cs.size(); ++i) {
      const std::int64_t t0 = now_ns();
      for (long k = 0; k < batch; ++k) {
        cs[i].make(names[i]);
        cs[i].remove(names[i]);
      }
      out[i].create_ns += static_cast<double>(now_ns() - t0);
    }
  }
  for (std::size_t i = 0; i < cs.size(); ++i) cs[i].make(names[i]);
  for (long round = 0; round < rounds; ++round) {
    for (std::size_t i = 0; i < cs.size(); ++i) {
      const std::int64_t t0 = now_ns();
      for (long k = 0; k < batch; ++k) {
        if (!cs[i].exists(names[i])) {
          die("%s: O_CREAT | O_EXCL of an existing queue did not fail with EEXIST", cs[i].name.c_str());
        }
      }
      out[i].exists_ns += static_cast<double>(now_ns() - t0);
    }
  }
  for (std::size_t i = 0; i < cs.size(); ++i) {
    cs[i].remove(names[i]);
    forget_name(cs[i].object(names[i]));
    out[i].create_ns /= static_cast<double>(rounds * batch);
    out[i].exists_ns /= static_cast<double>(rounds * batch);
  }
  return out;
}

// The size of the engine's file for a queue of the create measurement's attributes.
long engine_region_bytes() {
  const std::string q = unique_name("/");
  remember_name('s', engine_object(q));
  pipc::message_queue::open(q, pipc::open_mode::create_only, create_options());
  struct ::stat st {};
  const long size = ::stat(("/dev/shm" + engine_object(q)).c_str(), &st) == 0 ? static_cast<long>(st.st_size) : -1;
  pipc::message_queue::unlink(q);
  forget_name(engine_object(q));
  return size;
}
long g_region_bytes = -1;

// ---------------------------------------------------------------------------------
// Results: every repetition's value, summarised as median, min and max.

struct summary {
  double median = 0, min = 0, max = 0;
  int reps = 0;
};

summary summarise(std::vector<double> v) {
  summary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  s.min = v.front();
  s.max = v.back();
  s.reps = static_cast<int>(n);
  return s;
}

// (measurement, transport, size, metric) -> values
using key = std::tuple<std::string, std::string, std::size_t, std::string>;
std::map<key, std::vector<double>> g_values;
// Samples behind one repetition (round trips, or verified messages in the timed
// part), the smallest over the repetitions.
std::map<std::tuple<std::string, std::string, std::size_t>, std::uint64_t> g_samples;

void note_samples(const std::string& m, const std::string& t, std::size_t size, std::uint64_t n) {
  auto [it, fresh] = g_samples.try_emplace({m, t, size}, n);
  if (!fresh) it->second = std::min(it->second, n);
}

void record(const std::string& m, const std::string& t, std::size_t size, const std::string& metric, double v) {
  g_values[{m, t, size, metric}].push_back(v);
}
// A contention repetition's time split for one role: <role>_cpu_fairness, and the
// lower and the higher process's shares (<role>_lower_ran, ..._queued, ..._blocked).
void record_times(const std::string& t, std::size_t size, const std::string& role, const role_times& r) {
  record("contention", t, size, role + "_cpu_fairness", r.cpu_fairness);
  for (const auto& [which, split] : {std::pair{"lower", r.lower}, std::pair{"higher", r.higher}}) {
    const std::string stem = role + "_" + which + "_";
    record("contention", t, size, stem + "ran", split.ran);
    record("contention", t, size, stem + "queued", split.queued);
    record("contention", t, size, stem + "blocked", split.blocked);
  }
}
std::optional<summary> result(const std::string& m, const std::string& t, std::size_t size, const std::string& metric) {
  auto it = g_values.find({m, t, size, metric});
  if (it == g_values.end()) return std::nullopt;
  return summarise(it->second);
}

// ---------------------------------------------------------------------------------
// Formatting.

std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string strf(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

std::string size_label(std::size_t size) {
  if (size >= 1024 && size % 1024 == 0) return std::to_string(size / 1024) + " KiB";
  return std::to_string(size) + " B";
}

std::string us(double ns) {
  const double v = ns / 1000;
  if (v < 10) return strf("%.2f", v);
  if (v < 100) return strf("%.1f", v);
  return strf("%.0f", v);
}

std::string rate(double per_s) {
  if (per_s >= 1e6) return strf("%.2f M", per_s / 1e6);
  if (per_s >= 1e3) return strf("%.0f k", per_s / 1e3);
  return strf("%.0f", per_s);
}

std::string mbs(double v) { return v >= 100 ? strf("%.0f", v) : strf("%.1f", v); }

std::string with_range(const summary& s, std::string (*f)(double)) {
  return f(s.median) + " [" + f(s.min) + "–" + f(s.max) + "]";
}

std::string ratio(std::optional<double> r) {
  if (!r || !std::isfinite(*r)) return "–";
  if (*r >= 10) return strf("%.0f×", *r);
  return strf("%.2f×", *r);
}

// The median share of samples that found both processes on one CPU.
std::string percent(const std::optional<summary>& s) { return s ? strf("%.0f%%", s->median * 100) : "–"; }

std::string depth_label(const transport& t) { return t.depth > 0 ? std::to_string(t.depth) : "–"; }

// The Boost configuration a transport is compared with: the same depth, if Boost has it.
std::string boost_peer(const transport& t) { return t.depth > 0 ? "boost/" + std::to_string(t.depth) : ""; }

// ---------------------------------------------------------------------------------
// The run.

bool selected(const transport& t, const settings& s) {
  if (s.only.empty()) return true;
  for (const auto& o : s.only)
    if (t.name.find(o) != std::string::npos) return true;
  return false;
}

bool wants(const settings& s, const char* m) {
  return std::find(s.measurements.begin(), s.measurements.end(), m) != s.measurements.end();
}

// Why transport t cannot carry messages of `size` here ("" if it can).
std::string size_skip(const transport& t, std::size_t size) { return t.size_limit ? t.size_limit(size) : ""; }

// Whether transport t is ping-ponged / streamed at all (whatever the size).
bool pings(const transport& t, const settings& s) { return t.latency || s.latency_all_depths; }

// pipc's own transports run the contention measurement twice per repetition: as every
// transport does (the scheduler places the four processes), and pinned, one producer
// and one consumer on each CPU (`<name> pinned` in the tables and the CSV). Unpinned,
// the scheduler sometimes keeps three of the four on one CPU for a whole repetition,
// and no transport's fairness survives that; pinned, what is left is the transport's.
// (With --pin every row is pinned, and there is no second one.)
bool contends_pinned_too(const transport& t, const settings& s) { return !s.pin && t.name.rfind("pipc-", 0) == 0; }
std::string pinned_name(const transport& t) { return t.name + " pinned"; }
// The names transport t's contention results are recorded under.
std::vector<std::string> contention_rows(const transport& t, const settings& s) {
  if (contends_pinned_too(t, s)) return {t.name, pinned_name(t)};
  return {t.name};
}

// One contention repetition of transport t at `size`, recorded as `name`.
void run_contention(const transport& t, const std::string& name, std::size_t size, const settings& s, int rep) {
  watchdog(s.contention_ms / 1e3);
  contention_result r = contention(t, size, s);
  ::alarm(0);
  record("contention", name, size, "msgs_per_s", r.msgs_per_s);
  record("contention", name, size, "mb_per_s", r.msgs_per_s * static_cast<double>(size) / 1e6);
  record("contention", name, size, "producer_fairness", r.producer_fairness);
  record("contention", name, size, "consumer_fairness", r.consumer_fairness);
  record("contention", name, size, "jain_producers", r.jain);
  record_times(name, size, "producer", r.producers);
  record_times(name, size, "consumer", r.consumers);
  note_samples("contention", name, size, r.messages);
  std::fprintf(stderr,
               "contention %-6s rep %d/%d %-27s %10.3f M msg/s  fairness producers %.2f consumers %.2f"
               "  CPU time producers %.2f consumers %.2f\n",
               size_label(size).c_str(), rep + 1, s.reps, name.c_str(), r.msgs_per_s / 1e6, r.producer_fairness,
               r.consumer_fairness, r.producers.cpu_fairness, r.consumers.cpu_fairness);
}

// Why transport t is not in the contention measurement at `size` ("" if it is).
// Pipes are byte streams: with two writers, writes over PIPE_BUF may interleave.
std::string contention_skip(const transport& t, std::size_t size) {
  if (!t.no_contention.empty()) return "skipped: " + t.no_contention;
  if (t.byte_stream && size > PIPE_BUF) return "skipped: > PIPE_BUF, writes may interleave";
  return size_skip(t, size);
}

// The reference rows that the queues are read against.
const char* const limit_latency = "limit-spin-ring/1";
const char* const limit_stream = "limit-spin-ring/1024";

std::string machine_line() {
  std::string model = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) model = line.substr(colon + 2);
      break;
    }
  }
  struct utsname u {};
  ::uname(&u);
  return strf("%ld CPUs online (%s), Linux %s %s", ::sysconf(_SC_NPROCESSORS_ONLN), model.c_str(), u.release,
              u.machine);
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}
std::string g_load_at_start;
std::map<std::string, std::vector<std::string>> g_probes;  // measurement -> probe before each repetition

std::string probe_cache_line(const settings& s);

// Probes the machine before repetition `rep` of measurement `m`.
void note_probe(const std::string& m, const settings& s, int rep) {
  std::string v = probe_cache_line(s);
  g_probes[m].push_back(v);
  std::fprintf(stderr, "%-10s rep %d/%d: cache-line round trip %s ns\n", m.c_str(), rep + 1, s.reps, v.c_str());
}

// Stalls: how often a process that never blocks loses its CPU all the same, and for how
// long. A VM's host takes the virtual CPUs away now and then (on this machine ~3 µs
// about every 50 µs, with no interrupt that the guest sees), and a round trip that a
// stall lands in is that much longer, whatever the transport: once a round trip lasts
// more than 1 % of the time between stalls, the p99 is a stalled round trip. Two
// processes, one per CPU as in a ping-pong, read the clock in a tight loop for
// stall_probe_ns, and every gap of stall_min_ns or more between two reads is a stall.
struct stall_probe {
  double interval_ns = 0;  // the mean time between two stalls of one process; 0: none seen
  double median_ns = 0;    // the median stall
  std::uint64_t seen = 0;  // stalls seen by the two processes
};
constexpr std::int64_t stall_probe_ns = 30'000'000;
constexpr std::int64_t stall_min_ns = 1'000;
constexpr std::size_t stall_kept = 8192;  // stalls kept per process for the median

struct stall_tally {
  std::int64_t spun_ns;
  std::uint64_t seen;
  std::int64_t kept[stall_kept];
};

void count_stalls(stall_tally& t) {
  const std::int64_t start = now_ns();
  std::int64_t before = start, now = start;
  t.seen = 0;
  while ((now = now_ns()) - start < stall_probe_ns) {
    if (now - before >= stall_min_ns) {
      if (t.seen < stall_kept) t.kept[t.seen] = now - before;
      ++t.seen;
    }
    before = now;
  }
  t.spun_ns = now - start;
}

stall_probe probe_stalls(const settings& s) {
  watchdog(2);
  const std::size_t bytes = 2 * sizeof(stall_tally);
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) sys_fail("mmap (stall probe)");
  auto* tally = static_cast<stall_tally*>(mem);
  pid_t child = spawn(s, 1, [&] { count_stalls(tally[1]); });
  count_stalls(tally[0]);
  wait_for(child, "stall probe");
  ::alarm(0);
  std::vector<double> stalls;
  std::int64_t spun = 0;
  std::uint64_t seen = 0;
  for (const stall_tally* t : {&tally[0], &tally[1]}) {
    spun += t->spun_ns;
    seen += t->seen;
    for (std::uint64_t i = 0; i < std::min<std::uint64_t>(t->seen, stall_kept); ++i)
      stalls.push_back(static_cast<double>(t->kept[i]));
  }
  ::munmap(mem, bytes);
  if (seen == 0) return {};
  return {static_cast<double>(spun) / static_cast<double>(seen), summarise(stalls).median, seen};
}

std::map<std::string, std::vector<stall_probe>> g_stalls;  // measurement -> probe before each repetition

void note_stalls(const std::string& m, const settings& s, int rep) {
  const stall_probe p = probe_stalls(s);
  g_stalls[m].push_back(p);
  if (p.interval_ns == 0) {
    std::fprintf(stderr, "%-10s rep %d/%d: no stall\n", m.c_str(), rep + 1, s.reps);
  } else {
    std::fprintf(stderr, "%-10s rep %d/%d: one stall per %.1f µs, median %.2f µs\n", m.c_str(), rep + 1, s.reps,
                 p.interval_ns / 1e3, p.median_ns / 1e3);
  }
}

// The probes of the repetitions that saw a stall, as series (in the order they ran).
struct stall_series {
  std::vector<double> interval, length;  // interval_ns and median_ns of each
  std::uint64_t seen = 0;                // stalls seen in all of them
};

stall_series stall_series_of(const std::vector<stall_probe>& probes) {
  stall_series out;
  for (const stall_probe& p : probes) {
    if (p.interval_ns == 0) continue;
    out.interval.push_back(p.interval_ns);
    out.length.push_back(p.median_ns);
    out.seen += p.seen;
  }
  return out;
}

// The median over the repetitions of measurement m of the mean time between stalls (0:
// no repetition saw one), and of the median stall.
stall_probe median_stalls(const std::string& m) {
  auto it = g_stalls.find(m);
  if (it == g_stalls.end()) return {};
  const stall_series series = stall_series_of(it->second);
  if (series.interval.empty()) return {};
  return {summarise(series.interval).median, summarise(series.length).median, series.seen};
}

// The mean round trip of one cache line between two processes that spin on it: the
// floor under any shared-memory ping-pong on this machine, and a probe of its state
// (in a VM, where the host places the virtual CPUs changes it several-fold). Returns
// "n/a" if the processes do not get two CPUs within a second.
std::string probe_cache_line(const settings& s) {
  watchdog(2);
  constexpr std::uint64_t rounds = 200'000;
  void* mem = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) sys_fail("mmap (probe)");
  auto* word = new (mem) std::atomic<std::uint64_t>(0);
  auto* quit = new (static_cast<char*>(mem) + 2048) std::atomic<int>(0);
  pid_t child = spawn(s, 1, [&] {
    for (std::uint64_t i = 1; i <= rounds; ++i) {
      while (word->load(std::memory_order_acquire) != 2 * i - 1) {
        if (quit->load(std::memory_order_relaxed)) return;
        PIPC_BENCH_PAUSE();
      }
      word->store(2 * i, std::memory_order_release);
    }
  });
  const std::int64_t t0 = now_ns();
  bool done = true;
  for (std::uint64_t i = 1; i <= rounds && done; ++i) {
    word->store(2 * i - 1, std::memory_order_release);
    while (word->load(std::memory_order_acquire) != 2 * i) {
      PIPC_BENCH_PAUSE();
      if ((i & 1023) == 0 && now_ns() - t0 > 1'000'000'000) {
        done = false;
        break;
      }
    }
  }
  const std::int64_t t1 = now_ns();
  quit->store(1);
  wait_for(child, "probe");
  ::munmap(mem, 4096);
  ::alarm(0);
  if (!done) return "n/a";
  return strf("%.0f", static_cast<double>(t1 - t0) / static_cast<double>(rounds));
}
std::vector<std::pair<std::string, double>> g_phase_seconds;  // measurement -> seconds

// Times one phase of the run for the report.
class phase_timer {
 public:
  explicit phase_timer(std::string name) : name_(std::move(name)), start_(now_ns()) {}
  ~phase_timer() { g_phase_seconds.emplace_back(name_, static_cast<double>(now_ns() - start_) / 1e9); }
  phase_timer(const phase_timer&) = delete;
  phase_timer& operator=(const phase_timer&) = delete;

 private:
  std::string name_;
  std::int64_t start_;
};

// Prints each of `items` as `format` gives it, after a space, separated by commas.
template <class T, class Format>
void print_each(std::FILE* out, const std::vector<T>& items, Format format) {
  const char* sep = " ";
  for (const T& v : items) {
    std::fprintf(out, "%s%s", sep, format(v).c_str());
    sep = ", ";
  }
}

void print_probes(std::FILE* out, const std::string& m) {
  auto it = g_probes.find(m);
  if (it == g_probes.end()) return;
  std::fprintf(out, "Cache line before each repetition, ns:");
  print_each(out, it->second, [](const std::string& v) { return v; });
  std::fprintf(out, ".\n\n");
  auto stalls = g_stalls.find(m);
  if (stalls == g_stalls.end()) return;
  std::fprintf(out,
               "Stalls before each repetition (two processes, one per CPU, read the clock in a tight loop for "
               "%lld ms; a gap of %lld µs or more between two reads is a stall): one per",
               static_cast<long long>(stall_probe_ns / 1'000'000), static_cast<long long>(stall_min_ns / 1'000));
  print_each(out, stalls->second, [](const stall_probe& p) {
    return p.interval_ns == 0 ? std::string("(none)") : strf("%.0f µs", p.interval_ns / 1e3);
  });
  std::fprintf(out, "; median stall");
  print_each(out, stalls->second, [](const stall_probe& p) {
    return p.interval_ns == 0 ? std::string("–") : strf("%.1f µs", p.median_ns / 1e3);
  });
  std::fprintf(out, ".\n\n");
}

// A note under a table when the limit row's two processes mostly shared one CPU: a
// ring that spins is no limit then (each hand-over waits for a sched_yield), so the
// ratios against it do not say how far a transport is from the machine's limit.
void note_shared_limit(std::FILE* out, const std::string& m, const char* limit, const std::vector<std::size_t>& sizes) {
  std::string where;
  for (std::size_t size : sizes) {
    auto same = result(m, limit, size, "same_cpu_share");
    if (same && same->median >= 0.5) where += (where.empty() ? "" : ", ") + size_label(size);
  }
  if (where.empty()) return;
  std::fprintf(out,
               "Note: at %s, `%s` ran with both processes on one CPU in most samples (same CPU): a spinning ring "
               "is no limit then, each hand-over waiting for a sched_yield, so the ratios to it there do not "
               "measure the distance to the machine's limit (a busy machine, or the scheduler, did that).\n\n",
               where.c_str(), limit);
}

// Under the contention table: for every repetition whose fairness fell below 0.5,
// where the lower process's time went (and the higher one's), from the scheduler's
// accounting. A lower process that was mostly runnable but waiting for a CPU lost to
// the scheduler; one that was mostly blocked was kept waiting by the transport.
void note_unfair_repetitions(std::FILE* out, const std::vector<transport>& ts, const settings& s) {
  auto values = [](const std::string& t, std::size_t size, const std::string& metric) {
    auto it = g_values.find({"contention", t, size, metric});
    return it == g_values.end() ? std::vector<double>{} : it->second;
  };
  auto pct = [](double v) { return static_cast<int>(std::lround(v * 100)); };
  bool any = false;
  auto note = [&](const std::string& name, std::size_t size) {
    for (const char* role : {"producer", "consumer"}) {
      const std::string r = role;
      const std::vector<double> fair = values(name, size, r + "_fairness");
      const std::vector<double> cpu = values(name, size, r + "_cpu_fairness");
      auto split = [&](const char* which, std::size_t rep) {
        const std::string stem = r + "_" + which + "_";
        const std::vector<double> ran = values(name, size, stem + "ran");
        const std::vector<double> queued = values(name, size, stem + "queued");
        const std::vector<double> blocked = values(name, size, stem + "blocked");
        if (rep >= ran.size() || rep >= queued.size() || rep >= blocked.size()) return std::string("?");
        return strf("%d/%d/%d", pct(ran[rep]), pct(queued[rep]), pct(blocked[rep]));
      };
      for (std::size_t rep = 0; rep < fair.size() && rep < cpu.size(); ++rep) {
        if (fair[rep] >= 0.5) continue;
        if (!any) {
          std::fprintf(out,
                       "Repetitions below 0.5, and where the two processes' time went in the timed part (from "
                       "/proc/self/schedstat, %% of the process's timed stretch: on a CPU / runnable, waiting "
                       "for a CPU / blocked in the transport). CPU time is min/max of the two processes' CPU "
                       "time.\n\n");
          any = true;
        }
        std::fprintf(out, "- `%s` %s, repetition %zu: %ss %.2f, CPU time %.2f; the lower %s %s, the higher %s.\n",
                     name.c_str(), size_label(size).c_str(), rep + 1, role, fair[rep], cpu[rep], role,
                     split("lower", rep).c_str(), split("higher", rep).c_str());
      }
    }
  };
  for (std::size_t size : s.sizes) {
    for (const auto& t : ts) {
      for (const std::string& name : contention_rows(t, s)) note(name, size);
    }
  }
  if (any) std::fprintf(out, "\n");
}

// ---------------------------------------------------------------------------------
// Large messages (measurement "large"): 64 KiB and 1 MiB between two processes, through
// the engine's copying calls and through its loans (send_loan / received_message: zero
// copy), against Boost.Interprocess and a pipe. The producer writes every byte of every
// message and the consumer reads every byte (checks every word) on every path: the
// honest comparison. The "header" row's consumer reads only the first 64 bytes (the
// tag and seven pattern words), as a consumer that forwards or filters by a header
// would. Kernel queues take part only where msgsize_max allows the size.

constexpr std::size_t large_sizes[] = {64 * 1024, 1024 * 1024};
// Queue depths: a few large messages in flight (their slots stay in the caches), and
// more than the last-level cache holds at 1 MiB (every slot comes from memory).
constexpr long large_depths[] = {4, 16};
constexpr std::size_t large_header_bytes = 64;

std::string large_size_label(std::size_t size) {
  return size % (1024 * 1024) == 0 ? std::to_string(size >> 20) + " MiB" : size_label(size);
}

// The loops that write and check a large message, compiled for the widest vectors the
// CPU has (chosen once, at load time): the same code for every row, copying or in place.
// Why it matters to the comparison: a loop of 16-byte (SSE2, the build's baseline) loads
// or stores over a slot whose lines sit in the other CPU's cache keeps too few lines in
// flight (the instruction window fills up with its own work long before enough misses
// are outstanding): it read such a slot at about 9 GB/s here, where glibc's memcpy (rep
// movsb, not limited so) took 13; with 32- or 64-byte vectors the loop reads it as fast
// as memcpy or faster. The baseline build charged both paths the slow loop, and the
// in-place path the most (it is the only one that runs the loops on the other CPU's lines).
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define PIPC_BENCH_WIDE_VECTORS __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef PIPC_BENCH_WIDE_VECTORS
#define PIPC_BENCH_WIDE_VECTORS
#endif

// Whether `p` starts a cache line. The loops below go word by word up to the first line
// boundary, then a vector at a time: a vector store that straddles two lines costs two,
// and where a message starts within a line differs between transports (a slot's payload
// is 32 bytes into a line, a malloc'd buffer 16 bytes).
bool line_aligned(const void* p) noexcept { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; }

// fill() and intact() of `message`, on memory the transport lends (8-byte aligned).
PIPC_BENCH_WIDE_VECTORS void large_fill(std::byte* p, std::size_t size, std::uint64_t tag) noexcept {
  auto* w = reinterpret_cast<std::uint64_t*>(p);
  const std::size_t n = size / 8;
  w[0] = tag;
  std::uint64_t v = mix(tag);
  std::size_t i = 1;
  for (; i < n && !line_aligned(w + i); ++i) {
    v += golden;
    w[i] = v;
  }
  for (; i < n; ++i) {
    v += golden;
    w[i] = v;
  }
}
// Checks the first `check` bytes (all of them, or the header); returns the tag, with
// `ok` false if anything differs from what large_fill wrote.
PIPC_BENCH_WIDE_VECTORS std::uint64_t large_check(const std::byte* p, std::size_t check, bool& ok) noexcept {
  const auto* w = reinterpret_cast<const std::uint64_t*>(p);
  const std::uint64_t tag = w[0];
  const std::size_t n = check / 8;
  std::uint64_t diff = 0;
  std::uint64_t v = mix(tag);
  std::size_t i = 1;
  for (; i < n && !line_aligned(w + i); ++i) {
    v += golden;
    diff |= w[i] ^ v;
  }
  for (; i < n; ++i) {
    v += golden;
    diff |= w[i] ^ v;
  }
  ok = diff == 0;
  return tag;
}

// One process's end of a large-message channel.
class large_end {
 public:
  virtual ~large_end() = default;
  // Writes a whole message for `tag` and sends it.
  virtual void send(std::uint64_t tag) = 0;
  // Receives a message, checks it (every byte, or with header_only the first 64) and
  // returns its tag.
  virtual std::uint64_t receive(bool header_only) = 0;
};

// Through a transport's copying send/receive: written into a buffer of the producer,
// copied in and out by the transport, read in a buffer of the consumer.
class large_copy_end final : public large_end {
 public:
  large_copy_end(std::unique_ptr<endpoint> e, std::size_t size) : e_(std::move(e)), size_(size), buffer_(size) {}
  void send(std::uint64_t tag) override {
    large_fill(buffer_.bytes(), size_, tag);
    e_->send(buffer_.bytes(), size_);
  }
  std::uint64_t receive(bool header_only) override {
    const std::size_t n = e_->receive(buffer_.bytes(), size_);
    bool ok = n == size_;
    const std::uint64_t tag = large_check(buffer_.bytes(), header_only ? large_header_bytes : size_, ok);
    if (!ok || n != size_) die("large: a %zu-byte message (tag %#" PRIx64 ") arrived damaged (%zu bytes)", size_, tag, n);
    return tag;
  }

 private:
  std::unique_ptr<endpoint> e_;
  std::size_t size_;
  message buffer_;
};

// Through the engine's loans: written in the queue's slot, read there.
class large_loan_end final : public large_end {
 public:
  large_loan_end(pipc::message_queue q, std::size_t size) : q_(std::move(q)), size_(size) {}
  void send(std::uint64_t tag) override {
    pipc::send_loan l = q_.loan(size_);
    large_fill(l.data().data(), size_, tag);
    l.commit(0);
  }
  std::uint64_t receive(bool header_only) override {
    pipc::received_message m = q_.receive_view();
    bool ok = true;
    const std::uint64_t tag = large_check(m.data().data(), header_only ? large_header_bytes : size_, ok);
    if (!ok || m.size() != size_) {
      die("large: a %zu-byte loan (tag %#" PRIx64 ") arrived damaged (%zu bytes)", size_, tag, m.size());
    }
    return tag;
  }

 private:
  pipc::message_queue q_;
  std::size_t size_;
};

// Through the limit ring, in place: written in its slot and read there. The machine's
// limit for the loans, as the ring's copying row is for the copying paths: a ring of
// `depth` slots with nothing else on the way.
class large_ring_end final : public large_end {
 public:
  large_ring_end(std::unique_ptr<ring_sender> out, std::unique_ptr<ring_receiver> in, std::size_t size)
      : out_(std::move(out)), in_(std::move(in)), size_(size) {}
  void send(std::uint64_t tag) override {
    large_fill(out_->slot_to_fill(), size_, tag);
    out_->publish();
  }
  std::uint64_t receive(bool header_only) override {
    bool ok = true;
    const std::uint64_t tag = large_check(in_->next_message(), header_only ? large_header_bytes : size_, ok);
    in_->release();
    if (!ok) die("large: a %zu-byte ring message (tag %#" PRIx64 ") arrived damaged", size_, tag);
    return tag;
  }

 private:
  std::unique_ptr<ring_sender> out_;
  std::unique_ptr<ring_receiver> in_;
  std::size_t size_;
};

class large_channel {
 public:
  virtual ~large_channel() = default;
  virtual std::unique_ptr<large_end> open_sender() = 0;
  virtual std::unique_ptr<large_end> open_receiver() = 0;
};

class large_copy_channel final : public large_channel {
 public:
  large_copy_channel(std::unique_ptr<channel> c, std::size_t size) : c_(std::move(c)), size_(size) {}
  std::unique_ptr<large_end> open_sender() override {
    return std::make_unique<large_copy_end>(c_->open_sender(), size_);
  }
  std::unique_ptr<large_end> open_receiver() override {
    return std::make_unique<large_copy_end>(c_->open_receiver(), size_);
  }

 private:
  std::unique_ptr<channel> c_;
  std::size_t size_;
};

class large_ring_channel final : public large_channel {
 public:
  large_ring_channel(std::uint64_t depth, std::size_t size) : ring_(depth, size), size_(size) {}
  std::unique_ptr<large_end> open_sender() override {
    return std::make_unique<large_ring_end>(ring_.ring_sender_end(), nullptr, size_);
  }
  std::unique_ptr<large_end> open_receiver() override {
    return std::make_unique<large_ring_end>(nullptr, ring_.ring_receiver_end(), size_);
  }

 private:
  ring_channel ring_;
  std::size_t size_;
};

class large_loan_channel final : public large_channel {
 public:
  large_loan_channel(long depth, std::size_t size) : name_(unique_name("/")), size_(size) {
    options_.max_messages = depth;
    options_.message_size = static_cast<long>(size);
    options_.spin = g_engine_spin;
    keeper_ = pipc::message_queue::open(name_, pipc::open_mode::create_only, options_);
    remember_name('s', "/pipc.mq." + name_.substr(1));
  }
  ~large_loan_channel() override {
    keeper_.close();
    std::error_code ec;
    pipc::message_queue::unlink(name_, pipc::backend::shm, ec);
    forget_name("/pipc.mq." + name_.substr(1));
  }
  std::unique_ptr<large_end> open_sender() override { return open_end(pipc::access::write_only); }
  std::unique_ptr<large_end> open_receiver() override { return open_end(pipc::access::read_only); }

 private:
  std::unique_ptr<large_end> open_end(pipc::access a) {
    pipc::mq_options o = options_;
    o.access = a;
    return std::make_unique<large_loan_end>(pipc::message_queue::open(name_, pipc::open_mode::open_only, o), size_);
  }
  std::string name_;
  std::size_t size_;
  pipc::mq_options options_;
  pipc::message_queue keeper_;
};

struct large_transport {
  std::string name;
  std::string description;
  bool header_only;  // the consumer reads only the first 64 bytes
  std::string baseline;  // the row it is compared with ("×" column); empty: none
  std::function<std::unique_ptr<large_channel>(std::size_t size)> make;
};

// The kernel's cap on a queue's message size here (/proc/sys/fs/mqueue/msgsize_max).
long kernel_msgsize_max() {
  std::ifstream in("/proc/sys/fs/mqueue/msgsize_max");
  long v = 0;
  in >> v;
  return in ? v : 0;
}

std::vector<large_transport> large_transports() {
  std::vector<large_transport> t;
  // The machine's limits, at the smaller depth: what the copying path and the loans
  // cost with nothing but a bare ring on the way.
  const long ring_depth = large_depths[0];
  const std::string ring_copy = "limit-spin-ring/" + std::to_string(ring_depth) + " copy";
  t.push_back({ring_copy,
               "reference, not a product: the bare spin ring, copying in and out of process buffers "
               "(the limit for the copying paths)",
               false, "", [ring_depth](std::size_t size) {
                 return std::make_unique<large_copy_channel>(std::make_unique<ring_channel>(ring_depth, size), size);
               }});
  t.push_back({"limit-spin-ring/" + std::to_string(ring_depth) + " in place",
               "reference, not a product: the bare spin ring, written and read in its slot (the limit for the "
               "loans)",
               false, ring_copy,
               [ring_depth](std::size_t size) { return std::make_unique<large_ring_channel>(ring_depth, size); }});
  for (long d : large_depths) {
    const std::string depth = "/" + std::to_string(d);
    const std::string copy = "pipc-shm" + depth + " copy";
    t.push_back({copy, "engine, message_queue::send / receive into process buffers", false, "",
                 [d](std::size_t size) {
                   return std::make_unique<large_copy_channel>(
                       std::make_unique<pipc_channel>(pipc::backend::shm, d, size), size);
                 }});
    t.push_back({"pipc-shm" + depth + " in place",
                 "engine, message_queue::loan + commit / receive_view: written and read in the slot (zero copy)",
                 false, copy, [d](std::size_t size) { return std::make_unique<large_loan_channel>(d, size); }});
    t.push_back({"pipc-shm" + depth + " in place, header",
                 "as in place, but the consumer reads only the first 64 bytes", true, copy,
                 [d](std::size_t size) { return std::make_unique<large_loan_channel>(d, size); }});
#if defined(PIPC_BENCH_HAVE_BOOST)
    t.push_back({"boost" + depth, "boost::interprocess::message_queue, copying send / receive", false, copy,
                 [d](std::size_t size) {
                   return std::make_unique<large_copy_channel>(std::make_unique<boost_channel>(d, size), size);
                 }});
#endif
  }
  const std::string copy = "pipc-shm/" + std::to_string(large_depths[0]) + " copy";
  t.push_back({"kernel-mq/4",
                "raw kernel queue (mq_*), maxmsg 4, where msgsize_max and RLIMIT_MSGQUEUE allow the size", false, copy,
               [](std::size_t size) {
                 return std::make_unique<large_copy_channel>(std::make_unique<mq_channel>(4, size), size);
               }});
  t.push_back({"pipe", "pipe2() (64 KiB pipe buffer), write()/read() of the whole message", false, copy,
               [](std::size_t size) {
                 return std::make_unique<large_copy_channel>(std::make_unique<pipe_channel>(size), size);
               }});
  return t;
}

// Why a kernel queue of 4 messages of `size` bytes cannot be made here ("" if it can):
// msgsize_max, or RLIMIT_MSGQUEUE (which only a privileged process raises). Tried once
// per size with a queue of its own.
std::string kernel_large_problem(std::size_t size) {
  static std::map<std::size_t, std::string> known;
  if (auto it = known.find(size); it != known.end()) return it->second;
  std::string problem;
  const long max = kernel_msgsize_max();
  if (static_cast<long>(size) > max) {
    problem = strf("msgsize_max is %ld here", max);
  } else {
    // Two at once, as a ping-pong needs.
    const std::string names[2] = {unique_name("/"), unique_name("/")};
    mqd_t q[2] = {static_cast<mqd_t>(-1), static_cast<mqd_t>(-1)};
    mq_attr attr{};
    attr.mq_maxmsg = 4;
    attr.mq_msgsize = static_cast<long>(size);
    for (int i = 0; i < 2 && problem.empty(); ++i) {
      q[i] = ::mq_open(names[i].c_str(), O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
      if (q[i] == static_cast<mqd_t>(-1)) {
        const int e = errno;
        rlimit limit{};
        ::getrlimit(RLIMIT_MSGQUEUE, &limit);
        problem = strf("two queues of 4 × %s: mq_open: %s (RLIMIT_MSGQUEUE %llu bytes)",
                       large_size_label(size).c_str(), std::strerror(e),
                       static_cast<unsigned long long>(limit.rlim_cur));
      }
    }
    for (int i = 0; i < 2; ++i) {
      if (q[i] == static_cast<mqd_t>(-1)) continue;
      ::mq_close(q[i]);
      ::mq_unlink(names[i].c_str());
    }
  }
  known[size] = problem;
  return problem;
}

bool large_applies(const large_transport& t, std::size_t size) {
  return t.name.rfind("kernel-mq", 0) != 0 || kernel_large_problem(size).empty();
}

struct large_result {
  double msgs_per_s = 0;
  std::uint64_t messages = 0;
  double p50_ns = 0, p99_ns = 0;
};

// Streams for `ms` (after `warm` messages), then ping-pongs `round_trips` times.
large_result large_once(const large_transport& t, std::size_t size, double ms, long warm, long round_trips,
                        const settings& s) {
  large_result r;
  {
    auto ch = t.make(size);
    reset_control();
    pid_t child = spawn(s, 1, [&] {
      auto out = ch->open_sender();
      std::uint64_t seq = 0;
      while (g_control->phase.load(std::memory_order_relaxed) != stopping) out->send(make_tag(0, seq++));
      out->send(end_bit | make_tag(0, seq));
    });
    auto in = ch->open_receiver();
    const auto timed_ns = static_cast<std::int64_t>(ms * 1e6);
    std::uint64_t expected = 0;
    std::int64_t t0 = 0, t1 = 0;
    for (;;) {
      const std::uint64_t tag = in->receive(t.header_only);
      if (tag & end_bit) {
        t1 = now_ns();
        if (tag != (end_bit | make_tag(0, expected))) die("%s: the large stream lost messages", t.name.c_str());
        break;
      }
      if (tag != make_tag(0, expected)) die("%s: large message %" PRIu64 " out of order", t.name.c_str(), expected);
      ++expected;
      if (expected == static_cast<std::uint64_t>(warm)) {
        t0 = now_ns();
      } else if (expected > static_cast<std::uint64_t>(warm) &&
                 g_control->phase.load(std::memory_order_relaxed) != stopping && now_ns() - t0 >= timed_ns) {
        g_control->phase.store(stopping, std::memory_order_relaxed);
      }
    }
    wait_for(child, "large sender");
    r.messages = expected - static_cast<std::uint64_t>(warm);
    r.msgs_per_s = static_cast<double>(r.messages) * 1e9 / static_cast<double>(t1 - t0);
  }
  {
    auto ping = t.make(size);
    auto pong = t.make(size);
    pid_t child = spawn(s, 1, [&] {
      auto in = ping->open_receiver();
      auto out = pong->open_sender();
      for (;;) {
        const std::uint64_t tag = in->receive(t.header_only);
        out->send(tag);  // a whole new message, written by the echo
        if (tag & end_bit) return;
      }
    });
    auto out = ping->open_sender();
    auto in = pong->open_receiver();
    std::vector<std::int64_t> rtt;
    const long total = round_trips + round_trips / 10 + 1;
    for (long i = 0; i < total; ++i) {
      const std::uint64_t tag = make_tag(0, static_cast<std::uint64_t>(i));
      const std::int64_t a = now_ns();
      out->send(tag);
      const std::uint64_t back = in->receive(t.header_only);
      const std::int64_t b = now_ns();
      if (back != tag) die("%s: large ping-pong reply %ld is wrong", t.name.c_str(), i);
      if (i > round_trips / 10) rtt.push_back(b - a);
    }
    out->send(end_bit);
    in->receive(t.header_only);
    wait_for(child, "large echo");
    std::sort(rtt.begin(), rtt.end());
    r.p50_ns = percentile(rtt, 0.50);
    r.p99_ns = percentile(rtt, 0.99);
  }
  return r;
}

bool large_selected(const large_transport& t, const settings& s) {
  if (s.only.empty()) return true;
  for (const auto& o : s.only)
    if (t.name.find(o) != std::string::npos) return true;
  return false;
}

void run_large(const settings& s) {
  const bool quick = s.round_trips < 10'000;
  for (int rep = 0; rep < s.reps; ++rep) {
    note_probe("large", s, rep);
    for (std::size_t size : large_sizes) {
      const long round_trips = size >= (1u << 20) ? (quick ? 50 : 300) : (quick ? 200 : 2000);
      const long warm = quick ? 4 : 16;
      const double ms = quick ? 30 : 200;
      for (const auto& t : large_transports()) {
        if (!large_selected(t, s) || !large_applies(t, size)) continue;
        watchdog(ms / 1e3 + static_cast<double>(round_trips) * 5e-3);
        large_result r = large_once(t, size, ms, warm, round_trips, s);
        ::alarm(0);
        record("large", t.name, size, "msgs_per_s", r.msgs_per_s);
        record("large", t.name, size, "mb_per_s", r.msgs_per_s * static_cast<double>(size) / 1e6);
        record("large", t.name, size, "rtt_p50_ns", r.p50_ns);
        record("large", t.name, size, "rtt_p99_ns", r.p99_ns);
        note_samples("large", t.name, size, r.messages);
        std::fprintf(stderr, "large      %-6s rep %d/%d %-28s %9.0f msg/s %8.0f MB/s  ping-pong p50 %8.1f µs  p99 %8.1f µs\n",
                     large_size_label(size).c_str(), rep + 1, s.reps, t.name.c_str(), r.msgs_per_s,
                     r.msgs_per_s * static_cast<double>(size) / 1e6, r.p50_ns / 1e3, r.p99_ns / 1e3);
      }
    }
  }
}

void print_large_table(std::FILE* out, const settings& s) {
  std::fprintf(out,
               "## Large messages: copy vs in place (queue depths 4 and 16; streaming %s ms timed per "
               "repetition, then ping-pong)\n\n"
               "Every row but \"header\" writes every byte at the producer and reads (checks) every byte at the "
               "consumer; the header row's consumer reads the first 64 bytes only. × copy: the row's figure "
               "as a multiple of the engine's copying path at the same depth (the pipe: at depth 4; the limit "
               "ring's in-place row: of the ring's copying row; > 1 is better; for round trips, copy's time / "
               "this row's). Kernel queues: msgsize_max is %ld here; "
               "they take part at the sizes where two queues of 4 such messages can be made.\n\n",
               s.round_trips < 10'000 ? "30" : "200", kernel_msgsize_max());
  print_probes(out, "large");
  std::fprintf(out, "| transport | size | messages/s | MB/s | × copy | ping-pong p50 µs | p99 µs | p50 × copy |\n");
  std::fprintf(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (std::size_t size : large_sizes) {
    for (const auto& t : large_transports()) {
      if (!large_selected(t, s)) continue;
      if (!large_applies(t, size)) {
        std::fprintf(out, "| %s | %s | not measured: %s | | | | | |\n", t.name.c_str(),
                     large_size_label(size).c_str(), kernel_large_problem(size).c_str());
        continue;
      }
      auto r = result("large", t.name, size, "msgs_per_s");
      if (!r) continue;
      auto mb = result("large", t.name, size, "mb_per_s");
      auto p50 = result("large", t.name, size, "rtt_p50_ns");
      auto p99 = result("large", t.name, size, "rtt_p99_ns");
      std::optional<double> xs, xl;
      if (!t.baseline.empty()) {
        if (auto b = result("large", t.baseline, size, "msgs_per_s")) xs = r->median / b->median;
        if (auto b = result("large", t.baseline, size, "rtt_p50_ns")) xl = b->median / p50->median;
      }
      std::fprintf(out, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", t.name.c_str(), large_size_label(size).c_str(),
                   with_range(*r, rate).c_str(), with_range(*mb, mbs).c_str(), ratio(xs).c_str(),
                   with_range(*p50, us).c_str(), with_range(*p99, us).c_str(), ratio(xl).c_str());
    }
  }
  std::fprintf(out, "\n");
  for (const auto& t : large_transports()) {
    if (large_selected(t, s)) std::fprintf(out, "- `%s`: %s\n", t.name.c_str(), t.description.c_str());
  }
  std::fprintf(out, "\n");
}

void write_large_csv(std::FILE* f) {
  for (std::size_t size : large_sizes) {
    for (const auto& t : large_transports()) {
      for (const char* metric : {"msgs_per_s", "mb_per_s", "rtt_p50_ns", "rtt_p99_ns"}) {
        auto it = g_values.find({"large", t.name, size, metric});
        if (it == g_values.end()) continue;
        const summary sm = summarise(it->second);
        const std::string_view mv = metric;
        const char* unit = mv.ends_with("_ns") ? "ns" : mv == "msgs_per_s" ? "msg/s" : "MB/s";
        auto samples = g_samples.find({"large", t.name, size});
        const auto slash = t.name.find('/');
        const long depth = slash == std::string::npos ? 0 : std::strtol(t.name.c_str() + slash + 1, nullptr, 10);
        std::fprintf(f, "large,%s,%ld,%zu,%s,%s,%.6g,%.6g,%.6g,%d,%" PRIu64 "\n", t.name.c_str(), depth, size,
                     metric, unit, sm.median, sm.min, sm.max, sm.reps,
                     samples == g_samples.end() ? std::uint64_t{0} : samples->second);
      }
    }
  }
}

void print_tables(std::FILE* out, const std::vector<transport>& ts, const settings& s, double seconds) {
  std::fprintf(out, "# pipc-bench results\n\n");
  std::fprintf(out, "Machine: %s.  \n", machine_line().c_str());
  std::fprintf(
      out,
      "Method: every figure is the median of %d repetitions, [min–max] across them; processes made "
      "with fork()%s; engine spin %s.  \n",
      s.reps, s.pin ? ", pinned to distinct CPUs (--pin)" : ", not pinned",
      g_engine_spin ? strf("%lld ns", static_cast<long long>(g_engine_spin->count())).c_str()
                    : "default (20 µs + 0.25 ns per byte of message size)");
  std::fprintf(out, "Ratios (×) are speed-ups: how many times faster than kernel mq / Boost (> 1 is better).  \n");
  std::fprintf(out,
               "Load average (1, 5, 15 min) before the run: %s (other work on the machine skews the numbers; "
               "at the end: %s, which counts this run's own processes).  \n",
               g_load_at_start.c_str(), load_average().c_str());
  std::fprintf(out,
               "Machine state probe (\"cache line\" below): the mean round trip of one cache line passed back and "
               "forth between two spinning processes, taken before each repetition — the floor under any "
               "shared-memory hand-off here. In a VM it moves several-fold with where the host runs the virtual "
               "CPUs, and every figure moves with it.  \n");
  std::fprintf(out, "Run time: %.0f s (", seconds);
  const char* sep = "";
  for (const auto& [m, secs] : g_phase_seconds) {
    std::fprintf(out, "%s%s %.0f s", sep, m.c_str(), secs);
    sep = ", ";
  }
  std::fprintf(out, ").\n\n");

  const std::string kernel = "kernel-mq/10";
  if (wants(s, "latency")) {
    std::fprintf(out,
                 "## Ping-pong round trip, µs (%ld round trips per repetition after %ld of warm-up)\n\n"
                 "One message in flight, so depth does not matter: each transport is measured at its smallest "
                 "depth. p99/p50: the ratio within each repetition (median [min–max] over them). "
                 "p50 / limit: this p50 over `%s`'s (the bare spin ring, not a product; 1 is the machine's limit). "
                 "Boost column: Boost at depth 10.\n\n",
                 s.round_trips, s.warmup_round_trips, limit_latency);
    print_probes(out, "latency");
    std::fprintf(out,
                 "| transport | depth | size | p50 | p99 | p99.9 | p99/p50 | stalled | p50 / limit | p50 × kernel mq "
                 "| p50 × Boost | same CPU |\n");
    std::fprintf(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    const stall_probe stalls = median_stalls("latency");
    auto tail = [](double v) { return v >= 100 ? strf("%.0f", v) : strf("%.1f", v); };
    for (std::size_t size : s.sizes) {
      auto k = result("latency", kernel, size, "rtt_p50_ns");
      auto b = result("latency", "boost/10", size, "rtt_p50_ns");
      auto lim = result("latency", limit_latency, size, "rtt_p50_ns");
      for (const auto& t : ts) {
        if (!pings(t, s)) continue;
        if (std::string why = size_skip(t, size); !why.empty()) {
          std::fprintf(out, "| %s | %s | %s | %s | | | | | | | | |\n", t.name.c_str(), depth_label(t).c_str(),
                       size_label(size).c_str(), why.c_str());
          continue;
        }
        auto p50 = result("latency", t.name, size, "rtt_p50_ns");
        if (!p50) continue;
        auto p99 = result("latency", t.name, size, "rtt_p99_ns");
        auto p999 = result("latency", t.name, size, "rtt_p999_ns");
        auto spread = result("latency", t.name, size, "rtt_p99_over_p50");
        auto same = result("latency", t.name, size, "same_cpu_share");
        std::optional<double> rk, rb;
        if (k) rk = k->median / p50->median;
        if (b) rb = b->median / p50->median;
        const std::string vs_limit = lim ? strf("%.2f", p50->median / lim->median) : "–";
        // The share of round trips a stall lands in: a round trip's length over the time
        // between stalls ("all" once a round trip outlasts that time).
        const double share = stalls.interval_ns > 0 ? p50->median / stalls.interval_ns : 0;
        const std::string stalled = stalls.interval_ns == 0 ? "–" : share >= 1 ? "all" : strf("%.1f%%", 100 * share);
        std::fprintf(out, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", t.name.c_str(),
                     depth_label(t).c_str(), size_label(size).c_str(), with_range(*p50, us).c_str(),
                     with_range(*p99, us).c_str(), with_range(*p999, us).c_str(), with_range(*spread, tail).c_str(),
                     stalled.c_str(), vs_limit.c_str(), ratio(rk).c_str(), ratio(rb).c_str(), percent(same).c_str());
      }
    }
    std::fprintf(out, "\n");
    if (stalls.interval_ns > 0) {
      std::fprintf(out,
                   "stalled: the share of round trips a stall is expected to land in, the p50 over the time between "
                   "stalls (median over the repetitions: %.0f µs; the median stall: %.1f µs). Above 1%% the p99 is a "
                   "stalled round trip, about the p50 plus a stall, whatever the transport.\n\n",
                   stalls.interval_ns / 1e3, stalls.median_ns / 1e3);
    }
    note_shared_limit(out, "latency", limit_latency, s.sizes);
  }
  if (wants(s, "stream")) {
    std::fprintf(out,
                 "## One-way streaming, one sender → one receiver (%.0f ms timed per repetition after %ld "
                 "messages of warm-up; every message verified)\n\n"
                 "MB/s counts payload bytes (10^6 bytes). × Boost compares with Boost at the same depth. "
                 "of limit: the median as a share of `%s`'s (the bare spin ring, not a product).\n\n",
                 s.stream_ms, s.stream_warmup, limit_stream);
    print_probes(out, "stream");
    std::fprintf(out,
                 "| transport | depth | size | messages/s | MB/s | of limit | × kernel mq | × Boost | same CPU |\n");
    std::fprintf(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (std::size_t size : s.sizes) {
      auto k = result("stream", kernel, size, "msgs_per_s");
      auto lim = result("stream", limit_stream, size, "msgs_per_s");
      for (const auto& t : ts) {
        if (!t.stream) continue;
        if (std::string why = size_skip(t, size); !why.empty()) {
          std::fprintf(out, "| %s | %s | %s | %s | | | | | |\n", t.name.c_str(), depth_label(t).c_str(),
                       size_label(size).c_str(), why.c_str());
          continue;
        }
        auto r = result("stream", t.name, size, "msgs_per_s");
        if (!r) continue;
        auto mb = result("stream", t.name, size, "mb_per_s");
        auto b = result("stream", boost_peer(t), size, "msgs_per_s");
        auto same = result("stream", t.name, size, "same_cpu_share");
        std::optional<double> rk, rb;
        if (k) rk = r->median / k->median;
        if (b) rb = r->median / b->median;
        const std::string of_limit = lim ? strf("%.0f%%", 100 * r->median / lim->median) : "–";
        std::fprintf(out, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", t.name.c_str(), depth_label(t).c_str(),
                     size_label(size).c_str(), with_range(*r, rate).c_str(), with_range(*mb, mbs).c_str(),
                     of_limit.c_str(), ratio(rk).c_str(), ratio(rb).c_str(), percent(same).c_str());
      }
    }
    std::fprintf(out, "\n");
    note_shared_limit(out, "stream", limit_stream, s.sizes);
  }
  if (wants(s, "contention")) {
    std::fprintf(out,
                 "## Contention: 2 producers + 2 consumers on one channel (%.0f ms per repetition; every message "
                 "verified, per-producer counts and checksums reconciled)\n\n"
                 "Fairness = min/max of the two counts in the timed part (1 = equal shares, 0.5 = one got twice "
                 "the other's, 0 = one starved): producers = messages each got in, consumers = messages each took "
                 "out. `min` is the lowest over the repetitions (the issue's bar: ≥ 0.5 in every one; below it in "
                 "bold); `each repetition` lists them in the order they ran.%s\n\n",
                 s.contention_ms,
                 s.pin ? ""
                       : " Rows `… pinned` are pipc's transports again, in the same repetitions, with one producer and "
                         "one consumer pinned to each CPU: the same queue without the scheduler's placement (which "
                         "sometimes keeps three of the four processes on one CPU for a whole repetition).");
    print_probes(out, "contention");
    std::fprintf(out,
                 "| transport | depth | size | messages/s | producer fairness: min | each repetition | consumer "
                 "fairness: min | each repetition | × kernel mq | × Boost |\n");
    std::fprintf(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    auto fair = [](double v) { return v < 0.5 ? strf("**%.2f**", v) : strf("%.2f", v); };
    auto each = [&](const std::string& name, std::size_t size, const char* metric) {
      std::string line;
      auto it = g_values.find({"contention", name, size, metric});
      if (it == g_values.end()) return line;
      for (double v : it->second) {
        if (!line.empty()) line += ' ';
        line += fair(v);
      }
      return line;
    };
    for (std::size_t size : s.sizes) {
      auto k = result("contention", kernel, size, "msgs_per_s");
      for (const auto& t : ts) {
        if (!t.stream) continue;
        if (std::string why = contention_skip(t, size); !why.empty()) {
          std::fprintf(out, "| %s | %s | %s | %s | | | | | | |\n", t.name.c_str(), depth_label(t).c_str(),
                       size_label(size).c_str(), why.c_str());
          continue;
        }
        auto b = result("contention", boost_peer(t), size, "msgs_per_s");
        auto row = [&](const std::string& name) {
          auto r = result("contention", name, size, "msgs_per_s");
          if (!r) return;
          auto pf = result("contention", name, size, "producer_fairness");
          auto cf = result("contention", name, size, "consumer_fairness");
          std::optional<double> rk, rb;
          if (k) rk = r->median / k->median;
          if (b) rb = r->median / b->median;
          std::fprintf(out, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name.c_str(),
                       depth_label(t).c_str(), size_label(size).c_str(), with_range(*r, rate).c_str(),
                       fair(pf->min).c_str(), each(name, size, "producer_fairness").c_str(), fair(cf->min).c_str(),
                       each(name, size, "consumer_fairness").c_str(), ratio(rk).c_str(), ratio(rb).c_str());
        };
        for (const std::string& name : contention_rows(t, s)) row(name);
      }
    }
    std::fprintf(out, "\n");
    note_unfair_repetitions(out, ts, s);
  }
  if (wants(s, "create")) {
    std::fprintf(out,
                 "## Creating a queue, µs per operation (%ld × %ld, mq_open's defaults; %ld operations per "
                 "repetition, the transports alternating in rounds of %ld)\n\n"
                 "create: O_CREAT | O_EXCL, close, unlink. exists: O_CREAT | O_EXCL of a name that exists, which "
                 "fails with EEXIST. × kernel mq is the time taken as a multiple of the kernel's (< 1 is faster)."
                 "%s\n\n",
                 create_depth, create_size, s.create_rounds * s.create_batch, s.create_batch,
                 g_region_bytes > 0 ? strf(" The engine's region for this queue: %ld bytes.", g_region_bytes).c_str()
                                    : "");
    std::fprintf(out, "| transport | create | × kernel mq | exists | × kernel mq |\n");
    std::fprintf(out, "| --- | ---: | ---: | ---: | ---: |\n");
    auto kc = result("create", "kernel-mq", create_size, "create_ns");
    auto ke = result("create", "kernel-mq", create_size, "exists_ns");
    for (const auto& c : all_creators()) {
      auto rc = result("create", c.name, create_size, "create_ns");
      auto re = result("create", c.name, create_size, "exists_ns");
      if (!rc || !re) continue;
      std::optional<double> xc, xe;
      if (kc) xc = rc->median / kc->median;
      if (ke) xe = re->median / ke->median;
      std::fprintf(out, "| %s | %s | %s | %s | %s |\n", c.name.c_str(), with_range(*rc, us).c_str(), ratio(xc).c_str(),
                   with_range(*re, us).c_str(), ratio(xe).c_str());
    }
    std::fprintf(out, "\n");
    for (const auto& c : all_creators()) {
      if (result("create", c.name, create_size, "create_ns")) {
        std::fprintf(out, "- `%s`: %s\n", c.name.c_str(), c.description.c_str());
      }
    }
    std::fprintf(out, "\n");
  }
  if (wants(s, "large")) print_large_table(out, s);
  if (!wants(s, "latency") && !wants(s, "stream") && !wants(s, "contention")) return;
  std::fprintf(out, "Transports:\n\n");
  for (const auto& t : ts)
    if (selected(t, s)) std::fprintf(out, "- `%s`: %s\n", t.name.c_str(), t.description.c_str());
}

// One row per (measurement, transport, size, metric), in the order of the tables.
void write_csv(const std::string& path, const std::vector<transport>& ts, const settings& s) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) sys_fail(("fopen " + path).c_str());
  std::fprintf(f, "measurement,transport,depth,size,metric,unit,median,min,max,reps,samples_per_rep,per_rep\n");
  // Every repetition's value, in the order they ran, separated by ';'.
  auto per_rep = [](const std::vector<double>& v) {
    std::string line;
    for (double x : v) {
      if (!line.empty()) line += ';';
      line += strf("%.6g", x);
    }
    return line;
  };
  const std::pair<const char*, std::vector<const char*>> metrics[] = {
      {"latency", {"rtt_p50_ns", "rtt_p99_ns", "rtt_p999_ns", "rtt_p99_over_p50", "same_cpu_share"}},
      {"stream", {"msgs_per_s", "mb_per_s", "same_cpu_share"}},
      {"contention",
       {"msgs_per_s", "mb_per_s", "producer_fairness", "consumer_fairness", "jain_producers", "producer_cpu_fairness",
        "producer_lower_ran", "producer_lower_queued", "producer_lower_blocked", "producer_higher_ran",
        "producer_higher_queued", "producer_higher_blocked", "consumer_cpu_fairness", "consumer_lower_ran",
        "consumer_lower_queued", "consumer_lower_blocked", "consumer_higher_ran", "consumer_higher_queued",
        "consumer_higher_blocked"}},
  };
  for (const auto& [m, names] : metrics) {
    for (std::size_t size : s.sizes) {
      for (const auto& t : ts) {
        const std::vector<std::string> rows =
            std::string_view(m) == "contention" ? contention_rows(t, s) : std::vector<std::string>{t.name};
        for (const std::string& row : rows) {
          for (const char* metric : names) {
            auto it = g_values.find({m, row, size, metric});
            if (it == g_values.end()) continue;
            const summary sm = summarise(it->second);
            const std::string_view mv = metric;
            const char* unit = mv.ends_with("_ns")  ? "ns"
                               : mv == "msgs_per_s" ? "msg/s"
                               : mv == "mb_per_s"   ? "MB/s"
                                                    : "ratio";
            auto samples = g_samples.find({m, row, size});
            std::fprintf(f, "%s,%s,%ld,%zu,%s,%s,%.6g,%.6g,%.6g,%d,%" PRIu64 ",%s\n", m, row.c_str(), t.depth, size,
                         metric, unit, sm.median, sm.min, sm.max, sm.reps,
                         samples == g_samples.end() ? std::uint64_t{0} : samples->second, per_rep(it->second).c_str());
          }
        }
      }
    }
  }
  for (const auto& c : all_creators()) {
    for (const char* metric : {"create_ns", "exists_ns"}) {
      auto it = g_values.find({"create", c.name, create_size, metric});
      if (it == g_values.end()) continue;
      const summary sm = summarise(it->second);
      std::fprintf(f, "create,%s,%ld,%ld,%s,ns,%.6g,%.6g,%.6g,%d,%ld,%s\n", c.name.c_str(), create_depth, create_size,
                   metric, sm.median, sm.min, sm.max, sm.reps, s.create_rounds * s.create_batch,
                   per_rep(it->second).c_str());
    }
  }
  write_large_csv(f);
  // The machine-state probe: one row per measurement, over its repetitions.
  for (const auto& [m, values] : g_probes) {
    std::vector<double> v;
    for (const auto& x : values)
      if (x != "n/a") v.push_back(std::strtod(x.c_str(), nullptr));
    if (v.empty()) continue;
    const summary sm = summarise(v);
    std::fprintf(f, "%s,cache-line-probe,0,0,probe_rtt_ns,ns,%.6g,%.6g,%.6g,%d,200000,%s\n", m.c_str(), sm.median,
                 sm.min, sm.max, sm.reps, per_rep(v).c_str());
  }
  // The stall probe: the time between stalls and the median stall, over the repetitions
  // that saw one; its samples column is the stalls seen.
  for (const auto& [m, probes] : g_stalls) {
    const stall_series series = stall_series_of(probes);
    if (series.interval.empty()) continue;
    for (const auto& [metric, v] :
         {std::pair{"stall_interval_ns", &series.interval}, std::pair{"stall_median_ns", &series.length}}) {
      const summary sm = summarise(*v);
      std::fprintf(f, "%s,stall-probe,0,0,%s,ns,%.6g,%.6g,%.6g,%d,%" PRIu64 ",%s\n", m.c_str(), metric, sm.median,
                   sm.min, sm.max, sm.reps, series.seen, per_rep(*v).c_str());
    }
  }
  if (std::fclose(f) != 0) sys_fail(("fclose " + path).c_str());
}

[[noreturn]] void usage(int status) {
  std::FILE* out = status == 0 ? stdout : stderr;
  std::fprintf(out,
               "usage: pipc-bench [options]\n"
               "  --quick              smoke test: 3 repetitions, 2000 round trips, 20 ms streams\n"
               "  --reps N             repetitions of every measurement (default 5)\n"
               "  --round-trips N      timed ping-pong round trips per repetition (default 100000)\n"
               "  --warmup N           untimed ping-pong round trips first (default 1000)\n"
               "  --stream-ms MS       timed part of each streaming repetition (default 100)\n"
               "  --contention-ms MS   timed part of each contention repetition (default 100, after 30 of warm-up)\n"
               "  --sizes A,B,...      message sizes in bytes, multiples of 8, 16 to 1048576 (default 64,1024,8192);\n"
               "                       a transport that cannot carry a size shows n/a and why\n"
               "  --only S1,S2,...     only transports whose name contains one of these\n"
               "  --measure M1,...     latency, stream, contention, create, large (default all)\n"
               "  --latency-all-depths ping-pong every depth, not only the smallest\n"
               "  --pin                pin the processes to distinct CPUs (sched_setaffinity)\n"
               "  --spin-ns N          the engine's spin before sleeping (default: the library's,\n"
               "                       20 us + 0.25 ns/byte)\n"
               "  --csv PATH           write every result as CSV\n"
               "  --md PATH            write the Markdown tables to PATH too\n"
               "  --list               list the transports and exit\n");
  std::exit(status);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

long to_long(const char* opt, const char* v, long lo) {
  char* end = nullptr;
  errno = 0;
  long n = std::strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || n < lo) {
    std::fprintf(stderr, "pipc-bench: %s wants an integer >= %ld, not \"%s\"\n", opt, lo, v);
    usage(2);
  }
  return n;
}

constexpr long max_size = 1L << 20;  // --sizes: 1 MiB

settings parse(int argc, char** argv) {
  settings s;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "pipc-bench: %s needs a value\n", a.c_str());
        usage(2);
      }
      return argv[++i];
    };
    if (a == "--quick") {
      s.reps = 3;
      s.round_trips = 2000;
      s.warmup_round_trips = 200;
      s.stream_warmup = 256;
      s.stream_ms = 20;
      s.contention_ms = 20;
      s.contention_warmup_ms = 10;
      s.create_rounds = 2;
      s.create_batch = 100;
    } else if (a == "--reps") {
      s.reps = static_cast<int>(to_long("--reps", value(), 1));
    } else if (a == "--round-trips") {
      s.round_trips = to_long("--round-trips", value(), 1);
    } else if (a == "--warmup") {
      s.warmup_round_trips = to_long("--warmup", value(), 0);
    } else if (a == "--stream-ms") {
      s.stream_ms = static_cast<double>(to_long("--stream-ms", value(), 1));
    } else if (a == "--contention-ms") {
      s.contention_ms = static_cast<double>(to_long("--contention-ms", value(), 1));
    } else if (a == "--sizes") {
      s.sizes.clear();
      for (const auto& v : split(value())) {
        long n = to_long("--sizes", v.c_str(), 16);
        if (n % 8 != 0 || n > max_size) {
          std::fprintf(stderr, "pipc-bench: --sizes: %ld is not a multiple of 8 in 16..%ld (1 MiB)\n", n, max_size);
          usage(2);
        }
        s.sizes.push_back(static_cast<std::size_t>(n));
      }
    } else if (a == "--only") {
      s.only = split(value());
    } else if (a == "--measure") {
      s.measurements = split(value());
      for (const auto& m : s.measurements)
        if (m != "latency" && m != "stream" && m != "contention" && m != "create" && m != "large") {
          std::fprintf(stderr, "pipc-bench: --measure: unknown measurement \"%s\"\n", m.c_str());
          usage(2);
        }
    } else if (a == "--latency-all-depths") {
      s.latency_all_depths = true;
    } else if (a == "--pin") {
      s.pin = true;
    } else if (a == "--spin-ns") {
      g_engine_spin = std::chrono::nanoseconds(to_long("--spin-ns", value(), 0));
    } else if (a == "--csv") {
      s.csv_path = value();
    } else if (a == "--md") {
      s.md_path = value();
    } else if (a == "--list") {
      list = true;
    } else if (a == "-h" || a == "--help") {
      usage(0);
    } else {
      std::fprintf(stderr, "pipc-bench: unknown option %s\n", a.c_str());
      usage(2);
    }
  }
  if (list) {
    for (const auto& t : all_transports()) std::printf("%-20s %s\n", t.name.c_str(), t.description.c_str());
    std::printf("\nmeasurement \"large\":\n");
    for (const auto& t : large_transports()) std::printf("%-28s %s\n", t.name.c_str(), t.description.c_str());
    std::exit(0);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  g_main_pid = ::getpid();
  settings s = parse(argc, argv);
  ::signal(SIGALRM, on_alarm);
  struct sigaction child_action {};
  child_action.sa_handler = on_child;
  child_action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  ::sigaction(SIGCHLD, &child_action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) g_cpus.push_back(c);
  if (s.pin) pin_to(0);  // the parent side of two-process measurements

  void* shared = ::mmap(nullptr, sizeof(control_block), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) sys_fail("mmap (control block)");
  g_control = new (shared) control_block{};

  std::vector<transport> ts;
  for (auto& t : all_transports())
    if (selected(t, s)) ts.push_back(std::move(t));
  // The large measurement has transports of its own: --only must match some transport
  // of a measurement that runs.
  const bool other_measurements = std::any_of(s.measurements.begin(), s.measurements.end(),
                                              [](const std::string& m) { return m != "large"; });
  const auto large = large_transports();
  const bool large_matches =
      wants(s, "large") &&
      std::any_of(large.begin(), large.end(), [&](const large_transport& t) { return large_selected(t, s); });
  if (!(other_measurements && !ts.empty()) && !large_matches) die("--only matches no transport (see --list)");

  const std::int64_t start = now_ns();
  g_load_at_start = load_average();
  std::fprintf(stderr, "pipc-bench: %s; load average %s\n", machine_line().c_str(), g_load_at_start.c_str());
  try {
    // Repetitions are interleaved (rep 1 of every size and transport, then rep 2, ...)
    // so that a slow phase of the machine spreads over all of them instead of one.
    if (wants(s, "latency")) {
      phase_timer timer("ping-pong");
      for (int rep = 0; rep < s.reps; ++rep) {
        note_probe("latency", s, rep);
        note_stalls("latency", s, rep);
        for (std::size_t size : s.sizes) {
          for (const auto& t : ts) {
            if (!pings(t, s) || !size_skip(t, size).empty()) continue;
            // 200 µs per round trip, and 4 copies, a fill and a check of 1 ns per byte.
            watchdog(static_cast<double>(s.round_trips + s.warmup_round_trips) *
                     (200e-6 + 6e-9 * static_cast<double>(size)));
            latency_result r = ping_pong(t, size, s);
            ::alarm(0);
            record("latency", t.name, size, "rtt_p50_ns", r.p50_ns);
            record("latency", t.name, size, "rtt_p99_ns", r.p99_ns);
            record("latency", t.name, size, "rtt_p999_ns", r.p999_ns);
            record("latency", t.name, size, "rtt_p99_over_p50", r.p99_ns / r.p50_ns);
            record("latency", t.name, size, "same_cpu_share", r.same_cpu);
            note_samples("latency", t.name, size, static_cast<std::uint64_t>(s.round_trips));
            std::fprintf(
                stderr,
                "latency    %-6s rep %d/%d %-20s p50 %8.2f µs  p99 %8.2f µs  p99.9 %8.2f µs  same CPU %3.0f%%\n",
                size_label(size).c_str(), rep + 1, s.reps, t.name.c_str(), r.p50_ns / 1e3, r.p99_ns / 1e3,
                r.p999_ns / 1e3, r.same_cpu * 100);
          }
        }
      }
    }
    if (wants(s, "stream")) {
      phase_timer timer("streaming");
      for (int rep = 0; rep < s.reps; ++rep) {
        note_probe("stream", s, rep);
        for (std::size_t size : s.sizes) {
          for (const auto& t : ts) {
            if (!t.stream || !size_skip(t, size).empty()) continue;
            watchdog(s.stream_ms / 1e3 + static_cast<double>(s.stream_warmup * size) * 2e-9);
            stream_result r = stream(t, size, s);
            ::alarm(0);
            record("stream", t.name, size, "msgs_per_s", r.msgs_per_s);
            record("stream", t.name, size, "mb_per_s", r.msgs_per_s * static_cast<double>(size) / 1e6);
            record("stream", t.name, size, "same_cpu_share", r.same_cpu);
            note_samples("stream", t.name, size, r.messages);
            std::fprintf(stderr,
                         "stream     %-6s rep %d/%d %-20s %10.3f M msg/s  %9.1f MB/s  (%" PRIu64
                         " msgs)  same CPU %3.0f%%\n",
                         size_label(size).c_str(), rep + 1, s.reps, t.name.c_str(), r.msgs_per_s / 1e6,
                         r.msgs_per_s * static_cast<double>(size) / 1e6, r.messages, r.same_cpu * 100);
          }
        }
      }
    }
    if (wants(s, "contention")) {
      phase_timer timer("contention");
      for (int rep = 0; rep < s.reps; ++rep) {
        note_probe("contention", s, rep);
        for (std::size_t size : s.sizes) {
          for (const auto& t : ts) {
            if (!t.stream || !contention_skip(t, size).empty()) continue;
            run_contention(t, t.name, size, s, rep);
            if (contends_pinned_too(t, s)) {
              settings pinned = s;
              pinned.pin = true;
              run_contention(t, pinned_name(t), size, pinned, rep);
            }
          }
        }
      }
    }
    if (wants(s, "create")) {
      phase_timer timer("create");
      std::vector<creator> cs;
      for (auto& c : all_creators())
        if (s.only.empty() || std::any_of(s.only.begin(), s.only.end(), [&](const std::string& o) {
              return c.name.find(o) != std::string::npos;
            }))
          cs.push_back(std::move(c));
      if (std::any_of(cs.begin(), cs.end(), [](const creator& c) { return c.kind == 's'; })) {
        g_region_bytes = engine_region_bytes();
      }
      for (int rep = 0; rep < s.reps; ++rep) {
        watchdog(static_cast<double>(s.create_rounds * s.create_batch) * 1e-3);
        std::vector<create_result> r = create_once(cs, s.create_rounds, s.create_batch);
        ::alarm(0);
        for (std::size_t i = 0; i < cs.size(); ++i) {
          record("create", cs[i].name, create_size, "create_ns", r[i].create_ns);
          record("create", cs[i].name, create_size, "exists_ns", r[i].exists_ns);
          note_samples("create", cs[i].name, create_size, static_cast<std::uint64_t>(s.create_rounds * s.create_batch));
          std::fprintf(stderr, "create     rep %d/%d %-16s create+close+unlink %8.2f µs  O_EXCL, name taken %6.2f µs\n",
                       rep + 1, s.reps, cs[i].name.c_str(), r[i].create_ns / 1e3, r[i].exists_ns / 1e3);
        }
      }
    }
    if (wants(s, "large")) {
      phase_timer timer("large");
      run_large(s);
    }
  } catch (const std::exception& e) {
    die("%s", e.what());
  }
  const double seconds = static_cast<double>(now_ns() - start) / 1e9;

  print_tables(stdout, ts, s, seconds);
  if (!s.md_path.empty()) {
    std::FILE* f = std::fopen(s.md_path.c_str(), "w");
    if (f == nullptr) sys_fail(("fopen " + s.md_path).c_str());
    print_tables(f, ts, s, seconds);
    std::fclose(f);
  }
  if (!s.csv_path.empty()) write_csv(s.csv_path, ts, s);
  std::fprintf(stderr, "pipc-bench: done in %.0f s\n", seconds);
  return 0;
}
