#!/usr/bin/python3
"""gwab.py -- two gateway binaries on the same running stack, in turns:
each serves the same wrk load (one path, 64 connections) for a few
seconds, ROUNDS times, and the gateway's CPU µs and context switches per
request (/proc, as bench/run.py) and req/s are printed per turn. Alternating
in one minute is what makes two builds comparable on a shared machine.

Usage: bench/gwab.py OLD_GATEWAY NEW_GATEWAY [order|products] [ROUNDS] [SECONDS]
Environment: SHOP_VAR, SHOP_PORT_OFFSET (the stack, left running with the
NEW binary's gateway afterwards).
"""

import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402

stack = run.stack


def shop_with(binary, *args):
    """./shop ARGS with SHOP_BUILD the build folder of this gateway binary
    (./shop stops only a process running its own build's binary)."""
    env = dict(os.environ, SHOP_BUILD=os.path.dirname(os.path.dirname(os.path.abspath(binary))))
    subprocess.run([os.path.join(run.ROOT, "shop")] + list(args), env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_gateway(binary):
    """Stops the gateway, then starts this binary's."""
    exe = os.path.realpath("/proc/%d/exe" % (stack.pid_of("gateway") or 0))
    shop_with(exe if os.path.exists(exe) else binary, "stop", "gateway")
    shop_with(binary, "start", "gateway")
    for _ in range(100):
        try:
            if stack.request("GET", "/readyz", timeout=1).status == 200:
                return stack.pid_of("gateway")
        except OSError:
            pass
        time.sleep(0.05)
    run.die("the gateway (%s) is not ready" % binary)


def main():
    old, new = sys.argv[1], sys.argv[2]
    kind = sys.argv[3] if len(sys.argv) > 3 else "order"
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    secs = int(sys.argv[5]) if len(sys.argv) > 5 else 5
    run.shop("up")
    token, pid, oid, *_ = run.prepare()
    url = run.GW + ("/orders/%d" % oid if kind == "order" else "/products?page_size=10")
    work = tempfile.mkdtemp(prefix="shop-gwab-")
    print("%-4s %5s %10s %8s %12s %12s" % ("gw", "round", "req/s", "p99 ms", "gw µs/req",
                                         "gw cs/req"))
    for i in range(rounds):
        for name, binary in (("old", old), ("new", new)):
            gpid = start_gateway(binary)
            run.wrk(url, "GET", token, None, seconds=1, lua_dir=work)  # warm
            meter = run.ProcMeter({"gateway": gpid})
            meter.start()
            got = run.wrk(url, "GET", token, None, seconds=secs, lua_dir=work)
            cost = meter.stop(got["requests"]).get("gateway", (0, 0))
            print("%-4s %5d %10.0f %8s %12.1f %12.2f" % (name, i + 1, got["rps"],
                                                       run.fmt(got["p99_ms"]), cost[0], cost[1]),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
