/* http_stub.h -- a tiny HTTP server on 127.0.0.1 for the tests of the
 * registry's /metrics reader: answers every request with one canned raw
 * response, or never answers (response NULL). One thread, loopback only. */
#ifndef SHOP_TEST_HTTP_STUB_H
#define SHOP_TEST_HTTP_STUB_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTP_STUB_MAX_HELD 16

typedef struct http_stub {
	int fd;
	uint16_t port;
	pthread_t thread;
	pthread_mutex_t mtx;
	const char *response; /* borrowed; NULL: hold the connection, never answer */
	bool keep_open;       /* answer, then hold the connection open */
	int requests;
	char last_request[1024];
	int held[HTTP_STUB_MAX_HELD];
	int nheld;
	bool stop;
} http_stub;

static inline void http_stub_serve(http_stub *s, int c)
{
	char req[1024];
	size_t n = 0;
	const char *resp;

	/* Read the request head (a GET has no body), for at most 1 s. */
	while (n + 1 < sizeof(req)) {
		struct pollfd p = {.fd = c, .events = POLLIN};
		ssize_t r;

		if (poll(&p, 1, 1000) <= 0 || (r = recv(c, req + n, sizeof(req) - 1 - n, 0)) <= 0)
			break;
		n += (size_t)r;
		req[n] = '\0';
		if (strstr(req, "\r\n\r\n") != NULL)
			break;
	}
	req[n] = '\0';
	pthread_mutex_lock(&s->mtx);
	s->requests++;
	memcpy(s->last_request, req, n + 1);
	resp = s->response;
	if (resp != NULL)
		(void)!send(c, resp, strlen(resp), MSG_NOSIGNAL);
	if ((resp == NULL || s->keep_open) && s->nheld < HTTP_STUB_MAX_HELD) {
		s->held[s->nheld++] = c;
		pthread_mutex_unlock(&s->mtx);
		return;
	}
	pthread_mutex_unlock(&s->mtx);
	close(c);
}

static inline void *http_stub_main(void *arg)
{
	http_stub *s = arg;

	for (;;) {
		struct pollfd p = {.fd = s->fd, .events = POLLIN};
		bool stop;
		int c;

		pthread_mutex_lock(&s->mtx);
		stop = s->stop;
		pthread_mutex_unlock(&s->mtx);
		if (stop)
			break;
		if (poll(&p, 1, 20) <= 0)
			continue;
		if ((c = accept(s->fd, NULL, NULL)) >= 0)
			http_stub_serve(s, c);
	}
	return NULL;
}

/* Listens on an ephemeral port of 127.0.0.1 (s->port). Returns 0 or -1. */
static inline int http_stub_start(http_stub *s, const char *response)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);

	memset(s, 0, sizeof(*s));
	s->response = response;
	pthread_mutex_init(&s->mtx, NULL);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((s->fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		return -1;
	if (bind(s->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s->fd, 16) != 0 ||
	    getsockname(s->fd, (struct sockaddr *)&a, &alen) != 0) {
		close(s->fd);
		return -1;
	}
	s->port = ntohs(a.sin_port);
	if (pthread_create(&s->thread, NULL, http_stub_main, s) != 0) {
		close(s->fd);
		return -1;
	}
	return 0;
}

static inline void http_stub_set(http_stub *s, const char *response)
{
	pthread_mutex_lock(&s->mtx);
	s->response = response;
	pthread_mutex_unlock(&s->mtx);
}

static inline int http_stub_requests(http_stub *s)
{
	int n;

	pthread_mutex_lock(&s->mtx);
	n = s->requests;
	pthread_mutex_unlock(&s->mtx);
	return n;
}

static inline void http_stub_stop(http_stub *s)
{
	pthread_mutex_lock(&s->mtx);
	s->stop = true;
	pthread_mutex_unlock(&s->mtx);
	pthread_join(s->thread, NULL);
	for (int i = 0; i < s->nheld; i++)
		close(s->held[i]);
	close(s->fd);
	pthread_mutex_destroy(&s->mtx);
}

/* A port of 127.0.0.1 where nothing listens (bound, then closed). */
static inline uint16_t http_stub_dead_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint16_t port = 0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

#endif
