/* breaker.h -- a circuit breaker per (caller, instance), shared by every
 * thread, context and pipe of the caller (contract §5).
 *
 * Closed: calls pass; the outcomes of the last `window` calls are kept.
 * When at least `min_calls` of them are recorded and failed-or-slow ones
 * make up `failure_rate_pct` % or more, it opens. It also opens at once on
 * shop_breaker_trip (the instance's pipe closed).
 * Open: calls are refused (counted as not permitted) for `open_wait_us`,
 * then it is half-open; at once on shop_breaker_retry_now (the instance
 * came back).
 * Half-open: `half_open_calls` trial calls are admitted; when all succeed
 * it closes (with an empty window), on the first failure it opens again.
 * Failures are what the caller says they are: transport errors, timeouts,
 * UNAVAILABLE/INTERNAL replies — never a business answer like NOT_FOUND.
 * Time is passed in (monotonic µs), so tests drive it without sleeping. */
#ifndef SHOP_BREAKER_H
#define SHOP_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct shop_breaker_config {
	int window;           /* count window, ≥ 1 (default 20) */
	int min_calls;        /* fewest calls before the rate counts (default 10) */
	int failure_rate_pct; /* 1..100 (default 50) */
	int64_t slow_call_us; /* a success slower than this counts as failed; 0: never */
	int64_t open_wait_us; /* open → half-open (default 5 s) */
	int half_open_calls;  /* trial calls in half-open (default 3) */
} shop_breaker_config;

/* The defaults of §5. */
void shop_breaker_config_default(shop_breaker_config *c);

typedef enum {
	SHOP_BREAKER_CLOSED,
	SHOP_BREAKER_OPEN,
	SHOP_BREAKER_HALF_OPEN,
} shop_breaker_state;

/* "closed", "open", "half_open" (Resilience4j's state label values). */
const char *shop_breaker_state_name(shop_breaker_state s);

typedef struct shop_breaker shop_breaker;

/* name is copied (e.g. "gateway:product-a"). NULL when out of memory or
 * the config is out of range. Caller frees with shop_breaker_destroy. */
shop_breaker *shop_breaker_create(const shop_breaker_config *c, const char *name);
void shop_breaker_destroy(shop_breaker *b); /* accepts NULL */
const char *shop_breaker_name(const shop_breaker *b);

/* May a call start now? When true the caller must report its outcome
 * exactly once with shop_breaker_record. When false the refusal is counted. */
bool shop_breaker_admit(shop_breaker *b, int64_t now_us);
/* Whether a call would be admitted, without taking a half-open trial slot
 * or counting a refusal (for choosing among instances). */
bool shop_breaker_would_admit(shop_breaker *b, int64_t now_us);

/* The outcome of an admitted call. */
void shop_breaker_record(shop_breaker *b, bool success, int64_t duration_us, int64_t now_us);

/* An admitted call with no outcome to record: it was shed (the caller's
 * own queue to the instance was full, or the instance answered
 * RESOURCE_EXHAUSTED), so it says nothing about the instance's health.
 * It counts neither as a success nor as a failure, nor in the window; a
 * half-open breaker gets its trial slot back. Instead of
 * shop_breaker_record, exactly once. */
void shop_breaker_release(shop_breaker *b);

/* Opens at once (the instance's connection closed). */
void shop_breaker_trip(shop_breaker *b, int64_t now_us);

/* The instance came back (a new connection to it, or a new advert: a
 * restarted process): an open breaker goes half-open at once, with fresh
 * trial counts and a fresh half-open clock, instead of waiting out its
 * open period. Closed and half-open breakers are left as they are (a
 * half-open one already admits trials). Returns true when it moved. */
bool shop_breaker_retry_now(shop_breaker *b, int64_t now_us);

typedef struct shop_breaker_stats {
	shop_breaker_state state;
	int failure_rate_pct; /* over the window; -1 below min_calls */
	uint64_t successful;  /* calls recorded as successful, ever */
	uint64_t failed;      /* calls recorded as failed or slow, ever */
	uint64_t not_permitted;
} shop_breaker_stats;

void shop_breaker_stats_get(shop_breaker *b, int64_t now_us, shop_breaker_stats *out);

#endif
