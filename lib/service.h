/* service.h -- what every RPC service process does besides its handlers:
 * read the common SHOP_* variables, migrate its database, serve RPC with
 * one PostgreSQL connection per worker, advertise itself to the registry,
 * serve admin HTTP, and stop cleanly on SIGTERM/SIGINT. */
#ifndef SHOP_SERVICE_H
#define SHOP_SERVICE_H

#include <stdint.h>

#include "config.h"
#include "pg.h"
#include "redis.h"
#include "rpc_server.h"
#include "upstream.h"

typedef struct shop_service_config {
	const char *service;    /* "product" */
	const char *instance;   /* SHOP_INSTANCE */
	const char *rpc_url;    /* SHOP_RPC_URL: listen and advertise */
	const char *admin_host; /* SHOP_ADMIN_ADDR */
	uint16_t admin_port;
	char admin_host_buf[64];
	int64_t weight;           /* SHOP_WEIGHT */
	int64_t workers;          /* SHOP_WORKERS */
	int64_t max_inflight;     /* SHOP_RPC_MAX_INFLIGHT; 0: 8 × workers */
	int64_t listen_probe_ms;  /* SHOP_LISTEN_PROBE_MS; 0: no probe (listen_keeper.h) */
	const char *survey_url;   /* SHOP_REGISTRY_SURVEY_URL */
	const char *pg_dsn;       /* SHOP_PG_DSN */
	shop_log_level log_level; /* SHOP_LOG_LEVEL */
	int64_t drain_ms;         /* SHOP_DRAIN_MS */
	const char *redis_addr;   /* SHOP_REDIS_ADDR; NULL when the service runs without */
	char redis_host[64];
	uint16_t redis_port;
	int64_t redis_timeout_ms;  /* SHOP_REDIS_TIMEOUT_MS */
	int64_t health_timeout_ms; /* SHOP_HEALTH_TIMEOUT_MS: /readyz's database check */
	const char *zipkin_url;    /* SHOP_ZIPKIN_URL; NULL: spans are not recorded */
	/* Set by main when the service calls others, for /readyz and /healthz
	 * (health.h): the view, the services it needs an instance of, and the
	 * upstream whose breakers are reported. Borrowed; NULL / 0 for none. */
	shop_registry_view *view;
	const char *const *needs;
	size_t n_needs;
	shop_upstream *upstream;
} shop_service_config;

/* Reads the common variables with this service's defaults. Errors are
 * recorded in e (call shop_env_check after reading the service's own). */
void shop_service_config_read(shop_service_config *c, shop_env *e, const char *service,
			      const char *def_instance, const char *def_rpc_url,
			      const char *def_admin_addr);

/* Per-worker state of a service: its own database connection, and its own
 * Redis connection (NULL when SHOP_REDIS_ADDR is unset). */
typedef struct shop_service_worker {
	shop_pg *pg;
	shop_redis *redis;
} shop_service_worker;

/* The calling worker's connections (NULL when the worker could not make
 * one, or, for Redis, when the service runs without). Borrowed. */
shop_pg *shop_service_pg(const shop_rpc_call *call);
shop_redis *shop_service_redis(const shop_rpc_call *call);

/* UNAVAILABLE, reason DATABASE_UNAVAILABLE (answered 503
 * service_unavailable at the edge): the service's own database failed. */
void shop_service_reply_db_down(shop_rpc_reply *reply);

/* Runs until SIGTERM/SIGINT. Returns the process exit status. */
int shop_service_run(const shop_service_config *c, const shop_rpc_method *methods, size_t n_methods,
		     const shop_migration *migrations, int n_migrations, void *app);

#endif
