/* pg.c -- one libpq connection: parameterised statements, a cheap liveness
 * check with one reconnect, and numbered migrations under an advisory lock.
 *
 * Transactions and reconnects: a connection lost inside a transaction
 * (after BEGIN) must not be replaced silently, or the rest of the
 * transaction would run, and commit, on its own. So when that happens the
 * handle behaves as the server does for an aborted transaction: every
 * statement fails until the caller sends ROLLBACK (which then succeeds
 * without a round trip; the server already rolled back when the session
 * ended), and only then does it reconnect. */
#include "pg.h"

#include <ctype.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

/* Used unless the DSN sets its own connect_timeout, so that a dead server
 * costs a worker seconds, not the kernel's TCP timeout. */
#define PG_CONNECT_TIMEOUT_S "2"
/* pg_advisory_lock key held while migrating: "shopmigr" as 8 bytes. */
#define PG_MIGRATE_LOCK_KEY "8316866587013065074"

/* Statements with parameters are prepared once per connection and then
 * executed by name: the server parses and plans them once, not at every
 * call. Looked up by the SQL's address (callers pass string literals),
 * confirmed by its text, so a caller that reuses one buffer for other SQL
 * only misses. A full table means the new statement runs unprepared. */
#define PG_PREPARED_MAX 64

struct pg_prepared {
	const char *sql_addr; /* the caller's pointer, for the lookup */
	char *sql;            /* our copy, to confirm the text */
	unsigned long gen;    /* the connection it was prepared on; 0: not prepared */
	unsigned serial;      /* in its name: a stale statement is prepared anew under another */
};

struct shop_pg {
	char *dsn;
	PGconn *conn;      /* NULL when the last connect failed */
	unsigned long gen; /* bumped by every successful connect */
	bool in_tx;        /* the server last said: inside a transaction */
	bool tx_lost;      /* the connection died inside one: see above */
	struct pg_prepared prepared[PG_PREPARED_MAX];
	int n_prepared;
};

/* Routes server notices (and the FATAL a server sends before it drops an
 * idle session) to the log instead of libpq's default stderr printer. */
static void pg_notice(void *arg, const PGresult *res)
{
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	(void)arg;
	if (sev == NULL)
		sev = "NOTICE";
	if (strcmp(sev, "WARNING") == 0 || strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0)
		SHOP_LOG(WARN, "pg: server %s: %s", sev, msg != NULL ? msg : "");
	else
		SHOP_LOG(DEBUG, "pg: server %s: %s", sev, msg != NULL ? msg : "");
}

