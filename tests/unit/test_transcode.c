/* test_transcode.c -- tests of edge-gateway/transcode.c: strict JSON in,
 * JSON <-> protobuf by reflection both ways. */
#include "../cunit_main.h"

#include <stdlib.h>
#include <string.h>

#include "auth.pb-c.h"
#include "order.pb-c.h"
#include "product.pb-c.h"
#include "registry.pb-c.h"
#include "rpc.pb-c.h"
#include "transcode.h"

static ProtobufCMessage *from(const char *json, const ProtobufCMessageDescriptor *d,
			      gw_tc_error *err)
{
	ProtobufCMessage *m = NULL;

	if (gw_body_to_message(json, strlen(json), d, &m, err) != 0) {
		CU_ASSERT_PTR_NULL(m);
		return NULL;
	}
	return m;
}

static void expect_error(const char *json, const ProtobufCMessageDescriptor *d, enum gw_tc_err kind,
			 const char *field)
{
	gw_tc_error err;
	ProtobufCMessage *m = from(json, d, &err);

	CU_ASSERT_PTR_NULL(m);
	protobuf_c_message_free_unpacked(m, NULL);
	CU_ASSERT_EQUAL(err.kind, kind);
	CU_ASSERT_STRING_EQUAL(err.field, field);
}

