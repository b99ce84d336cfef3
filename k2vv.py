"""k2vv — verify that an OpenAI-compatible provider serves a model's tool calling correctly.

k2vv replays a test set of chat-completions request bodies against a provider, keeps every answer in
a content-addressed cache, and scores trigger agreement with a baseline (`tool_call_f1`) and the
schema validity of tool-call arguments (`schema_accuracy`), with the reason for every failure, stream
conformance findings, latency, usage, and a verdict a CI job can act on.

    k2vv demo                                   # simulated vendors on 127.0.0.1, no key, no internet
    k2vv run --provider moonshot                # the bundled open test set against a provider
    k2vv run FILE --base-url URL --model M      # K2VV's flags work: rename the command and go
    k2vv score --provider moonshot              # re-score the cache offline (never touches the network)

Exit codes: 0 pass (or success) · 1 fail · 2 usage, input or setup error · 3 inconclusive or
incomplete · 130 interrupted (after flushing).

Where k2vv differs from K2VV on purpose (DESIGN §9): a stream cut before `[DONE]` with no
finish_reason is truncated (retried, never scored as `stop`); the standard final usage-only chunk is
read; a tool with `parameters: {}` accepts any object; schemas default to draft-07 and honour
`$schema`, and a schema that does not compile is the dataset's fault (`unscored`), not the provider's;
the cache key covers the URL, the whole prepared body (so `extra_body`) and non-secret headers; the
summary is recomputed from test set + cache on every exit path; retries are capped; the body is sent
as raw JSON; the exit code carries the verdict; F1 and schema_accuracy are computed.
"""
from __future__ import annotations

import sys

if sys.version_info < (3, 10):  # before any import that would die with a traceback on old Pythons
    sys.stderr.write("k2vv: needs Python 3.10 or newer, found %d.%d (%s); run it with python3.10+\n"
                     % (sys.version_info[0], sys.version_info[1], sys.executable))
    sys.exit(2)

import argparse
import copy
import dataclasses
import gzip
import hashlib
import io
import json
import math
import os
import random
import re
import tarfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

__version__ = "0.1.0"
__all__ = [
    "main", "Case", "Parsed", "CallResult", "Outcome", "K2vvError", "InputError", "InputErrors",
    "parse_test_set", "load_test_set", "prepare_request", "cache_key", "parse_exchange",
    "reassemble_stream", "compile_tool_schema", "schema_verdict", "score_exchange", "summarise",
    "load_k2vv_results", "wilson", "bootstrap_f1", "decide_verdict", "open_cache",
]

# ==== 0. constants and errors ==================================================================

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# Statuses worth another attempt (DESIGN §7). 529 is Anthropic-style "overloaded", seen at gateways.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
# Definitive rejections of the request itself: the vendor's answer, cached and scored as `rejected`.
REJECT_STATUSES = frozenset({400, 413, 422})
# Keys a test-set line may carry for k2vv only; never sent (DESIGN §3).
K2VV_ONLY_KEYS = ("id", "expected", "k2vv")
# finish_reason values of the OpenAI API; anything else is a conformance finding.
STANDARD_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
CACHE_VERSION = 1  # of the cached exchange value; another version is cache damage and is refetched
# Response classes that mean "the provider answered" (K2VV status == success).
ANSWERED = frozenset({"valid", "invalid", "empty_tool_calls", "unscored", "no_call"})
TRIGGERED = frozenset({"valid", "invalid", "empty_tool_calls", "unscored"})
RESPONSE_CLASSES = ("valid", "invalid", "empty_tool_calls", "unscored", "no_call",
                    "rejected", "failed", "truncated", "unanswered")
CALL_CLASSES = ("valid", "invalid_json", "non_standard_json", "unknown_tool", "schema_mismatch", "unscored")
DEFAULT_MIN_F1, DEFAULT_MIN_F1_THINKING, DEFAULT_MIN_SCHEMA_ACCURACY = 0.80, 0.73, 0.95  # K2VV README
MIN_COVERAGE = 0.95
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 2000, 20250925  # seed: K2VV's first release date
Z95 = 1.959963984540054

DRAFT07 = "http://json-schema.org/draft-07/schema#"
_DRAFT_OF_SCHEMA_URI = [  # substring of `$schema` -> how k2vv treats it
    ("draft-04", "http://json-schema.org/draft-04/schema#"),
    ("draft-06", "http://json-schema.org/draft-06/schema#"),
    ("draft-07", DRAFT07),
    ("2019-09", "2019-09"),
    ("2020-12", "2020-12"),
]
# Keywords of drafts 2019-09/2020-12 that fastjsonschema silently ignores and draft-07 cannot spell:
# a tool using one is `unscored` (its verdict would be a guess), and `lint` says so.
NOT_ENFORCED_KEYWORDS = ("unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$dynamicAnchor",
                         "$recursiveRef", "$recursiveAnchor", "$anchor", "minContains", "maxContains",
                         "$vocabulary")


class K2vvError(Exception):
    """A problem the user can fix; printed as one line, exit 2, never a traceback."""
    exit_code = EXIT_USAGE


class InputError(K2vvError):
    def __init__(self, path, line, problem, expected=""):
        super().__init__(f"{path}:{line}: {problem}" + (f" (expected {expected})" if expected else ""))
        self.path, self.line, self.problem, self.expected = path, line, problem, expected


class InputErrors(K2vvError):
    """Every bad line of a file at once, so one fix-and-rerun round is enough."""
    def __init__(self, errors: list[InputError]):
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class ProviderError(K2vvError):
    pass


class CacheDamage(Exception):
    """A cached value that does not parse or has another version: reported and refetched."""


# ==== 1. data model ============================================================================

@dataclass(frozen=True, slots=True)
class Case:
    """One test-set line. `body` is the line without k2vv-only keys; `case_id` is its identity."""
    data_index: int
    case_id: str
    body: dict
    expected: Any = None
    meta: Any = None


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


@dataclass(frozen=True, slots=True)
class CallResult:
    name: str | None
    cls: str  # one of CALL_CLASSES
    pointer: str | None = None
    message: str | None = None
    findings: tuple = ()

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
    timing: dict | None = None
    attempts: int = 0
    at: str | None = None
    completion: dict | None = None

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

def canonical_json(obj) -> bytes:
    """Sorted keys, compact, UTF-8: the one byte form k2vv hashes, so equal values hash equal."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_tools(tools, where: str) -> list[str]:
    """Problems with a `tools` array, each naming the path that is wrong."""
    if not isinstance(tools, list):
        return [f"{where} is {_json_type(tools)} (expected an array of tools)"]
    problems = []
    for i, tool in enumerate(tools):
        at = f"{where}[{i}]"
        if not isinstance(tool, dict):
            problems.append(f"{at} is {_json_type(tool)} (expected an object)")
            continue
        if tool.get("type", "function") != "function":
            continue  # builtin tools (e.g. Moonshot's `builtin_function`) are passed through
        fn = tool.get("function")
        if not isinstance(fn, dict):
            problems.append(f"{at}.function is {_json_type(fn)} (expected an object with name and parameters)")
            continue
        if not isinstance(fn.get("name"), str) or not fn.get("name"):
            problems.append(f"{at}.function.name is {_json_type(fn.get('name'))} (expected a non-empty string)")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, (dict, bool)):
            problems.append(f"{at}.function.parameters is {_json_type(params)} (expected a JSON Schema object)")
    return problems


def _json_type(value) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def parse_test_set(lines: Iterable[bytes | str], path: str = "<test set>") -> list[Case]:
    """Cases from K2VV JSONL lines. data_index is the 1-based *physical* line number (blank lines
    count, as in K2VV). Every bad line is collected and raised at once as InputErrors."""
    cases, errors, seen_ids = [], [], {}
    for number, raw in enumerate(lines, 1):
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as err:
            errors.append(InputError(path, number, f"not JSON: {err.msg} at column {err.colno}"))
            continue
        except RecursionError:
            errors.append(InputError(path, number, "nested too deeply to read", "at most ~900 levels"))
            continue
        if not isinstance(line, dict):
            errors.append(InputError(path, number, f"the line is {_json_type(line)}",
                                     "a JSON object: a chat-completions request body"))
            continue
        problems = []
        messages = line.get("messages")
        if not isinstance(messages, list):
            problems.append(f"messages is {'missing' if messages is None else _json_type(messages)}"
                            " (expected an array of messages)")
        else:
            for i, msg in enumerate(messages):
                if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
                    problems.append(f"messages[{i}] has no string role (expected an object with role)")
        if "tools" in line:
            problems += _check_tools(line["tools"], "tools")
        if "id" in line and not isinstance(line["id"], str):
            problems.append(f"id is {_json_type(line['id'])} (expected a string)")
        if "expected" in line and not isinstance(line["expected"], (list, type(None))):
            problems.append(f"expected is {_json_type(line['expected'])} (expected an array of calls)")
        if problems:
            errors.extend(InputError(path, number, p) for p in problems)
            continue
        body = {k: v for k, v in line.items() if k not in K2VV_ONLY_KEYS}
        case_id = line["id"] if isinstance(line.get("id"), str) else sha256_hex(canonical_json(body))
        if "id" in line:
            first = seen_ids.setdefault(case_id, number)
            if first != number:
                errors.append(InputError(path, number, f"id {case_id!r} was already used on line {first}",
                                         "ids unique within a test set"))
                continue
        cases.append(Case(number, case_id, body, line.get("expected"), line.get("k2vv")))
    if errors:
        raise InputErrors(errors)
    return cases


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
                    name = (call.get("function") or {}).get("name", "")
                    new_id = f"functions.{name}:{counter}"
                    counter += 1
                    if call.get("id") is not None:
                        renamed[call["id"]] = new_id
                    call["id"] = new_id
                calls.append(call)
            msg["tool_calls"] = calls
        elif msg.get("role") == "tool" and msg.get("tool_call_id") in renamed:
            msg["tool_call_id"] = renamed[msg["tool_call_id"]]
        out.append(msg)
    return out


def prepare_request(body: dict, model: str, temperature: float | None = None,
                    max_tokens: int | None = None, extra_body: dict | None = None,
                    tool_ids: bool = False) -> dict:
    """The body that is sent *and* hashed (DESIGN §5). Overrides are already resolved by the
    caller (CLI over provider entry over the line); `None` keeps the line's own value."""
    out = {k: v for k, v in body.items() if k not in K2VV_ONLY_KEYS}
    messages = [dict(m, role="system") if m.get("role") == "_input" else m for m in out.get("messages", [])]
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


