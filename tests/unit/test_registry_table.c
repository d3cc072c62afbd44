/* test_registry_table.c -- unit tests of registry/registry_table.c: joins,
 * revisions, pipe closes, missed surveys and the JSON views (clock
 * injected, no sockets, no sleeps). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <cjson/cJSON.h>

#include "../../registry/registry_table.h"

typedef struct events {
	int joins, updates, leaves;
	reg_leave_reason last_why;
	char last_instance[64];
} events;

static void record(void *arg, reg_event ev, reg_leave_reason why, const shop_instance *in)
{
	events *e = arg;

	if (ev == REG_EV_JOIN)
		e->joins++;
	else if (ev == REG_EV_UPDATE)
		e->updates++;
	else
		e->leaves++;
	e->last_why = why;
	snprintf(e->last_instance, sizeof(e->last_instance), "%s", in->instance);
}

static shop_instance mk(const char *service, const char *instance, const char *admin_url,
			uint32_t weight)
{
	shop_instance in;

	memset(&in, 0, sizeof(in));
	snprintf(in.service, sizeof(in.service), "%s", service);
	snprintf(in.instance, sizeof(in.instance), "%s", instance);
	snprintf(in.rpc_url, sizeof(in.rpc_url), "tcp://127.0.0.1:7%03u", weight);
	snprintf(in.admin_url, sizeof(in.admin_url), "%s", admin_url);
	snprintf(in.version, sizeof(in.version), "0.1.0");
	in.weight = weight;
	in.healthy = true;
	in.started_unix_ms = 1700000000000;
	return in;
}

/* A table with pipes 1..4 open. */
static reg_table *mk_table(int misses, events *ev)
{
	reg_table *t = NULL;

	memset(ev, 0, sizeof(*ev));
	CU_ASSERT_FATAL(reg_table_create(&t, misses, record, ev) == 0);
	for (uint32_t p = 1; p <= 4; p++)
		CU_ASSERT_FATAL(reg_table_pipe_add(t, p) == 0);
	return t;
}

static void test_table_join_bumps_revision(void)
{
	shop_instance a = mk("product", "product-a", "http://127.0.0.1:7311", 70);
	events ev;
	reg_table *t = mk_table(3, &ev);

	CU_ASSERT_EQUAL(reg_table_revision(t), 1);
	CU_ASSERT_EQUAL(reg_table_upsert(t, &a, 1, 1000), REG_UPSERT_JOINED);
	CU_ASSERT_EQUAL(reg_table_revision(t), 2);
	CU_ASSERT_EQUAL(reg_table_count(t), 1);
	CU_ASSERT_EQUAL(ev.joins, 1);
	CU_ASSERT_STRING_EQUAL(ev.last_instance, "product-a");
	reg_table_destroy(t);
}

static void test_table_reanswer_keeps_revision(void)
{
	shop_instance a = mk("product", "product-a", "http://127.0.0.1:7311", 70);
	events ev;
	reg_table *t = mk_table(3, &ev);

	reg_table_upsert(t, &a, 1, 1000);
	for (int i = 0; i < 5; i++) {
		reg_table_survey_begin(t);
		CU_ASSERT_EQUAL(reg_table_upsert(t, &a, 1, 1500 + i * 500), REG_UPSERT_UNCHANGED);
	}
	CU_ASSERT_EQUAL(reg_table_revision(t), 2);
	CU_ASSERT_EQUAL(ev.joins, 1);
	CU_ASSERT_EQUAL(ev.updates, 0);
	reg_table_destroy(t);
}

static void test_table_changed_weight_bumps_revision(void)
{
	shop_instance a = mk("product", "product-a", "http://127.0.0.1:7311", 70);
	events ev;
	reg_table *t = mk_table(3, &ev);
	shop_instance *got = NULL;
	uint64_t rev;
	size_t n;

	reg_table_upsert(t, &a, 1, 1000);
	a.weight = 50;
	CU_ASSERT_EQUAL(reg_table_upsert(t, &a, 1, 1500), REG_UPSERT_UPDATED);
	CU_ASSERT_EQUAL(reg_table_revision(t), 3);
	CU_ASSERT_EQUAL(ev.updates, 1);
	a.healthy = false;
	CU_ASSERT_EQUAL(reg_table_upsert(t, &a, 1, 2000), REG_UPSERT_UPDATED);
	CU_ASSERT_EQUAL(reg_table_revision(t), 4);
	CU_ASSERT_EQUAL(reg_table_count(t), 1);
	CU_ASSERT_FATAL(reg_table_lookup(t, "product", &got, &n, &rev) == 0);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_EQUAL(got[0].weight, 50);
	CU_ASSERT_FALSE(got[0].healthy);
	CU_ASSERT_EQUAL(rev, 4);
	free(got);
	reg_table_destroy(t);
}

