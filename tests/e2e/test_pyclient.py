"""test_pyclient.py -- the Python client of clients/python (shop_client)
against the running stack over nng, and against fake SP peers on loopback
that answer wrongly or not at all. What the client gets over RPC is compared
with what the gateway answers over HTTP for the same data."""

import base64
import hashlib
import hmac
import json
import os
import random
import re
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time

import stack
from stack import RPC_PORTS, ROOT, check, request

CLIENT_DIR = os.path.join(ROOT, "clients", "python")
sys.path.insert(0, CLIENT_DIR)

import shop_client  # noqa: E402
from shop_client import stubs  # noqa: E402
from shop_client.stubs import product_pb2, registry_pb2, rpc_pb2  # noqa: E402

REGISTRY_URL = "tcp://127.0.0.1:%d" % (7101 + stack.OFFSET)
PASSWORD = "password-123"
TRACEPARENT_RE = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$")


def url_of(instance):
    return "tcp://127.0.0.1:%d" % RPC_PORTS[instance]


def client(**kw):
    return shop_client.ShopClient(REGISTRY_URL, **kw)


def raises(cls, fn, *args, **kw):
    """The exception fn raised, checked to be a cls."""
    try:
        fn(*args, **kw)
    except Exception as e:  # noqa: BLE001 -- the class is checked below
        check(isinstance(e, cls), "want %s, got %s: %s" % (cls.__name__, type(e).__name__, e))
        return e
    raise stack.Fail("want %s, the call succeeded" % cls.__name__)


def fresh_name(tag):
    return "py-%s-%s" % (tag, secrets.token_hex(4))


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def bearer(token):
    return {"Authorization": "Bearer " + token}


def check_jwt(token, user_id, name):
    """An HS256 JWT with the claims of CONTRACT §2, signed with the stack's secret."""
    parts = token.split(".")
    check(len(parts) == 3 and all(parts), "token is not three JWT segments: %r" % token[:80])
    head = json.loads(b64url_decode(parts[0]))
    claims = json.loads(b64url_decode(parts[1]))
    check(head.get("alg") == "HS256", "alg %r" % head)
    check(claims.get("iss") == "shop-auth" and claims.get("sub") == str(user_id)
          and claims.get("name") == name, "claims %r for user %d %r" % (claims, user_id, name))
    check(claims.get("exp", 0) - claims.get("iat", 0) == 3600, "exp - iat in %r" % claims)
    key = stack.stack_env()["SHOP_JWT_SECRET"].encode()
    sig = hmac.new(key, (parts[0] + "." + parts[1]).encode(), hashlib.sha256).digest()
    check(hmac.compare_digest(sig, b64url_decode(parts[2])), "signature not SHOP_JWT_SECRET's")
    return claims


_users = {}


def user(tag):
    """(user_id, token) of a user signed up through the client, once per tag."""
    if tag not in _users:
        with client() as shop:
            s = shop.sign_up(fresh_name(tag), PASSWORD)
        _users[tag] = (s.user_id, s.access_token)
    return _users[tag]


_products = []


def products():
    """Two products made through the client: Product messages."""
    if not _products:
        with client() as shop:
            for name, price in (("Py pen " + secrets.token_hex(3), 900),
                                ("Py lamp " + secrets.token_hex(3), 45000)):
                _products.append(shop.create_product(name, price))
    return _products


# ------------------------------------------------------------ fake SP peers

REP_HELLO = b"\x00SP\x00\x00\x31\x00\x00"


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def read_request(conn):
    """(request id bytes, body) of one REQ frame; checks the handshake first."""
    hello = recv_exact(conn, 8)
    check(hello == b"\x00SP\x00\x00\x30\x00\x00", "client handshake %r, want REQ's" % hello)
    (n,) = struct.unpack(">Q", recv_exact(conn, 8))
    frame = recv_exact(conn, n)
    return frame[:4], frame[4:]


def frame(data):
    return struct.pack(">Q", len(data)) + data


