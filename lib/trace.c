/* trace.c -- W3C trace context, Zipkin v2 span JSON, a bounded span queue
 * and the reporter thread that POSTs batches over a plain TCP socket. */
#include "trace.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netdb.h>
#include <sys/socket.h>

#include "balancer.h"
#include "clock.h"
#include "log.h"

/* The reporter sends every TRACE_FLUSH_MS, or as soon as TRACE_BATCH spans
 * wait; TRACE_QUEUE spans wait at most (about 0.6 MB), the rest is dropped. */
#define TRACE_QUEUE    2048
#define TRACE_BATCH    256
#define TRACE_FLUSH_MS 200
/* One POST, connect to answer: a collector slower than this loses the batch
 * rather than holding up the next ones. */
#define TRACE_POST_TIMEOUT_MS 2000
/* The last batch at shutdown gets less: stopping must stay quick. */
#define TRACE_FINAL_TIMEOUT_MS 500

/* ---- trace context ----------------------------------------------------------- */

/* n lowercase hex digits; *nonzero tells whether any is not '0'. */
static bool lower_hex(const char *s, size_t n, bool *nonzero)
{
	*nonzero = false;
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
		if (s[i] != '0')
			*nonzero = true;
	}
	return true;
}

int shop_traceparent_parse(const char *tp, shop_trace_ctx *out)
{
	bool nz_trace, nz_span, nz;

	memset(out, 0, sizeof(*out));
	if (tp == NULL || strnlen(tp, 56) != 55 || strncmp(tp, "00-", 3) != 0 || tp[35] != '-' ||
	    tp[52] != '-')
		return -1;
	if (!lower_hex(tp + 3, 32, &nz_trace) || !lower_hex(tp + 36, 16, &nz_span) ||
	    !lower_hex(tp + 53, 2, &nz) || !nz_trace || !nz_span)
		return -1;
	memcpy(out->trace_id, tp + 3, 32);
	memcpy(out->span_id, tp + 36, 16);
	out->flags = (uint8_t)strtoul(tp + 53, NULL, 16);
	return 0;
}

void shop_traceparent_format(const shop_trace_ctx *c, char out[SHOP_TRACEPARENT_LEN])
{
	snprintf(out, SHOP_TRACEPARENT_LEN, "00-%.32s-%.16s-%02x", c->trace_id, c->span_id,
		 (unsigned)c->flags);
}

void shop_trace_new_span_id(char out[17])
{
	uint64_t id;

	while ((id = shop_random_u64()) == 0)
		;
	snprintf(out, 17, "%016" PRIx64, id);
}

void shop_trace_child(const shop_trace_ctx *parent, shop_trace_ctx *child)
{
	memcpy(child->trace_id, parent->trace_id, sizeof(child->trace_id));
	child->flags = parent->flags;
	shop_trace_new_span_id(child->span_id);
}

/* ---- spans ---------------------------------------------------------------------- */

static int64_t now_unix_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void shop_span_begin(shop_span *s, shop_span_kind kind, const char *name, const char *trace_id,
		     const char *id, const char *parent_id, bool sampled)
{
	memset(s, 0, sizeof(*s));
	s->kind = kind;
	s->sampled = sampled;
	snprintf(s->name, sizeof(s->name), "%s", name != NULL ? name : "");
	snprintf(s->trace_id, sizeof(s->trace_id), "%s", trace_id != NULL ? trace_id : "");
	snprintf(s->id, sizeof(s->id), "%s", id != NULL ? id : "");
	snprintf(s->parent_id, sizeof(s->parent_id), "%s", parent_id != NULL ? parent_id : "");
	s->timestamp_us = now_unix_us();
	s->start_mono_us = shop_now_mono_us();
}

void shop_span_tag(shop_span *s, const char *key, const char *fmt, ...)
{
	va_list ap;

	if (s->n_tags >= SHOP_SPAN_MAX_TAGS)
		return;
	snprintf(s->tags[s->n_tags].key, sizeof(s->tags[0].key), "%s", key);
	va_start(ap, fmt);
	vsnprintf(s->tags[s->n_tags].value, sizeof(s->tags[0].value), fmt, ap);
	va_end(ap);
	s->n_tags++;
}

/* Appends printf output at buf + *n; false (nothing kept) when it does not
 * fit. */
