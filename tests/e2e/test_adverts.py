"""test_adverts.py -- a hostile peer on the registry's survey port advertises
an instance whose name or URL is outside the safe form (docs/decisions.md,
"Adverts, escaping and crashes"): the registry refuses and counts it, no
gateway answer carries what the name smuggles in, and every /metrics still
parses."""

import re
import socket
import struct
import threading
import time

import stack
from stack import (ADMIN_PORTS, GATEWAY_PORT, REGISTRY_ADMIN_PORT, api, check, registry_instances,
                   request)
from test_hostile import (PROTO_REP, PROTO_RESPONDENT, SURVEY_PORT, frame, recv_exact,
                          registry_pb2, sp_connect, sp_header, sp_recv)

INJECTED = "x\r\nSet-Cookie: pwn=1"

# One line of Prometheus text format 0.0.4: a comment, or a sample whose
# label values hold no raw double quote, backslash or line feed.
METRIC_LINE_RE = re.compile(
    r'^(#.*|[a-zA-Z_:][a-zA-Z0-9_:]*'
    r'(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})?'
    r' [-+]?([0-9.eE+-]+|Inf|NaN)( -?[0-9]+)?)$')


class FakeInstance:
    """A product instance by hand over raw SP: a RESPONDENT that answers
    every survey with advert, and a REP on the advert's rpc_url port that
    answers every call with an empty OK (so that, were the advert admitted,
    the gateway would serve answers under its name)."""

    def __init__(self, instance, rpc_url=None):
        self.rep = socket.socket()
        self.rep.bind((stack.HOST, 0))
        self.rep.listen(8)
        port = self.rep.getsockname()[1]
        self.advert = registry_pb2.Advert(
            service="product", instance=instance,
            rpc_url=rpc_url or "tcp://127.0.0.1:%d" % port,
            admin_url="http://127.0.0.1:1", weight=1000000, healthy=True, version="e2e",
            started_unix_ms=int(time.time() * 1000)).SerializeToString()
        self.surveys = 0
        self.calls = 0
        self.stop = False
        self.resp = sp_connect(SURVEY_PORT, PROTO_RESPONDENT)
        self.threads = [threading.Thread(target=self._answer, daemon=True),
                        threading.Thread(target=self._serve, daemon=True)]
        for t in self.threads:
            t.start()

    def _answer(self):
        self.resp.settimeout(0.5)
        while not self.stop:
            try:
                body = sp_recv(self.resp)
            except socket.timeout:
                continue
            except (OSError, ConnectionError):
                return
            # The survey's id (4 bytes, high bit set) goes back in front.
            try:
                self.resp.sendall(frame(body[:4] + self.advert))
            except OSError:
                return
            self.surveys += 1

    def _serve(self):
        self.rep.settimeout(0.5)
        while not self.stop:
            try:
                c, _ = self.rep.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._call, args=(c,), daemon=True).start()

    def _call(self, c):
        try:
            c.settimeout(5)
            recv_exact(c, 8)
            c.sendall(sp_header(PROTO_REP))
            while not self.stop:
                n = struct.unpack(">Q", recv_exact(c, 8))[0]
                req = recv_exact(c, n)
                self.calls += 1
                c.sendall(frame(req[:4] + b"\x12\x04fake"))  # RpcResponse{OK, "fake"}
        except (OSError, ConnectionError):
            pass
        finally:
            c.close()

    def wait_surveys(self, n, secs=5):
        deadline = time.monotonic() + secs
        while self.surveys < n and time.monotonic() < deadline:
            time.sleep(0.05)
        check(self.surveys >= n, "the registry surveyed the fake %d times in %d s" %
              (self.surveys, secs))

    def close(self):
        self.stop = True
        self.resp.close()
        self.rep.close()
        for t in self.threads:
            t.join(2)


def refused(reason):
    """shop_registry_adverts_refused_total{reason} from the registry's /metrics."""
    r = request("GET", "/metrics", port=REGISTRY_ADMIN_PORT, timeout=2)
    check(r.status == 200, "registry /metrics -> %r" % r)
    m = re.search(r'^shop_registry_adverts_refused_total\{reason="%s"\} (\d+)$' % reason,
                  r.body.decode(), re.M)
    check(m is not None, "registry /metrics has no refusal counter for %s" % reason)
    return int(m.group(1))


def metrics_parse(port, who):
    r = request("GET", "/metrics", port=port, timeout=2)
    check(r.status == 200, "%s /metrics -> %r" % (who, r))
    text = r.body.decode("utf-8")
    check(text.endswith("\n"), "%s /metrics does not end with a newline" % who)
    bad = [ln for ln in text[:-1].split("\n") if not METRIC_LINE_RE.match(ln)]
    check(not bad, "%s /metrics: %d lines outside text format 0.0.4, first %r" %
          (who, len(bad), bad[:3]))
    return text


def refused_everywhere(instance, rpc_url, reason):
    before = refused(reason)
    fake = FakeInstance(instance, rpc_url)
    try:
        fake.wait_surveys(3)
        names = registry_instances()
        check(instance not in names and not any("Set-Cookie" in n for n in names),
              "the registry admitted %r: %r" % (instance, sorted(names)))
        after = refused(reason)
        check(after >= before + 3, "refusals of %s went %d -> %d over %d surveys" %
              (reason, before, after, fake.surveys))
        # Were it admitted, weight 1000000 would send every call to it.
        for _ in range(20):
            r = api("GET", "/products?page_size=1")
            check(r.status == 200, "GET /products with the fake around -> %r" % r)
            check(r.header("Set-Cookie") is None, "an answer carries Set-Cookie: %r" %
                  r.header("Set-Cookie"))
            check(r.header("X-Served-By") in ("product-a", "product-b"),
                  "X-Served-By %r" % r.header("X-Served-By"))
        check(fake.calls == 0, "the gateway called the refused instance %d times" % fake.calls)
        text = metrics_parse(GATEWAY_PORT, "gateway")
        check("Set-Cookie" not in text, "the gateway's /metrics names the fake")
        metrics_parse(REGISTRY_ADMIN_PORT, "registry")
        metrics_parse(ADMIN_PORTS["order"], "order")
    finally:
        fake.close()


def test_advert_with_header_injecting_name_is_refused():
    refused_everywhere(INJECTED, None, "instance")


def test_advert_with_bad_rpc_url_is_refused():
    refused_everywhere("product-evil", "tcp://127.0.0.1:99999", "rpc_url")


CASES = [
    test_advert_with_header_injecting_name_is_refused,
    test_advert_with_bad_rpc_url_is_refused,
]
