/* http_session.c -- the lws protocol callback: one gw_req per HTTP request,
 * routed, transcoded, sent upstream through the bridge, answered when the
 * bridge hands the result back. Never blocks the service thread. */
#include "http_session.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <libwebsockets.h>

#include "access_log.h"
#include "clock.h"
#include "fields.h"
#include "framing.h"
#include "jwt_filter.h"
#include "log.h"
#include "metrics.h"
#include "problem.h"
#include "product.pb-c.h"
#include "router.h"
#include "strbuf.h"
#include "trace.h"
#include "traceparent.h"
#include "transcode.h"
#include "upstream_bridge.h"

/* Body bytes written per WRITEABLE callback. */
#define GW_WRITE_CHUNK 16384
/* Longest page_token passed on (tokens are opaque but short). */
#define GW_MAX_PAGE_TOKEN 1024
/* A connection keeps its request body and answer buffers between requests
 * up to these sizes (larger ones are freed after their request). */
#define GW_KEEP_BODY   4096
#define GW_KEEP_ANSWER 16384
/* Bytes of a connection's arena for the upstream answer's unpacked message
 * (an order, a page of products); a larger message spills to malloc. */
#define GW_ARENA 4096

/* What a route needs of its messages' fields, looked up by name once at
 * start-up (route_fields_init) instead of at every request. */
struct route_fields {
	const ProtobufCFieldDescriptor *id;             /* route->id_field */
	const ProtobufCFieldDescriptor *page_token;     /* list_query */
	const ProtobufCFieldDescriptor *client_address; /* client_address */
	const ProtobufCFieldDescriptor *idempotency_key;
	const ProtobufCFieldDescriptor *resp_id; /* the answer's "id", for Location */
};

struct gw_http {
	gw_http_config cfg;
	struct lws_context *ctx;
	gw_bridge *bridge;
	gw_jwt_cache *tokens; /* verified tokens (lws thread only) */
	shop_registry_view *view;
	shop_upstream *up;
	gw_metrics *metrics;
	gw_access_log *alog;             /* lws thread only */
	lws_sorted_usec_list_t alog_sul; /* its flush timer, while armed */
	const gw_route *routes;          /* gw_routes(), and per route: */
	struct route_fields *fields;
	size_t n_routes;
	struct lws_protocols protocols[2];
	unsigned char wbuf[LWS_PRE + GW_WRITE_CHUNK]; /* lws thread only */
	/* A copy of one field value or query part (lws thread only): lws
	 * never stores one longer than its header space. */
	char hbuf[GW_LWS_HEADER_SPACE + 1];
};

enum req_state {
	REQ_READING, /* request line seen; reading the body */
	REQ_WAITING, /* upstream call running */
	REQ_READY,   /* answer built; waiting to write */
	REQ_WRITING, /* headers written; body going out */
};

/* One HTTP request: owns all it allocates, released by req_end; lives in
 * its connection's gw_pss (slot). */
typedef struct gw_req {
	gw_http *srv;
	struct lws *wsi;
	enum req_state state;
	const char *method; /* static */
	const gw_route *route;
	const char *route_label; /* static: template or "unmatched" */
	int64_t path_id;
	gw_lang lang;
	gw_trace trace;
	bool span_open; /* the connection's span is this request's SERVER span */
	int64_t start_us;
	char *body; /* the connection's buffer, body_cap bytes */
	size_t body_len, body_cap;
	bool answered_early; /* an error answer went out before the body ended */
	/* framing (RFC 9112 §6), decided from the headers */
	bool has_length;
	uint64_t content_length;
	bool chunked;
	gw_chunked dechunk;
	bool body_seen;               /* a first body byte arrived */
	lws_sorted_usec_list_t limit; /* whole-body deadline, while armed */
	bool limit_armed;
	bool limit_passed; /* the body's deadline passed: close at its next byte */
	gw_job *job;
	/* the answer */
	int status;
	const char *content_type;
	char *out; /* out_len bytes: malloc'd, or the connection's answer buffer */
	bool out_borrowed;
	size_t out_len, out_off;
	bool close_after; /* unread body may follow: close, no keep-alive */
	char served_by[64];
	char location[48];
	char x_cache[8];
	char allow[64];
	int retry_after;
	const char *www_authenticate; /* static; set by a token refusal */
	int64_t caller_user_id;       /* from the verified token; 0 on open routes */
} gw_req;

/* Per connection: the request in progress, if any, and the buffers its
 * requests reuse. lws 4.1.6 frees its own user space and allocates a new
 * one at every request (lws_http_action and lws_http_transaction_completed
 * bind the protocol anew), so the gateway allocates this once per
 * connection at the first bind and hands it to lws (lws_set_wsi_user),
 * which then keeps it across binds; it is freed at LWS_CALLBACK_WSI_DESTROY. */
typedef struct gw_pss {
	bool ours;   /* false in lws's own (zeroed) user space */
	gw_req *req; /* &slot while a request is in progress, else NULL */
	gw_req slot;
	shop_buf answer; /* JSON answers, reused */
	shop_span *span; /* allocated at the first traced request */
	/* The arena the answer's message is unpacked into (arena_alloc),
	 * emptied at each answer; max_align_t keeps every piece aligned. */
	size_t arena_used;
	max_align_t arena[GW_ARENA / sizeof(max_align_t)];
} gw_pss;

/* protobuf-c's allocator over a connection's arena: pieces are carved one
 * after the other and never freed one by one; what does not fit is
 * malloc'd and freed as usual. */
static void *arena_alloc(void *data, size_t size)
{
	gw_pss *pss = data;
	size_t need = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t);
	size_t have = sizeof(pss->arena) / sizeof(max_align_t) - pss->arena_used;

	if (need > have)
		return malloc(size);
	pss->arena_used += need;
	return &pss->arena[pss->arena_used - need];
}

static void arena_free(void *data, void *p)
{
	gw_pss *pss = data;

	if (p != NULL && ((char *)p < (char *)pss->arena ||
			  (char *)p >= (char *)pss->arena + sizeof(pss->arena)))
		free(p);
}

/* Trace and span ids need only be unlikely to collide, not secret
 * (W3C Trace Context §3.2.2.3): xoshiro256** seeded once from getrandom,
 * instead of a system call per request. The lws thread is its only user. */
static uint64_t rng_s[4];

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void)
{
	uint64_t r = rotl(rng_s[1] * 5, 7) * 9, t = rng_s[1] << 17;

	rng_s[2] ^= rng_s[0];
	rng_s[3] ^= rng_s[1];
	rng_s[1] ^= rng_s[2];
	rng_s[0] ^= rng_s[3];
	rng_s[2] ^= t;
	rng_s[3] = rotl(rng_s[3], 45);
	return r;
}

static void rng_seed(void)
{
	if (getrandom(rng_s, sizeof(rng_s), GRND_NONBLOCK) != (ssize_t)sizeof(rng_s)) {
		/* No entropy source: the clock and our address still differ
		 * between processes, which is all ids need. */
		uint64_t x = (uint64_t)shop_now_mono_us() ^ (uint64_t)(uintptr_t)&rng_s;

		for (int i = 0; i < 4; i++) {
			x += 0x9e3779b97f4a7c15ull; /* splitmix64 */
			uint64_t z = x;
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
			z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
			rng_s[i] = z ^ (z >> 31);
		}
	}
	if ((rng_s[0] | rng_s[1] | rng_s[2] | rng_s[3]) == 0)
		rng_s[0] = 1; /* the one state xoshiro cannot leave */
}