static void test_table_pipe_close_drops_at_once(void)
{
	shop_instance a = mk("product", "product-a", "http://127.0.0.1:7311", 70);
	shop_instance b = mk("product", "product-b", "http://127.0.0.1:7312", 30);
	events ev;
	reg_table *t = mk_table(3, &ev);

	reg_table_upsert(t, &a, 1, 1000);
	reg_table_upsert(t, &b, 2, 1000);
	CU_ASSERT_EQUAL(reg_table_revision(t), 3);
	CU_ASSERT_EQUAL(reg_table_pipe_remove(t, 1), 1);
	CU_ASSERT_EQUAL(reg_table_count(t), 1);
	CU_ASSERT_EQUAL(reg_table_revision(t), 4);
	CU_ASSERT_EQUAL(ev.leaves, 1);
	CU_ASSERT_EQUAL(ev.last_why, REG_LEAVE_PIPE_CLOSED);
	CU_ASSERT_STRING_EQUAL(ev.last_instance, "product-a");
	/* A pipe with nobody on it: nothing changes. */
	CU_ASSERT_EQUAL(reg_table_pipe_remove(t, 3), 0);
	CU_ASSERT_EQUAL(reg_table_revision(t), 4);
	reg_table_destroy(t);
}

static void test_table_ignores_answer_from_closed_pipe(void)
{
	shop_instance a = mk("product", "product-a", "http://127.0.0.1:7311", 70);
	events ev;
	reg_table *t = mk_table(3, &ev);

	reg_table_upsert(t, &a, 1, 1000);
	reg_table_pipe_remove(t, 1);
	/* Read from the socket just before the close event was handled. */
	CU_ASSERT_EQUAL(reg_table_upsert(t, &a, 1, 1001), REG_UPSERT_IGNORED);
	CU_ASSERT_EQUAL(reg_table_upsert(t, &a, 99, 1001), REG_UPSERT_IGNORED);
	CU_ASSERT_EQUAL(reg_table_count(t), 0);
	/* The same instance back through a new connection joins again. */
	CU_ASSERT_EQUAL(reg_table_upsert(t, &a, 2, 1002), REG_UPSERT_JOINED);
	reg_table_destroy(t);
}

static void test_table_moved_instance_follows_new_pipe(void)
{
	shop_instance a = mk("product", "product-a", "http://127.0.0.1:7311", 70);
	events ev;
	reg_table *t = mk_table(3, &ev);

	reg_table_upsert(t, &a, 1, 1000);
	CU_ASSERT_EQUAL(reg_table_upsert(t, &a, 2, 1100), REG_UPSERT_UNCHANGED);
	/* The old connection closing no longer concerns it. */
	CU_ASSERT_EQUAL(reg_table_pipe_remove(t, 1), 0);
	CU_ASSERT_EQUAL(reg_table_count(t), 1);
	CU_ASSERT_EQUAL(reg_table_pipe_remove(t, 2), 1);
	CU_ASSERT_EQUAL(reg_table_count(t), 0);
	reg_table_destroy(t);
}

static void test_table_misses_drop_after_n_surveys(void)
{
	shop_instance a = mk("product", "product-a", "http://127.0.0.1:7311", 70);
	shop_instance b = mk("product", "product-b", "http://127.0.0.1:7312", 30);
	events ev;
	reg_table *t = mk_table(3, &ev);
	int64_t now = 0;

	/* Survey 1: both answer. */
	reg_table_survey_begin(t);
	reg_table_upsert(t, &a, 1, now);
	reg_table_upsert(t, &b, 2, now);
	/* Surveys 2..4: only b answers; a misses 2, 3 and 4. */
	for (int s = 2; s <= 4; s++) {
		now += 500;
		CU_ASSERT_EQUAL(reg_table_survey_begin(t), 0);
		CU_ASSERT_EQUAL(reg_table_count(t), 2);
		reg_table_upsert(t, &b, 2, now);
	}
	/* Survey 5 starts: survey 4 is over, a has missed 3 in a row. */
	CU_ASSERT_EQUAL(reg_table_survey_begin(t), 1);
	CU_ASSERT_EQUAL(reg_table_count(t), 1);
	CU_ASSERT_EQUAL(ev.leaves, 1);
	CU_ASSERT_EQUAL(ev.last_why, REG_LEAVE_MISSES);
	CU_ASSERT_STRING_EQUAL(ev.last_instance, "product-a");
	reg_table_destroy(t);
}

