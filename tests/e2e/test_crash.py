"""test_crash.py -- an instance that dies of a fatal signal leaves a JSON
fatal line with the signal and a backtrace as the last line of its log
(lib/crash.c), and ./shop status says "crashed (signal N)" until it is
started again."""

import json
import os
import signal
import time

import stack
from stack import alive, check, pid_of, registry_instances, shop


def status_line(name):
    rc, out = shop("status", timeout=60)
    check(rc == 0, "./shop status exited %d:\n%s" % (rc, out))
    for ln in out.splitlines():
        if ln.split() and ln.split()[0] == name:
            return ln
    check(False, "./shop status has no line for %s:\n%s" % (name, out))


def last_log_line(name):
    with open(os.path.join(stack.VAR, "log", name + ".log"), "rb") as f:
        lines = f.read().splitlines()
    check(lines, "%s's log is empty" % name)
    return lines[-1]


def test_segv_leaves_a_fatal_line_and_status_says_crashed():
    name = "product-b"
    pid = pid_of(name)
    check(pid and alive(pid), "%s is not running" % name)
    os.kill(pid, signal.SIGSEGV)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    check(not alive(pid), "%s (pid %d) still alive 5 s after SIGSEGV" % (name, pid))

    raw = last_log_line(name)
    try:
        line = json.loads(raw)
    except ValueError as e:
        check(False, "the last line of %s's log is not JSON (%s): %r" % (name, e, raw[:300]))
    check(line.get("level") == "fatal", "level %r in %r" % (line.get("level"), line))
    check(line.get("instance") == name, "instance %r" % line.get("instance"))
    check(line.get("signal") == 11, "signal %r" % line.get("signal"))
    check(line.get("pid") == pid, "pid %r, want %d" % (line.get("pid"), pid))
    check(line.get("msg") == "crashed: signal 11 (SIGSEGV)", "msg %r" % line.get("msg"))
    check(line.get("sender_pid") == os.getpid(), "sender_pid %r, want ours (%d)" %
          (line.get("sender_pid"), os.getpid()))
    bt = line.get("backtrace")
    check(isinstance(bt, list) and len(bt) > 0 and all(isinstance(f, str) for f in bt),
          "backtrace %r" % bt)
    check(any(f.startswith("svc-product+0x") for f in bt) or
          any(f.startswith("libc.so.6+0x") for f in bt), "no known module in %r" % bt)

    st = status_line(name)
    check("crashed (signal 11)" in st, "status of %s: %r" % (name, st))

    rc, out = shop("start", name, timeout=60)
    check(rc == 0, "./shop start %s exited %d:\n%s" % (name, rc, out))
    st = status_line(name)
    check(st.split()[2] == "healthy" and st.split()[1] == str(pid_of(name)),
          "status of %s after start: %r" % (name, st))
    deadline = time.monotonic() + 5
    while name not in registry_instances() and time.monotonic() < deadline:
        time.sleep(0.05)
    check(name in registry_instances(), "%s did not rejoin the registry" % name)
    return "%d frames; %s" % (len(bt), bt[0])


# Kills and restarts product-b: run with the other fault cases.
FAULT_CASES = [
    test_segv_leaves_a_fatal_line_and_status_says_crashed,
]
