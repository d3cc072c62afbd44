/* test_upstream.c -- lib/upstream.c over real sockets: a real registry
 * (SHOP_REGISTRY_BIN) surveys two in-process RPC servers; the upstream
 * balances 70 : 30, opens breakers on failures but not on business
 * answers, shed calls or replies that blame a dependency, trips on a
 * closed pipe, retries idempotent calls elsewhere (also when the first try
 * passes its per-try timeout on an instance that never answers), sends a
 * non-idempotent call once, and fails at once when no instance admits a
 * call; an open breaker tries an instance at once when it is back (a new
 * connection, a new advert), and a departed instance's entry is retired. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "../cunit_main.h"
#include "probe.h"
#include "clock.h"
#include "metrics.h"
#include "product.pb-c.h"
#include "registry_client.h"
#include "rpc.pb-c.h"
#include "rpc_server.h"
#include "upstream.h"

#define METHOD "/shop.v1.ProductService/ListProducts"

/* One test instance: a server whose answers the test can switch. */
typedef struct inst {
	const char *name;
	uint32_t weight;
	char url[64];
	volatile int code;       /* what the handler answers: 0, 5, 8 or 14 */
	volatile int dependency; /* the error is marked dependency_failed */
	volatile int delay_ms;   /* how long the handler takes */
	shop_rpc_server *server;
	shop_advertiser *adv;
} inst;

static inst A = {.name = "a", .weight = 70}, B = {.name = "b", .weight = 30};
static char survey_url[96], lookup_url[96];
static pid_t registry_pid = -1;
static shop_registry_view *view;
static shop_upstream *up;

static void handler(void *app, shop_rpc_call *call, const ProtobufCMessage *req,
		    shop_rpc_reply *reply)
{
	inst *in = app;
	Shop__V1__ListProductsResponse resp = SHOP__V1__LIST_PRODUCTS_RESPONSE__INIT;

	(void)call;
	(void)req;
	if (in->delay_ms > 0)
		nanosleep(&(struct timespec){in->delay_ms / 1000, (in->delay_ms % 1000) * 1000000L},
			  NULL);
	if (in->code != 0 && in->dependency) {
		shop_rpc_reply_dependency_error(reply, in->code, "PRODUCT_SERVICE_UNAVAILABLE",
						"a dependency failed");
		return;
	}
	if (in->code != 0) {
		shop_rpc_reply_error(reply, in->code, in->code == 5 ? "PRODUCT_NOT_FOUND" : "X",
				     "switched");
		return;
	}
	resp.next_page_token = (char *)in->name; /* who answered */
	shop_rpc_reply_ok(reply, &resp.base);
}

static const shop_rpc_method methods[] = {
    {METHOD, &shop__v1__list_products_request__descriptor, handler, SHOP_RPC_BLOCKING},
};

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Advertises instance name of service at url, healthy, started now. */
static int advertise_as(const char *service, const char *name, const char *url, uint32_t weight,
			shop_advertiser **adv)
{
	shop_instance self;

	memset(&self, 0, sizeof(self));
	snprintf(self.service, sizeof(self.service), "%s", service);
	snprintf(self.instance, sizeof(self.instance), "%s", name);
	snprintf(self.rpc_url, sizeof(self.rpc_url), "%s", url);
	snprintf(self.admin_url, sizeof(self.admin_url), "http://127.0.0.1:1");
	self.weight = weight;
	self.healthy = true;
	self.started_unix_ms = shop_now_unix_ms();
	return shop_advertiser_create(adv, survey_url, &self);
}

static int inst_start(inst *in)
{
	shop_rpc_server_config cfg = {
	    .url = in->url, .workers = 4, .methods = methods, .n_methods = 1, .app = in};

	if (shop_rpc_server_create(&in->server, &cfg) != 0)
		return -1;
	return advertise_as("product", in->name, in->url, in->weight, &in->adv);
}

static void inst_stop(inst *in)
{
	shop_advertiser_destroy(in->adv);
	in->adv = NULL;
	shop_rpc_server_destroy(in->server, 0);
	in->server = NULL;
}

/* One idempotent call through u with a deadline of ms; returns the
 * answering instance's name in who. */
static int call_within(shop_upstream *u, int ms, char *who, size_t cap, int *code)
{
	Shop__V1__ListProductsRequest req = SHOP__V1__LIST_PRODUCTS_REQUEST__INIT;
	shop_rpc_call_opts o = {.deadline_unix_ms = shop_now_unix_ms() + ms, .idempotent = true};
	Shop__V1__RpcResponse *resp = NULL;
	char instance[64];
	int rv = shop_upstream_call_sync(u, "product", METHOD, &req.base, &o, &resp, instance,
					 sizeof(instance));

	snprintf(who, cap, "%s", rv == 0 ? instance : "");
	if (rv == 0) {
		*code = resp->code;
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	}
	return rv;
}

static int call_on(shop_upstream *u, char *who, size_t cap, int *code)
{
	return call_within(u, 1000, who, cap, code);
}

static int call(char *who, size_t cap, int *code)
{
	return call_on(up, who, cap, code);
}

struct find_breaker {
	const char *name;
	shop_breaker_state st;
	int found;
};

static void find_cb(void *arg, shop_breaker *b, const char *instance)
{
	struct find_breaker *f = arg;
	shop_breaker_stats s;

	if (strcmp(instance, f->name) == 0) {
		shop_breaker_stats_get(b, shop_now_mono_us(), &s);
		f->st = s.state;
		f->found++;
	}
}

