/* http_get.c -- concurrent minimal HTTP/1.0 GETs over non-blocking sockets
 * and one poll loop. */
#include "http_get.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"

/* Room for the status line and headers beyond max_body. */
#define HEAD_ROOM 16384

typedef enum {
	C_CONNECT, /* non-blocking connect in progress */
	C_SEND,    /* writing the request */
	C_RECV,    /* reading until the server closes */
	C_DONE,    /* finished, well or not: g->status / g->error tell */
} conn_state;

/* One GET in flight. */
typedef struct conn {
	reg_http_get *g;
	conn_state state;
	int fd;
	char req[768];
	size_t req_len, req_off;
	char *buf; /* the whole response */
	size_t len, cap;
} conn;

static void conn_fail(conn *c, const char *fmt, const char *detail)
{
	snprintf(c->g->error, sizeof(c->g->error), fmt, detail);
	c->state = C_DONE;
}

int reg_http_url_split(const char *url, char *host, size_t host_cap, char *port, size_t port_cap,
		       char *path, size_t path_cap)
{
	const char *auth, *p, *h, *hend, *pt = NULL;
	size_t alen, hlen, plen;

	if (strncmp(url, "http://", 7) != 0)
		return -1;
	/* No blank or control character anywhere: the path goes into the
	 * request line, and an advert must not be able to add headers. */
	for (p = url; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return -1;
	auth = url + 7;
	alen = strcspn(auth, "/?#");
	if (alen == 0 || memchr(auth, '@', alen) != NULL)
		return -1;
	if (auth[0] == '[') {
		h = auth + 1;
		if ((hend = memchr(h, ']', alen)) == NULL)
			return -1;
		if (hend + 1 < auth + alen) {
			if (hend[1] != ':')
				return -1;
			pt = hend + 2;
		}
	} else {
		h = auth;
		hend = memchr(auth, ':', alen);
		if (hend != NULL)
			pt = hend + 1;
		else
			hend = auth + alen;
	}
	hlen = (size_t)(hend - h);
	if (hlen == 0 || hlen >= host_cap)
		return -1;
	if (pt != NULL) {
		size_t n = (size_t)(auth + alen - pt);
		long v = 0;

		if (n == 0 || n > 5 || n >= port_cap)
			return -1;
		for (size_t i = 0; i < n; i++) {
			if (pt[i] < '0' || pt[i] > '9')
				return -1;
			v = v * 10 + (pt[i] - '0');
		}
		if (v < 1 || v > 65535)
			return -1;
		memcpy(port, pt, n);
		port[n] = '\0';
	} else {
		if (port_cap < 3)
			return -1;
		memcpy(port, "80", 3);
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	p = auth + alen;
	if (*p == '\0')
		p = "/";
	if (*p != '/' || strchr(p, '#') != NULL || (plen = strlen(p)) >= path_cap)
		return -1;
	memcpy(path, p, plen + 1);
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes a chunked body in place (b, n: what follows the headers). Returns
 * the decoded length, or -1. */
static long unchunk(char *b, size_t n)
{
	size_t in = 0, out = 0;

	for (;;) {
		char *eol = memchr(b + in, '\n', n - in);
		unsigned long size = 0;
		size_t i = in;

		if (eol == NULL)
			return -1;
		for (; b + i < eol && hexval(b[i]) >= 0; i++) {
			if (size > (1UL << 40))
				return -1;
			size = size * 16 + (unsigned long)hexval(b[i]);
		}
		if (i == in)
			return -1;
		in = (size_t)(eol - b) + 1; /* chunk extensions are ignored */
		if (size == 0)
			return (long)out; /* trailers are ignored */
		if (size > n - in)
			return -1;
		memmove(b + out, b + in, size);
		out += size;
		in += size;
		if (in < n && b[in] == '\r')
			in++;
		if (in >= n || b[in] != '\n')
			return -1;
		in++;
	}
}

/* A response's status line and headers. */
typedef struct http_head {
	int status;
	size_t body_off; /* where the body starts */
	bool chunked, have_cl;
	unsigned long long cl;
} http_head;

/* Reads the head of buf (len bytes); -1 when it is not HTTP/1.x or does not
 * end (yet) with an empty line. Reads nothing past len. */
static int parse_head(const char *buf, size_t len, http_head *h)
{
	const char *p = buf, *end = buf + len;

	memset(h, 0, sizeof(*h));
	if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[7] < '0' || buf[7] > '9' ||
	    buf[8] != ' ')
		return -1;
	for (int i = 9; i < 12; i++)
		if (buf[i] < '0' || buf[i] > '9')
			return -1;
	h->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	/* Skip the status line, then read the headers up to the empty line. */
	for (;;) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t n;

		if (eol == NULL)
			return -1;
		if (p != buf) {
			n = (size_t)(eol - p);
			if (n > 0 && p[n - 1] == '\r')
				n--;
			if (n == 0) {
				h->body_off = (size_t)(eol + 1 - buf);
				return 0;
			}
			if (n > 15 && strncasecmp(p, "content-length:", 15) == 0) {
				const char *q = p + 15;

				while (*q == ' ' || *q == '\t')
					q++;
				if (*q < '0' || *q > '9')
					return -1;
				/* Digits end at the line's end at the latest. */
				for (h->cl = 0; *q >= '0' && *q <= '9'; q++) {
					if (h->cl > (1ULL << 40))
						return -1;
					h->cl = h->cl * 10 + (unsigned)(*q - '0');
				}
				h->have_cl = true;
			} else if (n > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0) {
				for (const char *q = p + 18; q + 7 <= p + n; q++)
					if (strncasecmp(q, "chunked", 7) == 0)
						h->chunked = true;
			}
		}
		p = eol + 1;
	}
}

int reg_http_response_parse(char *buf, size_t len, int *status, char **body, size_t *body_len)
{
	size_t rest;
	http_head h;

	if (parse_head(buf, len, &h) != 0)
		return -1;
	*status = h.status;
	*body = buf + h.body_off;
	rest = len - h.body_off;
	if (h.chunked) {
		long n = unchunk(*body, rest);

		if (n < 0)
			return -1;
		*body_len = (size_t)n;
	} else if (h.have_cl) {
		if (h.cl > rest)
			return -1;
		*body_len = (size_t)h.cl;
	} else {
		*body_len = rest;
	}
	return 0;
}

/* A response with a Content-Length is whole once that many body bytes are
 * in: a server that keeps the connection open anyway costs no timeout. */
static bool response_whole(const char *buf, size_t len)
{
	http_head h;

	return parse_head(buf, len, &h) == 0 && h.have_cl && !h.chunked && len - h.body_off >= h.cl;
}

/* Resolves and starts connecting; C_DONE with an error when it cannot. */
static void conn_start(conn *c)
{
	char host[128], port[8], path[512];
	struct addrinfo hints = {0}, *ai = NULL;
	int rv, n;

	c->fd = -1;
	c->state = C_DONE;
	if (reg_http_url_split(c->g->url, host, sizeof(host), port, sizeof(port), path,
			       sizeof(path)) != 0) {
		conn_fail(c, "%s", "not an http:// URL this client can use");
		return;
	}
	n = snprintf(c->req, sizeof(c->req),
		     "GET %s HTTP/1.0\r\nHost: %s%s%s:%s\r\nUser-Agent: shop-registry\r\n"
		     "Accept: text/plain\r\nConnection: close\r\n\r\n",
		     path, strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port);
	if (n < 0 || (size_t)n >= sizeof(c->req)) {
		conn_fail(c, "%s", "URL too long");
		return;
	}
	c->req_len = (size_t)n;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((rv = getaddrinfo(host, port, &hints, &ai)) != 0) {
		conn_fail(c, "resolve: %s", gai_strerror(rv));
		return;
	}
	c->fd =
	    socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (c->fd < 0) {
		conn_fail(c, "socket: %s", strerror(errno));
	} else if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0) {
		c->state = C_SEND;
	} else if (errno == EINPROGRESS) {
		c->state = C_CONNECT;
	} else {
		conn_fail(c, "connect: %s", strerror(errno));
	}
	freeaddrinfo(ai);
}

