/* balancer.h -- weighted random choice among instances. */
#ifndef SHOP_BALANCER_H
#define SHOP_BALANCER_H

#include <stdint.h>

/* Returns an index in [0, n) chosen with probability weights[i] / sum, using
 * rnd (uniform over 64 bits) as the only source of chance; -1 when n == 0
 * or every weight is 0. Instances left out (down, breaker open) are simply
 * not passed: the remaining weights are re-normalised by construction. */
int shop_balancer_pick(const uint32_t *weights, int n, uint64_t rnd);

/* A fast thread-local random 64-bit number (xorshift, seeded per thread
 * from the OS); not for secrets. */
uint64_t shop_random_u64(void);

#endif
