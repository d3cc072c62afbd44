/* problem.c -- RFC 9457 problem+json answers and RPC → HTTP error mapping. */
#include "problem.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fields.h"

/* Parses a q-value ("1", "0.8", "1.000"); -1 when invalid. Thousandths. */
static int parse_q(const char *s, size_t n)
{
	int q;

	if (n == 0 || (s[0] != '0' && s[0] != '1'))
		return -1;
	q = (s[0] - '0') * 1000;
	if (n == 1)
		return q;
	if (s[1] != '.' || n > 5)
		return -1;
	for (size_t i = 2, scale = 100; i < n; i++, scale /= 10) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		q += (s[i] - '0') * (int)scale;
	}
	return q > 1000 ? -1 : q;
}

gw_lang gw_problem_lang(const char *al)
{
	gw_lang best = GW_LANG_EN;
	int best_q = 0;
	const char *p = al;

	if (al == NULL)
		return GW_LANG_EN;
	while (*p != '\0') {
		const char *item = p, *tag, *semi;
		size_t len, tlen;
		int q = 1000;

		while (*p != '\0' && *p != ',')
			p++;
		len = (size_t)(p - item);
		if (*p == ',')
			p++;
		while (len > 0 && isspace((unsigned char)*item))
			item++, len--;
		tag = item;
		semi = memchr(item, ';', len);
		tlen = semi != NULL ? (size_t)(semi - item) : len;
		while (tlen > 0 && isspace((unsigned char)tag[tlen - 1]))
			tlen--;
		if (semi != NULL) {
			const char *qs = semi + 1, *e = item + len;

			while (qs < e && isspace((unsigned char)*qs))
				qs++;
			if (e - qs >= 2 && (qs[0] == 'q' || qs[0] == 'Q') && qs[1] == '=') {
				size_t qn = (size_t)(e - qs - 2);

				while (qn > 0 && isspace((unsigned char)qs[2 + qn - 1]))
					qn--;
				q = parse_q(qs + 2, qn);
			}
		}
		if (q <= 0)
			continue;
		for (int l = 0; l < 2; l++) {
			const char *name = l == 0 ? "en" : "ko";

			if (tlen >= 2 && strncasecmp(tag, name, 2) == 0 &&
			    (tlen == 2 || tag[2] == '-') && q > best_q) {
				best_q = q;
				best = l == 0 ? GW_LANG_EN : GW_LANG_KO;
			}
		}
	}
	return best;
}

const char *gw_http_title(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Content Too Large";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	}
	return "Error";
}

static void set(gw_problem *p, int status, const char *code, int retry_after)
{
	p->status = status;
	snprintf(p->code, sizeof(p->code), "%s", code);
	p->retry_after = retry_after;
	p->detail[0] = '\0';
	p->field[0] = '\0';
}

/* Names the request field a 400 is about (CONTRACT §2: in detail and in the
 * extension member "field"). */
static void name_field(gw_problem *p, const char *field)
{
	snprintf(p->field, sizeof(p->field), "%s", field);
}

/* Formats the detail in lang; en and ko take the same arguments. */
static void detail(gw_problem *p, gw_lang lang, const char *en, const char *ko, ...)
{
	va_list ap;

	va_start(ap, ko);
	vsnprintf(p->detail, sizeof(p->detail), lang == GW_LANG_KO ? ko : en, ap);
	va_end(ap);
}

#define UNAVAILABLE_EN "The service is temporarily unavailable. Please try again later."
#define UNAVAILABLE_KO "서비스를 일시적으로 이용할 수 없습니다. 나중에 다시 시도해주세요"
#define INTERNAL_EN    "An internal error occurred."
#define INTERNAL_KO    "내부 오류가 발생했습니다"

