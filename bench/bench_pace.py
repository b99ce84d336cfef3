"""Pace: `k2vv run` against slow, rate-limited loopback vendors, vs K2VV's fixed concurrency.

    .venv/bin/python bench/bench_pace.py [--k2vv PATH] [--only NAME,...] [--full] [--timeline]
    .venv/bin/python bench/bench_pace.py --only memory --memory-variants --trace-memory   # where memory goes

Against a real vendor the wall time is set by the vendor (its latency and its rate limit), so
each contender is reported as wall time ÷ the vendor's **physical limit** (the least time the
vendor needs to answer every case), with cases answered and the 429s the vendor sent. The vendor
is bench/ratevendor.py in its own process (its CPU and k2vv's share no GIL), reset between runs.

Contenders (whole processes: wall time from exec to exit, interpreter start included; peak RSS by GNU time):
- `k2vv`: `python k2vv.py run FILE --base-url URL --model m --cache DIR --out DIR --quiet`, default
  settings (a 32 ceiling, the Pace starting at 4); `k2vv c64`: plus `--concurrency 64`.
- `K2VV c5`, `K2VV c64`: bench/upstream_runner.py, K2VV's semaphore and the openai SDK's retry
  rule (Retry-After honoured, retries while holding the slot), retrying forever as in the issue;
  it also counts the answers K2VV's default `--retries 3` would have lost.

Scenarios (`--only` picks some by name; `bucket-bare` runs only when named):
- `slots`: 16 slots, 200 ms an answer, 429 + Retry-After: 1 beyond (the issue's vendor), 1,000 cases,
  limit 12.5 s. Targets, for default settings and --concurrency 64: all answered, ≤ 1.3× the limit,
  429s < 10% of the cases, ahead of K2VV at any concurrency, latency p50 within 15% of 200 ms.
- `bucket`: a tight token bucket, 10 deep, refilled at 100/s (6,000 RPM), 200 ms an answer, 429 +
  Retry-After and x-ratelimit-* headers; 1,000 cases, limit 10.1 s. `bucket-1s`: one second deep
  (100), limit 9.2 s. `bucket-bare`: the tight one without x-ratelimit headers. K2VV c5 is not run
  against buckets: 5 in flight × 200 ms is 25/s, under the rate, so it runs as against `slots`.
- `slow`: a slow vendor (2 s an answer, 50 slots, Retry-After: 1) with time scaled down 10× (0.2 s,
  Retry-After 0.1), 2,000 cases, limit 8 s; `slow-x4`: scaled down 4× only (0.5 s, 0.25; limit 20 s).
  The ratio must not depend on the scale.
- `latency`: no limit, 300 ms an answer, 32 ceiling, half streamed, 500 cases: p50 must read 300–345 ms.
- `memory`: 20,000 cases at --concurrency 64 against a 20 ms vendor: peak RSS < 100 MB.
  `--memory-variants` adds the same run with MALLOC_ARENA_MAX=2 (glibc's malloc arenas capped at 2)
  and with draft-07's meta-validator compiled in the main thread before the workers start (+1 min).
  `--trace-memory` also runs it under tracemalloc (4 frames; bench/traced_k2vv.py, ~3 min) and
  prints the allocation sites at the traced peak.
`--full` adds 4,000 cases to `slots` and `bucket` (~6 more minutes; K2VV c5 left out: with no 429 it
takes 4,000 / 5 × 200 ms = 160 s, 3.2× the limit). `--timeline` prints what the
vendor admitted per half second (how the controller moved).

Test set: N distinct cases ("What is the weather in city i?"), one tool `get_weather(city)`, odd
cases `"stream": true`; the vendor answers one valid call. Results: $K2VV_BENCH_DIR/results/pace.json
(a run with --only updates the rows it measured). ~5 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import BENCH, PYTHON, ROOT, WORK, fmt_n, run_measured, save_result

TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

SLOTS16 = {"mode": "slots", "slots": 16, "latency": 0.2, "retry_after": "1"}
BUCKET = {"mode": "bucket", "rate": 100.0, "burst": 10, "latency": 0.2, "headers": True}
BUCKET_BARE = dict(BUCKET, headers=False)
BUCKET_1S = dict(BUCKET, burst=100)
SLOW_X10 = {"mode": "slots", "slots": 50, "latency": 0.2, "retry_after": "0.1"}   # 2 s / 50 / 1 s, ÷ 10
SLOW_X4 = {"mode": "slots", "slots": 50, "latency": 0.5, "retry_after": "0.25"}   # the same, ÷ 4
PLAIN300 = {"mode": "plain", "latency": 0.3}
FAST = {"mode": "plain", "latency": 0.02}

K2VV_DEFAULT, K2VV_64 = ("k2vv", []), ("k2vv c64", ["--concurrency", "64"])
# --memory-variants: the two remedies of BENCHMARKS.md §5, measured beside k2vv as it is. ARENA2: glibc
# keeps at most 2 malloc arenas; PREWARM: k2vv through a launcher that compiles draft-07's meta-validator
# in the main thread before any worker starts (k2vv's own memo, so the workers find it; a k2vv without
# metaschema_problem just runs)
ARENA2 = ("k2vv c64 arena2", ["--concurrency", "64"], {"env": {"MALLOC_ARENA_MAX": "2"}})
PREWARM = ("k2vv c64 prewarm", ["--concurrency", "64"], {"prewarm": True})
PREWARM_LAUNCHER = ("import sys; sys.path.insert(0, sys.argv.pop(1)); import k2vv; "
                    "getattr(k2vv, 'metaschema_problem', lambda s: None)({'type': 'object'}); "
                    "sys.exit(k2vv.main(sys.argv[1:]))")
UP_5, UP_64 = ("K2VV c5", 5), ("K2VV c64", 64)

# name -> (vendor, sizes, contenders); a contender is (label, k2vv flags[, options]) or (label, K2VV's concurrency)
SCENARIOS = {
    "slots": (SLOTS16, [1000], [K2VV_DEFAULT, K2VV_64, UP_5, UP_64]),
    "bucket": (BUCKET, [1000], [K2VV_DEFAULT, K2VV_64, UP_64]),
    "bucket-1s": (BUCKET_1S, [1000], [K2VV_DEFAULT, K2VV_64, UP_64]),
    "slow": (SLOW_X10, [2000], [K2VV_DEFAULT, K2VV_64, UP_64]),
    "slow-x4": (SLOW_X4, [2000], [K2VV_64]),
    "latency": (PLAIN300, [500], [("k2vv c32", ["--concurrency", "32"])]),
    "memory": (FAST, [20000], [K2VV_64]),
    "bucket-bare": (BUCKET_BARE, [1000], [K2VV_DEFAULT, K2VV_64, UP_64]),  # only with --only
}
DEFAULT = [name for name in SCENARIOS if name != "bucket-bare"]


# ---- pure --------------------------------------------------------------------------------------

def case_line(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"What is the weather in city {i}?"}],
            "tools": [TOOL], "stream": i % 2 == 1}


def physical_limit(vendor: dict, n: int) -> float | None:
    """The least time the vendor needs to answer n cases (None: no limit)."""
    if vendor["mode"] == "slots":
        return n * vendor["latency"] / vendor["slots"]
    if vendor["mode"] == "bucket":
        return max(0, n - vendor["burst"]) / vendor["rate"] + vendor["latency"]
    return None


def describe(vendor: dict) -> str:
    ms = f"{vendor['latency'] * 1000:g} ms"
    if vendor["mode"] == "slots":
        return f"{vendor['slots']} slots, {ms}, Retry-After {vendor['retry_after']}"
    if vendor["mode"] == "bucket":
        return (f"bucket {vendor['burst']} + {vendor['rate']:g}/s ({vendor['rate'] * 60:,.0f} RPM), {ms}"
                + (", x-ratelimit headers" if vendor.get("headers") else ""))
    return f"no limit, {ms}"


def vendor_flags(vendor: dict) -> list[str]:
    flags = [vendor["mode"], "--latency", str(vendor["latency"])]
    for key in ("slots", "retry_after", "rate", "burst"):
        if key in vendor:
            flags += [f"--{key.replace('_', '-')}", str(vendor[key])]
    return flags + (["--headers"] if vendor.get("headers") else [])


# ---- effects -----------------------------------------------------------------------------------

def start_vendor(vendor: dict) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([PYTHON, str(BENCH / "ratevendor.py"), *vendor_flags(vendor)],
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def vendor_stats(url: str, reset: bool = False) -> dict:
    with urllib.request.urlopen(url.rsplit("/v1", 1)[0] + ("/reset" if reset else "/stats"), timeout=10) as resp:
        return json.loads(resp.read())


def testset(n: int) -> Path:
    path = WORK / "pace" / f"testset-{n}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(case_line(i)) + "\n" for i in range(n)))
    return path


def run_k2vv(k2vv_py: Path, tests: Path, url: str, flags: list[str], folder: Path, opts: dict) -> dict:
    shutil.rmtree(folder, ignore_errors=True)
    program = ["-c", PREWARM_LAUNCHER, str(k2vv_py.parent)] if opts.get("prewarm") else [str(k2vv_py)]
    cmd = [PYTHON, *program, "run", str(tests), "--base-url", url, "--model", "m",
           "--cache", str(folder / "cache"), "--out", str(folder / "out"), "--quiet", *flags]
    seconds, rss, rc, out, err = run_measured(cmd, env=dict(os.environ, OPENAI_API_KEY="sk-bench",
                                                            **opts.get("env", {})))
    if rc not in (0, 1, 3):
        raise SystemExit(f"bench: k2vv run exited {rc}: {err[-2000:]}")
    summary = json.loads((folder / "out" / "summary.json").read_text())
    shutil.rmtree(folder / "cache", ignore_errors=True)
    return {"seconds": seconds, "rss_mb": rss, "answered": summary["success_count"], "runner": summary["runner"],
            "latency": summary["latency"]}


def run_upstream(tests: Path, url: str, concurrency: int) -> dict:
    cmd = [PYTHON, str(BENCH / "upstream_runner.py"), str(tests), url, "--concurrency", str(concurrency),
           "--retries", "inf"]
    seconds, rss, rc, out, err = run_measured(cmd)
    if rc:
        raise SystemExit(f"bench: upstream_runner exited {rc}: {err[-2000:]}")
    data = json.loads(out)
    return {"seconds": seconds, "rss_mb": rss, "answered": data["answered"], "upstream": data,
            "latency": {"p50": data["latency_p50_ms"]}}


def trace_memory(k2vv_py: Path, tests: Path, url: str, flags: list[str], folder: Path) -> str:
    """Run k2vv in a launcher under tracemalloc; the top sites at the traced peak, by line."""
    shutil.rmtree(folder, ignore_errors=True)
    cmd = [PYTHON, "-X", "tracemalloc=4", str(BENCH / "traced_k2vv.py"), str(k2vv_py), str(folder / "top.txt"),
           "run", str(tests), "--base-url", url, "--model", "m",
           "--cache", str(folder / "cache"), "--out", str(folder / "out"), "--quiet", *flags]
    subprocess.run(cmd, capture_output=True, env=dict(os.environ, OPENAI_API_KEY="sk-bench"), check=False)
    return (folder / "top.txt").read_text()


def measure(name: str, vendor: dict, n: int, contenders: list, k2vv_py: Path, url: str,
            timeline: bool = False) -> list[dict]:
    tests, rows = testset(n), []
    for label, how, *opts in contenders:
        if label == "K2VV c5" and n > 1000:  # no 429s at 5 in flight: n / 5 × latency, 160 s at 4,000
            continue
        vendor_stats(url, reset=True)
        if label.startswith("k2vv"):
            row = run_k2vv(k2vv_py, tests, url, how, WORK / "pace" / f"{name}-{n}-{label.replace(' ', '-')}",
                           opts[0] if opts else {})
        else:
            row = run_upstream(tests, url, how)
        row.update(contender=label, vendor=vendor_stats(url))
        limit = physical_limit(vendor, n)
        row["ratio"] = row["seconds"] / limit if limit else None
        rows.append(row)
        print(format_row(name, n, row), flush=True)
        if timeline:
            print("      admitted/429s per 0.5 s: " + " ".join(f"{a}/{b}" if b else str(a)
                                                           for a, b in row["vendor"]["timeline"]), flush=True)
    return rows


def format_row(name: str, n: int, row: dict) -> str:
    v, r = row["vendor"], row.get("runner") or {}
    ratio = f"{row['ratio']:.2f}×" if row["ratio"] else "–"
    pace = f" · settled {r['concurrency_settled']} · 429s seen {r['rate_limited']}" if r else ""
    lost = row.get("upstream", {}).get("lost_with_3_retries")
    lost = f" · {lost} would be lost at K2VV's --retries 3" if lost else ""
    p90 = row["latency"].get("p90")
    latency = f"p50/p90 {row['latency']['p50']:.0f}/{p90:.0f}" if p90 else f"p50 {row['latency']['p50']:.0f}"
    return (f"  {name:9} {fmt_n(n):>6}  {row['contender']:9} {row['seconds']:6.2f} s {ratio:>6} · answered "
            f"{row['answered']:,} · 429s {v['rate_limited']:,} · max in flight {v['max_in_flight']} · {latency} ms"
            f" · {row['rss_mb']:.0f} MB{pace}{lost}")


def recap(rows: dict) -> list[str]:
    """The issue's targets, each met or not, from the rows measured (this run or an earlier one)."""
    out = []
    mark = lambda ok: "met" if ok else "NOT met"
    slots = {r["contender"]: r for r in rows.get("slots-1000", {}).get("contenders", [])}
    upstream = [r["seconds"] for label, r in slots.items() if label.startswith("K2VV")]
    for label in ("k2vv", "k2vv c64"):
        r = slots.get(label)
        if r:
            share = r["vendor"]["rate_limited"] / 1000
            ahead = f"{r['seconds']:.2f} s vs K2VV's best {min(upstream):.2f} s" if upstream else "no K2VV run"
            out += [f"- 16 slots, 1,000 cases, {label}: all answered {mark(r['answered'] == 1000)} "
                    f"({r['answered']:,}); ≤ 1.3× the limit {mark(r['ratio'] <= 1.3)} ({r['ratio']:.2f}×); "
                    f"429s < 10% {mark(share < 0.1)} ({share:.1%}); ahead of K2VV "
                    f"{mark(bool(upstream) and r['seconds'] < min(upstream))} ({ahead}); p50 within 15% of 200 ms "
                    f"{mark(r['latency']['p50'] <= 230)} ({r['latency']['p50']:.0f} ms)"]
    for r in rows.get("latency-500", {}).get("contenders", []):
        p50 = r["latency"]["p50"]
        out.append(f"- 300 ms vendor, 32 ceiling, half streamed: p50 300–345 ms {mark(300 <= p50 <= 345)} "
                   f"({p50:.0f} ms; p90 {r['latency']['p90']:.0f} ms)")
    for r in rows.get("memory-20000", {}).get("contenders", []):
        if r["contender"] == "k2vv c64":
            out.append(f"- 20,000 cases at --concurrency 64: peak RSS < 100 MB {mark(r['rss_mb'] < 100)} "
                       f"({r['rss_mb']:.0f} MB)")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k2vv", type=Path, default=ROOT / "k2vv.py", help="the k2vv.py to measure")
    parser.add_argument("--only", help=f"comma-separated scenarios of {', '.join(SCENARIOS)}")
    parser.add_argument("--full", action="store_true", help="also 4,000 cases against slots and bucket")
    parser.add_argument("--memory-variants", action="store_true",
                        help="memory: also k2vv with MALLOC_ARENA_MAX=2, and with the meta-validator compiled first")
    parser.add_argument("--timeline", action="store_true", help="print what the vendor admitted per 0.5 s")
    parser.add_argument("--trace-memory", action="store_true", help="also trace the memory scenario's allocations")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else DEFAULT
    result = {"k2vv": str(args.k2vv), "rows": {}, "vendors": {}}
    started = time.monotonic()
    for name in names:
        vendor, sizes, contenders = SCENARIOS[name]
        sizes = sizes + [4000] if args.full and name in ("slots", "bucket") else sizes
        contenders = contenders + [ARENA2, PREWARM] if args.memory_variants and name == "memory" else contenders
        result["vendors"][name] = describe(vendor)
        print(f"{name}: {describe(vendor)}", flush=True)
        proc, url = start_vendor(vendor)
        try:
            for n in sizes:
                limit = physical_limit(vendor, n)
                print(f"  {fmt_n(n)} cases, physical limit " + (f"{limit:.2f} s" if limit else "none"), flush=True)
                result["rows"][f"{name}-{n}"] = {"limit": limit, "contenders": measure(
                    name, vendor, n, contenders, args.k2vv, url, args.timeline)}
            if name == "memory" and args.trace_memory:
                vendor_stats(url, reset=True)
                result["memory_trace"] = trace_memory(args.k2vv, testset(sizes[0]), url, contenders[0][1],
                                                      WORK / "pace" / "memory-traced")
                print(result["memory_trace"])
        finally:
            proc.terminate()
            proc.wait(10)
    suffix = "" if args.k2vv == ROOT / "k2vv.py" else "-" + args.k2vv.parent.name
    earlier = WORK / "results" / f"pace{suffix}.json"
    if args.only and earlier.exists():  # a partial run updates the rows it measured
        old = json.loads(earlier.read_text())
        result = dict(old, **{k: v for k, v in result.items() if k not in ("rows", "vendors")},
                      rows=dict(old["rows"], **result["rows"]), vendors=dict(old["vendors"], **result["vendors"]))
    path = save_result("pace" + suffix, result)
    print("\n".join(recap(result["rows"])))
    print(f"bench_pace: {time.monotonic() - started:.0f} s; {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