static bool put(char *buf, size_t cap, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool put(char *buf, size_t cap, size_t *n, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (*n >= cap)
		return false;
	va_start(ap, fmt);
	w = vsnprintf(buf + *n, cap - *n, fmt, ap);
	va_end(ap);
	if (w < 0 || (size_t)w >= cap - *n) {
		buf[*n] = '\0';
		return false;
	}
	*n += (size_t)w;
	return true;
}

/* A JSON string: the quotes and s escaped. */
static bool put_str(char *buf, size_t cap, size_t *n, const char *s)
{
	char esc[6 * sizeof(((shop_span *)0)->tags[0].value) + 1];

	shop_json_escape(esc, sizeof(esc), s);
	return put(buf, cap, n, "\"%s\"", esc);
}

size_t shop_span_json(const shop_span *s, const char *local_service, char *buf, size_t cap)
{
	size_t n = 0;
	bool ok;

	if (cap == 0)
		return 0;
	ok = put(buf, cap, &n, "{\"traceId\":\"%s\",\"id\":\"%s\",", s->trace_id, s->id);
	if (ok && s->parent_id[0] != '\0')
		ok = put(buf, cap, &n, "\"parentId\":\"%s\",", s->parent_id);
	ok = ok && put(buf, cap, &n, "\"name\":") && put_str(buf, cap, &n, s->name) &&
	     put(buf, cap, &n,
		 ",\"kind\":\"%s\",\"timestamp\":%" PRId64 ",\"duration\":%" PRId64
		 ",\"localEndpoint\":{\"serviceName\":",
		 s->kind == SHOP_SPAN_SERVER ? "SERVER" : "CLIENT", s->timestamp_us,
		 s->duration_us > 0 ? s->duration_us : 1) &&
	     put_str(buf, cap, &n, local_service != NULL ? local_service : "") &&
	     put(buf, cap, &n, "}");
	if (ok && s->remote_service[0] != '\0')
		ok = put(buf, cap, &n, ",\"remoteEndpoint\":{\"serviceName\":") &&
		     put_str(buf, cap, &n, s->remote_service) && put(buf, cap, &n, "}");
	if (ok && s->n_tags > 0) {
		ok = put(buf, cap, &n, ",\"tags\":{");
		for (int i = 0; ok && i < s->n_tags; i++)
			ok = put(buf, cap, &n, "%s", i > 0 ? "," : "") &&
			     put_str(buf, cap, &n, s->tags[i].key) && put(buf, cap, &n, ":") &&
			     put_str(buf, cap, &n, s->tags[i].value);
		ok = ok && put(buf, cap, &n, "}");
	}
	ok = ok && put(buf, cap, &n, "}");
	if (!ok) {
		buf[0] = '\0';
		return 0;
	}
	return n;
}

/* ---- the queue ---------------------------------------------------------------- */

struct shop_span_queue {
	pthread_mutex_t mtx;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	shop_span *ring;
	size_t cap, head, len;
	size_t wake_at; /* 0: nobody waits */
	bool closed;
	uint64_t dropped;
};

shop_span_queue *shop_span_queue_create(size_t cap)
{
	shop_span_queue *q;

	if (cap == 0 || (q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	if ((q->ring = calloc(cap, sizeof(*q->ring))) == NULL)
		goto out_free;
	q->cap = cap;
	if (pthread_mutex_init(&q->mtx, NULL) != 0)
		goto out_ring;
	if (shop_cond_init_mono(&q->cv) != 0)
		goto out_mtx;
	return q;

out_mtx:
	pthread_mutex_destroy(&q->mtx);
out_ring:
	free(q->ring);
out_free:
	free(q);
	return NULL;
}

void shop_span_queue_destroy(shop_span_queue *q)
{
	if (q == NULL)
		return;
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->mtx);
	free(q->ring);
	free(q);
}

bool shop_span_queue_push(shop_span_queue *q, const shop_span *s)
{
	bool ok = false;

	pthread_mutex_lock(&q->mtx);
	if (q->len == q->cap) {
		q->dropped++;
	} else {
		q->ring[(q->head + q->len) % q->cap] = *s;
		q->len++;
		ok = true;
		if (q->wake_at > 0 && q->len >= q->wake_at)
			pthread_cond_signal(&q->cv);
	}
	pthread_mutex_unlock(&q->mtx);
	return ok;
}

size_t shop_span_queue_pop(shop_span_queue *q, shop_span *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&q->mtx);
	while (n < max && q->len > 0) {
		out[n++] = q->ring[q->head];
		q->head = (q->head + 1) % q->cap;
		q->len--;
	}
	pthread_mutex_unlock(&q->mtx);
	return n;
}

size_t shop_span_queue_wait(shop_span_queue *q, size_t wake_at, int timeout_ms)
{
	struct timespec until;
	size_t len;

	until = shop_mono_deadline(timeout_ms);
	pthread_mutex_lock(&q->mtx);
	q->wake_at = wake_at > 0 ? wake_at : 1;
	while (!q->closed && q->len < q->wake_at &&
	       pthread_cond_timedwait(&q->cv, &q->mtx, &until) != ETIMEDOUT)
		;
	q->wake_at = 0;
	len = q->len;
	pthread_mutex_unlock(&q->mtx);
	return len;
}

void shop_span_queue_close(shop_span_queue *q)
{
	pthread_mutex_lock(&q->mtx);
	q->closed = true;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mtx);
}

