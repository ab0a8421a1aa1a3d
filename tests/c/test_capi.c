/* The C API, tested from C: every pipc_mq_* function, its results and its errno,
 * across threads and forked processes. Prints "capi: N passed, M failed" and exits
 * non-zero if anything failed. */
#define _XOPEN_SOURCE 700

#include <pipc/c/mqueue.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_clock.h"

/* ---- a tiny harness ---- */

static int checks_failed; /* in the current test */

#define CHECK(cond)                                                                                        \
  do {                                                                                                     \
    if (!(cond)) {                                                                                         \
      fprintf(stderr, "%s:%d: CHECK(%s) failed (errno %d: %s)\n", __FILE__, __LINE__, #cond, errno,       \
              strerror(errno));                                                                            \
      ++checks_failed;                                                                                     \
    }                                                                                                      \
  } while (0)

/* A call that must fail with -1 and errno e. */
#define CHECK_ERR(call, e)                                                                                 \
  do {                                                                                                     \
    errno = 0;                                                                                             \
    long rc_ = (long)(call);                                                                               \
    int errno_ = errno;                                                                                    \
    if (rc_ != -1 || errno_ != (e)) {                                                                      \
      fprintf(stderr, "%s:%d: %s returned %ld, errno %d (%s); want -1, %s\n", __FILE__, __LINE__, #call,   \
              rc_, errno_, strerror(errno_), #e);                                                          \
      ++checks_failed;                                                                                     \
    }                                                                                                      \
  } while (0)

static char names[16][64];
static int name_count;

/* A queue name unique to this process and test; removed after the test. */
static const char* qname(const char* tag) {
  char* n = names[name_count++ % 16];
  snprintf(n, sizeof names[0], "/capi_%ld_%s", (long)getpid(), tag);
  pipc_mq_unlink(n);
  return n;
}

static struct pipc_mq_attr make_attr(long maxmsg, long msgsize) {
  struct pipc_mq_attr a;
  memset(&a, 0, sizeof a);
  a.mq_maxmsg = maxmsg;
  a.mq_msgsize = msgsize;
  return a;
}

/* Creates a fresh queue (O_RDWR) of maxmsg × msgsize; extra flags in `flags`. */
static pipc_mqd_t create(const char* name, int flags, long maxmsg, long msgsize) {
  struct pipc_mq_attr a = make_attr(maxmsg, msgsize);
  pipc_mqd_t q = pipc_mq_open(name, O_RDWR | O_CREAT | O_EXCL | flags, 0600, &a);
  CHECK(q != (pipc_mqd_t)-1);
  return q;
}

static double monotonic_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void sleep_ms(long ms) {
  struct timespec t;
  t.tv_sec = ms / 1000;
  t.tv_nsec = (ms % 1000) * 1000000L;
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {
  }
}

/* Waits up to `ms` for child `pid`; kills it if it is still running. Returns its exit
 * status, or -1 if it did not exit normally in time. */
static int wait_child(pid_t pid, long ms) {
  double until = monotonic_ms() + (double)ms;
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (r < 0 && errno != EINTR) return -1;
    if (monotonic_ms() > until) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fprintf(stderr, "child %ld timed out\n", (long)pid);
      return -1;
    }
    sleep_ms(5);
  }
}

/* ---- the tests ---- */

static void test_open_create_exists_enoent(void) {
  const char* n = qname("open");
  CHECK_ERR(pipc_mq_open(n, O_RDWR), ENOENT);
  pipc_mqd_t q = create(n, 0, 4, 32);
  CHECK(q >= 0);
  CHECK((pipc_mqd_t)(int)q == q);
  CHECK_ERR(pipc_mq_open(n, O_RDWR | O_CREAT | O_EXCL, 0600, NULL), EEXIST);
  pipc_mqd_t again = pipc_mq_open(n, O_RDWR | O_CREAT, 0600, NULL);
  CHECK(again != (pipc_mqd_t)-1 && again != q);
  pipc_mqd_t plain = pipc_mq_open(n, O_RDONLY);
  CHECK(plain != (pipc_mqd_t)-1);
  /* An existing queue is opened whatever attr says; with O_EXCL it is EEXIST. */
  struct pipc_mq_attr bad = make_attr(0, 0);
  pipc_mqd_t existing = pipc_mq_open(n, O_RDWR | O_CREAT, 0600, &bad);
  CHECK(existing != (pipc_mqd_t)-1);
  CHECK_ERR(pipc_mq_open(n, O_RDWR | O_CREAT | O_EXCL, 0600, &bad), EEXIST);
  CHECK(pipc_mq_close(existing) == 0);
  CHECK(pipc_mq_close(plain) == 0);
  CHECK(pipc_mq_close(again) == 0);
  CHECK(pipc_mq_close(q) == 0);
  CHECK(pipc_mq_unlink(n) == 0);
  CHECK_ERR(pipc_mq_unlink(n), ENOENT);
}

