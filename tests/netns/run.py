#!/usr/bin/python3
"""run.py -- the multi-host test (issue 8): every process on a host of its own.

The registry, the gateway, each service instance (auth, product-a, product-b,
order) and the data stores (PostgreSQL and Redis, started by
`./shop up --data-only`) each run in a network namespace of their own, with an
address of their own in 10.213.0.0/24 on a veth pair to one bridge. The bridge
lives in a namespace of its own too, and so does this runner's HTTP client:
nothing of the test network touches the machine's own namespace, so nothing
is reachable from outside the machine (or from the machine's own processes),
and every call, REST or nng or libpq or Redis, crosses a real network stack.

Then: a REST flow through the gateway (sign-up, sign-in, create product,
create order, get order); product-a's cable is pulled (its switch port set
down) and it must leave the registry's rotation within the bound that the
survey period and SHOP_REGISTRY_MISSES give, while requests through the
gateway keep succeeding (a GET sent to product-a before the gateway's view
dropped it is retried on product-b after its per-try timeout, none fails); the
cable is put back and product-a
must rejoin the registry and serve again within a bound.

Usage: /usr/bin/python3 tests/netns/run.py         (as root; about 15 s)
Environment: SHOP_BUILD (the build folder whose binaries run; default build/).
Ends with the line "netns: N passed, N failed"; exits non-zero on any failure.
Nothing is skipped: without root or network namespaces it fails, saying why.

Names: every namespace is shopnt<PID>-<role> (PID of this runner), so a run
cleans what a crashed earlier run left (namespaces whose runner is gone, and
the processes in them, and var/netns/<PID>/) and never touches a concurrent
run's. Everything is removed at the end, on failure too; on failure the logs
stay in var/netns/<PID>/log/ until the next run.
"""

import ctypes
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

sys.dont_write_bytecode = True

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("SHOP_BUILD") or os.path.join(ROOT, "build")
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
SHOP = os.path.join(ROOT, "shop")

PREFIX = "shopnt"
RUN_ID = os.getpid()
STATE = os.path.join(ROOT, "var", "netns", str(RUN_ID))
LOGDIR = os.path.join(STATE, "log")

NET = "10.213.0"      # the test network: 10.213.0.0/24, private, on no real interface
ADDR = {              # role -> address; the switch namespace has none
    "cli": NET + ".10",  # this runner's HTTP client
    "reg": NET + ".2",
    "data": NET + ".3",
    "auth": NET + ".4",
    "pa": NET + ".5",
    "pb": NET + ".6",
    "order": NET + ".7",
    "gw": NET + ".8",
}
ROLES = list(ADDR)

# The registry's timing for this test, and the bounds derived from it.
SURVEY_MS = 200
MISSES = 3
# Worst case: the cable is pulled just after an answered survey; the next
# MISSES surveys go unanswered and the registry drops the instance at the
# start of the round after them, (MISSES + 1) periods after the cut. Slack:
# scheduling on a loaded 2-core machine and the 20 ms polling here.
DROP_SLACK_S = 0.5
DROP_BOUND_S = (MISSES + 1) * SURVEY_MS / 1000.0 + DROP_SLACK_S
# Back in rotation: no survey reaches product-a until TCP retransmits the
# registry's queued surveys, and TCP's retransmission timer backs off
# exponentially (200 ms, doubled at each try) while the cable is out, so the
# first retransmission after it is back comes at most about as long as the
# cable was out (+ the first RTO) after it; then the current or the next
# survey is answered (2 periods). Computed after the cut, from its length.
BACK_SLACK_S = 1.0
# Serving again through the gateway: its own connection to product-a is a
# different TCP connection, which backs off the same way (up to about as long
# as the cable was out), a breaker that opened on the cut's timeouts admits
# trial calls 5 s later (contract section 5), and a call sent on the stalled
# connection waits out the gateway's 2 s deadline: cable out + 0.2 + 5 + 2 s,
# + 2 s slack. Computed after the cut.
BREAKER_OPEN_S = 5.0
RPC_TIMEOUT_S = 2.0  # SHOP_RPC_TIMEOUT_MS's default, which the gateway runs with
SERVE_SLACK_S = 2.0

HOLD_S = 2.0          # how long the cut lasts after the drop was seen
GRACE_S = 0.3         # from the drop seen here to the gateway's view following it
LOAD_THREADS = 4
LOAD_PAUSE_S = 0.02   # between two requests of one load thread
BUDGET_S = 60         # the run before the cleanup; the cleanup has 20 s more: < 90 s in all
CLEANUP_S = 20

INSTANCES = [
    # name, role, binary, rpc port, admin port, weight
    ("registry", "reg", "registry/registry", None, 7109, None),
    ("auth", "auth", "svc-auth/svc-auth", 7201, 7301, 100),
    ("product-a", "pa", "svc-product/svc-product", 7211, 7311, 70),
    ("product-b", "pb", "svc-product/svc-product", 7212, 7312, 30),
    ("order", "order", "svc-order/svc-order", 7221, 7321, 100),
    ("gateway", "gw", "edge-gateway/gateway", None, 8080, None),
]
INST = {i[0]: i for i in INSTANCES}
SERVICES = ["auth", "product-a", "product-b", "order"]
GW = (ADDR["gw"], 8080)
REG_ADMIN = (ADDR["reg"], 7109)

