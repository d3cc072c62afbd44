/* transcode.c -- JSON <-> protobuf by descriptor reflection, with a strict
 * JSON reader that keeps numbers exact. */
#include "transcode.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

/* ---- strict JSON reader -------------------------------------------------- */

typedef struct jreader {
	const char *p, *end;
	int depth;
} jreader;

static cJSON *read_value(jreader *r);

static void skip_ws(jreader *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0. */
static size_t utf8_seq(const unsigned char *s, const unsigned char *end)
{
	uint32_t cp;
	size_t n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	if ((size_t)(end - s) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static int hex4(const char *s, uint32_t *out)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++) {
		char c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Reads a string token (r->p at the opening quote) into a malloc'd,
 * NUL-terminated buffer; NULL when malformed. Decoded text is never longer
 * than its escaped form, so one buffer of the token's length suffices. */
static char *read_string(jreader *r)
{
	const char *start = ++r->p;
	char *buf, *o;

	while (r->p < r->end && *r->p != '"') {
		if (*r->p == '\\' && r->p + 1 < r->end)
			r->p++;
		r->p++;
	}
	if (r->p >= r->end)
		return NULL;
	buf = malloc((size_t)(r->p - start) + 1);
	if (buf == NULL)
		return NULL;
	o = buf;
	for (const char *s = start; s < r->p;) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20)
			goto bad;
		if (c != '\\') {
			size_t n = utf8_seq((const unsigned char *)s, (const unsigned char *)r->p);

			if (n == 0)
				goto bad;
			memcpy(o, s, n);
			o += n;
			s += n;
			continue;
		}
		s++;
		switch (*s) {
		case '"':
		case '\\':
		case '/':
			*o++ = *s++;
			break;
		case 'b':
			*o++ = '\b', s++;
			break;
		case 'f':
			*o++ = '\f', s++;
			break;
		case 'n':
			*o++ = '\n', s++;
			break;
		case 'r':
			*o++ = '\r', s++;
			break;
		case 't':
			*o++ = '\t', s++;
			break;
		case 'u': {
			uint32_t cp, lo;

			if (r->p - s < 5 || hex4(s + 1, &cp) != 0)
				goto bad;
			s += 5;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (r->p - s < 6 || s[0] != '\\' || s[1] != 'u' ||
				    hex4(s + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
					goto bad;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				s += 6;
			} else if ((cp >= 0xdc00 && cp <= 0xdfff) || cp == 0) {
				/* A lone low surrogate is not text; NUL cannot live in a
				 * C or protobuf-c string. */
				goto bad;
			}
			o += put_utf8(o, cp);
			break;
		}
		default:
			goto bad;
		}
	}
	*o = '\0';
	r->p++; /* the closing quote */
	return buf;
bad:
	free(buf);
	return NULL;
}

static cJSON *read_number(jreader *r)
{
	const char *s = r->p;
	char *text;
	cJSON *item;

	if (r->p < r->end && *r->p == '-')
		r->p++;
	if (r->p >= r->end)
		return NULL;
	if (*r->p == '0') {
		r->p++;
	} else if (*r->p >= '1' && *r->p <= '9') {
		while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
			r->p++;
	} else {
		return NULL;
	}
	if (r->p < r->end && *r->p == '.') {
		r->p++;
		if (r->p >= r->end || *r->p < '0' || *r->p > '9')
			return NULL;
		while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
			r->p++;
	}
	if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
		r->p++;
		if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
			r->p++;
		if (r->p >= r->end || *r->p < '0' || *r->p > '9')
			return NULL;
		while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
			r->p++;
	}
	text = strndup(s, (size_t)(r->p - s));
	if (text == NULL)
		return NULL;
	item = cJSON_CreateRaw(text);
	free(text);
	return item;
}

static bool read_literal(jreader *r, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n) != 0)
		return false;
	r->p += n;
	return true;
}

