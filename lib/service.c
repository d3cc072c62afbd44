/* service.c -- the life of an RPC service process around its handlers. */
#include "service.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>

#include "admin_http.h"
#include "advert_check.h"
#include "clock.h"
#include "crash.h"
#include "health.h"
#include "listen_keeper.h"
#include "log.h"
#include "metrics.h"
#include "registry_client.h"
#include "signals.h"
#include "stop_watchdog.h"
#include "trace.h"

/* How long a stopping instance keeps taking calls after it deregistered:
 * callers refresh their registry view every 250 ms by default. */
#define SERVICE_DEREGISTER_WAIT_MS 300
/* The whole stop: the advertiser's close (at most 1.5 s, waiting for a
 * survey), the deregistration wait, the drain, and a second of slack. */
#define SERVICE_STOP_BUDGET_MS(drain_ms) (1500 + SERVICE_DEREGISTER_WAIT_MS + (drain_ms) + 1000)
#define SERVICE_MIGRATE_TRIES            50 /* × 200 ms: how long to wait for the database at start */

/* The admin URL an instance advertises: http://host:port, an IPv6 host in
 * brackets. */
static void service_admin_url(char *out, size_t cap, const char *host, uint16_t port)
{
	snprintf(out, cap, strchr(host, ':') != NULL ? "http://[%s]:%u" : "http://%s:%u", host,
		 (unsigned)port);
}

void shop_service_config_read(shop_service_config *c, shop_env *e, const char *service,
			      const char *def_instance, const char *def_rpc_url,
			      const char *def_admin_addr)
{
	memset(c, 0, sizeof(*c));
	c->service = service;
	c->instance = shop_env_str(e, "SHOP_INSTANCE", def_instance, true);
	c->rpc_url = shop_env_nng_url(e, "SHOP_RPC_URL", def_rpc_url);
	shop_env_hostport(e, "SHOP_ADMIN_ADDR", def_admin_addr, c->admin_host_buf,
			  sizeof(c->admin_host_buf), &c->admin_port);
	c->admin_host = c->admin_host_buf;
	c->weight = shop_env_int(e, "SHOP_WEIGHT", 100, 0, 1000000);
	c->workers = shop_env_int(e, "SHOP_WORKERS", 8, 1, 256);
	c->max_inflight = shop_env_int(e, "SHOP_RPC_MAX_INFLIGHT", 0, 0, 4096);
	c->listen_probe_ms =
	    shop_env_int(e, "SHOP_LISTEN_PROBE_MS", SHOP_LISTEN_PROBE_MS, 0, 600000);
	c->survey_url = shop_env_nng_url(e, "SHOP_REGISTRY_SURVEY_URL", "tcp://127.0.0.1:7100");
	c->pg_dsn = shop_env_str(e, "SHOP_PG_DSN", NULL, true);
	c->log_level = shop_env_log_level(e);
	c->drain_ms = shop_env_int(e, "SHOP_DRAIN_MS", 4000, 0, 60000);
	c->redis_addr = shop_env_str(e, "SHOP_REDIS_ADDR", NULL, false);
	if (c->redis_addr != NULL)
		shop_env_hostport(e, "SHOP_REDIS_ADDR", NULL, c->redis_host, sizeof(c->redis_host),
				  &c->redis_port);
	c->redis_timeout_ms = shop_env_int(e, "SHOP_REDIS_TIMEOUT_MS", 100, 1, 10000);
	c->health_timeout_ms = shop_env_int(e, "SHOP_HEALTH_TIMEOUT_MS", 1000, 10, 60000);
	c->zipkin_url = shop_env_str(e, "SHOP_ZIPKIN_URL", NULL, false);
	if (c->zipkin_url != NULL) {
		shop_zipkin_url u;

		if (shop_zipkin_url_parse(c->zipkin_url, &u) != 0)
			shop_env_fail(e, "SHOP_ZIPKIN_URL",
				      "\"%.128s\" is not http://HOST[:PORT]/PATH", c->zipkin_url);
	}
	/* What the registry would refuse stops the process here, with the
	 * variable's name, rather than leaving it unregistered for good. */
	if (c->instance != NULL && !shop_advert_name_ok(c->instance, 63))
		shop_env_fail(e, "SHOP_INSTANCE",
			      "\"%.64s\" is not 1-63 of a-z, 0-9 and '-' (first and last a letter "
			      "or digit)",
			      c->instance);
	if (c->rpc_url != NULL && !shop_advert_rpc_url_ok(c->rpc_url))
		shop_env_fail(e, "SHOP_RPC_URL",
			      "\"%.128s\" is not tcp://HOST:PORT or tls+tcp://HOST:PORT, which the "
			      "registry admits",
			      c->rpc_url);
	if (c->admin_host[0] != '\0') {
		char url[128];

		service_admin_url(url, sizeof(url), c->admin_host, c->admin_port);
		if (!shop_advert_admin_url_ok(url))
			shop_env_fail(
			    e, "SHOP_ADMIN_ADDR",
			    "\"%.64s\" is not HOST:PORT with a host name or an IP address",
			    c->admin_host);
	}
}

