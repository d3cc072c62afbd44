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

#include <stdint.h>

#include "order.pb-c.h"
#include "redis.h"

typedef enum {
	ORDER_CACHE_HIT,
	ORDER_CACHE_MISS,
	ORDER_CACHE_BYPASS, /* Redis unreachable, or the order is dirty */
} order_cache_result;

/* Looks id up. On HIT, *out is the unpacked order (caller frees with
 * shop__v1__order__free_unpacked). r may be NULL (no Redis: BYPASS). */
order_cache_result order_cache_get(shop_redis *r, int64_t id, Shop__V1__Order **out);

/* Stores o at version (compare-and-set), with ttl_s seconds ±10 %. A
 * failed store marks the order dirty. Returns 0 when stored or refused as
 * older, -1 when Redis failed. */
int order_cache_put(shop_redis *r, const Shop__V1__Order *o, int64_t version, int ttl_s);

/* True when this process failed to store the order's latest value. */
int order_cache_is_dirty(int64_t id);

#endif
