/* test_jwt_filter.c -- tests of edge-gateway/jwt_filter.c with tokens
 * crafted here (HMAC-SHA256 from libsodium, base64url by libsodium): every
 * forged or broken token is refused for the reason it is broken, the good
 * one gives its user id; plus the routes the filter guards and its 401
 * problem texts. */
#include "../cunit_main.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "jwt_filter.h"
#include "problem.h"
#include "router.h"

#define NOW         1700000000LL
#define GOOD_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static const char KEY[] = "unit-test-secret-0123456789abcdefghijkl";
static const gw_jwt_config CFG = {(const unsigned char *)KEY, sizeof(KEY) - 1};

/* ---- a tiny arena: every string a test builds, freed by drop_all ---- */

static char *kept[256];
static size_t n_kept;

static char *keep(char *p)
{
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_FATAL(n_kept < sizeof(kept) / sizeof(kept[0]));
	kept[n_kept++] = p;
	return p;
}

static void drop_all(void)
{
	while (n_kept > 0)
		free(kept[--n_kept]);
}

static const char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

static const char *fmt(const char *f, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, f);
	if (vasprintf(&s, f, ap) < 0)
		s = NULL;
	va_end(ap);
	return keep(s);
}

/* ---- building tokens ---- */

static const char *b64url(const void *in, size_t n)
{
	size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *out = keep(malloc(cap));

	sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return out;
}

/* "b64(header).b64(payload)": what the signature covers. */
static const char *signing_input(const char *header, const char *payload)
{
	return fmt("%s.%s", b64url(header, strlen(header)), b64url(payload, strlen(payload)));
}

static const char *hs256(const char *input, const char *key)
{
	crypto_auth_hmacsha256_state st;
	unsigned char mac[crypto_auth_hmacsha256_BYTES];

	crypto_auth_hmacsha256_init(&st, (const unsigned char *)key, strlen(key));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)input, strlen(input));
	crypto_auth_hmacsha256_final(&st, mac);
	return b64url(mac, sizeof(mac));
}

/* A token signed with HMAC-SHA256 under key, whatever header says. */
static const char *signed_with(const char *header, const char *payload, const char *key)
{
	const char *in = signing_input(header, payload);

	return fmt("%s.%s", in, hs256(in, key));
}

static const char *token(const char *header, const char *payload)
{
	return signed_with(header, payload, KEY);
}

/* The claims svc-auth writes, with sub and the times given. */
static const char *claims(const char *sub, long long iat, long long exp)
{
	return fmt("{\"iss\":\"shop-auth\",\"sub\":\"%s\",\"name\":\"kim\",\"iat\":%lld,"
		   "\"exp\":%lld,\"jti\":\"0123456789abcdef\"}",
		   sub, iat, exp);
}

static const char *good_token(void)
{
	return token(GOOD_HEADER, claims("42", NOW, NOW + 3600));
}

/* ---- checking ---- */

static int64_t last_id;

/* Every check goes through gw_jwt_verify and twice through one cache that
 * lives for the whole suite (a miss, then a hit when it passed): the three
 * must agree, so each case below also proves that the cache answers what
 * the full check answers. */
static gw_jwt_cache *cache;

static gw_jwt_result verify_header(const char *authorization)
{
	gw_jwt_result plain, miss, hit;
	int64_t id_plain = 99, id_miss = 99;

	last_id = 99; /* must be overwritten: 0 on refusal */
	plain = gw_jwt_verify(&CFG, authorization, NOW, &id_plain);
	miss = gw_jwt_verify_cached(cache, &CFG, authorization, NOW, &id_miss);
	hit = gw_jwt_verify_cached(cache, &CFG, authorization, NOW, &last_id);
	CU_ASSERT_EQUAL(plain, miss);
	CU_ASSERT_EQUAL(plain, hit);
	CU_ASSERT_EQUAL(id_plain, id_miss);
	CU_ASSERT_EQUAL(id_plain, last_id);
	return hit;
}

static gw_jwt_result verify(const char *tok)
{
	return verify_header(fmt("Bearer %s", tok));
}

/* A refusal for the expected reason, and no user id. */
#define ASSERT_REFUSED(res, want)                                                                  \
	do {                                                                                       \
		gw_jwt_result got_ = (res);                                                        \
		CU_ASSERT_EQUAL(got_, want);                                                       \
		if (got_ != (want))                                                                \
			fprintf(stderr, "\n  %s:%d: got \"%s\", want \"%s\"\n", __FILE__,          \
				__LINE__, gw_jwt_result_str(got_), gw_jwt_result_str(want));       \
		CU_ASSERT_EQUAL(last_id, 0);                                                       \
	} while (0)

/* ---- the good token ---- */

static void test_jwt_accepts_a_good_token_with_its_user_id(void)
{
	CU_ASSERT_EQUAL(verify(good_token()), GW_JWT_OK);
	CU_ASSERT_EQUAL(last_id, 42);
	CU_ASSERT_EQUAL(verify(token(GOOD_HEADER, claims("9223372036854775807", NOW, NOW + 1))),
			GW_JWT_OK);
	CU_ASSERT_EQUAL(last_id, INT64_MAX);
	/* Without typ or nbf; with an nbf in the past. */
	CU_ASSERT_EQUAL(verify(token("{\"alg\":\"HS256\"}",
				     fmt("{\"iss\":\"shop-auth\",\"sub\":\"7\",\"iat\":%lld,"
					 "\"exp\":%lld}",
					 NOW, NOW + 10))),
			GW_JWT_OK);
	CU_ASSERT_EQUAL(last_id, 7);
	CU_ASSERT_EQUAL(
	    verify(token(GOOD_HEADER, fmt("{\"iss\":\"shop-auth\",\"sub\":\"7\",\"iat\":%lld,"
					  "\"exp\":%lld,\"nbf\":%lld}",
					  NOW, NOW + 10, NOW - 10))),
	    GW_JWT_OK);
	drop_all();
}

