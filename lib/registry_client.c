/* registry_client.c -- an instance's side of discovery: the RESPONDENT that
 * answers the registry's surveys, and the cached view of its lookups. */
#include "registry_client.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/protocol/survey0/respond.h>

#include "advert_check.h"
#include "clock.h"
#include "log.h"
#include "registry.pb-c.h"
#include "rpc_client.h"

/* Fast reconnects, so that an instance is back in the table within about a
 * survey of the registry's restart. The registry's lookup warm-up
 * (registry/main.c reads SHOP_REGISTRY_LOOKUP_WARMUP_MS) counts on the 500 ms. */
#define ADV_RECONN_MIN_MS 50
#define ADV_RECONN_MAX_MS 500
/* How long destroy waits for the next survey before it closes (see
 * shop_advertiser_destroy): one survey period as last seen, plus slack,
 * never more than this. */
#define ADV_QUIET_SLACK_MS 100
#define ADV_QUIET_MAX_MS   1500

/* Copies a string field; false when it is missing or does not fit. */
static bool copy_field(char *dst, size_t cap, const char *src)
{
	size_t n;

	if (src == NULL || (n = strlen(src)) >= cap)
		return false;
	memcpy(dst, src, n + 1);
	return true;
}

bool shop_instance_from_advert(shop_instance *out, const Shop__V1__Advert *ad)
{
	memset(out, 0, sizeof(*out));
	out->weight = ad->weight;
	out->healthy = ad->healthy != 0;
	out->started_unix_ms = ad->started_unix_ms;
	return copy_field(out->service, sizeof(out->service), ad->service) &&
	       copy_field(out->instance, sizeof(out->instance), ad->instance) &&
	       copy_field(out->rpc_url, sizeof(out->rpc_url), ad->rpc_url) &&
	       copy_field(out->admin_url, sizeof(out->admin_url), ad->admin_url) &&
	       copy_field(out->version, sizeof(out->version), ad->version);
}

static int instance_cmp(const void *pa, const void *pb)
{
	const shop_instance *a = pa, *b = pb;
	int c = strcmp(a->service, b->service);

	return c != 0 ? c : strcmp(a->instance, b->instance);
}

/* ---- advertiser ---------------------------------------------------------- */

struct shop_advertiser {
	nng_socket sock;
	nng_aio *aio;
	bool sending;        /* the aio carries an answer, not a receive; aio callback only */
	pthread_mutex_t mtx; /* guards self, stopping and the survey times */
	pthread_cond_t cv;   /* a survey came */
	shop_instance self;
	bool stopping;
	uint64_t surveys;       /* received so far */
	int64_t last_survey_ms; /* monotonic, when the last one came */
	int64_t period_ms;      /* between the last two; 0 until two came */
	int pipes;              /* connections to the registry; atomic builtins */
	shop_dial_keeper *keeper;
};

/* Turns a received survey into this instance's Advert, in place. */
static int adv_fill(shop_advertiser *a, nng_msg *msg)
{
	Shop__V1__Advert ad = SHOP__V1__ADVERT__INIT;
	Shop__V1__Survey *sv;
	shop_instance self;
	bool stopping;
	int64_t now;
	size_t len;
	int rv;

	/* A body that is not a Survey did not come from a registry. */
	if ((sv = shop__v1__survey__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg))) == NULL)
		return NNG_EPROTO;
	shop__v1__survey__free_unpacked(sv, NULL);

	pthread_mutex_lock(&a->mtx);
	self = a->self;
	stopping = a->stopping;
	now = shop_now_mono_us() / 1000;
	if (a->surveys > 0)
		a->period_ms = now - a->last_survey_ms;
	a->last_survey_ms = now;
	a->surveys++;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mtx);
	/* Destroy closes right after this survey: an answer still on its way
	 * to the pipe then would be lost and leaked by nng 1.5.2 (its send on
	 * a closed pipe's aio completes nothing), and the pipe's close tells
	 * the registry more than an answer would. */
	if (stopping)
		return NNG_ECLOSED;

	ad.service = self.service;
	ad.instance = self.instance;
	ad.rpc_url = self.rpc_url;
	ad.admin_url = self.admin_url;
	ad.weight = self.weight;
	ad.healthy = self.healthy;
	ad.version = self.version;
	ad.started_unix_ms = self.started_unix_ms;
	len = shop__v1__advert__get_packed_size(&ad);
	nng_msg_clear(msg);
	if ((rv = nng_msg_realloc(msg, len)) != 0)
		return rv;
	shop__v1__advert__pack(&ad, nng_msg_body(msg));
	return 0;
}

