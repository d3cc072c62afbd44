/* lookup.c -- the registry's lookup side: a REP socket whose contexts
 * (lookup workers, each a state machine on one aio) answer Lookup requests
 * from the table, holding those that wait on the current revision until it
 * changes (long poll); stuck workers are re-opened (lookup_heal). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "registry.h"
#include "registry.pb-c.h"
#include "rpc_client.h"

/* Wakes the parked lookups, every one (pipe_id 0) or those that came
 * through pipe_id (their caller went away: free the context now). Under
 * r->mtx. The cancel only finishes the sleep; the callback, on an nng
 * thread, answers once it gets the lock. */
void lookup_wake(registry *r, uint32_t pipe_id)
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
void lookup_heal(registry *r)
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

int lookup_start(registry *r, const registry_config *c)
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
void lookup_open(registry *r)
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

void lookup_stop(registry *r)
{
	shop_listen_keeper_stop(r->rep_keeper);
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
	shop_listen_keeper_destroy(r->rep_keeper);
	r->rep_keeper = NULL;
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