/* RFC 9110 §11.1: the auth-scheme is case-insensitive; RFC 6750 §2.1:
 * 1*SP between it and the token; the field's own whitespace is not part
 * of the value. */
static void test_jwt_scheme_is_case_insensitive_and_spaces_are_tolerated(void)
{
	const char *t = good_token();

	CU_ASSERT_EQUAL(verify_header(fmt("bearer %s", t)), GW_JWT_OK);
	CU_ASSERT_EQUAL(last_id, 42);
	CU_ASSERT_EQUAL(verify_header(fmt("BEARER %s", t)), GW_JWT_OK);
	CU_ASSERT_EQUAL(verify_header(fmt("Bearer    %s", t)), GW_JWT_OK);
	CU_ASSERT_EQUAL(verify_header(fmt("  Bearer %s \t", t)), GW_JWT_OK);
	CU_ASSERT_EQUAL(last_id, 42);
	drop_all();
}

/* ---- no credentials: missing_token ---- */

static void test_jwt_no_bearer_credentials_is_missing(void)
{
	ASSERT_REFUSED(verify_header(NULL), GW_JWT_MISSING);
	ASSERT_REFUSED(verify_header(""), GW_JWT_MISSING);
	ASSERT_REFUSED(verify_header("   "), GW_JWT_MISSING);
	ASSERT_REFUSED(verify_header("Basic xyz"), GW_JWT_MISSING);
	ASSERT_REFUSED(verify_header("Basic dXNlcjpwYXNz"), GW_JWT_MISSING);
	ASSERT_REFUSED(verify_header(fmt("Token %s", good_token())), GW_JWT_MISSING);
	ASSERT_REFUSED(verify_header(fmt("Bearerx %s", good_token())), GW_JWT_MISSING);
	ASSERT_REFUSED(verify_header(good_token()), GW_JWT_MISSING); /* no scheme */
	drop_all();
}

/* ---- malformed credentials ---- */

static void test_jwt_bearer_without_a_token_is_malformed(void)
{
	ASSERT_REFUSED(verify_header("Bearer"), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify_header("Bearer "), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify_header("Bearer     "), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify(""), GW_JWT_MALFORMED);
}

static void test_jwt_stray_spaces_and_separators_are_malformed(void)
{
	const char *t = good_token();
	size_t n = strlen(t);

	ASSERT_REFUSED(verify_header(fmt("Bearer\t%s", t)), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify_header(fmt("Bearer,%s", t)), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify_header(fmt("Bearer %s extra", t)), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify_header(fmt("Bearer %s %s", t, t)), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify_header(fmt("Bearer %s,Bearer %s", t, t)), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify_header(fmt("Bearer %.10s %s", t, t + 10)), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify_header(fmt("Bearer %.*s\t%s", (int)(n - 5), t, t + n - 5)),
		       GW_JWT_MALFORMED);
	drop_all();
}

static void test_jwt_needs_exactly_three_segments(void)
{
	const char *in = signing_input(GOOD_HEADER, claims("42", NOW, NOW + 3600));
	const char *sig = hs256(in, KEY);

	ASSERT_REFUSED(verify(in), GW_JWT_MALFORMED);             /* two */
	ASSERT_REFUSED(verify(fmt("%s.", in)), GW_JWT_MALFORMED); /* stripped signature */
	ASSERT_REFUSED(verify(fmt("%s.%s.%s", in, sig, sig)), GW_JWT_MALFORMED); /* four */
	ASSERT_REFUSED(verify(fmt("%s.%s.", in, sig)), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify(fmt(".%s", in)), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify(fmt("%s..%s", b64url(GOOD_HEADER, strlen(GOOD_HEADER)), sig)),
		       GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify(".."), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify("abc"), GW_JWT_MALFORMED);
	drop_all();
}

static void test_jwt_refuses_bad_base64url(void)
{
	const char *t = good_token();
	const char *bad[] = {"+", "/", "!", "~", "%", "\"", "\x80"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* In the header, the payload and the signature. */
		ASSERT_REFUSED(verify(fmt("%s%s", bad[i], t)), GW_JWT_MALFORMED);
		ASSERT_REFUSED(verify(fmt("%.40s%s%s", t, bad[i], t + 40)), GW_JWT_MALFORMED);
		ASSERT_REFUSED(verify(fmt("%s%s", t, bad[i])), GW_JWT_MALFORMED);
	}
	/* Padding, in any segment. */
	ASSERT_REFUSED(verify(fmt("%s=", t)), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify(fmt("%s==", t)), GW_JWT_MALFORMED);
	{
		const char *h = b64url(GOOD_HEADER, strlen(GOOD_HEADER));
		const char *rest = strchr(t, '.');

		ASSERT_REFUSED(verify(fmt("%s=%s", h, rest)), GW_JWT_MALFORMED);
	}
	drop_all();
}

