"""`run` against vendors that misbehave on purpose: answers that never end, trickle, lie about their
size or nest 100,000 deep; bytes no JSON parser likes; and the transient faults k2vv already survives.

Contract under test: --timeout T bounds the whole answer of each attempt (headers, body, stream,
keep-alive comments), one answer never holds more than --max-answer-bytes (default 16 MiB) in memory,
no byte a vendor sends makes k2vv crash (an internal error is exit 70 with one line and a crash file),
and what is not an answer is never cached. Runs that could hang are child processes with a deadline."""
import json
import resource
import time
from dataclasses import dataclass
from email.utils import formatdate

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

import k2vv
import k2vv_report
import k2vv_sim
from conftest import FAKE_KEY

from .hostile import (HostileVendor, case_line, completion, describe, gzipped, http_head, http_response,
                      read_results, read_summary, run_k2vv, sse_body, sse_event, stream_chunks, write_jsonl)

SCHEMA_N = {"type": "object", "properties": {"n": {"type": "integer"}}}
HUGE_INT_ARGS = '{"n": 1' + "2" * 5000 + "}"  # a 5,001-digit integer: past Python's int-string limit
DEEP = 100_000
NO_BASELINE = k2vv.EXIT_INCONCLUSIVE  # a run without --baseline is at best inconclusive
WALL = 8.0  # seconds a --timeout 2 run with --retries 0 may take, process start and fold included
CHILD_DEADLINE = 60.0  # a child still running by then is killed: the test fails instead of hanging
ENDLESS_CAP = 256 << 20  # bytes of chunks an endless vendor sends before it only pings (protects the box)


def make_cases(tmp_path, *, stream=False, parameters=SCHEMA_N, lines=1, name="cases.jsonl"):
    return write_jsonl(tmp_path / name, [case_line(f"case {i}", parameters, stream=stream) for i in range(lines)])


def run_args(v, tmp_path, cases, *extra, out="out", cache="cache"):
    return ["run", str(cases), "--base-url", v.url, "--model", "m", "--cache", str(tmp_path / cache),
            "--out", str(tmp_path / out), "--concurrency", "1", "--quiet", *extra]


def score_args(url, tmp_path, cases, *extra, out="scored", cache="cache"):
    return ["score", str(cases), "--base-url", url, "--model", "m", "--cache", str(tmp_path / cache),
            "--out", str(tmp_path / out), *extra]


def only_line(tmp_path, out="out") -> dict:
    lines = read_results(tmp_path / out)
    assert len(lines) == 1, lines
    return lines[0]


def answer(request, conn, arguments='{"n": 1}'):
    """A valid answer with one call of `f`, streamed when the request asked for a stream."""
    if request.stream:
        conn.send_sse(stream_chunks("f", arguments), framing="chunked")
    else:
        conn.send_json(completion("f", arguments))


# ---- A. every answer is bounded in time and in memory -------------------------------------------------

