"""`run` against simulated vendors on 127.0.0.1: faults, retries, resumption, secrecy, fail-fast.
Real sockets, a real diskcache in tmp_path, real files; counts and bytes, never seconds."""
import json
import os
import signal
import socket
import subprocess
import threading
import sys
from pathlib import Path

import pytest

import k2vv
import k2vv_sim  # noqa: E402
from conftest import FAKE_KEY, ROOT, wait_until

LIMIT = "40"
# Without --baseline tool_call_f1 is not measured, so even the reference vendor's best verdict is
# "inconclusive": every run here without one exits 3 (simulated answers are seeded by the request).
NO_BASELINE = k2vv.EXIT_INCONCLUSIVE


def lines_in(path: Path) -> int:
    """Complete lines in a file that may not exist yet."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.fixture
def vendor():
    with k2vv_sim.SimVendor("reference", retry_after="0") as v:
        yield v


def run_args(v, tmp_path, *extra, out="out", limit=LIMIT):
    """`run` against vendor `v`, the first `limit` cases (None: every case)."""
    return ["run", "--base-url", v.url, "--model", "kimi-k2", *(["--limit", limit] if limit else []),
            "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / out), "--concurrency", "8", "--quiet", *extra]


def scores_only(summary):
    """The parts of a summary that judge the provider (not where or when it was asked)."""
    drop = {"k2vv", "latency", "attempts", "runner", "eval_started_at", "eval_finished_at", "eval_duration_ms"}
    return {k: v for k, v in summary.items() if k not in drop}


def read_summary(tmp_path, out="out"):
    return json.loads((tmp_path / out / "summary.json").read_text())


FAULTS = ["429", "500", "502", "503", "reset", "cut_body", "cut_stream"]


def first_attempt_faults(body, attempt):
    """Every third request fails once, cycling through the transient faults."""
    h = int(k2vv.sha256_hex(json.dumps(body["messages"], sort_keys=True).encode()), 16)
    if attempt == 1 and h % 3 == 0:
        fault = FAULTS[h // 3 % len(FAULTS)]
        return "cut_body" if fault == "cut_stream" and not body.get("stream") else fault
    return None


def test_faults_change_nothing_but_attempts(tmp_path, vendor):
    assert k2vv.main(run_args(vendor, tmp_path, out="clean")) == NO_BASELINE
    clean = read_summary(tmp_path, "clean")
    with k2vv_sim.SimVendor("reference", script=first_attempt_faults, retry_after="0") as faulty:
        code = k2vv.main(run_args(faulty, tmp_path, "--cache", str(tmp_path / "cache2"), out="faulty"))
        faults = sum(1 for r in faulty.received if r["attempt"] == 1) < len(faulty.received)
    assert faults, "the script injected no fault"
    noisy = read_summary(tmp_path, "faulty")
    assert scores_only(noisy) == scores_only(clean)
    assert noisy["classes"]["responses"]["unanswered"] == 0
    assert sum(v for k, v in noisy["attempts"].items() if int(k) > 1) > 0
    assert code == k2vv.exit_code_of(clean["verdict"])


def test_second_run_sends_nothing_and_scores_the_same(tmp_path, vendor):
    k2vv.main(run_args(vendor, tmp_path))
    first = (tmp_path / "out" / "summary.json").read_bytes()
    fetched = (tmp_path / "out" / "results.jsonl").read_bytes()  # lines the runner wrote, copied by the fold
    sent = len(vendor.received)
    assert sent == int(LIMIT)
    k2vv.main(run_args(vendor, tmp_path))
    assert len(vendor.received) == sent
    assert (tmp_path / "out" / "summary.json").read_bytes() == first
    assert (tmp_path / "out" / "results.jsonl").read_bytes() == fetched  # every line written from the cache
    lines = fetched.decode().splitlines()
    assert len(lines) == int(LIMIT)  # deduplicated, one line per case


def test_results_are_the_same_however_the_answers_were_split_between_runs(tmp_path):
    """Trial 0 fetched by a first run, trial 1 by a second (cases half fresh, half cached; some
    answers retried, some rejected): a third run, all cached, writes the same bytes."""
    def faults(body, attempt):
        h = int(k2vv.sha256_hex(json.dumps(body["messages"], sort_keys=True).encode()), 16)
        return "400_schema" if h % 7 == 0 else first_attempt_faults(body, attempt)
    with k2vv_sim.SimVendor("reference", script=faults, retry_after="0") as v:
        k2vv.main(run_args(v, tmp_path, "--limit", "30"))
        k2vv.main(run_args(v, tmp_path, "--limit", "30", "--trials", "2"))
        split = (tmp_path / "out" / "results.jsonl").read_bytes(), read_summary(tmp_path)
        sent = len(v.received)
        k2vv.main(run_args(v, tmp_path, "--limit", "30", "--trials", "2"))
        assert len(v.received) == sent
    assert split[1]["classes"]["responses"]["rejected"] > 0 and split[1]["classes"]["responses"]["unanswered"] == 0
    assert (tmp_path / "out" / "results.jsonl").read_bytes() == split[0]
    assert read_summary(tmp_path) == split[1]


def test_results_lines_keep_k2vv_fields(tmp_path, vendor):
    import fastjsonschema
    k2vv.main(run_args(vendor, tmp_path))
    check = fastjsonschema.compile(json.loads((ROOT / "schemas" / "results-line.json").read_text()))
    for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines():
        rec = check(json.loads(line))
        assert rec["status"] == "success" and rec["response"]["object"] == "chat.completion"
        if rec["request"].get("stream"):
            assert rec["response"]["usage"]["total_tokens"] > 0  # the usage-only final chunk is kept


def test_score_offline_reproduces_run_byte_for_byte(tmp_path, vendor, monkeypatch):
    k2vv.main(run_args(vendor, tmp_path))
    ran = (tmp_path / "out" / "summary.json").read_bytes()
    url = vendor.url
    vendor.stop()

    def no_network(*a, **k):
        raise OSError("networking is unavailable in this test")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    args = ["score", "--base-url", url, "--model", "kimi-k2", "--limit", LIMIT, "--cache", str(tmp_path / "cache"),
            "--out", str(tmp_path / "scored")]
    k2vv.main(args)
    assert (tmp_path / "scored" / "summary.json").read_bytes() == ran
    k2vv.main(args)
    assert (tmp_path / "scored" / "summary.json").read_bytes() == ran


def test_score_reads_a_cache_it_cannot_write(tmp_path, vendor):
    """As a user with no write access to a cache copied from someone else (root ignores modes,
    so the check runs as an unprivileged uid)."""
    import shutil
    import tempfile
    shared = Path(tempfile.mkdtemp(prefix="k2vv-ro-"))
    try:
        k2vv.main(run_args(vendor, tmp_path, "--cache", str(shared / "cache")))
        os.chmod(shared, 0o755)
        for p in shared.rglob("*"):
            os.chmod(p, 0o755 if p.is_dir() else 0o444)
        os.chmod(shared / "cache", 0o555)
        before = {p: p.read_bytes() for p in shared.rglob("*") if p.is_file()}
        out = Path(tempfile.mkdtemp(prefix="k2vv-out-"))
        os.chmod(out, 0o777)
        cmd = [sys.executable, str(ROOT / "k2vv.py"), "score", "--base-url", vendor.url, "--model", "kimi-k2",
               "--limit", LIMIT, "--cache", str(shared / "cache"), "--out", str(out)]
        if os.geteuid() == 0:
            cmd = ["setpriv", "--reuid", "4242", "--regid", "4242", "--clear-groups"] + cmd
        done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HOME="/nonexistent"),
                              cwd=out)
        assert "Traceback" not in done.stderr
        assert json.loads((out / "summary.json").read_text())["success_count"] == int(LIMIT), done.stderr
        # read from a private copy: nothing beside the database (no -wal, no -shm), nothing changed
        assert {p: p.read_bytes() for p in shared.rglob("*") if p.is_file()} == before
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_sigkill_then_rerun_resends_only_what_was_in_flight(tmp_path):
    slow = lambda body, attempt: "slow:0.15"
    with k2vv_sim.SimVendor("reference", script=slow) as v:
        cmd = [sys.executable, str(ROOT / "k2vv.py"), *run_args(v, tmp_path, "--concurrency", "4")]
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        journal = tmp_path / "out" / "results.jsonl"
        wait_until(lambda: lines_in(journal) >= 12, "12 results lines journaled", proc=proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        sent_before = len(v.received)
        with k2vv.open_cache(tmp_path / "cache") as cache:
            cached = sum(1 for key in cache._cache.iterkeys())
        assert 12 <= cached < int(LIMIT)
        # lost at most: the requests in flight, and answers fetched but still queued for the recorder
        assert sent_before - cached <= 4 + k2vv.Recorder.BATCH
        v.script = None
        assert k2vv.main(run_args(v, tmp_path)) == NO_BASELINE
        assert len(v.received) - sent_before == int(LIMIT) - cached
    summary = read_summary(tmp_path)
    assert summary["classes"]["responses"]["unanswered"] == 0


def test_api_key_never_written_or_printed(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("K2VV_TEST_KEY", FAKE_KEY)
    def rejects_some(body, attempt):
        return "400_schema" if int(k2vv.sha256_hex(json.dumps(body["messages"]).encode()), 16) % 4 == 0 else None
    with k2vv_sim.SimVendor("sloppy", script=rejects_some, retry_after="0") as v:
        (tmp_path / "k2vv.toml").write_text(
            f'[providers.sim]\nbase_url = "{v.url}"\nmodel = "kimi-k2"\napi_key_env = "K2VV_TEST_KEY"\n')
        k2vv.main(["run", "--provider", "sim", "--limit", LIMIT, "--cache", str(tmp_path / "cache"),
                   "--out", str(tmp_path / "out")])
        k2vv.main(["score", "--provider", "sim", "--limit", LIMIT, "--cache", str(tmp_path / "cache"),
                   "--out", str(tmp_path / "out"), "--json"])
        assert all(r["headers"].get("authorization") == f"Bearer {FAKE_KEY}" for r in v.received)
    printed = capsys.readouterr()
    assert FAKE_KEY not in printed.out + printed.err
    assert FAKE_KEY[3:20] not in printed.out + printed.err
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "k2vv.toml":
            data = path.read_bytes()
            assert FAKE_KEY.encode() not in data and FAKE_KEY[3:20].encode() not in data, path


def test_wrong_key_stops_after_a_few_requests(tmp_path, capsys):
    with k2vv_sim.SimVendor("reference", script=lambda body, attempt: "401") as v:
        code = k2vv.main(run_args(v, tmp_path, "--concurrency", "4", "--limit", "200"))
        assert code == 2
        assert len(v.received) <= 8
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "OPENAI_API_KEY" in err


def test_missing_key_variable_is_named_before_anything_is_sent(tmp_path, vendor, capsys):
    (tmp_path / "k2vv.toml").write_text(
        f'[providers.x]\nbase_url = "{vendor.url}"\nmodel = "m"\napi_key_env = "X_VENDOR_KEY"\n')
    assert k2vv.main(["run", "--provider", "x", "--cache", str(tmp_path / "c")]) == 2
    assert "X_VENDOR_KEY" in capsys.readouterr().err
    assert vendor.received == []


def test_unknown_provider_lists_the_known_ones(capsys):
    assert k2vv.main(["run", "--provider", "nosuch"]) == 2
    err = capsys.readouterr().err
    for name in ("moonshot", "openrouter", "vllm", "sglang", "openrouter:<slug>"):
        assert name in err


def test_bad_providers_file_points_at_the_key(tmp_path, capsys):
    (tmp_path / "k2vv.toml").write_text('[providers.x]\nbase_url = "http://h/v1"\nmodel = "m"\nconcurrency = "8"\n'
                                        'Authorization = "x"\n[providers.y]\nheaders = { Authorization = "Bearer s" }\n')
    assert k2vv.main(["providers"]) == 2
    err = capsys.readouterr().err
    assert "[providers.x].concurrency: must be integer" in err
    assert "[providers.x]: has unknown keys" in err and "'Authorization'" in err
    assert "[providers.y].headers.Authorization: looks like a secret" in err
    assert "Bearer s" not in err


def test_retry_policy(tmp_path):
    """429 honours Retry-After, a persistent 503 stops at the cap, 400 is never retried, a slow
    answer past the timeout is retried then given up; what failed is unanswered, not scored."""
    by_kind = {}

    def script(body, attempt):
        text = body["messages"][-1].get("content") or ""
        kind = ["429", "503", "400_schema", "slow:3", None][int(k2vv.sha256_hex(text.encode()), 16) % 5]
        by_kind.setdefault(kind, set()).add(text)
        if kind == "429":
            return "429" if attempt == 1 else None
        return kind
    with k2vv_sim.SimVendor("reference", script=script, retry_after="0") as v:
        code = k2vv.main(run_args(v, tmp_path, "--retries", "2", "--timeout", "0.5", "--limit", "20"))
        attempts = {}
        for r in v.received:
            text = r["body"]["messages"][-1].get("content") or ""
            attempts[text] = max(attempts.get(text, 0), r["attempt"])
    for kind, texts in by_kind.items():
        want = {"429": 2, "503": 3, "400_schema": 1, "slow:3": 3, None: 1}[kind]
        assert all(attempts[t] == want for t in texts), kind
    summary = read_summary(tmp_path)
    responses = summary["classes"]["responses"]
    assert responses["unanswered"] > 0 and responses["rejected"] > 0
    assert code == 3  # incomplete: coverage below the minimum
    lines = [json.loads(l) for l in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert {l["error_class"] for l in lines if l["status"] == "failed"} >= {"http_503", "timeout", "http_400"}


def test_trials_ask_k_times_and_report_pass_at_k(tmp_path, vendor):
    k2vv.main(run_args(vendor, tmp_path, "--trials", "3", "--limit", "10"))
    assert len(vendor.received) == 30
    trials = read_summary(tmp_path)["trials"]
    assert trials["k"] == 3 and trials["pass_hat_k"] <= trials["pass_at_k"]


def test_baseline_by_name_scores_trigger_agreement(tmp_path):
    with k2vv_sim.SimVendor("reference") as ref, k2vv_sim.SimVendor("drifting") as drift:
        (tmp_path / "k2vv.toml").write_text(
            f'[providers.ref]\nbase_url = "{ref.url}"\nmodel = "kimi-k2"\napi_key_required = false\n'
            f'[providers.drift]\nbase_url = "{drift.url}"\nmodel = "kimi-k2"\napi_key_required = false\n')
        common = ["--cache", str(tmp_path / "cache"), "--quiet"]
        k2vv.main(["run", "--provider", "ref", "--out", str(tmp_path / "ref"), *common])
        code = k2vv.main(["run", "--provider", "drift", "--baseline", "ref", "--out", str(tmp_path / "drift"), *common])
        k2vv.main(["score", "--provider", "ref", "--baseline", "ref", "--out", str(tmp_path / "self"), *common[:-1]])
    drift_summary = read_summary(tmp_path, "drift")
    base = drift_summary["baseline"]
    assert base["name"] == "ref" and base["coverage"] == 1.0 and base["FP"] + base["FN"] > 0
    assert base["f1"] < 0.9 and drift_summary["verdict"]["status"] == "fail" and code == 1
    assert read_summary(tmp_path, "self")["baseline"]["f1"] == 1.0


def test_an_unknown_baseline_stops_the_run_before_anything_is_sent(tmp_path, vendor, capsys):
    assert k2vv.main(run_args(vendor, tmp_path, "--baseline", "no-such-provider")) == 2
    assert vendor.received == [] and "no-such-provider" in capsys.readouterr().err


def test_a_test_set_read_from_a_pipe_runs(tmp_path, vendor):
    fifo = tmp_path / "cases.fifo"
    os.mkfifo(fifo)
    lines = (k2vv.resource(k2vv.BUNDLED_TESTSET).splitlines(keepends=True))[:5]
    writer = threading.Thread(target=lambda: fifo.write_bytes(b"".join(lines)), daemon=True)
    writer.start()
    assert k2vv.main(run_args(vendor, tmp_path, limit=None) + [str(fifo)]) == NO_BASELINE
    assert len(vendor.received) == 5 and read_summary(tmp_path)["k2vv"]["cases"] == 5


def test_a_test_set_edited_during_the_run_stops_it_and_every_worker(tmp_path, capsys):
    testset = tmp_path / "cases.jsonl"
    testset.write_bytes(k2vv.resource(k2vv.BUNDLED_TESTSET))  # > FOLD_BATCH: still reading while sending

    def edit_once(body, attempt):
        if not edited:
            edited.append(1)
            with open(testset, "a") as fh:
                fh.write('{"messages": [{"role": "user", "content": "added later"}]}\n')
        return None
    edited = []
    with k2vv_sim.SimVendor("reference", script=edit_once) as v:
        assert k2vv.main(run_args(v, tmp_path, "--concurrency", "2", limit=None) + [str(testset)]) == 2
        assert all(r["body"]["messages"][-1].get("content") != "added later" for r in v.received)
    assert "changed while k2vv was reading it" in capsys.readouterr().err
    assert not [t for t in threading.enumerate() if t.name.startswith("k2vv-") and t.name != "k2vv-cache-writer"]


def test_identical_failed_requests_keep_their_own_results_lines(tmp_path):
    line = k2vv.resource(k2vv.BUNDLED_TESTSET).splitlines(keepends=True)[0]
    testset = tmp_path / "twice.jsonl"
    testset.write_bytes(line + line)
    with k2vv_sim.SimVendor("reference", script=lambda body, attempt: "status:500") as v:
        assert k2vv.main(run_args(v, tmp_path, "--retries", "0", limit=None) + [str(testset)]) == 3
        assert len(v.received) == 1  # one body, one request
    lines = [json.loads(l) for l in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [l["data_index"] for l in lines] == [1, 2]
    assert all(l["error_class"] == "http_500" and l["status"] == "failed" for l in lines)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_ctrl_c_and_sigterm_flush_summarise_as_incomplete_and_exit_130(tmp_path, signum):
    with k2vv_sim.SimVendor("reference", script=lambda body, attempt: "slow:0.1") as v:
        args = run_args(v, tmp_path, "--concurrency", "2", "--api-key", FAKE_KEY)
        proc = subprocess.Popen([sys.executable, str(ROOT / "k2vv.py"), *args], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        journal = tmp_path / "out" / "results.jsonl"
        wait_until(lambda: lines_in(journal) >= 4, "4 results lines journaled", proc=proc)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Resume with: k2vv run --base-url" in err and FAKE_KEY not in err + out
        assert "Traceback" not in err
        sent = len(v.received)
        assert sent < int(LIMIT)
        summary = read_summary(tmp_path)
        assert 0 < summary["success_count"] < int(LIMIT)
        assert summary["verdict"]["status"] == "incomplete" and "INCOMPLETE" in out
        v.script = None
        assert k2vv.main(run_args(v, tmp_path)) == NO_BASELINE
        assert len(v.received) - sent == int(LIMIT) - summary["success_count"]


def test_other_statuses_are_retried_or_journaled_never_cached(tmp_path):
    """5xx of any kind is transient; a 402 (out of credits) is the request's failure this time,
    journaled with the vendor's reason but not cached, so the next run asks again."""
    def script(body, attempt):
        digit = int(k2vv.sha256_hex(json.dumps(body["messages"]).encode()), 16) % 3
        return {0: "status:402", 1: "status:520" if attempt == 1 else None, 2: None}[digit]
    with k2vv_sim.SimVendor("reference", script=script, retry_after="0") as v:
        assert k2vv.main(run_args(v, tmp_path, "--limit", "15")) == 3
        lines = [json.loads(l) for l in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
        payment = [l for l in lines if l["error_class"] == "http_402"]
        assert payment and all("402" in l["response"]["error_message"] for l in payment)
        assert all(l["attempts"] == 1 for l in payment)
        assert read_summary(tmp_path)["classes"]["responses"]["unanswered"] == len(payment)
        sent = len(v.received)
        v.script = None
        assert k2vv.main(run_args(v, tmp_path, "--limit", "15")) == NO_BASELINE
        assert len(v.received) - sent == len(payment)


def test_one_forbidden_request_does_not_stop_the_run(tmp_path):
    first = {}

    def script(body, attempt):
        key = json.dumps(body["messages"])
        first.setdefault("key", key)
        return "403" if key == first["key"] else None
    with k2vv_sim.SimVendor("reference", script=script) as v:
        assert k2vv.main(run_args(v, tmp_path, "--limit", "20", "--concurrency", "1")) == 3
        assert len(v.received) == 20


@pytest.mark.parametrize("url", ["127.0.0.1:8000/v1", "ftp://127.0.0.1/v1", "http:///v1"])
def test_a_url_requests_cannot_use_is_a_usage_error(tmp_path, url, capsys):
    assert k2vv.main(["run", "--base-url", url, "--model", "m", "--cache", str(tmp_path / "c"), "--limit", "3"]) == 2
    assert "--base-url" in capsys.readouterr().err


def test_a_key_with_a_line_break_is_refused_before_sending(tmp_path, vendor, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY + "\r")
    assert k2vv.main(run_args(vendor, tmp_path)) == 2
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY" in err and FAKE_KEY not in err
    assert vendor.received == []


def test_second_ctrl_c_abandons_requests_in_flight(tmp_path):
    """The second SIGINT is sent once the first has been handled (k2vv says it is waiting for the
    requests in flight), so it is the one that abandons them."""
    err_path = tmp_path / "stderr.txt"
    with k2vv_sim.SimVendor("reference", script=lambda body, attempt: "slow:30") as v, open(err_path, "w") as err_file:
        proc = subprocess.Popen([sys.executable, str(ROOT / "k2vv.py"), *run_args(v, tmp_path, "--concurrency", "2")],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=err_file, text=True)
        wait_until(lambda: len(v.received) >= 2, "both workers waiting for an answer", proc=proc)
        proc.send_signal(signal.SIGINT)
        wait_until(lambda: "Ctrl-C again" in err_path.read_text(), "the first Ctrl-C acknowledged", proc=proc)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=25)  # the answers take 30 s: it did not wait for them
        err = err_path.read_text()
        assert proc.returncode == 130, err
        assert "Traceback" not in err


