/* harness.h -- runs a service's handlers behind a real nng REP socket with
 * per-worker PostgreSQL connections, as shop_service_run does, for the
 * integration tests. */
#ifndef SHOP_TEST_HARNESS_H
#define SHOP_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>

#include "clock.h"
#include "config.h"
#include "pg.h"
#include "rpc_client.h"
#include "rpc_server.h"
#include "service.h"

typedef struct harness {
	const char *dsn; /* the base DSN with search_path set to the test's schema */
	char dsn_buf[1024];
	char schema[64];
	char url[64];
	shop_rpc_server *server;
	shop_rpc_conn *conn;
} harness;

static harness H;

static void *harness_worker_init(void *app, int index)
{
	shop_service_worker *w = calloc(1, sizeof(*w));

	(void)app;
	(void)index;
	const char *raddr = getenv("SHOP_TEST_REDIS_ADDR");
	char host[64];
	uint16_t port;

	if (w == NULL)
		return NULL;
	w->pg = shop_pg_create(H.dsn);
	if (raddr != NULL && shop_parse_hostport(raddr, host, sizeof(host), &port) == 0)
		w->redis = shop_redis_create(host, port, 200);
	return w;
}

static void harness_worker_fini(void *app, void *worker)
{
	shop_service_worker *w = worker;

	(void)app;
	if (w != NULL) {
		shop_redis_destroy(w->redis);
		shop_pg_destroy(w->pg);
	}
	free(w);
}

/* Each test program works in a fresh schema of its own (as each service
 * has a database of its own), so that migrations and tables of one test
 * never meet another's. */
static int harness_schema(const char *name)
{
	const char *base = getenv("SHOP_TEST_PG_DSN");
	char sql[160];
	shop_pg *pg;
	int rv;

	if (base == NULL) {
		fprintf(stderr, "SHOP_TEST_PG_DSN is not set (./shop test sets it)\n");
		return -1;
	}
	snprintf(H.schema, sizeof(H.schema), "it_%s_%d", name, (int)getpid());
	if ((pg = shop_pg_create(base)) == NULL)
		return -1;
	snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", H.schema);
	rv = shop_pg_exec(pg, sql);
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", H.schema);
	rv = rv != 0 ? rv : shop_pg_exec(pg, sql);
	shop_pg_destroy(pg);
	if (strncmp(base, "postgres", 8) == 0) /* a URI: postgresql://... */
		snprintf(H.dsn_buf, sizeof(H.dsn_buf), "%s%coptions=-csearch_path%%3D%s", base,
			 strchr(base, '?') != NULL ? '&' : '?', H.schema);
	else
		snprintf(H.dsn_buf, sizeof(H.dsn_buf), "%s options=-csearch_path=%s", base,
			 H.schema);
	H.dsn = H.dsn_buf;
	return rv;
}

/* Makes the test's schema, migrates it, starts the server on a port
 * derived from port_base and the pid, and connects a client. */
static int harness_start(const char *name, const shop_rpc_method *methods, size_t n,
			 const shop_migration *mig, int n_mig, void *app, int port_base)
{
	shop_rpc_server_config cfg = {0};
	shop_pg *pg;
	int rv;

	if (harness_schema(name) != 0) {
		fprintf(stderr, "cannot make the test schema\n");
		return -1;
	}
	pg = shop_pg_create(H.dsn);
	if (pg == NULL || shop_pg_migrate(pg, mig, n_mig) != 0) {
		fprintf(stderr, "cannot prepare the test database\n");
		shop_pg_destroy(pg);
		return -1;
	}
	shop_pg_destroy(pg);
	snprintf(H.url, sizeof(H.url), "tcp://127.0.0.1:%d", port_base + getpid() % 1000);
	cfg.url = H.url;
	cfg.workers = 4;
	cfg.methods = methods;
	cfg.n_methods = n;
	cfg.app = app;
	cfg.worker_init = harness_worker_init;
	cfg.worker_fini = harness_worker_fini;
	if ((rv = shop_rpc_server_create(&H.server, &cfg)) != 0 ||
	    (rv = shop_rpc_conn_create(&H.conn, H.url, 8, 64)) != 0) {
		fprintf(stderr, "cannot start on %s: %s\n", H.url, nng_strerror(rv));
		return -1;
	}
	return 0;
}

static void harness_stop(void)
{
	char sql[160];
	shop_pg *pg;

	shop_rpc_conn_destroy(H.conn);
	shop_rpc_server_destroy(H.server, 1000);
	if ((pg = shop_pg_create(getenv("SHOP_TEST_PG_DSN"))) != NULL) {
		snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", H.schema);
		shop_pg_exec(pg, sql);
		shop_pg_destroy(pg);
	}
}

/* Calls method; returns the reply (caller frees with
 * shop__v1__rpc_response__free_unpacked), NULL on a transport error. */
static Shop__V1__RpcResponse *harness_call(const char *method, const ProtobufCMessage *req)
{
	shop_rpc_call_opts o = {.deadline_unix_ms = shop_now_unix_ms() + 10000};
	Shop__V1__RpcResponse *resp = NULL;

	if (shop_rpc_conn_call_sync(H.conn, method, req, &o, &resp) != 0)
		return NULL;
	return resp;
}

#endif
