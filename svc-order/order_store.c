/* order_store.c -- SQL of the order service: parameterised statements only. */
#include "order_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "strbuf.h"

const shop_migration order_migrations[] = {
    {1,
     "CREATE TABLE orders ("
     "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     "  user_id bigint NOT NULL CHECK (user_id > 0),"
     "  total_supply_price bigint NOT NULL DEFAULT 0,"
     "  version bigint NOT NULL DEFAULT 1,"
     "  created_at timestamptz NOT NULL DEFAULT now(),"
     "  updated_at timestamptz NOT NULL DEFAULT now());"
     "CREATE TABLE order_items ("
     "  order_id bigint NOT NULL REFERENCES orders (id),"
     "  position int NOT NULL,"
     "  product_id bigint NOT NULL,"
     "  name text NOT NULL,"
     "  supply_price bigint NOT NULL,"
     "  PRIMARY KEY (order_id, position));"
     "CREATE TABLE idempotency_keys ("
     "  user_id bigint NOT NULL,"
     "  key text NOT NULL,"
     "  request text NOT NULL,"
     "  order_id bigint NOT NULL REFERENCES orders (id),"
     "  created_at timestamptz NOT NULL DEFAULT now(),"
     "  PRIMARY KEY (user_id, key))",
     NULL},
};
const int order_n_migrations = sizeof(order_migrations) / sizeof(order_migrations[0]);

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

void order_store_order_fini(order_row *o)
{
	free(o->items);
	free(o->item_ptrs);
	free(o->strings);
	memset(o, 0, sizeof(*o));
}

static void fmt_i64(char buf[24], int64_t v)
{
	snprintf(buf, 24, "%" PRId64, v);
}

/* Fills out from an order's values and its items, copying every string
 * into one block. ORDER_STORE_OK, or ORDER_STORE_DOWN when out of memory
 * (out is then empty). */
static int row_build(order_row *out, int64_t id, int64_t user_id, int64_t total, int64_t version,
		     const char *created, const char *updated, const order_item_in *items, size_t n)
{
	size_t strings = strlen(created) + strlen(updated) + 2, off = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n; i++)
		strings += strlen(items[i].name) + 1;
	if ((out->strings = malloc(strings)) == NULL ||
	    (n > 0 && ((out->items = calloc(n, sizeof(*out->items))) == NULL ||
		       (out->item_ptrs = calloc(n, sizeof(*out->item_ptrs))) == NULL))) {
		order_store_order_fini(out);
		return ORDER_STORE_DOWN;
	}
	shop__v1__order__init(&out->msg);
	out->msg.id = id;
	out->msg.user_id = user_id;
	out->msg.total_supply_price = total;
	out->version = version;
	out->msg.created_at = strcpy(out->strings + off, created);
	off += strlen(created) + 1;
	out->msg.updated_at = strcpy(out->strings + off, updated);
	off += strlen(updated) + 1;
	for (size_t i = 0; i < n; i++) {
		Shop__V1__OrderItem *it = &out->items[i];

		shop__v1__order_item__init(it);
		it->product_id = items[i].product_id;
		it->name = strcpy(out->strings + off, items[i].name);
		off += strlen(items[i].name) + 1;
		it->supply_price = items[i].supply_price;
		out->item_ptrs[i] = it;
	}
	out->msg.n_items = n;
	out->msg.items = out->item_ptrs;
	return ORDER_STORE_OK;
}

/* Reads order id (of user_id, or anyone's when 0) with its items into out,
 * inside or outside a transaction: one statement, one row per item (one
 * row with NULL item columns for an order without items). */
