/* throttle.h -- failed sign-ins limited per name and per client address,
 * with token buckets kept in Redis (the scheme of Spring Cloud Gateway's
 * RedisRateLimiter: a Lua script refills and takes tokens atomically).
 * Only failures take tokens; a bucket refills one token every
 * per_token_ms up to burst. Redis down or slow never locks anyone out: the
 * check then lets the sign-in through. */
#ifndef AUTH_THROTTLE_H
#define AUTH_THROTTLE_H

#include <stdint.h>

#include "redis.h"

typedef struct auth_throttle_config {
	int64_t name_burst;        /* SHOP_SIGNIN_NAME_BURST */
	int64_t name_per_token_ms; /* SHOP_SIGNIN_NAME_REFILL_MS */
	int64_t addr_burst;        /* SHOP_SIGNIN_ADDR_BURST */
	int64_t addr_per_token_ms; /* SHOP_SIGNIN_ADDR_REFILL_MS */
} auth_throttle_config;

/* Milliseconds until a sign-in for name (may be NULL) from addr (may be
 * NULL or "") would be allowed; 0 when it is allowed now, or when Redis
 * cannot tell. r may be NULL (no Redis configured). */
int64_t auth_throttle_check(shop_redis *r, const auth_throttle_config *c, const char *name,
			    const char *addr, int64_t now_ms);

/* Records a failed sign-in: takes a token from each bucket. */
void auth_throttle_fail(shop_redis *r, const auth_throttle_config *c, const char *name,
			const char *addr, int64_t now_ms);

#endif
