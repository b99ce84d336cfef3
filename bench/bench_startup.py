"""Start-up: the zipapp's first run (fresh SHIV_ROOT: shiv extracts its site-packages) vs warm,
`python k2vv.py --help`, and proof that `--help` and `score` never import `requests`.

    .venv/bin/python bench/bench_startup.py [--repeat 5]

Builds dist/k2vv.pyz with ./build.sh only if it is missing. `./dist/k2vv.pyz` runs through its
shebang (`/usr/bin/env python3`, whatever that resolves to here, e.g. a pyenv shim), so it is
also timed as `PYTHON dist/k2vv.pyz` to separate the launcher's cost. Best of `--repeat`; every
first run gets its own empty SHIV_ROOT. The import check runs `python -X importtime` on
`k2vv.py --help`, `k2vv.py score` (over the 1,000-case repeated workload) and the same through
the pyz, and lists every imported module whose top-level package is requests or urllib3.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from common import MODEL, PYTHON, ROOT, URL, WORK, run_measured, save_result, workload

PYZ = ROOT / "dist" / "k2vv.pyz"
NETWORK_MODULES = ("requests", "urllib3", "http.client", "ssl")


def best(cmd: list, repeat: int, env=None, fresh_root: bool = False) -> float:
    times = []
    for _ in range(repeat):
        root = tempfile.mkdtemp(prefix="k2vv-shiv-") if fresh_root else None
        run_env = dict(env or os.environ, **({"SHIV_ROOT": root} if root else {}))
        seconds, _, rc, _, err = run_measured(cmd, env=run_env)
        if root:
            shutil.rmtree(root, ignore_errors=True)
        if rc != 0:
            raise SystemExit(f"bench: {' '.join(map(str, cmd))} exited {rc}: {err[-500:]}")
        times.append(seconds)
    return min(times)


def imported(cmd: list) -> list[str]:
    """Modules a command imports whose top-level name is a network one."""
    proc = subprocess.run([PYTHON, "-X", "importtime", *cmd], capture_output=True, text=True)
    names = [line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return sorted({n for n in names if n.split(".")[0] in ("requests", "urllib3") or n in NETWORK_MODULES})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not PYZ.exists():
        subprocess.run([str(ROOT / "build.sh")], cwd=ROOT, check=True)
    inside = zipfile.ZipFile(PYZ).read("site-packages/k2vv.py") if "site-packages/k2vv.py" in \
        zipfile.ZipFile(PYZ).namelist() else b""
    current = inside == (ROOT / "k2vv.py").read_bytes()
    warm_root = tempfile.mkdtemp(prefix="k2vv-shiv-warm-")
    warm_env = dict(os.environ, SHIV_ROOT=warm_root)
    run_measured([str(PYZ), "--help"], env=warm_env)  # extract once
    r = {
        "python_pass": best([PYTHON, "-c", "pass"], args.repeat),
        "pyz_first": best([str(PYZ), "--help"], min(3, args.repeat), fresh_root=True),
        "pyz_warm": best([str(PYZ), "--help"], args.repeat, env=warm_env),
        "pyz_first_direct": best([PYTHON, str(PYZ), "--help"], min(3, args.repeat), fresh_root=True),
        "pyz_warm_direct": best([PYTHON, str(PYZ), "--help"], args.repeat, env=warm_env),
        "py_help": best([PYTHON, str(ROOT / "k2vv.py"), "--help"], args.repeat),
        "pyz_is_current": current,
        "env_python3": shutil.which("python3"),
    }
    testset, cache_dir = workload("repeated", 1000)
    score = ["score", str(testset), "--base-url", URL, "--model", MODEL, "--cache", str(cache_dir),
             "--out", str(WORK / "startup-out")]
    checks = {"k2vv.py --help": imported([str(ROOT / "k2vv.py"), "--help"]),
              "k2vv.py score": imported([str(ROOT / "k2vv.py"), *score])}
    os.environ["SHIV_ROOT"] = warm_root
    checks["k2vv.pyz --help"] = imported([str(PYZ), "--help"])
    checks["k2vv.pyz score"] = imported([str(PYZ), *score])
    shutil.rmtree(warm_root, ignore_errors=True)
    r["network_imports"] = checks
    save_result("startup", r)
    print(f"start-up (best of {args.repeat}; `python -c pass` {r['python_pass'] * 1000:.0f} ms)")
    print(f"  ./dist/k2vv.pyz --help   first run (fresh SHIV_ROOT) {r['pyz_first']:.3f} s | warm {r['pyz_warm']:.3f} s"
          f"   (via {r['env_python3']})")
    print(f"  python dist/k2vv.pyz --help   first run {r['pyz_first_direct']:.3f} s | warm {r['pyz_warm_direct']:.3f} s")
    print(f"  python k2vv.py --help   {r['py_help']:.3f} s")
    if not current:
        print("  note: dist/k2vv.pyz does not hold the current k2vv.py (run ./build.sh to rebuild it)")
    for name, modules in checks.items():
        print(f"  {name}: {'imports ' + ', '.join(modules) if modules else 'never imports requests, urllib3, http.client or ssl'}")
    return 1 if any(checks.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
