// Inspection (include/pipc/inspect.hpp): what is in /dev/shm and the mqueue
// filesystem, read without writing anything, and who uses it, from /proc.
#include <pipc/inspect.hpp>

#include "engine/inspect.hpp"
#include "error_util.hpp"
#include "queue_backend.hpp"
#include "sys/inspect_os.hpp"
#include "sys/sys.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

namespace pipc {

using detail::errno_code;

namespace {

constexpr std::string_view engine_prefix = "pipc.mq.";
constexpr std::string_view semaphore_prefix = "sem.";

std::chrono::system_clock::time_point to_time_point(const timespec& ts) {
  return std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

void take_status(object_info& o, const struct ::stat& st) {
  o.mode = st.st_mode & 07777;
  o.uid = st.st_uid;
  o.gid = st.st_gid;
  o.size = static_cast<std::uint64_t>(st.st_size);
  o.mtime = to_time_point(st.st_mtim);
  o.device = st.st_dev;
  o.inode = st.st_ino;
}

std::string version_detail(std::uint32_t found) {
  return "engine layout version " + std::to_string(found) + "; this pipc reads version " +
         std::to_string(engine::layout_version);
}

// Reads engine queue file `path` into `stats` (and the queue's mode). Returns 0 or an
// errno / encoded errc; `detail` says more for a version mismatch.
int read_engine_queue(const std::string& path, struct ::stat& st, mq_stats& stats, mode_t& mode,
                      std::string& detail) {
  alignas(std::max_align_t) std::byte head[engine::inspect_bytes];
  std::size_t got = 0;
  if (int e = sys::read_file_head(path.c_str(), st, head, sizeof head, got); e != 0) return e;
  if (!S_ISREG(st.st_mode)) return detail::encode(errc::not_a_pipc_object);
  std::uint32_t version = 0;
  int e = engine::inspect_header(head, got, static_cast<std::uint64_t>(st.st_size), stats, mode, version);
  if (e == detail::encode(errc::layout_mismatch)) detail = version_detail(version);
  return e;
}

object_info engine_queue_entry(const std::string& leaf) {
  object_info o;
  o.type = object_type::message_queue;
  o.backend = backend::shm;
  // Appended: GCC 12 warns falsely (-Wrestrict) about "/" + std::string&&.
  o.name = std::string("/").append(leaf, engine_prefix.size());
  o.path = std::string(sys::shm_directory()) + "/" + leaf;
  struct ::stat st {};
  mq_stats s;
  mode_t mode = 0;
  int e = read_engine_queue(o.path, st, s, mode, o.detail);
  if (e != 0 && st.st_ino == 0) sys::lstat_path(o.path.c_str(), st);  // could not open it
  take_status(o, st);
  if (e != 0) {
    o.error = errno_code(e);
    return o;
  }
  o.mode = mode;
  o.max_messages = s.max_messages;
  o.message_size = s.message_size;
  o.current_messages = s.current_messages;
  return o;
}

object_info semaphore_entry(const std::string& leaf) {
  object_info o;
  o.type = object_type::semaphore;
  o.name = std::string("/").append(leaf, semaphore_prefix.size());
  o.path = std::string(sys::shm_directory()) + "/" + leaf;
  struct ::stat st {};
  // A copy of the sem_t, read with read permission only; sem_getvalue decodes the copy
  // as glibc lays it out, and nothing touches the shared one.
  sem_t copy;
  std::memset(&copy, 0, sizeof copy);
  std::size_t got = 0;
  int e = sys::read_file_head(o.path.c_str(), st, &copy, sizeof copy, got);
  if (e != 0) sys::lstat_path(o.path.c_str(), st);
  take_status(o, st);
  if (e == 0 && got != sizeof copy) e = detail::encode(errc::not_a_pipc_object);
  int value = 0;
  if (e == 0) e = sys::sem_getvalue(&copy, value);
  if (e != 0) {
    o.error = errno_code(e);
    if (got != sizeof copy && e == detail::encode(errc::not_a_pipc_object)) {
      o.detail = "shorter than a sem_t: not a semaphore";
    }
    return o;
  }
  o.value = value;
  return o;
}

object_info shm_entry(const std::string& leaf, const struct ::stat& st) {
  object_info o;
  o.type = object_type::shared_memory;
  o.name = "/" + leaf;
  o.path = std::string(sys::shm_directory()) + "/" + leaf;
  take_status(o, st);
  // Readable? A listing says so when the caller could not open it.
  std::size_t got = 0;
  struct ::stat again {};
  char byte;
  if (int e = sys::read_file_head(o.path.c_str(), again, &byte, 0, got); e != 0) o.error = errno_code(e);
  return o;
}

object_info kernel_entry(const sys::kernel_queue_record& r, const std::string& dir) {
  object_info o;
  o.type = object_type::message_queue;
  o.backend = backend::kernel;
  o.name = std::string("/") + r.name;
  o.path = dir + "/" + r.name;
  o.mode = static_cast<mode_t>(r.mode);
  o.uid = static_cast<uid_t>(r.uid);
  o.gid = static_cast<gid_t>(r.gid);
  o.mtime = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(r.mtime_ns)));
  o.device = r.device;
  o.inode = r.inode;
  o.size = r.queued_bytes > 0 ? static_cast<std::uint64_t>(r.queued_bytes) : 0;
  if (r.error != 0) {
    o.error = errno_code(r.error);
    return o;
  }
  o.max_messages = r.max_messages;
  o.message_size = r.message_size;
  o.current_messages = r.current_messages;
  return o;
}

// The kernel queues, from the mounted filesystem or privately; `source` says which.
void read_kernel_queues(std::vector<sys::kernel_queue_record>& records, kernel_queue_source& source) {
  std::string mount;
  if (sys::find_mqueue_mount(mount) == 0) {
    source.kind = kernel_queue_source::mounted;
    source.path = mount;
    if (int e = sys::read_kernel_queues(mount.c_str(), records); e != 0) {
      source.kind = kernel_queue_source::unavailable;
      source.reason = "cannot read " + mount + ": " + errno_code(e).message();
    }
    return;
  }
  int e = sys::read_kernel_queues_privately(records);
  if (e == 0) {
    source.kind = kernel_queue_source::private_ns;
    source.path = "/dev/mqueue";
    return;
  }
  records.clear();
  source.kind = kernel_queue_source::unavailable;
  source.reason = "kernel queues not listed: the mqueue filesystem is not mounted (as root: "
                  "mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue)";
  if (e != EPERM) source.reason += "; reading it privately failed: " + errno_code(e).message();
}

}  // namespace

