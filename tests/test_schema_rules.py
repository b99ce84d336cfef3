"""k2vv's own schema rules, one behaviour each: which drafts are read, how 2020-12 is desugared, how
`$ref`s are resolved, how ECMA-262 patterns run on Python's `re`. The suite (test_schema_suite.py)
covers what it can; these cover the cases it does not, and name the rule when one breaks."""
import pytest

import k2vv
import k2vv_judge
from conftest import call_verdict

OBJ = {"type": "object"}


@pytest.mark.parametrize("uri, draft", [
    ("http://json-schema.org/draft-07/schema#", k2vv_judge.DRAFT07),
    ("http://json-schema.org/draft-07/schema", k2vv_judge.DRAFT07),
    ("http://json-schema.org/draft-04/schema#", "http://json-schema.org/draft-04/schema#"),
    ("https://json-schema.org/draft/2020-12/schema", "2020-12"),
    ("https://json-schema.org/draft/2020-12/schema#", "2020-12"),
    ("https://json-schema.org/draft/2019-09/schema", "2019-09"),
])
def test_standard_metaschemas_name_their_draft(uri, draft):
    assert k2vv_judge.schema_draft({"$schema": uri}) == draft
    assert not k2vv_judge.tool_schema({**OBJ, "$schema": uri}).unscored


@pytest.mark.parametrize("uri", [
    "http://localhost:1234/draft2020-12/metaschema-no-validation.json",  # merely contains "2020-12"
    "https://example.com/draft-07/schema#",
    "http://json-schema.org/draft/2020-12/schema",  # http: not the 2020-12 meta-schema's URI
    "https://json-schema.org/draft-07/schema#",
])
def test_any_other_metaschema_is_custom_and_unscored(uri):
    schema = {**OBJ, "$schema": uri, "properties": {"n": {"minimum": 10}}}
    assert k2vv_judge.tool_schema(schema).unscored == \
        f"custom meta-schema {uri!r} is not judged (k2vv reads the standard drafts only)"
    assert call_verdict(schema, {"n": 1}) == "unscored"


# ---- 2019-09/2020-12 desugaring: pointers into renamed keywords ---------------------------------

S2020 = "https://json-schema.org/draft/2020-12/schema"


def test_a_ref_to_items_beside_prefixItems_names_the_schema_for_the_rest():
    """In 2020-12 `items` beside `prefixItems` is draft-07's additionalItems; a `$ref` to it must
    follow it there (the suite only points at prefixItems/N)."""
    schema = {"$schema": S2020, "type": "object", "properties": {
        "t": {"prefixItems": [{"type": "integer"}], "items": {"type": "string"}},
        "u": {"$ref": "#/properties/t/items"}}}
    assert call_verdict(schema, {"t": [1, "a"], "u": "b"}) == "valid"
    assert call_verdict(schema, {"u": 1}) == "invalid"
    assert call_verdict(schema, {"t": [1, 2]}) == "invalid"


def test_a_ref_to_dependentSchemas_names_the_dependent_schema():
    schema = {"$schema": S2020, "type": "object",
              "dependentSchemas": {"a": {"required": ["b"]}},
              "properties": {"nested": {"$ref": "#/dependentSchemas/a"}}}
    assert call_verdict(schema, {"nested": {"b": 1}}) == "valid"
    assert call_verdict(schema, {"nested": {}}) == "invalid"
    assert call_verdict(schema, {"a": 1}) == "invalid"


def test_dependentRequired_and_dependentSchemas_on_one_property_both_apply():
    schema = {"$schema": S2020, "type": "object", "dependentRequired": {"a": ["b"]},
              "dependentSchemas": {"a": {"properties": {"c": {"type": "string"}}}},
              "properties": {"d": {"$ref": "#/dependentSchemas/a"}}}
    assert call_verdict(schema, {"a": 1, "b": 1, "c": "x"}) == "valid"
    assert call_verdict(schema, {"a": 1, "c": "x"}) == "invalid"   # dependentRequired
    assert call_verdict(schema, {"a": 1, "b": 1, "c": 1}) == "invalid"  # dependentSchemas
    assert call_verdict(schema, {"d": {"c": 1}}) == "invalid"


