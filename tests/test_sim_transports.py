"""Simulated vendors over the other transports (DESIGN §12): raw `/v1/completions` in Kimi K2 tokens
and the Responses API `/v1/responses`, against the same personalities as chat.

Real sockets and `requests`, nothing mocked. The prompts are rendered here by a test-side copy of the
Kimi K2 chat template (`kimi_prompt`), and raw answers read by a test-side parser (`kimi_calls`): both
independent of k2vv_sim's own reader, so the two sides check each other. The tiny tokenizer in
tests/data/tiny-tokenizer/ renders the same bytes (checked when transformers is installed).
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import requests

import k2vv_sim as sim

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = Path(__file__).parent / "data" / "tiny-tokenizer"
DEFAULT_SYSTEM = "You are Kimi, an AI assistant created by Moonshot AI."
BEGIN, END = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
MARKERS = ("<|im_system|>", "<|im_user|>", "<|im_assistant|>", "<|im_middle|>", "<|im_end|>", BEGIN, END,
           "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>")


def prepared(line: dict, model: str = "kimi-k2") -> dict:
    """A test-set line as a vendor receives it: k2vv-only keys gone, `_input` as system (DESIGN §3)."""
    body = {k: v for k, v in json.loads(json.dumps(line)).items() if k not in ("id", "expected", "k2vv")}
    for message in body["messages"]:
        if message.get("role") == "_input":
            message["role"] = "system"
    return dict(body, model=model)


TESTSET = [prepared(json.loads(line)) for line in (ROOT / "fixtures" / "testset.jsonl").read_text().splitlines()
           if line.strip()]
AFTER_TOOL = [dict(b, messages=b["messages"][:1 + max(i for i, m in enumerate(b["messages"]) if m["role"] == "tool")])
              for b in TESTSET if any(m["role"] == "tool" for m in b["messages"])]  # histories ending in a result
DOTTED_TOOLS = [
    {"type": "function", "function": {"name": "weather.get-current", "description": "Weather now",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "calendar-v2.add_event", "description": "Add an event",
                                      "parameters": {"type": "object", "properties": {
                                          "title": {"type": "string"}, "hour": {"type": "integer", "minimum": 0,
                                                                                "maximum": 23}},
                                          "required": ["title", "hour"]}}},
    {"type": "function", "function": {"name": "plain_lookup", "parameters": {"type": "object", "properties": {
        "q": {"type": "string"}}, "required": ["q"]}}},
]
DOTTED = [{"model": "kimi-k2", "tools": DOTTED_TOOLS,
           "messages": [{"role": "user", "content": f"Task {i}: check the weather, then book a slot"}]}
          for i in range(60)]


# ---- a test-side Kimi K2 template and parser ------------------------------------------------------

def kimi_prompt(messages: list, tools: list | None = None) -> str:
    """What tests/data/tiny-tokenizer's chat template renders (add_generation_prompt=True)."""
    out = []
    if tools:
        out.append("<|im_system|>tool_declare<|im_middle|>"
                   + json.dumps(tools, ensure_ascii=False, separators=(",", ":")) + "<|im_end|>")
    for i, m in enumerate(messages):
        if i == 0 and m["role"] != "system":
            out.append(f"<|im_system|>system<|im_middle|>{DEFAULT_SYSTEM}<|im_end|>")
        opener = {"user": "<|im_user|>", "assistant": "<|im_assistant|>"}.get(m["role"], "<|im_system|>")
        out.append(f"{opener}{m.get('name') or m['role']}<|im_middle|>")
        if m["role"] == "assistant" and m.get("tool_calls"):
            out.append((m.get("content") or "") + BEGIN)
            for call in m["tool_calls"]:
                args = call["function"]["arguments"]
                args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
                out.append(f"<|tool_call_begin|>{call['id']}<|tool_call_argument_begin|>{args}<|tool_call_end|>")
            out.append(END)
        elif m["role"] == "tool":
            out.append(f"## Return of {m.get('tool_call_id', '')}\n{m['content']}")
        elif isinstance(m.get("content"), str):
            out.append(m["content"])
        elif m.get("content") is not None:
            out.append("".join(part["text"] for part in m["content"]))
        out.append("<|im_end|>")
    return "".join(out) + "<|im_assistant|>assistant<|im_middle|>"


