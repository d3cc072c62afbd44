/* test_traceparent.c -- tests of edge-gateway/traceparent.c. */
#include "../cunit_main.h"

#include <string.h>

#include "traceparent.h"

static void test_traceparent_keeps_a_valid_trace_id(void)
{
	gw_trace t;

	gw_trace_init(&t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 1, 2, 0xabc);
	CU_ASSERT_STRING_EQUAL(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
	CU_ASSERT_STRING_EQUAL(t.traceparent,
			       "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01");
	/* A later version may append fields. */
	gw_trace_init(&t, "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-ext", 1, 2, 5);
	CU_ASSERT_STRING_EQUAL(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
}

static void test_traceparent_starts_a_trace_on_invalid_input(void)
{
	const char *bad[] = {
	    NULL,
	    "",
	    "garbage",
	    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
	    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
	    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
	    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
	};
	gw_trace t;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		gw_trace_init(&t, bad[i], 0x1122334455667788ull, 0x99aabbccddeeff00ull, 7);
		CU_ASSERT_STRING_EQUAL(t.trace_id, "112233445566778899aabbccddeeff00");
		CU_ASSERT_STRING_EQUAL(t.traceparent,
				       "00-112233445566778899aabbccddeeff00-0000000000000007-01");
	}
}

SHOP_TEST_MAIN("traceparent", {"keeps a valid trace id", test_traceparent_keeps_a_valid_trace_id},
	       {"starts a trace on invalid input",
		test_traceparent_starts_a_trace_on_invalid_input})