static cJSON *read_container(jreader *r, bool object)
{
	cJSON *c = object ? cJSON_CreateObject() : cJSON_CreateArray();
	char close = object ? '}' : ']';

	if (c == NULL || ++r->depth > GW_JSON_MAX_DEPTH)
		goto bad;
	r->p++;
	skip_ws(r);
	if (r->p < r->end && *r->p == close) {
		r->p++;
		r->depth--;
		return c;
	}
	for (;;) {
		char *key = NULL;
		cJSON *v;

		skip_ws(r);
		if (object) {
			if (r->p >= r->end || *r->p != '"' || (key = read_string(r)) == NULL)
				goto bad;
			skip_ws(r);
			if (r->p >= r->end || *r->p != ':') {
				free(key);
				goto bad;
			}
			r->p++;
		}
		v = read_value(r);
		if (v == NULL) {
			free(key);
			goto bad;
		}
		if (object)
			cJSON_AddItemToObject(c, key, v);
		else
			cJSON_AddItemToArray(c, v);
		free(key);
		skip_ws(r);
		if (r->p < r->end && *r->p == ',') {
			r->p++;
			continue;
		}
		if (r->p < r->end && *r->p == close) {
			r->p++;
			break;
		}
		goto bad;
	}
	r->depth--;
	return c;
bad:
	cJSON_Delete(c);
	return NULL;
}

static cJSON *read_value(jreader *r)
{
	skip_ws(r);
	if (r->p >= r->end)
		return NULL;
	switch (*r->p) {
	case '{':
		return read_container(r, true);
	case '[':
		return read_container(r, false);
	case '"': {
		char *s = read_string(r);
		cJSON *item = s != NULL ? cJSON_CreateString(s) : NULL;

		free(s);
		return item;
	}
	case 't':
		return read_literal(r, "true") ? cJSON_CreateTrue() : NULL;
	case 'f':
		return read_literal(r, "false") ? cJSON_CreateFalse() : NULL;
	case 'n':
		return read_literal(r, "null") ? cJSON_CreateNull() : NULL;
	default:
		return read_number(r);
	}
}

cJSON *gw_json_parse(const char *text, size_t len)
{
	jreader r = {.p = text, .end = text + len};
	cJSON *v;

	/* A UTF-8 byte order mark is not JSON (RFC 8259 §8.1 lets us refuse it). */
	v = read_value(&r);
	if (v == NULL)
		return NULL;
	skip_ws(&r);
	if (r.p != r.end) {
		cJSON_Delete(v);
		return NULL;
	}
	return v;
}

/* ---- JSON -> protobuf ----------------------------------------------------- */

static int fail(gw_tc_error *err, enum gw_tc_err kind, const char *path)
{
	err->kind = kind;
	snprintf(err->field, sizeof(err->field), "%s", path);
	return -1;
}

static size_t elem_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		return 4;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return 0;
}

/* Parses a JSON number's text as an integer in [min, max] exactly: no
 * fraction, no exponent, no double in between. */
static int parse_int_text(const char *s, bool is_unsigned, int64_t min, uint64_t max, uint64_t *mag,
			  bool *neg)
{
	uint64_t v = 0;

	*neg = false;
	if (*s == '-') {
		*neg = true;
		s++;
	}
	if (*s == '\0')
		return GW_TC_INTEGER;
	for (const char *c = s; *c != '\0'; c++)
		if (*c < '0' || *c > '9')
			return GW_TC_INTEGER;
	for (; *s != '\0'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return GW_TC_RANGE;
		v = v * 10 + d;
	}
	if (*neg && v != 0) {
		if (is_unsigned || v > (uint64_t)INT64_MAX + 1 || v > (uint64_t)(-(min + 1)) + 1)
			return GW_TC_RANGE;
	} else if (v > max) {
		return GW_TC_RANGE;
	}
	*mag = v;
	return GW_TC_OK;
}

