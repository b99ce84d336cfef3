"""Print the latest benchmark results (from $K2VV_BENCH_DIR/results/*.json) as the lines and
tables BENCHMARKS.md keeps, with every target marked met or not.

    .venv/bin/python bench/report.py [--variant NAME]

--variant NAME reads the results of `--k2vv DIR/k2vv.py` runs where DIR is named NAME.
"""
from __future__ import annotations

import json
import sys

from common import WORK, fmt_n


VARIANT = sys.argv[sys.argv.index("--variant") + 1] if "--variant" in sys.argv else ""


def load(name: str) -> dict | None:
    path = WORK / "results" / (f"{name}-{VARIANT}.json" if VARIANT and name != "startup" else f"{name}.json")
    return json.loads(path.read_text()) if path.exists() else None


def mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    score, runner, scaling, startup = load("score"), load("runner"), load("scaling"), load("startup")
    any_result = score or runner or scaling or startup
    if not any_result:
        print("no results yet: run bench/run.sh")
        return 1
    m = any_result["machine"]
    print(f"machine: {m['nproc']} × {m['cpu']}, Python {m['python']}, {m['date']}, commit {m['commit']} "
          f"(k2vv.py sha256 {m['k2vv_sha256']}…)\n")
    if score:
        print("```")
        for key, row in score["rows"].items():
            name, n = key.rsplit("-", 1)
            up = f"{'~' if row['upstream_extrapolated'] else ''}{row['upstream_s']:.2f} s"
            print(f"score {fmt_n(int(n))} answers, {name:8}  k2vv {row['k2vv_s']:.2f} s | upstream-style {up} | "
                  f"json floor {row['floor_s']:.2f} s   ({row['upstream_s'] / row['k2vv_s']:.1f}× faster, "
                  f"{row['k2vv_s'] / row['floor_s']:.1f}× the floor)")
        print("```")
        for n, (faster, floor) in {4000: (5, 2.0), 100000: (10, 1.5)}.items():
            row = score["rows"].get(f"repeated-{n}")
            if row:
                f, fl = row["upstream_s"] / row["k2vv_s"], row["k2vv_s"] / row["floor_s"]
                print(f"- target, repeated {fmt_n(n)}: ≥ {faster}× faster than upstream: {mark(f >= faster)} "
                      f"({f:.1f}×); ≤ {floor}× the floor: {mark(fl <= floor)} ({fl:.1f}×)")
        print()
    if runner:
        r = runner
        print("```")
        print(f"run {fmt_n(r['n'])} requests   k2vv {r['k2vv_cold_s']:.2f} s | bare requests pool {r['bare_s']:.2f} s"
              f"   (k2vv at {r['throughput_share']:.0%} of the bare pool's throughput)")
        print(f"warm re-run (all cached)   k2vv {r['k2vv_warm_s']:.2f} s, {r['warm_requests']} requests sent")
        print(f"peak RSS   k2vv run {r['k2vv_cold_rss_mb']:.0f} MB | bare pool {r['bare_rss_mb']:.0f} MB")
        print(f"server alone   {r['server_raw_rps']:,.0f} req/s (raw sockets); "
              f"{r['server_cpu_share_during_bare']:.0%} of a core during the bare pool")
        print("```")
        print(f"- target ≥ 80% of the bare pool's throughput: {mark(r['throughput_share'] >= 0.8)} "
              f"({r['throughput_share']:.0%})")
        print(f"- target peak RSS ≤ 60 MB: {mark(r['k2vv_cold_rss_mb'] <= 60)} ({r['k2vv_cold_rss_mb']:.0f} MB)\n")
    if scaling:
        rows = scaling["rows"]
        print("| N | run | score, repeated | score, distinct |")
        print("|---:|---:|---:|---:|")
        for n in sorted(rows, key=int):
            cells = []
            for key in ("run", "score-repeated", "score-distinct"):
                v = rows[n].get(key)
                cells.append(f"{v[0]:.2f} s · {v[1]:.0f} MB · {v[0] / int(n) * 1000:.3f} s/1k" if v else "–")
            print(f"| {fmt_n(int(n))} | " + " | ".join(cells) + " |")
        big = rows.get("100000", {})
        for key in ("score-repeated", "score-distinct"):
            if key in big:
                print(f"- target {key} < 150 MB at 100,000: {mark(big[key][1] < 150)} ({big[key][1]:.0f} MB)")
        print()
    if startup:
        s = startup
        print("```")
        print(f"./dist/k2vv.pyz --help   first run {s['pyz_first']:.3f} s | warm {s['pyz_warm']:.3f} s"
              f"   (python dist/k2vv.pyz: {s['pyz_first_direct']:.3f} s | {s['pyz_warm_direct']:.3f} s)")
        print(f"python k2vv.py --help    {s['py_help']:.3f} s   (python -c pass {s['python_pass']:.3f} s)")
        print("```")
        for name, modules in s["network_imports"].items():
            print(f"- {name}: {'imports ' + ', '.join(modules) if modules else 'never imports requests'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
