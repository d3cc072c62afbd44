/* survey.c -- the registry's survey side: a SURVEYOR socket that instances
 * dial; a thread that surveys them once a period (and at once when one
 * connects) and puts their answers (adverts) into the table. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/survey0/survey.h>

#include "advert_check.h"
#include "registry.h"
#include "registry.pb-c.h"
#include "rpc_client.h"

static void on_pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	registry *r = arg;

	pthread_mutex_lock(&r->mtx);
	if (!r->stopping) {
		if (ev == NNG_PIPE_EV_ADD_POST) {
			if (reg_table_pipe_add(r->table, nng_pipe_id(p)) != 0)
				SHOP_LOG(WARN, "out of memory: answers on pipe %d will be ignored",
					 nng_pipe_id(p));
			r->survey_soon = true;
			pthread_cond_signal(&r->cv);
		} else if (ev == NNG_PIPE_EV_REM_POST) {
			reg_table_pipe_remove(r->table, (uint32_t)nng_pipe_id(p));
		}
	}
	pthread_mutex_unlock(&r->mtx);
}

static int survey_send(registry *r, uint64_t seq)
{
	Shop__V1__Survey sv = SHOP__V1__SURVEY__INIT;
	nng_msg *msg;
	int rv;

	sv.seq = seq;
	sv.sent_unix_ms = shop_now_unix_ms();
	if ((rv = nng_msg_alloc(&msg, shop__v1__survey__get_packed_size(&sv))) != 0)
		return rv;
	shop__v1__survey__pack(&sv, nng_msg_body(msg));
	if ((rv = nng_sendmsg(r->surv, msg, 0)) != 0)
		nng_msg_free(msg); /* still ours on failure */
	return rv;
}

/* Logs a refused advert, the offending value made visible (log.h). */
static void survey_log_refusal(uint32_t pipe, shop_advert_fault why, const shop_instance *in)
{
	const char *field = why > SHOP_ADVERT_TOO_LONG ? shop_advert_field(in, why) : NULL;
	char shown[200];

	if (field == NULL) {
		SHOP_LOG(WARN,
			 "pipe %u: advert refused (%s; see the safe form in docs/decisions.md); "
			 "its next answers are refused silently",
			 pipe, shop_advert_fault_name(why));
		return;
	}
	shop_log_visible(shown, sizeof(shown), field);
	SHOP_LOG(WARN,
		 "pipe %u: advert refused: %s \"%s\" is not in the safe form (docs/decisions.md); "
		 "its next answers are refused silently",
		 pipe, shop_advert_fault_name(why), shown);
}

/* One answer to the running survey: into the table when it is an Advert
 * in the safe form (advert_check.h), else refused, counted and logged
 * once per pipe. */
static void survey_take(registry *r, nng_msg *msg)
{
	uint32_t pipe = (uint32_t)nng_pipe_id(nng_msg_get_pipe(msg));
	shop_advert_fault why;
	Shop__V1__Advert *ad;
	shop_instance in;
	bool first;

	if ((ad = shop__v1__advert__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg))) == NULL) {
		why = SHOP_ADVERT_UNPARSABLE;
	} else {
		why = shop_instance_from_advert(&in, ad) ? shop_advert_check(&in)
							 : SHOP_ADVERT_TOO_LONG;
		shop__v1__advert__free_unpacked(ad, NULL);
	}
	pthread_mutex_lock(&r->mtx);
	if (why != SHOP_ADVERT_OK) {
		first = reg_table_refuse(r->table, pipe, why);
		pthread_mutex_unlock(&r->mtx);
		if (first)
			survey_log_refusal(pipe, why, &in);
		return;
	}
	if (reg_table_upsert(r->table, &in, pipe, now_ms()) == REG_UPSERT_IGNORED &&
	    reg_table_count(r->table) >= REG_TABLE_MAX_INSTANCES)
		SHOP_LOG(WARN, "table full (%d instances): %s not added", REG_TABLE_MAX_INSTANCES,
			 in.instance);
	pthread_mutex_unlock(&r->mtx);
}

/* Survey, collect answers until the survey times out, wait for the next
 * tick; until the socket closes. */
