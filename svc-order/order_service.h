/* order_service.h -- the OrderService RPC handlers. */
#ifndef ORDER_SERVICE_H
#define ORDER_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "redis_loop.h"
#include "rpc_server.h"
#include "upstream.h"

typedef struct order_app {
	shop_upstream *products;    /* borrowed: calls to the product service */
	int64_t product_timeout_ms; /* SHOP_PRODUCT_TIMEOUT_MS */
	int cache_ttl_s;            /* SHOP_ORDER_CACHE_TTL */
	shop_redis_loop *cache;     /* borrowed: the order cache's Redis; NULL without */
} order_app;

extern const shop_rpc_method order_methods[];
extern const size_t order_n_methods;

#endif
