/* test_access_log.c -- tests of edge-gateway/access_log.c: lines wait in the
 * buffer (no write) until a flush, a full buffer, an urgent line or the end,
 * and come out whole and in order, as log.h writes them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cunit_main.h"

#include "access_log.h"
#include "log.h"

static FILE *stream;

/* Everything written to the log stream so far (caller frees). */
static char *written(void)
{
	long n;
	char *text;

	fflush(stream);
	n = ftell(stream);
	text = calloc(1, (size_t)n + 1);
	rewind(stream);
	if (text != NULL && n > 0 && fread(text, 1, (size_t)n, stream) != (size_t)n)
		text[0] = '\0';
	fseek(stream, 0, SEEK_END);
	return text;
}

static size_t count(const char *text, const char *needle)
{
	size_t n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static void start(shop_log_level min)
{
	stream = tmpfile();
	CU_ASSERT_PTR_NOT_NULL_FATAL(stream);
	shop_log_init("gateway", min, stream);
}

static void stop(void)
{
	shop_log_init("gateway", SHOP_LOG_INFO, NULL);
	fclose(stream);
}

static void test_access_log_buffers_until_flush(void)
{
	gw_access_log *a;
	char *t;

	start(SHOP_LOG_INFO);
	a = gw_access_log_create(GW_ACCESS_LOG_BUFFER);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	/* The first line asks for the timer, the next ones do not. */
	CU_ASSERT_TRUE(gw_access_log_add(a, false, "t1", "http GET /orders/{id} status=%d", 200));
	CU_ASSERT_FALSE(gw_access_log_add(a, false, "t2", "http GET /orders/{id} status=%d", 404));
	t = written();
	CU_ASSERT_STRING_EQUAL(t, ""); /* nothing written yet */
	free(t);
	CU_ASSERT_TRUE(gw_access_log_pending(a) > 0);
	gw_access_log_flush(a);
	CU_ASSERT_EQUAL(gw_access_log_pending(a), 0);
	t = written();
	CU_ASSERT_EQUAL(count(t, "\n"), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"level\":\"info\",\"instance\":\"gateway\","
					 "\"msg\":\"http GET /orders/{id} status=200\","
					 "\"trace_id\":\"t1\"}\n"));
	CU_ASSERT_TRUE(strstr(t, "status=200") < strstr(t, "status=404"));
	free(t);
	/* Empty again: the next line asks for the timer again. */
	CU_ASSERT_TRUE(gw_access_log_add(a, false, "t3", "http GET / status=%d", 200));
	gw_access_log_destroy(a); /* writes it */
	t = written();
	CU_ASSERT_EQUAL(count(t, "\n"), 3);
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"trace_id\":\"t3\"}\n"));
	free(t);
	stop();
}

static void test_access_log_urgent_line_goes_out_at_once_after_earlier_ones(void)
{
	gw_access_log *a;
	char *t;

	start(SHOP_LOG_INFO);
	a = gw_access_log_create(GW_ACCESS_LOG_BUFFER);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	gw_access_log_add(a, false, "t1", "http GET /products status=%d", 200);
	CU_ASSERT_FALSE(gw_access_log_add(a, true, "t2", "http GET /products status=%d", 503));
	t = written();
	CU_ASSERT_EQUAL(count(t, "\n"), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "status=503"));
	CU_ASSERT_TRUE(strstr(t, "status=200") != NULL &&
		       strstr(t, "status=200") < strstr(t, "status=503"));
	free(t);
	CU_ASSERT_EQUAL(gw_access_log_pending(a), 0);
	gw_access_log_destroy(a);
	stop();
}

static void test_access_log_full_buffer_is_written(void)
{
	gw_access_log *a;
	char *t;
	int i;

	start(SHOP_LOG_INFO);
	a = gw_access_log_create(1024);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	for (i = 0; i < 100 && gw_access_log_pending(a) < 1024; i++) {
		t = written();
		if (t[0] != '\0') {
			free(t);
			break;
		}
		free(t);
		gw_access_log_add(a, false, NULL, "http GET /healthz status=200 n=%d", i);
	}
	/* Written when it reached its size, with nothing left over. */
	t = written();
	CU_ASSERT_TRUE(i < 100);
	CU_ASSERT_EQUAL(gw_access_log_pending(a), 0);
	CU_ASSERT_EQUAL(count(t, "\n"), (size_t)i);
	free(t);
	/* A line longer than the whole buffer is still written whole. */
	char big[1500]; /* more than the buffer, less than a log line */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	gw_access_log_add(a, false, NULL, "%s", big);
	t = written();
	CU_ASSERT_PTR_NOT_NULL(strstr(t, big));
	free(t);
	gw_access_log_destroy(a);
	stop();
}

static void test_access_log_unbuffered_and_level(void)
{
	gw_access_log *a;
	char *t;

	start(SHOP_LOG_INFO);
	a = gw_access_log_create(0); /* SHOP_GATEWAY_ACCESS_LOG_FLUSH_MS=0 */
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_FALSE(gw_access_log_add(a, false, "t1", "http GET / status=%d", 200));
	t = written();
	CU_ASSERT_EQUAL(count(t, "\n"), 1);
	free(t);
	gw_access_log_destroy(a);
	stop();

	start(SHOP_LOG_WARN); /* INFO lines off: nothing, no timer */
	a = gw_access_log_create(GW_ACCESS_LOG_BUFFER);
	CU_ASSERT_FALSE(gw_access_log_add(a, true, "t1", "http GET / status=%d", 500));
	CU_ASSERT_EQUAL(gw_access_log_pending(a), 0);
	gw_access_log_destroy(a);
	t = written();
	CU_ASSERT_STRING_EQUAL(t, "");
	free(t);
	stop();
	gw_access_log_destroy(NULL);
}

SHOP_TEST_MAIN("access_log",
	       {"buffers until flush, lines whole and in order",
		test_access_log_buffers_until_flush},
	       {"an urgent line goes out at once, after the earlier ones",
		test_access_log_urgent_line_goes_out_at_once_after_earlier_ones},
	       {"a full buffer is written", test_access_log_full_buffer_is_written},
	       {"unbuffered, and off below INFO", test_access_log_unbuffered_and_level})