void *survey_main(void *arg)
{
	registry *r = arg;
	struct timespec tick;
	uint64_t seq = 0;
	bool early = false; /* this round is an early one (a new pipe's) */
	nng_msg *msg;
	int rv;

	clock_gettime(CLOCK_MONOTONIC, &tick);
	for (;;) {
		pthread_mutex_lock(&r->mtx);
		if (r->stopping) {
			pthread_mutex_unlock(&r->mtx);
			break;
		}
		/* Only regular rounds count misses: an instance is dropped after
		 * SHOP_REGISTRY_MISSES regular surveys, never sooner because
		 * peers connected meanwhile. An early round's answers count as
		 * answers. */
		if (!early)
			reg_table_survey_begin(r->table);
		pthread_mutex_unlock(&r->mtx);
		/* Between rounds, so that the first answer holds everything
		 * the last round heard. */
		if (!r->lookups_open && now_ms() >= r->lookups_from_ms) {
			lookup_open(r);
			__atomic_store_n(&r->lookups_open, true, __ATOMIC_RELEASE);
		} else if (r->lookups_open) {
			lookup_heal(r);
		}

		/* The stop times its close from this (registry_stop). */
		pthread_mutex_lock(&r->mtx);
		if (r->stopping) {
			pthread_mutex_unlock(&r->mtx);
			break;
		}
		r->survey_sent_ms = now_ms();
		pthread_mutex_unlock(&r->mtx);
		if ((rv = survey_send(r, ++seq)) == NNG_ECLOSED)
			break;
		if (rv != 0)
			SHOP_LOG(WARN, "survey %llu: send: %s", (unsigned long long)seq,
				 nng_strerror(rv));
		/* NNG_ETIMEDOUT ends the round; NNG_ESTATE means no survey is
		 * running (the send failed). */
		while (rv == 0 && (rv = nng_recvmsg(r->surv, &msg, 0)) == 0) {
			survey_take(r, msg);
			nng_msg_free(msg);
		}
		if (rv == NNG_ECLOSED)
			break;

		/* The next regular round: one period after the last regular
		 * one began, or, after an early round (which overran that
		 * tick), one period after the early round ended, so that
		 * regular rounds are never closer than a period. */
		if (early)
			clock_gettime(CLOCK_MONOTONIC, &tick);
		tick.tv_nsec += (long)(r->survey_ms % 1000) * 1000000L;
		tick.tv_sec += r->survey_ms / 1000 + tick.tv_nsec / 1000000000L;
		tick.tv_nsec %= 1000000000L;
		pthread_mutex_lock(&r->mtx);
		rv = 0;
		while (!r->stopping && !(r->survey_soon && !r->early_used) &&
		       (rv = pthread_cond_timedwait(&r->cv, &r->mtx, &tick)) != ETIMEDOUT)
			;
		/* A regular tick allows one early round again; an early round
		 * uses it up (the regular round after it is placed above). */
		early = false;
		if (rv == ETIMEDOUT) {
			r->early_used = false;
		} else if (r->survey_soon && !r->early_used) {
			r->early_used = true;
			early = true;
		}
		r->survey_soon = false;
		pthread_mutex_unlock(&r->mtx);
		/* Fell behind (a stalled machine): restart the schedule from now
		 * rather than firing a burst of catch-up surveys. */
		{
			struct timespec now;

			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > tick.tv_sec + 1)
				tick = now;
		}
	}
	return NULL;
}

int survey_start(registry *r, const registry_config *c)
{
	/* Answers must be in before the next survey replaces this one. */
	int survey_time = c->survey_ms - (c->survey_ms / 10 > 5 ? c->survey_ms / 10 : 5);
	int rv;

	if ((rv = nng_surveyor0_open(&r->surv)) != 0)
		return rv;
	/* The survey time, not a receive timeout, ends a round. */
	if ((rv = shop_nng_socket_defaults(r->surv)) != 0 ||
	    (rv = nng_socket_set_ms(r->surv, NNG_OPT_RECVTIMEO, NNG_DURATION_INFINITE)) != 0 ||
	    (rv = nng_socket_set_ms(r->surv, NNG_OPT_SURVEYOR_SURVEYTIME, survey_time)) != 0 ||
	    (rv = nng_pipe_notify(r->surv, NNG_PIPE_EV_ADD_POST, on_pipe_event, r)) != 0 ||
	    (rv = nng_pipe_notify(r->surv, NNG_PIPE_EV_REM_POST, on_pipe_event, r)) != 0)
		return rv;
	if ((rv = shop_listen_keeper_start(&r->surv_keeper, r->surv, c->survey_url, "survey",
					   c->listen_probe_ms)) != 0)
		SHOP_LOG(ERROR, "listen %s (SHOP_REGISTRY_SURVEY_URL): %s", c->survey_url,
			 nng_strerror(rv));
	return rv;
}

void survey_stop(registry *r, bool thread_started)
{
	int64_t quiet_at; /* then how long until then */

	shop_listen_keeper_stop(r->surv_keeper);
	pthread_mutex_lock(&r->mtx);
	r->stopping = true; /* no survey leaves after this */
	pthread_cond_signal(&r->cv);
	/* Closing a pipe while an answer is arriving on it can hang nng
	 * 1.5.2's close for good (docs/decisions.md, "nng 1.5.2 defects").
	 * Answers come within milliseconds of a survey: close once the last
	 * one is a third of a period old (at most 150 ms). */
	quiet_at = r->survey_sent_ms + (r->survey_ms / 3 < 150 ? r->survey_ms / 3 : 150);
	pthread_mutex_unlock(&r->mtx);
	quiet_at -= now_ms();
	if (r->survey_sent_ms > 0 && quiet_at > 0)
		nanosleep(&(struct timespec){0, quiet_at * 1000000L}, NULL);
	/* Closing aborts a survey in progress (its receive gets NNG_ECLOSED). */
	nng_close(r->surv);
	if (thread_started)
		pthread_join(r->survey_thread, NULL);
	shop_listen_keeper_destroy(r->surv_keeper);
	r->surv_keeper = NULL;
}
