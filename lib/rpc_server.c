/* rpc_server.c -- a REP socket whose contexts answer from nng's callbacks,
 * with admission of in-flight work.
 *
 * Each receiving context ("slot") is a state machine driven by its aio's
 * callback (slot_cb, on an nng thread): RECV → CALL → SEND → RECV. The
 * socket has max_inflight + SHED_SLOTS slots: max_inflight can hold an
 * admitted call, and SHED_SLOTS more are always free to receive, so a
 * pipe's message is taken at once and REP never stops reading a pipe while
 * the server is full. A request received while fewer than max_inflight
 * calls are admitted becomes a call; one beyond the bound is answered at
 * once from the callback, on its own slot: RESOURCE_EXHAUSTED, reason
 * OVERLOADED, metadata retry_after.
 *
 * A call is decoded on the nng thread. What needs no handler (bytes that do
 * not parse, a passed deadline, an unknown method) is answered there; so
 * are INLINE methods. An ASYNC method's handler starts there and completes
 * from any thread (shop_rpc_call_done), or hands the call to the workers
 * (shop_rpc_call_defer). A BLOCKING method's call goes onto a FIFO that the
 * worker threads take from; a worker runs the handler with its own state
 * (it is re-checked against its deadline first). Whoever finishes a call
 * packs the reply into the request's message (rep0 keeps the routing header
 * in the context) and sends it on the slot's own aio, so nobody waits for a
 * send; its completion makes the slot receive again. A call leaves the bound
 * once its reply is built, before the send (a caller that has its reply may
 * call again at once). No aio here is ever used for nng_sleep_aio
 * (docs/decisions.md, the fourth nng 1.5.2 defect), so the send timeout on
 * a slot's aio is a real one.
 *
 * Shutdown: shop_rpc_server_destroy sets the stopping flag under the lock
 * and cancels every slot waiting for a request; a slot never receives again
 * once the flag is set (a request that arrives meanwhile is dropped with
 * the socket: its caller sees the connection reset). Every call admitted
 * before the stop is finished and its reply sent, within grace_ms. After
 * the grace the server is closing: workers take no further call, the calls
 * still queued are freed unanswered, a call finished from then on is
 * dropped, and the socket is closed, which fails any send still pending
 * with NNG_ECLOSED. A handler still running (or an ASYNC call not yet
 * completed) past the grace is waited for: it cannot be interrupted
 * safely, so handlers must respect the call's deadline. */
#include "rpc_server.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
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
 * peer that stops reading cannot hold a slot forever. */
#define SERVER_SEND_TIMEOUT_MS 5000

/* Slots beyond max_inflight: always free to receive and shed. */
#define SHED_SLOTS 4

/* What a shed call is told to wait, in seconds. */
#define SHED_RETRY_AFTER_S "1"

/* One call from its decoding to its reply. The handler gets &call, and
 * finds the rest by it (shop_rpc_call_done). Who finishes it (a slot, or
 * shop_rpc_server_handle's caller) is said by finish and defer. */
struct srv_call {
	shop_rpc_call call; /* first: handlers see only this */
	shop_rpc_reply reply;
	const shop_rpc_server_config *cfg;
	const shop_rpc_method *m;
	Shop__V1__RpcRequest *req;
	ProtobufCMessage *payload;
	shop_rpc_handler_fn deferred; /* what a worker runs */
	const char *metric_method;
	int64_t started_us;
	bool traced, recorded;
	char own_tp[SHOP_TRACEPARENT_LEN];
	shop_span span;
	void (*finish)(struct srv_call *); /* the reply is final */
	void (*defer)(struct srv_call *);  /* deferred is set: to a worker */
	void *owner;
	struct srv_call *next; /* on the workers' queue */
};

enum slot_state {
	SLOT_IDLE, /* not receiving: before the start, or after the stop */
	SLOT_RECV, /* waiting for a request on its aio; may be cancelled */
	SLOT_CALL, /* holds an admitted call: running, queued or pending */
	SLOT_SEND, /* sending a reply (a call's or a shed one) on its aio */
};

struct srv_slot {
	shop_rpc_server *s;
	nng_ctx ctx;
	nng_aio *aio; /* callback slot_cb: receives and sends */
	nng_msg *msg; /* the request of the call (SLOT_CALL) */
	struct srv_call sc;
	enum slot_state state; /* under s->mtx */
};

