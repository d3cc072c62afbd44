/* token.c -- signing JWT access tokens with libjwt 1.10. */
#include "token.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>
#include <sodium.h>

char *auth_token_issue(const unsigned char *key, size_t key_len, int64_t id, const char *name,
		       int64_t iat)
{
	unsigned char jti_raw[16];
	char sub[24], jti[33], *out = NULL;
	jwt_t *jwt = NULL;

	snprintf(sub, sizeof(sub), "%" PRId64, id);
	randombytes_buf(jti_raw, sizeof(jti_raw));
	sodium_bin2hex(jti, sizeof(jti), jti_raw, sizeof(jti_raw));
	if (jwt_new(&jwt) != 0)
		goto out;
	if (jwt_add_grant(jwt, "iss", AUTH_TOKEN_ISSUER) != 0 ||
	    jwt_add_grant(jwt, "sub", sub) != 0 || jwt_add_grant(jwt, "name", name) != 0 ||
	    jwt_add_grant_int(jwt, "iat", (long)iat) != 0 ||
	    jwt_add_grant_int(jwt, "exp", (long)(iat + AUTH_TOKEN_TTL)) != 0 ||
	    jwt_add_grant(jwt, "jti", jti) != 0 ||
	    jwt_set_alg(jwt, JWT_ALG_HS256, key, (int)key_len) != 0)
		goto out_jwt;
	/* libjwt 1.10 allocates the string with malloc: callers free() it. */
	out = jwt_encode_str(jwt);
out_jwt:
	jwt_free(jwt);
out:
	return out;
}
