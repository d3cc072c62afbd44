/* rpc_server.c -- a REP socket served by worker threads, with admission of
 * in-flight work.
 *
 * Receiving and handling are apart. The socket has more receiving contexts
 * ("slots") than there are workers: max_inflight of them can hold an
 * admitted call, and SHED_SLOTS more are always free to receive. A slot's
 * aio has a callback (slot_cb, on an nng thread; it never blocks: it takes
 * the server's lock for a few instructions and packs at most one small
 * reply). A request received while fewer than max_inflight calls are
 * admitted (queued or running) goes onto the queue, in arrival order; one
 * beyond the bound is answered at once from the callback, on its own slot:
 * RESOURCE_EXHAUSTED, reason OVERLOADED, metadata retry_after — never left
 * to wait in nng or in the caller's queue until its deadline. Workers take
 * calls from the queue in a plain blocking loop on their own threads, run
 * the handler with their own state and send the reply on the slot's context
 * with the worker's own aio (no callback: the worker waits on it); then the
 * slot receives again. A call leaves the bound once its reply is built,
 * before the send (a caller that has its reply may call again at once). A call whose deadline
 * passed while it was queued is answered DEADLINE_EXCEEDED when a worker takes it
 * (shop_rpc_server_handle). No aio here is ever used for nng_sleep_aio (docs/decisions.md, the
 * fourth nng 1.5.2 defect).
 *
 * Shutdown: shop_rpc_server_destroy sets the stopping flag under the lock
 * and cancels every slot waiting for a request; a slot never receives again
 * once the flag is set (a request that arrives meanwhile is dropped with the
 * socket: its caller sees the connection reset). The workers drain the
 * queue — every call admitted before the stop is handled and answered — and
 * leave when it is empty. After grace_ms the workers stop taking calls, the
 * socket is closed, which fails any receive or send still pending with
 * NNG_ECLOSED, and the calls still queued are freed unanswered; a handler
 * that is still running past the grace is waited for (it cannot be
 * interrupted safely), so handlers must respect the call's deadline. */
#include "rpc_server.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/util/platform.h>

#include "clock.h"
#include "listen_keeper.h"
#include "log.h"
#include "metrics.h"
#include "rpc_client.h"
#include "trace.h"

/* A reply that cannot be handed to the pipe in this long is dropped, so a
 * peer that stops reading cannot hold a worker (or a slot) forever. */
#define SERVER_SEND_TIMEOUT_MS 5000

/* Slots beyond max_inflight: always free to receive and shed. */
#define SHED_SLOTS 4

/* What a shed call is told to wait, in seconds. */
#define SHED_RETRY_AFTER_S "1"

enum slot_state {
	SLOT_IDLE,   /* not receiving: before the start, or after the stop */
	SLOT_RECV,   /* waiting for a request on its aio; may be cancelled */
	SLOT_QUEUED, /* holds an admitted request, on the queue */
	SLOT_BUSY,   /* a worker handles its request and sends the reply */
	SLOT_SHED,   /* sending an OVERLOADED reply on its own aio */
};

struct srv_slot {
	shop_rpc_server *s;
	nng_ctx ctx;
	nng_aio *aio;          /* callback slot_cb: receives, and sends a shed reply */
	nng_msg *msg;          /* the queued request (SLOT_QUEUED) */
	struct srv_slot *next; /* on the queue */
	enum slot_state state; /* under s->mtx */
};

struct srv_worker {
	shop_rpc_server *s;
	int index;
	nng_aio *aio; /* no callback: the worker waits on it */
	nng_thread *thr;
	bool done; /* under s->mtx: left its loop, worker_fini done */
};

