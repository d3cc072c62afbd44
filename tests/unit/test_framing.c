/* test_framing.c -- tests of edge-gateway/framing.c: which Content-Length and
 * Transfer-Encoding combinations are read, refused, or not implemented, and
 * the chunked decoder. */
#include "../cunit_main.h"

#include <string.h>

#include "framing.h"

static enum gw_framing cl_only(const char *v, uint64_t *n)
{
	const char *cl[] = {v};

	return gw_framing_decide(cl, 1, NULL, 0, n);
}

static enum gw_framing te_only(const char *v)
{
	const char *te[] = {v};
	uint64_t n;

	return gw_framing_decide(NULL, 0, te, 1, &n);
}

static void test_framing_reads_one_valid_content_length(void)
{
	uint64_t n = 99;

	CU_ASSERT_EQUAL(gw_framing_decide(NULL, 0, NULL, 0, &n), GW_FRAMING_NONE);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(cl_only("5", &n), GW_FRAMING_LENGTH);
	CU_ASSERT_EQUAL(n, 5);
	CU_ASSERT_EQUAL(cl_only(" 0 ", &n), GW_FRAMING_LENGTH);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(cl_only("\t65536", &n), GW_FRAMING_LENGTH);
	CU_ASSERT_EQUAL(n, 65536);
	CU_ASSERT_EQUAL(cl_only("999999999999999999", &n), GW_FRAMING_LENGTH);
	CU_ASSERT_EQUAL(n, 999999999999999999ull);
}

static void test_framing_refuses_invalid_content_length(void)
{
	static const char *bad[] = {"",
				    " ",
				    "-5",
				    "+5",
				    "5 5",
				    "5,5",
				    "5, 5",
				    "abc",
				    "5a",
				    "0x10",
				    "1e3",
				    "5.0",
				    "١",
				    "\x00",
				    "18446744073709551616",
				    "9999999999999999999"};
	uint64_t n;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		n = 7;
		CU_ASSERT_EQUAL(cl_only(bad[i], &n), GW_FRAMING_BAD_LENGTH);
		CU_ASSERT_EQUAL(n, 0);
	}
}

static void test_framing_refuses_repeated_content_length(void)
{
	const char *same[] = {"5", "5"}, *diff[] = {"5", "6"};
	uint64_t n;

	CU_ASSERT_EQUAL(gw_framing_decide(same, 2, NULL, 0, &n), GW_FRAMING_BAD_LENGTH);
	CU_ASSERT_EQUAL(gw_framing_decide(diff, 2, NULL, 0, &n), GW_FRAMING_BAD_LENGTH);
}

static void test_framing_refuses_length_with_coding(void)
{
	const char *cl[] = {"5"}, *te[] = {"chunked"}, *te_bad[] = {"gzip"};
	uint64_t n;

	CU_ASSERT_EQUAL(gw_framing_decide(cl, 1, te, 1, &n), GW_FRAMING_CONFLICT);
	CU_ASSERT_EQUAL(gw_framing_decide(cl, 1, te_bad, 1, &n), GW_FRAMING_CONFLICT);
	CU_ASSERT_EQUAL(n, 0);
}

static void test_framing_accepts_only_chunked(void)
{
	const char *two[] = {"gzip", "chunked"}, *twice[] = {"chunked", "chunked"},
		   *empty_and_chunked[] = {"", "chunked"};
	uint64_t n;

	CU_ASSERT_EQUAL(te_only("chunked"), GW_FRAMING_CHUNKED);
	CU_ASSERT_EQUAL(te_only(" Chunked "), GW_FRAMING_CHUNKED);
	CU_ASSERT_EQUAL(te_only(", chunked"), GW_FRAMING_CHUNKED);
	CU_ASSERT_EQUAL(gw_framing_decide(NULL, 0, empty_and_chunked, 2, &n), GW_FRAMING_CHUNKED);
	CU_ASSERT_EQUAL(te_only("gzip, chunked"), GW_FRAMING_BAD_CODING);
	CU_ASSERT_EQUAL(te_only("chunked, gzip"), GW_FRAMING_BAD_CODING);
	CU_ASSERT_EQUAL(te_only("chunked, chunked"), GW_FRAMING_BAD_CODING);
	CU_ASSERT_EQUAL(te_only("identity"), GW_FRAMING_BAD_CODING);
	CU_ASSERT_EQUAL(te_only("foo"), GW_FRAMING_BAD_CODING);
	CU_ASSERT_EQUAL(te_only("chunked;x=1"), GW_FRAMING_BAD_CODING);
	CU_ASSERT_EQUAL(te_only("chunkedx"), GW_FRAMING_BAD_CODING);
	CU_ASSERT_EQUAL(te_only(""), GW_FRAMING_BAD_CODING);
	CU_ASSERT_EQUAL(gw_framing_decide(NULL, 0, two, 2, &n), GW_FRAMING_BAD_CODING);
	CU_ASSERT_EQUAL(gw_framing_decide(NULL, 0, twice, 2, &n), GW_FRAMING_BAD_CODING);
}

