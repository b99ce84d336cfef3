"""Conformance: k2vv's verdicts against the official JSON Schema Test Suite (draft-07 and 2020-12).

The suite is vendored in tests/data/json-schema-test-suite/ (source, version and checksums in its
README.md; `optional/format/` is left out: k2vv treats `format` as an annotation). Every test of
every case is judged by the product's judge, `conftest.call_verdict` (the arguments go as JSON text
through `k2vv.classify_call`), with the case's schema as the tool's `parameters`; 2020-12 schemas
carry `"$schema": "https://json-schema.org/draft/2020-12/schema"` (added where a case lacks it,
k2vv would read draft-07 otherwise).

Two paths, because k2vv has two ways to reach a verdict:
- `first_use`: the first call of a schema, on a fresh memo (`k2vv_judge._SCHEMA_CACHE.clear()`; k2vv has no
  public reset). A *plain* draft-07 schema may then be judged by `plainly_valid` without compiling.
- `compiled`: a later call. The memo is cleared and a throwaway `{}` is judged twice (a deferred
  schema's first call marks it used, its second compiles it), then every test of the case; the
  harness checks that the schema really was compiled (`tool_schema(...).deferred is None`).
The memo of validators by shape (`k2vv_judge._VALIDATOR_OF_SHAPE`) is kept: it holds no per-schema state
(only compiled validators of $ref-free schemas), and it keeps the first-use path fast.

Non-object instances. Tool arguments are JSON objects, and `check_instance` says so: whatever the
schema, arguments that parse to a non-object (number, string, array, boolean, null) are
`schema_mismatch` -> 'invalid' ("arguments are a number, not a JSON object"), unless the schema
itself is unscored (then 'unscored'); `parameters` `true` or `{}` accept any *object* only. That is
k2vv's rule, not a schema verdict, so for the ~2/3 of suite tests whose instance is not an object:
- the `direct` call (schema as is, instance as is) checks that rule: 'invalid' or 'unscored', never
  'valid' (a 'valid' is a failure: "[non-object rule]");
- the conformance verdict comes from the `nested` view: parameters
  `{"$schema"?, "$id"?, "type": "object", "properties": {"value": S'}, "required": ["value"]}`,
  arguments `{"value": instance}`, where S' is the case's schema without its root `$schema`/`$id`
  (they move to the wrapper, so the base URI stays) and with every `$ref` to the root document
  ("#", "#/...", or the root `$id` itself) re-rooted at "#/properties/value". Exact when no `$id`
  sits below the root and no `$anchor`/`$dynamicAnchor` is used (`nestable`);
  `test_nesting_keeps_the_reference_verdict` checks with jsonschema (the reference judge of the
  parity tests) that nesting changes no verdict over the ~2,200 tests it applies to;
- a schema that cannot be nested (30 tests per path today) is judged by its compiled validator,
  `k2vv_judge.tool_schema(S).validate(instance)`, read as check_instance reads it (view `validator`); if
  the schema were still deferred (never, today) the test would be `n/a`.
Object instances are judged in the `direct` view.

Outcomes per (test, path): `agree`; `unscored` covered by a DEVIATIONS entry (k2vv declines, for a
documented reason); `unscored!` (k2vv declines for an undocumented reason: a failure); `disagree`
(k2vv says valid where the suite says invalid, or the reverse: a failure, never allow-listed);
`n/a` (not judged). An unscored verdict is excused only when a DEVIATIONS entry applies to the case
by the harness's own reading of the schema AND k2vv's reason says so; a wrong verdict never is.

CAUSES only *names* the failures of today's k2vv (so the summary groups them); it excuses none.

`python tests/test_schema_suite.py` prints the table per draft and file (outcomes on each path), the
documented unscored reasons and every failure grouped by cause; `--all` also lists each documented
unscored judgment. Runtime: ~2.5 s for the whole file under pytest (~2,450 tests x 2 paths).
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urldefrag, urljoin

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import k2vv  # noqa: E402
import k2vv_judge  # noqa: E402
from conftest import call_verdict  # noqa: E402

SUITE = Path(__file__).resolve().parent / "data" / "json-schema-test-suite"
DRAFTS = ("draft7", "draft2020-12")
DRAFT_2020 = "https://json-schema.org/draft/2020-12/schema"
STANDARD_METASCHEMAS = frozenset(u + tail for u in (
    "http://json-schema.org/draft-04/schema", "http://json-schema.org/draft-06/schema",
    "http://json-schema.org/draft-07/schema", "https://json-schema.org/draft/2019-09/schema",
    DRAFT_2020) for tail in ("", "#"))
PATHS = ("first_use", "compiled")
OUTCOMES = ("agree", "unscored", "unscored!", "disagree", "n/a")
THROWAWAY = {}


# ---- the suite ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    draft: str
    file: str  # relative to the draft folder, e.g. "optional/bignum.json"
    description: str
    schema: object
    tests: tuple  # ({"description", "data", "valid"}, ...)

    @property
    def where(self) -> str:
        return f"{self.draft}/{self.file} :: {self.description}"


def suite_files(draft: str) -> list[str]:
    base = SUITE / draft
    return sorted(str(p.relative_to(base)) for p in base.rglob("*.json"))


def load_cases(draft: str, file: str) -> list[Case]:
    cases = json.loads((SUITE / draft / file).read_text(encoding="utf-8"))
    return [Case(draft, file, c["description"], c["schema"], tuple(c["tests"])) for c in cases]


# ---- the harness's own reading of a schema (never k2vv's: it judges k2vv) ---------------------------

_ONE = ("additionalItems", "additionalProperties", "contains", "propertyNames", "not", "if", "then", "else",
        "unevaluatedItems", "unevaluatedProperties", "contentSchema", "items")
_LIST = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_MAP = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas", "dependencies")
_DATA = ("enum", "const", "default", "examples", "required", "dependentRequired", "type", "$comment",
         "title", "description")
_REF_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")


def _children(node: dict):
    """The subschemas of a schema object, at the standard applicator positions only (never inside
    enum/const/default data or unknown keywords, where an object is data, not a schema)."""
    for key, value in node.items():
        if key in _MAP and isinstance(value, dict):
            yield from (v for v in value.values() if isinstance(v, (dict, bool)))
        elif key in _ONE and isinstance(value, (dict, bool)) or key in _LIST and isinstance(value, list):
            yield from (value if isinstance(value, list) else [value])


def schema_nodes(schema):
    """Every schema object of a schema, the root first."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(_children(node))


