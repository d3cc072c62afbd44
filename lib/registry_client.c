/* registry_client.c -- placeholder, being written. */
typedef int shop_placeholder_registry_client;
