"""test_openapi.py -- docs/openapi.yaml itself: a structurally valid OpenAPI
3.1 document whose every $ref resolves and every schema is valid JSON Schema
2020-12, with exactly the routes of the gateway's table (edge-gateway/router.c,
with their token requirement) and every error code of the contract; and the
check that stack.py runs on every answer (tests/e2e/openapi.py) refuses wrong
answers, so that it cannot pass silently."""

import copy
import json
import os
import re

import openapi
import stack
from jsonschema import Draft202012Validator
from stack import Fail, check

ROUTER_C = os.path.join(stack.ROOT, "edge-gateway", "router.c")

# CONTRACT.md §2's codes, the two of docs/decisions.md (not_implemented) and
# of the order service's Idempotency-Key (idempotency_key_reused), each with
# its status.
CONTRACT_CODES = {
    ("invalid_argument", 400), ("missing_token", 401), ("invalid_token", 401),
    ("invalid_credentials", 401), ("name_taken", 409), ("order_not_found", 404),
    ("product_not_found", 404), ("not_found", 404), ("method_not_allowed", 405),
    ("payload_too_large", 413), ("unsupported_media_type", 415), ("too_many_requests", 429),
    ("service_unavailable", 503), ("product_service_unavailable", 503), ("internal", 500),
    ("not_implemented", 501), ("idempotency_key_reused", 422),
}

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
HEADERS = {"x-served-by": "gateway", "traceparent": "00-%s-00f067aa0ba902b7-01" % TRACE}


def router_routes():
    """{(METHOD, pattern): needs_token} from the route table of router.c."""
    with open(ROUTER_C) as f:
        text = f.read()
    table = text[text.index("routes[] = {"):]
    table = table[:table.index("};")]
    out = {}
    for entry in re.split(r"\n\s*\{(?=\.method)", table)[1:]:
        m = re.search(r'\.method = "(\w+)"', entry)
        p = re.search(r'\.pattern = "([^"]+)"', entry)
        check(m and p, "cannot read a route of router.c: %r" % entry[:120])
        out[(m.group(1), p.group(1))] = ".needs_token = true" in entry
    check(len(out) >= 10, "only %d routes read from router.c" % len(out))
    return out