def keywords_used(schema) -> set:
    return {k for node in schema_nodes(schema) for k in node}


def custom_metaschema(schema) -> str | None:
    uri = schema.get("$schema") if isinstance(schema, dict) else None
    return uri if isinstance(uri, str) and uri not in STANDARD_METASCHEMAS else None


def _resolve(base: str, ref: str) -> str:
    if not base:
        return ref
    return urldefrag(base).url + ref if ref.startswith("#") else urljoin(base, ref)


def remote_refs(case: Case) -> list[str]:
    """The documents a schema's `$ref`s need that it does not hold itself (each `$ref` resolved
    against the `$id`s in scope, as the spec says; draft-07 ignores an `$id` beside a `$ref`)."""
    ids, targets = set(), set()

    def walk(node, base: str):
        if not isinstance(node, dict):
            return
        own_id = node.get("$id")
        if isinstance(own_id, str) and not (case.draft == "draft7" and "$ref" in node):
            base = _resolve(base, own_id)
            ids.add(urldefrag(base).url)
        for key in _REF_KEYS:
            if isinstance(node.get(key), str):
                targets.add(urldefrag(_resolve(base, node[key])).url)
        for child in _children(node):
            walk(child, base)

    walk(case.schema, "")
    return sorted(t for t in targets if t and t not in ids)


