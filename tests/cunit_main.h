/* cunit_main.h -- the one main() every CUnit test program shares. */
#ifndef SHOP_CUNIT_MAIN_H
#define SHOP_CUNIT_MAIN_H

#include <stddef.h>

#include <CUnit/Basic.h>

typedef struct shop_test {
	const char *name; /* says the behaviour */
	void (*fn)(void);
} shop_test;

/* Runs the tests as one suite; returns the process exit status (0 when
 * every assertion held). */
static inline int shop_test_run(const char *suite, const shop_test *tests, size_t n)
{
	CU_pSuite s;
	unsigned fails;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite(suite, NULL, NULL);
	for (size_t i = 0; i < n; i++)
		CU_add_test(s, tests[i].name, tests[i].fn);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return fails == 0 ? 0 : 1;
}

#define SHOP_TEST_MAIN(suite, ...)                                                                 \
	int main(void)                                                                             \
	{                                                                                          \
		static const shop_test tests[] = {__VA_ARGS__};                                    \
		return shop_test_run(suite, tests, sizeof(tests) / sizeof(tests[0]));              \
	}

#endif