static void test_jwt_refuses_impossible_or_non_canonical_base64url(void)
{
	/* "{}" is "e30"; "e31" has non-zero unused bits (the same bytes as
	 * "e30" to a lax decoder); a 5-character segment encodes nothing. */
	const char *p = b64url("{\"sub\":\"1\"}", 11);
	const char *sig = hs256("x", KEY);

	CU_ASSERT_STRING_EQUAL(b64url("{}", 2), "e30");
	ASSERT_REFUSED(verify(fmt("e31.%s.%s", p, sig)), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify(fmt("e30AB.%s.%s", p, sig)), GW_JWT_MALFORMED);
	ASSERT_REFUSED(verify(fmt("A.%s.%s", p, sig)), GW_JWT_MALFORMED);
	drop_all();
}

/* ---- size ---- */

/* A well-signed token whose payload carries n bytes of padding. */
static const char *padded_token(size_t n)
{
	char *pad = keep(malloc(n + 1));

	memset(pad, 'x', n);
	pad[n] = '\0';
	return token(GOOD_HEADER,
		     fmt("{\"iss\":\"shop-auth\",\"sub\":\"5\",\"iat\":%lld,\"exp\":%lld,"
			 "\"pad\":\"%s\"}",
			 NOW, NOW + 60, pad));
}

static void test_jwt_refuses_tokens_over_8_kib(void)
{
	size_t n = 0;
	const char *t;

	/* The largest padding that keeps the token within the bound (a
	 * padding byte adds 4/3 of a character). */
	while (strlen(padded_token(n + 64)) <= GW_JWT_MAX_TOKEN) {
		n += 64;
		drop_all();
	}
	while (strlen(padded_token(n + 1)) <= GW_JWT_MAX_TOKEN) {
		n++;
		drop_all();
	}
	t = padded_token(n);
	CU_ASSERT(strlen(t) <= GW_JWT_MAX_TOKEN && strlen(t) > GW_JWT_MAX_TOKEN - 3);
	CU_ASSERT_EQUAL(verify(t), GW_JWT_OK);
	CU_ASSERT_EQUAL(last_id, 5);
	t = padded_token(n + 1);
	CU_ASSERT(strlen(t) > GW_JWT_MAX_TOKEN);
	ASSERT_REFUSED(verify(t), GW_JWT_TOO_LONG);
	drop_all();
	{
		/* 9 KiB of anything: refused before any parsing. */
		char *big = keep(malloc(9 * 1024 + 1));

		memset(big, 'A', 9 * 1024);
		big[3000] = big[6000] = '.';
		big[9 * 1024] = '\0';
		ASSERT_REFUSED(verify(big), GW_JWT_TOO_LONG);
	}
	drop_all();
}

/* ---- JSON ---- */

static void test_jwt_refuses_segments_that_are_not_json_objects(void)
{
	const char *good_claims = claims("42", NOW, NOW + 3600);
	const char *not_objects[] = {"[]",
				     "5",
				     "\"HS256\"",
				     "null",
				     "true",
				     "not json",
				     "{",
				     "{\"alg\":\"HS256\"} x",
				     "{\"alg\":\"HS256\",}",
				     ""};

	for (size_t i = 0; i < sizeof(not_objects) / sizeof(not_objects[0]); i++) {
		if (not_objects[i][0] == '\0')
			continue; /* an empty segment is malformed, below */
		ASSERT_REFUSED(verify(token(not_objects[i], good_claims)), GW_JWT_BAD_JSON);
		ASSERT_REFUSED(verify(token(GOOD_HEADER, not_objects[i])), GW_JWT_BAD_JSON);
	}
	ASSERT_REFUSED(verify(token(GOOD_HEADER, "")), GW_JWT_MALFORMED);
	drop_all();
}

static void test_jwt_refuses_repeated_members_and_hidden_nul(void)
{
	const char *good_claims = claims("42", NOW, NOW + 3600);
	const char nul_payload[] = "{\"iss\":\"shop-auth\",\"sub\":\"1\",\"exp\":9999999999}\0x";
	const char *in;

	/* jansson (libjwt) and cJSON would disagree on which alg counts. */
	ASSERT_REFUSED(verify(token("{\"alg\":\"HS256\",\"alg\":\"none\"}", good_claims)),
		       GW_JWT_BAD_JSON);
	ASSERT_REFUSED(
	    verify(token(GOOD_HEADER, fmt("{\"iss\":\"shop-auth\",\"sub\":\"1\",\"sub\":\"2\","
					  "\"exp\":%lld}",
					  NOW + 60))),
	    GW_JWT_BAD_JSON);
	in = fmt("%s.%s", b64url(GOOD_HEADER, strlen(GOOD_HEADER)),
		 b64url(nul_payload, sizeof(nul_payload) - 1));
	ASSERT_REFUSED(verify(fmt("%s.%s", in, hs256(in, KEY))), GW_JWT_BAD_JSON);
	drop_all();
}

/* ---- the header ---- */

static void test_jwt_refuses_alg_none_in_any_case(void)
{
	const char *c = claims("42", NOW, NOW + 3600);
	const char *algs[] = {"none", "None", "NONE", "nOnE"};

	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		const char *h = fmt("{\"alg\":\"%s\",\"typ\":\"JWT\"}", algs[i]);

		/* The usual forgery: no signature at all... */
		ASSERT_REFUSED(verify(fmt("%s.", signing_input(h, c))), GW_JWT_MALFORMED);
		/* ...and one that carries a valid HMAC, so only alg is wrong. */
		ASSERT_REFUSED(verify(token(h, c)), GW_JWT_BAD_HEADER);
	}
	drop_all();
}