/* The state of u's breaker for instance name; *found: how many u lists. */
static shop_breaker_state breaker_on(shop_upstream *u, const char *name, int *found)
{
	struct find_breaker f = {name, SHOP_BREAKER_CLOSED, 0};

	shop_upstream_foreach_breaker(u, find_cb, &f);
	if (found != NULL)
		*found = f.found;
	return f.st;
}

/* The state of the upstream's breaker for instance name. */
static shop_breaker_state breaker_of(const char *name)
{
	return breaker_on(up, name, NULL);
}

/* Waits until the view lists n healthy product instances. */
static int wait_view(int n)
{
	shop_instance tmp[8];

	for (int i = 0; i < 300; i++) {
		if (shop_registry_view_get(view, "product", true, tmp, 8) == n)
			return 0;
		sleep_ms(10);
	}
	return -1;
}

/* An instance that takes every request and never answers (a stopped
 * process whose connection stays up): a bare REP socket read by a thread
 * that counts the requests and keeps the last one's envelope deadline.
 * With answer_after_ms > 0 it answers each request, one at a time, that
 * long after taking it, with next_page_token "c:<caller_user_id>" (a slow
 * instance whose late answers must never reach another call). */
static struct hung {
	char url[64];
	nng_socket sock;
	pthread_t thr;
	atomic_bool stop;
	atomic_int answer_after_ms;
	atomic_int received;
	_Atomic int64_t last_deadline_unix_ms;
	shop_advertiser *adv;
} H;

static void hung_answer(int64_t id)
{
	Shop__V1__ListProductsResponse lp = SHOP__V1__LIST_PRODUCTS_RESPONSE__INIT;
	Shop__V1__RpcResponse r = SHOP__V1__RPC_RESPONSE__INIT;
	uint8_t payload[64];
	char token[32];
	nng_msg *m;

	sleep_ms(atomic_load(&H.answer_after_ms));
	snprintf(token, sizeof(token), "c:%lld", (long long)id);
	lp.next_page_token = token;
	r.payload.len = shop__v1__list_products_response__pack(&lp, payload);
	r.payload.data = payload;
	if (nng_msg_alloc(&m, shop__v1__rpc_response__get_packed_size(&r)) != 0)
		return;
	shop__v1__rpc_response__pack(&r, nng_msg_body(m));
	if (nng_sendmsg(H.sock, m, 0) != 0)
		nng_msg_free(m);
}

static void *hung_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&H.stop)) {
		nng_msg *m;
		Shop__V1__RpcRequest *rq;

		if (nng_recvmsg(H.sock, &m, 0) != 0)
			continue; /* the 100 ms receive timeout: look at stop */
		rq = shop__v1__rpc_request__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
		nng_msg_free(m);
		atomic_fetch_add(&H.received, 1);
		if (rq == NULL)
			continue;
		atomic_store(&H.last_deadline_unix_ms, rq->deadline_unix_ms);
		if (atomic_load(&H.answer_after_ms) > 0)
			hung_answer(rq->caller_user_id);
		shop__v1__rpc_request__free_unpacked(rq, NULL);
	}
	return NULL;
}

/* Starts the hung instance "c" (weight 30) and waits for the view to list
 * it beside a and b. */
static int hung_start(void)
{
	shop_instance self;

	memset(&self, 0, sizeof(self));
	snprintf(H.url, sizeof(H.url), "tcp://127.0.0.1:%u", probe_free_port());
	if (nng_rep0_open(&H.sock) != 0 || nng_socket_set_ms(H.sock, NNG_OPT_RECVTIMEO, 100) != 0 ||
	    nng_listen(H.sock, H.url, NULL, 0) != 0 ||
	    pthread_create(&H.thr, NULL, hung_main, NULL) != 0)
		return -1;
	snprintf(self.service, sizeof(self.service), "product");
	snprintf(self.instance, sizeof(self.instance), "c");
	snprintf(self.rpc_url, sizeof(self.rpc_url), "%s", H.url);
	snprintf(self.admin_url, sizeof(self.admin_url), "http://127.0.0.1:1");
	self.weight = 30;
	self.healthy = true;
	if (shop_advertiser_create(&H.adv, survey_url, &self) != 0)
		return -1;
	return wait_view(3);
}

static void hung_stop(void)
{
	if (H.adv == NULL)
		return;
	shop_advertiser_destroy(H.adv);
	H.adv = NULL;
	atomic_store(&H.stop, true);
	pthread_join(H.thr, NULL);
	nng_close(H.sock);
}

struct find_stats {
	const char *name;
	shop_breaker_stats s;
};

static void stats_cb(void *arg, shop_breaker *b, const char *instance)
{
	struct find_stats *f = arg;

	if (strcmp(instance, f->name) == 0)
		shop_breaker_stats_get(b, shop_now_mono_us(), &f->s);
}

static shop_breaker_stats stats_of(const char *name)
{
	struct find_stats f = {.name = name};

	shop_upstream_foreach_breaker(up, stats_cb, &f);
	return f.s;
}

/* One call with deadline_ms and idempotent as given; *who gets the
 * instance that answered, *took_ms the call's length. */
/* One call with caller_user_id = id; token (cap tcap, may be NULL) gets
 * the answer's next_page_token. */
