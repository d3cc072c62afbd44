/* token.h -- the access tokens svc-auth issues: JWT, HS256, one hour. */
#ifndef AUTH_TOKEN_H
#define AUTH_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_TOKEN_ISSUER "shop-auth"
#define AUTH_TOKEN_TTL    3600 /* seconds */

/* Signs a token for user id/name issued at iat (Unix seconds) with key
 * (≥ 32 bytes). Claims: iss, sub (id as a string), name, iat, exp = iat +
 * 3600, jti (128 random bits, hex). Returns a malloc'd string the caller
 * frees with free(), or NULL when out of memory. */
char *auth_token_issue(const unsigned char *key, size_t key_len, int64_t id, const char *name,
		       int64_t iat);

#endif
