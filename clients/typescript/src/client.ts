// client.ts -- ShopClient: every shop service behind one object. Instances
// are found through the registry and chosen by weight; each call carries the
// contract's envelope (method, deadline, caller, trace context); errors come
// back as the typed errors of errors.ts.

import { create, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";

import type { SignInResponse, SignUpResponse } from "#shop/v1/auth_pb.js";
import type { Order } from "#shop/v1/order_pb.js";
import type { GetProductsResponse, ListProductsResponse, Product } from "#shop/v1/product_pb.js";
import { DEFAULT_REGISTRY_URL, type Instance, type Lookup, Registry, type Rng, View } from "./discovery.js";
import { Aborted, NoInstance, RpcError, ShopError, ShopTimeout, TransportError } from "./errors.js";
import * as M from "./methods.js";
import type { Method } from "./methods.js";
import { type Reply, REPLY_GRACE_MS, Slots, checkTimeout, decodeReply, encodeRequest, fromAbort, newTraceparent } from "./rpc.js";
import { type Bound, ReqSocket, now } from "./sp.js";

/** The connections of one client to one instance. Each serves one call at a
 * time (an SP REQ connection has one request in flight); a call takes an
 * idle one, or opens another while there are fewer than size, or waits for
 * one to come back. */
class Pool {
  private readonly idle: ReqSocket[] = []; // most recently used last: a hot connection is reused
  private readonly slots: Slots;
  private closed = false;
  constructor(readonly url: string, readonly size: number) {
    this.slots = new Slots(size, `all ${size} connections busy with other calls`, url);
  }

  async take(bound: Bound): Promise<ReqSocket> {
    await this.slots.acquire(bound);
    if (this.closed) {
      this.slots.release();
      throw new ShopError("ShopClient is closed");
    }
    return this.idle.pop() ?? new ReqSocket(this.url); // connects on its first request
  }

  give(sock: ReqSocket): void {
    if (this.closed) sock.close();
    else this.idle.push(sock);
    this.slots.release();
  }

  close(): void {
    this.closed = true;
    for (const s of this.idle.splice(0)) s.close(); // one in use is closed when its call ends
  }
}

export interface ShopClientOptions {
  /** Default ms per call, covering discovery, connecting, a retry and the
   * answer; sent to the service as the call's deadline (default 5000). */
  timeoutMs?: number;
  /** ms a registry answer is used before asking again, unless a long-poll
   * holds it (default 1000). While the registry is unreachable the last
   * answer stays in use. */
  viewTtlMs?: number;
  /** Keep a long-poll Lookup per service at the registry (default true). */
  watch?: boolean;
  /** [0, 1) numbers for the weighted choice (tests pass seededRng(n)). */
  rng?: Rng;
  /** The most connections kept to one instance, i.e. the most calls in
   * flight to it at once (default 8); calls beyond wait within their timeout. */
  connections?: number;
  /** Set the sampled flag of each call's new W3C trace (services with
   * SHOP_ZIPKIN_URL then record spans for it). */
  sampleTraces?: boolean;
}

export interface ClientCallOptions {
  /** The user the call acts for (the envelope's caller_user_id). */
  userId?: bigint | number;
  /** ms for this call (default the client's timeoutMs). */
  timeoutMs?: number;
  /** Cancels the call (Aborted; ShopTimeout for AbortSignal.timeout()). */
  signal?: AbortSignal;
  /** undefined starts a new trace; "" sends none. */
  traceparent?: string;
}

type UserCall = Omit<ClientCallOptions, "userId"> & { userId: bigint | number };

/** A client of the shop services over nng, for programs inside the network
 * (back office, batch jobs, tools).
 *
 *     const shop = new ShopClient("tcp://127.0.0.1:7101");
 *     const me = await shop.signUp("kim", "correct horse");
 *     const kb = await shop.createProduct("Keyboard", 30000);
 *     const order = await shop.createOrder([kb.id], { userId: me.userId });
 *     shop.close();
 *
 * Services trust the envelope's caller_user_id (the gateway fills it from a
 * verified token), so the order methods take the user they act for. Calls
 * made at once run at once, up to `connections` per instance. */
export class ShopClient {
  readonly timeoutMs: number;
  readonly connections: number;
  readonly sampleTraces: boolean;
  readonly registry: Registry;
  readonly view: View;
  private readonly pools = new Map<string, Pool>();
  private closed = false;

  constructor(registryUrl: string = DEFAULT_REGISTRY_URL, opts: ShopClientOptions = {}) {
    this.timeoutMs = checkTimeout(opts.timeoutMs ?? 5000);
    const connections = opts.connections ?? 8;
    if (!(Number.isInteger(connections) && connections >= 1)) throw new RangeError("connections must be at least 1");
    this.connections = connections;
    this.sampleTraces = opts.sampleTraces ?? false;
    this.registry = new Registry(registryUrl, Math.min(this.timeoutMs, 2000));
    this.view = new View(this.registry, {
      ...(opts.viewTtlMs !== undefined ? { ttlMs: opts.viewTtlMs } : {}),
      ...(opts.rng ? { rng: opts.rng } : {}),
      ...(opts.watch !== undefined ? { watch: opts.watch } : {}),
    });
  }

  /** Closes every connection (a call in flight keeps its own until it ends). */
  close(): void {
    this.closed = true;
    for (const p of this.pools.values()) p.close();
    this.pools.clear();
    this.view.close();
    this.registry.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // -- discovery

  /** Instances and revision straight from the registry; "" for every service. */
  lookup(service = ""): Promise<Lookup> {
    return this.registry.lookup(service);
  }

  /** The instances of service the client chooses among (its cached view). */
  instances(service: string): Promise<Instance[]> {
    return this.view.instances(service);
  }

  // -- the generic call

  /** Calls method (e.g. methods.LIST_PRODUCTS) with request on an instance
   * chosen by weight; resolves to a Reply. An idempotent method, or any call
   * that failed before a byte was sent, is retried once on another instance
   * within the same deadline; a call that changes something and may have
   * been sent is never sent twice. */
  async call<I extends DescMessage, O extends DescMessage>(method: Method<I, O>, request: MessageInitShape<I>,
    opts: ClientCallOptions = {}): Promise<Reply<MessageShape<O>>> {
    const timeoutMs = checkTimeout(opts.timeoutMs ?? this.timeoutMs);
    const { signal } = opts;
    const deadline = now() + timeoutMs;
    const deadlineUnixMs = BigInt(Date.now() + Math.max(1, Math.floor(timeoutMs)));
    const traceparent = opts.traceparent ?? newTraceparent(this.sampleTraces);
    const payload = toBinary(method.input, create(method.input, request));
    const body = encodeRequest(method.path, payload, deadlineUnixMs, BigInt(opts.userId ?? 0), traceparent);
    const bound: Bound = { deadline, signal };
    const tried: string[] = [];
    let last: TransportError | undefined;
    for (let attempt = 0; attempt < 2; attempt++) {
      if (signal?.aborted) throw fromAbort(new Aborted(signal.reason, "", false));
      if (deadline - now() <= 0) break;
      let inst: Instance;
      try {
        inst = await this.view.pick(method.service, tried, bound);
      } catch (e) {
        if (e instanceof NoInstance && last) throw last;
        throw fromAbort(e);
      }
      if (deadline - now() <= 0) break;
      try {
        const pool = this.pool(inst.rpcUrl);
        const sock = await pool.take(bound);
        let data: Buffer;
        try {
          data = await sock.request(body, { deadline: deadline + REPLY_GRACE_MS, signal });
        } finally {
          pool.give(sock);
        }
        const reply = decodeReply(data, method.output, method.path, inst.rpcUrl);
        reply.instance = inst.instance;
        return reply;
      } catch (e) {
        if (e instanceof TransportError && !(e instanceof Aborted)) {
          this.view.invalidate(method.service);
          tried.push(inst.rpcUrl);
          last = e;
          if (method.idempotent || !e.sent) continue;
          throw e;
        }
        if (e instanceof RpcError) e.instance = inst.instance;
        throw fromAbort(e);
      }
    }
    if (last) throw last;
    throw new ShopTimeout(`${method.path}: the ${timeoutMs} ms timeout passed`, "", false);
  }

  private pool(url: string): Pool {
    if (this.closed) throw new ShopError("ShopClient is closed");
    let p = this.pools.get(url);
    if (!p) {
      p = new Pool(url, this.connections);
      this.pools.set(url, p);
    }
    return p;
  }

  // -- AuthService

  /** A new user (userId, name, accessToken, tokenType "Bearer", expiresIn).
   * AlreadyExists (NAME_TAKEN) when the name is taken, InvalidArgument for a
   * bad name or password. */
  async signUp(name: string, password: string, opts: ClientCallOptions = {}): Promise<SignUpResponse> {
    return (await this.call(M.SIGN_UP, { name, password }, opts)).message;
  }

  /** A fresh token. Unauthenticated (INVALID_CREDENTIALS) for a wrong name
   * or password; ResourceExhausted (TOO_MANY_REQUESTS, metadata retry_after)
   * when throttled. clientAddress is throttled as the gateway throttles a
   * client's address. */
  async signIn(name: string, password: string, opts: ClientCallOptions & { clientAddress?: string } = {}): Promise<SignInResponse> {
    const { clientAddress = "", ...rest } = opts;
    return (await this.call(M.SIGN_IN, { name, password, clientAddress }, rest)).message;
  }

  // -- ProductService

  /** The new Product. InvalidArgument (metadata field) on a bad name or price. */
  async createProduct(name: string, supplyPrice: bigint | number, opts: ClientCallOptions = {}): Promise<Product> {
    return (await this.call(M.CREATE_PRODUCT, { name, supplyPrice: BigInt(supplyPrice) }, opts)).message;
  }

  /** One page: products ordered by id, nextPageToken "" on the last page. pageSize 0 is 100. */
  async listProducts(pageSize = 0, pageToken = "", opts: ClientCallOptions = {}): Promise<ListProductsResponse> {
    return (await this.call(M.LIST_PRODUCTS, { pageSize, pageToken }, opts)).message;
  }

  /** Every product, page after page (each page one call of timeoutMs). */
  async *iterProducts(pageSize = 100, opts: ClientCallOptions = {}): AsyncGenerator<Product> {
    let token = "";
    for (;;) {
      const page = await this.listProducts(pageSize, token, opts);
      yield* page.products;
      token = page.nextPageToken;
      if (!token) return;
    }
  }

  /** The products found, and missingIds. */
  async getProducts(ids: Iterable<bigint | number>, opts: ClientCallOptions = {}): Promise<GetProductsResponse> {
    return (await this.call(M.GET_PRODUCTS, { ids: [...ids].map((i) => BigInt(i)) }, opts)).message;
  }

  // -- OrderService (on behalf of opts.userId)

  /** The new Order. NotFound (PRODUCT_NOT_FOUND, metadata product_id) for the
   * first missing product; Unavailable (PRODUCT_SERVICE_UNAVAILABLE,
   * dependencyFailed) when the product service fails. With an
   * idempotencyKey, the same key and ids within 24 h answer the first order,
   * so such a call may safely be repeated after a TransportError. */
  async createOrder(productIds: Iterable<bigint | number>, opts: UserCall & { idempotencyKey?: string }): Promise<Order> {
    const { idempotencyKey = "", ...rest } = opts;
    return (await this.call(M.CREATE_ORDER, { productIds: [...productIds].map((i) => BigInt(i)), idempotencyKey },
      rest)).message;
  }

  /** The Order with the item appended. NotFound (ORDER_NOT_FOUND) for an
   * absent order or another user's, (PRODUCT_NOT_FOUND) for a missing product. */
  async addOrderItem(orderId: bigint | number, productId: bigint | number, opts: UserCall): Promise<Order> {
    return (await this.call(M.ADD_ORDER_ITEM, { orderId: BigInt(orderId), productId: BigInt(productId) }, opts)).message;
  }

  /** The Order. NotFound (ORDER_NOT_FOUND) for an absent or foreign order.
   * call(GET_ORDER, ...) also gives the metadata cache (HIT, MISS, BYPASS). */
  async getOrder(orderId: bigint | number, opts: UserCall): Promise<Order> {
    return (await this.call(M.GET_ORDER, { orderId: BigInt(orderId) }, opts)).message;
  }
}
