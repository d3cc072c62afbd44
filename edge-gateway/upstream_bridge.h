/* upstream_bridge.h -- hands upstream answers from nng threads back to the
 * lws service thread without ever blocking it.
 *
 * A call's completion runs on an nng thread: it only stores the answer in
 * the job, pushes the job onto a mutex-protected queue and wakes lws with
 * lws_cancel_service(). The lws thread, in LWS_CALLBACK_EVENT_WAIT_CANCELLED,
 * calls gw_bridge_drain(), which gives each job back to its session.
 *
 * A session that closes before its answer (client hung up) calls
 * gw_bridge_job_abandon(): the job is then freed by whoever holds it last
 * (the completion, the drain, or the abandon itself), so a late answer
 * costs no crash and no leak. */
#ifndef GW_UPSTREAM_BRIDGE_H
#define GW_UPSTREAM_BRIDGE_H

#include <stdbool.h>

#include "upstream.h"

struct lws_context;
typedef struct gw_bridge gw_bridge;
typedef struct gw_job gw_job;

/* Runs on the lws thread, from gw_bridge_drain, for each job whose session
 * is still there; session is the pointer given to gw_bridge_call. */
typedef void (*gw_bridge_deliver_fn)(void *session, gw_job *job);

/* ctx and up are borrowed. */
int gw_bridge_create(gw_bridge **out, struct lws_context *ctx, shop_upstream *up,
		     gw_bridge_deliver_fn deliver);
/* Frees jobs still queued. Call after shop_upstream_destroy (no completion
 * can run any more). Accepts NULL. */
void gw_bridge_destroy(gw_bridge *b);

/* Starts an upstream call for session. Returns 0 and sets *job (owned by
 * the bridge until delivered or abandoned), or an nng error (NNG_ENOMEM,
 * or shop_upstream_call's) and no job exists. */
int gw_bridge_call(gw_bridge *b, void *session, const char *service, const char *method,
		   const ProtobufCMessage *req, const shop_rpc_call_opts *o, gw_job **job);

/* Drains the completion queue (lws thread only). */
void gw_bridge_drain(gw_bridge *b);

/* The session is going away: forget job (lws thread only). Accepts NULL. */
void gw_bridge_job_abandon(gw_bridge *b, gw_job *job);

/* Results, valid in the deliver callback and until gw_bridge_job_free. */
int gw_job_rv(const gw_job *job);
const Shop__V1__RpcResponse *gw_job_response(const gw_job *job); /* NULL when rv != 0 */
const char *gw_job_instance(const gw_job *job);                  /* "" when none */

/* Frees a delivered job (lws thread only). Accepts NULL. */
void gw_bridge_job_free(gw_job *job);

#endif
