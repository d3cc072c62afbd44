/* admin_http.c -- the admin HTTP server (GET-only handlers over nng's HTTP
 * server) and the stock /healthz handler. */
#include "admin_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "log.h"

struct shop_admin {
	nng_url *url; /* kept for the server's lifetime */
	nng_http_server *srv;
};

/* What one path calls; owned by its nng handler (freed with it). */
typedef struct admin_route {
	shop_admin_fn fn;
	void *arg;
} admin_route;

/* nng calls this on one of its threads for each GET (and HEAD) of the path.
 * Other methods never get here: nng answers them 405 itself. */
static void admin_handle(nng_aio *aio)
{
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	admin_route *r = nng_http_handler_get_data(h);
	const char *ctype = "text/plain; charset=utf-8";
	nng_http_res *res = NULL;
	char *body = NULL;
	size_t len = 0;
	int status, rv;

	status = r->fn(r->arg, &body, &len, &ctype);
	if (status < 100 || status > 599)
		status = 500;
	if ((rv = nng_http_res_alloc(&res)) != 0)
		goto out_body;
	if ((rv = nng_http_res_set_status(res, (uint16_t)status)) != 0 ||
	    (rv = nng_http_res_set_header(res, "Content-Type", ctype)) != 0 ||
	    (rv = nng_http_res_set_header(res, "Cache-Control", "no-store")) != 0 ||
	    (body != NULL && (rv = nng_http_res_copy_data(res, body, len)) != 0))
		goto out_res;
	free(body);
	nng_aio_set_output(aio, 0, res); /* the server owns res now */
	nng_aio_finish(aio, 0);
	return;

out_res:
	nng_http_res_free(res);
out_body:
	free(body);
	SHOP_LOG(ERROR, "admin http: building a response: %s", nng_strerror(rv));
	nng_aio_finish(aio, rv); /* nng answers 500 or drops the connection */
}

int shop_admin_create(shop_admin **out, const char *host, uint16_t port)
{
	char addr[128];
	shop_admin *a;
	int n, rv;

	/* An IPv6 literal needs brackets in a URL. */
	n = snprintf(addr, sizeof(addr),
		     strchr(host, ':') != NULL ? "http://[%s]:%u" : "http://%s:%u", host,
		     (unsigned)port);
	if (n < 0 || (size_t)n >= sizeof(addr))
		return NNG_EINVAL;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return NNG_ENOMEM;
	if ((rv = nng_url_parse(&a->url, addr)) != 0)
		goto out_free;
	if ((rv = nng_http_server_hold(&a->srv, a->url)) != 0)
		goto out_url;
	*out = a;
	return 0;

out_url:
	nng_url_free(a->url);
out_free:
	free(a);
	return rv;
}

int shop_admin_add(shop_admin *a, const char *path, shop_admin_fn fn, void *arg)
{
	nng_http_handler *h;
	admin_route *r;
	int rv;

	if ((r = malloc(sizeof(*r))) == NULL)
		return NNG_ENOMEM;
	r->fn = fn;
	r->arg = arg;
	if ((rv = nng_http_handler_alloc(&h, path, admin_handle)) != 0) {
		free(r);
		return rv;
	}
	if ((rv = nng_http_handler_set_data(h, r, free)) != 0) {
		free(r);
		goto out_handler;
	}
	/* From here the handler owns r. A GET carries no body: refuse one. */
	if ((rv = nng_http_handler_set_method(h, "GET")) != 0 ||
	    (rv = nng_http_handler_collect_body(h, true, 0)) != 0 ||
	    (rv = nng_http_server_add_handler(a->srv, h)) != 0)
		goto out_handler;
	return 0; /* the server owns h */

out_handler:
	nng_http_handler_free(h);
	return rv;
}

int shop_admin_start(shop_admin *a)
{
	int rv;

	if ((rv = nng_http_server_start(a->srv)) != 0)
		SHOP_LOG(ERROR, "admin http: listen on %s:%s: %s", a->url->u_hostname,
			 a->url->u_port, nng_strerror(rv));
	return rv;
}

void shop_admin_destroy(shop_admin *a)
{
	if (a == NULL)
		return;
	/* Stop first, so that a later hold on the same address makes a new
	 * server instead of finding this one; release frees the handlers. */
	nng_http_server_stop(a->srv);
	nng_http_server_release(a->srv);
	nng_url_free(a->url);
	free(a);
}

int shop_admin_healthz(void *arg, char **body, size_t *len, const char **content_type)
{
	static const char up[] = "{\"status\":\"up\"}";

	(void)arg;
	if ((*body = malloc(sizeof(up))) == NULL)
		return 500;
	memcpy(*body, up, sizeof(up));
	*len = sizeof(up) - 1;
	*content_type = "application/json";
	return 200;
}
