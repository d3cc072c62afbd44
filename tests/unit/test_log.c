/* test_log.c -- tests of lib/log.c's two escapings: JSON string bodies and
 * visible ASCII for quoted values. */
#include <stdarg.h>
#include <string.h>

#include "../cunit_main.h"

#include "log.h"

static void test_json_escape_controls_quotes_and_cut(void)
{
	char buf[64];

	CU_ASSERT_EQUAL(shop_json_escape(buf, sizeof(buf), "a\"b\\c\nd\te\x01\x7f"), 25);
	CU_ASSERT_STRING_EQUAL(buf, "a\\\"b\\\\c\\nd\\te\\u0001\\u007f");
	/* Never half an escape: "ab" fits in 4 bytes with its NUL, "\\n" does not. */
	CU_ASSERT_EQUAL(shop_json_escape(buf, 4, "ab\n"), 2);
	CU_ASSERT_STRING_EQUAL(buf, "ab");
	CU_ASSERT_EQUAL(shop_json_escape(buf, sizeof(buf), "h\xc3\xa9"), 3); /* UTF-8 kept */
}

static void test_visible_shows_crlf_and_non_ascii_as_hex(void)
{
	char buf[64];

	CU_ASSERT_EQUAL(shop_log_visible(buf, sizeof(buf), "x\r\nSet-Cookie: pwn=1"),
			strlen("x\\x0d\\x0aSet-Cookie: pwn=1"));
	CU_ASSERT_STRING_EQUAL(buf, "x\\x0d\\x0aSet-Cookie: pwn=1");
	shop_log_visible(buf, sizeof(buf), "\"\\\xc3\xa9\x7f");
	CU_ASSERT_STRING_EQUAL(buf, "\\\"\\\\\\xc3\\xa9\\x7f");
	CU_ASSERT_EQUAL(shop_log_visible(buf, 6, "ab\x01"), 2); /* "\\x01" does not fit */
	CU_ASSERT_STRING_EQUAL(buf, "ab");
	CU_ASSERT_EQUAL(shop_log_visible(buf, sizeof(buf), NULL), 0);
}

static size_t fmt_line(char *buf, size_t cap, const char *trace, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = shop_log_vformat(buf, cap, SHOP_LOG_INFO, trace, fmt, ap);
	va_end(ap);
	return n;
}

/* The line: its fields in order, the timestamp's shape, the newline. */
static void test_vformat_writes_the_line(void)
{
	char buf[SHOP_LOG_LINE_MAX];
	size_t n;

	shop_log_init("gateway", SHOP_LOG_INFO, NULL);
	n = fmt_line(buf, sizeof(buf), "abc", "http %s status=%d", "GET", 200);
	CU_ASSERT_EQUAL(n, strlen(buf));
	CU_ASSERT_EQUAL(strncmp(buf, "{\"ts\":\"", 7), 0);
	/* 2026-12-04T21:46:33.027Z */
	CU_ASSERT_TRUE(n > 31 && buf[11] == '-' && buf[17] == 'T' && buf[26] == '.' &&
		       buf[30] == 'Z');
	CU_ASSERT_STRING_EQUAL(buf + 31, "\",\"level\":\"info\",\"instance\":\"gateway\","
					 "\"msg\":\"http GET status=200\",\"trace_id\":\"abc\"}\n");
	n = fmt_line(buf, sizeof(buf), NULL, "a \"quoted\" %s", "word");
	CU_ASSERT_STRING_EQUAL(buf + 31, "\",\"level\":\"info\",\"instance\":\"gateway\","
					 "\"msg\":\"a \\\"quoted\\\" word\"}\n");
}

/* A line longer than its buffer is cut and closed, never inside an escape. */
static void test_vformat_cuts_between_escapes(void)
{
	char msg[400], buf[128];

	shop_log_init("gateway", SHOP_LOG_INFO, NULL);
	for (size_t cap = 60; cap < sizeof(buf); cap++) {
		size_t n;

		memset(msg, '"', sizeof(msg) - 1); /* every byte escaped: \" */
		msg[sizeof(msg) - 1] = '\0';
		msg[7] = '\x01'; /* and one \u0001 */
		n = fmt_line(buf, cap, NULL, "%s", msg);
		CU_ASSERT_TRUE(n < cap && n == strlen(buf));
		CU_ASSERT_EQUAL(strcmp(buf + n - 3, "\"}\n"), 0);
		/* Every backslash before the end opens a whole escape. */
		for (size_t k = 0; k + 3 < n; k++)
			if (buf[k] == '\\') {
				size_t need = buf[k + 1] == 'u' ? 6 : 2;

				CU_ASSERT_TRUE(k + need <= n - 3);
				k += need - 1;
			}
	}
}

SHOP_TEST_MAIN("log", {"vformat writes the line", test_vformat_writes_the_line},
	       {"vformat cuts between escapes", test_vformat_cuts_between_escapes},
	       {"json escape: controls, quotes, cut", test_json_escape_controls_quotes_and_cut},
	       {"visible: CR LF and non-ASCII as hex",
		test_visible_shows_crlf_and_non_ascii_as_hex})
