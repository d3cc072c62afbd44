/* registry.h -- what the registry's parts share, private to registry/: its
 * state (struct registry), its configuration, and the entry points of the
 * survey side (survey.c), the lookup side (lookup.c) and the admin HTTP
 * handlers (admin.c); main.c wires them. Every field says which lock
 * guards it. */
#ifndef SHOP_REGISTRY_H
#define SHOP_REGISTRY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <nng/nng.h>

#include "admin_http.h"
#include "clock.h"
#include "dashboard.h"
#include "listen_keeper.h"
#include "log.h"
#include "registry_table.h"

/* Contexts that never hold a lookup, so that one that does not wait is
 * answered at once however many callers long-poll. */
#define LOOKUP_UNPARKED 4
/* The longest the registry holds a lookup, whatever wait_ms asks: a client
 * that vanished without closing its pipe costs a context at most this long. */
#define LOOKUP_MAX_WAIT_MS 30000
/* A worker out of LW_RECV and not parked for longer than this (an answer
 * is sent in milliseconds), or parked this long past LOOKUP_MAX_WAIT_MS,
 * is stuck: the survey thread logs the workers and re-opens it
 * (lookup_heal; SHOP_REGISTRY_LOOKUP_STALL_MS, 0 turns it off). */
#define LOOKUP_STALL_MS 3000

typedef struct registry registry;

typedef enum {
	LW_RECV, /* receiving a Lookup */
	LW_PARK, /* holding one until the table changes or its wait ends */
	LW_SEND, /* sending the Instances answer */
} lookup_state;

/* One REP context answering lookups, one at a time. Its one aio carries the
 * receive, the park (nng_sleep_aio, cancelled to wake it) and the send.
 * Safe only because no timeout is ever set on it: in nng 1.5.2 a sleep
 * leaves the aio's a_expire_ok set, and a later timeout of a receive or a
 * send on it would complete with result 0 (docs/decisions.md). A timeout
 * here needs a separate park aio first. */
typedef struct lookup_worker {
	registry *r;
	nng_ctx ctx;
	nng_aio *aio;
	lookup_state state; /* written under r->mtx, by the aio callback only */
	nng_msg *held;      /* the parked Lookup (LW_PARK); r->mtx */
	bool woken;         /* its park was cancelled; r->mtx */
	int64_t since_ms;   /* monotonic, when state last changed; r->mtx */
	/* Replaced by lookup_heal: its context is closed, its callback only
	 * frees what it holds; freed by registry_stop (r->mtx). */
	bool retired;
	struct lookup_worker *next; /* on r->retired */
} lookup_worker;

struct registry {
	int survey_ms;
	nng_socket surv;
	nng_socket rep;
	/* Their listeners, probed and re-opened when deaf (listen_keeper.h). */
	shop_listen_keeper *surv_keeper, *rep_keeper;
	lookup_worker **workers; /* lookup_contexts of them; slots replaced by lookup_heal (mtx) */
	int nworkers;            /* started */
	lookup_worker *retired;  /* replaced workers, freed by registry_stop (mtx) */
	int stall_ms;            /* LOOKUP_STALL_MS; 0: no healing */
	uint64_t lookups_received, lookups_answered, lookup_heals; /* mtx */
#ifdef SHOP_REGISTRY_FAULTS
	int fault_lose_sends; /* test build only: answers left unsent (mtx) */
#endif
	int max_parked;          /* nworkers - LOOKUP_UNPARKED */
	int64_t lookups_from_ms; /* monotonic; the survey thread opens lookups then */
	bool lookups_open;       /* written by the survey thread; /readyz reads it atomically */
	pthread_t survey_thread;

	pthread_mutex_t mtx; /* guards table, stopping and the lookup workers' park state */
	pthread_cond_t cv;   /* CLOCK_MONOTONIC; signalled on stop and on a new pipe */
	/* A pipe connected since the last round began: survey it now rather
	 * than at the next tick, so that a starting instance joins in tens of
	 * milliseconds. At most one such early round per interval (under mtx). */
	bool survey_soon;
	bool early_used;
	reg_table *table;
	reg_dashboard *dash; /* GET / and /v1/breakers; created by admin_start */
	bool stopping;
	int64_t survey_sent_ms; /* monotonic, when the last survey left; mtx */
	int nparked;
	uint64_t park_full_answers; /* lookups answered at once for want of a context */
	int64_t park_full_logged_ms;
};

typedef struct registry_config {
	const char *survey_url;
	const char *lookup_url;
	char admin_host[64];
	uint16_t admin_port;
	int survey_ms;
	int misses;
	int lookup_contexts;
	int lookup_warmup_ms;
	int lookup_stall_ms;
	int listen_probe_ms;
#ifdef SHOP_REGISTRY_FAULTS
	int fault_lose_sends;
#endif
	const char *scrape_extra; /* admin URLs read for the dashboard beyond the adverts' */
	shop_log_level log_level;
} registry_config;

static inline int64_t now_ms(void)
{
	return shop_now_mono_us() / 1000;
}

/* survey.c: listens for instances; survey_main is the survey thread (it
 * also opens the lookups after the warm-up and runs lookup_heal between
 * rounds). survey_stop ends it: no survey leaves once it has begun, the
 * socket closes at a quiet moment, the thread is joined. */
int survey_start(registry *r, const registry_config *c);
void *survey_main(void *arg);
void survey_stop(registry *r, bool thread_started);

/* lookup.c: the REP socket and its lookup workers. lookup_open starts
 * answering (after the warm-up); lookup_heal re-opens stuck workers;
 * lookup_wake answers parked lookups (every one, or those of a pipe) under
 * r->mtx; lookup_stop frees every worker once no callback can run. */
int lookup_start(registry *r, const registry_config *c);
void lookup_open(registry *r);
void lookup_heal(registry *r);
void lookup_wake(registry *r, uint32_t pipe_id);
void lookup_stop(registry *r);

/* admin.c: /healthz, /readyz, /metrics, /v1/services,
 * /v1/prometheus-targets, the dashboard and /v1/breakers. */
int admin_start(shop_admin **out, registry *r, const registry_config *c);

#endif
