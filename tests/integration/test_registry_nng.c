/* test_registry_nng.c -- the registry executable and lib/registry_client.c
 * over real nng: joins, leaves (graceful and kill -9), the cached view
 * outliving the registry, the admin HTTP, and a clean SIGTERM exit.
 *
 * The registry under test is the one meson built (SHOP_REGISTRY_BIN); it
 * runs as a child on private ipc:// addresses. A killed instance is this
 * same binary re-executed as "--advertise URL NAME". */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <CUnit/Basic.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include "clock.h"
#include "registry.pb-c.h"
#include "registry_client.h"

#define SURVEY_MS  100
#define REFRESH_MS 50

static const char *registry_bin;
static char survey_url[128], lookup_url[128], admin_addr[64];
static uint16_t admin_port;
static pid_t registry_pid = -1;

/* Shared by the tests that follow one another. */
static shop_registry_view *view;
static shop_advertiser *adv_keep;

static int64_t mono_ms(void)
{
	return shop_now_mono_us() / 1000;
}

static shop_instance mk_self(const char *name, uint32_t weight)
{
	shop_instance in;

	memset(&in, 0, sizeof(in));
	snprintf(in.service, sizeof(in.service), "product");
	snprintf(in.instance, sizeof(in.instance), "%s", name);
	snprintf(in.rpc_url, sizeof(in.rpc_url), "tcp://127.0.0.1:7211");
	snprintf(in.admin_url, sizeof(in.admin_url), "http://127.0.0.1:7311");
	snprintf(in.version, sizeof(in.version), "test");
	in.weight = weight;
	in.healthy = true;
	in.started_unix_ms = shop_now_unix_ms();
	return in;
}

/* A free TCP port on 127.0.0.1 (free when asked; good enough for a test). */
static uint16_t free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	uint16_t port = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* fork+exec with an environment built before the fork (the parent runs
 * nng threads, so the child only calls execve). */
static pid_t spawn(char *const argv[], char *const envp[])
{
	pid_t pid = fork();

	if (pid == 0) {
		execve(argv[0], argv, envp);
		_exit(127);
	}
	return pid;
}

/* Asks the lookup socket directly; returns the number of instances named
 * name (0 or 1), or -1 when the registry did not answer. */
static int lookup_has(const char *name, uint64_t *revision)
{
	Shop__V1__Lookup req = SHOP__V1__LOOKUP__INIT;
	Shop__V1__Instances *in;
	nng_socket s;
	nng_msg *msg = NULL;
	int found = -1;

	if (nng_req0_open(&s) != 0)
		return -1;
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 500);
	nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 500);
	req.service = "product";
	if (nng_dial(s, lookup_url, NULL, 0) != 0 ||
	    nng_msg_alloc(&msg, shop__v1__lookup__get_packed_size(&req)) != 0)
		goto out_sock;
	shop__v1__lookup__pack(&req, nng_msg_body(msg));
	if (nng_sendmsg(s, msg, 0) != 0) {
		nng_msg_free(msg);
		goto out_sock;
	}
	if (nng_recvmsg(s, &msg, 0) != 0)
		goto out_sock;
	in = shop__v1__instances__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	if (in == NULL)
		goto out_sock;
	found = 0;
	for (size_t i = 0; i < in->n_instances; i++)
		if (strcmp(in->instances[i]->instance, name) == 0)
			found++;
	if (revision != NULL)
		*revision = in->revision;
	shop__v1__instances__free_unpacked(in, NULL);
out_sock:
	nng_close(s);
	return found;
}

/* Polls until lookup_has(name) == want; returns the ms it took, or -1. */
static int64_t wait_lookup(const char *name, int want, int64_t limit_ms)
{
	int64_t t0 = mono_ms();

	while (mono_ms() - t0 <= limit_ms) {
		if (lookup_has(name, NULL) == want)
			return mono_ms() - t0;
		nng_msleep(2);
	}
	return -1;
}

static int view_count(const char *name, bool healthy_only)
{
	shop_instance out[16];
	int n = shop_registry_view_get(view, "product", healthy_only, out, 16), cnt = 0;

	for (int i = 0; i < n; i++)
		if (strcmp(out[i].instance, name) == 0)
			cnt++;
	return cnt;
}

static int64_t wait_view(const char *name, bool healthy_only, int want, int64_t limit_ms)
{
	int64_t t0 = mono_ms();

	while (mono_ms() - t0 <= limit_ms) {
		if (view_count(name, healthy_only) == want)
			return mono_ms() - t0;
		nng_msleep(2);
	}
	return -1;
}