std::string_view to_string(object_type t) noexcept {
  switch (t) {
    case object_type::message_queue:
      return "mq";
    case object_type::semaphore:
      return "sem";
    case object_type::shared_memory:
      return "shm";
  }
  return "?";
}

std::string_view to_string(pipc::backend b) noexcept { return b == backend::kernel ? "kernel" : "shm"; }

object_listing list_objects(std::error_code& ec) {
  ec.clear();
  object_listing out;
  std::vector<std::string> leaves;
  if (int e = sys::list_directory(sys::shm_directory(), leaves); e != 0) {
    ec = errno_code(e);
    return out;
  }
  for (const std::string& leaf : leaves) {
    const std::string path = std::string(sys::shm_directory()) + "/" + leaf;
    struct ::stat st {};
    if (sys::lstat_path(path.c_str(), st) != 0) continue;  // removed meanwhile
    if (!S_ISREG(st.st_mode)) continue;                      // not an object (a directory, a socket...)
    if (leaf.starts_with(engine_prefix) && leaf.size() > engine_prefix.size()) {
      out.objects.push_back(engine_queue_entry(leaf));
    } else if (leaf.starts_with(semaphore_prefix) && leaf.size() > semaphore_prefix.size()) {
      out.objects.push_back(semaphore_entry(leaf));
    } else {
      out.objects.push_back(shm_entry(leaf, st));
    }
  }
  std::vector<sys::kernel_queue_record> records;
  read_kernel_queues(records, out.kernel_queues);
  for (const auto& r : records) out.objects.push_back(kernel_entry(r, out.kernel_queues.path));
  std::sort(out.objects.begin(), out.objects.end(), [](const object_info& a, const object_info& b) {
    if (a.name != b.name) return a.name < b.name;
    if (a.type != b.type) return a.type < b.type;
    return a.backend < b.backend;
  });
  return out;
}

object_listing list_objects() {
  std::error_code ec;
  object_listing out = list_objects(ec);
  if (ec) detail::throw_unnamed_error(ec, "list_objects", sys::shm_directory());
  return out;
}

