/* test_order_cache.c -- svc-order/order_cache.c over lib/redis_loop.c: the
 * real Redis of SHOP_TEST_REDIS_ADDR (HIT with the stored bytes, MISS,
 * compare-and-set), and fake Redis servers on 127.0.0.1 that hang or answer
 * more than they were asked (BYPASS within the bound, no crash). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../cunit_main.h"

#include "clock.h"
#include "config.h"
#include "order_cache.h"
#include "redis_loop.h"

#define BOUND_MS 100

/* One lookup's outcome, waited for by the test. */
struct got {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool done;
	order_cache_result res;
	int64_t user_id;
	uint8_t bytes[512];
	size_t len;
	int64_t at_us;
};

static void got_init(struct got *g)
{
	memset(g, 0, sizeof(*g));
	pthread_mutex_init(&g->mtx, NULL);
	pthread_cond_init(&g->cv, NULL);
}

static void got_cb(void *arg, order_cache_result res, int64_t user_id, const uint8_t *order,
		   size_t len)
{
	struct got *g = arg;

	pthread_mutex_lock(&g->mtx);
	g->res = res;
	g->user_id = user_id;
	g->len = len < sizeof(g->bytes) ? len : sizeof(g->bytes);
	if (order != NULL)
		memcpy(g->bytes, order, g->len);
	g->at_us = shop_now_mono_us();
	g->done = true;
	pthread_cond_signal(&g->cv);
	pthread_mutex_unlock(&g->mtx);
}

/* Looks id up and waits (2 s at most). Returns the result, or -1 when
 * order_cache_get answered BYPASS at once, -2 when no callback came. */
static int lookup(shop_redis_loop *l, int64_t id, struct got *g)
{
	int64_t until = shop_now_mono_us() + 2000000;
	int rv;

	got_init(g);
	if (order_cache_get(l, id, got_cb, g) != 0)
		return -1;
	pthread_mutex_lock(&g->mtx);
	while (!g->done && shop_now_mono_us() < until) {
		pthread_mutex_unlock(&g->mtx);
		usleep(1000);
		pthread_mutex_lock(&g->mtx);
	}
	rv = g->done ? (int)g->res : -2;
	pthread_mutex_unlock(&g->mtx);
	return rv;
}

static shop_redis_loop *real_loop(void)
{
	const char *addr = getenv("SHOP_TEST_REDIS_ADDR");
	char host[64];
	uint16_t port;

	CU_ASSERT_PTR_NOT_NULL_FATAL(addr);
	CU_ASSERT_EQUAL_FATAL(shop_parse_hostport(addr, host, sizeof(host), &port), 0);
	return shop_redis_loop_create(host, port, BOUND_MS);
}

static int64_t test_id(int n)
{
	return 900000000000LL + (int64_t)getpid() * 100 + n;
}

static void make_order(Shop__V1__Order *o, int64_t id, int64_t user, const char *updated)
{
	shop__v1__order__init(o);
	o->id = id;
	o->user_id = user;
	o->total_supply_price = 1234;
	o->created_at = "2026-12-04T00:00:00Z";
	o->updated_at = (char *)updated;
}

/* A HIT hands back exactly the bytes stored, with their owner; an absent
 * order is a MISS. */
static void test_order_cache_hit_is_the_stored_bytes(void)
{
	shop_redis_loop *l = real_loop();
	Shop__V1__Order o;
	uint8_t packed[256];
	size_t len;
	struct got g;

	CU_ASSERT_PTR_NOT_NULL_FATAL(l);
	CU_ASSERT_EQUAL(lookup(l, test_id(1), &g), ORDER_CACHE_MISS);
	make_order(&o, test_id(1), 77, "2026-12-04T00:00:01Z");
	len = shop__v1__order__pack(&o, packed);
	CU_ASSERT_EQUAL(order_cache_put(l, &o, 1, 60), 0);
	CU_ASSERT_EQUAL(lookup(l, test_id(1), &g), ORDER_CACHE_HIT);
	CU_ASSERT_EQUAL(g.user_id, 77);
	CU_ASSERT_EQUAL(g.len, len);
	CU_ASSERT(memcmp(g.bytes, packed, len) == 0);
	shop_redis_loop_destroy(l);
}

