/* test_trace.c -- tests of lib/trace.c: trace context, span JSON, the span
 * queue, the collector URL and the reporter against a local listener. */
#include "../cunit_main.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>

#include "clock.h"
#include "trace.h"

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static void test_traceparent_parse_takes_version_00(void)
{
	shop_trace_ctx c;
	char out[SHOP_TRACEPARENT_LEN];

	CU_ASSERT_EQUAL_FATAL(shop_traceparent_parse(TP, &c), 0);
	CU_ASSERT_STRING_EQUAL(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
	CU_ASSERT_STRING_EQUAL(c.span_id, "00f067aa0ba902b7");
	CU_ASSERT_EQUAL(c.flags, 1);
	shop_traceparent_format(&c, out);
	CU_ASSERT_STRING_EQUAL(out, TP);
	CU_ASSERT_EQUAL(
	    shop_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &c),
	    0);
	CU_ASSERT_EQUAL(c.flags, 0);
}

static void test_traceparent_parse_refuses_what_is_not_version_00(void)
{
	const char *bad[] = {
	    NULL,
	    "",
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
	    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
	    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
	    "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
	    "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
	};
	shop_trace_ctx c;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(shop_traceparent_parse(bad[i], &c), -1);
		CU_ASSERT_STRING_EQUAL(c.trace_id, "");
	}
}

static void test_trace_child_keeps_trace_and_flags_with_a_new_span(void)
{
	shop_trace_ctx parent, a, b;
	char tp[SHOP_TRACEPARENT_LEN];

	CU_ASSERT_EQUAL_FATAL(shop_traceparent_parse(TP, &parent), 0);
	shop_trace_child(&parent, &a);
	shop_trace_child(&parent, &b);
	CU_ASSERT_STRING_EQUAL(a.trace_id, parent.trace_id);
	CU_ASSERT_EQUAL(a.flags, parent.flags);
	CU_ASSERT_EQUAL(strlen(a.span_id), 16);
	CU_ASSERT_STRING_NOT_EQUAL(a.span_id, parent.span_id);
	CU_ASSERT_STRING_NOT_EQUAL(a.span_id, b.span_id);
	/* The child formats to a traceparent that parses back to itself. */
	shop_traceparent_format(&a, tp);
	CU_ASSERT_EQUAL_FATAL(shop_traceparent_parse(tp, &b), 0);
	CU_ASSERT_STRING_EQUAL(b.span_id, a.span_id);
}

static cJSON *json_of(const char *s)
{
	cJSON *j = cJSON_Parse(s);

	CU_ASSERT_PTR_NOT_NULL(j);
	return j;
}

static const char *jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) ? v->valuestring : "<missing>";
}

static void test_span_json_is_zipkin_v2(void)
{
	shop_span s;
	char buf[4096];
	cJSON *j, *tags;

	shop_span_begin(&s, SHOP_SPAN_CLIENT, "/shop.v1.ProductService/GetProducts",
			"4bf92f3577b34da6a3ce929d0e0e4736", "1111111111111111", "00f067aa0ba902b7",
			true);
	s.timestamp_us = 1700000000123456;
	s.start_mono_us = shop_now_mono_us() - 1500;
	snprintf(s.remote_service, sizeof(s.remote_service), "product-a");
	shop_span_tag(&s, "rpc.method", "%s", "/shop.v1.ProductService/GetProducts");
	shop_span_tag(&s, "error", "say \"%s\"\n", "no");
	shop_span_finish(&s); /* no reporter runs: only sets the duration */
	CU_ASSERT(s.duration_us >= 1500);
	CU_ASSERT_FATAL(shop_span_json(&s, "order", buf, sizeof(buf)) > 0);
	j = json_of(buf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_STRING_EQUAL(jstr(j, "traceId"), "4bf92f3577b34da6a3ce929d0e0e4736");
	CU_ASSERT_STRING_EQUAL(jstr(j, "id"), "1111111111111111");
	CU_ASSERT_STRING_EQUAL(jstr(j, "parentId"), "00f067aa0ba902b7");
	CU_ASSERT_STRING_EQUAL(jstr(j, "name"), "/shop.v1.ProductService/GetProducts");
	CU_ASSERT_STRING_EQUAL(jstr(j, "kind"), "CLIENT");
	CU_ASSERT_EQUAL(cJSON_GetObjectItem(j, "timestamp")->valuedouble, 1700000000123456.0);
	CU_ASSERT(cJSON_GetObjectItem(j, "duration")->valuedouble >= 1500);
	CU_ASSERT_STRING_EQUAL(jstr(cJSON_GetObjectItem(j, "localEndpoint"), "serviceName"),
			       "order");
	CU_ASSERT_STRING_EQUAL(jstr(cJSON_GetObjectItem(j, "remoteEndpoint"), "serviceName"),
			       "product-a");
	tags = cJSON_GetObjectItem(j, "tags");
	CU_ASSERT_STRING_EQUAL(jstr(tags, "rpc.method"), "/shop.v1.ProductService/GetProducts");
	CU_ASSERT_STRING_EQUAL(jstr(tags, "error"), "say \"no\"\n");
	cJSON_Delete(j);
}

static void test_span_json_of_a_root_has_no_parent_and_a_duration(void)
{
	shop_span s;
	char buf[1024];
	cJSON *j;

	shop_span_begin(&s, SHOP_SPAN_SERVER, "POST /orders", "4bf92f3577b34da6a3ce929d0e0e4736",
			"2222222222222222", "", true);
	CU_ASSERT_FATAL(shop_span_json(&s, "gateway", buf, sizeof(buf)) > 0);
	j = json_of(buf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, "parentId"));
	CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, "remoteEndpoint"));
	CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, "tags"));
	CU_ASSERT_STRING_EQUAL(jstr(j, "kind"), "SERVER");
	/* Zipkin wants a positive duration, even for a span never finished. */
	CU_ASSERT(cJSON_GetObjectItem(j, "duration")->valuedouble >= 1);
	cJSON_Delete(j);
}

