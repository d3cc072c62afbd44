"""stack.py -- what every e2e case uses: where the test stack lives, ./shop,
HTTP to the gateway and the registry, tokens, and checks of common shapes.

Only the standard library (run with Debian's /usr/bin/python3). The stack is
the one `./shop up` starts with SHOP_VAR and SHOP_PORT_OFFSET from the
environment (./shop test sets var/test and 10000), so a developer's stack on
the default ports is never touched.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import socket
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VAR = os.environ.get("SHOP_VAR") or os.path.join(ROOT, "var", "test")
if not os.path.isabs(VAR):
    VAR = os.path.join(ROOT, VAR)
OFFSET = int(os.environ.get("SHOP_PORT_OFFSET", "10000"))

HOST = "127.0.0.1"
GATEWAY_PORT = 8080 + OFFSET
REGISTRY_ADMIN_PORT = 7109 + OFFSET
RPC_PORTS = {"auth": 7201, "product-a": 7211, "product-b": 7212, "order": 7221}
RPC_PORTS = {k: v + OFFSET for k, v in RPC_PORTS.items()}
ADMIN_PORTS = {"registry": 7109, "auth": 7301, "product-a": 7311, "product-b": 7312,
               "order": 7321, "gateway": 8080}
ADMIN_PORTS = {k: v + OFFSET for k, v in ADMIN_PORTS.items()}
INSTANCES = ["registry", "auth", "product-a", "product-b", "order", "gateway"]
# The build folder whose binaries the stack runs (./shop reads the same
# variable): build/ by default, build-asan/ for the sanitizer pass.
BUILD = os.environ.get("SHOP_BUILD") or os.path.join(ROOT, "build")
BINARIES = {
    "registry": os.path.join(BUILD, "registry/registry"),
    "auth": os.path.join(BUILD, "svc-auth/svc-auth"),
    "product-a": os.path.join(BUILD, "svc-product/svc-product"),
    "product-b": os.path.join(BUILD, "svc-product/svc-product"),
    "order": os.path.join(BUILD, "svc-order/svc-order"),
    "gateway": os.path.join(BUILD, "edge-gateway/gateway"),
}

TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
RFC3339_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


class Fail(AssertionError):
    pass


class Counts:
    """What a case returns when it runs a suite of its own (the Node.js
    client's, test_tsclient.py): run.py adds passed and failed to its totals
    instead of counting the case as one."""

    def __init__(self, passed, failed, note=""):
        self.passed, self.failed, self.note = passed, failed, note


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def built(name):
    return os.access(os.path.join(ROOT, BINARIES[name]), os.X_OK)


def built_instances():
    return [n for n in INSTANCES if built(n)]


# ---------------------------------------------------------------- ./shop

def shop(*args, timeout=600, env=None):
    """Runs ./shop ARGS on the test stack; returns (exit code, output). env
    (a dict) is added to the environment: ./shop passes it on to the
    instances it starts (e.g. SHOP_WORKERS for one `start`)."""
    env = dict(os.environ, **(env or {}), SHOP_VAR=VAR, SHOP_PORT_OFFSET=str(OFFSET))
    p = subprocess.run([os.path.join(ROOT, "shop")] + list(args), cwd=ROOT, env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def stack_env():
    out = {}
    with open(os.path.join(VAR, "stack.env")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                out[k] = v
    return out


def pid_of(name):
    try:
        with open(os.path.join(VAR, "run", name + ".pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def alive(pid):
    """Running and not a zombie (a container's pid 1 may not reap)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def data_pids():
    """Pids of our PostgreSQL postmaster and Redis, from their own files."""
    pids = {}
    try:
        with open(os.path.join(VAR, "pg", "data", "postmaster.pid")) as f:
            pids["postgres"] = int(f.readline())
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(VAR, "redis", "redis.pid")) as f:
            pids["redis"] = int(f.read().strip())
    except (OSError, ValueError):
        pass
    return pids


# ------------------------------------------------------------------ HTTP

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value (last one wins)
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise Fail("body is not JSON (%s): %r" % (e, self.body[:200]))

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:300])


