/* test_rpc.c -- unit tests of lib/rpc.c and shop_rpc_server_handle (pure
 * dispatch, no sockets). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cunit_main.h"

#include "clock.h"
#include "product.pb-c.h"
#include "rpc.h"
#include "rpc_server.h"

#define LIST_METHOD "/shop.v1.ProductService/ListProducts"
#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TRACE_ID    "4bf92f3577b34da6a3ce929d0e0e4736"

/* What the handler saw on its last call. */
static struct {
	int calls;
	int64_t caller_user_id;
	char trace_id[33];
	char traceparent[64];
	int32_t page_size;
	void *worker;
	int worker_index;
} seen;

/* Replies with page_size products, or NOT_FOUND with metadata when
 * page_size is 999. */
static void list_handler(void *app, shop_rpc_call *call, const ProtobufCMessage *req,
			 shop_rpc_reply *reply)
{
	const Shop__V1__ListProductsRequest *r = (const Shop__V1__ListProductsRequest *)req;
	Shop__V1__ListProductsResponse resp = SHOP__V1__LIST_PRODUCTS_RESPONSE__INIT;
	Shop__V1__Product prods[3], *ptrs[3];

	(void)app;
	seen.calls++;
	seen.caller_user_id = call->caller_user_id;
	snprintf(seen.trace_id, sizeof(seen.trace_id), "%s", call->trace_id);
	snprintf(seen.traceparent, sizeof(seen.traceparent), "%s", call->traceparent);
	seen.page_size = r->page_size;
	seen.worker = call->worker;
	seen.worker_index = call->worker_index;
	if (r->page_size == 999) {
		shop_rpc_reply_error(reply, SHOP_RPC_NOT_FOUND, "PRODUCT_NOT_FOUND",
				     "Product %d not found", 999);
		shop_rpc_reply_meta(reply, "product_id", "999");
		return;
	}
	for (int i = 0; i < 3 && i < r->page_size; i++) {
		shop__v1__product__init(&prods[i]);
		prods[i].id = i + 1;
		prods[i].name = "widget";
		prods[i].supply_price = 100 * (i + 1);
		ptrs[i] = &prods[i];
		resp.n_products++;
	}
	resp.products = ptrs;
	resp.next_page_token = "next";
	shop_rpc_reply_ok(reply, &resp.base);
}

static const shop_rpc_method methods[] = {
    {LIST_METHOD, &shop__v1__list_products_request__descriptor, list_handler, SHOP_RPC_BLOCKING},
};

static const shop_rpc_server_config cfg = {
    .url = "inproc://unused",
    .workers = 1,
    .methods = methods,
    .n_methods = 1,
};

/* Packs an RpcRequest; payload NULL means a ListProductsRequest of
 * page_size. Caller frees *out with free(). */
static size_t pack_request(const char *method, int32_t page_size, const uint8_t *payload,
			   size_t payload_len, int64_t deadline, int64_t user, const char *tp,
			   uint8_t **out)
{
	Shop__V1__RpcRequest env = SHOP__V1__RPC_REQUEST__INIT;
	Shop__V1__ListProductsRequest lr = SHOP__V1__LIST_PRODUCTS_REQUEST__INIT;
	uint8_t inner[64];
	size_t n;

	if (payload == NULL) {
		lr.page_size = page_size;
		env.payload.len = shop__v1__list_products_request__pack(&lr, inner);
		env.payload.data = inner;
	} else {
		env.payload.data = (uint8_t *)payload;
		env.payload.len = payload_len;
	}
	env.method = (char *)method;
	env.deadline_unix_ms = deadline;
	env.caller_user_id = user;
	env.traceparent = (char *)(tp != NULL ? tp : "");
	*out = malloc(shop__v1__rpc_request__get_packed_size(&env));
	n = shop__v1__rpc_request__pack(&env, *out);
	return n;
}

/* Runs the dispatch on bytes and unpacks the answer; NULL on failure. */
static Shop__V1__RpcResponse *dispatch(const uint8_t *in, size_t len)
{
	uint8_t *out = NULL;
	size_t out_len = 0;
	Shop__V1__RpcResponse *resp;

	if (shop_rpc_server_handle(&cfg, (void *)&seen, 7, in, len, &out, &out_len) != 0)
		return NULL;
	resp = shop__v1__rpc_response__unpack(NULL, out_len, out);
	free(out);
	return resp;
}

static Shop__V1__RpcResponse *dispatch_request(const char *method, int32_t page_size,
					       int64_t deadline, int64_t user, const char *tp)
{
	uint8_t *in;
	size_t n = pack_request(method, page_size, NULL, 0, deadline, user, tp, &in);
	Shop__V1__RpcResponse *resp = dispatch(in, n);

	free(in);
	return resp;
}