static void test_transcode_reads_a_product_request(void)
{
	gw_tc_error err;
	Shop__V1__CreateProductRequest *m = (Shop__V1__CreateProductRequest *)from(
	    "{\"name\":\"Keyboard \\u00e9\\ud83d\\ude00\",\"supply_price\":1000000000,"
	    "\"extra\":{\"x\":[1,2]}}",
	    &shop__v1__create_product_request__descriptor, &err);

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_STRING_EQUAL(m->name, "Keyboard \xc3\xa9\xf0\x9f\x98\x80");
	CU_ASSERT_EQUAL(m->supply_price, 1000000000);
	protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void test_transcode_int64_is_exact_to_the_edges(void)
{
	gw_tc_error err;
	Shop__V1__AddOrderItemRequest *m = (Shop__V1__AddOrderItemRequest *)from(
	    "{\"order_id\":9223372036854775807,\"product_id\":-9223372036854775808}",
	    &shop__v1__add_order_item_request__descriptor, &err);

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL(m->order_id, INT64_MAX);
	CU_ASSERT_EQUAL(m->product_id, INT64_MIN);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	/* 2^53 + 1 survives (a double would round it). */
	m = (Shop__V1__AddOrderItemRequest *)from("{\"product_id\":9007199254740993}",
						  &shop__v1__add_order_item_request__descriptor,
						  &err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL(m->product_id, 9007199254740993LL);
	protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void test_transcode_refuses_non_integers_for_int64(void)
{
	const ProtobufCMessageDescriptor *d = &shop__v1__create_product_request__descriptor;

	expect_error("{\"supply_price\":1.5}", d, GW_TC_INTEGER, "supply_price");
	expect_error("{\"supply_price\":1.0}", d, GW_TC_INTEGER, "supply_price");
	expect_error("{\"supply_price\":1e3}", d, GW_TC_INTEGER, "supply_price");
	expect_error("{\"supply_price\":\"100\"}", d, GW_TC_INTEGER, "supply_price");
	expect_error("{\"supply_price\":true}", d, GW_TC_INTEGER, "supply_price");
	expect_error("{\"supply_price\":[1]}", d, GW_TC_INTEGER, "supply_price");
	expect_error("{\"supply_price\":{}}", d, GW_TC_INTEGER, "supply_price");
	expect_error("{\"supply_price\":9223372036854775808}", d, GW_TC_RANGE, "supply_price");
	expect_error("{\"supply_price\":-9223372036854775809}", d, GW_TC_RANGE, "supply_price");
	expect_error("{\"supply_price\":"
		     "1234567890123456789012345678901234567890123456789012345678901234567890}",
		     d, GW_TC_RANGE, "supply_price");
}

static void test_transcode_int32_and_uint_ranges(void)
{
	const ProtobufCMessageDescriptor *d = &shop__v1__list_products_request__descriptor;
	gw_tc_error err;
	Shop__V1__ListProductsRequest *m;

	expect_error("{\"page_size\":2147483648}", d, GW_TC_RANGE, "page_size");
	m = (Shop__V1__ListProductsRequest *)from("{\"page_size\":-2147483648}", d, &err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL(m->page_size, INT32_MIN);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	expect_error("{\"weight\":-1}", &shop__v1__advert__descriptor, GW_TC_RANGE, "weight");
	expect_error("{\"weight\":4294967296}", &shop__v1__advert__descriptor, GW_TC_RANGE,
		     "weight");
	expect_error("{\"healthy\":1}", &shop__v1__advert__descriptor, GW_TC_BOOL, "healthy");
}

static void test_transcode_strings_must_be_strings(void)
{
	const ProtobufCMessageDescriptor *d = &shop__v1__sign_up_request__descriptor;

	expect_error("{\"name\":123,\"password\":\"x\"}", d, GW_TC_STRING, "name");
	expect_error("{\"name\":\"a\",\"password\":false}", d, GW_TC_STRING, "password");
	expect_error("{\"name\":[\"a\"]}", d, GW_TC_STRING, "name");
}

static void test_transcode_repeated_fields_are_arrays(void)
{
	const ProtobufCMessageDescriptor *d = &shop__v1__create_order_request__descriptor;
	gw_tc_error err;
	Shop__V1__CreateOrderRequest *m =
	    (Shop__V1__CreateOrderRequest *)from("{\"product_ids\":[3,1,3]}", d, &err);

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL_FATAL(m->n_product_ids, 3);
	CU_ASSERT_EQUAL(m->product_ids[0], 3);
	CU_ASSERT_EQUAL(m->product_ids[2], 3);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	expect_error("{\"product_ids\":5}", d, GW_TC_ARRAY, "product_ids");
	expect_error("{\"product_ids\":[1,\"2\"]}", d, GW_TC_INTEGER, "product_ids[1]");
	expect_error("{\"product_ids\":[1,[2]]}", d, GW_TC_INTEGER, "product_ids[1]");
	expect_error("{\"product_ids\":[1,null]}", d, GW_TC_INTEGER, "product_ids[1]");
	expect_error("{\"product_ids\":[1,2.5]}", d, GW_TC_INTEGER, "product_ids[1]");
}

static void test_transcode_nested_messages_and_arrays(void)
{
	const ProtobufCMessageDescriptor *d = &shop__v1__order__descriptor;
	gw_tc_error err;
	Shop__V1__Order *m = (Shop__V1__Order *)from(
	    "{\"id\":7,\"items\":[{\"product_id\":1,\"name\":\"a\",\"supply_price\":2},"
	    "{\"product_id\":3,\"name\":\"b\"}],\"total_supply_price\":2}",
	    d, &err);

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL_FATAL(m->n_items, 2);
	CU_ASSERT_STRING_EQUAL(m->items[1]->name, "b");
	CU_ASSERT_EQUAL(m->items[1]->supply_price, 0);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	/* The failure frees what was built so far (ASan checks the leak). */
	expect_error("{\"items\":[{\"name\":\"a\"},{\"name\":\"b\",\"supply_price\":\"x\"}]}", d,
		     GW_TC_INTEGER, "items[1].supply_price");
	expect_error("{\"items\":[{\"name\":\"a\"},7]}", d, GW_TC_NOT_OBJECT, "items[1]");
	expect_error("{\"items\":{}}", d, GW_TC_ARRAY, "items");
}

static void test_transcode_unknown_fields_and_null_are_ignored(void)
{
	gw_tc_error err;
	Shop__V1__SignInRequest *m = (Shop__V1__SignInRequest *)from(
	    "{\"name\":null,\"password\":\"pw\",\"Name\":5,\"x\":{\"y\":[[[]]]}}",
	    &shop__v1__sign_in_request__descriptor, &err);

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_STRING_EQUAL(m->name, "");
	CU_ASSERT_STRING_EQUAL(m->password, "pw");
	protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void test_transcode_refuses_malformed_json(void)
{
	const ProtobufCMessageDescriptor *d = &shop__v1__sign_in_request__descriptor;
	const char *bad[] = {
	    "",
	    "{",
	    "{\"name\":\"a\"",
	    "{\"name\":\"a\",}",
	    "{name:\"a\"}",
	    "{\"name\":'a'}",
	    "{\"name\":\"a\"} x",
	    "{\"name\":\"\\u0000\"}",
	    "{\"name\":\"\\ud800\"}",
	    "{\"name\":\"\xff\"}",
	    "{\"name\":\"\xc0\xaf\"}",
	    "{\"name\":\"a\tb\"}",
	    "{\"n\":01}",
	    "{\"n\":-}",
	    "{\"n\":1.}",
	    "{\"n\":NaN}",
	    "{\"n\":tru}",
	    "\xef\xbb\xbf{}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error(bad[i], d, GW_TC_MALFORMED, "");
	expect_error("[]", d, GW_TC_NOT_OBJECT, "");
	expect_error("\"x\"", d, GW_TC_NOT_OBJECT, "");
}

static void test_transcode_refuses_deep_nesting(void)
{
	char deep[2 * 100 + 16];
	size_t o = 0;

	o += (size_t)sprintf(deep, "{\"x\":");
	for (int i = 0; i < 100; i++)
		deep[o++] = '[';
	for (int i = 0; i < 100; i++)
		deep[o++] = ']';
	deep[o++] = '}';
	deep[o] = '\0';
	expect_error(deep, &shop__v1__sign_in_request__descriptor, GW_TC_MALFORMED, "");
}

static void test_transcode_writes_every_field(void)
{
	Shop__V1__ListProductsResponse resp = SHOP__V1__LIST_PRODUCTS_RESPONSE__INIT;
	char *text = gw_message_to_json_text(&resp.base);

	CU_ASSERT_STRING_EQUAL(text, "{\"products\":[],\"next_page_token\":\"\"}");
	free(text);
}

static void test_transcode_writes_nested_and_int64_exactly(void)
{
	Shop__V1__OrderItem it = SHOP__V1__ORDER_ITEM__INIT, *items[1] = {&it};
	Shop__V1__Order o = SHOP__V1__ORDER__INIT;
	char *text;

	it.product_id = 9007199254740993LL;
	it.name = "\"Q\"\n";
	o.id = INT64_MAX;
	o.user_id = 1;
	o.n_items = 1;
	o.items = items;
	o.created_at = "2026-11-23T10:00:00.123Z";
	text = gw_message_to_json_text(&o.base);
	CU_ASSERT_STRING_EQUAL(
	    text, "{\"id\":9223372036854775807,\"user_id\":1,\"items\":[{\"product_id\":"
		  "9007199254740993,\"name\":\"\\\"Q\\\"\\n\",\"supply_price\":0}],"
		  "\"total_supply_price\":0,\"created_at\":\"2026-11-23T10:00:00.123Z\","
		  "\"updated_at\":\"\"}");
	free(text);
}

/* The direct writer prints exactly what cJSON prints of the tree. */
static void expect_same_text(const ProtobufCMessage *m)
{
	cJSON *tree = gw_message_to_json(m);
	char *want = tree != NULL ? cJSON_PrintUnformatted(tree) : NULL;
	char *got = gw_message_to_json_text(m);

	CU_ASSERT_PTR_NOT_NULL_FATAL(want);
	CU_ASSERT_PTR_NOT_NULL_FATAL(got);
	CU_ASSERT_STRING_EQUAL(got, want);
	free(got);
	free(want);
	cJSON_Delete(tree);
}

static void test_transcode_direct_writer_prints_what_cjson_prints(void)
{
	char every[256];
	Shop__V1__OrderItem a = SHOP__V1__ORDER_ITEM__INIT, b = SHOP__V1__ORDER_ITEM__INIT;
	Shop__V1__OrderItem *items[2] = {&a, &b};
	Shop__V1__Order o = SHOP__V1__ORDER__INIT;
	Shop__V1__ListProductsResponse empty = SHOP__V1__LIST_PRODUCTS_RESPONSE__INIT;
	Shop__V1__RpcResponse resp = SHOP__V1__RPC_RESPONSE__INIT;
	uint8_t raw[5] = {0, 0xff, 0x10, 'a', 0x80};

	for (int i = 1; i < 256; i++)
		every[i - 1] = (char)i; /* every byte but NUL, control characters included */
	every[255] = '\0';
	a.product_id = INT64_MIN;
	a.name = every;
	a.supply_price = -1;
	b.product_id = 0;
	b.name = "";
	o.id = INT64_MAX;
	o.user_id = 1;
	o.n_items = 2;
	o.items = items;
	o.created_at = "\xea\xb9\x80 \"\\ \x7f";
	expect_same_text(&o.base);
	expect_same_text(&a.base);
	expect_same_text(&empty.base);
	resp.code = -7;
	resp.message = "\t\b\f\r\n\x01\x1f";
	resp.payload.data = raw;
	resp.payload.len = sizeof(raw);
	resp.reason = "R";
	expect_same_text(&resp.base);
	resp.payload.len = 1;
	expect_same_text(&resp.base);
	resp.payload.len = 0;
	expect_same_text(&resp.base);
}

static void test_transcode_round_trip(void)
{
	const char *json = "{\"user_id\":5,\"name\":\"\xea\xb9\x80\",\"access_token\":\"t\","
			   "\"token_type\":\"Bearer\",\"expires_in\":3600}";
	gw_tc_error err;
	ProtobufCMessage *m = from(json, &shop__v1__sign_up_response__descriptor, &err);
	char *text;

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	text = gw_message_to_json_text(m);
	CU_ASSERT_STRING_EQUAL(text, json);
	free(text);
	protobuf_c_message_free_unpacked(m, NULL);
}

static void test_transcode_sets_and_gets_by_name(void)
{
	Shop__V1__AddOrderItemRequest r = SHOP__V1__ADD_ORDER_ITEM_REQUEST__INIT;
	Shop__V1__SignInRequest *s = malloc(sizeof(*s));
	int64_t v = 0;

	CU_ASSERT_EQUAL(gw_message_set_int64(&r.base, "order_id", 77), 0);
	CU_ASSERT_EQUAL(r.order_id, 77);
	CU_ASSERT_EQUAL(gw_message_get_int64(&r.base, "order_id", &v), 0);
	CU_ASSERT_EQUAL(v, 77);
	CU_ASSERT_EQUAL(gw_message_set_int64(&r.base, "nope", 1), -1);
	shop__v1__sign_in_request__init(s);
	CU_ASSERT_EQUAL(gw_message_set_string(&s->base, "client_address", "127.0.0.1"), 0);
	CU_ASSERT_EQUAL(gw_message_set_string(&s->base, "client_address", "::1"), 0);
	CU_ASSERT_STRING_EQUAL(s->client_address, "::1");
	CU_ASSERT_EQUAL(gw_message_set_int64(&s->base, "name", 1), -1); /* wrong type */
	protobuf_c_message_free_unpacked(&s->base, NULL);
}

SHOP_TEST_MAIN("transcode", {"reads a product request", test_transcode_reads_a_product_request},
	       {"int64 is exact to the edges", test_transcode_int64_is_exact_to_the_edges},
	       {"refuses non-integers for int64", test_transcode_refuses_non_integers_for_int64},
	       {"int32 and unsigned ranges", test_transcode_int32_and_uint_ranges},
	       {"strings must be strings", test_transcode_strings_must_be_strings},
	       {"repeated fields are arrays", test_transcode_repeated_fields_are_arrays},
	       {"nested messages and arrays", test_transcode_nested_messages_and_arrays},
	       {"unknown fields and null are ignored",
		test_transcode_unknown_fields_and_null_are_ignored},
	       {"refuses malformed JSON", test_transcode_refuses_malformed_json},
	       {"refuses deep nesting", test_transcode_refuses_deep_nesting},
	       {"writes every field", test_transcode_writes_every_field},
	       {"writes nested and int64 exactly", test_transcode_writes_nested_and_int64_exactly},
	       {"round trip", test_transcode_round_trip},
	       {"the direct writer prints what cJSON prints",
		test_transcode_direct_writer_prints_what_cjson_prints},
	       {"sets and gets by name", test_transcode_sets_and_gets_by_name})
