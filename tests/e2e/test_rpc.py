"""test_rpc.py -- a product instance spoken to with stock tools only: protoc
encodes the request from proto/shop/v1, nngcat carries it over REQ/REP,
protoc decodes the answer. This is what any language's client would do."""

import os
import re
import subprocess
import sys
import tempfile

from stack import RPC_PORTS, ROOT, check

sys.path.insert(0, os.path.join(ROOT, "gen", "python"))

PROTO_ROOT = os.path.join(ROOT, "proto")
PROTOS = [os.path.join(PROTO_ROOT, "shop", "v1", f) for f in ("rpc.proto", "product.proto")]


def protoc(mode, type_name, data):
    p = subprocess.run(["protoc", "--proto_path=" + PROTO_ROOT, "--%s=%s" % (mode, type_name)] + PROTOS,
                       input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    check(p.returncode == 0, "protoc --%s=%s: %s" % (mode, type_name, p.stderr.decode(errors="replace")))
    return p.stdout


def text_bytes(b):
    """b as a protobuf text-format string literal."""
    return '"' + "".join("\\%03o" % c for c in b) + '"'


def nngcat(port, payload):
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(payload)
        f.flush()
        p = subprocess.run(["nngcat", "--req", "--connect", "tcp://127.0.0.1:%d" % port,
                            "--file", f.name, "--raw", "--recv-timeout", "5", "--send-timeout", "5"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    check(p.returncode == 0, "nngcat exited %d: %s" % (p.returncode, p.stderr.decode(errors="replace")))
    # An empty reply is a valid message: an RpcResponse with every field at
    # its default (code 0, empty payload).
    return p.stdout


def text_field(text, name):
    m = re.search(r"(?m)^%s: (.*)$" % name, text)
    return m.group(1) if m else None


def test_nngcat_list_products_with_protoc_encoded_request():
    inner = protoc("encode", "shop.v1.ListProductsRequest", b"page_size: 5\n")
    req = protoc("encode", "shop.v1.RpcRequest",
                 ('method: "/shop.v1.ProductService/ListProducts"\npayload: %s\n' % text_bytes(inner)).encode())
    reply = nngcat(RPC_PORTS["product-a"], req)
    text = protoc("decode", "shop.v1.RpcResponse", reply).decode()
    code = text_field(text, "code")
    check(code in (None, "0"), "RpcResponse code %r:\n%s" % (code, text))  # proto3 omits 0
    # The payload is a ListProductsResponse; decode it with the committed stubs.
    from shop.v1 import product_pb2, rpc_pb2
    resp = rpc_pb2.RpcResponse.FromString(reply)
    lst = product_pb2.ListProductsResponse.FromString(resp.payload)
    check(len(lst.products) >= 1, "no product in the reply: %r" % lst)
    check(len(lst.products) <= 5, "%d products for page_size 5" % len(lst.products))
    p = lst.products[0]
    check(p.id > 0 and p.name and p.created_at, "odd product %r" % p)
    payload_text = protoc("decode", "shop.v1.ListProductsResponse", resp.payload).decode()
    check("products {" in payload_text, "protoc sees no product:\n%s" % payload_text)
    return "%d products, first #%d %r" % (len(lst.products), p.id, p.name)


def test_nngcat_junk_answers_invalid_argument():
    reply = nngcat(RPC_PORTS["product-a"], b"\xff\xff\xff junk that is no RpcRequest")
    text = protoc("decode", "shop.v1.RpcResponse", reply).decode()
    check(text_field(text, "code") == "3", "want code 3 (INVALID_ARGUMENT):\n%s" % text)


def test_unknown_method_answers_unimplemented():
    req = protoc("encode", "shop.v1.RpcRequest", b'method: "/shop.v1.ProductService/Nope"\n')
    text = protoc("decode", "shop.v1.RpcResponse", nngcat(RPC_PORTS["product-b"], req)).decode()
    check(text_field(text, "code") == "12", "want code 12 (UNIMPLEMENTED):\n%s" % text)


def test_passed_deadline_answers_deadline_exceeded():
    inner = protoc("encode", "shop.v1.ListProductsRequest", b"page_size: 1\n")
    req = protoc("encode", "shop.v1.RpcRequest",
                 ('method: "/shop.v1.ProductService/ListProducts"\npayload: %s\ndeadline_unix_ms: 1000\n'
                  % text_bytes(inner)).encode())
    text = protoc("decode", "shop.v1.RpcResponse", nngcat(RPC_PORTS["product-a"], req)).decode()
    check(text_field(text, "code") == "4", "want code 4 (DEADLINE_EXCEEDED):\n%s" % text)


CASES = [
    test_nngcat_list_products_with_protoc_encoded_request,
    test_nngcat_junk_answers_invalid_argument,
    test_unknown_method_answers_unimplemented,
    test_passed_deadline_answers_deadline_exceeded,
]
