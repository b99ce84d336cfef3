"""k2vv_wire: raw Kimi completions and the Responses API, translated into the chat shape and scored
by k2vv's own parse_completion / reassemble_stream (the product path), never by a second parser."""
import ast
import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings, strategies as st

import k2vv
import k2vv_wire as wire

ROOT = Path(__file__).resolve().parents[1]
B, E = wire.SECTION_BEGIN, wire.SECTION_END
CB, AB, CE = wire.CALL_BEGIN, wire.ARG_BEGIN, wire.CALL_END
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def kimi(*calls, before="", after="") -> str:
    """Kimi K2 raw text with one section holding `calls` = (name, index, arguments)."""
    body = "".join(f"{CB}functions.{name}:{i}{AB}{args}{CE}" for name, i, args in calls)
    return f"{before}{B}{body}{E}{after}"


def text_completion(text, finish="stop", **extra) -> dict:
    choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    return {"id": "cmpl-1", "object": "text_completion", "created": 7, "model": "kimi-k2",
            "choices": [choice], "usage": USAGE, **extra}


def text_stream(pieces, finish="stop", done=True) -> list:
    """SSE payloads of a streamed text completion: one chunk per piece, finish on the last one,
    then the include_usage chunk and [DONE]."""
    out = [json.dumps({"id": "cmpl-1", "object": "text_completion", "created": 7, "model": "kimi-k2",
                       "choices": [{"index": 0, "text": piece, "finish_reason": None}]}) for piece in pieces]
    if finish is not None:
        out.append(json.dumps({"id": "cmpl-1", "choices": [{"index": 0, "text": "", "finish_reason": finish}]}))
    if done:
        out += [json.dumps({"id": "cmpl-1", "choices": [], "usage": USAGE}), "[DONE]"]
    return out


def scored_body(body):
    parsed = k2vv.parse_completion(body)
    return parsed, [(c["id"], c["name"], c["arguments"]) for c in parsed.calls]


def scored_stream(payloads):
    parsed = k2vv.reassemble_stream(payloads)
    return parsed, [(c["id"], c["name"], c["arguments"]) for c in parsed.calls]


# ---- the module stands alone ---------------------------------------------------------------

def test_imports_nothing_from_k2vv():
    tree = ast.parse((ROOT / "k2vv_wire.py").read_text(encoding="utf-8"))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "json"}


# ---- Kimi special tokens: K2VV's parser faults, each its own test ------------------------------

def test_one_call_and_the_text_around_it():
    content, calls, cut = wire.kimi_tool_calls(kimi(("get_weather", 0, '{"city": "Paris"}'), before="Sure. "))
    assert (content, cut) == ("Sure. ", False)
    assert calls == [{"id": "functions.get_weather:0", "name": "get_weather", "arguments": '{"city": "Paris"}'}]


def test_a_name_with_a_dash_is_kept():  # K2VV's [\w\.]+ drops the call
    _, calls, _ = wire.kimi_tool_calls(kimi(("get-weather", 0, "{}")))
    assert [c["name"] for c in calls] == ["get-weather"]


def test_a_name_with_dots_is_kept_whole():  # K2VV: split(".")[1] gives "search"
    _, calls, _ = wire.kimi_tool_calls(kimi(("search.web.v2", 0, "{}")))
    assert [c["name"] for c in calls] == ["search.web.v2"]


def test_every_section_is_read():  # K2VV reads tool_calls_sections[0] only
    text = kimi(("a", 0, "{}"), after=" then ") + kimi(("b", 1, '{"x": 1}'))
    content, calls, cut = wire.kimi_tool_calls(text)
    assert [c["name"] for c in calls] == ["a", "b"] and content == " then " and not cut


