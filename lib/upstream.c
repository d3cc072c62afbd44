/* upstream.c -- call a service by name: registry view → breakers →
 * weighted pick → the instance's connection, with one retry on another
 * instance for idempotent calls that fail at the transport level or whose
 * first try passes its per-try timeout (a part of the deadline). */
#include "upstream.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "balancer.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "strbuf.h"
#include "trace.h"

#define UPSTREAM_MAX_PICK 64   /* instances of one service considered per call */
#define UPSTREAM_POOL     32   /* nng contexts per instance connection */
#define UPSTREAM_QUEUE    4096 /* calls waiting for a context, per instance */

/* One entry per (instance name, rpc_url) ever seen, kept for the
 * upstream's lifetime: an instance that leaves and comes back reuses its
 * socket (nng redials by itself) and its breaker, and a departed one costs
 * one idle socket. */
typedef struct upstream_inst {
	char instance[64];
	char rpc_url[128];
	shop_rpc_conn *conn;
	shop_breaker *breaker; /* "<caller>:<instance>" */
	struct upstream_inst *next;
} upstream_inst;

struct shop_upstream {
	shop_registry_view *view; /* borrowed */
	char caller[32];
	shop_breaker_config bcfg;
	int per_try_pct; /* an idempotent call's first try: this % of its deadline */
	pthread_mutex_t mtx;
	upstream_inst *insts; /* prepend-only list: readers walk it unlocked */
};

/* One call in flight. */
typedef struct upstream_call {
	shop_upstream *u;
	char service[32];
	shop_upstream_done_fn done;
	void *arg;
	int64_t deadline_unix_ms;     /* the whole call's */
	int64_t try_deadline_unix_ms; /* the running try's: ≤ deadline_unix_ms */
	int64_t slow_us;              /* a try slower than this is slow; 0: none */
	nng_msg *retry_msg;           /* kept for one retry (idempotent calls), overall deadline */
	upstream_inst *inst;
	int64_t started_us;
	char trace_id[33]; /* "" when the call carries no trace */
	bool traced;       /* span is this call's CLIENT span, to be recorded */
	shop_span span;
} upstream_call;

int shop_upstream_create(shop_upstream **out, shop_registry_view *view, const char *caller)
{
	shop_upstream *u = calloc(1, sizeof(*u));

	if (u == NULL)
		return NNG_ENOMEM;
	u->view = view;
	snprintf(u->caller, sizeof(u->caller), "%s", caller);
	shop_breaker_config_default(&u->bcfg);
	u->per_try_pct = SHOP_UPSTREAM_PER_TRY_PCT_DEFAULT;
	pthread_mutex_init(&u->mtx, NULL);
	*out = u;
	return 0;
}

void shop_upstream_set_breaker_config(shop_upstream *u, const shop_breaker_config *c)
{
	u->bcfg = *c;
}

void shop_upstream_set_per_try_pct(shop_upstream *u, int pct)
{
	u->per_try_pct = pct < 1 ? 1 : pct > 100 ? 100 : pct;
}

void shop_upstream_destroy(shop_upstream *u)
{
	upstream_inst *in, *next;

	if (u == NULL)
		return;
	for (in = u->insts; in != NULL; in = next) {
		next = in->next;
		shop_rpc_conn_destroy(in->conn);
		shop_breaker_destroy(in->breaker);
		free(in);
	}
	pthread_mutex_destroy(&u->mtx);
	free(u);
}

/* The instance's connection closed: its breaker opens at once. */
static void inst_down(void *arg)
{
	upstream_inst *in = arg;

	shop_breaker_trip(in->breaker, shop_now_mono_us());
}

/* Returns the entry for (instance, url), made on first use; NULL when out
 * of memory or nng refuses the socket. Borrowed: lives as long as u. */
