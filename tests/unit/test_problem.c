/* test_problem.c -- tests of edge-gateway/problem.c: problem+json bodies,
 * Accept-Language, and the RPC → HTTP error mapping. */
#include "../cunit_main.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "problem.h"

static void test_problem_lang_follows_accept_language(void)
{
	CU_ASSERT_EQUAL(gw_problem_lang(NULL), GW_LANG_EN);
	CU_ASSERT_EQUAL(gw_problem_lang(""), GW_LANG_EN);
	CU_ASSERT_EQUAL(gw_problem_lang("ko"), GW_LANG_KO);
	CU_ASSERT_EQUAL(gw_problem_lang("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7"), GW_LANG_KO);
	CU_ASSERT_EQUAL(gw_problem_lang("en-US,en;q=0.9,ko;q=0.8"), GW_LANG_EN);
	CU_ASSERT_EQUAL(gw_problem_lang("en;q=0.5, ko;q=0.8"), GW_LANG_KO);
	CU_ASSERT_EQUAL(gw_problem_lang("fr, ko;q=0.1"), GW_LANG_KO);
	CU_ASSERT_EQUAL(gw_problem_lang("ko;q=0"), GW_LANG_EN);
	CU_ASSERT_EQUAL(gw_problem_lang("kok"), GW_LANG_EN);
	CU_ASSERT_EQUAL(gw_problem_lang("*"), GW_LANG_EN);
	CU_ASSERT_EQUAL(gw_problem_lang("KO-kr"), GW_LANG_KO);
	CU_ASSERT_EQUAL(gw_problem_lang("ko;q=junk"), GW_LANG_EN);
}

/* Parses a body and checks every member RFC 9457 and §2 ask for. */
static void check_body(const gw_problem *p, const char *trace, int status, const char *code,
		       const char *detail)
{
	char *text = gw_problem_json(p, trace);
	cJSON *j = cJSON_Parse(text);

	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "type")->valuestring, "about:blank");
	CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "title")->valuestring, gw_http_title(status));
	CU_ASSERT_EQUAL(cJSON_GetObjectItem(j, "status")->valueint, status);
	CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "code")->valuestring, code);
	CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "detail")->valuestring, detail);
	CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "trace_id")->valuestring, trace);
	cJSON_Delete(j);
	free(text);
}

static Shop__V1__RpcResponse__MetadataEntry e0 = SHOP__V1__RPC_RESPONSE__METADATA_ENTRY__INIT;
static Shop__V1__RpcResponse__MetadataEntry *meta[1] = {&e0};

static Shop__V1__RpcResponse rpc(int code, const char *reason, const char *mkey, const char *mval)
{
	Shop__V1__RpcResponse r = SHOP__V1__RPC_RESPONSE__INIT;

	r.code = code;
	r.reason = (char *)reason;
	r.message = "internal: SELECT * FROM products failed at db.c:42";
	if (mkey != NULL) {
		e0.key = (char *)mkey;
		e0.value = (char *)mval;
		r.n_metadata = 1;
		r.metadata = meta;
	}
	return r;
}

static void test_problem_order_fallbacks_word_for_word(void)
{
	gw_problem p;
	Shop__V1__RpcResponse r = rpc(5, "PRODUCT_NOT_FOUND", "product_id", "123");

	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	check_body(&p, "abc", 404, "product_not_found", "Product 123 not found");
	gw_problem_from_rpc(&p, &r, GW_LANG_KO);
	check_body(&p, "abc", 404, "product_not_found", "123번 상품을 찾을 수 없습니다");
	r = rpc(14, "PRODUCT_SERVICE_UNAVAILABLE", NULL, NULL);
	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	check_body(&p, "t", 503, "product_service_unavailable",
		   "Product service is unavailable. Please try again later.");
	CU_ASSERT(p.retry_after > 0);
	gw_problem_from_rpc(&p, &r, GW_LANG_KO);
	check_body(&p, "t", 503, "product_service_unavailable",
		   "상품 서비스를 이용할 수 없습니다. 나중에 다시 시도해주세요");
}

