/* access_log.h -- the gateway's line per answered request, buffered so that
 * the hot path makes no system call for it: lines gather in one buffer
 * written whole when it fills, when the caller's timer says so, when an
 * error line comes (written at once, after the lines before it), and at
 * the end. Same JSON lines as log.h, on the same stream. One thread only
 * (the lws service thread); pure code: the caller owns the timer. */
#ifndef GW_ACCESS_LOG_H
#define GW_ACCESS_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct gw_access_log gw_access_log;

/* Lines kept at most before a write; a buffer of 0 bytes writes every
 * line at once (SHOP_GATEWAY_ACCESS_LOG_FLUSH_MS=0). */
#define GW_ACCESS_LOG_BUFFER 65536

/* cap: bytes buffered at most (0: unbuffered). NULL when out of memory. */
gw_access_log *gw_access_log_create(size_t cap);
/* Writes what is buffered, then frees. Accepts NULL. */
void gw_access_log_destroy(gw_access_log *a);

/* Adds one INFO line (log.h's format, with trace_id) — or, when urgent,
 * an ERROR-free but must-not-wait line: everything buffered and this line
 * are written at once. Nothing when INFO lines are off (SHOP_LOG_LEVEL).
 * Returns true when the buffer went from empty to holding lines: the
 * caller then arms its flush timer. */
bool gw_access_log_add(gw_access_log *a, bool urgent, const char *trace_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes what is buffered (one write); nothing when empty. */
void gw_access_log_flush(gw_access_log *a);

/* Bytes waiting (for tests and the timer). */
size_t gw_access_log_pending(const gw_access_log *a);

#endif
