/* trace.h -- W3C trace context and Zipkin v2 spans: ids, child contexts,
 * span JSON, and the process's span reporter, which queues finished spans
 * in memory and POSTs them in batches from a thread of its own, never on
 * the request path.
 *
 * Propagation is always on: a valid incoming traceparent is carried on with
 * a new span id per hop. Recording is on when shop_trace_start was given a
 * collector URL (SHOP_ZIPKIN_URL) and the trace's sampled flag is set. */
#ifndef SHOP_TRACE_H
#define SHOP_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "00-" 32 hex "-" 16 hex "-" 2 hex, NUL. */
#define SHOP_TRACEPARENT_LEN 56

/* One hop's trace context. */
typedef struct shop_trace_ctx {
	char trace_id[33]; /* 32 lowercase hex, not all zero */
	char span_id[17];  /* 16 lowercase hex, not all zero */
	uint8_t flags;     /* bit 0: sampled */
} shop_trace_ctx;

/* Parses a version 00 traceparent exactly ("00-<32 hex>-<16 hex>-<2 hex>",
 * lowercase, ids not all zero). Returns 0, or -1 (out zeroed) for anything
 * else: W3C says to start afresh rather than pass on what does not parse. */
int shop_traceparent_parse(const char *tp, shop_trace_ctx *out);

/* Writes c as a version 00 traceparent into out. */
void shop_traceparent_format(const shop_trace_ctx *c, char out[SHOP_TRACEPARENT_LEN]);

/* Writes a new span id (16 hex, never all zero) from a fast thread-local
 * generator; ids need to be unlikely to collide, not secret. */
void shop_trace_new_span_id(char out[17]);

/* child: parent's trace id and flags with a new span id. */
void shop_trace_child(const shop_trace_ctx *parent, shop_trace_ctx *child);

typedef enum { SHOP_SPAN_SERVER, SHOP_SPAN_CLIENT } shop_span_kind;

#define SHOP_SPAN_MAX_TAGS 6

/* A span: plain data, copied into the reporter's queue when finished. */
typedef struct shop_span {
	char trace_id[33];
	char id[17];
	char parent_id[17]; /* "" for a root span */
	char name[96];
	shop_span_kind kind;
	bool sampled;
	int64_t timestamp_us; /* wall clock at the start, µs since 1970 */
	int64_t duration_us;
	int64_t start_mono_us;
	char remote_service[64]; /* remoteEndpoint.serviceName; "" for none */
	int n_tags;
	struct {
		char key[24];
		char value[104];
	} tags[SHOP_SPAN_MAX_TAGS];
} shop_span;

/* Starts s now: kind and name, in trace ctx->trace_id, with id id, whose
 * parent is parent_id ("" or NULL for a root). Strings are copied (and
 * truncated to fit). */
void shop_span_begin(shop_span *s, shop_span_kind kind, const char *name, const char *trace_id,
		     const char *id, const char *parent_id, bool sampled);

/* Adds a tag (ignored past SHOP_SPAN_MAX_TAGS; truncated to fit). */
void shop_span_tag(shop_span *s, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets the duration (≥ 1 µs) and hands the span to the reporter when one
 * runs and the span is sampled. Never blocks beyond a short mutex; when the
 * queue is full the span is dropped and counted. */
void shop_span_finish(shop_span *s);

/* Appends s as one Zipkin v2 JSON object to buf (NUL-terminated), with
 * local_service as localEndpoint.serviceName. Returns the bytes written, or
 * 0 when it does not fit in cap (buf is then left as it was at buf[0]). */
size_t shop_span_json(const shop_span *s, const char *local_service, char *buf, size_t cap);

/* ---- the queue (exposed for tests) ---------------------------------------- */

typedef struct shop_span_queue shop_span_queue;

/* A bounded FIFO of spans, safe between threads. NULL when out of memory.
 * Caller frees with shop_span_queue_destroy (accepts NULL). */
shop_span_queue *shop_span_queue_create(size_t cap);
void shop_span_queue_destroy(shop_span_queue *q);
/* Copies s in. false when full: the span is dropped and counted. Wakes a
 * waiter once the queue holds wake_at spans (shop_span_queue_wait). */
bool shop_span_queue_push(shop_span_queue *q, const shop_span *s);
/* Moves up to max of the oldest spans into out; returns how many. */
size_t shop_span_queue_pop(shop_span_queue *q, shop_span *out, size_t max);
/* Waits until the queue holds at least wake_at spans, timeout_ms passed, or
 * shop_span_queue_close was called. Returns the number queued. */
size_t shop_span_queue_wait(shop_span_queue *q, size_t wake_at, int timeout_ms);
void shop_span_queue_close(shop_span_queue *q);
uint64_t shop_span_queue_dropped(shop_span_queue *q);

/* ---- the collector URL ------------------------------------------------------ */

typedef struct shop_zipkin_url {
	char host[256]; /* as written; an IPv6 literal without brackets */
	char port[8];
	char path[512];     /* "/api/v2/spans" */
	char hostport[270]; /* the Host header: as in the URL */
} shop_zipkin_url;

/* "http://HOST[:PORT]/PATH" (no https, no user info, no fragment) → out.
 * Returns 0 or -1. Pure. */
int shop_zipkin_url_parse(const char *url, shop_zipkin_url *out);

/* ---- the reporter ------------------------------------------------------------ */

/* Starts the process's reporter: spans finished from now on are sent to
 * url (SHOP_ZIPKIN_URL, already validated) with local_service (the
 * instance name) as localEndpoint.serviceName. url NULL or "": no
 * reporter, spans are not recorded. Returns 0 or -1 (logged). Call once
 * from main before the threads that finish spans start. */
int shop_trace_start(const char *url, const char *local_service);
/* Sends what is queued (bounded by a short timeout), stops the thread.
 * Call after the threads that finish spans stopped. Safe without start. */
void shop_trace_stop(void);
/* True while a reporter runs. */
bool shop_trace_recording(void);

typedef struct shop_trace_stats {
	uint64_t sent;    /* spans the collector accepted */
	uint64_t dropped; /* queue full, or the collector failed or refused */
} shop_trace_stats;
void shop_trace_stats_get(shop_trace_stats *out);

#endif