def raw_body(body: dict, **extra) -> dict:
    """The /v1/completions body K2VV's --use_raw_completions sends for a chat body."""
    keep = {k: v for k, v in body.items() if k not in ("messages", "tools", "stream_options")}
    return dict(keep, prompt=kimi_prompt(body["messages"], body.get("tools")), **extra)


CALL = re.compile(r"<\|tool_call_begin\|>(.*?)<\|tool_call_argument_begin\|>(.*?)<\|tool_call_end\|>", re.S)


def kimi_calls(text: str) -> tuple:
    """(content, [(id, name, arguments)] of every complete section, truncated): a correct reader,
    names with `-` and `.` kept, every section read, a section without its end marker is truncated."""
    content = text.split(BEGIN)[0]
    calls, truncated = [], False
    for section in text.split(BEGIN)[1:]:
        body, closed, _ = section.partition(END)
        truncated = truncated or not closed
        calls += [(ident, re.fullmatch(r"(?:functions\.)?(.*?)(?::\d+)?", ident).group(1), args)
                  for ident, args in CALL.findall(body)]
    return content, calls, truncated


def k2vv_style_calls(text: str) -> list:
    """K2VV's extract_tool_call_info (notes/anchors §2.6): the first section only, ids matched by
    `[\\w\\.]+:\\d+`, the name as `split('.')[1]`, a section without its end marker gives nothing."""
    if BEGIN not in text or END not in text.split(BEGIN, 1)[1]:
        return []
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    pattern = (r"<\|tool_call_begin\|>\s*(?P<id>[\w\.]+:\d+)\s*<\|tool_call_argument_begin\|>\s*(?P<args>.*?)\s*"
               r"<\|tool_call_end\|>")
    return [(m["id"].split(":")[0].split(".")[1] if "." in m["id"] else m["id"].split(":")[0], m["args"])
            for m in re.finditer(pattern, section, re.S)]


# ---- test-side readers for the wire -----------------------------------------------------------------

def chat(session, vendor, body, stream=False) -> tuple:
    """(response, [(id, name, arguments)], content, finish_reason) of a non-stream chat answer."""
    response = session.post(vendor.url + "/chat/completions", json=dict(body, stream=stream), timeout=10)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    calls = [(c["id"], c["function"]["name"], c["function"]["arguments"])
             for c in choice["message"].get("tool_calls") or ()]
    return response, calls, choice["message"]["content"], choice["finish_reason"]


def completion(session, vendor, body, stream=False, usage=True) -> tuple:
    """(response, text, finish_reason, usage, pieces) of a raw completion; streams read from SSE."""
    body = dict(body, stream=stream, **({"stream_options": {"include_usage": True}} if stream and usage else {}))
    response = session.post(vendor.url + "/completions", json=body, timeout=10, stream=stream)
    assert response.status_code == 200, response.text
    if not stream:
        whole = response.json()
        assert whole["object"] == "text_completion" and len(whole["choices"]) == 1
        return response, whole["choices"][0]["text"], whole["choices"][0]["finish_reason"], whole["usage"], None
    lines = [line for line in response.iter_lines(decode_unicode=True) if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    pieces = [c["choices"][0]["text"] for c in chunks if c["choices"]]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert all(f is None for f in finishes[:-1]) and finishes[-1] in ("stop", "length")
    found = [c["usage"] for c in chunks if c.get("usage")]
    return response, "".join(pieces), finishes[-1], found[-1] if found else None, pieces


def to_responses(body: dict, instructions: bool = False) -> dict:
    """A chat body as a Responses request (what a client's `--api responses` would send)."""
    items, rest = [], body["messages"]
    out = {k: v for k, v in body.items() if k in ("model", "stream", "parallel_tool_calls", "temperature")}
    if instructions and rest and rest[0]["role"] == "system":
        out["instructions"], rest = rest[0]["content"], rest[1:]
    for m in rest:
        if m["role"] == "tool":
            items.append({"type": "function_call_output", "call_id": m["tool_call_id"], "output": m["content"]})
            continue
        if m.get("content") or not m.get("tool_calls"):
            items.append({"type": "message", "role": m["role"], "content": m.get("content") or ""})
        for call in m.get("tool_calls") or ():
            items.append({"type": "function_call", "call_id": call["id"], "name": call["function"]["name"],
                          "arguments": call["function"]["arguments"]})
    if body.get("tools"):
        out["tools"] = [dict(t["function"], type="function") for t in body["tools"]]
    choice = body.get("tool_choice")
    if choice is not None:
        out["tool_choice"] = {"type": "function", "name": choice["function"]["name"]} \
            if isinstance(choice, dict) else choice
    if "max_tokens" in body:
        out["max_output_tokens"] = body["max_tokens"]
    return dict(out, input=items)


def respond(session, vendor, body, stream=False) -> tuple:
    """(response, the response object, events or None): a streamed one is rebuilt from its events."""
    response = session.post(vendor.url + "/responses", json=dict(body, stream=stream), timeout=10, stream=stream)
    assert response.status_code == 200, response.text
    if not stream:
        return response, response.json(), None
    events, name = [], None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])  # no [DONE]: the Responses API ends with its last event
            assert data["type"] == name
            events.append(data)
    return response, events[-1]["response"], events


