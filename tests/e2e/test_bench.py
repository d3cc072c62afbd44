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
                "unknown method (nng + dispatch)", "echo c/s", "Argon2id verifies/s", "./shop up to ready"):
        check(row in out, "no %r row in:\n%s" % (row, out[-1500:]))
    check(" failed: " not in out, "a direct RPC row failed:\n%s" % out[-1500:])
    # The services-alone rows: each with the echo reference of its round
    # (bench/nngecho) and its ratio to it.
    for row in ("GetOrder (cache hit)", "ListProducts page_size=10",
                "unknown method (nng + dispatch)"):
        m = re.search(r"^  %s +(\d+) +\S+ +\S+ +(\d+) +(\d+) +([\d.]+)x" % re.escape(row), out, re.M)
        check(m and int(m.group(1)) > 0 and int(m.group(3)) > 0,
              "services-alone row %r with its echo reference: %s" % (row, out[-2500:]))
    # CPU and context switches per request of each process during each row:
    # the gateway and the order service did work on the cached GET, the
    # echo server on its own row.
    check("CPU µs / context switches per request" in out, "no CPU table:\n%s" % out[-2500:])
    m = re.search(r"^  GET /orders/\{id\} \(cache hit\) +(.*)$", out, re.M)
    cells = m.group(1).split() if m else []
    check(len(cells) == 7 and all(re.match(r"^(\d+/\d+\.\d|-)$", c) for c in cells) and
          float(cells[5].split("/")[0]) > 0 and float(cells[4].split("/")[0]) > 0,
          "CPU row of the cached GET: %r" % (m.group(0) if m else out[-2500:]))
    m = re.search(r"^    nngecho \(reference\) +.* (\d+)/(\d+\.\d)$", out, re.M)
    check(m is not None, "no CPU row of the echo reference:\n%s" % out[-2500:])
    # The fallback rows: every answer was the order service's own fallback
    # (the errors column counts any other), and the gateway's breaker on the
    # order service stayed closed.
    for row in ("POST /orders, products down (503)", "  the same, 1 connection"):
        m = re.search(r"^%s +\d+ +\S+ +\S+ +(\d+) " % re.escape(row), out, re.M)
        check(m and m.group(1) == "0", "fallback row %r: %s" % (row, m.group(0) if m else out[-1500:]))
    check("gateway:order breaker after: closed" in out, "gateway:order breaker:\n%s" % out[-1500:])
    return out.strip().splitlines()[-1]


CASES = [test_bench_smoke_prints_the_table]
