"""k2vv_report — summaries in, `report.json` and its terminal, Markdown and HTML renderings out.

Pure: the caller (`k2vv report`, `k2vv demo`) reads the run directories and writes the files. This
module imports nothing from `k2vv` (DESIGN §1), so a report can be rendered from any summaries.
"""
from __future__ import annotations

import html
import json
import re
import unicodedata
from typing import Iterable

__all__ = ["REPORT_FILES", "failure_examples", "build_report", "render_report_table", "render_report_md",
           "render_report_html", "render_summary", "render_progress", "render_probes", "render_providers",
           "junit_xml", "diff_cases", "case_label"]

REPORT_FILES = ("report.json", "report.md", "report.html")

# Failure classes a leaderboard names (DESIGN §8), in the order that breaks ties between equal
# counts. `unscored` is left out: it is the dataset's fault, not the provider's; `no_call` is a
# legitimate answer. Response classes count answers, call classes count calls.
REPORT_RESPONSE_FAILURES = ("invalid", "empty_tool_calls", "failed", "truncated", "rejected", "unanswered")
REPORT_CALL_FAILURES = ("invalid_json", "non_standard_json", "unknown_tool", "schema_mismatch")
REPORT_TOP = 3  # failure classes named per provider where space is short (terminal, Markdown)
REPORT_MD_COLUMNS = ("Provider", "Endpoint", "tool_call_f1 (95% CI)", "count_finish_reason_tool_calls",
                     "count_successful_tool_call", "schema_accuracy (95% CI)", "coverage", "verdict")

# Characters that untrusted text may not carry into a terminal or a page: C0/C1 controls (an ANSI
# escape in a provider name must not drive the terminal), bidi overrides (U+202E must not reorder a
# table: Trojan Source), lone surrogates (unencodable) and noncharacters (HTML5 parse errors).
_UNSAFE_TEXT = re.compile(
    "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069\\ud800-\\udfff\\ufdd0-\\ufdef"
    + "".join(f"\\U{plane:04x}fffe\\U{plane:04x}ffff" for plane in range(17)) + "]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#!~])")
_MD_ENTITIES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


# ---- 1. the report document (`k2vv report`): summaries in, report.json and renderings out ------

def _example_of(example) -> dict | None:
    """The four fields of a caller-chosen example, nothing else, so report.json stays strict."""
    if not isinstance(example, dict):
        return None
    return {"data_index": example.get("data_index"), "case_id": str(example.get("case_id", "")),
            "tool": example.get("tool"), "detail": str(example.get("detail", ""))}


def report_failures(summary: dict, examples: dict) -> list[dict]:
    """Every failure class with a non-zero count, most frequent first, each with its example."""
    classes = summary["classes"]
    found = [("response", name, classes["responses"][name]) for name in REPORT_RESPONSE_FAILURES]
    found += [("call", name, classes["calls"][name]) for name in REPORT_CALL_FAILURES]
    order = {name: i for i, (_, name, _) in enumerate(found)}
    found = sorted((f for f in found if f[2]), key=lambda f: (-f[2], order[f[1]]))
    return [{"class": name, "kind": kind, "count": count, "example": _example_of(examples.get(name))}
            for kind, name, count in found]


# What each wire finding means for a vendor, in plain words (DESIGN §10).
FINDING_WORDS = {
    "markup_in_content": "tool-call markup leaked into the answer text: the vendor's tool-call parser missed calls",
    "markup_in_reasoning": "tool-call markup appears in the reasoning text",
    "reasoning_only": "answers that reason and then say and call nothing",
    "text_beside_calls": "text sent next to tool calls",
    "duplicate_call_id": "two calls in one answer share an id: a history replay would mix them up",
    "null_call_id": "tool calls without an id",
    "usage_mismatch": "usage where prompt + completion tokens is not the total",
    "usage_missing": "answers without token usage",
    "cumulative_arguments": "streamed arguments resent whole instead of in pieces",
    "finish_reason_mismatch": "calls with a finish_reason other than tool_calls, or the reverse",
    "missing_done": "streams that ended without [DONE]",
    "non_standard_finish_reason": "finish_reason values the OpenAI API does not have",
    "name_changed": "a call's name changed mid-stream",
    "non_string_arguments": "arguments sent as an object instead of a JSON string",
}


def report_why(summary: dict, examples: dict) -> list[dict]:
    """Why a provider scored as it did, most telling first, each cause in plain words with an
    example: its calls where the baseline had none and the reverse, schema failures, arguments
    that differ from the expected calls or from the baseline's, wire findings, routing."""
    why = []
    base = summary.get("baseline") or {}
    for key, field, words in (("false_negatives", "baseline_called", "did not call tools where the baseline did"),
                              ("false_positives", "called", "called tools where the baseline did not")):
        count = base.get("FN" if key == "false_negatives" else "FP") or 0
        if count:
            first = (base.get(key) or [None])[0]
            example = None if first is None else (
                f"data_index {first['data_index']}: " + (f"the baseline called {', '.join(map(str, first[field]))}, "
                                                         "this provider answered without a call"
                                                         if key == "false_negatives" else
                                                         f"this provider called {', '.join(map(str, first[field]))}, "
                                                         "the baseline answered without a call"))
            why.append({"cause": key, "count": count, "text": f"{words} ({count} cases)", "example": example})
    bad = [f for f in report_failures(summary, examples) if f["class"] not in ("failed", "truncated", "unanswered")]
    if bad:
        top = bad[0]
        why.append({"cause": "schema", "count": sum(f["count"] for f in bad if f["kind"] == "response") or top["count"],
                    "text": "arguments that fail the tool's schema: " + ", ".join(f"{f['class']} {f['count']}"
                                                                                   for f in bad[:4]),
                    "example": _example_text(top["example"])})
    accuracy = summary.get("argument_accuracy") or {}
    wrong = (accuracy.get("checked") or 0) - (accuracy.get("matched") or 0)
    if wrong:
        errors = accuracy.get("errors") or {}
        top = next(iter(errors), None)
        why.append({"cause": "arguments", "count": wrong,
                    "text": f"calls that differ from the expected ones on {wrong} of {accuracy['checked']} answers "
                            "(BFCL's checker): " + ", ".join(f"{k} {v}" for k, v in list(errors.items())[:4]),
                    "example": _example_text(examples.get(f"expected:{top}")) if top else None})
    agreement = base.get("argument_agreement") or {}
    if agreement.get("disagreeing"):
        first = (agreement.get("cases") or [None])[0]
        why.append({"cause": "arguments_vs_baseline", "count": agreement["disagreeing"],
                    "text": f"same tools as the baseline but other arguments on {agreement['disagreeing']} cases",
                    "example": None if first is None else f"data_index {first['data_index']}"})
    for name, count in sorted((summary.get("findings") or {}).items(), key=lambda kv: -kv[1]):
        if name in FINDING_WORDS and count:
            why.append({"cause": name, "count": count, "text": f"{FINDING_WORDS[name]} ({count})", "example": None})
    routing = summary.get("routing") or {}
    if routing.get("mixed"):
        why.append({"cause": "routing", "count": len(routing["providers"]),
                    "text": "served by several upstream providers in one run: "
                            + ", ".join(f"{k} {v}" for k, v in routing["providers"].items()), "example": None})
    return why


