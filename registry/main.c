/* main.c -- the registry process: surveys instances (SURVEYOR), answers
 * lookups (REP, long-polled), serves its table over admin HTTP. Wiring only;
 * the table itself is registry_table.c. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/survey0/survey.h>

#include "admin_http.h"
#include "clock.h"
#include "config.h"
#include "crash.h"
#include "dashboard.h"
#include "listen_keeper.h"
#include "log.h"
#include "metrics.h"
#include "registry.pb-c.h"
#include "registry_table.h"
#include "rpc_client.h"
#include "stop_watchdog.h"

/* Contexts that never hold a lookup, so that one that does not wait is
 * answered at once however many callers long-poll. */
#define LOOKUP_UNPARKED 4
/* The longest the registry holds a lookup, whatever wait_ms asks: a client
 * that vanished without closing its pipe costs a context at most this long. */
#define LOOKUP_MAX_WAIT_MS 30000
/* A stop takes milliseconds (150 at most waiting for a quiet moment, see
 * registry_stop); past this, nng's reaper is stuck and the process exits. */
#define REGISTRY_STOP_BUDGET_MS 1500
/* A worker out of LW_RECV and not parked for longer than this (an answer
 * is sent in milliseconds), or parked this long past LOOKUP_MAX_WAIT_MS,
 * is stuck: the survey thread logs the workers and re-opens it
 * (lookup_heal; SHOP_REGISTRY_LOOKUP_STALL_MS, 0 turns it off). */
#define LOOKUP_STALL_MS 3000

typedef struct registry registry;

typedef enum {
	LW_RECV, /* receiving a Lookup */
	LW_PARK, /* holding one until the table changes or its wait ends */
	LW_SEND, /* sending the Instances answer */
} lookup_state;

/* One REP context answering lookups, one at a time. Its one aio carries the
 * receive, the park (nng_sleep_aio, cancelled to wake it) and the send.
 * Safe only because no timeout is ever set on it: in nng 1.5.2 a sleep
 * leaves the aio's a_expire_ok set, and a later timeout of a receive or a
 * send on it would complete with result 0 (docs/decisions.md). A timeout
 * here needs a separate park aio first. */
typedef struct lookup_worker {
	registry *r;
	nng_ctx ctx;
	nng_aio *aio;
	lookup_state state; /* written under r->mtx, by the aio callback only */
	nng_msg *held;      /* the parked Lookup (LW_PARK); r->mtx */
	bool woken;         /* its park was cancelled; r->mtx */
	int64_t since_ms;   /* monotonic, when state last changed; r->mtx */
	/* Replaced by lookup_heal: its context is closed, its callback only
	 * frees what it holds; freed by registry_stop (r->mtx). */
	bool retired;
	struct lookup_worker *next; /* on r->retired */
} lookup_worker;

struct registry {
	int survey_ms;
	nng_socket surv;
	nng_socket rep;
	/* Their listeners, probed and re-opened when deaf (listen_keeper.h). */
	shop_listen_keeper *surv_keeper, *rep_keeper;
	lookup_worker **workers; /* lookup_contexts of them; slots replaced by lookup_heal (mtx) */
	int nworkers;            /* started */
	lookup_worker *retired;  /* replaced workers, freed by registry_stop (mtx) */
	int stall_ms;            /* LOOKUP_STALL_MS; 0: no healing */
	uint64_t lookups_received, lookups_answered, lookup_heals; /* mtx */
#ifdef SHOP_REGISTRY_FAULTS
	int fault_lose_sends; /* test build only: answers left unsent (mtx) */
#endif
	int max_parked;          /* nworkers - LOOKUP_UNPARKED */
	int64_t lookups_from_ms; /* monotonic; the survey thread opens lookups then */
	bool lookups_open;       /* written by the survey thread; /readyz reads it atomically */
	pthread_t survey_thread;

	pthread_mutex_t mtx; /* guards table, stopping and the lookup workers' park state */
	pthread_cond_t cv;   /* CLOCK_MONOTONIC; signalled on stop and on a new pipe */
	/* A pipe connected since the last round began: survey it now rather
	 * than at the next tick, so that a starting instance joins in tens of
	 * milliseconds. At most one such early round per interval (under mtx). */
	bool survey_soon;
	bool early_used;
	reg_table *table;
	reg_dashboard *dash; /* GET / and /v1/breakers; created by admin_start */
	bool stopping;
	int64_t survey_sent_ms; /* monotonic, when the last survey left; mtx */
	int nparked;
	uint64_t park_full_answers; /* lookups answered at once for want of a context */
	int64_t park_full_logged_ms;
};

static int64_t now_ms(void)
{
	return shop_now_mono_us() / 1000;
}

/* ---- table events ---------------------------------------------------------- */

static void lookup_wake(registry *r, uint32_t pipe_id);
static void lookup_open(registry *r);
static void lookup_heal(registry *r);

/* Every event is a new revision: the parked lookups answer it. */
static void on_table_event(void *arg, reg_event ev, reg_leave_reason why, const shop_instance *in)
{
	registry *r = arg;

	lookup_wake(r, 0);
	switch (ev) {
	case REG_EV_JOIN:
		SHOP_LOG(INFO,
			 "instance joined: service=%s instance=%s rpc_url=%s admin_url=%s "
			 "weight=%u healthy=%s version=%s",
			 in->service, in->instance, in->rpc_url, in->admin_url, in->weight,
			 in->healthy ? "true" : "false", in->version);
		break;
	case REG_EV_UPDATE:
		SHOP_LOG(INFO,
			 "instance changed: service=%s instance=%s rpc_url=%s admin_url=%s "
			 "weight=%u healthy=%s version=%s",
			 in->service, in->instance, in->rpc_url, in->admin_url, in->weight,
			 in->healthy ? "true" : "false", in->version);
		break;
	case REG_EV_LEAVE:
		SHOP_LOG(INFO, "instance left: service=%s instance=%s reason=%s", in->service,
			 in->instance,
			 why == REG_LEAVE_PIPE_CLOSED ? "pipe_closed" : "missed_surveys");
		break;
	}
}

