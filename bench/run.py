#!/usr/bin/python3
"""run.py -- `./shop bench`: shop's hot paths against an nginx one-hop proxy
on the same machine, in the same run, with wrk.

Reference: nginx (front, proxy_pass with upstream keepalive) -> nginx
(returns a JSON body the size of an order). The fallback row stops both
product instances and checks every answer is the order service's own
503 product_service_unavailable (anything else counts as an error), on 64
connections and on one. Each round runs the reference,
then one shop path, both after a warm-up, so that drift between runs hits
both alike. Prints one table: path, req/s, p50, p99, errors, ratio to the
reference of the same round; then GET /products alone and while 64 other
connections sign in with wrong passwords (p99 side by side); then pgbench -N at the same connection count
(what the database alone can write), the resident memory of the six shop
processes, and the time `./shop up` takes to readiness with a warm build.

Usage: bench/run.py [--smoke]   (--smoke: 1 s runs, no warm-up: the version
./shop test runs so that the benchmark cannot rot; its numbers mean nothing)
Environment: SHOP_VAR, SHOP_PORT_OFFSET (as ./shop), BENCH_SECONDS (10),
BENCH_CONNECTIONS (64), BENCH_THREADS (2).
"""

import glob
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
os.environ.setdefault("SHOP_VAR", os.path.join(ROOT, "var"))
os.environ.setdefault("SHOP_PORT_OFFSET", "0")
import stack  # noqa: E402  (HTTP helpers and the stack's layout)

