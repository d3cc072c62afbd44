/* upstream.c -- placeholder, being written. */
typedef int shop_placeholder_upstream;
