/* auth_store.c -- SQL of the auth service: parameterised statements only. */
#include "auth_store.h"

#include <inttypes.h>
#include <stdio.h>

const shop_migration auth_migrations[] = {
	{1, "CREATE TABLE users ("
	    "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
	    "  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64),"
	    "  password_hash text NOT NULL,"
	    "  created_at timestamptz NOT NULL DEFAULT now());"
	    "CREATE UNIQUE INDEX users_name_key ON users (name)", NULL},
};
const int auth_n_migrations = sizeof(auth_migrations) / sizeof(auth_migrations[0]);

PGresult *auth_store_insert_user(shop_pg *pg, const char *name, const char *hash, char sqlstate[6])
{
	const char *params[2] = {name, hash};

	return shop_pg_query(pg, "INSERT INTO users (name, password_hash) VALUES ($1, $2) RETURNING id",
			     2, params, sqlstate);
}

PGresult *auth_store_find_user(shop_pg *pg, const char *name)
{
	const char *params[1] = {name};

	return shop_pg_query(pg, "SELECT id, name, password_hash FROM users WHERE name = $1", 1,
			     params, NULL);
}

int auth_store_set_hash(shop_pg *pg, int64_t id, const char *hash)
{
	char idbuf[24];
	const char *params[2] = {hash, idbuf};
	PGresult *res;

	snprintf(idbuf, sizeof(idbuf), "%" PRId64, id);
	res = shop_pg_query(pg, "UPDATE users SET password_hash = $1 WHERE id = $2", 2, params, NULL);
	PQclear(res);
	return res != NULL ? 0 : -1;
}