static void test_problem_maps_rpc_codes(void)
{
	gw_problem p;
	Shop__V1__RpcResponse r;

	r = rpc(5, "ORDER_NOT_FOUND", NULL, NULL);
	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	CU_ASSERT_EQUAL(p.status, 404);
	CU_ASSERT_STRING_EQUAL(p.code, "order_not_found");
	r = rpc(5, "", NULL, NULL);
	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	CU_ASSERT_STRING_EQUAL(p.code, "not_found");
	r = rpc(5, "bad reason!", NULL, NULL);
	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	CU_ASSERT_STRING_EQUAL(p.code, "not_found");
	r = rpc(6, "NAME_TAKEN", NULL, NULL);
	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	CU_ASSERT_EQUAL(p.status, 409);
	CU_ASSERT_STRING_EQUAL(p.code, "name_taken");
	r = rpc(16, "INVALID_CREDENTIALS", NULL, NULL);
	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	CU_ASSERT_EQUAL(p.status, 401);
	CU_ASSERT_STRING_EQUAL(p.code, "invalid_credentials");
	r = rpc(8, "TOO_MANY_REQUESTS", "retry_after", "17");
	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	CU_ASSERT_EQUAL(p.status, 429);
	CU_ASSERT_STRING_EQUAL(p.code, "too_many_requests");
	CU_ASSERT_EQUAL(p.retry_after, 17);
	r = rpc(8, "TOO_MANY_REQUESTS", "retry_after", "soon");
	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	CU_ASSERT_EQUAL(p.retry_after, 1);
	/* The service's own limit (svc-auth's hash gate): 503, never 429. */
	r = rpc(8, "OVERLOADED", "retry_after", "3");
	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	CU_ASSERT_EQUAL(p.status, 503);
	CU_ASSERT_STRING_EQUAL(p.code, "service_unavailable");
	CU_ASSERT_EQUAL(p.retry_after, 3);
	r = rpc(14, "", NULL, NULL);
	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	CU_ASSERT_EQUAL(p.status, 503);
	CU_ASSERT_STRING_EQUAL(p.code, "service_unavailable");
	CU_ASSERT_EQUAL(p.retry_after, 1);
	r = rpc(4, "", NULL, NULL);
	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	CU_ASSERT_EQUAL(p.status, 503);
	r = rpc(3, "INVALID_ARGUMENT", "field", "name");
	r.message = "name must be 1..200 characters";
	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	check_body(&p, "t", 400, "invalid_argument", "name must be 1..200 characters");
	gw_problem_from_rpc(&p, &r, GW_LANG_KO);
	check_body(&p, "t", 400, "invalid_argument", "'name' 필드의 값이 올바르지 않습니다");
	CU_ASSERT_STRING_EQUAL(p.field, "name");
	r = rpc(3, "INVALID_ARGUMENT", "field", "Bad Name\r\n");
	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	CU_ASSERT_STRING_EQUAL(p.field, ""); /* only a field name's characters */
}

static void test_problem_5xx_never_carries_internals(void)
{
	int codes[] = {2, 7, 12, 13, 99, -1};
	gw_problem p;

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		Shop__V1__RpcResponse r = rpc(codes[i], "DB_DOWN", NULL, NULL);

		gw_problem_from_rpc(&p, &r, GW_LANG_EN);
		check_body(&p, "t", 500, "internal", "An internal error occurred.");
		CU_ASSERT_PTR_NULL(strstr(p.detail, "SELECT"));
	}
}

static void test_problem_idempotency_key_reused_is_422(void)
{
	Shop__V1__RpcResponse r = rpc(9, "IDEMPOTENCY_KEY_REUSED", NULL, NULL);
	gw_problem p;

	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	check_body(&p, "t", 422, "idempotency_key_reused",
		   "This Idempotency-Key was already used with another request body.");
}

static void test_problem_gateway_errors(void)
{
	gw_problem p;

	gw_problem_make(&p, GW_P_METHOD_NOT_ALLOWED, GW_LANG_EN, "DELETE");
	check_body(&p, "x", 405, "method_not_allowed",
		   "Method DELETE is not allowed for this resource.");
	gw_problem_make(&p, GW_P_PAYLOAD_TOO_LARGE, GW_LANG_KO, NULL);
	check_body(&p, "x", 413, "payload_too_large", "요청 본문이 65536바이트를 초과합니다");
	gw_problem_make(&p, GW_P_UNSUPPORTED_MEDIA, GW_LANG_EN, NULL);
	CU_ASSERT_EQUAL(p.status, 415);
	CU_ASSERT_STRING_EQUAL(p.code, "unsupported_media_type");
	gw_problem_make(&p, GW_P_NOT_FOUND, GW_LANG_EN, NULL);
	CU_ASSERT_EQUAL(p.status, 404);
	CU_ASSERT_STRING_EQUAL(p.code, "not_found");
	gw_problem_make(&p, GW_P_UNAVAILABLE, GW_LANG_EN, NULL);
	CU_ASSERT_EQUAL(p.status, 503);
	CU_ASSERT_EQUAL(p.retry_after, 1);
	gw_problem_make(&p, GW_P_BAD_ID, GW_LANG_EN, NULL);
	CU_ASSERT_EQUAL(p.status, 400);
	CU_ASSERT_STRING_EQUAL(p.code, "invalid_argument");
}