def function_calls(response_object: dict) -> list:
    return [(i["call_id"], i["name"], i["arguments"])
            for i in response_object["output"] if i["type"] == "function_call"]


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s


# ---- A. raw completions --------------------------------------------------------------------------

def test_reference_raw_answers_are_its_chat_answers_in_kimi_tokens(session):
    """Every test-set line: the prompt is read back, so the raw answer is the chat answer, rendered."""
    with sim.SimVendor("reference") as vendor:
        for body in TESTSET:
            messages, tools = sim._kimi_messages(raw_body(body)["prompt"])  # read back losslessly
            assert sim.answer_key({"messages": messages, "tools": tools}) == sim.answer_key(body)
            _, calls, content, finish = chat(session, vendor, body)
            response, text, raw_finish, usage, _ = completion(session, vendor, raw_body(body))
            assert "x-sim-raw" not in response.headers
            raw_content, raw_calls, truncated = kimi_calls(text)
            assert raw_calls == calls and not truncated
            if calls:
                assert raw_finish == "stop" and raw_content == "" and text.endswith(END)
            else:
                assert (raw_finish, text) == (finish, content) and BEGIN not in text
            assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_key_order_of_the_tools_changes_no_answer(session):
    """k2vv sends a chat body as canonical JSON (every object's keys sorted) but renders the raw prompt
    from the same body in the test set's key order: the sim's answers (arguments drawn property by
    property) must not follow the order, so chat and raw agree on what k2vv really sends."""
    reordered = 0
    with sim.SimVendor("reference") as vendor:
        for body in TESTSET:
            sorted_body = json.loads(sim.canonical_json(body))
            reversed_body = dict(body, tools=reverse_keys(body["tools"]))
            reordered += json.dumps(sorted_body["tools"]) != json.dumps(body["tools"])
            calls = chat(session, vendor, sorted_body)[1]
            assert chat(session, vendor, reversed_body)[1] == calls
            assert kimi_calls(completion(session, vendor, raw_body(body))[1])[1] == calls
    assert reordered > 100  # the bundled set's schemas are mostly not in sorted order


def reverse_keys(value):
    if isinstance(value, dict):
        return {k: reverse_keys(value[k]) for k in reversed(list(value))}
    return [reverse_keys(v) for v in value] if isinstance(value, list) else value


@pytest.mark.parametrize("flags", [["--use_raw_completions", "--tokenizer-model", str(TOKENIZER)],
                                   ["--api", "responses"]], ids=["raw", "responses"])
