/* jwt_filter.c -- verifying bearer tokens (HS256 JWTs from svc-auth) at the
 * gateway: our own checks around libjwt 1.10's HMAC. */
#include "jwt_filter.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <jwt.h>
#include <sodium.h>

/* HMAC-SHA256: 32 bytes, 43 base64url characters without padding. */
#define SIG_B64_LEN 43
/* Largest NumericDate taken: 2^53 - 1, where a double still holds every
 * integer (year 285,000,000: far beyond any real exp). */
#define MAX_NUMERIC_DATE 9007199254740991.0

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* RFC 9110 §5.6.2 tchar: what an auth-scheme is made of. */
static bool is_tchar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Decodes one segment that holds only base64url characters and whose
 * length is not 1 modulo 4. *out is malloc'd (caller frees) and has a NUL
 * after its *out_len bytes. Returns 0, GW_JWT_MALFORMED when the unused
 * low bits of the last character are not zero (a non-canonical encoding:
 * two texts for one value), or GW_JWT_INTERNAL. */
static gw_jwt_result b64url_decode(const char *s, size_t n, unsigned char **out, size_t *out_len)
{
	unsigned char *buf = malloc(n / 4 * 3 + 3);
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;

	*out = NULL;
	if (buf == NULL)
		return GW_JWT_INTERNAL;
	for (size_t i = 0; i < n; i++) {
		acc = (acc << 6) | (uint32_t)b64url_value((unsigned char)s[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0) {
		free(buf);
		return GW_JWT_MALFORMED;
	}
	buf[o] = '\0';
	*out = buf;
	*out_len = o;
	return GW_JWT_OK;
}

/* Parses decoded bytes as one JSON object whose member names are all
 * distinct (RFC 7515 §5.2 allows refusing repeats; refusing them means
 * libjwt's parser and this one cannot read different values). NULL when not
 * so; the caller frees with cJSON_Delete. */
static cJSON *parse_object(const unsigned char *buf, size_t len)
{
	const char *end = NULL;
	cJSON *j;

	if (memchr(buf, '\0', len) != NULL)
		return NULL; /* cJSON would stop at it and ignore the rest */
	j = cJSON_ParseWithOpts((const char *)buf, &end, 1);
	if (!cJSON_IsObject(j))
		goto fail;
	for (const cJSON *a = j->child; a != NULL; a = a->next)
		for (const cJSON *b = a->next; b != NULL; b = b->next)
			if (strcmp(a->string, b->string) == 0)
				goto fail;
	return j;
fail:
	cJSON_Delete(j);
	return NULL;
}

/* Decodes and parses one segment into a JSON object. */
static gw_jwt_result segment_object(const char *s, size_t n, cJSON **out)
{
	unsigned char *buf;
	size_t len;
	gw_jwt_result rv = b64url_decode(s, n, &buf, &len);

	*out = NULL;
	if (rv != GW_JWT_OK)
		return rv;
	*out = parse_object(buf, len);
	free(buf);
	return *out != NULL ? GW_JWT_OK : GW_JWT_BAD_JSON;
}

/* The JOSE header: alg exactly "HS256" (not "hs256", not "none" in any
 * case), typ absent or "JWT", and no crit (RFC 7515 §4.1.11: extensions we
 * do not know must make the token invalid). */
static gw_jwt_result check_header(const cJSON *h)
{
	const cJSON *alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
	const cJSON *typ = cJSON_GetObjectItemCaseSensitive(h, "typ");

	if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "HS256") != 0)
		return GW_JWT_BAD_HEADER;
	if (typ != NULL && (!cJSON_IsString(typ) || strcasecmp(typ->valuestring, "JWT") != 0))
		return GW_JWT_BAD_HEADER;
	if (cJSON_GetObjectItemCaseSensitive(h, "crit") != NULL)
		return GW_JWT_BAD_HEADER;
	return GW_JWT_OK;
}

/* A NumericDate claim: absent (*present = false), or an integer JSON
 * number in [0, 2^53). A string, a fraction or anything else is -1. */
static int numeric_date(const cJSON *claims, const char *name, bool *present, int64_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, name);
	double d;

	*present = v != NULL;
	if (v == NULL)
		return 0;
	if (!cJSON_IsNumber(v))
		return -1;
	d = v->valuedouble;
	if (!isfinite(d) || d < 0 || d > MAX_NUMERIC_DATE || d != floor(d))
		return -1;
	*out = (int64_t)d;
	return 0;
}

