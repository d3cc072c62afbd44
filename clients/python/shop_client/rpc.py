"""rpc.py -- shop's RPC envelope (proto/shop/v1/rpc.proto) over one SP REQ
connection: a request message goes out as one serialized RpcRequest, the
answer comes back as one serialized RpcResponse, whose non-zero code is
raised as the matching RpcError subclass.
"""

import os
import threading
import time

from google.protobuf.message import DecodeError

from .errors import ProtocolError, ShopTimeout, rpc_error
from .sp import CONNECT_TIMEOUT, MAX_REPLY, ReqSocket
from .stubs import rpc_pb2

# How long past the envelope's deadline we still wait for the answer: a
# service that gives up at the deadline (DEADLINE_EXCEEDED, or UNAVAILABLE
# from a slow upstream) needs a moment to say so, and its answer is more
# useful than our own timeout.
REPLY_GRACE_S = 0.1


class Reply:
    """A successful answer: the decoded response message, the RpcResponse
    metadata (e.g. GetOrder's {"cache": "HIT"}), the instance's URL and,
    when it came through discovery, the instance's name."""

    __slots__ = ("message", "metadata", "url", "instance")

    def __init__(self, message, metadata, url, instance=""):
        self.message = message
        self.metadata = metadata
        self.url = url
        self.instance = instance

    def __repr__(self):
        return "<Reply %s from %s %r>" % (type(self.message).__name__,
                                          self.instance or self.url, self.metadata)


def new_traceparent(sampled=False):
    """A fresh W3C traceparent (version 00) starting a trace of its own."""
    return "00-%s-%s-%s" % (os.urandom(16).hex(), os.urandom(8).hex(), "01" if sampled else "00")


def encode_request(method, payload, deadline_unix_ms=0, caller_user_id=0, traceparent=""):
    """The serialized RpcRequest (bytes) for a serialized request payload."""
    return rpc_pb2.RpcRequest(method=method, payload=payload, traceparent=traceparent,
                              deadline_unix_ms=deadline_unix_ms,
                              caller_user_id=caller_user_id).SerializeToString()


def decode_reply(data, response_type, method="", url=""):
    """Reply for a serialized RpcResponse with code 0; raises the RpcError
    subclass of its code otherwise, ProtocolError when data (or the payload
    of an OK answer) does not parse. Zero bytes are a valid RpcResponse:
    code 0 and an empty payload, i.e. a response message with every field
    at its default."""
    try:
        resp = rpc_pb2.RpcResponse.FromString(data)
    except (DecodeError, ValueError) as e:
        raise ProtocolError("reply of %d bytes is not a serialized RpcResponse (%s)"
                            % (len(data), e), url) from None
    metadata = dict(resp.metadata)
    if resp.code != 0:
        raise rpc_error(resp.code, resp.reason, resp.message, metadata, method, url,
                        resp.dependency_failed)
    try:
        msg = response_type.FromString(resp.payload)
    except (DecodeError, ValueError) as e:
        raise ProtocolError("payload of %d bytes is not a serialized %s (%s)"
                            % (len(resp.payload), response_type.DESCRIPTOR.full_name, e),
                            url) from None
    return Reply(msg, metadata, url)


class RpcConnection:
    """Calls to one service instance (its rpc_url, e.g. "tcp://127.0.0.1:7211")
    over one SP REQ connection, reconnecting as needed. Thread-safe: calls
    from several threads take turns, each waiting at most its own timeout.

        with RpcConnection("tcp://127.0.0.1:7211") as c:
            r = c.call("/shop.v1.ProductService/ListProducts",
                       product_pb2.ListProductsRequest(page_size=5),
                       product_pb2.ListProductsResponse, timeout=2)
            print(r.message.products)
    """

    def __init__(self, url, max_reply=MAX_REPLY, connect_timeout=CONNECT_TIMEOUT):
        self.url = url
        self._sock = ReqSocket(url, max_reply, connect_timeout)
        self._lock = threading.Lock()

    def close(self):
        with self._lock:
            self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, method, request, response_type, timeout=5.0, deadline_unix_ms=None,
             caller_user_id=0, traceparent=None):
        """Sends request (a message) as method and returns a Reply holding a
        response_type. timeout (seconds) bounds the whole call on our side;
        the envelope's deadline_unix_ms is now + timeout unless given (it is
        then sent as is: the service answers DEADLINE_EXCEEDED when it has
        passed by the service's clock). traceparent: None starts a new,
        unsampled trace (its id still reaches the services' logs), "" sends
        none. Raises TransportError or RpcError subclasses."""
        if timeout is None or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        start = time.monotonic()
        if deadline_unix_ms is None:
            deadline_unix_ms = int(time.time() * 1000) + max(1, int(timeout * 1000))
        if traceparent is None:
            traceparent = new_traceparent(False)
        body = encode_request(method, request.SerializeToString(), deadline_unix_ms,
                              caller_user_id, traceparent)
        local_deadline = start + timeout + REPLY_GRACE_S
        if not self._lock.acquire(timeout=timeout):
            raise ShopTimeout("connection busy with other calls for the whole timeout",
                              self.url, sent=False)
        try:
            data = self._sock.request(body, local_deadline)
        finally:
            self._lock.release()
        return decode_reply(data, response_type, method, self.url)