/* Compare-and-set: an older version never replaces a newer one. */
static void test_order_cache_older_version_never_replaces_newer(void)
{
	shop_redis_loop *l = real_loop();
	Shop__V1__Order v1, v2;
	uint8_t packed[256];
	size_t len;
	struct got g;

	CU_ASSERT_PTR_NOT_NULL_FATAL(l);
	make_order(&v1, test_id(2), 5, "2026-12-04T00:00:01Z");
	make_order(&v2, test_id(2), 5, "2026-12-04T00:00:02Z");
	len = shop__v1__order__pack(&v2, packed);
	CU_ASSERT_EQUAL(order_cache_put(l, &v2, 2, 60), 0);
	CU_ASSERT_EQUAL(order_cache_put(l, &v1, 1, 60), 0); /* refused as older */
	CU_ASSERT_EQUAL(lookup(l, test_id(2), &g), ORDER_CACHE_HIT);
	CU_ASSERT_EQUAL(g.len, len);
	CU_ASSERT(memcmp(g.bytes, packed, len) == 0);
	CU_ASSERT_FALSE(order_cache_is_dirty(test_id(2)));
	shop_redis_loop_destroy(l);
}

/* A fake Redis on 127.0.0.1: "hang" reads and never answers; "extra"
 * answers every command with two replies. */
struct fake {
	int lfd;
	const char *mode;
	pthread_t thr;
	atomic_int commands;
	atomic_bool stop;
	int conns[16];
	atomic_int n_conns; /* conns[0..n_conns) are written before it grows */
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	while (!atomic_load(&f->stop)) {
		int fd = accept(f->lfd, NULL, NULL);
		char buf[4096];
		int held = atomic_load(&f->n_conns);
		ssize_t n;

		if (fd < 0)
			break;
		if (held < 16) {
			f->conns[held] = fd;
			atomic_store(&f->n_conns, held + 1);
		}
		while ((n = read(fd, buf, sizeof(buf))) > 0) {
			atomic_fetch_add(&f->commands, 1);
			if (strcmp(f->mode, "extra") == 0 && write(fd, "$-1\r\n:7\r\n", 9) != 9)
				break;
		}
		if (held >= 16) /* not kept for fake_stop */
			close(fd);
	}
	return NULL;
}

static uint16_t fake_start(struct fake *f, const char *mode)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);

	memset(f, 0, sizeof(*f));
	f->mode = mode;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	CU_ASSERT_FATAL(f->lfd >= 0);
	CU_ASSERT_FATAL(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CU_ASSERT_FATAL(listen(f->lfd, 16) == 0);
	CU_ASSERT_FATAL(getsockname(f->lfd, (struct sockaddr *)&a, &alen) == 0);
	CU_ASSERT_FATAL(pthread_create(&f->thr, NULL, fake_main, f) == 0);
	return ntohs(a.sin_port);
}

static void fake_stop(struct fake *f)
{
	atomic_store(&f->stop, true);
	shutdown(f->lfd, SHUT_RDWR);
	for (int i = 0; i < atomic_load(&f->n_conns); i++)
		shutdown(f->conns[i], SHUT_RDWR);
	pthread_join(f->thr, NULL);
	for (int i = 0; i < atomic_load(&f->n_conns); i++)
		close(f->conns[i]);
	close(f->lfd);
}

/* Redis takes the command and never answers: the lookup is BYPASS when
 * its bound (100 ms) passes, not later; the next lookups are BYPASS at
 * once (backoff); a store then fails within the bound and marks the order
 * dirty. */
static void test_order_cache_hung_redis_is_bypass_within_the_bound(void)
{
	struct fake f;
	uint16_t port = fake_start(&f, "hang");
	shop_redis_loop *l = shop_redis_loop_create("127.0.0.1", port, BOUND_MS);
	Shop__V1__Order o;
	int64_t t0, ms;
	struct got g;

	CU_ASSERT_PTR_NOT_NULL_FATAL(l);
	t0 = shop_now_mono_us();
	CU_ASSERT_EQUAL(lookup(l, test_id(3), &g), ORDER_CACHE_BYPASS);
	ms = (g.at_us - t0) / 1000;
	printf("\n    BYPASS after %lld ms ", (long long)ms);
	CU_ASSERT(ms >= BOUND_MS - 5 && ms < BOUND_MS + 100);
	CU_ASSERT(atomic_load(&f.commands) >= 1); /* it did reach the fake */
	t0 = shop_now_mono_us();
	CU_ASSERT_EQUAL(lookup(l, test_id(3), &g), -1);
	CU_ASSERT((shop_now_mono_us() - t0) / 1000 < 20);
	/* After the backoff (100 ms), a store tries again and times out. */
	usleep(150 * 1000);
	make_order(&o, test_id(3), 9, "2026-12-04T00:00:03Z");
	t0 = shop_now_mono_us();
	CU_ASSERT_EQUAL(order_cache_put(l, &o, 3, 60), -1);
	ms = (shop_now_mono_us() - t0) / 1000;
	CU_ASSERT(ms < BOUND_MS + 100);
	CU_ASSERT_TRUE(order_cache_is_dirty(test_id(3)));
	shop_redis_loop_destroy(l);
	fake_stop(&f);
}

