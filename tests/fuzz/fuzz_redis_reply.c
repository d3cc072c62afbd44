/* fuzz_redis_reply.c -- libFuzzer target: hiredis's reply parser
 * (redisReader, Debian's 0.14) on arbitrary bytes from the server, set up
 * as lib/redis.c sets up every connection (shop_redis_reader_setup), and
 * fed in the pieces that reads from a socket deliver. This is the code
 * that parses whatever a Redis (or anything listening on its port)
 * answers the order cache and the sign-in throttle.
 *
 * Input: byte 0 picks the piece size pattern; the rest is the byte
 * stream. Property: besides no sanitizer report and no allocation past
 * libFuzzer's malloc limit, every reply returned is well formed (arrays
 * hold as many elements as they announce, strings their length). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const redisReply *r, int depth)
{
	if (r == NULL || depth > 16)
		abort();
	switch (r->type) {
	case REDIS_REPLY_ARRAY:
		if (r->elements > 0 && r->element == NULL)
			abort();
		for (size_t i = 0; i < r->elements; i++)
			check(r->element[i], depth + 1);
		break;
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS:
	case REDIS_REPLY_ERROR:
		if (r->str == NULL || r->str[r->len] != '\0')
			abort();
		break;
	case REDIS_REPLY_INTEGER:
	case REDIS_REPLY_NIL:
		break;
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	redisReader *reader;
	unsigned pattern;

	if (size < 1)
		return 0;
	pattern = data[0];
	data++, size--;
	if ((reader = redisReaderCreate()) == NULL)
		return 0;
	shop_redis_reader_setup(reader);
	for (size_t off = 0, k = 0; off < size || size == 0; k++) {
		size_t n = pattern == 0 ? size - off : 1 + ((pattern >> (k % 4 * 2)) & 3) * 5;
		void *reply = NULL;
		int rv;

		if (n > size - off)
			n = size - off;
		if (redisReaderFeed(reader, (const char *)data + off, n) != REDIS_OK)
			break;
		off += n;
		/* Every complete reply so far, as redisGetReply takes them. */
		while ((rv = redisReaderGetReply(reader, &reply)) == REDIS_OK && reply != NULL) {
			check(reply, 0);
			freeReplyObject(reply);
			reply = NULL;
		}
		if (rv != REDIS_OK || size == 0)
			break; /* a protocol error: the connection is dropped */
	}
	redisReaderFree(reader);
	return 0;
}
