/* test_rpc_nng.c -- lib/rpc_server.c and lib/rpc_client.c over real nng tcp
 * on 127.0.0.1. The tests run in order: the first starts the server the
 * others call, the last stops it. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include "../cunit_main.h"

#include "clock.h"
#include "product.pb-c.h"
#include "rpc_client.h"
#include "rpc_server.h"

#define LIST_METHOD "/shop.v1.ProductService/ListProducts"
#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TRACE_ID    "4bf92f3577b34da6a3ce929d0e0e4736"
#define WORKERS     4

static char url[64];
static char dead_url[64]; /* nothing listens there */
static shop_rpc_server *server;
static int worker_state[WORKERS];
static atomic_int workers_inited, workers_finied, handled;

static void *worker_init(void *app, int index)
{
	(void)app;
	atomic_fetch_add(&workers_inited, 1);
	return &worker_state[index];
}

static void worker_fini(void *app, void *worker)
{
	(void)app;
	if (worker != NULL)
		atomic_fetch_add(&workers_finied, 1);
}

/* page_token "sleep" sleeps page_size ms. Replies with next_page_token
 * "<caller_user_id>:<trace_id>:<worker state ok>". */
static void list_handler(void *app, shop_rpc_call *call, const ProtobufCMessage *req,
			 shop_rpc_reply *reply)
{
	const Shop__V1__ListProductsRequest *r = (const Shop__V1__ListProductsRequest *)req;
	Shop__V1__ListProductsResponse resp = SHOP__V1__LIST_PRODUCTS_RESPONSE__INIT;
	char token[96];

	(void)app;
	atomic_fetch_add(&handled, 1);
	if (strcmp(r->page_token, "sleep") == 0)
		nng_msleep(r->page_size);
	snprintf(token, sizeof(token), "%lld:%s:%d", (long long)call->caller_user_id,
		 call->trace_id, call->worker == &worker_state[call->worker_index]);
	resp.next_page_token = token;
	shop_rpc_reply_ok(reply, &resp.base);
}

static const shop_rpc_method methods[] = {
    {LIST_METHOD, &shop__v1__list_products_request__descriptor, list_handler, SHOP_RPC_BLOCKING},
};

static shop_rpc_call_opts opts_in(int64_t ms)
{
	shop_rpc_call_opts o = {.traceparent = TRACEPARENT, .caller_user_id = 42};

	o.deadline_unix_ms = shop_now_unix_ms() + ms;
	return o;
}

/* Collects async completions: per-call counts and results. */
#define MAX_CALLS 256
static struct {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	int done;
	int count[MAX_CALLS];
	int rv[MAX_CALLS];
	int code[MAX_CALLS];
	bool overloaded[MAX_CALLS]; /* reason OVERLOADED with retry_after */
	int64_t done_us[MAX_CALLS]; /* monotonic, when the callback ran */
} col = {.mtx = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void col_reset(void)
{
	pthread_mutex_lock(&col.mtx);
	col.done = 0;
	memset(col.count, 0, sizeof(col.count));
	memset(col.rv, 0, sizeof(col.rv));
	memset(col.code, 0, sizeof(col.code));
	memset(col.overloaded, 0, sizeof(col.overloaded));
	memset(col.done_us, 0, sizeof(col.done_us));
	pthread_mutex_unlock(&col.mtx);
}

static void col_done(void *arg, int rv, Shop__V1__RpcResponse *resp)
{
	int i = (int)(intptr_t)arg;

	pthread_mutex_lock(&col.mtx);
	col.count[i]++;
	col.rv[i] = rv;
	col.code[i] = resp != NULL ? resp->code : -1;
	col.overloaded[i] = resp != NULL && resp->reason != NULL &&
			    strcmp(resp->reason, "OVERLOADED") == 0 &&
			    shop_rpc_response_meta(resp, "retry_after") != NULL;
	col.done_us[i] = shop_now_mono_us();
	col.done++;
	pthread_cond_broadcast(&col.cv);
	pthread_mutex_unlock(&col.mtx);
	if (resp != NULL)
		shop__v1__rpc_response__free_unpacked(resp, NULL);
}

/* Waits until n completions or ms pass; returns the number seen. */
static int col_wait(int n, int ms)
{
	struct timespec until;
	int done;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&col.mtx);
	while (col.done < n && pthread_cond_timedwait(&col.cv, &col.mtx, &until) == 0)
		;
	done = col.done;
	pthread_mutex_unlock(&col.mtx);
	return done;
}

static int call_list(shop_rpc_conn *c, int i, int32_t page_size, const char *token, int64_t ms)
{
	Shop__V1__ListProductsRequest req = SHOP__V1__LIST_PRODUCTS_REQUEST__INIT;
	shop_rpc_call_opts o = opts_in(ms);

	req.page_size = page_size;
	req.page_token = (char *)token;
	return shop_rpc_conn_call(c, LIST_METHOD, &req.base, &o, col_done, (void *)(intptr_t)i);
}

/* Sends raw bytes on a fresh REQ socket and unpacks the reply. */
static Shop__V1__RpcResponse *raw_call(const void *buf, size_t len)
{
	Shop__V1__RpcResponse *resp = NULL;
	nng_socket s;
	nng_msg *msg = NULL;

	if (nng_req0_open(&s) != 0)
		return NULL;
	if (shop_nng_socket_defaults(s) == 0 && nng_dial(s, url, NULL, 0) == 0 &&
	    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 5000) == 0 &&
	    nng_send(s, (void *)buf, len, 0) == 0 && nng_recvmsg(s, &msg, 0) == 0) {
		resp = shop__v1__rpc_response__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
		nng_msg_free(msg);
	}
	nng_close(s);
	return resp;
}