static int call_id(int64_t deadline_ms, bool idempotent, int64_t id, char *who, size_t cap,
		   int64_t *took_ms, char *token, size_t tcap)
{
	Shop__V1__ListProductsRequest req = SHOP__V1__LIST_PRODUCTS_REQUEST__INIT;
	shop_rpc_call_opts o = {.deadline_unix_ms = shop_now_unix_ms() + deadline_ms,
				.caller_user_id = id,
				.idempotent = idempotent};
	Shop__V1__RpcResponse *resp = NULL;
	int64_t t0 = shop_now_mono_us();
	int rv = shop_upstream_call_sync(up, "product", METHOD, &req.base, &o, &resp, who, cap);

	*took_ms = (shop_now_mono_us() - t0) / 1000;
	if (rv == 0) {
		Shop__V1__ListProductsResponse *lp = NULL;

		if (resp->code != 0)
			rv = -resp->code;
		else if (token != NULL &&
			 (lp = shop__v1__list_products_response__unpack(
			      NULL, resp->payload.len, resp->payload.data)) != NULL)
			snprintf(token, tcap, "%s", lp->next_page_token);
		if (lp != NULL)
			shop__v1__list_products_response__free_unpacked(lp, NULL);
		shop__v1__rpc_response__free_unpacked(resp, NULL);
	}
	return rv;
}

static int call_opts(int64_t deadline_ms, bool idempotent, char *who, size_t cap, int64_t *took_ms)
{
	return call_id(deadline_ms, idempotent, 0, who, cap, took_ms, NULL, 0);
}

static void test_upstream_balances_70_30(void)
{
	char who[64];
	int a = 0, n = 2000, code;

	for (int i = 0; i < n; i++) {
		CU_ASSERT_EQUAL_FATAL(call(who, sizeof(who), &code), 0);
		a += strcmp(who, "a") == 0;
	}
	CU_ASSERT(a > n * 65 / 100 && a < n * 75 / 100);
}

static void test_upstream_business_answers_keep_breaker_closed(void)
{
	char who[64];
	int code;

	A.code = B.code = 5;
	for (int i = 0; i < 60; i++) {
		CU_ASSERT_EQUAL(call(who, sizeof(who), &code), 0);
		CU_ASSERT_EQUAL(code, 5);
	}
	A.code = B.code = 0;
	CU_ASSERT_EQUAL(breaker_of("a"), SHOP_BREAKER_CLOSED);
	CU_ASSERT_EQUAL(breaker_of("b"), SHOP_BREAKER_CLOSED);
}

/* shop_rpc_client_calls_total{service="product",instance,outcome}. */
static double calls_of(const char *instance, const char *outcome)
{
	shop_metric_family *f = shop_metrics_counter(
	    shop_metrics_default(), "shop_rpc_client_calls_total", "", "service,instance,outcome");

	return shop_metric_value(SHOP_METRIC(f, "product", instance, outcome));
}

/* b answers UNAVAILABLE marked dependency_failed (as the order service's
 * PRODUCT_SERVICE_UNAVAILABLE fallback does): b works, its breaker stays
 * closed, and the calls count as outcome "dependency", not "failure". */
static void test_upstream_dependency_failed_keeps_breaker_closed(void)
{
	double fail0 = calls_of("b", "failure"), dep0 = calls_of("b", "dependency");
	char who[64];
	int code, from_b = 0;

	B.code = 14;
	B.dependency = 1;
	for (int i = 0; i < 200; i++) {
		CU_ASSERT_EQUAL(call(who, sizeof(who), &code), 0);
		if (strcmp(who, "b") == 0) {
			CU_ASSERT_EQUAL(code, 14);
			from_b++;
		}
	}
	B.code = 0;
	B.dependency = 0;
	CU_ASSERT(from_b > 30); /* b kept being called: 30 % of 200 */
	CU_ASSERT_EQUAL(breaker_of("b"), SHOP_BREAKER_CLOSED);
	CU_ASSERT_EQUAL(calls_of("b", "dependency") - dep0, from_b);
	CU_ASSERT_EQUAL(calls_of("b", "failure") - fail0, 0);
}

static shop_breaker_stats stats_of(const char *name);

/* A shed call (RESOURCE_EXHAUSTED) is no failure either, nor a success:
 * the breaker records nothing (shop_breaker_release), and the calls count
 * as outcome "shed". */
static void test_upstream_shed_calls_keep_breaker_closed(void)
{
	shop_breaker_stats a0 = stats_of("a"), b0 = stats_of("b"), a1, b1;
	double shed0 = calls_of("a", "shed") + calls_of("b", "shed");
	char who[64];
	int code;

	A.code = B.code = 8;
	for (int i = 0; i < 60; i++) {
		CU_ASSERT_EQUAL(call(who, sizeof(who), &code), 0);
		CU_ASSERT_EQUAL(code, 8);
	}
	A.code = B.code = 0;
	CU_ASSERT_EQUAL(breaker_of("a"), SHOP_BREAKER_CLOSED);
	CU_ASSERT_EQUAL(breaker_of("b"), SHOP_BREAKER_CLOSED);
	a1 = stats_of("a");
	b1 = stats_of("b");
	CU_ASSERT_EQUAL(a1.successful + b1.successful, a0.successful + b0.successful);
	CU_ASSERT_EQUAL(a1.failed + b1.failed, a0.failed + b0.failed);
	CU_ASSERT_EQUAL(calls_of("a", "shed") + calls_of("b", "shed") - shed0, 60);
}

/* ---- the caller's own bound: calls beyond its queue are shed at once ---- */

/* Instance "q1" of service "queued": a server whose handler holds every
 * call until the test opens its gate. */
static struct held {
	char url[64];
	atomic_bool open;
	shop_rpc_server *server;
	shop_advertiser *adv;
} Q;

static void held_handler(void *app, shop_rpc_call *call, const ProtobufCMessage *req,
			 shop_rpc_reply *reply)
{
	Shop__V1__ListProductsResponse resp = SHOP__V1__LIST_PRODUCTS_RESPONSE__INIT;

	(void)app;
	(void)call;
	(void)req;
	for (int i = 0; i < 5000 && !atomic_load(&Q.open); i++)
		sleep_ms(1);
	resp.next_page_token = "q1";
	shop_rpc_reply_ok(reply, &resp.base);
}