struct srv_worker {
	shop_rpc_server *s;
	int index;
	nng_thread *thr;
};

struct shop_rpc_server {
	shop_rpc_server_config cfg;
	nng_socket sock;
	bool sock_open;
	shop_listen_keeper *keeper; /* the listener, probed and re-opened (listen_keeper.h) */
	nng_mtx *mtx;
	nng_cv *cv;       /* signalled when the last call or send ends, stopping */
	nng_cv *queue_cv; /* signalled when a call is queued, and at the stop */
	bool stopping;    /* under mtx: no slot receives again */
	bool closing;     /* under mtx: the grace is over, nothing more is sent */
	int max_inflight;
	int inflight;                 /* under mtx: admitted calls without a reply yet */
	int sending;                  /* under mtx: slots in SLOT_SEND */
	struct srv_call *head, *tail; /* under mtx: the workers' queue */
	int n_slots;                  /* slots whose ctx and aio exist */
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

/* Unknown methods are counted (handled_total{method="unknown",
 * code="UNIMPLEMENTED"}) and logged once per process: a line per call made
 * a caller's mistake, or a benchmark of the bare dispatch, cost a write(2)
 * each. */
static atomic_bool unknown_logged;

/* Decodes in as an RpcRequest and looks its method up. Returns true when a
 * handler is to run (sc->m, sc->payload and sc->call set), false when the
 * reply is already final (malformed, past its deadline, unknown). The
 * calling thread's log lines carry the trace id until call_leave. */
static bool call_begin(struct srv_call *sc, const shop_rpc_server_config *cfg, const uint8_t *in,
		       size_t in_len)
{
	shop_trace_ctx in_ctx, own_ctx;
	const shop_rpc_method *m;
	Shop__V1__RpcRequest *req;

	sc->cfg = cfg;
	sc->m = NULL;
	sc->req = NULL;
	sc->payload = NULL;
	sc->deferred = NULL;
	sc->metric_method = "unknown";
	sc->started_us = shop_now_mono_us();
	sc->traced = sc->recorded = false;
	sc->next = NULL;
	memset(&sc->call, 0, sizeof(sc->call));
	sc->call.traceparent = "";
	sc->call.worker_index = -1;
	shop_rpc_reply_init(&sc->reply);
	if (in == NULL && in_len > 0)
		in_len = 0;
	req = sc->req = in_len > 0 ? shop__v1__rpc_request__unpack(NULL, in_len, in) : NULL;
	/* Zero bytes decode as an RpcRequest with every field empty; it names
	 * no method, so it is answered as malformed too, not as unimplemented. */
	if (req == NULL || req->method == NULL || req->method[0] == '\0') {
		SHOP_LOG(WARN, "rpc: malformed request of %zu bytes", in_len);
		shop_rpc_reply_error(
		    &sc->reply, SHOP_RPC_INVALID_ARGUMENT, "MALFORMED_REQUEST",
		    "request is not a serialized shop.v1.RpcRequest with a method");
		return false;
	}
	/* A malformed traceparent is not passed on: W3C says to start a new
	 * trace rather than propagate one that does not parse. A valid one
	 * opens this call's SERVER span, child of the caller's span; handlers
	 * get the span's own context, so the calls they make are its children,
	 * and every line this thread logs meanwhile carries the trace id. */
	if (shop_traceparent_parse(req->traceparent, &in_ctx) == 0) {
		shop_trace_child(&in_ctx, &own_ctx);
		shop_traceparent_format(&own_ctx, sc->own_tp);
		sc->call.traceparent = sc->own_tp;
		memcpy(sc->call.trace_id, in_ctx.trace_id, sizeof(sc->call.trace_id));
		sc->traced = true;
		shop_log_set_trace(sc->call.trace_id);
		if ((in_ctx.flags & 1) != 0 && shop_trace_recording()) {
			shop_span_begin(&sc->span, SHOP_SPAN_SERVER, req->method, in_ctx.trace_id,
					own_ctx.span_id, in_ctx.span_id, true);
			shop_span_tag(&sc->span, "rpc.method", "%s", req->method);
			sc->recorded = true;
		}
	}
	/* A negative deadline is a moment before 1970: already passed. */
	if (req->deadline_unix_ms != 0 && req->deadline_unix_ms < shop_now_unix_ms()) {
		SHOP_LOG_T(WARN, sc->call.trace_id, "rpc: %.100s arrived after its deadline",
			   req->method);
		shop_rpc_reply_error(&sc->reply, SHOP_RPC_DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED",
				     "the deadline passed before the call was handled");
		return false;
	}
	if ((m = method_find(cfg, req->method)) == NULL || m->handler == NULL) {
		if (!atomic_exchange(&unknown_logged, true))
			SHOP_LOG_T(WARN, sc->call.trace_id,
				   "rpc: unknown method %.100s (further ones are only counted: "
				   "shop_rpc_server_handled_total{method=\"unknown\"})",
				   req->method);
		shop_rpc_reply_error(&sc->reply, SHOP_RPC_UNIMPLEMENTED, "UNIMPLEMENTED",
				     "unknown method %.200s", req->method);
		return false;
	}
	if (m->request != NULL) {
		sc->payload = protobuf_c_message_unpack(m->request, NULL, req->payload.len,
							req->payload.data);
		if (sc->payload == NULL) {
			SHOP_LOG_T(WARN, sc->call.trace_id,
				   "rpc: %s: malformed payload of %zu bytes", m->name,
				   req->payload.len);
			shop_rpc_reply_error(&sc->reply, SHOP_RPC_INVALID_ARGUMENT,
					     "MALFORMED_PAYLOAD", "payload is not a serialized %s",
					     m->request->name);
			return false;
		}
	}
	sc->m = m;
	sc->metric_method = m->name;
	sc->call.method = m->name;
	sc->call.deadline_unix_ms = req->deadline_unix_ms;
	sc->call.caller_user_id = req->caller_user_id;
	return true;
}

/* The calling thread's log lines stop carrying the call's trace id. */
static void call_leave(const struct srv_call *sc)
{
	if (sc->traced)
		shop_log_set_trace(NULL);
}

/* The reply is final: metrics and span, and the decoded request is freed
 * (the reply itself is packed and freed by the finisher). */
static void call_end(struct srv_call *sc)
{
	int code = sc->reply.code;

	server_metrics_record(sc->metric_method, code, sc->started_us);
	if (sc->recorded) {
		shop_span_tag(&sc->span, "rpc.grpc.status_code", "%d", code);
		/* A business answer (NOT_FOUND...) is not a failure of the span. */
		if (code == SHOP_RPC_UNKNOWN || code == SHOP_RPC_DEADLINE_EXCEEDED ||
		    code == SHOP_RPC_UNIMPLEMENTED || code == SHOP_RPC_INTERNAL ||
		    code == SHOP_RPC_UNAVAILABLE)
			shop_span_tag(&sc->span, "error", "%s", shop_rpc_code_name(code));
		shop_span_finish(&sc->span);
		sc->recorded = false;
	}
	if (sc->payload != NULL)
		protobuf_c_message_free_unpacked(sc->payload, NULL);
	if (sc->req != NULL)
		shop__v1__rpc_request__free_unpacked(sc->req, NULL);
	sc->payload = NULL;
	sc->req = NULL;
}

/* Runs the deferred handler with a worker's state, unless the deadline
 * passed while the call waited for the worker. */
static void call_run_deferred(struct srv_call *sc, void *worker, int worker_index)
{
	if (sc->call.deadline_unix_ms != 0 && sc->call.deadline_unix_ms < shop_now_unix_ms()) {
		SHOP_LOG_T(WARN, sc->call.trace_id, "rpc: %s: deadline passed while queued",
			   sc->m->name);
		shop_rpc_reply_error(&sc->reply, SHOP_RPC_DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED",
				     "the deadline passed before the call was handled");
		return;
	}
	sc->call.worker = worker;
	sc->call.worker_index = worker_index;
	if (sc->traced)
		shop_log_set_trace(sc->call.trace_id);
	sc->deferred(sc->cfg->app, &sc->call, sc->payload, &sc->reply);
	call_leave(sc);
}

/* Starts the handler of a call call_begin accepted, as its mode says. */
static void call_dispatch(struct srv_call *sc)
{
	switch (sc->m->mode) {
	case SHOP_RPC_INLINE:
		sc->m->handler(sc->cfg->app, &sc->call, sc->payload, &sc->reply);
		sc->finish(sc);
		break;
	case SHOP_RPC_ASYNC:
		/* Completes by shop_rpc_call_done or _defer, maybe at once. */
		sc->m->handler(sc->cfg->app, &sc->call, sc->payload, &sc->reply);
		break;
	case SHOP_RPC_BLOCKING:
	default:
		sc->deferred = sc->m->handler;
		sc->defer(sc);
		break;
	}
}

void shop_rpc_call_done(shop_rpc_call *call)
{
	struct srv_call *sc = (struct srv_call *)((char *)call - offsetof(struct srv_call, call));

	sc->finish(sc);
}

void shop_rpc_call_defer(shop_rpc_call *call, shop_rpc_handler_fn fn)
{
	struct srv_call *sc = (struct srv_call *)((char *)call - offsetof(struct srv_call, call));

	sc->deferred = fn;
	sc->defer(sc);
}

/* ---- shop_rpc_server_handle: the same dispatch on the calling thread ---- */

struct sync_wait {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool finished, deferred;
};

static void sync_wake(struct srv_call *sc, bool deferred)
{
	struct sync_wait *w = sc->owner;

	pthread_mutex_lock(&w->mtx);
	if (deferred)
		w->deferred = true;
	else
		w->finished = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mtx);
}

