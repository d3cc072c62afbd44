"""test_orders.py -- orders through the gateway: bodies and totals, appends,
ownership, the product fallbacks word for word (en, ko), the Redis cache
(MISS, HIT, BYPASS, coherence under concurrent PUT/GET), idempotent
creates, PostgreSQL going away and coming back, and a long product outage
that never opens the gateway's breaker on the (working) order service."""

import glob
import os
import re
import secrets
import signal
import subprocess
import threading
import time

import stack
from stack import check, check_problem, data_pids, request, stack_env

NOT_FOUND_EN = "Product %d not found"
NOT_FOUND_KO = "%d번 상품을 찾을 수 없습니다"
UNAVAILABLE_EN = "Product service is unavailable. Please try again later."
UNAVAILABLE_KO = "상품 서비스를 이용할 수 없습니다. 나중에 다시 시도해주세요"

_users = {}


def user(tag):
    """A signed-up user's Authorization header, made once per tag."""
    if tag not in _users:
        name = "%s-%s" % (tag, secrets.token_hex(4))
        r = request("POST", "/auth/sign-up", {"name": name, "password": "password-123"})
        check(r.status == 201, "sign-up %s -> %r" % (name, r))
        _users[tag] = {"Authorization": "Bearer " + r.json()["access_token"]}
    return _users[tag]


_products = []


def products():
    """Two products made once: (id, name, price) each."""
    if not _products:
        for name, price in (("Order pen", 700), ("Order desk", 120000)):
            r = stack.api("POST", "/products", {"name": name, "supply_price": price})
            check(r.status == 201, "POST /products -> %r" % r)
            _products.append((r.json()["id"], name, price))
    return _products


def create(ids, who="alice", headers=None):
    h = dict(user(who))
    h.update(headers or {})
    return request("POST", "/orders", {"product_ids": ids}, headers=h)


def get(order_id, who="alice"):
    return request("GET", "/orders/%d" % order_id, headers=user(who))


def put(order_id, product_id, who="alice"):
    return request("PUT", "/orders/%d" % order_id, {"product_id": product_id}, headers=user(who))


def check_order(o, items):
    check(isinstance(o.get("id"), int) and o["id"] > 0, "id in %r" % o)
    got = [(i["product_id"], i["name"], i["supply_price"]) for i in o.get("items", [])]
    check(got == items, "items %r, want %r" % (got, items))
    check(o.get("total_supply_price") == sum(i[2] for i in items),
          "total %r for %r" % (o.get("total_supply_price"), items))
    for k in ("created_at", "updated_at"):
        check(isinstance(o.get(k), str) and stack.RFC3339_UTC_RE.match(o[k]), "%s in %r" % (k, o))


def redis_cli(*args):
    env = stack_env()
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", env["SHOP_REDIS_PORT"]] +
                         list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    return out.stdout.decode().strip()


def test_create_with_repeats_and_total():
    (a, an, ap), (b, bn, bp) = products()
    r = create([a, b, a])
    check(r.status == 201, "POST /orders -> %r" % r)
    o = r.json()
    check_order(o, [(a, an, ap), (b, bn, bp), (a, an, ap)])
    check(r.header("location") == "/orders/%d" % o["id"], "Location %r" % r.header("location"))
    check(r.header("x-served-by") == "order", "X-Served-By %r" % r.header("x-served-by"))


def test_append_and_read_back():
    (a, an, ap), (b, bn, bp) = products()
    o = create([a]).json()
    r = put(o["id"], b)
    check(r.status == 200, "PUT -> %r" % r)
    check_order(r.json(), [(a, an, ap), (b, bn, bp)])
    g = get(o["id"])
    check(g.status == 200, "GET -> %r" % g)
    check(g.json() == r.json(), "GET %r != PUT answer %r" % (g.json(), r.json()))


def test_another_users_order_is_404():
    a = products()[0][0]
    o = create([a], who="alice").json()
    check_problem(get(o["id"], who="mallory"), 404, "order_not_found")
    check_problem(put(o["id"], a, who="mallory"), 404, "order_not_found")
    check_problem(get(999999999, who="alice"), 404, "order_not_found")