static void test_rpc_nng_server_starts_with_workers(void)
{
	shop_rpc_server_config cfg = {
	    .url = url,
	    .workers = WORKERS,
	    .methods = methods,
	    .n_methods = 1,
	    .worker_init = worker_init,
	    .worker_fini = worker_fini,
	};
	shop_rpc_server *second = NULL;
	int port = 27000 + (int)(getpid() % 1000);

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
	snprintf(dead_url, sizeof(dead_url), "tcp://127.0.0.1:%d", port + 1000);
	CU_ASSERT_EQUAL_FATAL(shop_rpc_server_create(&server, &cfg), 0);
	/* The same address twice fails and leaves nothing behind. */
	CU_ASSERT_EQUAL(shop_rpc_server_create(&second, &cfg), NNG_EADDRINUSE);
	CU_ASSERT_PTR_NULL(second);
	for (int i = 0; i < 100 && atomic_load(&workers_inited) < WORKERS; i++)
		nng_msleep(10);
	CU_ASSERT_EQUAL(atomic_load(&workers_inited), WORKERS);
}

static void test_rpc_nng_sync_round_trip(void)
{
	Shop__V1__ListProductsRequest req = SHOP__V1__LIST_PRODUCTS_REQUEST__INIT;
	Shop__V1__ListProductsResponse *lr;
	Shop__V1__RpcResponse *resp = NULL;
	shop_rpc_call_opts o = opts_in(5000);
	shop_rpc_conn *c = NULL;

	CU_ASSERT_PTR_NOT_NULL_FATAL(server);
	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, url, 4, 16), 0);
	CU_ASSERT_STRING_EQUAL(shop_rpc_conn_url(c), url);
	CU_ASSERT_EQUAL(shop_rpc_conn_call_sync(c, LIST_METHOD, &req.base, &o, &resp), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	CU_ASSERT_EQUAL(resp->code, 0);
	lr = shop__v1__list_products_response__unpack(NULL, resp->payload.len, resp->payload.data);
	CU_ASSERT_PTR_NOT_NULL(lr);
	if (lr != NULL) {
		CU_ASSERT_STRING_EQUAL(lr->next_page_token, "42:" TRACE_ID ":1");
		shop__v1__list_products_response__free_unpacked(lr, NULL);
	}
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	shop_rpc_conn_destroy(c);
}

static void test_rpc_nng_200_async_calls_complete_once(void)
{
	shop_rpc_conn *c = NULL;
	int accepted = 0;

	col_reset();
	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, url, 8, 1024), 0);
	for (int i = 0; i < 200; i++)
		accepted += call_list(c, i, 2, "sleep", 10000) == 0;
	CU_ASSERT_EQUAL(accepted, 200);
	CU_ASSERT_EQUAL(col_wait(200, 15000), 200);
	nng_msleep(50); /* a second completion would show up by now */
	pthread_mutex_lock(&col.mtx);
	for (int i = 0; i < 200; i++) {
		CU_ASSERT_EQUAL(col.count[i], 1);
		CU_ASSERT_EQUAL(col.rv[i], 0);
		CU_ASSERT_EQUAL(col.code[i], 0);
	}
	CU_ASSERT_EQUAL(col.done, 200);
	pthread_mutex_unlock(&col.mtx);
	shop_rpc_conn_destroy(c);
}

static void test_rpc_nng_full_queue_is_eagain(void)
{
	shop_rpc_conn *c = NULL;

	col_reset();
	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, url, 1, 1), 0);
	CU_ASSERT_EQUAL(call_list(c, 0, 200, "sleep", 5000), 0); /* runs */
	CU_ASSERT_EQUAL(call_list(c, 1, 0, "", 5000), 0);        /* waits */
	CU_ASSERT_EQUAL(call_list(c, 2, 0, "", 5000), NNG_EAGAIN);
	CU_ASSERT_EQUAL(col_wait(2, 5000), 2);
	pthread_mutex_lock(&col.mtx);
	CU_ASSERT_EQUAL(col.rv[0], 0);
	CU_ASSERT_EQUAL(col.rv[1], 0);
	CU_ASSERT_EQUAL(col.count[2], 0); /* refused calls never complete */
	pthread_mutex_unlock(&col.mtx);
	shop_rpc_conn_destroy(c);
}

static void test_rpc_nng_junk_bytes_get_invalid_argument(void)
{
	static const char junk[] = "\xff\xff\xff\xff\x0f not a protobuf";
	Shop__V1__RpcResponse *resp = raw_call(junk, sizeof(junk));

	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	CU_ASSERT_EQUAL(resp->code, 3);
	CU_ASSERT_STRING_EQUAL(resp->reason, "MALFORMED_REQUEST");
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_rpc_nng_unknown_method_is_unimplemented(void)
{
	Shop__V1__ListProductsRequest req = SHOP__V1__LIST_PRODUCTS_REQUEST__INIT;
	Shop__V1__RpcResponse *resp = NULL;
	shop_rpc_call_opts o = opts_in(5000);
	shop_rpc_conn *c = NULL;

	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, url, 2, 2), 0);
	CU_ASSERT_EQUAL(shop_rpc_conn_call_sync(c, "/shop.v1.Nope/Nope", &req.base, &o, &resp), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	CU_ASSERT_EQUAL(resp->code, 12);
	CU_ASSERT_STRING_EQUAL(resp->reason, "UNIMPLEMENTED");
	shop__v1__rpc_response__free_unpacked(resp, NULL);
	shop_rpc_conn_destroy(c);
}

