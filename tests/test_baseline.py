"""`--baseline` through `main`, every form of it: a provider's cached answers (NAME), a results
file (FILE: K2VV's or k2vv's own), a run directory, and the results inside an official K2VV
`tool-calls.tar.gz` (`official`, `official:NAME`). Each form must pair the same cases and give the
same counts; with two results files in the archive the run's model decides, never member order."""
import io
import json
import tarfile

import pytest

import k2vv
import k2vv_sim
from conftest import FIXTURES

LIMIT = 60
MODEL = "kimi-k2-sim"


@pytest.fixture(scope="module")
def vendors():
    with k2vv_sim.SimVendor("reference") as ref, k2vv_sim.SimVendor("drifting") as drift:
        yield ref, drift


@pytest.fixture
def runs(tmp_path, vendors):
    """A providers file naming both vendors, and one run of each (the reference first)."""
    ref, drift = vendors
    providers = tmp_path / "providers.toml"
    providers.write_text("".join(f'[providers.{name}]\nbase_url = "{v.url}"\nmodel = "{MODEL}"\n'
                                 "api_key_required = false\nconcurrency = 8\n\n"
                                 for name, v in (("ref", ref), ("drift", drift))))
    common = ["--providers", str(providers), "--cache", str(tmp_path / "cache"), "--limit", str(LIMIT)]
    for name in ("ref", "drift"):
        k2vv.main(["run", "--provider", name, "--out", str(tmp_path / name), "--quiet", *common])
    return common


def drift_against(tmp_path, common, baseline, *extra) -> tuple[int, dict]:
    out = tmp_path / "against"
    code = k2vv.main(["score", *extra, "--provider", "drift", "--out", str(out), "--baseline", baseline, *common])
    summary = json.loads((out / "summary.json").read_text()) if code != 2 else {}
    return code, summary.get("baseline") or {}


COUNTS = ("pairs", "TP", "FP", "FN", "TN", "f1")


def test_every_form_of_baseline_gives_the_same_counts(tmp_path, runs, capsys):
    code, by_name = drift_against(tmp_path, runs, "ref")
    assert by_name["source"] == "cache" and by_name["pairs"] == LIMIT
    assert by_name["FP"] + by_name["FN"] > 0  # drifting flips call/no-call: the baseline must see it
    for form in (str(tmp_path / "ref" / "results.jsonl"), str(tmp_path / "ref")):
        code_form, base = drift_against(tmp_path, runs, form)
        assert (code_form, {k: base[k] for k in COUNTS}) == (code, {k: by_name[k] for k in COUNTS}), form
        assert base["file"] == str(tmp_path / "ref" / "results.jsonl")


def test_a_run_directory_without_results_is_one_clear_line(tmp_path, runs, capsys):
    (tmp_path / "empty-run").mkdir()
    assert drift_against(tmp_path, runs, str(tmp_path / "empty-run"))[0] == 2
    assert "a directory without results.jsonl" in capsys.readouterr().err


def official_archive(path, members: list[tuple[str, bytes]]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_official_with_one_results_file(tmp_path, runs):
    samples = (FIXTURES / "testset.jsonl").read_bytes()
    ref_results = (tmp_path / "ref" / "results.jsonl").read_bytes()
    archive = official_archive(tmp_path / "tool-calls.tar.gz", [("tool-calls/samples.jsonl", samples),
                                                                ("tool-calls/results.jsonl", ref_results)])
    _, by_file = drift_against(tmp_path, runs, str(tmp_path / "ref" / "results.jsonl"))
    # the same test set, read from the archive: same cache keys, same answers
    code, official = drift_against(tmp_path, runs, "official", archive)
    assert official["name"] == "official" and official["file"] == "tool-calls/results.jsonl"
    assert {k: official[k] for k in COUNTS} == {k: by_file[k] for k in COUNTS}


@pytest.mark.parametrize("order", ["model_first", "other_first"])
def test_official_with_two_results_files_follows_the_model_not_the_order(tmp_path, runs, capsys, order):
    samples = (FIXTURES / "testset.jsonl").read_bytes()
    results = {f"tool-calls/{MODEL}_results.jsonl": (tmp_path / "ref" / "results.jsonl").read_bytes(),
               "tool-calls/kimi-k2-thinking_results.jsonl": (tmp_path / "drift" / "results.jsonl").read_bytes()}
    members = list(results.items()) if order == "model_first" else list(reversed(results.items()))
    archive = official_archive(tmp_path / "tool-calls.tar.gz", [("tool-calls/samples.jsonl", samples), *members])

    _, official = drift_against(tmp_path, runs, "official", archive)
    assert official["file"] == f"tool-calls/{MODEL}_results.jsonl"
    assert official["FP"] + official["FN"] > 0  # against the reference's answers, not drifting's own

    _, chosen = drift_against(tmp_path, runs, "official:kimi-k2-thinking", archive)
    assert chosen["file"] == "tool-calls/kimi-k2-thinking_results.jsonl"
    assert chosen["FP"] + chosen["FN"] == 0  # drifting against its own answers agrees everywhere

    capsys.readouterr()
    code, _ = drift_against(tmp_path, runs, "official", archive, "--model", "another-model")
    err = capsys.readouterr().err
    assert code == 2 and "none is named after model 'another-model'" in err
    assert f"--baseline official:{MODEL}" in err and "--baseline official:kimi-k2-thinking" in err


def test_official_without_results_in_the_test_set_says_what_it_needs(tmp_path, runs, capsys):
    assert drift_against(tmp_path, runs, "official")[0] == 2
    assert "--baseline official needs a K2VV results file inside the test set" in capsys.readouterr().err
