"""A loopback OpenAI-compatible vendor that is slow and rate-limited, for the pace benchmark.

    .venv/bin/python bench/ratevendor.py slots  --slots 16 --latency 0.2 [--retry-after 1] [--port 0]
    .venv/bin/python bench/ratevendor.py bucket --rate 100 --burst 10 --latency 0.2 [--headers]
    .venv/bin/python bench/ratevendor.py plain  --latency 0.3

Prints its base URL, serves until SIGTERM. Every POST is answered with one call of the request's
first tool (`{"city": "Paris"}`, finish_reason "tool_calls"), `latency` seconds after its body
arrived: as an SSE stream (chunked, first chunk at a quarter of the latency, the last byte at the
latency) when the body says `"stream": true`, as JSON otherwise. What is limited:

- **slots**: at most `slots` requests are being answered; one more gets 429 + `Retry-After` at
  once (a slot frees as its answer's last byte leaves). Physical limit: N × latency / slots.
- **bucket**: a token bucket of `burst` requests refilled at `rate` per second (rate × 60 RPM); a
  request finding it empty gets 429 + `Retry-After` (whole seconds until the next token, at least 1).
  `--headers` adds OpenAI's `x-ratelimit-{limit,remaining,reset}-requests` to every answer.
  Physical limit: (N − burst) / rate + latency.
- **plain**: no limit.

`GET /stats` returns {"answered", "rate_limited", "max_in_flight", "requests", "timeline": requests
admitted and 429s per half second} as JSON; `GET /reset`
zeroes them and fills the bucket. asyncio streams, one process: ~300 req/s of slow answers cost it
a few percent of a core, so the vendor, not its CPU, sets the pace.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import time

ARGS = json.dumps({"city": "Paris"})
TICK = 0.5  # seconds per bin of the timeline /stats returns


class Vendor:
    def __init__(self, args):
        self.mode, self.latency, self.slots = args.mode, args.latency, args.slots
        self.retry_after, self.rate, self.burst, self.headers = args.retry_after, args.rate, args.burst, args.headers
        self.reset()

    def reset(self) -> None:
        self.answered = self.rate_limited = self.requests = self.in_flight = self.max_in_flight = 0
        self.tokens, self.refilled = float(self.burst), time.monotonic()
        self.reset_at, self.timeline = self.refilled, []   # per TICK seconds: [admitted, 429s]

    def stats(self) -> dict:
        return {"answered": self.answered, "rate_limited": self.rate_limited, "max_in_flight": self.max_in_flight,
                "requests": self.requests, "tick": TICK, "timeline": self.timeline}

    def _mark(self, limited: bool) -> None:
        tick = int((time.monotonic() - self.reset_at) / TICK)
        while len(self.timeline) <= tick:
            self.timeline.append([0, 0])
        self.timeline[tick][limited] += 1

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now

    def admit(self) -> str | None:
        """None to answer, or the Retry-After value of a 429."""
        self.requests += 1
        retry_after = None
        if self.mode == "slots" and self.in_flight >= self.slots:
            retry_after = str(self.retry_after)
        if self.mode == "bucket":
            self._refill()
            if self.tokens < 1:
                retry_after = str(max(1, math.ceil((1 - self.tokens) / self.rate)))
            else:
                self.tokens -= 1
        self._mark(retry_after is not None)
        return retry_after

    def budget_headers(self) -> bytes:
        if not (self.mode == "bucket" and self.headers):
            return b""
        self._refill()
        reset_ms = math.ceil((self.burst - self.tokens) / self.rate * 1000)
        return (b"x-ratelimit-limit-requests: %d\r\nx-ratelimit-remaining-requests: %d\r\n"
                b"x-ratelimit-reset-requests: %dms\r\n" % (round(self.rate * 60), int(self.tokens), reset_ms))


def completion(n: int, tool: str) -> bytes:
    return json.dumps({
        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1735689600, "model": "bench",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": f"call_{n}", "type": "function", "function": {"name": tool, "arguments": ARGS}}]}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}}).encode()


def chunks(n: int, tool: str, usage: bool) -> list[bytes]:
    """Three SSE writes: the role, the call, then finish (+ usage) and [DONE]."""
    def event(choices, **extra):
        return b"data: " + json.dumps({"id": f"chatcmpl-{n}", "object": "chat.completion.chunk",
                                       "created": 1735689600, "model": "bench", "choices": choices,
                                       **extra}).encode() + b"\n\n"
    last = event([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])
    if usage:
        last += event([], usage={"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28})
    return [event([{"index": 0, "delta": {"role": "assistant", "content": None}, "finish_reason": None}]),
            event([{"index": 0, "finish_reason": None, "delta": {"tool_calls": [{
                "index": 0, "id": f"call_{n}", "type": "function",
                "function": {"name": tool, "arguments": ARGS}}]}}]),
            last + b"data: [DONE]\n\n"]


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def handle(vendor: Vendor, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            if head.startswith("GET"):
                if head.startswith("GET /reset"):
                    vendor.reset()
                text = json.dumps(vendor.stats()).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(text), text))
                continue
            retry_after = vendor.admit()
            if retry_after is not None:
                vendor.rate_limited += 1
                text = b'{"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}'
                writer.write(b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
                             b"Retry-After: %s\r\n%sContent-Length: %d\r\n\r\n%s"
                             % (retry_after.encode(), vendor.budget_headers(), len(text), text))
                continue
            vendor.in_flight += 1
            vendor.max_in_flight = max(vendor.max_in_flight, vendor.in_flight)
            request = json.loads(body)
            tool = ((request.get("tools") or [{}])[0].get("function") or {}).get("name", "get_weather")
            n = vendor.requests
            try:
                if request.get("stream") is True:
                    parts = chunks(n, tool, (request.get("stream_options") or {}).get("include_usage") is True)
                    await asyncio.sleep(vendor.latency / 4)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                 b"Transfer-Encoding: chunked\r\n%s\r\n" % vendor.budget_headers() + chunked(parts[0]))
                    await asyncio.sleep(vendor.latency / 2)
                    writer.write(chunked(parts[1]))
                    await asyncio.sleep(vendor.latency / 4)
                    vendor.in_flight -= 1
                    writer.write(chunked(parts[2]) + b"0\r\n\r\n")
                else:
                    await asyncio.sleep(vendor.latency)
                    text = completion(n, tool)
                    vendor.in_flight -= 1
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s"
                                 % (vendor.budget_headers(), len(text), text))
            except BaseException:
                vendor.in_flight -= 1
                raise
            vendor.answered += 1
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(vendor: Vendor, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(lambda r, w: handle(vendor, r, w), "127.0.0.1", port, backlog=1024)
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", flush=True)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    loop.add_signal_handler(signal.SIGINT, stop.set_result, None)
    await stop
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("slots", "bucket", "plain"))
    parser.add_argument("--latency", type=float, default=0.2, help="seconds to the last byte of an answer")
    parser.add_argument("--slots", type=int, default=16, help="slots mode: requests answered at once")
    parser.add_argument("--retry-after", default="1", help="slots mode: the Retry-After of a 429")
    parser.add_argument("--rate", type=float, default=100.0, help="bucket mode: requests per second")
    parser.add_argument("--burst", type=int, default=10, help="bucket mode: the bucket's size")
    parser.add_argument("--headers", action="store_true", help="bucket mode: send x-ratelimit-* headers")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(Vendor(args), args.port))


if __name__ == "__main__":
    main()
