/* test_pg.c -- lib/pg.c against a real PostgreSQL named by SHOP_TEST_PG_DSN
 * (fails, never skips, when it is unset). Migrations run in a schema of
 * their own, dropped at the end, so the test may share a database. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../cunit_main.h"

#include "pg.h"

static const char *dsn(void)
{
	const char *d = getenv("SHOP_TEST_PG_DSN");

	if (d == NULL || d[0] == '\0')
		fprintf(stderr, "SHOP_TEST_PG_DSN is not set (./shop test sets it)\n");
	return d != NULL && d[0] != '\0' ? d : NULL;
}

static void test_pg_dsn_is_set(void)
{
	CU_ASSERT_PTR_NOT_NULL(dsn());
}

static void test_pg_parameterised_round_trip(void)
{
	const char *params[2] = {"41", "it's; DROP TABLE x; --"};
	char state[6] = "xxxxx";
	shop_pg *pg;
	PGresult *res;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dsn());
	CU_ASSERT_PTR_NOT_NULL_FATAL(pg = shop_pg_create(dsn()));
	CU_ASSERT_TRUE(shop_pg_ok(pg));
	res = shop_pg_query(pg, "SELECT $1::int + 1, $2::text", 2, params, state);
	CU_ASSERT_PTR_NOT_NULL_FATAL(res);
	CU_ASSERT_EQUAL(PQresultStatus(res), PGRES_TUPLES_OK);
	CU_ASSERT_STRING_EQUAL(state, "");
	CU_ASSERT_EQUAL(PQntuples(res), 1);
	CU_ASSERT_STRING_EQUAL(PQgetvalue(res, 0, 0), "42");
	CU_ASSERT_STRING_EQUAL(PQgetvalue(res, 0, 1), params[1]);
	PQclear(res);

	/* A server error: NULL and its SQLSTATE. */
	res = shop_pg_query(pg, "SELECT $1::int", 1, (const char *const[]){"nope"}, state);
	CU_ASSERT_PTR_NULL(res);
	CU_ASSERT_STRING_EQUAL(state, "22P02");
	res = shop_pg_query(pg, "SELECT * FROM shop_no_such_table", 0, NULL, state);
	CU_ASSERT_PTR_NULL(res);
	CU_ASSERT_STRING_EQUAL(state, "42P01");
	/* The connection is still good after errors. */
	CU_ASSERT_EQUAL(shop_pg_exec(pg, "SELECT 1"), 0);
	shop_pg_destroy(pg);
	shop_pg_destroy(NULL);
}

static void test_pg_unreachable_server_fails_with_empty_sqlstate(void)
{
	char state[6] = "xxxxx";
	shop_pg *pg;

	/* Port 1 on loopback refuses at once. */
	pg = shop_pg_create("host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=1");
	CU_ASSERT_PTR_NOT_NULL_FATAL(pg);
	CU_ASSERT_FALSE(shop_pg_ok(pg));
	CU_ASSERT_PTR_NULL(shop_pg_query(pg, "SELECT 1", 0, NULL, state));
	CU_ASSERT_STRING_EQUAL(state, "");
	shop_pg_destroy(pg);
}

static const shop_migration migrations[] = {
    {1,
     "CREATE TABLE mig_t (id int PRIMARY KEY, note text NOT NULL);"
     "CREATE INDEX mig_t_note ON mig_t (note);",
     NULL},
    {2, "INSERT INTO mig_t VALUES (1, 'one'); INSERT INTO mig_t VALUES (2, 'two');", NULL},
    {3, "ALTER TABLE mig_t ADD COLUMN extra int NOT NULL DEFAULT 7;", NULL},
    {4, "INSERT INTO mig_t VALUES (3, 'three'); SELECT no_such_function();", NULL},
};

static int count_rows(shop_pg *pg, const char *sql);

/* A fill sees its migration's sql; one that fails rolls the sql back. */
static int fill_doubles(shop_pg *pg)
{
	return shop_pg_exec(pg, "UPDATE mig_t SET extra = extra * 2");
}

static int fill_fails(shop_pg *pg)
{
	(void)shop_pg_exec(pg, "UPDATE mig_t SET note = 'filled'");
	return -1;
}

static const shop_migration fill_migrations[] = {
    {5, "ALTER TABLE mig_t ADD COLUMN gone int", fill_fails},
    {6, "INSERT INTO mig_t VALUES (4, 'four')", fill_doubles},
};

static int count_rows(shop_pg *pg, const char *sql)
{
	PGresult *res = shop_pg_query(pg, sql, 0, NULL, NULL);
	int n;

	if (res == NULL)
		return -1;
	n = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return n;
}

