// rpc.ts -- shop's RPC envelope (proto/shop/v1/rpc.proto) over one SP REQ
// connection: a request goes out as one serialized RpcRequest, the answer
// comes back as one serialized RpcResponse, whose non-zero code is thrown as
// the matching RpcError subclass.

import { randomBytes } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";

import { RpcRequestSchema, RpcResponseSchema } from "#shop/v1/rpc_pb.js";
import { Aborted, ProtocolError, ShopTimeout, rpcError } from "./errors.js";
import { type Bound, CONNECT_TIMEOUT_MS, MAX_REPLY, ReqSocket, now } from "./sp.js";

/** How long past the envelope's deadline we still wait for the answer: a
 * service that gives up at the deadline (DEADLINE_EXCEEDED, or UNAVAILABLE
 * from a slow upstream) needs a moment to say so, and its answer is more
 * useful than our own timeout. */
export const REPLY_GRACE_MS = 100;

/** A successful answer: the decoded response message, the RpcResponse
 * metadata (e.g. GetOrder's {cache: "HIT"}), the instance's URL and, when it
 * came through discovery, the instance's name. */
export interface Reply<T> {
  message: T;
  metadata: Record<string, string>;
  url: string;
  instance: string;
}

/** A fresh W3C traceparent (version 00) starting a trace of its own. */
export function newTraceparent(sampled = false): string {
  return `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-${sampled ? "01" : "00"}`;
}

/** The serialized RpcRequest for a serialized request payload. */
export function encodeRequest(method: string, payload: Uint8Array, deadlineUnixMs = 0n,
  callerUserId = 0n, traceparent = ""): Uint8Array {
  return toBinary(RpcRequestSchema, create(RpcRequestSchema, {
    method, payload, traceparent, deadlineUnixMs, callerUserId,
  }));
}

/** The Reply of a serialized RpcResponse with code 0; throws the RpcError
 * subclass of its code otherwise, ProtocolError when data (or the payload of
 * an OK answer) does not parse. Zero bytes are a valid RpcResponse: code 0
 * and an empty payload, i.e. a response with every field at its default. */
export function decodeReply<S extends DescMessage>(data: Uint8Array, schema: S, method = "",
  url = ""): Reply<MessageShape<S>> {
  let resp;
  try {
    resp = fromBinary(RpcResponseSchema, data);
  } catch (e) {
    throw new ProtocolError(`reply of ${data.length} bytes is not a serialized RpcResponse (${errText(e)})`,
      url, true);
  }
  const metadata = { ...resp.metadata };
  if (resp.code !== 0) {
    throw rpcError(resp.code, {
      reason: resp.reason, details: resp.message, metadata, method, instance: url,
      dependencyFailed: resp.dependencyFailed,
    });
  }
  let message: MessageShape<S>;
  try {
    message = fromBinary(schema, resp.payload);
  } catch (e) {
    throw new ProtocolError(`payload of ${resp.payload.length} bytes is not a serialized ${schema.typeName} (${errText(e)})`,
      url, true);
  }
  return { message, metadata, url, instance: "" };
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A counting semaphore whose waits are bounded: acquire() rejects with
 * ShopTimeout (sent false) at the bound's deadline, Aborted on its signal. */
export class Slots {
  private free: number;
  private readonly waiters: Array<() => void> = [];
  constructor(size: number, private readonly what: string, private readonly url: string) {
    this.free = size;
  }

  acquire(bound: Bound): Promise<void> {
    if (bound.signal?.aborted) return Promise.reject(new Aborted(bound.signal.reason, this.url, false));
    if (this.free > 0 && this.waiters.length === 0) {
      this.free--;
      return Promise.resolve();
    }
    const left = bound.deadline - now();
    if (left <= 0) return Promise.reject(new ShopTimeout(`${this.what} for the whole timeout`, this.url, false));
    return new Promise<void>((resolve, reject) => {
      const signal = bound.signal;
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const grant = () => {
        done();
        resolve();
      };
      const drop = (e: Error) => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        done();
        reject(e);
      };
      const onAbort = () => drop(new Aborted(signal?.reason, this.url, false));
      const timer = setTimeout(() => drop(new ShopTimeout(`${this.what} for the whole timeout`, this.url, false)), left);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(grant);
    });
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.free++;
  }
}