static void random_ids(uint64_t *a, uint64_t *b, uint64_t *c)
{
	*a = rng_next(), *b = rng_next(), *c = rng_next();
}

/* Ends r's request (NULL: none): everything it holds is released but the
 * connection's small body buffer, kept for the next request. */
static void req_end(gw_req *r)
{
	char *body;
	size_t cap;

	if (r == NULL)
		return;
	if (r->limit_armed)
		lws_sul_cancel(&r->limit);
	gw_bridge_job_abandon(r->srv->bridge, r->job);
	if (!r->out_borrowed) {
		free(r->out);
	} else {
		shop_buf *ans = &lws_container_of(r, gw_pss, slot)->answer;

		if (ans->cap > GW_KEEP_ANSWER) {
			free(ans->p);
			*ans = (shop_buf){0};
		}
	}
	body = r->body;
	cap = r->body_cap;
	if (cap > GW_KEEP_BODY) {
		free(body);
		body = NULL;
		cap = 0;
	}
	memset(r, 0, sizeof(*r));
	r->body = body;
	r->body_cap = cap;
}

/* The connection is going away: its request, then its buffers. */
static void conn_free(gw_pss *pss)
{
	req_end(pss->req);
	pss->req = NULL;
	free(pss->slot.body);
	free(pss->answer.p);
	free(pss->span);
	free(pss);
}

/* ---- building answers ------------------------------------------------------ */

static void set_answer(gw_req *r, int status, const char *content_type, char *body, size_t len)
{
	if (!r->out_borrowed)
		free(r->out);
	r->out_borrowed = false;
	r->status = status;
	r->content_type = content_type;
	r->out = body;
	r->out_len = len;
	r->out_off = 0;
	r->state = REQ_READY;
	/* A client that stops reading its answer is cut off (re-armed at
	 * every chunk written; lws sets its keep-alive timeout after). */
	lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK, r->srv->cfg.idle_timeout_s);
	lws_callback_on_writable(r->wsi);
}

static void answer_problem(gw_req *r, const gw_problem *p)
{
	char *body = gw_problem_json(p, r->trace.trace_id);

	r->retry_after = p->retry_after;
	if (body == NULL) {
		/* Out of memory: an answer without a body still beats silence. */
		set_answer(r, 500, "application/problem+json", NULL, 0);
		return;
	}
	set_answer(r, p->status, "application/problem+json", body, strlen(body));
}

static void answer_kind(gw_req *r, enum gw_problem_kind kind, const char *arg)
{
	gw_problem p;

	gw_problem_make(&p, kind, r->lang, arg);
	answer_problem(r, &p);
}

/* The fields of r's route, looked up at start-up. */
static const struct route_fields *fields_of(const gw_req *r)
{
	return &r->srv->fields[r->route - r->srv->routes];
}

/* Looks up every route's fields by name once; a route whose message lacks
 * one is logged here and answers 500 when asked (as a lookup per request
 * did). Returns 0, or -1 when out of memory. */
static int route_fields_init(gw_http *h)
{
	h->routes = gw_routes(&h->n_routes);
	if ((h->fields = calloc(h->n_routes, sizeof(*h->fields))) == NULL)
		return -1;
	for (size_t i = 0; i < h->n_routes; i++) {
		const gw_route *rt = &h->routes[i];
		struct route_fields *f = &h->fields[i];

		if (rt->kind != GW_ROUTE_PROXY)
			continue;
		f->id = gw_message_field(rt->req_desc, rt->id_field, PROTOBUF_C_TYPE_INT64);
		f->page_token =
		    gw_message_field(rt->req_desc, "page_token", PROTOBUF_C_TYPE_STRING);
		f->client_address =
		    gw_message_field(rt->req_desc, "client_address", PROTOBUF_C_TYPE_STRING);
		f->idempotency_key =
		    gw_message_field(rt->req_desc, "idempotency_key", PROTOBUF_C_TYPE_STRING);
		f->resp_id = gw_message_field(rt->resp_desc, "id", PROTOBUF_C_TYPE_INT64);
		if ((rt->id_field != NULL && f->id == NULL) ||
		    (rt->list_query && f->page_token == NULL) ||
		    (rt->client_address && f->client_address == NULL) ||
		    (rt->idempotency_key && f->idempotency_key == NULL))
			SHOP_LOG(ERROR, "route %s %s: request message has no expected field",
				 rt->method, rt->pattern);
	}
	return 0;
}

/* ---- gateway-local routes --------------------------------------------------- */

/* /healthz (liveness) or /readyz (readiness, from the last registry view
 * and the breakers): health.h. Reads memory only. */
static void answer_health(gw_req *r, bool readiness)
{
	char *body;
	size_t len;
	int status = shop_health_render(r->srv->cfg.health, readiness, &body, &len);

	if (body == NULL) {
		answer_kind(r, GW_P_INTERNAL, NULL);
		return;
	}
	set_answer(r, status, "application/json", body, len);
}

static void answer_metrics(gw_req *r)
{
	size_t len, blen;
	char *text = gw_metrics_render(r->srv->metrics, &len);
	char *breakers = shop_upstream_breaker_metrics(r->srv->up, &blen);
	char *all = NULL;

	if (text != NULL && breakers != NULL && (all = malloc(len + blen + 1)) != NULL) {
		memcpy(all, text, len);
		memcpy(all + len, breakers, blen + 1);
	}
	free(text);
	free(breakers);
	if (all == NULL) {
		answer_kind(r, GW_P_INTERNAL, NULL);
		return;
	}
	set_answer(r, 200, "text/plain; version=0.0.4; charset=utf-8", all, len + blen);
}

/* ---- upstream ---------------------------------------------------------------- */

/* Reads page_size and page_token from the query into a ListProductsRequest.
 * lws has already split the query at '&' and percent-decoded each part.
 * Every part is read whole: lws_hdr_copy_fragment answers -1 both for "no
 * such part" and "too long for the buffer", so the buffer holds any part lws
 * can store, and -1 can only mean the parts are over. */
static int read_list_query(gw_req *r, ProtobufCMessage *msg)
{
	Shop__V1__ListProductsRequest *req = (Shop__V1__ListProductsRequest *)msg;
	char *frag = r->srv->hbuf;

	for (int i = 0;; i++) {
		int n = lws_hdr_copy_fragment(r->wsi, frag, (int)sizeof(r->srv->hbuf),
					      WSI_TOKEN_HTTP_URI_ARGS, i);

		if (n < 0)
			break;
		if (strncmp(frag, "page_size=", 10) == 0) {
			if (gw_parse_page_size(frag + 10, &req->page_size) != 0) {
				answer_kind(r, GW_P_BAD_PAGE_SIZE, NULL);
				return -1;
			}
		} else if (strncmp(frag, "page_token=", 11) == 0) {
			if (strlen(frag + 11) >= GW_MAX_PAGE_TOKEN) {
				answer_kind(r, GW_P_BAD_PAGE_TOKEN, NULL);
				return -1;
			}
			if (gw_message_set_string_at(msg, fields_of(r)->page_token, frag + 11) !=
			    0) {
				answer_kind(r, GW_P_INTERNAL, NULL);
				return -1;
			}
		} else if (strcmp(frag, "page_size") == 0) {
			answer_kind(r, GW_P_BAD_PAGE_SIZE, NULL);
			return -1;
		}
	}
	if (req->page_size == 0)
		req->page_size = 100; /* §2 default; also the service's meaning of 0 */
	return 0;
}

