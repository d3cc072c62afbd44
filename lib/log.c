/* log.c -- JSON-lines logging: one object per line, written whole. */
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"

static char log_instance[64] = "shop";
static shop_log_level log_min = SHOP_LOG_INFO;
static FILE *log_stream;

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static _Thread_local char log_trace[33]; /* this thread's call, "" for none */

void shop_log_init(const char *instance, shop_log_level min, FILE *stream)
{
	if (instance != NULL)
		snprintf(log_instance, sizeof(log_instance), "%s", instance);
	log_min = min;
	log_stream = stream;
}

void shop_log_set_trace(const char *trace_id)
{
	snprintf(log_trace, sizeof(log_trace), "%s", trace_id != NULL ? trace_id : "");
}

int shop_log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (s != NULL && strcmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

/* The escape of one byte for a JSON string: into esc, its length. */
static size_t json_byte(unsigned char c, char esc[8])
{
	if (c == '"' || c == '\\')
		return (size_t)snprintf(esc, 8, "\\%c", c);
	if (c == '\n')
		return (size_t)snprintf(esc, 8, "\\n");
	if (c == '\t')
		return (size_t)snprintf(esc, 8, "\\t");
	if (c < 0x20 || c == 0x7f)
		return (size_t)snprintf(esc, 8, "\\u%04x", c);
	esc[0] = (char)c;
	return 1;
}

/* The escape of one byte as visible ASCII (shop_log_visible). */
static size_t visible_byte(unsigned char c, char esc[8])
{
	if (c == '"' || c == '\\')
		return (size_t)snprintf(esc, 8, "\\%c", c);
	if (c < 0x20 || c > 0x7e)
		return (size_t)snprintf(esc, 8, "\\x%02x", c);
	esc[0] = (char)c;
	return 1;
}

/* Bytes that need no escape, copied as they are (nearly all). */
static bool json_plain(unsigned char c)
{
	return c >= 0x20 && c != '"' && c != '\\' && c != 0x7f;
}

static bool visible_plain(unsigned char c)
{
	return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\';
}

/* Writes s to buf, plain bytes as they are and the others through escape;
 * stops before the escape that would not fit, always NUL-ends. Inlined
 * into its two callers, so that plain and escape are direct calls the
 * compiler folds into the loop. */
static inline size_t escape_with(char *buf, size_t cap, const char *s,
				 bool (*plain)(unsigned char c),
				 size_t (*escape)(unsigned char c, char esc[8]))
{
	size_t n = 0;

	if (cap == 0)
		return 0;
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		size_t len;

		if (plain(c)) {
			if (n + 1 >= cap)
				break;
			buf[n++] = (char)c;
			continue;
		}
		len = escape(c, esc);
		if (n + len >= cap)
			break;
		memcpy(buf + n, esc, len);
		n += len;
	}
	buf[n] = '\0';
	return n;
}

size_t shop_json_escape(char *buf, size_t cap, const char *s)
{
	return escape_with(buf, cap, s, json_plain, json_byte);
}

size_t shop_log_visible(char *buf, size_t cap, const char *s)
{
	return escape_with(buf, cap, s, visible_plain, visible_byte);
}

bool shop_log_enabled(shop_log_level lvl)
{
	return lvl >= log_min;
}

/* The line's timestamp: the second's part ("2026-11-23T10:00:00") is
 * formatted once per second and thread, the milliseconds each time. */
static size_t log_ts(char *ts, size_t cap)
{
	static _Thread_local int64_t sec = INT64_MIN;
	static _Thread_local char prefix[32];
	static _Thread_local size_t prefix_len;
	int64_t now = shop_now_unix_ms(), s = now / 1000;
	int ms = (int)(now % 1000);

	if (ms < 0) {
		ms += 1000;
		s -= 1;
	}
	if (s != sec) {
		shop_rfc3339_ms(s * 1000, prefix, sizeof(prefix));
		prefix_len = strlen(prefix) - 5; /* without ".000Z" */
		sec = s;
	}
	if (cap < prefix_len + 6)
		return 0;
	memcpy(ts, prefix, prefix_len);
	ts[prefix_len] = '.';
	ts[prefix_len + 1] = (char)('0' + ms / 100);
	ts[prefix_len + 2] = (char)('0' + ms / 10 % 10);
	ts[prefix_len + 3] = (char)('0' + ms % 10);
	ts[prefix_len + 4] = 'Z';
	ts[prefix_len + 5] = '\0';
	return prefix_len + 5;
}

