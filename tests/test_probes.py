"""`k2vv probe` (DESIGN §11): each pass rule on hand-written answers, the bundled pack, and the whole
command against simulated vendors (the honest one passes everything, each faulty one fails exactly
its probe); `--stream-mode` and `--reasoning-history` as run options."""
import json
import re

import fastjsonschema
import pytest

import k2vv
import k2vv_sim
from conftest import ROOT


def ans(*calls, cls=None, usage=None, content="", valid=None, error=None):
    """A hand-written answer as probe_answer gives it: calls are (name, arguments) pairs."""
    calls = [{"name": n, "arguments": a} for n, a in calls]
    cls = cls or ("valid" if calls else "no_call")
    return {"class": cls, "calls": calls, "valid": valid if valid is not None else (cls == "valid" if calls else None),
            "usage": usage, "content": content, "error": error}


NAMED = {"messages": [{"role": "user", "content": "weather in Paris?"}],
         "tool_choice": {"type": "function", "function": {"name": "get_time"}}}
HISTORY = {"messages": [{"role": "user", "content": "weather in Paris?"},
                        {"role": "assistant", "content": "", "tool_calls": [
                            {"id": "functions.get_weather:0", "type": "function",
                             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                        {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "18 C"}]}
W = ("get_weather", {"city": "Paris"})
T = ("get_time", {"timezone": "Europe/Paris"})

RULES = [  # (rule, requests, answers, passed)
    ("tool_choice_none", [{}], [ans(content="It is sunny.")], True),
    ("tool_choice_none", [{}], [ans(W)], False),
    ("tool_choice_none", [{}], [ans(cls="failed", error="http_500")], False),
    ("tool_choice_required", [{}], [ans(W)], True),
    ("tool_choice_required", [{}], [ans(W, T)], True),
    ("tool_choice_required", [{}], [ans(content="sure")], False),
    ("tool_choice_named", [NAMED], [ans(T)], True),
    ("tool_choice_named", [NAMED], [ans(W)], False),
    ("tool_choice_named", [NAMED], [ans(T, T)], False),
    ("tool_choice_named", [NAMED], [ans(content="the weather is")], False),
    ("parallel_tool_calls_false", [{}], [ans(W)], True),
    ("parallel_tool_calls_false", [{}], [ans(content="ok")], True),
    ("parallel_tool_calls_false", [{}], [ans(W, W)], False),
    ("tool_result_continues", [HISTORY], [ans(content="It is 18 C in Paris.")], True),
    ("tool_result_continues", [HISTORY], [ans(("get_weather", {"city": "London"}))], True),
    ("tool_result_continues", [HISTORY], [ans(W)], False),
    ("history_ids_ab", [{}, {}], [ans(content="a"), ans(content="b")], True),
    ("history_ids_ab", [{}, {}], [ans(W), ans(("get_weather", {"city": "Rome"}))], True),
    ("history_ids_ab", [{}, {}], [ans(content="a"), ans(W)], False),
    ("history_ids_ab", [{}, {}], [ans(W), ans(T)], False),
    ("history_ids_ab", [{}, {}], [ans(W), ans(cls="failed", error="timeout")], False),
    ("reasoning_history_ab", [{}, {}], [ans(W), ans(W)], True),
    ("reasoning_history_ab", [{}, {}], [ans(W), ans(content="done")], False),
    ("usage_arithmetic", [{}], [ans(usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})], True),
    ("usage_arithmetic", [{}], [ans(usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 16})], False),
    ("usage_arithmetic", [{}], [ans(usage=None)], False),
    ("usage_arithmetic", [{}], [ans(usage={"prompt_tokens": 10, "completion_tokens": "5", "total_tokens": 15})], False),
    ("stream_vs_non_stream", [{}, {}], [ans(W), ans(W)], True),
    ("stream_vs_non_stream", [{}, {}], [ans(W, cls="invalid"), ans(W)], False),
    ("stream_vs_non_stream", [{}, {}], [ans(W), ans(T)], False),
    ("stream_vs_non_stream", [{}, {}], [ans(content="x"), ans(W)], False),
]


@pytest.mark.parametrize("rule, requests, answers, passed", RULES,
                         ids=[f"{r[0]}-{'pass' if r[3] else 'fail'}-{i}" for i, r in enumerate(RULES)])
def test_each_rule_on_recorded_answers(rule, requests, answers, passed):
    ok, why = k2vv.judge_probe(rule, requests, answers)
    assert ok is passed and why


def test_every_rule_has_a_passing_and_a_failing_row():
    assert {(r[0], r[3]) for r in RULES} == {(rule, p) for rule in k2vv.PROBE_RULES for p in (True, False)}


def test_the_bundled_pack():
    probes = k2vv.load_probe_pack()
    assert {p["rule"] for p in probes} == set(k2vv.PROBE_RULES)
    assert 35 <= sum(len(p["requests"]) for p in probes) <= 45
    assert len({p["name"] for p in probes}) == len(probes)
    id_form = re.compile(r"^functions\.[\w\-.]+:\d+$")
    for probe in probes:
        first = probe["requests"][0]
        if probe["rule"] == "tool_choice_named":  # the named function is not the one the user asks for
            named = first["tool_choice"]["function"]["name"]
            tools = [t["function"]["name"] for t in first["tools"]]
            assert named in tools and tools[0] != named
        if probe["rule"] in ("tool_choice_none", "tool_choice_required", "parallel_tool_calls_false"):
            key = {"tool_choice_none": "tool_choice", "tool_choice_required": "tool_choice",
                   "parallel_tool_calls_false": "parallel_tool_calls"}[probe["rule"]]
            assert first[key] in ("none", "required", False)
        if probe["rule"] == "tool_result_continues":
            assert first["messages"][-1]["role"] == "tool"
        ids = [c["id"] for p in probe["requests"] for m in p["messages"] for c in m.get("tool_calls", [])]
        if probe["rule"] == "history_ids_ab":  # A in Moonshot's form, B in another; nothing else differs
            a, b = probe["requests"]
            assert id_form.match(a["messages"][2]["tool_calls"][0]["id"])
            assert not id_form.match(b["messages"][2]["tool_calls"][0]["id"])
            assert json.dumps(a).count("functions.") > json.dumps(b).count("functions.")
        elif probe["rule"] == "reasoning_history_ab":
            a, b = probe["requests"]
            assert k2vv.strip_reasoning(a["messages"]) == b["messages"] != a["messages"]
        elif probe["rule"] == "stream_vs_non_stream":
            a, b = probe["requests"]
            assert a["stream"] is True and b["stream"] is False and dict(a, stream=False) == b
        else:  # every other probe's history is in the form every vendor should accept
            assert all(id_form.match(i) for i in ids)


def test_a_bad_pack_is_refused_before_anything_is_sent(tmp_path):
    pack = tmp_path / "pack.jsonl"
    pack.write_text('{"name": "x", "rule": "nope", "requests": []}\nnot json\n'
                    '{"name": "y", "rule": "history_ids_ab", "requests": [{"messages": []}]}\n')
    with pytest.raises(k2vv.K2vvError) as err:
        k2vv.load_probe_pack(str(pack))
    text = str(err.value)
    assert "pack.jsonl:1: rule 'nope' unknown" in text and "pack.jsonl:2: not JSON" in text
    assert "pack.jsonl:3: requests must be a list of 2" in text


def test_preparation_variants():
    body = {"messages": HISTORY["messages"][:2] + [dict(HISTORY["messages"][1], reasoning_content="think")],
            "stream": True, "stream_options": {"include_usage": True}}
    assert k2vv.prepare_variant(body) is body
    plain = k2vv.prepare_variant(body, "non-stream", "strip")
    assert plain["stream"] is False and "stream_options" not in plain
    assert all("reasoning_content" not in m for m in plain["messages"])
    assert body["messages"][2]["reasoning_content"] == "think"  # copies: the test set is never changed
    streamed = k2vv.prepare_variant(dict(body, stream=False, stream_options=None), "stream")
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}


