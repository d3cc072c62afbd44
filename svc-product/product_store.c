/* product_store.c -- SQL of the product service: parameterised statements only. */
#include "product_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* Numbered migrations, applied in order at start and recorded in
 * schema_migrations. Never edit one that has shipped: add the next. */
const shop_migration product_migrations[] = {
    {1,
     "CREATE TABLE products ("
     "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     "  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),"
     "  supply_price bigint NOT NULL CHECK (supply_price BETWEEN 0 AND 1000000000),"
     "  created_at timestamptz NOT NULL DEFAULT now())",
     NULL},
};
const int product_n_migrations = sizeof(product_migrations) / sizeof(product_migrations[0]);

#define PRODUCT_COLUMNS                                                                            \
	"id, name, supply_price, "                                                                 \
	"to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

PGresult *product_store_insert(shop_pg *pg, const char *name, int64_t supply_price)
{
	char price[24];
	const char *params[2] = {name, price};

	snprintf(price, sizeof(price), "%" PRId64, supply_price);
	return shop_pg_query(pg,
			     "INSERT INTO products (name, supply_price) VALUES ($1, $2) "
			     "RETURNING " PRODUCT_COLUMNS,
			     2, params, NULL);
}

PGresult *product_store_list(shop_pg *pg, int64_t after_id, int limit)
{
	char after[24], lim[16];
	const char *params[2] = {after, lim};

	snprintf(after, sizeof(after), "%" PRId64, after_id);
	snprintf(lim, sizeof(lim), "%d", limit);
	return shop_pg_query(pg,
			     "SELECT " PRODUCT_COLUMNS " FROM products WHERE id > $1 "
			     "ORDER BY id LIMIT $2",
			     2, params, NULL);
}

PGresult *product_store_get_many(shop_pg *pg, const int64_t *ids, size_t n)
{
	/* One array parameter "{1,2,3}": 20 digits and a comma per id. */
	size_t cap = n * 21 + 3, len = 0;
	char *arr = malloc(cap);
	const char *params[1];
	PGresult *res;

	if (arr == NULL)
		return NULL;
	arr[len++] = '{';
	for (size_t i = 0; i < n; i++)
		len +=
		    (size_t)snprintf(arr + len, cap - len, "%s%" PRId64, i > 0 ? "," : "", ids[i]);
	arr[len++] = '}';
	arr[len] = '\0';
	params[0] = arr;
	res = shop_pg_query(pg,
			    "SELECT " PRODUCT_COLUMNS " FROM products WHERE id = ANY($1::bigint[]) "
			    "ORDER BY id",
			    1, params, NULL);
	free(arr);
	return res;
}

void product_store_row(PGresult *res, int row, Shop__V1__Product *p)
{
	shop__v1__product__init(p);
	p->id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
	p->name = PQgetvalue(res, row, 1);
	p->supply_price = strtoll(PQgetvalue(res, row, 2), NULL, 10);
	p->created_at = PQgetvalue(res, row, 3);
}
