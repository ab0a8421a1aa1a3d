#include "sys/fault_guard.hpp"

#include "sys/sys.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <new>

namespace pipc::sys {
namespace {

using detail::guard_slot;

// The registry: a static chunk, then heap chunks appended by CAS and never freed, so
// that the handler can walk it at any moment without a lock.
constexpr std::size_t kSlotsPerChunk = 64;
struct guard_chunk {
  guard_slot slots[kSlotsPerChunk];
  std::atomic<guard_chunk*> next{nullptr};
};
guard_chunk first_chunk;

// Written once, before the handler is installed (release on `installed`); read by the
// handler after an acquire load of `installed`.
struct sigaction previous_action;
std::atomic<bool> installed{false};
std::atomic<std::uintptr_t> page_mask{0};  // ~(page size - 1)
pthread_once_t install_once = PTHREAD_ONCE_INIT;
int install_error = 0;

void on_sigbus(int signo, siginfo_t* info, void* context);

void install() noexcept {
  page_mask.store(~(static_cast<std::uintptr_t>(page_size()) - 1), std::memory_order_relaxed);
  // Read the disposition first and publish it, then install: the handler must never run
  // without knowing where foreign faults go. (An application that changes SIGBUS on
  // another thread between the two calls races with pipc; its change is lost.)
  if (::sigaction(SIGBUS, nullptr, &previous_action) != 0) {
    install_error = errno;
    return;
  }
  struct sigaction ours {};
  ours.sa_sigaction = on_sigbus;
  sigemptyset(&ours.sa_mask);
  // SA_ONSTACK: a thread with an alternate signal stack keeps using it, as the chained
  // handler may expect. SA_RESTART follows the previous handler (and is set if there
  // was none): installing pipc's handler must not change which system calls a SIGBUS
  // handler interrupts.
  bool previous_is_function = (previous_action.sa_flags & SA_SIGINFO) != 0 ||
                              (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN);
  ours.sa_flags = SA_SIGINFO | SA_ONSTACK | (previous_is_function ? previous_action.sa_flags & SA_RESTART : SA_RESTART);
  installed.store(true, std::memory_order_release);
  if (::sigaction(SIGBUS, &ours, nullptr) != 0) {
    install_error = errno;
    installed.store(false, std::memory_order_relaxed);
  }
}

// ---- the handler (async-signal-safe from here to its end) ----

// mmap without the C library, whose mmap a sanitizer intercepts (and may lock in).
void* raw_mmap_fixed(std::uintptr_t addr, std::size_t length, int prot) noexcept {
#if defined(SYS_mmap)
  long r = ::syscall(SYS_mmap, addr, length, prot, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0L);
  return r == -1 ? MAP_FAILED : reinterpret_cast<void*>(r);
#else
  return ::mmap(reinterpret_cast<void*>(addr), length, prot, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
#endif
}

// Zero pages over [page of addr, end) of every registered region that contains addr.
// True if addr was in one and its pages are replaced.
bool repair(std::uintptr_t addr) noexcept {
  std::uintptr_t mask = page_mask.load(std::memory_order_relaxed);
  bool repaired = false;
  for (guard_chunk* c = &first_chunk; c != nullptr; c = c->next.load(std::memory_order_acquire)) {
    for (guard_slot& s : c->slots) {
      std::uint64_t before = s.seq.load(std::memory_order_acquire);
      if ((before & 1) != 0) continue;  // being registered or unregistered
      // Acquire loads rather than a fence (which ThreadSanitizer does not model): the
      // second look at seq below cannot move before them.
      std::uintptr_t begin = s.begin.load(std::memory_order_acquire);
      std::uintptr_t end = s.end.load(std::memory_order_acquire);
      bool writable = s.writable.load(std::memory_order_acquire) != 0;
      if (s.seq.load(std::memory_order_relaxed) != before) continue;
      if (addr < begin || addr >= end) continue;
      // The flag first: a thread that later reads the zero pages without faulting (they
      // are already replaced) must find it set.
      s.faulted.store(1, std::memory_order_seq_cst);
      std::uintptr_t page = addr & mask;
      int prot = PROT_READ | (writable ? PROT_WRITE : 0);
      // The whole rest of the region, so that one fault is enough; failing that (the
      // process's map count at its limit), the one page.
      if (raw_mmap_fixed(page, end - page, prot) != MAP_FAILED ||
          raw_mmap_fixed(page, ~mask + 1, prot) != MAP_FAILED) {
        repaired = true;
      }
    }
  }
  return repaired;
}

void resend(int signo) noexcept {
  ::syscall(SYS_tgkill, static_cast<long>(::getpid()), static_cast<long>(::syscall(SYS_gettid)), signo);
}

// A fault that is not pipc's: what would have happened without pipc.
void chain(int signo, siginfo_t* info, void* context) noexcept {
  const struct sigaction& prev = previous_action;
  bool fault = info != nullptr && info->si_code > 0;  // from the kernel, not kill/sigqueue
  if ((prev.sa_flags & SA_SIGINFO) == 0 && (prev.sa_handler == SIG_DFL || prev.sa_handler == SIG_IGN)) {
    if (prev.sa_handler == SIG_IGN && !fault) return;
    // The default action. A fault re-executes on return and is delivered again, now
    // fatal (with a core, at the right address); a sent signal is sent again, blocked
    // until this handler returns.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(signo, &dfl, nullptr);
    if (!fault) resend(signo);
    return;
  }
  sigset_t old;
  ::pthread_sigmask(SIG_BLOCK, &prev.sa_mask, &old);
  if ((prev.sa_flags & SA_SIGINFO) != 0) {
    prev.sa_sigaction(signo, info, context);
  } else {
    prev.sa_handler(signo);
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void on_sigbus(int signo, siginfo_t* info, void* context) {
  int saved_errno = errno;
  // Pairs with the release in install(): previous_action is complete.
  (void)installed.load(std::memory_order_acquire);
  bool fault = info != nullptr && info->si_code > 0;
  if (!(fault && repair(reinterpret_cast<std::uintptr_t>(info->si_addr)))) chain(signo, info, context);
  errno = saved_errno;
}

// ---- registration ----

// Claims a free slot of c, or returns null.
guard_slot* claim_in(guard_chunk& c) noexcept {
  for (guard_slot& s : c.slots) {
    std::uint32_t expected = 0;
    if (s.used.load(std::memory_order_relaxed) == 0 &&
        s.used.compare_exchange_strong(expected, 1, std::memory_order_acquire, std::memory_order_relaxed)) {
      return &s;
    }
  }
  return nullptr;
}

guard_slot* claim() noexcept {
  for (;;) {
    guard_chunk* last = &first_chunk;
    for (guard_chunk* c = &first_chunk; c != nullptr; c = c->next.load(std::memory_order_acquire)) {
      if (guard_slot* s = claim_in(*c)) return s;
      last = c;
    }
    auto* fresh = new (std::nothrow) guard_chunk;
    if (fresh == nullptr) return nullptr;
    fresh->slots[0].used.store(1, std::memory_order_relaxed);
    guard_chunk* expected = nullptr;
    if (last->next.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) return &fresh->slots[0];
    delete fresh;  // another thread appended first: look again
  }
}

}  // namespace

int guard_region(void* base, std::size_t length, bool writable, guard_id& id) noexcept {
  id.slot = nullptr;
  auto begin = reinterpret_cast<std::uintptr_t>(base);
  auto page = static_cast<std::uintptr_t>(page_size());
  if (base == nullptr || length == 0 || (begin & (page - 1)) != 0 || length > UINTPTR_MAX - begin - page) {
    return EINVAL;
  }
  ::pthread_once(&install_once, install);
  if (install_error != 0) return install_error;
  guard_slot* s = claim();
  if (s == nullptr) return ENOMEM;
  std::uintptr_t end = begin + ((length + page - 1) & ~(page - 1));
  s->faulted.store(0, std::memory_order_relaxed);
  std::uint64_t seq = s->seq.load(std::memory_order_relaxed);
  s->seq.store(seq + 1, std::memory_order_relaxed);
  // Release stores rather than a fence: the odd seq above cannot move after them.
  s->begin.store(begin, std::memory_order_release);
  s->end.store(end, std::memory_order_release);
  s->writable.store(writable ? 1 : 0, std::memory_order_release);
  s->seq.store(seq + 2, std::memory_order_release);
  id.slot = s;
  return 0;
}

void unguard_region(guard_id& id) noexcept {
  guard_slot* s = id.slot;
  if (s == nullptr) return;
  std::uint64_t seq = s->seq.load(std::memory_order_relaxed);
  s->seq.store(seq + 1, std::memory_order_relaxed);
  s->begin.store(0, std::memory_order_release);
  s->end.store(0, std::memory_order_release);
  s->writable.store(0, std::memory_order_release);
  s->seq.store(seq + 2, std::memory_order_release);
  s->used.store(0, std::memory_order_release);
  id.slot = nullptr;
}

bool fd_size_at_least(int fd, std::size_t length) noexcept {
  struct ::stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size < 0) return false;
  return static_cast<std::uintmax_t>(st.st_size) >= length;
}

bool fault_handler_installed() noexcept {
  if (!installed.load(std::memory_order_acquire)) return false;
  struct sigaction current {};
  if (::sigaction(SIGBUS, nullptr, &current) != 0) return false;
  return (current.sa_flags & SA_SIGINFO) != 0 && current.sa_sigaction == on_sigbus;
}

}  // namespace pipc::sys
