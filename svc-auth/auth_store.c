/* auth_store.c -- SQL of the auth service: parameterised statements only. */
#include "auth_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "names.h"

static int fill_name_keys(shop_pg *pg);

const shop_migration auth_migrations[] = {
    {1,
     "CREATE TABLE users ("
     "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     "  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64),"
     "  password_hash text NOT NULL,"
     "  created_at timestamptz NOT NULL DEFAULT now());"
     "CREATE UNIQUE INDEX users_name_key ON users (name)",
     NULL},
    /* The two keys of names.h. NULL only in rows older than this
     * migration that fill_name_keys could not give them (see there).
     * Unique indexes allow many NULLs. */
    {2,
     "ALTER TABLE users ADD COLUMN name_key text, ADD COLUMN name_skeleton text;"
     "CREATE UNIQUE INDEX users_name_key_key ON users (name_key);"
     "CREATE UNIQUE INDEX users_name_skeleton_key ON users (name_skeleton)",
     fill_name_keys},
};
const int auth_n_migrations = sizeof(auth_migrations) / sizeof(auth_migrations[0]);

/* Gives every existing user the keys of names.h, oldest first, inside
 * migration 2's transaction (under the migration lock). A user whose name
 * is now the same name as an older user's (alice and ALICE signed up
 * before the rule), or whose name breaks the new rules (a zero-width
 * character), keeps NULL keys: nothing is lost, they still sign in with
 * their exact name as before, and each is logged for an operator to rename.
 * A name not in NFC is rewritten in NFC unless another user holds that
 * spelling. */
static int fill_name_keys(shop_pg *pg)
{
	PGresult *users, *res;
	int rv = -1, keyed = 0, apart = 0;

	users = shop_pg_query(pg, "SELECT id, name FROM users ORDER BY id", 0, NULL, NULL);
	if (users == NULL)
		return -1;
	for (int i = 0; i < PQntuples(users); i++) {
		const char *id = PQgetvalue(users, i, 0), *name = PQgetvalue(users, i, 1);
		const char *params[3] = {id};
		auth_name n;
		int got;

		if ((got = auth_name_init(&n, name)) == AUTH_NAME_INTERNAL)
			goto out;
		if (got == AUTH_NAME_INVALID) {
			SHOP_LOG(WARN,
				 "user %s: name breaks the name rules; keeps it, without keys", id);
			apart++;
			continue;
		}
		params[1] = n.key;
		params[2] = n.skeleton;
		res =
		    shop_pg_query(pg,
				  "UPDATE users SET name_key = $2, name_skeleton = $3 WHERE id = $1"
				  " AND NOT EXISTS (SELECT 1 FROM users"
				  "  WHERE name_key = $2 OR name_skeleton = $3)",
				  3, params, NULL);
		if (res != NULL && strcmp(PQcmdTuples(res), "1") != 0) {
			SHOP_LOG(WARN,
				 "user %s: name is the same name as an older user's; keeps it,"
				 " without keys",
				 id);
			apart++;
		} else if (res != NULL && (keyed++, strcmp(n.display, name) != 0)) {
			PQclear(res);
			params[1] = n.display;
			res =
			    shop_pg_query(pg,
					  "UPDATE users SET name = $2 WHERE id = $1 AND NOT EXISTS"
					  " (SELECT 1 FROM users WHERE name = $2)",
					  2, params, NULL);
		}
		auth_name_fini(&n);
		if (res == NULL)
			goto out;
		PQclear(res);
	}
	SHOP_LOG(INFO, "names: %d users given keys, %d kept without", keyed, apart);
	rv = 0;
out:
	PQclear(users);
	return rv;
}

PGresult *auth_store_insert_user(shop_pg *pg, const auth_name *name, const char *hash,
				 char sqlstate[6])
{
	const char *params[4] = {name->display, name->key, name->skeleton, hash};

	return shop_pg_query(pg,
			     "INSERT INTO users (name, name_key, name_skeleton, password_hash)"
			     " VALUES ($1, $2, $3, $4) RETURNING id",
			     4, params, sqlstate);
}

PGresult *auth_store_find_user(shop_pg *pg, const char *key, const char *exact)
{
	const char *params[2] = {key, exact};

	/* A user kept without keys (fill_name_keys) is found by the exact name
	 * it signed up with, and first: whoever types exactly that means it. */
	return shop_pg_query(pg,
			     "SELECT id, name, password_hash FROM users"
			     " WHERE name_key = $1 OR (name_key IS NULL AND name = $2)"
			     " ORDER BY name_key IS NULL DESC LIMIT 1",
			     2, params, NULL);
}

int auth_store_set_hash(shop_pg *pg, int64_t id, const char *hash)
{
	char idbuf[24];
	const char *params[2] = {hash, idbuf};
	PGresult *res;

	snprintf(idbuf, sizeof(idbuf), "%" PRId64, id);
	res =
	    shop_pg_query(pg, "UPDATE users SET password_hash = $1 WHERE id = $2", 2, params, NULL);
	PQclear(res);
	return res != NULL ? 0 : -1;
}
