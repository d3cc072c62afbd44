/* dashboard.c -- the registry's dashboard page and the breaker states
 * behind it, read from the callers' /metrics on a thread of its own. */
#include "dashboard.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "breaker_parse.h"
#include "clock.h"
#include "http_get.h"
#include "log.h"
#include "registry_table.h"

/* The largest /metrics body read; a larger one is an error. */
#define METRICS_MAX_BODY (4u << 20)
/* The most SHOP_REGISTRY_SCRAPE_EXTRA items. */
#define EXTRA_MAX 16

/* Generated from dashboard.html by embed.py. */
extern const char reg_dashboard_html[];
extern const size_t reg_dashboard_html_len;

/* One /metrics the dashboard reads, and what it last learnt there. */
typedef struct dash_source {
	char service[32];
	char instance[64];
	char metrics_url[256]; /* "" when the admin URL is not one we can read */
	bool registered;       /* from the table, else from SHOP_REGISTRY_SCRAPE_EXTRA */
	bool up;               /* its last read answered 200 */
	bool stale;            /* breakers are from an earlier read */
	char error[128];       /* why the last read failed */
	int64_t last_ok_ms;    /* monotonic; 0 never */
	reg_breaker *breakers; /* owned */
	size_t nbreakers;
} dash_source;

/* An item of SHOP_REGISTRY_SCRAPE_EXTRA. */
typedef struct dash_extra {
	char instance[64];
	char admin_url[128];
} dash_extra;

struct reg_dashboard {
	reg_dashboard_config cfg; /* extra and self_admin_url re-pointed to our copies */
	char self_admin_url[128];
	dash_extra extra[EXTRA_MAX];
	size_t nextra;
	int64_t started_ms;
	pthread_t thread;

	pthread_mutex_t mtx; /* guards everything below */
	pthread_cond_t cv;   /* CLOCK_MONOTONIC; a request wants data, a round ended, stop */
	bool stopping;
	int64_t wanted_ms;     /* the last GET /v1/breakers */
	int64_t last_round_ms; /* when the last round ended; 0 never */
	uint64_t rounds;
	dash_source *sources; /* the last round's */
	size_t nsources;
};

static int64_t now_ms(void)
{
	return shop_now_mono_us() / 1000;
}

/* ---- SHOP_REGISTRY_SCRAPE_EXTRA ---------------------------------------------- */

static bool instance_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

/* "http://host:port[/prefix]" of an admin URL → "http://host:port<prefix>/metrics". */
static int metrics_url(const char *admin_url, char *out, size_t cap)
{
	char hostport[128], scheme[8], path[160], h[128], p[8], x[160];
	int n;

	if (reg_admin_target(admin_url, hostport, sizeof(hostport), scheme, sizeof(scheme), path,
			     sizeof(path)) != 0 ||
	    strcmp(scheme, "http") != 0)
		return -1;
	n = snprintf(out, cap, "http://%s%s", hostport, path);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return reg_http_url_split(out, h, sizeof(h), p, sizeof(p), x, sizeof(x));
}

/* Parses extra into d (NULL: check only). */
static int extra_parse(const char *s, dash_extra *out, size_t *n, const char **why)
{
	size_t count = 0;

	*why = NULL;
	if (s == NULL || *s == '\0') {
		*n = 0;
		return 0;
	}
	for (;;) {
		const char *item_end = s + strcspn(s, ","),
			   *eq = memchr(s, '=', (size_t)(item_end - s));
		dash_extra e;
		char url[256];
		size_t nlen, ulen;

		if (eq == NULL) {
			*why = "an item is not instance=admin-url";
			return -1;
		}
		nlen = (size_t)(eq - s);
		ulen = (size_t)(item_end - eq - 1);
		if (nlen == 0 || nlen >= sizeof(e.instance)) {
			*why = "an instance name is empty or longer than 63";
			return -1;
		}
		for (size_t i = 0; i < nlen; i++) {
			if (!instance_char(s[i])) {
				*why = "an instance name has a character outside [A-Za-z0-9._-]";
				return -1;
			}
		}
		if (ulen == 0 || ulen >= sizeof(e.admin_url)) {
			*why = "an admin URL is empty or longer than 127";
			return -1;
		}
		memcpy(e.instance, s, nlen);
		e.instance[nlen] = '\0';
		memcpy(e.admin_url, eq + 1, ulen);
		e.admin_url[ulen] = '\0';
		if (metrics_url(e.admin_url, url, sizeof(url)) != 0) {
			*why = "an admin URL is not http://host:port[/prefix]";
			return -1;
		}
		if (count == EXTRA_MAX) {
			*why = "more than 16 items";
			return -1;
		}
		if (out != NULL)
			out[count] = e;
		count++;
		if (*item_end == '\0')
			break;
		s = item_end + 1;
	}
	*n = count;
	return 0;
}

