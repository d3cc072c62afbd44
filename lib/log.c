/* log.c -- placeholder, being written. */
typedef int shop_placeholder_log;
