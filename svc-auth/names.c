/* names.c -- user names: Unicode checks, NFC, and the keys that tell when two
 * names are the same (ICU's unorm2 and uspoof). */
#include "names.h"

#include <stdlib.h>
#include <string.h>

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/uspoof.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

#include "log.h"
#include "text.h"

/* Bounds the work on hostile input before anything is counted: 64
 * characters take at most 256 bytes in NFC; a decomposed or padded
 * spelling may take more, but not this much. */
#define NAME_MAX_BYTES 4096

/* A UTF-16 string owned by this file: s is malloc'd, len excludes the NUL. */
typedef struct ustr {
	UChar *s;
	int32_t len;
} ustr;

static void ustr_fini(ustr *u)
{
	free(u->s);
	u->s = NULL;
	u->len = 0;
}

static int from_utf8(ustr *out, const char *s, UErrorCode *st)
{
	int32_t need = 0;

	u_strFromUTF8(NULL, 0, &need, s, -1, st);
	if (*st == U_BUFFER_OVERFLOW_ERROR)
		*st = U_ZERO_ERROR;
	if (U_FAILURE(*st) || (out->s = malloc(((size_t)need + 1) * sizeof(UChar))) == NULL)
		return -1;
	u_strFromUTF8(out->s, need + 1, &out->len, s, -1, st);
	return U_SUCCESS(*st) ? 0 : -1;
}

/* Returns a malloc'd UTF-8 copy of u, or NULL. */
static char *to_utf8(const ustr *u, UErrorCode *st)
{
	int32_t need = 0;
	char *out;

	u_strToUTF8(NULL, 0, &need, u->s, u->len, st);
	if (*st == U_BUFFER_OVERFLOW_ERROR)
		*st = U_ZERO_ERROR;
	if (U_FAILURE(*st) || (out = malloc((size_t)need + 1)) == NULL)
		return NULL;
	u_strToUTF8(out, need + 1, NULL, u->s, u->len, st);
	if (U_FAILURE(*st)) {
		free(out);
		return NULL;
	}
	return out;
}

static int normalize(const UNormalizer2 *norm, const ustr *in, ustr *out, UErrorCode *st)
{
	int32_t need = unorm2_normalize(norm, in->s, in->len, NULL, 0, st);

	if (*st == U_BUFFER_OVERFLOW_ERROR)
		*st = U_ZERO_ERROR;
	if (U_FAILURE(*st) || (out->s = malloc(((size_t)need + 1) * sizeof(UChar))) == NULL)
		return -1;
	out->len = unorm2_normalize(norm, in->s, in->len, out->s, need + 1, st);
	return U_SUCCESS(*st) ? 0 : -1;
}

/* Returns the malloc'd UTF-8 skeleton of u, or NULL. */
static char *skeleton_of(const USpoofChecker *sc, const ustr *u, UErrorCode *st)
{
	int32_t need;
	char *utf8 = to_utf8(u, st), *out = NULL;

	if (utf8 == NULL)
		return NULL;
	need = uspoof_getSkeletonUTF8(sc, 0, utf8, -1, NULL, 0, st);
	if (*st == U_BUFFER_OVERFLOW_ERROR)
		*st = U_ZERO_ERROR;
	if (U_FAILURE(*st) || (out = malloc((size_t)need + 1)) == NULL)
		goto out;
	uspoof_getSkeletonUTF8(sc, 0, utf8, -1, out, need + 1, st);
	if (U_FAILURE(*st)) {
		free(out);
		out = NULL;
	}
out:
	free(utf8);
	return out;
}

/* Characters a name may not hold anywhere: ones that show nothing or
 * reorder what follows (a name could then look like another), and ones
 * Unicode has not assigned (no normalisation or confusable data yet; their
 * keys would change once they are). */
static int char_refused(UChar32 c)
{
	int8_t type = u_charType(c);

	return u_hasBinaryProperty(c, UCHAR_DEFAULT_IGNORABLE_CODE_POINT) ||
	       u_hasBinaryProperty(c, UCHAR_BIDI_CONTROL) || type == U_CONTROL_CHAR ||
	       type == U_UNASSIGNED || type == U_SURROGATE || type == U_LINE_SEPARATOR ||
	       type == U_PARAGRAPH_SEPARATOR;
}

static int chars_allowed(const ustr *u)
{
	int32_t i = 0;
	UChar32 c;

	while (i < u->len) {
		U16_NEXT(u->s, i, u->len, c);
		if (char_refused(c))
			return 0;
	}
	return 1;
}

int auth_name_init(auth_name *n, const char *raw)
{
	const UNormalizer2 *nfc, *fold;
	size_t len = strlen(raw);
	ustr trimmed = {0}, display = {0}, folded = {0};
	USpoofChecker *sc = NULL;
	UErrorCode st = U_ZERO_ERROR;
	int rv = AUTH_NAME_INVALID;
	int32_t chars;
	char *clean;

	memset(n, 0, sizeof(*n));
	if (len > NAME_MAX_BYTES)
		return AUTH_NAME_INVALID;
	if ((clean = malloc(len + 1)) == NULL)
		return AUTH_NAME_INTERNAL;
	/* Valid UTF-8, trimmed, no C0/C1 control, at least one character. */
	if (shop_text_clean(raw, 1, NAME_MAX_BYTES, clean, len + 1) != 0)
		goto out;
	rv = AUTH_NAME_INTERNAL;
	nfc = unorm2_getNFCInstance(&st);
	fold = unorm2_getNFKCCasefoldInstance(&st);
	if (U_FAILURE(st) || from_utf8(&trimmed, clean, &st) != 0)
		goto out;
	if (!chars_allowed(&trimmed)) {
		rv = AUTH_NAME_INVALID;
		goto out;
	}
	if (normalize(nfc, &trimmed, &display, &st) != 0)
		goto out;
	/* Counted on the NFC form, the one stored: NFC and NFD spellings of a
	 * name are accepted alike. */
	chars = u_countChar32(display.s, display.len);
	if (chars < 1 || chars > AUTH_NAME_MAX_CHARS) {
		rv = AUTH_NAME_INVALID;
		goto out;
	}
	if (normalize(fold, &display, &folded, &st) != 0)
		goto out;
	/* One checker per call, never shared between workers: ICU 72's
	 * uspoof.h calls functions on a const checker thread safe, but not
	 * every ICU release kept that promise, and opening one costs under
	 * half a microsecond (the confusable data are loaded once per
	 * process) next to tens of milliseconds of Argon2id. */
	if ((sc = uspoof_open(&st)) == NULL || U_FAILURE(st))
		goto out;
	if ((n->display = to_utf8(&display, &st)) == NULL ||
	    (n->key = skeleton_of(sc, &folded, &st)) == NULL ||
	    (n->skeleton = skeleton_of(sc, &display, &st)) == NULL)
		goto out;
	rv = n->key[0] != '\0' && n->skeleton[0] != '\0' ? AUTH_NAME_OK : AUTH_NAME_INVALID;
out:
	if (rv == AUTH_NAME_INTERNAL)
		SHOP_LOG(ERROR, "names: %s", U_FAILURE(st) ? u_errorName(st) : "out of memory");
	if (rv != AUTH_NAME_OK)
		auth_name_fini(n);
	if (sc != NULL)
		uspoof_close(sc);
	ustr_fini(&folded);
	ustr_fini(&display);
	ustr_fini(&trimmed);
	free(clean);
	return rv;
}

void auth_name_fini(auth_name *n)
{
	free(n->display);
	free(n->key);
	free(n->skeleton);
	memset(n, 0, sizeof(*n));
}
