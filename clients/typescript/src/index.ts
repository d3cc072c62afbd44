// shop-client (TypeScript) -- a Node.js client of the shop services over nng
// REQ/REP, spoken on Node's `net` (no native addon), with the committed
// stubs of gen/typescript/ (@bufbuild/protobuf).
//
//     import { ShopClient, NotFound } from "./index.js";
//
//     const shop = new ShopClient("tcp://127.0.0.1:7101");
//     try {
//       const me = await shop.signIn("kim", "correct horse");
//       for await (const p of shop.iterProducts()) console.log(p.id, p.name, p.supplyPrice);
//       await shop.createOrder([123456789n], { userId: me.userId });
//     } catch (e) {
//       if (e instanceof NotFound) console.log(e.reason, e.metadata); // PRODUCT_NOT_FOUND { product_id: '123456789' }
//     } finally {
//       shop.close();
//     }

import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { ScalarType } from "@bufbuild/protobuf";

export { ShopClient } from "./client.js";
export type { ClientCallOptions, ShopClientOptions } from "./client.js";
export { DEFAULT_REGISTRY_URL, Registry, View, pick, seededRng } from "./discovery.js";
export type { Instance, Lookup, LookupOptions, Rng, ViewOptions } from "./discovery.js";
export * from "./errors.js";
export { RpcConnection, decodeReply, encodeRequest, newTraceparent } from "./rpc.js";
export type { CallOptions, Reply } from "./rpc.js";
export { CONNECT_TIMEOUT_MS, MAX_REPLY, ReqSocket, parseUrl } from "./sp.js";
export * as methods from "./methods.js";
export type { Method } from "./methods.js";

/** A message as plain values, every field present (defaults included), keyed
 * by the proto field names, 64-bit integers as numbers: the shape of the
 * gateway's JSON. (Numbers are exact up to 2^53; read the message itself for
 * larger ids.) */
export function toDict<S extends DescMessage>(schema: S, msg: MessageShape<S>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const m = msg as unknown as Record<string, unknown>;
  const conv = (v: unknown, scalar: ScalarType | undefined, sub: DescMessage | undefined): unknown => {
    if (sub) return v === undefined ? null : toDict(sub, v as MessageShape<DescMessage>);
    if (typeof v === "bigint") return Number(v);
    if (scalar === ScalarType.BYTES && v instanceof Uint8Array) return Buffer.from(v).toString("base64");
    return v;
  };
  for (const f of schema.fields) {
    const v = m[f.localName];
    switch (f.fieldKind) {
      case "list":
        out[f.name] = (v as unknown[]).map((x) => conv(x, f.scalar, f.message));
        break;
      case "map": {
        const o: Record<string, unknown> = {};
        for (const [k, x] of Object.entries(v as Record<string, unknown>)) o[k] = conv(x, f.scalar, f.message);
        out[f.name] = o;
        break;
      }
      case "message":
        out[f.name] = conv(v, undefined, f.message);
        break;
      default:
        out[f.name] = conv(v, f.fieldKind === "scalar" ? f.scalar : undefined, undefined);
    }
  }
  return out;
}
