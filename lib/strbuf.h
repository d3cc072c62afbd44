/* strbuf.h -- a growing, always NUL-terminated text buffer for building
 * answers (JSON, Prometheus text, SQL array literals). An allocation that
 * fails sets oom and makes every later append a no-op, so that callers
 * append freely and check once at the end. */
#ifndef SHOP_STRBUF_H
#define SHOP_STRBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

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

/* The same kind of buffer written through stdio: closes f, a stream of
 * open_memstream(3) over *text. Returns 0 when every write and the close
 * succeeded (*text is the text, the size variable given to open_memstream
 * its length; caller frees), else -1 with *text freed and set to NULL. */
int shop_memstream_close(FILE *f, char **text);

#endif
