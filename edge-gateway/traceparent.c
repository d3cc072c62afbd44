/* traceparent.c -- W3C traceparent parsing and span ids. */
#include "traceparent.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool lowerhex(const char *s, size_t n)
{
	bool nonzero = false;

	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
		if (s[i] != '0')
			nonzero = true;
	}
	return nonzero || n == 2; /* flags and version may be zero */
}

static bool valid(const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
		return false;
	if (!lowerhex(s, 2) || strncmp(s, "ff", 2) == 0)
		return false;
	if (strncmp(s, "00", 2) == 0 && n != 55)
		return false;
	if (n > 55 && s[55] != '-') /* a later version may only append fields */
		return false;
	return lowerhex(s + 3, 32) && lowerhex(s + 36, 16) && lowerhex(s + 53, 2);
}

/* 16 lower-case hex digits of v into out (no NUL): what snprintf's
 * "%016" PRIx64 writes, without parsing a format per id. */
static void hex16(char *out, uint64_t v)
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 15; i >= 0; i--, v >>= 4)
		out[i] = digits[v & 0xf];
}

void gw_trace_init(gw_trace *t, const char *incoming, uint64_t rnd_hi, uint64_t rnd_lo,
		   uint64_t span)
{
	char flags[3] = "01";

	if (span == 0)
		span = 1;
	t->parent_id[0] = '\0';
	if (valid(incoming)) {
		memcpy(t->trace_id, incoming + 3, 32);
		t->trace_id[32] = '\0';
		memcpy(t->parent_id, incoming + 36, 16);
		t->parent_id[16] = '\0';
		memcpy(flags, incoming + 53, 2);
	} else {
		if (rnd_hi == 0 && rnd_lo == 0)
			rnd_lo = 1;
		hex16(t->trace_id, rnd_hi);
		hex16(t->trace_id + 16, rnd_lo);
		t->trace_id[32] = '\0';
	}
	hex16(t->span_id, span);
	t->span_id[16] = '\0';
	t->sampled = (strtoul(flags, NULL, 16) & 1) != 0;
	/* We speak version 00, whatever version came in:
	 * "00-" trace_id "-" span_id "-" flags. */
	memcpy(t->traceparent, "00-", 3);
	memcpy(t->traceparent + 3, t->trace_id, 32);
	t->traceparent[35] = '-';
	memcpy(t->traceparent + 36, t->span_id, 16);
	t->traceparent[52] = '-';
	memcpy(t->traceparent + 53, flags, 2);
	t->traceparent[55] = '\0';
}