def test_a_section_without_its_end_is_cut_and_keeps_the_finished_calls():  # K2VV: every call lost
    text = kimi(("a", 0, "{}"))[: -len(E)] + f"{CB}functions.b:1{AB}" + '{"x": '
    content, calls, cut = wire.kimi_tool_calls(text)
    assert cut and [c["name"] for c in calls] == ["a"] and content == ""


def test_a_call_without_its_end_is_not_returned():
    text = f"{B}{CB}functions.a:0{AB}{{}}{CB}functions.b:1{AB}{{}}{CE}{E}"
    _, calls, cut = wire.kimi_tool_calls(text)
    assert cut and [c["name"] for c in calls] == ["b"]


def test_a_non_stream_answer_is_parsed():  # K2VV never parses a non-stream raw answer
    body, cut = wire.raw_as_chat(text_completion(kimi(("get_weather", 0, '{"city": "Paris"}'))))
    parsed, calls = scored_body(body)
    assert not cut and parsed.complete and parsed.finish_reason == "tool_calls"
    assert calls == [("functions.get_weather:0", "get_weather", '{"city": "Paris"}')]
    assert parsed.usage == USAGE and body["id"] == "cmpl-1" and body["model"] == "kimi-k2"


@pytest.mark.parametrize("call_id, name", [
    ("functions.get_weather:0", "get_weather"),
    ("get_weather:3", "get_weather"),  # no `functions.` prefix (vLLM reads it too)
    ("functions.get_weather", "get_weather"),  # no index
    ("functions.functions.x:0", "functions.x"),  # the prefix goes once
    ("functions.ns:tool:12", "ns:tool"),
    ("functions.天气_2:0", "天气_2"),
    ("functions.f:x", "f:x"),  # not an index
], ids=lambda v: v if isinstance(v, str) else None)
def test_names_from_ids(call_id, name):
    _, calls, _ = wire.kimi_tool_calls(f"{B}{CB} {call_id} {AB} {{}} {CE}{E}")
    assert calls == [{"id": call_id, "name": name, "arguments": "{}"}]


def test_the_singular_section_markers_are_read():
    text = f"<|tool_call_section_begin|>{CB}functions.a:0{AB}{{}}{CE}<|tool_call_section_end|>"
    assert wire.kimi_tool_calls(text)[1:] == ([{"id": "functions.a:0", "name": "a", "arguments": "{}"}], False)


def test_a_call_without_arguments_marker_has_empty_arguments():
    _, calls, cut = wire.kimi_tool_calls(f"{B}{CB}functions.a:0{CE}{E}")
    assert calls == [{"id": "functions.a:0", "name": "a", "arguments": ""}] and not cut


def test_thinking_goes_to_reasoning_content():
    body, _ = wire.raw_as_chat(text_completion("<think>need weather</think>" + kimi(("w", 0, "{}"))))
    message = body["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == ("need weather", "")
    body, _ = wire.raw_as_chat(text_completion("opened by the prompt</think>Hello"))
    assert body["choices"][0]["message"]["reasoning_content"] == "opened by the prompt"
    assert "reasoning_content" not in wire.raw_as_chat(text_completion("Hello"))[0]["choices"][0]["message"]


def test_plain_text_keeps_the_vendor_finish_reason():
    body, cut = wire.raw_as_chat(text_completion("Paris is sunny.", finish="length"))
    parsed, calls = scored_body(body)
    assert (parsed.finish_reason, calls, cut) == ("length", [], False)


def test_a_cut_section_keeps_the_vendor_finish_reason():
    body, cut = wire.raw_as_chat(text_completion(f"{B}{CB}functions.a:0{AB}{{\"x", finish="length"))
    assert cut and scored_body(body)[0].finish_reason == "length"


def test_markup_outside_a_section_stays_in_content():
    body, _ = wire.raw_as_chat(text_completion(f"{CB}functions.a:0{AB}{{}}{CE}"))
    parsed = k2vv.parse_completion(body)
    assert "markup_in_content" in k2vv.wire_findings(parsed) and parsed.calls == ()


# ---- raw requests --------------------------------------------------------------------------

def test_raw_request_keeps_what_k2vv_sends_but_the_chat_only_fields():
    body = {"model": "kimi-k2", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}],
            "tool_choice": "auto", "parallel_tool_calls": True, "temperature": 0.6, "max_completion_tokens": 64,
            "stream": True, "stream_options": {"include_usage": True}, "top_k": 5}
    assert wire.raw_request(body, "<|im_user|>hi") == {
        "model": "kimi-k2", "prompt": "<|im_user|>hi", "temperature": 0.6, "max_tokens": 64, "stream": True,
        "stream_options": {"include_usage": True}, "top_k": 5}
    assert wire.raw_request({"max_tokens": 9, "max_completion_tokens": 64}, "p")["max_tokens"] == 9