def _example_text(example) -> str | None:
    if not example:
        return None
    index, tool, detail = _example_parts(example)
    return f"data_index {index}{'' if tool is None else f' · tool {tool}'}: {detail}"


def report_row(summary: dict, examples: dict, baseline: str | None) -> dict:
    """One leaderboard row with K2VV's column names. Coverage is the baseline's (scored pairs / cases)
    or, without a baseline, the answered share: the same number the verdict was decided on."""
    info, comparison = summary["k2vv"], summary["baseline"]
    is_baseline = baseline is not None and info["provider"] == baseline
    own = None if is_baseline else comparison  # the baseline against itself is 1 by construction: K2VV shows "-"
    if comparison is not None:
        coverage, basis = comparison["coverage"], "baseline"
    else:
        total = summary["success_count"] + summary["failure_count"]
        coverage, basis = (round(summary["success_count"] / total, 6) if total else None), "answered"
    return {
        "provider": info["provider"],
        "endpoint": info["base_url"],
        "model": summary["model"] if summary["model"] is not None else info.get("model"),
        "is_baseline": is_baseline,
        "tool_call_f1": own["f1"] if own else None,
        "f1_ci": own["f1_ci"] if own else None,
        "count_finish_reason_tool_calls": summary["finish_tool_calls"],
        "count_successful_tool_call": summary["successful_tool_call_count"],
        "schema_accuracy": summary["schema_accuracy"],
        "schema_accuracy_ci": summary["schema_accuracy_ci"],
        "coverage": coverage,
        "coverage_basis": basis,
        "verdict": {"status": summary["verdict"]["status"], "reasons": list(summary["verdict"]["reasons"])},
        "retries": sum(n for attempts, n in summary["attempts"].items() if int(attempts) > 1),
        "runner": summary.get("runner"),  # absent from summaries written before 0.1.0's pace
        "precision": own["precision"] if own else None,
        "recall": own["recall"] if own else None,
        "confusion": {k: own[k] for k in ("TP", "FP", "FN", "TN")} if own else None,
        "latency": summary.get("latency"),
        "usage": summary.get("usage"),
        "why": report_why(summary, examples),
        "top_failures": report_failures(summary, examples),
        "thresholds": dict(summary["verdict"]["thresholds"]),
    }


def report_probes(probe: dict | None) -> dict | None:
    """A run directory's probe.json in a row: how many probes passed, and each failed one with the
    vendor's answer (None when the run directory holds no probe.json: the row's key is left out)."""
    if not isinstance(probe, dict) or not isinstance(probe.get("probes"), list):
        return None
    probes = [p for p in probe["probes"] if isinstance(p, dict)]
    return {"passed": sum(p.get("passed") is True for p in probes), "total": len(probes),
            "failed": [{"name": str(p.get("name")), "rule": str(p.get("rule")), "answer": str(p.get("answer", "")),
                        "why": str(p.get("why", ""))} for p in probes if p.get("passed") is not True]}


def _probe_lines(row: dict) -> list[str]:
    """The row's probe results in plain words: a count, then each failed probe and the answer."""
    probes = row.get("probes")
    if not probes:
        return []
    return [f"probes {probes['passed']} of {probes['total']} pass"] + [
        f"{f['name']} ({f['rule']}) failed: {f['why']} · {f['answer']}" for f in probes["failed"]]


def _row_order(row: dict):
    """pass first, then F1 high to low, then schema_accuracy high to low; no value sorts last."""
    missing = float("inf")
    f1, schema = row["tool_call_f1"], row["schema_accuracy"]
    return (row["verdict"]["status"] != "pass", missing if f1 is None else -f1,
            missing if schema is None else -schema, row["provider"])


def build_report(entries: list[dict], baseline: str | None, generated: dict) -> dict:
    """The report.json document (shape: schemas/report.json). Each entry is {"summary": a summary.json,
    "examples": {failure_class: example}}. Raises ValueError when there is nothing to compare, when
    rows are not comparable (another test set) or one run appears twice (same provider, model and
    settings): such a leaderboard would silently mislead."""
    if not entries:
        raise ValueError("no provider summaries to report")
    rows, seen = [], set()
    for entry in entries:
        summary = entry["summary"]
        info = summary["k2vv"]
        if info["dataset_sha256"] != generated["dataset_sha256"]:
            raise ValueError(f"provider {info['provider']!r} was scored on another test set "
                             f"(sha256 {info['dataset_sha256'][:12]}, report {generated['dataset_sha256'][:12]})")
        run = (info["provider"], info.get("model"), json.dumps(info.get("settings"), sort_keys=True))
        if run in seen:
            raise ValueError(f"provider {info['provider']!r} appears twice with the same model and settings")
        seen.add(run)
        rows.append(report_row(summary, entry.get("examples") or {}, baseline))
        probes = report_probes(entry.get("probes"))
        if probes is not None:
            rows[-1]["probes"] = probes
    names = [row["provider"] for row in rows]
    for row in rows:  # one endpoint, several models (runs/<host_port>-<model>/): name the model too
        if names.count(row["provider"]) > 1:
            row["provider"] = f"{row['provider']} · {row['model']}"
    rows.sort(key=_row_order)
    shared = [row["thresholds"] for row in rows]
    return {
        "generated": {"k2vv_version": generated["k2vv_version"], "dataset": generated["dataset"],
                      "dataset_sha256": generated["dataset_sha256"]},
        "baseline": baseline,
        # One set of thresholds when every row was judged by the same bars (the usual case); else
        # null and each row carries its own (a thinking model at temperature 1.0 has min_f1 0.73).
        "thresholds": shared[0] if shared and all(t == shared[0] for t in shared) else None,
        "rows": rows,
    }


# ---- 2. formatting helpers shared by the report renderers ------------------------------------

def _plain(text, limit: int | None = None) -> str:
    """One line of untrusted text: unsafe characters become U+FFFD, whitespace runs one space,
    clipped to `limit` characters with an ellipsis."""
    text = " ".join(_UNSAFE_TEXT.sub("\ufffd", "" if text is None else str(text)).split())
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


