"""test_bench.py -- `./shop bench --smoke` runs end to end on the test stack
(one-second runs, no thresholds), so that the benchmark cannot rot; its
fallback rows measured the order service's fallback and nothing else."""

import os
import re
import subprocess

import stack
from stack import check


def test_bench_smoke_prints_the_table():
    env = dict(os.environ, SHOP_VAR=stack.VAR, SHOP_PORT_OFFSET=str(stack.OFFSET),
               SHOP_BUILD=stack.BUILD)
    p = subprocess.run(["/usr/bin/python3", os.path.join(stack.ROOT, "bench", "run.py"), "--smoke"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    out = p.stdout.decode("utf-8", "replace")
    check(p.returncode == 0, "bench --smoke exited %d:\n%s" % (p.returncode, out[-1500:]))
    for row in ("GET /orders/{id} (cache hit)", "GET /products?page_size=10",
                "POST /orders (one product)", "POST /orders, products down (503)",
                "POST /auth/sign-in", "GET /products, alone", "GET /products, 64 signing in",
                "pgbench -N", "resident memory (RSS):", "together (PSS",
                "services alone over nng", "GetOrder (cache hit)", "ListProducts page_size=10",
                "unknown method (nng + dispatch)", "Argon2id verifies/s", "./shop up to ready"):
        check(row in out, "no %r row in:\n%s" % (row, out[-1500:]))
    check(" failed: " not in out, "a direct RPC row failed:\n%s" % out[-1500:])
    # The fallback rows: every answer was the order service's own fallback
    # (the errors column counts any other), and the gateway's breaker on the
    # order service stayed closed.
    for row in ("POST /orders, products down (503)", "  the same, 1 connection"):
        m = re.search(r"^%s +\d+ +\S+ +\S+ +(\d+) " % re.escape(row), out, re.M)
        check(m and m.group(1) == "0", "fallback row %r: %s" % (row, m.group(0) if m else out[-1500:]))
    check("gateway:order breaker after: closed" in out, "gateway:order breaker:\n%s" % out[-1500:])
    return out.strip().splitlines()[-1]


CASES = [test_bench_smoke_prints_the_table]