/* ---- conversions ------------------------------------------------------------- */

/* ---- surveys ------------------------------------------------------------------ */

static void on_pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	registry *r = arg;

	pthread_mutex_lock(&r->mtx);
	if (!r->stopping) {
		if (ev == NNG_PIPE_EV_ADD_POST) {
			if (reg_table_pipe_add(r->table, nng_pipe_id(p)) != 0)
				SHOP_LOG(WARN, "out of memory: answers on pipe %d will be ignored",
					 nng_pipe_id(p));
			r->survey_soon = true;
			pthread_cond_signal(&r->cv);
		} else if (ev == NNG_PIPE_EV_REM_POST) {
			reg_table_pipe_remove(r->table, (uint32_t)nng_pipe_id(p));
		}
	}
	pthread_mutex_unlock(&r->mtx);
}

static int survey_send(registry *r, uint64_t seq)
{
	Shop__V1__Survey sv = SHOP__V1__SURVEY__INIT;
	nng_msg *msg;
	int rv;

	sv.seq = seq;
	sv.sent_unix_ms = shop_now_unix_ms();
	if ((rv = nng_msg_alloc(&msg, shop__v1__survey__get_packed_size(&sv))) != 0)
		return rv;
	shop__v1__survey__pack(&sv, nng_msg_body(msg));
	if ((rv = nng_sendmsg(r->surv, msg, 0)) != 0)
		nng_msg_free(msg); /* still ours on failure */
	return rv;
}

/* Logs a refused advert, the offending value made visible (log.h). */
static void survey_log_refusal(uint32_t pipe, shop_advert_fault why, const shop_instance *in)
{
	const char *field = why > SHOP_ADVERT_TOO_LONG ? shop_advert_field(in, why) : NULL;
	char shown[200];

	if (field == NULL) {
		SHOP_LOG(WARN,
			 "pipe %u: advert refused (%s; see the safe form in docs/decisions.md); "
			 "its next answers are refused silently",
			 pipe, shop_advert_fault_name(why));
		return;
	}
	shop_log_visible(shown, sizeof(shown), field);
	SHOP_LOG(WARN,
		 "pipe %u: advert refused: %s \"%s\" is not in the safe form (docs/decisions.md); "
		 "its next answers are refused silently",
		 pipe, shop_advert_fault_name(why), shown);
}

/* One answer to the running survey: into the table when it is an Advert
 * in the safe form (advert_check.h), else refused, counted and logged
 * once per pipe. */
static void survey_take(registry *r, nng_msg *msg)
{
	uint32_t pipe = (uint32_t)nng_pipe_id(nng_msg_get_pipe(msg));
	shop_advert_fault why;
	Shop__V1__Advert *ad;
	shop_instance in;
	bool first;

	if ((ad = shop__v1__advert__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg))) == NULL) {
		why = SHOP_ADVERT_UNPARSABLE;
	} else {
		why = shop_instance_from_advert(&in, ad) ? shop_advert_check(&in)
							 : SHOP_ADVERT_TOO_LONG;
		shop__v1__advert__free_unpacked(ad, NULL);
	}
	pthread_mutex_lock(&r->mtx);
	if (why != SHOP_ADVERT_OK) {
		first = reg_table_refuse(r->table, pipe, why);
		pthread_mutex_unlock(&r->mtx);
		if (first)
			survey_log_refusal(pipe, why, &in);
		return;
	}
	if (reg_table_upsert(r->table, &in, pipe, now_ms()) == REG_UPSERT_IGNORED &&
	    reg_table_count(r->table) >= REG_TABLE_MAX_INSTANCES)
		SHOP_LOG(WARN, "table full (%d instances): %s not added", REG_TABLE_MAX_INSTANCES,
			 in.instance);
	pthread_mutex_unlock(&r->mtx);
}

/* Survey, collect answers until the survey times out, wait for the next
 * tick; until the socket closes. */
static void *survey_main(void *arg)
{
	registry *r = arg;
	struct timespec tick;
	uint64_t seq = 0;
	bool early = false; /* this round is an early one (a new pipe's) */
	nng_msg *msg;
	int rv;

	clock_gettime(CLOCK_MONOTONIC, &tick);
	for (;;) {
		pthread_mutex_lock(&r->mtx);
		if (r->stopping) {
			pthread_mutex_unlock(&r->mtx);
			break;
		}
		/* Only regular rounds count misses: an instance is dropped after
		 * SHOP_REGISTRY_MISSES regular surveys, never sooner because
		 * peers connected meanwhile. An early round's answers count as
		 * answers. */
		if (!early)
			reg_table_survey_begin(r->table);
		pthread_mutex_unlock(&r->mtx);
		/* Between rounds, so that the first answer holds everything
		 * the last round heard. */
		if (!r->lookups_open && now_ms() >= r->lookups_from_ms) {
			lookup_open(r);
			__atomic_store_n(&r->lookups_open, true, __ATOMIC_RELEASE);
		} else if (r->lookups_open) {
			lookup_heal(r);
		}

		/* The stop times its close from this (registry_stop). */
		pthread_mutex_lock(&r->mtx);
		if (r->stopping) {
			pthread_mutex_unlock(&r->mtx);
			break;
		}
		r->survey_sent_ms = now_ms();
		pthread_mutex_unlock(&r->mtx);
		if ((rv = survey_send(r, ++seq)) == NNG_ECLOSED)
			break;
		if (rv != 0)
			SHOP_LOG(WARN, "survey %llu: send: %s", (unsigned long long)seq,
				 nng_strerror(rv));
		/* NNG_ETIMEDOUT ends the round; NNG_ESTATE means no survey is
		 * running (the send failed). */
		while (rv == 0 && (rv = nng_recvmsg(r->surv, &msg, 0)) == 0) {
			survey_take(r, msg);
			nng_msg_free(msg);
		}
		if (rv == NNG_ECLOSED)
			break;

		/* The next regular round: one period after the last regular
		 * one began, or, after an early round (which overran that
		 * tick), one period after the early round ended, so that
		 * regular rounds are never closer than a period. */
		if (early)
			clock_gettime(CLOCK_MONOTONIC, &tick);
		tick.tv_nsec += (long)(r->survey_ms % 1000) * 1000000L;
		tick.tv_sec += r->survey_ms / 1000 + tick.tv_nsec / 1000000000L;
		tick.tv_nsec %= 1000000000L;
		pthread_mutex_lock(&r->mtx);
		rv = 0;
		while (!r->stopping && !(r->survey_soon && !r->early_used) &&
		       (rv = pthread_cond_timedwait(&r->cv, &r->mtx, &tick)) != ETIMEDOUT)
			;
		/* A regular tick allows one early round again; an early round
		 * uses it up (the regular round after it is placed above). */
		early = false;
		if (rv == ETIMEDOUT) {
			r->early_used = false;
		} else if (r->survey_soon && !r->early_used) {
			r->early_used = true;
			early = true;
		}
		r->survey_soon = false;
		pthread_mutex_unlock(&r->mtx);
		/* Fell behind (a stalled machine): restart the schedule from now
		 * rather than firing a burst of catch-up surveys. */
		{
			struct timespec now;

			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > tick.tv_sec + 1)
				tick = now;
		}
	}
	return NULL;
}