static void test_name_errors(void) {
  char long_name[300];
  memset(long_name, 'x', sizeof long_name);
  long_name[0] = '/';
  long_name[sizeof long_name - 1] = '\0';
  CHECK_ERR(pipc_mq_open("no_slash", O_RDWR | O_CREAT, 0600, NULL), EINVAL);
  CHECK_ERR(pipc_mq_open("/a/b", O_RDWR | O_CREAT, 0600, NULL), EACCES); /* as Linux */
  CHECK_ERR(pipc_mq_open("//a", O_RDONLY), EACCES);
  CHECK_ERR(pipc_mq_unlink("/a/"), EACCES);
  CHECK_ERR(pipc_mq_open("/", O_RDWR | O_CREAT, 0600, NULL), EINVAL);
  CHECK_ERR(pipc_mq_open(long_name, O_RDWR | O_CREAT, 0600, NULL), ENAMETOOLONG);
  CHECK_ERR(pipc_mq_unlink("no_slash"), EINVAL);
  CHECK_ERR(pipc_mq_unlink(long_name), ENAMETOOLONG);
}

static void test_bad_attributes(void) {
  const char* n = qname("badattr");
  struct pipc_mq_attr a = make_attr(0, 16);
  CHECK_ERR(pipc_mq_open(n, O_RDWR | O_CREAT, 0600, &a), EINVAL);
  a = make_attr(4, 0);
  CHECK_ERR(pipc_mq_open(n, O_RDWR | O_CREAT, 0600, &a), EINVAL);
  a = make_attr(-1, 16);
  CHECK_ERR(pipc_mq_open(n, O_RDWR | O_CREAT, 0600, &a), EINVAL);
  CHECK_ERR(pipc_mq_open(n, O_RDWR), ENOENT); /* nothing was created */
}

