"""First contact: every setup mistake a newcomer makes gets one clear line, exit 2, within seconds,
with (almost) nothing sent; what a newcomer reads (banner, tables, messages) fits 80 columns and
leads somewhere. Everything goes through `k2vv.main` (or a subprocess where the terminal or the
interpreter matters), against loopback vendors."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import k2vv
import k2vv_sim
from conftest import FAKE_KEY, ROOT, write_jsonl

LINE = {"messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]}


def cases(tmp_path, n=30) -> str:
    return str(write_jsonl(tmp_path / "cases.jsonl",
                           [dict(LINE, messages=[{"role": "user", "content": f"weather {i}"}]) for i in range(n)]))


def run(tmp_path, url, *extra, model="m"):
    return ["run", cases(tmp_path), "--base-url", url, "--model", model, "--cache", str(tmp_path / "cache"),
            "--quiet", *extra]


def one_line(err: str) -> str:
    """The one line that says what is wrong (the banner and the request count may precede it)."""
    lines = [l for l in err.splitlines() if l.startswith("k2vv: ") and "requests sent" not in l]
    assert lines and "Traceback" not in err, err
    return lines[-1]


def stopped_after(line: str) -> int:
    return int(re.search(r"stopped after (\d+) request", line).group(1))


# ---- 1. fail fast on setup faults ---------------------------------------------------------------

def test_nothing_listening_is_named_at_once(tmp_path, capsys):
    import socket
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    assert k2vv.main(run(tmp_path, f"http://127.0.0.1:{port}/v1", "--concurrency", "4")) == 2
    assert time.monotonic() - started < 30
    line = one_line(capsys.readouterr().err)
    assert f"nothing is listening at http://127.0.0.1:{port}/v1/chat/completions (connection refused)" in line
    assert stopped_after(line) <= 3 * 4


def test_an_unknown_host_is_named(tmp_path, capsys):
    assert k2vv.main(run(tmp_path, "http://no-such-host.invalid/v1")) == 2
    assert "the host 'no-such-host.invalid'" in one_line(capsys.readouterr().err)


def test_a_model_the_server_does_not_serve_prints_the_vendors_message(tmp_path, capsys):
    with k2vv_sim.SimVendor("reference", script=lambda body, attempt: "404") as v:
        assert k2vv.main(run(tmp_path, v.url, "--concurrency", "2", model="kimi-k3")) == 2
        line = one_line(capsys.readouterr().err)
        assert "does not serve model 'kimi-k3'" in line and "The model `kimi-k3` does not exist" in line
        assert "--model" in line and len(v.received) <= 3 * 2


def test_a_wrong_path_is_a_wrong_url_not_a_wrong_model(tmp_path, capsys):
    with k2vv_sim.SimVendor("reference") as v:
        assert k2vv.main(run(tmp_path, v.url.replace("/v1", "/api"))) == 2
        line = one_line(capsys.readouterr().err)
        assert "HTTP 404 (not found): Not Found: check --base-url" in line


@pytest.mark.parametrize("status, words", [(402, "payment required"), (405, "method not allowed")])
def test_402_and_405_to_everything_stop_the_run(tmp_path, capsys, status, words):
    with k2vv_sim.SimVendor("reference", script=lambda body, attempt: f"status:{status}") as v:
        assert k2vv.main(run(tmp_path, v.url, "--concurrency", "3")) == 2
        line = one_line(capsys.readouterr().err)
        assert f"HTTP {status} ({words})" in line and len(v.received) <= 3 * 3


@pytest.mark.parametrize("via_flag", [True, False])
def test_a_refused_key_names_where_the_key_came_from(tmp_path, capsys, monkeypatch, via_flag):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    with k2vv_sim.SimVendor("reference", script=lambda body, attempt: "401") as v:
        extra = ["--api-key", FAKE_KEY + "x"] if via_flag else []
        assert k2vv.main(run(tmp_path, v.url, *extra)) == 2
        err = capsys.readouterr().err
        assert ("check the key in --api-key" if via_flag else "check the key in the environment variable "
                "OPENAI_API_KEY") in one_line(err)
        assert FAKE_KEY not in err and len(v.received) <= 5  # what was in flight when the first 401 came


# ---- 2. every other setup error: one line, exit 2, nothing sent ----------------------------------

@pytest.fixture
def vendor():
    with k2vv_sim.SimVendor("reference") as v:
        yield v


@pytest.mark.parametrize("extra, words", [
    (["--out", "{file}/out"], "cannot write there"),
    (["--summary", "{file}/s/summary.json"], "choose another --summary"),
    (["--output", "{file}/r/results.jsonl"], "choose another --output"),
    (["--timeout", "inf"], "--timeout must be a number of seconds above 0"),
    (["--concurrency", "40000"], "--concurrency must be at most 1024"),
    (["--temperature", "nan"], "--temperature must be a finite number"),
    (["--extra-body", '{"x": NaN}'], "--extra-body is not standard JSON"),
    (["--extra-body", '{"messages": 5}'], "--extra-body sets messages"),
    (["--limit", "0"], "--limit must be at least 1"),
])
def test_setup_errors_are_one_line_and_nothing_is_sent(tmp_path, capsys, vendor, extra, words):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    argv = run(tmp_path, vendor.url, *[x.replace("{file}", str(a_file)) for x in extra])
    with pytest.raises(SystemExit) if extra[0] in ("--timeout", "--concurrency", "--temperature", "--limit") \
            else _returns(2) as outcome:
        outcome.code = k2vv.main(argv)
    assert vendor.received == []
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


class _returns:
    """`with _returns(2) as r: r.code = main(...)`: the same shape as pytest.raises(SystemExit)."""
    def __init__(self, expected):
        self.expected, self.code = expected, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        assert exc[0] is None and self.code == self.expected
        return False


@pytest.mark.parametrize("entry, words", [
    ("timeout = nan", "timeout: nan is not a finite number"),
    ('headers = { "X-Title" = "k2vv ✓ 検証" }', "characters outside Latin-1"),
    ('headers = { "Bad Header" = "x" }', "not a valid header name"),
])
def test_a_provider_entry_http_cannot_carry_is_one_line(tmp_path, capsys, vendor, entry, words):
    providers = tmp_path / "p.toml"
    providers.write_text(f'[providers.v]\nbase_url = "{vendor.url}"\nmodel = "m"\napi_key_required = false\n{entry}\n')
    assert k2vv.main(["run", cases(tmp_path), "--providers", str(providers), "--provider", "v",
                      "--cache", str(tmp_path / "c")]) == 2
    assert words in capsys.readouterr().err and vendor.received == []


# ---- 3. input is checked, not repaired -------------------------------------------------------------

def test_a_line_that_is_not_utf8_is_reported_not_repaired(tmp_path, capsys, vendor):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(json.dumps(LINE).encode() + b"\n" + b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n')
    assert k2vv.main(run(tmp_path, vendor.url)[:1] + [str(bad)] + run(tmp_path, vendor.url)[2:]) == 2
    assert f"{bad}:2: not UTF-8 at byte 47" in capsys.readouterr().err and vendor.received == []


def test_an_empty_test_set_says_so(tmp_path, capsys, vendor):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert k2vv.main(["run", str(empty), "--base-url", vendor.url, "--model", "m", "--cache", str(tmp_path / "c")]) == 2
    assert "no cases" in capsys.readouterr().err and vendor.received == []


def test_a_line_cut_short_is_reported_where_it_ends(tmp_path, capsys):
    cut = tmp_path / "cut.jsonl"
    cut.write_text(json.dumps(LINE) + "\n" + json.dumps(LINE)[:40] + "\n")
    assert k2vv.main(["lint", str(cut)]) == 2
    assert re.search(rf"{re.escape(str(cut))}:2: not JSON: .*\(column (\d+)\)", capsys.readouterr().err)


# ---- 4. messages that lead somewhere ---------------------------------------------------------------

def test_an_entry_without_a_key_variable_says_what_to_add(tmp_path, capsys, vendor):
    providers = tmp_path / "p.toml"
    providers.write_text(f'[providers.v]\nbase_url = "{vendor.url}"\nmodel = "m"\n')
    assert k2vv.main(["run", cases(tmp_path), "--providers", str(providers), "--provider", "v"]) == 2
    err = capsys.readouterr().err
    assert "names no variable" in err and "api_key_env" in err and "api_key_required = false" in err
    assert "OPENAI_API_KEY" not in err


def test_providers_says_key_set_missing_or_not_needed_within_80_columns(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MOONSHOT_API_KEY", FAKE_KEY)
    assert k2vv.main(["providers"]) == 0
    out = capsys.readouterr().out
    assert "moonshot           key set (MOONSHOT_API_KEY)" in out
    assert re.search(r"openrouter\s+key missing \(OPENROUTER_API_KEY\)", out)
    assert re.search(r"vllm\s+no key needed", out) and FAKE_KEY not in out
    assert max(len(l) for l in out.splitlines()) <= 80


def test_score_with_no_answer_says_what_the_cache_holds(tmp_path, capsys, vendor):
    assert k2vv.main(run(tmp_path, vendor.url, model="kimi-k2")) == 3
    capsys.readouterr()
    assert k2vv.main(["score", cases(tmp_path), "--base-url", vendor.url, "--model", "kimi-k3",
                      "--cache", str(tmp_path / "cache")]) == 3
    err = capsys.readouterr().err
    assert f"holds answers for {vendor.url}/chat/completions · kimi-k2 (30 answers)" in err


# ---- 5. what a newcomer sees -------------------------------------------------------------------------

def test_the_banner_comes_before_the_first_request_and_lines_fit_80_columns(tmp_path):
    with k2vv_sim.SimVendor("sloppy") as v:
        env = dict(os.environ, COLUMNS="80")
        proc = subprocess.run([sys.executable, str(ROOT / "k2vv.py"), "run", "--base-url",
                               "http://user:pw@" + v.url[len("http://"):], "--model", "m", "--limit", "40",
                               "--cache", str(tmp_path / "c"), "--quiet"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    banner = proc.stderr.splitlines()[:2]
    assert banner[0].startswith(f"k2vv: 127.0.0.1_{v.port} · {v.url}/chat/completions · model m")
    assert "40 requests (0 cached, 40 to send) · concurrency 32" in banner[1] and "pw" not in proc.stderr
    assert max(len(l) for l in proc.stdout.splitlines()) <= 80
    assert "{" not in proc.stdout  # no Python reprs


def test_two_models_on_one_endpoint_get_two_run_directories(tmp_path, vendor):
    for model in ("kimi-k2", "kimi-k2-thinking"):
        assert k2vv.main(["run", cases(tmp_path), "--base-url", vendor.url, "--model", model, "--quiet"]) == 3
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == \
        [f"127.0.0.1_{vendor.port}-kimi-k2", f"127.0.0.1_{vendor.port}-kimi-k2-thinking"]
    assert k2vv.main(["report"]) == 0  # every runs/*/: one endpoint, two models, two rows named apart
    rows = json.loads((tmp_path / "runs" / "report" / "report.json").read_text())["rows"]
    assert sorted(r["provider"] for r in rows) == [f"127.0.0.1_{vendor.port} · kimi-k2",
                                                    f"127.0.0.1_{vendor.port} · kimi-k2-thinking"]


# ---- 7. old Pythons ----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["3.8", "3.9"])
def test_old_pythons_are_refused_with_what_to_do(version):
    found = sorted(Path("/root/.pyenv/versions").glob(f"{version}.*/bin/python"))
    if not found:
        pytest.skip(f"python{version} not installed")
    proc = subprocess.run([str(found[0]), str(ROOT / "k2vv.py"), "--version"], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert f"found {version}" in proc.stderr and "python3.11" in proc.stderr and "deadsnakes" in proc.stderr
