/* auth_service.c -- AuthService: SignUp and SignIn with Argon2id and JWTs. */
#include "auth_service.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.pb-c.h"
#include "auth_store.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "names.h"
#include "service.h"
#include "text.h"
#include "token.h"

#define PASSWORD_MIN 8
#define PASSWORD_MAX 128

int auth_app_init(auth_app *app, const unsigned char *key, size_t key_len,
		  unsigned long long opslimit, size_t memlimit, const auth_hash_gate_config *gate)
{
	auth_hash_gate_config gc = *gate;
	char random_pw[33];
	unsigned char raw[16];
	int64_t t0;

	if (sodium_init() < 0)
		return -1;
	app->jwt_key = key;
	app->jwt_key_len = key_len;
	app->opslimit = opslimit;
	app->memlimit = memlimit;
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(random_pw, sizeof(random_pw), raw, sizeof(raw));
	t0 = shop_now_mono_us();
	if (crypto_pwhash_str(app->dummy_hash, random_pw, strlen(random_pw), opslimit, memlimit) !=
	    0)
		return -1;
	gc.initial_hash_us = shop_now_mono_us() - t0;
	if ((app->gate = auth_hash_gate_create(&gc)) == NULL)
		return -1;
	SHOP_LOG(INFO,
		 "argon2id t=%llu m=%zu KiB: %.1f ms a hash; %u at once, %u admitted at most, %u "
		 "per client",
		 opslimit, memlimit / 1024, (double)gc.initial_hash_us / 1000, gc.concurrency,
		 gc.max_admitted, gc.per_client);
	return 0;
}

void auth_app_fini(auth_app *app)
{
	auth_hash_gate_destroy(app->gate);
	app->gate = NULL;
}

static int check_password(const char *password, shop_rpc_reply *reply)
{
	size_t pw_len = strlen(password);

	if (pw_len < PASSWORD_MIN || pw_len > PASSWORD_MAX) {
		shop_rpc_reply_bad_field(reply, "password", "must be 8 to 128 bytes");
		return -1;
	}
	return 0;
}

/* shop_auth_hash_shed_total{reason}: hashes refused by the gate. */
static shop_metric_family *shed_total;

static void shed_metric_init(void)
{
	shed_total = shop_metrics_counter(
	    shop_metrics_default(), "shop_auth_hash_shed_total",
	    "Sign-ups and sign-ins refused before hashing: overloaded (could not finish before the "
	    "caller's deadline), client_busy (one client's share of the hashing in use).",
	    "reason");
	SHOP_METRIC(shed_total, "overloaded");
	SHOP_METRIC(shed_total, "client_busy");
}

/* One Argon2id operation, as the gate runs it. */
struct hash_op {
	const char *password;
	const char *hash; /* verify: the stored hash */
	char *out;        /* hash: crypto_pwhash_STRBYTES */
	unsigned long long opslimit;
	size_t memlimit;
};

static int op_hash(void *arg)
{
	struct hash_op *op = arg;

	return crypto_pwhash_str(op->out, op->password, strlen(op->password), op->opslimit,
				 op->memlimit);
}

static int op_verify(void *arg)
{
	struct hash_op *op = arg;

	return crypto_pwhash_str_verify(op->hash, op->password, strlen(op->password));
}

/* Runs op through the gate. Returns 0 when it ran (its result in *rv);
 * -1 when the gate shed it, with the reply filled: RESOURCE_EXHAUSTED,
 * reason OVERLOADED (the service's limit: 503 at the gateway) or
 * TOO_MANY_REQUESTS (this client's share: 429), metadata retry_after. */
/* Fills the reply of a call the gate refused (res), to retry after secs. */
static void shed_reply(auth_gate_result res, int secs, shop_rpc_reply *reply)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	char retry[16];

	pthread_once(&once, shed_metric_init);
	snprintf(retry, sizeof(retry), "%d", secs);
	if (res == AUTH_GATE_CLIENT_BUSY) {
		shop_metric_inc(SHOP_METRIC(shed_total, "client_busy"));
		shop_rpc_reply_error(
		    reply, SHOP_RPC_RESOURCE_EXHAUSTED, "TOO_MANY_REQUESTS",
		    "too many sign-ins at once from this client; try again in %s s", retry);
	} else {
		shop_metric_inc(SHOP_METRIC(shed_total, "overloaded"));
		shop_rpc_reply_error(reply, SHOP_RPC_RESOURCE_EXHAUSTED, "OVERLOADED",
				     "the service cannot take more sign-ins now; try again in %s s",
				     retry);
	}
	shop_rpc_reply_meta(reply, "retry_after", retry);
}

static int gated(auth_app *app, shop_rpc_call *call, const char *client, int (*fn)(void *),
		 struct hash_op *op, int *rv, shop_rpc_reply *reply)
{
	auth_gate_result res;
	int secs = 1;

	res = auth_hash_gate_run(app->gate, client, call->deadline_unix_ms, fn, op, rv, &secs);
	if (res == AUTH_GATE_RAN)
		return 0;
	shed_reply(res, secs, reply);
	return -1;
}

