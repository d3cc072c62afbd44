#!/usr/bin/env python3
"""seeds.py -- writes the committed seed corpora of the fuzzers,
tests/fuzz/corpus/<target>/<name>: valid inputs that reach deep into each
target, and the known triggers of the CVEs fixed in Debian 12's cJSON,
protobuf-c and hiredis (names start with the CVE). Run it after changing
an input format (the first bytes each target reads are documented at the
top of its .c file); libFuzzer adds what it finds to a scratch copy, never
here. Usage: python3 tests/fuzz/seeds.py"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

# ------------------------------------------------------------ protobuf


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def f_int(field, v):
    return key(field, 0) + varint(v)


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return key(field, 2) + varint(len(b)) + b


def f_packed(field, values):
    body = b"".join(varint(v) for v in values)
    return key(field, 2) + varint(len(body)) + body


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def rpc_request(method, payload=b"", caller=0, deadline=0, traceparent=TRACEPARENT):
    out = f_bytes(1, method) + f_bytes(2, payload) + f_bytes(3, traceparent)
    if deadline:
        out += f_int(4, deadline)
    if caller:
        out += f_int(5, caller)
    return out


# Malformed protobuf shapes, the inputs behind the CVEs fixed in
# protobuf-c 1.4.1 (Debian 12's version) and their neighbours.
PB_HOSTILE = {
    # CVE-2022-33070: a tag varint whose field number overflows 32 bits
    # (invalid arithmetic shift in parse_tag_and_wiretype).
    "CVE-2022-33070-tag-overflow": b"\xff\xff\xff\xff\x7f\x00",
    "CVE-2022-33070-tag-10-bytes": b"\xf8\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00",
    # CVE-2022-48468: a length that overflows when added to the field's
    # offset (unsigned overflow in parse_required_member / scan).
    "CVE-2022-48468-string-len-4G": b"\x0a\xff\xff\xff\xff\x0f" + b"abc",
    "CVE-2022-48468-string-len-2pow64": b"\x0a" + varint((1 << 64) - 1) + b"abc",
    "unknown-field-len-overflow": key(15, 2) + varint(0xFFFFFFF0) + b"xx",
    "unknown-field-len-2pow63": key(99, 2) + varint(1 << 63) + b"xx",
    "packed-len-past-end": key(1, 2) + varint(40) + b"\x01\x02",
    "packed-truncated-varint": key(1, 2) + varint(2) + b"\x80\x80",
    "packed-len-huge": key(1, 2) + varint(0x7FFFFFFFFFFFFFFF) + b"\x01",
    "varint-11-bytes": key(1, 0) + b"\xff" * 10 + b"\x01",
    "varint-unterminated": key(1, 0) + b"\xff\xff\xff",
    "field-number-zero": b"\x00\x01",
    "wire-type-6": bytes([1 << 3 | 6]) + b"\x01",
    "wire-type-7": bytes([1 << 3 | 7]) + b"\x01",
    "group-start-unterminated": bytes([1 << 3 | 3]) + b"\x08\x01",
    "group-end-stray": bytes([1 << 3 | 4]),
    "fixed64-truncated": bytes([1 << 3 | 1]) + b"\x01\x02",
    "fixed32-truncated": bytes([1 << 3 | 5]) + b"\x01",
    "repeated-many": key(1, 0) * 0 + b"".join(f_int(1, i + 1) for i in range(200)),
    "string-invalid-utf8": f_bytes(1, b"\xff\xfe\xc0\x80") + f_bytes(2, b"pass\x00word"),
    "submessage-len-past-end": key(3, 2) + varint(100) + f_int(1, 1),
}

# ---------------------------------------------------------------- JSON

# Deep nesting: stack exhaustion in recursive parsers (cJSON before its
# nesting limit; CJSON_NESTING_LIMIT is 1000). 2000 levels are past every
# limit and keep the seeds small (the e2e suite sends 100 000 over HTTP).
NEST = 2000
JSON_HOSTILE = {
    "nested-arrays-2000": b"[" * NEST + b"]" * NEST,
    "nested-arrays-unclosed": b"[" * NEST,
    "nested-objects": b'{"a":' * 1000 + b"1" + b"}" * 1000,
    # CVE-2023-53154: a string that ends inside an escape (heap over-read
    # in parse_string).
    "CVE-2023-53154-unterminated-escape": b'{"name":"abc\\',
    "CVE-2023-53154-escape-at-end": b'"\\',
    "unterminated-string": b'{"name":"abc',
    # CVE-2019-11834 / CVE-2019-11835: \u escapes cut short or with bad
    # surrogates (out-of-bounds read in utf16_literal_to_utf8).
    "CVE-2019-11834-lone-high-surrogate": b'{"name":"\\ud800"}',
    "CVE-2019-11834-high-then-ascii": b'{"name":"\\ud800\\u0041"}',
    "CVE-2019-11835-truncated-surrogate-pair": b'{"name":"\\ud83d\\ude',
    "CVE-2019-11835-truncated-u": b'{"name":"\\u12',
    "lone-low-surrogate": b'{"name":"\\udc00"}',
    "escaped-nul": b'{"name":"a\\u0000b"}',
    # CVE-2023-26819: a number longer than cJSON's 64-byte buffer.
    "CVE-2023-26819-long-number": b'{"a": true, "b": [ null,9999999999999999999999999999999999999999999999912345678901234567]}',
    # CVE-2019-1010239: an object cut after its key.
    "CVE-2019-1010239-key-no-value": b'{"":',
    "digits-70": b'{"supply_price":' + b"9" * 70 + b"}",
    "negative-digits-70": b'{"supply_price":-' + b"1" * 70 + b"}",
    "exponent-huge": b'{"supply_price":1e999999999}',
    "fraction": b'{"supply_price":1.5}',
    "int64-min": b'{"order_id":-9223372036854775808}',
    "int64-max-plus-1": b'{"order_id":9223372036854775808}',
    "raw-nul": b'{"name":"a\x00b"}',
    "invalid-utf8": b'{"name":"\xff\xfe\xc0\xaf"}',
    "overlong-slash": b'{"name":"\xc0\xaf"}',
    "utf8-bom": b'\xef\xbb\xbf{"name":"x"}',
    "duplicate-keys": b'{"name":"a","name":"b","name":1}',
    "sql-fragments": b'{"name":"\'; DROP TABLE products; --","supply_price":1}',
    "wrong-types": b'{"name":1,"supply_price":"1","product_ids":{"a":1}}',
    "array-of-null": b'{"product_ids":[1,null,3]}',
    "trailing-garbage": b'{"name":"a"} x',
    "leading-zero": b'{"supply_price":01}',
}

VALID_BODIES = [  # per route, in router.c's order
    b'{"name":"alice","password":"correct horse"}',
    b'{"name":"alice","password":"correct horse","client_address":"1.2.3.4"}',
    b'{"page_size":10,"page_token":"v1.0000000000000001"}',
    b'{"name":"Keyboard \\u00e9\\ud83d\\ude00","supply_price":1000000000}',
    b'{"product_ids":[1,2,3,3,9223372036854775807]}',
    b'{"order_id":1}',
    b'{"order_id":1,"product_id":2}',
]

PRODUCT, AUTH, ORDER = 0, 1, 2
UNREACHABLE, BUILT = 4, 8

SERVICE_METHODS = {
    PRODUCT: ["/shop.v1.ProductService/CreateProduct", "/shop.v1.ProductService/ListProducts",
              "/shop.v1.ProductService/GetProducts"],
    AUTH: ["/shop.v1.AuthService/SignUp", "/shop.v1.AuthService/SignIn"],
    ORDER: ["/shop.v1.OrderService/CreateOrder", "/shop.v1.OrderService/AddOrderItem",
            "/shop.v1.OrderService/GetOrder"],
}
VALID_PAYLOADS = {
    PRODUCT: [f_bytes(1, "Keyboard") + f_int(2, 1000),
              f_int(1, 10) + f_bytes(2, "v1.0000000000000001"),
              f_packed(1, [1, 2, 3])],
    AUTH: [f_bytes(1, "alice") + f_bytes(2, "correct horse"),
           f_bytes(1, "alice") + f_bytes(2, "correct horse") + f_bytes(3, "10.0.0.1")],
    ORDER: [f_packed(1, [1, 2, 2]) + f_bytes(2, "key-1"),
            f_int(1, 1) + f_int(2, 2),
            f_int(1, 1)],
}

# ---------------------------------------------------------------- RESP

RESP = {
    "ok": b"+OK\r\n",
    "integer": b":1\r\n",
    "bulk": b"$5\r\nhello\r\n",
    "nil": b"$-1\r\n",
    "array": b"*3\r\n$1\r\na\r\n:5\r\n$-1\r\n",
    "error": b"-ERR unknown command\r\n",
    # CVE-2021-32765: a multibulk count whose allocation overflows or is
    # huge (hiredis callocs count * sizeof(redisReply *) at once).
    "CVE-2021-32765-multibulk-2pow31-1": b"*2147483647\r\n",
    "CVE-2021-32765-multibulk-2pow32+1": b"*4294967297\r\n",
    "CVE-2021-32765-multibulk-2pow63-1": b"*9223372036854775807\r\n",
    "CVE-2021-32765-nested-huge": b"*1\r\n*2147483647\r\n",
    "multibulk-negative": b"*-5\r\n",
    "bulk-huge-len": b"$2147483647\r\nabc",
    "bulk-negative-len": b"$-2\r\n",
    "bulk-len-overflow": b"$99999999999999999999\r\n",
    "integer-garbage": b":abc\r\n",
    "integer-overflow": b":99999999999999999999\r\n",
    "nested-depth-10": b"*1\r\n" * 10 + b":1\r\n",
    "unknown-type": b"HTTP/1.1 200 OK\r\n\r\n",
    "bare-lf": b"+OK\n:1\n",
    "no-crlf": b"+" + b"A" * 300,
    "empty-array-then-more": b"*0\r\n+OK\r\n",
}


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    # fuzz_transcode: byte 0 < 0x80: JSON to route byte0 % 7; else bytes
    # to route ((byte0 & 0x7f) / 2) % 7, bit 0 response.
    for i, body in enumerate(VALID_BODIES):
        write("fuzz_transcode", "json-route%d" % i, bytes([i]) + body)
    for name, body in JSON_HOSTILE.items():
        route = 6 if "order_id" in name or "int64" in name else 3 if b"name" in body or b"supply" in body else 4
        write("fuzz_transcode", "json-" + name, bytes([route]) + body)
    order = (f_int(1, 7) + f_int(2, 42) + f_bytes(3, f_int(1, 1) + f_bytes(2, "Keyboard") + f_int(3, 1000))
             + f_int(4, 1000) + f_bytes(5, "2026-11-23T10:00:00.000Z") + f_bytes(6, "2026-11-23T10:00:00.000Z"))
    write("fuzz_transcode", "pb-order", bytes([0x80 | (4 * 2) | 1]) + order)
    for name, pb in PB_HOSTILE.items():
        write("fuzz_transcode", "pb-" + name, bytes([0x80 | (4 * 2) | 1]) + pb)

    # fuzz_router: byte 0 method (0 GET, 1 POST, 2 PUT...), byte 1 buffer size.
    paths = [(0, b"/products"), (1, b"/orders"), (0, b"/orders/123"), (2, b"/orders/9223372036854775807"),
             (0, b"/auth/../orders/1"), (1, b"/auth%2F..%2Forders"), (0, b"/%2e%2e/orders/1"),
             (0, b"//orders//1/"), (0, b"/orders/99999999999999999999"), (0, b"/orders/0"),
             (0, b"/%00"), (0, b"/a/b/../../../../healthz"), (3, b"/orders/1"), (0, b"/orders/%31"),
             (0, b"/" + b"a/" * 2000), (0, b"/%zz"), (0, b"/%"), (0, b"/products?page_size=1"),
             (0, b"application/json; charset=utf-8"), (0, b"100"), (0, b"1000"), (0, b"/./././metrics")]
    for i, (m, p) in enumerate(paths):
        write("fuzz_router", "path-%02d" % i, bytes([m, 0]) + p)
    write("fuzz_router", "small-buffer", bytes([0, 8]) + b"/orders/123/../../products")

    # fuzz_jwt: byte 0 bit 0 signed mode (bits 1-3 variants).
    claims = b'{"iss":"shop-auth","sub":"42","name":"alice","iat":1700000000,"exp":1700003600,"jti":"j1"}'
    write("fuzz_jwt", "signed-good", b"\x01" + claims)
    write("fuzz_jwt", "signed-other-key", b"\x09" + claims)
    write("fuzz_jwt", "signed-lowercase-spaces", b"\x07" + claims)
    hdr = b'{"alg":"HS256","typ":"JWT"}'
    for name, h, c in [
        ("alg-none", b'{"alg":"none"}', claims),
        ("alg-None", b'{"alg":"None","typ":"JWT"}', claims),
        ("alg-hs512", b'{"alg":"HS512"}', claims),
        ("alg-escaped", b'{"alg":"\\u0048S256"}', claims),
        ("crit", b'{"alg":"HS256","crit":["exp"]}', claims),
        ("dup-alg", b'{"alg":"HS256","alg":"none"}', claims),
        ("exp-past", hdr, claims.replace(b"1700003600", b"1600000000")),
        ("exp-1e400", hdr, claims.replace(b"1700003600", b"1e400")),
        ("exp-string", hdr, claims.replace(b"1700003600", b'"1700003600"')),
        ("exp-fraction", hdr, claims.replace(b"1700003600", b"1700003600.5")),
        ("sub-zero", hdr, claims.replace(b'"42"', b'"0"')),
        ("sub-huge", hdr, claims.replace(b'"42"', b'"99999999999999999999"')),
        ("iss-other", hdr, claims.replace(b"shop-auth", b"shop-authx")),
        ("dup-sub", hdr, claims[:-1] + b',"sub":"1"}'),
        ("claims-array", hdr, b"[1,2,3]"),
        ("CVE-2023-53154-unterminated-escape", hdr, b'{"sub":"\\'),
        ("CVE-2019-11834-lone-surrogate", hdr, b'{"sub":"\\ud800","exp":1700003600}'),
        ("CVE-2019-11835-truncated-pair", hdr, b'{"sub":"\\ud83d\\ude'),
        ("CVE-2023-26819-long-number", hdr, b'{"a": true, "b": [ null,9999999999999999999999999999999999999999999999912345678901234567]}'),
        ("nested-arrays", hdr, b'{"x":' + b"[" * 2000 + b"]" * 2000 + b"}"),
        ("nul-inside", hdr, claims[:10] + b"\\u0000" + claims[10:]),
    ]:
        write("fuzz_jwt", "signed-" + name, b"\x01" + h + b"\x00" + c)
    for i, v in enumerate([b"Bearer a.b.c", b"Basic dXNlcjpwYXNz", b"Bearer", b"Bearer  ", b"bearer eyJ.eyJ.sig",
                           b"Bearer eyJhbGciOiJIUzI1NiJ9.e30.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                           b"Bearer " + b"A" * 9000, b"Bearer a.b.c.d", b"Bearer a==.b.c", b"\tBearer x.y.z\t"]):
        write("fuzz_jwt", "raw-%02d" % i, b"\x00" + v)

    # fuzz_framing: byte 0 even: field lines; odd: a chunked body.
    for i, v in enumerate([b"C10", b"C 10 ", b"C10,10", b"C10\nC10", b"Tchunked", b"Tgzip, chunked",
                           b"C5\nTchunked", b"C-1", b"C0x10", b"C99999999999999999999", b"T chunked ,",
                           b"Tchunked\nTchunked", b"T", b"C"]):
        write("fuzz_framing", "decide-%02d" % i, b"\x00" + v)
    for i, v in enumerate([b"5\r\nhello\r\n0\r\n\r\n", b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
                           b"5\nhello\n0\n\n", b"fffffffffffffffff\r\n", b"0000000000000001\r\nx\r\n0\r\n\r\n",
                           b"5 \t;a\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n", b"1\r\nab\r\n", b"0\r\n\r\n",
                           b"-1\r\n", b"5\r\nhel", b"0\r\n \r\n\r\n"]):
        write("fuzz_framing", "chunked-%02d" % i, bytes([1 | (i * 0x26 & 0xFE)]) + v)

    # fuzz_rpc_dispatch: byte 0 = service | UNREACHABLE | BUILT; built: byte 1
    # = method index | caller << 4.
    for svc, methods in SERVICE_METHODS.items():
        for i, (m, p) in enumerate(zip(methods, VALID_PAYLOADS[svc])):
            for w in (0, UNREACHABLE):
                write("fuzz_rpc_dispatch", "raw-%d-%d-%s" % (svc, w, m.rsplit("/", 1)[1]),
                      bytes([svc | w]) + rpc_request(m, p, caller=7))
                write("fuzz_rpc_dispatch", "built-%d-%d-%s" % (svc, w, m.rsplit("/", 1)[1]),
                      bytes([svc | w | BUILT, i | 7 << 4]) + p)
        for name, pb in PB_HOSTILE.items():
            write("fuzz_rpc_dispatch", "built-%d-%s" % (svc, name), bytes([svc | UNREACHABLE | BUILT, 0x70]) + pb)
    for name, pb in PB_HOSTILE.items():
        write("fuzz_rpc_dispatch", "envelope-" + name, bytes([PRODUCT]) + pb)
    for name, req in [
        ("deadline-past", rpc_request(SERVICE_METHODS[PRODUCT][1], deadline=1)),
        ("deadline-negative", rpc_request(SERVICE_METHODS[PRODUCT][1], deadline=-1)),
        ("unknown-method", rpc_request("/shop.v1.ProductService/DropTables")),
        ("empty-method", rpc_request("")),
        ("bad-traceparent", rpc_request(SERVICE_METHODS[ORDER][2], f_int(1, 1), caller=1, traceparent="00-zz")),
        ("caller-negative", rpc_request(SERVICE_METHODS[ORDER][2], f_int(1, 1), caller=-5)),
        ("signup-sql", rpc_request(SERVICE_METHODS[AUTH][0], f_bytes(1, "'; DROP TABLE users; --") + f_bytes(2, "password-1"))),
        ("signup-long-name", rpc_request(SERVICE_METHODS[AUTH][0], f_bytes(1, "\u00e9" * 65) + f_bytes(2, "password-1"))),
        ("order-101-ids", rpc_request(SERVICE_METHODS[ORDER][0], f_packed(1, range(1, 102)), caller=1)),
        ("order-bad-key", rpc_request(SERVICE_METHODS[ORDER][0], f_packed(1, [1]) + f_bytes(2, "a b\x01"), caller=1)),
        ("get-products-1001", rpc_request(SERVICE_METHODS[PRODUCT][2], f_packed(1, range(1, 1002)))),
        ("list-bad-token", rpc_request(SERVICE_METHODS[PRODUCT][1], f_bytes(2, "v1.zzzzzzzzzzzzzzzz"))),
    ]:
        svc = {"signup": AUTH, "order": ORDER, "bad": ORDER, "caller": ORDER}.get(name.split("-")[0], PRODUCT)
        write("fuzz_rpc_dispatch", "raw-" + name, bytes([svc | UNREACHABLE]) + req)

    # fuzz_redis_reply: byte 0 = piece pattern (0: all at once).
    for i, (name, v) in enumerate(RESP.items()):
        write("fuzz_redis_reply", name, bytes([0 if i % 2 == 0 else 0x1B]) + v)

    # fuzz_names: the bytes of a name (issue 14's look-alikes and refusals).
    for name, v in [
        ("plain", "alice"), ("cyrillic-a", "\u0430lice"), ("fullwidth", "\uff41lice"),
        ("nfc", "caf\u00e9"), ("nfd", "cafe\u0301"), ("zero-width", "alice\u200b"),
        ("rlo", "\u202eevil"), ("case", "aB"), ("capital-i", "Ivy"), ("hangul", "\uae40\ubbfc\uc218"),
        ("ligature", "\ufdfa" * 64), ("marks", "a" + "\u0301" * 80), ("spaces", " \u3000kim\u00a0 "),
    ]:
        write("fuzz_names", name, v.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