def request(method, path, body=None, headers=None, port=None, timeout=10, conn=None):
    """One HTTP request; body may be bytes, str or a JSON-able object."""
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode("utf-8")
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(HOST, port or GATEWAY_PORT, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        if own:
            conn.close()
    if conn.port == GATEWAY_PORT:
        import openapi  # every answer of the gateway against docs/openapi.yaml
        openapi.check_answer(method, path, resp.status, resp.headers, resp.body)
    return resp


def accept_each(lsock, conns, serve, stopped=lambda: False):
    """Accepts on the listening socket lsock until it is closed (or stopped()
    says so), serving each connection with serve(conn) on a thread of its
    own; conns collects them (for the caller to close). Run it on a thread:
    fake peers of the e2e cases (Redis, SP) are built on it."""
    while not stopped():
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        conns.append(conn)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def raw_request(data, port=None, timeout=10):
    """Sends raw bytes and returns (status or None, raw reply). The server may
    answer early and close: a reset while sending is not an error here."""
    s = socket.create_connection((HOST, port or GATEWAY_PORT), timeout=timeout)
    reply = b""
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
                if b"\r\n\r\n" in reply and _complete(reply):
                    break
        except (ConnectionResetError, socket.timeout):
            pass
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
    if m and (port or GATEWAY_PORT) == GATEWAY_PORT:
        import openapi  # a whole answer to a well-formed request: against docs/openapi.yaml
        openapi.check_raw(data, reply)
    return (int(m.group(1)) if m else None), reply


def _complete(reply):
    head, _, body = reply.partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return m is not None and len(body) >= int(m.group(1))


def get_json(port, path):
    r = request("GET", path, port=port, timeout=2)
    check(r.status == 200, "GET %s on :%d -> %r" % (path, port, r))
    return r.json()


# ---------------------------------------------------------------- tokens

def _b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def make_token(user_id=1, name="e2e", secret=None, alg="HS256", iss="shop-auth",
               exp_in=3600, extra=None):
    """A JWT as the auth service signs it (HS256 with SHOP_JWT_SECRET)."""
    if secret is None:
        secret = stack_env()["SHOP_JWT_SECRET"]
    now = int(time.time())
    claims = {"iss": iss, "sub": str(user_id), "name": name, "iat": now,
              "exp": now + exp_in, "jti": secrets.token_hex(8)}
    if extra:
        claims.update(extra)
    head = _b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims).encode())
    signing = (head + "." + body).encode()
    if alg == "none":
        return head + "." + body + "."
    sig = hmac.new(secret.encode(), signing, hashlib.sha256).digest()
    return head + "." + body + "." + _b64url(sig)


_token = None


def auth():
    global _token
    if _token is None:
        _token = make_token()
    return {"Authorization": "Bearer " + _token}


def api(method, path, body=None, headers=None, conn=None):
    """A request to the gateway with a valid token."""
    h = auth()
    h.update(headers or {})
    return request(method, path, body=body, headers=h, conn=conn)


# ---------------------------------------------------------------- checks

def check_problem(r, status, code=None):
    """An RFC 9457 problem+json answer with the given status (and code)."""
    check(r.status == status, "want %d, got %r" % (status, r))
    ct = (r.header("content-type") or "").split(";")[0].strip()
    check(ct == "application/problem+json", "content-type %r, want application/problem+json" % ct)
    p = r.json()
    for k in ("type", "title", "status", "detail", "code", "trace_id"):
        check(k in p, "problem lacks %r: %r" % (k, p))
    check(p["status"] == status, "problem status %r != %d" % (p["status"], status))
    check(isinstance(p["code"], str) and p["code"], "problem code %r" % p["code"])
    if code is not None:
        check(p["code"] == code, "problem code %r, want %r" % (p["code"], code))
    return p


def check_proxied(r):
    """X-Served-By names an instance and traceparent is valid W3C."""
    who = r.header("x-served-by")
    check(who, "no X-Served-By on %r" % r)
    tp = r.header("traceparent")
    check(tp, "no traceparent on %r" % r)
    m = TRACEPARENT_RE.match(tp)
    check(m, "bad traceparent %r" % tp)
    check(m.group(1) != "0" * 32 and m.group(2) != "0" * 16, "all-zero id in traceparent %r" % tp)
    return who


def check_product(p):
    check(isinstance(p, dict), "product is not an object: %r" % p)
    check(isinstance(p.get("id"), int) and p["id"] > 0, "bad id in %r" % p)
    check(isinstance(p.get("name"), str), "bad name in %r" % p)
    check(isinstance(p.get("supply_price"), int), "bad supply_price in %r" % p)
    check(isinstance(p.get("created_at"), str) and RFC3339_UTC_RE.match(p["created_at"]),
          "created_at not RFC 3339 UTC in %r" % p)


def registry_instances():
    """Instance names currently in the registry's /v1/services."""
    doc = get_json(REGISTRY_ADMIN_PORT, "/v1/services")
    return {a["instance"]: a for a in walk_adverts(doc)}


def walk_adverts(doc):
    """Every object with an "instance" key, however the document nests them."""
    if isinstance(doc, dict):
        if isinstance(doc.get("instance"), str):
            yield doc
        else:
            for v in doc.values():
                yield from walk_adverts(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from walk_adverts(v)
