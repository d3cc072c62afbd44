/* signals.h -- the stop signals, taken synchronously: SIGTERM and SIGINT
 * blocked in every thread and waited for by one, SIGPIPE ignored (a write
 * to a closed socket is an error return, never a signal). */
#ifndef SHOP_SIGNALS_H
#define SHOP_SIGNALS_H

#include <signal.h>

/* Blocks SIGTERM and SIGINT in the calling thread and ignores SIGPIPE;
 * call before any thread starts (nng's included), so that every thread
 * inherits the mask and no handler runs on a library thread. *set, when
 * not NULL, receives the blocked set for shop_stop_signal_wait. */
void shop_stop_signals_block(sigset_t *set);

/* Waits for SIGTERM or SIGINT (blocked by shop_stop_signals_block);
 * returns the signal's number. */
int shop_stop_signal_wait(const sigset_t *set);

#endif