uint64_t shop_span_queue_dropped(shop_span_queue *q)
{
	uint64_t d;

	pthread_mutex_lock(&q->mtx);
	d = q->dropped;
	pthread_mutex_unlock(&q->mtx);
	return d;
}

/* ---- the collector URL ---------------------------------------------------------- */

int shop_zipkin_url_parse(const char *url, shop_zipkin_url *out)
{
	const char *auth, *path, *host_end, *colon = NULL;
	size_t alen, hlen;

	memset(out, 0, sizeof(*out));
	if (url == NULL || strncmp(url, "http://", 7) != 0)
		return -1;
	auth = url + 7;
	path = strchr(auth, '/');
	if (path == NULL)
		path = auth + strlen(auth);
	alen = (size_t)(path - auth);
	if (alen == 0 || alen >= sizeof(out->hostport) || memchr(auth, '@', alen) != NULL)
		return -1;
	if (strchr(path, '#') != NULL || strlen(path) >= sizeof(out->path) ||
	    strpbrk(path, " \r\n\t") != NULL)
		return -1;
	if (auth[0] == '[') { /* [v6]:port */
		host_end = memchr(auth, ']', alen);
		if (host_end == NULL || host_end == auth + 1)
			return -1;
		if (host_end + 1 < path) {
			if (host_end[1] != ':')
				return -1;
			colon = host_end + 1;
		}
		hlen = (size_t)(host_end - auth - 1);
		memcpy(out->host, auth + 1, hlen);
	} else {
		colon = memchr(auth, ':', alen);
		host_end = colon != NULL ? colon : path;
		hlen = (size_t)(host_end - auth);
		if (hlen == 0 || hlen >= sizeof(out->host))
			return -1;
		memcpy(out->host, auth, hlen);
	}
	out->host[hlen] = '\0';
	if (colon != NULL) {
		size_t plen = (size_t)(path - colon - 1);
		long p;
		char *end;

		if (plen == 0 || plen >= sizeof(out->port))
			return -1;
		memcpy(out->port, colon + 1, plen);
		out->port[plen] = '\0';
		if (out->port[0] < '0' || out->port[0] > '9')
			return -1;
		p = strtol(out->port, &end, 10);
		if (*end != '\0' || p < 1 || p > 65535)
			return -1;
	} else {
		snprintf(out->port, sizeof(out->port), "80");
	}
	memcpy(out->hostport, auth, alen);
	out->hostport[alen] = '\0';
	snprintf(out->path, sizeof(out->path), "%s", path[0] != '\0' ? path : "/");
	return 0;
}

/* ---- the HTTP client ------------------------------------------------------------- */

/* A non-blocking socket connected to the collector, or -1. */
static int http_connect(const shop_zipkin_url *u, int64_t deadline_us, const char **why)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
	int fd = -1, err;
	socklen_t elen = sizeof(err);

	if (getaddrinfo(u->host, u->port, &hints, &res) != 0) {
		*why = "cannot resolve the host";
		return -1;
	}
	*why = "cannot connect";
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS && shop_wait_fd(fd, POLLOUT, deadline_us) == 0 &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

