/* pmsg: one small command-line program per POSIX message queue call, in the style of
 * the classic pmsg_* teaching programs (written for pipc; it includes <mqueue.h> and
 * nothing of pipc's). tests/conformance/run.sh drives a scenario through it and
 * compares what it prints on the kernel's queues, on the engine through the compat
 * header, and on the engine through the preload library.
 *
 *   pmsg create [-x] [-n] [-m MAXMSG] [-s MSGSIZE] [-p MODE] NAME
 *   pmsg send [-n] NAME MESSAGE [PRIORITY]
 *   pmsg receive [-n] [-t MS] NAME
 *   pmsg getattr NAME
 *   pmsg setattr NAME on|off           (O_NONBLOCK; prints the old and new flags)
 *   pmsg unlink NAME
 *   pmsg notify-signal NAME COUNT      (SIGEV_SIGNAL with a handler, then sigsuspend)
 *   pmsg notify-sigwaitinfo NAME COUNT (SIGEV_SIGNAL, blocked, sigwaitinfo; checks the
 *                                       pointer in si_value)
 *   pmsg notify-thread NAME COUNT      (SIGEV_THREAD)
 *   pmsg poll NAME MS                  (poll(2) for POLLIN on the descriptor)
 *
 * Each prints one line per result; a failure prints "NAME: call: strerror" and exits 1.
 * The notify commands print "ready" once registered, then one line per notification
 * with the messages it drained, and re-register each time (the man page's pattern). */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../c/test_clock.h"

static int fail(const char* name, const char* call) {
  printf("%s: %s: %s\n", name, call, strerror(errno));
  return 1;
}

static int usage(void) {
  fprintf(stderr, "usage: see the comment at the top of tests/conformance/pmsg.c\n");
  return 2;
}

static int cmd_create(int argc, char** argv) {
  int flags = O_RDWR | O_CREAT, opt;
  struct mq_attr attr, *attrp = NULL;
  mode_t mode = 0600;
  memset(&attr, 0, sizeof attr);
  attr.mq_maxmsg = 10;
  attr.mq_msgsize = 2048;
  while ((opt = getopt(argc, argv, "xnm:s:p:")) != -1) {
    switch (opt) {
      case 'x': flags |= O_EXCL; break;
      case 'n': flags |= O_NONBLOCK; break;
      case 'm': attr.mq_maxmsg = atol(optarg); attrp = &attr; break;
      case 's': attr.mq_msgsize = atol(optarg); attrp = &attr; break;
      case 'p': mode = (mode_t)strtol(optarg, NULL, 8); break;
      default: return usage();
    }
  }
  if (optind >= argc) return usage();
  mqd_t q = mq_open(argv[optind], flags, mode, attrp);
  if (q == (mqd_t)-1) return fail(argv[optind], "mq_open");
  printf("%s: created or opened\n", argv[optind]);
  return mq_close(q) == 0 ? 0 : fail(argv[optind], "mq_close");
}

static int cmd_send(int argc, char** argv) {
  int flags = O_WRONLY, opt;
  while ((opt = getopt(argc, argv, "n")) != -1) {
    if (opt != 'n') return usage();
    flags |= O_NONBLOCK;
  }
  if (optind + 1 >= argc) return usage();
  const char* name = argv[optind];
  const char* text = argv[optind + 1];
  unsigned prio = optind + 2 < argc ? (unsigned)atoi(argv[optind + 2]) : 0;
  mqd_t q = mq_open(name, flags);
  if (q == (mqd_t)-1) return fail(name, "mq_open");
  if (mq_send(q, text, strlen(text), prio) != 0) return fail(name, "mq_send");
  printf("%s: sent \"%s\" priority %u\n", name, text, prio);
  mq_close(q);
  return 0;
}

