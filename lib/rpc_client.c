/* rpc_client.c -- calls to one remote instance over one nng REQ socket,
 * through a fixed pool of contexts and a bounded FIFO of waiting calls.
 *
 * Each pool slot owns one nng_ctx and one nng_aio, made at create time and
 * reused for every call. A slot runs a small state machine in its aio
 * callback: SEND (request handed to nng) -> RECV (waiting for the reply)
 * -> done; or EXPIRED (deadline already passed when the slot took the call:
 * a zero sleep, so that done still runs on an nng thread, never inside
 * shop_rpc_conn_call). When a call is done the slot takes the next queued
 * call or goes back to the idle stack.
 *
 * The zero sleep runs on a second aio of the slot's (sleep_aio), never on
 * the one that sends and receives: nng 1.5.2's nni_sleep_aio sets the aio's
 * a_expire_ok flag and only a stop clears it, so a later send or receive
 * timeout on that aio would complete with result 0 — a receive with no
 * message, a send that sent nothing (docs/decisions.md, "nng 1.5.2
 * defects"). slot_cb still checks both lies, in case another path ever
 * sets the flag.
 *
 * Locking: c->mtx guards the idle stack, the queue, the closing flag and
 * every slot's state. Operations are started with c->mtx held so that
 * destroy, which sets closing under the lock and then stops each aio, can
 * never race with a slot starting a new operation. nng completes a context
 * operation on another thread, never inside nng_ctx_send/recv, so holding
 * c->mtx there cannot deadlock with the callback. The user's done runs
 * without the lock. */
#include "rpc_client.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include "clock.h"
#include "log.h"

enum slot_state {
	SLOT_IDLE,
	SLOT_SEND,
	SLOT_RECV,
	SLOT_EXPIRED,
};

/* One accepted call, from shop_rpc_conn_call until its done has run. */
struct rpc_call {
	struct rpc_call *next; /* queue link */
	nng_msg *msg;          /* packed RpcRequest until nng takes it */
	int64_t deadline_unix_ms;
	shop_rpc_done_fn done;
	void *arg;
};

struct rpc_slot {
	shop_rpc_conn *c;
	int index;
	nng_ctx ctx;
	nng_aio *aio;          /* send and receive only; never slept on */
	nng_aio *sleep_aio;    /* the EXPIRED path's zero sleep only */
	enum slot_state state; /* under c->mtx */
	struct rpc_call *call; /* the running call; NULL when idle */
};

struct shop_rpc_conn {
	char *url;
	nng_socket sock;
	bool sock_open;
	nng_mtx *mtx;
	bool closing;
	int n_slots; /* slots whose ctx and aio exist */
	struct rpc_slot *slots;
	int *idle; /* stack of idle slot indexes */
	int n_idle;
	struct rpc_call *q_head, *q_tail;
	int q_len, q_max;
	/* Calls accepted whose done has not started: running or queued. A
	 * finishing call leaves it just before its done runs, so that a caller
	 * that answers its own client from done and gets the next call at once
	 * finds the place free (the slot itself is freed after done). At most
	 * n_slots + q_max: the queue may briefly hold more than q_max while
	 * slots finish. */
	int in_hand;
	int pipes; /* connected pipes (0 or 1: one peer per socket), under mtx */
	shop_dial_keeper *keeper;
	void (*down_fn)(void *); /* told when the last pipe closes; under mtx */
	void *down_arg;
	void (*up_fn)(void *); /* told when the first pipe is made; under mtx */
	void *up_arg;
};

int shop_nng_socket_defaults(nng_socket s)
{
	int rv;

	if ((rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, SHOP_RPC_MAX_MSG)) != 0)
		return rv;
	/* Saved by the socket for the tcp dialers and listeners made later.
	 * Only a socket without tcp support refuses it, and then it is moot. */
	rv = nng_socket_set_bool(s, NNG_OPT_TCP_NODELAY, true);
	return rv == NNG_ENOTSUP ? 0 : rv;
}

