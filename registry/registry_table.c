/* registry_table.c -- the registry's table of live instances, and the JSON
 * and Prometheus views of it; no sockets, no clock, no lock. */
#include "registry_table.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "metrics.h"
#include "strbuf.h"

/* An open pipe, and whether a refused advert on it was logged already. */
typedef struct reg_pipe {
	uint32_t id;
	bool warned;
} reg_pipe;

typedef struct reg_entry {
	shop_instance ad;
	uint32_t pipe_id;     /* the pipe its last answer came through */
	int64_t last_seen_ms; /* registry monotonic clock */
	int misses;           /* surveys missed in a row */
	bool answered;        /* answered the survey now running */
} reg_entry;

struct reg_table {
	reg_entry *v; /* sorted by service, then instance */
	size_t n, cap;
	reg_pipe *pipes; /* open pipes, unordered */
	size_t npipes, pipes_cap;
	int max_misses;
	uint64_t revision;
	uint64_t joins, leaves_pipe, leaves_misses;
	uint64_t refused[SHOP_ADVERT_N_FAULTS]; /* adverts refused, by reason */
	reg_event_fn fn;
	void *arg;
};

int reg_table_create(reg_table **out, int max_misses, reg_event_fn fn, void *arg)
{
	reg_table *t;

	if (max_misses < 1)
		return EINVAL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return ENOMEM;
	t->max_misses = max_misses;
	t->revision = 1;
	t->fn = fn;
	t->arg = arg;
	*out = t;
	return 0;
}

void reg_table_destroy(reg_table *t)
{
	if (t == NULL)
		return;
	free(t->v);
	free(t->pipes);
	free(t);
}

static void table_emit(reg_table *t, reg_event ev, reg_leave_reason why, const shop_instance *in)
{
	if (t->fn != NULL)
		t->fn(t->arg, ev, why, in);
}

static int instance_cmp(const shop_instance *a, const shop_instance *b)
{
	int c = strcmp(a->service, b->service);

	return c != 0 ? c : strcmp(a->instance, b->instance);
}

static bool instance_same(const shop_instance *a, const shop_instance *b)
{
	return strcmp(a->service, b->service) == 0 && strcmp(a->instance, b->instance) == 0 &&
	       strcmp(a->rpc_url, b->rpc_url) == 0 && strcmp(a->admin_url, b->admin_url) == 0 &&
	       a->weight == b->weight && a->healthy == b->healthy &&
	       strcmp(a->version, b->version) == 0 && a->started_unix_ms == b->started_unix_ms;
}

static ssize_t table_find(const reg_table *t, const char *instance)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].ad.instance, instance) == 0)
			return (ssize_t)i;
	return -1;
}

static void table_remove_at(reg_table *t, size_t i)
{
	memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(t->v[0]));
	t->n--;
}

/* Inserts e at its sorted place; capacity must already be there. */
static void table_insert_sorted(reg_table *t, const reg_entry *e)
{
	size_t i = 0;

	while (i < t->n && instance_cmp(&t->v[i].ad, &e->ad) < 0)
		i++;
	memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof(t->v[0]));
	t->v[i] = *e;
	t->n++;
}

static int table_reserve(reg_table *t)
{
	reg_entry *nv;
	size_t ncap;

	if (t->n < t->cap)
		return 0;
	ncap = t->cap == 0 ? 16 : t->cap * 2;
	if ((nv = realloc(t->v, ncap * sizeof(*nv))) == NULL)
		return ENOMEM;
	t->v = nv;
	t->cap = ncap;
	return 0;
}

static reg_pipe *table_pipe(const reg_table *t, uint32_t pipe_id)
{
	for (size_t i = 0; i < t->npipes; i++)
		if (t->pipes[i].id == pipe_id)
			return &t->pipes[i];
	return NULL;
}

static bool table_pipe_known(const reg_table *t, uint32_t pipe_id)
{
	return table_pipe(t, pipe_id) != NULL;
}

