/* log.c -- JSON-lines logging: one object per line, written whole. */
#include "log.h"

#include <stdarg.h>
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

/* Writes s to buf byte by byte through escape; stops before the escape
 * that would not fit, always NUL-ends. */
static size_t escape_with(char *buf, size_t cap, const char *s,
			  size_t (*escape)(unsigned char c, char esc[8]))
{
	size_t n = 0;

	if (cap == 0)
		return 0;
	for (; s != NULL && *s != '\0'; s++) {
		char esc[8];
		size_t len = escape((unsigned char)*s, esc);

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
	return escape_with(buf, cap, s, json_byte);
}

size_t shop_log_visible(char *buf, size_t cap, const char *s)
{
	return escape_with(buf, cap, s, visible_byte);
}

bool shop_log_enabled(shop_log_level lvl)
{
	return lvl >= log_min;
}

size_t shop_log_vformat(char *line, size_t cap, shop_log_level lvl, const char *trace_id,
			const char *fmt, va_list ap)
{
	char msg[2048], emsg[4096], etrace[80], ts[32];
	int n;

	if (cap < 8)
		return 0;
	if (trace_id == NULL)
		trace_id = log_trace;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	shop_json_escape(emsg, sizeof(emsg), msg);
	shop_rfc3339_ms(shop_now_unix_ms(), ts, sizeof(ts));
	if (trace_id != NULL && trace_id[0] != '\0') {
		shop_json_escape(etrace, sizeof(etrace), trace_id);
		n = snprintf(line, cap,
			     "{\"ts\":\"%s\",\"level\":\"%s\",\"instance\":\"%s\",\"msg\":\"%s\","
			     "\"trace_id\":\"%s\"}\n",
			     ts, level_names[lvl], log_instance, emsg, etrace);
	} else {
		n = snprintf(
		    line, cap,
		    "{\"ts\":\"%s\",\"level\":\"%s\",\"instance\":\"%s\",\"msg\":\"%s\"}\n", ts,
		    level_names[lvl], log_instance, emsg);
	}
	if (n < 0)
		return 0;
	if ((size_t)n >= cap) {
		/* Truncated: keep the line valid JSON by closing it ourselves. */
		n = (int)cap - 1;
		memcpy(line + n - 4, "\"}\n", 4);
		n -= 1;
	}
	return (size_t)n;
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
