"""Test sets whose tool schemas are hostile: a pattern that backtracks for ever, a $ref loop, a multipleOf
no float can judge, an enum of the wrong type, a required property that is also forbidden. Contract:
no provider is blamed for what k2vv cannot judge (the call is `unscored`, never `schema_mismatch`), every
command stays bounded in time and answers Ctrl-C, and `lint` names the line and the tool."""
import json
import signal
import time

import pytest

import k2vv

from .hostile import (HostileVendor, completion, describe, read_results, read_summary, run_k2vv, start_k2vv,
                      tool, write_jsonl, finish_k2vv)
from conftest import wait_until

TOOL = "hostile_tool"
CATASTROPHIC = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
CATASTROPHIC_ARGS = {"s": "a" * 40 + "!"}  # 2^40 ways for (a+)+ to fail before it gives up
NO_BASELINE = k2vv.EXIT_INCONCLUSIVE


def line(parameters, text="call the hostile tool"):
    return {"messages": [{"role": "user", "content": text}], "tools": [tool(TOOL, parameters)]}


def calls_back(arguments, delay: float = 0.0, answered: list | None = None):
    """A vendor handler that answers every request with one call of TOOL with these arguments
    (after `delay` seconds), appending to `answered` once each answer is written."""
    text = json.dumps(arguments)

    def handler(request, conn):
        if delay:
            conn.sleep(delay)
        conn.send_json(completion(TOOL, text))
        if answered is not None:
            answered.append(request.number)
    return handler


def job_flags(url, tmp_path, cases, out):
    return [str(cases), "--base-url", url, "--model", "m", "--cache", str(tmp_path / "cache"),
            "--out", str(tmp_path / out)]


def run_flags(url, tmp_path, cases, out="out", *extra):
    return ["run", *job_flags(url, tmp_path, cases, out), "--retries", "0", "--timeout", "5", "--concurrency", "1",
            "--quiet", *extra]


def lint_problems(output: str, path, line_number: int = 1) -> list:
    """The lines of `lint` output that name this file, this line and the tool."""
    return [text for text in output.splitlines()
            if path.name in text and f":{line_number}:" in text and TOOL in text]


# ---- a catastrophic pattern ---------------------------------------------------------------------------

def test_a_catastrophic_pattern_is_unscored_by_run_and_score_within_seconds(tmp_path):
    cases = write_jsonl(tmp_path / "cases.jsonl", [line(CATASTROPHIC)])
    with HostileVendor(calls_back(CATASTROPHIC_ARGS)) as v:
        ran = run_k2vv(run_flags(v.url, tmp_path, cases), tmp_path, timeout=60)
        url = v.url
    assert not ran.timed_out and ran.elapsed < 20, describe(ran)
    assert ran.returncode == NO_BASELINE, describe(ran)
    [result] = read_results(tmp_path / "out")
    [call] = result["calls"]
    assert call["class"] == "unscored" and "pattern" in call.get("message", ""), call
    scored = run_k2vv(["score", *job_flags(url, tmp_path, cases, "scored")], tmp_path, timeout=60)
    assert not scored.timed_out and scored.elapsed < 20, describe(scored)
    assert scored.returncode == NO_BASELINE, describe(scored)
    summary = read_summary(tmp_path / "scored")
    assert summary["classes"]["calls"]["unscored"] == 1 and summary["classes"]["calls"]["schema_mismatch"] == 0


def test_lint_names_the_line_and_tool_of_a_catastrophic_pattern(tmp_path):
    cases = write_jsonl(tmp_path / "cases.jsonl", [line(CATASTROPHIC)])
    linted = run_k2vv(["lint", str(cases)], tmp_path, timeout=60)
    assert linted.returncode == k2vv.EXIT_FAIL, describe(linted)
    problems = [p for p in lint_problems(linted.stdout, cases) if "pattern" in p]
    assert problems, linted.stdout


