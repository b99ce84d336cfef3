"""Simulated vendors (k2vv_sim.py): argument generation, personalities, SSE, scripted faults.

Real sockets and `requests`, nothing mocked. jsonschema is the judge here (not k2vv), so these tests
check the simulator on its own; tests/test_parity.py compares k2vv's verdicts with jsonschema's.
"""
from __future__ import annotations

import gzip
import json
import random
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest
import referencing
import requests

ROOT = Path(__file__).resolve().parents[1]

import k2vv_sim as sim  # noqa: E402

DATA = Path(__file__).parent / "data"
S2020 = "https://json-schema.org/draft/2020-12/schema"
CALL_ID = re.compile(r"^functions\.[A-Za-z0-9_.-]+:\d+$")


def read_lines(name: str, limit: int | None = None) -> list:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as lines:
        bodies = [json.loads(line) for line in lines if line.strip()]
    bodies = bodies[:limit] if limit else bodies
    for body in bodies:  # k2vv-only keys are stripped before sending (DESIGN §3)
        for key in ("id", "expected", "k2vv"):
            body.pop(key, None)
        for message in body["messages"]:
            if message.get("role") == "_input":
                message["role"] = "system"
    return bodies


DIALECT = read_lines("k2vv-dialect.jsonl.gz")
BFCL = read_lines("bfcl-live.jsonl.gz", 200)
SAMPLE = DIALECT[:12] + BFCL[:12]


def is_valid(schema, instance) -> bool:
    if not schema:
        return isinstance(instance, dict)
    cls = jsonschema.Draft202012Validator if "2020-12" in str(schema.get("$schema", "")) else jsonschema.Draft7Validator
    return cls(schema, registry=referencing.Registry()).is_valid(instance)


def tools_of(body) -> dict:
    return {t["function"]["name"]: t["function"].get("parameters") for t in body.get("tools") or []}


def reassemble(lines: list) -> dict:
    """A test-side SSE reader (deliberately independent of k2vv.reassemble_stream)."""
    content, calls, finish, usage, done = [], {}, None, None, False
    for line in lines:
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            done = True
            continue
        chunk = json.loads(line[6:])
        assert chunk["object"] == "chat.completion.chunk"
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            delta = choice.get("delta") or {}
            content.append(delta.get("content") or "")
            for part in delta.get("tool_calls") or ():
                call = calls.setdefault(part["index"], {"id": None, "name": None, "arguments": ""})
                call["id"] = call["id"] or part.get("id")
                call["name"] = call["name"] or (part.get("function") or {}).get("name")
                call["arguments"] += (part.get("function") or {}).get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return {"content": "".join(content), "calls": [calls[i] for i in sorted(calls)], "finish_reason": finish,
            "usage": usage, "done": done}


