/* health.c -- /healthz and /readyz: a thread that checks the database and
 * the cache on connections of its own, and the answers built from its last
 * results, the registry view and the breakers. */
#include "health.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "clock.h"
#include "log.h"
#include "redis.h"
#include "strbuf.h"

#define HEALTH_MAX_VIEW 128 /* instances of the view looked at for breakers */

struct shop_health {
	shop_health_config cfg;
	char redis_host[64];
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mtx; /* guards everything below */
	pthread_cond_t cv;   /* CLOCK_MONOTONIC; signalled on stop */
	bool stop;
	shop_check database, redis;
	bool checking; /* a check runs, since check_started_us */
	int64_t check_started_us;
	shop_advertiser *adv;
	bool draining;
	/* the checking thread's own */
	PGconn *pg;
	redisContext *rc;
};

/* ---- the checks (checking thread) -------------------------------------------- */

static void pg_quiet(void *arg, const PGresult *res)
{
	(void)arg;
	(void)res; /* the workers' connections log the server's notices */
}

/* Connects without blocking past the deadline. */
static int pg_connect(shop_health *h, int64_t deadline_us)
{
	static const char *const keys[] = {"dbname", NULL};
	const char *vals[] = {h->cfg.pg_dsn, NULL};
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;

	h->pg = PQconnectStartParams(keys, vals, 1);
	if (h->pg == NULL || PQstatus(h->pg) == CONNECTION_BAD)
		return -1;
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED ||
		    shop_wait_fd(PQsocket(h->pg), st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
				 deadline_us) != 0)
			return -1;
		st = PQconnectPoll(h->pg);
	}
	PQsetNoticeReceiver(h->pg, pg_quiet, NULL);
	return PQsetnonblocking(h->pg, 1) == 0 ? 0 : -1;
}

/* "SELECT 1" on the health connection, (re)connecting as needed, all
 * within timeout: a hung server costs one timeout, never a stuck thread. */
static shop_check pg_check(shop_health *h, int timeout_ms)
{
	int64_t deadline_us = shop_now_mono_us() + (int64_t)timeout_ms * 1000;
	bool ok = false;
	PGresult *res;
	int rv;

	if (h->pg != NULL && PQstatus(h->pg) != CONNECTION_OK) {
		PQfinish(h->pg);
		h->pg = NULL;
	}
	if (h->pg == NULL && pg_connect(h, deadline_us) != 0)
		goto fail;
	if (PQsendQuery(h->pg, "SELECT 1") == 0)
		goto fail;
	while ((rv = PQflush(h->pg)) == 1)
		if (shop_wait_fd(PQsocket(h->pg), POLLOUT, deadline_us) != 0)
			goto fail;
	if (rv != 0)
		goto fail;
	for (;;) {
		while (PQisBusy(h->pg))
			if (shop_wait_fd(PQsocket(h->pg), POLLIN, deadline_us) != 0 ||
			    PQconsumeInput(h->pg) == 0)
				goto fail;
		if ((res = PQgetResult(h->pg)) == NULL)
			break;
		ok = PQresultStatus(res) == PGRES_TUPLES_OK;
		PQclear(res);
	}
	return ok ? SHOP_CHECK_UP : SHOP_CHECK_DOWN;
fail:
	/* Half-done exchanges are not resumed: the next check starts afresh. */
	PQfinish(h->pg);
	h->pg = NULL;
	return SHOP_CHECK_DOWN;
}

/* PING on the health connection to Redis; hiredis's timeouts bound it. */
static shop_check redis_check(shop_health *h, int timeout_ms)
{
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	redisReply *reply;
	bool ok;

	if (h->rc == NULL) {
		h->rc = redisConnectWithTimeout(h->redis_host, h->cfg.redis_port, tv);
		if (h->rc == NULL || h->rc->err != 0 || redisSetTimeout(h->rc, tv) != REDIS_OK)
			goto fail;
		shop_redis_reader_setup(h->rc->reader); /* no 16 GiB "*2147483647" */
	}
	reply = redisCommand(h->rc, "PING");
	ok = reply != NULL && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
	if (reply != NULL)
		freeReplyObject(reply);
	if (h->rc->err != 0)
		goto fail; /* hiredis never reuses a context after an I/O error */
	return ok ? SHOP_CHECK_UP : SHOP_CHECK_DOWN;
fail:
	if (h->rc != NULL)
		redisFree(h->rc);
	h->rc = NULL;
	return SHOP_CHECK_DOWN;
}

