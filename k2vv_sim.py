"""k2vv_sim — simulated OpenAI-compatible vendors for `k2vv demo`, `k2vv serve-sim`, tests and benchmarks.

Vendors that answer like real ones (right calls, wrong calls, faults) with no model, no key and no
internet, over chat completions, raw completions (Kimi K2 tokens) and the Responses API (DESIGN §12).
Every choice is derived from the request body, so a test set gets the same answers on every run and
machine. This module imports nothing from `k2vv` on purpose (DESIGN §1): it is an independent
oracle, so its argument generator checks its own output with a small private validator and never
leans on the judge its answers are used to test.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse
from fractions import Fraction
from typing import Callable

__all__ = ["SimVendor", "serve_sim", "answer_key", "PERSONALITIES", "DEMO_PERSONALITIES", "stream_spoiled", "BREAKAGES", "SIM_FAULTS", "example_arguments",
           "break_arguments"]


def canonical_json(obj) -> bytes:
    """Sorted keys, compact, UTF-8: the same bytes for the same JSON value (k2vv's own rule)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ---- 1. constants: rates are rough shapes of what real vendors do, not measurements ------------

PERSONALITIES = ("reference", "sloppy", "flaky", "drifting", "ignores_none", "stream_broken", "id_sensitive",
                 "reasoning_sensitive", "raw_tricky")
DEMO_PERSONALITIES = PERSONALITIES[:4]  # `k2vv demo`'s vendors, in its order
# | personality         | what it does (every route: chat, raw completions, responses)                          |
# |---------------------|----------------------------------------------------------------------------------------|
# | reference           | like the official API: valid calls on ~70% of requests with tools, no faults          |
# | sloppy              | spoils ~25% of its tool-call answers (_SIM_SLOPPY_WAYS), named in x-sim-breakage      |
# | flaky               | the first attempt at ~25% of distinct bodies fails (429, 5xx, reset, cut stream)      |
# | drifting            | flips call/no-call on ~40% of requests with tools (F1 ~0.68 against reference)        |
# | ignores_none        | calls a tool despite tool_choice "none" (fails that probe, DESIGN §11)                 |
# | stream_broken       | cuts the arguments of half its streamed call answers, never a non-stream one          |
# | id_sensitive        | calls the last historical tool again when history ids are not functions.NAME:IDX      |
# | reasoning_sensitive | the same when the history carries the model's reasoning_content                       |
# | raw_tricky          | honest over chat and responses; its raw completions (DESIGN §12) are what K2VV's      |
# |                     | parser gets wrong: it prefers tools named with `-` or `.`, calls two at once on ~50%, |
# |                     | splits two or more calls over two sections, and stops ~30% of its call answers        |
# |                     | before a section's end marker (finish_reason "length"), noted in x-sim-raw            |
BREAKAGES = ("missing_required", "wrong_type", "extra_property", "out_of_range", "bad_enum",
             "wrong_tuple_length")
# Fault names a test script may return; `slow:SECONDS` takes a number, e.g. "slow:0.5".
SIM_FAULTS = ("429", "500", "502", "503", "reset", "cut_body", "cut_stream", "slow:SECONDS",
              "401", "403", "404", "400_schema", "status:NNN")

_SIM_CALL_SHARE = 0.70      # requests with tools (last message not a tool result) that get a call
_SIM_PARALLEL_SHARE = 0.15  # tool-call answers with two parallel calls
_SIM_LENGTH_SHARE = 0.04    # text answers cut by max_tokens (finish_reason "length")
_SIM_SLOPPY_SHARE = 0.25    # sloppy: tool-call answers it spoils
_SIM_FLAKY_SHARE = 0.25     # flaky: distinct requests whose first attempt fails
_SIM_DRIFT_SHARE = 0.40     # drifting: requests with tools whose call/no-call decision it flips
_SIM_STREAM_BROKEN_SHARE = 0.5  # stream_broken: streamed tool-call answers whose arguments it cuts
_SIM_RAW_PARALLEL_SHARE = 0.5  # raw_tricky: tool-call answers with two calls (so two sections happen)
_SIM_RAW_CUT_SHARE = 0.3    # raw_tricky: raw call answers that stop before a section's end marker
_SIM_RAW_NAME = re.compile(r"[-.]")  # tool names K2VV's raw parser drops (`-`) or truncates (`.`)
_SIM_ID_FORM = re.compile(r"^functions\.[A-Za-z0-9_\-.]+:\d+$")  # Moonshot's history id form
                            # (F1 ~0.68 vs reference: clearly under K2VV's 0.80 bar on 300 cases)
_SIM_ROLE_ALIASES = {"developer": "system", "_input": "system"}  # one role, whatever the transport calls it
_SIM_CREATED = 1735689600   # 2025-01-01T00:00:00Z: a fixed `created`, so answers are byte-stable
_SIM_SLOPPY_WAYS = ("missing_required", "wrong_type", "unknown_tool", "empty_tool_calls", "non_json")
_SIM_FLAKY_FAULTS = ("429", "500", "502", "503", "reset")  # + "cut_stream" for stream requests
_SIM_REPLIES = (
    "Here is a short answer to your question; no tool is needed for this step.",
    "I can help with that. Based on the conversation so far, the answer is below.",
    "Done. Let me know if you would like more detail or a different format.",
    "Thanks for the details. Here is a summary of what I found in our chat.",
    "Sure. The tool result above answers it: everything looks fine.",
)

# Generator tuning: how often optional parts appear, and how deep recursive schemas may go.
_OPTIONAL_SHARE = 0.5   # each optional property is present with this probability
_DEFAULT_SHARE = 0.25   # a valid `default` is used as the value this often
_NULL_SHARE = 0.15      # a `["T", "null"]` union picks null this often
_MAX_DEPTH = 12         # past half of it, objects keep only required properties, arrays minItems
_WORDS = ("alpha", "value", "report", "Paris", "blue", "example", "weekly", "sample", "north",
          "budget", "Berkeley", "summary")
_FORMAT_SAMPLES = {
    "date-time": "2025-05-01T12:00:00Z", "date": "2025-05-01", "time": "12:00:00",
    "email": "user@example.com", "idn-email": "user@example.com", "uri": "https://example.com/item",
    "uri-reference": "/item/1", "iri": "https://example.com/item", "url": "https://example.com/item",
    "uuid": "123e4567-e89b-12d3-a456-426614174000", "hostname": "example.com",
    "ipv4": "192.0.2.1", "ipv6": "2001:db8::1", "duration": "P1D", "regex": "^a+$",
}
# Strings tried, in order, against a `pattern` (re.search) when the pattern is not a plain literal.
_PATTERN_SAMPLES = (
    "abc", "value", "a", "A", "ABC", "Abc1", "abc123", "1", "42", "123", "12345", "0", "1.5",
    "2025-05-01", "2025-05-01T12:00:00Z", "12:00", "12:00:00", "user@example.com",
    "https://example.com", "http://example.com", "example.com", "+14155550100", "555-123-4567",
    "a-b", "a_b", "a.b", "x1", "#ff0000", "ff0000", "192.0.2.1", "US", "USD", "en-US", "en",
    "123e4567-e89b-12d3-a456-426614174000", "ABC-123", "v1.0.0", "1.0.0", "/path/to/file",
    "file.txt", "SELECT 1", "a b", "",
)
_TYPE_ALIASES = {"float": "number", "double": "number", "int": "integer", "long": "integer",
                 "bool": "boolean", "str": "string", "dict": "object", "list": "array",
                 "tuple": "array"}  # sloppy tool schemas: uncompilable, but a vendor still answers
_ANNOTATIONS = frozenset(("description", "title", "default", "examples", "$comment", "$id",
                          "$schema", "definitions", "$defs", "deprecated", "readOnly", "writeOnly"))
_MODERN_DRAFTS = ("2019-09", "2020-12")


# ---- 2. JSON Schema helpers shared by the generator and the breaker --------------------------

def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_keyword(schema: dict, key: str, default):
    """An integer-valued keyword (`minItems`, ...), or `default` when absent or malformed."""
    value = schema.get(key)
    if _is_number(value) and math.isfinite(value) and value == int(value):
        return int(value)
    return default


def _is_modern(root) -> bool:
    uri = root.get("$schema") if isinstance(root, dict) else None
    return isinstance(uri, str) and any(marker in uri for marker in _MODERN_DRAFTS)


def _ref_target(root, ref):
    """The local target of `ref` (`#`, `#/definitions/x`, `#/$defs/x`, any `#/...` pointer), or None.
    Nothing outside the schema is ever read, as in k2vv's compiler."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    pointer = urllib.parse.unquote(ref[1:])
    if pointer == "":
        return root
    if not pointer.startswith("/"):
        return None  # a plain-name fragment ($anchor / $id): not supported
    node = root
    for part in pointer[1:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _deref(schema, root):
    """`schema` with local `$ref`s followed. Draft-07 ignores a `$ref`'s siblings; 2019-09+ applies
    both, so there the result is an `allOf`. A dangling or remote ref constrains nothing."""
    for _ in range(32):  # a ref cycle ends as "anything"
        if not isinstance(schema, dict) or "$ref" not in schema:
            return schema
        target = _ref_target(root, schema["$ref"])
        target = {} if target is None else target
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        if _is_modern(root) and any(k not in _ANNOTATIONS for k in siblings):
            return {"allOf": [siblings, target]}
        schema = target
    return {}


def _tuple_parts(schema: dict):
    """(prefix schemas or None, schema for the items after them): draft-07 `items: [...]` +
    `additionalItems`, or 2020-12 `prefixItems` + `items`; plain `items` gives (None, items)."""
    if isinstance(schema.get("prefixItems"), list):
        return schema["prefixItems"], schema.get("items", True)
    items = schema.get("items", True)
    if isinstance(items, list):
        return items, schema.get("additionalItems", True)
    return None, items


def _property_schema(schema: dict, name: str):
    """The schema a property value must satisfy: its `properties` entry, else a matching
    `patternProperties` entry, else `additionalProperties`."""
    props = schema.get("properties")
    if isinstance(props, dict) and name in props:
        return props[name]
    patterns = schema.get("patternProperties")
    if isinstance(patterns, dict):
        for pattern, sub in patterns.items():
            if _pattern_search(pattern, name):
                return sub
    extra = schema.get("additionalProperties", True)
    return extra if isinstance(extra, (dict, bool)) else True


def _pattern_search(pattern, text: str) -> bool:
    """re.search as jsonschema does it; an uncompilable pattern matches (the schema is unscored anyway)."""
    try:
        return re.search(pattern, text) is not None
    except (re.error, TypeError):
        return True


def _json_equal(a, b) -> bool:
    """JSON equality: 1 == 1.0, but true != 1 (Python's == says it is)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _json_key(value) -> str:
    """A string equal for JSON-equal values (for uniqueItems)."""
    def plain(v):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return json.dumps(plain(value), sort_keys=True)


def _has_type(value, name) -> bool:
    if name == "integer":
        return _is_number(value) and (isinstance(value, int) or value.is_integer())
    checks = {"number": _is_number, "string": lambda v: isinstance(v, str),
              "boolean": lambda v: isinstance(v, bool), "null": lambda v: v is None,
              "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list)}
    return name in checks and checks[name](value)


def _multiple_ok(value, divisor) -> bool:
    """True only when both judges agree: exactly (fastjsonschema, Decimal) and in float arithmetic
    (jsonschema), so a generated value never lands in their known disagreement."""
    try:
        if (Fraction(repr(value)) / Fraction(repr(divisor))).denominator != 1:
            return False
        if isinstance(value, float) or isinstance(divisor, float):
            quotient = value / divisor
            return math.isfinite(quotient) and quotient == int(quotient)
        return True
    except (ValueError, OverflowError, ZeroDivisionError):
        return False


def _number_ok(schema: dict, value) -> bool:
    low, high = schema.get("minimum"), schema.get("maximum")
    if _is_number(low) and (value < low or (schema.get("exclusiveMinimum") is True and value == low)):
        return False
    if _is_number(high) and (value > high or (schema.get("exclusiveMaximum") is True and value == high)):
        return False
    if _is_number(schema.get("exclusiveMinimum")) and value <= schema["exclusiveMinimum"]:
        return False
    if _is_number(schema.get("exclusiveMaximum")) and value >= schema["exclusiveMaximum"]:
        return False
    divisor = schema.get("multipleOf")
    return not (_is_number(divisor) and divisor > 0 and not _multiple_ok(value, divisor))


def _string_ok(schema: dict, value: str) -> bool:
    if len(value) < _int_keyword(schema, "minLength", 0):
        return False
    if len(value) > _int_keyword(schema, "maxLength", math.inf):
        return False
    return not isinstance(schema.get("pattern"), str) or _pattern_search(schema["pattern"], value)


def _array_ok(schema: dict, value: list, root) -> bool:
    prefix, rest = _tuple_parts(schema)
    for i, item in enumerate(value):
        sub = prefix[i] if prefix is not None and i < len(prefix) else rest
        if not _conforms(sub, item, root):
            return False
    if not _int_keyword(schema, "minItems", 0) <= len(value) <= _int_keyword(schema, "maxItems", math.inf):
        return False
    if schema.get("uniqueItems") is True and len({_json_key(v) for v in value}) != len(value):
        return False
    return "contains" not in schema or any(_conforms(schema["contains"], v, root) for v in value)


def _object_ok(schema: dict, value: dict, root) -> bool:
    required = schema.get("required")
    if isinstance(required, list) and any(isinstance(n, str) and n not in value for n in required):
        return False
    if not _int_keyword(schema, "minProperties", 0) <= len(value) <= _int_keyword(schema, "maxProperties", math.inf):
        return False
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    patterns = schema.get("patternProperties") if isinstance(schema.get("patternProperties"), dict) else {}
    for key, item in value.items():
        matched = key in props
        if matched and not _conforms(props[key], item, root):
            return False
        for pattern, sub in patterns.items():
            if _pattern_search(pattern, key):
                matched = True
                if not _conforms(sub, item, root):
                    return False
        if not matched and not _conforms(schema.get("additionalProperties", True), item, root):
            return False
        if "propertyNames" in schema and not _conforms(schema["propertyNames"], key, root):
            return False
    deps = {}
    for key in ("dependencies", "dependentRequired", "dependentSchemas"):
        if isinstance(schema.get(key), dict):
            deps.update(schema[key])
    for name, dep in deps.items():
        if name in value:
            if isinstance(dep, list) and any(d not in value for d in dep):
                return False
            if isinstance(dep, (dict, bool)) and not _conforms(dep, value, root):
                return False
    return True


def _conforms(schema, value, root) -> bool:
    """Whether `value` satisfies `schema`: a small judge for the generator's own choices (which
    branch, which string, did a breakage really break). It is not k2vv's verdict (fastjsonschema)."""
    schema = _deref(schema, root)
    if schema is False:
        return False
    if not isinstance(schema, dict):
        return True
    declared = schema.get("type")
    if declared is not None:
        names = declared if isinstance(declared, list) else [declared]
        if not any(_has_type(value, _TYPE_ALIASES.get(n, n)) for n in names):
            return False
    if "const" in schema and not _json_equal(value, schema["const"]):
        return False
    if isinstance(schema.get("enum"), list) and not any(_json_equal(value, e) for e in schema["enum"]):
        return False
    if _is_number(value) and not _number_ok(schema, value):
        return False
    if isinstance(value, str) and not _string_ok(schema, value):
        return False
    if isinstance(value, list) and not _array_ok(schema, value, root):
        return False
    if isinstance(value, dict) and not _object_ok(schema, value, root):
        return False
    if isinstance(schema.get("allOf"), list) and not all(_conforms(s, value, root) for s in schema["allOf"]):
        return False
    if isinstance(schema.get("anyOf"), list) and not any(_conforms(s, value, root) for s in schema["anyOf"]):
        return False
    if isinstance(schema.get("oneOf"), list) and sum(_conforms(s, value, root) for s in schema["oneOf"]) != 1:
        return False
    if "not" in schema and _conforms(schema["not"], value, root):
        return False
    if "if" in schema:
        branch = "then" if _conforms(schema["if"], value, root) else "else"
        if branch in schema and not _conforms(schema[branch], value, root):
            return False
    return True


# ---- 3. arguments from a JSON Schema ---------------------------------------------------------

_MIN_KEYWORDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_MAX_KEYWORDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


def _merge_schemas(a: dict, b) -> dict:
    """One schema asking for what both ask, to generate from an allOf part or an anyOf/oneOf
    branch. Approximate on purpose: a clash it cannot express keeps `a`'s keyword, and the
    generator checks its result against the original schema anyway."""
    if b is True or b is None or not isinstance(b, (dict, bool)):
        return a
    if b is False:
        return {"not": {}}
    out = dict(a)
    for key, value in b.items():
        if key in ("then", "else") and "if" in b:
            continue  # travels with its `if`
        if key == "if":
            conditional = {k: b[k] for k in ("if", "then", "else") if k in b}
            if any(k in out for k in conditional):
                out["allOf"] = list(out.get("allOf") or []) + [conditional]
            else:
                out.update(conditional)
            continue
        if key not in out:
            out[key] = value
            continue
        mine = out[key]
        if key == "properties" and isinstance(mine, dict) and isinstance(value, dict):
            merged = dict(mine)
            for name, sub in value.items():
                merged[name] = {"allOf": [merged[name], sub]} if name in merged else sub
            out[key] = merged
        elif key == "required" and isinstance(mine, list) and isinstance(value, list):
            out[key] = list(dict.fromkeys(mine + value))
        elif key == "type":
            ours = mine if isinstance(mine, list) else [mine]
            theirs = value if isinstance(value, list) else [value]
            common = [t for t in ours if t in theirs]
            if "integer" not in common and (("integer" in ours and "number" in theirs)
                                            or ("number" in ours and "integer" in theirs)):
                common.append("integer")
            out[key] = common or mine
        elif key == "enum" and isinstance(mine, list) and isinstance(value, list):
            out[key] = [x for x in mine if any(_json_equal(x, y) for y in value)] or mine
        elif key in _MIN_KEYWORDS and _is_number(mine) and _is_number(value):
            out[key] = max(mine, value)
        elif key in _MAX_KEYWORDS and _is_number(mine) and _is_number(value):
            out[key] = min(mine, value)
        elif key == "additionalProperties":
            if mine is False or value is False:
                out[key] = False
            elif isinstance(mine, dict) and isinstance(value, dict):
                out[key] = {"allOf": [mine, value]}
        elif key == "allOf" and isinstance(mine, list) and isinstance(value, list):
            out[key] = mine + value
        elif key in ("items", "additionalItems", "contains", "propertyNames") \
                and isinstance(mine, dict) and isinstance(value, dict):
            out[key] = {"allOf": [mine, value]}
        elif key in ("anyOf", "oneOf", "not"):
            out["allOf"] = list(out.get("allOf") or []) + [{key: value}]
    return out


def example_arguments(schema: dict, rng: random.Random) -> object:
    """A value that satisfies `schema` (draft-07, tolerating 2020-12 `prefixItems`/`$defs` and local
    `$ref`s), drawn from `rng` alone so a simulated vendor answers one body the same way every time.
    Tool arguments are a JSON object, so when the schema allows one (`{}`, no type, a type list with
    "object") an object is what it gets. Best effort: if no canned string matches a required
    property's `pattern`, the result is invalid (an optional one is left out instead)."""
    root = schema if isinstance(schema, dict) else {}
    try:
        target = _deref(schema, root)
        if isinstance(target, dict) or target is True or target is None:
            wanted = _merge_schemas({"type": "object"}, target if isinstance(target, dict) else {})
            value = _generate(wanted, root, rng, 0)
            if isinstance(value, dict) and _conforms(schema, value, root):
                return value
        return _generate(schema, root, rng, 0)
    except RecursionError:  # e.g. {"allOf": [{"$ref": "#"}]}: no instance can be checked against it
        return {}


def _generate(schema, root, rng, depth):
    schema = _deref(schema, root)
    if schema is False:
        return None  # nothing is valid; any value will do
    if not isinstance(schema, dict):
        schema = {}
    if depth > 2 * _MAX_DEPTH:
        return {} if schema.get("type") == "object" else None
    if "const" in schema:
        return copy.deepcopy(schema["const"])
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        rest = {k: v for k, v in schema.items() if k != "enum"}
        fits = [e for e in schema["enum"] if _conforms(rest, e, root)]
        return copy.deepcopy(rng.choice(fits or schema["enum"]))
    if "default" in schema and rng.random() < _DEFAULT_SHARE and _conforms(schema, schema["default"], root):
        return copy.deepcopy(schema["default"])
    if isinstance(schema.get("allOf"), list):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            merged = _merge_schemas(merged, _deref(part, root))
        return _generate(merged, root, rng, depth + 1)
    for key in ("anyOf", "oneOf"):  # the first branch that works, as a model would pick
        if isinstance(schema.get(key), list) and schema[key]:
            base = {k: v for k, v in schema.items() if k != key}
            first = None
            for i, branch in enumerate(schema[key]):
                candidate = _generate(_merge_schemas(base, _deref(branch, root)), root, rng, depth + 1)
                if _conforms(schema, candidate, root):
                    return candidate
                first = candidate if i == 0 else first
            return first
    value = None
    for _ in range(3):  # `not`, `if`/`then`, patterns inside: a fresh draw often fixes it
        value = _generate_typed(schema, root, rng, depth)
        if _conforms(schema, value, root):
            return value
    return value


def _candidate_types(schema: dict, rng) -> list:
    """The JSON types to try, in order: the declared ones (null last, mostly), else inferred
    from the keywords present, else any simple type."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return [_TYPE_ALIASES.get(declared, declared)]
    if isinstance(declared, list) and declared:
        names = [_TYPE_ALIASES.get(t, t) for t in declared if isinstance(t, str)]
        real = [t for t in names if t != "null"]
        rng.shuffle(real)
        if "null" in names:
            return ["null"] + real if not real or rng.random() < _NULL_SHARE else real + ["null"]
        return real
    keys = set(schema)
    if keys & {"properties", "required", "additionalProperties", "patternProperties",
               "minProperties", "maxProperties", "dependencies", "propertyNames"}:
        return ["object"]
    if keys & {"items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems", "contains"}:
        return ["array"]
    if keys & {"minLength", "maxLength", "pattern", "format"}:
        return ["string"]
    if keys & {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}:
        return ["number"]
    names = ["string", "integer", "boolean"]
    rng.shuffle(names)
    return names


def _generate_typed(schema: dict, root, rng, depth):
    value = None
    for name in _candidate_types(schema, rng):
        make = _GENERATORS.get(name)
        if make is None:
            continue  # an unknown type name: no value can have it
        value = make(schema, root, rng, depth)
        if _conforms(schema, value, root):
            return value
    return value


def _generate_object(schema: dict, root, rng, depth) -> dict:
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    required = list(dict.fromkeys(n for n in required if isinstance(n, str)))
    optional = [n for n in props if n not in required]
    deep = depth >= _MAX_DEPTH // 2  # recursive schemas: stop growing
    chosen = required + [n for n in optional if not deep and rng.random() < _OPTIONAL_SHARE]
    least = _int_keyword(schema, "minProperties", 0)
    chosen += [n for n in optional if n not in chosen][:max(0, least - len(chosen))]
    extra = 0
    while len(chosen) < least and schema.get("additionalProperties", True) is not False and extra < 100:
        name, extra = f"extra_{extra}", extra + 1
        if name not in props:
            chosen.append(name)
    most = _int_keyword(schema, "maxProperties", None)
    if most is not None:
        while len(chosen) > max(most, len(required)) and chosen[-1] not in required:
            chosen.pop()
    deps = {}
    for key in ("dependencies", "dependentRequired"):
        if isinstance(schema.get(key), dict):
            deps.update(schema[key])
    for name in list(chosen):
        if isinstance(deps.get(name), list):
            chosen += [d for d in deps[name] if isinstance(d, str) and d not in chosen]
    ordered = [n for n in props if n in chosen] + [n for n in chosen if n not in props]
    out = {}
    for name in ordered:
        sub = _property_schema(schema, name)
        value = _generate(sub, root, rng, depth + 1)
        if name in required or _conforms(sub, value, root):
            out[name] = value  # an optional value that cannot be made valid is left out
    return out


def _generate_array(schema: dict, root, rng, depth) -> list:
    prefix, rest = _tuple_parts(schema)
    least = _int_keyword(schema, "minItems", 0)
    most = _int_keyword(schema, "maxItems", None)
    if prefix is not None:
        count = len(prefix) if rest is False else max(len(prefix), least)
    elif depth >= _MAX_DEPTH // 2:
        count = least
    else:
        high = least + 2 if most is None else min(most, least + 2)
        count = rng.randint(min(max(least, 1), high), max(high, least))
    if most is not None:
        count = min(count, most)
    unique = schema.get("uniqueItems") is True
    items, seen = [], set()
    for i in range(count):
        sub = prefix[i] if prefix is not None and i < len(prefix) else rest
        if sub is False:
            break
        for _ in range(8 if unique else 1):
            value = _generate(sub, root, rng, depth + 1)
            if not unique or _json_key(value) not in seen:
                break
        else:
            if i >= least and (prefix is None or i >= len(prefix)):
                break  # no new distinct value: stop, the array is long enough
        seen.add(_json_key(value))
        items.append(value)
    if "contains" in schema and not any(_conforms(schema["contains"], v, root) for v in items):
        base = _deref(rest, root) if isinstance(rest, dict) else {}
        needed = _generate(_merge_schemas(base, _deref(schema["contains"], root)), root, rng, depth + 1)
        if items and most is not None and len(items) >= most:
            items[-1] = needed
        else:
            items.append(needed)
    return items


def _fit_length(text: str, least: int, most) -> str:
    if len(text) < least:
        text = (text + "x" * least)[:least]
    return text if most is None else text[:most]


def _pattern_literals(pattern: str) -> list:
    """Plain alternatives a simple pattern spells out (`^(low|high)$` -> low, high)."""
    body = pattern[1:] if pattern.startswith("^") else pattern
    body = body[:-1] if body.endswith("$") and not body.endswith("\\$") else body
    if body.startswith("(") and body.endswith(")"):
        body = body[1:-1].removeprefix("?:")
    words = []
    for alternative in body.split("|"):
        plain = re.sub(r"\\([.\-/_ :@#+])", r"\1", alternative)
        if not re.search(r"[\\\[\](){}.*+?^$|]", plain):
            words.append(plain)
    return words


def _generate_string(schema: dict, root, rng, depth) -> str:
    least = _int_keyword(schema, "minLength", 0)
    most = _int_keyword(schema, "maxLength", None)
    pattern = schema.get("pattern")
    sample = _FORMAT_SAMPLES.get(schema.get("format")) or rng.choice(_WORDS)
    if not isinstance(pattern, str):
        return _fit_length(sample, least, most)
    for candidate in [sample, *_pattern_literals(pattern), *_PATTERN_SAMPLES]:
        for text in (candidate, _fit_length(candidate, least, most)):
            if least <= len(text) <= (most if most is not None else len(text)) and _pattern_search(pattern, text):
                return text
    return _fit_length(sample, least, most)  # matches nothing we know: the caller may omit it


def _plain_number(value: Fraction):
    return int(value) if value.denominator == 1 else float(value)


def _number_candidates(schema: dict, integer: bool, rng):
    """Nice numbers first (small integers, halves), then multiples of `multipleOf`, then the
    bounds and their midpoint: each is checked by the caller."""
    lows = [schema[k] for k in ("minimum", "exclusiveMinimum") if _is_number(schema.get(k))]
    highs = [schema[k] for k in ("maximum", "exclusiveMaximum") if _is_number(schema.get(k))]
    low = max(lows) if lows else (min(highs) - 100 if highs else 0)
    high = min(highs) if highs else low + 100
    divisor = schema.get("multipleOf")
    if _is_number(divisor) and divisor > 0 and math.isfinite(divisor):
        step = Fraction(repr(divisor))
        first = math.ceil(Fraction(repr(low)) / step)
        last = math.floor(Fraction(repr(high)) / step)
        start = rng.randint(first, min(last, first + 20)) if first <= last else first
        for k in [*range(start, min(last, start + 60) + 1), *range(first, start)]:
            yield _plain_number(k * step)
    a, b = math.ceil(low), math.floor(high)
    if a <= b:
        span = min(b, a + 200)
        for _ in range(6):
            yield rng.randint(a, span)
            if not integer:
                yield rng.randint(2 * a, 2 * span) / 2
        yield from (a, b)
    if not integer:
        yield from ((low + high) / 2, low, high)


def _generate_number(schema: dict, root, rng, depth, integer=False):
    fallback = None
    for value in _number_candidates(schema, integer, rng):
        if integer and not isinstance(value, int):
            continue
        fallback = value if fallback is None else fallback
        if _number_ok(schema, value):
            return value
    return fallback if fallback is not None else 0


_GENERATORS = {
    "object": _generate_object,
    "array": _generate_array,
    "string": _generate_string,
    "integer": lambda s, root, rng, depth: _generate_number(s, root, rng, depth, integer=True),
    "number": _generate_number,
    "boolean": lambda s, root, rng, depth: rng.random() < 0.5,
    "null": lambda s, root, rng, depth: None,
}


# ---- 4. breaking a valid instance on purpose -------------------------------------------------

def break_arguments(schema: dict, valid_instance, how: str, rng: random.Random):
    """A copy of `valid_instance` made invalid in one named way (BREAKAGES), or None when that way
    does not apply to `schema` (no required property, no enum, no closed object...). Each candidate
    is checked, so a variant that would still validate (another anyOf branch) is never returned."""
    if how not in BREAKAGES:
        raise ValueError(f"unknown breakage {how!r} (expected one of {', '.join(BREAKAGES)})")
    root = schema if isinstance(schema, dict) else {}
    try:
        sites = list(_break_sites(schema, valid_instance, root, (), 0))
        rng.shuffle(sites)
        if how == "wrong_type":  # non-object arguments only as a last resort: a nested slip is the usual one
            sites.sort(key=lambda site: not site[0])
        for path, sub, value in sites:
            for broken in _BREAKERS[how](sub, value, rng):
                candidate = _replace_at(valid_instance, path, broken)
                if not _conforms(root, candidate, root):
                    return candidate
    except RecursionError:  # a schema that refers to itself without consuming the instance
        pass
    return None


def _break_sites(schema, value, root, path: tuple, depth: int):
    """(path, schema, value) for every place in `value` and the schema that governs it."""
    schema = _deref(schema, root)
    if not isinstance(schema, dict) or depth > 64:
        return
    yield path, schema, value
    for part in schema.get("allOf") if isinstance(schema.get("allOf"), list) else ():
        yield from _break_sites(part, value, root, path, depth + 1)
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _break_sites(_property_schema(schema, key), item, root, path + (key,), depth + 1)
    elif isinstance(value, list):
        prefix, rest = _tuple_parts(schema)
        for i, item in enumerate(value):
            sub = prefix[i] if prefix is not None and i < len(prefix) else rest
            yield from _break_sites(sub, item, root, path + (i,), depth + 1)


def _replace_at(instance, path: tuple, new):
    if not path:
        return new
    out = copy.deepcopy(instance)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new
    return out


def _break_missing_required(schema, value, rng):
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    if isinstance(value, dict):
        names = [n for n in dict.fromkeys(required) if isinstance(n, str) and n in value]
        rng.shuffle(names)
        for name in names:
            yield {k: v for k, v in value.items() if k != name}


def _break_wrong_type(schema, value, rng):
    declared = schema.get("type")
    if declared is None:
        return
    allowed = declared if isinstance(declared, list) else [declared]
    if isinstance(value, (dict, list)):
        usual = [("string", json.dumps(value))]  # stringified JSON: the classic model slip
    elif isinstance(value, bool):
        usual = [("string", "true" if value else "false")]
    elif _is_number(value):
        usual = [("string", str(value))]
    elif isinstance(value, str):
        usual = [("integer", 42), ("boolean", True)]
    else:
        usual = [("string", "null")]
    others = [("string", "text"), ("integer", 42), ("number", 4.5), ("boolean", True),
              ("array", ["x"]), ("object", {"x": 1}), ("null", None)]
    for name, sample in usual + others:
        if name not in allowed and not (name == "integer" and "number" in allowed):
            yield sample


def _break_extra_property(schema, value, rng):
    if isinstance(value, dict) and schema.get("additionalProperties") is False:
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        name, i = "unexpected_field", 0
        while name in props or name in value:
            i += 1
            name = f"unexpected_field_{i}"
        yield {**value, name: "surprise"}


def _break_out_of_range(schema, value, rng):
    if _is_number(value):
        integer = schema.get("type") == "integer" or isinstance(value, int)
        low, high = schema.get("minimum"), schema.get("maximum")
        if _is_number(low):
            yield math.ceil(low) - 1 if integer else low - 1
            if schema.get("exclusiveMinimum") is True:
                yield low
        if _is_number(high):
            yield math.floor(high) + 1 if integer else high + 1
            if schema.get("exclusiveMaximum") is True:
                yield high
        for key, edge in (("exclusiveMinimum", math.floor), ("exclusiveMaximum", math.ceil)):
            if _is_number(schema.get(key)):
                yield edge(schema[key]) if integer else schema[key]
    elif isinstance(value, str):
        least, most = _int_keyword(schema, "minLength", 0), _int_keyword(schema, "maxLength", None)
        if least > 0:
            yield value[:least - 1]
        if most is not None:
            yield (value + "x" * (most + 1))[:most + 1]
    elif isinstance(value, list):
        least, most = _int_keyword(schema, "minItems", 0), _int_keyword(schema, "maxItems", None)
        if least > 0:
            yield value[:least - 1]
        if most is not None:
            filler = value[-1] if value else "x"
            yield value + [copy.deepcopy(filler) for _ in range(most + 1 - len(value))]


def _break_bad_enum(schema, value, rng):
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        choices = schema["enum"]
    elif "const" in schema:
        choices = [schema["const"]]
    else:
        return
    if isinstance(value, str):
        candidates = [value.upper(), value.title(), f"{value}_other", "other"]
    elif isinstance(value, bool):
        candidates = [not value, "other"]
    elif _is_number(value):
        numbers = [c for c in choices if _is_number(c)]
        candidates = [max(numbers) + 1 if numbers else value + 1, value + 1, "other"]
    else:
        candidates = ["other", 0]
    for candidate in candidates:
        if not any(_json_equal(candidate, c) for c in choices):
            yield candidate


def _break_tuple_length(schema, value, rng):
    prefix, rest = _tuple_parts(schema)
    if prefix is None or not isinstance(value, list):
        return
    most = _int_keyword(schema, "maxItems", None)
    if rest is False or most is not None:
        filler = copy.deepcopy(value[-1]) if value else "x"
        yield value + [filler] * max(1, (most or 0) + 1 - len(value))
    least = _int_keyword(schema, "minItems", 0)
    if least > 0:
        yield value[:least - 1]


_BREAKERS = {
    "missing_required": _break_missing_required,
    "wrong_type": _break_wrong_type,
    "extra_property": _break_extra_property,
    "out_of_range": _break_out_of_range,
    "bad_enum": _break_bad_enum,
    "wrong_tuple_length": _break_tuple_length,
}


# ---- 5. what a simulated vendor answers (pure: body in, answer out) --------------------------

def _sim_text(content) -> str:
    """A message's text: a string, or the `text` of its parts (chat `text`, Responses `input_text`)."""
    if isinstance(content, list):
        content = "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content.strip() if isinstance(content, str) else ""


def _sim_view(body: dict) -> dict:
    """What a request asks, in the form every transport carries alike: per message its role, text and
    calls (name, arguments as canonical JSON), per tool its name, description and parameters. Ids,
    reasoning, a tool result's `name`, null-vs-empty content, JSON spacing and key order (the view
    is only ever hashed as canonical JSON; answers read parameters via _sim_sorted) are left out: a raw
    prompt or a Responses `input` loses them, and a case must get one answer over chat, raw
    completions and responses (and history-id A/B probes one answer on both sides)."""
    messages = []
    for msg in body.get("messages") if isinstance(body.get("messages"), list) else ():
        if not isinstance(msg, dict):
            continue
        calls = []
        for call in msg.get("tool_calls") if isinstance(msg.get("tool_calls"), list) else ():
            fn = call.get("function") if isinstance(call, dict) and isinstance(call.get("function"), dict) else {}
            args = fn.get("arguments")
            try:
                args = canonical_json(json.loads(args) if isinstance(args, str) else args).decode()
            except (ValueError, RecursionError):
                pass  # not JSON (or nested past Python's stack): kept as sent
            calls.append([fn.get("name"), args])
        role = msg.get("role")
        messages.append({"role": _SIM_ROLE_ALIASES.get(role, role), "text": _sim_text(msg.get("content")),
                         "calls": calls})
    tools = []
    for tool in body.get("tools") if isinstance(body.get("tools"), list) else ():
        fn = tool.get("function") if isinstance(tool, dict) and isinstance(tool.get("function"), dict) else tool
        tools.append({k: fn.get(k) for k in ("name", "description", "parameters")} if isinstance(fn, dict) else fn)
    return {"messages": messages, "tools": tools}


def _sim_digest(body: dict, seed) -> bytes:
    """What every decision about a request derives from: its view (messages and tools), so `model`,
    `stream` and `stream_options` change nothing, a stream answers like its non-stream twin, and a
    raw prompt or a Responses request like the chat body it was made from."""
    return hashlib.sha256(f"k2vv-sim:{seed}:".encode() + canonical_json(_sim_view(body))).digest()


def _sim_share(digest: bytes, decision: str) -> float:
    """A number in [0, 1) for one named decision about one request (independent per name)."""
    return int.from_bytes(hashlib.sha256(digest + decision.encode()).digest()[:8], "big") / 2 ** 64


def _sim_sorted(value):
    """`value` with every object's keys in sorted order (arrays keep theirs): JSON key order is not
    meaning, and transports do not keep it alike. k2vv sends chat and Responses bodies as canonical
    JSON (keys sorted), while a raw prompt carries the tools as the chat template's `tojson` wrote
    them (the test set's order). The generator walks `properties` (and `patternProperties`, ...) in
    dict order, drawing from one rng, so it must see one order whatever the transport."""
    if isinstance(value, dict):
        return {k: _sim_sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sim_sorted(v) for v in value]
    return value


def _sim_function_tools(body: dict) -> list:
    """(name, parameters) of the request's function tools, the parameters with sorted keys
    (_sim_sorted), so arguments are drawn alike over every transport."""
    out = []
    for tool in body.get("tools") if isinstance(body.get("tools"), list) else ():
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"]:
            out.append((fn["name"], _sim_sorted(fn.get("parameters"))))
    return out


def _sim_tool_arguments(parameters, rng) -> dict:
    """Arguments are a JSON object whatever the schema says (OpenAI function calling)."""
    if not isinstance(parameters, dict) or not parameters:
        return {}
    value = example_arguments(parameters, rng)
    return value if isinstance(value, dict) else {}


def _sim_dump(args) -> str:
    return json.dumps(args, ensure_ascii=False)


def _sim_spoil(calls: list, tools: list, pick: float, rng) -> str:
    """Spoil a sloppy vendor's answer in one of _SIM_SLOPPY_WAYS (the first that applies from a
    hash-chosen start) and return its name."""
    start = int(pick * len(_SIM_SLOPPY_WAYS))
    first = calls[0]
    for way in _SIM_SLOPPY_WAYS[start:] + _SIM_SLOPPY_WAYS[:start]:
        if way in ("missing_required", "wrong_type"):
            params = next(p for n, p in tools if n == first["name"])  # first wins, as in k2vv
            broken = break_arguments(params, json.loads(first["arguments"]), way, rng) \
                if isinstance(params, dict) and params else None
            if broken is None:
                continue
            first["arguments"] = _sim_dump(broken)
        elif way == "unknown_tool":
            names = {name for name, _ in tools}
            name = first["name"] + "_v2"
            while name in names:
                name += "_v2"
            first["name"], first["id"] = name, first["id"].replace(f".{first['name']}:", f".{name}:")
        elif way == "empty_tool_calls":
            calls.clear()
        else:  # non_json: the closing brace never came
            first["arguments"] = first["arguments"][:-1] or "{"
        return way
    return "non_json"


def answer_key(body: dict) -> str:
    """What identifies a request to a vendor that knows the right answers: its view (messages and
    tools), so the answers given for chat bodies are found for raw prompts and Responses too."""
    return hashlib.sha256(canonical_json(_sim_view(body))).hexdigest()


def _expected_calls(expected: list) -> list:
    """(name, arguments) a perfect model gives for BFCL-style `expected`: the first accepted value of
    each parameter, optional ones (only "" accepted) left out."""
    out = []
    for call in expected:
        args = {}
        for param, accepted in (call.get("arguments") or {}).items():
            value = next((a for a in accepted if a != ""), "")
            if value != "":
                args[param] = value
        out.append((call.get("name"), args))
    return out


def _sim_answer(personality: str, body: dict, seed=0, expected: list | str | None = None) -> dict:
    """The answer a personality gives to `body`: content, calls, finish_reason, usage, ids, and a
    `breakage` note for a sloppy spoil. With `expected` (the case's right calls, when the vendor is
    given them; "any" for a case that wants some call), it calls what is expected, kept to the
    tool's schema, instead of guessing; personalities spoil it as before.
    Faults (flaky) are the server's business, not this one's."""
    digest = _sim_digest(body, seed)
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    tools = _sim_function_tools(body)
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    choice = body.get("tool_choice")
    forced = choice.get("function", {}).get("name") if isinstance(choice, dict) and \
        isinstance(choice.get("function"), dict) else None
    if not tools or choice == "none" and personality != "ignores_none":
        call = False
    elif forced or choice == "required":
        call = True
    elif expected == "any":
        call = True  # a case that wants some call, whichever (BFCL's relevance)
    elif expected is not None:
        call = bool(expected)
    else:
        call = last.get("role") != "tool" and _sim_share(digest, "call") < _SIM_CALL_SHARE
    if personality == "drifting" and tools and _sim_share(digest, "drift") < _SIM_DRIFT_SHARE:
        call = not call
    repeated = _sim_foreign_ids_repeat(messages) if personality == "id_sensitive" and tools else None
    if personality == "reasoning_sensitive" and tools and any(
            isinstance(m, dict) and m.get("role") == "assistant" and m.get("reasoning_content") for m in messages):
        repeated = _sim_foreign_ids_repeat(messages, any_id=True)
    if repeated is not None:
        call = True
    calls, breakage, content = [], None, ""
    if call:
        parallel = not forced and body.get("parallel_tool_calls") is not False and _sim_share(digest, "parallel") \
            < (_SIM_RAW_PARALLEL_SHARE if personality == "raw_tricky" else _SIM_PARALLEL_SHARE)
        tricky = [(n, p) for n, p in tools if _SIM_RAW_NAME.search(n)] if personality == "raw_tricky" else []
        earlier = sum(len(m["tool_calls"]) for m in messages if isinstance(m, dict)
                      and m.get("role") == "assistant" and isinstance(m.get("tool_calls"), list))
        if isinstance(expected, list) and expected:
            by_name = dict(tools)
            for i, (name, args) in enumerate(_expected_calls(expected)):
                params = by_name.get(name)
                if not isinstance(params, dict) or not _conforms(params, args, params):
                    args = _sim_tool_arguments(params, rng)  # the ground truth breaks the schema: keep to the schema
                calls.append({"id": f"functions.{name}:{earlier + i}", "name": name, "arguments": _sim_dump(args)})
        for i in range(0 if calls else 2 if parallel else 1):
            name, params = next(((n, p) for n, p in tools if n == forced), None) or rng.choice(tricky or tools)
            calls.append({"id": f"functions.{name}:{earlier + i}", "name": name,
                          "arguments": _sim_dump(_sim_tool_arguments(params, rng))})
        if repeated is not None:
            calls = [dict(repeated, id=f"functions.{repeated['name']}:{earlier}")]
        finish = "tool_calls"
        if personality == "sloppy" and _sim_share(digest, "sloppy") < _SIM_SLOPPY_SHARE:
            breakage = _sim_spoil(calls, tools, _sim_share(digest, "sloppy-way"), rng)
        if personality == "stream_broken" and stream_spoiled(body, seed):
            calls[0]["arguments"] = calls[0]["arguments"][:-1] or "{"  # the closing brace never came
            breakage = "stream_non_json"
    else:
        content, finish = rng.choice(_SIM_REPLIES), "stop"
        if _sim_share(digest, "length") < _SIM_LENGTH_SHARE:
            content, finish = content[:len(content) // 2], "length"
    prompt = max(1, len(canonical_json(_sim_view(body))) // 4)
    completion = max(1, (len(content) + sum(len(c["name"]) + len(c["arguments"]) for c in calls)) // 4
                     + 5 * len(calls))
    return {"id": "chatcmpl-" + digest.hex()[:24], "created": _SIM_CREATED,
            "model": body.get("model") if isinstance(body.get("model"), str) else "k2vv-sim",
            "content": content, "calls": calls, "finish_reason": finish, "breakage": breakage,
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}


def stream_spoiled(body: dict, seed=0) -> bool:
    """Whether stream_broken spoils its answer to `body`: a streamed request in the hash-chosen
    share (the answer's other choices are the same as when it is not streamed)."""
    return body.get("stream") is True and _sim_share(_sim_digest(body, seed), "stream-broken") < _SIM_STREAM_BROKEN_SHARE


def _sim_foreign_ids_repeat(messages: list, any_id: bool = False) -> dict | None:
    """id_sensitive's trigger: when some historical tool-call id is not functions.NAME:IDX (or
    whatever the ids, with `any_id`), the last historical call ({name, arguments}) it repeats; None
    when every id has that form."""
    last, foreign = None, False
    for msg in messages:
        if isinstance(msg, dict) and msg.get("role") == "assistant" and isinstance(msg.get("tool_calls"), list):
            for call in msg["tool_calls"]:
                if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
                    continue
                foreign = foreign or not _SIM_ID_FORM.match(str(call.get("id", "")))
                last = {"name": str(call["function"].get("name", "")),
                        "arguments": str(call["function"].get("arguments", "{}"))}
    return last if (foreign or any_id) and last else None


def _sim_completion(answer: dict) -> dict:
    """The `chat.completion` object of an answer."""
    message = {"role": "assistant", "content": answer["content"]}
    if answer["finish_reason"] == "tool_calls":
        message["tool_calls"] = [{"id": c["id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"]}}
                                 for c in answer["calls"]]
    return {"id": answer["id"], "object": "chat.completion", "created": answer["created"],
            "model": answer["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": answer["finish_reason"]}],
            "usage": answer["usage"]}


def _sim_fragments(text: str, parts: int = 3) -> list:
    size = max(1, math.ceil(len(text) / parts))
    return [text[i:i + size] for i in range(0, len(text), size)]


def _sim_chunks(answer: dict, include_usage: bool) -> list:
    """The `chat.completion.chunk` objects of an answer, as the official API streams them: a role
    chunk, content pieces, per call a header delta (index, id, type, name, empty arguments) then
    argument fragments, a finish chunk, and with include_usage a usage-only chunk (`choices: []`)."""
    base = {"id": answer["id"], "object": "chat.completion.chunk", "created": answer["created"],
            "model": answer["model"]}

    def chunk(delta, finish=None):
        out = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
        if include_usage:
            out["usage"] = None
        return out

    chunks = [chunk({"role": "assistant", "content": ""})]
    words = answer["content"].split(" ")
    chunks += [chunk({"content": " ".join(words[i:i + 4]) + (" " if i + 4 < len(words) else "")})
               for i in range(0, len(words), 4) if answer["content"]]
    for index, call in enumerate(answer["calls"]):
        chunks.append(chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                             "function": {"name": call["name"], "arguments": ""}}]}))
        chunks += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                   for piece in _sim_fragments(call["arguments"])]
    chunks.append(chunk({}, answer["finish_reason"]))
    if include_usage:
        chunks.append(dict(base, choices=[], usage=answer["usage"]))
    return chunks


