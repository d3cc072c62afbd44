/* order_cache.c -- versioned compare-and-set of packed orders in Redis,
 * over the asynchronous connection of lib/redis_loop.c. */
#include "order_cache.h"

#include <inttypes.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balancer.h"
#include "log.h"
#include "metrics.h"

/* KEYS[1]; ARGV: version, packed order, ttl (ms). */
static const char cas_lua[] = "local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')\n"
			      "if cur >= tonumber(ARGV[1]) then return 0 end\n"
			      "redis.call('HSET', KEYS[1], 'v', ARGV[1], 'b', ARGV[2])\n"
			      "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
			      "return 1\n";

#define DIRTY_MAX 65536

/* Orders whose latest value this process could not store, with that
 * value's version: only a store of that version or a newer one clears the
 * mark (a reader that read before the write must not clear it). */
struct dirty_entry {
	int64_t id, version;
};
static pthread_mutex_t dirty_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct dirty_entry dirty[DIRTY_MAX];
static int n_dirty;
static int dirty_overflow; /* past DIRTY_MAX: trust no cached value again */

static void dirty_note(int64_t id, int64_t version, int failed)
{
	pthread_mutex_lock(&dirty_mtx);
	for (int i = 0; i < n_dirty; i++) {
		if (dirty[i].id != id)
			continue;
		if (failed && version > dirty[i].version)
			dirty[i].version = version;
		else if (!failed && version >= dirty[i].version)
			dirty[i] = dirty[--n_dirty];
		goto out;
	}
	if (failed) {
		if (n_dirty < DIRTY_MAX) {
			dirty[n_dirty++] = (struct dirty_entry){id, version};
		} else if (!dirty_overflow) {
			dirty_overflow = 1;
			SHOP_LOG(ERROR, "order cache: too many unsynced orders; cache reads off");
		}
	}
out:
	pthread_mutex_unlock(&dirty_mtx);
}

int order_cache_is_dirty(int64_t id)
{
	int found = 0;

	pthread_mutex_lock(&dirty_mtx);
	found = dirty_overflow;
	for (int i = 0; i < n_dirty && !found; i++)
		found = dirty[i].id == id;
	pthread_mutex_unlock(&dirty_mtx);
	return found;
}

static void cache_key(char buf[40], int64_t id)
{
	snprintf(buf, 40, "shop:order:v1:%" PRId64, id);
}

/* ---- a stored Order read without unpacking it --------------------------- */

static int wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;

	for (int shift = 0; shift < 70 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		x |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*v = x;
			return 0;
		}
	}
	return -1;
}

/* The wire type each field of Order (items: false) or OrderItem (true)
 * must have: 0 varint, 2 length-delimited; -1 for a field it does not
 * have (any wire type protobuf-c skips is then accepted). */
static int wire_type_of(bool item, uint64_t field)
{
	static const int order[] = {-1, 0, 0, 2, 0, 2, 2}, order_item[] = {-1, 0, 2, 0};

	if (item)
		return field < 4 ? order_item[field] : -1;
	return field < 7 ? order[field] : -1;
}

/* Walks every field of an Order (or of an OrderItem) as protobuf-c's unpack
 * would accept it, and takes the Order's user_id (the last one, as an
 * unpack would). Returns 0 when the bytes are well formed. */
