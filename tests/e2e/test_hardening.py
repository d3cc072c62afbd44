"""test_hardening.py -- the gateway's HTTP/1.1 edge (RFC 9112, issue 3 item 4)
over raw sockets: request framing that could be read two ways is refused and
the connection closed, transfer codings other than chunked answer 501, protocol
upgrades are never granted, idle and slow clients are cut off while others are
served, and pipelined requests are answered in order, each on its own merits,
or the connection is closed (never a wrong answer, never a hang). Every case
ends by checking that the gateway still answers a fresh GET /healthz.

libwebsockets 4.1.6 forces some of the shapes checked here; see
docs/decisions.md ("Edge hardening").
"""

import json
import os
import re
import secrets
import socket
import threading
import time

from stack import GATEWAY_PORT, HOST, Fail, api, auth, check, request

# ./shop test sets short timeouts for the test stack; the defaults are 10 s.
IDLE_S = int(os.environ.get("SHOP_GATEWAY_IDLE_TIMEOUT_S", "10"))
REQUEST_S = int(os.environ.get("SHOP_GATEWAY_REQUEST_TIMEOUT_S", "10"))
SLACK_S = 2.5  # lws checks its timeouts about once a second

UPGRADE_HEADERS = ("Connection: Upgrade\r\nUpgrade: websocket\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


# ------------------------------------------------------------------ helpers

class Reply:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<%s %r>" % (self.status, self.body[:200])


def parse_replies(data, heads=0):
    """Splits a byte stream into the HTTP responses it holds (by
    Content-Length; the first `heads` answer HEAD requests and so have no
    content, RFC 9110 §9.3.2); a trailing fragment is returned as a Reply
    with status None."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
        if not sep or not m:
            out.append(Reply(None, {}, data))
            break
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        n = int(headers.get("content-length", "0")) if len(out) >= heads else 0
        out.append(Reply(int(m.group(1)), headers, rest[:n]))
        data = rest[n:]
    return out


def exchange(data, wait_s=5.0, heads=0):
    """Sends data in one write, reads until the server closes or wait_s
    passes. Returns (replies, closed, seconds)."""
    s = socket.create_connection((HOST, GATEWAY_PORT), timeout=wait_s)
    t0 = time.monotonic()
    got, closed = b"", False
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while True:
            left = wait_s - (time.monotonic() - t0)
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
    finally:
        s.close()
    return parse_replies(got, heads), closed, time.monotonic() - t0


def check_refusal(replies, closed, status, code, what):
    """One problem+json answer with status and code, then a closed
    connection."""
    check(len(replies) == 1, "%s: want one %d answer, got %r" % (what, status, replies))
    r = replies[0]
    check(r.status == status, "%s: want %d, got %r" % (what, status, r))
    ct = r.headers.get("content-type", "").split(";")[0].strip()
    check(ct == "application/problem+json", "%s: content-type %r" % (what, ct))
    p = r.json()
    check(p.get("code") == code and p.get("status") == status,
          "%s: problem %r, want code %s" % (what, p, code))
    check(p.get("detail") and p.get("trace_id"), "%s: problem lacks detail or trace_id" % what)
    check(closed, "%s: the connection stayed open after the %d" % (what, status))


def check_up(after):
    r = request("GET", "/healthz", timeout=5)
    check(r.status == 200, "gateway down after %s: %r" % (after, r))


def head(method, path, headers):
    return ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (method, path, headers)).encode()


# -------------------------------------------------------------------- cases

def test_length_with_transfer_encoding_is_400_and_closes():
    cases = [
        head("POST", "/auth/sign-in", "Content-Type: application/json\r\nContent-Length: 5\r\n"
             "Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n",
        head("POST", "/auth/sign-in", "Transfer-Encoding: chunked\r\n"
             "Content-Type: application/json\r\nContent-Length: 2\r\n") + b"{}",
        head("GET", "/healthz", "Content-Length: 0\r\nTransfer-Encoding: gzip\r\n"),
        # the smuggling shape: the body by Content-Length hides a request
        head("POST", "/products", "%sContent-Type: application/json\r\nContent-Length: 4\r\n"
             "Transfer-Encoding: chunked\r\n" % _auth_line())
        + b"0\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for i, data in enumerate(cases):
        replies, closed, _ = exchange(data)
        check_refusal(replies, closed, 400, "invalid_argument", "CL+TE #%d" % i)
    check_up("Content-Length with Transfer-Encoding")


def test_invalid_or_doubled_content_length_is_400_and_closes():
    values = ["abc", "-5", "+5", "5 5", " 5a", "0x10", "1e3", "5.0", "",
              "99999999999999999999999", "5, 5", "5,6"]
    for v in values:
        for method, path in (("POST", "/auth/sign-in"), ("GET", "/healthz")):
            data = head(method, path, "Content-Type: application/json\r\n"
                        "Content-Length: %s\r\n" % v) + b"{}   "
            replies, closed, _ = exchange(data)
            check_refusal(replies, closed, 400, "invalid_argument",
                          "%s Content-Length %r" % (method, v))
    for a, b in (("5", "5"), ("5", "6"), ("0", "0")):
        data = head("POST", "/auth/sign-in", "Content-Type: application/json\r\n"
                    "Content-Length: %s\r\nContent-Length: %s\r\n" % (a, b)) + b"{}   "
        replies, closed, _ = exchange(data)
        check_refusal(replies, closed, 400, "invalid_argument",
                      "two Content-Length lines %s, %s" % (a, b))
    # Whitespace around a valid value is not part of it (RFC 9110 §5.5).
    r, _, _ = exchange(head("GET", "/healthz", "Content-Length:  0 \r\nConnection: close\r\n"))
    check(len(r) == 1 and r[0].status == 200, "'Content-Length:  0 ' -> %r" % r)
    check_up("invalid Content-Length")


def test_unknown_transfer_coding_is_501_and_closes():
    for te in ("gzip, chunked", "identity", "foo", "chunked, gzip", "chunked, chunked",
               "chunked;ext=1", ""):
        data = head("POST", "/auth/sign-in", "Content-Type: application/json\r\n"
                    "Transfer-Encoding: %s\r\n" % te) + b"2\r\n{}\r\n0\r\n\r\n"
        replies, closed, _ = exchange(data)
        check_refusal(replies, closed, 501, "not_implemented", "Transfer-Encoding %r" % te)
    data = head("GET", "/healthz", "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n")
    replies, closed, _ = exchange(data + b"0\r\n\r\n")
    check_refusal(replies, closed, 501, "not_implemented", "two Transfer-Encoding lines")
    check_up("unknown transfer codings")


def test_chunked_body_is_decoded_and_malformed_one_refused():
    name = "Chunked %s" % secrets.token_hex(4)
    body = json.dumps({"name": name, "supply_price": 1234}).encode()
    chunked = (b"7;ext=x\r\n" + body[:7] + b"\r\n" + b"%x\r\n" % (len(body) - 7) + body[7:]
               + b"\r\n0\r\nX-Trailer: yes\r\n\r\n")
    data = head("POST", "/products", "%sContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n" % _auth_line()) + chunked
    replies, closed, _ = exchange(data)
    check(len(replies) == 1 and replies[0].status == 201, "chunked POST /products -> %r" % replies)
    p = replies[0].json()
    check(p.get("name") == name and p.get("supply_price") == 1234, "created %r" % p)
    # lws 4.1.6 goes on reading a chunked body as one that ends with the
    # connection, so the gateway closes after answering.
    check(closed, "connection left open after a chunked body")
    for bad in (b"2\n{}\r\n0\r\n\r\n", b"zz\r\n{}\r\n0\r\n\r\n", b"1\r\n{}\r\n0\r\n\r\n"):
        data = head("POST", "/auth/sign-in", "Content-Type: application/json\r\n"
                    "Transfer-Encoding: chunked\r\n") + bad
        replies, closed, _ = exchange(data)
        check_refusal(replies, closed, 400, "invalid_argument", "chunked body %r" % bad)
    check_up("chunked bodies")


def test_websocket_upgrade_is_never_granted():
    for method, path, extra in (("GET", "/healthz", ""), ("GET", "/", ""),
                                ("GET", "/products?page_size=1", _auth_line()),
                                ("GET", "/nope", "Accept-Language: ko\r\n")):
        replies, closed, _ = exchange(head(method, path, extra + UPGRADE_HEADERS))
        check_refusal(replies, closed, 400, "invalid_argument", "websocket upgrade of %s" % path)
        check(b"Sec-WebSocket-Accept" not in replies[0].body, "handshake answered")
    # h2c, and an upgrade lws does not know (it answers 403 itself): never 101
    for up in ("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
               "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
               "Connection: Upgrade\r\nUpgrade: foo/1\r\n",
               "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n"):
        replies, closed, _ = exchange(head("GET", "/healthz", up))
        check(replies and replies[0].status in (400, 403) and closed,
              "upgrade %r answered %r (closed %s)" % (up.splitlines()[0], replies, closed))
    check_up("upgrade requests")


def test_idle_and_slow_clients_are_cut_off():
    limit_request = REQUEST_S + SLACK_S
    results = {}

    def nothing(s):
        pass

    def dribbled_header(s):
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400:
            s.send(bytes([b]))
            time.sleep(0.5)

    def stopped_body(s):
        s.send(head("POST", "/auth/sign-in", "Content-Type: application/json\r\n"
                    "Content-Length: 100\r\n") + b'{"na')

    def dribbled_body(s):
        s.send(head("POST", "/auth/sign-in", "Content-Type: application/json\r\n"
                    "Content-Length: 1000\r\n"))
        for _ in range(1000):
            s.send(b" ")
            time.sleep(0.5)

    def idle_keep_alive(s):
        s.send(head("GET", "/healthz", ""))

    clients = {"sends nothing": (nothing, limit_request),
               "dribbles a header": (dribbled_header, limit_request),
               "stops mid-body": (stopped_body, limit_request),
               "dribbles a body": (dribbled_body, limit_request),
               "idle after an answer": (idle_keep_alive, IDLE_S + SLACK_S)}

    def run(name, fn, limit):
        s = socket.create_connection((HOST, GATEWAY_PORT), timeout=limit + 10)
        t0 = time.monotonic()
        done = threading.Event()
        got = [b""]

        def reader():
            try:
                while True:
                    c = s.recv(4096)
                    if not c:
                        break
                    got[0] += c
            except OSError:
                pass
            results[name] = (time.monotonic() - t0, got[0])
            done.set()

        threading.Thread(target=reader, daemon=True).start()
        try:
            fn(s)
        except OSError:
            pass  # the server closed while we were sending: expected
        done.wait(limit + 10)
        s.close()

    threads = [threading.Thread(target=run, args=(n, f, lim), daemon=True)
               for n, (f, lim) in clients.items()]
    for t in threads:
        t.start()
    time.sleep(0.5)
    # Meanwhile a fresh client is served at once.
    t0 = time.monotonic()
    r = request("GET", "/healthz", timeout=5)
    fresh = time.monotonic() - t0
    check(r.status == 200 and fresh < 1.0, "fresh client while slow ones wait: %r in %.2f s"
          % (r, fresh))
    for t in threads:
        t.join(max(IDLE_S, REQUEST_S) + 20)
    notes = []
    for name, (_, limit) in clients.items():
        check(name in results, "%s: never closed" % name)
        secs, got = results[name]
        check(secs <= limit, "%s: closed after %.1f s, limit %.1f s" % (name, secs, limit))
        if name == "idle after an answer":
            check(got.startswith(b"HTTP/1.1 200"), "%s: the answer came first: %r" % (name, got))
        else:
            check(b" 200 " not in got, "%s: served: %r" % (name, got[:100]))
        notes.append("%s %.1f s" % (name, secs))
    check_up("slow clients")
    return ", ".join(notes)


def test_pipelined_requests_are_answered_in_order():
    data = (head("GET", "/healthz", "") + head("GET", "/products?page_size=1", _auth_line())
            + head("GET", "/nope", "") + head("GET", "/healthz", "Connection: close\r\n"))
    replies, closed, secs = exchange(data)
    check([r.status for r in replies] == [200, 200, 404, 200],
          "pipelined GETs answered %r" % replies)
    check(replies[0].json() == {"status": "up"}, "first answer %r" % replies[0])
    check("products" in replies[1].json(), "second answer %r" % replies[1])
    check(replies[2].json().get("code") == "not_found", "third answer %r" % replies[2])
    check(closed and secs < 3, "not closed after Connection: close (%.1f s)" % secs)
    check_up("pipelined GETs")


def test_head_is_answered_without_content():
    # No route takes HEAD (405 with Allow, or 404), but the answer must carry
    # no content: bytes after its header block would be read as the next
    # answer on the connection. Pipelined, so that any stray byte shows.
    data = (head("HEAD", "/products", _auth_line()) + head("HEAD", "/nope", "")
            + head("GET", "/healthz", "Connection: close\r\n"))
    replies, closed, _ = exchange(data, heads=2)
    check([r.status for r in replies] == [405, 404, 200],
          "HEAD, HEAD, GET answered %r" % replies)
    allow = {m.strip() for m in replies[0].headers.get("allow", "").split(",")}
    check(allow == {"GET", "POST"}, "405 Allow %r" % replies[0].headers)
    for r in replies[:2]:
        check(int(r.headers.get("content-length", "0")) > 0,
              "HEAD answer does not say its length: %r" % r.headers)
    check(replies[2].json() == {"status": "up"}, "GET after HEADs answered %r" % replies[2])
    check(closed, "not closed after Connection: close")
    check_up("HEAD requests")


def test_pipelined_bodies_are_answered_correctly_or_closed():
    # libwebsockets 4.1.6 hands a request pipelined behind another its own
    # request line as its body. The gateway must then answer that request
    # 503 and close (nothing was done: safe to retry) -- never act on the
    # wrong bytes, never hang. A request pipelined behind a body is left
    # unanswered on a closed connection.
    name = "Pipelined %s" % secrets.token_hex(4)
    body = json.dumps({"name": name, "supply_price": 7}).encode()
    create = head("POST", "/products", "%sContent-Type: application/json\r\n"
                  "Content-Length: %d\r\n" % (_auth_line(), len(body))) + body
    replies, closed, secs = exchange(head("GET", "/healthz", "") + create)
    check(replies and replies[0].status == 200, "GET then POST: first %r" % replies)
    second = [r.status for r in replies[1:]]
    check(second in ([201], [503]), "GET then POST: second answered %r" % replies[1:])
    created = second == [201]
    if not created:
        check(closed and secs < 3, "503 without closing (%.1f s)" % secs)
        check(replies[1].headers.get("connection", "").lower() == "close", "503 without close")
    check(_product_named(name) == created,
          "GET then POST answered %r but the product exists: %s" % (second, not created))

    name2 = "Pipelined %s" % secrets.token_hex(4)
    body2 = json.dumps({"name": name2, "supply_price": 8}).encode()
    create2 = head("POST", "/products", "%sContent-Type: application/json\r\n"
                   "Content-Length: %d\r\n" % (_auth_line(), len(body2))) + body2
    replies, closed, secs = exchange(create2 + head("GET", "/nope", ""))
    statuses = [r.status for r in replies]
    check(statuses in ([201, 404], [201]), "POST then GET answered %r" % replies)
    check(replies[0].json().get("name") == name2, "POST then GET: first %r" % replies[0])
    if statuses == [201]:
        check(closed and secs < 3, "POST then GET: second neither answered nor closed")

    # Smuggling through the misdelivery: the tail of the pipelined body is
    # never read as a request of its own.
    inner = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    for pad in (0, 100, 300):
        b = b"x" * pad + inner
        p = head("POST", "/auth/sign-in", "Content-Type: application/json\r\n"
                 "Content-Length: %d\r\n" % len(b)) + b
        replies, closed, secs = exchange(head("GET", "/healthz", "") + p)
        statuses = [r.status for r in replies]
        check(404 not in statuses, "pipelined body tail answered as a request: %r" % replies)
        check(statuses[0] == 200 and (closed or len(statuses) == 2),
              "GET then POST(pad %d) -> %r, closed %s" % (pad, replies, closed))
    check_up("pipelined bodies")


def _auth_line():
    return "Authorization: %s\r\n" % auth()["Authorization"]


def _product_named(name):
    token = ""
    for _ in range(100):
        r = api("GET", "/products?page_size=1000" + ("&page_token=" + token if token else ""))
        if r.status != 200:
            raise Fail("listing products: %r" % r)
        doc = r.json()
        if any(p.get("name") == name for p in doc["products"]):
            return True
        token = doc.get("next_page_token", "")
        if not token:
            return False
    raise Fail("more than 100 pages of products")


CASES = [
    test_length_with_transfer_encoding_is_400_and_closes,
    test_invalid_or_doubled_content_length_is_400_and_closes,
    test_unknown_transfer_coding_is_501_and_closes,
    test_chunked_body_is_decoded_and_malformed_one_refused,
    test_websocket_upgrade_is_never_granted,
    test_idle_and_slow_clients_are_cut_off,
    test_pipelined_requests_are_answered_in_order,
    test_head_is_answered_without_content,
    test_pipelined_bodies_are_answered_correctly_or_closed,
]