/* ---- dial keeper -------------------------------------------------------------- */

#define KEEPER_CHECK_MS   250
#define KEEPER_DOWN_TICKS 4 /* down this many checks in a row: a new dialer */

struct shop_dial_keeper {
	nng_socket sock;
	nng_dialer dialer;
	nng_aio *aio;
	bool (*up)(void *arg);
	void *arg;
	int down_ticks; /* the aio callback's only */
	char url[];
};

static void keeper_cb(void *arg)
{
	shop_dial_keeper *k = arg;
	nng_dialer d;

	if (nng_aio_result(k->aio) != 0)
		return; /* stopped */
	if (k->up(k->arg)) {
		k->down_ticks = 0;
	} else if (++k->down_ticks >= KEEPER_DOWN_TICKS) {
		/* A dialer still trying would have connected by now if the
		 * peer were there; a dead one never will. Either way a new one
		 * starts dialing at once. The old one goes first, so that two
		 * never connect to the same peer. */
		k->down_ticks = 0;
		nng_dialer_close(k->dialer);
		if (nng_dialer_create(&d, k->sock, k->url) == 0) {
			if (nng_dialer_start(d, NNG_FLAG_NONBLOCK) == 0)
				k->dialer = d;
			else
				nng_dialer_close(d);
		}
		SHOP_LOG(DEBUG, "rpc: no connection to %s for %d ms: dialing afresh", k->url,
			 KEEPER_CHECK_MS * KEEPER_DOWN_TICKS);
	}
	nng_sleep_aio(KEEPER_CHECK_MS, k->aio);
}

int shop_dial_keeper_start(shop_dial_keeper **out, nng_socket s, const char *url,
			   bool (*up)(void *arg), void *arg)
{
	size_t n = strlen(url) + 1;
	shop_dial_keeper *k;
	int rv;

	if ((k = calloc(1, sizeof(*k) + n)) == NULL)
		return NNG_ENOMEM;
	memcpy(k->url, url, n);
	k->sock = s;
	k->up = up;
	k->arg = arg;
	if ((rv = nng_aio_alloc(&k->aio, keeper_cb, k)) != 0)
		goto out_free;
	if ((rv = nng_dialer_create(&k->dialer, s, url)) != 0)
		goto out_aio;
	if ((rv = nng_dialer_start(k->dialer, NNG_FLAG_NONBLOCK)) != 0) {
		nng_dialer_close(k->dialer);
		goto out_aio;
	}
	nng_sleep_aio(KEEPER_CHECK_MS, k->aio);
	*out = k;
	return 0;

out_aio:
	nng_aio_free(k->aio);
out_free:
	free(k);
	return rv;
}

void shop_dial_keeper_stop(shop_dial_keeper *k)
{
	if (k == NULL)
		return;
	nng_aio_stop(k->aio);
	nng_aio_free(k->aio);
	free(k);
}

/* Pipe events, on an nng thread. The first pipe tells up_fn (a peer that
 * is back is worth trying at once). When the last pipe closes the peer is
 * gone (killed, crashed, stopped): calls in flight on it can never be
 * answered, so they fail now with NNG_ECONNRESET instead of waiting for
 * their deadline (REQ would otherwise hold them for a pipe that may never
 * come back). */
static void conn_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	shop_rpc_conn *c = arg;
	void (*down_fn)(void *) = NULL, (*up_fn)(void *) = NULL;
	void *down_arg = NULL, *up_arg = NULL;

	(void)p;
	nng_mtx_lock(c->mtx);
	if (ev == NNG_PIPE_EV_ADD_POST) {
		if (c->pipes++ == 0) {
			up_fn = c->up_fn;
			up_arg = c->up_arg;
		}
	} else if (ev == NNG_PIPE_EV_REM_POST && c->pipes > 0 && --c->pipes == 0) {
		for (int i = 0; i < c->n_slots; i++)
			if (c->slots[i].call != NULL && c->slots[i].state != SLOT_EXPIRED)
				nng_aio_abort(c->slots[i].aio, NNG_ECONNRESET);
		down_fn = c->down_fn;
		down_arg = c->down_arg;
	}
	nng_mtx_unlock(c->mtx);
	if (down_fn != NULL)
		down_fn(down_arg);
	if (up_fn != NULL)
		up_fn(up_arg);
}

