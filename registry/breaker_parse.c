/* breaker_parse.c -- Prometheus text → the callers' breaker states. */
#include "breaker_parse.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define STATE_METRIC "resilience4j_circuitbreaker_state"
#define RATE_METRIC  "resilience4j_circuitbreaker_failure_rate"

/* One sample line of either metric. */
typedef struct sample {
	bool is_state; /* else failure_rate */
	char name[sizeof(((reg_breaker *)0)->name)];
	char state[sizeof(((reg_breaker *)0)->state)];
	bool has_name, has_state;
	double value;
} sample;

static const char *skip_blank(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

static bool name_char(char c, bool first, bool colon)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       (colon && c == ':') || (!first && c >= '0' && c <= '9');
}

/* Reads a label value whose opening quote is before p; unescapes \\, \" and
 * \n into out. *fits turns false when it does not fit (the value is still
 * read through). Returns the character after the closing quote, or NULL. */
static const char *label_value(const char *p, const char *end, char *out, size_t cap, bool *fits)
{
	size_t o = 0;

	*fits = true;
	while (p < end && *p != '"') {
		char c = *p++;

		if (c == '\\') {
			if (p == end)
				return NULL;
			c = *p++;
			if (c == 'n')
				c = '\n';
			else if (c != '\\' && c != '"')
				return NULL;
		}
		if (o + 1 < cap)
			out[o++] = c;
		else
			*fits = false;
	}
	if (p == end)
		return NULL;
	out[o] = '\0';
	return p + 1;
}

/* metric{label="value",...} value [timestamp]; false when the line is not a
 * well-formed sample of one of the two metrics. */
static bool parse_line(const char *p, const char *end, sample *s)
{
	const char *m = p;
	char num[64];
	size_t mlen, nlen;
	char *stop;

	while (p < end && name_char(*p, p == m, true))
		p++;
	mlen = (size_t)(p - m);
	if (mlen == strlen(STATE_METRIC) && memcmp(m, STATE_METRIC, mlen) == 0)
		s->is_state = true;
	else if (mlen == strlen(RATE_METRIC) && memcmp(m, RATE_METRIC, mlen) == 0)
		s->is_state = false;
	else
		return false;
	s->has_name = s->has_state = false;
	p = skip_blank(p, end);
	if (p < end && *p == '{') {
		p++;
		for (;;) {
			const char *l;
			char scratch[8];
			char *dst = scratch;
			size_t cap = sizeof(scratch);
			bool fits, *has = NULL;

			p = skip_blank(p, end);
			if (p < end && *p == '}')
				break;
			for (l = p; p < end && name_char(*p, p == l, false); p++)
				;
			if (p == l)
				return false;
			if ((size_t)(p - l) == 4 && memcmp(l, "name", 4) == 0) {
				dst = s->name, cap = sizeof(s->name), has = &s->has_name;
			} else if ((size_t)(p - l) == 5 && memcmp(l, "state", 5) == 0) {
				dst = s->state, cap = sizeof(s->state), has = &s->has_state;
			}
			p = skip_blank(p, end);
			if (p == end || *p++ != '=')
				return false;
			p = skip_blank(p, end);
			if (p == end || *p++ != '"')
				return false;
			if ((p = label_value(p, end, dst, cap, &fits)) == NULL)
				return false;
			if (has != NULL)
				*has = fits;
			p = skip_blank(p, end);
			if (p < end && *p == ',')
				p++;
			else if (p == end || *p != '}')
				return false;
		}
		p++; /* the '}' */
	}
	p = skip_blank(p, end);
	for (nlen = 0; p + nlen < end && p[nlen] != ' ' && p[nlen] != '\t'; nlen++)
		;
	if (nlen == 0 || nlen >= sizeof(num))
		return false;
	memcpy(num, p, nlen);
	num[nlen] = '\0';
	s->value = strtod(num, &stop);
	/* The optional timestamp after the value is of no use here. */
	return *stop == '\0' && s->has_name && (!s->is_state || s->has_state);
}

static reg_breaker *find_or_add(reg_breaker **v, size_t *n, size_t *cap, const char *name, int *rv)
{
	reg_breaker *b;

	for (size_t i = 0; i < *n; i++)
		if (strcmp((*v)[i].name, name) == 0)
			return &(*v)[i];
	if (*n == REG_BREAKERS_MAX)
		return NULL;
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		reg_breaker *nv = realloc(*v, ncap * sizeof(*nv));

		if (nv == NULL) {
			*rv = ENOMEM;
			return NULL;
		}
		*v = nv;
		*cap = ncap;
	}
	b = &(*v)[(*n)++];
	memset(b, 0, sizeof(*b));
	memcpy(b->name, name, strlen(name) + 1);
	b->failure_rate = -1;
	return b;
}

int reg_breakers_parse(const char *text, size_t len, reg_breaker **out, size_t *n)
{
	const char *p = text, *end = text + len;
	reg_breaker *v = NULL;
	size_t nv = 0, cap = 0;
	int rv = 0;

	while (p < end && rv == 0) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = eol != NULL ? eol : end;
		reg_breaker *b;
		sample s;

		if (line_end > p && line_end[-1] == '\r')
			line_end--;
		if (parse_line(skip_blank(p, line_end), line_end, &s) &&
		    (b = find_or_add(&v, &nv, &cap, s.name, &rv)) != NULL) {
			if (!s.is_state)
				b->failure_rate = s.value;
			else if (s.value == 1.0 && b->state[0] == '\0')
				memcpy(b->state, s.state, strlen(s.state) + 1);
		}
		p = eol != NULL ? eol + 1 : end;
	}
	if (rv != 0) {
		free(v);
		return rv;
	}
	if (nv == 0) {
		free(v);
		v = NULL;
	}
	*out = v;
	*n = nv;
	return 0;
}
