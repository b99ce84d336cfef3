"""The `report` leaderboard (k2vv.py section 4b):
report.json against schemas/report.json, the Markdown table in K2VV's shape, and one HTML page that
is self-contained, balanced, script-free, escapes hostile names and renders in a real browser."""
import html.parser
import json
import re
import shutil
import subprocess
from pathlib import Path

import fastjsonschema
import pytest

import k2vv
import k2vv_stats
import k2vv_report  # noqa: E402


ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"  # gitignored: screenshots and pages for a human to look at
CHROMIUM = Path("/usr/bin/chromium")
SHA = "3b8f6c1e0d9a4f7b2c5e8a1d4f7b0c3e6a9d2f5b8e1c4a7d0f3b6e9c2a5d8f1b"
GENERATED = {"k2vv_version": k2vv.__version__, "dataset": "samples.jsonl", "dataset_sha256": SHA}
THRESHOLDS = k2vv.default_thresholds(0.6)
HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_DETAIL = '"><img src=x onerror=alert(1)>'
CASES = 400


def _check(schema_name: str):
    return fastjsonschema.compile(json.loads((ROOT / "schemas" / schema_name).read_text()))


CHECK_SUMMARY, CHECK_REPORT = _check("summary.json"), _check("report.json")


def make_summary(provider: str, *, triggered: int, valid: int, empty: int = 0, failed: int = 0,
                 truncated: int = 0, calls: dict | None = None, confusion: tuple | None = None,
                 attempts: dict | None = None, base_url: str | None = None) -> dict:
    """A summary.json as k2vv would write it for CASES cases: counts that add up, the intervals and
    the verdict computed by k2vv's own wilson, bootstrap_f1 and decide_verdict."""
    answered = CASES - failed - truncated
    invalid = triggered - valid - empty
    ok, bad = valid, invalid + empty
    schema_ci = k2vv_stats.wilson(ok, ok + bad)
    comparison = None
    if confusion is not None:
        tp, fp, fn, tn = confusion
        assert tp + fp + fn + tn <= answered
        per_case = [(1, 0, 0)] * tp + [(0, 1, 0)] * fp + [(0, 0, 1)] * fn + [(0, 0, 0)] * tn
        pairs = tp + fp + fn + tn
        comparison = {"name": "reference", "source": "provider", "pairs": pairs, "coverage": round(pairs / CASES, 6),
                      "TP": tp, "FP": fp, "FN": fn, "TN": tn, "precision": round(tp / (tp + fp), 6),
                      "recall": round(tp / (tp + fn), 6), "f1": round(k2vv_stats.f1_of(tp, fp, fn), 6),
                      "f1_ci": k2vv_stats.bootstrap_f1(per_case), "name_agreement": 0.97}
    calls = {"valid": valid + 12, "invalid_json": 0, "non_standard_json": 0, "unknown_tool": 0,
             "schema_mismatch": 0, "unscored": 0, **(calls or {})}
    attempts = attempts or {"1": answered}
    return CHECK_SUMMARY({
        "model": "kimi-k2-0905-preview", "success_count": answered, "failure_count": CASES - answered,
        "finish_stop": answered - triggered, "finish_tool_calls": triggered, "finish_others": 0,
        "finish_others_detail": {}, "schema_validation_error_count": bad, "successful_tool_call_count": ok,
        "usage": {"prompt_tokens": 812_000, "completion_tokens": 61_000, "total_tokens": 873_000},
        "eval_started_at": "2025-11-20T10:00:00Z", "eval_finished_at": "2025-11-20T10:14:00Z",
        "eval_duration_ms": 842_000, "schema_accuracy": round(ok / (ok + bad), 6), "schema_accuracy_ci": schema_ci,
        "per_call_schema_accuracy": round(calls["valid"] / sum(v for k, v in calls.items() if k != "unscored"), 6),
        "classes": {"responses": {"valid": valid, "invalid": invalid, "empty_tool_calls": empty, "unscored": 0,
                                  "no_call": answered - triggered, "rejected": 0, "failed": failed,
                                  "truncated": truncated, "unanswered": 0},
                    "calls": calls},
        "findings": {}, "usage_sources": {"top_level": answered, "per_choice": 0, "none": 0},
        "latency": {"p50": 2100.0, "p90": 5400.0, "p99": 11800.0, "ttfb_p50": 640.0, "ttfb_p90": 1500.0},
        "attempts": attempts, "baseline": comparison, "trials": None,
        "routing": {"providers": {}, "mixed": False},
        "argument_accuracy": {"checked": 0, "matched": 0, "accuracy": None, "ci": None, "errors": {}},
        "runner": {"concurrency_ceiling": 32, "concurrency_settled": 16, "rate_limited": 3 * (len(attempts) - 1),
                   "attempts_histogram": attempts,
                   "first_attempt_success": round(attempts.get("1", 0) / sum(attempts.values()), 6)},
        "verdict": k2vv.decide_verdict(schema_ci, answered / CASES, comparison, THRESHOLDS),
        "k2vv": {"version": k2vv.__version__, "provider": provider,
                 "base_url": base_url or f"https://api.{provider}.example/v1", "model": "kimi-k2-0905-preview",
                 "dataset": "samples.jsonl", "dataset_sha256": SHA, "cases": CASES,
                 "settings": {"temperature": 0.6, "max_tokens": None, "extra_body": {}, "trials": 1, "limit": None,
                              "normalize_tool_ids": False, "headers": []}},
    })