/* sub: a string of 1..19 digits without a leading zero, 1..INT64_MAX. */
static int parse_subject(const cJSON *claims, int64_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, "sub");
	const char *s;
	size_t n;
	uint64_t x = 0;

	if (!cJSON_IsString(v))
		return -1;
	s = v->valuestring;
	n = strlen(s);
	if (n == 0 || n > 19 || s[0] == '0')
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	if (x > (uint64_t)INT64_MAX)
		return -1;
	*out = (int64_t)x;
	return 0;
}

/* The registered claims, on the payload libjwt has just verified. */
static gw_jwt_result check_claims(const cJSON *c, int64_t now, int64_t *user_id, int64_t *exp_out,
				  int64_t *not_before_out)
{
	const cJSON *iss = cJSON_GetObjectItemCaseSensitive(c, "iss");
	bool has_exp, has_nbf, has_iat;
	int64_t exp = 0, nbf = 0, iat = 0;

	if (numeric_date(c, "exp", &has_exp, &exp) != 0 || !has_exp ||
	    numeric_date(c, "nbf", &has_nbf, &nbf) != 0 ||
	    numeric_date(c, "iat", &has_iat, &iat) != 0 || !has_iat)
		return GW_JWT_BAD_TIME;
	/* RFC 7519 §4.1.4: now must be before exp; the leeway absorbs the
	 * skew between svc-auth's clock and ours. */
	if (now >= exp + GW_JWT_LEEWAY_S)
		return GW_JWT_EXPIRED;
	if ((has_nbf && nbf > now + GW_JWT_LEEWAY_S) || iat > now + GW_JWT_LEEWAY_S)
		return GW_JWT_NOT_YET_VALID;
	/* Both are at most 2^53 - 1 (numeric_date): no overflow. */
	if (exp < iat || exp - iat > GW_JWT_MAX_LIFETIME_S)
		return GW_JWT_TOO_LONG_LIVED;
	if (!cJSON_IsString(iss) || strcmp(iss->valuestring, GW_JWT_ISSUER) != 0)
		return GW_JWT_BAD_ISSUER;
	if (parse_subject(c, user_id) != 0)
		return GW_JWT_BAD_SUBJECT;
	*exp_out = exp;
	/* The latest of nbf and iat: a check made with a clock set back
	 * later must refuse what this one would. */
	*not_before_out = INT64_MIN;
	if (has_nbf)
		*not_before_out = nbf;
	if (iat > *not_before_out)
		*not_before_out = iat;
	return GW_JWT_OK;
}

/* Finds the token in an Authorization value (*tok, *len), or the refusal. */
static gw_jwt_result bearer_token(const char *value, const char **tok, size_t *len)
{
	const char *v = value, *end, *s;

	if (value == NULL)
		return GW_JWT_MISSING;
	end = v + strlen(v);
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	for (s = v; s < end && is_tchar((unsigned char)*s); s++)
		;
	/* Another scheme, or none at all: the client did not try Bearer. */
	if (s - v != 6 || strncasecmp(v, "Bearer", 6) != 0)
		return GW_JWT_MISSING;
	/* RFC 6750 §2.1: "Bearer" 1*SP b64token. */
	if (s == end || *s != ' ')
		return GW_JWT_MALFORMED;
	while (*s == ' ')
		s++; /* stops before end: end[-1] is not a space */
	*tok = s;
	*len = (size_t)(end - s);
	return GW_JWT_OK;
}

/* Three non-empty segments of base64url characters, no padding, no length
 * that no encoding has; seg[] receives their starts and lengths. */
static gw_jwt_result split_token(const char *tok, size_t len, const char *seg[3], size_t seg_len[3])
{
	size_t k = 0;
	const char *start = tok;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && tok[i] != '.') {
			if (b64url_value((unsigned char)tok[i]) < 0)
				return GW_JWT_MALFORMED;
			continue;
		}
		if (k == 3)
			return GW_JWT_MALFORMED; /* a fourth segment */
		seg[k] = start;
		seg_len[k] = (size_t)(tok + i - start);
		if (seg_len[k] == 0 || seg_len[k] % 4 == 1)
			return GW_JWT_MALFORMED;
		k++;
		start = tok + i + 1;
	}
	return k == 3 ? GW_JWT_OK : GW_JWT_MALFORMED;
}