SMOKE = "--smoke" in sys.argv
SECONDS = 1 if SMOKE else int(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = 0 if SMOKE else 3
CONNS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
GW = "http://127.0.0.1:%d" % stack.GATEWAY_PORT


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The reference's ports: free ones from the kernel, so that a leftover of
# another run cannot collide.
NGINX_FRONT = free_port()
NGINX_BACK = free_port()
INSTANCES = ["registry", "auth", "product-a", "product-b", "order", "gateway"]


def die(msg):
    print("bench: " + msg, file=sys.stderr)
    sys.exit(1)


def shop(*args):
    rc, out = stack.shop(*args)
    if rc != 0:
        die("./shop %s failed:\n%s" % (" ".join(args), out[-2000:]))
    return out


# ------------------------------------------------------------- nginx pair

def nginx_start(body, workdir):
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""
worker_processes 1;
daemon on;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream back { server 127.0.0.1:%(back)d; keepalive 64; }
    server {
        listen 127.0.0.1:%(back)d;
        location / { default_type application/json; return 200 '%(body)s'; }
    }
    server {
        listen 127.0.0.1:%(front)d;
        location / {
            proxy_pass http://back;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
""" % {"dir": workdir, "back": NGINX_BACK, "front": NGINX_FRONT, "body": body.replace("'", "")})
    # nginx needs a writable temp folder of its own when not root-installed.
    subprocess.run(["nginx", "-p", workdir, "-c", conf, "-e", os.path.join(workdir, "error.log")],
                   check=True, stderr=subprocess.PIPE)
    for _ in range(50):
        try:
            r = stack.request("GET", "/", port=NGINX_FRONT, timeout=1)
            if r.status == 200:
                return conf
        except OSError:
            pass
        time.sleep(0.1)
    die("nginx did not answer on :%d" % NGINX_FRONT)


def nginx_stop(workdir, conf):
    subprocess.run(["nginx", "-p", workdir, "-c", conf, "-s", "stop"], stderr=subprocess.DEVNULL)


# ------------------------------------------------------------------ wrk

LUA = """
wrk.method = "%(method)s"
wrk.headers["Content-Type"] = "application/json"
%(auth)s
%(body)s
"""

# Appended when a row expects one problem answer: every answer is read and
# sorted into wanted (that status, that "code", a Retry-After) and other,
# summed over wrk's threads at the end ("answers: wanted N, other N").
LUA_EXPECT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) wanted_n = 0; other_n = 0 end
function response(status, headers, body)
  local code = body and string.match(body, '"code":"([^"]*)"')
  local ra = headers["Retry-After"] or headers["retry-after"]
  if status == %(status)d and code == "%(code)s" and ra ~= nil then
    wanted_n = wanted_n + 1
  else
    other_n = other_n + 1
  end
end
function done(summary, latency, requests)
  local w, o = 0, 0
  for _, t in ipairs(threads) do w = w + t:get("wanted_n"); o = o + t:get("other_n") end
  io.write(string.format("answers: wanted %%d, other %%d\\n", w, o))
end
"""


def wrk(url, method="GET", token=None, body=None, seconds=SECONDS, lua_dir=None, conns=None,
        threads=None, expect=None):
    """Runs wrk; returns dict(rps, p50_ms, p99_ms, errors, requests). With
    expect=(status, code) every answer must be that problem (with
    Retry-After): errors are then the other answers plus socket errors, and
    wanted counts the right ones."""
    script = os.path.join(lua_dir, "req-%s.lua" % secrets.token_hex(4))
    with open(script, "w") as f:
        f.write(LUA % {
            "method": method,
            "auth": 'wrk.headers["Authorization"] = "Bearer %s"' % token if token else "",
            "body": "wrk.body = '%s'" % body if body else "",
        })
        if expect:
            f.write(LUA_EXPECT % {"status": expect[0], "code": expect[1]})
    cmd = ["wrk", "-t%d" % (threads or THREADS), "-c%d" % (conns or CONNS), "-d%ds" % seconds,
           "--latency", "-s", script, url]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=seconds + 60)
    text = out.stdout.decode()
    res = {"rps": 0.0, "p50_ms": None, "p99_ms": None, "errors": 0, "requests": 0, "raw": text}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        res["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(r"^\s+%s(?:\.000)?%%\s+([\d.]+)(us|ms|s)\s*$" % pct, text, re.M)
        if m:
            v = float(m.group(1))
            res[key] = v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    m = re.search(r"(\d+) requests in", text)
    if m:
        res["requests"] = int(m.group(1))
    errs = 0
    if expect:
        m = re.search(r"^answers: wanted (\d+), other (\d+)$", text, re.M)
        if m:
            res["wanted"] = int(m.group(1))
            errs += int(m.group(2))
        else:  # the check did not run: nothing is known to be right
            res["wanted"] = 0
            errs += max(res["requests"], 1)
    else:
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        if m:
            errs += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errs += sum(int(x) for x in m.groups())
    res["errors"] = errs
    return res


# ------------------------------------------------------------- the stack

def api(method, path, body=None, token=None):
    h = {"Authorization": "Bearer " + token} if token else {}
    return stack.request(method, path, body=body, headers=h)


def prepare():
    """A user, a product, a cached order; returns (token, product id, order id, name, pw)."""
    name, pw = "bench-" + secrets.token_hex(4), "bench-password"
    r = api("POST", "/auth/sign-up", {"name": name, "password": pw})
    if r.status != 201:
        die("sign-up: %r" % r)
    token = r.json()["access_token"]
    r = api("POST", "/products", {"name": "Bench keyboard", "supply_price": 30000}, token)
    if r.status != 201:
        die("product: %r" % r)
    pid = r.json()["id"]
    r = api("POST", "/orders", {"product_ids": [pid, pid, pid]}, token)
    if r.status != 201:
        die("order: %r" % r)
    oid = r.json()["id"]
    for _ in range(12):  # a few products so that a page of 10 is full
        api("POST", "/products", {"name": "Bench item", "supply_price": 1000}, token)
    r = api("GET", "/orders/%d" % oid, token=token)
    if r.header("x-cache") != "HIT":
        die("the order is not cached: %r" % r.header("x-cache"))
    return token, pid, oid, name, pw, r.body.decode()


def products_beside_sign_ins(token, lua_dir):
    """GET /products?page_size=10 alone, then while 64 other connections
    sign in with wrong passwords (a helper wrk, started first and running
    past the measured one): returns (alone, beside, the helper's result).
    The products path shares the gateway and the machine's cores with the
    sign-ins, not their service."""
    url = GW + "/products?page_size=10"
    wrong = json.dumps({"name": "bench-nobody-" + secrets.token_hex(4), "password": "wrong-pw"})
    alone = wrk(url, "GET", token, None, lua_dir=lua_dir)
    helper = {}

    def load():
        helper.update(wrk(GW + "/auth/sign-in", "POST", None, wrong, seconds=SECONDS + 2,
                          lua_dir=lua_dir, conns=64, threads=1))

    th = threading.Thread(target=load)
    th.start()
    time.sleep(1)  # the sign-ins are under way
    beside = wrk(url, "GET", token, None, lua_dir=lua_dir)
    th.join()
    return alone, beside, helper


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    """Proportional set size: shared pages divided among their users, so
    that the sum over processes counts each page once."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    """utime + stime of every thread of pid (also of threads that ended),
    in clock ticks, from /proc/<pid>/stat; None when pid is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)


def ctxt_switches(pid):
    """Voluntary + nonvoluntary context switches summed over pid's live
    threads (/proc/<pid>/status alone counts the main thread only)."""
    total = 0
    for path in glob.glob("/proc/%d/task/*/status" % pid):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:",
                                        "nonvoluntary_ctxt_switches:")):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