struct shop_rpc_server {
	shop_rpc_server_config cfg;
	nng_socket sock;
	bool sock_open;
	shop_listen_keeper *keeper; /* the listener, probed and re-opened (listen_keeper.h) */
	nng_mtx *mtx;
	nng_cv *cv;       /* signalled when a worker sets its done flag */
	nng_cv *queue_cv; /* signalled when a call is queued, and at the stop */
	bool stopping;    /* under mtx: no slot receives again */
	bool closing;     /* under mtx: the grace is over, workers take no call */
	int max_inflight;
	int inflight;                 /* under mtx: admitted calls, queued or running */
	struct srv_slot *head, *tail; /* under mtx: the queue */
	int n_slots;                  /* slots whose ctx and aio exist */
	int n_workers;                /* workers whose aio exists */
	int n_threads;                /* workers whose thread runs */
	struct srv_slot *slots;
	struct srv_worker *workers;
};
static const shop_rpc_method *method_find(const shop_rpc_server_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_methods; i++)
		if (cfg->methods[i].name != NULL && strcmp(cfg->methods[i].name, name) == 0)
			return &cfg->methods[i];
	return NULL;
}

/* shop_rpc_server_handled_total{method,code} and
 * shop_rpc_server_handling_seconds{method}, in the default registry. */
static shop_metric_family *handled_total, *handling_seconds;

static void server_metrics_init(void)
{
	handled_total =
	    shop_metrics_counter(shop_metrics_default(), "shop_rpc_server_handled_total",
				 "RPCs answered, by method and gRPC status code.", "method,code");
	handling_seconds =
	    shop_metrics_histogram(shop_metrics_default(), "shop_rpc_server_handling_seconds",
				   "Time to handle a request, by method.", "method",
				   shop_metrics_seconds_bounds, shop_metrics_seconds_n_bounds);
}

static pthread_once_t server_metrics_once = PTHREAD_ONCE_INIT;

/* The series of a call answered OK exist from the start (at 0), so that
 * /metrics lists every method and a first call shows up in rate(). */
static void server_metrics_declare(const shop_rpc_server_config *cfg)
{
	pthread_once(&server_metrics_once, server_metrics_init);
	for (size_t i = 0; i < cfg->n_methods; i++)
		if (cfg->methods[i].name != NULL) {
			SHOP_METRIC(handled_total, cfg->methods[i].name, "OK");
			SHOP_METRIC(handling_seconds, cfg->methods[i].name);
		}
}

/* method is a registered method's name or "unknown" (never the bytes a
 * caller sent: they would make a series each). */
static void server_metrics_record(const char *method, int code, int64_t started_us)
{
	pthread_once(&server_metrics_once, server_metrics_init);
	shop_metric_inc(SHOP_METRIC(handled_total, method, shop_rpc_code_name(code)));
	shop_metric_observe(SHOP_METRIC(handling_seconds, method),
			    (double)(shop_now_mono_us() - started_us) / 1e6);
}

