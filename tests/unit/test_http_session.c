/* test_http_session.c -- tests of edge-gateway/http_session.c that need no
 * lws connection: add_header, through which every answer header goes,
 * leaves out any value that could end its line. The file is included, as
 * h2o's unit tests do, to reach its static functions without widening the
 * header. */
#include "../cunit_main.h"

#include "../../edge-gateway/http_session.c"

/* A refused value returns before lws is called, so no connection is
 * needed: nothing is written and the answer goes on (0). */
static void test_http_session_add_header_leaves_out_control_characters(void)
{
	static const char *const bad[] = {
	    "product-a\r\nSet-Cookie: session=stolen", "a\nb", "a\rb", "00-abc\x01", "x\x7f",
	};
	unsigned char buf[256], *p = buf;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(add_header(NULL, "x-served-by:", bad[i], &p, buf + sizeof(buf)), 0);
		CU_ASSERT_PTR_EQUAL(p, buf);
	}
	/* an empty or absent value is left out too, as before */
	CU_ASSERT_EQUAL(add_header(NULL, "location:", "", &p, buf + sizeof(buf)), 0);
	CU_ASSERT_EQUAL(add_header(NULL, "location:", NULL, &p, buf + sizeof(buf)), 0);
	CU_ASSERT_PTR_EQUAL(p, buf);
}

SHOP_TEST_MAIN("http_session", {"add_header leaves out control characters",
				test_http_session_add_header_leaves_out_control_characters})
