/* hash_gate.c -- admission of password hashing: admit what can finish before
 * its deadline, run it in arrival order, refuse the rest at once. */
#include "hash_gate.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

/* Kept free of a hash's deadline for what follows it (the INSERT of a
 * sign-up, the reply's way back). */
#define GATE_MARGIN_US 50000
#define CLIENT_KEY_MAX 64

struct client_share {
	char addr[CLIENT_KEY_MAX]; /* "" when the entry is free */
	unsigned n;                /* admitted hashes of this client */
};

struct auth_hash_gate {
	auth_hash_gate_config cfg;
	pthread_mutex_t mtx;
	pthread_cond_t cv; /* a hash ended, or the head ticket moved */
	unsigned running, waiting;
	uint64_t next_ticket; /* the next admitted hash's ticket */
	uint64_t head;        /* the ticket whose turn it is */
	int64_t est_us;       /* moving average of one hash */
	/* Refusals in the current second: a burst's size, for Retry-After. */
	int64_t window_start_us;
	unsigned refused_in_window;
	/* At most max_admitted clients hold a share at once: one entry each. */
	struct client_share *clients;
};

auth_hash_gate *auth_hash_gate_create(const auth_hash_gate_config *c)
{
	auth_hash_gate *g;

	if (c == NULL || c->concurrency < 1 || c->max_admitted < c->concurrency)
		return NULL;
	if ((g = calloc(1, sizeof(*g))) == NULL)
		return NULL;
	if ((g->clients = calloc(c->max_admitted, sizeof(*g->clients))) == NULL) {
		free(g);
		return NULL;
	}
	g->cfg = *c;
	g->est_us = c->initial_hash_us > 0 ? c->initial_hash_us : 1000;
	pthread_mutex_init(&g->mtx, NULL);
	pthread_cond_init(&g->cv, NULL);
	return g;
}

void auth_hash_gate_destroy(auth_hash_gate *g)
{
	if (g == NULL)
		return;
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->mtx);
	free(g->clients);
	free(g);
}

/* The client's entry, or NULL when it holds no share. Under g->mtx. */
static struct client_share *share_find(auth_hash_gate *g, const char *addr)
{
	for (unsigned i = 0; i < g->cfg.max_admitted; i++)
		if (g->clients[i].n > 0 && strcmp(g->clients[i].addr, addr) == 0)
			return &g->clients[i];
	return NULL;
}

/* A free entry for addr; there is one whenever fewer than max_admitted
 * hashes are admitted. Under g->mtx. */
static struct client_share *share_claim(auth_hash_gate *g, const char *addr)
{
	for (unsigned i = 0; i < g->cfg.max_admitted; i++)
		if (g->clients[i].n == 0) {
			snprintf(g->clients[i].addr, sizeof(g->clients[i].addr), "%s", addr);
			return &g->clients[i];
		}
	return NULL;
}

/* Microseconds until a hash admitted now would end: the rounds of
 * `concurrency` hashes ahead of it, then its own. Under g->mtx. */
static int64_t finish_in_us(const auth_hash_gate *g)
{
	unsigned ahead = g->running + g->waiting;

	return (int64_t)(ahead / g->cfg.concurrency + 1) * g->est_us;
}

/* Seconds after which a refused call may be admitted: the admitted work
 * drains, and so does the rest of the burst it came in (each refused call
 * of the last second will come back for its hash). Counts the refusal it is
 * computed for. Under g->mtx. */
static int refuse(auth_hash_gate *g)
{
	int64_t now = shop_now_mono_us(), us;

	if (now - g->window_start_us >= 1000000) {
		g->window_start_us = now;
		g->refused_in_window = 0;
	}
	g->refused_in_window++;
	us = finish_in_us(g) + (int64_t)g->refused_in_window * g->est_us / g->cfg.concurrency;
	us = (us + 999999) / 1000000;
	return us < 1 ? 1 : us > 60 ? 60 : (int)us;
}