def _sim_error(status: int, body: dict) -> tuple:
    """(status, content type, bytes) of an OpenAI-style error for a fault name."""
    tools = _sim_function_tools(body)
    errors = {
        400: ("invalid_request_error", "invalid_function_parameters",
              f"Invalid schema for function '{tools[0][0] if tools else 'unknown'}': this vendor does not "
              f"support the keywords used in tools[0].function.parameters (simulated)."),
        401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (simulated)."),
        403: ("permission_denied", "permission_denied", "This key may not use this model (simulated)."),
        404: ("invalid_request_error", "model_not_found",
              f"The model `{body.get('model')}` does not exist or you do not have access to it (simulated)."),
        429: ("rate_limit_error", "rate_limit_exceeded", "Rate limit reached, retry later (simulated)."),
        500: ("server_error", "internal_error", "The server had an error processing your request (simulated)."),
        503: ("server_error", "overloaded", "The engine is currently overloaded (simulated)."),
    }
    if status == 502:  # gateways answer HTML, not JSON
        return 502, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"
    kind, code, message = errors.get(status, ("api_error", f"http_{status}", f"HTTP {status} (simulated)."))
    error = {"message": message, "type": kind, "param": "tools[0].function.parameters" if status == 400 else None,
             "code": code}
    return status, "application/json", json.dumps({"error": error}).encode()


