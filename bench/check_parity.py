"""Check that the benchmark measures the real thing: a cache written directly by the benchmark
(bench/common.py: ResponseCache.set under build_job's keys) scores exactly like one filled by
`k2vv run` against a real SimVendor("sloppy") over HTTP.

    .venv/bin/python bench/check_parity.py [N]        # default N = 200 per workload

For each workload: start SimVendor("sloppy") on 127.0.0.1, `k2vv run` the first N cases (distinct:
built from its first N/2 source lines, so half are renamed variants) into
cache A; write cache B directly with the vendor's URL; then check that (1) the benchmark's keys
are build_job's keys, (2) every stored exchange has the same status and body / SSE lines in A and
B, (3) `k2vv score` over B prints the same summary as `k2vv run` over A except the fields that
come from the clock (latency, eval_started_at/finished_at/duration_ms). Also prints the share of
schema-breaking answers (sloppy spoils ~25% of tool-call answers). Exit 1 on any difference.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

from common import (MODEL, PYTHON, ROOT, breakage_of, fill_caches, k2vv, k2vv_sim, keyed_body, run_measured,
                    workload_lines, workload_sources, write_jsonl)

CLOCK_FIELDS = ("latency", "eval_started_at", "eval_finished_at", "eval_duration_ms", "runner")  # + how the run went


def without_clock(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in CLOCK_FIELDS}


def stored(cache_dir: Path, keys: list[str]) -> dict:
    with k2vv.open_cache(cache_dir, readonly=True) as cache:
        out = {}
        for key in keys:
            ex = cache.get(key)
            out[key] = None if ex is None else (ex["status"], ex.get("body"), ex.get("sse_lines"))
        return out


def check(name: str, n: int, tmp: Path) -> list[str]:
    problems = []
    sources = workload_sources(name)
    if name == "distinct":  # half as many source lines as cases, so renamed variants are checked too
        sources = sources[:n // 2]
    lines = workload_lines(name, n, sources)
    testset = tmp / f"{name}.jsonl"
    write_jsonl(testset, lines)
    with k2vv_sim.SimVendor("sloppy") as vendor:
        url = vendor.url
        seconds, _, rc, out, err = run_measured(
            [PYTHON, str(ROOT / "k2vv.py"), "run", str(testset), "--base-url", url, "--model", MODEL,
             "--cache", str(tmp / f"{name}-A"), "--out", str(tmp / f"{name}-runA"), "--json", "--quiet",
             "--concurrency", "8"])
        received = vendor.count
    if rc not in (0, 1, 3):
        return [f"{name}: k2vv run exited {rc}: {err[-500:]}"]
    summary_run = json.loads(out)
    keyed = [keyed_body(line, url) for line in lines]
    args = k2vv.build_parser().parse_args(["score", str(testset), "--base-url", url, "--model", MODEL])
    args.dataset = args.file
    job = k2vv.build_job(args)
    if [it.key for case in job.cases([]) for it in job.items(case)] != [k for k, _ in keyed]:
        problems.append(f"{name}: the benchmark's keys differ from build_job's")
    fill_caches({n: tmp / f"{name}-B"}, lines, url)
    keys = [k for k, _ in keyed]
    a, b = stored(tmp / f"{name}-A", keys), stored(tmp / f"{name}-B", keys)
    differ = [k for k in keys if a[k] != b[k]]
    if differ:
        problems.append(f"{name}: {len(differ)} of {n} stored exchanges differ (first key {differ[0][:12]})")
    _, _, rc, out, err = run_measured(
        [PYTHON, str(ROOT / "k2vv.py"), "score", str(testset), "--base-url", url, "--model", MODEL,
         "--cache", str(tmp / f"{name}-B"), "--out", str(tmp / f"{name}-scoreB"), "--json"])
    summary_score = json.loads(out)
    if without_clock(summary_run) != without_clock(summary_score):
        diff = [k for k in summary_run if summary_run.get(k) != summary_score.get(k) and k not in CLOCK_FIELDS]
        problems.append(f"{name}: summaries differ in {diff}")
    breakages = Counter(breakage_of(body) for _, body in keyed)
    spoiled = sum(v for k, v in breakages.items() if k)
    tool_call_answers = summary_run["finish_tool_calls"]
    responses = summary_run["classes"]["responses"]
    print(f"{name:9} N={n}: run sent {received} requests in {seconds:.1f} s; score over the direct cache: "
          f"{'same summary' if not problems else 'DIFFERENT'} (schema_accuracy {summary_run['schema_accuracy']}); "
          f"sloppy spoiled {spoiled} of {tool_call_answers} tool-call answers ({spoiled / tool_call_answers:.0%}), "
          f"{spoiled / n:.0%} of all answers; responses {dict((k, v) for k, v in responses.items() if v)}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="k2vv-parity-") as tmp:
        problems = check("repeated", args.n, Path(tmp)) + check("distinct", args.n, Path(tmp))
    for p in problems:
        print("PARITY PROBLEM:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