static const shop_rpc_method held_methods[] = {
    {METHOD, &shop__v1__list_products_request__descriptor, held_handler, SHOP_RPC_BLOCKING},
};

/* Starts q1 and waits until the view lists it. */
static int held_start(void)
{
	shop_rpc_server_config cfg = {
	    .url = Q.url, .workers = 40, .methods = held_methods, .n_methods = 1, .app = NULL};
	shop_instance tmp[2];

	snprintf(Q.url, sizeof(Q.url), "tcp://127.0.0.1:%u", probe_free_port());
	if (shop_rpc_server_create(&Q.server, &cfg) != 0 ||
	    advertise_as("queued", "q1", Q.url, 100, &Q.adv) != 0)
		return -1;
	for (int i = 0; i < 300; i++) {
		if (shop_registry_view_get(view, "queued", true, tmp, 2) == 1)
			return 0;
		sleep_ms(10);
	}
	return -1;
}

static void held_stop(void)
{
	shop_advertiser_destroy(Q.adv);
	Q.adv = NULL;
	shop_rpc_server_destroy(Q.server, 0);
	Q.server = NULL;
}

struct held_calls {
	atomic_int done, ok;
};

/* Counts an answer OK in *ok and frees it. */
static void count_answer(atomic_int *ok, int rv, Shop__V1__RpcResponse *resp)
{
	if (rv == 0 && resp->code == 0)
		atomic_fetch_add(ok, 1);
	if (resp != NULL)
		shop__v1__rpc_response__free_unpacked(resp, NULL);
}

static void held_done(void *arg, int rv, Shop__V1__RpcResponse *resp, const char *instance)
{
	struct held_calls *h = arg;

	(void)instance;
	count_answer(&h->ok, rv, resp);
	atomic_fetch_add(&h->done, 1);
}

static double calls_of_service(const char *service, const char *instance, const char *outcome)
{
	shop_metric_family *f = shop_metrics_counter(
	    shop_metrics_default(), "shop_rpc_client_calls_total", "", "service,instance,outcome");

	return shop_metric_value(SHOP_METRIC(f, service, instance, outcome));
}

struct find_named {
	shop_breaker_stats s;
	int found;
};

static void named_cb(void *arg, shop_breaker *b, const char *instance)
{
	struct find_named *f = arg;

	if (strcmp(instance, "q1") == 0) {
		shop_breaker_stats_get(b, shop_now_mono_us(), &f->s);
		f->found = 1;
	}
}

/* An upstream whose queue per instance is 4: 40 calls at once to an
 * instance that holds them: 32 are sent (the pool), 4 wait, and the other 4
 * are refused at once with NNG_EAGAIN, counted as "overloaded" and on no
 * breaker; once the instance answers, all 36 accepted calls succeed, and
 * its breaker is closed with 36 successes and nothing else. With the old
 * bound (4,096 waiting) all 40 were accepted and waited. */
static void test_upstream_caller_queue_full_sheds_at_once(void)
{
	Shop__V1__ListProductsRequest req = SHOP__V1__LIST_PRODUCTS_REQUEST__INIT;
	struct held_calls h = {0};
	struct find_named f = {0};
	shop_upstream *u = NULL;
	double over0 = calls_of_service("queued", "", "overloaded");
	int accepted = 0, refused = 0, other = 0;
	int64_t worst_us = 0;

	atomic_store(&Q.open, false);
	CU_ASSERT_FATAL(held_start() == 0);
	CU_ASSERT_FATAL(shop_upstream_create(&u, view, "cq") == 0);
	shop_upstream_set_queue(u, 4);
	for (int i = 0; i < 40; i++) {
		shop_rpc_call_opts o = {.deadline_unix_ms = shop_now_unix_ms() + 5000};
		int64_t t0 = shop_now_mono_us();
		int rv = shop_upstream_call(u, "queued", METHOD, &req.base, &o, held_done, &h);
		int64_t took = shop_now_mono_us() - t0;

		if (rv == 0) {
			accepted++;
		} else if (rv == NNG_EAGAIN) {
			refused++;
			worst_us = took > worst_us ? took : worst_us;
		} else {
			other++;
		}
	}
	printf("\n    40 calls, queue 4: %d accepted, %d shed (slowest refusal %lld us)\n",
	       accepted, refused, (long long)worst_us);
	CU_ASSERT_EQUAL(accepted, 36);
	CU_ASSERT_EQUAL(refused, 4);
	CU_ASSERT_EQUAL(other, 0);
	CU_ASSERT(worst_us < 50000);
	CU_ASSERT_EQUAL(calls_of_service("queued", "", "overloaded") - over0, 4);
	shop_upstream_foreach_breaker(u, named_cb, &f);
	CU_ASSERT_EQUAL(f.found, 1);
	CU_ASSERT_EQUAL(f.s.state, SHOP_BREAKER_CLOSED);
	CU_ASSERT_EQUAL(f.s.failed, 0);
	CU_ASSERT_EQUAL(f.s.not_permitted, 0);
	atomic_store(&Q.open, true);
	for (int i = 0; i < 500 && atomic_load(&h.done) < accepted; i++)
		sleep_ms(10);
	CU_ASSERT_EQUAL(atomic_load(&h.done), accepted);
	CU_ASSERT_EQUAL(atomic_load(&h.ok), accepted);
	shop_upstream_foreach_breaker(u, named_cb, &f);
	CU_ASSERT_EQUAL(f.s.state, SHOP_BREAKER_CLOSED);
	CU_ASSERT_EQUAL(f.s.successful, 36);
	CU_ASSERT_EQUAL(f.s.failed, 0);
	shop_upstream_destroy(u);
	held_stop();
}

