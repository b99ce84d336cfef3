"""The pure core on recorded exchanges and small literal inputs: parsing, preparation, identity,
reassembly, classification, statistics, baselines, summary and verdict."""
import gzip
import io
import json
import random
import tarfile
from collections import Counter

import pytest

import k2vv
import k2vv_stats
import k2vv_providers
import k2vv_judge
from conftest import EXCHANGES, FIXTURES, ROOT, call_verdict, check_summary, load_exchange, write_jsonl


# ---- recorded exchanges: every class and finding -------------------------------------------------

@pytest.mark.parametrize("path", EXCHANGES, ids=[p.stem for p in EXCHANGES])
def test_recorded_exchange_scores_as_recorded(path):
    rec = load_exchange(path)
    expect = rec["expect"]
    out = k2vv.score_exchange(rec["case"], rec["exchange"])
    assert out.response_class == expect["response_class"]
    assert out.finish_reason == expect.get("finish_reason")
    assert [c.cls for c in out.calls] == [c["class"] for c in expect.get("calls", [])]
    for got, want in zip(out.calls, expect.get("calls", [])):
        if want["class"] == "schema_mismatch":
            assert got.pointer == want["pointer"]
            assert got.message
    assert sorted(out.findings) == sorted(expect.get("findings", []))
    if "usage" in expect:
        assert out.usage == expect["usage"]
    assert out.triggered == expect.get("trigger", out.triggered)
    assert out.routed_provider == expect.get("routed_provider")


def test_recorded_exchanges_cover_every_class():
    classes = {load_exchange(p)["expect"]["response_class"] for p in EXCHANGES}
    assert classes >= set(k2vv.RESPONSE_CLASSES) - {"unanswered"}
    call_classes = {c["class"] for p in EXCHANGES for c in load_exchange(p)["expect"].get("calls", [])}
    assert call_classes == set(k2vv.CALL_CLASSES)


# ---- the rules DESIGN §8 names, one literal case each ------------------------------------------

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
           "additionalProperties": False}


def body_with(parameters=WEATHER, name="get_weather"):
    return {"messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": name, "parameters": parameters}}]}


def completion(calls, finish="tool_calls", usage=None):
    msg = {"role": "assistant", "content": ""}
    if calls is not None:
        msg["tool_calls"] = [{"id": f"functions.x:{i}", "type": "function",
                              "function": {"name": n, "arguments": a}} for i, (n, a) in enumerate(calls)]
    body = {"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": msg, "finish_reason": finish}]}
    if usage:
        body["usage"] = usage
    return {"v": 1, "status": 200, "body": body}


