"""Shared pieces of the k2vv benchmarks: workloads (pure), then files, caches and processes (effects).

Workloads are generated from the gzipped open data in tests/data/, never from anywhere else:

- **repeated** (K2VV-like): case i reuses the tools of one of the first 40 lines of
  k2vv-dialect.jsonl.gz with a distinct `tools` array (i % 40) and that line's messages, with
  " (case i)" appended to the last user message, so every body, case id and answer is distinct
  while only 40 tool sets (8 distinct parameter schemas) exist.
- **distinct** (BFCL-like): case i is line i % 2,251 of bfcl-live.jsonl.gz (1,670 distinct
  parameter schemas); in round r = i // 2,251 > 0 the first property of every function's
  `parameters` is renamed NAME_vR (in `required` too) and the id becomes `ID#r`. A renamed
  property is a new schema by any measure (hash or shape), so k2vv compiles it again, as it would
  a truly new one; the simulated vendor answers with the new name, so the share of valid and
  invalid answers stays that of the original lines.

Every case's `stream` flag is a hash of its number (about half stream). Answers are what
`SimVendor("sloppy")` would send (`k2vv_sim._sim_answer` -> `_sim_completion` / `_sim_chunks`), stored
as runner-shaped exchanges under exactly the keys `k2vv run --base-url URL --model MODEL` uses.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = ROOT / "tests" / "data"
sys.path.insert(0, str(ROOT))
import k2vv  # noqa: E402  (the repo's k2vv: generates every workload; contenders may be a copy)
import k2vv_providers  # noqa: E402
import k2vv_sim  # noqa: E402

PYTHON = os.environ.get("K2VV_BENCH_PYTHON") or sys.executable
WORK = Path(os.environ.get("K2VV_BENCH_DIR") or "/tmp/k2vv-bench")
URL = "http://127.0.0.1:8000/v1"   # what `score --base-url` gets; nothing listens there
MODEL = "kimi-k2-sim"
TOOL_SETS = 40
PERSONALITY = "sloppy"
WORKLOADS = ("repeated", "distinct")


# ---- pure: workload lines and answers ------------------------------------------------------------

def _streams(i: int) -> bool:
    return hashlib.sha256(b"stream:%d" % i).digest()[0] & 1 == 1


def pick_tool_sets(lines: list[dict], count: int = TOOL_SETS) -> list[dict]:
    """The first `count` lines whose `tools` arrays differ."""
    seen, out = set(), []
    for line in lines:
        key = json.dumps(line.get("tools"), sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(line)
        if len(out) == count:
            break
    return out


def repeated_line(sources: list[dict], i: int) -> dict:
    src = sources[i % len(sources)]
    messages = [dict(m) for m in src["messages"]]
    last_user = max(j for j, m in enumerate(messages) if m["role"] == "user")
    messages[last_user]["content"] = f"{messages[last_user]['content']} (case {i})"
    return dict(src, messages=messages, stream=_streams(i))


def _renamed(parameters, r: int):
    """`parameters` with its first property renamed NAME_vR (in `required` too): a schema with a
    new structure, so no cache keyed on the schema's hash or on its shape can share it."""
    props = parameters.get("properties") if isinstance(parameters, dict) else None
    if not isinstance(props, dict) or not props:
        return parameters
    first = next(iter(props))
    new = f"{first}_v{r}"
    out = dict(parameters, properties={new if k == first else k: v for k, v in props.items()})
    if isinstance(parameters.get("required"), list):
        out["required"] = [new if k == first else k for k in parameters["required"]]
    return out


def distinct_line(sources: list[dict], i: int) -> dict:
    src = sources[i % len(sources)]
    r = i // len(sources)
    line = dict(src, stream=_streams(i))
    if r:
        line["id"] = f"{src['id']}#{r}"
        line["tools"] = [dict(t, function=dict(t["function"], parameters=_renamed(t["function"].get("parameters"), r)))
                         for t in src["tools"]]
    return line


def workload_lines(name: str, n: int, sources: list[dict]) -> list[dict]:
    make = repeated_line if name == "repeated" else distinct_line
    return [make(sources, i) for i in range(n)]