static void test_jwt_refuses_every_alg_but_hs256(void)
{
	const char *c = claims("42", NOW, NOW + 3600);
	unsigned char mac512[crypto_auth_hmacsha512_BYTES], rnd[256];
	const char *h384 = "{\"alg\":\"HS384\",\"typ\":\"JWT\"}";
	const char *h512 = "{\"alg\":\"HS512\",\"typ\":\"JWT\"}";
	const char *in;
	crypto_auth_hmacsha512_state st;
	const char *others[] = {"hs256", "HS256 ", " HS256", "HS2560", "HS25",
				"",      "RS256",  "ES256",  "PS256",  "EdDSA"};

	/* HS384: libsodium has no HMAC-SHA384; 48 random bytes stand in. */
	randombytes_buf(rnd, 48);
	in = signing_input(h384, c);
	ASSERT_REFUSED(verify(fmt("%s.%s", in, b64url(rnd, 48))), GW_JWT_BAD_HEADER);
	ASSERT_REFUSED(verify(token(h384, c)), GW_JWT_BAD_HEADER);
	/* HS512, properly signed with the right key. */
	in = signing_input(h512, c);
	crypto_auth_hmacsha512_init(&st, (const unsigned char *)KEY, strlen(KEY));
	crypto_auth_hmacsha512_update(&st, (const unsigned char *)in, strlen(in));
	crypto_auth_hmacsha512_final(&st, mac512);
	ASSERT_REFUSED(verify(fmt("%s.%s", in, b64url(mac512, sizeof(mac512)))), GW_JWT_BAD_HEADER);
	/* RS256 with an RSA-2048-sized signature. */
	randombytes_buf(rnd, sizeof(rnd));
	in = signing_input("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", c);
	ASSERT_REFUSED(verify(fmt("%s.%s", in, b64url(rnd, sizeof(rnd)))), GW_JWT_BAD_HEADER);
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		ASSERT_REFUSED(verify(token(fmt("{\"alg\":\"%s\"}", others[i]), c)),
			       GW_JWT_BAD_HEADER);
	/* No alg, or one that is not a string. */
	ASSERT_REFUSED(verify(token("{\"typ\":\"JWT\"}", c)), GW_JWT_BAD_HEADER);
	ASSERT_REFUSED(verify(token("{\"alg\":null}", c)), GW_JWT_BAD_HEADER);
	ASSERT_REFUSED(verify(token("{\"alg\":[\"HS256\"]}", c)), GW_JWT_BAD_HEADER);
	ASSERT_REFUSED(verify(token("{\"ALG\":\"HS256\"}", c)), GW_JWT_BAD_HEADER);
	drop_all();
}

static void test_jwt_refuses_other_typ_and_crit(void)
{
	const char *c = claims("42", NOW, NOW + 3600);

	CU_ASSERT_EQUAL(verify(token("{\"alg\":\"HS256\",\"typ\":\"jwt\"}", c)), GW_JWT_OK);
	ASSERT_REFUSED(verify(token("{\"alg\":\"HS256\",\"typ\":\"JWS\"}", c)), GW_JWT_BAD_HEADER);
	ASSERT_REFUSED(verify(token("{\"alg\":\"HS256\",\"typ\":1}", c)), GW_JWT_BAD_HEADER);
	ASSERT_REFUSED(verify(token("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", c)),
		       GW_JWT_BAD_HEADER);
	drop_all();
}

/* ---- the signature ---- */

static void test_jwt_refuses_a_wrong_key(void)
{
	const char *c = claims("42", NOW, NOW + 3600);

	ASSERT_REFUSED(verify(signed_with(GOOD_HEADER, c, "another-secret-of-32-bytes-or-more!!")),
		       GW_JWT_BAD_SIGNATURE);
	/* A prefix of the right key. */
	ASSERT_REFUSED(verify(signed_with(GOOD_HEADER, c, fmt("%.32s", KEY))),
		       GW_JWT_BAD_SIGNATURE);
	drop_all();
}

static void test_jwt_refuses_a_changed_payload_or_signature(void)
{
	const char *c42 = claims("42", NOW, NOW + 3600);
	const char *c43 = claims("43", NOW, NOW + 3600);
	const char *sig42 = hs256(signing_input(GOOD_HEADER, c42), KEY);
	const char *t = good_token();
	char *flipped;
	char *dot;

	/* One byte of the payload changed (sub 42 → 43), signature kept. */
	ASSERT_REFUSED(verify(fmt("%s.%s", signing_input(GOOD_HEADER, c43), sig42)),
		       GW_JWT_BAD_SIGNATURE);
	/* One character of the signature changed. */
	flipped = keep(strdup(t));
	dot = strrchr(flipped, '.');
	dot[1] = dot[1] == 'A' ? 'B' : 'A';
	ASSERT_REFUSED(verify(flipped), GW_JWT_BAD_SIGNATURE);
	/* A signature of the wrong length: truncated, or extended. */
	ASSERT_REFUSED(verify(fmt("%.*s", (int)strlen(t) - 4, t)), GW_JWT_BAD_SIGNATURE);
	ASSERT_REFUSED(verify(fmt("%sAAAA", t)), GW_JWT_BAD_SIGNATURE);
	/* The signature of another token. */
	ASSERT_REFUSED(
	    verify(fmt("%s.%s", signing_input(GOOD_HEADER, c43),
		       hs256(signing_input(GOOD_HEADER, claims("42", NOW, NOW + 10)), KEY))),
	    GW_JWT_BAD_SIGNATURE);
	drop_all();
}

