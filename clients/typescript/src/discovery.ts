// discovery.ts -- the registry's lookup socket and the weighted random choice
// among the instances it lists.
//
// The lookup socket is plain REQ/REP like the services, but it carries a bare
// serialized Lookup and answers a bare serialized Instances: no RpcRequest
// envelope (registry.proto says so, so that discovery works before anything
// else does). A Lookup with wait_revision = the registry's current revision
// and wait_ms > 0 is held until the table changes (long-poll): View's
// watcher uses that to learn of a change at once instead of asking again
// every viewTtlMs.

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";

import { type Advert, InstancesSchema, LookupSchema } from "#shop/v1/registry_pb.js";
import { Aborted, DiscoveryError, NoInstance } from "./errors.js";
import { Slots } from "./rpc.js";
import { type Bound, ReqSocket, now } from "./sp.js";

export const DEFAULT_REGISTRY_URL = "tcp://127.0.0.1:7101";

/** One instance as its advert describes it (registry.proto's Advert, as a plain object). */
export type Instance = Omit<Advert, "$typeName">;

function fromAdvert(a: Advert): Instance {
  const { $typeName: _, ...inst } = a;
  return inst;
}

export interface LookupOptions {
  /** ms; default the registry's timeoutMs (plus waitMs when long-polling). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Long-poll: held while the registry's revision equals this one... */
  waitRevision?: bigint;
  /** ... for at most this long (ms; the registry caps it at 30 s). */
  waitMs?: number;
  /** The wait must not keep Node running (the watcher's). */
  background?: boolean;
}

export interface Lookup {
  instances: Instance[];
  revision: bigint;
}

/** Lookups on the registry's REP socket (default tcp://127.0.0.1:7101,
 * SHOP_REGISTRY_LOOKUP_URL). One connection, reused; lookups made at once
 * take turns. */
export class Registry {
  readonly url: string;
  readonly timeoutMs: number;
  private readonly sock: ReqSocket;
  private readonly turn: Slots;

  constructor(url: string = DEFAULT_REGISTRY_URL, timeoutMs = 2000) {
    this.url = url;
    this.timeoutMs = timeoutMs;
    this.sock = new ReqSocket(url);
    this.turn = new Slots(1, "registry busy with other lookups", url);
  }

  close(): void {
    this.sock.close();
  }

  /** The instances of service ("" for every service) in the registry's order
   * (service, then instance name), healthy or not, and the revision. Rejects
   * with DiscoveryError (its cause the TransportError) on failure. */
  async lookup(service = "", opts: LookupOptions = {}): Promise<Lookup> {
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs + (opts.waitMs ?? 0);
    const bound: Bound = { deadline: now() + timeoutMs, signal: opts.signal, background: opts.background ?? false };
    try {
      await this.turn.acquire(bound);
    } catch (e) {
      throw new DiscoveryError(`registry ${this.url}: ${(e as Error).message}`, { cause: e });
    }
    try {
      return await lookupOn(this.sock, service, opts, bound);
    } finally {
      this.turn.release();
    }
  }
}

async function lookupOn(sock: ReqSocket, service: string, opts: LookupOptions, bound: Bound): Promise<Lookup> {
  const body = toBinary(LookupSchema, create(LookupSchema, {
    service, waitRevision: opts.waitRevision ?? 0n, waitMs: Math.max(0, Math.floor(opts.waitMs ?? 0)),
  }));
  let data: Buffer;
  try {
    data = await sock.request(body, bound);
  } catch (e) {
    if (e instanceof Aborted) throw e;
    throw new DiscoveryError(`registry lookup failed: ${(e as Error).message}`, { cause: e });
  }
  let inst;
  try {
    inst = fromBinary(InstancesSchema, data);
  } catch (e) {
    throw new DiscoveryError(`registry ${sock.url}: reply of ${data.length} bytes is not a serialized Instances (${(e as Error).message})`);
  }
  // Revision 0 is the registry's answer to a request it could not parse.
  if (inst.revision === 0n) throw new DiscoveryError(`registry ${sock.url} refused the lookup (revision 0)`);
  return { instances: inst.instances.map(fromAdvert), revision: inst.revision };
}

/** A source of numbers in [0, 1) for the weighted choice (tests seed one). */
export type Rng = () => number;

/** A small seeded generator (mulberry32), for tests that want a repeatable choice. */
export function seededRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One instance chosen at random with probability weight / sum of weights,
 * among the healthy ones with a weight above 0 whose rpcUrl is not in
 * exclude; undefined when there is none. A 70 / 30 pair is chosen 70 : 30. */
export function pick(instances: readonly Instance[], rng: Rng = Math.random,
  exclude: readonly string[] = []): Instance | undefined {
  const cands = instances.filter((i) => i.healthy && i.weight > 0 && !exclude.includes(i.rpcUrl));
  const total = cands.reduce((s, i) => s + i.weight, 0);
  if (total <= 0) return undefined;
  let r = rng() * total;
  for (const i of cands) {
    r -= i.weight;
    if (r < 0) return i;
  }
  return cands[cands.length - 1];
}

