/* transcode.h -- generic JSON <-> protobuf by descriptor reflection.
 *
 * Field names are the proto field names. Integer fields take JSON integers
 * only, checked exactly against their range (the text is parsed as an
 * integer, never through a double); strings take JSON strings, repeated
 * fields arrays, messages objects. Unknown JSON fields are ignored, null is
 * the field's default. On output every field is written, zero values and
 * empty arrays included, 64-bit integers as JSON numbers. Pure code. */
#ifndef GW_TRANSCODE_H
#define GW_TRANSCODE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <protobuf-c/protobuf-c.h>

#include "strbuf.h"

/* Why a request body was refused; every kind is a 400 invalid_argument. */
enum gw_tc_err {
	GW_TC_OK = 0,
	GW_TC_MALFORMED,  /* not JSON (or not UTF-8, or nested too deep) */
	GW_TC_NOT_OBJECT, /* the body (or field) must be an object */
	GW_TC_INTEGER,    /* field must be an integer */
	GW_TC_RANGE,      /* integer out of the field's range */
	GW_TC_NUMBER,     /* field must be a number */
	GW_TC_STRING,     /* field must be a string */
	GW_TC_BOOL,       /* field must be true or false */
	GW_TC_ARRAY,      /* field must be an array */
	GW_TC_ENUM,       /* not a value of the enum */
	GW_TC_UNSUPPORTED /* field type the gateway does not transcode */
};

typedef struct gw_tc_error {
	enum gw_tc_err kind;
	char field[128]; /* "product_ids[3]", "items[0].name"; "" for the body */
} gw_tc_error;

/* Largest nesting of arrays and objects gw_json_parse accepts. */
#define GW_JSON_MAX_DEPTH 32

/* Parses len bytes of strict JSON (RFC 8259, UTF-8) into a cJSON tree.
 * Numbers become cJSON_Raw items holding their exact text, so that no
 * precision is lost; strings with \u0000 or bad UTF-8 are refused.
 * Returns the tree (caller frees with cJSON_Delete) or NULL. */
cJSON *gw_json_parse(const char *text, size_t len);

/* Builds a message of type d from a JSON object. Returns 0 and *out
 * (caller frees with protobuf_c_message_free_unpacked(*out, NULL)), or -1
 * with err filled and *out NULL. */
int gw_json_to_message(const cJSON *json, const ProtobufCMessageDescriptor *d,
		       ProtobufCMessage **out, gw_tc_error *err);

/* Parses and transcodes a request body in one go (gw_json_parse +
 * gw_json_to_message). */
int gw_body_to_message(const char *body, size_t len, const ProtobufCMessageDescriptor *d,
		       ProtobufCMessage **out, gw_tc_error *err);

/* The JSON object for msg (caller frees with cJSON_Delete), or NULL when
 * out of memory. */
cJSON *gw_message_to_json(const ProtobufCMessage *msg);

/* gw_message_to_json printed without spaces; caller frees with free().
 * NULL when out of memory. */
char *gw_message_to_json_text(const ProtobufCMessage *msg);

/* gw_message_to_json_text into b, emptied first and reused (its capacity
 * kept: a per-connection buffer). 0, or -1 when out of memory. */
int gw_message_to_json_buf(const ProtobufCMessage *msg, shop_buf *b);

/* The singular (not repeated, not oneof) field of d named field, of type
 * type; NULL when there is none. Looked up once (per route at start-up),
 * then used by the _at functions below on every request. */
const ProtobufCFieldDescriptor *gw_message_field(const ProtobufCMessageDescriptor *d,
						 const char *field, ProtobufCType type);
/* Set / read the field f (from gw_message_field, of msg's type) of msg;
 * 0, or -1 when f is NULL or not of that type (strings are copied). */
int gw_message_set_int64_at(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, int64_t v);
int gw_message_set_string_at(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
			     const char *v);
int gw_message_get_int64_at(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
			    int64_t *v);

/* Sets a singular int64/string field by name (path ids, client address).
 * Returns 0, or -1 when the message has no such field of that type. */
int gw_message_set_int64(ProtobufCMessage *msg, const char *field, int64_t v);
int gw_message_set_string(ProtobufCMessage *msg, const char *field, const char *v);
/* Reads a singular int64 field by name; 0 or -1 as above. */
int gw_message_get_int64(const ProtobufCMessage *msg, const char *field, int64_t *v);

#endif
