"""Secrets against a vendor that echoes them, and in the resume line: no byte of the API key in the cache,
the results, the summary or anything printed (what the vendor echoed is stored with the key as ***),
and no user:password of a --base-url in the line printed on Ctrl-C."""
import json
import shlex
import signal

import pytest

import k2vv
from conftest import FAKE_KEY

from .hostile import (HostileVendor, case_line, completion, describe, finish_k2vv, http_response, read_results,
                      start_k2vv, stream_chunks, write_jsonl)
from conftest import wait_until

SCHEMA_N = {"type": "object", "properties": {"n": {"type": "integer"}}}
NO_BASELINE = k2vv.EXIT_INCONCLUSIVE
PASSWORD = "pa55word"


def leaks(data: bytes, secret: str = FAKE_KEY) -> bool:
    """The key, or a recognisable piece of it, in `data`."""
    return secret.encode() in data or secret[3:20].encode() in data


def echo(kind):
    """A vendor that puts the request's Authorization header into x-request-id and into what it says."""
    def handler(request, conn):
        auth = request.headers.get("authorization", "")
        headers = [("x-request-id", auth), ("server", f"echo ({auth})")]
        if kind == "rejected":
            error = {"error": {"message": f"bad schema; you sent {auth}", "type": "invalid_request_error"}}
            conn.send(http_response(400, json.dumps(error).encode(), "application/json", headers))
        elif request.stream:
            conn.send_sse(stream_chunks("f", '{"n": 1}', content=f"your key: {auth}"), headers=headers)
        else:
            conn.send_json(completion("f", '{"n": 1}', content=f"your key: {auth}"), headers=headers)
    return handler


@pytest.mark.parametrize("kind", ["json", "sse", "rejected"])
def test_a_key_the_vendor_echoes_is_never_stored_or_printed(tmp_path, monkeypatch, capfd, kind):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    cases = write_jsonl(tmp_path / "cases.jsonl", [case_line("echo", SCHEMA_N, stream=kind == "sse")])
    with HostileVendor(echo(kind)) as v:
        args = [str(cases), "--base-url", v.url, "--model", "m", "--cache", str(tmp_path / "cache"),
                "--out", str(tmp_path / "out")]
        assert k2vv.main(["run", *args, "--retries", "0", "--timeout", "5", "--quiet"]) == NO_BASELINE
        assert [r.headers.get("authorization") for r in v.received] == [f"Bearer {FAKE_KEY}"]
        assert k2vv.main(["score", *args[:-1], str(tmp_path / "scored"), "--json"]) == NO_BASELINE
    printed = capfd.readouterr()
    assert not leaks((printed.out + printed.err).encode())
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "cases.jsonl"]
    assert any(p.name == "cache.db" for p in written)
    for path in written:  # every file of the cache (cache.db, its WAL, value files), results, summaries
        assert not leaks(path.read_bytes()), path
    [line] = read_results(tmp_path / "out")
    if kind == "rejected":
        assert line["response_class"] == "rejected" and "***" in line["response"]["error_message"]
    else:
        assert line["response_class"] == "valid"
        assert line["response"]["choices"][0]["message"]["content"] == "your key: Bearer ***"


# ---- the resume line ------------------------------------------------------------------------------

def test_the_resume_line_drops_the_password_of_the_base_url():
    line = k2vv.resume_command(["run", "--base-url", f"http://user:{PASSWORD}@127.0.0.1:9/v1", "--model", "m"], None)
    assert PASSWORD not in line
    words = shlex.split(line)
    assert words[:2] == ["k2vv", "run"]
    url = words[words.index("--base-url") + 1]
    assert url.startswith("http://") and url.endswith("127.0.0.1:9/v1"), url
    assert "--model m" in line


def test_the_resume_line_drops_the_key_and_nothing_else():
    argv = ["run", "--base-url", "http://h/v1", "--model", "m", "--api-key", "k"]
    assert k2vv.resume_command(argv, "k") == "k2vv run --base-url http://h/v1 --model m"


@pytest.mark.parametrize("argv", [
    ["run", "--base-url", "http://h/v1", "--model", "kimi-k2", "--api-key", "k"],
    ["run", "--base-url", "http://h/v1", "--api-key=k", "--model", "kimi-k2"],
    ["run", "--api-key", "k", "--base-url", "http://h/v1", "--model", "kimi-k2"],
], ids=["key_last", "key_with_equals", "key_first"])
def test_an_argument_that_contains_the_key_as_a_substring_is_kept(argv):
    """The key `k` is a substring of kimi-k2: the model must still be in the line (masked or not)."""
    words = shlex.split(k2vv.resume_command(argv, "k"))
    assert words[:5] == ["k2vv", "run", "--base-url", "http://h/v1", "--model"] and len(words) == 6, words


def test_a_real_ctrl_c_prints_a_resume_line_without_the_password(tmp_path):
    cases = write_jsonl(tmp_path / "cases.jsonl", [case_line(f"case {i}", SCHEMA_N) for i in range(20)])

    def slow(request, conn):
        conn.sleep(0.5)
        conn.send_json(completion("f", '{"n": 1}'))
    with HostileVendor(slow) as v:
        url = f"http://user:{PASSWORD}@127.0.0.1:{v.port}/v1"
        proc = start_k2vv(["run", str(cases), "--base-url", url, "--model", "m", "--cache", str(tmp_path / "cache"),
                           "--out", str(tmp_path / "out"), "--concurrency", "1", "--retries", "0", "--timeout", "5",
                           "--quiet"], tmp_path)
        try:
            wait_until(lambda: v.count >= 1, "the first request received", timeout=30, proc=proc)
            proc.send_signal(signal.SIGINT)
            result = finish_k2vv(proc, timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert result.returncode == k2vv.EXIT_INTERRUPTED, describe(result)
    assert "Traceback" not in result.stderr
    resume = [line for line in result.stderr.splitlines() if "k2vv run" in line]
    assert resume and "--base-url" in resume[0], result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.name.startswith("child-"):
            assert PASSWORD.encode() not in path.read_bytes(), path
