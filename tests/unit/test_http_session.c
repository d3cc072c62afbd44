/* test_http_session.c -- tests of edge-gateway/http_session.c that need no
 * lws connection: add_header, through which every answer header goes,
 * leaves out any value that could end its line. The file is included, as
 * h2o's unit tests do, to reach its static functions without widening the
 * header. */
#include "../cunit_main.h"

#include "../../edge-gateway/http_session.c"
#include "order.pb-c.h"

/* A refused value returns before lws is called, so no connection is
 * needed: nothing is written and the answer goes on (0). */
static void test_http_session_add_header_leaves_out_control_characters(void)
{
	static const char *const bad[] = {
	    "product-a\r\nSet-Cookie: session=stolen", "a\nb", "a\rb", "00-abc\x01", "x\x7f",
	};
	unsigned char buf[256], *p = buf;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(add_header(NULL, "x-served-by:", bad[i], &p, buf + sizeof(buf)), 0);
		CU_ASSERT_PTR_EQUAL(p, buf);
	}
	/* an empty or absent value is left out too, as before */
	CU_ASSERT_EQUAL(add_header(NULL, "location:", "", &p, buf + sizeof(buf)), 0);
	CU_ASSERT_EQUAL(add_header(NULL, "location:", NULL, &p, buf + sizeof(buf)), 0);
	CU_ASSERT_PTR_EQUAL(p, buf);
}

/* The connection's arena: aligned pieces one after the other, a message too
 * large for it spilled to malloc and freed (ASan and LeakSanitizer watch),
 * and an answer unpacked into it reads back whole, as many times as the
 * connection answers. */
static void test_http_session_arena_unpacks_answers_and_spills(void)
{
	gw_pss *pss = calloc(1, sizeof(*pss));
	ProtobufCAllocator arena = {arena_alloc, arena_free, pss};
	Shop__V1__OrderItem items[200], *ptrs[200];
	Shop__V1__Order o = SHOP__V1__ORDER__INIT, *back;
	uint8_t *buf;
	size_t len;
	void *a, *b;

	CU_ASSERT_PTR_NOT_NULL_FATAL(pss);
	a = arena_alloc(pss, 3);
	b = arena_alloc(pss, 1);
	CU_ASSERT_TRUE((char *)b - (char *)a == (ptrdiff_t)sizeof(max_align_t));
	CU_ASSERT_EQUAL((uintptr_t)b % _Alignof(max_align_t), 0);
	a = arena_alloc(pss, GW_ARENA); /* more than is left: malloc'd */
	CU_ASSERT_TRUE((char *)a < (char *)pss->arena ||
		       (char *)a >= (char *)pss->arena + sizeof(pss->arena));
	arena_free(pss, a);
	for (size_t i = 0; i < 200; i++) {
		shop__v1__order_item__init(&items[i]);
		items[i].product_id = (int64_t)i + 1;
		items[i].name = "keyboard";
		ptrs[i] = &items[i];
	}
	o.id = 7;
	o.created_at = "2026-12-04T00:00:00Z";
	o.items = ptrs;
	for (size_t n = 1; n <= 200; n *= 10) { /* 1 and 10 fit, 100 spill */
		o.n_items = n;
		len = shop__v1__order__get_packed_size(&o);
		buf = malloc(len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
		shop__v1__order__pack(&o, buf);
		for (int round = 0; round < 2; round++) {
			pss->arena_used = 0;
			back = shop__v1__order__unpack(&arena, len, buf);
			CU_ASSERT_PTR_NOT_NULL_FATAL(back);
			CU_ASSERT_EQUAL(back->id, 7);
			CU_ASSERT_EQUAL(back->n_items, n);
			CU_ASSERT_EQUAL(back->items[n - 1]->product_id, (int64_t)n);
			CU_ASSERT_STRING_EQUAL(back->items[n - 1]->name, "keyboard");
			CU_ASSERT_STRING_EQUAL(back->created_at, "2026-12-04T00:00:00Z");
			shop__v1__order__free_unpacked(back, &arena);
		}
		free(buf);
	}
	free(pss);
}

SHOP_TEST_MAIN("http_session",
	       {"add_header leaves out control characters",
		test_http_session_add_header_leaves_out_control_characters},
	       {"arena unpacks answers and spills",
		test_http_session_arena_unpacks_answers_and_spills})
