#include <pipc/semaphore.hpp>

#include "error_util.hpp"
#include "sys/sys.hpp"

#include <fcntl.h>

#include <climits>
#include <utility>

namespace pipc {

using detail::errno_code;

namespace {
std::string value_too_large(unsigned initial) {
  return "initial value " + std::to_string(initial) + " exceeds SEM_VALUE_MAX (" + std::to_string(SEM_VALUE_MAX) + ")";
}
}  // namespace

// ---- the operations both kinds share ----

namespace detail {

int sem_post(sem_t* s) noexcept { return s == nullptr ? EINVAL : sys::sem_post(s); }

int sem_wait(sem_t* s, const deadline* until) noexcept {
  if (s == nullptr) return EINVAL;
  if (until == nullptr) {
    int e;
    do {
      e = sys::sem_wait(s);
    } while (e == EINTR);
    return e;
  }
  // sem_clockwait takes an absolute time on the deadline's own clock, so a retry after
  // EINTR keeps the original deadline with no arithmetic.
  timespec abs = sys::to_timespec(until->ns);
  int e;
  do {
    e = sys::sem_clockwait(s, until->clock, abs);
  } while (e == EINTR);
  return e;
}

int sem_try_wait(sem_t* s) noexcept {
  if (s == nullptr) return EINVAL;
  int e;
  do {
    e = sys::sem_trywait(s);
  } while (e == EINTR);
  return e;
}

int sem_value(sem_t* s, int& value) noexcept { return s == nullptr ? EINVAL : sys::sem_getvalue(s, value); }

}  // namespace detail

// ---- named_semaphore ----

named_semaphore::named_semaphore(named_semaphore&& other) noexcept
    : sem_(std::exchange(other.sem_, nullptr)), name_(std::move(other.name_)) {}

named_semaphore& named_semaphore::operator=(named_semaphore&& other) noexcept {
  if (this != &other) {
    close();
    sem_ = std::exchange(other.sem_, nullptr);
    name_ = std::move(other.name_);
  }
  return *this;
}

named_semaphore::~named_semaphore() { close(); }

void named_semaphore::close() noexcept {
  if (sem_ != nullptr) {
    sys::sem_close(sem_);
    sem_ = nullptr;
  }
}

named_semaphore named_semaphore::open(std::string_view name, open_mode mode, unsigned initial, mode_t perms,
                                      std::error_code& ec) noexcept {
  ec = check_name(name, name_kind::semaphore);
  if (ec) return {};
  int flags = 0;
  if (mode == open_mode::create_only) flags = O_CREAT | O_EXCL;
  if (mode == open_mode::open_or_create) flags = O_CREAT;
  if (flags != 0 && initial > static_cast<unsigned>(SEM_VALUE_MAX)) {
    ec = errno_code(EINVAL);
    return {};
  }
  named_semaphore s;
  s.name_ = std::string(name);
  ec = errno_code(sys::sem_open(s.name_.c_str(), flags, perms, initial, s.sem_));
  if (ec) return {};
  return s;
}

named_semaphore named_semaphore::open(std::string_view name, open_mode mode, unsigned initial, mode_t perms) {
  std::error_code ec;
  named_semaphore s = open(name, mode, initial, perms, ec);
  if (ec) {
    bool name_ok = !check_name(name, name_kind::semaphore);
    detail::throw_error(ec, "sem_open", name, name_kind::semaphore,
                        name_ok && ec == std::errc::invalid_argument ? value_too_large(initial) : std::string());
  }
  return s;
}

void named_semaphore::unlink(std::string_view name, std::error_code& ec) noexcept {
  ec = check_name(name, name_kind::semaphore);
  if (ec) return;
  ec = errno_code(sys::sem_unlink(std::string(name).c_str()));
}

void named_semaphore::unlink(std::string_view name) {
  std::error_code ec;
  unlink(name, ec);
  if (ec) detail::throw_error(ec, "sem_unlink", name, name_kind::semaphore);
}

void named_semaphore::fail(const char* op, int err) const {
  detail::throw_error(errno_code(err), op, name_, name_kind::semaphore);
}

// ---- semaphore (unnamed) ----

namespace {
int init_unnamed(sem_t* sem, unsigned initial, sharing who) noexcept {
  if (initial > static_cast<unsigned>(SEM_VALUE_MAX)) return EINVAL;
  return sys::sem_init(sem, who == sharing::processes, initial);
}
}  // namespace

semaphore::semaphore(unsigned initial, sharing who, std::error_code& ec) noexcept : sem_{} {
  ec = errno_code(init_unnamed(&sem_, initial, who));
  initialised_ = !ec;
}

semaphore::semaphore(unsigned initial, sharing who) : sem_{} {
  int e = init_unnamed(&sem_, initial, who);
  if (e != 0) {
    detail::throw_unnamed_error(errno_code(e), "sem_init", e == EINVAL ? value_too_large(initial) : std::string());
  }
  initialised_ = true;
}

semaphore::~semaphore() {
  if (initialised_) sys::sem_destroy(&sem_);
}

void semaphore::fail(const char* op, int err) const {
  detail::throw_unnamed_error(errno_code(err), op);
}

}  // namespace pipc
