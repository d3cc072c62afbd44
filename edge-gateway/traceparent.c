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
		snprintf(t->trace_id, sizeof(t->trace_id), "%016" PRIx64 "%016" PRIx64, rnd_hi,
			 rnd_lo);
	}
	snprintf(t->span_id, sizeof(t->span_id), "%016" PRIx64, span);
	t->sampled = (strtoul(flags, NULL, 16) & 1) != 0;
	/* We speak version 00, whatever version came in. */
	snprintf(t->traceparent, sizeof(t->traceparent), "00-%s-%016" PRIx64 "-%s", t->trace_id,
		 span, flags);
}
