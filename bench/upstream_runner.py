"""The upstream K2VV way of sending a test set, re-implemented to count answers (no scoring).

    .venv/bin/python bench/upstream_runner.py TESTSET BASE_URL [--concurrency 5] [--retries inf] [--model M]

What K2VV's tool_calls_eval.py (MoonshotAI/K2-Vendor-Verifier) does per request: an
`asyncio.Semaphore(concurrency)` around `process_request`, inside it one
`AsyncOpenAI(max_retries=...).chat.completions.create(**request)` whose retries happen *while the
slot is held*. The retry rule is the openai SDK's (`_base_client.py`: `_should_retry`,
`_calculate_retry_timeout`): retry 408, 409, 429 and 5xx; wait `retry-after-ms` or `Retry-After`
when it is in (0, 60] s, else min(0.5 × 2^retries, 8) s × (1 − 0.25 × random()). K2VV's default
is `--retries 3`; `--retries inf` is the "retries forever" variant of the issue, so every case is
answered and only time is lost. The openai SDK and httpx are replaced by a keep-alive HTTP/1.1
client on asyncio streams (a connection per slot, as httpx's pool gives): the CPU per request is
not what this benchmark compares, the schedule of attempts is.

Prints one JSON object: seconds, answered, failed, attempts (histogram), rate_limited (429s
received), lost_with_3_retries (answers that needed more than K2VV's default 4 attempts).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

INITIAL_RETRY_DELAY, MAX_RETRY_DELAY, MAX_RETRY_AFTER = 0.5, 8.0, 60.0  # openai/_constants.py
RETRY_STATUSES = (408, 409, 429)


def sdk_retry_delay(retries_taken: int, headers: dict, rng: random.Random) -> float:
    """openai SDK `_calculate_retry_timeout`: the server's delay when it is sane, else capped
    exponential backoff with up to 25% jitter downwards."""
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        try:
            after = float(headers[name]) / divisor
        except (KeyError, ValueError):
            continue
        if 0 < after <= MAX_RETRY_AFTER:
            return after
        break
    return min(INITIAL_RETRY_DELAY * 2 ** min(retries_taken, 1000), MAX_RETRY_DELAY) * (1 - 0.25 * rng.random())


class Pool:
    """Idle keep-alive connections to one host."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port or 80, parts.path.rstrip("/") + "/chat/completions"
        self.idle: list = []

    async def post(self, payload: bytes) -> tuple[int, dict, bytes]:
        reader, writer = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        writer.write(b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\nAccept: application/json"
                     b"\r\nContent-Length: %d\r\n\r\n%s" % (self.path.encode(), self.host.encode(), self.port,
                                                          len(payload), payload))
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:  # chunked: the SSE stream, read to its last chunk
            parts = []
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in parts)
        self.idle.append((reader, writer))
        return status, headers, body


async def run(lines: list[dict], url: str, concurrency: int, retries: float, seed: int) -> dict:
    pool, rng, semaphore = Pool(url), random.Random(seed), asyncio.Semaphore(concurrency)
    attempts, latencies = Counter(), []
    stats = Counter()

    async def process_request(request: dict) -> None:
        payload = json.dumps(request, ensure_ascii=False).encode()
        async with semaphore:  # K2VV: the SDK's retries happen inside the slot
            retries_taken = 0
            while True:
                started = time.monotonic()
                try:
                    status, headers, body = await pool.post(payload)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    status, headers = 0, {}
                if status == 200:
                    latencies.append(time.monotonic() - started)
                    stats["answered"] += 1
                    break
                stats["rate_limited"] += status == 429
                if not (status == 0 or status in RETRY_STATUSES or status >= 500) or retries_taken >= retries:
                    stats["failed"] += 1
                    break
                await asyncio.sleep(sdk_retry_delay(retries_taken, headers, rng))
                retries_taken += 1
            attempts[retries_taken + 1] += 1

    started = time.monotonic()
    await asyncio.gather(*(process_request(line) for line in lines))
    seconds = time.monotonic() - started
    latencies.sort()
    return {"seconds": seconds, "answered": stats["answered"], "failed": stats["failed"],
            "rate_limited": stats["rate_limited"], "attempts": dict(sorted(attempts.items())),
            "lost_with_3_retries": sum(v for k, v in attempts.items() if k > 4),
            "latency_p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("testset")
    parser.add_argument("base_url")
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--retries", type=float, default=3, help="retries per request (inf: forever)")
    parser.add_argument("--model", default="m")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with open(args.testset, encoding="utf-8") as fh:
        lines = [dict(json.loads(line), model=args.model) for line in fh if line.strip()]
    print(json.dumps(asyncio.run(run(lines, args.base_url, args.concurrency, args.retries, args.seed))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