struct chains {
	shop_upstream *u;
	atomic_int left, busy, ok, done;
};

static void chain_done(void *arg, int rv, Shop__V1__RpcResponse *resp, const char *instance);

/* One more call of the chain, from the test or from the last one's done. */
static void chain_next(struct chains *c)
{
	Shop__V1__ListProductsRequest req = SHOP__V1__LIST_PRODUCTS_REQUEST__INIT;
	shop_rpc_call_opts o = {.deadline_unix_ms = shop_now_unix_ms() + 5000};
	int rv;

	if (atomic_fetch_sub(&c->left, 1) <= 0) {
		atomic_fetch_add(&c->done, 1);
		return;
	}
	if ((rv = shop_upstream_call(c->u, "queued", METHOD, &req.base, &o, chain_done, c)) != 0) {
		if (rv == NNG_EAGAIN)
			atomic_fetch_add(&c->busy, 1);
		atomic_fetch_add(&c->done, 1);
	}
}

static void chain_done(void *arg, int rv, Shop__V1__RpcResponse *resp, const char *instance)
{
	struct chains *c = arg;

	(void)instance;
	count_answer(&c->ok, rv, resp);
	chain_next(c);
}

/* 32 chains of calls, each call made from the done of the one before (as
 * the gateway's client sends its next request when it has its answer),
 * with no queue (SHOP_RPC_CALLER_QUEUE 0): each instance connection has 32
 * contexts, so 32 chains always fit. A call leaves the bound before its
 * done runs, so none of the 20,000 calls is shed; counted after its done
 * (its context is freed then), the next call of a chain found all 32
 * contexts taken and was shed. */
static void test_upstream_call_from_done_finds_its_place(void)
{
	struct chains c = {0};
	shop_upstream *u = NULL;

	atomic_store(&Q.open, true);
	CU_ASSERT_FATAL(held_start() == 0);
	CU_ASSERT_FATAL(shop_upstream_create(&u, view, "chain") == 0);
	shop_upstream_set_queue(u, 0);
	c.u = u;
	atomic_store(&c.left, 20000);
	for (int i = 0; i < 32; i++)
		chain_next(&c);
	for (int i = 0; i < 3000 && atomic_load(&c.done) < 32; i++)
		sleep_ms(10);
	printf("\n    32 chains, no queue: %d calls answered OK, %d shed\n", atomic_load(&c.ok),
	       atomic_load(&c.busy));
	CU_ASSERT_EQUAL(atomic_load(&c.done), 32);
	CU_ASSERT_EQUAL(atomic_load(&c.busy), 0);
	CU_ASSERT_EQUAL(atomic_load(&c.ok), 20000);
	shop_upstream_destroy(u);
	held_stop();
}

static void test_upstream_unavailable_opens_breaker(void)
{
	char who[64];
	int code, to_b = 0;

	B.code = 14;
	for (int i = 0; i < 200; i++)
		call(who, sizeof(who), &code);
	CU_ASSERT_EQUAL(breaker_of("b"), SHOP_BREAKER_OPEN);
	/* While b's breaker is open, everything goes to a. */
	for (int i = 0; i < 100; i++) {
		CU_ASSERT_EQUAL(call(who, sizeof(who), &code), 0);
		to_b += strcmp(who, "b") == 0;
	}
	CU_ASSERT_EQUAL(to_b, 0);
	/* After the open wait (300 ms here), trials succeed: closed again. */
	B.code = 0;
	sleep_ms(350);
	for (int i = 0; i < 200 && breaker_of("b") != SHOP_BREAKER_CLOSED; i++)
		call(who, sizeof(who), &code);
	CU_ASSERT_EQUAL(breaker_of("b"), SHOP_BREAKER_CLOSED);
}

static void test_upstream_closed_pipe_trips_and_retries(void)
{
	char who[64];
	int code, failed = 0;

	inst_stop(&B);
	/* No wait for the registry: the pipe close trips b's breaker now. */
	for (int i = 0; i < 200; i++) {
		if (call(who, sizeof(who), &code) != 0 || code != 0)
			failed++;
		else
			CU_ASSERT_STRING_EQUAL(who, "a");
	}
	CU_ASSERT_EQUAL(failed, 0);
	CU_ASSERT_EQUAL(breaker_of("b"), SHOP_BREAKER_OPEN);
}

static void test_upstream_none_admitted_fails_at_once(void)
{
	char who[64];
	int code, rv;
	int64_t t0;

	inst_stop(&A);
	/* The first call may still race a's pipe closing (it then fails with
	 * the reset); it must fail fast either way. */
	t0 = shop_now_mono_us();
	rv = call(who, sizeof(who), &code);
	CU_ASSERT(rv != 0);
	CU_ASSERT(shop_now_mono_us() - t0 < 50 * 1000);
	sleep_ms(20);
	t0 = shop_now_mono_us();
	rv = call(who, sizeof(who), &code);
	CU_ASSERT(rv == NNG_EBUSY || rv == NNG_ENOENT);
	CU_ASSERT(shop_now_mono_us() - t0 < 5 * 1000);
}

static void test_upstream_instance_returns(void)
{
	char who[64];
	int code, to_b = 0;

	CU_ASSERT_EQUAL_FATAL(inst_start(&A), 0);
	CU_ASSERT_EQUAL_FATAL(inst_start(&B), 0);
	CU_ASSERT_EQUAL_FATAL(wait_view(2), 0);
	sleep_ms(350); /* the breakers' open wait */
	for (int i = 0; i < 400; i++) {
		if (call(who, sizeof(who), &code) == 0 && strcmp(who, "b") == 0)
			to_b++;
	}
	CU_ASSERT(to_b > 40);
}