int shop_rpc_server_handle(const shop_rpc_server_config *cfg, void *worker, int worker_index,
			   const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len)
{
	int64_t started_us = shop_now_mono_us();
	const char *metric_method = "unknown";
	Shop__V1__RpcRequest *req = NULL;
	ProtobufCMessage *payload = NULL;
	const shop_rpc_method *m;
	shop_rpc_reply reply;
	shop_rpc_call call;
	shop_trace_ctx in_ctx, own_ctx;
	char own_tp[SHOP_TRACEPARENT_LEN];
	shop_span span;
	bool traced = false, recorded = false;
	int rv;

	shop_rpc_reply_init(&reply);
	memset(&call, 0, sizeof(call));
	if (in == NULL && in_len > 0)
		in_len = 0;
	req = in_len > 0 ? shop__v1__rpc_request__unpack(NULL, in_len, in) : NULL;
	/* Zero bytes decode as an RpcRequest with every field empty; it names
	 * no method, so it is answered as malformed too, not as unimplemented. */
	if (req == NULL || req->method == NULL || req->method[0] == '\0') {
		SHOP_LOG(WARN, "rpc: malformed request of %zu bytes", in_len);
		shop_rpc_reply_error(
		    &reply, SHOP_RPC_INVALID_ARGUMENT, "MALFORMED_REQUEST",
		    "request is not a serialized shop.v1.RpcRequest with a method");
		goto out_pack;
	}
	/* A malformed traceparent is not passed on: W3C says to start a new
	 * trace rather than propagate one that does not parse. A valid one
	 * opens this call's SERVER span, child of the caller's span; handlers
	 * get the span's own context, so the calls they make are its children,
	 * and every line this thread logs meanwhile carries the trace id. */
	call.traceparent = "";
	if (shop_traceparent_parse(req->traceparent, &in_ctx) == 0) {
		shop_trace_child(&in_ctx, &own_ctx);
		shop_traceparent_format(&own_ctx, own_tp);
		call.traceparent = own_tp;
		memcpy(call.trace_id, in_ctx.trace_id, sizeof(call.trace_id));
		traced = true;
		shop_log_set_trace(call.trace_id);
		if ((in_ctx.flags & 1) != 0 && shop_trace_recording()) {
			shop_span_begin(&span, SHOP_SPAN_SERVER, req->method, in_ctx.trace_id,
					own_ctx.span_id, in_ctx.span_id, true);
			shop_span_tag(&span, "rpc.method", "%s", req->method);
			recorded = true;
		}
	}
	/* A negative deadline is a moment before 1970: already passed. */
	if (req->deadline_unix_ms != 0 && req->deadline_unix_ms < shop_now_unix_ms()) {
		SHOP_LOG_T(WARN, call.trace_id, "rpc: %.100s arrived after its deadline",
			   req->method);
		shop_rpc_reply_error(&reply, SHOP_RPC_DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED",
				     "the deadline passed before the call was handled");
		goto out_pack;
	}
	if ((m = method_find(cfg, req->method)) == NULL || m->handler == NULL) {
		SHOP_LOG_T(WARN, call.trace_id, "rpc: unknown method %.100s", req->method);
		shop_rpc_reply_error(&reply, SHOP_RPC_UNIMPLEMENTED, "UNIMPLEMENTED",
				     "unknown method %.200s", req->method);
		goto out_pack;
	}
	if (m->request != NULL) {
		payload = protobuf_c_message_unpack(m->request, NULL, req->payload.len,
						    req->payload.data);
		if (payload == NULL) {
			SHOP_LOG_T(WARN, call.trace_id, "rpc: %s: malformed payload of %zu bytes",
				   m->name, req->payload.len);
			shop_rpc_reply_error(&reply, SHOP_RPC_INVALID_ARGUMENT, "MALFORMED_PAYLOAD",
					     "payload is not a serialized %s", m->request->name);
			goto out_pack;
		}
	}
	call.method = m->name;
	metric_method = m->name;
	call.deadline_unix_ms = req->deadline_unix_ms;
	call.caller_user_id = req->caller_user_id;
	call.worker = worker;
	call.worker_index = worker_index;
	m->handler(cfg->app, &call, payload, &reply);

out_pack:
	server_metrics_record(metric_method, reply.code, started_us);
	if (recorded) {
		shop_span_tag(&span, "rpc.grpc.status_code", "%d", reply.code);
		/* A business answer (NOT_FOUND...) is not a failure of the span. */
		if (reply.code == SHOP_RPC_UNKNOWN || reply.code == SHOP_RPC_DEADLINE_EXCEEDED ||
		    reply.code == SHOP_RPC_UNIMPLEMENTED || reply.code == SHOP_RPC_INTERNAL ||
		    reply.code == SHOP_RPC_UNAVAILABLE)
			shop_span_tag(&span, "error", "%s", shop_rpc_code_name(reply.code));
		shop_span_finish(&span);
	}
	if (traced)
		shop_log_set_trace(NULL);
	rv = shop_rpc_reply_pack(&reply, out, out_len);
	if (payload != NULL)
		protobuf_c_message_free_unpacked(payload, NULL);
	if (req != NULL)
		shop__v1__rpc_request__free_unpacked(req, NULL);
	shop_rpc_reply_fini(&reply);
	return rv;
}

