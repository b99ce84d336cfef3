"""k2vv — verify that an OpenAI-compatible provider serves a model's tool calling correctly.

k2vv replays a test set of chat-completions request bodies against a provider, keeps every answer in
a content-addressed cache, and scores trigger agreement with a baseline (`tool_call_f1`) and the
schema validity of tool-call arguments (`schema_accuracy`), with the reason for every failure, stream
conformance findings, latency, usage, and a verdict a CI job can act on.

    k2vv demo                                   # simulated vendors on 127.0.0.1, no key, no internet
    k2vv run --provider moonshot                # the bundled open test set against a provider
    k2vv run FILE --base-url URL --model M      # K2VV's flags work: rename the command and go
    k2vv score --provider moonshot              # re-score the cache offline (never touches the network)
    k2vv probe --provider moonshot              # tool_choice, history ids, stream vs non-stream (probe.json)

Exit codes: 0 pass (or success) · 1 fail · 2 usage, input or setup error · 3 inconclusive or
incomplete · 130 interrupted (after flushing).

Where k2vv differs from K2VV on purpose (DESIGN §9): a stream cut before `[DONE]` with no
finish_reason is truncated (retried, never scored as `stop`); the standard final usage-only chunk is
read; a tool with `parameters: {}` accepts any object; schemas default to draft-07 and honour
`$schema`, and a schema that does not compile is the dataset's fault (`unscored`), not the provider's;
the cache key covers the URL, the whole prepared body (so `extra_body`) and non-secret headers; the
summary is recomputed from test set + cache on every exit path; retries are capped; the body is sent
as raw JSON; the exit code carries the verdict; F1 and schema_accuracy are computed.

This module is the verifier's path, read top to bottom; its siblings import nothing from it:
k2vv_judge (a call's arguments against JSON Schema and BFCL's checker, where k2vv declines to judge
and why), k2vv_http (bounded exchanges with a vendor, the pace, retries), k2vv_cache (the answer
store), k2vv_providers (who a run talks to), k2vv_stats (intervals), k2vv_wire (raw completions and
the Responses API as chat), and, for the commands that need them, k2vv_report and k2vv_sim.
"""
from __future__ import annotations

import sys

if sys.version_info < (3, 10):  # before any import that would die with a traceback on old Pythons
    sys.stderr.write("k2vv: needs Python 3.10 or newer, found %d.%d (%s); install one beside it (RHEL/Rocky 9: "
                     "dnf install python3.11; Ubuntu: the deadsnakes PPA; anywhere: pyenv install 3.11) and run "
                     "k2vv with it, e.g. python3.11 k2vv.pyz\n" % (sys.version_info[0], sys.version_info[1],
                                                                 sys.executable))
    sys.exit(2)

import argparse
import contextlib
import copy
import dataclasses
import functools
import gzip
import hashlib
import io
import json
import math
import os
import re
import stat
import tarfile
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from k2vv_cache import CacheDamage, CacheUnusable, ResponseCache
from k2vv_http import (MAX_ANSWER_BYTES, REJECT_STATUSES, ROUTING_HEADERS, Fetched, RunState, Sender, Transient,
                       decoded_where_secret, mask_secrets, redact_bytes, vendor_message)
from k2vv_judge import (CannotJudge, NotJudgeable, check_instance, expected_verdict, fault_reached, json_equal,
                        json_type_name, lint_schema, tool_schema, use_meta_schemas)
from k2vv_providers import (APIS, PRESETS, Provider, ProviderError, api_key_for, check_base_url, known_providers,
                            public_url, resolve_provider, use_provider_schema)
from k2vv_stats import bootstrap_f1, f1_of, percentile, round6, wilson

__version__ = "0.1.0"
__all__ = [
    "main", "Case", "Parsed", "CallResult", "Outcome", "K2vvError", "InputError", "InputErrors",
    "load_test_set", "prepare_request", "payload_key", "parse_exchange",
    "reassemble_stream", "classify_call", "score_exchange", "Tally", "Baseline",
    "fold_answers", "k2vv_result_answers", "decide_verdict", "open_cache",
]

# ==== 0. constants and errors ==================================================================

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_INTERNAL = 70  # a bug in k2vv (sysexits EX_SOFTWARE): never 1, which CI reads as "the provider failed"

# Keys a test-set line may carry for k2vv only; never sent (DESIGN §3).
K2VV_ONLY_KEYS = ("id", "expected", "k2vv")
# Keys each test-set line brings: what makes one case differ from another, never overridden.
CASE_KEYS = frozenset(("messages", "tools"))
# finish_reason values of the OpenAI API; anything else is a conformance finding.
STANDARD_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
DEFAULT_CONCURRENCY = 32  # a ceiling: the Pace finds what the vendor sustains below it
MAX_CONCURRENCY = 1024  # threads; more is a typo, not a plan (each holds a socket and a stack)
CACHE_VERSION = 1  # of the cached exchange value; another version is cache damage and is refetched
# Response classes that mean "the provider answered" (K2VV status == success).
ANSWERED = frozenset({"valid", "invalid", "empty_tool_calls", "unscored", "no_call"})
TRIGGERED = frozenset({"valid", "invalid", "empty_tool_calls", "unscored"})
RESPONSE_CLASSES = ("valid", "invalid", "empty_tool_calls", "unscored", "no_call",
                    "rejected", "failed", "truncated", "unanswered")
CALL_CLASSES = ("valid", "invalid_json", "non_standard_json", "unknown_tool", "schema_mismatch", "unscored")
DEFAULT_MIN_F1, DEFAULT_MIN_F1_THINKING, DEFAULT_MIN_SCHEMA_ACCURACY = 0.80, 0.73, 0.95  # K2VV README
MIN_COVERAGE = 0.95
FOLD_BATCH = 256  # cases per batch of cache reads (one SELECT of up to 500 keys), and per share of a process
SEND_BATCH = 64  # cases `run` prepares ahead of its workers (each parsed body ~10 KB until sent): 256 cost 3.5 MB
PARALLEL_MIN_BYTES = 1 << 20  # `score` forks one process per CPU for test sets from this size (~750 cases)



class K2vvError(Exception):
    """A problem the user can fix; printed as one line, exit 2, never a traceback."""
    exit_code = EXIT_USAGE


class InputError(K2vvError):
    def __init__(self, path, line, problem, expected=""):
        super().__init__(f"{path}:{line}: {problem}" + (f" (expected {expected})" if expected else ""))
        self.path, self.line, self.problem, self.expected = path, line, problem, expected

    def __reduce__(self):  # pickled by `score`'s worker processes
        return InputError, (self.path, self.line, self.problem, self.expected)


class InputErrors(K2vvError):
    """Every bad line of a file at once, so one fix-and-rerun round is enough."""
    def __init__(self, errors: list[InputError]):
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


# ==== 1. data model ============================================================================

@dataclass(frozen=True, slots=True)
class Case:
    """One test-set line. `body` is the line without k2vv-only keys; `id` the line's own id, if any."""
    data_index: int
    id: str | None
    body: dict
    expected: Any = None
    meta: Any = None

    @property
    def case_id(self) -> str:
        """The case's identity (DESIGN §3): its `id`, else the hash of its canonical body. Computed
        when asked: only results.jsonl needs it, and a canonical dump per line is 10% of `score`."""
        return self.id if self.id is not None else sha256_hex(canonical_json(self.body))


@dataclass(frozen=True, slots=True)
class Parsed:
    """An answer reassembled into K2VV's `chat.completion` shape plus what the wire told us."""
    completion: dict | None
    finish_reason: str | None
    calls: tuple  # of {"index", "id", "name", "arguments"}
    usage: dict | None
    usage_source: str  # "top_level" | "per_choice" | "none"
    findings: tuple
    complete: bool = True  # False: a truncated stream or body
    routed: str | None = None  # the upstream a gateway says served it (OpenRouter's `provider`)


@dataclass(frozen=True, slots=True)
class CallResult:
    name: str | None
    cls: str  # one of CALL_CLASSES
    pointer: str | None = None
    message: str | None = None
    findings: tuple = ()
    value: Any = field(default=None, compare=False, repr=False)  # the parsed arguments (never serialised)
    parsed: bool = field(default=False, compare=False, repr=False)  # whether `value` holds them

    def to_json(self) -> dict:
        out = {"name": self.name, "class": self.cls}
        if self.pointer is not None:
            out["pointer"] = self.pointer
        if self.message is not None:
            out["message"] = self.message
        if self.findings:
            out["findings"] = list(self.findings)
        return out


@dataclass(frozen=True, slots=True)
class Outcome:
    """The score of one exchange (or of its absence)."""
    response_class: str  # one of RESPONSE_CLASSES
    finish_reason: str | None = None
    calls: tuple = ()  # of CallResult
    findings: tuple = ()
    usage: dict | None = None
    usage_source: str = "none"
    names: tuple = ()  # tool names called, in order
    error_class: str | None = None
    detail: str | None = None  # the provider's (redacted) reason for a rejection or failure
    timing: dict | None = None
    attempts: int = 0
    at: str | None = None
    completion: dict | None = None
    pace: dict | None = None  # {limit, ceiling, rate_limited} when the answer was fetched
    routed_provider: str | None = None  # the upstream a gateway routed it to (OpenRouter), if it says
    keys: tuple = ()  # call_keys: (name, exact, loose) of each call, sorted
    expected: tuple = (None, None)  # (expected_match, expected_error) against the case's `expected`

    @property
    def answered(self) -> bool:
        return self.response_class in ANSWERED

    @property
    def triggered(self) -> bool:
        return self.response_class in TRIGGERED

    @property
    def status(self) -> str:  # K2VV's `status`
        return "success" if self.answered else "failed"

    @property
    def tool_calls_valid(self):  # K2VV's `tool_calls_valid`: None when not triggered
        if not self.triggered or self.response_class == "unscored":
            return None
        return self.response_class == "valid"


# ==== 2. pure core =============================================================================

# ---- 2a. canonical JSON, identity, test sets -------------------------------------------------

def plural(count: int, noun: str) -> str:
    """'1 problem', '2 problems': counts a reader sees read as English."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"



# How k2vv writes a lone surrogate (`"\\ud800"` is valid JSON but not Unicode: a vendor may send it):
# as that very JSON escape, so the bytes stay UTF-8 and read back to the same string.
UNPAIRED = "backslashreplace"


def canonical_json(obj) -> bytes:
    """Sorted keys, compact, UTF-8: the one byte form k2vv hashes, so equal values hash equal."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", UNPAIRED)


def sorted_object(pairs: list) -> dict:
    """json.loads hook: each object with its keys in canonical order (a later duplicate still
    wins), so an answer read off the wire is the very dict the cache gives back, key order included:
    results.jsonl is the same bytes whether its answers were fetched or cached (~10 µs an answer)."""
    return dict(sorted(pairs, key=lambda pair: pair[0]))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_tools(tools, where: str) -> list[str]:
    """Problems with a `tools` array, each naming the path that is wrong."""
    if not isinstance(tools, list):
        return [f"{where} is {json_type_name(tools)} (expected an array of tools)"]
    problems = []
    for i, tool in enumerate(tools):
        at = f"{where}[{i}]"
        if not isinstance(tool, dict):
            problems.append(f"{at} is {json_type_name(tool)} (expected an object)")
            continue
        if tool.get("type", "function") != "function":
            continue  # builtin tools (e.g. Moonshot's `builtin_function`) are passed through
        fn = tool.get("function")
        if not isinstance(fn, dict):
            problems.append(f"{at}.function is {json_type_name(fn)} (expected an object with name and parameters)")
            continue
        if not isinstance(fn.get("name"), str) or not fn.get("name"):
            problems.append(f"{at}.function.name is {json_type_name(fn.get('name'))} (expected a non-empty string)")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, (dict, bool)):
            problems.append(f"{at}.function.parameters is {json_type_name(params)} (expected a JSON Schema object)")
    return problems




_JSON_FIRST_BYTES = frozenset(b'{["-0123456789tfn')


def is_blank(raw: bytes) -> bool:
    """A line json_lines skips, without decoding the common case: blank as str.strip sees it
    (which also strips Unicode spaces and \\x1c-\\x1f, unlike bytes.strip)."""
    text = raw.lstrip()
    if not text:
        return True
    return text[0] not in _JSON_FIRST_BYTES and not raw.decode("utf-8", errors="replace").strip()


MAX_JSON_DEPTH = 200  # deeper JSON is refused when read, so nothing after it can hit Python's recursion limit


class UnreadableJson(ValueError):
    """JSON k2vv will not hold: nested deeper than MAX_JSON_DEPTH, or a number too long to read."""