export interface CallOptions {
  /** Bounds the whole call on our side (ms; default 5000). The envelope's
   * deadline is now + timeoutMs unless deadlineUnixMs is given. */
  timeoutMs?: number;
  /** Sent as is (Unix ms); the service answers DEADLINE_EXCEEDED when it has
   * passed by the service's clock. */
  deadlineUnixMs?: bigint | number;
  callerUserId?: bigint | number;
  /** undefined starts a new, unsampled trace; "" sends none. */
  traceparent?: string;
  /** Cancels the call: it rejects with Aborted (ShopTimeout when the
   * signal's reason is a TimeoutError, as AbortSignal.timeout() gives). */
  signal?: AbortSignal;
}

/** Checks a timeout (ms) given by a caller. */
export function checkTimeout(ms: number): number {
  if (!(typeof ms === "number" && ms > 0 && Number.isFinite(ms))) {
    throw new RangeError("timeoutMs must be a positive number of milliseconds");
  }
  return ms;
}

/** An Aborted whose reason is a TimeoutError becomes a ShopTimeout. */
export function fromAbort(e: unknown): unknown {
  if (e instanceof Aborted && (e.reason as { name?: unknown } | undefined)?.name === "TimeoutError") {
    return new ShopTimeout("the caller's signal timed out", e.url, e.sent, { cause: e.reason });
  }
  return e;
}

/** Calls to one service instance (its rpc_url, e.g. "tcp://127.0.0.1:7211")
 * over one SP REQ connection, reconnecting as needed. Calls made at once
 * take turns, each waiting at most its own timeout.
 *
 *     const c = new RpcConnection("tcp://127.0.0.1:7211");
 *     const r = await c.call("/shop.v1.ProductService/ListProducts",
 *         ListProductsRequestSchema, { pageSize: 5 }, ListProductsResponseSchema);
 *     console.log(r.message.products);
 *     c.close();
 */
export class RpcConnection {
  readonly url: string;
  private readonly sock: ReqSocket;
  private readonly turn: Slots;

  constructor(url: string, opts: { maxReply?: number; connectTimeoutMs?: number } = {}) {
    this.url = url;
    this.sock = new ReqSocket(url, {
      maxReply: opts.maxReply ?? MAX_REPLY,
      connectTimeoutMs: opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
    });
    this.turn = new Slots(1, "connection busy with other calls", url);
  }

  close(): void {
    this.sock.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async call<I extends DescMessage, O extends DescMessage>(method: string, requestSchema: I,
    request: MessageInitShape<I>, responseSchema: O, opts: CallOptions = {}): Promise<Reply<MessageShape<O>>> {
    const timeoutMs = checkTimeout(opts.timeoutMs ?? 5000);
    const start = now();
    const deadlineUnixMs = opts.deadlineUnixMs !== undefined ? BigInt(opts.deadlineUnixMs)
      : BigInt(Date.now() + Math.max(1, Math.floor(timeoutMs)));
    const traceparent = opts.traceparent ?? newTraceparent(false);
    const payload = toBinary(requestSchema, create(requestSchema, request));
    const body = encodeRequest(method, payload, deadlineUnixMs, BigInt(opts.callerUserId ?? 0), traceparent);
    const bound: Bound = { deadline: start + timeoutMs + REPLY_GRACE_MS, signal: opts.signal };
    try {
      await this.turn.acquire({ deadline: start + timeoutMs, signal: opts.signal });
      let data: Buffer;
      try {
        data = await this.sock.request(body, bound);
      } finally {
        this.turn.release();
      }
      return decodeReply(data, responseSchema, method, this.url);
    } catch (e) {
      throw fromAbort(e);
    }
  }
}