static void test_table_answer_resets_misses(void)
{
	shop_instance a = mk("product", "product-a", "http://127.0.0.1:7311", 70);
	events ev;
	reg_table *t = mk_table(2, &ev);

	reg_table_survey_begin(t);
	reg_table_upsert(t, &a, 1, 0);
	for (int round = 0; round < 10; round++) {
		/* One miss, then an answer: never two in a row. */
		CU_ASSERT_EQUAL(reg_table_survey_begin(t), 0);
		CU_ASSERT_EQUAL(reg_table_survey_begin(t), 0);
		reg_table_upsert(t, &a, 1, round);
	}
	CU_ASSERT_EQUAL(reg_table_count(t), 1);
	/* The last answer counts for the survey then running; two more missed. */
	CU_ASSERT_EQUAL(reg_table_survey_begin(t), 0);
	CU_ASSERT_EQUAL(reg_table_survey_begin(t), 0);
	CU_ASSERT_EQUAL(reg_table_survey_begin(t), 1);
	reg_table_destroy(t);
}

static void test_table_refuses_unnamed_advert(void)
{
	shop_instance a = mk("product", "", "http://127.0.0.1:7311", 70);
	shop_instance b = mk("", "x", "http://127.0.0.1:7311", 70);
	events ev;
	reg_table *t = mk_table(3, &ev);

	CU_ASSERT_EQUAL(reg_table_upsert(t, &a, 1, 0), REG_UPSERT_IGNORED);
	CU_ASSERT_EQUAL(reg_table_upsert(t, &b, 1, 0), REG_UPSERT_IGNORED);
	CU_ASSERT_EQUAL(reg_table_count(t), 0);
	CU_ASSERT_EQUAL(reg_table_revision(t), 1);
	reg_table_destroy(t);
}

static void test_table_refuses_unsafe_advert(void)
{
	shop_instance a = mk("product", "x\r\nSet-Cookie: pwn=1", "http://127.0.0.1:7311", 70);
	shop_instance b = mk("product", "product-z", "http://127.0.0.1:7311", 70);
	events ev;
	reg_table *t = mk_table(3, &ev);

	snprintf(b.rpc_url, sizeof(b.rpc_url), "tcp://127.0.0.1:99999");
	CU_ASSERT_EQUAL(reg_table_upsert(t, &a, 1, 0), REG_UPSERT_IGNORED);
	CU_ASSERT_EQUAL(reg_table_upsert(t, &b, 1, 0), REG_UPSERT_IGNORED);
	CU_ASSERT_EQUAL(reg_table_count(t), 0);
	CU_ASSERT_EQUAL(ev.joins, 0);
	reg_table_destroy(t);
}

static void test_table_counts_refusals_and_warns_once_per_pipe(void)
{
	events ev;
	reg_table *t = mk_table(3, &ev);
	char *body = NULL;
	size_t len;

	CU_ASSERT_TRUE(reg_table_refuse(t, 1, SHOP_ADVERT_INSTANCE));
	CU_ASSERT_FALSE(reg_table_refuse(t, 1, SHOP_ADVERT_INSTANCE)); /* the next survey's */
	CU_ASSERT_TRUE(reg_table_refuse(t, 2, SHOP_ADVERT_RPC_URL));
	CU_ASSERT_FALSE(reg_table_refuse(t, 99, SHOP_ADVERT_UNPARSABLE)); /* unknown pipe */
	reg_table_pipe_remove(t, 1);
	CU_ASSERT_TRUE(reg_table_pipe_add(t, 1) == 0);
	CU_ASSERT_TRUE(reg_table_refuse(t, 1, SHOP_ADVERT_INSTANCE)); /* a new connection */
	CU_ASSERT_FATAL(reg_table_metrics_text(t, &body, &len) == 0);
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(body, "\nshop_registry_adverts_refused_total{reason=\"instance\"} 3\n"));
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(body, "\nshop_registry_adverts_refused_total{reason=\"rpc_url\"} 1\n"));
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(body, "\nshop_registry_adverts_refused_total{reason=\"unparsable\"} 1\n"));
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(body, "\nshop_registry_adverts_refused_total{reason=\"weight\"} 0\n"));
	CU_ASSERT_PTR_NULL(strstr(body, "reason=\"ok\""));
	free(body);
	reg_table_destroy(t);
}

