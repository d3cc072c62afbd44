/* rpc.c -- the RPC envelope: status code names, building a reply and packing
 * it into an RpcResponse. */
#include "rpc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

const char *shop_rpc_code_name(int code)
{
	switch (code) {
	case SHOP_RPC_OK:
		return "OK";
	case SHOP_RPC_CANCELLED:
		return "CANCELLED";
	case SHOP_RPC_UNKNOWN:
		return "UNKNOWN";
	case SHOP_RPC_INVALID_ARGUMENT:
		return "INVALID_ARGUMENT";
	case SHOP_RPC_DEADLINE_EXCEEDED:
		return "DEADLINE_EXCEEDED";
	case SHOP_RPC_NOT_FOUND:
		return "NOT_FOUND";
	case SHOP_RPC_ALREADY_EXISTS:
		return "ALREADY_EXISTS";
	case SHOP_RPC_PERMISSION_DENIED:
		return "PERMISSION_DENIED";
	case SHOP_RPC_RESOURCE_EXHAUSTED:
		return "RESOURCE_EXHAUSTED";
	case SHOP_RPC_FAILED_PRECONDITION:
		return "FAILED_PRECONDITION";
	case 10:
		return "ABORTED";
	case 11:
		return "OUT_OF_RANGE";
	case SHOP_RPC_UNIMPLEMENTED:
		return "UNIMPLEMENTED";
	case SHOP_RPC_INTERNAL:
		return "INTERNAL";
	case SHOP_RPC_UNAVAILABLE:
		return "UNAVAILABLE";
	case 15:
		return "DATA_LOSS";
	case SHOP_RPC_UNAUTHENTICATED:
		return "UNAUTHENTICATED";
	default:
		return "UNKNOWN";
	}
}

void shop_rpc_reply_init(shop_rpc_reply *r)
{
	memset(r, 0, sizeof(*r));
	r->code = SHOP_RPC_OK;
}

void shop_rpc_reply_fini(shop_rpc_reply *r)
{
	if (r == NULL)
		return;
	free(r->payload);
	shop_rpc_reply_init(r);
}

/* Makes r an OK reply with a payload buffer of len bytes, returned to be
 * filled; NULL (and r INTERNAL) when out of memory. */
static uint8_t *reply_ok_payload(shop_rpc_reply *r, size_t len)
{
	/* malloc(0) may return NULL; one spare byte keeps "no memory" unambiguous. */
	uint8_t *buf = malloc(len + 1);

	free(r->payload);
	r->payload = NULL;
	r->payload_len = 0;
	if (buf == NULL) {
		SHOP_LOG(ERROR, "rpc: out of memory for a %zu-byte reply", len);
		shop_rpc_reply_error(r, SHOP_RPC_INTERNAL, "INTERNAL", "out of memory");
		return NULL;
	}
	r->payload_len = len;
	r->payload = buf;
	r->code = SHOP_RPC_OK;
	r->dependency_failed = false;
	r->message[0] = '\0';
	r->reason[0] = '\0';
	return buf;
}

int shop_rpc_reply_ok(shop_rpc_reply *r, const ProtobufCMessage *msg)
{
	uint8_t *buf = reply_ok_payload(r, protobuf_c_message_get_packed_size(msg));

	if (buf == NULL)
		return -1;
	r->payload_len = protobuf_c_message_pack(msg, buf);
	return 0;
}

int shop_rpc_reply_ok_bytes(shop_rpc_reply *r, const uint8_t *packed, size_t len)
{
	uint8_t *buf = reply_ok_payload(r, len);

	if (buf == NULL)
		return -1;
	if (len > 0)
		memcpy(buf, packed, len);
	return 0;
}

