"""Scaling: time and peak RSS of `k2vv run` (against the instant loopback server) and `k2vv score`
as N grows. Time should grow linearly, memory stay flat (< 150 MB at 100,000).

    .venv/bin/python bench/bench_scaling.py [--run-sizes 1000,10000] [--score-sizes 1000,10000,100000] [--k2vv PATH]

`run`: cold cache and out dir, concurrency 16, progress on (a pipe), repeated workload; at
~500 answers/s a 100,000-case run takes minutes, so the default stops at 10,000 to keep
bench/run.sh under 10 minutes. `score`: both workloads over their caches (bench/common.py); a
size that bench_score.py already measured for this same k2vv.py is taken from its results
($K2VV_BENCH_DIR/results/score.json, best of its runs) instead of being run again.
One run per size (the ratios between sizes are the point, and 100,000 takes long).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from bench_runner import k2vv_run_cmd, served, start_server
from common import ROOT, WORK, fmt_n, k2vv_score_cmd, run_measured, save_result, workload, workload_lines
from common import workload_sources, write_jsonl


def earlier_score_rows(k2vv_py: Path) -> dict:
    path = WORK / "results" / ("score.json" if k2vv_py == ROOT / "k2vv.py" else f"score-{k2vv_py.parent.name}.json")
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    same = data["machine"]["k2vv_sha256"] == hashlib.sha256(k2vv_py.read_bytes()).hexdigest()[:12]
    return data["rows"] if same and data.get("k2vv") == str(k2vv_py) else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-sizes", default="1000,10000")
    parser.add_argument("--score-sizes", default="1000,10000,100000")
    parser.add_argument("--k2vv", type=Path, default=ROOT / "k2vv.py")
    args = parser.parse_args()
    rows: dict = {}
    server, url = start_server()
    try:
        for n in map(int, args.run_sizes.split(",")):
            folder = WORK / f"scaling-run-{n}"
            shutil.rmtree(folder, ignore_errors=True)
            testset = folder / "testset.jsonl"
            write_jsonl(testset, workload_lines("repeated", n, workload_sources("repeated")))
            before = served(url)
            seconds, rss, rc, _, err = run_measured(k2vv_run_cmd(args.k2vv, testset, url, folder, 16))
            if rc not in (0, 1, 3) or served(url) - before != n:
                raise SystemExit(f"k2vv run exited {rc}: {err[-1000:]}")
            rows.setdefault(n, {})["run"] = (seconds, rss)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        server.terminate()
        server.wait(10)
    earlier = earlier_score_rows(args.k2vv)
    for name in ("repeated", "distinct"):
        for n in map(int, args.score_sizes.split(",")):
            row = earlier.get(f"{name}-{n}")
            if row:
                rows.setdefault(n, {})[f"score-{name}"] = (row["k2vv_s"], row["k2vv_rss"], "bench_score")
                continue
            testset, cache_dir = workload(name, n)
            seconds, rss, rc, _, err = run_measured(k2vv_score_cmd(args.k2vv, testset, cache_dir, WORK / "scaling-out"))
            if rc not in (0, 1, 3):
                raise SystemExit(f"k2vv score exited {rc}: {err[-1000:]}")
            rows.setdefault(n, {})[f"score-{name}"] = (seconds, rss, "here")
    save_result("scaling" if args.k2vv == ROOT / "k2vv.py" else "scaling-" + args.k2vv.parent.name,
                {"rows": {str(n): r for n, r in rows.items()}, "k2vv": str(args.k2vv)})
    print(render_table(rows))
    return 0


def render_table(rows: dict) -> str:
    def cell(n, key):
        v = rows[n].get(key)
        return f"{v[0]:8.2f} s {v[1]:6.0f} MB {v[0] / n * 1000:6.3f}" if v else f"{'-':>27}"
    head = ["N", "run (s, peak RSS, s/1k)", "score repeated", "score distinct"]
    out = [f"{head[0]:>8} | {head[1]:>27} | {head[2]:>27} | {head[3]:>27}"]
    for n in sorted(rows):
        out.append(f"{fmt_n(n):>8} | {cell(n, 'run')} | {cell(n, 'score-repeated')} | {cell(n, 'score-distinct')}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