int reg_table_pipe_add(reg_table *t, uint32_t pipe_id)
{
	if (table_pipe_known(t, pipe_id))
		return 0;
	if (t->npipes == t->pipes_cap) {
		size_t ncap = t->pipes_cap == 0 ? 16 : t->pipes_cap * 2;
		reg_pipe *np = realloc(t->pipes, ncap * sizeof(*np));

		if (np == NULL)
			return ENOMEM;
		t->pipes = np;
		t->pipes_cap = ncap;
	}
	t->pipes[t->npipes++] = (reg_pipe){.id = pipe_id};
	return 0;
}

int reg_table_pipe_remove(reg_table *t, uint32_t pipe_id)
{
	int dropped = 0;

	for (size_t i = 0; i < t->npipes; i++) {
		if (t->pipes[i].id == pipe_id) {
			t->pipes[i] = t->pipes[--t->npipes];
			break;
		}
	}
	for (size_t i = 0; i < t->n;) {
		if (t->v[i].pipe_id != pipe_id) {
			i++;
			continue;
		}
		shop_instance gone = t->v[i].ad;

		table_remove_at(t, i);
		t->revision++;
		t->leaves_pipe++;
		dropped++;
		table_emit(t, REG_EV_LEAVE, REG_LEAVE_PIPE_CLOSED, &gone);
	}
	return dropped;
}

reg_upsert_result reg_table_upsert(reg_table *t, const shop_instance *ad, uint32_t pipe_id,
				   int64_t now_ms)
{
	reg_entry e = {.ad = *ad, .pipe_id = pipe_id, .last_seen_ms = now_ms, .answered = true};
	ssize_t i;

	/* The caller refuses (and counts) adverts outside the safe form
	 * before this; checked again so that none can enter the table. */
	if (shop_advert_check(ad) != SHOP_ADVERT_OK || !table_pipe_known(t, pipe_id))
		return REG_UPSERT_IGNORED;
	if ((i = table_find(t, ad->instance)) >= 0) {
		reg_entry *cur = &t->v[i];

		if (instance_same(&cur->ad, ad)) {
			cur->pipe_id = pipe_id;
			cur->last_seen_ms = now_ms;
			cur->answered = true;
			return REG_UPSERT_UNCHANGED;
		}
		/* Re-sort: the service, part of the order, may have changed. */
		table_remove_at(t, (size_t)i);
		table_insert_sorted(t, &e);
		t->revision++;
		table_emit(t, REG_EV_UPDATE, REG_LEAVE_NONE, &e.ad);
		return REG_UPSERT_UPDATED;
	}
	if (t->n >= REG_TABLE_MAX_INSTANCES || table_reserve(t) != 0)
		return REG_UPSERT_IGNORED;
	table_insert_sorted(t, &e);
	t->revision++;
	t->joins++;
	table_emit(t, REG_EV_JOIN, REG_LEAVE_NONE, &e.ad);
	return REG_UPSERT_JOINED;
}

bool reg_table_refuse(reg_table *t, uint32_t pipe_id, shop_advert_fault why)
{
	reg_pipe *p = table_pipe(t, pipe_id);
	bool first = p != NULL && !p->warned;

	if ((unsigned)why < SHOP_ADVERT_N_FAULTS)
		t->refused[why]++;
	if (p != NULL)
		p->warned = true;
	return first;
}

int reg_table_survey_begin(reg_table *t)
{
	int dropped = 0;

	for (size_t i = 0; i < t->n;) {
		reg_entry *e = &t->v[i];

		e->misses = e->answered ? 0 : e->misses + 1;
		e->answered = false;
		if (e->misses < t->max_misses) {
			i++;
			continue;
		}
		shop_instance gone = e->ad;

		table_remove_at(t, i);
		t->revision++;
		t->leaves_misses++;
		dropped++;
		table_emit(t, REG_EV_LEAVE, REG_LEAVE_MISSES, &gone);
	}
	return dropped;
}

uint64_t reg_table_revision(const reg_table *t)
{
	return t->revision;
}

size_t reg_table_count(const reg_table *t)
{
	return t->n;
}

static bool service_matches(const char *want, const shop_instance *in)
{
	return want == NULL || want[0] == '\0' || strcmp(want, in->service) == 0;
}

