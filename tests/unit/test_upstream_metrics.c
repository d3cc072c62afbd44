/* test_upstream_metrics.c -- tests of lib/upstream.c's breaker metrics: the
 * Prometheus text they render, whatever a breaker is named. Includes the
 * .c to plant a breaker without a registry or a call. */
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

SHOP_TEST_MAIN("upstream_metrics",
	       {"breaker metrics escape the name", test_breaker_metrics_escape_the_name},
	       {"plain breaker name unchanged", test_breaker_metrics_plain_name_unchanged})
