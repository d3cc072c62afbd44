"""test_faults.py -- real process faults under real load (issue 4): an
instance killed, hung (SIGSTOP), slowed, both instances down, the registry
killed and restarted. Load comes from threads doing GET /products through
the gateway; every answer is checked."""

import os
import re
import signal
import threading
import time

import stack
from stack import alive, api, check, check_problem, pid_of, registry_instances, shop

# The test stack's upstream deadline (./shop gives the gateway
# SHOP_RPC_TIMEOUT_MS; the default is 2000 ms).
DEADLINE_S = 2.0


class Load:
    """n threads doing GET /products?page_size=1 until stopped; records
    (start, seconds, status, served_by) of every request."""

    def __init__(self, n=6):
        self.n = n
        self.results = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run) for _ in range(n)]

    def _run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                r = api("GET", "/products?page_size=1")
                status, who = r.status, r.header("x-served-by")
            except Exception as e:  # a reset or a timeout is a failed GET too
                status, who = "error: %s" % e, None
            with self.lock:
                self.results.append((t, time.monotonic() - t, status, who))

    def __enter__(self):
        for th in self.threads:
            th.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for th in self.threads:
            th.join(30)

    def since(self, t0):
        with self.lock:
            return [r for r in self.results if r[0] >= t0]


def breaker_state(name):
    """The gateway's breaker state for instance name, from its /metrics."""
    r = stack.request("GET", "/metrics")
    check(r.status == 200, "GET /metrics -> %r" % r)
    text = r.body.decode()
    for state in ("closed", "open", "half_open"):
        pat = r'resilience4j_circuitbreaker_state\{[^}]*name="gateway:%s"[^}]*state="%s"[^}]*\} 1' \
            % (re.escape(name), state)
        pat2 = r'resilience4j_circuitbreaker_state\{[^}]*state="%s"[^}]*name="gateway:%s"[^}]*\} 1' \
            % (state, re.escape(name))
        if re.search(pat, text) or re.search(pat2, text):
            return state
    return None


def wait_for(pred, limit_s, step_s=0.1):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if pred():
            return time.monotonic() - t0
        time.sleep(step_s)
    return None


def both_products_serving():
    served = set()
    for _ in range(60):
        r = api("GET", "/products?page_size=1")
        if r.status == 200:
            served.add(r.header("x-served-by"))
    return served == {"product-a", "product-b"}


def ensure_both_running():
    for name in ("product-a", "product-b"):
        pid = pid_of(name)
        if not pid or not alive(pid):
            rc, out = shop("start", name)
            check(rc == 0, "./shop start %s: %s" % (name, out[-300:]))
    check(wait_for(both_products_serving, 20, 0.5) is not None,
          "product-a and product-b are not both serving")


def test_kill_9_under_load_loses_no_get():
    ensure_both_running()
    with Load() as load:
        time.sleep(1.0)
        t_kill = time.monotonic()
        os.kill(pid_of("product-b"), signal.SIGKILL)
        time.sleep(2.0)
    res = load.results
    bad = [r for r in res if r[2] != 200]
    check(len(res) > 100, "only %d GETs ran" % len(res))
    check(not bad, "%d of %d GETs failed around the kill, e.g. %r" % (len(bad), len(res), bad[:3]))
    after = [r for r in res if r[0] > t_kill + 0.5]
    check(after and all(r[3] == "product-a" for r in after), "product-b still served after the kill")
    rc, out = shop("start", "product-b")
    check(rc == 0, "./shop start product-b: %s" % out[-300:])
    return "%d GETs, 0 failed" % len(res)


def test_sigstop_opens_breaker_then_half_open_recovers():
    ensure_both_running()
    pid = pid_of("product-b")
    os.kill(pid, signal.SIGSTOP)
    try:
        # Enough clients that ten calls reach product-b before the registry
        # drops it for missing surveys (3 x 500 ms): each caller that picks
        # it hangs there until its deadline.
        with Load(24) as load:
            t0 = time.monotonic()
            took = wait_for(lambda: breaker_state("product-b") == "open", 15, 0.1)
            time.sleep(1.0)
        check(took is not None, "gateway:product-b never opened (state %r)" % breaker_state("product-b"))
        res = load.since(t0)
        slow = [r for r in res if r[1] > DEADLINE_S + 0.5]
        check(not slow, "%d GETs took longer than one deadline, e.g. %r" % (len(slow), slow[:3]))
        late = [r for r in res if r[0] > t0 + took + 0.2]
        check(late and all(r[2] == 200 for r in late),
              "GETs failed after the breaker opened: %r" % [r for r in late if r[2] != 200][:3])
    finally:
        os.kill(pid, signal.SIGCONT)
    # Open → half-open after 5 s; three good trials close it.
    # (Traffic first: half-open trials only happen when calls are made.)
    back = wait_for(lambda: both_products_serving() and breaker_state("product-b") == "closed",
                    20, 0.5)
    check(back is not None, "product-b did not return through half-open (state %r)"
          % breaker_state("product-b"))
    return "opened after %.1f s; closed again %.1f s after SIGCONT" % (took, back)


