/* test_dashboard.c -- unit tests of registry/dashboard.c: the
 * SHOP_REGISTRY_SCRAPE_EXTRA check, the page, and /v1/breakers built from
 * stub /metrics servers on loopback (a registered caller and an extra). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <CUnit/Basic.h>
#include <cjson/cJSON.h>

#include "../../lib/clock.h"
#include "../../registry/dashboard.h"
#include "../cunit_main.h"
#include "http_stub.h"

static void test_dashboard_extra_check_accepts_admin_urls(void)
{
	const char *why = "unset";

	CU_ASSERT_EQUAL(reg_dashboard_extra_check(NULL, &why), 0);
	CU_ASSERT_EQUAL(reg_dashboard_extra_check("", &why), 0);
	CU_ASSERT_EQUAL(reg_dashboard_extra_check("gateway=http://127.0.0.1:8080", &why), 0);
	CU_ASSERT_EQUAL(
	    reg_dashboard_extra_check("gw-1=http://127.0.0.1:8080,gw.2=http://[::1]:9/admin", &why),
	    0);
}

static void test_dashboard_extra_check_names_what_is_wrong(void)
{
	static const char *bad[] = {
	    "gateway",
	    "=http://127.0.0.1:8080",
	    "gate way=http://127.0.0.1:8080",
	    "gateway=",
	    "gateway=https://127.0.0.1:8080",
	    "gateway=http://127.0.0.1:8080,",
	    "gateway=http://127.0.0.1:99999",
	    "a=http://h:1,b=http://h:1,c=http://h:1,d=http://h:1,e=http://h:1,f=http://h:1,"
	    "g=http://h:1,h=http://h:1,i=http://h:1,j=http://h:1,k=http://h:1,l=http://h:1,"
	    "m=http://h:1,n=http://h:1,o=http://h:1,p=http://h:1,q=http://h:1",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = NULL;

		CU_ASSERT_EQUAL(reg_dashboard_extra_check(bad[i], &why), -1);
		CU_ASSERT_PTR_NOT_NULL(why);
	}
}

static void test_dashboard_page_is_self_contained_html(void)
{
	const char *ct = NULL;
	char *body = NULL;
	size_t len = 0;

	CU_ASSERT_EQUAL_FATAL(reg_dashboard_page(NULL, &body, &len, &ct), 200);
	CU_ASSERT_STRING_EQUAL(ct, "text/html; charset=utf-8");
	CU_ASSERT_EQUAL(len, strlen(body));
	CU_ASSERT(strncmp(body, "<!doctype html>", 15) == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "/v1/breakers"));
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "/v1/services"));
	/* No external asset: nothing loaded from another origin. */
	CU_ASSERT_PTR_NULL(strstr(body, "src=\"http"));
	CU_ASSERT_PTR_NULL(strstr(body, "href=\"http"));
	CU_ASSERT_PTR_NULL(strstr(body, "innerHTML"));
	free(body);
}

/* ---- /v1/breakers over stub servers ------------------------------------------- */