PROBE_SCHEMA = fastjsonschema.compile(json.loads((ROOT / "schemas" / "probe.json").read_text()))


def probe(vendor, tmp_path, *extra):
    return k2vv.main(["probe", "--base-url", vendor.url, "--model", "kimi-k2", "--cache", str(tmp_path / "cache"),
                      "--out", str(tmp_path / "out"), "--quiet", *extra])


FAULTS = {"reference": set(), "ignores_none": {"tool_choice_none"}, "stream_broken": {"stream_vs_non_stream"},
          "id_sensitive": {"history_ids_ab"}, "reasoning_sensitive": {"reasoning_history_ab"},
          "raw_tricky": set()}  # its tricks are in raw completions only: over chat it is honest


@pytest.mark.parametrize("personality", sorted(FAULTS))
def test_probe_against_the_simulated_vendors(personality, tmp_path, capsys):
    with k2vv_sim.SimVendor(personality) as vendor:
        code = probe(vendor, tmp_path)
        sent = vendor.count
        assert probe(vendor, tmp_path) == code and vendor.count == sent  # the second time, all from the cache
    report = PROBE_SCHEMA(json.loads((tmp_path / "out" / "probe.json").read_text()))
    failed = {p["rule"] for p in report["probes"] if not p["passed"]}
    assert failed == FAULTS[personality]
    assert code == (k2vv.EXIT_FAIL if failed else k2vv.EXIT_PASS)
    distinct = {json.dumps(b, sort_keys=True) for p in k2vv.load_probe_pack() for b in p["requests"]}
    assert sent == len(distinct) == 34  # identical bodies (an A shared by two pairs, ...) are sent once
    out = capsys.readouterr().out
    assert all(len(line) <= 80 for line in out.splitlines())
    for p in report["probes"]:
        assert (p["name"] in out) and (("FAIL" in out) or p["passed"])