def cache_key(url: str, body: dict, headers: dict, sample: int) -> str:
    """sha256 of the canonical JSON of what identifies one exchange. The API key is left out so a
    cache can be copied without leaking it; `sample` keeps --trials K answers apart."""
    return sha256_hex(canonical_json({"url": url, "body": body, "headers": headers, "sample": sample}))


# ---- 2c. parsing answers: JSON bodies and SSE streams ----------------------------------------

def _usage_of(obj) -> dict | None:
    usage = obj.get("usage") if isinstance(obj, dict) else None
    return usage if isinstance(usage, dict) else None


def parse_completion(body) -> Parsed:
    """A non-stream `chat.completion`. A body without choices is not an answer (complete=False)."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return Parsed(None, None, (), None, "none", ("no_choices",), complete=False)
    choice = choices[0]
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    raw_calls = message.get("tool_calls") or []
    calls = []
    for i, call in enumerate(raw_calls if isinstance(raw_calls, list) else []):
        fn = call.get("function") if isinstance(call, dict) and isinstance(call.get("function"), dict) else {}
        calls.append({"index": i, "id": call.get("id") if isinstance(call, dict) else None,
                      "name": fn.get("name"), "arguments": fn.get("arguments")})
    usage, source = _usage_of(body), "top_level"
    if usage is None:
        usage, source = _usage_of(choice), "per_choice"
    return Parsed(body, choice.get("finish_reason"), tuple(calls), usage,
                  source if usage is not None else "none", ())


def reassemble_stream(sse_lines: list[str]) -> Parsed:
    """Rebuild one `chat.completion` from the `data:` payloads of a stream (DESIGN §8).

    Tool calls are grouped by `index`; name and id: first non-empty wins (a repeated name is not
    appended, a different one is a finding); arguments are concatenated, except that a fragment that
    starts with everything accumulated so far means the server streams cumulatively (use it, record
    it). A stream with neither `[DONE]` nor a finish_reason is truncated."""
    findings: list[str] = []
    content, reasoning, slots = [], [], {}
    finish = None
    done = False
    first = None
    top_usage = choice_usage = None
    last_slot = None
    for payload in sse_lines:
        if payload.strip() == "[DONE]":
            done = True
            continue
        try:
            chunk = json.loads(payload)
        except (json.JSONDecodeError, TypeError):
            findings.append("bad_chunk")
            continue
        if not isinstance(chunk, dict):
            findings.append("bad_chunk")
            continue
        if first is None:
            first = chunk
        if _usage_of(chunk) is not None:
            top_usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) not in (0, None):
                continue
            if _usage_of(choice) is not None:
                choice_usage = choice["usage"]
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                continue
            if isinstance(delta.get("content"), str):
                content.append(delta["content"])
            if isinstance(delta.get("reasoning_content"), str):
                reasoning.append(delta["reasoning_content"])
            for frag in delta.get("tool_calls") or ():
                if not isinstance(frag, dict):
                    continue
                index = frag.get("index")
                if not isinstance(index, int):
                    findings.append("missing_index")
                    index = last_slot if last_slot is not None and not frag.get("id") else len(slots)
                slot = slots.setdefault(index, {"index": index, "id": None, "name": None, "arguments": None})
                last_slot = index
                if frag.get("id"):
                    if slot["id"] is None:
                        slot["id"] = frag["id"]
                    elif frag["id"] != slot["id"]:
                        findings.append("id_changed")
                fn = frag.get("function") or {}
                name = fn.get("name") if isinstance(fn, dict) else None
                if name:
                    if slot["name"] is None:
                        slot["name"] = name
                    else:
                        findings.append("name_resent" if name == slot["name"] else "name_changed")
                args = fn.get("arguments") if isinstance(fn, dict) else None
                if args is None:
                    continue
                if not isinstance(args, str):
                    slot["arguments"] = args  # an object in a delta: nothing to concatenate
                elif isinstance(slot["arguments"], str) and slot["arguments"] and args.startswith(slot["arguments"]):
                    findings.append("cumulative_arguments")
                    slot["arguments"] = args
                elif isinstance(slot["arguments"], str):
                    slot["arguments"] += args
                else:
                    slot["arguments"] = args
    complete = done or finish is not None
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
                  tuple(dict.fromkeys(findings)), complete)


# ---- 2d. tool schemas: compile once, safely ----------------------------------------------------

# Keywords whose value is one schema, a list of schemas, or a map of name -> schema (draft-07 and
# 2020-12 spellings). The schema walker follows only these, so `enum`/`const`/`default` data and
# property *names* are never mistaken for keywords.
_SUBSCHEMA_ONE = ("items", "additionalItems", "additionalProperties", "contains", "propertyNames",
                  "not", "if", "then", "else", "unevaluatedItems", "unevaluatedProperties")
_SUBSCHEMA_LIST = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_SUBSCHEMA_MAP = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas", "dependencies")


def _subschemas(schema: dict):
    for key in _SUBSCHEMA_ONE:
        if isinstance(schema.get(key), dict):
            yield schema[key]
    for key in _SUBSCHEMA_LIST:
        if isinstance(schema.get(key), list):
            yield from (s for s in schema[key] if isinstance(s, dict))
    for key in _SUBSCHEMA_MAP:
        if isinstance(schema.get(key), dict):
            yield from (s for s in schema[key].values() if isinstance(s, dict))


def schema_keywords(schema) -> set:
    """Every keyword used anywhere in a schema (keys of schema objects, not property names)."""
    found, stack = set(), [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.update(node)
            stack.extend(_subschemas(node))
    return found


def schema_draft(schema: dict) -> str:
    """The draft k2vv applies: the one `$schema` names, else draft-07 (DESIGN §8)."""
    uri = schema.get("$schema") if isinstance(schema, dict) else None
    if isinstance(uri, str):
        for marker, draft in _DRAFT_OF_SCHEMA_URI:
            if marker in uri:
                return draft
    return DRAFT07


def desugar_2020(schema):
    """Draft 2019-09/2020-12 keywords rewritten in their exact draft-07 spellings: `prefixItems`
    (+`items`) -> `items: [...]` (+`additionalItems`); `dependentRequired`/`dependentSchemas` ->
    `dependencies`. Measured on the 2020-12 suite: notes/packaging-and-validation.md §2f."""
    if isinstance(schema, list):
        return [desugar_2020(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in _SUBSCHEMA_MAP and isinstance(value, dict):
            out[key] = {k: desugar_2020(v) for k, v in value.items()}
        elif key in _SUBSCHEMA_ONE or key in _SUBSCHEMA_LIST:
            out[key] = desugar_2020(value)
        else:
            out[key] = value
    if "prefixItems" in out:
        prefix = out.pop("prefixItems")
        if "items" in out:
            out["additionalItems"] = out.pop("items")
        out["items"] = prefix
    deps = {}
    if isinstance(out.get("dependentRequired"), dict):
        deps.update(out.pop("dependentRequired"))
    if isinstance(out.get("dependentSchemas"), dict):
        deps.update(out.pop("dependentSchemas"))
    if deps:
        out["dependencies"] = dict(out.get("dependencies") or {}, **deps)
    return out


class _RefuseAllSchemes(dict):
    """fastjsonschema `handlers` that claim every URI scheme and refuse it: `$ref` never reaches
    urlopen (no SSRF, no local file read; notes/packaging-and-validation.md §2e)."""
    def __contains__(self, scheme):
        return True

    def __getitem__(self, scheme):
        def refuse(uri):
            raise ValueError(f"remote $ref {uri!r} is not fetched (only local refs are allowed)")
        return refuse


# What generated validator code may name (fastjsonschema 2.22.3): globals, attributes and imported
# modules all land in a code object's `co_names`, so checking those (recursively) bounds what the
# code can reach without parsing it twice. Anything else means a schema smuggled code in (notes
# §2e). Measured: no false positive over every tool schema of the open data (tests/test_schema.py).
_ALLOWED_NAMES = frozenset(
    "bool bytes dict enumerate float frozenset hasattr int isinstance len list locals repr set sorted "
    "str tuple type Exception True False None Decimal JsonSchemaValueException JsonSchemaValuesException "
    "NoneType REGEX_PATTERNS base64 json re decimal custom_formats name_prefix "
    "b64decode compile decode format get is_integer items keys loads match remove search append".split())
_ALLOWED_NAME_RE = re.compile(r"^(data|validate)\w*$")
_ALLOWED_CODE_NAMES = re.compile(r"^(validate\w*|<module>|<genexpr>|<listcomp>|<dictcomp>|<setcomp>)$")


def _check_generated_code(code) -> None:
    """Refuse generated validator code that can reach anything outside the allowlist."""
    stack = [code]
    while stack:
        code = stack.pop()
        if not _ALLOWED_CODE_NAMES.match(code.co_name):
            raise ValueError(f"generated code defines {code.co_name!r}")
        for name in code.co_names:
            if name not in _ALLOWED_NAMES and not _ALLOWED_NAME_RE.match(name):
                raise ValueError(f"generated code names {name!r}")
        stack.extend(c for c in code.co_consts if hasattr(c, "co_names"))


@dataclass(frozen=True, slots=True)
class ToolSchema:
    """A compiled `parameters` schema. `validate` is None when any object is accepted (empty or
    absent parameters) or when the schema is unscored; `unscored` says why it cannot be judged."""
    validate: Callable | None
    unscored: str | None = None
    draft: str = DRAFT07


ACCEPT_ANY = ToolSchema(None)


def compile_tool_schema(parameters) -> ToolSchema:
    """Compile one tool's `parameters` with fastjsonschema, guarded (DESIGN §8): `$schema` honoured,
    draft-07 by default, 2020-12 spellings desugared, remote refs refused, formats and defaults off,
    and generated code checked against an allowlist before it runs. Any failure is the dataset's:
    the tool is `unscored`, never blamed on the provider."""
    if parameters is None or parameters == {} or parameters is True:
        return ACCEPT_ANY
    if not isinstance(parameters, dict):
        return ToolSchema(None, f"parameters is {_json_type(parameters)}, not a JSON Schema object")
    draft = schema_draft(parameters)
    used = schema_keywords(parameters)
    unenforced = sorted(k for k in NOT_ENFORCED_KEYWORDS if k in used)
    if unenforced:
        return ToolSchema(None, f"uses {', '.join(unenforced)}, which k2vv cannot enforce", draft)
    schema = parameters
    if draft in ("2019-09", "2020-12"):
        schema = desugar_2020(parameters)
    schema = dict(schema, **{"$schema": draft if draft.startswith("http") else DRAFT07})
    try:
        import fastjsonschema
        resolver, generator = fastjsonschema._factory(schema, _RefuseAllSchemes(),
                                                      use_default=False, use_formats=False)
        code = compile(generator.func_code, "<k2vv tool schema>", "exec")
        _check_generated_code(code)
        state = generator.global_state
        exec(code, state)  # checked above: it can only reach the allowlisted names
        return ToolSchema(state[resolver.get_scope_name()], None, draft)
    except Exception as err:  # noqa: BLE001 - every compile failure is a dataset problem
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        return ToolSchema(None, f"schema does not compile: {message[:200]}", draft)


_SCHEMA_CACHE: dict[str, ToolSchema] = {}
_SCHEMA_CACHE_LOCK = threading.Lock()


def tool_schema(parameters) -> ToolSchema:
    """compile_tool_schema memoised by the canonical hash of the schema (once per distinct schema,
    in memory only: compiled code never goes to a cache directory someone else could hand us)."""
    if parameters is None or parameters == {}:
        return ACCEPT_ANY
    key = sha256_hex(canonical_json(parameters))
    found = _SCHEMA_CACHE.get(key)
    if found is None:
        found = compile_tool_schema(parameters)
        with _SCHEMA_CACHE_LOCK:
            _SCHEMA_CACHE[key] = found
    return found


def _pointer(path_name: str | None) -> str:
    """JSON pointer of a fastjsonschema error name (`data.a[1]` -> `/a/1`)."""
    parts = [p for p in re.split(r"[.\[\]]+", path_name or "") if p]
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts[1:])


def check_instance(schema: ToolSchema, instance) -> tuple[str, str] | None:
    """None when `instance` satisfies the schema, else (JSON pointer, message). Tool arguments must
    be a JSON object whatever the schema says (OpenAI function calling)."""
    if not isinstance(instance, dict):
        return "", f"arguments are {_json_type(instance)}, not a JSON object"
    if schema.validate is None:
        return None
    try:
        schema.validate(instance)
    except Exception as err:  # noqa: BLE001 - JsonSchemaValueException, or a bug in generated code
        name = getattr(err, "name", None)
        rule = getattr(err, "rule", None)
        message = getattr(err, "message", None) or str(err)
        return _pointer(name), (f"{message} ({rule})" if rule else message)[:300]
    return None


def schema_verdict(parameters, instance) -> str:
    """'valid' | 'invalid' | 'unscored' for one instance: the judge the parity tests compare."""
    compiled = tool_schema(parameters)
    if compiled.unscored:
        return "unscored"
    return "valid" if check_instance(compiled, instance) is None else "invalid"


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
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys), None
    except _NonStandard as err:
        return None, ("non_standard_json", str(err))
    except (json.JSONDecodeError, RecursionError) as err:
        return None, ("invalid_json", f"{getattr(err, 'msg', 'too deep')} at char {getattr(err, 'pos', 0)}")


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
    name, args = call.get("name"), call.get("arguments")
    if name not in tools:
        return CallResult(name, "unknown_tool", message=f"{name!r} is not among the request's tools")
    findings = ()
    if isinstance(args, str):
        instance, problem = parse_arguments(args)
        if problem:
            return CallResult(name, problem[0], message=problem[1])
    elif args is None:
        return CallResult(name, "invalid_json", message="arguments are missing")
    else:
        instance, findings = args, ("non_string_arguments",)
    compiled = tool_schema(tools[name])
    if compiled.unscored:
        return CallResult(name, "unscored", message=compiled.unscored, findings=findings)
    failure = check_instance(compiled, instance)
    if failure:
        return CallResult(name, "schema_mismatch", pointer=failure[0], message=failure[1], findings=findings)
    return CallResult(name, "valid", findings=findings)


def parse_exchange(exchange: dict) -> Parsed | None:
    """The answer inside a raw exchange; None when it holds no 200 answer (e.g. a rejection)."""
    if exchange.get("status") != 200:
        return None
    if "sse_lines" in exchange:
        return reassemble_stream(exchange["sse_lines"])
    return parse_completion(exchange.get("body"))


def score_exchange(body: dict, exchange: dict | None) -> Outcome:
    """Score one raw exchange against the request body it answers (DESIGN §8). None = unanswered."""
    if exchange is None:
        return Outcome("unanswered")
    meta = {"timing": exchange.get("timing"), "attempts": exchange.get("attempts", 0), "at": exchange.get("at")}
    status = exchange.get("status")
    if status in REJECT_STATUSES:
        return Outcome("rejected", error_class=f"http_{status}", **meta)
    if status != 200:
        return Outcome("failed", error_class=exchange.get("error_class") or f"http_{status}", **meta)
    parsed = parse_exchange(exchange)
    if not parsed.complete:
        cls = "truncated" if "sse_lines" in exchange else "failed"
        return Outcome(cls, findings=parsed.findings, error_class="truncated" if cls == "truncated" else "bad_body",
                       **meta)
    return outcome_of(parsed, tools_by_name(body), meta)


def outcome_of(parsed: Parsed, tools: dict, meta: dict) -> Outcome:
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
                   tuple(c.get("name") for c in parsed.calls), completion=parsed.completion, **meta)


# ---- 2f. statistics ---------------------------------------------------------------------------

def wilson(successes: int, total: int, z: float = Z95) -> list | None:
    """Wilson score interval of a proportion; None when there is nothing to estimate."""
    if total <= 0:
        return None
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return [_round(max(0.0, centre - half)), _round(min(1.0, centre + half))]


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A Binomial(n, p) draw in O(1) expected time: CPython 3.12's `random.binomialvariate`
    (geometric method for small n·p, BTRS otherwise; PSF licence), here so 3.10 and 3.11 can
    bootstrap 100k cases without drawing 100k numbers per resample."""
    if p <= 0.0 or n <= 0:
        return 0
    if p >= 1.0:
        return n
    if p > 0.5:
        return n - binomial(rng, n, 1.0 - p)
    if n * p < 10.0:
        x = y = 0
        c = math.log(1.0 - p)
        while True:
            y += math.floor(math.log(1.0 - rng.random()) / c) + 1
            if y > n:
                return x
            x += 1
    spq = math.sqrt(n * p * (1.0 - p))
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = n * p + 0.5
    vr = 0.92 - 4.2 / b
    alpha = (2.83 + 5.1 / b) * spq
    lpq = math.log(p / (1.0 - p))
    m = math.floor((n + 1) * p)
    h = math.lgamma(m + 1) + math.lgamma(n - m + 1)
    while True:
        u = rng.random() - 0.5
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + c)
        if k < 0 or k > n:
            continue
        v = rng.random()
        if us >= 0.07 and v <= vr:
            return k
        v *= alpha / (a / (us * us) + b)
        if v > 0 and math.log(v) <= h - math.lgamma(k + 1) - math.lgamma(n - k + 1) + (k - m) * lpq:
            return k


