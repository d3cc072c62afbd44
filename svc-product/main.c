/* main.c -- svc-product: wiring only. */
#include <stdlib.h>

#include "config.h"
#include "product_service.h"
#include "product_store.h"
#include "service.h"

int main(void)
{
	shop_service_config cfg;
	shop_env env;

	shop_env_init(&env, "svc-product");
	shop_service_config_read(&cfg, &env, "product", "product-a", "tcp://127.0.0.1:7211",
				 "127.0.0.1:7311");
	if (shop_env_check(&env) != 0)
		return 2;
	/* No cache here: a SHOP_REDIS_ADDR meant for the services that have one
	 * opens no connection, and /readyz does not report it. */
	cfg.redis_addr = NULL;
	return shop_service_run(&cfg, product_methods, product_n_methods, product_migrations,
				product_n_migrations, NULL);
}