static upstream_inst *inst_get(shop_upstream *u, const shop_instance *si)
{
	upstream_inst *in;
	char name[128];
	int rv;

	pthread_mutex_lock(&u->mtx);
	for (in = u->insts; in != NULL; in = in->next)
		if (strcmp(in->instance, si->instance) == 0 &&
		    strcmp(in->rpc_url, si->rpc_url) == 0)
			goto out;
	if ((in = calloc(1, sizeof(*in))) == NULL)
		goto out;
	snprintf(in->instance, sizeof(in->instance), "%s", si->instance);
	snprintf(in->rpc_url, sizeof(in->rpc_url), "%s", si->rpc_url);
	snprintf(name, sizeof(name), "%s:%s", u->caller, si->instance);
	if ((in->breaker = shop_breaker_create(&u->bcfg, name)) == NULL) {
		free(in);
		in = NULL;
		goto out;
	}
	if ((rv = shop_rpc_conn_create(&in->conn, si->rpc_url, UPSTREAM_POOL, UPSTREAM_QUEUE)) !=
	    0) {
		SHOP_LOG(ERROR, "%s: cannot open a connection to %s: %s", u->caller, si->rpc_url,
			 nng_strerror(rv));
		shop_breaker_destroy(in->breaker);
		free(in);
		in = NULL;
		goto out;
	}
	shop_rpc_conn_on_down(in->conn, inst_down, in);
	in->next = u->insts;
	u->insts = in;
out:
	pthread_mutex_unlock(&u->mtx);
	return in;
}

/* Picks an instance of service by weight among the healthy ones whose
 * breaker admits a call, preferring those connected right now; skips
 * `except`. On success the breaker has admitted the call (the caller must
 * record its outcome). Returns NNG_ENOENT when none is known and healthy,
 * NNG_EBUSY when some are but every breaker refuses. */
static int upstream_pick(shop_upstream *u, const char *service, const upstream_inst *except,
			 upstream_inst **out)
{
	shop_instance si[UPSTREAM_MAX_PICK];
	upstream_inst *cand[UPSTREAM_MAX_PICK];
	uint32_t weights[UPSTREAM_MAX_PICK];
	int64_t now = shop_now_mono_us();
	int n, i, m = 0, n_up = 0, known = 0;

	n = shop_registry_view_get(u->view, service, true, si, UPSTREAM_MAX_PICK);
	for (i = 0; i < n; i++) {
		upstream_inst *in = inst_get(u, &si[i]);
		if (in == NULL || in == except)
			continue;
		known++;
		if (!shop_breaker_would_admit(in->breaker, now))
			continue;
		cand[m] = in;
		weights[m] = si[i].weight;
		n_up += shop_rpc_conn_is_up(in->conn) && si[i].weight > 0;
		m++;
	}
	if (n_up > 0) /* a connected instance beats one still dialing */
		for (i = 0; i < m; i++)
			if (!shop_rpc_conn_is_up(cand[i]->conn))
				weights[i] = 0;
	/* Half-open breakers may refuse between the look and the admit: try
	 * the others. */
	while ((i = shop_balancer_pick(weights, m, shop_random_u64())) >= 0) {
		if (shop_breaker_admit(cand[i]->breaker, now)) {
			*out = cand[i];
			return 0;
		}
		weights[i] = 0;
	}
	return known > 0 ? NNG_EBUSY : NNG_ENOENT;
}

/* A reply is judged by what it says about the instance. Transport errors,
 * timeouts and the instance's own UNAVAILABLE/INTERNAL replies count
 * against it; a business answer (NOT_FOUND...), a shed call
 * (RESOURCE_EXHAUSTED) and a reply marked dependency_failed (the instance
 * answers for a service it depends on, e.g. the order service's
 * PRODUCT_SERVICE_UNAVAILABLE fallback) do not. */
static bool outcome_ok(int rv, const Shop__V1__RpcResponse *resp)
{
	if (rv != 0)
		return false;
	if (resp->dependency_failed)
		return true;
	return resp->code != SHOP_RPC_UNAVAILABLE && resp->code != SHOP_RPC_INTERNAL &&
	       resp->code != SHOP_RPC_DEADLINE_EXCEEDED && resp->code != SHOP_RPC_UNKNOWN;
}