static void test_rpc_nng_passed_deadline_is_deadline_exceeded(void)
{
	Shop__V1__RpcRequest env = SHOP__V1__RPC_REQUEST__INIT;
	Shop__V1__RpcResponse *resp;
	int before = atomic_load(&handled);
	uint8_t buf[128];
	size_t len;

	env.method = LIST_METHOD;
	env.deadline_unix_ms = shop_now_unix_ms() - 1000;
	len = shop__v1__rpc_request__pack(&env, buf);
	resp = raw_call(buf, len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
	CU_ASSERT_EQUAL(resp->code, 4);
	CU_ASSERT_STRING_EQUAL(resp->reason, "DEADLINE_EXCEEDED");
	CU_ASSERT_EQUAL(atomic_load(&handled), before);
	shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void test_rpc_nng_client_passed_deadline_fails_without_sending(void)
{
	int before = atomic_load(&handled);
	shop_rpc_conn *c = NULL;

	col_reset();
	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, url, 1, 1), 0);
	CU_ASSERT_EQUAL(call_list(c, 0, 0, "", -10), 0);
	CU_ASSERT_EQUAL(col_wait(1, 2000), 1);
	nng_msleep(100);
	pthread_mutex_lock(&col.mtx);
	CU_ASSERT_EQUAL(col.count[0], 1);
	CU_ASSERT_EQUAL(col.rv[0], NNG_ETIMEDOUT);
	pthread_mutex_unlock(&col.mtx);
	CU_ASSERT_EQUAL(atomic_load(&handled), before);
	shop_rpc_conn_destroy(c);
}

static void test_rpc_nng_slow_server_times_out_once(void)
{
	shop_rpc_conn *c = NULL;
	int64_t t0, elapsed;

	col_reset();
	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, url, 2, 2), 0);
	t0 = shop_now_mono_us();
	CU_ASSERT_EQUAL(call_list(c, 0, 600, "sleep", 200), 0);
	CU_ASSERT_EQUAL(col_wait(1, 3000), 1);
	elapsed = (shop_now_mono_us() - t0) / 1000;
	CU_ASSERT(elapsed >= 150 && elapsed < 550);
	nng_msleep(700); /* the late reply arrives and must be dropped */
	pthread_mutex_lock(&col.mtx);
	CU_ASSERT_EQUAL(col.count[0], 1);
	CU_ASSERT_EQUAL(col.rv[0], NNG_ETIMEDOUT);
	pthread_mutex_unlock(&col.mtx);
	/* The slot is reusable after the abandoned request. */
	CU_ASSERT_EQUAL(call_list(c, 1, 0, "", 3000), 0);
	CU_ASSERT_EQUAL(col_wait(2, 3000), 2);
	pthread_mutex_lock(&col.mtx);
	CU_ASSERT_EQUAL(col.rv[1], 0);
	pthread_mutex_unlock(&col.mtx);
	shop_rpc_conn_destroy(c);
}

/* nng 1.5.2: a zero sleep on an aio sets its a_expire_ok flag for good, so a
 * later receive timeout on that aio "succeeds" with no message (the gateway
 * crashed on it) and a send timeout "succeeds" unsent. A slot's expired-call
 * sleep must never make its next call lie: pool 1, so both calls use the
 * one slot. */
static void test_rpc_nng_after_an_expired_call_a_receive_timeout_is_etimedout(void)
{
	shop_rpc_conn *c = NULL;

	col_reset();
	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, url, 1, 1), 0);
	CU_ASSERT_EQUAL(call_list(c, 0, 0, "", -10), 0);
	CU_ASSERT_EQUAL(col_wait(1, 2000), 1);
	/* The server sleeps 600 ms: the receive times out at 200. */
	CU_ASSERT_EQUAL(call_list(c, 1, 600, "sleep", 200), 0);
	CU_ASSERT_EQUAL(col_wait(2, 3000), 2);
	pthread_mutex_lock(&col.mtx);
	CU_ASSERT_EQUAL(col.rv[0], NNG_ETIMEDOUT);
	CU_ASSERT_EQUAL(col.count[1], 1);
	CU_ASSERT_EQUAL(col.rv[1], NNG_ETIMEDOUT);
	pthread_mutex_unlock(&col.mtx);
	nng_msleep(500); /* the late reply arrives and is dropped */
	CU_ASSERT_EQUAL(call_list(c, 2, 0, "", 3000), 0);
	CU_ASSERT_EQUAL(col_wait(3, 3000), 3);
	pthread_mutex_lock(&col.mtx);
	CU_ASSERT_EQUAL(col.rv[2], 0);
	CU_ASSERT_EQUAL(col.code[2], 0);
	pthread_mutex_unlock(&col.mtx);
	shop_rpc_conn_destroy(c);
}

/* The same for a send that cannot go out (nothing listens): NNG_ETIMEDOUT,
 * never a "sent" call that then waits for a reply. */
static void test_rpc_nng_after_an_expired_call_a_send_timeout_is_etimedout(void)
{
	shop_rpc_conn *c = NULL;
	int64_t t0, elapsed;

	col_reset();
	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, dead_url, 1, 1), 0);
	CU_ASSERT_EQUAL(call_list(c, 0, 0, "", -10), 0);
	CU_ASSERT_EQUAL(col_wait(1, 2000), 1);
	t0 = shop_now_mono_us();
	CU_ASSERT_EQUAL(call_list(c, 1, 0, "", 300), 0);
	CU_ASSERT_EQUAL(col_wait(2, 3000), 2);
	elapsed = (shop_now_mono_us() - t0) / 1000;
	CU_ASSERT(elapsed >= 250 && elapsed < 1500);
	pthread_mutex_lock(&col.mtx);
	CU_ASSERT_EQUAL(col.count[1], 1);
	CU_ASSERT_EQUAL(col.rv[1], NNG_ETIMEDOUT);
	pthread_mutex_unlock(&col.mtx);
	shop_rpc_conn_destroy(c);
}