static int registry_start(void)
{
	char e_survey[192], e_lookup[192], e_admin[96], e_ms[64];
	char *argv[] = {(char *)registry_bin, NULL};
	char *envp[] = {e_survey, e_lookup, e_admin, e_ms, "SHOP_REGISTRY_MISSES=3", NULL};

	snprintf(e_survey, sizeof(e_survey), "SHOP_REGISTRY_SURVEY_URL=%s", survey_url);
	snprintf(e_lookup, sizeof(e_lookup), "SHOP_REGISTRY_LOOKUP_URL=%s", lookup_url);
	snprintf(e_admin, sizeof(e_admin), "SHOP_REGISTRY_ADMIN_ADDR=%s", admin_addr);
	snprintf(e_ms, sizeof(e_ms), "SHOP_REGISTRY_SURVEY_MS=%d", SURVEY_MS);
	if ((registry_pid = spawn(argv, envp)) < 0)
		return -1;
	for (int i = 0; i < 250; i++) { /* up to 5 s */
		if (lookup_has("-", NULL) >= 0)
			return 0;
		nng_msleep(20);
	}
	return -1;
}

static void registry_kill(int sig)
{
	if (registry_pid > 0) {
		kill(registry_pid, sig);
		waitpid(registry_pid, NULL, 0);
		registry_pid = -1;
	}
}

/* Minimal HTTP/1.1 GET or other method; returns the malloc'd response
 * (status line, headers, body) or NULL. */
static char *http_request(const char *method, const char *path)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(admin_port)};
	struct timeval tv = {.tv_sec = 2};
	char req[256], *buf = NULL, *nb;
	size_t len = 0, cap = 0;
	ssize_t r;
	int fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		return NULL;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	snprintf(
	    req, sizeof(req),
	    "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
	    method, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		goto out_fd;
	for (;;) {
		if (cap - len < 1024) {
			if ((nb = realloc(buf, cap + 4096)) == NULL)
				goto out_buf;
			buf = nb;
			cap += 4096;
		}
		if ((r = read(fd, buf + len, cap - len - 1)) <= 0)
			break;
		len += (size_t)r;
	}
	if (buf != NULL)
		buf[len] = '\0';
	close(fd);
	return buf;

out_buf:
	free(buf);
out_fd:
	close(fd);
	return NULL;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_advertiser_appears_in_view_within_two_surveys(void)
{
	shop_instance self = mk_self("product-a", 70), got[4];
	int64_t ms;
	int n;

	CU_ASSERT_FATAL(shop_registry_view_create(&view, lookup_url, REFRESH_MS) == 0);
	CU_ASSERT_FATAL(shop_advertiser_create(&adv_keep, survey_url, &self) == 0);
	ms = wait_view("product-a", false, 1, 2000);
	printf("\n    joined the view after %lld ms ", (long long)ms);
	CU_ASSERT(ms >= 0 && ms <= 2 * SURVEY_MS + REFRESH_MS + 100);

	n = shop_registry_view_get(view, "product", false, got, 4);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL(got[0].rpc_url, "tcp://127.0.0.1:7211");
	CU_ASSERT_STRING_EQUAL(got[0].admin_url, "http://127.0.0.1:7311");
	CU_ASSERT_EQUAL(got[0].weight, 70);
	CU_ASSERT_TRUE(got[0].healthy);
	CU_ASSERT_EQUAL(got[0].started_unix_ms, self.started_unix_ms);
	CU_ASSERT(shop_registry_view_revision(view) >= 2);
	CU_ASSERT(shop_registry_view_age_ms(view) >= 0);
	CU_ASSERT_EQUAL(shop_registry_view_get(view, "order", false, got, 4), 0);
}

static void test_unhealthy_advert_reaches_the_view(void)
{
	shop_advertiser_set_healthy(adv_keep, false);
	CU_ASSERT(wait_view("product-a", true, 0, 2 * SURVEY_MS + REFRESH_MS + 200) >= 0);
	CU_ASSERT_EQUAL(view_count("product-a", false), 1); /* listed, not healthy */
	shop_advertiser_set_healthy(adv_keep, true);
	CU_ASSERT(wait_view("product-a", true, 1, 2 * SURVEY_MS + REFRESH_MS + 200) >= 0);
}

static void test_advertiser_destroy_gone_within_200ms(void)
{
	shop_instance self = mk_self("product-b", 30);
	shop_advertiser *a = NULL;
	int64_t ms;

	CU_ASSERT_FATAL(shop_advertiser_create(&a, survey_url, &self) == 0);
	CU_ASSERT_FATAL(wait_lookup("product-b", 1, 2000) >= 0);
	shop_advertiser_destroy(a);
	ms = wait_lookup("product-b", 0, 1000);
	printf("\n    gone %lld ms after destroy ", (long long)ms);
	CU_ASSERT(ms >= 0 && ms < 200);
	CU_ASSERT_EQUAL(lookup_has("product-a", NULL), 1); /* the other one stays */
}

static void test_killed_instance_gone_within_200ms(void)
{
	char self_exe[512];
	char *argv[] = {self_exe, "--advertise", survey_url, "product-k", NULL};
	char *envp[] = {NULL};
	ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	pid_t pid;
	int64_t ms;

	CU_ASSERT_FATAL(n > 0);
	self_exe[n] = '\0';
	CU_ASSERT_FATAL((pid = spawn(argv, envp)) > 0);
	if (wait_lookup("product-k", 1, 3000) < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		CU_FAIL_FATAL("the child instance never joined");
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ms = wait_lookup("product-k", 0, 2000);
	printf("\n    gone %lld ms after kill -9 ", (long long)ms);
	CU_ASSERT(ms >= 0 && ms < 200);
}

static void test_admin_http_lists_instances(void)
{
	char *r;

	r = http_request("GET", "/v1/services");
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT(strncmp(r, "HTTP/1.1 200", 12) == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "Content-Type: application/json"));
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "\"instance\":\"product-a\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "\"last_seen_ms_ago\":"));
	free(r);

	r = http_request("GET", "/v1/prometheus-targets");
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT(strncmp(r, "HTTP/1.1 200", 12) == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "[{\"targets\":[\"127.0.0.1:7311\"],\"labels\":{"
					 "\"service\":\"product\",\"instance\":\"product-a\","
					 "\"__metrics_path__\":\"/metrics\"}}]"));
	free(r);

	r = http_request("GET", "/healthz");
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT(strncmp(r, "HTTP/1.1 200", 12) == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "{\"status\":\"up\"}"));
	free(r);

	r = http_request("GET", "/metrics");
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "shop_registry_instances{service=\"product\"} 1\n"));
	free(r);

	r = http_request("DELETE", "/v1/services");
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT(strncmp(r, "HTTP/1.1 405", 12) == 0);
	free(r);

	r = http_request("GET", "/v1/nope");
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT(strncmp(r, "HTTP/1.1 404", 12) == 0);
	free(r);
}

