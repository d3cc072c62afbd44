"""test_lifecycle.py -- ./shop up, status, up again, down, as a user runs them."""

import os
import time

from stack import (ADMIN_PORTS, INSTANCES, VAR, alive, built, built_instances, check,
                   data_pids, pid_of, request, shop, stack_env)

REQUIRED = ["registry", "product-a", "product-b", "gateway"]


def test_up_starts_the_stack():
    t0 = time.monotonic()
    rc, out = shop("up")
    check(rc == 0, "./shop up exited %d:\n%s" % (rc, out[-3000:]))
    for name in REQUIRED:
        check(built(name), "%s is not built" % name)
    for name in built_instances():
        pid = pid_of(name)
        check(pid is not None and alive(pid), "%s: no live pid in var/run after up" % name)
    env = stack_env()
    secret = env.get("SHOP_JWT_SECRET", "")
    check(len(secret.encode()) >= 32, "SHOP_JWT_SECRET shorter than 32 bytes")
    for k in ("SHOP_PG_PORT", "SHOP_PG_HOST", "SHOP_REDIS_ADDR"):
        check(env.get(k), "stack.env lacks %s" % k)
    mode = os.stat(os.path.join(VAR, "stack.env")).st_mode & 0o777
    check(mode & 0o077 == 0, "stack.env is readable by others (mode %o)" % mode)
    r = request("GET", "/healthz")
    check(r.status == 200, "gateway /healthz -> %r" % r)
    r = request("GET", "/readyz")
    check(r.status == 200, "gateway /readyz -> %r" % r)
    return "up in %.1f s" % (time.monotonic() - t0)


def test_status_shows_every_instance_healthy():
    rc, out = shop("status", timeout=60)
    check(rc == 0, "./shop status exited %d:\n%s" % (rc, out))
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
    for name in built_instances():
        ln = lines.get(name)
        check(ln is not None, "status has no line for %s:\n%s" % (name, out))
        fields = ln.split()
        check(fields[1] == str(pid_of(name)), "status pid of %s: %r" % (name, ln))
        check(fields[2] == "healthy", "%s not healthy: %r" % (name, ln))
        check(str(ADMIN_PORTS[name]) in ln, "status of %s lacks its address: %r" % (name, ln))
    for name in ("postgres", "redis"):
        check(name in lines and lines[name].split()[2] == "up", "status: %s not up:\n%s" % (name, out))


def test_up_twice_is_harmless():
    before = {n: pid_of(n) for n in built_instances()}
    env_before = stack_env()
    rc, out = shop("up")
    check(rc == 0, "second ./shop up exited %d:\n%s" % (rc, out[-3000:]))
    after = {n: pid_of(n) for n in built_instances()}
    check(before == after, "pids changed: %r -> %r" % (before, after))
    for n, pid in after.items():
        check(pid is not None and alive(pid), "%s not alive after second up" % n)
    env_after = stack_env()
    for k in ("SHOP_JWT_SECRET", "SHOP_PG_PORT", "SHOP_REDIS_ADDR"):
        check(env_before.get(k) == env_after.get(k), "%s changed on second up" % k)
    r = request("GET", "/readyz")
    check(r.status == 200, "/readyz after second up -> %r" % r)


def test_down_leaves_no_process():
    pids = {n: pid_of(n) for n in INSTANCES}
    pids.update(data_pids())
    t0 = time.monotonic()
    rc, out = shop("down", timeout=120)
    took = time.monotonic() - t0
    check(rc == 0, "./shop down exited %d:\n%s" % (rc, out))
    left = {n: p for n, p in pids.items() if p is not None and alive(p)}
    check(not left, "still running after down: %r" % left)
    run = os.path.join(VAR, "run")
    stale = [f for f in os.listdir(run) if f.endswith(".pid")] if os.path.isdir(run) else []
    check(not stale, "pid files left in var/run: %r" % stale)
    rc, out = shop("down", timeout=60)
    check(rc == 0, "a second ./shop down exited %d:\n%s" % (rc, out))
    return "down in %.1f s" % took
