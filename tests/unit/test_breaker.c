/* test_breaker.c -- tests of lib/breaker.c: every transition of the state
 * machine, driven by an injected clock (no sleeps). */
#include "../cunit_main.h"
#include "breaker.h"

#define SEC 1000000LL

static shop_breaker *make(void)
{
	shop_breaker_config c;

	shop_breaker_config_default(&c);
	c.slow_call_us = 2 * SEC;
	return shop_breaker_create(&c, "test:instance");
}

static shop_breaker_state state(shop_breaker *b, int64_t now)
{
	shop_breaker_stats s;

	shop_breaker_stats_get(b, now, &s);
	return s.state;
}

/* Makes n admitted calls at time now with the given outcome. */
static void calls(shop_breaker *b, int n, bool ok, int64_t now)
{
	for (int i = 0; i < n; i++) {
		CU_ASSERT_TRUE(shop_breaker_admit(b, now));
		shop_breaker_record(b, ok, 1000, now);
	}
}

static void test_breaker_starts_closed_and_admits(void)
{
	shop_breaker *b = make();

	CU_ASSERT_EQUAL(state(b, 0), SHOP_BREAKER_CLOSED);
	calls(b, 100, true, 0);
	CU_ASSERT_EQUAL(state(b, 0), SHOP_BREAKER_CLOSED);
	shop_breaker_destroy(b);
}

static void test_breaker_needs_min_calls(void)
{
	shop_breaker *b = make();

	calls(b, 9, false, 0); /* 100 % failed, but only 9 calls */
	CU_ASSERT_EQUAL(state(b, 0), SHOP_BREAKER_CLOSED);
	calls(b, 1, false, 0);
	CU_ASSERT_EQUAL(state(b, 0), SHOP_BREAKER_OPEN);
	shop_breaker_destroy(b);
}

static void test_breaker_opens_on_failure_rate(void)
{
	shop_breaker *b = make();
	shop_breaker_stats s;

	calls(b, 10, true, 0);
	calls(b, 9, false, 0); /* 9 of 19: 47 % */
	CU_ASSERT_EQUAL(state(b, 0), SHOP_BREAKER_CLOSED);
	shop_breaker_stats_get(b, 0, &s);
	CU_ASSERT_EQUAL(s.failure_rate_pct, 47);
	calls(b, 1, false, 0); /* 10 of 20: 50 % */
	CU_ASSERT_EQUAL(state(b, 0), SHOP_BREAKER_OPEN);
	shop_breaker_destroy(b);
}

static void test_breaker_window_forgets_old_calls(void)
{
	shop_breaker *b = make();

	calls(b, 11, true, 0);
	calls(b, 9, false, 0); /* 9 of 20: 45 % */
	CU_ASSERT_EQUAL(state(b, 0), SHOP_BREAKER_CLOSED);
	calls(b, 20, true, 0); /* the 9 failures slide out of the window of 20 */
	calls(b, 9, false, 0); /* 9 of 20 again, not 18 */
	CU_ASSERT_EQUAL(state(b, 0), SHOP_BREAKER_CLOSED);
	shop_breaker_destroy(b);
}

static void test_breaker_counts_slow_calls_as_failed(void)
{
	shop_breaker *b = make();

	for (int i = 0; i < 10; i++) {
		CU_ASSERT_TRUE(shop_breaker_admit(b, 0));
		shop_breaker_record(b, true, 3 * SEC, 0);
	}
	CU_ASSERT_EQUAL(state(b, 0), SHOP_BREAKER_OPEN);
	shop_breaker_destroy(b);
}

static void test_breaker_open_refuses_and_counts(void)
{
	shop_breaker *b = make();
	shop_breaker_stats s;

	shop_breaker_trip(b, 0);
	CU_ASSERT_FALSE(shop_breaker_admit(b, 1));
	CU_ASSERT_FALSE(shop_breaker_admit(b, 4 * SEC));
	CU_ASSERT_FALSE(shop_breaker_would_admit(b, 4 * SEC));
	shop_breaker_stats_get(b, 4 * SEC, &s);
	CU_ASSERT_EQUAL(s.not_permitted, 2);
	CU_ASSERT_EQUAL(s.state, SHOP_BREAKER_OPEN);
	shop_breaker_destroy(b);
}