def example(data_index: int, tool, detail: str) -> dict:
    return {"data_index": data_index, "case_id": f"c{data_index:05d}-{data_index * 7919 % 65536:04x}",
            "tool": tool, "detail": detail}


def entries() -> list[dict]:
    """Four realistic providers: a reference that passes, one sloppy with arguments, one whose
    triggers drift from the baseline, one flaky that passes after retries."""
    reference = make_summary("reference", triggered=212, valid=212, base_url="https://api.moonshot.example/v1",
                             confusion=(212, 0, 0, 188))  # scored against itself, as `k2vv demo` does
    sloppy = make_summary("sloppy", triggered=208, valid=171, empty=6, failed=3,
                          calls={"schema_mismatch": 24, "invalid_json": 5, "unknown_tool": 2},
                          confusion=(201, 7, 9, 180))
    drifting = make_summary("drifting", triggered=150, valid=150, truncated=2, confusion=(120, 30, 90, 158))
    flaky = make_summary("flaky", triggered=211, valid=211, failed=4, confusion=(207, 4, 4, 181),
                         attempts={"1": 340, "2": 48, "3": 8})
    return [
        {"summary": drifting, "examples": {
            "truncated": example(88, None, "stream ended without [DONE] or finish_reason after 1,912 bytes")}},
        {"summary": reference, "examples": {}},
        {"summary": flaky, "examples": {"failed": example(301, None, "HTTP 503 after 3 attempts (Retry-After 20)")}},
        {"summary": sloppy, "examples": {
            "invalid": example(17, "get_weather", "1 of 2 calls invalid"),
            "schema_mismatch": example(17, "get_weather", "/location: 'location' is a required property | pipe"),
            "invalid_json": example(240, "run_sql", "Expecting ',' delimiter: line 1 column 31 (char 30)"),
            "empty_tool_calls": example(52, None, "finish_reason tool_calls with no tool_calls"),
            "unknown_tool": example(133, "getWeather", "'getWeather' is not among the request's tools"),
            "failed": example(390, None, "ReadTimeout after 600 s")}},
    ]


def hostile_entry() -> dict:
    summary = make_summary(HOSTILE_NAME, triggered=209, valid=190, confusion=(200, 9, 9, 182),
                           calls={"schema_mismatch": 19}, base_url='https://x.example/v1?"><img src=x onerror=alert(2)>')
    return {"summary": summary, "examples": {"invalid": example(9, HOSTILE_NAME, HOSTILE_DETAIL),
                                             "schema_mismatch": example(9, "t</code><script>", HOSTILE_DETAIL)}}