# ---- $ref: resolved by k2vv -----------------------------------------------------------------------

def test_refs_whose_names_fold_to_the_same_function_name_stay_apart():
    """fastjsonschema names a $ref target's function after the pointer, lower-cased, every other
    character folded to `_`: `A`/`a` (or two Chinese names) shared one function."""
    for a, b in (("A", "a"), ("城市", "国家"), ("a-b", "a_b")):
        schema = {"type": "object", "definitions": {a: {"type": "string"}, b: {"type": "integer"}},
                  "properties": {"x": {"$ref": f"#/definitions/{a}"}, "y": {"$ref": f"#/definitions/{b}"}}}
        assert call_verdict(schema, {"x": "s", "y": 1}) == "valid", (a, b)
        assert call_verdict(schema, {"x": 1}) == "invalid", (a, b)
        assert call_verdict(schema, {"y": "s"}) == "invalid", (a, b)


def test_ref_data_inside_const_is_compared_as_written():
    """fastjsonschema's walk rewrote a `$ref` found inside const data against the `$id` in scope."""
    schema = {"$id": "http://example.com/root.json", "type": "object", "definitions": {"s": {"type": "string"}},
              "properties": {"c": {"const": {"$id": "http://example.com/data/", "k": {"$ref": "rel.json"}}},
                             "s": {"$ref": "#/definitions/s"}}}
    assert call_verdict(schema, {"c": {"$id": "http://example.com/data/", "k": {"$ref": "rel.json"}}}) == "valid"
    assert call_verdict(schema, {"c": {"$id": "http://example.com/data/",
                                       "k": {"$ref": "http://example.com/data/rel.json"}}}) == "invalid"