def nestable(case: Case) -> bool:
    """Whether nesting the schema under /properties/value keeps every `$ref` meaning the same: no
    `$id` but at the root (it moves to the wrapper, so the base URI stays), no anchors (a dynamic
    scope or a plain name could change), and in draft-07 no root `$id` beside a root `$ref` (draft-07
    ignores it there; on the wrapper it would count)."""
    schema = case.schema
    if not isinstance(schema, dict):
        return True
    nodes = list(schema_nodes(schema))
    if any(k in n for n in nodes for k in ("$anchor", "$dynamicAnchor", "$recursiveAnchor")):
        return False
    if any("$id" in n for n in nodes if n is not schema):
        return False
    return not (case.draft == "draft7" and "$id" in schema and "$ref" in schema)


PREFIX = "/properties/value"


def _reroot_ref(ref: str, base: str) -> str:
    """A `$ref` of the schema as it must read once the schema sits at #/properties/value."""
    if ref == "#" or ref.startswith("#/"):
        return "#" + PREFIX + ref[1:]
    if base and not ref.startswith("#"):
        target = urldefrag(urljoin(base, ref))
        if target.url == urldefrag(base).url:  # the root document itself, by URI
            return "#" + PREFIX + target.fragment if target.fragment[:1] in ("", "/") else "#" + target.fragment
    return ref


def _reroot(node, base: str):
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in _REF_KEYS and isinstance(value, str):
            out[key] = _reroot_ref(value, base)
        elif key in _MAP and isinstance(value, dict):
            out[key] = {k: _reroot(v, base) for k, v in value.items()}
        elif key in _LIST and isinstance(value, list):
            out[key] = [_reroot(v, base) for v in value]
        elif key in _ONE or key not in _DATA and not key.startswith("$") and isinstance(value, dict):
            out[key] = _reroot(value, base)
        else:
            out[key] = value
    return out


def nest(schema, draft: str):
    """The wrapper parameters of the `nested` view (see the module docstring): the root `$schema`
    and `$id` move to the wrapper, the rest sits at /properties/value with its `$ref`s re-rooted.
    A boolean 2020-12 schema gets the 2020-12 `$schema` on its wrapper."""
    if not isinstance(schema, dict):
        inner, root = schema, ({"$schema": DRAFT_2020} if draft == "draft2020-12" else {})
    else:
        root = {k: schema[k] for k in ("$schema", "$id") if k in schema}
        inner = _reroot({k: v for k, v in schema.items() if k not in root}, root.get("$id", ""))
    return {**root, "type": "object", "properties": {"value": inner}, "required": ["value"]}


def parameters_of(case: Case):
    """The case's schema as a tool's `parameters`: 2020-12 ones always name their draft."""
    schema = copy.deepcopy(case.schema)
    if case.draft == "draft2020-12" and isinstance(schema, dict) and "$schema" not in schema:
        schema = {"$schema": DRAFT_2020, **schema}
    return schema


# ---- documented deviations: the only reasons k2vv may decline a suite test -----------------------

@dataclass(frozen=True)
class Deviation:
    name: str
    reason: str
    applies: Callable[[Case], bool]  # the harness's own reading of the case's schema
    message: str  # regex that k2vv's unscored reason must match (search)
    confirm: Callable[[Case, re.Match], bool] | None = None  # a further check of what the reason names


def case_patterns(case: Case) -> list[str]:
    """Every `pattern` and `patternProperties` name of a case's schema."""
    patterns = [n["pattern"] for n in schema_nodes(case.schema) if isinstance(n.get("pattern"), str)]
    return patterns + [p for n in schema_nodes(case.schema) if isinstance(n.get("patternProperties"), dict)
                       for p in n["patternProperties"]]


def _uses(*keywords):
    return lambda case: bool(set(keywords) & keywords_used(case.schema))


