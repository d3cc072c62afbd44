/* fuzz_framing.c -- libFuzzer target: HTTP/1.1 request framing
 * (edge-gateway/framing.c): the Content-Length / Transfer-Encoding decision
 * and the chunked decoder.
 *
 * Input: byte 0 bit 0 picks the part. Framing: the rest is field lines
 * separated by '\n', "C..." a Content-Length value, "T..." a
 * Transfer-Encoding value. Chunked: the rest is a body, decoded once whole
 * and once in pieces of 1 to 8 bytes (byte 0 picks the pattern): both
 * must agree on the outcome, the bytes consumed and the data, since the
 * gateway gets a body in whatever pieces TCP delivers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "framing.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_LINES 16

static void decide(const uint8_t *in, size_t len)
{
	char *text = malloc(len + 1), *p, *save = NULL;
	const char *cl[MAX_LINES], *te[MAX_LINES];
	size_t n_cl = 0, n_te = 0;
	uint64_t length = 1;
	enum gw_framing f;

	if (text == NULL)
		return;
	memcpy(text, in, len);
	text[len] = '\0';
	for (p = strtok_r(text, "\n", &save); p != NULL; p = strtok_r(NULL, "\n", &save)) {
		if (p[0] == 'C' && n_cl < MAX_LINES)
			cl[n_cl++] = p + 1;
		else if (p[0] == 'T' && n_te < MAX_LINES)
			te[n_te++] = p + 1;
	}
	f = gw_framing_decide(cl, n_cl, te, n_te, &length);
	if ((f != GW_FRAMING_LENGTH && length != 0) ||
	    (f == GW_FRAMING_LENGTH &&
	     (n_cl != 1 || n_te != 0 || length > 999999999999999999ULL)) ||
	    (f == GW_FRAMING_NONE && (n_cl != 0 || n_te != 0)) ||
	    (f == GW_FRAMING_CONFLICT && (n_cl == 0 || n_te == 0)))
		abort();
	free(text);
}

static void chunked(const uint8_t *in, size_t len, unsigned pattern)
{
	char *whole = malloc(len + 1), *pieces = malloc(len + 1);
	size_t whole_len = 0, whole_used = 0, piece_len = 0, piece_used = 0;
	enum gw_chunked_rv w, p = GW_CHUNKED_MORE;
	gw_chunked c;

	if (whole == NULL || pieces == NULL)
		goto out;
	gw_chunked_init(&c);
	w = gw_chunked_decode(&c, (const char *)in, len, whole, &whole_len, &whole_used);
	if (whole_used > len || whole_len > whole_used ||
	    (w == GW_CHUNKED_MORE && whole_used != len))
		abort();
	gw_chunked_init(&c);
	for (size_t off = 0, k = 0; off < len && p == GW_CHUNKED_MORE; k++) {
		size_t n = 1 + ((pattern >> (k % 4 * 2)) & 7) % 8, used = 0;

		if (n > len - off)
			n = len - off;
		p = gw_chunked_decode(&c, (const char *)in + off, n, pieces, &piece_len, &used);
		if (used > n || (p == GW_CHUNKED_MORE && used != n))
			abort();
		piece_used += used;
		off += used;
	}
	if (w != p || whole_used != piece_used || whole_len != piece_len ||
	    memcmp(whole, pieces, whole_len) != 0)
		abort();
out:
	free(pieces);
	free(whole);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if ((data[0] & 1) == 0)
		decide(data + 1, size - 1);
	else
		chunked(data + 1, size - 1, data[0] >> 1);
	return 0;
}
