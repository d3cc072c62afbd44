/* test_names.c -- tests of svc-auth/names.c: refused characters, NFC, the
 * canonical key and the confusable skeleton. */
#include <pthread.h>
#include <string.h>

#include "../cunit_main.h"

#include "../../svc-auth/names.h"

/* The key and skeleton of s, which must be a valid name. */
static auth_name name_of(const char *s)
{
	auth_name n;

	CU_ASSERT_EQUAL_FATAL(auth_name_init(&n, s), AUTH_NAME_OK);
	return n;
}

/* True when a and b are the same name: either key equal. */
static int same_name(const char *a, const char *b)
{
	auth_name x = name_of(a), y = name_of(b);
	int same = strcmp(x.key, y.key) == 0 || strcmp(x.skeleton, y.skeleton) == 0;

	auth_name_fini(&x);
	auth_name_fini(&y);
	return same;
}

static void test_names_plain_name_is_its_own_key(void)
{
	auth_name n = name_of("  alice ");

	CU_ASSERT_STRING_EQUAL(n.display, "alice");
	CU_ASSERT_STRING_EQUAL(n.key, "alice");
	CU_ASSERT_STRING_EQUAL(n.skeleton, "alice");
	auth_name_fini(&n);
}

static void test_names_refuses_invisible_and_bidi_controls(void)
{
	static const char *const bad[] = {
	    "alice\u200b", /* zero width space */
	    "al\u200dice", /* zero width joiner */
	    "\u202eevil",  /* right-to-left override */
	    "evil\u2066",  /* left-to-right isolate */
	    "al\u200fice", /* right-to-left mark */
	    "al\u00adice", /* soft hyphen */
	    "ali\u034fce", /* combining grapheme joiner */
	    "al\u2028ice", /* line separator */
	    "al\u0378ice", /* unassigned */
	    "a\x01b",      /* C0 control */
	    "a\xc2\x85z",  /* C1 control (NEL) inside */
	    "\xff",        /* not UTF-8 */
	    "",
	    "   ",
	};
	auth_name n;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(auth_name_init(&n, bad[i]), AUTH_NAME_INVALID);
		CU_ASSERT_PTR_NULL(n.display);
		CU_ASSERT_PTR_NULL(n.key);
	}
}

static void test_names_cyrillic_a_is_alice(void)
{
	auth_name n = name_of("\u0430lice");

	CU_ASSERT_STRING_EQUAL(n.display, "\u0430lice"); /* shown as typed */
	CU_ASSERT_STRING_EQUAL(n.key, "alice");
	CU_ASSERT_TRUE(same_name("\u0430lice", "alice"));
	auth_name_fini(&n);
}

static void test_names_fullwidth_is_alice(void)
{
	auth_name n = name_of("\uff41lice");

	CU_ASSERT_STRING_EQUAL(n.key, "alice");
	CU_ASSERT_TRUE(same_name("\uff41lice", "alice"));
	auth_name_fini(&n);
}

static void test_names_nfd_is_stored_nfc(void)
{
	auth_name nfc = name_of("caf\u00e9"), nfd = name_of("cafe\u0301");

	CU_ASSERT_STRING_EQUAL(nfd.display, "caf\xc3\xa9");
	CU_ASSERT_STRING_EQUAL(nfc.display, nfd.display);
	CU_ASSERT_STRING_EQUAL(nfc.key, nfd.key);
	CU_ASSERT_STRING_EQUAL(nfc.skeleton, nfd.skeleton);
	auth_name_fini(&nfc);
	auth_name_fini(&nfd);
}

static void test_names_case_is_one_name(void)
{
	auth_name a = name_of("Ab"), b = name_of("aB");

	CU_ASSERT_STRING_EQUAL(a.display, "Ab");
	CU_ASSERT_STRING_EQUAL(b.display, "aB");
	CU_ASSERT_STRING_EQUAL(a.key, b.key);
	CU_ASSERT_TRUE(same_name("ALICE", "alice"));
	auth_name_fini(&a);
	auth_name_fini(&b);
}

/* 64 characters are a name, 65 are not; counted on the NFC form, so 64
 * decomposed é (128 code points) are a name too. */
static void test_names_64_characters_not_65(void)
{
	char s[400];
	auth_name n;

	memset(s, 'x', 65);
	s[64] = '\0';
	CU_ASSERT_EQUAL(auth_name_init(&n, s), AUTH_NAME_OK);
	auth_name_fini(&n);
	s[64] = 'x';
	s[65] = '\0';
	CU_ASSERT_EQUAL(auth_name_init(&n, s), AUTH_NAME_INVALID);
	s[0] = '\0';
	for (int i = 0; i < 64; i++)
		strcat(s, "e\u0301");
	CU_ASSERT_EQUAL_FATAL(auth_name_init(&n, s), AUTH_NAME_OK);
	CU_ASSERT_EQUAL(strlen(n.display), 128); /* 64 × U+00E9 */
	auth_name_fini(&n);
	strcat(s, "e");
	CU_ASSERT_EQUAL(auth_name_init(&n, s), AUTH_NAME_INVALID);
}