static void test_table_lookup_filters_and_orders(void)
{
	shop_instance in[] = {
	    mk("product", "product-b", "http://127.0.0.1:7312", 30),
	    mk("order", "order", "http://127.0.0.1:7321", 100),
	    mk("auth", "auth", "http://127.0.0.1:7301", 100),
	    mk("product", "product-a", "http://127.0.0.1:7311", 70),
	};
	const char *all[] = {"auth", "order", "product-a", "product-b"};
	shop_instance *got = NULL;
	events ev;
	reg_table *t = mk_table(3, &ev);
	uint64_t rev = 0;
	size_t n = 0;

	for (size_t i = 0; i < 4; i++)
		reg_table_upsert(t, &in[i], (uint32_t)i + 1, 0);
	CU_ASSERT_FATAL(reg_table_lookup(t, "", &got, &n, &rev) == 0);
	CU_ASSERT_EQUAL_FATAL(n, 4);
	for (size_t i = 0; i < 4; i++)
		CU_ASSERT_STRING_EQUAL(got[i].instance, all[i]);
	CU_ASSERT_EQUAL(rev, 5);
	free(got);

	CU_ASSERT_FATAL(reg_table_lookup(t, "product", &got, &n, &rev) == 0);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_STRING_EQUAL(got[0].instance, "product-a");
	CU_ASSERT_STRING_EQUAL(got[1].instance, "product-b");
	CU_ASSERT_EQUAL(got[0].weight, 70);
	free(got);

	got = (shop_instance *)&rev; /* must be overwritten */
	CU_ASSERT_FATAL(reg_table_lookup(t, "nope", &got, &n, &rev) == 0);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_PTR_NULL(got);
	reg_table_destroy(t);
}

static void test_table_services_json_lists_adverts_and_age(void)
{
	shop_instance a = mk("product", "product-a", "http://127.0.0.1:7311", 70);
	events ev;
	reg_table *t = mk_table(3, &ev);
	cJSON *root, *o;
	char *body = NULL;
	size_t len = 0;

	reg_table_upsert(t, &a, 1, 10000);
	CU_ASSERT_FATAL(reg_table_services_json(t, 10250, &body, &len) == 0);
	CU_ASSERT_EQUAL(len, strlen(body));
	root = cJSON_Parse(body);
	CU_ASSERT_FATAL(cJSON_IsArray(root));
	CU_ASSERT_EQUAL_FATAL(cJSON_GetArraySize(root), 1);
	o = cJSON_GetArrayItem(root, 0);
	CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(o, "service")->valuestring, "product");
	CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(o, "instance")->valuestring, "product-a");
	CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(o, "rpc_url")->valuestring,
			       "tcp://127.0.0.1:7070");
	CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(o, "admin_url")->valuestring,
			       "http://127.0.0.1:7311");
	CU_ASSERT_EQUAL(cJSON_GetObjectItem(o, "weight")->valueint, 70);
	CU_ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(o, "healthy")));
	CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(o, "version")->valuestring, "0.1.0");
	CU_ASSERT_EQUAL(cJSON_GetObjectItem(o, "started_unix_ms")->valuedouble, 1700000000000.0);
	CU_ASSERT_EQUAL(cJSON_GetObjectItem(o, "last_seen_ms_ago")->valueint, 250);
	cJSON_Delete(root);
	free(body);
	reg_table_destroy(t);
}

static void test_table_prometheus_targets_json(void)
{
	shop_instance a = mk("product", "product-a", "http://127.0.0.1:7311", 70);
	shop_instance b = mk("auth", "auth", "https://10.0.0.5:7301/admin/", 100);
	shop_instance c = mk("order", "order", "not a url", 100);
	events ev;
	reg_table *t = mk_table(3, &ev);
	char *body = NULL;
	size_t len;

	reg_table_upsert(t, &a, 1, 0);
	reg_table_upsert(t, &b, 2, 0);
	reg_table_upsert(t, &c, 3, 0);
	CU_ASSERT_FATAL(reg_table_prometheus_json(t, &body, &len) == 0);
	/* auth < order < product; order has no usable admin_url. */
	CU_ASSERT_STRING_EQUAL(
	    body, "[{\"targets\":[\"10.0.0.5:7301\"],\"labels\":{\"service\":\"auth\","
		  "\"instance\":\"auth\",\"__metrics_path__\":\"/admin/metrics\","
		  "\"__scheme__\":\"https\"}},"
		  "{\"targets\":[\"127.0.0.1:7311\"],\"labels\":{\"service\":\"product\","
		  "\"instance\":\"product-a\",\"__metrics_path__\":\"/metrics\"}}]");
	free(body);
	reg_table_destroy(t);
}