static void test_pg_migrations_apply_once_and_are_recorded(void)
{
	char schema[64], sql[160];
	shop_pg *pg;
	PGresult *res;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dsn());
	CU_ASSERT_PTR_NOT_NULL_FATAL(pg = shop_pg_create(dsn()));
	snprintf(schema, sizeof(schema), "shop_test_pg_%d", (int)getpid());
	snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
	CU_ASSERT_EQUAL_FATAL(shop_pg_exec(pg, sql), 0);
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
	CU_ASSERT_EQUAL_FATAL(shop_pg_exec(pg, sql), 0);
	snprintf(sql, sizeof(sql), "SET search_path TO %s", schema);
	CU_ASSERT_EQUAL_FATAL(shop_pg_exec(pg, sql), 0);

	CU_ASSERT_EQUAL(shop_pg_migrate(pg, migrations, 2), 0);
	CU_ASSERT_EQUAL(count_rows(pg, "SELECT count(*) FROM mig_t"), 2);
	CU_ASSERT_EQUAL(count_rows(pg, "SELECT count(*) FROM schema_migrations"), 2);
	/* Again: a no-op (migration 2 would insert duplicate keys). */
	CU_ASSERT_EQUAL(shop_pg_migrate(pg, migrations, 2), 0);
	CU_ASSERT_EQUAL(count_rows(pg, "SELECT count(*) FROM mig_t"), 2);
	/* A new one is applied alone. */
	CU_ASSERT_EQUAL(shop_pg_migrate(pg, migrations, 3), 0);
	CU_ASSERT_EQUAL(count_rows(pg, "SELECT sum(extra) FROM mig_t"), 14);
	res = shop_pg_query(pg, "SELECT version FROM schema_migrations ORDER BY version", 0, NULL,
			    NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(res);
	CU_ASSERT_EQUAL(PQntuples(res), 3);
	for (int i = 0; i < PQntuples(res) && i < 3; i++)
		CU_ASSERT_EQUAL(atoi(PQgetvalue(res, i, 0)), i + 1);
	PQclear(res);
	/* A failing migration rolls back whole and is not recorded. */
	CU_ASSERT_EQUAL(shop_pg_migrate(pg, migrations, 4), -1);
	CU_ASSERT_EQUAL(count_rows(pg, "SELECT count(*) FROM mig_t"), 2);
	CU_ASSERT_EQUAL(count_rows(pg, "SELECT count(*) FROM schema_migrations"), 3);
	/* A fill runs in its migration's transaction: its failure undoes the
	 * sql too, and a fill sees the rows its sql made. */
	CU_ASSERT_EQUAL(shop_pg_migrate(pg, fill_migrations, 1), -1);
	CU_ASSERT_EQUAL(count_rows(pg, "SELECT count(*) FROM information_schema.columns"
				       " WHERE column_name = 'gone'"),
			0);
	CU_ASSERT_EQUAL(count_rows(pg, "SELECT count(*) FROM mig_t WHERE note = 'filled'"), 0);
	CU_ASSERT_EQUAL(shop_pg_migrate(pg, fill_migrations + 1, 1), 0);
	CU_ASSERT_EQUAL(count_rows(pg, "SELECT sum(extra) FROM mig_t"), 42);
	/* The advisory lock was released: another session can take it. */
	CU_ASSERT_EQUAL(count_rows(pg, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
				       " AND pid = pg_backend_pid()"),
			0);
	/* Versions out of order are refused before anything runs. */
	CU_ASSERT_EQUAL(
	    shop_pg_migrate(
		pg, (const shop_migration[]){{2, "SELECT 1", NULL}, {1, "SELECT 1", NULL}}, 2),
	    -1);

	snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
	CU_ASSERT_EQUAL(shop_pg_exec(pg, sql), 0);
	shop_pg_destroy(pg);
}

static char *backend_pid(shop_pg *pg)
{
	PGresult *res = shop_pg_query(pg, "SELECT pg_backend_pid()", 0, NULL, NULL);
	char *pid;

	if (res == NULL)
		return NULL;
	pid = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return pid;
}

/* Terminates pid's backend from a second connection and waits for it. */
static int terminate(shop_pg *killer, const char *pid)
{
	const char *params[1] = {pid};
	PGresult *res =
	    shop_pg_query(killer, "SELECT pg_terminate_backend($1::int, 5000)", 1, params, NULL);
	int ok;

	if (res == NULL)
		return -1;
	ok = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return ok ? 0 : -1;
}

static void test_pg_reconnects_after_backend_killed(void)
{
	shop_pg *pg, *killer;
	char *pid1, *pid2;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dsn());
	CU_ASSERT_PTR_NOT_NULL_FATAL(pg = shop_pg_create(dsn()));
	CU_ASSERT_PTR_NOT_NULL_FATAL(killer = shop_pg_create(dsn()));
	pid1 = backend_pid(pg);
	CU_ASSERT_PTR_NOT_NULL_FATAL(pid1);
	CU_ASSERT_EQUAL(terminate(killer, pid1), 0);
	/* The very next query succeeds, on a new backend. */
	pid2 = backend_pid(pg);
	CU_ASSERT_PTR_NOT_NULL(pid2);
	if (pid2 != NULL)
		CU_ASSERT_STRING_NOT_EQUAL(pid1, pid2);
	free(pid1);
	free(pid2);
	shop_pg_destroy(killer);
	shop_pg_destroy(pg);
}

