"""errors.py -- every exception shop_client raises.

    ShopError
    ├── TransportError          the call did not get a usable answer
    │   ├── Unreachable         no connection (refused, no route, DNS); never sent
    │   ├── ConnectionLost      the peer closed or reset the connection
    │   ├── ShopTimeout         our own deadline passed (also a TimeoutError)
    │   └── ProtocolError       the peer broke the SP or RpcResponse format
    ├── DiscoveryError          the registry could not be asked, or named no instance
    │   └── NoInstance          no healthy instance of the service
    └── RpcError                the service answered with a non-zero RpcResponse.code
        ├── Cancelled (1)  Unknown (2)  InvalidArgument (3)
        ├── DeadlineExceeded (4, also a TimeoutError)  NotFound (5)  AlreadyExists (6)
        ├── PermissionDenied (7)  ResourceExhausted (8)  FailedPrecondition (9)
        └── Unimplemented (12)  Internal (13)  Unavailable (14)  Unauthenticated (16)

An RpcError carries the contract's fields: code (gRPC number), reason (stable
UPPER_SNAKE string such as "PRODUCT_NOT_FOUND"), message (English, for
people), metadata (dict, e.g. {"product_id": "123"}) and dependency_failed
(True when the instance that answered works and reports that a service it
depends on failed, e.g. the order service's PRODUCT_SERVICE_UNAVAILABLE
fallback: not that instance's failure). Program against the class and
reason, never against message.
"""


class ShopError(Exception):
    """Base of every exception raised by shop_client."""


class TransportError(ShopError):
    """No usable answer came back. `sent` tells whether the request may have
    reached the service (False: it certainly did not, so any call may be
    retried; True: a call that changes something must not be sent again)."""

    def __init__(self, msg, url=None, sent=True):
        super().__init__(msg if url is None else "%s: %s" % (url, msg))
        self.url = url
        self.sent = sent


class Unreachable(TransportError):
    """Connecting failed; nothing was sent."""

    def __init__(self, msg, url=None):
        super().__init__(msg, url, sent=False)


class ConnectionLost(TransportError):
    """The peer closed or reset the connection during the call."""


class ShopTimeout(TransportError, TimeoutError):
    """The call's timeout passed before its answer arrived (client side)."""


class ProtocolError(TransportError):
    """The peer's bytes are not a valid SP handshake, SP reply frame or
    serialized RpcResponse / response message. The connection is closed."""


class DiscoveryError(ShopError):
    """The registry could not be reached and no earlier answer is cached."""


class NoInstance(DiscoveryError):
    """The registry lists no healthy instance (with a weight above 0) of the service."""

    def __init__(self, service):
        super().__init__("no healthy instance of service %r" % service)
        self.service = service


class RpcError(ShopError):
    """A service answered with an error RpcResponse."""

    code = None  # set on subclasses; an unknown code keeps the number it came with

    def __init__(self, code, reason="", message="", metadata=None, method="", instance="",
                 dependency_failed=False):
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        self.method = method
        self.instance = instance
        self.dependency_failed = bool(dependency_failed)
        text = "%s %s" % (code_name(code), reason or "-")
        if message:
            text += ": " + message
        if self.dependency_failed:
            text += " [a dependency failed]"
        if method:
            text += " (%s%s)" % (method, " on " + instance if instance else "")
        super().__init__(text)

    @property
    def code_name(self):
        return code_name(self.code)


class Cancelled(RpcError):
    code = 1


class Unknown(RpcError):
    code = 2


class InvalidArgument(RpcError):
    code = 3


class DeadlineExceeded(RpcError, TimeoutError):
    code = 4


class NotFound(RpcError):
    code = 5


class AlreadyExists(RpcError):
    code = 6


class PermissionDenied(RpcError):
    code = 7


class ResourceExhausted(RpcError):
    code = 8


class FailedPrecondition(RpcError):
    code = 9


class Unimplemented(RpcError):
    code = 12


class Internal(RpcError):
    code = 13


class Unavailable(RpcError):
    code = 14


class Unauthenticated(RpcError):
    code = 16


_BY_CODE = {c.code: c for c in (Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound,
                                AlreadyExists, PermissionDenied, ResourceExhausted,
                                FailedPrecondition, Unimplemented, Internal, Unavailable,
                                Unauthenticated)}

_NAMES = {0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
          5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
          9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
          13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED"}


def code_name(code):
    """"NOT_FOUND" for 5; "CODE_99" for a number gRPC does not define."""
    return _NAMES.get(code, "CODE_%d" % code)


def rpc_error(code, reason="", message="", metadata=None, method="", instance="",
              dependency_failed=False):
    """The RpcError subclass for code (RpcError itself for a code without one)."""
    cls = _BY_CODE.get(code, RpcError)
    return cls(code, reason, message, metadata, method, instance, dependency_failed)