void shop_rpc_conn_on_down(shop_rpc_conn *c, void (*fn)(void *arg), void *arg)
{
	nng_mtx_lock(c->mtx);
	c->down_fn = fn;
	c->down_arg = arg;
	nng_mtx_unlock(c->mtx);
}

void shop_rpc_conn_on_up(shop_rpc_conn *c, void (*fn)(void *arg), void *arg)
{
	nng_mtx_lock(c->mtx);
	c->up_fn = fn;
	c->up_arg = arg;
	nng_mtx_unlock(c->mtx);
}

static bool conn_is_up(void *arg)
{
	return shop_rpc_conn_is_up(arg);
}

bool shop_rpc_conn_is_up(shop_rpc_conn *c)
{
	bool up;

	nng_mtx_lock(c->mtx);
	up = c->pipes > 0;
	nng_mtx_unlock(c->mtx);
	return up;
}

bool shop_rpc_conn_has_room(shop_rpc_conn *c)
{
	bool room;

	nng_mtx_lock(c->mtx);
	room = !c->closing && (c->n_idle > 0 || c->in_hand < c->n_slots + c->q_max);
	nng_mtx_unlock(c->mtx);
	return room;
}

static void call_free(struct rpc_call *call)
{
	if (call == NULL)
		return;
	if (call->msg != NULL)
		nng_msg_free(call->msg);
	free(call);
}

static nng_duration ms_left(int64_t deadline_unix_ms)
{
	int64_t left = deadline_unix_ms - shop_now_unix_ms();

	return left > INT32_MAX ? INT32_MAX : (nng_duration)left;
}

/* Starts call on an idle slot. Called with c->mtx held and !c->closing. */
static void slot_start(struct rpc_slot *slot, struct rpc_call *call)
{
	nng_duration left = ms_left(call->deadline_unix_ms);

	slot->call = call;
	if (left <= 0) {
		slot->state = SLOT_EXPIRED;
		nng_sleep_aio(0, slot->sleep_aio);
		return;
	}
	slot->state = SLOT_SEND;
	nng_aio_set_timeout(slot->aio, left);
	nng_aio_set_msg(slot->aio, call->msg);
	call->msg = NULL; /* the aio holds it; on failure the callback frees it */
	nng_ctx_send(slot->ctx, slot->aio);
}

/* Reports the slot's call and moves the slot on to the next queued call. */
static void slot_finish(struct rpc_slot *slot, int rv, Shop__V1__RpcResponse *resp)
{
	shop_rpc_conn *c = slot->c;
	struct rpc_call *call, *next = NULL;

	nng_mtx_lock(c->mtx);
	call = slot->call;
	slot->call = NULL;
	c->in_hand--;
	nng_mtx_unlock(c->mtx);

	call->done(call->arg, rv, resp);
	call_free(call);

	nng_mtx_lock(c->mtx);
	if (!c->closing && (next = c->q_head) != NULL) {
		c->q_head = next->next;
		if (c->q_head == NULL)
			c->q_tail = NULL;
		c->q_len--;
		next->next = NULL;
		slot_start(slot, next);
	} else {
		slot->state = SLOT_IDLE;
		c->idle[c->n_idle++] = slot->index;
	}
	nng_mtx_unlock(c->mtx);
}