static const char order_metrics[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\r\n"
    "shop_rpc_client_calls_total{service=\"product\",instance=\"product-a\",outcome=\"ok\"} 3\n"
    "resilience4j_circuitbreaker_state{name=\"order:product-a\",state=\"closed\"} 1\n"
    "resilience4j_circuitbreaker_state{name=\"order:product-a\",state=\"open\"} 0\n"
    "resilience4j_circuitbreaker_failure_rate{name=\"order:product-a\"} 10\n";
static const char gateway_metrics[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 75\r\n\r\n"
    "resilience4j_circuitbreaker_state{name=\"gateway:product-b\",state=\"open\"} 1\n";
static const char broken[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";

typedef struct fake_table {
	shop_instance inst[2];
	size_t n;
} fake_table;

static int fake_list(void *arg, shop_instance **out, size_t *n)
{
	fake_table *t = arg;

	*n = t->n;
	*out = NULL;
	if (t->n == 0)
		return 0;
	if ((*out = malloc(t->n * sizeof(**out))) == NULL)
		return -1;
	memcpy(*out, t->inst, t->n * sizeof(**out));
	return 0;
}

static cJSON *get_breakers(reg_dashboard *d)
{
	const char *ct = NULL;
	char *body = NULL;
	size_t len = 0;
	cJSON *doc;

	CU_ASSERT_EQUAL_FATAL(reg_dashboard_breakers(d, &body, &len, &ct), 200);
	CU_ASSERT_STRING_EQUAL(ct, "application/json");
	doc = cJSON_ParseWithLength(body, len);
	free(body);
	CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
	return doc;
}

static cJSON *find(cJSON *arr, const char *key, const char *value)
{
	cJSON *e;

	cJSON_ArrayForEach(e, arr)
	{
		cJSON *v = cJSON_GetObjectItemCaseSensitive(e, key);

		if (cJSON_IsString(v) && strcmp(v->valuestring, value) == 0)
			return e;
	}
	return NULL;
}

static const char *str(cJSON *o, const char *key)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : "(not a string)";
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void test_dashboard_breakers_reads_registered_and_extra_callers(void)
{
	fake_table t = {.n = 1};
	http_stub order, gateway;
	reg_dashboard *d = NULL;
	char extra[96];
	cJSON *doc, *b, *src, *self;
	int64_t t0;

	CU_ASSERT_FATAL(http_stub_start(&order, order_metrics) == 0);
	CU_ASSERT_FATAL(http_stub_start(&gateway, gateway_metrics) == 0);
	snprintf(t.inst[0].service, sizeof(t.inst[0].service), "order");
	snprintf(t.inst[0].instance, sizeof(t.inst[0].instance), "order");
	snprintf(t.inst[0].admin_url, sizeof(t.inst[0].admin_url), "http://127.0.0.1:%u",
		 order.port);
	snprintf(extra, sizeof(extra), "gateway=http://127.0.0.1:%u", gateway.port);
	reg_dashboard_config cfg = {.self_admin_url = "http://127.0.0.1:7109",
				    .extra = extra,
				    .interval_ms = 50,
				    .timeout_ms = 300,
				    .idle_ms = 10000,
				    .list = fake_list,
				    .list_arg = &t};
	CU_ASSERT_FATAL(reg_dashboard_create(&d, &cfg) == 0);
	/* Idle until asked: nothing read yet. */
	sleep_ms(100);
	CU_ASSERT_EQUAL(http_stub_requests(&order), 0);

	/* The first call waits for a fresh read. */
	doc = get_breakers(d);
	self = cJSON_GetObjectItemCaseSensitive(doc, "self");
	CU_ASSERT_STRING_EQUAL(str(self, "instance"), "registry");
	CU_ASSERT_STRING_EQUAL(str(self, "admin_url"), "http://127.0.0.1:7109");
	CU_ASSERT(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(doc, "scraped_ms_ago")));
	src = find(cJSON_GetObjectItemCaseSensitive(doc, "sources"), "instance", "order");
	CU_ASSERT_PTR_NOT_NULL_FATAL(src);
	CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(src, "registered")));
	CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(src, "up")));
	src = find(cJSON_GetObjectItemCaseSensitive(doc, "sources"), "instance", "gateway");
	CU_ASSERT_PTR_NOT_NULL_FATAL(src);
	CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(src, "registered")));
	CU_ASSERT_STRING_EQUAL(str(src, "service"), "gateway");

	b = find(cJSON_GetObjectItemCaseSensitive(doc, "breakers"), "name", "order:product-a");
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_STRING_EQUAL(str(b, "caller"), "order");
	CU_ASSERT_STRING_EQUAL(str(b, "instance"), "product-a");
	CU_ASSERT_STRING_EQUAL(str(b, "state"), "closed");
	CU_ASSERT_STRING_EQUAL(str(b, "source"), "order");
	CU_ASSERT_DOUBLE_EQUAL(cJSON_GetObjectItemCaseSensitive(b, "failure_rate")->valuedouble, 10,
			       1e-9);
	b = find(cJSON_GetObjectItemCaseSensitive(doc, "breakers"), "name", "gateway:product-b");
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_STRING_EQUAL(str(b, "state"), "open");
	CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(b, "failure_rate")));
	CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(b, "stale")));
	cJSON_Delete(doc);

	/* The order's /metrics fails: its source is down and its breakers
	 * stay, marked stale, until a read succeeds again. */
	http_stub_set(&order, broken);
	t0 = shop_now_mono_us();
	for (;;) {
		doc = get_breakers(d);
		src = find(cJSON_GetObjectItemCaseSensitive(doc, "sources"), "instance", "order");
		if (src != NULL && cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(src, "up")))
			break;
		cJSON_Delete(doc);
		CU_ASSERT_FATAL(shop_now_mono_us() - t0 < 3000000);
		sleep_ms(20);
	}
	CU_ASSERT_STRING_EQUAL(str(src, "error"), "HTTP 500");
	CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(src, "stale")));
	CU_ASSERT(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(src, "last_ok_ms_ago")));
	b = find(cJSON_GetObjectItemCaseSensitive(doc, "breakers"), "name", "order:product-a");
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "stale")));
	cJSON_Delete(doc);

	/* The order leaves the table: it is no longer read. */
	t.n = 0;
	t0 = shop_now_mono_us();
	for (;;) {
		doc = get_breakers(d);
		if (find(cJSON_GetObjectItemCaseSensitive(doc, "sources"), "instance", "order") ==
		    NULL)
			break;
		cJSON_Delete(doc);
		CU_ASSERT_FATAL(shop_now_mono_us() - t0 < 3000000);
		sleep_ms(20);
	}
	CU_ASSERT_PTR_NULL(
	    find(cJSON_GetObjectItemCaseSensitive(doc, "breakers"), "name", "order:product-a"));
	CU_ASSERT_PTR_NOT_NULL(
	    find(cJSON_GetObjectItemCaseSensitive(doc, "breakers"), "name", "gateway:product-b"));
	cJSON_Delete(doc);

	reg_dashboard_destroy(d);
	http_stub_stop(&order);
	http_stub_stop(&gateway);
}

