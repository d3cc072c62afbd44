/* clock.c -- wall and monotonic clocks, and RFC 3339 timestamps. */
#include "clock.h"

#include <errno.h>
#include <poll.h>

#include <stdio.h>
#include <time.h>

int64_t shop_now_unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t shop_now_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void shop_rfc3339_ms(int64_t unix_ms, char *buf, size_t cap)
{
	time_t secs = (time_t)(unix_ms / 1000);
	int ms = (int)(unix_ms % 1000);
	struct tm tm;

	if (ms < 0) {
		ms += 1000;
		secs -= 1;
	}
	gmtime_r(&secs, &tm);
	snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

int shop_cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	int rv;

	if ((rv = pthread_condattr_init(&ca)) != 0)
		return rv;
	if ((rv = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) == 0)
		rv = pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
	return rv;
}

struct timespec shop_mono_deadline(int64_t ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

int shop_wait_fd(int fd, short events, int64_t deadline_us)
{
	struct pollfd p = {.fd = fd, .events = events};
	int64_t left;
	int rv;

	do {
		left = (deadline_us - shop_now_mono_us()) / 1000;
		rv = poll(&p, 1, left > 0 ? (int)(left < 0x7fffffff ? left : 0x7fffffff) : 0);
	} while (rv < 0 && errno == EINTR);
	return rv > 0 ? 0 : -1;
}
