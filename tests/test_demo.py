"""`k2vv demo` end to end (real sockets, real cache, real files), the CLI's help, and the README's
promises about commands."""
import json
import re
import subprocess
from pathlib import Path

import pytest

import k2vv
from conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")


def test_demo_shows_each_personality_for_what_it_is(tmp_path, capsys):
    assert k2vv.main(["demo", "--out", str(tmp_path / "demo")]) == 0
    report = json.loads((tmp_path / "demo" / "report" / "report.json").read_text())
    rows = {row["provider"]: row for row in report["rows"]}
    assert rows["reference"]["verdict"]["status"] == "pass"
    assert rows["flaky"]["verdict"]["status"] == "pass" and rows["flaky"]["retries"] > 0
    sloppy, drifting = rows["sloppy"], rows["drifting"]
    assert sloppy["verdict"]["status"] == "fail" and sloppy["schema_accuracy_ci"][1] < 0.95
    assert drifting["verdict"]["status"] == "fail" and drifting["f1_ci"][1] < 0.80
    assert drifting["schema_accuracy_ci"][0] >= 0.95  # it fails on trigger agreement alone
    assert {f["class"] for f in sloppy["top_failures"]} >= {"schema_mismatch", "empty_tool_calls", "unknown_tool"}
    # why each failed, in report.json: drifting's trigger disagreements, sloppy's arguments
    causes = {name: [c["cause"] for c in row["why"]] for name, row in rows.items()}
    assert causes["drifting"][:2] == ["false_negatives", "false_positives"]
    assert drifting["why"][0]["example"].startswith("data_index ") and "the baseline called" in drifting["why"][0]["example"]
    assert {"schema", "arguments"} <= set(causes["sloppy"]) and causes["sloppy"][0] == "schema"
    assert not {"false_negatives", "false_positives", "schema"} & set(causes["reference"])
    assert sloppy["confusion"]["TP"] > 0 and drifting["precision"] < 1 and drifting["latency"]["p50"] > 0
    html = (tmp_path / "demo" / "report" / "report.html").read_text()
    assert html.count('class="bar-group"') == 4
    assert "did not call tools where the baseline did" in html and "arguments that fail the tool" in html
    out = capsys.readouterr().out
    for name in ("reference", "sloppy", "flaky", "drifting"):
        assert name in out
    if CHROMIUM.exists():  # as a browser shows it: the causes are text on the page, not only in the file
        dom = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              "--disable-background-networking", "--disable-component-update", "--disable-sync",
                              f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                              (tmp_path / "demo" / "report" / "report.html").as_uri()],
                             capture_output=True, text=True, timeout=120).stdout
        assert "did not call tools where the baseline did" in dom and "arguments that fail the tool" in dom


def test_serve_sim_rejects_an_unknown_personality(capsys):
    with pytest.raises(SystemExit) as exit_info:
        k2vv.main(["serve-sim", "--personality", "nosuch"])
    assert exit_info.value.code == 2


COMMANDS = ["run", "score", "report", "lint", "providers", "demo", "serve-sim", "probe"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example_and_is_in_the_readme(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        k2vv.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out
    assert re.search(rf"\bk2vv {re.escape(command)}\b", (ROOT / "README.md").read_text())


def test_readme_names_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    assert "./build.sh demo" in readme and "./build.sh test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./build.sh test" in ci