@pytest.fixture()
def report() -> dict:
    return CHECK_REPORT(k2vv_report.build_report(entries(), "reference", GENERATED))


# ---- report.json ---------------------------------------------------------------------------------

def test_rows_pass_first_then_f1_then_schema(report):
    rows = {r["provider"]: r for r in report["rows"]}
    assert [r["provider"] for r in report["rows"]] == ["flaky", "reference", "sloppy", "drifting"]
    assert [r["verdict"]["status"] for r in report["rows"]] == ["pass", "pass", "fail", "fail"]
    assert rows["reference"]["is_baseline"] and rows["reference"]["tool_call_f1"] is None
    assert any("schema_accuracy: upper bound" in reason for reason in rows["sloppy"]["verdict"]["reasons"])
    assert any("tool_call_f1: upper bound" in reason for reason in rows["drifting"]["verdict"]["reasons"])


def test_row_fields_come_from_the_summary(report):
    flaky = next(r for r in report["rows"] if r["provider"] == "flaky")
    assert flaky["retries"] == 56  # answers with 2 or 3 attempts
    assert flaky["count_finish_reason_tool_calls"] == 211 and flaky["count_successful_tool_call"] == 211
    assert flaky["coverage"] == round(396 / CASES, 6) and flaky["coverage_basis"] == "baseline"
    reference = next(r for r in report["rows"] if r["provider"] == "reference")
    assert reference["coverage"] == 1.0 and reference["coverage_basis"] == "baseline"
    assert report["thresholds"] == THRESHOLDS and report["generated"] == GENERATED


def test_failures_sorted_by_count_with_their_examples(report):
    sloppy = next(r for r in report["rows"] if r["provider"] == "sloppy")
    assert [(f["class"], f["count"]) for f in sloppy["top_failures"]] == [
        ("invalid", 31), ("schema_mismatch", 24), ("empty_tool_calls", 6), ("invalid_json", 5),
        ("failed", 3), ("unknown_tool", 2)]
    assert sloppy["top_failures"][1]["example"]["data_index"] == 17
    drifting = next(r for r in report["rows"] if r["provider"] == "drifting")
    assert drifting["top_failures"] == [{"class": "truncated", "kind": "response", "count": 2,
                                         "example": entries()[0]["examples"]["truncated"]}]


def test_without_baseline_coverage_is_the_answered_share():
    report = CHECK_REPORT(k2vv_report.build_report(entries()[2:3], None, GENERATED))
    (row,) = report["rows"]
    assert row["coverage"] == round(396 / CASES, 6) == row["coverage"]
    assert row["coverage_basis"] == "baseline"  # its summary was compared: the summary decides
    plain = make_summary("solo", triggered=200, valid=200, failed=30)
    (row,) = CHECK_REPORT(k2vv_report.build_report([{"summary": plain, "examples": {}}], None, GENERATED))["rows"]
    assert (row["coverage"], row["coverage_basis"], row["tool_call_f1"]) == (0.925, "answered", None)
    assert row["verdict"]["status"] == "inconclusive"


def test_rows_judged_by_different_thresholds_keep_their_own():
    thinking = make_summary("thinking", triggered=200, valid=200)
    thinking["verdict"]["thresholds"] = k2vv.default_thresholds(1.0)
    report = CHECK_REPORT(k2vv_report.build_report(entries() + [{"summary": thinking, "examples": {}}], "reference", GENERATED))
    assert report["thresholds"] is None
    assert "min F1 73%" in k2vv_report.render_report_html(report) and "min F1 80%" in k2vv_report.render_report_html(report)
    assert "- thinking: tool_call_f1 ≥ 0.73" in k2vv_report.render_report_md(report)


@pytest.mark.parametrize("bad, message", [
    ("other_dataset", "another test set"), ("duplicate", "appears twice"), ("none", "nothing|no provider")],
    ids=["other_dataset", "duplicate", "none"])