def test_the_honest_vendor_answers_a_case_alike_over_every_transport_through_run(tmp_path, capsys, flags):
    """The product path: what `k2vv run` really sends (canonical chat JSON; a prompt the tiny chat
    template renders; a Responses body), answered by `reference`, gives the same calls: diff finds none."""
    if "--use_raw_completions" in flags:
        pytest.importorskip("transformers")
        pytest.importorskip("jinja2")
    import k2vv
    from conftest import FAKE_KEY

    def run(name, *extra):
        out = tmp_path / name
        code = k2vv.main(["run", "--base-url", vendor.url, "--model", "kimi-k2", "--limit", "120", "--cache",
                          str(tmp_path / "cache"), "--out", str(out), "--quiet", "--api-key", FAKE_KEY, *extra])
        assert code in (0, 3), capsys.readouterr().err  # 3: inconclusive, no baseline given
        return json.loads((out / "summary.json").read_text())

    with sim.SimVendor("reference") as vendor:
        chat_summary, other = run("chat"), run("other", *flags)
    assert chat_summary["finish_tool_calls"] > 50 and other["success_count"] == chat_summary["success_count"] == 120
    capsys.readouterr()
    code = k2vv.main(["diff", str(tmp_path / "chat"), str(tmp_path / "other")])
    assert code == 0, capsys.readouterr().out

def test_raw_stream_pieces_split_special_tokens_and_join_to_the_non_stream_text(session):
    split_inside = 0
    with sim.SimVendor("reference") as vendor:
        for body in TESTSET[:80]:
            _, text, finish, usage, _ = completion(session, vendor, raw_body(body))
            _, streamed, streamed_finish, streamed_usage, pieces = completion(session, vendor, raw_body(body),
                                                                              stream=True)
            assert (streamed, streamed_finish, streamed_usage) == (text, finish, usage)
            split_inside += any(p.count("<|") != p.count("|>") for p in pieces)
            assert all(1 <= len(p) <= 12 for p in pieces[:-1]) and pieces[-1] == ""  # the finish chunk
        _, _, _, no_usage, _ = completion(session, vendor, raw_body(TESTSET[0]), stream=True, usage=False)
    assert split_inside > 20 and no_usage is None


def test_raw_answers_follow_the_tool_result_and_the_history_ids_in_the_prompt(session):
    """A prompt ending in a tool result gets text (the sim read the `## Return of` turn); a new
    call after earlier ones counts them in its id, as over chat."""
    with sim.SimVendor("reference") as vendor:
        history = [b for b in TESTSET if any(m.get("tool_calls") for m in b["messages"])]
        assert AFTER_TOOL and history
        for body in AFTER_TOOL:
            text = completion(session, vendor, raw_body(body))[1]
            assert BEGIN not in text
        ids = [call[0] for body in history for call in kimi_calls(completion(session, vendor, raw_body(body))[1])[1]]
    assert ids and not any(i.endswith(":0") for i in ids)


def test_raw_tricky_writes_what_k2vv_parser_gets_wrong_and_chats_honestly(session):
    notes, answered, dotted, k2vv_wrong = [], 0, 0, 0
    with sim.SimVendor("raw_tricky") as vendor:
        for body in DOTTED + TESTSET:
            response, calls, _, finish = chat(session, vendor, body)
            assert "x-sim-breakage" not in response.headers  # honest over chat: valid calls of declared tools
            assert {n for _, n, _ in calls} <= {t["function"]["name"] for t in body["tools"]}
            assert (finish == "tool_calls") == bool(calls)
            response, text, raw_finish, _, _ = completion(session, vendor, raw_body(body))
            note = response.headers.get("x-sim-raw", "")
            notes.append(note)
            answered += bool(calls)
            _, raw_calls, truncated = kimi_calls(text)
            if "cut_section" in note:  # the last call may be cut mid-arguments, never an earlier one
                assert raw_finish == "length" and truncated and not text.endswith(END)
                assert raw_calls == calls[:len(raw_calls)] and len(raw_calls) >= len(calls) - 1
            else:
                assert raw_finish in ("stop", "length") and raw_calls == calls and not truncated
            assert ("two_sections" in note) == (text.count(BEGIN) == 2) == (len(calls) > 1)
            if body in DOTTED and raw_calls:
                dotted += 1
                assert all(re.search(r"[-.]", name) for _, name, _ in raw_calls)
            k2vv_wrong += k2vv_style_calls(text) != [(name, args) for _, name, args in raw_calls]
    cut, split = sum("cut_section" in n for n in notes), sum("two_sections" in n for n in notes)
    assert 0.2 < cut / answered < 0.4 and split > 0.3 * answered
    assert dotted > 30  # the DOTTED cases: raw_tricky prefers tools named with `-` or `.`
    assert k2vv_wrong > 0.5 * answered  # K2VV's reader misses second sections, cut sections and such names