static void test_default_attributes(void) {
  const char* n = qname("defaults");
  pipc_mqd_t q = pipc_mq_open(n, O_RDWR | O_CREAT | O_EXCL, 0600, NULL);
  CHECK(q != (pipc_mqd_t)-1);
  struct pipc_mq_attr a;
  memset(&a, 0xff, sizeof a);
  CHECK(pipc_mq_getattr(q, &a) == 0);
  CHECK(a.mq_maxmsg == 10 && a.mq_msgsize == 8192 && a.mq_curmsgs == 0 && a.mq_flags == 0);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static void test_attributes_beyond_kernel_caps(void) {
  /* 100 messages: the kernel's default msg_max (10) would refuse this. */
  const char* n = qname("big");
  pipc_mqd_t q = create(n, O_NONBLOCK, 100, 64);
  struct pipc_mq_attr a;
  CHECK(pipc_mq_getattr(q, &a) == 0);
  CHECK(a.mq_maxmsg == 100 && a.mq_msgsize == 64 && a.mq_flags == O_NONBLOCK);
  int i;
  for (i = 0; i < 100; ++i) CHECK(pipc_mq_send(q, "m", 1, (unsigned)i % 7) == 0);
  CHECK(pipc_mq_getattr(q, &a) == 0);
  CHECK(a.mq_curmsgs == 100);
  CHECK_ERR(pipc_mq_send(q, "m", 1, 0), EAGAIN);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static void test_priority_order(void) {
  const char* n = qname("prio");
  pipc_mqd_t q = create(n, 0, 8, 16);
  CHECK(pipc_mq_send(q, "one", 3, 1) == 0);
  CHECK(pipc_mq_send(q, "five-a", 6, 5) == 0);
  CHECK(pipc_mq_send(q, "three", 5, 3) == 0);
  CHECK(pipc_mq_send(q, "five-b", 6, 5) == 0);
  CHECK(pipc_mq_send(q, "zero", 4, 0) == 0);
  CHECK(pipc_mq_send(q, "", 0, PIPC_MQ_PRIO_MAX - 1) == 0);
  const char* want[] = {"", "five-a", "five-b", "three", "one", "zero"};
  unsigned want_prio[] = {PIPC_MQ_PRIO_MAX - 1, 5, 5, 3, 1, 0};
  int i;
  for (i = 0; i < 6; ++i) {
    char buf[16];
    unsigned prio = 12345;
    ssize_t len = pipc_mq_receive(q, buf, sizeof buf, &prio);
    CHECK(len == (ssize_t)strlen(want[i]));
    CHECK(len >= 0 && memcmp(buf, want[i], (size_t)len) == 0);
    CHECK(prio == want_prio[i]);
  }
  /* msg_prio may be NULL. */
  CHECK(pipc_mq_send(q, "x", 1, 2) == 0);
  char buf[16];
  CHECK(pipc_mq_receive(q, buf, sizeof buf, NULL) == 1 && buf[0] == 'x');
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static void test_prio_max(void) {
  const char* n = qname("priomax");
  pipc_mqd_t q = create(n, 0, 2, 8);
  CHECK_ERR(pipc_mq_send(q, "a", 1, PIPC_MQ_PRIO_MAX), EINVAL);
  CHECK_ERR(pipc_mq_send(q, "a", 1, 0xffffffffu), EINVAL);
  CHECK(pipc_mq_send(q, "a", 1, PIPC_MQ_PRIO_MAX - 1) == 0);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static void test_emsgsize(void) {
  const char* n = qname("msgsize");
  pipc_mqd_t q = create(n, 0, 2, 8);
  char big[9] = "123456789";
  CHECK_ERR(pipc_mq_send(q, big, 9, 0), EMSGSIZE);
  CHECK(pipc_mq_send(q, big, 8, 0) == 0);
  char small[7];
  CHECK_ERR(pipc_mq_receive(q, small, sizeof small, NULL), EMSGSIZE);
  char exact[8];
  CHECK(pipc_mq_receive(q, exact, sizeof exact, NULL) == 8);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static void test_ebadf_access_mode(void) {
  const char* n = qname("access");
  pipc_mqd_t q = create(n, 0, 2, 8);
  pipc_mqd_t ro = pipc_mq_open(n, O_RDONLY);
  pipc_mqd_t wo = pipc_mq_open(n, O_WRONLY);
  CHECK(ro != (pipc_mqd_t)-1 && wo != (pipc_mqd_t)-1);
  char buf[8];
  CHECK_ERR(pipc_mq_send(ro, "a", 1, 0), EBADF);
  CHECK_ERR(pipc_mq_receive(wo, buf, sizeof buf, NULL), EBADF);
  CHECK(pipc_mq_send(wo, "a", 1, 0) == 0);
  CHECK(pipc_mq_receive(ro, buf, sizeof buf, NULL) == 1);
  pipc_mq_close(ro);
  pipc_mq_close(wo);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

/* O_RDWR|O_WRONLY, as Linux has it: a call that creates the queue gets a descriptor
 * that can neither send nor receive; on an existing queue it is EINVAL. */
static void test_access_mode_both_bits(void) {
  const char* n = qname("bothbits");
  char buf[8];
  struct pipc_mq_attr a = make_attr(2, 8);
  CHECK_ERR(pipc_mq_open(n, O_RDWR | O_WRONLY), ENOENT); /* the name first, as Linux */
  pipc_mqd_t q = pipc_mq_open(n, O_CREAT | O_RDWR | O_WRONLY, 0600, &a);
  CHECK(q != (pipc_mqd_t)-1);
  CHECK_ERR(pipc_mq_send(q, "a", 1, 0), EBADF);
  CHECK_ERR(pipc_mq_receive(q, buf, sizeof buf, NULL), EBADF);
  CHECK(pipc_mq_getattr(q, &a) == 0 && a.mq_maxmsg == 2 && a.mq_msgsize == 8);
  CHECK_ERR(pipc_mq_open(n, O_RDWR | O_WRONLY), EINVAL);
  CHECK_ERR(pipc_mq_open(n, O_CREAT | O_RDWR | O_WRONLY, 0600, &a), EINVAL);
  CHECK_ERR(pipc_mq_open(n, O_CREAT | O_EXCL | O_RDWR | O_WRONLY, 0600, &a), EEXIST);
  CHECK(pipc_mq_close(q) == 0);
  CHECK(pipc_mq_unlink(n) == 0);
}

static void test_ebadf_closed_and_unknown(void) {
  const char* n = qname("closed");
  pipc_mqd_t q = create(n, 0, 2, 8);
  struct pipc_mq_attr a;
  char buf[8];
  CHECK(pipc_mq_close(q) == 0);
  CHECK_ERR(pipc_mq_close(q), EBADF);
  CHECK_ERR(pipc_mq_send(q, "a", 1, 0), EBADF);
  CHECK_ERR(pipc_mq_receive(q, buf, sizeof buf, NULL), EBADF);
  CHECK_ERR(pipc_mq_getattr(q, &a), EBADF);
  CHECK_ERR(pipc_mq_setattr(q, &a, NULL), EBADF);
  CHECK_ERR(pipc_mq_notify(q, NULL), EBADF);
  /* The number is closed too, and (as any file descriptor's) free for the next open. */
  CHECK_ERR(fcntl((int)q, F_GETFD), EBADF);
  pipc_mqd_t q2 = pipc_mq_open(n, O_RDWR);
  CHECK(q2 == q);
  CHECK(pipc_mq_send(q2, "a", 1, 0) == 0);
  CHECK(pipc_mq_close(q2) == 0);
  CHECK_ERR(pipc_mq_close((pipc_mqd_t)-1), EBADF);
  CHECK_ERR(pipc_mq_close(0), EBADF); /* stdin is not a queue */
  CHECK_ERR(pipc_mq_getattr(12345, &a), EBADF);
  CHECK_ERR(pipc_mq_getattr(0x7fffffff, &a), EBADF);
  pipc_mq_unlink(n);
}

static void test_eagain_nonblocking(void) {
  const char* n = qname("nonblock");
  pipc_mqd_t q = create(n, O_NONBLOCK, 1, 8);
  char buf[8];
  CHECK_ERR(pipc_mq_receive(q, buf, sizeof buf, NULL), EAGAIN);
  CHECK(pipc_mq_send(q, "a", 1, 0) == 0);
  CHECK_ERR(pipc_mq_send(q, "b", 1, 0), EAGAIN);
  /* O_NONBLOCK beats any deadline. */
  struct timespec t = realtime_in_ms(1000);
  CHECK_ERR(pipc_mq_timedsend(q, "b", 1, 0, &t), EAGAIN);
  CHECK(pipc_mq_receive(q, buf, sizeof buf, NULL) == 1);
  CHECK_ERR(pipc_mq_timedreceive(q, buf, sizeof buf, NULL, &t), EAGAIN);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static void test_etimedout(void) {
  const char* n = qname("timed");
  pipc_mqd_t q = create(n, 0, 1, 8);
  char buf[8];
  struct timespec t = realtime_in_ms(50);
  double start = monotonic_ms();
  CHECK_ERR(pipc_mq_timedreceive(q, buf, sizeof buf, NULL, &t), ETIMEDOUT);
  double waited = monotonic_ms() - start;
  CHECK(waited >= 45 && waited < 2000);
  CHECK(pipc_mq_send(q, "a", 1, 0) == 0);
  t = realtime_in_ms(50);
  start = monotonic_ms();
  CHECK_ERR(pipc_mq_timedsend(q, "b", 1, 0, &t), ETIMEDOUT);
  waited = monotonic_ms() - start;
  CHECK(waited >= 45 && waited < 2000);
  /* A deadline in the past fails at once, but only if the call would block. */
  struct timespec past = {0, 0};
  CHECK_ERR(pipc_mq_timedsend(q, "b", 1, 0, &past), ETIMEDOUT);
  unsigned prio = 9;
  CHECK(pipc_mq_timedreceive(q, buf, sizeof buf, &prio, &past) == 1 && prio == 0);
  CHECK_ERR(pipc_mq_timedreceive(q, buf, sizeof buf, NULL, &past), ETIMEDOUT);
  CHECK(pipc_mq_timedsend(q, "c", 1, 3, &past) == 0);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static void test_einval_bad_timespec(void) {
  const char* n = qname("badtime");
  pipc_mqd_t q = create(n, 0, 1, 8);
  char buf[8];
  struct timespec bad = realtime_in_ms(1000);
  bad.tv_nsec = 1000000000L;
  struct timespec negative = realtime_in_ms(1000);
  negative.tv_nsec = -1;
  /* Would block: EINVAL. */
  CHECK_ERR(pipc_mq_timedreceive(q, buf, sizeof buf, NULL, &bad), EINVAL);
  CHECK_ERR(pipc_mq_timedreceive(q, buf, sizeof buf, NULL, &negative), EINVAL);
  /* Would not block: the timeout is not looked at (POSIX). */
  CHECK(pipc_mq_timedsend(q, "a", 1, 0, &bad) == 0);
  CHECK_ERR(pipc_mq_timedsend(q, "b", 1, 0, &negative), EINVAL);
  CHECK(pipc_mq_timedreceive(q, buf, sizeof buf, NULL, &negative) == 1);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static void test_setattr_getattr(void) {
  const char* n = qname("setattr");
  pipc_mqd_t q = create(n, 0, 3, 16);
  pipc_mqd_t other = pipc_mq_open(n, O_RDWR);
  CHECK(pipc_mq_send(q, "a", 1, 0) == 0);
  struct pipc_mq_attr set = make_attr(999, 999);
  set.mq_flags = O_NONBLOCK;
  set.mq_curmsgs = 77;
  struct pipc_mq_attr old;
  memset(&old, 0xff, sizeof old);
  CHECK(pipc_mq_setattr(q, &set, &old) == 0);
  CHECK(old.mq_flags == 0 && old.mq_maxmsg == 3 && old.mq_msgsize == 16 && old.mq_curmsgs == 1);
  struct pipc_mq_attr now;
  CHECK(pipc_mq_getattr(q, &now) == 0);
  CHECK(now.mq_flags == O_NONBLOCK && now.mq_maxmsg == 3 && now.mq_msgsize == 16 && now.mq_curmsgs == 1);
  /* O_NONBLOCK belongs to the descriptor. */
  CHECK(pipc_mq_getattr(other, &now) == 0);
  CHECK(now.mq_flags == 0);
  char buf[16];
  CHECK(pipc_mq_receive(q, buf, sizeof buf, NULL) == 1);
  CHECK_ERR(pipc_mq_receive(q, buf, sizeof buf, NULL), EAGAIN);
  /* Flags other than O_NONBLOCK are refused, as on Linux. */
  set.mq_flags = O_NONBLOCK | O_CREAT;
  CHECK_ERR(pipc_mq_setattr(q, &set, NULL), EINVAL);
  set.mq_flags = 0;
  CHECK(pipc_mq_setattr(q, &set, NULL) == 0);
  CHECK(pipc_mq_getattr(q, &now) == 0);
  CHECK(now.mq_flags == 0);
  /* A NULL new value only reads. */
  CHECK(pipc_mq_setattr(q, NULL, &old) == 0);
  CHECK(old.mq_flags == 0 && old.mq_maxmsg == 3);
  pipc_mq_close(other);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

/* ---- notification ---- */

static volatile sig_atomic_t usr1_count;
static volatile sig_atomic_t usr1_value;

static void on_usr1(int signo, siginfo_t* info, void* context) {
  (void)signo;
  (void)context;
  usr1_value = info->si_value.sival_int;
  usr1_count = usr1_count + 1;
}

static void install_usr1(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_usr1;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  usr1_count = 0;
  usr1_value = 0;
}

static struct sigevent signal_event(int value) {
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_SIGNAL;
  ev.sigev_signo = SIGUSR1;
  ev.sigev_value.sival_int = value;
  return ev;
}

static void test_notify_signal_self(void) {
  const char* n = qname("notifysig");
  pipc_mqd_t q = create(n, 0, 4, 8);
  install_usr1();
  struct sigevent ev = signal_event(42);
  CHECK(pipc_mq_notify(q, &ev) == 0);
  CHECK_ERR(pipc_mq_notify(q, &ev), EBUSY); /* one registration, even our own */
  CHECK(pipc_mq_send(q, "a", 1, 0) == 0);
  /* The handler ran before the send returned. */
  CHECK(usr1_count == 1);
  CHECK(usr1_value == 42);
  /* One-shot: the queue is empty again, but nobody is registered. */
  char buf[8];
  CHECK(pipc_mq_receive(q, buf, sizeof buf, NULL) == 1);
  CHECK(pipc_mq_send(q, "b", 1, 0) == 0);
  CHECK(usr1_count == 1);
  /* Only a send into an empty queue notifies. */
  ev = signal_event(7);
  CHECK(pipc_mq_notify(q, &ev) == 0);
  CHECK(pipc_mq_send(q, "c", 1, 0) == 0);
  CHECK(usr1_count == 1);
  CHECK(pipc_mq_receive(q, buf, sizeof buf, NULL) == 1);
  CHECK(pipc_mq_receive(q, buf, sizeof buf, NULL) == 1);
  CHECK(pipc_mq_send(q, "d", 1, 0) == 0);
  CHECK(usr1_count == 2 && usr1_value == 7);
  /* Signal 0 registers and, once a message arrives, sends nothing (as on Linux); the
     registration is then used up, so a second one succeeds. */
  CHECK(pipc_mq_receive(q, buf, sizeof buf, NULL) == 1);
  ev.sigev_signo = 0;
  CHECK(pipc_mq_notify(q, &ev) == 0);
  CHECK_ERR(pipc_mq_notify(q, &ev), EBUSY);
  CHECK(pipc_mq_send(q, "e", 1, 0) == 0);
  CHECK(usr1_count == 2);
  CHECK(pipc_mq_notify(q, &ev) == 0);
  CHECK(pipc_mq_notify(q, NULL) == 0);
  CHECK(pipc_mq_receive(q, buf, sizeof buf, NULL) == 1);
  /* A bad signal number is EINVAL. */
  ev.sigev_signo = -1;
  CHECK_ERR(pipc_mq_notify(q, &ev), EINVAL);
  ev.sigev_signo = 100000;
  CHECK_ERR(pipc_mq_notify(q, &ev), EINVAL);
  ev.sigev_notify = 12345;
  CHECK_ERR(pipc_mq_notify(q, &ev), EINVAL);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static void test_notify_cancel_and_close(void) {
  const char* n = qname("notifycancel");
  pipc_mqd_t q = create(n, 0, 4, 8);
  pipc_mqd_t q2 = pipc_mq_open(n, O_RDWR);
  install_usr1();
  struct sigevent ev = signal_event(1);
  CHECK(pipc_mq_notify(q, NULL) == 0); /* nothing to cancel: fine */
  CHECK(pipc_mq_notify(q, &ev) == 0);
  CHECK(pipc_mq_notify(q, NULL) == 0);
  CHECK(pipc_mq_send(q, "a", 1, 0) == 0);
  CHECK(usr1_count == 0);
  char buf[8];
  CHECK(pipc_mq_receive(q, buf, sizeof buf, NULL) == 1);
  /* Closing the registering descriptor removes the registration. */
  CHECK(pipc_mq_notify(q2, &ev) == 0);
  CHECK(pipc_mq_close(q2) == 0);
  CHECK(pipc_mq_send(q, "a", 1, 0) == 0);
  CHECK(usr1_count == 0);
  CHECK(pipc_mq_notify(q, &ev) == 0);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static void test_notify_none(void) {
  const char* n = qname("notifynone");
  pipc_mqd_t q = create(n, 0, 4, 8);
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_NONE;
  CHECK(pipc_mq_notify(q, &ev) == 0);
  CHECK_ERR(pipc_mq_notify(q, &ev), EBUSY);
  CHECK(pipc_mq_send(q, "a", 1, 0) == 0); /* consumes the registration, silently */
  CHECK(pipc_mq_notify(q, &ev) == 0);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static void test_notify_ebusy_from_child(void) {
  const char* n = qname("notifybusy");
  pipc_mqd_t q = create(n, 0, 4, 8);
  install_usr1();
  struct sigevent ev = signal_event(3);
  CHECK(pipc_mq_notify(q, &ev) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    /* With the inherited descriptor and with a new one: the parent is registered. */
    struct sigevent mine = signal_event(4);
    int ok = pipc_mq_notify(q, &mine) == -1 && errno == EBUSY;
    pipc_mqd_t own = pipc_mq_open(n, O_RDWR);
    ok = ok && own != (pipc_mqd_t)-1 && pipc_mq_notify(own, &mine) == -1 && errno == EBUSY;
    /* Nor may the child cancel the parent's registration. */
    ok = ok && pipc_mq_notify(q, NULL) == 0;
    _exit(ok ? 0 : 1);
  }
  CHECK(pid > 0);
  CHECK(wait_child(pid, 10000) == 0);
  /* Still registered: a send notifies the parent. */
  CHECK(pipc_mq_send(q, "a", 1, 0) == 0);
  CHECK(usr1_count == 1 && usr1_value == 3);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static pthread_mutex_t thread_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t thread_cond = PTHREAD_COND_INITIALIZER;
static int thread_calls;
static int thread_value;
static pthread_t thread_caller;

static void on_notify_thread(union sigval value) {
  pthread_mutex_lock(&thread_mutex);
  ++thread_calls;
  thread_value = value.sival_int;
  thread_caller = pthread_self();
  pthread_cond_broadcast(&thread_cond);
  pthread_mutex_unlock(&thread_mutex);
}

/* Waits up to `ms` for thread_calls to reach `count`. */
static int wait_thread_calls(int count, long ms) {
  struct timespec until = realtime_in_ms(ms);
  pthread_mutex_lock(&thread_mutex);
  while (thread_calls < count) {
    if (pthread_cond_timedwait(&thread_cond, &thread_mutex, &until) == ETIMEDOUT) break;
  }
  int calls = thread_calls;
  pthread_mutex_unlock(&thread_mutex);
  return calls;
}

static void test_notify_thread(void) {
  const char* n = qname("notifythread");
  pipc_mqd_t q = create(n, 0, 4, 8);
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_THREAD;
  ev.sigev_notify_function = on_notify_thread;
  ev.sigev_value.sival_int = 99;
  CHECK(pipc_mq_notify(q, &ev) == 0);
  CHECK_ERR(pipc_mq_notify(q, &ev), EBUSY);
  CHECK(pipc_mq_send(q, "a", 1, 0) == 0);
  CHECK(wait_thread_calls(1, 5000) == 1);
  pthread_mutex_lock(&thread_mutex);
  CHECK(thread_value == 99);
  CHECK(!pthread_equal(thread_caller, pthread_self()));
  pthread_mutex_unlock(&thread_mutex);
  /* One-shot, and may be registered again. */
  char buf[8];
  CHECK(pipc_mq_receive(q, buf, sizeof buf, NULL) == 1);
  ev.sigev_value.sival_int = 100;
  CHECK(wait_thread_calls(2, 50) == 1);
  CHECK(pipc_mq_notify(q, &ev) == 0);
  CHECK(pipc_mq_send(q, "b", 1, 0) == 0);
  CHECK(wait_thread_calls(2, 5000) == 2);
  pthread_mutex_lock(&thread_mutex);
  CHECK(thread_value == 100);
  pthread_mutex_unlock(&thread_mutex);
  /* A cancelled registration never calls. */
  CHECK(pipc_mq_receive(q, buf, sizeof buf, NULL) == 1);
  CHECK(pipc_mq_notify(q, &ev) == 0);
  CHECK(pipc_mq_notify(q, NULL) == 0);
  CHECK(pipc_mq_send(q, "c", 1, 0) == 0);
  CHECK(wait_thread_calls(3, 100) == 2);
  /* SIGEV_THREAD without a function is EINVAL. */
  ev.sigev_notify_function = NULL;
  CHECK_ERR(pipc_mq_notify(q, &ev), EINVAL);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

/* The pattern of the mq_notify man page: the callback registers again. */
static pipc_mqd_t rearm_queue;
static int rearm_ok = 1;

static void on_notify_rearm(union sigval value) {
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_THREAD;
  ev.sigev_notify_function = on_notify_rearm;
  ev.sigev_value = value;
  char buf[8];
  pthread_mutex_lock(&thread_mutex);
  if (pipc_mq_notify(rearm_queue, &ev) != 0) rearm_ok = 0;
  if (pipc_mq_receive(rearm_queue, buf, sizeof buf, NULL) != 1) rearm_ok = 0;
  ++thread_calls;
  pthread_cond_broadcast(&thread_cond);
  pthread_mutex_unlock(&thread_mutex);
}

static void test_notify_thread_rearms_from_callback(void) {
  const char* n = qname("notifyrearm");
  rearm_queue = create(n, 0, 4, 8);
  pthread_mutex_lock(&thread_mutex);
  thread_calls = 0;
  pthread_mutex_unlock(&thread_mutex);
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_THREAD;
  ev.sigev_notify_function = on_notify_rearm;
  CHECK(pipc_mq_notify(rearm_queue, &ev) == 0);
  int round;
  for (round = 1; round <= 3; ++round) {
    CHECK(pipc_mq_send(rearm_queue, "a", 1, 0) == 0);
    CHECK(wait_thread_calls(round, 5000) == round);
  }
  pthread_mutex_lock(&thread_mutex);
  CHECK(rearm_ok);
  pthread_mutex_unlock(&thread_mutex);
  pipc_mq_close(rearm_queue);
  pipc_mq_unlink(n);
}

static void test_unlink_semantics(void) {
  const char* n = qname("unlink");
  pipc_mqd_t q = create(n, 0, 4, 8);
  CHECK(pipc_mq_send(q, "old", 3, 0) == 0);
  CHECK(pipc_mq_unlink(n) == 0);
  /* The name is gone at once ... */
  CHECK_ERR(pipc_mq_open(n, O_RDWR), ENOENT);
  /* ... the open descriptor keeps working ... */
  CHECK(pipc_mq_send(q, "old2", 4, 0) == 0);
  struct pipc_mq_attr a;
  CHECK(pipc_mq_getattr(q, &a) == 0 && a.mq_curmsgs == 2);
  /* ... and a new open of the name makes a new, empty queue. */
  pipc_mqd_t fresh = create(n, 0, 2, 8);
  CHECK(pipc_mq_getattr(fresh, &a) == 0 && a.mq_curmsgs == 0 && a.mq_maxmsg == 2);
  char buf[8];
  CHECK(pipc_mq_receive(q, buf, sizeof buf, NULL) == 3 && memcmp(buf, "old", 3) == 0);
  pipc_mq_close(q);
  pipc_mq_close(fresh);
  CHECK(pipc_mq_unlink(n) == 0);
}

static volatile sig_atomic_t usr2_count;

static void on_usr2(int signo) {
  (void)signo;
  usr2_count = usr2_count + 1;
}

/* A child blocks in pipc_mq_receive; the parent signals it (again and again, in case
 * a signal lands before the child sleeps) until the child exits. With SA_RESTART the
 * receive goes on and gets the message the parent finally sends; without, it fails
 * with EINTR. */
static int run_signal_child(const char* n, int restart) {
  int ready[2];
  if (pipe(ready) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (restart) {
      /* pipc cannot tell which signal interrupted a wait, so it restarts only when
         every unblocked handler has SA_RESTART: drop the handlers that earlier tests
         installed in this process (docs/c-api.md). */
      int s;
      sa.sa_handler = SIG_DFL;
      sigemptyset(&sa.sa_mask);
      for (s = 1; s < 32; ++s) {
        if (s != SIGKILL && s != SIGSTOP && s != SIGUSR2) sigaction(s, &sa, NULL);
      }
    }
    sa.sa_handler = on_usr2;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    pipc_mqd_t q = pipc_mq_open(n, O_RDONLY);
    if (write(ready[1], "r", 1) != 1) _exit(10);
    char buf[8];
    ssize_t r = pipc_mq_receive(q, buf, sizeof buf, NULL);
    if (restart) _exit(r == 1 && usr2_count > 0 ? 0 : 2);
    _exit(r == -1 && errno == EINTR && usr2_count > 0 ? 0 : 3);
  }
  if (pid < 0) return -1;
  char c;
  if (read(ready[0], &c, 1) != 1) return -1;
  close(ready[0]);
  close(ready[1]);
  int status = -1;
  int round;
  for (round = 0; round < 100; ++round) {
    sleep_ms(20);
    int st = 0;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      break;
    }
    kill(pid, SIGUSR2);
    if (restart && round == 10) {
      pipc_mqd_t q = pipc_mq_open(n, O_WRONLY);
      pipc_mq_send(q, "m", 1, 0);
      pipc_mq_close(q);
    }
  }
  if (round == 100) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  return status;
}

static void test_eintr(void) {
  const char* n = qname("eintr");
  pipc_mqd_t q = create(n, 0, 4, 8);
  CHECK(run_signal_child(n, 0) == 0);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static void test_sa_restart_restarts(void) {
  const char* n = qname("restart");
  pipc_mqd_t q = create(n, 0, 4, 8);
  CHECK(run_signal_child(n, 1) == 0);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static void test_fork_inherits_descriptor(void) {
  const char* n = qname("fork");
  pipc_mqd_t q = create(n, 0, 4, 16);
  CHECK(pipc_mq_send(q, "ping", 4, 1) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    char buf[16];
    unsigned prio = 0;
    int ok = pipc_mq_receive(q, buf, sizeof buf, &prio) == 4 && memcmp(buf, "ping", 4) == 0 && prio == 1;
    ok = ok && pipc_mq_send(q, "pong", 4, 2) == 0;
    ok = ok && pipc_mq_close(q) == 0; /* closes the child's copy only */
    _exit(ok ? 0 : 1);
  }
  CHECK(pid > 0);
  CHECK(wait_child(pid, 10000) == 0);
  char buf[16];
  unsigned prio = 0;
  CHECK(pipc_mq_receive(q, buf, sizeof buf, &prio) == 4 && memcmp(buf, "pong", 4) == 0 && prio == 2);
  CHECK(pipc_mq_close(q) == 0);
  pipc_mq_unlink(n);
}

static void test_timed_receive_across_processes(void) {
  const char* n = qname("xproc");
  pipc_mqd_t q = create(n, 0, 4, 16);
  pid_t pid = fork();
  if (pid == 0) {
    sleep_ms(50);
    pipc_mqd_t w = pipc_mq_open(n, O_WRONLY);
    _exit(w != (pipc_mqd_t)-1 && pipc_mq_send(w, "late", 4, 0) == 0 ? 0 : 1);
  }
  struct timespec t = realtime_in_ms(5000);
  char buf[16];
  CHECK(pipc_mq_timedreceive(q, buf, sizeof buf, NULL, &t) == 4);
  CHECK(wait_child(pid, 10000) == 0);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

static void test_descriptor_numbers(void) {
  const char* n = qname("numbers");
  pipc_mqd_t q = create(n, 0, 1, 8);
  /* A file descriptor, close-on-exec as the kernel's. */
  CHECK(fcntl((int)q, F_GETFD) == FD_CLOEXEC);
  struct pipc_mq_attr a;
  CHECK(pipc_mq_getattr(q, &a) == 0);
  /* Many at once, all distinct. */
  pipc_mqd_t many[64];
  int i, j;
  for (i = 0; i < 64; ++i) {
    many[i] = pipc_mq_open(n, O_RDWR);
    CHECK(many[i] != (pipc_mqd_t)-1);
    for (j = 0; j < i; ++j) CHECK(many[i] != many[j]);
  }
  for (i = 0; i < 64; ++i) CHECK(pipc_mq_close(many[i]) == 0);
  pipc_mq_close(q);
  pipc_mq_unlink(n);
}

/* ---- main ---- */

struct test {
  const char* name;
  void (*run)(void);
};

/* Zero copy (pipc extensions): a slot filled in place and committed, a message read in
 * place and ended, from a forked writer to this process; errors as errno. */
static void test_zero_copy(void) {
  const char* n = qname("zc");
  pipc_mqd_t q = create(n, 0, 2, 4096);
  pid_t pid;
  size_t len = 0;
  unsigned prio = 0;
  const char* msg;
  char* slot;
  int i, ok = 1;
  pid = fork();
  if (pid == 0) {
    pipc_mqd_t w = pipc_mq_open(n, O_WRONLY);
    char* s = pipc_mq_send_begin(w, 4096);
    if (s == NULL) _exit(1);
    for (i = 0; i < 4096; ++i) s[i] = (char)(i & 0x7f);
    _exit(pipc_mq_send_commit(w, s, 4096, 7) == 0 ? 0 : 2);
  }
  CHECK(wait_child(pid, 10000) == 0);
  msg = pipc_mq_receive_begin(q, &len, &prio);
  CHECK(msg != NULL);
  if (msg != NULL) {
    CHECK(len == 4096 && prio == 7);
    for (i = 0; i < 4096; ++i) ok &= msg[i] == (char)(i & 0x7f);
    CHECK(ok);
    CHECK(pipc_mq_receive_end(q, msg) == 0);
    CHECK_ERR(pipc_mq_receive_end(q, msg), EINVAL);
  }
  slot = pipc_mq_send_begin(q, 5);
  CHECK(slot != NULL);
  if (slot != NULL) {
    CHECK_ERR(pipc_mq_send_commit(q, slot, 4097, 0), EMSGSIZE);
    CHECK_ERR(pipc_mq_send_commit(q, slot, 5, PIPC_MQ_PRIO_MAX), EINVAL);
    CHECK(pipc_mq_send_abort(q, slot) == 0);
  }
  CHECK_ERR(pipc_mq_send_abort(q, slot), EINVAL);
  CHECK_ERR(pipc_mq_send_commit(-1, slot, 1, 0), EBADF);
  {
    struct timespec soon;
    size_t got = 0;
    clock_gettime(CLOCK_REALTIME, &soon);
    soon.tv_nsec += 20000000;
    if (soon.tv_nsec >= 1000000000) {
      soon.tv_nsec -= 1000000000;
      soon.tv_sec += 1;
    }
    errno = 0;
    CHECK(pipc_mq_timedreceive_begin(q, &got, NULL, &soon) == NULL && errno == ETIMEDOUT);
  }
  CHECK(pipc_mq_close(q) == 0);
  CHECK(pipc_mq_unlink(n) == 0);
}

int main(void) {
  const struct test tests[] = {
      {"open_create_exists_enoent", test_open_create_exists_enoent},
      {"name_errors", test_name_errors},
      {"bad_attributes", test_bad_attributes},
      {"default_attributes", test_default_attributes},
      {"attributes_beyond_kernel_caps", test_attributes_beyond_kernel_caps},
      {"priority_order", test_priority_order},
      {"prio_max", test_prio_max},
      {"emsgsize", test_emsgsize},
      {"ebadf_access_mode", test_ebadf_access_mode},
      {"access_mode_both_bits", test_access_mode_both_bits},
      {"ebadf_closed_and_unknown", test_ebadf_closed_and_unknown},
      {"eagain_nonblocking", test_eagain_nonblocking},
      {"etimedout", test_etimedout},
      {"einval_bad_timespec", test_einval_bad_timespec},
      {"setattr_getattr", test_setattr_getattr},
      {"notify_signal_self", test_notify_signal_self},
      {"notify_cancel_and_close", test_notify_cancel_and_close},
      {"notify_none", test_notify_none},
      {"notify_ebusy_from_child", test_notify_ebusy_from_child},
      {"notify_thread", test_notify_thread},
      {"notify_thread_rearms_from_callback", test_notify_thread_rearms_from_callback},
      {"unlink_semantics", test_unlink_semantics},
      {"eintr", test_eintr},
      {"sa_restart_restarts", test_sa_restart_restarts},
      {"fork_inherits_descriptor", test_fork_inherits_descriptor},
      {"timed_receive_across_processes", test_timed_receive_across_processes},
      {"descriptor_numbers", test_descriptor_numbers},
      {"zero_copy", test_zero_copy},
  };
  const int count = (int)(sizeof tests / sizeof tests[0]);
  int passed = 0, failed = 0, i;
  for (i = 0; i < count; ++i) {
    checks_failed = 0;
    tests[i].run();
    if (checks_failed == 0) {
      ++passed;
      printf("ok   %s\n", tests[i].name);
    } else {
      ++failed;
      printf("FAIL %s\n", tests[i].name);
    }
    fflush(stdout);
  }
  for (i = 0; i < 16; ++i) {
    if (names[i][0] != '\0') pipc_mq_unlink(names[i]);
  }
  printf("capi: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
