/* stop_watchdog.h -- a bound on how long a stopping process may take. */
#ifndef SHOP_STOP_WATCHDOG_H
#define SHOP_STOP_WATCHDOG_H

#include <stdint.h>

/* Exit status of a process the watchdog ended. */
#define SHOP_STOP_WATCHDOG_STATUS 1

/* Starts a detached thread that, budget_ms from now, logs that the stop did
 * not finish and ends the process with _exit(SHOP_STOP_WATCHDOG_STATUS).
 * Called once a process begins to stop: nng 1.5.2's pipe reaper can hang
 * for good (docs/decisions.md, "nng 1.5.2 defects"), and every nng_close()
 * after it blocks; without this the process would wait for a SIGKILL.
 * Returns 0, or an errno when no thread could be started. */
int shop_stop_watchdog_start(int64_t budget_ms);

#endif
