"""`score` split between forked processes gives what one process gives, byte for byte: the
summary, the verdict, every bad line and the limit. Answers come from real runs against simulated
vendors on 127.0.0.1; `score` itself runs as a subprocess (a fresh interpreter: forking pytest,
whose vendors run threads, would not be what users run)."""
import json
import subprocess
import sys

import pytest

import k2vv
import k2vv_sim  # noqa: E402
from conftest import ROOT


def big_test_set(path, copies=3):
    """The bundled cases, `copies` times, each copy's user turns made distinct (~900 lines: shares
    of 256 lines go to every process), with a few ids, blank lines (some only Unicode spaces) and a
    temperature of its own."""
    lines = k2vv.resource(k2vv.BUNDLED_TESTSET).decode().splitlines()
    out = []
    for copy in range(copies):
        for i, text in enumerate(lines):
            line = json.loads(text)
            for msg in line["messages"]:
                if msg.get("role") == "user" and isinstance(msg.get("content"), str):
                    msg["content"] += f" (copy {copy})"
            if "id" in line or i % 50 == 7:
                line["id"] = f"{line.get('id', 'case')}#{copy}-{i}"
            if i % 97 == 3:
                line["temperature"] = 0.3
            out.append(json.dumps(line))
            if i % 211 == 5:
                out.append("")
            if i % 211 == 100:
                out.append("\u00a0\u3000")  # blank to str.strip, not to bytes.strip
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def score(tmp_path, testset, *extra, out="s"):
    proc = subprocess.run([sys.executable, str(ROOT / "k2vv.py"), "score", str(testset), "--provider", "sloppy",
                           "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / out), "--json", *extra],
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def answered(tmp_path_factory):
    """A cache holding a sloppy vendor's answers (2 trials) and a drifting vendor's (it calls
    tools on other cases: F1 below 1, a real interval), for a ~900-line test set. With no baseline
    the drifting vendor is inconclusive (its schemas are right, F1 is unmeasured) and the sloppy
    one fails (its schema accuracy is far below 0.95); simulated answers are seeded by the request."""
    tmp_path = tmp_path_factory.mktemp("processes")
    testset = big_test_set(tmp_path / "big.jsonl")
    with k2vv_sim.SimVendor("sloppy") as sloppy, k2vv_sim.SimVendor("drifting") as drift:
        (tmp_path / "k2vv.toml").write_text(
            f'[providers.sloppy]\nbase_url = "{sloppy.url}"\nmodel = "kimi-k2"\napi_key_required = false\n'
            f'[providers.drift]\nbase_url = "{drift.url}"\nmodel = "kimi-k2"\napi_key_required = false\n')
        for name, trials, code in (("drift", "1", k2vv.EXIT_INCONCLUSIVE), ("sloppy", "2", k2vv.EXIT_FAIL)):
            assert k2vv.main(["run", str(testset), "--providers", str(tmp_path / "k2vv.toml"), "--provider", name,
                              "--trials", trials, "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / name),
                              "--concurrency", "8", "--quiet"]) == code
    return tmp_path, testset


@pytest.mark.parametrize("flags", [
    ["--trials", "2", "--baseline", "drift"],
    ["--trials", "2", "--limit", "500"],
    ["--limit", "300", "--baseline", "drift", "--min-f1", "0.5"],
])
def test_shares_merge_into_the_single_pass_summary(answered, flags):
    tmp_path, testset = answered
    providers = ["--providers", str(tmp_path / "k2vv.toml")]
    one = score(tmp_path, testset, *providers, *flags, "--jobs", "1", out="one")
    assert one[0] == k2vv.EXIT_FAIL  # the sloppy vendor's schema accuracy fails whatever the flags
    summary = json.loads(one[1])
    if "--limit" in flags:
        assert summary["k2vv"]["cases"] == int(flags[flags.index("--limit") + 1])
    assert summary["k2vv"]["cases"] > 256  # more than one share
    for jobs in ("2", "3"):
        many = score(tmp_path, testset, *providers, *flags, "--jobs", jobs, out=f"jobs{jobs}")
        assert many[:2] == one[:2]
        assert (tmp_path / f"jobs{jobs}" / "summary.json").read_bytes() == (tmp_path / "one" / "summary.json").read_bytes()


def test_every_bad_line_is_reported_whichever_process_read_it(answered):
    tmp_path, testset = answered
    lines = testset.read_text().splitlines()
    first_id = next(i for i, text in enumerate(lines) if text and "id" in json.loads(text))
    own_id = json.loads(lines[first_id])["id"]
    lines[2] = "{not json"
    lines[300] = json.dumps({"messages": "hello"})
    late = json.loads(lines[700])
    late["id"] = own_id  # the same id, 690 lines and two shares apart
    lines[700] = json.dumps(late)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    providers = ["--providers", str(tmp_path / "k2vv.toml")]
    code, out, err = score(tmp_path, bad, *providers, "--jobs", "1", out="bad1")
    assert code == k2vv.EXIT_USAGE and out == ""
    assert "bad.jsonl:3:" in err and "bad.jsonl:301:" in err
    assert f"bad.jsonl:701: id {own_id!r} was already used on line {first_id + 1}" in err
    assert score(tmp_path, bad, *providers, "--jobs", "3", out="bad3") == (code, out, err)


def test_only_large_test_sets_in_a_single_threaded_process_fork_unasked(tmp_path):
    big = big_test_set(tmp_path / "big.jsonl", copies=8)
    probe = ("import os, sys, threading, k2vv\n"
             "small, big = k2vv.load_test_set(None), k2vv.load_test_set(sys.argv[1])\n"
             "print(k2vv.score_processes(None, small), k2vv.score_processes(2, small),"
             " k2vv.score_processes(None, big), min(8, len(os.sched_getaffinity(0))), big.size >= k2vv.PARALLEL_MIN_BYTES)\n"
             "threading.Thread(target=threading.Event().wait, args=(5,), daemon=True).start()\n"
             "print(k2vv.score_processes(None, big), k2vv.score_processes(3, big))\n")
    proc = subprocess.run([sys.executable, "-c", probe, str(big)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    first, second = proc.stdout.splitlines()
    small_default, small_asked, big_default, cpus, big_enough = first.split()
    assert (small_default, small_asked, big_default, big_enough) == ("1", "2", cpus, "True")
    assert second.split() == ["1", "3"]  # threads running: only when asked
