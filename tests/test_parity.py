"""Parity: k2vv's schema verdicts against jsonschema's, over every tool schema of the open data.

For each tool schema (~7,600 in tests/data, ~1,700 distinct) the simulated-vendor generator makes a
valid instance and every applicable broken variant (sim BREAKAGES); k2vv.classify_call judges each,
and so does jsonschema (the reference judge: Draft7Validator, or the validator of the draft `$schema`
names, an empty referencing.Registry so nothing is fetched, no FormatChecker). Every disagreement
must be one of DIFFERENCES, each with its reason. A hand-written table (EDGE_CASES) exercises every
entry, so the table can neither rot nor grow silently.

A second judge emulates K2VV's tool_calls_eval.py (`jsonschema.validate`, default draft 2020-12,
`if not schema: return False`, any exception = invalid): its disagreements with k2vv must be K2VV's
bugs of DESIGN §9 (K2VV_DIFFERENCES) or the shared entries above.

Runtime (2 cores): ~15 s; k2vv compiles each distinct schema once and the jsonschema validators are
built once per distinct schema. A plain-text report goes to tests/artifacts/parity.txt.
"""
from __future__ import annotations

import gzip
import json
import random
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jsonschema
import pytest
import referencing
from jsonschema import validators

ROOT = Path(__file__).resolve().parents[1]

import k2vv  # noqa: E402
import k2vv_judge  # noqa: E402
import k2vv_sim as sim  # noqa: E402
from conftest import call_verdict  # noqa: E402

DATA = Path(__file__).parent / "data"
DATA_FILES = ("bfcl-live.jsonl.gz", "k2vv-dialect.jsonl.gz")
ARTIFACTS = Path(__file__).parent / "artifacts"
MIN_GENERATOR_VALID_SHARE = 0.99

# `$schema` substring -> jsonschema validator class (k2vv reads `$schema` the same way; absent or
# unknown -> draft-07, where jsonschema's own validator_for would pick 2020-12).
JUDGE_DRAFTS = (
    ("draft-04", jsonschema.Draft4Validator),
    ("draft-06", jsonschema.Draft6Validator),
    ("draft-07", jsonschema.Draft7Validator),
    ("2019-09", jsonschema.Draft201909Validator),
    ("2020-12", jsonschema.Draft202012Validator),
)
NOT_ENFORCED = ("unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$dynamicAnchor",
                "$recursiveRef", "$recursiveAnchor", "minContains", "maxContains", "$vocabulary")
ANNOTATIONS = {"description", "title", "default", "examples", "$comment"}


# ---- judges -------------------------------------------------------------------------------------

def _judge_class(schema):
    uri = schema.get("$schema") if isinstance(schema, dict) else None
    for marker, cls in JUDGE_DRAFTS:
        if isinstance(uri, str) and marker in uri:
            return cls
    return jsonschema.Draft7Validator


