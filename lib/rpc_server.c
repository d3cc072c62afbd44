/* rpc_server.c -- placeholder, being written. */
typedef int shop_placeholder_rpc_server;
