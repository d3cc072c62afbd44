"""stubs.py -- the committed protobuf stubs of gen/python, and the method
table built from their service descriptors (so that a method name here can
never drift from proto/shop/v1).

The stubs are imported as the package `shop.v1`. When it is not on sys.path
and this package sits in its checkout (clients/python/shop_client), the
checkout's gen/python is added.
"""

import os
import sys

try:
    from shop.v1 import auth_pb2, order_pb2, product_pb2, registry_pb2, rpc_pb2
except ImportError:
    _GEN = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "..", "..", "..", "gen", "python"))
    if not os.path.isfile(os.path.join(_GEN, "shop", "v1", "rpc_pb2.py")):
        raise ImportError("shop_client needs the stubs of gen/python: put that folder on "
                          "PYTHONPATH (and install python3-protobuf)") from None
    sys.path.append(_GEN)
    from shop.v1 import auth_pb2, order_pb2, product_pb2, registry_pb2, rpc_pb2  # noqa: E402

_MODULES = {m.DESCRIPTOR.name: m for m in (auth_pb2, order_pb2, product_pb2, registry_pb2, rpc_pb2)}


class Method:
    """One RPC: its wire name ("/shop.v1.ProductService/ListProducts"), the
    service to discover ("product"), its request and response classes, and
    whether sending it twice is harmless (then a transport failure is
    retried once on another instance, as CONTRACT §5 says)."""

    __slots__ = ("path", "service", "request", "response", "idempotent")

    def __init__(self, path, service, request, response, idempotent):
        self.path = path
        self.service = service
        self.request = request
        self.response = response
        self.idempotent = idempotent

    def __repr__(self):
        return "<Method %s>" % self.path


def _class_of(desc):
    return getattr(_MODULES[desc.file.name], desc.name)


def _method(module, service_name, rpc_name, service, idempotent):
    sdesc = module.DESCRIPTOR.services_by_name[service_name]
    mdesc = sdesc.methods_by_name[rpc_name]
    return Method("/%s/%s" % (sdesc.full_name, mdesc.name), service,
                  _class_of(mdesc.input_type), _class_of(mdesc.output_type), idempotent)


SIGN_UP = _method(auth_pb2, "AuthService", "SignUp", "auth", False)
# Not idempotent: a failed sign-in counts against the name's throttle.
SIGN_IN = _method(auth_pb2, "AuthService", "SignIn", "auth", False)
CREATE_PRODUCT = _method(product_pb2, "ProductService", "CreateProduct", "product", False)
LIST_PRODUCTS = _method(product_pb2, "ProductService", "ListProducts", "product", True)
GET_PRODUCTS = _method(product_pb2, "ProductService", "GetProducts", "product", True)
CREATE_ORDER = _method(order_pb2, "OrderService", "CreateOrder", "order", False)
ADD_ORDER_ITEM = _method(order_pb2, "OrderService", "AddOrderItem", "order", False)
GET_ORDER = _method(order_pb2, "OrderService", "GetOrder", "order", True)

METHODS = {m.path: m for m in (SIGN_UP, SIGN_IN, CREATE_PRODUCT, LIST_PRODUCTS, GET_PRODUCTS,
                               CREATE_ORDER, ADD_ORDER_ITEM, GET_ORDER)}


def to_dict(msg):
    """A message as plain Python values, every field present (defaults
    included), int64 as int: the shape of the gateway's JSON (§2)."""
    out = {}
    for f in msg.DESCRIPTOR.fields:
        v = getattr(msg, f.name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            vf = f.message_type.fields_by_name["value"]
            out[f.name] = {k: (to_dict(x) if vf.message_type else x) for k, x in v.items()}
        elif f.label == f.LABEL_REPEATED:
            out[f.name] = [to_dict(x) if f.message_type else x for x in v]
        elif f.message_type is not None:
            out[f.name] = to_dict(v) if msg.HasField(f.name) else None
        else:
            out[f.name] = v
    return out