void gw_problem_make(gw_problem *p, enum gw_problem_kind kind, gw_lang lang, const char *arg)
{
	if (arg == NULL)
		arg = "";
	switch (kind) {
	case GW_P_NOT_FOUND:
		set(p, 404, "not_found", 0);
		detail(p, lang, "No resource matches the request path.",
		       "요청한 경로의 리소스를 찾을 수 없습니다");
		break;
	case GW_P_METHOD_NOT_ALLOWED:
		set(p, 405, "method_not_allowed", 0);
		detail(p, lang, "Method %s is not allowed for this resource.",
		       "이 리소스에는 %s 메서드를 사용할 수 없습니다", arg);
		break;
	case GW_P_BAD_PATH:
		set(p, 400, "invalid_argument", 0);
		detail(p, lang, "The request path is malformed.", "요청 경로가 올바르지 않습니다");
		break;
	case GW_P_BAD_ID:
		set(p, 400, "invalid_argument", 0);
		detail(p, lang, "The id in the path must be a positive 63-bit integer.",
		       "경로의 id는 양의 63비트 정수여야 합니다");
		break;
	case GW_P_BAD_PAGE_SIZE:
		set(p, 400, "invalid_argument", 0);
		name_field(p, "page_size");
		detail(p, lang, "page_size must be an integer from 1 to 1000.",
		       "page_size는 1부터 1000 사이의 정수여야 합니다");
		break;
	case GW_P_BAD_PAGE_TOKEN:
		set(p, 400, "invalid_argument", 0);
		name_field(p, "page_token");
		detail(p, lang, "page_token is not valid.", "page_token이 올바르지 않습니다");
		break;
	case GW_P_BAD_IDEMPOTENCY_KEY:
		set(p, 400, "invalid_argument", 0);
		detail(p, lang, "Idempotency-Key must be 1 to 255 visible ASCII characters.",
		       "Idempotency-Key는 1~255자의 ASCII 문자여야 합니다");
		break;
	case GW_P_PAYLOAD_TOO_LARGE:
		set(p, 413, "payload_too_large", 0);
		detail(p, lang, "The request body exceeds %d bytes.",
		       "요청 본문이 %d바이트를 초과합니다", GW_MAX_BODY);
		break;
	case GW_P_UNSUPPORTED_MEDIA:
		set(p, 415, "unsupported_media_type", 0);
		detail(p, lang, "The request body must be application/json.",
		       "요청 본문은 application/json이어야 합니다");
		break;
	case GW_P_HEADERS_TOO_LARGE:
		set(p, 431, "request_header_fields_too_large", 0);
		detail(p, lang, "The request header fields exceed %d bytes.",
		       "요청 헤더 필드가 %d바이트를 초과합니다", GW_MAX_HEADER_SECTION);
		break;
	case GW_P_BAD_FIELD:
		set(p, 400, "invalid_argument", 0);
		detail(p, lang, "The request header field %s is malformed, repeated or missing.",
		       "요청 헤더 필드 %s이(가) 잘못되었거나 중복되었거나 없습니다", arg);
		break;
	case GW_P_MISSING_TOKEN:
		set(p, 401, "missing_token", 0);
		detail(p, lang, "This request needs a bearer access token.",
		       "이 요청에는 Bearer 액세스 토큰이 필요합니다");
		break;
	case GW_P_INVALID_TOKEN:
		/* One text for every reason: the client learns nothing about
		 * which check failed. */
		set(p, 401, "invalid_token", 0);
		detail(p, lang, "The access token is invalid or has expired.",
		       "액세스 토큰이 유효하지 않거나 만료되었습니다");
		break;
	case GW_P_LENGTH_AND_CODING:
		set(p, 400, "invalid_argument", 0);
		detail(p, lang,
		       "A request must not carry both Content-Length and Transfer-Encoding.",
		       "요청에 Content-Length와 Transfer-Encoding을 함께 보낼 수 없습니다");
		break;
	case GW_P_BAD_LENGTH:
		set(p, 400, "invalid_argument", 0);
		detail(p, lang,
		       "Content-Length must be given once, as a non-negative decimal integer.",
		       "Content-Length는 음이 아닌 10진 정수 하나로 한 번만 보내야 합니다");
		break;
	case GW_P_BAD_CHUNKED:
		set(p, 400, "invalid_argument", 0);
		detail(p, lang, "The chunked request body is malformed.",
		       "chunked 요청 본문의 형식이 올바르지 않습니다");
		break;
	case GW_P_UPGRADE_REFUSED:
		set(p, 400, "invalid_argument", 0);
		detail(p, lang,
		       "Protocol upgrades are not supported; send the request without Upgrade.",
		       "프로토콜 업그레이드는 지원하지 않습니다. Upgrade 없이 요청해주세요");
		break;
	case GW_P_NOT_IMPLEMENTED:
		set(p, 501, "not_implemented", 0);
		detail(p, lang, "Only the chunked transfer coding is supported.",
		       "chunked 이외의 전송 코딩은 지원하지 않습니다");
		break;
	case GW_P_UNAVAILABLE:
		set(p, 503, "service_unavailable", 1);
		detail(p, lang, UNAVAILABLE_EN, UNAVAILABLE_KO);
		break;
	case GW_P_INTERNAL:
	default:
		set(p, 500, "internal", 0);
		detail(p, lang, INTERNAL_EN, INTERNAL_KO);
		break;
	}
}

