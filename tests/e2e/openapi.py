"""openapi.py -- checks the gateway's answers against docs/openapi.yaml.

stack.request() (and stack.raw_request(), when it reads a whole answer to a
well-formed request) hands every answer from the gateway's port to
check_answer(): the request's method and path are matched to an operation of
the description (paths normalised as the gateway does, edge-gateway/router.c),
or to the `x-unmatched` responses when no operation matches; the answer's
status picks the response (or the `NXX` range, or `default`); then the
documented headers (required ones present, values matching their schema),
the content type, and the body (JSON Schema 2020-12, Draft202012Validator)
are checked. A mismatch raises stack.Fail naming the operation, the status
and the schema error.

The description is read once (python3-yaml), every $ref is resolved once,
each schema is compiled into a validator the first time it is used, and a
body (or header value) already found valid against a schema is not validated
again, so the load cases' thousands of identical pages cost little.
SHOP_E2E_OPENAPI=0 turns the checks off.
"""

import json
import os
import re
import threading

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

import stack

SPEC_FILE = os.path.join(stack.ROOT, "docs", "openapi.yaml")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# SHOP_E2E_OPENAPI=0 turns the check of every answer off (for comparing).
ENABLED = os.environ.get("SHOP_E2E_OPENAPI", "1") != "0"


class SpecError(Exception):
    """The description itself is broken (a $ref that does not resolve...)."""


# ---------------------------------------------------------------- loading

