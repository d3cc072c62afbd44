/* upstream_bridge.c -- the nng-thread → lws-thread completion queue. */
#include "upstream_bridge.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

enum job_state {
	JOB_IN_FLIGHT, /* the upstream call is running */
	JOB_QUEUED,    /* answered, waiting in the queue for the lws thread */
	JOB_DELIVERED, /* handed to its session, which frees it */
};

struct gw_job {
	gw_bridge *bridge;
	void *session;
	enum job_state state; /* under bridge->mu until delivered */
	bool abandoned;       /* under bridge->mu */
	int rv;
	Shop__V1__RpcResponse *resp;
	char instance[64];
	gw_job *next;
};

struct gw_bridge {
	struct lws_context *ctx;
	shop_upstream *up;
	gw_bridge_deliver_fn deliver;
	pthread_mutex_t mu;
	gw_job *head, *tail; /* completion queue, FIFO */
};

int gw_bridge_create(gw_bridge **out, struct lws_context *ctx, shop_upstream *up,
		     gw_bridge_deliver_fn deliver)
{
	gw_bridge *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NNG_ENOMEM;
	b->ctx = ctx;
	b->up = up;
	b->deliver = deliver;
	pthread_mutex_init(&b->mu, NULL);
	*out = b;
	return 0;
}

static void job_free(gw_job *job)
{
	if (job->resp != NULL)
		shop__v1__rpc_response__free_unpacked(job->resp, NULL);
	free(job);
}

void gw_bridge_destroy(gw_bridge *b)
{
	if (b == NULL)
		return;
	while (b->head != NULL) {
		gw_job *j = b->head;

		b->head = j->next;
		job_free(j);
	}
	pthread_mutex_destroy(&b->mu);
	free(b);
}

/* nng thread: store, queue, wake. Never blocks beyond the short mutex. */
static void on_done(void *arg, int rv, Shop__V1__RpcResponse *resp, const char *instance)
{
	gw_job *job = arg;
	gw_bridge *b = job->bridge;
	bool free_it = false, wake = false;

	pthread_mutex_lock(&b->mu);
	job->rv = rv;
	job->resp = resp;
	snprintf(job->instance, sizeof(job->instance), "%s", instance != NULL ? instance : "");
	if (job->abandoned) {
		free_it = true;
	} else {
		job->state = JOB_QUEUED;
		job->next = NULL;
		/* Only the first job of an empty queue wakes the lws thread:
		 * its drain takes the whole queue, with any job queued behind
		 * this one before it runs. */
		wake = b->head == NULL;
		if (b->tail != NULL)
			b->tail->next = job;
		else
			b->head = job;
		b->tail = job;
	}
	pthread_mutex_unlock(&b->mu);
	if (free_it)
		job_free(job);
	else if (wake)
		lws_cancel_service(b->ctx);
}

int gw_bridge_call(gw_bridge *b, void *session, const char *service, const char *method,
		   const ProtobufCMessage *req, const shop_rpc_call_opts *o, gw_job **out)
{
	gw_job *job = calloc(1, sizeof(*job));
	int rv;

	*out = NULL;
	if (job == NULL)
		return NNG_ENOMEM;
	job->bridge = b;
	job->session = session;
	job->state = JOB_IN_FLIGHT;
	/* The session must know its job before the completion can possibly be
	 * drained; the drain runs on this (lws) thread, so setting *out before
	 * returning is enough even when done runs before the call returns. */
	*out = job;
	rv = shop_upstream_call(b->up, service, method, req, o, on_done, job);
	if (rv != 0) {
		*out = NULL;
		free(job);
	}
	return rv;
}

void gw_bridge_drain(gw_bridge *b)
{
	gw_job *list;

	pthread_mutex_lock(&b->mu);
	list = b->head;
	b->head = b->tail = NULL;
	for (gw_job *j = list; j != NULL; j = j->next)
		j->state = JOB_DELIVERED;
	pthread_mutex_unlock(&b->mu);
	/* Sessions are abandoned only on this thread, so no flag can change
	 * under us from here on. */
	while (list != NULL) {
		gw_job *j = list;

		list = j->next;
		j->next = NULL;
		if (j->abandoned)
			job_free(j);
		else
			b->deliver(j->session, j);
	}
}

void gw_bridge_job_abandon(gw_bridge *b, gw_job *job)
{
	bool free_it = false;

	if (job == NULL)
		return;
	pthread_mutex_lock(&b->mu);
	if (job->state == JOB_DELIVERED)
		free_it = true; /* the session owned it already */
	else
		job->abandoned = true; /* the completion or the drain frees it */
	pthread_mutex_unlock(&b->mu);
	if (free_it)
		job_free(job);
}

int gw_job_rv(const gw_job *job)
{
	return job->rv;
}

const Shop__V1__RpcResponse *gw_job_response(const gw_job *job)
{
	return job->resp;
}

const char *gw_job_instance(const gw_job *job)
{
	return job->instance;
}

void gw_bridge_job_free(gw_job *job)
{
	if (job != NULL)
		job_free(job);
}
