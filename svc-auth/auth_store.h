/* auth_store.h -- the auth service's SQL: users and their password hashes.
 * Results are PGresults the caller frees with PQclear; NULL means the
 * database failed (already logged) or, for inserts, see sqlstate. */
#ifndef AUTH_STORE_H
#define AUTH_STORE_H

#include <stdint.h>

#include "pg.h"

extern const shop_migration auth_migrations[];
extern const int auth_n_migrations;

/* Columns (id). sqlstate "23505" when the name is taken. */
PGresult *auth_store_insert_user(shop_pg *pg, const char *name, const char *hash, char sqlstate[6]);
/* Columns (id, name, password_hash); zero rows when unknown. */
PGresult *auth_store_find_user(shop_pg *pg, const char *name);
/* Replaces the stored hash (after a re-hash on sign-in). Returns 0 or -1. */
int auth_store_set_hash(shop_pg *pg, int64_t id, const char *hash);

#endif