def retries_total():
    """The gateway's shop_rpc_client_retries_total for product, by reason."""
    r = stack.request("GET", "/metrics")
    check(r.status == 200, "GET /metrics -> %r" % r)
    out = {}
    for line in r.body.decode().splitlines():
        m = re.match(r'shop_rpc_client_retries_total\{([^}]*)\} (\d+)', line)
        if m and 'service="product"' in m.group(1):
            reason = re.search(r'reason="([^"]*)"', m.group(1)).group(1)
            out[reason] = out.get(reason, 0) + int(m.group(2))
    return out


def test_sigstop_4_s_under_load_loses_no_get():
    """product-b hung (SIGSTOP) for 4 s under GET /products load: a GET whose
    first try went to product-b times out at its per-try timeout (45 % of
    the deadline) and is retried on product-a within the deadline, so no
    GET fails and none takes a whole deadline (contract §5)."""
    ensure_both_running()
    pid = pid_of("product-b")
    before = retries_total()
    with Load(4) as load:
        time.sleep(1.0)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(4.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(1.0)
    after = retries_total()
    res = load.results
    bad = [r for r in res if r[2] != 200]
    window = [r for r in res if t0 - 0.1 <= r[0] <= t0 + 4.0]
    worst = max(r[1] for r in res)
    retried = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    check(len(window) > 20, "only %d GETs ran while product-b was stopped" % len(window))
    check(not bad, "%d of %d GETs failed around the SIGSTOP, e.g. %r" % (len(bad), len(res), bad[:3]))
    check(worst < DEADLINE_S, "a GET took %.2f s: a whole deadline" % worst)
    check(retried.get("timeout", 0) > 0, "no GET was retried after a per-try timeout: %r" % retried)
    check(wait_for(both_products_serving, 20, 0.5) is not None, "product-b did not serve again")
    return "%d GETs (%d while stopped), 0 failed, longest %.0f ms, retried %r" % (
        len(res), len(window), worst * 1000, retried)


def test_slow_instance_counts_as_failing():
    """product-b is slowed past the deadline (stopped 90 % of the time):
    its calls time out and its breaker opens."""
    ensure_both_running()
    pid = pid_of("product-b")
    stop = threading.Event()

    def throttle():
        while not stop.is_set():
            os.kill(pid, signal.SIGSTOP)
            time.sleep(DEADLINE_S + 0.3)
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.02)

    th = threading.Thread(target=throttle)
    th.start()
    try:
        with Load(24):
            took = wait_for(lambda: breaker_state("product-b") == "open", 20, 0.2)
    finally:
        stop.set()
        th.join(10)
        os.kill(pid, signal.SIGCONT)
    check(took is not None, "a slowed product-b never opened its breaker")
    # Half-open needs trial calls: keep traffic going while waiting.
    check(wait_for(lambda: both_products_serving() and breaker_state("product-b") == "closed",
                   25, 0.5) is not None,
          "product-b's breaker did not close after it sped up (state %r)"
          % breaker_state("product-b"))
    return "opened after %.1f s" % took


def test_both_down_503_at_once():
    ensure_both_running()
    for name in ("product-a", "product-b"):
        rc, out = shop("stop", name)
        check(rc == 0, "./shop stop %s: %s" % (name, out[-300:]))
    try:
        for _ in range(5):
            t = time.monotonic()
            r = api("GET", "/products")
            took = time.monotonic() - t
            check_problem(r, 503, "service_unavailable")
            check(r.header("retry-after"), "503 without Retry-After")
            check(took < 0.5, "503 took %.2f s" % took)
    finally:
        for name in ("product-a", "product-b"):
            shop("start", name)
    check(wait_for(both_products_serving, 20, 0.5) is not None, "products did not come back")


def test_registry_outage_traffic_continues():
    ensure_both_running()
    pid = pid_of("registry")
    with Load() as load:
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        time.sleep(2.0)
        t_start = time.monotonic()
        rc, out = shop("start", "registry")
        check(rc == 0, "./shop start registry: %s" % out[-300:])
        # From the moment the registry answers (./shop start waits for it):
        # how long it takes to start is not what is measured here.
        started = time.monotonic() - t_start
        full = wait_for(lambda: {"product-a", "product-b"} <= set(registry_instances()), 5, 0.05)
        time.sleep(0.5)
    bad = [r for r in load.results if r[2] != 200]
    check(not bad, "%d GETs failed while the registry was away, e.g. %r" % (len(bad), bad[:3]))
    check(full is not None, "the registry's view was not full again after its restart")
    # An advertiser redials within 0.5 s, and the registry surveys a new
    # pipe at once or at the next 0.5 s tick; but when nng 1.5.2's dialer
    # gave up on a connection closed during the handshake (docs/decisions.md),
    # the dial keeper replaces it only after 1 s without a connection. Seen
    # once in a loaded ASan pass: 1.50 s.
    check(full <= 2.0, "instances back %.2f s after the restarted registry answered (one survey "
          "is 0.5 s; an advertiser redials within 0.5 s, or 1 s when its dialer gave up)" % full)
    return "%d GETs ok; registry up in %.0f ms, view full %.0f ms later" % (
        len(load.results), started * 1000, full * 1000)


