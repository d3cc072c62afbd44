/* http_session.h -- the gateway's HTTP side: the lws context, its protocol
 * callback and the per-request context, from the request line to the
 * answer. Everything here runs on the single lws service thread, except
 * gw_http_wake. */
#ifndef GW_HTTP_SESSION_H
#define GW_HTTP_SESSION_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "health.h"
#include "jwt_filter.h"
#include "registry_client.h"
#include "upstream.h"

typedef struct gw_http_config {
	const char *host; /* listen address (IP literal) */
	uint16_t port;
	const char *instance;        /* this gateway's name (X-Served-By fallback) */
	int64_t rpc_timeout_ms;      /* upstream deadline per request */
	int idle_timeout_s;          /* keep-alive idle; a stalled answer write */
	int request_timeout_s;       /* the header block, then the body, each */
	int access_log_flush_ms;     /* access lines buffered this long at most; 0: unbuffered */
	const char *const *required; /* services /readyz needs an instance of */
	size_t n_required;
	shop_health *health; /* /healthz and /readyz (borrowed) */
	gw_jwt_config jwt;   /* the token check of routes with needs_token */
} gw_http_config;

typedef struct gw_http gw_http;

/* Creates the lws context and listens. cfg (and the strings it points to),
 * view and up are borrowed and must outlive the gw_http. Returns 0 or -1
 * (logged). */
int gw_http_create(gw_http **out, const gw_http_config *cfg, shop_registry_view *view,
		   shop_upstream *up);

/* Serves until *stop becomes non-zero (set it, then call gw_http_wake). */
void gw_http_run(gw_http *h, volatile sig_atomic_t *stop);

/* Wakes the service loop; safe from any thread. */
void gw_http_wake(gw_http *h);

/* Closes every connection and frees. Call after shop_upstream_destroy, so
 * that no completion can arrive any more. Accepts NULL. */
void gw_http_destroy(gw_http *h);

#endif