def endless_stream(framing):
    """Valid `data:` chunks as fast as the socket takes them, never [DONE] (past ENDLESS_CAP bytes,
    a keep-alive comment every 50 ms instead, so that no bug can fill the machine's memory: still no end)."""
    chunk = sse_event({"id": "chatcmpl-endless", "object": "chat.completion.chunk", "created": 1,
                       "model": "m", "choices": [{"index": 0, "delta": {"content": "lorem ipsum " * 8},
                                                  "finish_reason": None}]})
    block = chunk * 64

    def handler(request, conn):
        conn.start_stream(framing)
        while conn.sent < ENDLESS_CAP:
            conn.stream_write(block, framing)
        while True:
            conn.stream_write(b": ping\n\n", framing)
            conn.sleep(0.05)
    return handler


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_an_endless_stream_is_cut_at_max_answer_bytes(tmp_path, framing):
    cases = make_cases(tmp_path, stream=True)
    with HostileVendor(endless_stream(framing)) as v:
        result = run_k2vv(run_args(v, tmp_path, cases, "--retries", "0", "--timeout", "2",
                                   "--max-answer-bytes", "65536"), tmp_path, CHILD_DEADLINE)
    assert result.returncode == NO_BASELINE, describe(result)
    assert "Traceback" not in result.stderr
    assert result.elapsed < WALL, describe(result)
    line = only_line(tmp_path)
    assert (line["response_class"], line["error_class"]) == ("failed", "too_large")


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_an_endless_stream_holds_at_most_the_default_cap_in_memory(tmp_path, framing):
    """Default cap (16 MiB) and --timeout 2: whichever comes first ends the attempt; the child's
    peak RSS stays under 100 MB however fast the vendor writes."""
    cases = make_cases(tmp_path, stream=True)
    with HostileVendor(endless_stream(framing)) as v:
        result = run_k2vv(run_args(v, tmp_path, cases, "--retries", "0", "--timeout", "2"), tmp_path,
                          CHILD_DEADLINE, limits={resource.RLIMIT_AS: 4 << 30}, measure_rss=True)
    assert result.maxrss_kib < 100 * 1024, describe(result)
    assert result.returncode == NO_BASELINE, describe(result)
    assert "Traceback" not in result.stderr
    assert result.elapsed < WALL, describe(result)
    line = only_line(tmp_path)
    assert line["response_class"] == "failed" and line["error_class"] in ("too_large", "timeout"), line["error_class"]


def test_keep_alive_comments_do_not_stretch_the_timeout(tmp_path):
    def pings(request, conn):
        conn.start_stream("chunked")
        while True:
            conn.stream_write(b": ping\n\n", "chunked")
            conn.sleep(0.05)
    cases = make_cases(tmp_path, stream=True)
    with HostileVendor(pings) as v:
        result = run_k2vv(run_args(v, tmp_path, cases, "--retries", "0", "--timeout", "2"), tmp_path, 30)
    assert not result.timed_out and result.elapsed < WALL, describe(result)
    assert result.returncode == NO_BASELINE, describe(result)
    line = only_line(tmp_path)
    assert (line["response_class"], line["error_class"]) == ("failed", "timeout")


def test_a_body_trickled_a_byte_at_a_time_times_out(tmp_path):
    """~200 bytes of valid JSON at one byte per 0.1 s: 20 s, ten times --timeout 2."""
    full = completion("f", '{"n": 1}')
    body = json.dumps({"choices": full["choices"]}, separators=(",", ":")).encode()
    assert 150 <= len(body) <= 250

    def trickle(request, conn):
        conn.send(http_head(200, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                  ("Connection", "close")]))
        for i in range(len(body)):
            conn.send(body[i:i + 1])
            conn.sleep(0.1)
    cases = make_cases(tmp_path)
    with HostileVendor(trickle) as v:
        result = run_k2vv(run_args(v, tmp_path, cases, "--retries", "0", "--timeout", "2"), tmp_path,
                          CHILD_DEADLINE)
    assert result.returncode == NO_BASELINE, describe(result)
    line = only_line(tmp_path)
    assert (line["response_class"], line["error_class"]) == ("failed", "timeout"), describe(result)
    assert result.elapsed < WALL, describe(result)


def test_headers_trickled_a_line_at_a_time_time_out(tmp_path):
    """20 header lines 0.5 s apart (10 s) against --timeout 2."""
    body = json.dumps(completion("f", '{"n": 1}')).encode()

    def slow_headers(request, conn):
        conn.send(b"HTTP/1.1 200 OK\r\n")
        for i in range(20):
            conn.sleep(0.5)
            conn.send(f"X-Slow-{i}: {i}\r\n".encode())
        conn.send(f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                  f"Connection: close\r\n\r\n".encode() + body)
    cases = make_cases(tmp_path)
    with HostileVendor(slow_headers) as v:
        result = run_k2vv(run_args(v, tmp_path, cases, "--retries", "0", "--timeout", "2"), tmp_path,
                          CHILD_DEADLINE)
    assert result.returncode == NO_BASELINE, describe(result)
    assert result.elapsed < WALL, describe(result)
    line = only_line(tmp_path)
    assert (line["response_class"], line["error_class"]) == ("failed", "timeout")


