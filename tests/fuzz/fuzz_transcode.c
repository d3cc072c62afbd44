/* fuzz_transcode.c -- libFuzzer target: the gateway's JSON -> protobuf
 * transcoding (edge-gateway/transcode.c) for every proxied route's request
 * message, and protobuf -> JSON for every route's request and response
 * message.
 *
 * Input: byte 0 picks the direction (bit 7) and the route (the rest); the
 * other bytes are a request body, or a serialized message. Besides "no
 * sanitizer report", two properties are checked: a body that transcodes prints
 * back to JSON that transcodes to the same message (same packed bytes), so
 * that what the gateway forwards is what the client meant; and the direct
 * JSON writer prints byte for byte what cJSON prints of the message's tree. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "transcode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The packed form of m (caller frees), or NULL. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
	uint8_t *buf;

	*len = protobuf_c_message_get_packed_size(m);
	if ((buf = malloc(*len + 1)) == NULL)
		return NULL;
	if (protobuf_c_message_pack(m, buf) != *len)
		abort();
	return buf;
}

/* JSON -> message -> JSON -> message: both messages pack alike. */
static void json_round_trip(const gw_route *r, const char *body, size_t len)
{
	ProtobufCMessage *m = NULL, *again = NULL;
	uint8_t *p1 = NULL, *p2 = NULL;
	size_t n1, n2;
	gw_tc_error err;
	char *text = NULL;

	if (gw_body_to_message(body, len, r->req_desc, &m, &err) != 0) {
		if (m != NULL || err.kind == GW_TC_OK)
			abort(); /* a refusal must say why and leave nothing behind */
		return;
	}
	/* What the gateway adds from the path and headers. */
	if ((r->id_field != NULL && gw_message_set_int64(m, r->id_field, 1) != 0) ||
	    (r->client_address && gw_message_set_string(m, "client_address", "10.0.0.1") != 0) ||
	    (r->idempotency_key && gw_message_set_string(m, "idempotency_key", "k-1") != 0))
		abort(); /* the route table names a field its message lacks */
	if ((text = gw_message_to_json_text(m)) == NULL)
		goto out;
	if (gw_body_to_message(text, strlen(text), r->req_desc, &again, &err) != 0)
		abort(); /* the gateway's own output does not read back */
	if ((p1 = pack(m, &n1)) == NULL || (p2 = pack(again, &n2)) == NULL)
		goto out;
	if (n1 != n2 || memcmp(p1, p2, n1) != 0)
		abort();
out:
	free(p2);
	free(p1);
	free(text);
	protobuf_c_message_free_unpacked(again, NULL);
	protobuf_c_message_free_unpacked(m, NULL);
}

/* Bytes -> message -> JSON, as the gateway answers an upstream's reply. */
static void message_to_json(const ProtobufCMessageDescriptor *d, const uint8_t *in, size_t len)
{
	ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, in);
	char *text, *want;
	cJSON *tree;

	if (m == NULL)
		return;
	if ((text = gw_message_to_json_text(m)) == NULL)
		abort(); /* only out of memory may fail, and the fuzzer has memory */
	/* The direct writer must print exactly what cJSON prints of the tree. */
	tree = gw_message_to_json(m);
	if (tree == NULL || (want = cJSON_PrintUnformatted(tree)) == NULL ||
	    strcmp(text, want) != 0)
		abort();
	free(want);
	cJSON_Delete(tree);
	free(text);
	protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const gw_route *routes, *proxied[16];
	size_t n, n_proxied = 0;

	if (size < 1)
		return 0;
	routes = gw_routes(&n);
	for (size_t i = 0; i < n && n_proxied < 16; i++)
		if (routes[i].kind == GW_ROUTE_PROXY && routes[i].req_desc != NULL)
			proxied[n_proxied++] = &routes[i];
	if (n_proxied == 0)
		abort();
	if ((data[0] & 0x80) == 0) {
		json_round_trip(proxied[data[0] % n_proxied], (const char *)data + 1, size - 1);
	} else {
		const gw_route *r = proxied[(data[0] & 0x7f) / 2 % n_proxied];
		const ProtobufCMessageDescriptor *d = (data[0] & 1) ? r->resp_desc : r->req_desc;

		if (d != NULL)
			message_to_json(d, data + 1, size - 1);
	}
	return 0;
}