static void test_span_json_refuses_a_small_buffer(void)
{
	shop_span s;
	char buf[64];

	shop_span_begin(&s, SHOP_SPAN_SERVER, "x", "4bf92f3577b34da6a3ce929d0e0e4736",
			"2222222222222222", "", true);
	memset(buf, 'z', sizeof(buf));
	CU_ASSERT_EQUAL(shop_span_json(&s, "gateway", buf, sizeof(buf)), 0);
	CU_ASSERT_EQUAL(buf[0], '\0');
}

static void test_span_queue_drops_and_counts_when_full(void)
{
	shop_span_queue *q = shop_span_queue_create(3);
	shop_span s, out[8];

	CU_ASSERT_PTR_NOT_NULL_FATAL(q);
	memset(&s, 0, sizeof(s));
	for (int i = 0; i < 5; i++) {
		snprintf(s.name, sizeof(s.name), "span %d", i);
		CU_ASSERT_EQUAL(shop_span_queue_push(q, &s), i < 3);
	}
	CU_ASSERT_EQUAL(shop_span_queue_dropped(q), 2);
	CU_ASSERT_EQUAL(shop_span_queue_pop(q, out, 2), 2);
	CU_ASSERT_STRING_EQUAL(out[0].name, "span 0");
	CU_ASSERT_STRING_EQUAL(out[1].name, "span 1");
	/* Room again: the ring wraps. */
	CU_ASSERT(shop_span_queue_push(q, &s));
	CU_ASSERT_EQUAL(shop_span_queue_pop(q, out, 8), 2);
	CU_ASSERT_STRING_EQUAL(out[0].name, "span 2");
	CU_ASSERT_STRING_EQUAL(out[1].name, "span 4");
	CU_ASSERT_EQUAL(shop_span_queue_pop(q, out, 8), 0);
	CU_ASSERT_EQUAL(shop_span_queue_dropped(q), 2);
	shop_span_queue_destroy(q);
}

static void *push_later(void *arg)
{
	shop_span_queue *q = arg;
	shop_span s;

	memset(&s, 0, sizeof(s));
	usleep(50 * 1000);
	for (int i = 0; i < 4; i++)
		shop_span_queue_push(q, &s);
	return NULL;
}

