/* product_service.c -- ProductService: CreateProduct, ListProducts, GetProducts. */
#include "product_service.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "product.pb-c.h"
#include "product_store.h"
#include "service.h"
#include "text.h"

#define PRODUCT_NAME_MAX  200        /* characters */
#define PRODUCT_PRICE_MAX 1000000000 /* won */
#define PAGE_SIZE_DEFAULT 100
#define PAGE_SIZE_MAX     1000
#define GET_IDS_MAX       1000

void product_page_token_encode(int64_t last_id, char out[24])
{
	snprintf(out, 24, "v1.%016" PRIx64, (uint64_t)last_id);
}

int product_page_token_decode(const char *token, int64_t *last_id)
{
	uint64_t v = 0;

	if (strncmp(token, "v1.", 3) != 0 || strlen(token) != 19)
		return -1;
	for (const char *p = token + 3; *p != '\0'; p++) {
		int d;
		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else
			return -1;
		v = (v << 4) | (uint64_t)d;
	}
	if (v == 0 || v > INT64_MAX)
		return -1;
	*last_id = (int64_t)v;
	return 0;
}

static void create_product(void *app, shop_rpc_call *call, const ProtobufCMessage *msg,
			   shop_rpc_reply *reply)
{
	const Shop__V1__CreateProductRequest *req = (const void *)msg;
	Shop__V1__Product product;
	PGresult *res = NULL;
	char *name = NULL;
	size_t cap = strlen(req->name) + 1;

	(void)app;
	if ((name = malloc(cap)) == NULL) {
		shop_rpc_reply_error(reply, SHOP_RPC_INTERNAL, "INTERNAL", "out of memory");
		goto out;
	}
	if (shop_text_clean(req->name, 1, PRODUCT_NAME_MAX, name, cap) != 0) {
		shop_rpc_reply_bad_field(
		    reply, "name",
		    "must be 1 to 200 characters of UTF-8 text without control characters");
		goto out;
	}
	if (req->supply_price < 0 || req->supply_price > PRODUCT_PRICE_MAX) {
		shop_rpc_reply_bad_field(reply, "supply_price",
					 "must be an integer from 0 to 1000000000");
		goto out;
	}
	if ((res = product_store_insert(shop_service_pg(call), name, req->supply_price)) == NULL ||
	    PQntuples(res) != 1) {
		shop_service_reply_db_down(reply);
		goto out;
	}
	product_store_row(res, 0, &product);
	if (shop_rpc_reply_ok(reply, &product.base) == 0)
		SHOP_LOG_T(INFO, call->trace_id, "created product %" PRId64, product.id);
out:
	PQclear(res);
	free(name);
}

