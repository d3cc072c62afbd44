/* main.c -- the registry process: surveys instances (survey.c), answers
 * lookups (lookup.c, long-polled), serves its table over admin HTTP
 * (admin.c). Wiring only: configuration, start, the stop on a signal. The
 * table itself is registry_table.c. */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "config.h"
#include "crash.h"
#include "registry.h"
#include "signals.h"
#include "stop_watchdog.h"

/* A stop takes milliseconds (150 at most waiting for a quiet moment, see
 * survey_stop); past this, nng's reaper is stuck and the process exits. */
#define REGISTRY_STOP_BUDGET_MS 1500

/* Every event is a new revision: the parked lookups answer it. */
static void on_table_event(void *arg, reg_event ev, reg_leave_reason why, const shop_instance *in)
{
	registry *r = arg;

	lookup_wake(r, 0);
	switch (ev) {
	case REG_EV_JOIN:
		SHOP_LOG(INFO,
			 "instance joined: service=%s instance=%s rpc_url=%s admin_url=%s "
			 "weight=%u healthy=%s version=%s",
			 in->service, in->instance, in->rpc_url, in->admin_url, in->weight,
			 in->healthy ? "true" : "false", in->version);
		break;
	case REG_EV_UPDATE:
		SHOP_LOG(INFO,
			 "instance changed: service=%s instance=%s rpc_url=%s admin_url=%s "
			 "weight=%u healthy=%s version=%s",
			 in->service, in->instance, in->rpc_url, in->admin_url, in->weight,
			 in->healthy ? "true" : "false", in->version);
		break;
	case REG_EV_LEAVE:
		SHOP_LOG(INFO, "instance left: service=%s instance=%s reason=%s", in->service,
			 in->instance,
			 why == REG_LEAVE_PIPE_CLOSED ? "pipe_closed" : "missed_surveys");
		break;
	}
}

static int config_read(registry_config *c)
{
	const char *why;
	shop_env env;

	shop_env_init(&env, "registry");
	c->survey_url = shop_env_nng_url(&env, "SHOP_REGISTRY_SURVEY_URL", "tcp://127.0.0.1:7100");
	c->lookup_url = shop_env_nng_url(&env, "SHOP_REGISTRY_LOOKUP_URL", "tcp://127.0.0.1:7101");
	shop_env_hostport(&env, "SHOP_REGISTRY_ADMIN_ADDR", "127.0.0.1:7109", c->admin_host,
			  sizeof(c->admin_host), &c->admin_port);
	c->survey_ms = (int)shop_env_int(&env, "SHOP_REGISTRY_SURVEY_MS", 500, 20, 60000);
	c->misses = (int)shop_env_int(&env, "SHOP_REGISTRY_MISSES", 3, 1, 100);
	/* One per long-polling caller plus LOOKUP_UNPARKED; a context costs a
	 * few hundred bytes and no thread. */
	c->lookup_contexts =
	    (int)shop_env_int(&env, "SHOP_REGISTRY_LOOKUP_CONTEXTS", 64, 2 * LOOKUP_UNPARKED, 4096);
	/* Instances redial within 500 ms (lib/registry_client.c), then answer
	 * the next survey; 100 ms of margin. */
	c->lookup_warmup_ms = (int)shop_env_int(&env, "SHOP_REGISTRY_LOOKUP_WARMUP_MS",
						c->survey_ms + 600, 0, 600000);
	/* 0 turns the stuck-worker check off (lookup_heal). */
	c->lookup_stall_ms =
	    (int)shop_env_int(&env, "SHOP_REGISTRY_LOOKUP_STALL_MS", LOOKUP_STALL_MS, 0, 600000);
	/* 0 turns the listeners' probes off (listen_keeper.h). */
	c->listen_probe_ms =
	    (int)shop_env_int(&env, "SHOP_LISTEN_PROBE_MS", SHOP_LISTEN_PROBE_MS, 0, 600000);
#ifdef SHOP_REGISTRY_FAULTS
	c->fault_lose_sends =
	    (int)shop_env_int(&env, "SHOP_REGISTRY_FAULT_LOSE_SENDS", 0, 0, 1000000);
#endif
	/* Callers that do not register (the gateway), for the dashboard's
	 * breakers: "gateway=http://127.0.0.1:8080". */
	c->scrape_extra = shop_env_str(&env, "SHOP_REGISTRY_SCRAPE_EXTRA", "", false);
	if (reg_dashboard_extra_check(c->scrape_extra, &why) != 0)
		shop_env_fail(&env, "SHOP_REGISTRY_SCRAPE_EXTRA", "%s", why);
	c->log_level = shop_env_log_level(&env);
	return shop_env_check(&env);
}