def refs_in(node, path="#"):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield path, v
            else:
                yield from refs_in(v, path + "/" + str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from refs_in(v, "%s/%d" % (path, i))


def schemas_in(doc):
    """(where, schema) of every schema of the dereferenced document."""
    for name, s in doc["components"].get("schemas", {}).items():
        yield "components/schemas/" + name, s
    for name, h in doc["components"].get("headers", {}).items():
        yield "components/headers/" + name, h["schema"]

    def responses(where, rs):
        for code, r in rs.items():
            for hname, h in (r.get("headers") or {}).items():
                yield "%s %s header %s" % (where, code, hname), h["schema"]
            for media, mt in (r.get("content") or {}).items():
                if "schema" in mt:
                    yield "%s %s %s" % (where, code, media), mt["schema"]

    for tmpl, item in doc["paths"].items():
        for p in item.get("parameters", []):
            yield "%s parameter %s" % (tmpl, p["name"]), p["schema"]
        for method, op in item.items():
            if method not in openapi.HTTP_METHODS:
                continue
            where = "%s %s" % (method.upper(), tmpl)
            for p in op.get("parameters", []):
                yield "%s parameter %s" % (where, p["name"]), p["schema"]
            body = op.get("requestBody")
            for media, mt in ((body or {}).get("content") or {}).items():
                yield "%s request %s" % (where, media), mt["schema"]
            yield from responses(where, op["responses"])
    for name, un in doc.get("x-unmatched", {}).items():
        yield from responses("x-unmatched " + name, un["responses"])


def check_structure(raw, doc):
    check(isinstance(raw.get("openapi"), str) and re.fullmatch(r"3\.1\.\d+", raw["openapi"]),
          "openapi is %r, want 3.1.x" % raw.get("openapi"))
    info = raw.get("info") or {}
    check(isinstance(info.get("title"), str) and isinstance(info.get("version"), str),
          "info needs a title and a version: %r" % info)
    check(isinstance(raw.get("paths"), dict) and raw["paths"], "no paths")
    schemes = raw.get("components", {}).get("securitySchemes", {})
    bearer = schemes.get("bearerAuth", {})
    check(bearer.get("type") == "http" and bearer.get("scheme") == "bearer"
          and bearer.get("bearerFormat") == "JWT", "securitySchemes.bearerAuth %r" % bearer)
    for req in raw.get("security", []):
        for name in req:
            check(name in schemes, "security names an unknown scheme %r" % name)
    op_ids = set()
    for tmpl, item in doc["paths"].items():
        check(tmpl.startswith("/"), "path %r does not start with /" % tmpl)
        names = set(re.findall(r"\{([^}]+)\}", tmpl))
        for method, op in item.items():
            if method not in openapi.HTTP_METHODS:
                check(method in ("parameters", "summary", "description", "servers")
                      or method.startswith("x-"), "%s: unknown key %r" % (tmpl, method))
                continue
            where = "%s %s" % (method.upper(), tmpl)
            oid = op.get("operationId")
            check(isinstance(oid, str) and oid not in op_ids, "%s: operationId %r" % (where, oid))
            op_ids.add(oid)
            params = item.get("parameters", []) + op.get("parameters", [])
            for p in params:
                check(p.get("in") in ("path", "query", "header", "cookie") and p.get("name")
                      and "schema" in p, "%s: parameter %r" % (where, p))
            declared = {p["name"] for p in params if p["in"] == "path"}
            check(declared == names, "%s: path parameters %r, template has %r"
                  % (where, sorted(declared), sorted(names)))
            for p in params:
                if p["in"] == "path":
                    check(p.get("required") is True, "%s: path parameter %s not required"
                          % (where, p["name"]))
            rs = op.get("responses")
            check(isinstance(rs, dict) and rs, "%s: no responses" % where)
            for code, r in rs.items():
                check(re.fullmatch(r"[1-5](\d\d|XX)|default", code), "%s: response key %r"
                      % (where, code))
                check(isinstance(r.get("description"), str), "%s %s: no description"
                      % (where, code))
            for sec in op.get("security", []):
                for name in sec:
                    check(name in schemes, "%s: unknown security scheme %r" % (where, name))
    return op_ids


def check_routes(doc):
    routes = router_routes()
    spec_ops = {}
    for tmpl, item in doc["paths"].items():
        for method, op in item.items():
            if method in openapi.HTTP_METHODS:
                needs = op["security"] if "security" in op else doc.get("security", [])
                spec_ops[(method.upper(), tmpl)] = bool(needs) and all(needs)
    missing = sorted(set(routes) - set(spec_ops))
    extra = sorted(set(spec_ops) - set(routes))
    check(not missing, "routes of router.c missing from docs/openapi.yaml: %r" % missing)
    check(not extra, "operations in docs/openapi.yaml that router.c does not route: %r" % extra)
    for key, needs_token in routes.items():
        check(spec_ops[key] == needs_token, "%s %s: router.c needs_token=%s, spec security %s"
              % (key[0], key[1], needs_token, "bearer" if spec_ops[key] else "none"))
        if needs_token:
            op = doc["paths"][key[1]][key[0].lower()]
            check("401" in op["responses"], "%s %s: no 401 documented" % key)
    return len(routes)


def documented_codes(doc):
    """(code, status) of every problem the description allows."""
    out = set()

    def walk(rs):
        for code, r in rs.items():
            mt = (r.get("content") or {}).get("application/problem+json")
            if not mt:
                continue
            for part in mt["schema"].get("allOf", []):
                c = part.get("properties", {}).get("code", {})
                for v in c.get("enum", []) + ([c["const"]] if "const" in c else []):
                    out.add((v, int(code)))

    for item in doc["paths"].values():
        for method, op in item.items():
            if method in openapi.HTTP_METHODS:
                walk(op["responses"])
    for un in doc.get("x-unmatched", {}).values():
        walk(un["responses"])
    return out


# ------------------------------------------------- the validator has teeth

def _problem(status, title, code):
    return {"type": "about:blank", "title": title, "status": status, "detail": "d",
            "code": code, "trace_id": TRACE}


def _answers():
    """(method, path, status, headers, body) of answers that match, each
    with wrong variants that must not."""
    product = {"id": 7, "name": "Keyboard", "supply_price": 30000,
               "created_at": "2026-11-23T10:00:00.123Z"}
    order = {"id": 3, "user_id": 1, "items": [{"product_id": 7, "name": "Keyboard",
                                               "supply_price": 30000}],
             "total_supply_price": 30000, "created_at": "2026-11-23T10:00:00Z",
             "updated_at": "2026-11-23T10:00:01Z"}
    json_h = dict(HEADERS, **{"content-type": "application/json"})
    prob_h = dict(HEADERS, **{"content-type": "application/problem+json"})
    good = {
        "product": ("POST", "/products", 201, dict(json_h, location="/products/7"), product),
        "order": ("GET", "/orders/3", 200, dict(json_h, **{"x-cache": "HIT", "x-served-by": "order"}),
                  order),
        "401": ("GET", "/products?page_size=1", 401,
                dict(prob_h, **{"www-authenticate": "Bearer"}),
                _problem(401, "Unauthorized", "missing_token")),
        "404": ("GET", "/nope", 404, prob_h, _problem(404, "Not Found", "not_found")),
        "405": ("DELETE", "/products", 405, dict(prob_h, allow="GET, POST"),
                _problem(405, "Method Not Allowed", "method_not_allowed")),
        "page": ("GET", "/products", 200, json_h, {"products": [product], "next_page_token": ""}),
    }

    def mutate(key, what, f):
        m, p, st, h, body = copy.deepcopy(good[key])
        res = f(h, body)
        if isinstance(res, tuple):  # (status, body): a changed status
            st, body = res
        return what, (m, p, st, h, body)

    bad = [
        mutate("product", "an undocumented field in a product",
               lambda h, b: b.update(colour="red")),
        mutate("product", "an id that is a string", lambda h, b: b.update(id="7")),
        mutate("product", "a price past 1e9", lambda h, b: b.update(supply_price=10 ** 9 + 1)),
        mutate("product", "created_at not RFC 3339 UTC",
               lambda h, b: b.update(created_at="2026-11-23 10:00:00")),
        mutate("product", "no Location on a 201", lambda h, b: h.pop("location")),
        mutate("product", "no X-Served-By", lambda h, b: h.pop("x-served-by")),
        mutate("product", "a bad traceparent", lambda h, b: h.update(traceparent="01-x")),
        mutate("product", "text/html instead of JSON",
               lambda h, b: h.update({"content-type": "text/html"})),
        mutate("product", "an undocumented status", lambda h, b: (418, b)),
        mutate("order", "no X-Cache on GET /orders/{id}", lambda h, b: h.pop("x-cache")),
        mutate("order", "X-Cache: STALE", lambda h, b: h.update({"x-cache": "STALE"})),
        mutate("order", "an item without its name", lambda h, b: b["items"][0].pop("name")),
        mutate("order", "no items", lambda h, b: b.update(items=[])),
        mutate("401", "no WWW-Authenticate on a token 401",
               lambda h, b: h.pop("www-authenticate")),
        mutate("401", "a 401 code that is not a token's",
               lambda h, b: b.update(code="invalid_credentials")),
        mutate("401", "a problem without trace_id", lambda h, b: b.pop("trace_id")),
        mutate("401", "a problem whose status is not the answer's",
               lambda h, b: b.update(status=403)),
        mutate("401", "a trace_id that is not the traceparent's",
               lambda h, b: b.update(trace_id="0" * 31 + "1")),
        mutate("404", "order_not_found for a path with no route",
               lambda h, b: b.update(code="order_not_found")),
        mutate("404", "a problem as application/json",
               lambda h, b: h.update({"content-type": "application/json"})),
        mutate("405", "no Allow on a 405", lambda h, b: h.pop("allow")),
        mutate("page", "no next_page_token", lambda h, b: b.pop("next_page_token")),
        mutate("page", "a product of a page with an extra field",
               lambda h, b: b["products"][0].update(extra=1)),
    ]
    return good, bad


def check_teeth(spec):
    good, bad = _answers()
    for name, (m, p, st, h, body) in good.items():
        errs = spec.errors(m, p, st, h, json.dumps(body).encode())
        check(not errs, "the valid %s answer is refused: %s" % (name, errs))
    for what, (m, p, st, h, body) in bad:
        errs = spec.errors(m, p, st, h, json.dumps(body).encode())
        check(errs, "the validator accepts %s" % what)
    refusal = _problem(400, "Bad Request", "invalid_argument")
    up_h = {"content-type": "application/problem+json", "traceparent": HEADERS["traceparent"]}
    errs = spec.errors("GET", "/healthz", 400, up_h, json.dumps(refusal).encode(), "websocket")
    check(not errs, "the valid upgrade refusal is refused: %s" % errs)
    check(spec.errors("GET", "/healthz", 101, up_h, b"", "websocket"),
          "the validator accepts a 101 to an upgrade")
    # Through the hook's own entry point: a stack.Fail naming the operation.
    m, p, st, h, body = bad[0][1]
    try:
        spec.check(m, p, st, h, json.dumps(body).encode())
    except Fail as e:
        check("createProduct" in str(e) and "colour" in str(e),
              "the failure does not name the operation and the field: %s" % e)
    else:
        raise Fail("Spec.check did not raise on %s" % bad[0][0])
    return len(bad) + 1


def check_live(spec):
    """Real answers: the hook passes them, and the same answers made wrong
    are refused."""
    r = stack.api("GET", "/products?page_size=1")  # the hook checks it
    check(r.status == 200, "GET /products -> %r" % r)
    doc = r.json()
    doc["unexpected"] = True
    errs = spec.errors("GET", "/products?page_size=1", 200, r.headers, json.dumps(doc).encode())
    check(errs and "unexpected" in errs[0], "a live page with an extra field passed: %r" % errs)
    r = stack.request("GET", "/orders/1")  # no token: 401, checked by the hook
    check(r.status == 401, "GET /orders/1 without a token -> %r" % r)
    h = dict(r.headers)
    h.pop("www-authenticate", None)
    errs = spec.errors("GET", "/orders/1", 401, h, r.body)
    check(errs, "a live 401 without WWW-Authenticate passed")
    r = stack.request("GET", "/nope")
    check(r.status == 404, "GET /nope -> %r" % r)
    errs = spec.errors("GET", "/nope", 200, r.headers, r.body)
    check(errs, "a 200 to an unknown path passed")


def test_openapi_document_is_valid_and_checks_have_teeth():
    raw = openapi.load_yaml()
    for where, ref in refs_in(raw):
        try:
            openapi.resolve_pointer(raw, ref)
        except openapi.SpecError as e:
            raise Fail("%s: %s" % (where, e))
    doc = openapi.deref(raw)  # also refuses a circular $ref
    ops = check_structure(raw, doc)
    n_schemas, seen = 0, set()
    for where, schema in schemas_in(doc):
        key = json.dumps(schema, sort_keys=True)
        if key in seen:
            continue  # the same component, dereferenced in another place
        seen.add(key)
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as e:  # noqa: BLE001 -- SchemaError, with its message
            raise Fail("%s: not a valid JSON Schema 2020-12: %s" % (where, e))
        n_schemas += 1
    unmatched = set(doc.get("x-unmatched", {}))
    want = {"unknown-path", "other-method", "upgrade-refused", "refused-request"}
    check(unmatched == want, "x-unmatched has %r, want %r" % (sorted(unmatched), sorted(want)))
    n_routes = check_routes(doc)
    missing = sorted(CONTRACT_CODES - documented_codes(doc))
    check(not missing, "error codes of the contract not documented: %r" % missing)
    spec = openapi.spec()
    n_bad = check_teeth(spec)
    check_live(spec)
    check(openapi.ENABLED, "SHOP_E2E_OPENAPI=0: answers are not being checked")
    return "%d operations = the %d routes of router.c, %d schemas, %d wrong answers refused" % (
        len(ops), n_routes, n_schemas, n_bad)


CASES = [test_openapi_document_is_valid_and_checks_have_teeth]
