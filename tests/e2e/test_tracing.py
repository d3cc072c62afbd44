"""test_tracing.py -- one request's spans reach a Zipkin v2 collector and
link gateway → order → product, and its log lines carry its trace id.

The collector is a small HTTP listener in this process. It starts when the
module is imported (run.py imports it before the first ./shop up), on a port
the kernel picks, and exports SHOP_ZIPKIN_URL pointing at it: ./shop passes
its environment on to every instance it starts, so the whole test stack
reports here for the whole run, and each case picks its own trace id out.
"""

import collections
import http.server
import json
import os
import re
import secrets
import threading
import time

from stack import VAR, api, check, check_proxied, request

# The latest spans only: load tests later in the run make many.
_spans = collections.deque(maxlen=20000)
_lock = threading.Lock()
_posts = {"ok": 0, "bad": 0}


class _Collector(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        try:
            spans = json.loads(body.decode("utf-8"))
            ok = isinstance(spans, list) and self.path == "/api/v2/spans" and \
                (self.headers.get("Content-Type") or "").startswith("application/json")
        except (UnicodeDecodeError, ValueError):
            ok = False
        with _lock:
            if ok:
                _spans.extend(spans)
                _posts["ok"] += 1
            else:
                _posts["bad"] += 1
        self.send_response(202 if ok else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def _start_collector():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, name="zipkin", daemon=True).start()
    os.environ["SHOP_ZIPKIN_URL"] = "http://127.0.0.1:%d/api/v2/spans" % srv.server_port


_start_collector()


def spans_of(trace_id, want, limit_s=5.0):
    """The collected spans of trace_id, once there are at least want (the
    reporters send every 200 ms)."""
    deadline = time.monotonic() + limit_s
    while True:
        with _lock:
            got = [s for s in _spans if s.get("traceId") == trace_id]
        if len(got) >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def one(spans, service, kind, parent, what):
    """The one span of service (prefix) and kind whose parentId is parent."""
    found = [s for s in spans if s.get("localEndpoint", {}).get("serviceName", "").startswith(service)
             and s.get("kind") == kind and s.get("parentId") == parent]
    check(len(found) == 1, "%s: want one %s %s span with parent %s, got %d in %s"
          % (what, service, kind, parent, len(found), json.dumps(spans, indent=1)[:3000]))
    s = found[0]
    check(re.fullmatch(r"[0-9a-f]{16}", s.get("id", "")), "%s: bad id %r" % (what, s))
    check(isinstance(s.get("timestamp"), int) and s["timestamp"] > 1.5e15,
          "%s: timestamp %r is not µs since 1970" % (what, s.get("timestamp")))
    check(isinstance(s.get("duration"), int) and s["duration"] >= 1,
          "%s: duration %r" % (what, s.get("duration")))
    return s


def encloses(outer, inner, slack_us=2000):
    return (outer["timestamp"] <= inner["timestamp"] + slack_us and
            outer["timestamp"] + outer["duration"] + slack_us >= inner["timestamp"] + inner["duration"])


def product_id():
    r = api("POST", "/products", {"name": "traced", "supply_price": 10})
    check(r.status == 201, "POST /products -> %r" % r)
    return r.json()["id"]


def log_lines(name, trace_id):
    with open(os.path.join(VAR, "log", name + ".log"), encoding="utf-8", errors="replace") as f:
        return [json.loads(ln) for ln in f if trace_id in ln]


def test_order_trace_links_gateway_order_product():
    pid = product_id()
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    tp = "00-%s-%s-01" % (trace_id, parent)
    r = api("POST", "/orders", {"product_ids": [pid]}, headers={"traceparent": tp})
    check(r.status == 201, "POST /orders -> %r" % r)
    check_proxied(r)
    back = r.header("traceparent")
    check(back.split("-")[1] == trace_id, "answer's traceparent %r left trace %s" % (back, trace_id))
    check(back.split("-")[2] != parent, "answer's traceparent kept the client's span id: %r" % back)

    spans = spans_of(trace_id, 5)
    gw_server = one(spans, "gateway", "SERVER", parent, "gateway server span")
    check(gw_server["name"].lower() == "post /orders", "gateway span name %r" % gw_server["name"])
    check(gw_server.get("tags", {}).get("http.status_code") == "201", "gateway tags %r" % gw_server)
    check(back.split("-")[2] == gw_server["id"],
          "answer's traceparent %r is not the gateway's span %s" % (back, gw_server["id"]))
    gw_client = one(spans, "gateway", "CLIENT", gw_server["id"], "gateway client span")
    check(gw_client.get("remoteEndpoint", {}).get("serviceName") == "order",
          "gateway client span calls %r" % gw_client.get("remoteEndpoint"))
    order_server = one(spans, "order", "SERVER", gw_client["id"], "order server span")
    check(order_server["name"].endswith("OrderService/CreateOrder"), "order span %r" % order_server["name"])
    order_client = one(spans, "order", "CLIENT", order_server["id"], "order client span")
    check(order_client["name"].endswith("ProductService/GetProducts"), "order client %r" % order_client["name"])
    product_server = one(spans, "product-", "SERVER", order_client["id"], "product server span")
    check(product_server["localEndpoint"]["serviceName"] ==
          order_client.get("remoteEndpoint", {}).get("serviceName"),
          "the product instance called (%r) is not the one that answered (%r)"
          % (order_client.get("remoteEndpoint"), product_server["localEndpoint"]))
    for outer, inner in ((gw_server, gw_client), (gw_client, order_server),
                         (order_server, order_client), (order_client, product_server)):
        check(encloses(outer, inner), "%s does not enclose %s" % (outer["name"], inner["name"]))
    ids = [s["id"] for s in (gw_server, gw_client, order_server, order_client, product_server)]
    check(len(set(ids)) == 5, "span ids repeat: %r" % ids)

    # Its log lines name the trace.
    gw = [ln for ln in log_lines("gateway", trace_id) if "POST /orders" in ln.get("msg", "")]
    check(gw and all(ln.get("trace_id") == trace_id for ln in gw), "gateway log lines %r" % gw)
    od = log_lines("order", trace_id)
    check(od and all(ln.get("trace_id") == trace_id for ln in od), "order log lines %r" % od)
    return "5 spans linked; %d gateway and %d order log lines" % (len(gw), len(od))


def test_request_without_traceparent_starts_a_trace():
    r = api("GET", "/products?page_size=1")
    check(r.status == 200, "GET /products -> %r" % r)
    check_proxied(r)
    trace_id, span_id = r.header("traceparent").split("-")[1:3]
    spans = spans_of(trace_id, 3)
    root = one(spans, "gateway", "SERVER", None, "gateway root span")
    check(root["id"] == span_id, "root span %s, answer says %s" % (root["id"], span_id))
    check(root["name"].lower() == "get /products", "root span name %r" % root["name"])
    client = one(spans, "gateway", "CLIENT", root["id"], "gateway client span")
    one(spans, "product-", "SERVER", client["id"], "product server span")


def test_unsampled_trace_is_carried_not_recorded():
    trace_id = secrets.token_hex(16)
    tp = "00-%s-%s-00" % (trace_id, secrets.token_hex(8))
    r = api("GET", "/products?page_size=1", headers={"traceparent": tp})
    check(r.status == 200, "GET /products -> %r" % r)
    back = r.header("traceparent")
    check(back.split("-")[1] == trace_id and back.endswith("-00"),
          "unsampled traceparent came back as %r" % back)
    # A sampled request after it: once its spans are in, the first one's
    # would be too.
    r = api("GET", "/products?page_size=1")
    later = r.header("traceparent").split("-")[1]
    check(len(spans_of(later, 3)) >= 3, "the sampled request's spans never came")
    check(spans_of(trace_id, 1, limit_s=0) == [], "spans recorded for an unsampled trace")


def test_trace_skips_health_routes():
    trace_id = secrets.token_hex(16)
    tp = "00-%s-%s-01" % (trace_id, secrets.token_hex(8))
    r = request("GET", "/healthz", headers={"traceparent": tp})
    check(r.status == 200, "/healthz -> %r" % r)
    r = api("GET", "/products?page_size=1")
    later = r.header("traceparent").split("-")[1]
    check(len(spans_of(later, 3)) >= 3, "the proxied request's spans never came")
    check(spans_of(trace_id, 1, limit_s=0) == [], "a span for /healthz")
    with _lock:
        check(_posts["bad"] == 0, "%d POSTs the collector could not read" % _posts["bad"])


CASES = [
    test_order_trace_links_gateway_order_product,
    test_request_without_traceparent_starts_a_trace,
    test_unsampled_trace_is_carried_not_recorded,
    test_trace_skips_health_routes,
]
