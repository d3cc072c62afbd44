/* metrics.c -- Prometheus counters, gauges and histograms: atomic values,
 * lock-free series lookup, text format 0.0.4.
 *
 * Hot path: a lookup hashes the label values and walks one of 64
 * prepend-only chains whose heads are published with release stores, so
 * readers never lock; an update is one relaxed fetch-add (a histogram: one
 * on its bucket, plus a compare-and-swap loop on the double sum). The
 * registry's mutex is taken only to register a family, make a series,
 * change the text sources and render. A histogram keeps per-bucket counts,
 * not a separate total: _count is the sum of the buckets read at render, so
 * it always equals the +Inf bucket even while other threads observe. */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

#define FAMILY_HASH 64 /* chains per family: a power of two */
#define CACHE_LINE  64 /* series are aligned to it: no false sharing between two */

const double shop_metrics_seconds_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
					      0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
					      1,      2.5,     5,      10};
const size_t shop_metrics_seconds_n_bounds =
    sizeof(shop_metrics_seconds_bounds) / sizeof(shop_metrics_seconds_bounds[0]);

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } metric_type;

static const char *const type_names[] = {"counter", "gauge", "histogram"};

struct shop_metric {
	shop_metric_family *f;
	shop_metric *hnext;          /* same chain; set before publication, then fixed */
	_Atomic(shop_metric *) next; /* registration order (render) */
	uint64_t hash;
	char *values[SHOP_METRICS_MAX_LABELS];
	_Atomic uint64_t v;         /* counter: the count; gauge: a double's bits */
	_Atomic uint64_t sum;       /* histogram: the sum, a double's bits */
	_Atomic uint64_t buckets[]; /* histogram: n_bounds + 1 (the last is +Inf), not cumulative */
};

struct shop_metric_family {
	shop_metrics *m;
	shop_metric_family *next; /* registration order; m->mtx */
	metric_type type;
	char *name, *help;
	size_t n_labels;
	char *labels[SHOP_METRICS_MAX_LABELS];
	size_t n_bounds;
	double bounds[SHOP_METRICS_MAX_BUCKETS];
	_Atomic(shop_metric *) chains[FAMILY_HASH];
	_Atomic(shop_metric *) first; /* registration order */
	shop_metric *last;            /* m->mtx */
	size_t n_series;              /* m->mtx */
};

typedef struct text_source {
	shop_metrics_text_fn fn;
	void *arg;
} text_source;

struct shop_metrics {
	pthread_mutex_t mtx;
	shop_metric_family *first, *last;
	text_source text[SHOP_METRICS_MAX_TEXT];
	size_t n_text;
};

static shop_metrics default_registry = {.mtx = PTHREAD_MUTEX_INITIALIZER};

shop_metrics *shop_metrics_default(void)
{
	return &default_registry;
}

int shop_metrics_create(shop_metrics **out)
{
	shop_metrics *m = calloc(1, sizeof(*m));

	*out = NULL;
	if (m == NULL)
		return -1;
	if (pthread_mutex_init(&m->mtx, NULL) != 0) {
		free(m);
		return -1;
	}
	*out = m;
	return 0;
}

static void series_free(shop_metric *s)
{
	for (size_t i = 0; i < SHOP_METRICS_MAX_LABELS; i++)
		free(s->values[i]);
	free(s);
}

static void family_free(shop_metric_family *f)
{
	shop_metric *s, *next;

	for (s = atomic_load_explicit(&f->first, memory_order_relaxed); s != NULL; s = next) {
		next = atomic_load_explicit(&s->next, memory_order_relaxed);
		series_free(s);
	}
	for (size_t i = 0; i < SHOP_METRICS_MAX_LABELS; i++)
		free(f->labels[i]);
	free(f->name);
	free(f->help);
	free(f);
}

void shop_metrics_destroy(shop_metrics *m)
{
	shop_metric_family *f, *next;

	if (m == NULL || m == &default_registry)
		return;
	for (f = m->first; f != NULL; f = next) {
		next = f->next;
		family_free(f);
	}
	pthread_mutex_destroy(&m->mtx);
	free(m);
}

/* ---- registration ------------------------------------------------------------ */

static bool name_ok(const char *s, bool colon)
{
	if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || (colon && *s == ':')))
			return false;
	return true;
}

/* Splits "a,b" into f->labels. Returns 0, or -1 on a bad, reserved or
 * repeated name, too many, or no memory. */
