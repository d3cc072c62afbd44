/* test_health.c -- tests of lib/health.c: the /healthz and /readyz answers
 * for a report, and a health object with nothing to check. */
#include "../cunit_main.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "health.h"

/* Renders r; returns the parsed body (caller frees) and the status. */
static cJSON *render(const shop_health_report *r, bool readiness, int *status)
{
	char *body = NULL;
	size_t len = 0;
	cJSON *j;

	*status = shop_health_report_json(r, readiness, &body, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(body);
	CU_ASSERT_EQUAL(strlen(body), len);
	j = cJSON_Parse(body);
	CU_ASSERT_PTR_NOT_NULL(j);
	free(body);
	return j;
}

static const char *str_at(const cJSON *j, const char *a, const char *b)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, a);

	if (b != NULL)
		v = cJSON_GetObjectItemCaseSensitive(v, b);
	return cJSON_IsString(v) ? v->valuestring : "<missing>";
}

/* Whether reasons holds s. */
static bool has_reason(const cJSON *j, const char *s)
{
	const cJSON *r;

	cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(
				  j, "reasons")) if (cJSON_IsString(r) &&
						     strcmp(r->valuestring, s) == 0) return true;
	return false;
}

static void all_up(shop_health_report *r)
{
	memset(r, 0, sizeof(*r));
	r->database = SHOP_CHECK_UP;
	r->redis = SHOP_CHECK_UP;
	r->registry = SHOP_CHECK_UP;
	r->n_services = 1;
	strcpy(r->services[0].name, "product");
	r->services[0].instances = 2;
	r->n_breakers = 2;
	strcpy(r->breakers[0].name, "order:product-a");
	r->breakers[0].state = SHOP_BREAKER_CLOSED;
	strcpy(r->breakers[1].name, "order:product-b");
	r->breakers[1].state = SHOP_BREAKER_CLOSED;
}

static void test_health_all_up_is_ready_and_up(void)
{
	shop_health_report r;
	int status;
	cJSON *j;

	all_up(&r);
	j = render(&r, true, &status);
	CU_ASSERT_EQUAL(status, 200);
	CU_ASSERT_STRING_EQUAL(str_at(j, "status", NULL), "ready");
	CU_ASSERT_STRING_EQUAL(str_at(j, "checks", "database"), "up");
	CU_ASSERT_STRING_EQUAL(str_at(j, "checks", "redis"), "up");
	CU_ASSERT_STRING_EQUAL(str_at(j, "checks", "registry"), "up");
	CU_ASSERT_EQUAL(
	    cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "checks"), "services"),
				"product")
		->valueint,
	    2);
	CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(j, "reasons"));
	cJSON_Delete(j);
	/* Liveness with nothing to report says just that. */
	j = render(&r, false, &status);
	CU_ASSERT_EQUAL(status, 200);
	CU_ASSERT_STRING_EQUAL(str_at(j, "status", NULL), "up");
	CU_ASSERT_EQUAL(cJSON_GetArraySize(j), 1);
	cJSON_Delete(j);
}

/* The Spring trap: an open breaker, a cache down or a registry away never
 * take the process out of service, and never fail liveness. */
static void test_health_breaker_cache_registry_only_degrade(void)
{
	shop_health_report r;
	int status;
	cJSON *j;

	all_up(&r);
	r.redis = SHOP_CHECK_DOWN;
	r.registry = SHOP_CHECK_DOWN;
	r.breakers[1].state = SHOP_BREAKER_OPEN;
	for (int readiness = 0; readiness < 2; readiness++) {
		j = render(&r, readiness, &status);
		CU_ASSERT_EQUAL(status, 200);
		CU_ASSERT_STRING_EQUAL(str_at(j, "status", NULL), "degraded");
		CU_ASSERT_STRING_EQUAL(str_at(j, "checks", "redis"), "down");
		CU_ASSERT_STRING_EQUAL(str_at(j, "checks", "registry"), "away");
		CU_ASSERT_STRING_EQUAL(
		    str_at(cJSON_GetObjectItem(j, "checks"), "breakers", "order:product-b"),
		    "open");
		CU_ASSERT_STRING_EQUAL(
		    str_at(cJSON_GetObjectItem(j, "checks"), "breakers", "order:product-a"),
		    "closed");
		CU_ASSERT(has_reason(j, "redis down"));
		CU_ASSERT(has_reason(j, "registry away"));
		CU_ASSERT(has_reason(j, "breaker order:product-b open"));
		CU_ASSERT_FALSE(has_reason(j, "breaker order:product-a closed"));
		cJSON_Delete(j);
	}
	/* Half-open admits trial calls: shown, but no degradation. */
	all_up(&r);
	r.breakers[0].state = SHOP_BREAKER_HALF_OPEN;
	j = render(&r, true, &status);
	CU_ASSERT_EQUAL(status, 200);
	CU_ASSERT_STRING_EQUAL(str_at(j, "status", NULL), "ready");
	CU_ASSERT_STRING_EQUAL(
	    str_at(cJSON_GetObjectItem(j, "checks"), "breakers", "order:product-a"), "half_open");
	cJSON_Delete(j);
}

