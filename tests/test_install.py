"""`pip install` gives the whole tool: build the wheel for real, install it into a fresh venv, and
run every command from an empty directory, where nothing of the checkout can be found by accident.

The wheel is built by `./build.sh wheel` (pip fetches the build backend from PyPI); the runtime
wheels come from the wheelhouse build.sh keeps, so the install itself is offline.
"""
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import ROOT, write_jsonl

BASE_ENV = {k: v for k, v in os.environ.items() if k != "SHIV_ROOT"}  # before clean_env edits os.environ
WHEELHOUSE = BASE_ENV.get("K2VV_WHEELHOUSE", str(ROOT / "wheelhouse"))

# Tool schemas that need the bundled meta-schemas and the $ref resolver: draft-07 named, a $ref, a pattern.
TOOLS = [{"type": "function", "function": {"name": "book", "parameters": {
    "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
    "definitions": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}},
    "properties": {"from": {"$ref": "#/definitions/code"}, "to": {"$ref": "#/definitions/code"},
                   "seats": {"type": "integer", "minimum": 1}},
    "required": ["from", "to"], "additionalProperties": False}}}]
LINES = [{"id": f"case-{i}", "messages": [{"role": "user", "content": f"Book {i} seats from PAR to TYO"}],
          "tools": TOOLS, "stream": i % 2 == 0} for i in range(1, 9)]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh venv holding only the wheel and its pinned dependencies."""
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(["bash", str(ROOT / "build.sh"), "wheel"], cwd=ROOT, capture_output=True, text=True,
                          env=dict(BASE_ENV, K2VV_WHEELHOUSE=WHEELHOUSE), timeout=600)
    assert proc.returncode == 0, f"./build.sh wheel failed:\n{proc.stdout}{proc.stderr}"
    wheel = sorted((ROOT / "dist").glob("k2vv-*-py3-none-any.whl"))[-1]
    target = dist / "venv"
    venv.create(target, with_pip=True)
    proc = subprocess.run([str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           "--no-index", "--find-links", WHEELHOUSE, str(wheel)],
                          capture_output=True, text=True, env=BASE_ENV, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target / "bin"


def k2vv(bin_dir: Path, cwd: Path, *argv, code: int = 0) -> str:
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(cwd), "NO_PROXY": "127.0.0.1"}
    proc = subprocess.run([str(bin_dir / "k2vv"), *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, f"k2vv {' '.join(argv)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


def test_the_wheel_carries_the_modules_and_the_data(installed):
    site = next((installed.parent / "lib").glob("python3.*/site-packages"))
    for module in ("k2vv.py", "k2vv_sim.py", "k2vv_report.py"):
        assert (site / module).is_file()
    assert (site / "k2vv_data" / "fixtures" / "testset.jsonl").is_file()
    assert (site / "k2vv_data" / "schemas" / "meta" / "draft-07.json").is_file()
    assert not (site / "fixtures").exists() and not (site / "schemas").exists()  # no top-level names to collide


def test_every_command_works_from_an_empty_directory(installed, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    version = k2vv(installed, empty, "--version")
    assert "sha256 " in version and "missing" not in version
    # the bundled set has five dataset faults (BFCL tools whose integer or boolean enums hold strings)
    assert "299 cases, 383 distinct tool schemas, 5 problems," in k2vv(installed, empty, "lint", code=1)
    testset = write_jsonl(tmp_path / "refs.jsonl", LINES)
    assert "8 cases, 1 distinct tool schemas, 0 problems" in k2vv(installed, empty, "lint", str(testset))
    env = {"PATH": f"{installed}:/usr/bin:/bin", "HOME": str(empty)}
    with subprocess.Popen([str(installed / "k2vv"), "serve-sim", "--personality", "reference", "--port", "0"],
                          cwd=empty, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as sim:
        try:
            url = sim.stdout.readline().strip()
            job = ["--base-url", url, "--model", "m", "--cache", str(empty / "cache")]
            # no baseline: F1 cannot be measured, so the verdict is inconclusive (exit 3)
            k2vv(installed, empty, "run", str(testset), *job, "--out", "run", "--quiet", code=3)
        finally:
            sim.terminate()
            sim.wait(10)
    run = json.loads((empty / "run" / "summary.json").read_text())
    assert run["success_count"] == len(LINES) and run["classes"]["calls"]["unscored"] == 0
    assert run["schema_validation_error_count"] == 0 and run["successful_tool_call_count"] > 0
    k2vv(installed, empty, "score", str(testset), *job, "--out", "score", code=3)
    assert (empty / "score" / "summary.json").read_bytes() == (empty / "run" / "summary.json").read_bytes()
    k2vv(installed, empty, "demo", "--limit", "20", "--out", "demo")
    k2vv(installed, empty, "report", "demo/reference", "demo/sloppy", "--out", "report")
    assert {p.name for p in (empty / "report").iterdir()} >= {"report.json", "report.md", "report.html"}
