/* main.c -- svc-order: wiring only. */
#include <stdlib.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "order_service.h"
#include "order_store.h"
#include "redis_loop.h"
#include "registry_client.h"
#include "service.h"
#include "signals.h"
#include "upstream.h"

/* The product breakers' resilience4j_* lines on /metrics. */
static char *breaker_metrics(void *products, size_t *len)
{
	return shop_upstream_breaker_metrics(products, len);
}

int main(void)
{
	static const char *const needs[] = {"product"};
	shop_service_config cfg;
	shop_registry_view *view = NULL;
	shop_upstream *products = NULL;
	shop_redis_loop *cache = NULL;
	const char *lookup_url;
	order_app app = {0};
	int64_t refresh_ms;
	int per_try_pct, caller_queue;
	shop_env env;
	int status = 1;

	shop_stop_signals_block(NULL); /* before the view's thread starts */
	shop_env_init(&env, "svc-order");
	shop_service_config_read(&cfg, &env, "order", "order", "tcp://127.0.0.1:7221",
				 "127.0.0.1:7321");
	lookup_url = shop_env_nng_url(&env, "SHOP_REGISTRY_LOOKUP_URL", "tcp://127.0.0.1:7101");
	refresh_ms = shop_env_int(&env, "SHOP_REGISTRY_REFRESH_MS", 250, 10, 60000);
	app.product_timeout_ms = shop_env_int(&env, "SHOP_PRODUCT_TIMEOUT_MS", 1000, 1, 60000);
	app.cache_ttl_s = (int)shop_env_int(&env, "SHOP_ORDER_CACHE_TTL", 300, 1, 86400 * 30);
	per_try_pct = (int)shop_env_int(&env, "SHOP_RPC_PER_TRY_PCT",
					SHOP_UPSTREAM_PER_TRY_PCT_DEFAULT, 1, 100);
	caller_queue = (int)shop_env_int(&env, "SHOP_RPC_CALLER_QUEUE", SHOP_UPSTREAM_QUEUE_DEFAULT,
					 0, SHOP_UPSTREAM_QUEUE_MAX);
	if (shop_env_check(&env) != 0)
		return 2;
	if (shop_registry_view_create(&view, lookup_url, (int)refresh_ms) != 0 ||
	    shop_upstream_create(&products, view, "order") != 0) {
		SHOP_LOG(ERROR, "cannot reach the registry's lookups at %s", lookup_url);
		goto out;
	}
	shop_upstream_set_per_try_pct(products, per_try_pct);
	shop_upstream_set_queue(products, caller_queue);
	/* The cache's one Redis connection, on a loop thread of its own. */
	if (cfg.redis_addr != NULL &&
	    (cache = shop_redis_loop_create(cfg.redis_host, cfg.redis_port,
					    (int)cfg.redis_timeout_ms)) == NULL) {
		SHOP_LOG(ERROR, "cannot start the order cache's Redis loop");
		goto out;
	}
	app.cache = cache;
	app.products = products;
	/* /readyz: an order needs a product instance to be taken. */
	cfg.view = view;
	cfg.needs = needs;
	cfg.n_needs = 1;
	cfg.upstream = products;
	shop_metrics_add_text(shop_metrics_default(), breaker_metrics, products);
	status = shop_service_run(&cfg, order_methods, order_n_methods, order_migrations,
				  order_n_migrations, &app);
	shop_metrics_remove_text(shop_metrics_default(), breaker_metrics, products);
out:
	shop_redis_loop_destroy(cache); /* after the server: its calls are done */
	shop_upstream_destroy(products);
	shop_registry_view_destroy(view);
	return status;
}