DEVIATIONS = (
    Deviation("not-enforced keyword",
              "unevaluatedProperties/unevaluatedItems, $dynamicRef/$dynamicAnchor (and 2019-09's "
              "$recursiveRef/$recursiveAnchor), minContains/maxContains and $vocabulary have no draft-07 "
              "spelling and fastjsonschema ignores them: a tool using one is unscored (k2vv "
              "NOT_ENFORCED_KEYWORDS, DESIGN §8)",
              _uses("unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$dynamicAnchor",
                    "$recursiveRef", "$recursiveAnchor", "minContains", "maxContains", "$vocabulary"),
              r"^uses .*, which k2vv cannot enforce$"),
    Deviation("remote $ref",
              "k2vv never fetches a remote $ref (no SSRF, no file read): the schema is unscored",
              lambda case: bool(remote_refs(case)),
              r"remote \$ref '([^']*)' is not fetched",
              lambda case, found: urldefrag(found.group(1)).url in remote_refs(case)),
    Deviation("custom meta-schema",
              "a `$schema` that is not a standard draft's meta-schema (suite: http://localhost:1234/...) "
              "names vocabularies k2vv cannot read: unscored",
              lambda case: custom_metaschema(case.schema) is not None,
              r"^custom meta-schema '([^']*)' is not judged",
              lambda case, found: found.group(1) == custom_metaschema(case.schema)),
    Deviation("multipleOf beyond exact arithmetic",
              "fastjsonschema's multipleOf stops with 'inifinity reached' when the float quotient overflows, "
              "even for a multiple (1e308 of 0.5), and divides a float by an integer divisor in float, exact "
              "only below 2**53: such a call is unscored (k2vv _judged_exactly; Decimal quotients are exact)",
              _uses("multipleOf"), r"^multipleOf: "),
    Deviation("ECMA-262 pattern k2vv cannot translate",
              "patterns are ECMA-262 regular expressions; k2vv runs them on Python's re after translating what "
              "differs (\\d \\w \\b ASCII, \\s, `.`, `$`, \\cX, `{`, named groups); a pattern with no "
              "faithful translation (\\p{...} Unicode properties, backreferences, Python-only syntax) is unscored "
              "(k2vv ecma_to_python)",
              lambda case: bool(case_patterns(case)), r"^pattern ('.*') is not judged: ",
              lambda case, found: any(found.group(1) == repr(p) for p in case_patterns(case))),
    Deviation("parameters: false",
              "k2vv's rule: `parameters` must be a schema object (`true`, `{}` and absent accept any "
              "object); a boolean `false` is unscored (compile_tool_schema). Nested, `false` is judged.",
              lambda case: case.schema is False, r"^parameters is a boolean, not a JSON Schema object$"),
)


def deviation_for(case: Case, message: str | None) -> Deviation | None:
    for dev in DEVIATIONS:
        found = re.search(dev.message, message or "")
        if found and dev.applies(case) and (dev.confirm is None or dev.confirm(case, found)):
            return dev
    return None


# ---- causes of today's failures: names that group them, never excuses ------------------------------

@dataclass(frozen=True)
class Cause:
    name: str
    source: str  # 'issue' (reported in the project issue) | 'harness' (found by this harness)
    description: str
    matches: Callable[["Judgment"], bool]


def _says(pattern):
    return lambda j: bool(j.message and re.search(pattern, j.message))


def _ecma_pattern(case: Case) -> bool:
    return any(re.search(r"\\[dDwWsSpPc]", p) for p in case_patterns(case))


def _remote_ref_held_locally(j: "Judgment") -> bool:
    found = re.search(r"remote \$ref '([^']*)' is not fetched", j.message or "")
    return bool(found) and urldefrag(found.group(1)).url not in remote_refs(j.case)


def _ref_in_data(case: Case) -> bool:
    return any("$ref" in json.dumps(n.get(k)) for n in schema_nodes(case.schema) for k in ("enum", "const")
               if k in n)


