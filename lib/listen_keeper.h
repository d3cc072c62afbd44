/* listen_keeper.h -- an nng listener that is re-opened when it has stopped
 * accepting connections.
 *
 * nng 1.5.2 stops a listener's accept loop for good when one connection
 * fails its SP handshake with NNG_ECLOSED: the TCP transport hands the
 * connection's own error to the listener's pending accept
 * (tcptran_pipe_nego_cb), and listener_accept_cb takes NNG_ECLOSED for the
 * listener's own close and posts no further accept. A connection whose peer
 * sent FIN and then RST before the handshake is read gets EPIPE, which nng
 * maps to NNG_ECLOSED: a few hundred such connections from anyone who can
 * reach the port (or one, timed right, from a peer restarting) leave the
 * socket deaf to every new connection while its old ones keep working. The
 * transport still completes the handshake of the new ones, so their peers
 * see a connection that never answers (docs/decisions.md, "A listener that
 * stops accepting").
 *
 * The keeper listens, then probes its own listener every probe_ms: a plain
 * TCP (or IPC) connection that sends the SP header of the socket's peer
 * protocol and waits for the pipe to reach the socket (NNG_PIPE_EV_ADD_PRE,
 * where the keeper recognises its probe by its address and rejects it, so
 * the protocol never sees it). Two probes in a row that do not arrive
 * within LISTEN_PROBE_TIMEOUT_MS mean the accept loop is dead: the keeper
 * logs it, closes the listener (which also closes the connections it had
 * accepted; their peers redial) and listens again on the same URL.
 *
 * The keeper owns the socket's NNG_PIPE_EV_ADD_PRE callback. */
#ifndef SHOP_LISTEN_KEEPER_H
#define SHOP_LISTEN_KEEPER_H

#include <stdint.h>

#include <nng/nng.h>

typedef struct shop_listen_keeper shop_listen_keeper;

/* The default time between probes (SHOP_LISTEN_PROBE_MS). */
#define SHOP_LISTEN_PROBE_MS 1000

/* Listens on url (tcp://, tcp4://, tcp6:// or ipc://) and, when probe_ms > 0,
 * starts probing. what names the listener in logs and in the metric
 * shop_nng_listener_heals_total{listener} ("rpc", "survey", "lookup";
 * copied). Returns 0 or the nng error of the listen (nothing left then). */
int shop_listen_keeper_start(shop_listen_keeper **out, nng_socket sock, const char *url,
			     const char *what, int probe_ms);

/* Stops probing (joins the keeper's thread); the listener stays open
 * until the socket closes. Idempotent; accepts NULL. Call before a drain:
 * a heal closes the listener's connections. */
void shop_listen_keeper_stop(shop_listen_keeper *k);

/* Stops and frees the keeper; call once the socket is closed. Accepts NULL. */
void shop_listen_keeper_destroy(shop_listen_keeper *k);

/* Times the listener was found deaf and re-opened. */
uint64_t shop_listen_keeper_heals(shop_listen_keeper *k);

#endif