static int send_all(int fd, const char *p, size_t len, int64_t deadline_us)
{
	while (len > 0) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);

		if (w > 0) {
			p += w;
			len -= (size_t)w;
		} else if (w < 0 && errno == EINTR) {
			continue;
		} else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (shop_wait_fd(fd, POLLOUT, deadline_us) != 0)
				return -1;
		} else {
			return -1;
		}
	}
	return 0;
}

/* POSTs body (JSON) to the collector and reads the status line. Returns
 * the HTTP status, or -1 with *why set. One connection per batch:
 * "Connection: close" keeps the client this small. */
static int http_post(const shop_zipkin_url *u, const char *body, size_t len, int timeout_ms,
		     const char **why)
{
	int64_t deadline_us = shop_now_mono_us() + (int64_t)timeout_ms * 1000;
	char head[1024], reply[128];
	size_t got = 0;
	int fd, n, status = -1;

	if ((fd = http_connect(u, deadline_us, why)) < 0)
		return -1;
	n = snprintf(head, sizeof(head),
		     "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\nConnection: close\r\nUser-Agent: shop-trace\r\n\r\n",
		     u->path, u->hostport, len);
	if (n < 0 || (size_t)n >= sizeof(head)) {
		*why = "URL too long";
		goto out;
	}
	if (send_all(fd, head, (size_t)n, deadline_us) != 0 ||
	    send_all(fd, body, len, deadline_us) != 0) {
		*why = "cannot send";
		goto out;
	}
	*why = "no answer";
	while (got < sizeof(reply) - 1 && memchr(reply, '\n', got) == NULL) {
		ssize_t r = recv(fd, reply + got, sizeof(reply) - 1 - got, 0);

		if (r > 0) {
			got += (size_t)r;
		} else if (r < 0 && errno == EINTR) {
			continue;
		} else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (shop_wait_fd(fd, POLLIN, deadline_us) != 0)
				goto out;
		} else {
			break; /* closed, or an error */
		}
	}
	reply[got] = '\0';
	if (strncmp(reply, "HTTP/1.", 7) == 0 && got >= 12 && reply[8] == ' ' &&
	    sscanf(reply + 9, "%3d", &status) == 1)
		*why = "refused";
	else
		status = -1;
out:
	close(fd);
	return status;
}

/* ---- the reporter ---------------------------------------------------------------- */

static struct {
	shop_span_queue *q;
	shop_zipkin_url url;
	char local[64];
	pthread_t thread;
	atomic_bool stop;
	bool failing; /* reporter thread only: the last POST failed */
	atomic_uint_fast64_t sent, lost;
} reporter;

/* Read on every span's finish without a lock: set before the threads that
 * finish spans start, cleared after they stopped. */
static atomic_bool reporter_on;

void shop_span_finish(shop_span *s)
{
	int64_t d = shop_now_mono_us() - s->start_mono_us;

	s->duration_us = d > 0 ? d : 1;
	if (!s->sampled || !atomic_load_explicit(&reporter_on, memory_order_acquire))
		return;
	if (!shop_span_queue_push(reporter.q, s))
		atomic_fetch_add(&reporter.lost, 1);
}

/* Encodes and POSTs one batch; counts what the collector took or lost. */
static void reporter_send(shop_span *batch, size_t n, int timeout_ms)
{
	size_t cap = 16384, len = 0, w, kept = 0;
	char *buf = malloc(cap), *bigger;
	const char *why = "out of memory";
	int status = -1;

	if (buf == NULL)
		goto out;
	buf[len++] = '[';
	for (size_t i = 0; i < n; i++) {
		/* A span takes well under 8 KiB escaped. */
		if (cap - len < 8192 + 2) {
			if ((bigger = realloc(buf, cap * 2)) == NULL)
				goto out;
			buf = bigger;
			cap *= 2;
		}
		if (kept > 0)
			buf[len++] = ',';
		w = shop_span_json(&batch[i], reporter.local, buf + len, cap - len);
		if (w == 0) {
			len -= kept > 0; /* the comma */
			continue;
		}
		len += w;
		kept++;
	}
	buf[len++] = ']';
	if (kept > 0)
		status = http_post(&reporter.url, buf, len, timeout_ms, &why);
	else
		status = 202;
out:
	free(buf);
	if (status >= 200 && status < 300) {
		atomic_fetch_add(&reporter.sent, kept);
		atomic_fetch_add(&reporter.lost, n - kept);
		if (reporter.failing)
			SHOP_LOG(INFO, "zipkin: %s:%s accepts spans again", reporter.url.host,
				 reporter.url.port);
		reporter.failing = false;
		return;
	}
	atomic_fetch_add(&reporter.lost, n);
	/* Once per outage, not once per batch. */
	if (!reporter.failing) {
		if (status > 0)
			SHOP_LOG(WARN, "zipkin: POST to %s:%s%s answered %d; dropping spans",
				 reporter.url.host, reporter.url.port, reporter.url.path, status);
		else
			SHOP_LOG(WARN, "zipkin: POST to %s:%s%s failed (%s); dropping spans",
				 reporter.url.host, reporter.url.port, reporter.url.path, why);
	}
	reporter.failing = true;
}

