/* test_http_get.c -- unit tests of registry/http_get.c: URL splitting,
 * response parsing (Content-Length, chunked), and concurrent GETs against
 * stub servers on loopback (answering, refusing, never answering). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "../../lib/clock.h"
#include "../../registry/http_get.h"
#include "../cunit_main.h"
#include "http_stub.h"

static int split(const char *url, char *host, char *port, char *path)
{
	return reg_http_url_split(url, host, 64, port, 8, path, 64);
}

static void test_http_url_split_takes_host_port_and_path(void)
{
	char host[64], port[8], path[64];

	CU_ASSERT_EQUAL_FATAL(split("http://127.0.0.1:7321/metrics", host, port, path), 0);
	CU_ASSERT_STRING_EQUAL(host, "127.0.0.1");
	CU_ASSERT_STRING_EQUAL(port, "7321");
	CU_ASSERT_STRING_EQUAL(path, "/metrics");
	CU_ASSERT_EQUAL_FATAL(split("http://localhost", host, port, path), 0);
	CU_ASSERT_STRING_EQUAL(host, "localhost");
	CU_ASSERT_STRING_EQUAL(port, "80");
	CU_ASSERT_STRING_EQUAL(path, "/");
	CU_ASSERT_EQUAL_FATAL(split("http://[::1]:8080/a/metrics?x=1", host, port, path), 0);
	CU_ASSERT_STRING_EQUAL(host, "::1");
	CU_ASSERT_STRING_EQUAL(port, "8080");
	CU_ASSERT_STRING_EQUAL(path, "/a/metrics?x=1");
}

static void test_http_url_split_refuses_what_it_cannot_send(void)
{
	static const char *bad[] = {
	    "https://127.0.0.1:1/metrics",
	    "127.0.0.1:1/metrics",
	    "http://",
	    "http://:80/",
	    "http://u:p@127.0.0.1:1/",
	    "http://127.0.0.1:0/",
	    "http://127.0.0.1:65536/",
	    "http://127.0.0.1:/",
	    "http://127.0.0.1:8x/",
	    "http://127.0.0.1:1/a b",
	    "http://127.0.0.1:1/m\r\nX-Injected: 1",
	    "http://[::1/",
	    "http://[::1]x/",
	    "http://127.0.0.1:1/#frag",
	    "http://a-host-name-much-too-long-for-the-buffer-of-sixty-four-bytes.example/",
	};
	char host[64], port[8], path[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (split(bad[i], host, port, path) != -1)
			printf("\naccepted: %s\n", bad[i]);
		CU_ASSERT_EQUAL(split(bad[i], host, port, path), -1);
	}
}

static int parse(const char *raw, int *status, char *body, size_t cap)
{
	char buf[1024];
	size_t len = strlen(raw), blen;
	char *b;
	int rv;

	memcpy(buf, raw, len + 1);
	if ((rv = reg_http_response_parse(buf, len, status, &b, &blen)) == 0) {
		CU_ASSERT_FATAL(blen < cap);
		memcpy(body, b, blen);
		body[blen] = '\0';
	}
	return rv;
}

static void test_http_response_parse_honours_content_length(void)
{
	char body[256];
	int status;

	CU_ASSERT_EQUAL_FATAL(parse("HTTP/1.1 200 OK\r\ncontent-LENGTH:  5\r\n\r\nhello, and more",
				    &status, body, sizeof(body)),
			      0);
	CU_ASSERT_EQUAL(status, 200);
	CU_ASSERT_STRING_EQUAL(body, "hello");
	/* Fewer bytes than announced: cut short. */
	CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello", &status, body,
			      sizeof(body)),
			-1);
	/* No length: everything until the close; bare LFs are taken. */
	CU_ASSERT_EQUAL_FATAL(
	    parse("HTTP/1.0 404 Not Found\nServer: x\n\nnope\n", &status, body, sizeof(body)), 0);
	CU_ASSERT_EQUAL(status, 404);
	CU_ASSERT_STRING_EQUAL(body, "nope\n");
}

