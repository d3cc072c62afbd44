"""test_tokens.py -- the gateway's JWT filter seen from outside (CONTRACT §2
Tokens, issue 3): every forged or broken token is its own case and answers
401 invalid_token with one and the same problem body and
`WWW-Authenticate: Bearer error="invalid_token"`, answered by the gateway
itself (no upstream call); the gateway stays up and the next good request on
a new connection answers 200. No credentials answer 401 missing_token with
`WWW-Authenticate: Bearer`; the open routes need no token; no path trick
reaches a protected route without one; and the caller's id from the token
reaches the service as RpcRequest.caller_user_id."""

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time

import stack
from stack import check, check_problem, raw_request, request

sys.path.insert(0, os.path.join(stack.ROOT, "gen", "python"))

INVALID_WWW = 'Bearer error="invalid_token"'
MISSING_WWW = "Bearer"
PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "trace_id"}
PROTECTED = "/products?page_size=1"
DROP = object()  # a claim to leave out


# ---------------------------------------------------------------- forging

def _b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _secret():
    return stack.stack_env()["SHOP_JWT_SECRET"].encode()


def _claims(**over):
    now = int(time.time())
    c = {"iss": "shop-auth", "sub": "1", "name": "e2e", "iat": now, "exp": now + 3600,
         "jti": secrets.token_hex(8)}
    for k, v in over.items():
        if v is DROP:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def _seg(x):
    """A segment: bytes as they are, str as its UTF-8, anything else as JSON."""
    if isinstance(x, bytes):
        return _b64(x)
    if isinstance(x, str):
        return _b64(x.encode())
    return _b64(json.dumps(x).encode())


HS256 = {"alg": "HS256", "typ": "JWT"}


def _forge(header=None, payload=None, key=None, digest=hashlib.sha256):
    """header.payload.HMAC(key) -- HMAC-SHA256 with the stack's secret unless told."""
    signing = _seg(HS256 if header is None else header) + "." + _seg(
        _claims() if payload is None else payload)
    mac = hmac.new(_secret() if key is None else key, signing.encode(), digest).digest()
    return signing + "." + _b64(mac)


def _unsigned(alg):
    return _seg({"alg": alg, "typ": "JWT"}) + "." + _seg(_claims()) + "."


def _flipped_payload():
    """sub 1 signed, then the payload's sub byte changed to 2."""
    good = _forge(payload=_claims(sub="1"))
    h, _, sig = good.split(".")
    return h + "." + _seg(_claims(sub="2")) + "." + sig


def _bad_char(c):
    t = stack.make_token()
    i = t.index(".") + 5
    return t[:i] + c + t[i + 1:]


def _long_garbage(n):
    """A well-shaped token of about n bytes whose payload is not a signed one."""
    return _seg(HS256) + "." + "A" * (n - 80) + "." + _b64(os.urandom(32))


def bearer(t):
    return "Bearer " + t


def _now():
    return int(time.time())


