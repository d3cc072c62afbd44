"""client.py -- ShopClient: every shop service behind one object. Instances
are found through the registry and chosen by weight; each call carries the
contract's envelope (method, deadline, caller, trace context); errors come
back as the typed exceptions of shop_client.errors.
"""

import threading
import time

from . import stubs
from .discovery import DEFAULT_REGISTRY_URL, Registry, View
from .errors import NoInstance, RpcError, ShopTimeout, TransportError
from .rpc import RpcConnection, new_traceparent
from .stubs import auth_pb2, order_pb2, product_pb2


class _Pool:
    """The connections of one client to one instance. Each serves one call
    at a time (an SP REQ connection has one request in flight); a call takes
    an idle one, or opens another while there are fewer than size, or waits
    for one to come back."""

    def __init__(self, url, size):
        self.url = url
        self.size = size
        self.idle = []  # most recently used last: a hot connection is reused
        self.count = 0  # connections made and not closed, idle or in use
        self.closed = False
        self.cv = threading.Condition()

    def take(self, timeout):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not self.idle and self.count >= self.size and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ShopTimeout("all %d connections busy with other calls for the whole "
                                      "timeout" % self.size, self.url, sent=False)
                self.cv.wait(left)
            if self.closed:
                raise RuntimeError("ShopClient is closed")
            if self.idle:
                return self.idle.pop()
            self.count += 1
        return RpcConnection(self.url)  # connects on its first call

    def give(self, conn):
        with self.cv:
            keep = not self.closed
            if keep:
                self.idle.append(conn)
            else:
                self.count -= 1
            self.cv.notify()
        if not keep:
            conn.close()

    def close(self):
        with self.cv:
            self.closed = True
            idle, self.idle = self.idle, []
            self.count -= len(idle)
            self.cv.notify_all()
        for c in idle:
            c.close()