def test_rows_that_would_mislead_are_refused(bad, message):
    rows = entries()
    if bad == "other_dataset":
        rows[0]["summary"]["k2vv"]["dataset_sha256"] = "0" * 64
    elif bad == "duplicate":
        rows.append(rows[1])
    else:
        rows = []
    with pytest.raises(ValueError, match=message):
        k2vv_report.build_report(rows, "reference", GENERATED)


# ---- terminal and Markdown -------------------------------------------------------------------------

def test_terminal_table_is_aligned_and_names_top_failures(report):
    text = k2vv_report.render_report_table(report)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("provider"))
    table = lines[header:header + 5]
    assert [line.split()[0] for line in table[1:]] == ["flaky", "reference", "sloppy", "drifting"]
    verdict_at = table[0].index("verdict")
    assert all(line[verdict_at:].split()[0] in ("PASS", "FAIL") for line in table[1:])
    assert "\n  sloppy     invalid 31 · schema_mismatch 24 · empty_tool_calls 6\n" in text
    assert "\n  reference  none\n" in text


def test_terminal_neutralises_control_characters():
    entry = entries()[1]
    entry["summary"]["k2vv"]["provider"] = "evil\x1b[2J\x1b]0;pwned\x07\u202ename"
    text = k2vv_report.render_report_table(k2vv_report.build_report([entry], None, GENERATED), width=120)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "evil\ufffd[2J" in text


def test_terminal_counts_wide_characters_twice():
    entry = entries()[1]
    entry["summary"]["k2vv"]["provider"] = "火山引擎"
    lines = k2vv_report.render_report_table(k2vv_report.build_report([entry, entries()[2]], None, GENERATED)).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("provider"))
    widths = {k2vv_report._cols(line.split("  PASS")[0]) for line in lines[header + 1:header + 3]}
    assert len(widths) == 1


def test_markdown_has_k2vv_columns_and_one_row_per_provider(report):
    md = k2vv_report.render_report_md(report)
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert table[0] == "| " + " | ".join(k2vv_report.REPORT_MD_COLUMNS) + " |"
    assert [re.split(r"(?<!\\)\|", line)[1].strip() for line in table[1:]] == ["flaky", "reference", "sloppy", "drifting"]
    assert all(len(re.split(r"(?<!\\)\|", line)) == 10 for line in table)  # 8 cells, no stray pipe
    assert "| reference | https://api.moonshot.example/v1 | - (baseline) | 212 | 212 | 100.00% (98.22–100.00) |" in md
    assert "\\| pipe" in md and f"sha256: {SHA}" in md
    assert "- `schema_mismatch` × 24 calls — e.g. data_index 17 · tool get\\_weather · /location:" in md
    assert "## How to read this" in md and "inconclusive" in md


def test_markdown_keeps_hostile_text_inert():
    md = k2vv_report.render_report_md(k2vv_report.build_report(entries() + [hostile_entry()], "reference", GENERATED))
    assert "<" not in md  # k2vv's own reasons ("upper bound 0.868 < 0.95") become &lt; too
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert all(len(re.split(r"(?<!\\)\|", line)) == 10 for line in rows)


# ---- HTML ---------------------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
URL_ATTRS = {"src", "href", "xlink:href", "action", "formaction", "srcset", "poster", "data", "background"}
EXTERNAL = re.compile(r"^\s*(https?:|//)", re.I)
CSS_URL = re.compile(r"url\(\s*['\"]?\s*(https?:|//)", re.I)


