// Creating, opening and removing queue regions (docs/engine.md, "Creation, opening,
// unlinking"). Only complete regions ever get a name: a region is built in an unnamed
// file and linked into place, so no process can see a half-initialised queue; a
// racing creator opens the winner's queue.
#include "engine/region.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

namespace pipc::engine {

using detail::encode;

namespace {

constexpr const char* object_prefix = "pipc.mq.";
// Regions up to this size get their page tables filled in when a process maps them.
constexpr std::uint64_t populate_limit = std::uint64_t{256} << 20;

// The file's own permissions: read-write for each class that the queue's mode gives
// both read and write, and nothing for the others. Receiving writes shared state and
// sending reveals it, so the engine cannot give a class one without the other; giving
// it the file anyway would let it do both (docs/engine.md, "Security").
mode_t file_mode(mode_t queue_mode) noexcept {
  mode_t m = 0;
  for (mode_t rw : {mode_t{0600}, mode_t{0060}, mode_t{0006}}) {
    if ((queue_mode & rw) == rw) m |= rw;
  }
  return m;
}

// A region of `fd` (which it then owns) with geometry `geo`, not mapped yet.
int new_region(int fd, const geometry& geo, std::shared_ptr<region>& out) noexcept {
  try {
    out = std::make_shared<region>();
  } catch (...) {
    return ENOMEM;
  }
  out->fd = fd;
  out->geo = geo;
  return 0;
}

// One mapping per queue file per process: every open of the same file (device and
// inode) shares the region. Opening again costs no mmap, and all of a process's threads
// see the queue at one address (which is also what ThreadSanitizer needs to follow
// their synchronisation). A region outlives its file's name, so an inode in the table
// cannot be reused while its region lives; entries of dead regions are dropped lazily.
class region_table {
 public:
  region_table() {
    // A child of fork() inherits the mappings, and the table with them; the lock must
    // not be inherited held.
    ::pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                     [] { instance().mutex_.unlock(); });
  }
  static region_table& instance() {
    static region_table* table = new region_table;  // never destroyed: used until exit
    return *table;
  }
  std::shared_ptr<region> find(const struct ::stat& st) {
    std::lock_guard lock(mutex_);
    for (const auto& e : entries_) {
      if (e.dev == st.st_dev && e.ino == st.st_ino) return e.r.lock();
    }
    return nullptr;
  }
  void add(const struct ::stat& st, const std::shared_ptr<region>& r) noexcept {
    std::lock_guard lock(mutex_);
    try {
      std::erase_if(entries_, [&](const entry& e) { return e.r.expired() || (e.dev == st.st_dev && e.ino == st.st_ino); });
      entries_.push_back({st.st_dev, st.st_ino, r});
    } catch (...) {
      // Out of memory: this region stays unshared, which costs only a mapping.
    }
  }