static void test_breaker_trip_opens_at_once(void)
{
	shop_breaker *b = make();

	calls(b, 5, true, 0);
	shop_breaker_trip(b, 10);
	CU_ASSERT_EQUAL(state(b, 10), SHOP_BREAKER_OPEN);
	shop_breaker_destroy(b);
}

static void test_breaker_half_open_after_wait(void)
{
	shop_breaker *b = make();

	shop_breaker_trip(b, 0);
	CU_ASSERT_EQUAL(state(b, 5 * SEC - 1), SHOP_BREAKER_OPEN);
	CU_ASSERT_EQUAL(state(b, 5 * SEC), SHOP_BREAKER_HALF_OPEN);
	shop_breaker_destroy(b);
}

static void test_breaker_half_open_admits_three_trials(void)
{
	shop_breaker *b = make();

	shop_breaker_trip(b, 0);
	CU_ASSERT_TRUE(shop_breaker_admit(b, 5 * SEC));
	CU_ASSERT_TRUE(shop_breaker_admit(b, 5 * SEC));
	CU_ASSERT_TRUE(shop_breaker_would_admit(b, 5 * SEC));
	CU_ASSERT_TRUE(shop_breaker_admit(b, 5 * SEC));
	CU_ASSERT_FALSE(shop_breaker_would_admit(b, 5 * SEC));
	CU_ASSERT_FALSE(shop_breaker_admit(b, 5 * SEC)); /* a fourth waits */
	shop_breaker_destroy(b);
}

static void test_breaker_half_open_closes_when_trials_succeed(void)
{
	shop_breaker *b = make();

	shop_breaker_trip(b, 0);
	calls(b, 2, true, 5 * SEC);
	CU_ASSERT_EQUAL(state(b, 5 * SEC), SHOP_BREAKER_HALF_OPEN);
	calls(b, 1, true, 5 * SEC);
	CU_ASSERT_EQUAL(state(b, 5 * SEC), SHOP_BREAKER_CLOSED);
	/* Closed with an empty window: 9 failures do not reopen it. */
	calls(b, 9, false, 5 * SEC);
	CU_ASSERT_EQUAL(state(b, 5 * SEC), SHOP_BREAKER_CLOSED);
	shop_breaker_destroy(b);
}

static void test_breaker_half_open_reopens_on_failure(void)
{
	shop_breaker *b = make();

	shop_breaker_trip(b, 0);
	calls(b, 2, true, 5 * SEC);
	calls(b, 1, false, 6 * SEC);
	CU_ASSERT_EQUAL(state(b, 6 * SEC), SHOP_BREAKER_OPEN);
	/* And waits a full open period from the new opening. */
	CU_ASSERT_EQUAL(state(b, 11 * SEC - 1), SHOP_BREAKER_OPEN);
	CU_ASSERT_EQUAL(state(b, 11 * SEC), SHOP_BREAKER_HALF_OPEN);
	shop_breaker_destroy(b);
}

static void test_breaker_half_open_trials_that_never_report_expire(void)
{
	shop_breaker *b = make();

	shop_breaker_trip(b, 0);
	for (int i = 0; i < 3; i++)
		CU_ASSERT_TRUE(shop_breaker_admit(b, 5 * SEC)); /* never recorded */
	CU_ASSERT_FALSE(shop_breaker_would_admit(b, 10 * SEC - 1));
	/* An open wait later it opens again, then offers fresh trials. */
	CU_ASSERT_EQUAL(state(b, 10 * SEC), SHOP_BREAKER_OPEN);
	CU_ASSERT_EQUAL(state(b, 15 * SEC), SHOP_BREAKER_HALF_OPEN);
	calls(b, 3, true, 15 * SEC);
	CU_ASSERT_EQUAL(state(b, 15 * SEC), SHOP_BREAKER_CLOSED);
	shop_breaker_destroy(b);
}