/* A non-idempotent call that reaches an instance that never answers waits
 * for the whole deadline, fails, and was sent once. Runs before the next
 * test so that c's breaker is still closed. */
static void test_upstream_hung_instance_write_sent_once(void)
{
	char who[64];
	int64_t took;
	int rv, before, to_c = 0;

	CU_ASSERT_EQUAL_FATAL(hung_start(), 0);
	for (int i = 0; i < 60 && to_c == 0; i++) {
		before = atomic_load(&H.received);
		rv = call_opts(500, false, who, sizeof(who), &took);
		sleep_ms(20); /* a second send, were there one, would have arrived */
		if (atomic_load(&H.received) == before) {
			CU_ASSERT_EQUAL(rv, 0); /* a or b answered */
			continue;
		}
		to_c++;
		CU_ASSERT_EQUAL(atomic_load(&H.received), before + 1);
		CU_ASSERT_EQUAL(rv, NNG_ETIMEDOUT);
		CU_ASSERT_STRING_EQUAL(who, "c");
		CU_ASSERT(took >= 490 && took < 700);
	}
	CU_ASSERT_EQUAL(to_c, 1);
}

/* An idempotent call whose first try goes to the instance that never
 * answers: that try times out at its per-try timeout (45 % of the
 * deadline), the retry on a or b answers, within the deadline; the try
 * counts as failed on c's breaker. The request c got carried the try's
 * deadline, not the call's. Without per-try timeouts such a call waits for
 * its whole deadline and fails. */
static void test_upstream_hung_instance_idempotent_retries(void)
{
	shop_breaker_stats s0 = stats_of("c"), s1;
	char who[64];
	int64_t took, sent_at, deadline, max_took = 0;
	int rv, before, to_c = 0, failed = 0;

	for (int i = 0; i < 200 && to_c < 3; i++) {
		/* c's breaker opens after its 10th failure; wait out its open
		 * period so that it takes a trial call again. */
		if (breaker_of("c") == SHOP_BREAKER_OPEN)
			sleep_ms(320);
		before = atomic_load(&H.received);
		sent_at = shop_now_unix_ms();
		rv = call_opts(1000, true, who, sizeof(who), &took);
		deadline = sent_at + 1000;
		failed += rv != 0;
		CU_ASSERT(rv == 0 && strcmp(who, "c") != 0);
		CU_ASSERT(took < 1000);
		if (atomic_load(&H.received) == before)
			continue;
		to_c++;
		max_took = took > max_took ? took : max_took;
		CU_ASSERT(took >= 440); /* the first try waited its per-try timeout */
		/* The envelope's deadline was the first try's, about 450 ms in. */
		CU_ASSERT(atomic_load(&H.last_deadline_unix_ms) <= deadline - 500);
		CU_ASSERT(atomic_load(&H.last_deadline_unix_ms) >= sent_at + 440);
	}
	s1 = stats_of("c");
	CU_ASSERT_EQUAL(failed, 0);
	CU_ASSERT_EQUAL(to_c, 3);
	CU_ASSERT_EQUAL(s1.successful, s0.successful);
	CU_ASSERT_EQUAL(s1.failed - s0.failed, (uint64_t)to_c);
	fprintf(stderr, "\n  %d first tries hung on c, longest call %lld ms ", to_c,
		(long long)max_took);
}

/* c answers, but late: 600 ms after it took a request (past the 450 ms
 * per-try timeout of a 1 s call), then 50 ms after. A try that timed out
 * is retried on a or b; its late answer reaches c's context when that
 * context may already carry another call's request, and must be dropped:
 * an answer from c is always the one to the call's own request. Without
 * per-try timeouts the slow c answers every call that reaches it. */
static void test_upstream_late_answers_never_reach_another_call(void)
{
	char who[64], token[32], want[32];
	int64_t took;
	int rv, before, slow_c = 0, fast_c = 0;
	int64_t end = shop_now_mono_us() + 15 * 1000 * 1000;

	atomic_store(&H.answer_after_ms, 600);
	for (int i = 1; i <= 300 && (slow_c < 3 || fast_c < 3) && shop_now_mono_us() < end; i++) {
		if (slow_c >= 3)
			atomic_store(&H.answer_after_ms, 50);
		if (breaker_of("c") == SHOP_BREAKER_OPEN)
			sleep_ms(320);
		before = atomic_load(&H.received);
		token[0] = '\0';
		rv = call_id(1000, true, i, who, sizeof(who), &took, token, sizeof(token));
		CU_ASSERT_EQUAL(rv, 0);
		CU_ASSERT(took < 1000);
		snprintf(want, sizeof(want), "c:%d", i);
		if (strcmp(who, "c") == 0) {
			CU_ASSERT_STRING_EQUAL(token, want); /* its own answer */
			CU_ASSERT(slow_c >= 3);              /* not while c was slow */
			fast_c++;
		} else if (atomic_load(&H.received) > before && slow_c < 3) {
			slow_c++; /* c too slow: retried, answered elsewhere */
		}
		CU_ASSERT(strncmp(token, "c:", 2) != 0 || strcmp(token, want) == 0);
	}
	CU_ASSERT(slow_c >= 3);
	CU_ASSERT(fast_c >= 3);
	atomic_store(&H.answer_after_ms, 0);
	hung_stop();
}

/* advertises in as the test's instances do, with a new started_unix_ms */
static int advertise(inst *in)
{
	return advertise_as("product", in->name, in->url, in->weight, &in->adv);
}