CAUSES = (
    Cause("uniqueItems-fn", "issue",
          "uniqueItems: true -> fastjsonschema's generated code defines a nested function `fn`, which "
          "_check_generated_code refuses (_ALLOWED_CODE_NAMES): every call unscored",
          _says(r"generated code defines 'fn'")),
    Cause("first-use-enum", "issue",
          "plainly_valid compares enum members' types at the top level only (`[0] == [False]` in Python): "
          "valid on first use, invalid compiled",
          lambda j: j.path == "first_use" and j.shortcut and j.verdict == "valid" and j.expected == "invalid"
          and "enum" in keywords_used(j.parameters)),
    Cause("desugar-pointer", "issue",
          "2020-12 desugaring renames prefixItems -> items (dependentSchemas -> dependencies) but leaves a "
          "`$ref` to #/prefixItems/... (#/dependentSchemas/...) pointing at nothing: unscored",
          lambda j: j.outcome == "unscored!" and j.case.draft == "draft2020-12" and any(
              isinstance(n.get("$ref"), str) and re.search(r"/(prefixItems|dependentSchemas)(/|$)", n["$ref"])
              for n in schema_nodes(j.case.schema))),
    Cause("content-annotation", "issue",
          "contentEncoding/contentMediaType are annotations in 2020-12, but the desugared schema is compiled "
          "as draft-07, where fastjsonschema asserts them: wrong 'invalid'",
          lambda j: j.case.draft == "draft2020-12" and j.verdict == "invalid" and j.expected == "valid"
          and bool({"contentEncoding", "contentMediaType", "contentSchema"} & keywords_used(j.case.schema))),
    Cause("custom-metaschema-2020", "issue",
          "schema_draft matches '2020-12' anywhere in `$schema`: a custom meta-schema "
          "(http://localhost:1234/draft2020-12/...) is judged as standard 2020-12 instead of unscored",
          lambda j: j.outcome == "disagree" and custom_metaschema(j.case.schema) is not None),
    Cause("subschema-$id-pointer", "issue",
          "a `#/...` pointer inside a subschema with its own `$id` is resolved against the document root: "
          "'Unresolvable ref', unscored",
          lambda j: j.outcome == "unscored!" and bool(re.search(r"Unresolvable ref", j.message or "")) and any(
              "$id" in n for n in schema_nodes(j.case.schema) if n is not j.case.schema)),
    Cause("$id-beside-$ref", "harness",
          "fastjsonschema's RefResolver.walk does not descend into an object that has a `$ref` (draft-04 "
          "reading), so an `$id` declared beside it (in `$defs`/`definitions`, `if`, ...) is never registered; "
          "a `$ref` to that `$id` looks remote: unscored (2020-12: desugar keeps `$ref` beside `$id`/`$defs`)",
          _remote_ref_held_locally),
    Cause("$id-in-data", "harness",
          "fastjsonschema's RefResolver.walk registers a string `$id` found in ANY object, const values and "
          "unknown keywords included (not identifiers per spec), so a `$ref` to that URI resolves to data: "
          "wrong verdicts both ways (suite: optional/id.json, optional/unknownKeyword.json)",
          lambda j: json.dumps(j.case.schema).count('"$id"') > sum("$id" in n for n in schema_nodes(j.case.schema))),
    Cause("$ref-in-enum-data", "harness",
          "fastjsonschema's error-message builder (CodeGenerator._expand_refs) resolves `{\"$ref\": ...}` "
          "objects inside enum/const data; an unresolvable one fails compilation: unscored",
          lambda j: j.outcome == "unscored!" and "Unresolvable ref" in (j.message or "") and _ref_in_data(j.case)),
    Cause("ecma-regex", "harness",
          "patterns run on Python `re`, not ECMA-262: \\d \\w \\s (and \\D \\W \\S) are Unicode-aware "
          "(wrong verdicts), \\p{...} and \\cX do not compile (unscored)",
          lambda j: _ecma_pattern(j.case)),
    Cause("float-overflow", "harness",
          "multipleOf on a float whose quotient overflows (1e308 / 0.5) raises 'inifinity reached' in "
          "fastjsonschema: wrong 'invalid' (suite: optional)",
          _says(r"inifinity reached")),
)


def cause_of(judgment: "Judgment") -> str:
    return next((c.name for c in CAUSES if c.matches(judgment)), "UNCLASSIFIED")


