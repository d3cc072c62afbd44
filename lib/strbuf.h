/* strbuf.h -- a growing, always NUL-terminated text buffer for building
 * answers (JSON, Prometheus text, SQL array literals). An allocation that
 * fails sets oom and makes every later append a no-op, so that callers
 * append freely and check once at the end. */
#ifndef SHOP_STRBUF_H
#define SHOP_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct shop_buf {
	char *p; /* NULL until the first append; NUL-terminated after it */
	size_t len, cap;
	bool oom;
} shop_buf; /* zero-initialise: shop_buf b = {0}; */

void shop_buf_put(shop_buf *b, const char *s, size_t n);
void shop_buf_puts(shop_buf *b, const char *s);
void shop_buf_printf(shop_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The text (caller frees), "" for an empty buffer; NULL after an
 * allocation failed. The buffer is empty afterwards. */
char *shop_buf_take(shop_buf *b);

#endif