/* ---- the times ---- */

static void test_jwt_refuses_expired_tokens_beyond_the_leeway(void)
{
	ASSERT_REFUSED(verify(token(GOOD_HEADER, claims("42", NOW - 7200, NOW - 3600))),
		       GW_JWT_EXPIRED);
	ASSERT_REFUSED(verify(token(GOOD_HEADER, claims("42", NOW - 3661, NOW - 61))),
		       GW_JWT_EXPIRED);
	ASSERT_REFUSED(verify(token(GOOD_HEADER, claims("42", NOW - 3660, NOW - GW_JWT_LEEWAY_S))),
		       GW_JWT_EXPIRED);
	ASSERT_REFUSED(verify(token(GOOD_HEADER, claims("42", 0, 0))), GW_JWT_EXPIRED);
	/* Within the leeway: still good. */
	CU_ASSERT_EQUAL(verify(token(GOOD_HEADER, claims("42", NOW - 3659, NOW - 59))), GW_JWT_OK);
	drop_all();
}

static void test_jwt_exp_is_required_and_an_integer(void)
{
	const char *bad_exp[] = {"\"1700003600\"", "1700003600.5", "-1", "null",
				 "true",           "[1]",          "{}", "9007199254740993"};

	ASSERT_REFUSED(verify(token(GOOD_HEADER, "{\"iss\":\"shop-auth\",\"sub\":\"42\"}")),
		       GW_JWT_BAD_TIME);
	ASSERT_REFUSED(
	    verify(token(GOOD_HEADER,
			 fmt("{\"iss\":\"shop-auth\",\"sub\":\"42\",\"iat\":%lld}", NOW))),
	    GW_JWT_BAD_TIME);
	for (size_t i = 0; i < sizeof(bad_exp) / sizeof(bad_exp[0]); i++)
		ASSERT_REFUSED(verify(token(GOOD_HEADER,
					    fmt("{\"iss\":\"shop-auth\",\"sub\":\"42\",\"exp\":%s}",
						bad_exp[i]))),
			       GW_JWT_BAD_TIME);
	/* Out of a double's range: libjwt's parser (jansson) already refuses
	 * it; refused either way. */
	ASSERT_REFUSED(
	    verify(token(GOOD_HEADER, "{\"iss\":\"shop-auth\",\"sub\":\"42\",\"exp\":1e400}")),
	    GW_JWT_BAD_SIGNATURE);
	/* An integer written with an exponent is still an integer. */
	CU_ASSERT_EQUAL(
	    verify(token(GOOD_HEADER, "{\"iss\":\"shop-auth\",\"sub\":\"42\",\"iat\":1.7e9,"
				      "\"exp\":1.7000036e9}")),
	    GW_JWT_OK);
	drop_all();
}

/* svc-auth's tokens live one hour (exp = iat + 3600); a correctly signed
 * token that lives longer (exp = 1e10, year 2286), or whose exp is before
 * its iat, or that has no iat, is refused. */
static void test_jwt_lifetime_is_at_most_one_hour_plus_the_leeway(void)
{
	CU_ASSERT_EQUAL(verify(token(GOOD_HEADER, claims("42", NOW, NOW + 3600))), GW_JWT_OK);
	CU_ASSERT_EQUAL(verify(token(GOOD_HEADER, claims("42", NOW, NOW + GW_JWT_MAX_LIFETIME_S))),
			GW_JWT_OK);
	ASSERT_REFUSED(
	    verify(token(GOOD_HEADER, claims("42", NOW, NOW + GW_JWT_MAX_LIFETIME_S + 1))),
	    GW_JWT_TOO_LONG_LIVED);
	ASSERT_REFUSED(verify(token(GOOD_HEADER, claims("42", NOW, 10000000000LL))),
		       GW_JWT_TOO_LONG_LIVED);
	ASSERT_REFUSED(
	    verify(token(
		GOOD_HEADER,
		fmt("{\"iss\":\"shop-auth\",\"sub\":\"42\",\"iat\":%lld,\"exp\":1e10}", NOW))),
	    GW_JWT_TOO_LONG_LIVED);
	/* An old iat with a fresh exp is as long-lived. */
	ASSERT_REFUSED(verify(token(GOOD_HEADER, claims("42", NOW - 86400, NOW + 60))),
		       GW_JWT_TOO_LONG_LIVED);
	ASSERT_REFUSED(verify(token(GOOD_HEADER, claims("42", NOW + 30, NOW + 20))),
		       GW_JWT_TOO_LONG_LIVED);
	ASSERT_REFUSED(
	    verify(token(GOOD_HEADER,
			 fmt("{\"iss\":\"shop-auth\",\"sub\":\"42\",\"exp\":%lld}", NOW + 10))),
	    GW_JWT_BAD_TIME);
	drop_all();
}

