/* config.c -- typed, validated reads of SHOP_* environment variables; the
 * only place in shop that calls getenv(). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

void shop_env_init(shop_env *e, const char *prog)
{
	memset(e, 0, sizeof(*e));
	e->prog = prog;
}

void shop_env_fail(shop_env *e, const char *name, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (e->failed)
		return; /* the first error is the one worth reading */
	e->failed = true;
	n = snprintf(e->err, sizeof(e->err), "%s: ", name);
	if (n < 0 || (size_t)n >= sizeof(e->err))
		return;
	va_start(ap, fmt);
	vsnprintf(e->err + n, sizeof(e->err) - (size_t)n, fmt, ap);
	va_end(ap);
}

const char *shop_env_str(shop_env *e, const char *name, const char *def, bool required)
{
	const char *v = getenv(name);

	if (v == NULL || v[0] == '\0') {
		if (required && (def == NULL || def[0] == '\0')) {
			shop_env_fail(e, name, "must be set");
			return def;
		}
		return def;
	}
	return v;
}

int shop_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return -1;
	/* strtoll accepts leading blanks and a '+'; a config value should not. */
	if (!(*s == '-' || (*s >= '0' && *s <= '9')))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int64_t shop_env_int(shop_env *e, const char *name, int64_t def, int64_t min, int64_t max)
{
	const char *v = getenv(name);
	int64_t out;

	if (v == NULL || v[0] == '\0')
		return def;
	if (shop_parse_int(v, min, max, &out) != 0) {
		shop_env_fail(e, name, "\"%.64s\" is not an integer in [%lld, %lld]", v,
			      (long long)min, (long long)max);
		return def;
	}
	return out;
}

shop_log_level shop_env_log_level(shop_env *e)
{
	const char *v = shop_env_str(e, "SHOP_LOG_LEVEL", "info", false);
	int l = shop_log_level_parse(v);

	if (l < 0) {
		shop_env_fail(e, "SHOP_LOG_LEVEL", "\"%.32s\" is not debug, info, warn or error",
			      v);
		return SHOP_LOG_INFO;
	}
	return (shop_log_level)l;
}

const char *shop_env_nng_url(shop_env *e, const char *name, const char *def)
{
	const char *v = shop_env_str(e, name, def, true);
	char host[256];
	uint16_t port;

	if (v == NULL)
		return v;
	if (strncmp(v, "tcp://", 6) == 0) {
		if (shop_parse_hostport(v + 6, host, sizeof(host), &port) != 0 || port == 0)
			shop_env_fail(e, name, "\"%.128s\" is not tcp://HOST:PORT", v);
	} else if (strncmp(v, "ipc://", 6) != 0 && strncmp(v, "inproc://", 9) != 0) {
		shop_env_fail(e, name, "\"%.128s\" is not an nng URL (tcp://, ipc:// or inproc://)",
			      v);
	}
	return v;
}

int shop_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon;
	size_t hl;
	int64_t p;
	unsigned char addr[16];
	char tmp[256];

	if (s == NULL)
		return -1;
	if (s[0] == '[') { /* [v6]:port */
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return -1;
		hl = (size_t)(close - s - 1);
		if (hl == 0 || hl >= sizeof(tmp) || hl >= hostlen)
			return -1;
		memcpy(tmp, s + 1, hl);
		tmp[hl] = '\0';
		if (inet_pton(AF_INET6, tmp, addr) != 1)
			return -1;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -1;
		hl = (size_t)(colon - s);
		if (hl == 0 || hl >= sizeof(tmp) || hl >= hostlen)
			return -1;
		memcpy(tmp, s, hl);
		tmp[hl] = '\0';
		if (strcmp(tmp, "localhost") != 0 && inet_pton(AF_INET, tmp, addr) != 1)
			return -1;
	}
	if (shop_parse_int(colon + 1, 0, 65535, &p) != 0)
		return -1;
	memcpy(host, tmp, hl + 1);
	*port = (uint16_t)p;
	return 0;
}

const char *shop_env_hostport(shop_env *e, const char *name, const char *def, char *host,
			      size_t hostlen, uint16_t *port)
{
	const char *v = shop_env_str(e, name, def, true);

	if (v != NULL && shop_parse_hostport(v, host, hostlen, port) != 0) {
		shop_env_fail(e, name, "\"%.128s\" is not HOST:PORT with a numeric IP host", v);
		host[0] = '\0';
		*port = 0;
	}
	return v;
}

const char *shop_env_secret(shop_env *e, const char *name, size_t min_len)
{
	const char *v = getenv(name);

	if (v == NULL || strlen(v) < min_len) {
		/* Never echo the value: it is a secret, even when too short. */
		shop_env_fail(e, name, "must be set to at least %zu bytes", min_len);
		return NULL;
	}
	return v;
}

int shop_env_check(const shop_env *e)
{
	if (!e->failed)
		return 0;
	fprintf(stderr, "%s: configuration error: %s\n", e->prog != NULL ? e->prog : "shop",
		e->err);
	return -1;
}
