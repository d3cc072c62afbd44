/* log.h -- JSON-lines logging: one object per line on stderr.
 *
 * {"ts":"2026-11-23T10:00:00.123Z","level":"info","instance":"product-a",
 *  "msg":"...","trace_id":"..."}
 * Never log a password, token, secret or a DSN with its password. */
#ifndef SHOP_LOG_H
#define SHOP_LOG_H

#include <stdio.h>

typedef enum { SHOP_LOG_DEBUG, SHOP_LOG_INFO, SHOP_LOG_WARN, SHOP_LOG_ERROR } shop_log_level;

/* Sets the instance name (copied) and minimum level; stream NULL = stderr.
 * Call once from main before any thread starts. */
void shop_log_init(const char *instance, shop_log_level min, FILE *stream);
/* "debug", "info", "warn", "error" → level; -1 on anything else. */
int shop_log_level_parse(const char *s);

/* trace_id may be NULL. Thread-safe; each call writes one whole line. */
void shop_log_write(shop_log_level lvl, const char *trace_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets the trace id (copied; NULL or "" clears it) that lines this thread
 * writes with trace_id NULL carry: the RPC server sets it around each call,
 * so that every line of the call — the handler's, the database's, the
 * cache's — names its trace. */
void shop_log_set_trace(const char *trace_id);

#define SHOP_LOG(lvl, ...)          shop_log_write(SHOP_LOG_##lvl, NULL, __VA_ARGS__)
#define SHOP_LOG_T(lvl, trace, ...) shop_log_write(SHOP_LOG_##lvl, (trace), __VA_ARGS__)

/* Appends s to buf as a JSON string body (no quotes), escaping as needed.
 * Returns the number of bytes written (truncates at cap-1, always NUL-ends). */
size_t shop_json_escape(char *buf, size_t cap, const char *s);

/* Writes s to buf as visible ASCII for a log message that quotes a value
 * someone else chose: backslash and double quote escaped, every other byte
 * outside 0x20-0x7e as \xNN, so that a quoted CR LF cannot start a line
 * of its own in a reader that decodes the JSON. Stops before the escape
 * that would not fit (always NUL-ends); returns the bytes written. */
size_t shop_log_visible(char *buf, size_t cap, const char *s);

#endif