def test_sigterm_drains_and_exits_within_5_s():
    """SIGTERM: the instance deregisters, stops taking calls, finishes those
    in flight, logs its stop and exits within 5 s; no GET fails meanwhile."""
    ensure_both_running()
    pid = pid_of("product-b")
    log = os.path.join(stack.VAR, "log", "product-b.log")
    with Load() as load:
        time.sleep(0.5)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        gone = wait_for(lambda: not alive(pid), 10, 0.02)
        time.sleep(0.5)
    check(gone is not None and gone < 5.0, "product-b still running %.1f s after SIGTERM" % (gone or 10))
    check("product-b" not in registry_instances(), "product-b still registered after it stopped")
    with open(log, errors="replace") as f:
        tail = f.read()[-4000:]
    check('"msg":"stopped"' in tail, "no clean stop in product-b's log: %r" % tail[-300:])
    bad = [r for r in load.results if r[2] != 200]
    check(not bad, "%d GETs failed during the drain, e.g. %r" % (len(bad), bad[:3]))
    rc, out = shop("start", "product-b")
    check(rc == 0, "./shop start product-b: %s" % out[-300:])
    return "exited %.2f s after SIGTERM; %d GETs ok" % (gone, len(load.results))


class FirstSuccess:
    """A thread sending one request every step_s until ok(response) or
    stop(); records the monotonic time of the first ok answer and how many
    answers were not ok before it."""

    def __init__(self, send, ok, step_s=0.01):
        self.send, self.ok, self.step_s = send, ok, step_s
        self.at = None
        self.failed = 0
        self.halt = threading.Event()
        self.th = threading.Thread(target=self._run)

    def _run(self):
        while not self.halt.is_set() and self.at is None:
            try:
                r = self.send()
                good = self.ok(r)
            except Exception:  # a reset or a timeout is not a success
                good = False
            if good:
                self.at = time.monotonic()
            else:
                self.failed += 1
                time.sleep(self.step_s)

    def __enter__(self):
        self.th.start()
        return self

    def __exit__(self, *exc):
        self.halt.set()
        self.th.join(30)

    def wait(self, limit_s):
        self.th.join(limit_s)
        return self.at


def timed_start(name):
    """./shop start name; the monotonic time it returned."""
    rc, out = shop("start", name, timeout=60)
    check(rc == 0, "./shop start %s: %s" % (name, out[-300:]))
    return time.monotonic()


def test_fault_returning_products_tried_at_once():
    """Issue 15: both products stopped, requests answered 503, both started
    again: GET /products (gateway -> product) and POST /orders (gateway ->
    order -> product) succeed within 1 s of ./shop start returning, not
    after the breakers' 5 s open wait."""
    import test_orders

    ensure_both_running()
    pid = test_orders.products()[0][0]
    r = test_orders.create([pid])
    check(r.status == 201, "POST /orders before the stop failed: %r" % r)
    order_id = r.json()["id"]
    # Until the envelope marks the order service's PRODUCT_SERVICE_UNAVAILABLE
    # as a dependency's failure (§5), the gateway counts those 503s against
    # the order instance: earlier cases may have left gateway:order open or
    # its window full of them. Closed, then twenty successes in its window,
    # so that this case's own few 503s cannot open it.
    check(wait_for(lambda: test_orders.get(order_id).status == 200
                   and breaker_state("order") == "closed", 15, 0.2) is not None,
          "gateway:order did not close (state %r)" % breaker_state("order"))
    for _ in range(20):
        check(test_orders.get(order_id).status == 200, "GET /orders/{id} failed")
    for name in ("product-a", "product-b"):
        rc, out = shop("stop", name)
        check(rc == 0, "./shop stop %s: %s" % (name, out[-300:]))
    for _ in range(3):
        check_problem(api("GET", "/products?page_size=1"), 503)
        check_problem(test_orders.create([pid]), 503, "product_service_unavailable")
    get_ok = lambda r: r.status == 200  # noqa: E731
    b_ok = lambda r: r.status == 200 and r.header("x-served-by") == "product-b"  # noqa: E731
    # POST /orders only from the return on, and not too often (the same
    # reason: ten 503s in a row would open gateway:order).
    with FirstSuccess(lambda: api("GET", "/products?page_size=1"), get_ok) as g:
        t_a = timed_start("product-a")
        with FirstSuccess(lambda: test_orders.create([pid]), lambda r: r.status == 201,
                          0.05) as o:
            got_get, got_order = g.wait(5), o.wait(5)
    with FirstSuccess(lambda: api("GET", "/products?page_size=1"), b_ok) as gb:
        t_b = timed_start("product-b")
        got_b = gb.wait(5)
    check(got_get is not None, "GET /products still failing 5 s after ./shop start product-a")
    check(got_order is not None, "POST /orders still failing 5 s after ./shop start product-a "
          "(%d failed; gateway:order %s)" % (o.failed, breaker_state("order")))
    check(got_b is not None, "product-b served no GET within 5 s of ./shop start product-b")
    d_get, d_order, d_b = (max(0.0, got_get - t_a), max(0.0, got_order - t_a),
                           max(0.0, got_b - t_b))
    check(d_get < 1.0, "GET /products first succeeded %.2f s after ./shop start returned" % d_get)
    check(d_order < 1.0, "POST /orders first succeeded %.2f s after ./shop start returned "
          "(%d failed before)" % (d_order, o.failed))
    check(d_b < 1.0, "product-b first served %.2f s after ./shop start returned" % d_b)
    check(wait_for(both_products_serving, 10, 0.2) is not None, "products did not both serve")
    return ("after ./shop start returned: GET /products ok in %.0f ms, POST /orders in %.0f ms, "
            "product-b serving in %.0f ms" % (d_get * 1000, d_order * 1000, d_b * 1000))


