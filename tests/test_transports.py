"""The other transports through `k2vv run` (DESIGN §12): K2VV's raw completions mode with a prompt
rendered by a (tiny, local) chat template or taken from the line, and the Responses API; each against
a simulated vendor over loopback HTTP, scored by the same judge as chat."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import k2vv
import k2vv_sim
from conftest import FAKE_KEY

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "tests" / "data" / "tiny-tokenizer"
LIMIT = "80"
SCORES = ("success_count", "failure_count", "finish_tool_calls", "finish_stop", "successful_tool_call_count",
          "schema_validation_error_count", "schema_accuracy", "classes")


def run(tmp_path: Path, vendor, name: str, *flags: str, dataset: str | None = None) -> tuple[int, dict]:
    out = tmp_path / name
    args = ["run", *([dataset] if dataset else []), "--base-url", vendor.url, "--model", "kimi-k2", "--limit", LIMIT,
            "--cache", str(tmp_path / "cache"), "--out", str(out), "--quiet", "--api-key", FAKE_KEY, *flags]
    code = k2vv.main(args)
    return code, json.loads((out / "summary.json").read_text())


def test_a_responses_run_scores_as_the_chat_run_of_the_same_honest_vendor(tmp_path, capsys):
    with k2vv_sim.SimVendor("reference") as vendor:
        chat_code, chat = run(tmp_path, vendor, "chat")
        responses_code, responses = run(tmp_path, vendor, "responses", "--api", "responses")
    assert chat["finish_tool_calls"] > 0 and chat["success_count"] == int(LIMIT)
    assert {k: responses[k] for k in SCORES} == {k: chat[k] for k in SCORES}
    with k2vv.open_cache(tmp_path / "cache", readonly=True) as cache:  # one cache, keyed apart by endpoint
        assert cache.endpoints() == {(vendor.url + "/chat/completions", "kimi-k2"): int(LIMIT),
                                     (vendor.url + "/responses", "kimi-k2"): int(LIMIT)}
    assert responses_code == chat_code and responses["k2vv"]["settings"]["api"] == "responses"
    capsys.readouterr()
    assert k2vv.main(["diff", str(tmp_path / "chat"), str(tmp_path / "responses")]) == 0  # no case differs


def test_k2vv_raw_completions_command_line_runs_unchanged(tmp_path):
    """K2VV's own flags, as its README gives them, with a tokenizer directory on disk."""
    with k2vv_sim.SimVendor("reference") as vendor:
        _, chat = run(tmp_path, vendor, "chat")
        out = tmp_path / "raw"
        code = k2vv.main(["run", str(ROOT / "fixtures" / "testset.jsonl"), "--model", "kimi-k2", "--base-url", vendor.url,
                          "--api-key", FAKE_KEY, "--concurrency", "5", "--output", str(out / "results.jsonl"),
                          "--summary", str(out / "summary.json"), "--use_raw_completions", "--tokenizer-model",
                          str(TOKENIZER), "--limit", LIMIT, "--cache", str(tmp_path / "cache"), "--quiet"])
    raw = json.loads((out / "summary.json").read_text())
    assert code == 3 and raw["k2vv"]["settings"]["api"] == "completions"  # inconclusive: no baseline given
    assert raw["success_count"] == int(LIMIT)
    assert raw["finish_tool_calls"] == chat["finish_tool_calls"] > 0
    assert raw["successful_tool_call_count"] == chat["successful_tool_call_count"]
    sent = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(rec["status"] == "success" for rec in sent)


def test_raw_answers_k2vv_parser_misreads_are_read_right(tmp_path):
    """raw_tricky's raw answers: names with `-` and `.`, calls over two sections, a section cut before
    its end marker. Every complete call is judged (none lost); a cut section is `truncated`."""
    with k2vv_sim.SimVendor("raw_tricky") as vendor:
        _, chat = run(tmp_path, vendor, "chat")
        _, raw = run(tmp_path, vendor, "raw", "--use_raw_completions", "--tokenizer-model", str(TOKENIZER))
        _, raw_stream = run(tmp_path, vendor, "raw-stream", "--use_raw_completions", "--tokenizer-model",
                            str(TOKENIZER), "--stream-mode", "stream")
    for summary in (raw, raw_stream):
        cut = summary["classes"]["responses"]["truncated"]
        assert cut > 0 and summary["findings"].get("tool_section_cut") == cut
        # what was not cut is answered and judged exactly as over chat: no call lost to a name or a section
        assert summary["classes"]["responses"]["valid"] + cut >= chat["classes"]["responses"]["valid"]
        assert summary["classes"]["calls"].get("unknown_tool", 0) == chat["classes"]["calls"].get("unknown_tool", 0)


def test_a_line_brings_its_own_prompt(tmp_path):
    line = {"messages": [{"role": "user", "content": "hi"}], "prompt": "<|im_user|>user<|im_middle|>hi<|im_end|>"
            "<|im_assistant|>assistant<|im_middle|>"}
    data = tmp_path / "set.jsonl"
    data.write_text(json.dumps(line) + "\n")
    with k2vv_sim.SimVendor("reference") as vendor:
        code, summary = run(tmp_path, vendor, "own", "--use_raw_completions", dataset=str(data))
    sent = json.loads((tmp_path / "own" / "results.jsonl").read_text())
    assert summary["success_count"] == 1 and sent["status"] == "success" and code == 3


def test_without_transformers_the_flag_says_what_to_install(tmp_path):
    """An interpreter where transformers cannot be imported (as in the pyz)."""
    code = ("import sys; sys.modules['transformers'] = None; import k2vv; sys.exit(k2vv.main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "run", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                           "--use_raw_completions", "--tokenizer-model", str(TOKENIZER), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "pip install 'k2vv[raw]'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("where, said", [("nowhere", "cannot load it"), ("fixtures", "cannot load it")])
def test_a_tokenizer_that_does_not_load_is_one_line(tmp_path, where, said, capsys):
    path = tmp_path / "nowhere" if where == "nowhere" else ROOT / where
    code = k2vv.main(["run", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--use_raw_completions",
                      "--tokenizer-model", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1
