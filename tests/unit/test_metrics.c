/* test_metrics.c -- lib/metrics.c: the text format, label escaping,
 * histogram buckets, registration rules and exact totals under threads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cunit_main.h"
#include "metrics.h"

/* The rendered text of m; the test frees it. */
static char *render(shop_metrics *m)
{
	size_t len = 0;
	char *text = shop_metrics_render(m, &len);

	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_EQUAL(strlen(text), len);
	return text;
}

static void assert_has(const char *text, const char *want)
{
	if (strstr(text, want) == NULL)
		fprintf(stderr, "\nmissing:\n%s\nin:\n%s\n", want, text);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
}

static void test_counter_has_help_type_and_labels(void)
{
	shop_metrics *m;
	shop_metric_family *f;
	char *text;

	CU_ASSERT_FATAL(shop_metrics_create(&m) == 0);
	f = shop_metrics_counter(m, "shop_rpc_server_handled_total", "RPCs answered.",
				 "method,code");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	shop_metric_inc(SHOP_METRIC(f, "/shop.v1.ProductService/GetProduct", "OK"));
	shop_metric_add(SHOP_METRIC(f, "/shop.v1.ProductService/GetProduct", "OK"), 2);
	shop_metric_inc(SHOP_METRIC(f, "/shop.v1.ProductService/GetProduct", "NOT_FOUND"));
	text = render(m);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "# HELP shop_rpc_server_handled_total RPCs answered.\n"
					    "# TYPE shop_rpc_server_handled_total counter\n"));
	assert_has(text, "shop_rpc_server_handled_total{method=\"/shop.v1.ProductService/"
			 "GetProduct\",code=\"OK\"} 3\n");
	assert_has(text, "shop_rpc_server_handled_total{method=\"/shop.v1.ProductService/"
			 "GetProduct\",code=\"NOT_FOUND\"} 1\n");
	/* Every line ends with a newline, the last one included. */
	CU_ASSERT_EQUAL(text[strlen(text) - 1], '\n');
	free(text);
	shop_metrics_destroy(m);
}

static void test_same_labels_find_the_same_series(void)
{
	shop_metrics *m;
	shop_metric_family *f;
	shop_metric *a, *b, *c;

	CU_ASSERT_FATAL(shop_metrics_create(&m) == 0);
	f = shop_metrics_counter(m, "x_total", "x", "a,b");
	a = SHOP_METRIC(f, "1", "2");
	b = SHOP_METRIC(f, "1", "2");
	/* "1","2" and "12","" must not be one series. */
	c = SHOP_METRIC(f, "12", "");
	CU_ASSERT_PTR_NOT_NULL(a);
	CU_ASSERT_PTR_EQUAL(a, b);
	CU_ASSERT_PTR_NOT_EQUAL(a, c);
	/* Wrong number of values, a NULL value: no series. */
	CU_ASSERT_PTR_NULL(SHOP_METRIC(f, "1"));
	CU_ASSERT_PTR_NULL(SHOP_METRIC(f, "1", NULL));
	shop_metric_inc(NULL); /* harmless */
	shop_metrics_destroy(m);
}

static void test_label_values_are_escaped(void)
{
	shop_metrics *m;
	shop_metric_family *f;
	char *text;

	CU_ASSERT_FATAL(shop_metrics_create(&m) == 0);
	f = shop_metrics_gauge(m, "g", "line one\nback\\slash \"quoted\"", "v");
	shop_metric_set(SHOP_METRIC(f, "a\"b\\c\nd"), 1.5);
	text = render(m);
	/* HELP escapes backslash and newline but not the quote. */
	assert_has(text, "# HELP g line one\\nback\\\\slash \"quoted\"\n");
	assert_has(text, "# TYPE g gauge\n");
	assert_has(text, "g{v=\"a\\\"b\\\\c\\nd\"} 1.5\n");
	free(text);
	shop_metrics_destroy(m);
}