static int load(shop_pg *pg, int64_t user_id, int64_t id, order_row *out)
{
	char sid[24], suser[24];
	const char *params[2] = {sid, suser};
	order_item_in *items = NULL;
	PGresult *res;
	size_t n;
	int rv = ORDER_STORE_DOWN;

	memset(out, 0, sizeof(*out));
	fmt_i64(sid, id);
	fmt_i64(suser, user_id);
	res = shop_pg_query(
	    pg,
	    "SELECT o.id, o.user_id, o.total_supply_price, o.version, " TS("o.created_at") ", " TS(
		"o.updated_at") ", i.product_id, i.name, "
				"i.supply_price "
				"FROM orders o LEFT JOIN order_items i ON i.order_id = o.id "
				"WHERE o.id = $1 AND ($2::bigint = 0 OR o.user_id = $2) "
				"ORDER BY i.position",
	    2, params, NULL);
	if (res == NULL)
		return ORDER_STORE_DOWN;
	if (PQntuples(res) == 0) {
		rv = ORDER_STORE_NOT_FOUND;
		goto out;
	}
	n = PQgetisnull(res, 0, 6) ? 0 : (size_t)PQntuples(res);
	if (n > 0 && (items = calloc(n, sizeof(*items))) == NULL)
		goto out;
	for (size_t i = 0; i < n; i++) {
		items[i].product_id = strtoll(PQgetvalue(res, (int)i, 6), NULL, 10);
		items[i].name = PQgetvalue(res, (int)i, 7); /* copied by row_build */
		items[i].supply_price = strtoll(PQgetvalue(res, (int)i, 8), NULL, 10);
	}
	rv = row_build(
	    out, strtoll(PQgetvalue(res, 0, 0), NULL, 10), strtoll(PQgetvalue(res, 0, 1), NULL, 10),
	    strtoll(PQgetvalue(res, 0, 2), NULL, 10), strtoll(PQgetvalue(res, 0, 3), NULL, 10),
	    PQgetvalue(res, 0, 4), PQgetvalue(res, 0, 5), items, n);
out:
	free(items);
	PQclear(res);
	return rv;
}

/* The items as three PostgreSQL array literals: bigint[], text[] (each
 * element double-quoted, with " and \ escaped) and bigint[]. 0 or -1. */
static int items_arrays(const order_item_in *items, size_t n, shop_buf *ids, shop_buf *names,
			shop_buf *prices)
{
	char num[24];

	shop_buf_put(ids, "{", 1);
	shop_buf_put(names, "{", 1);
	shop_buf_put(prices, "{", 1);
	for (size_t i = 0; i < n; i++) {
		const char *sep = i > 0 ? "," : "";

		fmt_i64(num, items[i].product_id);
		shop_buf_put(ids, sep, strlen(sep));
		shop_buf_put(ids, num, strlen(num));
		fmt_i64(num, items[i].supply_price);
		shop_buf_put(prices, sep, strlen(sep));
		shop_buf_put(prices, num, strlen(num));
		shop_buf_put(names, sep, strlen(sep));
		shop_buf_put(names, "\"", 1);
		for (const char *c = items[i].name; *c != '\0'; c++) {
			if (*c == '"' || *c == '\\')
				shop_buf_put(names, "\\", 1);
			shop_buf_put(names, c, 1);
		}
		shop_buf_put(names, "\"", 1);
	}
	shop_buf_put(ids, "}", 1);
	shop_buf_put(names, "}", 1);
	shop_buf_put(prices, "}", 1);
	return ids->oom || names->oom || prices->oom ? -1 : 0;
}

int order_store_get(shop_pg *pg, int64_t user_id, int64_t id, order_row *out)
{
	return load(pg, user_id, id, out);
}

int order_store_find_key(shop_pg *pg, int64_t user_id, const char *key, const char *request,
			 int64_t *order_id)
{
	char suser[24];
	const char *params[2] = {suser, key};
	PGresult *res;
	int rv;

	fmt_i64(suser, user_id);
	res = shop_pg_query(pg,
			    "SELECT order_id, request FROM idempotency_keys WHERE user_id = $1 AND "
			    "key = $2 AND created_at > now() - interval '24 hours'",
			    2, params, NULL);
	if (res == NULL)
		return ORDER_STORE_DOWN;
	if (PQntuples(res) == 0) {
		rv = ORDER_STORE_NOT_FOUND;
	} else if (strcmp(PQgetvalue(res, 0, 1), request) != 0) {
		rv = ORDER_STORE_KEY_REUSED;
	} else {
		*order_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		rv = ORDER_STORE_OK;
	}
	PQclear(res);
	return rv;
}