static void test_rpc_nng_no_server_times_out(void)
{
	Shop__V1__ListProductsRequest req = SHOP__V1__LIST_PRODUCTS_REQUEST__INIT;
	Shop__V1__RpcResponse *resp = NULL;
	shop_rpc_call_opts o = opts_in(300);
	shop_rpc_conn *c = NULL;

	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, dead_url, 2, 2), 0);
	CU_ASSERT_EQUAL(shop_rpc_conn_call_sync(c, LIST_METHOD, &req.base, &o, &resp),
			NNG_ETIMEDOUT);
	CU_ASSERT_PTR_NULL(resp);
	shop_rpc_conn_destroy(c);
}

static void test_rpc_nng_destroy_fails_calls_in_flight(void)
{
	shop_rpc_conn *c = NULL;
	int accepted = 0;

	col_reset();
	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, url, 2, 10), 0);
	for (int i = 0; i < 8; i++)
		accepted += call_list(c, i, 400, "sleep", 5000) == 0;
	CU_ASSERT_EQUAL(accepted, 8);
	nng_msleep(50); /* two are on the wire, six wait */
	shop_rpc_conn_destroy(c);
	/* destroy returns only after every callback ran. */
	pthread_mutex_lock(&col.mtx);
	CU_ASSERT_EQUAL(col.done, 8);
	for (int i = 0; i < 8; i++) {
		CU_ASSERT_EQUAL(col.count[i], 1);
		CU_ASSERT_EQUAL(col.rv[i], NNG_ECLOSED);
	}
	pthread_mutex_unlock(&col.mtx);
	nng_msleep(500); /* let the server finish the two slow calls */
}

static void test_rpc_nng_server_destroy_drains_calls_in_flight(void)
{
	shop_rpc_conn *c = NULL;
	int64_t t0;

	col_reset();
	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, url, 2, 2), 0);
	CU_ASSERT_EQUAL(call_list(c, 0, 300, "sleep", 5000), 0);
	nng_msleep(100); /* in the handler now */
	t0 = shop_now_mono_us();
	shop_rpc_server_destroy(server, 3000);
	server = NULL;
	CU_ASSERT((shop_now_mono_us() - t0) / 1000 < 2000);
	CU_ASSERT_EQUAL(col_wait(1, 3000), 1);
	pthread_mutex_lock(&col.mtx);
	CU_ASSERT_EQUAL(col.rv[0], 0);
	CU_ASSERT_EQUAL(col.code[0], 0);
	pthread_mutex_unlock(&col.mtx);
	CU_ASSERT_EQUAL(atomic_load(&workers_finied), WORKERS);
	shop_rpc_conn_destroy(c);
	shop_rpc_server_destroy(NULL, 0);
	shop_rpc_conn_destroy(NULL);
}

/* A plain UNIX socket listener that accepts and at once closes every
 * connection: the peer of a process killed just as it accepted. */
struct slammer {
	int fd;
	atomic_int accepted;
	pthread_t thread;
};

static void *slammer_main(void *arg)
{
	struct slammer *sl = arg;
	int fd;

	while ((fd = accept(sl->fd, NULL, NULL)) >= 0) {
		atomic_fetch_add(&sl->accepted, 1);
		close(fd);
	}
	return NULL; /* shutdown() ends accept */
}

/* nng 1.5.2's dialer stops for good when the peer closed the connection
 * before the SP handshake was written (EPIPE read as NNG_ECLOSED;
 * tests/nng_bugs/dialer_gives_up.c). The connection's dial keeper replaces
 * such a dialer: it goes on dialing, and connects once a server listens. */
static void test_rpc_nng_dials_again_after_a_peer_closed_during_the_handshake(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct slammer sl = {.fd = -1};
	shop_rpc_server_config cfg = {.workers = 1, .methods = methods, .n_methods = 1};
	Shop__V1__ListProductsRequest req = SHOP__V1__LIST_PRODUCTS_REQUEST__INIT;
	Shop__V1__RpcResponse *resp = NULL;
	shop_rpc_call_opts o;
	shop_rpc_server *srv = NULL;
	shop_rpc_conn *c = NULL;
	char ipc_url[sizeof(sa.sun_path) + 8];
	int64_t t0;
	int n;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/shop-rpctest-%d-slam.ipc", (int)getpid());
	snprintf(ipc_url, sizeof(ipc_url), "ipc://%s", sa.sun_path);
	unlink(sa.sun_path);
	CU_ASSERT_FATAL((sl.fd = socket(AF_UNIX, SOCK_STREAM, 0)) >= 0);
	CU_ASSERT_FATAL(bind(sl.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CU_ASSERT_FATAL(listen(sl.fd, 16) == 0);
	CU_ASSERT_FATAL(pthread_create(&sl.thread, NULL, slammer_main, &sl) == 0);
	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, ipc_url, 2, 4), 0);
	/* A bare nng dialer is dead after its first such connection. */
	nng_msleep(2500);
	n = atomic_load(&sl.accepted);
	printf("\n    %d connections closed by the peer in 2.5 s ", n);
	CU_ASSERT(n >= 2);
	shutdown(sl.fd, SHUT_RDWR);
	pthread_join(sl.thread, NULL);
	close(sl.fd);
	unlink(sa.sun_path);

	cfg.url = ipc_url;
	CU_ASSERT_EQUAL_FATAL(shop_rpc_server_create(&srv, &cfg), 0);
	t0 = shop_now_mono_us();
	while (!shop_rpc_conn_is_up(c) && shop_now_mono_us() - t0 < 3000000)
		nng_msleep(10);
	printf("up %lld ms after the server started ", (long long)(shop_now_mono_us() - t0) / 1000);
	CU_ASSERT(shop_rpc_conn_is_up(c));
	o = opts_in(3000);
	CU_ASSERT_EQUAL(shop_rpc_conn_call_sync(c, LIST_METHOD, &req.base, &o, &resp), 0);
	CU_ASSERT(resp != NULL && resp->code == 0);
	if (resp != NULL)
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	shop_rpc_conn_destroy(c);
	shop_rpc_server_destroy(srv, 1000);
}

