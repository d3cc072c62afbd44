#!/usr/bin/python3
"""gwprofile.py -- instructions per request of the gateway on one path,
counted by callgrind: a second gateway beside the running stack (same
registry, same secret), WARM requests on one keep-alive connection, the
counters zeroed, N more, the counters dumped; (instructions) / N.
Repeatable to a few instructions, unlike timings on a shared machine.

Usage: bench/gwprofile.py [PATH-KIND] [N]   PATH-KIND: order (GET
/orders/{id}, cache hit; default) or products (GET /products?page_size=10)
Environment: SHOP_VAR, SHOP_PORT_OFFSET, SHOP_BUILD (as ./shop bench);
GWPROFILE_ENV: extra VAR=value,... for the profiled gateway;
GWPROFILE_GATEWAY: its binary (default: SHOP_BUILD's, e.g. an older build
to compare with). Prints the
figure and the top inclusive functions (callgrind_annotate); leaves
the dump in $SHOP_VAR/gwprofile/.
"""

import http.client
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (the stack's helpers and prepare())

stack = run.stack


def main():
    kind = sys.argv[1] if len(sys.argv) > 1 else "order"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    warm = 200
    run.shop("up")
    token, pid, oid, *_ = run.prepare()
    path = "/orders/%d" % oid if kind == "order" else "/products?page_size=10"
    env = stack.stack_env()
    port = stack.GATEWAY_PORT + 1  # inside this stack's offset
    out_dir = os.path.join(stack.VAR, "gwprofile")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "callgrind.out.%s" % kind)
    for f in os.listdir(out_dir):
        if f.startswith("callgrind.out.%s" % kind):
            os.unlink(os.path.join(out_dir, f))
    genv = dict(os.environ, SHOP_INSTANCE="gateway-profile",
                SHOP_GATEWAY_ADDR="127.0.0.1:%d" % port,
                SHOP_REGISTRY_LOOKUP_URL="tcp://127.0.0.1:%d" % (7101 + stack.OFFSET),
                SHOP_JWT_SECRET=env["SHOP_JWT_SECRET"], SHOP_GATEWAY_REQUIRED_SERVICES="product")
    for kv in filter(None, os.environ.get("GWPROFILE_ENV", "").split(",")):
        k, v = kv.split("=", 1)
        genv[k] = v
    build = os.environ.get("SHOP_BUILD") or os.path.join(run.ROOT, "build")
    binary = os.environ.get("GWPROFILE_GATEWAY") or os.path.join(build, "edge-gateway", "gateway")
    log = open(os.path.join(out_dir, "gateway-%s.log" % kind), "w")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                          binary],
                         env=genv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        conn = None
        for _ in range(600):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/readyz")
                r = conn.getresponse()
                r.read()
                if r.status == 200:
                    break
            except OSError:
                conn = None
            time.sleep(0.1)
        else:
            run.die("the profiled gateway is not ready")
        hdrs = {"Authorization": "Bearer " + token}

        def requests(k):
            for _ in range(k):
                conn.request("GET", path, headers=hdrs)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    run.die("%s answered %d" % (path, r.status))

        requests(warm)
        subprocess.run(["callgrind_control", "-z", str(p.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        requests(n)
        subprocess.run(["callgrind_control", "-d", str(p.pid)], check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        p.terminate()
        p.wait(timeout=60)
    dumps = sorted(f for f in os.listdir(out_dir)
                   if re.match(r"callgrind\.out\.%s\.\d+$" % kind, f))
    if not dumps:
        run.die("no callgrind dump in %s" % out_dir)
    dump = os.path.join(out_dir, dumps[0])
    with open(dump) as f:
        total = next(int(line.split()[1]) for line in f if line.startswith(("summary:", "totals:")))
    print("gateway, GET %s: %d instructions per request (callgrind, %d warm-up + %d "
          "requests on one connection; %s)" % (path.split("?")[0] if kind == "order" else path,
                                              total // n, warm, n, dump))
    ann = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=yes", dump], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL).stdout.decode("utf-8", "replace")
    lines = [ln for ln in ann.splitlines() if re.match(r"^\s*[\d,]+ \(", ln)]
    for ln in lines[:40]:
        m = re.match(r"^\s*([\d,]+) \(\s*([\d.]+)%\)\s+(.*)$", ln)
        if m:
            print("%10d  %5s%%  %s" % (int(m.group(1).replace(",", "")) // n, m.group(2),
                                       m.group(3)[:110]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