/* A second upstream whose breakers wait 60 s when open: anything that
 * reaches an opened instance within the test did not wait the period out. */
static shop_upstream *slow_upstream(void)
{
	shop_upstream *u = NULL;
	shop_breaker_config bc;

	CU_ASSERT_FATAL(shop_upstream_create(&u, view, "slow") == 0);
	shop_breaker_config_default(&bc);
	bc.open_wait_us = 60 * 1000 * 1000;
	shop_upstream_set_breaker_config(u, &bc);
	return u;
}

/* Calls through u until b answers or limit_ms pass; returns the ms it took,
 * -1 when b never answered. */
static int64_t until_b_answers(shop_upstream *u, int limit_ms)
{
	int64_t t0 = shop_now_mono_us();
	char who[64];
	int code;

	while (shop_now_mono_us() - t0 < (int64_t)limit_ms * 1000) {
		if (call_on(u, who, sizeof(who), &code) == 0 && code == 0 && strcmp(who, "b") == 0)
			return (shop_now_mono_us() - t0) / 1000;
		sleep_ms(5);
	}
	return -1;
}

static void test_upstream_reconnected_instance_tried_at_once(void)
{
	shop_upstream *u = slow_upstream();
	shop_rpc_server_config cfg = {
	    .url = B.url, .workers = 4, .methods = methods, .n_methods = 1, .app = &B};
	int64_t took;

	CU_ASSERT_FATAL(until_b_answers(u, 2000) >= 0); /* connected to b */
	/* b's server goes, its advert stays: only the pipe tells. */
	shop_rpc_server_destroy(B.server, 0);
	B.server = NULL;
	for (int i = 0; i < 200 && breaker_on(u, "b", NULL) != SHOP_BREAKER_OPEN; i++)
		sleep_ms(5);
	CU_ASSERT_EQUAL_FATAL(breaker_on(u, "b", NULL), SHOP_BREAKER_OPEN);
	CU_ASSERT_EQUAL_FATAL(shop_rpc_server_create(&B.server, &cfg), 0);
	/* The redial (≤ 500 ms back-off) makes a pipe: half-open, trials. */
	took = until_b_answers(u, 3000);
	printf("\n    b answered %lld ms after its server came back\n", (long long)took);
	CU_ASSERT(took >= 0 && took < 1500);
	shop_upstream_destroy(u);
}

static void test_upstream_restarted_advert_tried_at_once(void)
{
	shop_upstream *u = slow_upstream();
	char who[64];
	int code;
	int64_t took;

	CU_ASSERT_FATAL(until_b_answers(u, 2000) >= 0);
	/* b fails (its connection stays up): the failure rate opens it. */
	B.code = 14;
	for (int i = 0; i < 400 && breaker_on(u, "b", NULL) != SHOP_BREAKER_OPEN; i++)
		call_on(u, who, sizeof(who), &code);
	CU_ASSERT_EQUAL_FATAL(breaker_on(u, "b", NULL), SHOP_BREAKER_OPEN);
	B.code = 0;
	/* A new advert (a new started_unix_ms), the same connection. */
	sleep_ms(5);
	shop_advertiser_destroy(B.adv);
	CU_ASSERT_FATAL(advertise(&B) == 0);
	took = until_b_answers(u, 3000);
	printf("\n    b answered %lld ms after its new advert was made\n", (long long)took);
	CU_ASSERT(took >= 0 && took < 1500);
	shop_upstream_destroy(u);
}

static void test_upstream_departed_instance_retired(void)
{
	shop_upstream *u = slow_upstream();
	int found = 0;
	int64_t t0;

	CU_ASSERT_FATAL(until_b_answers(u, 2000) >= 0);
	inst_stop(&B); /* deregisters: gone from the view at once */
	t0 = shop_now_mono_us();
	do {
		sleep_ms(20);
		breaker_on(u, "b", &found);
	} while (found > 0 && shop_now_mono_us() - t0 < 5000 * 1000);
	printf("\n    b's entry retired %lld ms after it stopped\n",
	       (long long)(shop_now_mono_us() - t0) / 1000);
	CU_ASSERT_EQUAL(found, 0);
	CU_ASSERT(shop_now_mono_us() - t0 < 2500 * 1000);
	/* It comes back as a new entry, closed, and serves. */
	CU_ASSERT_EQUAL_FATAL(inst_start(&B), 0);
	CU_ASSERT(until_b_answers(u, 3000) >= 0);
	CU_ASSERT_EQUAL(breaker_on(u, "b", &found), SHOP_BREAKER_CLOSED);
	CU_ASSERT_EQUAL(found, 1);
	shop_upstream_destroy(u);
}

struct slow_call {
	shop_upstream *u;
	int rv, code;
	char who[64];
};

static void *slow_call_main(void *arg)
{
	struct slow_call *c = arg;

	c->rv = call_within(c->u, 5000, c->who, sizeof(c->who), &c->code);
	return NULL;
}

