"""Why a vendor diverges, through `main`: JUnit for a CI's test view, `k2vv diff` of two runs case by
case. Against simulated vendors on 127.0.0.1 (real sockets, real cache, real files)."""
import json
import xml.etree.ElementTree as ET

import pytest

import k2vv
import k2vv_report
import k2vv_sim

LIMIT = "60"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A reference, a sloppy and a drifting run of the bundled set's first 60 cases, one cache."""
    tmp = tmp_path_factory.mktemp("why")
    with k2vv_sim.SimVendor("reference") as ref, k2vv_sim.SimVendor("sloppy") as sloppy, \
            k2vv_sim.SimVendor("drifting") as drift:
        providers = tmp / "providers.toml"
        providers.write_text("".join(f'[providers.{n}]\nbase_url = "{v.url}"\nmodel = "m"\napi_key_required = false\n'
                                     for n, v in (("ref", ref), ("sloppy", sloppy), ("drift", drift))))
        common = ["--providers", str(providers), "--cache", str(tmp / "cache"), "--limit", LIMIT]
        for name in ("ref", "sloppy", "drift"):
            k2vv.main(["run", "--provider", name, "--out", str(tmp / name), "--junit", str(tmp / f"{name}.xml"),
                       "--quiet", *common])
    return tmp, common


def lines(run_dir):
    return [json.loads(l) for l in (run_dir / "results.jsonl").read_text().splitlines()]


def test_junit_has_one_testcase_per_case_and_fails_exactly_the_failing_ones(runs):
    tmp, _ = runs
    suite = ET.parse(tmp / "sloppy.xml").getroot()
    cases = suite.findall("testcase")
    results = lines(tmp / "sloppy")
    failing = [r for r in results if r["response_class"] in k2vv_report.JUNIT_FAILURES]
    assert len(cases) == len(results) == int(LIMIT) and int(suite.get("tests")) == len(cases)
    assert int(suite.get("failures")) == len(failing) > 0
    failed = {c.get("name"): c.find("failure").get("message") for c in cases if c.find("failure") is not None}
    mismatch = next(r for r in failing if any(c["class"] == "schema_mismatch" for c in r["calls"]))
    call = next(c for c in mismatch["calls"] if c["class"] == "schema_mismatch")
    message = failed[k2vv_report.case_label(mismatch)]
    assert message.startswith("invalid: schema_mismatch in tool") and repr(call["name"]) in message
    assert f"at {call['pointer'] or '/'}" in message


def test_score_writes_the_same_junit_as_run(runs):
    tmp, common = runs
    assert k2vv.main(["score", "--provider", "sloppy", "--out", str(tmp / "sloppy-score"),
                      "--junit", str(tmp / "sloppy-score.xml"), *common]) == 1
    assert (tmp / "sloppy-score.xml").read_bytes() == (tmp / "sloppy.xml").read_bytes()


def test_diff_names_each_trigger_flip_and_exits_1(runs, capsys):
    tmp, _ = runs
    assert k2vv.main(["diff", str(tmp / "ref"), str(tmp / "drift")]) == 1
    out = capsys.readouterr().out.splitlines()
    flips = [l for l in out if "trigger:" in l]
    ref = {r["data_index"]: r["finish_reason"] == "tool_calls" for r in lines(tmp / "ref")}
    drift = {r["data_index"]: r["finish_reason"] == "tool_calls" for r in lines(tmp / "drift")}
    assert len(flips) == sum(ref[i] != drift[i] for i in ref) > 0
    assert all(l.startswith("data_index ") for l in flips)


def test_diff_of_a_run_with_itself_is_empty(runs, capsys):
    tmp, _ = runs
    assert k2vv.main(["diff", str(tmp / "sloppy"), str(tmp / "sloppy" / "results.jsonl")]) == 0
    assert capsys.readouterr().out == ""


def test_diff_says_what_it_needs(tmp_path, capsys):
    assert k2vv.main(["diff", str(tmp_path), str(tmp_path)]) == 2
    assert "no results.jsonl there" in capsys.readouterr().err


def test_junit_stays_xml_whatever_the_vendor_wrote():
    line = json.dumps({"data_index": 1, "case_id": "c\x01<&>", "response_class": "invalid", "error_class": None,
                       "calls": [{"name": "f\x00", "class": "schema_mismatch", "pointer": "/a", "message": "\ud800 ]]>"}]})
    root = ET.fromstring(k2vv_report.junit_xml(k2vv.results_records([line]), "k2vv.x"))
    assert root.find("testcase").get("name") == "c\ufffd<&>" and root.get("failures") == "1"