class PageChecker(html.parser.HTMLParser):
    """Balanced tags (void elements excepted), every element and attribute seen, no external reference."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.problems, self.tags, self.attrs, self.styles = [], [], [], [], []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self._seen(tag, attrs)
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))
        self._in_style = tag == "style"

    def handle_startendtag(self, tag, attrs):  # <rect .../> in SVG
        self._seen(tag, attrs)

    def handle_endtag(self, tag):
        self._in_style = False
        if tag in VOID:
            return
        if not self.stack or self.stack[-1][0] != tag:
            self.problems.append(f"</{tag}> at {self.getpos()} closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)

    def _seen(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            self.attrs.append((tag, name, value or ""))
            if name == "style":
                self.styles.append(value or "")
            if name in URL_ATTRS and EXTERNAL.match(value or ""):
                self.problems.append(f"external {name}={value!r} on <{tag}>")

    def result(self):
        problems = self.problems + [f"<{tag}> opened at {pos} never closed" for tag, pos in self.stack]
        problems += [f"external url() in CSS: {s[:80]!r}" for s in self.styles if CSS_URL.search(s)]
        return problems


def check_page(page: str) -> PageChecker:
    checker = PageChecker()
    checker.feed(page)
    checker.close()
    assert checker.result() == []
    return checker


def test_html_is_balanced_self_contained_and_script_free(report):
    page = k2vv_report.render_report_html(report)
    checker = check_page(page)
    assert page.startswith("<!DOCTYPE html>\n<html lang=\"en\">")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "prefers-color-scheme:dark" in page and "max-width:" in page
    assert "script" not in checker.tags and "<script" not in page.lower()
    assert not {"link", "img", "iframe", "object", "embed", "use", "image", "foreignobject"} & set(checker.tags)
    assert not [a for a in checker.attrs if a[1].startswith("on")]  # no event handlers
    assert "@import" not in page and "@font-face" not in page and "url(" not in page
    assert checker.tags.count("table") == checker.tags.count("caption") == 1
    assert checker.tags.count("details") == 4
    assert [v for _, name, v in checker.attrs if name == "class" and v == "scroll"]  # table scrolls sideways


def test_svg_has_one_bar_group_per_provider_with_whiskers_and_thresholds(report):
    page = k2vv_report.render_report_html(report)
    svg = page[page.index("<svg"):page.index("</svg>")]
    groups = re.findall(r'<g class="bar-group" data-provider="([^"]*)"', svg)
    assert groups == [r["provider"] for r in report["rows"]]
    bodies = svg.split('<g class="bar-group"')[1:]
    whiskers = [body.split("</g>")[0].count('class="whisker"') for body in bodies]
    assert whiskers == [2, 1, 2, 2]  # the baseline has no F1 interval
    grid = [float(y) for y in re.findall(r'<line class="grid" [^>]*y1="([0-9.]+)"', svg)]
    zero, full = grid[0], grid[-1]  # the 0% and 100% lines
    lines = dict(re.findall(r'<line class="threshold (f1|schema)" [^>]*y1="([0-9.]+)"', svg))
    assert len(lines) == len(re.findall(r'class="threshold ', svg)) == 2
    assert float(lines["f1"]) == pytest.approx(zero + (full - zero) * THRESHOLDS["min_f1"], abs=0.1)
    assert float(lines["schema"]) == pytest.approx(zero + (full - zero) * THRESHOLDS["min_schema_accuracy"], abs=0.1)
    assert "min F1 80%</text>" in svg and "min schema 95%</text>" in svg
    assert '<title id="chart-title">' in svg and 'aria-labelledby="chart-title chart-desc"' in svg
    assert "score (0–100%)" in svg and "tool_call_f1</text>" in svg and "schema_accuracy</text>" in svg


def test_html_escapes_hostile_names_and_details():
    report = CHECK_REPORT(k2vv_report.build_report(entries() + [hostile_entry()], "reference", GENERATED))
    page = k2vv_report.render_report_html(report)
    checker = check_page(page)
    assert "script" not in checker.tags and "img" not in checker.tags
    assert "<script>" not in page and "<img" not in page and "</code><script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    providers = [v for tag, name, v in checker.attrs if tag == "g" and name == "data-provider"]
    assert HOSTILE_NAME in providers and len(providers) == 5  # parsed back: intact text, not markup
    assert not [a for a in checker.attrs if a[1].startswith("on")]


def test_html_keeps_control_and_bidi_characters_out():
    entry = hostile_entry()
    entry["summary"]["k2vv"]["provider"] = "a\x00b\x1b[31mc\u202ed\ud800e"
    entry["examples"]["invalid"]["detail"] = "line one\nline two\x07"
    page = k2vv_report.render_report_html(k2vv_report.build_report([entry], None, GENERATED))
    check_page(page)
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202e\ud800]", page)
    assert 'data-provider="a\ufffdb\ufffd[31mc\ufffdd\ufffde"' in page and "line one line two\ufffd" in page
    page.encode("utf-8")  # a lone surrogate would make writing the file fail


def test_rendering_a_report_read_back_from_json_gives_the_same_page(report):
    again = json.loads(json.dumps(report))
    for render in (k2vv_report.render_report_table, k2vv_report.render_report_md, k2vv_report.render_report_html):
        assert render(again) == render(report)


# ---- a real browser ---------------------------------------------------------------------------

def chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Headless Chromium with everything that could reach a network switched off."""
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, text=True, timeout=120)


