// Fault guard: truncation of a shared mapping is an error, never a crash.
//
// Any process that may write a queue file may also ftruncate it, and a tmpfs that runs
// out of memory leaves holes; a process that then touches its mapping past the file's
// new end gets SIGBUS. A *guarded region* is a shared mapping that pipc registered
// here. pipc's SIGBUS handler recognises a fault inside a guarded region, maps private
// zero pages over the region from the faulting page to its end (MAP_FIXED), sets the
// region's sticky `faulted` flag and returns: the faulting instruction runs again and
// reads zeros (a write lands in the private page and is lost). One fault per region is
// enough; every later access of the lost range reads zeros without a signal. The pages
// before the faulting one stay shared, so that a lock word in a header can still be
// released to the other processes. The owner of the region checks region_faulted()
// after its reads and fails the operation (pipc::errc::corrupt_state).
//
// What it protects: user-space loads and stores (including those inside libc, such as
// memcpy) of this process in guarded regions, on any thread whose signal mask leaves
// SIGBUS unblocked. sys::thread_start keeps SIGBUS unblocked in pipc's helper threads
// for this reason: a synchronous SIGBUS that is blocked kills the process whatever the
// handler. What it does not protect: a system call that is handed an address beyond
// the file's end fails with EFAULT instead (futex_wait, read, write) and sets no flag:
// treat EFAULT from such a call as corruption too. A thread already asleep in
// futex_wait on a word of the lost range is not woken by anything.
//
// Foreign faults (an address in no guarded region, or a SIGBUS sent with kill) go to
// the disposition that SIGBUS had when pipc installed its handler: a function is
// called with the same arguments (sa_sigaction or sa_handler per its SA_SIGINFO, with
// its sa_mask blocked meanwhile); SIG_DFL, and SIG_IGN for a fault (the kernel does not
// let a fault be ignored), restore the default action and re-raise, so the process dies
// of SIGBUS with a core as it would have without pipc. The handler is installed once
// per process, at the first guard_region, so it comes after any handler installed
// before main (AddressSanitizer's, ThreadSanitizer's). An application that installs a
// SIGBUS handler after that must chain to the previous one (sigaction's `oldact`), as
// pipc does, or guarded regions lose their protection.
//
// Async-signal-safety: the handler makes only the system calls mmap, rt_sigprocmask,
// rt_sigaction, getpid, gettid and tgkill (mmap as a raw system call, past the
// sanitizers' interceptors), keeps errno, takes no lock and allocates nothing. It reads a
// registry of slots that it can walk without locks: a static chunk of slots and a list
// of heap chunks that grows and never shrinks; a slot is claimed by a CAS and its range
// is published under a sequence counter (odd while written), so that the handler never
// matches a half-written range.
//
// Invariants (the caller's duties):
//  1. A region is registered after it is mapped and before any thread accesses it, and
//     unregistered (unguard_region) before munmap, when no thread accesses it any more
//     (the precondition of munmap itself). So no handler can be matching a slot while
//     its range is freed and the address range mapped again by someone else: the
//     handler never writes over a mapping that is not pipc's.
//  2. Regions are page-aligned (mmap returns such addresses); their length is rounded
//     up to whole pages, which is what the mapping covers.
//  3. The faulted flag of an id is read only between guard_region and unguard_region:
//     afterwards the slot belongs to somebody else.
//
// Any kernel-raised SIGBUS at an address in a guarded region counts as a fault of the
// region: truncation and tmpfs holes (BUS_ADRERR), and also a hardware memory error in
// one of its pages (BUS_MCEERR_AR), which is as much lost data.
//
// The handler is code of pipc: a process that loads pipc as a plugin must not dlclose it
// after the first guard_region (the disposition would point into unmapped code).
//
// Thread-safety: guard_region, unguard_region and region_faulted may be called from
// any thread at any time, concurrently with faults on other threads.
#ifndef PIPC_SRC_SYS_FAULT_GUARD_HPP
#define PIPC_SRC_SYS_FAULT_GUARD_HPP

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace pipc::sys {

namespace detail {
// One registry entry. Process-local memory: the shared region itself holds nothing of it.
struct guard_slot {
  std::atomic<std::uint32_t> used{0};     // 0 free, 1 owned (claimed by CAS)
  std::atomic<std::uint32_t> faulted{0};  // sticky: set by the handler, cleared on claim
  std::atomic<std::uint64_t> seq{0};      // odd while begin/end/writable are written
  std::atomic<std::uintptr_t> begin{0};   // [begin, end): the region, whole pages
  std::atomic<std::uintptr_t> end{0};     // 0 while free
  std::atomic<std::uint32_t> writable{0}; // the zero pages are PROT_READ|PROT_WRITE if 1
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uintptr_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
}  // namespace detail

// A registered region. Valid from guard_region until unguard_region; copyable, but
// only one copy may be passed to unguard_region.
struct guard_id {
  detail::guard_slot* slot = nullptr;
  explicit operator bool() const noexcept { return slot != nullptr; }
};

// Registers [base, base + length) (rounded up to whole pages) as a guarded region and,
// the first time, installs the SIGBUS handler. `writable`: whether the mapping is
// PROT_WRITE (the zero pages get the same protection, so that a write to a read-only
// region still faults with SIGSEGV).
// Requires: base is page-aligned and mapped; length > 0.
// Returns 0, EINVAL (a null or unaligned base, a zero length), ENOMEM (no memory for
// one more chunk of slots) or the errno of sigaction.
int guard_region(void* base, std::size_t length, bool writable, guard_id& id) noexcept;

// Unregisters a region (before munmap; see invariant 1) and resets `id`. A null id is
// ignored.
void unguard_region(guard_id& id) noexcept;

// Has any access of this process to the region faulted since guard_region? One relaxed
// load of a process-local word: cheap enough for every operation. Check it after the
// operation's reads of the region (and before trusting them).
// Requires: id is registered (invariant 3).
inline bool region_faulted(guard_id id) noexcept {
  return id.slot->faulted.load(std::memory_order_relaxed) != 0;
}

// The flag itself, for code that keeps the pointer beside the region's base.
// Requires: id is registered; the pointer is not used after unguard_region.
inline const std::atomic<std::uint32_t>* faulted_flag(guard_id id) noexcept { return &id.slot->faulted; }

// Does fd's file have at least `length` bytes now? For a re-open that reuses a
// mapping: a file shorter than its mapping is corrupt. False also if fstat fails.
bool fd_size_at_least(int fd, std::size_t length) noexcept;

// Is pipc's SIGBUS handler the current disposition of SIGBUS? False before the first
// guard_region, or if somebody replaced it since (the regions are then unprotected).
bool fault_handler_installed() noexcept;

}  // namespace pipc::sys

#endif  // PIPC_SRC_SYS_FAULT_GUARD_HPP
