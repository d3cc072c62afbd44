/* advert_check.c -- the safe form of an advert's fields (advert_check.h). */
#include "advert_check.h"

#include <arpa/inet.h>
#include <string.h>

static const char *const fault_names[SHOP_ADVERT_N_FAULTS] = {
    [SHOP_ADVERT_OK] = "ok",
    [SHOP_ADVERT_UNPARSABLE] = "unparsable",
    [SHOP_ADVERT_TOO_LONG] = "too_long",
    [SHOP_ADVERT_SERVICE] = "service",
    [SHOP_ADVERT_INSTANCE] = "instance",
    [SHOP_ADVERT_RPC_URL] = "rpc_url",
    [SHOP_ADVERT_ADMIN_URL] = "admin_url",
    [SHOP_ADVERT_VERSION] = "version",
    [SHOP_ADVERT_WEIGHT] = "weight",
    [SHOP_ADVERT_STARTED] = "started_unix_ms",
};

const char *shop_advert_fault_name(shop_advert_fault f)
{
	return (unsigned)f < SHOP_ADVERT_N_FAULTS ? fault_names[f] : "?";
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(char c, bool upper)
{
	return (c >= 'a' && c <= 'z') || is_digit(c) || (upper && c >= 'A' && c <= 'Z');
}

/* One RFC 1123 label of s[0..len): 1-63 letters, digits and hyphens, first
 * and last not a hyphen. */
static bool label_ok(const char *s, size_t len, bool upper)
{
	if (len == 0 || len > 63 || !is_alnum(s[0], upper) || !is_alnum(s[len - 1], upper))
		return false;
	for (size_t i = 1; i + 1 < len; i++)
		if (!is_alnum(s[i], upper) && s[i] != '-')
			return false;
	return true;
}

bool shop_advert_name_ok(const char *s, size_t max_len)
{
	size_t len = strnlen(s, 64);

	return len <= max_len && label_ok(s, len, false);
}

/* Dotted IPv4, four decimal parts of 0-255 without leading zeros. */
static bool ipv4_ok(const char *s, size_t len)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		size_t start = i;
		unsigned v = 0;

		if (part > 0) {
			if (i >= len || s[i] != '.')
				return false;
			start = ++i;
		}
		while (i < len && is_digit(s[i]) && i - start < 3)
			v = v * 10 + (unsigned)(s[i++] - '0');
		if (i == start || v > 255 || (s[start] == '0' && i - start > 1))
			return false;
	}
	return i == len;
}

static bool dns_host_ok(const char *s, size_t len)
{
	size_t start = 0;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.')
			continue;
		if (!label_ok(s + start, i - start, true))
			return false;
		start = i + 1;
	}
	/* All digits and dots would read as an (odd) IPv4 address. */
	return strspn(s, "0123456789.") < len;
}

/* "[v6]": inet_pton decides what is an IPv6 address; no zone (%eth0). */
static bool ipv6_ok(const char *s, size_t len)
{
	char buf[INET6_ADDRSTRLEN];
	unsigned char addr[16];

	if (len < 4 || s[0] != '[' || s[len - 1] != ']' || len - 2 >= sizeof(buf))
		return false;
	memcpy(buf, s + 1, len - 2);
	buf[len - 2] = '\0';
	if (strspn(buf, "0123456789abcdefABCDEF:.") != len - 2)
		return false;
	return inet_pton(AF_INET6, buf, addr) == 1;
}

static bool host_ok(const char *s, size_t len)
{
	return ipv4_ok(s, len) || dns_host_ok(s, len) || ipv6_ok(s, len);
}

/* 1-65535, decimal, no leading zero. */
static bool port_ok(const char *s, size_t len)
{
	unsigned long v = 0;

	if (len == 0 || len > 5 || s[0] == '0')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!is_digit(s[i]))
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	return v <= 65535;
}

bool shop_advert_hostport_ok(const char *s, size_t len)
{
	const char *colon = NULL;

	/* The last colon: an IPv6 host holds colons of its own. */
	for (size_t i = 0; i < len; i++)
		if (s[i] == ':')
			colon = s + i;
	if (colon == NULL)
		return false;
	return host_ok(s, (size_t)(colon - s)) && port_ok(colon + 1, len - (size_t)(colon - s) - 1);
}

/* s starts with one of schemes followed by "://"; returns what follows,
 * or NULL. */
static const char *after_scheme(const char *s, const char *const *schemes)
{
	for (; *schemes != NULL; schemes++) {
		size_t n = strlen(*schemes);

		if (strncmp(s, *schemes, n) == 0 && strncmp(s + n, "://", 3) == 0)
			return s + n + 3;
	}
	return NULL;
}

bool shop_advert_rpc_url_ok(const char *s)
{
	static const char *const schemes[] = {"tcp", "tls+tcp", NULL};
	const char *rest = after_scheme(s, schemes);

	return rest != NULL && shop_advert_hostport_ok(rest, strlen(rest));
}

bool shop_advert_admin_url_ok(const char *s)
{
	static const char *const schemes[] = {"http", "https", NULL};
	const char *rest = after_scheme(s, schemes);
	size_t hp;

	if (rest == NULL)
		return false;
	hp = strcspn(rest, "/");
	if (!shop_advert_hostport_ok(rest, hp))
		return false;
	return strspn(rest + hp, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
				 "._~-/") == strlen(rest + hp);
}

static bool version_ok(const char *s)
{
	size_t len = strlen(s);

	return len <= 31 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-") ==
		   len;
}

shop_advert_fault shop_advert_check(const shop_instance *in)
{
	/* Every string NUL-terminated inside its array first: the checks
	 * below read them as strings. */
	if (strnlen(in->service, sizeof(in->service)) == sizeof(in->service) ||
	    strnlen(in->instance, sizeof(in->instance)) == sizeof(in->instance) ||
	    strnlen(in->rpc_url, sizeof(in->rpc_url)) == sizeof(in->rpc_url) ||
	    strnlen(in->admin_url, sizeof(in->admin_url)) == sizeof(in->admin_url) ||
	    strnlen(in->version, sizeof(in->version)) == sizeof(in->version))
		return SHOP_ADVERT_TOO_LONG;
	if (!shop_advert_name_ok(in->service, sizeof(in->service) - 1))
		return SHOP_ADVERT_SERVICE;
	if (!shop_advert_name_ok(in->instance, sizeof(in->instance) - 1))
		return SHOP_ADVERT_INSTANCE;
	if (!shop_advert_rpc_url_ok(in->rpc_url))
		return SHOP_ADVERT_RPC_URL;
	if (!shop_advert_admin_url_ok(in->admin_url))
		return SHOP_ADVERT_ADMIN_URL;
	if (!version_ok(in->version))
		return SHOP_ADVERT_VERSION;
	if (in->weight > SHOP_ADVERT_MAX_WEIGHT)
		return SHOP_ADVERT_WEIGHT;
	if (in->started_unix_ms < 0)
		return SHOP_ADVERT_STARTED;
	return SHOP_ADVERT_OK;
}

const char *shop_advert_field(const shop_instance *in, shop_advert_fault f)
{
	switch (f) {
	case SHOP_ADVERT_SERVICE:
		return in->service;
	case SHOP_ADVERT_INSTANCE:
		return in->instance;
	case SHOP_ADVERT_RPC_URL:
		return in->rpc_url;
	case SHOP_ADVERT_ADMIN_URL:
		return in->admin_url;
	case SHOP_ADVERT_VERSION:
		return in->version;
	default:
		return NULL;
	}
}