/* Turns the request msg into its reply, in place (rep0 keeps the routing
 * header in the context, so the message can be reused). Returns 0, or -1
 * when no reply could be built at all. */
static int worker_build_reply(shop_rpc_server *s, struct srv_worker *w, void *state, nng_msg *msg)
{
	uint8_t *out = NULL;
	size_t out_len = 0;
	int rv;

	rv = shop_rpc_server_handle(&s->cfg, state, w->index, nng_msg_body(msg), nng_msg_len(msg),
				    &out, &out_len);
	nng_msg_clear(msg);
	if (rv != 0) {
		/* Out of memory: still answer, with a reply packed on the stack. */
		Shop__V1__RpcResponse resp = SHOP__V1__RPC_RESPONSE__INIT;
		uint8_t buf[64];

		resp.code = SHOP_RPC_INTERNAL;
		resp.reason = "INTERNAL";
		out_len = shop__v1__rpc_response__pack(&resp, buf);
		rv = nng_msg_append(msg, buf, out_len);
	} else {
		rv = nng_msg_append(msg, out, out_len);
	}
	free(out);
	if (rv != 0) {
		SHOP_LOG(ERROR, "rpc: worker %d: cannot build a reply: %s", w->index,
			 nng_strerror(rv));
		return -1;
	}
	return 0;
}

/* The slot receives again, unless the server is stopping. Under s->mtx. */
static void slot_recv_locked(shop_rpc_server *s, struct srv_slot *sl)
{
	if (s->stopping) {
		sl->state = SLOT_IDLE;
		return;
	}
	sl->state = SLOT_RECV;
	nng_aio_set_timeout(sl->aio, NNG_DURATION_INFINITE);
	nng_ctx_recv(sl->ctx, sl->aio);
}

/* Turns a request beyond the bound into its OVERLOADED answer, in place.
 * Counted in shop_rpc_server_handled_total{method,code="RESOURCE_EXHAUSTED"}
 * under the method's name when it is registered ("unknown" otherwise).
 * Returns 0, or -1 when out of memory. */
static int shed_build_reply(shop_rpc_server *s, nng_msg *msg)
{
	int64_t started_us = shop_now_mono_us();
	const char *metric_method = "unknown";
	Shop__V1__RpcRequest *req = NULL;
	const shop_rpc_method *m;
	shop_rpc_reply reply;
	uint8_t *out = NULL;
	size_t out_len = 0;
	int rv;

	if (nng_msg_len(msg) > 0)
		req = shop__v1__rpc_request__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	if (req != NULL && req->method != NULL && (m = method_find(&s->cfg, req->method)) != NULL)
		metric_method = m->name;
	shop_rpc_reply_init(&reply);
	shop_rpc_reply_error(&reply, SHOP_RPC_RESOURCE_EXHAUSTED, "OVERLOADED",
			     "the service has %d calls in hand; try again in " SHED_RETRY_AFTER_S
			     " s",
			     s->max_inflight);
	shop_rpc_reply_meta(&reply, "retry_after", SHED_RETRY_AFTER_S);
	server_metrics_record(metric_method, reply.code, started_us);
	if (req != NULL)
		shop__v1__rpc_request__free_unpacked(req, NULL);
	rv = shop_rpc_reply_pack(&reply, &out, &out_len);
	shop_rpc_reply_fini(&reply);
	if (rv != 0)
		return -1;
	nng_msg_clear(msg);
	rv = nng_msg_append(msg, out, out_len);
	free(out);
	return rv == 0 ? 0 : -1;
}

