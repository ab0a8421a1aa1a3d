/* pipc's C API: POSIX message queues (mq_*) on pipc's user-space engine.
 *
 * Each pipc_mq_* function has the signature, return value and errno of the POSIX
 * function of the same name without the prefix, but the queue lives in pipc's engine
 * (shared memory and futexes), so the kernel's limits (msg_max, msgsize_max,
 * RLIMIT_MSGQUEUE, /dev/mqueue) do not apply. docs/c-api.md lists the few places where
 * pipc differs from POSIX or from Linux.
 *
 * A pipc_mqd_t is a file descriptor, as Linux's mqd_t is: it counts against
 * RLIMIT_NOFILE, is close-on-exec, is inherited by fork(), and select(), poll() and
 * epoll accept it. It polls readable while the queue has messages and writable while
 * it has room once pipc_mq_pollable() was called on it (or $PIPC_MQ_POLLABLE=1);
 * until then it polls ready both ways. Close it with pipc_mq_close(); a close() of it
 * by code that does not know it is a queue does no harm (docs/c-api.md,
 * "Descriptors").
 *
 * Thread safety: every function may be called from any thread, on any descriptor,
 * at any time; closing a descriptor while another thread uses it is safe (the other
 * call finishes on the queue it started with).
 *
 * Plain C (C99 or later); includable from C++. Engine queues and kernel queues are
 * different objects: a queue opened with pipc_mq_open is not visible to mq_open.
 */
#ifndef PIPC_C_MQUEUE_H
#define PIPC_C_MQUEUE_H

#include <fcntl.h>     /* O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_NONBLOCK */
#include <signal.h>    /* struct sigevent, SIGEV_* (with POSIX feature macros) */
#include <stddef.h>    /* size_t */
#include <sys/types.h> /* mode_t, ssize_t */
#include <time.h>      /* struct timespec (with POSIX feature macros or C11) */

/* Symbol visibility, as PIPC_EXPORT in <pipc/export.hpp>: pipc is built with hidden
 * visibility, and a shared build (PIPC_SHARED) exports exactly what is marked. */
#if defined(PIPC_SHARED) && (defined(__GNUC__) || defined(__clang__))
#define PIPC_C_EXPORT __attribute__((visibility("default")))
#else
#define PIPC_C_EXPORT
#endif

/* `restrict` is C99; C++ and older C spell it differently or not at all. */
#if defined(__cplusplus) || !defined(__STDC_VERSION__) || __STDC_VERSION__ < 199901L
#if defined(__GNUC__) || defined(__clang__)
#define PIPC_RESTRICT __restrict
#else
#define PIPC_RESTRICT
#endif
#else
#define PIPC_RESTRICT restrict
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Declared here too, so that the prototypes below are valid even when the includer's
 * feature macros hide the system's definitions. */
struct sigevent;
struct timespec;

/* A message queue descriptor: a file descriptor (see above); (pipc_mqd_t)-1 reports
 * an error. */
typedef int pipc_mqd_t;

/* Queue attributes, as struct mq_attr. mq_flags holds O_NONBLOCK or 0. */
struct pipc_mq_attr {
  long mq_flags;   /* O_NONBLOCK of this descriptor */
  long mq_maxmsg;  /* capacity in messages */
  long mq_msgsize; /* largest message, in bytes */
  long mq_curmsgs; /* messages now queued */
};

/* Priorities run from 0 to PIPC_MQ_PRIO_MAX - 1; higher is received first. */
#define PIPC_MQ_PRIO_MAX 32768

/* As mq_open(name, oflag) or, with O_CREAT in oflag,
 * mq_open(name, oflag, mode_t mode, struct pipc_mq_attr* attr): attr NULL means the
 * defaults (10 messages of 8192 bytes). Returns a descriptor, or (pipc_mqd_t)-1 and
 * errno: EACCES, EEXIST, EINVAL, EMFILE, ENAMETOOLONG, ENOENT, ENOMEM, ENOSPC, and
 * EBADMSG when the queue's storage is not a usable pipc queue (foreign or corrupt). */
PIPC_C_EXPORT pipc_mqd_t pipc_mq_open(const char* name, int oflag, ...);

/* As mq_close: 0, or -1 and errno EBADF. */
PIPC_C_EXPORT int pipc_mq_close(pipc_mqd_t mqdes);

/* As mq_unlink: 0, or -1 and errno EACCES, EINVAL, ENAMETOOLONG, ENOENT. */
PIPC_C_EXPORT int pipc_mq_unlink(const char* name);

/* As mq_send / mq_timedsend: 0, or -1 and errno EAGAIN, EBADF, EINTR, EINVAL,
 * EMSGSIZE, ETIMEDOUT, EBADMSG. abs_timeout is an absolute CLOCK_REALTIME time; NULL
 * waits without limit. */
PIPC_C_EXPORT int pipc_mq_send(pipc_mqd_t mqdes, const char* msg_ptr, size_t msg_len, unsigned msg_prio);
PIPC_C_EXPORT int pipc_mq_timedsend(pipc_mqd_t mqdes, const char* msg_ptr, size_t msg_len, unsigned msg_prio,
                                    const struct timespec* abs_timeout);

/* As mq_receive / mq_timedreceive: the message's length, or -1 and errno (as for
 * send). msg_prio may be NULL. */
