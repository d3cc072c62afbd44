/* metrics.h -- counters, gauges and histograms rendered in Prometheus text
 * format 0.0.4, cheap enough for every call's hot path.
 *
 * A registry (shop_metrics) holds families: one metric name with its help,
 * type and label names. A family holds series: one value per set of label
 * values. A series is found by a lock-free hash lookup and made on first use
 * under the registry's mutex; none is ever removed, so a shop_metric pointer
 * stays valid for the registry's lifetime and may be kept. Values are C11
 * atomics changed with relaxed read-modify-writes: no increment takes a lock
 * or allocates.
 *
 * Every operation on a series accepts NULL and then does nothing, so a call
 * site need not check the lookup (a full family or no memory costs the
 * sample, never the call). Label values are copied; keep their number
 * bounded (route templates, method names, status codes: never a raw path
 * or anything a client chooses). */
#ifndef SHOP_METRICS_H
#define SHOP_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct shop_metrics shop_metrics;
typedef struct shop_metric_family shop_metric_family;
typedef struct shop_metric shop_metric;

#define SHOP_METRICS_MAX_LABELS  4    /* label names per family */
#define SHOP_METRICS_MAX_BUCKETS 32   /* histogram bounds per family */
#define SHOP_METRICS_MAX_SERIES  1024 /* series per family; lookups past it give NULL */
#define SHOP_METRICS_MAX_TEXT    8    /* text sources per registry */

/* Seconds, from 100 µs (an RPC answered from memory) to 10 s (a slow HTTP
 * call at its deadline): the bounds of every latency histogram of shop. */
extern const double shop_metrics_seconds_bounds[];
extern const size_t shop_metrics_seconds_n_bounds;

int shop_metrics_create(shop_metrics **out); /* 0, or -1 when out of memory */
/* Frees the registry, its families and series (every pointer into it dies).
 * Accepts NULL. Must not be called on shop_metrics_default(). */
void shop_metrics_destroy(shop_metrics *m);

/* The process-wide registry that lib/ (RPC server, upstream calls) and the
 * processes record into; lives until exit. */
shop_metrics *shop_metrics_default(void);

/* Registers a family, or returns the one of that name when it has the same
 * type, label names (and bounds). labels: comma-separated label names
 * ("method,code"), "" or NULL for none. bounds: strictly increasing, finite,
 * at most SHOP_METRICS_MAX_BUCKETS (the +Inf bucket is implied). Names are
 * copied. Returns NULL on a bad name, a clash with an existing family or no
 * memory. Borrowed: lives as long as m. Takes the registry's mutex: call at
 * start-up or once per site (pthread_once), not per sample. */
shop_metric_family *shop_metrics_counter(shop_metrics *m, const char *name, const char *help,
					 const char *labels);
shop_metric_family *shop_metrics_gauge(shop_metrics *m, const char *name, const char *help,
				       const char *labels);
shop_metric_family *shop_metrics_histogram(shop_metrics *m, const char *name, const char *help,
					   const char *labels, const double *bounds,
					   size_t n_bounds);

/* The series of f with these label values (n of them, as many as f has
 * label names), made on first use. Lock-free when it exists. NULL when f is
 * NULL, n is wrong, a value is NULL, the family is full or out of memory. */
shop_metric *shop_metric_get(shop_metric_family *f, const char *const *values, size_t n);

/* shop_metric_get with the values inline: SHOP_METRIC(f, method, code). */
#define SHOP_METRIC(f, ...)                                                                        \
	shop_metric_get((f), (const char *const[]){__VA_ARGS__},                                   \
			sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

/* Counters: add n. Ignored on another type. */
void shop_metric_add(shop_metric *s, uint64_t n);
static inline void shop_metric_inc(shop_metric *s)
{
	shop_metric_add(s, 1);
}
/* Gauges: set to v, or add d (may be negative). Ignored on another type. */
void shop_metric_set(shop_metric *s, double v);
void shop_metric_gauge_add(shop_metric *s, double d);
/* Histograms: one observation of v (a NaN is ignored). */
void shop_metric_observe(shop_metric *s, double v);

/* Reads a series back (tests, health): a counter's count, a gauge's value,
 * a histogram's number of observations. 0 for NULL. */
double shop_metric_value(const shop_metric *s);

/* Text that a part of the process renders itself (a caller's breakers):
 * returns complete families in text format 0.0.4, malloc'd (the registry
 * frees it), or NULL when it has nothing or no memory. Called by
 * shop_metrics_render under the registry's mutex: it must not register
 * families in the same registry. */
typedef char *(*shop_metrics_text_fn)(void *arg, size_t *len);

/* Adds or removes a text source. After remove returns, fn is not running
 * and will not run for this registry. add: 0, or -1 when full. */
int shop_metrics_add_text(shop_metrics *m, shop_metrics_text_fn fn, void *arg);
void shop_metrics_remove_text(shop_metrics *m, shop_metrics_text_fn fn, void *arg);

/* The exposition: every family in registration order (HELP, TYPE, its
 * series; histograms with cumulative _bucket lines ending at le="+Inf",
 * then _sum and _count), then the text sources. Malloc'd, caller frees;
 * NULL when out of memory. A family with no series yet shows only its HELP
 * and TYPE lines. */
char *shop_metrics_render(shop_metrics *m, size_t *len);

/* An admin HTTP handler (shop_admin_fn) serving shop_metrics_render of arg
 * (a shop_metrics *; NULL means the default registry). */
int shop_metrics_admin(void *arg, char **body, size_t *len, const char **content_type);

/* Writes s as a label value's text between its double quotes, escaped as
 * text format 0.0.4 wants (backslash, double quote, line feed): the one
 * escaping of every label value printed, here and by the text sources. */
void shop_metrics_put_label_value(FILE *out, const char *s);

/* The content type of the exposition. */
#define SHOP_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
