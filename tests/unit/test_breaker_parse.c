/* test_breaker_parse.c -- unit tests of registry/breaker_parse.c: the
 * callers' Resilience4j breaker samples read out of Prometheus text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "../../registry/breaker_parse.h"
#include "../cunit_main.h"

static reg_breaker *parse(const char *text, size_t *n)
{
	reg_breaker *v = (reg_breaker *)1;

	CU_ASSERT_FATAL(reg_breakers_parse(text, strlen(text), &v, n) == 0);
	return v;
}

/* What lib/upstream.c shop_upstream_breaker_metrics writes. */
static void test_breaker_parse_reads_state_and_failure_rate(void)
{
	static const char text[] =
	    "# HELP resilience4j_circuitbreaker_state The states of the circuit breaker\n"
	    "# TYPE resilience4j_circuitbreaker_state gauge\n"
	    "resilience4j_circuitbreaker_state{name=\"gateway:product-a\",state=\"closed\"} 1\n"
	    "resilience4j_circuitbreaker_state{name=\"gateway:product-a\",state=\"open\"} 0\n"
	    "resilience4j_circuitbreaker_state{name=\"gateway:product-a\",state=\"half_open\"} 0\n"
	    "resilience4j_circuitbreaker_state{name=\"gateway:product-b\",state=\"closed\"} 0\n"
	    "resilience4j_circuitbreaker_state{name=\"gateway:product-b\",state=\"open\"} 1\n"
	    "resilience4j_circuitbreaker_state{name=\"gateway:product-b\",state=\"half_open\"} 0\n"
	    "# HELP resilience4j_circuitbreaker_failure_rate The failure rate\n"
	    "# TYPE resilience4j_circuitbreaker_failure_rate gauge\n"
	    "resilience4j_circuitbreaker_failure_rate{name=\"gateway:product-a\"} 0\n"
	    "resilience4j_circuitbreaker_failure_rate{name=\"gateway:product-b\"} 65\n"
	    "resilience4j_circuitbreaker_calls_seconds_count{name=\"gateway:product-a\","
	    "kind=\"successful\"} 12\n";
	size_t n;
	reg_breaker *v = parse(text, &n);

	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_STRING_EQUAL(v[0].name, "gateway:product-a");
	CU_ASSERT_STRING_EQUAL(v[0].state, "closed");
	CU_ASSERT_DOUBLE_EQUAL(v[0].failure_rate, 0, 1e-9);
	CU_ASSERT_STRING_EQUAL(v[1].name, "gateway:product-b");
	CU_ASSERT_STRING_EQUAL(v[1].state, "open");
	CU_ASSERT_DOUBLE_EQUAL(v[1].failure_rate, 65, 1e-9);
	free(v);
}

static void test_breaker_parse_takes_any_label_order_blanks_escapes_and_timestamps(void)
{
	static const char text[] =
	    "resilience4j_circuitbreaker_state{ state=\"half_open\" , application=\"x\", "
	    "name=\"order:a\\\"b\\\\c\" , } 1.0 1700000000000\r\n"
	    "\tresilience4j_circuitbreaker_state {name=\"order:d\",state=\"open\"}\t1e0";
	size_t n;
	reg_breaker *v = parse(text, &n);

	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_STRING_EQUAL(v[0].name, "order:a\"b\\c");
	CU_ASSERT_STRING_EQUAL(v[0].state, "half_open");
	CU_ASSERT(v[0].failure_rate < 0);
	CU_ASSERT_STRING_EQUAL(v[1].name, "order:d");
	CU_ASSERT_STRING_EQUAL(v[1].state, "open");
	free(v);
}

static void test_breaker_parse_leaves_state_empty_when_no_sample_is_1(void)
{
	size_t n;
	reg_breaker *v =
	    parse("resilience4j_circuitbreaker_state{name=\"g:a\",state=\"closed\"} 0\n"
		  "resilience4j_circuitbreaker_state{name=\"g:a\",state=\"open\"} 0.5\n",
		  &n);

	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL(v[0].state, "");
	free(v);
}

