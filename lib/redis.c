/* redis.c -- a per-thread hiredis connection with timeouts, rebuild on
 * error and reconnect backoff. */
#include "redis.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

#define REDIS_BACKOFF_MIN_MS 100
#define REDIS_BACKOFF_MAX_MS 5000

struct shop_redis {
	char host[64];
	uint16_t port;
	int timeout_ms;
	redisContext *ctx;
	int64_t retry_at_us; /* monotonic: no attempt before this */
	int backoff_ms;
	int ok;
};

/* hiredis's default reply functions with createArray bounded; filled
 * under fns_mtx by the first reader set up, read-only afterwards. */
static pthread_mutex_t fns_mtx = PTHREAD_MUTEX_INITIALIZER;
static redisReplyObjectFunctions bounded_fns;
static void *(*hiredis_create_array)(const redisReadTask *, int);

static void *bounded_create_array(const redisReadTask *task, int elements)
{
	/* NULL makes the reader fail the reply (as out of memory), and the
	 * caller drops the connection. */
	if (elements > SHOP_REDIS_MAX_ELEMENTS)
		return NULL;
	return hiredis_create_array(task, elements);
}

void shop_redis_reader_setup(redisReader *reader)
{
	if (reader == NULL || reader->fn == NULL || reader->fn == &bounded_fns)
		return;
	pthread_mutex_lock(&fns_mtx);
	if (hiredis_create_array == NULL && reader->fn->createArray != NULL) {
		bounded_fns = *reader->fn;
		hiredis_create_array = bounded_fns.createArray;
		bounded_fns.createArray = bounded_create_array;
	}
	if (hiredis_create_array != NULL && reader->fn->createArray == hiredis_create_array)
		reader->fn = &bounded_fns;
	pthread_mutex_unlock(&fns_mtx);
}

int shop_redis_backoff_next(int backoff_ms)
{
	int next = backoff_ms <= 0 ? REDIS_BACKOFF_MIN_MS : backoff_ms * 2;

	return next > REDIS_BACKOFF_MAX_MS ? REDIS_BACKOFF_MAX_MS : next;
}

shop_redis *shop_redis_create(const char *host, uint16_t port, int timeout_ms)
{
	shop_redis *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	snprintf(r->host, sizeof(r->host), "%s", host);
	r->port = port;
	r->timeout_ms = timeout_ms;
	r->ok = 1;
	return r;
}

void shop_redis_destroy(shop_redis *r)
{
	if (r == NULL)
		return;
	if (r->ctx != NULL)
		redisFree(r->ctx);
	free(r);
}

int shop_redis_ok(const shop_redis *r)
{
	return r != NULL && r->ok;
}

/* Drops the context after an error and schedules the next attempt. */
static void redis_fail(shop_redis *r, const char *what)
{
	if (r->ok)
		SHOP_LOG(WARN, "redis %s:%u: %s; retrying in %d ms", r->host, (unsigned)r->port,
			 what, shop_redis_backoff_next(r->backoff_ms));
	if (r->ctx != NULL) {
		redisFree(r->ctx);
		r->ctx = NULL;
	}
	r->ok = 0;
	r->backoff_ms = shop_redis_backoff_next(r->backoff_ms);
	r->retry_at_us = shop_now_mono_us() + (int64_t)r->backoff_ms * 1000;
}

static int redis_connect(shop_redis *r)
{
	struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};

	if (r->ctx != NULL)
		return 0;
	if (shop_now_mono_us() < r->retry_at_us)
		return -1;
	r->ctx = redisConnectWithTimeout(r->host, r->port, tv);
	if (r->ctx == NULL || r->ctx->err != 0) {
		redis_fail(r, r->ctx != NULL ? r->ctx->errstr : "out of memory");
		return -1;
	}
	if (redisSetTimeout(r->ctx, tv) != REDIS_OK) {
		redis_fail(r, "cannot set the command timeout");
		return -1;
	}
	shop_redis_reader_setup(r->ctx->reader);
	return 0;
}

redisReply *shop_redis_command(shop_redis *r, int argc, const char **argv, const size_t *lens)
{
	redisReply *reply;

	if (r == NULL || redis_connect(r) != 0)
		return NULL;
	reply = redisCommandArgv(r->ctx, argc, argv, lens);
	if (reply == NULL || r->ctx->err != 0) {
		/* hiredis leaves a context that saw an I/O or protocol error
		 * unusable; it is rebuilt, never reused. */
		if (reply != NULL)
			freeReplyObject(reply);
		redis_fail(r, r->ctx->errstr[0] != '\0' ? r->ctx->errstr : "no reply");
		return NULL;
	}
	if (!r->ok)
		SHOP_LOG(INFO, "redis %s:%u: reachable again", r->host, (unsigned)r->port);
	r->ok = 1;
	r->backoff_ms = 0;
	return reply;
}