class ShopClient:
    """A client of the shop services over nng, for programs inside the
    network (back office, batch jobs, tools).

        with ShopClient("tcp://127.0.0.1:7101") as shop:
            me = shop.sign_up("kim", "correct horse")
            kb = shop.create_product("Keyboard", 30000)
            order = shop.create_order([kb.id], user_id=me.user_id)

    registry_url: the registry's lookup socket (SHOP_REGISTRY_LOOKUP_URL).
    timeout: default seconds per call, covering discovery, connecting, a
    retry and the answer; sent to the service as the call's deadline.
    view_ttl: seconds a registry answer is used before asking again; while
    the registry is unreachable the last answer stays in use.
    rng: a random.Random for the weighted choice (tests seed it).
    connections: the most connections kept to one instance, i.e. the most
    calls in flight to it at once (each connection carries one call at a
    time); calls beyond that wait for a connection within their timeout.
    sample_traces: each call starts a W3C trace whose id the services log;
    True also sets its sampled flag, so that services with SHOP_ZIPKIN_URL
    record spans for it.

    Services trust the envelope's caller_user_id (the gateway fills it from a
    verified token), so the order methods take the user they act for.
    Thread-safe: calls from several threads run at once, up to connections
    per instance; close() (or the with block) closes every connection.
    """

    def __init__(self, registry_url=DEFAULT_REGISTRY_URL, timeout=5.0, view_ttl=1.0, rng=None,
                 sample_traces=False, connections=8):
        if timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.timeout = timeout
        self.sample_traces = sample_traces
        self.connections = connections
        self.registry = Registry(registry_url, timeout)
        self.view = View(self.registry, view_ttl, rng)
        self._pools = {}  # rpc_url -> _Pool
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        with self._lock:
            self._closed = True
            pools, self._pools = list(self._pools.values()), {}
        for p in pools:
            p.close()  # a connection in use is closed when its call ends
        self.registry.close()

    # -- discovery

    def lookup(self, service=""):
        """(instances, revision) straight from the registry; "" for every service."""
        return self.registry.lookup(service)

    def instances(self, service):
        """The instances of service the client chooses among (its cached view)."""
        return self.view.instances(service)

    # -- the generic call

    def call(self, method, request, user_id=0, timeout=None, traceparent=None):
        """Calls method (a shop_client.stubs.Method, e.g. stubs.LIST_PRODUCTS)
        with request on an instance chosen by weight; returns a Reply. An
        idempotent method, or any call that failed before a byte was sent,
        is retried once on another instance within the same deadline."""
        timeout = self.timeout if timeout is None else timeout
        if timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if not isinstance(request, method.request):
            raise TypeError("%s takes a %s, not a %s" % (method.path, method.request.__name__,
                                                         type(request).__name__))
        deadline = time.monotonic() + timeout
        deadline_unix_ms = int(time.time() * 1000) + max(1, int(timeout * 1000))
        if traceparent is None:
            traceparent = new_traceparent(self.sample_traces)
        tried = []
        last = None
        for _ in range(2):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                inst = self.view.pick(method.service, exclude=tried, timeout=left)
            except NoInstance:
                if last is not None:
                    raise last
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                pool = self._pool(inst.rpc_url)
                conn = pool.take(left)
                try:
                    reply = conn.call(
                        method.path, request, method.response,
                        timeout=max(deadline - time.monotonic(), 0.001),
                        deadline_unix_ms=deadline_unix_ms, caller_user_id=user_id,
                        traceparent=traceparent)
                finally:
                    pool.give(conn)
            except TransportError as e:
                self.view.invalidate(method.service)
                tried.append(inst.rpc_url)
                last = e
                if method.idempotent or not e.sent:
                    continue
                raise
            except RpcError as e:
                e.instance = inst.instance
                raise
            reply.instance = inst.instance
            return reply
        if last is not None:
            raise last
        raise ShopTimeout("%s: the %.3g s timeout passed" % (method.path, timeout), sent=False)

    def _pool(self, url):
        with self._lock:
            if self._closed:
                raise RuntimeError("ShopClient is closed")
            p = self._pools.get(url)
            if p is None:
                p = self._pools[url] = _Pool(url, self.connections)
            return p

    # -- AuthService

    def sign_up(self, name, password, timeout=None):
        """A new user; returns a SignUpResponse (user_id, name, access_token,
        token_type "Bearer", expires_in). AlreadyExists (NAME_TAKEN) when
        the name is taken, InvalidArgument for a bad name or password."""
        return self.call(stubs.SIGN_UP, auth_pb2.SignUpRequest(name=name, password=password),
                         timeout=timeout).message

    def sign_in(self, name, password, client_address="", timeout=None):
        """A fresh token; returns a SignInResponse. Unauthenticated
        (INVALID_CREDENTIALS) for a wrong name or password;
        ResourceExhausted (TOO_MANY_REQUESTS, metadata retry_after) when
        throttled. client_address, when given, is throttled as the gateway
        throttles a client's address."""
        req = auth_pb2.SignInRequest(name=name, password=password, client_address=client_address)
        return self.call(stubs.SIGN_IN, req, timeout=timeout).message

    # -- ProductService

    def create_product(self, name, supply_price, timeout=None):
        """The new Product. InvalidArgument (metadata "field") on a bad name or price."""
        req = product_pb2.CreateProductRequest(name=name, supply_price=supply_price)
        return self.call(stubs.CREATE_PRODUCT, req, timeout=timeout).message

    def list_products(self, page_size=0, page_token="", timeout=None):
        """One page: a ListProductsResponse (products ordered by id,
        next_page_token empty on the last page). page_size 0 is 100."""
        req = product_pb2.ListProductsRequest(page_size=page_size, page_token=page_token)
        return self.call(stubs.LIST_PRODUCTS, req, timeout=timeout).message

    def iter_products(self, page_size=100, timeout=None):
        """Every product, page after page (each page one call of timeout)."""
        token = ""
        while True:
            page = self.list_products(page_size, token, timeout)
            yield from page.products
            token = page.next_page_token
            if not token:
                return

    def get_products(self, ids, timeout=None):
        """A GetProductsResponse: the products found, and missing_ids."""
        req = product_pb2.GetProductsRequest(ids=list(ids))
        return self.call(stubs.GET_PRODUCTS, req, timeout=timeout).message

    # -- OrderService (on behalf of user_id)

    def create_order(self, product_ids, *, user_id, idempotency_key="", timeout=None):
        """The new Order of user_id. NotFound (PRODUCT_NOT_FOUND, metadata
        product_id) for the first missing product; Unavailable
        (PRODUCT_SERVICE_UNAVAILABLE) when the product service fails. With an
        idempotency_key, the same key and ids within 24 h answer the first
        order, so such a call may safely be repeated after a TransportError."""
        req = order_pb2.CreateOrderRequest(product_ids=list(product_ids),
                                           idempotency_key=idempotency_key)
        return self.call(stubs.CREATE_ORDER, req, user_id=user_id, timeout=timeout).message

    def add_order_item(self, order_id, product_id, *, user_id, timeout=None):
        """The Order with the item appended. NotFound (ORDER_NOT_FOUND) for an
        absent order or another user's, (PRODUCT_NOT_FOUND) for a missing product."""
        req = order_pb2.AddOrderItemRequest(order_id=order_id, product_id=product_id)
        return self.call(stubs.ADD_ORDER_ITEM, req, user_id=user_id, timeout=timeout).message

    def get_order(self, order_id, *, user_id, timeout=None):
        """The Order. NotFound (ORDER_NOT_FOUND) for an absent or foreign order.
        call(stubs.GET_ORDER, ...) also gives the metadata "cache" (HIT, MISS, BYPASS)."""
        req = order_pb2.GetOrderRequest(order_id=order_id)
        return self.call(stubs.GET_ORDER, req, user_id=user_id, timeout=timeout).message