/* A server of its own on an ipc address: 1 worker, at most 2 calls in hand.
 * Of 8 slow calls at once, the 2 admitted complete; the 6 beyond the bound
 * are answered RESOURCE_EXHAUSTED/OVERLOADED with retry_after at once, not
 * after the slow ones (without admission they waited in nng: 8 × 300 ms). */
static void test_rpc_nng_beyond_max_inflight_is_resource_exhausted_at_once(void)
{
	shop_rpc_server_config cfg = {
	    .workers = 1, .max_inflight = 2, .methods = methods, .n_methods = 1};
	shop_rpc_server *srv = NULL;
	shop_rpc_conn *c = NULL;
	char ipc_url[96];
	int64_t t0, slowest_shed_ms = 0;
	int ok = 0, shed = 0, accepted = 0;

	snprintf(ipc_url, sizeof(ipc_url), "ipc:///tmp/shop-rpctest-%d-shed.ipc", (int)getpid());
	cfg.url = ipc_url;
	CU_ASSERT_EQUAL_FATAL(shop_rpc_server_create(&srv, &cfg), 0);
	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, ipc_url, 8, 8), 0);
	t0 = shop_now_mono_us();
	while (!shop_rpc_conn_is_up(c) && shop_now_mono_us() - t0 < 3000000)
		nng_msleep(5);
	col_reset();
	t0 = shop_now_mono_us();
	for (int i = 0; i < 8; i++)
		accepted += call_list(c, i, 300, "sleep", 5000) == 0;
	CU_ASSERT_EQUAL(accepted, 8);
	CU_ASSERT_EQUAL(col_wait(8, 4000), 8);
	pthread_mutex_lock(&col.mtx);
	for (int i = 0; i < 8; i++) {
		int64_t ms = (col.done_us[i] - t0) / 1000;

		CU_ASSERT_EQUAL(col.count[i], 1);
		CU_ASSERT_EQUAL(col.rv[i], 0);
		if (col.code[i] == SHOP_RPC_OK) {
			ok++;
		} else if (col.code[i] == SHOP_RPC_RESOURCE_EXHAUSTED && col.overloaded[i]) {
			shed++;
			if (ms > slowest_shed_ms)
				slowest_shed_ms = ms;
		}
	}
	pthread_mutex_unlock(&col.mtx);
	printf("\n    %d completed, %d shed, the slowest shed in %lld ms ", ok, shed,
	       (long long)slowest_shed_ms);
	CU_ASSERT_EQUAL(ok, 2);
	CU_ASSERT_EQUAL(shed, 6);
	CU_ASSERT(slowest_shed_ms < 150); /* the first slow call takes 300 */
	shop_rpc_conn_destroy(c);
	shop_rpc_server_destroy(srv, 1000);
}

/* Destroy with calls queued behind a busy worker: within the grace every
 * admitted call is handled and answered (the drain takes the queue). */
static void test_rpc_nng_server_destroy_answers_queued_calls(void)
{
	shop_rpc_server_config cfg = {
	    .workers = 1, .max_inflight = 4, .methods = methods, .n_methods = 1};
	shop_rpc_server *srv = NULL;
	shop_rpc_conn *c = NULL;
	char ipc_url[96];
	int64_t t0;

	snprintf(ipc_url, sizeof(ipc_url), "ipc:///tmp/shop-rpctest-%d-drain.ipc", (int)getpid());
	cfg.url = ipc_url;
	CU_ASSERT_EQUAL_FATAL(shop_rpc_server_create(&srv, &cfg), 0);
	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, ipc_url, 4, 4), 0);
	t0 = shop_now_mono_us();
	while (!shop_rpc_conn_is_up(c) && shop_now_mono_us() - t0 < 3000000)
		nng_msleep(5);
	col_reset();
	for (int i = 0; i < 4; i++)
		CU_ASSERT_EQUAL(call_list(c, i, 150, "sleep", 5000), 0);
	nng_msleep(50); /* one in the handler, three queued */
	shop_rpc_server_destroy(srv, 3000);
	CU_ASSERT_EQUAL(col_wait(4, 3000), 4);
	pthread_mutex_lock(&col.mtx);
	for (int i = 0; i < 4; i++) {
		CU_ASSERT_EQUAL(col.rv[i], 0);
		CU_ASSERT_EQUAL(col.code[i], SHOP_RPC_OK);
	}
	pthread_mutex_unlock(&col.mtx);
	shop_rpc_conn_destroy(c);
}

/* Destroy with a grace shorter than the queue: destroy returns after the
 * grace and the running handler, the calls still queued are freed with the
 * socket (LeakSanitizer checks), and every caller hears exactly once. */
static void test_rpc_nng_server_destroy_past_the_grace_frees_queued_calls(void)
{
	shop_rpc_server_config cfg = {
	    .workers = 1, .max_inflight = 6, .methods = methods, .n_methods = 1};
	shop_rpc_server *srv = NULL;
	shop_rpc_conn *c = NULL;
	char ipc_url[96];
	int64_t t0, ms;

	snprintf(ipc_url, sizeof(ipc_url), "ipc:///tmp/shop-rpctest-%d-grace.ipc", (int)getpid());
	cfg.url = ipc_url;
	CU_ASSERT_EQUAL_FATAL(shop_rpc_server_create(&srv, &cfg), 0);
	CU_ASSERT_EQUAL_FATAL(shop_rpc_conn_create(&c, ipc_url, 6, 6), 0);
	t0 = shop_now_mono_us();
	while (!shop_rpc_conn_is_up(c) && shop_now_mono_us() - t0 < 3000000)
		nng_msleep(5);
	col_reset();
	for (int i = 0; i < 6; i++)
		CU_ASSERT_EQUAL(call_list(c, i, 200, "sleep", 1000), 0);
	nng_msleep(50);
	t0 = shop_now_mono_us();
	shop_rpc_server_destroy(srv, 100);
	ms = (shop_now_mono_us() - t0) / 1000;
	printf("\n    destroy took %lld ms ", (long long)ms);
	CU_ASSERT(ms < 600);
	CU_ASSERT_EQUAL(col_wait(6, 3000), 6);
	shop_rpc_conn_destroy(c);
	pthread_mutex_lock(&col.mtx);
	for (int i = 0; i < 6; i++)
		CU_ASSERT_EQUAL(col.count[i], 1);
	pthread_mutex_unlock(&col.mtx);
}