@pytest.mark.parametrize("framing", ["length", "close"])
def test_time_to_first_byte_is_the_first_event_not_the_whole_stream(tmp_path, framing):
    """A stream without chunked encoding: the first event at once, the rest 1 s later."""
    events = [sse_event(c) for c in stream_chunks("f", '{"n": 1}')] + [b"data: [DONE]\n\n"]

    def two_parts(request, conn):
        conn.start_stream(framing, length=sum(map(len, events)))
        conn.send(events[0])
        conn.sleep(1.0)
        conn.send(b"".join(events[1:]))
    cases = make_cases(tmp_path, stream=True)
    with HostileVendor(two_parts) as v:
        assert k2vv.main(run_args(v, tmp_path, cases, "--retries", "0", "--timeout", "10")) == NO_BASELINE
    assert only_line(tmp_path)["response_class"] == "valid"
    latency = read_summary(tmp_path / "out")["latency"]
    assert latency["p50"] >= 1000, latency
    assert latency["ttfb_p50"] < 500, latency


# ---- B. no crash on any vendor bytes ----------------------------------------------------------------

def test_a_body_nested_100000_deep_is_a_bad_body_retried_never_cached(tmp_path):
    deep = b"[" * DEEP + b"]" * DEEP
    cases = make_cases(tmp_path)
    with HostileVendor(lambda request, conn: conn.send_json(deep)) as v:
        first = run_k2vv(run_args(v, tmp_path, cases, "--retries", "1", "--timeout", "5"), tmp_path, CHILD_DEADLINE)
        assert "Traceback" not in first.stderr, describe(first)
        assert first.returncode == NO_BASELINE, describe(first)
        assert v.count == 2  # retried once
        line = only_line(tmp_path)
        assert (line["response_class"], line["error_class"]) == ("failed", "bad_body")
        again = run_k2vv(run_args(v, tmp_path, cases, "--retries", "1", "--timeout", "5"), tmp_path, CHILD_DEADLINE)
        assert again.returncode == NO_BASELINE, describe(again)
        assert v.count == 4  # not cached: asked again


def test_a_stream_chunk_nested_100000_deep_fails_the_case_without_a_traceback(tmp_path):
    deep = '{"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": ' \
           + "[" * DEEP + "]" * DEEP + "}, \"finish_reason\": null}]}"
    cases = make_cases(tmp_path, stream=True)
    with HostileVendor(lambda request, conn: conn.send_sse([deep])) as v:
        result = run_k2vv(run_args(v, tmp_path, cases, "--retries", "0", "--timeout", "5"), tmp_path, CHILD_DEADLINE)
    assert "Traceback" not in result.stderr, describe(result)
    assert result.returncode == NO_BASELINE, describe(result)
    line = only_line(tmp_path)
    assert line["response_class"] in ("failed", "truncated") and line["error_class"] in ("bad_body", "truncated")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_arguments_with_a_5000_digit_integer_are_non_standard_json(tmp_path, stream):
    """An answer (cached, `invalid`) whose call is `non_standard_json`; `score` agrees."""
    cases = make_cases(tmp_path, stream=stream)
    with HostileVendor(lambda request, conn: answer(request, conn, HUGE_INT_ARGS)) as v:
        ran = run_k2vv(run_args(v, tmp_path, cases, "--retries", "0", "--timeout", "5"), tmp_path, CHILD_DEADLINE)
        assert "Traceback" not in ran.stderr, describe(ran)
        assert ran.returncode in (k2vv.EXIT_FAIL, NO_BASELINE), describe(ran)
        line = only_line(tmp_path)
        assert line["response_class"] == "invalid"
        assert [c["class"] for c in line["calls"]] == ["non_standard_json"]
        again = run_k2vv(run_args(v, tmp_path, cases, "--retries", "0", "--timeout", "5"), tmp_path, CHILD_DEADLINE)
        assert v.count == 1  # the answer was cached
        assert again.returncode == ran.returncode
        url = v.url
    scored = run_k2vv(score_args(url, tmp_path, cases), tmp_path, CHILD_DEADLINE)
    assert "Traceback" not in scored.stderr, describe(scored)
    assert scored.returncode == ran.returncode, describe(scored)
    summary = read_summary(tmp_path / "scored")
    assert summary["classes"]["calls"]["non_standard_json"] == 1
    assert summary["classes"]["responses"]["invalid"] == 1