def read_json(text, **hooks):
    """json.loads for bytes k2vv did not write (a vendor's, a user's, a borrowed cache's): every way
    it can fail is a ValueError (JSONDecodeError, or UnreadableJson for what Python's json raises as
    RecursionError or, for a 5,000-digit integer, a bare ValueError), nothing deeper than
    MAX_JSON_DEPTH comes back, and nothing k2vv could not write back as JSON (NaN, Infinity, a
    number beyond a double such as 1e999, which Python reads as inf)."""
    hooks.setdefault("parse_constant", _not_json_constant)
    hooks.setdefault("parse_float", _finite_float)
    try:
        value = json.loads(text, **hooks)
    except RecursionError:
        raise UnreadableJson(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (json.JSONDecodeError, UnreadableJson):
        raise
    except ValueError as err:  # the int-string limit (CVE-2020-10735)
        raise UnreadableJson(f"a number too long to read: {str(err).split(';')[0]}") from None
    if len(text) > 2 * MAX_JSON_DEPTH and _openers(text) > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
        raise UnreadableJson(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _not_json_constant(name: str):
    raise UnreadableJson(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise UnreadableJson(f"a number beyond a double ({text[:24]})")
    return value


def _openers(text) -> int:
    """How many `[` and `{` the text holds: nesting deeper than this is impossible (str.count is
    C-fast; most texts stop here, before any walk)."""
    return text.count("[") + text.count("{") if isinstance(text, str) else text.count(b"[") + text.count(b"{")


def _deeper_than(value, limit: int) -> bool:
    """Whether containers nest more than `limit` deep: level by level, containers only."""
    level, depth = [value] if type(value) in (dict, list) else [], 1
    while level:
        if depth > limit:
            return True
        deeper = []
        for node in level:
            deeper.extend(c for c in (node.values() if type(node) is dict else node) if type(c) in (dict, list))
        level, depth = deeper, depth + 1
    return False


def expected_problems(expected) -> list[str]:
    """What is wrong with a line's `expected` (BFCL's shape): an array of {name, arguments} whose
    arguments map each parameter to an array of accepted values (`""` = may be omitted)."""
    if expected is None:
        return []
    if not isinstance(expected, list):
        return [f"expected is {json_type_name(expected)} (expected an array of calls)"]
    problems = []
    for i, call in enumerate(expected):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) \
                or not isinstance(call.get("arguments"), dict):
            problems.append(f"expected[{i}] is not an object with a name and arguments")
        elif any(not isinstance(v, list) for v in call["arguments"].values()):
            problems.append(f"expected[{i}].arguments has a value that is not an array of accepted values")
    return problems[:3]


def json_lines(lines: Iterable[bytes | str], path: str, errors: list):
    """(physical line number, value) for each non-blank JSONL line; a line that is not JSON becomes
    an InputError in `errors` instead, so a caller can report every bad line at once."""
    for number, raw in enumerate(lines, 1):
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as err:
            errors.append(InputError(path, number, f"not UTF-8 at byte {err.start + 1}",
                                     "test sets are UTF-8 JSON; nothing is repaired silently"))
            continue
        if not text.strip():
            continue
        try:
            yield number, read_json(text)
        except UnreadableJson as err:
            errors.append(InputError(path, number, f"cannot be read: {err}"))
        except json.JSONDecodeError as err:
            errors.append(InputError(path, number, f"not JSON: {err.msg} (column {err.colno})"))


def duplicate_id(path: str, number: int, own_id: str, first: int) -> InputError:
    return InputError(path, number, f"id {own_id!r} was already used on line {first}", "ids unique within a test set")


def iter_cases(lines: Iterable[bytes | str], path: str, errors: list, ids: list | None = None):
    """Cases from K2VV JSONL lines, one at a time, so a test set of any size is read in flat memory.
    data_index is the 1-based *physical* line number (blank lines count, as in K2VV). A bad line
    becomes an InputError in `errors` (every one is reported) and is not yielded. With `ids`, each
    (id, line) is appended there for the caller to check (lines split between processes)."""
    seen_ids = {}
    for number, line in json_lines(lines, path, errors):
        if not isinstance(line, dict):
            errors.append(InputError(path, number, f"the line is {json_type_name(line)}",
                                     "a JSON object: a chat-completions request body"))
            continue
        problems = []
        messages = line.get("messages")
        if not isinstance(messages, list):
            problems.append(f"messages is {'missing' if messages is None else json_type_name(messages)}"
                            " (expected an array of messages)")
        else:
            for i, msg in enumerate(messages):
                if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
                    problems.append(f"messages[{i}] has no string role (expected an object with role)")
        if "tools" in line:
            problems += _check_tools(line["tools"], "tools")
        own_id = line.get("id")
        if "id" in line and not isinstance(own_id, str):
            problems.append(f"id is {json_type_name(own_id)} (expected a string)")
        if "expected" in line:
            problems += expected_problems(line["expected"])
        if problems:
            errors.extend(InputError(path, number, p) for p in problems)
            continue
        if own_id is not None and ids is not None:
            ids.append((own_id, number))
        elif own_id is not None:
            first = seen_ids.setdefault(own_id, number)
            if first != number:
                errors.append(duplicate_id(path, number, own_id, first))
                continue
        body = {k: v for k, v in line.items() if k not in K2VV_ONLY_KEYS} if line.keys() & K2VV_ONLY_KEYS else line
        yield Case(number, own_id, body, line.get("expected"), line.get("k2vv"))


# ---- 2b. request preparation and cache identity ----------------------------------------------

def deep_merge(base: dict, extra: dict) -> dict:
    """A copy of `base` with `extra` merged in; nested objects merge, everything else replaces."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def normalize_tool_ids(messages: list) -> list:
    """Rewrite historical tool-call ids to Moonshot's `functions.NAME:IDX` with one global counter
    (what the official API does server-side), and the matching `tool` messages' `tool_call_id`."""
    counter, renamed, out = 0, {}, []
    for msg in messages:
        msg = dict(msg)
        if msg.get("role") == "assistant" and isinstance(msg.get("tool_calls"), list):
            calls = []
            for call in msg["tool_calls"]:
                call = dict(call) if isinstance(call, dict) else call
                if isinstance(call, dict):
                    fn = call.get("function") if isinstance(call.get("function"), dict) else {}
                    new_id = f"functions.{fn.get('name', '')}:{counter}"
                    counter += 1
                    if isinstance(call.get("id"), str):
                        renamed[call["id"]] = new_id
                    call["id"] = new_id
                calls.append(call)
            msg["tool_calls"] = calls
        elif msg.get("role") == "tool" and isinstance(msg.get("tool_call_id"), str) and msg["tool_call_id"] in renamed:
            msg["tool_call_id"] = renamed[msg["tool_call_id"]]
        out.append(msg)
    return out


def inputs_as_system(messages: list) -> list:
    """K2VV's dialect: role `_input` is sent as `system` (copies; the test set is never mutated)."""
    return [dict(m, role="system") if isinstance(m, dict) and m.get("role") == "_input" else m for m in messages]


def prepare_request(body: dict, model: str, temperature: float | None = None,
                    max_tokens: int | None = None, extra_body: dict | None = None,
                    tool_ids: bool = False) -> dict:
    """The body that is sent *and* hashed (DESIGN §5). Overrides are already resolved by the
    caller (CLI over provider entry over the line); `None` keeps the line's own value."""
    out = {k: v for k, v in body.items() if k not in K2VV_ONLY_KEYS}
    messages = inputs_as_system(out.get("messages", []))
    out["messages"] = normalize_tool_ids(messages) if tool_ids else messages
    out["model"] = model
    if temperature is not None:
        out["temperature"] = temperature
    if max_tokens is not None:
        out["max_tokens"] = max_tokens
    if extra_body:
        out = deep_merge(out, extra_body)
    if out.get("stream"):
        out["stream_options"] = dict(out.get("stream_options") or {}, include_usage=True)
    return out


def key_frame(url: str, headers: dict) -> tuple[bytes, bytes]:
    """The bytes around the body and the sample in that canonical JSON. Canonical JSON of an
    object is `{` + its sorted `"key":value` members + `}`, so the key of a prepared body can be
    hashed from the very bytes that are sent: one dump per request instead of two."""
    return b',"headers":' + canonical_json(headers) + b',"sample":', b',"url":' + canonical_json(url) + b"}"


def payload_key(payload: bytes, frame: tuple[bytes, bytes], sample: int) -> str:
    """The cache key (DESIGN §6): sha256 of the canonical JSON of {body, headers, sample, url},
    from canonical_json(body) (the payload, the very bytes sent) and key_frame(url, headers). The
    API key is left out so a cache can be copied without leaking it; `sample` keeps --trials K
    answers apart."""
    return sha256_hex(b'{"body":' + payload + frame[0] + str(int(sample)).encode() + frame[1])


# ---- 2c. parsing answers: JSON bodies and SSE streams ----------------------------------------

def _usage_of(obj) -> dict | None:
    usage = obj.get("usage") if isinstance(obj, dict) else None
    return usage if isinstance(usage, dict) else None


def _str_or_none(value):
    """A wire field that must be a string: anything else is treated as absent (and is a finding)."""
    return value if isinstance(value, str) else None


def _finish_of(value, findings: list):
    if value is not None and not isinstance(value, str):
        findings.append("malformed_field")
        return None
    return value


def parse_completion(body) -> Parsed:
    """A non-stream `chat.completion`. A body without choices, or one that carries an `error`
    (some gateways answer 200 with an error object), is not an answer (complete=False)."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict) or "error" in body:
        return Parsed(None, None, (), None, "none", ("no_choices",), complete=False)
    findings: list[str] = []
    choice = choices[0]
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        findings.append("malformed_field")
        raw_calls = []
    calls = []
    for i, call in enumerate(raw_calls):
        call = call if isinstance(call, dict) else {}
        fn = call.get("function") if isinstance(call.get("function"), dict) else {}
        calls.append({"index": i, "id": _str_or_none(call.get("id")), "name": _str_or_none(fn.get("name")),
                      "arguments": fn.get("arguments")})
    usage, source = _usage_of(body), "top_level"
    if usage is None:
        usage, source = _usage_of(choice), "per_choice"
    finish = _finish_of(choice.get("finish_reason"), findings)
    return Parsed(body, finish, tuple(calls), usage, source if usage is not None else "none",
                  tuple(dict.fromkeys(findings)), complete=finish != "error", routed=_str_or_none(body.get("provider")))


def arguments_of(fragments: list) -> tuple[Any, bool]:
    """(arguments, cumulative?) of one streamed call from its `arguments` fragments, in order.
    Fragments are concatenated (the standard); a server that instead re-sends everything so far
    (each fragment extends the one before) is cumulative: its last fragment is the whole. When the
    fragments fit both readings, the one that is JSON wins ('{"a": ' + '{"a": 1}}' is incremental)."""
    if any(not isinstance(f, str) for f in fragments):
        return next(f for f in reversed(fragments) if not isinstance(f, str)), False  # an object: no text
    joined = "".join(fragments)
    parts = [f for f in fragments if f]
    extends = len(parts) > 1 and all(b.startswith(a) for a, b in zip(parts, parts[1:]))
    if extends and not (_is_json(joined) and not _is_json(parts[-1])):
        return parts[-1], True
    return joined, False


def _is_json(text) -> bool:
    try:
        json.loads(text)
        return True
    except (TypeError, ValueError, RecursionError):
        return False


def reassemble_stream(sse_lines: list[str]) -> Parsed:
    """Rebuild one `chat.completion` from the `data:` payloads of a stream (DESIGN §8).

    Tool calls are grouped by `index` (a fragment without one joins the call with its id, else the
    last call); name and id: first non-empty wins (a repeated name is not appended, a different one
    is a finding); arguments: see arguments_of. A stream with neither `[DONE]` nor a finish_reason is
    truncated; so is one that carries an `error` or no chunk at all (never a silent `stop`)."""
    findings: list[str] = []
    content, reasoning, slots, fragments = [], [], {}, {}
    finish = first = top_usage = choice_usage = last_slot = None
    done = errored = answered = False
    routed = None
    for payload in sse_lines:
        if payload.strip() == "[DONE]":
            done = True
            continue
        try:
            chunk = read_json(payload)
        except (ValueError, TypeError):
            chunk = None
        if not isinstance(chunk, dict):
            findings.append("bad_chunk")
            continue
        errored = errored or "error" in chunk
        first = first or chunk
        routed = routed or _str_or_none(chunk.get("provider"))
        if _usage_of(chunk) is not None:
            top_usage = chunk["usage"]
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            findings.append("malformed_field")
            choices = []
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) not in (0, None):
                continue
            answered = True
            if _usage_of(choice) is not None:
                choice_usage = choice["usage"]
            finish = _finish_of(choice.get("finish_reason"), findings) or finish
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            if isinstance(delta.get("content"), str):
                content.append(delta["content"])
            if isinstance(delta.get("reasoning_content"), str):
                reasoning.append(delta["reasoning_content"])
            calls = delta.get("tool_calls") or []
            if not isinstance(calls, list):
                findings.append("malformed_field")
                calls = []
            for frag in calls:
                if not isinstance(frag, dict):
                    continue
                frag_id = _str_or_none(frag.get("id"))
                index = frag.get("index")
                if not isinstance(index, int) or isinstance(index, bool):
                    findings.append("missing_index")
                    index = next((i for i, s in slots.items() if frag_id and s["id"] == frag_id), None)
                    if index is None:
                        index = max(slots, default=-1) + 1 if frag_id or last_slot is None else last_slot
                slot = slots.setdefault(index, {"index": index, "id": None, "name": None, "arguments": None})
                last_slot = index
                if frag_id:
                    if slot["id"] is None:
                        slot["id"] = frag_id
                    elif frag_id != slot["id"]:
                        findings.append("id_changed")
                fn = frag.get("function") if isinstance(frag.get("function"), dict) else {}
                name = _str_or_none(fn.get("name"))
                if name:
                    if slot["name"] is None:
                        slot["name"] = name
                    else:
                        findings.append("name_resent" if name == slot["name"] else "name_changed")
                if fn.get("arguments") is not None:
                    fragments.setdefault(index, []).append(fn["arguments"])
    for index, parts in fragments.items():
        slots[index]["arguments"], cumulative = arguments_of(parts)
        if cumulative:
            findings.append("cumulative_arguments")
    if errored:
        findings.append("stream_error")
    # Chunks that only ever said `choices: []` (usage, keep-alives) are no answer, [DONE] or not.
    complete = (done or finish is not None) and answered and not errored and finish != "error"
    if complete and not done:
        findings.append("missing_done")
    calls = tuple(slots[i] for i in sorted(slots))
    usage, source = (top_usage, "top_level") if top_usage is not None else (choice_usage, "per_choice")
    message = {"role": "assistant", "content": "".join(content)}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [{"id": c["id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]
    first = first or {}
    completion = {"id": first.get("id"), "object": "chat.completion", "created": first.get("created"),
                  "model": first.get("model"),
                  "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}
    return Parsed(completion, finish, calls, usage, source if usage is not None else "none",
                  tuple(dict.fromkeys(findings)), complete, routed)


# ---- 2e. scoring one answer --------------------------------------------------------------------

class _NonStandard(Exception):
    pass


def _reject_constant(name):
    raise _NonStandard(f"{name} is not JSON")


def _no_duplicate_keys(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        dup = Counter(k for k, _ in pairs).most_common(1)[0][0]
        raise _NonStandard(f"duplicate key {dup!r}")
    return obj


def parse_arguments(text: str):
    """(value, None) for strict JSON; (None, (class, message)) otherwise. Python's json accepts NaN,
    Infinity and duplicate keys; JSON (and JavaScript clients) do not."""
    if text == "":
        return None, ("invalid_json", "arguments are an empty string")
    try:
        return read_json(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys), None
    except _NonStandard as err:
        return None, ("non_standard_json", str(err))
    except UnreadableJson as err:  # JSON, but beyond what parsers interoperate on (RFC 8259 §6, §9)
        return None, ("non_standard_json", str(err))
    except json.JSONDecodeError as err:
        return None, ("invalid_json", f"{err.msg} at char {err.pos}")


def tools_by_name(body: dict) -> dict:
    """name -> parameters of the request's function tools (builtin tools have no schema to check)."""
    out = {}
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type", "function") == "function":
            fn = tool.get("function") or {}
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                out.setdefault(fn["name"], fn.get("parameters"))
    return out


def classify_call(call: dict, tools: dict) -> CallResult:
    """One call's class (DESIGN §8), with its parsed arguments kept (`value`) for comparisons."""
    name, args = call.get("name"), call.get("arguments")
    findings, instance, problem = (), None, None
    if isinstance(args, str):
        instance, problem = parse_arguments(args)
    elif args is None:
        problem = ("invalid_json", "arguments are missing")
    else:
        instance, findings = args, ("non_string_arguments",)
    kept = {"value": instance, "parsed": problem is None}
    if name not in tools:
        return CallResult(name, "unknown_tool", message=f"{name!r} is not among the request's tools", **kept)
    if problem:
        return CallResult(name, problem[0], message=problem[1], **kept)
    compiled = tool_schema(tools[name])
    try:
        failure = None if compiled.unscored else check_instance(compiled, instance)
    except CannotJudge as err:  # the validator's failure, not the provider's
        return CallResult(name, "unscored", message=str(err), findings=findings)
    if compiled.unscored:  # also a deferred schema that failed to compile just now
        return CallResult(name, "unscored", message=compiled.unscored, findings=findings, **kept)
    if failure:
        reached = next((f for f in compiled.faults if fault_reached(f, failure[0])), None)
        if reached is not None:  # it failed where the schema itself cannot be satisfied
            return CallResult(name, "unscored", message=f"the dataset's fault: {reached.text()}", findings=findings,
                              **kept)
        return CallResult(name, "schema_mismatch", pointer=failure[0], message=failure[1], findings=findings, **kept)
    return CallResult(name, "valid", findings=findings, **kept)


# BFCL's string rule (DESIGN §10): what two strings must share to count as the same answer.
_LOOSE_DROP = str.maketrans("", "", " ,./-_*^")


def loosened(value):
    """`value` with every string (not object keys) compared by BFCL's rule: spaces and `,./-_*^`
    removed, lower-cased, `'` read as `"`."""
    if isinstance(value, str):
        return value.translate(_LOOSE_DROP).lower().replace("'", '"')
    if isinstance(value, list):
        return [loosened(v) for v in value]
    if isinstance(value, dict):
        return {k: loosened(v) for k, v in value.items()}
    return value


def call_keys(calls: Iterable[tuple]) -> tuple:
    """What argument agreement compares of an answer's calls, from (name, parsed arguments,
    whether they parsed) each: (name, exact, loose) per call, sorted; exact = hash of the canonical
    arguments, loose = the same after BFCL's string rule, None when the arguments do not parse."""
    out = []
    for name, value, parsed in calls:
        try:
            out.append((name, sha256_hex(canonical_json(value))[:16], sha256_hex(canonical_json(loosened(value)))[:16])
                       if parsed else (name, None, None))
        except (RecursionError, ValueError, TypeError):  # too deep to compare: agrees with nothing
            out.append((name, None, None))
    return tuple(sorted(out, key=lambda k: tuple(str(x) for x in k)))


def _agree(mine: tuple, theirs: tuple, part: int) -> bool:
    """Whether two answers' calls have the same arguments, call for call in any order, by the exact
    (part 1) or the loose (part 2) key; arguments that do not parse agree with nothing."""
    pick = lambda keys: sorted((str(k[0]), str(k[part])) for k in keys)
    return None not in (k[part] for k in mine) and pick(mine) == pick(theirs)


def parse_exchange(exchange: dict) -> Parsed | None:
    """The answer inside a raw exchange; None when it holds no 200 answer (e.g. a rejection)."""
    if exchange.get("status") != 200:
        return None
    api = exchange.get("api", "chat")
    if api == "chat":
        return reassemble_stream(exchange["sse_lines"]) if "sse_lines" in exchange else \
            parse_completion(exchange.get("body"))
    import k2vv_wire  # the other transports: what the vendor sent is cached, translated when scored
    cut = False
    if "sse_lines" in exchange:
        payloads = exchange["sse_lines"]
        payloads, cut = k2vv_wire.raw_stream_as_chat(payloads) if api == "completions" else \
            (k2vv_wire.responses_stream_as_chat(payloads), False)
        parsed = reassemble_stream(payloads)
    else:
        body, cut = k2vv_wire.raw_as_chat(exchange.get("body")) if api == "completions" else \
            (k2vv_wire.responses_as_chat(exchange.get("body")), False)
        parsed = parse_completion(body)
    if cut:  # a tool-call section without its end marker: the calls in it are lost (DESIGN §12)
        parsed = dataclasses.replace(parsed, findings=parsed.findings + ("tool_section_cut",))
    return parsed


def score_exchange(body: dict, exchange: dict | None, keep_completion: bool = True,
                   parsed: Parsed | None = None, case: Case | None = None, keys: bool = False) -> Outcome:
    """Score one raw exchange against the request body it answers (DESIGN §8). None = unanswered.
    keep_completion=False leaves out the reassembled chat.completion, which only results.jsonl needs;
    `parsed` is the exchange's answer when the caller has parsed it already (the runner has);
    `case`, when given, brings the `expected` calls the answer is also judged against (DESIGN §10);
    `keys`: the call_keys argument agreement compares (only a run with a baseline does: 2 hashes a call)."""
    if exchange is None:
        return Outcome("unanswered")
    meta = {"timing": exchange.get("timing"), "attempts": exchange.get("attempts", 0), "at": exchange.get("at"),
            "pace": exchange.get("pace") if isinstance(exchange.get("pace"), dict) else None}
    status = exchange.get("status")
    if status in REJECT_STATUSES:
        return Outcome("rejected", error_class=f"http_{status}", detail=str(exchange.get("text") or "")[:2000] or None,
                       **meta)
    if status != 200:
        return Outcome("failed", error_class=exchange.get("error_class") or f"http_{status}", **meta)
    parsed = parsed or parse_exchange(exchange)
    if not parsed.complete:
        cls = "truncated" if "sse_lines" in exchange else "failed"
        return Outcome(cls, findings=parsed.findings, error_class="truncated" if cls == "truncated" else "bad_body",
                       **meta)
    if "tool_section_cut" in parsed.findings:
        return Outcome("truncated", findings=parsed.findings, error_class="tool_section_cut", **meta)
    headers = exchange.get("headers") if isinstance(exchange.get("headers"), dict) else {}
    routed = next((headers[h] for h in ROUTING_HEADERS if isinstance(headers.get(h), str) and headers[h]), None)
    return outcome_of(parsed, tools_by_name(body), meta, keep_completion, parsed.routed or routed, case, keys)


def judge_expected(case: Case, calls: tuple, tools: dict) -> tuple[bool | None, str | None]:
    """(expected_match, expected_error) of an answered case's classified `calls`; (None, None)
    without an `expected`, or when BFCL's checker could not judge it (NotJudgeable: an `expected`
    it would crash on)."""
    if case is None or case.expected is None:
        return None, None
    given = [{"name": c.name, "arguments": c.value} if c.parsed else {"name": c.name} for c in calls]
    category = case.meta.get("category") if isinstance(case.meta, dict) else None
    try:
        return expected_verdict(case.expected, given, tools, category if isinstance(category, str) else None)
    except NotJudgeable:
        return None, None


def outcome_of(parsed: Parsed, tools: dict, meta: dict, keep_completion: bool = True, routed: str | None = None,
               case: Case | None = None, keys: bool = False) -> Outcome:
    finish = parsed.finish_reason
    findings = list(parsed.findings)
    triggered = finish == "tool_calls"
    if parsed.calls and not triggered or triggered and not parsed.calls:
        findings.append("finish_reason_mismatch")
    if finish is not None and finish not in STANDARD_FINISH_REASONS:
        findings.append("non_standard_finish_reason")
    calls = tuple(classify_call(c, tools) for c in parsed.calls)
    for c in calls:
        findings.extend(c.findings)
    findings.extend(wire_findings(parsed))
    if not triggered:
        cls = "no_call"
    elif not calls:
        cls = "empty_tool_calls"
    elif all(c.cls == "valid" for c in calls):
        cls = "valid"
    elif all(c.cls in ("valid", "unscored") for c in calls):
        cls = "unscored"
    else:
        cls = "invalid"
    return Outcome(cls, finish, calls, tuple(dict.fromkeys(findings)), parsed.usage, parsed.usage_source,
                   tuple(c.get("name") for c in parsed.calls),
                   completion=parsed.completion if keep_completion else None,
                   routed_provider=routed, keys=call_keys((c.name, c.value, c.parsed) for c in calls) if keys else (),
                   expected=judge_expected(case, calls, tools), **meta)


# Tool-call markup that belongs in `tool_calls`, not in text: Kimi's special tokens, Hermes tags,
# Llama's `<function=`, Mistral's `[TOOL_CALLS]` (DESIGN §10). In content, a parser missed a call.
TOOL_CALL_MARKUP = ("<tool_call>", "</tool_call>", "<tool_response>", "<|tool_calls_section_begin|>",
                    "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>", "<function=",
                    "[TOOL_CALLS]")


def wire_findings(parsed: Parsed) -> list[str]:
    """What an answer's wire says beside its calls (DESIGN §10): tool-call markup leaking into the
    text or the reasoning, reasoning and nothing else, text next to calls, call ids that repeat or
    are missing, usage that does not add up or is absent."""
    choice = ((parsed.completion or {}).get("choices") or [{}])[0]
    message = choice.get("message") if isinstance(choice, dict) and isinstance(choice.get("message"), dict) else {}
    content = message.get("content") if isinstance(message.get("content"), str) else ""
    reasoning = next((message[k] for k in ("reasoning_content", "reasoning") if isinstance(message.get(k), str)), "")
    out = []
    if any(mark in content for mark in TOOL_CALL_MARKUP):
        out.append("markup_in_content")
    if any(mark in reasoning for mark in TOOL_CALL_MARKUP):
        out.append("markup_in_reasoning")
    if reasoning.strip() and not content.strip() and not parsed.calls:
        out.append("reasoning_only")
    if parsed.calls and content.strip():
        out.append("text_beside_calls")
    ids = [c.get("id") for c in parsed.calls]
    if any(i is None for i in ids):
        out.append("null_call_id")
    known = [i for i in ids if i is not None]
    if len(set(known)) < len(known):
        out.append("duplicate_call_id")
    usage = parsed.usage
    if not isinstance(usage, dict):
        out.append("usage_missing")
    elif all(isinstance(usage.get(k), int) and not isinstance(usage.get(k), bool)
             for k in ("prompt_tokens", "completion_tokens", "total_tokens")) \
            and usage["prompt_tokens"] + usage["completion_tokens"] != usage["total_tokens"]:
        out.append("usage_mismatch")
    return out


# ---- 2g. baselines -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BaselineAnswer:
    answered: bool
    triggered: bool
    names: tuple = ()
    keys: tuple = ()  # call_keys of its calls: what argument agreement compares


def baseline_of(outcome: Outcome) -> BaselineAnswer:
    return BaselineAnswer(outcome.answered, outcome.triggered, outcome.names, outcome.keys)


def request_fingerprint(body: dict) -> str:
    """What a K2VV results line and a test-set line must share to be the same case: messages (with
    `_input` read as `system`, as K2VV sends them) and tools. Model and overrides differ by design."""
    messages = inputs_as_system(body.get("messages") or [])
    return sha256_hex(canonical_json({"messages": messages, "tools": body.get("tools")}))


def k2vv_result_answers(lines: Iterable[str], path: str = "results.jsonl") -> dict:
    """{data_index: (last_run_at, identity, BaselineAnswer)} from a K2VV `results.jsonl`, the
    newest line per data_index (as K2VV keeps it). Pair them with cases by `match_k2vv_result`: the
    data_index, checked by identity: k2vv's `case_id` (the same over every transport), else the
    request fingerprint (K2VV's own `hash` includes the model, so it never matches across
    providers), else nothing (a raw-completions request holds no messages to compare). Every line
    that is not a results line is raised at once."""
    latest: dict[int, tuple] = {}
    errors = []
    for number, rec in json_lines(lines, path, errors):
        if not isinstance(rec, dict) or not isinstance(rec.get("data_index"), int):
            errors.append(InputError(path, number, "no integer data_index", "a K2VV results line"))
            continue
        at = str(rec.get("last_run_at", ""))
        old = latest.get(rec["data_index"])
        if old is not None and at < old[0]:
            continue
        request = rec.get("request") if isinstance(rec.get("request"), dict) else {}
        response = rec.get("response") if isinstance(rec.get("response"), dict) else {}
        names, keys = (), ()
        choices = response.get("choices") or []
        if choices and isinstance(choices[0], dict) and isinstance(choices[0].get("message"), dict):
            calls = choices[0]["message"].get("tool_calls") or []
            fns = [c.get("function") if isinstance(c.get("function"), dict) else {} for c in calls
                   if isinstance(c, dict)] if isinstance(calls, list) else []
            names = tuple(fn.get("name") for fn in fns)
            parsed = [parse_arguments(fn["arguments"]) if isinstance(fn.get("arguments"), str) else (None, True)
                      for fn in fns]
            keys = call_keys((fn.get("name"), value, problem is None) for fn, (value, problem) in zip(fns, parsed))
        identity = ("case", rec["case_id"]) if isinstance(rec.get("case_id"), str) else \
            ("request", request_fingerprint(request)) if "messages" in request else None
        latest[rec["data_index"]] = (at, identity, BaselineAnswer(
            rec.get("status") == "success", rec.get("finish_reason") == "tool_calls", names, keys))
    if errors:
        raise InputErrors(errors)
    return latest


def results_file_model(member: str) -> str:
    """The model a K2VV results file is named after: `<model>_results.jsonl` -> model."""
    stem = os.path.basename(member)
    stem = stem[:-len(".jsonl")] if stem.endswith(".jsonl") else stem
    return re.sub(r"[_-]?results?$", "", stem, flags=re.I)


def pick_official_results(members: tuple, model: str, choice: str | None, test_set: str) -> str:
    """Which K2VV results file of a test-set archive is `--baseline official[:choice]`: the only
    one, the one `choice` names, or the one named after the run's model; never the archive's
    order (two files are one per model, and their F1s differ)."""
    if not members:
        raise K2vvError(f"--baseline official needs a K2VV results file inside the test set; {test_set} has none "
                        "(pass the official tool-calls.tar.gz, or --baseline FILE)")
    names = [results_file_model(m) for m in members]
    by_model = {(name if names.count(name) == 1 else m): m for name, m in zip(names, members)}
    listed = ", ".join(f"--baseline official:{name}" if name else f"--baseline official ({m})"
                       for name, m in sorted(by_model.items()))
    if choice is not None:
        if choice not in by_model:
            raise K2vvError(f"--baseline official:{choice}: no such results file in {test_set}; choose {listed}")
        return by_model[choice]
    if len(members) == 1:
        return members[0]
    wanted = {model.lower(), model.lower().replace("/", "_"), model.rsplit("/", 1)[-1].lower()}
    found = [m for name, m in by_model.items() if name.lower() in wanted]
    if len(found) == 1:
        return found[0]
    raise K2vvError(f"{test_set} holds {len(members)} K2VV results files and none is named after model "
                    f"{model!r}: choose one with {listed}")


def match_k2vv_result(answers: dict, case: Case, stats: Counter) -> BaselineAnswer | None:
    """The K2VV result for `case`, if one has its data_index and the same request; counted in
    stats["matched"] or stats["mismatched"]."""
    found = answers.get(case.data_index)
    if found is None:
        return None
    kind, identity = found[1] or (None, None)
    if kind is not None and identity != (case.case_id if kind == "case" else request_fingerprint(case.body)):
        stats["mismatched"] += 1
        return None
    stats["matched"] += 1
    return found[2]


# ---- 2h. summary and verdict ---------------------------------------------------------------------

def default_thresholds(temperature: float | None, min_f1=None, min_schema=None) -> dict:
    """K2VV's published bars: F1 >= 0.80 (K2-0905 at 0.6), 0.73 for thinking models run at 1.0."""
    if min_f1 is None:
        min_f1 = DEFAULT_MIN_F1_THINKING if temperature is not None and temperature >= 1.0 else DEFAULT_MIN_F1
    return {"min_f1": min_f1,
            "min_schema_accuracy": DEFAULT_MIN_SCHEMA_ACCURACY if min_schema is None else min_schema,
            "min_coverage": MIN_COVERAGE}


def decide_verdict(schema_ci, answered_share, baseline: dict | None, thresholds: dict) -> dict:
    """pass when every interval's lower bound clears its threshold, fail when an upper bound is
    below one, else inconclusive; inconclusive too when coverage is under the minimum."""
    reasons, failed, unsure = [], False, False
    checks = [("schema_accuracy", schema_ci, thresholds["min_schema_accuracy"])]
    if baseline is not None:
        checks.append(("tool_call_f1", baseline.get("f1_ci"), thresholds["min_f1"]))
    elif thresholds["min_f1"] > 0:  # a provider that never calls a tool must not pass on schemas alone
        unsure = True
        reasons.append("no baseline: tool_call_f1 not measured (use --baseline, or --min-f1 0 to judge "
                       "schema accuracy alone)")
    else:
        reasons.append("tool_call_f1 not required (--min-f1 0)")
    for name, ci, bar in checks:
        if ci is None:
            unsure = True
            reasons.append(f"{name}: nothing to measure")
        elif ci[1] < bar:
            failed = True
            reasons.append(f"{name}: upper bound {ci[1]:.3f} < {bar}")
        elif ci[0] < bar:
            unsure = True
            reasons.append(f"{name}: interval [{ci[0]:.3f}, {ci[1]:.3f}] spans {bar}")
        else:
            reasons.append(f"{name}: lower bound {ci[0]:.3f} >= {bar}")
    coverage = baseline["coverage"] if baseline is not None else answered_share
    if coverage is None or coverage < thresholds["min_coverage"]:
        unsure = True
        reasons.append(f"coverage {0 if coverage is None else coverage:.3f} < {thresholds['min_coverage']}")
    status = "fail" if failed else "inconclusive" if unsure else "pass"
    return {"status": status, "reasons": reasons, "thresholds": thresholds}




class CaseFacts(NamedTuple):
    """What a case's counters need of one answer. The runner keeps only this of the answers it
    fetched (Recorder.fresh), not the whole Outcome."""
    answered: bool
    triggered: bool
    passes: bool
    names: tuple
    keys: tuple  # call_keys


LISTED = 50  # cases a summary names per list (flaky, disagreeing); the counts are whole


def _keep_first(kept: list, case: Case | None, number: int, *more) -> None:
    """Keep the LISTED first cases in test-set order (cases arrive in order within a share) as
    (data_index, case_id, *more); the id is hashed only for a case that is kept."""
    if len(kept) < LISTED:
        kept.append(((case.data_index, case.case_id) if case is not None else (number, "")) + more)


def case_facts(out: Outcome) -> CaseFacts:
    return CaseFacts(out.answered, out.triggered, out.response_class in ("valid", "no_call"), out.names, out.keys)


class Tally:
    """Running counters of one provider's answers, fed one case (all its trials) at a time, so a
    summary of any number of cases needs flat memory. Percentiles keep one number per answer;
    the F1 bootstrap only a count per distinct (tp, fp, fn) tuple."""

    def __init__(self, trials: int = 1, with_baseline: bool = False):
        self.trials, self.with_baseline = trials, with_baseline
        self.cases = 0
        self.responses, self.call_classes, self.findings, self.finish = Counter(), Counter(), Counter(), Counter()
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        self.usage_sources, self.attempts = Counter(), Counter()
        self.limits, self.rate_limited, self.ceiling = Counter(), 0, 0  # the runner's pace, per answer
        self.routed = Counter()  # upstream provider (a gateway's word) -> answers
        self.expected_checked = self.expected_matched = 0
        self.expected_errors = Counter()  # BFCL error type -> answers
        self.totals, self.ttfbs = [], []
        self.first = self.last = None  # (at, total_ms) of the earliest and the latest answer
        self.scored_calls = self.valid_calls = 0
        self.pass_any = self.pass_all = 0  # cases with at least one / every trial passing (pass@k, pass^k)
        self.tp = self.fp = self.fn = self.tn = self.names_equal = 0
        self.args_equal = self.args_loose_equal = self.args_differ = self.flaky = 0
        self.args_differ_cases, self.flaky_cases = [], []  # the first LISTED (data_index, case_id) of each
        self.fp_cases, self.fn_cases = [], []  # ... (data_index, case_id, the names the caller called)
        self.per_case = Counter()  # (tp, fp, fn) of each case the baseline answered

    def add_answer(self, out: Outcome) -> None:
        """The counters of one answer that need nothing of its case (any order, any process)."""
        self.responses[out.response_class] += 1
        if out.findings:
            self.findings.update(out.findings)
        if out.attempts:
            self.attempts[str(out.attempts)] += 1
        if out.pace:
            limit, ceiling, limited = (out.pace.get(k) for k in ("limit", "ceiling", "rate_limited"))
            if isinstance(limit, int) and isinstance(ceiling, int) and isinstance(limited, int):
                self.limits[limit] += 1
                self.ceiling, self.rate_limited = max(self.ceiling, ceiling), self.rate_limited + limited
        if out.at:
            stamp = (out.at, (out.timing or {}).get("total_ms") or 0)
            self.first = stamp if self.first is None else min(self.first, stamp)
            self.last = stamp if self.last is None else max(self.last, stamp)
        if not out.answered:
            return
        if out.routed_provider:
            self.routed[out.routed_provider] += 1
        if out.expected[0] is not None:
            self.expected_checked += 1
            self.expected_matched += out.expected[0]
            if out.expected[1]:
                self.expected_errors[out.expected[1]] += 1
        self.finish[out.finish_reason] += 1
        self.usage_sources[out.usage_source] += 1
        if out.usage:
            for key in self.usage:
                value = out.usage.get(key)
                self.usage[key] += value if isinstance(value, int) else 0
        if out.timing:
            if isinstance(out.timing.get("total_ms"), (int, float)):
                self.totals.append(out.timing["total_ms"])
            if isinstance(out.timing.get("ttfb_ms"), (int, float)):
                self.ttfbs.append(out.timing["ttfb_ms"])
        if out.triggered:
            for call in out.calls:
                self.call_classes[call.cls] += 1
                if call.cls != "unscored":
                    self.scored_calls += 1
                    self.valid_calls += call.cls == "valid"

    def add_case(self, answers: list, base: BaselineAnswer | None = None, case: Case | None = None) -> None:
        """The counters of one case: case_facts of each trial's answer, against the baseline's.
        `case` names it in the lists of flaky and disagreeing cases."""
        self.cases += 1
        passed = ctp = cfp = cfn = 0
        seen = {(a.triggered, a.passes) for a in answers if a.answered}
        if len(seen) > 1:  # trials that disagree on trigger or validity
            self.flaky += 1
            _keep_first(self.flaky_cases, case, self.cases)
        for answered, triggered, passes, names, keys in answers:
            if not answered:
                continue
            agrees = base is None or not base.answered or base.triggered == triggered
            passed += passes and agrees
            if base is None or not base.answered:
                continue
            if triggered and base.triggered:  # pairs where both sides answered (DESIGN §8)
                ctp += 1
                same_names = sorted(names, key=str) == sorted(base.names, key=str)
                self.names_equal += same_names
                exact = same_names and _agree(keys, base.keys, 1)
                loose = same_names and _agree(keys, base.keys, 2)
                self.args_equal += exact
                self.args_loose_equal += loose
                if not exact:
                    self.args_differ += 1
                    _keep_first(self.args_differ_cases, case, self.cases)
            elif triggered:
                cfp += 1
                _keep_first(self.fp_cases, case, self.cases, list(names))
            elif base.triggered:
                cfn += 1
                _keep_first(self.fn_cases, case, self.cases, list(base.names))
            else:
                self.tn += 1
        self.pass_any += passed > 0
        self.pass_all += passed == self.trials
        self.tp, self.fp, self.fn = self.tp + ctp, self.fp + cfp, self.fn + cfn
        if base is not None and base.answered:
            self.per_case[(ctp, cfp, cfn)] += 1

    def merge(self, other: Tally) -> None:
        """Add the counters of a Tally of other cases (another process's share of the test set)."""
        self.cases += other.cases
        for mine, theirs in ((self.responses, other.responses), (self.call_classes, other.call_classes),
                             (self.findings, other.findings), (self.finish, other.finish),
                             (self.usage_sources, other.usage_sources), (self.attempts, other.attempts),
                             (self.per_case, other.per_case), (self.limits, other.limits),
                             (self.routed, other.routed), (self.expected_errors, other.expected_errors)):
            mine.update(theirs)
        self.ceiling, self.rate_limited = max(self.ceiling, other.ceiling), self.rate_limited + other.rate_limited
        for key in self.usage:
            self.usage[key] += other.usage[key]
        self.totals += other.totals
        self.ttfbs += other.ttfbs
        stamps = [s for s in (self.first, other.first) if s]
        self.first = min(stamps) if stamps else None
        stamps = [s for s in (self.last, other.last) if s]
        self.last = max(stamps) if stamps else None
        for name in ("scored_calls", "valid_calls", "pass_any", "pass_all", "tp", "fp", "fn", "tn", "names_equal",
                     "args_equal", "args_loose_equal", "args_differ", "flaky", "expected_checked", "expected_matched"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.args_differ_cases, other.args_differ_cases), (self.flaky_cases, other.flaky_cases),
                             (self.fp_cases, other.fp_cases), (self.fn_cases, other.fn_cases)):
            mine[:] = sorted(mine + theirs)[:LISTED]  # each share kept its first LISTED: so do the merged

    def runner(self) -> dict | None:
        """How the runner went, from what each cached answer recorded of it (so `score` gives the
        same block): the ceiling, the limit most answers were sent at, the vendor's "too many"s
        before those answers, attempts per answer."""
        if not self.limits:
            return None
        answers = sum(self.limits.values())
        middle, seen, settled = (answers + 1) // 2, 0, 0
        for limit in sorted(self.limits):
            seen += self.limits[limit]
            if seen >= middle:
                settled = limit
                break
        attempted = sum(self.attempts.values())
        return {"concurrency_ceiling": self.ceiling, "concurrency_settled": settled, "rate_limited": self.rate_limited,
                "attempts_histogram": dict(sorted(self.attempts.items(), key=lambda kv: int(kv[0]))),
                "first_attempt_success": round6(self.attempts["1"] / attempted) if attempted else None}

    def comparison(self) -> dict:
        """TP/FP/FN/TN over (case, trial) pairs where both sides answered, with coverage = scored
        pairs / all pairs, tool-name agreement on TP pairs and a bootstrap interval for F1."""
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        pairs = tp + fp + fn + tn
        total = self.cases * self.trials
        return {
            "pairs": pairs, "coverage": round6(pairs / total) if total else None,
            "TP": tp, "FP": fp, "FN": fn, "TN": tn,
            "precision": round6(tp / (tp + fp)) if tp + fp else None,
            "recall": round6(tp / (tp + fn)) if tp + fn else None,
            "f1": round6(f1_of(tp, fp, fn)),
            "f1_ci": bootstrap_f1(self.per_case) if pairs else None,
            "name_agreement": round6(self.names_equal / tp) if tp else None,
            "false_positives": [{"data_index": i, "case_id": c, "called": n} for i, c, n in self.fp_cases],
            "false_negatives": [{"data_index": i, "case_id": c, "baseline_called": n} for i, c, n in self.fn_cases],
            "argument_agreement": {
                "exact": round6(self.args_equal / tp) if tp else None,
                "normalized": round6(self.args_loose_equal / tp) if tp else None,
                "disagreeing": self.args_differ,
                "cases": [{"data_index": i, "case_id": c} for i, c in self.args_differ_cases]},
        }

    def summary(self, *, thresholds: dict, info: dict, baseline_info: dict | None = None) -> dict:
        """The summary.json of one provider run: K2VV's fields with K2VV's names, then k2vv's."""
        responses, finish = self.responses, self.finish
        ok = responses["valid"]
        bad = responses["invalid"] + responses["empty_tool_calls"]
        success = sum(responses[c] for c in ANSWERED)
        total = self.cases * self.trials
        totals, ttfbs = sorted(self.totals), sorted(self.ttfbs)
        others = {str(k): v for k, v in sorted(finish.items(), key=lambda kv: str(kv[0]))
                  if k not in ("stop", "tool_calls")}
        comparison = None
        if self.with_baseline:
            comparison = self.comparison()
            if baseline_info:
                comparison.update(baseline_info)
        schema_ci = wilson(ok, ok + bad)
        summary = {
            "model": info.get("model"),
            "success_count": success,
            "failure_count": total - success,
            "finish_stop": finish["stop"],
            "finish_tool_calls": finish["tool_calls"],
            "finish_others": sum(others.values()),
            "finish_others_detail": others,
            "schema_validation_error_count": bad,
            "successful_tool_call_count": ok,
            "usage": dict(self.usage),
            "eval_started_at": self.first[0] if self.first else None,
            "eval_finished_at": self.last[0] if self.last else None,
            "eval_duration_ms": _span_ms(self.first, self.last),
            "schema_accuracy": round6(ok / (ok + bad)) if ok + bad else None,
            "schema_accuracy_ci": schema_ci,
            "per_call_schema_accuracy": round6(self.valid_calls / self.scored_calls) if self.scored_calls else None,
            "classes": {"responses": {c: responses[c] for c in RESPONSE_CLASSES},
                        "calls": {c: self.call_classes[c] for c in CALL_CLASSES}},
            "findings": dict(sorted(self.findings.items())),
            "usage_sources": {s: self.usage_sources[s] for s in ("top_level", "per_choice", "none")},
            "latency": {"p50": percentile(totals, 50), "p90": percentile(totals, 90),
                        "p99": percentile(totals, 99), "ttfb_p50": percentile(ttfbs, 50),
                        "ttfb_p90": percentile(ttfbs, 90)},
            "attempts": dict(sorted(self.attempts.items(), key=lambda kv: int(kv[0]))),
            "runner": self.runner(),
            "routing": {"providers": dict(sorted(self.routed.items())), "mixed": len(self.routed) > 1},
            "argument_accuracy": {
                "checked": self.expected_checked, "matched": self.expected_matched,
                "accuracy": round6(self.expected_matched / self.expected_checked) if self.expected_checked else None,
                "ci": wilson(self.expected_matched, self.expected_checked),
                "errors": dict(sorted(self.expected_errors.items(), key=lambda kv: (-kv[1], kv[0])))},
            "baseline": comparison,
            "trials": None,
            "verdict": decide_verdict(schema_ci, success / total if total else None, comparison, thresholds),
            "k2vv": dict(info, version=__version__),
        }
        if self.trials > 1:
            summary["trials"] = {
                "k": self.trials,
                "pass_at_k": round6(self.pass_any / self.cases) if self.cases else None,
                "pass_hat_k": round6(self.pass_all / self.cases) if self.cases else None,
                "flaky": self.flaky,
                "flaky_cases": [{"data_index": i, "case_id": c} for i, c in self.flaky_cases],
            }
        return summary


def _span_ms(first: tuple | None, last: tuple | None) -> int | None:
    """Wall time covered by the cached answers: first `at` to last `at` + its duration."""
    if not first or not last:
        return None
    try:
        from datetime import datetime
        start = datetime.fromisoformat(first[0].replace("Z", "+00:00"))
        end = datetime.fromisoformat(last[0].replace("Z", "+00:00"))
        return int((end - start).total_seconds() * 1000 + last[1])
    except (ValueError, TypeError, AttributeError):
        return None


def exit_code_of(verdict: dict) -> int:
    return {"pass": EXIT_PASS, "fail": EXIT_FAIL}.get(verdict["status"], EXIT_INCONCLUSIVE)


def answer_view(rec: dict) -> dict:
    """What `k2vv diff` compares of a results line: answered, trigger, tool names, class, the
    calls' arguments (canonical after parsing), findings."""
    choices = (rec.get("response") or {}).get("choices") if isinstance(rec.get("response"), dict) else None
    message = choices[0].get("message") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    calls = message.get("tool_calls") if isinstance(message, dict) and isinstance(message.get("tool_calls"), list) else []
    args = []
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) and isinstance(call.get("function"), dict) else {}
        value, problem = parse_arguments(fn["arguments"]) if isinstance(fn.get("arguments"), str) else (None, True)
        args.append((str(fn.get("name")), "?" if problem else canonical_json(value).decode("utf-8", UNPAIRED)))
    return {"answered": rec.get("status") == "success", "trigger": rec.get("finish_reason") == "tool_calls",
            "names": sorted(name for name, _ in args), "class": rec.get("response_class"),
            "arguments": sorted(args), "findings": sorted(rec.get("findings") or [])}


