/* test_registry_nng.c -- the registry executable and lib/registry_client.c
 * over real nng: joins, leaves (graceful and kill -9) and how fast the
 * long-polling view learns of them, the lookup's wait semantics, a full
 * pool of held lookups, adverts from instances with wrong clocks, the
 * cached view outliving the registry and catching up with its restart, the
 * admin HTTP, and a clean SIGTERM exit.
 *
 * The registry under test is the one meson built (SHOP_REGISTRY_BIN); it
 * runs as a child on private ipc:// addresses. A killed instance is this
 * same binary re-executed as "--advertise URL NAME". */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <CUnit/Basic.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include "../cunit_main.h"
#include "probe.h"
#include "clock.h"
#include "registry.pb-c.h"
#include "registry_client.h"

#define SURVEY_MS  100
#define REFRESH_MS 50
/* What a change may take to reach the view once the registry has it: the
 * view's lookup is held and answered at once, so only scheduling. */
#define PUSH_SLACK_MS 200
/* The registry's default: no lookup answered before a survey after the
 * instances' 500 ms redial cap. */
#define WARMUP_MS (SURVEY_MS + 600)
/* The registry's default pool, and the contexts it never parks. */
#define LOOKUP_CONTEXTS 64
#define LOOKUP_UNPARKED 4

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

/* As probe_lookup, on the registry under test. */
static int lookup_wait(const char *name, uint64_t wait_revision, uint32_t wait_ms, int timeout_ms,
		       uint64_t *revision, int64_t *ms)
{
	return probe_lookup(lookup_url, name, wait_revision, wait_ms, timeout_ms, revision, ms);
}

/* A plain lookup (answered at once): as lookup_wait. */
static int lookup_has(const char *name, uint64_t *revision)
{
	return lookup_wait(name, 0, 0, 500, revision, NULL);
}

/* A lookup sent on a context of s and left to be answered while the test
 * does something else: its aio counts its completion in *done. */
typedef struct held_lookup {
	nng_ctx ctx;
	nng_aio *aio;
	int64_t sent_ms, answered_ms; /* answered_ms set by the callback */
	volatile int done;
} held_lookup;

static void held_cb(void *arg)
{
	held_lookup *h = arg;

	h->answered_ms = mono_ms();
	__atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
}

/* Sends Lookup{wait_revision, wait_ms} on a new context of s and starts
 * receiving its answer. Returns 0 or an nng error. */
