/* admin.c -- the registry's admin HTTP handlers: health, readiness, its
 * metrics, the table as JSON and as Prometheus targets, the dashboard. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "registry.h"

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

int admin_start(shop_admin **out, registry *r, const registry_config *c)
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
