/* rpc_server.c -- a REP socket served by worker threads: each worker owns one
 * nng context and one aio, receives a request, dispatches it and sends the
 * one reply, in a plain blocking loop on its own thread.
 *
 * Shutdown: shop_rpc_server_destroy sets a stopping flag and cancels the
 * receive of every idle worker. A worker in the middle of a call finishes it and sends the reply,
 * then sees the flag and leaves its loop. After grace_ms the socket is
 * closed, which fails any receive or send still pending with NNG_ECLOSED;
 * a handler that is still running past the grace is waited for (it cannot
 * be interrupted safely), so handlers must respect the call's deadline.
 * Requests that arrived but were not yet taken by a worker are dropped with
 * the socket; their callers see the connection reset. */
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
#include "log.h"
#include "metrics.h"
#include "rpc_client.h"
#include "trace.h"

/* A reply that cannot be handed to the pipe in this long is dropped, so a
 * peer that stops reading cannot hold a worker forever. */
#define SERVER_SEND_TIMEOUT_MS 5000

enum worker_state {
	WORKER_STARTING, /* running worker_init */
	WORKER_RECV,     /* waiting for a request; may be cancelled */
	WORKER_BUSY,     /* handling a request or sending its reply */
	WORKER_DONE,     /* left its loop, worker_fini done */
};

struct srv_worker {
	shop_rpc_server *s;
	int index;
	nng_ctx ctx;
	nng_aio *aio; /* no callback: the worker waits on it */
	nng_thread *thr;
	/* A lock of its own, so that workers never wait on each other's
	 * (one shared lock was taken four times per request by each). */
	nng_mtx *mtx;
	enum worker_state state; /* under mtx */
	bool stopping;           /* under mtx */
	bool done;               /* under s->mtx: left its loop, worker_fini done */
};