/* Appends items at positions from `first` and recomputes the total, in
 * the caller's transaction. */
static int insert_items(shop_pg *pg, int64_t id, int first, const order_item_in *items, size_t n)
{
	char sid[24], spos[16], spid[24], sprice[24];
	const char *params[5] = {sid, spos, spid, NULL, sprice};
	PGresult *res;

	fmt_i64(sid, id);
	for (size_t i = 0; i < n; i++) {
		snprintf(spos, sizeof(spos), "%d", first + (int)i);
		fmt_i64(spid, items[i].product_id);
		params[3] = items[i].name;
		fmt_i64(sprice, items[i].supply_price);
		res =
		    shop_pg_query(pg,
				  "INSERT INTO order_items (order_id, position, product_id, name, "
				  "supply_price) VALUES ($1, $2, $3, $4, $5)",
				  5, params, NULL);
		if (res == NULL)
			return ORDER_STORE_DOWN;
		PQclear(res);
	}
	res = shop_pg_query(
	    pg,
	    "UPDATE orders SET total_supply_price = (SELECT coalesce(sum(supply_price), "
	    "0) FROM order_items WHERE order_id = $1), version = version + 1, "
	    "updated_at = now() WHERE id = $1",
	    1, params, NULL);
	if (res == NULL)
		return ORDER_STORE_DOWN;
	PQclear(res);
	return ORDER_STORE_OK;
}

/* An order without an idempotency key: the order, its items and its total
 * in one statement (atomic on its own; one round trip). The answer is the
 * order's row as inserted (its DB-computed total, version and times) with
 * the items exactly as they were inserted. */
static int create_plain(shop_pg *pg, int64_t user_id, const order_item_in *items, size_t n,
			order_row *out)
{
	char suser[24];
	shop_buf ids = {0}, names = {0}, prices = {0};
	const char *params[4];
	PGresult *res = NULL;
	int rv = ORDER_STORE_DOWN;

	fmt_i64(suser, user_id);
	if (items_arrays(items, n, &ids, &names, &prices) != 0)
		goto out;
	params[0] = suser;
	params[1] = ids.p;
	params[2] = names.p;
	params[3] = prices.p;
	res = shop_pg_query(
	    pg,
	    "WITH t AS (SELECT * FROM unnest($2::bigint[], $3::text[], $4::bigint[]) "
	    "WITH ORDINALITY AS t(product_id, name, supply_price, pos)), "
	    "o AS (INSERT INTO orders (user_id, total_supply_price) "
	    "SELECT $1, coalesce(sum(supply_price), 0) FROM t "
	    "RETURNING id, user_id, total_supply_price, version, created_at, updated_at), "
	    "i AS (INSERT INTO order_items (order_id, position, product_id, name, supply_price) "
	    "SELECT o.id, t.pos - 1, t.product_id, t.name, t.supply_price FROM o, t) "
	    "SELECT id, user_id, total_supply_price, version, " TS("created_at") ", " TS(
		"updated_at") " FROM o",
	    4, params, NULL);
	if (res == NULL || PQntuples(res) != 1)
		goto out;
	rv = row_build(
	    out, strtoll(PQgetvalue(res, 0, 0), NULL, 10), strtoll(PQgetvalue(res, 0, 1), NULL, 10),
	    strtoll(PQgetvalue(res, 0, 2), NULL, 10), strtoll(PQgetvalue(res, 0, 3), NULL, 10),
	    PQgetvalue(res, 0, 4), PQgetvalue(res, 0, 5), items, n);
out:
	PQclear(res);
	free(ids.p);
	free(names.p);
	free(prices.p);
	return rv;
}

