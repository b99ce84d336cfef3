"""Compare several k2vv.py files side by side (e.g. before and after a patch), interleaved runs.

    .venv/bin/python bench/compare.py A/k2vv.py B/k2vv.py ... [--score repeated-4000,repeated-100000]
                                      [--run 2000] [--repeat 3]

Each k2vv.py needs its schemas/ and fixtures/ beside it (a copy of k2vv.py next to symlinks to the
repo's). `--score W-N`: `k2vv score` over workload W at N cases (bench/common.py); `--run N`: a
cold `k2vv run` of N repeated cases against bench/fastserver.py at concurrency 16. For every
measurement the variants run one after the other, `--repeat` times; best time and its peak RSS are
printed, with each variant's time relative to the first.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from bench_runner import k2vv_run_cmd, served, start_server
from common import WORK, k2vv_score_cmd, run_measured, workload, workload_lines, workload_sources, write_jsonl


def best_of(cmds: dict, repeat: int, check=None) -> dict:
    best = {}
    for _ in range(repeat):
        for name, make in cmds.items():
            seconds, rss, rc, _, err = run_measured(make())
            if rc not in (0, 1, 3) or (check and not check()):
                raise SystemExit(f"compare: {name} exited {rc}: {err[-1500:]}")
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, rss)
    return best


def show(label: str, best: dict) -> None:
    first = next(iter(best.values()))[0]
    cells = " | ".join(f"{name} {s:.2f} s {rss:.0f} MB ({s / first:.2f})" for name, (s, rss) in best.items())
    print(f"{label:24} {cells}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("k2vv", nargs="+", type=Path)
    parser.add_argument("--score", default="", help="comma-separated WORKLOAD-N, e.g. repeated-4000")
    parser.add_argument("--run", default="", help="comma-separated N for cold runs")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    names = {p.resolve().parent.name: p.resolve() for p in args.k2vv}
    for spec in filter(None, args.score.split(",")):
        name, n = spec.rsplit("-", 1)
        testset, cache_dir = workload(name, int(n))
        show(f"score {spec}", best_of({v: (lambda p=p: k2vv_score_cmd(p, testset, cache_dir, WORK / "compare-out"))
                                       for v, p in names.items()}, args.repeat))
    if args.run:
        server, url = start_server()
        try:
            for n in map(int, args.run.split(",")):
                folder = WORK / f"compare-run-{n}"
                testset = folder / "testset.jsonl"
                write_jsonl(testset, workload_lines("repeated", n, workload_sources("repeated")))

                def cold(p, v):
                    shutil.rmtree(folder / v, ignore_errors=True)
                    return k2vv_run_cmd(p, testset, url, folder / v, 16)
                show(f"run {n} (cold)", best_of({v: (lambda p=p, v=v: cold(p, v)) for v, p in names.items()},
                                                args.repeat))
                show(f"run {n} (warm)", best_of({v: (lambda p=p, v=v: k2vv_run_cmd(p, testset, url, folder / v, 16))
                                                 for v, p in names.items()}, args.repeat))
        finally:
            server.terminate()
            server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
