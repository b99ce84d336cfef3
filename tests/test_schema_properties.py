"""One verdict per (schema, arguments), whatever the order calls arrive in: k2vv judges the first
call of a plain schema with `plainly_valid` and later calls with the compiled validator, so the two
must agree. Hypothesis generates plain schemas (and some that are not: const, patterns) whose
enum/const members nest arrays and objects, and arguments drawn near those members (false for 0,
[1.0] for [1], at any depth), then judges a list of arguments in a drawn order on a fresh memo and
compares each verdict with the compiled validator's.

Runs the same examples every run (derandomize, no example database), as tests/test_properties.py."""
import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import k2vv
import k2vv_judge
from conftest import call_verdict

PROPERTY = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NAMES = st.sampled_from(["a", "b", "c d", "x-y", "n.1"])  # few: arguments often use the schema's names
SCALARS = (st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0, 1e300])
           | st.text("ab", max_size=2))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2), max_leaves=8)
TWIN_PRONE = st.booleans() | st.sampled_from([0, 1, 0.0, 1.0, 2])  # Python says False == 0 == 0.0
MEMBERS = (TWIN_PRONE | st.lists(TWIN_PRONE, min_size=1, max_size=2)
           | st.dictionaries(st.sampled_from(["a", "b"]), TWIN_PRONE | st.lists(TWIN_PRONE, max_size=2), min_size=1,
                             max_size=2) | VALUES)
TYPES = st.sampled_from(["string", "object", "array", "boolean", "null", "integer", "number"])
NUMBERS = st.integers(-2, 2) | st.sampled_from([0.0, 0.5, 1.0, 1.5])


@st.composite
def near(draw, value):
    """`value`, or a value Python finds equal to it: booleans and 0/1 swapped, integers written as
    floats, at any depth (JSON equal or not: that is what the judges must tell apart)."""
    if isinstance(value, bool):
        return draw(st.sampled_from([int(value), float(value), value]))
    if isinstance(value, (int, float)) and float(value).is_integer() and abs(value) < 2 ** 53:
        twins = ([bool(value)] if value in (0, 1) else []) + [float(value), int(value)]
        return draw(st.sampled_from(twins))
    if isinstance(value, list):
        return [draw(near(v)) for v in value]
    if isinstance(value, dict):
        return {k: draw(near(v)) for k, v in value.items()}
    return value