static int family_set_labels(shop_metric_family *f, const char *labels)
{
	const char *p = labels, *comma;

	if (labels == NULL || *labels == '\0')
		return 0;
	for (;;) {
		size_t len;
		char *name;

		comma = strchr(p, ',');
		len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (f->n_labels == SHOP_METRICS_MAX_LABELS || (name = strndup(p, len)) == NULL)
			return -1;
		f->labels[f->n_labels++] = name;
		/* "le" names a histogram's buckets; "__" is Prometheus' own. */
		if (!name_ok(name, false) || strncmp(name, "__", 2) == 0 ||
		    (f->type == M_HISTOGRAM && strcmp(name, "le") == 0))
			return -1;
		for (size_t i = 0; i + 1 < f->n_labels; i++)
			if (strcmp(f->labels[i], name) == 0)
				return -1;
		if (comma == NULL)
			return 0;
		p = comma + 1;
	}
}

static bool family_same(const shop_metric_family *a, const shop_metric_family *b)
{
	if (a->type != b->type || a->n_labels != b->n_labels || a->n_bounds != b->n_bounds)
		return false;
	for (size_t i = 0; i < a->n_labels; i++)
		if (strcmp(a->labels[i], b->labels[i]) != 0)
			return false;
	for (size_t i = 0; i < a->n_bounds; i++)
		if (a->bounds[i] != b->bounds[i])
			return false;
	return true;
}

static shop_metric_family *family_register(shop_metrics *m, metric_type type, const char *name,
					   const char *help, const char *labels,
					   const double *bounds, size_t n_bounds)
{
	shop_metric_family *f, *old;

	if (m == NULL || !name_ok(name, true) || n_bounds > SHOP_METRICS_MAX_BUCKETS ||
	    (n_bounds > 0 && bounds == NULL))
		return NULL;
	for (size_t i = 0; i < n_bounds; i++)
		if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
			return NULL;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	f->m = m;
	f->type = type;
	f->n_bounds = n_bounds;
	if (n_bounds > 0)
		memcpy(f->bounds, bounds, n_bounds * sizeof(*bounds));
	if ((f->name = strdup(name)) == NULL || (f->help = strdup(help ? help : "")) == NULL ||
	    family_set_labels(f, labels) != 0)
		goto out_free;

	pthread_mutex_lock(&m->mtx);
	for (old = m->first; old != NULL; old = old->next)
		if (strcmp(old->name, name) == 0)
			break;
	if (old == NULL) {
		if (m->last != NULL)
			m->last->next = f;
		else
			m->first = f;
		m->last = f;
	}
	pthread_mutex_unlock(&m->mtx);
	if (old == NULL)
		return f;
	if (!family_same(old, f))
		old = NULL; /* a clash: one name, two meanings */
	family_free(f);
	return old;

out_free:
	family_free(f);
	return NULL;
}

shop_metric_family *shop_metrics_counter(shop_metrics *m, const char *name, const char *help,
					 const char *labels)
{
	return family_register(m, M_COUNTER, name, help, labels, NULL, 0);
}

shop_metric_family *shop_metrics_gauge(shop_metrics *m, const char *name, const char *help,
				       const char *labels)
{
	return family_register(m, M_GAUGE, name, help, labels, NULL, 0);
}

shop_metric_family *shop_metrics_histogram(shop_metrics *m, const char *name, const char *help,
					   const char *labels, const double *bounds,
					   size_t n_bounds)
{
	return family_register(m, M_HISTOGRAM, name, help, labels, bounds, n_bounds);
}

/* ---- series ------------------------------------------------------------------- */

/* FNV-1a over the values, each ended by a byte no UTF-8 text holds. */
static uint64_t values_hash(const char *const *values, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++) {
		for (const unsigned char *p = (const unsigned char *)values[i]; *p != '\0'; p++)
			h = (h ^ *p) * 1099511628211ULL;
		h = (h ^ 0xff) * 1099511628211ULL;
	}
	return h;
}

static shop_metric *chain_find(shop_metric *s, uint64_t hash, const char *const *values, size_t n)
{
	for (; s != NULL; s = s->hnext) {
		size_t i;

		if (s->hash != hash)
			continue;
		for (i = 0; i < n && strcmp(s->values[i], values[i]) == 0; i++)
			;
		if (i == n)
			return s;
	}
	return NULL;
}

