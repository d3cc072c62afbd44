/* test_advert_check.c -- tests of lib/advert_check.c: the safe form of an
 * advert's names and URLs. */
#include <stdio.h>
#include <string.h>

#include "../cunit_main.h"

#include "advert_check.h"

static shop_instance good(void)
{
	shop_instance in;

	memset(&in, 0, sizeof(in));
	snprintf(in.service, sizeof(in.service), "product");
	snprintf(in.instance, sizeof(in.instance), "product-a");
	snprintf(in.rpc_url, sizeof(in.rpc_url), "tcp://127.0.0.1:7211");
	snprintf(in.admin_url, sizeof(in.admin_url), "http://127.0.0.1:7311");
	snprintf(in.version, sizeof(in.version), "0.1.0");
	in.weight = 70;
	in.healthy = true;
	in.started_unix_ms = 1700000000000;
	return in;
}

static void test_advert_dev_topology_is_safe(void)
{
	static const char *const names[] = {"registry", "auth",    "product-a", "product-b",
					    "order",    "gateway", "product-c", "product"};
	shop_instance in = good();

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		CU_ASSERT_TRUE(shop_advert_name_ok(names[i], 63));
	CU_ASSERT_EQUAL(shop_advert_check(&in), SHOP_ADVERT_OK);
}

static void test_advert_refuses_header_injection_in_instance(void)
{
	shop_instance in = good();

	snprintf(in.instance, sizeof(in.instance), "x\r\nSet-Cookie: pwn=1");
	CU_ASSERT_FALSE(shop_advert_name_ok("x\r\nSet-Cookie: pwn=1", 63));
	CU_ASSERT_EQUAL(shop_advert_check(&in), SHOP_ADVERT_INSTANCE);
	CU_ASSERT_STRING_EQUAL(shop_advert_fault_name(SHOP_ADVERT_INSTANCE), "instance");
	CU_ASSERT_PTR_EQUAL(shop_advert_field(&in, SHOP_ADVERT_INSTANCE), in.instance);
}

static void test_advert_refuses_bad_names(void)
{
	char long_name[80];

	memset(long_name, 'a', 65);
	long_name[65] = '\0';
	CU_ASSERT_FALSE(shop_advert_name_ok("", 63));
	CU_ASSERT_FALSE(shop_advert_name_ok(long_name, 63));
	long_name[64] = '\0';
	CU_ASSERT_FALSE(shop_advert_name_ok(long_name, 63)); /* 64 */
	long_name[63] = '\0';
	CU_ASSERT_TRUE(shop_advert_name_ok(long_name, 63));  /* 63: the longest */
	CU_ASSERT_FALSE(shop_advert_name_ok(long_name, 31)); /* a service holds 31 */
	CU_ASSERT_FALSE(shop_advert_name_ok("Product-A", 63));
	CU_ASSERT_FALSE(shop_advert_name_ok("product a", 63));
	CU_ASSERT_FALSE(shop_advert_name_ok("product\"a", 63));
	CU_ASSERT_FALSE(shop_advert_name_ok("product\na", 63));
	CU_ASSERT_FALSE(shop_advert_name_ok("product\\a", 63));
	CU_ASSERT_FALSE(shop_advert_name_ok("-product", 63));
	CU_ASSERT_FALSE(shop_advert_name_ok("product-", 63));
	CU_ASSERT_FALSE(shop_advert_name_ok("product.a", 63));
	CU_ASSERT_FALSE(shop_advert_name_ok("produ\xc3\xa9", 63));
	CU_ASSERT_TRUE(shop_advert_name_ok("a", 63));
	CU_ASSERT_TRUE(shop_advert_name_ok("7", 63));
}

static void test_advert_rpc_urls(void)
{
	CU_ASSERT_TRUE(shop_advert_rpc_url_ok("tcp://127.0.0.1:7211"));
	CU_ASSERT_TRUE(shop_advert_rpc_url_ok("tls+tcp://product-a.shop.svc:7211"));
	CU_ASSERT_TRUE(shop_advert_rpc_url_ok("tcp://localhost:1"));
	CU_ASSERT_TRUE(shop_advert_rpc_url_ok("tcp://h:65535"));
	CU_ASSERT_TRUE(shop_advert_rpc_url_ok("tcp://[::1]:7211"));
	CU_ASSERT_TRUE(shop_advert_rpc_url_ok("tcp://[fd00::5:1]:7211"));
	CU_ASSERT_TRUE(shop_advert_rpc_url_ok("tcp://10.0.0.5:7211"));

	CU_ASSERT_FALSE(shop_advert_rpc_url_ok(""));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://h:0"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://h:99999"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://h:65536"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://h:07211"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://h"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://:7211"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("http://x"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("http://x:80"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("ipc:///tmp/x.ipc"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("inproc://x"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://127.0.0.1:7211\r\nX: y"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://127.0.0.1:7211/"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://user@h:7211"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://256.0.0.1:7211"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://127.0.0.01:7211"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://1.2.3:7211"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://-h:7211"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://h..x:7211"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://h x:7211"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://::1:7211"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://[::1%eth0]:7211"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://[zz::1]:7211"));
	CU_ASSERT_FALSE(shop_advert_rpc_url_ok("tcp://[\"]:7211"));
}