int reg_dashboard_extra_check(const char *extra, const char **why)
{
	size_t n;

	return extra_parse(extra, NULL, &n, why);
}

/* ---- reading every /metrics ------------------------------------------------- */

static void sources_free(dash_source *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].breakers);
	free(v);
}

/* What to read this round: the registered instances, then the extras. */
static dash_source *round_sources(reg_dashboard *d, size_t *n)
{
	shop_instance *inst = NULL;
	dash_source *v;
	size_t ni = 0;

	if (d->cfg.list(d->cfg.list_arg, &inst, &ni) != 0)
		ni = 0;
	if ((v = calloc(ni + d->nextra + 1, sizeof(*v))) == NULL) {
		free(inst);
		return NULL;
	}
	for (size_t i = 0; i < ni; i++) {
		dash_source *s = &v[i];

		snprintf(s->service, sizeof(s->service), "%s", inst[i].service);
		snprintf(s->instance, sizeof(s->instance), "%s", inst[i].instance);
		s->registered = true;
		if (metrics_url(inst[i].admin_url, s->metrics_url, sizeof(s->metrics_url)) != 0) {
			s->metrics_url[0] = '\0';
			snprintf(s->error, sizeof(s->error), "admin_url is not http://host:port");
		}
	}
	for (size_t i = 0; i < d->nextra; i++) {
		dash_source *s = &v[ni + i];

		snprintf(s->service, sizeof(s->service), "%s", d->extra[i].instance);
		snprintf(s->instance, sizeof(s->instance), "%s", d->extra[i].instance);
		metrics_url(d->extra[i].admin_url, s->metrics_url, sizeof(s->metrics_url));
	}
	free(inst);
	*n = ni + d->nextra;
	return v;
}

/* One round: read every /metrics at once, parse, publish. */
static void dash_round(reg_dashboard *d)
{
	reg_http_get *gets = NULL;
	dash_source *v;
	size_t n;
	int64_t now;

	if ((v = round_sources(d, &n)) == NULL || (gets = calloc(n + 1, sizeof(*gets))) == NULL) {
		SHOP_LOG(WARN, "dashboard: out of memory; breakers not read");
		sources_free(v, 0);
		v = NULL;
		goto out_publish;
	}
	for (size_t i = 0; i < n; i++)
		gets[i].url = v[i].metrics_url;
	reg_http_get_all(gets, n, d->cfg.timeout_ms, METRICS_MAX_BODY);
	for (size_t i = 0; i < n; i++) {
		dash_source *s = &v[i];

		if (s->metrics_url[0] == '\0') {
			/* error set by round_sources */
		} else if (gets[i].body == NULL) {
			snprintf(s->error, sizeof(s->error), "%s", gets[i].error);
		} else if (gets[i].status != 200) {
			snprintf(s->error, sizeof(s->error), "HTTP %d", gets[i].status);
		} else if (reg_breakers_parse(gets[i].body, gets[i].len, &s->breakers,
					      &s->nbreakers) != 0) {
			snprintf(s->error, sizeof(s->error), "out of memory");
		} else {
			s->up = true;
		}
		free(gets[i].body);
	}

out_publish:
	now = now_ms();
	pthread_mutex_lock(&d->mtx);
	for (size_t i = 0; v != NULL && i < n; i++) {
		dash_source *s = &v[i];

		if (s->up)
			s->last_ok_ms = now;
		for (size_t j = 0; j < d->nsources; j++) {
			dash_source *o = &d->sources[j];

			if (strcmp(o->instance, s->instance) != 0 ||
			    strcmp(o->metrics_url, s->metrics_url) != 0)
				continue;
			if (!s->up) {
				/* Keep what it said last, marked stale. */
				s->last_ok_ms = o->last_ok_ms;
				s->breakers = o->breakers;
				s->nbreakers = o->nbreakers;
				s->stale = s->breakers != NULL;
				o->breakers = NULL;
			}
			break;
		}
	}
	if (v != NULL) {
		sources_free(d->sources, d->nsources);
		d->sources = v;
		d->nsources = n;
	}
	d->last_round_ms = now;
	d->rounds++;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mtx);
	free(gets);
}