static void test_span_queue_wait_wakes_at_the_batch_size(void)
{
	shop_span_queue *q = shop_span_queue_create(16);
	pthread_t t;
	int64_t t0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(q);
	/* Nothing comes: the wait ends at its timeout. */
	t0 = shop_now_mono_us();
	CU_ASSERT_EQUAL(shop_span_queue_wait(q, 4, 100), 0);
	CU_ASSERT(shop_now_mono_us() - t0 >= 90 * 1000);
	/* Four come after 50 ms: the wait ends then, long before 5 s. */
	t0 = shop_now_mono_us();
	pthread_create(&t, NULL, push_later, q);
	CU_ASSERT_EQUAL(shop_span_queue_wait(q, 4, 5000), 4);
	CU_ASSERT(shop_now_mono_us() - t0 < 2000 * 1000);
	pthread_join(t, NULL);
	/* Closed: no wait at all. */
	shop_span_queue_close(q);
	t0 = shop_now_mono_us();
	shop_span_queue_wait(q, 100, 5000);
	CU_ASSERT(shop_now_mono_us() - t0 < 1000 * 1000);
	shop_span_queue_destroy(q);
}

static void test_zipkin_url_parse(void)
{
	shop_zipkin_url u;

	CU_ASSERT_EQUAL_FATAL(shop_zipkin_url_parse("http://127.0.0.1:9411/api/v2/spans", &u), 0);
	CU_ASSERT_STRING_EQUAL(u.host, "127.0.0.1");
	CU_ASSERT_STRING_EQUAL(u.port, "9411");
	CU_ASSERT_STRING_EQUAL(u.path, "/api/v2/spans");
	CU_ASSERT_STRING_EQUAL(u.hostport, "127.0.0.1:9411");
	CU_ASSERT_EQUAL_FATAL(shop_zipkin_url_parse("http://zipkin", &u), 0);
	CU_ASSERT_STRING_EQUAL(u.port, "80");
	CU_ASSERT_STRING_EQUAL(u.path, "/");
	CU_ASSERT_EQUAL_FATAL(shop_zipkin_url_parse("http://[::1]:9411/s", &u), 0);
	CU_ASSERT_STRING_EQUAL(u.host, "::1");
	CU_ASSERT_STRING_EQUAL(u.hostport, "[::1]:9411");
	const char *bad[] = {NULL,
			     "",
			     "https://127.0.0.1:9411/api/v2/spans",
			     "http://",
			     "http://:9411/x",
			     "http://h:0/x",
			     "http://h:65536/x",
			     "http://h:x/x",
			     "http://u@h:1/x",
			     "http://h:1/x y",
			     "http://[::1/x",
			     "127.0.0.1:9411"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CU_ASSERT_EQUAL(shop_zipkin_url_parse(bad[i], &u), -1);
}

/* ---- the reporter against a one-shot collector ---------------------------- */

/* Accepts one connection on fd and reads one HTTP request whole; answers
 * status. Returns the body (caller frees), NULL on a timeout. */
static char *collect_one(int lfd, int status, char *head_out, size_t head_cap)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	char *buf = NULL, *body, reply[128];
	size_t len = 0, cap = 0;
	long clen = -1;
	int fd;

	if (poll(&p, 1, 5000) != 1 || (fd = accept(lfd, NULL, NULL)) < 0)
		return NULL;
	for (;;) {
		char *hend;
		ssize_t r;

		if (len + 4096 + 1 > cap) {
			cap = cap * 2 + 8192;
			buf = realloc(buf, cap);
		}
		p = (struct pollfd){.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 5000) != 1 || (r = recv(fd, buf + len, 4096, 0)) <= 0)
			break;
		len += (size_t)r;
		buf[len] = '\0';
		if ((hend = strstr(buf, "\r\n\r\n")) == NULL)
			continue;
		if (clen < 0) {
			const char *cl = strcasestr(buf, "\r\ncontent-length:");
			clen = cl != NULL ? strtol(cl + 17, NULL, 10) : 0;
		}
		if ((long)(len - (size_t)(hend + 4 - buf)) >= clen) {
			snprintf(head_out, head_cap, "%.*s", (int)(hend - buf), buf);
			body = strdup(hend + 4);
			snprintf(reply, sizeof(reply), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n",
				 status);
			send(fd, reply, strlen(reply), MSG_NOSIGNAL);
			close(fd);
			free(buf);
			return body;
		}
	}
	close(fd);
	free(buf);
	return NULL;
}