/* On an nng thread: a slot's receive or shed send completed. Never blocks. */
static void slot_cb(void *arg)
{
	struct srv_slot *sl = arg;
	shop_rpc_server *s = sl->s;
	int rv = nng_aio_result(sl->aio);
	nng_msg *msg;

	nng_mtx_lock(s->mtx);
	if (sl->state == SLOT_SHED) {
		if (rv != 0) {
			/* On failure the message is still ours. */
			nng_msg_free(nng_aio_get_msg(sl->aio));
			nng_aio_set_msg(sl->aio, NULL);
		}
		if (rv == NNG_ECLOSED)
			sl->state = SLOT_IDLE;
		else
			slot_recv_locked(s, sl);
		nng_mtx_unlock(s->mtx);
		return;
	}
	/* SLOT_RECV */
	if (rv != 0) {
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
			sl->state = SLOT_IDLE;
		else
			slot_recv_locked(s, sl); /* not seen: rep0 fails only so */
		nng_mtx_unlock(s->mtx);
		return;
	}
	msg = nng_aio_get_msg(sl->aio);
	nng_aio_set_msg(sl->aio, NULL);
	if (msg == NULL || s->stopping) {
		if (msg == NULL)
			slot_recv_locked(s, sl);
		else
			sl->state = SLOT_IDLE;
		nng_mtx_unlock(s->mtx);
		nng_msg_free(msg); /* accepts NULL */
		return;
	}
	if (s->inflight < s->max_inflight) {
		s->inflight++;
		sl->msg = msg;
		sl->next = NULL;
		sl->state = SLOT_QUEUED;
		if (s->tail != NULL)
			s->tail->next = sl;
		else
			s->head = sl;
		s->tail = sl;
		nng_cv_wake1(s->queue_cv);
		nng_mtx_unlock(s->mtx);
		return;
	}
	sl->state = SLOT_SHED;
	nng_mtx_unlock(s->mtx);
	if (shed_build_reply(s, msg) != 0) {
		nng_msg_free(msg);
		nng_mtx_lock(s->mtx);
		slot_recv_locked(s, sl);
		nng_mtx_unlock(s->mtx);
		return;
	}
	nng_aio_set_msg(sl->aio, msg);
	nng_aio_set_timeout(sl->aio, SERVER_SEND_TIMEOUT_MS);
	nng_ctx_send(sl->ctx, sl->aio); /* completes in slot_cb, state SLOT_SHED */
}

/* Handles the slot's request and sends its reply on the slot's context. */
static void worker_serve(shop_rpc_server *s, struct srv_worker *w, void *state, struct srv_slot *sl)
{
	nng_msg *msg = sl->msg;
	int rv;

	sl->msg = NULL;
	rv = worker_build_reply(s, w, state, msg);
	/* The call's work is done: it leaves the bound before its reply is
	 * sent, so that a caller that got the reply and calls again at once on
	 * the same context is never shed for a call it no longer has. */
	nng_mtx_lock(s->mtx);
	s->inflight--;
	nng_mtx_unlock(s->mtx);
	if (rv != 0) {
		nng_msg_free(msg);
		return;
	}
	nng_aio_set_msg(w->aio, msg);
	nng_aio_set_timeout(w->aio, SERVER_SEND_TIMEOUT_MS);
	nng_ctx_send(sl->ctx, w->aio);
	nng_aio_wait(w->aio);
	if ((rv = nng_aio_result(w->aio)) != 0) {
		/* On failure the message is still ours. */
		nng_msg_free(nng_aio_get_msg(w->aio));
		nng_aio_set_msg(w->aio, NULL);
		SHOP_LOG(WARN, "rpc: worker %d: reply not sent: %s", w->index, nng_strerror(rv));
	}
	nng_aio_set_msg(w->aio, NULL);
}