static void test_breaker_parse_ignores_other_metrics_comments_and_bad_lines(void)
{
	static const char text[] =
	    "# resilience4j_circuitbreaker_state{name=\"c:comment\",state=\"open\"} 1\n"
	    "resilience4j_circuitbreaker_state_total{name=\"c:prefix\",state=\"open\"} 1\n"
	    "xresilience4j_circuitbreaker_state{name=\"c:other\",state=\"open\"} 1\n"
	    "resilience4j_circuitbreaker_state{name=\"c:novalue\",state=\"open\"}\n"
	    "resilience4j_circuitbreaker_state{name=\"c:junk\",state=\"open\"} 1x\n"
	    "resilience4j_circuitbreaker_state{name=\"c:open-quote,state=\"open\"} 1\n"
	    "resilience4j_circuitbreaker_state{name=\"c:nobrace\",state=\"open\" 1\n"
	    "resilience4j_circuitbreaker_state{name=\"c:badesc\\t\",state=\"open\"} 1\n"
	    "resilience4j_circuitbreaker_state{state=\"open\"} 1\n"
	    "resilience4j_circuitbreaker_state{name=\"c:nostate\"} 1\n"
	    "resilience4j_circuitbreaker_state 1\n"
	    "\n"
	    "resilience4j_circuitbreaker_state{name=\"c:good\",state=\"open\"} 1\n";
	size_t n;
	reg_breaker *v = parse(text, &n);

	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL(v[0].name, "c:good");
	CU_ASSERT_STRING_EQUAL(v[0].state, "open");
	free(v);
}

static void test_breaker_parse_skips_a_name_too_long_rather_than_truncating(void)
{
	char text[512], name[200];
	size_t n;
	reg_breaker *v;

	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(text, sizeof(text),
		 "resilience4j_circuitbreaker_state{name=\"%s\",state=\"open\"} 1\n"
		 "resilience4j_circuitbreaker_failure_rate{name=\"%s\"} 50\n",
		 name, name);
	v = parse(text, &n);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_PTR_NULL(v);
}

static void test_breaker_parse_of_nothing_is_empty(void)
{
	size_t n = 7;
	reg_breaker *v = parse("", &n);

	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_PTR_NULL(v);
	v = parse("# only a comment\nshop_http_requests_total{route=\"/\"} 3\n", &n);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_PTR_NULL(v);
}

static void test_breaker_parse_holds_at_most_the_bound(void)
{
	size_t cap = (REG_BREAKERS_MAX + 100) * 80, len = 0, n;
	char *text = malloc(cap);
	reg_breaker *v;

	CU_ASSERT_FATAL(text != NULL);
	for (int i = 0; i < REG_BREAKERS_MAX + 100; i++)
		len += (size_t)snprintf(text + len, cap - len,
					"resilience4j_circuitbreaker_state{name=\"c:%d\",state="
					"\"closed\"} 1\n",
					i);
	CU_ASSERT_FATAL(reg_breakers_parse(text, len, &v, &n) == 0);
	CU_ASSERT_EQUAL(n, REG_BREAKERS_MAX);
	CU_ASSERT_STRING_EQUAL(v[REG_BREAKERS_MAX - 1].name, "c:1023");
	free(v);
	free(text);
}

/* The text need not end in a NUL: nothing past len is read. */
static void test_breaker_parse_reads_only_len_bytes(void)
{
	static const char text[] =
	    "resilience4j_circuitbreaker_state{name=\"c:a\",state=\"open\"} 1"
	    "5\n";
	reg_breaker *v;
	size_t n;

	CU_ASSERT_FATAL(reg_breakers_parse(text, strlen(text) - 2, &v, &n) == 0);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL(v[0].state, "open");
	free(v);
}

SHOP_TEST_MAIN("breaker_parse",
	       {"reads state and failure rate", test_breaker_parse_reads_state_and_failure_rate},
	       {"any label order, blanks, escapes, timestamps",
		test_breaker_parse_takes_any_label_order_blanks_escapes_and_timestamps},
	       {"state empty when no sample is 1",
		test_breaker_parse_leaves_state_empty_when_no_sample_is_1},
	       {"ignores other metrics, comments, bad lines",
		test_breaker_parse_ignores_other_metrics_comments_and_bad_lines},
	       {"skips a name too long",
		test_breaker_parse_skips_a_name_too_long_rather_than_truncating},
	       {"nothing is empty", test_breaker_parse_of_nothing_is_empty},
	       {"holds at most the bound", test_breaker_parse_holds_at_most_the_bound},
	       {"reads only len bytes", test_breaker_parse_reads_only_len_bytes})