# (case name, Authorization value): each answers 401 invalid_token.
FORGED = [
    ("alg_none", lambda: bearer(_unsigned("none"))),
    ("alg_None", lambda: bearer(_unsigned("None"))),
    ("alg_NONE", lambda: bearer(_unsigned("NONE"))),
    ("alg_none_with_a_valid_hmac", lambda: bearer(_forge({"alg": "none", "typ": "JWT"}))),
    ("alg_hs384", lambda: bearer(_forge({"alg": "HS384", "typ": "JWT"}, digest=hashlib.sha384))),
    ("alg_hs512", lambda: bearer(_forge({"alg": "HS512", "typ": "JWT"}, digest=hashlib.sha512))),
    ("alg_rs256", lambda: bearer(_seg({"alg": "RS256", "typ": "JWT"}) + "." + _seg(_claims())
                                 + "." + _b64(os.urandom(256)))),
    ("alg_lowercase_hs256", lambda: bearer(_forge({"alg": "hs256", "typ": "JWT"}))),
    ("repeated_alg", lambda: bearer(_forge(b'{"alg":"HS256","alg":"none"}'))),
    ("wrong_key", lambda: bearer(_forge(key=b"another secret, long enough for HS256!"))),
    ("flipped_payload_byte", lambda: bearer(_flipped_payload())),
    ("stripped_signature", lambda: bearer(stack.make_token().rsplit(".", 1)[0] + ".")),
    ("truncated_signature", lambda: bearer(stack.make_token()[:-2])),
    ("expired", lambda: bearer(_forge(payload=_claims(iat=_now() - 7200, exp=_now() - 3600)))),
    ("no_exp", lambda: bearer(_forge(payload=_claims(exp=DROP)))),
    ("exp_as_string", lambda: bearer(_forge(payload=_claims(exp=str(_now() + 3600))))),
    ("exp_fractional", lambda: bearer(_forge(payload=_claims(exp=_now() + 3600.5)))),
    ("future_nbf", lambda: bearer(_forge(payload=_claims(nbf=_now() + 3600)))),
    ("future_iat", lambda: bearer(_forge(payload=_claims(iat=_now() + 3600, exp=_now() + 7200)))),
    # Correctly signed, but living far longer than svc-auth's one hour.
    ("exp_1e10", lambda: bearer(_forge(payload=_claims(exp=10**10)))),
    ("exp_1e10_as_float", lambda: bearer(_forge(payload=_claims(exp=1e10)))),
    ("lifetime_one_hour_plus_leeway_plus_1",
     lambda: bearer(_forge(payload=_claims(iat=_now(), exp=_now() + 3600 + 60 + 1)))),
    ("old_iat_fresh_exp", lambda: bearer(_forge(payload=_claims(iat=_now() - 86400,
                                                                 exp=_now() + 60)))),
    ("exp_before_iat", lambda: bearer(_forge(payload=_claims(iat=_now(), exp=_now() - 1)))),
    ("no_iat", lambda: bearer(_forge(payload=_claims(iat=DROP)))),
    ("wrong_iss", lambda: bearer(_forge(payload=_claims(iss="shop-auth-evil")))),
    ("no_iss", lambda: bearer(_forge(payload=_claims(iss=DROP)))),
    ("no_sub", lambda: bearer(_forge(payload=_claims(sub=DROP)))),
    ("zero_sub", lambda: bearer(_forge(payload=_claims(sub="0")))),
    ("negative_sub", lambda: bearer(_forge(payload=_claims(sub="-1")))),
    ("non_numeric_sub", lambda: bearer(_forge(payload=_claims(sub="admin")))),
    ("sub_as_number", lambda: bearer(_forge(payload=_claims(sub=1)))),
    ("two_segments", lambda: bearer(stack.make_token().rsplit(".", 1)[0])),
    ("four_segments", lambda: bearer(stack.make_token() + "." + _b64(os.urandom(32)))),
    ("header_not_json", lambda: bearer(_forge("not json"))),
    ("header_array", lambda: bearer(_forge("[]"))),
    ("header_number", lambda: bearer(_forge("5"))),
    ("payload_not_json", lambda: bearer(_forge(payload="{not json"))),
    ("payload_array", lambda: bearer(_forge(payload="[1,2]"))),
    ("payload_string", lambda: bearer(_forge(payload='"sub"'))),
    ("bad_base64url_plus", lambda: bearer(_bad_char("+"))),
    ("bad_base64url_slash", lambda: bearer(_bad_char("/"))),
    ("bad_base64url_bang", lambda: bearer(_bad_char("!"))),
    ("base64_padding", lambda: bearer(_seg(HS256) + "=." + stack.make_token().split(".", 1)[1])),
    ("long_garbage_token_7_kib", lambda: bearer(_long_garbage(7 * 1024))),
    ("bearer_without_token", lambda: "Bearer"),
    ("bearer_and_only_spaces", lambda: "Bearer    "),
    ("token_then_junk", lambda: bearer(stack.make_token() + " junk")),
    ("two_tokens", lambda: bearer(stack.make_token()) + ", " + bearer(stack.make_token())),
    ("space_inside_token", lambda: bearer(stack.make_token().replace(".", ". ", 1))),
]


# ---------------------------------------------------------------- checks

_reference = {}


def _body_without_trace(r):
    p = r.json()
    check(set(p) == PROBLEM_KEYS, "problem members %r, want %r" % (sorted(p), sorted(PROBLEM_KEYS)))
    p = dict(p)
    p.pop("trace_id")
    return p