# -- B9. fuzzing the answer path ----------------------------------------------------------------------

FUZZ_SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"},
                                                "xs": {"type": "array", "items": {"type": "object"}}}}
FUZZ_BODY = {"model": "m", "messages": [{"role": "user", "content": "fuzz"}], "tools": [
    {"type": "function", "function": {"name": "f", "parameters": FUZZ_SCHEMA}}]}
WIRE_KEYS = ["choices", "message", "delta", "tool_calls", "function", "name", "arguments", "finish_reason",
             "index", "id", "usage", "error", "content", "role", "object"]


def nested_list(depth: int):
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


def nested_text(depth: int) -> str:
    return "[" * depth + "]" * depth


@dataclass(frozen=True)
class Deep:
    """A value nested `depth` deep, built only when the test runs (`build`): hypothesis prints every
    example it runs, and its printer recurses as deep as the value. `text`: the JSON text of the
    nested array between `before` and `after` (a str, or bytes with `raw`), else the list itself."""
    depth: int
    text: bool = False
    before: str = ""
    after: str = ""
    raw: bool = False

    def build(self):
        if not self.text:
            return nested_list(self.depth)
        text = self.before + nested_text(self.depth) + self.after
        return text.encode("utf-8") if self.raw else text


def build(value):
    """`value` with every Deep in it built."""
    if isinstance(value, Deep):
        return value.build()
    if isinstance(value, list):
        return [build(v) for v in value]
    if isinstance(value, dict):
        return {k: build(v) for k, v in value.items()}
    return value


DEPTHS = st.sampled_from([2, 600, 1200, DEEP])
BIG_INTS = st.sampled_from([300, 4000]).map(lambda digits: -(10 ** digits) + 7)  # as Python ints: printable
ARGUMENT_TEXTS = st.one_of(
    st.text(max_size=30), st.just(HUGE_INT_ARGS), st.just('{"n": 1}'), st.just('{"n": NaN}'),
    st.just('{"n": 1, "n": 2}'), DEPTHS.map(lambda d: Deep(d, text=True, before='{"xs": ', after="}")),
    DEPTHS.map(lambda d: Deep(d, text=True)), st.just('{"n": 1e999}'), st.just(""), st.just("\ud800"))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), BIG_INTS, st.floats(), st.text(max_size=10),
                    ARGUMENT_TEXTS)
JSONISH = st.recursive(SCALARS, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(WIRE_KEYS), st.text(max_size=6)), children, max_size=5)),
    max_leaves=25)


@st.composite
def completion_like(draw):
    """A chat.completion with up to two of its fields replaced by hostile values."""
    body = completion(draw(st.sampled_from(["f", "g", None])), draw(ARGUMENT_TEXTS),
                      finish_reason=draw(st.sampled_from(["tool_calls", "stop", "length", None])))
    for path in draw(st.lists(st.sampled_from([
            ("choices",), ("choices", 0), ("choices", 0, "message"), ("choices", 0, "message", "tool_calls"),
            ("choices", 0, "message", "tool_calls", 0), ("choices", 0, "message", "tool_calls", 0, "function"),
            ("choices", 0, "message", "tool_calls", 0, "function", "arguments"), ("choices", 0, "finish_reason"),
            ("usage",), ("choices", 0, "message", "content")]), max_size=2)):
        node = body
        try:
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = draw(st.one_of(JSONISH, DEPTHS.map(Deep)))
        except (KeyError, IndexError, TypeError):
            pass
    return body


