/* main.c -- svc-auth: wiring only. */
#include <stdlib.h>
#include <string.h>

#include "auth_service.h"
#include "auth_store.h"
#include "config.h"
#include "service.h"

int main(void)
{
	shop_service_config cfg;
	shop_env env;
	auth_app app;
	auth_throttle_config throttle;
	const char *secret;
	int64_t t, m_kib, conc, per_client;
	auth_hash_gate_config gate;
	int status;

	shop_env_init(&env, "svc-auth");
	shop_service_config_read(&cfg, &env, "auth", "auth", "tcp://127.0.0.1:7201",
				 "127.0.0.1:7301");
	secret = shop_env_secret(&env, "SHOP_JWT_SECRET", 32);
	/* OWASP's floor for Argon2id: m = 19 MiB, t = 2, p = 1. */
	t = shop_env_int(&env, "SHOP_ARGON2_T", 2, 2, 16);
	m_kib = shop_env_int(&env, "SHOP_ARGON2_M_KIB", 19456, 19456, 4 * 1024 * 1024);
	conc = shop_env_int(&env, "SHOP_AUTH_HASH_CONCURRENCY", 2, 1, 64);
	/* Two workers always stay out of hashing, to answer (and shed) at
	 * once; one client may hold half of what is admitted. */
	gate.concurrency = (unsigned)conc;
	gate.max_admitted = cfg.workers > conc + 2 ? (unsigned)(cfg.workers - 2) : (unsigned)conc;
	per_client = shop_env_int(&env, "SHOP_AUTH_HASH_PER_CLIENT",
				  gate.max_admitted / 2 > 0 ? gate.max_admitted / 2 : 1, 0, 256);
	gate.per_client = (unsigned)per_client;
	/* Per name: 5 failures at once, then one more every 60 s. Per
	 * address (many users may share one): 20, then one every 3 s. */
	throttle.name_burst = shop_env_int(&env, "SHOP_SIGNIN_NAME_BURST", 5, 1, 1000000);
	throttle.name_per_token_ms =
	    shop_env_int(&env, "SHOP_SIGNIN_NAME_REFILL_MS", 60000, 1, 86400000);
	throttle.addr_burst = shop_env_int(&env, "SHOP_SIGNIN_ADDR_BURST", 20, 1, 1000000);
	throttle.addr_per_token_ms =
	    shop_env_int(&env, "SHOP_SIGNIN_ADDR_REFILL_MS", 3000, 1, 86400000);
	if (shop_env_check(&env) != 0)
		return 2;
	if (auth_app_init(&app, (const unsigned char *)secret, strlen(secret),
			  (unsigned long long)t, (size_t)m_kib * 1024, &gate) != 0)
		return 1;
	app.throttle = throttle;
	status = shop_service_run(&cfg, auth_methods, auth_n_methods, auth_migrations,
				  auth_n_migrations, &app);
	auth_app_fini(&app);
	return status;
}
