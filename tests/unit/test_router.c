/* test_router.c -- tests of edge-gateway/router.c: path normalisation,
 * route matching, path ids, page_size and media types. */
#include "../cunit_main.h"

#include <string.h>

#include "router.h"

static const char *norm(const char *raw)
{
	static char out[256];

	return gw_path_normalize(raw, out, sizeof(out)) == 0 ? out : NULL;
}

#define ASSERT_NORM(raw, want) CU_ASSERT_STRING_EQUAL(norm(raw) ? norm(raw) : "(refused)", want)

static void test_router_normalises_dots_and_slashes(void)
{
	ASSERT_NORM("/orders/1", "/orders/1");
	ASSERT_NORM("//orders/1", "/orders/1");
	ASSERT_NORM("/orders//1", "/orders/1");
	ASSERT_NORM("/auth/../orders/1", "/orders/1");
	ASSERT_NORM("/auth/./sign-in", "/auth/sign-in");
	ASSERT_NORM("/../../orders", "/orders");
	ASSERT_NORM("/a/b/..", "/a/");
	ASSERT_NORM("/orders/", "/orders/");
	ASSERT_NORM("/", "/");
	ASSERT_NORM("/..", "/");
	ASSERT_NORM("/.../x", "/.../x");
}

static void test_router_percent_decodes(void)
{
	ASSERT_NORM("/%6Frders/1", "/orders/1");
	ASSERT_NORM("/auth/%2e%2e/orders", "/orders"); /* encoded dots are dots */
	ASSERT_NORM("/products%3Fx", "/products?x");
}

static void test_router_refuses_encoded_slash_nul_and_bad_escapes(void)
{
	CU_ASSERT_PTR_NULL(norm("/auth%2F..%2Forders"));
	CU_ASSERT_PTR_NULL(norm("/auth%2f..%2forders"));
	CU_ASSERT_PTR_NULL(norm("/auth%5C..%5Corders"));
	CU_ASSERT_PTR_NULL(norm("/orders%00"));
	CU_ASSERT_PTR_NULL(norm("/orders%"));
	CU_ASSERT_PTR_NULL(norm("/orders%4"));
	CU_ASSERT_PTR_NULL(norm("/orders%zz"));
	CU_ASSERT_PTR_NULL(norm("orders"));
	CU_ASSERT_PTR_NULL(norm(""));
}

static void test_router_refuses_paths_longer_than_the_buffer(void)
{
	char raw[600], out[64];

	memset(raw, 'a', sizeof(raw) - 1);
	raw[0] = '/';
	raw[sizeof(raw) - 1] = '\0';
	CU_ASSERT_EQUAL(gw_path_normalize(raw, out, sizeof(out)), -1);
}

static enum gw_match match(const char *method, const char *raw, const gw_route **r, int64_t *id,
			   char *allow)
{
	char path[256];

	if (gw_path_normalize(raw, path, sizeof(path)) != 0)
		return (enum gw_match) - 1;
	return gw_route_match(method, path, r, id, allow, 64);
}