def _cols(text: str) -> int:
    """Terminal columns of text: East Asian wide characters take two (provider names can be 火山引擎)."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def _fit(text: str, width: int) -> str:
    if _cols(text) <= width:
        return text
    while text and _cols(text) > width - 1:
        text = text[:-1]
    return text + "…"


def _fit_middle(text: str, width: int) -> str:
    """`text` within `width` columns, cut in the middle: both ends of a long name tell runs apart
    (`127.0.0.1_8000 · kimi-k2` and `… · kimi-k2-thinking`)."""
    if _cols(text) <= width or width < 5:
        return _fit(text, width)
    tail = ""
    while _cols(tail) < (width - 1) * 2 // 3:
        tail = text[-(len(tail) + 1):]
    return _fit(text[:len(text) - len(tail)], width - _cols(tail)) + tail


def _pad(text: str, width: int, right: bool = False) -> str:
    gap = " " * max(0, width - _cols(text))
    return gap + text if right else text + gap


def _frac(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _ci_text(ci) -> str:
    return "" if not ci else f" [{ci[0]:.3f}, {ci[1]:.3f}]"


def _pct(x) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}%"


def _pct_ci(ci) -> str:
    return "" if not ci else f" ({ci[0] * 100:.2f}–{ci[1] * 100:.2f})"


def _f1_text(row: dict, pct: bool = True) -> str:
    """K2VV prints "-" for the baseline's own trigger similarity; so do we."""
    if row["tool_call_f1"] is None:
        return "- (baseline)" if row["is_baseline"] else "-"
    return _pct(row["tool_call_f1"]) + _pct_ci(row["f1_ci"]) if pct else \
        _frac(row["tool_call_f1"]) + _ci_text(row["f1_ci"])


def _facts_text(row: dict) -> str:
    """Precision and recall beside F1, latency and token usage, on one line."""
    parts = []
    if row.get("confusion"):
        c = row["confusion"]
        parts.append(f"precision {_frac(row['precision'])} · recall {_frac(row['recall'])} · TP {c['TP']} "
                     f"FP {c['FP']} FN {c['FN']} TN {c['TN']}")
    lat = row.get("latency") or {}
    if lat.get("p50") is not None:
        parts.append(f"latency p50/p90/p99 {lat['p50']:.0f}/{lat['p90']:.0f}/{lat['p99']:.0f} ms · TTFB p50/p90 "
                     f"{lat['ttfb_p50']:.0f}/{(lat.get('ttfb_p90') or 0):.0f} ms")
    usage = row.get("usage") or {}
    if usage.get("total_tokens"):
        parts.append(f"tokens {usage['prompt_tokens']:,} in · {usage['completion_tokens']:,} out")
    return " · ".join(parts)


def _pace_text(runner: dict) -> str:
    first = runner["first_attempt_success"]
    return (f"pace {runner['concurrency_settled']} in flight of {runner['concurrency_ceiling']} · "
            f"{runner['rate_limited']} rate-limited attempts"
            + ("" if first is None else f" · {first * 100:.0f}% answered at the first attempt"))


def _thresholds_text(t: dict) -> str:
    return (f"tool_call_f1 ≥ {t['min_f1']:.2f} · schema_accuracy ≥ {t['min_schema_accuracy']:.2f} · "
            f"coverage ≥ {t['min_coverage']:.2f}")


def _example_parts(example: dict) -> tuple[str, str | None, str]:
    """(data_index, tool or None, detail) of an example as plain text; each renderer escapes them."""
    tool = None if example.get("tool") is None else _plain(example["tool"], 60)
    return _plain(example.get("data_index")), tool, _plain(example.get("detail"))


def _how_to_read(report: dict) -> str:
    t = report["thresholds"]
    coverage = f"{t['min_coverage']:.2f}" if t else "the row's min_coverage"
    return ("tool_call_f1 is trigger agreement with the baseline: the F1 of answering with finish_reason "
            "tool_calls exactly when the baseline does, over the cases both answered. schema_accuracy is the "
            "share of triggered answers (finish_reason tool_calls) whose every tool call parses, names a "
            "tool of the request and validates against its schema. Each value has a 95% interval (bootstrap "
            "over cases for F1, Wilson for schema_accuracy), drawn as a whisker in the chart. pass: every "
            "interval's lower bound clears its threshold. fail: an upper bound is below one. inconclusive: an "
            f"interval spans a threshold, or coverage (cases scored against the baseline, or answered when "
            f"there is no baseline) is below {coverage}; more cases narrow the intervals.")


# ---- 3. report: terminal ---------------------------------------------------------------------

def render_report_table(report: dict, width: int = 80) -> str:
    """The leaderboard for a terminal, within `width` columns (wide characters counted twice): a
    value and its interval as `0.621 [0.56, 0.68]`, then each provider's top failure classes.
    Untrusted text is sanitised."""
    g = report["generated"]
    lines = [_fit(f"k2vv {_plain(g['k2vv_version'])} report · baseline {_plain(report['baseline']) or 'none'}", width),
             _fit(f"dataset {_plain(g['dataset'])} (sha256 {_plain(g['dataset_sha256'])[:12]})", width)]
    if report["thresholds"]:
        lines.append(_fit("thresholds " + _thresholds_text(report["thresholds"]), width))
    header = ("provider", "F1 [95% CI]", "calls", "schema [95% CI]", "cover", "retry", "verdict")
    right = (False, False, True, False, True, True, False)
    rows = [(_plain(row["provider"]), _short_f1(row), str(row["count_finish_reason_tool_calls"]),
             _short(row["schema_accuracy"], row["schema_accuracy_ci"]), _frac(row["coverage"], 2),
             str(row["retries"]), row["verdict"]["status"].upper()) for row in report["rows"]]
    widths = [max(_cols(line[i]) for line in [header] + rows) for i in range(len(header))]
    widths[0] = max(8, min(widths[0], width - sum(widths[1:]) - 2 * (len(header) - 1)))
    for line in [header] + rows:
        cells = [_fit_middle(line[0], widths[0])] + list(line[1:])
        lines.append("  ".join(_pad(c, w, r) for c, w, r in zip(cells, widths, right)).rstrip())
    lines.append("top failures")
    for row, line in zip(report["rows"], rows):
        top = " · ".join(f"{f['class']} {f['count']}" for f in row["top_failures"][:REPORT_TOP]) or "none"
        lines.append(_fit(f"  {_pad(_fit_middle(line[0], widths[0]), widths[0])}  {top}", width))
    if any(row.get("why") for row in report["rows"]):
        lines.append("why")
        for row, line in zip(report["rows"], rows):
            for cause in (row.get("why") or [])[:2]:
                lines.append(_fit(f"  {_pad(_fit_middle(line[0], widths[0]), widths[0])}  {_plain(cause['text'])}",
                                  width))
    if any(row.get("probes") for row in report["rows"]):
        lines.append("probes")
        for row, line in zip(report["rows"], rows):
            for text in _probe_lines(row)[:4]:
                lines.append(_fit(f"  {_pad(_fit(line[0], widths[0]), widths[0])}  {_plain(text)}", width))
    if not report["thresholds"]:
        for row, line in zip(report["rows"], rows):
            lines.append(_fit(f"thresholds {line[0]}: {_thresholds_text(row['thresholds'])}", width))
    return "\n".join(lines)