# ---- judging --------------------------------------------------------------------------------------

@dataclass
class Judgment:
    case: Case
    test: dict
    path: str
    view: str  # 'direct' | 'nested' | 'validator' | '-' (n/a)
    parameters: object
    arguments: object
    verdict: str | None  # k2vv's: 'valid' | 'invalid' | 'unscored'; None for n/a
    outcome: str = ""
    message: str | None = None  # k2vv's unscored reason, or its mismatch message (repeat call)
    deviation: str | None = None
    shortcut: bool = False  # first_use only: the schema was deferred (plainly_valid may judge)

    @property
    def expected(self) -> str:
        return "valid" if self.test["valid"] else "invalid"

    @property
    def failed(self) -> bool:
        return self.outcome in ("unscored!", "disagree")

    def line(self) -> str:
        what = self.deviation or (cause_of(self) if self.failed else "")
        return (f"[{what}] {self.case.where} :: {self.test['description']} | {self.path}/{self.view} | "
                f"instance {json.dumps(self.test['data'])[:120]} | expected {self.expected}, k2vv {self.verdict}"
                + (f" | {self.message}" if self.message else ""))


@dataclass
class RuleBreak:
    """A non-object instance that k2vv did not call invalid (nor unscored)."""
    case: Case
    test: dict
    path: str
    verdict: str

    def line(self) -> str:
        return (f"[non-object rule] {self.case.where} :: {self.test['description']} | {self.path} | instance "
                f"{json.dumps(self.test['data'])[:120]} | k2vv {self.verdict}, expected invalid (not an object)")


def _fresh():
    k2vv_judge._SCHEMA_CACHE.clear()


def _reason(parameters, arguments, verdict: str) -> str | None:
    """k2vv's words for a verdict, from a repeat call (the schema's state is that of the path just
    judged, or later): the unscored reason (the schema's, or the call's when the validator could
    not judge it), or the mismatch message."""
    if verdict not in ("unscored", "invalid"):
        return None
    result = k2vv.classify_call({"name": "f", "arguments": json.dumps(arguments)}, {"f": parameters})
    return result.message if verdict == "unscored" else f"{result.pointer or '/'}: {result.message}"


def validator_verdict(schema, instance) -> tuple[str, str | None]:
    """The verdict of a compiled ToolSchema's validator, read as check_instance reads it (a
    JsonSchemaValueException is a mismatch; CannotJudge or any other exception is no verdict), for
    a non-object instance that classify_call would refuse unread."""
    if schema.validate is None:
        return "valid", None
    try:
        schema.validate(instance)
    except k2vv_judge.CannotJudge as err:
        return "unscored", str(err)
    except Exception as err:  # noqa: BLE001
        if type(err).__name__ != "JsonSchemaValueException":
            return "unscored", f"the validator stopped without a verdict: {type(err).__name__}: {err}"
        return "invalid", str(getattr(err, "message", None) or err)[:200]
    return "valid", None