def check_refused(r, code, www, sent=None):
    """401 with code, the WWW-Authenticate www, answered by the gateway itself
    (X-Served-By is its own name only when no upstream answered), and one
    body per code whatever the reason."""
    check_problem(r, 401, code)
    check(r.header("www-authenticate") == www,
          "WWW-Authenticate %r, want %r" % (r.header("www-authenticate"), www))
    check(r.header("x-served-by") == "gateway",
          "X-Served-By %r: the refusal did not come from the gateway" % r.header("x-served-by"))
    body = _body_without_trace(r)
    ref = _reference.setdefault(code, body)
    check(body == ref, "body %r differs from the first %s body %r" % (body, code, ref))
    if sent:
        for part in sent.replace(",", " ").split():
            if len(part) >= 8:
                check(part.encode() not in r.body, "the token is echoed in %r" % r.body[:300])


def check_still_serving():
    """The gateway answers, and a good request on a new connection is 200."""
    r = request("GET", "/healthz")
    check(r.status == 200, "gateway /healthz after the case: %r" % r)
    r = request("GET", PROTECTED, headers={"Authorization": bearer(stack.make_token())})
    check(r.status == 200, "good token after the case: %r" % r)


def _forged_case(name, make):
    def case():
        value = make()
        r = request("GET", PROTECTED, headers={"Authorization": value})
        check_refused(r, "invalid_token", INVALID_WWW, sent=value)
        check_still_serving()
    case.__name__ = "test_token_%s_is_401" % name
    return case


FORGED_CASES = [_forged_case(n, m) for n, m in FORGED]


# ---------------------------------------------------------------- cases

def test_token_good_one_is_200():
    r = request("GET", PROTECTED, headers={"Authorization": bearer(stack.make_token())})
    check(r.status == 200, "a good token: %r" % r)
    check(r.header("www-authenticate") is None, "WWW-Authenticate on a 200: %r" % r.headers)


def test_token_scheme_case_and_spaces_are_accepted():
    t = stack.make_token()
    for value in ("bearer " + t, "BEARER " + t, "Bearer   " + t):
        r = request("GET", PROTECTED, headers={"Authorization": value})
        check(r.status == 200, "%r: %r" % (value[:12], r))
    # Surrounding whitespace is the field's, not the value's.
    status, reply = raw_request(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization:   Bearer %s  \r\n"
                                 "Connection: close\r\n\r\n" % (PROTECTED, t)).encode())
    check(status == 200, "Authorization with spaces around: %r" % reply[:300])


def test_token_absent_is_401_missing_token():
    r = request("GET", PROTECTED)
    check_refused(r, "missing_token", MISSING_WWW)
    r = request("POST", "/products", {"name": "x", "supply_price": 1})
    check_refused(r, "missing_token", MISSING_WWW)
    check_still_serving()


def test_token_empty_authorization_is_401_missing_token():
    status, reply = raw_request(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: \r\n"
                                 "Connection: close\r\n\r\n" % PROTECTED).encode())
    check(status == 401, "empty Authorization: %r" % reply[:300])
    check(b"missing_token" in reply, "empty Authorization is not missing_token: %r" % reply[:400])
    check_still_serving()


def test_token_other_scheme_is_401_missing_token():
    # RFC 6750 §3.1: a request without Bearer credentials gets no error code.
    for value in ("Basic xyz", "Basic dXNlcjpwYXNzd29yZA==", "Token " + stack.make_token()):
        r = request("GET", PROTECTED, headers={"Authorization": value})
        check_refused(r, "missing_token", MISSING_WWW, sent=value)
    check_still_serving()


def test_token_ko_detail_keeps_the_code():
    r = request("GET", PROTECTED, headers={"Authorization": "Bearer a.b.c",
                                           "Accept-Language": "ko"})
    p = check_problem(r, 401, "invalid_token")
    check(re.search(r"[\uac00-\ud7a3]", p["detail"]), "ko detail is not Korean: %r" % p["detail"])


