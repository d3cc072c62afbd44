"""sp.py -- the REQ side of nng's REQ/REP (Scalability Protocols) over TCP,
in the standard library: what libnng's req0 socket does on the wire, for
one peer and one request at a time.

Wire format (nng's TCP transport, RFC "sp-tcp-mapping-01", and req0):
  - on connect each side sends 8 bytes: "\\x00SP\\x00", its protocol number
    as u16 big-endian (REQ 0x30 = 48, REP 0x31 = 49), then two zero bytes;
    each checks that the other is the protocol it pairs with;
  - then every message is a u64 big-endian length followed by that many
    bytes: a request is a 4-byte request id whose high bit is set, then the
    body; the REP side sends the id back in front of the reply body.

Every wait is bounded by the caller's deadline (time.monotonic() seconds):
connecting, the handshake, sending and each read. Any failure closes the
connection, so a late answer to an abandoned request can never be taken for
the answer of the next one; the next request reconnects.
"""

import os
import select
import socket
import struct
import time

from .errors import ConnectionLost, ProtocolError, ShopTimeout, Unreachable

PROTO_REQ = 0x30
PROTO_REP = 0x31
_HEADER = b"\x00SP\x00"
# Default bound on a reply: the services refuse messages above 1 MiB
# (SHOP_RPC_MAX_MSG), so nothing legitimate is larger.
MAX_REPLY = 1024 * 1024
# Default bound on connecting plus the handshake, within the call's own
# deadline: a peer that accepts and stays mute must leave a call the time to
# try another instance.
CONNECT_TIMEOUT = 1.0


def parse_url(url):
    """("127.0.0.1", 7211) for "tcp://127.0.0.1:7211"; "tcp://[::1]:7211"
    works too. Only nng's tcp transports are spoken (tcp://, tcp4://, tcp6://)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("tcp", "tcp4", "tcp6"):
        raise ValueError("unsupported nng URL %r: want tcp://HOST:PORT" % url)
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise ValueError("bad nng URL %r: want tcp://HOST:PORT" % url)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _left(deadline):
    return deadline - time.monotonic()


class ReqSocket:
    """One SP REQ connection to one REP peer at url; connects on first use.

    Not thread-safe: one request at a time (shop_client.rpc.RpcConnection
    adds the lock). max_reply bounds the reply body we accept (bytes);
    connect_timeout bounds connecting and the handshake (seconds)."""

    def __init__(self, url, max_reply=MAX_REPLY, connect_timeout=CONNECT_TIMEOUT):
        self.url = url
        self._addr = parse_url(url)
        self._max_reply = max_reply
        self._connect_timeout = connect_timeout
        self._sock = None
        # nng starts request ids at a random 31-bit value too.
        self._next_id = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF

    @property
    def connected(self):
        return self._sock is not None

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def request(self, body, deadline):
        """Sends body as one request and returns the reply body (bytes).
        Raises Unreachable, ConnectionLost, ShopTimeout or ProtocolError; on
        any of them the connection is closed."""
        try:
            if self._sock is not None and self._stale():
                self.close()
            if self._sock is None:
                self._connect(min(deadline, time.monotonic() + self._connect_timeout))
            rid = self._next_id | 0x80000000
            self._next_id = (self._next_id + 1) & 0x7FFFFFFF
            rid_bytes = struct.pack(">I", rid)
            self._send(struct.pack(">Q", 4 + len(body)) + rid_bytes + body, deadline)
            return self._recv_reply(rid_bytes, deadline)
        except BaseException:
            self.close()
            raise

    # -- connection

    def _connect(self, deadline):
        left = _left(deadline)
        if left <= 0:
            raise ShopTimeout("deadline passed before connecting", self.url, sent=False)
        try:
            sock = socket.create_connection(self._addr, timeout=left)
        except socket.timeout:
            raise ShopTimeout("connect timed out", self.url, sent=False) from None
        except OSError as e:
            raise Unreachable("cannot connect: %s" % (e.strerror or e), self.url) from None
        self._sock = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The handshake: nothing of a request has gone out yet, so a failure
        # here leaves any call safe to retry (sent=False).
        try:
            self._send(_HEADER + struct.pack(">HH", PROTO_REQ, 0), deadline, sent=False)
            peer = self._recv_exact(8, deadline, sent=False, what="SP handshake")
        except ConnectionLost:
            raise Unreachable("connection closed during the SP handshake", self.url) from None
        if peer[:4] != _HEADER or peer[6:] != b"\x00\x00":
            raise ProtocolError("not an SP peer (handshake %r)" % peer, self.url, sent=False)
        proto = struct.unpack(">H", peer[4:6])[0]
        if proto != PROTO_REP:
            raise ProtocolError("peer speaks SP protocol 0x%x, want REP (0x31)" % proto,
                                self.url, sent=False)

    def _stale(self):
        """True when a pooled connection was closed by the peer (a restarted
        service) or holds bytes nobody asked for: checked before reuse so
        that a request is not written into a dead connection."""
        try:
            if hasattr(select, "poll"):  # no FD_SETSIZE limit
                poller = select.poll()
                poller.register(self._sock, select.POLLIN)
                readable = poller.poll(0)
            else:
                readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            return True
        # A REP peer never speaks unasked: readable means EOF, a reset or junk.
        return bool(readable)

    # -- bytes

    def _send(self, data, deadline, sent=True):
        left = _left(deadline)
        if left <= 0:
            raise ShopTimeout("deadline passed before sending", self.url, sent=False)
        self._sock.settimeout(left)
        try:
            self._sock.sendall(data)
        except socket.timeout:
            raise ShopTimeout("send timed out", self.url, sent=sent) from None
        except OSError as e:
            raise ConnectionLost("send failed: %s" % (e.strerror or e), self.url,
                                 sent=sent) from None

    def _recv_exact(self, n, deadline, sent=True, what="reply"):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            left = _left(deadline)
            if left <= 0:
                raise ShopTimeout("no complete %s within the deadline (%d of %d bytes)"
                                  % (what, got, n), self.url, sent=sent)
            self._sock.settimeout(left)
            try:
                k = self._sock.recv_into(view[got:], n - got)
            except socket.timeout:
                continue  # the loop raises with the byte count
            except OSError as e:
                raise ConnectionLost("receive failed during the %s: %s"
                                     % (what, e.strerror or e), self.url, sent=sent) from None
            if k == 0:
                raise ConnectionLost("peer closed the connection during the %s (%d of %d bytes)"
                                     % (what, got, n), self.url, sent=sent)
            got += k
        return bytes(buf)

    def _recv_reply(self, rid_bytes, deadline):
        (length,) = struct.unpack(">Q", self._recv_exact(8, deadline, what="reply length"))
        if length < 4:
            raise ProtocolError("reply frame of %d bytes is shorter than a request id" % length,
                                self.url)
        if length - 4 > self._max_reply:
            raise ProtocolError("reply frame announces %d bytes, more than the %d accepted"
                                % (length, self._max_reply + 4), self.url)
        frame = self._recv_exact(length, deadline, what="reply frame")
        if frame[:4] != rid_bytes:
            raise ProtocolError("reply carries request id 0x%s, want 0x%s"
                                % (frame[:4].hex(), rid_bytes.hex()), self.url)
        return frame[4:]