/* libpq messages end in newlines and may span lines; the log wants one. */
static void pg_log_conn_error(PGconn *conn, const char *what)
{
	char buf[512];
	size_t n;

	snprintf(buf, sizeof(buf), "%s", conn != NULL ? PQerrorMessage(conn) : "out of memory");
	for (n = strlen(buf); n > 0 && isspace((unsigned char)buf[n - 1]); n--)
		buf[n - 1] = '\0';
	for (char *p = buf; *p != '\0'; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	/* libpq's messages name host, port and user, never the password. */
	SHOP_LOG(ERROR, "pg: %s: %s", what, buf);
}

static int pg_connect(shop_pg *pg)
{
	/* Keywords are applied in order and a later one wins: the DSN
	 * (expanded from "dbname") overrides the connect timeout, and nothing
	 * overrides UTF8 — not PGCLIENTENCODING, the server's default nor the
	 * DSN: every string the services send and read is UTF-8, and array
	 * literals are escaped byte-wise (svc-order/order_store.c). */
	static const char *const keys[] = {"connect_timeout", "dbname", "client_encoding", NULL};
	const char *vals[] = {PG_CONNECT_TIMEOUT_S, pg->dsn, "UTF8", NULL};

	if (pg->conn != NULL)
		PQfinish(pg->conn);
	pg->in_tx = false;
	pg->conn = PQconnectdbParams(keys, vals, 1);
	if (pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_OK) {
		pg_log_conn_error(pg->conn, "cannot connect");
		PQfinish(pg->conn);
		pg->conn = NULL;
		return -1;
	}
	PQsetNoticeReceiver(pg->conn, pg_notice, NULL);
	pg->gen++;
	return 0;
}

/* The cheap check: no round trip, just read whatever the server sent while
 * the connection sat idle. A terminated backend sends a FATAL and closes:
 * the first read takes the message, a later one sees the end of stream and
 * turns the status to CONNECTION_BAD. */
static bool pg_alive(shop_pg *pg)
{
	struct pollfd pfd;

	if (pg->conn == NULL)
		return false;
	pfd.fd = PQsocket(pg->conn);
	pfd.events = POLLIN;
	pfd.revents = 0;
	if (PQstatus(pg->conn) == CONNECTION_OK && poll(&pfd, 1, 0) == 0)
		return true; /* nothing pending: the usual case, one syscall */
	for (int i = 0; i < 3 && PQstatus(pg->conn) == CONNECTION_OK; i++) {
		if (PQconsumeInput(pg->conn) == 0)
			break;
		(void)PQisBusy(pg->conn); /* parses it: a FATAL goes to pg_notice */
	}
	return PQstatus(pg->conn) == CONNECTION_OK;
}

/* pg_alive, and notes a transaction lost with the connection. */
static bool pg_check(shop_pg *pg)
{
	bool alive = pg_alive(pg);

	if (!alive && pg->in_tx) {
		SHOP_LOG(ERROR, "pg: connection lost inside a transaction; "
				"statements fail until ROLLBACK");
		pg->in_tx = false;
		pg->tx_lost = true;
	}
	return alive;
}

/* Records the transaction state after a statement ran on pg->conn. */
static void pg_after(shop_pg *pg)
{
	if (PQstatus(pg->conn) == CONNECTION_OK) {
		pg->in_tx = PQtransactionStatus(pg->conn) != PQTRANS_IDLE;
	} else if (pg->in_tx) {
		pg->in_tx = false;
		pg->tx_lost = true;
	}
}

/* "ROLLBACK" or "ABORT", any case, spaces and a ';' around it. */
static bool is_rollback(const char *sql)
{
	char word[16];
	size_t n = 0;

	while (isspace((unsigned char)*sql))
		sql++;
	while (*sql != '\0' && !isspace((unsigned char)*sql) && *sql != ';' && n < sizeof(word) - 1)
		word[n++] = *sql++;
	word[n] = '\0';
	while (isspace((unsigned char)*sql) || *sql == ';')
		sql++;
	return *sql == '\0' &&
	       (strcasecmp(word, "ROLLBACK") == 0 || strcasecmp(word, "ABORT") == 0);
}

static void set_sqlstate(char sqlstate[6], const PGresult *res)
{
	const char *s = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (sqlstate != NULL)
		snprintf(sqlstate, 6, "%s", s != NULL ? s : "");
}

/* Logs a failed statement: SQLSTATE and the primary message only (the
 * DETAIL may quote row values); the SQL text is a constant from the code. */
static void pg_log_result_error(shop_pg *pg, const char *sql, const PGresult *res)
{
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	if (state == NULL || msg == NULL) {
		pg_log_conn_error(pg->conn, "statement failed");
		return;
	}
	if (strncmp(state, "23", 2) == 0) /* constraint: usually a business answer */
		SHOP_LOG(WARN, "pg: %s (sqlstate %s) in: %.80s", msg, state, sql);
	else
		SHOP_LOG(ERROR, "pg: %s (sqlstate %s) in: %.80s", msg, state, sql);
}

shop_pg *shop_pg_create(const char *dsn)
{
	shop_pg *pg;

	if ((pg = calloc(1, sizeof(*pg))) == NULL)
		return NULL;
	if ((pg->dsn = strdup(dsn != NULL ? dsn : "")) == NULL) {
		free(pg);
		return NULL;
	}
	(void)pg_connect(pg); /* a failure is logged; the next query retries */
	return pg;
}

void shop_pg_destroy(shop_pg *pg)
{
	if (pg == NULL)
		return;
	PQfinish(pg->conn);
	for (int i = 0; i < pg->n_prepared; i++)
		free(pg->prepared[i].sql);
	/* The DSN may hold a password: do not leave it in freed memory. */
	explicit_bzero(pg->dsn, strlen(pg->dsn));
	free(pg->dsn);
	free(pg);
}

static void pg_prepared_name(const struct pg_prepared *p, int i, char name[32])
{
	snprintf(name, 32, "shop_%d_%u", i, p->serial);
}

/* Index of sql's prepared statement on the current connection: found, or
 * prepared now; -1 to run it unprepared (no room, or the prepare failed —
 * then the plain run reports the error). */
static int pg_prepared_index(shop_pg *pg, const char *sql, int nparams)
{
	struct pg_prepared *p;
	char name[32];
	PGresult *res;
	int i;

	for (i = 0; i < pg->n_prepared; i++) {
		p = &pg->prepared[i];
		if (p->sql_addr == sql && strcmp(p->sql, sql) == 0)
			break;
	}
	if (i < pg->n_prepared && pg->prepared[i].gen == pg->gen)
		return i;
	if (i == pg->n_prepared) {
		if (pg->n_prepared == PG_PREPARED_MAX) {
			static bool told;
			if (!told) {
				told = true;
				SHOP_LOG(WARN, "pg: %d statements prepared; more run unprepared",
					 PG_PREPARED_MAX);
			}
			return -1;
		}
		if ((pg->prepared[i].sql = strdup(sql)) == NULL)
			return -1;
		pg->prepared[i].sql_addr = sql;
		pg->prepared[i].gen = 0;
		pg->prepared[i].serial = 0;
		pg->n_prepared++;
	}
	p = &pg->prepared[i];
	pg_prepared_name(p, i, name);
	res = PQprepare(pg->conn, name, sql, nparams, NULL);
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		/* The name may now exist half-made (never: a failed Parse
		 * creates nothing); the next try uses another anyway. */
		p->serial++;
		PQclear(res);
		return -1;
	}
	PQclear(res);
	p->gen = pg->gen;
	return i;
}

