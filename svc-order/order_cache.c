/* order_cache.c -- versioned compare-and-set of packed orders in Redis. */
#include "order_cache.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balancer.h"
#include "log.h"
#include "metrics.h"

/* KEYS[1]; ARGV: version, packed order, ttl (ms). */
static const char cas_lua[] =
	"local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')\n"
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

static order_cache_result cache_lookup(shop_redis *r, int64_t id, Shop__V1__Order **out)
{
	const char *argv[3] = {"HGET", NULL, "b"};
	order_cache_result res = ORDER_CACHE_BYPASS;
	redisReply *reply;
	char key[40];

	*out = NULL;
	if (r == NULL || order_cache_is_dirty(id))
		return ORDER_CACHE_BYPASS;
	cache_key(key, id);
	argv[1] = key;
	if ((reply = shop_redis_command(r, 3, argv, NULL)) == NULL)
		return ORDER_CACHE_BYPASS;
	if (reply->type == REDIS_REPLY_STRING) {
		*out = shop__v1__order__unpack(NULL, reply->len, (const uint8_t *)reply->str);
		/* A value that does not parse is treated as absent. */
		res = *out != NULL ? ORDER_CACHE_HIT : ORDER_CACHE_MISS;
	} else if (reply->type == REDIS_REPLY_NIL) {
		res = ORDER_CACHE_MISS;
	}
	freeReplyObject(reply);
	return res;
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

order_cache_result order_cache_get(shop_redis *r, int64_t id, Shop__V1__Order **out)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	order_cache_result res = cache_lookup(r, id, out);

	pthread_once(&once, cache_metrics_init);
	shop_metric_inc(cache_requests[res]);
	return res;
}

int order_cache_put(shop_redis *r, const Shop__V1__Order *o, int64_t version, int ttl_s)
{
	char key[40], ver[24], ttl[24];
	const char *argv[7] = {"EVAL", cas_lua, "1", key, ver, NULL, ttl};
	size_t lens[7];
	size_t len = shop__v1__order__get_packed_size(o);
	uint8_t *buf;
	redisReply *reply;
	int64_t ttl_ms = (int64_t)ttl_s * 1000;
	int rv = -1;

	if (r == NULL)
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
	if ((reply = shop_redis_command(r, 7, argv, lens)) != NULL) {
		rv = reply->type == REDIS_REPLY_INTEGER ? 0 : -1;
		freeReplyObject(reply);
	}
	free(buf);
out:
	dirty_note(o->id, version, rv != 0);
	return rv;
}