/* recv survey -> send advert -> recv survey ... until the socket closes or
 * destroy stops the aio. */
static void adv_cb(void *arg)
{
	shop_advertiser *a = arg;
	int rv = nng_aio_result(a->aio);
	nng_msg *msg;
	bool stopping;

	if (a->sending) {
		a->sending = false;
		if (rv != 0)
			nng_msg_free(nng_aio_get_msg(a->aio)); /* still ours on failure */
	} else if (rv == 0) {
		msg = nng_aio_get_msg(a->aio);
		if (adv_fill(a, msg) == 0) {
			a->sending = true;
			nng_aio_set_msg(a->aio, msg);
			nng_send_aio(a->sock, a->aio);
			return;
		}
		nng_msg_free(msg);
	}
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
		return;
	pthread_mutex_lock(&a->mtx);
	stopping = a->stopping;
	pthread_mutex_unlock(&a->mtx);
	if (!stopping)
		nng_recv_aio(a->sock, a->aio);
}

static void adv_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	shop_advertiser *a = arg;

	(void)p;
	__atomic_add_fetch(&a->pipes, ev == NNG_PIPE_EV_ADD_POST ? 1 : -1, __ATOMIC_RELAXED);
}

int shop_advertiser_connected(shop_advertiser *a)
{
	return __atomic_load_n(&a->pipes, __ATOMIC_RELAXED) > 0;
}

static bool adv_is_up(void *arg)
{
	return shop_advertiser_connected(arg) != 0;
}

int shop_advertiser_create(shop_advertiser **out, const char *survey_url, const shop_instance *self)
{
	shop_advertiser *a;
	int rv;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		return NNG_ENOMEM;
	a->self = *self;
	if (pthread_mutex_init(&a->mtx, NULL) != 0) {
		rv = NNG_ENOMEM;
		goto out_free;
	}
	if (shop_cond_init_mono(&a->cv) != 0) {
		rv = NNG_ENOMEM;
		goto out_mtx;
	}
	if ((rv = nng_respondent0_open(&a->sock)) != 0)
		goto out_cv;
	if ((rv = shop_nng_socket_defaults(a->sock)) != 0 ||
	    (rv = nng_socket_set_ms(a->sock, NNG_OPT_RECONNMINT, ADV_RECONN_MIN_MS)) != 0 ||
	    (rv = nng_socket_set_ms(a->sock, NNG_OPT_RECONNMAXT, ADV_RECONN_MAX_MS)) != 0 ||
	    (rv = nng_pipe_notify(a->sock, NNG_PIPE_EV_ADD_POST, adv_pipe_cb, a)) != 0 ||
	    (rv = nng_pipe_notify(a->sock, NNG_PIPE_EV_REM_POST, adv_pipe_cb, a)) != 0)
		goto out_sock;
	if ((rv = nng_aio_alloc(&a->aio, adv_cb, a)) != 0)
		goto out_sock;
	/* Non-blocking: the registry need not be up yet. */
	if ((rv = shop_dial_keeper_start(&a->keeper, a->sock, survey_url, adv_is_up, a)) != 0) {
		SHOP_LOG(ERROR, "advertiser: dial %s: %s", survey_url, nng_strerror(rv));
		goto out_aio;
	}
	nng_recv_aio(a->sock, a->aio);
	*out = a;
	return 0;

out_aio:
	nng_aio_free(a->aio);
out_sock:
	nng_close(a->sock);
out_cv:
	pthread_cond_destroy(&a->cv);
out_mtx:
	pthread_mutex_destroy(&a->mtx);
out_free:
	free(a);
	return rv;
}

void shop_advertiser_set_healthy(shop_advertiser *a, bool healthy)
{
	pthread_mutex_lock(&a->mtx);
	a->self.healthy = healthy;
	pthread_mutex_unlock(&a->mtx);
}