 private:
  struct entry {
    dev_t dev;
    ino_t ino;
    std::weak_ptr<region> r;
  };
  std::mutex mutex_;
  std::vector<entry> entries_;
};

// Writes a new queue's initial state into `fd`: the header and the free ring's first N
// entries (slots 1 … N at positions 0 … N − 1), everything else of a new region being
// zero. They are built a page at a time in this process's memory and written with
// pwrite, so creating maps and faults in nothing; for a small queue it is one page.
int write_initial_state(int fd, const geometry& geo, mode_t queue_mode) noexcept {
  constexpr std::size_t chunk = 4096;
  static_assert(header_size <= chunk && header_size % sizeof(std::uint64_t) == 0);
  alignas(header) std::byte buffer[chunk];
  const std::uint64_t end = geo.free_ring_offset + geo.max_messages * sizeof(std::uint64_t);
  for (std::uint64_t offset = 0; offset < end; offset += chunk) {
    std::memset(buffer, 0, sizeof buffer);
    const std::uint64_t length = std::min<std::uint64_t>(chunk, end - offset);
    if (offset == 0) {
      header* h = new (buffer) header{};
      h->magic_word = magic;
      h->version = layout_version;
      h->header_bytes = header_size;
      h->region_size = geo.region_size;
      h->max_messages = geo.max_messages;
      h->message_size = geo.message_size;
      h->slot_stride = geo.slot_stride;
      h->heap_offset = geo.heap_offset;
      h->slots_offset = geo.slots_offset;
      h->ring_size = geo.ring_size;
      h->free_ring_offset = geo.free_ring_offset;
      h->ready_ring_offset = geo.ready_ring_offset;
      h->mode = queue_mode;
      h->created_ns = sys::now_ns(CLOCK_REALTIME);
      h->next_seq = 1;
      // Both lock words are 0: free. free_head and every ring cursor are 0; free_tail N.
      h->recv_cursors.store(cursors(static_cast<std::uint32_t>(geo.max_messages), 0), std::memory_order_relaxed);
    }
    // The free ring's entries that fall in this chunk (the ring starts 8-aligned, so
    // none straddles two chunks).
    std::uint64_t first = offset > geo.free_ring_offset ? (offset - geo.free_ring_offset) / sizeof(std::uint64_t) : 0;
    for (std::uint64_t k = first; k < geo.max_messages; ++k) {
      const std::uint64_t at = geo.free_ring_offset + k * sizeof(std::uint64_t);
      if (at >= offset + length) break;
      const auto position = static_cast<std::uint32_t>(k);
      const std::uint64_t e = ring_entry(position, position + 1);
      std::memcpy(buffer + (at - offset), &e, sizeof e);
    }
    if (int e = sys::pwrite_exact(fd, buffer, length, offset); e != 0) return e;
  }
  return 0;
}

// Builds a complete queue in an unnamed file and links it as `leaf`.
// Returns 0, EEXIST if the name is taken, or another errno.
//
// What it costs, in system calls (docs/engine.md, "Creation, opening, unlinking"): the
// file (O_TMPFILE, whose mode tells the umask), its status, perhaps a chmod, fallocate
// (the memory of the whole region, zeroed by the kernel as it is first touched), one
// pwrite per 4 KiB of header and free ring, linkat. Nothing is proportional to the
// priority range, nothing writes zeros, and nothing is mapped: the creator maps the
// region when it first uses the queue (region::map).
int create_region(const std::string& leaf, mode_t mode, std::uint64_t max_messages, std::uint64_t message_size,
                  std::shared_ptr<region>& out) noexcept {
  geometry geo = compute_geometry(max_messages, message_size);
  // The file is made with the queue's mode, so open(2) applies the umask to it: its
  // permission bits are then the queue's mode, mode & ~umask, without reading the umask
  // from /proc (3-4 µs). (Where /dev/shm has a default ACL, that ACL takes the umask's
  // place, as for every file made there, shm_open's included.)
  int fd = -1;
  int e = sys::shm_create_unnamed(mode & 0777, fd);
  if (e != 0) return e;
  auto fail = [&](int error) {
    out.reset();
    sys::close(fd);
    return error;
  };
  struct ::stat st {};
  if (e = sys::fstat(fd, st); e != 0) return fail(e);
  const mode_t queue_mode = st.st_mode & 0777;
  // The file itself gives only what the engine can give (file_mode); nobody can open it
  // before it is linked.
  if (const mode_t wanted = file_mode(queue_mode); (st.st_mode & 07777) != wanted) {
    if (e = sys::fchmod(fd, wanted); e != 0) return fail(e);
  }
  // ENOSPC now rather than SIGBUS later.
  if (e = sys::fallocate(fd, geo.region_size); e != 0) return fail(e);
  if (e = write_initial_state(fd, geo, queue_mode); e != 0) return fail(e);
  if (e = new_region(fd, geo, out); e != 0) return fail(e);

  // The queue is complete: only now does it get its name.
  if (e = sys::shm_link(fd, leaf.c_str()); e != 0) {
    out.reset();  // closes fd
    return e;
  }
  out->dev = st.st_dev;
  out->ino = st.st_ino;
  region_table::instance().add(st, out);
  return 0;
}

// Checks that an existing file (`fd`, whose status is `st`) holds a queue this code can
// use, and maps it.
int attach_region(int fd, const struct ::stat& st, std::shared_ptr<region>& out) noexcept {
  auto file_size = static_cast<std::uint64_t>(st.st_size);
  if (file_size < header_size) return encode(errc::not_a_pipc_object);

  // Read the geometry from the header once, into locals: the region is input. pread,
  // not a mapping: the file may be truncated meanwhile, which a read reports as a short
  // count and a mapping as SIGBUS. Only the identity and geometry (identity_bytes): the
  // rest of the header is not looked at here.
  alignas(header) std::byte raw[sizeof(header)];
  if (int e = sys::pread_exact(fd, raw, identity_bytes, 0); e != 0) {
    return e == ENODATA ? encode(errc::not_a_pipc_object) : e;
  }
  const auto* ph = reinterpret_cast<const header*>(raw);
  const std::uint64_t magic_found = ph->magic_word;
  const std::uint32_t version = ph->version;
  const std::uint32_t header_bytes = ph->header_bytes;
  const geometry claimed{ph->max_messages,      ph->message_size,      ph->slot_stride,
                         ph->ring_size,         ph->free_ring_offset,  ph->ready_ring_offset,
                         ph->heap_offset,       ph->slots_offset,      ph->region_size};

  if ((magic_found & magic_family_mask) != (magic & magic_family_mask)) return encode(errc::not_a_pipc_object);
  if (magic_found != magic || version != layout_version || header_bytes != header_size) {
    return encode(errc::layout_mismatch);
  }
  if (claimed.max_messages < 1 || claimed.max_messages > max_max_messages || claimed.message_size < 1 ||
      claimed.message_size > max_message_size) {
    return corrupt;
  }
  geometry geo = compute_geometry(claimed.max_messages, claimed.message_size);
  if (claimed != geo || file_size != geo.region_size) return corrupt;
  return new_region(fd, geo, out);
}

// Is the file `st` safe to use as a queue that the caller opens by name? /dev/shm is
// shared and sticky, and other users may plant files in it (docs/engine.md,
// "Security"): a file with a second name (a hard link another user made to alias a
// queue), or, when the caller meant to create the queue (O_CREAT without O_EXCL), a
// file of another user who may have squatted the name, as the kernel's
// protected_regular refuses it. A file of the directory's owner (root) is trusted as
// the kernel trusts it. Opening without O_CREAT accepts any owner: that is asking for
// another user's queue.
int check_file(const struct ::stat& st, bool creating) noexcept {
  if (!S_ISREG(st.st_mode)) return encode(errc::not_a_pipc_object);
  // No name any more: it was unlinked between the open and the fstat (as if the open
  // had come a moment later).
  if (st.st_nlink == 0) return ENOENT;
  if (st.st_nlink > 1) return encode(errc::multiply_linked);
  if (creating && st.st_uid != sys::effective_uid() && st.st_uid != sys::shm_directory_owner()) {
    return encode(errc::foreign_owner);
  }
  return 0;
}

// Opens the existing queue file `leaf`. Access is the file's: the kernel's open(2)
// checks O_RDWR against the file mode, which gives a class read-write exactly when the
// queue's mode gives it both (file_mode), and nothing otherwise.
int open_existing(const std::string& leaf, bool creating, std::shared_ptr<region>& out) noexcept {
  int fd = -1;
  struct ::stat st {};
  int e = sys::shm_open_file(leaf.c_str(), fd, st);
  if (e != 0) return e;
  e = check_file(st, creating);
  if (e == 0) {
    try {
      out = region_table::instance().find(st);
    } catch (...) {
      e = ENOMEM;
    }
    // A mapping that faulted has private zero pages over part of the file for good: a
    // new open maps the file anew (the descriptors open on the old one keep failing).
    if (out && out->faulted_if_mapped()) out.reset();
  }
  if (e == 0 && out) {
    sys::close(fd);  // the shared region keeps its own descriptor
    // The file may have been truncated since this process mapped it: using the mapping
    // would fault. (Faults after open are caught too: see fault_guard.)
    if (static_cast<std::uint64_t>(st.st_size) != out->geo.region_size) {
      e = corrupt;
    } else if (out->mapped.load(std::memory_order_acquire)) {
      populate(*out);  // in a child of fork, whose page tables for it are empty
    }
  } else if (e == 0) {
    e = attach_region(fd, st, out);
    if (e == 0) {
      out->dev = st.st_dev;
      out->ino = st.st_ino;
      region_table::instance().add(st, out);
    }
  }
  if (e != 0 && !out) sys::close(fd);
  if (e != 0) out.reset();
  return e;
}

}  // namespace

