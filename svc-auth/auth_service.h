/* auth_service.h -- the AuthService RPC handlers: SignUp and SignIn. */
#ifndef AUTH_SERVICE_H
#define AUTH_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "hash_gate.h"
#include "rpc_server.h"
#include "throttle.h"

typedef struct auth_app {
	const unsigned char *jwt_key; /* borrowed, ≥ 32 bytes */
	size_t jwt_key_len;
	unsigned long long opslimit; /* Argon2id t */
	size_t memlimit;             /* Argon2id m, bytes */
	/* Argon2id at 19 MiB takes tens of milliseconds of one core: the gate
	 * runs at most `concurrency` at once and sheds, at once, what cannot
	 * finish before its caller's deadline (hash_gate.h), so that the other
	 * workers stay free for cheap calls and for answering the excess. */
	auth_hash_gate *gate;
	/* A hash of a random password made at start with the current
	 * parameters: an unknown name is verified against it, so that it
	 * costs the same time as a wrong password. */
	char dummy_hash[crypto_pwhash_STRBYTES];
	auth_throttle_config throttle; /* sign-in buckets; set by main */
} auth_app;

/* Prepares app (sodium_init, dummy hash, the hash gate: gate's
 * initial_hash_us is measured here, on the dummy hash). Returns 0 or -1. */
int auth_app_init(auth_app *app, const unsigned char *key, size_t key_len,
		  unsigned long long opslimit, size_t memlimit, const auth_hash_gate_config *gate);
void auth_app_fini(auth_app *app);

extern const shop_rpc_method auth_methods[];
extern const size_t auth_n_methods;

#endif