def listen_local(backlog):
    """A TCP socket listening on 127.0.0.1 (a free port), and its tcp:// URL."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(backlog)
    return lsock, "tcp://127.0.0.1:%d" % lsock.getsockname()[1]


def shut_all(socks):
    # shutdown, not just close: it wakes a peer's thread out of a blocking
    # accept or recv.
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


class FakePeer:
    """A TCP listener on 127.0.0.1 whose successive connections are served by
    the functions of scripts, each (peer, conn); what a script saw goes to
    peer.seen. Closing stops the listener (later connects are refused)."""

    def __init__(self, *scripts):
        self.lsock, self.url = listen_local(8)
        self.lsock.settimeout(10)
        self.seen = []
        self.errors = []
        self._conns = []
        self._thread = threading.Thread(target=self._serve, args=(scripts,), daemon=True)
        self._thread.start()

    def _serve(self, scripts):
        for script in scripts:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            self._conns.append(conn)
            conn.settimeout(10)
            try:
                script(self, conn)
            except Exception as e:  # noqa: BLE001 -- reported by the case
                self.errors.append(e)

    def close(self):
        shut_all([self.lsock] + self._conns)
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def answer(reply_for):
    """A script: handshake, read one request, send what reply_for(rid, body)
    gives (raw bytes), then wait for the client to hang up."""
    def script(peer, conn):
        conn.sendall(REP_HELLO)
        rid, body = read_request(conn)
        peer.seen.append((rid, body))
        conn.sendall(reply_for(rid, body))
        try:
            conn.recv(1)
        except OSError:
            pass
    return script


def answer_each(reply_for):
    """A script: handshake, then answer every request until the client hangs up."""
    def script(peer, conn):
        conn.sendall(REP_HELLO)
        hello = recv_exact(conn, 8)
        check(hello == b"\x00SP\x00\x00\x30\x00\x00", "client handshake %r" % hello)
        while True:
            try:
                (n,) = struct.unpack(">Q", recv_exact(conn, 8))
            except (EOFError, OSError):
                return
            f = recv_exact(conn, n)
            peer.seen.append((f[:4], f[4:]))
            conn.sendall(reply_for(f[:4], f[4:]))
    return script


def drop(peer, conn):
    """Handshakes, reads the request, closes without an answer."""
    conn.sendall(REP_HELLO)
    peer.seen.append(read_request(conn))
    conn.shutdown(socket.SHUT_RDWR)


def fake_registry(adverts):
    """A FakePeer answering every Lookup with these adverts (its first connection)."""
    data = registry_pb2.Instances(instances=adverts, revision=1).SerializeToString()
    return FakePeer(answer_each(lambda rid, body: frame(rid + data)))


def silent(peer, conn):
    """Handshakes, reads the request, never answers."""
    conn.sendall(REP_HELLO)
    peer.seen.append(read_request(conn))
    try:
        conn.recv(1)
    except OSError:
        pass


def ok_reply(message):
    def build(rid, body):
        return frame(rid + rpc_pb2.RpcResponse(payload=message.SerializeToString())
                     .SerializeToString())
    return build


def list_call(url, timeout=1.0, **kw):
    with shop_client.RpcConnection(url) as c:
        return c.call(stubs.LIST_PRODUCTS.path, product_pb2.ListProductsRequest(page_size=1),
                      product_pb2.ListProductsResponse, timeout=timeout, **kw)


def order_log_lines(trace_id, limit_s=3.0):
    """The order service's log lines carrying trace_id (waited for a little)."""
    deadline = time.monotonic() + limit_s
    while True:
        with open(os.path.join(stack.VAR, "log", "order.log"), encoding="utf-8",
                  errors="replace") as f:
            lines = [json.loads(ln) for ln in f if trace_id in ln]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


# ------------------------------------------------------------------ cases

def test_pyclient_discovers_every_service_through_the_registry():
    with client() as shop:
        found, revision = shop.lookup()
        check(revision > 0, "revision %d" % revision)
        by_name = {i.instance: i for i in found}
        want = [n for n in ("auth", "product-a", "product-b", "order") if stack.built(n)]
        for name in want:
            check(name in by_name, "lookup lists %s, not %s" % (sorted(by_name), name))
            i = by_name[name]
            check(i.rpc_url == url_of(name), "%s rpc_url %r, want %r" % (name, i.rpc_url,
                                                                         url_of(name)))
            check(i.healthy and i.service == name.split("-")[0], "advert %r" % i)
        check(by_name["product-a"].weight == 70 and by_name["product-b"].weight == 30,
              "product weights %r" % ([by_name["product-a"], by_name["product-b"]],))
        admin = stack.registry_instances()
        for name in want:
            check(admin[name]["rpc_url"] == by_name[name].rpc_url,
                  "/v1/services says %r, the lookup %r" % (admin[name], by_name[name]))
        prods, _ = shop.lookup("product")
        check(sorted(i.instance for i in prods) == ["product-a", "product-b"],
              "lookup(product) -> %r" % prods)
        check(shop.lookup("no-such-service")[0] == [], "an unknown service lists instances")
        nowhere = stubs.Method("/shop.v1.Nowhere/Call", "no-such-service",
                               product_pb2.ListProductsRequest,
                               product_pb2.ListProductsResponse, True)
        e = raises(shop_client.NoInstance, shop.call, nowhere, product_pb2.ListProductsRequest())
        check(e.service == "no-such-service", "NoInstance for %r" % e.service)
    return "revision %d, %d instances" % (revision, len(found))