def build_judge(schema) -> Callable[[object], str]:
    """instance -> "valid" | "invalid" | "error:<Exception>" (SchemaError, UnknownType, re.error,
    unresolvable $ref: the schema, not the instance, is at fault)."""
    schema = {} if schema is None else schema
    cls = _judge_class(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError:
        return lambda instance: "error:SchemaError"
    validator = cls(schema, registry=referencing.Registry())

    def judge(instance):
        try:
            return "valid" if validator.is_valid(instance) else "invalid"
        except Exception as err:  # noqa: BLE001 - UnknownType, re.error, Unresolvable, RecursionError
            return f"error:{type(err).__name__}"
    return judge


def build_k2vv_upstream_judge(schema) -> Callable[[object], str]:
    """K2VV's validate_tool_call (MoonshotAI/K2-Vendor-Verifier tool_calls_eval.py): a falsy schema
    is a failure; else `jsonschema.validate` (metaschema check, draft from `$schema`, default the
    latest = 2020-12); any exception counts as an invalid call. Built once per schema (validate()
    rebuilds it per call: same verdicts, slower)."""
    if not schema:
        return lambda instance: "invalid"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # unknown $schema
        cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except Exception:  # noqa: BLE001
        return lambda instance: "invalid"
    validator = cls(schema, registry=referencing.Registry())

    def judge(instance):
        try:
            return "valid" if validator.is_valid(instance) else "invalid"
        except Exception:  # noqa: BLE001
            return "invalid"
    return judge


# ---- schema predicates used by the difference tables ------------------------------------------

def _nodes(schema):
    """Every dict inside a schema (including enum/const data: over-matching is harmless here)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _strings(value):
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            stack.extend(node.values())
            stack.extend(node.keys())
        elif isinstance(node, list):
            stack.extend(node)


def _modern(schema) -> bool:
    uri = schema.get("$schema") if isinstance(schema, dict) else None
    return isinstance(uri, str) and ("2019-09" in uri or "2020-12" in uri)


def uses_float_multiple_of(schema, instance) -> bool:
    return any(isinstance(n.get("multipleOf"), float) and not n["multipleOf"].is_integer() for n in _nodes(schema))


def uses_dollar_before_newline(schema, instance) -> bool:
    patterns = [n["pattern"] for n in _nodes(schema) if isinstance(n.get("pattern"), str)]
    patterns += [k for n in _nodes(schema) if isinstance(n.get("patternProperties"), dict) for k in n["patternProperties"]]
    return any("$" in p for p in patterns) and any(s.endswith("\n") for s in _strings(instance))


def uses_content_keywords(schema, instance) -> bool:
    return any("contentMediaType" in n or "contentEncoding" in n for n in _nodes(schema))


def uses_custom_metaschema(schema, instance) -> bool:
    return isinstance(schema, dict) and k2vv_judge.is_custom_metaschema(k2vv_judge.schema_draft(schema))


def uses_not_enforced(schema, instance) -> bool:
    return any(k in n for n in _nodes(schema) for k in NOT_ENFORCED)


def is_not_an_object(schema, instance) -> bool:
    return not isinstance(instance, dict)


def is_empty_schema(schema, instance) -> bool:
    return not schema


def uses_2020_spelling_without_schema(schema, instance) -> bool:
    if _modern(schema):
        return False
    return any(isinstance(n.get("items"), list) or "prefixItems" in n or "dependentRequired" in n
               or "dependentSchemas" in n or "$defs" in n or ("$ref" in n and set(n) - ANNOTATIONS - {"$ref"})
               for n in _nodes(schema))


def fails_2020_metaschema(schema, instance) -> bool:
    """The schema is not valid for the draft jsonschema.validate picks (2020-12 unless `$schema`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError:
        return True
    return False


def anything(schema, instance) -> bool:
    return True


@dataclass(frozen=True)
class Difference:
    name: str
    k2vv: tuple          # k2vv verdicts this entry explains
    other: tuple         # the other judge's verdicts ("error" = any error:*)
    applies: Callable    # (schema, instance) -> bool
    reason: str

    def explains(self, schema, instance, ours: str, theirs: str) -> bool:
        theirs = "error" if theirs.startswith("error:") else theirs
        return ours in self.k2vv and theirs in self.other and self.applies(schema, instance)


# k2vv vs jsonschema (Draft7Validator / the draft `$schema` names): where they must differ, and why.
DIFFERENCES = (
    Difference("uncompilable schema", ("unscored",), ("error",), anything,
               "the schema is broken (SchemaError, UnknownType such as type 'float', a regex Python "
               "cannot compile, an unresolvable $ref): jsonschema raises; k2vv cannot compile it and "
               "calls the tool unscored, the dataset's fault, not the provider's (DESIGN §8)"),
    Difference("2020-12 keyword k2vv cannot enforce", ("unscored",), ("valid", "invalid"), uses_not_enforced,
               "unevaluated*, $dynamicRef, min/maxContains have no draft-07 spelling: "
               "fastjsonschema would silently ignore them, so k2vv leaves the tool unscored (DESIGN §8)"),
    Difference("custom meta-schema", ("unscored",), ("valid", "invalid"), uses_custom_metaschema,
               "a `$schema` that is not a draft's own meta-schema URI names vocabularies k2vv cannot read: "
               "the tool is unscored; jsonschema falls back to its latest draft"),
    Difference("multipleOf with a float divisor", ("valid",), ("invalid",), uses_float_multiple_of,
               "fastjsonschema divides in Decimal, jsonschema in float: 19.99 / 0.01 = 1998.9999999999998 "
               "in float, so jsonschema rejects a correct value; k2vv is right (notes §2c)"),
    Difference("ECMA `$` in a pattern", ("invalid",), ("valid",), uses_dollar_before_newline,
               "JSON Schema patterns are ECMA-262: `$` does not match before a trailing newline. "
               "fastjsonschema rewrites `$` accordingly, jsonschema uses Python's `$`, which does; "
               "k2vv is right (notes §2c)"),
    Difference("content keywords asserted", ("invalid",), ("valid",), uses_content_keywords,
               "fastjsonschema asserts contentMediaType/contentEncoding; jsonschema treats them as "
               "annotations, as draft-07 allows (notes §2b). Rare in tool schemas"),
    Difference("arguments that are not an object", ("invalid",), ("valid",), is_not_an_object,
               "tool-call arguments must be a JSON object whatever the schema says (OpenAI function "
               "calling; k2vv_judge.check_instance); a schema like {} accepts any JSON value"),
    Difference("a dataset fault", ("unscored",), ("invalid",), lambda schema, instance: bool(k2vv_judge.schema_faults(schema)),
               "an enum none of whose values has the declared type (BFCL-live: integer properties whose "
               "enum lists strings) or required properties additionalProperties forbids: no value can be "
               "valid there, so a call that fails there is the dataset's fault, unscored (k2vv_judge.schema_faults)"),
    Difference("2020-12 schema with draft-07 tuple items", ("valid", "invalid"), ("error",), anything,
               "`items: [...]` under a 2020-12 $schema is a metaschema error for jsonschema; k2vv desugars "
               "2020-12 to draft-07, where tuple `items` is legal, so it judges the call by the tuple the "
               "schema author plainly meant (lint notes the $schema)"),
)

# k2vv vs K2VV's judge: DESIGN §9 says where K2VV is wrong; the shared entries above apply as well.
K2VV_DIFFERENCES = (
    Difference("K2VV: parameters {} fails every call", ("valid",), ("invalid",), is_empty_schema,
               "K2VV's validate_tool_call returns False when the schema is falsy, so a tool without "
               "parameters makes every call invalid (DESIGN §9)"),
    Difference("K2VV: draft-07 schema read as draft 2020-12", ("valid", "invalid"), ("valid", "invalid"),
               uses_2020_spelling_without_schema,
               "jsonschema.validate defaults to 2020-12: a draft-07 tuple `items: [...]` is a SchemaError "
               "that K2VV catches and blames on the provider; prefixItems, dependentRequired and $ref "
               "siblings are enforced although the schema is draft-07 (DESIGN §9)"),
    Difference("K2VV: a broken schema is blamed on the provider", ("unscored",), ("invalid",), anything,
               "K2VV counts any exception, SchemaError included, as an invalid call; k2vv calls the "
               "tool unscored (DESIGN §8, §9)"),
    Difference("K2VV: a metaschema error is blamed on the provider", ("valid", "invalid"), ("invalid",),
               fails_2020_metaschema,
               "K2VV's validate() checks the metaschema first and counts a SchemaError as an invalid "
               "call; k2vv judges the arguments with the schema fastjsonschema compiled"),
) + tuple(d for d in DIFFERENCES if d.name not in ("uncompilable schema", "2020-12 schema with draft-07 tuple items"))


def unexplained(rows, table, other_key):
    """Rows where k2vv and the other judge disagree and no table entry explains it; counts per entry."""
    counts, bad = Counter(), []
    for row in rows:
        ours, theirs = row["k2vv"], row[other_key]
        if ours == theirs:
            continue
        entry = next((d for d in table if d.explains(row["schema"], row["instance"], ours, theirs)), None)
        if entry is None:
            bad.append(row)
        else:
            counts[entry.name] += 1
    return counts, bad


def describe(row, other_key) -> str:
    return (f"{row['where']} [{row['how']}] k2vv={row['k2vv']} {other_key}={row[other_key]} "
            f"schema={json.dumps(row['schema'])[:300]} instance={json.dumps(row['instance'])[:200]}")


# ---- the open data ----------------------------------------------------------------------------

def tool_schemas():
    """(where, parameters) of every function tool in the open data, in file order."""
    for name in DATA_FILES:
        with gzip.open(DATA / name, "rt", encoding="utf-8") as lines:
            for line_no, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                for index, tool in enumerate(json.loads(line).get("tools") or ()):
                    fn = tool.get("function") if isinstance(tool, dict) else None
                    if isinstance(fn, dict):
                        yield f"{name}:{line_no}:tools[{index}]", fn.get("parameters")


def judge_rows(items):
    """One row per instance: the valid one and every applicable breakage, judged three ways."""
    judges, rows = {}, []
    for where, schema in items:
        key = json.dumps(schema, sort_keys=True)
        if key not in judges:
            judges[key] = (build_judge(schema), build_k2vv_upstream_judge(schema))
        judge, upstream = judges[key]
        rng = random.Random(where)  # str seed: sha512-based, stable across runs and PYTHONHASHSEED
        valid = sim.example_arguments(schema if schema is not None else {}, rng)
        variants = [("valid", valid)] + [(how, sim.break_arguments(schema or {}, valid, how, rng))
                                         for how in sim.BREAKAGES]
        for how, instance in variants:
            if instance is None:
                continue
            rows.append({"where": where, "key": key, "how": how, "schema": schema, "instance": instance,
                         "k2vv": call_verdict(schema, instance), "jsonschema": judge(instance),
                         "k2vv_upstream": upstream(instance)})
    return rows


@pytest.fixture(scope="module")
def data_rows():
    return judge_rows(tool_schemas())


# ---- hand-written cases: each demonstrates one entry (or an agreement worth pinning) -----------

def _prop(sub, **extra):
    return {"type": "object", "properties": {"x": sub}, "required": ["x"], **extra}


S2020 = "https://json-schema.org/draft/2020-12/schema"
EDGE_CASES = [  # (id, schema, instance, the DIFFERENCES entry it shows or None for agreement)
    ("multipleOf-0.01", _prop({"type": "number", "multipleOf": 0.01}), {"x": 19.99}, "multipleOf with a float divisor"),
    ("multipleOf-0.5", _prop({"type": "number", "multipleOf": 0.5}), {"x": 1.5}, None),
    ("ecma-dollar", _prop({"type": "string", "pattern": "^abc$"}), {"x": "abc\n"}, "ECMA `$` in a pattern"),
    ("ecma-dollar-alternation", _prop({"type": "string", "pattern": "a$|b"}), {"x": "a\n"}, "ECMA `$` in a pattern"),
    ("type-float", _prop({"type": "float"}), {"x": 1.5}, "uncompilable schema"),
    ("regex-unicode-property", _prop({"type": "string", "pattern": "^\\p{L}+$"}), {"x": "abc"}, "uncompilable schema"),
    ("remote-ref", _prop({"$ref": "http://127.0.0.1:9/x.json"}), {"x": 1}, "uncompilable schema"),
    ("dangling-ref", _prop({"$ref": "#/definitions/nope"}), {"x": 1}, "uncompilable schema"),
    ("unevaluatedProperties", {"$schema": S2020, "type": "object", "properties": {"a": {}},
                               "unevaluatedProperties": False}, {"a": 1, "b": 2}, "2020-12 keyword k2vv cannot enforce"),
    ("contentMediaType", _prop({"type": "string", "contentMediaType": "application/json"}), {"x": "{not json"},
     "content keywords asserted"),
    ("empty-params-string-arguments", {}, "hello", "arguments that are not an object"),
    ("empty-params-object", {}, {"a": 1}, None),
    ("enum-none-of-its-type", _prop({"type": "integer", "enum": ["1", "2"]}), {"x": 1}, "a dataset fault"),
    ("draft04-exclusiveMinimum-no-$schema", _prop({"type": "number", "minimum": 1, "exclusiveMinimum": True}),
     {"x": 2}, "uncompilable schema"),
    ("2020-items-array", {"$schema": S2020, "type": "object",
                          "properties": {"p": {"type": "array", "items": [{"type": "number"}]}}}, {"p": [1]},
     "2020-12 schema with draft-07 tuple items"),
    ("2020-ref-siblings", {"$schema": S2020, "$defs": {"a": {"type": "integer"}}, "type": "object",
                           "properties": {"x": {"$ref": "#/$defs/a", "minimum": 5}}}, {"x": 1}, None),
    ("draft07-ref-siblings-ignored", {"definitions": {"a": {"type": "integer"}}, "type": "object",
                                      "properties": {"x": {"$ref": "#/definitions/a", "minimum": 5}}}, {"x": 1}, None),
    ("2020-prefixItems-closed", {"$schema": S2020, "type": "object", "properties": {
        "r": {"type": "array", "prefixItems": [{"type": "integer"}], "items": False}}}, {"r": [1, 2]}, None),
    ("2019-dependentRequired", {"$schema": "https://json-schema.org/draft/2019-09/schema", "type": "object",
                                "dependentRequired": {"a": ["b"]}}, {"a": 1}, None),
    ("draft04-$schema", {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
                         "properties": {"x": {"type": "number", "minimum": 1, "exclusiveMinimum": True}}}, {"x": 1}, None),
    ("draft07-tuple", {"type": "object", "properties": {"p": {"type": "array", "items": [{"type": "number"}],
                                                              "additionalItems": False}}}, {"p": [1]}, None),
    ("format-not-asserted", _prop({"type": "string", "format": "date"}), {"x": "2023-02-30"}, None),
    ("const-false-vs-0", _prop({"const": False}), {"x": 0}, None),
    ("enum-int-vs-true", _prop({"enum": [1, 2]}), {"x": True}, None),
    ("integer-1.0", _prop({"type": "integer"}), {"x": 1.0}, None),
    ("openapi-nullable", _prop({"type": "string", "nullable": True}), {"x": None}, None),
    ("minLength-code-points", _prop({"type": "string", "minLength": 2}), {"x": "\U0001F600"}, None),
    ("unknown-$schema", {"$schema": "http://example.com/s", "type": "object", "properties": {"x": {"type": "integer"}}},
     {"x": "a"}, "custom meta-schema"),
]


@pytest.mark.parametrize("case_id, schema, instance, shows", EDGE_CASES, ids=[c[0] for c in EDGE_CASES])
def test_edge_case_differences_are_the_named_ones(case_id, schema, instance, shows):
    ours, theirs = call_verdict(schema, instance), build_judge(schema)(instance)
    if shows is None:
        assert ours == theirs, f"k2vv={ours} jsonschema={theirs}: unexpected disagreement"
        return
    entry = next(d for d in DIFFERENCES if d.name == shows)
    assert ours != theirs, f"expected to show {shows!r} but both say {ours}: drop the entry if k2vv changed"
    assert entry.explains(schema, instance, ours, theirs), f"k2vv={ours} jsonschema={theirs} not {shows!r}"


def test_every_difference_entry_is_demonstrated():
    shown = {shows for *_, shows in EDGE_CASES}
    assert [d.name for d in DIFFERENCES if d.name not in shown] == []


# ---- the open data ------------------------------------------------------------------------------

def test_k2vv_agrees_with_jsonschema_on_the_open_data(data_rows):
    counts, bad = unexplained(data_rows, DIFFERENCES, "jsonschema")
    _write_report(data_rows, counts)
    assert not bad, f"{len(bad)} unexplained disagreements:\n" + "\n".join(describe(r, "jsonschema") for r in bad[:20])
    assert len({r["key"] for r in data_rows}) > 1000 and len(data_rows) > 20000  # the data really was read


def test_generator_instances_are_valid_for_jsonschema(data_rows):
    valid_rows = [r for r in data_rows if r["how"] == "valid" and not r["jsonschema"].startswith("error:")]
    failing = [r for r in valid_rows if r["jsonschema"] != "valid"]
    distinct = {r["key"] for r in valid_rows}
    failing_distinct = {r["key"] for r in failing}
    share = 1 - len(failing_distinct) / len(distinct)
    assert share >= MIN_GENERATOR_VALID_SHARE, "\n".join(describe(r, "jsonschema") for r in failing[:20])


def test_breakages_are_invalid_for_both_judges(data_rows):
    broken = [r for r in data_rows if r["how"] != "valid"]
    assert broken
    still_valid = [r for r in broken if "valid" in (r["k2vv"], r["jsonschema"])]
    assert not still_valid, "\n".join(describe(r, "jsonschema") for r in still_valid[:20])
    assert set(sim.BREAKAGES) <= {r["how"] for r in broken}  # every breakage applies somewhere in the data


def test_k2vv_upstream_differences_are_the_known_bugs(data_rows):
    edge_rows = [{"where": case_id, "key": case_id, "how": "edge", "schema": schema, "instance": instance,
                  "k2vv": call_verdict(schema, instance), "k2vv_upstream": build_k2vv_upstream_judge(schema)(instance)}
                 for case_id, schema, instance, _ in EDGE_CASES]
    counts, bad = unexplained(data_rows + edge_rows, K2VV_DIFFERENCES, "k2vv_upstream")
    assert not bad, "\n".join(describe(r, "k2vv_upstream") for r in bad[:20])
    # the two §9 schema bugs really occur in the open data (k2vv-dialect.jsonl was written to show them)
    data_counts, _ = unexplained(data_rows, K2VV_DIFFERENCES, "k2vv_upstream")
    assert data_counts["K2VV: parameters {} fails every call"] > 0
    assert data_counts["K2VV: draft-07 schema read as draft 2020-12"] > 0


def _compiled_verdict(schema, instance, memo=None) -> str:
    """The verdict of the schema compiled now (never deferred); `memo` keeps compiled schemas by key."""
    key = json.dumps(schema, sort_keys=True)
    compiled = (memo or {}).get(key) or k2vv_judge.compile_tool_schema(schema)
    if memo is not None:
        memo[key] = compiled
    if compiled.unscored:
        return "unscored"
    return "valid" if k2vv_judge.check_instance(compiled, instance) is None else "invalid"


# Where fastjsonschema and a naive reading of JSON Schema part ways: plainly_valid must never say
# valid where the compiled validator does not (it may say "not sure" where it does).
PLAIN_TRAPS = [
    ({"type": "object", "properties": {"n": {"minimum": 2}}}, {"n": True}),      # bools compare as numbers
    ({"type": "object", "properties": {"n": {"maximum": 0}}}, {"n": True}),
    ({"type": "object", "properties": {"e": {"enum": [1]}}}, {"e": True}),       # True == 1 in Python
    ({"type": "object", "properties": {"e": {"enum": [1.0]}}}, {"e": 1}),
    ({"type": "object", "properties": {"e": {"enum": [[False]]}}}, {"e": [0]}),  # [False] == [0] in Python
    ({"type": "object", "properties": {"e": {"enum": [{"a": [1]}]}}}, {"e": {"a": [True]}}),
    ({"type": "object", "properties": {"e": {"enum": [[0]]}}}, {"e": [0.0]}),   # the same JSON number: valid
    ({"type": "object", "properties": {"i": {"type": "integer"}}}, {"i": 2.0}),  # draft-07 integer
    ({"type": "object", "properties": {"i": {"type": "number"}}}, {"i": False}),
    ({"type": "object", "additionalProperties": False, "properties": {"a": {}}}, {"a": 1, "b": 2}),
    ({"type": "object", "additionalProperties": {"type": "string"}}, {"x": 1}),
    ({"type": "object", "required": ["a"], "properties": {"a": {"type": "null"}}}, {}),
    ({"type": "object", "properties": {"l": {"type": "array", "items": {"type": "string"}, "maxItems": 1}}},
     {"l": ["a", "b"]}),
    ({"type": "object", "properties": {"l": {"items": False}}}, {"l": [1]}),
    ({"type": "object", "properties": {"s": {"minLength": 2, "maxLength": 3}}}, {"s": "é"}),
    ({"type": "object", "properties": {"x": {"exclusiveMinimum": 1}}}, {"x": 1}),
    ({"type": "object", "properties": {"x": {"exclusiveMaximum": 1.5}}}, {"x": 2}),
    ({"type": "object", "properties": {"x": {"type": ["string", "null"]}}}, {"x": 0}),
    ({"type": "object", "properties": {"d": {"format": "date"}}}, {"d": "not a date"}),  # formats off: valid
]


@pytest.mark.parametrize("schema, instance", PLAIN_TRAPS)
def test_plainly_valid_never_says_valid_where_the_compiled_validator_does_not(schema, instance):
    assert k2vv_judge.is_plain_schema(schema)
    if k2vv_judge.plainly_valid(schema, instance):
        assert _compiled_verdict(schema, instance) == "valid"


def test_plain_schemas_are_judged_as_compiled_over_the_open_data(data_rows):
    """Every instance of the parity data, with every schema k2vv would defer: plainly_valid's "valid"
    is the compiled validator's, and a deferred schema always compiles (no verdict changes with the
    order calls arrive in). Most schemas of the data must be plain, or the shortcut is worthless."""
    plain_keys, wrong, checked, memo = set(), [], 0, {}
    for row in data_rows:
        schema = row["schema"]
        if not k2vv_judge._deferrable(schema):
            continue
        plain_keys.add(row["key"])
        compiled = _compiled_verdict(schema, row["instance"], memo)
        assert compiled != "unscored", row["where"]
        if k2vv_judge.plainly_valid(schema, row["instance"]):
            checked += 1
            if compiled != "valid":
                wrong.append(describe(row, "jsonschema"))
    assert not wrong, "\n".join(wrong[:20])
    print(f"plain: {len(plain_keys)} of {len({r['key'] for r in data_rows})} schemas, {checked} plainly valid")
    assert len(plain_keys) > 0.5 * len({r["key"] for r in data_rows}) and checked > 5000


def _write_report(rows, counts) -> None:
    """tests/artifacts/parity.txt: the numbers, for the README and for whoever changes the table."""
    ARTIFACTS.mkdir(exist_ok=True)
    by_how = Counter((r["how"], r["k2vv"], r["jsonschema"]) for r in rows)
    upstream, _ = unexplained(rows, K2VV_DIFFERENCES, "k2vv_upstream")
    valid_fail = sorted({r["where"] for r in rows if r["how"] == "valid" and r["jsonschema"] == "invalid"})
    lines = [f"tool schemas: {len({r['where'] for r in rows})} ({len({r['key'] for r in rows})} distinct); "
             f"instances: {len(rows)}; agreements with jsonschema: "
             f"{sum(r['k2vv'] == r['jsonschema'] for r in rows)}",
             "", "how, k2vv, jsonschema: count"]
    lines += [f"  {how:20} {ours:9} {theirs:22} {n}" for (how, ours, theirs), n in sorted(by_how.items())]
    lines += ["", "named differences vs jsonschema:"] + [f"  {name}: {n}" for name, n in counts.items()]
    lines += ["", "differences vs K2VV's judge:"] + [f"  {name}: {n}" for name, n in upstream.items()]
    lines += ["", "generator instances jsonschema rejects (unsatisfiable schemas):"] + [f"  {w}" for w in valid_fail]
    (ARTIFACTS / "parity.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
