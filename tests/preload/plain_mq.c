/* A plain Linux message-queue program: <mqueue.h>, -lrt, and no pipc anywhere.
 *
 * The tests run this very binary twice. Under LD_PRELOAD=libpipc-preload.so it must
 * run on pipc's engine: it asks for 64 messages per queue, which the kernel refuses
 * (EINVAL) beyond /proc/sys/fs/mqueue/msg_max (10 by default) to a process without
 * CAP_SYS_RESOURCE. Without the preload it must fail exactly there.
 *
 * Usage: plain_mq [hook]
 * hook: a shell command run while the queue exists, with its name in $MQ_NAME; the
 * program fails if the command does.
 *
 * Built three ways (tests/CMakeLists.txt): as is; with -O2 -D_FORTIFY_SOURCE=2, where
 * glibc's inline mq_open calls __mq_open_2; and with PLAIN_MQ_OLD_SYMBOLS, which binds
 * it to the oldest versions of glibc's mq_* (GLIBC_2.3.4), as a binary built before
 * glibc 2.34 has them. */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../c/test_clock.h"

#ifdef PLAIN_MQ_OLD_SYMBOLS
__asm__(".symver mq_open,mq_open@GLIBC_2.3.4");
__asm__(".symver mq_close,mq_close@GLIBC_2.3.4");
__asm__(".symver mq_unlink,mq_unlink@GLIBC_2.3.4");
__asm__(".symver mq_send,mq_send@GLIBC_2.3.4");
__asm__(".symver mq_timedsend,mq_timedsend@GLIBC_2.3.4");
__asm__(".symver mq_receive,mq_receive@GLIBC_2.3.4");
__asm__(".symver mq_timedreceive,mq_timedreceive@GLIBC_2.3.4");
__asm__(".symver mq_getattr,mq_getattr@GLIBC_2.3.4");
__asm__(".symver mq_setattr,mq_setattr@GLIBC_2.3.4");
__asm__(".symver mq_notify,mq_notify@GLIBC_2.3.4");
#endif

/* Linux's system call behind mq_getattr and mq_setattr. glibc exports no function of
 * that name; a library that provides one is used. */
extern int mq_getsetattr(mqd_t, const struct mq_attr*, struct mq_attr*) __attribute__((weak));

#define MAXMSG 64
#define MSGSIZE 128
#define STREAMED 500 /* messages sent across fork: several times the capacity */

static int failures;

/* Open flags that the compiler cannot see: in the fortified build, a two-argument
 * mq_open with them calls glibc's __mq_open_2. */
static volatile int read_only = O_RDONLY;
static volatile int write_only = O_WRONLY;

#define CHECK(cond)                                                                               \
  do {                                                                                            \
    if (!(cond)) {                                                                                \
      fprintf(stderr, "plain_mq:%d: CHECK(%s) failed (errno %d: %s)\n", __LINE__, #cond, errno, \
              strerror(errno));                                                                   \
      ++failures;                                                                                 \
    }                                                                                             \
  } while (0)

static long elapsed_ms(const struct timespec* since) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - since->tv_sec) * 1000L + (now.tv_nsec - since->tv_nsec) / 1000000L;
}

static mqd_t create(const char* name) {
  struct mq_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.mq_maxmsg = MAXMSG;
  attr.mq_msgsize = MSGSIZE;
  return mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
}

static int notify_pipe[2];

static void on_message(union sigval value) {
  char byte = (char)value.sival_int;
  if (write(notify_pipe[1], &byte, 1) != 1) abort();
}

/* Waits up to 10 s for SIGUSR1 (blocked) and checks what the notification carried. */
static void expect_notification(pid_t sender) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  struct timespec limit = {10, 0};
  siginfo_t info;
  memset(&info, 0, sizeof info);
  CHECK(sigtimedwait(&set, &info, &limit) == SIGUSR1);
  CHECK(info.si_code == SI_MESGQ);
  CHECK(info.si_value.sival_int == 4242);
  CHECK(info.si_pid == sender);
}

