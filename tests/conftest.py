"""Shared fixtures: a clean environment for every test, a check of every summary.json a test
writes against schemas/summary.json, and simulated vendors on 127.0.0.1."""
import json
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import k2vv  # noqa: E402

FIXTURES = ROOT / "fixtures"
EXCHANGES = sorted((FIXTURES / "exchanges").glob("*.json"))
FAKE_KEY = "sk-k2vv-TEST-d0n0tl3ak-5e3c7a9f1b2d4e6f"  # recognisable: grep finds it anywhere it leaks


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No test sees the developer's keys, proxies, cache or config (as requests' own tests do)."""
    for name in list(os.environ):
        if name.endswith("_API_KEY") or name.startswith("K2VV_") or name.lower().endswith("_proxy") \
                or name in ("XDG_CONFIG_HOME", "SHIV_ROOT"):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.chdir(tmp_path)
    yield


_SUMMARY_VALIDATOR = None


def check_summary(summary: dict) -> dict:
    """Validate a summary against schemas/summary.json (with the judge the project ships)."""
    global _SUMMARY_VALIDATOR
    if _SUMMARY_VALIDATOR is None:
        import fastjsonschema
        _SUMMARY_VALIDATOR = fastjsonschema.compile(json.loads((ROOT / "schemas" / "summary.json").read_text()))
    _SUMMARY_VALIDATOR(summary)
    return summary


@pytest.fixture(autouse=True)
def every_summary_matches_its_schema(tmp_path):
    """After each test, every summary.json it wrote must validate against schemas/summary.json."""
    yield
    for path in tmp_path.rglob("summary.json"):
        if path.parent.name != "schemas":  # the schema itself, e.g. inside an extracted pyz
            check_summary(json.loads(path.read_text()))


def load_exchange(path: Path) -> dict:
    return json.loads(path.read_text())


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def call_verdict(parameters, instance) -> str:
    """'valid' | 'invalid' | 'unscored': the verdict the product gives a call with these arguments
    (through k2vv.classify_call, the function that scores every call of a run)."""
    arguments = json.dumps(instance, ensure_ascii=False)  # as a vendor sends them: JSON text
    result = k2vv.classify_call({"name": "f", "arguments": arguments}, {"f": parameters})
    return {"valid": "valid", "schema_mismatch": "invalid", "unscored": "unscored"}[result.cls]


def wait_until(predicate, what: str, timeout: float = 60.0, proc=None, tick: float = 0.01) -> None:
    """Poll `predicate` every `tick` seconds until it holds; fail the test naming `what` when
    `timeout` seconds pass first, or at once when `proc` (what should make it true) has exited."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None and not predicate():
            pytest.fail(f"the process exited with {proc.returncode} before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"still not {what} after {timeout} s")
        time.sleep(tick)
