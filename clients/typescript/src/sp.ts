// sp.ts -- the REQ side of nng's REQ/REP (Scalability Protocols) over TCP on
// Node's `net`: what libnng's req0 socket does on the wire, for one peer and
// one request at a time (no native addon).
//
// Wire format (nng's TCP transport, RFC "sp-tcp-mapping-01", and req0):
//   - on connect each side sends 8 bytes: "\0SP\0", its protocol number as
//     u16 big-endian (REQ 0x30, REP 0x31), then two zero bytes; each checks
//     that the other is the protocol it pairs with;
//   - then every message is a u64 big-endian length followed by that many
//     bytes: a request is a 4-byte request id whose high bit is set, then the
//     body; the REP side sends the id back in front of the reply body.
//
// Every wait is bounded by the caller's deadline and AbortSignal: connecting,
// the handshake, sending and each read. Any failure closes the connection, so
// a late answer to an abandoned request can never be taken for the answer of
// the next one; the next request reconnects.

import * as net from "node:net";
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";

import { Aborted, ConnectionLost, ProtocolError, ShopTimeout, TransportError, Unreachable } from "./errors.js";

export const PROTO_REQ = 0x30;
export const PROTO_REP = 0x31;
const HEADER = Buffer.from([0, 0x53, 0x50, 0]); // "\0SP\0"
/** Default bound on a reply body: the services refuse messages above 1 MiB
 * (SHOP_RPC_MAX_MSG), so nothing legitimate is larger. */
export const MAX_REPLY = 1024 * 1024;
/** Default bound on connecting plus the handshake, within the call's own
 * deadline: a peer that accepts and stays mute must leave a call the time to
 * try another instance. */
export const CONNECT_TIMEOUT_MS = 1000;

/** Milliseconds on the monotonic clock (performance.now()). */
export function now(): number {
  return performance.now();
}

/** What bounds one wait: an absolute deadline on now()'s clock, and the
 * caller's signal. background: the wait must not keep Node running (the
 * registry watcher). */
export interface Bound {
  deadline: number;
  signal?: AbortSignal | undefined;
  background?: boolean;
}

/** {host, port} of "tcp://127.0.0.1:7211"; "tcp://[::1]:7211" works too.
 * Only nng's tcp transports are spoken (tcp://, tcp4://, tcp6://). */
export function parseUrl(url: string): { host: string; port: number } {
  const m = /^(tcp|tcp4|tcp6):\/\/(.+):([0-9]{1,5})$/.exec(url);
  if (!m) {
    if (!/^(tcp|tcp4|tcp6):\/\//.test(url)) {
      throw new TypeError(`unsupported nng URL '${url}': want tcp://HOST:PORT`);
    }
    throw new TypeError(`bad nng URL '${url}': want tcp://HOST:PORT`);
  }
  let host = m[2] as string;
  const port = Number(m[3]);
  if (!(port > 0 && port < 65536)) throw new TypeError(`bad nng URL '${url}': want tcp://HOST:PORT`);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  return { host, port };
}

interface Waiter {
  n: number;
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}

/** One SP REQ connection to one REP peer at url; connects on first use.
 * One request at a time (RpcConnection and the client's pools see to it). */
export class ReqSocket {
  readonly url: string;
  private readonly addr: { host: string; port: number };
  private readonly maxReply: number;
  private readonly connectTimeoutMs: number;
  private sock: net.Socket | null = null;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false; // the peer's side ended (EOF, reset, error)
  private endErr: Error | null = null;
  private busy = false;
  private waiter: Waiter | null = null;
  // What the current request is doing, for the error messages.
  private what = "reply";
  private want = 0;
  private sent = false;
  private nextId: number;

  constructor(url: string, opts: { maxReply?: number; connectTimeoutMs?: number } = {}) {
    this.url = url;
    this.addr = parseUrl(url);
    this.maxReply = opts.maxReply ?? MAX_REPLY;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    // nng starts request ids at a random 31-bit value too.
    this.nextId = randomBytes(4).readUInt32BE(0) & 0x7fffffff;
  }

  get connected(): boolean {
    return this.sock !== null;
  }

  close(): void {
    const s = this.sock;
    this.sock = null;
    this.chunks = [];
    this.buffered = 0;
    this.ended = false;
    this.endErr = null;
    if (s) s.destroy();
    const w = this.waiter;
    this.waiter = null;
    if (w) w.reject(new ConnectionLost("connection closed", this.url, this.sent));
  }