# ---- raw streams ---------------------------------------------------------------------------

TWO_CALLS = kimi(("get-weather", 0, '{"city": "Paris"}'), ("a.b", 1, '{"q": "<x>"}'), before="Calling. ")
EXPECTED = [("functions.get-weather:0", "get-weather", '{"city": "Paris"}'), ("functions.a.b:1", "a.b", '{"q": "<x>"}')]


def test_special_tokens_split_at_every_position():
    for cut_at in range(len(TWO_CALLS) + 1):
        payloads, cut = wire.raw_stream_as_chat(text_stream([TWO_CALLS[:cut_at], TWO_CALLS[cut_at:]]))
        parsed, calls = scored_stream(payloads)
        assert (calls, parsed.finish_reason, parsed.complete, cut) == (EXPECTED, "tool_calls", True, False), cut_at
        assert parsed.usage == USAGE and parsed.completion["choices"][0]["message"]["content"] == "Calling. "


def test_one_character_per_chunk():
    payloads, _ = wire.raw_stream_as_chat(text_stream(list(TWO_CALLS)))
    assert scored_stream(payloads)[1] == EXPECTED


@pytest.mark.parametrize("stop", range(1, len(TWO_CALLS), 37))
def test_a_stream_cut_before_its_end_stays_truncated(stop):
    payloads, _ = wire.raw_stream_as_chat(text_stream([TWO_CALLS[:stop]], finish=None, done=False))
    parsed = k2vv.reassemble_stream(payloads)
    assert not parsed.complete and parsed.finish_reason is None


def test_a_finished_stream_with_a_cut_section_says_cut():
    payloads, cut = wire.raw_stream_as_chat(text_stream([TWO_CALLS[:-len(E) - 5]], finish="length"))
    parsed, calls = scored_stream(payloads)
    assert cut and parsed.complete and parsed.finish_reason == "length" and calls == EXPECTED[:1]


def test_stream_errors_and_garbage_keep_their_meaning():
    payloads = text_stream([TWO_CALLS])
    payloads.insert(1, "not json {")
    parsed = k2vv.reassemble_stream(wire.raw_stream_as_chat(payloads)[0])
    assert "bad_chunk" in parsed.findings and parsed.complete
    payloads = text_stream([TWO_CALLS], finish=None, done=False) + [json.dumps({"error": {"message": "boom"}})]
    parsed = k2vv.reassemble_stream(wire.raw_stream_as_chat(payloads)[0])
    assert not parsed.complete and "stream_error" in parsed.findings


def test_a_stream_with_only_done_and_no_finish_is_complete_without_inventing_one():
    payloads, _ = wire.raw_stream_as_chat(text_stream([TWO_CALLS], finish=None))
    parsed = k2vv.reassemble_stream(payloads)
    assert parsed.complete and parsed.finish_reason is None and len(parsed.calls) == 2


# ---- Kimi round trip -----------------------------------------------------------------------

_MARKERS = ("<|", "|>")
_plain = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).filter(
    lambda s: not any(m in s for m in _MARKERS) and "think>" not in s)
