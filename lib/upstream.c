/* upstream.c -- call a service by name: registry view → breakers →
 * weighted pick → the instance's connection, with one retry on another
 * weighted pick → the instance's connection, with one retry on another
 * instance for idempotent calls that fail at the transport level or whose
 * first try passes its per-try timeout (a part of the deadline). A
 * returning instance is tried at once (a new connection or a new advert
 * half-opens its open breaker); a departed one is retired (socket closed,
 * breaker freed) by a housekeeping thread. */
#include "upstream.h"

#include <errno.h>
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

#define UPSTREAM_MAX_PICK 64  /* instances of one service considered per call */
#define UPSTREAM_MAX_VIEW 512 /* instances of every service the sweep reads */
#define UPSTREAM_SWEEP_MS 250 /* how often the housekeeper compares with the view */
/* How long an entry's instance must be gone from the view before the entry
 * is retired: a registry's hiccup (an instance missing from one answer)
 * keeps the connection and the breaker's history. */
#define UPSTREAM_RETIRE_MS 1000

/* One entry per (instance name, rpc_url) in the view. An entry whose
 * instance has left the view for UPSTREAM_RETIRE_MS is retired: taken off
 * the list (no longer picked, listed in metrics or health) into the
 * graveyard, and freed there (socket closed, breaker freed) by the
 * housekeeper once no call, pick or metrics walk holds it (refs 0). An
 * instance that comes back later gets a new entry: a new socket and a
 * closed breaker. */
typedef struct upstream_inst {
	char instance[64];
	char rpc_url[128];
	shop_rpc_conn *conn;
	shop_breaker *breaker;   /* "<caller>:<instance>" */
	int64_t started_unix_ms; /* the last advert's; __atomic (pick) */
	/* Under u->mtx: */
	int refs;                /* holders (calls, picks, walks); the list's is not counted */
	bool retired;            /* in the graveyard, not on the list */
	int64_t absent_since_us; /* first sweep that missed it in the view; 0 when there */
	struct upstream_inst *next;
} upstream_inst;

struct shop_upstream {
	shop_registry_view *view; /* borrowed */
	char caller[32];
	shop_breaker_config bcfg;
	int per_try_pct;     /* an idempotent call's first try: this % of its deadline */
	int queue;           /* calls waiting for a context, per instance; beyond: shed */
	pthread_mutex_t mtx; /* guards the lists, every entry's refs, closing */
	pthread_cond_t cv;   /* CLOCK_MONOTONIC; signalled on destroy */
	bool closing;        /* destroy began: nothing is picked any more */
	bool keeper_started; /* thread runs the housekeeper */
	pthread_t thread;
	upstream_inst *insts;     /* live entries */
	upstream_inst *graveyard; /* retired entries, freed when their refs reach 0 */
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
	upstream_inst *inst;          /* held (a reference) while the call has it */
	int64_t started_us;
	char trace_id[33]; /* "" when the call carries no trace */
	bool traced;       /* span is this call's CLIENT span, to be recorded */
	shop_span span;
} upstream_call;

static void *upstream_keeper(void *arg);

