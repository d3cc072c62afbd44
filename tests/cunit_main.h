/* cunit_main.h -- the one main() every CUnit test program shares. */
#ifndef SHOP_CUNIT_MAIN_H
#define SHOP_CUNIT_MAIN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <CUnit/TestRun.h>

typedef struct shop_test {
	const char *name; /* says the behaviour */
	void (*fn)(void);
} shop_test;

/* The hang guard. A test that runs for SHOP_TEST_HANG_S seconds (45 by
 * default; meson's own timeout is 60 or 120 s and only says "TIMEOUT") is
 * stuck: the guard prints its name and every thread's stack (gdb, which
 * ./shop installs), calls shop_test_hang_hook (a program's children), and
 * ends the process with status 124. Started before the tests run,
 * stopped (joined) after them. */
static void (*shop_test_hang_hook)(void);
static struct {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool stop;
	bool started;
	int limit_s;
	pthread_t thread;
} shop_hang_guard = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0, 0};

static void shop_test_dump_stacks(void)
{
	static const char gdb[] = "/usr/bin/gdb";
	char pid[24];
	pid_t child;

	if (access(gdb, X_OK) != 0) {
		fprintf(stderr, "hang guard: %s is not installed: no stacks\n", gdb);
		return;
	}
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0); /* for a non-root run */
	if ((child = fork()) == 0) {
		dup2(STDERR_FILENO, STDOUT_FILENO);
		execl(gdb, gdb, "-nx", "-batch", "-p", pid, "-ex", "thread apply all bt 30",
		      (char *)NULL);
		_exit(127);
	}
	if (child > 0)
		waitpid(child, NULL, 0);
}

static void *shop_test_hang_guard_main(void *arg)
{
	CU_pTest seen = NULL, t;
	struct timespec until;
	time_t since = 0;
	bool stop;

	(void)arg;
	for (;;) {
		clock_gettime(CLOCK_REALTIME, &until); /* the cv's clock */
		until.tv_sec++;
		pthread_mutex_lock(&shop_hang_guard.mtx);
		if (!shop_hang_guard.stop)
			pthread_cond_timedwait(&shop_hang_guard.cv, &shop_hang_guard.mtx, &until);
		stop = shop_hang_guard.stop;
		pthread_mutex_unlock(&shop_hang_guard.mtx);
		if (stop)
			return NULL;
		if ((t = CU_get_current_test()) != seen) {
			seen = t;
			since = time(NULL);
			continue;
		}
		if (t == NULL || time(NULL) - since < shop_hang_guard.limit_s)
			continue;
		fprintf(stderr, "\nhang guard: test \"%s\" still runs after %d s; every thread:\n",
			t->pName, shop_hang_guard.limit_s);
		shop_test_dump_stacks();
		if (shop_test_hang_hook != NULL)
			shop_test_hang_hook();
		fflush(NULL);
		_exit(124);
	}
	return NULL;
}

static inline void shop_test_hang_guard_start(void)
{
	const char *env = getenv("SHOP_TEST_HANG_S");

	shop_hang_guard.limit_s = env != NULL && atoi(env) > 0 ? atoi(env) : 45;
	shop_hang_guard.started =
	    pthread_create(&shop_hang_guard.thread, NULL, shop_test_hang_guard_main, NULL) == 0;
}

static inline void shop_test_hang_guard_stop(void)
{
	if (!shop_hang_guard.started)
		return;
	pthread_mutex_lock(&shop_hang_guard.mtx);
	shop_hang_guard.stop = true;
	pthread_cond_signal(&shop_hang_guard.cv);
	pthread_mutex_unlock(&shop_hang_guard.mtx);
	pthread_join(shop_hang_guard.thread, NULL);
	shop_hang_guard.started = false;
}

/* Runs the tests as one suite with its init and fini (NULL: none);
 * returns the process exit status (0 when every assertion held and the
 * suite's init and fini succeeded). */
static inline int shop_test_run_suite(const char *suite, int (*init)(void), int (*fini)(void),
				      const shop_test *tests, size_t n)
{
	CU_pSuite s;
	unsigned fails;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	shop_test_hang_guard_start();
	s = CU_add_suite(suite, init, fini);
	for (size_t i = 0; s != NULL && i < n; i++)
		CU_add_test(s, tests[i].name, tests[i].fn);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	shop_test_hang_guard_stop();
	fails = CU_get_number_of_failures() + CU_get_number_of_tests_failed() +
		CU_get_number_of_suites_failed();
	CU_cleanup_registry();
	return fails == 0 ? 0 : 1;
}

/* The same, without init or fini. */
static inline int shop_test_run(const char *suite, const shop_test *tests, size_t n)
{
	return shop_test_run_suite(suite, NULL, NULL, tests, n);
}

#define SHOP_TEST_MAIN(suite, ...)                                                                 \
	int main(void)                                                                             \
	{                                                                                          \
		static const shop_test tests[] = {__VA_ARGS__};                                    \
		return shop_test_run(suite, tests, sizeof(tests) / sizeof(tests[0]));              \
	}

#endif
