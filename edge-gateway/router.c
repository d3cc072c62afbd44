/* router.c -- the gateway's route table, path normalisation and matching. */
#include "router.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth.pb-c.h"
#include "order.pb-c.h"
#include "product.pb-c.h"

/* Order matters only for the Allow header, which lists methods in table order. */
static const gw_route routes[] = {
    {.method = "POST",
     .pattern = "/auth/sign-up",
     .service = "auth",
     .rpc_method = "/shop.v1.AuthService/SignUp",
     .req_desc = &shop__v1__sign_up_request__descriptor,
     .resp_desc = &shop__v1__sign_up_response__descriptor,
     .success_status = 201,
     .has_body = true,
     .client_address = true},
    {.method = "POST",
     .pattern = "/auth/sign-in",
     .service = "auth",
     .rpc_method = "/shop.v1.AuthService/SignIn",
     .req_desc = &shop__v1__sign_in_request__descriptor,
     .resp_desc = &shop__v1__sign_in_response__descriptor,
     .success_status = 200,
     .has_body = true,
     .client_address = true},
    {.method = "GET",
     .pattern = "/products",
     .service = "product",
     .rpc_method = "/shop.v1.ProductService/ListProducts",
     .req_desc = &shop__v1__list_products_request__descriptor,
     .resp_desc = &shop__v1__list_products_response__descriptor,
     .success_status = 200,
     .needs_token = true,
     .list_query = true},
    {.method = "POST",
     .pattern = "/products",
     .service = "product",
     .rpc_method = "/shop.v1.ProductService/CreateProduct",
     .req_desc = &shop__v1__create_product_request__descriptor,
     .resp_desc = &shop__v1__product__descriptor,
     .success_status = 201,
     .has_body = true,
     .needs_token = true,
     .location = "/products/"},
    {.method = "POST",
     .pattern = "/orders",
     .service = "order",
     .rpc_method = "/shop.v1.OrderService/CreateOrder",
     .req_desc = &shop__v1__create_order_request__descriptor,
     .resp_desc = &shop__v1__order__descriptor,
     .success_status = 201,
     .has_body = true,
     .needs_token = true,
     .location = "/orders/",
     .idempotency_key = true},
    {.method = "GET",
     .pattern = "/orders/{id}",
     .service = "order",
     .rpc_method = "/shop.v1.OrderService/GetOrder",
     .req_desc = &shop__v1__get_order_request__descriptor,
     .resp_desc = &shop__v1__order__descriptor,
     .success_status = 200,
     .needs_token = true,
     .id_field = "order_id",
     .cache_header = true},
    {.method = "PUT",
     .pattern = "/orders/{id}",
     .service = "order",
     .rpc_method = "/shop.v1.OrderService/AddOrderItem",
     .req_desc = &shop__v1__add_order_item_request__descriptor,
     .resp_desc = &shop__v1__order__descriptor,
     .success_status = 200,
     .has_body = true,
     .needs_token = true,
     .id_field = "order_id"},
    {.method = "GET", .pattern = "/healthz", .kind = GW_ROUTE_HEALTHZ},
    {.method = "GET", .pattern = "/readyz", .kind = GW_ROUTE_READYZ},
    {.method = "GET", .pattern = "/metrics", .kind = GW_ROUTE_METRICS},
};

const gw_route *gw_routes(size_t *n)
{
	*n = sizeof(routes) / sizeof(routes[0]);
	return routes;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int gw_path_normalize(const char *raw, char *out, size_t cap)
{
	size_t o = 0; /* out holds "/a/b" without a trailing slash; "" is the root */
	bool trailing = false;
	const char *p = raw;

	if (raw == NULL || raw[0] != '/' || cap < 2)
		return -1;
	/* Each loop reads one segment after a '/', decoding escapes into out
	 * after a provisional '/'; an escaped '/' is refused, so decoding can
	 * never split or join segments. */
	while (*p == '/') {
		size_t seg, len;

		p++;
		if (o + 1 >= cap)
			return -1;
		out[o++] = '/';
		seg = o;
		while (*p != '\0' && *p != '/') {
			int c = (unsigned char)*p;

			if (c == '%') {
				int hi = hexval((unsigned char)p[1]);
				int lo = hi < 0 ? -1 : hexval((unsigned char)p[2]);

				if (hi < 0 || lo < 0)
					return -1;
				c = hi * 16 + lo;
				if (c == '/' || c == '\\' || c == 0)
					return -1;
				p += 3;
			} else {
				p++;
			}
			if (o + 1 >= cap)
				return -1;
			out[o++] = (char)c;
		}
		len = o - seg;
		trailing = false;
		if (len == 0 || (len == 1 && out[seg] == '.')) {
			o = seg - 1; /* "//" and "/./" vanish */
			trailing = true;
		} else if (len == 2 && out[seg] == '.' && out[seg + 1] == '.') {
			o = seg - 1;
			while (o > 0 && out[o - 1] != '/')
				o--; /* drop the previous segment... */
			if (o > 0)
				o--; /* ...and its '/'; never above the root */
			trailing = true;
		}
	}
	if (o == 0 || trailing) {
		if (o + 1 >= cap)
			return -1;
		out[o++] = '/';
	}
	out[o] = '\0';
	return 0;
}

int gw_parse_id(const char *s, size_t len, int64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 19)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v == 0 || v > (uint64_t)INT64_MAX)
		return -1;
	*out = (int64_t)v;
	return 0;
}

