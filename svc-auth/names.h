/* names.h -- when two user names are the same name: Unicode checks,
 * normalisation and the keys the users table is unique on (ICU).
 *
 * A name is 1..AUTH_NAME_MAX_CHARS characters after trimming white space,
 * counted on its NFC form, with no control, default-ignorable (zero-width
 * and other invisible), bidi control, line or paragraph separator, or
 * unassigned characters. It is stored and shown in NFC.
 *
 * Two names are the same name when they are equal after NFKC and case
 * folding, or when their UTS #39 confusable skeletons are equal. That "or"
 * is not an equivalence ("alice" folds like "ALICE", whose skeleton is that
 * of "ALlCE", which folds like "allce"), so no single key can stand for it
 * without also merging names nobody would confuse. Hence two keys, each
 * unique in the table:
 *   key      = skeleton(NFKC_Casefold(name)): equal for every case and
 *              compatibility variant, and for most look-alikes too; it is
 *              the name's identity: sign-in and the throttle use it;
 *   skeleton = skeleton(name): catches look-alikes that case folding pulls
 *              apart (capital I and small l, Cyrillic capital En and H).
 * A new name is taken when either of its keys is. */
#ifndef AUTH_NAMES_H
#define AUTH_NAMES_H

#define AUTH_NAME_MAX_CHARS 64

typedef struct auth_name {
	char *display;  /* NFC, trimmed: what is stored and shown */
	char *key;      /* skeleton of NFKC_Casefold(display) */
	char *skeleton; /* skeleton of display */
} auth_name;

enum {
	AUTH_NAME_OK = 0,
	AUTH_NAME_INVALID = -1, /* the input breaks a rule above */
	AUTH_NAME_INTERNAL = -2 /* out of memory or an ICU failure */
};

/* Checks raw (a C string, any bytes) and fills n's three UTF-8 strings.
 * Returns AUTH_NAME_OK, or AUTH_NAME_INVALID / AUTH_NAME_INTERNAL with n
 * left empty (all NULL). On success the caller frees with auth_name_fini.
 * Safe to call from several threads at once. */
int auth_name_init(auth_name *n, const char *raw);
void auth_name_fini(auth_name *n); /* frees the strings; n may be empty */

/* The detail of the 400 answered for an AUTH_NAME_INVALID name. */
#define AUTH_NAME_RULE                                                                             \
	"must be 1 to 64 characters of Unicode text without control, invisible or bidi control "   \
	"characters"

#endif
