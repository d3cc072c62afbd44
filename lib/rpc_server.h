/* rpc_server.h -- a REP socket whose contexts answer from nng's callbacks;
 * handlers that block run on worker threads, each with its own per-worker
 * state (a PostgreSQL connection...).
 *
 * A request is one serialized RpcRequest. The server answers every request
 * with exactly one RpcResponse: INVALID_ARGUMENT for bytes that do not parse
 * (envelope or payload), UNIMPLEMENTED for an unknown method,
 * DEADLINE_EXCEEDED when deadline_unix_ms has passed when it arrives or
 * before a worker takes it, RESOURCE_EXHAUSTED (reason OVERLOADED, metadata
 * retry_after) at once when max_inflight calls are already in hand (running,
 * pending or queued for a worker), and
 * otherwise whatever the handler replies. */
#ifndef SHOP_RPC_SERVER_H
#define SHOP_RPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc.h"

typedef struct shop_rpc_server shop_rpc_server;

/* max_inflight's default, per worker: 64 for 8 workers, twice a caller's
 * pool of 32 contexts per connection (lib/upstream.c), so that two callers
 * at their pool's limit (the gateway and svc-order on a product instance)
 * are queued, not shed. */
#define SHOP_RPC_DEFAULT_INFLIGHT_PER_WORKER 8

/* How a method's handler runs.
 * - SHOP_RPC_BLOCKING (the default, 0): on a worker thread, with that
 *   worker's state (call->worker); it may block (PostgreSQL, Argon2id) within
 *   the call's deadline. The reply is sent when it returns.
 * - SHOP_RPC_INLINE: on the nng thread that received the request; it must
 *   never block or take a lock held across I/O. The reply is sent when it
 *   returns. call->worker is NULL.
 * - SHOP_RPC_ASYNC: starts on the nng thread (never blocks either) and
 *   completes later, from any thread, with exactly one of
 *   shop_rpc_call_done (the reply is filled) or shop_rpc_call_defer (a
 *   blocking handler finishes it on a worker). call, req and reply stay
 *   valid until then; the handler may also complete before it returns. */
typedef enum shop_rpc_mode {
	SHOP_RPC_BLOCKING = 0,
	SHOP_RPC_INLINE,
	SHOP_RPC_ASYNC,
} shop_rpc_mode;

/* What a handler knows about the call. All borrowed for the call's length. */
typedef struct shop_rpc_call {
	const char *method;
	/* This call's own trace context: the caller's trace id and flags with
	 * the span id of this call's SERVER span, so that calls made with it
	 * are that span's children; "" when no valid traceparent came. */
	const char *traceparent;
	char trace_id[33]; /* from traceparent, "" when none */
	int64_t deadline_unix_ms;
	int64_t caller_user_id;
	void *worker;     /* what worker_init returned for this worker; NULL off a worker */
	int worker_index; /* -1 off a worker */
} shop_rpc_call;

/* req is the unpacked payload (of the method's request descriptor); the
 * server frees it after the handler returns. The handler fills reply and
 * must not block longer than the call's deadline needs. */
typedef void (*shop_rpc_handler_fn)(void *app, shop_rpc_call *call, const ProtobufCMessage *req,
				    shop_rpc_reply *reply);

typedef struct shop_rpc_method {
	const char *name; /* gRPC full name, "/shop.v1.ProductService/ListProducts" */
	const ProtobufCMessageDescriptor *request;
	shop_rpc_handler_fn handler;
	shop_rpc_mode mode;
} shop_rpc_method;

/* An ASYNC call's completion: the reply its handler got is filled and is
 * sent. Any thread, exactly once per call (or shop_rpc_call_defer). */
void shop_rpc_call_done(shop_rpc_call *call);

/* An ASYNC call's completion by a blocking handler: fn runs on a worker
 * thread with that worker's state, as a BLOCKING method's handler (the same
 * req and reply; DEADLINE_EXCEEDED instead when the deadline passed while it
 * waited), and its reply is sent when it returns. Any thread, instead of
 * shop_rpc_call_done. */
void shop_rpc_call_defer(shop_rpc_call *call, shop_rpc_handler_fn fn);

typedef struct shop_rpc_server_config {
	const char *url; /* listen URL, e.g. "tcp://127.0.0.1:7211" */
	int workers;     /* ≥ 1 */
	/* Calls admitted at once, queued or running; beyond it a request is
	 * shed at once. 0: SHOP_RPC_DEFAULT_INFLIGHT_PER_WORKER × workers;
	 * less than workers: workers. */
	int max_inflight;
	/* Between probes of the listener (listen_keeper.h): 0,
	 * SHOP_LISTEN_PROBE_MS; below 0, no probe. */
	int listen_probe_ms;
	const shop_rpc_method *methods; /* borrowed for the server's lifetime */
	size_t n_methods;
	void *app; /* passed to handlers */
	/* Optional per-worker state, made on the worker's own thread before it
	 * takes calls; NULL worker_init means no state. */
	void *(*worker_init)(void *app, int index);
	void (*worker_fini)(void *app, void *worker);
} shop_rpc_server_config;

/* Listens and starts the workers. cfg is copied (its pointers borrowed).
 * Returns 0 or an nng error; on error nothing is left running. */
int shop_rpc_server_create(shop_rpc_server **out, const shop_rpc_server_config *cfg);

/* Stops taking new requests, lets calls in flight finish (up to
 * grace_ms), closes the socket and joins the workers. Accepts NULL. */
void shop_rpc_server_destroy(shop_rpc_server *s, int grace_ms);

/* Decodes an RpcRequest and dispatches it as the server would, on the
 * calling thread (an ASYNC handler's completion is waited for, and what it
 * defers runs here with worker), packing the answer into *out (caller frees
 * with free()). For tests and fuzzers. Returns 0, or -1 when out of memory. */
int shop_rpc_server_handle(const shop_rpc_server_config *cfg, void *worker, int worker_index,
			   const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len);

#endif