/* The aio callback, on an nng thread. Never waits on an aio. */
static void slot_cb(void *arg)
{
	struct rpc_slot *slot = arg;
	shop_rpc_conn *c = slot->c;
	Shop__V1__RpcResponse *resp = NULL;
	int rv = nng_aio_result(slot->aio);
	enum slot_state state;
	nng_duration left;
	nng_msg *msg;

	nng_mtx_lock(c->mtx);
	state = slot->state;
	nng_mtx_unlock(c->mtx);

	switch (state) {
	case SLOT_SEND:
		/* A send that succeeded has handed its message to nng; one
		 * still on the aio timed out (the a_expire_ok lie). */
		if (rv == 0 && nng_aio_get_msg(slot->aio) != NULL)
			rv = NNG_ETIMEDOUT;
		if (rv != 0) {
			/* A failed send leaves the message with us. */
			nng_msg_free(nng_aio_get_msg(slot->aio));
			nng_aio_set_msg(slot->aio, NULL);
			break;
		}
		nng_mtx_lock(c->mtx);
		if (c->closing) {
			rv = NNG_ECLOSED;
		} else if ((left = ms_left(slot->call->deadline_unix_ms)) <= 0) {
			/* Sent, but no time is left to wait; the next send on
			 * this context abandons the request. */
			rv = NNG_ETIMEDOUT;
		} else {
			slot->state = SLOT_RECV;
			nng_aio_set_timeout(slot->aio, left);
			nng_ctx_recv(slot->ctx, slot->aio);
			nng_mtx_unlock(c->mtx);
			return;
		}
		nng_mtx_unlock(c->mtx);
		break;
	case SLOT_RECV:
		if (rv != 0)
			break;
		msg = nng_aio_get_msg(slot->aio);
		nng_aio_set_msg(slot->aio, NULL);
		if (msg == NULL) { /* "succeeded" without a message: timed out */
			rv = NNG_ETIMEDOUT;
			break;
		}
		resp = shop__v1__rpc_response__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
		if (resp == NULL) {
			SHOP_LOG(WARN, "rpc: %s: reply of %zu bytes is not an RpcResponse", c->url,
				 nng_msg_len(msg));
			rv = NNG_EPROTO;
		}
		nng_msg_free(msg);
		break;
	case SLOT_EXPIRED:
		/* Only sleep_aio runs in this state (sleep_cb). */
		return;
	case SLOT_IDLE:
	default:
		return; /* no call on this slot; nothing to report */
	}
	/* Only shop_rpc_conn_destroy cancels our aios (nng_aio_stop). */
	if (rv == NNG_ECANCELED)
		rv = NNG_ECLOSED;
	slot_finish(slot, rv, resp);
}

/* The EXPIRED path's zero sleep ended: it ran out (0) or destroy stopped it. */
static void sleep_cb(void *arg)
{
	struct rpc_slot *slot = arg;
	int rv = nng_aio_result(slot->sleep_aio);

	slot_finish(slot, rv == 0 || rv == NNG_ETIMEDOUT ? NNG_ETIMEDOUT : NNG_ECLOSED, NULL);
}

/* Closes the socket and frees; no operation may be running. */
static void conn_free(shop_rpc_conn *c)
{
	shop_dial_keeper_stop(c->keeper);
	if (c->sock_open)
		nng_close(c->sock);
	for (int i = 0; i < c->n_slots; i++) {
		nng_aio_free(c->slots[i].aio);
		nng_aio_free(c->slots[i].sleep_aio);
	}
	free(c->slots);
	free(c->idle);
	if (c->mtx != NULL)
		nng_mtx_free(c->mtx);
	free(c->url);
	free(c);
}