def test_pyclient_balances_products_70_30_by_weight():
    n = 400
    counts = {}
    with client(rng=random.Random(8)) as shop:
        for _ in range(n):
            r = shop.call(stubs.LIST_PRODUCTS, product_pb2.ListProductsRequest(page_size=1))
            check(r.url == url_of(r.instance), "%s answered from %s" % (r.instance, r.url))
            counts[r.instance] = counts.get(r.instance, 0) + 1
    check(set(counts) == {"product-a", "product-b"}, "served by %r" % counts)
    share = counts["product-a"] / n
    check(0.62 <= share <= 0.78, "product-a served %.2f of %d calls, want about 0.70" % (share, n))
    return "product-a %d, product-b %d" % (counts["product-a"], counts["product-b"])


def test_pyclient_sign_up_and_sign_in_give_tokens_the_gateway_accepts():
    name = fresh_name("kim")
    with client() as shop:
        up = shop.sign_up(name, PASSWORD)
        check(up.user_id > 0 and up.name == name and up.token_type == "Bearer"
              and up.expires_in == 3600, "SignUpResponse %r" % up)
        check_jwt(up.access_token, up.user_id, name)
        r = request("GET", "/products?page_size=1", headers=bearer(up.access_token))
        check(r.status == 200, "gateway refused the sign-up token: %r" % r)

        inn = shop.sign_in(name, PASSWORD)
        check(inn.user_id == up.user_id and inn.name == name, "SignInResponse %r" % inn)
        claims = check_jwt(inn.access_token, up.user_id, name)
        check(inn.access_token != up.access_token, "sign-in reused the sign-up token")
        r = request("GET", "/products?page_size=1", headers=bearer(inn.access_token))
        check(r.status == 200, "gateway refused the sign-in token: %r" % r)

        e = raises(shop_client.AlreadyExists, shop.sign_up, name, PASSWORD)
        check(e.code == 6 and e.reason == "NAME_TAKEN", "duplicate: %s" % e)
        e = raises(shop_client.Unauthenticated, shop.sign_in, name, "wrong-password-1")
        check(e.code == 16 and e.reason == "INVALID_CREDENTIALS", "wrong password: %s" % e)
        e = raises(shop_client.InvalidArgument, shop.sign_up, fresh_name("short"), "short")
        check(e.code == 3, "short password: %s" % e)
        # The gateway tells the same story for the same user.
        r = request("POST", "/auth/sign-in", {"name": name, "password": PASSWORD})
        check(r.status == 200 and r.json()["user_id"] == up.user_id, "REST sign-in %r" % r)
    return "user %d, jti %s" % (up.user_id, claims["jti"])


def test_pyclient_creates_and_lists_products_as_the_gateway_does():
    made = products()
    _, token = user("lister")
    with client() as shop:
        for p in made:
            check(p.id > 0 and stack.RFC3339_UTC_RE.match(p.created_at), "Product %r" % p)
        page = shop.list_products(page_size=1)
        check(len(page.products) == 1 and page.next_page_token,
              "page_size 1 gave %d products, next %r" % (len(page.products),
                                                        page.next_page_token))
        seen = {p.id: p for p in shop.iter_products(page_size=500)}
        ids = list(seen)
        check(ids == sorted(ids), "iter_products not ordered by id")
        for p in made:
            check(seen.get(p.id) == p, "listed %r, created %r" % (seen.get(p.id), p))
        e = raises(shop_client.InvalidArgument, shop.create_product, "Bad price", -1)
        check(e.metadata.get("field") == "supply_price", "bad price: %s %r" % (e, e.metadata))
    # Every product the gateway lists, the client listed alike (same ids, same values).
    rest, tok = {}, ""
    while True:
        r = request("GET", "/products?page_size=1000" + ("&page_token=" + tok if tok else ""),
                    headers=bearer(token))
        check(r.status == 200, "GET /products -> %r" % r)
        doc = r.json()
        rest.update((p["id"], p) for p in doc["products"])
        tok = doc["next_page_token"]
        if not tok:
            break
    for p in made:
        check(rest.get(p.id) == shop_client.to_dict(p),
              "gateway %r, client %r" % (rest.get(p.id), shop_client.to_dict(p)))
    missing = set(rest) - set(seen)
    check(not [i for i in missing if i <= max(seen)], "gateway lists ids the client missed: %r"
          % sorted(missing)[:10])
    return "%d products listed" % len(seen)


