"""test_products.py -- POST/GET /products through the gateway: bodies,
paging, 70:30 balancing, and the headers every proxied answer carries."""

import http.client
import secrets

from stack import GATEWAY_PORT, HOST, api, check, check_problem, check_product, check_proxied


def create(name, price):
    r = api("POST", "/products", {"name": name, "supply_price": price})
    check(r.status == 201, "POST /products %r -> %r" % (name, r))
    check_proxied(r)
    p = r.json()
    check_product(p)
    return r, p


def list_all(page_size):
    """Walks every page; returns (products, pages)."""
    out, pages, token = [], 0, ""
    while True:
        path = "/products?page_size=%d" % page_size
        if token:
            path += "&page_token=" + token
        r = api("GET", path)
        check(r.status == 200, "GET %s -> %r" % (path, r))
        check_proxied(r)
        doc = r.json()
        check(isinstance(doc.get("products"), list), "no products list in %r" % doc)
        check(isinstance(doc.get("next_page_token"), str), "no next_page_token in %r" % doc)
        check(len(doc["products"]) <= page_size, "page of %d > page_size %d"
              % (len(doc["products"]), page_size))
        for p in doc["products"]:
            check_product(p)
        out += doc["products"]
        pages += 1
        token = doc["next_page_token"]
        if not token:
            return out, pages
        check(doc["products"], "empty page with a next_page_token")
        check(pages < 10000, "paging does not end")


def test_create_product_answers_201_with_location():
    r, p = create("Keyboard", 30000)
    check(p["name"] == "Keyboard" and p["supply_price"] == 30000, "body %r" % p)
    loc = r.header("location")
    check(loc == "/products/%d" % p["id"], "Location %r for id %d" % (loc, p["id"]))
    check((r.header("content-type") or "").startswith("application/json"),
          "content-type %r" % r.header("content-type"))


def test_list_products_includes_the_new_one_ordered_by_id():
    name = "Mouse " + secrets.token_hex(4)
    _, p = create(name, 12000)
    products, _ = list_all(1000)
    ids = [x["id"] for x in products]
    check(ids == sorted(ids) and len(set(ids)) == len(ids), "not ordered by id: %r" % ids[:50])
    mine = [x for x in products if x["id"] == p["id"]]
    check(mine and mine[0]["name"] == name and mine[0]["supply_price"] == 12000,
          "created product %r not listed as created" % p)


def test_paging_walks_every_product():
    made = [create("Paged %d %s" % (i, secrets.token_hex(3)), 1000 + i)[1]["id"] for i in range(5)]
    products, pages = list_all(2)
    ids = [x["id"] for x in products]
    check(len(set(ids)) == len(ids), "a product on two pages: %r" % ids)
    check(ids == sorted(ids), "pages not in id order: %r" % ids)
    check(all(i in ids for i in made), "paging missed some of %r" % made)
    check(pages >= 3, "only %d pages of 2 for %d products" % (pages, len(ids)))
    whole, _ = list_all(1000)
    check([x["id"] for x in whole] == ids, "page_size 2 and 1000 disagree")
    return "%d products in %d pages" % (len(ids), pages)


def test_unicode_names_count_characters_not_bytes():
    _, p = create("가" * 200, 0)  # 200 characters, 600 bytes
    check(p["name"] == "가" * 200, "name changed: %r" % p["name"][:20])
    _, p = create("  Trimmed  ", 1000000000)
    check(p["name"] == "Trimmed", "name not trimmed: %r" % p["name"])
    check(p["supply_price"] == 1000000000, "price %r" % p["supply_price"])


def test_unknown_fields_are_ignored():
    r = api("POST", "/products", {"name": "Extra", "supply_price": 5, "colour": "red"})
    check(r.status == 201, "unknown field -> %r" % r)
    check("colour" not in r.json(), "unknown field echoed")


def test_product_instances_serve_about_70_30():
    counts = {}
    n = 600
    conn = http.client.HTTPConnection(HOST, GATEWAY_PORT, timeout=10)
    try:
        for _ in range(n):
            try:
                r = api("GET", "/products?page_size=1", conn=conn)
            except (http.client.HTTPException, OSError):
                conn.close()
                conn = http.client.HTTPConnection(HOST, GATEWAY_PORT, timeout=10)
                r = api("GET", "/products?page_size=1", conn=conn)
            check(r.status == 200, "GET /products -> %r" % r)
            who = check_proxied(r)
            counts[who] = counts.get(who, 0) + 1
    finally:
        conn.close()
    check(set(counts) == {"product-a", "product-b"}, "served by %r" % counts)
    share = counts["product-a"] / n
    check(0.6 <= share <= 0.8, "product-a served %.3f of %d (want 0.6..0.8): %r" % (share, n, counts))
    return "product-a %d, product-b %d (%.1f %%)" % (counts["product-a"], counts["product-b"], 100 * share)


def test_service_errors_are_proxied_problems():
    r = api("POST", "/products", {"name": "x" * 201, "supply_price": 1})
    check_problem(r, 400, "invalid_argument")
    check_proxied(r)


CASES = [
    test_create_product_answers_201_with_location,
    test_list_products_includes_the_new_one_ordered_by_id,
    test_paging_walks_every_product,
    test_unicode_names_count_characters_not_bytes,
    test_unknown_fields_are_ignored,
    test_product_instances_serve_about_70_30,
    test_service_errors_are_proxied_problems,
]
