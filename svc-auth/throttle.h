/* throttle.h -- failed sign-ins limited per name and per client address,
 * with token buckets kept in Redis (the scheme of Spring Cloud Gateway's
 * RedisRateLimiter: a Lua script refills and takes tokens atomically).
 * Every sign-in takes a token before its password is checked and gives it
 * back unless the password was wrong, so only failures keep tokens taken;
 * a bucket refills one token every per_token_ms up to burst. Redis down or
 * slow never locks anyone out: the take then lets the sign-in through. */
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

/* Reserves the right to check one password: when every bucket (name may
 * be NULL, addr NULL or "") holds a whole token, takes one from each and
 * returns 0; otherwise takes nothing and returns the milliseconds until
 * each would hold one. The check and the take are one atomic Redis step, so
 * that of many concurrent sign-ins for one name exactly burst get through.
 * Returns 0 too when Redis cannot tell (r NULL, down, slow): never lock
 * everyone out. */
int64_t auth_throttle_take(shop_redis *r, const auth_throttle_config *c, const char *name,
			   const char *addr, int64_t now_ms);

/* Gives back the token auth_throttle_take took, capped at burst: the
 * sign-in succeeded, or its password was never checked (the call was shed,
 * the store was down). A wrong password keeps its token taken. Same
 * arguments as the take. */
void auth_throttle_refund(shop_redis *r, const auth_throttle_config *c, const char *name,
			  const char *addr, int64_t now_ms);

#endif
