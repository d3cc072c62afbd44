/* upstream.h -- calls to a service by name: the registry view picks the
 * instances, the balancer picks one by weight, and a shop_rpc_conn per
 * instance carries the call. Shared by every thread of a caller.
 *
 * An open breaker goes half-open at once when its instance comes back (a
 * new connection to it, or an advert with a new started_unix_ms). An
 * instance gone from the view for a second is retired: its connection is
 * closed and its breaker freed, by a thread of the upstream's, once no
 * call holds it (docs/decisions.md, "Recovery and departure"). */
#ifndef SHOP_UPSTREAM_H
#define SHOP_UPSTREAM_H

#include "breaker.h"
#include "registry_client.h"
#include "rpc_client.h"

typedef struct shop_upstream shop_upstream;

/* view is borrowed and must outlive the upstream. caller names this
 * process in logs (e.g. "gateway"). With a view, starts the housekeeping
 * thread (departed instances). */
int shop_upstream_create(shop_upstream **out, shop_registry_view *view, const char *caller);
void shop_upstream_destroy(shop_upstream *u); /* accepts NULL; waits for callbacks */
/* Breakers made from now on use c (copied); call before the first call. */
void shop_upstream_set_breaker_config(shop_upstream *u, const shop_breaker_config *c);

/* The per-try timeout of idempotent calls, as a percentage of the time
 * left to the call's deadline (clamped to 1..100; 100: one try takes the
 * whole deadline, and only a transport failure is retried). Default 45:
 * the first try times out at 45 %, and the retry on another instance has
 * the other 55 %. Applies when at least two instances would admit the call
 * (with one, its only try keeps the whole deadline). Call before the first
 * call (SHOP_RPC_PER_TRY_PCT in the gateway and svc-order). */
#define SHOP_UPSTREAM_PER_TRY_PCT_DEFAULT 45
void shop_upstream_set_per_try_pct(shop_upstream *u, int pct);

/* nng contexts of each instance's connection: calls sent at once. */
#define SHOP_UPSTREAM_POOL 32

/* The most calls that wait in this caller for a context of one
 * instance's connection (SHOP_UPSTREAM_POOL contexts, each a call sent
 * and not yet answered). A call that finds every admitting instance's
 * queue full is shed at once: shop_upstream_call answers NNG_EAGAIN, and
 * no breaker counts it. Default 32, the pool's size: at most 64 calls per
 * instance in this caller, as many as one server admits by default
 * (SHOP_RPC_MAX_INFLIGHT, 8 x 8 workers). 0: no wait, a call beyond the
 * pool is shed. Clamped to 0..SHOP_UPSTREAM_QUEUE_MAX; call before the
 * first call (SHOP_RPC_CALLER_QUEUE in the gateway and svc-order). */
#define SHOP_UPSTREAM_QUEUE_DEFAULT SHOP_UPSTREAM_POOL
#define SHOP_UPSTREAM_QUEUE_MAX     4096
void shop_upstream_set_queue(shop_upstream *u, int queue);

/* Called exactly once per accepted call, on an nng thread; must not block.
 * rv and resp as shop_rpc_done_fn (the callback owns resp). instance is the
 * name of the instance that was called ("" when none was), borrowed for the
 * callback's length. Each instance has a breaker "<caller>:<instance>"
 * (breaker.h); a call goes to a healthy instance whose breaker admits it,
 * by weight, preferring connected ones. An idempotent call (opts) that
 * fails at the transport level, or whose first try passes its per-try
 * timeout (shop_upstream_set_per_try_pct), is retried once on another
 * instance within its deadline; a try slower than its per-try timeout
 * counts as a failure for its instance's breaker. A non-idempotent call is
 * sent once and has the whole deadline. A shed answer (RESOURCE_EXHAUSTED)
 * counts neither way on the breaker (shop_breaker_release) and is not
 * retried. */
typedef void (*shop_upstream_done_fn)(void *arg, int rv, Shop__V1__RpcResponse *resp,
				      const char *instance);

/* Returns 0 when accepted (done runs exactly once, possibly before this
 * returns), else an nng error and done does not run: NNG_ENOENT when no
 * healthy instance of service is known, NNG_EBUSY when every one's breaker
 * refuses the call (both are "unavailable" to users, answered at once),
 * NNG_EAGAIN when every instance that would admit it has this caller's
 * queue to it full (shop_upstream_set_queue): the caller is overloaded and
 * answers as for the service's own RESOURCE_EXHAUSTED/OVERLOADED. */
int shop_upstream_call(shop_upstream *u, const char *service, const char *method,
		       const ProtobufCMessage *req, const shop_rpc_call_opts *o,
		       shop_upstream_done_fn done, void *arg);

/* Blocking form, for worker threads. *instance (cap ≥ 64) receives the
 * instance called. */
int shop_upstream_call_sync(shop_upstream *u, const char *service, const char *method,
			    const ProtobufCMessage *req, const shop_rpc_call_opts *o,
			    Shop__V1__RpcResponse **resp, char *instance, size_t cap);

/* Calls fn for the breaker of every instance the upstream holds and has
 * not retired (metrics, health). fn must not call into the upstream. */
void shop_upstream_foreach_breaker(shop_upstream *u,
				   void (*fn)(void *arg, shop_breaker *b, const char *instance),
				   void *arg);

/* The breakers' state in Prometheus text, with Resilience4j's metric names
 * and labels (contract §6): resilience4j_circuitbreaker_state{name,state},
 * _failure_rate{name} (-1 below the minimum calls),
 * _calls_seconds_count{name,kind}, _not_permitted_calls_total{name}; for
 * the instances not retired.
 * Returns a malloc'd string (caller frees), NULL when out of memory. */
char *shop_upstream_breaker_metrics(shop_upstream *u, size_t *len);

#endif
