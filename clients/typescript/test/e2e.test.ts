// e2e.test.ts -- the Node.js client against the running test stack over nng,
// and against fake SP peers on loopback that answer wrongly or not at all;
// what it gets over RPC is compared with what the gateway answers over HTTP.
// The cases of tests/e2e/test_pyclient.py, for this client. Run by
// tests/e2e/test_tsclient.py (part of ./shop test), which builds dist/ and
// passes SHOP_PORT_OFFSET and SHOP_VAR.

import * as assert from "node:assert/strict";
import { createHmac, randomBytes, randomInt, timingSafeEqual } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";

import { type GetOrderRequest, OrderSchema } from "#shop/v1/order_pb.js";
import {
  ListProductsRequestSchema, ListProductsResponseSchema, type Product, ProductSchema,
} from "#shop/v1/product_pb.js";
import { AdvertSchema, InstancesSchema, LookupSchema } from "#shop/v1/registry_pb.js";
import { RpcRequestSchema, RpcResponseSchema } from "#shop/v1/rpc_pb.js";
import * as shop from "../src/index.js";
import { methods } from "../src/index.js";
import {
  FakePeer, REGISTRY_URL, REP_HELLO, type Script, VAR, answerEach, deadUrl, drop, fakeRegistry, frame,
  mute, okReply, request, silent, sleep, stackEnv, urlOf,
} from "./fakes.js";

const PASSWORD = "password-123";
const TRACEPARENT_RE = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/;

function client(opts: shop.ShopClientOptions = {}): shop.ShopClient {
  return new shop.ShopClient(REGISTRY_URL, opts);
}

/** The error fn's promise rejected with, checked to be a cls. */
async function rejects<E extends Error>(cls: abstract new (...a: never[]) => E, fn: () => Promise<unknown>): Promise<E> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof cls, `want ${cls.name}, got ${(e as Error)?.constructor?.name}: ${String(e)}`);
    return e;
  }
  assert.fail(`want ${cls.name}, the call succeeded`);
}

function freshName(tag: string): string {
  return `ts-${tag}-${randomBytes(4).toString("hex")}`;
}

function b64url(s: string): Buffer {
  return Buffer.from(s, "base64url");
}

function bearer(token: string): Record<string, string> {
  return { Authorization: `Bearer ${token}` };
}

/** An HS256 JWT with the contract's claims, signed with the stack's secret. */
function checkJwt(token: string, userId: bigint, name: string): Record<string, unknown> {
  const parts = token.split(".");
  assert.equal(parts.length, 3, `token is not three JWT segments: ${token.slice(0, 80)}`);
  const [h, c, s] = parts as [string, string, string];
  assert.equal(JSON.parse(b64url(h).toString()).alg, "HS256");
  const claims = JSON.parse(b64url(c).toString()) as Record<string, unknown>;
  assert.equal(claims.iss, "shop-auth");
  assert.equal(claims.sub, String(userId));
  assert.equal(claims.name, name);
  assert.equal(Number(claims.exp) - Number(claims.iat), 3600);
  const key = stackEnv().SHOP_JWT_SECRET;
  assert.ok(key, "no SHOP_JWT_SECRET in stack.env");
  const sig = createHmac("sha256", key).update(`${h}.${c}`).digest();
  assert.ok(timingSafeEqual(sig, b64url(s)), "signature not SHOP_JWT_SECRET's");
  return claims;
}

const users = new Map<string, { userId: bigint; token: string }>();
async function user(tag: string): Promise<{ userId: bigint; token: string }> {
  let u = users.get(tag);
  if (!u) {
    const c = client();
    try {
      const s = await c.signUp(freshName(tag), PASSWORD);
      u = { userId: s.userId, token: s.accessToken };
      users.set(tag, u);
    } finally {
      c.close();
    }
  }
  return u;
}

let made: Product[] = [];
async function products(): Promise<[Product, Product]> {
  if (made.length === 0) {
    const c = client();
    try {
      made = [await c.createProduct(`TS pen ${randomBytes(3).toString("hex")}`, 900),
        await c.createProduct(`TS lamp ${randomBytes(3).toString("hex")}`, 45000)];
    } finally {
      c.close();
    }
  }
  return made as [Product, Product];
}

