/* test_registry_heal.c -- the registry re-opens lookup workers that are
 * stuck (registry/lookup.c, lookup_heal).
 *
 * The stall is induced, not waited for: the registry under test is
 * registry-faults (SHOP_REGISTRY_FAULTS_BIN), the same registry sources
 * built with -DSHOP_REGISTRY_FAULTS, in which SHOP_REGISTRY_FAULT_LOSE_SENDS=N
 * makes the first N answers never be sent: those workers stay in LW_SEND
 * for ever, as a worker whose send never completes would. With all 8
 * contexts lost that way no lookup is answered; the shipped registry
 * binary has no such code. Each test runs its own registry on private
 * ipc:// addresses. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <CUnit/Basic.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include "../cunit_main.h"
#include "probe.h"
#include "clock.h"
#include "registry.pb-c.h"

#define SURVEY_MS 100
#define CONTEXTS  8 /* the registry's smallest pool */
#define STALL_MS  1000

static const char *registry_bin;
static char lookup_url[128], survey_url[128];
static uint16_t admin_port;
static pid_t registry_pid = -1;

static int64_t mono_ms(void)
{
	return shop_now_mono_us() / 1000;
}

/* Starts registry-faults with sends lost and the stall check at stall_ms
 * (0: off). The environment is built before the fork. */
static int registry_spawn(int lose_sends, int stall_ms)
{
	static int n;
	char e_survey[192], e_lookup[192], e_admin[96], e_lose[64], e_stall[64];
	char *argv[] = {(char *)registry_bin, NULL};
	char *envp[] = {e_survey,
			e_lookup,
			e_admin,
			e_lose,
			e_stall,
			"SHOP_REGISTRY_SURVEY_MS=100",
			"SHOP_REGISTRY_LOOKUP_CONTEXTS=8",
			"SHOP_REGISTRY_LOOKUP_WARMUP_MS=0",
			NULL};

	n++;
	snprintf(survey_url, sizeof(survey_url), "ipc:///tmp/shop-healtest-%d-%d-survey.ipc",
		 (int)getpid(), n);
	snprintf(lookup_url, sizeof(lookup_url), "ipc:///tmp/shop-healtest-%d-%d-lookup.ipc",
		 (int)getpid(), n);
	if ((admin_port = probe_free_port()) == 0)
		return -1;
	snprintf(e_survey, sizeof(e_survey), "SHOP_REGISTRY_SURVEY_URL=%s", survey_url);
	snprintf(e_lookup, sizeof(e_lookup), "SHOP_REGISTRY_LOOKUP_URL=%s", lookup_url);
	snprintf(e_admin, sizeof(e_admin), "SHOP_REGISTRY_ADMIN_ADDR=127.0.0.1:%u",
		 (unsigned)admin_port);
	snprintf(e_lose, sizeof(e_lose), "SHOP_REGISTRY_FAULT_LOSE_SENDS=%d", lose_sends);
	snprintf(e_stall, sizeof(e_stall), "SHOP_REGISTRY_LOOKUP_STALL_MS=%d", stall_ms);
	if ((registry_pid = fork()) == 0) {
		execve(argv[0], argv, envp);
		_exit(127);
	}
	return registry_pid < 0 ? -1 : 0;
}