def test_token_refusal_leaves_the_connection_usable():
    """A refusal is an ordinary answer: the same keep-alive connection then
    serves a good request."""
    import http.client
    conn = http.client.HTTPConnection(stack.HOST, stack.GATEWAY_PORT, timeout=10)
    try:
        r = request("GET", PROTECTED, headers={"Authorization": "Bearer x.y.z"}, conn=conn)
        check_refused(r, "invalid_token", INVALID_WWW)
        r = request("GET", PROTECTED, headers={"Authorization": bearer(stack.make_token())},
                    conn=conn)
        check(r.status == 200, "good request on the same connection: %r" % r)
    finally:
        conn.close()


def test_token_refused_before_the_body_is_read():
    """POST /products with a forged token: 401, nothing created."""
    name = "forged-" + secrets.token_hex(4)
    r = request("POST", "/products", {"name": name, "supply_price": 1},
                headers={"Authorization": bearer(_forge(key=b"x" * 40))})
    check_refused(r, "invalid_token", INVALID_WWW)
    r = request("GET", "/products?page_size=1000",
                headers={"Authorization": bearer(stack.make_token())})
    check(r.status == 200, "list: %r" % r)
    # Paging is not needed: a new product would be on the last page, but a
    # name never created cannot be on any.
    check(name.encode() not in r.body, "a product was created with a forged token")


def test_token_of_9_kib_is_refused():
    # A 9 KiB token makes the header section larger than 8 KiB: the gateway
    # answers 431 before the filter runs (§2; docs/decisions.md, "HTTP limits
    # and framing"). Either way it is never served.
    t = _long_garbage(9 * 1024)
    status, reply = raw_request(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                                 "Connection: close\r\n\r\n" % (PROTECTED, t)).encode())
    check(status in (None, 400, 401, 431), "9 KiB token answered %r" % reply[:200])
    check(t[100:200].encode() not in reply, "the token is echoed")
    check_still_serving()
    return "answered %s" % (status or "by closing the connection")


def test_token_authorization_of_64_kib_is_refused():
    value = "Bearer " + "A" * (64 * 1024)
    status, reply = raw_request(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
                                 "Connection: close\r\n\r\n" % (PROTECTED, value)).encode())
    check(status in (None, 400, 431), "64 KiB Authorization answered %r" % reply[:200])
    check_still_serving()
    return "answered %s" % (status or "by closing the connection")


def test_token_two_authorization_fields_are_401():
    """Authorization is a singleton field: two of them, even both good, are
    not one credential."""
    t = stack.make_token()
    for second in (bearer(t), "Basic xyz"):
        status, reply = raw_request(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                                     "Authorization: %s\r\nConnection: close\r\n\r\n"
                                     % (PROTECTED, t, second)).encode())
        check(status == 401, "two Authorization fields answered %r" % reply[:300])
        check(b"invalid_token" in reply, "two Authorization fields: %r" % reply[-300:])
    check_still_serving()


