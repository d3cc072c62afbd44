/* clock.h -- the few clocks shop reads. */
#ifndef SHOP_CLOCK_H
#define SHOP_CLOCK_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

int64_t shop_now_unix_ms(void); /* CLOCK_REALTIME, ms */
int64_t shop_now_mono_us(void); /* CLOCK_MONOTONIC, µs */
/* RFC 3339 UTC with milliseconds: "2026-11-23T10:00:00.123Z". buf ≥ 32. */
void shop_rfc3339_ms(int64_t unix_ms, char *buf, size_t cap);
/* A condition variable whose timed waits run on CLOCK_MONOTONIC (a wall
 * clock step never shortens or stretches them); 0 or an errno. */
int shop_cond_init_mono(pthread_cond_t *cv);
/* The CLOCK_MONOTONIC instant ms from now, for such a cv's timed wait. */
struct timespec shop_mono_deadline(int64_t ms);
/* Waits (poll, EINTR retried) for events on fd until deadline_us, a
 * CLOCK_MONOTONIC instant in µs; 0 when ready, -1 on time-out or error. */
int shop_wait_fd(int fd, short events, int64_t deadline_us);

#endif