shop_pg *shop_service_pg(const shop_rpc_call *call)
{
	const shop_service_worker *w = call->worker;

	return w != NULL ? w->pg : NULL;
}

shop_redis *shop_service_redis(const shop_rpc_call *call)
{
	const shop_service_worker *w = call->worker;

	return w != NULL ? w->redis : NULL;
}

void shop_service_reply_db_down(shop_rpc_reply *reply)
{
	shop_rpc_reply_error(reply, SHOP_RPC_UNAVAILABLE, "DATABASE_UNAVAILABLE",
			     "the service's database is unavailable");
}

/* The running service's configuration: one service per process, and the
 * worker hooks only receive the handlers' app pointer. */
static const shop_service_config *service_cfg;

static void *service_worker_init(void *app, int index)
{
	const shop_service_config *c = service_cfg;
	shop_service_worker *w = calloc(1, sizeof(*w));

	(void)app;
	(void)index;
	if (w == NULL)
		return NULL;
	if ((w->pg = shop_pg_create(c->pg_dsn)) == NULL)
		goto fail;
	if (c->redis_addr != NULL &&
	    (w->redis =
		 shop_redis_create(c->redis_host, c->redis_port, (int)c->redis_timeout_ms)) == NULL)
		goto fail;
	return w;
fail:
	shop_pg_destroy(w->pg);
	free(w);
	return NULL;
}

static void service_worker_fini(void *app, void *worker)
{
	shop_service_worker *w = worker;

	(void)app;
	if (w == NULL)
		return;
	shop_redis_destroy(w->redis);
	shop_pg_destroy(w->pg);
	free(w);
}

/* Applies the migrations, waiting a while for the database to come up. */
static int service_migrate(const shop_service_config *c, const shop_migration *m, int n)
{
	struct timespec pause = {0, 200 * 1000 * 1000};
	shop_pg *pg;
	int rv = -1;

	if ((pg = shop_pg_create(c->pg_dsn)) == NULL)
		return -1;
	for (int i = 0; i < SERVICE_MIGRATE_TRIES; i++) {
		if ((rv = shop_pg_migrate(pg, m, n)) == 0)
			break;
		nanosleep(&pause, NULL);
	}
	shop_pg_destroy(pg);
	return rv;
}