def test_token_gateway_refuses_a_short_secret():
    """The gateway does not start without a key of 32 bytes or more, and
    does not print the key it refused."""
    s = socket.socket()
    s.bind((stack.HOST, 0))
    port = s.getsockname()[1]
    s.close()
    binary = os.path.join(stack.ROOT, stack.BINARIES["gateway"])
    for secret in (None, "", "s3cr3t-but-only-31-bytes-long!!"):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "SHOP_GATEWAY_ADDR": "127.0.0.1:%d" % port,
               "SHOP_REGISTRY_LOOKUP_URL": "tcp://127.0.0.1:%d" % (7101 + stack.OFFSET)}
        if secret is not None:
            env["SHOP_JWT_SECRET"] = secret
        p = subprocess.run([binary], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        err = p.stderr.decode("utf-8", "replace")
        check(p.returncode == 2, "SHOP_JWT_SECRET=%r: exit %d, want 2 (%s)"
              % (secret, p.returncode, err.strip()))
        check("SHOP_JWT_SECRET" in err, "the message does not name the variable: %r" % err)
        check(not secret or secret not in err, "the message shows the secret: %r" % err)


def test_token_not_needed_on_open_routes():
    for path in ("/healthz", "/metrics"):
        r = request("GET", path)
        check(r.status == 200, "GET %s without a token: %r" % (path, r))
    r = request("GET", "/readyz")
    check(r.status in (200, 503), "GET /readyz without a token: %r" % r)
    name = "tok" + secrets.token_hex(6)
    r = request("POST", "/auth/sign-up", {"name": name, "password": "correct horse battery"})
    check(r.status == 201, "sign-up without a token: %r" % r)
    r = request("POST", "/auth/sign-in", {"name": name, "password": "correct horse battery"})
    check(r.status == 200, "sign-in without a token: %r" % r)
    # A forged token on an open route is not looked at.
    r = request("GET", "/healthz", headers={"Authorization": "Bearer forged"})
    check(r.status == 200, "/healthz with a junk token: %r" % r)


def test_token_path_tricks_never_reach_a_protected_route():
    tricks = [("GET", "/auth/../products"), ("GET", "/auth/..%2Fproducts"),
              ("GET", "/auth%2F..%2Fproducts"), ("GET", "/auth%2f..%2fproducts"),
              ("GET", "//products"), ("GET", "///products?page_size=1"),
              ("GET", "/./products"), ("GET", "/auth/%2e%2e/products"),
              ("GET", "/auth/sign-in/../../products"), ("GET", "/AUTH/x"),
              ("GET", "/authx/products"), ("GET", "/auth/../orders/1"),
              ("GET", "//orders/1"), ("GET", "/auth%2F..%2Forders"), ("GET", "/authx/orders"),
              ("GET", "/products/"), ("GET", "/Products"), ("GET", "/products%3Fx"),
              ("POST", "/auth/../products"), ("POST", "//products"),
              ("POST", "/auth/sign-up/../../products"), ("PUT", "/auth/../orders/1")]
    for method, path in tricks:
        body = {"name": "trick", "supply_price": 1} if method in ("POST", "PUT") else None
        r = request(method, path, body)
        check(r.status in (400, 401, 404, 405),
              "%s %s without a token answered %r" % (method, path, r))
        if r.status == 401:
            check_problem(r, 401, "missing_token")
    # Raw, so that no client library tidies the path.
    for path in ("/auth/../products", "/auth/./../products", "/auth/%2e%2e/products"):
        status, reply = raw_request(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                     % path).encode())
        check(status in (400, 401, 404), "raw GET %s answered %r" % (path, reply[:200]))
    check_still_serving()


def test_token_from_sign_up_is_accepted():
    name = "tok" + secrets.token_hex(6)
    r = request("POST", "/auth/sign-up", {"name": name, "password": "correct horse battery"})
    check(r.status == 201, "sign-up: %r" % r)
    doc = r.json()
    check(doc.get("token_type") == "Bearer", "token_type %r" % doc.get("token_type"))
    r = request("GET", PROTECTED, headers={"Authorization": "Bearer " + doc["access_token"]})
    check(r.status == 200, "GET /products with the sign-up token: %r" % r)
    r = request("POST", "/products", {"name": "by " + name, "supply_price": 5},
                headers={"Authorization": "Bearer " + doc["access_token"]})
    check(r.status == 201, "POST /products with the sign-up token: %r" % r)


# ------------------------------------------- the caller id, seen by a service