@pytest.mark.parametrize("calls,finish,parameters,response_class,call_class,finding", [
    ([], "tool_calls", WEATHER, "empty_tool_calls", None, "finish_reason_mismatch"),
    (None, "tool_calls", WEATHER, "empty_tool_calls", None, "finish_reason_mismatch"),
    ([("get_weather", {"city": "Oslo"})], "tool_calls", WEATHER, "valid", "valid", "non_string_arguments"),
    ([("get_weather", {"town": "Oslo"})], "tool_calls", WEATHER, "invalid", "schema_mismatch", "non_string_arguments"),
    ([("get_weather", '{"city": NaN}')], "tool_calls", WEATHER, "invalid", "non_standard_json", None),
    ([("get_weather", '{"city": "a", "city": "b"}')], "tool_calls", WEATHER, "invalid", "non_standard_json", None),
    ([("get_weather", '{"city": -Infinity}')], "tool_calls", WEATHER, "invalid", "non_standard_json", None),
    ([("get_wether", '{"city": "Oslo"}')], "tool_calls", WEATHER, "invalid", "unknown_tool", None),
    ([("get_weather", '{"city": ')], "tool_calls", WEATHER, "invalid", "invalid_json", None),
    ([("get_weather", "")], "tool_calls", WEATHER, "invalid", "invalid_json", None),
    ([("get_weather", '"{\\"city\\": \\"Oslo\\"}"')], "tool_calls", WEATHER, "invalid", "schema_mismatch", None),
    ([("get_weather", '{"anything": [1, 2]}')], "tool_calls", {}, "valid", "valid", None),
    ([("get_weather", '{"anything": 1}')], "tool_calls", None, "valid", "valid", None),
    ([("get_weather", '[1]')], "tool_calls", {}, "invalid", "schema_mismatch", None),
    ([("get_weather", '{"p": [1, 2]}')], "tool_calls",
     {"type": "object", "properties": {"p": {"type": "array", "items": [{"type": "number"}, {"type": "number"}],
                                             "additionalItems": False}}}, "valid", "valid", None),
    ([("get_weather", '{"p": [1, 2, 3]}')], "tool_calls",
     {"type": "object", "properties": {"p": {"type": "array", "items": [{"type": "number"}, {"type": "number"}],
                                             "additionalItems": False}}}, "invalid", "schema_mismatch", None),
    ([("get_weather", '{"a": 1}')], "tool_calls", {"type": "float"}, "unscored", "unscored", None),
    ([("get_weather", '{"city": "Oslo"}')], "stop", WEATHER, "no_call", "valid", "finish_reason_mismatch"),
    ([], "stop", WEATHER, "no_call", None, None),
    ([], "eos", WEATHER, "no_call", None, "non_standard_finish_reason"),
], ids=["tool_calls_no_calls", "tool_calls_null_calls", "dict_arguments", "dict_arguments_mismatch", "nan",
        "duplicate_keys", "neg_infinity", "unknown_tool", "cut_json", "empty_string", "double_encoded",
        "empty_parameters", "absent_parameters", "array_for_empty_parameters", "draft07_tuple_ok",
        "draft07_tuple_too_long", "uncompilable", "calls_with_stop", "plain_stop", "non_standard_finish"])
def test_rule(calls, finish, parameters, response_class, call_class, finding):
    out = k2vv.score_exchange(body_with(parameters), completion(calls, finish))
    assert out.response_class == response_class
    if call_class:
        assert out.calls[0].cls == call_class
    if finding:
        assert finding in out.findings


