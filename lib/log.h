/* log.h -- JSON-lines logging: one object per line on stderr.
 *
 * {"ts":"2026-11-23T10:00:00.123Z","level":"info","instance":"product-a",
 *  "msg":"...","trace_id":"..."}
 * Never log a password, token, secret or a DSN with its password. */
#ifndef SHOP_LOG_H
#define SHOP_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
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

/* The longest line shop_log_write writes (longer ones are cut, still JSON). */
#define SHOP_LOG_LINE_MAX 4400

/* True when lines of lvl are written (SHOP_LOG_LEVEL). */
bool shop_log_enabled(shop_log_level lvl);

/* Formats the line shop_log_write would write (newline included, not
 * NUL-counted) into line; returns its length, 0 when cap < 8. For a caller
 * that buffers lines and writes them with shop_log_emit. */
size_t shop_log_vformat(char *line, size_t cap, shop_log_level lvl, const char *trace_id,
			const char *fmt, va_list ap);

/* Writes len bytes of whole lines where shop_log_write writes them, in as
 * few writes as the stream takes. */
void shop_log_emit(const char *buf, size_t len);

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
