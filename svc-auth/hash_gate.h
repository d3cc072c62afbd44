/* hash_gate.h -- admission of password hashing (Argon2id) in svc-auth.
 *
 * Argon2id at 19 MiB costs tens of milliseconds of a core, and a burst of
 * sign-ins asks for far more than the service can do before its callers'
 * deadlines. The gate admits a hash only when it can finish in time: at most
 * `concurrency` run at once, at most `max_admitted` are running or waiting
 * (so that some workers always stay free to answer, and to shed, at once),
 * at most `per_client` of them for one client address, and none whose
 * estimated finish (the hashes ahead of it, by the measured time of one) is
 * later than its deadline. Everything else is refused at once, without
 * hashing: the caller answers RESOURCE_EXHAUSTED and its clients retry
 * after the time the gate suggests (the admitted work and the burst refused in
 * the last second, drained at the measured rate). Waiting hashes start in
 * arrival order. */
#ifndef AUTH_HASH_GATE_H
#define AUTH_HASH_GATE_H

#include <stdint.h>

typedef struct auth_hash_gate auth_hash_gate;

typedef struct auth_hash_gate_config {
	unsigned concurrency;    /* hashes running at once, ≥ 1 */
	unsigned max_admitted;   /* running + waiting, ≥ concurrency */
	unsigned per_client;     /* admitted at once per client address; 0: no limit */
	int64_t initial_hash_us; /* the first estimate of one hash (measured at start) */
} auth_hash_gate_config;

typedef enum auth_gate_result {
	AUTH_GATE_RAN,         /* admitted; fn ran and *fn_rv is its result */
	AUTH_GATE_OVERLOADED,  /* the service cannot finish it in time: 503 */
	AUTH_GATE_CLIENT_BUSY, /* this client holds its share already: 429 */
} auth_gate_result;

/* Returns NULL when out of memory or c is invalid. */
auth_hash_gate *auth_hash_gate_create(const auth_hash_gate_config *c);
void auth_hash_gate_destroy(auth_hash_gate *g); /* accepts NULL; no call may be running */

/* Runs fn(arg) once admitted and its turn has come, and returns
 * AUTH_GATE_RAN with fn's result in *fn_rv; or refuses at once (fn does not
 * run) and sets *retry_after_s (≥ 1) to when a retry may be admitted.
 * client (borrowed; NULL or "" for none) is the end client's address;
 * deadline_unix_ms the caller's deadline (0: none). Blocks the calling
 * worker thread while the hash waits and runs. */
auth_gate_result auth_hash_gate_run(auth_hash_gate *g, const char *client, int64_t deadline_unix_ms,
				    int (*fn)(void *arg), void *arg, int *fn_rv,
				    int *retry_after_s);

/* Whether auth_hash_gate_run would admit a hash of client's with that
 * deadline now, without taking a place: AUTH_GATE_RAN when it would, else
 * the refusal run would give (counted as one, *retry_after_s set). A look
 * only: run decides. Lets a caller shed before the work that precedes the
 * hash (svc-auth's sign-in: the throttle's Redis round trip, the user's
 * row, the token given back), so that a shed call costs microseconds of
 * the CPU the hashes need. */
auth_gate_result auth_hash_gate_check(auth_hash_gate *g, const char *client,
				      int64_t deadline_unix_ms, int *retry_after_s);

/* The current estimate of one hash, in microseconds (tests, logs). */
int64_t auth_hash_gate_estimate_us(auth_hash_gate *g);

#endif