def test_schema_mismatch_reports_pointer_and_rule():
    schema = {"type": "object", "properties": {"rooms": {"type": "array", "items": {
        "type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}}}}
    out = k2vv.score_exchange(body_with(schema), completion([("get_weather", '{"rooms": [{"n": 2}, {"n": 0}]}')]))
    call = out.calls[0]
    assert (call.cls, call.pointer) == ("schema_mismatch", "/rooms/1/n")
    assert "minimum" in call.message


def test_default_values_are_never_written_into_arguments():
    schema = {"type": "object", "properties": {"unit": {"type": "string", "default": "celsius"}}}
    args = {"city": "Oslo"}
    compiled = k2vv_judge.compile_tool_schema(schema)
    assert k2vv_judge.check_instance(compiled, args) is None
    assert args == {"city": "Oslo"}


def test_formats_are_annotations():
    assert call_verdict({"type": "object", "properties": {"d": {"type": "string", "format": "date"}}},
                               {"d": "not-a-date"}) == "valid"


def test_2020_12_keywords_are_desugared_or_unscored():
    s2020 = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
             "properties": {"r": {"type": "array", "prefixItems": [{"type": "integer"}], "items": False}},
             "dependentRequired": {"a": ["b"]}}
    assert call_verdict(s2020, {"r": [1]}) == "valid"
    assert call_verdict(s2020, {"r": [1, 2]}) == "invalid"
    assert call_verdict(s2020, {"r": ["x"]}) == "invalid"
    assert call_verdict(s2020, {"a": 1}) == "invalid"
    assert call_verdict(s2020, {"a": 1, "b": 2}) == "valid"
    assert call_verdict({"type": "object", "unevaluatedProperties": False}, {}) == "unscored"
    # a property *named* like a keyword is data, not a keyword
    assert call_verdict({"type": "object", "properties": {"$anchor": {"type": "string"}}}, {"$anchor": "x"}) == "valid"


# ---- streams ---------------------------------------------------------------------------------------

def chunk(delta=None, finish=None, usage=None, choices=True):
    c = {"id": "x", "object": "chat.completion.chunk"}
    c["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []
    if usage:
        c["usage"] = usage
    return json.dumps(c)


def test_stream_cut_before_done_is_truncated_and_never_stop():
    lines = [chunk({"content": "Hel"}), chunk({"content": "lo"})]
    parsed = k2vv.reassemble_stream(lines)
    assert not parsed.complete
    out = k2vv.score_exchange(body_with(), {"v": 1, "status": 200, "sse_lines": lines})
    assert out.response_class == "truncated" and not out.answered


def test_stream_usage_only_final_chunk_is_read():
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    lines = [chunk({"content": "hi"}), chunk(finish="stop"), chunk(usage=usage, choices=False), "[DONE]"]
    parsed = k2vv.reassemble_stream(lines)
    assert parsed.usage == usage and parsed.usage_source == "top_level" and parsed.complete


def test_stream_cumulative_arguments_and_name_resend():
    tc = lambda **f: {"tool_calls": [{"index": 0, **f}]}
    lines = [chunk(tc(id="call_1", type="function", function={"name": "get_weather", "arguments": ""})),
             chunk(tc(function={"name": "get_weather", "arguments": '{"city"'})),
             chunk(tc(function={"arguments": '{"city": "Oslo"}'})),
             chunk(finish="tool_calls"), "[DONE]"]
    parsed = k2vv.reassemble_stream(lines)
    assert parsed.calls[0]["arguments"] == '{"city": "Oslo"}'
    assert parsed.calls[0]["name"] == "get_weather"
    assert {"cumulative_arguments", "name_resent"} <= set(parsed.findings)
    msg = parsed.completion["choices"][0]["message"]
    assert msg["tool_calls"][0]["function"]["arguments"] == '{"city": "Oslo"}'


def test_a_fragment_that_only_looks_cumulative_is_concatenated():
    tc = lambda args: {"tool_calls": [{"index": 0, "function": {"arguments": args}}]}
    lines = [chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}]}),
             chunk(tc('{"a": ')), chunk(tc('{"a": 1}}')), chunk(finish="tool_calls"), "[DONE]"]
    parsed = k2vv.reassemble_stream(lines)
    assert parsed.calls[0]["arguments"] == '{"a": {"a": 1}}'
    assert "cumulative_arguments" not in parsed.findings


def test_stream_parallel_calls_split_across_chunks():
    lines = [chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x"'}},
                                   {"index": 1, "id": "b", "function": {"name": "g", "arguments": "{"}}]}),
             chunk({"tool_calls": [{"index": 1, "function": {"arguments": "}"}}]}),
             chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
             chunk(finish="tool_calls"), "[DONE]"]
    parsed = k2vv.reassemble_stream(lines)
    assert [(c["name"], c["arguments"]) for c in parsed.calls] == [("f", '{"x": 1}'), ("g", "{}")]
    assert parsed.findings == ()


def test_sse_payloads_from_wire_lines():
    wire = [b": keep-alive", b"", b"data: {\"a\":1}", b"", b"event: x", b"data:{\"b\":", b"data: 2}", b"",
            b"data: [DONE]", b""]
    assert list(k2vv.iter_sse_payloads(wire)) == ['{"a":1}', '{"b":\n2}', "[DONE]"]


# ---- test sets -------------------------------------------------------------------------------------

def test_test_set_keeps_physical_line_numbers_and_strips_k2vv_keys():
    lines = ['{"messages": [], "id": "a", "expected": [], "k2vv": {"category": "x"}}', "", "   ",
             '{"messages": [{"role": "user", "content": "q"}], "stream": true}']
    cases = cases_of(lines)
    assert [c.data_index for c in cases] == [1, 4]
    assert cases[0].case_id == "a" and "id" not in cases[0].body and "k2vv" not in cases[0].body
    assert cases[0].meta == {"category": "x"}
    assert cases[1].case_id == k2vv.sha256_hex(k2vv.canonical_json(cases[1].body))