/* Closing our end of a pipe while a survey is arriving on it can hang nng
 * 1.5.2 for good: the transport's receive callback resubmits the body read
 * on an aio the close has just stopped, nni_aio_begin refuses it without a
 * completion, and the pipe's reaper then waits for ever; so does every
 * later nng_close() in the process (docs/decisions.md, "nng 1.5.2
 * defects"). Surveys come once a period, so the close waits for the next
 * one (bounded) and goes right after it, a period away from the one after. */
static void adv_wait_between_surveys(shop_advertiser *a)
{
	uint64_t seen = a->surveys;
	int64_t wait_ms;
	struct timespec until;

	if (seen == 0 || !shop_advertiser_connected(a))
		return;
	wait_ms = a->period_ms > 0 ? a->period_ms + ADV_QUIET_SLACK_MS : ADV_QUIET_MAX_MS;
	until = shop_mono_deadline(wait_ms < ADV_QUIET_MAX_MS ? wait_ms : ADV_QUIET_MAX_MS);
	while (a->surveys == seen && pthread_cond_timedwait(&a->cv, &a->mtx, &until) != ETIMEDOUT)
		;
}

void shop_advertiser_destroy(shop_advertiser *a)
{
	if (a == NULL)
		return;
	pthread_mutex_lock(&a->mtx);
	a->stopping = true;
	a->self.healthy = false;
	adv_wait_between_surveys(a);
	pthread_mutex_unlock(&a->mtx);
	nng_aio_stop(a->aio); /* waits for a running callback; frees a pending answer */
	shop_dial_keeper_stop(a->keeper);
	nng_close(a->sock); /* the registry sees the pipe close */
	nng_aio_free(a->aio);
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->mtx);
	free(a);
}

/* ---- view ------------------------------------------------------------------ */

/* The view redials a lost registry faster than advertisers do: it is one
 * socket per process, and the sooner it is back the sooner it catches up. */
#define VIEW_RECONN_MAX_MS 100
/* How long the registry may hold a lookup (it caps this itself, at 30 s). */
#define VIEW_WAIT_MS 10000
/* Lookups in a row a live connection may leave unanswered before the view
 * drops it (see view_main). */
#define VIEW_UNANSWERED_MAX 2
/* Added to the wait for the answer's receive timeout: time to answer and
 * for the answer to travel. */
#define VIEW_SLACK_MS 2000

struct shop_registry_view {
	nng_socket sock;
	nng_aio *aio; /* the lookup in flight; started and waited for by the view thread only */
	int refresh_ms;
	pthread_t thread;
	pthread_mutex_t mtx; /* guards everything below */
	pthread_cond_t cv;   /* CLOCK_MONOTONIC; signalled on stop */
	bool stop;
	bool busy;         /* aio has an operation in flight (cancel it to end it) */
	uint64_t conn_gen; /* bumped whenever a pipe to the registry closes */
	int pipes;         /* connections to the registry */
	nng_pipe pipe;     /* the last one made */
	int unanswered;    /* lookups in a row that a live connection left unanswered */
	shop_dial_keeper *keeper;
	shop_instance *inst; /* sorted by service, then instance */
	size_t n;
	uint64_t revision;     /* 0 before the first good answer */
	uint64_t revision_gen; /* conn_gen when the lookup that gave revision was sent */
	int64_t got_mono_us;   /* when the last good answer came */
	bool failing;          /* the last attempt failed */
	size_t dropped;        /* instances of the last answer not in the safe form */
};

/* Turns an Instances answer into a sorted, malloc'd array of the instances
 * in the safe form (advert_check.h); *dropped counts the others. Returns 0,
 * NNG_EPROTO for an answer that does not parse or says revision 0. */
static int view_decode(nng_msg *msg, shop_instance **out, size_t *n, uint64_t *revision,
		       size_t *dropped)
{
	Shop__V1__Instances *in;
	shop_instance *v = NULL;
	size_t cnt = 0;
	int rv = 0;

	if ((in = shop__v1__instances__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg))) == NULL)
		return NNG_EPROTO;
	if (in->revision == 0) {
		rv = NNG_EPROTO; /* the registry did not understand us */
		goto out_in;
	}
	if (in->n_instances > 0 && (v = calloc(in->n_instances, sizeof(*v))) == NULL) {
		rv = NNG_ENOMEM;
		goto out_in;
	}
	*dropped = 0;
	for (size_t i = 0; i < in->n_instances; i++) {
		/* An advert too large to hold is left out, not truncated; so is
		 * one a rogue or older registry let through outside the safe
		 * form: its name would reach headers and metric labels. */
		if (shop_instance_from_advert(&v[cnt], in->instances[i]) &&
		    shop_advert_check(&v[cnt]) == SHOP_ADVERT_OK)
			cnt++;
		else
			(*dropped)++;
	}
	if (cnt > 1) /* qsort wants a non-NULL base even for nothing */
		qsort(v, cnt, sizeof(*v), instance_cmp);
	*out = v;
	*n = cnt;
	*revision = in->revision;