/* ---- the callback runtime: ASYNC and INLINE handlers ------------------- */

#define ASYNC_METHOD "/shop.v1.ProductService/GetProducts"
#define HELD_METHOD  "/shop.v1.ProductService/CreateProduct"

/* An ASYNC call completed later by a thread of the test's own. */
struct later {
	shop_rpc_call *call;
	shop_rpc_reply *reply;
	int ms;
	bool defer;
};

static void deferred_handler(void *app, shop_rpc_call *call, const ProtobufCMessage *req,
			     shop_rpc_reply *reply)
{
	Shop__V1__GetProductsResponse resp = SHOP__V1__GET_PRODUCTS_RESPONSE__INIT;

	(void)app;
	(void)req;
	/* On a worker: its state is there. */
	if (call->worker != NULL && call->worker_index >= 0)
		shop_rpc_reply_ok(reply, &resp.base);
	else
		shop_rpc_reply_error(reply, SHOP_RPC_INTERNAL, "NO_WORKER",
				     "deferred off a worker");
}

static void *later_main(void *arg)
{
	struct later *l = arg;
	Shop__V1__GetProductsResponse resp = SHOP__V1__GET_PRODUCTS_RESPONSE__INIT;

	nng_msleep(l->ms);
	if (l->defer) {
		shop_rpc_call_defer(l->call, deferred_handler);
	} else {
		shop_rpc_reply_ok(l->reply, &resp.base);
		shop_rpc_call_done(l->call);
	}
	free(l);
	return NULL;
}

/* ids[0]: milliseconds until a thread of the test completes the call;
 * ids[1] == 1: that thread defers it to a worker instead. */
static void async_handler(void *app, shop_rpc_call *call, const ProtobufCMessage *req,
			  shop_rpc_reply *reply)
{
	const Shop__V1__GetProductsRequest *r = (const Shop__V1__GetProductsRequest *)req;
	struct later *l = calloc(1, sizeof(*l));
	pthread_t t;

	(void)app;
	if (l == NULL)
		abort();
	l->call = call;
	l->reply = reply;
	l->ms = r->n_ids > 0 ? (int)r->ids[0] : 0;
	l->defer = r->n_ids > 1 && r->ids[1] == 1;
	if (pthread_create(&t, NULL, later_main, l) != 0)
		abort();
	pthread_detach(t);
}

/* Held calls: completed only when the test releases them. */
static pthread_mutex_t held_mtx = PTHREAD_MUTEX_INITIALIZER;
static shop_rpc_call *held[16];
static int n_held;

static void held_handler(void *app, shop_rpc_call *call, const ProtobufCMessage *req,
			 shop_rpc_reply *reply)
{
	(void)app;
	(void)req;
	(void)reply;
	pthread_mutex_lock(&held_mtx);
	if (n_held < 16)
		held[n_held++] = call;
	pthread_mutex_unlock(&held_mtx);
}

static int held_count(void)
{
	int n;

	pthread_mutex_lock(&held_mtx);
	n = n_held;
	pthread_mutex_unlock(&held_mtx);
	return n;
}

/* Completes every held call (OK, empty payload), from the test's thread. */
static void held_release(void)
{
	pthread_mutex_lock(&held_mtx);
	for (int i = 0; i < n_held; i++)
		shop_rpc_call_done(held[i]);
	n_held = 0;
	pthread_mutex_unlock(&held_mtx);
}

static void *held_release_later(void *arg)
{
	(void)arg;
	nng_msleep(300);
	held_release();
	return NULL;
}

static const shop_rpc_method async_methods[] = {
    {LIST_METHOD, &shop__v1__list_products_request__descriptor, list_handler, SHOP_RPC_BLOCKING},
    {ASYNC_METHOD, &shop__v1__get_products_request__descriptor, async_handler, SHOP_RPC_ASYNC},
    {HELD_METHOD, &shop__v1__create_product_request__descriptor, held_handler, SHOP_RPC_ASYNC},
};

static int call_async(shop_rpc_conn *c, int i, int64_t ms, int64_t defer)
{
	Shop__V1__GetProductsRequest req = SHOP__V1__GET_PRODUCTS_REQUEST__INIT;
	shop_rpc_call_opts o = opts_in(5000);
	int64_t ids[2] = {ms, defer};

	req.n_ids = 2;
	req.ids = ids;
	return shop_rpc_conn_call(c, ASYNC_METHOD, &req.base, &o, col_done, (void *)(intptr_t)i);
}

static int call_held(shop_rpc_conn *c, int i)
{
	Shop__V1__CreateProductRequest req = SHOP__V1__CREATE_PRODUCT_REQUEST__INIT;
	shop_rpc_call_opts o = opts_in(5000);

	return shop_rpc_conn_call(c, HELD_METHOD, &req.base, &o, col_done, (void *)(intptr_t)i);
}