def test_fault_returning_auth_tried_at_once():
    """The same for gateway -> auth: sign-in works within 1 s of ./shop
    start auth returning."""
    name = "back-%s" % os.urandom(4).hex()
    r = stack.request("POST", "/auth/sign-up", {"name": name, "password": "password-123"})
    check(r.status == 201, "sign-up -> %r" % r)
    rc, out = shop("stop", "auth")
    check(rc == 0, "./shop stop auth: %s" % out[-300:])
    sign_in = lambda: stack.request("POST", "/auth/sign-in",  # noqa: E731
                                    {"name": name, "password": "password-123"})
    try:
        for _ in range(3):
            check_problem(sign_in(), 503)
        with FirstSuccess(sign_in, lambda r: r.status == 200) as s:
            t = timed_start("auth")
            got = s.wait(5)
    finally:
        shop("start", "auth")
    check(got is not None, "sign-in still failing 5 s after ./shop start auth")
    d = max(0.0, got - t)
    check(d < 1.0, "sign-in first succeeded %.2f s after ./shop start auth returned" % d)
    return "sign-in ok %.0f ms after ./shop start auth returned" % (d * 1000)


def test_fault_restart_with_registry_away_tried_at_once():
    """The registry is away, so the gateway's view keeps product-b (nothing
    departs, no new advert comes): product-b killed and started again is
    tried as soon as the gateway's connection to it is back (the breaker
    the closed pipe opened goes half-open on the new pipe)."""
    ensure_both_running()
    rc, out = shop("stop", "registry")
    check(rc == 0, "./shop stop registry: %s" % out[-300:])
    try:
        os.kill(pid_of("product-b"), signal.SIGKILL)
        check(wait_for(lambda: breaker_state("product-b") == "open", 5, 0.05) is not None,
              "gateway:product-b did not open when product-b was killed (state %r)"
              % breaker_state("product-b"))
        b_ok = lambda r: r.status == 200 and r.header("x-served-by") == "product-b"  # noqa: E731
        with FirstSuccess(lambda: api("GET", "/products?page_size=1"), b_ok) as gb:
            t = timed_start("product-b")
            got = gb.wait(6)
    finally:
        rc, out = shop("start", "registry")
    check(rc == 0, "./shop start registry: %s" % out[-300:])
    check(got is not None, "product-b served no GET within 6 s of ./shop start product-b")
    d = max(0.0, got - t)
    check(d < 1.0, "product-b first served %.2f s after ./shop start returned" % d)
    ensure_both_running()
    return "product-b serving %.0f ms after ./shop start returned (registry away)" % (d * 1000)


FAULT_CASES = [
    test_sigterm_drains_and_exits_within_5_s,
    test_kill_9_under_load_loses_no_get,
    test_sigstop_opens_breaker_then_half_open_recovers,
    test_sigstop_4_s_under_load_loses_no_get,
    test_slow_instance_counts_as_failing,
    test_both_down_503_at_once,
    test_registry_outage_traffic_continues,
    test_fault_returning_products_tried_at_once,
    test_fault_returning_auth_tried_at_once,
    test_fault_restart_with_registry_away_tried_at_once,
]