# ---- 5b. the other transports: raw completions in Kimi tokens, the Responses API (pure) ------

_KIMI_DEFAULT_SYSTEM = "You are Kimi, an AI assistant created by Moonshot AI."  # added when no system comes first
_KIMI_TURN = re.compile(r"<\|im_(system|user|assistant)\|>")
_KIMI_CALL = re.compile(r"<\|tool_call_begin\|>(.*?)<\|tool_call_argument_begin\|>(.*?)<\|tool_call_end\|>", re.S)
_KIMI_CALL_ID = re.compile(r"\s*(?:functions\.)?(.*?)(?::\d+)?\s*", re.S)  # functions.NAME:IDX -> NAME
_KIMI_SECTION = ("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>")
_KIMI_RETURN = "## Return of "


def _kimi_tools(text: str):
    """The tools list of a tool_declare turn: the first JSON array in it (after an optional
    `# Tools` line, compact or spaced as the template's `tojson` wrote it), or None."""
    start = text.find("[")
    try:
        tools = json.JSONDecoder().raw_decode(text, start)[0] if start >= 0 else None
    except (ValueError, RecursionError):
        return None
    return tools if isinstance(tools, list) else None


def _kimi_messages(prompt: str) -> tuple | None:
    """(messages, tools) read back from a prompt rendered by the Kimi K2 chat template, or None when
    it holds no turn of that layout. A turn is `<|im_system|>`, `<|im_user|>` or `<|im_assistant|>`,
    then NAME (`message.name or role`), `<|im_middle|>`, the body and `<|im_end|>`. Under
    `<|im_system|>`, NAME `tool_declare` holds the tools' JSON; a body opening `## Return of ID` (or
    NAME `tool`, older templates) is a tool result; anything else a system message. An assistant
    body is content, then `<|tool_calls_section_begin|>` and calls `<|tool_call_begin|>ID
    <|tool_call_argument_begin|>ARGS<|tool_call_end|>` (the name is read from the ID, `-` and `.`
    kept). The open assistant turn at the end is the generation prompt; the default system message
    the template adds when none comes first is the template's, so it is dropped."""
    parts = _KIMI_TURN.split(prompt)
    messages, tools, turns = [], None, 0
    for kind, rest in zip(parts[1::2], parts[2::2]):
        name, middle, raw = rest.partition("<|im_middle|>")
        if not middle:
            continue
        turns += 1
        name, body = name.strip(), raw.split("<|im_end|>")[0]
        if kind == "system" and name == "tool_declare":
            tools = _kimi_tools(raw)
        elif kind == "system" and (body.lstrip().startswith(_KIMI_RETURN) or name == "tool"):
            head, _, text = body.lstrip().partition("\n") if body.lstrip().startswith(_KIMI_RETURN) else ("", "", body)
            message = {"role": "tool", "content": text}
            if head:
                message["tool_call_id"] = head[len(_KIMI_RETURN):].strip()
            if name != "tool":
                message["name"] = name
            messages.append(message)
        elif kind == "system":
            if messages or name != "system" or body.strip() != _KIMI_DEFAULT_SYSTEM:
                messages.append({"role": "system", "content": body})
        elif kind == "user":
            messages.append(dict({"role": "user", "content": body}, **({"name": name} if name != "user" else {})))
        elif "<|im_end|>" in raw or body.strip():  # not the generation prompt
            reasoning = ""
            if body.startswith("<think>") and "</think>" in body:  # K2-Thinking templates
                reasoning, body = body[len("<think>"):].split("</think>", 1)
            content, _, sections = body.partition(_KIMI_SECTION[0])
            message = {"role": "assistant", "content": content}
            calls = [{"id": ident.strip(), "type": "function",
                      "function": {"name": _KIMI_CALL_ID.fullmatch(ident).group(1), "arguments": args}}
                     for ident, args in _KIMI_CALL.findall(sections)]
            if calls:
                message["tool_calls"] = calls
            if reasoning.strip():
                message["reasoning_content"] = reasoning.strip()
            messages.append(message)
    return (messages, tools) if turns else None


