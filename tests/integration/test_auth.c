/* test_auth.c -- the auth service over a real nng socket and a real
 * PostgreSQL (SHOP_TEST_PG_DSN): sign-up, sign-in, tokens, re-hashing. */
#include <string.h>

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
	CU_ASSERT_EQUAL_FATAL(jwt_decode(&jwt, s->access_token, (const unsigned char *)key,
					 (int)strlen(key)),
			      0);
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
	static const char *const names[] = {"", "   ", "a\x01" "b", "\xff"};
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
	CU_ASSERT_EQUAL(crypto_pwhash_str_needs_rehash(PQgetvalue(res, 0, 0), app.opslimit,
						       app.memlimit),
			0);
	PQclear(res);
	shop_pg_destroy(pg);
}

int main(void)
{
	static const shop_test tests[] = {
		{"sign-up issues a valid token", test_auth_sign_up_issues_a_valid_token},
		{"name taken", test_auth_name_taken},
		{"sign-up validates name and password", test_auth_sign_up_validates},
		{"sign-in right and wrong", test_auth_sign_in_right_and_wrong},
		{"sign-in re-hashes a weak hash", test_auth_sign_in_rehashes_weak_hash},
	};
	int status;

	if (auth_app_init(&app, (const unsigned char *)key, strlen(key), 2, 19456 * 1024, 2) != 0)
		return 1;
	if (harness_start("auth", auth_methods, auth_n_methods, auth_migrations, auth_n_migrations,
			  &app, 30000) != 0)
		return 1;
	status = shop_test_run("auth", tests, sizeof(tests) / sizeof(tests[0]));
	harness_stop();
	auth_app_fini(&app);
	return status;
}
