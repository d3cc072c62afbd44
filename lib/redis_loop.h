/* redis_loop.h -- one asynchronous hiredis connection on an event loop
 * thread of its own (libev), fed by a queue from any thread.
 *
 * Commands are queued under a short lock; the loop is woken once per batch
 * (ev_async, only when the queue was empty) and writes the whole batch
 * pipelined. Every command has a bound (timeout_ms from its submission, a
 * timer of the loop's: hiredis 0.14's async API has none); when the oldest
 * command in flight passes it, the connection is dropped, every command on
 * it fails, and a new one is made after a backoff (100 ms doubling to 5 s),
 * during which submissions fail at once without waking the loop. A server
 * that answers more than it was asked fails the connection too (hiredis
 * 0.14 would assert on a reply nobody waits for). */
#ifndef SHOP_REDIS_LOOP_H
#define SHOP_REDIS_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

typedef struct shop_redis_loop shop_redis_loop;

/* A command's outcome, on the loop's thread: the reply (borrowed for the
 * callback; may be a REDIS_REPLY_ERROR of the server's), or NULL when Redis
 * failed, the command timed out, or the loop stopped. Must not block. */
typedef void (*shop_redis_loop_fn)(void *arg, const redisReply *reply);

/* Starts the loop's thread; connects at the first command to host:port
 * (copied). NULL when out of memory or no thread. Caller frees with
 * shop_redis_loop_destroy. */
shop_redis_loop *shop_redis_loop_create(const char *host, uint16_t port, int timeout_ms);

/* Fails what is queued or in flight (their callbacks run with NULL), stops
 * and joins the thread. Accepts NULL. */
void shop_redis_loop_destroy(shop_redis_loop *l);

/* Queues one command (argv form, binary-safe; lens may be NULL for C
 * strings; copied). Returns 0 when fn will run exactly once, on the loop's
 * thread; -1 when not queued (Redis failed a moment ago and the backoff
 * runs, out of memory, or stopping): fn never runs. */
int shop_redis_loop_submit(shop_redis_loop *l, int argc, const char **argv, const size_t *lens,
			   shop_redis_loop_fn fn, void *arg);

/* As shop_redis_loop_submit, and waits for the outcome on the calling
 * thread (for a thread that may block: a worker). Returns a copy of the
 * reply's type (REDIS_REPLY_*), or -1 when there was none. */
int shop_redis_loop_call(shop_redis_loop *l, int argc, const char **argv, const size_t *lens);

#endif