static void test_breaker_retry_now_half_opens_an_open_breaker(void)
{
	shop_breaker *b = make();

	shop_breaker_trip(b, 0);
	CU_ASSERT_FALSE(shop_breaker_would_admit(b, 1 * SEC));
	/* The instance is back one second later: trials at once. */
	CU_ASSERT_TRUE(shop_breaker_retry_now(b, 1 * SEC));
	CU_ASSERT_EQUAL(state(b, 1 * SEC), SHOP_BREAKER_HALF_OPEN);
	for (int i = 0; i < 3; i++)
		CU_ASSERT_TRUE(shop_breaker_admit(b, 1 * SEC));
	CU_ASSERT_FALSE(shop_breaker_admit(b, 1 * SEC)); /* three trials, no more */
	for (int i = 0; i < 3; i++)
		shop_breaker_record(b, true, 1000, 1 * SEC);
	CU_ASSERT_EQUAL(state(b, 1 * SEC), SHOP_BREAKER_CLOSED);
	shop_breaker_destroy(b);
}

static void test_breaker_retry_now_trials_are_fresh(void)
{
	shop_breaker *b = make();

	/* Half-open after the wait, every trial handed out, one failed:
	 * open again at 6 s. */
	shop_breaker_trip(b, 0);
	for (int i = 0; i < 3; i++)
		CU_ASSERT_TRUE(shop_breaker_admit(b, 5 * SEC));
	shop_breaker_record(b, false, 1000, 6 * SEC);
	CU_ASSERT_EQUAL(state(b, 6 * SEC), SHOP_BREAKER_OPEN);
	/* Back at 7 s: three new trials, none counted from before, and the
	 * half-open clock starts again (no expiry of old trials at 10 s). */
	CU_ASSERT_TRUE(shop_breaker_retry_now(b, 7 * SEC));
	calls(b, 2, true, 7 * SEC);
	CU_ASSERT_TRUE(shop_breaker_admit(b, 7 * SEC));
	CU_ASSERT_EQUAL(state(b, 11 * SEC), SHOP_BREAKER_HALF_OPEN);
	shop_breaker_record(b, true, 1000, 11 * SEC);
	CU_ASSERT_EQUAL(state(b, 11 * SEC), SHOP_BREAKER_CLOSED);
	shop_breaker_destroy(b);
}

static void test_breaker_retry_now_leaves_closed_and_half_open(void)
{
	shop_breaker *b = make();

	calls(b, 5, false, 0); /* closed, half its window failed */
	CU_ASSERT_FALSE(shop_breaker_retry_now(b, 0));
	CU_ASSERT_EQUAL(state(b, 0), SHOP_BREAKER_CLOSED);
	calls(b, 5, false, 0); /* the window is kept: 10 of 10 failed opens it */
	CU_ASSERT_EQUAL(state(b, 0), SHOP_BREAKER_OPEN);
	CU_ASSERT_TRUE(shop_breaker_retry_now(b, 0));
	CU_ASSERT_TRUE(shop_breaker_admit(b, 0));
	CU_ASSERT_TRUE(shop_breaker_admit(b, 0));
	/* Already half-open: a second "back" hands out no extra trials. */
	CU_ASSERT_FALSE(shop_breaker_retry_now(b, 0));
	CU_ASSERT_TRUE(shop_breaker_admit(b, 0));
	CU_ASSERT_FALSE(shop_breaker_admit(b, 0));
	shop_breaker_destroy(b);
}

/* A released call (shed: no outcome) counts neither way: closed, a window
 * of released calls never opens it and totals stay 0; half-open, the trial
 * slot comes back, and the breaker closes only on three real successes. */