class ProcMeter:
    """CPU µs and context switches per request of each named process over
    one measurement: start() before it, stop(requests) after."""

    def __init__(self, pids):
        self.pids = {n: p for n, p in pids.items() if p}
        self.before = {}

    def _sample(self):
        return {n: (cpu_ticks(p), ctxt_switches(p)) for n, p in self.pids.items()}

    def start(self):
        self.before = self._sample()

    def stop(self, requests):
        """{name: (µs per request, switches per request)}; a process that
        was not running throughout is left out."""
        after = self._sample()
        out = {}
        for n, (t1, c1) in after.items():
            t0, c0 = self.before.get(n, (None, None))
            if t0 is None or t1 is None or requests <= 0:
                continue
            out[n] = ((t1 - t0) * 1e6 / CLK_TCK / requests, (c1 - c0) / requests)
        return out


def shop_pids():
    return {n: stack.pid_of(n) for n in INSTANCES}


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def user_of(token):
    import base64
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return int(json.loads(base64.urlsafe_b64decode(payload))["sub"])


def bench_binary(name):
    build = os.environ.get("SHOP_BUILD") or os.path.join(ROOT, "build")
    binary = os.path.join(build, "bench", name)
    return binary if os.access(binary, os.X_OK) else None


def rpcbench(url, method, payload, user_id):
    """One method called straight over nng (bench/rpcbench), 64 in flight:
    what a service (or the echo reference) serves without the gateway."""
    binary = bench_binary("rpcbench")
    if binary is None:
        return None
    out = subprocess.run([binary, url, method, payload.hex(), str(CONNS),
                          str(SECONDS), str(user_id)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=SECONDS + 60).stdout.decode()
    m = re.search(r"calls/s (\d+)\s+p50 (\d+) us\s+p99 (\d+) us\s+ok (\d+)\s+failed (\d+)", out)
    if not m:
        return {"raw": out}
    return {"rps": float(m.group(1)), "p50_ms": int(m.group(2)) / 1000,
            "p99_ms": int(m.group(3)) / 1000, "ok": int(m.group(4)), "failed": int(m.group(5))}


def echo_start():
    """bench/nngecho: a plain nng REP server, 64 contexts answering from
    their aio callbacks; returns (Popen, url) or (None, None)."""
    binary = bench_binary("nngecho")
    if binary is None:
        return None, None
    p = subprocess.Popen([binary, "64"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    m = re.match(r"listening (\S+)", p.stdout.readline().decode())
    if not m:
        echo_stop(p)
        return None, None
    return p, m.group(1)


def echo_stop(p):
    if p is not None:
        p.stdin.close()  # its end
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def argon2_rate(seconds):
    """Argon2id verifications per second with THREADS threads, at svc-auth's
    parameters (t=2, m=19456 KiB: SHOP_ARGON2_T, SHOP_ARGON2_M_KIB), through
    libsodium as svc-auth calls it: the ceiling of sign-ins per second."""
    import ctypes
    import threading
    try:
        lib = ctypes.CDLL("libsodium.so.23")
    except OSError:
        return None
    if lib.sodium_init() < 0:
        return None
    lib.crypto_pwhash_str_alg.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong,
                                          ctypes.c_ulonglong, ctypes.c_size_t, ctypes.c_int]
    lib.crypto_pwhash_str_verify.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong]
    out = ctypes.create_string_buffer(128)
    pw = b"bench-password"
    if lib.crypto_pwhash_str_alg(out, pw, len(pw), 2, 19456 * 1024, 2) != 0:  # ARGON2ID13
        return None
    stored = out.value
    done = [0] * THREADS
    until = time.monotonic() + seconds

    def work(i):
        while time.monotonic() < until:
            if lib.crypto_pwhash_str_verify(stored, pw, len(pw)) == 0:
                done[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


def pgbench_tps():
    env = stack.stack_env()
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"))
    if not bins:
        return None, "no pgbench"
    dsn = env["SHOP_PG_DSN_ORDER"]
    base = dsn.rsplit("/", 1)[0] + "/shop_bench"
    psql = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))[-1]
    subprocess.run([psql, dsn, "-q", "-c", "DROP DATABASE IF EXISTS shop_bench WITH (FORCE)"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([psql, dsn, "-q", "-c", "CREATE DATABASE shop_bench"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([bins[-1], "-i", "-q", "-s", "1", base], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    # The smoke run counts transactions (-t): a 1 s -T run on a busy
    # machine may end before pgbench's clients finished connecting.
    length = ["-t", "5"] if SMOKE else ["-T", str(SECONDS)]
    out = subprocess.run([bins[-1], "-N", "-c", str(CONNS), "-j", str(THREADS)] + length + [base],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode()
    m = re.search(r"tps = ([\d.]+)", out)
    return (float(m.group(1)) if m else None), out


def up_time():
    """Seconds `./shop up` takes to readiness with a warm build and an
    existing database (the services are stopped first, not the data)."""
    for name in reversed(INSTANCES):
        stack.shop("stop", name)
    t = time.monotonic()
    shop("up")
    return time.monotonic() - t


FALLBACK = "POST /orders, products down (503)"
FALLBACK_ONE = "  the same, 1 connection"


def fallback_ready(pid, token):
    """Waits (5 s at most) until POST /orders answers the order service's
    fallback, so that the row does not start on a product call still in
    flight."""
    until = time.monotonic() + 5
    while time.monotonic() < until:
        try:
            r = api("POST", "/orders", {"product_ids": [pid]}, token)
            if r.status == 503 and r.json().get("code") == "product_service_unavailable":
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)


def gateway_breaker(instance):
    """The state of the gateway's breaker on instance, from its /metrics."""
    try:
        text = stack.request("GET", "/metrics").body.decode()
    except OSError:
        return None
    for state in ("closed", "open", "half_open"):
        if ('resilience4j_circuitbreaker_state{name="gateway:%s",state="%s"} 1'
                % (instance, state)) in text:
            return state
    return None


def fmt(v, unit=""):
    return "-" if v is None else ("%.2f%s" % (v, unit) if isinstance(v, float) else "%s%s" % (v, unit))


PRODUCTS_ALONE = "GET /products, alone"
PRODUCTS_BESIDE = "GET /products, 64 signing in"


def main():
    if not shutil.which("wrk") or not shutil.which("nginx"):
        die("wrk and nginx are needed (./shop bench installs them)")
    shop("up")
    token, pid, oid, name, pw, order_body = prepare()
    work = tempfile.mkdtemp(prefix="shop-bench-")
    conf = nginx_start(order_body, work)
    post_order = json.dumps({"product_ids": [pid]})
    sign_in = json.dumps({"name": name, "password": pw})
    paths = [
        ("GET /orders/{id} (cache hit)", GW + "/orders/%d" % oid, "GET", token, None),
        ("GET /products?page_size=10", GW + "/products?page_size=10", "GET", token, None),
        ("POST /orders (one product)", GW + "/orders", "POST", token, post_order),
        (FALLBACK, GW + "/orders", "POST", token, post_order),
        ("POST /auth/sign-in", GW + "/auth/sign-in", "POST", None, sign_in),
    ]
    rows = []
    costs = []  # (label, {process: (µs/req, switches/req)})
    meter = ProcMeter(shop_pids())
    one = ref_one = None
    gw_order_state = None
    try:
        for label, url, method, tok, body in paths:
            expect = None
            if label == FALLBACK:
                # Both product instances gone: the order service's breakers
                # on them open at once (their pipes close) and it answers
                # the fallback itself. Every answer is checked to be that
                # fallback; anything else (the gateway's own 503 when its
                # breaker on the order service opened...) is an error.
                expect = (503, "product_service_unavailable")
                stack.shop("stop", "product-a")
                stack.shop("stop", "product-b")
                fallback_ready(pid, token)
            if WARMUP:
                wrk("http://127.0.0.1:%d/" % NGINX_FRONT, seconds=WARMUP, lua_dir=work)
                wrk(url, method, tok, body, seconds=WARMUP, lua_dir=work, expect=expect)
            ref = wrk("http://127.0.0.1:%d/" % NGINX_FRONT, lua_dir=work)
            meter.start()
            got = wrk(url, method, tok, body, lua_dir=work, expect=expect)
            costs.append((label, meter.stop(got["requests"])))
            if label == FALLBACK:
                # Its latency without 63 other connections queued ahead:
                # at 64 connections p50 is about 64 / req/s whatever the path.
                one = wrk(url, method, tok, body, seconds=min(SECONDS, 3), lua_dir=work,
                          conns=1, threads=1, expect=expect)
                ref_one = wrk("http://127.0.0.1:%d/" % NGINX_FRONT, seconds=min(SECONDS, 3),
                              lua_dir=work, conns=1, threads=1)
                gw_order_state = gateway_breaker("order")
                shop("start", "product-a")
                shop("start", "product-b")
                meter = ProcMeter(shop_pids())  # the product instances are new
            rows.append((label, got, ref))
        if WARMUP:
            wrk(GW + "/products?page_size=10", "GET", token, None, seconds=WARMUP, lua_dir=work)
        prod_alone, prod_beside, signing = products_beside_sign_ins(token, work)
    finally:
        nginx_stop(work, conf)
    uid = user_of(token)
    direct = [
        ("GetOrder (cache hit)", stack.RPC_PORTS["order"], "/shop.v1.OrderService/GetOrder",
         b"\x08" + varint(oid), uid, True),
        ("ListProducts page_size=10", stack.RPC_PORTS["product-a"],
         "/shop.v1.ProductService/ListProducts", b"\x08\x0a", uid, True),
        ("unknown method (nng + dispatch)", stack.RPC_PORTS["order"],
         "/shop.v1.OrderService/Bench", b"", uid, False),
    ]
    # Each round: the echo reference, then the service row, both from the
    # same client, so that drift between rounds hits both alike.
    echo, echo_url = echo_start()
    direct_rows = []
    meter = ProcMeter(dict(shop_pids(), nngecho=echo.pid if echo else None))
    try:
        for label, port, m, payload, u, want_ok in direct:
            meter.start()
            ref = rpcbench(echo_url, "/bench.Echo", payload, u) if echo_url else None
            if ref and "rps" in ref and not direct_rows:
                # What the reference itself costs, once.
                costs.append(("  nngecho (reference)",
                              meter.stop(ref["ok"] + ref["failed"])))
            meter.start()
            got = rpcbench("tcp://127.0.0.1:%d" % port, m, payload, u)
            calls = (got or {}).get("ok", 0) + (got or {}).get("failed", 0)
            costs.append(("  " + label, meter.stop(calls)))
            direct_rows.append((label, got, want_ok, ref))
    finally:
        echo_stop(echo)
    argon2 = argon2_rate(1 if SMOKE else 3)
    tps, pg_out = pgbench_tps()
    rss = {n: rss_kib(stack.pid_of(n) or 0) for n in INSTANCES}
    pss = {n: pss_kib(stack.pid_of(n) or 0) for n in INSTANCES}
    up_s = up_time()
    shutil.rmtree(work, ignore_errors=True)

    print()
    print("shop bench: wrk -t%d -c%d -d%ds, reference nginx one-hop proxy, %s" %
          (THREADS, CONNS, SECONDS, "SMOKE RUN (numbers mean nothing)" if SMOKE else "same round"))
    print("%-34s %10s %9s %9s %7s %10s %7s" % ("path", "req/s", "p50 ms", "p99 ms", "errors",
                                              "nginx r/s", "ratio"))
    for label, got, ref in rows:
        ratio = got["rps"] / ref["rps"] if ref["rps"] else 0
        print("%-34s %10.0f %9s %9s %7d %10.0f %6.2fx" % (label, got["rps"], fmt(got["p50_ms"]),
                                                          fmt(got["p99_ms"]), got["errors"],
                                                          ref["rps"], ratio))
        if label == FALLBACK:
            # At 64 connections p50 is about 64 / req/s, whatever the path;
            # one connection shows the path's own latency.
            print("%-34s %10.0f %9s %9s %7d %10.0f   (nginx p50 %s ms)" % (
                FALLBACK_ONE, one["rps"], fmt(one["p50_ms"]), fmt(one["p99_ms"]),
                one["errors"], ref_one["rps"], fmt(ref_one["p50_ms"])))
            print("  (errors: answers other than 503 product_service_unavailable with "
                  "Retry-After; %d + %d right; gateway:order breaker after: %s)" % (
                      got.get("wanted", 0), one.get("wanted", 0), gw_order_state or "unknown"))
    print("%-34s %10.0f %9s %9s %7d" % (PRODUCTS_ALONE, prod_alone["rps"],
                                         fmt(prod_alone["p50_ms"]), fmt(prod_alone["p99_ms"]),
                                         prod_alone["errors"]))
    print("%-34s %10.0f %9s %9s %7d   (p99 %s ms alone, %s ms beside)" % (
        PRODUCTS_BESIDE, prod_beside["rps"], fmt(prod_beside["p50_ms"]),
        fmt(prod_beside["p99_ms"]), prod_beside["errors"], fmt(prod_alone["p99_ms"]),
        fmt(prod_beside["p99_ms"])))
    print("  (the helper: 64 connections of wrong-password sign-ins, %.0f answers/s, "
          "p99 %s ms; non-2xx by design)" % (signing.get("rps", 0), fmt(signing.get("p99_ms"))))
    post = [g for l, g, _ in rows if l.startswith("POST /orders (")][0]
    if tps:
        print("%-34s %10.0f   (POST /orders / pgbench: %.2fx)" % ("pgbench -N -c%d (database alone)"
                                                                 % CONNS, tps, post["rps"] / tps))
    else:
        print("pgbench: failed:\n" + pg_out[-500:])
    sign = [g for l, g, _ in rows if l.startswith("POST /auth/sign-in")][0]
    ok_signins = (sign["requests"] - sign["errors"]) / SECONDS
    print("%-34s %10s   (sign-ins answered 2xx through the gateway: %.0f/s)" % (
        "Argon2id verifies/s, %d threads" % THREADS,
        "%.0f" % argon2 if argon2 else "-", ok_signins))
    print("services alone over nng (bench/rpcbench, %d in flight, no gateway):" % CONNS)
    print("  %-32s %10s %9s %9s %7s %10s %7s" % ("method", "calls/s", "p50 ms", "p99 ms",
                                                "failed", "echo c/s", "ratio"))
    for label, got, want_ok, ref in direct_rows:
        if got is None or "rps" not in got:
            print("  %-32s failed: %s" % (label, (got or {}).get("raw", "no bench/rpcbench")[-200:]))
            continue
        if ref is None or "rps" not in ref or ref["failed"]:
            print("  %-32s failed: the echo reference: %s" % (
                label, (ref or {}).get("raw", "no bench/nngecho")[-200:] if ref is None or
                "rps" not in ref else "%d failed calls" % ref["failed"]))
            continue
        # UNIMPLEMENTED is the answer wanted of the unknown method.
        calls = got["rps"] if want_ok else (got["ok"] + got["failed"]) / SECONDS
        failed = got["failed"] if want_ok else 0
        print("  %-32s %10.0f %9.2f %9.2f %7d %10.0f %6.2fx%s" % (
            label, calls, got["p50_ms"], got["p99_ms"], failed, ref["rps"],
            calls / ref["rps"] if ref["rps"] else 0,
            "" if want_ok else "  (UNIMPLEMENTED: no handler runs)"))
    print("  (echo: bench/nngecho, a plain nng REP server, 64 contexts answering from their "
          "callbacks, called by the same rpcbench just before each row)")
    print("CPU µs / context switches per request, by process, during each row "
          "(/proc/<pid>/stat utime+stime, /proc/<pid>/task/*/status):")
    names = INSTANCES + ["nngecho"]
    print("  %-34s" % "row" + "".join(" %13s" % n for n in names))
    for label, cost in costs:
        print("  %-34s" % label + "".join(
            " %13s" % ("%.0f/%.1f" % cost[n] if n in cost else "-") for n in names))
    total = sum(rss.values())
    print("resident memory (RSS): " + ", ".join("%s %.1f MiB" % (n, k / 1024) for n, k in rss.items()) +
          "; sum %.1f MiB" % (total / 1024))
    print("together (PSS: shared library pages counted once): %.1f MiB" % (sum(pss.values()) / 1024))
    print("./shop up to ready (warm build, existing database): %.2f s" % up_s)
    bad = [l for l, g, _ in rows if g["requests"] == 0]
    bad += [l for l, g in ((PRODUCTS_ALONE, prod_alone), (PRODUCTS_BESIDE, prod_beside))
            if g["requests"] == 0]
    if bad:
        die("no request completed for: %s" % ", ".join(bad))
    return 0


if __name__ == "__main__":
    sys.exit(main())