def load_yaml(path=SPEC_FILE):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def resolve_pointer(doc, ref):
    """What the local reference ref ("#/components/schemas/X") points at."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise SpecError("$ref %r is not a local reference" % (ref,))
    node = doc
    if ref in ("#", "#/"):
        return node
    if not ref.startswith("#/"):
        raise SpecError("$ref %r is not a JSON pointer" % ref)
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise SpecError("$ref %r does not resolve (no %r)" % (ref, part))
    return node


def deref(doc):
    """A copy of doc with every $ref replaced by its target. Siblings of a
    $ref (OpenAPI 3.1 allows summary/description; JSON Schema 2020-12 any
    keyword) are kept: descriptions override, schema keywords are combined
    with the target through allOf. Raises SpecError on an unresolvable or
    circular reference."""

    def walk(node, seen):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                if ref in seen:
                    raise SpecError("circular $ref %s (via %s)" % (ref, " -> ".join(seen)))
                target = walk(resolve_pointer(doc, ref), seen + (ref,))
                rest = {k: walk(v, seen) for k, v in node.items() if k != "$ref"}
                if not rest:
                    return target
                if set(rest) <= {"summary", "description"} and isinstance(target, dict):
                    merged = dict(target)
                    merged.update(rest)
                    return merged
                rest["allOf"] = [target] + rest.get("allOf", [])
                return rest
            return {k: walk(v, seen) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, seen) for v in node]
        return node

    return walk(doc, ())


def _str_keys(responses):
    # YAML reads an unquoted 200 as an int: status keys are strings here.
    return {str(k): v for k, v in (responses or {}).items()}


# -------------------------------------------------------- path matching

_HEX = "0123456789abcdefABCDEF"
_BAD_ESCAPE = re.compile(r"%(?![0-9a-fA-F]{2})")


def lws_path(raw):
    """The path libwebsockets 4.1 hands the gateway for the request target's
    path raw (before any "?"): percent-decoded once, cut at a decoded NUL,
    "//" and "/./" collapsed and "/../" resolved (a ".." at the very end
    drops the segment before it and its slash). None when lws refuses the
    request itself (an invalid escape: its own 403 page)."""
    dec, i = [], 0
    while i < len(raw):
        c = raw[i]
        if c == "%":
            h = raw[i + 1:i + 3]
            if len(h) != 2 or h[0] not in _HEX or h[1] not in _HEX:
                return None
            c = chr(int(h, 16))
            i += 3
        else:
            i += 1
        if c == "\0":
            break
        dec.append(c)
    out, state = [], "idle"

    def back_up():
        # out ends with "/": drop the last segment, keep its leading "/"
        if len(out) > 1:
            del out[-1]
            while out and out[-1] != "/":
                del out[-1]
            if not out:
                out.append("/")

    for c in dec:
        if state == "slash":
            if c == "/":
                continue
            if c == ".":
                state = "dot"
                continue
        elif state == "dot":
            if c == ".":
                state = "dotdot"
                continue
            if c == "/":
                state = "slash"
                continue
            out.append(".")
        elif state == "dotdot":
            if c == "/":
                back_up()
                state = "slash"
                continue
            out.extend("..")
        out.append(c)
        state = "slash" if c == "/" else "idle"
    if state == "dotdot":
        back_up()
        if len(out) > 1 and out[-1] == "/":
            del out[-1]
    return "".join(out)


def normalize_path(raw):
    """The gateway's gw_path_normalize (edge-gateway/router.c) in Python:
    percent-decodes, drops empty and "." segments, resolves ".." (never above
    the root), keeps a trailing slash. None when the gateway answers 400."""
    if not raw.startswith("/"):
        return None
    segs, trailing = [], False
    for seg in raw.split("/")[1:]:
        out, i = [], 0
        while i < len(seg):
            c = seg[i]
            if c == "%":
                h = seg[i + 1:i + 3]
                if len(h) != 2 or h[0] not in _HEX or h[1] not in _HEX:
                    return None
                c = chr(int(h, 16))
                if c in "/\\\0":
                    return None
                i += 3
            else:
                i += 1
            out.append(c)
        seg = "".join(out)
        trailing = False
        if seg in ("", "."):
            trailing = True
        elif seg == "..":
            if segs:
                segs.pop()
            trailing = True
        else:
            segs.append(seg)
    path = "/" + "/".join(segs)
    if segs and trailing:
        path += "/"
    return path


def _template_matches(tsegs, segs):
    if len(tsegs) != len(segs):
        return False
    for t, s in zip(tsegs, segs):
        if t.startswith("{") and t.endswith("}"):
            if s == "":
                return False
        elif t != s:
            return False
    return True


# -------------------------------------------------------------- the spec

class Spec:
    def __init__(self, path=SPEC_FILE):
        self.path = path
        self.raw = load_yaml(path)
        self.doc = deref(self.raw)
        self.routes = []  # (template, its segments, {METHOD: operation})
        for tmpl, item in (self.doc.get("paths") or {}).items():
            ops = {m.upper(): op for m, op in item.items() if m in HTTP_METHODS}
            for op in ops.values():
                op["responses"] = _str_keys(op.get("responses"))
            self.routes.append((tmpl, tmpl.split("/")[1:], ops))
        um = self.doc.get("x-unmatched") or {}
        self.unknown_path = _str_keys((um.get("unknown-path") or {}).get("responses"))
        self.other_method = _str_keys((um.get("other-method") or {}).get("responses"))
        self.refused = _str_keys((um.get("refused-request") or {}).get("responses"))
        self.upgrade_refused = _str_keys((um.get("upgrade-refused") or {}).get("responses"))
        self._validators = {}
        self._lock = threading.Lock()
        # (id(schema), raw header value or body bytes) already found valid:
        # the load cases get the same page thousands of times. Bounded.
        self._valid = set()

    # What answers method + path: (label for messages, responses).
    def find(self, method, target):
        path, _, query = target.partition("?")
        seen = lws_path(path)
        if seen is None or _BAD_ESCAPE.search(query):
            return "%s %s (refused by libwebsockets: x-unmatched refused-request)" % (
                method, path), self.refused
        norm = normalize_path(seen)
        if norm is None:
            return "%s %s (malformed path: x-unmatched unknown-path)" % (method, path), \
                self.unknown_path
        segs = norm.split("/")[1:]
        known = []
        for tmpl, tsegs, ops in self.routes:
            if _template_matches(tsegs, segs):
                op = ops.get(method)
                if op is not None:
                    return "%s %s (%s)" % (method, tmpl, op.get("operationId", "?")), \
                        op["responses"]
                known.append(tmpl)
        if known:
            return "%s %s (no %s on %s: x-unmatched other-method)" % (
                method, path, method, known[0]), self.other_method
        return "%s %s (no route: x-unmatched unknown-path)" % (method, path), self.unknown_path

    def validator(self, schema):
        """The compiled validator of a schema of the description (made once)."""
        entry = self._validators.get(id(schema))
        if entry is None:
            with self._lock:
                entry = self._validators.get(id(schema))
                if entry is None:
                    # The schema is kept with its validator, so that its id
                    # can never be reused by another object.
                    entry = (Draft202012Validator(schema), schema)
                    self._validators[id(schema)] = entry
        return entry[0]

    def first_error(self, schema, inst, raw):
        """The most relevant error of inst against schema, or None. raw (the
        bytes or text inst was read from) keys a cache of valid results."""
        key = (id(schema), raw)
        if key in self._valid:
            return None
        err = best_match(self.validator(schema).iter_errors(inst))
        if err is None and len(raw) <= 16384:
            if len(self._valid) >= 4096:
                self._valid.clear()
            self._valid.add(key)
        return err

    def errors(self, method, target, status, headers, body, upgrade=None):
        """The mismatches of one answer, as a list of strings (empty: it
        matches). headers: lower-case name -> value; upgrade: the request's
        Upgrade header, if it had one."""
        if upgrade is None:
            label, responses = self.find(method, target)
        elif upgrade.strip().lower() in ("websocket", "h2c"):
            label, responses = "%s %s with Upgrade: %s (x-unmatched upgrade-refused)" % (
                method, target, upgrade), self.upgrade_refused
        else:
            label, responses = "%s %s with Upgrade: %s (x-unmatched refused-request)" % (
                method, target, upgrade), self.refused
        where = "%s -> %d" % (label, status)
        resp = (responses.get(str(status)) or responses.get("%dXX" % (status // 100))
                or responses.get("default"))
        if resp is None:
            return ["%s: status %d is not documented (documented: %s)"
                    % (where, status, ", ".join(sorted(responses)) or "none")]
        out = []
        for name, h in (resp.get("headers") or {}).items():
            lname = name.lower()
            if lname == "content-type":
                continue  # OpenAPI: described by content, not headers
            value = headers.get(lname)
            if value is None:
                if h.get("required"):
                    out.append("%s: lacks the required header %s" % (where, name))
                continue
            schema = h.get("schema")
            if schema is None:
                continue
            inst = value
            if schema.get("type") == "integer" and re.fullmatch(r"-?[0-9]+", value.strip()):
                inst = int(value)
            err = self.first_error(schema, inst, value)
            if err is not None:
                out.append("%s: header %s: %r: %s" % (where, name, value, err.message))
        content = resp.get("content") or {}
        ct = headers.get("content-type")
        if method == "HEAD":
            if body:
                out.append("%s: an answer to HEAD with %d bytes of content" % (where, len(body)))
            return out
        if not content:
            if body:
                out.append("%s: a body of %d bytes, but the description documents none"
                           % (where, len(body)))
            return out
        media = ct.split(";", 1)[0].strip().lower() if ct else ""
        entry = (content.get(media) or content.get(media.split("/", 1)[0] + "/*")
                 or content.get("*/*"))
        if entry is None:
            out.append("%s: content type %r is not documented (documented: %s)"
                       % (where, ct, ", ".join(content)))
            return out
        schema = entry.get("schema")
        if schema is None:
            return out
        problem = media == "application/problem+json"
        if not problem and (id(schema), body) in self._valid:
            return out  # this very body was found valid before
        if media == "application/json" or media.endswith("+json"):
            try:
                inst = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                out.append("%s: %s body is not JSON (%s): %r" % (where, media, e, body[:200]))
                return out
        else:
            try:
                inst = body.decode("utf-8")
            except UnicodeDecodeError as e:
                out.append("%s: %s body is not UTF-8 (%s)" % (where, media, e))
                return out
        err = self.first_error(schema, inst, body)
        if err is not None:
            at = getattr(err, "json_path", None) or "$" + "".join(
                "[%r]" % p for p in err.absolute_path)
            out.append("%s: %s body does not match the schema: at %s: %s (schema keyword: %s)"
                       % (where, media, at, _short(err.message),
                          "/".join(str(p) for p in err.absolute_schema_path)))
            return out
        # Not expressible in the schema: a problem's trace_id is the
        # traceparent's trace id (CONTRACT §2, problem.c, http_session.c).
        if problem and isinstance(inst, dict):
            tp = headers.get("traceparent") or ""
            parts = tp.split("-")
            if len(parts) >= 2 and inst.get("trace_id") != parts[1]:
                out.append("%s: problem trace_id %r is not the traceparent's trace id %r"
                           % (where, inst.get("trace_id"), parts[1]))
        return out

    def check(self, method, target, status, headers, body, upgrade=None):
        errs = self.errors(method, target, status, headers, body, upgrade)
        if errs:
            raise stack.Fail("OpenAPI (docs/openapi.yaml): " + "; ".join(errs))


def _short(msg, limit=300):
    return msg if len(msg) <= limit else msg[:limit] + "..."


_spec = None
_spec_lock = threading.Lock()


def spec():
    """The description, loaded and compiled once per process."""
    global _spec
    if _spec is None:
        with _spec_lock:
            if _spec is None:
                _spec = Spec()
    return _spec


# ------------------------------------------------------------ the hooks

def check_answer(method, target, status, headers, body):
    """stack.request()'s hook: one answer of the gateway (headers with
    lower-case names)."""
    if ENABLED:
        spec().check(method.upper(), target, status, headers, body)


_REQUEST_LINE = re.compile(
    rb"(GET|POST|PUT|DELETE|PATCH|OPTIONS|HEAD) (/[\x21-\x7e]*) HTTP/1\.[01]\r\n")


def check_raw(sent, reply):
    """stack.raw_request()'s hook. Checks only what is an HTTP exchange the
    description speaks about: one well-formed HTTP/1.x request line with a
    known method and an origin-form path (with at most one Upgrade field),
    and a whole answer (status line, headers, Content-Length bytes of body).
    Anything else -- bytes that are not HTTP, which libwebsockets answers
    itself with its own 403 page, a connection closed early, a cut answer --
    is left to the case that sent it."""
    if not ENABLED:
        return
    m = _REQUEST_LINE.match(sent)
    if m is None:
        return
    head_end = sent.find(b"\r\n\r\n")
    if head_end < 0:
        return
    up = [v.strip() for v in re.findall(rb"(?im)^upgrade:([^\r\n]*)", sent[:head_end])]
    if len(up) > 1:
        return  # which one lws acts on is its own business
    head, sep, rest = reply.partition(b"\r\n\r\n")
    sm = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if not sep or sm is None:
        return
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, colon, v = line.partition(b":")
        if not colon:
            return  # not a header block we can read
        headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    n = headers.get("content-length")
    if n is None or not n.isdigit():
        return
    if m.group(1) == b"HEAD":
        body = rest  # no content, whatever Content-Length says (RFC 9110 §9.3.2)
    elif len(rest) < int(n):
        return
    else:
        body = rest[:int(n)]
    spec().check(m.group(1).decode(), m.group(2).decode("latin-1"), int(sm.group(1)),
                 headers, body, up[0].decode("latin-1") if up else None)