static void reply_verror(shop_rpc_reply *r, int code, bool dependency, const char *reason,
			 const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static void reply_verror(shop_rpc_reply *r, int code, bool dependency, const char *reason,
			 const char *fmt, va_list ap)
{
	/* An error carries no payload (RpcResponse.payload is for code 0). */
	free(r->payload);
	r->payload = NULL;
	r->payload_len = 0;
	r->code = code;
	r->dependency_failed = dependency;
	snprintf(r->reason, sizeof(r->reason), "%s", reason != NULL ? reason : "");
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
}

void shop_rpc_reply_error(shop_rpc_reply *r, int code, const char *reason, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_verror(r, code, false, reason, fmt, ap);
	va_end(ap);
}

void shop_rpc_reply_dependency_error(shop_rpc_reply *r, int code, const char *reason,
				     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_verror(r, code, true, reason, fmt, ap);
	va_end(ap);
}

void shop_rpc_reply_meta(shop_rpc_reply *r, const char *key, const char *val)
{
	size_t i;

	if (key == NULL || val == NULL)
		return;
	/* metadata is a map: a repeated key replaces the earlier value. */
	for (i = 0; i < r->n_meta; i++)
		if (strncmp(r->meta_key[i], key, sizeof(r->meta_key[i]) - 1) == 0)
			break;
	if (i == SHOP_RPC_MAX_META)
		return;
	snprintf(r->meta_key[i], sizeof(r->meta_key[i]), "%s", key);
	snprintf(r->meta_val[i], sizeof(r->meta_val[i]), "%s", val);
	if (i == r->n_meta)
		r->n_meta++;
}

int shop_rpc_reply_pack_with(const shop_rpc_reply *r, uint8_t *(*alloc)(void *arg, size_t len),
			     void *arg, size_t *out_len)
{
	Shop__V1__RpcResponse resp = SHOP__V1__RPC_RESPONSE__INIT;
	Shop__V1__RpcResponse__MetadataEntry entries[SHOP_RPC_MAX_META];
	Shop__V1__RpcResponse__MetadataEntry *ptrs[SHOP_RPC_MAX_META];
	size_t n = r->n_meta < SHOP_RPC_MAX_META ? r->n_meta : SHOP_RPC_MAX_META;
	size_t len;
	uint8_t *buf;

	/* The response only borrows r's buffers: protobuf-c packs from const
	 * data, the casts just match the generated struct's field types. */
	for (size_t i = 0; i < n; i++) {
		shop__v1__rpc_response__metadata_entry__init(&entries[i]);
		entries[i].key = (char *)r->meta_key[i];
		entries[i].value = (char *)r->meta_val[i];
		ptrs[i] = &entries[i];
	}
	resp.code = r->code;
	resp.message = (char *)r->message;
	resp.reason = (char *)r->reason;
	resp.dependency_failed = r->dependency_failed && r->code != SHOP_RPC_OK;
	resp.payload.data = r->payload;
	resp.payload.len = r->payload != NULL ? r->payload_len : 0;
	resp.n_metadata = n;
	resp.metadata = n > 0 ? ptrs : NULL;

	len = shop__v1__rpc_response__get_packed_size(&resp);
	if ((buf = alloc(arg, len)) == NULL) {
		SHOP_LOG(ERROR, "rpc: out of memory packing a %zu-byte RpcResponse", len);
		return -1;
	}
	*out_len = shop__v1__rpc_response__pack(&resp, buf);
	return 0;
}

/* malloc(0) may return NULL; one spare byte keeps "no memory" unambiguous. */
static uint8_t *pack_malloc(void *arg, size_t len)
{
	uint8_t **out = arg;

	return *out = malloc(len + 1);
}

int shop_rpc_reply_pack(const shop_rpc_reply *r, uint8_t **out, size_t *out_len)
{
	return shop_rpc_reply_pack_with(r, pack_malloc, out, out_len);
}

const char *shop_rpc_response_meta(const Shop__V1__RpcResponse *resp, const char *key)
{
	if (resp == NULL || key == NULL)
		return NULL;
	for (size_t i = 0; i < resp->n_metadata; i++) {
		const Shop__V1__RpcResponse__MetadataEntry *e = resp->metadata[i];

		if (e != NULL && e->key != NULL && strcmp(e->key, key) == 0)
			return e->value;
	}
	return NULL;
}

void shop_rpc_reply_bad_field(shop_rpc_reply *r, const char *field, const char *why)
{
	shop_rpc_reply_error(r, SHOP_RPC_INVALID_ARGUMENT, "INVALID_ARGUMENT", "%s %s", field, why);
	shop_rpc_reply_meta(r, "field", field);
}
