"""Argument accuracy against `expected` (DESIGN §10): k2vv_judge.expected_verdict must give, case for case,
the verdict of BFCL v4's own checker. tests/data/arguments-cases.json holds hand-written cases whose
`matched` and `error` were produced by running bfcl-eval 2026.3.23 itself (see the file's "about")."""
import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import k2vv
import k2vv_judge
from conftest import ROOT

CASES_FILE = ROOT / "tests" / "data" / "arguments-cases.json"
CASES = json.loads(CASES_FILE.read_text(encoding="utf-8"))["cases"]

# Every error type BFCL's Python path can return for a single-turn case: ast_checker.py's own
# strings, plus the eval runner's decoder and (ir)relevance ones. Left out because no Python input
# reaches them: simple_function_checker:unclear (only ever on a valid result),
# list_dict_checker:unclear (the type check fails first when no value is accepted),
# type_error:java / type_error:js (other languages), parallel_function_checker_enforce_order:*
# (never called by ast_checker).
BFCL_ERROR_TYPES = {
    "ast_decoder:decoder_failed",
    "ast_decoder:decoder_wrong_output_format",
    "simple_function_checker:wrong_count",
    "simple_function_checker:wrong_func_name",
    "simple_function_checker:missing_required",
    "simple_function_checker:unexpected_param",
    "simple_function_checker:missing_optional",
    "multiple_function_checker:wrong_count",
    "parallel_function_checker_no_order:wrong_count",
    "parallel_function_checker_no_order:cannot_find_match",
    "type_error:simple",
    "type_error:nested",
    "value_error:string",
    "value_error:list/tuple",
    "value_error:dict_key",
    "value_error:dict_value",
    "value_error:list_dict_count",
    "value_error:others",
    "dict_checker:unclear",
    "irrelevance_error:decoder_success",
    "relevance_error:decoder_failed",
}


def _expected_verdict():
    fn = getattr(k2vv, "expected_verdict", None)
    if fn is None:
        pytest.fail("k2vv_judge.expected_verdict(expected, calls, tools, category) -> (matched, error) "
                    "is not implemented yet (DESIGN §10)")
    return fn


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_verdict_equals_bfcl(case):
    expected_verdict = _expected_verdict()
    args = (case["expected"], case["calls"], case["tools"], case["category"])
    before = copy.deepcopy(args)
    got = expected_verdict(*args)
    assert tuple(got) == (case["matched"], case["error"]), case.get("note", "")
    assert args == before, "expected_verdict must not change its inputs"


def test_cases_are_well_formed():
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique (they are the test ids)"
    assert len(CASES) >= 70
    for c in CASES:
        assert set(c) <= {"name", "expected", "tools", "category", "calls", "matched", "error", "note"}, c["name"]
        assert c["matched"] is (c["error"] is None), c["name"]
        assert c["error"] is None or c["error"] in BFCL_ERROR_TYPES, (c["name"], c["error"])


def test_every_bfcl_error_type_is_covered():
    seen = {c["error"] for c in CASES if c["error"] is not None}
    assert BFCL_ERROR_TYPES - seen == set()


# ---- the same verdicts through `k2vv run`: answers on the wire, streamed and not -------------------

def answer_line(case: dict) -> dict:
    """A test-set line for a case: its tools in order, its expected calls and category; the user
    message names the case, so the loopback vendor knows which calls to answer with."""
    line = {"id": case["name"], "messages": [{"role": "user", "content": case["name"]}],
            "tools": [{"type": "function", "function": {"name": n, "parameters": p}} for n, p in case["tools"].items()],
            "expected": case["expected"]}
    if case["category"] is not None:
        line["k2vv"] = {"category": case["category"]}
    return line


def wire_calls(case: dict) -> list:
    """The case's calls as a vendor sends them: arguments as JSON text (not JSON at all where the
    case stands for arguments json.loads rejects)."""
    return [{"id": f"functions.{c['name']}:{i}", "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c["arguments"]) if "arguments" in c
                          else '{"broken": '}} for i, c in enumerate(case["calls"])]


class CaseVendor(ThreadingHTTPServer):
    daemon_threads = True


class CaseHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        case = BY_NAME[body["messages"][-1]["content"]]
        calls = wire_calls(case)
        finish = "tool_calls" if calls else "stop"
        message = {"role": "assistant", "content": "" if calls else "No tool fits.", **({"tool_calls": calls} if calls else {})}
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if body.get("stream"):
            chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": message["content"]}}]}]
            chunks += [{"choices": [{"index": 0, "delta": {"tool_calls": [dict(c, index=i)]}}]} for i, c in enumerate(calls)]
            chunks += [{"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}, {"choices": [], "usage": usage}]
            data = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
            kind = "text/event-stream"
        else:
            data = json.dumps({"id": "x", "object": "chat.completion", "choices": [
                {"index": 0, "message": message, "finish_reason": finish}], "usage": usage}).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


BY_NAME = {c["name"]: c for c in CASES}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_verdicts_hold_through_run_streamed_and_not(tmp_path, stream):
    lines = [dict(answer_line(c), stream=stream) for c in CASES]
    testset = tmp_path / "cases.jsonl"
    testset.write_text("".join(json.dumps(l) + "\n" for l in lines))
    server = CaseVendor(("127.0.0.1", 0), CaseHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        k2vv.main(["run", str(testset), "--base-url", f"http://127.0.0.1:{server.server_address[1]}/v1",
                   "--model", "m", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--quiet"])
    finally:
        server.shutdown()
        server.server_close()
    got = {r["case_id"]: (r["expected_match"], r["expected_error"])
           for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    wrong = {c["name"]: (got.get(c["name"]), (c["matched"], c["error"])) for c in CASES
             if got.get(c["name"]) != (c["matched"], c["error"])}
    assert wrong == {}
