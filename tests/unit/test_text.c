/* test_text.c -- tests of lib/text.c: UTF-8 names, trimming, lengths. */
#include <string.h>

#include "../cunit_main.h"

#include "text.h"

static int clean(const char *s, size_t min, size_t max, char *out)
{
	return shop_text_clean(s, min, max, out, 1024);
}

static void test_text_trims_spaces(void)
{
	char out[1024];

	CU_ASSERT_EQUAL(clean("  Keyboard \t\n", 1, 200, out), 0);
	CU_ASSERT_STRING_EQUAL(out, "Keyboard");
	CU_ASSERT_EQUAL(clean("\xe3\x80\x80"
			      "키보드"
			      "\xc2\xa0",
			      1, 200, out),
			0); /* ideographic, nbsp */
	CU_ASSERT_STRING_EQUAL(out, "키보드");
}

static void test_text_counts_characters_not_bytes(void)
{
	char s[700], out[1024];

	/* 200 Hangul syllables: 600 bytes, 200 characters. */
	s[0] = '\0';
	for (int i = 0; i < 200; i++)
		strcat(s, "가");
	CU_ASSERT_EQUAL(clean(s, 1, 200, out), 0);
	strcat(s, "가");
	CU_ASSERT_EQUAL(clean(s, 1, 200, out), -1);
}

static void test_text_rejects_empty_and_blank(void)
{
	char out[1024];

	CU_ASSERT_EQUAL(clean("", 1, 200, out), -1);
	CU_ASSERT_EQUAL(clean("   ", 1, 200, out), -1);
}

static void test_text_rejects_control_characters(void)
{
	char out[1024];

	CU_ASSERT_EQUAL(clean("a\x01"
			      "b",
			      1, 200, out),
			-1);
	CU_ASSERT_EQUAL(clean("a\tb", 1, 200, out), -1);
	CU_ASSERT_EQUAL(clean("a\nb", 1, 200, out), -1);
	CU_ASSERT_EQUAL(clean("a\x7f", 1, 200, out), -1);
	CU_ASSERT_EQUAL(clean("a\xc2\x85"
			      "b",
			      1, 200, out),
			-1); /* NEL, C1 */
	CU_ASSERT_EQUAL(clean("a b", 1, 200, out), 0);
}

static void test_text_rejects_invalid_utf8(void)
{
	char out[1024];

	CU_ASSERT_EQUAL(clean("\xff", 1, 200, out), -1);
	CU_ASSERT_EQUAL(clean("\xc0\xaf", 1, 200, out), -1);         /* overlong '/' */
	CU_ASSERT_EQUAL(clean("\xed\xa0\x80", 1, 200, out), -1);     /* surrogate */
	CU_ASSERT_EQUAL(clean("\xf4\x90\x80\x80", 1, 200, out), -1); /* > U+10FFFF */
	CU_ASSERT_EQUAL(clean("\xe2\x82", 1, 200, out), -1);         /* truncated */
	CU_ASSERT_EQUAL(shop_utf8_count("h\xc3\xa9", 3), 2);
}

SHOP_TEST_MAIN("text", {"trims spaces", test_text_trims_spaces},
	       {"counts characters, not bytes", test_text_counts_characters_not_bytes},
	       {"rejects empty and blank", test_text_rejects_empty_and_blank},
	       {"rejects control characters", test_text_rejects_control_characters},
	       {"rejects invalid UTF-8", test_text_rejects_invalid_utf8})