static void start_call(gw_req *r)
{
	const gw_route *rt = r->route;
	ProtobufCMessage *msg = NULL;
	gw_tc_error err;
	shop_rpc_call_opts o;
	char peer[64];
	int rv;

	if (rt->has_body) {
		if (gw_body_to_message(r->body != NULL ? r->body : "", r->body_len, rt->req_desc,
				       &msg, &err) != 0) {
			gw_problem p;

			gw_problem_from_tc(&p, &err, r->lang);
			answer_problem(r, &p);
			return;
		}
	} else {
		if ((msg = malloc(rt->req_desc->sizeof_message)) == NULL) {
			answer_kind(r, GW_P_INTERNAL, NULL);
			return;
		}
		rt->req_desc->message_init(msg);
	}
	if (rt->id_field != NULL && gw_message_set_int64_at(msg, fields_of(r)->id, r->path_id) != 0)
		goto internal;
	if (rt->list_query && read_list_query(r, msg) != 0)
		goto out;
	if (rt->client_address) {
		const char *addr = peer;

		if (lws_get_peer_simple(r->wsi, peer, sizeof(peer)) == NULL)
			peer[0] = '\0';
		/* lws listens on a dual-stack socket: show IPv4 peers as IPv4. */
		if (strncmp(peer, "::ffff:", 7) == 0 && strchr(peer + 7, '.') != NULL)
			addr = peer + 7;
		if (gw_message_set_string_at(msg, fields_of(r)->client_address, addr) != 0)
			goto internal;
	}
	if (rt->idempotency_key) {
		char key[GW_MAX_IDEMPOTENCY_KEY + 1] = "";
		int len = lws_hdr_custom_length(r->wsi, "idempotency-key:", 16);

		if (len > GW_MAX_IDEMPOTENCY_KEY) {
			answer_kind(r, GW_P_BAD_IDEMPOTENCY_KEY, NULL);
			goto out;
		}
		if (len > 0 &&
		    lws_hdr_custom_copy(r->wsi, key, sizeof(key), "idempotency-key:", 16) < 0)
			key[0] = '\0';
		if (gw_message_set_string_at(msg, fields_of(r)->idempotency_key, key) != 0)
			goto internal;
	}
	o = (shop_rpc_call_opts){
	    .traceparent = r->trace.traceparent,
	    .deadline_unix_ms = shop_now_unix_ms() + r->srv->cfg.rpc_timeout_ms,
	    .caller_user_id = r->caller_user_id,
	    /* A GET may be retried on another instance; a write never is. */
	    .idempotent = strcmp(rt->method, "GET") == 0,
	};
	r->state = REQ_WAITING;
	rv = gw_bridge_call(r->srv->bridge, r, rt->service, rt->rpc_method, msg, &o, &r->job);
	if (rv == NNG_EAGAIN) {
		/* Shed by this gateway: its queue to every instance that would
		 * take the call is full. The answer a service's own OVERLOADED
		 * gets (503 service_unavailable, Retry-After 1); not logged as a
		 * warning, since under overload there are thousands a second. */
		SHOP_LOG_T(DEBUG, r->trace.trace_id, "upstream %s %s shed: its queue is full",
			   rt->service, rt->rpc_method);
		answer_kind(r, GW_P_UNAVAILABLE, NULL);
		goto out;
	}
	if (rv != 0) {
		SHOP_LOG_T(WARN, r->trace.trace_id, "upstream %s %s not accepted: %s", rt->service,
			   rt->rpc_method, nng_strerror(rv));
		answer_kind(r, GW_P_UNAVAILABLE, NULL);
		goto out;
	}
	/* A safety net only: the upstream answers by the deadline. */
	lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK,
			(int)(r->srv->cfg.rpc_timeout_ms / 1000) + 10);
	goto out;
internal:
	SHOP_LOG_T(ERROR, r->trace.trace_id, "route %s: request message has no expected field",
		   rt->pattern);
	answer_kind(r, GW_P_INTERNAL, NULL);
out:
	protobuf_c_message_free_unpacked(msg, NULL);
}

/* The bridge hands an answer back (lws thread). */
static void on_deliver(void *session, gw_job *job)
{
	gw_req *r = session;
	const gw_route *rt = r->route;
	const Shop__V1__RpcResponse *resp = gw_job_response(job);
	int rv = gw_job_rv(job);

	r->job = NULL;
	lws_set_timeout(r->wsi, NO_PENDING_TIMEOUT, 0);
	if (gw_job_instance(job)[0] != '\0')
		snprintf(r->served_by, sizeof(r->served_by), "%s", gw_job_instance(job));
	if (rv != 0 || resp == NULL) {
		SHOP_LOG_T(WARN, r->trace.trace_id, "upstream %s %s failed: %s", rt->service,
			   rt->rpc_method, rv != 0 ? nng_strerror(rv) : "no reply");
		answer_kind(r, GW_P_UNAVAILABLE, NULL);
	} else if (resp->code != SHOP_RPC_OK) {
		gw_problem p;

		gw_problem_from_rpc(&p, resp, r->lang);
		if (p.status >= 500)
			SHOP_LOG_T(WARN, r->trace.trace_id, "upstream %s %s: code %d reason %s: %s",
				   rt->service, rt->rpc_method, resp->code, resp->reason,
				   resp->message);
		answer_problem(r, &p);
	} else {
		gw_pss *pss = lws_container_of(r, gw_pss, slot);
		ProtobufCAllocator arena = {arena_alloc, arena_free, pss};
		ProtobufCMessage *m;
		/* Written into the connection's answer buffer, kept between
		 * its requests. */
		shop_buf *ans = &pss->answer;
		int64_t id;
		const char *cache;

		pss->arena_used = 0;
		m = protobuf_c_message_unpack(rt->resp_desc, &arena, resp->payload.len,
					      resp->payload.data);
		if (m == NULL || gw_message_to_json_buf(m, ans) != 0) {
			SHOP_LOG_T(ERROR, r->trace.trace_id, "upstream %s %s: reply payload %s",
				   rt->service, rt->rpc_method,
				   m == NULL ? "does not parse" : "out of memory");
			answer_kind(r, GW_P_INTERNAL, NULL);
		} else {
			if (rt->location != NULL &&
			    gw_message_get_int64_at(m, fields_of(r)->resp_id, &id) == 0)
				snprintf(r->location, sizeof(r->location), "%s%" PRId64,
					 rt->location, id);
			if (rt->cache_header &&
			    (cache = shop_rpc_response_meta(resp, "cache")) != NULL &&
			    (strcmp(cache, "HIT") == 0 || strcmp(cache, "MISS") == 0 ||
			     strcmp(cache, "BYPASS") == 0))
				snprintf(r->x_cache, sizeof(r->x_cache), "%s", cache);
			set_answer(r, rt->success_status, "application/json", ans->p, ans->len);
			r->out_borrowed = true;
		}
		protobuf_c_message_free_unpacked(m, &arena);
	}
	gw_bridge_job_free(job);
}