CASES = [
    "preflight: root, network namespaces, binaries",
    "network: one namespace per host, veth pairs to a bridge, isolated from the machine",
    "data stores: PostgreSQL and Redis listen on the data namespace's address only",
    "instances: each binds and advertises its namespace's address; gateway ready",
    "REST across namespaces: sign-up, sign-in, product, order, get order",
    "balance: both product instances serve through the gateway",
    "cut: product-a leaves the registry's rotation within the survey bound",
    "cut: requests through the gateway keep succeeding on product-b",
    "restore: product-a is back in the registry's rotation within the bound",
    "restore: product-a serves through the gateway again",
    "cleanup: no process or namespace left, data stores stopped",
]


class Fail(AssertionError):
    pass


class Budget(BaseException):
    """The time is up: not caught by a case, only by main and the cleanup."""


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def mono():
    return time.monotonic()


T0 = mono()


def say(msg):
    try:
        print("[%5.1f s] %s" % (mono() - T0, msg), flush=True)
    except OSError:
        pass  # a closed stdout (| head) must not stop the cleanup


# ------------------------------------------------------------------ shell

def run(argv, timeout=30, check_rc=True, env=None, input_=None):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL if input_ is None else None,
                       input=input_, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, env=env)
    out = p.stdout.decode("utf-8", "replace")
    if check_rc and p.returncode != 0:
        raise Fail("%s: exit %d: %s" % (" ".join(argv), p.returncode, out.strip()[-800:]))
    return p.returncode, out


def ns_name(role, run_id=RUN_ID):
    return "%s%d-%s" % (PREFIX, run_id, role)


SW = ns_name("sw")


def ip(*args, ns=None, timeout=10, check_rc=True):
    argv = ["ip"] + (["-n", ns] if ns else []) + list(args)
    return run(argv, timeout=timeout, check_rc=check_rc)[1]


def netns_list():
    _, out = run(["ip", "netns", "list"], check_rc=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(name):
    rc, out = run(["ip", "netns", "pids", name], check_rc=False)
    return [int(x) for x in out.split() if x.isdigit()] if rc == 0 else []


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def is_runner(pid):
    """pid runs this file (whatever path it was started by)."""
    me = os.path.realpath(__file__)
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
        cwd = os.readlink("/proc/%d/cwd" % pid)
    except OSError:
        return False
    for a in argv[1:3]:
        a = a.decode("utf-8", "replace")
        if a and os.path.realpath(os.path.join(cwd, a)) == me:
            return True
    return False


def kill_pids(pids, grace_s=2.0):
    """SIGTERM, then SIGKILL after grace_s: processes of our own namespaces."""
    pids = [p for p in pids if p != os.getpid() and alive(p)]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except OSError:
            pass
    end = mono() + grace_s
    while mono() < end and any(alive(p) for p in pids):
        time.sleep(0.05)
    for p in pids:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
    end = mono() + 2
    while mono() < end and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def remove_state(folder):
    """var/netns/<pid>/ with the database folders it links to (./shop puts
    them under /var/tmp/shop-* when the postgres user cannot reach var/)."""
    for sub in ("pg", "redis"):
        link = os.path.join(folder, sub)
        if os.path.islink(link):
            target = os.path.realpath(link)
            if target.startswith("/var/tmp/shop-"):
                shutil.rmtree(target, ignore_errors=True)
                try:
                    os.rmdir(os.path.dirname(target))  # the private parent, once empty
                except OSError:
                    pass
    shutil.rmtree(folder, ignore_errors=True)


def clean_leftovers():
    """Namespaces and state of earlier runs whose runner is gone."""
    cleaned, stale, pids = [], [], []
    for name in netns_list():
        m = re.match(r"^%s(\d+)-" % PREFIX, name)
        if not m:
            continue
        pid = int(m.group(1))
        if pid != RUN_ID and alive(pid) and is_runner(pid):
            continue  # a concurrent run: not ours to touch
        stale.append(name)
        pids += netns_pids(name)
    left = kill_pids(pids)  # all at once: one grace period, not one per namespace
    for name in stale:
        run(["ip", "netns", "del", name], check_rc=False)
        cleaned.append(name)
    if left:
        cleaned.append("(pids still alive: %s)" % left)
    base = os.path.join(ROOT, "var", "netns")
    if os.path.isdir(base):
        for d in os.listdir(base):
            if d.isdigit() and not (alive(int(d)) and is_runner(int(d))):
                remove_state(os.path.join(base, d))
                cleaned.append("var/netns/" + d)
    if cleaned:
        say("cleaned leftovers of earlier runs: " + ", ".join(cleaned))


HOME_NETNS = []  # the machine's namespace, to come back to


def setns(fd, what):
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise Fail("setns(%s): %s" % (what, os.strerror(ctypes.get_errno())))


def enter_netns(name):
    """Moves this thread (the main one, before any other starts) into a
    namespace: every socket it and its later threads open lives there."""
    if not HOME_NETNS:
        HOME_NETNS.append(os.open("/proc/self/ns/net", os.O_RDONLY))
    fd = os.open("/run/netns/" + name, os.O_RDONLY)
    try:
        setns(fd, name)
    finally:
        os.close(fd)


def leave_netns():
    if HOME_NETNS:
        setns(HOME_NETNS[0], "the machine's namespace")


# ------------------------------------------------------------------- HTTP

class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise Fail("not JSON: %r" % self.body[:200])

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:200])