def _sim_raw_request(body: dict) -> tuple:
    """(the chat body a raw completion request asks the same thing as, whether its prompt was
    readable). A prompt the sim cannot read (not text, or not the Kimi layout) becomes one user
    message with no tools, so it gets a plain text answer."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]  # a batch of one
    read = _kimi_messages(prompt) if isinstance(prompt, str) else None
    request = {k: body[k] for k in ("model", "stream", "tool_choice", "parallel_tool_calls") if k in body}
    if read is None:
        return dict(request, messages=[{"role": "user", "content": prompt if isinstance(prompt, str)
                                        else json.dumps(prompt)}]), False
    request["messages"] = read[0]
    if read[1]:
        request["tools"] = read[1]
    return request, True


def _kimi_section(calls: list) -> str:
    return _KIMI_SECTION[0] + "".join(
        f"<|tool_call_begin|>{c['id']}<|tool_call_argument_begin|>{c['arguments']}<|tool_call_end|>"
        for c in calls) + _KIMI_SECTION[1]


def _sim_raw_text(personality: str, answer: dict, digest: bytes, max_tokens) -> tuple:
    """(text, finish_reason, notes) of an answer as Kimi K2 writes it: the content, then its calls
    in one section. A vLLM /v1/completions runs no tool parser, so finish_reason is "stop" (the
    model ended its turn; <|im_end|> is not in the text) or "length" (cut; text past 4 characters a
    token of `max_tokens` is cut too). raw_tricky splits two or more calls over two sections, and
    on a share of its call answers stops before a section's end marker, half of those mid-arguments."""
    if answer["finish_reason"] != "tool_calls":
        text, finish, notes = answer["content"], answer["finish_reason"], []
    else:
        calls, notes, finish = answer["calls"], [], "stop"
        if personality == "raw_tricky" and len(calls) > 1:
            text, notes = answer["content"] + _kimi_section(calls[:1]) + _kimi_section(calls[1:]), ["two_sections"]
        else:
            text = answer["content"] + _kimi_section(calls)
        if personality == "raw_tricky" and calls and _sim_share(digest, "raw-cut") < _SIM_RAW_CUT_SHARE:
            text, finish = text[:-len(_KIMI_SECTION[1])], "length"
            if _sim_share(digest, "raw-cut-where") < 0.5:
                args = calls[-1]["arguments"]
                text = text[:-len("<|tool_call_end|>") - len(args)] + args[:len(args) // 2]
            notes.append("cut_section")
    limit = 4 * max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else 0
    if 0 < limit < len(text):
        text, finish = text[:limit], "length"
    return text, finish, notes


def _sim_raw_pieces(text: str, digest: bytes) -> list:
    """`text` in pieces of 1-12 characters at hash-chosen points, one of them always inside the first
    special token: a client must buffer a marker that arrives in parts."""
    rng = random.Random(int.from_bytes(digest[8:16], "big"))
    cuts, at = set(), 0
    while at < len(text):
        at += rng.randint(1, 12)
        cuts.add(at)
    marker = text.find("<|")
    if marker >= 0:
        cuts.add(marker + 5)
    points = [0] + sorted(c for c in cuts if 0 < c < len(text)) + [len(text)]
    return [text[a:b] for a, b in zip(points, points[1:]) if b > a]


def _sim_text_completion(personality: str, answer: dict, body: dict, digest: bytes, include_usage: bool) -> tuple:
    """(the `text_completion` object, its stream chunks as vLLM sends them, notes) of a raw answer.
    The chunks: text pieces, a final chunk with finish_reason, with include_usage a usage-only chunk
    (`choices: []`). Usage counts ~4 characters a token of the prompt and of the text."""
    text, finish, notes = _sim_raw_text(personality, answer, digest, body.get("max_tokens"))
    prompt, completion = max(1, len(str(body.get("prompt"))) // 4), max(1, len(text) // 4)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    base = {"id": "cmpl-" + answer["id"].removeprefix("chatcmpl-"), "object": "text_completion",
            "created": answer["created"], "model": answer["model"]}

    def choice(piece, reason):
        return [{"index": 0, "text": piece, "logprobs": None, "finish_reason": reason, "stop_reason": None}]
    extra = {"usage": None} if include_usage else {}
    chunks = [dict(base, choices=choice(piece, None), **extra) for piece in _sim_raw_pieces(text, digest)]
    chunks.append(dict(base, choices=choice("", finish), **extra))
    chunks += [dict(base, choices=[], usage=usage)] if include_usage else []
    return dict(base, choices=choice(text, finish), usage=usage), chunks, notes


def _sim_responses_request(body: dict) -> dict:
    """The chat body a Responses request asks the same thing as: `instructions` first as a system
    message; `input` (text, or items) as messages, where function_call items join the assistant
    message just before them (or start one), function_call_output items become tool messages and a
    reasoning item becomes the next assistant message's reasoning_content; flat function tools as
    chat tools; tool_choice in chat form."""
    messages, reasoning = [], ""
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    for item in [{"role": "user", "content": items}] if isinstance(items, str) else \
            (items if isinstance(items, list) else ()):
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind == "message":
            messages.append({"role": item.get("role"), "content": _sim_text(item.get("content"))})
        elif kind == "function_call":
            if not messages or messages[-1].get("role") != "assistant":
                messages.append({"role": "assistant", "content": ""})
            messages[-1].setdefault("tool_calls", []).append({
                "id": item.get("call_id"), "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments")}})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"),
                             "content": output if isinstance(output, str) else _sim_text(output)})
        elif kind == "reasoning":
            reasoning = _sim_text(item.get("summary")) or _sim_text(item.get("content"))
            continue
        else:
            continue
        if reasoning and messages[-1].get("role") == "assistant":
            messages[-1]["reasoning_content"], reasoning = reasoning, ""
    tools = [{"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters", "strict")
                                               if k in t}}
             for t in (body.get("tools") if isinstance(body.get("tools"), list) else ())
             if isinstance(t, dict) and t.get("type") == "function"]
    request = {k: body[k] for k in ("model", "stream", "parallel_tool_calls") if k in body}
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        choice = {"type": "function", "function": {"name": choice.get("name")}}
    if choice is not None:
        request["tool_choice"] = choice
    return dict(request, messages=messages, **({"tools": tools} if tools else {}))


