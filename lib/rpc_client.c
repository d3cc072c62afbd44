/* rpc_client.c -- placeholder, being written. */
typedef int shop_placeholder_rpc_client;
