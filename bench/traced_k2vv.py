"""Run one k2vv command under tracemalloc and write where its memory was at the traced peak.

    .venv/bin/python -X tracemalloc=25 bench/traced_k2vv.py K2VV_PY REPORT.txt run FILE --base-url URL ...

A sampler thread takes a snapshot whenever the traced total grows 2% past the last one (every
0.5 s), so the report shows the allocation sites near the peak, not at exit. Tracing makes k2vv
several times slower and adds its own memory: read sizes and sites, not the RSS.
"""
import importlib.util
import sys
import threading
import tracemalloc
from pathlib import Path


def main(k2vv_py: str, report: str, argv: list) -> int:
    if not tracemalloc.is_tracing():
        tracemalloc.start(25)
    best = {"peak": 0, "snap": None}
    done = threading.Event()

    def sample():
        while not done.wait(0.5):
            current, _ = tracemalloc.get_traced_memory()
            if current > best["peak"] * 1.02:
                best["peak"], best["snap"] = current, tracemalloc.take_snapshot()
    threading.Thread(target=sample, daemon=True).start()
    spec = importlib.util.spec_from_file_location("k2vv", k2vv_py)
    k2vv = sys.modules["k2vv"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(k2vv)
    try:
        return k2vv.main(argv)
    finally:
        done.set()
        snap = best["snap"].filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        lines = [f"traced peak {best['peak'] / 2**20:.1f} MiB (sampled every 0.5 s); "
                 f"tracemalloc's own peak {tracemalloc.get_traced_memory()[1] / 2**20:.1f} MiB", "by line:"]
        lines += [f"  {s.size / 2**20:7.2f} MiB {s.count:9,} blocks  {s.traceback[0]}"
                  for s in snap.statistics("lineno")[:15]]
        lines.append("by file:")
        lines += [f"  {s.size / 2**20:7.2f} MiB  {s.traceback[0].filename}" for s in snap.statistics("filename")[:8]]
        lines.append("largest call sites (the 4 innermost frames, outermost first):")
        for s in snap.statistics("traceback")[:6]:
            lines.append(f"  {s.size / 2**20:7.2f} MiB {s.count:9,} blocks")
            lines += [f"      {frame}" for frame in list(s.traceback)[-4:]]  # oldest first
        Path(report).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
