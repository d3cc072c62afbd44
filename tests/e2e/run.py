#!/usr/bin/python3
"""run.py -- the e2e runner: `./shop up`, every case against the running
stack over HTTP and nng, then `./shop down`, and the line
"e2e: N passed, N failed". Exits non-zero on any failure.

Usage: /usr/bin/python3 tests/e2e/run.py [-k SUBSTRING]
Environment: SHOP_VAR (default var/test), SHOP_PORT_OFFSET (default 10000).
No case is ever skipped: a case that cannot run (the stack did not come up)
counts as failed.
"""

import os
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True

import stack  # noqa: E402
import test_adverts  # noqa: E402
import test_auth  # noqa: E402
import test_bench  # noqa: E402
import test_crash  # noqa: E402
import test_dashboard  # noqa: E402
import test_errors  # noqa: E402
import test_faults  # noqa: E402
import test_gateway_io  # noqa: E402
import test_hardening  # noqa: E402
import test_hostile  # noqa: E402
import test_http_limits  # noqa: E402
import test_health  # noqa: E402
import test_lifecycle  # noqa: E402
import test_openapi  # noqa: E402
import test_orders  # noqa: E402
import test_products  # noqa: E402
import test_pyclient  # noqa: E402
import test_tsclient  # noqa: E402
import test_prometheus  # noqa: E402
import test_registry  # noqa: E402
import test_rpc  # noqa: E402
import test_storms  # noqa: E402
import test_tokens  # noqa: E402
import test_tracing  # noqa: E402  -- exports SHOP_ZIPKIN_URL before ./shop up

CASE_TIMEOUT_S = 180

# In order: the lifecycle cases bracket the rest; faults come last before down.
CASES = (
    [test_lifecycle.test_up_starts_the_stack]
    + test_health.CASES
    + test_openapi.CASES
    + test_products.CASES
    + test_auth.CASES
    + test_errors.CASES
    + test_hardening.CASES
    + test_http_limits.CASES
    + test_gateway_io.CASES
    + test_hostile.CASES
    + test_storms.CASES
    + test_adverts.CASES
    + test_tokens.CASES
    + test_orders.CASES
    + test_rpc.CASES
    + test_pyclient.CASES
    + test_tsclient.CASES
    + test_tracing.CASES
    + test_registry.CASES
    + test_dashboard.CASES
    + test_prometheus.CASES
    + [test_lifecycle.test_status_shows_every_instance_healthy,
       test_lifecycle.test_up_twice_is_harmless]
    + test_registry.FAULT_CASES
    + test_crash.FAULT_CASES
    + test_orders.FAULT_CASES
    + test_hostile.FAULT_CASES
    + test_storms.FAULT_CASES
    + test_health.FAULT_CASES
    + test_faults.FAULT_CASES
    + test_bench.CASES
    + [test_lifecycle.test_down_leaves_no_process]
)


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout("case took longer than %d s" % CASE_TIMEOUT_S)


def main(argv):
    only = None
    if len(argv) == 3 and argv[1] == "-k":
        only = argv[2]
    signal.signal(signal.SIGALRM, _alarm)
    print("e2e: stack in %s, port offset %d" % (stack.VAR, stack.OFFSET), flush=True)
    passed = failed = 0
    up_ok = True
    down_ran = False
    for case in CASES:
        name = case.__name__
        always = case in (test_lifecycle.test_up_starts_the_stack,
                          test_lifecycle.test_down_leaves_no_process)
        if only and only not in name and not always:
            continue
        if not up_ok and not always:
            print("FAIL %s: not run, the stack did not come up" % name, flush=True)
            failed += 1
            continue
        t0 = time.monotonic()
        signal.alarm(CASE_TIMEOUT_S)
        try:
            note = case()
            signal.alarm(0)
            if isinstance(note, stack.Counts):  # a suite of its own: each of its tests counts
                passed += note.passed
                failed += note.failed
                print("%s %s (%.2f s) -- %d passed, %d failed%s"
                      % ("ok  " if note.failed == 0 else "FAIL", name, time.monotonic() - t0,
                         note.passed, note.failed, "; " + note.note if note.note else ""),
                      flush=True)
                continue
            passed += 1
            extra = (" -- " + note) if note else ""
            print("ok   %s (%.2f s)%s" % (name, time.monotonic() - t0, extra), flush=True)
        except Exception as e:  # noqa: BLE001 -- any exception fails the case
            signal.alarm(0)
            failed += 1
            print("FAIL %s (%.2f s): %s" % (name, time.monotonic() - t0, e), flush=True)
            if not isinstance(e, (stack.Fail, Timeout)):
                traceback.print_exc(file=sys.stdout)
            if case is test_lifecycle.test_up_starts_the_stack:
                up_ok = False
        if case is test_lifecycle.test_down_leaves_no_process:
            down_ran = True
    if not down_ran:
        stack.shop("down")
    print("e2e: %d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
