/* rpc.h -- the RPC envelope shared by server and client: status codes,
 * reply building, and the size limit every nng socket enforces. */
#ifndef SHOP_RPC_H
#define SHOP_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "rpc.pb-c.h"

/* gRPC status code numbers (RpcResponse.code). */
enum shop_rpc_code {
	SHOP_RPC_OK = 0,
	SHOP_RPC_CANCELLED = 1,
	SHOP_RPC_UNKNOWN = 2,
	SHOP_RPC_INVALID_ARGUMENT = 3,
	SHOP_RPC_DEADLINE_EXCEEDED = 4,
	SHOP_RPC_NOT_FOUND = 5,
	SHOP_RPC_ALREADY_EXISTS = 6,
	SHOP_RPC_PERMISSION_DENIED = 7,
	SHOP_RPC_RESOURCE_EXHAUSTED = 8,
	SHOP_RPC_FAILED_PRECONDITION = 9,
	SHOP_RPC_UNIMPLEMENTED = 12,
	SHOP_RPC_INTERNAL = 13,
	SHOP_RPC_UNAVAILABLE = 14,
	SHOP_RPC_UNAUTHENTICATED = 16,
};

/* Largest message any shop nng socket accepts (NNG_OPT_RECVMAXSZ). */
#define SHOP_RPC_MAX_MSG (1024 * 1024)
/* Most metadata entries a reply may carry. */
#define SHOP_RPC_MAX_META 8

/* "INVALID_ARGUMENT" etc.; "UNKNOWN" for numbers it does not know. */
const char *shop_rpc_code_name(int code);

/* A reply under construction, on caller memory (shop_rpc_reply_init /
 * shop_rpc_reply_fini). Handlers fill it; the server packs and sends it. */
typedef struct shop_rpc_reply {
	int code;
	char message[256];
	char reason[64];
	bool dependency_failed; /* RpcResponse.dependency_failed: not our failure */
	size_t n_meta;
	char meta_key[SHOP_RPC_MAX_META][32];
	char meta_val[SHOP_RPC_MAX_META][128];
	uint8_t *payload; /* owned; malloc'd by shop_rpc_reply_ok */
	size_t payload_len;
} shop_rpc_reply;

void shop_rpc_reply_init(shop_rpc_reply *r);
void shop_rpc_reply_fini(shop_rpc_reply *r);
/* Packs msg as the payload; code OK. Returns 0, or -1 when out of memory
 * (the reply is then INTERNAL). */
int shop_rpc_reply_ok(shop_rpc_reply *r, const ProtobufCMessage *msg);
/* As shop_rpc_reply_ok with a payload already packed (len bytes at packed,
 * copied): a cached message answered as it was stored. */
int shop_rpc_reply_ok_bytes(shop_rpc_reply *r, const uint8_t *packed, size_t len);
/* Sets an error: code, stable reason (UPPER_SNAKE) and a printf message. */
void shop_rpc_reply_error(shop_rpc_reply *r, int code, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* As shop_rpc_reply_error, and marks the reply dependency_failed: the
 * service is working and answers for a dependency that failed (a call of
 * its own to another service failed, timed out or found every breaker
 * open). Callers' breakers do not count it against this instance. Never
 * for a failure of the service's own (shop_rpc_reply_error clears it). */
void shop_rpc_reply_dependency_error(shop_rpc_reply *r, int code, const char *reason,
				     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* INVALID_ARGUMENT, reason INVALID_ARGUMENT, message "<field> <why>" and
 * metadata field = <field>. */
void shop_rpc_reply_bad_field(shop_rpc_reply *r, const char *field, const char *why);
/* Adds one metadata entry (copied, truncated to fit); ignored past the max. */
void shop_rpc_reply_meta(shop_rpc_reply *r, const char *key, const char *val);

/* Packs the reply as an RpcResponse into a malloc'd buffer; caller frees
 * with free(). Returns 0 or -1 (out of memory). */
int shop_rpc_reply_pack(const shop_rpc_reply *r, uint8_t **out, size_t *out_len);

/* As shop_rpc_reply_pack, into the buffer alloc(arg, len) returns (NULL:
 * out of memory, -1 returned), so that a reply is packed straight into a
 * message of the transport's. *out_len is the length packed. */
int shop_rpc_reply_pack_with(const shop_rpc_reply *r, uint8_t *(*alloc)(void *arg, size_t len),
			     void *arg, size_t *out_len);

/* Looks up a metadata value in an unpacked response; NULL when absent.
 * Borrowed from resp. */
const char *shop_rpc_response_meta(const Shop__V1__RpcResponse *resp, const char *key);

#endif
