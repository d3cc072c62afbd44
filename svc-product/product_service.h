/* product_service.h -- the ProductService RPC handlers. */
#ifndef PRODUCT_SERVICE_H
#define PRODUCT_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "rpc_server.h"

extern const shop_rpc_method product_methods[];
extern const size_t product_n_methods;

/* Page tokens: opaque to clients; "v1." and 16 hex digits of the last id
 * served. Exposed for tests. Returns 0 or -1 for a token that is not ours. */
void product_page_token_encode(int64_t last_id, char out[24]);
int product_page_token_decode(const char *token, int64_t *last_id);

#endif