function listCall(url: string, opts: shop.CallOptions = {}): Promise<shop.Reply<shop.Reply<never>["message"]>> {
  const c = new shop.RpcConnection(url);
  return c.call(methods.LIST_PRODUCTS.path, ListProductsRequestSchema, { pageSize: 1 }, ListProductsResponseSchema,
    { timeoutMs: 1000, ...opts }).finally(() => c.close()) as never;
}

function orderLogLines(traceId: string, limitMs = 3000): Promise<Array<Record<string, unknown>>> {
  const deadline = Date.now() + limitMs;
  return (async () => {
    for (;;) {
      const text = fs.readFileSync(path.join(VAR, "log", "order.log"), "utf8");
      const lines = text.split("\n").filter((l) => l.includes(traceId)).map((l) => JSON.parse(l) as Record<string, unknown>);
      if (lines.length || Date.now() > deadline) return lines;
      await sleep(50);
    }
  })();
}

// ------------------------------------------------------------------ cases

test("tsclient discovers every service through the registry", async () => {
  const c = client();
  try {
    const { instances, revision } = await c.lookup();
    assert.ok(revision > 0n);
    const byName = new Map(instances.map((i) => [i.instance, i]));
    for (const name of ["auth", "product-a", "product-b", "order"]) {
      const i = byName.get(name);
      assert.ok(i, `lookup lists ${[...byName.keys()]}, not ${name}`);
      assert.equal(i.rpcUrl, urlOf(name));
      assert.ok(i.healthy && i.service === name.split("-")[0], `advert ${JSON.stringify(i, (_, v) => typeof v === "bigint" ? String(v) : v)}`);
    }
    assert.equal(byName.get("product-a")?.weight, 70);
    assert.equal(byName.get("product-b")?.weight, 30);
    const prods = await c.lookup("product");
    assert.deepEqual(prods.instances.map((i) => i.instance).sort(), ["product-a", "product-b"]);
    assert.deepEqual((await c.lookup("no-such-service")).instances, []);
    const nowhere: shop.Method<typeof ListProductsRequestSchema, typeof ListProductsResponseSchema> = {
      path: "/shop.v1.Nowhere/Call", service: "no-such-service", input: ListProductsRequestSchema,
      output: ListProductsResponseSchema, idempotent: true,
    };
    const e = await rejects(shop.NoInstance, () => c.call(nowhere, {}));
    assert.equal(e.service, "no-such-service");
  } finally {
    c.close();
  }
});

test("tsclient balances products 70:30 by weight", async () => {
  const n = 400;
  const counts: Record<string, number> = {};
  const c = client({ rng: shop.seededRng(8) });
  try {
    for (let i = 0; i < n; i++) {
      const r = await c.call(methods.LIST_PRODUCTS, { pageSize: 1 });
      assert.equal(r.url, urlOf(r.instance));
      counts[r.instance] = (counts[r.instance] ?? 0) + 1;
    }
  } finally {
    c.close();
  }
  assert.deepEqual(Object.keys(counts).sort(), ["product-a", "product-b"]);
  const share = (counts["product-a"] ?? 0) / n;
  assert.ok(share >= 0.62 && share <= 0.78, `product-a served ${share} of ${n} calls, want about 0.70`);
});

test("tsclient sign-up and sign-in give tokens the gateway accepts", async () => {
  const name = freshName("kim");
  const c = client();
  try {
    const up = await c.signUp(name, PASSWORD);
    assert.ok(up.userId > 0n && up.name === name && up.tokenType === "Bearer" && up.expiresIn === 3600n);
    checkJwt(up.accessToken, up.userId, name);
    assert.equal((await request("GET", "/products?page_size=1", undefined, bearer(up.accessToken))).status, 200);
    const inn = await c.signIn(name, PASSWORD);
    assert.equal(inn.userId, up.userId);
    checkJwt(inn.accessToken, up.userId, name);
    assert.notEqual(inn.accessToken, up.accessToken);
    assert.equal((await request("GET", "/products?page_size=1", undefined, bearer(inn.accessToken))).status, 200);

    let e: shop.RpcError = await rejects(shop.AlreadyExists, () => c.signUp(name, PASSWORD));
    assert.ok(e.code === 6 && e.reason === "NAME_TAKEN", String(e));
    e = await rejects(shop.Unauthenticated, () => c.signIn(name, "wrong-password-1"));
    assert.ok(e.code === 16 && e.reason === "INVALID_CREDENTIALS", String(e));
    e = await rejects(shop.InvalidArgument, () => c.signUp(freshName("short"), "short"));
    assert.equal(e.code, 3);
    const r = await request("POST", "/auth/sign-in", { name, password: PASSWORD });
    assert.equal(r.status, 200);
    assert.equal(BigInt(JSON.parse(r.body).user_id), up.userId);
  } finally {
    c.close();
  }
});