def chunk_text(arguments) -> str:
    """A stream chunk carrying a whole call with these arguments (a Deep stays a marker in the text)."""
    head = json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c", "function": {"name": "f", "arguments": "@"}}]}, "finish_reason": "tool_calls"}]})
    before, after = head.split('"@"')
    if isinstance(arguments, Deep):  # the arguments' text, JSON-quoted: '[' and ']' need no escaping
        return Deep(arguments.depth, True, before + '"' + arguments.before.replace('"', '\\"'),
                    arguments.after.replace('"', '\\"') + '"' + after)
    return before + json.dumps(arguments) + after


def dumps_or_null(value) -> str:
    try:
        return json.dumps(value)
    except (ValueError, TypeError, RecursionError):  # Deep markers, big ints
        return "null"


BODIES = st.one_of(JSONISH, completion_like(), DEPTHS.map(Deep))
VALID_CHUNKS = [json.dumps(c) for args in ('{"n": 1}', HUGE_INT_ARGS) for c in stream_chunks("f", args)]
SSE_PAYLOADS = st.one_of(
    st.text(max_size=40), st.just("[DONE]"), st.sampled_from(VALID_CHUNKS),
    st.tuples(st.sampled_from(VALID_CHUNKS), st.integers(0, 400)).map(lambda t: t[0][:t[1]]),
    DEPTHS.map(lambda d: Deep(d, text=True)), DEPTHS.map(lambda d: Deep(d, True, '{"choices": ', "}")),
    JSONISH.map(dumps_or_null), ARGUMENT_TEXTS.map(chunk_text))

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@FUZZ
@given(BODIES)
@example(completion("f", HUGE_INT_ARGS))
@example(completion("f", Deep(DEEP, True, '{"xs": ', "}")))
@example(Deep(DEEP))
@example(completion("f", {"xs": Deep(DEEP)}))
def test_score_exchange_never_raises_on_any_body(body):
    outcome = k2vv.score_exchange(FUZZ_BODY, {"v": 1, "status": 200, "body": build(body)})
    assert outcome.response_class in k2vv.RESPONSE_CLASSES


@FUZZ
@given(st.lists(SSE_PAYLOADS, max_size=8))
@example([json.dumps(c) for c in stream_chunks("f", HUGE_INT_ARGS)] + ["[DONE]"])
@example([chunk_text(Deep(DEEP, True, '{"xs": ', "}")), "[DONE]"])
@example([Deep(DEEP, text=True), "[DONE]"])
def test_score_exchange_never_raises_on_any_stream(sse_lines):
    outcome = k2vv.score_exchange(FUZZ_BODY, {"v": 1, "status": 200, "sse_lines": build(sse_lines)})
    assert outcome.response_class in k2vv.RESPONSE_CLASSES


WIRE_EXAMPLES = [
    json.dumps(completion("f", HUGE_INT_ARGS)).encode(),
    b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": "\\ud800"}, "finish_reason": "stop"}]}',
    Deep(DEEP, text=True, raw=True),
    sse_body(stream_chunks("f", HUGE_INT_ARGS)),
    sse_body(['{"choices": [{"index": 0, "delta": {"content": "\\ud800"}, "finish_reason": "stop"}]}']),
    Deep(DEEP, True, "data: ", "\n\ndata: [DONE]\n\n", raw=True),
]