static void worker_main(void *arg)
{
	struct srv_worker *w = arg;
	shop_rpc_server *s = w->s;
	void *state = NULL;

	if (s->cfg.worker_init != NULL)
		state = s->cfg.worker_init(s->cfg.app, w->index);
	for (;;) {
		struct srv_slot *sl;

		nng_mtx_lock(s->mtx);
		while (s->head == NULL && !s->stopping)
			nng_cv_wait(s->queue_cv);
		/* Stopping: drain the queue, unless the grace is over. */
		if (s->head == NULL || s->closing) {
			nng_mtx_unlock(s->mtx);
			break;
		}
		sl = s->head;
		s->head = sl->next;
		if (s->head == NULL)
			s->tail = NULL;
		sl->next = NULL;
		sl->state = SLOT_BUSY;
		nng_mtx_unlock(s->mtx);

		worker_serve(s, w, state, sl);

		nng_mtx_lock(s->mtx);
		slot_recv_locked(s, sl);
		nng_mtx_unlock(s->mtx);
	}
	if (s->cfg.worker_fini != NULL)
		s->cfg.worker_fini(s->cfg.app, state);
	nng_mtx_lock(s->mtx);
	w->done = true;
	nng_cv_wake(s->cv);
	nng_mtx_unlock(s->mtx);
}

/* Sets the stopping flag, cancels the receive of every slot waiting for a
 * request and wakes the workers: each slot either sees the flag before its
 * next receive, or is in it and is cancelled. */
static void server_stop(shop_rpc_server *s)
{
	/* A re-opened listener would close the connections of the replies
	 * still to come. */
	shop_listen_keeper_stop(s->keeper);
	nng_mtx_lock(s->mtx);
	s->stopping = true;
	for (int i = 0; i < s->n_slots; i++)
		if (s->slots[i].state == SLOT_RECV)
			nng_aio_cancel(s->slots[i].aio);
	nng_cv_wake(s->queue_cv);
	nng_mtx_unlock(s->mtx);
}

/* Closes the socket, joins the threads and frees everything; the caller
 * has run server_stop already when threads run or slots receive. */
static void server_free(shop_rpc_server *s)
{
	if (s->mtx != NULL) {
		nng_mtx_lock(s->mtx);
		s->stopping = true;
		s->closing = true;
		if (s->queue_cv != NULL)
			nng_cv_wake(s->queue_cv);
		nng_mtx_unlock(s->mtx);
	}
	if (s->sock_open)
		nng_close(s->sock); /* fails pending receives and sends: ECLOSED */
	shop_listen_keeper_destroy(s->keeper);
	for (int i = 0; i < s->n_threads; i++)
		nng_thread_destroy(s->workers[i].thr); /* joins */
	/* Waits for a callback still running; none starts again (stopping). */
	for (int i = 0; i < s->n_slots; i++)
		nng_aio_stop(s->slots[i].aio);
	for (int i = 0; i < s->n_slots; i++) {
		struct srv_slot *sl = &s->slots[i];

		if (sl->msg != NULL) /* queued, never taken */
			nng_msg_free(sl->msg);
		nng_aio_free(sl->aio);
	}
	for (int i = 0; i < s->n_workers; i++)
		nng_aio_free(s->workers[i].aio);
	free(s->slots);
	free(s->workers);
	if (s->queue_cv != NULL)
		nng_cv_free(s->queue_cv);
	if (s->cv != NULL)
		nng_cv_free(s->cv);
	if (s->mtx != NULL)
		nng_mtx_free(s->mtx);
	free(s);
}