def test_pyclient_order_matches_what_the_gateway_answers():
    a, b = products()
    uid, token = user("buyer")
    other, _ = user("other")
    with client() as shop:
        o = shop.create_order([a.id, b.id], user_id=uid)
        check(o.id > 0 and o.user_id == uid, "CreateOrder %r" % o)
        items = [(i.product_id, i.name, i.supply_price) for i in o.items]
        want = [(a.id, a.name, a.supply_price), (b.id, b.name, b.supply_price)]
        check(items == want, "items %r, want %r" % (items, want))
        check(o.total_supply_price == a.supply_price + b.supply_price, "total %r" % o)

        o2 = shop.add_order_item(o.id, a.id, user_id=uid)
        want.append((a.id, a.name, a.supply_price))
        check([(i.product_id, i.name, i.supply_price) for i in o2.items] == want
              and o2.total_supply_price == 2 * a.supply_price + b.supply_price,
              "AddOrderItem %r" % o2)

        r = shop.call(stubs.GET_ORDER, stubs.order_pb2.GetOrderRequest(order_id=o.id), user_id=uid)
        check(r.message == o2, "GetOrder %r, AddOrderItem answered %r" % (r.message, o2))
        check(r.metadata.get("cache") in ("HIT", "MISS", "BYPASS"), "metadata %r" % r.metadata)
        got = shop.get_order(o.id, user_id=uid)

        rest = request("GET", "/orders/%d" % o.id, headers=bearer(token))
        check(rest.status == 200, "GET /orders/%d -> %r" % (o.id, rest))
        check(rest.json() == shop_client.to_dict(got),
              "gateway %r\nclient  %r" % (rest.json(), shop_client.to_dict(got)))

        # The envelope's traceparent reaches the service: its log line carries the trace id.
        trace_id = secrets.token_hex(16)
        traced = shop.call(stubs.CREATE_ORDER,
                           stubs.order_pb2.CreateOrderRequest(product_ids=[b.id]), user_id=uid,
                           traceparent="00-%s-%s-00" % (trace_id, secrets.token_hex(8))).message
        lines = order_log_lines(trace_id)
        check(any("order %d created" % traced.id in ln.get("msg", "") for ln in lines),
              "order.log has no line of trace %s for order %d: %r" % (trace_id, traced.id, lines))

        e = raises(shop_client.NotFound, shop.get_order, o.id, user_id=other)
        check(e.reason == "ORDER_NOT_FOUND", "another user's order: %s" % e)
        e = raises(shop_client.Unauthenticated, shop.get_order, o.id, user_id=0)
        check(e.code == 16, "no caller: %s" % e)
    return "order %d, %d items, cache %s" % (o.id, len(got.items), r.metadata.get("cache"))


def test_pyclient_unknown_product_is_product_not_found():
    a, _ = products()
    uid, token = user("buyer")
    missing = (1 << 62) + secrets.randbelow(1 << 30)
    with client() as shop:
        e = raises(shop_client.NotFound, shop.create_order, [a.id, missing], user_id=uid)
        check(e.code == 5 and e.reason == "PRODUCT_NOT_FOUND"
              and e.metadata.get("product_id") == str(missing),
              "CreateOrder with #%d: %s %r" % (missing, e, e.metadata))
        o = shop.create_order([a.id], user_id=uid)
        e = raises(shop_client.NotFound, shop.add_order_item, o.id, missing, user_id=uid)
        check(e.reason == "PRODUCT_NOT_FOUND", "AddOrderItem with #%d: %s" % (missing, e))
        check(len(shop.get_order(o.id, user_id=uid).items) == 1, "the failed add changed it")
    r = request("POST", "/orders", {"product_ids": [a.id, missing]}, headers=bearer(token))
    p = stack.check_problem(r, 404, "product_not_found")
    check(p["detail"] == "Product %d not found" % missing, "REST detail %r" % p["detail"])
    return "#%d" % missing


