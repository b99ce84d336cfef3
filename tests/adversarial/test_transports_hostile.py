"""Adversarial tests of the other transports (`run --api responses`, `run --use_raw_completions
[--tokenizer-model DIR]`, DESIGN §12) against a hostile vendor on loopback and hostile user inputs.
Every test here FAILED on d8fe538 when written; each names the promise it holds k2vv to."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import k2vv
from conftest import FAKE_KEY

from .hostile import HostileVendor, case_line, read_results, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "tests" / "data" / "tiny-tokenizer"
SCHEMA_N = {"type": "object", "properties": {"n": {"type": "integer"}}}
SB, SE = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
CB, AB, CE = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"


def kimi_call(name="f", arguments='{"n": 1}', index=0) -> str:
    return f"{CB}functions.{name}:{index}{AB}{arguments}{CE}"


def run(tmp_path: Path, vendor: HostileVendor, *flags, lines=None, out="out", timeout="5") -> int:
    cases = write_jsonl(tmp_path / "cases.jsonl", lines or [dict(case_line("call f", SCHEMA_N), prompt="p")])
    return k2vv.main(["run", str(cases), "--base-url", vendor.url, "--model", "m", "--cache", str(tmp_path / "cache"),
                      "--out", str(tmp_path / out), "--retries", "0", "--timeout", timeout, "--quiet", *flags])


def leaked_files(root: Path, secret: str = FAKE_KEY) -> list:
    """Files under `root` (but the test set) holding the key, or the key but its first character."""
    return [p for p in root.rglob("*") if p.is_file() and p.name != "cases.jsonl"
            and (secret.encode() in p.read_bytes() or secret[1:].encode() in p.read_bytes())]


# ---- 2. a chat template that renders something other than text --------------------------------------

CUSTOM_TOKENIZER = '''
from transformers import PreTrainedTokenizerFast


class T(PreTrainedTokenizerFast):
    """Renders the check prompt as text, then, for a line that asks, something that is not text."""
    def apply_chat_template(self, conversation, *args, **kwargs):
        content = conversation[-1]["content"] if conversation else ""
        if "LIST" in content:
            return [1, 2, 3]
        if "NONE" in content:
            return None
        if "BYTES" in content:
            return b"bytes"
        if "OBJECT" in content:
            return {"a": object()}
        if "EXIT" in content:
            raise SystemExit(3)
        return "prompt: " + str(content)
'''


@pytest.fixture
def custom_tokenizer(tmp_path) -> Path:
    """A tokenizer directory whose remote code (trust_remote_code, as K2VV loads Kimi's) renders
    the prompt of some lines as something other than a string."""
    pytest.importorskip("transformers")
    where = tmp_path / "custom-tokenizer"
    where.mkdir()
    shutil.copy(TOKENIZER / "tokenizer.json", where)
    config = json.loads((TOKENIZER / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="T", auto_map={"AutoTokenizer": [None, "tok.T"]})
    (where / "tokenizer_config.json").write_text(json.dumps(config))
    (where / "tok.py").write_text(CUSTOM_TOKENIZER)
    return where


def raw_answer(request, conn):
    conn.send_json({"id": "c", "object": "text_completion",
                    "choices": [{"index": 0, "text": SB + kimi_call() + SE, "finish_reason": "stop"}]})


@pytest.mark.parametrize("word", ["LIST", "NONE", "BYTES", "OBJECT"])
def test_a_template_that_renders_no_text_is_an_input_error(tmp_path, capfd, custom_tokenizer, word):
    """LIST and NONE: the list (token ids, to /v1/completions) or null is sent as the prompt and the
    answer scored `valid`, exit 3; BYTES and OBJECT: exit 70 'internal error' (TypeError: not JSON
    serializable). Expected: the line named, one line, exit 2, nothing sent."""
    with HostileVendor(raw_answer) as vendor:
        code = run(tmp_path, vendor, "--use_raw_completions", "--tokenizer-model", str(custom_tokenizer),
                   lines=[case_line(f"call f {word}", SCHEMA_N)])
        sent = vendor.count
    err = capfd.readouterr().err
    assert (code, sent) == (k2vv.EXIT_USAGE, 0), err[-500:]
    assert "cases.jsonl:1" in err and "internal error" not in err


def test_a_template_that_exits_is_not_a_silent_inconclusive(tmp_path, custom_tokenizer):
    """Remote code that raises SystemExit(3) while rendering a line makes k2vv exit 3 ('inconclusive')
    with nothing on stderr and nothing written; expected: one line naming the line, exit 2."""
    cases = write_jsonl(tmp_path / "cases.jsonl", [case_line("call f EXIT", SCHEMA_N)])
    with HostileVendor(raw_answer) as vendor:
        proc = subprocess.run([sys.executable, str(ROOT / "k2vv.py"), "run", str(cases), "--base-url", vendor.url,
                               "--model", "m", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
                               "--quiet", "--use_raw_completions", "--tokenizer-model", str(custom_tokenizer)],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "OPENAI_API_KEY": FAKE_KEY})
    assert proc.returncode == k2vv.EXIT_USAGE and "cases.jsonl:1" in proc.stderr, (proc.returncode, proc.stderr[-500:])


# ---- 3. a line's `prompt` of the wrong type is not silently ignored ------------------------------------

@pytest.mark.parametrize("prompt", [5, ["a"], {"a": 1}])
def test_a_prompt_that_is_not_a_string_is_named_not_ignored(tmp_path, capfd, prompt):
    """With --tokenizer-model, a line whose `prompt` is a number, list or object is silently rendered
    from its messages instead (the user's prompt is dropped, exit 3); expected: the line and the field
    named (`prompt` must be a string), exit 2, nothing sent."""
    pytest.importorskip("transformers")
    with HostileVendor(raw_answer) as vendor:
        code = run(tmp_path, vendor, "--use_raw_completions", "--tokenizer-model", str(TOKENIZER),
                   lines=[dict(case_line("call f", SCHEMA_N), prompt=prompt)])
        sent = vendor.count
    err = capfd.readouterr().err
    assert (code, sent) == (k2vv.EXIT_USAGE, 0), err[-500:]
    assert "prompt" in err and "string" in err


# ---- 4. secrets: a key the vendor echoes JSON-escaped inside a stream ------------------------------------

def escaped(payload: dict) -> str:
    """The JSON text of an SSE payload with the key's `s` written as \\u0073: the same JSON string."""
    return json.dumps(payload).replace("sk-", "\\u0073k-")


def echo_escaped(api):
    def handler(request, conn):
        secret = request.headers.get("authorization", "")
        arguments = json.dumps({"n": 1, "echo": secret})
        if api == "completions":
            events = [{"id": "c", "choices": [{"index": 0, "text": SB + kimi_call("f", arguments) + SE,
                                               "finish_reason": "stop"}]}]
            done = True
        else:
            item = {"type": "function_call", "id": "fc1", "call_id": "call_1", "name": "f", "arguments": ""}
            events = [{"type": "response.output_item.added", "output_index": 0, "item": item},
                      {"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": "fc1",
                       "delta": arguments},
                      {"type": "response.completed", "response": {"id": "r", "status": "completed"}}]
            done = False
        conn.send_sse([escaped(e) for e in events], done=done)
    return handler


@pytest.mark.parametrize("api", ["completions", "responses"])
def test_a_key_echoed_json_escaped_in_a_stream_is_never_stored(tmp_path, monkeypatch, capfd, api):
    """redact_bytes masks the key's bytes; a stream's payloads are cached as the vendor's text, so a
    key written with one JSON escape (`\\u0073k-…`, the same string once parsed) is stored whole
    but its first character in the cache (cache.db / its WAL). The non-stream path parses and re-dumps,
    so it is masked there; expected the same for streams (chat streams have the same hole)."""
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    flags = ["--use_raw_completions"] if api == "completions" else ["--api", "responses"]
    with HostileVendor(echo_escaped(api)) as vendor:
        code = run(tmp_path, vendor, *flags, lines=[dict(case_line("call f", SCHEMA_N, stream=True), prompt="p")])
    assert code in (0, 1, 3)
    assert [line["response_class"] for line in read_results(tmp_path / "out")] == ["valid"]
    printed = capfd.readouterr()
    assert FAKE_KEY[1:] not in printed.out + printed.err
    assert leaked_files(tmp_path) == []


# ---- 5. a Responses stream that reuses an output_index loses a call silently ----------------------------

def test_a_reused_output_index_does_not_drop_a_call_the_final_response_lists(tmp_path):
    """Two function_call items announced with the same output_index (and different item ids): the
    second is folded into the first slot, and when response.completed lists both, the second is
    still dropped (its item id was mapped to slot 0). The non-stream reading of the same final
    response has 2 calls; the stream reading has 1 and no finding. Expected: both calls (or a
    finding saying the stream was inconsistent)."""
    def item(n, arguments=""):
        return {"type": "function_call", "id": f"fc{n}", "call_id": f"call_{n}", "name": "f", "arguments": arguments}
    final = {"id": "r", "status": "completed", "output": [item(1, '{"n": 1}'), item(2, '{"n": 2}')],
             "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}
    events = [{"type": "response.output_item.added", "output_index": 0, "item": item(1)},
              {"type": "response.output_item.added", "output_index": 0, "item": item(2)},
              {"type": "response.completed", "response": final}]

    def handler(request, conn):
        if request.stream:
            conn.send_sse(events, done=False)
        else:
            conn.send_json(final)
    with HostileVendor(handler) as vendor:
        run(tmp_path, vendor, "--api", "responses", "--stream-mode", "both", lines=[case_line("call f", SCHEMA_N)])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["modes"]["divergent_count"] == 0, summary["modes"]["divergent"]


# ---- 6. k2vv's own responses / completions run directory as a --baseline --------------------------------

@pytest.mark.parametrize("first, second", [(["--api", "responses"], []),
                                           (["--use_raw_completions"], ["--api", "responses"])],
                         ids=["responses-as-baseline-of-chat", "completions-as-baseline-of-responses"])
def test_a_transport_run_directory_is_usable_as_a_baseline(tmp_path, capfd, first, second):
    """(A chat run directory as the baseline of a responses or completions run works, and so does one of
    the same transport.) A results.jsonl written by a responses or completions run, used as the baseline
    of a run of another transport, never matches: `--baseline RUN_DIR` fails with
    'no line matches a case … N different requests', exit 2, and only after every request of the
    second run was sent (resolve_baseline promises to check before anything is sent). Expected: the
    baseline matches (same test set), or is refused before sending."""
    def handler(request, conn):
        if request.path.endswith("/responses"):
            conn.send_json({"id": "r", "status": "completed", "output": [
                {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"n": 1}'}]})
        elif request.path.endswith("/completions") and not request.path.endswith("/chat/completions"):
            raw_answer(request, conn)
        else:
            conn.send_json({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "tool_calls",
                            "message": {"role": "assistant", "content": "", "tool_calls": [{"id": "functions.f:0",
                                        "type": "function", "function": {"name": "f", "arguments": '{"n": 1}'}}]}}]})
    lines = [dict(case_line(f"call f {n}", SCHEMA_N), prompt=f"p{n}") for n in range(3)]
    with HostileVendor(handler) as vendor:
        assert run(tmp_path, vendor, *first, lines=lines, out="base") in (0, 1, 3)
        before = vendor.count
        code = run(tmp_path, vendor, *second, "--baseline", str(tmp_path / "base"), lines=lines, out="again",
                   timeout="5")
        sent = vendor.count - before
    err = capfd.readouterr().err
    assert code in (0, 1, 3) or (code == k2vv.EXIT_USAGE and sent == 0), (code, sent, err[-400:])
    if code != k2vv.EXIT_USAGE:
        baseline = json.loads((tmp_path / "again" / "summary.json").read_text())["baseline"]
        assert baseline["matched"] == len(lines), baseline


# ---- 7. results.jsonl is JSON ------------------------------------------------------------------------------

@pytest.mark.parametrize("api", ["responses", "completions"])
def test_results_lines_are_strict_json_when_a_vendor_sends_1e999(tmp_path, api):
    """Python reads 1e999 as inf; the usage is then written back as `Infinity` into results.jsonl
    (and the cache), which no strict JSON reader (jq, JSON.parse, schemas/results) accepts. Same on chat."""
    def handler(request, conn):
        if api == "responses":
            body = b'{"id":"r","status":"completed","output":[{"type":"function_call","call_id":"c","name":"f",' \
                   b'"arguments":"{}"}],"usage":{"input_tokens":1e999,"output_tokens":1,"total_tokens":1e999}}'
        else:
            body = json.dumps({"id": "c", "choices": [{"index": 0, "text": SB + kimi_call() + SE, "finish_reason": "stop"}],
                               "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 0}}
                              ).replace('"prompt_tokens": 0', '"prompt_tokens": 1e999').encode()
        conn.send_json(body)
    flags = ["--api", "responses"] if api == "responses" else ["--use_raw_completions"]
    with HostileVendor(handler) as vendor:
        assert run(tmp_path, vendor, *flags) in (0, 1, 3)

    def strict(constant):
        raise ValueError(f"not JSON: {constant}")
    for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=strict)