/* Decodes s fed in pieces of step bytes; returns the last result. */
static enum gw_chunked_rv decode(const char *s, size_t step, char *out, size_t *out_len,
				 size_t *rest)
{
	gw_chunked c;
	size_t len = strlen(s), off = 0, used;
	enum gw_chunked_rv rv = GW_CHUNKED_MORE;

	gw_chunked_init(&c);
	*out_len = 0;
	while (off < len && rv == GW_CHUNKED_MORE) {
		size_t n = len - off < step ? len - off : step;

		rv = gw_chunked_decode(&c, s + off, n, out, out_len, &used);
		CU_ASSERT(used <= n);
		off += used;
	}
	out[*out_len] = '\0';
	*rest = len - off;
	return rv;
}

static void test_chunked_decodes_in_any_pieces(void)
{
	const char *body = "4\r\n{\"a\"\r\n3;ext=1;q=\"x\"\r\n:12\r\nA \r\n}         \r\n"
			   "0\r\nX-Trailer: yes\r\n\r\nGET / HTTP/1.1\r\n";
	char out[128];
	size_t out_len, rest;

	for (size_t step = 1; step <= strlen(body); step++) {
		CU_ASSERT_EQUAL_FATAL(decode(body, step, out, &out_len, &rest), GW_CHUNKED_DONE);
		CU_ASSERT_STRING_EQUAL(out, "{\"a\":12}         ");
		CU_ASSERT_EQUAL(rest, strlen("GET / HTTP/1.1\r\n"));
	}
	CU_ASSERT_EQUAL(decode("0\r\n\r\n", 100, out, &out_len, &rest), GW_CHUNKED_DONE);
	CU_ASSERT_EQUAL(out_len, 0);
	CU_ASSERT_EQUAL(decode("2\r\n{}\r\n", 100, out, &out_len, &rest), GW_CHUNKED_MORE);
	CU_ASSERT_STRING_EQUAL(out, "{}");
}

static void test_chunked_refuses_malformed_bodies(void)
{
	static const char *bad[] = {
	    "\r\n",                   /* no size */
	    "g\r\n",                  /* not hex */
	    "-1\r\n",                 /* sign */
	    "2\n{}\r\n0\r\n\r\n",     /* bare LF after the size */
	    "2\r\n{}\n0\r\n\r\n",     /* bare LF after the data */
	    "2\r\n{}x\r\n0\r\n\r\n",  /* data longer than its size */
	    "0\r\nX: y\n\r\n",        /* bare LF in the trailers */
	    "0\r\n folded\r\n\r\n",   /* obsolete line folding */
	    "2 x\r\n{}\r\n0\r\n\r\n", /* junk after the size */
	    "1000000000000000\r\n",   /* 16 hex digits */
	    "0\r\n\n",                /* bare LF ending the message */
	};
	char out[64];
	size_t out_len, rest;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (decode(bad[i], 100, out, &out_len, &rest) != GW_CHUNKED_ERROR)
			CU_FAIL(bad[i]);
	}
	CU_ASSERT_EQUAL(decode("2 \t;x\r\n{}\r\n0\r\n\r\n", 1, out, &out_len, &rest),
			GW_CHUNKED_DONE);
}

static void test_chunked_bounds_extensions_and_trailers(void)
{
	static char big[20000];
	char out[64];
	size_t out_len, rest;

	strcpy(big, "1;");
	memset(big + 2, 'e', 10000);
	strcpy(big + 10002, "\r\nx\r\n0\r\n\r\n");
	CU_ASSERT_EQUAL(decode(big, 4096, out, &out_len, &rest), GW_CHUNKED_ERROR);
	strcpy(big, "0\r\n");
	for (size_t o = 3; o < 15000; o += 10)
		memcpy(big + o, "X-Pad: y\r\n", 10);
	strcpy(big + 15003, "\r\n");
	CU_ASSERT_EQUAL(decode(big, 4096, out, &out_len, &rest), GW_CHUNKED_ERROR);
}

SHOP_TEST_MAIN(
    "framing", {"reads one valid Content-Length", test_framing_reads_one_valid_content_length},
    {"refuses invalid Content-Length", test_framing_refuses_invalid_content_length},
    {"refuses repeated Content-Length", test_framing_refuses_repeated_content_length},
    {"refuses Content-Length with Transfer-Encoding", test_framing_refuses_length_with_coding},
    {"accepts only chunked", test_framing_accepts_only_chunked},
    {"chunked decodes in any pieces", test_chunked_decodes_in_any_pieces},
    {"chunked refuses malformed bodies", test_chunked_refuses_malformed_bodies},
    {"chunked bounds extensions and trailers", test_chunked_bounds_extensions_and_trailers})