def test_pyclient_passed_deadline_and_unknown_method_are_typed():
    url = url_of("product-a")
    e = raises(shop_client.DeadlineExceeded, list_call, url,
               deadline_unix_ms=int(time.time() * 1000) - 1000)
    check(e.code == 4 and e.reason == "DEADLINE_EXCEEDED" and isinstance(e, TimeoutError),
          "passed deadline: %s" % e)
    with shop_client.RpcConnection(url) as c:
        e = raises(shop_client.Unimplemented, c.call, "/shop.v1.ProductService/Nope",
                   product_pb2.ListProductsRequest(), product_pb2.ListProductsResponse)
        check(e.code == 12 and e.reason == "UNIMPLEMENTED", "unknown method: %s" % e)
        # The same connection still serves a good call after both errors.
        r = c.call(stubs.LIST_PRODUCTS.path, product_pb2.ListProductsRequest(page_size=1),
                   product_pb2.ListProductsResponse)
        check(len(r.message.products) == 1, "after errors: %r" % r)


def test_pyclient_times_out_on_a_silent_peer_then_reconnects():
    page = product_pb2.ListProductsResponse(products=[product_pb2.Product(id=7, name="x")])
    with FakePeer(silent, answer(ok_reply(page))) as peer:
        with shop_client.RpcConnection(peer.url) as c:
            t0 = time.monotonic()
            sent_ms = int(time.time() * 1000)
            e = raises(shop_client.ShopTimeout, c.call, stubs.LIST_PRODUCTS.path,
                       product_pb2.ListProductsRequest(page_size=3),
                       product_pb2.ListProductsResponse, timeout=0.5, caller_user_id=42)
            took = time.monotonic() - t0
            check(0.5 <= took < 1.2, "timed out after %.2f s for a 0.5 s timeout" % took)
            check(e.sent and isinstance(e, TimeoutError), "timeout %r sent=%r" % (e, e.sent))
            # What went out is the contract's envelope.
            check(len(peer.seen) == 1, "the peer saw %d requests" % len(peer.seen))
            rid, body = peer.seen[0]
            check(rid[0] & 0x80, "request id %s lacks the high bit" % rid.hex())
            req = rpc_pb2.RpcRequest.FromString(body)
            check(req.method == "/shop.v1.ProductService/ListProducts", "method %r" % req.method)
            check(product_pb2.ListProductsRequest.FromString(req.payload).page_size == 3,
                  "payload %r" % req.payload)
            check(req.caller_user_id == 42, "caller_user_id %d" % req.caller_user_id)
            check(sent_ms + 400 <= req.deadline_unix_ms <= sent_ms + 700,
                  "deadline %d ms after the call began" % (req.deadline_unix_ms - sent_ms))
            check(TRACEPARENT_RE.match(req.traceparent), "traceparent %r" % req.traceparent)
            # The next call reconnects and gets the second connection's answer.
            r = c.call(stubs.LIST_PRODUCTS.path, product_pb2.ListProductsRequest(),
                       product_pb2.ListProductsResponse, timeout=2)
            check(r.message == page, "after the timeout: %r" % r)
            check(len(peer.seen) == 2 and peer.seen[1][0] != rid, "request ids %r"
                  % [s[0].hex() for s in peer.seen])
        check(not peer.errors, "fake peer: %r" % peer.errors)
    # A peer that accepts and never says a word: the handshake times out.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    try:
        t0 = time.monotonic()
        e = raises(shop_client.ShopTimeout, list_call,
                   "tcp://127.0.0.1:%d" % lsock.getsockname()[1], timeout=0.3)
        check(time.monotonic() - t0 < 1.0 and not e.sent, "mute peer: %r sent=%r" % (e, e.sent))
    finally:
        lsock.close()
    return "timed out in %.2f s" % took


