"""discovery.py -- the registry's lookup socket (CONTRACT §4) and the
weighted random choice among the instances it lists (§5).

The lookup socket is plain REQ/REP like the services, but it carries a bare
serialized Lookup and answers a bare serialized Instances: no RpcRequest
envelope (registry.proto says so, so that discovery works before anything
else does).
"""

import random
import threading
import time

from google.protobuf.message import DecodeError

from .errors import DiscoveryError, NoInstance, TransportError
from .sp import ReqSocket
from .stubs import registry_pb2

DEFAULT_REGISTRY_URL = "tcp://127.0.0.1:7101"


class Instance:
    """One instance as its advert describes it (registry.proto's Advert)."""

    __slots__ = ("service", "instance", "rpc_url", "admin_url", "weight", "healthy", "version",
                 "started_unix_ms")

    def __init__(self, service, instance, rpc_url, admin_url="", weight=100, healthy=True,
                 version="", started_unix_ms=0):
        self.service = service
        self.instance = instance
        self.rpc_url = rpc_url
        self.admin_url = admin_url
        self.weight = weight
        self.healthy = healthy
        self.version = version
        self.started_unix_ms = started_unix_ms

    @classmethod
    def from_advert(cls, a):
        return cls(a.service, a.instance, a.rpc_url, a.admin_url, a.weight, a.healthy, a.version,
                   a.started_unix_ms)

    def __eq__(self, other):
        return isinstance(other, Instance) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __hash__(self):
        return hash((self.service, self.instance, self.rpc_url))

    def __repr__(self):
        return "<Instance %s/%s %s w=%d%s>" % (self.service, self.instance, self.rpc_url,
                                               self.weight, "" if self.healthy else " unhealthy")


class Registry:
    """Lookups on the registry's REP socket (default tcp://127.0.0.1:7101,
    SHOP_REGISTRY_LOOKUP_URL). Thread-safe; one connection, reused."""

    def __init__(self, url=DEFAULT_REGISTRY_URL, timeout=2.0):
        self.url = url
        self.timeout = timeout
        self._sock = ReqSocket(url)
        self._lock = threading.Lock()

    def close(self):
        with self._lock:
            self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def lookup(self, service="", timeout=None):
        """(instances, revision) for service ("" for every service), in the
        registry's order (service, then instance name), healthy or not.
        Answered at once; right after a registry (re)start it may take up to
        its warm-up (survey period + 600 ms by default). Raises
        DiscoveryError (its __cause__ is the TransportError) on failure."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        body = registry_pb2.Lookup(service=service).SerializeToString()
        if not self._lock.acquire(timeout=timeout):
            raise DiscoveryError("registry %s: busy with other lookups for %.1f s"
                                 % (self.url, timeout))
        try:
            data = self._sock.request(body, deadline)
        except TransportError as e:
            raise DiscoveryError("registry lookup failed: %s" % e) from e
        finally:
            self._lock.release()
        try:
            inst = registry_pb2.Instances.FromString(data)
        except (DecodeError, ValueError) as e:
            raise DiscoveryError("registry %s: reply of %d bytes is not a serialized "
                                 "Instances (%s)" % (self.url, len(data), e)) from None
        # Revision 0 is the registry's answer to a request it could not parse.
        if inst.revision == 0:
            raise DiscoveryError("registry %s refused the lookup (revision 0)" % self.url)
        return [Instance.from_advert(a) for a in inst.instances], inst.revision


def pick(instances, rng=random, exclude=()):
    """One instance chosen at random with probability weight / sum of weights,
    among the healthy ones with a weight above 0 whose rpc_url is not in
    exclude; None when there is none. A 70 / 30 pair is chosen 70 : 30."""
    cands = [i for i in instances if i.healthy and i.weight > 0 and i.rpc_url not in exclude]
    if not cands:
        return None
    return rng.choices(cands, weights=[i.weight for i in cands], k=1)[0]


class View:
    """The last lookup answer per service, refreshed when older than ttl
    seconds. When the registry cannot be reached the last answer stays in
    use (CONTRACT §4: clients keep working while the registry is down);
    only a service never seen raises DiscoveryError."""

    def __init__(self, registry, ttl=1.0, rng=None):
        self.registry = registry
        self.ttl = ttl
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._cache = {}  # service -> (monotonic time fetched, [Instance])
        self.last_error = None  # the last DiscoveryError hidden by the cache

    def instances(self, service, timeout=None):
        with self._lock:
            hit = self._cache.get(service)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        if timeout is None:
            timeout = self.registry.timeout
        if hit is not None:
            # A call that could go on the cached view spends at most half of
            # its time asking a registry that may hang.
            timeout = min(timeout / 2, self.registry.timeout)
        try:
            found, _ = self.registry.lookup(service, timeout)
        except DiscoveryError as e:
            if hit is None:
                raise
            self.last_error = e
            # Not again before ttl: a registry that is away costs one
            # failed lookup per ttl, not one per call.
            with self._lock:
                self._cache[service] = (time.monotonic(), hit[1])
            return hit[1]
        with self._lock:
            self._cache[service] = (time.monotonic(), found)
        return found

    def invalidate(self, service):
        """Asks again at the next use (after a failure on one of its instances)."""
        with self._lock:
            hit = self._cache.get(service)
            if hit is not None:
                self._cache[service] = (float("-inf"), hit[1])

    def pick(self, service, exclude=(), timeout=None):
        inst = pick(self.instances(service, timeout), self.rng, exclude)
        if inst is None:
            raise NoInstance(service)
        return inst