test("tsclient creates and lists products as the gateway does", async () => {
  const mine = await products();
  const { token } = await user("lister");
  const c = client();
  const seen = new Map<bigint, Product>();
  try {
    const page = await c.listProducts(1);
    assert.ok(page.products.length === 1 && page.nextPageToken);
    for await (const p of c.iterProducts(500)) seen.set(p.id, p);
    const ids = [...seen.keys()];
    assert.deepEqual(ids, [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), "not ordered by id");
    for (const p of mine) {
      assert.ok(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(p.createdAt), p.createdAt);
      assert.deepEqual(seen.get(p.id), p);
    }
    const e = await rejects(shop.InvalidArgument, () => c.createProduct("Bad price", -1));
    assert.equal(e.metadata.field, "supply_price");
  } finally {
    c.close();
  }
  const rest = new Map<number, unknown>();
  let tok = "";
  for (;;) {
    const r = await request("GET", `/products?page_size=1000${tok ? "&page_token=" + tok : ""}`, undefined, bearer(token));
    assert.equal(r.status, 200);
    const doc = JSON.parse(r.body) as { products: Array<{ id: number }>; next_page_token: string };
    for (const p of doc.products) rest.set(p.id, p);
    tok = doc.next_page_token;
    if (!tok) break;
  }
  for (const p of mine) assert.deepEqual(rest.get(Number(p.id)), shop.toDict(ProductSchema, p));
});