def results_records(lines: Iterable[str]):
    """The records of results.jsonl lines (a line that is not a JSON object is skipped)."""
    for text in lines:
        try:
            rec = read_json(text)
        except ValueError:
            continue
        if isinstance(rec, dict):
            yield rec


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# ---- 2j. run options and probes: preparation variants, the probe pack's pass rules (DESIGN §11) ----

STREAM_MODES = ("as-is", "stream", "non-stream", "both")  # --stream-mode
REASONING_HISTORY = ("keep", "strip")  # --reasoning-history
PROBE_RULES = ("tool_choice_none", "tool_choice_required", "tool_choice_named", "parallel_tool_calls_false",
               "tool_result_continues", "history_ids_ab", "reasoning_history_ab", "usage_arithmetic",
               "stream_vs_non_stream")
PROBE_PAIRS = frozenset(("history_ids_ab", "reasoning_history_ab", "stream_vs_non_stream"))  # two requests each


def strip_reasoning(messages: list) -> list:
    """Historical assistant messages without `reasoning_content` (copies): what a client that
    drops the model's reasoning from the history sends."""
    return [{k: v for k, v in m.items() if k != "reasoning_content"}
            if isinstance(m, dict) and m.get("role") == "assistant" and "reasoning_content" in m else m
            for m in messages]