/* Stops the survey thread if it runs, then everything nng: after this no
 * callback touches the table. */
static void registry_stop(registry *r, bool thread_started)
{
	survey_stop(r, thread_started);
	lookup_stop(r);
}

int main(void)
{
	registry_config cfg;
	registry r = {0};
	shop_admin *admin = NULL;
	bool thread_started = false;
	sigset_t sigs;
	int sig, rv, status = 1;

	/* Before any thread exists (nng starts its own), so that every thread
	 * inherits the mask and SIGTERM/SIGINT reach only sigwait below. */
	shop_stop_signals_block(&sigs);

	if (config_read(&cfg) != 0)
		return 2;
	shop_log_init("registry", cfg.log_level, NULL);
	/* Before any thread: a crash leaves a fatal line (lib/crash.h). */
	if ((rv = shop_crash_install("registry")) != 0)
		SHOP_LOG(WARN, "crash handler not installed: %s", strerror(rv));
	r.survey_ms = cfg.survey_ms;
	r.stall_ms = cfg.lookup_stall_ms;
#ifdef SHOP_REGISTRY_FAULTS
	r.fault_lose_sends = cfg.fault_lose_sends;
	if (r.fault_lose_sends > 0)
		SHOP_LOG(WARN, "test build with faults: the first %d answers are never sent",
			 r.fault_lose_sends);
#endif
	r.lookups_from_ms = now_ms() + cfg.lookup_warmup_ms;

	if (pthread_mutex_init(&r.mtx, NULL) != 0)
		return 1;
	if ((rv = shop_cond_init_mono(&r.cv)) != 0)
		goto out_mtx;
	if (reg_table_create(&r.table, cfg.misses, on_table_event, &r) != 0)
		goto out_cv;

	if ((rv = survey_start(&r, &cfg)) != 0 || (rv = lookup_start(&r, &cfg)) != 0 ||
	    (rv = admin_start(&admin, &r, &cfg)) != 0)
		goto out_stop;
	if (pthread_create(&r.survey_thread, NULL, survey_main, &r) != 0) {
		SHOP_LOG(ERROR, "cannot start the survey thread");
		goto out_stop;
	}
	thread_started = true;
	SHOP_LOG(INFO,
		 "registry up: survey=%s lookup=%s admin=http://%s:%u survey_ms=%d misses=%d "
		 "lookup_contexts=%d lookup_warmup_ms=%d lookup_stall_ms=%d version=%s",
		 cfg.survey_url, cfg.lookup_url, cfg.admin_host, (unsigned)cfg.admin_port,
		 cfg.survey_ms, cfg.misses, cfg.lookup_contexts, cfg.lookup_warmup_ms,
		 cfg.lookup_stall_ms, SHOP_VERSION);

	sig = shop_stop_signal_wait(&sigs);
	SHOP_LOG(INFO, "signal %d: stopping", sig);
	status = 0;
	shop_stop_watchdog_start(REGISTRY_STOP_BUDGET_MS);

out_stop:
	/* The admin server first: its handlers read the table. */
	shop_admin_destroy(admin);
	reg_dashboard_destroy(r.dash); /* its thread reads the table */
	registry_stop(&r, thread_started);
	reg_table_destroy(r.table);
out_cv:
	pthread_cond_destroy(&r.cv);
out_mtx:
	pthread_mutex_destroy(&r.mtx);
	if (status == 0)
		SHOP_LOG(INFO, "registry stopped");
	return status;
}