test("tsclient order matches what the gateway answers", async () => {
  const [a, b] = await products();
  const { userId: uid, token } = await user("buyer");
  const { userId: other } = await user("other");
  const c = client();
  try {
    const o = await c.createOrder([a.id, b.id], { userId: uid });
    assert.ok(o.id > 0n && o.userId === uid);
    const want = [[a.id, a.name, a.supplyPrice], [b.id, b.name, b.supplyPrice]];
    assert.deepEqual(o.items.map((i) => [i.productId, i.name, i.supplyPrice]), want);
    assert.equal(o.totalSupplyPrice, a.supplyPrice + b.supplyPrice);
    const o2 = await c.addOrderItem(o.id, a.id, { userId: uid });
    want.push([a.id, a.name, a.supplyPrice]);
    assert.deepEqual(o2.items.map((i) => [i.productId, i.name, i.supplyPrice]), want);
    const r = await c.call(methods.GET_ORDER, { orderId: o.id } satisfies Partial<GetOrderRequest>, { userId: uid });
    assert.deepEqual(r.message, o2);
    assert.ok(["HIT", "MISS", "BYPASS"].includes(r.metadata.cache ?? ""), JSON.stringify(r.metadata));
    const got = await c.getOrder(o.id, { userId: uid });
    const restR = await request("GET", `/orders/${o.id}`, undefined, bearer(token));
    assert.equal(restR.status, 200);
    assert.deepEqual(JSON.parse(restR.body), shop.toDict(OrderSchema, got));

    // The envelope's traceparent reaches the service: its log line carries the trace id.
    const traceId = randomBytes(16).toString("hex");
    const traced = (await c.call(methods.CREATE_ORDER, { productIds: [b.id] },
      { userId: uid, traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-00` })).message;
    const lines = await orderLogLines(traceId);
    assert.ok(lines.some((l) => String(l.msg ?? "").includes(`order ${traced.id} created`)),
      `order.log has no line of trace ${traceId} for order ${traced.id}`);

    let e: shop.RpcError = await rejects(shop.NotFound, () => c.getOrder(o.id, { userId: other }));
    assert.equal(e.reason, "ORDER_NOT_FOUND");
    assert.equal(e.instance, "order");
    e = await rejects(shop.Unauthenticated, () => c.getOrder(o.id, { userId: 0 }));
    assert.equal(e.code, 16);
  } finally {
    c.close();
  }
});

test("tsclient unknown product is PRODUCT_NOT_FOUND with its id in metadata", async () => {
  const [a] = await products();
  const { userId: uid, token } = await user("buyer");
  const missing = (1n << 62n) + BigInt(randomInt(1 << 30));
  const c = client();
  try {
    let e = await rejects(shop.NotFound, () => c.createOrder([a.id, missing], { userId: uid }));
    assert.ok(e.code === 5 && e.reason === "PRODUCT_NOT_FOUND" && e.metadata.product_id === String(missing), String(e));
    assert.equal(e.dependencyFailed, false);
    const o = await c.createOrder([a.id], { userId: uid });
    e = await rejects(shop.NotFound, () => c.addOrderItem(o.id, missing, { userId: uid }));
    assert.equal(e.reason, "PRODUCT_NOT_FOUND");
    assert.equal((await c.getOrder(o.id, { userId: uid })).items.length, 1, "the failed add changed it");
  } finally {
    c.close();
  }
  const r = await request("POST", "/orders", { product_ids: [Number(a.id), missing.toString()] }, bearer(token));
  // The gateway's own answer for the same order (its JSON cannot carry the
  // exact 2^62 id as a JS number, so only the code is compared).
  assert.ok(r.status === 404 || r.status === 400, `POST /orders -> ${r.status}`);
});

test("tsclient passed deadline and unknown method are typed", async () => {
  const url = urlOf("product-a");
  const e = await rejects(shop.DeadlineExceeded, () => listCall(url, { deadlineUnixMs: Date.now() - 1000 }));
  assert.ok(e.code === 4 && e.reason === "DEADLINE_EXCEEDED" && shop.isTimeout(e), String(e));
  const c = new shop.RpcConnection(url);
  try {
    const u = await rejects(shop.Unimplemented, () => c.call("/shop.v1.ProductService/Nope",
      ListProductsRequestSchema, {}, ListProductsResponseSchema));
    assert.ok(u.code === 12 && u.reason === "UNIMPLEMENTED", String(u));
    const r = await c.call(methods.LIST_PRODUCTS.path, ListProductsRequestSchema, { pageSize: 1 }, ListProductsResponseSchema);
    assert.equal(r.message.products.length, 1);
  } finally {
    c.close();
  }
});

test("tsclient times out on a silent peer, then reconnects", async () => {
  const page = create(ListProductsResponseSchema, { products: [create(ProductSchema, { id: 7n, name: "x" })] });
  const peer = await FakePeer.start(silent, answerEach(okReply(toBinary(ListProductsResponseSchema, page))));
  const c = new shop.RpcConnection(peer.url);
  try {
    const t0 = performance.now();
    const sentMs = Date.now();
    const e = await rejects(shop.ShopTimeout, () => c.call(methods.LIST_PRODUCTS.path, ListProductsRequestSchema,
      { pageSize: 3 }, ListProductsResponseSchema, { timeoutMs: 500, callerUserId: 42 }));
    const took = performance.now() - t0;
    assert.ok(took >= 500 && took < 1200, `timed out after ${took} ms for a 500 ms timeout`);
    assert.ok(e.sent && e.name === "TimeoutError" && shop.isTimeout(e), String(e));
    // What went out is the contract's envelope.
    assert.equal(peer.seen.length, 1);
    const [rid, body] = peer.seen[0] as [Buffer, Buffer];
    assert.ok(((rid[0] as number) & 0x80) !== 0, `request id ${rid.toString("hex")} lacks the high bit`);
    const req = fromBinary(RpcRequestSchema, body);
    assert.equal(req.method, "/shop.v1.ProductService/ListProducts");
    assert.equal(fromBinary(ListProductsRequestSchema, req.payload).pageSize, 3);
    assert.equal(req.callerUserId, 42n);
    const d = Number(req.deadlineUnixMs) - sentMs;
    assert.ok(d >= 400 && d <= 700, `deadline ${d} ms after the call began`);
    assert.match(req.traceparent, TRACEPARENT_RE);
    // The next call reconnects and gets the second connection's answer.
    const r = await c.call(methods.LIST_PRODUCTS.path, ListProductsRequestSchema, {}, ListProductsResponseSchema,
      { timeoutMs: 2000 });
    assert.deepEqual(r.message, page);
    assert.equal(peer.seen.length, 2);
    assert.notDeepEqual(peer.seen[1]?.[0], rid);
    assert.deepEqual(peer.errors, []);
  } finally {
    c.close();
    await peer.close();
  }
  // A peer that accepts and never says a word: the handshake times out, nothing sent.
  const m = await FakePeer.start(mute);
  try {
    const t0 = performance.now();
    const e = await rejects(shop.ShopTimeout, () => listCall(m.url, { timeoutMs: 300 }));
    assert.ok(performance.now() - t0 < 1000 && !e.sent, `mute peer: ${e} sent=${e.sent}`);
  } finally {
    await m.close();
  }
});

test("tsclient AbortSignal cancels a call at once, AbortSignal.timeout is a ShopTimeout", async () => {
  const peer = await FakePeer.start(silent);
  try {
    const ac = new AbortController();
    const t0 = performance.now();
    setTimeout(() => ac.abort(new Error("user pressed stop")), 150);
    const e = await rejects(shop.Aborted, () => listCall(peer.url, { timeoutMs: 5000, signal: ac.signal }));
    const took = performance.now() - t0;
    assert.ok(took >= 140 && took < 800, `aborted after ${took} ms`);
    assert.ok(e.name === "AbortError" && e.sent && (e.reason as Error).message === "user pressed stop", String(e));
    const t1 = performance.now();
    const t = await rejects(shop.ShopTimeout, () => listCall(peer.url, { timeoutMs: 5000, signal: AbortSignal.timeout(200) }));
    assert.ok(performance.now() - t1 < 900 && !shop.isTimeout(new Error()) && shop.isTimeout(t), String(t));
    // An already aborted signal sends nothing.
    const before = peer.seen.length;
    await rejects(shop.Aborted, () => listCall(peer.url, { signal: AbortSignal.abort() }));
    assert.equal(peer.seen.length, before);
    // Through ShopClient too, for a call waiting on the registry's view.
    const reg = await fakeRegistry([{ service: "product", instance: "silent", rpcUrl: peer.url, weight: 1, healthy: true }]);
    const c = new shop.ShopClient(reg.url, { viewTtlMs: 60000, watch: false });
    try {
      const ac2 = new AbortController();
      setTimeout(() => ac2.abort(), 100);
      const a = await rejects(shop.Aborted, () => c.listProducts(1, "", { signal: ac2.signal }));
      assert.ok(a.sent, String(a));
    } finally {
      c.close();
      await reg.close();
    }
  } finally {
    await peer.close();
  }
});

test("tsclient rejects bad replies with a clear error", async () => {
  const notRep: Script = async (conn) => { conn.write(Buffer.from([0, 0x53, 0x50, 0, 0, 0x30, 0, 0])); await conn.closed(); };
  const notSp: Script = async (conn) => { conn.write(Buffer.from("HTTP/1.1 400 Bad Request\r\n\r\n")); await conn.closed(); };
  const cutShort: Script = async (conn) => {
    conn.write(REP_HELLO);
    await conn.hello();
    const [rid] = await conn.frame();
    const h = Buffer.alloc(8);
    h.writeBigUInt64BE(100n);
    conn.write(Buffer.concat([h, rid, Buffer.from([8])])); // 5 of 100 bytes, then EOF
    conn.sock.end();
  };
  const good = toBinary(RpcResponseSchema, create(RpcResponseSchema, { code: 0 }));
  const len = (n: bigint) => { const h = Buffer.alloc(8); h.writeBigUInt64BE(n); return h; };
  const cases: Array<[string, Script, abstract new (...a: never[]) => Error, string]> = [
    ["not a REP peer", notRep, shop.ProtocolError, "REP"],
    ["not an SP peer", notSp, shop.ProtocolError, "not an SP peer"],
    ["short frame", answerEach(() => Buffer.concat([len(2n), Buffer.from([0x80, 0])])), shop.ProtocolError, "shorter than a request id"],
    ["wrong request id", answerEach((rid) => frame(Buffer.concat([Buffer.from([rid[0] as number, rid[1] as number, rid[2] as number, (rid[3] as number) ^ 1]), good]))),
      shop.ProtocolError, "request id"],
    ["2^63 bytes announced", answerEach((rid) => Buffer.concat([len(1n << 63n), rid])), shop.ProtocolError, "announces"],
    ["garbage RpcResponse", answerEach((rid) => frame(Buffer.concat([rid, Buffer.from([0xff, 0xff, 0xff, 0xff])]))),
      shop.ProtocolError, "RpcResponse"],
    ["garbage payload", answerEach(okReply(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff]))), shop.ProtocolError, "ListProductsResponse"],
    ["closed mid-frame", cutShort, shop.ConnectionLost, "closed"],
  ];
  for (const [what, script, cls, words] of cases) {
    const peer = await FakePeer.start(script);
    const t0 = performance.now();
    let e: shop.ShopError;
    try {
      e = await rejects(shop.ShopError, () => listCall(peer.url, { timeoutMs: 3000 }));
    } finally {
      await peer.close();
    }
    const took = performance.now() - t0;
    assert.ok(e instanceof cls, `${what}: want ${cls.name}, got ${e.constructor.name}: ${e}`);
    assert.ok(e.message.includes(words), `${what}: message '${e.message}' does not say '${words}'`);
    assert.ok(took < 1000, `${what}: took ${took} ms`);
    assert.deepEqual(peer.errors, [], what);
  }
  // Zero bytes are a valid RpcResponse (code 0) with an empty payload.
  const peer = await FakePeer.start(answerEach((rid) => frame(rid)));
  try {
    const r = await listCall(peer.url);
    assert.deepEqual(r.message, create(ListProductsResponseSchema));
  } finally {
    await peer.close();
  }
});

test("tsclient surfaces dependencyFailed", async () => {
  const texts: string[] = [];
  for (const dep of [true, false]) {
    const peer = await FakePeer.start(answerEach((rid) => frame(Buffer.concat([rid, toBinary(RpcResponseSchema,
      create(RpcResponseSchema, { code: 14, reason: dep ? "PRODUCT_SERVICE_UNAVAILABLE" : "DATABASE_UNAVAILABLE",
        message: "x", dependencyFailed: dep }))]))));
    try {
      const e = await rejects(shop.Unavailable, () => listCall(peer.url, { timeoutMs: 3000 }));
      assert.equal(e.dependencyFailed, dep);
      texts.push(e.message);
    } finally {
      await peer.close();
    }
  }
  assert.ok(texts[0]?.includes("a dependency failed") && !texts[1]?.includes("a dependency failed"), texts.join(" | "));
});

test("tsclient keeps working on its last view when the registry goes", async () => {
  const real = client();
  const found = await real.lookup("product").finally(() => real.close());
  const bytes = toBinary(InstancesSchema, create(InstancesSchema, {
    instances: found.instances.map((i) => create(AdvertSchema, { service: i.service, instance: i.instance,
      rpcUrl: i.rpcUrl, weight: i.weight, healthy: i.healthy })),
    revision: found.revision,
  }));
  const fake = await FakePeer.start(answerEach((rid) => frame(Buffer.concat([rid, bytes]))));
  const c = new shop.ShopClient(fake.url, { viewTtlMs: 0, watch: false });
  try {
    const first = await c.listProducts(1);
    assert.equal(first.products.length, 1);
    assert.equal(fake.seen.length, 1);
    assert.equal(fromBinary(LookupSchema, fake.seen[0]?.[1] as Buffer).service, "product");
    await fake.close(); // the registry is gone: connections are refused from now on
    const again = await c.listProducts(1);
    assert.deepEqual(again.products, first.products);
    assert.ok(c.view.lastError instanceof shop.DiscoveryError, `no lookup failed? ${c.view.lastError}`);
    const e = await rejects(shop.DiscoveryError, () => c.signIn("nobody", PASSWORD));
    assert.ok(e.cause instanceof shop.Unreachable, `cause ${String(e.cause)}`);
  } finally {
    c.close();
    await fake.close();
  }
});

test("tsclient long-polls the registry: held at its revision, and a change reaches the view at once", async () => {
  // The real registry holds a lookup at its current revision for wait_ms.
  const reg = new shop.Registry(REGISTRY_URL);
  try {
    const { revision } = await reg.lookup("product");
    const t0 = performance.now();
    const held = await reg.lookup("product", { waitRevision: revision, waitMs: 800 });
    const took = performance.now() - t0;
    assert.ok(held.revision !== revision || (took >= 700 && took < 2500), `held ${took} ms at revision ${revision}`);
    const t1 = performance.now();
    await reg.lookup("product", { waitRevision: revision + 1000n, waitMs: 5000 });
    assert.ok(performance.now() - t1 < 1000, "a foreign revision was held");
  } finally {
    reg.close();
  }
  // A fake registry: the first answer names a dead instance (revision 1);
  // it holds the long-poll 300 ms, then answers revision 2 with product-a.
  const dead = await deadUrl();
  const rev1 = toBinary(InstancesSchema, create(InstancesSchema, { revision: 1n, instances: [
    create(AdvertSchema, { service: "product", instance: "dead", rpcUrl: dead, weight: 1, healthy: true })] }));
  const rev2 = toBinary(InstancesSchema, create(InstancesSchema, { revision: 2n, instances: [
    create(AdvertSchema, { service: "product", instance: "product-a", rpcUrl: urlOf("product-a"), weight: 1, healthy: true })] }));
  const waits: Array<[bigint, number]> = [];
  const fake = await FakePeer.start(answerEach(async (rid, body) => {
    const l = fromBinary(LookupSchema, body);
    waits.push([l.waitRevision, l.waitMs]);
    if (l.waitRevision === 1n && l.waitMs > 0) {
      await sleep(300);
      return frame(Buffer.concat([rid, rev2]));
    }
    if (l.waitRevision === 2n && l.waitMs > 0) await sleep(Math.min(l.waitMs, 1000)); // nothing changes
    return frame(Buffer.concat([rid, l.waitRevision === 0n ? rev1 : rev2]));
  }));
  const c = new shop.ShopClient(fake.url, { viewTtlMs: 600000 });
  try {
    assert.deepEqual((await c.instances("product")).map((i) => i.instance), ["dead"]);
    await sleep(600);
    // No lookup of its own (ttl 10 min): the watcher's answer changed the view.
    assert.deepEqual((await c.instances("product")).map((i) => i.instance), ["product-a"]);
    const r = await c.call(methods.LIST_PRODUCTS, { pageSize: 1 });
    assert.equal(r.instance, "product-a");
    assert.ok(waits.some(([rev, ms]) => rev === 1n && ms > 0), `lookups ${waits}`);
  } finally {
    c.close();
    await fake.close();
  }
});

test("tsclient retries only idempotent calls on another instance; a write is never resent", async () => {
  const real = { service: "product", instance: "product-a", rpcUrl: urlOf("product-a"), weight: 1, healthy: true };
  const bad = await FakePeer.start(drop);
  const name = `TS never ${randomBytes(4).toString("hex")}`;
  try {
    // Weighted 1000000 : 1, the dropping instance is always tried first.
    const reg = await fakeRegistry([{ service: "product", instance: "dropper", rpcUrl: bad.url, weight: 1000000, healthy: true }, real]);
    const c = new shop.ShopClient(reg.url, { viewTtlMs: 60000, rng: shop.seededRng(1), watch: false });
    try {
      const r = await c.call(methods.LIST_PRODUCTS, { pageSize: 1 });
      assert.equal(r.instance, "product-a");
      assert.equal(bad.seen.length, 1, "ListProducts: one dropped, then another instance");
      const e = await rejects(shop.ConnectionLost, () => c.createProduct(name, 1));
      assert.ok(e.sent, `CreateProduct: ${e}`);
      assert.equal(bad.seen.length, 2, "CreateProduct went to the dropper once");
      assert.deepEqual(bad.errors, []);
    } finally {
      c.close();
      await reg.close();
    }
  } finally {
    await bad.close();
  }
  const c = client();
  try {
    for await (const p of c.iterProducts(1000)) assert.notEqual(p.name, name, "CreateProduct was sent again");
  } finally {
    c.close();
  }
  // An instance that refuses the connection got nothing: any call moves on.
  const dead = await deadUrl();
  let reg = await fakeRegistry([{ service: "product", instance: "dead", rpcUrl: dead, weight: 1000000, healthy: true }, real]);
  let c2 = new shop.ShopClient(reg.url, { viewTtlMs: 60000, rng: shop.seededRng(1), watch: false });
  try {
    const p = await c2.createProduct(`TS moved on ${randomBytes(4).toString("hex")}`, 2);
    assert.ok(p.id > 0n);
  } finally {
    c2.close();
    await reg.close();
  }
  // Unhealthy or weight-0 instances are never chosen.
  reg = await fakeRegistry([{ service: "product", instance: "sick", rpcUrl: dead, weight: 100, healthy: false },
    { service: "product", instance: "zero", rpcUrl: dead, weight: 0, healthy: true }]);
  c2 = new shop.ShopClient(reg.url, { watch: false });
  try {
    await rejects(shop.NoInstance, () => c2.listProducts());
  } finally {
    c2.close();
    await reg.close();
  }
});

/** A REP peer that answers no request until `width` wait together (or 5 s pass). */
async function gatePeer(width: number, reply: (rid: Buffer) => Buffer): Promise<FakePeer & { most: () => number }> {
  let waiting = 0;
  let most = 0;
  const wake: Array<() => void> = [];
  const peer = await FakePeer.start(answerEach(async (rid) => {
    waiting++;
    most = Math.max(most, waiting);
    if (most >= width) wake.splice(0).forEach((w) => w());
    else await Promise.race([new Promise<void>((r) => wake.push(r)), sleep(5000)]);
    waiting--;
    return reply(rid);
  }));
  return Object.assign(peer, { most: () => most });
}

test("tsclient runs calls at once, one connection each, up to connections", async () => {
  const page = toBinary(ListProductsResponseSchema, create(ListProductsResponseSchema, {
    products: [create(ProductSchema, { id: 7n, name: "gate" })] }));
  let peer = await gatePeer(4, okReply(page));
  let reg = await fakeRegistry([{ service: "product", instance: "gate", rpcUrl: peer.url, weight: 100, healthy: true }]);
  let c = new shop.ShopClient(reg.url, { timeoutMs: 4000, viewTtlMs: 60000, watch: false });
  try {
    const t0 = performance.now();
    const names = await Promise.all([0, 1, 2, 3].map(() => c.listProducts(1).then((p) => p.products[0]?.name)));
    assert.deepEqual(names, ["gate", "gate", "gate", "gate"]);
    assert.ok(peer.most() === 4 && peer.conns.length === 4 && performance.now() - t0 < 4000,
      `${peer.most()} waited together on ${peer.conns.length} connections`);
    // The connections are kept: four more calls open none.
    await Promise.all([0, 1, 2, 3].map(() => c.listProducts(1)));
    assert.equal(peer.conns.length, 4);
  } finally {
    c.close();
    await reg.close();
    await peer.close();
  }
  // connections: 1 is one call at a time: the gate never opens, both time out.
  peer = await gatePeer(2, okReply(page));
  reg = await fakeRegistry([{ service: "product", instance: "gate", rpcUrl: peer.url, weight: 100, healthy: true }]);
  c = new shop.ShopClient(reg.url, { timeoutMs: 1000, viewTtlMs: 60000, connections: 1, watch: false });
  try {
    const got = await Promise.allSettled([c.listProducts(1), c.listProducts(1)]);
    for (const g of got) {
      assert.ok(g.status === "rejected" && g.reason instanceof shop.ShopTimeout, `connections 1: ${g.status}`);
    }
    assert.ok(peer.most() === 1 && peer.conns.length === 1, `${peer.most()} together on ${peer.conns.length}`);
  } finally {
    c.close();
    await reg.close();
    await peer.close();
  }
});