def test_raw_tricky_stream_carries_the_same_tricks(session):
    with sim.SimVendor("raw_tricky") as vendor:
        for body in DOTTED[:20]:
            plain = completion(session, vendor, raw_body(body))
            streamed = completion(session, vendor, raw_body(body), stream=True)
            assert plain[1:4] == streamed[1:4]
            assert plain[0].headers.get("x-sim-raw") == streamed[0].headers.get("x-sim-raw")


def _garbage(rng: random.Random) -> str:
    parts = [rng.choice(MARKERS + ("user", "tool_declare", "system", "## Return of x:0\n", "[{", '{"a":', " ", "\n"))
             for _ in range(rng.randint(0, 12))]
    return "".join(parts)


UNREADABLE = ["Tell me a joke.", "", "<|im_user|>user but no middle<|im_end|>", [1, 2, 3], ["a", "b"], {"x": 1},
              None, 42, "<|tool_calls_section_begin|>"]


@pytest.mark.parametrize("prompt", UNREADABLE, ids=[repr(p)[:30] for p in UNREADABLE])
def test_unreadable_prompt_gets_plain_text(session, prompt):
    with sim.SimVendor("reference") as vendor:
        for stream in (False, True):
            response, text, finish, _, _ = completion(session, vendor, {"model": "m", "prompt": prompt}, stream=stream)
            assert response.headers["x-sim-raw"] == "unreadable_prompt"
            assert text and BEGIN not in text and finish in ("stop", "length")


def test_broken_layouts_never_fail(session):
    """Half-rendered prompts (a tool declaration cut mid-JSON, turns out of order, markers
    anywhere) are answered, never a 500; without readable tools the answer is text."""
    rng = random.Random(7)
    prompts = [_garbage(rng) for _ in range(150)] + [
        '<|im_system|>tool_declare<|im_middle|>[{"type":"function","function":{"name":"f"',
        "<|im_system|>tool_declare<|im_middle|>not json<|im_end|><|im_user|>user<|im_middle|>hi<|im_end|>",
        "<|im_assistant|>assistant<|im_middle|><|tool_call_begin|>x<|tool_call_argument_begin|>{<|tool_call_end|>",
        kimi_prompt(TESTSET[1]["messages"], TESTSET[1]["tools"])[:-300],
        "<|im_system|>tool_declare<|im_middle|>" + "[" * 100000 + "<|im_end|>",
        "<|im_assistant|>assistant<|im_middle|><|tool_calls_section_begin|><|tool_call_begin|>functions.f:0"
        "<|tool_call_argument_begin|>" + "[" * 100000 + "]" * 100000 + "<|tool_call_end|><|im_end|>",
    ]
    with sim.SimVendor("sloppy") as vendor:
        for prompt in prompts:
            response = session.post(vendor.url + "/completions", json={"model": "m", "prompt": prompt}, timeout=10)
            assert response.status_code == 200, prompt
            if "tool_declare<|im_middle|>[" not in prompt:
                assert BEGIN not in response.json()["choices"][0]["text"]


def test_raw_max_tokens_cuts_the_text(session):
    with sim.SimVendor("reference") as vendor:
        body = next(b for b in TESTSET if chat(session, vendor, b)[1])
        _, text, finish, usage, _ = completion(session, vendor, raw_body(body, max_tokens=3))
    assert len(text) == 12 and finish == "length" and usage["completion_tokens"] == 3


