/* fields.h -- HTTP field lines (RFC 9110 §5): the limit on a request's header
 * section and the values the gateway may write into an answer's. Pure code. */
#ifndef GW_FIELDS_H
#define GW_FIELDS_H

#include <stdbool.h>
#include <stddef.h>

/* Largest header section served (CONTRACT §2): its field lines counted as
 * "name: value" CRLF each; more is 431. The request line is not part of it. */
#define GW_MAX_HEADER_SECTION 8192

/* Bytes libwebsockets may store of one request line and its field lines
 * (its max_http_header_data): room above GW_MAX_HEADER_SECTION so that the
 * gateway, not lws, decides about blocks near the limit. lws stores a field
 * it does not know as 8 bytes plus name, colon and value, so 16 KiB holds
 * any 8 KiB block whose field lines are at least 6 bytes ("a: b" CRLF). */
#define GW_LWS_HEADER_SPACE 16384

/* The size one field line counts for: name (without colon), ": ", value,
 * CRLF. */
size_t gw_field_line_size(size_t name_len, size_t value_len);

/* True when v may be sent as a field value: no control character (below
 * 0x20 but HTAB, or DEL), so that no value can end a field line or inject
 * one. NULL is false. */
bool gw_field_value_writable(const char *v);

/* Writes into out the i-th spelling of name followed by whitespace and a
 * colon, lower-case as lws stores an unknown field name ("transfer-encoding
 * :", "transfer-encoding\t:", ...): 1 to 3 characters of SP or HTAB, 14
 * spellings (i = 0..13). Returns the length written, or -1 when i is out of
 * range or out is too small. */
int gw_field_name_spaced(const char *name, unsigned i, char *out, size_t cap);

/* How many spellings gw_field_name_spaced has. */
#define GW_FIELD_NAME_SPACED_COUNT 14u

#endif