static void sync_finish(struct srv_call *sc)
{
	sync_wake(sc, false);
}

/* The deferred handler runs on the thread waiting in handle, not on the
 * thread that deferred it (an event loop's, maybe). */
static void sync_defer(struct srv_call *sc)
{
	sync_wake(sc, true);
}

int shop_rpc_server_handle(const shop_rpc_server_config *cfg, void *worker, int worker_index,
			   const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len)
{
	struct sync_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};
	struct srv_call *sc = malloc(sizeof(*sc));
	bool run;
	int rv;

	if (sc == NULL)
		return -1;
	sc->owner = &w;
	sc->finish = sync_finish;
	sc->defer = sync_defer;
	if ((run = call_begin(sc, cfg, in, in_len)))
		call_dispatch(sc);
	call_leave(sc);
	pthread_mutex_lock(&w.mtx);
	while (run && !w.finished) {
		if (w.deferred) {
			w.deferred = false;
			pthread_mutex_unlock(&w.mtx);
			call_run_deferred(sc, worker, worker_index);
			pthread_mutex_lock(&w.mtx);
			break;
		}
		pthread_cond_wait(&w.cv, &w.mtx);
	}
	pthread_mutex_unlock(&w.mtx);
	call_end(sc);
	rv = shop_rpc_reply_pack(&sc->reply, out, out_len);
	shop_rpc_reply_fini(&sc->reply);
	free(sc);
	return rv;
}