/* A prepared statement the server no longer runs as prepared: its plan's
 * result type changed under it (0A000, "cached plan must not change result
 * type", after a migration altered a table) or it is gone (26000). */
static bool pg_prepared_stale(const PGresult *res)
{
	const char *st;

	if (res == NULL || PQresultStatus(res) != PGRES_FATAL_ERROR)
		return false;
	st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	return st != NULL && (strcmp(st, "0A000") == 0 || strcmp(st, "26000") == 0);
}

static PGresult *pg_exec_params(shop_pg *pg, const char *sql, int nparams,
				const char *const *params)
{
	bool in_tx = pg->in_tx;
	char name[32];
	PGresult *res;
	int i;

	if (nparams == 0 || (i = pg_prepared_index(pg, sql, nparams)) < 0)
		return PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	pg_prepared_name(&pg->prepared[i], i, name);
	res = PQexecPrepared(pg->conn, name, nparams, params, NULL, NULL, 0);
	if (!pg_prepared_stale(res))
		return res;
	/* Prepared anew, under another name, at its next use. The server
	 * raised this before running anything: outside a transaction it is
	 * safe to run the statement once more now; inside one the
	 * transaction has failed and the caller sees the error. */
	pg->prepared[i].gen = 0;
	pg->prepared[i].serial++;
	if (in_tx)
		return res;
	PQclear(res);
	if ((i = pg_prepared_index(pg, sql, nparams)) < 0)
		return PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	pg_prepared_name(&pg->prepared[i], i, name);
	return PQexecPrepared(pg->conn, name, nparams, params, NULL, NULL, 0);
}

PGresult *shop_pg_query(shop_pg *pg, const char *sql, int nparams, const char *const *params,
			char sqlstate[6])
{
	ExecStatusType st;
	PGresult *res;
	bool alive;

	if (sqlstate != NULL)
		sqlstate[0] = '\0';
	if (pg == NULL || sql == NULL || nparams < 0 || (nparams > 0 && params == NULL))
		return NULL;
	alive = pg_check(pg);
	if (pg->tx_lost) {
		if (is_rollback(sql)) {
			pg->tx_lost = false;
			return PQmakeEmptyPGresult(NULL, PGRES_COMMAND_OK);
		}
		SHOP_LOG(ERROR, "pg: refused (transaction lost with its connection): %.80s", sql);
		return NULL;
	}
	/* Reconnecting here is safe: the statement has not been sent yet. */
	if (!alive && pg_connect(pg) != 0)
		return NULL;

	res = pg_exec_params(pg, sql, nparams, params);
	pg_after(pg);
	st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	/* Not retried even when the connection is gone now: the statement
	 * may have run. The next call reconnects. */
	set_sqlstate(sqlstate, res);
	pg_log_result_error(pg, sql, res);
	PQclear(res);
	return NULL;
}