def _short(x, ci) -> str:
    return _frac(x) + ("" if not ci else f" [{ci[0]:.2f}, {ci[1]:.2f}]")


def _short_f1(row: dict) -> str:
    if row["tool_call_f1"] is None:
        return "- (baseline)" if row["is_baseline"] else "-"
    return _short(row["tool_call_f1"], row["f1_ci"])


# ---- 4. report: Markdown ---------------------------------------------------------------------

def _md(text, limit: int | None = None) -> str:
    """Untrusted text as one inert Markdown run: `|` cannot end a table cell, `<` cannot open HTML
    (an entity, which every renderer decodes, rather than a backslash, which some ignore), and
    `[`, `*`, `` ` `` cannot start a link, emphasis or code."""
    return _MD_SPECIAL.sub(r"\\\1", _plain(text, limit).translate(_MD_ENTITIES))


def render_report_md(report: dict) -> str:
    """The leaderboard as Markdown shaped like K2VV's README table (its column names, percentages,
    "-" for the baseline's own F1), then top failures with one example each, thresholds, how to read."""
    g = report["generated"]
    rows = report["rows"]
    models = {row["model"] for row in rows}
    out = ["# k2vv report", "",
           f"Dataset {_md(g['dataset'])} · sha256 {_md(g['dataset_sha256'])} · baseline "
           f"{_md(report['baseline']) if report['baseline'] else 'none'} · "
           + (f"model {_md(next(iter(models)))} · " if len(models) == 1 else "")
           + f"k2vv {_md(g['k2vv_version'])}", "",
           "| " + " | ".join(REPORT_MD_COLUMNS) + " |",
           "|---|---|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        status = row["verdict"]["status"]
        out.append("| " + " | ".join((
            _md(row["provider"]), _md(row["endpoint"]), _f1_text(row),
            str(row["count_finish_reason_tool_calls"]), str(row["count_successful_tool_call"]),
            _pct(row["schema_accuracy"]) + _pct_ci(row["schema_accuracy_ci"]), _pct(row["coverage"]),
            f"**{status}**" if status == "pass" else status)) + " |")
    out += ["", "## Top failures", ""]
    for row in rows:
        facts = [f"verdict {row['verdict']['status']}"]
        if len(models) > 1:
            facts.append(f"model {_md(row['model'])}")
        if row["retries"]:
            facts.append(f"{row['retries']} answers retried")
        if row.get("runner"):
            facts.append(_md(_pace_text(row["runner"])))
        out.append(f"**{_md(row['provider'])}** ({' · '.join(facts)}): {_md('; '.join(row['verdict']['reasons']))}")
        out.append("")
        for failure in row["top_failures"][:REPORT_TOP]:
            unit = "answers" if failure["kind"] == "response" else "calls"
            if failure["example"]:
                index, tool, detail = _example_parts(failure["example"])
                tool = "" if tool is None else f" · tool {_md(tool)}"
                example = f"data_index {_md(index)}{tool} · {_md(_plain(detail, 200))}"
            else:
                example = "no example kept"
            out.append(f"- `{failure['class']}` × {failure['count']} {unit} — e.g. {example}")
        if not row["top_failures"]:
            out.append("- no failures")
        out.append("")
        if row.get("why"):
            out.append("Why:")
            out.append("")
            out += [f"- {_md(cause['text'])}" + (f" — e.g. {_md(_plain(cause['example'], 200))}" if cause["example"]
                                                  else "") for cause in row["why"]]
            out.append("")
        if row.get("probes"):
            head, *failed = _probe_lines(row)
            out += [_md(head.capitalize()), ""] + [f"- {_md(_plain(text, 300))}" for text in failed] + ([""] if failed else [])
        facts = _facts_text(row)
        if facts:
            out += [_md(facts), ""]
    out += ["## Thresholds", ""]
    if report["thresholds"]:
        out.append("Every row: " + _thresholds_text(report["thresholds"]) + " (95% interval bounds).")
    else:
        out += [f"- {_md(row['provider'])}: {_thresholds_text(row['thresholds'])}" for row in rows]
    out += ["", f"Dataset sha256: {_md(g['dataset_sha256'])}", "", "## How to read this", "",
            _how_to_read(report), ""]
    return "\n".join(out)


# ---- 5. report: HTML -------------------------------------------------------------------------

def _h(text, limit: int | None = None) -> str:
    """Untrusted text for HTML text or a quoted attribute value."""
    return html.escape(_plain(text, limit), quote=True)


_REPORT_CSS = """
:root{--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--panel:#f6f8fa;
--f1:#0969da;--schema:#bc4c00;--on-bar:#fff;--pass:#1a7f37;--fail:#d1242f;--inconclusive:#9a6700}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;
--panel:#151b23;--f1:#4493f8;--schema:#f0883e;--on-bar:#0d1117;--pass:#3fb950;--fail:#f85149;--inconclusive:#d29922}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:68rem;margin:0 auto;padding:1rem .75rem}
h1{font-size:1.5rem;line-height:1.25;margin:.5rem 0}
h2{font-size:1.2rem;margin:1.75rem 0 .5rem}
p{margin:.5rem 0}
.meta,.note{color:var(--muted);font-size:.9rem;overflow-wrap:anywhere}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em;overflow-wrap:anywhere}
figure{margin:0}
figcaption{color:var(--muted);font-size:.85rem;margin-top:.25rem}
.chart{overflow-x:auto;border:1px solid var(--line);border-radius:6px;padding:.25rem}
.chart svg{display:block;width:100%;height:auto;margin:0 auto}
svg text{fill:var(--fg);font-size:13px}
svg .small{font-size:12px}
svg .muted{fill:var(--muted)}
svg .on-bar{fill:var(--on-bar);font-size:11px}
.grid{stroke:var(--line);stroke-width:1}
.axis{stroke:var(--muted);stroke-width:1}
.bar-f1{fill:var(--f1)}
.bar-schema{fill:var(--schema)}
.whisker{stroke:var(--fg);stroke-width:1.5;fill:none}
.whisker-halo{stroke:var(--bg);stroke-width:4;fill:none;opacity:.7}
.legend-whisker{stroke:var(--fg);stroke-width:1.5;fill:none}
.threshold,.legend-threshold{stroke-width:1.5;stroke-dasharray:6 4}
.threshold-halo{stroke:var(--bg);stroke-width:4;opacity:.8}
.f1.threshold,.f1.legend-threshold{stroke:var(--f1)}
.schema.threshold,.schema.legend-threshold{stroke:var(--schema)}
svg text.pass,.pass{fill:var(--pass);color:var(--pass)}
svg text.fail,.fail{fill:var(--fail);color:var(--fail)}
svg text.inconclusive,.inconclusive,svg text.incomplete,.incomplete{fill:var(--inconclusive);color:var(--inconclusive)}
.scroll{overflow-x:auto;border:1px solid var(--line);border-radius:6px}
table{border-collapse:separate;border-spacing:0;width:100%;font-size:.9rem}
caption{caption-side:top;text-align:left;padding:.5rem .6rem;color:var(--muted);position:sticky;left:0;max-width:calc(100vw - 2rem)}
th,td{padding:.45rem .6rem;border-top:1px solid var(--line);text-align:left;vertical-align:top;white-space:nowrap}
thead th{background:var(--panel);font-size:.8rem;white-space:normal;vertical-align:bottom;min-width:6.5rem}
.num{text-align:right;font-variant-numeric:tabular-nums}
.ci{display:block;color:var(--muted);font-size:.8rem}
.model{display:block;color:var(--muted);font-size:.8rem}
.provider{white-space:normal;min-width:7.5rem;max-width:11rem;overflow-wrap:anywhere;position:sticky;left:0;background:var(--bg);z-index:1}
thead .provider{background:var(--panel)}
td.endpoint{white-space:normal;min-width:10rem;max-width:22rem;overflow-wrap:anywhere}
@media (max-width:40rem){td.endpoint{min-width:9rem;font-size:.8rem}}
.badge{display:inline-block;padding:0 .5rem;border:1px solid currentColor;border-radius:999px;font-size:.8rem;font-weight:600}
details{border:1px solid var(--line);border-radius:6px;background:var(--panel);padding:.5rem .75rem;margin:.5rem 0}
summary{cursor:pointer;font-weight:600;overflow-wrap:anywhere}
details ul{padding-left:1.25rem;margin:.5rem 0}
details li{margin:.4rem 0;overflow-wrap:anywhere}
.detail{display:block;color:var(--muted);font-size:.85rem}
"""


def _svg_chart(report: dict) -> str:
    """Bars of F1 and schema_accuracy per provider on a 0..1 scale with their 95% whiskers and dashed
    threshold lines. Drawn in viewBox units; CSS scales it to the page, never below 3/4 size (text
    stays legible on a phone: the wrapper scrolls sideways instead) nor above 3/2."""
    rows = report["rows"]
    n = max(1, len(rows))
    bar, gap = 26, 4
    left, right, plot_h, bottom = 46, 10, 220, 62
    plot_w = max(76 * n, 300)
    group = plot_w / n
    width = left + plot_w + right
    # legend first: its rows decide where the plot starts. Threshold lines are named here, in their
    # bar's colour, rather than at the line's end, which would cost a margin a phone does not have.
    marks = sorted({("f1", "min F1", r["thresholds"]["min_f1"]) for r in rows}
                   | {("schema", "min schema", r["thresholds"]["min_schema_accuracy"]) for r in rows},
                   key=lambda m: (m[0], -m[2]))
    legend = [("bar-f1", "tool_call_f1"), ("bar-schema", "schema_accuracy"), ("whisker", "95% interval")]
    legend += [(f"legend-threshold {cls}", f"{name} {value * 100:g}%") for cls, name, value in marks]
    items, lx, ly = [], 8, 18
    for cls, label in legend:
        item = 24 + round(7.4 * len(label)) + 20
        if lx + item > min(width - 4, 440) and lx > 8:  # a phone sees the whole legend
            lx, ly = 8, ly + 22
        if cls.startswith("bar"):
            items.append(f'<rect class="{cls}" x="{lx}" y="{ly - 10}" width="16" height="11"/>')
        elif cls == "whisker":
            items.append(f'<path class="legend-whisker" d="M{lx + 8} {ly - 11}V{ly + 2}M{lx + 4} {ly - 11}'
                         f'H{lx + 12}M{lx + 4} {ly + 2}H{lx + 12}"/>')
        else:
            items.append(f'<line class="{cls}" x1="{lx}" x2="{lx + 18}" y1="{ly - 4}" y2="{ly - 4}"/>')
        items.append(f'<text x="{lx + 24}" y="{ly}">{label}</text>')
        lx += item
    top = ly + 24
    height = top + plot_h + bottom

    def y(v: float) -> float:
        return round(top + plot_h * (1 - min(max(v, 0.0), 1.0)), 1)

    title = "tool_call_f1 and schema_accuracy per provider, with 95% intervals and thresholds"
    desc = "; ".join(f"{_plain(r['provider'], 80)}: tool_call_f1 {_f1_text(r)}, schema_accuracy "
                     f"{_pct(r['schema_accuracy'])}{_pct_ci(r['schema_accuracy_ci'])}, {r['verdict']['status']}"
                     for r in rows)
    out = [f'<svg viewBox="0 0 {width:.0f} {height}" role="img" aria-labelledby="chart-title chart-desc" '
           f'style="min-width:{width * 0.75:.0f}px;max-width:{width * 1.5:.0f}px">',
           f'<title id="chart-title">{_h(title)}</title>', f'<desc id="chart-desc">{html.escape(desc)}</desc>',
           '<g class="legend">', *items, "</g>", '<g class="y-axis">']
    for tick in (0, 20, 40, 60, 80, 100):
        at = y(tick / 100)
        out.append(f'<line class="grid" x1="{left}" x2="{left + plot_w:.0f}" y1="{at}" y2="{at}"/>'
                   f'<text class="small muted" x="{left - 5}" y="{at + 4}" text-anchor="end">{tick}%</text>')
    out.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>'
               f'<line class="axis" x1="{left}" x2="{left + plot_w:.0f}" y1="{top + plot_h}" y2="{top + plot_h}"/>'
               f'<text class="small muted" transform="translate(12 {top + plot_h / 2:.0f}) rotate(-90)" '
               f'text-anchor="middle">score (0–100%)</text></g>')
    # one group per provider: two bars, their whiskers, the provider's name and verdict
    for i, row in enumerate(rows):
        x0 = left + i * group + (group - 2 * bar - gap) / 2
        name = _plain(row["provider"])
        status = row["verdict"]["status"]
        label = (f"{name}: tool_call_f1 {_f1_text(row)}, schema_accuracy {_pct(row['schema_accuracy'])}"
                 f"{_pct_ci(row['schema_accuracy_ci'])}, verdict {status}")
        out.append(f'<g class="bar-group" data-provider="{html.escape(name, quote=True)}" '
                   f'aria-label="{html.escape(label, quote=True)}"><title>{html.escape(label)}</title>')
        for j, (metric, cls, value, ci) in enumerate((
                ("tool_call_f1", "bar-f1", row["tool_call_f1"], row["f1_ci"]),
                ("schema_accuracy", "bar-schema", row["schema_accuracy"], row["schema_accuracy_ci"]))):
            bx = round(x0 + j * (bar + gap), 1)
            cx = round(bx + bar / 2, 1)
            if value is None:  # an empty slot that says why, written up the slot
                why = ("no calls" if metric == "schema_accuracy" else
                       "baseline" if row["is_baseline"] else "no baseline")
                out.append(f'<rect class="bar {cls}" x="{bx}" y="{top + plot_h}" width="{bar}" height="0"/>'
                           f'<text class="small muted" transform="translate({cx + 4} {top + plot_h - 6}) rotate(-90)">'
                           f"{why}</text>")
                continue
            h = round(plot_h * min(max(value, 0.0), 1.0), 1)
            out.append(f'<rect class="bar {cls}" x="{bx}" y="{y(value)}" width="{bar}" height="{h}">'
                       f"<title>{metric} {_pct(value)}{_pct_ci(ci)}</title></rect>")
            inside = h >= 20  # the value at the bar's foot, or above a bar too short to hold it
            out.append(f'<text class="{"on-bar" if inside else "small"}" x="{cx}" '
                       f'y="{top + plot_h - 6 if inside else y(value) - 4}" text-anchor="middle">'
                       f"{value * 100:.0f}</text>")
            if ci:
                lo, hi = y(ci[0]), y(ci[1])
                d = f"M{cx} {lo}V{hi}M{cx - 5} {lo}H{cx + 5}M{cx - 5} {hi}H{cx + 5}"
                out.append(f'<path class="whisker-halo" d="{d}"/><path class="whisker" d="{d}"/>')
        mid = left + i * group + group / 2
        short = html.escape(_fit(name, int(group / 7.5)))  # the whole name is in the group's <title>
        out.append(f'<text x="{mid:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{short}</text>'
                   f'<text class="small {_h(status)}" x="{mid:.1f}" y="{top + plot_h + 35}" text-anchor="middle">'
                   f"{_h(status)}</text></g>")
    out.append(f'<text class="small muted" x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle">'
               "provider, best first</text>")
    for cls, name, value in marks:  # over the bars, on a halo: a dash stays visible on a bar of its colour
        ends = f'x1="{left}" x2="{left + plot_w:.0f}" y1="{y(value)}" y2="{y(value)}"'
        out.append(f'<line class="threshold-halo" {ends}/><line class="threshold {cls}" {ends}>'
                   f"<title>{name} {value * 100:g}%</title></line>")
    out.append("</svg>")
    return "\n".join(out)