/* ---- the server: slots, the queue, the workers ------------------------- */

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

/* Sends msg (taken) on the slot's aio, or drops it once closing. Under
 * s->mtx, so that the stop never closes the socket between the decision
 * and the send. The completion comes to slot_cb (never inline: rep0 queues
 * its send completions, and a closed context's failure too). */
static void slot_send_locked(shop_rpc_server *s, struct srv_slot *sl, nng_msg *msg)
{
	if (s->closing) {
		nng_msg_free(msg);
		sl->state = SLOT_IDLE;
		return;
	}
	sl->state = SLOT_SEND;
	s->sending++;
	nng_aio_set_msg(sl->aio, msg);
	nng_aio_set_timeout(sl->aio, SERVER_SEND_TIMEOUT_MS);
	nng_ctx_send(sl->ctx, sl->aio);
}

/* Sends the reply msg (taken), or, NULL when none could be built, lets the
 * slot receive again. Under s->mtx. */
static void slot_reply_locked(shop_rpc_server *s, struct srv_slot *sl, nng_msg *msg)
{
	if (msg != NULL)
		slot_send_locked(s, sl, msg);
	else
		slot_recv_locked(s, sl);
}

static uint8_t *msg_alloc(void *arg, size_t len)
{
	nng_msg *msg = arg;

	nng_msg_clear(msg);
	return nng_msg_realloc(msg, len) == 0 ? nng_msg_body(msg) : NULL;
}

/* Replaces msg's body with the reply packed; on failure, with an INTERNAL
 * reply packed on the stack. Returns 0, or -1 when no reply could be built. */
