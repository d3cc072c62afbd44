/* main.c -- the edge gateway: configuration, wiring, signals.
 *
 * Environment (read here only):
 *   SHOP_GATEWAY_ADDR               listen host:port (127.0.0.1:8080)
 *   SHOP_REGISTRY_LOOKUP_URL        registry lookups (tcp://127.0.0.1:7101)
 *   SHOP_REGISTRY_REFRESH_MS        retry interval while the registry is unreachable (250)
 *   SHOP_RPC_TIMEOUT_MS             upstream deadline per request (2000)
 *   SHOP_RPC_PER_TRY_PCT            a GET's first try: this % of the deadline,
 *                                   then one retry elsewhere (45)
 *   SHOP_RPC_CALLER_QUEUE           calls waiting per instance beyond the 32
 *                                   sent; more are shed at once (32)
 *   SHOP_GATEWAY_IDLE_TIMEOUT_S     idle keep-alive connection, stalled
 *                                   answer write (10)
 *   SHOP_GATEWAY_REQUEST_TIMEOUT_S  a request's header block, then its body,
 *                                   each must arrive within it (10)
 *   SHOP_JWT_SECRET                 HS256 key of the access tokens (required,
 *                                   at least 32 bytes; never logged)
 *   SHOP_GATEWAY_REQUIRED_SERVICES  services /readyz needs a healthy instance
 *                                   of, comma-separated ("product"; add
 *                                   "auth,order" once they are deployed)
 *   SHOP_ZIPKIN_URL                 Zipkin v2 collector, e.g.
 *                                   http://127.0.0.1:9411/api/v2/spans (unset:
 *                                   no spans are recorded)
 *   SHOP_GATEWAY_ACCESS_LOG_FLUSH_MS  access lines (one per answer) are buffered and
 *                                   written at most this long after (100); a 5xx
 *                                   line at once; 0: each line at once
 *   SHOP_LOG_LEVEL                  debug, info, warn, error (info)
 *   SHOP_INSTANCE                   this gateway's name ("gateway") */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "crash.h"
#include "health.h"
#include "http_session.h"
#include "jwt_filter.h"
#include "log.h"
#include "stop_watchdog.h"
#include "registry_client.h"
#include "signals.h"
#include "trace.h"
#include "upstream.h"

#define MAX_REQUIRED 8

static volatile sig_atomic_t stop_flag;

typedef struct sig_waiter {
	sigset_t set;
	gw_http *http;
} sig_waiter;

/* Takes SIGTERM/SIGINT synchronously, so that the wake-up is an ordinary
 * function call rather than work in a signal handler. */
static void *sig_thread(void *arg)
{
	sig_waiter *w = arg;
	int sig = 0;

	sig = shop_stop_signal_wait(&w->set);
	(void)sig;
	stop_flag = 1;
	gw_http_wake(w->http);
	return NULL;
}

/* Splits SHOP_GATEWAY_REQUIRED_SERVICES ("product,order") in place. */
static int split_services(char *list, const char **out, size_t cap, size_t *n)
{
	*n = 0;
	for (char *save = NULL, *tok = strtok_r(list, ", ", &save); tok != NULL;
	     tok = strtok_r(NULL, ", ", &save)) {
		if (*n == cap || strlen(tok) >= 32)
			return -1;
		out[(*n)++] = tok;
	}
	return *n > 0 ? 0 : -1;
}

