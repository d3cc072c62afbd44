/* rpc_client.h -- calls to one remote instance over one nng REQ socket.
 *
 * Many calls run at once through a bounded pool of nng contexts and aios
 * that are made once and reused (nng 1.5.2 slows badly when many REQ
 * contexts are opened in a burst). Calls beyond the pool wait in a FIFO; at
 * most pool + queue calls are in hand at once (running or waiting; a call
 * leaves just before its done runs), beyond that a call fails at once with
 * NNG_EAGAIN. REQ resend is
 * disabled: a request is sent at most once. */
#ifndef SHOP_RPC_CLIENT_H
#define SHOP_RPC_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <nng/nng.h>

#include "rpc.h"

typedef struct shop_rpc_conn shop_rpc_conn;

typedef struct shop_rpc_call_opts {
	const char *traceparent;  /* may be NULL */
	int64_t deadline_unix_ms; /* absolute; must be > 0 */
	int64_t caller_user_id;   /* 0 for none */
	/* Get/List/Lookup: shop_upstream may retry it once on another
	 * instance after a transport failure or when its first try passes
	 * its per-try timeout. Never set for a call that changes anything:
	 * it would be sent twice. */
	bool idempotent;
} shop_rpc_call_opts;

/* Called exactly once per accepted call, on an nng thread; must not block.
 * rv == 0: resp is the unpacked reply, and the callback owns it (free with
 * shop__v1__rpc_response__free_unpacked(resp, NULL)). rv != 0: an nng
 * transport error (NNG_ETIMEDOUT at the deadline, NNG_ECLOSED, NNG_EPROTO for
 * a reply that does not parse), and resp is NULL. Must not call
 * shop_rpc_conn_destroy. */
typedef void (*shop_rpc_done_fn)(void *arg, int rv, Shop__V1__RpcResponse *resp);

/* Dials url (non-blocking: the dialer reconnects in the background).
 * pool: number of contexts (e.g. 32); queue: most waiting calls. */
int shop_rpc_conn_create(shop_rpc_conn **out, const char *url, int pool, int queue);
/* Fails every waiting and running call (their callbacks run with
 * NNG_ECLOSED), waits for the callbacks, closes. Accepts NULL. */
void shop_rpc_conn_destroy(shop_rpc_conn *c);
const char *shop_rpc_conn_url(const shop_rpc_conn *c);

/* Starts a call. req is packed before return (borrowed). Returns 0 when the
 * call was accepted (done will run exactly once, possibly before this
 * returns), or an nng error (done will not run): NNG_EAGAIN when the wait
 * queue is full, NNG_EMSGSIZE when the request exceeds SHOP_RPC_MAX_MSG. */
int shop_rpc_conn_call(shop_rpc_conn *c, const char *method, const ProtobufCMessage *req,
		       const shop_rpc_call_opts *o, shop_rpc_done_fn done, void *arg);

/* The two halves of shop_rpc_conn_call, for callers that send one request
 * more than once (a retry on another instance): pack the RpcRequest into an
 * nng message once (caller frees with nng_msg_free, or dups it), then send.
 * shop_rpc_conn_send takes ownership of msg when it returns 0 only. */
int shop_rpc_request_pack(const char *method, const ProtobufCMessage *req,
			  const shop_rpc_call_opts *o, nng_msg **out);
int shop_rpc_conn_send(shop_rpc_conn *c, nng_msg *msg, int64_t deadline_unix_ms,
		       shop_rpc_done_fn done, void *arg);

/* The blocking form, for tools, tests and service-to-service calls made
 * from a worker thread. On 0, *resp is owned by the caller. */
int shop_rpc_conn_call_sync(shop_rpc_conn *c, const char *method, const ProtobufCMessage *req,
			    const shop_rpc_call_opts *o, Shop__V1__RpcResponse **resp);

/* Whether a call sent now would be taken: a context is idle or fewer than
 * pool + queue calls are in hand (otherwise shop_rpc_conn_send answers NNG_EAGAIN). A
 * look only: another thread may take the room before this caller sends. */
bool shop_rpc_conn_has_room(shop_rpc_conn *c);

/* True while the socket has a live connection to its peer. A call made
 * while it is down waits (until its deadline) for the dialer to reconnect;
 * callers with another instance to choose prefer one that is up. */
bool shop_rpc_conn_is_up(shop_rpc_conn *c);

/* fn(arg) runs on an nng thread each time the connection to the peer is
 * lost (its last pipe closed), after the calls in flight were failed. It
 * must not block or destroy the connection. */
void shop_rpc_conn_on_down(shop_rpc_conn *c, void (*fn)(void *arg), void *arg);
/* fn(arg) runs on an nng thread each time a connection to the peer is made
 * while there was none (the first pipe, or one after all were lost: a
 * restarted peer). Same rules as on_down. The two may run on different nng
 * threads, so a down and the next up can be told in either order. */
void shop_rpc_conn_on_up(shop_rpc_conn *c, void (*fn)(void *arg), void *arg);

/* Sets NNG_OPT_RECVMAXSZ and the other options every shop socket gets. */
int shop_nng_socket_defaults(nng_socket s);

/* Dials url from s (non-blocking, as nng_dial with NNG_FLAG_NONBLOCK) and
 * keeps the dialer alive. nng 1.5.2's dialer stops for good when a peer
 * closes a connection before the SP handshake is written on it (the write's
 * EPIPE becomes NNG_ECLOSED, which the dialer takes for its own close;
 * tests/nng_bugs/dialer_gives_up.c): a registry or an instance killed or
 * restarted at that moment would never be dialed again. up(arg) says
 * whether s has a connection; it is asked every 250 ms on an nng thread and
 * must not block. Down for a second (longer than any of shop's redial
 * back-offs, at most 500 ms), the dialer is replaced by a new one. */
typedef struct shop_dial_keeper shop_dial_keeper;
int shop_dial_keeper_start(shop_dial_keeper **out, nng_socket s, const char *url,
			   bool (*up)(void *arg), void *arg);
/* Stops the checks (waits for one running); before nng_close(s), whose
 * dialers it closes. Accepts NULL. */
void shop_dial_keeper_stop(shop_dial_keeper *k);

#endif
