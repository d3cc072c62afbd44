/* listen_keeper.c -- listens, probes its own listener, re-opens it when nng
 * 1.5.2's accept loop has died (listen_keeper.h). */
#include "listen_keeper.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

/* How long a probe's pipe may take to reach the socket. An accepted
 * connection is handed over in well under a millisecond; a second, missed
 * twice in a row, is a loaded machine at worst. */
#define LISTEN_PROBE_TIMEOUT_MS 1000
/* Probes in a row that must miss before the listener is re-opened. */
#define LISTEN_PROBE_MISSES 2
/* Re-listening while the old listener's socket is still being closed
 * answers NNG_EADDRINUSE for a moment: tries, 20 ms apart. */
#define LISTEN_RETRIES 50

typedef enum {
	PROBE_IDLE,    /* no probe out */
	PROBE_WAITING, /* connected from probe_addr, its pipe not seen yet */
	PROBE_SEEN,    /* its pipe reached the socket (and was rejected) */
} probe_state;

struct shop_listen_keeper {
	nng_socket sock;
	char *url;
	char what[16];
	int probe_ms;
	uint16_t peer; /* the socket's peer protocol, sent in the probe's SP header */

	pthread_mutex_t mtx;
	pthread_cond_t cv; /* CLOCK_MONOTONIC; a probe seen, or the stop */
	nng_listener l;    /* mtx; id 0 while re-listening failed */
	bool listening;
	bool stopping; /* mtx for writes; read atomically by the waits on sockets */
	bool thread_started;
	pthread_t thr;
	probe_state probe;
	struct sockaddr_storage probe_addr; /* the probe's own address (getsockname) */
	socklen_t probe_len;
	uint64_t heals;
};

static shop_metric_family *heals_f;
static pthread_once_t heals_once = PTHREAD_ONCE_INIT;

static void heals_init(void)
{
	heals_f = shop_metrics_counter(shop_metrics_default(), "shop_nng_listener_heals_total",
				       "Times a listener that accepted no new connection was "
				       "re-opened.",
				       "listener");
}

/* ---- recognising the probe ------------------------------------------------ */

/* Whether the pipe's remote address is the probe's own (k->mtx). */
static bool probe_matches(const shop_listen_keeper *k, nng_pipe p)
{
	const struct sockaddr_storage *pa = &k->probe_addr;
	nng_sockaddr ra;
	uint64_t pid; /* an option of type uint64 in nng 1.5.2 */

	/* Unix sockets have no address per connection: the probe is the one
	 * connection from this very process. */
	if (pa->ss_family == AF_UNIX)
		return nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_PID, &pid) == 0 &&
		       pid == (uint64_t)getpid();
	if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &ra) != 0)
		return false;
	switch (ra.s_family) {
	case NNG_AF_INET: {
		const struct sockaddr_in *in = (const struct sockaddr_in *)pa;

		return pa->ss_family == AF_INET && in->sin_port == ra.s_in.sa_port &&
		       in->sin_addr.s_addr == ra.s_in.sa_addr;
	}
	case NNG_AF_INET6: {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)pa;

		return pa->ss_family == AF_INET6 && in6->sin6_port == ra.s_in6.sa_port &&
		       memcmp(in6->sin6_addr.s6_addr, ra.s_in6.sa_addr, 16) == 0;
	}
	default:
		return false;
	}
}

/* NNG_PIPE_EV_ADD_PRE: the probe's pipe is noted and rejected (closing it
 * here keeps it from the protocol); every other pipe passes untouched. */
static void keeper_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	shop_listen_keeper *k = arg;
	bool ours;

	(void)ev;
	pthread_mutex_lock(&k->mtx);
	ours = k->probe == PROBE_WAITING && probe_matches(k, p);
	if (ours) {
		k->probe = PROBE_SEEN;
		pthread_cond_broadcast(&k->cv);
	}
	pthread_mutex_unlock(&k->mtx);
	if (ours)
		nng_pipe_close(p);
}

/* ---- the probe ------------------------------------------------------------ */

/* Where to connect to reach the listener: its bound address, with a
 * wildcard host made the loopback one. 0 or -1. */
static int probe_target(shop_listen_keeper *k, struct sockaddr_storage *to, socklen_t *len)
{
	nng_listener l;
	nng_sockaddr sa;

	pthread_mutex_lock(&k->mtx);
	l = k->l;
	pthread_mutex_unlock(&k->mtx);
	if (nng_listener_get_addr(l, NNG_OPT_LOCADDR, &sa) != 0)
		return -1;
	memset(to, 0, sizeof(*to));
	switch (sa.s_family) {
	case NNG_AF_INET: {
		struct sockaddr_in *in = (struct sockaddr_in *)to;

		in->sin_family = AF_INET;
		in->sin_port = sa.s_in.sa_port;
		in->sin_addr.s_addr =
		    sa.s_in.sa_addr == htonl(INADDR_ANY) ? htonl(INADDR_LOOPBACK) : sa.s_in.sa_addr;
		*len = sizeof(*in);
		return 0;
	}
	case NNG_AF_INET6: {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)to;
		static const uint8_t any[16];

		in6->sin6_family = AF_INET6;
		in6->sin6_port = sa.s_in6.sa_port;
		memcpy(in6->sin6_addr.s6_addr, sa.s_in6.sa_addr, 16);
		if (memcmp(sa.s_in6.sa_addr, any, 16) == 0)
			in6->sin6_addr = in6addr_loopback;
		*len = sizeof(*in6);
		return 0;
	}
	case NNG_AF_IPC: {
		struct sockaddr_un *un = (struct sockaddr_un *)to;

		if (strlen(sa.s_ipc.sa_path) >= sizeof(un->sun_path))
			return -1;
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, sa.s_ipc.sa_path);
		*len = sizeof(*un);
		return 0;
	}
	default:
		return -1;
	}
}

