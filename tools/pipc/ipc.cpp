// pipc mq, sem and shm: creating and using one object.
#include "commands.hpp"
#include "util.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>

namespace pipc_tool {
namespace {

// The umask does not apply to an explicit --mode (as with mkdir -m): it is set to 0
// for the creating call and restored after.
class exact_mode {
 public:
  explicit exact_mode(bool on) : on_(on) {
    if (on_) old_ = ::umask(0);
  }
  ~exact_mode() {
    if (on_) ::umask(old_);
  }
  exact_mode(const exact_mode&) = delete;
  exact_mode& operator=(const exact_mode&) = delete;

 private:
  bool on_;
  mode_t old_ = 0;
};

mode_t mode_or_default(const std::string& text) {
  return text.empty() ? pipc::default_permissions : parse_mode(text);
}

std::string read_stdin() {
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(std::string("reading standard input: ") + cause({errno, std::system_category()}, "file"));
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
  }
  return data;
}

void write_stdout(const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(STDOUT_FILENO, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(std::string("writing standard output: ") + cause({errno, std::system_category()}, "file"));
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

// "00000010  68 65 6c 6c 6f 0a ...  |hello.|"
void hex_dump(const std::byte* data, std::size_t size, std::size_t base) {
  for (std::size_t at = 0; at < size; at += 16) {
    char line[100];
    int n = std::snprintf(line, sizeof line, "%08zx ", base + at);
    std::string ascii;
    for (std::size_t i = 0; i < 16; ++i) {
      if (i == 8) n += std::snprintf(line + n, sizeof line - static_cast<std::size_t>(n), " ");
      if (at + i < size) {
        auto c = static_cast<unsigned char>(data[at + i]);
        n += std::snprintf(line + n, sizeof line - static_cast<std::size_t>(n), " %02x", c);
        ascii += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '.';
      } else {
        n += std::snprintf(line + n, sizeof line - static_cast<std::size_t>(n), "   ");
      }
    }
    std::printf("%s  |%s|\n", line, ascii.c_str());
  }
}

// The backend of queue `name`: --backend, or the one backend that has such a queue.
pipc::backend queue_backend(const std::string& op, const mq_options_cli& o) {
  if (!o.backend.empty()) return *parse_backend(o.backend);
  check_name_or_fail(op, o.name, pipc::name_kind::engine_queue);
  auto found = queue_backends_of(o.name);
  if (found.empty()) fail(op + " " + quote_name(o.name) + ": no such message queue");
  if (found.size() > 1) {
    fail(op + " " + quote_name(o.name) + ": both an engine queue and a kernel queue have this name; say which with "
         "--backend shm|kernel", exit_usage);
  }
  return found.front();
}

pipc::message_queue open_queue(const std::string& op, const mq_options_cli& o, pipc::access how) {
  pipc::mq_options opt;
  opt.backend = queue_backend(op, o);
  opt.access = how;
  check_name_or_fail(op, o.name, pipc::name_kind_for(opt.backend));
  std::error_code ec;
  auto q = pipc::message_queue::open(o.name, pipc::open_mode::open_only, opt, ec);
  if (ec) fail(op, o.name, ec, "message queue");
  return q;
}

void print_message(const mq_options_cli& o, const std::byte* data, const pipc::received& r) {
  if (o.raw) {
    write_stdout(data, r.size);
    return;
  }
  if (o.hex) {
    std::printf("[%u] %zu bytes\n", r.priority, r.size);
    hex_dump(data, r.size, 0);
  } else {
    std::printf("[%u] %s\n", r.priority, escape({reinterpret_cast<const char*>(data), r.size}).c_str());
  }
  std::fflush(stdout);
}

}  // namespace

int run_mq_create(const mq_options_cli& o) {
  pipc::mq_options opt;
  opt.backend = o.backend.empty() ? pipc::backend::shm : *parse_backend(o.backend);
  check_name_or_fail("mq create", o.name, pipc::name_kind_for(opt.backend));
  opt.max_messages = o.max_messages;
  opt.message_size = static_cast<long>(parse_size(o.message_size, "--message-size"));
  opt.permissions = mode_or_default(o.mode);
  try {
    exact_mode m(!o.mode.empty());
    (void)pipc::message_queue::open(o.name, pipc::open_mode::create_only, opt);
  } catch (const std::system_error& e) {
    // For EINVAL the library's message names the limit that was exceeded; keep it.
    if (e.code() == std::errc::invalid_argument) fail(std::string("mq create: ") + e.what());
    fail("mq create", o.name, e.code(), "message queue");
  }
  return exit_ok;
}

int run_mq_send(const mq_options_cli& o) {
  std::optional<std::chrono::nanoseconds> timeout;
  if (!o.timeout.empty()) timeout = parse_duration(o.timeout, "--timeout");
  auto q = open_queue("mq send", o, pipc::access::write_only);
  std::vector<std::string> messages;
  const bool from_stdin = o.messages.empty() || (o.messages.size() == 1 && o.messages[0] == "-");
  if (from_stdin) {
    std::string all = read_stdin();
    if (o.lines) {
      std::size_t at = 0;
      while (at < all.size()) {
        std::size_t nl = all.find('\n', at);
        if (nl == std::string::npos) nl = all.size();
        messages.push_back(all.substr(at, nl - at));
        at = nl + 1;
      }
    } else {
      messages.push_back(std::move(all));
    }
  } else {
    messages = o.messages;
  }
  const long limit = q.attributes().message_size;
  for (const std::string& m : messages) {
    if (static_cast<long>(m.size()) > limit) {
      fail("mq send " + quote_name(o.name) + ": a message of " + std::to_string(m.size()) +
           " bytes exceeds the queue's message size (" + std::to_string(limit) + " bytes)");
    }
    std::error_code ec;
    bool sent = true;
    if (timeout) {
      sent = q.send_for(pipc::as_bytes(m), o.priority, *timeout, ec);
    } else {
      q.send(pipc::as_bytes(m), o.priority, ec);
    }
    if (ec) fail("mq send", o.name, ec, "message queue");
    if (!sent) fail("mq send " + quote_name(o.name) + ": timed out after " + format_duration(*timeout) + " (the queue is full)");
  }
  return exit_ok;
}

int run_mq_recv(const mq_options_cli& o) {
  std::optional<std::chrono::nanoseconds> timeout;
  if (!o.timeout.empty()) timeout = parse_duration(o.timeout, "--timeout");
  auto q = open_queue("mq recv", o, pipc::access::read_only);
  std::vector<std::byte> buf(static_cast<std::size_t>(q.attributes().message_size));
  long got = 0;
  while (o.follow || got < o.count) {
    std::error_code ec;
    std::optional<pipc::received> r;
    if (timeout) {
      r = q.receive_for(buf, *timeout, ec);
    } else {
      r = q.receive(buf, ec);
    }
    if (ec) fail("mq recv", o.name, ec, "message queue");
    if (!r) {
      if (o.follow) break;  // idle for the whole timeout: done
      std::string msg = "mq recv " + quote_name(o.name) + ": timed out after " + format_duration(*timeout) +
                        " (the queue is empty)";
      if (got > 0) msg += "; received " + std::to_string(got) + " of " + std::to_string(o.count);
      fail(msg);
    }
    print_message(o, buf.data(), *r);
    ++got;
  }
  return exit_ok;
}

int run_mq_attr(const mq_options_cli& o) {
  auto q = open_queue("mq attr", o, pipc::access::read_only);
  if (!o.nonblocking.empty()) q.set_nonblocking(o.nonblocking == "on");
  const pipc::mq_attributes a = q.attributes();
  if (o.json) {
    nlohmann::json j{{"name", o.name},
                     {"backend", pipc::to_string(q.backend())},
                     {"max_messages", a.max_messages},
                     {"message_size", a.message_size},
                     {"current_messages", a.current_messages},
                     {"nonblocking", a.nonblocking}};
    std::cout << j.dump(2) << '\n';
    return exit_ok;
  }
  std::printf("max_messages      %ld\n", a.max_messages);
  std::printf("message_size      %ld\n", a.message_size);
  std::printf("current_messages  %ld\n", a.current_messages);
  std::printf("nonblocking       %s (this command's open description)\n", a.nonblocking ? "on" : "off");
  return exit_ok;
}

namespace {
pipc::named_semaphore open_semaphore(const std::string& op, const std::string& name) {
  check_name_or_fail(op, name, pipc::name_kind::semaphore);
  std::error_code ec;
  auto s = pipc::named_semaphore::open(name, pipc::open_mode::open_only, 0, 0, ec);
  if (ec) fail(op, name, ec, "semaphore");
  return s;
}
}  // namespace

int run_sem_create(const sem_options_cli& o) {
  check_name_or_fail("sem create", o.name, pipc::name_kind::semaphore);
  std::error_code ec;
  {
    exact_mode m(!o.mode.empty());
    (void)pipc::named_semaphore::open(o.name, pipc::open_mode::create_only, o.value, mode_or_default(o.mode), ec);
  }
  if (ec) fail("sem create", o.name, ec, "semaphore");
  return exit_ok;
}

int run_sem_post(const sem_options_cli& o) {
  auto s = open_semaphore("sem post", o.name);
  std::error_code ec;
  s.post(ec);
  if (ec) fail("sem post", o.name, ec, "semaphore");
  return exit_ok;
}

int run_sem_wait(const sem_options_cli& o) {
  if (!o.timeout.empty()) (void)parse_duration(o.timeout, "--timeout");  // a usage error before anything else
  auto s = open_semaphore("sem wait", o.name);
  std::error_code ec;
  if (o.timeout.empty()) {
    s.wait(ec);
  } else {
    const auto t = parse_duration(o.timeout, "--timeout");
    if (!s.wait_for(t, ec) && !ec) fail("sem wait " + quote_name(o.name) + ": timed out after " + format_duration(t));
  }
  if (ec) fail("sem wait", o.name, ec, "semaphore");
  return exit_ok;
}

int run_sem_get(const sem_options_cli& o) {
  auto s = open_semaphore("sem get", o.name);
  std::error_code ec;
  int v = s.value(ec);
  if (ec) fail("sem get", o.name, ec, "semaphore");
  std::printf("%d\n", v);
  return exit_ok;
}

namespace {
pipc::shared_memory open_shm(const std::string& op, const std::string& name, pipc::access how) {
  check_name_or_fail(op, name, pipc::name_kind::shared_memory);
  std::error_code ec;
  auto s = pipc::shared_memory::open(name, pipc::open_mode::open_only, how, 0, ec);
  if (ec) fail(op, name, ec, "shared memory object");
  return s;
}
}  // namespace

int run_shm_create(const shm_options_cli& o) {
  check_name_or_fail("shm create", o.name, pipc::name_kind::shared_memory);
  const std::uint64_t size = parse_size(o.size, "--size");
  std::error_code ec;
  pipc::shared_memory s;
  {
    exact_mode m(!o.mode.empty());
    s = pipc::shared_memory::open(o.name, pipc::open_mode::create_only, pipc::access::read_write,
                                  mode_or_default(o.mode), ec);
  }
  if (ec) fail("shm create", o.name, ec, "shared memory object");
  s.resize(size, ec);
  if (ec) {
    pipc::shared_memory::unlink(o.name, ec);
    fail("shm create", o.name, ec, "shared memory object");
  }
  return exit_ok;
}

int run_shm_resize(const shm_options_cli& o) {
  const std::uint64_t size = parse_size(o.size, "size");
  auto s = open_shm("shm resize", o.name, pipc::access::read_write);
  std::error_code ec;
  s.resize(size, ec);
  if (ec) fail("shm resize", o.name, ec, "shared memory object");
  return exit_ok;
}

int run_shm_cat(const shm_options_cli& o) {
  const std::uint64_t offset = parse_size(o.offset, "--offset");
  if (!o.length.empty()) (void)parse_size(o.length, "--length");
  auto s = open_shm("shm cat", o.name, pipc::access::read_only);
  const std::uint64_t size = s.size();
  if (offset > size) {
    fail("shm cat " + quote_name(o.name) + ": offset " + std::to_string(offset) + " is beyond its size (" +
         std::to_string(size) + " bytes)");
  }
  std::uint64_t length = size - offset;
  if (!o.length.empty()) length = std::min(length, parse_size(o.length, "--length"));
  if (length == 0) return exit_ok;
  std::error_code ec;
  auto m = s.map(pipc::access::read_only, offset, length, ec);
  if (ec) fail("shm cat", o.name, ec, "shared memory object");
  // The bytes may change under us (another process writes them): a copy is what is shown.
  std::vector<std::byte> copy(m.data(), m.data() + m.size());
  if (o.hex) {
    hex_dump(copy.data(), copy.size(), offset);
  } else {
    write_stdout(copy.data(), copy.size());
  }
  return exit_ok;
}

int run_shm_write(const shm_options_cli& o) {
  const std::uint64_t offset = parse_size(o.offset, "--offset");
  auto s = open_shm("shm write", o.name, pipc::access::read_write);
  const std::string data = read_stdin();
  if (data.empty()) return exit_ok;
  std::error_code ec;
  const std::uint64_t size = s.size(ec);
  if (ec) fail("shm write", o.name, ec, "shared memory object");
  if (offset + data.size() > size) {
    s.resize(offset + data.size(), ec);  // grows it, as writing past a file's end does
    if (ec) fail("shm write", o.name, ec, "shared memory object");
  }
  auto m = s.map(pipc::access::read_write, offset, data.size(), ec);
  if (ec) fail("shm write", o.name, ec, "shared memory object");
  std::memcpy(m.data(), data.data(), data.size());
  return exit_ok;
}

}  // namespace pipc_tool