std::string leaf_name(std::string_view name) {
  // Built in place: one allocation (the prefix + substr of a std::string made three).
  const std::string_view prefix = object_prefix;
  std::string leaf;
  leaf.reserve(prefix.size() + name.size());
  leaf.append(prefix).append(name.substr(1));
  return leaf;
}

// Each process takes a page fault the first time it touches each page of the region,
// and a send or receive touches its slot under a lock: a fault there (and the
// preemption it invites) makes every other sender or receiver wait. So a process fills
// in its page tables when it maps the region (its first use of the queue), for regions
// up to populate_limit (larger ones fault in as they are used); a child of fork() does
// it again at its next open, as fork does not copy a shared mapping's page tables.
// Failure only means the faults come later.
void populate(region& r) noexcept {
  const pid_t me = sys::current_pid();
  if (r.populated_by.load(std::memory_order_relaxed) == me || r.geo.region_size > populate_limit) return;
  (void)sys::populate_write(r.base, r.geo.region_size);
  r.populated_by.store(me, std::memory_order_relaxed);
}

// Maps the region and guards the mapping; fills in this process's page tables (see
// populate()). Done at the first use rather than at create or open: a create that only
// creates (and a program that opens a queue to look at it, or to close it again) saves
// the mmap and the munmap (about 1.7 µs of a create's 20), and the populate.
int region::map() noexcept {
  std::lock_guard lock(map_mutex);
  if (mapped.load(std::memory_order_relaxed)) return 0;
  void* p = nullptr;
  if (int e = sys::mmap_rw(fd, geo.region_size, p); e != 0) return e;
  // Guarded before anything touches it. A process that cannot guard it (no memory for
  // the registry, or sigaction failing) does not use it: a truncation would kill it.
  if (int e = sys::guard_region(p, geo.region_size, true, guard); e != 0) {
    sys::munmap(p, geo.region_size);
    return e;
  }
  // (Nobody reads `guard` but the destructor and this: faulted() reads fault_flag.)
  base = static_cast<std::byte*>(p);
  populate(*this);
  fault_flag.store(sys::faulted_flag(guard), std::memory_order_release);
  mapped.store(true, std::memory_order_release);
  return 0;
}

int open_region(const std::string& leaf, mode_t mode, bool create, bool exclusive,
                bool bad_attributes, std::uint64_t max_messages, std::uint64_t message_size,
                std::shared_ptr<region>& out) noexcept {
  int e = ENOENT;
  // A queue may be unlinked between a failed create and the open that follows, or
  // created between a failed open and the create: a few rounds settle every race.
  for (int round = 0; round < 100; ++round) {
    if (!exclusive) {
      e = open_existing(leaf, create, out);
      if (e != ENOENT || !create) break;
    }
    // With O_EXCL an existing name is EEXIST whatever the attributes, and before any
    // work: building a region first would cost time and memory, and could fail with
    // ENOSPC for a queue that is never made. (A name that appears after this look is
    // still caught by the link.)
    if (exclusive && sys::shm_file_exists(leaf.c_str())) {
      e = EEXIST;
      break;
    }
    if (bad_attributes) {
      e = EINVAL;
      break;
    }
    e = create_region(leaf, mode, max_messages, message_size, out);
    if (e != EEXIST || exclusive) break;
  }
  return e;
}

}  // namespace pipc::engine