static void test_breaker_release_counts_nothing(void)
{
	shop_breaker *b = make();
	shop_breaker_stats s;

	for (int i = 0; i < 100; i++) {
		CU_ASSERT_TRUE(shop_breaker_admit(b, 0));
		shop_breaker_release(b);
	}
	calls(b, 9, false, 0); /* 9 failures: below min_calls, as if alone */
	CU_ASSERT_EQUAL(state(b, 0), SHOP_BREAKER_CLOSED);
	shop_breaker_stats_get(b, 0, &s);
	CU_ASSERT_EQUAL(s.successful, 0);
	CU_ASSERT_EQUAL(s.failed, 9);
	CU_ASSERT_EQUAL(s.failure_rate_pct, -1);
	calls(b, 1, false, 0);
	CU_ASSERT_EQUAL(state(b, 0), SHOP_BREAKER_OPEN);
	/* Half-open: three trials out, all released; three more are admitted. */
	CU_ASSERT_EQUAL(state(b, 5 * SEC), SHOP_BREAKER_HALF_OPEN);
	for (int i = 0; i < 3; i++)
		CU_ASSERT_TRUE(shop_breaker_admit(b, 5 * SEC));
	CU_ASSERT_FALSE(shop_breaker_admit(b, 5 * SEC));
	for (int i = 0; i < 3; i++)
		shop_breaker_release(b);
	CU_ASSERT_EQUAL(state(b, 5 * SEC), SHOP_BREAKER_HALF_OPEN);
	calls(b, 3, true, 5 * SEC);
	CU_ASSERT_EQUAL(state(b, 5 * SEC), SHOP_BREAKER_CLOSED);
	shop_breaker_destroy(b);
}

static void test_breaker_totals(void)
{
	shop_breaker *b = make();
	shop_breaker_stats s;

	calls(b, 7, true, 0);
	calls(b, 2, false, 0);
	shop_breaker_stats_get(b, 0, &s);
	CU_ASSERT_EQUAL(s.successful, 7);
	CU_ASSERT_EQUAL(s.failed, 2);
	CU_ASSERT_EQUAL(s.failure_rate_pct, -1); /* below min_calls */
	shop_breaker_destroy(b);
}

static void test_breaker_rejects_bad_config(void)
{
	shop_breaker_config c;

	shop_breaker_config_default(&c);
	c.failure_rate_pct = 0;
	CU_ASSERT_PTR_NULL(shop_breaker_create(&c, "x"));
	shop_breaker_config_default(&c);
	c.window = 0;
	CU_ASSERT_PTR_NULL(shop_breaker_create(&c, "x"));
}

SHOP_TEST_MAIN(
    "breaker", {"starts closed and admits", test_breaker_starts_closed_and_admits},
    {"needs min calls", test_breaker_needs_min_calls},
    {"opens on failure rate", test_breaker_opens_on_failure_rate},
    {"window forgets old calls", test_breaker_window_forgets_old_calls},
    {"counts slow calls as failed", test_breaker_counts_slow_calls_as_failed},
    {"open refuses and counts", test_breaker_open_refuses_and_counts},
    {"trip opens at once", test_breaker_trip_opens_at_once},
    {"half-open after the wait", test_breaker_half_open_after_wait},
    {"half-open admits three trials", test_breaker_half_open_admits_three_trials},
    {"half-open closes when trials succeed", test_breaker_half_open_closes_when_trials_succeed},
    {"half-open reopens on failure", test_breaker_half_open_reopens_on_failure},
    {"half-open trials that never report expire",
     test_breaker_half_open_trials_that_never_report_expire},
    {"retry_now half-opens an open breaker", test_breaker_retry_now_half_opens_an_open_breaker},
    {"retry_now trials are fresh", test_breaker_retry_now_trials_are_fresh},
    {"retry_now leaves closed and half-open", test_breaker_retry_now_leaves_closed_and_half_open},
    {"release counts nothing", test_breaker_release_counts_nothing},
    {"totals", test_breaker_totals}, {"rejects bad config", test_breaker_rejects_bad_config})
