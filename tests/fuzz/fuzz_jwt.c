/* fuzz_jwt.c -- libFuzzer target: the gateway's bearer-token check
 * (edge-gateway/jwt_filter.c, gw_jwt_verify) with a fixed 32-byte key.
 *
 * Input: byte 0 bit 0 picks the mode.
 * - Raw: the rest is the Authorization header value (a C string: it ends
 *   at the first NUL, as lws hands it over).
 * - Signed: the rest is a JOSE header and a claims set separated by a NUL
 *   (no NUL: the rest is the claims under {"alg":"HS256","typ":"JWT"}),
 *   base64url-encoded and signed with the key, so that the input reaches
 *   libjwt's own parse (jansson) and the filter's claim checks (cJSON)
 *   instead of stopping at the signature. Bits 1-2 vary the scheme's case
 *   and the spaces around the token; bit 3 signs with another key.
 * Properties checked: GW_JWT_OK gives a positive user id, and never for a
 * token signed with another key; any refusal leaves the user id 0. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "jwt_filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000LL

static const unsigned char KEY[32] = "fuzz-key-0123456789abcdefghijklm";
static const unsigned char OTHER_KEY[32] = "fuzz-key-0123456789abcdefghijklM";
static const gw_jwt_config CFG = {KEY, sizeof(KEY)};

static gw_jwt_result verify(const char *authorization)
{
	int64_t uid = -1;
	gw_jwt_result r = gw_jwt_verify(&CFG, authorization, NOW, &uid);

	if (r == GW_JWT_OK ? uid <= 0 : uid != 0)
		abort();
	if (gw_jwt_result_str(r) == NULL)
		abort();
	return r;
}

/* base64url without padding of n bytes, appended at *o. */
static void b64url(char **o, const void *in, size_t n)
{
	size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);

	sodium_bin2base64(*o, cap, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	*o += strlen(*o);
}

static void signed_token(const uint8_t *in, size_t len, unsigned variant)
{
	static const char def_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	const uint8_t *nul = memchr(in, '\0', len);
	const void *h = def_header, *c = in;
	size_t h_len = sizeof(def_header) - 1, c_len = len;
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	size_t cap = 32 + 2 * (len + sizeof(def_header)) + 64;
	char *value = malloc(cap), *o, *tok;

	if (value == NULL)
		return;
	if (nul != NULL) {
		h = in, h_len = (size_t)(nul - in);
		c = nul + 1, c_len = len - h_len - 1;
	}
	o = value;
	o += sprintf(o, "%s%s", (variant & 2) ? " \t" : "", (variant & 1) ? "bEARER " : "Bearer ");
	if (variant & 2)
		*o++ = ' ';
	tok = o;
	b64url(&o, h, h_len);
	*o++ = '.';
	b64url(&o, c, c_len);
	crypto_auth_hmacsha256(mac, (const unsigned char *)tok, (size_t)(o - tok),
			       (variant & 4) ? OTHER_KEY : KEY);
	*o++ = '.';
	b64url(&o, mac, sizeof(mac));
	if (variant & 2)
		*o++ = '\t';
	*o = '\0';
	/* Signed with another key: never accepted, whatever it says. */
	if (verify(value) == GW_JWT_OK && (variant & 4))
		abort();
	free(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *value;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		signed_token(data + 1, size - 1, (data[0] >> 1) & 7);
		return 0;
	}
	if ((value = malloc(size)) == NULL)
		return 0;
	memcpy(value, data + 1, size - 1);
	value[size - 1] = '\0';
	(void)verify(value);
	if (size == 1)
		(void)verify(NULL); /* no Authorization header at all */
	free(value);
	return 0;
}