static void deadline_ts(struct timespec *ts, int64_t mono_ms)
{
	ts->tv_sec = (time_t)(mono_ms / 1000);
	ts->tv_nsec = (long)(mono_ms % 1000) * 1000000L;
}

/* Rounds every interval_ms while someone asked within idle_ms; else sleeps
 * until someone asks. */
static void *dash_main(void *arg)
{
	reg_dashboard *d = arg;

	pthread_mutex_lock(&d->mtx);
	for (;;) {
		struct timespec ts;
		int64_t next;

		while (!d->stopping && now_ms() - d->wanted_ms >= d->cfg.idle_ms)
			pthread_cond_wait(&d->cv, &d->mtx);
		if (d->stopping)
			break;
		pthread_mutex_unlock(&d->mtx);
		next = now_ms() + d->cfg.interval_ms;
		dash_round(d);
		pthread_mutex_lock(&d->mtx);
		deadline_ts(&ts, next);
		while (!d->stopping && now_ms() < next)
			pthread_cond_timedwait(&d->cv, &d->mtx, &ts);
	}
	pthread_mutex_unlock(&d->mtx);
	return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------- */

int reg_dashboard_create(reg_dashboard **out, const reg_dashboard_config *cfg)
{
	reg_dashboard *d;
	const char *why;
	int rv;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return ENOMEM;
	d->cfg = *cfg;
	snprintf(d->self_admin_url, sizeof(d->self_admin_url), "%s",
		 cfg->self_admin_url != NULL ? cfg->self_admin_url : "");
	d->cfg.self_admin_url = d->self_admin_url;
	d->cfg.extra = NULL;
	if (extra_parse(cfg->extra, d->extra, &d->nextra, &why) != 0) {
		rv = EINVAL;
		goto out_free;
	}
	d->started_ms = now_ms();
	d->wanted_ms = d->started_ms - cfg->idle_ms - 1;
	if ((rv = pthread_mutex_init(&d->mtx, NULL)) != 0)
		goto out_free;
	if ((rv = shop_cond_init_mono(&d->cv)) != 0)
		goto out_mtx;
	if ((rv = pthread_create(&d->thread, NULL, dash_main, d)) != 0)
		goto out_cv;
	*out = d;
	return 0;

out_cv:
	pthread_cond_destroy(&d->cv);
out_mtx:
	pthread_mutex_destroy(&d->mtx);
out_free:
	free(d);
	return rv;
}

void reg_dashboard_destroy(reg_dashboard *d)
{
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->mtx);
	d->stopping = true;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mtx);
	/* A round in progress ends within timeout_ms. */
	pthread_join(d->thread, NULL);
	sources_free(d->sources, d->nsources);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mtx);
	free(d);
}

/* ---- handlers ------------------------------------------------------------------ */

int reg_dashboard_page(void *arg, char **body, size_t *len, const char **content_type)
{
	(void)arg;
	*content_type = "text/plain; charset=utf-8";
	if ((*body = malloc(reg_dashboard_html_len + 1)) == NULL)
		return 500;
	memcpy(*body, reg_dashboard_html, reg_dashboard_html_len + 1);
	*len = reg_dashboard_html_len;
	*content_type = "text/html; charset=utf-8";
	return 200;
}

/* ms ago, or null when never (mono_ms 0). */
static cJSON *age_json(int64_t now, int64_t mono_ms)
{
	if (mono_ms == 0)
		return cJSON_CreateNull();
	return cJSON_CreateNumber((double)(now > mono_ms ? now - mono_ms : 0));
}

static int add_or_fail(cJSON *o, const char *k, cJSON *v)
{
	if (v == NULL)
		return -1;
	cJSON_AddItemToObject(o, k, v);
	return 0;
}

static int append_or_fail(cJSON *a, cJSON *v)
{
	if (v == NULL)
		return -1;
	cJSON_AddItemToArray(a, v);
	return 0;
}

