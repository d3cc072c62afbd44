/* access_log.c -- buffered access lines of the gateway (access_log.h). */
#include "access_log.h"

#include <stdarg.h>
#include <stdlib.h>

#include "log.h"

struct gw_access_log {
	size_t cap, len;
	char buf[]; /* cap + SHOP_LOG_LINE_MAX: a line always fits after len < cap */
};

gw_access_log *gw_access_log_create(size_t cap)
{
	gw_access_log *a = malloc(sizeof(*a) + (cap > 0 ? cap + SHOP_LOG_LINE_MAX : 0));

	if (a != NULL) {
		a->cap = cap;
		a->len = 0;
	}
	return a;
}

void gw_access_log_destroy(gw_access_log *a)
{
	if (a == NULL)
		return;
	gw_access_log_flush(a);
	free(a);
}

void gw_access_log_flush(gw_access_log *a)
{
	if (a == NULL || a->len == 0)
		return;
	shop_log_emit(a->buf, a->len);
	a->len = 0;
}

size_t gw_access_log_pending(const gw_access_log *a)
{
	return a != NULL ? a->len : 0;
}

bool gw_access_log_add(gw_access_log *a, bool urgent, const char *trace_id, const char *fmt, ...)
{
	char line[SHOP_LOG_LINE_MAX];
	bool was_empty = a->len == 0;
	va_list ap;
	size_t n;

	if (!shop_log_enabled(SHOP_LOG_INFO))
		return false;
	va_start(ap, fmt);
	if (a->cap == 0) {
		n = shop_log_vformat(line, sizeof(line), SHOP_LOG_INFO, trace_id, fmt, ap);
		va_end(ap);
		shop_log_emit(line, n);
		return false;
	}
	/* len < cap here, so SHOP_LOG_LINE_MAX bytes are free. */
	a->len +=
	    shop_log_vformat(a->buf + a->len, SHOP_LOG_LINE_MAX, SHOP_LOG_INFO, trace_id, fmt, ap);
	va_end(ap);
	if (urgent || a->len >= a->cap) {
		gw_access_log_flush(a);
		return false;
	}
	return was_empty;
}