mq_stats inspect_queue(std::string_view name, pipc::backend which, std::error_code& ec) noexcept {
  ec.clear();
  mq_stats s;
  if (std::error_code bad = check_name(name, name_kind_for(which))) {
    ec = bad;
    return s;
  }
  try {
    if (which == backend::shm) {
      const std::string path =
          std::string(sys::shm_directory()) + "/" + std::string(engine_prefix) + std::string(name.substr(1));
      struct ::stat st {};
      mode_t mode = 0;
      std::string detail;
      if (int e = read_engine_queue(path, st, s, mode, detail); e != 0) ec = errno_code(e);
      return s;
    }
    std::vector<sys::kernel_queue_record> records;
    kernel_queue_source source;
    read_kernel_queues(records, source);
    const std::string leaf(name.substr(1));
    if (source.kind != kernel_queue_source::unavailable) {
      for (const auto& r : records) {
        if (leaf != r.name) continue;
        if (r.error != 0) {
          ec = errno_code(r.error);
          return s;
        }
        s.max_messages = r.max_messages;
        s.message_size = r.message_size;
        s.current_messages = r.current_messages;
        s.queued_bytes = r.queued_bytes;
        s.notify_pid = r.notify_pid;
        s.notify_signal = r.notify_pid != 0 ? r.notify_signal : 0;
        return s;
      }
      ec = errno_code(ENOENT);
      return s;
    }
    // No filesystem to read: what a read-only open tells.
    const std::string full(name);
    mqd_t q{};
    if (int e = sys::mq_open(full.c_str(), O_RDONLY | O_NONBLOCK, 0, nullptr, q); e != 0) {
      ec = errno_code(e);
      return s;
    }
    mq_attr a{};
    int e = sys::mq_getattr(q, a);
    sys::kernel_queue_record r{};
    if (e == 0 && sys::read_queue_status(static_cast<int>(q), r) == 0) {
      s.queued_bytes = r.queued_bytes;
      s.notify_pid = r.notify_pid;
      s.notify_signal = r.notify_pid != 0 ? r.notify_signal : 0;
    }
    sys::mq_close(q);
    if (e != 0) {
      ec = errno_code(e);
      return s;
    }
    s.max_messages = a.mq_maxmsg;
    s.message_size = a.mq_msgsize;
    s.current_messages = a.mq_curmsgs;
  } catch (const std::bad_alloc&) {
    ec = errno_code(ENOMEM);
  }
  return s;
}

mq_stats inspect_queue(std::string_view name, pipc::backend which) {
  std::error_code ec;
  mq_stats s = inspect_queue(name, which, ec);
  if (ec) detail::throw_error(ec, "inspect", name, name_kind_for(which));
  return s;
}

std::vector<process_use> users_of(const object_info& object, std::vector<pid_t>* unseen) {
  std::vector<process_use> out;
  std::vector<pid_t> pids;
  if (object.inode == 0 || sys::list_pids(pids) != 0) {
    if (unseen != nullptr) unseen->push_back(0);  // nothing could be looked at
    return out;
  }
  const bool kernel_queue = object.type == object_type::message_queue && object.backend == backend::kernel;
  for (pid_t pid : pids) {
    process_use u;
    u.pid = pid;
    int open = sys::process_has_open(pid, object.device, object.inode);
    u.open = open > 0;
    int m = 0;
    if (!kernel_queue) {
      m = sys::process_maps(pid, object.device, object.inode);
      u.mapped = m > 0;
    }
    if ((open < 0 || m < 0) && !u.open && !u.mapped && unseen != nullptr) unseen->push_back(pid);
    if (u.open || u.mapped) out.push_back(std::move(u));
  }
  if (object.type == object_type::message_queue) {
    std::error_code ec;
    mq_stats s = inspect_queue(object.name, object.backend, ec);
    if (!ec) {
      auto find = [&out](pid_t pid) -> process_use& {
        for (process_use& u : out) {
          if (u.pid == pid) return u;
        }
        out.push_back(process_use{pid, {}, false, false, false, 0});
        return out.back();
      };
      if (s.notify_pid > 0) find(s.notify_pid).notify_registrant = true;
      for (pid_t p : s.blocked_receiver_pids) find(p).blocked_receivers += 1;
    }
  }
  for (process_use& u : out) {
    std::string comm;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/comm", static_cast<int>(u.pid));
    if (sys::read_text(path, comm, 64) == 0) {
      while (!comm.empty() && (comm.back() == '\n' || comm.back() == '\0')) comm.pop_back();
      u.command = comm;
    }
  }
  std::sort(out.begin(), out.end(), [](const process_use& a, const process_use& b) { return a.pid < b.pid; });
  return out;
}

mq_stats message_queue::stats(std::error_code& ec) const noexcept {
  ec.clear();
  mq_stats s;
  if (!impl_) {
    ec = errno_code(EBADF);
    return s;
  }
  int e = impl_->get_stats(s);
  if (e == ENOTSUP) {
    mq_attributes a;
    e = impl_->get_attributes(a);
    if (e == 0) {
      s.max_messages = a.max_messages;
      s.message_size = a.message_size;
      s.current_messages = a.current_messages;
      sys::kernel_queue_record r{};
      if (sys::read_queue_status(impl_->native_handle(), r) == 0) {
        s.queued_bytes = r.queued_bytes;
        s.notify_pid = r.notify_pid;
        s.notify_signal = r.notify_pid != 0 ? r.notify_signal : 0;
      }
    }
  }
  if (e != 0) ec = errno_code(e);
  return s;
}

mq_stats message_queue::stats() const {
  std::error_code ec;
  mq_stats s = stats(ec);
  if (ec) fail("stats", ec);
  return s;
}

}  // namespace pipc
