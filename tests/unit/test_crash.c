/* test_crash.c -- tests of lib/crash.c: a child that installs the handler
 * and dies of a fatal signal leaves one JSON line on stderr, then dies of
 * that signal. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../cunit_main.h"

#include "crash.h"

typedef enum { DIE_RAISE, DIE_FAULT, DIE_ABORT } die_how;

static volatile int *volatile nowhere; /* NULL, out of the optimiser's sight */

/* Runs a child that installs the handler and dies as how; returns its
 * stderr (malloc'd) and sets *status. */
static char *crash_child(die_how how, int *status)
{
	size_t len = 0, cap = 65536;
	char *out = calloc(1, cap);
	int p[2];
	pid_t pid;
	ssize_t n;

	CU_ASSERT_FATAL(out != NULL && pipe(p) == 0);
	CU_ASSERT_FATAL((pid = fork()) >= 0);
	if (pid == 0) {
		dup2(p[1], STDERR_FILENO);
		close(p[0]);
		if (shop_crash_install("unit-crash") != 0)
			_exit(3);
		if (how == DIE_RAISE)
			raise(SIGSEGV);
		else if (how == DIE_ABORT)
			abort();
		else
			*nowhere = 1;
		_exit(4);
	}
	close(p[1]);
	while (len + 1 < cap && (n = read(p[0], out + len, cap - len - 1)) > 0)
		len += (size_t)n;
	close(p[0]);
	out[len] = '\0';
	CU_ASSERT_FATAL(waitpid(pid, status, 0) == pid);
	return out;
}

/* The last line of out that starts with '{', parsed. */
static cJSON *fatal_line(const char *out)
{
	const char *l = NULL;

	for (const char *p = out; p != NULL && *p != '\0'; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (*p == '{')
			l = p;
	}
	CU_ASSERT_FATAL(l != NULL);
	CU_ASSERT_PTR_NOT_NULL(strchr(l, '\n')); /* a whole line */
	return cJSON_Parse(l);
}

static void check_line(cJSON *j, int sig, const char *msg)
{
	cJSON *bt = cJSON_GetObjectItem(j, "backtrace");

	CU_ASSERT_FATAL(j != NULL);
	CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(j, "level")), "fatal");
	CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(j, "instance")),
			       "unit-crash");
	CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(j, "msg")), msg);
	CU_ASSERT_EQUAL(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "signal")), sig);
	CU_ASSERT_EQUAL(strlen(cJSON_GetStringValue(cJSON_GetObjectItem(j, "ts"))),
			strlen("2026-12-04T19:30:00.123Z"));
	CU_ASSERT_FATAL(cJSON_IsArray(bt));
	CU_ASSERT(cJSON_GetArraySize(bt) >= 2);
	for (int i = 0; i < cJSON_GetArraySize(bt); i++) {
		const char *f = cJSON_GetStringValue(cJSON_GetArrayItem(bt, i));

		CU_ASSERT(f != NULL && strstr(f, "0x") != NULL);
	}
	/* The test's own frames are named by its executable. */
	{
		char *text = cJSON_PrintUnformatted(bt);

		CU_ASSERT_PTR_NOT_NULL(text != NULL ? strstr(text, "test_crash+0x") : NULL);
		free(text);
	}
}

static void test_crash_raised_segv_leaves_fatal_line_and_dies_of_it(void)
{
	int status = 0;
	char *out = crash_child(DIE_RAISE, &status);
	cJSON *j = fatal_line(out);

	CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
	check_line(j, SIGSEGV, "crashed: signal 11 (SIGSEGV)");
	CU_ASSERT_EQUAL(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "sender_pid")),
			cJSON_GetNumberValue(cJSON_GetObjectItem(j, "pid")));
	cJSON_Delete(j);
	free(out);
}

static void test_crash_real_fault_names_the_address(void)
{
	int status = 0;
	char *out = crash_child(DIE_FAULT, &status);
	cJSON *j = fatal_line(out);

	CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
	check_line(j, SIGSEGV, "crashed: signal 11 (SIGSEGV)");
	CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(j, "fault_addr")), "0x0");
	cJSON_Delete(j);
	free(out);
}

static void test_crash_abort_is_sigabrt(void)
{
	int status = 0;
	char *out = crash_child(DIE_ABORT, &status);
	cJSON *j = fatal_line(out);

	CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
	check_line(j, SIGABRT, "crashed: signal 6 (SIGABRT)");
	cJSON_Delete(j);
	free(out);
}

SHOP_TEST_MAIN("crash",
	       {"raised SIGSEGV leaves a fatal line and dies of it",
		test_crash_raised_segv_leaves_fatal_line_and_dies_of_it},
	       {"a real fault names the address", test_crash_real_fault_names_the_address},
	       {"abort is SIGABRT", test_crash_abort_is_sigabrt})
