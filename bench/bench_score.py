"""Scoring throughput, whole process (interpreter start included), contenders side by side.

    .venv/bin/python bench/bench_score.py [--sizes 4000,10000,100000] [--repeat 3] [--big-repeat 1]
                                          [--upstream-max 10000] [--workloads repeated,distinct] [--k2vv PATH]

Contenders, on the same test set and the same diskcache (bench/common.py makes both):
- k2vv: `python k2vv.py score TESTSET --base-url URL --model M --cache DIR --out DIR --json`
- upstream-style: bench/upstream_score.py, K2VV's way (jsonschema.validate per call)
- json floor: bench/floor_score.py, json.loads of every line and every stored answer, nothing else
Each size runs the contenders interleaved, `--repeat` times (`--big-repeat` times from 10,000 up:
one k2vv run of the distinct workload at 100,000 takes minutes); the best time counts. Above
`--upstream-max` cases the upstream way is not run: its time is scaled linearly from its largest
measured size (marked ~; that counts its ~0.3 s start-up N/size times, a slight overstatement). Peak RSS from GNU time. Targets (repeated workload): k2vv >= 5x
faster than upstream and <= 2x the floor at 4,000; >= 10x and <= 1.5x at 100,000.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import BENCH, MODEL, PYTHON, ROOT, URL, WORK, fmt_n, k2vv_score_cmd, run_measured, save_result, workloads

TARGETS = {4000: (5.0, 2.0), 100_000: (10.0, 1.5)}  # repeated workload: (x faster than upstream, x the floor)


def contenders(k2vv_py: Path, testset: Path, cache_dir: Path, upstream: bool) -> dict:
    out = {"k2vv": k2vv_score_cmd(k2vv_py, testset, cache_dir, WORK / "score-out"),
           "floor": [PYTHON, str(BENCH / "floor_score.py"), str(testset), str(cache_dir)]}
    if upstream:
        out["upstream"] = [PYTHON, str(BENCH / "upstream_score.py"), str(testset), str(cache_dir), URL, MODEL]
    return out


def measure(cmds: dict, repeat: int) -> dict:
    """{name: {"s": best seconds, "rss": MB of that run, "out": stdout}}, runs interleaved."""
    best = {}
    for _ in range(repeat):
        for name, cmd in cmds.items():
            seconds, rss, rc, out, err = run_measured(cmd)
            if rc not in (0, 1, 3):
                raise SystemExit(f"bench: {name} exited {rc}:\n{err[-2000:]}")
            if name not in best or seconds < best[name]["s"]:
                best[name] = {"s": seconds, "rss": rss, "out": out}
    return best


def extrapolate(points: list[tuple[int, float]], n: int) -> float:
    size, seconds = points[-1]
    return seconds * n / size


def style_line(n: int, name: str, row: dict) -> str:
    up = f"{'~' if row['upstream_extrapolated'] else ''}{row['upstream_s']:.2f} s"
    return (f"score {fmt_n(n)} answers, {name:8}  k2vv {row['k2vv_s']:.2f} s | upstream-style {up} | json floor "
            f"{row['floor_s']:.2f} s   ({row['k2vv_s'] and row['upstream_s'] / row['k2vv_s']:.1f}× faster, "
            f"{row['k2vv_s'] / row['floor_s']:.1f}× the floor)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="4000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big-repeat", type=int, default=1)
    parser.add_argument("--upstream-max", type=int, default=10000)
    parser.add_argument("--workloads", default="repeated,distinct")
    parser.add_argument("--k2vv", type=Path, default=ROOT / "k2vv.py")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    rows = {}
    for name in args.workloads.split(","):
        paths = workloads(name, sizes)
        upstream_points = []
        for n in sizes:
            testset, cache_dir = paths[n]
            run_upstream = n <= args.upstream_max or not upstream_points
            best = measure(contenders(args.k2vv, testset, cache_dir, run_upstream),
                           args.repeat if n < 10_000 else args.big_repeat)
            summary = json.loads(best["k2vv"]["out"])
            row = {"k2vv_s": best["k2vv"]["s"], "k2vv_rss": best["k2vv"]["rss"], "floor_s": best["floor"]["s"],
                   "floor_rss": best["floor"]["rss"], "k2vv_schema_accuracy": summary["schema_accuracy"],
                   "upstream_extrapolated": not run_upstream}
            if run_upstream:
                up = json.loads(best["upstream"]["out"])
                upstream_points.append((n, best["upstream"]["s"]))
                row.update(upstream_s=best["upstream"]["s"], upstream_rss=best["upstream"]["rss"],
                           upstream_schema_accuracy=round(up["successful_tool_call_count"]
                                                          / max(1, up["finish_tool_calls"]), 6))
            else:
                row.update(upstream_s=extrapolate(upstream_points, n), upstream_rss=None,
                           upstream_schema_accuracy=None)
            rows[f"{name}-{n}"] = row
            print(style_line(n, name, row), flush=True)
    save_result("score" if args.k2vv == ROOT / "k2vv.py" else "score-" + args.k2vv.parent.name,
                {"rows": rows, "repeat": args.repeat, "big_repeat": args.big_repeat, "k2vv": str(args.k2vv)})
    print("\n~ = the upstream way's time scaled linearly from its largest measured size.")
    for n, (faster, floor) in TARGETS.items():
        row = rows.get(f"repeated-{n}")
        if row:
            got_faster, got_floor = row["upstream_s"] / row["k2vv_s"], row["k2vv_s"] / row["floor_s"]
            print(f"target repeated {fmt_n(n)}: >= {faster:.0f}× faster than upstream: "
                  f"{'met' if got_faster >= faster else 'NOT met'} ({got_faster:.1f}×); <= {floor}× the floor: "
                  f"{'met' if got_floor <= floor else 'NOT met'} ({got_floor:.1f}×)")
    for key, row in rows.items():
        print(f"{key}: peak RSS k2vv {row['k2vv_rss']:.0f} MB, floor {row['floor_rss']:.0f} MB"
              + (f", upstream {row['upstream_rss']:.0f} MB" if row["upstream_rss"] else "")
              + f"; schema_accuracy k2vv {row['k2vv_schema_accuracy']}, upstream {row['upstream_schema_accuracy']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