void gw_problem_from_tc(gw_problem *p, const gw_tc_error *err, gw_lang lang)
{
	const char *f = err->field;

	set(p, 400, "invalid_argument", 0);
	name_field(p, f);
	switch (err->kind) {
	case GW_TC_MALFORMED:
	case GW_TC_OK:
		detail(p, lang, "The request body is not valid JSON.",
		       "요청 본문이 올바른 JSON이 아닙니다");
		break;
	case GW_TC_NOT_OBJECT:
		if (f[0] == '\0')
			detail(p, lang, "The request body must be a JSON object.",
			       "요청 본문은 JSON 객체여야 합니다");
		else
			detail(p, lang, "Field '%s' must be an object.",
			       "'%s' 필드는 객체여야 합니다", f);
		break;
	case GW_TC_INTEGER:
		detail(p, lang, "Field '%s' must be an integer.", "'%s' 필드는 정수여야 합니다", f);
		break;
	case GW_TC_RANGE:
		detail(p, lang, "Field '%s' is out of range.",
		       "'%s' 필드의 값이 범위를 벗어났습니다", f);
		break;
	case GW_TC_NUMBER:
		detail(p, lang, "Field '%s' must be a number.", "'%s' 필드는 숫자여야 합니다", f);
		break;
	case GW_TC_STRING:
		detail(p, lang, "Field '%s' must be a string.", "'%s' 필드는 문자열이어야 합니다",
		       f);
		break;
	case GW_TC_BOOL:
		detail(p, lang, "Field '%s' must be true or false.",
		       "'%s' 필드는 true 또는 false여야 합니다", f);
		break;
	case GW_TC_ARRAY:
		detail(p, lang, "Field '%s' must be an array.", "'%s' 필드는 배열이어야 합니다", f);
		break;
	case GW_TC_ENUM:
		detail(p, lang, "Field '%s' has an unknown value.",
		       "'%s' 필드의 값을 알 수 없습니다", f);
		break;
	case GW_TC_UNSUPPORTED:
		detail(p, lang, "Field '%s' cannot be set.", "'%s' 필드는 설정할 수 없습니다", f);
		break;
	}
}

/* "ORDER_NOT_FOUND" → "order_not_found"; false when reason is empty or not
 * a plain UPPER_SNAKE word (then it is not exposed as a code). */
static bool reason_code(const char *reason, char *out, size_t cap)
{
	size_t n = reason != NULL ? strlen(reason) : 0;

	if (n == 0 || n >= cap)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = reason[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
		out[i] = (char)tolower((unsigned char)c);
	}
	out[n] = '\0';
	return true;
}

/* A metadata value, borrowed from resp; NULL when absent. (The same as
 * shop_rpc_response_meta, kept here so that this file stays pure.) */
static const char *meta(const Shop__V1__RpcResponse *resp, const char *key)
{
	for (size_t i = 0; i < resp->n_metadata; i++)
		if (resp->metadata[i] != NULL && resp->metadata[i]->key != NULL &&
		    strcmp(resp->metadata[i]->key, key) == 0)
			return resp->metadata[i]->value;
	return NULL;
}

/* A metadata value that is a decimal number, or NULL. */
static const char *meta_number(const Shop__V1__RpcResponse *resp, const char *key)
{
	const char *v = meta(resp, key);

	if (v == NULL || v[0] == '\0' || strlen(v) > 19)
		return NULL;
	for (const char *c = v; *c != '\0'; c++)
		if (!isdigit((unsigned char)*c))
			return NULL;
	return v;
}

/* Copies a service's message into a 400 detail: it is written for people
 * and contains no internals for INVALID_ARGUMENT; control characters are
 * dropped and the length is bounded. */
static void copy_message(gw_problem *p, const char *msg)
{
	size_t o = 0;

	for (; msg != NULL && *msg != '\0' && o + 1 < sizeof(p->detail); msg++)
		if ((unsigned char)*msg >= 0x20 && *msg != 0x7f)
			p->detail[o++] = *msg;
	p->detail[o] = '\0';
}