static int read_scalar(const ProtobufCFieldDescriptor *f, const cJSON *v, void *slot,
		       const char *path, gw_tc_error *err)
{
	int64_t smin = 0;
	uint64_t smax = 0, mag;
	bool is_unsigned = false, neg;
	int rc;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		smin = INT32_MIN, smax = INT32_MAX;
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		smin = INT64_MIN, smax = INT64_MAX;
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		is_unsigned = true, smax = UINT32_MAX;
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		is_unsigned = true, smax = UINT64_MAX;
		break;
	case PROTOBUF_C_TYPE_BOOL:
		if (!cJSON_IsBool(v))
			return fail(err, GW_TC_BOOL, path);
		*(protobuf_c_boolean *)slot = cJSON_IsTrue(v) ? 1 : 0;
		return 0;
	case PROTOBUF_C_TYPE_STRING: {
		char *s;

		if (!cJSON_IsString(v))
			return fail(err, GW_TC_STRING, path);
		if ((s = strdup(v->valuestring)) == NULL)
			return fail(err, GW_TC_MALFORMED, path);
		*(char **)slot = s;
		return 0;
	}
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE: {
		double d;
		char *end;

		if (!cJSON_IsRaw(v))
			return fail(err, GW_TC_NUMBER, path);
		errno = 0;
		d = strtod(v->valuestring, &end);
		if (*end != '\0' || !isfinite(d) || errno == ERANGE ||
		    (f->type == PROTOBUF_C_TYPE_FLOAT && fabs(d) > 3.4028234663852886e38))
			return fail(err, GW_TC_RANGE, path);
		if (f->type == PROTOBUF_C_TYPE_FLOAT)
			*(float *)slot = (float)d;
		else
			*(double *)slot = d;
		return 0;
	}
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumDescriptor *ed = f->descriptor;
		const ProtobufCEnumValue *ev = NULL;

		if (cJSON_IsString(v)) {
			ev = protobuf_c_enum_descriptor_get_value_by_name(ed, v->valuestring);
		} else if (cJSON_IsRaw(v) && parse_int_text(v->valuestring, false, INT32_MIN,
							    INT32_MAX, &mag, &neg) == GW_TC_OK) {
			int32_t n = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;

			ev = protobuf_c_enum_descriptor_get_value(ed, n);
		}
		if (ev == NULL)
			return fail(err, GW_TC_ENUM, path);
		*(int *)slot = ev->value;
		return 0;
	}
	case PROTOBUF_C_TYPE_MESSAGE:
	case PROTOBUF_C_TYPE_BYTES:
		return fail(err, GW_TC_UNSUPPORTED, path);
	}
	if (!cJSON_IsRaw(v))
		return fail(err, GW_TC_INTEGER, path);
	rc = parse_int_text(v->valuestring, is_unsigned, smin, smax, &mag, &neg);
	if (rc != GW_TC_OK)
		return fail(err, (enum gw_tc_err)rc, path);
	if (elem_size(f->type) == 4) {
		if (is_unsigned)
			*(uint32_t *)slot = (uint32_t)mag;
		else
			*(int32_t *)slot = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;
	} else if (is_unsigned) {
		*(uint64_t *)slot = mag;
	} else {
		/* -(2^63) has no positive int64: negate in unsigned arithmetic. */
		*(int64_t *)slot = neg ? (int64_t)(0 - mag) : (int64_t)mag;
	}
	return 0;
}

static int build_message(const cJSON *json, const ProtobufCMessageDescriptor *d,
			 ProtobufCMessage **out, char *path, size_t path_len, gw_tc_error *err);

/* One value (a singular field or an array element) into slot. */
static int read_one(const ProtobufCFieldDescriptor *f, const cJSON *v, void *slot, char *path,
		    size_t path_len, gw_tc_error *err)
{
	if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
		ProtobufCMessage *sub;

		if (build_message(v, f->descriptor, &sub, path, path_len, err) != 0)
			return -1;
		*(ProtobufCMessage **)slot = sub;
		return 0;
	}
	return read_scalar(f, v, slot, path, err);
}

static int read_field(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const cJSON *v,
		      char *path, size_t path_len, gw_tc_error *err)
{
	char *base = (char *)m;
	size_t plen = strlen(path);

	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		size_t n = (size_t)cJSON_GetArraySize(v), esz = elem_size(f->type), i = 0;
		size_t *count = (size_t *)(base + f->quantifier_offset);
		void **arr = (void **)(base + f->offset);
		const cJSON *e;

		if (!cJSON_IsArray(v))
			return fail(err, GW_TC_ARRAY, path);
		if (n == 0)
			return 0;
		if ((*arr = calloc(n, esz)) == NULL)
			return fail(err, GW_TC_MALFORMED, path);
		/* The count grows with each element read, so that freeing after a
		 * failure frees exactly what was filled. */
		cJSON_ArrayForEach(e, v)
		{
			snprintf(path + plen, path_len - plen, "[%zu]", i);
			if (cJSON_IsNull(e))
				return fail(err,
					    f->type == PROTOBUF_C_TYPE_MESSAGE  ? GW_TC_NOT_OBJECT
					    : f->type == PROTOBUF_C_TYPE_STRING ? GW_TC_STRING
										: GW_TC_INTEGER,
					    path);
			if (read_one(f, e, (char *)*arr + i * esz, path, path_len, err) != 0)
				return -1;
			*count = ++i;
		}
		path[plen] = '\0';
		return 0;
	}
	if (f->type == PROTOBUF_C_TYPE_STRING) {
		char *s = NULL;
		char **slot = (char **)(base + f->offset);

		if (read_scalar(f, v, &s, path, err) != 0)
			return -1;
		if (*slot != NULL && *slot != (const char *)f->default_value)
			free(*slot);
		*slot = s;
	} else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
		ProtobufCMessage **slot = (ProtobufCMessage **)(base + f->offset);

		protobuf_c_message_free_unpacked(*slot, NULL);
		*slot = NULL;
		if (read_one(f, v, slot, path, path_len, err) != 0)
			return -1;
	} else if (read_scalar(f, v, base + f->offset, path, err) != 0) {
		return -1;
	}
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		*(uint32_t *)(base + f->quantifier_offset) = f->id;
	else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
		 f->type != PROTOBUF_C_TYPE_MESSAGE && f->quantifier_offset != 0)
		*(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
	return 0;
}

