/* test_hash_gate.c -- svc-auth/hash_gate.c: what is admitted, what is shed at
 * once, in which order admitted hashes run. The "hash" is a sleep of a
 * known length, so that the estimates are known too. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "../cunit_main.h"

#include "clock.h"
#include "../../svc-auth/hash_gate.h"

static atomic_int running_now, running_max, order_next;

struct job {
	auth_hash_gate *g;
	const char *client;
	int64_t deadline_unix_ms;
	int sleep_ms;
	auth_gate_result res;
	int fn_rv;
	int retry;
	int order; /* when fn ran: 0, 1, 2... */
	pthread_t thr;
};

static int fake_hash(void *arg)
{
	struct job *j = arg;
	int now = atomic_fetch_add(&running_now, 1) + 1, max;

	j->order = atomic_fetch_add(&order_next, 1);
	while (now > (max = atomic_load(&running_max)) &&
	       !atomic_compare_exchange_weak(&running_max, &max, now))
		;
	usleep((useconds_t)j->sleep_ms * 1000);
	atomic_fetch_sub(&running_now, 1);
	return 7;
}

static void *job_main(void *arg)
{
	struct job *j = arg;

	j->res = auth_hash_gate_run(j->g, j->client, j->deadline_unix_ms, fake_hash, j, &j->fn_rv,
				    &j->retry);
	return NULL;
}

static void job_start(struct job *j, auth_hash_gate *g, const char *client, int64_t deadline_ms,
		      int sleep_ms)
{
	memset(j, 0, sizeof(*j));
	j->g = g;
	j->client = client;
	j->deadline_unix_ms = deadline_ms;
	j->sleep_ms = sleep_ms;
	j->order = -1;
	pthread_create(&j->thr, NULL, job_main, j);
}

static void reset(void)
{
	atomic_store(&running_now, 0);
	atomic_store(&running_max, 0);
	atomic_store(&order_next, 0);
}

static auth_hash_gate *gate(unsigned conc, unsigned max_admitted, unsigned per_client,
			    int64_t est_us)
{
	auth_hash_gate_config c = {.concurrency = conc,
				   .max_admitted = max_admitted,
				   .per_client = per_client,
				   .initial_hash_us = est_us};

	reset();
	return auth_hash_gate_create(&c);
}

static void test_hash_gate_runs_at_most_concurrency_at_once(void)
{
	/* Hashes of 200 ms: long enough that under valgrind, whose threads
	 * start tens of milliseconds apart, two of them still overlap. */
	auth_hash_gate *g = gate(2, 8, 0, 200000);
	struct job j[6];

	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	for (int i = 0; i < 6; i++)
		job_start(&j[i], g, NULL, shop_now_unix_ms() + 10000, 200);
	for (int i = 0; i < 6; i++) {
		pthread_join(j[i].thr, NULL);
		CU_ASSERT_EQUAL(j[i].res, AUTH_GATE_RAN);
		CU_ASSERT_EQUAL(j[i].fn_rv, 7);
	}
	CU_ASSERT_EQUAL(atomic_load(&running_max), 2);
	auth_hash_gate_destroy(g);
}

/* One hash of ~100 ms runs: a call with 120 ms left would end at ~200 ms,
 * so it is refused at once, without running, and told when to retry. */
static void test_hash_gate_sheds_at_once_what_cannot_meet_its_deadline(void)
{
	auth_hash_gate *g = gate(1, 8, 0, 100000);
	struct job busy, late, fits;
	int64_t t0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	job_start(&busy, g, NULL, shop_now_unix_ms() + 10000, 100);
	usleep(20000);
	t0 = shop_now_mono_us();
	job_start(&late, g, NULL, shop_now_unix_ms() + 120, 100);
	pthread_join(late.thr, NULL);
	CU_ASSERT(shop_now_mono_us() - t0 < 50000);
	CU_ASSERT_EQUAL(late.res, AUTH_GATE_OVERLOADED);
	CU_ASSERT_EQUAL(late.order, -1);
	CU_ASSERT(late.retry >= 1);
	/* 1 s left: admitted, waits its turn, runs. */
	job_start(&fits, g, NULL, shop_now_unix_ms() + 1000, 10);
	pthread_join(fits.thr, NULL);
	pthread_join(busy.thr, NULL);
	CU_ASSERT_EQUAL(busy.res, AUTH_GATE_RAN);
	CU_ASSERT_EQUAL(fits.res, AUTH_GATE_RAN);
	CU_ASSERT_EQUAL(fits.order, 1);
	auth_hash_gate_destroy(g);
}