def test_pyclient_rejects_bad_replies_with_a_clear_error():
    def not_rep(peer, conn):
        conn.sendall(b"\x00SP\x00\x00\x30\x00\x00")  # another REQ
        conn.recv(64)

    def not_sp(peer, conn):
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    def cut_short(peer, conn):
        conn.sendall(REP_HELLO)
        rid, _ = read_request(conn)
        conn.sendall(struct.pack(">Q", 100) + rid + b"\x08")  # 5 of 100 bytes, then EOF
        conn.shutdown(socket.SHUT_RDWR)

    good = rpc_pb2.RpcResponse(code=0).SerializeToString()
    cases = [
        ("not a REP peer", [not_rep], shop_client.ProtocolError, "REP"),
        ("not an SP peer", [not_sp], shop_client.ProtocolError, "not an SP peer"),
        ("short frame", [answer(lambda rid, body: struct.pack(">Q", 2) + b"\x80\x00")],
         shop_client.ProtocolError, "shorter than a request id"),
        ("wrong request id", [answer(lambda rid, body: frame(bytes([rid[0], rid[1], rid[2],
                                                                    rid[3] ^ 1]) + good))],
         shop_client.ProtocolError, "request id"),
        ("2^63 bytes announced", [answer(lambda rid, body: struct.pack(">Q", 1 << 63) + rid)],
         shop_client.ProtocolError, "announces"),
        ("garbage RpcResponse", [answer(lambda rid, body: frame(rid + b"\xff\xff\xff\xff"))],
         shop_client.ProtocolError, "RpcResponse"),
        ("garbage payload", [answer(lambda rid, body: frame(rid + rpc_pb2.RpcResponse(
            payload=b"\x0a\xff\xff\xff\xff").SerializeToString()))],
         shop_client.ProtocolError, "ListProductsResponse"),
        ("closed mid-frame", [cut_short], shop_client.ConnectionLost, "closed"),
    ]
    for what, scripts, cls, words in cases:
        with FakePeer(*scripts) as peer:
            t0 = time.monotonic()
            e = raises(shop_client.ShopError, list_call, peer.url, timeout=3)
            took = time.monotonic() - t0
        check(isinstance(e, cls), "%s: want %s, got %s: %s" % (what, cls.__name__,
                                                             type(e).__name__, e))
        check(words in str(e), "%s: message %r does not say %r" % (what, str(e), words))
        check(took < 1.0, "%s: took %.2f s" % (what, took))
        check(not peer.errors, "%s: fake peer: %r" % (what, peer.errors))
    # Zero bytes are a valid RpcResponse (code 0) with an empty payload.
    with FakePeer(answer(lambda rid, body: frame(rid))) as peer:
        r = list_call(peer.url)
        check(r.message == product_pb2.ListProductsResponse(), "empty reply gave %r" % r)
    return "%d bad replies" % len(cases)


def test_pyclient_surfaces_dependency_failed():
    """RpcResponse.dependency_failed reaches the RpcError: True when the
    instance answers for a service behind it, False for its own failure."""
    def err(dep):
        def build(rid, body):
            return frame(rid + rpc_pb2.RpcResponse(
                code=14, reason="PRODUCT_SERVICE_UNAVAILABLE" if dep else "DATABASE_UNAVAILABLE",
                message="x", dependency_failed=dep).SerializeToString())
        return build
    got = []
    for dep in (True, False):
        with FakePeer(answer(err(dep))) as peer:
            e = raises(shop_client.Unavailable, list_call, peer.url, timeout=3)
        check(not peer.errors, "fake peer: %r" % peer.errors)
        check(e.dependency_failed is dep, "dependency_failed %r, sent %r: %s"
              % (e.dependency_failed, dep, e))
        got.append(str(e))
    check("a dependency failed" in got[0] and "a dependency failed" not in got[1],
          "messages %r" % got)


def test_pyclient_keeps_working_on_its_last_view_when_the_registry_goes():
    with client() as real:
        found, rev = real.lookup("product")
    answer_bytes = registry_pb2.Instances(
        instances=[registry_pb2.Advert(service=i.service, instance=i.instance,
                                       rpc_url=i.rpc_url, weight=i.weight, healthy=i.healthy)
                   for i in found], revision=rev).SerializeToString()
    fake = FakePeer(answer(lambda rid, body: frame(rid + answer_bytes)))
    try:
        with shop_client.ShopClient(fake.url, view_ttl=0) as shop:
            first = shop.list_products(page_size=1)
            check(len(first.products) == 1, "through the fake registry: %r" % first)
            check(len(fake.seen) == 1 and registry_pb2.Lookup.FromString(fake.seen[0][1])
                  .service == "product", "lookup sent: %r" % fake.seen)
            fake.close()  # the registry is gone: connections are refused from now on
            again = shop.list_products(page_size=1)
            check(again.products == first.products, "on the cached view: %r" % again)
            check(isinstance(shop.view.last_error, shop_client.DiscoveryError),
                  "no lookup failed? %r" % shop.view.last_error)
            e = raises(shop_client.DiscoveryError, shop.sign_in, "nobody", PASSWORD)
            check(isinstance(e.__cause__, shop_client.Unreachable), "cause %r" % e.__cause__)
    finally:
        fake.close()


