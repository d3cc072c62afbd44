/* test_balancer.c -- tests of lib/balancer.c: weighted random choice. */
#include "../cunit_main.h"

#include "balancer.h"

static void test_balancer_none_to_pick(void)
{
	uint32_t zero[2] = {0, 0};

	CU_ASSERT_EQUAL(shop_balancer_pick(NULL, 0, 1), -1);
	CU_ASSERT_EQUAL(shop_balancer_pick(zero, 2, 1), -1);
}

static void test_balancer_zero_weight_never_picked(void)
{
	uint32_t w[3] = {0, 5, 0};

	for (int i = 0; i < 1000; i++)
		CU_ASSERT_EQUAL(shop_balancer_pick(w, 3, shop_random_u64()), 1);
}

static void test_balancer_edges_of_the_range(void)
{
	uint32_t w[2] = {70, 30};

	CU_ASSERT_EQUAL(shop_balancer_pick(w, 2, 0), 0);
	CU_ASSERT_EQUAL(shop_balancer_pick(w, 2, UINT64_MAX), 1);
}

/* 70 : 30 over 100 000 draws: the share of the first must be within 1 % of
 * 0.70 (about 7 standard deviations: a correct picker never fails this,
 * a biased or inverted one always does). */
static void test_balancer_weights_70_30(void)
{
	uint32_t w[2] = {70, 30};
	int count[2] = {0, 0};

	for (int i = 0; i < 100000; i++)
		count[shop_balancer_pick(w, 2, shop_random_u64())]++;
	CU_ASSERT(count[0] > 69000 && count[0] < 71000);
}

/* With one of three instances left out, the other two share by their own
 * weights. */
static void test_balancer_renormalises(void)
{
	uint32_t w[2] = {10, 30};
	int count[2] = {0, 0};

	for (int i = 0; i < 100000; i++)
		count[shop_balancer_pick(w, 2, shop_random_u64())]++;
	CU_ASSERT(count[0] > 24000 && count[0] < 26000);
}

SHOP_TEST_MAIN("balancer", {"nothing to pick", test_balancer_none_to_pick},
	       {"zero weight never picked", test_balancer_zero_weight_never_picked},
	       {"edges of the random range", test_balancer_edges_of_the_range},
	       {"70:30 statistics", test_balancer_weights_70_30},
	       {"re-normalises over the rest", test_balancer_renormalises})