/* A server answering each command twice: the first reply is the answer,
 * the second one nobody asked for drops the connection (hiredis 0.14
 * would abort on it), and the cache keeps working. */
static void test_order_cache_extra_replies_drop_the_connection(void)
{
	struct fake f;
	uint16_t port = fake_start(&f, "extra");
	shop_redis_loop *l = shop_redis_loop_create("127.0.0.1", port, BOUND_MS);
	struct got g;
	int rv;

	CU_ASSERT_PTR_NOT_NULL_FATAL(l);
	rv = lookup(l, test_id(4), &g);
	CU_ASSERT(rv == ORDER_CACHE_MISS || rv == ORDER_CACHE_BYPASS);
	usleep(300 * 1000); /* past the backoff */
	rv = lookup(l, test_id(4), &g);
	CU_ASSERT(rv == ORDER_CACHE_MISS || rv == ORDER_CACHE_BYPASS);
	CU_ASSERT(atomic_load(&f.n_conns) >= 1);
	shop_redis_loop_destroy(l);
	fake_stop(&f);
}

/* Many lookups from several threads at once, on the one connection: each
 * gets exactly its own answer. */
#define STORM_THREADS 4
#define STORM_CALLS   250

static shop_redis_loop *storm_loop;
static atomic_int storm_hits, storm_wrong;

static void *storm_main(void *arg)
{
	int t = (int)(intptr_t)arg;

	for (int i = 0; i < STORM_CALLS; i++) {
		struct got g;
		int n = 10 + (i + t) % 2; /* ids 10 and 11, owners 10 and 11 */

		if (lookup(storm_loop, test_id(n), &g) == ORDER_CACHE_HIT && g.user_id == n)
			atomic_fetch_add(&storm_hits, 1);
		else
			atomic_fetch_add(&storm_wrong, 1);
	}
	return NULL;
}

static void test_order_cache_concurrent_lookups_get_their_own_answers(void)
{
	pthread_t thr[STORM_THREADS];
	Shop__V1__Order o;

	storm_loop = real_loop();
	CU_ASSERT_PTR_NOT_NULL_FATAL(storm_loop);
	for (int n = 10; n <= 11; n++) {
		make_order(&o, test_id(n), n, "2026-12-04T00:00:04Z");
		CU_ASSERT_EQUAL(order_cache_put(storm_loop, &o, 1, 60), 0);
	}
	for (int t = 0; t < STORM_THREADS; t++)
		pthread_create(&thr[t], NULL, storm_main, (void *)(intptr_t)t);
	for (int t = 0; t < STORM_THREADS; t++)
		pthread_join(thr[t], NULL);
	CU_ASSERT_EQUAL(atomic_load(&storm_hits), STORM_THREADS * STORM_CALLS);
	CU_ASSERT_EQUAL(atomic_load(&storm_wrong), 0);
	shop_redis_loop_destroy(storm_loop);
}

/* A stored value that is not a well-formed Order is absent (MISS), as an
 * unpack would have said. */
static void test_order_cache_value_that_does_not_parse_is_a_miss(void)
{
	shop_redis_loop *l = real_loop();
	char key[48];
	const char *argv[4] = {"HSET", key, "b", "\x12\x05xx"}; /* a length past the end */
	struct got g;

	CU_ASSERT_PTR_NOT_NULL_FATAL(l);
	snprintf(key, sizeof(key), "shop:order:v1:%lld", (long long)test_id(5));
	CU_ASSERT_EQUAL(shop_redis_loop_call(l, 4, argv, NULL), REDIS_REPLY_INTEGER);
	CU_ASSERT_EQUAL(lookup(l, test_id(5), &g), ORDER_CACHE_MISS);
	argv[0] = "DEL";
	shop_redis_loop_call(l, 2, argv, NULL);
	shop_redis_loop_destroy(l);
}

SHOP_TEST_MAIN(
    "order_cache", {"a HIT is the stored bytes", test_order_cache_hit_is_the_stored_bytes},
    {"an older version never replaces a newer one",
     test_order_cache_older_version_never_replaces_newer},
    {"a hung Redis is BYPASS within the bound",
     test_order_cache_hung_redis_is_bypass_within_the_bound},
    {"extra replies drop the connection", test_order_cache_extra_replies_drop_the_connection},
    {"concurrent lookups get their own answers",
     test_order_cache_concurrent_lookups_get_their_own_answers},
    {"a value that does not parse is a MISS", test_order_cache_value_that_does_not_parse_is_a_miss})