def multinomial(rng: random.Random, n: int, weights: list) -> list:
    """Counts of n draws over categories with the given weights, by conditional binomials."""
    counts, left, mass = [], n, float(sum(weights))
    for w in weights[:-1]:
        k = binomial(rng, left, w / mass) if mass > 0 else 0
        counts.append(k)
        left -= k
        mass -= w
    counts.append(left)
    return counts


def f1_of(tp: int, fp: int, fn: int) -> float | None:
    """Harmonic mean of precision and recall; None when there is no positive on either side."""
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None


def bootstrap_f1(per_case: list, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> list | None:
    """95% percentile interval of F1 when whole cases are resampled. `per_case` holds one
    (tp, fp, fn) tuple per case (several trials add up). Cases with equal tuples are
    interchangeable, so one resample is a multinomial draw over the distinct tuples: O(distinct)."""
    if not per_case:
        return None
    groups = Counter(per_case)
    kinds, weights = list(groups), list(groups.values())
    rng = random.Random(seed)
    scores = []
    for _ in range(resamples):
        counts = multinomial(rng, len(per_case), weights)
        tp = sum(c * k[0] for c, k in zip(counts, kinds))
        fp = sum(c * k[1] for c, k in zip(counts, kinds))
        fn = sum(c * k[2] for c, k in zip(counts, kinds))
        f1 = f1_of(tp, fp, fn)
        if f1 is not None:
            scores.append(f1)
    if not scores:
        return None
    scores.sort()
    lo = scores[int(0.025 * (len(scores) - 1))]
    hi = scores[int(math.ceil(0.975 * (len(scores) - 1)))]
    return [_round(lo), _round(hi)]


def percentile(sorted_values: list, q: float):
    """Nearest-rank percentile of already sorted values; None for none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _round(x):
    return None if x is None else round(x, 6)


# ---- 2g. baselines -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BaselineAnswer:
    answered: bool
    triggered: bool
    names: tuple = ()


def baseline_of(outcome: Outcome) -> BaselineAnswer:
    return BaselineAnswer(outcome.answered, outcome.triggered, outcome.names)


def request_fingerprint(body: dict) -> str:
    """What a K2VV results line and a test-set line must share to be the same case: messages (with
    `_input` read as `system`, as K2VV sends them) and tools. Model and overrides differ by design."""
    messages = [dict(m, role="system") if isinstance(m, dict) and m.get("role") == "_input" else m
                for m in body.get("messages") or []]
    return sha256_hex(canonical_json({"messages": messages, "tools": body.get("tools")}))


def load_k2vv_results(lines: Iterable[str], cases: list[Case], path: str = "results.jsonl") -> tuple[dict, dict]:
    """Baseline answers from a K2VV `results.jsonl`, paired by `data_index` and checked by request
    fingerprint (K2VV's own `hash` includes the model, so it never matches across providers).
    Returns ({case_id: BaselineAnswer}, {"matched", "unmatched", "mismatched"})."""
    by_index = {c.data_index: c for c in cases}
    latest: dict[int, dict] = {}
    errors = []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as err:
            errors.append(InputError(path, number, f"not JSON: {err.msg}"))
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("data_index"), int):
            errors.append(InputError(path, number, "no integer data_index", "a K2VV results line"))
            continue
        old = latest.get(rec["data_index"])
        if old is None or str(rec.get("last_run_at", "")) >= str(old.get("last_run_at", "")):
            latest[rec["data_index"]] = rec  # K2VV keeps the newest line per data_index
    if errors:
        raise InputErrors(errors)
    answers, stats = {}, {"matched": 0, "unmatched": 0, "mismatched": 0}
    for index, rec in sorted(latest.items()):
        case = by_index.get(index)
        if case is None:
            stats["unmatched"] += 1
            continue
        request = rec.get("request") if isinstance(rec.get("request"), dict) else {}
        if request_fingerprint(request) != request_fingerprint(case.body):
            stats["mismatched"] += 1
            continue
        response = rec.get("response") if isinstance(rec.get("response"), dict) else {}
        names = ()
        choices = response.get("choices") or []
        if choices and isinstance(choices[0], dict):
            calls = (choices[0].get("message") or {}).get("tool_calls") or []
            names = tuple((c.get("function") or {}).get("name") for c in calls if isinstance(c, dict))
        answers[case.case_id] = BaselineAnswer(rec.get("status") == "success",
                                               rec.get("finish_reason") == "tool_calls", names)
        stats["matched"] += 1
    return answers, stats


def compare_with_baseline(cases: list[Case], outcomes: dict, baseline: dict, trials: int = 1) -> dict:
    """TP/FP/FN/TN over (case, trial) pairs where both sides answered (DESIGN §8), with coverage
    = scored pairs / all pairs, tool-name agreement on TP pairs and a bootstrap interval for F1."""
    tp = fp = fn = tn = names_equal = 0
    per_case = []
    for case in cases:
        base = baseline.get(case.case_id)
        ctp = cfp = cfn = 0
        for sample in range(trials):
            mine = outcomes.get((case.case_id, sample))
            if base is None or mine is None or not base.answered or not mine.answered:
                continue
            if mine.triggered and base.triggered:
                ctp += 1
                names_equal += sorted(mine.names, key=str) == sorted(base.names, key=str)
            elif mine.triggered:
                cfp += 1
            elif base.triggered:
                cfn += 1
            else:
                tn += 1
        tp, fp, fn = tp + ctp, fp + cfp, fn + cfn
        if base is not None and base.answered:
            per_case.append((ctp, cfp, cfn))
    pairs = tp + fp + fn + tn
    total = len(cases) * trials
    return {
        "pairs": pairs, "coverage": _round(pairs / total) if total else None,
        "TP": tp, "FP": fp, "FN": fn, "TN": tn,
        "precision": _round(tp / (tp + fp)) if tp + fp else None,
        "recall": _round(tp / (tp + fn)) if tp + fn else None,
        "f1": _round(f1_of(tp, fp, fn)),
        "f1_ci": bootstrap_f1(per_case) if pairs else None,
        "name_agreement": _round(names_equal / tp) if tp else None,
    }


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
    else:
        reasons.append("no baseline: tool_call_f1 not checked (use --baseline)")
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


def summarise(cases: list[Case], outcomes: dict, *, trials: int = 1, baseline: dict | None = None,
              baseline_info: dict | None = None, thresholds: dict, info: dict) -> dict:
    """The summary.json of one provider run: K2VV's fields with K2VV's names, then k2vv's. Pure:
    computed from test set + scored cache alone, so `run` and `score` agree byte for byte."""
    responses = Counter()
    call_classes = Counter()
    findings = Counter()
    finish = Counter()
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    usage_sources = Counter()
    totals, ttfbs, attempts, stamps = [], [], Counter(), []
    scored_calls = valid_calls = 0
    pass_cases = Counter()  # case -> how many trials passed
    for case in cases:
        for sample in range(trials):
            out = outcomes.get((case.case_id, sample)) or Outcome("unanswered")
            responses[out.response_class] += 1
            findings.update(out.findings)
            if out.attempts:
                attempts[str(out.attempts)] += 1
            if out.at:
                stamps.append((out.at, (out.timing or {}).get("total_ms") or 0))
            if not out.answered:
                continue
            finish[out.finish_reason] += 1
            usage_sources[out.usage_source] += 1
            if out.usage:
                for key in usage:
                    value = out.usage.get(key)
                    usage[key] += value if isinstance(value, int) else 0
            if out.timing:
                if isinstance(out.timing.get("total_ms"), (int, float)):
                    totals.append(out.timing["total_ms"])
                if isinstance(out.timing.get("ttfb_ms"), (int, float)):
                    ttfbs.append(out.timing["ttfb_ms"])
            if out.triggered:
                for call in out.calls:
                    call_classes[call.cls] += 1
                    if call.cls != "unscored":
                        scored_calls += 1
                        valid_calls += call.cls == "valid"
            base = (baseline or {}).get(case.case_id)
            agrees = base is None or not base.answered or base.triggered == out.triggered
            if out.response_class in ("valid", "no_call") and agrees:
                pass_cases[case.case_id] += 1
    ok = responses["valid"]
    bad = responses["invalid"] + responses["empty_tool_calls"]
    success = sum(responses[c] for c in ANSWERED)
    total = len(cases) * trials
    totals.sort()
    ttfbs.sort()
    started = min(stamps)[0] if stamps else None
    finished = max(stamps)[0] if stamps else None
    others = {str(k): v for k, v in sorted(finish.items(), key=lambda kv: str(kv[0]))
              if k not in ("stop", "tool_calls")}
    comparison = None
    if baseline is not None:
        comparison = compare_with_baseline(cases, outcomes, baseline, trials)
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
        "usage": usage,
        "eval_started_at": started,
        "eval_finished_at": finished,
        "eval_duration_ms": _span_ms(stamps),
        "schema_accuracy": _round(ok / (ok + bad)) if ok + bad else None,
        "schema_accuracy_ci": schema_ci,
        "per_call_schema_accuracy": _round(valid_calls / scored_calls) if scored_calls else None,
        "classes": {"responses": {c: responses[c] for c in RESPONSE_CLASSES},
                    "calls": {c: call_classes[c] for c in CALL_CLASSES}},
        "findings": dict(sorted(findings.items())),
        "usage_sources": {s: usage_sources[s] for s in ("top_level", "per_choice", "none")},
        "latency": {"p50": percentile(totals, 50), "p90": percentile(totals, 90),
                    "p99": percentile(totals, 99), "ttfb_p50": percentile(ttfbs, 50)},
        "attempts": dict(sorted(attempts.items(), key=lambda kv: int(kv[0]))),
        "baseline": comparison,
        "trials": None,
        "verdict": decide_verdict(schema_ci, success / total if total else None, comparison, thresholds),
        "k2vv": dict(info, version=__version__),
    }
    if trials > 1:
        summary["trials"] = {
            "k": trials,
            "pass_at_k": _round(sum(1 for c in cases if pass_cases[c.case_id] > 0) / len(cases)) if cases else None,
            "pass_hat_k": _round(sum(1 for c in cases if pass_cases[c.case_id] == trials) / len(cases)) if cases else None,
        }
    return summary


def _span_ms(stamps: list) -> int | None:
    """Wall time covered by the cached answers: first `at` to last `at` + its duration."""
    if not stamps:
        return None
    try:
        from datetime import datetime
        first = datetime.fromisoformat(min(stamps)[0].replace("Z", "+00:00"))
        last_at, last_ms = max(stamps)
        last = datetime.fromisoformat(last_at.replace("Z", "+00:00"))
        return int((last - first).total_seconds() * 1000 + last_ms)
    except (ValueError, TypeError):
        return None


def exit_code_of(verdict: dict) -> int:
    return {"pass": EXIT_PASS, "fail": EXIT_FAIL}.get(verdict["status"], EXIT_INCONCLUSIVE)


# ==== 3. effects =================================================================================

# ---- 3a. files: test sets, bundled data, JSON output ---------------------------------------------

BUNDLED_TESTSET = "fixtures/testset.jsonl"


def resource(relative: str) -> bytes:
    """A file bundled beside this module (repo checkout, shiv extraction, or straight from the
    zip): the module's own loader reads it, so the pyz needs no extraction to find its data."""
    base = os.path.dirname(os.path.abspath(__file__))
    loader = globals().get("__loader__")
    full = os.path.join(base, *relative.split("/"))
    if loader is not None and hasattr(loader, "get_data"):
        return loader.get_data(full)
    with open(full, "rb") as fh:
        return fh.read()


@dataclass
class TestSet:
    cases: list
    sha256: str
    name: str
    k2vv_results: list | None = None  # lines of a K2VV results file found beside the samples (tar.gz)


def _read_lines(data: bytes) -> list[bytes]:
    return data.split(b"\n") if data else []


def load_test_set(path: str | None) -> TestSet:
    """Read a test set: `.jsonl`, `.jsonl.gz`, or a `.tar.gz` like the official K2VV download
    (its samples file is picked; a K2VV results file beside it is kept as a baseline)."""
    if path is None:
        data = resource(BUNDLED_TESTSET)
        return TestSet(parse_test_set(_read_lines(data), "bundled:" + BUNDLED_TESTSET), sha256_hex(data),
                       "bundled:" + BUNDLED_TESTSET)
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise K2vvError(f"{path}: cannot read the test set ({err.strerror or err})") from None
    results = None
    name = str(path)
    if p.name.endswith((".tar.gz", ".tgz")):
        raw, inner, results = _from_tarball(raw, path)
        name = f"{path}:{inner}"
    elif p.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise K2vvError(f"{path}: not a valid gzip file ({err})") from None
    return TestSet(parse_test_set(_read_lines(raw), name), sha256_hex(raw), name, results)


def _from_tarball(raw: bytes, path: str):
    try:
        tar = tarfile.open(fileobj=io.BytesIO(raw), mode="r:*")
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jsonl")
                   and not os.path.basename(m.name).startswith(".")]
    except (tarfile.TarError, OSError, EOFError) as err:
        raise K2vvError(f"{path}: not a readable .tar.gz ({err})") from None
    samples = [m for m in members if "result" not in os.path.basename(m.name).lower()]
    results = [m for m in members if "result" in os.path.basename(m.name).lower()]
    if len(samples) != 1:
        names = ", ".join(m.name for m in samples) or "none"
        raise K2vvError(f"{path}: expected exactly one samples .jsonl inside, found {names}")
    data = tar.extractfile(samples[0]).read()
    result_lines = tar.extractfile(results[0]).read().decode("utf-8", "replace").splitlines() if results else None
    return data, samples[0].name, result_lines


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON next to its final name and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---- 3b. the response cache ------------------------------------------------------------------------

_DISK_CLASS = None


def _json_bytes_disk():
    """A diskcache `Disk` that stores str keys and bytes values raw and refuses anything else: a
    cache copied from someone else must never unpickle or read outside its directory (notes §3d)."""
    global _DISK_CLASS
    if _DISK_CLASS is None:
        import diskcache
        from diskcache.core import MODE_BINARY, MODE_RAW

        class JSONBytesDisk(diskcache.Disk):
            def put(self, key):
                if not isinstance(key, str):
                    raise TypeError("k2vv cache keys are str")
                return super().put(key)

            def get(self, key, raw):
                if not raw:
                    raise CacheDamage("a cache key is not stored raw (refusing to unpickle it)")
                return super().get(key, raw)

            def store(self, value, read, key=None):
                if not isinstance(value, bytes):
                    raise TypeError("k2vv cache values are bytes of JSON")
                return super().store(value, read) if key is None else super().store(value, read, key)

            def _inside(self, filename):
                root = os.path.realpath(self._directory)
                full = os.path.realpath(os.path.join(root, filename))
                if os.path.commonpath([root, full]) != root:
                    raise CacheDamage("a cache value file points outside the cache directory")
                return full

            def fetch(self, mode, filename, value, read):
                if mode == MODE_RAW:
                    return super().fetch(mode, filename, value, read)
                if mode == MODE_BINARY and filename:
                    self._inside(filename)
                    return super().fetch(mode, filename, value, read)
                raise CacheDamage(f"a cache value has mode {mode} (refusing anything but raw bytes)")

            def remove(self, file_path):
                try:
                    self._inside(file_path)
                except CacheDamage:
                    return None  # replacing a planted row must not delete a file outside the cache
                return super().remove(file_path)

        _DISK_CLASS = JSONBytesDisk
    return _DISK_CLASS


def default_cache_dir(flag: str | None) -> Path:
    return Path(flag or os.environ.get("K2VV_CACHE") or ".k2vv-cache")


class ResponseCache:
    """The content-addressed store of raw exchanges: diskcache with eviction off (its default 1 GB
    LRU limit would silently delete answers), JSON bytes in and out, damage reported not raised."""

    def __init__(self, directory: Path, readonly: bool = False):
        import diskcache
        import sqlite3
        self.directory = Path(directory)
        self.damaged: list[str] = []
        self._copy = None
        settings = dict(disk=_json_bytes_disk(), eviction_policy="none", size_limit=2 ** 62,
                        cull_limit=0, statistics=False)
        if readonly and not (self.directory / "cache.db").exists():
            raise K2vvError(f"{self.directory}: no k2vv cache here (expected {self.directory}/cache.db);"
                            " pass --cache DIR or set K2VV_CACHE")
        try:
            self._cache = diskcache.Cache(str(self.directory), **settings)
        except (sqlite3.OperationalError, PermissionError, OSError) as err:
            if not readonly:
                raise K2vvError(f"{self.directory}: cannot open the cache for writing ({err})") from None
            # A read-only directory (a copied or mounted cache): SQLite's WAL mode needs to write
            # beside the database, so read a private copy (notes §3c: 34 MB copies in well under 1 s).
            import shutil
            import tempfile
            self._copy = tempfile.mkdtemp(prefix="k2vv-cache-ro-")
            shutil.copytree(self.directory, self._copy, dirs_exist_ok=True)
            self._cache = diskcache.Cache(self._copy, **settings)

    def get(self, key: str) -> dict | None:
        try:
            raw = self._cache.get(key)
        except CacheDamage as err:
            self.damaged.append(f"{key[:12]}: {err}")
            return None
        if raw is None:
            return None
        try:
            value = json.loads(raw)
            if not isinstance(value, dict) or value.get("v") != CACHE_VERSION or "status" not in value:
                raise CacheDamage(f"unknown cache entry version {value.get('v') if isinstance(value, dict) else '?'}")
            return value
        except (ValueError, CacheDamage, UnicodeDecodeError) as err:
            self.damaged.append(f"{key[:12]}: {str(err)[:80]}")
            return None

    def set(self, key: str, exchange: dict) -> None:
        self._cache.set(key, canonical_json(exchange))

    def __contains__(self, key):
        return key in self._cache

    def close(self):
        self._cache.close()
        if self._copy:
            import shutil
            shutil.rmtree(self._copy, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_cache(directory, readonly: bool = False) -> ResponseCache:
    return ResponseCache(Path(directory), readonly)


# ---- 3c. providers -------------------------------------------------------------------------------

# Built-in presets (DESIGN §4). Keys come from the named environment variable only.
PRESETS = {
    "moonshot": {"base_url": "https://api.moonshot.ai/v1", "model": "kimi-k2-0905-preview",
                 "api_key_env": "MOONSHOT_API_KEY"},
    "openrouter": {"base_url": "https://openrouter.ai/api/v1", "model": "moonshotai/kimi-k2-0905",
                   "api_key_env": "OPENROUTER_API_KEY", "headers": {"X-Title": "k2vv"}},
    "vllm": {"base_url": "http://127.0.0.1:8000/v1", "model": "moonshotai/Kimi-K2-Instruct-0905",
             "api_key_env": "VLLM_API_KEY", "api_key_required": False},
    "sglang": {"base_url": "http://127.0.0.1:30000/v1", "model": "moonshotai/Kimi-K2-Instruct-0905",
               "api_key_env": "SGLANG_API_KEY", "api_key_required": False},
}
PROVIDER_FIELDS = ("base_url", "model", "api_key_env", "api_key_required", "headers", "extra_body",
                   "temperature", "max_tokens", "concurrency", "timeout")
# Header names whose values are secrets: never in a cache key, a file, or a message.
_SECRET_HEADER_RE = re.compile(r"auth|api[-_]?key|token|secret|cookie|password", re.I)


@dataclass
class Provider:
    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    api_key_required: bool = True
    headers: dict = field(default_factory=dict)
    extra_body: dict = field(default_factory=dict)
    temperature: float | None = None
    max_tokens: int | None = None
    concurrency: int | None = None
    timeout: float | None = None
    source: str = "preset"

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def public_headers(self) -> dict:
        """The configured headers that may be hashed and stored (secrets dropped)."""
        return {k: v for k, v in sorted(self.headers.items()) if not _SECRET_HEADER_RE.search(k)}

    def __repr__(self):  # never show headers or keys
        return f"Provider({self.name!r}, {self.base_url!r}, {self.model!r})"


def provider_files(explicit: str | None) -> list[Path]:
    """Where providers are looked up, in order (DESIGN §4)."""
    if explicit:
        return [Path(explicit)]
    xdg = os.environ.get("XDG_CONFIG_HOME") or (os.path.join(os.environ["HOME"], ".config")
                                                if os.environ.get("HOME") else None)
    files = [Path("k2vv.toml")]
    if xdg:
        files.append(Path(xdg) / "k2vv" / "providers.toml")
    return files


def _load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise K2vvError(f"{path}: cannot read ({err.strerror or err})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise K2vvError(f"{path}: not valid TOML: {err}") from None


def check_provider_entry(name: str, entry, where: str) -> dict:
    """Validate one `[providers.NAME]` table, naming the bad key and what was expected."""
    problems = []
    if not isinstance(entry, dict):
        raise K2vvError(f"{where}: [providers.{name}] is not a table")
    types = {"base_url": str, "model": str, "api_key_env": str, "api_key_required": bool, "headers": dict,
             "extra_body": dict, "temperature": (int, float), "max_tokens": int, "concurrency": int,
             "timeout": (int, float)}
    for key, value in entry.items():
        if key not in types:
            problems.append(f"[providers.{name}].{key}: unknown key (expected one of {', '.join(PROVIDER_FIELDS)})")
        elif not isinstance(value, types[key]) or isinstance(value, bool) and types[key] is not bool:
            expected = {str: "a string", dict: "a table", bool: "true or false", int: "an integer"}.get(
                types[key], "a number")
            problems.append(f"[providers.{name}].{key}: is {_json_type(value)} (expected {expected})")
    for key in ("concurrency", "max_tokens"):
        if isinstance(entry.get(key), int) and not isinstance(entry.get(key), bool) and entry[key] < 1:
            problems.append(f"[providers.{name}].{key}: is {entry[key]} (expected at least 1)")
    if isinstance(entry.get("headers"), dict):
        for hk, hv in entry["headers"].items():
            if _SECRET_HEADER_RE.search(hk):
                problems.append(f"[providers.{name}].headers.{hk}: looks like a secret "
                                "(expected secrets only from the environment: use api_key_env)")
            elif not isinstance(hv, str):
                problems.append(f"[providers.{name}].headers.{hk}: is {_json_type(hv)} (expected a string)")
    if problems:
        raise K2vvError("\n".join(f"{where}: {p}" for p in problems))
    return entry


def known_providers(explicit_file: str | None) -> dict:
    """name -> (entry, source) from the provider files and the presets (files win)."""
    found = {name: (dict(entry), "preset") for name, entry in PRESETS.items()}
    for path in reversed(provider_files(explicit_file)):
        if not path.exists():
            if explicit_file:
                raise K2vvError(f"{path}: no such providers file")
            continue
        table = _load_toml(path).get("providers", {})
        if not isinstance(table, dict):
            raise K2vvError(f"{path}: `providers` must be a table of [providers.NAME] entries")
        for name, entry in table.items():
            found[name] = (check_provider_entry(name, entry, str(path)), str(path))
    return found


def resolve_provider(name: str, explicit_file: str | None) -> Provider:
    known = known_providers(explicit_file)
    if name in known:
        entry, source = known[name]
    elif name.startswith("openrouter:") and len(name) > len("openrouter:"):
        slug = name.split(":", 1)[1]
        entry, source = dict(known["openrouter"][0]), "preset"
        entry["extra_body"] = deep_merge(entry.get("extra_body") or {},
                                         {"provider": {"only": [slug], "allow_fallbacks": False}})
    else:
        names = ", ".join(sorted(known) + ["openrouter:<slug>"])
        raise K2vvError(f"unknown provider {name!r}; known providers: {names} "
                        "(or use --base-url and --model)")
    for key in ("base_url", "model"):
        if not entry.get(key):
            raise K2vvError(f"provider {name!r} ({source}) has no {key}")
    fields = {k: entry[k] for k in PROVIDER_FIELDS if k in entry}
    return Provider(name=name, source=source, **fields)


def provider_key(provider: Provider, cli_key: str | None = None) -> str | None:
    """The API key, from --api-key or the provider's environment variable; a required key that is
    missing stops everything before a single request (exit 2)."""
    if cli_key:
        return cli_key
    env = provider.api_key_env
    key = os.environ.get(env) if env else None
    if not key and provider.api_key_required:
        raise ProviderError(f"provider {provider.name!r} needs an API key: set the environment variable "
                            f"{env or 'OPENAI_API_KEY'} (nothing was sent)")
    return key


# ---- 3d. the runner: thread pool, retries, journal, progress ----------------------------------------

class Transient(Exception):
    """A failed attempt worth retrying: error class and an optional server-requested delay."""
    def __init__(self, error_class: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(error_class)
        self.error_class, self.retry_after, self.status = error_class, retry_after, status


class Fatal(Exception):
    """An answer that means the whole run cannot work (bad key, wrong endpoint)."""
    def __init__(self, error_class: str, status: int):
        super().__init__(error_class)
        self.error_class, self.status = error_class, status


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


def backoff_delay(attempt: int, retry_after: float | None, rng: random.Random,
                  base: float = 1.0, cap: float = 60.0) -> float:
    """Capped exponential backoff with full jitter; a server's Retry-After wins (capped too)."""
    if retry_after is not None:
        return min(retry_after, cap)
    return rng.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Provider text with any secret and anything shaped like a key masked, cut to 2,000 chars."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return re.sub(r"\b(sk|pk|rk|key)-[A-Za-z0-9_\-]{8,}", r"\1-***", text)[:2000]


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


_KEPT_HEADERS = ("content-type", "x-request-id", "request-id", "x-openrouter-provider",
                 "openrouter-provider", "x-provider", "x-model", "server", "retry-after")


def send_once(session, url: str, payload: bytes, headers: dict, stream: bool, timeout: float,
              secrets: tuple) -> dict:
    """One HTTP attempt -> a final exchange dict, or Transient/Fatal. The one place where
    `requests` exceptions become k2vv error classes (STYLE §5)."""
    import requests
    started = time.monotonic()
    deadline = started + timeout
    try:
        resp = session.post(url, data=payload, headers=headers, stream=True,
                            timeout=(min(30.0, timeout), timeout))
    except requests.exceptions.Timeout:
        raise Transient("timeout") from None
    except requests.exceptions.SSLError:
        raise Transient("tls_error") from None
    except requests.exceptions.ConnectionError:
        raise Transient("connection_error") from None
    except requests.exceptions.RequestException as err:
        raise Transient(type(err).__name__.lower()) from None
    kept = {k: resp.headers[k] for k in _KEPT_HEADERS if k in resp.headers}
    status = resp.status_code
    try:
        ttfb = None
        if status != 200:
            text = redact(resp.content[:8192].decode("utf-8", "replace"), secrets)
            if status in (401, 403):
                raise Fatal(f"http_{status}", status)
            if status == 404:
                raise Fatal("http_404", status)
            if status in RETRY_STATUSES:
                raise Transient(f"http_{status}", parse_retry_after(resp.headers.get("retry-after"), time.time()),
                                status)
            exchange = {"status": status, "text": text}
        elif stream and "event-stream" in resp.headers.get("content-type", "event-stream"):
            lines = []
            for payload_line in iter_sse_payloads(resp.iter_lines(chunk_size=None, delimiter=b"\n")):
                if ttfb is None:
                    ttfb = time.monotonic()
                lines.append(payload_line)
                if time.monotonic() > deadline:
                    raise Transient("timeout")
            exchange = {"status": 200, "sse_lines": lines}
            if not reassemble_stream(lines).complete:
                raise Transient("truncated")
        else:
            raw = resp.content
            ttfb = time.monotonic()
            try:
                body = json.loads(raw)
            except ValueError:
                raise Transient("bad_body") from None
            if not parse_completion(body).complete:
                raise Transient("bad_body")
            exchange = {"status": 200, "body": body}
    except requests.exceptions.Timeout:
        raise Transient("timeout") from None
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
            requests.exceptions.ContentDecodingError):
        raise Transient("body_cut") from None
    finally:
        resp.close()
    done = time.monotonic()
    exchange["headers"] = kept
    exchange["timing"] = {"ttfb_ms": round(((ttfb or done) - started) * 1000, 1),
                          "total_ms": round((done - started) * 1000, 1)}
    return exchange


@dataclass
class WorkItem:
    case: Case
    sample: int
    body: dict
    key: str


@dataclass
class RunState:
    """Counters the progress line is rendered from (mutated under the runner's lock)."""
    total: int
    cached: int = 0
    done: int = 0
    failed: int = 0
    retries: int = 0
    sent: int = 0
    started: float = 0.0


class Journal:
    """OUT/results.jsonl, appended one line per finished case and flushed per line: a crash loses
    at most the line being written, and the cache (the truth) loses nothing acknowledged."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()

    def close(self):
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()


def k2vv_hash(body: dict) -> str:
    """K2VV's `hash` field: md5 of the prepared request dumped with sorted keys."""
    return hashlib.md5(json.dumps(body, sort_keys=True).encode()).hexdigest()


def result_record(item: WorkItem, outcome: Outcome, extra_body: dict, error: str | None = None) -> dict:
    """One results.jsonl line: K2VV's fields (same names and meanings), then k2vv's."""
    response = outcome.completion
    if response is None and outcome.response_class != "unanswered":
        response = {"error_type": outcome.error_class, "error_message": error or outcome.error_class, "error": None}
    return {
        "data_index": item.case.data_index, "request": item.body, "extra_body": extra_body,
        "response": response, "status": outcome.status, "finish_reason": outcome.finish_reason,
        "tool_calls_valid": outcome.tool_calls_valid, "last_run_at": outcome.at,
        "duration_ms": int((outcome.timing or {}).get("total_ms") or 0), "hash": k2vv_hash(item.body),
        "case_id": item.case.case_id, "sample": item.sample, "cache_key": item.key,
        "attempts": outcome.attempts, "error_class": outcome.error_class,
        "response_class": outcome.response_class, "calls": [c.to_json() for c in outcome.calls],
        "findings": list(outcome.findings),
    }


def utc_now() -> str:
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Runner:
    """Sends cache misses through a thread pool (one requests.Session per thread), retries what is
    worth retrying, stores final answers, journals every finished case, and stops early on a key
    or endpoint the provider rejects."""

    def __init__(self, provider: Provider, api_key: str | None, cache: ResponseCache, journal: Journal,
                 *, concurrency: int, timeout: float, retries: int, extra_body: dict,
                 progress: Callable[[RunState, bool], None] | None = None, seed: int | None = None):
        self.provider, self.cache, self.journal = provider, cache, journal
        self.concurrency, self.timeout, self.retries = concurrency, timeout, retries
        self.extra_body = extra_body
        self.progress = progress or (lambda state, final: None)
        self.secrets = tuple(s for s in (api_key,) if s)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                        "User-Agent": f"k2vv/{__version__}", **provider.headers}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.fatal: Fatal | None = None
        self.crash: BaseException | None = None
        self.any_success = False
        self._local = threading.local()
        self._lock = threading.Lock()
        self.state = RunState(0)

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            import requests
            session = self._local.session = requests.Session()
            session.trust_env = True
        return session

    def fetch(self, item: WorkItem) -> tuple[dict | None, str | None, int]:
        """(exchange, error_class, attempts): a final exchange, or the last error after the caps."""
        payload = canonical_json(item.body)
        stream = bool(item.body.get("stream"))
        started = time.monotonic()
        error = None
        for attempt in range(1, self.retries + 2):
            if self.stop.is_set():
                return None, error or "interrupted", attempt - 1
            with self._lock:
                self.state.sent += 1
            try:
                exchange = send_once(self._session(), self.provider.url, payload, self.headers, stream,
                                     self.timeout, self.secrets)
                exchange.update(v=CACHE_VERSION, attempts=attempt, at=utc_now())
                return exchange, None, attempt
            except Fatal as err:
                if not self.any_success:
                    self.fatal = self.fatal or err
                    self.stop.set()
                return None, err.error_class, attempt
            except Transient as err:
                error = err.error_class
                if attempt > self.retries or time.monotonic() - started > self.timeout * 2:
                    return None, error, attempt
                with self._lock:
                    self.state.retries += 1
                self.stop.wait(backoff_delay(attempt, err.retry_after, self.rng))
        return None, error, self.retries + 1

    def work(self, item: WorkItem) -> None:
        if self.stop.is_set():
            return
        exchange, error, attempts = self.fetch(item)
        if exchange is not None:
            if exchange["status"] == 200:
                self.any_success = True
            self.cache.set(item.key, exchange)
            outcome = score_exchange(item.case.body, exchange)
        elif error == "interrupted":
            return
        else:
            outcome = Outcome("truncated" if error == "truncated" else "failed", error_class=error,
                              attempts=attempts, at=utc_now())
        self.journal.write(result_record(item, outcome, self.extra_body))
        with self._lock:
            self.state.done += 1
            self.state.failed += not outcome.answered and outcome.response_class != "rejected"
        self.progress(self.state, False)

    def _finished(self, future, slots) -> None:
        """A worker that raised (disk full, a bug) stops the run loudly: never a silent drop."""
        slots.release()
        err = future.exception() if not future.cancelled() else None
        if err is not None and self.crash is None:
            self.crash = err
            self.stop.set()

    def run(self, items: list[WorkItem], already_cached: int) -> RunState:
        from concurrent.futures import ThreadPoolExecutor
        self.state = RunState(total=len(items) + already_cached, cached=already_cached,
                              done=already_cached, started=time.monotonic())
        slots = threading.BoundedSemaphore(self.concurrency * 2)
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="k2vv")
        try:
            for item in items:
                while not slots.acquire(timeout=0.2):
                    if self.stop.is_set():
                        break
                if self.stop.is_set():
                    break
                pool.submit(self.work, item).add_done_callback(lambda f: self._finished(f, slots))
        except KeyboardInterrupt:
            self.stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.progress(self.state, True)
        return self.state


# ==== 4. presentation ================================================================================

def _fmt(x, digits=4):
    return "n/a" if x is None else f"{x:.{digits}f}"


def _fmt_ci(ci):
    return "" if not ci else f" [{ci[0]:.3f}, {ci[1]:.3f}]"


def _fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def render_progress(state: RunState, now: float) -> str:
    """One progress line: done/total, cached, failed, rate of fresh answers, ETA."""
    fresh = state.done - state.cached
    elapsed = max(now - state.started, 1e-6)
    rate = fresh / elapsed
    left = state.total - state.done
    eta = _fmt_duration(left / rate) if rate > 0 and left else "-"
    return (f"{state.done}/{state.total} done · {state.cached} cached · {state.failed} failed · "
            f"{state.retries} retries · {rate:.1f}/s · ETA {eta}")


def render_summary(summary: dict) -> str:
    """The terminal view of a summary: what was measured, how sure, and the verdict."""
    info = summary["k2vv"]
    total = summary["success_count"] + summary["failure_count"]
    responses = summary["classes"]["responses"]
    lines = [f"k2vv {info['version']} · {info.get('provider')} · {info.get('model')} · {total} requests · "
             f"dataset {info.get('dataset')} (sha256 {str(info.get('dataset_sha256'))[:12]})"]
    missing = ", ".join(f"{responses[c]} {c}" for c in ("unanswered", "failed", "truncated", "rejected") if responses[c])
    lines.append(f"answered        {summary['success_count']}/{total}" + (f"  ({missing})" if missing else ""))
    lines.append(f"finish_reason   tool_calls {summary['finish_tool_calls']} · stop {summary['finish_stop']} · "
                 f"others {summary['finish_others']}" + (f" {summary['finish_others_detail']}" if summary['finish_others'] else ""))
    lines.append(f"schema_accuracy {_fmt(summary['schema_accuracy'])}{_fmt_ci(summary['schema_accuracy_ci'])}  "
                 f"({summary['successful_tool_call_count']} valid / "
                 f"{summary['successful_tool_call_count'] + summary['schema_validation_error_count']} triggered; "
                 f"empty_tool_calls {responses['empty_tool_calls']}, unscored {responses['unscored']})")
    base = summary.get("baseline")
    if base:
        lines.append(f"tool_call_f1    {_fmt(base['f1'])}{_fmt_ci(base['f1_ci'])}  precision {_fmt(base['precision'], 3)} "
                     f"recall {_fmt(base['recall'], 3)}  TP {base['TP']} FP {base['FP']} FN {base['FN']} TN {base['TN']}  "
                     f"coverage {_fmt(base['coverage'], 3)}  vs {base.get('name', 'baseline')}")
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
        lines.append(f"retried         {retried} answers needed more than one attempt {summary['attempts']}")
    if summary.get("trials"):
        t = summary["trials"]
        lines.append(f"trials          k={t['k']} · pass@k {_fmt(t['pass_at_k'])} · pass^k {_fmt(t['pass_hat_k'])}")
    verdict = summary["verdict"]
    lines.append(f"verdict         {verdict['status'].upper()} — " + "; ".join(verdict["reasons"]))
    return "\n".join(lines)


def render_providers(rows: list[dict]) -> str:
    header = ("provider", "source", "base_url", "model", "key variable", "key set")
    table = [header] + [(r["name"], r["source"], r["base_url"], r["model"], r["api_key_env"] or "-",
                         r["key_set"]) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


# ==== 5. CLI ==========================================================================================

@dataclass
class Job:
    """Everything `run` and `score` agree on: what is asked of whom, and where it is kept."""
    provider: Provider
    test_set: TestSet
    cases: list
    items: list
    trials: int
    extra_body: dict
    settings: dict
    cache_dir: Path
    out_dir: Path
    results_path: Path
    summary_path: Path
    thresholds: dict


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "provider"


def _extra_body_arg(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise K2vvError(f"--extra-body is not JSON: {err.msg} at column {err.colno} "
                        "(expected an object such as '{\"top_k\": 1}')") from None
    if not isinstance(value, dict):
        raise K2vvError(f"--extra-body is {_json_type(value)} (expected a JSON object)")
    return value


def resolve_provider_args(args) -> Provider:
    """--provider NAME (with --base-url/--model overriding it), or ad hoc --base-url + --model."""
    if args.provider:
        provider = resolve_provider(args.provider, args.providers)
        if args.base_url:
            provider.base_url = args.base_url
        if args.model:
            provider.model = args.model
        return provider
    if args.base_url and args.model:
        host = re.sub(r"^\w+://", "", args.base_url).split("/")[0]
        return Provider(name=_slug(host), base_url=args.base_url, model=args.model,
                        api_key_env="OPENAI_API_KEY", api_key_required=False, source="command line")
    raise K2vvError("choose a provider: --provider NAME (see `k2vv providers`) or --base-url URL --model MODEL")


def _public_url(url: str) -> str:
    return url.split("?", 1)[0]


def build_job(args, provider: Provider | None = None) -> Job:
    """Resolve flags, provider entry and test set into a Job; checks everything before any effect."""
    provider = provider or resolve_provider_args(args)
    test_set = load_test_set(args.dataset)
    cases = test_set.cases[: args.limit] if args.limit else test_set.cases
    temperature = args.temperature if args.temperature is not None else provider.temperature
    max_tokens = args.max_tokens if args.max_tokens is not None else provider.max_tokens
    extra_body = deep_merge(provider.extra_body or {}, _extra_body_arg(args.extra_body))
    trials = args.trials
    headers = provider.public_headers()
    items = []
    for case in cases:
        body = prepare_request(case.body, provider.model, temperature, max_tokens, extra_body,
                               args.normalize_tool_ids)
        for sample in range(trials):
            items.append(WorkItem(case, sample, body, cache_key(provider.url, body, headers, sample)))
    temps = [it.body.get("temperature") for it in items if isinstance(it.body.get("temperature"), (int, float))]
    typical_temp = Counter(temps).most_common(1)[0][0] if temps else None
    out_dir = Path(args.out) if args.out else Path("runs") / _slug(provider.name)
    settings = {"temperature": temperature, "max_tokens": max_tokens, "extra_body": extra_body,
                "trials": trials, "limit": args.limit, "normalize_tool_ids": bool(args.normalize_tool_ids),
                "headers": sorted(headers)}
    return Job(provider, test_set, cases, items, trials, extra_body, settings,
               default_cache_dir(args.cache), out_dir,
               Path(args.output) if args.output else out_dir / "results.jsonl",
               Path(args.summary) if args.summary else out_dir / "summary.json",
               default_thresholds(typical_temp, args.min_f1, args.min_schema_accuracy))


def score_items(items: list, cache: ResponseCache) -> dict:
    """{(case_id, sample): Outcome} for every item, from the cache alone (no network, ever)."""
    outcomes = {}
    for item in items:
        outcomes[(item.case.case_id, item.sample)] = score_exchange(item.case.body, cache.get(item.key))
    return outcomes


def resolve_baseline(args, job: Job, cache: ResponseCache) -> tuple[dict | None, dict | None]:
    """({case_id: BaselineAnswer}, description) from --baseline NAME|FILE, or (None, None)."""
    spec = args.baseline
    if not spec:
        return None, None
    if spec == "official" and job.test_set.k2vv_results is not None:
        answers, stats = load_k2vv_results(job.test_set.k2vv_results, job.cases, f"{job.test_set.name}:results")
        return answers, {"name": "official", "source": "k2vv results in the test-set archive", **stats}
    if os.path.exists(spec) and not os.path.isdir(spec):
        with open(spec, encoding="utf-8", errors="replace") as fh:
            answers, stats = load_k2vv_results(fh.read().splitlines(), job.cases, spec)
        if not answers:
            raise K2vvError(f"{spec}: no line matches a case of {job.test_set.name} "
                            f"({stats['unmatched']} unknown data_index, {stats['mismatched']} different requests)")
        return answers, {"name": os.path.basename(spec), "source": "k2vv results file", **stats}
    base_provider = resolve_provider(spec, args.providers)
    base_job = build_job(args, base_provider)
    firsts = [it for it in base_job.items if it.sample == 0]
    answers, cached = {}, 0
    for item in firsts:
        exchange = cache.get(item.key)
        if exchange is not None:
            cached += 1
            answers[item.case.case_id] = baseline_of(score_exchange(item.case.body, exchange))
    if not cached:
        raise K2vvError(f"baseline {spec!r} has no cached answers for this test set in {job.cache_dir}; "
                        f"run `k2vv run --provider {spec}` with the same test set and flags first")
    return answers, {"name": spec, "source": "cache", "matched": cached, "unmatched": len(firsts) - cached,
                     "mismatched": 0}


def summary_of(args, job: Job, cache: ResponseCache) -> tuple[dict, dict]:
    """Score the cache and build summary.json (the same function for `run` and `score`)."""
    outcomes = score_items(job.items, cache)
    baseline, baseline_info = resolve_baseline(args, job, cache)
    info = {"provider": job.provider.name, "base_url": _public_url(job.provider.base_url),
            "model": job.provider.model, "dataset": job.test_set.name, "dataset_sha256": job.test_set.sha256,
            "cases": len(job.cases), "settings": job.settings}
    summary = summarise(job.cases, outcomes, trials=job.trials, baseline=baseline, baseline_info=baseline_info,
                        thresholds=job.thresholds, info=info)
    return summary, outcomes


def _report_damage(cache: ResponseCache) -> None:
    if cache.damaged:
        print(f"k2vv: {len(cache.damaged)} damaged cache entries (re-fetched by the next run): "
              + "; ".join(cache.damaged[:5]), file=sys.stderr)


def _emit(args, summary: dict) -> None:
    print(json.dumps(summary, indent=2, ensure_ascii=False) if args.json else render_summary(summary))


def finalize_results(job: Job, outcomes: dict) -> None:
    """Rewrite results.jsonl once at the end: one line per (case, trial), answers re-scored from
    the cache, the newest journal line kept for what has no answer (K2VV dedups the same way)."""
    last_failure = {}
    if job.results_path.exists():
        with open(job.results_path, encoding="utf-8", errors="replace") as fh:
            for text in fh:
                try:
                    rec = json.loads(text)
                except ValueError:
                    continue  # a line cut by a crash: the cache has what matters
                if isinstance(rec, dict) and "cache_key" in rec:
                    last_failure[rec["cache_key"]] = rec
    tmp = job.results_path.with_name(job.results_path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for item in job.items:
            outcome = outcomes[(item.case.case_id, item.sample)]
            if outcome.response_class == "unanswered" and item.key in last_failure:
                record = last_failure[item.key]
            else:
                record = result_record(item, outcome, job.extra_body)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, job.results_path)


def _progress_printer(stream=None):
    """A progress callback: a redrawn line on a terminal, a plain line every 10 s otherwise."""
    stream = stream or sys.stderr
    tty = stream.isatty()
    last = [0.0]

    def show(state: RunState, final: bool) -> None:
        now = time.monotonic()
        if not final and now - last[0] < (0.2 if tty else 10.0):
            return
        last[0] = now
        line = render_progress(state, now)
        stream.write(("\r" + line + "\x1b[K" + ("\n" if final else "")) if tty else line + "\n")
        stream.flush()
    return show


def cmd_run(args) -> int:
    job = build_job(args)
    api_key = provider_key(job.provider, args.api_key)
    if not api_key and job.provider.api_key_env:
        print(f"k2vv: note: {job.provider.api_key_env} is not set; sending without an API key", file=sys.stderr)
    concurrency = args.concurrency or job.provider.concurrency or 5
    timeout = args.timeout or job.provider.timeout or 600.0
    job.out_dir.mkdir(parents=True, exist_ok=True)
    with open_cache(job.cache_dir) as cache:
        if args.refresh:
            todo, cached = job.items, 0
        else:
            todo = [it for it in job.items if cache.get(it.key) is None]
            cached = len(job.items) - len(todo)
        _report_damage(cache)
        seen, unique = set(), []
        for it in todo:  # identical bodies share one answer: send each key once
            if it.key not in seen:
                seen.add(it.key)
                unique.append(it)
        journal = Journal(job.results_path)
        runner = Runner(job.provider, api_key, cache, journal, concurrency=concurrency, timeout=timeout,
                        retries=args.retries, extra_body=job.extra_body,
                        progress=None if args.quiet else _progress_printer())
        interrupted = False
        try:
            if unique:
                print(f"k2vv: {len(unique)} to send, {cached} cached · {job.provider.name} "
                      f"({_public_url(job.provider.url)}) · concurrency {concurrency}", file=sys.stderr)
                runner.run(unique, cached)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            journal.close()
        if runner.crash is not None:
            raise runner.crash
        if runner.fatal is not None:
            status = runner.fatal.status
            hint = (f"check the key in {job.provider.api_key_env or 'OPENAI_API_KEY'}" if status in (401, 403)
                    else f"check --base-url: {_public_url(job.provider.url)} was not found")
            print(f"k2vv: the provider answered HTTP {status} before any success; stopped after "
                  f"{runner.state.sent} requests ({hint})", file=sys.stderr)
            return EXIT_USAGE
        summary, outcomes = summary_of(args, job, cache)
        finalize_results(job, outcomes)
    write_json_atomic(job.summary_path, summary)
    _emit(args, summary)
    if interrupted or runner.stop.is_set():
        resume = " ".join(["k2vv"] + [a for a in (args.argv or [])])
        print(f"k2vv: interrupted; answers so far are cached. Resume with: {resume}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if summary["classes"]["responses"]["unanswered"]:
        print(f"k2vv: {summary['classes']['responses']['unanswered']} requests have no answer yet; "
              "run the same command again to retry them", file=sys.stderr)
    return exit_code_of(summary["verdict"])


def cmd_score(args) -> int:
    job = build_job(args)
    with open_cache(job.cache_dir, readonly=True) as cache:
        summary, _ = summary_of(args, job, cache)
        _report_damage(cache)
    write_json_atomic(job.summary_path, summary)
    _emit(args, summary)
    return exit_code_of(summary["verdict"])


def lint_cases(cases: list, path: str) -> list[tuple[int, str, str, str]]:
    """(line, level, kind, message) for dataset problems: schemas that do not compile or use keywords
    k2vv cannot enforce, drafts, tool-call ids in history, `_input` roles, malformed historical
    arguments, duplicate cases. 'problem' makes calls unscored or replays wrong; 'note' informs."""
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
            params = fn.get("parameters")
            compiled = tool_schema(params)
            where = f"tools[{i}] {fn.get('name')!r}"
            if compiled.unscored:
                out.append((line, "problem", "unscored schema", f"{where}: {compiled.unscored}; its calls are unscored"))
            if isinstance(params, dict):
                draft = schema_draft(params)
                if draft != DRAFT07:
                    out.append((line, "note", f"$schema {draft}", f"{where}: $schema {draft}" +
                                (" (desugared to draft-07)" if draft in ("2019-09", "2020-12") else "")))
                used = schema_keywords(params)
                if "prefixItems" in used and draft not in ("2019-09", "2020-12"):
                    out.append((line, "problem", "prefixItems under draft-07", f"{where}: prefixItems without a 2020-12 $schema is ignored "
                                                 "under draft-07 (add $schema or use items: [...])"))
        bad_ids = 0
        for j, msg in enumerate(case.body.get("messages") or ()):
            if msg.get("role") == "_input":
                out.append((line, "note", "_input role", f"messages[{j}] role _input (sent as system)"))
            for k, call in enumerate(msg.get("tool_calls") or () if msg.get("role") == "assistant" else ()):
                if not isinstance(call, dict):
                    continue
                if not id_re.match(str(call.get("id", ""))):
                    bad_ids += 1
                args = (call.get("function") or {}).get("arguments")
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
    findings = lint_cases(test_set.cases, test_set.name)
    problems = [f for f in findings if f[1] == "problem"]
    notes = Counter(f[2] for f in findings if f[1] == "note")
    for line, level, _, message in findings:
        if level == "problem" or args.verbose:
            print(f"{test_set.name}:{line}: {level}: {message}")
    if notes and not args.verbose:
        print(f"{sum(notes.values())} notes (show them with --verbose): " +
              ", ".join(f"{k} ×{n}" for k, n in notes.most_common()))
    distinct = len({sha256_hex(canonical_json(t.get("function", {}).get("parameters"))) for c in test_set.cases
                    for t in c.body.get("tools") or () if isinstance(t, dict)})
    print(f"{test_set.name}: {len(test_set.cases)} cases, {distinct} distinct tool schemas, "
          f"{len(problems)} problems, sha256 {test_set.sha256}")
    return EXIT_FAIL if problems else EXIT_PASS


def cmd_providers(args) -> int:
    rows = []
    for name, (entry, source) in sorted(known_providers(args.providers).items()):
        env = entry.get("api_key_env")
        key_set = "yes" if env and os.environ.get(env) else ("not needed" if not entry.get("api_key_required", True)
                                                              else "NO")
        rows.append({"name": name, "source": source, "base_url": entry.get("base_url", ""),
                     "model": entry.get("model", ""), "api_key_env": env, "key_set": key_set})
    rows.append({"name": "openrouter:<slug>", "source": "preset", "base_url": PRESETS["openrouter"]["base_url"],
                 "model": PRESETS["openrouter"]["model"], "api_key_env": "OPENROUTER_API_KEY",
                 "key_set": "yes" if os.environ.get("OPENROUTER_API_KEY") else "NO"})
    print(json.dumps(rows, indent=2) if args.json else render_providers(rows))
    return EXIT_PASS


EXAMPLES = {
    "run": "examples:\n  k2vv run --provider moonshot\n  k2vv run samples.jsonl --base-url http://127.0.0.1:8000/v1 "
           "--model kimi-k2 --concurrency 16\n  k2vv run --provider openrouter:fireworks --baseline moonshot",
    "score": "examples:\n  k2vv score --provider moonshot\n  k2vv score samples.jsonl --provider x --cache /mnt/copied-cache "
             "--baseline official",
    "lint": "examples:\n  k2vv lint\n  k2vv lint samples.jsonl --verbose",
    "providers": "examples:\n  k2vv providers\n  k2vv providers --providers ./team-providers.toml",
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
    if network:
        p.add_argument("--api-key", help="API key (discouraged: visible in `ps`; use the provider's env variable)")
        p.add_argument("--concurrency", type=int, help="parallel requests (default: provider's or 5)")
        p.add_argument("--timeout", type=float, help="seconds per request (default 600)")
        p.add_argument("--retries", type=int, default=6, help="retries after the first attempt (default 6)")
        p.add_argument("--incremental", action="store_true", help="accepted for K2VV; k2vv is always incremental")
        p.add_argument("--refresh", action="store_true", help="ignore cached answers and ask again")
        p.add_argument("--quiet", action="store_true", help="no progress lines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="k2vv", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="exit codes: 0 pass · 1 fail · 2 usage/input/setup error · "
                                            "3 inconclusive or incomplete · 130 interrupted")
    parser.add_argument("--version", action="store_true", help="print the version and the bundled dataset's sha256")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, handler, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES.get(name),
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
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on a usage error
    args.argv = argv
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
    if getattr(args, "trials", 1) < 1 or (getattr(args, "limit", None) or 1) < 1:
        parser.error("--trials and --limit must be at least 1")
    if getattr(args, "concurrency", None) is not None and args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if getattr(args, "retries", 0) < 0:
        parser.error("--retries must be 0 or more")
    try:
        return args.handler(args)
    except InputErrors as err:
        print(str(err), file=sys.stderr)
        files = sorted({e.path for e in err.errors})
        print(f"k2vv: {len(err.errors)} problems in {', '.join(files)}; nothing was sent", file=sys.stderr)
        return err.exit_code
    except K2vvError as err:
        print(f"k2vv: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("k2vv: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_PASS


if __name__ == "__main__":
    sys.exit(main())
