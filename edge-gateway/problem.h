/* problem.h -- RFC 9457 problem details: the gateway's error answers, their
 * stable codes, their texts in English and Korean, and the mapping from RPC
 * status codes to HTTP. Pure code. */
#ifndef GW_PROBLEM_H
#define GW_PROBLEM_H

#include <stdint.h>

#include "rpc.h"
#include "transcode.h"

typedef enum { GW_LANG_EN, GW_LANG_KO } gw_lang;

/* The language of details for an Accept-Language value (NULL = en): the
 * supported language with the highest q, the first listed on a tie. */
gw_lang gw_problem_lang(const char *accept_language);

/* An error answer being built. */
typedef struct gw_problem {
	int status;       /* HTTP status */
	char code[64];    /* stable machine-readable code, e.g. "product_not_found" */
	char detail[512]; /* for people, in the requested language */
	char field[128];  /* the request field a 400 is about, "" for none (§2: "field") */
	int retry_after;  /* seconds for Retry-After; 0 = no header */
} gw_problem;

/* The gateway's own errors. */
enum gw_problem_kind {
	GW_P_NOT_FOUND,           /* 404 no such route */
	GW_P_METHOD_NOT_ALLOWED,  /* 405; arg = the method */
	GW_P_BAD_PATH,            /* 400 malformed path */
	GW_P_BAD_ID,              /* 400 path id */
	GW_P_BAD_PAGE_SIZE,       /* 400 page_size */
	GW_P_BAD_PAGE_TOKEN,      /* 400 page_token too long */
	GW_P_BAD_IDEMPOTENCY_KEY, /* 400 Idempotency-Key too long */
	GW_P_PAYLOAD_TOO_LARGE,   /* 413 */
	GW_P_UNSUPPORTED_MEDIA,   /* 415 */
	GW_P_HEADERS_TOO_LARGE,   /* 431 header section over GW_MAX_HEADER_SECTION */
	GW_P_BAD_FIELD,           /* 400 a field line refused; arg = its name */
	GW_P_LENGTH_AND_CODING,   /* 400 Content-Length with Transfer-Encoding */
	GW_P_BAD_LENGTH,          /* 400 invalid or repeated Content-Length */
	GW_P_BAD_CHUNKED,         /* 400 malformed chunked body */
	GW_P_UPGRADE_REFUSED,     /* 400 Upgrade (WebSocket, h2c) is not offered */
	GW_P_NOT_IMPLEMENTED,     /* 501 a transfer coding other than chunked */
	GW_P_MISSING_TOKEN,       /* 401 no bearer credentials (jwt_filter.h) */
	GW_P_INVALID_TOKEN,       /* 401 any bad token, whatever the reason */
	GW_P_UNAVAILABLE,         /* 503 + Retry-After: 1 (no instance, transport) */
	GW_P_INTERNAL,            /* 500 */
};

/* Largest request body the gateway reads (§2). */
#define GW_MAX_BODY (64 * 1024)
/* Longest Idempotency-Key header value taken (the order service also
 * refuses anything but visible ASCII). */
#define GW_MAX_IDEMPOTENCY_KEY 255

void gw_problem_make(gw_problem *p, enum gw_problem_kind kind, gw_lang lang, const char *arg);

/* 400 invalid_argument naming the field of a transcoding error. */
void gw_problem_from_tc(gw_problem *p, const gw_tc_error *err, gw_lang lang);

/* Maps a non-OK RpcResponse to its HTTP answer (see problem.c for the
 * table). Never copies a message of a 5xx into the detail. */
void gw_problem_from_rpc(gw_problem *p, const Shop__V1__RpcResponse *resp, gw_lang lang);

/* HTTP reason phrase ("Not Found"); "Error" for codes it does not know. */
const char *gw_http_title(int status);

/* The application/problem+json body; caller frees with free(). NULL when
 * out of memory. trace_id may be NULL (written as ""). */
char *gw_problem_json(const gw_problem *p, const char *trace_id);

#endif