static void test_jwt_refuses_nbf_and_iat_in_the_future(void)
{
	const char *f = "{\"iss\":\"shop-auth\",\"sub\":\"42\",\"iat\":%lld,\"exp\":%lld,"
			"\"nbf\":%lld}";

	ASSERT_REFUSED(verify(token(GOOD_HEADER, fmt(f, NOW, NOW + 3600, NOW + 61))),
		       GW_JWT_NOT_YET_VALID);
	ASSERT_REFUSED(verify(token(GOOD_HEADER, fmt(f, NOW, NOW + 3600, NOW + 3600))),
		       GW_JWT_NOT_YET_VALID);
	CU_ASSERT_EQUAL(verify(token(GOOD_HEADER, fmt(f, NOW, NOW + 3600, NOW + GW_JWT_LEEWAY_S))),
			GW_JWT_OK);
	ASSERT_REFUSED(verify(token(GOOD_HEADER, claims("42", NOW + 61, NOW + 3661))),
		       GW_JWT_NOT_YET_VALID);
	ASSERT_REFUSED(verify(token(GOOD_HEADER, claims("42", NOW + 86400, NOW + 90000))),
		       GW_JWT_NOT_YET_VALID);
	CU_ASSERT_EQUAL(verify(token(GOOD_HEADER, claims("42", NOW + 60, NOW + 3660))), GW_JWT_OK);
	/* Present but not an integer. */
	ASSERT_REFUSED(
	    verify(token(GOOD_HEADER, fmt("{\"iss\":\"shop-auth\",\"sub\":\"42\",\"iat\":%lld,"
					  "\"exp\":%lld,\"nbf\":\"%lld\"}",
					  NOW, NOW + 60, NOW))),
	    GW_JWT_BAD_TIME);
	ASSERT_REFUSED(
	    verify(token(GOOD_HEADER, fmt("{\"iss\":\"shop-auth\",\"sub\":\"42\",\"exp\":%lld,"
					  "\"iat\":\"now\"}",
					  NOW + 60))),
	    GW_JWT_BAD_TIME);
	drop_all();
}

/* ---- iss and sub ---- */

static void test_jwt_refuses_a_wrong_issuer(void)
{
	const char *iss[] = {"\"shop-auth2\"", "\"Shop-Auth\"",  "\"shop-auth \"", "\"\"", "1",
			     "null",           "[\"shop-auth\"]"};
	const char *f = "{\"iss\":%s,\"sub\":\"42\",\"iat\":%lld,\"exp\":%lld}";

	for (size_t i = 0; i < sizeof(iss) / sizeof(iss[0]); i++)
		ASSERT_REFUSED(verify(token(GOOD_HEADER, fmt(f, iss[i], NOW, NOW + 60))),
			       GW_JWT_BAD_ISSUER);
	ASSERT_REFUSED(verify(token(GOOD_HEADER, fmt("{\"sub\":\"42\",\"iat\":%lld,\"exp\":%lld}",
						     NOW, NOW + 60))),
		       GW_JWT_BAD_ISSUER);
	drop_all();
}

static void test_jwt_refuses_a_bad_subject(void)
{
	const char *sub[] = {"\"0\"",
			     "\"-5\"",
			     "\"abc\"",
			     "42",
			     "\"\"",
			     "\"007\"",
			     "\"4 2\"",
			     "\"42 \"",
			     "\"+42\"",
			     "\"9223372036854775808\"",
			     "\"18446744073709551617\"",
			     "null",
			     "\"1.0\""};
	const char *f = "{\"iss\":\"shop-auth\",\"sub\":%s,\"iat\":%lld,\"exp\":%lld}";

	for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++)
		ASSERT_REFUSED(verify(token(GOOD_HEADER, fmt(f, sub[i], NOW, NOW + 60))),
			       GW_JWT_BAD_SUBJECT);
	ASSERT_REFUSED(verify(token(GOOD_HEADER, fmt("{\"iss\":\"shop-auth\",\"iat\":%lld,"
						     "\"exp\":%lld}",
						     NOW, NOW + 60))),
		       GW_JWT_BAD_SUBJECT);
	drop_all();
}

/* ---- the key ---- */

static void test_jwt_without_a_usable_key_refuses_everything(void)
{
	const char *t = fmt("Bearer %s", good_token());
	gw_jwt_config short_key = {(const unsigned char *)KEY, GW_JWT_MIN_KEY - 1};
	gw_jwt_config no_key = {NULL, 64};
	gw_jwt_config empty = {(const unsigned char *)"", 0};
	int64_t id = 5;

	CU_ASSERT_EQUAL(gw_jwt_verify(&short_key, t, NOW, &id), GW_JWT_NO_KEY);
	CU_ASSERT_EQUAL(id, 0);
	CU_ASSERT_EQUAL(gw_jwt_verify(&no_key, t, NOW, &id), GW_JWT_NO_KEY);
	CU_ASSERT_EQUAL(gw_jwt_verify(&empty, t, NOW, &id), GW_JWT_NO_KEY);
	CU_ASSERT_EQUAL(gw_jwt_verify(NULL, t, NOW, &id), GW_JWT_NO_KEY);
	CU_ASSERT_EQUAL(id, 0);
	/* A token signed with the empty key does not get through either. */
	CU_ASSERT_EQUAL(
	    gw_jwt_verify(
		&empty, fmt("Bearer %s", signed_with(GOOD_HEADER, claims("42", NOW, NOW + 60), "")),
		NOW, &id),
	    GW_JWT_NO_KEY);
	drop_all();
}