def test_ctrl_c_stops_a_run_busy_with_catastrophic_patterns(tmp_path):
    """Ctrl-C once the first answers are in: exit 130 within 5 s, whatever the scoring is doing."""
    cases = write_jsonl(tmp_path / "cases.jsonl", [line(CATASTROPHIC, f"case {i}") for i in range(200)])
    answered = []
    with HostileVendor(calls_back(CATASTROPHIC_ARGS, delay=0.1, answered=answered)) as v:
        proc = start_k2vv(run_flags(v.url, tmp_path, cases, "out", "--concurrency", "2"), tmp_path)
        try:
            wait_until(lambda: answered, "an answer sent", timeout=30, proc=proc)
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            result = finish_k2vv(proc, timeout=5, started=sent)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert not result.timed_out, describe(result)
    assert result.returncode == k2vv.EXIT_INTERRUPTED, describe(result)
    assert "Traceback" not in result.stderr


# ---- schemas no float, loop or contradiction lets k2vv judge ---------------------------------------

REF_LOOP = {"definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"$ref": "#/definitions/a"}},
            "type": "object", "properties": {"x": {"$ref": "#/definitions/a"}}}
TINY_MULTIPLE = {"type": "object", "properties": {"x": {"type": "number", "multipleOf": 1e-300}}}
ENUM_OF_WRONG_TYPE = {"type": "object", "properties": {"u": {"type": "integer", "enum": ["1", "2"]}}}
REQUIRED_BUT_FORBIDDEN = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"],
                          "additionalProperties": False}

HOSTILE = [  # (id, parameters, arguments, classes allowed, word in the message, lint must name it)
    ("ref_loop", REF_LOOP, {"x": 1}, {"unscored"}, "$ref", True),
    # 1e300 is a multiple of 1e-300 in exact decimal arithmetic: a judge that computes exactly may say valid
    ("multiple_of_1e-300", TINY_MULTIPLE, {"x": 1e300}, {"unscored", "valid"}, None, False),
    ("enum_none_of_the_declared_type", ENUM_OF_WRONG_TYPE, {"u": 1}, {"unscored"}, None, True),
    ("required_property_forbidden", REQUIRED_BUT_FORBIDDEN, {"a": "x"}, {"unscored"}, None, True),
]


@pytest.mark.parametrize("parameters,arguments,allowed,word",
                         [pytest.param(*row[1:5], id=row[0]) for row in HOSTILE])
def test_a_schema_k2vv_cannot_judge_never_blames_the_provider(tmp_path, parameters, arguments, allowed, word):
    cases = write_jsonl(tmp_path / "cases.jsonl", [line(parameters)])
    with HostileVendor(calls_back(arguments)) as v:
        code = k2vv.main(run_flags(v.url, tmp_path, cases))
        url = v.url
    [result] = read_results(tmp_path / "out")
    [call] = result["calls"]
    assert call["class"] in allowed, call
    if word and call["class"] == "unscored":
        assert word in call.get("message", ""), call
    summary = read_summary(tmp_path / "out")
    assert summary["verdict"]["status"] != "fail" and code == NO_BASELINE
    assert k2vv.main(["score", *job_flags(url, tmp_path, cases, "scored")]) == code
    assert read_summary(tmp_path / "scored")["classes"]["calls"] == summary["classes"]["calls"]


@pytest.mark.parametrize("parameters", [pytest.param(row[1], id=row[0]) for row in HOSTILE if row[5]])
def test_lint_names_the_line_and_tool_of_a_schema_k2vv_cannot_judge(tmp_path, parameters):
    """In a process of its own: k2vv memoises compiled schemas per process, and what an earlier
    test compiled must not decide what lint says."""
    fine = line({"type": "object", "properties": {"q": {"type": "string"}}}, "a fine line")
    cases = write_jsonl(tmp_path / "cases.jsonl", [fine, line(parameters)])
    linted = run_k2vv(["lint", str(cases)], tmp_path, timeout=60)
    assert linted.returncode == k2vv.EXIT_FAIL, describe(linted) + linted.stdout
    assert lint_problems(linted.stdout, cases, line_number=2), linted.stdout
