/* stop_watchdog.c -- see stop_watchdog.h. */
#include "stop_watchdog.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static void *stop_watchdog(void *arg)
{
	int64_t budget_ms = *(int64_t *)arg;

	nanosleep(&(struct timespec){budget_ms / 1000, (budget_ms % 1000) * 1000000L}, NULL);
	SHOP_LOG(ERROR,
		 "stop did not finish in %lld ms (nng's pipe reaper is stuck: see "
		 "docs/decisions.md); exiting now",
		 (long long)budget_ms);
	_exit(SHOP_STOP_WATCHDOG_STATUS);
	return NULL;
}

int shop_stop_watchdog_start(int64_t budget_ms)
{
	static int64_t budget; /* one stop per process */
	pthread_t t;
	int rv;

	budget = budget_ms;
	if ((rv = pthread_create(&t, NULL, stop_watchdog, &budget)) != 0)
		return rv;
	pthread_detach(t);
	return 0;
}