static void test_pg_lost_transaction_fails_until_rollback(void)
{
	shop_pg *pg, *killer;
	char *pid;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dsn());
	CU_ASSERT_PTR_NOT_NULL_FATAL(pg = shop_pg_create(dsn()));
	CU_ASSERT_PTR_NOT_NULL_FATAL(killer = shop_pg_create(dsn()));
	CU_ASSERT_EQUAL(shop_pg_exec(pg, "BEGIN"), 0);
	pid = backend_pid(pg);
	CU_ASSERT_PTR_NOT_NULL_FATAL(pid);
	CU_ASSERT_EQUAL(terminate(killer, pid), 0);
	/* The rest of the transaction must not run on a new connection. */
	CU_ASSERT_NOT_EQUAL(shop_pg_exec(pg, "SELECT 1"), 0);
	CU_ASSERT_NOT_EQUAL(shop_pg_exec(pg, "COMMIT"), 0);
	CU_ASSERT_EQUAL(shop_pg_exec(pg, "ROLLBACK"), 0);
	CU_ASSERT_EQUAL(shop_pg_exec(pg, "SELECT 1"), 0);
	free(pid);
	shop_pg_destroy(killer);
	shop_pg_destroy(pg);
}

/* Statements with parameters run prepared; when a table changes under a
 * prepared statement (a migration on a running service), the server refuses
 * its old plan (0A000) and the statement is prepared anew and run again,
 * outside a transaction at once; inside one the transaction fails. */
static void test_pg_prepared_statement_survives_a_table_change(void)
{
	static const char *const SELECT = "SELECT * FROM shop_it_prep WHERE id = $1";
	const char *params[1] = {"1"};
	shop_pg *pg, *other;
	PGresult *res;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dsn());
	CU_ASSERT_PTR_NOT_NULL_FATAL(pg = shop_pg_create(dsn()));
	CU_ASSERT_PTR_NOT_NULL_FATAL(other = shop_pg_create(dsn()));
	CU_ASSERT_EQUAL(shop_pg_exec(other, "DROP TABLE IF EXISTS shop_it_prep"), 0);
	CU_ASSERT_EQUAL(shop_pg_exec(other, "CREATE TABLE shop_it_prep (id int, a text)"), 0);
	CU_ASSERT_EQUAL_FATAL(shop_pg_exec(other, "INSERT INTO shop_it_prep VALUES (1, 'x')"), 0);
	for (int round = 0; round < 2; round++) {
		res = shop_pg_query(pg, SELECT, 1, params, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(res);
		CU_ASSERT_EQUAL(PQnfields(res), 2);
		PQclear(res);
	}
	CU_ASSERT_EQUAL(shop_pg_exec(other, "ALTER TABLE shop_it_prep ADD COLUMN b text"), 0);
	res = shop_pg_query(pg, SELECT, 1, params, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(res);
	CU_ASSERT_EQUAL(PQnfields(res), 3);
	PQclear(res);
	CU_ASSERT_EQUAL(shop_pg_exec(other, "ALTER TABLE shop_it_prep ADD COLUMN c text"), 0);
	CU_ASSERT_EQUAL(shop_pg_exec(pg, "BEGIN"), 0);
	CU_ASSERT_PTR_NULL(shop_pg_query(pg, SELECT, 1, params, NULL));
	CU_ASSERT_EQUAL(shop_pg_exec(pg, "ROLLBACK"), 0);
	res = shop_pg_query(pg, SELECT, 1, params, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(res);
	CU_ASSERT_EQUAL(PQnfields(res), 4);
	PQclear(res);
	CU_ASSERT_EQUAL(shop_pg_exec(other, "DROP TABLE shop_it_prep"), 0);
	shop_pg_destroy(other);
	shop_pg_destroy(pg);
}

SHOP_TEST_MAIN("pg", {"SHOP_TEST_PG_DSN is set", test_pg_dsn_is_set},
	       {"a prepared statement survives a table change",
		test_pg_prepared_statement_survives_a_table_change},
	       {"parameterised query round trip", test_pg_parameterised_round_trip},
	       {"unreachable server fails with empty sqlstate",
		test_pg_unreachable_server_fails_with_empty_sqlstate},
	       {"migrations apply once and are recorded",
		test_pg_migrations_apply_once_and_are_recorded},
	       {"reconnects after the backend is killed", test_pg_reconnects_after_backend_killed},
	       {"a lost transaction fails until ROLLBACK",
		test_pg_lost_transaction_fails_until_rollback})
