/* order_store.h -- the order service's SQL. Every function takes the
 * calling worker's own connection and runs in one transaction where it
 * writes. Totals are computed by the database, never taken from a client. */
#ifndef ORDER_STORE_H
#define ORDER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "order.pb-c.h"
#include "pg.h"

extern const shop_migration order_migrations[];
extern const int order_n_migrations;

/* Outcomes of the store's calls. */
enum order_store_rv {
	ORDER_STORE_OK = 0,
	ORDER_STORE_DOWN = -1,      /* the database failed (logged) */
	ORDER_STORE_NOT_FOUND = -2, /* no such order for this user */
	ORDER_STORE_KEY_REUSED = -3 /* idempotency key used with another body */
};

/* An item to store: the product's values at the time it is added. */
typedef struct order_item_in {
	int64_t product_id;
	const char *name; /* borrowed */
	int64_t supply_price;
} order_item_in;

/* A loaded order, owning its strings (order_store_order_fini frees). The
 * embedded Shop__V1__Order points into it and can be packed as is. */
typedef struct order_row {
	Shop__V1__Order msg;
	Shop__V1__OrderItem *items;
	Shop__V1__OrderItem **item_ptrs;
	char *strings;   /* one block holding every string the message points to */
	int64_t version; /* increases with every change */
} order_row;

void order_store_order_fini(order_row *o);

/* Looks up user's idempotency key (younger than 24 h). Returns OK and the
 * order's id in *order_id when the key exists with the same request,
 * ORDER_STORE_KEY_REUSED when it exists with another, NOT_FOUND when it
 * does not exist. */
int order_store_find_key(shop_pg *pg, int64_t user_id, const char *key, const char *request,
			 int64_t *order_id);

/* Creates an order of items for user in one transaction; when key is not
 * NULL it is recorded with request in the same transaction. A concurrent
 * create with the same key makes this one answer the other's order (OK) or
 * KEY_REUSED. On OK, *out holds the order as committed. */
int order_store_create(shop_pg *pg, int64_t user_id, const order_item_in *items, size_t n,
		       const char *key, const char *request, order_row *out);

/* Appends one item to user's order id (NOT_FOUND for another user's). */
int order_store_add_item(shop_pg *pg, int64_t user_id, int64_t id, const order_item_in *item,
			 order_row *out);

/* Loads order id of user (NOT_FOUND for another user's). user_id 0 loads
 * it whoever owns it. */
int order_store_get(shop_pg *pg, int64_t user_id, int64_t id, order_row *out);

#endif