static int hash_password(auth_app *app, shop_rpc_call *call, const char *client,
			 const char *password, char out[crypto_pwhash_STRBYTES], int *rv,
			 shop_rpc_reply *reply)
{
	struct hash_op op = {
	    .password = password, .out = out, .opslimit = app->opslimit, .memlimit = app->memlimit};

	return gated(app, call, client, op_hash, &op, rv, reply);
}

static int verify_password(auth_app *app, shop_rpc_call *call, const char *client, const char *hash,
			   const char *password, int *rv, shop_rpc_reply *reply)
{
	struct hash_op op = {.password = password, .hash = hash};

	return gated(app, call, client, op_verify, &op, rv, reply);
}

/* Fills the session fields shared by both answers and packs it. */
static void reply_session(auth_app *app, shop_rpc_reply *reply, const ProtobufCMessageDescriptor *d,
			  int64_t id, const char *name)
{
	/* SignUpResponse and SignInResponse have the same fields and numbers. */
	Shop__V1__SignInResponse resp = SHOP__V1__SIGN_IN_RESPONSE__INIT;
	char *token =
	    auth_token_issue(app->jwt_key, app->jwt_key_len, id, name, shop_now_unix_ms() / 1000);

	if (token == NULL) {
		shop_rpc_reply_error(reply, SHOP_RPC_INTERNAL, "INTERNAL", "cannot sign a token");
		return;
	}
	resp.base.descriptor = d;
	resp.user_id = id;
	resp.name = (char *)name;
	resp.access_token = token;
	resp.token_type = "Bearer";
	resp.expires_in = AUTH_TOKEN_TTL;
	shop_rpc_reply_ok(reply, &resp.base);
	sodium_memzero(token, strlen(token));
	free(token);
}

static void sign_up(void *appv, shop_rpc_call *call, const ProtobufCMessage *msg,
		    shop_rpc_reply *reply)
{
	const Shop__V1__SignUpRequest *req = (const void *)msg;
	auth_app *app = appv;
	char hash[crypto_pwhash_STRBYTES], sqlstate[6] = "";
	PGresult *res = NULL;
	auth_name name;
	int64_t id;
	int rv;
	int got;

	if ((got = auth_name_init(&name, req->name)) != AUTH_NAME_OK) {
		if (got == AUTH_NAME_INVALID)
			shop_rpc_reply_bad_field(reply, "name", AUTH_NAME_RULE);
		else
			shop_rpc_reply_error(reply, SHOP_RPC_INTERNAL, "INTERNAL",
					     "cannot check the name");
		return;
	}
	if (check_password(req->password, reply) != 0)
		goto out;
	if (hash_password(app, call, req->client_address, req->password, hash, &rv, reply) != 0)
		goto out; /* shed: answered */
	if (rv != 0) {
		shop_rpc_reply_error(reply, SHOP_RPC_INTERNAL, "INTERNAL", "cannot hash");
		goto out;
	}
	/* Taken when either key (names.h) or the NFC spelling is another
	 * user's: the unique indexes decide, so concurrent sign-ups of two
	 * look-alikes cannot both win. */
	res = auth_store_insert_user(shop_service_pg(call), &name, hash, sqlstate);
	if (res == NULL && strcmp(sqlstate, "23505") == 0) {
		shop_rpc_reply_error(reply, SHOP_RPC_ALREADY_EXISTS, "NAME_TAKEN",
				     "this name is already taken");
		goto out;
	}
	if (res == NULL || PQntuples(res) != 1) {
		shop_service_reply_db_down(reply);
		goto out;
	}
	id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	SHOP_LOG_T(INFO, call->trace_id, "user %" PRId64 " signed up", id);
	reply_session(app, reply, &shop__v1__sign_up_response__descriptor, id, name.display);
out:
	PQclear(res);
	auth_name_fini(&name);
}