int shop_upstream_create(shop_upstream **out, shop_registry_view *view, const char *caller)
{
	shop_upstream *u = calloc(1, sizeof(*u));

	if (u == NULL)
		return NNG_ENOMEM;
	u->view = view;
	snprintf(u->caller, sizeof(u->caller), "%s", caller);
	shop_breaker_config_default(&u->bcfg);
	u->per_try_pct = SHOP_UPSTREAM_PER_TRY_PCT_DEFAULT;
	u->queue = SHOP_UPSTREAM_QUEUE_DEFAULT;
	pthread_mutex_init(&u->mtx, NULL);
	if (shop_cond_init_mono(&u->cv) != 0) {
		pthread_mutex_destroy(&u->mtx);
		free(u);
		return NNG_ENOMEM;
	}
	/* Without a view (unit tests) nothing ever departs. */
	if (view != NULL) {
		if (pthread_create(&u->thread, NULL, upstream_keeper, u) != 0) {
			pthread_cond_destroy(&u->cv);
			pthread_mutex_destroy(&u->mtx);
			free(u);
			return NNG_ENOMEM;
		}
		u->keeper_started = true;
	}
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

void shop_upstream_set_queue(shop_upstream *u, int queue)
{
	u->queue = queue < 0                         ? 0
		   : queue > SHOP_UPSTREAM_QUEUE_MAX ? SHOP_UPSTREAM_QUEUE_MAX
						     : queue;
}

/* Closes the entry's socket (no call holds it, or destroy fails those
 * left and waits for them), then frees it; never on an nng thread. After
 * shop_rpc_conn_destroy no pipe callback of the entry's runs. */
static void inst_free(upstream_inst *in)
{
	shop_rpc_conn_destroy(in->conn);
	shop_breaker_destroy(in->breaker);
	free(in);
}

void shop_upstream_destroy(shop_upstream *u)
{
	upstream_inst *in, *next, *lists[2];

	if (u == NULL)
		return;
	pthread_mutex_lock(&u->mtx);
	u->closing = true;
	pthread_cond_signal(&u->cv);
	pthread_mutex_unlock(&u->mtx);
	if (u->keeper_started)
		pthread_join(u->thread, NULL);
	/* No entry is added or retired from here on. Each socket's close fails
	 * its calls (their callbacks run now, and with closing set they retry
	 * nowhere); only then are the entries freed, since a callback may
	 * still drop a reference to another entry. */
	lists[0] = u->insts;
	lists[1] = u->graveyard;
	for (int l = 0; l < 2; l++)
		for (in = lists[l]; in != NULL; in = in->next) {
			shop_rpc_conn_destroy(in->conn);
			in->conn = NULL;
		}
	for (int l = 0; l < 2; l++)
		for (in = lists[l]; in != NULL; in = next) {
			next = in->next;
			inst_free(in);
		}
	pthread_cond_destroy(&u->cv);
	pthread_mutex_destroy(&u->mtx);
	free(u);
}

/* Drops a reference taken by inst_get or insts_hold; the housekeeper frees
 * a retired entry once the last is gone. Any thread; never blocks long. */
static void inst_put(shop_upstream *u, upstream_inst *in)
{
	pthread_mutex_lock(&u->mtx);
	in->refs--;
	pthread_mutex_unlock(&u->mtx);
}

/* The instance's connection closed: its breaker opens at once. */
static void inst_down(void *arg)
{
	upstream_inst *in = arg;

	shop_breaker_trip(in->breaker, shop_now_mono_us());
}

/* A connection to the instance is up again (a restarted process, or the
 * network back): an open breaker tries it at once (§5). */
static void inst_up(void *arg)
{
	upstream_inst *in = arg;

	if (shop_breaker_retry_now(in->breaker, shop_now_mono_us()))
		SHOP_LOG(INFO, "breaker %s: connected to %s again: half-open",
			 shop_breaker_name(in->breaker), in->rpc_url);
}

/* The advert of the instance seen by a pick: a new started_unix_ms is a
 * new process, which an open breaker tries at once (§5). One thread wins
 * the exchange, so one logs. */
static void inst_advert(upstream_inst *in, const shop_instance *si, int64_t now_us)
{
	int64_t seen = __atomic_load_n(&in->started_unix_ms, __ATOMIC_RELAXED);

	if (si->started_unix_ms == seen ||
	    !__atomic_compare_exchange_n(&in->started_unix_ms, &seen, si->started_unix_ms, false,
					 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		return;
	if (seen != 0 && shop_breaker_retry_now(in->breaker, now_us))
		SHOP_LOG(INFO, "breaker %s: %s restarted (new advert): half-open",
			 shop_breaker_name(in->breaker), in->instance);
}

/* Returns the live entry for (instance, url), made on first use, with a
 * reference the caller drops with inst_put; NULL when the upstream is
 * closing, out of memory or nng refuses the socket. */
static upstream_inst *inst_get(shop_upstream *u, const shop_instance *si)
{
	upstream_inst *in;
	char name[128];
	int rv;

	pthread_mutex_lock(&u->mtx);
	if (u->closing) {
		in = NULL;
		goto out;
	}
	for (in = u->insts; in != NULL; in = in->next)
		if (strcmp(in->instance, si->instance) == 0 &&
		    strcmp(in->rpc_url, si->rpc_url) == 0)
			goto found;
	if ((in = calloc(1, sizeof(*in))) == NULL)
		goto out;
	snprintf(in->instance, sizeof(in->instance), "%s", si->instance);
	snprintf(in->rpc_url, sizeof(in->rpc_url), "%s", si->rpc_url);
	in->started_unix_ms = si->started_unix_ms;
	snprintf(name, sizeof(name), "%s:%s", u->caller, si->instance);
	if ((in->breaker = shop_breaker_create(&u->bcfg, name)) == NULL) {
		free(in);
		in = NULL;
		goto out;
	}
	if ((rv = shop_rpc_conn_create(&in->conn, si->rpc_url, SHOP_UPSTREAM_POOL, u->queue)) !=
	    0) {
		SHOP_LOG(ERROR, "%s: cannot open a connection to %s: %s", u->caller, si->rpc_url,
			 nng_strerror(rv));
		shop_breaker_destroy(in->breaker);
		free(in);
		in = NULL;
		goto out;
	}
	shop_rpc_conn_on_down(in->conn, inst_down, in);
	shop_rpc_conn_on_up(in->conn, inst_up, in);
	in->next = u->insts;
	u->insts = in;
found:
	in->refs++;
out:
	pthread_mutex_unlock(&u->mtx);
	return in;
}

/* References to every live entry, for a walk without the lock: *out is
 * malloc'd (free with insts_release). Returns the count; 0 when there are
 * none or out of memory (*out NULL). */
static size_t insts_hold(shop_upstream *u, upstream_inst ***out)
{
	upstream_inst *in, **v = NULL;
	size_t n = 0;

	pthread_mutex_lock(&u->mtx);
	for (in = u->insts; in != NULL; in = in->next)
		n++;
	if (n > 0 && (v = malloc(n * sizeof(*v))) != NULL) {
		n = 0;
		for (in = u->insts; in != NULL; in = in->next) {
			in->refs++;
			v[n++] = in;
		}
	} else {
		n = 0;
	}
	pthread_mutex_unlock(&u->mtx);
	*out = v;
	return n;
}

static void insts_release(shop_upstream *u, upstream_inst **v, size_t n)
{
	pthread_mutex_lock(&u->mtx);
	for (size_t i = 0; i < n; i++)
		v[i]->refs--;
	pthread_mutex_unlock(&u->mtx);
	free(v);
}

/* ---- housekeeping: departed instances ---------------------------------------- */

/* Whether (instance, url) is in view[0..n). */
static bool in_view(const upstream_inst *in, const shop_instance *view, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(view[i].instance, in->instance) == 0 &&
		    strcmp(view[i].rpc_url, in->rpc_url) == 0)
			return true;
	return false;
}

/* Compares the entries with the whole view (healthy or not) and retires
 * those gone from it for UPSTREAM_RETIRE_MS. Nothing is retired before the
 * first answer, nor from an answer that may have been cut at cap. While
 * the registry is away the view keeps its last answer, so nothing departs
 * then either. */
static void upstream_sweep(shop_upstream *u, shop_instance *view, int cap)
{
	upstream_inst **pp, *in;
	int64_t now = shop_now_mono_us();
	int n;

	if (shop_registry_view_revision(u->view) == 0)
		return;
	if ((n = shop_registry_view_get(u->view, NULL, false, view, cap)) >= cap)
		return;
	pthread_mutex_lock(&u->mtx);
	for (pp = &u->insts; (in = *pp) != NULL;) {
		if (in_view(in, view, n)) {
			in->absent_since_us = 0;
		} else if (in->absent_since_us == 0) {
			in->absent_since_us = now;
		} else if (now - in->absent_since_us >= (int64_t)UPSTREAM_RETIRE_MS * 1000) {
			*pp = in->next;
			in->retired = true;
			in->next = u->graveyard;
			u->graveyard = in;
			SHOP_LOG(INFO,
				 "%s: %s (%s) left the registry: connection and breaker %s "
				 "retired",
				 u->caller, in->instance, in->rpc_url,
				 shop_breaker_name(in->breaker));
			continue;
		}
		pp = &in->next;
	}
	pthread_mutex_unlock(&u->mtx);
}

/* Frees the retired entries no one holds, one at a time, without the lock
 * (closing a socket waits for nng). */
static void upstream_reap(shop_upstream *u)
{
	upstream_inst **pp, *in;

	for (;;) {
		pthread_mutex_lock(&u->mtx);
		for (pp = &u->graveyard; (in = *pp) != NULL; pp = &in->next)
			if (in->refs == 0)
				break;
		if (in != NULL)
			*pp = in->next;
		pthread_mutex_unlock(&u->mtx);
		if (in == NULL)
			return;
		inst_free(in);
	}
}

/* The housekeeper: a thread of the upstream's, since closing a socket must
 * not happen on an nng thread (where calls end) nor hold up a caller. */
static void *upstream_keeper(void *arg)
{
	shop_upstream *u = arg;
	shop_instance *view = malloc(UPSTREAM_MAX_VIEW * sizeof(*view));
	struct timespec until;

	pthread_mutex_lock(&u->mtx);
	while (!u->closing) {
		pthread_mutex_unlock(&u->mtx);
		if (view != NULL)
			upstream_sweep(u, view, UPSTREAM_MAX_VIEW);
		upstream_reap(u);
		pthread_mutex_lock(&u->mtx);
		until = shop_mono_deadline(UPSTREAM_SWEEP_MS);
		while (!u->closing && pthread_cond_timedwait(&u->cv, &u->mtx, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&u->mtx);
	free(view);
	return NULL;
}

/* Picks an instance of service by weight among the healthy ones whose
 * breaker admits a call, preferring those connected right now; skips
 * `except`, and whose connection has room for one more call (a context
 * free, or a place in its queue). On success the breaker has admitted the
 * call (the caller must record its outcome, or release it) and *out holds
 * a reference (inst_put). Returns NNG_ENOENT when none is known and
 * healthy, NNG_EAGAIN when every one whose breaker would admit the call
 * has its queue full (this caller is overloaded: the call is shed), and
 * NNG_EBUSY when some are known but every breaker refuses. */
static int upstream_pick(shop_upstream *u, const char *service, const upstream_inst *except,
			 upstream_inst **out)
{
	shop_instance si[UPSTREAM_MAX_PICK];
	upstream_inst *cand[UPSTREAM_MAX_PICK];
	uint32_t weights[UPSTREAM_MAX_PICK];
	int64_t now = shop_now_mono_us();
	int n, i, m = 0, n_up = 0, known = 0, full = 0, chosen = -1;

	n = shop_registry_view_get(u->view, service, true, si, UPSTREAM_MAX_PICK);
	for (i = 0; i < n; i++) {
		upstream_inst *in = inst_get(u, &si[i]);
		if (in == NULL)
			continue;
		if (in == except) {
			inst_put(u, in);
			continue;
		}
		known++;
		inst_advert(in, &si[i], now);
		if (!shop_breaker_would_admit(in->breaker, now)) {
			inst_put(u, in);
			continue;
		}
		/* Looked at after the breaker: a full queue takes no trial slot
		 * and counts as nothing against the instance. */
		if (!shop_rpc_conn_has_room(in->conn)) {
			full++;
			inst_put(u, in);
			continue;
		}
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
			chosen = i;
			break;
		}
		weights[i] = 0;
	}
	for (i = 0; i < m; i++)
		if (i != chosen)
			inst_put(u, cand[i]);
	if (chosen >= 0) {
		*out = cand[chosen];
		return 0;
	}
	if (full > 0)
		return NNG_EAGAIN;
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
	    "UNAVAILABLE, INTERNAL), shed (the instance answered RESOURCE_EXHAUSTED), overloaded "
	    "(not sent: this caller's queue to the instance was full), rejected (no instance, "
	    "or every breaker open; instance is empty).",
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
	if (resp->code == SHOP_RPC_RESOURCE_EXHAUSTED)
		return "shed";
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
	else if (rv == NNG_EAGAIN)
		shop_span_tag(&call->span, "error", "overloaded: the queue to %s is full",
			      call->service);
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

		if (in == NULL)
			continue;
		if (si[i].weight > 0 && shop_breaker_would_admit(in->breaker, now))
			m++;
		inst_put(u, in);
	}
	return m >= 2;
}

static void call_finish(upstream_call *call, int rv, Shop__V1__RpcResponse *resp)
{
	char instance[sizeof(call->inst->instance)] = "";

	/* Before done: a blocked caller may go on, and stop (destroy the
	 * upstream), once it ran; nothing of the upstream's is touched after. */
	call_span_end(call, rv, resp);
	if (call->inst != NULL) {
		memcpy(instance, call->inst->instance, sizeof(instance));
		inst_put(call->u, call->inst);
	}
	if (call->retry_msg != NULL)
		nng_msg_free(call->retry_msg);
	call->done(call->arg, rv, resp, instance);
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
	bool slow = call->slow_us > 0 && took > call->slow_us;
	bool ok = outcome_ok(rv, resp) && !slow;
	/* The first try of an idempotent call timed out at its per-try
	 * timeout, before the deadline: the rest of the deadline is the
	 * retry's. A timeout at the deadline has used it up. */
	bool per_try_out =
	    rv == NNG_ETIMEDOUT && call->try_deadline_unix_ms < call->deadline_unix_ms;
	nng_msg *retry;

	/* A shed answer (RESOURCE_EXHAUSTED) says the instance is busy, not
	 * that it fails: neither a success nor a failure (unless slow). */
	if (rv == 0 && resp->code == SHOP_RPC_RESOURCE_EXHAUSTED && !slow)
		shop_breaker_release(failed->breaker);
	else
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
		inst_put(call->u, failed); /* the call holds the new one now */
		if (call_send(call, retry) == 0)
			return;
		nng_msg_free(retry);
	}
	call_finish(call, rv, resp);
}

/* Sends msg to call->inst (already admitted by its breaker). On failure
 * records it and leaves msg with the caller. A full queue (NNG_EAGAIN:
 * another call took the last place since the pick) is this caller's
 * overload, not the instance's failure: the breaker's admission is
 * released, nothing recorded. */
static int call_send(upstream_call *call, nng_msg *msg)
{
	int rv;

	call->started_us = shop_now_mono_us();
	rv = shop_rpc_conn_send(call->inst->conn, msg, call->try_deadline_unix_ms, call_done, call);
	if (rv == NNG_EAGAIN) {
		shop_breaker_release(call->inst->breaker);
		calls_count(call->service, call->inst->instance, "overloaded");
	} else if (rv != 0) {
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
		calls_count(call->service, "", rv == NNG_EAGAIN ? "overloaded" : "rejected");
		goto fail;
	}
	if ((rv = call_send(call, msg)) != 0)
		goto fail;
	return 0; /* call_done owns call now */
fail:
	call_span_end(call, rv, NULL);
	if (call->inst != NULL)
		inst_put(u, call->inst);
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
	upstream_inst **v;
	size_t n = insts_hold(u, &v);

	/* Held, so a retirement meanwhile frees nothing under fn. */
	for (size_t i = 0; i < n; i++)
		fn(arg, v[i]->breaker, v[i]->instance);
	insts_release(u, v, n);
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
	upstream_inst **v;
	char *text = NULL, extra[32];
	size_t len = 0, n;
	FILE *f;

	*out_len = 0; /* also when out of memory, as before */
	if ((f = open_memstream(&text, &len)) == NULL)
		return NULL;
	/* Held, so none is freed meanwhile; retired ones are not listed. */
	n = insts_hold(u, &v);
	fputs("# HELP resilience4j_circuitbreaker_state The states of the circuit breaker\n"
	      "# TYPE resilience4j_circuitbreaker_state gauge\n",
	      f);
	for (size_t j = 0; j < n; j++) {
		upstream_inst *in = v[j];
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
	for (size_t j = 0; j < n; j++) {
		upstream_inst *in = v[j];
		shop_breaker_stats s;

		shop_breaker_stats_get(in->breaker, now, &s);
		breaker_series(f, "resilience4j_circuitbreaker_failure_rate", in->breaker, "",
			       s.failure_rate_pct);
	}
	fputs("# HELP resilience4j_circuitbreaker_calls_seconds Calls through the circuit breaker\n"
	      "# TYPE resilience4j_circuitbreaker_calls_seconds summary\n",
	      f);
	for (size_t j = 0; j < n; j++) {
		upstream_inst *in = v[j];
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
	for (size_t j = 0; j < n; j++) {
		upstream_inst *in = v[j];
		shop_breaker_stats s;

		shop_breaker_stats_get(in->breaker, now, &s);
		breaker_series(f, "resilience4j_circuitbreaker_not_permitted_calls_total",
			       in->breaker, "", (long long)s.not_permitted);
	}
	insts_release(u, v, n);
	if (shop_memstream_close(f, &text) != 0)
		return NULL;
	*out_len = len;
	return text;
}