def hreq(method, addr, path, body=None, token=None, timeout=5, conn=None):
    hdrs = {}
    if body is not None:
        body = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if token:
        hdrs["Authorization"] = "Bearer " + token
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(addr[0], addr[1], timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        if own:
            conn.close()



def registry_services():
    return hreq("GET", REG_ADMIN, "/v1/services", timeout=2).json()


def instances_in_registry():
    return {i["instance"]: i for i in registry_services()}


def wait_until(pred, timeout, step=0.05, what="condition"):
    end = mono() + timeout
    last = None
    while mono() < end:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 -- polled until the deadline
            last = e
        time.sleep(step)
    raise Fail("%s not met within %.1f s%s" % (what, timeout, " (last: %r)" % last if last else ""))


# ---------------------------------------------------------------- the run

class Run:
    def __init__(self):
        self.results = {}
        self.procs = {}
        self.env = {}
        self.token = None
        self.made_ns = []
        self.data_up = False
        self.facts = {}

    def record(self, idx, ok, detail):
        name = CASES[idx]
        self.results[idx] = (ok, detail)
        say("%s  %s%s" % ("PASS" if ok else "FAIL", name, (" -- " + detail) if detail else ""))

    def case(self, idx, fn):
        if idx in self.results:
            return self.results[idx][0]
        try:
            detail = fn()
            self.record(idx, True, detail or "")
            return True
        except Fail as e:
            self.record(idx, False, str(e))
            return False
        except Exception as e:  # noqa: BLE001 -- counts as this case's failure
            self.record(idx, False, "%s: %s" % (type(e).__name__, e))
            return False

    # -- preflight
    def preflight(self):
        check(os.geteuid() == 0, "not root: network namespaces need root (run as root)")
        for tool in ("ip", "ss"):
            check(shutil.which(tool), "no `%s` command (Debian package iproute2)" % tool)
        rc, out = run(["ip", "netns", "list"], check_rc=False)
        check(rc == 0, "`ip netns` does not work here (iproute2 missing?): %s" % out.strip())
        probe = ns_name("probe")
        rc, out = run(["ip", "netns", "add", probe], check_rc=False)
        if rc == 0:
            run(["ip", "netns", "del", probe], check_rc=False)
        check(rc == 0, "cannot create a network namespace: %s" % out.strip())
        missing = [os.path.join(BUILD, i[2]) for i in INSTANCES
                   if not os.access(os.path.join(BUILD, i[2]), os.X_OK)]
        check(not missing, "not built: %s (ninja -C %s)" % (", ".join(missing), BUILD))
        for tool in ("redis-server", "redis-cli", "runuser"):
            check(shutil.which(tool), "no %s on PATH" % tool)
        check(any(os.path.exists("/usr/lib/postgresql/%s/bin/initdb" % v)
                  for v in os.listdir("/usr/lib/postgresql")) if os.path.isdir("/usr/lib/postgresql")
              else False, "no PostgreSQL server (Debian package postgresql)")
        return "build %s" % os.path.relpath(BUILD, ROOT)

    # -- network
    def root_view(self):
        """The machine's own addresses and routes of the test network."""
        out = ip("-o", "addr", "show") + ip("route", "show", "table", "all")
        return sorted(line for line in out.splitlines() if "10.213." in line)

    def network(self):
        before = self.root_view()
        run(["ip", "netns", "add", SW])
        self.made_ns.append(SW)
        ip("link", "set", "lo", "up", ns=SW)
        ip("link", "add", "br0", "type", "bridge", "forward_delay", "0", ns=SW)
        ip("link", "set", "br0", "up", ns=SW)
        for role in ROLES:
            ns = ns_name(role)
            run(["ip", "netns", "add", ns])
            self.made_ns.append(ns)
            # The switch's end is p-<role>; the host's end is eth0.
            ip("link", "add", "p-" + role, "type", "veth", "peer", "name", "eth0", "netns", ns,
               ns=SW)
            ip("link", "set", "p-" + role, "master", "br0", "up", ns=SW)
            ip("link", "set", "lo", "up", ns=ns)
            ip("addr", "add", ADDR[role] + "/24", "dev", "eth0", ns=ns)
            ip("link", "set", "eth0", "up", ns=ns)
        # Isolation: the machine's own namespace got no address, route or
        # interface of the test network; the switch has our ports and nothing
        # else (no uplink).
        after = self.root_view()
        check(after == before, "the machine's namespace changed: %s -> %s" % (before, after))
        out = ip("-o", "link", "show")
        check(not re.search(r"\bp-(%s)\b" % "|".join(ROLES), out),
              "a switch port leaked into the machine's namespace")
        links = sorted(re.findall(r"^\d+: ([^:@]+)", ip("-o", "link", "show", ns=SW), re.M))
        want = sorted(["lo", "br0"] + ["p-" + r for r in ROLES])
        check(links == want, "the switch has links %s, want %s" % (links, want))
        # Every host reaches every other across the bridge (ARP + ICMP-free:
        # a TCP connect to a closed port answers RST, which proves the path).
        enter_netns(ns_name("cli"))
        for role in ROLES:
            if role == "cli":
                continue
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect((ADDR[role], 9))
                raise Fail("%s:9 accepted a connection" % ADDR[role])
            except ConnectionRefusedError:
                pass
            except OSError as e:
                raise Fail("no path from the client to %s (%s): %s" % (role, ADDR[role], e))
            finally:
                s.close()
        return "%d namespaces (%s*), bridge br0 in %s, 10.213.0.0/24" % (
            len(self.made_ns), ns_name(""), SW)

    # -- data stores
    def data(self):
        os.makedirs(LOGDIR, mode=0o755, exist_ok=True)
        env = dict(os.environ, SHOP_VAR=STATE, SHOP_PORT_OFFSET="0",
                   SHOP_DATA_ADDR=ADDR["data"], SHOP_DATA_CLIENTS=NET + ".0/24")
        self.data_up = True  # from here on, cleanup runs ./shop down
        rc, out = run(["ip", "netns", "exec", ns_name("data"), SHOP, "up", "--data-only"],
                      timeout=60, check_rc=False, env=env)
        check(rc == 0, "./shop up --data-only in %s: exit %d:\n%s" % (ns_name("data"), rc,
                                                                    out.strip()[-1500:]))
        with open(os.path.join(STATE, "stack.env")) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, v = line.split("=", 1)
                    self.env[k] = v
        check(self.env.get("SHOP_PG_HOST") == ADDR["data"],
              "stack.env SHOP_PG_HOST=%r" % self.env.get("SHOP_PG_HOST"))
        check(self.env.get("SHOP_REDIS_ADDR", "").startswith(ADDR["data"] + ":"),
              "stack.env SHOP_REDIS_ADDR=%r" % self.env.get("SHOP_REDIS_ADDR"))
        # Listening sockets of the data namespace: its address only.
        _, ss = run(["ip", "netns", "exec", ns_name("data"), "ss", "-Htln"])
        local = [line.split()[3] for line in ss.splitlines() if line.strip()]
        want = {"%s:%s" % (ADDR["data"], self.env["SHOP_PG_PORT"]),
                "%s:%s" % (ADDR["data"], self.env["SHOP_REDIS_PORT"])}
        check(set(local) == want, "listeners in the data namespace %s, want %s"
              % (sorted(local), sorted(want)))
        return "PostgreSQL %s:%s, Redis %s (pg_hba admits %s.0/24)" % (
            ADDR["data"], self.env["SHOP_PG_PORT"], self.env["SHOP_REDIS_ADDR"], NET)

    # -- instances
    def inst_env(self, name):
        _, role, _, rpc, admin, weight = INST[name]
        a = ADDR[role]
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SHOP_INSTANCE": name,
             "SHOP_LOG_LEVEL": "info"}
        survey = "tcp://%s:7100" % ADDR["reg"]
        lookup = "tcp://%s:7101" % ADDR["reg"]
        if name == "registry":
            e.update(SHOP_REGISTRY_SURVEY_URL=survey, SHOP_REGISTRY_LOOKUP_URL=lookup,
                     SHOP_REGISTRY_ADMIN_ADDR="%s:%d" % (a, admin),
                     SHOP_REGISTRY_SCRAPE_EXTRA="gateway=http://%s:%d" % GW,
                     SHOP_REGISTRY_SURVEY_MS=str(SURVEY_MS), SHOP_REGISTRY_MISSES=str(MISSES))
        elif name == "gateway":
            e.update(SHOP_GATEWAY_ADDR="%s:%d" % (a, admin), SHOP_REGISTRY_LOOKUP_URL=lookup,
                     SHOP_JWT_SECRET=self.env["SHOP_JWT_SECRET"],
                     SHOP_GATEWAY_REQUIRED_SERVICES="auth,product,order")
        else:
            # Each process gets what it reads and no more (docs/multi-host.md):
            # the JWT key only where tokens are signed, Redis only where used.
            svc = "product" if name.startswith("product-") else name
            e.update(SHOP_RPC_URL="tcp://%s:%d" % (a, rpc), SHOP_ADMIN_ADDR="%s:%d" % (a, admin),
                     SHOP_WEIGHT=str(weight), SHOP_REGISTRY_SURVEY_URL=survey,
                     SHOP_PG_DSN=self.env["SHOP_PG_DSN_" + svc.upper()], SHOP_DRAIN_MS="500")
            if name == "auth":
                e["SHOP_JWT_SECRET"] = self.env["SHOP_JWT_SECRET"]
            if name in ("auth", "order"):
                e["SHOP_REDIS_ADDR"] = self.env["SHOP_REDIS_ADDR"]
            if name == "order":
                e["SHOP_REGISTRY_LOOKUP_URL"] = lookup
        return e

    def start(self, name):
        _, role, binary, _, _, _ = INST[name]
        log = open(os.path.join(LOGDIR, name + ".log"), "ab")
        # `ip netns exec` execs in place: the pid is the instance's.
        self.procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", ns_name(role), os.path.join(BUILD, binary)],
            env=self.inst_env(name), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def wait_healthy(self, name, timeout=20):
        _, role, _, _, admin, _ = INST[name]
        p = self.procs[name]

        def up():
            if p.poll() is not None:
                raise Fail("%s exited (%s) at start; log: %s" % (
                    name, p.returncode, self.log_tail(name)))
            return hreq("GET", (ADDR[role], admin), "/healthz", timeout=1).status == 200
        try:
            wait_until(up, timeout, what="%s /healthz on %s:%d" % (name, ADDR[role], admin))
        except Fail as e:
            if "exited" in str(e):
                raise
            raise Fail("%s; log: %s" % (e, self.log_tail(name)))

    def log_tail(self, name, n=8):
        try:
            with open(os.path.join(LOGDIR, name + ".log"), errors="replace") as f:
                return " | ".join(f.read().splitlines()[-n:])
        except OSError:
            return "(no log)"

    def instances(self):
        self.start("registry")
        self.wait_healthy("registry")
        # Different databases: these three migrate at once; product-b after
        # product-a (the same database).
        for n in ("auth", "product-a", "order"):
            self.start(n)
        for n in ("auth", "product-a", "order"):
            self.wait_healthy(n)
        self.start("product-b")
        self.wait_healthy("product-b")
        self.start("gateway")
        self.wait_healthy("gateway")
        wait_until(lambda: hreq("GET", GW, "/readyz", timeout=1).status == 200, 15,
                   what="gateway /readyz 200")
        inst = wait_until(lambda: (lambda t: t if all(n in t for n in SERVICES) else None)(
            instances_in_registry()), 10, what="the registry lists %s" % SERVICES)
        for n in SERVICES:
            _, role, _, rpc, admin, weight = INST[n]
            i = inst[n]
            check(i["rpc_url"] == "tcp://%s:%d" % (ADDR[role], rpc),
                  "%s advertises rpc_url %s" % (n, i["rpc_url"]))
            check(i["admin_url"] == "http://%s:%d" % (ADDR[role], admin),
                  "%s advertises admin_url %s" % (n, i["admin_url"]))
            check(i["weight"] == weight, "%s weight %s" % (n, i["weight"]))
        # Each process listens on its own namespace's address only.
        for name, role, _, rpc, admin, _ in INSTANCES:
            _, ss = run(["ip", "netns", "exec", ns_name(role), "ss", "-Htln"])
            local = {line.split()[3] for line in ss.splitlines() if line.strip()}
            want = {"%s:%d" % (ADDR[role], admin)}
            if rpc:
                want.add("%s:%d" % (ADDR[role], rpc))
            if name == "registry":
                want |= {"%s:7100" % ADDR["reg"], "%s:7101" % ADDR["reg"]}
            check(local == want, "%s listens on %s, want %s" % (name, sorted(local),
                                                               sorted(want)))
        return ", ".join("%s %s" % (n, inst[n]["rpc_url"]) for n in SERVICES)

    # -- REST
    def rest(self):
        name = "netns-%d-%s" % (RUN_ID, secrets.token_hex(3))
        pw = "correct horse battery"
        r = hreq("POST", GW, "/auth/sign-up", {"name": name, "password": pw}, timeout=10)
        check(r.status == 201, "sign-up: %r" % r)
        r = hreq("POST", GW, "/auth/sign-in", {"name": name, "password": pw}, timeout=10)
        check(r.status == 200, "sign-in: %r" % r)
        check(r.headers.get("x-served-by") == "auth", "sign-in X-Served-By %r"
              % r.headers.get("x-served-by"))
        self.token = r.json()["access_token"]
        r = hreq("POST", GW, "/products", {"name": "netns keyboard", "supply_price": 30000},
                 token=self.token)
        check(r.status == 201, "create product: %r" % r)
        prod = r.json()
        self.product_id = prod["id"]
        r = hreq("POST", GW, "/orders", {"product_ids": [prod["id"], prod["id"]]},
                 token=self.token)
        check(r.status == 201, "create order: %r" % r)
        order = r.json()
        check(order["total_supply_price"] == 60000, "order total %r" % order)
        r1 = hreq("GET", GW, "/orders/%d" % order["id"], token=self.token)
        r2 = hreq("GET", GW, "/orders/%d" % order["id"], token=self.token)
        check(r1.status == 200 and r2.status == 200, "get order: %r %r" % (r1, r2))
        check(r1.json()["items"] == order["items"], "order read back differs: %r" % r1.body)
        caches = (r1.headers.get("x-cache"), r2.headers.get("x-cache"))
        # BYPASS would mean the order service cannot reach Redis.
        check(caches[0] in ("MISS", "HIT") and caches[1] == "HIT",
              "X-Cache of two reads %r (Redis across namespaces)" % (caches,))
        return "user %s, product %d, order %d (X-Cache %s then %s)" % (
            name, prod["id"], order["id"], caches[0], caches[1])

    def balance(self):
        seen = {}
        conn = http.client.HTTPConnection(*GW, timeout=5)
        try:
            for _ in range(40):
                r = hreq("GET", GW, "/products?page_size=1", token=self.token, conn=conn)
                check(r.status == 200, "GET /products: %r" % r)
                s = r.headers.get("x-served-by")
                seen[s] = seen.get(s, 0) + 1
        finally:
            conn.close()
        check(set(seen) == {"product-a", "product-b"}, "served by %r" % seen)
        return "40 requests: %s" % ", ".join("%s %d" % kv for kv in sorted(seen.items()))

    # -- the cut
    def cut_and_restore(self):
        load = Load(self.token)
        load.start()
        time.sleep(0.5)
        f = self.facts
        try:
            t_cut = mono()
            ip("link", "set", "p-pa", "down", ns=SW)
            f["t_cut"] = t_cut
            f["t_cut_done"] = mono()
            say("product-a's switch port p-pa is down")
            try:
                t_drop = self.poll_registry(lambda t: "product-a" not in t and "product-b" in t,
                                            DROP_BOUND_S + 3)
                f["t_drop"] = t_drop
                say("product-a left the registry %.3f s after the cut" % (t_drop - t_cut))
            except Fail as e:
                f["drop_error"] = str(e)
                t_drop = None
            if t_drop is not None:
                # Orders while the cable is out: the order service's own view.
                time.sleep(GRACE_S)
                f["orders"] = []
                for _ in range(2):
                    r = hreq("POST", GW, "/orders", {"product_ids": [self.product_id]},
                             token=self.token)
                    f["orders"].append(r.status)
                    if r.status == 201:
                        g = hreq("GET", GW, "/orders/%d" % r.json()["id"], token=self.token)
                        f["orders"].append(g.status)
                rest = t_drop + HOLD_S - mono()
                if rest > 0:
                    time.sleep(rest)
            t_up = mono()
            ip("link", "set", "p-pa", "up", ns=SW)
            f["t_up"] = t_up
            say("product-a's switch port p-pa is up again (out %.2f s)" % (t_up - t_cut))
            f["back_bound"] = (t_up - t_cut) + 2 * SURVEY_MS / 1000.0 + 0.2 + BACK_SLACK_S
            f["serve_bound"] = (t_up - t_cut) + 0.2 + BREAKER_OPEN_S + RPC_TIMEOUT_S + \
                SERVE_SLACK_S
            try:
                t_back = self.poll_registry(lambda t: "product-a" in t, f["back_bound"] + 3)
                f["t_back"] = t_back
                say("product-a is back in the registry %.3f s after the link came up"
                    % (t_back - t_up))
            except Fail as e:
                f["back_error"] = str(e)
                t_back = None
            if t_back is not None:
                end = t_up + f["serve_bound"] + 1
                while mono() < end:
                    if load.first_served_by("product-a", after=t_up) is not None:
                        break
                    time.sleep(0.05)
                time.sleep(0.5)  # and a little more traffic after that
        finally:
            load.stop()
        f["records"] = load.records
        f["registry_log"] = self.log_text("registry")

    def poll_registry(self, pred, timeout):
        end = mono() + timeout
        last = None
        while mono() < end:
            try:
                t = instances_in_registry()
                now = mono()
                if pred(t):
                    return now
                last = sorted(t)
            except (OSError, http.client.HTTPException, Fail) as e:
                last = e
            time.sleep(0.02)
        raise Fail("registry never showed the expected set within %.1f s (last: %r)"
                   % (timeout, last))

    def log_text(self, name):
        try:
            with open(os.path.join(LOGDIR, name + ".log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def judge_drop(self):
        f = self.facts
        check("t_drop" in f, f.get("drop_error", "the cut did not run"))
        d = f["t_drop"] - f["t_cut"]
        check(d <= DROP_BOUND_S, "product-a left after %.3f s > bound %.3f s" % (d, DROP_BOUND_S))
        check(re.search(r"instance left: service=product instance=product-a reason=missed_surveys",
                        f["registry_log"]),
              "the registry's log has no 'instance left ... product-a reason=missed_surveys'")
        return ("%.3f s after the cut (bound (%d + 1) x %d ms + %.1f s slack = %.3f s; "
                "reason=missed_surveys)" % (d, MISSES, SURVEY_MS, DROP_SLACK_S, DROP_BOUND_S))

    def judge_traffic(self):
        f = self.facts
        check("t_drop" in f, "not judged: product-a never left the registry")
        recs = f["records"]
        t_cut, t_drop, t_up = f["t_cut"], f["t_drop"], f["t_up"]
        during = [r for r in recs if r.t0 >= t_cut and r.t0 < t_up]
        settled = [r for r in during if r.t0 >= t_drop + GRACE_S]
        before = [r for r in during if r.t0 < t_drop + GRACE_S]
        ok = [r for r in during if r.status == 200]
        by = {}
        for r in ok:
            by[r.served_by] = by.get(r.served_by, 0) + 1
        bad_settled = [r for r in settled if r.status != 200 or r.served_by != "product-b"]
        failed = [r for r in during if r.status != 200]
        kinds = {}
        for r in failed:
            k = str(r.status or r.err)
            kinds[k] = kinds.get(k, 0) + 1
        why = ""
        if failed:
            why = " (%s, each after %.1f..%.1f s)" % (
                      ", ".join("%s x%d" % kv for kv in sorted(kinds.items())),
                      min(r.t1 - r.t0 for r in failed), max(r.t1 - r.t0 for r in failed))
        bad_before = [r for r in before if r.status != 200]
        f["traffic"] = ("during the cut: %d requests, %d ok (%s), %d failed; "
                        "from the drop on: %d, all on product-b: %s; in the detection window: "
                        "%d, %d failed, longest %.2f s" % (
                            len(during), len(ok),
                            ", ".join("%s %d" % kv for kv in sorted(by.items())),
                            len(during) - len(ok), len(settled), not bad_settled,
                            len(before), len(bad_before),
                            max((r.t1 - r.t0 for r in before), default=0.0))) + why
        check(len(settled) >= 20, "only %d requests after the drop" % len(settled))
        # The load's GETs are idempotent: one sent to product-a before the
        # gateway's view dropped it times out at its per-try timeout (45 %
        # of the deadline) and is retried on product-b within the deadline
        # (contract §5), so none fails in the detection window either.
        check(not bad_before, "in the detection window: %d of %d GETs failed, e.g. %r"
              % (len(bad_before), len(before), bad_before[:3]))
        check(not bad_settled, "after the drop: %d of %d requests failed or went elsewhere, "
              "e.g. %r" % (len(bad_settled), len(settled), bad_settled[:3]))
        # A reply product-a sent before the port went down may still reach
        # the client a moment later (the gateway's own link is intact).
        late = [r for r in ok if r.served_by == "product-a" and r.t1 > f["t_cut_done"] + 0.2]
        check(not late, "product-a answered while its cable was out: %r" % late[:3])
        orders = f.get("orders", [])
        check(orders and all(s in (200, 201) for s in orders),
              "orders while product-a is out: %r" % orders)
        return f["traffic"] + "; orders during the cut: %s" % orders

    def judge_back(self):
        f = self.facts
        check("t_back" in f, f.get("back_error", "the restore did not run"))
        d = f["t_back"] - f["t_up"]
        check(d <= f["back_bound"], "product-a back after %.3f s > bound %.3f s"
              % (d, f["back_bound"]))
        inst = instances_in_registry()
        check(inst.get("product-a", {}).get("rpc_url") == "tcp://%s:7211" % ADDR["pa"],
              "product-a rejoined as %r" % inst.get("product-a"))
        return ("%.3f s after the link came up (bound: cable out %.2f s + 2 x %d ms + 0.2 s "
                "+ %.1f s slack = %.3f s)" % (d, f["t_up"] - f["t_cut"], SURVEY_MS,
                                              BACK_SLACK_S, f["back_bound"]))

    def judge_serve_again(self):
        f = self.facts
        check("t_back" in f, "not judged: product-a never came back")
        recs = f["records"]
        t_up = f["t_up"]
        first = min((r.t1 for r in recs if r.served_by == "product-a" and r.status == 200
                     and r.t0 >= t_up), default=None)
        bound = f["serve_bound"]
        check(first is not None, "no request served by product-a within %.1f s of the link "
              "coming up" % bound)
        d = first - t_up
        check(d <= bound, "product-a served again after %.2f s > bound %.1f s" % (d, bound))
        after = [r for r in recs if r.t0 >= t_up]
        failed = [r for r in after if r.status != 200]
        f["after"] = "%d requests after the link came up, %d failed" % (len(after), len(failed))
        return ("first answer from product-a %.2f s after the link came up (bound: cable out "
                "+ 0.2 + %.0f s breaker + %.0f s deadline + %.0f s slack = %.1f s); %s" % (
                    d, BREAKER_OPEN_S, RPC_TIMEOUT_S, SERVE_SLACK_S, bound, f["after"])
                + (" (e.g. %r)" % failed[:2] if failed else ""))

    # -- cleanup
    def cleanup(self):
        """Every step runs whatever an earlier one did; each problem counts."""
        problems = []

        def step(what, fn):
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 -- time up or ^C: keep cleaning
                problems.append("%s: %s: %s" % (what, type(e).__name__, e))

        step("back to the machine's namespace", leave_netns)

        def stop_instances():
            for name in reversed([i[0] for i in INSTANCES]):
                p = self.procs.get(name)
                if p is not None and p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            end = mono() + 3
            for name, p in self.procs.items():
                try:
                    p.wait(max(0.1, end - mono()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(2)
                    problems.append("%s needed SIGKILL" % name)
        step("stopping the instances", stop_instances)

        def data_down():
            env = dict(os.environ, SHOP_VAR=STATE, SHOP_PORT_OFFSET="0",
                       SHOP_DATA_ADDR=ADDR["data"], SHOP_DATA_CLIENTS=NET + ".0/24")
            rc, out = run([SHOP, "down"], timeout=12, check_rc=False, env=env)
            if rc != 0:
                problems.append("./shop down: exit %d: %s" % (rc, out.strip()[-300:]))
        if self.data_up:
            step("./shop down", data_down)

        def delete_namespaces():
            ours = [n for n in netns_list() if n.startswith("%s%d-" % (PREFIX, RUN_ID))]
            for ns in ours:
                left = netns_pids(ns)
                if left:
                    problems.append("processes left in %s: %s (killed)" % (ns, left))
                    kill_pids(left)
                run(["ip", "netns", "del", ns], check_rc=False)
            still = [n for n in netns_list() if n.startswith("%s%d-" % (PREFIX, RUN_ID))]
            if still:
                problems.append("namespaces not deleted: %s" % still)
        step("deleting the namespaces", delete_namespaces)

        def state():
            if any(not ok for ok, _ in self.results.values()):
                say("logs kept in %s (removed by the next run)" % os.path.relpath(LOGDIR, ROOT))
                return
            remove_state(STATE)
            if os.path.exists(STATE):
                problems.append("%s not removed" % STATE)
        step("the state folder", state)
        check(not problems, "; ".join(problems))
        return "%d namespaces deleted" % len(self.made_ns)


class Rec:
    __slots__ = ("t0", "t1", "status", "served_by", "err")

    def __init__(self, t0, t1, status, served_by, err):
        self.t0, self.t1, self.status, self.served_by, self.err = t0, t1, status, served_by, err

    def __repr__(self):
        return "<%.2f+%.2fs %s %s %s>" % (self.t0 - T0, self.t1 - self.t0, self.status,
                                         self.served_by, self.err or "")


class Load:
    """LOAD_THREADS clients sending GET /products through the gateway, each
    on its own keep-alive connection, recording every answer."""

    def __init__(self, token):
        self.token = token
        self.records = []
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self.worker, daemon=True)
                        for _ in range(LOAD_THREADS)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.halt.set()
        for t in self.threads:
            t.join(10)

    def first_served_by(self, name, after):
        with self.lock:
            return next((r for r in self.records if r.served_by == name and r.t0 >= after
                         and r.status == 200), None)

    def worker(self):
        conn = None
        while not self.halt.is_set():
            t0 = mono()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(*GW, timeout=5)
                r = hreq("GET", GW, "/products?page_size=1", token=self.token, conn=conn)
                rec = Rec(t0, mono(), r.status, r.headers.get("x-served-by"), None)
                if r.headers.get("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                rec = Rec(t0, mono(), None, None, type(e).__name__)
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                self.records.append(rec)
            self.halt.wait(LOAD_PAUSE_S)
        if conn is not None:
            conn.close()


def on_alarm(signum, frame):
    raise Budget("time is up (%d s for the run, %d s for the cleanup)" % (BUDGET_S, CLEANUP_S))


def on_term(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    say("multi-host test: namespaces %s*, network %s.0/24, survey %d ms, misses %d"
        % (ns_name(""), NET, SURVEY_MS, MISSES))
    r = Run()
    aborted = None
    try:
        signal.alarm(BUDGET_S)
        if r.case(0, r.preflight):
            clean_leftovers()
            ok = (r.case(1, r.network) and r.case(2, r.data) and r.case(3, r.instances))
            if ok and r.case(4, r.rest) and r.case(5, r.balance):
                r.cut_and_restore()
                r.case(6, r.judge_drop)
                r.case(7, r.judge_traffic)
                r.case(8, r.judge_back)
                r.case(9, r.judge_serve_again)
    except (Budget, KeyboardInterrupt) as e:
        aborted = str(e) or type(e).__name__
        say("aborted: %s" % aborted)
    except Exception as e:  # noqa: BLE001 -- a bug here still cleans up and counts
        aborted = "%s: %s" % (type(e).__name__, e)
        traceback.print_exc()
    finally:
        signal.alarm(0)
        if r.results.get(0, (False,))[0]:
            for i in range(len(CASES) - 1):
                if i not in r.results:
                    r.record(i, False, "not run: " + (aborted or "an earlier step failed"))
            signal.alarm(CLEANUP_S)
            try:
                r.case(10, r.cleanup)
            except Budget as e:
                r.record(10, False, str(e))
            finally:
                signal.alarm(0)
    f = r.facts
    if "t_drop" in f and "t_back" in f:
        say("figures: out of rotation %.3f s after the cut (bound %.3f s); back %.3f s after "
            "the link returned (bound %.3f s); %s" % (
                f["t_drop"] - f["t_cut"], DROP_BOUND_S, f["t_back"] - f["t_up"],
                f["back_bound"], f.get("traffic", "")))
    passed = sum(1 for ok, _ in r.results.values() if ok)
    failed = sum(1 for ok, _ in r.results.values() if not ok)
    print("netns: %d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
