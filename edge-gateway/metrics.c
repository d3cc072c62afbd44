/* metrics.c -- shop_http_requests_total and shop_http_request_duration_seconds,
 * kept in lib/metrics (atomic series, shared latency buckets), rendered
 * together with the process's default registry (upstream calls). */
#include "metrics.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/metrics.h"

/* Series handles of the latest (route, method, status) combinations: the
 * route and method strings are static (gw_metrics_count's contract), so
 * that a hit compares three words instead of hashing and comparing label
 * text. Direct-mapped; a miss looks the series up and takes the slot. */
#define GW_METRICS_CACHE 64

struct series_slot {
	const char *route, *method;
	int status;
	shop_metric *count, *duration;
};

struct gw_metrics {
	shop_metrics *reg; /* this gateway's HTTP families */
	shop_metric_family *requests, *duration;
	struct series_slot cache[GW_METRICS_CACHE]; /* lws thread only */
};

int gw_metrics_create(gw_metrics **out)
{
	gw_metrics *m = calloc(1, sizeof(*m));

	*out = NULL;
	if (m == NULL || shop_metrics_create(&m->reg) != 0)
		goto fail;
	m->requests = shop_metrics_counter(m->reg, "shop_http_requests_total",
					   "HTTP requests answered, by route template, method and "
					   "status code.",
					   "route,method,code");
	m->duration = shop_metrics_histogram(
	    m->reg, "shop_http_request_duration_seconds",
	    "Time from a request's first byte to its answer, by route template.", "route",
	    shop_metrics_seconds_bounds, shop_metrics_seconds_n_bounds);
	if (m->requests == NULL || m->duration == NULL)
		goto fail;
	*out = m;
	return 0;
fail:
	gw_metrics_destroy(m);
	return -1;
}

void gw_metrics_destroy(gw_metrics *m)
{
	if (m == NULL)
		return;
	shop_metrics_destroy(m->reg);
	free(m);
}

void gw_metrics_count(gw_metrics *m, const char *route, const char *method, int status,
		      double seconds)
{
	uintptr_t h = ((uintptr_t)route >> 3) ^ ((uintptr_t)method >> 2) ^ (uintptr_t)status * 31u;
	struct series_slot *c = &m->cache[h % GW_METRICS_CACHE];

	if (c->route != route || c->method != method || c->status != status || c->count == NULL) {
		char code[16];

		snprintf(code, sizeof(code), "%d", status);
		c->route = route;
		c->method = method;
		c->status = status;
		c->count = SHOP_METRIC(m->requests, route, method, code);
		c->duration = SHOP_METRIC(m->duration, route);
	}
	shop_metric_inc(c->count);
	shop_metric_observe(c->duration, seconds);
}

char *gw_metrics_render(const gw_metrics *m, size_t *len)
{
	size_t own_len = 0, lib_len = 0;
	char *own = shop_metrics_render(m->reg, &own_len);
	char *lib = shop_metrics_render(shop_metrics_default(), &lib_len);
	char *all = NULL;

	if (own != NULL && lib != NULL && (all = malloc(own_len + lib_len + 1)) != NULL) {
		memcpy(all, own, own_len);
		memcpy(all + own_len, lib, lib_len);
		all[own_len + lib_len] = '\0';
		*len = own_len + lib_len;
	}
	free(own);
	free(lib);
	return all;
}
