/* throttle.c -- sign-in token buckets in Redis. */
#include "throttle.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

/* KEYS: bucket keys. ARGV[1] now (ms), ARGV[2] "take" or "refund", then
 * per key: burst, ms per token.
 *
 * take: refills every bucket; when each holds a whole token, takes one
 * from each and returns 0; otherwise takes nothing and returns the ms until
 * every bucket holds one. Check and take are one script, so that Redis runs
 * them as one step: concurrent sign-ins cannot all see the same last token.
 *
 * refund: refills every bucket and gives one token back, capped at burst;
 * returns 0.
 *
 * A clock behind the stored one (instances disagree) refills nothing rather
 * than going negative. */
static const char bucket_lua[] =
    "local now = tonumber(ARGV[1]) local refund = ARGV[2] == 'refund'\n"
    "local tokens, ts, wait = {}, {}, 0\n"
    "for i, key in ipairs(KEYS) do\n"
    "  local burst = tonumber(ARGV[1 + 2 * i]) local per = tonumber(ARGV[2 + 2 * i])\n"
    "  local b = redis.call('HMGET', key, 't', 'ts')\n"
    "  local t = tonumber(b[1]) or burst local s = tonumber(b[2]) or now\n"
    "  if now > s then t = math.min(burst, t + (now - s) / per) s = now end\n"
    "  if refund then t = math.min(burst, t + 1)\n"
    "  elseif t < 1 then local w = math.ceil((1 - t) * per) if w > wait then wait = w end end\n"
    "  tokens[i] = t ts[i] = s\n"
    "end\n"
    "if wait > 0 then return wait end\n"
    "for i, key in ipairs(KEYS) do\n"
    "  local burst = tonumber(ARGV[1 + 2 * i]) local per = tonumber(ARGV[2 + 2 * i])\n"
    "  local t = tokens[i] if not refund then t = t - 1 end\n"
    "  redis.call('HSET', key, 't', tostring(t), 'ts', tostring(ts[i]))\n"
    "  redis.call('PEXPIRE', key, math.ceil(burst * per) + 1000)\n"
    "end\n"
    "return 0\n";

/* A name's bucket key: the name itself, readable for an operator, or for
 * a name too long for the buffer (a name's key may be several times its 64
 * characters) a hash of it, so that long names never share a bucket by a
 * truncated prefix. */
static void name_bucket(char *out, size_t cap, const char *name)
{
	unsigned char h[16];
	char hex[2 * sizeof(h) + 1];

	if (strlen(name) <= 200) {
		snprintf(out, cap, "shop:signin:name:%s", name);
		return;
	}
	crypto_generichash(h, sizeof(h), (const unsigned char *)name, strlen(name), NULL, 0);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	snprintf(out, cap, "shop:signin:name#%s", hex);
}

static int64_t bucket_eval(shop_redis *r, const auth_throttle_config *c, const char *name,
			   const char *addr, int64_t now_ms, const char *op)
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
		name_bucket(nkey, sizeof(nkey), name);
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
	argv[argc++] = op;
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

int64_t auth_throttle_take(shop_redis *r, const auth_throttle_config *c, const char *name,
			   const char *addr, int64_t now_ms)
{
	return bucket_eval(r, c, name, addr, now_ms, "take");
}

void auth_throttle_refund(shop_redis *r, const auth_throttle_config *c, const char *name,
			  const char *addr, int64_t now_ms)
{
	bucket_eval(r, c, name, addr, now_ms, "refund");
}