int main(void)
{
	shop_env env;
	char host[64], *required_buf = NULL;
	const char *required[MAX_REQUIRED];
	gw_http_config cfg = {.host = host, .required = required};
	const char *lookup_url, *required_s, *jwt_secret, *zipkin_url;
	shop_log_level level;
	shop_zipkin_url zipkin;
	shop_health *health = NULL;
	int64_t refresh_ms;
	int rv, status = 1, per_try_pct, caller_queue;
	shop_registry_view *view = NULL;
	shop_upstream *up = NULL;
	gw_http *http = NULL;
	sig_waiter waiter;
	pthread_t sig_tid;
	bool sig_started = false;

	shop_env_init(&env, "gateway");
	shop_env_hostport(&env, "SHOP_GATEWAY_ADDR", "127.0.0.1:8080", host, sizeof(host),
			  &cfg.port);
	lookup_url = shop_env_nng_url(&env, "SHOP_REGISTRY_LOOKUP_URL", "tcp://127.0.0.1:7101");
	refresh_ms = shop_env_int(&env, "SHOP_REGISTRY_REFRESH_MS", 250, 10, 60000);
	cfg.rpc_timeout_ms = shop_env_int(&env, "SHOP_RPC_TIMEOUT_MS", 2000, 1, 600000);
	per_try_pct = (int)shop_env_int(&env, "SHOP_RPC_PER_TRY_PCT",
					SHOP_UPSTREAM_PER_TRY_PCT_DEFAULT, 1, 100);
	caller_queue = (int)shop_env_int(&env, "SHOP_RPC_CALLER_QUEUE", SHOP_UPSTREAM_QUEUE_DEFAULT,
					 0, SHOP_UPSTREAM_QUEUE_MAX);
	cfg.idle_timeout_s = (int)shop_env_int(&env, "SHOP_GATEWAY_IDLE_TIMEOUT_S", 10, 1, 3600);
	cfg.request_timeout_s =
	    (int)shop_env_int(&env, "SHOP_GATEWAY_REQUEST_TIMEOUT_S", 10, 1, 3600);
	cfg.access_log_flush_ms =
	    (int)shop_env_int(&env, "SHOP_GATEWAY_ACCESS_LOG_FLUSH_MS", 100, 0, 10000);
	level = shop_env_log_level(&env);
	cfg.instance = shop_env_str(&env, "SHOP_INSTANCE", "gateway", true);
	required_s = shop_env_str(&env, "SHOP_GATEWAY_REQUIRED_SERVICES", "product", false);
	/* No token can be verified without the key: refuse to start. */
	jwt_secret = shop_env_secret(&env, "SHOP_JWT_SECRET", GW_JWT_MIN_KEY);
	zipkin_url = shop_env_str(&env, "SHOP_ZIPKIN_URL", NULL, false);
	if (zipkin_url != NULL && shop_zipkin_url_parse(zipkin_url, &zipkin) != 0)
		shop_env_fail(&env, "SHOP_ZIPKIN_URL", "\"%.128s\" is not http://HOST[:PORT]/PATH",
			      zipkin_url);
	if (shop_env_check(&env) != 0)
		return 2;
	cfg.jwt.key = (const unsigned char *)jwt_secret;
	cfg.jwt.key_len = strlen(jwt_secret);
	if ((required_buf = strdup(required_s)) == NULL ||
	    split_services(required_buf, required, MAX_REQUIRED, &cfg.n_required) != 0) {
		fprintf(stderr,
			"gateway: SHOP_GATEWAY_REQUIRED_SERVICES: 1 to %d service names "
			"of fewer than 32 characters, separated by commas\n",
			MAX_REQUIRED);
		free(required_buf);
		return 2;
	}
	shop_log_init(cfg.instance, level, NULL);
	/* Before any thread: a crash leaves a fatal line (lib/crash.h). */
	if ((rv = shop_crash_install(cfg.instance)) != 0)
		SHOP_LOG(WARN, "crash handler not installed: %s", strerror(rv));

	/* Block the signals before any thread starts, so that every thread
	 * (nng's included) inherits the mask and only sig_thread takes them. */
	shop_stop_signals_block(&waiter.set);

	if (shop_trace_start(zipkin_url, cfg.instance) != 0)
		goto out;
	if ((rv = shop_registry_view_create(&view, lookup_url, (int)refresh_ms)) != 0) {
		SHOP_LOG(ERROR, "registry view on %s: %s", lookup_url, nng_strerror(rv));
		goto out;
	}
	if ((rv = shop_upstream_create(&up, view, cfg.instance)) != 0) {
		SHOP_LOG(ERROR, "upstream: %s", nng_strerror(rv));
		goto out;
	}
	shop_upstream_set_per_try_pct(up, per_try_pct);
	shop_upstream_set_queue(up, caller_queue);
	if (shop_health_create(&health, &(shop_health_config){.view = view,
							      .required = required,
							      .n_required = cfg.n_required,
							      .up = up}) != 0)
		goto out;
	cfg.health = health;
	if (gw_http_create(&http, &cfg, view, up) != 0)
		goto out;
	waiter.http = http;
	if (pthread_create(&sig_tid, NULL, sig_thread, &waiter) != 0) {
		SHOP_LOG(ERROR, "cannot start the signal thread");
		goto out;
	}
	sig_started = true;
	SHOP_LOG(INFO, "listening on http://%s:%u, registry %s, rpc timeout %lld ms", host,
		 cfg.port, lookup_url, (long long)cfg.rpc_timeout_ms);
	gw_http_run(http, &stop_flag);
	SHOP_LOG(INFO, "stopping");
	status = 0;
	/* Calls in flight end by their timeout at the latest; past that and
	 * two seconds, nng's reaper is stuck (see stop_watchdog.h). */
	shop_stop_watchdog_start(cfg.rpc_timeout_ms + 2000);
out:
	if (sig_started) {
		if (!stop_flag)
			pthread_kill(sig_tid, SIGTERM); /* let it return */
		pthread_join(sig_tid, NULL);
	}
	/* Order matters: the upstream waits for its callbacks while the lws
	 * context (which they wake) still exists; then the connections close. */
	shop_upstream_destroy(up);
	gw_http_destroy(http);
	shop_health_destroy(health);
	shop_registry_view_destroy(view);
	shop_trace_stop(); /* no request and no upstream call finishes a span now */
	free(required_buf);
	return status;
}
