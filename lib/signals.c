/* signals.c -- the stop signals, taken synchronously (signals.h). */
#include "signals.h"

#include <pthread.h>

void shop_stop_signals_block(sigset_t *set)
{
	sigset_t sigs;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (set != NULL)
		*set = sigs;
}

int shop_stop_signal_wait(const sigset_t *set)
{
	int sig = 0;

	while (sigwait(set, &sig) != 0)
		;
	return sig;
}
