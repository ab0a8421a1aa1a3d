/* Runs an unmodified POSIX message-queue program on pipc's engine.
 *
 * Include this header before anything else, or compile with
 *
 *     cc -include pipc/compat/mqueue.h prog.c $(pkg-config --cflags --libs pipc)
 *
 * and every mq_open, mq_close, mq_unlink, mq_send, mq_receive, mq_timedsend,
 * mq_timedreceive, mq_getattr, mq_setattr and mq_notify of the program, and its
 * mqd_t and struct mq_attr, name pipc's versions (<pipc/c/mqueue.h>).
 *
 * How: the system's <mqueue.h> is included first, with the real names, so that the
 * program's own later #include <mqueue.h> changes nothing; then macros rename
 * the POSIX names. Every later use in the program, including calls that a
 * _FORTIFY_SOURCE build would route through glibc's inline mq_open wrapper, is a
 * call of pipc_mq_open and friends; the wrapper is never used, so nothing refers to
 * glibc's mq_* and -lrt is not needed for them.
 *
 * The renaming is textual: a program that needs the kernel's queues too should
 * include <pipc/c/mqueue.h> and call the pipc_mq_* names itself instead.
 */
#ifndef PIPC_COMPAT_MQUEUE_H
#define PIPC_COMPAT_MQUEUE_H

#if defined(__has_include)
#if __has_include(<mqueue.h>)
#include <mqueue.h>
#endif
#else
#include <mqueue.h>
#endif

#include <limits.h> /* MQ_PRIO_MAX, where the system has it */

#include <pipc/c/mqueue.h>

#ifndef MQ_PRIO_MAX
#define MQ_PRIO_MAX PIPC_MQ_PRIO_MAX
#endif

#define mqd_t pipc_mqd_t
#define mq_attr pipc_mq_attr
#define mq_open pipc_mq_open
#define mq_close pipc_mq_close
#define mq_unlink pipc_mq_unlink
#define mq_send pipc_mq_send
#define mq_receive pipc_mq_receive
#define mq_timedsend pipc_mq_timedsend
#define mq_timedreceive pipc_mq_timedreceive
#define mq_getattr pipc_mq_getattr
#define mq_setattr pipc_mq_setattr
#define mq_notify pipc_mq_notify

#endif /* PIPC_COMPAT_MQUEUE_H */
