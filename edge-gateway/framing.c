/* framing.c -- HTTP/1.1 request framing: Content-Length and
 * Transfer-Encoding checks, and the chunked decoder. */
#include "framing.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* Longest Content-Length accepted: 18 digits never overflow 64 bits. */
#define MAX_LENGTH_DIGITS 18
/* Chunk extensions and trailer fields are skipped, up to this many bytes. */
#define MAX_SKIPPED 8192
/* Chunk sizes of more hex digits than this are refused (2^60 and up). */
#define MAX_SIZE_DIGITS 15

static bool ows(char c)
{
	return c == ' ' || c == '\t';
}

/* Narrows [*b, *e) to exclude surrounding whitespace. */
static void trim(const char **b, const char **e)
{
	while (*b < *e && ows(**b))
		(*b)++;
	while (*e > *b && ows((*e)[-1]))
		(*e)--;
}

static int parse_length(const char *v, uint64_t *out)
{
	const char *b = v, *e = v + strlen(v);
	uint64_t n = 0;

	trim(&b, &e);
	if (b == e || e - b > MAX_LENGTH_DIGITS)
		return -1;
	for (const char *p = b; p < e; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		n = n * 10 + (uint64_t)(*p - '0');
	}
	*out = n;
	return 0;
}

/* True when the field lines, read as one comma-separated list, hold exactly
 * one element and it is "chunked". Empty elements are allowed (RFC 9110
 * §5.6.1); any other coding, or chunked twice, is not supported. */
static bool only_chunked(const char *const *te, size_t n_te)
{
	int chunked = 0, other = 0;

	for (size_t i = 0; i < n_te; i++) {
		const char *p = te[i];

		while (*p != '\0') {
			const char *b = p, *e;

			while (*p != '\0' && *p != ',')
				p++;
			e = p;
			if (*p == ',')
				p++;
			trim(&b, &e);
			if (b == e)
				continue;
			if (e - b == 7 && strncasecmp(b, "chunked", 7) == 0)
				chunked++;
			else
				other++;
		}
	}
	return chunked == 1 && other == 0;
}

enum gw_framing gw_framing_decide(const char *const *cl, size_t n_cl, const char *const *te,
				  size_t n_te, uint64_t *length)
{
	*length = 0;
	/* RFC 9112 §6.1: a sender must not send both; a message with both is
	 * how request smuggling starts, so it is refused rather than read by
	 * either header. */
	if (n_cl > 0 && n_te > 0)
		return GW_FRAMING_CONFLICT;
	if (n_te > 0)
		return only_chunked(te, n_te) ? GW_FRAMING_CHUNKED : GW_FRAMING_BAD_CODING;
	if (n_cl == 0)
		return GW_FRAMING_NONE;
	/* §6.3 rule 5: a list or repeated field lines are invalid, even with
	 * equal values; so is anything but digits. */
	if (n_cl > 1 || parse_length(cl[0], length) != 0) {
		*length = 0;
		return GW_FRAMING_BAD_LENGTH;
	}
	return GW_FRAMING_LENGTH;
}

/* ---- chunked ------------------------------------------------------------ */

enum {
	CH_SIZE,        /* hex digits of a chunk size */
	CH_SIZE_WS,     /* whitespace after the size (BWS before ';') */
	CH_EXT,         /* a chunk extension, up to CR */
	CH_SIZE_LF,     /* LF ending the size line */
	CH_DATA,        /* chunk data */
	CH_DATA_CR,     /* CR after the data */
	CH_DATA_LF,     /* LF after the data */
	CH_TRAILER,     /* start of a trailer line, or CR of the empty line */
	CH_TRAILER_TXT, /* inside a trailer field line, up to CR */
	CH_TRAILER_LF,  /* LF ending a trailer field line */
	CH_END_LF,      /* LF of the empty line ending the message */
	CH_DONE,
};

void gw_chunked_init(gw_chunked *c)
{
	memset(c, 0, sizeof(*c));
	c->state = CH_SIZE;
}

static int hex(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* After the size line: data, or the trailer section for the last chunk. */
static int after_size_line(gw_chunked *c)
{
	return c->remain > 0 ? CH_DATA : CH_TRAILER;
}

enum gw_chunked_rv gw_chunked_decode(gw_chunked *c, const char *in, size_t len, char *out,
				     size_t *out_len, size_t *used)
{
	size_t i = 0;
	enum gw_chunked_rv rv;

	while (i < len && c->state != CH_DONE) {
		char ch = in[i];
		int h;

		switch (c->state) {
		case CH_SIZE:
			if ((h = hex(ch)) >= 0) {
				if (++c->size_digits > MAX_SIZE_DIGITS)
					goto error;
				c->remain = c->remain * 16 + (uint64_t)h;
			} else if (c->size_digits == 0) {
				goto error;
			} else if (ows(ch)) {
				c->state = CH_SIZE_WS;
			} else if (ch == ';') {
				c->state = CH_EXT;
			} else if (ch == '\r') {
				c->state = CH_SIZE_LF;
			} else {
				goto error;
			}
			i++;
			break;
		case CH_SIZE_WS:
			if (ch == ';')
				c->state = CH_EXT;
			else if (ch == '\r')
				c->state = CH_SIZE_LF;
			else if (!ows(ch))
				goto error;
			i++;
			break;
		case CH_EXT:
			if (ch == '\r')
				c->state = CH_SIZE_LF;
			else if (ch == '\n' || ++c->skipped > MAX_SKIPPED)
				goto error;
			i++;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				goto error;
			c->state = after_size_line(c);
			c->size_digits = 0;
			i++;
			break;
		case CH_DATA: {
			size_t n = len - i;

			if ((uint64_t)n > c->remain)
				n = (size_t)c->remain;
			memcpy(out + *out_len, in + i, n);
			*out_len += n;
			c->remain -= n;
			i += n;
			if (c->remain == 0)
				c->state = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
			if (ch != '\r')
				goto error;
			c->state = CH_DATA_LF;
			i++;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				goto error;
			c->state = CH_SIZE;
			i++;
			break;
		case CH_TRAILER:
			if (ch == '\r')
				c->state = CH_END_LF;
			else if (ch == '\n' || ows(ch) || ++c->skipped > MAX_SKIPPED)
				goto error; /* no obsolete line folding either */
			else
				c->state = CH_TRAILER_TXT;
			i++;
			break;
		case CH_TRAILER_TXT:
			if (ch == '\r')
				c->state = CH_TRAILER_LF;
			else if (ch == '\n' || ++c->skipped > MAX_SKIPPED)
				goto error;
			i++;
			break;
		case CH_TRAILER_LF:
			if (ch != '\n')
				goto error;
			c->state = CH_TRAILER;
			i++;
			break;
		case CH_END_LF:
			if (ch != '\n')
				goto error;
			c->state = CH_DONE;
			i++;
			break;
		default:
			goto error;
		}
	}
	rv = c->state == CH_DONE ? GW_CHUNKED_DONE : GW_CHUNKED_MORE;
	goto out;
error:
	rv = GW_CHUNKED_ERROR;
out:
	*used = i;
	return rv;
}
