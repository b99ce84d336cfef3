"""Properties of the pure core, checked by hypothesis on generated values: a stream reassembles to
the same calls however it was cut, a cache key depends on the value and not on how it was written,
and the argument parser gives a value or a classed problem, never an exception.

Every property runs the same examples on every run (derandomize, no example database), so a
failure in CI is a failure on a laptop. Strings use hypothesis' default alphabet, which has no lone
surrogates."""
import hashlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import k2vv
import k2vv_http

# too_slow is about drawing examples, not about k2vv: a slow CI machine must not fail on it.
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

# ---- generated JSON ------------------------------------------------------------------------------

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
JSON_OBJECTS = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5)
HOLE = "\x00k2vv-hole\x00"  # a placeholder no strategy above draws by chance


def same_json(a, b) -> bool:
    """Equal and written alike: 1 == 1.0 == True in Python, not in JSON."""
    return a == b and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@st.composite
def with_hole(draw):
    """A JSON value with HOLE somewhere inside it (or being it)."""
    value = HOLE
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            before, after = draw(st.lists(JSON_VALUES, max_size=2)), draw(st.lists(JSON_VALUES, max_size=2))
            value = [*before, value, *after]
        else:
            value = {**draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3)), draw(st.text(max_size=8)): value}
    return value


def cut(text, points) -> list:
    """`text` split at `points` (any positions, repeats give empty pieces)."""
    bounds = [0, *sorted(p % (len(text) + 1) for p in points), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


# ---- a) streams: any split reassembles to the same calls -----------------------------------------

@st.composite
def completions(draw):
    """What a model answered: content, tool calls (name, id, JSON arguments), a finish reason."""
    n = draw(st.integers(0, 4))
    calls = [{"id": f"call_{i}_" + draw(st.text("abcdefXYZ0123456789", min_size=1, max_size=8)),
              "name": draw(st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,15}", fullmatch=True)),
              "arguments": json.dumps(draw(JSON_OBJECTS), ensure_ascii=draw(st.booleans()),
                                      separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))}
             for i in range(n)]
    content = draw(st.text(max_size=30))
    finish = "tool_calls" if calls else draw(st.sampled_from(["stop", "length"]))
    return {"content": content, "calls": calls, "finish_reason": finish}


