#!/usr/bin/python3
"""signin_flood.py -- the bench's sign-in row alone, with its answers counted:
BENCH_CONNECTIONS closed-loop wrk connections (64) sign in with the right
password for BENCH_SECONDS (10) and ignore Retry-After. Prints the 2xx per
second, all answers per second, the count of each status, and the CPU the
gateway and svc-auth used meanwhile (from /proc/PID/stat), so that a change
to the refusal path can be judged by what it leaves for the hashes.

Usage: bench/signin_flood.py   (on a running stack: SHOP_VAR, SHOP_PORT_OFFSET
as ./shop; SIGNIN_USER: an existing user of password bench-password, else a
new one is signed up)
"""

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (the stack's layout, wrk and the API helpers)

STATUSES = (200, 401, 429, 500, 503)


def cpu_ticks(name):
    pid = run.stack.pid_of(name)
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, TypeError, ValueError, IndexError):
        return None


def main():
    secs = run.SECONDS
    name = os.environ.get("SIGNIN_USER")
    pw = "bench-password"
    if not name:
        name = "flood-" + secrets.token_hex(4)
        r = run.api("POST", "/auth/sign-up", {"name": name, "password": pw})
        if r.status != 201:
            run.die("sign-up: %r" % r)
    work = tempfile.mkdtemp(prefix="shop-flood-")
    script = os.path.join(work, "flood.lua")
    with open(script, "w") as f:
        f.write("""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%s'
local threads = {}
function setup(t) table.insert(threads, t) end
function init(a) c = {} end
function response(status, headers, body) c[status] = (c[status] or 0) + 1 end
function done(summary, latency, requests)
  for _, st in ipairs({%s}) do
    local n = 0
    for _, t in ipairs(threads) do n = n + (t:get("c")[st] or 0) end
    io.write(string.format("status %%d %%d\\n", st, n))
  end
end
""" % (json.dumps({"name": name, "password": pw}), ",".join(str(s) for s in STATUSES)))
    cpu0 = {n: cpu_ticks(n) for n in ("auth", "gateway")}
    out = subprocess.run(["wrk", "-t%d" % run.THREADS, "-c%d" % run.CONNS, "-d%ds" % secs, "-s",
                          script, run.GW + "/auth/sign-in"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=secs + 60).stdout.decode()
    cpu1 = {n: cpu_ticks(n) for n in ("auth", "gateway")}
    counts = {int(a): int(b) for a, b in re.findall(r"^status (\d+) (\d+)$", out, re.M)}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    hz = os.sysconf("SC_CLK_TCK")
    cpu = ", ".join("%s %.2f cores" % (n, (cpu1[n] - cpu0[n]) / hz / secs)
                    for n in cpu0 if cpu0[n] is not None and cpu1[n] is not None)
    print("sign-in flood, %d connections, %d s: 2xx %.1f/s, answers %s/s, %s; CPU %s" % (
        run.CONNS, secs, counts.get(200, 0) / secs, m.group(1) if m else "?",
        " ".join("%d:%d" % (k, v) for k, v in sorted(counts.items()) if v), cpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
