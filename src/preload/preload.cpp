// libpipc-preload.so: glibc's message-queue functions, defined here as calls of pipc's
// C API, so that `LD_PRELOAD=libpipc-preload.so prog` runs a program built against
// <mqueue.h> on pipc's engine without recompiling it (docs/c-api.md, "Running
// unmodified programs").
//
// The dynamic linker looks a preloaded library up before libc, so the program's
// mq_open (whichever glibc version it was linked against: preload.map) lands here.
// Each function converts what differs between the two APIs (struct mq_attr has four
// more padding words than struct pipc_mq_attr) and passes everything else through:
// return values and errno are pipc_mq_*'s, and the blocking calls stay cancellation
// points, because nothing here is noexcept that glibc does not declare so.
//
// glibc's <mqueue.h> is included so that the compiler checks every definition below
// against glibc's own declaration. Its _FORTIFY_SOURCE inline mq_open must stay out.
#undef _FORTIFY_SOURCE

#include <mqueue.h>
#include <pipc/c/mqueue.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

static_assert(std::is_same_v<mqd_t, pipc_mqd_t>, "descriptors pass through unchanged");

extern "C" {
// Exported by glibc but declared by no header that is included here: the target of
// _FORTIFY_SOURCE's two-argument mq_open (bits/mqueue2.h), and the system call that
// Linux's mq_getattr and mq_setattr are made of.
mqd_t __mq_open_2(const char* name, int oflag) noexcept;
int mq_getsetattr(mqd_t mqdes, const struct mq_attr* mqstat, struct mq_attr* omqstat) noexcept;
}

namespace {

pipc_mq_attr to_pipc(const mq_attr& a) noexcept {
  pipc_mq_attr p{};
  p.mq_flags = a.mq_flags;
  p.mq_maxmsg = a.mq_maxmsg;
  p.mq_msgsize = a.mq_msgsize;
  p.mq_curmsgs = a.mq_curmsgs;
  return p;
}

// As the kernel fills it: the four fields, and zero in the padding.
void to_glibc(const pipc_mq_attr& p, mq_attr& a) noexcept {
  a = mq_attr{};
  a.mq_flags = p.mq_flags;
  a.mq_maxmsg = p.mq_maxmsg;
  a.mq_msgsize = p.mq_msgsize;
  a.mq_curmsgs = p.mq_curmsgs;
}

// Linux's descriptors poll readable and writable as the queue is; pipc's do once
// pipc_mq_pollable was called on them, which an unmodified program cannot do. So every
// descriptor is made pollable here, unless $PIPC_MQ_POLLABLE is "0" (read once): the
// price is a wake-up of a helper thread in every send and receive on the queue
// (docs/c-api.md, "Descriptors").
bool pollable() noexcept {
  static const bool value = [] {
    const char* text = std::getenv("PIPC_MQ_POLLABLE");
    return text == nullptr || std::strcmp(text, "0") != 0;
  }();
  return value;
}

// A descriptor that pipc_mq_open returned, made pollable; -1 and errno if that fails.
mqd_t opened(mqd_t d) noexcept {
  if (d == -1 || !pollable() || pipc_mq_pollable(d) == 0) return d;
  int e = errno;
  pipc_mq_close(d);
  errno = e;
  return -1;
}

// glibc declares some of these pointers nonnull, but a program may pass null all the
// same: the checks are in these helpers, whose parameters carry no such promise, and
// the target compiles with -fno-delete-null-pointer-checks so that they stay after
// inlining.

int getattr(mqd_t mqdes, mq_attr* mqstat) noexcept {
  if (mqstat == nullptr) return pipc_mq_getattr(mqdes, nullptr);  // EBADF or EINVAL
  pipc_mq_attr out{};
  int rc = pipc_mq_getattr(mqdes, &out);
  if (rc == 0) to_glibc(out, *mqstat);
  return rc;
}

// mq_setattr and mq_getsetattr, which are the same on Linux: a null mqstat only reads.
int getsetattr(mqd_t mqdes, const mq_attr* mqstat, mq_attr* omqstat) noexcept {
  pipc_mq_attr in{};
  pipc_mq_attr out{};
  if (mqstat != nullptr) in = to_pipc(*mqstat);
  int rc = pipc_mq_setattr(mqdes, mqstat != nullptr ? &in : nullptr, omqstat != nullptr ? &out : nullptr);
  if (rc == 0 && omqstat != nullptr) to_glibc(out, *omqstat);
  return rc;
}

}  // namespace

extern "C" {

mqd_t mq_open(const char* name, int oflag, ...) noexcept {
  if ((oflag & O_CREAT) == 0) return opened(pipc_mq_open(name, oflag));
  va_list ap;
  va_start(ap, oflag);
  mode_t mode = va_arg(ap, mode_t);
  const mq_attr* attr = va_arg(ap, const mq_attr*);
  va_end(ap);
  if (attr == nullptr) return opened(pipc_mq_open(name, oflag, mode, static_cast<const pipc_mq_attr*>(nullptr)));
  pipc_mq_attr converted = to_pipc(*attr);
  return opened(pipc_mq_open(name, oflag, mode, &converted));
}

// As glibc's: the fortified two-argument mq_open; O_CREAT there is a program bug.
mqd_t __mq_open_2(const char* name, int oflag) noexcept {
  if ((oflag & O_CREAT) != 0) {
    std::fputs("*** invalid mq_open call: O_CREAT without mode and attr ***: terminated\n", stderr);
    std::abort();
  }
  return opened(pipc_mq_open(name, oflag));
}

int mq_close(mqd_t mqdes) noexcept { return pipc_mq_close(mqdes); }

int mq_unlink(const char* name) noexcept { return pipc_mq_unlink(name); }

int mq_getattr(mqd_t mqdes, mq_attr* mqstat) noexcept { return getattr(mqdes, mqstat); }

int mq_setattr(mqd_t mqdes, const mq_attr* __restrict mqstat, mq_attr* __restrict omqstat) noexcept {
  return getsetattr(mqdes, mqstat, omqstat);
}

int mq_getsetattr(mqd_t mqdes, const mq_attr* mqstat, mq_attr* omqstat) noexcept {
  return getsetattr(mqdes, mqstat, omqstat);
}

int mq_notify(mqd_t mqdes, const sigevent* notification) noexcept { return pipc_mq_notify(mqdes, notification); }

// The blocking calls: cancellation points, so not noexcept (a thread cancelled inside
// one unwinds through it).
ssize_t mq_receive(mqd_t mqdes, char* msg_ptr, size_t msg_len, unsigned* msg_prio) {
  return pipc_mq_receive(mqdes, msg_ptr, msg_len, msg_prio);
}

int mq_send(mqd_t mqdes, const char* msg_ptr, size_t msg_len, unsigned msg_prio) {
  return pipc_mq_send(mqdes, msg_ptr, msg_len, msg_prio);
}

ssize_t mq_timedreceive(mqd_t mqdes, char* __restrict msg_ptr, size_t msg_len, unsigned* __restrict msg_prio,
                        const timespec* __restrict abs_timeout) {
  return pipc_mq_timedreceive(mqdes, msg_ptr, msg_len, msg_prio, abs_timeout);
}

int mq_timedsend(mqd_t mqdes, const char* msg_ptr, size_t msg_len, unsigned msg_prio, const timespec* abs_timeout) {
  return pipc_mq_timedsend(mqdes, msg_ptr, msg_len, msg_prio, abs_timeout);
}

}  // extern "C"