static int held_start(held_lookup *h, nng_socket s, uint64_t wait_revision, uint32_t wait_ms)
{
	Shop__V1__Lookup req = SHOP__V1__LOOKUP__INIT;
	nng_msg *msg;
	int rv;

	memset(h, 0, sizeof(*h));
	req.service = "product";
	req.wait_revision = wait_revision;
	req.wait_ms = wait_ms;
	if ((rv = nng_ctx_open(&h->ctx, s)) != 0)
		return rv;
	nng_ctx_set_ms(h->ctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	if ((rv = nng_aio_alloc(&h->aio, NULL, NULL)) != 0 ||
	    (rv = nng_msg_alloc(&msg, shop__v1__lookup__get_packed_size(&req))) != 0)
		return rv;
	shop__v1__lookup__pack(&req, nng_msg_body(msg));
	nng_aio_set_msg(h->aio, msg);
	nng_aio_set_timeout(h->aio, 1000);
	h->sent_ms = mono_ms();
	nng_ctx_send(h->ctx, h->aio);
	nng_aio_wait(h->aio);
	if ((rv = nng_aio_result(h->aio)) != 0) {
		nng_msg_free(nng_aio_get_msg(h->aio));
		return rv;
	}
	/* From here on the callback reports the answer. */
	nng_aio_free(h->aio);
	if ((rv = nng_aio_alloc(&h->aio, held_cb, h)) != 0)
		return rv;
	nng_aio_set_timeout(h->aio, 60000);
	nng_ctx_recv(h->ctx, h->aio);
	return 0;
}

static bool held_done(held_lookup *h)
{
	return __atomic_load_n(&h->done, __ATOMIC_ACQUIRE) != 0;
}

/* Waits up to limit_ms for the answer; returns its revision (0: none or an
 * error) and frees the aio. */
static uint64_t held_finish(held_lookup *h, int64_t limit_ms)
{
	Shop__V1__Instances *in;
	uint64_t revision = 0;
	int64_t t0 = mono_ms();
	nng_msg *msg;

	while (!held_done(h) && mono_ms() - t0 < limit_ms)
		nng_msleep(1);
	if (!held_done(h))
		nng_aio_cancel(h->aio);
	nng_aio_wait(h->aio);
	if (nng_aio_result(h->aio) == 0) {
		msg = nng_aio_get_msg(h->aio);
		in = shop__v1__instances__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
		if (in != NULL) {
			revision = in->revision;
			shop__v1__instances__free_unpacked(in, NULL);
		}
		nng_msg_free(msg);
	}
	nng_aio_free(h->aio);
	h->aio = NULL;
	nng_ctx_close(h->ctx);
	return revision;
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

/* Starts the registry without waiting for it. */
static int registry_spawn(void)
{
	char e_survey[192], e_lookup[192], e_admin[96], e_ms[64];
	char *argv[] = {(char *)registry_bin, NULL};
	char *envp[] = {e_survey, e_lookup, e_admin, e_ms, "SHOP_REGISTRY_MISSES=3", NULL};

	snprintf(e_survey, sizeof(e_survey), "SHOP_REGISTRY_SURVEY_URL=%s", survey_url);
	snprintf(e_lookup, sizeof(e_lookup), "SHOP_REGISTRY_LOOKUP_URL=%s", lookup_url);
	snprintf(e_admin, sizeof(e_admin), "SHOP_REGISTRY_ADMIN_ADDR=%s", admin_addr);
	snprintf(e_ms, sizeof(e_ms), "SHOP_REGISTRY_SURVEY_MS=%d", SURVEY_MS);
	registry_pid = spawn(argv, envp);
	return registry_pid < 0 ? -1 : 0;
}

/* Starts the registry and waits until it answers lookups (after its
 * warm-up). */
static int registry_start(void)
{
	if (registry_spawn() != 0)
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

/* Until the view has a first answer; false after limit_ms. */
static bool view_wait_first(shop_registry_view *v, int64_t limit_ms)
{
	int64_t t0 = mono_ms();

	while (shop_registry_view_revision(v) == 0 && mono_ms() - t0 <= limit_ms)
		nng_msleep(1);
	return shop_registry_view_revision(v) != 0;
}

static void test_view_learns_of_a_join_within_one_survey(void)
{
	shop_instance self = mk_self("product-a", 70), got[4];
	held_lookup h;
	nng_socket s;
	int64_t t0, t_view, ms;
	int n;

	CU_ASSERT_FATAL(shop_registry_view_create(&view, lookup_url, REFRESH_MS) == 0);
	CU_ASSERT_FATAL(view_wait_first(view, 1000));
	/* A held lookup of our own marks when the registry's table changes. */
	CU_ASSERT_FATAL(nng_req0_open(&s) == 0);
	CU_ASSERT_FATAL(nng_dial(s, lookup_url, NULL, 0) == 0);
	CU_ASSERT_FATAL(held_start(&h, s, shop_registry_view_revision(view), 20000) == 0);
	nng_msleep(20);
	/* The next survey hears the advertiser, the table changes, and the
	 * view's held lookup is answered at once. */
	t0 = mono_ms();
	CU_ASSERT_FATAL(shop_advertiser_create(&adv_keep, survey_url, &self) == 0);
	ms = wait_view("product-a", false, 1, 2000);
	t_view = mono_ms();
	CU_ASSERT(held_finish(&h, 1000) != 0);
	nng_close(s);
	printf("\n    join in the view %lld ms after the advertiser started (survey every %d "
	       "ms), %lld ms after the registry's table changed ",
	       (long long)ms, SURVEY_MS, (long long)(t_view - h.answered_ms));
	CU_ASSERT(ms >= 0 && ms <= SURVEY_MS + PUSH_SLACK_MS);
	CU_ASSERT(h.answered_ms >= t0 && t_view - h.answered_ms <= PUSH_SLACK_MS);

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

static void test_unhealthy_advert_reaches_the_view_within_one_survey(void)
{
	int64_t ms;

	shop_advertiser_set_healthy(adv_keep, false);
	ms = wait_view("product-a", true, 0, 2000);
	printf("\n    unhealthy after %lld ms ", (long long)ms);
	CU_ASSERT(ms >= 0 && ms <= SURVEY_MS + PUSH_SLACK_MS);
	CU_ASSERT_EQUAL(view_count("product-a", false), 1); /* listed, not healthy */
	shop_advertiser_set_healthy(adv_keep, true);
	ms = wait_view("product-a", true, 1, 2000);
	CU_ASSERT(ms >= 0 && ms <= SURVEY_MS + PUSH_SLACK_MS);
}

static void test_advertiser_destroy_leaves_the_view_at_once(void)
{
	shop_instance self = mk_self("product-b", 30);
	shop_advertiser *a = NULL;
	int64_t ms;

	CU_ASSERT_FATAL(shop_advertiser_create(&a, survey_url, &self) == 0);
	CU_ASSERT_FATAL(wait_view("product-b", false, 1, 2000) >= 0);
	shop_advertiser_destroy(a);
	ms = wait_view("product-b", false, 0, 1000);
	printf("\n    gone from the view %lld ms after destroy ", (long long)ms);
	CU_ASSERT(ms >= 0 && ms <= PUSH_SLACK_MS);
	CU_ASSERT_EQUAL(lookup_has("product-b", NULL), 0);
	CU_ASSERT_EQUAL(lookup_has("product-a", NULL), 1); /* the other one stays */
}

static void test_killed_instance_leaves_the_view_at_once(void)
{
	char self_exe[512];
	char *argv[] = {self_exe, "--advertise", survey_url, "product-k", NULL};
	char *envp[] = {NULL};
	ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	pid_t pid;
	int64_t t0, ms;

	CU_ASSERT_FATAL(n > 0);
	self_exe[n] = '\0';
	CU_ASSERT_FATAL((pid = spawn(argv, envp)) > 0);
	if (wait_view("product-k", false, 1, 3000) < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		CU_FAIL_FATAL("the child instance never reached the view");
	}
	t0 = mono_ms();
	kill(pid, SIGKILL);
	/* The pipe close drops it and bumps the revision at once. */
	ms = wait_view("product-k", false, 0, 2000);
	if (ms >= 0)
		ms = mono_ms() - t0;
	waitpid(pid, NULL, 0);
	printf("\n    gone from the view %lld ms after kill -9 ", (long long)ms);
	CU_ASSERT(ms >= 0 && ms <= PUSH_SLACK_MS);
	CU_ASSERT_EQUAL(lookup_has("product-k", NULL), 0);
}

static void test_lookup_answers_at_once_unless_waiting_on_the_current_revision(void)
{
	uint64_t rev = 0, got = 0;
	int64_t ms = -1;

	CU_ASSERT_FATAL(lookup_has("product-a", &rev) == 1);
	CU_ASSERT_FATAL(rev > 1);
	/* A revision from another registry process, higher or lower. */
	CU_ASSERT_EQUAL(lookup_wait("product-a", rev + 1000, 5000, 2000, &got, &ms), 1);
	CU_ASSERT(ms >= 0 && ms < 100);
	CU_ASSERT_EQUAL(got, rev);
	ms = -1;
	CU_ASSERT_EQUAL(lookup_wait("product-a", rev - 1, 5000, 2000, &got, &ms), 1);
	CU_ASSERT(ms >= 0 && ms < 100);
	CU_ASSERT_EQUAL(got, rev);
	/* The current one, but no wait: an old client's plain lookup. */
	ms = -1;
	CU_ASSERT_EQUAL(lookup_wait("product-a", rev, 0, 2000, &got, &ms), 1);
	CU_ASSERT(ms >= 0 && ms < 100);
	/* The current one with a wait and no change: held for wait_ms. */
	ms = -1;
	CU_ASSERT_EQUAL(lookup_wait("product-a", rev, 300, 2000, &got, &ms), 1);
	printf("\n    held %lld ms for wait_ms 300 ", (long long)ms);
	CU_ASSERT(ms >= 290 && ms < 300 + 150);
	CU_ASSERT_EQUAL(got, rev);
}

static void test_held_lookup_answers_the_next_change(void)
{
	shop_instance self = mk_self("product-c", 5);
	shop_advertiser *a = NULL;
	held_lookup h;
	nng_socket s;
	uint64_t rev = 0, got;
	int64_t t0;

	CU_ASSERT_FATAL(lookup_has("product-a", &rev) == 1);
	CU_ASSERT_FATAL(nng_req0_open(&s) == 0);
	CU_ASSERT_FATAL(nng_dial(s, lookup_url, NULL, 0) == 0);
	CU_ASSERT_FATAL(held_start(&h, s, rev, 20000) == 0);
	nng_msleep(2 * SURVEY_MS);
	CU_ASSERT_FALSE(held_done(&h)); /* nothing changed: still held */
	t0 = mono_ms();
	CU_ASSERT_FATAL(shop_advertiser_create(&a, survey_url, &self) == 0);
	got = held_finish(&h, 2000);
	printf("\n    held lookup answered %lld ms after a join began ",
	       (long long)(h.answered_ms - t0));
	CU_ASSERT(got > rev);
	CU_ASSERT(h.answered_ms - t0 <= SURVEY_MS + PUSH_SLACK_MS);
	shop_advertiser_destroy(a);
	nng_close(s);
	CU_ASSERT(wait_view("product-c", false, 0, 1000) >= 0);
}

static void test_full_pool_of_held_lookups_starves_no_one(void)
{
	enum { N = LOOKUP_CONTEXTS + 6 };
	static held_lookup h[N];
	int max_parked = LOOKUP_CONTEXTS - LOOKUP_UNPARKED, held = 0;
	uint64_t rev = 0, got = 0;
	int64_t t0, ms = -1;
	nng_socket s;

	CU_ASSERT_FATAL(lookup_has("product-a", &rev) == 1);
	CU_ASSERT_FATAL(nng_req0_open(&s) == 0);
	CU_ASSERT_FATAL(nng_dial(s, lookup_url, NULL, 0) == 0);
	for (int i = 0; i < N; i++)
		CU_ASSERT_FATAL(held_start(&h[i], s, rev, 20000) == 0);
	/* Until those that find no context left have their answers. */
	t0 = mono_ms();
	do {
		nng_msleep(50);
		held = 0;
		for (int i = 0; i < N; i++)
			held += !held_done(&h[i]);
	} while (held > max_parked && mono_ms() - t0 < 3000);
	/* The view holds one context of its own. */
	printf("\n    %d of %d lookups held (pool %d, the view holds one) ", held, N, max_parked);
	CU_ASSERT(held == max_parked - 1 || held == max_parked);

	/* A plain lookup and a waiting one are both answered at once. */
	CU_ASSERT_EQUAL(lookup_wait("product-a", 0, 0, 1000, &got, &ms), 1);
	CU_ASSERT(ms >= 0 && ms < 100);
	ms = -1;
	CU_ASSERT_EQUAL(lookup_wait("product-a", rev, 20000, 1000, &got, &ms), 1);
	CU_ASSERT(ms >= 0 && ms < 100);
	CU_ASSERT_EQUAL(got, rev);

	/* The caller goes away: its pipe closes and its contexts are free
	 * again, long before their 20 s, so a new lookup is held. */
	for (int i = 0; i < N; i++)
		held_finish(&h[i], 0);
	nng_close(s);
	nng_msleep(50);
	ms = -1;
	CU_ASSERT_EQUAL(lookup_wait("product-a", rev, 300, 1000, &got, &ms), 1);
	CU_ASSERT(ms >= 290);
}

static void test_adverts_with_wrong_clocks_are_listed_and_kept(void)
{
	const int64_t day_ms = 24LL * 3600 * 1000;
	shop_instance fut = mk_self("product-future", 1), past = mk_self("product-past", 1);
	shop_instance got[8];
	shop_advertiser *af = NULL, *ap = NULL;
	uint64_t rev0 = 0, rev1 = 0;
	int n, seen = 0;

	fut.started_unix_ms += day_ms;
	past.started_unix_ms -= day_ms;
	CU_ASSERT_FATAL(shop_advertiser_create(&af, survey_url, &fut) == 0);
	CU_ASSERT_FATAL(shop_advertiser_create(&ap, survey_url, &past) == 0);
	CU_ASSERT(wait_view("product-future", false, 1, 2000) >= 0);
	CU_ASSERT(wait_view("product-past", false, 1, 2000) >= 0);
	CU_ASSERT_EQUAL(lookup_has("product-future", &rev0), 1);
	/* Well past SHOP_REGISTRY_MISSES (3) surveys: nothing leaves, nothing
	 * changes, so the revision stays. */
	nng_msleep(6 * SURVEY_MS);
	CU_ASSERT_EQUAL(lookup_has("product-future", &rev1), 1);
	CU_ASSERT_EQUAL(lookup_has("product-past", NULL), 1);
	CU_ASSERT_EQUAL(rev1, rev0);
	n = shop_registry_view_get(view, "product", true, got, 8);
	for (int i = 0; i < n; i++) {
		if (strcmp(got[i].instance, "product-future") == 0) {
			CU_ASSERT_EQUAL(got[i].started_unix_ms, fut.started_unix_ms);
			seen++;
		} else if (strcmp(got[i].instance, "product-past") == 0) {
			CU_ASSERT_EQUAL(got[i].started_unix_ms, past.started_unix_ms);
			seen++;
		}
	}
	CU_ASSERT_EQUAL(seen, 2);
	shop_advertiser_destroy(af);
	shop_advertiser_destroy(ap);
	CU_ASSERT(wait_view("product-future", false, 0, 1000) >= 0);
	CU_ASSERT(wait_view("product-past", false, 0, 1000) >= 0);
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
	nng_msleep(4 * REFRESH_MS + 300); /* several failed lookups */
	CU_ASSERT_EQUAL(view_count("product-a", true), 1);
	CU_ASSERT_EQUAL(shop_registry_view_revision(view), rev);
	CU_ASSERT(shop_registry_view_age_ms(view) >= 250);
}

/* Restarts the registry and follows the view until it holds an answer of
 * the new process (a revision other than old_rev, which is not the new
 * one's); product-a must never leave it meanwhile. Returns the ms from the
 * restart, or -1. */
static int64_t restart_and_follow(uint64_t old_rev, int *gaps)
{
	int64_t t0 = mono_ms();

	*gaps = 0;
	if (registry_spawn() != 0)
		return -1;
	while (mono_ms() - t0 < 5000) {
		if (view_count("product-a", true) != 1)
			(*gaps)++;
		if (shop_registry_view_revision(view) != old_rev)
			return mono_ms() - t0;
		nng_msleep(1);
	}
	return -1;
}

static void test_view_catches_up_with_a_restarted_registry(void)
{
	uint64_t old_rev = shop_registry_view_revision(view), rev = 0;
	int64_t ms, t0;
	int gaps;

	/* A fresh table starts at 1: far below what the view holds. */
	CU_ASSERT_FATAL(old_rev > 5);
	ms = restart_and_follow(old_rev, &gaps);
	printf("\n    view on the new registry %lld ms after its restart (warm-up %d ms), "
	       "revision %llu -> %llu, %d polls without product-a ",
	       (long long)ms, WARMUP_MS, (unsigned long long)old_rev,
	       (unsigned long long)shop_registry_view_revision(view), gaps);
	/* A restart includes exec and, under ASan, its start-up: generous. */
	CU_ASSERT(ms >= 0 && ms <= WARMUP_MS + SURVEY_MS + 1500 + PUSH_SLACK_MS);
	CU_ASSERT_EQUAL(gaps, 0);
	CU_ASSERT_EQUAL(view_count("product-a", true), 1);
	CU_ASSERT(shop_registry_view_revision(view) < old_rev);
	/* And it follows the registry from there on. */
	CU_ASSERT_EQUAL_FATAL(lookup_has("product-a", &rev), 1);
	t0 = mono_ms();
	while (shop_registry_view_revision(view) != rev && mono_ms() - t0 < 1000)
		nng_msleep(1);
	CU_ASSERT_EQUAL(shop_registry_view_revision(view), rev);
}

/* The new registry reaches exactly the revision the view holds, with other
 * instances: the view must not take the number for the table. */
static void test_view_not_fooled_by_an_equal_revision_after_restart(void)
{
	shop_instance x = mk_self("product-x", 1), y = mk_self("product-y", 1);
	shop_advertiser *ax = NULL, *ay = NULL;
	uint64_t old_rev;
	int64_t t0, ms = -1;
	int gaps;

	/* A fresh registry (revision 1) that sees product-a and product-x:
	 * revision 3. */
	registry_kill(SIGKILL);
	CU_ASSERT_FATAL(registry_start() == 0);
	CU_ASSERT_FATAL(shop_advertiser_create(&ax, survey_url, &x) == 0);
	CU_ASSERT_FATAL(wait_view("product-x", false, 1, 3000) >= 0);
	CU_ASSERT_FATAL(wait_view("product-a", false, 1, 3000) >= 0);
	old_rev = shop_registry_view_revision(view);
	/* Gone while the registry is down; product-y comes instead. */
	registry_kill(SIGKILL);
	shop_advertiser_destroy(ax);
	CU_ASSERT_FATAL(shop_advertiser_create(&ay, survey_url, &y) == 0);
	nng_msleep(200);
	CU_ASSERT_EQUAL(view_count("product-x", false), 1); /* still cached */
	CU_ASSERT(restart_and_follow(old_rev, &gaps) >= -1);
	t0 = mono_ms();
	while (mono_ms() - t0 < 3000) {
		if (view_count("product-y", false) == 1 && view_count("product-x", false) == 0) {
			ms = mono_ms() - t0;
			break;
		}
		nng_msleep(1);
	}
	printf("\n    revision %llu before, %llu after the restart; y in, x out "
	       "(%d polls without product-a) ",
	       (unsigned long long)old_rev, (unsigned long long)shop_registry_view_revision(view),
	       gaps);
	CU_ASSERT(ms >= 0);
	/* No assertion on gaps here: product-a's advertiser lost its pipe
	 * twice within a second, and its redial back-off (up to 500 ms) may
	 * put its return just after the warm-up on a loaded machine (seen
	 * once under ASan). The catch-up test above asserts no gap after a
	 * single restart. product-a must be back soon, though: */
	CU_ASSERT(wait_view("product-a", true, 1, 3000) >= 0);
	shop_advertiser_destroy(ay);
	CU_ASSERT(wait_view("product-y", false, 0, 1000) >= 0);
}

static void test_view_destroy_is_prompt_while_its_lookup_is_held(void)
{
	int64_t t0;

	nng_msleep(50); /* the view's lookup is held by now */
	t0 = mono_ms();
	shop_registry_view_destroy(view);
	view = NULL;
	printf("\n    destroyed in %lld ms ", (long long)(mono_ms() - t0));
	CU_ASSERT(mono_ms() - t0 < 150);
}

static void test_registry_exits_0_on_sigterm_with_lookups_held(void)
{
	held_lookup h;
	nng_socket s;
	uint64_t rev = 0;
	int64_t t0;
	int status = -1;

	CU_ASSERT_FATAL(registry_pid > 0);
	CU_ASSERT_FATAL(lookup_has("product-a", &rev) == 1);
	CU_ASSERT_FATAL(nng_req0_open(&s) == 0);
	CU_ASSERT_FATAL(nng_dial(s, lookup_url, NULL, 0) == 0);
	CU_ASSERT_FATAL(held_start(&h, s, rev, 20000) == 0);
	nng_msleep(50);
	CU_ASSERT_FALSE(held_done(&h));
	t0 = mono_ms();
	kill(registry_pid, SIGTERM);
	CU_ASSERT_EQUAL(waitpid(registry_pid, &status, 0), registry_pid);
	registry_pid = -1;
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CU_ASSERT(mono_ms() - t0 < 2000);
	CU_ASSERT_EQUAL(held_finish(&h, 1000), 0); /* no answer: the pipe closed */
	nng_close(s);
}

static void test_view_destroy_is_prompt_while_the_registry_is_down(void)
{
	int64_t t0;

	shop_advertiser_destroy(adv_keep);
	adv_keep = NULL;
	CU_ASSERT_FATAL(shop_registry_view_create(&view, lookup_url, REFRESH_MS) == 0);
	nng_msleep(100); /* its lookup waits for a pipe */
	t0 = mono_ms();
	shop_registry_view_destroy(view);
	view = NULL;
	CU_ASSERT(mono_ms() - t0 < 150);
}

/* A registry whose lookup socket completes the SP handshake (as a REP
 * peer) and then reads nothing: what the view met, rarely, right after a
 * registry restart. It counts the connections it accepted. */
struct mute_registry {
	int fd;
	atomic_int accepted;
	int conns[8];
	pthread_t thread;
};

static void *mute_main(void *arg)
{
	static const uint8_t rep_header[8] = {0, 'S', 'P', 0, 0, 49, 0, 0}; /* REP v0 */
	struct mute_registry *m = arg;
	uint8_t head[8];
	int fd, n;

	while ((fd = accept(m->fd, NULL, NULL)) >= 0) {
		n = atomic_fetch_add(&m->accepted, 1);
		if (n >= 8 || read(fd, head, sizeof(head)) != (ssize_t)sizeof(head) ||
		    write(fd, rep_header, sizeof(rep_header)) != (ssize_t)sizeof(rep_header)) {
			close(fd);
			continue;
		}
		m->conns[n] = fd; /* kept open, never read again */
	}
	return NULL;
}

static void test_view_drops_a_connection_that_stops_answering(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct mute_registry m = {.fd = -1};
	shop_registry_view *v = NULL;
	char url[sizeof(sa.sun_path) + 8];
	int64_t t0;
	int n;

	memset(m.conns, -1, sizeof(m.conns));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/shop-regtest-%d-mute.ipc", (int)getpid());
	snprintf(url, sizeof(url), "ipc://%s", sa.sun_path);
	unlink(sa.sun_path);
	CU_ASSERT_FATAL((m.fd = socket(AF_UNIX, SOCK_STREAM, 0)) >= 0);
	CU_ASSERT_FATAL(bind(m.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CU_ASSERT_FATAL(listen(m.fd, 8) == 0);
	CU_ASSERT_FATAL(pthread_create(&m.thread, NULL, mute_main, &m) == 0);
	CU_ASSERT_FATAL(shop_registry_view_create(&v, url, REFRESH_MS) == 0);
	/* Two unanswered lookups of 2 s each, then a new connection. */
	t0 = mono_ms();
	while ((n = atomic_load(&m.accepted)) < 2 && mono_ms() - t0 < 8000)
		nng_msleep(10);
	printf("\n    second connection after %lld ms ", (long long)(mono_ms() - t0));
	CU_ASSERT(n >= 2);
	shop_registry_view_destroy(v);
	shutdown(m.fd, SHUT_RDWR);
	pthread_join(m.thread, NULL);
	close(m.fd);
	for (int i = 0; i < 8; i++)
		if (m.conns[i] >= 0)
			close(m.conns[i]);
	unlink(sa.sun_path);
}

/* A registry that answers every lookup with one advert in the safe form
 * and two outside it (a header-injecting name, a port out of range). */
static void *rogue_main(void *arg)
{
	nng_socket *s = arg;
	Shop__V1__Advert ads[3];
	Shop__V1__Advert *ptrs[3] = {&ads[0], &ads[1], &ads[2]};
	Shop__V1__Instances out = SHOP__V1__INSTANCES__INIT;
	static const char *const names[3] = {"product-a", "x\r\nSet-Cookie: pwn=1", "product-b"};
	static const char *const urls[3] = {"tcp://127.0.0.1:7211", "tcp://127.0.0.1:7212",
					    "tcp://127.0.0.1:99999"};
	nng_msg *msg;

	for (int i = 0; i < 3; i++) {
		shop__v1__advert__init(&ads[i]);
		ads[i].service = "product";
		ads[i].instance = (char *)names[i];
		ads[i].rpc_url = (char *)urls[i];
		ads[i].admin_url = "http://127.0.0.1:7311";
		ads[i].weight = 50;
		ads[i].healthy = true;
		ads[i].version = "0.1.0";
	}
	out.n_instances = 3;
	out.instances = ptrs;
	out.revision = 7;
	while (nng_recvmsg(*s, &msg, 0) == 0) {
		nng_msg_clear(msg);
		if (nng_msg_realloc(msg, shop__v1__instances__get_packed_size(&out)) != 0) {
			nng_msg_free(msg);
			break;
		}
		shop__v1__instances__pack(&out, nng_msg_body(msg));
		if (nng_sendmsg(*s, msg, 0) != 0)
			nng_msg_free(msg);
	}
	return NULL;
}

static void test_view_leaves_out_instances_outside_the_safe_form(void)
{
	shop_registry_view *v = NULL;
	shop_instance got[4];
	nng_socket rep;
	pthread_t t;
	char url[96];
	int n;

	snprintf(url, sizeof(url), "ipc:///tmp/shop-regtest-%d-rogue.ipc", (int)getpid());
	CU_ASSERT_FATAL(nng_rep0_open(&rep) == 0);
	CU_ASSERT_FATAL(nng_listen(rep, url, NULL, 0) == 0);
	CU_ASSERT_FATAL(pthread_create(&t, NULL, rogue_main, &rep) == 0);
	CU_ASSERT_FATAL(shop_registry_view_create(&v, url, REFRESH_MS) == 0);
	CU_ASSERT(view_wait_first(v, 3000));
	CU_ASSERT_EQUAL(shop_registry_view_revision(v), 7);
	n = shop_registry_view_get(v, "product", false, got, 4);
	CU_ASSERT_EQUAL(n, 1);
	if (n >= 1)
		CU_ASSERT_STRING_EQUAL(got[0].instance, "product-a");
	shop_registry_view_destroy(v);
	nng_close(rep); /* ends rogue_main's receive */
	pthread_join(t, NULL);
	unlink(url + strlen("ipc://"));
}

/* ---- harness ------------------------------------------------------------------ */

static int suite_init(void)
{
	snprintf(survey_url, sizeof(survey_url), "ipc:///tmp/shop-regtest-%d-survey.ipc",
		 (int)getpid());
	snprintf(lookup_url, sizeof(lookup_url), "ipc:///tmp/shop-regtest-%d-lookup.ipc",
		 (int)getpid());
	if ((admin_port = probe_free_port()) == 0)
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

/* The hang guard's last act: no registry outlives this process. */
static void kill_registry_on_hang(void)
{
	if (registry_pid > 0)
		kill(registry_pid, SIGKILL);
	unlink(survey_url + strlen("ipc://"));
	unlink(lookup_url + strlen("ipc://"));
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
	static const shop_test tests[] = {
	    {"view learns of a join within one survey",
	     test_view_learns_of_a_join_within_one_survey},
	    {"unhealthy advert reaches the view within one survey",
	     test_unhealthy_advert_reaches_the_view_within_one_survey},
	    {"advertiser destroy leaves the view at once",
	     test_advertiser_destroy_leaves_the_view_at_once},
	    {"kill -9 leaves the view at once", test_killed_instance_leaves_the_view_at_once},
	    {"lookup answers at once unless waiting on the current revision",
	     test_lookup_answers_at_once_unless_waiting_on_the_current_revision},
	    {"held lookup answers the next change", test_held_lookup_answers_the_next_change},
	    {"full pool of held lookups starves no one",
	     test_full_pool_of_held_lookups_starves_no_one},
	    {"adverts with wrong clocks are listed and kept",
	     test_adverts_with_wrong_clocks_are_listed_and_kept},
	    {"admin http lists instances", test_admin_http_lists_instances},
	    {"garbage lookup gets revision 0", test_garbage_lookup_gets_revision_0},
	    {"view keeps its cache when the registry is killed",
	     test_view_keeps_cache_when_registry_killed},
	    {"view catches up with a restarted registry",
	     test_view_catches_up_with_a_restarted_registry},
	    {"view not fooled by an equal revision after a restart",
	     test_view_not_fooled_by_an_equal_revision_after_restart},
	    {"view destroy is prompt while its lookup is held",
	     test_view_destroy_is_prompt_while_its_lookup_is_held},
	    {"registry exits 0 on SIGTERM with lookups held",
	     test_registry_exits_0_on_sigterm_with_lookups_held},
	    {"view destroy is prompt while the registry is down",
	     test_view_destroy_is_prompt_while_the_registry_is_down},
	    {"view drops a connection that stops answering",
	     test_view_drops_a_connection_that_stops_answering},
	    {"view leaves out instances outside the safe form",
	     test_view_leaves_out_instances_outside_the_safe_form},
	};
	if (argc == 4 && strcmp(argv[1], "--advertise") == 0)
		return advertise_forever(argv[2], argv[3]);
	if ((registry_bin = getenv("SHOP_REGISTRY_BIN")) == NULL) {
		fprintf(stderr, "SHOP_REGISTRY_BIN must name the registry executable\n");
		return 1;
	}
	shop_test_hang_hook = kill_registry_on_hang;
	return shop_test_run_suite("registry_nng", suite_init, suite_fini, tests,
				   sizeof(tests) / sizeof(tests[0]));
}
