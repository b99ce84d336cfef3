"""The runner's pace (k2vv_http.Pace): it starts low, grows while answers flow, shrinks on "too many"
(429/503/529 and spent rate-limit budgets), grows back, and never exceeds the ceiling. The rules
are checked on the controller itself, then a whole run against a loopback vendor with a fixed
number of slots. No timing asserts: speed is the benchmark's business (bench/bench_pace.py)."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import k2vv
import k2vv_http
from conftest import write_jsonl

STOP = threading.Event()


def send(pace: k2vv_http.Pace, outcome: str, wait=None) -> None:
    """One attempt through the controller: take a slot, report how it went."""
    episode = pace.acquire(STOP)
    assert episode is not None
    pace.release(episode, outcome, wait)


def test_it_starts_low_and_grows_one_per_answer_until_the_first_too_many():
    pace = k2vv_http.Pace(ceiling=32)
    assert pace.limit == 4
    for _ in range(10):
        send(pace, "ok")
    assert pace.limit == 14


def test_it_never_exceeds_the_ceiling():
    pace = k2vv_http.Pace(ceiling=6)
    for _ in range(100):
        send(pace, "ok")
    assert pace.limit == 6


def test_a_429_shrinks_it_once_per_episode_then_it_climbs_back_to_the_edge_and_probes_slowly():
    pace = k2vv_http.Pace(ceiling=64)
    for _ in range(16):
        send(pace, "ok")
    assert pace.limit == 20
    episodes = [pace.acquire(STOP) for _ in range(20)]  # 20 in flight, all sent in one episode
    for episode in episodes:
        pace.release(episode, "limited")  # the vendor refuses every one of them
    assert pace.limit == 15 and pace.rate_limited == 20  # shrunk once, to 3/4, not 20 times
    for _ in range(4):
        send(pace, "ok")
    assert pace.limit == 19  # quickly back to just under the edge at 20
    for _ in range(19 * 4):
        send(pace, "ok")
    assert 19 < pace.limit < 21  # then about one more every four round trips


def test_a_spent_budget_shrinks_it_and_holds_every_request_until_the_reset():
    pace = k2vv_http.Pace(ceiling=8)
    episode = pace.acquire(STOP)
    pace.release(episode, "spent", wait=30.0, now=0.0)  # an answer that says: budget spent for 30 s
    assert pace.limit == 3 and pace.rate_limited == 0
    assert pace.paused_until == 30.0


@pytest.mark.parametrize("headers, wait", [
    ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}, 360.0),
    ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "250ms"}, 0.25),
    ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20"}, 20.0),
    ({"x-ratelimit-remaining-requests": "0"}, 1.0),
    ({"x-ratelimit-remaining-requests": "12", "x-ratelimit-reset-requests": "1s"}, None),
    ({}, None),
])
def test_rate_limit_headers_say_how_long_a_spent_budget_lasts(headers, wait):
    assert k2vv_http.ratelimit_wait(headers, now=0.0) == wait


class SlotVendor(ThreadingHTTPServer):
    """A vendor with `slots` requests at a time, each answered after 20 ms (its latency, so
    requests overlap): one more gets 429 with Retry-After: 0. Records the most ever in flight."""
    daemon_threads = True

    def __init__(self, slots: int):
        self.slots, self.in_flight, self.most, self.refused = slots, 0, 0, 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), SlotHandler)


class SlotHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        with server.lock:
            server.in_flight += 1
            server.most = max(server.most, server.in_flight)
            full = server.in_flight > server.slots
            server.refused += full
        if not full:
            time.sleep(0.02)  # the vendor's latency, not a wait for anything
        with server.lock:  # done before answering: the client cannot send again before this
            server.in_flight -= 1
        if full:
            self._send(429, {"error": {"message": "too many"}}, {"Retry-After": "0"})
        else:
            answer = {"id": "x", "object": "chat.completion", "model": body["model"],
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": "ok"}}],
                      "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
            self._send(200, answer, {})

    def _send(self, status, obj, headers):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


@pytest.mark.parametrize("ceiling", [3, 12])
def test_a_run_never_exceeds_the_ceiling_and_loses_nothing_to_429(tmp_path, ceiling):
    server = SlotVendor(slots=4)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cases = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": f"q{i}"}]}
                                                   for i in range(300)])
        code = k2vv.main(["run", str(cases), "--base-url", f"http://127.0.0.1:{server.server_address[1]}/v1",
                          "--model", "m", "--concurrency", str(ceiling), "--retries", "0",
                          "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--quiet"])
    finally:
        server.shutdown()
        server.server_close()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert code == 3  # answered everything; no baseline, so inconclusive
    assert summary["success_count"] == 300  # --retries 0, yet no case lost to a 429
    assert server.most <= ceiling
    runner = summary["runner"]
    assert runner["concurrency_ceiling"] == ceiling and 1 <= runner["concurrency_settled"] <= ceiling
    assert runner["rate_limited"] == server.refused
    assert server.refused > 0 if ceiling > 4 else server.refused == 0
    assert sum(runner["attempts_histogram"].values()) == 300