static void test_problem_framing_errors(void)
{
	gw_problem p;

	gw_problem_make(&p, GW_P_NOT_IMPLEMENTED, GW_LANG_EN, NULL);
	check_body(&p, "x", 501, "not_implemented",
		   "Only the chunked transfer coding is supported.");
	CU_ASSERT_STRING_EQUAL(gw_http_title(501), "Not Implemented");
	gw_problem_make(&p, GW_P_NOT_IMPLEMENTED, GW_LANG_KO, NULL);
	CU_ASSERT_STRING_EQUAL(p.detail, "chunked 이외의 전송 코딩은 지원하지 않습니다");
	for (int k = GW_P_LENGTH_AND_CODING; k <= GW_P_UPGRADE_REFUSED; k++) {
		gw_problem_make(&p, (enum gw_problem_kind)k, GW_LANG_KO, NULL);
		CU_ASSERT_EQUAL(p.status, 400);
		CU_ASSERT_STRING_EQUAL(p.code, "invalid_argument");
		CU_ASSERT(p.detail[0] != '\0');
	}
}

static void test_problem_header_field_errors(void)
{
	gw_problem p;

	gw_problem_make(&p, GW_P_HEADERS_TOO_LARGE, GW_LANG_EN, NULL);
	check_body(&p, "x", 431, "request_header_fields_too_large",
		   "The request header fields exceed 8192 bytes.");
	CU_ASSERT_STRING_EQUAL(gw_http_title(431), "Request Header Fields Too Large");
	gw_problem_make(&p, GW_P_BAD_FIELD, GW_LANG_EN, "host");
	check_body(&p, "x", 400, "invalid_argument",
		   "The request header field host is malformed, repeated or missing.");
	gw_problem_make(&p, GW_P_BAD_FIELD, GW_LANG_KO, "host");
	CU_ASSERT_PTR_NOT_NULL(strstr(p.detail, "host"));
}

/* The extension member "field" of p's body: want, or absent for NULL. */
static void check_field_member(const gw_problem *p, const char *want)
{
	char *text = gw_problem_json(p, "t");
	cJSON *j = cJSON_Parse(text), *f;

	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	f = cJSON_GetObjectItem(j, "field");
	CU_ASSERT_TRUE(want == NULL ? f == NULL
				    : cJSON_IsString(f) && strcmp(f->valuestring, want) == 0);
	cJSON_Delete(j);
	free(text);
}

static void test_problem_names_the_field(void)
{
	gw_tc_error e = {.kind = GW_TC_INTEGER};
	gw_problem p;

	strcpy(e.field, "items[1].supply_price");
	gw_problem_from_tc(&p, &e, GW_LANG_EN);
	check_body(&p, "t", 400, "invalid_argument",
		   "Field 'items[1].supply_price' must be an integer.");
	CU_ASSERT_STRING_EQUAL(p.field, "items[1].supply_price");
	check_field_member(&p, "items[1].supply_price");
	gw_problem_from_tc(&p, &e, GW_LANG_KO);
	CU_ASSERT_STRING_EQUAL(p.detail, "'items[1].supply_price' 필드는 정수여야 합니다");
	e.kind = GW_TC_MALFORMED;
	e.field[0] = '\0';
	gw_problem_from_tc(&p, &e, GW_LANG_EN);
	CU_ASSERT_STRING_EQUAL(p.detail, "The request body is not valid JSON.");
	check_field_member(&p, NULL);
	gw_problem_make(&p, GW_P_BAD_PAGE_TOKEN, GW_LANG_EN, NULL);
	check_field_member(&p, "page_token");
	gw_problem_make(&p, GW_P_BAD_PAGE_SIZE, GW_LANG_KO, NULL);
	check_field_member(&p, "page_size");
	gw_problem_make(&p, GW_P_BAD_PATH, GW_LANG_EN, NULL);
	check_field_member(&p, NULL);
}

static void test_problem_escapes_the_body(void)
{
	gw_problem p;
	Shop__V1__RpcResponse r = rpc(3, "INVALID_ARGUMENT", NULL, NULL);

	r.message = "bad \"name\" \\ here";
	gw_problem_from_rpc(&p, &r, GW_LANG_EN);
	check_body(&p, "t\"", 400, "invalid_argument", "bad \"name\" \\ here");
}

SHOP_TEST_MAIN("problem",
	       {"lang follows Accept-Language", test_problem_lang_follows_accept_language},
	       {"order fallbacks word for word", test_problem_order_fallbacks_word_for_word},
	       {"maps RPC codes", test_problem_maps_rpc_codes},
	       {"5xx never carries internals", test_problem_5xx_never_carries_internals},
	       {"idempotency key reused is 422", test_problem_idempotency_key_reused_is_422},
	       {"gateway errors", test_problem_gateway_errors},
	       {"framing errors", test_problem_framing_errors},
	       {"header field errors", test_problem_header_field_errors},
	       {"names the field", test_problem_names_the_field},
	       {"escapes the body", test_problem_escapes_the_body})
