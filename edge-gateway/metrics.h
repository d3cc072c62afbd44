/* metrics.h -- the gateway's request counters, by route template, method
 * and status, in Prometheus text format (lib/metrics.h underneath: no lock
 * on a count). */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stddef.h>

typedef struct gw_metrics gw_metrics;

int gw_metrics_create(gw_metrics **out);
void gw_metrics_destroy(gw_metrics *m); /* accepts NULL */

/* route is a template ("/orders/{id}") or "unmatched", method one of the
 * few the gateway knows: each combination is a series, so never a raw path.
 * Both must be static strings (their addresses key a cache of series
 * handles), and one thread only calls this (the lws service thread). */
void gw_metrics_count(gw_metrics *m, const char *route, const char *method, int status,
		      double seconds);

/* The exposition text: these families, then the process's default
 * registry (lib/metrics.h: upstream calls...). Caller frees with free().
 * NULL when out of memory. */
char *gw_metrics_render(const gw_metrics *m, size_t *len);

#endif