int shop_rpc_conn_create(shop_rpc_conn **out, const char *url, int pool, int queue)
{
	shop_rpc_conn *c;
	int rv;

	if (out == NULL || url == NULL || pool < 1 || queue < 0)
		return NNG_EINVAL;
	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NNG_ENOMEM;
	c->q_max = queue;
	if ((c->url = strdup(url)) == NULL ||
	    (c->slots = calloc((size_t)pool, sizeof(*c->slots))) == NULL ||
	    (c->idle = calloc((size_t)pool, sizeof(*c->idle))) == NULL) {
		rv = NNG_ENOMEM;
		goto out_free;
	}
	if ((rv = nng_mtx_alloc(&c->mtx)) != 0)
		goto out_free;
	if ((rv = nng_req0_open(&c->sock)) != 0)
		goto out_free;
	c->sock_open = true;
	if ((rv = shop_nng_socket_defaults(c->sock)) != 0)
		goto out_free;
	/* A request is sent at most once: REQ must never resend it, not on a
	 * timer and not to another pipe when its pipe closes. Contexts copy
	 * the socket's value when opened; it is set on each one as well. */
	if ((rv = nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0)
		goto out_free;
	for (int i = 0; i < pool; i++) {
		struct rpc_slot *slot = &c->slots[i];

		slot->c = c;
		slot->index = i;
		if ((rv = nng_ctx_open(&slot->ctx, c->sock)) != 0)
			goto out_free;
		if ((rv = nng_ctx_set_ms(slot->ctx, NNG_OPT_REQ_RESENDTIME,
					 NNG_DURATION_INFINITE)) != 0)
			goto out_free;
		if ((rv = nng_aio_alloc(&slot->aio, slot_cb, slot)) != 0)
			goto out_free;
		if ((rv = nng_aio_alloc(&slot->sleep_aio, sleep_cb, slot)) != 0) {
			nng_aio_free(slot->aio);
			goto out_free;
		}
		c->n_slots++;
		c->idle[c->n_idle++] = i;
	}
	if ((rv = nng_pipe_notify(c->sock, NNG_PIPE_EV_ADD_POST, conn_pipe_cb, c)) != 0 ||
	    (rv = nng_pipe_notify(c->sock, NNG_PIPE_EV_REM_POST, conn_pipe_cb, c)) != 0)
		goto out_free;
	/* Redial a restarted peer quickly. */
	nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 20);
	nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 500);
	if ((rv = shop_dial_keeper_start(&c->keeper, c->sock, url, conn_is_up, c)) != 0)
		goto out_free;
	*out = c;
	return 0;

out_free:
	SHOP_LOG(ERROR, "rpc: cannot make a connection to %s: %s", url, nng_strerror(rv));
	conn_free(c);
	return rv;
}

void shop_rpc_conn_destroy(shop_rpc_conn *c)
{
	struct rpc_call *q, *next;

	if (c == NULL)
		return;
	nng_mtx_lock(c->mtx);
	c->closing = true;
	q = c->q_head;
	c->q_head = c->q_tail = NULL;
	c->in_hand -= c->q_len;
	c->q_len = 0;
	nng_mtx_unlock(c->mtx);

	for (; q != NULL; q = next) {
		next = q->next;
		q->done(q->arg, NNG_ECLOSED, NULL);
		call_free(q);
	}
	/* Cancels each running call (its callback reports NNG_ECLOSED) and
	 * waits for the callback; with closing set no slot starts another. */
	for (int i = 0; i < c->n_slots; i++) {
		nng_aio_stop(c->slots[i].aio);
		nng_aio_stop(c->slots[i].sleep_aio);
	}
	conn_free(c);
}

const char *shop_rpc_conn_url(const shop_rpc_conn *c)
{
	return c != NULL ? c->url : NULL;
}

/* Packs the RpcRequest for a call into a new nng message. */
int shop_rpc_request_pack(const char *method, const ProtobufCMessage *req,
			  const shop_rpc_call_opts *o, nng_msg **out)
{
	Shop__V1__RpcRequest env = SHOP__V1__RPC_REQUEST__INIT;
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *payload;
	nng_msg *msg;
	int rv;

	if ((payload = malloc(len + 1)) == NULL)
		return NNG_ENOMEM;
	/* The envelope only borrows; protobuf-c packs from const data. */
	env.method = (char *)method;
	env.payload.data = payload;
	env.payload.len = protobuf_c_message_pack(req, payload);
	env.traceparent = (char *)(o->traceparent != NULL ? o->traceparent : "");
	env.deadline_unix_ms = o->deadline_unix_ms;
	env.caller_user_id = o->caller_user_id;
	len = shop__v1__rpc_request__get_packed_size(&env);
	if (len > SHOP_RPC_MAX_MSG) {
		/* The server would drop it unanswered: fail now, not at the deadline. */
		rv = NNG_EMSGSIZE;
		goto out_payload;
	}
	if ((rv = nng_msg_alloc(&msg, len)) != 0)
		goto out_payload;
	shop__v1__rpc_request__pack(&env, nng_msg_body(msg));
	*out = msg;
out_payload:
	free(payload);
	return rv;
}

