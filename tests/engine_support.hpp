// Helpers for tests that look inside the engine's shared region: its file, mapped
// directly, with the engine's own layout (src/engine/layout.hpp).
#ifndef PIPC_TESTS_ENGINE_SUPPORT_HPP
#define PIPC_TESTS_ENGINE_SUPPORT_HPP

#include "engine/layout.hpp"
#include "engine/lock.hpp"
#include "engine/queue.hpp"
#include "support.hpp"

#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <atomic>
#include <string>
#include <system_error>
#include <thread>

namespace pipc::test {

// A request that creates engine queue `name` (O_RDWR | O_CREAT | O_EXCL, and
// `extra_flags`) of max_messages × message_size, spinning `spin_ns` (< 0: the default).
// `name` must outlive the open (open_request keeps a view of it).
inline engine::open_request create_request(const std::string& name, long max_messages, long message_size,
                                           std::int64_t spin_ns = -1, int extra_flags = 0) {
  engine::open_request request;
  request.name = name;
  request.flags = O_RDWR | O_CREAT | O_EXCL | extra_flags;
  request.has_attributes = true;
  request.max_messages = max_messages;
  request.message_size = message_size;
  request.spin_ns = spin_ns;
  return request;
}

// The file that holds engine queue `name` ("/q" → /dev/shm/pipc.mq.q).
inline std::string object_path(const std::string& name) { return "/dev/shm/pipc.mq." + name.substr(1); }

// The whole file of a queue, mapped read-write, with the geometry it had when mapped.
class raw_region {
 public:
  explicit raw_region(const std::string& name) {
    fd_ = ::open(object_path(name).c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) throw std::system_error(errno, std::system_category(), "open " + object_path(name));
    struct ::stat st {};
    if (::fstat(fd_, &st) != 0) throw std::system_error(errno, std::system_category(), "fstat");
    size_ = static_cast<std::size_t>(st.st_size);
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::system_category(), "mmap");
    base_ = static_cast<std::byte*>(p);
    // The header is input here too: tests scribble it. Outside the caps the geometry is
    // left empty (compute_geometry requires values within them).
    const std::uint64_t max_messages = hdr()->max_messages;
    const std::uint64_t message_size = hdr()->message_size;
    if (max_messages >= 1 && max_messages <= engine::max_max_messages && message_size >= 1 &&
        message_size <= engine::max_message_size) {
      geo_ = engine::compute_geometry(max_messages, message_size);
    }
  }
  raw_region(const raw_region&) = delete;
  raw_region& operator=(const raw_region&) = delete;
  ~raw_region() {
    ::munmap(base_, size_);
    ::close(fd_);
  }

  std::byte* base() const { return base_; }
  std::size_t size() const { return size_; }
  int fd() const { return fd_; }
  engine::header* hdr() const { return reinterpret_cast<engine::header*>(base_); }
  // The side heap (docs/engine.md, "Priorities"): its first side_count() entries are in use.
  engine::side_entry* heap() const { return reinterpret_cast<engine::side_entry*>(base_ + geo_.heap_offset); }
  std::uint32_t side_count() const { return hdr()->side_count.load(); }
  engine::slot_header* slot(std::uint32_t n) const {
    return reinterpret_cast<engine::slot_header*>(base_ + geo_.slots_offset + (n - 1) * geo_.slot_stride);
  }
  std::byte* payload(std::uint32_t n) const {
    return reinterpret_cast<std::byte*>(slot(n)) + sizeof(engine::slot_header);
  }
  const engine::geometry& geo() const { return geo_; }

  template <class T>
  void put(std::size_t offset, T value) const {
    std::memcpy(base_ + offset, &value, sizeof value);
  }
  template <class T>
  T get(std::size_t offset) const {
    T value{};
    std::memcpy(&value, base_ + offset, sizeof value);
    return value;
  }