/* Makes progress on c after poll reported revents. */
static void conn_step(conn *c, short revents, size_t max_body)
{
	ssize_t n;

	if (c->state == C_CONNECT) {
		int err = 0;
		socklen_t elen = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
			err = errno;
		if (err != 0) {
			conn_fail(c, "connect: %s", strerror(err));
			return;
		}
		c->state = C_SEND;
	}
	if (c->state == C_SEND) {
		n = send(c->fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			conn_fail(c, "send: %s", strerror(errno));
			return;
		}
		if (n > 0 && (c->req_off += (size_t)n) == c->req_len)
			c->state = C_RECV;
		return;
	}
	if (c->state != C_RECV || (revents & (POLLIN | POLLHUP | POLLERR)) == 0)
		return;
	if (c->cap - c->len < 4096) {
		size_t ncap = c->cap ? c->cap * 2 : 8192;
		char *nb;

		if (ncap > max_body + HEAD_ROOM + 1)
			ncap = max_body + HEAD_ROOM + 1;
		if (ncap <= c->len + 1) {
			conn_fail(c, "%s", "response too large");
			return;
		}
		if ((nb = realloc(c->buf, ncap)) == NULL) {
			conn_fail(c, "%s", "out of memory");
			return;
		}
		c->buf = nb;
		c->cap = ncap;
	}
	n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		conn_fail(c, "recv: %s", strerror(errno));
	} else if (n > 0 && !response_whole(c->buf, c->len += (size_t)n)) {
		/* more to come */
	} else if (n >= 0) {
		char *body;
		size_t blen;

		c->state = C_DONE;
		if (reg_http_response_parse(c->buf, c->len, &c->g->status, &body, &blen) != 0) {
			c->g->status = 0;
			conn_fail(c, "%s", "malformed HTTP response");
		} else if (blen > max_body) {
			conn_fail(c, "%s", "response too large");
		} else if ((c->g->body = malloc(blen + 1)) == NULL) {
			conn_fail(c, "%s", "out of memory");
		} else {
			memcpy(c->g->body, body, blen);
			c->g->body[blen] = '\0';
			c->g->len = blen;
		}
	}
}