static void sign_in(void *appv, shop_rpc_call *call, const ProtobufCMessage *msg,
		    shop_rpc_reply *reply)
{
	const Shop__V1__SignInRequest *req = (const void *)msg;
	auth_app *app = appv;
	char fresh[crypto_pwhash_STRBYTES], *exact;
	size_t cap = strlen(req->name) + 1;
	const char *hash, *bucket;
	PGresult *res = NULL;
	int64_t id = 0, wait_ms;
	int known, ok, rv, retry_s;
	auth_gate_result gate;
	struct hash_op op;
	auth_name name;
	char retry[24];

	/* A guess the gate would shed anyway is shed now, before the name's
	 * normalization, the throttle's two Redis round trips and the user's
	 * row: under a flood of sign-ins that ignore Retry-After, that work of
	 * every shed call took CPU from the admitted hashes (docs/decisions.md,
	 * "Caller-side shedding and cheap sheds"). Nothing was checked, so
	 * nothing counts in the throttle. */
	if ((gate = auth_hash_gate_check(app->gate, req->client_address, call->deadline_unix_ms,
					 &retry_s)) != AUTH_GATE_RAN) {
		shed_reply(gate, retry_s, reply);
		return;
	}
	/* An invalid name leaves name empty (no key): it may still be a user
	 * kept without keys, found by exact below. */
	if (auth_name_init(&name, req->name) == AUTH_NAME_INTERNAL) {
		shop_rpc_reply_error(reply, SHOP_RPC_INTERNAL, "INTERNAL", "cannot check the name");
		return;
	}
	if ((exact = malloc(cap)) == NULL) {
		shop_rpc_reply_error(reply, SHOP_RPC_INTERNAL, "INTERNAL", "out of memory");
		goto out;
	}
	/* By the name's key: ALICE, or café typed decomposed, is the user who
	 * signed up as alice or café. The trimmed input as typed finds only a
	 * user kept without keys (auth_store.c), whose name may break today's
	 * rules. */
	if (shop_text_clean(req->name, 1, AUTH_NAME_MAX_CHARS, exact, cap) != 0) {
		free(exact);
		exact = NULL;
	}
	/* One bucket per name, whatever its spelling: ALICE and alice are
	 * throttled together. */
	bucket = name.key != NULL ? name.key : exact;
	/* A token is taken before any hashing, in one atomic step: a flood of
	 * guesses, concurrent or not, gets at most burst passwords checked. */
	wait_ms = auth_throttle_take(shop_service_redis(call), &app->throttle, bucket,
				     req->client_address, shop_now_unix_ms());
	if (wait_ms > 0) {
		snprintf(retry, sizeof(retry), "%" PRId64, (wait_ms + 999) / 1000);
		shop_rpc_reply_error(reply, SHOP_RPC_RESOURCE_EXHAUSTED, "TOO_MANY_REQUESTS",
				     "too many failed sign-ins; try again in %s s", retry);
		shop_rpc_reply_meta(reply, "retry_after", retry);
		goto out;
	}
	/* A name or password that could never have signed up cannot match:
	 * the same answer as a wrong password, without touching the store. */
	if (bucket == NULL || strlen(req->password) < PASSWORD_MIN ||
	    strlen(req->password) > PASSWORD_MAX) {
		/* Shed: the guess was not checked, so its token goes back. */
		if (verify_password(app, call, req->client_address, app->dummy_hash, req->password,
				    &rv, reply) != 0)
			goto out_refund;
		goto denied;
	}
	if ((res = auth_store_find_user(shop_service_pg(call), name.key, exact)) == NULL) {
		shop_service_reply_db_down(reply);
		goto out_refund; /* no password was checked */
	}
	known = PQntuples(res) == 1;
	hash = known ? PQgetvalue(res, 0, 2) : app->dummy_hash;
	/* An unknown name is checked against the dummy hash: same work, same
	 * time, same answer as a wrong password. */
	if (verify_password(app, call, req->client_address, hash, req->password, &rv, reply) != 0)
		goto out_refund; /* shed: no password was checked */
	ok = rv == 0 && known;
	if (!ok)
		goto denied;
	id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	/* A re-hash is optional work: when the gate is busy it waits for a
	 * later sign-in. */
	op = (struct hash_op){.password = req->password,
			      .out = fresh,
			      .opslimit = app->opslimit,
			      .memlimit = app->memlimit};
	if (crypto_pwhash_str_needs_rehash(hash, app->opslimit, app->memlimit) != 0 &&
	    auth_hash_gate_run(app->gate, NULL, call->deadline_unix_ms, op_hash, &op, &rv,
			       &retry_s) == AUTH_GATE_RAN &&
	    rv == 0 && auth_store_set_hash(shop_service_pg(call), id, fresh) == 0)
		SHOP_LOG_T(INFO, call->trace_id, "user %" PRId64 ": password re-hashed", id);
	/* The name as stored (NFC, as signed up), not as typed. */
	reply_session(app, reply, &shop__v1__sign_in_response__descriptor, id,
		      PQgetvalue(res, 0, 1));
	goto out_refund; /* a success keeps no token */
denied:
	/* The token taken stays taken: this was a failed guess. */
	shop_rpc_reply_error(reply, SHOP_RPC_UNAUTHENTICATED, "INVALID_CREDENTIALS",
			     "name or password is wrong");
	goto out;
out_refund:
	auth_throttle_refund(shop_service_redis(call), &app->throttle, bucket, req->client_address,
			     shop_now_unix_ms());
out:
	PQclear(res);
	free(exact);
	auth_name_fini(&name);
}

const shop_rpc_method auth_methods[] = {
    {"/shop.v1.AuthService/SignUp", &shop__v1__sign_up_request__descriptor, sign_up,
     SHOP_RPC_BLOCKING},
    {"/shop.v1.AuthService/SignIn", &shop__v1__sign_in_request__descriptor, sign_in,
     SHOP_RPC_BLOCKING},
};
const size_t auth_n_methods = sizeof(auth_methods) / sizeof(auth_methods[0]);