  // The queue's file, as the engine identifies it to check a lock owner.
  engine::lock_file file() const {
    struct ::stat st {};
    ::fstat(fd_, &st);
    return {st.st_dev, st.st_ino};
  }

  // The queue's two lock words (src/engine/lock.hpp).
  enum class side { send, recv };
  std::atomic<std::uint64_t>* lock(side which) const {
    return which == side::send ? &hdr()->send_lock : &hdr()->recv_lock;
  }
  std::uint64_t lock_word(side which) const { return lock(which)->load(); }
  // Is the lock held by a thread that is gone (so its side awaits recovery)?
  bool owner_died(side which) const { return engine::lock_owner_dead(*lock(which), file()); }
  bool owner_died() const { return owner_died(side::send) || owner_died(side::recv); }

  // Takes a lock as the engine does, through this mapping, without repairing anything:
  // 0, or EOWNERDEAD when it was taken over from a dead owner (whose side then still
  // awaits recovery, which the engine's next locker does).
  int take_lock(side which) const {
    bool died = false;
    int e = engine::lock_acquire(*lock(which), detail::wait_limit::blocking(), died, file());
    return e != 0 ? e : died ? EOWNERDEAD : 0;
  }
  void release_lock(side which) const { engine::lock_release(*lock(which)); }

  // Leaves a lock held by a dead owner, as if a process had died holding it: a thread
  // takes it through this mapping and exits without unlocking. The next locker runs
  // the engine's recovery of that side.
  void kill_lock_holder(side which) const {
    std::thread holder([this, which] { (void)take_lock(which); });
    holder.join();
  }

  // The rings and their cursors (docs/engine.md, "How a message travels").
  std::atomic<std::uint64_t>& free_entry(std::uint32_t position) const {
    return reinterpret_cast<std::atomic<std::uint64_t>*>(base_ + geo_.free_ring_offset)[position & (geo_.ring_size - 1)];
  }
  std::atomic<std::uint64_t>& ready_entry(std::uint32_t position) const {
    return reinterpret_cast<std::atomic<std::uint64_t>*>(base_ + geo_.ready_ring_offset)[position & (geo_.ring_size - 1)];
  }
  std::uint32_t free_head() const { return engine::free_cursor(hdr()->send_cursors.load()); }
  std::uint32_t ready_tail() const { return engine::ring_cursor(hdr()->send_cursors.load()); }
  std::uint32_t free_tail() const { return engine::free_cursor(hdr()->recv_cursors.load()); }
  std::uint32_t ready_head() const { return engine::ring_cursor(hdr()->recv_cursors.load()); }
  // Messages queued: free_head + N − free_tail.
  std::uint32_t depth() const {
    return free_head() + static_cast<std::uint32_t>(geo_.max_messages) - free_tail();
  }

  // The priority of the side heap's first entry, or -1 if the heap is empty.
  long top_priority() const { return side_count() == 0 ? -1 : static_cast<long>(heap()[0].priority); }

 private:
  int fd_ = -1;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  engine::geometry geo_{};
};

// A process that takes both of engine queue `name`'s locks and stops itself (SIGSTOP):
// returns its pid once it is stopped, or -1. SIGCONT lets it release the locks and exit
// 0 (wait for it with wait_exit). For the tests of what a stopped lock holder costs.
inline pid_t spawn_stopped_lock_holder(const std::string& name) {
  const pid_t holder = spawn([name] {
    raw_region r(name);
    if (r.take_lock(raw_region::side::send) != 0 || r.take_lock(raw_region::side::recv) != 0) return 20;
    ::raise(SIGSTOP);
    r.release_lock(raw_region::side::recv);
    r.release_lock(raw_region::side::send);
    return 0;
  });
  if (holder <= 0) return -1;
  int status = 0;
  if (::waitpid(holder, &status, WUNTRACED) != holder || !WIFSTOPPED(status)) return -1;
  return holder;
}

}  // namespace pipc::test

#endif  // PIPC_TESTS_ENGINE_SUPPORT_HPP