static void test_hash_gate_admits_at_most_max_admitted(void)
{
	auth_hash_gate *g = gate(1, 3, 0, 1000);
	struct job j[4];

	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	for (int i = 0; i < 3; i++)
		job_start(&j[i], g, NULL, 0, 150);
	usleep(50000);
	job_start(&j[3], g, NULL, 0, 10);
	pthread_join(j[3].thr, NULL);
	CU_ASSERT_EQUAL(j[3].res, AUTH_GATE_OVERLOADED);
	for (int i = 0; i < 3; i++) {
		pthread_join(j[i].thr, NULL);
		CU_ASSERT_EQUAL(j[i].res, AUTH_GATE_RAN);
	}
	auth_hash_gate_destroy(g);
}

/* One client may hold per_client admitted hashes; another client still
 * gets in. */
static void test_hash_gate_limits_one_client_to_its_share(void)
{
	auth_hash_gate *g = gate(1, 8, 2, 1000);
	struct job a[3], b;

	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	job_start(&a[0], g, "10.0.0.1", 0, 150);
	job_start(&a[1], g, "10.0.0.1", 0, 150);
	usleep(50000);
	job_start(&a[2], g, "10.0.0.1", 0, 10);
	pthread_join(a[2].thr, NULL);
	CU_ASSERT_EQUAL(a[2].res, AUTH_GATE_CLIENT_BUSY);
	CU_ASSERT(a[2].retry >= 1);
	job_start(&b, g, "10.0.0.2", 0, 10);
	pthread_join(b.thr, NULL);
	CU_ASSERT_EQUAL(b.res, AUTH_GATE_RAN);
	pthread_join(a[0].thr, NULL);
	pthread_join(a[1].thr, NULL);
	/* Its share is back once its hashes ended. */
	job_start(&a[2], g, "10.0.0.1", 0, 1);
	pthread_join(a[2].thr, NULL);
	CU_ASSERT_EQUAL(a[2].res, AUTH_GATE_RAN);
	auth_hash_gate_destroy(g);
}

/* Admitted hashes start in arrival order. */
static void test_hash_gate_runs_in_arrival_order(void)
{
	auth_hash_gate *g = gate(1, 8, 0, 1000);
	struct job j[5];

	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	for (int i = 0; i < 5; i++) {
		job_start(&j[i], g, NULL, 0, 40);
		usleep(10000);
	}
	for (int i = 0; i < 5; i++) {
		pthread_join(j[i].thr, NULL);
		CU_ASSERT_EQUAL(j[i].order, i);
	}
	auth_hash_gate_destroy(g);
}

/* The estimate follows what hashes really take. */
static void test_hash_gate_estimate_follows_the_measures(void)
{
	auth_hash_gate *g = gate(1, 8, 0, 1000);
	struct job j;
	int64_t est;

	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	for (int i = 0; i < 12; i++) {
		job_start(&j, g, NULL, 0, 20);
		pthread_join(j.thr, NULL);
	}
	est = auth_hash_gate_estimate_us(g);
	CU_ASSERT(est > 15000 && est < 60000);
	auth_hash_gate_destroy(g);
}

/* auth_hash_gate_check gives what run would, without taking a place:
 * free gate: admitted, and checking it any number of times admits no one;
 * a client at its share (2 of 2 running): CLIENT_BUSY for it, admitted for
 * another; gate full: OVERLOADED; a deadline too near: OVERLOADED; each
 * refusal with a Retry-After. */