int shop_service_run(const shop_service_config *c, const shop_rpc_method *methods, size_t n_methods,
		     const shop_migration *migrations, int n_migrations, void *app)
{
	shop_rpc_server_config scfg;
	shop_rpc_server *server = NULL;
	shop_admin *admin = NULL;
	shop_advertiser *adv = NULL;
	shop_health *health = NULL;
	shop_health_config hcfg;
	shop_instance self;
	sigset_t sigs;
	int sig, rv, status = 1;

	shop_log_init(c->instance, c->log_level, NULL);
	/* Before the service's own threads: a crash leaves a fatal line
	 * (lib/crash.h). */
	if ((rv = shop_crash_install(c->instance)) != 0)
		SHOP_LOG(WARN, "crash handler not installed: %s", strerror(rv));
	if (shop_trace_start(c->zipkin_url, c->instance) != 0)
		goto out;

	/* Every thread made from here on inherits the mask; main takes the
	 * signals with sigwait, so no handler runs on a library thread. */
	shop_stop_signals_block(&sigs);

	if (service_migrate(c, migrations, n_migrations) != 0) {
		SHOP_LOG(ERROR, "database migrations failed; stopping");
		goto out;
	}

	memset(&scfg, 0, sizeof(scfg));
	scfg.url = c->rpc_url;
	scfg.workers = (int)c->workers;
	scfg.max_inflight = (int)c->max_inflight;
	scfg.listen_probe_ms = c->listen_probe_ms > 0 ? (int)c->listen_probe_ms : -1;
	scfg.methods = methods;
	scfg.n_methods = n_methods;
	scfg.app = app;
	scfg.worker_init = service_worker_init;
	scfg.worker_fini = service_worker_fini;
	service_cfg = c;
	if ((rv = shop_rpc_server_create(&server, &scfg)) != 0) {
		SHOP_LOG(ERROR, "cannot serve RPC on %s: %s", c->rpc_url, nng_strerror(rv));
		goto out;
	}

	/* Readiness checks the database on a connection of its own: a worker's
	 * may be busy for a whole call. */
	hcfg = (shop_health_config){
	    .pg_dsn = c->pg_dsn,
	    .redis_host = c->redis_addr != NULL ? c->redis_host : NULL,
	    .redis_port = c->redis_port,
	    .timeout_ms = (int)c->health_timeout_ms,
	    .view = c->view,
	    .required = c->needs,
	    .n_required = c->n_needs,
	    .up = c->upstream,
	};
	if (shop_health_create(&health, &hcfg) != 0)
		goto out_server;
	if ((rv = shop_admin_create(&admin, c->admin_host, c->admin_port)) != 0 ||
	    (rv = shop_admin_add(admin, "/healthz", shop_health_healthz, health)) != 0 ||
	    (rv = shop_admin_add(admin, "/readyz", shop_health_readyz, health)) != 0 ||
	    (rv = shop_admin_add(admin, "/metrics", shop_metrics_admin, NULL)) != 0 ||
	    (rv = shop_admin_start(admin)) != 0) {
		SHOP_LOG(ERROR, "cannot serve admin HTTP on %s:%u: %s", c->admin_host,
			 (unsigned)c->admin_port, nng_strerror(rv));
		goto out_admin;
	}

	memset(&self, 0, sizeof(self));
	snprintf(self.service, sizeof(self.service), "%s", c->service);
	snprintf(self.instance, sizeof(self.instance), "%s", c->instance);
	snprintf(self.rpc_url, sizeof(self.rpc_url), "%s", c->rpc_url);
	service_admin_url(self.admin_url, sizeof(self.admin_url), c->admin_host, c->admin_port);
	self.weight = (uint32_t)c->weight;
	self.healthy = true;
	snprintf(self.version, sizeof(self.version), "%s", SHOP_VERSION);
	self.started_unix_ms = shop_now_unix_ms();
	if ((rv = shop_advertiser_create(&adv, c->survey_url, &self)) != 0) {
		SHOP_LOG(ERROR, "cannot reach the registry at %s: %s", c->survey_url,
			 nng_strerror(rv));
		goto out_admin;
	}
	shop_health_set_advertiser(health, adv);

	SHOP_LOG(INFO, "%s serving %s (admin %s, weight %u, %d workers)", c->service, c->rpc_url,
		 self.admin_url, self.weight, (int)c->workers);
	sig = shop_stop_signal_wait(&sigs);
	SHOP_LOG(INFO, "signal %d: deregistering and draining", sig);
	status = 0;
	/* Past the whole stop budget (deregistration, drain, a second of
	 * slack) the process says so and exits: what was in flight had its
	 * drain time already. */
	shop_stop_watchdog_start(SERVICE_STOP_BUDGET_MS(c->drain_ms));

	/* Deregister first so callers stop picking us; keep serving while
	 * their views catch up (one refresh), then finish what is in flight. */
	shop_health_set_draining(health);
	shop_health_set_advertiser(health, NULL);
	shop_advertiser_destroy(adv);
	nanosleep(&(struct timespec){0, SERVICE_DEREGISTER_WAIT_MS * 1000000L}, NULL);
out_admin:
	shop_admin_destroy(admin);
	shop_health_destroy(health); /* after the handlers that read it */
out_server:
	shop_rpc_server_destroy(server, (int)c->drain_ms);
out:
	shop_trace_stop(); /* after the workers: no span is finished any more */
	SHOP_LOG(INFO, "stopped");
	return status;
}
