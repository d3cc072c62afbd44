/* product_store.h -- the product service's SQL. Every function takes the
 * calling worker's own connection. Results are PGresults whose rows have the
 * columns (id, name, supply_price, created_at), the caller frees them with
 * PQclear; NULL means the database failed (already logged). */
#ifndef PRODUCT_STORE_H
#define PRODUCT_STORE_H

#include <stdint.h>

#include "pg.h"
#include "product.pb-c.h"

extern const shop_migration product_migrations[];
extern const int product_n_migrations;

PGresult *product_store_insert(shop_pg *pg, const char *name, int64_t supply_price);
/* Up to limit products with id > after_id, ordered by id. */
PGresult *product_store_list(shop_pg *pg, int64_t after_id, int limit);
/* The products among ids (n of them), ordered by id, each once. */
PGresult *product_store_get_many(shop_pg *pg, const int64_t *ids, size_t n);

/* Points p's fields into row of res (borrowed: valid until PQclear). */
void product_store_row(PGresult *res, int row, Shop__V1__Product *p);

#endif
