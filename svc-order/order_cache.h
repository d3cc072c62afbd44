/* order_cache.h -- GetOrder's Redis cache: the packed Order under
 * "shop:order:v1:<id>" (v1: the layout of the value), with its version.
 *
 * Coherence: every write is a compare-and-set on the order's version (a Lua
 * script): a value is stored only when it is newer than the cached one.
 * Writers store the new value after their commit; readers fill a miss with
 * what they read. A reader that read before a commit can therefore never
 * overwrite the committed value, whichever lands first. A writer whose
 * cache write fails (Redis down or slow) marks the order dirty in this
 * process: reads of a dirty order go to PostgreSQL until a fresh value has
 * been stored. */
#ifndef ORDER_CACHE_H
#define ORDER_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "order.pb-c.h"
#include "redis_loop.h"

typedef enum {
	ORDER_CACHE_HIT,
	ORDER_CACHE_MISS,
	ORDER_CACHE_BYPASS, /* Redis unreachable, or the order is dirty */
} order_cache_result;

/* A lookup's outcome, on the cache's thread (must not block): HIT with the
 * stored Order's bytes (borrowed for the call; well formed, owned by
 * user_id), MISS (absent, or a value that does not parse) or BYPASS (Redis
 * failed, or did not answer within its bound). */
typedef void (*order_cache_fn)(void *arg, order_cache_result res, int64_t user_id,
			       const uint8_t *order, size_t len);

/* Looks id up without waiting. Returns 0 when fn will run once, on the
 * cache's thread; -1 when the answer is BYPASS at once (l NULL: no Redis;
 * the order is dirty; Redis failed a moment ago): fn never runs. Every
 * lookup counts in shop_cache_requests_total. */
int order_cache_get(shop_redis_loop *l, int64_t id, order_cache_fn fn, void *arg);

/* Stores o at version (compare-and-set), with ttl_s seconds ±10 %, and
 * waits for Redis's answer (at most its bound): for worker threads. A
 * failed store marks the order dirty. Returns 0 when stored or refused as
 * older, -1 when Redis failed. */
int order_cache_put(shop_redis_loop *l, const Shop__V1__Order *o, int64_t version, int ttl_s);

/* True when this process failed to store the order's latest value. */
int order_cache_is_dirty(int64_t id);

#endif