int reg_table_lookup(const reg_table *t, const char *service, shop_instance **out, size_t *n,
		     uint64_t *revision)
{
	shop_instance *v = NULL;
	size_t cnt = 0;

	for (size_t i = 0; i < t->n; i++)
		if (service_matches(service, &t->v[i].ad))
			cnt++;
	if (cnt > 0 && (v = malloc(cnt * sizeof(*v))) == NULL)
		return ENOMEM;
	cnt = 0;
	for (size_t i = 0; i < t->n; i++)
		if (service_matches(service, &t->v[i].ad))
			v[cnt++] = t->v[i].ad;
	*out = v;
	*n = cnt;
	*revision = t->revision;
	return 0;
}

/* Hands a finished cJSON tree out as a malloc'd string; frees the tree. */
static int json_finish(cJSON *root, char **body, size_t *len)
{
	char *s = cJSON_PrintUnformatted(root);

	cJSON_Delete(root);
	if (s == NULL)
		return ENOMEM;
	*body = s;
	*len = strlen(s);
	return 0;
}

static int json_add_instance(cJSON *o, const shop_instance *in)
{
	if (cJSON_AddStringToObject(o, "service", in->service) == NULL ||
	    cJSON_AddStringToObject(o, "instance", in->instance) == NULL ||
	    cJSON_AddStringToObject(o, "rpc_url", in->rpc_url) == NULL ||
	    cJSON_AddStringToObject(o, "admin_url", in->admin_url) == NULL ||
	    cJSON_AddNumberToObject(o, "weight", in->weight) == NULL ||
	    cJSON_AddBoolToObject(o, "healthy", in->healthy) == NULL ||
	    cJSON_AddStringToObject(o, "version", in->version) == NULL ||
	    cJSON_AddNumberToObject(o, "started_unix_ms", (double)in->started_unix_ms) == NULL)
		return ENOMEM;
	return 0;
}

int reg_table_services_json(const reg_table *t, int64_t now_ms, char **body, size_t *len)
{
	cJSON *root, *o;

	if ((root = cJSON_CreateArray()) == NULL)
		return ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		const reg_entry *e = &t->v[i];
		int64_t age = now_ms - e->last_seen_ms;

		if ((o = cJSON_CreateObject()) == NULL)
			goto out_root;
		cJSON_AddItemToArray(root, o);
		if (json_add_instance(o, &e->ad) != 0 ||
		    cJSON_AddNumberToObject(o, "last_seen_ms_ago", (double)(age < 0 ? 0 : age)) ==
			NULL)
			goto out_root;
	}
	return json_finish(root, body, len);

out_root:
	cJSON_Delete(root);
	return ENOMEM;
}

int reg_admin_target(const char *admin_url, char *hostport, size_t hostport_cap, char *scheme,
		     size_t scheme_cap, char *metrics_path, size_t path_cap)
{
	const char *sep = strstr(admin_url, "://");
	const char *auth, *path;
	size_t slen, alen, plen;

	if (sep == NULL)
		return -1;
	slen = (size_t)(sep - admin_url);
	if (!((slen == 4 && strncmp(admin_url, "http", 4) == 0) ||
	      (slen == 5 && strncmp(admin_url, "https", 5) == 0)))
		return -1;
	auth = sep + 3;
	alen = strcspn(auth, "/?#");
	path = auth + alen;
	if (alen == 0 || memchr(auth, '@', alen) != NULL || strpbrk(path, "?#") != NULL)
		return -1;
	plen = strlen(path);
	while (plen > 0 && path[plen - 1] == '/')
		plen--;
	if (slen >= scheme_cap || alen >= hostport_cap || plen + sizeof("/metrics") > path_cap)
		return -1;
	memcpy(scheme, admin_url, slen);
	scheme[slen] = '\0';
	memcpy(hostport, auth, alen);
	hostport[alen] = '\0';
	memcpy(metrics_path, path, plen);
	memcpy(metrics_path + plen, "/metrics", sizeof("/metrics"));
	return 0;
}

