/* test_upstream.c -- lib/upstream.c over real sockets: a real registry
 * (SHOP_REGISTRY_BIN) surveys two in-process RPC servers; the upstream
 * balances 70 : 30, opens breakers on failures but not on business answers,
 * trips on a closed pipe, retries idempotent calls elsewhere, and fails at
 * once when no instance admits a call; an open breaker tries an instance
 * at once when it is back (a new connection, a new advert), and a departed
 * instance's entry is retired. */
#include <arpa/inet.h>
#include <pthread.h>
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

#include "../cunit_main.h"
#include "clock.h"
#include "product.pb-c.h"
#include "registry_client.h"
#include "rpc_server.h"
#include "upstream.h"

#define METHOD "/shop.v1.ProductService/ListProducts"

/* One test instance: a server whose answers the test can switch. */
typedef struct inst {
	const char *name;
	uint32_t weight;
	char url[64];
	volatile int code;     /* what the handler answers: 0, 5 or 14 */
	volatile int delay_ms; /* how long the handler takes */
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
	if (in->code != 0) {
		shop_rpc_reply_error(reply, in->code, in->code == 5 ? "PRODUCT_NOT_FOUND" : "X",
				     "switched");
		return;
	}
	resp.next_page_token = (char *)in->name; /* who answered */
	shop_rpc_reply_ok(reply, &resp.base);
}

static const shop_rpc_method methods[] = {
	{METHOD, &shop__v1__list_products_request__descriptor, handler},
};

static uint16_t free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	uint16_t port = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int inst_start(inst *in)
{
	shop_rpc_server_config cfg = {.url = in->url, .workers = 4, .methods = methods,
				      .n_methods = 1, .app = in};
	shop_instance self;

	memset(&self, 0, sizeof(self));
	snprintf(self.service, sizeof(self.service), "product");
	snprintf(self.instance, sizeof(self.instance), "%s", in->name);
	snprintf(self.rpc_url, sizeof(self.rpc_url), "%s", in->url);
	snprintf(self.admin_url, sizeof(self.admin_url), "http://127.0.0.1:1");
	self.weight = in->weight;
	self.healthy = true;
	self.started_unix_ms = shop_now_unix_ms();
	if (shop_rpc_server_create(&in->server, &cfg) != 0)
		return -1;
	return shop_advertiser_create(&in->adv, survey_url, &self);
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

/* advertises in as the test's instances do, with a new started_unix_ms */
static int advertise(inst *in)
{
	shop_instance self;

	memset(&self, 0, sizeof(self));
	snprintf(self.service, sizeof(self.service), "product");
	snprintf(self.instance, sizeof(self.instance), "%s", in->name);
	snprintf(self.rpc_url, sizeof(self.rpc_url), "%s", in->url);
	snprintf(self.admin_url, sizeof(self.admin_url), "http://127.0.0.1:1");
	self.weight = in->weight;
	self.healthy = true;
	self.started_unix_ms = shop_now_unix_ms();
	return shop_advertiser_create(&in->adv, survey_url, &self);
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
	snprintf(survey_url, sizeof(survey_url), "tcp://127.0.0.1:%u", free_port());
	snprintf(lookup_url, sizeof(lookup_url), "tcp://127.0.0.1:%u", free_port());
	snprintf(env_s, sizeof(env_s), "SHOP_REGISTRY_SURVEY_URL=%s", survey_url);
	snprintf(env_l, sizeof(env_l), "SHOP_REGISTRY_LOOKUP_URL=%s", lookup_url);
	snprintf(env_a, sizeof(env_a), "SHOP_REGISTRY_ADMIN_ADDR=127.0.0.1:%u", free_port());
	snprintf(A.url, sizeof(A.url), "tcp://127.0.0.1:%u", free_port());
	snprintf(B.url, sizeof(B.url), "tcp://127.0.0.1:%u", free_port());
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
	};
	int status = 1;

	signal(SIGPIPE, SIG_IGN);
	if (setup() == 0)
		status = shop_test_run("upstream", tests, sizeof(tests) / sizeof(tests[0]));
	else
		fprintf(stderr, "setup failed\n");
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
