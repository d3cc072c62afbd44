/* text.h -- checks on user-supplied text: UTF-8, control characters,
 * trimming, lengths counted in Unicode characters. */
#ifndef SHOP_TEXT_H
#define SHOP_TEXT_H

#include <stddef.h>

/* Trims leading and trailing white space (ASCII and Unicode spaces) from
 * s, then checks that what is left is valid UTF-8 with no control
 * characters (C0, DEL, C1) and between min_chars and max_chars code points.
 * On success returns 0 and writes the trimmed text to out (cap must be at
 * least strlen(s) + 1). Returns -1 otherwise. */
int shop_text_clean(const char *s, size_t min_chars, size_t max_chars, char *out, size_t cap);

/* Number of code points in valid UTF-8 s of len bytes; -1 if not valid
 * (overlongs, surrogates and values past U+10FFFF are invalid). */
long shop_utf8_count(const char *s, size_t len);

#endif