/* {"targets":["h:p"],"labels":{"service":..,"instance":..,"__metrics_path__":..}} */
static cJSON *prometheus_group(const shop_instance *in)
{
	char hostport[sizeof(in->admin_url)], scheme[8], path[sizeof(in->admin_url) + 16];
	cJSON *g, *targets, *labels;

	if (reg_admin_target(in->admin_url, hostport, sizeof(hostport), scheme, sizeof(scheme),
			     path, sizeof(path)) != 0)
		return NULL;
	if ((g = cJSON_CreateObject()) == NULL)
		return NULL;
	if ((targets = cJSON_AddArrayToObject(g, "targets")) == NULL)
		goto out_g;
	cJSON_AddItemToArray(targets, cJSON_CreateString(hostport));
	if (cJSON_GetArraySize(targets) != 1 ||
	    (labels = cJSON_AddObjectToObject(g, "labels")) == NULL ||
	    cJSON_AddStringToObject(labels, "service", in->service) == NULL ||
	    cJSON_AddStringToObject(labels, "instance", in->instance) == NULL ||
	    cJSON_AddStringToObject(labels, "__metrics_path__", path) == NULL)
		goto out_g;
	/* Prometheus' default scheme is http; say so only when it differs. */
	if (strcmp(scheme, "http") != 0 &&
	    cJSON_AddStringToObject(labels, "__scheme__", scheme) == NULL)
		goto out_g;
	return g;

out_g:
	cJSON_Delete(g);
	return NULL;
}

int reg_table_prometheus_json(const reg_table *t, char **body, size_t *len)
{
	cJSON *root, *g;

	if ((root = cJSON_CreateArray()) == NULL)
		return ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		/* NULL means an unparsable admin_url (left out) or no memory;
		 * telling them apart is not worth a half-empty answer. */
		if ((g = prometheus_group(&t->v[i].ad)) != NULL)
			cJSON_AddItemToArray(root, g);
	}
	return json_finish(root, body, len);
}

int reg_table_metrics_text(const reg_table *t, char **body, size_t *len)
{
	char *buf = NULL;
	size_t blen = 0;
	FILE *f;

	if ((f = open_memstream(&buf, &blen)) == NULL)
		return ENOMEM;
	fputs("# HELP shop_registry_instances Instances registered, per service.\n"
	      "# TYPE shop_registry_instances gauge\n",
	      f);
	for (size_t i = 0; i < t->n;) {
		size_t j = i;

		while (j < t->n && strcmp(t->v[j].ad.service, t->v[i].ad.service) == 0)
			j++;
		fputs("shop_registry_instances{service=\"", f);
		shop_metrics_put_label_value(f, t->v[i].ad.service);
		fprintf(f, "\"} %zu\n", j - i);
		i = j;
	}
	fprintf(f,
		"# HELP shop_registry_revision Revision of the registry's table.\n"
		"# TYPE shop_registry_revision gauge\n"
		"shop_registry_revision %llu\n"
		"# HELP shop_registry_joins_total Instances that joined.\n"
		"# TYPE shop_registry_joins_total counter\n"
		"shop_registry_joins_total %llu\n"
		"# HELP shop_registry_leaves_total Instances dropped, by reason.\n"
		"# TYPE shop_registry_leaves_total counter\n"
		"shop_registry_leaves_total{reason=\"pipe_closed\"} %llu\n"
		"shop_registry_leaves_total{reason=\"missed_surveys\"} %llu\n",
		(unsigned long long)t->revision, (unsigned long long)t->joins,
		(unsigned long long)t->leaves_pipe, (unsigned long long)t->leaves_misses);
	fputs("# HELP shop_registry_adverts_refused_total Adverts refused for a field outside the "
	      "safe form, by the first such field.\n"
	      "# TYPE shop_registry_adverts_refused_total counter\n",
	      f);
	for (int r = SHOP_ADVERT_OK + 1; r < SHOP_ADVERT_N_FAULTS; r++)
		fprintf(f, "shop_registry_adverts_refused_total{reason=\"%s\"} %llu\n",
			shop_advert_fault_name((shop_advert_fault)r),
			(unsigned long long)t->refused[r]);
	if (shop_memstream_close(f, &buf) != 0)
		return ENOMEM;
	*body = buf;
	*len = blen;
	return 0;
}