void gw_problem_from_rpc(gw_problem *p, const Shop__V1__RpcResponse *resp, gw_lang lang)
{
	char code[64];
	const char *reason = resp->reason;
	bool has_reason = reason_code(reason, code, sizeof(code));
	const char *v;

	switch (resp->code) {
	case SHOP_RPC_INVALID_ARGUMENT:
		set(p, 400, "invalid_argument", 0);
		v = meta(resp, "field");
		if (v != NULL && strlen(v) < sizeof(p->field) &&
		    strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_.[]") == strlen(v))
			name_field(p, v);
		if (lang == GW_LANG_EN && resp->message != NULL && resp->message[0] != '\0')
			copy_message(p, resp->message);
		else if (v != NULL && strlen(v) < 64 &&
			 strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_.[]") == strlen(v))
			detail(p, lang, "Field '%s' is not valid.",
			       "'%s' 필드의 값이 올바르지 않습니다", v);
		else
			detail(p, lang, "The request is not valid.", "요청이 올바르지 않습니다");
		break;
	case SHOP_RPC_NOT_FOUND:
		set(p, 404, has_reason ? code : "not_found", 0);
		if (has_reason && strcmp(code, "product_not_found") == 0 &&
		    (v = meta_number(resp, "product_id")) != NULL)
			detail(p, lang, "Product %s not found", "%s번 상품을 찾을 수 없습니다", v);
		else if (has_reason && strcmp(code, "product_not_found") == 0)
			detail(p, lang, "Product not found", "상품을 찾을 수 없습니다");
		else if (has_reason && strcmp(code, "order_not_found") == 0 &&
			 (v = meta_number(resp, "order_id")) != NULL)
			detail(p, lang, "Order %s not found", "%s번 주문을 찾을 수 없습니다", v);
		else if (has_reason && strcmp(code, "order_not_found") == 0)
			detail(p, lang, "Order not found", "주문을 찾을 수 없습니다");
		else
			detail(p, lang, "The requested resource was not found.",
			       "요청한 리소스를 찾을 수 없습니다");
		break;
	case SHOP_RPC_ALREADY_EXISTS:
		set(p, 409, has_reason ? code : "already_exists", 0);
		if (has_reason && strcmp(code, "name_taken") == 0)
			detail(p, lang, "The name is already taken.", "이미 사용 중인 이름입니다");
		else
			detail(p, lang, "The resource already exists.",
			       "이미 존재하는 리소스입니다");
		break;
	case SHOP_RPC_UNAUTHENTICATED:
		set(p, 401, "invalid_credentials", 0);
		detail(p, lang, "The name or password is incorrect.",
		       "이름 또는 비밀번호가 올바르지 않습니다");
		break;
	case SHOP_RPC_RESOURCE_EXHAUSTED: {
		int secs = 1;

		if ((v = meta_number(resp, "retry_after")) != NULL && strlen(v) <= 6)
			secs = atoi(v) > 0 ? atoi(v) : 1;
		/* OVERLOADED: the service's own limit, the same for every
		 * client (503); anything else is a limit of this client's
		 * (429). */
		if (reason != NULL && strcmp(reason, "OVERLOADED") == 0) {
			set(p, 503, "service_unavailable", secs);
			detail(p, lang, UNAVAILABLE_EN, UNAVAILABLE_KO);
			break;
		}
		set(p, 429, "too_many_requests", secs);
		detail(p, lang, "Too many requests. Please try again later.",
		       "요청이 너무 많습니다. 나중에 다시 시도해주세요");
		break;
	}
	case SHOP_RPC_UNAVAILABLE:
	case SHOP_RPC_DEADLINE_EXCEEDED:
		if (reason != NULL && strcmp(reason, "PRODUCT_SERVICE_UNAVAILABLE") == 0) {
			set(p, 503, "product_service_unavailable", 1);
			/* Word for word from CONTRACT §2. */
			detail(p, lang, "Product service is unavailable. Please try again later.",
			       "상품 서비스를 이용할 수 없습니다. 나중에 다시 시도해주세요");
		} else {
			gw_problem_make(p, GW_P_UNAVAILABLE, lang, NULL);
		}
		break;
	case SHOP_RPC_FAILED_PRECONDITION:
		/* The request is understood but cannot be done in the resource's
		 * state (RFC 9110 §15.5.21): today, an Idempotency-Key reused
		 * with another body. */
		set(p, 422, has_reason ? code : "failed_precondition", 0);
		if (has_reason && strcmp(code, "idempotency_key_reused") == 0)
			detail(p, lang,
			       "This Idempotency-Key was already used with another request body.",
			       "이 Idempotency-Key는 다른 요청 본문에 이미 사용되었습니다");
		else
			detail(p, lang, "The request cannot be carried out.",
			       "요청을 처리할 수 없습니다");
		break;
	default: /* UNIMPLEMENTED, INTERNAL and anything unexpected */
		gw_problem_make(p, GW_P_INTERNAL, lang, NULL);
		break;
	}
}

char *gw_problem_json(const gw_problem *p, const char *trace_id)
{
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;

	if (o == NULL)
		return NULL;
	if (cJSON_AddStringToObject(o, "type", "about:blank") == NULL ||
	    cJSON_AddStringToObject(o, "title", gw_http_title(p->status)) == NULL ||
	    cJSON_AddNumberToObject(o, "status", p->status) == NULL ||
	    cJSON_AddStringToObject(o, "detail", p->detail) == NULL ||
	    cJSON_AddStringToObject(o, "code", p->code) == NULL ||
	    cJSON_AddStringToObject(o, "trace_id", trace_id != NULL ? trace_id : "") == NULL)
		goto out;
	if (p->field[0] != '\0' && cJSON_AddStringToObject(o, "field", p->field) == NULL)
		goto out;
	text = cJSON_PrintUnformatted(o);
out:
	cJSON_Delete(o);
	return text;
}