/* Appends n bytes of s at *len; false when they do not all fit before
 * cap - 1 (what fits is appended: the caller then cuts the line). */
static bool put(char *line, size_t cap, size_t *len, const char *s, size_t n)
{
	bool fits = *len + n < cap;

	if (!fits)
		n = cap - 1 - *len;
	memcpy(line + *len, s, n);
	*len += n;
	return fits;
}

#define PUT_LIT(lit) put(line, cap, &n, (lit), sizeof(lit) - 1)
#define PUT_STR(str) put(line, cap, &n, (str), strlen(str))

size_t shop_log_vformat(char *line, size_t cap, shop_log_level lvl, const char *trace_id,
			const char *fmt, va_list ap)
{
	char msg[2048], emsg[4096], etrace[80], ts[32];
	size_t n = 0, ts_len, emsg_len;
	bool whole;

	if (cap < 8)
		return 0;
	if (trace_id == NULL)
		trace_id = log_trace;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	emsg_len = shop_json_escape(emsg, sizeof(emsg), msg);
	ts_len = log_ts(ts, sizeof(ts));
	/* {"ts":"…","level":"…","instance":"…","msg":"…"[,"trace_id":"…"]}\n,
	 * put together without a format string. */
	whole = PUT_LIT("{\"ts\":\"") && put(line, cap, &n, ts, ts_len) &&
		PUT_LIT("\",\"level\":\"") && PUT_STR(level_names[lvl]) &&
		PUT_LIT("\",\"instance\":\"") && PUT_STR(log_instance) &&
		PUT_LIT("\",\"msg\":\"") && put(line, cap, &n, emsg, emsg_len);
	if (whole && trace_id != NULL && trace_id[0] != '\0') {
		size_t et = shop_json_escape(etrace, sizeof(etrace), trace_id);

		whole = PUT_LIT("\",\"trace_id\":\"") && put(line, cap, &n, etrace, et);
	}
	whole = whole && PUT_LIT("\"}\n");
	if (!whole) {
		/* Cut: keep the line valid JSON by closing it ourselves (the
		 * last bytes that fit give way to the closing quote and brace;
		 * never half an escape: the escapes are walked from the start,
		 * which only a line this long costs). */
		n = cap - 4;
		for (size_t k = 0; k < n; k++) {
			size_t need;

			if (line[k] != '\\')
				continue;
			/* an escape the cut may have halved */
			need = line[k + 1] == 'u' ? 6 : 2;
			if (k + need > n) {
				n = k;
				break;
			}
			k += need - 1;
		}
		memcpy(line + n, "\"}\n", 3);
		n += 3;
	}
	line[n] = '\0';
	return n;
}

void shop_log_emit(const char *buf, size_t len)
{
	if (len == 0)
		return;
	if (log_stream != NULL) {
		fwrite(buf, 1, len, log_stream);
		fflush(log_stream);
	} else {
		while (len > 0) {
			ssize_t w = write(STDERR_FILENO, buf, len);

			if (w <= 0)
				break; /* nowhere to report it */
			buf += w;
			len -= (size_t)w;
		}
	}
}

void shop_log_write(shop_log_level lvl, const char *trace_id, const char *fmt, ...)
{
	char line[SHOP_LOG_LINE_MAX];
	va_list ap;
	size_t n;

	if (lvl < log_min)
		return;
	va_start(ap, fmt);
	n = shop_log_vformat(line, sizeof(line), lvl, trace_id, fmt, ap);
	va_end(ap);
	/* One write per line keeps lines whole between threads and processes. */
	shop_log_emit(line, n);
}
