/* test_health_pg.c -- lib/health.c against a real PostgreSQL and Redis
 * (SHOP_TEST_PG_DSN, SHOP_TEST_REDIS_ADDR), one that is not there, and one
 * that never answers. */
#include "../cunit_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "clock.h"
#include "config.h"
#include "health.h"

/* Renders readiness until its body holds want, for up to ms; returns the
 * last status (body in last, cap bytes). */
static int wait_for(shop_health *h, const char *want, int ms, char *last, size_t cap)
{
	int64_t until = shop_now_mono_us() + (int64_t)ms * 1000;
	int status = 0;

	for (;;) {
		char *body;
		size_t len;

		status = shop_health_render(h, true, &body, &len);
		snprintf(last, cap, "%s", body != NULL ? body : "");
		free(body);
		if (strstr(last, want) != NULL || shop_now_mono_us() > until)
			return status;
		usleep(20 * 1000);
	}
}

static void test_health_database_and_redis_up_is_ready(void)
{
	const char *dsn = getenv("SHOP_TEST_PG_DSN"), *raddr = getenv("SHOP_TEST_REDIS_ADDR");
	shop_health_config c = {0};
	shop_health *h = NULL;
	char host[64], body[1024];
	uint16_t port;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dsn);
	CU_ASSERT_PTR_NOT_NULL_FATAL(raddr);
	CU_ASSERT_EQUAL_FATAL(shop_parse_hostport(raddr, host, sizeof(host), &port), 0);
	c.pg_dsn = dsn;
	c.redis_host = host;
	c.redis_port = port;
	c.timeout_ms = 1000;
	CU_ASSERT_EQUAL_FATAL(shop_health_create(&h, &c), 0);
	CU_ASSERT_EQUAL(wait_for(h, "\"redis\":\"up\"", 5000, body, sizeof(body)), 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "\"status\":\"ready\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "\"database\":\"up\""));
	shop_health_destroy(h);
}

static void test_health_database_absent_is_not_ready_cache_absent_degrades(void)
{
	const char *dsn = getenv("SHOP_TEST_PG_DSN");
	shop_health_config c = {0};
	shop_health *h = NULL;
	char body[1024];
	char *live;
	size_t len;

	/* Port 1 on loopback: refused at once. */
	CU_ASSERT_PTR_NOT_NULL_FATAL(dsn);
	c.pg_dsn = "postgresql://shop@127.0.0.1:1/none";
	c.redis_host = "127.0.0.1";
	c.redis_port = 1;
	c.timeout_ms = 500;
	CU_ASSERT_EQUAL_FATAL(shop_health_create(&h, &c), 0);
	CU_ASSERT_EQUAL(wait_for(h, "\"redis\":\"down\"", 5000, body, sizeof(body)), 503);
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "\"database\":\"down\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "\"status\":\"not_ready\""));
	/* Liveness stays 200. */
	CU_ASSERT_EQUAL(shop_health_render(h, false, &live, &len), 200);
	CU_ASSERT_PTR_NOT_NULL(live != NULL ? strstr(live, "\"status\":\"degraded\"") : NULL);
	free(live);
	shop_health_destroy(h);

	/* The database up, the cache absent: ready, degraded. */
	c.pg_dsn = dsn;
	CU_ASSERT_EQUAL_FATAL(shop_health_create(&h, &c), 0);
	CU_ASSERT_EQUAL(wait_for(h, "\"database\":\"up\"", 5000, body, sizeof(body)), 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "\"status\":\"degraded\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "\"redis down\""));
	shop_health_destroy(h);
}

/* A server that takes the connection and never says a word: the check
 * gives up at its timeout, and stopping does not hang on it. */
static void test_health_silent_database_times_out(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	shop_health_config c = {0};
	shop_health *h = NULL;
	char dsn[128], body[1024];
	int64_t t0;
	int lfd;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	CU_ASSERT_FATAL(lfd >= 0);
	CU_ASSERT_FATAL(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CU_ASSERT_FATAL(listen(lfd, 16) == 0); /* never accepted, never answered */
	CU_ASSERT_FATAL(getsockname(lfd, (struct sockaddr *)&a, &alen) == 0);
	snprintf(dsn, sizeof(dsn), "postgresql://shop@127.0.0.1:%u/none?sslmode=disable",
		 ntohs(a.sin_port));
	c.pg_dsn = dsn;
	c.timeout_ms = 300;
	CU_ASSERT_EQUAL_FATAL(shop_health_create(&h, &c), 0);
	t0 = shop_now_mono_us();
	CU_ASSERT_EQUAL(wait_for(h, "\"database\":\"down\"", 3000, body, sizeof(body)), 503);
	CU_ASSERT(shop_now_mono_us() - t0 < 2000 * 1000);
	t0 = shop_now_mono_us();
	shop_health_destroy(h);
	CU_ASSERT(shop_now_mono_us() - t0 < 1000 * 1000);
	close(lfd);
}

SHOP_TEST_MAIN("health",
	       {"database and redis up is ready", test_health_database_and_redis_up_is_ready},
	       {"database absent is not ready, cache absent degrades",
		test_health_database_absent_is_not_ready_cache_absent_degrades},
	       {"silent database times out", test_health_silent_database_times_out})
