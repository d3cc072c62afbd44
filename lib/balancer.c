/* balancer.c -- weighted random choice, and the cheap random numbers it uses. */
#include "balancer.h"

#include <stdio.h>
#include <sys/random.h>
#include <time.h>

int shop_balancer_pick(const uint32_t *weights, int n, uint64_t rnd)
{
	uint64_t total = 0, point;

	for (int i = 0; i < n; i++)
		total += weights[i];
	if (n <= 0 || total == 0)
		return -1;
	/* Multiply-shift maps rnd's top 32 bits onto [0, total) without modulo
	 * bias worth speaking of (total is far below 2^32: weights are at most
	 * 10^6 each); the product fits 64 bits for any total below 2^32. */
	point = total < (UINT64_C(1) << 32) ? ((rnd >> 32) * total) >> 32 : rnd % total;
	for (int i = 0; i < n; i++) {
		if (point < weights[i])
			return i;
		point -= weights[i];
	}
	return n - 1; /* not reached */
}

uint64_t shop_random_u64(void)
{
	static _Thread_local uint64_t state;
	uint64_t x;

	if (state == 0) {
		if (getrandom(&state, sizeof(state), 0) != (ssize_t)sizeof(state) || state == 0)
			state = (uint64_t)time(NULL) ^ 0x9e3779b97f4a7c15ULL ^ (uintptr_t)&state;
	}
	/* xorshift64* */
	x = state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	state = x;
	return x * 0x2545f4914f6cdd1dULL;
}