static void test_jwt_result_names_exist_for_the_log(void)
{
	for (int r = GW_JWT_OK; r <= GW_JWT_INTERNAL; r++)
		CU_ASSERT_STRING_NOT_EQUAL(gw_jwt_result_str((gw_jwt_result)r), "unknown");
	CU_ASSERT_STRING_EQUAL(gw_jwt_result_str((gw_jwt_result)999), "unknown");
}

/* ---- what the gateway builds on it ---- */

/* §2: every route needs a token but those under /auth/, /healthz, /readyz and
 * /metrics. */
static void test_jwt_every_route_but_auth_and_health_needs_a_token(void)
{
	size_t n;
	const gw_route *rt = gw_routes(&n);

	CU_ASSERT(n > 0);
	for (size_t i = 0; i < n; i++) {
		bool exempt = strncmp(rt[i].pattern, "/auth/", 6) == 0 ||
			      strcmp(rt[i].pattern, "/healthz") == 0 ||
			      strcmp(rt[i].pattern, "/readyz") == 0 ||
			      strcmp(rt[i].pattern, "/metrics") == 0;

		CU_ASSERT_EQUAL(rt[i].needs_token, !exempt);
		if (rt[i].needs_token != !exempt)
			fprintf(stderr, "\n  %s %s: needs_token %d\n", rt[i].method, rt[i].pattern,
				rt[i].needs_token);
	}
}

/* The filter decides on the route of the normalised path: no spelling of
 * a protected path reaches it through the /auth exemption. */
static void test_jwt_path_tricks_land_on_protected_routes_or_nowhere(void)
{
	static const struct {
		const char *method, *raw;
		int want; /* 1 protected route, 0 no route, -1 path refused */
	} cases[] = {
	    {"GET", "/auth/../products", 1},
	    {"GET", "/auth/../orders/1", 1},
	    {"GET", "//products", 1},
	    {"GET", "//orders/1", 1},
	    {"GET", "/auth/./../products", 1},
	    {"GET", "/auth%2F..%2Fproducts", -1},
	    {"GET", "/auth%2f..%2forders", -1},
	    {"GET", "/AUTH/x", 0},
	    {"GET", "/authx/products", 0},
	    {"GET", "/authx/orders", 0},
	    {"POST", "/AUTH/sign-up", 0},
	    {"GET", "/auth/%2e%2e/products", 1},
	    {"GET", "/auth/sign-in/../../products", 1},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[256];
		const gw_route *rt = NULL;
		int64_t id;
		int got;

		if (gw_path_normalize(cases[i].raw, path, sizeof(path)) != 0)
			got = -1;
		else if (gw_route_match(cases[i].method, path, &rt, &id, NULL, 0) != GW_MATCH_OK)
			got = 0;
		else
			got = rt->needs_token ? 1 : 2; /* 2: an open route, never wanted */
		CU_ASSERT_EQUAL(got, cases[i].want);
		if (got != cases[i].want)
			fprintf(stderr, "\n  %s %s: got %d\n", cases[i].method, cases[i].raw, got);
	}
}

static void test_jwt_401_problems_have_codes_and_texts(void)
{
	gw_problem p;

	gw_problem_make(&p, GW_P_MISSING_TOKEN, GW_LANG_EN, NULL);
	CU_ASSERT_EQUAL(p.status, 401);
	CU_ASSERT_STRING_EQUAL(p.code, "missing_token");
	CU_ASSERT(strlen(p.detail) > 0);
	gw_problem_make(&p, GW_P_MISSING_TOKEN, GW_LANG_KO, NULL);
	CU_ASSERT_STRING_EQUAL(p.code, "missing_token");
	CU_ASSERT_PTR_NOT_NULL(strstr(p.detail, "토큰"));
	gw_problem_make(&p, GW_P_INVALID_TOKEN, GW_LANG_EN, NULL);
	CU_ASSERT_EQUAL(p.status, 401);
	CU_ASSERT_STRING_EQUAL(p.code, "invalid_token");
	CU_ASSERT_PTR_NULL(strstr(p.detail, "sign")); /* says nothing of the reason */
	gw_problem_make(&p, GW_P_INVALID_TOKEN, GW_LANG_KO, NULL);
	CU_ASSERT_PTR_NOT_NULL(strstr(p.detail, "토큰"));
	CU_ASSERT_EQUAL(p.retry_after, 0);
}

/* A cached token is refused once exp + leeway has passed, as the full
 * check would; the entry goes, and a later check starts over. */