static int build_message(const cJSON *json, const ProtobufCMessageDescriptor *d,
			 ProtobufCMessage **out, char *path, size_t path_len, gw_tc_error *err)
{
	ProtobufCMessage *m;
	size_t plen = strlen(path);

	*out = NULL;
	if (!cJSON_IsObject(json))
		return fail(err, GW_TC_NOT_OBJECT, path);
	if ((m = malloc(d->sizeof_message)) == NULL)
		return fail(err, GW_TC_MALFORMED, path);
	d->message_init(m);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, f->name);

		if (v == NULL || cJSON_IsNull(v))
			continue; /* absent or null: the field's default */
		snprintf(path + plen, path_len - plen, "%s%s", plen ? "." : "", f->name);
		if (read_field(m, f, v, path, path_len, err) != 0) {
			protobuf_c_message_free_unpacked(m, NULL);
			return -1;
		}
		path[plen] = '\0';
	}
	*out = m;
	return 0;
}

int gw_json_to_message(const cJSON *json, const ProtobufCMessageDescriptor *d,
		       ProtobufCMessage **out, gw_tc_error *err)
{
	char path[sizeof(err->field)] = "";

	err->kind = GW_TC_OK;
	err->field[0] = '\0';
	return build_message(json, d, out, path, sizeof(path), err);
}

int gw_body_to_message(const char *body, size_t len, const ProtobufCMessageDescriptor *d,
		       ProtobufCMessage **out, gw_tc_error *err)
{
	cJSON *json = gw_json_parse(body, len);
	int rc;

	*out = NULL;
	if (json == NULL) {
		err->kind = GW_TC_MALFORMED;
		err->field[0] = '\0';
		return -1;
	}
	rc = gw_json_to_message(json, d, out, err);
	cJSON_Delete(json);
	return rc;
}

/* ---- protobuf -> JSON ----------------------------------------------------- */

static cJSON *int_json(int64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	return cJSON_CreateRaw(buf);
}

static cJSON *uint_json(uint64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return cJSON_CreateRaw(buf);
}

static cJSON *base64_json(const ProtobufCBinaryData *b)
{
	static const char tbl[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *s = malloc((b->len + 2) / 3 * 4 + 1), *o = s;
	cJSON *item;

	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < b->len; i += 3) {
		uint32_t v = (uint32_t)b->data[i] << 16;

		if (i + 1 < b->len)
			v |= (uint32_t)b->data[i + 1] << 8;
		if (i + 2 < b->len)
			v |= b->data[i + 2];
		*o++ = tbl[(v >> 18) & 63];
		*o++ = tbl[(v >> 12) & 63];
		*o++ = i + 1 < b->len ? tbl[(v >> 6) & 63] : '=';
		*o++ = i + 2 < b->len ? tbl[v & 63] : '=';
	}
	*o = '\0';
	item = cJSON_CreateString(s);
	free(s);
	return item;
}

static cJSON *value_json(const ProtobufCFieldDescriptor *f, const void *slot)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return int_json(*(const int32_t *)slot);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return uint_json(*(const uint32_t *)slot);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return int_json(*(const int64_t *)slot);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return uint_json(*(const uint64_t *)slot);
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE: {
		double d =
		    f->type == PROTOBUF_C_TYPE_FLOAT ? *(const float *)slot : *(const double *)slot;

		return isfinite(d) ? cJSON_CreateNumber(d) : cJSON_CreateNull();
	}
	case PROTOBUF_C_TYPE_BOOL:
		return cJSON_CreateBool(*(const protobuf_c_boolean *)slot);
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)slot;
		const ProtobufCEnumValue *ev =
		    protobuf_c_enum_descriptor_get_value(f->descriptor, v);

		return ev != NULL ? cJSON_CreateString(ev->name) : int_json(v);
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)slot;

		return cJSON_CreateString(s != NULL ? s : "");
	}
	case PROTOBUF_C_TYPE_BYTES:
		return base64_json((const ProtobufCBinaryData *)slot);
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)slot;

		return m != NULL ? gw_message_to_json(m) : cJSON_CreateNull();
	}
	}
	return cJSON_CreateNull();
}