def test_unknown_product_404_en_ko():
    a = products()[0][0]
    missing = 987654321
    p = check_problem(create([a, missing]), 404, "product_not_found")
    check(p["detail"] == NOT_FOUND_EN % missing, "en detail %r" % p["detail"])
    p = check_problem(create([missing], headers={"Accept-Language": "ko-KR,ko;q=0.9"}), 404,
                      "product_not_found")
    check(p["detail"] == NOT_FOUND_KO % missing, "ko detail %r" % p["detail"])
    o = create([a]).json()
    check_problem(put(o["id"], missing), 404, "product_not_found")


def test_bad_order_input_400():
    h = user("alice")
    for body in ({"product_ids": []}, {"product_ids": [0]}, {"product_ids": [-1]},
                 {"product_ids": ["1"]}, {"product_ids": list(range(1, 102))}, {}):
        check_problem(request("POST", "/orders", body, headers=h), 400)
    for path in ("/orders/0", "/orders/-1", "/orders/abc", "/orders/9223372036854775808"):
        check_problem(request("GET", path, headers=h), 400)


def test_miss_then_hit_and_put_visible():
    (a, _, _), (b, bn, bp) = products()
    o = create([a]).json()
    redis_cli("DEL", "shop:order:v1:%d" % o["id"])
    r1, r2 = get(o["id"]), get(o["id"])
    check(r1.header("x-cache") == "MISS", "first GET X-Cache %r" % r1.header("x-cache"))
    check(r2.header("x-cache") == "HIT", "second GET X-Cache %r" % r2.header("x-cache"))
    put(o["id"], b)
    r3 = get(o["id"])
    check(r3.header("x-cache") == "HIT", "GET after PUT X-Cache %r" % r3.header("x-cache"))
    check(len(r3.json()["items"]) == 2 and r3.json()["items"][1]["name"] == bn,
          "PUT not visible on the next GET: %r" % r3.json())


def test_concurrent_put_get_coherence():
    """No GET that starts after a PUT was answered sees fewer items than
    that PUT's answer had."""
    a = products()[0][0]
    o = create([a]).json()
    oid = o["id"]
    puts = []       # (answered at, item count)
    gets = []       # (started at, item count)
    errors = []
    stop = threading.Event()

    def writer():
        for _ in range(25):
            r = put(oid, a)
            if r.status != 200:
                errors.append("PUT %r" % r)
                break
            puts.append((time.monotonic(), len(r.json()["items"])))
        stop.set()

    def reader():
        while not stop.is_set():
            t = time.monotonic()
            r = get(oid)
            if r.status != 200:
                errors.append("GET %r" % r)
                return
            gets.append((t, len(r.json()["items"])))

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader)
                                                   for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(not errors, "errors: %r" % errors[:3])
    check(len(puts) == 25 and len(gets) > 25, "%d PUTs, %d GETs" % (len(puts), len(gets)))
    stale = [(gt, gn, pn) for gt, gn in gets for pt, pn in puts if gt > pt and gn < pn]
    check(not stale, "%d stale reads, e.g. %r" % (len(stale), stale[:3]))
    return "%d PUTs, %d GETs, 0 stale" % (len(puts), len(gets))


def test_idempotent_create():
    a, b = products()[0][0], products()[1][0]
    key = {"Idempotency-Key": "key-" + secrets.token_hex(8)}
    r1 = create([a, b], headers=key)
    r2 = create([a, b], headers=key)
    check(r1.status == 201 and r2.status == 201, "statuses %d, %d" % (r1.status, r2.status))
    check(r1.json()["id"] == r2.json()["id"], "two orders for one key: %r %r"
          % (r1.json()["id"], r2.json()["id"]))
    check_problem(create([b], headers=key), 422, "idempotency_key_reused")
    # Another user's same key is their own.
    r3 = create([a, b], who="bob", headers=key)
    check(r3.status == 201 and r3.json()["id"] != r1.json()["id"], "bob got %r" % r3)


def test_idempotent_concurrent_resends_make_one_order():
    a = products()[0][0]
    key = {"Idempotency-Key": "burst-" + secrets.token_hex(8)}
    ids, errs = [], []

    def send():
        r = create([a], headers=key)
        (ids if r.status == 201 else errs).append(r.json()["id"] if r.status == 201 else r)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    check(not errs, "failed resends: %r" % errs[:2])
    check(len(set(ids)) == 1, "%d orders for one key: %r" % (len(set(ids)), sorted(set(ids))))