static void test_jwt_cache_honours_exp_after_caching(void)
{
	gw_jwt_cache *c = gw_jwt_cache_new(4);
	const char *h = fmt("Bearer %s", token(GOOD_HEADER, claims("5", NOW, NOW + 100)));
	const char *other = fmt("Bearer %s", token(GOOD_HEADER, claims("6", NOW, NOW + 100)));
	int64_t id = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(gw_jwt_verify_cached(c, &CFG, h, NOW, &id), GW_JWT_OK);
	CU_ASSERT_EQUAL(id, 5);
	CU_ASSERT_EQUAL(gw_jwt_verify_cached(c, &CFG, h, NOW + 100 + GW_JWT_LEEWAY_S - 1, &id),
			GW_JWT_OK);
	CU_ASSERT_EQUAL(gw_jwt_verify_cached(c, &CFG, h, NOW + 100 + GW_JWT_LEEWAY_S, &id),
			GW_JWT_EXPIRED);
	CU_ASSERT_EQUAL(id, 0);
	CU_ASSERT_EQUAL(gw_jwt_verify_cached(c, &CFG, h, NOW, &id), GW_JWT_OK);
	/* Many tokens through 4 slots: each still gets its own user id. */
	for (int i = 0; i < 50; i++) {
		CU_ASSERT_EQUAL(gw_jwt_verify_cached(c, &CFG, i % 2 ? h : other, NOW, &id),
				GW_JWT_OK);
		CU_ASSERT_EQUAL(id, i % 2 ? 5 : 6);
	}
	/* A clock set back: the full check refuses a token whose iat is
	 * then in the future, and so does the cache. */
	const char *later = fmt("Bearer %s", token(GOOD_HEADER, claims("8", NOW + 30, NOW + 300)));
	CU_ASSERT_EQUAL(gw_jwt_verify_cached(c, &CFG, later, NOW, &id), GW_JWT_OK);
	CU_ASSERT_EQUAL(gw_jwt_verify(&CFG, later, NOW - 100, &id), GW_JWT_NOT_YET_VALID);
	CU_ASSERT_EQUAL(gw_jwt_verify_cached(c, &CFG, later, NOW - 100, &id), GW_JWT_NOT_YET_VALID);
	CU_ASSERT_EQUAL(id, 0);
	CU_ASSERT_EQUAL(gw_jwt_verify_cached(c, &CFG, later, NOW, &id), GW_JWT_OK);
	CU_ASSERT_EQUAL(id, 8);
	/* The cached token with its last character changed is not a hit. */
	char *forged = keep(strdup(h));
	char *last = forged + strlen(forged) - 1;
	*last = *last == 'A' ? 'B' : 'A';
	CU_ASSERT_EQUAL(gw_jwt_verify_cached(c, &CFG, forged, NOW, &id), GW_JWT_BAD_SIGNATURE);
	CU_ASSERT_EQUAL(id, 0);
	gw_jwt_cache_free(c);
	CU_ASSERT_PTR_NULL(gw_jwt_cache_new(0));
	drop_all();
}

static void test_jwt_setup(void)
{
	CU_ASSERT_FATAL(sodium_init() >= 0);
	cache = gw_jwt_cache_new(64);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cache);
}

static void test_jwt_teardown(void)
{
	gw_jwt_cache_free(cache);
	cache = NULL;
}

SHOP_TEST_MAIN(
    "jwt_filter", {"sodium_init", test_jwt_setup},
    {"accepts a good token with its user id", test_jwt_accepts_a_good_token_with_its_user_id},
    {"scheme is case-insensitive, spaces tolerated",
     test_jwt_scheme_is_case_insensitive_and_spaces_are_tolerated},
    {"no bearer credentials is missing", test_jwt_no_bearer_credentials_is_missing},
    {"bearer without a token is malformed", test_jwt_bearer_without_a_token_is_malformed},
    {"stray spaces and separators are malformed",
     test_jwt_stray_spaces_and_separators_are_malformed},
    {"needs exactly three segments", test_jwt_needs_exactly_three_segments},
    {"refuses bad base64url", test_jwt_refuses_bad_base64url},
    {"refuses impossible or non-canonical base64url",
     test_jwt_refuses_impossible_or_non_canonical_base64url},
    {"refuses tokens over 8 KiB", test_jwt_refuses_tokens_over_8_kib},
    {"refuses segments that are not JSON objects",
     test_jwt_refuses_segments_that_are_not_json_objects},
    {"refuses repeated members and hidden NUL", test_jwt_refuses_repeated_members_and_hidden_nul},
    {"refuses alg none in any case", test_jwt_refuses_alg_none_in_any_case},
    {"refuses every alg but HS256", test_jwt_refuses_every_alg_but_hs256},
    {"refuses other typ and crit", test_jwt_refuses_other_typ_and_crit},
    {"refuses a wrong key", test_jwt_refuses_a_wrong_key},
    {"refuses a changed payload or signature", test_jwt_refuses_a_changed_payload_or_signature},
    {"refuses expired tokens beyond the leeway", test_jwt_refuses_expired_tokens_beyond_the_leeway},
    {"exp is required and an integer", test_jwt_exp_is_required_and_an_integer},
    {"refuses nbf and iat in the future", test_jwt_refuses_nbf_and_iat_in_the_future},
    {"lifetime is at most one hour plus the leeway",
     test_jwt_lifetime_is_at_most_one_hour_plus_the_leeway},
    {"refuses a wrong issuer", test_jwt_refuses_a_wrong_issuer},
    {"refuses a bad subject", test_jwt_refuses_a_bad_subject},
    {"without a usable key refuses everything", test_jwt_without_a_usable_key_refuses_everything},
    {"result names exist for the log", test_jwt_result_names_exist_for_the_log},
    {"every route but auth and health needs a token",
     test_jwt_every_route_but_auth_and_health_needs_a_token},
    {"path tricks land on protected routes or nowhere",
     test_jwt_path_tricks_land_on_protected_routes_or_nowhere},
    {"401 problems have codes and texts", test_jwt_401_problems_have_codes_and_texts},
    {"cache honours exp after caching", test_jwt_cache_honours_exp_after_caching},
    {"free the suite's cache", test_jwt_teardown})