struct shop_rpc_server {
	shop_rpc_server_config cfg;
	nng_socket sock;
	bool sock_open;
	nng_mtx *mtx;
	nng_cv *cv; /* signalled when a worker sets its done flag */
	bool stopping; /* informational: each worker has its own flag */
	int n_workers; /* workers whose ctx and aio exist */
	int n_threads; /* workers whose thread runs */
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

/* Handles one request; takes ownership of msg. */
static void worker_serve(shop_rpc_server *s, struct srv_worker *w, void *state, nng_msg *msg)
{
	int rv;

	if (worker_build_reply(s, w, state, msg) != 0) {
		nng_msg_free(msg);
		return;
	}
	nng_aio_set_msg(w->aio, msg);
	nng_aio_set_timeout(w->aio, SERVER_SEND_TIMEOUT_MS);
	nng_ctx_send(w->ctx, w->aio);
	nng_aio_wait(w->aio);
	if ((rv = nng_aio_result(w->aio)) != 0) {
		/* On failure the message is still ours. */
		nng_msg_free(nng_aio_get_msg(w->aio));
		nng_aio_set_msg(w->aio, NULL);
		SHOP_LOG(WARN, "rpc: worker %d: reply not sent: %s", w->index, nng_strerror(rv));
	}
}

static void worker_main(void *arg)
{
	struct srv_worker *w = arg;
	shop_rpc_server *s = w->s;
	void *state = NULL;
	int rv;

	if (s->cfg.worker_init != NULL)
		state = s->cfg.worker_init(s->cfg.app, w->index);
	for (;;) {
		/* The flag check and the receive are one step under the lock,
		 * so destroy either sees WORKER_RECV and cancels the receive,
		 * or this worker sees the flag. */
		nng_mtx_lock(w->mtx);
		if (w->stopping) {
			nng_mtx_unlock(w->mtx);
			break;
		}
		w->state = WORKER_RECV;
		nng_aio_set_timeout(w->aio, NNG_DURATION_INFINITE);
		nng_ctx_recv(w->ctx, w->aio);
		nng_mtx_unlock(w->mtx);

		nng_aio_wait(w->aio);
		nng_mtx_lock(w->mtx);
		w->state = WORKER_BUSY;
		nng_mtx_unlock(w->mtx);

		rv = nng_aio_result(w->aio);
		if (rv == NNG_ECLOSED)
			break;
		if (rv == NNG_ECANCELED)
			continue; /* destroy woke us; the loop sees the flag */
		if (rv != 0) {
			SHOP_LOG(WARN, "rpc: worker %d: receive failed: %s", w->index,
				 nng_strerror(rv));
			nng_msleep(10); /* do not spin on a persistent error */
			continue;
		}
		worker_serve(s, w, state, nng_aio_get_msg(w->aio));
		nng_aio_set_msg(w->aio, NULL);
	}
	if (s->cfg.worker_fini != NULL)
		s->cfg.worker_fini(s->cfg.app, state);
	nng_mtx_lock(w->mtx);
	w->state = WORKER_DONE;
	nng_mtx_unlock(w->mtx);
	nng_mtx_lock(s->mtx);
	w->done = true;
	nng_cv_wake(s->cv);
	nng_mtx_unlock(s->mtx);
}

/* Tells every running worker to stop, and cancels the receive of those
 * waiting for a request: each either sees its flag before its next
 * receive, or is in it and is cancelled. */
static void workers_stop(shop_rpc_server *s)
{
	for (int i = 0; i < s->n_threads; i++) {
		struct srv_worker *w = &s->workers[i];

		nng_mtx_lock(w->mtx);
		w->stopping = true;
		if (w->state == WORKER_RECV)
			nng_aio_cancel(w->aio);
		nng_mtx_unlock(w->mtx);
	}
}

/* Closes the socket, joins the threads and frees everything; the caller
 * has run workers_stop already when threads run. */
static void server_free(shop_rpc_server *s)
{
	if (s->sock_open)
		nng_close(s->sock); /* fails pending receives and sends: ECLOSED */
	for (int i = 0; i < s->n_threads; i++)
		nng_thread_destroy(s->workers[i].thr); /* joins */
	for (int i = 0; i < s->n_workers; i++) {
		nng_aio_free(s->workers[i].aio);
		nng_mtx_free(s->workers[i].mtx);
	}
	free(s->workers);
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
	if ((rv = nng_mtx_alloc(&s->mtx)) != 0 || (rv = nng_cv_alloc(&s->cv, s->mtx)) != 0)
		goto out_free;
	if ((s->workers = calloc((size_t)cfg->workers, sizeof(*s->workers))) == NULL) {
		rv = NNG_ENOMEM;
		goto out_free;
	}
	if ((rv = nng_rep0_open(&s->sock)) != 0)
		goto out_free;
	s->sock_open = true;
	if ((rv = shop_nng_socket_defaults(s->sock)) != 0)
		goto out_free;
	for (int i = 0; i < cfg->workers; i++) {
		struct srv_worker *w = &s->workers[i];

		w->s = s;
		w->index = i;
		w->state = WORKER_STARTING;
		if ((rv = nng_ctx_open(&w->ctx, s->sock)) != 0)
			goto out_free;
		if ((rv = nng_aio_alloc(&w->aio, NULL, NULL)) != 0)
			goto out_free;
		if ((rv = nng_mtx_alloc(&w->mtx)) != 0) {
			nng_aio_free(w->aio);
			goto out_free;
		}
		s->n_workers++;
	}
	if ((rv = nng_listen(s->sock, cfg->url, NULL, 0)) != 0)
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
	SHOP_LOG(INFO, "rpc: serving %s with %d workers", cfg->url, cfg->workers);
	*out = s;
	return 0;

out_stop:
	nng_mtx_lock(s->mtx);
	s->stopping = true;
	nng_mtx_unlock(s->mtx);
	workers_stop(s);
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
	nng_mtx_lock(s->mtx);
	s->stopping = true;
	nng_mtx_unlock(s->mtx);
	workers_stop(s);
	nng_mtx_lock(s->mtx);
	until = nng_clock() + (nng_time)(grace_ms > 0 ? grace_ms : 0);
	for (;;) {
		int done = 0;

		for (int i = 0; i < s->n_threads; i++)
			done += s->workers[i].done;
		if (done == s->n_threads || nng_cv_until(s->cv, until) == NNG_ETIMEDOUT)
			break;
	}
	nng_mtx_unlock(s->mtx);
	SHOP_LOG(INFO, "rpc: stopped serving %s", s->cfg.url);
	server_free(s);
}