def test_pyclient_retries_only_idempotent_calls_on_another_instance():
    real = registry_pb2.Advert(service="product", instance="product-a",
                               rpc_url=url_of("product-a"), weight=1, healthy=True)
    with FakePeer(drop, drop) as bad:
        # Weighted 1000000 : 1, the dropping instance is always tried first.
        fake = registry_pb2.Advert(service="product", instance="dropper", rpc_url=bad.url,
                                   weight=1000000, healthy=True)
        with fake_registry([fake, real]) as reg, \
                shop_client.ShopClient(reg.url, view_ttl=60, rng=random.Random(1)) as shop:
            r = shop.call(stubs.LIST_PRODUCTS, product_pb2.ListProductsRequest(page_size=1))
            check(r.instance == "product-a" and len(bad.seen) == 1,
                  "ListProducts: answered by %r after %d dropped" % (r.instance, len(bad.seen)))
            name = "Py never " + secrets.token_hex(4)
            e = raises(shop_client.ConnectionLost, shop.create_product, name, 1)
            check(e.sent and len(bad.seen) == 2, "CreateProduct: %r, %d sent" % (e, len(bad.seen)))
            check(not bad.errors and not reg.errors, "fakes: %r %r" % (bad.errors, reg.errors))
    with client() as shop:
        made = [p for p in shop.iter_products(page_size=1000) if p.name == name]
    check(not made, "CreateProduct was sent again: %r" % made)
    # An instance that refuses the connection got nothing: any call moves on.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    dead = "tcp://127.0.0.1:%d" % lsock.getsockname()[1]
    lsock.close()
    fake = registry_pb2.Advert(service="product", instance="dead", rpc_url=dead,
                               weight=1000000, healthy=True)
    with fake_registry([fake, real]) as reg, \
            shop_client.ShopClient(reg.url, view_ttl=60, rng=random.Random(1)) as shop:
        p = shop.create_product("Py moved on " + secrets.token_hex(4), 2)
        check(p.id > 0, "CreateProduct after a refused connection: %r" % p)
    # Unhealthy or weight-0 instances are never chosen.
    with fake_registry([registry_pb2.Advert(service="product", instance="sick", rpc_url=dead,
                                            weight=100, healthy=False),
                        registry_pb2.Advert(service="product", instance="zero", rpc_url=dead,
                                            weight=0, healthy=True)]) as reg, \
            shop_client.ShopClient(reg.url) as shop:
        raises(shop_client.NoInstance, shop.list_products)


class GatePeer:
    """A REP peer that takes any number of connections at once and answers
    no request until `width` of them are waiting together (or 5 s pass),
    then answers every one: a client that sends one call at a time gets
    no answer before its timeout. peer.most is the most calls that waited
    together."""

    def __init__(self, width, reply):
        self.width, self.reply = width, reply
        self.waiting = self.most = 0
        self.seen, self.conns, self.errors = [], [], []
        self.cv = threading.Condition()
        self.lsock, self.url = listen_local(32)
        script = answer_each(self._gated_reply)
        threading.Thread(target=stack.accept_each, daemon=True,
                         args=(self.lsock, self.conns, lambda c: self._serve(script, c))).start()

    def _gated_reply(self, rid, body):
        with self.cv:
            self.waiting += 1
            self.most = max(self.most, self.waiting)
            self.cv.notify_all()
            self.cv.wait_for(lambda: self.most >= self.width, timeout=5)
            self.waiting -= 1
        return self.reply(rid, body)

    def _serve(self, script, conn):
        conn.settimeout(10)
        try:
            script(self, conn)
        except Exception as e:  # noqa: BLE001 -- reported by the case
            self.errors.append(e)

    def close(self):
        shut_all([self.lsock] + self.conns)


def at_once(fn, n):
    """Runs fn on n threads at once and waits for them (10 s each at most)."""
    threads = [threading.Thread(target=fn) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)


