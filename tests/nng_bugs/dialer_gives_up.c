/* dialer_gives_up.c -- shows that a dialer of nng 1.5.2 (Debian 12's libnng1
 * 1.5.2-2) stops redialing for good when its connection is closed by the
 * peer before the SP handshake is written, independent of shop's code.
 *
 * The transport's handshake (ipc_pipe_neg_cb, tcptran_pipe_nego_cb) writes
 * its 8-byte header first. When the peer has already closed the connection
 * it just accepted (a process being killed or restarted), the write fails
 * with EPIPE, which nng maps to NNG_ECLOSED; the handshake hands that to the
 * dialer, and dialer_connect_cb() (src/core/dialer.c) takes NNG_ECLOSED as
 * "the dialer was closed: no further action". The socket then never
 * connects again, whoever listens at that address later.
 *
 * Here a plain UNIX socket listener accepts and closes every connection at
 * once, and an nng REQ socket dials it (redial every 10..50 ms). Each
 * connection ends with the peer's close; most handshakes meet it as an end
 * of file (NNG_ECONNSHUT: the dialer redials), until one write comes after
 * the close (EPIPE: the dialer stops). The program counts the connections
 * the listener accepted each second and says when they stop.
 *
 * Build and run:
 *   cc dialer_gives_up.c -lnng -lpthread && ./a.out
 * Prints "dialer gave up after N connections" and exits 1 when it happens
 * (within seconds on the machine of docs/decisions.md), 0 if the dialer
 * still dials after 30 s. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

static atomic_long accepted;

static void *listener_main(void *arg)
{
	int lfd = *(int *)arg, fd;

	while ((fd = accept(lfd, NULL, NULL)) >= 0) {
		atomic_fetch_add(&accepted, 1);
		close(fd);
	}
	return NULL;
}

int main(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char url[sizeof(sa.sun_path) + 8];
	long before, now;
	nng_socket s;
	pthread_t t;
	int lfd;

	signal(SIGPIPE, SIG_IGN);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/tmp/nng-dialer-gives-up-%d.ipc",
		 (int)getpid());
	snprintf(url, sizeof(url), "ipc://%s", sa.sun_path);
	if ((lfd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 64) != 0 ||
	    pthread_create(&t, NULL, listener_main, &lfd) != 0) {
		perror("listener");
		return 2;
	}
	if (nng_req0_open(&s) != 0 || nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 10) != 0 ||
	    nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 50) != 0 ||
	    nng_dial(s, url, NULL, NNG_FLAG_NONBLOCK) != 0) {
		fprintf(stderr, "nng set-up failed\n");
		unlink(sa.sun_path);
		return 2;
	}
	before = atomic_load(&accepted);
	for (int sec = 1; sec <= 30; sec++) {
		sleep(1);
		now = atomic_load(&accepted);
		printf("%2d s: %ld connections accepted (+%ld)\n", sec, now, now - before);
		fflush(stdout);
		if (now == before && now > 0) {
			printf("dialer gave up after %ld connections\n", now);
			fflush(stdout);
			unlink(sa.sun_path);
			_exit(1); /* nng_close would not bring it back */
		}
		before = now;
	}
	printf("the dialer still dials after 30 s\n");
	fflush(stdout);
	unlink(sa.sun_path);
	_exit(0);
}