@pytest.fixture
def served():
    """A vendor that answers 200 with whatever bytes the test put in `served.state["data"]`."""
    state = {"data": b""}

    def handler(request, conn):
        kind = "text/event-stream" if request.stream else "application/json"
        conn.send(http_response(200, state["data"], kind))
    with HostileVendor(handler) as v:
        v.state = state
        yield v


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_any_bytes_served_as_a_200_answer_end_the_run_with_1_or_3(tmp_path, served, stream):
    cases = make_cases(tmp_path, stream=stream, parameters=FUZZ_SCHEMA)
    runs = iter(range(10 ** 6))

    @settings(max_examples=15, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=300), st.sampled_from(WIRE_EXAMPLES),
                     st.sampled_from(VALID_CHUNKS).map(sse_event),
                     st.binary(max_size=64).map(lambda b: b"data: " + b + b"\n\ndata: [DONE]\n\n")))
    @example(WIRE_EXAMPLES[0])
    @example(WIRE_EXAMPLES[1])
    @example(WIRE_EXAMPLES[2])
    @example(WIRE_EXAMPLES[3])
    @example(WIRE_EXAMPLES[4])
    @example(WIRE_EXAMPLES[5])
    def one(data):
        data = build(data)
        served.state["data"] = data
        n = next(runs)  # a cache and an output of its own: equal requests must not hit an earlier answer
        try:
            code = k2vv.main(run_args(served, tmp_path, cases, "--retries", "0", "--timeout", "5",
                                      out=f"out{n}", cache=f"cache{n}"))
        except BaseException as err:  # noqa: BLE001 - what the test is about: report it as a failure
            pytest.fail(f"k2vv.main raised {err!r} for a {len(data)}-byte answer {data[:80]!r}")
        assert code in (k2vv.EXIT_FAIL, NO_BASELINE), f"exit {code} for {data[:80]!r}"
    one()


# -- B10. an internal error is exit 70, one line, and a crash file ---------------------------------------

def test_an_internal_error_exits_70_with_one_line_and_a_crash_file(tmp_path, monkeypatch, capfd):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(k2vv_report, "render_summary", boom)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    with k2vv_sim.SimVendor("reference") as v:
        args = ["run", "--base-url", v.url, "--model", "kimi-k2", "--limit", "3", "--cache", str(tmp_path / "cache"),
                "--out", str(tmp_path / "out"), "--quiet", "--api-key", FAKE_KEY]
        try:
            code = k2vv.main(args)
        except RuntimeError as err:
            pytest.fail(f"k2vv.main raised {err!r} instead of returning 70")
    printed = capfd.readouterr()
    assert code == 70
    assert "Traceback" not in printed.err
    crash_lines = [line for line in printed.err.splitlines() if line.startswith("k2vv: internal error")]
    assert len(crash_lines) == 1, printed.err
    files = [p for p in map(_path_in, crash_lines[0].split()) if p is not None]
    assert files, f"no existing file named in {crash_lines[0]!r}"
    report = files[0].read_text(errors="replace")
    if tmp_path not in files[0].resolve().parents:
        files[0].unlink()  # k2vv's file, outside this test's directory: leave nothing behind
    assert "Traceback" in report and "RuntimeError" in report
    for text in (report, printed.err, printed.out):
        assert FAKE_KEY not in text and FAKE_KEY[3:20] not in text


def _path_in(token: str):
    from pathlib import Path
    token = token.strip("'\"()[],;:.")
    if "/" not in token and not token.endswith((".txt", ".log")):
        return None
    for candidate in (token, token + "."):  # a path may itself end in a stripped character
        path = Path(candidate)
        if path.is_file():
            return path
    return None


# -- B11. transient faults k2vv already survives (a regression guard) --------------------------------------

def first_attempt(fault):
    """A handler whose first attempt at each body is `fault`, then a valid answer."""
    def handler(request, conn):
        if request.attempt == 1:
            return fault(request, conn)
        answer(request, conn)
    return handler


def error_json(status, retry_after=None):
    headers = [("Retry-After", retry_after)] if retry_after is not None else []
    body = json.dumps({"error": {"message": f"HTTP {status} (hostile)", "type": "server_error"}}).encode()
    return lambda request, conn: conn.send(http_response(status, body, "application/json", headers))


