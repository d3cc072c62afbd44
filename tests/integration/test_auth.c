/* test_auth.c -- the auth service over a real nng socket and a real
 * PostgreSQL (SHOP_TEST_PG_DSN): sign-up, sign-in, tokens, re-hashing. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jwt.h>

#include "../cunit_main.h"
#include "auth.pb-c.h"
#include "auth_service.h"
#include "auth_store.h"
#include "harness.h"

static const char key[] = "integration-test-key-0123456789abcdef";
static auth_app app;

static Shop__V1__RpcResponse *call(const char *method, const ProtobufCMessage *req)
{
	Shop__V1__RpcResponse *resp = harness_call(method, req);

	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	return resp;
}

static Shop__V1__RpcResponse *sign(const char *method, const char *name, const char *password)
{
	/* SignUpRequest and SignInRequest share field numbers 1 and 2. */
	Shop__V1__SignInRequest req = SHOP__V1__SIGN_IN_REQUEST__INIT;

	if (strstr(method, "SignUp") != NULL)
		req.base.descriptor = &shop__v1__sign_up_request__descriptor;
	req.name = (char *)name;
	req.password = (char *)password;
	return call(method, &req.base);
}

#define SIGN_UP "/shop.v1.AuthService/SignUp"
#define SIGN_IN "/shop.v1.AuthService/SignIn"