def test_raw_prompt_from_older_kimi_templates_is_read_too(session):
    """The 0905 template's `# Tools` header, spaced JSON, a tool turn named after the function,
    newlines between turns; K2-Thinking's <think> in history."""
    body = AFTER_TOOL[0]
    tools = json.dumps(body["tools"])  # spaced
    compact = json.dumps(body["tools"], separators=(",", ":"))
    prompt = kimi_prompt(body["messages"], body["tools"]).replace(compact, "\n  # Tools\n  " + tools)
    prompt = prompt.replace("<|im_end|>", "<|im_end|>\n")
    prompt = prompt.replace("<|im_system|>tool<|im_middle|>", "<|im_system|>get_weather<|im_middle|>")
    prompt = prompt.replace(f"<|im_middle|>{BEGIN}", f"<|im_middle|><think>hm</think>{BEGIN}")
    assert prompt.count("<think>") == 1 and "# Tools" in prompt
    messages, tools_read = sim._kimi_messages(prompt)
    assert sim.answer_key({"messages": messages, "tools": tools_read}) == sim.answer_key(body)
    assert messages[-1]["name"] == "get_weather" and messages[-2]["reasoning_content"] == "hm"
    with sim.SimVendor("reference") as vendor:
        response, text, _, _, _ = completion(session, vendor, dict(raw_body(body), prompt=prompt))
        assert "x-sim-raw" not in response.headers and text == chat(session, vendor, body)[2]


# ---- B. the Responses API -------------------------------------------------------------------------

def test_reference_responses_calls_equal_chat_calls_for_every_testset_line(session):
    """A chat run and a responses run of the bundled test set must score identically."""
    with sim.SimVendor("reference") as vendor:
        for body in TESTSET:
            _, calls, content, finish = chat(session, vendor, body)
            response, answer, _ = respond(session, vendor, to_responses(body))
            assert [(n, a) for _, n, a in function_calls(answer)] == [(n, a) for _, n, a in calls]
            assert [i for i, _, _ in function_calls(answer)] == [i for i, _, _ in calls]  # call_id = the chat id
            texts = [p["text"] for i in answer["output"] if i["type"] == "message" for p in i["content"]]
            assert texts == ([content] if content else [])
            assert answer["status"] == ("incomplete" if finish == "length" else "completed")
            usage = answer["usage"]
            assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0


def test_responses_instructions_and_system_items_ask_the_same(session):
    with sim.SimVendor("reference") as vendor:
        for body in [b for b in TESTSET if b["messages"][0]["role"] == "system"][:40]:
            a = respond(session, vendor, to_responses(body))[1]
            b = respond(session, vendor, to_responses(body, instructions=True))[1]
            assert a["output"] == b["output"]


def test_responses_non_stream_shape(session):
    with sim.SimVendor("reference") as vendor:
        kinds = set()
        for body in TESTSET[:60]:
            response, answer, _ = respond(session, vendor, to_responses(body))
            assert response.headers["content-type"] == "application/json"
            assert answer["object"] == "response" and answer["id"].startswith("resp_")
            assert answer["model"] == "kimi-k2" and answer["error"] is None
            for item in answer["output"]:
                kinds.add(item["type"])
                if item["type"] == "message":
                    assert item["role"] == "assistant" and item["content"][0]["type"] == "output_text"
                else:
                    assert item["type"] == "function_call" and item["status"] == "completed"
                    assert item["call_id"].startswith(f"functions.{item['name']}:")
                    assert isinstance(json.loads(item["arguments"]), dict)
    assert kinds == {"message", "function_call"}


def test_responses_stream_is_the_official_event_sequence(session):
    with sim.SimVendor("reference") as vendor:
        for body in TESTSET[:60]:
            whole = respond(session, vendor, to_responses(body))[1]
            response, final, events = respond(session, vendor, to_responses(body), stream=True)
            assert response.headers["content-type"].startswith("text/event-stream")
            assert final == whole
            assert [e["sequence_number"] for e in events] == list(range(len(events)))
            assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
            assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
            last = "response.completed" if whole["status"] == "completed" else "response.incomplete"
            assert events[-1]["type"] == last
            rebuilt = {}
            for e in events:
                if e["type"] == "response.output_item.added":
                    rebuilt[e["output_index"]] = {"text": "", "arguments": ""}
                elif e["type"] == "response.output_text.delta":
                    rebuilt[e["output_index"]]["text"] += e["delta"]
                elif e["type"] == "response.function_call_arguments.delta":
                    rebuilt[e["output_index"]]["arguments"] += e["delta"]
                elif e["type"] == "response.function_call_arguments.done":
                    assert e["arguments"] == rebuilt[e["output_index"]]["arguments"]
                elif e["type"] == "response.output_item.done":
                    assert e["item"] == whole["output"][e["output_index"]]
            for index, item in enumerate(whole["output"]):
                part = item["content"][0]["text"] if item["type"] == "message" else item["arguments"]
                assert part == rebuilt[index]["text" if item["type"] == "message" else "arguments"]


