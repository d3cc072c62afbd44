/* registry_table.h -- the registry's table of live instances: who answered
 * which survey through which pipe, who missed too many, and the views built
 * from it (lookups, /v1/services, Prometheus targets, /metrics).
 *
 * Pure: no sockets, no clock of its own (every call that needs time takes
 * now_ms from the registry's monotonic clock), no lock (the caller holds one
 * mutex around every call). Instance clocks (started_unix_ms) are carried
 * along, never compared with the registry's. */
#ifndef SHOP_REGISTRY_TABLE_H
#define SHOP_REGISTRY_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "advert_check.h"
#include "registry_client.h"

/* At most this many instances; adverts for new instances beyond it are
 * refused (a bound on what a misbehaving peer can make us hold, and it keeps
 * the largest Instances answer, ~430 KiB, under SHOP_RPC_MAX_MSG). */
#define REG_TABLE_MAX_INSTANCES 1024

typedef struct reg_table reg_table;

/* What happened to an instance. */
typedef enum {
	REG_EV_JOIN,   /* first advert under this instance name */
	REG_EV_UPDATE, /* an advert field changed */
	REG_EV_LEAVE,  /* dropped; see reg_leave_reason */
} reg_event;

typedef enum {
	REG_LEAVE_NONE,
	REG_LEAVE_PIPE_CLOSED, /* its connection to the registry closed */
	REG_LEAVE_MISSES,      /* it missed max_misses surveys in a row */
} reg_leave_reason;

/* Called synchronously, under the caller's lock, for every join, update and
 * leave; inst is borrowed for the call. Must not call back into the table. */
typedef void (*reg_event_fn)(void *arg, reg_event ev, reg_leave_reason why,
			     const shop_instance *inst);

/* Result of reg_table_upsert. */
typedef enum {
	REG_UPSERT_UNCHANGED, /* known, same fields: revision unchanged */
	REG_UPSERT_JOINED,
	REG_UPSERT_UPDATED,
	REG_UPSERT_IGNORED, /* unknown (already closed) pipe, bad advert, or table full */
} reg_upsert_result;

/* max_misses >= 1. fn may be NULL; arg is borrowed. Returns 0 or ENOMEM. */
int reg_table_create(reg_table **out, int max_misses, reg_event_fn fn, void *arg);
void reg_table_destroy(reg_table *t); /* accepts NULL */

/* A pipe opened (nng NNG_PIPE_EV_ADD_POST). Only answers arriving through a
 * known pipe are taken, so that an answer read just before its pipe's close
 * event cannot bring a dead instance back. Returns 0 or ENOMEM. */
int reg_table_pipe_add(reg_table *t, uint32_t pipe_id);
/* A pipe closed (NNG_PIPE_EV_REM_POST): forgets it and drops, at once, every
 * instance that last answered through it. Returns how many were dropped. */
int reg_table_pipe_remove(reg_table *t, uint32_t pipe_id);

/* Records an answer (copied) to the current survey from pipe_id at now_ms.
 * Keyed by instance name; an advert outside the safe form (advert_check.h)
 * is ignored, never stored (the caller counts it: reg_table_refuse). The
 * revision increases on a join or a changed field, never on an unchanged
 * re-answer. */
reg_upsert_result reg_table_upsert(reg_table *t, const shop_instance *ad, uint32_t pipe_id,
				   int64_t now_ms);

/* Counts an advert refused for why (shown in reg_table_metrics_text).
 * Returns true for the first refusal on pipe_id since it opened (the caller
 * logs that one and not the next surveys' repeats); false after, and for a
 * pipe the table does not know. */
bool reg_table_refuse(reg_table *t, uint32_t pipe_id, shop_advert_fault why);

/* A new survey is about to go out, so the previous one is over: every
 * instance that did not answer it counts a miss, and one that has now missed
 * max_misses surveys in a row is dropped. Returns how many were dropped. */
int reg_table_survey_begin(reg_table *t);

/* Increases on every join, update and leave; starts at 1. */
uint64_t reg_table_revision(const reg_table *t);
/* Number of instances. */
size_t reg_table_count(const reg_table *t);

/* Copies the instances of service (every service when service is NULL or
 * "") ordered by service then instance name. On 0, *out is malloc'd (caller
 * frees; NULL when *n is 0). Returns 0 or ENOMEM. */
int reg_table_lookup(const reg_table *t, const char *service, shop_instance **out, size_t *n,
		     uint64_t *revision);

/* GET /v1/services: a JSON array of every instance (the advert's fields
 * plus "last_seen_ms_ago"). On 0, *body is malloc'd, NUL-terminated, caller
 * frees. Returns 0 or ENOMEM. */
int reg_table_services_json(const reg_table *t, int64_t now_ms, char **body, size_t *len);

/* GET /v1/prometheus-targets: Prometheus HTTP service discovery, one target
 * group per instance, host:port and metrics path taken from its admin_url
 * (an instance whose admin_url does not parse is left out). Same ownership
 * as reg_table_services_json. */
int reg_table_prometheus_json(const reg_table *t, char **body, size_t *len);

/* GET /metrics: Prometheus text format 0.0.4 (shop_registry_instances per
 * service, revision, joins and leaves, adverts refused by reason). Same
 * ownership as above. */
int reg_table_metrics_text(const reg_table *t, char **body, size_t *len);

/* Splits an admin URL "http://host:port[/prefix]" into "host:port", the
 * scheme and the metrics path "<prefix>/metrics". Returns 0, or -1 when it
 * does not parse or does not fit. Exposed for tests. */
int reg_admin_target(const char *admin_url, char *hostport, size_t hostport_cap, char *scheme,
		     size_t scheme_cap, char *metrics_path, size_t path_cap);

#endif
