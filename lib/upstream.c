/* upstream.c -- call a service by name: registry view → weighted pick →
 * the per-instance connection. */
#include "upstream.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "balancer.h"
#include "log.h"

#define UPSTREAM_MAX_PICK 64 /* instances of one service considered per call */
#define UPSTREAM_POOL 32     /* nng contexts per instance connection */
#define UPSTREAM_QUEUE 4096  /* calls waiting for a context, per instance */

/* One connection per distinct rpc_url ever seen. Connections are kept for
 * the upstream's lifetime: an instance that leaves and comes back at the
 * same address reuses its socket (nng redials by itself), and a departed
 * one costs one idle socket. */
typedef struct upstream_conn {
	char rpc_url[128];
	shop_rpc_conn *conn;
	struct upstream_conn *next;
} upstream_conn;

struct shop_upstream {
	shop_registry_view *view; /* borrowed */
	char caller[32];
	pthread_mutex_t mtx;
	upstream_conn *conns;
};

/* One call in flight: carries the caller's callback and the instance name. */
typedef struct upstream_call {
	shop_upstream_done_fn done;
	void *arg;
	char instance[64];
} upstream_call;

int shop_upstream_create(shop_upstream **out, shop_registry_view *view, const char *caller)
{
	shop_upstream *u = calloc(1, sizeof(*u));

	if (u == NULL)
		return NNG_ENOMEM;
	u->view = view;
	snprintf(u->caller, sizeof(u->caller), "%s", caller);
	pthread_mutex_init(&u->mtx, NULL);
	*out = u;
	return 0;
}

void shop_upstream_destroy(shop_upstream *u)
{
	upstream_conn *c, *next;

	if (u == NULL)
		return;
	for (c = u->conns; c != NULL; c = next) {
		next = c->next;
		shop_rpc_conn_destroy(c->conn);
		free(c);
	}
	pthread_mutex_destroy(&u->mtx);
	free(u);
}

/* Returns the connection for url, made on first use; NULL when out of
 * memory or nng refuses the socket. Borrowed: lives as long as u. */
static shop_rpc_conn *upstream_conn_get(shop_upstream *u, const char *url)
{
	upstream_conn *c;
	shop_rpc_conn *found = NULL;
	int rv;

	pthread_mutex_lock(&u->mtx);
	for (c = u->conns; c != NULL; c = c->next) {
		if (strcmp(c->rpc_url, url) == 0) {
			found = c->conn;
			goto out;
		}
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto out;
	if ((rv = shop_rpc_conn_create(&c->conn, url, UPSTREAM_POOL, UPSTREAM_QUEUE)) != 0) {
		SHOP_LOG(ERROR, "%s: cannot open a connection to %s: %s", u->caller, url,
			 nng_strerror(rv));
		free(c);
		goto out;
	}
	snprintf(c->rpc_url, sizeof(c->rpc_url), "%s", url);
	c->next = u->conns;
	u->conns = c;
	found = c->conn;
out:
	pthread_mutex_unlock(&u->mtx);
	return found;
}

static void upstream_call_done(void *arg, int rv, Shop__V1__RpcResponse *resp)
{
	upstream_call *call = arg;

	call->done(call->arg, rv, resp, call->instance);
	free(call);
}

/* Picks an instance of service by weight among the healthy ones whose
 * connection is up; when none is up (all just started, or all gone) among
 * all the healthy ones, so that a call can wait for a reconnect. Returns 0
 * and fills *pick and *conn, or NNG_ENOENT when none is healthy. */
static int upstream_pick(shop_upstream *u, const char *service, shop_instance *pick,
			 shop_rpc_conn **conn)
{
	shop_instance inst[UPSTREAM_MAX_PICK];
	shop_rpc_conn *conns[UPSTREAM_MAX_PICK];
	uint32_t weights[UPSTREAM_MAX_PICK];
	int n, i, n_up = 0;

	n = shop_registry_view_get(u->view, service, true, inst, UPSTREAM_MAX_PICK);
	for (i = 0; i < n; i++) {
		conns[i] = upstream_conn_get(u, inst[i].rpc_url);
		weights[i] = conns[i] != NULL && shop_rpc_conn_is_up(conns[i]) ? inst[i].weight : 0;
		n_up += weights[i] > 0;
	}
	if (n_up == 0)
		for (i = 0; i < n; i++)
			weights[i] = conns[i] != NULL ? inst[i].weight : 0;
	if ((i = shop_balancer_pick(weights, n, shop_random_u64())) < 0)
		return NNG_ENOENT;
	*pick = inst[i];
	*conn = conns[i];
	return 0;
}

int shop_upstream_call(shop_upstream *u, const char *service, const char *method,
		       const ProtobufCMessage *req, const shop_rpc_call_opts *o,
		       shop_upstream_done_fn done, void *arg)
{
	shop_instance pick;
	shop_rpc_conn *conn;
	upstream_call *call;
	int rv;

	if ((rv = upstream_pick(u, service, &pick, &conn)) != 0)
		return rv;
	if ((call = malloc(sizeof(*call))) == NULL)
		return NNG_ENOMEM;
	call->done = done;
	call->arg = arg;
	snprintf(call->instance, sizeof(call->instance), "%s", pick.instance);
	if ((rv = shop_rpc_conn_call(conn, method, req, o, upstream_call_done, call)) != 0)
		free(call);
	return rv;
}

int shop_upstream_call_sync(shop_upstream *u, const char *service, const char *method,
			    const ProtobufCMessage *req, const shop_rpc_call_opts *o,
			    Shop__V1__RpcResponse **resp, char *instance, size_t cap)
{
	shop_instance pick;
	shop_rpc_conn *conn;
	int rv;

	if (cap > 0)
		instance[0] = '\0';
	if ((rv = upstream_pick(u, service, &pick, &conn)) != 0)
		return rv;
	if (cap > 0)
		snprintf(instance, cap, "%s", pick.instance);
	return shop_rpc_conn_call_sync(conn, method, req, o, resp);
}