interface Entry {
  fetched: number; // now() of the last answer
  instances: Instance[];
  revision: bigint;
  watching: boolean; // a long-poll from this revision is held by the registry
}

export interface ViewOptions {
  /** ms a registry answer is used before asking again (default 1000), unless
   * the watcher holds a long-poll on it. */
  ttlMs?: number;
  rng?: Rng;
  /** Keep one long-poll Lookup per service in flight (default true), so a
   * change in the registry reaches the view at once. */
  watch?: boolean;
  /** The long-poll's wait_ms (default 25000; the registry caps it at 30 s). */
  watchMs?: number;
}

/** The last lookup answer per service. When the registry cannot be reached
 * the last answer stays in use (clients keep working while the registry is
 * down); only a service never seen throws DiscoveryError. */
export class View {
  readonly registry: Registry;
  readonly ttlMs: number;
  readonly rng: Rng;
  readonly watch: boolean;
  readonly watchMs: number;
  /** The last DiscoveryError the cache hid. */
  lastError: DiscoveryError | undefined;
  private readonly cache = new Map<string, Entry>();
  private readonly watchers = new Map<string, ReqSocket>();
  private closed = false;

  constructor(registry: Registry, opts: ViewOptions = {}) {
    this.registry = registry;
    this.ttlMs = opts.ttlMs ?? 1000;
    this.rng = opts.rng ?? Math.random;
    this.watch = opts.watch ?? true;
    this.watchMs = opts.watchMs ?? 25000;
  }

  close(): void {
    this.closed = true;
    for (const s of this.watchers.values()) s.close();
    this.watchers.clear();
  }

  /** The cached instances of service, asking the registry when they are
   * older than ttlMs and no long-poll holds them. */
  async instances(service: string, bound?: Bound): Promise<Instance[]> {
    const hit = this.cache.get(service);
    if (hit && (hit.watching || now() - hit.fetched < this.ttlMs)) return hit.instances;
    let timeoutMs = this.registry.timeoutMs;
    if (bound) timeoutMs = Math.min(timeoutMs, Math.max(1, bound.deadline - now()));
    // A call that could go on the cached view spends at most half of its
    // time asking a registry that may hang.
    if (hit) timeoutMs = Math.max(1, Math.min(timeoutMs / 2, this.registry.timeoutMs));
    let found: Lookup;
    try {
      found = await this.registry.lookup(service, { timeoutMs, ...(bound?.signal ? { signal: bound.signal } : {}) });
    } catch (e) {
      if (!hit || !(e instanceof DiscoveryError)) throw e;
      this.lastError = e;
      // Not again before ttlMs: a registry that is away costs one failed
      // lookup per ttlMs, not one per call.
      hit.fetched = now();
      return hit.instances;
    }
    this.store(service, found);
    return found.instances;
  }

  private store(service: string, found: Lookup): void {
    const old = this.cache.get(service);
    this.cache.set(service, {
      fetched: now(), instances: found.instances, revision: found.revision, watching: old?.watching ?? false,
    });
    if (this.watch && !this.closed && !this.watchers.has(service)) this.startWatch(service);
  }

  /** Asks again at the next use (after a failure on one of its instances). */
  invalidate(service: string): void {
    const hit = this.cache.get(service);
    if (hit) {
      hit.fetched = -Infinity;
      hit.watching = false;
    }
  }

  async pick(service: string, exclude: readonly string[] = [], bound?: Bound): Promise<Instance> {
    const inst = pick(await this.instances(service, bound), this.rng, exclude);
    if (!inst) throw new NoInstance(service);
    return inst;
  }

  // The watcher: one long-poll Lookup at a time per service, on a connection
  // of its own, that never keeps Node running. Its failures are silent: the
  // view falls back to asking every ttlMs, and the watcher tries again after
  // a second.
  private startWatch(service: string): void {
    const sock = new ReqSocket(this.registry.url);
    this.watchers.set(service, sock);
    void (async () => {
      while (!this.closed) {
        const e = this.cache.get(service);
        if (!e) return;
        const t0 = now();
        let again = 0;
        try {
          e.watching = true;
          const found = await lookupOn(sock, service, { waitRevision: e.revision, waitMs: this.watchMs },
            { deadline: now() + this.watchMs + this.registry.timeoutMs, background: true });
          if (this.closed) return;
          // The same revision back long before wait_ms: the registry had no
          // room to hold the request; wait before asking again.
          if (found.revision === e.revision && now() - t0 < this.watchMs / 2) again = 1000;
          this.cache.set(service, { fetched: now(), instances: found.instances, revision: found.revision,
            watching: again === 0 });
        } catch {
          const cur = this.cache.get(service);
          if (cur) cur.watching = false;
          again = 1000;
        }
        if (again > 0) await sleepBackground(again);
      }
    })();
  }
}

function sleepBackground(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