static void test_health_database_down_fails_readiness_only(void)
{
	shop_health_report r;
	int status;
	cJSON *j;

	all_up(&r);
	r.database = SHOP_CHECK_DOWN;
	j = render(&r, true, &status);
	CU_ASSERT_EQUAL(status, 503);
	CU_ASSERT_STRING_EQUAL(str_at(j, "status", NULL), "not_ready");
	CU_ASSERT_STRING_EQUAL(str_at(j, "checks", "database"), "down");
	CU_ASSERT(has_reason(j, "database down"));
	cJSON_Delete(j);
	j = render(&r, false, &status);
	CU_ASSERT_EQUAL(status, 200);
	CU_ASSERT_STRING_EQUAL(str_at(j, "status", NULL), "degraded");
	cJSON_Delete(j);
	/* Not checked yet counts as down for readiness. */
	r.database = SHOP_CHECK_UNKNOWN;
	j = render(&r, true, &status);
	CU_ASSERT_EQUAL(status, 503);
	CU_ASSERT_STRING_EQUAL(str_at(j, "checks", "database"), "unknown");
	cJSON_Delete(j);
}

static void test_health_missing_service_or_draining_fails_readiness(void)
{
	shop_health_report r;
	int status;
	cJSON *j;

	all_up(&r);
	r.services[0].instances = 0;
	j = render(&r, true, &status);
	CU_ASSERT_EQUAL(status, 503);
	CU_ASSERT(has_reason(j, "no instance of product"));
	cJSON_Delete(j);
	all_up(&r);
	r.draining = true;
	j = render(&r, true, &status);
	CU_ASSERT_EQUAL(status, 503);
	CU_ASSERT(has_reason(j, "draining"));
	cJSON_Delete(j);
	j = render(&r, false, &status);
	CU_ASSERT_EQUAL(status, 200);
	cJSON_Delete(j);
}

static void test_health_leaves_out_what_it_does_not_check(void)
{
	shop_health_report r;
	int status;
	cJSON *j;

	memset(&r, 0, sizeof(r)); /* every check SHOP_CHECK_NONE */
	j = render(&r, true, &status);
	CU_ASSERT_EQUAL(status, 200);
	CU_ASSERT_STRING_EQUAL(str_at(j, "status", NULL), "ready");
	CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "checks"), "database"));
	CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "checks"), "redis"));
	CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "checks"), "registry"));
	cJSON_Delete(j);
}

/* A health object with nothing to check (no thread): up and ready; it
 * stops being ready once draining. */
static void test_health_object_without_checks(void)
{
	shop_health_config c = {0};
	shop_health *h = NULL;
	char *body;
	size_t len;

	CU_ASSERT_EQUAL_FATAL(shop_health_create(&h, &c), 0);
	CU_ASSERT_EQUAL(shop_health_render(h, true, &body, &len), 200);
	CU_ASSERT_PTR_NOT_NULL_FATAL(body);
	CU_ASSERT_PTR_NOT_NULL(strstr(body, "\"status\":\"ready\""));
	free(body);
	shop_health_set_draining(h);
	CU_ASSERT_EQUAL(shop_health_render(h, true, &body, &len), 503);
	free(body);
	CU_ASSERT_EQUAL(shop_health_render(h, false, &body, &len), 200);
	free(body);
	shop_health_destroy(h);
	shop_health_destroy(NULL);
}

SHOP_TEST_MAIN("health", {"all up is ready and up", test_health_all_up_is_ready_and_up},
	       {"breaker, cache and registry only degrade",
		test_health_breaker_cache_registry_only_degrade},
	       {"database down fails readiness only",
		test_health_database_down_fails_readiness_only},
	       {"missing service or draining fails readiness",
		test_health_missing_service_or_draining_fails_readiness},
	       {"leaves out what it does not check", test_health_leaves_out_what_it_does_not_check},
	       {"object without checks", test_health_object_without_checks})
