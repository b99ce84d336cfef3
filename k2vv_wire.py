"""k2vv_wire: raw Kimi completions and the Responses API, translated into the chat shape (DESIGN §12).

k2vv scores one shape: a `chat.completion` body (parse_completion) or a chat stream's `data:`
payloads (reassemble_stream). `/v1/completions` with Kimi K2 special tokens (K2VV's
--use_raw_completions) and `/v1/responses` are translated into it here, so one scorer judges all
three transports and their runs can be diffed call by call. Pure (no k2vv import, no disk, network
or clock), and vendor input never raises: what cannot be translated is handed on for the chat
parser to classify (no choices: no answer; not JSON: a bad chunk; never ended: truncated).

Where the raw parser differs from K2VV's `extract_tool_call_info` on purpose: every section is read,
not only the first; a name may hold `-`, `.`, `:` or any letter; non-stream answers are parsed too;
a section or call without its end marker sets `cut` instead of silently losing every call.
"""
from __future__ import annotations

import json

__all__ = ["kimi_tool_calls", "raw_request", "raw_as_chat", "raw_stream_as_chat",
           "responses_request", "responses_as_chat", "responses_stream_as_chat"]

# ---- raw /v1/completions: Kimi K2 special tokens -----------------------------------------------

# The markers of Kimi K2's tool-call section (its chat template and K2VV's tool_calls_eval.py).
SECTION_BEGIN = "<|tool_calls_section_begin|>"
SECTION_END = "<|tool_calls_section_end|>"
CALL_BEGIN = "<|tool_call_begin|>"
ARG_BEGIN = "<|tool_call_argument_begin|>"
CALL_END = "<|tool_call_end|>"
# Some K2 checkpoints write the section markers in the singular; vLLM's kimi_k2 parser reads both.
_SINGULAR = {"<|tool_call_section_begin|>": SECTION_BEGIN, "<|tool_call_section_end|>": SECTION_END}
# Chat-only fields: the rendered prompt carries messages and tools. K2VV drops only messages and
# tools and sends the rest (tool_choice included) to /v1/completions, where it means nothing.
_NOT_FOR_COMPLETIONS = ("messages", "tools", "tool_choice", "parallel_tool_calls", "functions",
                        "function_call", "chat_template_kwargs", "max_completion_tokens")


def kimi_tool_calls(text: str) -> tuple[str, list[dict], bool]:
    """(content outside every section, [{id, name, arguments}] of every section in order, cut).
    `cut`: a section or call lost its end marker; calls finished before it are kept, a call without
    `<|tool_call_end|>` is not (its arguments may be half written). A call without
    `<|tool_call_argument_begin|>` has arguments "" (invalid JSON: the provider's fault)."""
    if not isinstance(text, str):
        return "", [], False
    for singular, plural in _SINGULAR.items():
        text = text.replace(singular, plural)
    content, calls, cut, pos = [], [], False, 0
    while True:
        start = text.find(SECTION_BEGIN, pos)
        if start < 0:
            content.append(text[pos:])
            break
        content.append(text[pos:start])
        start += len(SECTION_BEGIN)
        end = text.find(SECTION_END, start)
        found, broken = _section_calls(text[start:] if end < 0 else text[start:end])
        calls.extend(found)  # not calls + found: 100,000 sections must stay linear
        cut = cut or broken or end < 0
        if end < 0:
            break
        pos = end + len(SECTION_END)
    return "".join(content), calls, cut


def _section_calls(section: str) -> tuple[list[dict], bool]:
    """(finished calls, whether a call was begun again before its end marker or never ended)."""
    calls, cut, pos = [], False, 0
    while (begin := section.find(CALL_BEGIN, pos)) >= 0:
        begin += len(CALL_BEGIN)
        end, again = section.find(CALL_END, begin), section.find(CALL_BEGIN, begin)
        if end < 0 or 0 <= again < end:
            cut = True
            if end < 0:
                break
            pos = again
            continue
        head, sep, arguments = section[begin:end].partition(ARG_BEGIN)
        call_id = head.strip()  # K2VV's regex allows whitespace around the id and the arguments
        calls.append({"id": call_id, "name": _name_of(call_id), "arguments": arguments.strip() if sep else ""})
        pos = end + len(CALL_END)
    return calls, cut