def render_report_html(report: dict) -> str:
    """One self-contained HTML5 page: inline CSS (light and dark), an inline SVG chart, the table in
    report order and a <details> per provider. No script, no external URL, so it can be mailed,
    attached to a CI run or opened offline, and a hostile provider name stays text."""
    g = report["generated"]
    rows = report["rows"]
    baseline = _h(report["baseline"]) if report["baseline"] else "none"
    t = report["thresholds"]
    models = {row["model"] for row in rows}
    model = f" · model {_h(next(iter(models)))}" if len(models) == 1 else ""
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<meta name="color-scheme" content="light dark">',
           f"<title>k2vv report · {_h(g['dataset'], 80)}</title>", f"<style>{_REPORT_CSS}</style>", "</head>",
           "<body>", "<main>", "<header>", "<h1>k2vv tool-calling report</h1>",
           f'<p class="meta">dataset {_h(g["dataset"])} · sha256 <code>{_h(g["dataset_sha256"])}</code> · '
           f"baseline {baseline}{model} · {len(rows)} providers · k2vv {_h(g['k2vv_version'])}</p>", "</header>",
           '<section aria-labelledby="chart-h">', '<h2 id="chart-h">Scores with 95% intervals</h2>',
           '<figure><div class="chart">', _svg_chart(report), "</div>",
           "<figcaption>Bars: tool_call_f1 and schema_accuracy; whiskers: 95% intervals; dashed lines: "
           "thresholds. Providers in leaderboard order.</figcaption></figure>", "</section>",
           '<section aria-labelledby="table-h">', '<h2 id="table-h">Leaderboard</h2>',
           f'<p class="note">Thresholds: {_h(_thresholds_text(t))}.</p>' if t else
           '<p class="note">Rows were judged by different thresholds: see each provider below.</p>',
           '<div class="scroll" role="region" aria-labelledby="table-caption" tabindex="0">', "<table>",
           '<caption id="table-caption">Best first: pass, then tool_call_f1, then schema_accuracy</caption>',
           "<thead><tr>"]
    # The verdict next to the provider, endpoint last: what a reader came for is visible at any width
    # (1280 px shows every column; 390 px shows provider, verdict and F1 before the table scrolls).
    provider, endpoint, f1_col, calls, successes, schema_col, coverage = REPORT_MD_COLUMNS[:7]
    headers = (provider, "verdict", f1_col, schema_col, calls, successes, coverage, "retries", endpoint)
    for i, label in enumerate(headers):  # <wbr> lets K2VV's long names wrap at their underscores
        cls = ' class="provider"' if i == 0 else ' class="num"' if 2 <= i <= 7 else ""
        out.append(f'<th scope="col"{cls}>{label.replace("_", "_<wbr>")}</th>')
    out.append("</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        status = _h(row["verdict"]["status"])  # escaped like the rest: a report may be re-read from a file
        f1 = "-" if row["tool_call_f1"] is None else _pct(row["tool_call_f1"])
        f1_ci = "baseline" if row["is_baseline"] and row["tool_call_f1"] is None else _pct_ci(row["f1_ci"]).strip()
        model = f'<span class="model">{_h(row["model"])}</span>' if len(models) > 1 else ""
        out.append(
            f'<tr><th scope="row" class="provider">{_h(row["provider"])}{model}</th>'
            f'<td><span class="badge {status}">{status}</span></td>'
            f'<td class="num">{f1}<span class="ci">{_h(f1_ci)}</span></td>'
            f'<td class="num">{_pct(row["schema_accuracy"])}'
            f'<span class="ci">{_h(_pct_ci(row["schema_accuracy_ci"]).strip())}</span></td>'
            f'<td class="num">{_h(row["count_finish_reason_tool_calls"])}</td>'
            f'<td class="num">{_h(row["count_successful_tool_call"])}</td>'
            f'<td class="num">{_pct(row["coverage"])}<span class="ci">{_h(row["coverage_basis"])}</span></td>'
            f'<td class="num">{_h(row["retries"])}</td>'
            f'<td class="endpoint">{_h(row["endpoint"])}</td></tr>')
    out += ["</tbody>", "</table>", "</div>", "</section>",
            '<section aria-labelledby="failures-h">', '<h2 id="failures-h">Failures by provider</h2>']
    for row in rows:
        status = _h(row["verdict"]["status"])
        total = sum(f["count"] for f in row["top_failures"] if f["kind"] == "response")
        opened = "" if status == "pass" else " open"  # why a row did not pass is the first question
        out.append(f'<details{opened}><summary>{_h(row["provider"])} · <span class="{status}">{status}</span> · '
                   f"{total} failing answers</summary>")
        out.append('<p class="note">' + " · ".join(_h(reason) for reason in row["verdict"]["reasons"])
                   + (f" · {_h(row['retries'])} answers retried" if row["retries"] else "")
                   + (f" · {_h(_pace_text(row['runner']))}" if row.get("runner") else "")
                   + ("" if t else f" · thresholds {_h(_thresholds_text(row['thresholds']))}") + "</p>")
        if row.get("why"):
            out.append('<p class="note">Why:</p><ul class="why">' + "".join(
                f"<li>{_h(cause['text'])}" + (f'<span class="detail">e.g. {_h(cause["example"], 300)}</span>'
                                              if cause["example"] else "") + "</li>" for cause in row["why"]) + "</ul>")
        if row.get("probes"):
            head, *failed = _probe_lines(row)
            out.append(f'<p class="note">{_h(head)}</p>' + ('<ul class="why">' + "".join(
                f"<li>{_h(text, 300)}</li>" for text in failed) + "</ul>" if failed else ""))
        facts = _facts_text(row)
        if facts:
            out.append(f'<p class="note">{_h(facts)}</p>')
        out.append("<ul>")
        for failure in row["top_failures"]:
            unit = "answers" if failure["kind"] == "response" else "calls"
            example = failure["example"]
            if example:
                index, tool, detail = _example_parts(example)
                tool = "" if tool is None else f" · tool <code>{_h(tool)}</code>"
                more = (f"data_index {_h(index)}{tool} · case "
                        f"<code>{_h(example.get('case_id'), 24)}</code>"
                        f'<span class="detail">{_h(detail, 1000)}</span>')
            else:
                more = "no example kept"
            out.append(f"<li><code>{_h(failure['class'])}</code> × {_h(failure['count'])} {unit} — e.g. {more}</li>")
        if not row["top_failures"]:
            out.append("<li>no failures</li>")
        out.append("</ul></details>")
    out += ["</section>", '<section aria-labelledby="read-h">', '<h2 id="read-h">How to read this</h2>',
            f"<p>{html.escape(_how_to_read(report))}</p>",
            f'<p class="note">Dataset sha256 <code>{_h(g["dataset_sha256"])}</code>.</p>',
            "</section>", "</main>", "</body>", "</html>", ""]
    return "\n".join(out)


# ---- 6. examples of each failure, from a run's results lines ----------------------------------

def failure_examples(records: Iterable[dict]) -> dict:
    """The first example of each failure class among a run's results.jsonl records (for the report)."""
    examples: dict = {}
    for rec in records:
        base = {"data_index": rec.get("data_index"), "case_id": rec.get("case_id", "")}
        cls = rec.get("response_class")
        calls = rec.get("calls") or []
        if cls in REPORT_RESPONSE_FAILURES and cls not in examples:
            bad = next((c for c in calls if c.get("class") != "valid"), calls[0] if calls else {})
            detail = rec.get("error_class") or bad.get("message") or bad.get("class") or cls
            examples[cls] = dict(base, tool=bad.get("name"), detail=str(detail))
        if rec.get("expected_match") is False and f"expected:{rec.get('expected_error')}" not in examples:
            tools = [c.get("name") for c in calls]
            examples[f"expected:{rec.get('expected_error')}"] = dict(
                base, tool=tools[0] if tools else None, detail=str(rec.get("expected_error")))
        for call in calls:
            name = call.get("class")
            if name in REPORT_CALL_FAILURES and name not in examples:
                where = f"at {call['pointer'] or '/'}: " if call.get("pointer") is not None else ""
                examples[name] = dict(base, tool=call.get("name"), detail=where + str(call.get("message", "")))
    return examples


def plural(count: int, noun: str) -> str:
    """'1 probe', '2 probes' (k2vv has the same two lines: this module imports nothing from it)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# ---- results lines, read back: JUnit for CI, and two runs compared case by case -----------------

# What makes a case fail in JUnit (DESIGN §7): a schema failure, or no scored answer.
JUNIT_FAILURES = frozenset({"invalid", "empty_tool_calls", "failed", "truncated", "rejected", "unanswered"})
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def case_label(rec: dict) -> str:
    """A results line's case as a person names it: its `id`, else `data_index N` (+ trial)."""
    own = rec.get("case_id")  # the line's `id`, or the hash of its body when it has none
    label = own if isinstance(own, str) and own and not _is_hash(own) else f"data_index {rec.get('data_index')}"
    return label + (f" trial {rec['sample']}" if rec.get("sample") else "")


def _is_hash(text) -> bool:
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def failure_message(rec: dict) -> str:
    """Why a case failed, in one line: its class, then the first bad call's tool, pointer and
    message, or the error that left it unanswered."""
    cls = rec.get("response_class")
    bad = next((c for c in rec.get("calls") or [] if isinstance(c, dict) and c.get("class") != "valid"), None)
    if bad is not None:
        where = f" at {bad['pointer'] or '/'}" if bad.get("pointer") is not None else ""
        return f"{cls}: {bad.get('class')} in tool {bad.get('name')!r}{where}: {bad.get('message') or ''}".rstrip(": ")
    reason = "finish_reason tool_calls without calls" if cls == "empty_tool_calls" else rec.get("error_class")
    return f"{cls}: {reason}"


def junit_xml(records: Iterable[dict], suite: str) -> str:
    """A JUnit document with one testcase per results line (DESIGN §7)."""
    from xml.sax.saxutils import escape, quoteattr
    clean = lambda text: _XML_UNSAFE.sub("\ufffd", str(text))
    cases, failures = [], 0
    for rec in records:
        name = quoteattr(clean(case_label(rec)))
        if rec.get("response_class") in JUNIT_FAILURES:
            failures += 1
            message = clean(failure_message(rec))[:1000]
            cases.append(f'  <testcase classname={quoteattr(clean(suite))} name={name}>\n'
                         f'    <failure type={quoteattr(clean(rec.get("response_class")))} message={quoteattr(message)}>'
                         f'{escape(message)}</failure>\n  </testcase>')
        else:
            cases.append(f"  <testcase classname={quoteattr(clean(suite))} name={name}/>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<testsuite name={quoteattr(clean(suite))} tests="{len(cases)}" failures="{failures}" errors="0" skipped="0">\n'
            + "\n".join(cases) + ("\n" if cases else "") + "</testsuite>\n")


def diff_cases(mine: dict, theirs: dict) -> list[str]:
    """How two answers to one case differ, one phrase a kind, in DIFF_KINDS order ([] when alike)."""
    if mine == theirs:
        return []
    out = []
    if mine["answered"] != theirs["answered"]:
        return [f"answered: {_yes(mine['answered'])} → {_yes(theirs['answered'])}"]
    if mine["trigger"] != theirs["trigger"]:
        out.append(f"trigger: {_yes(mine['trigger'])} → {_yes(theirs['trigger'])}")
    if mine["names"] != theirs["names"]:
        out.append(f"names: {', '.join(mine['names']) or '-'} → {', '.join(theirs['names']) or '-'}")
    if mine["class"] != theirs["class"]:
        out.append(f"class: {mine['class']} → {theirs['class']}")
    if mine["names"] == theirs["names"] and mine["arguments"] != theirs["arguments"]:
        out.append("arguments differ")
    if mine["findings"] != theirs["findings"]:
        added = sorted(set(theirs["findings"]) - set(mine["findings"]))
        gone = sorted(set(mine["findings"]) - set(theirs["findings"]))
        out.append("findings " + " ".join([f"+{f}" for f in added] + [f"-{f}" for f in gone]))
    return out


# ---- one run in the terminal: progress, summary, probes, providers ---------------------------------

def _fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def render_progress(state, now: float) -> str:
    """One progress line: done/total, cached, failed, rate of fresh answers, ETA."""
    fresh = state.done - state.cached
    elapsed = max(now - state.started, 1e-6)
    rate = fresh / elapsed
    left = state.total - state.done
    eta = _fmt_duration(left / rate) if rate > 0 and left else "-"
    return (f"{state.done}/{state.total} done · {state.cached} cached · {state.failed} failed · "
            f"{state.retries} retries · {state.rate_limited} × 429 · {state.in_flight_limit} in flight · "
            f"{rate:.1f}/s · ETA {eta}")


def render_summary(summary: dict, width: int = 80) -> str:
    """The terminal view of a summary: what was measured, how sure, and the verdict."""
    info = summary["k2vv"]
    total = summary["success_count"] + summary["failure_count"]
    responses = summary["classes"]["responses"]
    lines = [f"k2vv {info['version']} · {info.get('provider')} · {info.get('model')} · {total} requests · "
             f"dataset {info.get('dataset')} (sha256 {str(info.get('dataset_sha256'))[:12]})"]
    missing = ", ".join(f"{responses[c]} {c}" for c in ("unanswered", "failed", "truncated", "rejected") if responses[c])
    lines.append(f"answered        {summary['success_count']}/{total}" + (f"  ({missing})" if missing else ""))
    others = ", ".join(f"{k} {v}" for k, v in sorted(summary["finish_others_detail"].items()))
    lines.append(f"finish_reason   tool_calls {summary['finish_tool_calls']} · stop {summary['finish_stop']} · "
                 f"others {summary['finish_others']}" + (f" ({others})" if others else ""))
    lines.append(f"schema_accuracy {_frac(summary['schema_accuracy'], 4)}{_ci_text(summary['schema_accuracy_ci'])}  "
                 f"({summary['successful_tool_call_count']} valid / "
                 f"{summary['successful_tool_call_count'] + summary['schema_validation_error_count']} triggered; "
                 f"empty_tool_calls {responses['empty_tool_calls']}, unscored {responses['unscored']})")
    base = summary.get("baseline")
    if base:
        lines.append(f"tool_call_f1    {_frac(base['f1'], 4)}{_ci_text(base['f1_ci'])}  precision {_frac(base['precision'], 3)} "
                     f"recall {_frac(base['recall'], 3)}  TP {base['TP']} FP {base['FP']} FN {base['FN']} TN {base['TN']}  "
                     f"coverage {_frac(base['coverage'], 3)}  vs {base.get('name', 'baseline')}")
    calls = {k: v for k, v in summary["classes"]["calls"].items() if v and k != "valid"}
    if calls:
        lines.append("call failures   " + " · ".join(f"{k} {v}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])))
    if summary["findings"]:
        lines.append("findings        " + " · ".join(f"{k} {v}" for k, v in summary["findings"].items()))
    lat = summary["latency"]
    if lat["p50"] is not None:
        lines.append(f"latency ms      p50 {lat['p50']:.0f} · p90 {lat['p90']:.0f} · p99 {lat['p99']:.0f} · "
                     f"ttfb p50 {lat['ttfb_p50']:.0f}")
    retried = sum(v for k, v in summary["attempts"].items() if int(k) > 1)
    if retried:
        spread = ", ".join(f"{v} × {plural(int(k), 'attempt')}" for k, v in sorted(summary["attempts"].items(),
                                                                             key=lambda kv: int(kv[0])))
        lines.append(f"retried         {plural(retried, 'answer')} needed more than one attempt ({spread})")
    routing = (summary.get("routing") or {}).get("providers") or {}
    if routing:
        lines.append("routed to       " + " · ".join(f"{k} {v}" for k, v in sorted(routing.items(), key=lambda kv: -kv[1])))
    pace = summary.get("runner")
    if pace:
        first = "n/a" if pace["first_attempt_success"] is None else f"{pace['first_attempt_success']:.0%}"
        lines.append(f"pace            {pace['concurrency_settled']} in flight (ceiling {pace['concurrency_ceiling']}) · "
                     f"{pace['rate_limited']} × 429/503 · {first} answered at the first attempt")
    if summary.get("trials"):
        t = summary["trials"]
        lines.append(f"trials          k={t['k']} · pass@k {_frac(t['pass_at_k'], 4)} · pass^k {_frac(t['pass_hat_k'], 4)}")
    verdict = summary["verdict"]
    lines.append(f"verdict         {verdict['status'].upper()} — " + "; ".join(verdict["reasons"]))
    return "\n".join(wrapped(line, width) for line in lines)


def render_probes(report: dict, width: int = 80) -> str:
    """The probe table: probe, pass/fail, and the vendor's answer when it fails; then a count."""
    width = max(60, min(width, 80))
    rows = [f"probes · {report['provider']} · {report['model']}", f"{'probe':<30} {'':<4}  the answer when it fails"]
    for probe in report["probes"]:
        said = "" if probe["passed"] else f"{probe['why']} · {probe['answer']}"
        rows.append(wrapped(f"{probe['name'][:30]:<30} {'pass' if probe['passed'] else 'FAIL'}  {said}".rstrip(),
                            width, indent=37))
    failed = sum(not p["passed"] for p in report["probes"])
    rows.append(f"{len(report['probes']) - failed} of {plural(len(report['probes']), 'probe')} pass"
                + (f"; {failed} fail" if failed else ""))
    return "\n".join(rows)


def wrapped(line: str, width: int, indent: int = 16) -> str:
    """A summary line folded to `width` columns, continuation lines under the value column."""
    import textwrap
    return "\n".join(textwrap.wrap(line, width, subsequent_indent=" " * indent, break_on_hyphens=False)) or line


def render_providers(rows: list[dict], width: int = 80) -> str:
    """Two lines a provider, within `width` columns: its name and the key's state; then the model,
    where it points and where the entry came from."""
    def key_of(r):
        return r["key"] + (f" ({r['api_key_env']})" if r["api_key_env"] and r["key"] != "no key needed" else "")
    name_w = min(max(len(r["name"]) for r in rows), 24)
    key_w = min(max(len(key_of(r)) for r in rows), 36)
    lines = []
    for r in rows:
        lines.append(f"{_clip(r['name'], name_w):<{name_w}}  {_clip(key_of(r), key_w)}")
        lines.append("    " + _clip(f"{r['model']} at {r['base_url']} · {r['source']}", width - 4))
    return "\n".join(line.rstrip() for line in lines)


def _clip(text: str, width: int) -> str:
    text = str(text)
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"
