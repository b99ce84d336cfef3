"""Runner overhead: `k2vv run` against a loopback server that answers instantly, vs a bare
`requests` thread pool sending the same bodies, side by side.

    .venv/bin/python bench/bench_runner.py [--n 2000] [--concurrency 16] [--repeat 3] [--k2vv PATH]

Workload: the first N cases of the repeated workload (bench/common.py). bench/fastserver.py runs
in its own process. First the server alone: a raw-socket client (16 keep-alive connections, no
HTTP library) measures what it can serve, and its CPU share during a bare-pool run shows it has
room to spare. Then, `--repeat` times, interleaved: the bare pool (bench/bare_pool.py) and a cold
`k2vv run` (fresh cache and out dir, journaling on, progress on: stderr is a pipe, so plain lines).
Both are whole processes (interpreter start, reading the test set, final summary included); the
best of each counts. Last, a warm re-run over the last cold cache: every answer cached, the
server must see zero requests. Peak RSS from GNU time.
Targets: k2vv run >= 80% of the bare pool's throughput; peak RSS <= 60 MB.
"""
from __future__ import annotations

import argparse
import json
import selectors
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import (BENCH, MODEL, PYTHON, ROOT, WORK, k2vv, keyed_body, run_measured, save_result,
                    workload_lines, workload_sources, write_jsonl)


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([PYTHON, str(BENCH / "fastserver.py")], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def served(url: str) -> int:
    with urllib.request.urlopen(url.rsplit("/v1", 1)[0] + "/count", timeout=10) as resp:
        return int(resp.read())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def raw_rate(url: str, payload: bytes, connections: int = 16, total: int = 10000) -> float:
    """Requests per second the server answers to a raw-socket keep-alive client."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % (host.encode(), len(payload))) + payload
    probe = socket.create_connection((host, int(port)))
    probe.sendall(request)
    head = probe.recv(65536)
    while b"\r\n\r\n" not in head:
        head += probe.recv(65536)
    size = head.index(b"\r\n\r\n") + 4 + int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    probe.close()
    sel = selectors.DefaultSelector()
    received, sent, done = {}, 0, 0
    started = time.perf_counter()
    for _ in range(connections):
        s = socket.create_connection((host, int(port)))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(request)
        sent += 1
        received[s] = 0
        sel.register(s, selectors.EVENT_READ)
    while done < total:
        for key, _ in sel.select():
            s = key.fileobj
            received[s] += len(s.recv(65536))
            while received[s] >= size:
                received[s] -= size
                done += 1
                if sent < total:
                    s.sendall(request)
                    sent += 1
    seconds = time.perf_counter() - started
    for s in received:
        s.close()
    return total / seconds


def k2vv_run_cmd(k2vv_py: Path, testset: Path, url: str, folder: Path, concurrency: int) -> list:
    return [PYTHON, str(k2vv_py), "run", str(testset), "--base-url", url, "--model", MODEL,
            "--cache", str(folder / "cache"), "--out", str(folder / "out"), "--concurrency", str(concurrency)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--k2vv", type=Path, default=ROOT / "k2vv.py", help="the k2vv.py to measure")
    args = parser.parse_args()
    base = WORK / "runner"
    shutil.rmtree(base, ignore_errors=True)
    lines = workload_lines("repeated", args.n, workload_sources("repeated"))
    testset, bodies = base / "testset.jsonl", base / "bodies.jsonl"
    write_jsonl(testset, lines)
    bodies.write_bytes(b"".join(k2vv.canonical_json(b) + b"\n" for _, b in map(keyed_body, lines)))
    server, url = start_server()
    try:
        payload = bodies.read_bytes().split(b"\n", 1)[0]
        raw = max(raw_rate(url, payload) for _ in range(2))
        bare_cmd = [PYTHON, str(BENCH / "bare_pool.py"), str(bodies), url + "/chat/completions",
                    str(args.concurrency)]
        cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
        run_measured(bare_cmd)
        server_share = (cpu_seconds(server.pid) - cpu0) / (time.perf_counter() - t0)
        bare, cold = [], []
        for rep in range(args.repeat):
            seconds, rss, rc, out, err = run_measured(bare_cmd)
            if rc:
                raise SystemExit(f"bare pool failed: {err[-1000:]}")
            bare.append((seconds, rss, json.loads(out)["seconds"]))
            folder = base / f"cold-{rep}"
            before = served(url)
            seconds, rss, rc, out, err = run_measured(k2vv_run_cmd(args.k2vv, testset, url, folder, args.concurrency))
            if rc not in (0, 1, 3) or served(url) - before != args.n:
                raise SystemExit(f"k2vv run exited {rc} after {served(url) - before} requests: {err[-1000:]}")
            cold.append((seconds, rss))
        before = served(url)
        warm_s, warm_rss, rc, _, err = run_measured(k2vv_run_cmd(args.k2vv, testset, url, folder, args.concurrency))
        warm_requests = served(url) - before
    finally:
        server.terminate()
        server.wait(10)
    best_bare, best_cold = min(bare), min(cold)
    n = args.n
    result = {
        "n": n, "concurrency": args.concurrency, "server_raw_rps": raw, "server_cpu_share_during_bare": server_share,
        "bare_s": best_bare[0], "bare_send_s": best_bare[2], "bare_rss_mb": best_bare[1],
        "k2vv_cold_s": best_cold[0], "k2vv_cold_rss_mb": max(r for _, r in cold),
        "k2vv_warm_s": warm_s, "k2vv_warm_rss_mb": warm_rss, "warm_requests": warm_requests,
        "throughput_share": best_bare[0] / best_cold[0], "all_bare_s": [b[0] for b in bare],
        "all_cold_s": [c[0] for c in cold], "k2vv": str(args.k2vv),
    }
    save_result("runner" if args.k2vv == ROOT / "k2vv.py" else "runner-" + args.k2vv.parent.name, result)
    print(f"server alone: {raw:,.0f} req/s to a raw-socket client; {server_share:.0%} of a core while the bare "
          f"pool ran (not the bottleneck)")
    print(f"run {n:,} requests   k2vv {best_cold[0]:.2f} s ({n / best_cold[0]:,.0f}/s) | bare requests pool "
          f"{best_bare[0]:.2f} s ({n / best_bare[0]:,.0f}/s; sending {best_bare[2]:.2f} s)   "
          f"(k2vv at {result['throughput_share']:.0%} of the bare pool's throughput; target >= 80%)")
    print(f"peak RSS   k2vv run {result['k2vv_cold_rss_mb']:.0f} MB (target <= 60 MB) | bare pool "
          f"{best_bare[1]:.0f} MB")
    print(f"warm re-run (all {n:,} cached)   k2vv {warm_s:.2f} s, {warm_requests} requests sent, "
          f"peak RSS {warm_rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