static shop_metric_family *calls_total;   /* shop_rpc_client_calls_total */
static shop_metric_family *retries_total; /* shop_rpc_client_retries_total */

static void calls_metric_init(void)
{
	calls_total = shop_metrics_counter(
	    shop_metrics_default(), "shop_rpc_client_calls_total",
	    "Calls to other services, by service, instance called and outcome: ok, error (a "
	    "business error reply), dependency (an error reply marked dependency_failed: the "
	    "instance works, a service behind it failed), failure (transport, timeout, "
	    "UNAVAILABLE, INTERNAL), rejected (no instance, or every breaker open; instance is "
	    "empty).",
	    "service,instance,outcome");
	retries_total = shop_metrics_counter(
	    shop_metrics_default(), "shop_rpc_client_retries_total",
	    "Idempotent calls sent a second time, to another instance, by service and why the "
	    "first try failed: timeout (its per-try timeout passed) or transport.",
	    "service,reason");
}

static pthread_once_t calls_metric_once = PTHREAD_ONCE_INIT;

/* One attempt (a retry is another) or one call refused before any. */
static void calls_count(const char *service, const char *instance, const char *outcome)
{
	pthread_once(&calls_metric_once, calls_metric_init);
	shop_metric_inc(SHOP_METRIC(calls_total, service, instance, outcome));
}

static void retries_count(const char *service, const char *reason)
{
	pthread_once(&calls_metric_once, calls_metric_init);
	shop_metric_inc(SHOP_METRIC(retries_total, service, reason));
}

static const char *outcome_name(int rv, const Shop__V1__RpcResponse *resp)
{
	if (!outcome_ok(rv, resp))
		return "failure";
	if (resp->code == SHOP_RPC_OK)
		return "ok";
	return resp->dependency_failed ? "dependency" : "error";
}

/* Ends the call's CLIENT span, if it has one: rv is the transport's, or
 * the reason the call never left (ENOENT, EBUSY). */
static void call_span_end(upstream_call *call, int rv, const Shop__V1__RpcResponse *resp)
{
	if (!call->traced)
		return;
	if (call->inst != NULL)
		snprintf(call->span.remote_service, sizeof(call->span.remote_service), "%s",
			 call->inst->instance);
	if (rv == NNG_ENOENT && call->inst == NULL)
		shop_span_tag(&call->span, "error", "no instance of %s", call->service);
	else if (rv == NNG_EBUSY && call->inst == NULL)
		shop_span_tag(&call->span, "error", "every breaker of %s is open", call->service);
	else if (rv != 0)
		shop_span_tag(&call->span, "error", "%s", nng_strerror(rv));
	if (rv == 0) {
		shop_span_tag(&call->span, "rpc.grpc.status_code", "%d", resp->code);
		if (!outcome_ok(rv, resp))
			shop_span_tag(&call->span, "error", "%s", shop_rpc_code_name(resp->code));
		else if (resp->code != SHOP_RPC_OK && resp->dependency_failed)
			shop_span_tag(&call->span, "error", "%s (a dependency of %s failed)",
				      shop_rpc_code_name(resp->code), call->service);
	}
	shop_span_finish(&call->span);
}

/* Whether at least two healthy instances of service would admit a call
 * now: then an idempotent call's first try, wherever it goes, leaves one
 * for the retry, and gets only its per-try part of the deadline. With one
 * (or none) the first try is the only one and keeps the whole deadline. */
static bool retry_possible(shop_upstream *u, const char *service)
{
	shop_instance si[UPSTREAM_MAX_PICK];
	int64_t now = shop_now_mono_us();
	int n, i, m = 0;

	n = shop_registry_view_get(u->view, service, true, si, UPSTREAM_MAX_PICK);
	for (i = 0; i < n && m < 2; i++) {
		upstream_inst *in = inst_get(u, &si[i]);
		if (in != NULL && si[i].weight > 0 && shop_breaker_would_admit(in->breaker, now))
			m++;
	}
	return m >= 2;
}