/* shop_wait_fd in slices of 50 ms, given up when the keeper stops: a
 * stop never waits out a probe's second. 0 when ready. */
static int keeper_wait_fd(shop_listen_keeper *k, int fd, short events, int64_t deadline_us)
{
	for (;;) {
		int64_t slice = shop_now_mono_us() + 50000;
		bool last = slice >= deadline_us;

		if (__atomic_load_n(&k->stopping, __ATOMIC_ACQUIRE))
			return -1;
		if (shop_wait_fd(fd, events, last ? deadline_us : slice) == 0)
			return 0;
		if (last)
			return -1;
	}
}

/* One probe: true when its pipe reached the socket in time. A probe that
 * cannot even connect says nothing about the accept loop (the kernel's
 * backlog is full, or no memory): it counts as seen. */
static bool probe_once(shop_listen_keeper *k)
{
	uint8_t hdr[8] = {0, 'S', 'P', 0, (uint8_t)(k->peer >> 8), (uint8_t)k->peer, 0, 0};
	int64_t deadline_us = shop_now_mono_us() + (int64_t)LISTEN_PROBE_TIMEOUT_MS * 1000;
	struct sockaddr_storage to, self;
	socklen_t len, self_len = sizeof(self);
	struct timespec until;
	bool seen = true;
	uint8_t drain[64];
	int fd, err = 0;

	if (probe_target(k, &to, &len) != 0)
		return true;
	if ((fd = socket(to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return true;
	if (connect(fd, (struct sockaddr *)&to, len) != 0 &&
	    (errno != EINPROGRESS || keeper_wait_fd(k, fd, POLLOUT, deadline_us) != 0 ||
	     getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &(socklen_t){sizeof(err)}) != 0 ||
	     err != 0))
		goto out;
	if (getsockname(fd, (struct sockaddr *)&self, &self_len) != 0)
		goto out;

	pthread_mutex_lock(&k->mtx);
	k->probe_addr = self;
	k->probe_len = self_len;
	k->probe = PROBE_WAITING;
	pthread_mutex_unlock(&k->mtx);
	/* Eight bytes into an empty socket buffer: never short. */
	if (send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL) != (ssize_t)sizeof(hdr)) {
		seen = true;
		goto out_state;
	}
	until = shop_mono_deadline(LISTEN_PROBE_TIMEOUT_MS);
	pthread_mutex_lock(&k->mtx);
	while (k->probe == PROBE_WAITING && !k->stopping &&
	       pthread_cond_timedwait(&k->cv, &k->mtx, &until) != ETIMEDOUT)
		;
	seen = k->probe == PROBE_SEEN || k->stopping;
	k->probe = PROBE_IDLE;
	pthread_mutex_unlock(&k->mtx);
	/* The listener's own header is read before the close, so that the
	 * close is a FIN, not a reset (a reset during a handshake is what
	 * kills the accept loop in the first place). */
	if (keeper_wait_fd(k, fd, POLLIN, shop_now_mono_us() + 100000) == 0)
		while (recv(fd, drain, sizeof(drain), MSG_DONTWAIT) > 0)
			;
	goto out;

out_state:
	pthread_mutex_lock(&k->mtx);
	k->probe = PROBE_IDLE;
	pthread_mutex_unlock(&k->mtx);
out:
	close(fd);
	return seen;
}

/* ---- healing ---------------------------------------------------------------- */

/* Listens on k->url, retrying while the old listener's address is still
 * held. 0 or an nng error. */
static int keeper_listen(shop_listen_keeper *k)
{
	nng_listener l;
	int rv = 0;

	for (int i = 0; i < LISTEN_RETRIES; i++) {
		if ((rv = nng_listen(k->sock, k->url, &l, 0)) != NNG_EADDRINUSE ||
		    __atomic_load_n(&k->stopping, __ATOMIC_ACQUIRE))
			break;
		nanosleep(&(struct timespec){0, 20 * 1000000L}, NULL);
	}
	if (rv != 0)
		return rv;
	pthread_mutex_lock(&k->mtx);
	k->l = l;
	k->listening = true;
	pthread_mutex_unlock(&k->mtx);
	return 0;
}

static void keeper_heal(shop_listen_keeper *k)
{
	nng_listener old;
	int rv;

	pthread_mutex_lock(&k->mtx);
	old = k->l;
	k->listening = false;
	k->heals++;
	pthread_mutex_unlock(&k->mtx);
	shop_metric_inc(SHOP_METRIC(heals_f, k->what));
	SHOP_LOG(WARN,
		 "%s listener on %s accepts no new connection (%d probes in a row did not reach "
		 "the socket: nng 1.5.2 stops accepting after a connection reset during its "
		 "handshake); re-opening it, which also closes the connections it accepted",
		 k->what, k->url, LISTEN_PROBE_MISSES);
	nng_listener_close(old);
	if ((rv = keeper_listen(k)) != 0)
		SHOP_LOG(ERROR, "%s listener on %s: listen again: %s; trying again in %d ms",
			 k->what, k->url, nng_strerror(rv), k->probe_ms);
	else
		SHOP_LOG(INFO, "%s listener on %s re-opened", k->what, k->url);
}

static void *keeper_main(void *arg)
{
	shop_listen_keeper *k = arg;
	int misses = 0;

	for (;;) {
		struct timespec until = shop_mono_deadline(misses > 0 ? 0 : k->probe_ms);
		bool listening;

		pthread_mutex_lock(&k->mtx);
		while (!k->stopping && pthread_cond_timedwait(&k->cv, &k->mtx, &until) != ETIMEDOUT)
			;
		listening = k->listening;
		if (k->stopping) {
			pthread_mutex_unlock(&k->mtx);
			break;
		}
		pthread_mutex_unlock(&k->mtx);
		if (!listening) {
			/* The last re-listen failed: try again. */
			if (keeper_listen(k) == 0)
				SHOP_LOG(INFO, "%s listener on %s re-opened", k->what, k->url);
			continue;
		}
		if (probe_once(k)) {
			misses = 0;
		} else if (++misses >= LISTEN_PROBE_MISSES) {
			keeper_heal(k);
			misses = 0;
		}
	}
	return NULL;
}

/* ---- lifecycle -------------------------------------------------------------- */

int shop_listen_keeper_start(shop_listen_keeper **out, nng_socket sock, const char *url,
			     const char *what, int probe_ms)
{
	shop_listen_keeper *k;
	int peer = 0, rv;

	if ((k = calloc(1, sizeof(*k))) == NULL || (k->url = strdup(url)) == NULL) {
		free(k);
		return NNG_ENOMEM;
	}
	k->sock = sock;
	snprintf(k->what, sizeof(k->what), "%s", what);
	k->probe_ms = probe_ms;
	if (nng_socket_get_int(sock, NNG_OPT_PEER, &peer) == 0)
		k->peer = (uint16_t)peer;
	if (pthread_mutex_init(&k->mtx, NULL) != 0) {
		rv = NNG_ENOMEM;
		goto out_free;
	}
	if (shop_cond_init_mono(&k->cv) != 0) {
		rv = NNG_ENOMEM;
		goto out_mtx;
	}
	if ((rv = nng_pipe_notify(sock, NNG_PIPE_EV_ADD_PRE, keeper_pipe_cb, k)) != 0)
		goto out_cv;
	if ((rv = nng_listen(sock, url, &k->l, 0)) != 0)
		goto out_notify;
	k->listening = true;
	pthread_once(&heals_once, heals_init);
	SHOP_METRIC(heals_f, k->what); /* the series exists from the start, at 0 */
	if (probe_ms > 0) {
		if (pthread_create(&k->thr, NULL, keeper_main, k) != 0) {
			rv = NNG_ENOMEM;
			goto out_listener;
		}
		k->thread_started = true;
	}
	*out = k;
	return 0;

out_listener:
	nng_listener_close(k->l);
out_notify:
	nng_pipe_notify(sock, NNG_PIPE_EV_ADD_PRE, NULL, NULL);
out_cv:
	pthread_cond_destroy(&k->cv);
out_mtx:
	pthread_mutex_destroy(&k->mtx);
out_free:
	free(k->url);
	free(k);
	return rv;
}

void shop_listen_keeper_stop(shop_listen_keeper *k)
{
	bool join;

	if (k == NULL)
		return;
	pthread_mutex_lock(&k->mtx);
	__atomic_store_n(&k->stopping, true, __ATOMIC_RELEASE);
	join = k->thread_started;
	k->thread_started = false;
	pthread_cond_broadcast(&k->cv);
	pthread_mutex_unlock(&k->mtx);
	if (join)
		pthread_join(k->thr, NULL);
}

void shop_listen_keeper_destroy(shop_listen_keeper *k)
{
	if (k == NULL)
		return;
	shop_listen_keeper_stop(k);
	pthread_cond_destroy(&k->cv);
	pthread_mutex_destroy(&k->mtx);
	free(k->url);
	free(k);
}

uint64_t shop_listen_keeper_heals(shop_listen_keeper *k)
{
	uint64_t n;

	pthread_mutex_lock(&k->mtx);
	n = k->heals;
	pthread_mutex_unlock(&k->mtx);
	return n;
}