static void test_auth_sign_up_issues_a_valid_token(void)
{
	Shop__V1__RpcResponse *resp = sign(SIGN_UP, "  alice ", "correct horse");
	Shop__V1__SignUpResponse *s;
	jwt_t *jwt = NULL;

	CU_ASSERT_EQUAL_FATAL(resp->code, 0);
	s = shop__v1__sign_up_response__unpack(NULL, resp->payload.len, resp->payload.data);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT(s->user_id > 0);
	CU_ASSERT_STRING_EQUAL(s->name, "alice");
	CU_ASSERT_STRING_EQUAL(s->token_type, "Bearer");
	CU_ASSERT_EQUAL(s->expires_in, 3600);
	CU_ASSERT_EQUAL_FATAL(
	    jwt_decode(&jwt, s->access_token, (const unsigned char *)key, (int)strlen(key)), 0);
	CU_ASSERT_EQUAL(jwt_get_alg(jwt), JWT_ALG_HS256);
	CU_ASSERT_STRING_EQUAL(jwt_get_grant(jwt, "iss"), "shop-auth");
	CU_ASSERT_STRING_EQUAL(jwt_get_grant(jwt, "name"), "alice");
	CU_ASSERT_EQUAL(jwt_get_grant_int(jwt, "exp") - jwt_get_grant_int(jwt, "iat"), 3600);
	CU_ASSERT_EQUAL(strtoll(jwt_get_grant(jwt, "sub"), NULL, 10), s->user_id);
	CU_ASSERT_EQUAL(strlen(jwt_get_grant(jwt, "jti")), 32);
	jwt_free(jwt);
	shop__v1__sign_up_response__free_unpacked(s, NULL);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_auth_name_taken(void)
{
	Shop__V1__RpcResponse *resp;

	resp = sign(SIGN_UP, "bob", "password-1");
	CU_ASSERT_EQUAL(resp->code, 0);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	resp = sign(SIGN_UP, "bob ", "password-2");
	CU_ASSERT_EQUAL(resp->code, 6);
	CU_ASSERT_STRING_EQUAL(resp->reason, "NAME_TAKEN");
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_auth_sign_up_validates(void)
{
	static const char *const names[] = {"", "   ",
					    ("a\x01"
					     "b"),
					    "\xff"};
	Shop__V1__RpcResponse *resp;
	char long_pw[200];

	for (size_t i = 0; i < 4; i++) {
		resp = sign(SIGN_UP, names[i], "password-1");
		CU_ASSERT_EQUAL(resp->code, 3);
		CU_ASSERT_STRING_EQUAL(shop_rpc_response_meta(resp, "field"), "name");
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	}
	resp = sign(SIGN_UP, "carol", "short");
	CU_ASSERT_EQUAL(resp->code, 3);
	CU_ASSERT_STRING_EQUAL(shop_rpc_response_meta(resp, "field"), "password");
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	memset(long_pw, 'p', 129);
	long_pw[129] = '\0';
	resp = sign(SIGN_UP, "carol", long_pw);
	CU_ASSERT_EQUAL(resp->code, 3);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_auth_sign_in_right_and_wrong(void)
{
	Shop__V1__RpcResponse *resp;

	resp = sign(SIGN_UP, "dave", "s3cret-pass");
	CU_ASSERT_EQUAL(resp->code, 0);
	shop__v1__rpc_response__free_unpacked(resp, NULL);

	resp = sign(SIGN_IN, "dave", "s3cret-pass");
	CU_ASSERT_EQUAL(resp->code, 0);
	shop__v1__rpc_response__free_unpacked(resp, NULL);

	/* Wrong password and unknown name: the same answer. */
	resp = sign(SIGN_IN, "dave", "wrong-pass");
	CU_ASSERT_EQUAL(resp->code, 16);
	CU_ASSERT_STRING_EQUAL(resp->reason, "INVALID_CREDENTIALS");
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	resp = sign(SIGN_IN, "nobody-here", "s3cret-pass");
	CU_ASSERT_EQUAL(resp->code, 16);
	CU_ASSERT_STRING_EQUAL(resp->reason, "INVALID_CREDENTIALS");
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

/* A hash made with weaker parameters than the current ones is replaced at
 * the next successful sign-in. */
static void test_auth_sign_in_rehashes_weak_hash(void)
{
	char weak[crypto_pwhash_STRBYTES];
	shop_pg *pg = shop_pg_create(H.dsn);
	const char *params[2];
	PGresult *res;

	CU_ASSERT_EQUAL_FATAL(crypto_pwhash_str(weak, "old-password", 12, 1, 8192 * 1024), 0);
	params[0] = "erin";
	params[1] = weak;
	res = shop_pg_query(pg, "INSERT INTO users (name, password_hash) VALUES ($1, $2)", 2,
			    params, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(res);
	PQclear(res);
	Shop__V1__RpcResponse *resp = sign(SIGN_IN, "erin", "old-password");
	CU_ASSERT_EQUAL(resp->code, 0);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	res = shop_pg_query(pg, "SELECT password_hash FROM users WHERE name = $1", 1, params, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(res);
	CU_ASSERT_STRING_NOT_EQUAL(PQgetvalue(res, 0, 0), weak);
	CU_ASSERT_EQUAL(
	    crypto_pwhash_str_needs_rehash(PQgetvalue(res, 0, 0), app.opslimit, app.memlimit), 0);
	PQclear(res);
	shop_pg_destroy(pg);
}

/* Failed sign-ins take tokens; when a bucket is empty the next attempt,
 * right or wrong, answers RESOURCE_EXHAUSTED with retry_after, before any
 * hashing. Another name from another address is not affected. */
static void test_auth_sign_in_throttled_per_name(void)
{
	Shop__V1__SignInRequest req = SHOP__V1__SIGN_IN_REQUEST__INIT;
	Shop__V1__RpcResponse *resp;
	char name[64], addr[64];

	CU_ASSERT_PTR_NOT_NULL_FATAL(getenv("SHOP_TEST_REDIS_ADDR"));
	snprintf(name, sizeof(name), "frank%d", (int)getpid());
	snprintf(addr, sizeof(addr), "10.9.%d.1", (int)getpid() % 250);
	resp = sign(SIGN_UP, name, "frank-password");
	CU_ASSERT_EQUAL(resp->code, 0);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	req.name = name;
	req.client_address = addr;
	req.password = "bad-guess!";
	for (int i = 0; i < 3; i++) {
		resp = call(SIGN_IN, &req.base);
		CU_ASSERT_EQUAL(resp->code, 16);
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	}
	req.password = "frank-password";
	resp = call(SIGN_IN, &req.base);
	CU_ASSERT_EQUAL(resp->code, 8);
	CU_ASSERT_STRING_EQUAL(resp->reason, "TOO_MANY_REQUESTS");
	CU_ASSERT_PTR_NOT_NULL(shop_rpc_response_meta(resp, "retry_after"));
	if (shop_rpc_response_meta(resp, "retry_after") != NULL)
		CU_ASSERT(atoi(shop_rpc_response_meta(resp, "retry_after")) >= 1);
	shop__v1__rpc_response__free_unpacked(resp, NULL);

	/* dave (signed up earlier) from elsewhere still gets in. */
	req.name = "dave";
	req.client_address = "10.8.0.1";
	req.password = "s3cret-pass";
	resp = call(SIGN_IN, &req.base);
	CU_ASSERT_EQUAL(resp->code, 0);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

/* The SQL text of one value, "" when the query fails or finds nothing
 * (buf must hold 256 bytes). */
static const char *sql_value(shop_pg *pg, const char *sql, const char *param, char *buf)
{
	const char *params[1] = {param};
	PGresult *res = shop_pg_query(pg, sql, 1, params, NULL);

	buf[0] = '\0';
	if (res != NULL && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		snprintf(buf, 256, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return buf;
}

/* Column column of user id, "" when NULL. */
static const char *user_value(shop_pg *pg, const char *column, int id, char *buf)
{
	char sql[80], idbuf[16];

	snprintf(sql, sizeof(sql), "SELECT %s FROM users WHERE id = $1", column);
	snprintf(idbuf, sizeof(idbuf), "%d", id);
	return sql_value(pg, sql, idbuf, buf);
}

/* The id auth_store_find_user finds, "" for none (buf holds 256 bytes). */
static const char *found_id(shop_pg *pg, const char *key, const char *exact, char *buf)
{
	PGresult *res = auth_store_find_user(pg, key, exact);

	buf[0] = '\0';
	if (res != NULL && PQntuples(res) == 1)
		snprintf(buf, 256, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return buf;
}

/* After alice: every look-alike of issue 14 is taken or refused, and a
 * name is stored NFC whatever form it came in. */
static void test_auth_look_alikes_are_one_name(void)
{
	static const char *const taken[] = {"ALICE", "\u0430lice", "\uff41lice", "Alice "};
	static const char *const refused[] = {"alice\u200b", "\u202eevil", "al\u200dice"};
	shop_pg *pg = shop_pg_create(H.dsn);
	Shop__V1__RpcResponse *resp;
	const char *field;
	char buf[256];

	/* alice signed up in the first test. */
	for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
		resp = sign(SIGN_UP, taken[i], "password-1");
		CU_ASSERT_EQUAL(resp->code, 6);
		CU_ASSERT_STRING_EQUAL(resp->reason, "NAME_TAKEN");
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	}
	/* Capital I and small l: equal skeletons, though case folding parts
	 * them (i, l). */
	resp = sign(SIGN_UP, "Ivy", "password-1");
	CU_ASSERT_EQUAL(resp->code, 0);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	resp = sign(SIGN_UP, "lvy", "password-1");
	CU_ASSERT_EQUAL(resp->code, 6);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		resp = sign(SIGN_UP, refused[i], "password-1");
		CU_ASSERT_EQUAL(resp->code, 3);
		field = shop_rpc_response_meta(resp, "field");
		CU_ASSERT(field != NULL && strcmp(field, "name") == 0);
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	}
	resp = sign(SIGN_UP, "cafe\u0301", "password-1");
	CU_ASSERT_EQUAL(resp->code, 0);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	resp = sign(SIGN_UP, "caf\u00e9", "password-2");
	CU_ASSERT_EQUAL(resp->code, 6);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	CU_ASSERT_STRING_EQUAL(
	    sql_value(pg, "SELECT count(*) FROM users WHERE name = $1", "caf\u00e9", buf), "1");
	CU_ASSERT_STRING_EQUAL(
	    sql_value(pg, "SELECT count(*) FROM users WHERE name = $1", "cafe\u0301", buf), "0");
	shop_pg_destroy(pg);
}

/* Sign-in goes by the name's key, and answers the name as stored. */
static void test_auth_sign_in_by_key(void)
{
	Shop__V1__RpcResponse *resp;
	Shop__V1__SignInResponse *s;
	static const char *const spellings[][2] = {{"ALICE", "alice"},
						   {"\uff41lice", "alice"},
						   {"caf\u00e9", "caf\u00e9"},
						   {"CAFE\u0301", "caf\u00e9"}};

	for (size_t i = 0; i < 4; i++) {
		resp = sign(SIGN_IN, spellings[i][0], i < 2 ? "correct horse" : "password-1");
		CU_ASSERT_EQUAL(resp->code, 0);
		if (resp->code != 0) {
			shop__v1__rpc_response__free_unpacked(resp, NULL);
			continue;
		}
		s = shop__v1__sign_in_response__unpack(NULL, resp->payload.len, resp->payload.data);
		CU_ASSERT_PTR_NOT_NULL_FATAL(s);
		CU_ASSERT_STRING_EQUAL(s->name, spellings[i][1]);
		shop__v1__sign_in_response__free_unpacked(s, NULL);
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	}
}

/* A database made before names had keys: migration 2 gives every user its
 * keys, oldest first; users that are now the same name as an older one, or
 * whose names break the new rules, keep their rows without keys and still
 * sign in with their exact name; decomposed names become NFC unless that
 * spelling is another user's. */
static void test_auth_migration_keys_existing_users(void)
{
	static const char *const legacy[] = {
	    "alice", "ALICE", "cafe\u0301", "bob\u200b", "\u0430lice", "Zoe\u0308", "caf\u00e9",
	};
	const char *base = getenv("SHOP_TEST_PG_DSN");
	char schema[64], dsn[1100], sql[160], buf[256];
	shop_pg *admin = shop_pg_create(base), *pg;
	PGresult *res;

	CU_ASSERT_PTR_NOT_NULL_FATAL(admin);
	snprintf(schema, sizeof(schema), "it_authup_%d", (int)getpid());
	snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
	CU_ASSERT_EQUAL_FATAL(shop_pg_exec(admin, sql), 0);
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
	CU_ASSERT_EQUAL_FATAL(shop_pg_exec(admin, sql), 0);
	if (strncmp(base, "postgres", 8) == 0)
		snprintf(dsn, sizeof(dsn), "%s%coptions=-csearch_path%%3D%s", base,
			 strchr(base, '?') != NULL ? '&' : '?', schema);
	else
		snprintf(dsn, sizeof(dsn), "%s options=-csearch_path=%s", base, schema);
	pg = shop_pg_create(dsn);
	CU_ASSERT_EQUAL_FATAL(shop_pg_migrate(pg, auth_migrations, 1), 0);
	for (size_t i = 0; i < sizeof(legacy) / sizeof(legacy[0]); i++) {
		const char *params[1] = {legacy[i]};

		res = shop_pg_query(pg, "INSERT INTO users (name, password_hash) VALUES ($1, 'x')",
				    1, params, NULL);
		CU_ASSERT_PTR_NOT_NULL(res);
		PQclear(res);
	}
	CU_ASSERT_EQUAL_FATAL(shop_pg_migrate(pg, auth_migrations, auth_n_migrations), 0);
	CU_ASSERT_STRING_EQUAL(user_value(pg, "name_key", 1, buf), "alice");
	CU_ASSERT_STRING_EQUAL(user_value(pg, "name_key", 2, buf), ""); /* ALICE: alice's name */
	CU_ASSERT_STRING_NOT_EQUAL(user_value(pg, "name_key", 3, buf), ""); /* café, decomposed */
	CU_ASSERT_STRING_EQUAL(user_value(pg, "name", 3, buf), "cafe\u0301"); /* NFC is user 7's */
	CU_ASSERT_STRING_EQUAL(user_value(pg, "name_key", 4, buf), "");       /* zero width */
	CU_ASSERT_STRING_EQUAL(user_value(pg, "name_key", 5, buf), "");       /* Cyrillic а */
	CU_ASSERT_STRING_NOT_EQUAL(user_value(pg, "name_key", 6, buf), "");
	CU_ASSERT_STRING_EQUAL(user_value(pg, "name", 6, buf), "Zo\u00eb"); /* now NFC */
	CU_ASSERT_STRING_EQUAL(user_value(pg, "name_key", 7, buf), "");     /* café again */
	CU_ASSERT_STRING_EQUAL(user_value(pg, "name", 7, buf), "caf\u00e9");
	/* Sign-in's lookup: by key, or by the exact name of a user kept
	 * without keys. */
	CU_ASSERT_STRING_EQUAL(found_id(pg, "alice", "ALICE", buf), "2");
	CU_ASSERT_STRING_EQUAL(found_id(pg, "alice", "Alice", buf), "1");
	CU_ASSERT_STRING_EQUAL(found_id(pg, NULL, "bob\u200b", buf), "4");
	CU_ASSERT_STRING_EQUAL(found_id(pg, NULL, "bob", buf), "");
	/* Migrating again changes nothing. */
	CU_ASSERT_EQUAL(shop_pg_migrate(pg, auth_migrations, auth_n_migrations), 0);
	CU_ASSERT_STRING_EQUAL(user_value(pg, "name_key", 2, buf), "");
	shop_pg_destroy(pg);
	snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", schema);
	shop_pg_exec(admin, sql);
	shop_pg_destroy(admin);
}

#define RACERS 40

static shop_redis *redis_connect(void)
{
	const char *raddr = getenv("SHOP_TEST_REDIS_ADDR");
	char host[64];
	uint16_t port;

	if (raddr == NULL || shop_parse_hostport(raddr, host, sizeof(host), &port) != 0)
		return NULL;
	return shop_redis_create(host, port, 2000);
}

typedef struct racer {
	pthread_barrier_t *start;
	shop_redis *redis; /* the thread's own connection, as each worker has */
	const char *name;
	Shop__V1__SignInRequest *req; /* set: call SignIn instead of the throttle */
	int64_t wait_ms;              /* auth_throttle_take's answer */
	int code;                     /* SignIn's code, -1 on a transport error */
	char retry_after[24];
} racer;

static void *racer_run(void *arg)
{
	racer *r = arg;
	Shop__V1__RpcResponse *resp;
	const char *ra;

	pthread_barrier_wait(r->start);
	if (r->req == NULL) {
		r->wait_ms =
		    auth_throttle_take(r->redis, &app.throttle, r->name, NULL, shop_now_unix_ms());
		return NULL;
	}
	r->code = -1;
	if ((resp = harness_call(SIGN_IN, &r->req->base)) == NULL)
		return NULL;
	r->code = resp->code;
	if ((ra = shop_rpc_response_meta(resp, "retry_after")) != NULL)
		snprintf(r->retry_after, sizeof(r->retry_after), "%s", ra);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	return NULL;
}

/* Runs RACERS threads released together by one barrier. */
static void race(racer *rs)
{
	pthread_t th[RACERS];
	pthread_barrier_t start;

	CU_ASSERT_EQUAL_FATAL(pthread_barrier_init(&start, NULL, RACERS), 0);
	for (int i = 0; i < RACERS; i++) {
		rs[i].start = &start;
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, racer_run, &rs[i]), 0);
	}
	for (int i = 0; i < RACERS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start);
}

/* Many takes at once on one fresh bucket, each thread on its own Redis
 * connection: exactly burst get a token, the others a wait. A refund gives
 * one token back, and refunds never fill a bucket past its burst. */
static void test_auth_throttle_take_is_atomic(void)
{
	racer rs[RACERS] = {0};
	shop_redis *r = redis_connect();
	int granted = 0;
	char name[64];

	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	snprintf(name, sizeof(name), "racer-%d", (int)getpid());
	for (int i = 0; i < RACERS; i++) {
		rs[i].name = name;
		CU_ASSERT_PTR_NOT_NULL_FATAL(rs[i].redis = redis_connect());
	}
	race(rs);
	for (int i = 0; i < RACERS; i++) {
		granted += rs[i].wait_ms == 0;
		CU_ASSERT(rs[i].wait_ms == 0 || rs[i].wait_ms > 1000);
		shop_redis_destroy(rs[i].redis);
	}
	CU_ASSERT_EQUAL(granted, app.throttle.name_burst);
	CU_ASSERT(auth_throttle_take(r, &app.throttle, name, NULL, shop_now_unix_ms()) > 0);
	auth_throttle_refund(r, &app.throttle, name, NULL, shop_now_unix_ms());
	CU_ASSERT_EQUAL(auth_throttle_take(r, &app.throttle, name, NULL, shop_now_unix_ms()), 0);
	CU_ASSERT(auth_throttle_take(r, &app.throttle, name, NULL, shop_now_unix_ms()) > 0);
	for (int i = 0; i < 10; i++)
		auth_throttle_refund(r, &app.throttle, name, NULL, shop_now_unix_ms());
	granted = 0;
	for (int i = 0; i < 10; i++)
		granted +=
		    auth_throttle_take(r, &app.throttle, name, NULL, shop_now_unix_ms()) == 0;
	CU_ASSERT_EQUAL(granted, app.throttle.name_burst);
	CU_ASSERT_TRUE(shop_redis_ok(r));
	shop_redis_destroy(r);
}

/* RACERS wrong passwords for one existing name at once, through the
 * service's workers: exactly burst are checked (UNAUTHENTICATED), every
 * other one is RESOURCE_EXHAUSTED with retry_after. Afterwards the right
 * password is refused too: the bucket is empty. */
static void test_auth_concurrent_wrong_passwords_checked_at_most_burst(void)
{
	Shop__V1__SignInRequest req = SHOP__V1__SIGN_IN_REQUEST__INIT;
	Shop__V1__RpcResponse *resp;
	racer rs[RACERS] = {0};
	int denied = 0, throttled = 0;
	char name[64], addr[64];

	snprintf(name, sizeof(name), "gina%d", (int)getpid());
	snprintf(addr, sizeof(addr), "10.7.%d.1", (int)getpid() % 250);
	resp = sign(SIGN_UP, name, "gina-password");
	CU_ASSERT_EQUAL_FATAL(resp->code, 0);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	req.name = name;
	req.client_address = addr;
	req.password = "bad-guess!";
	for (int i = 0; i < RACERS; i++)
		rs[i].req = &req;
	race(rs);
	for (int i = 0; i < RACERS; i++) {
		denied += rs[i].code == 16;
		if (rs[i].code == 8) {
			throttled++;
			CU_ASSERT(atoi(rs[i].retry_after) >= 1);
		}
	}
	CU_ASSERT_EQUAL(denied, app.throttle.name_burst);
	CU_ASSERT_EQUAL(throttled, RACERS - app.throttle.name_burst);
	req.password = "gina-password";
	resp = call(SIGN_IN, &req.base);
	CU_ASSERT_EQUAL(resp->code, 8);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

/* A successful sign-in gives its token back: burst right passwords in a
 * row, then burst - 1 wrong ones, and the right one still gets in. */
static void test_auth_success_keeps_no_token(void)
{
	Shop__V1__SignInRequest req = SHOP__V1__SIGN_IN_REQUEST__INIT;
	Shop__V1__RpcResponse *resp;
	char name[64], addr[64];

	snprintf(name, sizeof(name), "hank%d", (int)getpid());
	snprintf(addr, sizeof(addr), "10.6.%d.1", (int)getpid() % 250);
	resp = sign(SIGN_UP, name, "hank-password");
	CU_ASSERT_EQUAL_FATAL(resp->code, 0);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	req.name = name;
	req.client_address = addr;
	for (int i = 0; i < 2 * app.throttle.name_burst - 1; i++) {
		int right = i < app.throttle.name_burst;

		req.password = right ? "hank-password" : "bad-guess!";
		resp = call(SIGN_IN, &req.base);
		CU_ASSERT_EQUAL(resp->code, right ? 0 : 16);
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	}
	req.password = "hank-password";
	resp = call(SIGN_IN, &req.base);
	CU_ASSERT_EQUAL(resp->code, 0);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

/* Redis unreachable: the check answers "allowed" within its timeout, and
 * a refund costs nothing. */
static void test_auth_throttle_fails_open_without_redis(void)
{
	shop_redis *dead = shop_redis_create("127.0.0.1", 1, 100);
	int64_t t0 = shop_now_mono_us();

	for (int i = 0; i < 10; i++) {
		CU_ASSERT_EQUAL(
		    auth_throttle_take(dead, &app.throttle, "x", "1.2.3.4", shop_now_unix_ms()), 0);
		auth_throttle_refund(dead, &app.throttle, "x", "1.2.3.4", shop_now_unix_ms());
	}
	CU_ASSERT(shop_now_mono_us() - t0 < 1000 * 1000);
	CU_ASSERT_FALSE(shop_redis_ok(dead));
	shop_redis_destroy(dead);
}

int main(void)
{
	static const shop_test tests[] = {
	    {"sign-up issues a valid token", test_auth_sign_up_issues_a_valid_token},
	    {"name taken", test_auth_name_taken},
	    {"sign-up validates name and password", test_auth_sign_up_validates},
	    {"sign-in right and wrong", test_auth_sign_in_right_and_wrong},
	    {"sign-in re-hashes a weak hash", test_auth_sign_in_rehashes_weak_hash},
	    {"sign-in throttled per name", test_auth_sign_in_throttled_per_name},
	    {"throttle fails open without Redis", test_auth_throttle_fails_open_without_redis},
	    {"look-alikes are one name", test_auth_look_alikes_are_one_name},
	    {"sign-in by the name's key", test_auth_sign_in_by_key},
	    {"migration keys existing users", test_auth_migration_keys_existing_users},
	    {"throttle take is atomic", test_auth_throttle_take_is_atomic},
	    {"concurrent wrong passwords: at most burst checked",
	     test_auth_concurrent_wrong_passwords_checked_at_most_burst},
	    {"a successful sign-in keeps no token", test_auth_success_keeps_no_token},
	};
	auth_hash_gate_config gate = {.concurrency = 2, .max_admitted = 6, .per_client = 3};
	int status;

	if (auth_app_init(&app, (const unsigned char *)key, strlen(key), 2, 19456 * 1024, &gate) !=
	    0)
		return 1;
	app.throttle = (auth_throttle_config){.name_burst = 3,
					      .name_per_token_ms = 60000,
					      .addr_burst = 100,
					      .addr_per_token_ms = 1000};
	if (harness_start("auth", auth_methods, auth_n_methods, auth_migrations, auth_n_migrations,
			  &app, 30000) != 0)
		return 1;
	status = shop_test_run("auth", tests, sizeof(tests) / sizeof(tests[0]));
	harness_stop();
	auth_app_fini(&app);
	return status;
}