def test_probe_setup_fault_exits_2(tmp_path, capsys):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = k2vv.main(["probe", "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "m", "--cache",
                      str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--quiet", "--retries", "0"])
    assert code == k2vv.EXIT_USAGE
    assert "connection refused" in capsys.readouterr().err
    assert not (tmp_path / "out" / "probe.json").exists()


def run(vendor, tmp_path, out, *extra):
    return k2vv.main(["run", "--base-url", vendor.url, "--model", "kimi-k2", "--limit", "60", "--cache",
                      str(tmp_path / "cache"), "--out", str(tmp_path / out), "--quiet", *extra])


def test_stream_modes_show_a_stream_only_fault_case_by_case(tmp_path, capsys):
    """stream_broken spoils a share of its streamed calls: forcing each mode and diffing the runs
    names exactly the cases it spoils."""
    with k2vv_sim.SimVendor("stream_broken") as vendor:
        run(vendor, tmp_path, "ns", "--stream-mode", "non-stream")
        run(vendor, tmp_path, "st", "--stream-mode", "stream")
        bodies = [r["body"] for r in vendor.received]
    assert {b["stream"] for b in bodies} == {True, False}
    spoiled = sum(k2vv_sim._sim_answer("stream_broken", b)["breakage"] == "stream_non_json" for b in bodies)
    summaries = {m: json.loads((tmp_path / m / "summary.json").read_text()) for m in ("ns", "st")}
    assert summaries["st"]["k2vv"]["settings"]["stream_mode"] == "stream"
    capsys.readouterr()
    assert k2vv.main(["diff", str(tmp_path / "ns"), str(tmp_path / "st")]) == k2vv.EXIT_FAIL
    lines = [l for l in capsys.readouterr().out.splitlines() if "class: valid → invalid" in l]
    assert spoiled > 0 and len(lines) == spoiled


def test_reasoning_history_strip_is_part_of_preparation(tmp_path):
    line = {"messages": [{"role": "user", "content": "weather in Paris?"},
                         dict(HISTORY["messages"][1], reasoning_content="I should call get_weather."),
                         HISTORY["messages"][2]],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
                "type": "object", "properties": {"city": {"type": "string"}}}}}]}
    data = tmp_path / "set.jsonl"
    data.write_text(json.dumps(line) + "\n")
    with k2vv_sim.SimVendor("reference") as vendor:
        for out, mode in (("keep", "keep"), ("strip", "strip"), ("strip2", "strip")):
            k2vv.main(["run", str(data), "--base-url", vendor.url, "--model", "m", "--cache", str(tmp_path / "c"),
                       "--out", str(tmp_path / out), "--quiet", "--reasoning-history", mode])
        bodies = [r["body"] for r in vendor.received]
    assert len(bodies) == 2  # keep and strip are two requests; strip again is cached
    assert "reasoning_content" in bodies[0]["messages"][1] and "reasoning_content" not in bodies[1]["messages"][1]
    keys = [json.loads((tmp_path / o / "results.jsonl").read_text())["cache_key"] for o in ("keep", "strip")]
    assert keys[0] != keys[1]
    summary = json.loads((tmp_path / "strip" / "summary.json").read_text())
    assert summary["k2vv"]["settings"]["reasoning_history"] == "strip"
    assert "reasoning_history" not in json.loads((tmp_path / "keep" / "summary.json").read_text())["k2vv"]["settings"]