/* ---- the request line ---------------------------------------------------- */

static const struct {
	enum lws_token_indexes tok;
	const char *name;
} methods[] = {
    {WSI_TOKEN_GET_URI, "GET"},     {WSI_TOKEN_POST_URI, "POST"},
    {WSI_TOKEN_PUT_URI, "PUT"},     {WSI_TOKEN_DELETE_URI, "DELETE"},
    {WSI_TOKEN_PATCH_URI, "PATCH"}, {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
    {WSI_TOKEN_HEAD_URI, "HEAD"},
};

static const char *request_method(struct lws *wsi)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (lws_hdr_total_length(wsi, methods[i].tok) > 0)
			return methods[i].name;
	return "OTHER";
}

/* Copies header tok into buf; "" when absent or too long. */
static const char *header(struct lws *wsi, enum lws_token_indexes tok, char *buf, int cap)
{
	if (lws_hdr_total_length(wsi, tok) >= cap || lws_hdr_copy(wsi, buf, cap, tok) < 0)
		buf[0] = '\0';
	return buf;
}

/* ---- field lines (RFC 9112 §2.2, §3.2, §5) ----------------------------- */

/* The tokens of the request line; every other token below lws's internal
 * ones is a field lws knows. */
static bool request_line_token(int tok)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (tok == (int)methods[i].tok)
			return true;
	return tok == WSI_TOKEN_HTTP || tok == WSI_TOKEN_HTTP_URI_ARGS ||
	       tok == WSI_TOKEN_CONNECT || tok == WSI_TOKEN_CHALLENGE;
}

/* Fields lws does not know but the gateway reads, by their lws spelling. */
static const char *const read_unknown[] = {"traceparent:", "idempotency-key:"};

/* Framing and routing fields whose name might come with whitespace before
 * the colon, which lws then stores as an unknown field. */
static const char *const framing_names[] = {"content-length", "transfer-encoding", "host"};
#define N_FRAMING (sizeof(framing_names) / sizeof(framing_names[0]))

/* What read_fields looks at, derived once (field_tables_init) from lws's
 * token table and the names above: the field tokens with their name
 * lengths, and every spaced spelling of the framing names. */
static struct {
	int tok;
	size_t name_len; /* without the colon */
	bool host;
} field_tokens[_WSI_TOKEN_CLIENT_SENT_PROTOCOLS];
static size_t n_field_tokens;
static struct {
	const char *name; /* framing_names[i] */
	char spaced[32];
	int len;
} spaced_names[N_FRAMING * GW_FIELD_NAME_SPACED_COUNT];
static size_t n_spaced_names;

static void field_tables_init(void)
{
	n_field_tokens = n_spaced_names = 0;
	for (int tok = 0; tok < (int)_WSI_TOKEN_CLIENT_SENT_PROTOCOLS; tok++) {
		const char *name = (const char *)lws_token_to_string((enum lws_token_indexes)tok);

		if (request_line_token(tok) || name == NULL || name[0] == '\0')
			continue;
		field_tokens[n_field_tokens].tok = tok;
		field_tokens[n_field_tokens].name_len = strlen(name) - 1;
		field_tokens[n_field_tokens].host = tok == WSI_TOKEN_HOST;
		n_field_tokens++;
	}
	for (size_t i = 0; i < N_FRAMING; i++)
		for (unsigned v = 0; v < GW_FIELD_NAME_SPACED_COUNT; v++) {
			int nlen = gw_field_name_spaced(framing_names[i], v,
							spaced_names[n_spaced_names].spaced,
							sizeof(spaced_names[0].spaced));

			if (nlen > 0) {
				spaced_names[n_spaced_names].name = framing_names[i];
				spaced_names[n_spaced_names++].len = nlen;
			}
		}
}

/* Checks the field lines before anything reads them, and answers what it
 * refuses: a header section over GW_MAX_HEADER_SECTION (431); a NUL inside
 * a value (lws_hdr_copy would stop there while lws_hdr_total_length counts
 * past it); no Host in HTTP/1.1, or two; a framing field with whitespace
 * before its colon (400). lws reads any body by its own Content-Length
 * whatever we decide, so a refusal closes the connection. Fields lws does
 * not know cannot be listed with lws 4.1.6: only those the gateway reads
 * are measured and checked. Returns 0 to go on, -1 when answered. */
static int read_fields(gw_req *r)
{
	struct lws *wsi = r->wsi;
	char *buf = r->srv->hbuf, spaced[32], version[16];
	const int cap = (int)sizeof(r->srv->hbuf);
	const char *bad = NULL;
	size_t section = 0;
	int hosts = 0;

	for (size_t t = 0; t < n_field_tokens; t++) {
		enum lws_token_indexes tok = (enum lws_token_indexes)field_tokens[t].tok;

		for (int i = 0;; i++) {
			int n = lws_hdr_copy_fragment(wsi, buf, cap, tok, i);

			if (n < 0)
				break;
			section += gw_field_line_size(field_tokens[t].name_len, (size_t)n);
			if (memchr(buf, '\0', (size_t)n) != NULL && bad == NULL)
				bad = (const char *)lws_token_to_string(tok);
			if (field_tokens[t].host)
				hosts++;
		}
	}
	for (size_t i = 0; i < sizeof(read_unknown) / sizeof(read_unknown[0]); i++) {
		int nlen = (int)strlen(read_unknown[i]);
		int n = lws_hdr_custom_copy(wsi, buf, cap, read_unknown[i], nlen);

		if (n < 0)
			continue;
		section += gw_field_line_size((size_t)nlen - 1, (size_t)n);
		if (strlen(buf) != (size_t)n && bad == NULL)
			bad = read_unknown[i];
	}
	if (section > GW_MAX_HEADER_SECTION) {
		SHOP_LOG_T(INFO, r->trace.trace_id, "header section of %zu bytes refused", section);
		answer_kind(r, GW_P_HEADERS_TOO_LARGE, NULL);
		goto refused;
	}
	for (size_t i = 0; i < n_spaced_names && bad == NULL; i++)
		if (lws_hdr_custom_length(wsi, spaced_names[i].spaced, spaced_names[i].len) >= 0)
			bad = spaced_names[i].name;
	if (bad == NULL && hosts > 1)
		bad = "host";
	if (bad == NULL && hosts == 0 &&
	    strcmp(header(wsi, WSI_TOKEN_HTTP, version, sizeof(version)), "HTTP/1.0") != 0)
		bad = "host";
	if (bad == NULL)
		return 0;
	snprintf(spaced, sizeof(spaced), "%.*s", (int)strcspn(bad, ":"), bad);
	SHOP_LOG_T(INFO, r->trace.trace_id, "request refused: field %s malformed or missing",
		   spaced);
	answer_kind(r, GW_P_BAD_FIELD, spaced);
refused:
	r->close_after = true;
	return -1;
}