static void test_rpc_code_names(void)
{
	CU_ASSERT_STRING_EQUAL(shop_rpc_code_name(0), "OK");
	CU_ASSERT_STRING_EQUAL(shop_rpc_code_name(3), "INVALID_ARGUMENT");
	CU_ASSERT_STRING_EQUAL(shop_rpc_code_name(12), "UNIMPLEMENTED");
	CU_ASSERT_STRING_EQUAL(shop_rpc_code_name(16), "UNAUTHENTICATED");
	CU_ASSERT_STRING_EQUAL(shop_rpc_code_name(77), "UNKNOWN");
	CU_ASSERT_STRING_EQUAL(shop_rpc_code_name(-1), "UNKNOWN");
}

static void test_rpc_reply_packs_error_with_metadata(void)
{
	shop_rpc_reply r;
	Shop__V1__RpcResponse *resp;
	uint8_t *buf = NULL;
	size_t len = 0;

	shop_rpc_reply_init(&r);
	shop_rpc_reply_error(&r, SHOP_RPC_NOT_FOUND, "PRODUCT_NOT_FOUND", "Product %d not found",
			     123);
	shop_rpc_reply_meta(&r, "product_id", "123");
	shop_rpc_reply_meta(&r, "field", "ids");
	shop_rpc_reply_meta(&r, "product_id", "124"); /* a map: replaces */
	CU_ASSERT_EQUAL_FATAL(shop_rpc_reply_pack(&r, &buf, &len), 0);
	resp = shop__v1__rpc_response__unpack(NULL, len, buf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	CU_ASSERT_EQUAL(resp->code, 5);
	CU_ASSERT_STRING_EQUAL(resp->reason, "PRODUCT_NOT_FOUND");
	CU_ASSERT_STRING_EQUAL(resp->message, "Product 123 not found");
	CU_ASSERT_EQUAL(resp->n_metadata, 2);
	CU_ASSERT_STRING_EQUAL(shop_rpc_response_meta(resp, "product_id"), "124");
	CU_ASSERT_STRING_EQUAL(shop_rpc_response_meta(resp, "field"), "ids");
	CU_ASSERT_PTR_NULL(shop_rpc_response_meta(resp, "absent"));
	CU_ASSERT_EQUAL(resp->payload.len, 0);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	free(buf);
	shop_rpc_reply_fini(&r);
}

/* The packed dependency_failed of r, or -1 when it does not unpack. */
static int packed_dependency_failed(const shop_rpc_reply *r)
{
	Shop__V1__RpcResponse *resp;
	uint8_t *buf = NULL;
	size_t len = 0;
	int v = -1;

	if (shop_rpc_reply_pack(r, &buf, &len) != 0)
		return -1;
	if ((resp = shop__v1__rpc_response__unpack(NULL, len, buf)) != NULL) {
		v = resp->dependency_failed ? 1 : 0;
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	}
	free(buf);
	return v;
}

static void test_rpc_reply_dependency_error_is_marked(void)
{
	Shop__V1__Product p = SHOP__V1__PRODUCT__INIT;
	shop_rpc_reply r;

	shop_rpc_reply_init(&r);
	shop_rpc_reply_dependency_error(&r, SHOP_RPC_UNAVAILABLE, "PRODUCT_SERVICE_UNAVAILABLE",
					"Product service is unavailable. Please try again later.");
	CU_ASSERT_EQUAL(r.code, SHOP_RPC_UNAVAILABLE);
	CU_ASSERT_STRING_EQUAL(r.reason, "PRODUCT_SERVICE_UNAVAILABLE");
	CU_ASSERT_EQUAL(packed_dependency_failed(&r), 1);
	/* An error of the service's own, after it, is not the dependency's. */
	shop_rpc_reply_error(&r, SHOP_RPC_UNAVAILABLE, "DATABASE_UNAVAILABLE", "down");
	CU_ASSERT_EQUAL(packed_dependency_failed(&r), 0);
	/* Nor is a success. */
	shop_rpc_reply_dependency_error(&r, SHOP_RPC_UNAVAILABLE, "X", "x");
	CU_ASSERT_EQUAL_FATAL(shop_rpc_reply_ok(&r, &p.base), 0);
	CU_ASSERT_EQUAL(packed_dependency_failed(&r), 0);
	shop_rpc_reply_fini(&r);
	/* A plain error is the service's own. */
	shop_rpc_reply_init(&r);
	shop_rpc_reply_error(&r, SHOP_RPC_INTERNAL, "INTERNAL", "x");
	CU_ASSERT_EQUAL(packed_dependency_failed(&r), 0);
	shop_rpc_reply_fini(&r);
}

static void test_rpc_reply_ok_carries_payload(void)
{
	Shop__V1__Product p = SHOP__V1__PRODUCT__INIT;
	Shop__V1__Product *back;
	Shop__V1__RpcResponse *resp;
	shop_rpc_reply r;
	uint8_t *buf = NULL;
	size_t len = 0;

	p.id = 42;
	p.name = "kettle";
	p.supply_price = 25000;
	shop_rpc_reply_init(&r);
	CU_ASSERT_EQUAL_FATAL(shop_rpc_reply_ok(&r, &p.base), 0);
	CU_ASSERT_EQUAL(r.code, SHOP_RPC_OK);
	CU_ASSERT_EQUAL_FATAL(shop_rpc_reply_pack(&r, &buf, &len), 0);
	resp = shop__v1__rpc_response__unpack(NULL, len, buf);
	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	CU_ASSERT_EQUAL(resp->code, 0);
	CU_ASSERT_STRING_EQUAL(resp->reason, "");
	back = shop__v1__product__unpack(NULL, resp->payload.len, resp->payload.data);
	CU_ASSERT_PTR_NOT_NULL_FATAL(back);
	CU_ASSERT_EQUAL(back->id, 42);
	CU_ASSERT_STRING_EQUAL(back->name, "kettle");
	CU_ASSERT_EQUAL(back->supply_price, 25000);
	shop__v1__product__free_unpacked(back, NULL);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	free(buf);
	/* An error after ok drops the payload. */
	shop_rpc_reply_error(&r, SHOP_RPC_INTERNAL, "INTERNAL", "later failure");
	CU_ASSERT_PTR_NULL(r.payload);
	CU_ASSERT_EQUAL(r.payload_len, 0);
	shop_rpc_reply_fini(&r);
}

static void test_rpc_reply_meta_stops_at_max_and_truncates(void)
{
	shop_rpc_reply r;
	char key[16], longval[300];

	shop_rpc_reply_init(&r);
	for (int i = 0; i < SHOP_RPC_MAX_META + 3; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		shop_rpc_reply_meta(&r, key, "v");
	}
	CU_ASSERT_EQUAL(r.n_meta, SHOP_RPC_MAX_META);
	memset(longval, 'x', sizeof(longval) - 1);
	longval[sizeof(longval) - 1] = '\0';
	shop_rpc_reply_meta(&r, "k0", longval);
	CU_ASSERT_EQUAL(strlen(r.meta_val[0]), sizeof(r.meta_val[0]) - 1);
	shop_rpc_reply_fini(&r);
}

static void test_rpc_handle_junk_is_invalid_argument(void)
{
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02};
	Shop__V1__RpcResponse *resp = dispatch(junk, sizeof(junk));

	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	CU_ASSERT_EQUAL(resp->code, SHOP_RPC_INVALID_ARGUMENT);
	CU_ASSERT_STRING_EQUAL(resp->reason, "MALFORMED_REQUEST");
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_rpc_handle_empty_message_is_invalid_argument(void)
{
	Shop__V1__RpcResponse *resp;
	int calls = seen.calls;

	resp = dispatch(NULL, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	CU_ASSERT_EQUAL(resp->code, SHOP_RPC_INVALID_ARGUMENT);
	CU_ASSERT_STRING_EQUAL(resp->reason, "MALFORMED_REQUEST");
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	CU_ASSERT_EQUAL(seen.calls, calls);
}

static void test_rpc_handle_unknown_method_is_unimplemented(void)
{
	Shop__V1__RpcResponse *resp =
	    dispatch_request("/shop.v1.ProductService/Nope", 1, 0, 0, NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	CU_ASSERT_EQUAL(resp->code, 12);
	CU_ASSERT_STRING_EQUAL(resp->reason, "UNIMPLEMENTED");
	CU_ASSERT_PTR_NOT_NULL(strstr(resp->message, "/shop.v1.ProductService/Nope"));
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_rpc_handle_passed_deadline_is_deadline_exceeded(void)
{
	int calls = seen.calls;
	Shop__V1__RpcResponse *resp =
	    dispatch_request(LIST_METHOD, 1, shop_now_unix_ms() - 1000, 0, NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	CU_ASSERT_EQUAL(resp->code, 4);
	CU_ASSERT_STRING_EQUAL(resp->reason, "DEADLINE_EXCEEDED");
	CU_ASSERT_EQUAL(seen.calls, calls); /* the handler never ran */
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_rpc_handle_bad_payload_is_invalid_argument(void)
{
	static const uint8_t bad[] = {0x0a, 0x7f, 0x01}; /* field 1 claims 127 bytes */
	int calls = seen.calls;
	Shop__V1__RpcResponse *resp;
	uint8_t *in;
	size_t n = pack_request(LIST_METHOD, 0, bad, sizeof(bad), 0, 0, NULL, &in);

	resp = dispatch(in, n);
	free(in);
	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	CU_ASSERT_EQUAL(resp->code, 3);
	CU_ASSERT_STRING_EQUAL(resp->reason, "MALFORMED_PAYLOAD");
	CU_ASSERT_EQUAL(seen.calls, calls);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_rpc_handle_good_call_reaches_handler(void)
{
	Shop__V1__ListProductsResponse *lr;
	Shop__V1__RpcResponse *resp;
	int calls = seen.calls;

	resp = dispatch_request(LIST_METHOD, 2, shop_now_unix_ms() + 5000, 77, TRACEPARENT);
	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	CU_ASSERT_EQUAL(resp->code, 0);
	CU_ASSERT_EQUAL(seen.calls, calls + 1);
	CU_ASSERT_EQUAL(seen.caller_user_id, 77);
	CU_ASSERT_STRING_EQUAL(seen.trace_id, TRACE_ID);
	/* The handler sees its SERVER span's own context: the caller's trace
	 * and flags, a new span id (the parent of the calls it makes). */
	CU_ASSERT_EQUAL(strlen(seen.traceparent), 55);
	CU_ASSERT_NSTRING_EQUAL(seen.traceparent, TRACEPARENT, 36);
	CU_ASSERT_STRING_EQUAL(seen.traceparent + 52, "-01");
	CU_ASSERT_NSTRING_NOT_EQUAL(seen.traceparent + 36, &TRACEPARENT[36], 16);
	CU_ASSERT_EQUAL(seen.page_size, 2);
	CU_ASSERT_PTR_EQUAL(seen.worker, &seen);
	CU_ASSERT_EQUAL(seen.worker_index, 7);
	lr = shop__v1__list_products_response__unpack(NULL, resp->payload.len, resp->payload.data);
	CU_ASSERT_PTR_NOT_NULL_FATAL(lr);
	CU_ASSERT_EQUAL(lr->n_products, 2);
	CU_ASSERT_EQUAL(lr->products[1]->supply_price, 200);
	CU_ASSERT_STRING_EQUAL(lr->next_page_token, "next");
	shop__v1__list_products_response__free_unpacked(lr, NULL);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_rpc_handle_error_reply_keeps_metadata(void)
{
	Shop__V1__RpcResponse *resp = dispatch_request(LIST_METHOD, 999, 0, 0, NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	CU_ASSERT_EQUAL(resp->code, SHOP_RPC_NOT_FOUND);
	CU_ASSERT_STRING_EQUAL(resp->reason, "PRODUCT_NOT_FOUND");
	CU_ASSERT_STRING_EQUAL(shop_rpc_response_meta(resp, "product_id"), "999");
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_rpc_handle_bad_traceparent_is_dropped(void)
{
	static const char *const bad[] = {
	    "",
	    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* version */
	    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  /* upper */
	    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  /* zero id */
	    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", /* long */
	    "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",  /* dash */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		Shop__V1__RpcResponse *resp = dispatch_request(LIST_METHOD, 1, 0, 0, bad[i]);

		CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
		CU_ASSERT_EQUAL(resp->code, 0);
		CU_ASSERT_STRING_EQUAL(seen.trace_id, "");
		CU_ASSERT_STRING_EQUAL(seen.traceparent, "");
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	}
}

SHOP_TEST_MAIN(
    "rpc", {"code names", test_rpc_code_names},
    {"reply packs an error with metadata", test_rpc_reply_packs_error_with_metadata},
    {"a dependency's error is marked", test_rpc_reply_dependency_error_is_marked},
    {"ok reply carries the payload", test_rpc_reply_ok_carries_payload},
    {"metadata stops at the max and truncates", test_rpc_reply_meta_stops_at_max_and_truncates},
    {"junk bytes are INVALID_ARGUMENT", test_rpc_handle_junk_is_invalid_argument},
    {"empty message is INVALID_ARGUMENT", test_rpc_handle_empty_message_is_invalid_argument},
    {"unknown method is UNIMPLEMENTED", test_rpc_handle_unknown_method_is_unimplemented},
    {"passed deadline is DEADLINE_EXCEEDED", test_rpc_handle_passed_deadline_is_deadline_exceeded},
    {"bad payload is INVALID_ARGUMENT", test_rpc_handle_bad_payload_is_invalid_argument},
    {"good call reaches the handler", test_rpc_handle_good_call_reaches_handler},
    {"error reply keeps its metadata", test_rpc_handle_error_reply_keeps_metadata},
    {"bad traceparent is dropped", test_rpc_handle_bad_traceparent_is_dropped})
