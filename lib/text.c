/* text.c -- UTF-8 validation and trimming of names users type. */
#include "text.h"

#include <stdint.h>
#include <string.h>

/* Decodes one code point at s (len bytes left). Returns its byte length and
 * writes *cp, or 0 when the sequence is invalid. */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
	uint32_t c;
	size_t n, i;

	if (len == 0)
		return 0;
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0) {
		c = s[0] & 0x1f;
		n = 2;
	} else if ((s[0] & 0xf0) == 0xe0) {
		c = s[0] & 0x0f;
		n = 3;
	} else if ((s[0] & 0xf8) == 0xf0) {
		c = s[0] & 0x07;
		n = 4;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if ((n == 2 && c < 0x80) || (n == 3 && c < 0x800) || (n == 4 && c < 0x10000) ||
	    c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

static int is_space(uint32_t c)
{
	return c == ' ' || (c >= 0x09 && c <= 0x0d) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
	       c == 0x205f || c == 0x3000 || c == 0xfeff;
}

static int is_control(uint32_t c)
{
	return c < 0x20 || (c >= 0x7f && c <= 0x9f);
}

long shop_utf8_count(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	long count = 0;
	uint32_t cp;
	size_t n;

	while (len > 0) {
		if ((n = utf8_decode(p, len, &cp)) == 0)
			return -1;
		p += n;
		len -= n;
		count++;
	}
	return count;
}

int shop_text_clean(const char *s, size_t min_chars, size_t max_chars, char *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strlen(s), i = 0, n, start = 0, end = 0, chars = 0, kept = 0;
	int seen = 0, ctrl_gap = 0;
	uint32_t cp;

	/* One pass: validate everything, remember where the first and last
	 * non-space characters are, and count the characters between. */
	while (i < len) {
		if ((n = utf8_decode(p + i, len - i, &cp)) == 0)
			return -1;
		if (is_space(cp)) {
			/* A tab or line break may be trimmed off the ends, but
			 * not stand inside a name. */
			if (seen)
				chars++;
			if (seen && is_control(cp))
				ctrl_gap = 1;
		} else {
			if (is_control(cp) || ctrl_gap)
				return -1;
			if (!seen)
				start = i;
			seen = 1;
			chars++;
			end = i + n;
			kept = chars;
		}
		i += n;
	}
	/* Trailing spaces were counted in chars; kept counts up to the last
	 * non-space character. */
	if (!seen || kept < min_chars || kept > max_chars || end - start + 1 > cap)
		return -1;
	memcpy(out, s + start, end - start);
	out[end - start] = '\0';
	return 0;
}