cJSON *gw_message_to_json(const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	const char *base = (const char *)msg;
	cJSON *obj = cJSON_CreateObject();

	if (obj == NULL)
		return NULL;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		cJSON *v;

		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue; /* only the member of a oneof that is set */
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			const char *arr = *(char *const *)(base + f->offset);
			size_t esz = elem_size(f->type);

			if ((v = cJSON_CreateArray()) == NULL)
				goto oom;
			for (size_t k = 0; k < n; k++) {
				cJSON *e = value_json(f, arr + k * esz);

				if (e == NULL || !cJSON_AddItemToArray(v, e)) {
					cJSON_Delete(e);
					cJSON_Delete(v);
					goto oom;
				}
			}
		} else {
			v = value_json(f, base + f->offset);
		}
		if (v == NULL)
			goto oom;
		if (!cJSON_AddItemToObject(obj, f->name, v)) {
			cJSON_Delete(v);
			goto oom;
		}
	}
	return obj;
oom:
	cJSON_Delete(obj);
	return NULL;
}

/* ---- protobuf -> JSON text, written directly --------------------------------
 *
 * The same text as cJSON_PrintUnformatted(gw_message_to_json(msg)) —
 * the unit tests and fuzz_transcode hold the two to byte equality — but
 * written into one growing buffer instead of a tree of one allocation per
 * value printed afterwards: the answer of GET /products was half of the
 * gateway's instructions per request that way (docs/performance.md). */

static void jb_u64(shop_buf *b, uint64_t v)
{
	char buf[24], *o = buf + sizeof(buf);

	do {
		*--o = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	shop_buf_put(b, o, (size_t)(buf + sizeof(buf) - o));
}

static void jb_i64(shop_buf *b, int64_t v)
{
	if (v < 0) {
		shop_buf_put(b, "-", 1);
		jb_u64(b, (uint64_t)0 - (uint64_t)v);
	} else {
		jb_u64(b, (uint64_t)v);
	}
}

/* A JSON string as cJSON 1.7 prints it: " and \ escaped, \b \f \n \r \t
 * by name, other bytes below 0x20 as \u00xx, everything else as is. */
static void jb_str(shop_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const char *run = s;

	shop_buf_put(b, "\"", 1);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
		size_t n = 2;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		shop_buf_put(b, run, (size_t)(s - run));
		run = s + 1;
		switch (c) {
		case '"':
		case '\\':
			esc[1] = (char)c;
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			n = 6;
		}
		shop_buf_put(b, esc, n);
	}
	shop_buf_put(b, run, (size_t)(s - run));
	shop_buf_put(b, "\"", 1);
}

/* A value that goes through cJSON (floating point, bytes): rare, and
 * printed by cJSON itself so that the text stays the same. */
static void jb_cjson(shop_buf *b, cJSON *item)
{
	char *text;

	if (item == NULL || (text = cJSON_PrintUnformatted(item)) == NULL) {
		b->oom = true;
		cJSON_Delete(item);
		return;
	}
	shop_buf_puts(b, text);
	free(text);
	cJSON_Delete(item);
}

static void jb_message(shop_buf *b, const ProtobufCMessage *msg);

static void jb_value(shop_buf *b, const ProtobufCFieldDescriptor *f, const void *slot)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		jb_i64(b, *(const int32_t *)slot);
		return;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		jb_u64(b, *(const uint32_t *)slot);
		return;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		jb_i64(b, *(const int64_t *)slot);
		return;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		jb_u64(b, *(const uint64_t *)slot);
		return;
	case PROTOBUF_C_TYPE_BOOL:
		shop_buf_puts(b, *(const protobuf_c_boolean *)slot ? "true" : "false");
		return;
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)slot;
		const ProtobufCEnumValue *ev =
		    protobuf_c_enum_descriptor_get_value(f->descriptor, v);

		if (ev != NULL)
			jb_str(b, ev->name);
		else
			jb_i64(b, v);
		return;
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)slot;

		jb_str(b, s != NULL ? s : "");
		return;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)slot;

		if (m != NULL)
			jb_message(b, m);
		else
			shop_buf_puts(b, "null");
		return;
	}
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE:
	case PROTOBUF_C_TYPE_BYTES:
		jb_cjson(b, value_json(f, slot));
		return;
	}
	shop_buf_puts(b, "null");
}

