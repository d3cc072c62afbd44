"""test_health.py -- /healthz (liveness) and /readyz (readiness) of every
process, and what a fault elsewhere does to them: a registry away, a cache
down or a breaker open degrade the answer but keep it 200; a database down
or no instance of a needed service fail readiness (503), never liveness."""

import os
import signal
import time

import stack
from stack import ADMIN_PORTS, built_instances, check, data_pids, request
from test_orders import _pg

SERVICES = ("auth", "product-a", "product-b", "order")


def health(name, path):
    """(status, JSON body) of path on the instance's admin address."""
    r = request("GET", path, port=ADMIN_PORTS[name], timeout=3)
    ct = (r.header("content-type") or "").split(";")[0].strip()
    check(ct == "application/json", "%s %s content-type %r" % (name, path, ct))
    return r.status, r.json()


def wait_health(name, path, pred, limit_s):
    """Polls until pred(status, body); returns (status, body) or fails."""
    deadline = time.monotonic() + limit_s
    while True:
        st, body = health(name, path)
        if pred(st, body):
            return st, body
        if time.monotonic() > deadline:
            raise stack.Fail("%s %s: still %d %r after %.0f s" % (name, path, st, body, limit_s))
        time.sleep(0.1)


def test_health_every_process_is_live_and_ready():
    for name in built_instances():
        st, body = health(name, "/healthz")
        check(st == 200 and body.get("status") in ("up", "degraded"),
              "%s /healthz -> %d %r" % (name, st, body))
        st, body = health(name, "/readyz")
        check(st == 200 and body.get("status") in ("ready", "degraded"),
              "%s /readyz -> %d %r" % (name, st, body))
        checks = body.get("checks", {})
        if name in SERVICES:
            check(checks.get("database") == "up", "%s database %r" % (name, checks))
            check(checks.get("registry") == "up", "%s registry %r" % (name, checks))
        if name in ("order", "gateway"):
            check(checks.get("services", {}).get("product", 0) >= 1,
                  "%s sees no product instance: %r" % (name, checks))
        if name == "registry":
            check(checks.get("lookups") == "open", "registry lookups %r" % checks)
    return "%d processes" % len(built_instances())


def test_health_registry_away_degrades_but_stays_ready():
    rc, out = stack.shop("stop", "registry")
    check(rc == 0, "./shop stop registry: %s" % out[-300:])
    try:
        for name in ("order", "product-a", "gateway"):
            st, body = wait_health(name, "/readyz",
                                   lambda s, b: b.get("checks", {}).get("registry") == "away", 5)
            check(st == 200 and body["status"] == "degraded",
                  "%s /readyz with the registry away: %d %r" % (name, st, body))
            check("registry away" in body.get("reasons", []), "%s reasons %r" % (name, body))
            st, body = health(name, "/healthz")
            check(st == 200 and body["status"] == "degraded", "%s /healthz: %d %r" % (name, st, body))
    finally:
        rc, out = stack.shop("start", "registry")
    check(rc == 0, "./shop start registry: %s" % out[-300:])
    for name in ("order", "product-a", "gateway"):
        wait_health(name, "/readyz",
                    lambda s, b: s == 200 and b.get("checks", {}).get("registry") == "up", 10)


def test_health_redis_down_degrades_but_stays_ready():
    pid = data_pids().get("redis")
    check(pid, "no redis pid")
    os.kill(pid, signal.SIGSTOP)
    try:
        for name in ("auth", "order"):
            # A check every second, each bounded by SHOP_HEALTH_TIMEOUT_MS (1 s).
            st, body = wait_health(name, "/readyz",
                                   lambda s, b: b.get("checks", {}).get("redis") == "down", 6)
            check(st == 200 and body["status"] == "degraded", "%s: %d %r" % (name, st, body))
            t = time.monotonic()
            st, _ = health(name, "/healthz")
            check(st == 200, "%s /healthz %d" % (name, st))
            check(time.monotonic() - t < 0.5, "%s /healthz took %.2f s" % (name, time.monotonic() - t))
        # Products have no cache: nothing to report.
        st, body = health("product-a", "/readyz")
        check("redis" not in body.get("checks", {}), "product-a reports redis: %r" % body)
    finally:
        os.kill(pid, signal.SIGCONT)
    for name in ("auth", "order"):
        wait_health(name, "/readyz", lambda s, b: b.get("checks", {}).get("redis") == "up", 10)


def test_health_database_down_fails_readiness_not_liveness():
    _pg("stop")
    try:
        for name in ("order", "product-a", "auth"):
            st, body = wait_health(name, "/readyz", lambda s, b: s == 503, 6)
            check(body.get("status") == "not_ready" and body["checks"].get("database") == "down",
                  "%s /readyz with PostgreSQL down: %r" % (name, body))
            check("database down" in body.get("reasons", []), "%s reasons %r" % (name, body))
            st, body = health(name, "/healthz")
            check(st == 200 and body["status"] == "degraded", "%s /healthz: %d %r" % (name, st, body))
        # The gateway has no database: still ready.
        st, _ = health("gateway", "/readyz")
        check(st == 200, "gateway /readyz %d with PostgreSQL down" % st)
    finally:
        _pg("start")
    for name in ("order", "product-a", "auth"):
        wait_health(name, "/readyz", lambda s, b: s == 200, 15)


def test_health_no_product_fails_readiness_of_order_and_gateway():
    for name in ("product-a", "product-b"):
        rc, out = stack.shop("stop", name)
        check(rc == 0, "./shop stop %s: %s" % (name, out[-300:]))
    try:
        for name in ("order", "gateway"):
            st, body = wait_health(name, "/readyz", lambda s, b: s == 503, 5)
            check(body["checks"]["services"].get("product") == 0, "%s: %r" % (name, body))
            check("no instance of product" in body.get("reasons", []), "%s: %r" % (name, body))
            st, _ = health(name, "/healthz")
            check(st == 200, "%s /healthz %d without products" % (name, st))
        # auth needs nobody: unaffected.
        st, _ = health("auth", "/readyz")
        check(st == 200, "auth /readyz %d without products" % st)
    finally:
        for name in ("product-a", "product-b"):
            stack.shop("start", name)
    for name in ("order", "gateway"):
        wait_health(name, "/readyz", lambda s, b: s == 200, 10)
    # The callers' breakers of the products opened when their connections
    # closed: degraded until they turn half-open (5 s), then ready, so the
    # cases after this one find traffic admitted again.
    for name in ("order", "gateway"):
        wait_health(name, "/readyz", lambda s, b: b.get("status") == "ready", 15)


CASES = [test_health_every_process_is_live_and_ready]

FAULT_CASES = [
    test_health_registry_away_degrades_but_stays_ready,
    test_health_redis_down_degrades_but_stays_ready,
    test_health_database_down_fails_readiness_not_liveness,
    test_health_no_product_fails_readiness_of_order_and_gateway,
]
