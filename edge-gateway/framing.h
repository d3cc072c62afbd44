/* framing.h -- HTTP/1.1 request framing (RFC 9112 §6): how a request's body
 * is delimited, the Content-Length and Transfer-Encoding combinations that
 * would let two parties read one request two ways, and a decoder of the
 * chunked transfer coding. Pure code. */
#ifndef GW_FRAMING_H
#define GW_FRAMING_H

#include <stddef.h>
#include <stdint.h>

enum gw_framing {
	GW_FRAMING_NONE,       /* neither header: no body (§6.3 rule 7) */
	GW_FRAMING_LENGTH,     /* one valid Content-Length */
	GW_FRAMING_CHUNKED,    /* Transfer-Encoding: chunked alone */
	GW_FRAMING_CONFLICT,   /* Content-Length with Transfer-Encoding: 400, close */
	GW_FRAMING_BAD_LENGTH, /* invalid, empty, listed or repeated Content-Length: 400 */
	GW_FRAMING_BAD_CODING, /* a transfer coding other than one chunked: 501 */
};

/* Decides how a request's body is delimited from its Content-Length field
 * lines (cl, n_cl of them; 0 when absent) and Transfer-Encoding field lines
 * (te, n_te), each value as received (surrounding whitespace allowed). A
 * Content-Length is 1 to 18 decimal digits and nothing else: no sign, no
 * inner space, no list, one field line. Sets *length for GW_FRAMING_LENGTH
 * (0 otherwise). */
enum gw_framing gw_framing_decide(const char *const *cl, size_t n_cl, const char *const *te,
				  size_t n_te, uint64_t *length);

/* A chunked-body decoder (RFC 9112 §7.1): sizes in hex, extensions and
 * trailer fields skipped (bounded), lines ended by CRLF only (a bare LF is
 * an error: lenient line endings are how requests get smuggled). */
typedef struct gw_chunked {
	int state;
	uint64_t remain; /* data bytes left in the current chunk */
	int size_digits;
	size_t skipped; /* extension and trailer bytes so far */
} gw_chunked;

enum gw_chunked_rv {
	GW_CHUNKED_MORE,  /* all input used; the body goes on */
	GW_CHUNKED_DONE,  /* the last chunk and trailers ended */
	GW_CHUNKED_ERROR, /* malformed: answer 400 and close */
};

void gw_chunked_init(gw_chunked *c);

/* Decodes len bytes of in, appending the data to out (room for len bytes:
 * the data are never longer than their encoding) and adding their length to
 * *out_len. *used is set to the bytes of in consumed; after DONE the rest
 * belongs to whatever follows the body. */
enum gw_chunked_rv gw_chunked_decode(gw_chunked *c, const char *in, size_t len, char *out,
				     size_t *out_len, size_t *used);

#endif
