/* Clock helpers of the C test programs (tests/c, tests/preload, tests/conformance).
 * Plain C99 and POSIX, nothing of pipc's: the programs that include it must stay
 * programs that know nothing of pipc. */
#ifndef PIPC_TESTS_C_TEST_CLOCK_H
#define PIPC_TESTS_C_TEST_CLOCK_H

#include <time.h>

/* The absolute CLOCK_REALTIME time `ms` milliseconds from now, as mq_timed* take it. */
static inline struct timespec realtime_in_ms(long ms) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  t.tv_sec += ms / 1000;
  t.tv_nsec += (ms % 1000) * 1000000L;
  if (t.tv_nsec >= 1000000000L) {
    t.tv_sec += 1;
    t.tv_nsec -= 1000000000L;
  }
  return t;
}

#endif /* PIPC_TESTS_C_TEST_CLOCK_H */