static void test_reporter_posts_a_batch_to_the_collector(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	char url[128], head[2048];
	shop_trace_stats st;
	shop_span s;
	char *body;
	cJSON *j;
	int lfd;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	CU_ASSERT_FATAL(lfd >= 0);
	CU_ASSERT_FATAL(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CU_ASSERT_FATAL(listen(lfd, 4) == 0);
	CU_ASSERT_FATAL(getsockname(lfd, (struct sockaddr *)&a, &alen) == 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/api/v2/spans", ntohs(a.sin_port));

	CU_ASSERT_FALSE(shop_trace_recording());
	CU_ASSERT_EQUAL_FATAL(shop_trace_start(url, "test-svc"), 0);
	CU_ASSERT(shop_trace_recording());
	for (int i = 0; i < 3; i++) {
		char id[17];

		shop_trace_new_span_id(id);
		shop_span_begin(&s, SHOP_SPAN_SERVER, "op", "4bf92f3577b34da6a3ce929d0e0e4736", id,
				"00f067aa0ba902b7", true);
		shop_span_finish(&s);
	}
	/* Not sampled: never sent. */
	shop_span_begin(&s, SHOP_SPAN_SERVER, "unsampled", "4bf92f3577b34da6a3ce929d0e0e4736",
			"3333333333333333", "", false);
	shop_span_finish(&s);

	body = collect_one(lfd, 202, head, sizeof(head));
	CU_ASSERT_PTR_NOT_NULL_FATAL(body);
	CU_ASSERT(strncmp(head, "POST /api/v2/spans HTTP/1.1\r\n", 29) == 0);
	CU_ASSERT_PTR_NOT_NULL(strcasestr(head, "\r\ncontent-type: application/json"));
	j = cJSON_Parse(body);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT(cJSON_IsArray(j));
	CU_ASSERT_EQUAL(cJSON_GetArraySize(j), 3);
	CU_ASSERT_STRING_EQUAL(
	    jstr(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "localEndpoint"), "serviceName"),
	    "test-svc");
	cJSON_Delete(j);
	free(body);

	shop_trace_stop();
	CU_ASSERT_FALSE(shop_trace_recording());
	shop_trace_stats_get(&st);
	CU_ASSERT_EQUAL(st.sent, 3);
	CU_ASSERT_EQUAL(st.dropped, 0);
	close(lfd);
}

static void test_reporter_counts_spans_the_collector_refuses(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	shop_trace_stats before, after;
	char url[128], head[2048];
	shop_span s;
	char *body;
	int lfd;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	CU_ASSERT_FATAL(lfd >= 0);
	CU_ASSERT_FATAL(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CU_ASSERT_FATAL(listen(lfd, 4) == 0);
	CU_ASSERT_FATAL(getsockname(lfd, (struct sockaddr *)&a, &alen) == 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/api/v2/spans", ntohs(a.sin_port));
	shop_trace_stats_get(&before);
	CU_ASSERT_EQUAL_FATAL(shop_trace_start(url, "test-svc"), 0);
	shop_span_begin(&s, SHOP_SPAN_CLIENT, "op", "4bf92f3577b34da6a3ce929d0e0e4736",
			"4444444444444444", "", true);
	shop_span_finish(&s);
	body = collect_one(lfd, 500, head, sizeof(head));
	CU_ASSERT_PTR_NOT_NULL(body);
	free(body);
	shop_trace_stop();
	shop_trace_stats_get(&after);
	CU_ASSERT_EQUAL(after.sent, before.sent);
	CU_ASSERT_EQUAL(after.dropped, before.dropped + 1);
	close(lfd);
}

SHOP_TEST_MAIN(
    "trace", {"traceparent parse takes version 00", test_traceparent_parse_takes_version_00},
    {"traceparent parse refuses what is not version 00",
     test_traceparent_parse_refuses_what_is_not_version_00},
    {"child keeps trace and flags with a new span",
     test_trace_child_keeps_trace_and_flags_with_a_new_span},
    {"span json is zipkin v2", test_span_json_is_zipkin_v2},
    {"span json of a root has no parent and a duration",
     test_span_json_of_a_root_has_no_parent_and_a_duration},
    {"span json refuses a small buffer", test_span_json_refuses_a_small_buffer},
    {"span queue drops and counts when full", test_span_queue_drops_and_counts_when_full},
    {"span queue wait wakes at the batch size", test_span_queue_wait_wakes_at_the_batch_size},
    {"zipkin url parse", test_zipkin_url_parse},
    {"reporter posts a batch to the collector", test_reporter_posts_a_batch_to_the_collector},
    {"reporter counts spans the collector refuses",
     test_reporter_counts_spans_the_collector_refuses})