static void test_garbage_lookup_gets_revision_0(void)
{
	static const unsigned char junk[] = {0xff, 0xff, 0xff, 0xff};
	Shop__V1__Instances *in = NULL;
	nng_socket s;
	nng_msg *msg = NULL;

	CU_ASSERT_FATAL(nng_req0_open(&s) == 0);
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 1000);
	CU_ASSERT_FATAL(nng_dial(s, lookup_url, NULL, 0) == 0);
	CU_ASSERT_FATAL(nng_send(s, (void *)junk, sizeof(junk), 0) == 0);
	CU_ASSERT_FATAL(nng_recvmsg(s, &msg, 0) == 0);
	in = shop__v1__instances__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	CU_ASSERT_PTR_NOT_NULL(in);
	if (in != NULL) {
		CU_ASSERT_EQUAL(in->revision, 0);
		CU_ASSERT_EQUAL(in->n_instances, 0);
		shop__v1__instances__free_unpacked(in, NULL);
	}
	nng_close(s);
	/* The registry still answers proper lookups. */
	CU_ASSERT_EQUAL(lookup_has("product-a", NULL), 1);
}

static void test_view_keeps_cache_when_registry_killed(void)
{
	uint64_t rev = 0;
	int64_t t0 = mono_ms();

	/* Let the view catch up with the registry's latest revision first. */
	CU_ASSERT_FATAL(lookup_has("product-a", &rev) == 1);
	while (shop_registry_view_revision(view) != rev && mono_ms() - t0 < 2000)
		nng_msleep(5);
	CU_ASSERT_EQUAL_FATAL(shop_registry_view_revision(view), rev);
	registry_kill(SIGKILL);
	nng_msleep(4 * REFRESH_MS + 300); /* several failed refreshes */
	CU_ASSERT_EQUAL(view_count("product-a", true), 1);
	CU_ASSERT_EQUAL(shop_registry_view_revision(view), rev);
	CU_ASSERT(shop_registry_view_age_ms(view) >= 250);
}