static void *reporter_main(void *arg)
{
	shop_span *batch = malloc(TRACE_BATCH * sizeof(*batch));
	size_t n;

	(void)arg;
	while (!atomic_load(&reporter.stop)) {
		shop_span_queue_wait(reporter.q, TRACE_BATCH, TRACE_FLUSH_MS);
		if (batch == NULL)
			continue; /* out of memory: the queue fills and drops */
		while ((n = shop_span_queue_pop(reporter.q, batch, TRACE_BATCH)) > 0) {
			reporter_send(batch, n, TRACE_POST_TIMEOUT_MS);
			if (n < TRACE_BATCH || atomic_load(&reporter.stop))
				break;
		}
	}
	/* Stopping: one last batch, quickly; what is left over is lost. */
	if (batch != NULL && (n = shop_span_queue_pop(reporter.q, batch, TRACE_BATCH)) > 0)
		reporter_send(batch, n, TRACE_FINAL_TIMEOUT_MS);
	while (batch != NULL && (n = shop_span_queue_pop(reporter.q, batch, TRACE_BATCH)) > 0)
		atomic_fetch_add(&reporter.lost, n);
	free(batch);
	return NULL;
}

int shop_trace_start(const char *url, const char *local_service)
{
	if (url == NULL || url[0] == '\0')
		return 0;
	if (shop_zipkin_url_parse(url, &reporter.url) != 0) {
		SHOP_LOG(ERROR, "zipkin: \"%.200s\" is not http://HOST[:PORT]/PATH", url);
		return -1;
	}
	snprintf(reporter.local, sizeof(reporter.local), "%s",
		 local_service != NULL ? local_service : "shop");
	if ((reporter.q = shop_span_queue_create(TRACE_QUEUE)) == NULL) {
		SHOP_LOG(ERROR, "zipkin: out of memory");
		return -1;
	}
	atomic_store(&reporter.stop, false);
	if (pthread_create(&reporter.thread, NULL, reporter_main, NULL) != 0) {
		SHOP_LOG(ERROR, "zipkin: cannot start the reporter thread");
		shop_span_queue_destroy(reporter.q);
		reporter.q = NULL;
		return -1;
	}
	atomic_store_explicit(&reporter_on, true, memory_order_release);
	SHOP_LOG(INFO, "zipkin: sending spans to %s:%s%s", reporter.url.host, reporter.url.port,
		 reporter.url.path);
	return 0;
}

void shop_trace_stop(void)
{
	if (!atomic_load(&reporter_on))
		return;
	atomic_store_explicit(&reporter_on, false, memory_order_release);
	atomic_store(&reporter.stop, true);
	shop_span_queue_close(reporter.q);
	pthread_join(reporter.thread, NULL);
	SHOP_LOG(INFO, "zipkin: %llu spans sent, %llu dropped",
		 (unsigned long long)atomic_load(&reporter.sent),
		 (unsigned long long)atomic_load(&reporter.lost));
	shop_span_queue_destroy(reporter.q);
	reporter.q = NULL;
}

bool shop_trace_recording(void)
{
	return atomic_load_explicit(&reporter_on, memory_order_acquire);
}

void shop_trace_stats_get(shop_trace_stats *out)
{
	out->sent = atomic_load(&reporter.sent);
	out->dropped = atomic_load(&reporter.lost);
}
