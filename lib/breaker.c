/* breaker.c -- the circuit breaker state machine, one mutex per breaker. */
#include "breaker.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct shop_breaker {
	shop_breaker_config cfg;
	char name[96];
	pthread_mutex_t mtx;
	shop_breaker_state state;
	int64_t opened_at_us;
	/* Closed: a ring of the last cfg.window outcomes (1 = failed). */
	uint8_t *ring;
	int ring_pos, ring_len, ring_failed;
	/* Half-open: trials handed out and their successes so far, and when
	 * the state began. */
	int trials_out, trials_ok;
	int64_t half_open_at_us;
	uint64_t successful, failed, not_permitted;
};

void shop_breaker_config_default(shop_breaker_config *c)
{
	c->window = 20;
	c->min_calls = 10;
	c->failure_rate_pct = 50;
	c->slow_call_us = 0;
	c->open_wait_us = 5 * 1000 * 1000;
	c->half_open_calls = 3;
}

const char *shop_breaker_state_name(shop_breaker_state s)
{
	switch (s) {
	case SHOP_BREAKER_CLOSED:
		return "closed";
	case SHOP_BREAKER_OPEN:
		return "open";
	case SHOP_BREAKER_HALF_OPEN:
		return "half_open";
	}
	return "unknown";
}

shop_breaker *shop_breaker_create(const shop_breaker_config *c, const char *name)
{
	shop_breaker *b;

	if (c->window < 1 || c->min_calls < 1 || c->failure_rate_pct < 1 ||
	    c->failure_rate_pct > 100 || c->half_open_calls < 1 || c->open_wait_us < 0)
		return NULL;
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	if ((b->ring = calloc((size_t)c->window, 1)) == NULL) {
		free(b);
		return NULL;
	}
	b->cfg = *c;
	snprintf(b->name, sizeof(b->name), "%s", name);
	pthread_mutex_init(&b->mtx, NULL);
	return b;
}

void shop_breaker_destroy(shop_breaker *b)
{
	if (b == NULL)
		return;
	pthread_mutex_destroy(&b->mtx);
	free(b->ring);
	free(b);
}

const char *shop_breaker_name(const shop_breaker *b)
{
	return b->name;
}

static void ring_reset(shop_breaker *b)
{
	memset(b->ring, 0, (size_t)b->cfg.window);
	b->ring_pos = b->ring_len = b->ring_failed = 0;
}

static void to_open(shop_breaker *b, int64_t now_us)
{
	b->state = SHOP_BREAKER_OPEN;
	b->opened_at_us = now_us;
	b->trials_out = b->trials_ok = 0;
	ring_reset(b);
}

static void to_half_open(shop_breaker *b, int64_t now_us)
{
	b->state = SHOP_BREAKER_HALF_OPEN;
	b->trials_out = b->trials_ok = 0;
	b->half_open_at_us = now_us;
}

/* Open → half-open once the wait is over. Called under the lock. */
static void tick(shop_breaker *b, int64_t now_us)
{
	if (b->state == SHOP_BREAKER_OPEN && now_us - b->opened_at_us >= b->cfg.open_wait_us)
		to_half_open(b, now_us);
	/* Trials that never report (a caller that lost its answer) must not
	 * hold the breaker half-open for ever: after another open wait with
	 * every trial out, it opens again and later hands out fresh ones (as
	 * Resilience4j's maxWaitDurationInHalfOpenState). */
	if (b->state == SHOP_BREAKER_HALF_OPEN && b->trials_out >= b->cfg.half_open_calls &&
	    now_us - b->half_open_at_us >= b->cfg.open_wait_us)
		to_open(b, now_us);
}

static bool admits(const shop_breaker *b)
{
	return b->state == SHOP_BREAKER_CLOSED ||
	       (b->state == SHOP_BREAKER_HALF_OPEN && b->trials_out < b->cfg.half_open_calls);
}

bool shop_breaker_admit(shop_breaker *b, int64_t now_us)
{
	bool ok;

	pthread_mutex_lock(&b->mtx);
	tick(b, now_us);
	ok = admits(b);
	if (ok && b->state == SHOP_BREAKER_HALF_OPEN)
		b->trials_out++;
	if (!ok)
		b->not_permitted++;
	pthread_mutex_unlock(&b->mtx);
	return ok;
}

bool shop_breaker_would_admit(shop_breaker *b, int64_t now_us)
{
	bool ok;

	pthread_mutex_lock(&b->mtx);
	tick(b, now_us);
	ok = admits(b);
	pthread_mutex_unlock(&b->mtx);
	return ok;
}

void shop_breaker_record(shop_breaker *b, bool success, int64_t duration_us, int64_t now_us)
{
	bool failed = !success || (b->cfg.slow_call_us > 0 && duration_us > b->cfg.slow_call_us);

	pthread_mutex_lock(&b->mtx);
	if (failed)
		b->failed++;
	else
		b->successful++;
	switch (b->state) {
	case SHOP_BREAKER_CLOSED:
		if (b->ring_len == b->cfg.window)
			b->ring_failed -= b->ring[b->ring_pos];
		else
			b->ring_len++;
		b->ring[b->ring_pos] = failed;
		b->ring_failed += failed;
		b->ring_pos = (b->ring_pos + 1) % b->cfg.window;
		if (b->ring_len >= b->cfg.min_calls &&
		    b->ring_failed * 100 >= b->cfg.failure_rate_pct * b->ring_len)
			to_open(b, now_us);
		break;
	case SHOP_BREAKER_HALF_OPEN:
		if (failed) {
			to_open(b, now_us);
		} else if (++b->trials_ok >= b->cfg.half_open_calls) {
			b->state = SHOP_BREAKER_CLOSED;
			ring_reset(b);
		}
		break;
	case SHOP_BREAKER_OPEN:
		/* A call admitted before the breaker opened ends late: it
		 * counts in the totals only. */
		break;
	}
	pthread_mutex_unlock(&b->mtx);
}

void shop_breaker_release(shop_breaker *b)
{
	pthread_mutex_lock(&b->mtx);
	/* A trial handed out in this half-open period (none is when the
	 * breaker opened or closed since the admit) is free again. */
	if (b->state == SHOP_BREAKER_HALF_OPEN && b->trials_out > b->trials_ok)
		b->trials_out--;
	pthread_mutex_unlock(&b->mtx);
}

void shop_breaker_trip(shop_breaker *b, int64_t now_us)
{
	pthread_mutex_lock(&b->mtx);
	if (b->state != SHOP_BREAKER_OPEN)
		to_open(b, now_us);
	pthread_mutex_unlock(&b->mtx);
}

bool shop_breaker_retry_now(shop_breaker *b, int64_t now_us)
{
	bool moved;

	pthread_mutex_lock(&b->mtx);
	tick(b, now_us);
	if ((moved = b->state == SHOP_BREAKER_OPEN))
		to_half_open(b, now_us);
	pthread_mutex_unlock(&b->mtx);
	return moved;
}

void shop_breaker_stats_get(shop_breaker *b, int64_t now_us, shop_breaker_stats *out)
{
	pthread_mutex_lock(&b->mtx);
	tick(b, now_us);
	out->state = b->state;
	out->failure_rate_pct =
	    b->ring_len >= b->cfg.min_calls ? b->ring_failed * 100 / b->ring_len : -1;
	out->successful = b->successful;
	out->failed = b->failed;
	out->not_permitted = b->not_permitted;
	pthread_mutex_unlock(&b->mtx);
}