def exchange_of(body: dict, i: int) -> dict:
    """The exchange the runner would store for SimVendor(PERSONALITY)'s answer to `body` (the
    prepared body), with a made-up but plausible timing and timestamp. The vendor answers the
    body it receives: the runner sends canonical JSON, so the keys arrive sorted (and the argument
    generator follows key order)."""
    body = json.loads(k2vv.canonical_json(body))
    answer = k2vv_sim._sim_answer(PERSONALITY, body, 0)
    ttfb = 80 + (i * 37) % 400
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1735689600 + i // 100)) + f".{i % 1000:03d}Z"
    headers = {"server": "k2vv-sim/1", "x-request-id": f"sim-{i + 1:06d}"}
    if body.get("stream") is True:
        usage = (body.get("stream_options") or {}).get("include_usage") is True
        lines = [json.dumps(c, ensure_ascii=False) for c in k2vv_sim._sim_chunks(answer, usage)] + ["[DONE]"]
        exchange = {"status": 200, "sse_lines": lines,
                    "headers": dict(headers, **{"content-type": "text/event-stream; charset=utf-8"})}
    else:
        exchange = {"status": 200, "body": k2vv_sim._sim_completion(answer),
                    "headers": dict(headers, **{"content-type": "application/json"})}
    exchange["timing"] = {"ttfb_ms": float(ttfb), "total_ms": float(ttfb + 20 + i % 50)}
    exchange.update(v=k2vv.CACHE_VERSION, attempts=1, at=at)
    return exchange


def breakage_of(body: dict) -> str | None:
    return k2vv_sim._sim_answer(PERSONALITY, json.loads(k2vv.canonical_json(body)), 0)["breakage"]


def keyed_body(line: dict, url: str = URL, model: str = MODEL) -> tuple[str, dict]:
    """(cache key, prepared body) of one test-set line, as build_job computes them for `k2vv
    run/score FILE --base-url url --model model`: prepare_request (which drops the k2vv-only keys,
    as reading the test set does) and the cache key with the provider's URL and public headers."""
    provider = k2vv_providers.Provider(name="bench", base_url=url, model=model, api_key_required=False)
    body = k2vv.prepare_request(line, provider.model, None, None, {}, False)
    frame = k2vv.key_frame(provider.url, provider.public_headers())
    return k2vv.payload_key(k2vv.canonical_json(body), frame, 0), body


# ---- effects: files, caches, processes ----------------------------------------------------------

def read_gz_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip()]


def workload_sources(name: str) -> list[dict]:
    if name == "repeated":
        return pick_tool_sets(read_gz_lines(DATA / "k2vv-dialect.jsonl.gz"))
    return read_gz_lines(DATA / "bfcl-live.jsonl.gz")