static void test_gauge_special_values_and_no_labels(void)
{
	shop_metrics *m;
	shop_metric_family *f;
	shop_metric *s;
	char *text;

	CU_ASSERT_FATAL(shop_metrics_create(&m) == 0);
	f = shop_metrics_gauge(m, "up_like", "no labels", NULL);
	s = shop_metric_get(f, NULL, 0);
	shop_metric_set(s, 3);
	shop_metric_gauge_add(s, -0.25);
	CU_ASSERT_DOUBLE_EQUAL(shop_metric_value(s), 2.75, 1e-12);
	text = render(m);
	assert_has(text, "\nup_like 2.75\n");
	free(text);
	shop_metric_set(s, 1.0 / 0.0);
	text = render(m);
	assert_has(text, "\nup_like +Inf\n");
	free(text);
	shop_metrics_destroy(m);
}

static void test_histogram_buckets_are_cumulative(void)
{
	static const double bounds[] = {0.001, 0.01, 0.1};
	shop_metrics *m;
	shop_metric_family *f;
	shop_metric *s;
	char *text;

	CU_ASSERT_FATAL(shop_metrics_create(&m) == 0);
	f = shop_metrics_histogram(m, "rpc_seconds", "time", "method", bounds, 3);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	s = SHOP_METRIC(f, "Get");
	shop_metric_observe(s, 0.0005);    /* ≤ 0.001 */
	shop_metric_observe(s, 0.001);     /* a bound is its own bucket's (le: less or equal) */
	shop_metric_observe(s, 0.05);      /* ≤ 0.1 */
	shop_metric_observe(s, 7);         /* +Inf only */
	shop_metric_observe(s, 0.0 / 0.0); /* NaN: ignored */
	text = render(m);
	assert_has(text, "# TYPE rpc_seconds histogram\n"
			 "rpc_seconds_bucket{method=\"Get\",le=\"0.001\"} 2\n"
			 "rpc_seconds_bucket{method=\"Get\",le=\"0.01\"} 2\n"
			 "rpc_seconds_bucket{method=\"Get\",le=\"0.1\"} 3\n"
			 "rpc_seconds_bucket{method=\"Get\",le=\"+Inf\"} 4\n"
			 "rpc_seconds_sum{method=\"Get\"} 7.0515\n"
			 "rpc_seconds_count{method=\"Get\"} 4\n");
	CU_ASSERT_DOUBLE_EQUAL(shop_metric_value(s), 4, 0);
	free(text);
	shop_metrics_destroy(m);
}

static void test_histogram_without_labels_has_only_le(void)
{
	shop_metrics *m;
	shop_metric_family *f;
	char *text;

	CU_ASSERT_FATAL(shop_metrics_create(&m) == 0);
	f = shop_metrics_histogram(m, "h", "h", "", shop_metrics_seconds_bounds,
				   shop_metrics_seconds_n_bounds);
	shop_metric_observe(shop_metric_get(f, NULL, 0), 0.0003);
	text = render(m);
	/* The shortest spelling of each bound, not 0.00010000000000000000479. */
	assert_has(text, "h_bucket{le=\"0.0001\"} 0\nh_bucket{le=\"0.00025\"} 0\n"
			 "h_bucket{le=\"0.0005\"} 1\n");
	assert_has(text,
		   "h_bucket{le=\"10\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.0003\nh_count 1\n");
	free(text);
	shop_metrics_destroy(m);
}

