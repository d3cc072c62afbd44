/* auth_store.h -- the auth service's SQL: users and their password hashes.
 * Results are PGresults the caller frees with PQclear; NULL means the
 * database failed (already logged) or, for inserts, see sqlstate. */
#ifndef AUTH_STORE_H
#define AUTH_STORE_H

#include <stdint.h>

#include "names.h"
#include "pg.h"

extern const shop_migration auth_migrations[];
extern const int auth_n_migrations;

/* Stores name's display form and both its keys (borrowed). Columns (id).
 * sqlstate "23505" when the name is taken: either key, or the display
 * form, is already another user's. */
PGresult *auth_store_insert_user(shop_pg *pg, const auth_name *name, const char *hash,
				 char sqlstate[6]);
/* The user whose name_key is key (NULL: the name has no key), or else the
 * user kept without keys whose stored name is exactly exact. Columns (id,
 * name, password_hash); zero rows when unknown. */
PGresult *auth_store_find_user(shop_pg *pg, const char *key, const char *exact);
/* Replaces the stored hash (after a re-hash on sign-in). Returns 0 or -1. */
int auth_store_set_hash(shop_pg *pg, int64_t id, const char *hash);

#endif