/* The fields in descriptor order, as gw_message_to_json. */
static void jb_message(shop_buf *b, const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	const char *base = (const char *)msg;
	bool first = true;

	shop_buf_put(b, "{", 1);
	for (unsigned i = 0; i < d->n_fields && !b->oom; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];

		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		/* The separator and the key in one append: a proto field name
		 * is an identifier (letters, digits, '_'), which JSON needs no
		 * escape for. */
		size_t len = strlen(f->name), n = 0;
		char key[80];

		if (len + 4 <= sizeof(key)) {
			if (!first)
				key[n++] = ',';
			key[n++] = '"';
			memcpy(key + n, f->name, len);
			n += len;
			key[n++] = '"';
			key[n++] = ':';
			shop_buf_put(b, key, n);
		} else {
			if (!first)
				shop_buf_put(b, ",", 1);
			jb_str(b, f->name);
			shop_buf_put(b, ":", 1);
		}
		first = false;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			const char *arr = *(char *const *)(base + f->offset);
			size_t esz = elem_size(f->type);

			shop_buf_put(b, "[", 1);
			for (size_t k = 0; k < n && !b->oom; k++) {
				if (k > 0)
					shop_buf_put(b, ",", 1);
				jb_value(b, f, arr + k * esz);
			}
			shop_buf_put(b, "]", 1);
		} else {
			jb_value(b, f, base + f->offset);
		}
	}
	shop_buf_put(b, "}", 1);
}

char *gw_message_to_json_text(const ProtobufCMessage *msg)
{
	shop_buf b = {0};

	jb_message(&b, msg);
	return shop_buf_take(&b);
}

int gw_message_to_json_buf(const ProtobufCMessage *msg, shop_buf *b)
{
	b->len = 0;
	b->oom = false;
	if (b->p != NULL)
		b->p[0] = '\0';
	jb_message(b, msg);
	return b->oom || b->p == NULL ? -1 : 0;
}

const ProtobufCFieldDescriptor *gw_message_field(const ProtobufCMessageDescriptor *d,
						 const char *field, ProtobufCType type)
{
	const ProtobufCFieldDescriptor *f =
	    d != NULL && field != NULL ? protobuf_c_message_descriptor_get_field_by_name(d, field)
				       : NULL;

	if (f == NULL || f->type != type || f->label == PROTOBUF_C_LABEL_REPEATED ||
	    (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
		return NULL;
	return f;
}

int gw_message_set_int64_at(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, int64_t v)
{
	if (f == NULL || f->type != PROTOBUF_C_TYPE_INT64)
		return -1;
	*(int64_t *)((char *)msg + f->offset) = v;
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0)
		*(protobuf_c_boolean *)((char *)msg + f->quantifier_offset) = 1;
	return 0;
}

int gw_message_set_string_at(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
			     const char *v)
{
	char **slot, *s;

	if (f == NULL || f->type != PROTOBUF_C_TYPE_STRING || (s = strdup(v)) == NULL)
		return -1;
	slot = (char **)((char *)msg + f->offset);
	if (*slot != NULL && *slot != (const char *)f->default_value)
		free(*slot);
	*slot = s;
	return 0;
}

int gw_message_get_int64_at(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
			    int64_t *v)
{
	if (f == NULL || f->type != PROTOBUF_C_TYPE_INT64)
		return -1;
	*v = *(const int64_t *)((const char *)msg + f->offset);
	return 0;
}

int gw_message_set_int64(ProtobufCMessage *msg, const char *field, int64_t v)
{
	return gw_message_set_int64_at(
	    msg, gw_message_field(msg->descriptor, field, PROTOBUF_C_TYPE_INT64), v);
}

int gw_message_set_string(ProtobufCMessage *msg, const char *field, const char *v)
{
	return gw_message_set_string_at(
	    msg, gw_message_field(msg->descriptor, field, PROTOBUF_C_TYPE_STRING), v);
}

int gw_message_get_int64(const ProtobufCMessage *msg, const char *field, int64_t *v)
{
	return gw_message_get_int64_at(
	    msg, gw_message_field(msg->descriptor, field, PROTOBUF_C_TYPE_INT64), v);
}
