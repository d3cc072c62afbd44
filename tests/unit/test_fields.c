/* test_fields.c -- tests of edge-gateway/fields.c: which values an answer's
 * header may carry, the size a field line counts for, and the spellings of a
 * field name with whitespace before its colon. */
#include "../cunit_main.h"

#include <string.h>

#include "fields.h"

static void test_fields_refuse_values_that_could_end_a_line(void)
{
	char one[2] = "";

	CU_ASSERT_TRUE(gw_field_value_writable("product-a"));
	CU_ASSERT_TRUE(gw_field_value_writable("Bearer error=\"invalid_token\""));
	CU_ASSERT_TRUE(gw_field_value_writable("a\tb"));
	CU_ASSERT_TRUE(gw_field_value_writable(""));
	CU_ASSERT_FALSE(gw_field_value_writable(NULL));
	CU_ASSERT_FALSE(gw_field_value_writable("a\r\nSet-Cookie: x=1"));
	CU_ASSERT_FALSE(gw_field_value_writable("a\nb"));
	CU_ASSERT_FALSE(gw_field_value_writable("a\rb"));
	CU_ASSERT_FALSE(gw_field_value_writable("a\x7f"));
	/* every control character but HTAB */
	for (int c = 1; c < 0x20; c++) {
		one[0] = (char)c;
		CU_ASSERT_EQUAL(gw_field_value_writable(one), c == '\t');
	}
}

static void test_fields_count_a_line_as_name_colon_space_value_crlf(void)
{
	CU_ASSERT_EQUAL(gw_field_line_size(4, 9), strlen("Host: 127.0.0.1\r\n"));
	CU_ASSERT_EQUAL(gw_field_line_size(1, 0), strlen("a: \r\n"));
}

static void test_fields_spell_a_name_with_whitespace_before_the_colon(void)
{
	char out[64], seen[GW_FIELD_NAME_SPACED_COUNT][64];

	CU_ASSERT_EQUAL(gw_field_name_spaced("host", 0, out, sizeof(out)), 6);
	CU_ASSERT_STRING_EQUAL(out, "host :");
	CU_ASSERT_EQUAL(gw_field_name_spaced("host", 1, out, sizeof(out)), 6);
	CU_ASSERT_STRING_EQUAL(out, "host\t:");
	CU_ASSERT_EQUAL(gw_field_name_spaced("host", 13, out, sizeof(out)), 8);
	CU_ASSERT_STRING_EQUAL(out, "host\t\t\t:");
	CU_ASSERT_EQUAL(gw_field_name_spaced("host", 14, out, sizeof(out)), -1);
	CU_ASSERT_EQUAL(gw_field_name_spaced("host", 0, out, 6), -1);
	/* all 14 spellings differ */
	for (unsigned i = 0; i < GW_FIELD_NAME_SPACED_COUNT; i++) {
		CU_ASSERT_TRUE(gw_field_name_spaced("te", i, seen[i], sizeof(seen[i])) > 0);
		for (unsigned j = 0; j < i; j++)
			CU_ASSERT_STRING_NOT_EQUAL(seen[i], seen[j]);
	}
}

SHOP_TEST_MAIN("fields",
	       {"refuse values that could end a line",
		test_fields_refuse_values_that_could_end_a_line},
	       {"count a line as name, colon, space, value, CRLF",
		test_fields_count_a_line_as_name_colon_space_value_crlf},
	       {"spell a name with whitespace before the colon",
		test_fields_spell_a_name_with_whitespace_before_the_colon})
