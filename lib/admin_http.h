/* admin_http.h -- the small HTTP server every process carries for
 * /healthz, /readyz, /metrics and, on the registry, /v1/... (nng's HTTP
 * server: no extra dependency, its own threads). */
#ifndef SHOP_ADMIN_HTTP_H
#define SHOP_ADMIN_HTTP_H

#include <stddef.h>
#include <stdint.h>

typedef struct shop_admin shop_admin;

/* A GET handler. Fills *body (malloc'd; the server frees it) and
 * *content_type (a static string) and returns the HTTP status. Runs on an
 * nng thread; must not block for long. */
typedef int (*shop_admin_fn)(void *arg, char **body, size_t *len, const char **content_type);

/* Listens on host:port (e.g. "127.0.0.1", 7109). Handlers are added before
 * start. Returns 0 or an nng error. */
int shop_admin_create(shop_admin **out, const char *host, uint16_t port);
int shop_admin_add(shop_admin *a, const char *path, shop_admin_fn fn, void *arg);
int shop_admin_start(shop_admin *a);
void shop_admin_destroy(shop_admin *a); /* accepts NULL */

/* The stock /healthz body {"status":"up"}; arg unused. */
int shop_admin_healthz(void *arg, char **body, size_t *len, const char **content_type);

#endif