def judge_case(case: Case) -> tuple[list[Judgment], list[RuleBreak]]:
    direct = parameters_of(case)
    nested = nest(direct, case.draft) if nestable(case) else None
    judgments, breaks = [], []
    for path in PATHS:
        if path == "compiled":
            _fresh()
            for parameters in (direct, nested):
                if parameters is not None:
                    call_verdict(parameters, THROWAWAY)  # marks a deferred schema used (or compiles)
                    call_verdict(parameters, THROWAWAY)  # the second call of a deferred schema compiles it
                    assert k2vv_judge.tool_schema(parameters).deferred is None, f"{case.where}: not compiled"

        def judge(parameters, arguments):
            shortcut = False
            if path == "first_use":
                _fresh()
                shortcut = k2vv_judge.tool_schema(parameters).deferred is not None  # what classify_call does first
            return call_verdict(parameters, arguments), shortcut

        for test in case.tests:
            data, said = test["data"], None
            if isinstance(data, dict):
                view, parameters, arguments = "direct", direct, data
                verdict, shortcut = judge(parameters, arguments)
            else:
                verdict, shortcut = judge(direct, data)  # k2vv's rule: not an object, not valid
                if verdict == "valid":
                    breaks.append(RuleBreak(case, test, path, verdict))
                if nested is not None:
                    view, parameters, arguments = "nested", nested, {"value": data}
                    verdict, shortcut = judge(parameters, arguments)
                elif verdict == "unscored":  # the schema itself is unscored: an outcome like any other
                    view, parameters, arguments = "direct", direct, data
                elif k2vv_judge.tool_schema(direct).deferred is None:  # compiled: ask its validator
                    view, parameters, arguments = "validator", direct, data
                    verdict, said = validator_verdict(k2vv_judge.tool_schema(direct), data)
                else:
                    judgments.append(Judgment(case, test, path, "-", direct, data, None, "n/a"))
                    continue
            j = Judgment(case, test, path, view, parameters, arguments, verdict, shortcut=shortcut)
            if verdict == "unscored":
                j.message = said if view == "validator" else _reason(parameters, arguments, verdict)
                dev = deviation_for(case, j.message)
                j.outcome, j.deviation = ("unscored", dev.name) if dev else ("unscored!", None)
            elif verdict == j.expected:
                j.outcome = "agree"
            else:
                j.outcome = "disagree"
                j.message = said if view == "validator" else \
                    _reason(parameters, arguments, verdict) if verdict == "invalid" else \
                    ("first-use shortcut (plainly_valid)" if shortcut else None)
            judgments.append(j)
    return judgments, breaks


def judge_file(draft: str, file: str) -> tuple[list[Judgment], list[RuleBreak]]:
    judgments, breaks = [], []
    for case in load_cases(draft, file):
        j, b = judge_case(case)
        judgments += j
        breaks += b
    return judgments, breaks


# ---- tests ----------------------------------------------------------------------------------------

FILES = [(draft, file) for draft in DRAFTS for file in suite_files(draft)]


@pytest.mark.parametrize("draft,file", FILES, ids=[f"{d}/{f}" for d, f in FILES])
def test_suite_file(draft, file):
    judgments, breaks = judge_file(draft, file)
    failures = [j.line() for j in judgments if j.failed] + [b.line() for b in breaks]
    if failures:
        pytest.fail(f"{len(failures)} failure(s) in {draft}/{file}:\n" + "\n".join(failures), pytrace=False)


def test_every_deviation_applies_to_some_suite_case():
    """The allow-list cannot rot: each entry describes some case of the vendored suite. (It cannot
    excuse a wrong verdict either: judge_case consults it only for an 'unscored' verdict.)"""
    cases = [case for draft, file in FILES for case in load_cases(draft, file)]
    unused = [dev.name for dev in DEVIATIONS if not any(dev.applies(case) for case in cases)]
    assert unused == []


def test_non_object_arguments_are_invalid_whatever_the_schema():
    """k2vv's rule (check_instance): tool arguments must be a JSON object."""
    for parameters in ({"type": "integer"}, {"type": ["array", "object"]}, True, {}):
        for instance in (1, "x", [1], None, True, 1.5):
            assert call_verdict(parameters, instance) == "invalid", (parameters, instance)


def _reference(validator, instance):
    """jsonschema's verdict, or the kind of error it raises (e.g. a pattern Python's re rejects)."""
    try:
        return validator.is_valid(instance)
    except Exception as err:  # noqa: BLE001 - the same error on both sides is agreement too
        return type(err).__name__


def test_nesting_keeps_the_reference_verdict():
    """The nested view is faithful: jsonschema (no format checker, nothing fetched) gives the wrapped
    schema and `{"value": instance}` the verdict it gives the schema and the instance."""
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    validator_of = {"draft7": jsonschema.Draft7Validator, "draft2020-12": jsonschema.Draft202012Validator}
    compared = 0
    for draft, file in FILES:
        for case in load_cases(draft, file):
            if not nestable(case) or remote_refs(case) or custom_metaschema(case.schema):
                continue
            cls = validator_of[draft]
            plain = cls(parameters_of(case), registry=referencing.Registry())
            wrapped = cls(nest(parameters_of(case), draft), registry=referencing.Registry())
            for test in case.tests:
                assert _reference(plain, test["data"]) == _reference(wrapped, {"value": test["data"]}), \
                    (case.where, test["description"])
                compared += 1
    assert compared > 1500


