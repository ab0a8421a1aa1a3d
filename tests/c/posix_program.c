/* A plain POSIX message-queue program, written against <mqueue.h> and nothing else.
 *
 * The tests build it unchanged with `-include pipc/compat/mqueue.h` and link it with
 * pipc, so that it runs on pipc's engine. It asks for 100 messages per queue, which
 * the kernel refuses (EINVAL) beyond /proc/sys/fs/mqueue/msg_max (10 by default) to
 * anyone but root: a run that succeeds there did not use kernel queues. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MESSAGES 100
#define MSGSIZE 128

static int failures;

static void expect(int ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "posix_program: %s failed (errno %d: %s)\n", what, errno, strerror(errno));
    ++failures;
  }
}

int main(void) {
  char name[64];
  snprintf(name, sizeof name, "/pipc_posix_program_%ld", (long)getpid());
  mq_unlink(name);

  struct mq_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.mq_maxmsg = MESSAGES;
  attr.mq_msgsize = MSGSIZE;
  mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
  if (q == (mqd_t)-1) {
    fprintf(stderr, "posix_program: mq_open %s with maxmsg %d failed: %s\n", name, MESSAGES, strerror(errno));
    return 1;
  }

  struct mq_attr got;
  expect(mq_getattr(q, &got) == 0, "mq_getattr");
  expect(got.mq_maxmsg == MESSAGES && got.mq_msgsize == MSGSIZE && got.mq_curmsgs == 0, "attributes");

  /* Fill the queue; message i has priority i % 10. */
  int i;
  for (i = 0; i < MESSAGES; ++i) {
    char text[MSGSIZE];
    int len = snprintf(text, sizeof text, "message %d", i);
    expect(mq_send(q, text, (size_t)len + 1, (unsigned)(i % 10)) == 0, "mq_send");
  }
  expect(mq_getattr(q, &got) == 0 && got.mq_curmsgs == MESSAGES, "mq_curmsgs after sending");

  /* Highest priority first; oldest first within a priority. */
  unsigned last_prio = MQ_PRIO_MAX;
  int last_index = -1;
  for (i = 0; i < MESSAGES; ++i) {
    char text[MSGSIZE];
    unsigned prio = 0;
    ssize_t len = mq_receive(q, text, sizeof text, &prio);
    expect(len > 0, "mq_receive");
    if (len <= 0) break;
    int index = atoi(text + strlen("message "));
    expect(index % 10 == (int)prio, "priority of message");
    expect(prio < last_prio || (prio == last_prio && index > last_index), "receive order");
    last_prio = prio;
    last_index = index;
  }

  /* An empty queue and a deadline in the past: ETIMEDOUT. */
  struct timespec past;
  clock_gettime(CLOCK_REALTIME, &past);
  past.tv_sec -= 1;
  char buf[MSGSIZE];
  expect(mq_timedreceive(q, buf, sizeof buf, NULL, &past) == -1 && errno == ETIMEDOUT, "mq_timedreceive timeout");

  /* Non-blocking through mq_setattr: EAGAIN. */
  struct mq_attr nonblocking;
  memset(&nonblocking, 0, sizeof nonblocking);
  nonblocking.mq_flags = O_NONBLOCK;
  expect(mq_setattr(q, &nonblocking, NULL) == 0, "mq_setattr");
  expect(mq_receive(q, buf, sizeof buf, NULL) == -1 && errno == EAGAIN, "non-blocking mq_receive");

  /* A second descriptor, opened the two-argument way. */
  mqd_t reader = mq_open(name, O_RDONLY);
  expect(reader != (mqd_t)-1, "mq_open existing");
  expect(mq_send(reader, "x", 1, 0) == -1 && errno == EBADF, "mq_send on O_RDONLY");
  expect(mq_close(reader) == 0, "mq_close reader");

  expect(mq_close(q) == 0, "mq_close");
  expect(mq_unlink(name) == 0, "mq_unlink");
  expect(mq_open(name, O_RDONLY) == (mqd_t)-1 && errno == ENOENT, "mq_open after unlink");

  if (failures != 0) return 1;
  printf("posix_program: ok (%d messages in one queue)\n", MESSAGES);
  return 0;
}