/* ---- framing (RFC 9112 §6) ---------------------------------------------- */

/* Field lines of one header looked at; more are as bad as two. */
#define GW_MAX_FIELD_LINES 4

/* Copies the field lines of tok (lws keeps a repeated header as fragments,
 * and an empty value as an empty fragment) into buf; returns how many, up
 * to GW_MAX_FIELD_LINES. A value too long for its slot is kept as "x",
 * which no check accepts. */
static size_t field_lines(struct lws *wsi, enum lws_token_indexes tok, char (*buf)[64],
			  const char **lines)
{
	size_t n = 0;

	for (; n < GW_MAX_FIELD_LINES; n++) {
		int rv = lws_hdr_copy_fragment(wsi, buf[n], 64, tok, (int)n);

		if (rv == -1)
			break;
		if (rv < 0)
			snprintf(buf[n], 64, "x");
		lines[n] = buf[n];
	}
	return n;
}

/* Decides how the body is delimited, and refuses what could be read two
 * ways. lws 4.1 has already read Content-Length its own way (atoll, so "5,5"
 * is 5 and "-5" is 2^64 - 5) and reads the body by it whatever we decide:
 * every refusal here therefore closes the connection. Returns 0 to go on,
 * -1 when answered. */
static int read_framing(gw_req *r)
{
	char clb[GW_MAX_FIELD_LINES][64], teb[GW_MAX_FIELD_LINES][64];
	const char *cl[GW_MAX_FIELD_LINES], *te[GW_MAX_FIELD_LINES];
	size_t n_cl = field_lines(r->wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, clb, cl);
	size_t n_te = field_lines(r->wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING, teb, te);

	switch (gw_framing_decide(cl, n_cl, te, n_te, &r->content_length)) {
	case GW_FRAMING_NONE:
		return 0;
	case GW_FRAMING_LENGTH:
		r->has_length = true;
		return 0;
	case GW_FRAMING_CHUNKED:
		r->chunked = true;
		gw_chunked_init(&r->dechunk);
		return 0;
	case GW_FRAMING_CONFLICT:
		answer_kind(r, GW_P_LENGTH_AND_CODING, NULL);
		break;
	case GW_FRAMING_BAD_LENGTH:
		answer_kind(r, GW_P_BAD_LENGTH, NULL);
		break;
	case GW_FRAMING_BAD_CODING:
		answer_kind(r, GW_P_NOT_IMPLEMENTED, NULL);
		break;
	}
	r->close_after = true;
	return -1;
}

/* True when lws goes on to read a body: answering before it is read leaves
 * bytes on the connection, which must then be closed. lws 4.1 reads a POST,
 * PUT or PATCH without Content-Length to the end of the connection (up to
 * 100 MiB), and hands a chunked body on undecoded. */
static bool body_may_follow(const gw_req *r)
{
	if (r->has_length)
		return r->content_length > 0;
	return r->chunked || strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0 ||
	       strcmp(r->method, "PATCH") == 0;
}

static void on_body_limit(lws_sorted_usec_list_t *sul)
{
	gw_req *r = lws_container_of(sul, gw_req, limit);

	r->limit_armed = false;
	r->limit_passed = true;
	SHOP_LOG_T(INFO, r->trace.trace_id, "request body not complete after %d s; closing",
		   r->srv->cfg.request_timeout_s);
	lws_set_timeout(r->wsi, PENDING_TIMEOUT_HTTP_CONTENT, LWS_TO_KILL_ASYNC);
}

/* lws re-arms its body timeout at every read, so a client dribbling a body
 * would hold the connection for ever: the whole body gets one deadline. */
static void arm_body_limit(gw_req *r)
{
	r->limit_armed = true;
	lws_sul_schedule(lws_get_context(r->wsi), 0, &r->limit, on_body_limit,
			 (lws_usec_t)r->srv->cfg.request_timeout_s * LWS_US_PER_SEC);
}

static void disarm_body_limit(gw_req *r)
{
	if (r->limit_armed)
		lws_sul_cancel(&r->limit);
	r->limit_armed = false;
}

/* lws 4.1.6 hands a request pipelined behind another the wrong bytes as its
 * body: its own request line onwards. A JSON body never starts that way. */
static bool body_misdelivered(const gw_req *r, const char *in, size_t len)
{
	char line[16];
	size_t n = (size_t)snprintf(line, sizeof(line), "%s /", r->method);

	if (len < n)
		n = len;
	return n > 0 && memcmp(in, line, n) == 0;
}

/* The JWT filter (jwt_filter.h) on a route with needs_token: true when the
 * request may go on, with r->caller_user_id set; otherwise the 401 is
 * answered. The token is never logged, and the answer is the same whatever
 * made it invalid. */
