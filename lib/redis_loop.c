/* redis_loop.c -- an asynchronous hiredis connection on a libev loop
 * thread, with per-command bounds as loop timers, reconnect backoff and a
 * batched submission queue. */
#include "redis_loop.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wstrict-aliasing"
#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>
#pragma GCC diagnostic pop

#include "clock.h"
#include "log.h"
#include "redis.h"

/* One command, from its submission to its outcome. */
struct rl_cmd {
	struct rl_cmd *next;
	char *cmd; /* formatted (redisFormatCommandArgv), freed with free() */
	int len;
	int64_t deadline_us; /* monotonic */
	shop_redis_loop_fn fn;
	void *arg;
};

struct shop_redis_loop {
	char host[64];
	uint16_t port;
	int timeout_ms;
	pthread_t thread;
	struct ev_loop *loop;
	ev_async wake;
	ev_timer timer;

	pthread_mutex_t mtx;
	struct rl_cmd *q_head, *q_tail; /* under mtx: submitted, not yet taken */
	bool stopping;                  /* under mtx */
	/* Monotonic µs before which submissions fail at once: the backoff
	 * after a failure. Written by the loop, read by submitters. */
	_Atomic int64_t down_until_us;

	/* The loop's thread only. */
	redisAsyncContext *ac;
	struct rl_cmd *f_head, *f_tail; /* in flight, in order: hiredis answers in order */
	int expect;                     /* top-level replies the server owes */
	int backoff_ms;
	bool ok;                       /* the last command reached Redis (or none failed yet) */
	redisReplyObjectFunctions fns; /* the reader's, counting replies */
	const redisReplyObjectFunctions *inner;
};

static void cmd_finish(struct rl_cmd *c, const redisReply *reply)
{
	c->fn(c->arg, reply);
	free(c->cmd);
	free(c);
}

/* ---- the reader: a reply nobody asked for is a protocol error ----------- */

static bool reply_expected(const redisReadTask *task)
{
	shop_redis_loop *l = task->privdata;

	if (task->parent != NULL)
		return true;
	if (l->expect <= 0)
		return false; /* NULL: the reader fails, hiredis drops the connection */
	l->expect--;
	return true;
}

static void *rl_create_string(const redisReadTask *task, char *str, size_t len)
{
	shop_redis_loop *l = task->privdata;

	return reply_expected(task) ? l->inner->createString(task, str, len) : NULL;
}

static void *rl_create_array(const redisReadTask *task, int elements)
{
	shop_redis_loop *l = task->privdata;

	return reply_expected(task) ? l->inner->createArray(task, elements) : NULL;
}

static void *rl_create_integer(const redisReadTask *task, long long value)
{
	shop_redis_loop *l = task->privdata;

	return reply_expected(task) ? l->inner->createInteger(task, value) : NULL;
}

static void *rl_create_nil(const redisReadTask *task)
{
	shop_redis_loop *l = task->privdata;

	return reply_expected(task) ? l->inner->createNil(task) : NULL;
}

/* ---- the connection (loop thread) -------------------------------------- */

static void timer_rearm(shop_redis_loop *l)
{
	ev_timer_stop(l->loop, &l->timer);
	if (l->f_head != NULL) {
		double after = (double)(l->f_head->deadline_us - shop_now_mono_us()) / 1e6;

		ev_timer_set(&l->timer, after > 0 ? after : 0, 0);
		ev_timer_start(l->loop, &l->timer);
	}
}

/* The connection failed (hiredis frees it, or we did): the next attempt
 * after the backoff. */
static void conn_failed(shop_redis_loop *l, const char *what)
{
	int next = shop_redis_backoff_next(l->backoff_ms);

	if (l->ok)
		SHOP_LOG(WARN, "redis %s:%u: %s; retrying in %d ms", l->host, (unsigned)l->port,
			 what, next);
	l->ok = false;
	l->backoff_ms = next;
	l->ac = NULL;
	l->expect = 0;
	atomic_store(&l->down_until_us, shop_now_mono_us() + (int64_t)next * 1000);
}