def test_a_recursive_schema_that_consumes_data_is_judged():
    tree = {"type": "object", "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#"}}}}
    assert call_verdict(tree, {"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}]}) == "valid"
    assert call_verdict(tree, {"v": 1, "kids": [{"v": 2, "kids": [{"v": "x"}]}]}) == "invalid"


@pytest.mark.parametrize("schema, loop", [
    ({"type": "object", "definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"$ref": "#/definitions/a"}},
      "properties": {"x": {"$ref": "#/definitions/a"}}}, "#/definitions/a -> #/definitions/b -> #/definitions/a"),
    ({"type": "object", "definitions": {"a": {"anyOf": [{"type": "string"}, {"$ref": "#/definitions/a"}]}},
      "properties": {"x": {"$ref": "#/definitions/a"}}},
     "#/definitions/a -> #/definitions/a/anyOf/1 -> #/definitions/a"),
    ({"type": "object", "allOf": [{"$ref": "#"}]}, "# -> #/allOf/0 -> #"),
    ({"$schema": S2020, "type": "object", "$defs": {"a": {"not": {"$ref": "#/$defs/a"}}},
      "properties": {"x": {"$ref": "#/$defs/a"}}}, "#/$defs/a -> #/$defs/a/not -> #/$defs/a"),
])
def test_a_ref_loop_that_never_consumes_data_is_unscored_and_named(schema, loop):
    assert k2vv_judge.tool_schema(schema).unscored == f"$ref loop {loop} never consumes data"
    assert call_verdict(schema, {"x": 1}) == "unscored"


def test_a_loop_nobody_refers_to_or_beside_an_ignored_draft07_ref_is_no_loop():
    unused = {"type": "object", "definitions": {"a": {"$ref": "#/definitions/a"}}}
    ignored = {"type": "object", "definitions": {"s": {"type": "string"}},
               "properties": {"x": {"$ref": "#/definitions/s", "allOf": [{"$ref": "#/properties/x"}]}}}
    assert call_verdict(unused, {}) == "valid"
    assert call_verdict(ignored, {"x": "s"}) == "valid" and call_verdict(ignored, {"x": 1}) == "invalid"


@pytest.mark.parametrize("ref, reason", [
    ("#/definitions/nope", "$ref '#/definitions/nope' points at no subschema"),
    ("#/properties/x/type", "$ref '#/properties/x/type' points at no subschema"),
    ("#nowhere", "$ref '#nowhere' points at no subschema"),
    ("other.json#/a", "remote $ref 'other.json#/a' is not fetched (only local refs are allowed)"),
])
def test_a_ref_the_schema_does_not_hold_is_unscored(ref, reason):
    schema = {"type": "object", "properties": {"x": {"type": "string"}, "y": {"$ref": ref}}}
    assert k2vv_judge.tool_schema(schema).unscored == reason


def test_the_name_k2vv_keeps_for_ref_targets_is_refused_not_overwritten():
    schema = {"type": "object", k2vv_judge.REF_TARGETS: {}, "properties": {"x": {"$ref": "#/properties/y"}, "y": {}}}
    assert "k2vv keeps for itself" in k2vv_judge.tool_schema(schema).unscored


# ---- a validator that stops without a verdict: unscored, never schema_mismatch --------------------

def _classify(parameters, instance) -> k2vv.CallResult:
    return k2vv.classify_call({"name": "f", "arguments": instance}, {"f": parameters})


def test_a_recursion_error_in_the_validator_is_no_verdict():
    recursive = {"type": "object", "properties": {"a": {"$ref": "#"}}}
    deep = {}
    for _ in range(5000):  # arguments sent as an object are not read through read_json's depth limit
        deep = {"a": deep}
    result = _classify(recursive, deep)
    assert result.cls == "unscored" and result.message.startswith(
        "the validator stopped without a verdict: RecursionError"), result
    assert _classify(recursive, {"a": {"a": {}}}).cls == "valid"


def test_an_overflow_error_in_the_validator_is_no_verdict():
    """10**400 is a multiple of 0.5 (exact Decimal), then fastjsonschema divides it as a float."""
    result = _classify({"type": "object", "properties": {"n": {"multipleOf": 0.5}}}, '{"n": 1' + "0" * 400 + "}")
    assert result.cls == "unscored", result
    assert result.message == "the validator stopped without a verdict: OverflowError: int too large to convert to float"


@pytest.mark.parametrize("divisor, value, verdict", [
    (0.01, 19.99, "valid"),
    (0.3, 0.9, "valid"),
    (0.3, 1e30, "invalid"),        # 28 Decimal digits called 1e30 / 0.3 an integer
    (3e-30, 1, "invalid"),         # and 1 / 3e-30
    (0.5, 1e30, "valid"),
    (3, 10 ** 20, "invalid"),      # int by int: exact
    (3, 3 * 10 ** 20, "valid"),
    (3, 1e20, "unscored"),         # float by int divides in float: not exact from 2**53
    (0.5, 1e308, "unscored"),      # suite optional/float-overflow.json: 'inifinity reached'
    (1e-310, 1.5, "unscored"),
])
def test_multipleOf_is_exact_or_unscored(divisor, value, verdict):
    schema = {"type": "object", "properties": {"n": {"multipleOf": divisor}}}
    assert call_verdict(schema, {"n": value}) == verdict


# ---- patterns: ECMA-262 semantics on Python's re ---------------------------------------------------

ECMA_PATTERNS = [  # (pattern, strings it matches, strings it does not)
    (r"^\d+$", ["42"], ["\u09ea\u09e8", "4\n"]),                 # \d ASCII; $ is the end, not before "\n"
    (r"^\D$", ["\u07c0", "a"], ["0"]),
    (r"^\w+$", ["a_Z9"], ["\u00e9", "\u0430"]),
    (r"^[\w-]+$", ["a-b"], ["\u00e9"]),                          # inside a class too
    (r"^\W$", ["\u00e9", "-"], ["a"]),
    (r"\bcole", ["l'cole", "\u00e9cole"], ["acole"]),         # \b: \u00e9 is no word character
    (r"^\s$", [" ", "\t", "\u00a0", "\ufeff", "\u2029", "\u2003"], ["\u0001", "\u2013", "\u200b"]),
    (r"^\S$", ["\u0001", "\u200b", "a"], [" ", "\u00a0", "\ufeff"]),
    (r"^[^\S]$", [" ", "\u3000"], ["a"]),
    (r"^.$", ["a", "\u00e9"], ["\n", "\r", "\u2028", "\u2029"]),  # `.` matches no line terminator
    (r"^\cC$", ["\u0003"], ["cC"]),
    (r"^\cj$", ["\n"], ["j"]),
    (r"^a{,2}$", ["a{,2}"], ["aa", ""]),                         # not a quantifier in ECMA-262
    (r"^a{2}$", ["aa"], ["a"]),
    (r"^[$]$", ["$"], [""]),                                     # fastjsonschema alone made this [\Z]
    (r"^\\$", ["\\"], ["\\\n"]),
    (r"^(?<year>\d{4})-", ["2024-"], ["24-"]),
    (r"^[]$", [], ["", "a"]),                                    # an empty class matches nothing
    (r"^[^]$", ["a", "\n"], [""]),                               # and its negation anything
    (r"^\ud83d\udc32*$", ["\U0001f432\U0001f432"], ["\ud83d"]),   # a surrogate pair is one code point
    (r"^[a&&b]$", ["&", "a"], ["c"]),
]


@pytest.mark.parametrize("pattern, matching, other", ECMA_PATTERNS, ids=[p for p, _, _ in ECMA_PATTERNS])
def test_patterns_match_as_ecma_262_says(pattern, matching, other):
    values = {"type": "object", "properties": {"s": {"type": "string", "pattern": pattern}}}
    names = {"type": "object", "patternProperties": {pattern: {"const": "name matched"}}}
    for text in matching:
        assert call_verdict(values, {"s": text}) == "valid", (pattern, text)
        assert call_verdict(names, {text: "other"}) == "invalid", (pattern, text)
    for text in other:
        assert call_verdict(values, {"s": text}) == "invalid", (pattern, text)
        assert call_verdict(names, {text: "other"}) == "valid", (pattern, text)


@pytest.mark.parametrize("pattern, why", [
    (r"\p{Letter}cole", r"\p{...} (Unicode properties) has no faithful Python translation"),
    (r"^(a)\1$", "a backreference has no faithful Python translation"),
    (r"^(?<x>a)\k<x>$", "a named backreference has no faithful Python translation"),
    (r"^a*+$", "a possessive quantifier is not ECMA-262 syntax"),
    (r"(?i)a", "'(?i' is not ECMA-262 syntax"),
    (r"\Aa", r"\A has no faithful Python translation"),
    (r"[a", "an unterminated character class"),
])
def test_a_pattern_without_a_faithful_translation_is_unscored(pattern, why):
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": pattern}}}
    assert k2vv_judge.tool_schema(schema).unscored == f"pattern {pattern!r} is not judged: {why}"


def test_a_mismatch_quotes_the_pattern_as_written():
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": r"^\d+$"}}}
    result = k2vv.classify_call({"name": "f", "arguments": '{"s": "x"}'}, {"f": schema})
    assert result.cls == "schema_mismatch" and result.message == r"data.s must match pattern ^\d+$ (pattern)"


def test_pattern_property_names_that_translate_alike_both_apply():
    schema = {"type": "object", "patternProperties": {"^a{,2}$": {"type": "string"}, "^a\\{,2}$": {"minLength": 2}}}
    assert call_verdict(schema, {"a{,2}": "xy"}) == "valid"
    assert call_verdict(schema, {"a{,2}": 1}) == "invalid"
    assert call_verdict(schema, {"a{,2}": "x"}) == "invalid"


def test_an_anchor_names_its_subschema_and_a_plain_name_id_does_in_draft_07():
    """k2vv resolves refs itself, so 2020-12's $anchor (and draft-07's `"$id": "#name"`) just work."""
    modern = {"$schema": S2020, "type": "object", "$defs": {"s": {"$anchor": "text", "type": "string"}},
              "properties": {"x": {"$ref": "#text"}}}
    draft07 = {"type": "object", "definitions": {"s": {"$id": "#text", "type": "string"}},
               "properties": {"x": {"$ref": "#text"}}}
    for schema in (modern, draft07):
        assert call_verdict(schema, {"x": "a"}) == "valid"
        assert call_verdict(schema, {"x": 1}) == "invalid"
