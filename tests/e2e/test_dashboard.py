"""test_dashboard.py -- the registry's dashboard (GET / on its admin address)
opened in headless Chromium (Debian's chromium): every instance of the stack
shows, with the breaker states its callers expose on their /metrics, and a
screenshot is saved under the test state folder (dashboard.png)."""

import os
import re
import secrets
import shutil
import struct
import subprocess
import tempfile
import time

import stack
from stack import (ADMIN_PORTS, REGISTRY_ADMIN_PORT, api, built_instances, check, get_json,
                   request)

# How this machine's Chromium runs headless (/work/.library/env/machines/c.md):
# without the background-networking flags it keeps dialling Google's hosts.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
# Virtual time the page may run for: its first fetch and a few refreshes.
BUDGET_MS = 5000
SHOT_SIZE = (1200, 1060)
STATE_RE = re.compile(r'^resilience4j_circuitbreaker_state\{name="([^"]+)",state="([^"]+)"\} 1(?:\.0)?$',
                      re.M)
TR_RE = re.compile(r"<(?:tr|span) ([^>]*)>")
ATTR_RE = re.compile(r'([a-z-]+)="([^"]*)"')
URL = "http://%s:%d/" % (stack.HOST, REGISTRY_ADMIN_PORT)


def chromium():
    path = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    check(path, "chromium is not installed (Debian package chromium; ./shop test installs it)")
    return path


def run_chromium(*args):
    """Runs headless Chromium with a fresh profile; returns its stdout."""
    prof = tempfile.mkdtemp(prefix="chromium-", dir=stack.VAR)
    try:
        p = subprocess.run([chromium()] + CHROMIUM_FLAGS + ["--user-data-dir=" + prof] + list(args),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=90)
    finally:
        shutil.rmtree(prof, ignore_errors=True)
    check(p.returncode == 0, "chromium exited %d: %s" % (p.returncode, p.stderr.decode("utf-8", "replace")[-800:]))
    return p.stdout.decode("utf-8", "replace")


def make_traffic():
    """Calls that make the gateway hold a breaker on auth, order and both
    products, and the order one on each product."""
    for _ in range(10):
        r = api("GET", "/products?page_size=1")
        check(r.status == 200, "GET /products -> %r" % r)
    r = request("POST", "/auth/sign-up", {"name": "dash-" + secrets.token_hex(4),
                                          "password": "password-123"})
    check(r.status == 201, "sign-up -> %r" % r)
    user = {"Authorization": "Bearer " + r.json()["access_token"]}
    r = api("POST", "/products", {"name": "Dashboard lamp", "supply_price": 900})
    check(r.status == 201, "POST /products -> %r" % r)
    pid = r.json()["id"]
    for _ in range(4):
        r = request("POST", "/orders", {"product_ids": [pid, pid]}, headers=user)
        check(r.status == 201, "POST /orders -> %r" % r)


def exposed_breakers():
    """name -> state of every breaker the callers' /metrics expose now."""
    out = {}
    for name in built_instances():
        if name == "registry":
            continue
        r = request("GET", "/metrics", port=ADMIN_PORTS[name], timeout=2)
        check(r.status == 200, "GET /metrics of %s -> %r" % (name, r))
        for bname, state in STATE_RE.findall(r.body.decode("utf-8", "replace")):
            out[bname] = state
    return out


def elements(dom):
    """The attributes of every <tr> and <span> of the rendered page."""
    return [dict(ATTR_RE.findall(m)) for m in TR_RE.findall(dom)]


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    check(head[:8] == b"\x89PNG\r\n\x1a\n", "%s is not a PNG" % path)
    return struct.unpack(">II", head[16:24])


def dashboard_matches(want, names):
    """None when the rendered page shows every instance in names and every
    breaker in want with its state; else what is missing."""
    dom = run_chromium("--virtual-time-budget=%d" % BUDGET_MS, "--dump-dom", URL)
    els = elements(dom)
    rows = {e["data-instance"]: e for e in els if "data-instance" in e}
    missing = [n for n in names if n not in rows]
    if missing:
        return "instances %r not on the page (rows: %r)" % (missing, sorted(rows))
    for n in names:
        if n not in ("registry", "gateway") and rows[n].get("data-health") != "healthy":
            return "%s shows as %r" % (n, rows[n].get("data-health"))
    shown = {(e["data-breaker"], e.get("data-state")) for e in els if "data-breaker" in e}
    absent = sorted((b, s) for b, s in want.items() if (b, s) not in shown)
    if absent:
        return "breakers %r not on the page (shown: %r)" % (absent, sorted(shown))
    if 'id="status" class="live"' not in dom:
        return "the page does not say it is live: %r" % re.findall(r'<span id="status"[^<]*', dom)
    return None


def test_dashboard_shows_every_instance_and_breaker():
    names = built_instances()
    check(len(names) == 6, "want the six instances built, have %r" % names)
    r = request("GET", "/", port=REGISTRY_ADMIN_PORT, timeout=2)
    check(r.status == 200 and (r.header("content-type") or "").startswith("text/html"),
          "GET / on the registry -> %r" % r)
    make_traffic()
    want = exposed_breakers()
    for target in ("auth", "order", "product-a", "product-b"):
        check("gateway:" + target in want, "gateway exposes no breaker on %s: %r" % (target, want))

    # /v1/breakers: every exposed breaker, read within a couple of rounds.
    # A breaker may change state meanwhile (an open one turns half-open after
    # its wait): the gateway's own states are read again each time.
    deadline = time.monotonic() + 5
    while True:
        doc = get_json(REGISTRY_ADMIN_PORT, "/v1/breakers")
        got = {b["name"]: b["state"] for b in doc.get("breakers", [])}
        if all(got.get(k) == v for k, v in want.items()):
            break
        check(time.monotonic() < deadline, "/v1/breakers %r lacks some of %r" % (got, want))
        time.sleep(0.2)
        want = exposed_breakers()
    srcs = {s["instance"]: s for s in doc["sources"]}
    for n in names:
        if n != "registry":
            check(n in srcs and srcs[n]["up"] is True, "%s not read: %r" % (n, srcs.get(n)))
    check(srcs["gateway"]["registered"] is False, "the gateway is not an extra: %r" % srcs["gateway"])

    # The page in Chromium; a breaker may change state between the reads:
    # read both again once before failing.
    why = dashboard_matches(want, names)
    if why is not None:
        want = exposed_breakers()
        why = dashboard_matches(want, names)
    check(why is None, why)

    shot = os.path.join(stack.VAR, "dashboard.png")
    if os.path.exists(shot):
        os.unlink(shot)
    run_chromium("--virtual-time-budget=%d" % BUDGET_MS, "--window-size=%d,%d" % SHOT_SIZE,
                 "--screenshot=" + shot, URL)
    check(os.path.exists(shot), "no screenshot at %s" % shot)
    check(png_size(shot) == SHOT_SIZE, "screenshot is %r, want %r" % (png_size(shot), SHOT_SIZE))
    # A blank page compresses to a few KiB; tables of text do not.
    check(os.path.getsize(shot) > 30000, "screenshot of %d bytes looks blank" % os.path.getsize(shot))
    return "%d instances, %d breakers; screenshot %s" % (len(names), len(want), shot)


CASES = [
    test_dashboard_shows_every_instance_and_breaker,
]