def _sim_response(answer: dict, body: dict) -> dict:
    """The Responses API `response` object of an answer: a message item for its text, a function_call
    item per call (call_id = the chat call id), status "incomplete" where chat says "length"."""
    tag = answer["id"].removeprefix("chatcmpl-")
    cut = answer["finish_reason"] == "length"
    output = [{"id": f"msg_{tag}", "type": "message", "status": "incomplete" if cut else "completed",
               "role": "assistant", "content": [{"type": "output_text", "text": answer["content"], "annotations": []}]}
              ] if answer["content"] else []
    output += [{"id": f"fc_{tag}_{i}", "type": "function_call", "status": "completed", "call_id": call["id"],
                "name": call["name"], "arguments": call["arguments"]} for i, call in enumerate(answer["calls"])]
    usage = answer["usage"]
    return {"id": f"resp_{tag}", "object": "response", "created_at": answer["created"],
            "status": "incomplete" if cut else "completed", "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "model": answer["model"], "output": output, "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "usage": {"input_tokens": usage["prompt_tokens"], "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": usage["completion_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": usage["total_tokens"]}}


def _sim_response_events(response: dict) -> list:
    """The Responses API stream of a response, in the official order, as (event, data) pairs each
    with its sequence_number: response.created, response.in_progress; per output item
    output_item.added, its text (content_part.added, output_text.delta..., output_text.done,
    content_part.done) or arguments (function_call_arguments.delta..., .done), output_item.done;
    then response.completed (response.incomplete when cut) carrying the whole response."""
    events = []

    def emit(kind, **data):
        events.append((kind, {"type": kind, "sequence_number": len(events), **data}))
    shell = dict(response, status="in_progress", output=[], usage=None, incomplete_details=None)
    emit("response.created", response=shell)
    emit("response.in_progress", response=shell)
    for index, item in enumerate(response["output"]):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            part = item["content"][0]
            emit("response.output_item.added", output_index=index, item=dict(item, status="in_progress", content=[]))
            emit("response.content_part.added", **where, content_index=0, part=dict(part, text=""))
            for piece in _sim_fragments(part["text"]):
                emit("response.output_text.delta", **where, content_index=0, delta=piece)
            emit("response.output_text.done", **where, content_index=0, text=part["text"])
            emit("response.content_part.done", **where, content_index=0, part=part)
        else:
            emit("response.output_item.added", output_index=index, item=dict(item, status="in_progress", arguments=""))
            for piece in _sim_fragments(item["arguments"]):
                emit("response.function_call_arguments.delta", **where, delta=piece)
            emit("response.function_call_arguments.done", **where, arguments=item["arguments"])
        emit("response.output_item.done", output_index=index, item=item)
    emit("response.completed" if response["status"] == "completed" else "response.incomplete", response=response)
    return events


def _sse(event) -> bytes:
    """One SSE event: `data: ...` (a string as is, an object as JSON), after `event: NAME` for a pair."""
    name, data = event if isinstance(event, tuple) else (None, event)
    data = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {name}\n" if name else "").encode() + b"data: " + data.encode("utf-8") + b"\n\n"


# ---- 6. the loopback server ------------------------------------------------------------------

_SIM_SERVER_CLASS = None
_SIM_ROUTES = {"/v1/chat/completions": "chat", "/chat/completions": "chat", "/v1/completions": "completions",
               "/completions": "completions", "/v1/responses": "responses", "/responses": "responses"}


def _sim_server_class():
    """The loopback server class, built on first use: http.server costs ~40 ms to import, which
    `k2vv --help`, `score` and `lint` should not pay."""
    global _SIM_SERVER_CLASS
    if _SIM_SERVER_CLASS is not None:
        return _SIM_SERVER_CLASS
    import http.server

    class Server(http.server.ThreadingHTTPServer):
        """ThreadingHTTPServer that never blocks on close and can drop idle keep-alive connections."""
        daemon_threads = True
        block_on_close = False     # stop() must not wait for a client that keeps its connection open
        request_queue_size = 128   # 16+ workers connecting at once must not overflow the backlog of 5

        def __init__(self, address, vendor: "SimVendor"):
            self.vendor = vendor
            self._open, self._open_lock = set(), threading.Lock()
            super().__init__(address, Handler)

        def process_request(self, request, client_address):
            with self._open_lock:
                self._open.add(request)
            super().process_request(request, client_address)

        def shutdown_request(self, request):
            with self._open_lock:
                self._open.discard(request)
            super().shutdown_request(request)

        def drop_connections(self):
            with self._open_lock:
                connections = list(self._open)
            for conn in connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def handle_error(self, request, client_address):
            pass  # a client hanging up mid-answer is routine here; no traceback on stderr

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so a requests.Session reuses its connection
        server_version = "k2vv-sim/1"
        sys_version = ""
        timeout = 30  # an idle keep-alive connection frees its thread after this many seconds
        disable_nagle_algorithm = True  # headers and body are separate writes: Nagle + delayed ACK = 40 ms each

        def log_message(self, format, *args):
            pass  # quiet: stderr belongs to k2vv's progress lines

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path.rstrip("/")
            number, _ = self.server.vendor._note(self, None, b"")
            if path in ("/v1/models", "/models"):
                models = {"object": "list", "data": [{"id": "k2vv-sim", "object": "model"}]}
                self._send(200, "application/json", json.dumps(models).encode(), number)
            else:
                self._send(*_sim_error(404, {}), number)

        def do_POST(self):
            try:
                raw = self._read_body()
            except (ValueError, OSError):
                self.close_connection = True
                return
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            number, attempt = self.server.vendor._note(self, body, raw)
            try:
                self.server.vendor._respond(self, body, number, attempt)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client hung up; nobody to tell

        def _read_body(self) -> bytes:
            length = self.headers.get("Content-Length")
            if length is not None:
                return self.rfile.read(int(length))
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            return b""

        def _start(self, status: int, content_type: str, number: int, headers=()):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("x-request-id", f"sim-{number:06d}")
            for name, value in headers:
                self.send_header(name, value)

        def _send(self, status: int, content_type: str, data: bytes, number: int, headers=()):
            self._start(status, content_type, number, headers)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_cut(self, content_type: str, data: bytes, number: int, headers=()):
            """Promise the whole body in Content-Length, send half, hang up."""
            self._start(200, content_type, number, headers)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            self.close_connection = True

        def _send_stream(self, events: list, number: int, headers=()):
            """SSE with no Content-Length: the stream ends when the connection does (so it closes)."""
            self._start(200, "text/event-stream; charset=utf-8", number,
                        [("Cache-Control", "no-cache"), ("Connection", "close"), *headers])
            self.end_headers()
            self.close_connection = True
            for event in events:
                self.wfile.write(_sse(event))

        def _reset(self):
            """Close with a TCP RST and no response, like a crashed upstream."""
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()  # really closed once finish() drops rfile/wfile
            except OSError:
                pass

    _SIM_SERVER_CLASS = Server
    return Server


class SimVendor:
    """A simulated OpenAI-compatible vendor on 127.0.0.1 (ephemeral port by default), answering
    deterministically from the body: `POST /v1/chat/completions`, `/v1/completions` (a raw prompt
    in the Kimi K2 chat template's layout, answered in Kimi tokens as a vLLM deployment does) and
    `/v1/responses` (the Responses API), each also without `/v1`. One case gets one answer on all
    three: the raw prompt and the Responses input are read back into the chat body they render.

    Personalities: the table under PERSONALITIES. `script(body, attempt)` (attempt = 1-based count
    of this exact body) may return a fault from
    SIM_FAULTS for tests, or None to answer per personality; its 429s carry `Retry-After:
    retry_after`. Every request is recorded in `.received` (path, lower-cased headers, body,
    attempt, peer port)."""

    def __init__(self, personality: str = "reference", seed=0,
                 script: Callable[[dict, int], str | None] | None = None, *,
                 retry_after="1", host: str = "127.0.0.1", port: int = 0, answers: dict | None = None):
        if personality not in PERSONALITIES:
            raise ValueError(f"unknown personality {personality!r} (expected one of {', '.join(PERSONALITIES)})")
        self.personality, self.seed, self.script = personality, seed, script
        self.answers = answers or {}  # answer_key(body) -> the case's expected calls: the vendor knows them
        self.retry_after, self.host, self.port = str(retry_after), host, port
        self._lock = threading.Lock()
        self._received, self._attempts, self._count = [], {}, 0
        self._server = self._thread = None

    # -- lifecycle --
    @property
    def url(self) -> str:
        """The base URL clients use, e.g. http://127.0.0.1:PORT/v1."""
        if not self.port:
            raise RuntimeError("SimVendor is not started (no port yet)")
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> "SimVendor":
        if self._server is None:
            self._server = _sim_server_class()((self.host, self.port), self)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"k2vv-sim-{self.personality}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.drop_connections()
            server.server_close()
            self._thread.join(5)

    def __enter__(self) -> "SimVendor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what it saw --
    @property
    def received(self) -> list:
        with self._lock:
            return list(self._received)

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def reset(self) -> None:
        """Forget received requests and attempt counts (flaky fails first attempts again)."""
        with self._lock:
            self._received, self._attempts, self._count = [], {}, 0

    def _note(self, handler, body, raw: bytes) -> tuple:
        """Record one request; return (its number, the attempt number of this exact body)."""
        key = hashlib.sha256(canonical_json(body) if body is not None else raw).hexdigest()
        with self._lock:
            self._count += 1
            self._attempts[key] = attempt = self._attempts.get(key, 0) + 1
            self._received.append({
                "path": handler.path, "headers": {k.lower(): v for k, v in handler.headers.items()},
                "body": body if body is not None else raw.decode("utf-8", "replace"),
                "attempt": attempt, "peer": handler.client_address[1]})
            return self._count, attempt

    # -- answering --
    def _respond(self, handler, body, number, attempt) -> None:
        path = urllib.parse.urlsplit(handler.path).path.rstrip("/")
        route = _SIM_ROUTES.get(path)
        if route is None:  # an unknown route, as FastAPI says it
            return handler._send(404, "application/json", b'{"detail":"Not Found"}', number)
        required = {"completions": "prompt", "responses": "input"}.get(route)
        if not isinstance(body, dict) or required and required not in body:
            message = f"Missing required parameter: '{required}'." if isinstance(body, dict) \
                else "The request body is not a JSON object."
            error = {"error": {"message": message, "type": "invalid_request_error",
                               "param": required if isinstance(body, dict) else None, "code": None}}
            return handler._send(400, "application/json", json.dumps(error).encode(), number)
        notes = []
        if route == "completions":
            request, readable = _sim_raw_request(body)
            notes += [] if readable else ["unreadable_prompt"]
        else:
            request = _sim_responses_request(body) if route == "responses" else body
        digest = _sim_digest(request, self.seed)
        stream = body.get("stream") is True
        options = body.get("stream_options")
        usage = route == "responses" or isinstance(options, dict) and options.get("include_usage") is True
        fault, retry_after = None, self.retry_after
        if self.script is not None:
            try:
                fault = self.script(body, attempt)
            except Exception as err:  # noqa: BLE001 - a broken test script must be visible, not a hang
                return handler._send(500, "text/plain", f"k2vv sim: script raised {err!r}".encode(), number)
        if fault is None and self.personality == "flaky" and attempt == 1 \
                and _sim_share(digest, "flaky") < _SIM_FLAKY_SHARE:
            choices = _SIM_FLAKY_FAULTS + (("cut_stream",) if stream else ())
            fault, retry_after = choices[int(_sim_share(digest, "flaky-fault") * len(choices))], "0"
        if isinstance(fault, str) and fault.startswith("slow:"):
            time.sleep(float(fault[5:]))
            fault = None
        answer = _sim_answer(self.personality, request, self.seed, self.answers.get(answer_key(request)))
        if route == "chat":
            whole, events = _sim_completion(answer), _sim_chunks(answer, usage)
        elif route == "responses":
            whole = _sim_response(answer, body)
            events = _sim_response_events(whole)
        else:
            whole, events, tricks = _sim_text_completion(self.personality, answer, body, digest, usage)
            notes += tricks
        done = [] if route == "responses" else ["[DONE]"]  # the Responses API ends with its last event
        headers = [("x-sim-fault", fault)] if fault else []
        headers += [("x-sim-breakage", answer["breakage"])] if answer["breakage"] else []
        headers += [("x-sim-raw", ",".join(notes))] if notes else []
        if fault is None:
            if stream:
                return handler._send_stream(events + done, number, headers)
            return handler._send(200, "application/json", json.dumps(whole).encode(), number, headers)
        if fault == "reset":
            return handler._reset()
        if fault in ("cut_stream", "cut_body"):
            if stream and fault == "cut_stream":
                kept = max(1, len(events) - (3 if usage else 2))  # stop mid-arguments, before the finish
                return handler._send_stream(events[:kept], number, headers)
            data = b"".join(_sse(e) for e in events) if stream else json.dumps(whole).encode()
            return handler._send_cut("text/event-stream" if stream else "application/json", data, number, headers)
        statuses = {"429": 429, "500": 500, "502": 502, "503": 503, "401": 401, "403": 403, "404": 404,
                    "400_schema": 400}
        if re.fullmatch(r"status:[1-5]\d\d", fault):  # any other status, e.g. 402 out of credits
            statuses[fault] = int(fault[7:])
        if fault not in statuses:
            message = f"k2vv sim: unknown fault {fault!r} (expected one of {', '.join(SIM_FAULTS)})"
            return handler._send(500, "text/plain", message.encode(), number, headers)
        if fault == "429":
            headers.append(("Retry-After", retry_after))
        status, content_type, data = _sim_error(statuses[fault], request)
        return handler._send(status, content_type, data, number, headers)

    def serve_forever(self) -> None:
        """Serve in the calling thread until KeyboardInterrupt (for serve_sim)."""
        self.start()
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()


def serve_sim(personality: str, port: int, host: str = "127.0.0.1", seed=0) -> None:
    """`k2vv serve-sim`: serve one simulated vendor until Ctrl-C. The base URL is the first line
    on stdout, so a script can read it (`--port 0` picks a free port)."""
    vendor = SimVendor(personality, seed=seed, host=host, port=port).start()
    print(vendor.url, flush=True)
    print(f"k2vv: simulated '{personality}' vendor; Ctrl-C stops it", file=sys.stderr, flush=True)
    vendor.serve_forever()