def _leaf():
    enum = st.lists(MEMBERS, min_size=1, max_size=3).map(lambda members: {"enum": members})
    kind = (TYPES | st.lists(TYPES, min_size=1, max_size=3, unique=True)).map(lambda t: {"type": t})
    bounds = st.fixed_dictionaries({}, optional={k: NUMBERS for k in
                                                 ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")})
    lengths = st.fixed_dictionaries({}, optional={k: st.integers(0, 3) for k in ("minLength", "maxLength")})
    prose = st.fixed_dictionaries({}, optional={"description": st.text(max_size=5), "format": st.just("date"),
                                                "default": VALUES})
    not_plain = (st.builds(lambda v: {"const": v}, MEMBERS)
                 | st.sampled_from([{"pattern": "^a"}, {"multipleOf": 0.5}, {"uniqueItems": True}]))
    return (st.tuples(st.one_of(enum, enum, kind, kind, not_plain), bounds, lengths, prose)  # mostly plain
            .map(lambda parts: {k: v for part in parts for k, v in part.items()}))


def _nested(inner):
    objects = st.builds(
        lambda props, required, extra: {"type": "object", "properties": props, "required": required,
                                        **({} if extra is None else {"additionalProperties": extra})},
        st.dictionaries(NAMES, inner, max_size=3), st.lists(NAMES, max_size=2, unique=True),
        st.none() | st.booleans() | inner)
    arrays = st.builds(lambda items, bounds: {"type": "array", "items": items, **bounds}, inner,
                       st.fixed_dictionaries({}, optional={"minItems": st.integers(0, 2), "maxItems": st.integers(0, 3)}))
    return objects | arrays | st.booleans()


SCHEMAS = st.recursive(_leaf(), _nested, max_leaves=6)
ROOTS = st.builds(lambda props, required, extra: {"type": "object", "properties": props, "required": required,
                                                  **({} if extra is None else {"additionalProperties": extra})},
                  st.dictionaries(NAMES, SCHEMAS, min_size=1, max_size=3), st.lists(NAMES, max_size=2, unique=True),
                  st.none() | st.booleans() | SCHEMAS)


TYPE_VALUES = {"string": st.text("ab", max_size=3), "integer": st.integers(-2, 2), "number": NUMBERS,
               "boolean": st.booleans(), "null": st.none(), "array": st.lists(SCALARS, max_size=2),
               "object": st.dictionaries(NAMES, SCALARS, max_size=2)}


@st.composite
def instances(draw, schema, depth=0):
    """A value that often satisfies `schema` or nearly does (an enum/const member's twin, a
    property more or less, a value of the type asked for), else any JSON value."""
    if not isinstance(schema, dict) or depth >= 6 or draw(st.integers(0, 7)) == 0:
        return draw(VALUES)
    members = schema.get("enum", [schema["const"]] if "const" in schema else [])
    if members:
        return draw(near(draw(st.sampled_from(members))))
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    if "object" in kinds or "properties" in schema:
        props = schema.get("properties", {})
        names = set(schema.get("required", [])) if draw(st.integers(0, 3)) else set()
        names |= set(draw(st.lists(st.sampled_from(sorted(props)) if props else NAMES, max_size=3)))
        names |= set(draw(st.lists(NAMES, max_size=1)) if draw(st.integers(0, 3)) == 0 else [])
        return {n: draw(instances(props.get(n, schema.get("additionalProperties", True)), depth + 1))
                for n in sorted(names)}
    if "array" in kinds:
        return draw(st.lists(instances(schema.get("items", True), depth + 1), max_size=3))
    return draw(TYPE_VALUES[draw(st.sampled_from(kinds))]) if kinds else draw(VALUES)


def compiled_verdict(parameters, instance) -> str:
    compiled = k2vv_judge.compile_tool_schema(parameters)
    if compiled.unscored:
        return "unscored"
    try:
        return "valid" if k2vv_judge.check_instance(compiled, instance) is None else "invalid"
    except k2vv_judge.CannotJudge:
        return "unscored"


@st.composite
def cases(draw):
    schema = draw(ROOTS)
    calls = draw(st.lists(instances(schema), min_size=1, max_size=4))
    return schema, [c if isinstance(c, dict) else {"value": c} for c in calls]


@PROPERTY
@given(cases())
@example(({"type": "object", "properties": {"a": {"enum": [[False], {"b": [1]}]}}},  # [False] == [0] in Python
          [{"a": [0]}, {"a": {"b": [True]}}, {"a": [False]}, {"a": {"b": [1.0]}}]))
@example(({"type": "object", "properties": {"a": {"type": "object", "required": ["b"],  # fastjsonschema refuses it
                                                  "additionalProperties": False}}}, [{}, {"a": {}}]))
@example(({"type": "object", "required": ["x"], "additionalProperties": {}}, [{"x": 1}, {}]))  # {} is falsy
def test_first_use_and_compiled_paths_give_one_verdict(case):
    parameters, calls = case
    reference = [compiled_verdict(parameters, args) for args in calls]
    for args, expected in zip(calls, reference):
        k2vv_judge._SCHEMA_CACHE.clear()  # a fresh memo: a first call may be judged by plainly_valid
        assert call_verdict(parameters, args) == expected, (json.dumps(parameters), args)
    k2vv_judge._SCHEMA_CACHE.clear()
    assert [call_verdict(parameters, args) for args in calls] == reference, json.dumps(parameters)


@PROPERTY
@given(VALUES, st.data())
def test_json_equal_is_json_equality(value, data):
    """json_equal (plainly_valid's enum test) is equality of JSON values, at every depth."""
    other = data.draw(near(value) | VALUES)
    assert k2vv_judge.json_equal(value, other) == (_tagged(value) == _tagged(other))
    assert k2vv_judge.json_equal(value, value)


def _tagged(value):
    """`value` with every bool and number tagged with its JSON type, so Python's == is JSON's."""
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, list):
        return ("array", tuple(_tagged(v) for v in value))
    if isinstance(value, dict):
        return ("object", frozenset((k, _tagged(v)) for k, v in value.items()))
    return (type(value).__name__, value)