static shop_metric *series_alloc(shop_metric_family *f, uint64_t hash, const char *const *values,
				 size_t n)
{
	size_t size = sizeof(shop_metric);
	shop_metric *s;

	if (f->type == M_HISTOGRAM)
		size += (f->n_bounds + 1) * sizeof(s->buckets[0]);
	size = (size + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
	if ((s = aligned_alloc(CACHE_LINE, size)) == NULL)
		return NULL;
	memset(s, 0, size); /* all-zero bits: 0 and 0.0 */
	s->f = f;
	s->hash = hash;
	for (size_t i = 0; i < n; i++)
		if ((s->values[i] = strdup(values[i])) == NULL) {
			series_free(s);
			return NULL;
		}
	return s;
}

shop_metric *shop_metric_get(shop_metric_family *f, const char *const *values, size_t n)
{
	_Atomic(shop_metric *) *chain;
	shop_metric *s;
	uint64_t hash;

	if (f == NULL || n != f->n_labels || (n > 0 && values == NULL))
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (values[i] == NULL)
			return NULL;
	hash = values_hash(values, n);
	chain = &f->chains[hash & (FAMILY_HASH - 1)];
	if ((s = chain_find(atomic_load_explicit(chain, memory_order_acquire), hash, values, n)) !=
	    NULL)
		return s;

	pthread_mutex_lock(&f->m->mtx);
	/* Another thread may have made it since the look above. */
	s = chain_find(atomic_load_explicit(chain, memory_order_relaxed), hash, values, n);
	if (s == NULL && f->n_series < SHOP_METRICS_MAX_SERIES &&
	    (s = series_alloc(f, hash, values, n)) != NULL) {
		s->hnext = atomic_load_explicit(chain, memory_order_relaxed);
		/* Release: a reader that sees s sees it whole. */
		atomic_store_explicit(chain, s, memory_order_release);
		if (f->last != NULL)
			atomic_store_explicit(&f->last->next, s, memory_order_release);
		else
			atomic_store_explicit(&f->first, s, memory_order_release);
		f->last = s;
		f->n_series++;
	}
	pthread_mutex_unlock(&f->m->mtx);
	return s;
}

/* ---- updates ------------------------------------------------------------------ */

static uint64_t bits_of(double d)
{
	uint64_t u;

	memcpy(&u, &d, sizeof(u));
	return u;
}

static double double_of(uint64_t u)
{
	double d;

	memcpy(&d, &u, sizeof(d));
	return d;
}

/* An atomic double add: retries while another thread changed it between
 * the read and the swap. */
static void atomic_double_add(_Atomic uint64_t *a, double d)
{
	uint64_t old = atomic_load_explicit(a, memory_order_relaxed);

	while (!atomic_compare_exchange_weak_explicit(a, &old, bits_of(double_of(old) + d),
						      memory_order_relaxed, memory_order_relaxed))
		;
}

void shop_metric_add(shop_metric *s, uint64_t n)
{
	if (s != NULL && s->f->type == M_COUNTER)
		atomic_fetch_add_explicit(&s->v, n, memory_order_relaxed);
}

void shop_metric_set(shop_metric *s, double v)
{
	if (s != NULL && s->f->type == M_GAUGE)
		atomic_store_explicit(&s->v, bits_of(v), memory_order_relaxed);
}

void shop_metric_gauge_add(shop_metric *s, double d)
{
	if (s != NULL && s->f->type == M_GAUGE)
		atomic_double_add(&s->v, d);
}

void shop_metric_observe(shop_metric *s, double v)
{
	const shop_metric_family *f;
	size_t i = 0;

	if (s == NULL || s->f->type != M_HISTOGRAM || isnan(v))
		return;
	f = s->f;
	while (i < f->n_bounds && v > f->bounds[i])
		i++;
	atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
	atomic_double_add(&s->sum, v);
}

double shop_metric_value(const shop_metric *s)
{
	uint64_t n = 0;

	if (s == NULL)
		return 0;
	switch (s->f->type) {
	case M_COUNTER:
		return (double)atomic_load_explicit(&s->v, memory_order_relaxed);
	case M_GAUGE:
		return double_of(atomic_load_explicit(&s->v, memory_order_relaxed));
	case M_HISTOGRAM:
		for (size_t i = 0; i <= s->f->n_bounds; i++)
			n += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
		return (double)n;
	}
	return 0;
}

/* ---- text sources ------------------------------------------------------------- */

int shop_metrics_add_text(shop_metrics *m, shop_metrics_text_fn fn, void *arg)
{
	int rv = -1;

	pthread_mutex_lock(&m->mtx);
	if (m->n_text < SHOP_METRICS_MAX_TEXT) {
		m->text[m->n_text++] = (text_source){fn, arg};
		rv = 0;
	}
	pthread_mutex_unlock(&m->mtx);
	return rv;
}

void shop_metrics_remove_text(shop_metrics *m, shop_metrics_text_fn fn, void *arg)
{
	pthread_mutex_lock(&m->mtx);
	for (size_t i = 0; i < m->n_text; i++)
		if (m->text[i].fn == fn && m->text[i].arg == arg) {
			memmove(&m->text[i], &m->text[i + 1],
				(m->n_text - i - 1) * sizeof(m->text[0]));
			m->n_text--;
			break;
		}
	pthread_mutex_unlock(&m->mtx);
}

/* ---- rendering ---------------------------------------------------------------- */

/* The shortest text that reads back as v; Prometheus' spellings of the
 * special values. */
static void fmt_double(char *buf, size_t cap, double v)
{
	if (isnan(v)) {
		snprintf(buf, cap, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, cap, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, cap, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

/* HELP text escapes backslash and newline; a label value also the double
 * quote. */
static void put_escaped(FILE *out, const char *s, bool quote)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			fputs("\\\\", out);
		else if (*s == '\n')
			fputs("\\n", out);
		else if (quote && *s == '"')
			fputs("\\\"", out);
		else
			fputc(*s, out);
	}
}

void shop_metrics_put_label_value(FILE *out, const char *s)
{
	put_escaped(out, s, true);
}

/* name{labels[,le="…"]} — no braces when there is nothing to put in them. */
static void put_series_name(FILE *out, const shop_metric_family *f, const shop_metric *s,
			    const char *suffix, const char *le)
{
	fputs(f->name, out);
	fputs(suffix, out);
	if (f->n_labels == 0 && le == NULL)
		return;
	fputc('{', out);
	for (size_t i = 0; i < f->n_labels; i++) {
		fprintf(out, "%s%s=\"", i > 0 ? "," : "", f->labels[i]);
		shop_metrics_put_label_value(out, s->values[i]);
		fputc('"', out);
	}
	if (le != NULL)
		fprintf(out, "%sle=\"%s\"", f->n_labels > 0 ? "," : "", le);
	fputc('}', out);
}

static void render_histogram(FILE *out, const shop_metric_family *f, const shop_metric *s)
{
	uint64_t counts[SHOP_METRICS_MAX_BUCKETS + 1], cum = 0;
	char num[32];

	/* One pass over the buckets first: every line below derives from
	 * the same reading, so the buckets climb and +Inf equals _count. */
	for (size_t i = 0; i <= f->n_bounds; i++)
		counts[i] = atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
	for (size_t i = 0; i < f->n_bounds; i++) {
		cum += counts[i];
		fmt_double(num, sizeof(num), f->bounds[i]);
		put_series_name(out, f, s, "_bucket", num);
		fprintf(out, " %llu\n", (unsigned long long)cum);
	}
	cum += counts[f->n_bounds];
	put_series_name(out, f, s, "_bucket", "+Inf");
	fprintf(out, " %llu\n", (unsigned long long)cum);
	fmt_double(num, sizeof(num),
		   double_of(atomic_load_explicit(&s->sum, memory_order_relaxed)));
	put_series_name(out, f, s, "_sum", NULL);
	fprintf(out, " %s\n", num);
	put_series_name(out, f, s, "_count", NULL);
	fprintf(out, " %llu\n", (unsigned long long)cum);
}

static void render_family(FILE *out, const shop_metric_family *f)
{
	char num[32];

	fprintf(out, "# HELP %s ", f->name);
	put_escaped(out, f->help, false);
	fprintf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
	for (const shop_metric *s = atomic_load_explicit(&f->first, memory_order_acquire);
	     s != NULL; s = atomic_load_explicit(&s->next, memory_order_acquire)) {
		switch (f->type) {
		case M_COUNTER:
			put_series_name(out, f, s, "", NULL);
			fprintf(
			    out, " %llu\n",
			    (unsigned long long)atomic_load_explicit(&s->v, memory_order_relaxed));
			break;
		case M_GAUGE:
			fmt_double(num, sizeof(num),
				   double_of(atomic_load_explicit(&s->v, memory_order_relaxed)));
			put_series_name(out, f, s, "", NULL);
			fprintf(out, " %s\n", num);
			break;
		case M_HISTOGRAM:
			render_histogram(out, f, s);
			break;
		}
	}
}

char *shop_metrics_render(shop_metrics *m, size_t *len)
{
	char *buf = NULL;
	size_t blen = 0;
	FILE *out;

	if ((out = open_memstream(&buf, &blen)) == NULL)
		return NULL;
	pthread_mutex_lock(&m->mtx);
	for (const shop_metric_family *f = m->first; f != NULL; f = f->next)
		render_family(out, f);
	for (size_t i = 0; i < m->n_text; i++) {
		size_t tlen = 0;
		char *text = m->text[i].fn(m->text[i].arg, &tlen);

		if (text != NULL)
			fwrite(text, 1, tlen, out);
		free(text);
	}
	pthread_mutex_unlock(&m->mtx);
	if (shop_memstream_close(out, &buf) != 0)
		return NULL;
	*len = blen;
	return buf;
}

int shop_metrics_admin(void *arg, char **body, size_t *len, const char **content_type)
{
	shop_metrics *m = arg != NULL ? arg : shop_metrics_default();

	*content_type = SHOP_METRICS_CONTENT_TYPE;
	if ((*body = shop_metrics_render(m, len)) == NULL) {
		*content_type = "text/plain; charset=utf-8";
		return 500;
	}
	return 200;
}