int main(int argc, char** argv) {
  char name[64];
  char reply_name[64];
  snprintf(name, sizeof name, "/plain_mq_%ld", (long)getpid());
  snprintf(reply_name, sizeof reply_name, "/plain_mq_%ld_reply", (long)getpid());
  printf("plain_mq: queue %s\n", name);

  mqd_t q = create(name);
  if (q == (mqd_t)-1) {
    printf("plain_mq: mq_open %s with maxmsg %d failed: %s\n", name, MAXMSG, strerror(errno));
    return 1;
  }
  printf("plain_mq: created %s with maxmsg %d, msgsize %d\n", name, MAXMSG, MSGSIZE);

  if (argc > 1) {
    setenv("MQ_NAME", name, 1);
    int status = system(argv[1]);
    CHECK(status == 0);
    printf("plain_mq: hook %s\n", status == 0 ? "ok" : "FAILED");
  }

  struct mq_attr attr;
  CHECK(mq_getattr(q, &attr) == 0);
  CHECK(attr.mq_maxmsg == MAXMSG && attr.mq_msgsize == MSGSIZE && attr.mq_curmsgs == 0 && attr.mq_flags == 0);

  /* Fill it, message i at priority i % 5; a timed send on the full queue times out. */
  char text[MSGSIZE];
  int i;
  for (i = 0; i < MAXMSG; ++i) {
    int len = snprintf(text, sizeof text, "message %d", i);
    CHECK(mq_send(q, text, (size_t)len + 1, (unsigned)(i % 5)) == 0);
  }
  struct timespec deadline = realtime_in_ms(100);
  errno = 0;
  CHECK(mq_timedsend(q, "x", 1, 0, &deadline) == -1 && errno == ETIMEDOUT);
  CHECK(mq_getattr(q, &attr) == 0 && attr.mq_curmsgs == MAXMSG);

  /* Highest priority first, oldest first within one. */
  unsigned last_prio = 5;
  int last_index = -1;
  for (i = 0; i < MAXMSG; ++i) {
    unsigned prio = 99;
    ssize_t len = mq_receive(q, text, sizeof text, &prio);
    CHECK(len > 0);
    if (len <= 0) break;
    int index = atoi(text + strlen("message "));
    CHECK(index % 5 == (int)prio);
    CHECK(prio < last_prio || (prio == last_prio && index > last_index));
    last_prio = prio;
    last_index = index;
  }
  printf("plain_mq: %d messages by priority, then FIFO\n", MAXMSG);

  /* An empty queue: a timed receive waits its 200 ms, then ETIMEDOUT. */
  struct timespec started;
  clock_gettime(CLOCK_MONOTONIC, &started);
  deadline = realtime_in_ms(200);
  errno = 0;
  CHECK(mq_timedreceive(q, text, sizeof text, NULL, &deadline) == -1 && errno == ETIMEDOUT);
  long waited = elapsed_ms(&started);
  CHECK(waited >= 150);
  printf("plain_mq: mq_timedreceive timed out (ETIMEDOUT)\n");

  /* O_NONBLOCK through mq_setattr: EAGAIN; the old attributes come back. */
  struct mq_attr nonblocking, old;
  memset(&nonblocking, 0, sizeof nonblocking);
  nonblocking.mq_flags = O_NONBLOCK;
  CHECK(mq_setattr(q, &nonblocking, &old) == 0 && old.mq_flags == 0 && old.mq_maxmsg == MAXMSG);
  CHECK(mq_getattr(q, &attr) == 0 && attr.mq_flags == O_NONBLOCK);
  errno = 0;
  CHECK(mq_receive(q, text, sizeof text, NULL) == -1 && errno == EAGAIN);
  memset(&nonblocking, 0, sizeof nonblocking);
  CHECK(mq_setattr(q, &nonblocking, &old) == 0 && old.mq_flags == O_NONBLOCK);
  printf("plain_mq: O_NONBLOCK receive on an empty queue: EAGAIN\n");

  if (mq_getsetattr != NULL) {
    memset(&attr, 0, sizeof attr);
    CHECK(mq_getsetattr(q, NULL, &attr) == 0 && attr.mq_maxmsg == MAXMSG && attr.mq_flags == 0);
    printf("plain_mq: mq_getsetattr present\n");
  }

  /* The descriptor polls as Linux's does: readable with a message, not without. */
  struct pollfd pq = {q, POLLIN | POLLOUT, 0};
  CHECK(mq_send(q, "poll", 5, 0) == 0);
  CHECK(poll(&pq, 1, 10000) == 1 && (pq.revents & POLLIN) != 0 && (pq.revents & POLLOUT) != 0);
  CHECK(mq_receive(q, text, sizeof text, NULL) == 5);
  pq.events = POLLIN;
  pq.revents = 0;
  CHECK(poll(&pq, 1, 0) == 0);
  printf("plain_mq: poll: readable with a message, not without\n");

  /* Errors keep their errno. */
  errno = 0;
  CHECK(mq_send(q, text, MSGSIZE + 1, 0) == -1 && errno == EMSGSIZE);
  errno = 0;
  CHECK(mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, NULL) == (mqd_t)-1 && errno == EEXIST);
  errno = 0;
  CHECK(mq_close((mqd_t)-1) == -1 && errno == EBADF);

  /* SIGEV_SIGNAL, fired by this process's own send, then by a child's. */
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, NULL);
  struct sigevent sev;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_SIGNAL;
  sev.sigev_signo = SIGUSR1;
  sev.sigev_value.sival_int = 4242;
  CHECK(mq_notify(q, &sev) == 0);
  errno = 0;
  CHECK(mq_notify(q, &sev) == -1 && errno == EBUSY);
  CHECK(mq_send(q, "wake", 5, 1) == 0);
  expect_notification(getpid());
  CHECK(mq_receive(q, text, sizeof text, NULL) == 5);

  CHECK(mq_notify(q, &sev) == 0);
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    mqd_t w = mq_open(name, write_only);
    int ok = w != (mqd_t)-1 && mq_send(w, "child", 6, 2) == 0 && mq_close(w) == 0;
    _exit(ok ? 0 : 1);
  }
  expect_notification(child);
  int status = -1;
  CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  unsigned prio = 0;
  CHECK(mq_receive(q, text, sizeof text, &prio) == 6 && prio == 2 && strcmp(text, "child") == 0);
  printf("plain_mq: SIGEV_SIGNAL notification (SI_MESGQ, sival_int, sender's pid), own and a child's\n");

  /* SIGEV_THREAD: the function runs with the value. */
  CHECK(pipe(notify_pipe) == 0);
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_THREAD;
  sev.sigev_notify_function = on_message;
  sev.sigev_value.sival_int = 'T';
  CHECK(mq_notify(q, &sev) == 0);
  CHECK(mq_send(q, "thread", 7, 0) == 0);
  struct pollfd p = {notify_pipe[0], POLLIN, 0};
  char got = 0;
  CHECK(poll(&p, 1, 10000) == 1 && read(notify_pipe[0], &got, 1) == 1 && got == 'T');
  CHECK(mq_receive(q, text, sizeof text, NULL) == 7);
  printf("plain_mq: SIGEV_THREAD notification\n");

  /* Across fork: a child receives STREAMED messages (more than the queue holds, so
   * both sides block and wake each other) and answers with their sum. */
  mqd_t reply = create(reply_name);
  CHECK(reply != (mqd_t)-1);
  fflush(stdout);
  child = fork();
  if (child == 0) {
    mqd_t in = mq_open(name, read_only);
    mqd_t out = mq_open(reply_name, write_only);
    long sum = 0;
    int n;
    for (n = 0; n < STREAMED; ++n) {
      char buf[MSGSIZE];
      if (in == (mqd_t)-1 || mq_receive(in, buf, sizeof buf, NULL) <= 0) _exit(2);
      sum += atol(buf);
    }
    char answer[32];
    int len = snprintf(answer, sizeof answer, "%ld", sum);
    _exit(out != (mqd_t)-1 && mq_send(out, answer, (size_t)len + 1, 0) == 0 ? 0 : 3);
  }
  long expected = 0;
  deadline = realtime_in_ms(20000); /* a child that fails makes this fail, not hang */
  for (i = 0; i < STREAMED; ++i) {
    int len = snprintf(text, sizeof text, "%d", i);
    expected += i;
    int sent = mq_timedsend(q, text, (size_t)len + 1, (unsigned)(i % 3), &deadline);
    CHECK(sent == 0);
    if (sent != 0) break;
  }
  char answer[MSGSIZE];
  ssize_t answered = mq_timedreceive(reply, answer, sizeof answer, NULL, &deadline);
  CHECK(answered > 0 && atol(answer) == expected);
  if (answered <= 0) kill(child, SIGKILL);
  CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  printf("plain_mq: %d messages to a forked child and its answer back\n", STREAMED);

  CHECK(mq_close(reply) == 0);
  CHECK(mq_close(q) == 0);
  CHECK(mq_unlink(reply_name) == 0);
  CHECK(mq_unlink(name) == 0);
  errno = 0;
  CHECK(mq_open(name, read_only) == (mqd_t)-1 && errno == ENOENT);
  errno = 0;
  CHECK(mq_unlink(name) == -1 && errno == ENOENT);

  if (failures != 0) {
    printf("plain_mq: %d checks failed\n", failures);
    return 1;
  }
  printf("plain_mq: ok\n");
  return 0;
}
