/* health.h -- liveness and readiness of a process, for /healthz and /readyz.
 *
 * Liveness (/healthz) answers 200 for as long as the process answers at
 * all: a dependency that fails never fails it, or a platform would restart
 * healthy processes for a fault elsewhere. Readiness (/readyz) answers 503
 * only when this process cannot serve: its own database does not answer (a
 * dedicated connection, checked on a thread of its own with a short
 * timeout), a service it calls has no instance in its last registry view,
 * or it is draining to stop. A cache (Redis) that is down, a registry that
 * is away, or a breaker that is open leave it serving worse, not
 * stopped: both answers then say "degraded" and list the reasons. */
#ifndef SHOP_HEALTH_H
#define SHOP_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "breaker.h"
#include "registry_client.h"
#include "upstream.h"

typedef struct shop_health shop_health;

typedef struct shop_health_config {
	const char *pg_dsn;     /* the process's database; NULL: none */
	const char *redis_host; /* its cache; NULL: none */
	uint16_t redis_port;
	/* A check of the database or the cache that takes longer fails; checks
	 * run every SHOP_HEALTH_INTERVAL_MS. 0: 1000. */
	int timeout_ms;
	shop_registry_view *view;    /* NULL: none */
	const char *const *required; /* services view must hold an instance of */
	size_t n_required;
	shop_upstream *up; /* its breakers are reported; NULL: none */
} shop_health_config;

#define SHOP_HEALTH_INTERVAL_MS 1000

/* Copies c (its strings and objects borrowed for the health's lifetime) and
 * starts the checking thread when there is a database or a cache to check.
 * Returns 0 or -1 (logged). */
int shop_health_create(shop_health **out, const shop_health_config *c);
/* Stops the thread (within a check's timeout) and frees. Accepts NULL.
 * Call after the admin server that calls the handlers is gone. */
void shop_health_destroy(shop_health *h);

/* The advertiser whose connection to the registry is reported (borrowed;
 * NULL to forget it before destroying it). Thread-safe. */
void shop_health_set_advertiser(shop_health *h, shop_advertiser *a);
/* From now on readiness fails: the process is stopping. */
void shop_health_set_draining(shop_health *h);

/* Renders the answer for /readyz (readiness) or /healthz into *body
 * (malloc'd, caller frees) and returns the HTTP status (500 and NULL body
 * when out of memory). Never blocks on I/O: reads the last checks. */
int shop_health_render(shop_health *h, bool readiness, char **body, size_t *len);

/* shop_admin_fn handlers for /healthz and /readyz; arg is the shop_health. */
int shop_health_healthz(void *arg, char **body, size_t *len, const char **content_type);
int shop_health_readyz(void *arg, char **body, size_t *len, const char **content_type);

/* ---- the report (pure; exposed for tests) -------------------------------- */

typedef enum {
	SHOP_CHECK_NONE,    /* not checked here: left out of the body */
	SHOP_CHECK_UNKNOWN, /* not checked yet */
	SHOP_CHECK_UP,
	SHOP_CHECK_DOWN, /* the registry: "away" */
} shop_check;

#define SHOP_HEALTH_MAX_SERVICES 8
#define SHOP_HEALTH_MAX_BREAKERS 64

typedef struct shop_health_report {
	shop_check database, redis, registry;
	bool draining;
	size_t n_services;
	struct {
		char name[32];
		int instances; /* healthy ones in the view */
	} services[SHOP_HEALTH_MAX_SERVICES];
	size_t n_breakers;
	struct {
		char name[100];
		shop_breaker_state state;
	} breakers[SHOP_HEALTH_MAX_BREAKERS];
} shop_health_report;

/* The JSON body for r:
 *   {"status":S,"checks":{"database":"up","redis":"down","registry":"away",
 *    "services":{"product":2},"breakers":{"order:product-b":"open"}},
 *    "reasons":["redis down",...]}
 * S is, for readiness, "ready", "degraded" (200) or "not_ready" (503); for
 * liveness "up" or "degraded" (always 200), and a liveness that is up says
 * no more than {"status":"up"}. Unknown checks count as down. Returns the
 * status; *body malloc'd (NULL and 500 when out of memory). */
int shop_health_report_json(const shop_health_report *r, bool readiness, char **body, size_t *len);

#endif
