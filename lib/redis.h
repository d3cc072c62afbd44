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

/* The backoff after a failure that follows one of backoff_ms (0: none
 * yet): 100 ms, doubling to 5 s. Shared with lib/redis_loop.c. */
int shop_redis_backoff_next(int backoff_ms);

/* True when the last command reached Redis (or none failed yet). */
int shop_redis_ok(const shop_redis *r);

/* Bounds what a reply parser (borrowed; made with hiredis's default reply
 * functions) accepts from the server: an array announcing more than
 * SHOP_REDIS_MAX_ELEMENTS elements fails the reply (hiredis calls it "Out
 * of memory") and so the connection, where hiredis 0.14 would calloc the
 * array at once ("*2147483647" from a bad server: 16 GiB). Every
 * connection of shop_redis is set up so; exposed for the fuzzer. */
#define SHOP_REDIS_MAX_ELEMENTS 1024
void shop_redis_reader_setup(redisReader *reader);

#endif
