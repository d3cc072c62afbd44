/* registry_client.h -- an instance's side of discovery: the RESPONDENT
 * that answers the registry's surveys with this instance's Advert, and the
 * caller's cached view of the registry's lookups. */
#ifndef SHOP_REGISTRY_CLIENT_H
#define SHOP_REGISTRY_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

/* A plain copy of an Advert. */
typedef struct shop_instance {
	char service[32];
	char instance[64];
	char rpc_url[128];
	char admin_url[128];
	uint32_t weight;
	bool healthy;
	char version[32];
	int64_t started_unix_ms;
} shop_instance;

struct Shop__V1__Advert;
/* Advert -> shop_instance; false when a field is missing or too long to
 * hold (such an advert is refused, never truncated). */
bool shop_instance_from_advert(shop_instance *out, const struct Shop__V1__Advert *ad);

typedef struct shop_advertiser shop_advertiser;

/* Dials the registry's survey URL with a RESPONDENT socket and answers
 * every survey with self (copied). Returns 0 or an nng error. The registry
 * need not be up: the dialer retries in the background. */
int shop_advertiser_create(shop_advertiser **out, const char *survey_url,
			   const shop_instance *self);
/* Changes the healthy flag sent from the next survey on. */
void shop_advertiser_set_healthy(shop_advertiser *a, bool healthy);
/* 1 while a connection to the registry is up, else 0 (health: "away"). */
int shop_advertiser_connected(shop_advertiser *a);
/* Deregisters: closes the socket, so the registry drops the instance at
 * once. While connected it first waits for the next survey (at most the
 * last survey period + 100 ms, never over 1.5 s) and closes right after it,
 * away from the window where nng 1.5.2's close can hang. Accepts NULL. */
void shop_advertiser_destroy(shop_advertiser *a);

typedef struct shop_registry_view shop_registry_view;

/* Long-polls the registry's lookup URL for every service on a thread of
 * its own and keeps the last good answer: each lookup carries the revision
 * held, the registry answers as soon as its table changes (or after ~10 s),
 * and the next lookup leaves at once, so a join or a leave reaches the view
 * within milliseconds of the registry seeing it. refresh_ms (> 0) is the
 * pause before asking again after a failed lookup (registry down or not
 * answering) and, against a registry that answers at once without
 * holding (an older one, or one out of contexts), the polling interval.
 * When the registry is down the last answer stays in use. Returns 0 or an
 * nng error. */
int shop_registry_view_create(shop_registry_view **out, const char *lookup_url, int refresh_ms);
/* Stops the thread at once (a held lookup is abandoned). Accepts NULL. */
void shop_registry_view_destroy(shop_registry_view *v);

/* Copies up to cap instances of service (healthy ones only when
 * healthy_only) into out, ordered by instance name; returns the count. */
int shop_registry_view_get(shop_registry_view *v, const char *service, bool healthy_only,
			   shop_instance *out, int cap);
/* The revision of the last good answer; 0 before the first. */
uint64_t shop_registry_view_revision(shop_registry_view *v);
/* Milliseconds since the last good answer; -1 before the first. A held
 * lookup is answered at the latest ~10 s after the last, so up to ~10 s
 * means all is well; more means the registry is unreachable. */
int64_t shop_registry_view_age_ms(shop_registry_view *v);
/* 1 when the last lookup was answered (a held one may be in flight), 0
 * before the first answer and from a failed lookup or a closed connection
 * to the registry on, until one is answered again (health: "away"). */
int shop_registry_view_reachable(shop_registry_view *v);

#endif
