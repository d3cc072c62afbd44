"""python3 -m shop_client -- a small command line over ShopClient; prints
JSON. Exit status 0 on success, 1 on an RPC error (the error as JSON on
stderr), 2 on a usage error, 3 when no answer came (transport, discovery).

    python3 -m shop_client [--registry URL] [--timeout S] COMMAND ...
      lookup [SERVICE]                   instances from the registry
      sign-up NAME | sign-in NAME        password from $SHOP_PASSWORD or a prompt
      products [--page-size N] [--all]   one page, or every product
      create-product NAME PRICE
      create-order --user ID PRODUCT_ID...
      add-item --user ID ORDER_ID PRODUCT_ID
      get-order --user ID ORDER_ID
"""

import argparse
import getpass
import json
import os
import sys

from . import DEFAULT_REGISTRY_URL, RpcError, ShopClient, ShopError, to_dict


def _password():
    return os.environ.get("SHOP_PASSWORD") or getpass.getpass("password: ")


def _run(shop, a):
    if a.cmd == "lookup":
        found, rev = shop.lookup(a.service)
        return {"revision": rev, "instances": [{k: getattr(i, k) for k in i.__slots__}
                                               for i in found]}
    if a.cmd == "sign-up":
        return to_dict(shop.sign_up(a.name, _password()))
    if a.cmd == "sign-in":
        return to_dict(shop.sign_in(a.name, _password()))
    if a.cmd == "products":
        if a.all:
            return {"products": [to_dict(p) for p in shop.iter_products(a.page_size or 100)]}
        return to_dict(shop.list_products(a.page_size, a.page_token))
    if a.cmd == "create-product":
        return to_dict(shop.create_product(a.name, a.price))
    if a.cmd == "create-order":
        return to_dict(shop.create_order(a.product_ids, user_id=a.user))
    if a.cmd == "add-item":
        return to_dict(shop.add_order_item(a.order_id, a.product_id, user_id=a.user))
    if a.cmd == "get-order":
        return to_dict(shop.get_order(a.order_id, user_id=a.user))
    raise AssertionError(a.cmd)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m shop_client",
                                 description="Call the shop services over nng.")
    ap.add_argument("--registry", default=os.environ.get("SHOP_REGISTRY_LOOKUP_URL",
                                                         DEFAULT_REGISTRY_URL),
                    help="registry lookup URL (default $SHOP_REGISTRY_LOOKUP_URL or %(default)s)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per call")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("lookup")
    p.add_argument("service", nargs="?", default="")
    for name in ("sign-up", "sign-in"):
        sub.add_parser(name).add_argument("name")
    p = sub.add_parser("products")
    p.add_argument("--page-size", type=int, default=0)
    p.add_argument("--page-token", default="")
    p.add_argument("--all", action="store_true")
    p = sub.add_parser("create-product")
    p.add_argument("name")
    p.add_argument("price", type=int)
    p = sub.add_parser("create-order")
    p.add_argument("--user", type=int, required=True)
    p.add_argument("product_ids", type=int, nargs="+")
    p = sub.add_parser("add-item")
    p.add_argument("--user", type=int, required=True)
    p.add_argument("order_id", type=int)
    p.add_argument("product_id", type=int)
    p = sub.add_parser("get-order")
    p.add_argument("--user", type=int, required=True)
    p.add_argument("order_id", type=int)
    a = ap.parse_args(argv)
    try:
        with ShopClient(a.registry, timeout=a.timeout) as shop:
            out = _run(shop, a)
    except RpcError as e:
        json.dump({"code": e.code, "code_name": e.code_name, "reason": e.reason,
                   "message": e.message, "metadata": e.metadata,
                   "dependency_failed": e.dependency_failed}, sys.stderr, ensure_ascii=False)
        sys.stderr.write("\n")
        return 1
    except ShopError as e:
        print("shop_client: %s" % e, file=sys.stderr)
        return 3
    except ValueError as e:  # a bad URL or timeout
        print("shop_client: %s" % e, file=sys.stderr)
        return 2
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