static bool token_accepted(gw_req *r)
{
	/* hbuf holds any field value lws stores (GW_LWS_HEADER_SPACE). */
	int n = lws_hdr_total_length(r->wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
	char *value = n > 0 ? r->srv->hbuf : NULL;
	gw_jwt_result res;

	if (value != NULL && (n >= (int)sizeof(r->srv->hbuf) ||
			      lws_hdr_copy(r->wsi, value, (int)sizeof(r->srv->hbuf),
					   WSI_TOKEN_HTTP_AUTHORIZATION) < 0))
		res = GW_JWT_MALFORMED;
	else
		res = gw_jwt_verify_cached(r->srv->tokens, &r->srv->cfg.jwt, value,
					   shop_now_unix_ms() / 1000, &r->caller_user_id);
	if (res == GW_JWT_OK)
		return true;
	SHOP_LOG_T(INFO, r->trace.trace_id, "token refused: %s", gw_jwt_result_str(res));
	if (res == GW_JWT_INTERNAL) {
		answer_kind(r, GW_P_INTERNAL, NULL);
	} else if (res == GW_JWT_MISSING) {
		/* RFC 6750 §3.1: no error code when no credentials came. */
		r->www_authenticate = "Bearer";
		answer_kind(r, GW_P_MISSING_TOKEN, NULL);
	} else {
		r->www_authenticate = "Bearer error=\"invalid_token\"";
		answer_kind(r, GW_P_INVALID_TOKEN, NULL);
	}
	return false;
}

/* The SERVER span of a proxied request: from its route on to its answer;
 * the upstream call is its child (lib/upstream.c). Named "METHOD template",
 * never by the raw path. */
static void span_begin(gw_req *r)
{
	gw_pss *pss = lws_container_of(r, gw_pss, slot);
	char name[96];

	if (!r->trace.sampled || !shop_trace_recording())
		return;
	/* The span (over 2 KiB) exists only on connections that carry a
	 * traced request, and only once on each. */
	if (pss->span == NULL && (pss->span = malloc(sizeof(*pss->span))) == NULL)
		return; /* out of memory: this request goes untraced */
	snprintf(name, sizeof(name), "%s %s", r->method, r->route->pattern);
	shop_span_begin(pss->span, SHOP_SPAN_SERVER, name, r->trace.trace_id, r->trace.span_id,
			r->trace.parent_id, r->trace.sampled);
	shop_span_tag(pss->span, "http.method", "%s", r->method);
	shop_span_tag(pss->span, "http.route", "%s", r->route->pattern);
	r->span_open = true;
}

static void span_end(gw_req *r)
{
	shop_span *span = lws_container_of(r, gw_pss, slot)->span;

	if (!r->span_open)
		return;
	r->span_open = false;
	shop_span_tag(span, "http.status_code", "%d", r->status);
	if (r->status >= 500)
		shop_span_tag(span, "error", "%d", r->status);
	if (r->served_by[0] != '\0' && strcmp(r->served_by, r->srv->cfg.instance) != 0)
		shop_span_tag(span, "served_by", "%s", r->served_by);
	shop_span_finish(span);
}

/* Returns 0 to keep the connection, -1 to close it. */
static int on_http(gw_http *srv, struct lws *wsi, gw_pss *pss, const char *uri)
{
	char path[1024], buf[512], tp[128];
	gw_req *r;
	uint64_t a, b, c;

	if (!pss->ours)
		return -1; /* lws's own user space: the bind that makes ours failed */
	req_end(pss->req);
	pss->req = r = &pss->slot;
	r->srv = srv;
	r->wsi = wsi;
	r->start_us = shop_now_mono_us();
	r->method = request_method(wsi);
	r->route_label = "unmatched";
	snprintf(r->served_by, sizeof(r->served_by), "%s", srv->cfg.instance);
	r->lang = gw_problem_lang(header(wsi, WSI_TOKEN_HTTP_ACCEPT_LANGUAGE, buf, sizeof(buf)));
	if (lws_hdr_custom_length(wsi, "traceparent:", 12) >= (int)sizeof(tp) ||
	    lws_hdr_custom_copy(wsi, tp, sizeof(tp), "traceparent:", 12) < 0)
		tp[0] = '\0';
	random_ids(&a, &b, &c);
	gw_trace_init(&r->trace, tp, a, b, c);

	if (read_fields(r) != 0 || read_framing(r) != 0)
		return 0;
	r->close_after = body_may_follow(r); /* until the body is read */
	if (gw_path_normalize(uri, path, sizeof(path)) != 0) {
		answer_kind(r, GW_P_BAD_PATH, NULL);
		return 0;
	}
	switch (
	    gw_route_match(r->method, path, &r->route, &r->path_id, r->allow, sizeof(r->allow))) {
	case GW_MATCH_OK:
		r->route_label = r->route->pattern;
		break;
	case GW_MATCH_NOT_FOUND:
		answer_kind(r, GW_P_NOT_FOUND, NULL);
		return 0;
	case GW_MATCH_BAD_METHOD:
		answer_kind(r, GW_P_METHOD_NOT_ALLOWED, r->method);
		return 0;
	case GW_MATCH_BAD_ID:
		r->allow[0] = '\0'; /* other methods' shapes matched: no Allow */
		answer_kind(r, GW_P_BAD_ID, NULL);
		return 0;
	}
	r->allow[0] = '\0';

	switch (r->route->kind) {
	case GW_ROUTE_HEALTHZ:
		answer_health(r, false);
		return 0;
	case GW_ROUTE_READYZ:
		answer_health(r, true);
		return 0;
	case GW_ROUTE_METRICS:
		answer_metrics(r);
		return 0;
	case GW_ROUTE_PROXY:
		break;
	}
	span_begin(r);

	/* On the normalised path's route, before anything goes upstream. */
	if (r->route->needs_token && !token_accepted(r))
		return 0;

	if (!r->route->has_body) {
		start_call(r); /* a body sent anyway is not read: close_after stays */
		return 0;
	}
	if (!gw_content_type_is_json(header(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, buf, sizeof(buf)))) {
		answer_kind(r, GW_P_UNSUPPORTED_MEDIA, NULL);
		return 0;
	}
	if (r->chunked) {
		/* lws 4.1 hands the body on undecoded, as one that ends with
		 * the connection: on_body decodes it, and the connection is
		 * closed after the answer (close_after stays). */
		arm_body_limit(r);
		return 0;
	}
	if (!r->has_length || r->content_length == 0) {
		start_call(r); /* no body (RFC 9112 §6.3): answer now */
		return 0;
	}
	if (r->content_length > GW_MAX_BODY) {
		answer_kind(r, GW_P_PAYLOAD_TOO_LARGE, NULL);
		return 0;
	}
	/* A body follows; once it is read the connection may be kept. */
	r->close_after = false;
	arm_body_limit(r);
	return 0;
}

/* Answers before the body ended; the rest of it is never read. */
static void refuse_body(gw_req *r, enum gw_problem_kind kind)
{
	r->answered_early = true;
	r->close_after = true;
	r->body_len = 0;
	disarm_body_limit(r);
	answer_kind(r, kind, NULL);
}

static void on_body(gw_req *r, const char *in, size_t len)
{
	enum gw_chunked_rv rv;
	size_t used;
	char *nb;

	if (r->answered_early || r->state != REQ_READING)
		return;
	if (!r->body_seen && body_misdelivered(r, in, len)) {
		/* The call was never made: the client may safely retry it on a
		 * fresh connection. */
		SHOP_LOG_T(WARN, r->trace.trace_id, "pipelined body misdelivered; closing");
		refuse_body(r, GW_P_UNAVAILABLE);
		return;
	}
	r->body_seen = true;
	/* Refuse as soon as the limit is passed, not at the end (chunked data
	 * are never longer than their encoding; checked once decoded). */
	if (!r->chunked && r->body_len + len > GW_MAX_BODY) {
		refuse_body(r, GW_P_PAYLOAD_TOO_LARGE);
		return;
	}
	if (r->body_len + len + 1 > r->body_cap) {
		size_t cap = r->body_cap > 0 ? r->body_cap : 1024;

		while (cap < r->body_len + len + 1)
			cap *= 2;
		if ((nb = realloc(r->body, cap)) == NULL) {
			refuse_body(r, GW_P_INTERNAL);
			return;
		}
		r->body = nb;
		r->body_cap = cap;
	}
	if (!r->chunked) {
		memcpy(r->body + r->body_len, in, len);
		r->body_len += len;
		r->body[r->body_len] = '\0';
		return;
	}
	rv = gw_chunked_decode(&r->dechunk, in, len, r->body, &r->body_len, &used);
	r->body[r->body_len] = '\0';
	if (rv == GW_CHUNKED_ERROR)
		refuse_body(r, GW_P_BAD_CHUNKED);
	else if (r->body_len > GW_MAX_BODY)
		refuse_body(r, GW_P_PAYLOAD_TOO_LARGE);
	else if (rv == GW_CHUNKED_DONE) {
		/* lws goes on waiting for a body that ended: close_after. */
		disarm_body_limit(r);
		start_call(r);
	}
}

/* ---- writing ----------------------------------------------------------------- */

static void alog_flush_cb(lws_sorted_usec_list_t *sul)
{
	gw_http *srv = lws_container_of(sul, gw_http, alog_sul);

	gw_access_log_flush(srv->alog);
}

static void log_and_count(gw_req *r)
{
	gw_http *srv = r->srv;
	double secs = (double)(shop_now_mono_us() - r->start_us) / 1e6;

	span_end(r);
	gw_metrics_count(srv->metrics, r->route_label, r->method, r->status, secs);
	/* Buffered (access_log.h): a 5xx goes out at once with the lines
	 * before it; the others within access_log_flush_ms. */
	if (gw_access_log_add(srv->alog, r->status >= 500, r->trace.trace_id,
			      "http %s %s status=%d ms=%.1f served_by=%s", r->method,
			      r->route_label, r->status, secs * 1000, r->served_by))
		lws_sul_schedule(srv->ctx, 0, &srv->alog_sul, alog_flush_cb,
				 (lws_usec_t)srv->cfg.access_log_flush_ms * LWS_US_PER_MS);
}

static int add_header(struct lws *wsi, const char *name, const char *value, unsigned char **p,
		      unsigned char *end)
{
	if (value == NULL || value[0] == '\0')
		return 0;
	/* Every answer header passes here: whatever a value's source (an
	 * upstream's instance name, a Location id, a traceparent), a control
	 * character could end the line and start another header. Such a
	 * header is left out, the answer goes on. */
	if (!gw_field_value_writable(value)) {
		SHOP_LOG(ERROR, "answer header %s left out: its value holds a control character",
			 name);
		return 0;
	}
	return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
					   (const unsigned char *)value, (int)strlen(value), p,
					   end);
}