static void log_change(const char *what, shop_check before, shop_check now)
{
	if (now == SHOP_CHECK_DOWN && before != SHOP_CHECK_DOWN)
		SHOP_LOG(WARN, "health: the %s does not answer", what);
	else if (now == SHOP_CHECK_UP && before == SHOP_CHECK_DOWN)
		SHOP_LOG(INFO, "health: the %s answers again", what);
}

static void *health_main(void *arg)
{
	shop_health *h = arg;
	int timeout_ms = h->cfg.timeout_ms;
	shop_check db, rs;
	struct timespec until;

	pthread_mutex_lock(&h->mtx);
	while (!h->stop) {
		h->checking = true;
		h->check_started_us = shop_now_mono_us();
		pthread_mutex_unlock(&h->mtx);

		db = h->cfg.pg_dsn != NULL ? pg_check(h, timeout_ms) : SHOP_CHECK_NONE;
		rs = h->cfg.redis_host != NULL ? redis_check(h, timeout_ms) : SHOP_CHECK_NONE;

		pthread_mutex_lock(&h->mtx);
		log_change("database", h->database, db);
		log_change("cache (Redis)", h->redis, rs);
		h->database = db;
		h->redis = rs;
		h->checking = false;
		until = shop_mono_deadline(SHOP_HEALTH_INTERVAL_MS);
		while (!h->stop && pthread_cond_timedwait(&h->cv, &h->mtx, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&h->mtx);
	return NULL;
}

/* ---- lifecycle ----------------------------------------------------------------- */

int shop_health_create(shop_health **out, const shop_health_config *c)
{
	shop_health *h;

	*out = NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		goto oom;
	h->cfg = *c;
	if (h->cfg.timeout_ms <= 0)
		h->cfg.timeout_ms = 1000;
	if (c->redis_host != NULL) {
		snprintf(h->redis_host, sizeof(h->redis_host), "%s", c->redis_host);
		h->cfg.redis_host = h->redis_host;
	}
	h->database = c->pg_dsn != NULL ? SHOP_CHECK_UNKNOWN : SHOP_CHECK_NONE;
	h->redis = c->redis_host != NULL ? SHOP_CHECK_UNKNOWN : SHOP_CHECK_NONE;
	if (pthread_mutex_init(&h->mtx, NULL) != 0)
		goto out_free;
	if (shop_cond_init_mono(&h->cv) != 0)
		goto out_mtx;
	if (c->pg_dsn != NULL || c->redis_host != NULL) {
		if (pthread_create(&h->thread, NULL, health_main, h) != 0)
			goto out_cv;
		h->thread_started = true;
	}
	*out = h;
	return 0;

out_cv:
	pthread_cond_destroy(&h->cv);
out_mtx:
	pthread_mutex_destroy(&h->mtx);
out_free:
	free(h);
oom:
	SHOP_LOG(ERROR, "health: cannot start the checks (out of memory or threads)");
	return -1;
}

void shop_health_destroy(shop_health *h)
{
	if (h == NULL)
		return;
	pthread_mutex_lock(&h->mtx);
	h->stop = true;
	pthread_cond_signal(&h->cv);
	pthread_mutex_unlock(&h->mtx);
	if (h->thread_started)
		pthread_join(h->thread, NULL);
	if (h->pg != NULL)
		PQfinish(h->pg);
	if (h->rc != NULL)
		redisFree(h->rc);
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mtx);
	free(h);
}

void shop_health_set_advertiser(shop_health *h, shop_advertiser *a)
{
	pthread_mutex_lock(&h->mtx);
	h->adv = a;
	pthread_mutex_unlock(&h->mtx);
}

void shop_health_set_draining(shop_health *h)
{
	pthread_mutex_lock(&h->mtx);
	h->draining = true;
	pthread_mutex_unlock(&h->mtx);
}

/* ---- gathering ----------------------------------------------------------------- */

struct breaker_walk {
	shop_health_report *r;
	const shop_instance *view;
	int n_view;
	int64_t now;
};

/* Breakers of instances that left the view stay open with nobody to call:
 * only those of instances the view holds now say anything. */
static void breaker_one(void *arg, shop_breaker *b, const char *instance)
{
	struct breaker_walk *w = arg;
	shop_health_report *r = w->r;
	shop_breaker_stats st;
	bool known = false;

	for (int i = 0; i < w->n_view && !known; i++)
		known = strcmp(w->view[i].instance, instance) == 0;
	if (!known || r->n_breakers == SHOP_HEALTH_MAX_BREAKERS)
		return;
	shop_breaker_stats_get(b, w->now, &st);
	snprintf(r->breakers[r->n_breakers].name, sizeof(r->breakers[0].name), "%s",
		 shop_breaker_name(b));
	r->breakers[r->n_breakers].state = st.state;
	r->n_breakers++;
}

static void health_gather(shop_health *h, shop_health_report *r)
{
	const shop_health_config *c = &h->cfg;
	int64_t now = shop_now_mono_us();
	int adv_up = -1, view_up = -1;

	memset(r, 0, sizeof(*r));
	pthread_mutex_lock(&h->mtx);
	r->database = h->database;
	r->redis = h->redis;
	/* A check that overran its timeouts (connect and command each) is
	 * stuck on a server that does not answer. */
	if (h->checking && now - h->check_started_us > (int64_t)c->timeout_ms * 3 * 1000) {
		if (r->database != SHOP_CHECK_NONE)
			r->database = SHOP_CHECK_DOWN;
		if (r->redis != SHOP_CHECK_NONE)
			r->redis = SHOP_CHECK_DOWN;
	}
	r->draining = h->draining;
	/* Under the lock: the advertiser is not destroyed before it is unset. */
	if (h->adv != NULL)
		adv_up = shop_advertiser_connected(h->adv);
	pthread_mutex_unlock(&h->mtx);

	if (c->view != NULL)
		view_up = shop_registry_view_reachable(c->view);
	if (adv_up < 0 && view_up < 0)
		r->registry = SHOP_CHECK_NONE;
	else
		r->registry = adv_up == 0 || view_up == 0 ? SHOP_CHECK_DOWN : SHOP_CHECK_UP;

	if (c->view != NULL) {
		shop_instance *inst = malloc(HEALTH_MAX_VIEW * sizeof(*inst));
		int n = inst != NULL
			    ? shop_registry_view_get(c->view, NULL, true, inst, HEALTH_MAX_VIEW)
			    : 0;

		for (size_t i = 0; i < c->n_required && i < SHOP_HEALTH_MAX_SERVICES; i++) {
			int cnt = 0;

			for (int j = 0; j < n; j++)
				cnt += strcmp(inst[j].service, c->required[i]) == 0;
			snprintf(r->services[i].name, sizeof(r->services[i].name), "%s",
				 c->required[i]);
			r->services[i].instances = cnt;
			r->n_services++;
		}
		if (c->up != NULL) {
			struct breaker_walk w = {.r = r, .view = inst, .n_view = n, .now = now};

			shop_upstream_foreach_breaker(c->up, breaker_one, &w);
		}
		free(inst);
	}
}

int shop_health_render(shop_health *h, bool readiness, char **body, size_t *len)
{
	shop_health_report *r = malloc(sizeof(*r));
	int status;

	*body = NULL;
	*len = 0;
	if (r == NULL)
		return 500;
	health_gather(h, r);
	status = shop_health_report_json(r, readiness, body, len);
	free(r);
	return status;
}

int shop_health_healthz(void *arg, char **body, size_t *len, const char **content_type)
{
	*content_type = "application/json";
	return shop_health_render(arg, false, body, len);
}

int shop_health_readyz(void *arg, char **body, size_t *len, const char **content_type)
{
	*content_type = "application/json";
	return shop_health_render(arg, true, body, len);
}

/* ---- the JSON (pure) ---------------------------------------------------------- */

/* Appends a JSON string (names come from configuration and adverts). */
static void jb_str(shop_buf *b, const char *s)
{
	char esc[6 * 100 + 1];

	shop_json_escape(esc, sizeof(esc), s);
	shop_buf_printf(b, "\"%s\"", esc);
}

static const char *check_word(shop_check c, bool registry)
{
	switch (c) {
	case SHOP_CHECK_UP:
		return "up";
	case SHOP_CHECK_DOWN:
		return registry ? "away" : "down";
	default:
		return "unknown";
	}
}

int shop_health_report_json(const shop_health_report *r, bool readiness, char **body, size_t *len)
{
	/* reasons: the checks that are not fine, worst first */
	char reasons[SHOP_HEALTH_MAX_SERVICES + SHOP_HEALTH_MAX_BREAKERS + 4][128];
	size_t n_reasons = 0;
	bool cannot_serve = false, degraded = false;
	shop_buf b = {0};
	const char *status;
	int code;

	*body = NULL;
	*len = 0;
	if (r->draining) {
		cannot_serve = true;
		snprintf(reasons[n_reasons++], sizeof(reasons[0]), "draining");
	}
	if (r->database == SHOP_CHECK_DOWN || r->database == SHOP_CHECK_UNKNOWN) {
		cannot_serve = true;
		snprintf(reasons[n_reasons++], sizeof(reasons[0]), "database %s",
			 check_word(r->database, false));
	}
	for (size_t i = 0; i < r->n_services; i++) {
		if (r->services[i].instances > 0)
			continue;
		cannot_serve = true;
		snprintf(reasons[n_reasons++], sizeof(reasons[0]), "no instance of %.32s",
			 r->services[i].name);
	}
	if (r->redis == SHOP_CHECK_DOWN) {
		degraded = true;
		snprintf(reasons[n_reasons++], sizeof(reasons[0]), "redis down");
	}
	if (r->registry == SHOP_CHECK_DOWN) {
		degraded = true;
		snprintf(reasons[n_reasons++], sizeof(reasons[0]), "registry away");
	}
	/* Half-open lets trial calls through: listed, not a degradation (an
	 * instance back from a restart stays half-open until it is called). */
	for (size_t i = 0; i < r->n_breakers; i++) {
		if (r->breakers[i].state != SHOP_BREAKER_OPEN)
			continue;
		degraded = true;
		snprintf(reasons[n_reasons++], sizeof(reasons[0]), "breaker %.100s %s",
			 r->breakers[i].name, shop_breaker_state_name(r->breakers[i].state));
	}
	if (readiness) {
		status = cannot_serve ? "not_ready" : degraded ? "degraded" : "ready";
		code = cannot_serve ? 503 : 200;
	} else {
		/* Liveness: what readiness fails on is a degradation here. */
		status = cannot_serve || degraded ? "degraded" : "up";
		code = 200;
	}

	/* Liveness with nothing to report: the classic answer. */
	if (!readiness && n_reasons == 0) {
		shop_buf_printf(&b, "{\"status\":\"up\"}");
		goto out;
	}
	shop_buf_printf(&b, "{\"status\":\"%s\",\"checks\":{", status);
	const char *sep = "";
	if (r->database != SHOP_CHECK_NONE) {
		shop_buf_printf(&b, "\"database\":\"%s\"", check_word(r->database, false));
		sep = ",";
	}
	if (r->redis != SHOP_CHECK_NONE) {
		shop_buf_printf(&b, "%s\"redis\":\"%s\"", sep, check_word(r->redis, false));
		sep = ",";
	}
	if (r->registry != SHOP_CHECK_NONE) {
		shop_buf_printf(&b, "%s\"registry\":\"%s\"", sep, check_word(r->registry, true));
		sep = ",";
	}
	if (r->draining) {
		shop_buf_printf(&b, "%s\"draining\":true", sep);
		sep = ",";
	}
	if (r->n_services > 0) {
		shop_buf_printf(&b, "%s\"services\":{", sep);
		for (size_t i = 0; i < r->n_services; i++) {
			shop_buf_printf(&b, "%s", i > 0 ? "," : "");
			jb_str(&b, r->services[i].name);
			shop_buf_printf(&b, ":%d", r->services[i].instances);
		}
		shop_buf_printf(&b, "}");
		sep = ",";
	}
	if (r->n_breakers > 0) {
		shop_buf_printf(&b, "%s\"breakers\":{", sep);
		for (size_t i = 0; i < r->n_breakers; i++) {
			shop_buf_printf(&b, "%s", i > 0 ? "," : "");
			jb_str(&b, r->breakers[i].name);
			shop_buf_printf(&b, ":\"%s\"",
					shop_breaker_state_name(r->breakers[i].state));
		}
		shop_buf_printf(&b, "}");
	}
	shop_buf_printf(&b, "}");
	if (n_reasons > 0) {
		shop_buf_printf(&b, ",\"reasons\":[");
		for (size_t i = 0; i < n_reasons; i++) {
			shop_buf_printf(&b, "%s", i > 0 ? "," : "");
			jb_str(&b, reasons[i]);
		}
		shop_buf_printf(&b, "]");
	}
	shop_buf_printf(&b, "}");
out:
	*len = b.len;
	if ((*body = shop_buf_take(&b)) == NULL) {
		*len = 0;
		return 500;
	}
	return code;
}