def cut_body(request, conn):
    body = json.dumps(completion("f", '{"n": 1}')).encode()
    conn.send(http_head(200, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
              + body[:len(body) // 2])


def html_502(request, conn):
    conn.send(http_response(502, b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>\n", "text/html"))


def gzip_200(request, conn):
    body = gzipped(json.dumps(completion("f", '{"n": 1}')).encode())
    conn.send(http_response(200, body, "application/json", [("Content-Encoding", "gzip")]))


def sse_with_comments(request, conn):
    events = b"".join(b": keep-alive\n\n" + sse_event(c) + b": x\n" for c in stream_chunks("f", '{"n": 1}'))
    conn.send(http_response(200, b": hello\n\n" + events + b"data: [DONE]\n\n", "text/event-stream"))


def sse_crlf(request, conn):
    body = sse_body(stream_chunks("f", '{"n": 1}')).replace(b"\n", b"\r\n")
    conn.send(http_response(200, body, "text/event-stream"))


def sse_multiline(request, conn):
    """Each chunk's JSON split over two `data:` lines of one event (joined by a newline)."""
    events = []
    for c in stream_chunks("f", '{"n": 1}'):
        text = json.dumps(c)
        cut = text.index(",") + 1
        events.append(b"data: " + text[:cut].encode() + b"\ndata: " + text[cut:].encode() + b"\n\n")
    conn.send(http_response(200, b"".join(events) + b"data: [DONE]\n\n", "text/event-stream"))


TRANSIENT = [  # (id, handler, stream, requests it takes)
    ("429_retry_after_seconds", first_attempt(error_json(429, "1")), False, 2),
    ("429_retry_after_http_date", first_attempt(lambda r, c: error_json(429, formatdate(time.time() + 1, usegmt=True))(r, c)),
     False, 2),
    ("500", first_attempt(error_json(500)), False, 2),
    ("502", first_attempt(error_json(502)), False, 2),
    ("503", first_attempt(error_json(503)), True, 2),
    ("connection_reset", first_attempt(lambda r, c: c.reset()), False, 2),
    ("body_cut_short", first_attempt(cut_body), False, 2),
    ("html_502_page", first_attempt(html_502), False, 2),
    ("gzip_body", gzip_200, False, 1),
    ("sse_comments", sse_with_comments, True, 1),
    ("sse_crlf_line_endings", sse_crlf, True, 1),
    ("sse_multi_line_data", sse_multiline, True, 1),
]


@pytest.mark.parametrize("handler,stream,requests", [t[1:] for t in TRANSIENT], ids=[t[0] for t in TRANSIENT])
def test_transient_faults_and_odd_but_valid_answers_end_answered(tmp_path, handler, stream, requests):
    cases = make_cases(tmp_path, stream=stream)
    with HostileVendor(handler) as v:
        assert k2vv.main(run_args(v, tmp_path, cases, "--retries", "2", "--timeout", "5")) == NO_BASELINE
        assert v.count == requests
        assert not v.handler_errors
    line = only_line(tmp_path)
    assert line["response_class"] == "valid", line
    assert [c["class"] for c in line["calls"]] == ["valid"]


def test_a_stream_whose_chunks_all_have_no_choices_is_not_an_answer(tmp_path):
    empty = [{"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}] * 3
    cases = make_cases(tmp_path, stream=True)
    with HostileVendor(lambda request, conn: conn.send_sse(empty)) as v:
        assert k2vv.main(run_args(v, tmp_path, cases, "--retries", "0", "--timeout", "5")) == NO_BASELINE
        line = only_line(tmp_path)
        assert line["error_class"] in ("truncated", "bad_body"), line
        assert k2vv.main(run_args(v, tmp_path, cases, "--retries", "0", "--timeout", "5")) == NO_BASELINE
        assert v.count == 2  # never cached: the second run asked again