out_in:
	shop__v1__instances__free_unpacked(in, NULL);
	return rv;
}

/* A pipe to the registry closed: the registry may come back as a new
 * process whose revisions start again at 1, so the revision we hold no
 * longer names its table. The lookup in flight is abandoned (nng's REQ
 * fails one already sent on that pipe by itself; one still queued for a
 * pipe would otherwise go to the new registry with the stale revision). */
static void view_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	shop_registry_view *v = arg;

	pthread_mutex_lock(&v->mtx);
	if (ev == NNG_PIPE_EV_ADD_POST) {
		v->pipes++;
		v->pipe = p;
		v->unanswered = 0;
		pthread_mutex_unlock(&v->mtx);
		return;
	}
	v->pipes--;
	v->conn_gen++;
	if (v->busy)
		nng_aio_cancel(v->aio);
	pthread_mutex_unlock(&v->mtx);
}

/* Starts a send (of the message set on v->aio, which it consumes: on
 * failure it frees it) or a receive on v->aio and waits for it. Refused,
 * NNG_ECLOSED or NNG_ECANCELED, when the view is stopping or a pipe closed
 * since gen: the check and the start share the lock under which
 * view_pipe_cb and destroy cancel, so no close and no stop fall between. */
static int view_op(shop_registry_view *v, bool send, uint64_t gen, nng_duration timeout)
{
	int rv;

	pthread_mutex_lock(&v->mtx);
	if (v->stop || v->conn_gen != gen) {
		rv = v->stop ? NNG_ECLOSED : NNG_ECANCELED;
		pthread_mutex_unlock(&v->mtx);
		if (send) {
			nng_msg_free(nng_aio_get_msg(v->aio));
			nng_aio_set_msg(v->aio, NULL);
		}
		return rv;
	}
	v->busy = true;
	nng_aio_set_timeout(v->aio, timeout);
	if (send)
		nng_send_aio(v->sock, v->aio);
	else
		nng_recv_aio(v->sock, v->aio);
	pthread_mutex_unlock(&v->mtx);
	nng_aio_wait(v->aio);
	pthread_mutex_lock(&v->mtx);
	v->busy = false;
	pthread_mutex_unlock(&v->mtx);
	if ((rv = nng_aio_result(v->aio)) != 0 && send) {
		nng_msg_free(nng_aio_get_msg(v->aio)); /* still ours on failure */
		nng_aio_set_msg(v->aio, NULL);
	}
	return rv;
}

/* One Lookup{service="", wait_revision, wait_ms} round trip, sent while
 * conn_gen is gen; on success replaces the cache and sets *revision. */
static int view_lookup(shop_registry_view *v, uint64_t wait_revision, uint64_t gen,
		       uint64_t *revision)
{
	Shop__V1__Lookup req = SHOP__V1__LOOKUP__INIT;
	nng_duration timeout = (wait_revision != 0 ? VIEW_WAIT_MS : 0) + VIEW_SLACK_MS;
	shop_instance *inst = NULL, *old;
	nng_msg *msg = NULL;
	size_t n, dropped;
	int rv;

	req.service = "";
	req.wait_revision = wait_revision;
	req.wait_ms = wait_revision != 0 ? VIEW_WAIT_MS : 0;
	if ((rv = nng_msg_alloc(&msg, shop__v1__lookup__get_packed_size(&req))) != 0)
		return rv;
	shop__v1__lookup__pack(&req, nng_msg_body(msg));
	nng_aio_set_msg(v->aio, msg);
	/* While the registry is down the send waits for it to come back, so
	 * the first lookup leaves the moment the pipe is up again. */
	if ((rv = view_op(v, true, gen, timeout)) != 0 ||
	    (rv = view_op(v, false, gen, timeout)) != 0)
		return rv;
	msg = nng_aio_get_msg(v->aio);
	nng_aio_set_msg(v->aio, NULL);
	rv = view_decode(msg, &inst, &n, revision, &dropped);
	nng_msg_free(msg);
	if (rv != 0)
		return rv;

	pthread_mutex_lock(&v->mtx);
	/* Once per change of the count, not once per answer. */
	if (dropped > 0 && dropped != v->dropped)
		SHOP_LOG(WARN,
			 "registry view: %zu instances in the registry's answer are not in the "
			 "safe form (docs/decisions.md); left out",
			 dropped);
	v->dropped = dropped;
	old = v->inst;
	v->inst = inst;
	v->n = n;
	v->revision = *revision;
	v->revision_gen = gen;
	v->got_mono_us = shop_now_mono_us();
	pthread_mutex_unlock(&v->mtx);
	free(old);
	return 0;
}

