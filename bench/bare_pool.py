"""The bare client: what sending a test set costs with `requests` and nothing else.

    .venv/bin/python bench/bare_pool.py BODIES.jsonl URL CONCURRENCY

BODIES.jsonl holds the prepared bodies `k2vv run` sends, one canonical JSON per line (bytes sent
as they are). A thread pool of CONCURRENCY workers, one requests.Session per thread, POSTs each
body with k2vv's headers and reads the whole answer (json.loads of it). No cache, no retries, no
scoring, no journal. Prints {"sent", "seconds"} (seconds of the sending phase).
"""
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "User-Agent": "bare-pool"}


def main(bodies_path: str, url: str, concurrency: int) -> dict:
    with open(bodies_path, "rb") as fh:
        payloads = [line.rstrip(b"\n") for line in fh if line.strip()]
    local = threading.local()

    def send(payload: bytes) -> None:
        session = getattr(local, "session", None) or setattr(local, "session", requests.Session()) \
            or local.session
        resp = session.post(url, data=payload, headers=HEADERS, timeout=60)
        resp.raise_for_status()
        json.loads(resp.content)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _ in pool.map(send, payloads):
            pass
    return {"sent": len(payloads), "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
