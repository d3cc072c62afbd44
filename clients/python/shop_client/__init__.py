"""shop_client -- a Python client of the shop services over nng REQ/REP.

Pure standard library plus python3-protobuf and the committed stubs of
gen/python: the SP wire protocol is spoken over plain TCP sockets
(shop_client.sp), no libnng needed.

    from shop_client import ShopClient, NotFound

    with ShopClient("tcp://127.0.0.1:7101") as shop:
        me = shop.sign_in("kim", "correct horse")
        for p in shop.iter_products():
            print(p.id, p.name, p.supply_price)
        try:
            shop.create_order([123456789], user_id=me.user_id)
        except NotFound as e:
            print(e.reason, e.metadata)   # PRODUCT_NOT_FOUND {'product_id': '123456789'}
"""

from .client import ShopClient
from .discovery import DEFAULT_REGISTRY_URL, Instance, Registry, View, pick
from .errors import (AlreadyExists, Cancelled, ConnectionLost, DeadlineExceeded, DiscoveryError,
                     FailedPrecondition, Internal, InvalidArgument, NoInstance, NotFound,
                     PermissionDenied, ProtocolError, ResourceExhausted, RpcError, ShopError,
                     ShopTimeout, TransportError, Unauthenticated, Unavailable, Unimplemented,
                     Unknown, Unreachable, code_name)
from .rpc import Reply, RpcConnection
from .stubs import METHODS, Method, to_dict

__all__ = [
    "ShopClient", "Registry", "View", "Instance", "pick", "DEFAULT_REGISTRY_URL",
    "RpcConnection", "Reply", "Method", "METHODS", "to_dict", "code_name",
    "ShopError", "TransportError", "Unreachable", "ConnectionLost", "ShopTimeout",
    "ProtocolError", "DiscoveryError", "NoInstance", "RpcError", "Cancelled", "Unknown",
    "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists", "PermissionDenied",
    "ResourceExhausted", "FailedPrecondition", "Unimplemented", "Internal", "Unavailable",
    "Unauthenticated",
]