/* Hostile sizes are refused, freeing what they took: 10 000 bytes, and
 * one letter with 1000 combining marks (1001 characters after NFC). */
static void test_names_refuses_hostile_sizes(void)
{
	static char big[10001], marks[2100];
	auth_name n;

	memset(big, 'a', sizeof(big) - 1);
	CU_ASSERT_EQUAL(auth_name_init(&n, big), AUTH_NAME_INVALID);
	strcpy(marks, "a");
	for (int i = 0; i < 1000; i++)
		strcat(marks, "\u0301");
	CU_ASSERT_EQUAL(auth_name_init(&n, marks), AUTH_NAME_INVALID);
	CU_ASSERT_PTR_NULL(n.display);
}

/* Why two keys: the skeletons of capital I and small l are equal, but
 * case folding first makes them i and l. And the contract's "or" chains:
 * alice ~ ALICE (folding) ~ ALlCE (skeleton) ~ allce (folding), so one key
 * for all of it would make alice and allce one name. */
static void test_names_skeleton_catches_what_folding_parts(void)
{
	auth_name upper = name_of("Ivan"), lower = name_of("lvan");

	CU_ASSERT_STRING_NOT_EQUAL(upper.key, lower.key);
	CU_ASSERT_STRING_EQUAL(upper.skeleton, lower.skeleton);
	CU_ASSERT_TRUE(same_name("Ivan", "lvan"));
	CU_ASSERT_TRUE(same_name("ALICE", "ALlCE"));
	CU_ASSERT_TRUE(same_name("ALlCE", "allce"));
	CU_ASSERT_FALSE(same_name("alice", "allce"));
	CU_ASSERT_FALSE(same_name("alice", "bob"));
	auth_name_fini(&upper);
	auth_name_fini(&lower);
}

static void test_names_other_scripts_stay_apart(void)
{
	auth_name ko = name_of("김민수"), el = name_of("Σοφία");

	CU_ASSERT_STRING_EQUAL(ko.display, "김민수");
	CU_ASSERT_FALSE(same_name("김민수", "김민주"));
	/* Final and medial sigma fold alike. */
	CU_ASSERT_TRUE(same_name("Σοφία", "σοφία"));
	auth_name_fini(&ko);
	auth_name_fini(&el);
}

#define THREADS 8

static void *names_loop(void *arg)
{
	int *bad = arg;
	auth_name n;

	for (int i = 0; i < 2000; i++) {
		if (auth_name_init(&n, i % 2 ? "\u0430lice" : "cafe\u0301") != AUTH_NAME_OK) {
			(*bad)++;
			continue;
		}
		if (strcmp(n.key, i % 2 ? "alice" : "caf\xc3\xa9") != 0 &&
		    strcmp(n.key, "cafe\xcc\x81") != 0)
			(*bad)++;
		auth_name_fini(&n);
	}
	return NULL;
}

/* Workers compute names at once: every answer is right. */
static void test_names_from_many_threads(void)
{
	pthread_t th[THREADS];
	int bad[THREADS] = {0};

	for (int i = 0; i < THREADS; i++)
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, names_loop, &bad[i]), 0);
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		CU_ASSERT_EQUAL(bad[i], 0);
	}
}

int main(void)
{
	static const shop_test tests[] = {
	    {"a plain name is its own key", test_names_plain_name_is_its_own_key},
	    {"refuses invisible and bidi controls", test_names_refuses_invisible_and_bidi_controls},
	    {"Cyrillic a is alice", test_names_cyrillic_a_is_alice},
	    {"fullwidth a is alice", test_names_fullwidth_is_alice},
	    {"NFD is stored NFC", test_names_nfd_is_stored_nfc},
	    {"case is one name", test_names_case_is_one_name},
	    {"64 characters, not 65", test_names_64_characters_not_65},
	    {"refuses hostile sizes", test_names_refuses_hostile_sizes},
	    {"the skeleton catches what folding parts",
	     test_names_skeleton_catches_what_folding_parts},
	    {"other scripts stay apart", test_names_other_scripts_stay_apart},
	    {"from many threads", test_names_from_many_threads},
	};

	return shop_test_run("names", tests, sizeof(tests) / sizeof(tests[0]));
}