/* Reading stops idle_ms after the last request. */
static void test_dashboard_stops_reading_when_nobody_looks(void)
{
	fake_table t = {.n = 0};
	http_stub gateway;
	reg_dashboard *d = NULL;
	char extra[96];
	int before;

	CU_ASSERT_FATAL(http_stub_start(&gateway, gateway_metrics) == 0);
	snprintf(extra, sizeof(extra), "gateway=http://127.0.0.1:%u", gateway.port);
	reg_dashboard_config cfg = {.self_admin_url = "http://127.0.0.1:7109",
				    .extra = extra,
				    .interval_ms = 20,
				    .timeout_ms = 300,
				    .idle_ms = 100,
				    .list = fake_list,
				    .list_arg = &t};
	CU_ASSERT_FATAL(reg_dashboard_create(&d, &cfg) == 0);
	cJSON_Delete(get_breakers(d));
	sleep_ms(300);
	before = http_stub_requests(&gateway);
	CU_ASSERT(before >= 2);
	sleep_ms(200);
	CU_ASSERT_EQUAL(http_stub_requests(&gateway), before);
	reg_dashboard_destroy(d);
	reg_dashboard_destroy(NULL);
	http_stub_stop(&gateway);
}

SHOP_TEST_MAIN("dashboard",
	       {"extra check accepts admin URLs", test_dashboard_extra_check_accepts_admin_urls},
	       {"extra check names what is wrong", test_dashboard_extra_check_names_what_is_wrong},
	       {"page is self-contained HTML", test_dashboard_page_is_self_contained_html},
	       {"breakers from registered and extra callers",
		test_dashboard_breakers_reads_registered_and_extra_callers},
	       {"stops reading when nobody looks", test_dashboard_stops_reading_when_nobody_looks})
