/* test_log.c -- tests of lib/log.c's two escapings: JSON string bodies and
 * visible ASCII for quoted values. */
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

SHOP_TEST_MAIN("log",
	       {"json escape: controls, quotes, cut", test_json_escape_controls_quotes_and_cut},
	       {"visible: CR LF and non-ASCII as hex",
		test_visible_shows_crlf_and_non_ascii_as_hex})