def write_jsonl(path: Path, lines: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")


def _answer_chunk(job):
    start, lines, url = job
    out = []
    for j, line in enumerate(lines):
        key, body = keyed_body(line, url)
        out.append((key, exchange_of(body, start + j)))
    return out


def fill_caches(cache_dirs: dict, lines: list[dict], url: str = URL) -> None:
    """Write the answers to `lines` with k2vv's own ResponseCache.store_many: cache_dirs maps n -> a
    cache that gets the first n (one transaction per 500; keys and answers made on 2 processes)."""
    import contextlib
    from multiprocessing import Pool
    step = 500
    jobs = [(s, lines[s:s + step], url) for s in range(0, len(lines), step)]
    with contextlib.ExitStack() as stack:
        caches = [(n, stack.enter_context(k2vv.open_cache(d))) for n, d in cache_dirs.items()]
        pool = stack.enter_context(Pool(min(2, os.cpu_count() or 1)))
        for (start, _, _), answers in zip(jobs, pool.imap(_answer_chunk, jobs)):
            values = [(key, k2vv.canonical_json(exchange)) for key, exchange in answers]
            for n, cache in caches:
                cache.store_many(values[:max(0, n - start)])


def stamp_of(name: str, n: int) -> str:
    """What a stored workload must match to be reused: the generator's settings and a sample of
    its output (keys and answers of a few cases, renamed variants included), so a change in
    k2vv's sim or cache keys regenerates it and an unrelated edit of k2vv.py does not."""
    lines = workload_lines(name, min(n, 2260), workload_sources(name))
    sample = [lines[i] for i in sorted({0, 1, 2, 3, len(lines) // 2, len(lines) - 1})]
    h = hashlib.sha256(repr((name, n, URL, MODEL, TOOL_SETS, PERSONALITY)).encode())
    for i, line in enumerate(sample):
        key, body = keyed_body(line)
        h.update(key.encode() + k2vv.canonical_json(exchange_of(body, i)))
    return h.hexdigest()[:16]


def workloads(name: str, sizes) -> dict:
    """{n: (test set path, cache dir)} for a workload at each size; what is missing (per stamp)
    is generated in one pass: the first n cases of a workload are the workload of n cases."""
    import shutil
    out, missing = {}, {}
    for n in sizes:
        folder = WORK / f"{name}-{n}"
        out[n] = folder / "testset.jsonl", folder / "cache"
        stamp = stamp_of(name, n)
        if not (folder / "stamp").exists() or (folder / "stamp").read_text() != stamp:
            shutil.rmtree(folder, ignore_errors=True)
            missing[n] = folder, stamp
    if missing:
        started = time.monotonic()
        lines = workload_lines(name, max(missing), workload_sources(name))
        for n, (folder, _) in missing.items():
            write_jsonl(folder / "testset.jsonl", lines[:n])
        fill_caches({n: folder / "cache" for n, (folder, _) in missing.items()}, lines)
        for folder, stamp in missing.values():
            (folder / "stamp").write_text(stamp)
        print(f"  (generated {name} N={', '.join(fmt_n(n) for n in sorted(missing))} in "
              f"{time.monotonic() - started:.0f} s under {WORK})", file=sys.stderr)
    return out


def workload(name: str, n: int) -> tuple[Path, Path]:
    return workloads(name, [n])[n]


def run_measured(cmd: list[str], **kw) -> tuple[float, float, int, str, str]:
    """(wall seconds, peak RSS MB, exit code, stdout, stderr) of one child process. Peak RSS comes
    from GNU time's %M: the rusage of a child forked from *this* (big) process would start at this
    process's RSS (vfork/fork share its pages until exec), and RUSAGE_CHILDREN is the max so far."""
    import tempfile
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        started = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *map(str, cmd)],
                              capture_output=True, **kw)
        seconds = time.perf_counter() - started
        peak_kb = int((rss.read().strip().splitlines() or ["0"])[-1])
    return (seconds, peak_kb / 1024, proc.returncode,
            proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def best_of(times: int, cmd: list[str], ok=(0, 1, 3), **kw) -> tuple[float, float]:
    """(best wall seconds, peak RSS MB of the best run) over `times` runs; a run must exit with `ok`."""
    best = None
    for _ in range(times):
        seconds, rss, rc, out, err = run_measured(cmd, **kw)
        if rc not in ok:
            raise SystemExit(f"bench: {' '.join(map(str, cmd))} exited {rc}:\n{err[-2000:]}")
        if best is None or seconds < best[0]:
            best = (seconds, rss)
    return best


def k2vv_score_cmd(k2vv_py: Path, testset: Path, cache_dir: Path, out_dir: Path) -> list[str]:
    return [PYTHON, str(k2vv_py), "score", str(testset), "--base-url", URL, "--model", MODEL,
            "--cache", str(cache_dir), "--out", str(out_dir), "--json"]


def machine(k2vv_py: Path = ROOT / "k2vv.py") -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "k2vv.py"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"), "commit": commit + ("+dirty k2vv.py" if dirty else ""),
            "k2vv_sha256": hashlib.sha256(Path(k2vv_py).read_bytes()).hexdigest()[:12]}


def fmt_n(n: int) -> str:
    return f"{n:,}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×"


def save_result(name: str, data: dict) -> Path:
    """Results go to WORK/results/NAME.json so BENCHMARKS.md can be written from them."""
    path = WORK / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(data, machine=machine(data.get("k2vv") or ROOT / "k2vv.py")), indent=2) + "\n")
    return path