def test_vendored_suite_matches_its_checksums():
    lines = (SUITE / "SHA256SUMS").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, name = line.split("  ", 1)
        listed[name] = digest
    present = {str(p.relative_to(SUITE)) for p in SUITE.rglob("*") if p.is_file()} - {"SHA256SUMS", "README.md"}
    assert present == set(listed)
    for name, digest in listed.items():
        assert hashlib.sha256((SUITE / name).read_bytes()).hexdigest() == digest, name


# ---- script mode: the fixer's progress table ------------------------------------------------------

def summary(show_unscored: bool = False, out=sys.stdout) -> int:
    """Print per draft and file the outcomes on each path, the totals, the documented unscored
    reasons, then every failure grouped by cause. Returns the number of failures."""
    width = max(len(f"{d}/{f}") for d, f in FILES) + 2
    head = " ".join(f"{o:>9}" for o in OUTCOMES)
    print(f"{'file':<{width}} {'path':<9} {head} {'shortcut':>8}", file=out)
    totals = {(key, path): Counter() for key in (*DRAFTS, "all") for path in PATHS}
    failures, unscored, breaks_all = [], Counter(), []

    def row(name, path, counts):
        cells = " ".join(f"{counts[o]:>9}" for o in OUTCOMES)
        shortcut = counts["shortcut"] if path == "first_use" else ""
        print(f"{name:<{width}} {path:<9} {cells} {shortcut:>8}", file=out)

    for draft, file in FILES:
        judgments, breaks = judge_file(draft, file)
        breaks_all += breaks
        for path in PATHS:
            counts = Counter(j.outcome for j in judgments if j.path == path)
            counts["shortcut"] = sum(j.shortcut for j in judgments if j.path == path)
            totals[(draft, path)].update(counts)
            totals[("all", path)].update(counts)
            row(f"{draft}/{file}", path, counts)
        failures += [j for j in judgments if j.failed]
        for j in judgments:
            if j.outcome == "unscored":
                unscored[(j.deviation, j.message)] += 1
    print(file=out)
    for (key, path), counts in totals.items():
        row(f"TOTAL {key}", path, counts)
    print("\nshortcut: first-use judgments of a deferred (plain draft-07) schema, where plainly_valid may answer",
          file=out)
    print("\nunscored for a documented reason (judgments over both paths | deviation | k2vv's reason):", file=out)
    for (dev, message), n in sorted(unscored.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {n:>5} | {dev} | {message}", file=out)
    if show_unscored:
        print("\nevery documented unscored judgment (compiled path):", file=out)
        for draft, file in FILES:
            for j in judge_file(draft, file)[0]:
                if j.outcome == "unscored" and j.path == "compiled":
                    print("  " + j.line(), file=out)
    groups: dict = {}
    for j in failures:
        groups.setdefault(cause_of(j), []).append(j)
    print(f"\n{len(failures)} failing judgment(s), {len(breaks_all)} break(s) of the non-object rule", file=out)
    order = [c.name for c in CAUSES] + ["UNCLASSIFIED"]
    for name in sorted(groups, key=order.index):
        cause = next((c for c in CAUSES if c.name == name), None)
        print(f"\n== {name} ({len(groups[name])} judgments)" + (f" [{cause.source}] {cause.description}" if cause else ""),
              file=out)
        for j in groups[name]:
            print("  " + j.line(), file=out)
    for b in breaks_all:
        print("  " + b.line(), file=out)
    return len(failures) + len(breaks_all)


if __name__ == "__main__":
    sys.exit(1 if summary(show_unscored="--all" in sys.argv) else 0)
