#!/usr/bin/env bash
# Run every k2vv benchmark, contenders side by side, and print the ratios.
#
#   bench/run.sh              parity check, score, runner, scaling, pace, start-up, then the recap (< 15 min
#                             on 2 cores: ~5 of them pace, ~2 generating the workloads on a first run)
#   bench/run.sh --profile    also bench_profile.py (score at 100,000 under cProfile: several more minutes)
#
# Environment: K2VV (the k2vv.py to measure; default ./k2vv.py), PYTHON (default .venv/bin/python),
# K2VV_BENCH_DIR (workloads, caches and results; default /tmp/k2vv-bench; ~1.5 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
K2VV=${K2VV:-$PWD/k2vv.py}
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start )) s)"; }

step "parity: a directly written cache scores like a real run"
$PY bench/check_parity.py 300
step "scoring throughput"
$PY bench/bench_score.py --k2vv "$K2VV"
step "runner overhead"
$PY bench/bench_runner.py --k2vv "$K2VV"
step "scaling"
$PY bench/bench_scaling.py --k2vv "$K2VV"
step "pace: slow and rate-limited vendors (wall ÷ the vendor's physical limit)"
$PY bench/bench_pace.py --k2vv "$K2VV"
step "start-up"
$PY bench/bench_startup.py || true   # exit 1 = a network import: printed above, recap still wanted
if [ "${1:-}" = --profile ]; then
    step "profiles"
    $PY bench/bench_profile.py --k2vv "$K2VV"
fi
step "recap"
if [ "$K2VV" = "$PWD/k2vv.py" ]; then $PY bench/report.py; else $PY bench/report.py --variant "$(basename "$(dirname "$K2VV")")"; fi
echo "bench/run.sh: $(( $(date +%s) - start )) s"
