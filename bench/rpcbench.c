/* rpcbench.c -- calls one service method over nng as fast as N contexts
 * allow, without the gateway: what a service alone serves, to put the
 * gateway's share of `./shop bench` apart from the service's.
 *
 * Usage: rpcbench URL METHOD PAYLOAD_HEX [CONCURRENCY] [SECONDS] [USER_ID]
 *   rpcbench tcp://127.0.0.1:7221 /shop.v1.OrderService/GetOrder 0801 64 5 1
 * Prints calls/s, p50/p99 in microseconds and the count of failed calls. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "clock.h"
#include "rpc_client.h"

#define MAX_SAMPLES (1 << 22)

static shop_rpc_conn *conn;
static const char *method;
static ProtobufCBinaryData payload;
static int64_t user_id;
static atomic_bool running = true;
static atomic_long ok, failed, n_samples;
static uint32_t *samples; /* latency in µs */

struct one {
	int64_t start_us;
};

static void issue(struct one *o);

/* The payload as an already packed message: a ProtobufCMessage whose
 * descriptor we do not have, so the RpcRequest is packed here by hand. */
static void done(void *arg, int rv, Shop__V1__RpcResponse *resp)
{
	struct one *o = arg;
	long i;

	if (rv == 0 && resp->code == 0)
		atomic_fetch_add(&ok, 1);
	else
		atomic_fetch_add(&failed, 1);
	if (resp != NULL)
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	if ((i = atomic_fetch_add(&n_samples, 1)) < MAX_SAMPLES)
		samples[i] = (uint32_t)(shop_now_mono_us() - o->start_us);
	if (atomic_load(&running))
		issue(o);
}

static void issue(struct one *o)
{
	Shop__V1__RpcRequest env = SHOP__V1__RPC_REQUEST__INIT;
	nng_msg *msg;

	env.method = (char *)method;
	env.payload = payload;
	env.traceparent = "";
	env.deadline_unix_ms = shop_now_unix_ms() + 5000;
	env.caller_user_id = user_id;
	if (nng_msg_alloc(&msg, shop__v1__rpc_request__get_packed_size(&env)) != 0)
		abort();
	shop__v1__rpc_request__pack(&env, nng_msg_body(msg));
	o->start_us = shop_now_mono_us();
	if (shop_rpc_conn_send(conn, msg, env.deadline_unix_ms, done, o) != 0) {
		nng_msg_free(msg);
		atomic_fetch_add(&failed, 1);
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int conc, secs;
	size_t hex_len;
	long n;

	if (argc < 4) {
		fprintf(stderr,
			"usage: %s URL METHOD PAYLOAD_HEX [CONCURRENCY] [SECONDS] [USER_ID]\n",
			argv[0]);
		return 2;
	}
	method = argv[2];
	hex_len = strlen(argv[3]);
	payload.len = hex_len / 2;
	payload.data = malloc(payload.len + 1);
	for (size_t i = 0; i < payload.len; i++)
		sscanf(argv[3] + 2 * i, "%2hhx", &payload.data[i]);
	conc = argc > 4 ? atoi(argv[4]) : 64;
	secs = argc > 5 ? atoi(argv[5]) : 5;
	user_id = argc > 6 ? atoll(argv[6]) : 0;
	samples = calloc(MAX_SAMPLES, sizeof(*samples));
	if (conc < 1 || secs < 1 || samples == NULL ||
	    shop_rpc_conn_create(&conn, argv[1], conc, conc) != 0)
		return 1;
	while (!shop_rpc_conn_is_up(conn))
		nng_msleep(10);

	struct one *ones = calloc((size_t)conc, sizeof(*ones));
	for (int i = 0; i < conc; i++)
		issue(&ones[i]);
	nng_msleep((nng_duration)secs * 1000);
	atomic_store(&running, false);
	nng_msleep(300);
	n = atomic_load(&n_samples);
	if (n > MAX_SAMPLES)
		n = MAX_SAMPLES;
	qsort(samples, (size_t)n, sizeof(*samples), cmp_u32);
	printf("calls/s %.0f  p50 %u us  p99 %u us  ok %ld  failed %ld\n",
	       (double)atomic_load(&ok) / secs, n > 0 ? samples[n / 2] : 0,
	       n > 0 ? samples[n * 99 / 100] : 0, atomic_load(&ok), atomic_load(&failed));
	shop_rpc_conn_destroy(conn);
	free(ones);
	free(samples);
	free(payload.data);
	return 0;
}