/* SIGTERM; the exit status (0 for a clean stop), -1 when none. */
static int registry_stop(void)
{
	int status = -1;

	if (registry_pid > 0) {
		kill(registry_pid, SIGTERM);
		waitpid(registry_pid, &status, 0);
		registry_pid = -1;
	}
	unlink(survey_url + strlen("ipc://"));
	unlink(lookup_url + strlen("ipc://"));
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void kill_registry_on_hang(void)
{
	if (registry_pid > 0)
		kill(registry_pid, SIGKILL);
	unlink(survey_url + strlen("ipc://"));
	unlink(lookup_url + strlen("ipc://"));
}

/* One Lookup{wait_revision, wait_ms}: 0 when answered within timeout_ms
 * (*ms: how long it took; *revision: the answer's), -1 when not. */
static int lookup_wait(uint64_t wait_revision, uint32_t wait_ms, int timeout_ms, int64_t *ms,
		       uint64_t *revision)
{
	return probe_lookup(lookup_url, NULL, wait_revision, wait_ms, timeout_ms, revision, ms);
}

/* A plain lookup, answered at once by a working registry. */
static int lookup_once(int timeout_ms, int64_t *ms)
{
	return lookup_wait(0, 0, timeout_ms, ms, NULL);
}

/* Dials until the registry's lookup socket listens (up to 5 s). */
static int wait_listening(void)
{
	for (int i = 0; i < 250; i++) {
		nng_socket s;
		int rv;

		if (nng_req0_open(&s) != 0)
			return -1;
		rv = nng_dial(s, lookup_url, NULL, 0);
		nng_close(s);
		if (rv == 0)
			return 0;
		nng_msleep(20);
	}
	return -1;
}

/* The value of a counter in the registry's /metrics, -1 when absent. */
static long metric(const char *name)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(admin_port)};
	struct timeval tv = {.tv_sec = 2};
	static char buf[65536];
	char req[160], key[128];
	size_t len = 0;
	ssize_t r;
	long v = -1;
	char *p;
	int fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	snprintf(req, sizeof(req),
		 "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    write(fd, req, strlen(req)) == (ssize_t)strlen(req)) {
		while (len < sizeof(buf) - 1 &&
		       (r = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
			len += (size_t)r;
	}
	close(fd);
	buf[len] = '\0';
	snprintf(key, sizeof(key), "\n%s ", name);
	if ((p = strstr(buf, key)) != NULL)
		v = strtol(p + strlen(key), NULL, 10);
	return v;
}

/* Loses every context's answer: CONTEXTS lookups at once, none answered
 * within 300 ms; afterwards every worker is stuck, all within a few
 * milliseconds (well inside STALL_MS, so that none is re-opened before the
 * last is lost). */
static void lose_every_context(void)
{
	Shop__V1__Lookup req = SHOP__V1__LOOKUP__INIT;
	nng_socket s[CONTEXTS];
	nng_msg *msg;
	int answered = 0;

	req.service = "product";
	for (int i = 0; i < CONTEXTS; i++) {
		CU_ASSERT_FATAL(nng_req0_open(&s[i]) == 0);
		CU_ASSERT_FATAL(nng_dial(s[i], lookup_url, NULL, 0) == 0);
		CU_ASSERT_FATAL(nng_msg_alloc(&msg, shop__v1__lookup__get_packed_size(&req)) == 0);
		shop__v1__lookup__pack(&req, nng_msg_body(msg));
		CU_ASSERT_FATAL(nng_sendmsg(s[i], msg, 0) == 0);
	}
	nng_msleep(300);
	for (int i = 0; i < CONTEXTS; i++) {
		if (nng_recvmsg(s[i], &msg, NNG_FLAG_NONBLOCK) == 0) {
			nng_msg_free(msg);
			answered++;
		}
		nng_close(s[i]);
	}
	CU_ASSERT_EQUAL(answered, 0);
}

/* The control: with the check off, the stuck workers stay stuck and no
 * lookup is answered (what the watchdog is for). */
static void test_stuck_workers_stay_stuck_without_the_check(void)
{
	CU_ASSERT_FATAL(registry_spawn(CONTEXTS, 0) == 0);
	CU_ASSERT_FATAL(wait_listening() == 0);
	lose_every_context();
	CU_ASSERT_EQUAL(lookup_once(STALL_MS + 3000, NULL), -1);
	CU_ASSERT_EQUAL(metric("shop_registry_lookup_heals_total"), 0);
	CU_ASSERT_EQUAL(metric("shop_registry_lookups_answered_total"), 0);
	CU_ASSERT_EQUAL(registry_stop(), 0);
}

/* With the check at STALL_MS, a lookup sent once every context is stuck
 * is answered within STALL_MS plus a survey period or two (the check runs
 * between survey rounds), the heal is counted, and afterwards every
 * context answers. The stop frees the lost answers (ASan's leak check). */
static void test_stuck_workers_are_reopened_within_the_bound(void)
{
	int64_t t0, ms = -1;

	CU_ASSERT_FATAL(registry_spawn(CONTEXTS, STALL_MS) == 0);
	CU_ASSERT_FATAL(wait_listening() == 0);
	t0 = mono_ms();
	lose_every_context();
	CU_ASSERT_EQUAL(lookup_once(STALL_MS + 3000, &ms), 0);
	fprintf(stderr, "\n  answered %lld ms after the first lost answer (%lld ms waiting)\n",
		(long long)(mono_ms() - t0), (long long)ms);
	CU_ASSERT(mono_ms() - t0 <= STALL_MS + 4 * SURVEY_MS + 500);
	CU_ASSERT(metric("shop_registry_lookup_heals_total") >= 1);
	/* Every context was re-opened: as many lookups in a row as there
	 * are contexts, each answered at once. */
	for (int i = 0; i < 2 * CONTEXTS; i++) {
		ms = -1;
		CU_ASSERT_EQUAL(lookup_once(500, &ms), 0);
		CU_ASSERT(ms >= 0 && ms < 300);
	}
	CU_ASSERT(metric("shop_registry_lookups_answered_total") >= 2 * CONTEXTS + 1);
	CU_ASSERT_EQUAL(registry_stop(), 0);
}

/* A working registry is not "healed", not even when a lookup is held for
 * longer than the bound: a parked lookup is held, not stuck. */
static void test_no_heal_without_a_fault_even_for_a_long_park(void)
{
	uint64_t rev = 0;
	int64_t ms = -1;

	CU_ASSERT_FATAL(registry_spawn(0, STALL_MS) == 0);
	CU_ASSERT_FATAL(wait_listening() == 0);
	for (int i = 0; i < 2 * CONTEXTS; i++)
		CU_ASSERT_EQUAL(lookup_wait(0, 0, 500, NULL, &rev), 0);
	/* Held on the current revision (no instance ever joins) until its
	 * wait ends, STALL_MS + 1 s later. */
	CU_ASSERT_EQUAL(lookup_wait(rev, STALL_MS + 1000, STALL_MS + 3000, &ms, NULL), 0);
	CU_ASSERT(ms >= STALL_MS + 900);
	CU_ASSERT_EQUAL(metric("shop_registry_lookup_heals_total"), 0);
	CU_ASSERT_EQUAL(registry_stop(), 0);
}

int main(void)
{
	static const shop_test tests[] = {
	    {"stuck workers stay stuck without the check",
	     test_stuck_workers_stay_stuck_without_the_check},
	    {"stuck workers are re-opened within the bound",
	     test_stuck_workers_are_reopened_within_the_bound},
	    {"no heal without a fault, even for a long park",
	     test_no_heal_without_a_fault_even_for_a_long_park},
	};
	if ((registry_bin = getenv("SHOP_REGISTRY_FAULTS_BIN")) == NULL) {
		fprintf(stderr, "SHOP_REGISTRY_FAULTS_BIN must name registry-faults\n");
		return 1;
	}
	shop_test_hang_hook = kill_registry_on_hang;
	return shop_test_run_suite("registry_heal", NULL, NULL, tests,
				   sizeof(tests) / sizeof(tests[0]));
}