static void call_finish(upstream_call *call, int rv, Shop__V1__RpcResponse *resp)
{
	/* Before done: a blocked caller may go on, and stop, once it ran. */
	call_span_end(call, rv, resp);
	call->done(call->arg, rv, resp, call->inst != NULL ? call->inst->instance : "");
	if (call->retry_msg != NULL)
		nng_msg_free(call->retry_msg);
	free(call);
}

static int call_send(upstream_call *call, nng_msg *msg);

static void call_done(void *arg, int rv, Shop__V1__RpcResponse *resp)
{
	upstream_call *call = arg;
	upstream_inst *failed = call->inst;
	int64_t now = shop_now_mono_us(), took = now - call->started_us;
	/* A try of an idempotent call that took longer than its per-try
	 * timeout is slow: a failure for the breaker, whatever it answered
	 * (contract §5). Otherwise the deadline bounds the try, and a try
	 * that reaches it has timed out. */
	bool ok = outcome_ok(rv, resp) && !(call->slow_us > 0 && took > call->slow_us);
	/* The first try of an idempotent call timed out at its per-try
	 * timeout, before the deadline: the rest of the deadline is the
	 * retry's. A timeout at the deadline has used it up. */
	bool per_try_out =
	    rv == NNG_ETIMEDOUT && call->try_deadline_unix_ms < call->deadline_unix_ms;
	nng_msg *retry;

	shop_breaker_record(failed->breaker, ok, took, now);
	calls_count(call->service, failed->instance, outcome_name(rv, resp));
	/* A transport failure or a per-try timeout of an idempotent call:
	 * once more, elsewhere, if the deadline allows. The first try's reply,
	 * should it still come, finds its request abandoned (rpc_client.c: a
	 * receive that timed out resets the REQ context) and is dropped. */
	if (rv != 0 && (rv != NNG_ETIMEDOUT || per_try_out) && call->retry_msg != NULL &&
	    shop_now_unix_ms() < call->deadline_unix_ms &&
	    upstream_pick(call->u, call->service, failed, &call->inst) == 0) {
		retry = call->retry_msg;
		call->retry_msg = NULL;
		call->try_deadline_unix_ms = call->deadline_unix_ms;
		SHOP_LOG_T(DEBUG, call->trace_id, "%s: %s failed (%s), retrying on %s",
			   call->u->caller, failed->instance, nng_strerror(rv),
			   call->inst->instance);
		if (call->traced)
			shop_span_tag(&call->span, "retried_after", "%s: %s", failed->instance,
				      nng_strerror(rv));
		retries_count(call->service, per_try_out ? "timeout" : "transport");
		if (call_send(call, retry) == 0)
			return;
		nng_msg_free(retry);
	}
	call_finish(call, rv, resp);
}

/* Sends msg to call->inst (already admitted by its breaker). On failure
 * records it and leaves msg with the caller. */
static int call_send(upstream_call *call, nng_msg *msg)
{
	int rv;

	call->started_us = shop_now_mono_us();
	rv = shop_rpc_conn_send(call->inst->conn, msg, call->try_deadline_unix_ms, call_done, call);
	if (rv != 0) {
		shop_breaker_record(call->inst->breaker, false, 0, shop_now_mono_us());
		calls_count(call->service, call->inst->instance, "failure");
	}
	return rv;
}