def test_redis_stopped_bypass_then_hit():
    a = products()[0][0]
    o = create([a]).json()
    pid = data_pids().get("redis")
    check(pid, "no redis pid")
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(3):
            t = time.monotonic()
            r = get(o["id"])
            took = time.monotonic() - t
            check(r.status == 200, "GET with Redis stopped -> %r" % r)
            check(r.header("x-cache") == "BYPASS", "X-Cache %r" % r.header("x-cache"))
            check(took < 1.0, "GET took %.2f s with Redis stopped" % took)
    finally:
        os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 15
    seen = None
    while time.monotonic() < deadline:
        seen = get(o["id"]).header("x-cache")
        if seen == "HIT":
            break
        time.sleep(0.2)
    check(seen == "HIT", "never HIT again after SIGCONT (last %r)" % seen)


def writes_recover(a, pause, what):
    """POST /orders of product a until one is 201, for 20 s at most."""
    deadline = time.monotonic() + 20
    status = None
    while time.monotonic() < deadline:
        status = create([a]).status
        if status == 201:
            break
        time.sleep(pause)
    check(status == 201, "%s (last %r)" % (what, status))


def _pg(action):
    """Stops or starts the test stack's PostgreSQL as its owner."""
    data = os.path.realpath(os.path.join(stack.VAR, "pg", "data"))
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    check(bins, "no pg_ctl")
    cmd = [bins[-1], "-D", data, "-w", "-t", "30"]
    if action == "stop":
        cmd += ["-m", "fast", "stop"]
    else:
        cmd += ["-l", os.path.join(os.path.dirname(data), "postgres.log"),
                "-o", "-p %s" % stack_env()["SHOP_PG_PORT"], "start"]
    owner = os.stat(data).st_uid
    if os.getuid() == 0 and owner != 0:
        import pwd
        cmd = ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--"] + cmd
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    check(p.returncode == 0, "pg_ctl %s: %s" % (action, p.stdout.decode()[-300:]))


def test_postgres_stopped_then_back():
    a = products()[0][0]
    o = create([a]).json()
    check(get(o["id"]).header("x-cache") == "HIT", "order not cached before the test")
    _pg("stop")
    try:
        t = time.monotonic()
        r = create([a])
        took = time.monotonic() - t
        check_problem(r, 503, "service_unavailable")
        check(took < 3.0, "a write took %.2f s with PostgreSQL down" % took)
        g = get(o["id"])
        check(g.status == 200 and g.header("x-cache") == "HIT", "cached read -> %r" % g)
    finally:
        _pg("start")
    writes_recover(a, 0.3, "writes did not recover")


def test_products_down_503_then_back():
    a = products()[0][0]
    for name in ("product-a", "product-b"):
        rc, out = stack.shop("stop", name)
        check(rc == 0, "./shop stop %s: %s" % (name, out[-300:]))
    try:
        for lang, text in (("en", UNAVAILABLE_EN), ("ko", UNAVAILABLE_KO)):
            t = time.monotonic()
            r = create([a], headers={"Accept-Language": lang})
            took = time.monotonic() - t
            p = check_problem(r, 503, "product_service_unavailable")
            check(p["detail"] == text, "%s detail %r" % (lang, p["detail"]))
            ra = r.header("retry-after")
            check(ra is not None and ra.isdigit(), "Retry-After %r" % ra)
            check(took < 1.0, "fallback took %.2f s" % took)
    finally:
        for name in ("product-a", "product-b"):
            stack.shop("start", name)
    # The breakers wait 5 s before half-open trials.
    writes_recover(a, 0.5, "orders did not recover after the products restarted")


def _gateway_metrics():
    r = request("GET", "/metrics")
    check(r.status == 200, "GET /metrics -> %r" % r)
    return r.body.decode()


