/* order_service.c -- OrderService: CreateOrder, AddOrderItem, GetOrder,
 * with product checks through the product service's breakers and a
 * coherent Redis cache in front of PostgreSQL. */
#include "order_service.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "order.pb-c.h"
#include "order_cache.h"
#include "order_store.h"
#include "product.pb-c.h"
#include "service.h"

#define ORDER_IDS_MAX       100
#define IDEMPOTENCY_KEY_MAX 255

static void reply_order_not_found(shop_rpc_reply *reply, int64_t id)
{
	char sid[24];

	snprintf(sid, sizeof(sid), "%" PRId64, id);
	shop_rpc_reply_error(reply, SHOP_RPC_NOT_FOUND, "ORDER_NOT_FOUND", "Order %s not found",
			     sid);
	shop_rpc_reply_meta(reply, "order_id", sid);
}

/* The fallback when the product service cannot be used: UNAVAILABLE,
 * PRODUCT_SERVICE_UNAVAILABLE, marked as a dependency's failure so that no
 * caller's breaker counts it against this (working) instance. */
static void reply_products_unavailable(shop_rpc_reply *reply)
{
	shop_rpc_reply_dependency_error(reply, SHOP_RPC_UNAVAILABLE, "PRODUCT_SERVICE_UNAVAILABLE",
					"Product service is unavailable. Please try again later.");
	shop_rpc_reply_meta(reply, "retry_after", "1");
}

/* The products of ids, fetched through the breakers. On success returns 0
 * and *out (caller frees with shop__v1__get_products_response__free_unpacked);
 * otherwise the reply is set (PRODUCT_NOT_FOUND for the first missing id
 * in the order asked, PRODUCT_SERVICE_UNAVAILABLE when the product service
 * fails, times out or every breaker is open) and -1 returned. */
static int fetch_products(order_app *app, shop_rpc_call *call, const int64_t *ids, size_t n,
			  Shop__V1__GetProductsResponse **out, shop_rpc_reply *reply)
{
	Shop__V1__GetProductsRequest req = SHOP__V1__GET_PRODUCTS_REQUEST__INIT;
	shop_rpc_call_opts o = {
	    .traceparent = call->traceparent,
	    .caller_user_id = call->caller_user_id,
	    .idempotent = true,
	};
	Shop__V1__RpcResponse *resp = NULL;
	Shop__V1__GetProductsResponse *got = NULL;
	char instance[64], sid[24];
	int64_t deadline = shop_now_unix_ms() + app->product_timeout_ms;
	int rv;

	/* Never wait past the caller's own deadline. */
	if (call->deadline_unix_ms > 0 && call->deadline_unix_ms < deadline)
		deadline = call->deadline_unix_ms;
	o.deadline_unix_ms = deadline;
	req.n_ids = n;
	req.ids = (int64_t *)ids;
	rv =
	    shop_upstream_call_sync(app->products, "product", "/shop.v1.ProductService/GetProducts",
				    &req.base, &o, &resp, instance, sizeof(instance));
	if (rv == 0 && resp->code == SHOP_RPC_OK)
		got = shop__v1__get_products_response__unpack(NULL, resp->payload.len,
							      resp->payload.data);
	if (got == NULL) {
		SHOP_LOG_T(WARN, call->trace_id, "product check failed: %s%s",
			   rv != 0 ? nng_strerror(rv) : "answer ",
			   rv != 0 ? "" : shop_rpc_code_name(resp->code));
		reply_products_unavailable(reply);
		goto out;
	}
	if (got->n_missing_ids > 0) {
		/* The first missing id in the order the client gave. */
		int64_t first = got->missing_ids[0];
		for (size_t i = 0, found = 0; i < n && !found; i++)
			for (size_t j = 0; j < got->n_missing_ids && !found; j++)
				if (ids[i] == got->missing_ids[j])
					first = ids[i], found = 1;
		snprintf(sid, sizeof(sid), "%" PRId64, first);
		shop_rpc_reply_error(reply, SHOP_RPC_NOT_FOUND, "PRODUCT_NOT_FOUND",
				     "Product %s not found", sid);
		shop_rpc_reply_meta(reply, "product_id", sid);
		shop__v1__get_products_response__free_unpacked(got, NULL);
		got = NULL;
	}
out:
	if (resp != NULL)
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	*out = got;
	return got != NULL ? 0 : -1;
}

/* Orders belong to the signed-in user the gateway names; without one the
 * call is refused (UNAUTHENTICATED, MISSING_CALLER). */
static int has_caller(const shop_rpc_call *call, shop_rpc_reply *reply)
{
	if (call->caller_user_id > 0)
		return 1;
	shop_rpc_reply_error(reply, SHOP_RPC_UNAUTHENTICATED, "MISSING_CALLER",
			     "orders belong to a signed-in user");
	return 0;
}

static const Shop__V1__Product *find_product(const Shop__V1__GetProductsResponse *p, int64_t id)
{
	for (size_t i = 0; i < p->n_products; i++)
		if (p->products[i]->id == id)
			return p->products[i];
	return NULL;
}