def prepare_variant(body: dict, stream_mode: str = "as-is", reasoning_history: str = "keep") -> dict:
    """A prepared body under `--stream-mode` and `--reasoning-history` (part of preparation, DESIGN §5,
    so the cache key changes with them). A forced stream asks for usage, as every stream does; a forced
    non-stream drops stream_options, which vendors reject without `stream`."""
    if stream_mode == "as-is" and reasoning_history == "keep":
        return body
    out = dict(body)
    if reasoning_history == "strip" and isinstance(out.get("messages"), list):
        out["messages"] = strip_reasoning(out["messages"])
    if stream_mode == "stream":
        out["stream"] = True
        out["stream_options"] = dict(out.get("stream_options") or {}, include_usage=True)
    elif stream_mode == "non-stream":
        out["stream"] = False
        out.pop("stream_options", None)
    return out


def probe_problems(probe, number: int, path: str) -> list[str]:
    """What is wrong with one line of a probe pack (every problem, one string each)."""
    where = f"{path}:{number}"
    if not isinstance(probe, dict):
        return [f"{where}: the line is {json_type_name(probe)} (expected an object with name, rule and requests)"]
    out = []
    if not isinstance(probe.get("name"), str) or not probe["name"]:
        out.append(f"{where}: name missing (expected a string)")
    if probe.get("rule") not in PROBE_RULES:
        out.append(f"{where}: rule {probe.get('rule')!r} unknown (expected one of {', '.join(PROBE_RULES)})")
    requests = probe.get("requests")
    wanted = 2 if probe.get("rule") in PROBE_PAIRS else 1
    if not isinstance(requests, list) or len(requests) != wanted or not all(
            isinstance(r, dict) and isinstance(r.get("messages"), list) for r in requests):
        bodies = "1 request body" if wanted == 1 else f"{wanted} request bodies"
        out.append(f"{where}: requests must be a list of {bodies} with messages")
    return out


def probe_answer(outcome: Outcome) -> dict:
    """What the pass rules read of one scored answer: class, calls (name, parsed arguments or None),
    validity, usage, the text (its start) and the error of a request that got no answer."""
    message = ((outcome.completion or {}).get("choices") or [{}])[0].get("message") or {}
    content = message.get("content") if isinstance(message.get("content"), str) else ""
    return {"class": outcome.response_class,
            "calls": [{"name": c.name, "arguments": c.value if c.parsed else None} for c in outcome.calls],
            "valid": outcome.tool_calls_valid, "usage": outcome.usage, "content": content[:120],
            "error": outcome.error_class}


def _answered(answer: dict) -> bool:
    return answer["class"] in ANSWERED


def _names(answer: dict) -> list:
    return sorted(str(c["name"]) for c in answer["calls"])


def describe_answer(answer: dict) -> str:
    """One answer in a few words: `no answer (http_500)`, `text "…"`, `get_weather({"city":"Paris"})`."""
    if not _answered(answer):
        return f"no answer ({answer.get('error') or answer['class']})"
    if not answer["calls"]:
        return f"text {json.dumps(answer['content'][:40], ensure_ascii=False)}" if answer["content"] else "empty text"
    return ", ".join(f"{c['name']}({'?' if c['arguments'] is None else canonical_json(c['arguments']).decode()[:40]})"
                     for c in answer["calls"]) + ("" if answer["class"] == "valid" else f" [{answer['class']}]")


def _last_history_call(body: dict) -> dict | None:
    """The last call in the history's assistant messages: {name, arguments (parsed, or None)}."""
    last = None
    for msg in body.get("messages") or ():
        if isinstance(msg, dict) and msg.get("role") == "assistant" and isinstance(msg.get("tool_calls"), list):
            for call in msg["tool_calls"]:
                fn = call.get("function") if isinstance(call, dict) and isinstance(call.get("function"), dict) else {}
                text = fn.get("arguments")
                value, problem = parse_arguments(text) if isinstance(text, str) else (None, True)
                last = {"name": fn.get("name"), "arguments": None if problem else value}
    return last


def judge_probe(rule: str, requests: list, answers: list) -> tuple[bool, str]:
    """(passed, why) of one probe: its rule (DESIGN §11) on the answers to its requests (two for an
    A/B pair: A first). A request with no answer fails the probe: the rule could not be seen to hold."""
    for label, answer in zip("AB", answers):
        if not _answered(answer):
            return False, ("" if len(answers) == 1 else f"{label}: ") + describe_answer(answer)
    first = answers[0]
    calls = len(first["calls"])
    if rule == "tool_choice_none":
        return (calls == 0, "no call" if calls == 0 else f"{plural(calls, 'call')} despite tool_choice none")
    if rule == "tool_choice_required":
        return (calls >= 1, f"{plural(calls, 'call')}" if calls else "no call despite tool_choice required")
    if rule == "tool_choice_named":
        choice = requests[0].get("tool_choice")
        named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        if calls == 1 and first["calls"][0]["name"] == named:
            return True, f"one call of {named}"
        return False, f"{plural(calls, 'call')} ({', '.join(_names(first)) or '-'}), not one of {named}"
    if rule == "parallel_tool_calls_false":
        return (calls <= 1, f"{plural(calls, 'call')}" + ("" if calls <= 1 else " despite parallel_tool_calls false"))
    if rule == "tool_result_continues":
        last = _last_history_call(requests[0])
        repeats = [c for c in first["calls"] if last is not None and c["name"] == last["name"]
                   and c["arguments"] is not None and json_equal(c["arguments"], last["arguments"])]
        return (not repeats, "continues" if not repeats else f"repeats the call {last['name']} verbatim")
    if rule == "usage_arithmetic":
        usage = first.get("usage")
        if not isinstance(usage, dict):
            return False, "no usage"
        parts = [usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")]
        if not all(type(p) is int for p in parts):
            return False, f"usage without integer prompt/completion/total tokens: {canonical_json(usage).decode()[:60]}"
        ok = parts[0] + parts[1] == parts[2]
        return ok, f"{parts[0]} + {parts[1]} {'=' if ok else '!='} {parts[2]}"
    if rule in PROBE_PAIRS:
        a, b = answers
        differs = []
        if bool(a["calls"]) != bool(b["calls"]):
            differs.append(f"trigger {_yes(bool(a['calls']))} → {_yes(bool(b['calls']))}")
        elif _names(a) != _names(b):
            differs.append(f"names {', '.join(_names(a))} → {', '.join(_names(b))}")
        if rule == "stream_vs_non_stream" and a["valid"] != b["valid"]:
            differs.append(f"validity {a['class']} → {b['class']}")
        return (not differs, "A and B agree" if not differs else "; ".join(differs))
    raise ValueError(f"unknown probe rule {rule!r}")


# ==== 3. effects =================================================================================

# ---- 3a. files: test sets, bundled data, JSON output ---------------------------------------------

BUNDLED_TESTSET = "fixtures/testset.jsonl"


# Where the bundled data sits beside this module: the repository and the pyz keep `schemas/` and
# `fixtures/` next to k2vv.py; a wheel installs them under `k2vv_data/`, because top-level
# `schemas`/`fixtures` directories in site-packages would collide with other distributions
# (`fixtures` is a PyPI package).
DATA_DIRS = ("", "k2vv_data")


def resource(relative: str) -> bytes:
    """A file bundled beside this module (repo checkout, wheel, shiv extraction, or straight from
    the zip): the module's own loader reads it, so the pyz needs no extraction to find its data."""
    base = os.path.dirname(os.path.abspath(__file__))
    loader = globals().get("__loader__")
    read = loader.get_data if loader is not None and hasattr(loader, "get_data") else _read_bytes
    for data_dir in DATA_DIRS:
        try:
            return read(os.path.join(base, data_dir, *relative.split("/")))
        except OSError:  # zipimporter says OSError, not FileNotFoundError
            continue
    raise FileNotFoundError(f"k2vv's bundled {relative} is missing beside {base} (a broken install: reinstall k2vv)")


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


use_meta_schemas(resource)  # the judge and the providers read bundled schemas through the file layer
use_provider_schema(resource)


@dataclass
class TestSet:
    """A test set, walked a line at a time each time its cases are wanted (a 100,000-line set
    never sits in memory). `sha256` is known once a walk has read every line."""
    name: str
    open_lines: Callable[[], Iterable[bytes]]  # a fresh iterator over its raw lines
    k2vv_results: tuple = ()  # members of a .tar.gz that are K2VV results files (`--baseline official`)
    archive: str | None = None  # the .tar.gz the samples come from
    sha256: str | None = None
    size: int = 0  # bytes on disk (compressed, for .gz), or in memory: decides whether `score` forks

    def cases(self, errors: list, limit: int | None = None, share: tuple[int, int] | None = None,
              ids: list | None = None):
        """Its cases in order, checked as they are read: a bad line goes to `errors` (the caller
        raises them all at the end). Lines past `limit` cases are still read and checked.
        `share` = (rank, count): only the lines of process `rank` of `count` are parsed (batches of
        FOLD_BATCH non-blank lines dealt in turn); the others are read and hashed but left unparsed
        (as blank lines, so numbering holds), `limit` counts non-blank lines (the same cases when no
        line is bad, and a bad line fails the command anyway), and `ids` collects (id, line)."""
        digest = hashlib.sha256()
        read, last = [0], [None]  # non-blank lines read; the line of the limit-th one

        def hashed():
            for number, raw in enumerate(self.open_lines(), 1):
                digest.update(raw)
                if share is not None and not is_blank(raw):
                    read[0] += 1
                    if read[0] == limit:
                        last[0] = number
                    if (read[0] - 1) // FOLD_BATCH % share[1] != share[0]:
                        raw = raw[:0]  # another process's line
                yield raw
        for n, case in enumerate(iter_cases(hashed(), self.name, errors, ids)):
            # hashed() has read up to the case's line: `last` is set if the limit was reached by then
            if limit is None or (n < limit if share is None else last[0] is None or case.data_index <= last[0]):
                yield case
        sha = digest.hexdigest()
        if self.sha256 is not None and sha != self.sha256:
            raise test_set_changed(self.name)
        self.sha256 = sha

    def all_cases(self) -> list:
        errors = []
        cases = list(self.cases(errors))
        if errors:
            raise InputErrors(errors)
        return cases


def test_set_changed(name: str) -> K2vvError:
    return K2vvError(f"{name}: the test set changed while k2vv was reading it; run again")


def _file_lines(path: str, opener, what: str, first_seen: list):
    """Lines of a file opened by `opener()`, read lazily; a read error names the file. The file
    must be the one the first pass read (size, mtime, inode in `first_seen`): a test set edited
    between the check pass and the send pass would send lines nobody checked."""
    import zlib
    try:
        info = os.stat(path)
        seen = (info.st_size, info.st_mtime_ns, info.st_ino)
        if not first_seen:
            first_seen.append(seen)
        elif first_seen[0] != seen:
            raise test_set_changed(path)
        with opener() as fh:
            yield from fh
    except (OSError, EOFError, zlib.error, tarfile.TarError) as err:
        raise K2vvError(f"{path}: cannot read the test set: {what} ({getattr(err, 'strerror', None) or err})") from None


def load_test_set(path: str | None) -> TestSet:
    """Open a test set: `.jsonl`, `.jsonl.gz`, or a `.tar.gz` like the official K2VV download
    (its samples file is picked; a K2VV results file beside it is kept as a baseline). Lines are
    read when cases are walked; a file that cannot be opened at all is reported here."""
    if path is None:
        data = resource(BUNDLED_TESTSET)
        return TestSet("bundled:" + BUNDLED_TESTSET, lambda: io.BytesIO(data), size=len(data))
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            info = os.fstat(fh.fileno())
            size = info.st_size
            if not stat.S_ISREG(info.st_mode):  # a pipe can be read once: keep it
                data = fh.read()
                p, path = None, str(path)
    except OSError as err:
        raise K2vvError(f"{path}: cannot read the test set ({err.strerror or err})") from None
    if p is None:
        if path.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as err:
                raise K2vvError(f"{path}: not a valid gzip file ({err})") from None
        return TestSet(path, lambda: io.BytesIO(data), size=len(data))
    if p.name.endswith((".tar.gz", ".tgz")):
        inner, results = _tarball_members(path)
        seen = []

        @contextlib.contextmanager
        def samples():
            with tarfile.open(path, mode="r:*") as tar, tar.extractfile(inner) as fh:
                yield fh
        return TestSet(f"{path}:{inner}", lambda: _file_lines(path, samples, "not a readable .tar.gz", seen), results,
                       size=size, archive=str(path))
    seen = []
    if p.name.endswith(".gz"):
        return TestSet(str(path), lambda: _file_lines(path, lambda: gzip.open(p, "rb"), "not a valid gzip file", seen),
                       size=size)
    return TestSet(str(path), lambda: _file_lines(path, lambda: open(p, "rb"), "read error", seen), size=size)


def _tarball_members(path: str) -> tuple[str, tuple]:
    """(name of the one samples .jsonl, names of the K2VV results .jsonl files) in a .tar.gz."""
    try:
        with tarfile.open(path, mode="r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jsonl")
                       and not os.path.basename(m.name).startswith(".")]
    except (tarfile.TarError, OSError, EOFError) as err:
        raise K2vvError(f"{path}: not a readable .tar.gz ({err})") from None
    samples = [m.name for m in members if "result" not in os.path.basename(m.name).lower()]
    results = tuple(sorted(m.name for m in members if "result" in os.path.basename(m.name).lower()))
    if len(samples) != 1:
        raise K2vvError(f"{path}: expected exactly one samples .jsonl inside, found {', '.join(samples) or 'none'}")
    return samples[0], results


def read_tar_member(path: str, member: str) -> list[str]:
    """The lines of one member of a .tar.gz (a K2VV results file: a few MB at most)."""
    try:
        with tarfile.open(path, mode="r:*") as tar, tar.extractfile(member) as fh:
            return fh.read().decode("utf-8", "replace").splitlines()
    except (tarfile.TarError, OSError, EOFError, KeyError) as err:
        raise K2vvError(f"{path}: cannot read {member} ({err})") from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write text next to its final name and rename, so a reader never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8", errors=UNPAIRED)
        os.replace(tmp, path)
    except OSError as err:
        raise K2vvError(f"{path}: cannot write ({err.strerror or err})") from None


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


# ---- 3b. the response cache (k2vv_cache stores bytes; what they mean is decided here) -------------

def default_cache_dir(flag: str | None) -> Path:
    return Path(flag or os.environ.get("K2VV_CACHE") or ".k2vv-cache")


def decode_exchange(raw: bytes) -> dict:
    """A cached value as the exchange it holds; another version is damage (refetched, not misread)."""
    value = read_json(raw)
    if not isinstance(value, dict) or value.get("v") != CACHE_VERSION or "status" not in value:
        raise CacheDamage(f"unknown cache entry version {value.get('v') if isinstance(value, dict) else '?'}")
    return value


def open_cache(directory, readonly: bool = False) -> ResponseCache:
    return ResponseCache(Path(directory), readonly, decode_exchange)


# ---- 3c. the runner: what the Sender (k2vv_http) fetches, scored, stored and journaled ---------------

def iter_sse_payloads(lines: Iterable[bytes]):
    """`data:` payloads of an SSE stream, one per event (multi-line data joined by newlines)."""
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = line.rstrip("\r")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[5:][1:] if line[5:6] == " " else line[5:])
    if data:
        yield "\n".join(data)


def split_lines(chunks):
    """Lines (without their \\n) of a byte stream that arrives in arbitrary chunks."""
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def loads_vendor_json(data: bytes):
    """A vendor's JSON body, or None when it is not one k2vv will hold (not JSON, not UTF-8, too deep)."""
    try:
        return read_json(data, object_pairs_hook=sorted_object)
    except (ValueError, UnicodeDecodeError):
        return None


def read_answer(api: str, data: bytes, event_stream: bool) -> tuple[dict, Parsed]:
    """A 200's body as (exchange, parsed), for send_once: an SSE stream's payloads, else a JSON
    body, kept as the vendor sent them (with the `api` that reads them, when not chat) and parsed.
    One that is incomplete raises Transient: retried, then `truncated`/`failed`."""
    if event_stream:
        exchange = {"status": 200, "sse_lines": list(iter_sse_payloads(split_lines((data,))))}
    else:
        body = loads_vendor_json(data)
        if body is None:
            raise Transient("bad_body")
        exchange = {"status": 200, "body": body}
    if api != "chat":  # named only when set, so the chat cache values keep their bytes
        exchange["api"] = api
    parsed = parse_exchange(exchange)
    if not parsed.complete:
        raise Transient("truncated" if event_stream else "bad_body")
    return exchange, parsed


@dataclass(slots=True)
class WorkItem:
    """One (case, trial): the prepared body, the exact bytes sent (canonical JSON), its cache key
    and its place among the job's items (case number x trials + sample)."""
    case: Case
    sample: int
    body: dict
    key: str
    payload: bytes
    ordinal: int = 0