def test_every_bad_line_is_reported_before_anything(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\nnot json\n[1]\n{"messages": "x"}\n'
                   '{"messages": [], "tools": [{"type": "function", "function": {"name": "a", "parameters": "s"}}]}\n'
                   '{"messages": [], "id": "d"}\n{"messages": [], "id": "d"}\n' + "[" * 5000 + "]" * 5000 + "\n")
    assert k2vv.main(["run", str(bad), "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]) == 2
    err = capsys.readouterr().err
    for needle in [f"{bad}:2: not JSON", f"{bad}:3: the line is an array", f"{bad}:4: messages is a string",
                   f"{bad}:5: tools[0].function.parameters is a string (expected a JSON Schema object)",
                   f"{bad}:7: id 'd' was already used on line 6", f"{bad}:8: cannot be read: nested deeper than 200 levels",
                   "nothing was sent"]:
        assert needle in err
    assert "Traceback" not in err


def test_gz_and_official_tarball(tmp_path):
    raw = (FIXTURES / "testset.jsonl").read_bytes()
    gz = tmp_path / "t.jsonl.gz"
    gz.write_bytes(gzip.compress(raw))
    assert len(k2vv.load_test_set(str(gz)).all_cases()) == 299
    tgz = tmp_path / "tool-calls.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, data in [("tool-calls/samples.jsonl", raw), ("tool-calls/results.jsonl", b"{}\n")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    loaded = k2vv.load_test_set(str(tgz))
    assert len(loaded.all_cases()) == 299 and loaded.k2vv_results == ("tool-calls/results.jsonl",)
    assert loaded.sha256 == k2vv.sha256_hex(raw)


def test_a_null_id_is_a_bad_line(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "t.jsonl", [{"messages": [], "id": None}])
    assert k2vv.main(["lint", str(bad)]) == 2
    assert f"{bad}:1: id is null" in capsys.readouterr().err


def test_lines_past_the_limit_are_still_checked(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n' * 3 + "not json\n")
    assert k2vv.main(["run", str(bad), "--limit", "2", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                      "--cache", str(tmp_path / "cache")]) == 2
    assert f"{bad}:4: not JSON" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing sent, no results written


def test_a_test_set_that_changes_between_passes_is_refused(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "a"}]}\n')
    test_set = k2vv.load_test_set(str(path))
    assert len(test_set.all_cases()) == 1 and test_set.sha256 == k2vv.sha256_hex(path.read_bytes())
    path.write_text('{"messages": [{"role": "user", "content": "b"}]}\n')
    with pytest.raises(k2vv.K2vvError, match="changed while k2vv was reading it"):
        test_set.all_cases()


# ---- request preparation and identity -------------------------------------------------------------

def _random_json(rng, depth=0):
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.choice([None, True, False, 0, -1, 2 ** 70, 1.5, 1e-7])
    if kind in (1, 2, 3):
        return "".join(rng.choice('ab"\\/\n\t é中😀\u2028,:{}') for _ in range(rng.randrange(6)))
    if kind in (4, 5):
        return {str(_random_json(rng, 3)): _random_json(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_cache_key_hashed_from_the_sent_bytes_equals_the_canonical_dump_of_the_whole():
    """payload_key splices canonical_json(body), the bytes that are sent, into its frame: it must be the
    sha256 of the canonical JSON of {url, body, headers, sample} (DESIGN §6), byte for byte."""
    rng = random.Random(6)
    for _ in range(300):
        body = {"messages": [{"role": "user", "content": _random_json(rng)}], "tools": _random_json(rng),
                **{str(_random_json(rng, 3)): _random_json(rng) for _ in range(rng.randrange(3))}}
        url = rng.choice(["http://127.0.0.1:9/v1/chat/completions", "https://ex.ample/ü/v1/chat/completions"])
        headers = rng.choice([{}, {"X-Title": "k2vv ✓", "HTTP-Referer": "https://k2vv.dev"}])
        for sample in range(3):
            whole = json.dumps({"url": url, "body": body, "headers": headers, "sample": sample},
                               sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            key = k2vv.payload_key(k2vv.canonical_json(body), k2vv.key_frame(url, headers), sample)
            assert key == k2vv.sha256_hex(whole)


def test_prepare_request_follows_design_section_5():
    line = {"messages": [{"role": "_input", "content": "sys"},
                         {"role": "assistant", "tool_calls": [{"id": "search:0", "function": {"name": "search"}},
                                                              {"id": "open:1", "function": {"name": "open"}}]},
                         {"role": "tool", "tool_call_id": "search:0", "content": "r"},
                         {"role": "tool", "tool_call_id": "open:1", "content": "r"},
                         {"role": "assistant", "tool_calls": [{"id": "search:0", "function": {"name": "search"}}]},
                         {"role": "tool", "tool_call_id": "search:0", "content": "r"}],
            "temperature": 0.6, "stream": True, "id": "x", "expected": [], "chat_template_kwargs": {"a": 1}}
    before = json.dumps(line, sort_keys=True)
    body = k2vv.prepare_request(line, "m", temperature=0.2, max_tokens=None,
                                extra_body={"chat_template_kwargs": {"b": 2}, "top_k": 1}, tool_ids=True)
    assert json.dumps(line, sort_keys=True) == before  # the test set is never mutated
    assert body["messages"][0]["role"] == "system" and body["model"] == "m" and body["temperature"] == 0.2
    assert "max_tokens" not in body and "id" not in body and "expected" not in body
    assert body["chat_template_kwargs"] == {"a": 1, "b": 2} and body["top_k"] == 1
    assert body["stream_options"] == {"include_usage": True}
    ids = [c["id"] for m in body["messages"] if m["role"] == "assistant" for c in m["tool_calls"]]
    assert ids == ["functions.search:0", "functions.open:1", "functions.search:2"]
    assert [m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"] == \
        ["functions.search:0", "functions.open:1", "functions.search:2"]


def test_cache_key_covers_what_changes_the_answer_and_never_the_key():
    def cache_key(url, body, headers, sample):
        return k2vv.payload_key(k2vv.canonical_json(body), k2vv.key_frame(url, headers), sample)

    body = {"messages": [], "model": "m"}
    base = cache_key("http://h/v1/chat/completions", body, {"X-Title": "k2vv"}, 0)
    assert base == cache_key("http://h/v1/chat/completions", dict(body), {"X-Title": "k2vv"}, 0)
    assert base != cache_key("http://h/v1/chat/completions", dict(body, top_k=1), {"X-Title": "k2vv"}, 0)
    assert base != cache_key("http://other/v1/chat/completions", body, {"X-Title": "k2vv"}, 0)
    assert base != cache_key("http://h/v1/chat/completions", body, {"X-Title": "k2vv"}, 1)
    provider = k2vv_providers.Provider("p", "http://h/v1", "m", headers={"X-Title": "k2vv", "Authorization": "Bearer s",
                                                               "X-Api-Key": "s"})
    assert provider.public_headers() == {"X-Title": "k2vv"}


# ---- statistics --------------------------------------------------------------------------------------

def test_wilson_matches_known_values_and_null_on_zero():
    assert k2vv_stats.wilson(0, 0) is None
    assert k2vv_stats.wilson(90, 100) == [0.825634, 0.944771]
    assert k2vv_stats.wilson(10, 10)[1] == 1.0


def test_binomial_draws_have_the_right_mean():
    rng = random.Random(7)
    for n, p in [(100_000, 0.3), (40, 0.05), (1000, 0.9)]:
        mean = sum(k2vv_stats.binomial(rng, n, p) for _ in range(400)) / 400
        assert abs(mean - n * p) < 4 * (n * p * (1 - p) / 400) ** 0.5 + 0.5


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    per_case = [(1, 0, 0)] * 800 + [(0, 1, 0)] * 100 + [(0, 0, 1)] * 100 + [(0, 0, 0)] * 1000
    ci = k2vv_stats.bootstrap_f1(per_case)
    assert ci == k2vv_stats.bootstrap_f1(per_case)
    assert ci[0] < k2vv_stats.f1_of(800, 100, 100) < ci[1]
    assert k2vv_stats.bootstrap_f1([]) is None


def cases_of(lines) -> list:
    """The cases of test-set lines, through the reader every command uses; a bad line fails the test."""
    errors = []
    cases = list(k2vv.iter_cases(lines, "t", errors))
    assert errors == []
    return cases


def tally(per_case: list, trials: int = 1, bases: list | None = None) -> k2vv.Tally:
    """A Tally folded the way fold_answers folds one: each answer, then each case's facts."""
    out = k2vv.Tally(trials, with_baseline=bases is not None)
    for number, outcomes in enumerate(per_case):
        for answer in outcomes:
            out.add_answer(answer)
        out.add_case([k2vv.case_facts(answer) for answer in outcomes], bases[number] if bases else None)
    return out


def outcome(cls, names=()):
    return k2vv.Outcome(cls, "tool_calls" if cls in k2vv.TRIGGERED else "stop", names=names)


def test_f1_excludes_failed_pairs_and_reports_coverage():
    mine = [[outcome("valid", ("f",))], [outcome("valid", ("g",))], [outcome("no_call")], [outcome("no_call")],
            [outcome("failed")], [outcome("valid")]]
    base = [k2vv.BaselineAnswer(True, True, ("f",)), k2vv.BaselineAnswer(True, True, ("f",)),
            k2vv.BaselineAnswer(True, True), k2vv.BaselineAnswer(True, False),
            k2vv.BaselineAnswer(True, True), k2vv.BaselineAnswer(False, False)]
    cmp = tally(mine, bases=base).comparison()
    assert (cmp["TP"], cmp["FP"], cmp["FN"], cmp["TN"], cmp["pairs"]) == (2, 0, 1, 1, 4)
    assert cmp["coverage"] == round(4 / 6, 6)
    assert cmp["f1"] == round(4 / 5, 6) and cmp["precision"] == 1.0 and cmp["recall"] == round(2 / 3, 6)
    assert cmp["name_agreement"] == 0.5


INFO = {"provider": "p", "base_url": "http://h/v1", "model": "m", "dataset": "d", "dataset_sha256": "0" * 64,
        "cases": 0, "settings": {"temperature": None, "max_tokens": None, "extra_body": {}, "trials": 1,
                                 "limit": None, "normalize_tool_ids": False, "headers": []}}


def test_zero_denominator_gives_null_not_zero_or_one():
    summary = check_summary(tally([[outcome("no_call")]]).summary(thresholds=k2vv.default_thresholds(0.6),
                                                                  info=INFO, baseline_info=None))
    assert summary["schema_accuracy"] is None and summary["schema_accuracy_ci"] is None
    assert summary["per_call_schema_accuracy"] is None
    assert summary["verdict"]["status"] == "inconclusive"
    empty = check_summary(tally([]).summary(thresholds=k2vv.default_thresholds(None), info=INFO, baseline_info=None))
    assert empty["success_count"] == 0 and empty["latency"]["p50"] is None


@pytest.mark.parametrize("schema_ci,base_ci,coverage,status", [
    ([0.97, 0.99], [0.85, 0.9], 1.0, "pass"),
    ([0.90, 0.94], [0.85, 0.9], 1.0, "fail"),
    ([0.97, 0.99], [0.6, 0.7], 1.0, "fail"),
    ([0.93, 0.99], [0.85, 0.9], 1.0, "inconclusive"),
    ([0.97, 0.99], [0.85, 0.9], 0.9, "inconclusive"),
    (None, [0.85, 0.9], 1.0, "inconclusive"),
])
def test_verdict_from_intervals(schema_ci, base_ci, coverage, status):
    thresholds = k2vv.default_thresholds(0.6)
    verdict = k2vv.decide_verdict(schema_ci, 1.0, {"f1_ci": base_ci, "coverage": coverage}, thresholds)
    assert verdict["status"] == status
    assert k2vv.exit_code_of(verdict) == {"pass": 0, "fail": 1, "inconclusive": 3}[status]


def test_thinking_threshold_at_temperature_one():
    assert k2vv.default_thresholds(1.0)["min_f1"] == 0.73
    assert k2vv.default_thresholds(0.6)["min_f1"] == 0.80
    assert k2vv.default_thresholds(1.0, min_f1=0.5)["min_f1"] == 0.5


# ---- K2VV results as a baseline ---------------------------------------------------------------------

def test_k2vv_results_pair_by_data_index_and_request():
    cases = k2vv.load_test_set(None).all_cases()
    lines = gzip.decompress((ROOT / "tests/data/k2vv-results-sample/results.jsonl.gz").read_bytes()).decode().splitlines()

    def paired(lines):
        answers, stats = k2vv.k2vv_result_answers(lines), Counter()
        found = [k2vv.match_k2vv_result(answers, case, stats) for case in cases]
        return [a for a in found if a is not None], stats

    answers, stats = paired(lines)
    assert (stats["matched"], stats["mismatched"], len(answers)) == (40, 0, 40)
    k2vv_summary = json.loads((ROOT / "tests/data/k2vv-results-sample/summary.json").read_text())
    assert sum(a.triggered for a in answers) == k2vv_summary["finish_tool_calls"]
    shifted = [json.dumps(dict(json.loads(l), data_index=json.loads(l)["data_index"] + 1)) for l in lines]
    _, stats = paired(shifted)
    assert stats["matched"] < 5 and stats["mismatched"] > 30  # a shifted file is caught, not mis-paired


def test_urls_are_stored_and_printed_without_credentials():
    assert k2vv_providers.public_url("https://u:sk-secret@h.example/v1?key=abc") == "https://h.example/v1"
    assert k2vv_providers.public_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


def test_raw_completions_without_a_prompt_or_a_tokenizer_is_one_line(tmp_path, capsys):
    args = ["run", "--use_raw_completions", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--quiet",
            "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o")]
    assert k2vv.main(args) == 2
    err = capsys.readouterr().err
    assert "no `prompt` to send to /v1/completions" in err and "--tokenizer-model" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("flags, said", [
    (["--tokenizer-model", "x"], "add --use_raw_completions"),
    (["--use_raw_completions", "--api", "responses"], "choose one"),
])
def test_transport_flags_that_contradict_are_one_line(flags, said, capsys):
    assert k2vv.main(["run", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", *flags]) == 2
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("lines", [
    ["[DONE]"],
    [json.dumps({"error": {"message": "upstream overloaded"}, "choices": [{"index": 0, "delta": {},
                                                                          "finish_reason": "error"}]}), "[DONE]"],
    [chunk({"content": "hi"}), json.dumps({"error": {"message": "boom"}}), "[DONE]"],
], ids=["only_done", "openrouter_error_finish", "error_chunk"])
def test_a_stream_that_errored_or_said_nothing_is_not_an_answer(lines):
    assert not k2vv.reassemble_stream(lines).complete
    assert k2vv.score_exchange(body_with(), {"v": 1, "status": 200, "sse_lines": lines}).response_class == "truncated"


def test_a_200_body_carrying_an_error_is_not_an_answer():
    body = {"error": {"message": "x"}, "choices": [{"index": 0, "message": {}, "finish_reason": "stop"}]}
    assert not k2vv.parse_completion(body).complete


@pytest.mark.parametrize("exchange", [
    {"v": 1, "status": 200, "body": {"choices": [{"message": {"tool_calls": [{"function": {"name": ["x"]}}]},
                                                  "finish_reason": ["tool_calls"]}]}},
    {"v": 1, "status": 200, "body": {"choices": [{"message": {"tool_calls": 3}, "finish_reason": "tool_calls"}]}},
    {"v": 1, "status": 200, "sse_lines": [json.dumps({"choices": 5}), json.dumps(
        {"choices": [{"delta": {"tool_calls": 3}, "finish_reason": {"x": 1}}]}), chunk(finish="stop"), "[DONE]"]},
], ids=["list_name_and_finish", "tool_calls_not_a_list", "stream_odd_types"])
def test_malformed_provider_fields_are_findings_not_crashes(exchange):
    out = k2vv.score_exchange(body_with(), exchange)
    assert out.response_class in k2vv.RESPONSE_CLASSES
    assert "malformed_field" in out.findings or out.response_class in ("invalid", "empty_tool_calls")


def test_fragments_without_index_follow_their_id():
    frag = lambda **f: chunk({"tool_calls": [f]})
    lines = [frag(id="call_1", function={"name": "f", "arguments": '{"a"'}),
             frag(id="call_1", function={"arguments": ": 1}"}),
             frag(id="call_2", function={"name": "g", "arguments": "{}"}), chunk(finish="tool_calls"), "[DONE]"]
    parsed = k2vv.reassemble_stream(lines)
    assert [(c["name"], c["arguments"]) for c in parsed.calls] == [("f", '{"a": 1}'), ("g", "{}")]
    assert "missing_index" in parsed.findings


def test_an_index_less_fragment_never_overwrites_an_indexed_call():
    lines = [chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "f", "arguments": '{"q":"b"}'}}]}),
             chunk({"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": '{"q":"c"}'}}]}),
             chunk(finish="tool_calls"), "[DONE]"]
    parsed = k2vv.reassemble_stream(lines)
    assert [c["arguments"] for c in parsed.calls] == ['{"q":"b"}', '{"q":"c"}']


