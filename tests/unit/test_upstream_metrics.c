/* test_upstream_metrics.c -- tests of lib/upstream.c's breaker metrics: the
 * Prometheus text they render, whatever a breaker is named, and the
 * outcome of a call (breaker and outcome label). Includes the .c to plant
 * a breaker without a registry or a call. */
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "../cunit_main.h"

#include "../../lib/upstream.c"

/* An upstream holding one breaker named name, and no connection. */
static shop_upstream *with_breaker(const char *name)
{
	shop_upstream *u = NULL;
	upstream_inst *in = calloc(1, sizeof(*in));

	CU_ASSERT_FATAL(in != NULL);
	CU_ASSERT_FATAL(shop_upstream_create(&u, NULL, "gateway") == 0);
	CU_ASSERT_FATAL((in->breaker = shop_breaker_create(&u->bcfg, name)) != NULL);
	u->insts = in;
	return u;
}

/* Every line a comment or one sample of text format 0.0.4:
 * name{label="value",...} number, each value escaped. */
static int lines_bad(const char *text)
{
	regex_t re;
	int bad = 0;
	char *copy = strdup(text), *save = NULL;

	CU_ASSERT_FATAL(copy != NULL);
	CU_ASSERT_FATAL(regcomp(&re,
				"^(# (HELP|TYPE) .*|[a-zA-Z_:][a-zA-Z0-9_:]*"
				"\\{([a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\\\\\"n])*\",?)*\\}"
				" -?[0-9]+)$",
				REG_EXTENDED | REG_NOSUB) == 0);
	for (char *l = strtok_r(copy, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save))
		if (regexec(&re, l, 0, NULL, 0) != 0)
			bad++;
	regfree(&re);
	free(copy);
	return bad;
}

static void test_breaker_metrics_escape_the_name(void)
{
	shop_upstream *u = with_breaker("gateway:a\"b\\c\nd");
	size_t len = 0;
	char *text = shop_upstream_breaker_metrics(u, &len);

	CU_ASSERT_FATAL(text != NULL);
	CU_ASSERT_EQUAL(len, strlen(text));
	CU_ASSERT_EQUAL(lines_bad(text), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nresilience4j_circuitbreaker_state{name="
					    "\"gateway:a\\\"b\\\\c\\nd\",state=\"closed\"} 1\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nresilience4j_circuitbreaker_failure_rate{name="
					    "\"gateway:a\\\"b\\\\c\\nd\"} -1\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text,
				      "\nresilience4j_circuitbreaker_calls_seconds_count{"
				      "name=\"gateway:a\\\"b\\\\c\\nd\",kind=\"failed\"} 0\n"));
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(text, "\nresilience4j_circuitbreaker_not_permitted_calls_total{name="
			 "\"gateway:a\\\"b\\\\c\\nd\"} 0\n"));
	/* 4 HELP + 4 TYPE + 3 states + 1 rate + 2 calls + 1 refused. */
	{
		int lines = 0;

		for (const char *p = text; *p != '\0'; p++)
			lines += *p == '\n';
		CU_ASSERT_EQUAL(lines, 15);
	}
	free(text);
	shop_upstream_destroy(u);
}

static void test_breaker_metrics_plain_name_unchanged(void)
{
	shop_upstream *u = with_breaker("gateway:product-a");
	size_t len = 0;
	char *text = shop_upstream_breaker_metrics(u, &len);

	CU_ASSERT_FATAL(text != NULL);
	CU_ASSERT_EQUAL(lines_bad(text), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nresilience4j_circuitbreaker_state{name="
					    "\"gateway:product-a\",state=\"half_open\"} 0\n"));
	free(text);
	shop_upstream_destroy(u);
}

/* outcome_ok and the outcome label: a reply is judged by what it says
 * about the instance. */
static void test_outcome_judges_the_instance(void)
{
	Shop__V1__RpcResponse r = SHOP__V1__RPC_RESPONSE__INIT;
	static const struct {
		int rv, code, dependency;
		bool ok;
		const char *name;
	} cases[] = {
	    {0, SHOP_RPC_OK, 0, true, "ok"},
	    {0, SHOP_RPC_NOT_FOUND, 0, true, "error"},
	    {0, SHOP_RPC_RESOURCE_EXHAUSTED, 0, true, "shed"},
	    {0, SHOP_RPC_UNAVAILABLE, 0, false, "failure"}, /* its own, e.g. its database */
	    {0, SHOP_RPC_INTERNAL, 0, false, "failure"},
	    {0, SHOP_RPC_DEADLINE_EXCEEDED, 0, false, "failure"},
	    {0, SHOP_RPC_UNAVAILABLE, 1, true, "dependency"}, /* a dependency's */
	    {0, SHOP_RPC_DEADLINE_EXCEEDED, 1, true, "dependency"},
	    {0, SHOP_RPC_OK, 1, true, "ok"},
	    {NNG_ETIMEDOUT, 0, 0, false, "failure"}, /* no reply at all */
	    {NNG_ECONNRESET, 0, 0, false, "failure"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r.code = cases[i].code;
		r.dependency_failed = cases[i].dependency;
		CU_ASSERT_EQUAL(outcome_ok(cases[i].rv, cases[i].rv == 0 ? &r : NULL), cases[i].ok);
		CU_ASSERT_STRING_EQUAL(outcome_name(cases[i].rv, cases[i].rv == 0 ? &r : NULL),
				       cases[i].name);
	}
}

SHOP_TEST_MAIN("upstream_metrics",
	       {"breaker metrics escape the name", test_breaker_metrics_escape_the_name},
	       {"plain breaker name unchanged", test_breaker_metrics_plain_name_unchanged},
	       {"outcome judges the instance", test_outcome_judges_the_instance})