static void test_table_prometheus_targets_empty(void)
{
	events ev;
	reg_table *t = mk_table(3, &ev);
	char *body = NULL;
	size_t len;

	CU_ASSERT_FATAL(reg_table_prometheus_json(t, &body, &len) == 0);
	CU_ASSERT_STRING_EQUAL(body, "[]");
	free(body);
	reg_table_destroy(t);
}

static void test_admin_target_parses_urls(void)
{
	char hp[64], scheme[8], path[64];

	CU_ASSERT_EQUAL(reg_admin_target("http://[::1]:7311", hp, sizeof(hp), scheme,
					 sizeof(scheme), path, sizeof(path)),
			0);
	CU_ASSERT_STRING_EQUAL(hp, "[::1]:7311");
	CU_ASSERT_STRING_EQUAL(scheme, "http");
	CU_ASSERT_STRING_EQUAL(path, "/metrics");
	CU_ASSERT_EQUAL(reg_admin_target("ftp://h:1", hp, sizeof(hp), scheme, sizeof(scheme), path,
					 sizeof(path)),
			-1);
	CU_ASSERT_EQUAL(
	    reg_admin_target("http://", hp, sizeof(hp), scheme, sizeof(scheme), path, sizeof(path)),
	    -1);
	CU_ASSERT_EQUAL(reg_admin_target("http://u:p@h:1", hp, sizeof(hp), scheme, sizeof(scheme),
					 path, sizeof(path)),
			-1);
	CU_ASSERT_EQUAL(reg_admin_target("http://h:1/x?y", hp, sizeof(hp), scheme, sizeof(scheme),
					 path, sizeof(path)),
			-1);
	CU_ASSERT_EQUAL(
	    reg_admin_target("", hp, sizeof(hp), scheme, sizeof(scheme), path, sizeof(path)), -1);
}

static void test_table_metrics_counts_per_service(void)
{
	shop_instance a = mk("product", "product-a", "http://127.0.0.1:7311", 70);
	shop_instance b = mk("product", "product-b", "http://127.0.0.1:7312", 30);
	shop_instance c = mk("auth", "auth", "http://127.0.0.1:7301", 100);
	events ev;
	reg_table *t = mk_table(3, &ev);
	char *body = NULL;
	size_t len;

	reg_table_upsert(t, &a, 1, 0);
	reg_table_upsert(t, &b, 2, 0);
	reg_table_upsert(t, &c, 3, 0);
	reg_table_pipe_remove(t, 3);
	reg_table_upsert(t, &c, 4, 0);
	CU_ASSERT_FATAL(reg_table_metrics_text(t, &body, &len) == 0);
	CU_ASSERT_EQUAL(len, strlen(body));
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "\nshop_registry_instances{service=\"product\"} 2\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "\nshop_registry_instances{service=\"auth\"} 1\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "\nshop_registry_joins_total 4\n"));
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(body, "\nshop_registry_leaves_total{reason=\"pipe_closed\"} 1\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "\nshop_registry_revision 6\n"));
	free(body);
	reg_table_destroy(t);
}

int main(void)
{
	static const struct {
		const char *name;
		CU_TestFunc fn;
	} tests[] = {
	    {"join bumps revision", test_table_join_bumps_revision},
	    {"re-answer keeps revision", test_table_reanswer_keeps_revision},
	    {"changed weight bumps revision", test_table_changed_weight_bumps_revision},
	    {"pipe close drops at once", test_table_pipe_close_drops_at_once},
	    {"answer from closed pipe ignored", test_table_ignores_answer_from_closed_pipe},
	    {"moved instance follows new pipe", test_table_moved_instance_follows_new_pipe},
	    {"misses drop after N surveys", test_table_misses_drop_after_n_surveys},
	    {"answer resets misses", test_table_answer_resets_misses},
	    {"unnamed advert refused", test_table_refuses_unnamed_advert},
	    {"unsafe advert refused", test_table_refuses_unsafe_advert},
	    {"refusals counted, warned once per pipe",
	     test_table_counts_refusals_and_warns_once_per_pipe},
	    {"lookup filters and orders", test_table_lookup_filters_and_orders},
	    {"services json", test_table_services_json_lists_adverts_and_age},
	    {"prometheus targets json", test_table_prometheus_targets_json},
	    {"prometheus targets empty", test_table_prometheus_targets_empty},
	    {"admin target parsing", test_admin_target_parses_urls},
	    {"metrics per service", test_table_metrics_counts_per_service},
	};
	CU_pSuite s;
	unsigned failed;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("registry_table", NULL, NULL);
	for (size_t i = 0; s != NULL && i < sizeof(tests) / sizeof(tests[0]); i++)
		CU_add_test(s, tests[i].name, tests[i].fn);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return failed == 0 ? 0 : 1;
}
