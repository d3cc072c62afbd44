/* config.h -- typed, validated reads of SHOP_* environment variables.
 *
 * Configuration is read once, in main. Each reader takes a shop_env that
 * remembers the first bad value; main calls shop_env_check() after reading
 * everything, which prints "<prog>: <VAR>: <why>" to stderr and returns -1
 * so that main can exit(2). This file is the only caller of getenv(). */
#ifndef SHOP_CONFIG_H
#define SHOP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

typedef struct shop_env {
	const char *prog; /* borrowed; used in the message */
	bool failed;
	char err[512];
} shop_env;

void shop_env_init(shop_env *e, const char *prog);

/* A string; def when unset. When required and unset or empty, records an
 * error. Returns a borrowed pointer (environment or def), never NULL unless
 * def is NULL and the variable is unset. */
const char *shop_env_str(shop_env *e, const char *name, const char *def, bool required);

/* A decimal integer in [min, max]; def when unset. Junk, overflow or out of
 * range records an error naming the variable and returns def. */
int64_t shop_env_int(shop_env *e, const char *name, int64_t def, int64_t min, int64_t max);

/* SHOP_LOG_LEVEL: debug, info (the default), warn or error. */
shop_log_level shop_env_log_level(shop_env *e);

/* An nng URL "tcp://host:port" (or ipc://, inproc://). */
const char *shop_env_nng_url(shop_env *e, const char *name, const char *def);

/* A "host:port" listen address; host must be an IPv4/IPv6 literal or
 * "localhost". On success writes host (NUL-terminated) and port. */
const char *shop_env_hostport(shop_env *e, const char *name, const char *def, char *host,
			      size_t hostlen, uint16_t *port);

/* A secret of at least min_len bytes (SHOP_JWT_SECRET). The value is never
 * printed in the error message. */
const char *shop_env_secret(shop_env *e, const char *name, size_t min_len);

/* Records an error for name (a check main makes beyond the readers'). Only
 * the first error is kept. */
void shop_env_fail(shop_env *e, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 0 when every read succeeded; otherwise prints the first error to stderr
 * and returns -1. */
int shop_env_check(const shop_env *e);

/* Pure parsing helpers, exposed for tests. Return 0 on success. */
int shop_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);
int shop_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

#endif