class Recorder:
    """The one thread that stores what the workers fetched: it commits every queued answer to the
    cache in one transaction, then appends their results lines to the journal (OUT/results.jsonl)
    with one write and one flush. Workers hand over and go on to their next request (waiting for
    the commit, and queueing on a journal lock, left them idle: BENCHMARKS.md §2). A line is
    journaled only after its answer is committed, so the journal never names an answer the cache
    lacks; a crash loses at most the batch being stored, whose answers are sent again. The queue is
    bounded, so memory stays flat when the disk is slower than the provider. Of each answer fetched
    in this run it keeps where its line is and its case_facts (`fresh`, ~0.3 KB an answer), and
    adds the rest of its Outcome to `tally`: the fold copies the line and the counters instead of
    decoding, scoring and dumping the answer a second time."""

    BATCH = 64  # answers stored per transaction at most; also the queue's bound (~5 KB an entry)

    def __init__(self, cache: ResponseCache, journal: Path, on_error: Callable[[BaseException], None],
                 secrets: tuple = ()):
        import queue
        journal.parent.mkdir(parents=True, exist_ok=True)
        self.cache, self.on_error = cache, on_error
        self.secrets, self.secret_texts = tuple(s.encode("utf-8") for s in secrets), tuple(s for s in secrets if s)
        self.error: BaseException | None = None
        self.fresh: dict[int, tuple[int, int, tuple]] = {}  # ordinal -> (offset, length, case_facts)
        self.tally = Tally()  # add_answer of every fresh answer
        self._fh = open(journal, "ab")
        self._end = 0  # offset of the next line written (set from tell() after each write)
        self._queue = queue.Queue(maxsize=self.BATCH)
        self._closed = threading.Event()
        self.finished = False  # True once close() saw the thread end: `fresh` and `tally` are whole
        self._thread = threading.Thread(target=self._loop, name="k2vv-recorder", daemon=True)
        self._thread.start()

    def put(self, item: WorkItem, exchange: dict | None, outcome: Outcome, line: str) -> None:
        """Store `exchange` (None: a failure, journaled but never cached) and journal `line`."""
        import queue
        # The last guard of secrecy: whatever a vendor echoed is bytes here, JSON escapes decoded.
        if exchange is not None:
            exchange = decoded_where_secret(exchange, self.secret_texts)
        entry = (item.key, None if exchange is None else redact_bytes(canonical_json(exchange), self.secrets),
                 redact_bytes(line.encode("utf-8", UNPAIRED), self.secrets), item.ordinal, None if exchange is None else outcome)
        while not self._closed.is_set():  # a worker abandoned by a second Ctrl-C finishing late: dropped
            try:
                self._queue.put(entry, timeout=0.2)
                return
            except queue.Full:
                continue

    def _loop(self) -> None:
        import queue
        try:
            while True:
                batch = [self._queue.get()]
                while batch[-1] is not None and len(batch) < self.BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                entries = batch[:-1] if batch[-1] is None else batch
                if entries and self.error is None:
                    self._store(entries)
                if batch[-1] is None:
                    return
        finally:
            self._closed.set()  # whatever ended it, no worker waits on a queue nobody reads

    def _store(self, entries: list) -> None:
        try:
            answers = [(key, value) for key, value, *_ in entries if value is not None]
            if answers:
                self.cache.store_many(answers)
            data = b"".join(line for _, _, line, *_ in entries)
            self._fh.write(data)
            self._fh.flush()
            # where the data landed, even if something else appends to the same file: O_APPEND puts
            # one write at the end, and tell() is just past it
            self._end = self._fh.tell() - len(data)
            for _, _, line, ordinal, outcome in entries:
                if outcome is not None:
                    facts = case_facts(outcome)
                    names = tuple(sys.intern(n) if isinstance(n, str) else n for n in facts.names)
                    self.fresh[ordinal] = (self._end, len(line), facts._replace(names=names))
                    self.tally.add_answer(outcome)
                self._end += len(line)
        except Exception as err:  # noqa: BLE001 - disk full, a read-only cache: stops the run loudly
            self.error = err
            self.on_error(err)

    def close(self) -> None:
        """Store what is queued (at most a batch or two: a Ctrl-C meanwhile is held until it is
        done; a second one leaves it, `finished` stays False), then fsync and close the journal."""
        self._queue.put(None)
        interrupted = None
        while self._thread.is_alive():
            try:
                self._thread.join(0.2)
            except KeyboardInterrupt as err:
                if interrupted:
                    raise
                interrupted = err
        self.finished = True
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        except OSError as err:
            if self.error is None:
                self.error = err
                self.on_error(err)
            with contextlib.suppress(OSError):
                self._fh.close()  # the lines a full disk refused: their answers are cached
        if interrupted:
            raise interrupted


def k2vv_hash(body: dict) -> str:
    """K2VV's `hash` field, as its compute_hash: md5 of the prepared request dumped with sorted keys
    and ensure_ascii=False (so non-ASCII bodies hash as K2VV hashes them)."""
    return hashlib.md5(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8", UNPAIRED)).hexdigest()


# What a journal line of a failed request says about the failure (the rest is the request's own).
FAILURE_FIELDS = ("response", "status", "finish_reason", "tool_calls_valid", "last_run_at", "duration_ms",
                  "attempts", "error_class", "response_class", "calls", "findings")


def result_line(item: WorkItem, outcome: Outcome, extra_body: dict, failure: dict | None = None) -> str:
    """One results.jsonl line: K2VV's fields (same names and meanings), then k2vv's. `request` is
    the very bytes that were sent (canonical JSON), not dumped a second time: the line is the dump
    of the fields before it, those bytes, and the dump of the fields after it.
    `failure`: a journal record whose FAILURE_FIELDS describe this request's last failed attempt."""
    head, tail = result_fields(item, outcome, extra_body)
    if failure:
        tail.update((k, failure[k]) for k in FAILURE_FIELDS if k in failure)
    return (json.dumps(head, ensure_ascii=False)[:-1] + ', "request": ' + item.payload.decode("utf-8") + ", "
            + json.dumps(tail, ensure_ascii=False)[1:] + "\n")


def result_fields(item: WorkItem, outcome: Outcome, extra_body: dict) -> tuple[dict, dict]:
    """The fields of a results line before `request` (K2VV's order: data_index) and after it."""
    response = outcome.completion
    if response is None and outcome.response_class != "unanswered":
        response = {"error_type": outcome.error_class, "error_message": outcome.detail or outcome.error_class,
                    "error": None}
    return {"data_index": item.case.data_index}, {
        "extra_body": extra_body,
        "response": response, "status": outcome.status, "finish_reason": outcome.finish_reason,
        "tool_calls_valid": outcome.tool_calls_valid, "last_run_at": outcome.at,
        "duration_ms": int((outcome.timing or {}).get("total_ms") or 0), "hash": k2vv_hash(item.body),
        "case_id": item.case.case_id, "sample": item.sample, "cache_key": item.key,
        "attempts": outcome.attempts, "error_class": outcome.error_class,
        "response_class": outcome.response_class, "calls": [c.to_json() for c in outcome.calls],
        "findings": list(outcome.findings), "routed_provider": outcome.routed_provider,
        "expected_match": outcome.expected[0], "expected_error": outcome.expected[1],
    }


def utc_now() -> str:
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Runner(Sender):
    """The Sender of a run: the provider's URL and headers, each answer scored, stored in the cache
    and journaled (Recorder), and the run stopped early on a key or endpoint the provider rejects."""

    def __init__(self, provider: Provider, api_key: str | None, cache: ResponseCache, journal: Path, *,
                 extra_body: dict, argument_keys: bool = False, **settings):
        """`settings`: Sender's (concurrency, timeout, retries, progress, notify, ...);
        `argument_keys`: score each answer for argument agreement (a run with a baseline)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                   "User-Agent": f"k2vv/{__version__}", **provider.headers}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        super().__init__(provider.url, headers, tuple(s for s in (api_key,) if s),
                         read_answer=functools.partial(read_answer, provider.api), **settings)
        self.provider, self.cache, self.journal = provider, cache, journal
        self.extra_body, self.argument_keys = extra_body, argument_keys
        self.recorder: Recorder | None = None

    def finish(self, item: WorkItem, fetched: Fetched) -> bool:
        exchange = fetched.exchange
        if exchange is not None:
            exchange.update(v=CACHE_VERSION, attempts=fetched.attempts, at=utc_now(),
                            endpoint={"url": public_url(self.url), "model": self.provider.model},
                            pace={"limit": int(self.pace.limit), "ceiling": self.pace.ceiling,
                                  "rate_limited": fetched.limited})
            outcome = score_exchange(item.case.body, exchange, parsed=fetched.parsed, case=item.case,
                                     keys=self.argument_keys)
        else:
            outcome = Outcome("truncated" if fetched.error == "truncated" else "failed", error_class=fetched.error,
                              attempts=fetched.attempts, at=utc_now(), detail=fetched.detail)
        self.recorder.put(item, exchange, outcome, result_line(item, outcome, self.extra_body))
        return not outcome.answered and outcome.response_class != "rejected"

    def run(self, items: Iterable[WorkItem], total: int) -> RunState:
        """Sender.run, with the Recorder that stores and journals what the workers fetched."""
        self.recorder = Recorder(self.cache, self.journal, self._crashed, self.secrets)
        try:
            return super().run(items, total)
        finally:
            self.recorder.close()


# ==== 4. the pipeline of run and score: test set + cache (+ baseline) -> results and summary =====

@dataclass
class Job:
    """Everything `run` and `score` agree on: what is asked of whom, and where it is kept. Cases
    are not held: each pass walks the test set again (flat memory at any size)."""
    provider: Provider
    test_set: TestSet
    limit: int | None
    trials: int
    temperature: float | None
    max_tokens: int | None
    extra_body: dict
    normalize_tool_ids: bool
    settings: dict
    min_f1: float | None
    min_schema: float | None
    cache_dir: Path
    out_dir: Path
    results_path: Path
    summary_path: Path
    frame: tuple = ()
    stream_mode: str = "as-is"  # --stream-mode (DESIGN §11)
    reasoning_history: str = "keep"  # --reasoning-history
    render: Callable[[dict], str] | None = None  # --tokenizer-model's chat template (DESIGN §12)

    def __post_init__(self):
        self.frame = key_frame(self.provider.url, self.provider.public_headers())

    def cases(self, errors: list, share: tuple[int, int] | None = None, ids: list | None = None):
        return self.test_set.cases(errors, self.limit, share, ids)

    def prepare(self, case: Case) -> dict:
        """The body sent for `case`: the chat request, translated when the run speaks another API."""
        body = prepare_variant(prepare_request(case.body, self.provider.model, self.temperature, self.max_tokens,
                                               self.extra_body, self.normalize_tool_ids),
                               self.stream_mode, self.reasoning_history)
        if self.provider.api == "chat":
            return body
        import k2vv_wire
        if self.provider.api == "responses":
            return k2vv_wire.responses_request(body)
        return k2vv_wire.raw_request(body, self.prompt(case, body))

    def prompt(self, case: Case, body: dict) -> str:
        """--use_raw_completions: the line's own `prompt`, else its messages and tools rendered by
        the chat template (as K2VV renders them)."""
        if "prompt" in case.body:
            if not isinstance(case.body["prompt"], str):
                raise InputError(self.test_set.name, case.data_index,
                                 f"`prompt` is {json_type_name(case.body['prompt'])}", "a string")
            return case.body["prompt"]
        if self.render is None:
            raise InputError(self.test_set.name, case.data_index, "no `prompt` to send to /v1/completions",
                             "a `prompt` string, or --tokenizer-model to render one")
        try:
            prompt = self.render(body)
        except (Exception, SystemExit) as err:  # noqa: BLE001 - whatever a model repo's template code raises
            raise InputError(self.test_set.name, case.data_index,
                             f"the chat template cannot render it: {first_line(err)}") from None
        if not isinstance(prompt, str):
            raise InputError(self.test_set.name, case.data_index,
                             f"the chat template rendered {json_type_name(prompt)}, not text")
        return prompt

    def items(self, case: Case, number: int = 0, samples: int | None = None,
              body: dict | None = None) -> list[WorkItem]:
        """The case's prepared request (`body`, when prepared already), one WorkItem per trial (or
        the first `samples`); `number` is the case's place in the test set (from 0)."""
        body = body or self.prepare(case)
        payload = canonical_json(body)
        return [WorkItem(case, sample, body, payload_key(payload, self.frame, sample), payload,
                         number * self.trials + sample)
                for sample in range(self.trials if samples is None else samples)]


def _batched(iterable, size: int):
    batch = []
    for x in iterable:
        batch.append(x)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Baseline:
    """Where the baseline's answers come from: K2VV results (`answers`, by data_index) or another
    provider's cached answers (`job`: its requests for the same test set)."""
    info: dict
    answers: dict | None = None
    job: Job | None = None
    required: bool = False  # a results file named on the command line must match some case
    stats: Counter = field(default_factory=Counter)

    def answer(self, case: Case, exchange: dict | None) -> BaselineAnswer | None:
        """The baseline's answer to `case`; `exchange` is its cached answer when `job` is set."""
        if self.answers is not None:
            return match_k2vv_result(self.answers, case, self.stats)
        if exchange is None:
            return None
        self.stats["matched"] += 1
        return baseline_of(score_exchange(case.body, exchange, keep_completion=False, keys=True))

    def finish(self, cases: int, test_set: str, cache_dir: Path) -> dict:
        """The summary's description of the baseline, once every case was seen."""
        matched = self.stats["matched"]
        if self.answers is not None:
            stats = {"matched": matched, "unmatched": len(self.answers) - matched - self.stats["mismatched"],
                     "mismatched": self.stats["mismatched"]}
            if self.required and not matched:
                raise K2vvError(f"{self.info['name']}: no line matches a case of {test_set} "
                                f"({stats['unmatched']} unknown data_index, {stats['mismatched']} different requests)")
        else:
            stats = {"matched": matched, "unmatched": cases - matched, "mismatched": 0}
            if not matched:
                name = self.info["name"]
                raise K2vvError(f"baseline {name!r} has no cached answers for this test set in {cache_dir}; "
                                f"run `k2vv run --provider {name}` with the same test set and flags first")
        return {**self.info, **stats}


@dataclass
class Fold:
    """What one pass over the test set, or one process's share of it, adds up. Shares merge into
    exactly what a single pass gives: counters add, and the typical temperature's ties go to the
    earliest line, as a single pass's first-seen order does."""
    tally: Tally
    temperatures: dict = field(default_factory=dict)  # temperature -> [requests, first line]
    errors: list = field(default_factory=list)  # InputError, each line's in order
    ids: list | None = None  # (id, line), checked for duplicates once every share is in
    baseline_stats: Counter = field(default_factory=Counter)
    sha256: str | None = None
    damaged: list = field(default_factory=list)

    def merge(self, other: Fold) -> None:
        self.tally.merge(other.tally)
        for temperature, (count, line) in other.temperatures.items():
            mine = self.temperatures.setdefault(temperature, [0, line])
            mine[0], mine[1] = mine[0] + count, min(mine[1], line)
        self.errors += other.errors
        self.ids = None if self.ids is None else self.ids + (other.ids or [])
        self.baseline_stats.update(other.baseline_stats)
        if other.sha256 != self.sha256:
            self.sha256 = "changed"
        self.damaged += other.damaged

    def typical_temperature(self):
        if not self.temperatures:
            return None
        return min(self.temperatures.items(), key=lambda kv: (-kv[1][0], kv[1][1]))[0]


def fold_answers(job: Job, cache: ResponseCache, baseline: Baseline | None = None, results=None,
                 journal: JournalReader | None = None, processes: int = 1) -> dict:
    """summary.json from one pass over the test set: each batch of cases is prepared and keyed,
    its answers read from the cache with one SELECT, scored, folded into a Tally and forgotten, so
    memory stays flat at any size; `run` and `score` both end here, so they agree byte for byte.
    With `results` (a text file), each (case, trial) also gets its results.jsonl line: from the
    `journal` for an answer fetched in this run (neither keyed, read, scored nor dumped again) or
    for a request with no answer (its latest failure), else written here. `processes` > 1 (no
    results): shares of the test set are folded by forked processes and merged. Bad test-set
    lines raise at the end."""
    if processes > 1 and results is None:
        fold = fold_in_processes(job, cache, baseline, processes)
    else:
        fold = fold_share(job, cache, baseline, results, journal)
    errors = fold.errors
    if fold.ids is not None:
        seen = {}
        for own_id, number in sorted(fold.ids, key=lambda pair: pair[1]):
            first = seen.setdefault(own_id, number)
            if first != number:
                errors.append(duplicate_id(job.test_set.name, number, own_id, first))
    if errors:
        raise InputErrors(sorted(errors, key=lambda err: err.line))
    tally = fold.tally
    baseline_info = baseline.finish(tally.cases, job.test_set.name, job.cache_dir) if baseline else None
    info = {"provider": job.provider.name, "base_url": public_url(job.provider.base_url),
            "model": job.provider.model, "dataset": job.test_set.name, "dataset_sha256": job.test_set.sha256,
            "cases": tally.cases, "settings": job.settings}
    return tally.summary(thresholds=default_thresholds(fold.typical_temperature(), job.min_f1, job.min_schema),
                         info=info, baseline_info=baseline_info)


def fold_share(job: Job, cache: ResponseCache, baseline: Baseline | None = None, results=None,
               journal: JournalReader | None = None, share: tuple[int, int] | None = None) -> Fold:
    """The pass itself (see fold_answers), over the whole test set or one `share` of it."""
    fold = Fold(Tally(job.trials, with_baseline=baseline is not None), ids=[] if share else None)
    keep = results is not None
    fresh = journal.fresh if journal else {}
    trials = job.trials
    if baseline is not None:
        baseline.stats = fold.baseline_stats
    for batch in _batched(enumerate(job.cases(fold.errors, share, fold.ids)), FOLD_BATCH):
        bodies = [job.prepare(case) for _, case in batch]
        items = [None if all(n * trials + t in fresh for t in range(trials)) else job.items(case, n, body=body)
                 for (n, case), body in zip(batch, bodies)]
        keys = [it.key for its in items if its for it in its if it.ordinal not in fresh]
        own = len(keys)
        if baseline is not None and baseline.job is not None:
            keys += [baseline.job.items(case, samples=1)[0].key for _, case in batch]
        found = list(cache.get_each(keys))
        answers, base_answers = iter(found[:own]), iter(found[own:])  # the baseline provider's, if any
        for (n, case), body, its in zip(batch, bodies, items):
            facts = []
            for t in range(trials):
                ordinal = n * trials + t
                if ordinal in fresh:  # its other counters are in journal.tally already
                    fact, line = journal.answer(ordinal)
                else:
                    item = its[t]
                    outcome = score_exchange(case.body, next(answers), keep, case=case, keys=baseline is not None)
                    fold.tally.add_answer(outcome)
                    fact = case_facts(outcome)
                    if keep:
                        failure = journal.failure(item.key) if journal and outcome.response_class == "unanswered" else None
                        line = result_line(item, outcome, job.extra_body, failure)
                if keep:
                    results.write(line)
                facts.append(fact)
            temperature = body.get("temperature")
            if isinstance(temperature, (int, float)):
                fold.temperatures.setdefault(temperature, [0, case.data_index])[0] += trials
            base = None
            if baseline is not None:
                base = baseline.answer(case, next(base_answers, None))
            fold.tally.add_case(facts, base, case)
    if journal is not None and journal.tally is not None:
        fold.tally.merge(journal.tally)
    fold.sha256 = job.test_set.sha256
    return fold


def score_processes(flag: int | None, test_set: TestSet) -> int:
    """--jobs, else one process per usable CPU (at most 8) for a test set of PARALLEL_MIN_BYTES or
    more, where Linux can fork: on 2 cores, `score` of 100,000 answers takes half the time."""
    import multiprocessing
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if flag:
        return flag
    if test_set.size < PARALLEL_MIN_BYTES or not hasattr(os, "sched_getaffinity") or threading.active_count() > 1:
        return 1  # (a caller running threads, e.g. k2vv inside a server, is not forked unasked)
    return max(1, min(8, len(os.sched_getaffinity(0))))


def fold_in_processes(job: Job, cache: ResponseCache, baseline: Baseline | None, processes: int) -> Fold:
    """fold_share in `processes` forked processes, one share each, merged here. Each opens its
    own connection to the cache (never one inherited across fork); a bad line, a changed file or
    cache damage comes back as data; a process that dies is an error, never a partial summary."""
    import multiprocessing
    context = multiprocessing.get_context("fork")
    cache.disconnect()
    workers = []
    try:
        for rank in range(processes):
            receive, send = context.Pipe(duplex=False)
            worker = context.Process(target=_fold_worker, args=(send, job, cache.path, baseline, (rank, processes)),
                                     daemon=True, name=f"k2vv-score-{rank}")
            try:
                worker.start()
            except OSError as err:  # out of processes or memory: say so, the user can pass --jobs 1
                raise K2vvError(f"cannot start a scoring process ({err.strerror or err}); run again with --jobs 1") \
                    from None
            finally:
                send.close()
            workers.append((worker, receive))
        folds = []
        for worker, receive in workers:
            try:
                status, value = receive.recv()
            except EOFError:
                worker.join()
                raise K2vvError(f"a scoring process ended without its share (exit code {worker.exitcode}); "
                                "run again with --jobs 1") from None
            if status != "ok":
                raise value
            folds.append(value)
    finally:
        for worker, receive in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()
            receive.close()
    fold = folds[0]
    for other in folds[1:]:
        fold.merge(other)
    if fold.sha256 == "changed":
        raise test_set_changed(job.test_set.name)
    job.test_set.sha256 = fold.sha256
    if baseline is not None:
        baseline.stats = fold.baseline_stats
    cache.damaged += fold.damaged
    return fold