/* libjwt checks the HMAC over the first two segments with the key. It
 * needs a NUL-terminated copy of the token alone. */
static gw_jwt_result libjwt_verify(const gw_jwt_config *cfg, const char *tok, size_t len)
{
	char *copy = malloc(len + 1);
	jwt_t *jwt = NULL;
	gw_jwt_result rv = GW_JWT_BAD_SIGNATURE;

	if (copy == NULL)
		return GW_JWT_INTERNAL;
	memcpy(copy, tok, len);
	copy[len] = '\0';
	/* The key is ≥ 32 bytes here (checked by the caller): libjwt never
	 * sees an empty one, which would make it skip the signature. */
	if (jwt_decode(&jwt, copy, cfg->key, (int)cfg->key_len) == 0 && jwt != NULL &&
	    jwt_get_alg(jwt) == JWT_ALG_HS256)
		rv = GW_JWT_OK;
	jwt_free(jwt);
	free(copy);
	return rv;
}

/* The whole check of a token already cut out of its header value; on
 * GW_JWT_OK, *user_id and *exp are the token's sub and exp, *not_before
 * the latest of its nbf and iat (INT64_MIN without either). */
static gw_jwt_result verify_token(const gw_jwt_config *cfg, const char *tok, size_t len,
				  int64_t now_unix, int64_t *user_id, int64_t *exp,
				  int64_t *not_before)
{
	const char *seg[3];
	size_t seg_len[3];
	cJSON *header = NULL, *claims = NULL;
	int64_t id = 0;
	gw_jwt_result rv;

	/* libjwt 1.10 copies the token onto the stack: bound it first. */
	if (len > GW_JWT_MAX_TOKEN)
		return GW_JWT_TOO_LONG;
	if ((rv = split_token(tok, len, seg, seg_len)) != GW_JWT_OK)
		return rv;
	if ((rv = segment_object(seg[0], seg_len[0], &header)) != GW_JWT_OK)
		return rv;
	if ((rv = check_header(header)) != GW_JWT_OK)
		goto out_header;
	if ((rv = segment_object(seg[1], seg_len[1], &claims)) != GW_JWT_OK)
		goto out_header;
	if (seg_len[2] != SIG_B64_LEN) {
		rv = GW_JWT_BAD_SIGNATURE;
		goto out_claims;
	}
	if (cfg == NULL || cfg->key == NULL || cfg->key_len < GW_JWT_MIN_KEY ||
	    cfg->key_len > INT_MAX) {
		rv = GW_JWT_NO_KEY;
		goto out_claims;
	}
	if ((rv = libjwt_verify(cfg, tok, len)) != GW_JWT_OK)
		goto out_claims;
	if ((rv = check_claims(claims, now_unix, &id, exp, not_before)) == GW_JWT_OK)
		*user_id = id;
out_claims:
	cJSON_Delete(claims);
out_header:
	cJSON_Delete(header);
	return rv;
}

gw_jwt_result gw_jwt_verify(const gw_jwt_config *cfg, const char *authorization, int64_t now_unix,
			    int64_t *user_id)
{
	const char *tok = NULL;
	size_t len = 0;
	int64_t exp, not_before;
	gw_jwt_result rv;

	*user_id = 0;
	if ((rv = bearer_token(authorization, &tok, &len)) != GW_JWT_OK)
		return rv;
	return verify_token(cfg, tok, len, now_unix, user_id, &exp, &not_before);
}

/* ------------------------------------------------------------ the cache */

/* One token that passed every check, with what the checks found. Only the
 * time claims can turn it bad later: exp as time passes, nbf and iat if the
 * clock is set back; a hit checks both. */
struct cache_entry {
	size_t len;
	int64_t exp;
	int64_t not_before; /* max(nbf, iat); INT64_MIN without either */
	int64_t user_id;
	char tok[]; /* len bytes, no terminator */
};

struct gw_jwt_cache {
	unsigned char hash_key[crypto_shorthash_KEYBYTES];
	unsigned mask;
	struct cache_entry **slots;
};