def _order_calls(text, outcome):
    """The gateway's shop_rpc_client_calls_total for the order instance."""
    total = 0
    for m in re.finditer(r'^shop_rpc_client_calls_total\{([^}]*)\} (\d+)', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("service") == "order" and labels.get("outcome") == outcome:
            total += int(m.group(2))
    return total


ORDER_CLOSED = 'resilience4j_circuitbreaker_state{name="gateway:order",state="closed"} 1'


def test_products_down_long_outage_keeps_order_breaker_closed():
    """Issue 15: the order service's fallback reports that its dependency
    failed, so no caller counts it against the order instance. With both
    product instances stopped, 60 creates and 12 appends all get the exact
    fallback (en and ko), a cached order still reads 200, and the gateway's
    breaker on the order instance stays closed."""
    import test_faults
    import test_pyclient
    a = products()[0][0]
    o = create([a]).json()
    g = get(o["id"])  # read once: cached
    check(g.status == 200, "GET before the outage -> %r" % g)
    check(ORDER_CLOSED in _gateway_metrics(), "gateway:order not closed before the outage")
    before = _gateway_metrics()
    failures0, deps0 = _order_calls(before, "failure"), _order_calls(before, "dependency")
    for name in ("product-a", "product-b"):
        rc, out = stack.shop("stop", name)
        check(rc == 0, "./shop stop %s: %s" % (name, out[-300:]))
    answered = 0
    try:
        def fallback(r, lang, what):
            try:
                p = check_problem(r, 503, "product_service_unavailable")
            except stack.Fail as e:
                raise stack.Fail("%s (%s): %s" % (what, lang, e)) from None
            want = UNAVAILABLE_KO if lang == "ko" else UNAVAILABLE_EN
            check(p["detail"] == want, "%s (%s): detail %r" % (what, lang, p["detail"]))
            ra = r.header("retry-after")
            check(ra is not None and ra.isdigit(), "%s: Retry-After %r" % (what, ra))

        for i in range(60):
            lang = "ko" if i % 3 == 2 else "en"
            fallback(create([a], headers={"Accept-Language": lang}), lang, "POST #%d" % i)
            answered += 1
            if i % 5 == 4:
                lang = "ko" if i % 10 == 9 else "en"
                r = request("PUT", "/orders/%d" % o["id"], {"product_id": a},
                            headers=dict(user("alice"), **{"Accept-Language": lang}))
                fallback(r, lang, "PUT after POST #%d" % i)
                answered += 1
        for _ in range(5):
            g = get(o["id"])
            check(g.status == 200 and g.header("x-cache") == "HIT",
                  "cached GET during the outage -> %r (X-Cache %r)" % (g, g.header("x-cache")))
        text = _gateway_metrics()
        check(ORDER_CLOSED in text, "gateway:order is %s after %d fallbacks"
              % (test_faults.breaker_state("order"), answered))
        check(_order_calls(text, "failure") == failures0,
              "the gateway counted %d calls to order as failures"
              % (_order_calls(text, "failure") - failures0))
        check(_order_calls(text, "dependency") - deps0 >= answered,
              "outcome=\"dependency\" rose by %d for %d fallbacks"
              % (_order_calls(text, "dependency") - deps0, answered))
        # The mark is in the envelope, for any client: the Python one sees it.
        with test_pyclient.client() as shop:
            uid = test_pyclient.user("outage")[0]
            e = test_pyclient.raises(test_pyclient.shop_client.Unavailable, shop.create_order,
                                     [a], user_id=uid)
            check(e.reason == "PRODUCT_SERVICE_UNAVAILABLE" and e.dependency_failed is True,
                  "CreateOrder over nng: %s (dependency_failed %r)" % (e, e.dependency_failed))
    finally:
        for name in ("product-a", "product-b"):
            stack.shop("start", name)
    test_faults.ensure_both_running()
    writes_recover(a, 0.5, "orders did not recover after the products restarted")
    return "%d fallbacks, gateway:order closed" % answered


CASES = [
    test_create_with_repeats_and_total,
    test_append_and_read_back,
    test_another_users_order_is_404,
    test_unknown_product_404_en_ko,
    test_bad_order_input_400,
    test_miss_then_hit_and_put_visible,
    test_concurrent_put_get_coherence,
    test_idempotent_create,
    test_idempotent_concurrent_resends_make_one_order,
]

FAULT_CASES = [
    test_redis_stopped_bypass_then_hit,
    test_postgres_stopped_then_back,
    test_products_down_503_then_back,
    test_products_down_long_outage_keeps_order_breaker_closed,
]