def _fold_worker(send, job: Job, cache_dir: Path, baseline: Baseline | None, share: tuple[int, int]) -> None:
    """One forked process of fold_in_processes: its Fold, or the error that stopped it, down `send`."""
    try:
        with open_cache(cache_dir, readonly=True) as cache:
            fold = fold_share(job, cache, baseline, share=share)
            fold.damaged = cache.damaged
        send.send(("ok", fold))
    except (K2vvError, CacheUnusable, ProviderError) as err:
        with contextlib.suppress(OSError):  # the parent is gone (killed): nobody to tell
            send.send(("error", err))
    except KeyboardInterrupt:
        pass  # the parent was interrupted too, and says so
    except BaseException:  # noqa: BLE001 - a bug: its traceback, in the parent's error
        import traceback
        with contextlib.suppress(OSError):
            send.send(("error", RuntimeError("a scoring process failed:\n" + traceback.format_exc())))
    finally:
        send.close()


class JournalReader:
    """What results.jsonl takes from the journal instead of recomputing it: the line the runner
    wrote for each answer fetched in this run (`fresh`, Recorder.fresh: ordinal -> offset, length
    and case_facts; its other counters in `tally`), and the newest line of each request that failed (what results.jsonl reports for a
    request with no answer; K2VV dedups the same way). Only offsets are read from the file, so a
    long journal costs no memory. Only lines holding the bytes `"status": "failed"` (json.dumps writes
    a failed line's status exactly so) are parsed, and the parsed fields decide: success lines are
    skipped unparsed, and so are lines a rewrite wrote for requests never sent (`unanswered`)."""

    def __init__(self, path: Path, recorder: Recorder | None = None):
        self.fresh = recorder.fresh if recorder else {}
        self.tally = recorder.tally if recorder else None
        self.failures: dict[str, int] = {}
        self._fh = open(path, "rb") if path.exists() else None
        offset = 0
        for raw in self._fh or ():
            if b'"status": "failed"' in raw:  # necessary, not sufficient: the parsed line decides
                try:
                    rec = read_json(raw)
                except (ValueError, UnicodeDecodeError):
                    rec = None  # a line cut by a crash: the cache has what matters
                if isinstance(rec, dict) and rec.get("status") == "failed" \
                        and rec.get("response_class") != "unanswered" and isinstance(rec.get("cache_key"), str):
                    self.failures[rec["cache_key"]] = offset
            offset += len(raw)

    def answer(self, ordinal: int) -> tuple[tuple, str]:
        """(case_facts, results line) of an answer fetched in this run."""
        offset, length, facts = self.fresh[ordinal]
        self._fh.seek(offset)
        return facts, self._fh.read(length).decode("utf-8")

    def failure(self, key: str) -> dict | None:
        offset = self.failures.get(key)
        if offset is None:
            return None
        self._fh.seek(offset)
        return json.loads(self._fh.readline())

    def close(self) -> None:
        if self._fh:
            self._fh.close()


