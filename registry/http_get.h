/* http_get.h -- a minimal HTTP/1.0 GET of many URLs at once, with one
 * deadline for all: how the registry reads its instances' /metrics for the
 * dashboard. Plain http:// only, no redirects, no keep-alive. */
#ifndef SHOP_REGISTRY_HTTP_GET_H
#define SHOP_REGISTRY_HTTP_GET_H

#include <stddef.h>

typedef struct reg_http_get {
	const char *url; /* in, borrowed: "http://host[:port][/path]" */
	int status;      /* out: the HTTP status, 0 when no response came */
	char error[96];  /* out: why there is no body ("" when there is one) */
	char *body;      /* out: the body, NUL-terminated; caller frees; NULL on error */
	size_t len;      /* out: body length */
} reg_http_get;

/* GETs every g[i].url concurrently and waits for all, at most timeout_ms
 * in all; a body longer than max_body is an error. Every answer with a
 * status is given its body, whatever the status. Blocks the calling thread
 * (host names are resolved with getaddrinfo, before the deadline starts):
 * call it from a thread of its own. */
void reg_http_get_all(reg_http_get *g, size_t n, int timeout_ms, size_t max_body);

/* Splits "http://host[:port][/path]" into host (brackets of an IPv6
 * literal removed), port (default "80") and path (default "/"). Returns 0,
 * or -1 when it does not parse or a part does not fit. Exposed for tests. */
int reg_http_url_split(const char *url, char *host, size_t host_cap, char *port, size_t port_cap,
		       char *path, size_t path_cap);

/* Parses a whole HTTP/1.x response (buf, len: everything read until the
 * server closed) in place: status, then the body honouring Content-Length
 * (more bytes are ignored, fewer are an error) and a chunked
 * Transfer-Encoding (decoded in place). On 0, *body points into buf.
 * Returns 0 or -1. Exposed for tests. */
int reg_http_response_parse(char *buf, size_t len, int *status, char **body, size_t *body_len);

#endif