def _name_of(call_id: str) -> str:
    """`functions.NAME:IDX` -> NAME: the prefix goes once, the index only when it is digits, so
    `functions.a.b-c:0` is `a.b-c` (K2VV: `a`; with `-`: dropped) and `ping:0` is `ping`."""
    name = call_id[len("functions."):] if call_id.startswith("functions.") else call_id
    head, sep, index = name.rpartition(":")
    return head if sep and index.isascii() and index.isdigit() else name


def _split_think(content: str) -> tuple[str | None, str]:
    """(reasoning, content): K2-Thinking's raw text opens with `<think>`… `</think>` (or only
    closes it, when the prompt opened it); left in content it would read as text beside calls."""
    stripped = content.lstrip()
    if stripped.startswith("<think>"):
        reasoning, sep, rest = stripped[len("<think>"):].partition("</think>")
        return reasoning, rest
    if "</think>" in content and "<think>" not in content:
        reasoning, _, rest = content.partition("</think>")
        return reasoning, rest
    return None, content


def _raw_message(text) -> tuple[dict, bool]:
    content, calls, cut = kimi_tool_calls(text if isinstance(text, str) else "")
    reasoning, content = _split_think(content)
    message = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [_chat_call(c["id"], c["name"], c["arguments"]) for c in calls]
    return message, cut


def _raw_finish(finish, message: dict, cut: bool):
    """The vendor's finish_reason becomes `tool_calls` when calls were read and none was cut
    (K2VV's rule: /v1/completions knows no such reason). A missing one stays missing, so a stream
    that never finished stays truncated; `error` stays an error."""
    if message.get("tool_calls") and not cut and isinstance(finish, str) and finish and finish != "error":
        return "tool_calls"
    return finish


def _chat_call(call_id, name, arguments) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def raw_request(body: dict, prompt: str) -> dict:
    """The /v1/completions body: the prepared chat body's fields but the chat-only ones (sampling,
    `stream`, `stream_options` and vendor extras stay, as in K2VV), and the rendered prompt."""
    out = {k: v for k, v in body.items() if k not in _NOT_FOR_COMPLETIONS}
    if "max_tokens" not in out and body.get("max_completion_tokens") is not None:
        out["max_tokens"] = body["max_completion_tokens"]
    out["prompt"] = prompt
    return out


def raw_as_chat(body) -> tuple[object, bool]:
    """(chat.completion, cut) of a non-stream `text_completion` body; a body that is no answer
    (no choices, an `error`) comes back unchanged for parse_completion to refuse."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict) or "error" in body:
        return body, False
    message, cut = _raw_message(choices[0].get("text"))
    finish = _raw_finish(choices[0].get("finish_reason"), message, cut)
    choice = {"index": 0, "message": message, "finish_reason": finish}
    if "usage" in choices[0]:
        choice["usage"] = choices[0]["usage"]
    return dict(body, object="chat.completion", choices=[choice]), cut


def raw_stream_as_chat(payloads: list) -> tuple[list, bool]:
    """(chat chunk payloads, cut) of a streamed text completion. The text is joined first (a
    special token may be split across chunks), then every chunk keeps its place, id, usage,
    finish_reason and `error`, and the first answering one carries the whole translated delta.
    `[DONE]` and payloads that are not JSON objects pass unchanged (reassemble_stream's truncation
    and bad_chunk rules see what the vendor sent)."""
    chunks = [_load(p) for p in payloads]
    text = "".join(c["text"] for chunk in chunks for c in _first_choices(chunk) if isinstance(c.get("text"), str))
    message, cut = _raw_message(text)
    delta = {k: v for k, v in message.items() if k != "tool_calls"}
    if "tool_calls" in message:
        delta["tool_calls"] = [dict(call, index=i) for i, call in enumerate(message["tool_calls"])]
    out, placed = [], False
    for payload, chunk in zip(payloads, chunks):
        if not isinstance(chunk, dict):
            out.append(payload)
            continue
        new = dict(chunk, object="chat.completion.chunk")
        if isinstance(chunk.get("choices"), list):  # else left as sent: reassemble_stream's malformed_field
            new["choices"] = []
            for c in _first_choices(chunk):
                choice = {"index": 0, "delta": {} if placed else delta,
                          "finish_reason": _raw_finish(c.get("finish_reason"), message, cut)}
                if "usage" in c:
                    choice["usage"] = c["usage"]
                new["choices"].append(choice)
                placed = True
        out.append(_dump(new))
    return out, cut


def _first_choices(chunk) -> list:
    """The choices of index 0 (or None): the only ones reassemble_stream reads."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    return [c for c in choices if isinstance(c, dict) and c.get("index", 0) in (0, None)] \
        if isinstance(choices, list) else []


