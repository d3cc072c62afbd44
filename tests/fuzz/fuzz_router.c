/* fuzz_router.c -- libFuzzer target: the gateway's request-line checks
 * (edge-gateway/router.c): path normalisation, route matching, path ids,
 * page sizes and media types.
 *
 * Input: byte 0 picks the method, byte 1 the size of the output buffers
 * (small ones test the bounds), the rest is the raw path (a C string: it
 * ends at the first NUL, as it does in the gateway). Properties checked: a
 * normalised path starts with '/', fits its buffer and holds no empty, "."
 * or ".." segment (the JWT filter routes on it: "/auth/../orders" must be
 * seen as "/orders"); a match is consistent with the route table. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "get", ""};

static void check_normalised(const char *out, size_t cap)
{
	size_t n = strlen(out);

	if (n >= cap || out[0] != '/')
		abort();
	for (const char *p = out; (p = strchr(p, '/')) != NULL; p++) {
		const char *seg = p + 1;
		size_t len = strcspn(seg, "/");

		/* An empty segment only as the trailing slash ("/a/"). */
		if (len == 0 && seg[0] == '/')
			abort();
		if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
			abort();
	}
}

static void check_match(const char *method, const char *path, size_t allow_cap)
{
	const gw_route *r = (const gw_route *)1;
	int64_t id = -1;
	char *allow = malloc(allow_cap > 0 ? allow_cap : 1);
	enum gw_match m;

	if (allow == NULL)
		return;
	m = gw_route_match(method, path, &r, &id, allow_cap > 0 ? allow : NULL, allow_cap);
	switch (m) {
	case GW_MATCH_OK:
		if (r == NULL || strcmp(r->method, method) != 0 ||
		    (strstr(r->pattern, "{id}") != NULL ? id <= 0 : id != 0))
			abort();
		break;
	case GW_MATCH_BAD_METHOD:
		/* Allow lists the path's methods, never the one asked. */
		if (allow_cap > 0 && (memchr(allow, '\0', allow_cap) == NULL))
			abort();
		/* fall through */
	case GW_MATCH_NOT_FOUND:
	case GW_MATCH_BAD_ID:
		if (r != NULL || id != 0)
			abort();
		break;
	default:
		abort();
	}
	free(allow);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *method;
	char *raw, *out;
	size_t cap;
	int64_t id;
	int32_t page;

	if (size < 2)
		return 0;
	method = methods[data[0] % (sizeof(methods) / sizeof(methods[0]))];
	cap = data[1] == 0 ? 4096 : data[1];
	if ((raw = malloc(size - 1)) == NULL)
		return 0;
	memcpy(raw, data + 2, size - 2);
	raw[size - 2] = '\0';
	if ((out = malloc(cap)) == NULL) {
		free(raw);
		return 0;
	}
	if (gw_path_normalize(raw, out, cap) == 0) {
		check_normalised(out, cap);
		check_match(method, out, data[0] >> 3);
	}
	/* Not normalised: the matcher must still cope with whatever it gets. */
	check_match(method, raw, 64);
	if (gw_parse_id(raw, strlen(raw), &id) == 0 && id <= 0)
		abort();
	if (gw_parse_page_size(raw, &page) == 0 && (page < 1 || page > 1000))
		abort();
	(void)gw_content_type_is_json(raw);
	free(out);
	free(raw);
	return 0;
}
