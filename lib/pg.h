/* pg.h -- PostgreSQL helpers: one connection per worker thread,
 * parameterised queries only, reconnect after a lost connection, numbered
 * migrations recorded in schema_migrations. */
#ifndef SHOP_PG_H
#define SHOP_PG_H

#include <libpq-fe.h>

typedef struct shop_pg shop_pg;

/* Connects to dsn (copied). Never fails for an unreachable server: the
 * connection is (re)made lazily by shop_pg_query. Caller frees with
 * shop_pg_destroy. NULL only when out of memory. */
shop_pg *shop_pg_create(const char *dsn);
void shop_pg_destroy(shop_pg *pg); /* accepts NULL */

/* Runs a parameterised statement (text parameters, text results). When the
 * connection is bad it reconnects once and retries only if the statement
 * never reached the server. Returns a PGresult the caller frees with
 * PQclear, whose status is PGRES_COMMAND_OK or PGRES_TUPLES_OK; on failure
 * returns NULL and logs the error once (never the DSN). *sqlstate (may be
 * NULL) receives the 5-char SQLSTATE of a server error, or "" on a
 * connection failure. */
PGresult *shop_pg_query(shop_pg *pg, const char *sql, int nparams, const char *const *params,
			char sqlstate[6]);

/* Runs "BEGIN", "COMMIT", "ROLLBACK" and other parameterless commands.
 * Returns 0 or -1. */
int shop_pg_exec(shop_pg *pg, const char *sql);

/* True when the connection is up right now (after a cheap check). */
int shop_pg_ok(shop_pg *pg);

typedef struct shop_migration {
	int version;     /* 1, 2, 3... ascending */
	const char *sql; /* may hold several statements */
	/* NULL, or run after sql in the same transaction: data SQL cannot
	 * compute (a column filled by the service's own code). Returns 0, or
	 * -1 to roll the migration back. */
	int (*fill)(shop_pg *pg);
} shop_migration;

/* Applies the migrations whose version is not yet in schema_migrations,
 * each in its own transaction (sql, then fill), under an advisory lock so
 * that two instances starting together do not race. Returns 0 or -1. */
int shop_pg_migrate(shop_pg *pg, const shop_migration *m, int n);

#endif