static void test_hash_gate_check_answers_as_run_would(void)
{
	auth_hash_gate *g = gate(2, 3, 2, 50000);
	int64_t far = shop_now_unix_ms() + 10000;
	struct job j[3];
	int retry = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	for (int i = 0; i < 100; i++)
		CU_ASSERT_EQUAL(auth_hash_gate_check(g, "10.0.0.1", far, &retry), AUTH_GATE_RAN);
	job_start(&j[0], g, "10.0.0.1", far, 200);
	job_start(&j[1], g, "10.0.0.1", far, 200);
	usleep(50000);
	CU_ASSERT_EQUAL(auth_hash_gate_check(g, "10.0.0.1", far, &retry), AUTH_GATE_CLIENT_BUSY);
	CU_ASSERT(retry >= 1);
	CU_ASSERT_EQUAL(auth_hash_gate_check(g, "10.0.0.2", far, &retry), AUTH_GATE_RAN);
	/* 50 ms a hash, two running: one more would end ~100 ms from now. */
	retry = 0;
	CU_ASSERT_EQUAL(auth_hash_gate_check(g, "10.0.0.2", shop_now_unix_ms() + 60, &retry),
			AUTH_GATE_OVERLOADED);
	CU_ASSERT(retry >= 1);
	job_start(&j[2], g, "10.0.0.3", far, 200);
	usleep(50000);
	retry = 0;
	CU_ASSERT_EQUAL(auth_hash_gate_check(g, "10.0.0.4", far, &retry), AUTH_GATE_OVERLOADED);
	CU_ASSERT(retry >= 1);
	for (int i = 0; i < 3; i++) {
		pthread_join(j[i].thr, NULL);
		CU_ASSERT_EQUAL(j[i].res, AUTH_GATE_RAN);
	}
	CU_ASSERT_EQUAL(auth_hash_gate_check(g, "10.0.0.1", far, &retry), AUTH_GATE_RAN);
	auth_hash_gate_destroy(g);
}

static void test_hash_gate_refuses_a_bad_config(void)
{
	auth_hash_gate_config c = {.concurrency = 0, .max_admitted = 4};

	CU_ASSERT_PTR_NULL(auth_hash_gate_create(&c));
	c.concurrency = 5;
	CU_ASSERT_PTR_NULL(auth_hash_gate_create(&c));
	CU_ASSERT_PTR_NULL(auth_hash_gate_create(NULL));
	auth_hash_gate_destroy(NULL);
}

/* A burst's refusals are told to come back later than one lone refusal:
 * each will want its hash (100 ms each, one at a time: 30 of them ~3 s). */
static void test_hash_gate_retry_after_grows_with_the_burst(void)
{
	auth_hash_gate *g = gate(1, 1, 0, 100000);
	struct job busy, late;
	int first = 0, last = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	job_start(&busy, g, NULL, 0, 200);
	usleep(20000);
	for (int i = 0; i < 30; i++) {
		job_start(&late, g, NULL, 0, 1);
		pthread_join(late.thr, NULL);
		CU_ASSERT_EQUAL(late.res, AUTH_GATE_OVERLOADED);
		if (i == 0)
			first = late.retry;
		last = late.retry;
	}
	CU_ASSERT_EQUAL(first, 1);
	CU_ASSERT(last >= 3 && last <= 5);
	pthread_join(busy.thr, NULL);
	auth_hash_gate_destroy(g);
}

SHOP_TEST_MAIN("hash_gate",
	       {"runs at most concurrency at once",
		test_hash_gate_runs_at_most_concurrency_at_once},
	       {"sheds at once what cannot meet its deadline",
		test_hash_gate_sheds_at_once_what_cannot_meet_its_deadline},
	       {"admits at most max_admitted", test_hash_gate_admits_at_most_max_admitted},
	       {"limits one client to its share", test_hash_gate_limits_one_client_to_its_share},
	       {"runs in arrival order", test_hash_gate_runs_in_arrival_order},
	       {"estimate follows the measures", test_hash_gate_estimate_follows_the_measures},
	       {"retry-after grows with the burst",
		test_hash_gate_retry_after_grows_with_the_burst},
	       {"check answers as run would", test_hash_gate_check_answers_as_run_would},
	       {"refuses a bad config", test_hash_gate_refuses_a_bad_config})
