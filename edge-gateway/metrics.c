/* metrics.c -- shop_http_requests_total and shop_http_request_duration_seconds. */
#include "metrics.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_BOUNDS   (sizeof(bounds) / sizeof(bounds[0]))
#define MAX_SERIES 256
#define MAX_ROUTES 32

typedef struct series {
	const char *route, *method;
	int status;
	uint64_t count;
} series;

typedef struct histo {
	const char *route;
	uint64_t buckets[N_BOUNDS]; /* cumulative at render time only */
	uint64_t count;
	double sum;
} histo;

struct gw_metrics {
	series s[MAX_SERIES];
	size_t n;
	uint64_t dropped; /* series beyond MAX_SERIES (cannot happen with a static table) */
	histo h[MAX_ROUTES];
	size_t nh;
};

int gw_metrics_create(gw_metrics **out)
{
	*out = calloc(1, sizeof(**out));
	return *out != NULL ? 0 : -1;
}

void gw_metrics_destroy(gw_metrics *m)
{
	free(m);
}

void gw_metrics_count(gw_metrics *m, const char *route, const char *method, int status,
		      double seconds)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		if (m->s[i].status == status && strcmp(m->s[i].route, route) == 0 &&
		    strcmp(m->s[i].method, method) == 0)
			break;
	if (i == m->n) {
		if (m->n == MAX_SERIES) {
			m->dropped++;
			goto histogram;
		}
		m->s[m->n++] = (series){.route = route, .method = method, .status = status};
	}
	m->s[i].count++;
histogram:
	for (i = 0; i < m->nh; i++)
		if (strcmp(m->h[i].route, route) == 0)
			break;
	if (i == m->nh) {
		if (m->nh == MAX_ROUTES)
			return;
		m->h[m->nh++] = (histo){.route = route};
	}
	for (size_t b = 0; b < N_BOUNDS; b++)
		if (seconds <= bounds[b]) {
			m->h[i].buckets[b]++;
			break;
		}
	m->h[i].count++;
	m->h[i].sum += seconds;
}

char *gw_metrics_render(const gw_metrics *m, size_t *len)
{
	size_t cap = 1024 + m->n * 160 + m->nh * (N_BOUNDS + 3) * 120, o = 0;
	char *buf = malloc(cap);

	if (buf == NULL)
		return NULL;
#define OUT(...) o += (size_t)snprintf(buf + o, cap - o, __VA_ARGS__)
	OUT("# HELP shop_http_requests_total HTTP requests answered, by route template.\n"
	    "# TYPE shop_http_requests_total counter\n");
	for (size_t i = 0; i < m->n && o < cap; i++)
		OUT("shop_http_requests_total{route=\"%s\",method=\"%s\",code=\"%d\"} %llu\n",
		    m->s[i].route, m->s[i].method, m->s[i].status,
		    (unsigned long long)m->s[i].count);
	OUT("# HELP shop_http_request_duration_seconds Time to answer, by route template.\n"
	    "# TYPE shop_http_request_duration_seconds histogram\n");
	for (size_t i = 0; i < m->nh && o < cap; i++) {
		uint64_t cum = 0;

		for (size_t b = 0; b < N_BOUNDS && o < cap; b++) {
			cum += m->h[i].buckets[b];
			OUT("shop_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
			    "%llu\n",
			    m->h[i].route, bounds[b], (unsigned long long)cum);
		}
		OUT("shop_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
		    "shop_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
		    "shop_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
		    m->h[i].route, (unsigned long long)m->h[i].count, m->h[i].route, m->h[i].sum,
		    m->h[i].route, (unsigned long long)m->h[i].count);
	}
#undef OUT
	if (o >= cap)
		o = cap - 1; /* cannot happen: cap is sized for every line */
	*len = o;
	return buf;
}