def write_results(job: Job, cache: ResponseCache, baseline: Baseline | None,
                  recorder: Recorder | None = None) -> dict:
    """The last pass of `run`: results.jsonl rewritten once, in test-set order, one line per
    (case, trial); returns the summary. `recorder`: the one of the run that just ended."""
    journal = JournalReader(job.results_path, recorder)
    tmp = job.results_path.with_name(job.results_path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", errors=UNPAIRED) as out:
            summary = fold_answers(job, cache, baseline, out, journal)
        os.replace(tmp, job.results_path)
    finally:
        journal.close()
        tmp.unlink(missing_ok=True)
    return summary


def count_items(job: Job, cache: ResponseCache | None = None) -> tuple[int, bytearray | None]:
    """The first pass of `run`: check every line, so one bad line stops the run before anything is
    sent; (how many (case, trial) items there are, which of them `cache` has no usable answer for:
    1 at the item's ordinal, or None without a cache or with an empty one: all of them)."""
    errors, cases = [], 0
    misses = bytearray() if cache is not None and not cache.empty() else None  # an empty cache misses all
    for batch in _batched(enumerate(job.cases(errors)), SEND_BATCH):
        cases += len(batch)
        if errors:
            continue
        if misses is not None:
            misses += bytes(exchange is None for exchange in
                            cache.get_each([it.key for n, case in batch for it in job.items(case, n)]))
        elif job.provider.api == "completions":  # a line may lack its prompt or fail the template: say so now
            for _, case in batch:
                job.prepare(case)
    if errors:
        raise InputErrors(errors)
    if not cases:
        raise K2vvError(f"{job.test_set.name}: no cases (no line that is not blank); nothing was sent")
    return cases * job.trials, misses


def cache_misses(job: Job, runner: Runner, checked: int, misses: bytearray | None):
    """The second pass of `run`: the items the first pass found no usable cached answer for (a
    damaged entry is not usable; `misses` None: every item), the first of identical bodies only,
    found a batch at a time as the runner takes them, so sending starts at once and no request body
    is held longer than it is queued or in flight. A case with nothing to send is not prepared."""
    if misses is not None and not any(misses):
        runner.skipped(cached=True, count=checked)
        return
    seen, errors, ordinal, trials = set(), [], 0, job.trials
    for batch in _batched(enumerate(job.cases(errors)), SEND_BATCH):
        ordinal += len(batch) * trials
        if errors or ordinal > checked:  # lines the check pass did not see: the file changed since
            raise test_set_changed(job.test_set.name)
        for n, case in batch:
            wanted = [t for t in range(trials) if misses is None or misses[n * trials + t]]
            runner.skipped(cached=True, count=trials - len(wanted))
            for item in job.items(case, n, samples=wanted[-1] + 1) if wanted else ():
                if item.sample not in wanted:
                    continue
                if item.key in seen:  # identical bodies share one answer: send each key once
                    runner.skipped(cached=False)
                else:
                    seen.add(item.key)
                    yield item


def report_examples(results_path: Path) -> dict:
    """The first example of each failure class in a run's results.jsonl, {} when it has none."""
    from k2vv_report import failure_examples
    try:
        with open(results_path, encoding="utf-8", errors="replace") as fh:
            return failure_examples(results_records(fh))
    except FileNotFoundError:
        return {}


def read_probe_json(run: Path) -> dict | None:
    """The run directory's probe.json (written by `k2vv probe`), None when it has none or it does not parse."""
    try:
        probe = read_json((run / "probe.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return probe if isinstance(probe, dict) else None


def write_report(run_dirs: list[Path], out_dir: Path) -> dict:
    """Read each run's summary.json (+ results.jsonl for examples), write report.{json,md,html}."""
    from k2vv_report import build_report, render_report_html, render_report_md
    entries = []
    for run in run_dirs:
        path = run / "summary.json"
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise K2vvError(f"{path}: cannot read ({err.strerror or err}); is {run} a k2vv run directory?") from None
        except ValueError as err:
            raise K2vvError(f"{path}: not JSON ({err})") from None
        if not isinstance(summary, dict) or not isinstance(summary.get("k2vv"), dict):
            raise K2vvError(f"{path}: not a k2vv summary.json (expected the shape of schemas/summary.json)")
        entries.append({"summary": summary, "examples": report_examples(run / "results.jsonl")})
        probe = read_probe_json(run)
        if probe is not None:
            entries[-1]["probes"] = probe
    if not entries:
        raise K2vvError("no runs to report: pass run directories (each with a summary.json) or run some first")
    names = {e["summary"]["baseline"]["name"] for e in entries if e["summary"].get("baseline")}
    baseline = names.pop() if len(names) == 1 else None
    first = entries[0]["summary"]["k2vv"]
    generated = {"k2vv_version": __version__, "dataset": first["dataset"], "dataset_sha256": first["dataset_sha256"]}
    try:
        report = build_report(entries, baseline, generated)
    except ValueError as err:
        raise K2vvError(f"cannot compare these runs: {err}") from None
    write_json_atomic(out_dir / "report.json", report)
    for name, render in (("report.md", render_report_md), ("report.html", render_report_html)):
        write_text_atomic(out_dir / name, render(report))
    return report


# ---- 4c. --stream-mode both: each case sent both ways, scored each way, the cases that diverge -------

MODE_METRICS = ("success_count", "failure_count", "finish_tool_calls", "successful_tool_call_count",
                "schema_accuracy", "schema_accuracy_ci")


def mode_jobs(job: Job) -> tuple[Job, ...]:
    """The jobs a run sends: the job itself, or with --stream-mode both its non-stream twin (whose
    answers make results.jsonl and the summary's top level) and its stream twin."""
    if job.stream_mode != "both":
        return (job,)
    return dataclasses.replace(job, stream_mode="non-stream"), dataclasses.replace(job, stream_mode="stream")


def count_mode_items(job: Job, cache: ResponseCache | None = None) -> tuple[list, int]:
    """count_items of each job mode_jobs gives: ([(items, misses) per job], cached over all)."""
    counts = [count_items(j, cache) for j in mode_jobs(job)]
    return counts, sum(total - sum(misses) for total, misses in counts if misses is not None)


def mode_misses(job: Job, runner: Runner, counts: list):
    for one, (checked, misses) in zip(mode_jobs(job), counts):
        yield from cache_misses(one, runner, checked, misses)


def divergent_cases(stream_job: Job, plain_job: Job, cache: ResponseCache) -> list[str]:
    """Case ids (test-set order) answered both ways whose trigger, tool names or validity differ
    between the stream and the non-stream answer (any trial); a case not answered both ways cannot
    diverge. From the cache alone, so `run` and `score` agree."""
    out, errors = [], []
    for batch in _batched(enumerate(plain_job.cases(errors)), FOLD_BATCH):
        pairs = [(case, a, b) for n, case in batch
                 for a, b in zip(stream_job.items(case, n), plain_job.items(case, n))]
        streamed = cache.get_each([a.key for _, a, _ in pairs])
        plain = cache.get_each([b.key for _, _, b in pairs])
        for (case, a, b), ea, eb in zip(pairs, streamed, plain):
            if ea is None or eb is None:
                continue
            oa, ob = score_exchange(a.body, ea, keep_completion=False), score_exchange(b.body, eb, keep_completion=False)
            if oa.answered and ob.answered and (oa.triggered, sorted(map(str, oa.names)), oa.tool_calls_valid) \
                    != (ob.triggered, sorted(map(str, ob.names)), ob.tool_calls_valid) \
                    and (not out or out[-1] != case.case_id):
                out.append(case.case_id)
    if errors:
        raise InputErrors(errors)
    return out


def with_modes(summary: dict, job: Job, cache: ResponseCache, baseline_again: Callable[[], Baseline | None]) -> dict:
    """The summary of a --stream-mode both job (the non-stream answers' summary) with its `modes`
    block: each mode's metrics and the cases that diverge (`baseline_again`: a fresh Baseline for the
    stream fold). Other jobs' summaries are returned as they are."""
    if job.stream_mode != "both":
        return summary
    plain_job, stream_job = mode_jobs(job)
    streamed = fold_answers(stream_job, cache, baseline_again())

    def metrics(one: dict) -> dict:
        return dict({k: one[k] for k in MODE_METRICS}, tool_call_f1=(one.get("baseline") or {}).get("f1"))
    divergent = divergent_cases(stream_job, plain_job, cache)
    return dict(summary, modes={"stream": metrics(streamed), "non_stream": metrics(summary),
                                "divergent": divergent[:LISTED], "divergent_count": len(divergent)})


# ---- 4b. probes: the bundled pack through the runner, each probe judged by its rule (DESIGN §11) ----

PROBE_PACK = "fixtures/probes.jsonl"


def load_probe_pack(path: str | None = None) -> list[dict]:
    """The probe pack (the bundled one unless `path`), every line checked before anything is sent."""
    name = path or PROBE_PACK
    try:
        raw = resource(PROBE_PACK) if path is None else _read_bytes(path)
    except OSError as err:
        raise K2vvError(f"{name}: cannot read ({err.strerror or err})") from None
    probes, problems = [], []
    for number, line in enumerate(raw.decode("utf-8", UNPAIRED).splitlines(), 1):
        if not line.strip():
            continue
        try:
            probe = read_json(line)
        except ValueError as err:
            problems.append(f"{name}:{number}: not JSON ({err})")
            continue
        problems += probe_problems(probe, number, name)
        probes.append(probe)
    if problems or not probes:
        raise K2vvError("; ".join(problems) or f"{name}: no probes")
    return probes


def probe_items(job: Job, probes: list[dict]) -> list[list[WorkItem]]:
    """Each probe's requests as WorkItems, prepared and keyed like any case (A first, then B)."""
    groups, number = [], 0
    for probe in probes:
        group = []
        for label, body in zip("ab", probe["requests"]):
            group.append(job.items(Case(number + 1, f"{probe['name']}/{label}", body), number, samples=1)[0])
            number += 1
        groups.append(group)
    return groups


def send_probes(groups: list[list[WorkItem]], cache: ResponseCache, runner: Runner, refresh: bool) -> None:
    """Send the probe requests the cache does not answer (identical bodies once)."""
    flat = [item for group in groups for item in group]
    found = [None] * len(flat) if refresh else cache.get_each([item.key for item in flat])
    todo, seen = [], set()
    for item, exchange in zip(flat, found):
        if exchange is not None:
            runner.skipped(cached=True)
        elif item.key in seen:
            runner.skipped(cached=False)
        else:
            seen.add(item.key)
            todo.append(item)
    runner.run(iter(todo), len(flat))


def judge_probes(probes: list[dict], groups: list[list[WorkItem]], cache: ResponseCache,
                 journal: JournalReader | None = None) -> list[dict]:
    """probe.json's `probes`: each probe's rule on its cached answers; a request with none has no
    answer, with the error class of its latest failure in the `journal` when it has one."""
    out = []
    for probe, group in zip(probes, groups):
        answers = []
        for item, exchange in zip(group, cache.get_each([item.key for item in group])):
            failure = journal.failure(item.key) if exchange is None and journal is not None else None
            outcome = Outcome("failed", error_class=failure.get("error_class")) if isinstance(failure, dict) \
                else score_exchange(item.body, exchange)
            answers.append(probe_answer(outcome))
        passed, why = judge_probe(probe["rule"], [item.body for item in group], answers)
        answer = "; ".join(f"{label}: {describe_answer(a)}" for label, a in zip("AB", answers)) \
            if len(answers) > 1 else describe_answer(answers[0])
        out.append({"name": probe["name"], "passed": passed, "rule": probe["rule"], "answer": answer, "why": why})
    return out


# ==== 5. CLI ==========================================================================================

# ---- 5a. one run: progress and summary ------------------------------------------------------------

def terminal_width() -> int:
    import shutil
    return max(40, min(shutil.get_terminal_size((80, 24)).columns, 160))


# ---- 5b. commands -------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "provider"


def _extra_body_arg(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = read_json(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise K2vvError(f"--extra-body is not JSON: {err.msg} (column {err.colno}) "
                        "(expected an object such as '{\"top_k\": 1}')") from None
    except (ValueError, _NonStandard) as err:
        raise K2vvError(f"--extra-body is not standard JSON: {err}") from None
    if not isinstance(value, dict):
        raise K2vvError(f"--extra-body is {json_type_name(value)} (expected a JSON object)")
    owned = sorted(k for k in value if k in CASE_KEYS)
    if owned:
        raise K2vvError(f"--extra-body sets {', '.join(owned)}, which each test-set line brings itself "
                        "(extra_body adds to every request; it cannot replace the cases)")
    return value


def resolve_provider_args(args) -> Provider:
    """--provider NAME (with --base-url/--model overriding it), or ad hoc --base-url + --model."""
    if args.provider:
        provider = resolve_provider(args.provider, args.providers)
        if args.base_url:
            provider.base_url = args.base_url
        if args.model:
            provider.model = args.model
        check_base_url(provider.base_url, "--base-url" if args.base_url else f"provider {provider.name!r} base_url")
        return provider
    if args.base_url and args.model:
        parts = urllib.parse.urlsplit(check_base_url(args.base_url, "--base-url"))
        name = parts.hostname + (f"_{parts.port}" if parts.port else "")  # never the user:password@ part
        return Provider(name=_slug(name), base_url=args.base_url, model=args.model,
                        api_key_env="OPENAI_API_KEY", api_key_required=False, source="command line")
    raise K2vvError("choose a provider: --provider NAME (see `k2vv providers`) or --base-url URL --model MODEL")


def chat_template(model: str) -> Callable[[dict], str]:
    """A renderer of a prepared chat body into the prompt K2VV sends with --use_raw_completions:
    --tokenizer-model's chat template (a directory, or a name transformers can load; loaded with
    trust_remote_code, as K2VV does: the Kimi tokenizer needs its repository's code)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # not its advice about PyTorch on our stderr
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise K2vvError("--tokenizer-model renders prompts with transformers, which is not installed: "
                        "pip install 'k2vv[raw]' (the pyz never carries it), or give each test-set line a `prompt`"
                        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=True)
    except (Exception, SystemExit) as err:  # noqa: BLE001 - OSError, ValueError, a repository's code
        raise K2vvError(f"--tokenizer-model {model}: cannot load it ({first_line(err)})") from None
    if not getattr(tokenizer, "chat_template", None):
        raise K2vvError(f"--tokenizer-model {model} has no chat template to render prompts with")
    try:  # what every line needs (jinja2, a template that parses) fails here, once, not at line 1
        tokenizer.apply_chat_template([{"role": "user", "content": "k2vv"}], tokenize=False, add_generation_prompt=True)
    except (Exception, SystemExit) as err:  # noqa: BLE001 - ImportError, jinja2's errors, a repository's code
        raise K2vvError(f"--tokenizer-model {model}: cannot render its chat template ({first_line(err)})") from None
    return lambda body: tokenizer.apply_chat_template(body["messages"], tools=body.get("tools") or None,
                                                      tokenize=False, add_generation_prompt=True)


def first_line(err: BaseException) -> str:
    """An exception's first line, at most 200 characters (its type when it says nothing)."""
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def run_api(args) -> str:
    """The API a run speaks: --api, or K2VV's --use_raw_completions; --tokenizer-model only with the latter."""
    api = getattr(args, "api", None) or "chat"
    if getattr(args, "use_raw_completions", False):
        if api not in ("chat", "completions"):
            raise K2vvError(f"--use_raw_completions sends /v1/completions; --api {api} another endpoint: choose one")
        api = "completions"
    if getattr(args, "tokenizer_model", None) and api != "completions":
        raise K2vvError("--tokenizer-model renders prompts for raw completions: add --use_raw_completions")
    return api


def build_job(args, provider: Provider | None = None, test_set: TestSet | None = None,
              render: Callable[[dict], str] | None = None) -> Job:
    """Resolve flags, provider entry and test set into a Job; checks the flags before any effect
    (the test set's lines are checked by the first pass over them). `render`: the chat template
    already loaded for --tokenizer-model (a baseline's job shares the run's)."""
    api = run_api(args)
    provider = dataclasses.replace(provider or resolve_provider_args(args), api=api)
    test_set = test_set or load_test_set(args.dataset)
    temperature = args.temperature if args.temperature is not None else provider.temperature
    max_tokens = args.max_tokens if args.max_tokens is not None else provider.max_tokens
    extra_body = deep_merge(provider.extra_body or {}, _extra_body_arg(args.extra_body))
    out_dir = Path(args.out) if args.out else \
        Path("runs") / f"{_slug(provider.name)}-{_slug(provider.model)}{'' if api == 'chat' else '-' + api}"
    settings = {"temperature": temperature, "max_tokens": max_tokens, "extra_body": extra_body,
                "trials": args.trials, "limit": args.limit, "normalize_tool_ids": bool(args.normalize_tool_ids),
                "headers": sorted(provider.public_headers())}
    stream_mode = getattr(args, "stream_mode", None) or "as-is"
    reasoning_history = getattr(args, "reasoning_history", None) or "keep"
    if stream_mode != "as-is":  # named only when set, so the summaries of earlier runs keep their bytes
        settings["stream_mode"] = stream_mode
    if reasoning_history != "keep":
        settings["reasoning_history"] = reasoning_history
    if api != "chat":
        settings["api"] = api
    tokenizer = getattr(args, "tokenizer_model", None)
    return Job(provider, test_set, args.limit or None, args.trials, temperature, max_tokens, extra_body,
               bool(args.normalize_tool_ids), settings, args.min_f1, args.min_schema_accuracy,
               default_cache_dir(args.cache), out_dir,
               Path(args.output) if args.output else out_dir / "results.jsonl",
               Path(args.summary) if args.summary else out_dir / "summary.json",
               stream_mode=stream_mode, reasoning_history=reasoning_history,
               render=render or (chat_template(tokenizer) if tokenizer else None))


def resolve_baseline(args, job: Job) -> Baseline | None:
    """--baseline NAME | FILE | RUN_DIR | official[:NAME], resolved before anything is read or sent."""
    spec = args.baseline
    if not spec:
        return None
    if spec == "official" or spec.startswith("official:"):
        test_set = job.test_set
        member = pick_official_results(test_set.k2vv_results, job.provider.model, spec.partition(":")[2] or None,
                                       test_set.name)
        answers = k2vv_result_answers(read_tar_member(test_set.archive, member), f"{test_set.archive}:{member}")
        return Baseline({"name": "official", "source": "k2vv results in the test-set archive", "file": member},
                        answers=answers, required=True)
    if os.sep not in spec and (spec in known_providers(args.providers) or spec.startswith("openrouter:")):
        base_job = build_job(args, resolve_provider(spec, args.providers), job.test_set, job.render)
        return Baseline({"name": spec, "source": "cache"}, job=base_job)  # a name wins over a directory
    results = os.path.join(spec, "results.jsonl") if os.path.isdir(spec) else spec
    if os.path.isdir(spec) and not os.path.exists(results):
        raise K2vvError(f"--baseline {spec}: a directory without results.jsonl (expected a k2vv or K2VV run directory)")
    if os.path.exists(results):
        with open(results, encoding="utf-8", errors="replace") as fh:
            answers = k2vv_result_answers(fh, results)
        name = os.path.basename(os.path.normpath(spec)) if os.path.isdir(spec) else os.path.basename(spec)
        return Baseline({"name": name, "source": "run directory" if os.path.isdir(spec) else "k2vv results file",
                         "file": results}, answers=answers, required=True)
    base_job = build_job(args, resolve_provider(spec, args.providers), job.test_set, job.render)
    return Baseline({"name": spec, "source": "cache"}, job=base_job)


def _report_damage(cache: ResponseCache) -> None:
    if cache.damaged:
        print(f"k2vv: {len(cache.damaged)} damaged cache entries (re-fetched by the next run): "
              + "; ".join(cache.damaged[:5]), file=sys.stderr)


def _emit(args, summary: dict) -> None:
    from k2vv_report import render_summary
    print(json.dumps(summary, indent=2, ensure_ascii=False) if args.json else render_summary(summary, terminal_width()))
    routing = summary.get("routing") or {}
    if routing.get("mixed"):
        print(f"k2vv: warning: one run, several upstream providers ({', '.join(sorted(routing['providers']))}): "
              "a gateway spread it; pin one (OpenRouter: provider.only, allow_fallbacks = false)", file=sys.stderr)


def _progress_printer(stream=None):
    """A progress callback: a redrawn line on a terminal, a plain line every 10 s otherwise."""
    from k2vv_report import render_progress
    stream = stream or sys.stderr
    tty = stream.isatty()
    last = [0.0]
    lock = threading.Lock()  # workers report from their own threads

    def show(state: RunState, final: bool) -> None:
        now = time.monotonic()
        if not final and now - last[0] < (0.2 if tty else 10.0):
            return
        with lock:
            last[0] = now
            line = render_progress(state, now)
            stream.write(("\r" + line + "\x1b[K" + ("\n" if final else "")) if tty else line + "\n")
            stream.flush()
    return show


def resume_command(argv: list, api_key: str | None) -> str:
    """The command line to run again, quoted: without --api-key and its value, with a URL's
    user:password@ and query removed, and any other argument that holds the key's value with the
    key masked (so the line is still a command). Never prints a secret."""
    import shlex
    kept, skip = [], False
    for arg in argv or []:
        if skip:
            skip = False
        elif arg == "--api-key":
            skip = True
        elif not arg.startswith("--api-key="):
            if re.match(r"(--[\w-]+=)?\w+://", arg):
                flag, _, url = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
                arg = (flag + "=" if flag else "") + public_url(url)
            kept.append(mask_secrets(arg, [api_key]))
    return shlex.join(["k2vv"] + kept)


def crash_report(err: BaseException, secrets: Iterable[str]) -> str:
    """Write the traceback of a bug to a file, secrets masked; return the file's path."""
    import tempfile
    import traceback
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    text = mask_secrets(text, secrets)
    fd, path = tempfile.mkstemp(prefix="k2vv-crash-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as fh:
        fh.write(f"k2vv {__version__} on Python {sys.version.split()[0]}\n{text}")
    return path


def known_secrets(args) -> list[str]:
    """Every value that may be a key: --api-key and every *_API_KEY variable in the environment."""
    found = [getattr(args, "api_key", None)] + [v for k, v in os.environ.items() if k.upper().endswith("_API_KEY")]
    return sorted({s for s in found if s and len(s) >= 4}, key=len, reverse=True)


def holdings(endpoints: Counter) -> str:
    """What a cache holds answers for, in words (for a job that found none)."""
    if not endpoints:
        return "it holds no answers at all"
    named = [f"{url} · {model} ({plural(n, 'answer')})" for (url, model), n in endpoints.most_common(5)
             if url != "?"]
    if not named:
        return "its answers do not record their endpoint (cached by an older k2vv)"
    return ("it holds answers for " + "; ".join(named) + " (same --base-url and --model, then the same "
            "test set and --temperature/--max-tokens/--extra-body/--trials, find them)")


@contextlib.contextmanager
def sigterm_as_interrupt(ignore: bool = False):
    """SIGTERM (a CI timeout, `kill`) handled as Ctrl-C is: stop sending, flush, summarise, exit 130;
    with `ignore`, both wait until the summary is written. Only the main thread can set handlers:
    elsewhere (a caller's thread) this does nothing."""
    import signal
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    handler = signal.SIG_IGN if ignore else interrupt
    old_term = signal.signal(signal.SIGTERM, handler)
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN) if ignore else None
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old_term)
        if old_int is not None:
            signal.signal(signal.SIGINT, old_int)


def check_writable(job: Job) -> None:
    """Every file a run writes can be written, before anything is sent (a summary that cannot be
    written after 4,000 requests is 4,000 requests lost)."""
    import tempfile
    for path, flag in ((job.results_path, "--output"), (job.summary_path, "--summary"), (job.out_dir / "x", "--out")):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".k2vv-write-check-"):
                pass
        except OSError as err:
            raise K2vvError(f"{path.parent}: cannot write there ({err.strerror or err}); choose another {flag} "
                            "(nothing was sent)") from None


def runner_ending(runner: Runner, job: Job, cli_key: str | None, what: str) -> int | None:
    """After the runner: its crash raised (a cache or journal that cannot be written as one line),
    a setup fault printed; the exit code when the command stops here, None when it goes on."""
    import sqlite3
    if isinstance(runner.crash, (OSError, sqlite3.Error)):
        raise K2vvError(f"cannot write the cache or the journal: {runner.crash}")
    if runner.crash is not None:
        raise runner.crash
    if runner.fatal is not None:
        print(f"k2vv: {setup_fault_message(*runner.fatal, job, cli_key)}; stopped after "
              f"{plural(runner.state.sent, 'request')}, nothing was {what}", file=sys.stderr)
        return EXIT_USAGE
    return None


def setup_fault_message(error_class: str, text: str, job: Job, cli_key: str | None) -> str:
    """One line on why the endpoint cannot work, and where to look."""
    url = public_url(job.provider.url)
    host = urllib.parse.urlsplit(url).hostname
    said = f": {vendor_message(text).rstrip('.')}" if text and vendor_message(text) else ""
    key = ("--api-key" if cli_key else f"the environment variable {job.provider.api_key_env}"
           if job.provider.api_key_env else "no key (this provider entry names no api_key_env)")
    if error_class == "setup":
        return (f"requests cannot send to {url}: check --base-url (http:// or https://) and that the API key "
                "has no spaces or line breaks")
    if error_class == "connection_refused":
        return f"nothing is listening at {url} (connection refused): start the server, or check the port"
    if error_class == "dns_error":
        return f"the host {host!r} of {url} does not resolve: check --base-url"
    if error_class == "tls_error":
        return (f"TLS with {url} failed: check https:// vs http://, or give the CA bundle in "
                "REQUESTS_CA_BUNDLE")
    if error_class == "connect_timeout":
        return f"connecting to {url} timed out: check the host, the port and any firewall or proxy"
    if error_class in ("http_401", "http_403"):
        return f"{url} answered HTTP {error_class[5:]} (not authorised){said}: check the key in {key}"
    if error_class == "http_404":
        if re.search(r"\bmodels?\b", said, re.I):
            return f"{url} does not serve model {job.provider.model!r}{said} (check --model)"
        return f"{url} answered HTTP 404 (not found){said}: check --base-url (it should end in /v1)"
    if error_class == "http_402":
        return f"{url} answered HTTP 402 (payment required){said}: check the account's credits"
    if error_class == "http_405":
        return f"{url} answered HTTP 405 (method not allowed){said}: check --base-url (it should end in /v1)"
    return f"{url} failed every first attempt with {error_class}{said}"


def cmd_run(args) -> int:
    from k2vv_report import junit_xml
    job = build_job(args)
    api_key = api_key_for(job.provider, args.api_key)
    concurrency = args.concurrency or job.provider.concurrency or DEFAULT_CONCURRENCY
    timeout = next(t for t in (args.timeout, job.provider.timeout, 600.0) if t is not None)
    baseline = resolve_baseline(args, job)
    with open_cache(job.cache_dir) as cache:
        counts, cached = count_mode_items(job, None if args.refresh else cache)  # a bad line stops here: nothing sent
        total = sum(items for items, _ in counts)
        check_writable(job)
        print(f"k2vv: {job.provider.name} · {public_url(job.provider.url)} · model {job.provider.model}\n"
              f"      {plural(total, 'request')} ({cached} cached, {total - cached} to send) · concurrency "
              f"{concurrency} · timeout {timeout:g} s · writing {job.out_dir}", file=sys.stderr)
        if not api_key and job.provider.api_key_env:
            print(f"k2vv: note: {job.provider.api_key_env} is not set; sending without an API key", file=sys.stderr)
        runner = Runner(job.provider, api_key, cache, job.results_path, concurrency=concurrency, timeout=timeout,
                        retries=args.retries, extra_body=job.extra_body, max_answer_bytes=args.max_answer_bytes,
                        argument_keys=baseline is not None, progress=None if args.quiet else _progress_printer(),
                        notify=lambda text: print(f"\nk2vv: {text}", file=sys.stderr, flush=True))
        interrupted = False
        try:
            with sigterm_as_interrupt():
                runner.run(mode_misses(job, runner, counts), total)
        except KeyboardInterrupt:
            interrupted = True
        _report_damage(cache)
        if runner.state.sent:
            print(f"k2vv: {runner.state.sent} requests sent, {runner.state.cached} answers were cached · "
                  f"{job.provider.name} ({public_url(job.provider.url)}) · concurrency {concurrency}",
                  file=sys.stderr)
        stop = runner_ending(runner, job, args.api_key, "scored")
        if stop is not None:
            return stop
        with sigterm_as_interrupt(ignore=True):  # a second signal must not cut the summary short
            first = mode_jobs(job)[0]  # the job itself, or the non-stream twin of a --stream-mode both job
            summary = write_results(first, cache, baseline, runner.recorder if runner.recorder.finished
                                    and first is job else None)
            summary = with_modes(summary, job, cache, lambda: resolve_baseline(args, job))
            stopped = interrupted or runner.stop.is_set()
            if stopped:
                summary["verdict"] = dict(summary["verdict"], status="incomplete", reasons=[
                    f"interrupted: {summary['success_count']} of {plural(total, 'request')} answered; run the "
                    "same command again to finish (cached answers are not sent again)"])
            write_json_atomic(job.summary_path, summary)
            if args.junit:
                with open(job.results_path, encoding="utf-8", errors=UNPAIRED) as lines:
                    write_text_atomic(Path(args.junit), junit_xml(results_records(lines), f"k2vv.{job.provider.name}"))
    _emit(args, summary)
    if stopped:
        print(f"k2vv: interrupted; answers so far are cached. Resume with: {resume_command(args.argv, api_key)}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if summary["classes"]["responses"]["unanswered"]:
        print(f"k2vv: {summary['classes']['responses']['unanswered']} requests have no answer yet; "
              "run the same command again to retry them", file=sys.stderr)
    return exit_code_of(summary["verdict"])


def cmd_probe(args) -> int:
    """The probe pack against one provider (DESIGN §11): probe.json in the run directory, a table,
    exit 0 when every probe passes, 1 otherwise, 2 on a setup fault."""
    from k2vv_report import render_probes
    probes = load_probe_pack(args.pack)
    job = build_job(args, test_set=load_test_set(None))
    api_key = api_key_for(job.provider, args.api_key)
    concurrency = args.concurrency or job.provider.concurrency or DEFAULT_CONCURRENCY
    timeout = next(t for t in (args.timeout, job.provider.timeout, 600.0) if t is not None)
    with open_cache(job.cache_dir) as cache:
        check_writable(job)
        groups = probe_items(job, probes)
        print(f"k2vv probe: {job.provider.name} · {public_url(job.provider.url)} · model {job.provider.model} · "
              f"{plural(len(probes), 'probe')}, {plural(sum(map(len, groups)), 'request')}", file=sys.stderr)
        runner = Runner(job.provider, api_key, cache, job.out_dir / "probe-results.jsonl", concurrency=concurrency,
                        timeout=timeout, retries=args.retries, extra_body=job.extra_body,
                        max_answer_bytes=args.max_answer_bytes, progress=None if args.quiet else _progress_printer(),
                        notify=lambda text: print(f"\nk2vv: {text}", file=sys.stderr, flush=True))
        try:
            with sigterm_as_interrupt():
                send_probes(groups, cache, runner, args.refresh)
        except KeyboardInterrupt:
            print("k2vv: interrupted; answers so far are cached, run the same command again", file=sys.stderr)
            return EXIT_INTERRUPTED
        _report_damage(cache)
        stop = runner_ending(runner, job, args.api_key, "judged")
        if stop is not None:
            return stop
        journal = JournalReader(job.out_dir / "probe-results.jsonl")
        try:
            judged = judge_probes(probes, groups, cache, journal)
        finally:
            journal.close()
        report = {"provider": job.provider.name, "base_url": public_url(job.provider.url),
                  "model": job.provider.model, "probes": judged}
    write_json_atomic(job.out_dir / "probe.json", report)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else render_probes(report, terminal_width()))
    return EXIT_PASS if all(p["passed"] for p in report["probes"]) else EXIT_FAIL


def cmd_score(args) -> int:
    from k2vv_report import junit_xml
    if args.program:  # a caller's process keeps its own GC settings
        # Scoring allocates millions of short-lived objects (parsed lines, answers, chunks): with the
        # modules frozen out of the collector's sight and gen-0 collections 14x rarer, score 100,000
        # took 0.83-0.91 of the time (BENCHMARKS.md §1) for ~12 MB more at the distinct workload's peak.
        # Not for `run`: no faster there, and its peak RSS is held to 60 MB.
        import gc
        gc.freeze()
        gc.set_threshold(10000, 10, 10)
    job = build_job(args)
    baseline = resolve_baseline(args, job)
    with open_cache(job.cache_dir, readonly=True) as cache:
        first = mode_jobs(job)[0]  # the job itself, or the non-stream twin of a --stream-mode both job
        if args.junit:  # the results lines are needed: one pass in this process, written to memory
            lines = io.StringIO()
            summary = fold_answers(first, cache, baseline, lines)
            write_text_atomic(Path(args.junit), junit_xml(results_records(lines.getvalue().splitlines()),
                                                           f"k2vv.{job.provider.name}"))
        else:
            summary = fold_answers(first, cache, baseline, processes=score_processes(args.jobs, job.test_set))
        summary = with_modes(summary, job, cache, lambda: resolve_baseline(args, job))
        _report_damage(cache)
        if not summary["k2vv"]["cases"]:
            raise K2vvError(f"{job.test_set.name}: no cases (no line that is not blank); nothing to score")
        if not summary["success_count"] + summary["classes"]["responses"]["rejected"]:
            print(f"k2vv: {cache.directory} holds no answer for {public_url(job.provider.url)} · "
                  f"{job.provider.model} with these settings; {holdings(cache.endpoints())}", file=sys.stderr)
    write_json_atomic(job.summary_path, summary)
    _emit(args, summary)
    return exit_code_of(summary["verdict"])


def lint_cases(cases: list, path: str) -> list[tuple[int, str, str, str]]:
    """(line, level, kind, message) for dataset problems: schemas that do not compile or use keywords
    k2vv cannot enforce, drafts, tool-call ids in history, `_input` roles, malformed historical
    arguments, duplicate cases. 'problem' makes calls unscored or replays wrong (exit 1); 'note'
    informs."""
    out = []
    seen = {}
    id_re = re.compile(r"^functions\.[A-Za-z0-9_\-.]+:\d+$")
    for case in cases:
        line = case.data_index
        body_hash = sha256_hex(canonical_json(case.body))
        if body_hash in seen:
            out.append((line, "note", "duplicate case", f"same request as line {seen[body_hash]} (duplicate case)"))
        seen.setdefault(body_hash, line)
        for i, tool in enumerate(case.body.get("tools") or ()):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(fn, dict):
                continue
            where = f"tools[{i}] {fn.get('name')!r}"
            out += [(line, level, kind, f"{where}: {text}") for level, kind, text in lint_schema(fn.get("parameters"))]
        bad_ids = 0
        for j, msg in enumerate(case.body.get("messages") or ()):
            if msg.get("role") == "_input":
                out.append((line, "note", "_input role", f"messages[{j}] role _input (sent as system)"))
            calls = msg.get("tool_calls") if msg.get("role") == "assistant" else None
            for k, call in enumerate(calls if isinstance(calls, list) else ()):
                if not isinstance(call, dict):
                    continue
                if not id_re.match(str(call.get("id", ""))):
                    bad_ids += 1
                fn = call.get("function") if isinstance(call.get("function"), dict) else {}
                args = fn.get("arguments")
                if isinstance(args, str):
                    _, problem = parse_arguments(args)
                    if problem:
                        out.append((line, "problem", "malformed history", f"messages[{j}].tool_calls[{k}].function.arguments: "
                                                     f"{problem[1]} (history the model must read)"))
        if bad_ids:
            out.append((line, "note", "tool-call ids not functions.NAME:IDX", f"{bad_ids} historical tool-call ids not in functions.NAME:IDX form "
                                      "(--normalize-tool-ids rewrites them)"))
    return out


def cmd_lint(args) -> int:
    test_set = load_test_set(args.dataset)
    cases = test_set.all_cases()
    findings = lint_cases(cases, test_set.name)
    problems = [f for f in findings if f[1] == "problem"]
    notes = Counter(f[2] for f in findings if f[1] == "note")
    for line, level, _, message in findings:
        if level == "problem" or args.verbose:
            print(f"{test_set.name}:{line}: {level}: {message}")
    if notes and not args.verbose:
        print(f"{sum(notes.values())} notes (show them with --verbose): " +
              ", ".join(f"{k} ×{n}" for k, n in notes.most_common()))
    distinct = len({sha256_hex(canonical_json(t.get("function", {}).get("parameters"))) for c in cases
                    for t in c.body.get("tools") or () if isinstance(t, dict)})
    print(f"{test_set.name}: {len(cases)} cases, {distinct} distinct tool schemas, "
          f"{plural(len(problems), 'problem')}, sha256 {test_set.sha256}")
    return EXIT_FAIL if problems else EXIT_PASS


def cmd_providers(args) -> int:
    from k2vv_report import render_providers
    rows = []
    for name, (entry, source) in sorted(known_providers(args.providers).items()):
        rows.append(provider_row(name, source, entry))
    rows.append(provider_row("openrouter:<slug>", "preset", PRESETS["openrouter"]))
    print(json.dumps(rows, indent=2) if args.json else render_providers(rows, terminal_width()))
    return EXIT_PASS


def provider_row(name: str, source: str, entry: dict) -> dict:
    env = entry.get("api_key_env")
    required = entry.get("api_key_required", True)
    if env and os.environ.get(env):
        key = "key set"
    elif not required:
        key = "no key needed"
    else:
        key = "key missing" if env else "key missing (the entry names no api_key_env)"
    return {"name": name, "source": source, "base_url": entry.get("base_url", ""), "model": entry.get("model", ""),
            "api_key_env": env, "key": key}


def cmd_diff(args) -> int:
    """Two runs case by case (DESIGN §10): one line per case that differs, then a count by kind;
    exit 0 when nothing differs, 1 otherwise."""
    from k2vv_report import case_label, diff_cases
    sides = [run_results(spec, args.providers) for spec in (args.a, args.b)]
    views = []
    for path in sides:
        with open(path, encoding="utf-8", errors=UNPAIRED) as fh:
            views.append({(rec.get("case_id"), rec.get("sample", 0)): (rec, answer_view(rec))
                          for rec in results_records(fh) if "case_id" in rec})
    mine, theirs = views
    kinds, differing = Counter(), 0
    for key in sorted(set(mine) | set(theirs), key=lambda k: (
            (mine.get(k) or theirs.get(k))[0].get("data_index") or 0, k[1])):
        if key not in mine or key not in theirs:
            rec = (mine.get(key) or theirs.get(key))[0]
            phrases = [f"only in {'A' if key in mine else 'B'}"]
        else:
            rec = mine[key][0]
            phrases = diff_cases(mine[key][1], theirs[key][1])
        if phrases:
            differing += 1
            kinds.update(p.split(":")[0].split(" ")[0] if not p.startswith("only") else "only" for p in phrases)
            print(f"{case_label(rec)}: " + "; ".join(phrases))
    total = len(set(mine) | set(theirs))
    summary = " · ".join(f"{k} {n}" for k, n in kinds.most_common()) or "none"
    print(f"k2vv diff: {differing} of {plural(total, 'case')} differ ({summary}) · A {sides[0]} · B {sides[1]}",
          file=sys.stderr)
    return EXIT_FAIL if differing else EXIT_PASS


def run_results(spec: str, providers_file: str | None) -> Path:
    """The results.jsonl of a run directory, a results file, or a provider's default run directory."""
    path = Path(spec)
    if path.is_dir():
        path = path / "results.jsonl"
    elif not path.exists() and os.sep not in spec:
        provider = resolve_provider(spec, providers_file)
        path = Path("runs") / f"{_slug(provider.name)}-{_slug(provider.model)}" / "results.jsonl"
    if not path.is_file():
        raise K2vvError(f"{spec}: no results.jsonl there (give a run directory, a results file or a provider "
                        "that has been run)")
    return path


def cmd_report(args) -> int:
    from k2vv_report import REPORT_FILES, render_report_table
    runs = [Path(r) for r in args.runs] or sorted(p.parent for p in Path("runs").glob("*/summary.json"))
    report = write_report(runs, Path(args.out))
    print(render_report_table(report, terminal_width()))
    print(f"\nk2vv: wrote {', '.join(str(Path(args.out) / f) for f in REPORT_FILES)}", file=sys.stderr)
    return EXIT_PASS


DEMO_MODEL = "kimi-k2-sim"
# k2vv_sim.PERSONALITIES, named here so `--help` need not import the simulator (a test keeps them equal).
SIM_PERSONALITIES = ("reference", "sloppy", "flaky", "drifting", "ignores_none", "stream_broken", "id_sensitive",
                     "reasoning_sensitive", "raw_tricky")


def is_relevance(case: Case) -> bool:
    """BFCL's relevance category: any call is right (its `expected` is empty, unlike irrelevance's)."""
    category = str((case.meta or {}).get("category", "")) if isinstance(case.meta, dict) else ""
    return "relevance" in category and "irrelevance" not in category


def cmd_demo(args) -> int:
    """Simulated vendors on 127.0.0.1, the bundled test set through each (reference first, as the
    baseline), then the report. Exit 0 when the demo itself worked, whatever the verdicts."""
    import tempfile
    from k2vv_report import render_report_table
    from k2vv_sim import DEMO_PERSONALITIES as PERSONALITIES, SimVendor, answer_key
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = tempfile.mkdtemp(prefix="k2vv-demo-cache-")  # sim ports change per run: nothing to reuse
    # The simulated vendors know each case's expected calls, as a well-trained model would: the
    # reference answers them right, so what the others get wrong is their planted fault alone.
    answers = {answer_key(prepare_request(case.body, DEMO_MODEL)): "any" if is_relevance(case) else case.expected
               for case in load_test_set(None).all_cases() if case.expected is not None}
    vendors = [SimVendor(p, answers=answers).start() for p in PERSONALITIES]
    started = time.monotonic()
    try:
        providers = out / "providers.toml"
        providers.write_text("".join(f'[providers.{v.personality}]\nbase_url = "{v.url}"\nmodel = "{DEMO_MODEL}"\n'
                                     f"api_key_required = false\nconcurrency = 8\ntimeout = 30\n\n" for v in vendors))
        print(f"k2vv demo: {len(vendors)} simulated vendors on 127.0.0.1 ({', '.join(PERSONALITIES)}); "
              f"bundled test set; baseline = reference", file=sys.stderr)
        for vendor in vendors:
            argv = ["run", "--providers", str(providers), "--provider", vendor.personality, "--cache", cache,
                    "--out", str(out / vendor.personality), "--quiet"]
            if args.limit:
                argv += ["--limit", str(args.limit)]
            argv += ["--baseline", "reference"]  # the reference against itself: F1 = 1 by construction
            with contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
            summary = json.loads((out / vendor.personality / "summary.json").read_text())
            retried = sum(n for k, n in summary["attempts"].items() if int(k) > 1)
            print(f"  {vendor.personality:<10} {len(vendor.received):>4} requests received, {retried:>3} answers "
                  f"needed retries, verdict {summary['verdict']['status']}", file=sys.stderr)
            if code not in (EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE):
                raise K2vvError(f"the demo run against '{vendor.personality}' failed (exit {code})")
    finally:
        for vendor in vendors:
            vendor.stop()
        import shutil
        shutil.rmtree(cache, ignore_errors=True)
    report = write_report([out / p for p in PERSONALITIES], out / "report")
    print(render_report_table(report, terminal_width()))
    print(f"\nk2vv demo: done in {time.monotonic() - started:.1f} s; report in "
          f"{out / 'report' / 'report.html'} (and .md, .json); per-vendor runs in {out}/<vendor>/", file=sys.stderr)
    return EXIT_PASS


def cmd_serve_sim(args) -> int:
    from k2vv_sim import serve_sim
    serve_sim(args.personality, args.port, args.host, args.seed)
    return EXIT_PASS


EXAMPLES = {
    "run": "examples:\n  k2vv run --provider moonshot\n  k2vv run samples.jsonl --base-url http://127.0.0.1:8000/v1 "
           "--model kimi-k2 --concurrency 16\n  k2vv run --provider openrouter:fireworks --baseline moonshot",
    "score": "examples:\n  k2vv score --provider moonshot\n  k2vv score samples.jsonl --provider x --cache /mnt/copied-cache "
             "--baseline official",
    "lint": "examples:\n  k2vv lint\n  k2vv lint samples.jsonl --verbose",
    "providers": "examples:\n  k2vv providers\n  k2vv providers --providers ./team-providers.toml",
    "report": "examples:\n  k2vv report                       # every runs/*/ with a summary.json\n"
              "  k2vv report runs/moonshot-kimi-k2-0905-preview runs/fireworks-kimi-k2 --out leaderboard/",
    "demo": "examples:\n  k2vv demo\n  k2vv demo --limit 60 --out /tmp/k2vv-demo",
    "probe": "examples:\n  k2vv probe --provider moonshot\n  k2vv probe --base-url http://127.0.0.1:8000/v1 --model kimi-k2 "
             "--json",
    "diff": "examples:\n  k2vv diff runs/demo/reference runs/demo/drifting\n"
            "  k2vv diff runs/vllm-kimi-k2 runs/vllm-kimi-k2-normalized",
    "serve-sim": "examples:\n  k2vv serve-sim --personality sloppy --port 8000\n"
                 "  k2vv run --base-url http://127.0.0.1:8000/v1 --model any",
}


def _add_job_args(p: argparse.ArgumentParser, network: bool) -> None:
    p.add_argument("file", nargs="?", metavar="FILE", help="test set: .jsonl, .jsonl.gz or K2VV .tar.gz "
                   "(default: the bundled open test set)")
    p.add_argument("--dataset", help="same as FILE")
    p.add_argument("--provider", help="a provider from providers.toml or a preset (see `k2vv providers`)")
    p.add_argument("--providers", metavar="FILE", help="providers file (default: ./k2vv.toml, "
                   "$XDG_CONFIG_HOME/k2vv/providers.toml)")
    p.add_argument("--base-url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", help="model name sent in every request")
    p.add_argument("--temperature", type=float, help="override every request's temperature")
    p.add_argument("--max-tokens", type=int, help="override every request's max_tokens")
    p.add_argument("--extra-body", metavar="JSON", help="JSON object deep-merged into every request")
    p.add_argument("--normalize-tool-ids", action="store_true",
                   help="rewrite historical tool-call ids to functions.NAME:IDX")
    p.add_argument("--stream-mode", choices=STREAM_MODES, default="as-is",
                   help="send each case as its line says (as-is), force stream / non-stream, or both ways "
                   "(the summary's `modes`: each way's metrics, the cases that diverge)")
    p.add_argument("--reasoning-history", choices=REASONING_HISTORY, default="keep",
                   help="strip: remove reasoning_content from historical assistant messages before sending")
    p.add_argument("--api", choices=tuple(APIS), default="chat",
                   help="the endpoint: chat (/chat/completions), responses (/responses), or completions "
                   "(/completions, as --use_raw_completions)")
    p.add_argument("--use_raw_completions", "--use-raw-completions", action="store_true",
                   help="K2VV's raw mode: /v1/completions with the prompt rendered by the chat template, tool "
                   "calls read from Kimi's special tokens")
    p.add_argument("--tokenizer-model", metavar="DIR|NAME",
                   help="whose chat template renders raw prompts (needs pip install 'k2vv[raw]')")
    p.add_argument("--trials", type=int, default=1, metavar="K", help="independent answers per case (pass@k, pass^k)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N cases")
    p.add_argument("--cache", metavar="DIR", help="response cache (default: $K2VV_CACHE or ./.k2vv-cache)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: runs/PROVIDER/)")
    p.add_argument("--output", metavar="FILE", help="results.jsonl path (default: OUT/results.jsonl)")
    p.add_argument("--summary", metavar="FILE", help="summary.json path (default: OUT/summary.json)")
    p.add_argument("--baseline", metavar="NAME|FILE", help="provider name (its cached answers), a K2VV "
                   "results.jsonl, or 'official' (results inside a K2VV .tar.gz)")
    p.add_argument("--min-f1", type=float, help="F1 threshold (default 0.80; 0.73 at temperature >= 1)")
    p.add_argument("--min-schema-accuracy", type=float, help="schema accuracy threshold (default 0.95)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML file: one testcase per case, failed when "
                   "it has a schema failure or no scored answer (for a CI's test view)")
    if not network:
        p.add_argument("--jobs", type=int, metavar="N", help="processes that score shares of the test set "
                       "(default: one per CPU, at most 8, for test sets of 1 MiB or more; 1 = this process only)")
    else:
        p.add_argument("--api-key", help="API key (discouraged: visible in `ps`; use the provider's env variable)")
        p.add_argument("--concurrency", type=int, help="most requests in flight: a ceiling, the pace adapts below it "
                       "(default: provider's or 32)")
        p.add_argument("--timeout", type=float, help="seconds one attempt's whole answer may take: headers, body, "
                       "stream (default 600)")
        p.add_argument("--max-answer-bytes", type=int, default=MAX_ANSWER_BYTES, metavar="N",
                       help="largest answer body held in memory; more is the attempt's failure `too_large` "
                       "(default 16 MiB)")
        p.add_argument("--retries", type=int, default=6, help="retries after the first attempt (default 6)")
        p.add_argument("--incremental", action="store_true", help="accepted for K2VV; k2vv is always incremental")
        p.add_argument("--refresh", action="store_true", help="ignore cached answers and ask again")
        p.add_argument("--quiet", action="store_true", help="no progress lines")


def _add_probe_args(p: argparse.ArgumentParser) -> None:
    """`probe` takes run's endpoint, cache and retry flags; the request flags of a test set do not apply."""
    for flag, kw in (("--provider", {"help": "a provider from providers.toml or a preset (see `k2vv providers`)"}),
                     ("--providers", {"metavar": "FILE", "help": "providers file"}),
                     ("--base-url", {"help": "OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1"}),
                     ("--model", {"help": "model name sent in every request"}),
                     ("--extra-body", {"metavar": "JSON", "help": "JSON object deep-merged into every request"}),
                     ("--cache", {"metavar": "DIR", "help": "response cache (default: $K2VV_CACHE or ./.k2vv-cache)"}),
                     ("--out", {"metavar": "DIR", "help": "run directory for probe.json (default: runs/PROVIDER-MODEL/)"}),
                     ("--api-key", {"help": "API key (discouraged: visible in `ps`; use the provider's env variable)"}),
                     ("--pack", {"metavar": "FILE", "help": "a probe pack (default: the bundled one)"})):
        p.add_argument(flag, **kw)
    p.add_argument("--concurrency", type=int, help="parallel requests (default: provider's or 32)")
    p.add_argument("--timeout", type=float, help="seconds one attempt's whole answer may take (default 600)")
    p.add_argument("--retries", type=int, default=6, help="retries after the first attempt (default 6)")
    p.add_argument("--max-answer-bytes", type=int, default=MAX_ANSWER_BYTES, metavar="N", help=argparse.SUPPRESS)
    p.add_argument("--refresh", action="store_true", help="ignore cached answers and ask again")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--json", action="store_true", help="print probe.json on stdout")
    p.set_defaults(temperature=None, max_tokens=None, normalize_tool_ids=False, trials=1, limit=None, output=None,
                   summary=None, min_f1=None, min_schema_accuracy=None, dataset=None, file=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="k2vv", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="exit codes: 0 pass · 1 fail · 2 usage/input/setup error · "
                                            "3 inconclusive or incomplete · 70 internal error (a bug in k2vv) · "
                                            "130 interrupted")
    parser.add_argument("--version", action="store_true", help="print the version and the bundled dataset's sha256")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, handler, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES.get(name), allow_abbrev=False,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(handler=handler)
        return p

    _add_job_args(add("run", cmd_run, "send the test set to a provider (cache misses only), score, verdict"), True)
    _add_job_args(add("score", cmd_score, "re-score a provider's cached answers offline (never uses the network)"),
                  False)
    lint = add("lint", cmd_lint, "check a test set: JSON, schemas, drafts, history ids, duplicates")
    lint.add_argument("file", nargs="?", metavar="FILE")
    lint.add_argument("--dataset")
    lint.add_argument("--verbose", action="store_true", help="also print notes")
    prov = add("providers", cmd_providers, "list providers and presets, and whether each key variable is set")
    prov.add_argument("--providers", metavar="FILE")
    prov.add_argument("--json", action="store_true")
    rep = add("report", cmd_report, "leaderboard over several runs: terminal table, report.md, report.html, report.json")
    rep.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run directories (default: every runs/*/ with a summary.json)")
    rep.add_argument("--out", default="runs/report", help="where to write the report (default: runs/report)")
    demo = add("demo", cmd_demo, "simulated vendors on 127.0.0.1, the bundled test set through each, a report "
                                 "(no key, no internet)")
    demo.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    demo.add_argument("--limit", type=int, metavar="N", help="only the first N cases")
    probe = add("probe", cmd_probe, "probes a replay cannot see: tool_choice, history ids, "
                                    "stream vs non-stream")
    _add_probe_args(probe)
    diff = add("diff", cmd_diff, "compare two runs case by case: trigger, tool names, class, arguments, findings")
    diff.add_argument("a", metavar="A", help="a run directory, a results.jsonl, or a provider name")
    diff.add_argument("b", metavar="B")
    diff.add_argument("--providers", metavar="FILE")
    sim = add("serve-sim", cmd_serve_sim, "serve one simulated vendor on 127.0.0.1 to test your own pipeline")
    sim.add_argument("--personality", choices=SIM_PERSONALITIES, default="reference")
    sim.add_argument("--port", type=int, default=8000, help="0 picks a free port (default 8000)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    program = argv is None  # k2vv.py or the pyz itself, not a caller's process
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on a usage error
    args.argv, args.program = argv, program
    if args.version:
        try:
            dataset = sha256_hex(resource(BUNDLED_TESTSET))
        except OSError:
            dataset = "missing"
        print(f"k2vv {__version__} (bundled test set sha256 {dataset})")
        return EXIT_PASS
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    if getattr(args, "file", None) and getattr(args, "dataset", None):
        parser.error("give the test set once: FILE or --dataset")
    if hasattr(args, "dataset"):
        args.dataset = args.dataset or args.file
    if getattr(args, "trials", 1) < 1:
        parser.error("--trials must be at least 1")
    if getattr(args, "limit", None) is not None and args.limit < 1:
        parser.error("--limit must be at least 1 (leave it out to send every case)")
    if getattr(args, "concurrency", None) is not None and args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if getattr(args, "jobs", None) is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if getattr(args, "max_answer_bytes", MAX_ANSWER_BYTES) < 1024:
        parser.error("--max-answer-bytes must be at least 1024")
    if getattr(args, "retries", 0) < 0:
        parser.error("--retries must be 0 or more")
    if getattr(args, "timeout", None) is not None and not 0 < args.timeout < math.inf:
        parser.error("--timeout must be a number of seconds above 0")
    if getattr(args, "concurrency", None) is not None and args.concurrency > MAX_CONCURRENCY:
        parser.error(f"--concurrency must be at most {MAX_CONCURRENCY}")
    for flag in ("temperature", "min_f1", "min_schema_accuracy"):
        if getattr(args, flag, None) is not None and not math.isfinite(getattr(args, flag)):
            parser.error(f"--{flag.replace('_', '-')} must be a finite number")
    try:
        return args.handler(args)
    except InputErrors as err:
        print(str(err), file=sys.stderr)
        files = sorted({e.path for e in err.errors})
        print(f"k2vv: {plural(len(err.errors), 'problem')} in {', '.join(files)}; nothing was sent", file=sys.stderr)
        return err.exit_code
    except (K2vvError, CacheUnusable, ProviderError) as err:
        print(f"k2vv: {err}", file=sys.stderr)
        return getattr(err, "exit_code", EXIT_USAGE)
    except KeyboardInterrupt:
        print("k2vv: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_PASS
    except Exception as err:  # noqa: BLE001 - a bug in k2vv: one line, the traceback in a file, exit 70
        secrets = known_secrets(args)
        try:
            where = crash_report(err, secrets)
        except OSError as write_err:
            where = f"(could not be written: {write_err.strerror or write_err})"
        what = mask_secrets(str(err).splitlines()[0][:200] if str(err) else "", secrets)
        print(f"k2vv: internal error (a bug in k2vv, not the provider's fault): {type(err).__name__}"
              f"{': ' + what if what else ''}; traceback in {where}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
