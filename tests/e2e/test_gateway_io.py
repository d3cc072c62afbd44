"""test_gateway_io.py -- what the gateway's hot path costs in system calls
and segments (issue 16, item 3), seen from outside: each answer leaves in
one segment (status line, headers and body in one write), and the access
lines of many answers are written in a few write(2) calls, none lost.

See docs/decisions.md ("The gateway's hot path (issue 16)").
"""

import os
import re
import secrets
import socket
import struct
import time

import stack
from stack import auth, check

N = 100


def _segs_in(sock):
    """Segments this socket received (struct tcp_info's tcpi_segs_in,
    Linux 4.2 and later; at byte 140)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from("I", info, 140)[0]


def _read_answer(sock, buf):
    """One whole answer (headers and Content-Length bytes); the rest."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        check(chunk, "the gateway closed the connection")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        chunk = sock.recv(65536)
        check(chunk, "the gateway closed the connection")
        rest += chunk
    return head, rest[n:]


def _keepalive(paths, headers=""):
    """Sends each request after the previous answer on one connection;
    returns (statuses, segments the client received meanwhile)."""
    s = socket.create_connection((stack.HOST, stack.GATEWAY_PORT), timeout=10)
    statuses = []
    try:
        s.sendall(("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").encode())  # past slow start
        buf = _read_answer(s, b"")[1]
        before = _segs_in(s)
        for p in paths:
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (p, headers)).encode())
            head, buf = _read_answer(s, buf)
            statuses.append(int(head.split(b" ", 2)[1]))
        time.sleep(0.05)  # a last ACK in flight
        return statuses, _segs_in(s) - before
    finally:
        s.close()


def test_gateway_answers_in_one_segment_each():
    # A gateway-local answer, a problem answer and a proxied answer.
    token = auth()["Authorization"]
    cases = [
        (["/healthz"] * N, "", 200),
        (["/no/such/route"] * N, "", 404),
        (["/products?page_size=2"] * N, "Authorization: %s\r\n" % token, 200),
    ]
    seen = []
    for paths, headers, want in cases:
        statuses, segs = _keepalive(paths, headers)
        check(statuses == [want] * N, "%s: statuses %r" % (paths[0], sorted(set(statuses))))
        # One segment per answer, and a few pure ACKs; headers and body
        # written apart would be two per answer.
        check(segs <= N * 1.3, "%s: %d answers came in %d segments" % (paths[0], N, segs))
        seen.append("%s %d" % (paths[0].split("?")[0], segs))
    return "%d answers each: %s segments" % (N, ", ".join(seen))


def _syscw(pid):
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            if line.startswith("syscw:"):
                return int(line.split()[1])
    return None


def test_gateway_access_lines_are_batched_and_kept():
    pid = stack.pid_of("gateway")
    check(pid and stack.alive(pid), "the gateway is not running")
    trace = secrets.token_hex(16)
    tp = "traceparent: 00-%s-%s-00\r\n" % (trace, secrets.token_hex(8))
    time.sleep(0.3)  # lines of earlier cases written
    w0 = _syscw(pid)
    statuses, _ = _keepalive(["/healthz"] * N, tp)
    w1 = _syscw(pid)
    check(statuses == [200] * N, "statuses %r" % sorted(set(statuses)))
    # One write(2) per line would be N; the buffer is written by its timer.
    check(w1 - w0 <= N // 10, "%d write calls for %d answers" % (w1 - w0, N))
    # None lost: every line reaches the log soon after.
    log = os.path.join(stack.VAR, "log", "gateway.log")
    got = 0
    for _ in range(50):
        with open(log, encoding="utf-8", errors="replace") as f:
            got = sum(1 for ln in f if trace in ln and "http GET /healthz status=200" in ln)
        if got >= N:
            break
        time.sleep(0.1)
    # N answers plus the first /healthz of the connection carry no trace
    # id of ours: exactly N lines.
    check(got == N, "%d access lines of %d answers in the log" % (got, N))
    return "%d answers: %d write calls, %d lines" % (N, w1 - w0, got)


CASES = [test_gateway_answers_in_one_segment_each, test_gateway_access_lines_are_batched_and_kept]
