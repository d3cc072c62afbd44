/* breaker_parse.h -- reads the callers' circuit breakers out of their
 * /metrics text (Prometheus text format 0.0.4, Resilience4j's names: see
 * lib/upstream.c shop_upstream_breaker_metrics). Pure: no I/O, no clock. */
#ifndef SHOP_REGISTRY_BREAKER_PARSE_H
#define SHOP_REGISTRY_BREAKER_PARSE_H

#include <stddef.h>

/* The most breakers taken from one text; more are ignored (a bound on what
 * a misbehaving peer can make the registry hold). */
#define REG_BREAKERS_MAX 1024

typedef struct reg_breaker {
	char name[160]; /* the `name` label, "<caller>:<instance>" */
	/* The `state` label of the sample whose value is 1 ("closed", "open",
	 * "half_open", or any other state Resilience4j names); "" when no
	 * state sample of this breaker is 1. */
	char state[24];
	/* resilience4j_circuitbreaker_failure_rate, in percent; negative when
	 * the text has none (Resilience4j also sends -1 before enough calls). */
	double failure_rate;
} reg_breaker;

/* Collects every breaker named by a resilience4j_circuitbreaker_state or
 * _failure_rate sample of text (len bytes, need not be NUL-terminated), in
 * order of first appearance. Lines that do not parse, and label values too
 * long to hold, are skipped, never truncated. On 0, *out is malloc'd
 * (caller frees; NULL when *n is 0). Returns 0 or ENOMEM. */
int reg_breakers_parse(const char *text, size_t len, reg_breaker **out, size_t *n);

#endif