static int reply_to_msg(const shop_rpc_reply *reply, nng_msg *msg)
{
	Shop__V1__RpcResponse resp = SHOP__V1__RPC_RESPONSE__INIT;
	uint8_t buf[64];
	size_t len;

	if (shop_rpc_reply_pack_with(reply, msg_alloc, msg, &len) == 0 &&
	    nng_msg_realloc(msg, len) == 0)
		return 0;
	/* Out of memory: still answer. */
	resp.code = SHOP_RPC_INTERNAL;
	resp.reason = "INTERNAL";
	len = shop__v1__rpc_response__pack(&resp, buf);
	nng_msg_clear(msg);
	return nng_msg_append(msg, buf, len) == 0 ? 0 : -1;
}

/* A slot's call is final (any thread): its reply replaces the request in
 * the message, the call leaves the bound, and the reply is sent. */
static void slot_finish(struct srv_call *sc)
{
	struct srv_slot *sl = sc->owner;
	shop_rpc_server *s = sl->s;
	nng_msg *msg = sl->msg;
	int rv;

	call_end(sc);
	sl->msg = NULL;
	rv = reply_to_msg(&sc->reply, msg);
	shop_rpc_reply_fini(&sc->reply);
	if (rv != 0)
		SHOP_LOG(ERROR, "rpc: cannot build a reply: out of memory");
	nng_mtx_lock(s->mtx);
	if (--s->inflight == 0 && s->stopping)
		nng_cv_wake(s->cv);
	slot_reply_locked(s, sl, rv == 0 ? msg : NULL);
	nng_mtx_unlock(s->mtx);
	if (rv != 0)
		nng_msg_free(msg);
}

/* A slot's call goes to the workers (any thread), or is dropped once the
 * server is closing. */
static void slot_defer(struct srv_call *sc)
{
	struct srv_slot *sl = sc->owner;
	shop_rpc_server *s = sl->s;

	nng_mtx_lock(s->mtx);
	if (!s->closing) {
		if (s->tail != NULL)
			s->tail->next = sc;
		else
			s->head = sc;
		s->tail = sc;
		nng_cv_wake1(s->queue_cv);
		nng_mtx_unlock(s->mtx);
		return;
	}
	nng_mtx_unlock(s->mtx);
	call_end(sc);
	shop_rpc_reply_fini(&sc->reply);
	nng_mtx_lock(s->mtx);
	nng_msg_free(sl->msg);
	sl->msg = NULL;
	sl->state = SLOT_IDLE;
	if (--s->inflight == 0)
		nng_cv_wake(s->cv);
	nng_mtx_unlock(s->mtx);
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
	rv = reply_to_msg(&reply, msg);
	shop_rpc_reply_fini(&reply);
	return rv;
}

/* On an nng thread: a request arrived on the slot and is admitted. */
static void slot_call(shop_rpc_server *s, struct srv_slot *sl)
{
	struct srv_call *sc = &sl->sc;
	bool run, traced;

	sc->owner = sl;
	sc->finish = slot_finish;
	sc->defer = slot_defer;
	run = call_begin(sc, &s->cfg, nng_msg_body(sl->msg), nng_msg_len(sl->msg));
	/* Read before: once finished, the slot may already hold another call. */
	traced = sc->traced;
	if (run)
		call_dispatch(sc);
	else
		sc->finish(sc);
	if (traced)
		shop_log_set_trace(NULL);
}

/* On an nng thread: a slot's receive or send completed. Never blocks: it
 * takes the server's lock for a few instructions, and handles what needs
 * no worker. */
static void slot_cb(void *arg)
{
	struct srv_slot *sl = arg;
	shop_rpc_server *s = sl->s;
	int rv = nng_aio_result(sl->aio);
	nng_msg *msg;

	nng_mtx_lock(s->mtx);
	if (sl->state == SLOT_SEND) {
		if (rv != 0) {
			/* On failure the message is still ours. */
			nng_msg_free(nng_aio_get_msg(sl->aio));
			nng_aio_set_msg(sl->aio, NULL);
			if (rv != NNG_ECLOSED)
				SHOP_LOG(WARN, "rpc: reply not sent: %s", nng_strerror(rv));
		}
		if (--s->sending == 0 && s->stopping)
			nng_cv_wake(s->cv);
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
		sl->state = SLOT_CALL;
		nng_mtx_unlock(s->mtx);
		slot_call(s, sl);
		return;
	}
	sl->state = SLOT_CALL; /* not admitted: only until its shed reply is sent */
	nng_mtx_unlock(s->mtx);
	rv = shed_build_reply(s, msg);
	nng_mtx_lock(s->mtx);
	slot_reply_locked(s, sl, rv == 0 ? msg : NULL);
	nng_mtx_unlock(s->mtx);
	if (rv != 0)
		nng_msg_free(msg);
}