def test_the_report_shows_a_vendors_probe_results(tmp_path, capsys):
    with k2vv_sim.SimVendor("reference") as ref, k2vv_sim.SimVendor("id_sensitive") as ids:
        for name, vendor in (("ref", ref), ("ids", ids)):
            k2vv.main(["run", "--base-url", vendor.url, "--model", "m", "--limit", "10", "--cache",
                       str(tmp_path / "c"), "--out", str(tmp_path / name), "--quiet"])
        k2vv.main(["probe", "--base-url", ids.url, "--model", "m", "--cache", str(tmp_path / "c"),
                   "--out", str(tmp_path / "ids"), "--quiet"])
    capsys.readouterr()
    assert k2vv.main(["report", str(tmp_path / "ref"), str(tmp_path / "ids"), "--out", str(tmp_path / "rep")]) == 0
    table = capsys.readouterr().out
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    fastjsonschema.compile(json.loads((ROOT / "schemas" / "report.json").read_text()))(report)
    rows = {r["provider"]: r for r in report["rows"]}
    assert len(rows) == 2
    probed = next(r for r in report["rows"] if "probes" in r)
    assert sum("probes" in r for r in report["rows"]) == 1
    assert probed["probes"]["passed"] == 27 and probed["probes"]["total"] == 31
    assert {f["rule"] for f in probed["probes"]["failed"]} == {"history_ids_ab"}
    assert "probes 27 of 31 pass" in table and all(len(line) <= 80 for line in table.splitlines())
    assert "history\\_ids\\_bare\\_1" in (tmp_path / "rep" / "report.md").read_text()  # Markdown-escaped
    assert "history_ids_bare_1" in (tmp_path / "rep" / "report.html").read_text()


def test_stream_mode_both_counts_exactly_the_cases_a_stream_only_fault_spoils(tmp_path, capsys):
    with k2vv_sim.SimVendor("stream_broken") as vendor:
        code = run(vendor, tmp_path, "both", "--stream-mode", "both", "--json")
        bodies = [r["body"] for r in vendor.received]
        url = vendor.url
    summary = json.loads(capsys.readouterr().out)
    assert code in (k2vv.EXIT_FAIL, k2vv.EXIT_INCONCLUSIVE)
    assert len(bodies) == 2 * 60 - (60 - len({json.dumps(b["messages"]) for b in bodies}))  # each case both ways
    assert {b["stream"] for b in bodies} == {True, False}
    spoiled = [b for b in bodies if k2vv_sim._sim_answer("stream_broken", b)["breakage"] == "stream_non_json"]
    modes = summary["modes"]
    assert modes["divergent_count"] == len(spoiled) == len(modes["divergent"]) > 0
    assert modes["stream"]["successful_tool_call_count"] == modes["non_stream"]["successful_tool_call_count"] - len(spoiled)
    assert summary["k2vv"]["settings"]["stream_mode"] == "both"
    results = (tmp_path / "both" / "results.jsonl").read_text().splitlines()
    assert len(results) == 60 and all(json.loads(l)["request"]["stream"] is False for l in results)
    # score gives the same bytes, offline
    run_summary = (tmp_path / "both" / "summary.json").read_bytes()
    assert k2vv.main(["score", "--base-url", url, "--model", "kimi-k2", "--limit", "60",
                      "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "both"),
                      "--summary", str(tmp_path / "scored.json"), "--stream-mode", "both"]) == code
    assert (tmp_path / "scored.json").read_bytes() == run_summary


def test_a_probe_without_an_answer_fails_naming_the_error(tmp_path, capsys):
    def script(body, attempt):
        return "500" if body.get("tool_choice") == "none" else None
    with k2vv_sim.SimVendor("reference", script=script) as vendor:
        code = probe(vendor, tmp_path, "--retries", "0")
    report = json.loads((tmp_path / "out" / "probe.json").read_text())
    failed = [p for p in report["probes"] if not p["passed"]]
    assert code == k2vv.EXIT_FAIL and {p["rule"] for p in failed} == {"tool_choice_none"}
    assert all(p["answer"] == "no answer (http_500)" for p in failed)


def test_diff_of_two_runs_shows_an_id_sensitive_deployment_case_by_case(tmp_path, capsys):
    pack = {p["name"]: p for p in k2vv.load_probe_pack()}
    lines = [dict(pack[name]["requests"][1], id=name) for name in ("history_ids_call_1", "history_ids_bare_2")]
    lines.append(dict(pack["tool_result_continues_3"]["requests"][0], id="plain"))  # ids already functions.NAME:IDX
    data = tmp_path / "set.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with k2vv_sim.SimVendor("id_sensitive") as vendor:
        for out, extra in (("asis", []), ("normalized", ["--normalize-tool-ids"])):
            k2vv.main(["run", str(data), "--base-url", vendor.url, "--model", "m", "--cache", str(tmp_path / "c"),
                       "--out", str(tmp_path / out), "--quiet", *extra])
    capsys.readouterr()
    assert k2vv.main(["diff", str(tmp_path / "asis"), str(tmp_path / "normalized")]) == k2vv.EXIT_FAIL
    out = capsys.readouterr().out
    assert "history_ids_call_1: trigger: yes → no" in out and "history_ids_bare_2: trigger: yes → no" in out
    assert "plain" not in out
