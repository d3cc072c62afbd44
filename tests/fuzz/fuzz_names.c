/* fuzz_names.c -- libFuzzer target: svc-auth's name rules (names.c, ICU)
 * on arbitrary bytes, as a sign-up or sign-in name arrives.
 *
 * Input: the bytes of the name (cut at the first NUL, as a protobuf
 * string reaches the handler as a C string). Properties: besides no
 * sanitizer report and no leak, an accepted name's display form is 1..64
 * code points of valid UTF-8 with both keys non-empty, and is itself
 * accepted with the same display form and keys (NFC and the keys are
 * stable: a stored name signs in as itself). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	auth_name n, again;
	long chars;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (auth_name_init(&n, s) == AUTH_NAME_OK) {
		chars = shop_utf8_count(n.display, strlen(n.display));
		if (chars < 1 || chars > AUTH_NAME_MAX_CHARS || n.key[0] == '\0' ||
		    n.skeleton[0] == '\0')
			abort();
		if (auth_name_init(&again, n.display) != AUTH_NAME_OK)
			abort();
		if (strcmp(again.display, n.display) != 0 || strcmp(again.key, n.key) != 0 ||
		    strcmp(again.skeleton, n.skeleton) != 0)
			abort();
		auth_name_fini(&again);
		auth_name_fini(&n);
	}
	free(s);
	return 0;
}