/* Long-polls: asks, and as soon as an answer comes asks again with its
 * revision, so that the registry answers the next change at once. Waits
 * refresh_ms first after a failure, and after an answer that came back
 * early with nothing new (a registry that does not hold lookups: older, or
 * out of contexts), which then degrades to polling. */
static void *view_main(void *arg)
{
	shop_registry_view *v = arg;
	uint64_t wait_revision, gen, revision = 0;
	struct timespec until;
	int64_t t0;
	bool pause;
	int rv;

	pthread_mutex_lock(&v->mtx);
	while (!v->stop) {
		gen = v->conn_gen;
		/* After a failure or a closed pipe, ask for the table at once:
		 * our revision may be another registry process's. */
		wait_revision = !v->failing && v->revision_gen == gen ? v->revision : 0;
		pthread_mutex_unlock(&v->mtx);
		t0 = shop_now_mono_us();
		rv = view_lookup(v, wait_revision, gen, &revision);
		pause = rv != 0 || (wait_revision != 0 && revision == wait_revision &&
				    shop_now_mono_us() - t0 < (int64_t)VIEW_WAIT_MS * 1000 / 2);
		pthread_mutex_lock(&v->mtx);
		if (v->stop)
			break;
		if (rv != 0 && !v->failing)
			SHOP_LOG(WARN, "registry view: lookup failed (%s); keeping revision %llu",
				 nng_strerror(rv), (unsigned long long)v->revision);
		else if (rv == 0 && v->failing)
			SHOP_LOG(INFO, "registry view: lookups answered again (revision %llu)",
				 (unsigned long long)v->revision);
		v->failing = rv != 0;
		/* A lookup for the table at once that times out on a live
		 * connection: the registry is not reading it (seen, rarely,
		 * right after a registry restart; docs/decisions.md). A fresh
		 * connection gets answered: drop this one after a second such
		 * lookup; the dialer makes the next. */
		v->unanswered = rv == NNG_ETIMEDOUT && wait_revision == 0 && v->pipes > 0
				    ? v->unanswered + 1
				    : 0;
		if (v->unanswered >= VIEW_UNANSWERED_MAX) {
			nng_pipe p = v->pipe;

			SHOP_LOG(WARN,
				 "registry view: %d lookups unanswered on a live connection; "
				 "connecting afresh",
				 v->unanswered);
			v->unanswered = 0;
			pthread_mutex_unlock(&v->mtx);
			nng_pipe_close(p);
			pthread_mutex_lock(&v->mtx);
		}
		if (!pause)
			continue;

		until = shop_mono_deadline(v->refresh_ms);
		while (!v->stop && pthread_cond_timedwait(&v->cv, &v->mtx, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&v->mtx);
	return NULL;
}

static bool view_is_up(void *arg)
{
	shop_registry_view *v = arg;
	bool up;

	pthread_mutex_lock(&v->mtx);
	up = v->pipes > 0;
	pthread_mutex_unlock(&v->mtx);
	return up;
}

int shop_registry_view_create(shop_registry_view **out, const char *lookup_url, int refresh_ms)
{
	shop_registry_view *v;
	int rv;

	if (refresh_ms <= 0)
		return NNG_EINVAL;
	if ((v = calloc(1, sizeof(*v))) == NULL)
		return NNG_ENOMEM;
	v->refresh_ms = refresh_ms;
	if (pthread_mutex_init(&v->mtx, NULL) != 0) {
		rv = NNG_ENOMEM;
		goto out_free;
	}
	if (shop_cond_init_mono(&v->cv) != 0) {
		rv = NNG_ENOMEM;
		goto out_mtx;
	}
	if ((rv = nng_aio_alloc(&v->aio, NULL, NULL)) != 0)
		goto out_cv;
	if ((rv = nng_req0_open(&v->sock)) != 0)
		goto out_aio;
	/* A lookup is sent once; a lost one is simply asked again. */
	if ((rv = shop_nng_socket_defaults(v->sock)) != 0 ||
	    (rv = nng_socket_set_ms(v->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_ms(v->sock, NNG_OPT_RECONNMINT, ADV_RECONN_MIN_MS)) != 0 ||
	    (rv = nng_socket_set_ms(v->sock, NNG_OPT_RECONNMAXT, VIEW_RECONN_MAX_MS)) != 0 ||
	    (rv = nng_pipe_notify(v->sock, NNG_PIPE_EV_ADD_POST, view_pipe_cb, v)) != 0 ||
	    (rv = nng_pipe_notify(v->sock, NNG_PIPE_EV_REM_POST, view_pipe_cb, v)) != 0)
		goto out_sock;
	if ((rv = shop_dial_keeper_start(&v->keeper, v->sock, lookup_url, view_is_up, v)) != 0) {
		SHOP_LOG(ERROR, "registry view: dial %s: %s", lookup_url, nng_strerror(rv));
		goto out_sock;
	}
	if (pthread_create(&v->thread, NULL, view_main, v) != 0) {
		rv = NNG_ENOMEM;
		goto out_sock;
	}
	*out = v;
	return 0;

out_sock:
	shop_dial_keeper_stop(v->keeper);
	nng_close(v->sock); /* after this no pipe callback runs */
out_aio:
	nng_aio_free(v->aio);
out_cv:
	pthread_cond_destroy(&v->cv);
out_mtx:
	pthread_mutex_destroy(&v->mtx);
out_free:
	free(v);
	return rv;
}

void shop_registry_view_destroy(shop_registry_view *v)
{
	if (v == NULL)
		return;
	pthread_mutex_lock(&v->mtx);
	v->stop = true;
	/* Aborts a lookup in flight, parked in the registry for up to
	 * VIEW_WAIT_MS, so the thread ends now; it starts no other. */
	if (v->busy)
		nng_aio_cancel(v->aio);
	pthread_cond_signal(&v->cv);
	pthread_mutex_unlock(&v->mtx);
	pthread_join(v->thread, NULL);
	shop_dial_keeper_stop(v->keeper);
	nng_close(v->sock); /* after this no pipe callback runs */
	nng_aio_free(v->aio);
	pthread_cond_destroy(&v->cv);
	pthread_mutex_destroy(&v->mtx);
	free(v->inst);
	free(v);
}

int shop_registry_view_get(shop_registry_view *v, const char *service, bool healthy_only,
			   shop_instance *out, int cap)
{
	int cnt = 0;

	pthread_mutex_lock(&v->mtx);
	for (size_t i = 0; i < v->n && cnt < cap; i++) {
		const shop_instance *in = &v->inst[i];

		if (service != NULL && service[0] != '\0' && strcmp(in->service, service) != 0)
			continue;
		if (healthy_only && !in->healthy)
			continue;
		out[cnt++] = *in;
	}
	pthread_mutex_unlock(&v->mtx);
	return cnt;
}

uint64_t shop_registry_view_revision(shop_registry_view *v)
{
	uint64_t r;

	pthread_mutex_lock(&v->mtx);
	r = v->revision;
	pthread_mutex_unlock(&v->mtx);
	return r;
}

int shop_registry_view_reachable(shop_registry_view *v)
{
	int up;

	pthread_mutex_lock(&v->mtx);
	up = v->revision != 0 && !v->failing;
	pthread_mutex_unlock(&v->mtx);
	return up;
}

int64_t shop_registry_view_age_ms(shop_registry_view *v)
{
	int64_t age = -1;

	pthread_mutex_lock(&v->mtx);
	if (v->revision != 0)
		age = (shop_now_mono_us() - v->got_mono_us) / 1000;
	pthread_mutex_unlock(&v->mtx);
	return age;
}
