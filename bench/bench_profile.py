"""Profile k2vv's hot paths with cProfile: `score` over the repeated and distinct workloads, and
`run` against the instant loopback server (worker threads profiled too, merged).

    .venv/bin/python bench/bench_profile.py [--score-n 100000] [--run-n 2000] [--k2vv PATH] [--top 25]

Each profile is k2vv.main([...]) in this process, `score` with --jobs 1 (cProfile slows Python
code ~1.5-2x, so read shares, not seconds; the program's GC tuning is off in-process). Listings go to $K2VV_BENCH_DIR/profiles/*.txt and the raw stats to *.prof;
the top lines by own time are printed. Worker threads' times are wall times summed over 16 threads
(a thread waiting on SQLite's lock or the GIL inside a call counts there), so for `run` read call
counts and the main thread's lines, not seconds.
"""
from __future__ import annotations

import argparse
import cProfile
import contextlib
import importlib.util
import io
import pstats
import shutil
import sys
import threading
import time
from pathlib import Path

from common import MODEL, ROOT, URL, WORK, workload
from common import workload_lines, workload_sources, write_jsonl


def load_k2vv(path: Path):
    """The k2vv.py at `path` as module `k2vv_under_test` (the repo's k2vv stays the generator)."""
    spec = importlib.util.spec_from_file_location("k2vv_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def profiled(fn, threads: bool) -> tuple[pstats.Stats, float]:
    """Run fn() under cProfile (and every thread it starts, when `threads`); merged stats, seconds."""
    profiles, original_run = [], threading.Thread.run

    def run(self):
        p = cProfile.Profile()
        profiles.append(p)
        p.enable()
        try:
            original_run(self)
        finally:
            p.disable()

    if threads:
        threading.Thread.run = run
    main = cProfile.Profile()
    started = time.perf_counter()
    main.enable()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            fn()
    finally:
        main.disable()
        threading.Thread.run = original_run
    seconds = time.perf_counter() - started
    stats = pstats.Stats(main)
    for p in profiles:
        stats.add(p)
    return stats, seconds


def report(name: str, stats: pstats.Stats, seconds: float, top: int) -> None:
    folder = WORK / "profiles"
    folder.mkdir(parents=True, exist_ok=True)
    stats.dump_stats(str(folder / f"{name}.prof"))  # for pstats: print_callers("canonical_json") etc.
    stats.strip_dirs()
    for order in ("tottime", "cumulative"):
        stats.stream = io.StringIO()
        stats.sort_stats(order).print_stats(80)
        (folder / f"{name}.{order}.txt").write_text(stats.stream.getvalue())
    stats.stream = io.StringIO()
    stats.sort_stats("tottime").print_stats(top)
    body = stats.stream.getvalue()
    body = body[body.index("   ncalls"):] if "   ncalls" in body else body
    print(f"== {name}: {seconds:.2f} s under cProfile (listings: {folder}/{name}.*.txt)\n{body.rstrip()}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--score-n", type=int, default=100_000)
    parser.add_argument("--run-n", type=int, default=2000)
    parser.add_argument("--k2vv", type=Path, default=ROOT / "k2vv.py")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--only", choices=("score", "run"), help="profile only this command")
    args = parser.parse_args()
    k2 = load_k2vv(args.k2vv)
    out = WORK / "profile-out"
    if args.only != "run":
        for name in ("repeated", "distinct"):
            testset, cache_dir = workload(name, args.score_n)
            argv = ["score", str(testset), "--base-url", URL, "--model", MODEL, "--cache", str(cache_dir),
                    "--out", str(out), "--json", "--jobs", "1"]  # one process: the per-case work, not a fork
            stats, seconds = profiled(lambda: k2.main(argv), threads=False)
            report(f"score-{name}-{args.score_n}", stats, seconds, args.top)
    if args.only != "score":
        from bench_runner import start_server
        folder = WORK / "profile-run"
        shutil.rmtree(folder, ignore_errors=True)
        testset = folder / "testset.jsonl"
        write_jsonl(testset, workload_lines("repeated", args.run_n, workload_sources("repeated")))
        server, url = start_server()
        try:
            argv = ["run", str(testset), "--base-url", url, "--model", MODEL, "--cache", str(folder / "cache"),
                    "--out", str(folder / "out"), "--concurrency", "16", "--json"]
            stats, seconds = profiled(lambda: k2.main(argv), threads=True)
        finally:
            server.terminate()
            server.wait(10)
        report(f"run-{args.run_n}", stats, seconds, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