int order_store_create(shop_pg *pg, int64_t user_id, const order_item_in *items, size_t n,
		       const char *key, const char *request, order_row *out)
{
	char suser[24], sid[24], sqlstate[6] = "";
	const char *params[4] = {suser, NULL, NULL, sid};
	PGresult *res;
	int64_t id, existing;
	int rv;

	if (key == NULL)
		return create_plain(pg, user_id, items, n, out);
	fmt_i64(suser, user_id);
	if (shop_pg_exec(pg, "BEGIN") != 0)
		return ORDER_STORE_DOWN;
	res = shop_pg_query(pg, "INSERT INTO orders (user_id) VALUES ($1) RETURNING id", 1, params,
			    NULL);
	if (res == NULL)
		goto fail;
	id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	fmt_i64(sid, id);
	if ((rv = insert_items(pg, id, 0, items, n)) != ORDER_STORE_OK)
		goto fail;
	/* The key's primary key serialises concurrent creates: the second
	 * waits for the first to commit, then fails with a unique violation
	 * and answers the first's order. */
	params[1] = key;
	params[2] = request;
	res = shop_pg_query(pg,
			    "INSERT INTO idempotency_keys (user_id, key, request, order_id) "
			    "VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, key) DO UPDATE SET "
			    "request = EXCLUDED.request, order_id = EXCLUDED.order_id, "
			    "created_at = now() WHERE idempotency_keys.created_at < "
			    "now() - interval '24 hours' RETURNING order_id",
			    4, params, sqlstate);
	if (res == NULL)
		goto fail;
	if (PQntuples(res) == 0) { /* a live key: someone else's order */
		PQclear(res);
		shop_pg_exec(pg, "ROLLBACK");
		rv = order_store_find_key(pg, user_id, key, request, &existing);
		return rv == ORDER_STORE_OK ? load(pg, user_id, existing, out) : rv;
	}
	PQclear(res);
	if (shop_pg_exec(pg, "COMMIT") != 0)
		goto fail;
	return load(pg, user_id, id, out);
fail:
	shop_pg_exec(pg, "ROLLBACK");
	return ORDER_STORE_DOWN;
}

int order_store_add_item(shop_pg *pg, int64_t user_id, int64_t id, const order_item_in *item,
			 order_row *out)
{
	char sid[24], suser[24];
	const char *params[2] = {sid, suser};
	PGresult *res;
	int next;

	fmt_i64(sid, id);
	fmt_i64(suser, user_id);
	if (shop_pg_exec(pg, "BEGIN") != 0)
		return ORDER_STORE_DOWN;
	/* The row lock orders concurrent appends to one order; the next
	 * position is read after it, in a statement of its own, so that it
	 * sees the appends committed while this one waited. */
	res = shop_pg_query(pg, "SELECT id FROM orders WHERE id = $1 AND user_id = $2 FOR UPDATE",
			    2, params, NULL);
	if (res == NULL)
		goto fail;
	if (PQntuples(res) != 1) {
		PQclear(res);
		shop_pg_exec(pg, "ROLLBACK");
		return ORDER_STORE_NOT_FOUND;
	}
	PQclear(res);
	res = shop_pg_query(
	    pg, "SELECT coalesce(max(position) + 1, 0) FROM order_items WHERE order_id = $1", 1,
	    params, NULL);
	if (res == NULL)
		goto fail;
	next = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	if (insert_items(pg, id, next, item, 1) != ORDER_STORE_OK)
		goto fail;
	if (shop_pg_exec(pg, "COMMIT") != 0)
		goto fail;
	return load(pg, user_id, id, out);
fail:
	shop_pg_exec(pg, "ROLLBACK");
	return ORDER_STORE_DOWN;
}
