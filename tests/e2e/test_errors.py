"""test_errors.py -- §2 errors: problem+json with a stable code for every
refusal, and the gateway's limits (body, header block, routes, media type)."""

from stack import Fail, api, auth, check, check_problem, raw_request, request


def bad_create(body, why, content_type="application/json"):
    r = api("POST", "/products", body, headers={"Content-Type": content_type})
    try:
        check_problem(r, 400, "invalid_argument")
    except Fail as e:
        raise Fail("%s: %s" % (why, e))
    return r


def test_unknown_route_is_404():
    check_problem(api("GET", "/nope"), 404, "not_found")
    check_problem(api("GET", "/products/extra/segments"), 404, "not_found")
    check_problem(request("GET", "/nope"), 404, "not_found")


def test_wrong_method_is_405_with_allow():
    r = api("DELETE", "/products")
    check_problem(r, 405, "method_not_allowed")
    allow = {m.strip() for m in (r.header("allow") or "").split(",")}
    check({"GET", "POST"} <= allow, "Allow %r lacks GET, POST" % r.header("allow"))
    check("DELETE" not in allow, "Allow %r names DELETE" % r.header("allow"))


def test_non_json_body_is_415():
    r = api("POST", "/products", b"name=Keyboard", headers={"Content-Type": "text/plain"})
    check_problem(r, 415, "unsupported_media_type")
    r = api("POST", "/products", b'{"name":"a","supply_price":1}', headers={})
    check_problem(r, 415, "unsupported_media_type")


def test_body_over_64_kib_is_413():
    body = b'{"name":"' + b"x" * (65 * 1024) + b'","supply_price":1}'
    head = ("POST /products HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Authorization: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (auth()["Authorization"], len(body))).encode()
    status, reply = raw_request(head + body)
    check(status == 413, "want 413, got %r" % reply[:300])
    check(b"payload_too_large" in reply, "413 without code payload_too_large: %r" % reply[:400])
    r = api("POST", "/products", {"name": "Padded", "supply_price": 1, "pad": "y" * 60000})
    check(r.status == 201, "a 60 KB body was refused: %r" % r)


def test_header_block_over_8_kib_is_refused():
    # The gateway measures the fields libwebsockets knows (Cookie here) and
    # answers 431 over 8 KiB; fields lws does not know cannot be listed with
    # lws 4.1.6 and are bounded by its header space only (docs/decisions.md,
    # "HTTP limits and framing"; tests/e2e/test_http_limits.py).
    head = ("GET /products HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: %s\r\n"
            "Cookie: %s\r\nConnection: close\r\n\r\n"
            % (auth()["Authorization"], "p" * 9000)).encode()
    status, reply = raw_request(head)
    check(status == 431, "a 9 KB header block answered %r" % reply[:200])
    check(b"application/problem+json" in reply, "431 without a problem body: %r" % reply[:300])
    check(request("GET", "/healthz").status == 200, "gateway down after a 9 KB header block")
    r = api("GET", "/products?page_size=1", headers={"X-Pad": "p" * 6000})
    check(r.status == 200, "a 6 KB header block was refused: %r" % r)


def test_far_larger_header_block_leaves_the_gateway_up():
    head = ("GET /products HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
            "".join("X-Pad-%d: %s\r\n" % (i, "q" * 1000) for i in range(256)) + "\r\n").encode()
    status, reply = raw_request(head)
    check(status in (None, 400, 431), "256 KB of headers answered %r" % reply[:200])
    r = request("GET", "/healthz")
    check(r.status == 200, "gateway down after a huge header block: %r" % r)


def test_malformed_json_is_400():
    bad_create(b'{"name": "Keyboard", "supply_price": ', "truncated")
    bad_create(b"[1, 2]", "not an object")
    bad_create(b'{"name": "a\x00b", "supply_price": 1}', "raw control byte")
    bad_create(b"\xff\xfe{}", "not UTF-8")


def test_wrong_types_are_400():
    bad_create({"name": 5, "supply_price": 1}, "name number")
    bad_create({"name": "Keyboard", "supply_price": "30000"}, "price string")
    bad_create({"name": "Keyboard", "supply_price": 1.5}, "price fraction")
    bad_create({"name": ["Keyboard"], "supply_price": 1}, "name array")


def test_name_rules_are_400():
    bad_create({"name": "x" * 201, "supply_price": 1}, "201 characters")
    bad_create({"name": "가" * 201, "supply_price": 1}, "201 characters, multibyte")
    bad_create({"name": "", "supply_price": 1}, "empty")
    bad_create({"name": "   ", "supply_price": 1}, "blank")
    bad_create({"name": "tab\there", "supply_price": 1}, "control character")
    bad_create({"supply_price": 1}, "missing name")


def test_price_out_of_range_is_400():
    bad_create({"name": "Keyboard", "supply_price": -1}, "negative")
    bad_create({"name": "Keyboard", "supply_price": 1000000001}, "over 1e9")
    bad_create({"name": "Keyboard", "supply_price": 10 ** 30}, "over int64")


def test_bad_page_size_and_token_are_400():
    for q in ("page_size=0", "page_size=1001", "page_size=abc", "page_size=-1", "page_size=",
              "page_size=1.5", "page_size=+5", "page_token=not-a-token", "page_token=AAAA"):
        r = api("GET", "/products?" + q)
        try:
            check_problem(r, 400, "invalid_argument")
        except Fail as e:
            raise Fail("?%s: %s" % (q, e))
    r = api("GET", "/products?page_size=1000")
    check(r.status == 200, "page_size=1000 -> %r" % r)


CASES = [
    test_unknown_route_is_404,
    test_wrong_method_is_405_with_allow,
    test_non_json_body_is_415,
    test_body_over_64_kib_is_413,
    test_header_block_over_8_kib_is_refused,
    test_far_larger_header_block_leaves_the_gateway_up,
    test_malformed_json_is_400,
    test_wrong_types_are_400,
    test_name_rules_are_400,
    test_price_out_of_range_is_400,
    test_bad_page_size_and_token_are_400,
]