def test_a_key_pasted_as_the_variable_name_is_refused_without_echo(tmp_path, capsys):
    (tmp_path / "k2vv.toml").write_text(f'[providers.x]\nbase_url = "http://h/v1"\nmodel = "m"\napi_key_env = "{FAKE_KEY}"\n')
    assert k2vv.main(["providers"]) == 2
    err = capsys.readouterr().err
    assert "[providers.x].api_key_env" in err and FAKE_KEY not in err


def test_a_netrc_entry_for_the_host_does_not_replace_the_key(tmp_path, vendor, monkeypatch):
    """requests lets ~/.netrc override an Authorization header; k2vv sends the key it was given."""
    netrc = Path(os.environ["HOME"]) / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    k2vv.main(run_args(vendor, tmp_path, "--limit", "3"))
    assert len(vendor.received) == 3
    assert {r["headers"].get("authorization") for r in vendor.received} == {f"Bearer {FAKE_KEY}"}


def test_proxies_come_from_the_environment(tmp_path, vendor, monkeypatch):
    """HTTP_PROXY is used (the vendor plays the proxy for a host that does not exist), NO_PROXY
    bypasses it (a proxy on a closed port would fail every request)."""
    origin = vendor.url.rsplit("/v1", 1)[0]
    monkeypatch.setenv("HTTP_PROXY", origin)
    monkeypatch.setenv("NO_PROXY", "")
    upstream = "http://upstream.k2vv.invalid/v1"
    assert k2vv.main(["run", "--base-url", upstream, "--model", "kimi-k2", "--limit", "3", "--cache",
                      str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--quiet"]) == NO_BASELINE
    assert [r["path"] for r in vendor.received] == [upstream + "/chat/completions"] * 3
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed.getsockname()[1]}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        k2vv.main(run_args(vendor, tmp_path, "--limit", "3", "--retries", "0", out="direct"))
    finally:
        closed.close()
    assert read_summary(tmp_path, "direct")["classes"]["responses"]["unanswered"] == 0
    assert [r["path"] for r in vendor.received[3:]] == ["/v1/chat/completions"] * 3


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_journal_that_cannot_be_written_stops_the_run_and_keeps_committed_answers(tmp_path, vendor, capsys):
    """Every write to /dev/full fails with ENOSPC: the run stops with one line, no traceback, and
    the answers committed before their journal lines failed are not sent again."""
    code = k2vv.main(run_args(vendor, tmp_path, "--output", "/dev/full"))
    err = capsys.readouterr().err
    assert code == k2vv.EXIT_USAGE
    assert "cannot write the cache or the journal" in err and "Traceback" not in err
    first = len(vendor.received)
    assert k2vv.main(run_args(vendor, tmp_path)) == NO_BASELINE
    assert len(vendor.received) - first < int(LIMIT)  # the first batch was committed before its lines failed
    assert read_summary(tmp_path)["classes"]["responses"]["unanswered"] == 0


def test_lines_appended_to_the_journal_by_someone_else_do_not_shift_the_results(tmp_path):
    """Another writer appending to results.jsonl mid-run (a second run with the same --out): the
    fold copies this run's lines from where they really landed."""
    journal = tmp_path / "out" / "results.jsonl"

    def meddler(body, attempt):
        with open(journal, "a") as fh:
            fh.write('{"meddler": "x' + "y" * 37 + '"}\n')
        return None
    with k2vv_sim.SimVendor("reference", script=meddler) as v:
        k2vv.main(run_args(v, tmp_path))
        fetched = journal.read_bytes()
        k2vv.main(run_args(v, tmp_path))
    assert b"meddler" not in fetched
    assert journal.read_bytes() == fetched  # the same lines, all from the cache