static void test_router_matches_every_contract_route(void)
{
	const gw_route *r;
	int64_t id;
	char allow[64];

	CU_ASSERT_EQUAL(match("POST", "/products", &r, &id, allow), GW_MATCH_OK);
	CU_ASSERT_STRING_EQUAL(r->rpc_method, "/shop.v1.ProductService/CreateProduct");
	CU_ASSERT_EQUAL(r->success_status, 201);
	CU_ASSERT_STRING_EQUAL(r->location, "/products/");
	CU_ASSERT_EQUAL(match("GET", "/products", &r, &id, allow), GW_MATCH_OK);
	CU_ASSERT_STRING_EQUAL(r->rpc_method, "/shop.v1.ProductService/ListProducts");
	CU_ASSERT(r->list_query);
	CU_ASSERT_EQUAL(match("POST", "/auth/sign-up", &r, &id, allow), GW_MATCH_OK);
	CU_ASSERT_STRING_EQUAL(r->service, "auth");
	CU_ASSERT_EQUAL(r->success_status, 201);
	CU_ASSERT_FALSE(r->needs_token);
	CU_ASSERT_EQUAL(match("POST", "/auth/sign-in", &r, &id, allow), GW_MATCH_OK);
	CU_ASSERT_EQUAL(r->success_status, 200);
	CU_ASSERT(r->client_address);
	CU_ASSERT_EQUAL(match("POST", "/orders", &r, &id, allow), GW_MATCH_OK);
	CU_ASSERT_STRING_EQUAL(r->rpc_method, "/shop.v1.OrderService/CreateOrder");
	CU_ASSERT(r->needs_token);
	CU_ASSERT_EQUAL(match("GET", "/orders/42", &r, &id, allow), GW_MATCH_OK);
	CU_ASSERT_STRING_EQUAL(r->rpc_method, "/shop.v1.OrderService/GetOrder");
	CU_ASSERT_EQUAL(id, 42);
	CU_ASSERT(r->cache_header);
	CU_ASSERT_EQUAL(match("PUT", "/orders/9223372036854775807", &r, &id, allow), GW_MATCH_OK);
	CU_ASSERT_STRING_EQUAL(r->rpc_method, "/shop.v1.OrderService/AddOrderItem");
	CU_ASSERT_STRING_EQUAL(r->id_field, "order_id");
	CU_ASSERT_EQUAL(id, INT64_MAX);
	CU_ASSERT_EQUAL(match("GET", "/healthz", &r, &id, allow), GW_MATCH_OK);
	CU_ASSERT_EQUAL(r->kind, GW_ROUTE_HEALTHZ);
	CU_ASSERT_EQUAL(match("GET", "/readyz", &r, &id, allow), GW_MATCH_OK);
	CU_ASSERT_EQUAL(r->kind, GW_ROUTE_READYZ);
	CU_ASSERT_EQUAL(match("GET", "/metrics", &r, &id, allow), GW_MATCH_OK);
	CU_ASSERT_EQUAL(r->kind, GW_ROUTE_METRICS);
}

static void test_router_routes_on_the_normalised_path(void)
{
	const gw_route *r;
	int64_t id;
	char allow[64];

	/* What the token filter sees is /orders/1, not /auth/... */
	CU_ASSERT_EQUAL(match("GET", "/auth/../orders/1", &r, &id, allow), GW_MATCH_OK);
	CU_ASSERT_STRING_EQUAL(r->pattern, "/orders/{id}");
	CU_ASSERT(r->needs_token);
	CU_ASSERT_EQUAL(match("GET", "//orders/1", &r, &id, allow), GW_MATCH_OK);
	CU_ASSERT_EQUAL(id, 1);
	CU_ASSERT_EQUAL((int)match("POST", "/auth%2F..%2Forders", &r, &id, allow), -1);
}

static void test_router_is_case_sensitive_and_exact(void)
{
	const gw_route *r;
	int64_t id;
	char allow[64];

	CU_ASSERT_EQUAL(match("POST", "/AUTH/sign-in", &r, &id, allow), GW_MATCH_NOT_FOUND);
	CU_ASSERT_EQUAL(match("GET", "/AUTH/x", &r, &id, allow), GW_MATCH_NOT_FOUND);
	CU_ASSERT_EQUAL(match("GET", "/authx/orders", &r, &id, allow), GW_MATCH_NOT_FOUND);
	CU_ASSERT_EQUAL(match("GET", "/Products", &r, &id, allow), GW_MATCH_NOT_FOUND);
	CU_ASSERT_EQUAL(match("GET", "/products/", &r, &id, allow), GW_MATCH_NOT_FOUND);
	CU_ASSERT_EQUAL(match("GET", "/orders/1/items", &r, &id, allow), GW_MATCH_NOT_FOUND);
	CU_ASSERT_EQUAL(match("GET", "/orders/", &r, &id, allow), GW_MATCH_NOT_FOUND);
	CU_ASSERT_EQUAL(match("GET", "/", &r, &id, allow), GW_MATCH_NOT_FOUND);
	CU_ASSERT_PTR_NULL(r);
}

