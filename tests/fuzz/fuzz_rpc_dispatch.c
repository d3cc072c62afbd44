/* fuzz_rpc_dispatch.c -- libFuzzer target: the RPC dispatcher
 * (lib/rpc_server.c, shop_rpc_server_handle) with every service's real
 * method table and handlers: svc-product, svc-auth, svc-order.
 *
 * There is no database here. Each call runs either without worker state
 * (worker NULL) or with a worker whose PostgreSQL and Redis connect
 * nowhere (port 1: refused at once), so that every handler meets a store
 * that is down; the order service's product upstream reads a registry
 * view that points nowhere, so that a pick fails at once instead of
 * blocking. svc-auth hashes with the smallest Argon2id cost libsodium
 * allows, so that a sign-up that passes validation costs microseconds.
 *
 * Input: byte 0 bits 0-1 pick the service, bit 2 the worker (none or the
 * unreachable one), bit 3 the form of the rest:
 * - raw: the rest is a serialized RpcRequest, as received from nng;
 * - built: byte 1 picks the method and the caller id, the rest is the
 *   method's payload, wrapped here in a valid RpcRequest.
 * Properties checked: every request gets exactly one reply that unpacks
 * as an RpcResponse, with a known code and, unless OK, a reason; and,
 * with no store reachable, never OK (nothing can succeed without its
 * database) and never INTERNAL (a store that is down is UNAVAILABLE). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_service.h"
#include "log.h"
#include "order_service.h"
#include "product_service.h"
#include "registry_client.h"
#include "rpc_server.h"
#include "service.h"
#include "upstream.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned char JWT_KEY[32] = "fuzz-jwt-key-0123456789abcdefghi";

static auth_app auth;
static order_app order;
static shop_registry_view *view;
static shop_upstream *products;
static shop_service_worker unreachable;
static shop_rpc_server_config cfgs[3];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	auth_hash_gate_config gate = {.concurrency = 1, .max_admitted = 1};
	FILE *devnull = fopen("/dev/null", "w");

	(void)argc;
	(void)argv;
	/* Every refused request logs a line: keep the fuzzer's output for
	 * its own findings. */
	shop_log_init("fuzz", SHOP_LOG_ERROR, devnull != NULL ? devnull : stderr);
	if (auth_app_init(&auth, JWT_KEY, sizeof(JWT_KEY), crypto_pwhash_OPSLIMIT_MIN,
			  crypto_pwhash_MEMLIMIT_MIN, &gate) != 0)
		abort();
	auth.throttle = (auth_throttle_config){.name_burst = 5,
					       .name_per_token_ms = 60000,
					       .addr_burst = 20,
					       .addr_per_token_ms = 3000};
	if (shop_registry_view_create(&view, "tcp://127.0.0.1:1", 1000) != 0 ||
	    shop_upstream_create(&products, view, "fuzz") != 0)
		abort();
	order.products = products;
	order.product_timeout_ms = 100;
	order.cache_ttl_s = 60;
	unreachable.pg = shop_pg_create("host=127.0.0.1 port=1 connect_timeout=1 dbname=fuzz");
	unreachable.redis = shop_redis_create("127.0.0.1", 1, 50);
	if (unreachable.pg == NULL || unreachable.redis == NULL)
		abort();
	cfgs[0] =
	    (shop_rpc_server_config){.methods = product_methods, .n_methods = product_n_methods};
	cfgs[1] = (shop_rpc_server_config){
	    .methods = auth_methods, .n_methods = auth_n_methods, .app = &auth};
	cfgs[2] = (shop_rpc_server_config){
	    .methods = order_methods, .n_methods = order_n_methods, .app = &order};
	return 0;
}

/* A valid RpcRequest for method m around payload (caller frees). */
static uint8_t *build(const shop_rpc_method *m, int64_t caller, const uint8_t *payload, size_t len,
		      size_t *out_len)
{
	Shop__V1__RpcRequest req = SHOP__V1__RPC_REQUEST__INIT;
	uint8_t *buf;

	req.method = (char *)m->name;
	req.payload.data = (uint8_t *)payload;
	req.payload.len = len;
	req.caller_user_id = caller;
	req.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	*out_len = shop__v1__rpc_request__get_packed_size(&req);
	if ((buf = malloc(*out_len + 1)) == NULL)
		return NULL;
	shop__v1__rpc_request__pack(&req, buf);
	return buf;
}

static void check_reply(const uint8_t *out, size_t len)
{
	Shop__V1__RpcResponse *resp = shop__v1__rpc_response__unpack(NULL, len, out);

	if (resp == NULL)
		abort(); /* a reply the caller cannot read */
	if (strcmp(shop_rpc_code_name(resp->code), "UNKNOWN") == 0)
		abort(); /* a code outside the contract */
	if (resp->code == SHOP_RPC_OK || resp->code == SHOP_RPC_INTERNAL)
		abort(); /* success without a store, or a store down taken for a bug */
	if (resp->reason == NULL || resp->reason[0] == '\0')
		abort(); /* every error carries its stable reason */
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const shop_rpc_server_config *cfg;
	uint8_t *req = NULL, *out = NULL;
	size_t req_len, out_len = 0;
	void *worker;

	if (size < 1)
		return 0;
	cfg = &cfgs[(data[0] & 3) % 3];
	worker = (data[0] & 4) ? &unreachable : NULL;
	if (data[0] & 8) {
		const shop_rpc_method *m;

		if (size < 2)
			return 0;
		m = &cfg->methods[data[1] % cfg->n_methods];
		/* Caller 0 (not signed in) or a user id. */
		if ((req = build(m, data[1] >> 4, data + 2, size - 2, &req_len)) == NULL)
			return 0;
	} else if ((req = malloc(size - 1 + 1)) != NULL) {
		memcpy(req, data + 1, size - 1);
		req_len = size - 1;
	} else {
		return 0;
	}
	if (shop_rpc_server_handle(cfg, worker, 0, req, req_len, &out, &out_len) != 0)
		abort(); /* only out of memory may fail */
	check_reply(out, out_len);
	free(out);
	free(req);
	return 0;
}