  /** Sends body as one request; resolves to the reply body. Rejects with
   * Unreachable, ConnectionLost, ShopTimeout, Aborted or ProtocolError; on
   * any of them the connection is closed. */
  async request(body: Uint8Array, bound: Bound): Promise<Buffer> {
    if (this.busy) throw new Error("ReqSocket: one request at a time");
    const { signal } = bound;
    if (signal?.aborted) throw new Aborted(signal.reason, this.url, false);
    this.sent = false;
    this.what = "connect";
    this.want = 0;
    const left = bound.deadline - now();
    if (left <= 0) throw new ShopTimeout("deadline passed before connecting", this.url, false);
    this.busy = true;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const guard = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.timeoutError()), left);
      if (bound.background) timer.unref();
      if (signal) {
        onAbort = () => reject(new Aborted(signal.reason, this.url, this.sent));
        signal.addEventListener("abort", onAbort, { once: true });
      }
    });
    const exchange = this.exchange(body, bound);
    exchange.catch(() => {}); // when the guard wins, the exchange fails later: not unhandled
    try {
      return await Promise.race([exchange, guard]);
    } catch (e) {
      this.close();
      throw e;
    } finally {
      clearTimeout(timer);
      if (signal && onAbort) signal.removeEventListener("abort", onAbort);
      this.busy = false;
      if (this.sock && !bound.background) this.sock.unref(); // idle: keeps nothing alive
    }
  }

  private timeoutError(): ShopTimeout {
    if (this.what === "connect") return new ShopTimeout("connect timed out", this.url, false);
    return new ShopTimeout(
      `no complete ${this.what} within the deadline (${this.buffered} of ${this.want} bytes)`,
      this.url, this.sent);
  }

  private async exchange(body: Uint8Array, bound: Bound): Promise<Buffer> {
    // A pooled connection the peer closed (a restarted service), or one
    // holding bytes nobody asked for, is not written into.
    if (this.sock && (this.ended || this.buffered > 0)) this.close();
    if (!this.sock) {
      await this.connect(Math.min(bound.deadline, now() + this.connectTimeoutMs));
    }
    const sock = this.sock as net.Socket | null;
    if (!sock) throw new ConnectionLost("connection closed", this.url, false);
    if (bound.background) sock.unref();
    else sock.ref();
    const rid = (this.nextId | 0x80000000) >>> 0;
    this.nextId = (this.nextId + 1) & 0x7fffffff;
    const head = Buffer.allocUnsafe(12);
    head.writeBigUInt64BE(BigInt(4 + body.length), 0);
    head.writeUInt32BE(rid, 8);
    this.sent = true;
    this.what = "reply length";
    sock.write(Buffer.concat([head, body]));
    const lenBuf = await this.readExact(8);
    const length = lenBuf.readBigUInt64BE(0);
    if (length < 4n) {
      throw new ProtocolError(`reply frame of ${length} bytes is shorter than a request id`, this.url, true);
    }
    if (length - 4n > BigInt(this.maxReply)) {
      throw new ProtocolError(
        `reply frame announces ${length} bytes, more than the ${this.maxReply + 4} accepted`, this.url, true);
    }
    this.what = "reply frame";
    const frame = await this.readExact(Number(length));
    const got = frame.readUInt32BE(0);
    if (got !== rid) {
      throw new ProtocolError(
        `reply carries request id 0x${got.toString(16).padStart(8, "0")}, want 0x${rid.toString(16)}`,
        this.url, true);
    }
    return frame.subarray(4);
  }

  private connect(deadline: number): Promise<void> {
    const left = deadline - now();
    if (left <= 0) return Promise.reject(new ShopTimeout("deadline passed before connecting", this.url, false));
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (e?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (e) {
          if (this.sock === sock) this.close();
          else sock.destroy();
          reject(e);
        } else {
          resolve();
        }
      };
      const timer = setTimeout(() => {
        finish(new ShopTimeout(this.what === "connect" ? "connect timed out"
          : "no SP handshake within the connect timeout", this.url, false));
      }, left);
      timer.unref();
      const sock = net.connect({ host: this.addr.host, port: this.addr.port });
      this.sock = sock;
      this.ended = false;
      this.endErr = null;
      this.chunks = [];
      this.buffered = 0;
      // Events of a socket this object has since dropped are ignored.
      sock.on("data", (chunk: Buffer) => { if (this.sock === sock) this.onData(chunk); });
      sock.on("end", () => { if (this.sock === sock) this.onEnd(null); });
      sock.on("close", () => { if (this.sock === sock) this.onEnd(null); });
      sock.on("error", (e: NodeJS.ErrnoException) => {
        if (!settled && this.what === "connect") {
          finish(new Unreachable(`cannot connect: ${e.code ?? e.message}`, this.url));
          return;
        }
        if (this.sock === sock) this.onEnd(e);
      });
      sock.once("connect", () => {
        sock.setNoDelay(true);
        this.what = "SP handshake";
        this.want = 8;
        const hello = Buffer.alloc(8);
        HEADER.copy(hello, 0);
        hello.writeUInt16BE(PROTO_REQ, 4);
        sock.write(hello);
        this.readExact(8).then((peer) => {
          if (!peer.subarray(0, 4).equals(HEADER) || peer[6] !== 0 || peer[7] !== 0) {
            finish(new ProtocolError(`not an SP peer (handshake ${JSON.stringify(peer.toString("latin1"))})`,
              this.url, false));
            return;
          }
          const proto = peer.readUInt16BE(4);
          if (proto !== PROTO_REP) {
            finish(new ProtocolError(`peer speaks SP protocol 0x${proto.toString(16)}, want REP (0x31)`,
              this.url, false));
            return;
          }
          finish();
        }, () => finish(new Unreachable("connection closed during the SP handshake", this.url)));
      });
    });
  }

  private onData(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const w = this.waiter;
    if (w && this.buffered >= w.n) {
      this.waiter = null;
      w.resolve(this.take(w.n));
    }
  }

  private onEnd(e: Error | null): void {
    if (!this.ended || (e && !this.endErr)) this.endErr = e ?? this.endErr;
    this.ended = true;
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w.reject(this.lostError(e));
    }
  }

  private lostError(e: Error | null): TransportError {
    const code = (e as NodeJS.ErrnoException | null)?.code;
    if (e && code !== undefined) {
      return new ConnectionLost(`receive failed during the ${this.what}: ${code}`, this.url, this.sent);
    }
    return new ConnectionLost(
      `peer closed the connection during the ${this.what} (${this.buffered} of ${this.want} bytes)`,
      this.url, this.sent);
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.buffered);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }

  private readExact(n: number): Promise<Buffer> {
    this.want = n;
    if (this.buffered >= n) return Promise.resolve(this.take(n));
    if (this.ended) return Promise.reject(this.lostError(this.endErr));
    return new Promise<Buffer>((resolve, reject) => {
      this.waiter = { n, resolve, reject };
    });
  }
}