static void test_router_wrong_method_lists_allow(void)
{
	const gw_route *r;
	int64_t id;
	char allow[64];

	CU_ASSERT_EQUAL(match("DELETE", "/orders/5", &r, &id, allow), GW_MATCH_BAD_METHOD);
	CU_ASSERT_STRING_EQUAL(allow, "GET, PUT");
	CU_ASSERT_EQUAL(match("PUT", "/products", &r, &id, allow), GW_MATCH_BAD_METHOD);
	CU_ASSERT_STRING_EQUAL(allow, "GET, POST");
	CU_ASSERT_EQUAL(match("GET", "/auth/sign-up", &r, &id, allow), GW_MATCH_BAD_METHOD);
	CU_ASSERT_STRING_EQUAL(allow, "POST");
	CU_ASSERT_EQUAL(match("GET", "/orders", &r, &id, allow), GW_MATCH_BAD_METHOD);
	CU_ASSERT_STRING_EQUAL(allow, "POST");
}

static void test_router_refuses_bad_path_ids(void)
{
	const gw_route *r;
	int64_t id;
	char allow[64];
	const char *bad[] = {"/orders/0",   "/orders/-1",   "/orders/abc",
			     "/orders/1.5", "/orders/+1",   "/orders/9223372036854775808",
			     "/orders/1e3", "/orders/%201", "/orders/99999999999999999999999"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CU_ASSERT_EQUAL(match("GET", bad[i], &r, &id, allow), GW_MATCH_BAD_ID);
	/* A wrong method on the same shape is still 405. */
	CU_ASSERT_EQUAL(match("DELETE", "/orders/abc", &r, &id, allow), GW_MATCH_BAD_METHOD);
}

static void test_router_page_size(void)
{
	int32_t v = 0;

	CU_ASSERT_EQUAL(gw_parse_page_size("1", &v), 0);
	CU_ASSERT_EQUAL(v, 1);
	CU_ASSERT_EQUAL(gw_parse_page_size("1000", &v), 0);
	CU_ASSERT_EQUAL(v, 1000);
	CU_ASSERT_EQUAL(gw_parse_page_size("0", &v), -1);
	CU_ASSERT_EQUAL(gw_parse_page_size("1001", &v), -1);
	CU_ASSERT_EQUAL(gw_parse_page_size("-5", &v), -1);
	CU_ASSERT_EQUAL(gw_parse_page_size("abc", &v), -1);
	CU_ASSERT_EQUAL(gw_parse_page_size("", &v), -1);
	CU_ASSERT_EQUAL(gw_parse_page_size("10x", &v), -1);
	CU_ASSERT_EQUAL(gw_parse_page_size(" 10", &v), -1);
	CU_ASSERT_EQUAL(gw_parse_page_size("99999999999999999999", &v), -1);
}

static void test_router_content_type(void)
{
	CU_ASSERT(gw_content_type_is_json("application/json"));
	CU_ASSERT(gw_content_type_is_json("Application/JSON"));
	CU_ASSERT(gw_content_type_is_json("application/json; charset=utf-8"));
	CU_ASSERT(gw_content_type_is_json("application/json;charset=\"UTF-8\""));
	CU_ASSERT(gw_content_type_is_json(" application/json ;"));
	CU_ASSERT_FALSE(gw_content_type_is_json(NULL));
	CU_ASSERT_FALSE(gw_content_type_is_json(""));
	CU_ASSERT_FALSE(gw_content_type_is_json("text/plain"));
	CU_ASSERT_FALSE(gw_content_type_is_json("application/jsonx"));
	CU_ASSERT_FALSE(gw_content_type_is_json("application/json-patch+json"));
	CU_ASSERT_FALSE(gw_content_type_is_json("application/x-www-form-urlencoded"));
	CU_ASSERT_FALSE(gw_content_type_is_json("application/json; charset=latin1"));
}

SHOP_TEST_MAIN("router", {"normalises dots and slashes", test_router_normalises_dots_and_slashes},
	       {"percent-decodes", test_router_percent_decodes},
	       {"refuses encoded slash, NUL, bad escapes",
		test_router_refuses_encoded_slash_nul_and_bad_escapes},
	       {"refuses paths longer than the buffer",
		test_router_refuses_paths_longer_than_the_buffer},
	       {"matches every contract route", test_router_matches_every_contract_route},
	       {"routes on the normalised path", test_router_routes_on_the_normalised_path},
	       {"is case-sensitive and exact", test_router_is_case_sensitive_and_exact},
	       {"wrong method lists Allow", test_router_wrong_method_lists_allow},
	       {"refuses bad path ids", test_router_refuses_bad_path_ids},
	       {"page_size 1..1000", test_router_page_size},
	       {"content type application/json", test_router_content_type})