int shop_rpc_conn_send(shop_rpc_conn *c, nng_msg *msg, int64_t deadline_unix_ms,
		       shop_rpc_done_fn done, void *arg)
{
	struct rpc_call *call;
	int rv = 0;

	if (c == NULL || msg == NULL || done == NULL || deadline_unix_ms <= 0)
		return NNG_EINVAL;
	if ((call = calloc(1, sizeof(*call))) == NULL)
		return NNG_ENOMEM;
	call->deadline_unix_ms = deadline_unix_ms;
	call->done = done;
	call->arg = arg;
	call->msg = msg;

	nng_mtx_lock(c->mtx);
	if (c->closing) {
		rv = NNG_ECLOSED;
	} else if (c->n_idle > 0) {
		c->in_hand++;
		slot_start(&c->slots[c->idle[--c->n_idle]], call);
	} else if (c->in_hand < c->n_slots + c->q_max) {
		c->in_hand++;
		if (c->q_tail != NULL)
			c->q_tail->next = call;
		else
			c->q_head = call;
		c->q_tail = call;
		c->q_len++;
	} else {
		rv = NNG_EAGAIN;
	}
	nng_mtx_unlock(c->mtx);
	if (rv == 0)
		return 0; /* the slot or the queue owns call and msg now */
	call->msg = NULL; /* on failure the caller keeps its message */
	call_free(call);
	return rv;
}

int shop_rpc_conn_call(shop_rpc_conn *c, const char *method, const ProtobufCMessage *req,
		       const shop_rpc_call_opts *o, shop_rpc_done_fn done, void *arg)
{
	nng_msg *msg;
	int rv;

	if (c == NULL || method == NULL || req == NULL || o == NULL || done == NULL ||
	    o->deadline_unix_ms <= 0)
		return NNG_EINVAL;
	if ((rv = shop_rpc_request_pack(method, req, o, &msg)) != 0)
		return rv;
	if ((rv = shop_rpc_conn_send(c, msg, o->deadline_unix_ms, done, arg)) != 0)
		nng_msg_free(msg);
	return rv;
}

/* What a blocked shop_rpc_conn_call_sync waits on; on its stack. */
struct sync_wait {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool done;
	int rv;
	Shop__V1__RpcResponse *resp;
};

static void sync_done(void *arg, int rv, Shop__V1__RpcResponse *resp)
{
	struct sync_wait *w = arg;

	pthread_mutex_lock(&w->mtx);
	w->rv = rv;
	w->resp = resp;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mtx); /* w may be gone once this returns */
}

int shop_rpc_conn_call_sync(shop_rpc_conn *c, const char *method, const ProtobufCMessage *req,
			    const shop_rpc_call_opts *o, Shop__V1__RpcResponse **resp)
{
	struct sync_wait w = {
	    .mtx = PTHREAD_MUTEX_INITIALIZER,
	    .cv = PTHREAD_COND_INITIALIZER,
	};
	int rv;

	if (resp == NULL)
		return NNG_EINVAL;
	*resp = NULL;
	if ((rv = shop_rpc_conn_call(c, method, req, o, sync_done, &w)) != 0)
		return rv;
	pthread_mutex_lock(&w.mtx);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mtx);
	pthread_mutex_unlock(&w.mtx);
	pthread_mutex_destroy(&w.mtx);
	pthread_cond_destroy(&w.cv);
	*resp = w.resp;
	return w.rv;
}