def test_responses_tool_choice_and_history(session):
    body = next(b for b in TESTSET if len(b["tools"]) > 1 and b["messages"][-1]["role"] == "user")
    name = body["tools"][1]["function"]["name"]
    with sim.SimVendor("reference") as vendor:
        named = {"type": "function", "function": {"name": name}}
        forced = respond(session, vendor, to_responses(dict(body, tool_choice=named)))[1]
        none = respond(session, vendor, to_responses(dict(body, tool_choice="none")))[1]
        text_only = respond(session, vendor, {"model": "m", "input": "hello there"})[1]
        after_tool = [respond(session, vendor, to_responses(b))[1] for b in AFTER_TOOL]
    assert {n for _, n, _ in function_calls(forced)} == {name}
    assert function_calls(none) == [] and function_calls(text_only) == []
    assert after_tool and all(function_calls(a) == [] for a in after_tool)


def test_responses_reasoning_items_reach_the_personality(session):
    """reasoning_sensitive repeats the last call when the history carries reasoning: over
    responses, a reasoning item before the assistant's function_call is that reasoning."""
    body = next(b for b in TESTSET if any(m.get("reasoning_content") for m in b["messages"]))
    request = to_responses(body)
    at = next(i for i, item in enumerate(request["input"]) if item["type"] == "function_call")
    with_reasoning = dict(request, input=request["input"][:at] + [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think first"}]}] + request["input"][at:])
    with sim.SimVendor("reasoning_sensitive") as vendor:
        plain = respond(session, vendor, request)[1]
        thought = respond(session, vendor, with_reasoning)[1]
    last = request["input"][at]
    assert [(n, a) for _, n, a in function_calls(thought)] == [(last["name"], last["arguments"])]
    assert plain["output"] != thought["output"] or function_calls(plain)


# ---- C. both routes: bad bodies, faults, other personalities ---------------------------------------

@pytest.mark.parametrize("path", ["/v1/completions", "/completions", "/v1/responses", "/responses"])
def test_bad_bodies_get_a_400_like_chat(session, path):
    with sim.SimVendor("reference") as vendor:
        base = vendor.url.removesuffix("/v1")
        for data in (b"{not json", b"[1]", b'"text"'):
            response = session.post(base + path, data=data, timeout=10)
            assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
        missing = session.post(base + path, json={"model": "m", "messages": []}, timeout=10)
        assert missing.status_code == 400
        assert missing.json()["error"]["param"] == ("prompt" if "completions" in path else "input")
        assert session.post(base + "/chat/completions", data=b"[1]", timeout=10).status_code == 400


@pytest.mark.parametrize("route", ["completions", "responses"])
def test_scripted_faults_apply_to_every_route(session, route):
    body = raw_body(TESTSET[1]) if route == "completions" else to_responses(TESTSET[1])
    with sim.SimVendor("reference", script=lambda b, attempt: "cut_stream" if b.get("stream") else "429") as vendor:
        first = session.post(f"{vendor.url}/{route}", json=body, timeout=10)
        assert first.status_code == 429 and first.headers["Retry-After"] == "1"
        cut = session.post(f"{vendor.url}/{route}", json=dict(body, stream=True), timeout=10)
        assert cut.status_code == 200 and cut.headers["x-sim-fault"] == "cut_stream"
        assert "[DONE]" not in cut.text and "response.completed" not in cut.text
        assert vendor.received[0]["path"] == f"/v1/{route}"


def test_flaky_and_sloppy_act_the_same_over_every_route(session):
    """Personality decisions come from what is asked, not from the transport."""
    bodies = TESTSET[:80]
    with sim.SimVendor("sloppy") as vendor:
        spoiled = [(chat(session, vendor, b)[0].headers.get("x-sim-breakage"),
                    respond(session, vendor, to_responses(b))[0].headers.get("x-sim-breakage"),
                    completion(session, vendor, raw_body(b))[0].headers.get("x-sim-breakage")) for b in bodies]
    assert any(s[0] for s in spoiled) and all(s[0] == s[1] == s[2] for s in spoiled)
    with sim.SimVendor("flaky") as vendor:
        statuses = [(status(vendor.url + "/chat/completions", dict(b, stream=False)),
                     status(vendor.url + "/responses", to_responses(dict(b, stream=False))))
                    for b in bodies]
    assert any(c != 200 for c, _ in statuses) and all(c == r for c, r in statuses)


def status(url, body):
    """The status of one first attempt, or "reset" when the vendor hung up without one."""
    try:
        with requests.Session() as fresh:  # a reset must not spoil the shared keep-alive connection
            return fresh.post(url, json=body, timeout=10).status_code
    except requests.ConnectionError:
        return "reset"


def test_view_ignores_what_transports_lose():
    """The decisions' key: ids, reasoning, a tool result's name, null content and JSON spacing
    change nothing; roles, text and calls do."""
    body = next(b for b in TESTSET if any(m.get("tool_calls") for m in b["messages"]))
    lossy = json.loads(json.dumps(body))
    for m in lossy["messages"]:
        m.pop("reasoning_content", None)
        if m.get("tool_calls"):
            m["content"] = None
            for c in m["tool_calls"]:
                c["id"] = "call_" + c["id"].replace(".", "_")
                c["function"]["arguments"] = json.dumps(json.loads(c["function"]["arguments"]), indent=2)
        if m["role"] == "tool":
            m["name"], m["tool_call_id"] = "whatever", "call_x"
    assert sim.answer_key(lossy) == sim.answer_key(body)
    changed = json.loads(json.dumps(body))
    changed["messages"][-1]["content"] += " please"
    assert sim.answer_key(changed) != sim.answer_key(body)


def test_known_answers_are_found_over_every_route(session):
    """`answers` (the demo's expected calls, keyed by chat bodies) reach raw and responses requests."""
    body = next(b for b in TESTSET if b["messages"][-1]["role"] == "user" and len(b["tools"]) > 1)
    name = body["tools"][-1]["function"]["name"]
    expected = [{"name": name, "arguments": {}}]
    with sim.SimVendor("reference", answers={sim.answer_key(body): expected}) as vendor:
        assert [n for _, n, _ in chat(session, vendor, body)[1]] == [name]
        assert [n for _, n, _ in function_calls(respond(session, vendor, to_responses(body))[1])] == [name]
        assert [n for _, n, _ in kimi_calls(completion(session, vendor, raw_body(body))[1])[1]] == [name]


# ---- D. the tiny tokenizer renders what the sim reads --------------------------------------------

def test_tiny_tokenizer_files_are_small_and_carry_the_kimi_layout():
    config = json.loads((TOKENIZER / "tokenizer_config.json").read_text())
    tokenizer = json.loads((TOKENIZER / "tokenizer.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert all(m in config["chat_template"] for m in MARKERS + ("tool_declare", "## Return of"))
    assert tokenizer["model"]["type"] == "WordLevel"
    assert {t["content"] for t in tokenizer["added_tokens"]} >= set(MARKERS)
    assert sum(p.stat().st_size for p in TOKENIZER.iterdir()) < 8000


def test_tiny_tokenizer_renders_the_prompts_the_sim_reads():
    """Needs transformers (optional, DESIGN §1) and jinja2; skipped without them. Loads offline."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("jinja2")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(TOKENIZER))
    for body in TESTSET[:120] + DOTTED[:3]:
        rendered = tokenizer.apply_chat_template(body["messages"], tools=body.get("tools"), tokenize=False,
                                                 add_generation_prompt=True)
        assert rendered == kimi_prompt(body["messages"], body.get("tools"))
    ids = tokenizer("<|im_user|>user<|im_middle|>the<|im_end|>")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["<|im_user|>", "user", "<|im_middle|>", "the", "<|im_end|>"]