/* ---- lookups --------------------------------------------------------------------- */

/* Wakes the parked lookups, every one (pipe_id 0) or those that came
 * through pipe_id (their caller went away: free the context now). Under
 * r->mtx. The cancel only finishes the sleep; the callback, on an nng
 * thread, answers once it gets the lock. */
static void lookup_wake(registry *r, uint32_t pipe_id)
{
	if (r->stopping)
		return;
	for (int i = 0; i < r->nworkers; i++) {
		lookup_worker *w = r->workers[i];

		/* held is NULL from the park's end (its callback took it) until
		 * the state moves on: nothing to wake then. */
		if (w->retired || w->state != LW_PARK || w->woken || w->held == NULL)
			continue;
		if (pipe_id != 0 && (uint32_t)nng_pipe_id(nng_msg_get_pipe(w->held)) != pipe_id)
			continue;
		w->woken = true;
		nng_aio_cancel(w->aio);
	}
}

static void on_lookup_pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	registry *r = arg;

	(void)ev; /* registered for NNG_PIPE_EV_REM_POST only */
	pthread_mutex_lock(&r->mtx);
	lookup_wake(r, (uint32_t)nng_pipe_id(p));
	pthread_mutex_unlock(&r->mtx);
}

/* Packs the Instances answer into msg (emptied first). */
static int lookup_pack(nng_msg *msg, shop_instance *inst, size_t n, uint64_t revision)
{
	Shop__V1__Instances out = SHOP__V1__INSTANCES__INIT;
	Shop__V1__Advert *ads = NULL, **ptrs = NULL;
	size_t len;
	int rv = 0;

	if (n > 0) {
		if ((ads = calloc(n, sizeof(*ads))) == NULL ||
		    (ptrs = calloc(n, sizeof(*ptrs))) == NULL) {
			rv = NNG_ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		shop__v1__advert__init(&ads[i]);
		ads[i].service = inst[i].service;
		ads[i].instance = inst[i].instance;
		ads[i].rpc_url = inst[i].rpc_url;
		ads[i].admin_url = inst[i].admin_url;
		ads[i].weight = inst[i].weight;
		ads[i].healthy = inst[i].healthy;
		ads[i].version = inst[i].version;
		ads[i].started_unix_ms = inst[i].started_unix_ms;
		ptrs[i] = &ads[i];
	}
	out.n_instances = n;
	out.instances = ptrs;
	out.revision = revision;
	len = shop__v1__instances__get_packed_size(&out);
	nng_msg_clear(msg);
	if ((rv = nng_msg_realloc(msg, len)) != 0)
		goto out;
	shop__v1__instances__pack(&out, nng_msg_body(msg));
out:
	free(ptrs);
	free(ads);
	return rv;
}

/* Takes a Lookup (msg, owned) and either parks it (may_park: it waits on
 * the current revision and a parkable context is left) or turns it into
 * its answer and sends that. A request that does not parse is answered
 * with an empty Instances of revision 0. Runs in the worker's aio callback. */
static void lookup_serve(lookup_worker *w, nng_msg *msg, bool may_park)
{
	registry *r = w->r;
	Shop__V1__Lookup *req;
	shop_instance *inst = NULL;
	uint64_t revision = 0;
	size_t n = 0;
	int rv = 0;

	req = shop__v1__lookup__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	pthread_mutex_lock(&r->mtx);
	if (may_park)
		r->lookups_received++;
	if (r->stopping) {
		pthread_mutex_unlock(&r->mtx);
		nng_msg_free(msg);
		goto out_req;
	}
	if (req != NULL && may_park && req->wait_ms > 0 &&
	    req->wait_revision == reg_table_revision(r->table)) {
		if (r->nparked < r->max_parked) {
			w->state = LW_PARK;
			w->since_ms = now_ms();
			w->held = msg;
			w->woken = false;
			r->nparked++;
			/* Under the lock, so that no wake-up can slip in before
			 * the sleep has started. */
			nng_sleep_aio(req->wait_ms < LOOKUP_MAX_WAIT_MS ? (nng_duration)req->wait_ms
									: LOOKUP_MAX_WAIT_MS,
				      w->aio);
			pthread_mutex_unlock(&r->mtx);
			goto out_req;
		}
		/* Answering at once is the only way left not to starve
		 * anyone; the client sees its revision come back early and
		 * falls back to polling. Logged at most once a minute. */
		r->park_full_answers++;
		if (r->park_full_logged_ms == 0 || now_ms() - r->park_full_logged_ms >= 60000) {
			SHOP_LOG(WARN,
				 "lookup: all %d long-poll contexts hold a lookup; %llu lookups "
				 "answered at once so far (raise SHOP_REGISTRY_LOOKUP_CONTEXTS)",
				 r->max_parked, (unsigned long long)r->park_full_answers);
			r->park_full_logged_ms = now_ms();
		}
	}
	if (req != NULL)
		rv = reg_table_lookup(r->table, req->service, &inst, &n, &revision);
	w->state = LW_SEND;
	w->since_ms = now_ms();
	pthread_mutex_unlock(&r->mtx);

	if (rv != 0 || (rv = lookup_pack(msg, inst, n, revision)) != 0) {
		SHOP_LOG(WARN, "lookup: out of memory; request dropped");
		nng_msg_free(msg);
		pthread_mutex_lock(&r->mtx);
		w->state = LW_RECV;
		w->since_ms = now_ms();
		pthread_mutex_unlock(&r->mtx);
		nng_ctx_recv(w->ctx, w->aio);
		goto out_inst;
	}
	nng_aio_set_msg(w->aio, msg);
#ifdef SHOP_REGISTRY_FAULTS
	/* Test build only (registry-faults): the answer is kept and never
	 * sent, so this worker stays in LW_SEND as a stuck one would. */
	pthread_mutex_lock(&r->mtx);
	if (r->fault_lose_sends > 0) {
		r->fault_lose_sends--;
		pthread_mutex_unlock(&r->mtx);
		goto out_inst;
	}
	pthread_mutex_unlock(&r->mtx);
#endif
	nng_ctx_send(w->ctx, w->aio);
out_inst:
	free(inst);
out_req:
	if (req != NULL)
		shop__v1__lookup__free_unpacked(req, NULL);
}

/* recv Lookup -> [park] -> send Instances -> recv ... until the socket
 * closes or registry_stop stops the aio. Only this callback starts
 * operations on w->aio (after lookup_open's first receive). */
static void lookup_cb(void *arg)
{
	lookup_worker *w = arg;
	registry *r = w->r;
	int rv = nng_aio_result(w->aio);
	nng_msg *msg;

	pthread_mutex_lock(&r->mtx);
	if (w->retired) {
		/* Its context is closed: whatever it held is freed, nothing
		 * more is started on it (lookup_heal). */
		if (w->held != NULL)
			nng_msg_free(w->held);
		w->held = NULL;
		if (nng_aio_get_msg(w->aio) != NULL)
			nng_msg_free(nng_aio_get_msg(w->aio));
		nng_aio_set_msg(w->aio, NULL);
		pthread_mutex_unlock(&r->mtx);
		return;
	}
	if (w->state == LW_SEND && rv == 0)
		r->lookups_answered++;
	pthread_mutex_unlock(&r->mtx);

	switch (w->state) {
	case LW_RECV:
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
			return;
		if (rv != 0)
			break;
		msg = nng_aio_get_msg(w->aio);
		nng_aio_set_msg(w->aio, NULL);
		lookup_serve(w, msg, true);
		return;
	case LW_PARK:
		/* 0: its wait is over; NNG_ECANCELED: woken by a change, by
		 * its pipe closing, or by registry_stop (lookup_serve sees
		 * stopping and frees it). */
		pthread_mutex_lock(&r->mtx);
		if (w->retired) {
			/* Retired since the check above: lookup_heal has
			 * taken it off nparked already. */
			if (w->held != NULL)
				nng_msg_free(w->held);
			w->held = NULL;
			pthread_mutex_unlock(&r->mtx);
			return;
		}
		msg = w->held;
		w->held = NULL;
		w->woken = false;
		r->nparked--;
		pthread_mutex_unlock(&r->mtx);
		lookup_serve(w, msg, false);
		return;
	case LW_SEND:
		if (rv != 0) {
			nng_msg_free(nng_aio_get_msg(w->aio)); /* still ours on failure */
			nng_aio_set_msg(w->aio, NULL);
		}
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
			return;
		break;
	}
	pthread_mutex_lock(&r->mtx);
	w->state = LW_RECV;
	w->since_ms = now_ms();
	pthread_mutex_unlock(&r->mtx);
	nng_ctx_recv(w->ctx, w->aio);
}

static const char *lookup_state_name(lookup_state s)
{
	return s == LW_RECV ? "recv" : s == LW_PARK ? "park" : "send";
}

/* A worker that should have moved on long ago (r->mtx): out of LW_RECV and
 * not parked for stall_ms (an answer leaves in milliseconds), or parked
 * stall_ms past the longest wait. A parked lookup is held, not stuck. */
static bool lookup_stuck(const registry *r, const lookup_worker *w, int64_t now)
{
	switch (w->state) {
	case LW_RECV:
		return false;
	case LW_PARK:
		return now - w->since_ms > LOOKUP_MAX_WAIT_MS + r->stall_ms;
	case LW_SEND:
		break;
	}
	return now - w->since_ms > r->stall_ms;
}

static lookup_worker *lookup_worker_new(registry *r)
{
	lookup_worker *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->r = r;
	w->state = LW_RECV;
	if (nng_aio_alloc(&w->aio, lookup_cb, w) != 0) {
		free(w);
		return NULL;
	}
	if (nng_ctx_open(&w->ctx, r->rep) != 0) {
		nng_aio_free(w->aio);
		free(w);
		return NULL;
	}
	return w;
}

/* The survey thread's check, between rounds: stuck workers (lookup_stuck)
 * are logged with every worker's state once, then each is replaced by a
 * fresh context and aio. The old context is closed (that aborts a pending
 * receive or send, whose callback then frees what it holds) and a stuck
 * park cancelled; the old aio is freed only by registry_stop, once no
 * callback can run (nng_aio_stop on it here could wait for ever). */
static void lookup_heal(registry *r)
{
	lookup_worker *stuck[64];
	int slot[64], n = 0, nworkers;
	int64_t now = now_ms();
	char states[1024];
	size_t off = 0;

	if (r->stall_ms <= 0)
		return;
	pthread_mutex_lock(&r->mtx);
	nworkers = r->nworkers;
	for (int i = 0; i < nworkers && n < 64; i++)
		if (!r->stopping && !r->workers[i]->retired && lookup_stuck(r, r->workers[i], now))
			slot[n++] = i;
	if (n == 0) {
		pthread_mutex_unlock(&r->mtx);
		return;
	}
	for (int i = 0; i < nworkers && off < sizeof(states) - 48; i++) {
		const lookup_worker *w = r->workers[i];
		int k = snprintf(states + off, sizeof(states) - off, " %d:%s/%lldms%s%s", i,
				 lookup_state_name(w->state), (long long)(now - w->since_ms),
				 w->held != NULL ? "/held" : "", w->woken ? "/woken" : "");

		off += k > 0 ? (size_t)k : 0;
	}
	SHOP_LOG(WARN,
		 "lookup: %d of %d workers stuck (received %llu, answered %llu, nparked %d/%d); "
		 "re-opening them; workers:%s",
		 n, nworkers, (unsigned long long)r->lookups_received,
		 (unsigned long long)r->lookups_answered, r->nparked, r->max_parked, states);
	for (int i = 0; i < n; i++) {
		lookup_worker *w = r->workers[slot[i]];

		w->retired = true;
		if (w->state == LW_PARK && w->held != NULL)
			r->nparked--;
		w->next = r->retired;
		r->retired = w;
		stuck[i] = w;
	}
	r->lookup_heals++;
	pthread_mutex_unlock(&r->mtx);

	for (int i = 0; i < n; i++) {
		lookup_worker *nw;

		nng_ctx_close(stuck[i]->ctx);
		nng_aio_cancel(stuck[i]->aio); /* a stuck park */
		if ((nw = lookup_worker_new(r)) == NULL) {
			/* The slot keeps its retired worker, skipped from now. */
			SHOP_LOG(WARN, "lookup: out of memory re-opening a context");
			continue;
		}
		pthread_mutex_lock(&r->mtx);
		nw->since_ms = now_ms();
		r->workers[slot[i]] = nw;
		pthread_mutex_unlock(&r->mtx);
		nng_ctx_recv(nw->ctx, nw->aio);
	}
}

/* ---- admin HTTP ----------------------------------------------------------------- */

static int admin_status(int rv, const char **content_type)
{
	if (rv != 0) {
		*content_type = "text/plain; charset=utf-8";
		return 500;
	}
	return 200;
}

static int admin_services(void *arg, char **body, size_t *len, const char **content_type)
{
	registry *r = arg;
	int rv;

	pthread_mutex_lock(&r->mtx);
	rv = reg_table_services_json(r->table, now_ms(), body, len);
	pthread_mutex_unlock(&r->mtx);
	*content_type = "application/json";
	return admin_status(rv, content_type);
}

static int admin_prometheus(void *arg, char **body, size_t *len, const char **content_type)
{
	registry *r = arg;
	int rv;

	pthread_mutex_lock(&r->mtx);
	rv = reg_table_prometheus_json(r->table, body, len);
	pthread_mutex_unlock(&r->mtx);
	*content_type = "application/json";
	return admin_status(rv, content_type);
}

/* Appends n bytes of text to the body being built. 0 or ENOMEM. */
static int metrics_append(char **body, size_t *len, const char *text, size_t n)
{
	char *grown = realloc(*body, *len + n + 1);

	if (grown == NULL)
		return ENOMEM;
	memcpy(grown + *len, text, n);
	grown[*len + n] = '\0';
	*body = grown;
	*len += n;
	return 0;
}

static int admin_metrics(void *arg, char **body, size_t *len, const char **content_type)
{
	registry *r = arg;
	int rv;

	char extra[512];
	char *lib = NULL;
	size_t lib_len = 0;
	int n;

	pthread_mutex_lock(&r->mtx);
	rv = reg_table_metrics_text(r->table, body, len);
	n = snprintf(extra, sizeof(extra),
		     "# HELP shop_registry_lookups_received_total Lookups a worker received.\n"
		     "# TYPE shop_registry_lookups_received_total counter\n"
		     "shop_registry_lookups_received_total %llu\n"
		     "# HELP shop_registry_lookups_answered_total Answers sent.\n"
		     "# TYPE shop_registry_lookups_answered_total counter\n"
		     "shop_registry_lookups_answered_total %llu\n"
		     "# HELP shop_registry_lookup_heals_total Times stuck lookup workers were "
		     "re-opened.\n"
		     "# TYPE shop_registry_lookup_heals_total counter\n"
		     "shop_registry_lookup_heals_total %llu\n",
		     (unsigned long long)r->lookups_received,
		     (unsigned long long)r->lookups_answered, (unsigned long long)r->lookup_heals);
	pthread_mutex_unlock(&r->mtx);
	if (rv == 0 && n > 0 && (size_t)n < sizeof(extra))
		rv = metrics_append(body, len, extra, (size_t)n);
	/* The process-wide series: the listeners' heals (listen_keeper.h). */
	if (rv == 0 && (lib = shop_metrics_render(shop_metrics_default(), &lib_len)) == NULL)
		rv = ENOMEM;
	if (rv == 0)
		rv = metrics_append(body, len, lib, lib_len);
	free(lib);
	*content_type = "text/plain; version=0.0.4; charset=utf-8";
	return admin_status(rv, content_type);
}

/* Ready once lookups are answered: until the warm-up after a start has
 * passed, instances are still coming back and a lookup would get a table
 * that lacks them. Liveness is the stock /healthz. */
static int admin_readyz(void *arg, char **body, size_t *len, const char **content_type)
{
	registry *r = arg;
	bool open = __atomic_load_n(&r->lookups_open, __ATOMIC_ACQUIRE);
	char buf[160];
	size_t count;
	int n;

	pthread_mutex_lock(&r->mtx);
	count = reg_table_count(r->table);
	pthread_mutex_unlock(&r->mtx);
	n = snprintf(
	    buf, sizeof(buf),
	    open ? "{\"status\":\"ready\",\"checks\":{\"lookups\":\"open\",\"instances\":%zu}}"
		 : "{\"status\":\"not_ready\",\"checks\":{\"lookups\":\"warming_up\","
		   "\"instances\":%zu},\"reasons\":[\"warming up\"]}",
	    count);
	*content_type = "application/json";
	if (n < 0 || (*body = strdup(buf)) == NULL)
		return 500;
	*len = (size_t)n;
	return open ? 200 : 503;
}

/* The dashboard's view of the table (reg_dashboard_list_fn). */
static int dashboard_instances(void *arg, shop_instance **out, size_t *n)
{
	registry *r = arg;
	uint64_t revision;
	int rv;

	pthread_mutex_lock(&r->mtx);
	rv = reg_table_lookup(r->table, NULL, out, n, &revision);
	pthread_mutex_unlock(&r->mtx);
	return rv;
}

/* ---- wiring ------------------------------------------------------------------------ */

typedef struct registry_config {
	const char *survey_url;
	const char *lookup_url;
	char admin_host[64];
	uint16_t admin_port;
	int survey_ms;
	int misses;
	int lookup_contexts;
	int lookup_warmup_ms;
	int lookup_stall_ms;
	int listen_probe_ms;
#ifdef SHOP_REGISTRY_FAULTS
	int fault_lose_sends;
#endif
	const char *scrape_extra; /* admin URLs read for the dashboard beyond the adverts' */
	shop_log_level log_level;
} registry_config;

static int config_read(registry_config *c)
{
	const char *lvl, *why;
	shop_env env;
	int l;

	shop_env_init(&env, "registry");
	c->survey_url = shop_env_nng_url(&env, "SHOP_REGISTRY_SURVEY_URL", "tcp://127.0.0.1:7100");
	c->lookup_url = shop_env_nng_url(&env, "SHOP_REGISTRY_LOOKUP_URL", "tcp://127.0.0.1:7101");
	shop_env_hostport(&env, "SHOP_REGISTRY_ADMIN_ADDR", "127.0.0.1:7109", c->admin_host,
			  sizeof(c->admin_host), &c->admin_port);
	c->survey_ms = (int)shop_env_int(&env, "SHOP_REGISTRY_SURVEY_MS", 500, 20, 60000);
	c->misses = (int)shop_env_int(&env, "SHOP_REGISTRY_MISSES", 3, 1, 100);
	/* One per long-polling caller plus LOOKUP_UNPARKED; a context costs a
	 * few hundred bytes and no thread. */
	c->lookup_contexts =
	    (int)shop_env_int(&env, "SHOP_REGISTRY_LOOKUP_CONTEXTS", 64, 2 * LOOKUP_UNPARKED, 4096);
	/* Instances redial within 500 ms (lib/registry_client.c), then answer
	 * the next survey; 100 ms of margin. */
	c->lookup_warmup_ms = (int)shop_env_int(&env, "SHOP_REGISTRY_LOOKUP_WARMUP_MS",
						c->survey_ms + 600, 0, 600000);
	/* 0 turns the stuck-worker check off (lookup_heal). */
	c->lookup_stall_ms =
	    (int)shop_env_int(&env, "SHOP_REGISTRY_LOOKUP_STALL_MS", LOOKUP_STALL_MS, 0, 600000);
	/* 0 turns the listeners' probes off (listen_keeper.h). */
	c->listen_probe_ms =
	    (int)shop_env_int(&env, "SHOP_LISTEN_PROBE_MS", SHOP_LISTEN_PROBE_MS, 0, 600000);
#ifdef SHOP_REGISTRY_FAULTS
	c->fault_lose_sends =
	    (int)shop_env_int(&env, "SHOP_REGISTRY_FAULT_LOSE_SENDS", 0, 0, 1000000);
#endif
	/* Callers that do not register (the gateway), for the dashboard's
	 * breakers: "gateway=http://127.0.0.1:8080". */
	c->scrape_extra = shop_env_str(&env, "SHOP_REGISTRY_SCRAPE_EXTRA", "", false);
	if (reg_dashboard_extra_check(c->scrape_extra, &why) != 0)
		shop_env_fail(&env, "SHOP_REGISTRY_SCRAPE_EXTRA", "%s", why);
	lvl = shop_env_str(&env, "SHOP_LOG_LEVEL", "info", false);
	if ((l = shop_log_level_parse(lvl)) < 0)
		shop_env_fail(&env, "SHOP_LOG_LEVEL", "\"%.32s\" is not debug, info, warn or error",
			      lvl);
	c->log_level = l < 0 ? SHOP_LOG_INFO : (shop_log_level)l;
	return shop_env_check(&env);
}

static int surveyor_start(registry *r, const registry_config *c)
{
	/* Answers must be in before the next survey replaces this one. */
	int survey_time = c->survey_ms - (c->survey_ms / 10 > 5 ? c->survey_ms / 10 : 5);
	int rv;

	if ((rv = nng_surveyor0_open(&r->surv)) != 0)
		return rv;
	/* The survey time, not a receive timeout, ends a round. */
	if ((rv = shop_nng_socket_defaults(r->surv)) != 0 ||
	    (rv = nng_socket_set_ms(r->surv, NNG_OPT_RECVTIMEO, NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_ms(r->surv, NNG_OPT_SURVEYOR_SURVEYTIME, survey_time)) != 0 ||
	    (rv = nng_pipe_notify(r->surv, NNG_PIPE_EV_ADD_POST, on_pipe_event, r)) != 0 ||
	    (rv = nng_pipe_notify(r->surv, NNG_PIPE_EV_REM_POST, on_pipe_event, r)) != 0)
		return rv;
	if ((rv = shop_listen_keeper_start(&r->surv_keeper, r->surv, c->survey_url, "survey",
					   c->listen_probe_ms)) != 0)
		SHOP_LOG(ERROR, "listen %s (SHOP_REGISTRY_SURVEY_URL): %s", c->survey_url,
			 nng_strerror(rv));
	return rv;
}

static int lookup_start(registry *r, const registry_config *c)
{
	int n, rv = 0;

	if ((r->workers = calloc((size_t)c->lookup_contexts, sizeof(*r->workers))) == NULL)
		return NNG_ENOMEM;
	r->max_parked = c->lookup_contexts - LOOKUP_UNPARKED;
	if ((rv = nng_rep0_open(&r->rep)) != 0)
		return rv;
	if ((rv = shop_nng_socket_defaults(r->rep)) != 0 ||
	    (rv = nng_pipe_notify(r->rep, NNG_PIPE_EV_REM_POST, on_lookup_pipe_event, r)) != 0)
		return rv;
	if ((rv = shop_listen_keeper_start(&r->rep_keeper, r->rep, c->lookup_url, "lookup",
					   c->listen_probe_ms)) != 0) {
		SHOP_LOG(ERROR, "listen %s (SHOP_REGISTRY_LOOKUP_URL): %s", c->lookup_url,
			 nng_strerror(rv));
		return rv;
	}
	for (n = 0; n < c->lookup_contexts; n++) {
		if ((r->workers[n] = lookup_worker_new(r)) == NULL) {
			rv = NNG_ENOMEM;
			break;
		}
	}
	/* Published under the lock: lookup_wake walks the workers from pipe
	 * callbacks, which may already run. */
	pthread_mutex_lock(&r->mtx);
	r->nworkers = n;
	pthread_mutex_unlock(&r->mtx);
	return rv;
}

/* Starts answering lookups. Until then callers connect and their lookups
 * wait in the socket: a registry that has just (re)started knows none of
 * the instances that are about to redial it, and an empty answer would
 * wipe every caller's cached view. */
static void lookup_open(registry *r)
{
	size_t n;

	pthread_mutex_lock(&r->mtx);
	n = reg_table_count(r->table);
	pthread_mutex_unlock(&r->mtx);
	SHOP_LOG(INFO, "lookups open: %zu instances known", n);
	for (int i = 0; i < r->nworkers; i++) {
		pthread_mutex_lock(&r->mtx);
		r->workers[i]->since_ms = now_ms();
		pthread_mutex_unlock(&r->mtx);
		nng_ctx_recv(r->workers[i]->ctx, r->workers[i]->aio);
	}
}

static int admin_start(shop_admin **out, registry *r, const registry_config *c)
{
	/* Reads the callers' /metrics every second while someone looks. */
	reg_dashboard_config dc = {.extra = c->scrape_extra,
				   .interval_ms = 1000,
				   .timeout_ms = 500,
				   .idle_ms = 10000,
				   .list = dashboard_instances,
				   .list_arg = r};
	char self[96];
	int rv;

	snprintf(self, sizeof(self), strchr(c->admin_host, ':') ? "http://[%s]:%u" : "http://%s:%u",
		 c->admin_host, (unsigned)c->admin_port);
	dc.self_admin_url = self;
	if ((rv = reg_dashboard_create(&r->dash, &dc)) != 0) {
		SHOP_LOG(ERROR, "dashboard: %s", strerror(rv));
		return NNG_ENOMEM;
	}
	if ((rv = shop_admin_create(out, c->admin_host, c->admin_port)) != 0 ||
	    (rv = shop_admin_add(*out, "/healthz", shop_admin_healthz, NULL)) != 0 ||
	    (rv = shop_admin_add(*out, "/readyz", admin_readyz, r)) != 0 ||
	    (rv = shop_admin_add(*out, "/metrics", admin_metrics, r)) != 0 ||
	    (rv = shop_admin_add(*out, "/v1/services", admin_services, r)) != 0 ||
	    (rv = shop_admin_add(*out, "/v1/prometheus-targets", admin_prometheus, r)) != 0 ||
	    (rv = shop_admin_add(*out, "/", reg_dashboard_page, NULL)) != 0 ||
	    (rv = shop_admin_add(*out, "/v1/breakers", reg_dashboard_breakers, r->dash)) != 0 ||
	    (rv = shop_admin_start(*out)) != 0)
		SHOP_LOG(ERROR, "admin http on %s:%u (SHOP_REGISTRY_ADMIN_ADDR): %s", c->admin_host,
			 (unsigned)c->admin_port, nng_strerror(rv));
	return rv;
}

/* Stops the survey thread if it runs, then everything nng: after this no
 * callback touches the table. */
static void registry_stop(registry *r, bool thread_started)
{
	int64_t quiet_at; /* then how long until then */

	shop_listen_keeper_stop(r->surv_keeper);
	shop_listen_keeper_stop(r->rep_keeper);
	pthread_mutex_lock(&r->mtx);
	r->stopping = true; /* no survey leaves after this */
	pthread_cond_signal(&r->cv);
	/* Closing a pipe while an answer is arriving on it can hang nng
	 * 1.5.2's close for good (docs/decisions.md, "nng 1.5.2 defects").
	 * Answers come within milliseconds of a survey: close once the last
	 * one is a third of a period old (at most 150 ms). */
	quiet_at = r->survey_sent_ms + (r->survey_ms / 3 < 150 ? r->survey_ms / 3 : 150);
	pthread_mutex_unlock(&r->mtx);
	quiet_at -= now_ms();
	if (r->survey_sent_ms > 0 && quiet_at > 0)
		nanosleep(&(struct timespec){0, quiet_at * 1000000L}, NULL);
	/* Closing aborts a survey in progress (its receive gets NNG_ECLOSED). */
	nng_close(r->surv);
	if (thread_started)
		pthread_join(r->survey_thread, NULL);
	/* A parked worker's callback sees stopping and frees its request; a
	 * callback that raced with the stop may have left a request parked or
	 * an answer unsent (nng refuses new operations on a stopped aio, and
	 * calls nothing back): both freed here, once no callback can run. */
	for (int i = 0; i < r->nworkers; i++) {
		lookup_worker *w = r->workers[i];

		if (w->retired)
			continue; /* on r->retired too */
		nng_aio_stop(w->aio);
		if (w->state == LW_PARK && w->held != NULL)
			nng_msg_free(w->held);
		if (w->state == LW_SEND && nng_aio_get_msg(w->aio) != NULL)
			nng_msg_free(nng_aio_get_msg(w->aio));
		w->held = NULL;
		nng_aio_set_msg(w->aio, NULL);
	}
	/* Replaced workers: their contexts closed long ago, so their aios
	 * have nothing pending; their callbacks freed what they held unless
	 * none ran (a send never made, a park never ended). */
	for (lookup_worker *w = r->retired; w != NULL; w = w->next) {
		nng_aio_stop(w->aio);
		if (w->held != NULL)
			nng_msg_free(w->held);
		if (nng_aio_get_msg(w->aio) != NULL)
			nng_msg_free(nng_aio_get_msg(w->aio));
		w->held = NULL;
		nng_aio_set_msg(w->aio, NULL);
	}
	nng_close(r->rep);
	shop_listen_keeper_destroy(r->surv_keeper);
	shop_listen_keeper_destroy(r->rep_keeper);
	r->surv_keeper = r->rep_keeper = NULL;
	for (int i = 0; i < r->nworkers; i++) {
		if (!r->workers[i]->retired) {
			nng_aio_free(r->workers[i]->aio);
			free(r->workers[i]);
		}
	}
	while (r->retired != NULL) {
		lookup_worker *w = r->retired;

		r->retired = w->next;
		nng_aio_free(w->aio);
		free(w);
	}
	r->nworkers = 0;
	free(r->workers);
	r->workers = NULL;
}

int main(void)
{
	registry_config cfg;
	registry r = {0};
	shop_admin *admin = NULL;
	bool thread_started = false;
	sigset_t sigs;
	int sig, rv, status = 1;

	/* Before any thread exists (nng starts its own), so that every thread
	 * inherits the mask and SIGTERM/SIGINT reach only sigwait below. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (config_read(&cfg) != 0)
		return 2;
	shop_log_init("registry", cfg.log_level, NULL);
	/* Before any thread: a crash leaves a fatal line (lib/crash.h). */
	if ((rv = shop_crash_install("registry")) != 0)
		SHOP_LOG(WARN, "crash handler not installed: %s", strerror(rv));
	r.survey_ms = cfg.survey_ms;
	r.stall_ms = cfg.lookup_stall_ms;
#ifdef SHOP_REGISTRY_FAULTS
	r.fault_lose_sends = cfg.fault_lose_sends;
	if (r.fault_lose_sends > 0)
		SHOP_LOG(WARN, "test build with faults: the first %d answers are never sent",
			 r.fault_lose_sends);
#endif
	r.lookups_from_ms = now_ms() + cfg.lookup_warmup_ms;

	if (pthread_mutex_init(&r.mtx, NULL) != 0)
		return 1;
	if ((rv = shop_cond_init_mono(&r.cv)) != 0)
		goto out_mtx;
	if (reg_table_create(&r.table, cfg.misses, on_table_event, &r) != 0)
		goto out_cv;

	if ((rv = surveyor_start(&r, &cfg)) != 0 || (rv = lookup_start(&r, &cfg)) != 0 ||
	    (rv = admin_start(&admin, &r, &cfg)) != 0)
		goto out_stop;
	if (pthread_create(&r.survey_thread, NULL, survey_main, &r) != 0) {
		SHOP_LOG(ERROR, "cannot start the survey thread");
		goto out_stop;
	}
	thread_started = true;
	SHOP_LOG(INFO,
		 "registry up: survey=%s lookup=%s admin=http://%s:%u survey_ms=%d misses=%d "
		 "lookup_contexts=%d lookup_warmup_ms=%d lookup_stall_ms=%d version=%s",
		 cfg.survey_url, cfg.lookup_url, cfg.admin_host, (unsigned)cfg.admin_port,
		 cfg.survey_ms, cfg.misses, cfg.lookup_contexts, cfg.lookup_warmup_ms,
		 cfg.lookup_stall_ms, SHOP_VERSION);

	if (sigwait(&sigs, &sig) == 0)
		SHOP_LOG(INFO, "signal %d: stopping", sig);
	status = 0;
	shop_stop_watchdog_start(REGISTRY_STOP_BUDGET_MS);

out_stop:
	/* The admin server first: its handlers read the table. */
	shop_admin_destroy(admin);
	reg_dashboard_destroy(r.dash); /* its thread reads the table */
	registry_stop(&r, thread_started);
	reg_table_destroy(r.table);
out_cv:
	pthread_cond_destroy(&r.cv);
out_mtx:
	pthread_mutex_destroy(&r.mtx);
	if (status == 0)
		SHOP_LOG(INFO, "registry stopped");
	return status;
}