/* Whether a hash of client's with that deadline is admitted now:
 * AUTH_GATE_RAN when it is (*share: the client's entry, NULL when it holds
 * none), else the refusal, counted, with *retry_after set. Under g->mtx. */
static auth_gate_result admission(auth_hash_gate *g, bool keyed, const char *client,
				  int64_t deadline_unix_ms, struct client_share **share,
				  int *retry_after)
{
	int64_t left_us;

	*share = NULL;
	if (keyed && (*share = share_find(g, client)) != NULL && (*share)->n >= g->cfg.per_client) {
		*retry_after = refuse(g);
		return AUTH_GATE_CLIENT_BUSY;
	}
	left_us = deadline_unix_ms > 0 ? (deadline_unix_ms - shop_now_unix_ms()) * 1000 : INT64_MAX;
	if (g->running + g->waiting >= g->cfg.max_admitted ||
	    finish_in_us(g) + GATE_MARGIN_US > left_us) {
		*retry_after = refuse(g);
		return AUTH_GATE_OVERLOADED;
	}
	return AUTH_GATE_RAN;
}

static bool keyed_client(const auth_hash_gate *g, const char *client)
{
	return client != NULL && client[0] != '\0' && g->cfg.per_client > 0;
}

auth_gate_result auth_hash_gate_check(auth_hash_gate *g, const char *client,
				      int64_t deadline_unix_ms, int *retry_after)
{
	struct client_share *share;
	auth_gate_result res;

	pthread_mutex_lock(&g->mtx);
	res = admission(g, keyed_client(g, client), client, deadline_unix_ms, &share, retry_after);
	pthread_mutex_unlock(&g->mtx);
	return res;
}

auth_gate_result auth_hash_gate_run(auth_hash_gate *g, const char *client, int64_t deadline_unix_ms,
				    int (*fn)(void *arg), void *arg, int *fn_rv, int *retry_after)
{
	struct client_share *share = NULL;
	bool keyed = keyed_client(g, client);
	auth_gate_result res;
	int64_t t0, dt;
	uint64_t ticket;

	pthread_mutex_lock(&g->mtx);
	if ((res = admission(g, keyed, client, deadline_unix_ms, &share, retry_after)) !=
	    AUTH_GATE_RAN) {
		pthread_mutex_unlock(&g->mtx);
		return res;
	}
	if (keyed && share == NULL)
		share = share_claim(g, client);
	if (share != NULL)
		share->n++;
	ticket = g->next_ticket++;
	g->waiting++;
	while (ticket != g->head || g->running >= g->cfg.concurrency)
		pthread_cond_wait(&g->cv, &g->mtx);
	g->head++;
	g->waiting--;
	pthread_cond_broadcast(&g->cv); /* the next ticket may start as well */
	/* Its turn came later than estimated: a hash whose answer nobody
	 * would wait for is not started. */
	if (deadline_unix_ms > 0 &&
	    (deadline_unix_ms - shop_now_unix_ms()) * 1000 < g->est_us + GATE_MARGIN_US) {
		if (share != NULL)
			share->n--;
		*retry_after = refuse(g);
		pthread_mutex_unlock(&g->mtx);
		return AUTH_GATE_OVERLOADED;
	}
	g->running++;
	pthread_mutex_unlock(&g->mtx);

	t0 = shop_now_mono_us();
	*fn_rv = fn(arg);
	dt = shop_now_mono_us() - t0;

	pthread_mutex_lock(&g->mtx);
	g->running--;
	/* A quarter of each new measure: follows a loaded machine within a
	 * few hashes, not thrown by one slow one. */
	g->est_us += (dt - g->est_us) / 4;
	if (g->est_us < 1)
		g->est_us = 1;
	if (share != NULL)
		share->n--;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mtx);
	return AUTH_GATE_RAN;
}

int64_t auth_hash_gate_estimate_us(auth_hash_gate *g)
{
	int64_t v;

	pthread_mutex_lock(&g->mtx);
	v = g->est_us;
	pthread_mutex_unlock(&g->mtx);
	return v;
}
