"""test_tsclient.py -- the Node.js client of clients/typescript against the
running stack: builds it with the pinned TypeScript (node_modules/, which
`./shop test` installs with `npm ci`) and runs its end-to-end suite
(clients/typescript/test/e2e.test.ts) with Node's built-in test runner.
Every Node test counts as one e2e case in run.py's totals (stack.Counts);
a suite that cannot build or run counts as one failure."""

import os
import re
import shutil
import subprocess
import time

import stack
from stack import ROOT, check

CLIENT_DIR = os.path.join(ROOT, "clients", "typescript")
TSC = os.path.join(ROOT, "node_modules", ".bin", "tsc")
SUITE = os.path.join(CLIENT_DIR, "dist", "test", "e2e.test.js")
# Below run.py's 180 s per case, so that a hung suite is reported here.
SUITE_TIMEOUT_S = 150
TOP_RESULT = re.compile(r"^(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO).*)?$")


def run_node_suite(path, timeout=SUITE_TIMEOUT_S):
    """(passed, failed, lines) of `node --test` on one file, from its TAP:
    each top-level test is one; a skipped or todo test is a failure (no
    skips, as everywhere in ./shop test)."""
    node = shutil.which("node")
    check(node, "no node on PATH (./shop test installs Debian's nodejs)")
    env = dict(os.environ, SHOP_VAR=stack.VAR, SHOP_PORT_OFFSET=str(stack.OFFSET), SHOP_ROOT=ROOT)
    p = subprocess.Popen([node, "--test", "--test-reporter=tap", path], cwd=ROOT, env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    passed = failed = 0
    lines = []
    detail = False
    deadline = time.monotonic() + timeout
    try:
        for raw in p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            m = TOP_RESULT.match(line)
            if m:
                ok = m.group(1) == "ok" and not m.group(3)
                passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
                print("  %s [node] %s%s" % ("ok  " if ok else "FAIL", m.group(2),
                                               " (%s)" % m.group(3) if m.group(3) else ""),
                      flush=True)
                detail = not ok
            elif detail and line.startswith("  ") and "duration_ms" not in line:
                print("       " + line.strip(), flush=True)  # the failed test's error
            elif not line.startswith(" "):
                detail = False
            if time.monotonic() > deadline:
                break
        if time.monotonic() > deadline:
            p.kill()
        rc = p.wait(timeout=max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    if time.monotonic() > deadline:
        print("  FAIL [node] the suite ran past %d s" % timeout, flush=True)
        failed += 1
    elif rc != 0 and failed == 0:
        print("  FAIL [node] node exited %d with no failed test" % rc, flush=True)
        print("\n".join(lines[-30:]), flush=True)
        failed += 1
    if passed + failed == 0:
        print("\n".join(lines[-30:]), flush=True)
        failed = 1
    return passed, failed, lines


def test_tsclient_suite():
    check(os.access(TSC, os.X_OK), "no %s: run 'npm ci' at the repository root" % TSC)
    b = subprocess.run([TSC, "-p", CLIENT_DIR], cwd=ROOT, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    check(b.returncode == 0, "tsc -p clients/typescript failed:\n%s"
          % b.stdout.decode("utf-8", "replace")[-3000:])
    passed, failed, _ = run_node_suite(SUITE)
    return stack.Counts(passed, failed, "node %s" % subprocess.run(
        ["node", "--version"], stdout=subprocess.PIPE).stdout.decode().strip())


CASES = [test_tsclient_suite]