/* A reply, or NULL from hiredis when the connection is freed. */
static void reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	shop_redis_loop *l = ac->data;
	struct rl_cmd *c = privdata;
	redisReply *reply = r;

	/* hiredis answers in order: c is the head of what is in flight. */
	if (l->f_head == c) {
		l->f_head = c->next;
		if (l->f_head == NULL)
			l->f_tail = NULL;
	}
	if (reply != NULL && !l->ok) {
		SHOP_LOG(INFO, "redis %s:%u: reachable again", l->host, (unsigned)l->port);
		l->ok = true;
	}
	if (reply != NULL)
		l->backoff_ms = 0;
	cmd_finish(c, reply);
	if (l->ac == ac)
		timer_rearm(l);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
	shop_redis_loop *l = ac->data;

	/* On failure hiredis frees the context after this, failing what is in
	 * flight (reply_cb with NULL). */
	if (status != REDIS_OK && l->ac == ac)
		conn_failed(l, ac->errstr[0] != '\0' ? ac->errstr : "cannot connect");
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
	shop_redis_loop *l = ac->data;

	(void)status;
	if (l->ac == ac)
		conn_failed(l, ac->errstr[0] != '\0' ? ac->errstr : "connection closed");
}

/* Drops the connection: every command in flight fails (reply_cb, NULL). */
static void conn_drop(shop_redis_loop *l, const char *what)
{
	redisAsyncContext *ac = l->ac;

	conn_failed(l, what); /* l->ac = NULL: the callbacks below see it gone */
	if (ac != NULL)
		redisAsyncFree(ac);
	ev_timer_stop(l->loop, &l->timer);
}

static int conn_open(shop_redis_loop *l)
{
	redisAsyncContext *ac = redisAsyncConnect(l->host, l->port);

	if (ac == NULL || ac->err != 0) {
		l->ac = NULL;
		conn_failed(l, ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		return -1;
	}
	ac->data = l;
	shop_redis_reader_setup(ac->c.reader); /* arrays bounded */
	l->inner = ac->c.reader->fn;
	l->fns = *l->inner;
	l->fns.createString = rl_create_string;
	l->fns.createArray = rl_create_array;
	l->fns.createInteger = rl_create_integer;
	l->fns.createNil = rl_create_nil;
	ac->c.reader->fn = &l->fns;
	ac->c.reader->privdata = l; /* redisReaderSetPrivdata casts to int */
	l->expect = 0;
	l->ac = ac;
	if (redisLibevAttach(l->loop, ac) != REDIS_OK) {
		conn_drop(l, "cannot attach to the loop");
		return -1;
	}
	redisAsyncSetConnectCallback(ac, connect_cb);
	redisAsyncSetDisconnectCallback(ac, disconnect_cb);
	return 0;
}

/* Sends c on the connection (made first when there is none), or fails it. */
static void cmd_send(shop_redis_loop *l, struct rl_cmd *c)
{
	if (l->ac == NULL &&
	    (shop_now_mono_us() < atomic_load(&l->down_until_us) || conn_open(l) != 0)) {
		cmd_finish(c, NULL);
		return;
	}
	c->next = NULL;
	if (redisAsyncFormattedCommand(l->ac, reply_cb, c, c->cmd, (size_t)c->len) != REDIS_OK) {
		cmd_finish(c, NULL);
		return;
	}
	l->expect++;
	if (l->f_tail != NULL)
		l->f_tail->next = c;
	else
		l->f_head = c;
	l->f_tail = c;
	if (l->f_head == c)
		timer_rearm(l);
}

/* The oldest command in flight passed its bound: Redis hangs (or is too
 * slow to be worth waiting for). */
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	shop_redis_loop *l = w->data;

	(void)loop;
	(void)revents;
	if (l->f_head == NULL)
		return;
	if (l->f_head->deadline_us > shop_now_mono_us()) {
		timer_rearm(l);
		return;
	}
	conn_drop(l, "command timed out");
}

