"""k2vv_judge — is a tool call's arguments object right? Against the tool's JSON Schema (DESIGN §5)
and against a case's expected calls (BFCL v4's AST checker, DESIGN §10).

The judge k2vv's `run` and `score` use for every call: schema in, verdict out. Pure: it imports
nothing from k2vv and touches no disk, clock or network; the bundled meta-schemas reach it through
`use_meta_schemas`, called by k2vv's file layer. Its specification is the JSON Schema Test Suite
(tests/test_schema_suite.py) and verdicts bfcl-eval itself produced (tests/test_arguments.py).

Where it declines to judge, the call is `unscored` with the reason, never a guess: remote `$ref`s
are never fetched; `unevaluated*`, `$dynamicRef`/`$dynamicAnchor` (and `$recursive*`),
`minContains`/`maxContains`, `$vocabulary` and custom meta-schemas are not judged; nor is a pattern
with no faithful ECMA-262 translation to Python's re (`\\p{...}`, backreferences), a `multipleOf`
beyond exact float arithmetic, a `$ref` cycle that consumes no data, or a call whose validator stops
without a verdict. `format` is an annotation.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable

# ---- 0. drafts, names, keys -------------------------------------------------------------------

DRAFT07 = "http://json-schema.org/draft-07/schema#"
# `$schema` -> how k2vv treats it: the drafts' own meta-schema URIs, exactly (an empty fragment `#`
# allowed). Any other `$schema` names a custom meta-schema, whose vocabularies k2vv cannot read.
_DRAFT_OF_SCHEMA_URI = {
    "http://json-schema.org/draft-04/schema": "http://json-schema.org/draft-04/schema#",
    "http://json-schema.org/draft-06/schema": "http://json-schema.org/draft-06/schema#",
    "http://json-schema.org/draft-07/schema": DRAFT07,
    "https://json-schema.org/draft/2019-09/schema": "2019-09",
    "https://json-schema.org/draft/2020-12/schema": "2020-12",
}
# Keywords of drafts 2019-09/2020-12 that fastjsonschema silently ignores and draft-07 cannot spell:
# a tool using one is `unscored` (its verdict would be a guess), and `lint` says so.
NOT_ENFORCED_KEYWORDS = ("unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$dynamicAnchor",
                         "$recursiveRef", "$recursiveAnchor", "minContains", "maxContains", "$vocabulary")


def pointer_token(name) -> str:
    """One JSON-pointer reference token (RFC 6901): `~` as `~0`, `/` as `~1`."""
    return str(name).replace("~", "~0").replace("/", "~1")


def pointer_tokens(pointer: str) -> list[str]:
    """The reference tokens of a JSON pointer (`""` is the root), unescaped."""
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]


def schema_key(schema) -> str:
    """The judge's memo key of a schema: equal schemas, key order aside, share it."""
    return hashlib.sha256(json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def json_type_name(value) -> str:
    """How a message names a JSON value's type: 'an object', 'a string', 'null'."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


# ---- 1. tool schemas: compile once, safely ------------------------------------------------------

# Keywords whose value is one schema, a list of schemas, or a map of name -> schema (draft-07 and
# 2020-12 spellings). The schema walker follows only these, so `enum`/`const`/`default` data and
# property *names* are never mistaken for keywords.
_SUBSCHEMA_ONE = ("items", "additionalItems", "additionalProperties", "contains", "propertyNames",
                  "not", "if", "then", "else", "unevaluatedItems", "unevaluatedProperties")
_SUBSCHEMA_LIST = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_SUBSCHEMA_MAP = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas", "dependencies")


def _subschemas(schema: dict):
    for key in _SUBSCHEMA_ONE:
        if isinstance(schema.get(key), dict):
            yield schema[key]
    for key in _SUBSCHEMA_LIST:
        if isinstance(schema.get(key), list):
            yield from (s for s in schema[key] if isinstance(s, dict))
    for key in _SUBSCHEMA_MAP:
        if isinstance(schema.get(key), dict):
            yield from (s for s in schema[key].values() if isinstance(s, dict))


def _schema_objects(schema):
    """Every schema object of a schema, found at keyword positions only (and, in a schema that
    resolve_refs has prepared, the `$ref` targets it lists under REF_TARGETS)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(_subschemas(node))
            if isinstance(node.get(REF_TARGETS), dict):
                stack.extend(node[REF_TARGETS].values())


def schema_keywords(schema) -> set:
    """Every keyword used anywhere in a schema (keys of schema objects, not property names)."""
    return {key for node in _schema_objects(schema) for key in node}


def schema_draft(schema: dict) -> str:
    """The draft k2vv applies: the one `$schema` names, else draft-07 (DESIGN §8). A `$schema`
    that is no draft's meta-schema comes back as is (see is_custom_metaschema)."""
    uri = schema.get("$schema") if isinstance(schema, dict) else None
    if isinstance(uri, str):
        return _DRAFT_OF_SCHEMA_URI.get(uri[:-1] if uri.endswith("#") else uri, uri)
    return DRAFT07  # absent, or not a string (then metaschema_problem says so)


def is_custom_metaschema(draft: str) -> bool:
    return draft not in _DRAFT_OF_SCHEMA_URI.values()


_REF_NEIGHBOURS_IGNORED = frozenset({"$ref", "$schema", "$id", "$defs", "definitions", "$comment", "title",
                                     "description", "default", "examples"})


def map_schema(schema, rewrite):
    """A copy of `schema` with `rewrite(node) -> node` applied to every schema object, innermost
    first. Only keyword positions are followed, never property names or enum/const/default data."""
    if isinstance(schema, list):
        return [map_schema(s, rewrite) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in _SUBSCHEMA_MAP and isinstance(value, dict):
            out[key] = {k: map_schema(v, rewrite) for k, v in value.items()}
        elif key in _SUBSCHEMA_ONE or key in _SUBSCHEMA_LIST:
            out[key] = map_schema(value, rewrite)
        else:
            out[key] = value
    return rewrite(out)


_CONTENT_ANNOTATIONS = ("contentEncoding", "contentMediaType")
_MODERN_DRAFTS = ("2019-09", "2020-12")
# A 2019-09+ schema may still spell draft-07's `dependencies` (suite: optional/dependencies-compatibility.json).
_DEPENDENCY_KEYWORDS = ("dependencies", "dependentRequired", "dependentSchemas")


def map_resolved_schema(schema, rewrite):
    """map_schema, also over the `$ref` targets resolve_refs lists under REF_TARGETS."""
    out = map_schema(schema, rewrite)
    if isinstance(out.get(REF_TARGETS), dict):
        out[REF_TARGETS] = {name: map_schema(target, rewrite) for name, target in out[REF_TARGETS].items()}
    return out


def desugar_2020(schema):
    """Draft 2019-09/2020-12 keywords rewritten in their exact draft-07 spellings: `prefixItems`
    (+`items`) -> `items: [...]` (+`additionalItems`); `dependentRequired`/`dependentSchemas` ->
    `dependencies`; `$ref` with siblings -> `allOf`. Measured on the 2020-12 suite:
    notes/packaging-and-validation.md §2f. `contentEncoding`/`contentMediaType` are dropped: since
    2019-09 they are annotations, which fastjsonschema's draft-07 code would assert."""
    return map_resolved_schema(schema, _desugar_node)


def _desugar_node(out: dict) -> dict:
    out = {k: v for k, v in out.items() if k not in _CONTENT_ANNOTATIONS}
    if "$ref" in out and set(out) - _REF_NEIGHBOURS_IGNORED:
        # Since 2019-09 the keywords beside a $ref apply too; draft-07 ignores them. allOf keeps both.
        ref = out["$ref"]
        out = {k: v for k, v in out.items() if k != "$ref"}
        out["allOf"] = [{"$ref": ref}] + list(out.get("allOf") or [])
    if "prefixItems" in out:
        prefix = out.pop("prefixItems")
        if "items" in out:
            out["additionalItems"] = out.pop("items")
        out["items"] = prefix
    parts = {}  # property -> what each keyword asks of an object that has it; two of them: allOf
    for key in _DEPENDENCY_KEYWORDS:
        if isinstance(out.get(key), dict):
            for name, value in out.pop(key).items():
                parts.setdefault(name, []).append(value)
    if parts:
        out["dependencies"] = {name: values[0] if len(values) == 1 else
                               {"allOf": [{"required": v} if isinstance(v, list) else v for v in values]}
                               for name, values in parts.items()}
    return out


# ---- $ref: k2vv resolves every reference itself ----
# fastjsonschema 2.22.3 resolves `#/...` against the document root even inside a subschema that has
# its own `$id`, registers no `$id` beside a `$ref`, takes an `$id` inside enum/const data or an
# unknown keyword for an identifier (suite: ref.json, optional/id.json, optional/unknownKeyword.json),
# and names the function of a `$ref` target after the pointer with every character outside [a-z0-9]
# folded to `_`, so `#/$defs/A` and `#/$defs/a` (or two non-ASCII names) shared one function: a
# wrong verdict. So k2vv indexes the `$id`s and anchors found at schema positions, lists every
# target under REF_TARGETS at the root (the same objects, not copies) and points each `$ref` there
# ("#/k2vv:refs/t0"), and compiles with fastjsonschema's own walk turned off (_code_generator).
REF_TARGETS = "k2vv:refs"

# Subschemas that apply to the instance itself (the others apply to parts of it): a `$ref` cycle
# through these alone never ends.
_IN_PLACE = frozenset(("allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas", "dependencies"))


def _children(node: dict):
    """(path from `node`, subschema) for each subschema of a schema object."""
    for key, value in node.items():
        if key in _SUBSCHEMA_MAP and isinstance(value, dict):
            yield from (((key, name), sub) for name, sub in value.items() if isinstance(sub, (dict, bool)))
        elif key in _SUBSCHEMA_LIST and isinstance(value, list):
            yield from (((key, str(i)), sub) for i, sub in enumerate(value) if isinstance(sub, (dict, bool)))
        elif key in _SUBSCHEMA_ONE and isinstance(value, (dict, bool)):
            yield (key,), value


def _step(node, token: str):
    """What a JSON pointer token names inside `node`; LookupError when nothing."""
    if isinstance(node, dict):
        return node[token]
    if isinstance(node, list) and re.fullmatch(r"0|[1-9][0-9]*", token):
        return node[int(token)]
    raise LookupError(token)


def _at(node, tokens):
    for token in tokens:
        node = _step(node, token)
    return node


def _pointer_text(tokens) -> str:
    return "#" + "".join("/" + pointer_token(t) for t in tokens)


def _join(base: str, ref: str) -> str:
    """`ref` resolved against `base`. A bare fragment keeps any base (urljoin drops `urn:` ones)."""
    if ref.startswith("#"):
        return urllib.parse.urldefrag(base).url + ref
    return urllib.parse.urljoin(base, ref)


@dataclass(slots=True)
class _RefIndex:
    resources: dict = field(default_factory=lambda: {"": ()})  # URI -> path of the schema it identifies
    anchors: dict = field(default_factory=dict)  # URI#name -> path
    bases: dict = field(default_factory=dict)  # path of each schema object walked -> its base URI
    refs: list = field(default_factory=list)  # (path, base URI, $ref) of each $ref


def _register(table: dict, uri: str, path: tuple) -> None:
    if table.setdefault(uri, path) != path:
        raise ValueError(f"{uri!r} identifies two subschemas ({_pointer_text(table[uri])}, {_pointer_text(path)})")


def _index_schemas(index: _RefIndex, node, path: tuple, base: str, draft: str) -> None:
    """Add the schema objects at and under `node` (found at `path`) to `index`."""
    id_keyword = "id" if draft == "http://json-schema.org/draft-04/schema#" else "$id"
    stack = [(node, path, base)]
    while stack:
        node, path, base = stack.pop()
        if not isinstance(node, dict) or path in index.bases:
            continue
        ident = node.get(id_keyword)
        if isinstance(ident, str) and (draft in _MODERN_DRAFTS or "$ref" not in node):  # draft-07: ignored beside $ref
            uri, fragment = urllib.parse.urldefrag(_join(base, ident))
            if urllib.parse.urldefrag(ident).url:
                base = uri
                _register(index.resources, uri, path)
            if fragment and draft not in _MODERN_DRAFTS:  # draft-06/07 `"$id": "#name"` is an anchor
                _register(index.anchors, f"{uri}#{fragment}", path)
        if draft in _MODERN_DRAFTS and isinstance(node.get("$anchor"), str):
            _register(index.anchors, f"{urllib.parse.urldefrag(base).url}#{node['$anchor']}", path)
        index.bases[path] = base
        if isinstance(node.get("$ref"), str):
            index.refs.append((path, base, node["$ref"]))
        stack.extend((sub, path + more, base) for more, sub in _children(node))


def _ref_target(schema, index: _RefIndex, base: str, ref: str) -> tuple:
    """The path from the root of the subschema `ref` names, or ValueError."""
    absolute = _join(base, ref)
    uri, fragment = urllib.parse.urldefrag(absolute)
    if uri not in index.resources:
        raise ValueError(f"remote $ref {absolute!r} is not fetched (only local refs are allowed)")
    if fragment and not fragment.startswith("/"):
        path = index.anchors.get(f"{uri}#{fragment}")
    else:
        path = index.resources[uri] + tuple(pointer_tokens(urllib.parse.unquote(fragment)))
    try:
        target = _at(schema, path) if path is not None else None
    except LookupError:
        target = None
    if not isinstance(target, (dict, bool)):
        raise ValueError(f"$ref {ref!r} points at no subschema")
    return path


def _ref_loop(schema, index: _RefIndex, targets: dict, draft: str) -> list | None:
    """The paths of a cycle of `$ref`s and in-place subschemas (allOf, not, if, ...) reachable from
    the root, if any: it applies a schema to the same value forever."""
    def successors(path):  # (path, applies to the same value)
        node = _at(schema, path)
        if not isinstance(node, dict):
            return
        if path in targets:
            yield targets[path], True
            if draft not in _MODERN_DRAFTS:  # draft-07 ignores the keywords beside a $ref
                return
        for more, _ in _children(node):
            if more[0] not in ("definitions", "$defs"):
                yield path + more, more[0] in _IN_PLACE
    reachable, stack = {(): None}, [()]  # a dict: found in the same order every run, so is the loop named
    while stack:
        for nxt, _ in successors(stack.pop()):
            if nxt not in reachable:
                reachable[nxt] = None
                stack.append(nxt)
    done = set()
    for start in reachable:  # depth-first over in-place edges only; a path node seen again is a cycle
        trail, branches = [start], [iter([p for p, same in successors(start) if same])]
        while branches:
            nxt = next(branches[-1], None)
            if nxt is None:
                done.add(trail.pop())
                branches.pop()
            elif nxt in trail:
                return trail[trail.index(nxt):] + [nxt]
            elif nxt not in done:
                trail.append(nxt)
                branches.append(iter([p for p, same in successors(nxt) if same]))
    return None


def resolve_refs(schema: dict, draft: str) -> dict:
    """A copy of `schema` with every `$ref` target listed under REF_TARGETS and every `$ref`
    pointing there (the root stays "#"). ValueError for a `$ref` the schema does not hold (remote
    refs are never fetched) and for a `$ref` cycle that never consumes data (it recurses forever)."""
    if REF_TARGETS in schema:
        raise ValueError(f"the schema uses {REF_TARGETS!r}, a name k2vv keeps for itself")
    index = _RefIndex()
    _index_schemas(index, schema, (), "", draft)
    targets, i = {}, 0
    while i < len(index.refs):
        path, base, ref = index.refs[i]
        i += 1
        target = targets[path] = _ref_target(schema, index, base, ref)
        if target not in index.bases:  # e.g. `#/examples/0`: outside the walked keywords, its own $refs count
            enclosing = next(index.bases[target[:n]] for n in range(len(target), -1, -1) if target[:n] in index.bases)
            _index_schemas(index, _at(schema, target), target, enclosing, draft)
    loop = _ref_loop(schema, index, targets, draft)
    if loop:
        raise ValueError(f"$ref loop {' -> '.join(map(_pointer_text, loop))} never consumes data")
    out = copy.deepcopy(schema)
    names = {target: f"t{n}" for n, target in enumerate(dict.fromkeys(t for t in targets.values() if t))}
    for path, target in targets.items():
        _at(out, path)["$ref"] = f"#/{REF_TARGETS}/{names[target]}" if target else "#"
    out[REF_TARGETS] = {name: _at(out, target) for target, name in names.items()}
    return out


# ---- patterns: ECMA-262, as JSON Schema says, run on Python's re ----
# Python's \d \w \b are Unicode-aware (ECMA's are ASCII), its \s is another set, its `.` matches
# \r, \u2028 and \u2029, its `$` matches before a final newline, it reads `{,5}` as a quantifier and
# `a*+` as possessive, and it has no \cX (suite: optional/ecmascript-regex.json). ecma_to_python
# rewrites exactly those; what it cannot rewrite faithfully makes the schema unscored.

def _char_class_text(ranges) -> str:
    def char(c):
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" if c < 0x10000 else f"\\U{c:08x}"
    return "".join(char(lo) if lo == hi else f"{char(lo)}-{char(hi)}" for lo, hi in ranges)


# ECMA-262 WhiteSpace and LineTerminator: TAB VT FF SP NBSP ZWNBSP, the Space_Separator category, LF CR LS PS.
_ECMA_SPACE_RANGES = ((0x09, 0x0d), (0x20, 0x20), (0xa0, 0xa0), (0x1680, 0x1680), (0x2000, 0x200a),
                      (0x2028, 0x2029), (0x202f, 0x202f), (0x205f, 0x205f), (0x3000, 0x3000), (0xfeff, 0xfeff))
_ECMA_SPACE = _char_class_text(_ECMA_SPACE_RANGES)
_ECMA_NOT_SPACE = _char_class_text(  # the gaps between those ranges, up to the last code point
    [(lo, hi) for lo, hi in zip([0] + [h + 1 for _, h in _ECMA_SPACE_RANGES],
                                [lo - 1 for lo, _ in _ECMA_SPACE_RANGES] + [0x10FFFF]) if lo <= hi])
_ECMA_QUANTIFIER = re.compile(r"\{[0-9]+(,[0-9]*)?\}")
_ECMA_GROUP_OPENERS = ("(?:", "(?=", "(?!", "(?<=", "(?<!")


def ecma_to_python(pattern: str) -> str:
    r"""An ECMA-262 pattern as a Python `re` pattern that matches the same strings: \d \w \b
    ASCII (the `(?a)` flag), \s the ECMA white space, `.` no line terminator, `$` only the end, \cX
    a control character, `{` a literal unless it is a quantifier, named groups spelled (?P<name>).
    ValueError for what has no faithful translation (\p{...}, backreferences, Python-only syntax)."""
    out, i, ascii_classes, after_quantifier = [], 0, False, False
    while i < len(pattern):
        c, quantifier = pattern[i], False
        if c == "\\":
            text, i = _ecma_escape(pattern, i, in_class=False)
            ascii_classes = ascii_classes or text in ("\\d", "\\D", "\\w", "\\W", "\\b", "\\B")
        elif c == "[":
            text, i, uses_ascii = _ecma_class(pattern, i)
            ascii_classes = ascii_classes or uses_ascii
        elif c == "(" and pattern.startswith("(?", i):
            opener = next((o for o in _ECMA_GROUP_OPENERS if pattern.startswith(o, i)), None)
            named = re.match(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", pattern[i:])
            if opener is None and named is None:
                raise ValueError(f"{pattern[i:i + 3]!r} is not ECMA-262 syntax")
            text, i = (opener, i + len(opener)) if opener else (f"(?P<{named.group(1)}>", i + named.end())
        elif c == "{" and _ECMA_QUANTIFIER.match(pattern, i):
            text = _ECMA_QUANTIFIER.match(pattern, i).group()
            i, quantifier = i + len(text), True
        elif c == "+" and after_quantifier:
            raise ValueError("a possessive quantifier is not ECMA-262 syntax")
        else:
            text, i, quantifier = {".": r"[^\n\r\u2028\u2029]", "$": r"\Z", "{": r"\{"}.get(c, c), i + 1, c in "*+?"
        out.append(text)
        after_quantifier = quantifier
    return ("(?a)" if ascii_classes else "") + "".join(out)


def _ecma_escape(pattern: str, i: int, in_class: bool) -> tuple[str, int]:
    """(Python text, next index) for the escape at pattern[i] (a backslash)."""
    c = pattern[i + 1] if i + 1 < len(pattern) else ""
    if not c:
        raise ValueError("a trailing backslash is not ECMA-262 syntax")
    hex_digits = re.match(r"x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}", pattern[i + 1:i + 6])
    if c in "dDwWtnrvf" or c == "b" or c == "B" and not in_class:
        return "\\" + c, i + 2  # the same in Python (\d \w \b once ASCII; [\b] is backspace in both)
    if c in "sS":
        body = _ECMA_SPACE if c == "s" else _ECMA_NOT_SPACE
        return (body if in_class else f"[{body}]"), i + 2
    if c == "c" and pattern[i + 2:i + 3].isascii() and pattern[i + 2:i + 3].isalpha():
        return f"\\x{ord(pattern[i + 2]) % 32:02x}", i + 3
    if c == "0" and not pattern[i + 2:i + 3].isdigit():
        return "\\x00", i + 2
    if hex_digits:
        end = i + 1 + hex_digits.end()
        pair = re.match(r"\\u(d[c-f][0-9a-f]{2})", pattern[end:end + 6], re.I)
        if c == "u" and 0xD800 <= int(hex_digits.group()[1:], 16) < 0xDC00 and pair:  # a UTF-16 surrogate pair
            high, low = int(hex_digits.group()[1:], 16), int(pair.group(1), 16)
            return f"\\U{0x10000 + (high - 0xD800) * 0x400 + (low - 0xDC00):08x}", end + 6
        return pattern[i:end], end
    if c and not (c.isascii() and c.isalnum()):
        return "\\" + c, i + 2  # an escaped symbol (or a non-ASCII character) is itself in both
    what = {"p": "\\p{...} (Unicode properties)", "P": "\\P{...} (Unicode properties)",
            "k": "a named backreference"}.get(c, "a backreference" if c.isdigit() else f"\\{c}")
    raise ValueError(f"{what} has no faithful Python translation")


def _ecma_class(pattern: str, i: int) -> tuple[str, int, bool]:
    r"""(Python text, next index, uses \d \w) for the character class at pattern[i] (a `[`). ECMA
    closes a class at its first `]` even right after `[` or `[^`: `[]` matches nothing, `[^]` anything."""
    negated = pattern.startswith("[^", i)
    i += 2 if negated else 1
    items, uses_ascii = [], False
    while i < len(pattern) and pattern[i] != "]":
        if pattern[i] == "\\":
            text, i = _ecma_escape(pattern, i, in_class=True)
            uses_ascii = uses_ascii or text in ("\\d", "\\D", "\\w", "\\W")
        else:  # `[` and set-operation lookalikes (&& || ~~) are escaped: Python warns and may one day read
            # them; `$` too, or fastjsonschema, which turns every unescaped `$` into `\Z`, would make `[$]` `[\Z]`
            text, i = ("\\" + pattern[i] if pattern[i] in "[&|~$" else pattern[i]), i + 1
        items.append(text)
    if i >= len(pattern):
        raise ValueError("an unterminated character class")
    if not items:
        return ("[\\x00-\\U0010ffff]" if negated else "(?!)"), i + 1, False
    return f"[{'^' if negated else ''}{''.join(items)}]", i + 1, uses_ascii


def translate_patterns(schema):
    """`schema` with every `pattern` and `patternProperties` name in Python's dialect (ecma_to_python);
    ValueError naming the first pattern that has no faithful translation. A translated node keeps
    its pattern as written under PATTERN_AS_WRITTEN, which mismatch messages quote."""
    def translated(node: dict) -> dict:
        if isinstance(node.get("pattern"), str):
            node = dict(node, pattern=_python_pattern(node["pattern"]), **{PATTERN_AS_WRITTEN: node["pattern"]})
        if isinstance(node.get("patternProperties"), dict):
            merged = {}  # two names may translate alike (`a{,2}`, `a\{,2}`): both subschemas apply
            for name, sub in node["patternProperties"].items():
                merged.setdefault(_python_pattern(name), []).append(sub)
            node = dict(node, patternProperties={p: subs[0] if len(subs) == 1 else {"allOf": subs}
                                                 for p, subs in merged.items()})
        return node
    return map_resolved_schema(schema, translated)


PATTERN_AS_WRITTEN = "k2vv:pattern"


def _python_pattern(pattern: str) -> str:
    try:
        return ecma_to_python(pattern)
    except ValueError as err:
        raise ValueError(f"pattern {pattern!r} is not judged: {err}") from None


def _code_generator(schema: dict):
    """fastjsonschema's (resolver, code generator) for a schema whose `$ref`s resolve_refs has pointed
    from the root: fastjsonschema's own walk of the schema, which registers `$id`s found in enum/const
    data and rewrites `$ref`s inside data, is skipped; and its error messages show a subschema as
    written instead of resolving `{"$ref": ...}` objects that are enum/const data (an unresolvable one
    stopped compiling: suite ref.json 'naive replacement of $ref with its destination'), nor the
    list of `$ref` targets."""
    import fastjsonschema
    from fastjsonschema.ref_resolver import RefResolver
    resolver = RefResolver("", {}, store={}, handlers=_RefuseAllSchemes())  # walks {}: nothing
    resolver.schema = schema
    generator = fastjsonschema._get_code_generator_class(schema)(schema, resolver=resolver, use_default=False,
                                                                 use_formats=False)
    generator._expand_refs = lambda definition: {k: v for k, v in definition.items() if k != REF_TARGETS} \
        if isinstance(definition, dict) else definition
    return resolver, generator


class _RefuseAllSchemes(dict):
    """fastjsonschema `handlers` that claim every URI scheme and refuse it: `$ref` never reaches
    urlopen (no SSRF, no local file read; notes/packaging-and-validation.md §2e)."""
    def __contains__(self, scheme):
        return True

    def __getitem__(self, scheme):
        def refuse(uri):
            raise ValueError(f"remote $ref {uri!r} is not fetched (only local refs are allowed)")
        return refuse


# What generated validator code may name (fastjsonschema 2.22.3): globals, attributes and imported
# modules all land in a code object's `co_names`, so checking those (recursively) bounds what the
# code can reach without parsing it twice. Anything else means a schema smuggled code in (notes
# §2e). Measured: no false positive over every tool schema of the open data (tests/test_schema.py).
_ALLOWED_NAMES = frozenset(
    "bool bytes dict enumerate float frozenset hasattr int isinstance len list locals repr set sorted "
    "str tuple type Exception True False None Decimal JsonSchemaValueException JsonSchemaValuesException "
    "NoneType REGEX_PATTERNS base64 json re decimal custom_formats name_prefix "
    "b64decode compile decode format get is_integer items keys loads match remove search append".split())
_ALLOWED_NAME_RE = re.compile(r"^(data|validate)\w*$")
# Functions generated code may define: a validator per $ref target, and `fn`, the helper that
# `uniqueItems` defines to compare items as JSON values (its body is checked like any other).
_ALLOWED_CODE_NAMES = re.compile(r"^(validate\w*|fn|<module>|<genexpr>|<listcomp>|<dictcomp>|<setcomp>)$")


def _check_generated_code(code) -> None:
    """Refuse generated validator code that can reach anything outside the allowlist."""
    stack = [code]
    while stack:
        code = stack.pop()
        if not _ALLOWED_CODE_NAMES.match(code.co_name):
            raise ValueError(f"generated code defines {code.co_name!r}")
        for name in code.co_names:
            if name not in _ALLOWED_NAMES and not _ALLOWED_NAME_RE.match(name):
                raise ValueError(f"generated code names {name!r}")
        stack.extend(c for c in code.co_consts if hasattr(c, "co_names"))


META_SCHEMA_FILES = {  # draft -> bundled meta-schema (schemas/meta/README.md)
    "http://json-schema.org/draft-04/schema#": "schemas/meta/draft-04.json",
    "http://json-schema.org/draft-06/schema#": "schemas/meta/draft-06.json",
    DRAFT07: "schemas/meta/draft-07.json",
}
_META_VALIDATORS: dict = {}
_META_LOCK = threading.Lock()
_read_bundled: Callable[[str], bytes] | None = None


def use_meta_schemas(read_bundled: Callable[[str], bytes]) -> None:
    """Give the judge the reader of k2vv's bundled files (META_SCHEMA_FILES): the file layer knows
    where a pyz, a wheel or a checkout keeps them; the judge does not."""
    global _read_bundled
    _read_bundled = read_bundled


def metaschema_problem(schema: dict) -> str | None:
    """Why a schema is not valid for the draft it names (None when it is): e.g. a draft-04 boolean
    `exclusiveMinimum` without `$schema`. Such a schema is the dataset's fault, so its calls are
    unscored rather than judged by a guess at what it meant."""
    uri = schema.get("$schema", DRAFT07)
    validate = _META_VALIDATORS.get(uri)
    if validate is None:
        with _META_LOCK:  # one compile, by one thread: 64 workers compiling it at once cost ~40 MB of arenas
            validate = _META_VALIDATORS.get(uri)
            if validate is None:
                import fastjsonschema
                meta = json.loads(_read_bundled(META_SCHEMA_FILES[uri]))  # our own file: trusted code generation
                validate = _META_VALIDATORS[uri] = fastjsonschema.compile(meta, use_formats=False, use_default=False)
    try:
        validate(schema)
    except Exception as err:  # noqa: BLE001 - JsonSchemaValueException; anything else is a broken schema too
        where = _pointer(getattr(err, "name", None)) or "/"
        draft = uri.split("/")[-2] if uri.startswith("http") else uri
        return f"not a valid {draft} schema at {where}: {getattr(err, 'message', err)}"[:300]
    return None


@dataclass(slots=True)
class ToolSchema:
    """A compiled `parameters` schema. `validate` is None when any object is accepted (empty or
    absent parameters) or when the schema is unscored; `unscored` says why it cannot be judged.
    `deferred`: a plain schema not compiled yet (see `check_instance`); `used`: judged once already."""
    validate: Callable | None
    unscored: str | None = None
    draft: str = DRAFT07
    deferred: dict | None = None
    used: bool = False
    faults: tuple = ()  # SchemaFault: where a failure is the dataset's, not the provider's


ACCEPT_ANY = ToolSchema(None)


class CannotJudge(Exception):
    """The compiled validator stopped without a verdict (a RecursionError, an OverflowError, a
    multipleOf beyond exact arithmetic): the call is unscored with this reason, never a mismatch."""


# multipleOf, as fastjsonschema 2.22.3 generates it: int by int exactly; a float divisor through
# Decimal in the current context (28 digits: 1e30 passed as a multiple of 0.3); an int divisor of a
# float by float division, exact below 2**53 only (1e20 passed as a multiple of 3); then "inifinity
# reached" when the float quotient overflows, even for a multiple (1e308 of 0.5: suite
# optional/float-overflow.json). 1,000 digits make every Decimal quotient of float-sized numbers exact.
_EXACT_FLOAT_LIMIT = 2 ** 53
_MULTIPLE_OF_DIGITS = 1000


def _judged_exactly(validate, int_divisor: bool):
    """`validate` for a schema that uses multipleOf: Decimal quotients computed exactly, and
    CannotJudge where fastjsonschema's float arithmetic cannot be trusted."""
    import decimal
    from fastjsonschema import JsonSchemaValueException
    context = decimal.Context(prec=_MULTIPLE_OF_DIGITS)

    def validate_exactly(data):
        if int_divisor:
            big = _float_beyond(data, _EXACT_FLOAT_LIMIT)
            if big is not None:
                raise CannotJudge(f"multipleOf: {big!r} is beyond 2**53, where a float quotient is not exact")
        try:
            with decimal.localcontext(context):
                return validate(data)
        except JsonSchemaValueException as err:
            if err.rule == "multipleOf" and "inifinity reached" in str(err.message):
                raise CannotJudge(f"multipleOf: the quotient of {err.value!r} overflows a float") from None
            raise
    return validate_exactly


def _float_beyond(value, limit):
    """The first float in a JSON value whose magnitude is at least `limit`, else None."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, float) and abs(node) >= limit:
            return node
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def _accepts_anything(parameters) -> bool:
    """Empty or absent `parameters` (or `true`) accept any object (DESIGN §8; K2VV fails them all)."""
    return parameters is None or parameters is True or parameters == {}


# Keywords fastjsonschema does not check with defaults and formats off: prose and annotations.
_PROSE_KEYWORDS = frozenset(("title", "description", "default", "examples", "$comment", "readOnly",
                             "writeOnly", "deprecated"))


def schema_shape(schema):
    """`schema` without its prose keywords (only where a keyword stands, not in property names or
    data): schemas that differ only in descriptions validate alike, so they can share a compiled
    validator (bfcl-live: 1,670 distinct tool schemas, 1,046 shapes)."""
    return map_schema(schema, lambda node: {k: v for k, v in node.items() if k not in _PROSE_KEYWORDS})


def compile_tool_schema(parameters, by_shape: dict | None = None) -> ToolSchema:
    """Compile one tool's `parameters` with fastjsonschema, guarded (DESIGN §8): `$schema` honoured,
    draft-07 by default, 2020-12 spellings desugared, `$ref`s resolved by k2vv (remote ones refused),
    patterns translated from ECMA-262, formats and defaults off, multipleOf exact, and generated code
    checked against an allowlist before it runs. Any failure is the dataset's:
    the tool is `unscored`, never blamed on the provider. `by_shape` (schema_shape hash ->
    validator) lets schemas that pass every check above share the validator of their shape."""
    if _accepts_anything(parameters):
        return ACCEPT_ANY
    if not isinstance(parameters, dict):
        return ToolSchema(None, f"parameters is {json_type_name(parameters)}, not a JSON Schema object")
    draft = schema_draft(parameters)
    if is_custom_metaschema(draft):
        return ToolSchema(None, f"custom meta-schema {draft!r} is not judged (k2vv reads the standard drafts only)",
                          draft)
    used = schema_keywords(parameters)
    schema = parameters
    if "$ref" in used and not any(k in used for k in NOT_ENFORCED_KEYWORDS):
        try:
            schema = resolve_refs(parameters, draft)
        except ValueError as err:
            return ToolSchema(None, str(err)[:300], draft)
        used = schema_keywords(schema)  # with the $ref targets outside the walked keywords
    unenforced = sorted(k for k in NOT_ENFORCED_KEYWORDS if k in used)
    if unenforced:
        return ToolSchema(None, f"uses {', '.join(unenforced)}, which k2vv cannot enforce", draft)
    if draft in _MODERN_DRAFTS:
        schema = desugar_2020(schema)
    if any(node.get("additionalProperties") == {} for node in _schema_objects(schema)):
        # The same schema: fastjsonschema tests `additionalProperties` for truth, takes {} for false and
        # then refuses `required` names outside `properties` ("required but not allowed").
        schema = map_resolved_schema(schema, lambda node: dict(node, additionalProperties=True)
                                     if node.get("additionalProperties") == {} else node)
    schema = dict(schema, **{"$schema": draft if draft.startswith("http") else DRAFT07})
    problem = metaschema_problem(schema)
    if problem:
        return ToolSchema(None, problem, draft)
    if "pattern" in used or "patternProperties" in used:
        try:
            schema = translate_patterns(schema)
        except ValueError as err:
            return ToolSchema(None, str(err)[:300], draft)
    # A $ref may point anywhere, prose included: such a schema keeps a validator of its own.
    shape = None if by_shape is None or "$ref" in used else schema_key(schema_shape(schema))
    if shape in (by_shape or {}):
        return ToolSchema(by_shape[shape], None, draft)
    try:
        resolver, generator = _code_generator(schema)
        code = compile(generator.func_code, "<k2vv tool schema>", "exec")
        _check_generated_code(code)
        state = generator.global_state
        exec(code, state)  # checked above: it can only reach the allowlisted names
        validate = state[resolver.get_scope_name()]
        if "multipleOf" in used:
            divisors = [node["multipleOf"] for node in _schema_objects(schema) if "multipleOf" in node]
            validate = _judged_exactly(validate, any(isinstance(d, int) for d in divisors))
        if shape is not None:
            by_shape[shape] = validate
        return ToolSchema(validate, None, draft)
    except Exception as err:  # noqa: BLE001 - every compile failure is a dataset problem
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        return ToolSchema(None, f"schema does not compile: {message[:200]}", draft)


# ---- 2. plain schemas: judge the first call without compiling ----------------------------------
# Compiling costs ~1.5 ms a schema, validating with the compiled code ~2 us a call; when every case
# brings its own functions (BFCL-like test sets) compiling is most of `score`. A *plain* schema (the
# draft-07 subset below, no names that could reach generated code) has its first call judged by
# `plainly_valid`; only a call it cannot call valid, or the schema's second use, compiles it. The
# verdict is the compiled one either way: plainly_valid says True only where fastjsonschema agrees
# (it is stricter: `1.0` is no integer, `true` matches no enum `1`), and a plain schema always
# compiles. tests/test_parity.py checks both claims over every tool schema of the open data.

_PLAIN_KEYWORDS = frozenset(("type", "properties", "required", "additionalProperties", "items", "enum",
                             "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
                             "maxLength", "minItems", "maxItems", "format")) | _PROSE_KEYWORDS
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_\-. ]{1,100}\Z")
_PLAIN_TYPES = {"string": lambda v: isinstance(v, str), "object": lambda v: isinstance(v, dict),
                "array": lambda v: isinstance(v, list), "boolean": lambda v: isinstance(v, bool),
                "null": lambda v: v is None, "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
                "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}
_BOUNDS = (("minimum", lambda v, b: v < b), ("maximum", lambda v, b: v > b),
           ("exclusiveMinimum", lambda v, b: v <= b), ("exclusiveMaximum", lambda v, b: v >= b))
_LENGTHS = (("minLength", str, False), ("maxLength", str, True), ("minItems", list, False), ("maxItems", list, True))


def is_plain_schema(node, depth: int = 0) -> bool:
    """Whether a schema uses only _PLAIN_KEYWORDS, standard type names, plain property names,
    object (not tuple) `items` and numeric bounds, at most 24 levels deep, and compiles."""
    if isinstance(node, bool):
        return True
    if not isinstance(node, dict) or depth > 24 or any(k not in _PLAIN_KEYWORDS for k in node):
        return False
    kind = node.get("type")
    if kind is not None and not all(t in _PLAIN_TYPES for t in (kind if isinstance(kind, list) else [kind])):
        return False
    props = node.get("properties", {})
    if not isinstance(props, dict) or not all(_PLAIN_NAME.match(n) and is_plain_schema(sub, depth + 1)
                                              for n, sub in props.items()):
        return False
    required = node.get("required", [])
    if not isinstance(required, list) or not all(isinstance(n, str) and _PLAIN_NAME.match(n) for n in required):
        return False
    if node.get("additionalProperties") is False and not set(required) <= set(props):
        return False  # fastjsonschema refuses to compile it ("required but not allowed"): unscored, not deferred
    if any(k in node and not is_plain_schema(node[k], depth + 1) for k in ("additionalProperties", "items")):
        return False
    if "enum" in node and not isinstance(node["enum"], list):
        return False
    numbers = [node[k] for k, _ in _BOUNDS if k in node] + [node[k] for k, _, _ in _LENGTHS if k in node]
    return all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers)


def plainly_valid(node, value) -> bool:
    """True when `value` satisfies the plain schema `node` as fastjsonschema judges it; False when
    it does not, or may not (then the caller compiles and asks fastjsonschema)."""
    if isinstance(node, bool):
        return node
    kind = node.get("type")
    if kind is not None and not any(_PLAIN_TYPES[t](value) for t in (kind if isinstance(kind, list) else [kind])):
        return False
    if "enum" in node and not any(json_equal(e, value) for e in node["enum"]):
        return False
    if isinstance(value, (int, float)):  # bools too: fastjsonschema compares them as numbers
        if any(k in node and beyond(value, node[k]) for k, beyond in _BOUNDS):
            return False
    for key, kind_of, is_max in _LENGTHS:
        if key in node and isinstance(value, kind_of) and (len(value) > node[key] if is_max else len(value) < node[key]):
            return False
    if isinstance(value, list) and "items" in node:
        return all(plainly_valid(node["items"], item) for item in value)
    if isinstance(value, dict):
        if not all(name in value for name in node.get("required", ())):
            return False
        props, extra = node.get("properties", {}), node.get("additionalProperties", True)
        for name, item in value.items():
            sub = props[name] if name in props else extra
            if sub is not True and not plainly_valid(sub, item):
                return False
    return True


def json_equal(a, b) -> bool:
    """Equality of JSON values, as enum/const compare them: `true` and `1` differ at every depth
    (Python says `[False] == [0]`), `1` and `1.0` are the same number (the suite says so)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(json_equal, a, b))
    return type(a) is type(b) and a == b


def _deferrable(parameters) -> bool:
    """A draft-07 plain schema that is valid for its draft: compiling it cannot fail."""
    return (isinstance(parameters, dict) and schema_draft(parameters) == DRAFT07 and is_plain_schema(parameters)
            and metaschema_problem(dict(parameters, **{"$schema": DRAFT07})) is None)


class BoundedMemo(dict):
    """A dict that forgets its oldest entries past `limit`: a test set where every case brings new
    functions must not keep 100,000 compiled validators (~2 KB each) until the command ends. An
    entry forgotten and needed again is rebuilt, with the same verdicts."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.lock = threading.Lock()

    def __setitem__(self, key, value) -> None:
        with self.lock:
            super().__setitem__(key, value)
            while len(self) > self.limit:  # only setters change it, all under the lock
                del self[next(iter(self))]


SCHEMA_MEMO_LIMIT = 4096
_SCHEMA_CACHE: dict[str, ToolSchema] = BoundedMemo(SCHEMA_MEMO_LIMIT)
_VALIDATOR_OF_SHAPE: dict[str, Callable] = BoundedMemo(SCHEMA_MEMO_LIMIT)


def tool_schema(parameters) -> ToolSchema:
    """compile_tool_schema memoised by the canonical hash of the schema (the newest 4,096, in memory
    only: compiled code never goes to a cache directory someone else could hand us); a plain schema
    is deferred (see `check_instance`)."""
    if _accepts_anything(parameters):
        return ACCEPT_ANY
    key = schema_key(parameters)
    found = _SCHEMA_CACHE.get(key)
    if found is None:
        faults = tuple(schema_faults(parameters))
        whole = next((f for f in faults if f.hangs or f.reach is None), None)
        if whole is not None:  # never run it: a pattern that may hang, or a fault that reaches anywhere
            found = ToolSchema(None, whole.text(), faults=faults)
        else:
            found = ToolSchema(None, deferred=parameters) if _deferrable(parameters) else \
                compile_tool_schema(parameters, _VALIDATOR_OF_SHAPE)
            found.faults = faults
        _SCHEMA_CACHE[key] = found
    return found


def _compile_deferred(schema: ToolSchema, parameters: dict) -> None:
    """Compile a deferred schema in place. `deferred` is cleared last, so another thread sees
    either the schema still deferred (and compiles it too) or its validator, never neither."""
    compiled = compile_tool_schema(parameters, _VALIDATOR_OF_SHAPE)
    schema.validate, schema.unscored = compiled.validate, compiled.unscored
    schema.deferred = None


def _pointer(path_name: str | None) -> str:
    """JSON pointer of a fastjsonschema error name (`data.a[1]` -> `/a/1`)."""
    parts = [p for p in re.split(r"[.\[\]]+", path_name or "") if p]
    return "".join("/" + pointer_token(p) for p in parts[1:])


def check_instance(schema: ToolSchema, instance) -> tuple[str, str] | None:
    """None when `instance` satisfies the schema, else (JSON pointer, message); CannotJudge when
    the validator fails without a verdict. Tool arguments must be a JSON object whatever the schema
    says (OpenAI function calling)."""
    if not isinstance(instance, dict):
        return "", f"arguments are {json_type_name(instance)}, not a JSON object"
    deferred = schema.deferred
    if deferred is not None:  # a plain schema: its first call may need no compiling
        if not schema.used and plainly_valid(deferred, instance):
            schema.used = True
            return None
        _compile_deferred(schema, deferred)
    if schema.validate is None:
        return None
    try:
        schema.validate(instance)
    except CannotJudge:
        raise
    except Exception as err:  # noqa: BLE001 - JsonSchemaValueException is a verdict; anything else is not
        if type(err).__name__ != "JsonSchemaValueException":  # fastjsonschema's verdict, told by name: no import here
            raise CannotJudge(f"the validator stopped without a verdict: {type(err).__name__}: {err}"[:300]) from None
        message = err.message or str(err)
        if err.rule == "pattern" and isinstance(err.definition, dict) and PATTERN_AS_WRITTEN in err.definition:
            message = f"{err.name} must match pattern {err.definition[PATTERN_AS_WRITTEN]}"  # not its translation
        return _pointer(err.name), (f"{message} ({err.rule})" if err.rule else message)[:300]
    return None


# ---- 3. dataset faults: schemas no value satisfies, patterns that cannot be judged in time ---

@dataclass(frozen=True, slots=True)
class SchemaFault:
    """A place in a tool schema that is the dataset's fault. `reach`: the instance locations it
    governs (property names, `*` for any array item), or None when that cannot be said simply
    (under allOf, a $ref target, ...): then every call of the tool is unscored. `hangs`: judging
    it could take unbounded time, so no call of the tool is judged."""
    where: str
    problem: str
    reach: tuple | None
    hangs: bool = False

    def text(self) -> str:
        return f"{self.problem} at {self.where}"


def schema_faults(schema) -> list[SchemaFault]:
    """Where and why a tool schema is the dataset's fault rather than a question a vendor can
    answer: a `pattern` that can backtrack catastrophically (`^(a+)+$` holds the interpreter for
    minutes on 40 characters, and Python's regex engine cannot be interrupted), an `enum` none of
    whose values has the declared type, or `required` naming a property that
    `additionalProperties: false` forbids. Calls that reach one are unscored; `lint` names each."""
    if not isinstance(schema, dict):
        return []
    found, stack, seen = [], [(schema, "", ())], 0
    while stack and seen < 10_000:
        node, where, reach = stack.pop()
        seen += 1
        problem, hangs = _node_fault(node)
        if problem:
            found.append(SchemaFault(where or "/", problem, reach, hangs))
        for key in _SUBSCHEMA_ONE:
            if isinstance(node.get(key), dict):
                stack.append((node[key], f"{where}/{key}", _reach(reach, key, None)))
        for key in _SUBSCHEMA_LIST:
            if isinstance(node.get(key), list):
                stack.extend((sub, f"{where}/{key}/{i}", None) for i, sub in enumerate(node[key])
                             if isinstance(sub, dict))
        for key in _SUBSCHEMA_MAP:
            if isinstance(node.get(key), dict):
                stack.extend((sub, f"{where}/{key}/{pointer_token(n)}", _reach(reach, key, n))
                             for n, sub in node[key].items() if isinstance(sub, dict))
    return sorted(found, key=lambda f: f.where)


def _reach(reach: tuple | None, key: str, name) -> tuple | None:
    """The instance locations a subschema governs, one step further; None once it is not simple."""
    if reach is None:
        return None
    if key == "properties":
        return reach + (str(name),)
    if key in ("items", "additionalItems"):
        return reach + ("*",)
    return None


def fault_reached(fault: SchemaFault, pointer: str | None) -> bool:
    """Whether a validation failure at JSON pointer `pointer` (of the instance) lies where `fault`
    governs: then it is the dataset's fault, not the provider's."""
    if fault.reach is None or pointer is None:
        return True
    parts = pointer_tokens("" if pointer == "/" else pointer)  # faults say "/" for the root
    return len(parts) >= len(fault.reach) and all(r in ("*", p) for r, p in zip(fault.reach, parts))


def fault_is_unavoidable(schema: dict, where: str) -> bool:
    """Whether every call must reach the fault at `where`: a chain of required properties from the
    root (then no call can be valid); else only calls that use an optional part reach it."""
    node = schema
    parts = pointer_tokens("" if where == "/" else where)
    while parts:
        if len(parts) < 2 or parts[0] != "properties" or parts[1] not in (node.get("required") or []):
            return False
        node, parts = node["properties"][parts[1]], parts[2:]
    return True


_JSON_TYPE_CHECKS = {"string": lambda v: isinstance(v, str), "object": lambda v: isinstance(v, dict),
                     "array": lambda v: isinstance(v, list), "boolean": lambda v: isinstance(v, bool),
                     "null": lambda v: v is None,
                     "integer": lambda v: isinstance(v, int) and not isinstance(v, bool)
                     or isinstance(v, float) and v.is_integer(),
                     "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}


def _node_fault(node: dict) -> tuple[str | None, bool]:
    patterns = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
    if isinstance(node.get("patternProperties"), dict):
        patterns += [p for p in node["patternProperties"] if isinstance(p, str)]
    for pattern in patterns:
        risk = catastrophic_pattern(pattern) if len(pattern) < 1000 else "is over 1,000 characters"
        if risk:
            return f"pattern {pattern[:60]!r} {risk}: k2vv cannot judge it in bounded time", True
    kind, enum = node.get("type"), node.get("enum")
    kinds = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else None
    if kinds and all(k in _JSON_TYPE_CHECKS for k in kinds) and isinstance(enum, list) and enum \
            and not any(_JSON_TYPE_CHECKS[k](v) for k in kinds for v in enum):
        return f"no enum value is of type {'/'.join(kinds)}, so no value can be valid", False
    props, required = node.get("properties"), node.get("required")
    if node.get("additionalProperties") is False and isinstance(required, list) \
            and not node.get("patternProperties"):
        known = props if isinstance(props, dict) else {}
        missing = [r for r in required if isinstance(r, str) and r not in known]
        if missing:
            return (f"required {', '.join(map(repr, missing[:3]))} is not among the properties "
                    "and additionalProperties is false, so no value can be valid"), False
    return None, False


def catastrophic_pattern(pattern: str) -> str | None:
    """Why a regex may take exponential time on some string (None when it cannot): an unbounded
    repetition of something that itself repeats without bound or offers alternatives, the shape
    of every classic ReDoS (`(a+)+`, `(a*)*`, `(a|aa)*`, `(\\w+\\s?)*`). An inner repetition that a
    mandatory character it cannot match ends (`([a-z]+\\.)*`, `(-\\d+)*`) is safe: each iteration
    can split only one way. Otherwise conservative: such a pattern may be harmless, but k2vv
    cannot tell, and a verdict that hangs the run is no verdict."""
    try:
        import re._parser as sre_parse  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_parse
    import warnings
    try:
        with warnings.catch_warnings():  # "possible set intersection" and the like: not the user's concern
            warnings.simplefilter("ignore")
            tree = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None  # not a Python regex: compiling says so
    return _ReDoS(sre_parse).scan(list(tree), inside=False)


class _ReDoS:
    """The walk behind catastrophic_pattern, over the parse tree of Python's own regex parser."""

    def __init__(self, sre):
        self.sre = sre
        self.repeats = {sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)}

    def unbounded(self, op, arg) -> bool:
        return op in self.repeats and (arg[1] == self.sre.MAXREPEAT or arg[1] > 100)

    def scan(self, items: list, inside: bool) -> str | None:
        sre = self.sre
        for index, (op, arg) in enumerate(items):
            if op in self.repeats:
                unbounded = self.unbounded(op, arg)
                if unbounded and inside and not self.separated(items, index):
                    return "repeats a repetition without bound"
                body = list(arg[2])
                if unbounded and any(sub_op == sre.BRANCH for sub_op, _ in body):
                    return "repeats alternatives without bound"
                found = self.scan(body, inside or unbounded)
                if found:
                    return found
            elif op == sre.SUBPATTERN:
                found = self.scan(list(arg[-1]), inside)
                if found:
                    return found
            elif op == sre.BRANCH:
                if inside:
                    return "repeats alternatives without bound"
                for branch in arg[1]:
                    found = self.scan(list(branch), inside)
                    if found:
                        return found
            elif op in (sre.ASSERT, sre.ASSERT_NOT):
                found = self.scan(list(arg[1]), inside)
                if found:
                    return found
        return None

    def separated(self, items: list, index: int) -> bool:
        """Whether the repeat at items[index] repeats one character class and is followed (or, last
        in an iteration, preceded by the iteration's first element) by a mandatory character
        outside that class."""
        op, (low, high, body) = items[index]
        inner = self.char_class(list(body))
        after = items[index + 1] if index + 1 < len(items) else items[0] if index else None
        if inner is None or after is None:
            return False
        follow = self.char_class([after]) if after[0] not in self.repeats else (
            self.char_class(list(after[1][2])) if after[1][0] >= 1 else None)
        if follow is None:
            return False
        return not any(inner.fullmatch(c) and follow.fullmatch(c) for c in map(chr, range(0x300)))

    def char_class(self, items: list):
        """A compiled one-character regex for a single literal / class / dot, else None."""
        sre = self.sre
        if len(items) != 1:
            return None
        op, arg = items[0]
        if op == sre.LITERAL:
            return re.compile(re.escape(chr(arg)))
        if op == sre.NOT_LITERAL:
            return re.compile("[^" + re.escape(chr(arg)) + "]")
        if op == sre.ANY:
            return re.compile(".", re.S)
        if op != sre.IN:
            return None
        categories = {sre.CATEGORY_DIGIT: r"\d", sre.CATEGORY_NOT_DIGIT: r"\D", sre.CATEGORY_WORD: r"\w",
                      sre.CATEGORY_NOT_WORD: r"\W", sre.CATEGORY_SPACE: r"\s", sre.CATEGORY_NOT_SPACE: r"\S"}
        parts = []
        for kind, value in arg:
            if kind == sre.NEGATE:
                parts.insert(0, "^")
            elif kind == sre.LITERAL:
                parts.append(re.escape(chr(value)))
            elif kind == sre.RANGE:
                parts.append(re.escape(chr(value[0])) + "-" + re.escape(chr(value[1])))
            elif kind == sre.CATEGORY and value in categories:
                parts.append(categories[value])
            else:
                return None
        return re.compile("[" + "".join(parts) + "]")


def lint_schema(params) -> list[tuple[str, str, str]]:
    """(level, kind, text) of what `lint` says about one tool's `parameters`: unscored schemas,
    dataset faults, drafts, prefixItems that draft-07 ignores. A run compiles a plain schema at its
    second call; lint compiles it now, so it finds what a run would."""
    out = []
    compiled = tool_schema(params)
    if compiled.deferred is not None:
        _compile_deferred(compiled, compiled.deferred)
    if compiled.unscored:
        out.append(("problem", "unscored schema", f"{compiled.unscored}; its calls are unscored"))
    for fault in compiled.faults:
        every = fault.hangs or fault.reach is None or fault_is_unavoidable(params, fault.where)
        out.append(("problem", "dataset fault", f"{fault.text()}; "
                    + ("its calls are unscored" if every else "calls that use it are unscored")))
    if isinstance(params, dict):
        draft = schema_draft(params)
        if draft != DRAFT07:
            out.append(("note", f"$schema {draft}", f"$schema {draft}" +
                        (" (desugared to draft-07)" if draft in _MODERN_DRAFTS else "")))
        if "prefixItems" in schema_keywords(params) and draft not in _MODERN_DRAFTS:
            out.append(("problem", "prefixItems under draft-07", "prefixItems without a 2020-12 $schema is "
                        "ignored under draft-07 (add $schema or use items: [...])"))
    return out


# ---- 4. argument accuracy against `expected`: BFCL v4's AST checker, quirks included -----------
# Engine teams trust BFCL's numbers, so k2vv's verdict is BFCL's, rule for rule (DESIGN §10;
# tests/data/arguments-cases.json holds verdicts produced by bfcl-eval itself). `expected` is a
# list of {name, arguments: {parameter: [accepted values]}}, `""` among them meaning optional.

_BFCL_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list, "object": dict}
_BFCL_DROP = re.compile(r"[ ,./\-_*^]")
_NONE = object()  # "no accepted value but the empty string": None itself may be an accepted value


class NotJudgeable(Exception):
    """An `expected` BFCL itself could not check (it would crash): the case is not judged."""


def expected_verdict(expected: list, calls: list, tools: dict, category: str | None) -> tuple[bool, str | None]:
    """(matched, BFCL's error type) of an answer's `calls` ({name, arguments}, `arguments` absent
    when they were not JSON) against `expected`; `tools` maps name -> JSON Schema, in the request's
    order; `category` is BFCL's (`live_simple`, `live_parallel`, ...). Routing is BFCL's: by
    substring of the category, irrelevance before relevance."""
    by_expected = category is None  # without a category, a lone expected call names its own function
    category = category or ("irrelevance" if not expected else "simple" if len(expected) == 1 else "parallel")
    decoded = all("arguments" in c for c in calls)
    objects = decoded and all(isinstance(c["arguments"], dict) for c in calls)
    if "irrelevance" in category:
        return (True, None) if not calls or not objects else (False, "irrelevance_error:decoder_success")
    if "relevance" in category:
        return (True, None) if calls and objects else (False, "relevance_error:decoder_failed")
    if not decoded:
        return False, "ast_decoder:decoder_failed"
    if not objects:
        return False, "ast_decoder:decoder_wrong_output_format"
    if "parallel" in category:
        if len(calls) != len(expected):
            return False, "parallel_function_checker_no_order:wrong_count"
        unused = list(range(len(calls)))
        for want in expected:
            schema = _expected_schema(tools, want["name"])
            match = next((i for i in unused if _check_call(calls[i], want["name"], schema, want["arguments"])[0]), None)
            if match is None:
                return False, "parallel_function_checker_no_order:cannot_find_match"
            unused.remove(match)
        return True, None
    if "multiple" in category:
        if len(calls) != len(expected):
            return False, "multiple_function_checker:wrong_count"
        return _check_call(calls[0], expected[0]["name"], _expected_schema(tools, expected[0]["name"]),
                           expected[0]["arguments"])
    if len(calls) != 1:
        return False, "simple_function_checker:wrong_count"
    if by_expected:
        return _check_call(calls[0], expected[0]["name"], _expected_schema(tools, expected[0]["name"]),
                           expected[0]["arguments"])
    if not tools:
        raise NotJudgeable("no tool to check the call against")
    first = next(iter(tools))  # BFCL checks a simple case against the first function it was given
    return _check_call(calls[0], first, tools[first], expected[0]["arguments"])


def _expected_schema(tools: dict, name: str) -> dict:
    if name not in tools:
        raise NotJudgeable(f"expected function {name!r} is not among the request's tools")
    return tools[name]


def _bfcl_type(schema) -> type:
    kind = (schema or {}).get("type") if isinstance(schema, dict) else None
    if kind is None:
        return str  # BFCL's "any" is checked as a string
    if not isinstance(kind, str) or kind not in _BFCL_TYPES:
        raise NotJudgeable(f"type {kind!r} has no BFCL type")
    return _BFCL_TYPES[kind]


def _standardise(text: str) -> str:
    return _BFCL_DROP.sub("", text).lower().replace("'", '"')


def _check_call(call: dict, name: str, schema: dict, accepted_args: dict) -> tuple[bool, str | None]:
    """BFCL's simple_function_checker for one call against one expected function."""
    if call.get("name") != name:
        return False, "simple_function_checker:wrong_func_name"
    schema = schema if isinstance(schema, dict) else {}
    properties = schema.get("properties") or {}
    arguments = call["arguments"]
    if any(p not in arguments for p in schema.get("required") or []):
        return False, "simple_function_checker:missing_required"
    for param, value in arguments.items():
        if param not in properties or param not in accepted_args:
            return False, "simple_function_checker:unexpected_param"
        prop, accepted = properties[param], accepted_args[param]
        want = _bfcl_type(prop)
        if want is float and type(value) is int:
            value = float(value)  # an int where a number is declared: top level only
        first = next((a for a in accepted if a != ""), _NONE)
        alt = type(first) if first is not _NONE else None
        variable = alt is not None and alt is not want
        if type(value) is want:
            if want is list and not _array_admitted(value, prop, accepted):
                return False, "type_error:nested" if type(value) is alt else "type_error:simple"
        elif type(value) is alt:
            variable = True
        else:
            return False, "type_error:simple"
        if not variable:
            if type(value) is dict:
                ok, error = _dict_check(value, accepted)
                if not ok:
                    return False, error
                continue
            if type(value) is list and value and all(type(v) is dict for v in value):
                ok, error = _list_of_dicts_check(value, accepted)
                if not ok:
                    return False, error
                continue
            if type(value) is str:
                if _standardise(value) not in [_standardise(a) for a in accepted if type(a) is str]:
                    return False, "value_error:string"
                continue
            if type(value) is list:
                mine = [_standardise(v) if type(v) is str else v for v in value]
                theirs = [[_standardise(v) if type(v) is str else v for v in a] if type(a) is list else [] if a == ""
                          else a for a in accepted]
                if mine not in theirs:
                    return False, "value_error:list/tuple"
                continue
        if value not in accepted:
            return False, "value_error:others"
    for param, accepted in accepted_args.items():
        if param not in arguments and "" not in accepted:
            return False, "simple_function_checker:missing_optional"
    return True, None


def _array_admitted(value: list, prop: dict, accepted: list) -> bool:
    """BFCL's nested type check of an array: one level of element type, from `items`, or the type
    of an accepted list's first element; any accepted value that is not a list admits anything."""
    if any(type(a) is not list for a in accepted):
        return True
    items = prop.get("items") if isinstance(prop.get("items"), dict) else None
    if items is None or "type" not in items:
        raise NotJudgeable("an array without items.type")
    element = _bfcl_type(items)
    for option in accepted:
        first = next((e for e in option if e != ""), _NONE)
        alt = type(first) if first is not _NONE else None
        if all(type(v) is element or (alt is not None and type(v) is alt) for v in value):
            return True
    return False


def _dict_check(value: dict, accepted: list) -> tuple[bool, str | None]:
    """BFCL's dict_checker: the first accepted object that matches wins, else the last one's error."""
    error = "dict_checker:unclear"
    for option in accepted:
        if option == "":
            continue
        if type(option) is not dict:
            raise NotJudgeable("an accepted object list mixes objects and other values")
        error = None
        for key, item in value.items():
            if key not in option:
                error = "value_error:dict_key"
                break
            mine = _standardise(item) if type(item) is str else item
            theirs = [_standardise(a) if type(a) is str else a for a in option[key]]
            if mine not in theirs:
                error = "value_error:dict_value"
                break
        for key, allowed in option.items():
            if key not in value and "" not in allowed:
                error = "value_error:dict_key"
        if error is None:
            return True, None
    return False, error


def _list_of_dicts_check(value: list, accepted: list) -> tuple[bool, str | None]:
    """BFCL's list_dict_checker: element by element against each accepted list of objects."""
    error = "value_error:list_dict_count"
    for option in accepted:
        option = [] if option == "" else option
        if len(option) != len(value):
            error = "value_error:list_dict_count"
            continue
        for mine, theirs in zip(value, option):
            ok, error = _dict_check(mine, [theirs])
            if not ok:
                break
        else:
            return True, None
    return False, error