_names = _plain.filter(lambda s: s and s == s.strip())
_arguments = st.dictionaries(_plain, st.one_of(st.integers(), _plain, st.booleans()), max_size=3).map(
    lambda d: json.dumps(d, ensure_ascii=False))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(_names, _arguments), max_size=3), min_size=1, max_size=3), _plain, st.data())
def test_any_calls_rendered_to_kimi_tokens_read_back_the_same(sections, before, data):
    text, expected, i = before, [], 0
    for section in sections:
        text += B
        for name, arguments in section:
            text += f"{CB}functions.{name}:{i}{AB}{arguments}{CE}"
            expected.append({"id": f"functions.{name}:{i}", "name": name, "arguments": arguments})
            i += 1
        text += E
    assert wire.kimi_tool_calls(text) == (before, expected, False)
    split = data.draw(st.integers(0, len(text)))
    payloads, _ = wire.raw_stream_as_chat(text_stream([text[:split], text[split:]]))
    assert [(c["id"], c["name"], c["arguments"]) for c in k2vv.reassemble_stream(payloads).calls] == \
        [(c["id"], c["name"], c["arguments"]) for c in expected]


# ---- Responses API: requests ---------------------------------------------------------------

CHAT_BODY = {
    "model": "kimi-k2", "temperature": 0.6, "top_p": 0.9, "stream": True, "parallel_tool_calls": True,
    "stream_options": {"include_usage": True}, "max_tokens": 256,
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                "parameters": {"type": "object"}}},
              {"type": "function", "function": {"name": "strict_one", "parameters": {}, "strict": True}}],
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image_url", "image_url": {"url": "data:x"}}]},
        {"role": "assistant", "content": "", "reasoning_content": "call it",
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": [{"type": "text", "text": "Sunny."}]},
    ]}


def test_responses_request_maps_messages_tools_and_limits():
    req = wire.responses_request(CHAT_BODY)
    assert req["input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                                     {"type": "input_image", "image_url": "data:x", "detail": "auto"}]},
        {"type": "reasoning", "id": "rs_2", "summary": [],
         "content": [{"type": "reasoning_text", "text": "call it"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]},
    ]
    assert req["tools"] == [
        {"type": "function", "name": "get_weather", "description": "Weather", "parameters": {"type": "object"},
         "strict": False},  # Responses defaults to strict: the chat meaning is kept explicitly
        {"type": "function", "name": "strict_one", "parameters": {}, "strict": True}]
    assert req["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert req["max_output_tokens"] == 256
    assert {k: req[k] for k in ("model", "temperature", "top_p", "stream", "parallel_tool_calls")} == \
        {k: CHAT_BODY[k] for k in ("model", "temperature", "top_p", "stream", "parallel_tool_calls")}
    assert not {"messages", "max_tokens", "stream_options"} & set(req)


def test_responses_request_small_mappings():
    req = wire.responses_request({"messages": [], "tool_choice": "required", "max_tokens": 5,
                                  "max_completion_tokens": 9, "reasoning_effort": "low",
                                  "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})
    assert req == {"input": [], "tool_choice": "required", "max_output_tokens": 9, "reasoning": {"effort": "low"},
                   "text": {"format": {"name": "x", "type": "json_schema"}}}
    items = wire.responses_request({"messages": [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "function": {"name": "f",
                                                                                      "arguments": {"a": 1}}}]},
        {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "o"}, {"type": "text", "text": "k"}]},
        {"role": "assistant", "content": None}]})["input"]
    assert items == [{"type": "function_call", "call_id": "c", "name": "f", "arguments": '{"a": 1}'},
                     {"type": "function_call_output", "call_id": "c", "output": "ok"},
                     {"role": "assistant", "content": ""}]


# ---- Responses API: answers ----------------------------------------------------------------