static int call_unknown(shop_rpc_conn *c, int i)
{
	Shop__V1__ListProductsRequest req = SHOP__V1__LIST_PRODUCTS_REQUEST__INIT;
	shop_rpc_call_opts o = opts_in(5000);

	return shop_rpc_conn_call(c, "/shop.v1.Nope/Nope", &req.base, &o, col_done,
				  (void *)(intptr_t)i);
}

/* Calls 0..n-1 completed once each, answered OK. */
static void col_assert_all_ok(int n)
{
	pthread_mutex_lock(&col.mtx);
	for (int i = 0; i < n; i++) {
		CU_ASSERT_EQUAL(col.count[i], 1);
		CU_ASSERT_EQUAL(col.rv[i], 0);
		CU_ASSERT_EQUAL(col.code[i], SHOP_RPC_OK);
	}
	pthread_mutex_unlock(&col.mtx);
}

static void *async_worker_init(void *app, int index)
{
	static int state;

	(void)app;
	(void)index;
	return &state;
}

static shop_rpc_server *async_server(const char *tag, int max_inflight, shop_rpc_conn **c,
				     char *ipc_url, size_t cap)
{
	shop_rpc_server_config cfg = {.workers = 1,
				      .max_inflight = max_inflight,
				      .methods = async_methods,
				      .n_methods = 3,
				      .worker_init = async_worker_init};
	shop_rpc_server *srv = NULL;
	int64_t t0;

	snprintf(ipc_url, cap, "ipc:///tmp/shop-rpctest-%d-%s.ipc", (int)getpid(), tag);
	cfg.url = ipc_url;
	if (shop_rpc_server_create(&srv, &cfg) != 0 ||
	    shop_rpc_conn_create(c, ipc_url, 16, 16) != 0)
		return srv;
	t0 = shop_now_mono_us();
	while (!shop_rpc_conn_is_up(*c) && shop_now_mono_us() - t0 < 3000000)
		nng_msleep(5);
	return srv;
}

/* With the only worker in a 300 ms handler, what needs no worker is
 * answered at once from the callbacks: an unknown method, and ASYNC calls
 * completed 20 ms later by another thread. The old server queued them all
 * behind the worker (answered after ~300 ms). */
static void test_rpc_nng_busy_workers_do_not_hold_async_or_unknown_calls(void)
{
	shop_rpc_conn *c = NULL;
	shop_rpc_server *srv;
	char ipc_url[96];
	int64_t t0, slowest = 0;

	col_reset();
	srv = async_server("busy", 16, &c, ipc_url, sizeof(ipc_url));
	CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(call_list(c, 0, 300, "sleep", 5000), 0);
	nng_msleep(30); /* the worker is in it */
	t0 = shop_now_mono_us();
	for (int i = 1; i <= 4; i++)
		CU_ASSERT_EQUAL(call_async(c, i, 20, 0), 0);
	for (int i = 5; i <= 8; i++)
		CU_ASSERT_EQUAL(call_unknown(c, i), 0);
	CU_ASSERT_EQUAL(col_wait(9, 3000), 9);
	pthread_mutex_lock(&col.mtx);
	for (int i = 1; i <= 8; i++) {
		int64_t ms = (col.done_us[i] - t0) / 1000;

		CU_ASSERT_EQUAL(col.count[i], 1);
		CU_ASSERT_EQUAL(col.rv[i], 0);
		CU_ASSERT_EQUAL(col.code[i], i <= 4 ? SHOP_RPC_OK : SHOP_RPC_UNIMPLEMENTED);
		if (ms > slowest)
			slowest = ms;
	}
	CU_ASSERT_EQUAL(col.code[0], SHOP_RPC_OK);
	pthread_mutex_unlock(&col.mtx);
	printf("\n    the slowest of 8 answered in %lld ms beside a busy worker ",
	       (long long)slowest);
	CU_ASSERT(slowest < 200);
	shop_rpc_conn_destroy(c);
	shop_rpc_server_destroy(srv, 1000);
}

/* An ASYNC call deferred from another thread runs on a worker, with the
 * worker's state, and is answered. */
static void test_rpc_nng_async_call_deferred_from_another_thread_runs_on_a_worker(void)
{
	shop_rpc_conn *c = NULL;
	shop_rpc_server *srv;
	char ipc_url[96];

	col_reset();
	srv = async_server("defer", 16, &c, ipc_url, sizeof(ipc_url));
	CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	for (int i = 0; i < 6; i++)
		CU_ASSERT_EQUAL(call_async(c, i, 10 * i, 1), 0);
	CU_ASSERT_EQUAL(col_wait(6, 3000), 6);
	col_assert_all_ok(6);
	shop_rpc_conn_destroy(c);
	shop_rpc_server_destroy(srv, 1000);
}

/* ASYNC calls count against max_inflight until completed: with 2 held,
 * 6 more are shed at once; once released, the 2 answer OK. */
static void test_rpc_nng_pending_async_calls_count_against_the_bound(void)
{
	shop_rpc_conn *c = NULL;
	shop_rpc_server *srv;
	char ipc_url[96];
	int ok = 0, shed = 0;

	col_reset();
	srv = async_server("heldshed", 2, &c, ipc_url, sizeof(ipc_url));
	CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	for (int i = 0; i < 2; i++)
		CU_ASSERT_EQUAL(call_held(c, i), 0);
	for (int i = 0; i < 100 && held_count() < 2; i++)
		nng_msleep(5);
	CU_ASSERT_EQUAL(held_count(), 2);
	for (int i = 2; i < 8; i++)
		CU_ASSERT_EQUAL(call_held(c, i), 0);
	CU_ASSERT_EQUAL(col_wait(6, 2000), 6);
	CU_ASSERT_EQUAL(held_count(), 2);
	held_release();
	CU_ASSERT_EQUAL(col_wait(8, 2000), 8);
	pthread_mutex_lock(&col.mtx);
	for (int i = 0; i < 8; i++) {
		CU_ASSERT_EQUAL(col.count[i], 1);
		ok += col.code[i] == SHOP_RPC_OK;
		shed += col.code[i] == SHOP_RPC_RESOURCE_EXHAUSTED && col.overloaded[i];
	}
	pthread_mutex_unlock(&col.mtx);
	CU_ASSERT_EQUAL(ok, 2);
	CU_ASSERT_EQUAL(shed, 6);
	shop_rpc_conn_destroy(c);
	shop_rpc_server_destroy(srv, 1000);
}

