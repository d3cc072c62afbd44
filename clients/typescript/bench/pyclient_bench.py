#!/usr/bin/python3
"""pyclient_bench.py -- the loop of clients/typescript/src/bench.ts for the
Python client (clients/python/shop_client): N calls in flight at once (N
threads, one connection each) through the registry, for S seconds after a
1 s warm-up; the same arguments, the same JSON line.

  /usr/bin/python3 clients/typescript/bench/pyclient_bench.py --registry tcp://127.0.0.1:7101 --inflight 64 --seconds 5
"""

import argparse
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
sys.dont_write_bytecode = True

from shop_client import ShopClient, ShopError, stubs  # noqa: E402
from shop_client.stubs import product_pb2  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--registry", default=os.environ.get("SHOP_REGISTRY_LOOKUP_URL",
                                                         "tcp://127.0.0.1:7101"))
    ap.add_argument("--inflight", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--page-size", type=int, default=1)
    a = ap.parse_args()
    shop = ShopClient(a.registry, timeout=5.0, connections=a.inflight)
    req = product_pb2.ListProductsRequest(page_size=a.page_size)
    counts = {"calls": 0, "errors": 0}
    state = {"counting": False}
    lock = threading.Lock()

    def worker(until):
        calls = errors = 0
        while time.monotonic() < until:
            try:
                shop.call(stubs.LIST_PRODUCTS, req)
                calls += 1
            except ShopError:
                errors += 1
        if state["counting"]:
            with lock:
                counts["calls"] += calls
                counts["errors"] += errors

    def run(until):
        ts = [threading.Thread(target=worker, args=(until,)) for _ in range(a.inflight)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    run(time.monotonic() + 1.0)
    state["counting"] = True
    t0 = time.monotonic()
    run(t0 + a.seconds)
    took = time.monotonic() - t0
    shop.close()
    print(json.dumps({"client": "python", "python": sys.version.split()[0], "inflight": a.inflight,
                      "seconds": round(took, 2), "calls": counts["calls"],
                      "errors": counts["errors"], "calls_per_s": round(counts["calls"] / took)}))


if __name__ == "__main__":
    main()