static int cmd_receive(int argc, char** argv) {
  int flags = O_RDONLY, opt;
  long timeout_ms = -1;
  while ((opt = getopt(argc, argv, "nt:")) != -1) {
    if (opt == 'n') flags |= O_NONBLOCK;
    else if (opt == 't') timeout_ms = atol(optarg);
    else return usage();
  }
  if (optind >= argc) return usage();
  const char* name = argv[optind];
  mqd_t q = mq_open(name, flags);
  if (q == (mqd_t)-1) return fail(name, "mq_open");
  struct mq_attr attr;
  if (mq_getattr(q, &attr) != 0) return fail(name, "mq_getattr");
  char* buffer = malloc((size_t)attr.mq_msgsize + 1);
  unsigned prio = 0;
  ssize_t n;
  if (timeout_ms >= 0) {
    struct timespec until = realtime_in_ms(timeout_ms);
    n = mq_timedreceive(q, buffer, (size_t)attr.mq_msgsize, &prio, &until);
  } else {
    n = mq_receive(q, buffer, (size_t)attr.mq_msgsize, &prio);
  }
  if (n < 0) {
    free(buffer);
    return fail(name, timeout_ms >= 0 ? "mq_timedreceive" : "mq_receive");
  }
  buffer[n] = '\0';
  printf("%s: read %zd bytes, priority %u: \"%s\"\n", name, n, prio, buffer);
  free(buffer);
  mq_close(q);
  return 0;
}

static int cmd_getattr(int argc, char** argv) {
  if (argc < 2) return usage();
  mqd_t q = mq_open(argv[1], O_RDONLY);
  if (q == (mqd_t)-1) return fail(argv[1], "mq_open");
  struct mq_attr attr;
  if (mq_getattr(q, &attr) != 0) return fail(argv[1], "mq_getattr");
  printf("%s: maxmsg %ld, msgsize %ld, curmsgs %ld, flags %s\n", argv[1], attr.mq_maxmsg, attr.mq_msgsize,
         attr.mq_curmsgs, (attr.mq_flags & O_NONBLOCK) ? "O_NONBLOCK" : "0");
  mq_close(q);
  return 0;
}

static int cmd_setattr(int argc, char** argv) {
  if (argc < 3) return usage();
  mqd_t q = mq_open(argv[1], O_RDONLY);
  if (q == (mqd_t)-1) return fail(argv[1], "mq_open");
  struct mq_attr set, old, now;
  memset(&set, 0, sizeof set);
  set.mq_flags = strcmp(argv[2], "on") == 0 ? O_NONBLOCK : 0;
  if (mq_setattr(q, &set, &old) != 0) return fail(argv[1], "mq_setattr");
  if (mq_getattr(q, &now) != 0) return fail(argv[1], "mq_getattr");
  printf("%s: flags %s -> %s\n", argv[1], (old.mq_flags & O_NONBLOCK) ? "O_NONBLOCK" : "0",
         (now.mq_flags & O_NONBLOCK) ? "O_NONBLOCK" : "0");
  /* The flag is the descriptor's: a receive on an empty queue now says so at once. */
  char buffer[8192];
  if ((now.mq_flags & O_NONBLOCK) && now.mq_curmsgs == 0 && mq_receive(q, buffer, sizeof buffer, NULL) < 0) {
    printf("%s: mq_receive: %s\n", argv[1], strerror(errno));
  }
  mq_close(q);
  return 0;
}

static int cmd_unlink(int argc, char** argv) {
  if (argc < 2) return usage();
  if (mq_unlink(argv[1]) != 0) return fail(argv[1], "mq_unlink");
  printf("%s: unlinked\n", argv[1]);
  return 0;
}

/* ---- notification ---- */

static mqd_t notify_queue;
static const char* notify_name;
static volatile sig_atomic_t notified;

static void on_signal(int signo) {
  (void)signo;
  notified = 1;
}

static void drain(const char* how) {
  char buffer[8192];
  unsigned prio;
  ssize_t n;
  printf("%s: notified (%s):", notify_name, how);
  while ((n = mq_receive(notify_queue, buffer, sizeof buffer, &prio)) >= 0) {
    printf(" \"%.*s\"/%u", (int)n, buffer, prio);
  }
  printf(" then %s\n", strerror(errno));
  fflush(stdout);
}

static int signal_registration(int signo, void* value) {
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_SIGNAL;
  ev.sigev_signo = signo;
  ev.sigev_value.sival_ptr = value;
  return mq_notify(notify_queue, &ev);
}

static int open_for_notify(const char* name) {
  notify_name = name;
  notify_queue = mq_open(name, O_RDONLY | O_NONBLOCK);
  return notify_queue == (mqd_t)-1 ? -1 : 0;
}

