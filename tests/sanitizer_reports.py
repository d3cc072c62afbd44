#!/usr/bin/python3
"""sanitizer_reports.py -- the sanitizer reports in the stack's logs after
the ASan/UBSan e2e pass: prints each one that counts and exits 1 if any.

Every AddressSanitizer error and every UBSan "runtime error:" counts. A
LeakSanitizer report counts unless each of its blocks is nng 1.5.2's own
leak of a listener re-opened by lib/listen_keeper.c: the connections that
finished their handshake after nng's accept loop had died, and their
transport endpoint, which tcptran_ep_close() closes and nothing frees. Such
a block is allocated by libnng itself (the allocator's caller is a frame of
libnng.so.1), every frame of it is libnng's (or the thread's start) up to a
frame of lib/listen_keeper.c (its nng_listen) if any, and its log has the
keeper's re-opening line. Anything else —
a message shop allocated through nng and lost, any frame of shop's own —
counts.

Usage: tests/sanitizer_reports.py LOG...
"""

import re
import sys

HEAL_LINE = "accepts no new connection"
ERROR_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:")
BLOCK_RE = re.compile(r"^(Direct|Indirect) leak of ")
FRAME_RE = re.compile(r"^\s*#(\d+) ")
# Frames a block of nng's listener leak may hold below lib/listen_keeper.c.
NNG_RE = re.compile(r"libnng\.so|start_thread|__interceptor_|asan_malloc|clone")


def leak_blocks(lines, start):
    """The leak blocks of the LeakSanitizer report starting at lines[start]:
    lists of frame lines, up to the SUMMARY line."""
    blocks, cur = [], None
    for line in lines[start + 1:]:
        if line.startswith("SUMMARY:"):
            break
        if BLOCK_RE.match(line):
            cur = []
            blocks.append(cur)
        elif cur is not None and FRAME_RE.match(line):
            cur.append(line.strip())
    return blocks


def nng_listener_leak(block):
    frames = sorted((int(FRAME_RE.match(f).group(1)), f) for f in block)
    if len(frames) < 2 or "libnng.so" not in frames[1][1]:
        return False
    for _, f in frames:
        if "listen_keeper.c" in f:
            return True  # nng_listen's allocation, whoever called the keeper
        if not NNG_RE.search(f):
            return False
    return True


def main(paths):
    bad = 0
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        healed = any(HEAL_LINE in line for line in lines)
        for i, line in enumerate(lines):
            if not ERROR_RE.search(line):
                continue
            if "LeakSanitizer" in line and healed:
                blocks = leak_blocks(lines, i)
                if blocks and all(nng_listener_leak(b) for b in blocks):
                    print("%s: nng 1.5.2's leak of a re-opened listener (%d blocks, "
                          "lib/listen_keeper.h): not counted" % (path, len(blocks)))
                    continue
            bad += 1
            print("%s: sanitizer report:" % path, file=sys.stderr)
            print("\n".join(lines[i:i + 40]), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