int gw_parse_page_size(const char *s, int32_t *out)
{
	int64_t v;

	if (s == NULL || gw_parse_id(s, strlen(s), &v) != 0 || v > 1000)
		return -1;
	*out = (int32_t)v;
	return 0;
}

bool gw_content_type_is_json(const char *ct)
{
	static const char json[] = "application/json";
	const char *p = ct;

	if (ct == NULL)
		return false;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncasecmp(p, json, sizeof(json) - 1) != 0)
		return false;
	p += sizeof(json) - 1;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0')
		return true;
	if (*p != ';')
		return false;
	/* Parameters: only a charset of utf-8 is meaningful; any other charset
	 * is not what the API speaks. */
	while (*p == ';') {
		const char *name, *val;
		size_t nlen, vlen;

		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		name = p;
		while (*p != '\0' && *p != '=' && *p != ';')
			p++;
		nlen = (size_t)(p - name);
		while (nlen > 0 && (name[nlen - 1] == ' ' || name[nlen - 1] == '\t'))
			nlen--;
		if (*p != '=') {
			if (nlen != 0)
				return false;
			continue;
		}
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		val = p;
		while (*p != '\0' && *p != ';')
			p++;
		vlen = (size_t)(p - val);
		while (vlen > 0 && (val[vlen - 1] == ' ' || val[vlen - 1] == '\t'))
			vlen--;
		if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
			val++;
			vlen -= 2;
		}
		if (nlen == 7 && strncasecmp(name, "charset", 7) == 0 &&
		    !((vlen == 5 && strncasecmp(val, "utf-8", 5) == 0) ||
		      (vlen == 4 && strncasecmp(val, "utf8", 4) == 0)))
			return false;
	}
	return *p == '\0';
}

/* Matches one pattern against a path; 1 = match, 0 = no, -1 = shape
 * matches but {id} is not a valid id. */
static int match_pattern(const char *pattern, const char *path, int64_t *id)
{
	const char *pp = pattern, *sp = path;

	while (*pp != '\0') {
		if (strncmp(pp, "{id}", 4) == 0) {
			const char *end = strchr(sp, '/');
			size_t len = end != NULL ? (size_t)(end - sp) : strlen(sp);
			int bad;

			if (len == 0)
				return 0;
			bad = gw_parse_id(sp, len, id) != 0;
			pp += 4;
			sp += len;
			if (*pp != *sp)
				return 0;
			if (*pp == '\0')
				return bad ? -1 : 1;
			continue;
		}
		if (*pp != *sp)
			return 0;
		pp++;
		sp++;
	}
	return *sp == '\0' ? 1 : 0;
}

enum gw_match gw_route_match(const char *method, const char *path, const gw_route **route,
			     int64_t *id, char *allow, size_t allow_cap)
{
	size_t n, used = 0;
	bool path_known = false, bad_id = false;

	gw_routes(&n);
	*route = NULL;
	*id = 0;
	if (allow != NULL && allow_cap > 0)
		allow[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		int64_t v = 0;
		int m = match_pattern(routes[i].pattern, path, &v);

		if (m == 0)
			continue;
		path_known = true;
		if (strcmp(routes[i].method, method) == 0) {
			if (m < 0) {
				bad_id = true;
				continue;
			}
			*route = &routes[i];
			*id = v;
			return GW_MATCH_OK;
		}
		if (allow != NULL && used < allow_cap) {
			int w = snprintf(allow + used, allow_cap - used, "%s%s", used ? ", " : "",
					 routes[i].method);
			if (w > 0)
				used += (size_t)w;
		}
	}
	if (bad_id)
		return GW_MATCH_BAD_ID;
	return path_known ? GW_MATCH_BAD_METHOD : GW_MATCH_NOT_FOUND;
}