gw_jwt_cache *gw_jwt_cache_new(unsigned slots)
{
	gw_jwt_cache *c;
	unsigned n = 1;

	if (slots == 0 || slots > (1u << 20) || sodium_init() < 0)
		return NULL;
	while (n < slots)
		n <<= 1;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((c->slots = calloc(n, sizeof(*c->slots))) == NULL) {
		free(c);
		return NULL;
	}
	c->mask = n - 1;
	/* A secret hash key: nobody can aim tokens at one slot to evict
	 * another user's entry on purpose. */
	randombytes_buf(c->hash_key, sizeof(c->hash_key));
	return c;
}

void gw_jwt_cache_free(gw_jwt_cache *c)
{
	if (c == NULL)
		return;
	for (unsigned i = 0; i <= c->mask; i++)
		free(c->slots[i]);
	free(c->slots);
	free(c);
}

static struct cache_entry **cache_slot(gw_jwt_cache *c, const char *tok, size_t len)
{
	unsigned char h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, (const unsigned char *)tok, len, c->hash_key);
	memcpy(&v, h, sizeof(v));
	return &c->slots[v & c->mask];
}

gw_jwt_result gw_jwt_verify_cached(gw_jwt_cache *c, const gw_jwt_config *cfg,
				   const char *authorization, int64_t now_unix, int64_t *user_id)
{
	struct cache_entry **slot, *e;
	const char *tok = NULL;
	size_t len = 0;
	int64_t exp = 0, not_before = INT64_MIN;
	gw_jwt_result rv;

	if (c == NULL)
		return gw_jwt_verify(cfg, authorization, now_unix, user_id);
	*user_id = 0;
	if ((rv = bearer_token(authorization, &tok, &len)) != GW_JWT_OK)
		return rv;
	if (len > GW_JWT_CACHE_MAX_TOKEN)
		return verify_token(cfg, tok, len, now_unix, user_id, &exp, &not_before);
	slot = cache_slot(c, tok, len);
	e = *slot;
	/* Compared in constant time: the timing of a miss tells nothing about
	 * how much of a cached token a guess got right. */
	if (e != NULL && e->len == len && sodium_memcmp(e->tok, tok, len) == 0) {
		if (now_unix >= e->exp + GW_JWT_LEEWAY_S) {
			free(e);
			*slot = NULL;
			return GW_JWT_EXPIRED;
		}
		if (e->not_before != INT64_MIN && e->not_before > now_unix + GW_JWT_LEEWAY_S)
			return GW_JWT_NOT_YET_VALID;
		*user_id = e->user_id;
		return GW_JWT_OK;
	}
	if ((rv = verify_token(cfg, tok, len, now_unix, user_id, &exp, &not_before)) != GW_JWT_OK)
		return rv; /* refusals are not kept: each one is checked afresh */
	if ((e = malloc(sizeof(*e) + len)) == NULL)
		return GW_JWT_OK; /* verified; only not remembered */
	e->len = len;
	e->exp = exp;
	e->not_before = not_before;
	e->user_id = *user_id;
	memcpy(e->tok, tok, len);
	free(*slot);
	*slot = e;
	return GW_JWT_OK;
}

const char *gw_jwt_result_str(gw_jwt_result r)
{
	switch (r) {
	case GW_JWT_OK:
		return "ok";
	case GW_JWT_MISSING:
		return "no bearer credentials";
	case GW_JWT_MALFORMED:
		return "malformed";
	case GW_JWT_TOO_LONG:
		return "too long";
	case GW_JWT_BAD_JSON:
		return "header or payload not a JSON object";
	case GW_JWT_BAD_HEADER:
		return "header not alg HS256";
	case GW_JWT_BAD_SIGNATURE:
		return "bad signature, or libjwt refused it";
	case GW_JWT_BAD_TIME:
		return "exp or iat missing, or a time claim not an integer";
	case GW_JWT_EXPIRED:
		return "expired";
	case GW_JWT_NOT_YET_VALID:
		return "not yet valid";
	case GW_JWT_TOO_LONG_LIVED:
		return "lifetime (exp - iat) over one hour";
	case GW_JWT_BAD_ISSUER:
		return "wrong issuer";
	case GW_JWT_BAD_SUBJECT:
		return "bad subject";
	case GW_JWT_NO_KEY:
		return "no key configured";
	case GW_JWT_INTERNAL:
		return "out of memory";
	}
	return "unknown";
}