static void test_advert_admin_urls(void)
{
	CU_ASSERT_TRUE(shop_advert_admin_url_ok("http://127.0.0.1:7311"));
	CU_ASSERT_TRUE(shop_advert_admin_url_ok("https://product-a.shop.svc:7311"));
	CU_ASSERT_TRUE(shop_advert_admin_url_ok("http://[::1]:7311/admin"));
	CU_ASSERT_FALSE(shop_advert_admin_url_ok(""));
	CU_ASSERT_FALSE(shop_advert_admin_url_ok("127.0.0.1:7311"));
	CU_ASSERT_FALSE(shop_advert_admin_url_ok("tcp://127.0.0.1:7311"));
	CU_ASSERT_FALSE(shop_advert_admin_url_ok("http://127.0.0.1"));
	CU_ASSERT_FALSE(shop_advert_admin_url_ok("http://127.0.0.1:7311/?a=\"b\""));
	CU_ASSERT_FALSE(shop_advert_admin_url_ok("http://127.0.0.1:7311/<script>"));
	CU_ASSERT_TRUE(shop_advert_hostport_ok("10.0.0.5:7311", strlen("10.0.0.5:7311")));
	CU_ASSERT_FALSE(shop_advert_hostport_ok("10.0.0.5", strlen("10.0.0.5")));
}

static void test_advert_each_field_refused_by_name(void)
{
	shop_instance in;

	in = good();
	snprintf(in.service, sizeof(in.service), "Product");
	CU_ASSERT_EQUAL(shop_advert_check(&in), SHOP_ADVERT_SERVICE);
	in = good();
	snprintf(in.rpc_url, sizeof(in.rpc_url), "tcp://h:99999");
	CU_ASSERT_EQUAL(shop_advert_check(&in), SHOP_ADVERT_RPC_URL);
	CU_ASSERT_STRING_EQUAL(shop_advert_field(&in, SHOP_ADVERT_RPC_URL), "tcp://h:99999");
	in = good();
	snprintf(in.admin_url, sizeof(in.admin_url), "http://x");
	CU_ASSERT_EQUAL(shop_advert_check(&in), SHOP_ADVERT_ADMIN_URL);
	in = good();
	snprintf(in.version, sizeof(in.version), "1.0 \"beta\"");
	CU_ASSERT_EQUAL(shop_advert_check(&in), SHOP_ADVERT_VERSION);
	in = good();
	in.version[0] = '\0'; /* informational: may be empty */
	CU_ASSERT_EQUAL(shop_advert_check(&in), SHOP_ADVERT_OK);
	in = good();
	in.weight = SHOP_ADVERT_MAX_WEIGHT;
	CU_ASSERT_EQUAL(shop_advert_check(&in), SHOP_ADVERT_OK);
	in.weight = SHOP_ADVERT_MAX_WEIGHT + 1;
	CU_ASSERT_EQUAL(shop_advert_check(&in), SHOP_ADVERT_WEIGHT);
	CU_ASSERT_PTR_NULL(shop_advert_field(&in, SHOP_ADVERT_WEIGHT));
	in = good();
	in.started_unix_ms = -1;
	CU_ASSERT_EQUAL(shop_advert_check(&in), SHOP_ADVERT_STARTED);
	in = good();
	memset(in.instance, 'a', sizeof(in.instance)); /* no NUL inside */
	CU_ASSERT_EQUAL(shop_advert_check(&in), SHOP_ADVERT_TOO_LONG);
}

static void test_advert_fault_names_are_fixed(void)
{
	CU_ASSERT_STRING_EQUAL(shop_advert_fault_name(SHOP_ADVERT_UNPARSABLE), "unparsable");
	CU_ASSERT_STRING_EQUAL(shop_advert_fault_name(SHOP_ADVERT_STARTED), "started_unix_ms");
	CU_ASSERT_STRING_EQUAL(shop_advert_fault_name(SHOP_ADVERT_N_FAULTS), "?");
	for (int f = 0; f < SHOP_ADVERT_N_FAULTS; f++)
		CU_ASSERT_PTR_NOT_NULL(shop_advert_fault_name((shop_advert_fault)f));
}

SHOP_TEST_MAIN("advert_check", {"dev topology is safe", test_advert_dev_topology_is_safe},
	       {"header injection in instance refused",
		test_advert_refuses_header_injection_in_instance},
	       {"bad names refused", test_advert_refuses_bad_names},
	       {"rpc urls", test_advert_rpc_urls}, {"admin urls", test_advert_admin_urls},
	       {"each field refused by name", test_advert_each_field_refused_by_name},
	       {"fault names are fixed", test_advert_fault_names_are_fixed})