def is_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)")
@pytest.mark.parametrize("name, width", [("report", 1200), ("report-phone", 390)])
def test_page_renders_in_headless_chromium(tmp_path, name, width):
    report = CHECK_REPORT(k2vv_report.build_report(entries() + [hostile_entry()], "reference", GENERATED))
    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / f"{name}.html"
    page.write_text(k2vv_report.render_report_html(report), encoding="utf-8")
    (ARTIFACTS / "report.md").write_text(k2vv_report.render_report_md(report), encoding="utf-8")

    dump = chromium("--dump-dom", page.as_uri(), tmp_path=tmp_path)
    assert dump.returncode == 0, dump.stderr[-2000:]
    dom = dump.stdout
    assert dom.count('class="bar-group"') == len(report["rows"]) == 5
    assert "<script" not in dom.lower() and "<img" not in dom.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom

    shot = ARTIFACTS / f"{name}.png"
    shot.unlink(missing_ok=True)
    run = chromium(f"--screenshot={shot}", f"--window-size={width},1600", page.as_uri(), tmp_path=tmp_path)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    assert is_png(shot) == (width, 1600)
    assert shot.stat().st_size > 20_000  # a blank page compresses to a few KB


MEASURE = """<script>
const box = document.querySelector('.scroll').getBoundingClientRect();
const seen = [...document.querySelectorAll('tbody tr')].map(tr => {
  const badge = tr.querySelector('.badge').getBoundingClientRect();
  const name = tr.querySelector('th.provider').getBoundingClientRect();
  return {badge_right: badge.right, name_right: name.right, name_left: name.left};
});
const out = document.createElement('pre');
out.id = 'measured';
out.textContent = JSON.stringify({box_right: box.right, box_left: box.left, view: innerWidth, rows: seen});
document.body.appendChild(out);
</script>"""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)")
@pytest.mark.parametrize("width", [1280, 390])
def test_the_verdict_is_visible_without_scrolling(tmp_path, width):
    """Laid out by Chromium at a laptop's and a phone's width, every row's provider and verdict
    badge sit inside the table's visible box (measured by a script added to a test copy of the page:
    the report itself carries none). Headless Chromium lays a page out at least 500 px wide, so the
    phone case measures the narrowest layout Chromium gives."""
    rows = entries()
    for i, entry in enumerate(rows):  # endpoints as long as real ones (an OpenRouter-style URL)
        entry["summary"]["k2vv"]["base_url"] = f"https://openrouter.example/api/v1/vendor-{i}/chat/completions"
    report = CHECK_REPORT(k2vv_report.build_report(rows, "reference", GENERATED))
    page = tmp_path / "measured.html"
    page.write_text(k2vv_report.render_report_html(report).replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dump = chromium("--dump-dom", "--virtual-time-budget=3000", f"--window-size={width},900", page.as_uri(),
                    tmp_path=tmp_path)
    assert dump.returncode == 0, dump.stderr[-2000:]
    found = re.search(r'<pre id="measured">(.*?)</pre>', dump.stdout, re.S)
    assert found, dump.stdout[-2000:]
    measured = json.loads(html.unescape(found.group(1)))
    assert measured["rows"], measured
    for row in measured["rows"]:
        assert measured["box_left"] <= row["name_left"] and row["badge_right"] <= measured["box_right"], measured