static void test_registration_rules(void)
{
	static const double bad[] = {0.1, 0.1};
	shop_metrics *m;
	shop_metric_family *f;

	CU_ASSERT_FATAL(shop_metrics_create(&m) == 0);
	f = shop_metrics_counter(m, "c_total", "c", "a,b");
	/* The same again is the same family; another meaning is refused. */
	CU_ASSERT_PTR_EQUAL(shop_metrics_counter(m, "c_total", "other help", "a,b"), f);
	CU_ASSERT_PTR_NULL(shop_metrics_counter(m, "c_total", "c", "a"));
	CU_ASSERT_PTR_NULL(shop_metrics_gauge(m, "c_total", "c", "a,b"));
	/* Bad names. */
	CU_ASSERT_PTR_NULL(shop_metrics_counter(m, "1abc", "x", NULL));
	CU_ASSERT_PTR_NULL(shop_metrics_counter(m, "a-b", "x", NULL));
	CU_ASSERT_PTR_NULL(shop_metrics_counter(m, "ok", "x", "a,a"));
	CU_ASSERT_PTR_NULL(shop_metrics_counter(m, "ok", "x", "__a"));
	CU_ASSERT_PTR_NULL(shop_metrics_counter(m, "ok", "x", "a,"));
	CU_ASSERT_PTR_NULL(shop_metrics_counter(m, "ok", "x", "a,b,c,d,e"));
	CU_ASSERT_PTR_NULL(shop_metrics_histogram(m, "hh", "x", "le", NULL, 0));
	CU_ASSERT_PTR_NULL(shop_metrics_histogram(m, "hh", "x", "a", bad, 2));
	/* A counter ignores gauge and histogram operations. */
	shop_metric_set(SHOP_METRIC(f, "x", "y"), 5);
	shop_metric_observe(SHOP_METRIC(f, "x", "y"), 5);
	CU_ASSERT_DOUBLE_EQUAL(shop_metric_value(SHOP_METRIC(f, "x", "y")), 0, 0);
	shop_metrics_destroy(m);
}

static void test_family_is_capped(void)
{
	shop_metrics *m;
	shop_metric_family *f;
	char v[16];
	int made = 0;

	CU_ASSERT_FATAL(shop_metrics_create(&m) == 0);
	f = shop_metrics_counter(m, "many_total", "x", "v");
	for (int i = 0; i < SHOP_METRICS_MAX_SERIES + 10; i++) {
		snprintf(v, sizeof(v), "%d", i);
		made += SHOP_METRIC(f, v) != NULL;
	}
	CU_ASSERT_EQUAL(made, SHOP_METRICS_MAX_SERIES);
	/* The ones made are still found. */
	CU_ASSERT_PTR_NOT_NULL(SHOP_METRIC(f, "0"));
	shop_metrics_destroy(m);
}

static char *text_source(void *arg, size_t *len)
{
	char *s = strdup(arg);

	if (s != NULL)
		*len = strlen(s);
	return s;
}

static void test_text_sources_follow_the_families(void)
{
	shop_metrics *m;
	char *text;
	char src[] = "# TYPE extra gauge\nextra 1\n";

	CU_ASSERT_FATAL(shop_metrics_create(&m) == 0);
	shop_metric_inc(shop_metric_get(shop_metrics_counter(m, "a_total", "a", NULL), NULL, 0));
	CU_ASSERT(shop_metrics_add_text(m, text_source, src) == 0);
	text = render(m);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "a_total 1\n# TYPE extra gauge\nextra 1\n"));
	free(text);
	shop_metrics_remove_text(m, text_source, src);
	text = render(m);
	CU_ASSERT_PTR_NULL(strstr(text, "extra"));
	free(text);
	shop_metrics_destroy(m);
}

/* ---- threads ------------------------------------------------------------------ */

#define THREADS    8
#define PER_THREAD 100000

typedef struct worker_arg {
	shop_metric_family *c, *h;
	int index;
} worker_arg;

/* Each thread looks its series up every time (the lookup races the
 * creation of the others) and adds to two shared ones and one of its own. */
static void *worker(void *p)
{
	worker_arg *a = p;
	char own[16];

	snprintf(own, sizeof(own), "t%d", a->index);
	for (int i = 0; i < PER_THREAD; i++) {
		shop_metric_inc(SHOP_METRIC(a->c, "shared"));
		shop_metric_inc(SHOP_METRIC(a->c, own));
		shop_metric_observe(SHOP_METRIC(a->h, "shared"), (i % 4) == 0 ? 0.5 : 0.25);
	}
	return NULL;
}