void reg_http_get_all(reg_http_get *g, size_t n, int timeout_ms, size_t max_body)
{
	conn *cs = calloc(n ? n : 1, sizeof(*cs));
	struct pollfd *pfd = calloc(n ? n : 1, sizeof(*pfd));
	int64_t deadline;

	for (size_t i = 0; i < n; i++) {
		g[i].status = 0;
		g[i].error[0] = '\0';
		g[i].body = NULL;
		g[i].len = 0;
		if (cs == NULL || pfd == NULL)
			snprintf(g[i].error, sizeof(g[i].error), "out of memory");
	}
	if (cs == NULL || pfd == NULL)
		goto out;
	for (size_t i = 0; i < n; i++) {
		cs[i].g = &g[i];
		conn_start(&cs[i]);
	}
	deadline = shop_now_mono_us() / 1000 + timeout_ms;
	for (;;) {
		int64_t left = deadline - shop_now_mono_us() / 1000;
		nfds_t np = 0;
		int rv;

		for (size_t i = 0; i < n; i++) {
			pfd[i].fd = cs[i].state == C_DONE ? -1 : cs[i].fd;
			pfd[i].events = cs[i].state == C_RECV ? POLLIN : POLLOUT;
			pfd[i].revents = 0;
			np += cs[i].state != C_DONE;
		}
		if (np == 0 || left <= 0)
			break;
		if ((rv = poll(pfd, n, (int)left)) < 0 && errno != EINTR)
			break;
		for (size_t i = 0; i < n && rv > 0; i++)
			if (pfd[i].revents != 0)
				conn_step(&cs[i], pfd[i].revents, max_body);
	}
	for (size_t i = 0; i < n; i++) {
		if (cs[i].state != C_DONE)
			conn_fail(&cs[i], "%s", "timed out");
		if (cs[i].fd >= 0)
			close(cs[i].fd);
		free(cs[i].buf);
	}
out:
	free(pfd);
	free(cs);
}