static void test_http_response_parse_decodes_chunked(void)
{
	char body[256];
	int status;

	CU_ASSERT_EQUAL_FATAL(
	    parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		  "5\r\nhello\r\nB;ext=1\r\n, and world\r\n0\r\nX-Trailer: 1\r\n\r\n",
		  &status, body, sizeof(body)),
	    0);
	CU_ASSERT_EQUAL(status, 200);
	CU_ASSERT_STRING_EQUAL(body, "hello, and world");
	CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			      "50\r\nhello\r\n0\r\n\r\n",
			      &status, body, sizeof(body)),
			-1);
	CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			      "zz\r\nhello\r\n0\r\n\r\n",
			      &status, body, sizeof(body)),
			-1);
	CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			      "5\r\nhelloXX0\r\n\r\n",
			      &status, body, sizeof(body)),
			-1);
}

static void test_http_response_parse_refuses_what_is_not_http(void)
{
	char body[256];
	int status;

	CU_ASSERT_EQUAL(parse("", &status, body, sizeof(body)), -1);
	CU_ASSERT_EQUAL(parse("SSH-2.0-OpenSSH_9.2\r\n", &status, body, sizeof(body)), -1);
	CU_ASSERT_EQUAL(parse("HTTP/1.1 2x0 OK\r\n\r\n", &status, body, sizeof(body)), -1);
	/* Headers never end. */
	CU_ASSERT_EQUAL(
	    parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", &status, body, sizeof(body)), -1);
	CU_ASSERT_EQUAL(parse("HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello", &status, body,
			      sizeof(body)),
			-1);
}

static void test_http_get_all_fetches_concurrently_within_the_deadline(void)
{
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
				 "Content-Length: 11\r\n\r\nmetric_a 1\n";
	static const char err[] =
	    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown";
	http_stub good, bad, silent1, silent2;
	char u[5][96];
	reg_http_get g[5];
	int64_t t0, took_ms;

	CU_ASSERT_FATAL(http_stub_start(&good, ok) == 0);
	CU_ASSERT_FATAL(http_stub_start(&bad, err) == 0);
	CU_ASSERT_FATAL(http_stub_start(&silent1, NULL) == 0);
	CU_ASSERT_FATAL(http_stub_start(&silent2, NULL) == 0);
	snprintf(u[0], sizeof(u[0]), "http://127.0.0.1:%u/metrics", good.port);
	snprintf(u[1], sizeof(u[1]), "http://127.0.0.1:%u/x/metrics", bad.port);
	snprintf(u[2], sizeof(u[2]), "http://127.0.0.1:%u/metrics", silent1.port);
	snprintf(u[3], sizeof(u[3]), "http://127.0.0.1:%u/metrics", silent2.port);
	snprintf(u[4], sizeof(u[4]), "http://127.0.0.1:%u/metrics", http_stub_dead_port());
	for (int i = 0; i < 5; i++)
		g[i].url = u[i];

	t0 = shop_now_mono_us();
	reg_http_get_all(g, 5, 300, 1024);
	took_ms = (shop_now_mono_us() - t0) / 1000;

	/* Both silent servers cost one timeout together, not one each. */
	CU_ASSERT(took_ms >= 250 && took_ms < 550);
	CU_ASSERT_EQUAL(g[0].status, 200);
	CU_ASSERT_STRING_EQUAL(g[0].error, "");
	CU_ASSERT_PTR_NOT_NULL_FATAL(g[0].body);
	CU_ASSERT_EQUAL(g[0].len, 11);
	CU_ASSERT_STRING_EQUAL(g[0].body, "metric_a 1\n");
	CU_ASSERT_PTR_NOT_NULL(strstr(good.last_request, "GET /metrics HTTP/1.0\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(good.last_request, "\r\nHost: 127.0.0.1:"));
	CU_ASSERT_EQUAL(g[1].status, 503);
	CU_ASSERT_PTR_NOT_NULL(g[1].body);
	CU_ASSERT_PTR_NOT_NULL(strstr(bad.last_request, "GET /x/metrics HTTP/1.0\r\n"));
	for (int i = 2; i < 4; i++) {
		CU_ASSERT_EQUAL(g[i].status, 0);
		CU_ASSERT_PTR_NULL(g[i].body);
		CU_ASSERT_STRING_EQUAL(g[i].error, "timed out");
	}
	CU_ASSERT_EQUAL(g[4].status, 0);
	CU_ASSERT_PTR_NULL(g[4].body);
	CU_ASSERT_PTR_NOT_NULL(strstr(g[4].error, "connect"));
	for (int i = 0; i < 5; i++)
		free(g[i].body);
	http_stub_stop(&good);
	http_stub_stop(&bad);
	http_stub_stop(&silent1);
	http_stub_stop(&silent2);
}

static void test_http_get_all_refuses_a_body_over_the_limit(void)
{
	static const char big[] =
	    "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n0123456789abcdefghij";
	http_stub s;
	char url[96];
	reg_http_get g;

	CU_ASSERT_FATAL(http_stub_start(&s, big) == 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/metrics", s.port);
	g.url = url;
	reg_http_get_all(&g, 1, 1000, 10);
	CU_ASSERT_PTR_NULL(g.body);
	CU_ASSERT_STRING_EQUAL(g.error, "response too large");
	reg_http_get_all(&g, 1, 1000, 20);
	CU_ASSERT_PTR_NOT_NULL(g.body);
	free(g.body);
	/* A URL it cannot use fails without a connection. */
	g.url = "ftp://127.0.0.1/";
	reg_http_get_all(&g, 1, 1000, 20);
	CU_ASSERT_PTR_NULL(g.body);
	CU_ASSERT_NOT_EQUAL(g.error[0], '\0');
	CU_ASSERT_EQUAL(http_stub_requests(&s), 2);
	http_stub_stop(&s);
}

/* A server that keeps the connection open after a response with a
 * Content-Length costs no timeout. */
static void test_http_get_all_ends_at_content_length_without_a_close(void)
{
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
	http_stub s;
	char url[96];
	reg_http_get g;
	int64_t t0;

	CU_ASSERT_FATAL(http_stub_start(&s, ok) == 0);
	pthread_mutex_lock(&s.mtx);
	s.keep_open = true;
	pthread_mutex_unlock(&s.mtx);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/metrics", s.port);
	g.url = url;
	t0 = shop_now_mono_us();
	reg_http_get_all(&g, 1, 2000, 100);
	CU_ASSERT((shop_now_mono_us() - t0) / 1000 < 1000);
	CU_ASSERT_EQUAL(g.status, 200);
	CU_ASSERT_PTR_NOT_NULL_FATAL(g.body);
	CU_ASSERT_STRING_EQUAL(g.body, "abc");
	free(g.body);
	http_stub_stop(&s);
}

SHOP_TEST_MAIN(
    "http_get",
    {"url split takes host, port and path", test_http_url_split_takes_host_port_and_path},
    {"url split refuses what it cannot send", test_http_url_split_refuses_what_it_cannot_send},
    {"response parse honours Content-Length", test_http_response_parse_honours_content_length},
    {"response parse decodes chunked", test_http_response_parse_decodes_chunked},
    {"response parse refuses what is not HTTP", test_http_response_parse_refuses_what_is_not_http},
    {"fetches concurrently within the deadline",
     test_http_get_all_fetches_concurrently_within_the_deadline},
    {"refuses a body over the limit", test_http_get_all_refuses_a_body_over_the_limit},
    {"ends at Content-Length without a close",
     test_http_get_all_ends_at_content_length_without_a_close})