/* Takes the whole queue at once: one wake-up per batch. */
static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	shop_redis_loop *l = w->data;
	struct rl_cmd *c, *next;
	bool stopping;

	(void)revents;
	pthread_mutex_lock(&l->mtx);
	c = l->q_head;
	l->q_head = l->q_tail = NULL;
	stopping = l->stopping;
	pthread_mutex_unlock(&l->mtx);
	for (; c != NULL; c = next) {
		next = c->next;
		if (stopping)
			cmd_finish(c, NULL);
		else
			cmd_send(l, c);
	}
	if (stopping) {
		if (l->ac != NULL) {
			redisAsyncContext *ac = l->ac;

			l->ac = NULL;
			redisAsyncFree(ac); /* fails what is in flight */
		}
		ev_timer_stop(loop, &l->timer);
		ev_async_stop(loop, &l->wake);
		ev_break(loop, EVBREAK_ALL);
	}
}

static void *loop_main(void *arg)
{
	shop_redis_loop *l = arg;

	ev_run(l->loop, 0);
	return NULL;
}

shop_redis_loop *shop_redis_loop_create(const char *host, uint16_t port, int timeout_ms)
{
	shop_redis_loop *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	snprintf(l->host, sizeof(l->host), "%s", host);
	l->port = port;
	l->timeout_ms = timeout_ms;
	l->ok = true;
	pthread_mutex_init(&l->mtx, NULL);
	if ((l->loop = ev_loop_new(EVFLAG_AUTO)) == NULL)
		goto out_free;
	ev_async_init(&l->wake, wake_cb);
	l->wake.data = l;
	ev_async_start(l->loop, &l->wake);
	ev_timer_init(&l->timer, timer_cb, 0, 0);
	l->timer.data = l;
	if (pthread_create(&l->thread, NULL, loop_main, l) != 0)
		goto out_loop;
	return l;

out_loop:
	ev_loop_destroy(l->loop);
out_free:
	pthread_mutex_destroy(&l->mtx);
	free(l);
	return NULL;
}

void shop_redis_loop_destroy(shop_redis_loop *l)
{
	if (l == NULL)
		return;
	pthread_mutex_lock(&l->mtx);
	l->stopping = true;
	pthread_mutex_unlock(&l->mtx);
	ev_async_send(l->loop, &l->wake);
	pthread_join(l->thread, NULL);
	ev_loop_destroy(l->loop);
	pthread_mutex_destroy(&l->mtx);
	free(l);
}

int shop_redis_loop_submit(shop_redis_loop *l, int argc, const char **argv, const size_t *lens,
			   shop_redis_loop_fn fn, void *arg)
{
	int64_t now = shop_now_mono_us();
	struct rl_cmd *c;
	bool was_empty;

	if (l == NULL || now < atomic_load(&l->down_until_us))
		return -1;
	if ((c = malloc(sizeof(*c))) == NULL)
		return -1;
	if ((c->len = redisFormatCommandArgv(&c->cmd, argc, argv, lens)) < 0) {
		free(c);
		return -1;
	}
	c->next = NULL;
	c->deadline_us = now + (int64_t)l->timeout_ms * 1000;
	c->fn = fn;
	c->arg = arg;
	pthread_mutex_lock(&l->mtx);
	if (l->stopping) {
		pthread_mutex_unlock(&l->mtx);
		free(c->cmd);
		free(c);
		return -1;
	}
	was_empty = l->q_head == NULL;
	if (l->q_tail != NULL)
		l->q_tail->next = c;
	else
		l->q_head = c;
	l->q_tail = c;
	pthread_mutex_unlock(&l->mtx);
	/* A non-empty queue has its wake-up on the way already. */
	if (was_empty)
		ev_async_send(l->loop, &l->wake);
	return 0;
}

struct rl_wait {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool done;
	int type;
};

static void wait_cb(void *arg, const redisReply *reply)
{
	struct rl_wait *w = arg;

	pthread_mutex_lock(&w->mtx);
	w->type = reply != NULL ? reply->type : -1;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mtx);
}

int shop_redis_loop_call(shop_redis_loop *l, int argc, const char **argv, const size_t *lens)
{
	struct rl_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, -1};

	if (shop_redis_loop_submit(l, argc, argv, lens, wait_cb, &w) != 0)
		return -1;
	/* The loop's timer bounds the wait. */
	pthread_mutex_lock(&w.mtx);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mtx);
	pthread_mutex_unlock(&w.mtx);
	return w.type;
}
