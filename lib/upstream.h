/* upstream.h -- calls to a service by name: the registry view picks the
 * instances, the balancer picks one by weight, and a shop_rpc_conn per
 * instance carries the call. Shared by every thread of a caller. */
#ifndef SHOP_UPSTREAM_H
#define SHOP_UPSTREAM_H

#include "registry_client.h"
#include "rpc_client.h"

typedef struct shop_upstream shop_upstream;

/* view is borrowed and must outlive the upstream. caller names this
 * process in logs (e.g. "gateway"). */
int shop_upstream_create(shop_upstream **out, shop_registry_view *view, const char *caller);
void shop_upstream_destroy(shop_upstream *u); /* accepts NULL; waits for callbacks */

/* Called exactly once per accepted call, on an nng thread; must not block.
 * rv and resp as shop_rpc_done_fn (the callback owns resp). instance is the
 * name of the instance that was called ("" when none was), borrowed for the
 * callback's length. rv == NNG_ENOENT: no healthy instance of service. */
typedef void (*shop_upstream_done_fn)(void *arg, int rv, Shop__V1__RpcResponse *resp,
				      const char *instance);

/* Returns 0 when accepted (done runs exactly once, possibly before this
 * returns), else an nng error and done does not run. */
int shop_upstream_call(shop_upstream *u, const char *service, const char *method,
		       const ProtobufCMessage *req, const shop_rpc_call_opts *o,
		       shop_upstream_done_fn done, void *arg);

/* Blocking form, for worker threads. *instance (cap ≥ 64) receives the
 * instance called. */
int shop_upstream_call_sync(shop_upstream *u, const char *service, const char *method,
			    const ProtobufCMessage *req, const shop_rpc_call_opts *o,
			    Shop__V1__RpcResponse **resp, char *instance, size_t cap);

#endif