PIPC_C_EXPORT ssize_t pipc_mq_receive(pipc_mqd_t mqdes, char* msg_ptr, size_t msg_len, unsigned* msg_prio);
PIPC_C_EXPORT ssize_t pipc_mq_timedreceive(pipc_mqd_t mqdes, char* PIPC_RESTRICT msg_ptr, size_t msg_len,
                                           unsigned* PIPC_RESTRICT msg_prio,
                                           const struct timespec* PIPC_RESTRICT abs_timeout);

/* As mq_getattr / mq_setattr: 0, or -1 and errno EBADF, EINVAL. setattr changes only
 * O_NONBLOCK and only for this descriptor; omqstat, if not NULL, gets the old ones. */
PIPC_C_EXPORT int pipc_mq_getattr(pipc_mqd_t mqdes, struct pipc_mq_attr* mqstat);
PIPC_C_EXPORT int pipc_mq_setattr(pipc_mqd_t mqdes, const struct pipc_mq_attr* PIPC_RESTRICT mqstat,
                                  struct pipc_mq_attr* PIPC_RESTRICT omqstat);

/* As mq_notify: SIGEV_SIGNAL, SIGEV_THREAD or SIGEV_NONE; NULL removes this process's
 * registration. 0, or -1 and errno EBADF, EBUSY, EINVAL, ENOMEM. */
PIPC_C_EXPORT int pipc_mq_notify(pipc_mqd_t mqdes, const struct sigevent* notification);

/* A pipc extension: makes mqdes poll readable while its queue has messages and
 * writable while it has room, from now until it is closed, as a kernel queue's
 * descriptor does. A helper thread of this process keeps it so, and every send and
 * receive on the queue (by any process) then costs a wake-up of it, which is why it is
 * not the default. Calling it again changes nothing. 0, or -1 and errno EBADF,
 * EMFILE, ENOMEM, EAGAIN. */
PIPC_C_EXPORT int pipc_mq_pollable(pipc_mqd_t mqdes);

/* pipc extensions: zero-copy send and receive (docs/c-api.md, "Zero copy").
 *
 * pipc_mq_send_begin lends the caller a free slot of the queue: it returns a pointer
 * to msg_len writable bytes (msg_len <= mq_msgsize) in the queue's shared memory, where
 * the caller writes the message; pipc_mq_send_commit then queues its first msg_len bytes
 * with msg_prio, exactly as pipc_mq_send would at that moment (the oldest message of the
 * highest priority is received first), without copying it; pipc_mq_send_abort gives the
 * slot back unsent. Between begin and commit the caller holds no lock: other senders
 * and receivers go on, and the queue has one slot less.
 *
 * pipc_mq_receive_begin takes the next message, as pipc_mq_receive would, and returns
 * a pointer to it in the queue's shared memory (its length in *msg_len, its priority
 * in *msg_prio if msg_prio is not NULL); pipc_mq_receive_end frees the slot.
 *
 * Begin blocks as send/receive do (EAGAIN on an O_NONBLOCK descriptor); the timed forms
 * take an absolute CLOCK_REALTIME abs_timeout (ETIMEDOUT; EINVAL for a bad timespec;
 * NULL waits without limit). Both begin calls are cancellation points and fail with
 * EINTR when a signal handler interrupts their wait; commit, abort and end never wait
 * for the queue (only, briefly, for its lock) and are not cancellation points.
 * Errors: begin returns NULL and sets errno (EAGAIN, EBADF, EINTR, EINVAL, EMSGSIZE,
 * ETIMEDOUT, ENOMEM, EBADMSG); commit, abort and end return 0, or -1 and errno: EBADF,
 * EINVAL (msg is not an outstanding loan of this descriptor, or msg_prio >=
 * PIPC_MQ_PRIO_MAX), EMSGSIZE (commit: msg_len > mq_msgsize), EBADMSG. After a failed
 * commit the loan is still outstanding: commit again or abort it.
 *
 * A loan belongs to the descriptor and the process that took it: closing the
 * descriptor gives back its outstanding loans (sent nothing; received message dropped),
 * and so does the process's death (a dead sender's half-written message is never
 * delivered; a dead receiver's message is gone, as if pipc_mq_receive had returned it).
 * A child of fork cannot commit or end its parent's loans. The bytes are in memory that
 * every process that may open the queue may write. */
PIPC_C_EXPORT void* pipc_mq_send_begin(pipc_mqd_t mqdes, size_t msg_len);
PIPC_C_EXPORT void* pipc_mq_timedsend_begin(pipc_mqd_t mqdes, size_t msg_len, const struct timespec* abs_timeout);
PIPC_C_EXPORT int pipc_mq_send_commit(pipc_mqd_t mqdes, void* msg, size_t msg_len, unsigned msg_prio);
PIPC_C_EXPORT int pipc_mq_send_abort(pipc_mqd_t mqdes, void* msg);
PIPC_C_EXPORT const void* pipc_mq_receive_begin(pipc_mqd_t mqdes, size_t* msg_len, unsigned* msg_prio);
PIPC_C_EXPORT const void* pipc_mq_timedreceive_begin(pipc_mqd_t mqdes, size_t* PIPC_RESTRICT msg_len,
                                                     unsigned* PIPC_RESTRICT msg_prio,
                                                     const struct timespec* PIPC_RESTRICT abs_timeout);
PIPC_C_EXPORT int pipc_mq_receive_end(pipc_mqd_t mqdes, const void* msg);

#ifdef __cplusplus
}
#endif

#endif /* PIPC_C_MQUEUE_H */