class FakeProduct:
    """A product instance made of stock tools: nngcat --respondent answers the
    registry's surveys with an Advert of a very large weight, nngcat --rep
    answers every call with an empty OK RpcResponse and prints each request
    it receives (one quoted-hex line each)."""

    NAME = "fake-product-e2e"

    def __init__(self):
        from shop.v1 import registry_pb2
        s = socket.socket()
        s.bind((stack.HOST, 0))
        self.port = s.getsockname()[1]
        s.close()
        self.dir = tempfile.mkdtemp(prefix="shop-fake-")
        advert = registry_pb2.Advert(service="product", instance=self.NAME,
                                     rpc_url="tcp://127.0.0.1:%d" % self.port,
                                     admin_url="http://127.0.0.1:1", weight=1000000,
                                     healthy=True, version="e2e",
                                     started_unix_ms=int(time.time() * 1000))
        with open(os.path.join(self.dir, "advert.bin"), "wb") as f:
            f.write(advert.SerializeToString())
        with open(os.path.join(self.dir, "reply.bin"), "wb") as f:
            f.write(b"\x12\x04fake")  # RpcResponse{code 0, message "fake"}
        self.out = open(os.path.join(self.dir, "requests.txt"), "w+b")
        self.rep = subprocess.Popen(
            ["nngcat", "--rep", "--listen", "tcp://127.0.0.1:%d" % self.port,
             "--file", os.path.join(self.dir, "reply.bin"), "--hex"],
            stdout=self.out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.resp = subprocess.Popen(
            ["nngcat", "--respondent", "--dial", "tcp://127.0.0.1:%d" % (7100 + stack.OFFSET),
             "--file", os.path.join(self.dir, "advert.bin"), "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def requests(self):
        from shop.v1 import rpc_pb2
        self.out.flush()
        with open(self.out.name, "rb") as f:
            lines = f.read().decode("ascii", "replace").splitlines()
        out = []
        for line in lines:
            hexes = re.findall(r"\\x([0-9a-fA-F]{2})", line)
            if hexes:
                out.append(rpc_pb2.RpcRequest.FromString(bytes(int(h, 16) for h in hexes)))
        return out

    def stop(self):
        for p in (self.resp, self.rep):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.out.close()
        # The registry drops the instance when its pipe closes; wait until
        # it and then the gateway no longer route to it.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.NAME not in stack.registry_instances():
                break
            time.sleep(0.1)
        h = {"Authorization": bearer(stack.make_token())}
        while time.monotonic() < deadline:
            served = [request("GET", PROTECTED, headers=h).header("x-served-by") for _ in range(5)]
            if self.NAME not in served:
                break
            time.sleep(0.2)


def test_token_caller_id_reaches_the_service():
    fake = FakeProduct()
    try:
        deadline = time.monotonic() + 15
        h = {"Authorization": bearer(stack.make_token(user_id=4242))}
        while True:
            r = request("GET", PROTECTED, headers=h)
            if r.header("x-served-by") == FakeProduct.NAME:
                break
            check(time.monotonic() < deadline, "the fake product instance never got a call")
            time.sleep(0.2)
        check(r.status == 200, "the fake instance's answer: %r" % r)
        # Forged tokens now: none of them may reach it.
        before = len(fake.requests())
        for name, make in FORGED[:12]:
            r = request("GET", PROTECTED, headers={"Authorization": make()})
            check(r.status == 401, "%s: %r" % (name, r))
        r = request("GET", PROTECTED)
        check(r.status == 401, "no token: %r" % r)
        # A user signed up through svc-auth: its id arrives.
        name = "tok" + secrets.token_hex(6)
        r = request("POST", "/auth/sign-up", {"name": name, "password": "correct horse battery"})
        check(r.status == 201, "sign-up: %r" % r)
        user_id, token = r.json()["user_id"], r.json()["access_token"]
        r = request("GET", PROTECTED, headers={"Authorization": "Bearer " + token})
        check(r.status == 200 and r.header("x-served-by") == FakeProduct.NAME,
              "GET with the sign-up token: %r %r" % (r, r.header("x-served-by")))
        time.sleep(0.2)
        reqs = fake.requests()
        check(len(reqs) == before + 1,
              "the fake instance got %d calls, want 1 (forged tokens must not reach it)"
              % (len(reqs) - before))
        last = reqs[-1]
        check(last.method == "/shop.v1.ProductService/ListProducts", "method %r" % last.method)
        check(last.caller_user_id == int(user_id),
              "caller_user_id %d, want the signed-up user's %s" % (last.caller_user_id, user_id))
        check(reqs[0].caller_user_id == 4242, "caller_user_id %d, want 4242"
              % reqs[0].caller_user_id)
        return "caller_user_id %d arrived" % last.caller_user_id
    finally:
        fake.stop()


CASES = (
    [test_token_good_one_is_200,
     test_token_scheme_case_and_spaces_are_accepted,
     test_token_absent_is_401_missing_token,
     test_token_empty_authorization_is_401_missing_token,
     test_token_other_scheme_is_401_missing_token,
     test_token_ko_detail_keeps_the_code]
    + FORGED_CASES
    + [test_token_refusal_leaves_the_connection_usable,
       test_token_refused_before_the_body_is_read,
       test_token_of_9_kib_is_refused,
       test_token_authorization_of_64_kib_is_refused,
       test_token_two_authorization_fields_are_401,
       test_token_gateway_refuses_a_short_secret,
       test_token_not_needed_on_open_routes,
       test_token_path_tricks_never_reach_a_protected_route,
       test_token_from_sign_up_is_accepted,
       test_token_caller_id_reaches_the_service]
)