static int wire_walk(const uint8_t *p, const uint8_t *end, bool item, int64_t *user_id)
{
	while (p < end) {
		uint64_t key, v;
		int want;

		if (wire_varint(&p, end, &key) != 0 || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
			return -1;
		want = wire_type_of(item, key >> 3);
		if (want >= 0 && (int)(key & 7) != want)
			return -1;
		switch (key & 7) {
		case 0:
			if (wire_varint(&p, end, &v) != 0)
				return -1;
			if (!item && (key >> 3) == 2)
				*user_id = (int64_t)v;
			break;
		case 1:
			if (end - p < 8)
				return -1;
			p += 8;
			break;
		case 2:
			if (wire_varint(&p, end, &v) != 0 || v > (uint64_t)(end - p))
				return -1;
			if (!item && (key >> 3) == 3 && wire_walk(p, p + v, true, user_id) != 0)
				return -1;
			p += v;
			break;
		case 5:
			if (end - p < 4)
				return -1;
			p += 4;
			break;
		default: /* groups: protobuf-c refuses them */
			return -1;
		}
	}
	return 0;
}

/* The owner of a stored Order, read from its bytes: 0 when they are a
 * well-formed Order, -1 otherwise (treated as absent). */
static int order_bytes_owner(const uint8_t *b, size_t len, int64_t *user_id)
{
	*user_id = 0;
	return wire_walk(b, b + len, false, user_id);
}

/* shop_cache_requests_total{cache="order",result}, indexed by
 * order_cache_result: three series, made once. */
static shop_metric *cache_requests[3];

static void cache_metrics_init(void)
{
	shop_metric_family *f = shop_metrics_counter(
	    shop_metrics_default(), "shop_cache_requests_total",
	    "Cache lookups, by cache and result: hit, miss, bypass (cache down or entry dirty).",
	    "cache,result");

	cache_requests[ORDER_CACHE_HIT] = SHOP_METRIC(f, "order", "hit");
	cache_requests[ORDER_CACHE_MISS] = SHOP_METRIC(f, "order", "miss");
	cache_requests[ORDER_CACHE_BYPASS] = SHOP_METRIC(f, "order", "bypass");
}

static void cache_count(order_cache_result res)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, cache_metrics_init);
	shop_metric_inc(cache_requests[res]);
}

/* One lookup in flight: where its outcome goes. */
struct cache_get {
	order_cache_fn fn;
	void *arg;
};

/* On the cache's thread: the HGET's reply (NULL: Redis failed or hangs). */
static void cache_got(void *arg, const redisReply *reply)
{
	struct cache_get g = *(struct cache_get *)arg;
	order_cache_result res = ORDER_CACHE_BYPASS;
	int64_t user_id = 0;

	free(arg);
	if (reply != NULL && reply->type == REDIS_REPLY_STRING)
		/* A value that does not parse is treated as absent. */
		res = order_bytes_owner((const uint8_t *)reply->str, reply->len, &user_id) == 0
			  ? ORDER_CACHE_HIT
			  : ORDER_CACHE_MISS;
	else if (reply != NULL && reply->type == REDIS_REPLY_NIL)
		res = ORDER_CACHE_MISS;
	cache_count(res);
	if (res == ORDER_CACHE_HIT)
		g.fn(g.arg, res, user_id, (const uint8_t *)reply->str, reply->len);
	else
		g.fn(g.arg, res, 0, NULL, 0);
}

int order_cache_get(shop_redis_loop *l, int64_t id, order_cache_fn fn, void *arg)
{
	const char *argv[3] = {"HGET", NULL, "b"};
	struct cache_get *g;
	char key[40];

	if (l == NULL || order_cache_is_dirty(id) || (g = malloc(sizeof(*g))) == NULL)
		goto out_bypass;
	g->fn = fn;
	g->arg = arg;
	cache_key(key, id);
	argv[1] = key;
	if (shop_redis_loop_submit(l, 3, argv, NULL, cache_got, g) == 0)
		return 0;
	free(g);
out_bypass:
	cache_count(ORDER_CACHE_BYPASS);
	return -1;
}

int order_cache_put(shop_redis_loop *l, const Shop__V1__Order *o, int64_t version, int ttl_s)
{
	char key[40], ver[24], ttl[24];
	const char *argv[7] = {"EVAL", cas_lua, "1", key, ver, NULL, ttl};
	size_t lens[7];
	size_t len = shop__v1__order__get_packed_size(o);
	uint8_t *buf;
	int64_t ttl_ms = (int64_t)ttl_s * 1000;
	int rv = -1;

	if (l == NULL)
		return -1;
	if ((buf = malloc(len + 1)) == NULL)
		goto out;
	shop__v1__order__pack(o, buf);
	cache_key(key, o->id);
	snprintf(ver, sizeof(ver), "%" PRId64, version);
	/* ±10 % jitter keeps orders cached together from expiring together. */
	ttl_ms += (int64_t)(shop_random_u64() % (uint64_t)(ttl_ms / 5 + 1)) - ttl_ms / 10;
	snprintf(ttl, sizeof(ttl), "%" PRId64, ttl_ms > 1 ? ttl_ms : 1);
	argv[5] = (const char *)buf;
	for (int i = 0; i < 7; i++)
		lens[i] = i == 5 ? len : strlen(argv[i]);
	rv = shop_redis_loop_call(l, 7, argv, lens) == REDIS_REPLY_INTEGER ? 0 : -1;
	free(buf);
out:
	dirty_note(o->id, version, rv != 0);
	return rv;
}
