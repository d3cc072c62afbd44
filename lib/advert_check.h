/* advert_check.h -- the safe form of an advert's fields: what the registry
 * admits into its table and what a registry view keeps from a lookup.
 *
 * Names and URLs in adverts end up in HTTP headers (X-Served-By), metric
 * labels, logs and JSON; the safe form admits only characters that are
 * inert in all of them, so no later writer depends on its own escaping:
 *
 *   service, instance  an RFC 1123 label in lower case: 1-63 of [a-z0-9-],
 *                      first and last a letter or digit ("product-a");
 *                      a service name at most 31 (shop_instance holds 31)
 *   rpc_url            tcp://HOST:PORT or tls+tcp://HOST:PORT
 *   admin_url          http://HOST:PORT or https://HOST:PORT, optionally
 *                      followed by a path prefix of "/" and [A-Za-z0-9._~-]
 *   HOST               a DNS host name (dot-separated labels of [A-Za-z0-9-],
 *                      1-63 each, no label starting or ending with "-",
 *                      at most 253 in all), a dotted IPv4 address (no
 *                      leading zeros), or an IPv6 address in brackets
 *   PORT               1-65535, decimal, no leading zero
 *   version            0-31 of [A-Za-z0-9._+-] (informational: may be empty)
 *   weight             0-1000000 (SHOP_WEIGHT's range)
 *   started_unix_ms    not negative */
#ifndef SHOP_ADVERT_CHECK_H
#define SHOP_ADVERT_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "registry_client.h"

/* Why an advert is refused. The names (shop_advert_fault_name) are the
 * values of the registry's refusal counter's "reason" label: a fixed set,
 * never a value taken from the advert. */
typedef enum {
	SHOP_ADVERT_OK,
	SHOP_ADVERT_UNPARSABLE, /* not a protobuf Advert at all */
	SHOP_ADVERT_TOO_LONG,   /* a field longer than shop_instance holds */
	SHOP_ADVERT_SERVICE,
	SHOP_ADVERT_INSTANCE,
	SHOP_ADVERT_RPC_URL,
	SHOP_ADVERT_ADMIN_URL,
	SHOP_ADVERT_VERSION,
	SHOP_ADVERT_WEIGHT,
	SHOP_ADVERT_STARTED, /* started_unix_ms */
	SHOP_ADVERT_N_FAULTS
} shop_advert_fault;

/* The largest weight an advert may carry. */
#define SHOP_ADVERT_MAX_WEIGHT 1000000

/* "ok", "unparsable", "too_long", "service", "instance", "rpc_url",
 * "admin_url", "version", "weight", "started_unix_ms"; "?" out of range.
 * Static strings. */
const char *shop_advert_fault_name(shop_advert_fault f);

/* The first field of in (a filled shop_instance) not in the safe form, or
 * SHOP_ADVERT_OK. */
shop_advert_fault shop_advert_check(const shop_instance *in);

/* The string field that fault f is about (in's service for
 * SHOP_ADVERT_SERVICE...), for a log line; NULL for a fault that names no
 * string field. Borrowed from in. */
const char *shop_advert_field(const shop_instance *in, shop_advert_fault f);

/* The parts, for configuration checks (SHOP_INSTANCE, SHOP_RPC_URL). */
bool shop_advert_name_ok(const char *s, size_t max_len);
bool shop_advert_rpc_url_ok(const char *s);
bool shop_advert_admin_url_ok(const char *s);
/* host:port with HOST and PORT as above (SHOP_ADMIN_ADDR's form). */
bool shop_advert_hostport_ok(const char *s, size_t len);

#endif