def test_pass_at_k_counts_each_line_even_when_lines_repeat():
    body = {"messages": [{"role": "user", "content": "same"}]}
    cases = cases_of([json.dumps(body), json.dumps(body)])
    assert cases[0].case_id == cases[1].case_id
    both = [outcome("valid"), outcome("invalid")]  # each line counts, with the same two answers
    trials = check_summary(tally([both, both], trials=2).summary(thresholds=k2vv.default_thresholds(0.6),
                                                                 info=INFO, baseline_info=None))["trials"]
    assert trials == {"k": 2, "pass_at_k": 1.0, "pass_hat_k": 0.0, "flaky": 2,  # valid once, invalid once: flaky
                      "flaky_cases": [{"data_index": 1, "case_id": ""}, {"data_index": 2, "case_id": ""}]}


def test_no_baseline_is_inconclusive_unless_f1_is_waived():
    thresholds = k2vv.default_thresholds(0.6)
    assert k2vv.decide_verdict([0.97, 0.99], 1.0, None, thresholds)["status"] == "inconclusive"
    waived = k2vv.default_thresholds(0.6, min_f1=0)
    assert k2vv.decide_verdict([0.97, 0.99], 1.0, None, waived)["status"] == "pass"


@pytest.mark.parametrize("argv", [["--api", "KEY"], ["--api-k=KEY"]])
def test_abbreviated_flags_are_refused_so_a_key_cannot_slip_into_a_resume_line(argv):
    with pytest.raises(SystemExit):
        k2vv.main(["run", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", *argv])
    assert k2vv.resume_command(["run", "--api-key", "KEY", "--x", "KEY2KEY"], "KEY") == "k2vv run --x '***2***'"


def test_odd_history_shapes_never_crash_normalization_or_lint():
    line = {"messages": [{"role": "assistant", "tool_calls": [{"id": ["a"], "function": "get"}, "x"]},
                         {"role": "tool", "tool_call_id": ["a"], "content": ""},
                         {"role": "assistant", "tool_calls": "nope"}]}
    body = k2vv.prepare_request(line, "m", tool_ids=True)
    assert body["messages"][0]["tool_calls"][0]["id"] == "functions.:0"
    cases = cases_of([json.dumps(line)])
    assert any("tool-call ids" in f[2] for f in k2vv.lint_cases(cases, "t"))


def test_k2vv_hash_matches_k2vv_for_non_ascii_bodies():
    import hashlib
    body = {"messages": [{"role": "user", "content": "北京天气怎么样?"}], "model": "m"}
    k2vv_way = hashlib.md5(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    assert k2vv.k2vv_hash(body) == k2vv_way
    lines = gzip.decompress((ROOT / "tests/data/k2vv-results-sample/results.jsonl.gz").read_bytes()).decode().splitlines()
    assert all(k2vv.k2vv_hash(json.loads(l)["request"]) == json.loads(l)["hash"] for l in lines)