/* Stores the committed order in the cache and packs it as the answer. */
static void reply_order(order_app *app, order_row *o, shop_rpc_reply *reply)
{
	order_cache_put(app->cache, &o->msg, o->version, app->cache_ttl_s);
	shop_rpc_reply_ok(reply, &o->msg.base);
}

static int valid_key(const char *k)
{
	size_t n = strlen(k);

	if (n > IDEMPOTENCY_KEY_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
			return 0;
	return 1;
}

static void create_order(void *appv, shop_rpc_call *call, const ProtobufCMessage *msg,
			 shop_rpc_reply *reply)
{
	const Shop__V1__CreateOrderRequest *req = (const void *)msg;
	order_app *app = appv;
	Shop__V1__GetProductsResponse *products = NULL;
	order_item_in items[ORDER_IDS_MAX];
	char request[ORDER_IDS_MAX * 21 + 1];
	const char *key = req->idempotency_key[0] != '\0' ? req->idempotency_key : NULL;
	order_row o = {0};
	size_t len = 0;
	int64_t existing;
	int rv;

	if (!has_caller(call, reply))
		return;
	if (req->n_product_ids < 1 || req->n_product_ids > ORDER_IDS_MAX) {
		shop_rpc_reply_bad_field(reply, "product_ids", "must hold 1 to 100 ids");
		return;
	}
	for (size_t i = 0; i < req->n_product_ids; i++) {
		if (req->product_ids[i] <= 0) {
			shop_rpc_reply_bad_field(reply, "product_ids", "must be positive ids");
			return;
		}
		len += (size_t)snprintf(request + len, sizeof(request) - len, "%s%" PRId64,
					i > 0 ? "," : "", req->product_ids[i]);
	}
	if (key != NULL && !valid_key(key)) {
		shop_rpc_reply_bad_field(reply, "idempotency_key",
					 "must be 1 to 255 visible ASCII characters");
		return;
	}
	if (key != NULL) {
		rv = order_store_find_key(shop_service_pg(call), call->caller_user_id, key, request,
					  &existing);
		if (rv == ORDER_STORE_OK)
			rv = order_store_get(shop_service_pg(call), call->caller_user_id, existing,
					     &o);
		if (rv == ORDER_STORE_OK) {
			reply_order(app, &o, reply);
			goto out;
		}
		if (rv == ORDER_STORE_KEY_REUSED)
			goto key_reused;
		if (rv == ORDER_STORE_DOWN) {
			shop_service_reply_db_down(reply);
			goto out;
		}
	}
	/* Our own database first: when it is down the answer is ours
	 * (service_unavailable), not a product check that cannot be used. */
	if (!shop_pg_ok(shop_service_pg(call))) {
		shop_service_reply_db_down(reply);
		goto out;
	}
	if (fetch_products(app, call, req->product_ids, req->n_product_ids, &products, reply) != 0)
		goto out;
	for (size_t i = 0; i < req->n_product_ids; i++) {
		const Shop__V1__Product *p = find_product(products, req->product_ids[i]);
		if (p == NULL) { /* the product service broke its own contract */
			reply_products_unavailable(reply);
			goto out;
		}
		items[i] = (order_item_in){p->id, p->name, p->supply_price};
	}
	rv = order_store_create(shop_service_pg(call), call->caller_user_id, items,
				req->n_product_ids, key, request, &o);
	if (rv == ORDER_STORE_KEY_REUSED)
		goto key_reused;
	if (rv != ORDER_STORE_OK) {
		shop_service_reply_db_down(reply);
		goto out;
	}
	SHOP_LOG_T(INFO, call->trace_id, "order %" PRId64 " created with %zu items", o.msg.id,
		   o.msg.n_items);
	reply_order(app, &o, reply);
	goto out;
key_reused:
	shop_rpc_reply_error(reply, SHOP_RPC_FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED",
			     "this Idempotency-Key was used with another request");
out:
	if (products != NULL)
		shop__v1__get_products_response__free_unpacked(products, NULL);
	order_store_order_fini(&o);
}

static void add_order_item(void *appv, shop_rpc_call *call, const ProtobufCMessage *msg,
			   shop_rpc_reply *reply)
{
	const Shop__V1__AddOrderItemRequest *req = (const void *)msg;
	order_app *app = appv;
	Shop__V1__GetProductsResponse *products = NULL;
	const Shop__V1__Product *p;
	order_item_in item;
	order_row o = {0};
	int rv;

	if (!has_caller(call, reply))
		return;
	if (req->order_id <= 0 || req->product_id <= 0) {
		shop_rpc_reply_bad_field(reply, req->order_id <= 0 ? "order_id" : "product_id",
					 "must be a positive id");
		return;
	}
	if (!shop_pg_ok(shop_service_pg(call))) {
		shop_service_reply_db_down(reply);
		goto out;
	}
	if (fetch_products(app, call, &req->product_id, 1, &products, reply) != 0)
		goto out;
	if ((p = find_product(products, req->product_id)) == NULL) {
		reply_products_unavailable(reply);
		goto out;
	}
	item = (order_item_in){p->id, p->name, p->supply_price};
	rv = order_store_add_item(shop_service_pg(call), call->caller_user_id, req->order_id, &item,
				  &o);
	if (rv == ORDER_STORE_NOT_FOUND)
		reply_order_not_found(reply, req->order_id);
	else if (rv != ORDER_STORE_OK)
		shop_service_reply_db_down(reply);
	else
		reply_order(app, &o, reply);
out:
	if (products != NULL)
		shop__v1__get_products_response__free_unpacked(products, NULL);
	order_store_order_fini(&o);
}

/* GetOrder from PostgreSQL, on a worker, after the cache said cr: a MISS
 * is filled (compare-and-set: never over a newer value); after a BYPASS
 * only a dirty order is, unless Redis is not configured at all. */
static void get_order_db(order_app *app, shop_rpc_call *call, const Shop__V1__GetOrderRequest *req,
			 order_cache_result cr, shop_rpc_reply *reply)
{
	order_row o = {0};
	int rv;

	rv = order_store_get(shop_service_pg(call), call->caller_user_id, req->order_id, &o);
	if (rv == ORDER_STORE_NOT_FOUND) {
		reply_order_not_found(reply, req->order_id);
	} else if (rv != ORDER_STORE_OK) {
		shop_service_reply_db_down(reply);
	} else {
		if (cr == ORDER_CACHE_MISS ||
		    (order_cache_is_dirty(req->order_id) && app->cache != NULL))
			order_cache_put(app->cache, &o.msg, o.version, app->cache_ttl_s);
		if (shop_rpc_reply_ok(reply, &o.msg.base) == 0)
			shop_rpc_reply_meta(reply, "cache",
					    cr == ORDER_CACHE_MISS ? "MISS" : "BYPASS");
	}
	order_store_order_fini(&o);
}

static void get_order_miss(void *app, shop_rpc_call *call, const ProtobufCMessage *msg,
			   shop_rpc_reply *reply)
{
	get_order_db(app, call, (const void *)msg, ORDER_CACHE_MISS, reply);
}

static void get_order_bypass(void *app, shop_rpc_call *call, const ProtobufCMessage *msg,
			     shop_rpc_reply *reply)
{
	get_order_db(app, call, (const void *)msg, ORDER_CACHE_BYPASS, reply);
}

/* What a GetOrder waiting for the cache needs when the answer comes. */
struct get_order_wait {
	shop_rpc_call *call;
	shop_rpc_reply *reply;
	int64_t order_id;
};

/* On the cache's thread: a HIT is answered there, with the stored bytes as
 * they are (no unpacking, no packing); anything else goes to a worker. */
static void get_order_cached(void *arg, order_cache_result res, int64_t user_id,
			     const uint8_t *order, size_t len)
{
	struct get_order_wait w = *(struct get_order_wait *)arg;

	free(arg);
	if (res != ORDER_CACHE_HIT) {
		shop_rpc_call_defer(w.call,
				    res == ORDER_CACHE_MISS ? get_order_miss : get_order_bypass);
		return;
	}
	/* Another user's order answers as if absent, cached or not. */
	if (user_id != w.call->caller_user_id)
		reply_order_not_found(w.reply, w.order_id);
	else if (shop_rpc_reply_ok_bytes(w.reply, order, len) == 0)
		shop_rpc_reply_meta(w.reply, "cache", "HIT");
	shop_rpc_call_done(w.call);
}

/* ASYNC: starts on the nng thread; answered from the cache's thread on a
 * HIT, by a worker otherwise. */
static void get_order(void *appv, shop_rpc_call *call, const ProtobufCMessage *msg,
		      shop_rpc_reply *reply)
{
	const Shop__V1__GetOrderRequest *req = (const void *)msg;
	order_app *app = appv;
	struct get_order_wait *w;

	if (!has_caller(call, reply)) {
		shop_rpc_call_done(call);
		return;
	}
	if (req->order_id <= 0) {
		shop_rpc_reply_bad_field(reply, "order_id", "must be a positive id");
		shop_rpc_call_done(call);
		return;
	}
	if ((w = malloc(sizeof(*w))) == NULL) {
		shop_rpc_reply_error(reply, SHOP_RPC_INTERNAL, "INTERNAL", "out of memory");
		shop_rpc_call_done(call);
		return;
	}
	*w = (struct get_order_wait){call, reply, req->order_id};
	if (order_cache_get(app->cache, req->order_id, get_order_cached, w) == 0)
		return;
	free(w);
	shop_rpc_call_defer(call, get_order_bypass);
}

const shop_rpc_method order_methods[] = {
    {"/shop.v1.OrderService/CreateOrder", &shop__v1__create_order_request__descriptor, create_order,
     SHOP_RPC_BLOCKING},
    {"/shop.v1.OrderService/AddOrderItem", &shop__v1__add_order_item_request__descriptor,
     add_order_item, SHOP_RPC_BLOCKING},
    {"/shop.v1.OrderService/GetOrder", &shop__v1__get_order_request__descriptor, get_order,
     SHOP_RPC_ASYNC},
};
const size_t order_n_methods = sizeof(order_methods) / sizeof(order_methods[0]);