int shop_upstream_call(shop_upstream *u, const char *service, const char *method,
		       const ProtobufCMessage *req, const shop_rpc_call_opts *o,
		       shop_upstream_done_fn done, void *arg)
{
	shop_rpc_call_opts oc = *o;
	shop_trace_ctx parent, child;
	char child_tp[SHOP_TRACEPARENT_LEN];
	upstream_call *call;
	nng_msg *msg = NULL;
	int rv;

	if ((call = calloc(1, sizeof(*call))) == NULL)
		return NNG_ENOMEM;
	/* The callee's parent is this call's CLIENT span, child of the caller's
	 * span: a new span id in the same trace. */
	if (o->traceparent != NULL && shop_traceparent_parse(o->traceparent, &parent) == 0) {
		shop_trace_child(&parent, &child);
		shop_traceparent_format(&child, child_tp);
		oc.traceparent = child_tp;
		memcpy(call->trace_id, parent.trace_id, sizeof(call->trace_id));
		if ((parent.flags & 1) != 0 && shop_trace_recording()) {
			shop_span_begin(&call->span, SHOP_SPAN_CLIENT, method, parent.trace_id,
					child.span_id, parent.span_id, true);
			shop_span_tag(&call->span, "rpc.service", "%s", service);
			shop_span_tag(&call->span, "rpc.method", "%s", method);
			call->traced = true;
		}
	}
	call->u = u;
	snprintf(call->service, sizeof(call->service), "%s", service);
	call->done = done;
	call->arg = arg;
	call->deadline_unix_ms = o->deadline_unix_ms;
	call->try_deadline_unix_ms = o->deadline_unix_ms;
	if (o->idempotent && u->per_try_pct < 100 && retry_possible(u, service)) {
		/* The first try gets per_try_pct % of what is left, so that the
		 * retry fits in the rest. The envelope carries the try's own
		 * deadline: past it nobody waits for the answer, and a server
		 * that gets the request late (it was stopped) answers
		 * DEADLINE_EXCEEDED at once instead of working for nobody. */
		int64_t now_ms = shop_now_unix_ms(), left = o->deadline_unix_ms - now_ms;

		if (left > 1) {
			/* No overflow for a deadline far away (ms_left caps too). */
			int64_t per_try =
			    (left > INT32_MAX ? INT32_MAX : left) * u->per_try_pct / 100;

			per_try = per_try < 1 ? 1 : per_try;
			call->try_deadline_unix_ms = now_ms + per_try;
			call->slow_us = per_try * 1000;
		}
	}
	if (o->idempotent && (rv = shop_rpc_request_pack(method, req, &oc, &call->retry_msg)) != 0)
		goto fail;
	oc.deadline_unix_ms = call->try_deadline_unix_ms;
	if ((rv = shop_rpc_request_pack(method, req, &oc, &msg)) != 0)
		goto fail;
	if ((rv = upstream_pick(u, service, NULL, &call->inst)) != 0) {
		calls_count(call->service, "", "rejected");
		goto fail;
	}
	if ((rv = call_send(call, msg)) != 0)
		goto fail;
	return 0; /* call_done owns call now */
fail:
	call_span_end(call, rv, NULL);
	nng_msg_free(msg);
	if (call->retry_msg != NULL)
		nng_msg_free(call->retry_msg);
	free(call);
	return rv;
}

/* What a blocked shop_upstream_call_sync waits on; on its stack. */
struct upstream_wait {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool done;
	int rv;
	Shop__V1__RpcResponse *resp;
	char *instance;
	size_t cap;
};

static void sync_done(void *arg, int rv, Shop__V1__RpcResponse *resp, const char *instance)
{
	struct upstream_wait *w = arg;

	pthread_mutex_lock(&w->mtx);
	w->rv = rv;
	w->resp = resp;
	if (w->cap > 0)
		snprintf(w->instance, w->cap, "%s", instance);
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mtx); /* w may be gone once this returns */
}

int shop_upstream_call_sync(shop_upstream *u, const char *service, const char *method,
			    const ProtobufCMessage *req, const shop_rpc_call_opts *o,
			    Shop__V1__RpcResponse **resp, char *instance, size_t cap)
{
	struct upstream_wait w = {.instance = instance, .cap = cap};
	int rv;

	if (cap > 0)
		instance[0] = '\0';
	pthread_mutex_init(&w.mtx, NULL);
	pthread_cond_init(&w.cv, NULL);
	if ((rv = shop_upstream_call(u, service, method, req, o, sync_done, &w)) == 0) {
		pthread_mutex_lock(&w.mtx);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mtx);
		pthread_mutex_unlock(&w.mtx);
		rv = w.rv;
		*resp = w.resp;
	}
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mtx);
	return rv;
}