int shop_rpc_server_create(shop_rpc_server **out, const shop_rpc_server_config *cfg)
{
	shop_rpc_server *s;
	int rv;

	*out = NULL;
	if (cfg == NULL || cfg->url == NULL || cfg->workers < 1 ||
	    (cfg->methods == NULL && cfg->n_methods > 0))
		return NNG_EINVAL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NNG_ENOMEM;
	s->cfg = *cfg;
	s->max_inflight = cfg->max_inflight > 0
			      ? cfg->max_inflight
			      : SHOP_RPC_DEFAULT_INFLIGHT_PER_WORKER * cfg->workers;
	if (s->max_inflight < cfg->workers)
		s->max_inflight = cfg->workers;
	if ((rv = nng_mtx_alloc(&s->mtx)) != 0 || (rv = nng_cv_alloc(&s->cv, s->mtx)) != 0 ||
	    (rv = nng_cv_alloc(&s->queue_cv, s->mtx)) != 0)
		goto out_free;
	if ((s->workers = calloc((size_t)cfg->workers, sizeof(*s->workers))) == NULL ||
	    (s->slots = calloc((size_t)s->max_inflight + SHED_SLOTS, sizeof(*s->slots))) == NULL) {
		rv = NNG_ENOMEM;
		goto out_free;
	}
	if ((rv = nng_rep0_open(&s->sock)) != 0)
		goto out_free;
	s->sock_open = true;
	if ((rv = shop_nng_socket_defaults(s->sock)) != 0)
		goto out_free;
	for (int i = 0; i < s->max_inflight + SHED_SLOTS; i++) {
		struct srv_slot *sl = &s->slots[i];

		sl->s = s;
		sl->state = SLOT_IDLE;
		if ((rv = nng_ctx_open(&sl->ctx, s->sock)) != 0)
			goto out_free;
		if ((rv = nng_aio_alloc(&sl->aio, slot_cb, sl)) != 0)
			goto out_free;
		s->n_slots++;
	}
	for (int i = 0; i < cfg->workers; i++) {
		struct srv_worker *w = &s->workers[i];

		w->s = s;
		w->index = i;
		if ((rv = nng_aio_alloc(&w->aio, NULL, NULL)) != 0)
			goto out_free;
		s->n_workers++;
	}
	if ((rv = shop_listen_keeper_start(&s->keeper, s->sock, cfg->url, "rpc",
					   cfg->listen_probe_ms == 0  ? SHOP_LISTEN_PROBE_MS
					   : cfg->listen_probe_ms < 0 ? 0
								      : cfg->listen_probe_ms)) != 0)
		goto out_free;
	server_metrics_declare(cfg);
	for (int i = 0; i < cfg->workers; i++) {
		char name[32];

		if ((rv = nng_thread_create(&s->workers[i].thr, worker_main, &s->workers[i])) != 0)
			goto out_stop;
		snprintf(name, sizeof(name), "shop-rpc-%d", i);
		nng_thread_set_name(s->workers[i].thr, name);
		s->n_threads++;
	}
	nng_mtx_lock(s->mtx);
	for (int i = 0; i < s->n_slots; i++)
		slot_recv_locked(s, &s->slots[i]);
	nng_mtx_unlock(s->mtx);
	SHOP_LOG(INFO, "rpc: serving %s with %d workers, at most %d calls in hand", cfg->url,
		 cfg->workers, s->max_inflight);
	*out = s;
	return 0;

out_stop:
	server_stop(s);
out_free:
	SHOP_LOG(ERROR, "rpc: server on %s not started: %s", cfg->url, nng_strerror(rv));
	server_free(s);
	return rv;
}

void shop_rpc_server_destroy(shop_rpc_server *s, int grace_ms)
{
	nng_time until;

	if (s == NULL)
		return;
	/* The listener stays open until the socket closes: closing it would
	 * also close the pipes it accepted, and with them the replies of the
	 * calls in flight and queued. */
	server_stop(s);
	nng_mtx_lock(s->mtx);
	until = nng_clock() + (nng_time)(grace_ms > 0 ? grace_ms : 0);
	for (;;) {
		int done = 0;

		for (int i = 0; i < s->n_threads; i++)
			done += s->workers[i].done;
		if (done == s->n_threads || nng_cv_until(s->cv, until) == NNG_ETIMEDOUT)
			break;
	}
	s->closing = true; /* the workers still running take no further call */
	nng_mtx_unlock(s->mtx);
	SHOP_LOG(INFO, "rpc: stopped serving %s", s->cfg.url);
	server_free(s);
}
