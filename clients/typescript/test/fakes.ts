// fakes.ts -- what the end-to-end cases share: where the test stack is (the
// environment ./shop test and tests/e2e/run.py give), HTTP to the gateway,
// and fake SP peers on loopback that answer wrongly or not at all.

import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";

import { type Advert, AdvertSchema, InstancesSchema } from "#shop/v1/registry_pb.js";
import { RpcResponseSchema } from "#shop/v1/rpc_pb.js";

// dist/test/fakes.js -> the repository root
export const ROOT = process.env.SHOP_ROOT
  ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");
export const OFFSET = Number(process.env.SHOP_PORT_OFFSET ?? "10000");
export const VAR = process.env.SHOP_VAR ?? path.join(ROOT, "var", "test");
export const REGISTRY_URL = `tcp://127.0.0.1:${7101 + OFFSET}`;
export const GATEWAY_PORT = 8080 + OFFSET;
export const RPC_PORTS: Record<string, number> = {
  auth: 7201 + OFFSET, "product-a": 7211 + OFFSET, "product-b": 7212 + OFFSET, order: 7221 + OFFSET,
};

export function urlOf(instance: string): string {
  return `tcp://127.0.0.1:${RPC_PORTS[instance]}`;
}

export function stackEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(path.join(VAR, "stack.env"), "utf8").split("\n")) {
    const t = line.trim();
    const i = t.indexOf("=");
    if (t && !t.startsWith("#") && i > 0) out[t.slice(0, i)] = t.slice(i + 1);
  }
  return out;
}

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request to the test stack's gateway. */
export function request(method: string, pathname: string, body?: unknown,
  headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request({
      host: "127.0.0.1", port: GATEWAY_PORT, method, path: pathname, timeout: 10000,
      headers: { ...headers, ...(data ? { "Content-Type": "application/json", "Content-Length": data.length } : {}) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on("timeout", () => req.destroy(new Error("gateway timed out")));
    req.on("error", reject);
    req.end(data);
  });
}

// ------------------------------------------------------------ fake SP peers

export const REP_HELLO = Buffer.from([0, 0x53, 0x50, 0, 0, 0x31, 0, 0]);
export const REQ_HELLO = Buffer.from([0, 0x53, 0x50, 0, 0, 0x30, 0, 0]);

/** A connection of a fake peer, read a known number of bytes at a time. */
export class PeerConn {
  private buf = Buffer.alloc(0);
  private waiting: (() => void) | null = null;
  ended = false;
  constructor(readonly sock: net.Socket) {
    sock.on("data", (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.waiting?.();
    });
    const end = () => {
      this.ended = true;
      this.waiting?.();
    };
    sock.on("end", end);
    sock.on("close", end);
    sock.on("error", end);
  }

  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`closed after ${this.buf.length} of ${n} bytes`);
      await new Promise<void>((r) => { this.waiting = r; });
      this.waiting = null;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** The client's handshake, checked to be REQ's. */
  async hello(): Promise<void> {
    const h = await this.read(8);
    if (!h.equals(REQ_HELLO)) throw new Error(`client handshake ${h.toString("hex")}, want REQ's`);
  }

  /** [request id, body] of one frame. */
  async frame(): Promise<[Buffer, Buffer]> {
    const n = Number((await this.read(8)).readBigUInt64BE(0));
    const f = await this.read(n);
    return [f.subarray(0, 4), f.subarray(4)];
  }

  /** Resolves when the client hangs up. */
  async closed(): Promise<void> {
    while (!this.ended) {
      await new Promise<void>((r) => { this.waiting = r; });
      this.waiting = null;
    }
  }

  write(b: Uint8Array): void {
    this.sock.write(b);
  }
}

export type Script = (conn: PeerConn, peer: FakePeer) => Promise<void>;

/** A TCP listener on 127.0.0.1 whose successive connections are served by
 * the scripts (the last one serves every further connection); what a script
 * saw goes to peer.seen, what it threw to peer.errors. close() stops the
 * listener (later connects are refused). */
export class FakePeer {
  readonly seen: Array<[Buffer, Buffer]> = [];
  readonly errors: unknown[] = [];
  readonly conns: net.Socket[] = [];
  private readonly server: net.Server;
  url = "";
  private n = 0;

  private constructor(scripts: Script[]) {
    this.server = net.createServer((sock) => {
      this.conns.push(sock);
      const script = scripts[Math.min(this.n++, scripts.length - 1)] as Script;
      script(new PeerConn(sock), this).catch((e: unknown) => this.errors.push(e));
    });
  }

  static async start(...scripts: Script[]): Promise<FakePeer> {
    const p = new FakePeer(scripts);
    await new Promise<void>((r) => p.server.listen(0, "127.0.0.1", r));
    p.url = `tcp://127.0.0.1:${(p.server.address() as net.AddressInfo).port}`;
    return p;
  }

  close(): Promise<void> {
    for (const c of this.conns) c.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}

export function frame(data: Uint8Array): Buffer {
  const h = Buffer.alloc(8);
  h.writeBigUInt64BE(BigInt(data.length));
  return Buffer.concat([h, data]);
}

/** A script: handshake, answer each request with what replyFor gives (raw
 * bytes), until the client hangs up. */
export function answerEach(replyFor: (rid: Buffer, body: Buffer, peer: FakePeer) => Uint8Array | Promise<Uint8Array>): Script {
  return async (conn, peer) => {
    conn.write(REP_HELLO);
    await conn.hello();
    for (;;) {
      let f: [Buffer, Buffer];
      try {
        f = await conn.frame();
      } catch {
        return;
      }
      peer.seen.push(f);
      const out = await replyFor(f[0], f[1], peer);
      if (!conn.ended) conn.write(out);
    }
  };
}

/** Handshakes, reads the request, closes without an answer. */
export const drop: Script = async (conn, peer) => {
  conn.write(REP_HELLO);
  await conn.hello();
  peer.seen.push(await conn.frame());
  conn.sock.destroy();
};

/** Handshakes, reads the request, never answers. */
export const silent: Script = async (conn, peer) => {
  conn.write(REP_HELLO);
  await conn.hello();
  peer.seen.push(await conn.frame());
  await conn.closed();
};

/** Accepts and never says a word. */
export const mute: Script = async (conn) => {
  await conn.closed();
};

export function okReply(payload: Uint8Array): (rid: Buffer) => Buffer {
  return (rid) => frame(Buffer.concat([rid, toBinary(RpcResponseSchema, create(RpcResponseSchema, { payload }))]));
}

export type AdvertInit = Partial<Omit<Advert, "$typeName">>;

/** A fake registry answering every Lookup with these adverts at revision 1. */
export function fakeRegistry(adverts: AdvertInit[], revision = 1n): Promise<FakePeer> {
  const data = toBinary(InstancesSchema, create(InstancesSchema, {
    instances: adverts.map((a) => create(AdvertSchema, a)), revision,
  }));
  return FakePeer.start(answerEach((rid) => frame(Buffer.concat([rid, data]))));
}

/** A TCP port nothing listens on. */
export async function deadUrl(): Promise<string> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `tcp://127.0.0.1:${port}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
