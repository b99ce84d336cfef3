"""The upstream K2VV way of scoring, re-implemented over the same inputs as `k2vv score`.

    .venv/bin/python bench/upstream_score.py TESTSET CACHE_DIR BASE_URL MODEL

What K2VV's tool_calls_eval.py (MoonshotAI/K2-Vendor-Verifier) does per answer, minus its
network and logging: read the test set (json.loads per line, `_input` -> `system`, set `model`),
take each stored answer, reassemble a stream naively (content concatenated, tool calls by index,
name overwritten, arguments concatenated, last finish_reason, default "stop"), then for each tool
call of a `tool_calls` answer run `validate_tool_call`: find the tool's `parameters`, json.loads
string arguments, `jsonschema.validate(instance, schema)` (which picks a validator class, checks
the schema against its meta-schema and builds a validator on every call), any exception = invalid.
Finally K2VV's compute_summary. Prints the summary as JSON on stdout. One liberty: a streamed
`tool_calls` finish with no calls leaves K2VV's `tool_calls` None and `all(... for tc in None)`
raises, dropping that result; here it counts like the non-stream case (`all([])`: valid).

To find an answer in k2vv's cache it needs k2vv's key (sha256 of the canonical JSON of URL, the
prepared body, public headers and sample), computed here as k2vv does; the cache rows are read in
one SELECT (values under diskcache's file threshold are stored inline, mode 1).
"""
import hashlib
import json
import os
import sqlite3
import sys

from jsonschema import ValidationError, validate

K2VV_ONLY_KEYS = ("id", "expected", "k2vv")


def k2vv_key(line: dict, url: str, model: str) -> str:
    body = {k: v for k, v in line.items() if k not in K2VV_ONLY_KEYS}
    body["messages"] = [dict(m, role="system") if m.get("role") == "_input" else m for m in body["messages"]]
    body["model"] = model
    if body.get("stream"):
        body["stream_options"] = dict(body.get("stream_options") or {}, include_usage=True)
    ident = {"url": url.rstrip("/") + "/chat/completions", "body": body, "headers": {}, "sample": 0}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


def read_rows(cache_dir: str) -> dict:
    db = sqlite3.connect(f"file:{os.path.join(cache_dir, 'cache.db')}?mode=ro", uri=True)
    rows = {}
    for key, mode, filename, value in db.execute("SELECT key, mode, filename, value FROM Cache"):
        if mode == 2:
            with open(os.path.join(cache_dir, filename), "rb") as fh:
                value = fh.read()
        rows[key] = value
    return rows


def reassemble(sse_lines: list) -> dict:
    """K2VV's _handle_stream_request, over stored payloads instead of SDK events."""
    content, tool_calls, finish, usage, rid, created = [], {}, None, None, None, None
    for payload in sse_lines:
        if payload == "[DONE]":
            continue
        event = json.loads(payload)
        rid = event.get("id") or rid
        created = event.get("created") or created
        if not event.get("choices"):
            continue
        choice = event["choices"][0]
        delta = choice.get("delta") or {}
        if delta.get("content"):
            content.append(delta["content"])
        for tc in delta.get("tool_calls") or ():
            idx = tc.get("index") if tc.get("index") is not None else 0
            slot = tool_calls.setdefault(idx, {"id": tc.get("id"), "type": tc.get("type"),
                                               "function": {"name": "", "arguments": ""}})
            fn = tc.get("function") or {}
            if fn.get("name"):
                slot["function"]["name"] = fn["name"]
            if fn.get("arguments"):
                slot["function"]["arguments"] += fn["arguments"]
        finish = choice.get("finish_reason") or finish
        usage = choice.get("usage") or usage
    message = {"role": "assistant", "content": "".join(content),
               "tool_calls": list(tool_calls.values()) if tool_calls else None}
    return {"id": rid, "object": "chat.completion", "created": created,
            "choices": [{"index": 0, "message": message, "finish_reason": finish or "stop"}], "usage": usage}


def validate_tool_call(tool_call: dict, tools: list) -> bool:
    try:
        name = tool_call["function"]["name"]
        schema = next((t["function"]["parameters"] for t in tools if t["function"]["name"] == name), None)
        if not schema:
            return False
        args = tool_call["function"]["arguments"]
        if isinstance(args, str):
            args = json.loads(args)
        validate(instance=args, schema=schema)
        return True
    except (json.JSONDecodeError, ValidationError):
        return False
    except Exception:  # noqa: BLE001 - K2VV: "Unexpected validation error" -> invalid
        return False


def main(testset: str, cache_dir: str, url: str, model: str) -> dict:
    rows = read_rows(cache_dir)
    results = []
    with open(testset, encoding="utf-8") as fh:
        for line_num, text in enumerate(fh, 1):
            request = json.loads(text)
            raw = rows.get(k2vv_key(request, url, model))
            if raw is None:
                results.append({"status": "failed", "finish_reason": None, "tool_calls_valid": None})
                continue
            exchange = json.loads(raw)
            response = reassemble(exchange["sse_lines"]) if "sse_lines" in exchange else exchange["body"]
            choice = response["choices"][0] if response.get("choices") else {}
            finish_reason, valid = choice.get("finish_reason"), None
            if finish_reason == "tool_calls":
                tools = request.get("tools", [])
                calls = choice.get("message", {}).get("tool_calls", []) or []
                valid = all(validate_tool_call(tc, tools) for tc in calls)
            results.append({"status": "success", "finish_reason": finish_reason, "tool_calls_valid": valid})
    summary = {"model": model, "success_count": 0, "failure_count": 0, "finish_stop": 0, "finish_tool_calls": 0,
               "finish_others": 0, "finish_others_detail": {}, "schema_validation_error_count": 0,
               "successful_tool_call_count": 0}
    for r in results:
        summary["success_count" if r["status"] == "success" else "failure_count"] += 1
        if r["finish_reason"] == "stop":
            summary["finish_stop"] += 1
        elif r["finish_reason"] == "tool_calls":
            summary["finish_tool_calls"] += 1
            summary["successful_tool_call_count" if r["tool_calls_valid"] else "schema_validation_error_count"] += 1
        elif r["finish_reason"]:
            summary["finish_others"] += 1
            detail = summary["finish_others_detail"]
            detail[r["finish_reason"]] = detail.get(r["finish_reason"], 0) + 1
    return summary


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])))