/* The /v1/breakers document; under d->mtx. */
static cJSON *breakers_json(const reg_dashboard *d, int64_t now)
{
	cJSON *root = cJSON_CreateObject(), *self, *srcs, *brks;
	int rv = 0;

	if (root == NULL)
		return NULL;
	rv |= add_or_fail(root, "self", self = cJSON_CreateObject());
	rv |= add_or_fail(root, "scraped_ms_ago", age_json(now, d->last_round_ms));
	rv |= add_or_fail(root, "sources", srcs = cJSON_CreateArray());
	rv |= add_or_fail(root, "breakers", brks = cJSON_CreateArray());
	if (rv != 0)
		goto fail;
	rv |= add_or_fail(self, "service", cJSON_CreateString("registry"));
	rv |= add_or_fail(self, "instance", cJSON_CreateString("registry"));
	rv |= add_or_fail(self, "admin_url", cJSON_CreateString(d->self_admin_url));
	rv |= add_or_fail(self, "version", cJSON_CreateString(SHOP_VERSION));
	rv |= add_or_fail(self, "uptime_ms", cJSON_CreateNumber((double)(now - d->started_ms)));
	for (size_t i = 0; i < d->nsources && rv == 0; i++) {
		const dash_source *s = &d->sources[i];
		cJSON *o = cJSON_CreateObject();

		if ((rv = append_or_fail(srcs, o)) != 0)
			break;
		rv |= add_or_fail(o, "service", cJSON_CreateString(s->service));
		rv |= add_or_fail(o, "instance", cJSON_CreateString(s->instance));
		rv |= add_or_fail(o, "metrics_url", cJSON_CreateString(s->metrics_url));
		rv |= add_or_fail(o, "registered", cJSON_CreateBool(s->registered));
		rv |= add_or_fail(o, "up", cJSON_CreateBool(s->up));
		rv |= add_or_fail(o, "error", cJSON_CreateString(s->error));
		rv |= add_or_fail(o, "last_ok_ms_ago", age_json(now, s->last_ok_ms));
		rv |= add_or_fail(o, "stale", cJSON_CreateBool(s->stale));
		for (size_t j = 0; j < s->nbreakers && rv == 0; j++) {
			const reg_breaker *b = &s->breakers[j];
			const char *colon = strchr(b->name, ':');
			char caller[sizeof(b->name)];
			cJSON *bo = cJSON_CreateObject();

			/* name is "<caller>:<instance>"; without a colon, the
			 * source is the caller. */
			snprintf(caller, sizeof(caller), "%.*s",
				 colon != NULL ? (int)(colon - b->name) : (int)strlen(s->instance),
				 colon != NULL ? b->name : s->instance);
			if ((rv = append_or_fail(brks, bo)) != 0)
				break;
			rv |= add_or_fail(bo, "name", cJSON_CreateString(b->name));
			rv |= add_or_fail(bo, "caller", cJSON_CreateString(caller));
			rv |= add_or_fail(bo, "instance",
					  cJSON_CreateString(colon != NULL ? colon + 1 : b->name));
			rv |= add_or_fail(bo, "state",
					  cJSON_CreateString(b->state[0] ? b->state : "unknown"));
			rv |=
			    add_or_fail(bo, "failure_rate",
					b->failure_rate < 0 ? cJSON_CreateNull()
							    : cJSON_CreateNumber(b->failure_rate));
			rv |= add_or_fail(bo, "source", cJSON_CreateString(s->instance));
			rv |= add_or_fail(bo, "stale", cJSON_CreateBool(s->stale));
		}
	}
	if (rv != 0)
		goto fail;
	return root;

fail:
	cJSON_Delete(root);
	return NULL;
}

int reg_dashboard_breakers(void *arg, char **body, size_t *len, const char **content_type)
{
	reg_dashboard *d = arg;
	int64_t now;
	cJSON *doc;

	*content_type = "text/plain; charset=utf-8";
	pthread_mutex_lock(&d->mtx);
	now = now_ms();
	d->wanted_ms = now;
	if (d->last_round_ms == 0 || now - d->last_round_ms > 2 * (int64_t)d->cfg.interval_ms) {
		/* The thread was idle: wake it and wait for its round, so that
		 * the first answer after a quiet spell is not an old one. */
		uint64_t round = d->rounds;
		int64_t until = now + d->cfg.timeout_ms + 200;
		struct timespec ts;

		deadline_ts(&ts, until);
		pthread_cond_broadcast(&d->cv);
		while (d->rounds == round && !d->stopping && now_ms() < until)
			pthread_cond_timedwait(&d->cv, &d->mtx, &ts);
		now = now_ms();
	}
	doc = breakers_json(d, now);
	pthread_mutex_unlock(&d->mtx);
	if (doc == NULL || (*body = cJSON_PrintUnformatted(doc)) == NULL) {
		cJSON_Delete(doc);
		return 500;
	}
	cJSON_Delete(doc);
	*len = strlen(*body);
	*content_type = "application/json";
	return 200;
}