static void test_upstream_call_in_flight_outlives_retirement(void)
{
	shop_upstream *u = slow_upstream();
	struct slow_call c = {.u = NULL};
	char who[64];
	int code, found = 1;
	pthread_t th;
	int64_t t0;

	CU_ASSERT_FATAL(until_b_answers(u, 2000) >= 0);
	/* a's breaker opens (60 s): every call goes to b. */
	A.code = 14;
	for (int i = 0; i < 400 && breaker_on(u, "a", NULL) != SHOP_BREAKER_OPEN; i++)
		call_on(u, who, sizeof(who), &code);
	A.code = 0;
	CU_ASSERT_EQUAL_FATAL(breaker_on(u, "a", NULL), SHOP_BREAKER_OPEN);
	/* A call to b that takes 2.5 s; b leaves the view meanwhile (its
	 * server stays) and is retired while the call is in flight. */
	B.delay_ms = 2500;
	c.u = u;
	CU_ASSERT_FATAL(pthread_create(&th, NULL, slow_call_main, &c) == 0);
	sleep_ms(100);
	shop_advertiser_destroy(B.adv);
	B.adv = NULL;
	t0 = shop_now_mono_us();
	while (found > 0 && shop_now_mono_us() - t0 < 2000 * 1000) {
		sleep_ms(20);
		breaker_on(u, "b", &found);
	}
	CU_ASSERT_EQUAL(found, 0); /* retired, not listed, the call still running */
	pthread_join(th, NULL);
	B.delay_ms = 0;
	CU_ASSERT_EQUAL(c.rv, 0); /* it ended normally on the retired entry */
	CU_ASSERT_EQUAL(c.code, 0);
	CU_ASSERT_STRING_EQUAL(c.who, "b");
	sleep_ms(400); /* the housekeeper frees the entry (ASan: no use after) */
	CU_ASSERT_EQUAL_FATAL(advertise(&B), 0);
	CU_ASSERT(until_b_answers(u, 3000) >= 0);
	shop_upstream_destroy(u);
}

static int setup(void)
{
	const char *bin = getenv("SHOP_REGISTRY_BIN");
	char env_s[160], env_l[160], env_a[64];
	char *argv[] = {(char *)bin, NULL};
	char *envp[] = {env_s, env_l, env_a, "SHOP_REGISTRY_SURVEY_MS=100", "SHOP_LOG_LEVEL=warn",
			NULL};
	shop_breaker_config bc;

	if (bin == NULL) {
		fprintf(stderr, "SHOP_REGISTRY_BIN must name the registry executable\n");
		return -1;
	}
	snprintf(survey_url, sizeof(survey_url), "tcp://127.0.0.1:%u", probe_free_port());
	snprintf(lookup_url, sizeof(lookup_url), "tcp://127.0.0.1:%u", probe_free_port());
	snprintf(env_s, sizeof(env_s), "SHOP_REGISTRY_SURVEY_URL=%s", survey_url);
	snprintf(env_l, sizeof(env_l), "SHOP_REGISTRY_LOOKUP_URL=%s", lookup_url);
	snprintf(env_a, sizeof(env_a), "SHOP_REGISTRY_ADMIN_ADDR=127.0.0.1:%u", probe_free_port());
	snprintf(A.url, sizeof(A.url), "tcp://127.0.0.1:%u", probe_free_port());
	snprintf(B.url, sizeof(B.url), "tcp://127.0.0.1:%u", probe_free_port());
	if ((registry_pid = fork()) == 0) {
		execve(argv[0], argv, envp);
		_exit(127);
	}
	if (inst_start(&A) != 0 || inst_start(&B) != 0)
		return -1;
	if (shop_registry_view_create(&view, lookup_url, 50) != 0 ||
	    shop_upstream_create(&up, view, "test") != 0)
		return -1;
	shop_breaker_config_default(&bc);
	bc.open_wait_us = 300 * 1000;
	shop_upstream_set_breaker_config(up, &bc);
	return wait_view(2);
}

int main(void)
{
	static const shop_test tests[] = {
	    {"balances 70:30", test_upstream_balances_70_30},
	    {"business answers keep the breaker closed",
	     test_upstream_business_answers_keep_breaker_closed},
	    {"a dependency's failure keeps the breaker closed",
	     test_upstream_dependency_failed_keeps_breaker_closed},
	    {"shed calls keep the breaker closed", test_upstream_shed_calls_keep_breaker_closed},
	    {"a caller's full queue sheds at once, on no breaker",
	     test_upstream_caller_queue_full_sheds_at_once},
	    {"a call made from done finds its place", test_upstream_call_from_done_finds_its_place},
	    {"UNAVAILABLE opens the breaker, trials close it",
	     test_upstream_unavailable_opens_breaker},
	    {"a closed pipe trips, idempotent calls retry elsewhere",
	     test_upstream_closed_pipe_trips_and_retries},
	    {"none admitted: fails at once", test_upstream_none_admitted_fails_at_once},
	    {"instances return", test_upstream_instance_returns},
	    {"a reconnected instance is tried at once",
	     test_upstream_reconnected_instance_tried_at_once},
	    {"a restarted advert is tried at once", test_upstream_restarted_advert_tried_at_once},
	    {"a departed instance is retired", test_upstream_departed_instance_retired},
	    {"a call in flight outlives its instance's retirement",
	     test_upstream_call_in_flight_outlives_retirement},
	    {"a write to a hung instance fails at the deadline, sent once",
	     test_upstream_hung_instance_write_sent_once},
	    {"a read on a hung instance is retried elsewhere after its per-try timeout",
	     test_upstream_hung_instance_idempotent_retries},
	    {"late answers never reach another call",
	     test_upstream_late_answers_never_reach_another_call},
	};
	int status = 1;

	signal(SIGPIPE, SIG_IGN);
	if (setup() == 0)
		status = shop_test_run("upstream", tests, sizeof(tests) / sizeof(tests[0]));
	else
		fprintf(stderr, "setup failed\n");
	hung_stop();
	shop_upstream_destroy(up);
	shop_registry_view_destroy(view);
	if (A.server != NULL)
		inst_stop(&A);
	if (B.server != NULL)
		inst_stop(&B);
	if (registry_pid > 0) {
		kill(registry_pid, SIGTERM);
		waitpid(registry_pid, NULL, 0);
	}
	return status;
}
