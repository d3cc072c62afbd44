/* test_config.c -- tests of lib/config.c: typed, validated environment reads. */
#include <string.h>
#include <stdlib.h>

#include "../cunit_main.h"

#include "config.h"

static void test_config_int_default_when_unset(void)
{
	shop_env e;

	unsetenv("SHOP_T_INT");
	shop_env_init(&e, "t");
	CU_ASSERT_EQUAL(shop_env_int(&e, "SHOP_T_INT", 8, 1, 256), 8);
	CU_ASSERT_EQUAL(shop_env_check(&e), 0);
}

static void test_config_int_rejects_junk_and_names_variable(void)
{
	static const char *const bad[] = {"abc", "12x", " 5", "+5", "999999999999999999999",
					  "0",   "257", "5.0"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		shop_env e;
		setenv("SHOP_T_INT", bad[i], 1);
		shop_env_init(&e, "t");
		CU_ASSERT_EQUAL(shop_env_int(&e, "SHOP_T_INT", 8, 1, 256), 8);
		CU_ASSERT_TRUE(e.failed);
		CU_ASSERT_PTR_NOT_NULL(strstr(e.err, "SHOP_T_INT"));
	}
	unsetenv("SHOP_T_INT");
}

/* SHOP_LOG_LEVEL, read the same way by every process. */
static void test_config_log_level(void)
{
	shop_env e;

	unsetenv("SHOP_LOG_LEVEL");
	shop_env_init(&e, "t");
	CU_ASSERT_EQUAL(shop_env_log_level(&e), SHOP_LOG_INFO);
	CU_ASSERT_FALSE(e.failed);
	setenv("SHOP_LOG_LEVEL", "warn", 1);
	shop_env_init(&e, "t");
	CU_ASSERT_EQUAL(shop_env_log_level(&e), SHOP_LOG_WARN);
	CU_ASSERT_FALSE(e.failed);
	setenv("SHOP_LOG_LEVEL", "loud", 1);
	shop_env_init(&e, "t");
	CU_ASSERT_EQUAL(shop_env_log_level(&e), SHOP_LOG_INFO);
	CU_ASSERT_TRUE(e.failed);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.err, "SHOP_LOG_LEVEL"));
	CU_ASSERT_PTR_NOT_NULL(strstr(e.err, "loud"));
	unsetenv("SHOP_LOG_LEVEL");
}

static void test_config_int_accepts_range(void)
{
	shop_env e;

	setenv("SHOP_T_INT", "256", 1);
	shop_env_init(&e, "t");
	CU_ASSERT_EQUAL(shop_env_int(&e, "SHOP_T_INT", 8, 1, 256), 256);
	CU_ASSERT_FALSE(e.failed);
	unsetenv("SHOP_T_INT");
}

static void test_config_keeps_first_error(void)
{
	shop_env e;

	setenv("SHOP_T_A", "x", 1);
	setenv("SHOP_T_B", "y", 1);
	shop_env_init(&e, "t");
	shop_env_int(&e, "SHOP_T_A", 1, 0, 9);
	shop_env_int(&e, "SHOP_T_B", 1, 0, 9);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.err, "SHOP_T_A"));
	CU_ASSERT_PTR_NULL(strstr(e.err, "SHOP_T_B"));
	unsetenv("SHOP_T_A");
	unsetenv("SHOP_T_B");
}

static void test_config_nng_url(void)
{
	shop_env e;

	shop_env_init(&e, "t");
	setenv("SHOP_T_URL", "tcp://127.0.0.1:7100", 1);
	CU_ASSERT_STRING_EQUAL(shop_env_nng_url(&e, "SHOP_T_URL", NULL), "tcp://127.0.0.1:7100");
	CU_ASSERT_FALSE(e.failed);
	setenv("SHOP_T_URL", "http://127.0.0.1:7100", 1);
	shop_env_nng_url(&e, "SHOP_T_URL", NULL);
	CU_ASSERT_TRUE(e.failed);
	shop_env_init(&e, "t");
	setenv("SHOP_T_URL", "tcp://127.0.0.1:99999", 1);
	shop_env_nng_url(&e, "SHOP_T_URL", NULL);
	CU_ASSERT_TRUE(e.failed);
	unsetenv("SHOP_T_URL");
}

static void test_config_hostport(void)
{
	char host[64];
	uint16_t port;

	CU_ASSERT_EQUAL(shop_parse_hostport("127.0.0.1:8080", host, sizeof(host), &port), 0);
	CU_ASSERT_STRING_EQUAL(host, "127.0.0.1");
	CU_ASSERT_EQUAL(port, 8080);
	CU_ASSERT_EQUAL(shop_parse_hostport("[::1]:9", host, sizeof(host), &port), 0);
	CU_ASSERT_STRING_EQUAL(host, "::1");
	CU_ASSERT_EQUAL(shop_parse_hostport("example.com:80", host, sizeof(host), &port), -1);
	CU_ASSERT_EQUAL(shop_parse_hostport("127.0.0.1", host, sizeof(host), &port), -1);
	CU_ASSERT_EQUAL(shop_parse_hostport("127.0.0.1:", host, sizeof(host), &port), -1);
	CU_ASSERT_EQUAL(shop_parse_hostport("127.0.0.1:65536", host, sizeof(host), &port), -1);
}

static void test_config_secret_too_short_is_not_echoed(void)
{
	shop_env e;

	setenv("SHOP_T_SECRET", "hunter2-short", 1);
	shop_env_init(&e, "t");
	CU_ASSERT_PTR_NULL(shop_env_secret(&e, "SHOP_T_SECRET", 32));
	CU_ASSERT_TRUE(e.failed);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.err, "SHOP_T_SECRET"));
	CU_ASSERT_PTR_NULL(strstr(e.err, "hunter2"));
	setenv("SHOP_T_SECRET", "0123456789abcdef0123456789abcdef", 1);
	shop_env_init(&e, "t");
	CU_ASSERT_PTR_NOT_NULL(shop_env_secret(&e, "SHOP_T_SECRET", 32));
	CU_ASSERT_FALSE(e.failed);
	unsetenv("SHOP_T_SECRET");
}

static void test_config_required_string(void)
{
	shop_env e;

	unsetenv("SHOP_T_DSN");
	shop_env_init(&e, "t");
	CU_ASSERT_PTR_NULL(shop_env_str(&e, "SHOP_T_DSN", NULL, true));
	CU_ASSERT_TRUE(e.failed);
	CU_ASSERT_NOT_EQUAL(shop_env_check(&e), 0);
}

SHOP_TEST_MAIN("config", {"int default when unset", test_config_int_default_when_unset},
	       {"int rejects junk, names the variable",
		test_config_int_rejects_junk_and_names_variable},
	       {"int accepts its range", test_config_int_accepts_range},
	       {"keeps the first error", test_config_keeps_first_error},
	       {"nng url", test_config_nng_url}, {"log level", test_config_log_level},
	       {"host:port", test_config_hostport},
	       {"short secret is refused, not echoed", test_config_secret_too_short_is_not_echoed},
	       {"required string", test_config_required_string})