def flatten(completion: dict) -> dict:
    """The parts of a chat.completion that reassemble() also yields."""
    choice = completion["choices"][0]
    calls = [{"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
             for c in choice["message"].get("tool_calls") or ()]
    return {"content": choice["message"]["content"], "calls": calls, "finish_reason": choice["finish_reason"],
            "usage": completion["usage"], "done": True}


def ask(session, vendor, body, stream=False, usage=True, **kwargs) -> tuple:
    """(response, flattened answer) for one request; stream answers reassembled from SSE."""
    body = dict(body, model="sim-test", stream=stream)
    body.pop("stream_options", None)
    if stream and usage:
        body["stream_options"] = {"include_usage": True}
    response = session.post(vendor.url + "/chat/completions", json=body, timeout=10, stream=stream, **kwargs)
    if response.status_code != 200:
        return response, None
    if stream:
        lines = [line for line in response.iter_lines(decode_unicode=True) if line]
        return response, dict(reassemble(lines), lines=lines)
    return response, flatten(response.json())


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s


# ---- A. example_arguments ------------------------------------------------------------------------

def _obj(props, required=None, **extra):
    return {"type": "object", "properties": props, "required": list(props) if required is None else required, **extra}


GENERATOR_SCHEMAS = [
    ("empty", {}),
    ("pattern", _obj({"code": {"type": "string", "pattern": "^[A-Z]{3}$"}})),
    ("pattern-literal", _obj({"mode": {"type": "string", "pattern": "^(fast|slow)$"}})),
    ("pattern-unsatisfiable-optional", {"type": "object", "properties": {"w": {"type": "string", "pattern": "^zz\\d{9}q$"}}}),
    ("multipleOf-int", _obj({"n": {"type": "integer", "multipleOf": 7, "minimum": 10, "maximum": 100}})),
    ("multipleOf-float", _obj({"p": {"type": "number", "multipleOf": 0.01, "minimum": 1}})),
    ("multipleOf-quarter", _obj({"p": {"type": "number", "multipleOf": 0.25, "exclusiveMaximum": 3}})),
    ("tiny-open-range", _obj({"r": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5}})),
    ("int-range", _obj({"r": {"type": "integer", "minimum": -5, "maximum": -3}})),
    ("lengths", _obj({"long": {"type": "string", "minLength": 12}, "short": {"type": "string", "maxLength": 3}})),
    ("enum-const", _obj({"unit": {"enum": ["c", "f"]}, "v": {"const": 2}})),
    ("nullable-union", _obj({"n": {"type": ["integer", "null"]}, "m": {"type": ["string", "number"]}})),
    ("oneOf-exclusive", _obj({"s": {"oneOf": [{"type": "string", "maxLength": 3}, {"type": "string", "minLength": 2}]}})),
    ("anyOf", _obj({"s": {"anyOf": [{"type": "integer", "minimum": 5}, {"type": "string"}]}})),
    ("allOf", {"allOf": [_obj({"a": {"type": "integer"}}), _obj({"b": {"type": "string"}})]}),
    ("closed-minProperties", {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                              "additionalProperties": False, "minProperties": 2}),
    ("maxProperties", {"type": "object", "properties": {k: {"type": "string"} for k in "abcdef"}, "maxProperties": 2}),
    ("draft07-tuple", _obj({"p": {"type": "array", "items": [{"type": "number"}, {"type": "string"}],
                                  "additionalItems": False}})),
    ("tuple-minItems", _obj({"p": {"type": "array", "items": [{"type": "number"}], "minItems": 3,
                                   "additionalItems": {"type": "boolean"}}})),
    ("2020-prefixItems", {"$schema": S2020, **_obj({"r": {"type": "array", "prefixItems": [{"type": "integer"}] * 2,
                                                        "items": False}})}),
    ("uniqueItems-enum", _obj({"tags": {"type": "array", "uniqueItems": True, "minItems": 3,
                                        "items": {"enum": ["a", "b", "c", "d"]}}})),
    ("maxItems", _obj({"xs": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 1}})),
    ("contains", _obj({"xs": {"type": "array", "items": {"type": "integer"}, "contains": {"const": 7}}})),
    ("nested", _obj({"when": _obj({"start": {"type": "string", "format": "date-time"},
                                   "slots": {"type": "array", "items": _obj({"h": {"type": "integer"}})}})})),
    ("ref-definitions", {"definitions": {"p": _obj({"name": {"type": "string"}})}, **_obj({"who": {"$ref": "#/definitions/p"}})}),
    ("ref-$defs", {"$defs": {"p": _obj({"age": {"type": "integer", "minimum": 0}})}, **_obj({"who": {"$ref": "#/$defs/p"}})}),
    ("ref-recursive", {"definitions": {"node": {"type": "object", "properties": {
        "kids": {"type": "array", "items": {"$ref": "#/definitions/node"}}}}}, "$ref": "#/definitions/node"}),
    ("dependencies", {"type": "object", "properties": {"card": {"type": "string"}, "cvv": {"type": "string"}},
                      "dependencies": {"card": ["cvv"]}, "minProperties": 1}),
    ("if-then", {"type": "object", "properties": {"kind": {"enum": ["a", "b"]}, "n": {"type": "integer"}},
                 "required": ["kind"], "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["n"]}}),
    ("not", _obj({"s": {"type": "string", "not": {"enum": ["alpha", "value", "report", "Paris"]}}})),
    ("no-type-any", _obj({"x": {"description": "any value"}})),
    ("default-null-on-string", _obj({"s": {"type": "string", "default": None}}, required=[])),
]


@pytest.mark.parametrize("name, schema", GENERATOR_SCHEMAS, ids=[n for n, _ in GENERATOR_SCHEMAS])
def test_example_arguments_are_valid_and_deterministic(name, schema):
    instances = [sim.example_arguments(schema, random.Random(seed)) for seed in range(25)]
    for instance in instances:
        assert is_valid(schema, instance), json.dumps(instance)
        assert isinstance(instance, dict)  # tool arguments are objects
    assert instances == [sim.example_arguments(schema, random.Random(seed)) for seed in range(25)]


def test_example_arguments_vary_with_the_rng():
    schema = _obj({"a": {"type": "integer"}, "b": {"type": "string"}}, required=["a"])
    assert len({json.dumps(sim.example_arguments(schema, random.Random(s))) for s in range(20)}) > 5


def test_example_arguments_do_not_mutate_the_schema():
    schema = _obj({"a": {"type": "array", "items": {"type": "object", "default": {"x": 1}}, "default": [{"x": 1}]}})
    before = json.dumps(schema, sort_keys=True)
    for seed in range(20):
        instance = sim.example_arguments(schema, random.Random(seed))
        instance["a"].append("mutated")  # a default handed out must be a copy
    assert json.dumps(schema, sort_keys=True) == before


# ---- A'. break_arguments ------------------------------------------------------------------------

BREAK_CASES = [  # (how, schema): each applies
    ("missing_required", _obj({"city": {"type": "string"}})),
    ("missing_required", _obj({"who": _obj({"name": {"type": "string"}})}, required=["who"])),
    ("wrong_type", _obj({"n": {"type": "integer"}})),
    ("wrong_type", _obj({"n": {"type": ["number", "null"]}})),
    ("extra_property", _obj({"a": {"type": "string"}}, additionalProperties=False)),
    ("out_of_range", _obj({"n": {"type": "integer", "minimum": 1, "maximum": 50}})),
    ("out_of_range", _obj({"q": {"type": "string", "minLength": 1}})),
    ("out_of_range", _obj({"xs": {"type": "array", "items": {"type": "string"}, "minItems": 1}})),
    ("out_of_range", _obj({"x": {"type": "number", "exclusiveMinimum": 0}})),
    ("bad_enum", _obj({"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}})),
    ("bad_enum", _obj({"v": {"const": True}})),
    ("wrong_tuple_length", _obj({"p": {"type": "array", "items": [{"type": "number"}] * 2, "additionalItems": False}})),
    ("wrong_tuple_length", {"$schema": S2020, **_obj({"r": {"type": "array", "prefixItems": [{"type": "integer"}] * 2,
                                                          "items": False}})}),
    ("missing_required", {"definitions": {"p": _obj({"name": {"type": "string"}})},
                          **_obj({"who": {"type": "array", "items": {"$ref": "#/definitions/p"}, "minItems": 1}})}),
]


@pytest.mark.parametrize("how, schema", BREAK_CASES, ids=[f"{how}-{i}" for i, (how, _) in enumerate(BREAK_CASES)])
def test_break_arguments_makes_an_invalid_copy(how, schema):
    for seed in range(10):
        valid = sim.example_arguments(schema, random.Random(seed))
        before = json.dumps(valid, sort_keys=True)
        broken = sim.break_arguments(schema, valid, how, random.Random(seed))
        assert broken is not None
        assert not is_valid(schema, broken), json.dumps(broken)
        assert json.dumps(valid, sort_keys=True) == before  # the valid instance is untouched
        assert broken == sim.break_arguments(schema, valid, how, random.Random(seed))


NOT_APPLICABLE = [
    ("missing_required", _obj({"a": {"type": "string"}}, required=[])),
    ("wrong_type", {}),
    ("wrong_type", {"properties": {"a": {"description": "anything"}}, "required": ["a"]}),
    ("extra_property", _obj({"a": {"type": "string"}})),
    ("out_of_range", _obj({"a": {"type": "string"}})),
    ("bad_enum", _obj({"a": {"type": "string"}})),
    ("wrong_tuple_length", _obj({"p": {"type": "array", "items": {"type": "number"}}})),
    ("wrong_tuple_length", _obj({"p": {"type": "array", "items": [{"type": "number"}]}})),  # open tuple, no minItems
    ("extra_property", {}),
]


@pytest.mark.parametrize("how, schema", NOT_APPLICABLE, ids=[f"{how}-{i}" for i, (how, _) in enumerate(NOT_APPLICABLE)])
def test_break_arguments_returns_none_when_it_does_not_apply(how, schema):
    valid = sim.example_arguments(schema, random.Random(1))
    assert sim.break_arguments(schema, valid, how, random.Random(1)) is None


def test_break_arguments_rejects_an_unknown_way():
    with pytest.raises(ValueError, match="wrong_type"):
        sim.break_arguments({}, {}, "typo", random.Random(0))


# ---- B. personalities ------------------------------------------------------------------------------

def test_unknown_personality_is_refused():
    with pytest.raises(ValueError, match="reference"):
        sim.SimVendor("grumpy")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_reference_answers_like_the_official_api(session, stream):
    with sim.SimVendor("reference") as vendor:
        request_ids = set()
        for body in SAMPLE:
            response, answer = ask(session, vendor, body, stream=stream)
            assert response.status_code == 200
            request_ids.add(response.headers["x-request-id"])
            assert answer["done"]
            tools = tools_of(body)
            if answer["finish_reason"] == "tool_calls":
                assert 1 <= len(answer["calls"]) <= 2
                for call in answer["calls"]:
                    assert CALL_ID.match(call["id"]) and call["name"] in tools
                    assert call["id"].startswith(f"functions.{call['name']}:")
                    assert is_valid(tools[call["name"]], json.loads(call["arguments"]))
            else:
                assert answer["finish_reason"] in ("stop", "length") and answer["calls"] == [] and answer["content"]
            usage = answer["usage"]
            assert usage["prompt_tokens"] > 10 and usage["completion_tokens"] > 0
            assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert len(request_ids) == len(SAMPLE)
        if stream:
            assert response.headers["content-type"].startswith("text/event-stream")


def test_reference_call_rate_and_rules(session):
    with sim.SimVendor("reference") as vendor:
        answers = [(body, ask(session, vendor, body)[1]) for body in DIALECT + BFCL]
    eligible = [a for b, a in answers if b.get("tools") and b["messages"][-1]["role"] != "tool"]
    share = sum(a["finish_reason"] == "tool_calls" for a in eligible) / len(eligible)
    assert 0.6 < share < 0.8
    assert all(a["finish_reason"] != "tool_calls" for b, a in answers if b["messages"][-1]["role"] == "tool")
    assert any(len(a["calls"]) == 2 for _, a in answers)                    # parallel calls happen
    assert any(a["finish_reason"] == "length" for _, a in answers)          # and so does `length`
    history = [(b, a) for b, a in answers if a["calls"] and any(m.get("tool_calls") for m in b["messages"])]
    assert history and all(not a["calls"][0]["id"].endswith(":0") for _, a in history)  # ids count earlier calls


def test_no_tools_means_text(session):
    body = {"messages": [{"role": "user", "content": "hi"}]}
    with sim.SimVendor("reference") as vendor:
        for i in range(20):
            _, answer = ask(session, vendor, dict(body, messages=[{"role": "user", "content": f"hi {i}"}]))
            assert answer["finish_reason"] in ("stop", "length") and not answer["calls"]


def test_tool_choice_is_honoured(session):
    body = next(b for b in DIALECT if len(b["tools"]) > 1 and b["messages"][-1]["role"] == "user")
    name = body["tools"][1]["function"]["name"]
    with sim.SimVendor("reference") as vendor:
        _, forced = ask(session, vendor, dict(body, tool_choice={"type": "function", "function": {"name": name}}))
        _, none = ask(session, vendor, dict(body, tool_choice="none"))
    assert {c["name"] for c in forced["calls"]} == {name} and forced["finish_reason"] == "tool_calls"
    assert none["finish_reason"] != "tool_calls"


def test_decisions_ignore_model_stream_and_stream_options(session):
    with sim.SimVendor("reference") as vendor:
        for body in SAMPLE:
            _, a = ask(session, vendor, dict(body, model="x"))
            response = session.post(vendor.url + "/chat/completions", timeout=10,
                                    json=dict(body, model="other-model", stream=False,
                                              stream_options={"include_usage": False}))
            b = flatten(response.json())
            assert (a["calls"], a["content"], a["finish_reason"]) == (b["calls"], b["content"], b["finish_reason"])


def test_seed_changes_the_answers(session):
    with sim.SimVendor("reference", seed=0) as v0, sim.SimVendor("reference", seed=1) as v1:
        differ = sum(ask(session, v0, b)[1]["calls"] != ask(session, v1, b)[1]["calls"] for b in SAMPLE)
    assert differ > 0


@pytest.mark.parametrize("personality", ["reference", "sloppy", "drifting"])
def test_stream_reassembles_to_the_non_stream_answer(session, personality):
    with sim.SimVendor(personality) as vendor:
        for body in DIALECT[:40] + BFCL[:40]:
            _, plain = ask(session, vendor, body)
            _, streamed = ask(session, vendor, body, stream=True)
            lines = streamed.pop("lines")
            assert streamed == plain
            assert lines[-1] == "data: [DONE]"


def test_stream_chunks_have_the_official_shape(session):
    with sim.SimVendor("reference") as vendor:
        for body in DIALECT[:60]:
            _, answer = ask(session, vendor, body, stream=True)
            if answer["calls"] and len(answer["calls"][0]["arguments"]) > 6:
                break
        else:
            pytest.fail("no tool-call answer with arguments in the sample")
        chunks = [json.loads(line[6:]) for line in answer["lines"][:-1]]
        tool_deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
                       if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
        first = tool_deltas[0]
        assert first["index"] == 0 and first["id"] and first["type"] == "function"
        assert first["function"]["name"] and first["function"]["arguments"] == ""
        fragments = [d for d in tool_deltas[1:] if d["index"] == 0]
        assert len(fragments) >= 2 and all(set(d) == {"index", "function"} for d in fragments)
        assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0   # usage-only chunk
        assert all(c["usage"] is None for c in chunks[:-1])
        _, without = ask(session, vendor, body, stream=True, usage=False)
        assert without["usage"] is None and without["lines"][-1] == "data: [DONE]"
        assert all("usage" not in json.loads(line[6:]) for line in without["lines"][:-1])


def test_sloppy_spoils_a_quarter_of_tool_call_answers(session):
    bodies = DIALECT + BFCL
    with sim.SimVendor("reference") as ref, sim.SimVendor("sloppy") as sloppy:
        pairs = []
        for body in bodies:
            _, expected = ask(session, ref, body)
            response, answer = ask(session, sloppy, body)
            pairs.append((body, expected, answer, response.headers.get("x-sim-breakage")))
    assert all(a["finish_reason"] == e["finish_reason"] for _, e, a, _ in pairs)   # same decisions
    calling = [p for p in pairs if p[1]["finish_reason"] == "tool_calls"]
    spoiled = [p for p in calling if p[3]]
    assert 0.15 < len(spoiled) / len(calling) < 0.35
    assert all(a == e for _, e, a, way in calling if not way)
    assert {way for *_, way in spoiled} == {"missing_required", "wrong_type", "unknown_tool", "empty_tool_calls", "non_json"}
    for body, expected, answer, way in spoiled:
        tools = tools_of(body)
        if way == "empty_tool_calls":
            assert answer["calls"] == []
            continue
        call = answer["calls"][0]
        if way == "unknown_tool":
            assert call["name"] not in tools and CALL_ID.match(call["id"])
        elif way == "non_json":
            with pytest.raises(ValueError):
                json.loads(call["arguments"])
        else:
            assert not is_valid(tools[call["name"]], json.loads(call["arguments"])), (way, call)


def test_flaky_fails_first_attempts_then_answers_like_reference(session):
    outcomes = {}
    with sim.SimVendor("reference") as ref, sim.SimVendor("flaky") as flaky:
        for i, body in enumerate(DIALECT[:120]):
            stream = i % 2 == 1
            _, expected = ask(session, ref, body, stream=stream)
            try:
                response, first = ask(session, flaky, body, stream=stream)
                if response.status_code != 200:
                    kind = str(response.status_code)
                    if kind == "429":
                        assert response.headers["Retry-After"] == "0"
                elif not first["done"]:
                    assert first["finish_reason"] is None
                    kind = "cut_stream"
                else:
                    kind = None
            except requests.ConnectionError:
                kind = "reset"
            outcomes[kind] = outcomes.get(kind, 0) + 1
            _, retried = ask(session, flaky, body, stream=stream)
            if stream:
                expected.pop("lines"), retried.pop("lines")
            assert retried == expected
        attempts = [r["attempt"] for r in flaky.received]
        assert attempts.count(1) == attempts.count(2) == 120
        flaky.reset()
        assert flaky.received == [] and flaky.count == 0
    failed = sum(n for kind, n in outcomes.items() if kind)
    assert 0.15 < failed / 120 < 0.35
    assert set(outcomes) - {None} >= {"429", "reset", "cut_stream"} and set(outcomes) & {"500", "502", "503"}


def test_drifting_flips_about_two_fifths_of_the_decisions(session):
    with sim.SimVendor("reference") as ref, sim.SimVendor("drifting") as drift:
        flips = total = 0
        for body in DIALECT + BFCL:
            _, a = ask(session, ref, body)
            _, b = ask(session, drift, body)
            total += 1
            flips += (a["finish_reason"] == "tool_calls") != (b["finish_reason"] == "tool_calls")
            if (a["finish_reason"] == "tool_calls") == (b["finish_reason"] == "tool_calls"):
                assert a == b
    assert 0.3 < flips / total < 0.5


# ---- B'. scripted faults ------------------------------------------------------------------------

def _first_attempt(fault):
    return lambda body, attempt: fault if attempt == 1 else None


@pytest.mark.parametrize("fault, status", [("429", 429), ("500", 500), ("502", 502), ("503", 503), ("401", 401),
                                           ("403", 403), ("404", 404), ("400_schema", 400)])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_scripted_http_errors_then_success(session, fault, status, stream):
    body = DIALECT[1]
    with sim.SimVendor("reference", script=_first_attempt(fault)) as vendor:
        response, _ = ask(session, vendor, body, stream=stream)
        assert response.status_code == status and response.headers["x-request-id"]
        if fault == "502":
            assert response.headers["content-type"].startswith("text/html")  # gateways answer HTML
        else:
            error = response.json()["error"]
            assert error["message"] and error["type"]
        if fault == "429":
            assert response.headers["Retry-After"] == "1"
        if fault == "400_schema":
            assert body["tools"][0]["function"]["name"] in response.json()["error"]["message"]
        response, answer = ask(session, vendor, body, stream=stream)
        assert response.status_code == 200 and answer["done"]
        assert [r["attempt"] for r in vendor.received] == [1, 2]


def test_retry_after_is_configurable(session):
    with sim.SimVendor("reference", script=lambda body, attempt: "429", retry_after=7) as vendor:
        response, _ = ask(session, vendor, DIALECT[0])
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_scripted_reset_closes_without_an_answer(session, stream):
    with sim.SimVendor("reference", script=_first_attempt("reset")) as vendor:
        with pytest.raises(requests.ConnectionError):
            ask(session, vendor, DIALECT[1], stream=stream)
        response, answer = ask(session, vendor, DIALECT[1], stream=stream)  # the session recovers
        assert response.status_code == 200 and answer["done"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_scripted_cut_body_breaks_content_length(session, stream):
    with sim.SimVendor("reference", script=_first_attempt("cut_body")) as vendor:
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            ask(session, vendor, DIALECT[1], stream=stream)
        assert ask(session, vendor, DIALECT[1], stream=stream)[0].status_code == 200


def test_scripted_cut_stream_has_neither_finish_nor_done(session):
    body = next(b for b in DIALECT if b["messages"][-1]["role"] == "user")
    with sim.SimVendor("reference", script=_first_attempt("cut_stream")) as vendor:
        response, cut = ask(session, vendor, body, stream=True)
        assert response.status_code == 200 and response.headers["x-sim-fault"] == "cut_stream"
        assert cut["lines"] and not cut["done"] and cut["finish_reason"] is None
        _, whole = ask(session, vendor, body, stream=True)
        assert whole["done"] and whole["finish_reason"]
        assert whole["lines"][:len(cut["lines"])] == cut["lines"]  # a prefix of the real stream


def test_scripted_slow_answers_late(session):
    with sim.SimVendor("reference", script=_first_attempt("slow:0.8")) as vendor:
        with pytest.raises(requests.exceptions.ReadTimeout):
            session.post(vendor.url + "/chat/completions", json=DIALECT[1], timeout=0.2)
        response, answer = ask(session, vendor, DIALECT[1])
        assert response.status_code == 200 and answer["done"]


def test_script_sees_the_body_and_the_attempt_of_that_exact_body(session):
    seen = []

    def script(body, attempt):
        seen.append((body["messages"][-1]["content"], attempt))
        return None

    with sim.SimVendor("reference", script=script) as vendor:
        for body in (DIALECT[0], DIALECT[1], DIALECT[0], dict(DIALECT[0], temperature=0.1)):
            ask(session, vendor, body)
    last = [m for m, _ in seen]
    assert [a for _, a in seen] == [1, 1, 2, 1] and last[0] == last[2]


def test_unknown_scripted_fault_is_a_visible_500(session):
    with sim.SimVendor("reference", script=lambda body, attempt: "teapot") as vendor:
        response, _ = ask(session, vendor, DIALECT[0])
    assert response.status_code == 500 and "teapot" in response.text


# ---- B''. the server itself --------------------------------------------------------------------

def test_received_records_path_headers_and_body(session):
    with sim.SimVendor("reference") as vendor:
        session.post(vendor.url.removesuffix("/v1") + "/chat/completions", json=DIALECT[0],
                     headers={"Authorization": "Bearer sk-test-FAKE", "X-Title": "k2vv"}, timeout=10)
        session.post(vendor.url + "/chat/completions", data=b"{not json", timeout=10)
        received = vendor.received
        assert vendor.count == 2
    assert received[0]["path"] == "/chat/completions" and received[0]["body"] == DIALECT[0]
    assert received[0]["headers"]["authorization"] == "Bearer sk-test-FAKE"
    assert received[0]["headers"]["x-title"] == "k2vv"
    assert received[1]["body"] == "{not json"


def test_paths_and_bad_bodies(session):
    with sim.SimVendor("reference") as vendor:
        base = vendor.url.removesuffix("/v1")
        assert session.post(base + "/chat/completions", json=DIALECT[0], timeout=10).status_code == 200
        assert session.post(vendor.url + "/embeddings", json=DIALECT[0], timeout=10).status_code == 404
        assert session.post(vendor.url + "/completions", json=DIALECT[0], timeout=10).status_code == 400  # no prompt
        assert session.post(vendor.url + "/chat/completions", data=b"[1]", timeout=10).status_code == 400
        assert session.get(vendor.url + "/models", timeout=10).json()["data"]


def test_keep_alive_reuses_one_connection(session):
    with sim.SimVendor("reference") as vendor:
        for body in SAMPLE[:10]:
            assert ask(session, vendor, body)[0].status_code == 200
        assert len({r["peer"] for r in vendor.received}) == 1


def test_concurrency_32_workers(session):
    jobs = [(body, i % 3 == 0) for i, body in enumerate((DIALECT[:64] + BFCL[:64]))]
    local = threading.local()

    def work(job):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        response, answer = ask(local.session, vendor, job[0], stream=job[1])
        return response.status_code, answer["done"]

    with sim.SimVendor("reference") as vendor:
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(work, jobs))
        assert results == [(200, True)] * len(jobs) and vendor.count == len(jobs)


def test_stop_does_not_wait_for_idle_keep_alive_connections(session):
    vendor = sim.SimVendor("reference").start()
    assert ask(session, vendor, DIALECT[0])[0].status_code == 200   # the session now holds a connection
    stopper = threading.Thread(target=vendor.stop)
    stopper.start()
    stopper.join(10)
    assert not stopper.is_alive()
    with pytest.raises(requests.ConnectionError):
        ask(session, vendor, DIALECT[0])


def test_logging_is_quiet(session, capfd):
    script = {1: "reset", 2: "cut_body", 3: "500", 4: None}
    with sim.SimVendor("sloppy", script=lambda body, attempt: script.get(attempt)) as vendor:
        for _ in range(4):
            try:
                ask(session, vendor, DIALECT[1])
            except requests.RequestException:
                pass
        session.get(vendor.url + "/nowhere", timeout=10)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_serve_sim_prints_its_url_and_answers_like_an_in_process_vendor(session):
    """Also pins determinism across processes: another PYTHONHASHSEED, the same bytes."""
    code = "import k2vv_sim; k2vv_sim.serve_sim('sloppy', 0)"
    env = {"PYTHONHASHSEED": "987", "PATH": "/usr/bin:/bin"}
    with subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as proc:
        try:
            url = proc.stdout.readline().strip()
            assert re.match(r"^http://127\.0\.0\.1:\d+/v1$", url)
            with sim.SimVendor("sloppy") as local:
                for body in DIALECT[:30] + BFCL[:30]:
                    theirs = session.post(url + "/chat/completions", json=dict(body, stream=False), timeout=10)
                    ours = session.post(local.url + "/chat/completions", json=dict(body, stream=False), timeout=10)
                    assert theirs.status_code == 200 and theirs.content == ours.content
        finally:
            proc.terminate()
            proc.wait(10)
