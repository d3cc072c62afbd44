/* throttle.c -- sign-in token buckets in Redis. */
#include "throttle.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* KEYS: bucket keys. ARGV[1] now (ms), ARGV[2] "1" to take a token,
 * then per key: burst, ms per token. Returns the ms to wait until every
 * bucket holds a whole token (0: allowed). A clock behind the stored one
 * (instances disagree) refills nothing rather than going negative. */
static const char bucket_lua[] =
	"local now = tonumber(ARGV[1]) local take = ARGV[2] == '1' local wait = 0\n"
	"for i, key in ipairs(KEYS) do\n"
	"  local burst = tonumber(ARGV[1 + 2 * i]) local per = tonumber(ARGV[2 + 2 * i])\n"
	"  local b = redis.call('HMGET', key, 't', 'ts')\n"
	"  local tokens = tonumber(b[1]) or burst local ts = tonumber(b[2]) or now\n"
	"  if now > ts then tokens = math.min(burst, tokens + (now - ts) / per) ts = now end\n"
	"  if take then\n"
	"    tokens = math.max(tokens - 1, 0)\n"
	"    redis.call('HSET', key, 't', tostring(tokens), 'ts', tostring(ts))\n"
	"    redis.call('PEXPIRE', key, math.ceil(burst * per) + 1000)\n"
	"  end\n"
	"  if tokens < 1 then local w = math.ceil((1 - tokens) * per) if w > wait then wait = w end end\n"
	"end\n"
	"return wait\n";

static int64_t bucket_eval(shop_redis *r, const auth_throttle_config *c, const char *name,
			   const char *addr, int64_t now_ms, int take)
{
	char nkey[320], akey[128], now[24], nb[24], np[24], ab[24], ap[24];
	const char *argv[12];
	int argc = 0, nkeys = 0;
	redisReply *reply;
	int64_t wait = 0;

	if (r == NULL)
		return 0;
	argv[argc++] = "EVAL";
	argv[argc++] = bucket_lua;
	argc++; /* the key count, filled below */
	if (name != NULL && name[0] != '\0') {
		snprintf(nkey, sizeof(nkey), "shop:signin:name:%s", name);
		argv[argc++] = nkey;
		nkeys++;
	}
	if (addr != NULL && addr[0] != '\0') {
		snprintf(akey, sizeof(akey), "shop:signin:addr:%s", addr);
		argv[argc++] = akey;
		nkeys++;
	}
	if (nkeys == 0)
		return 0;
	argv[2] = nkeys == 2 ? "2" : "1";
	snprintf(now, sizeof(now), "%" PRId64, now_ms);
	argv[argc++] = now;
	argv[argc++] = take ? "1" : "0";
	snprintf(nb, sizeof(nb), "%" PRId64, c->name_burst);
	snprintf(np, sizeof(np), "%" PRId64, c->name_per_token_ms);
	snprintf(ab, sizeof(ab), "%" PRId64, c->addr_burst);
	snprintf(ap, sizeof(ap), "%" PRId64, c->addr_per_token_ms);
	if (name != NULL && name[0] != '\0') {
		argv[argc++] = nb;
		argv[argc++] = np;
	}
	if (addr != NULL && addr[0] != '\0') {
		argv[argc++] = ab;
		argv[argc++] = ap;
	}
	if ((reply = shop_redis_command(r, argc, argv, NULL)) == NULL)
		return 0; /* Redis away: never lock everyone out */
	if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
		wait = reply->integer;
	freeReplyObject(reply);
	return wait;
}

int64_t auth_throttle_check(shop_redis *r, const auth_throttle_config *c, const char *name,
			    const char *addr, int64_t now_ms)
{
	return bucket_eval(r, c, name, addr, now_ms, 0);
}

void auth_throttle_fail(shop_redis *r, const auth_throttle_config *c, const char *name,
			const char *addr, int64_t now_ms)
{
	bucket_eval(r, c, name, addr, now_ms, 1);
}