/* Destroy with ASYNC calls pending: they are completed (150 ms later, by
 * other threads) within the grace, and answered. */
static void test_rpc_nng_server_destroy_answers_pending_async_calls(void)
{
	shop_rpc_conn *c = NULL;
	shop_rpc_server *srv;
	char ipc_url[96];
	int64_t t0, ms;

	col_reset();
	srv = async_server("asyncdrain", 16, &c, ipc_url, sizeof(ipc_url));
	CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	for (int i = 0; i < 4; i++)
		CU_ASSERT_EQUAL(call_async(c, i, 150, i % 2), 0);
	nng_msleep(30);
	t0 = shop_now_mono_us();
	shop_rpc_server_destroy(srv, 3000);
	ms = (shop_now_mono_us() - t0) / 1000;
	CU_ASSERT_EQUAL(col_wait(4, 3000), 4);
	col_assert_all_ok(4);
	printf("\n    destroy took %lld ms ", (long long)ms);
	CU_ASSERT(ms >= 90 && ms < 1000);
	shop_rpc_conn_destroy(c);
}

/* Past the grace, a held ASYNC call is waited for (its memory is the
 * server's) and its late completion sends nothing. */
static void test_rpc_nng_server_destroy_past_the_grace_waits_for_held_calls(void)
{
	shop_rpc_conn *c = NULL;
	shop_rpc_server *srv;
	char ipc_url[96];
	pthread_t t;

	col_reset();
	srv = async_server("heldgrace", 16, &c, ipc_url, sizeof(ipc_url));
	CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(call_held(c, 0), 0);
	for (int i = 0; i < 100 && held_count() < 1; i++)
		nng_msleep(5);
	CU_ASSERT_EQUAL_FATAL(held_count(), 1);
	/* Released 300 ms from now, past the 50 ms grace. */
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, held_release_later, NULL), 0);
	shop_rpc_server_destroy(srv, 50);
	CU_ASSERT_EQUAL(held_count(), 0);
	pthread_join(t, NULL);
	shop_rpc_conn_destroy(c); /* the call fails: ECLOSED */
	pthread_mutex_lock(&col.mtx);
	CU_ASSERT_EQUAL(col.count[0], 1);
	CU_ASSERT_NOT_EQUAL(col.code[0], SHOP_RPC_OK);
	pthread_mutex_unlock(&col.mtx);
}

SHOP_TEST_MAIN(
    "rpc_nng", {"server starts with its workers", test_rpc_nng_server_starts_with_workers},
    {"sync round trip", test_rpc_nng_sync_round_trip},
    {"200 async calls through a pool of 8 complete once",
     test_rpc_nng_200_async_calls_complete_once},
    {"a full queue is NNG_EAGAIN", test_rpc_nng_full_queue_is_eagain},
    {"junk bytes get INVALID_ARGUMENT", test_rpc_nng_junk_bytes_get_invalid_argument},
    {"unknown method is UNIMPLEMENTED", test_rpc_nng_unknown_method_is_unimplemented},
    {"passed deadline is DEADLINE_EXCEEDED", test_rpc_nng_passed_deadline_is_deadline_exceeded},
    {"client: passed deadline fails without sending",
     test_rpc_nng_client_passed_deadline_fails_without_sending},
    {"slow server: NNG_ETIMEDOUT, once", test_rpc_nng_slow_server_times_out_once},
    {"no server: NNG_ETIMEDOUT", test_rpc_nng_no_server_times_out},
    {"after an expired call, a receive timeout is NNG_ETIMEDOUT",
     test_rpc_nng_after_an_expired_call_a_receive_timeout_is_etimedout},
    {"after an expired call, a send timeout is NNG_ETIMEDOUT",
     test_rpc_nng_after_an_expired_call_a_send_timeout_is_etimedout},
    {"beyond max_inflight: RESOURCE_EXHAUSTED at once",
     test_rpc_nng_beyond_max_inflight_is_resource_exhausted_at_once},
    {"server destroy answers the calls queued", test_rpc_nng_server_destroy_answers_queued_calls},
    {"server destroy past the grace frees the calls queued",
     test_rpc_nng_server_destroy_past_the_grace_frees_queued_calls},
    {"busy workers do not hold ASYNC or unknown calls",
     test_rpc_nng_busy_workers_do_not_hold_async_or_unknown_calls},
    {"an ASYNC call deferred from another thread runs on a worker",
     test_rpc_nng_async_call_deferred_from_another_thread_runs_on_a_worker},
    {"pending ASYNC calls count against the bound",
     test_rpc_nng_pending_async_calls_count_against_the_bound},
    {"server destroy answers pending ASYNC calls",
     test_rpc_nng_server_destroy_answers_pending_async_calls},
    {"server destroy past the grace waits for held calls",
     test_rpc_nng_server_destroy_past_the_grace_waits_for_held_calls},
    {"dials again after a peer closed during the handshake",
     test_rpc_nng_dials_again_after_a_peer_closed_during_the_handshake},
    {"conn destroy fails calls in flight with NNG_ECLOSED",
     test_rpc_nng_destroy_fails_calls_in_flight},
    {"server destroy lets calls in flight finish",
     test_rpc_nng_server_destroy_drains_calls_in_flight})