def response_object(output, status="completed", **extra) -> dict:
    return {"id": "resp_1", "object": "response", "created_at": 7, "model": "kimi-k2", "status": status,
            "error": None, "incomplete_details": None, "output": output,
            "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}, **extra}


REASONING = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "think "}],
             "content": [{"type": "reasoning_text", "text": "more"}]}
MESSAGE = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
           "content": [{"type": "output_text", "text": "Calling.", "annotations": []}]}
CALLS = [{"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "get-weather",
          "arguments": '{"city": "Paris"}', "status": "completed"},
         {"type": "function_call", "id": "fc_2", "call_id": "call_b", "name": "a.b", "arguments": "{}"}]
R_EXPECTED = [("call_a", "get-weather", '{"city": "Paris"}'), ("call_b", "a.b", "{}")]


def test_a_response_with_calls_is_a_chat_completion():
    parsed, calls = scored_body(wire.responses_as_chat(response_object([REASONING, MESSAGE, *CALLS])))
    assert calls == R_EXPECTED and parsed.finish_reason == "tool_calls" and parsed.complete
    assert parsed.usage == USAGE
    message = parsed.completion["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == ("Calling.", "think more")


def test_a_response_without_calls_stops_and_an_incomplete_one_is_length():
    assert scored_body(wire.responses_as_chat(response_object([MESSAGE])))[0].finish_reason == "stop"
    cut = response_object([CALLS[0]], status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    assert scored_body(wire.responses_as_chat(cut))[0].finish_reason == "length"
    filtered = response_object([], status="incomplete", incomplete_details={"reason": "content_filter"})
    assert scored_body(wire.responses_as_chat(filtered))[0].finish_reason == "content_filter"


@pytest.mark.parametrize("body", [
    response_object([], status="failed", error={"code": "server_error", "message": "boom"}),
    response_object([MESSAGE], status="cancelled"),
    response_object([MESSAGE], error={"message": "late"}),
], ids=["failed", "cancelled", "error"])
def test_a_failed_response_is_no_answer(body):
    out = wire.responses_as_chat(body)
    assert "error" in out and not k2vv.parse_completion(out).complete


def test_a_null_error_is_not_an_error():  # every response object carries "error": null
    assert k2vv.parse_completion(wire.responses_as_chat(response_object([MESSAGE]))).complete


# ---- Responses API: streams ----------------------------------------------------------------

def ev(kind, **fields) -> str:
    return json.dumps({"type": kind, **fields})


def responses_stream(end="response.completed", deltas=True, done=True) -> list:
    """A vLLM/OpenAI-style event stream: reasoning, text, then two function calls."""
    final = response_object([REASONING, MESSAGE, *CALLS], status="completed" if end == "response.completed"
                            else "incomplete")
    out = [ev("response.created", response=response_object([], status="in_progress")),
           ev("response.reasoning_text.delta", item_id="rs_1", output_index=0, delta="more"),
           ev("response.output_text.delta", item_id="msg_1", output_index=1, content_index=0, delta="Calling.")]
    for n, call in enumerate(CALLS, start=2):
        out.append(ev("response.output_item.added", output_index=n, item=dict(call, arguments="")))
        if deltas:
            args = call["arguments"]
            out += [ev("response.function_call_arguments.delta", item_id=call["id"], output_index=n, delta=args[:3]),
                    ev("response.function_call_arguments.delta", item_id=call["id"], output_index=n, delta=args[3:])]
        if done:
            out.append(ev("response.function_call_arguments.done", item_id=call["id"], output_index=n,
                          arguments=call["arguments"]))
    if end:
        out.append(ev(end, response=final))
    return out


def test_a_responses_stream_reassembles_into_the_same_calls():
    parsed, calls = scored_stream(wire.responses_stream_as_chat(responses_stream()))
    assert calls == R_EXPECTED and parsed.finish_reason == "tool_calls" and parsed.complete
    assert parsed.usage == USAGE and not parsed.findings
    message = parsed.completion["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == ("Calling.", "more")
    assert parsed.completion["id"] == "resp_1"


def test_stream_and_non_stream_responses_agree():
    stream = scored_stream(wire.responses_stream_as_chat(responses_stream()))
    body = scored_body(wire.responses_as_chat(response_object([REASONING, MESSAGE, *CALLS])))
    assert stream[1] == body[1] and stream[0].finish_reason == body[0].finish_reason


@pytest.mark.parametrize("deltas, done", [(False, True), (False, False)], ids=["from_done", "from_completed"])
def test_arguments_without_deltas_come_from_done_or_the_final_response(deltas, done):
    parsed, calls = scored_stream(wire.responses_stream_as_chat(responses_stream(deltas=deltas, done=done)))
    assert calls == R_EXPECTED and parsed.complete


def test_everything_only_in_the_completed_event_still_scores():
    final = response_object([MESSAGE, *CALLS])
    parsed, calls = scored_stream(wire.responses_stream_as_chat([ev("response.completed", response=final)]))
    assert calls == R_EXPECTED and parsed.completion["choices"][0]["message"]["content"] == "Calling."


def test_deltas_win_over_a_different_done():
    stream = responses_stream()
    stream[-2] = ev("response.function_call_arguments.done", item_id="fc_2", output_index=3, arguments='{"z": 0}')
    assert scored_stream(wire.responses_stream_as_chat(stream))[1] == R_EXPECTED


@pytest.mark.parametrize("stop", range(0, 11))
def test_a_responses_stream_cut_before_its_end_stays_truncated(stop):
    stream = responses_stream()[:stop] + ["[DONE]"]  # a gateway's own [DONE] does not end it
    assert not k2vv.reassemble_stream(wire.responses_stream_as_chat(stream)).complete


def test_incomplete_ends_with_length_and_failed_or_error_is_no_answer():
    parsed = k2vv.reassemble_stream(wire.responses_stream_as_chat(responses_stream(end="response.incomplete")))
    assert parsed.complete and parsed.finish_reason == "length"
    failed = responses_stream(end=None) + [ev("response.failed", response=response_object([], status="failed"))]
    parsed = k2vv.reassemble_stream(wire.responses_stream_as_chat(failed))
    assert not parsed.complete and "stream_error" in parsed.findings
    errored = responses_stream()
    errored.insert(3, ev("error", code="server_error", message="overloaded"))
    assert not k2vv.reassemble_stream(wire.responses_stream_as_chat(errored)).complete


def test_a_payload_that_is_not_json_is_a_bad_chunk():
    stream = responses_stream()
    stream.insert(2, "{half")
    parsed = k2vv.reassemble_stream(wire.responses_stream_as_chat(stream))
    assert "bad_chunk" in parsed.findings and parsed.complete


# ---- hostile input never raises ------------------------------------------------------------

HOSTILE = [None, 0, 1.5, True, "x", "[DONE]", [], [1, None], {}, {"choices": 5}, {"choices": [5]},
           {"choices": [{"text": 5, "finish_reason": [1], "index": [0]}]}, {"choices": [{"text": None}], "error": 1},
           {"output": 5}, {"output": [5, None, {"type": 5}, {"type": "function_call", "name": 5, "arguments": {}}]},
           {"output": [{"type": "message", "content": [5, {"type": "output_text", "text": 5}]}], "status": [1]},
           {"output": [], "status": "incomplete", "incomplete_details": {"reason": ["x"]}}, {"status": "failed"},
           {"usage": 5, "output": [{"type": "reasoning", "summary": 5, "content": [None]}]}]
HOSTILE_EVENTS = [{"type": t, **extra} for t in (
    "response.created", "response.output_item.added", "response.output_item.done", "response.function_call_arguments.delta",
    "response.function_call_arguments.done", "response.output_text.delta", "response.reasoning_text.delta",
    "response.completed", "response.incomplete", "response.failed", "error", None, 5, ["x"])
    for extra in ({}, {"response": 5, "item": 5, "delta": 5, "output_index": [1], "item_id": {}},
                  {"response": {"output": [{"type": "function_call"}], "usage": [], "incomplete_details": 3},
                   "item": {"type": "function_call", "call_id": 5, "name": ["n"], "arguments": 5},
                   "output_index": True, "delta": "", "arguments": None, "error": None})]


@pytest.mark.parametrize("body", HOSTILE, ids=repr)
def test_hostile_bodies_never_raise(body):
    chat, cut = wire.raw_as_chat(body)
    assert isinstance(cut, bool)
    k2vv.parse_completion(chat)
    k2vv.parse_completion(wire.responses_as_chat(body))
    assert wire.kimi_tool_calls(body if isinstance(body, str) else "")[2] is False


def test_hostile_streams_never_raise():
    payloads = [json.dumps(b) for b in HOSTILE] + ["\ufffd", "{" * 5000, "[" * 100000, "1" * 5000, " [DONE] "]
    payloads += [json.dumps(e) for e in HOSTILE_EVENTS]
    for stream in (payloads, payloads[::-1]):
        k2vv.reassemble_stream(wire.raw_stream_as_chat(stream)[0])
        k2vv.reassemble_stream(wire.responses_stream_as_chat(stream))
    # k2vv hands over decoded text; anything else is passed on untouched, not raised on
    assert wire.raw_stream_as_chat([None, 7, b"\xff"]) == ([None, 7, b"\xff"], False)
    assert wire.responses_stream_as_chat([None, 7, b"\xff"]) == [None, 7, b"\xff"]


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=20)
_keys = st.sampled_from(["choices", "text", "finish_reason", "index", "output", "type", "status", "error", "usage",
                         "item", "response", "delta", "arguments", "name", "call_id", "output_index", "content",
                         "incomplete_details", "reason", "summary"])
_shaped = st.recursive(_json, lambda inner: st.dictionaries(_keys, inner, max_size=5) | st.lists(inner, max_size=3),
                       max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(_shaped, st.lists(_shaped, max_size=6))
def test_any_json_never_raises(body, events):
    k2vv.parse_completion(wire.raw_as_chat(body)[0])
    k2vv.parse_completion(wire.responses_as_chat(body))
    payloads = [json.dumps(e) for e in events]
    k2vv.reassemble_stream(wire.raw_stream_as_chat(payloads)[0])
    k2vv.reassemble_stream(wire.responses_stream_as_chat(payloads))


_message = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "tool", "_input", "x"])},
                                 optional={"content": _json, "tool_calls": _json, "reasoning_content": _json,
                                           "tool_call_id": _json, "name": _json})


@settings(max_examples=300, deadline=None)
@given(st.lists(_message, max_size=5), _json, _json)
@example([{"role": "assistant", "content": "x", "tool_calls": 5}], None, None)  # was a TypeError, exit 70
def test_any_test_set_message_translates_without_raising(messages, tool_choice, limit):
    """A line k2vv accepts (messages of any shape beyond their role) is translated, never a crash:
    chat would send it as it is and let the vendor answer."""
    body = {"model": "m", "messages": messages, "tool_choice": tool_choice, "max_tokens": limit}
    json.dumps(wire.responses_request(body))
    json.dumps(wire.raw_request(body, "prompt"))


def test_a_hundred_thousand_sections_are_all_read():
    """A 15 MiB answer of one-call sections (under the 16 MiB cap): every call read. Joining them
    was quadratic (16 s of CPU past any --timeout); BENCHMARKS.md keeps speed, this keeps the count."""
    section = B + CB + "functions.f:0" + AB + "{}" + CE + E
    content, calls, cut = wire.kimi_tool_calls(section * 118_000)
    assert (content, len(calls), cut) == ("", 118_000, False)