int shop_pg_exec(shop_pg *pg, const char *sql)
{
	PGresult *res = shop_pg_query(pg, sql, 0, NULL, NULL);

	if (res == NULL)
		return -1;
	PQclear(res);
	return 0;
}

int shop_pg_ok(shop_pg *pg)
{
	if (pg == NULL)
		return 0;
	if (pg_check(pg))
		return 1;
	/* Down: one reconnect attempt, bounded by connect_timeout, unless a
	 * lost transaction still waits for its ROLLBACK. */
	return !pg->tx_lost && pg_connect(pg) == 0;
}

/* Applies one migration in its own transaction and records it. Called with
 * the migration lock held on connection generation gen. */
static int migration_apply(shop_pg *pg, const shop_migration *m, unsigned long gen)
{
	char version[16];
	const char *params[1] = {version};
	ExecStatusType st;
	PGresult *res;

	snprintf(version, sizeof(version), "%d", m->version);
	if (shop_pg_exec(pg, "BEGIN") != 0)
		return -1;
	if (pg->gen != gen) {
		SHOP_LOG(ERROR, "pg: connection replaced while migrating; lock lost");
		goto out_rollback;
	}
	/* PQexec, not PQexecParams: a migration holds several statements, and
	 * only PQexec runs more than one. Safe here and only here: m->sql is a
	 * constant compiled into the service, never built from input. It must
	 * not contain its own BEGIN/COMMIT. */
	res = PQexec(pg->conn, m->sql);
	pg_after(pg);
	st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		pg_log_result_error(pg, "migration", res);
		PQclear(res);
		goto out_rollback;
	}
	PQclear(res);
	if (m->fill != NULL && (m->fill(pg) != 0 || pg->gen != gen))
		goto out_rollback;
	res = shop_pg_query(pg, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, params,
			    NULL);
	if (res == NULL)
		goto out_rollback;
	PQclear(res);
	if (shop_pg_exec(pg, "COMMIT") != 0)
		goto out_rollback;
	SHOP_LOG(INFO, "pg: applied migration %d", m->version);
	return 0;

out_rollback:
	SHOP_LOG(ERROR, "pg: migration %d not applied", m->version);
	(void)shop_pg_exec(pg, "ROLLBACK");
	return -1;
}

int shop_pg_migrate(shop_pg *pg, const shop_migration *m, int n)
{
	const char *lock_params[1] = {PG_MIGRATE_LOCK_KEY};
	unsigned long gen;
	PGresult *res;
	int rv = -1;

	if (pg == NULL || n < 0 || (n > 0 && m == NULL))
		return -1;
	for (int i = 0; i < n; i++) {
		if (m[i].sql == NULL || m[i].version < 1 ||
		    (i > 0 && m[i].version <= m[i - 1].version)) {
			SHOP_LOG(ERROR, "pg: migration %d: versions must ascend from 1, sql set",
				 i);
			return -1;
		}
	}
	/* Session-level lock: released by the unlock below or, if the
	 * connection dies, by the server with the session. */
	if ((res = shop_pg_query(pg, "SELECT pg_advisory_lock($1)", 1, lock_params, NULL)) == NULL)
		return -1;
	PQclear(res);
	gen = pg->gen;
	if (shop_pg_exec(pg, "CREATE TABLE IF NOT EXISTS schema_migrations ("
			     "version int PRIMARY KEY, "
			     "applied_at timestamptz NOT NULL DEFAULT now())") != 0)
		goto out_unlock;
	for (int i = 0; i < n; i++) {
		char version[16];
		const char *params[1] = {version};
		bool applied;

		snprintf(version, sizeof(version), "%d", m[i].version);
		res = shop_pg_query(pg, "SELECT 1 FROM schema_migrations WHERE version = $1", 1,
				    params, NULL);
		if (res == NULL)
			goto out_unlock;
		applied = PQntuples(res) > 0;
		PQclear(res);
		if (pg->gen != gen) {
			SHOP_LOG(ERROR, "pg: connection replaced while migrating; lock lost");
			goto out_unlock;
		}
		if (!applied && migration_apply(pg, &m[i], gen) != 0)
			goto out_unlock;
	}
	rv = 0;
out_unlock:
	if (pg->gen == gen && (res = shop_pg_query(pg, "SELECT pg_advisory_unlock($1)", 1,
						   lock_params, NULL)) != NULL)
		PQclear(res);
	return rv;
}