static void test_advertiser_rejoins_restarted_registry(void)
{
	int64_t t0 = mono_ms(), ms;

	CU_ASSERT_FATAL(registry_start() == 0);
	/* The advertiser redials within its 500 ms reconnect cap. */
	ms = wait_lookup("product-a", 1, 2000);
	printf("\n    back %lld ms after the registry restarted ", (long long)(mono_ms() - t0));
	CU_ASSERT(ms >= 0);
	CU_ASSERT(shop_registry_view_age_ms(view) < 2000);
}

static void test_registry_exits_0_on_sigterm(void)
{
	int64_t t0 = mono_ms();
	int status = -1;

	CU_ASSERT_FATAL(registry_pid > 0);
	kill(registry_pid, SIGTERM);
	CU_ASSERT_EQUAL(waitpid(registry_pid, &status, 0), registry_pid);
	registry_pid = -1;
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CU_ASSERT(mono_ms() - t0 < 2000);
}

static void test_view_destroy_is_prompt(void)
{
	int64_t t0 = mono_ms();

	shop_advertiser_destroy(adv_keep);
	adv_keep = NULL;
	shop_registry_view_destroy(view); /* registry down: a lookup may be waiting */
	view = NULL;
	CU_ASSERT(mono_ms() - t0 < 150);
}

/* ---- harness ------------------------------------------------------------------ */

static int suite_init(void)
{
	snprintf(survey_url, sizeof(survey_url), "ipc:///tmp/shop-regtest-%d-survey.ipc",
		 (int)getpid());
	snprintf(lookup_url, sizeof(lookup_url), "ipc:///tmp/shop-regtest-%d-lookup.ipc",
		 (int)getpid());
	if ((admin_port = free_port()) == 0)
		return -1;
	snprintf(admin_addr, sizeof(admin_addr), "127.0.0.1:%u", (unsigned)admin_port);
	return registry_start();
}

static int suite_fini(void)
{
	shop_advertiser_destroy(adv_keep);
	shop_registry_view_destroy(view);
	registry_kill(SIGKILL);
	unlink(survey_url + strlen("ipc://"));
	unlink(lookup_url + strlen("ipc://"));
	return 0;
}

/* The instance that test_killed_instance_gone_within_200ms kills. */
static int advertise_forever(const char *url, const char *name)
{
	shop_instance self = mk_self(name, 1);
	shop_advertiser *a;

	if (shop_advertiser_create(&a, url, &self) != 0)
		return 1;
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		CU_TestFunc fn;
	} tests[] = {
	    {"advertiser appears in the view within two surveys",
	     test_advertiser_appears_in_view_within_two_surveys},
	    {"unhealthy advert reaches the view", test_unhealthy_advert_reaches_the_view},
	    {"advertiser destroy: gone within 200 ms", test_advertiser_destroy_gone_within_200ms},
	    {"kill -9: gone within 200 ms", test_killed_instance_gone_within_200ms},
	    {"admin http lists instances", test_admin_http_lists_instances},
	    {"garbage lookup gets revision 0", test_garbage_lookup_gets_revision_0},
	    {"view keeps its cache when the registry is killed",
	     test_view_keeps_cache_when_registry_killed},
	    {"advertiser rejoins a restarted registry", test_advertiser_rejoins_restarted_registry},
	    {"registry exits 0 on SIGTERM", test_registry_exits_0_on_sigterm},
	    {"view destroy is prompt", test_view_destroy_is_prompt},
	};
	CU_pSuite s;
	unsigned failed;

	if (argc == 4 && strcmp(argv[1], "--advertise") == 0)
		return advertise_forever(argv[2], argv[3]);
	if ((registry_bin = getenv("SHOP_REGISTRY_BIN")) == NULL) {
		fprintf(stderr, "SHOP_REGISTRY_BIN must name the registry executable\n");
		return 1;
	}
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("registry_nng", suite_init, suite_fini);
	for (size_t i = 0; s != NULL && i < sizeof(tests) / sizeof(tests[0]); i++)
		CU_add_test(s, tests[i].name, tests[i].fn);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed() +
		 CU_get_number_of_suites_failed();
	CU_cleanup_registry();
	return failed == 0 ? 0 : 1;
}
