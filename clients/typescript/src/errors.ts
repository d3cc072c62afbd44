// errors.ts -- every error the client throws (the classes and names of the
// Python client's shop_client.errors).
//
//   ShopError
//   ├── TransportError          the call did not get a usable answer (.sent, .url)
//   │   ├── Unreachable         no connection (refused, no route); never sent
//   │   ├── ConnectionLost      the peer closed or reset the connection
//   │   ├── ShopTimeout         our own deadline passed (name "TimeoutError")
//   │   ├── Aborted             the caller's AbortSignal fired (name "AbortError")
//   │   └── ProtocolError       the peer broke the SP or RpcResponse format
//   ├── DiscoveryError          the registry could not be asked (nothing cached)
//   │   └── NoInstance          no healthy instance of the service
//   └── RpcError                the service answered a non-zero RpcResponse.code
//       └── one subclass per gRPC code: InvalidArgument (3), DeadlineExceeded (4),
//           NotFound (5), AlreadyExists (6), ... Unauthenticated (16)
//
// An RpcError carries the contract's fields: code, reason ("PRODUCT_NOT_FOUND"),
// details (the service's English message; Error.message is the whole line),
// metadata ({product_id: "123"}) and dependencyFailed. Program against the
// class and reason, never against the text.

export class ShopError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** No usable answer came back. `sent` tells whether the request may have
 * reached the service (false: it certainly did not, so any call may be
 * retried; true: a call that changes something must not be sent again). */
export class TransportError extends ShopError {
  readonly url: string;
  readonly sent: boolean;
  constructor(message: string, url: string, sent: boolean, options?: { cause?: unknown }) {
    super(url ? `${url}: ${message}` : message, options);
    this.url = url;
    this.sent = sent;
  }
}

/** Connecting failed; nothing was sent. */
export class Unreachable extends TransportError {
  constructor(message: string, url: string, options?: { cause?: unknown }) {
    super(message, url, false, options);
  }
}

/** The peer closed or reset the connection during the call. */
export class ConnectionLost extends TransportError {}

/** The call's timeout passed before its answer arrived (client side). Its
 * name is "TimeoutError", as AbortSignal.timeout()'s reason is. */
export class ShopTimeout extends TransportError {
  constructor(message: string, url: string, sent: boolean, options?: { cause?: unknown }) {
    super(message, url, sent, options);
    this.name = "TimeoutError";
  }
}

/** The caller's AbortSignal fired; `reason` is the signal's reason. Its name
 * is "AbortError", as fetch() and the other Node APIs name theirs. */
export class Aborted extends TransportError {
  readonly reason: unknown;
  constructor(reason: unknown, url: string, sent: boolean) {
    super("aborted by the caller's signal", url, sent, { cause: reason });
    this.name = "AbortError";
    this.reason = reason;
  }
}

/** The peer's bytes are not a valid SP handshake, SP reply frame or
 * serialized RpcResponse / response message. The connection is closed. */
export class ProtocolError extends TransportError {}

/** The registry could not be reached and no earlier answer is cached. */
export class DiscoveryError extends ShopError {}

/** The registry lists no healthy instance (with a weight above 0) of the service. */
export class NoInstance extends DiscoveryError {
  readonly service: string;
  constructor(service: string) {
    super(`no healthy instance of service '${service}'`);
    this.service = service;
  }
}

const NAMES: Record<number, string> = {
  0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
  5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
  9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
  13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
};

/** "NOT_FOUND" for 5; "CODE_99" for a number gRPC does not define. */
export function codeName(code: number): string {
  return NAMES[code] ?? `CODE_${code}`;
}

export interface RpcErrorFields {
  reason?: string;
  details?: string;
  metadata?: Record<string, string>;
  method?: string;
  instance?: string;
  dependencyFailed?: boolean;
}

/** A service answered with an error RpcResponse. */
export class RpcError extends ShopError {
  readonly code: number;
  readonly reason: string;
  /** The service's own message (English, for people). */
  readonly details: string;
  readonly metadata: Record<string, string>;
  readonly method: string;
  /** The instance that answered (its name when found through discovery, else its URL). */
  instance: string;
  /** The instance works and reports that a service behind it failed (the
   * order service's PRODUCT_SERVICE_UNAVAILABLE): not that instance's failure. */
  readonly dependencyFailed: boolean;

  constructor(code: number, f: RpcErrorFields = {}) {
    let text = `${codeName(code)} ${f.reason || "-"}`;
    if (f.details) text += `: ${f.details}`;
    if (f.dependencyFailed) text += " [a dependency failed]";
    if (f.method) text += ` (${f.method}${f.instance ? " on " + f.instance : ""})`;
    super(text);
    this.code = code;
    this.reason = f.reason ?? "";
    this.details = f.details ?? "";
    this.metadata = { ...(f.metadata ?? {}) };
    this.method = f.method ?? "";
    this.instance = f.instance ?? "";
    this.dependencyFailed = Boolean(f.dependencyFailed);
  }

  get codeName(): string {
    return codeName(this.code);
  }
}

export class Cancelled extends RpcError {}
export class Unknown extends RpcError {}
export class InvalidArgument extends RpcError {}
export class DeadlineExceeded extends RpcError {}
export class NotFound extends RpcError {}
export class AlreadyExists extends RpcError {}
export class PermissionDenied extends RpcError {}
export class ResourceExhausted extends RpcError {}
export class FailedPrecondition extends RpcError {}
export class Unimplemented extends RpcError {}
export class Internal extends RpcError {}
export class Unavailable extends RpcError {}
export class Unauthenticated extends RpcError {}

const BY_CODE: Record<number, new (code: number, f?: RpcErrorFields) => RpcError> = {
  1: Cancelled, 2: Unknown, 3: InvalidArgument, 4: DeadlineExceeded, 5: NotFound,
  6: AlreadyExists, 7: PermissionDenied, 8: ResourceExhausted, 9: FailedPrecondition,
  12: Unimplemented, 13: Internal, 14: Unavailable, 16: Unauthenticated,
};

/** The RpcError subclass for code (RpcError itself for a code without one). */
export function rpcError(code: number, f: RpcErrorFields = {}): RpcError {
  const Cls = BY_CODE[code] ?? RpcError;
  return new Cls(code, f);
}

/** True for the errors a deadline produces, ours or the service's. */
export function isTimeout(e: unknown): boolean {
  return e instanceof ShopTimeout || e instanceof DeadlineExceeded;
}
