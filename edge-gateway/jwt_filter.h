/* jwt_filter.h -- the gateway's bearer-token check: the Authorization
 * header of a request to a route with needs_token, verified as an HS256 JWT
 * that svc-auth signed (CONTRACT §2 Tokens). Pure code (libjwt and cJSON,
 * no lws), so that the unit tests can drive it with crafted tokens.
 *
 * libjwt 1.10 is trusted with one thing only, the HMAC: it takes `alg` from
 * the token (HS384, HS512, RS256..ES512 and, case-insensitively, none), checks no
 * time, and copies the token to a stack buffer sized by its length. So the
 * token is checked here first (size, shape, base64url, JSON objects, alg
 * exactly "HS256", signature length), libjwt verifies the signature with the
 * key, the algorithm it used is checked again, and then the claims are
 * checked here against this file's own parse of the signed payload. */
#ifndef GW_JWT_FILTER_H
#define GW_JWT_FILTER_H

#include <stddef.h>
#include <stdint.h>

#define GW_JWT_MAX_TOKEN 8192        /* bytes of the token itself (§2: over 8 KiB is refused) */
#define GW_JWT_MIN_KEY   32          /* bytes of SHOP_JWT_SECRET */
#define GW_JWT_ISSUER    "shop-auth" /* the only accepted iss */
#define GW_JWT_LEEWAY_S  60          /* clock skew allowed on exp, nbf and iat */
/* The longest lifetime (exp - iat) taken: svc-auth issues one-hour tokens
 * (exp = iat + 3600); the leeway covers a signer whose clock ticked between
 * the two readings. A longer-lived token is forged or from a misconfigured
 * signer; either way it would outlive every revocation window. */
#define GW_JWT_MAX_LIFETIME_S (3600 + GW_JWT_LEEWAY_S)

typedef struct gw_jwt_config {
	const unsigned char *key; /* borrowed: SHOP_JWT_SECRET's bytes */
	size_t key_len;           /* ≥ GW_JWT_MIN_KEY, else every token is refused */
} gw_jwt_config;

/* The outcome. Every value but GW_JWT_OK is a refusal; the caller answers
 * GW_JWT_MISSING with 401 missing_token and `WWW-Authenticate: Bearer`,
 * every other refusal with the one and same 401 invalid_token and
 * `WWW-Authenticate: Bearer error="invalid_token"`. The finer values exist
 * for the log and the tests, never for the client. */
typedef enum gw_jwt_result {
	GW_JWT_OK,
	/* No Bearer credentials (RFC 6750 §3.1: no error code): no
	 * Authorization header, an empty one, or another scheme ("Basic …"),
	 * i.e. the client did not attempt Bearer authentication. */
	GW_JWT_MISSING,
	GW_JWT_MALFORMED,      /* "Bearer" without a token, stray characters, not three
				  non-empty base64url segments, padding */
	GW_JWT_TOO_LONG,       /* token over GW_JWT_MAX_TOKEN bytes */
	GW_JWT_BAD_JSON,       /* header or payload not a JSON object, or a member repeated */
	GW_JWT_BAD_HEADER,     /* alg not exactly "HS256", typ not "JWT", crit present */
	GW_JWT_BAD_SIGNATURE,  /* not 32 bytes, or libjwt refused the token (the HMAC,
				  or its own JSON parse, e.g. of 1e400) */
	GW_JWT_BAD_TIME,       /* exp or iat missing, or exp, nbf or iat not an integer
				  NumericDate */
	GW_JWT_EXPIRED,        /* exp + leeway ≤ now */
	GW_JWT_NOT_YET_VALID,  /* nbf or iat later than now + leeway */
	GW_JWT_TOO_LONG_LIVED, /* exp - iat over GW_JWT_MAX_LIFETIME_S, or exp before iat */
	GW_JWT_BAD_ISSUER,     /* iss not the string GW_JWT_ISSUER */
	GW_JWT_BAD_SUBJECT,    /* sub not a string holding a positive 63-bit integer */
	GW_JWT_NO_KEY,         /* the configuration holds no usable key (fails closed) */
	GW_JWT_INTERNAL,       /* out of memory */
} gw_jwt_result;

/* Verifies an Authorization header value (NULL when the header is absent)
 * at now_unix (seconds). The scheme is matched case-insensitively (RFC 9110
 * §11.1: "bearer" is "Bearer"); one or more spaces separate it from the
 * token, and spaces or tabs around the whole value are ignored; anything
 * else around or inside the token makes it malformed. On GW_JWT_OK,
 * *user_id is the token's sub; otherwise *user_id is 0. Never logs; never
 * keeps a pointer to authorization. */
gw_jwt_result gw_jwt_verify(const gw_jwt_config *cfg, const char *authorization, int64_t now_unix,
			    int64_t *user_id);

/* A cache of verified tokens, so that a client sending the same token on
 * every request pays for its HMAC and JSON parses once: gw_jwt_verify_cached
 * answers exactly what gw_jwt_verify answers at the same time (a cached
 * token is still refused once exp + leeway has passed), and keeps only
 * tokens that passed. Direct-mapped on a keyed SipHash of the token, the
 * token compared whole in constant time; tokens over
 * GW_JWT_CACHE_MAX_TOKEN bytes are verified every time. Not thread-safe:
 * one cache per thread (the gateway has one, on its lws thread). The
 * configuration must not change while a cache is in use. */
#define GW_JWT_CACHE_MAX_TOKEN 2048
typedef struct gw_jwt_cache gw_jwt_cache;

/* slots is rounded up to a power of two; NULL on failure. */
gw_jwt_cache *gw_jwt_cache_new(unsigned slots);
void gw_jwt_cache_free(gw_jwt_cache *c);
/* As gw_jwt_verify; c == NULL verifies without a cache. */
gw_jwt_result gw_jwt_verify_cached(gw_jwt_cache *c, const gw_jwt_config *cfg,
				   const char *authorization, int64_t now_unix, int64_t *user_id);

/* A short static name of a result for the log ("expired"); never NULL. */
const char *gw_jwt_result_str(gw_jwt_result r);

#endif