@st.composite
def streamed(draw, answer):
    """The `data:` payloads a server could send for `answer` (what the cache keeps as sse_lines):
    content in pieces, then each call's arguments cut at drawn points into fragments (name and id
    in the first), the calls' fragments interleaved any way that keeps each call's order, some
    fragments sharing a chunk; a finish chunk, perhaps a usage-only chunk, and [DONE]."""
    head = {"id": "chatcmpl-k2vv", "object": "chat.completion.chunk", "created": 1, "model": "kimi-k2"}
    deltas = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in cut(answer["content"], draw(st.lists(st.integers(0, 99), max_size=4)))]
    queues = []
    for index, call in enumerate(answer["calls"]):
        pieces = cut(call["arguments"], draw(st.lists(st.integers(0, 999), max_size=6)))
        first = {"index": index, "id": call["id"], "type": "function",
                 "function": {"name": call["name"], "arguments": pieces[0]}}
        queues.append([first] + [{"index": index, "function": {"arguments": p}} for p in pieces[1:]])
    order = draw(st.permutations([i for i, queue in enumerate(queues) for _ in queue]))
    fragments = [queues[i].pop(0) for i in order]
    for fragment in fragments:
        if deltas and "tool_calls" in deltas[-1] and draw(st.booleans()):
            deltas[-1]["tool_calls"].append(fragment)
        else:
            deltas.append({"tool_calls": [fragment]})
    chunks = [dict(head, choices=[{"index": 0, "delta": d, "finish_reason": None}]) for d in deltas]
    chunks.append(dict(head, choices=[{"index": 0, "delta": {}, "finish_reason": answer["finish_reason"]}]))
    if draw(st.booleans()):
        chunks.append(dict(head, choices=[], usage={"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}))
    ascii_only = draw(st.booleans())
    return [json.dumps(c, ensure_ascii=ascii_only) for c in chunks] + ["[DONE]"]


def assert_reassembled(answer, payloads):
    parsed = k2vv.reassemble_stream(payloads)
    assert parsed.complete and parsed.findings == ()
    assert [(c["name"], c["arguments"], c["id"]) for c in parsed.calls] == \
        [(c["name"], c["arguments"], c["id"]) for c in answer["calls"]]
    assert parsed.finish_reason == answer["finish_reason"]
    assert parsed.completion["choices"][0]["message"]["content"] == answer["content"]


def request_for(answer) -> dict:
    tools = [{"type": "function", "function": {"name": c["name"], "parameters": {"type": "object"}}}
             for c in answer["calls"]]
    return {"model": "kimi-k2", "messages": [{"role": "user", "content": "hi"}], "stream": True, "tools": tools}


@PROPERTY
@given(st.data())
def test_any_split_of_the_arguments_reassembles_to_the_same_calls(data):
    answer = data.draw(completions())
    payloads = data.draw(streamed(answer))
    assert_reassembled(answer, payloads)
    outcome = k2vv.score_exchange(request_for(answer), {"v": 1, "status": 200, "sse_lines": payloads})
    assert outcome.response_class == ("valid" if answer["calls"] else "no_call")
    assert outcome.finish_reason == answer["finish_reason"]
    assert outcome.names == tuple(c["name"] for c in answer["calls"])
    assert [c.cls for c in outcome.calls] == ["valid"] * len(answer["calls"])


def wire_payloads(chunks: list) -> list:
    """What the runner makes of a body that arrived in these reads: split_lines, then
    iter_sse_payloads (k2vv_http.send_once)."""
    return list(k2vv.iter_sse_payloads(k2vv.split_lines(chunks)))


@PROPERTY
@given(st.data())
def test_any_split_of_the_wire_bytes_gives_the_same_payloads(data):
    """Reads end anywhere: inside a UTF-8 character, between \\r and \\n, on a line end (where
    iter_lines yields an extra blank line, psf/requests#4121: harmless between one-line events).
    Comment lines (keep-alives) are skipped."""
    answer = data.draw(completions())
    payloads = data.draw(streamed(answer))
    newline = data.draw(st.sampled_from(["\n", "\r\n"]))
    events = []
    for payload in payloads:
        if data.draw(st.booleans()):
            events.append(": keep-alive" + newline + newline)
        events.append("data:" + data.draw(st.sampled_from(["", " "])) + payload + newline + newline)
    wire = "".join(events).encode("utf-8")
    reads = cut(wire, data.draw(st.lists(st.integers(0, 10 ** 6), max_size=12)))
    assert wire_payloads(reads) == payloads
    assert_reassembled(answer, wire_payloads(reads))


def test_a_multi_line_event_cut_after_one_of_its_lines_is_one_payload():
    wire = b'data: {"choices": [{"index": 0,\ndata:  "delta": {}, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
    whole = wire_payloads([wire])
    assert whole == ['{"choices": [{"index": 0,\n "delta": {}, "finish_reason": "stop"}]}', "[DONE]"]
    end_of_first_line = wire.index(b"\n") + 1
    assert wire_payloads([wire[:end_of_first_line], wire[end_of_first_line:]]) == whole


# ---- b) canonical JSON and cache keys ------------------------------------------------------------

@st.composite
def reordered(draw, value):
    """`value` with every object's keys in a drawn order."""
    if isinstance(value, dict):
        items = draw(st.permutations(list(value.items())))
        return {k: draw(reordered(v)) for k, v in items}
    if isinstance(value, list):
        return [draw(reordered(v)) for v in value]
    return value


@PROPERTY
@given(st.data())
def test_canonical_json_ignores_key_order_and_keeps_the_value(data):
    value = data.draw(JSON_VALUES)
    other = data.draw(reordered(value))
    assert k2vv.canonical_json(other) == k2vv.canonical_json(value)
    assert same_json(json.loads(k2vv.canonical_json(value)), value)


URLS = st.sampled_from(["http://127.0.0.1:9/v1/chat/completions", "https://ex.ample/ü/v1/chat/completions"]) | st.text()
HEADERS = st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=3)


@PROPERTY
@given(JSON_OBJECTS, URLS, HEADERS, st.integers(0, 10 ** 6), st.integers(0, 10 ** 6))
def test_the_key_hashed_from_the_sent_bytes_is_the_hash_of_the_whole(body, url, headers, sample, other):
    """DESIGN §6: sha256 of the canonical JSON of {url, body, headers, sample}, spliced from the
    bytes that are sent; --trials keeps samples apart."""
    key = k2vv.payload_key(k2vv.canonical_json(body), k2vv.key_frame(url, headers), sample)
    whole = json.dumps({"url": url, "body": body, "headers": headers, "sample": sample},
                       sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert key == hashlib.sha256(whole).hexdigest()
    if other != sample:
        assert k2vv.payload_key(k2vv.canonical_json(body), k2vv.key_frame(url, headers), other) != key


# ---- c) parse_arguments: a value or a classed problem, never an exception ------------------------

@PROPERTY
@given(JSON_VALUES, st.sampled_from([{}, {"ensure_ascii": False}, {"indent": 2}, {"separators": (",", ":")}]))
def test_standard_json_parses_to_its_value(value, style):
    instance, problem = k2vv.parse_arguments(json.dumps(value, **style))
    assert problem is None
    assert same_json(instance, value)


NON_STANDARD = st.sampled_from(["NaN", "Infinity", "-Infinity"]) | st.builds(
    lambda key, a, b, rest: "{" + ", ".join([json.dumps(key) + ": " + json.dumps(a), *rest,
                                              json.dumps(key) + ": " + json.dumps(b)]) + "}",
    st.text(max_size=8), JSON_VALUES, JSON_VALUES,
    st.lists(st.builds(lambda k, v: json.dumps("~" + k) + ": " + json.dumps(v), st.text(max_size=8), JSON_VALUES),
             max_size=2))


@PROPERTY
@given(with_hole(), NON_STANDARD)
def test_nan_infinity_and_duplicate_keys_anywhere_are_non_standard(value, bad):
    text = json.dumps(value).replace(json.dumps(HOLE), bad)
    assert bad in text
    instance, problem = k2vv.parse_arguments(text)
    assert instance is None and problem[0] == "non_standard_json", text


JSONISH = st.text(alphabet=st.sampled_from(list('{}[]",:0123456789.eE+- \\/utrfalsnNaIiy')) | st.characters())


def assert_value_or_problem(text):
    instance, problem = k2vv.parse_arguments(text)
    if problem is None:
        assert same_json(instance, json.loads(text))
    else:
        assert instance is None and problem[0] in ("invalid_json", "non_standard_json") and isinstance(problem[1], str)


@PROPERTY
@given(st.text() | JSONISH | st.builds(lambda v, cuts: "".join(cut(json.dumps(v), cuts)[::2]),
                                       JSON_VALUES, st.lists(st.integers(0, 200), min_size=1, max_size=4)))
def test_any_text_gives_a_value_or_a_classed_problem(text):
    """Arbitrary text, JSON-ish noise, and JSON with pieces cut out."""
    assert_value_or_problem(text)


def test_nesting_deeper_than_python_reads_is_invalid_json_not_an_exception():
    assert_value_or_problem("[" * 100_000 + "]" * 100_000)
    assert_value_or_problem('{"a":' * 100_000)


def test_an_integer_too_long_for_python_is_a_value_or_a_problem_not_an_exception():
    assert_value_or_problem('{"n": ' + "9" * 5000 + "}")