void shop_upstream_foreach_breaker(shop_upstream *u,
				   void (*fn)(void *arg, shop_breaker *b, const char *instance),
				   void *arg)
{
	upstream_inst *in;

	pthread_mutex_lock(&u->mtx);
	in = u->insts;
	pthread_mutex_unlock(&u->mtx);
	/* Entries are only ever prepended and live as long as u. */
	for (; in != NULL; in = in->next)
		fn(arg, in->breaker, in->instance);
}

/* metric{name="<breaker>"[,extra]} value, the name escaped: it holds the
 * caller's and an instance's names. */
static void breaker_series(FILE *f, const char *metric, const shop_breaker *b, const char *extra,
			   long long value)
{
	fprintf(f, "%s{name=\"", metric);
	shop_metrics_put_label_value(f, shop_breaker_name(b));
	fprintf(f, "\"%s} %lld\n", extra, value);
}

char *shop_upstream_breaker_metrics(shop_upstream *u, size_t *out_len)
{
	static const shop_breaker_state states[] = {SHOP_BREAKER_CLOSED, SHOP_BREAKER_OPEN,
						    SHOP_BREAKER_HALF_OPEN};
	int64_t now = shop_now_mono_us();
	upstream_inst *in, *head;
	char *text = NULL, extra[32];
	size_t len = 0;
	FILE *f;

	*out_len = 0; /* also when out of memory, as before */
	if ((f = open_memstream(&text, &len)) == NULL)
		return NULL;
	pthread_mutex_lock(&u->mtx);
	head = u->insts;
	pthread_mutex_unlock(&u->mtx);
	fputs("# HELP resilience4j_circuitbreaker_state The states of the circuit breaker\n"
	      "# TYPE resilience4j_circuitbreaker_state gauge\n",
	      f);
	for (in = head; in != NULL; in = in->next) {
		shop_breaker_stats s;

		shop_breaker_stats_get(in->breaker, now, &s);
		for (int i = 0; i < 3; i++) {
			snprintf(extra, sizeof(extra), ",state=\"%s\"",
				 shop_breaker_state_name(states[i]));
			breaker_series(f, "resilience4j_circuitbreaker_state", in->breaker, extra,
				       s.state == states[i]);
		}
	}
	fputs("# HELP resilience4j_circuitbreaker_failure_rate The failure rate of the circuit "
	      "breaker\n"
	      "# TYPE resilience4j_circuitbreaker_failure_rate gauge\n",
	      f);
	for (in = head; in != NULL; in = in->next) {
		shop_breaker_stats s;

		shop_breaker_stats_get(in->breaker, now, &s);
		breaker_series(f, "resilience4j_circuitbreaker_failure_rate", in->breaker, "",
			       s.failure_rate_pct);
	}
	fputs("# HELP resilience4j_circuitbreaker_calls_seconds Calls through the circuit breaker\n"
	      "# TYPE resilience4j_circuitbreaker_calls_seconds summary\n",
	      f);
	for (in = head; in != NULL; in = in->next) {
		shop_breaker_stats s;

		shop_breaker_stats_get(in->breaker, now, &s);
		breaker_series(f, "resilience4j_circuitbreaker_calls_seconds_count", in->breaker,
			       ",kind=\"successful\"", (long long)s.successful);
		breaker_series(f, "resilience4j_circuitbreaker_calls_seconds_count", in->breaker,
			       ",kind=\"failed\"", (long long)s.failed);
	}
	fputs("# HELP resilience4j_circuitbreaker_not_permitted_calls_total Calls the circuit "
	      "breaker refused\n"
	      "# TYPE resilience4j_circuitbreaker_not_permitted_calls_total counter\n",
	      f);
	for (in = head; in != NULL; in = in->next) {
		shop_breaker_stats s;

		shop_breaker_stats_get(in->breaker, now, &s);
		breaker_series(f, "resilience4j_circuitbreaker_not_permitted_calls_total",
			       in->breaker, "", (long long)s.not_permitted);
	}
	if (shop_memstream_close(f, &text) != 0)
		return NULL;
	*out_len = len;
	return text;
}