def _load(payload):
    try:
        return json.loads(payload)
    except (TypeError, ValueError, RecursionError):
        return None


def _dump(obj) -> str:
    """JSON text of a chunk; one nested too deep to write again stays a bad chunk (not JSON)."""
    try:
        return json.dumps(obj, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return "<chunk too deep to translate>"


# ---- /v1/responses ------------------------------------------------------------------------------

# Chat fields the Responses API spells otherwise (mapped below) or lacks (`n`, `logprobs`,
# `stream_options`: its stream always ends with the usage). Other fields pass unchanged.
_NOT_FOR_RESPONSES = ("messages", "tools", "tool_choice", "max_tokens", "max_completion_tokens", "stream_options",
                      "response_format", "reasoning_effort", "n", "logprobs", "functions", "function_call")
# incomplete_details.reason -> the chat finish_reason a chat server gives for the same stop.
_INCOMPLETE_FINISH = {"max_output_tokens": "length", "content_filter": "content_filter"}
_USAGE = {"input_tokens": "prompt_tokens", "output_tokens": "completion_tokens", "total_tokens": "total_tokens"}


def responses_request(body: dict) -> dict:
    """The /v1/responses body for a prepared chat body: messages become `input` items, function
    tools are flattened, and a tool's `strict` is sent as false when the chat tool left it out,
    because Responses defaults to strict (it would rewrite optional fields as required)."""
    out = {k: v for k, v in body.items() if k not in _NOT_FOR_RESPONSES}
    out["input"] = [item for n, message in enumerate(body.get("messages") or []) if isinstance(message, dict)
                    for item in _input_items(message, n)]
    if isinstance(body.get("tools"), list):
        out["tools"] = [_flat_tool(tool) for tool in body["tools"]]
    if "tool_choice" in body:
        choice = body["tool_choice"]
        fn = choice.get("function") if isinstance(choice, dict) else None
        out["tool_choice"] = {"type": "function", "name": fn.get("name")} if isinstance(fn, dict) else choice
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None:
        out["max_output_tokens"] = limit
    if "reasoning_effort" in body:
        out.setdefault("reasoning", {"effort": body["reasoning_effort"]})
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        schema = fmt.get("json_schema") if fmt.get("type") == "json_schema" else None
        out["text"] = {"format": dict(schema, type="json_schema") if isinstance(schema, dict) else fmt}
    return out


def _input_items(message: dict, n: int) -> list:
    """One chat message as Responses input items. An assistant turn gives its reasoning (a
    `reasoning` item, as vLLM reads it back; OpenAI refuses reasoning it did not issue, so strip it
    first for OpenAI), its text, then one `function_call` per tool call; a `tool` turn gives a
    `function_call_output`."""
    role, content = message.get("role"), message.get("content")
    if role == "tool":
        return [{"type": "function_call_output", "call_id": message.get("tool_call_id"), "output": _text_of(content)}]
    if role != "assistant":
        return [{"role": role, "content": _parts(content, "input_text")}]
    items = []
    reasoning = message.get("reasoning_content", message.get("reasoning"))
    if isinstance(reasoning, str) and reasoning:
        items.append({"type": "reasoning", "id": f"rs_{n}", "summary": [],
                      "content": [{"type": "reasoning_text", "text": reasoning}]})
    raw_calls = message.get("tool_calls")  # a line may hold anything here: chat sends it as it is
    calls = [c for c in raw_calls if isinstance(c, dict)] if isinstance(raw_calls, list) else []
    if content or not calls:
        items.append({"role": "assistant", "content": _parts(content, "output_text")})
    for call in calls:
        fn = call.get("function") if isinstance(call.get("function"), dict) else {}
        arguments = fn.get("arguments")  # Responses wants text; a test set may hold an object
        items.append({"type": "function_call", "call_id": call.get("id"), "name": fn.get("name"),
                      "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)})
    return items


def _parts(content, text_type: str):
    """Chat content as Responses content: text parts become `text_type` parts, image_url parts
    input_image parts; a string and any other part pass as they are."""
    if isinstance(content, list):
        return [_part(p, text_type) for p in content]
    return "" if content is None else content


def _part(part, text_type: str):
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return {"type": text_type, "text": part.get("text")}
    if kind != "image_url":
        return part
    image = part.get("image_url")
    url, detail = (image.get("url"), image.get("detail")) if isinstance(image, dict) else (image, None)
    return {"type": "input_image", "image_url": url, "detail": detail or "auto"}


def _text_of(content) -> str:
    """A tool result as the string `output` every Responses server takes (text parts joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "" if content is None else json.dumps(content)


def _flat_tool(tool):
    fn = tool.get("function") if isinstance(tool, dict) and tool.get("type", "function") == "function" else None
    if not isinstance(fn, dict):
        return tool  # a builtin tool, or one the vendor may refuse as it is
    flat = {"type": "function", "name": fn.get("name")}
    flat.update({k: fn[k] for k in ("description", "parameters") if k in fn})
    flat["strict"] = fn.get("strict", False)
    return flat


def _responses_finish(status, details, called: bool) -> str:
    """`length` (or the chat reason for the same stop) when the response is incomplete, before
    `tool_calls`: a chat server cut by max_tokens mid-call says `length` too."""
    if status == "incomplete":
        reason = details.get("reason") if isinstance(details, dict) else None
        return _INCOMPLETE_FINISH.get(reason, "length") if isinstance(reason, str) else "length"
    return "tool_calls" if called else "stop"


def _chat_usage(usage):
    return {chat: usage[key] for key, chat in _USAGE.items() if key in usage} if isinstance(usage, dict) else None


def _meta(response: dict) -> dict:
    """The fields k2vv reads besides the answer: id, model, created, a gateway's `provider`."""
    meta = {k: response[k] for k in ("id", "model", "provider") if k in response}
    meta["created"] = response.get("created_at", response.get("created"))
    return meta


def _output_parts(output) -> tuple[list, list, list]:
    """(output texts, reasoning texts, (call_id, name, arguments) of each function_call)."""
    texts, reasoning, calls = [], [], []
    for item in output if isinstance(output, list) else ():
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "function_call":
            calls.append((item.get("call_id"), item.get("name"), item.get("arguments")))
        elif kind in ("message", "reasoning"):
            parts = [*_list(item.get("summary")), *_list(item.get("content"))]
            found = [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)
                     and (kind == "reasoning" or p.get("type") == "output_text")]
            (texts if kind == "message" else reasoning).extend(found)
    return texts, reasoning, calls


def _list(value) -> list:
    return value if isinstance(value, list) else []


def responses_as_chat(body) -> object:
    """The chat.completion of a non-stream response object: output_text -> content, function_call
    items -> tool_calls (id = call_id, in order), reasoning summary and text -> reasoning_content.
    A failed (or cancelled, queued…) response or one with an `error` becomes a body with `error`,
    which k2vv counts as no answer; a body without an `output` list loses any `choices` it had."""
    if not isinstance(body, dict):
        return body
    status = body.get("status")
    if body.get("error") or status not in (None, "completed", "incomplete"):
        return dict(_meta(body), error=body.get("error") or {"message": f"the response is {status!r}"})
    if not isinstance(body.get("output"), list):
        return {k: v for k, v in body.items() if k != "choices"}
    texts, reasoning, calls = _output_parts(body["output"])
    message = {"role": "assistant", "content": "".join(texts) if texts else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [_chat_call(*call) for call in calls]
    finish = _responses_finish(status, body.get("incomplete_details"), bool(calls))
    return dict(_meta(body), object="chat.completion", usage=_chat_usage(body.get("usage")),
                choices=[{"index": 0, "message": message, "finish_reason": finish}])


def responses_stream_as_chat(payloads: list) -> list:
    """Chat chunk payloads of a Responses event stream. Each function_call item is a tool call whose
    index is its place among them; its id and name go out as soon as they are known, its arguments
    as their deltas come. Arguments with no delta are taken from `.done`, the item's `output_item.done`
    or the final response; when deltas came, they win (as in a chat client) even if `.done` differs.
    Only `response.completed`/`response.incomplete` end the stream (a final finish_reason + usage
    chunk, then [DONE]); `response.failed` and `error` events become `error` chunks; a stream cut
    before its end stays truncated. Payloads that are not JSON objects pass unchanged (bad chunks);
    a vendor's own `[DONE]` is dropped (it is not how a Responses stream ends); events after the
    end are ignored."""
    out, meta, slots, keys = [], {}, [], {}
    texted = False

    def emit(delta=None, finish=None, **top):
        chunk = dict(meta, object="chat.completion.chunk", **top)
        if delta is not None:
            chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
        out.append(_dump(chunk))

    def slot(event, item):
        """The tool call an event is about: found by item id when it names one (two items that share
        an output_index are two calls), else by output_index; else a new one."""
        usable = lambda v: isinstance(v, (int, str)) and not isinstance(v, bool)
        ids = [("i", v) for v in (event.get("item_id"), item.get("id")) if usable(v)]
        names = ids + ([("o", event["output_index"])] if usable(event.get("output_index")) else [])
        found = next((keys[k] for k in (ids or names) if k in keys), None)
        if found is None:
            found = {"index": len(slots), "id": False, "name": False, "arguments": False}
            slots.append(found)
        keys.update((k, found) for k in names)
        return found

    def send(found, call_id=None, name=None, arguments=None):
        frag = {"index": found["index"]}
        for key, value in (("id", call_id), ("name", name), ("arguments", arguments)):
            if isinstance(value, str) and value and not (key != "arguments" and found[key]):
                found[key] = True
                (frag if key == "id" else frag.setdefault("function", {}))[key] = value
        if len(frag) > 1:
            emit({"tool_calls": [dict(frag, type="function") if "id" in frag else frag]})

    for payload in payloads:
        event = _load(payload)
        if not isinstance(event, dict):
            if not (isinstance(payload, str) and payload.strip() == "[DONE]"):
                out.append(payload)
            continue
        kind, response = event.get("type"), event.get("response")
        response = response if isinstance(response, dict) else {}
        item = event.get("item") if isinstance(event.get("item"), dict) else {}
        meta.update({k: v for k, v in _meta(response).items() if v is not None})
        if isinstance(event.get("provider"), str):
            meta["provider"] = event["provider"]
        if kind == "error" or event.get("error"):
            error = event.get("error") or {k: event[k] for k in ("code", "message", "param") if k in event}
            emit(error=error or {"message": "error event"})
        elif kind in ("response.output_item.added", "response.output_item.done") and item.get("type") == "function_call":
            found = slot(event, item)
            done = kind.endswith(".done") and not found["arguments"]
            send(found, item.get("call_id"), item.get("name"), item.get("arguments") if done else None)
        elif kind == "response.function_call_arguments.delta":
            found = slot(event, item)
            if isinstance(event.get("delta"), str) and event["delta"]:
                send(found, arguments=event["delta"])
        elif kind == "response.function_call_arguments.done":
            found = slot(event, item)
            send(found, name=event.get("name"), arguments=None if found["arguments"] else event.get("arguments"))
        elif kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
            texted = True
            emit({"content": event["delta"]})
        elif kind in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta") \
                and isinstance(event.get("delta"), str):
            emit({"reasoning_content": event["delta"]})
        elif kind == "response.failed":
            emit(error=response.get("error") or {"message": "response.failed"})
            break
        elif kind in ("response.completed", "response.incomplete"):
            for position, it in enumerate(_list(response.get("output"))):  # what the events left out
                if isinstance(it, dict) and it.get("type") == "function_call":
                    found = slot({"output_index": position}, it)
                    send(found, it.get("call_id"), it.get("name"), None if found["arguments"] else it.get("arguments"))
            texts = _output_parts(response.get("output"))[0]
            if texts and not texted:
                emit({"content": "".join(texts)})
            status = "incomplete" if kind == "response.incomplete" else "completed"
            finish = _responses_finish(status, response.get("incomplete_details"), bool(slots))
            emit({}, finish=finish, usage=_chat_usage(response.get("usage")))
            out.append("[DONE]")
            break
    return out

