"""test_prometheus.py -- a real Prometheus (`./shop up --with-prometheus`)
finds every instance through the registry's /v1/prometheus-targets (the
gateway and the registry by the shipped config's static targets), scrapes
them every 2 s, and holds the series of contract §6. Asked through its HTTP
API (/api/v1/query), as a dashboard would."""

import time
import urllib.parse

import stack
import test_orders
from stack import check, request, shop

PROMETHEUS_PORT = 7990 + stack.OFFSET
# Discovery refreshes every 3 s and scrapes run every 2 s: a few rounds of
# each, with room for a slow (sanitizer) stack.
WAIT_S = 60
# Only samples this recent count: the data folder outlives a run, and an
# earlier stack's last samples would otherwise answer for 5 minutes.
FRESH = "15s"

SERIES = [
    "resilience4j_circuitbreaker_state",
    "shop_http_requests_total",
    "shop_http_request_duration_seconds_bucket",
    "shop_rpc_server_handled_total",
    "shop_rpc_server_handling_seconds_bucket",
    "shop_rpc_client_calls_total",
    "shop_cache_requests_total",
    "shop_registry_instances",
]


def query(selector):
    """The series of selector scraped in the last FRESH, each with its latest
    value: [(labels, value as str)]."""
    expr = "%s[%s]" % (selector, FRESH)
    r = request("GET", "/api/v1/query?query=" + urllib.parse.quote(expr),
                port=PROMETHEUS_PORT, timeout=5)
    check(r.status == 200, "query %r -> %r" % (expr, r))
    doc = r.json()
    check(doc.get("status") == "success", "query %r: %r" % (expr, doc))
    return [(s["metric"], s["values"][-1][1]) for s in doc["data"]["result"] if s["values"]]


def traffic():
    """What makes every series exist: a product list through the gateway
    (gateway breakers, product RPCs), an order made and read twice (order
    → product calls and breakers, cache miss then hit)."""
    r = stack.api("GET", "/products?page_size=1")
    check(r.status == 200, "GET /products -> %r" % r)
    pid = test_orders.products()[0][0]
    r = test_orders.create([pid], who="prometheus")
    check(r.status == 201, "POST /orders -> %r" % r)
    oid = r.json()["id"]
    for _ in range(2):
        r = test_orders.get(oid, who="prometheus")
        check(r.status == 200, "GET /orders/%d -> %r" % (oid, r))


def missing_now(instances):
    """What is not there yet, as readable strings (empty when all is)."""
    missing = []
    up = {m.get("instance"): v for m, v in query("up")}
    for name in instances:
        if up.get(name) != "1":
            missing.append("up{instance=%r} is %r" % (name, up.get(name)))
    for name in SERIES:
        if not query(name):
            missing.append("no series " + name)
    # Label facts a dashboard relies on; each can be false.
    checks = [
        # order's breakers on its product instances, by Resilience4j's names.
        ('resilience4j_circuitbreaker_state{instance="order",state="closed"}',
         lambda res: any(m.get("name", "").startswith("order:product-") and v == "1"
                         for m, v in res)),
        # the gateway labels by route template, never by raw path.
        ('shop_http_requests_total{instance="gateway",route="/orders/{id}",method="GET"}',
         lambda res: any(m.get("code") == "200" for m, v in res)),
        # order's calls to product (the callee's labels, renamed by Prometheus
        # because the target has its own service and instance).
        ('shop_rpc_client_calls_total{instance="order",exported_service="product",'
         'outcome="ok"}',
         lambda res: any(m.get("exported_instance", "").startswith("product-") for m, v in res)),
        ('shop_rpc_server_handled_total{instance="order",'
         'method="/shop.v1.OrderService/GetOrder",code="OK"}',
         lambda res: any(float(v) >= 2 for m, v in res)),
        ('shop_cache_requests_total{instance="order",cache="order",result="hit"}',
         lambda res: any(float(v) >= 1 for m, v in res)),
        ('shop_registry_instances{instance="registry",service="product"}',
         lambda res: any(v == "2" for m, v in res)),
    ]
    for expr, ok in checks:
        if not ok(query(expr)):
            missing.append("nothing right for " + expr)
    return missing


def test_prometheus_scrapes_every_instance():
    rc, out = shop("up", "--with-prometheus", timeout=300)
    check(rc == 0, "./shop up --with-prometheus exited %d:\n%s" % (rc, out[-3000:]))
    r = request("GET", "/-/ready", port=PROMETHEUS_PORT, timeout=5)
    check(r.status == 200, "Prometheus /-/ready -> %r" % r)
    traffic()
    instances = stack.built_instances()
    check(len(instances) == 6, "want six instances built, have %r" % instances)
    t0 = time.monotonic()
    while True:
        missing = missing_now(instances)
        if not missing:
            break
        if time.monotonic() - t0 > WAIT_S:
            raise stack.Fail("after %d s: %s" % (WAIT_S, "; ".join(missing)))
        time.sleep(1)
    return "all there after %.1f s" % (time.monotonic() - t0)


def test_status_shows_prometheus():
    rc, out = shop("status", timeout=60)
    check(rc == 0, "./shop status exited %d:\n%s" % (rc, out))
    line = [ln for ln in out.splitlines() if ln.startswith("prometheus ")]
    check(line and line[0].split()[2] == "healthy", "status line of prometheus: %r" % line)
    check(str(PROMETHEUS_PORT) in line[0], "status lacks Prometheus' address: %r" % line)


CASES = [test_prometheus_scrapes_every_instance, test_status_shows_prometheus]