static void worker_main(void *arg)
{
	struct srv_worker *w = arg;
	shop_rpc_server *s = w->s;
	void *state = NULL;

	if (s->cfg.worker_init != NULL)
		state = s->cfg.worker_init(s->cfg.app, w->index);
	for (;;) {
		struct srv_call *sc;

		nng_mtx_lock(s->mtx);
		/* Stopping, the workers stay while calls are in hand: an ASYNC
		 * call may still be deferred to them. */
		while (s->head == NULL && !s->closing && !(s->stopping && s->inflight == 0))
			nng_cv_wait(s->queue_cv);
		if (s->head == NULL || s->closing) {
			nng_mtx_unlock(s->mtx);
			break;
		}
		sc = s->head;
		s->head = sc->next;
		if (s->head == NULL)
			s->tail = NULL;
		sc->next = NULL;
		nng_mtx_unlock(s->mtx);

		call_run_deferred(sc, state, w->index);
		sc->finish(sc);
	}
	if (s->cfg.worker_fini != NULL)
		s->cfg.worker_fini(s->cfg.app, state);
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

/* Past the grace (or at a failed start): nothing more is sent, the queue is
 * freed, and what still runs is waited for; then the socket is closed and
 * everything freed. */
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
	for (int i = 0; i < s->n_threads; i++)
		nng_thread_destroy(s->workers[i].thr); /* joins */
	if (s->mtx != NULL) {
		nng_mtx_lock(s->mtx);
		while (s->head != NULL) { /* queued, never taken: dropped */
			struct srv_call *sc = s->head;

			s->head = sc->next;
			nng_mtx_unlock(s->mtx);
			sc->next = NULL;
			slot_defer(sc); /* closing: frees it, leaves the bound */
			nng_mtx_lock(s->mtx);
		}
		s->tail = NULL;
		/* A handler still running, or an ASYNC call not completed. */
		while (s->inflight > 0)
			nng_cv_wait(s->cv);
		nng_mtx_unlock(s->mtx);
	}
	if (s->sock_open)
		nng_close(s->sock); /* fails pending receives and sends: ECLOSED */
	shop_listen_keeper_destroy(s->keeper);
	/* Waits for a callback still running; none starts again (closing). */
	for (int i = 0; i < s->n_slots; i++)
		nng_aio_stop(s->slots[i].aio);
	for (int i = 0; i < s->n_slots; i++) {
		struct srv_slot *sl = &s->slots[i];

		if (sl->msg != NULL)
			nng_msg_free(sl->msg);
		nng_aio_free(sl->aio);
	}
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

/* The server's one listen, probed and re-opened when nng's accept loop
 * dies (listen_keeper.h). */
static int server_listen(shop_rpc_server *s, const shop_rpc_server_config *cfg)
{
	return shop_listen_keeper_start(&s->keeper, s->sock, cfg->url, "rpc",
					cfg->listen_probe_ms == 0  ? SHOP_LISTEN_PROBE_MS
					: cfg->listen_probe_ms < 0 ? 0
								   : cfg->listen_probe_ms);
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
		s->workers[i].s = s;
		s->workers[i].index = i;
	}
	if ((rv = server_listen(s, cfg)) != 0)
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
	 * calls in flight. */
	server_stop(s);
	nng_mtx_lock(s->mtx);
	until = nng_clock() + (nng_time)(grace_ms > 0 ? grace_ms : 0);
	/* Every admitted call answered and its reply handed to the pipe. */
	while ((s->inflight > 0 || s->sending > 0) && nng_cv_until(s->cv, until) != NNG_ETIMEDOUT)
		;
	nng_mtx_unlock(s->mtx);
	SHOP_LOG(INFO, "rpc: stopped serving %s", s->cfg.url);
	server_free(s);
}