static int cmd_notify_signal(int argc, char** argv) {
  if (argc < 3) return usage();
  int count = atoi(argv[2]);
  if (open_for_notify(argv[1]) != 0) return fail(argv[1], "mq_open");
  sigset_t block, empty;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigprocmask(SIG_BLOCK, &block, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  sigemptyset(&empty);
  if (signal_registration(SIGUSR1, NULL) != 0) return fail(argv[1], "mq_notify");
  /* A second registration, even this process's own, is EBUSY. */
  if (signal_registration(SIGUSR1, NULL) == 0 || errno != EBUSY) return fail(argv[1], "second mq_notify");
  printf("%s: ready\n", argv[1]);
  fflush(stdout);
  for (int i = 0; i < count; ++i) {
    while (!notified) sigsuspend(&empty);
    notified = 0;
    if (i + 1 < count && signal_registration(SIGUSR1, NULL) != 0) return fail(argv[1], "mq_notify");
    drain("signal");
  }
  return 0;
}

static int marker;

static int cmd_notify_sigwaitinfo(int argc, char** argv) {
  if (argc < 3) return usage();
  int count = atoi(argv[2]);
  if (open_for_notify(argv[1]) != 0) return fail(argv[1], "mq_open");
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  sigprocmask(SIG_BLOCK, &block, NULL);
  if (signal_registration(SIGUSR2, &marker) != 0) return fail(argv[1], "mq_notify");
  printf("%s: ready\n", argv[1]);
  fflush(stdout);
  for (int i = 0; i < count; ++i) {
    siginfo_t info;
    if (sigwaitinfo(&block, &info) != SIGUSR2) return fail(argv[1], "sigwaitinfo");
    printf("%s: si_code %s, si_value %s, si_pid %s\n", argv[1], info.si_code == SI_MESGQ ? "SI_MESGQ" : "other",
           info.si_value.sival_ptr == &marker ? "the registered pointer" : "WRONG",
           info.si_pid > 0 && info.si_pid != getpid() ? "the sender" : "WRONG");
    if (i + 1 < count && signal_registration(SIGUSR2, &marker) != 0) return fail(argv[1], "mq_notify");
    drain("sigwaitinfo");
  }
  return 0;
}

static pthread_mutex_t thread_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t thread_cond = PTHREAD_COND_INITIALIZER;
static int thread_calls;

static void register_thread(void);

static void on_thread(union sigval value) {
  if (value.sival_ptr != &marker) printf("%s: WRONG sigev_value\n", notify_name);
  pthread_mutex_lock(&thread_mutex);
  register_thread();
  drain("thread");
  ++thread_calls;
  pthread_cond_broadcast(&thread_cond);
  pthread_mutex_unlock(&thread_mutex);
}

static void register_thread(void) {
  struct sigevent ev;
  memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_THREAD;
  ev.sigev_notify_function = on_thread;
  ev.sigev_value.sival_ptr = &marker;
  if (mq_notify(notify_queue, &ev) != 0) printf("%s: mq_notify: %s\n", notify_name, strerror(errno));
}

static int cmd_notify_thread(int argc, char** argv) {
  if (argc < 3) return usage();
  int count = atoi(argv[2]);
  if (open_for_notify(argv[1]) != 0) return fail(argv[1], "mq_open");
  pthread_mutex_lock(&thread_mutex);
  register_thread();
  printf("%s: ready\n", argv[1]);
  fflush(stdout);
  while (thread_calls < count) pthread_cond_wait(&thread_cond, &thread_mutex);
  pthread_mutex_unlock(&thread_mutex);
  return 0;
}

static int cmd_poll(int argc, char** argv) {
  if (argc < 3) return usage();
  mqd_t q = mq_open(argv[1], O_RDONLY | O_NONBLOCK);
  if (q == (mqd_t)-1) return fail(argv[1], "mq_open");
  struct pollfd p = {(int)q, POLLIN, 0};
  int n = poll(&p, 1, atoi(argv[2]));
  if (n < 0) return fail(argv[1], "poll");
  printf("%s: poll: %s\n", argv[1], n == 0 ? "timed out" : (p.revents & POLLIN) ? "readable" : "other");
  mq_close(q);
  return 0;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) return usage();
  static const struct {
    const char* name;
    int (*run)(int, char**);
  } commands[] = {
      {"create", cmd_create},           {"send", cmd_send},
      {"receive", cmd_receive},         {"getattr", cmd_getattr},
      {"setattr", cmd_setattr},         {"unlink", cmd_unlink},
      {"notify-signal", cmd_notify_signal}, {"notify-sigwaitinfo", cmd_notify_sigwaitinfo},
      {"notify-thread", cmd_notify_thread}, {"poll", cmd_poll},
  };
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; ++i) {
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
  }
  return usage();
}
