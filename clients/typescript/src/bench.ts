// bench.ts -- calls per second of this client against one service through
// the registry: N calls in flight at once (N workers, one connection each),
// for S seconds, after a 1 s warm-up. clients/typescript/bench/pyclient_bench.py
// is the same loop for the Python client, with the same arguments.
//
//   node clients/typescript/dist/src/bench.js --registry tcp://127.0.0.1:7101 --inflight 64 --seconds 5
//
// Prints one JSON line: {"client": "typescript", "inflight", "seconds", "calls", "errors", "calls_per_s"}.

import { parseArgs } from "node:util";

import { ShopClient } from "./client.js";
import { LIST_PRODUCTS } from "./methods.js";

const { values } = parseArgs({
  options: {
    registry: { type: "string", default: process.env.SHOP_REGISTRY_LOOKUP_URL ?? "tcp://127.0.0.1:7101" },
    inflight: { type: "string", default: "1" },
    seconds: { type: "string", default: "5" },
    "page-size": { type: "string", default: "1" },
  },
});
const inflight = Number(values.inflight);
const seconds = Number(values.seconds);
const pageSize = Number(values["page-size"]);

const shop = new ShopClient(values.registry, { connections: inflight, timeoutMs: 5000 });
let calls = 0;
let errors = 0;
let counting = false;

async function worker(until: number): Promise<void> {
  while (performance.now() < until) {
    try {
      await shop.call(LIST_PRODUCTS, { pageSize });
      if (counting) calls++;
    } catch {
      if (counting) errors++;
    }
  }
}

const warm = performance.now() + 1000;
await Promise.all(Array.from({ length: inflight }, () => worker(warm)));
counting = true;
const t0 = performance.now();
await Promise.all(Array.from({ length: inflight }, () => worker(t0 + seconds * 1000)));
const took = (performance.now() - t0) / 1000;
shop.close();
console.log(JSON.stringify({
  client: "typescript", node: process.versions.node, inflight, seconds: Number(took.toFixed(2)), calls, errors,
  calls_per_s: Math.round(calls / took),
}));