static void list_products(void *app, shop_rpc_call *call, const ProtobufCMessage *msg,
			  shop_rpc_reply *reply)
{
	const Shop__V1__ListProductsRequest *req = (const void *)msg;
	Shop__V1__ListProductsResponse resp = SHOP__V1__LIST_PRODUCTS_RESPONSE__INIT;
	Shop__V1__Product *rows = NULL, **ptrs = NULL;
	PGresult *res = NULL;
	int64_t after = 0;
	int size = req->page_size == 0 ? PAGE_SIZE_DEFAULT : req->page_size, n;
	char token[24] = "";

	(void)app;
	if (size < 1 || size > PAGE_SIZE_MAX) {
		shop_rpc_reply_bad_field(reply, "page_size", "must be from 1 to 1000");
		goto out;
	}
	if (req->page_token[0] != '\0' && product_page_token_decode(req->page_token, &after) != 0) {
		shop_rpc_reply_bad_field(reply, "page_token", "is not a token this service gave");
		goto out;
	}
	/* One row more than the page tells whether another page follows. */
	if ((res = product_store_list(shop_service_pg(call), after, size + 1)) == NULL) {
		shop_service_reply_db_down(reply);
		goto out;
	}
	n = PQntuples(res);
	if (n > size) {
		n = size;
		product_page_token_encode(strtoll(PQgetvalue(res, n - 1, 0), NULL, 10), token);
	}
	if (n > 0 && ((rows = calloc((size_t)n, sizeof(*rows))) == NULL ||
		      (ptrs = calloc((size_t)n, sizeof(*ptrs))) == NULL)) {
		shop_rpc_reply_error(reply, SHOP_RPC_INTERNAL, "INTERNAL", "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		product_store_row(res, i, &rows[i]);
		ptrs[i] = &rows[i];
	}
	resp.n_products = (size_t)n;
	resp.products = ptrs;
	resp.next_page_token = token;
	shop_rpc_reply_ok(reply, &resp.base);
out:
	free(ptrs);
	free(rows);
	PQclear(res);
}

static void get_products(void *app, shop_rpc_call *call, const ProtobufCMessage *msg,
			 shop_rpc_reply *reply)
{
	const Shop__V1__GetProductsRequest *req = (const void *)msg;
	Shop__V1__GetProductsResponse resp = SHOP__V1__GET_PRODUCTS_RESPONSE__INIT;
	Shop__V1__Product *rows = NULL, **ptrs = NULL;
	int64_t *missing = NULL;
	PGresult *res = NULL;
	size_t n_missing = 0;
	int n;

	(void)app;
	if (req->n_ids < 1 || req->n_ids > GET_IDS_MAX) {
		shop_rpc_reply_bad_field(reply, "ids", "must hold 1 to 1000 ids");
		goto out;
	}
	for (size_t i = 0; i < req->n_ids; i++) {
		if (req->ids[i] <= 0) {
			shop_rpc_reply_bad_field(reply, "ids", "must be positive");
			goto out;
		}
	}
	if ((res = product_store_get_many(shop_service_pg(call), req->ids, req->n_ids)) == NULL) {
		shop_service_reply_db_down(reply);
		goto out;
	}
	n = PQntuples(res);
	if ((rows = calloc((size_t)n + 1, sizeof(*rows))) == NULL ||
	    (ptrs = calloc((size_t)n + 1, sizeof(*ptrs))) == NULL ||
	    (missing = calloc(req->n_ids, sizeof(*missing))) == NULL) {
		shop_rpc_reply_error(reply, SHOP_RPC_INTERNAL, "INTERNAL", "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		product_store_row(res, i, &rows[i]);
		ptrs[i] = &rows[i];
	}
	/* Rows are ordered by id: find each asked id by binary search, and
	 * list the missing ones once each, in the order asked. */
	for (size_t i = 0; i < req->n_ids; i++) {
		int64_t id = req->ids[i];
		int lo = 0, hi = n - 1, found = 0;
		while (lo <= hi && !found) {
			int mid = lo + (hi - lo) / 2;
			if (rows[mid].id == id)
				found = 1;
			else if (rows[mid].id < id)
				lo = mid + 1;
			else
				hi = mid - 1;
		}
		for (size_t j = 0; j < n_missing && !found; j++)
			found = missing[j] == id;
		if (!found)
			missing[n_missing++] = id;
	}
	resp.n_products = (size_t)n;
	resp.products = ptrs;
	resp.n_missing_ids = n_missing;
	resp.missing_ids = missing;
	shop_rpc_reply_ok(reply, &resp.base);
out:
	free(missing);
	free(ptrs);
	free(rows);
	PQclear(res);
}

const shop_rpc_method product_methods[] = {
    {"/shop.v1.ProductService/CreateProduct", &shop__v1__create_product_request__descriptor,
     create_product, SHOP_RPC_BLOCKING},
    {"/shop.v1.ProductService/ListProducts", &shop__v1__list_products_request__descriptor,
     list_products, SHOP_RPC_BLOCKING},
    {"/shop.v1.ProductService/GetProducts", &shop__v1__get_products_request__descriptor,
     get_products, SHOP_RPC_BLOCKING},
};
const size_t product_n_methods = sizeof(product_methods) / sizeof(product_methods[0]);