/* An answer to HEAD has headers only (RFC 9110 §9.3.2): its Content-Length
 * says how long the answer is, and a body sent anyway would be read by the
 * client as the start of the next answer on the connection. */
static bool no_content(const gw_req *r)
{
	return strcmp(r->method, "HEAD") == 0;
}

/* Builds the status line and headers at the start of srv->wbuf (after
 * LWS_PRE); *pp: their end. Returns 0 or -1. */
static int build_headers(gw_http *srv, struct lws *wsi, gw_req *r, unsigned char **pp)
{
	unsigned char *end = srv->wbuf + sizeof(srv->wbuf);
	char ra[16] = "";

	*pp = srv->wbuf + LWS_PRE;
	if (r->retry_after > 0)
		snprintf(ra, sizeof(ra), "%d", r->retry_after);
	if (lws_add_http_common_headers(wsi, (unsigned int)r->status, r->content_type, r->out_len,
					pp, end) ||
	    add_header(wsi, "x-served-by:", r->served_by, pp, end) ||
	    add_header(wsi, "traceparent:", r->trace.traceparent, pp, end) ||
	    add_header(wsi, "location:", r->location, pp, end) ||
	    add_header(wsi, "x-cache:", r->x_cache, pp, end) ||
	    add_header(wsi, "allow:", r->allow, pp, end) ||
	    add_header(wsi, "retry-after:", ra, pp, end) ||
	    add_header(wsi, "www-authenticate:", r->www_authenticate, pp, end) ||
	    (r->close_after && add_header(wsi, "connection:", "close", pp, end)) ||
	    lws_finalize_http_header(wsi, pp, end))
		return -1;
	return 0;
}

/* Writes the next part of r's answer in one lws_write: at REQ_READY the
 * status line, the headers and as much of the body as fits after them in
 * srv->wbuf (the whole answer, for every answer of the API's size), then
 * GW_WRITE_CHUNK of body at a time. On HTTP/1 lws 4.1.6 sends what it is
 * given as it is (rops_write_role_protocol_h1 → lws_issue_raw: no framing
 * of its own, no use of the write type), and keeps what the socket does
 * not take for the next POLLOUT, so headers and body may share a write.
 * *final: the answer is all written. Returns 0 or -1. */
