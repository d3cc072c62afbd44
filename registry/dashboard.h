/* dashboard.h -- the registry's dashboard: GET / serves a self-contained
 * HTML page (registry/dashboard.html, embedded at build time) that shows
 * every instance and the callers' breakers and refreshes itself; GET
 * /v1/breakers serves what the page needs beyond /v1/services: the
 * breaker states the callers expose on their /metrics, read by a thread of
 * the dashboard's own while someone looks (never on an HTTP server thread).
 *
 * Which /metrics are read: every registered instance's (its admin_url from
 * the advert), plus the extra ones of SHOP_REGISTRY_SCRAPE_EXTRA, for
 * callers that do not register (the gateway). */
#ifndef SHOP_REGISTRY_DASHBOARD_H
#define SHOP_REGISTRY_DASHBOARD_H

#include <stddef.h>

#include "registry_client.h"

typedef struct reg_dashboard reg_dashboard;

/* Copies the registry's instances. On 0, *out is malloc'd (caller frees;
 * NULL when *n is 0). Called on the dashboard's thread; takes whatever lock
 * the table needs. Returns 0 or an error. */
typedef int (*reg_dashboard_list_fn)(void *arg, shop_instance **out, size_t *n);

typedef struct reg_dashboard_config {
	const char *self_admin_url; /* the registry's own, shown as its row; borrowed */
	/* SHOP_REGISTRY_SCRAPE_EXTRA (see reg_dashboard_extra_check); NULL or
	 * "" for none; copied. */
	const char *extra;
	int interval_ms; /* between two reads of every /metrics while someone looks */
	int timeout_ms;  /* for one read of all of them together */
	int idle_ms;     /* reading stops this long after the last GET /v1/breakers */
	reg_dashboard_list_fn list;
	void *list_arg; /* borrowed; must outlive the dashboard */
} reg_dashboard_config;

/* Checks a SHOP_REGISTRY_SCRAPE_EXTRA value: comma-separated
 * "instance=http://host:port[/prefix]" items (the instance's admin URL, as
 * an advert carries it; its /metrics is read), e.g.
 * "gateway=http://127.0.0.1:8080". An instance name is 1 to 63 of
 * [A-Za-z0-9._-]; its row shows it as its own service. Returns 0, or -1 and
 * a static reason in *why. */
int reg_dashboard_extra_check(const char *extra, const char **why);

/* Starts the dashboard's thread, idle until the first GET /v1/breakers.
 * cfg->extra must pass reg_dashboard_extra_check. Returns 0 or an errno. */
int reg_dashboard_create(reg_dashboard **out, const reg_dashboard_config *cfg);
/* Stops and joins the thread. Accepts NULL. The admin server that calls
 * reg_dashboard_breakers must be stopped first. */
void reg_dashboard_destroy(reg_dashboard *d);

/* shop_admin_fn for GET /: the page. arg unused. */
int reg_dashboard_page(void *arg, char **body, size_t *len, const char **content_type);

/* shop_admin_fn for GET /v1/breakers (arg: the reg_dashboard):
 *   {"self": {"service","instance","admin_url","version","uptime_ms"},
 *    "scraped_ms_ago": ms since the last read of every /metrics, or null,
 *    "sources": [{"service","instance","metrics_url","registered","up",
 *                 "error","last_ok_ms_ago" (null when never),"stale"}],
 *    "breakers": [{"name","caller","instance","state","failure_rate",
 *                  "source","stale"}]}
 * A source that did not answer its last read keeps its last known breakers,
 * marked stale. Returns at once, but for the first call after a quiet
 * spell, which waits (at most timeout_ms and a little) for a fresh read. */
int reg_dashboard_breakers(void *arg, char **body, size_t *len, const char **content_type);

#endif