def test_pyclient_runs_calls_from_several_threads_at_once():
    # Four threads call one instance that answers only when four calls
    # wait together: each call must have had a connection of its own.
    page = product_pb2.ListProductsResponse(products=[product_pb2.Product(id=7, name="gate")])
    peer = GatePeer(4, ok_reply(page))
    fake = registry_pb2.Advert(service="product", instance="gate", rpc_url=peer.url,
                               weight=100, healthy=True)
    results, t0 = [], time.monotonic()
    try:
        with fake_registry([fake]) as reg, \
                shop_client.ShopClient(reg.url, timeout=4, view_ttl=60) as shop:
            def one():
                try:
                    results.append(shop.list_products(page_size=1).products[0].name)
                except Exception as e:  # noqa: BLE001 -- checked below
                    results.append(e)
            at_once(one, 4)
            secs = time.monotonic() - t0
            check(results == ["gate"] * 4, "4 calls at once: %r" % results)
            check(peer.most == 4 and len(peer.conns) == 4 and secs < 4,
                  "%d calls waited together on %d connections, %.1f s"
                  % (peer.most, len(peer.conns), secs))
            # The connections are kept: four more calls open none.
            results.clear()
            at_once(one, 4)
            check(results == ["gate"] * 4 and len(peer.conns) == 4,
                  "again: %r on %d connections" % (results, len(peer.conns)))
    finally:
        peer.close()
    check(not peer.errors, "peer: %r" % peer.errors)
    # connections=1 is one call at a time: the gate never opens, the calls
    # time out (the second waited for the connection, then for its answer).
    peer = GatePeer(2, ok_reply(page))
    fake = registry_pb2.Advert(service="product", instance="gate", rpc_url=peer.url,
                               weight=100, healthy=True)
    try:
        with fake_registry([fake]) as reg, \
                shop_client.ShopClient(reg.url, timeout=1, view_ttl=60, connections=1) as shop:
            results.clear()
            at_once(one, 2)
            check(len(results) == 2 and all(isinstance(r, shop_client.ShopTimeout)
                                            for r in results),
                  "connections=1, 2 calls at once: %r" % results)
            check(peer.most == 1 and len(peer.conns) == 1,
                  "connections=1: %d together on %d connections" % (peer.most, len(peer.conns)))
    finally:
        peer.close()


def test_pyclient_cli_prints_json_and_exit_codes():
    def cli(*args):
        p = subprocess.run([sys.executable, "-m", "shop_client", "--registry", REGISTRY_URL]
                           + list(args), cwd=CLIENT_DIR, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30,
                           env=dict(os.environ, SHOP_PASSWORD=PASSWORD))
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    rc, out, err = cli("products", "--page-size", "2")
    check(rc == 0, "products: rc %d, %s" % (rc, err))
    doc = json.loads(out)
    check(len(doc["products"]) == 2 and isinstance(doc["products"][0]["id"], int),
          "products printed %r" % doc)
    uid, _ = user("buyer")
    rc, out, err = cli("create-order", "--user", str(uid), str(1 << 62))
    check(rc == 1 and json.loads(err)["reason"] == "PRODUCT_NOT_FOUND",
          "missing product: rc %d, %r" % (rc, err))
    rc, out, err = cli("--registry", "tcp://127.0.0.1:1", "--timeout", "0.5", "lookup")
    check(rc == 3 and "registry" in err, "no registry: rc %d, %r" % (rc, err))


CASES = [
    test_pyclient_discovers_every_service_through_the_registry,
    test_pyclient_balances_products_70_30_by_weight,
    test_pyclient_sign_up_and_sign_in_give_tokens_the_gateway_accepts,
    test_pyclient_creates_and_lists_products_as_the_gateway_does,
    test_pyclient_order_matches_what_the_gateway_answers,
    test_pyclient_unknown_product_is_product_not_found,
    test_pyclient_passed_deadline_and_unknown_method_are_typed,
    test_pyclient_times_out_on_a_silent_peer_then_reconnects,
    test_pyclient_rejects_bad_replies_with_a_clear_error,
    test_pyclient_surfaces_dependency_failed,
    test_pyclient_keeps_working_on_its_last_view_when_the_registry_goes,
    test_pyclient_retries_only_idempotent_calls_on_another_instance,
    test_pyclient_runs_calls_from_several_threads_at_once,
    test_pyclient_cli_prints_json_and_exit_codes,
]
