"""`k2vv demo` end to end (real sockets, real cache, real files), the CLI's help, and the README's
promises about commands."""
import json
import re

import pytest

import k2vv
from conftest import ROOT


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
    html = (tmp_path / "demo" / "report" / "report.html").read_text()
    assert html.count('class="bar-group"') == 4
    out = capsys.readouterr().out
    for name in ("reference", "sloppy", "flaky", "drifting"):
        assert name in out


def test_serve_sim_rejects_an_unknown_personality(capsys):
    with pytest.raises(SystemExit) as exit_info:
        k2vv.main(["serve-sim", "--personality", "nosuch"])
    assert exit_info.value.code == 2


COMMANDS = ["run", "score", "report", "lint", "providers", "demo", "serve-sim"]


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
