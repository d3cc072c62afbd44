/* router.h -- the gateway's route table and request-line checks: path
 * normalisation, method + path matching, path ids, query and media types.
 * Pure code (no lws, no nng), so that the unit tests can drive it. */
#ifndef GW_ROUTER_H
#define GW_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* What answers a route: an upstream service, or the gateway itself. */
enum gw_route_kind {
	GW_ROUTE_PROXY,
	GW_ROUTE_HEALTHZ,
	GW_ROUTE_READYZ,
	GW_ROUTE_METRICS,
};

typedef struct gw_route {
	const char *method;  /* "GET", "POST", "PUT" */
	const char *pattern; /* "/orders/{id}"; also the metrics route label */
	enum gw_route_kind kind;
	/* GW_ROUTE_PROXY only: */
	const char *service;    /* registry service name, e.g. "order" */
	const char *rpc_method; /* "/shop.v1.OrderService/GetOrder" */
	const ProtobufCMessageDescriptor *req_desc;
	const ProtobufCMessageDescriptor *resp_desc;
	int success_status;   /* 200 or 201 */
	bool has_body;        /* JSON request body (POST/PUT) */
	bool needs_token;     /* checked by the JWT filter (jwt_filter.h) */
	const char *id_field; /* request field receiving the path {id}, or NULL */
	const char *location; /* "/products/": Location = this + response id */
	bool list_query;      /* page_size / page_token from the query string */
	bool client_address;  /* request field client_address = peer address */
	bool cache_header;    /* X-Cache from RpcResponse metadata "cache" */
	/* request field idempotency_key = the Idempotency-Key header ("" when
	 * absent; a body field of that name is ignored) */
	bool idempotency_key;
} gw_route;

/* The static route table; *n receives its length. */
const gw_route *gw_routes(size_t *n);

/* Normalises a request path (no query part) into out: percent-decodes,
 * collapses "//", resolves "." and ".." (never above the root) and keeps a
 * trailing slash. Returns 0, or -1 when the path must be answered 400: it
 * does not start with '/', an escape is invalid, or decodes to '/', '\\'
 * or NUL, or out is too small. The JWT filter routes on the result. */
int gw_path_normalize(const char *raw, char *out, size_t cap);

enum gw_match {
	GW_MATCH_OK,
	GW_MATCH_NOT_FOUND,  /* 404 */
	GW_MATCH_BAD_METHOD, /* 405; allow holds e.g. "GET, PUT" */
	GW_MATCH_BAD_ID,     /* 400: {id} is not a positive 63-bit integer */
};

/* Matches a normalised path. Routes are case-sensitive. On GW_MATCH_OK,
 * *route is the route (static) and *id the path {id} (0 when none). allow
 * (may be NULL) receives the methods of the path for GW_MATCH_BAD_METHOD. */
enum gw_match gw_route_match(const char *method, const char *path, const gw_route **route,
			     int64_t *id, char *allow, size_t allow_cap);

/* A positive 63-bit decimal integer, digits only (no sign, no spaces, no
 * leading '+'). Returns 0 and sets *out, else -1. */
int gw_parse_id(const char *s, size_t len, int64_t *out);

/* page_size: digits only, 1..1000. Returns 0 and sets *out, else -1. */
int gw_parse_page_size(const char *s, int32_t *out);

/* True for "application/json", any case, with optional parameters
 * ("; charset=utf-8") and surrounding whitespace. NULL is false. */
bool gw_content_type_is_json(const char *ct);

#endif