static int write_part(gw_http *srv, struct lws *wsi, gw_req *r, bool *final)
{
	unsigned char *start = srv->wbuf + LWS_PRE, *p = start,
		      *end = srv->wbuf + sizeof(srv->wbuf);
	size_t n;

	if (r->state == REQ_READY) {
		if (build_headers(srv, wsi, r, &p) != 0)
			return -1;
		if (no_content(r))
			r->out_off = r->out_len; /* the length is said, nothing is sent */
		r->state = REQ_WRITING;
	}
	n = r->out_len - r->out_off;
	if (n > (size_t)(end - p))
		n = (size_t)(end - p);
	if (n > GW_WRITE_CHUNK)
		n = GW_WRITE_CHUNK;
	if (n > 0)
		memcpy(p, r->out + r->out_off, n);
	r->out_off += n;
	p += n;
	*final = r->out_off == r->out_len;
	if (p > start &&
	    lws_write(wsi, start, (size_t)(p - start),
		      *final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < (int)(p - start))
		return -1;
	return 0;
}

/* Returns 0 to keep the connection, -1 to close it. */
static int on_writeable(gw_http *srv, struct lws *wsi, gw_pss *pss)
{
	gw_req *r = pss->req;
	bool final, close_after;

	if (r == NULL || (r->state != REQ_READY && r->state != REQ_WRITING))
		return 0;
	if (write_part(srv, wsi, r, &final) != 0)
		return -1;
	if (!final) {
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, srv->cfg.idle_timeout_s);
		lws_callback_on_writable(wsi);
		return 0;
	}
	close_after = r->close_after;
	log_and_count(r);
	req_end(r);
	pss->req = NULL;
	if (close_after)
		return -1;
	/* Keep-alive: the connection is ready for the next (pipelined) request. */
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* Writes the whole answer at once outside a WRITEABLE callback, then asks
 * lws to close (lws flushes what the socket did not take before closing).
 * Returns -1. */
static int write_now(gw_http *srv, struct lws *wsi, gw_pss *pss)
{
	gw_req *r = pss->req;
	bool final = false;

	r->close_after = true;
	r->out_off = 0;
	while (!final && write_part(srv, wsi, r, &final) == 0)
		;
	if (final)
		log_and_count(r);
	req_end(r);
	pss->req = NULL;
	return -1;
}

/* Answers a request that asks to switch protocols (WebSocket, h2c) with a
 * 400 written at once, then hangs up: the gateway speaks HTTP/1.1 only, and
 * the WebSocket upgrade path of Debian's lws 4.1.6 has an unpatched use
 * after free. lws calls this before it looks for a protocol to upgrade to.
 * Returning > 0 ("answered, carry on") would take the path of
 * CVE-2025-11677; -1 takes lws's ordinary bail-out, which closes. An
 * upgrade lws does not know (not websocket, not h2c) it has already
 * answered with its own 403. */
static int refuse_upgrade(gw_http *srv, struct lws *wsi, const char *up)
{
	unsigned char *start = srv->wbuf + LWS_PRE, *p = start,
		      *end = srv->wbuf + sizeof(srv->wbuf);
	char buf[256];
	gw_problem prob;
	gw_trace trace;
	gw_lang lang;
	uint64_t a, b, c;
	char *body;

	if (strcasecmp(up, "websocket") != 0 && strcasecmp(up, "h2c") != 0)
		return -1;
	random_ids(&a, &b, &c);
	gw_trace_init(&trace, "", a, b, c);
	lang = gw_problem_lang(header(wsi, WSI_TOKEN_HTTP_ACCEPT_LANGUAGE, buf, sizeof(buf)));
	gw_problem_make(&prob, GW_P_UPGRADE_REFUSED, lang, NULL);
	SHOP_LOG_T(INFO, trace.trace_id, "upgrade to %s refused", up);
	gw_metrics_count(srv->metrics, "unmatched", request_method(wsi), prob.status, 0);
	if ((body = gw_problem_json(&prob, trace.trace_id)) == NULL)
		return -1;
	if (lws_add_http_common_headers(wsi, (unsigned int)prob.status, "application/problem+json",
					strlen(body), &p, end) == 0 &&
	    add_header(wsi, "traceparent:", trace.traceparent, &p, end) == 0 &&
	    add_header(wsi, "connection:", "close", &p, end) == 0 &&
	    lws_finalize_write_http_header(wsi, start, &p, end) == 0 &&
	    strlen(body) <= GW_WRITE_CHUNK) {
		memcpy(start, body, strlen(body));
		lws_write(wsi, start, strlen(body), LWS_WRITE_HTTP_FINAL);
	}
	free(body);
	return -1;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		    size_t len)
{
	gw_pss *pss = user;
	struct lws_context *ctx = lws_get_context(wsi);
	gw_http *srv = ctx != NULL ? lws_context_user(ctx) : NULL;

	switch (reason) {
	case LWS_CALLBACK_HTTP: {
		int rc = on_http(srv, wsi, pss, in != NULL ? in : "");

		return rc;
	}
	case LWS_CALLBACK_HTTP_BODY:
		/* lws re-arms its own body timeout at every read, which can undo
		 * the kill on_body_limit asked for when a byte comes first. */
		if (pss->req != NULL && pss->req->limit_passed)
			return -1;
		if (pss->req != NULL)
			on_body(pss->req, in, len);
		return 0;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (pss->req == NULL)
			return 0;
		if (pss->req->state == REQ_READING && !pss->req->answered_early) {
			lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
			disarm_body_limit(pss->req);
			start_call(pss->req);
			return 0;
		}
		/* lws 4.1 repeats the completion for as long as pipelined
		 * bytes wait behind the body, and meanwhile never offers
		 * POLLOUT to this connection: an answer that is ready is
		 * written from here, and the connection closed (the client
		 * retries what it pipelined, RFC 9112 §9.3.2). */
		if (pss->req->state == REQ_READY)
			return write_now(srv, wsi, pss);
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return on_writeable(srv, wsi, pss);
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		/* Broadcast once per protocol per vhost; one protocol, one vhost. */
		if (srv != NULL && srv->bridge != NULL)
			gw_bridge_drain(srv->bridge);
		return 0;
	case LWS_CALLBACK_HTTP_BIND_PROTOCOL:
		/* The first bind of a connection: our own per-connection
		 * state replaces lws's user space (gw_pss). */
		if (pss != NULL && !pss->ours) {
			gw_pss *own = calloc(1, sizeof(*own));

			if (own == NULL)
				return -1;
			own->ours = true;
			lws_set_wsi_user(wsi, own); /* frees lws's: pss is gone */
		}
		return 0;
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		/* The client went away (or the transaction ended): a pending
		 * upstream answer is abandoned to the bridge. */
		if (pss != NULL && pss->ours) {
			req_end(pss->req);
			pss->req = NULL;
		}
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		if (pss != NULL && pss->ours) {
			lws_set_wsi_user(wsi, NULL);
			conn_free(pss);
		}
		return 0;
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		return refuse_upgrade(srv, wsi, in != NULL ? in : "");
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		/* Not reached while CONFIRM_UPGRADE refuses: a second lock. */
		return -1; /* no WebSocket upgrades */
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static void lws_log(int level, const char *line)
{
	char buf[512];
	size_t n;

	snprintf(buf, sizeof(buf), "%s", line);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	if (level & LLL_ERR)
		SHOP_LOG(ERROR, "lws: %s", buf);
	else
		SHOP_LOG(WARN, "lws: %s", buf);
}

int gw_http_create(gw_http **out, const gw_http_config *cfg, shop_registry_view *view,
		   shop_upstream *up)
{
	struct lws_context_creation_info info;
	gw_http *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (h == NULL)
		return -1;
	h->cfg = *cfg;
	h->view = view;
	h->up = up;
	if (gw_metrics_create(&h->metrics) != 0)
		goto fail;
	/* 4096 tokens: about as many clients, at ~300 bytes each when full. */
	if ((h->tokens = gw_jwt_cache_new(4096)) == NULL)
		goto fail;
	if ((h->alog = gw_access_log_create(cfg->access_log_flush_ms > 0 ? GW_ACCESS_LOG_BUFFER
									 : 0)) == NULL ||
	    route_fields_init(h) != 0)
		goto fail;
	rng_seed();
	field_tables_init();
	h->protocols[0] = (struct lws_protocols){
	    .name = "http",
	    .callback = callback,
	    .per_session_data_size = sizeof(gw_pss),
	};
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
	memset(&info, 0, sizeof(info));
	info.port = cfg->port;
	info.iface = strcmp(cfg->host, "localhost") == 0 ? "127.0.0.1" : cfg->host;
	info.protocols = h->protocols;
	info.user = h;
	/* §2: header block ≤ 8 KiB, measured by read_fields; lws gets room
	 * above it so that it closes only far larger blocks itself. */
	info.max_http_header_data = GW_LWS_HEADER_SPACE;
	/* Idle keep-alive connections; the header block of each request (lws
	 * counts from the connection, or from the first byte of the next
	 * request); the body's idle gaps (its whole time: arm_body_limit). */
	info.keepalive_timeout = cfg->idle_timeout_s;
	info.timeout_secs_ah_idle = (unsigned int)cfg->request_timeout_s;
	info.timeout_secs = (unsigned int)cfg->request_timeout_s;
	info.options = LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
	/* lws 4.1 binds an IPv4 iface address only on an IPv4 socket; with
	 * IPv6 on it silently listens on every interface instead. */
	if (strchr(info.iface, ':') == NULL)
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	h->ctx = lws_create_context(&info);
	if (h->ctx == NULL) {
		SHOP_LOG(ERROR, "cannot listen on %s:%u", cfg->host, cfg->port);
		goto fail;
	}
	if (gw_bridge_create(&h->bridge, h->ctx, up, on_deliver) != 0)
		goto fail;
	*out = h;
	return 0;
fail:
	gw_http_destroy(h);
	return -1;
}

void gw_http_run(gw_http *h, volatile sig_atomic_t *stop)
{
	while (!*stop)
		if (lws_service(h->ctx, 0) < 0)
			break;
}

void gw_http_wake(gw_http *h)
{
	lws_cancel_service(h->ctx);
}

void gw_http_destroy(gw_http *h)
{
	if (h == NULL)
		return;
	/* Closing the connections abandons their jobs to the bridge, which
	 * then frees what is still queued. */
	if (h->ctx != NULL) {
		lws_sul_cancel(&h->alog_sul);
		lws_context_destroy(h->ctx);
	}
	gw_bridge_destroy(h->bridge);
	gw_jwt_cache_free(h->tokens);
	gw_access_log_destroy(h->alog); /* writes what is buffered */
	gw_metrics_destroy(h->metrics);
	free(h->fields);
	free(h);
}
