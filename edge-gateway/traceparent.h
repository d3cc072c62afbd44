/* traceparent.h -- W3C Trace Context: keep a client's trace id, or start a
 * trace, and give every gateway hop its own span id. Pure code. */
#ifndef GW_TRACEPARENT_H
#define GW_TRACEPARENT_H

#include <stdbool.h>
#include <stdint.h>

/* "00-" 32 hex "-" 16 hex "-" 2 hex, NUL. */
#define GW_TRACEPARENT_LEN 56

typedef struct gw_trace {
	char trace_id[33];                    /* 32 lowercase hex */
	char span_id[17];                     /* the gateway's SERVER span */
	char parent_id[17];                   /* the client's span; "" when we started */
	bool sampled;                         /* flags bit 0: record spans */
	char traceparent[GW_TRACEPARENT_LEN]; /* the SERVER span's context: sent
					       * upstream and on the answer */
} gw_trace;

/* Builds the gateway's trace context. When incoming (may be NULL) is a
 * valid traceparent (version 00 exactly 55 characters, or a later version
 * with at least that prefix; lowercase hex; ids not all zero; version not
 * ff) its trace id and flags are kept and its span id becomes parent_id;
 * otherwise rnd_hi/rnd_lo make a new trace id (sampled flag 01). span is
 * the new span id, the gateway's SERVER span (0 is replaced). */
void gw_trace_init(gw_trace *t, const char *incoming, uint64_t rnd_hi, uint64_t rnd_lo,
		   uint64_t span);

#endif