static void test_threads_give_exact_totals(void)
{
	static const double bounds[] = {0.3};
	pthread_t tid[THREADS];
	worker_arg args[THREADS];
	shop_metrics *m;
	shop_metric_family *c, *h;
	char *text, want[128];

	CU_ASSERT_FATAL(shop_metrics_create(&m) == 0);
	c = shop_metrics_counter(m, "n_total", "n", "who");
	h = shop_metrics_histogram(m, "d", "d", "who", bounds, 1);
	for (int i = 0; i < THREADS; i++) {
		args[i] = (worker_arg){c, h, i};
		CU_ASSERT_FATAL(pthread_create(&tid[i], NULL, worker, &args[i]) == 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(tid[i], NULL);
	CU_ASSERT_DOUBLE_EQUAL(shop_metric_value(SHOP_METRIC(c, "shared")),
			       (double)THREADS * PER_THREAD, 0);
	for (int i = 0; i < THREADS; i++) {
		char own[16];

		snprintf(own, sizeof(own), "t%d", i);
		CU_ASSERT_DOUBLE_EQUAL(shop_metric_value(SHOP_METRIC(c, own)), PER_THREAD, 0);
	}
	text = render(m);
	snprintf(want, sizeof(want), "n_total{who=\"shared\"} %d\n", THREADS * PER_THREAD);
	assert_has(text, want);
	/* 3 in 4 observations are 0.25 (≤ 0.3), 1 in 4 are 0.5; the sum of
	 * quarters and halves is exact in binary. */
	snprintf(want, sizeof(want), "d_bucket{who=\"shared\",le=\"0.3\"} %d\n",
		 THREADS * PER_THREAD / 4 * 3);
	assert_has(text, want);
	snprintf(want, sizeof(want), "d_bucket{who=\"shared\",le=\"+Inf\"} %d\n",
		 THREADS * PER_THREAD);
	assert_has(text, want);
	snprintf(want, sizeof(want), "d_sum{who=\"shared\"} %d\n",
		 THREADS * PER_THREAD / 4 * 3 / 4 + THREADS * PER_THREAD / 4 / 2);
	assert_has(text, want);
	free(text);
	shop_metrics_destroy(m);
}

static void test_default_registry_is_shared(void)
{
	shop_metric_family *a =
	    shop_metrics_counter(shop_metrics_default(), "test_default_total", "x", "k");
	shop_metric_family *b =
	    shop_metrics_counter(shop_metrics_default(), "test_default_total", "x", "k");
	char *body = NULL;
	const char *ct = NULL;
	size_t len = 0;

	CU_ASSERT_PTR_NOT_NULL(a);
	CU_ASSERT_PTR_EQUAL(a, b);
	shop_metric_inc(SHOP_METRIC(a, "v"));
	CU_ASSERT_EQUAL(shop_metrics_admin(NULL, &body, &len, &ct), 200);
	CU_ASSERT_STRING_EQUAL(ct, "text/plain; version=0.0.4; charset=utf-8");
	CU_ASSERT_PTR_NOT_NULL(body != NULL ? strstr(body, "test_default_total{k=\"v\"} 1\n")
					    : NULL);
	free(body);
	shop_metrics_destroy(shop_metrics_default()); /* refused: it lives on */
	CU_ASSERT_PTR_EQUAL(
	    shop_metrics_counter(shop_metrics_default(), "test_default_total", "x", "k"), a);
}

SHOP_TEST_MAIN("metrics",
	       {"counter has HELP, TYPE and labels", test_counter_has_help_type_and_labels},
	       {"same labels find the same series", test_same_labels_find_the_same_series},
	       {"label values are escaped", test_label_values_are_escaped},
	       {"gauge special values and no labels", test_gauge_special_values_and_no_labels},
	       {"histogram buckets are cumulative", test_histogram_buckets_are_cumulative},
	       {"histogram without labels has only le", test_histogram_without_labels_has_only_le},
	       {"registration rules", test_registration_rules},
	       {"family is capped", test_family_is_capped},
	       {"text sources follow the families", test_text_sources_follow_the_families},
	       {"threads give exact totals", test_threads_give_exact_totals},
	       {"default registry is shared", test_default_registry_is_shared})
