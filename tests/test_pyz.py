"""The zipapp: build dist/k2vv.pyz with build.sh for real, then inspect and run it.

The first build downloads the pinned wheels into ./wheelhouse; later builds (and the clone
builds, which share that wheelhouse through K2VV_WHEELHOUSE) are offline. A build that cannot
get the wheels (build.sh exits 75) fails the tests: a skip would let CI pass without a zipapp.
Only a missing tool (git, an old Python to refuse) skips.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ("build.sh", "requirements.lock", "requirements-build.lock")
BUILD_INPUTS = ("k2vv.py", "k2vv_cache.py", "k2vv_http.py", "k2vv_judge.py", "k2vv_providers.py", "k2vv_report.py", "k2vv_sim.py", "k2vv_stats.py", "k2vv_wire.py", "fixtures", "schemas") + PACKAGING
# Taken at import, before any autouse fixture edits os.environ (proxies and the pip config matter
# for the first download).
BASE_ENV = {k: v for k, v in os.environ.items() if k != "SHIV_ROOT"}
BUILD_ENV = dict(BASE_ENV, K2VV_WHEELHOUSE=BASE_ENV.get("K2VV_WHEELHOUSE", str(ROOT / "wheelhouse")))


def build(src: Path) -> Path:
    proc = subprocess.run(["bash", str(src / "build.sh")], cwd=src, env=BUILD_ENV,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode == 75:
        pytest.fail("build.sh could not get the pinned wheels (offline, empty wheelhouse?) in %s:\n%s%s"
                    % (src, proc.stdout, proc.stderr), pytrace=False)
    assert proc.returncode == 0, "build.sh failed in %s:\n%s%s" % (src, proc.stdout, proc.stderr)
    return src / "dist" / "k2vv.pyz"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def find_python(version: str):
    for p in sorted(Path("/root/.pyenv/versions").glob(version + ".*/bin/python")):
        return str(p)
    return shutil.which("python" + version)


@pytest.fixture(scope="module")
def pyz():
    return build(ROOT)


def test_shebang_is_env_python3(pyz):
    with open(pyz, "rb") as f:
        assert f.readline() == b"#!/usr/bin/env python3\n"
    assert os.access(pyz, os.X_OK)


def test_archive_holds_k2vv_and_data_and_nothing_compiled(pyz):
    names = zipfile.ZipFile(pyz).namelist()
    assert [n for n in names if n.endswith((".so", ".pyd")) or ".so." in n] == []
    for required in ("__main__.py", "environment.json", "_bootstrap/__init__.py",
                     "site-packages/k2vv.py", "site-packages/k2vv_cache.py", "site-packages/k2vv_http.py", "site-packages/k2vv_judge.py", "site-packages/k2vv_providers.py", "site-packages/k2vv_report.py", "site-packages/k2vv_sim.py", "site-packages/k2vv_stats.py", "site-packages/k2vv_wire.py",
                     "site-packages/requests/__init__.py"):
        assert required in names
    for top in ("fixtures", "schemas"):
        for f in (ROOT / top).rglob("*") if (ROOT / top).is_dir() else ():
            rel = f.relative_to(ROOT)
            if f.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
                assert "site-packages/" + rel.as_posix() in names


def test_two_fresh_clones_build_identical_bytes(pyz, tmp_path_factory):
    """A clone holds only committed files; build files not committed yet are copied in."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    clones = []
    for name in ("clone-a", "clone-b/deeper"):   # different paths and path lengths
        dest = tmp_path_factory.mktemp("pyz") / name
        subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True, env=BASE_ENV)
        for f in PACKAGING:
            if not (dest / f).exists():
                shutil.copy2(ROOT / f, dest / f)
        clones.append(dest)
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(build, clones)
    assert sha256(a) == sha256(b)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", *BUILD_INPUTS],
                           cwd=ROOT, capture_output=True, text=True).stdout
    if not dirty:   # the working tree is the commit: its build must match too
        assert sha256(pyz) == sha256(a)


@pytest.mark.parametrize("home", ["nonexistent", "under-a-file"])
def test_version_runs_without_usable_home(pyz, tmp_path_factory, home):
    """'nonexistent': shiv creates it and extracts when it may (root can); 'under-a-file':
    nobody can create it, so the patched __main__.py imports straight from the zip.
    (Not under tmp_path: an extraction holds schemas/summary.json, which conftest would check.)"""
    base = tmp_path_factory.mktemp("pyz-home")
    (base / "a-file").write_text("")
    env = dict(BASE_ENV, HOME=str(base / ("nonexistent" if home == "nonexistent" else "a-file/home")))
    proc = subprocess.run([sys.executable, str(pyz), "--version"], env=env, cwd=base,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("k2vv ")


@pytest.mark.parametrize("version", ["3.8", "3.9"])
def test_old_python_gets_one_line_refusal_and_exit_2(pyz, tmp_path, version):
    python = find_python(version)
    if python is None:
        pytest.skip("python%s not installed" % version)
    env = dict(BASE_ENV, HOME=str(tmp_path))
    proc = subprocess.run([python, str(pyz), "--version"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "3.10" in lines[0] and "found " + version in lines[0], proc.stderr
    assert not (tmp_path / ".shiv").exists()   # refused before extracting anything
