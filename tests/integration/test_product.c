/* test_product.c -- the product service over a real nng socket and a real
 * PostgreSQL (SHOP_TEST_PG_DSN): create, list with paging, batch get. */
#include <string.h>

#include "../cunit_main.h"
#include "harness.h"
#include "product.pb-c.h"
#include "product_service.h"
#include "product_store.h"

/* Calls method and returns the reply (caller frees), asserting transport success. */
static Shop__V1__RpcResponse *call(const char *method, const ProtobufCMessage *req)
{
	Shop__V1__RpcResponse *resp = harness_call(method, req);

	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	return resp;
}

static int64_t create(const char *name, int64_t price)
{
	Shop__V1__CreateProductRequest req = SHOP__V1__CREATE_PRODUCT_REQUEST__INIT;
	Shop__V1__RpcResponse *resp;
	Shop__V1__Product *p;
	int64_t id = -1;

	req.name = (char *)name;
	req.supply_price = price;
	resp = call("/shop.v1.ProductService/CreateProduct", &req.base);
	if (resp->code == 0) {
		p = shop__v1__product__unpack(NULL, resp->payload.len, resp->payload.data);
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		id = p->id;
		shop__v1__product__free_unpacked(p, NULL);
	}
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	return id;
}

static void test_product_create_round_trip(void)
{
	Shop__V1__CreateProductRequest req = SHOP__V1__CREATE_PRODUCT_REQUEST__INIT;
	Shop__V1__RpcResponse *resp;
	Shop__V1__Product *p;

	req.name = "  Keyboard ";
	req.supply_price = 30000;
	resp = call("/shop.v1.ProductService/CreateProduct", &req.base);
	CU_ASSERT_EQUAL_FATAL(resp->code, 0);
	p = shop__v1__product__unpack(NULL, resp->payload.len, resp->payload.data);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT(p->id > 0);
	CU_ASSERT_STRING_EQUAL(p->name, "Keyboard");
	CU_ASSERT_EQUAL(p->supply_price, 30000);
	/* RFC 3339 UTC with milliseconds. */
	CU_ASSERT_EQUAL(strlen(p->created_at), 24);
	CU_ASSERT_EQUAL(p->created_at[10], 'T');
	CU_ASSERT_EQUAL(p->created_at[23], 'Z');
	shop__v1__product__free_unpacked(p, NULL);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_product_create_rejects_bad_fields(void)
{
	Shop__V1__CreateProductRequest req = SHOP__V1__CREATE_PRODUCT_REQUEST__INIT;
	Shop__V1__RpcResponse *resp;
	char long_name[300];

	req.name = "   ";
	req.supply_price = 1;
	resp = call("/shop.v1.ProductService/CreateProduct", &req.base);
	CU_ASSERT_EQUAL(resp->code, 3);
	CU_ASSERT_STRING_EQUAL(resp->reason, "INVALID_ARGUMENT");
	CU_ASSERT_STRING_EQUAL(shop_rpc_response_meta(resp, "field"), "name");
	shop__v1__rpc_response__free_unpacked(resp, NULL);

	memset(long_name, 'x', 201);
	long_name[201] = '\0';
	req.name = long_name;
	resp = call("/shop.v1.ProductService/CreateProduct", &req.base);
	CU_ASSERT_EQUAL(resp->code, 3);
	shop__v1__rpc_response__free_unpacked(resp, NULL);

	req.name = "ok";
	req.supply_price = 1000000001;
	resp = call("/shop.v1.ProductService/CreateProduct", &req.base);
	CU_ASSERT_EQUAL(resp->code, 3);
	CU_ASSERT_STRING_EQUAL(shop_rpc_response_meta(resp, "field"), "supply_price");
	shop__v1__rpc_response__free_unpacked(resp, NULL);

	req.supply_price = -1;
	resp = call("/shop.v1.ProductService/CreateProduct", &req.base);
	CU_ASSERT_EQUAL(resp->code, 3);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_product_sql_text_is_stored_literally(void)
{
	const char *name = "x'); DROP TABLE products; --";
	int64_t id = create(name, 5);
	Shop__V1__GetProductsRequest req = SHOP__V1__GET_PRODUCTS_REQUEST__INIT;
	Shop__V1__RpcResponse *resp;
	Shop__V1__GetProductsResponse *got;

	CU_ASSERT_FATAL(id > 0);
	req.n_ids = 1;
	req.ids = &id;
	resp = call("/shop.v1.ProductService/GetProducts", &req.base);
	CU_ASSERT_EQUAL_FATAL(resp->code, 0);
	got = shop__v1__get_products_response__unpack(NULL, resp->payload.len, resp->payload.data);
	CU_ASSERT_EQUAL_FATAL(got->n_products, 1);
	CU_ASSERT_STRING_EQUAL(got->products[0]->name, name);
	shop__v1__get_products_response__free_unpacked(got, NULL);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

/* Walks every page of size 2 and checks the ids come in order, each once,
 * and that the walk sees every product created. */
static void test_product_list_pages_by_id(void)
{
	Shop__V1__ListProductsRequest req = SHOP__V1__LIST_PRODUCTS_REQUEST__INIT;
	int64_t made[5], last = 0;
	int seen = 0, pages = 0;
	char token[64] = "";

	for (int i = 0; i < 5; i++)
		made[i] = create("page item", i);
	req.page_size = 2;
	do {
		Shop__V1__RpcResponse *resp;
		Shop__V1__ListProductsResponse *page;

		req.page_token = token;
		resp = call("/shop.v1.ProductService/ListProducts", &req.base);
		CU_ASSERT_EQUAL_FATAL(resp->code, 0);
		page = shop__v1__list_products_response__unpack(NULL, resp->payload.len,
								resp->payload.data);
		CU_ASSERT_PTR_NOT_NULL_FATAL(page);
		CU_ASSERT(page->n_products <= 2);
		for (size_t i = 0; i < page->n_products; i++) {
			CU_ASSERT(page->products[i]->id > last);
			last = page->products[i]->id;
			for (int j = 0; j < 5; j++)
				seen += page->products[i]->id == made[j];
		}
		snprintf(token, sizeof(token), "%s", page->next_page_token);
		pages++;
		shop__v1__list_products_response__free_unpacked(page, NULL);
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	} while (token[0] != '\0' && pages < 1000);
	CU_ASSERT_EQUAL(seen, 5);
	CU_ASSERT(pages >= 3);
}

static void test_product_list_rejects_bad_paging(void)
{
	Shop__V1__ListProductsRequest req = SHOP__V1__LIST_PRODUCTS_REQUEST__INIT;
	static const int sizes[] = {-1, 1001};
	Shop__V1__RpcResponse *resp;

	for (size_t i = 0; i < 2; i++) {
		req.page_size = sizes[i];
		resp = call("/shop.v1.ProductService/ListProducts", &req.base);
		CU_ASSERT_EQUAL(resp->code, 3);
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	}
	req.page_size = 10;
	req.page_token = "not-a-token";
	resp = call("/shop.v1.ProductService/ListProducts", &req.base);
	CU_ASSERT_EQUAL(resp->code, 3);
	CU_ASSERT_STRING_EQUAL(shop_rpc_response_meta(resp, "field"), "page_token");
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_product_get_many_lists_missing_ids_once(void)
{
	Shop__V1__GetProductsRequest req = SHOP__V1__GET_PRODUCTS_REQUEST__INIT;
	Shop__V1__GetProductsResponse *got;
	Shop__V1__RpcResponse *resp;
	int64_t a = create("a", 1), b = create("b", 2);
	int64_t ids[5] = {b, 999999999, a, b, 999999999};

	req.n_ids = 5;
	req.ids = ids;
	resp = call("/shop.v1.ProductService/GetProducts", &req.base);
	CU_ASSERT_EQUAL_FATAL(resp->code, 0);
	got = shop__v1__get_products_response__unpack(NULL, resp->payload.len, resp->payload.data);
	CU_ASSERT_PTR_NOT_NULL_FATAL(got);
	CU_ASSERT_EQUAL(got->n_products, 2);
	CU_ASSERT_EQUAL(got->products[0]->id, a);
	CU_ASSERT_EQUAL(got->products[1]->id, b);
	CU_ASSERT_EQUAL(got->n_missing_ids, 1);
	CU_ASSERT_EQUAL(got->missing_ids[0], 999999999);
	shop__v1__get_products_response__free_unpacked(got, NULL);
	shop__v1__rpc_response__free_unpacked(resp, NULL);

	ids[0] = 0;
	req.n_ids = 1;
	resp = call("/shop.v1.ProductService/GetProducts", &req.base);
	CU_ASSERT_EQUAL(resp->code, 3);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_product_page_token_round_trip(void)
{
	char tok[24];
	int64_t id;

	product_page_token_encode(123456789, tok);
	CU_ASSERT_EQUAL(product_page_token_decode(tok, &id), 0);
	CU_ASSERT_EQUAL(id, 123456789);
	CU_ASSERT_EQUAL(product_page_token_decode("v1.zz", &id), -1);
	CU_ASSERT_EQUAL(product_page_token_decode("v1.8000000000000000", &id), -1);
}

int main(void)
{
	static const shop_test tests[] = {
	    {"create round trip", test_product_create_round_trip},
	    {"create rejects bad fields", test_product_create_rejects_bad_fields},
	    {"SQL text is stored literally", test_product_sql_text_is_stored_literally},
	    {"list pages by id", test_product_list_pages_by_id},
	    {"list rejects bad paging", test_product_list_rejects_bad_paging},
	    {"get many lists missing ids once", test_product_get_many_lists_missing_ids_once},
	    {"page token round trip", test_product_page_token_round_trip},
	};
	int status;

	if (harness_start("product", product_methods, product_n_methods, product_migrations,
			  product_n_migrations, NULL, 29000) != 0)
		return 1;
	status = shop_test_run("product", tests, sizeof(tests) / sizeof(tests[0]));
	harness_stop();
	return status;
}
