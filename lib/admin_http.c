/* admin_http.c -- placeholder, being written. */
typedef int shop_placeholder_admin_http;
