/* nngecho.c -- the reference of the bench's "services alone" rows: a plain
 * nng 1.5 REP server whose contexts answer from their aio callbacks, with
 * no thread of its own and no work per call beyond nng's.
 *
 * Usage: nngecho [CONTEXTS]   (default 64)
 * Listens on tcp://127.0.0.1 at a port the kernel picks and prints
 * "listening tcp://127.0.0.1:PORT" on stdout; runs until stdin closes.
 *
 * Each request's own message goes back (nng keeps the REP backtrace in its
 * header) with its body cut to zero bytes: an empty body is an RpcResponse
 * of code 0, so bench/rpcbench, through the same client as for a shop
 * service, counts every answer OK instead of logging a reply that does not
 * parse. The bytes on the wire differ from a true echo by the request's
 * ~40 bytes; the messages, syscalls and hand-offs are the same. */
#include <stdio.h>
#include <stdlib.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

enum echo_state { ECHO_RECV, ECHO_SEND };

/* One context: receive, then send the reply, then receive again. */
struct echo_ctx {
	enum echo_state state;
	nng_aio *aio;
	nng_ctx ctx;
};

static void echo_cb(void *arg)
{
	struct echo_ctx *e = arg;
	nng_msg *msg;
	int rv = nng_aio_result(e->aio);

	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
		return;
	if (e->state == ECHO_RECV && rv == 0) {
		msg = nng_aio_get_msg(e->aio);
		nng_msg_clear(msg);
		nng_aio_set_msg(e->aio, msg);
		e->state = ECHO_SEND;
		nng_ctx_send(e->ctx, e->aio);
		return;
	}
	if (e->state == ECHO_SEND && rv != 0)
		nng_msg_free(nng_aio_get_msg(e->aio)); /* a failed send leaves it with us */
	e->state = ECHO_RECV;
	nng_ctx_recv(e->ctx, e->aio);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 64;
	struct echo_ctx *ctxs = NULL;
	nng_listener l;
	nng_socket s;
	int port = 0, rv, i;

	if (n < 1 || (ctxs = calloc((size_t)n, sizeof(*ctxs))) == NULL) {
		fprintf(stderr, "usage: %s [CONTEXTS]\n", argv[0]);
		return 2;
	}
	if ((rv = nng_rep0_open(&s)) != 0 ||
	    (rv = nng_listener_create(&l, s, "tcp://127.0.0.1:0")) != 0 ||
	    (rv = nng_listener_start(l, 0)) != 0 ||
	    (rv = nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		if ((rv = nng_aio_alloc(&ctxs[i].aio, echo_cb, &ctxs[i])) != 0 ||
		    (rv = nng_ctx_open(&ctxs[i].ctx, s)) != 0)
			goto out;
		ctxs[i].state = ECHO_RECV;
		nng_ctx_recv(ctxs[i].ctx, ctxs[i].aio);
	}
	printf("listening tcp://127.0.0.1:%d\n", port);
	fflush(stdout);
	while (getchar() != EOF)
		;
out:
	if (rv != 0)
		fprintf(stderr, "nngecho: %s\n", nng_strerror(rv));
	nng_close(s);
	for (i = 0; i < n; i++)
		if (ctxs[i].aio != NULL)
			nng_aio_free(ctxs[i].aio);
	free(ctxs);
	return rv == 0 ? 0 : 1;
}
