/* redis.h -- one hiredis connection per worker thread, never trusted after
 * an error: a context that saw any error is freed and rebuilt, after a
 * backoff, so that a dead or hung Redis costs each caller at most one
 * timeout and then nothing until the next attempt. */
#ifndef SHOP_REDIS_H
#define SHOP_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

typedef struct shop_redis shop_redis;

/* Connects lazily to host:port (copied). timeout_ms bounds connect and
 * every command. NULL only when out of memory. Caller frees with
 * shop_redis_destroy. */
shop_redis *shop_redis_create(const char *host, uint16_t port, int timeout_ms);
void shop_redis_destroy(shop_redis *r); /* accepts NULL */

/* Runs one command (argv form, binary-safe; lens may be NULL for C
 * strings). Returns the reply (caller frees with freeReplyObject) — which
 * may be a REDIS_REPLY_ERROR from the server — or NULL when Redis is
 * unreachable, timed out, or in backoff after a failure. */
redisReply *shop_redis_command(shop_redis *r, int argc, const char **argv, const size_t *lens);

/* True when the last command reached Redis (or none failed yet). */
int shop_redis_ok(const shop_redis *r);

#endif
