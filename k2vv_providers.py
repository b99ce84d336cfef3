"""k2vv_providers — who a run talks to: presets, providers files, the key, the URL (DESIGN §4).

A provider comes from a preset, a `[providers.NAME]` table of k2vv.toml or
~/.config/k2vv/providers.toml (checked against schemas/provider.json), or --base-url/--model. Keys
come from environment variables only and never appear in a message. Imports nothing from k2vv: the
file layer hands over the bundled schema (`use_provider_schema`).
"""
from __future__ import annotations

import json
import math
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# The endpoints k2vv speaks (DESIGN §12): chat is the verifier's own; the others are translated to
# the chat shape by k2vv_wire, so one parser scores them all.
APIS = {"chat": "/chat/completions", "completions": "/completions", "responses": "/responses"}


class ProviderError(Exception):
    """A provider the user must fix (unknown, incomplete, a bad file, a missing key): one line, exit 2."""
    exit_code = 2


_read_bundled: Callable[[str], bytes] | None = None


def use_provider_schema(read_bundled: Callable[[str], bytes]) -> None:
    """Give this module the reader of k2vv's bundled files (schemas/provider.json)."""
    global _read_bundled
    _read_bundled = read_bundled


def public_url(url: str) -> str:
    """A URL fit to print or store: no query string, no user:password@ (either may hold a key)."""
    return re.sub(r"^(\w+://)[^/@]*@", r"\1", url.split("?", 1)[0])


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
    api: str = "chat"  # the endpoint a run speaks (APIS): set by --api / --use_raw_completions

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + APIS[self.api]

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
        raise ProviderError(f"{path}: cannot read ({err.strerror or err})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ProviderError(f"{path}: not valid TOML: {err}") from None


_PROVIDER_CHECK = None


def check_provider_entry(name: str, entry) -> list[str]:
    """Problems of one `[providers.NAME]` table against schemas/provider.json, each naming the bad
    key and what was expected; plus the one rule a schema cannot say: no secrets in headers."""
    global _PROVIDER_CHECK
    if _PROVIDER_CHECK is None:
        import fastjsonschema
        _PROVIDER_CHECK = fastjsonschema.compile(json.loads(_read_bundled("schemas/provider.json")),
                                                 use_formats=False, use_default=False, fast_fail=False)
    table = f"[providers.{name}]"
    problems = []
    try:
        _PROVIDER_CHECK(entry)
    except Exception as err:  # noqa: BLE001 - JsonSchemaValuesException (all) or ValueException (one)
        for e in getattr(err, "errors", [err]):
            where = (getattr(e, "name", "") or "data")[len("data"):]
            message = (getattr(e, "message", "") or str(e))[len(getattr(e, "name", "") or ""):].strip()
            if getattr(e, "rule", None) == "additionalProperties":
                message = f"has unknown keys (expected only {', '.join(PROVIDER_FIELDS)}): " + message
            problems.append(f"{table}{where}: {message}")
    if isinstance(entry, dict) and isinstance(entry.get("headers"), dict):
        for key, value in entry["headers"].items():
            if _SECRET_HEADER_RE.search(key):
                problems.append(f"{table}.headers.{key}: looks like a secret "
                                "(expected secrets only from the environment: use api_key_env)")
            problem = header_problem(key, value)
            if problem:
                problems.append(f"{table}.headers.{key}: {problem}")
    if isinstance(entry, dict):
        for key in ("timeout", "temperature", "concurrency", "max_tokens"):
            if isinstance(entry.get(key), float) and not math.isfinite(entry[key]):
                problems.append(f"{table}.{key}: {entry[key]} is not a finite number")
    return problems


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


def header_problem(name, value) -> str | None:
    """Why an HTTP header cannot be sent as given (None when it can): the name must be an RFC 9110
    token, the value Latin-1 text without line breaks (http.client raises on anything else)."""
    if not isinstance(name, str) or not _HEADER_NAME.match(name):
        return "not a valid header name (letters, digits and !#$%&'*+.^_`|~- only)"
    if not isinstance(value, str):
        return "the value is not a string"
    if any(c in value for c in "\r\n\0"):
        return "the value contains a line break or NUL"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return "the value has characters outside Latin-1, which HTTP headers cannot carry"
    return None


def known_providers(explicit_file: str | None) -> dict:
    """name -> (entry, source) from the provider files and the presets (files win)."""
    found = {name: (dict(entry), "preset") for name, entry in PRESETS.items()}
    for path in reversed(provider_files(explicit_file)):
        if not path.exists():
            if explicit_file:
                raise ProviderError(f"{path}: no such providers file")
            continue
        table = _load_toml(path).get("providers", {})
        if not isinstance(table, dict):
            raise ProviderError(f"{path}: `providers` must be a table of [providers.NAME] entries")
        problems = [p for name, entry in table.items() for p in check_provider_entry(name, entry)]
        if problems:
            raise ProviderError(f"{path}: {len(problems)} problem{'s' * (len(problems) > 1)} in the providers\n"
                            + "\n".join(f"{path}: {p}" for p in problems))
        found.update((name, (entry, str(path))) for name, entry in table.items())
    return found


def resolve_provider(name: str, explicit_file: str | None) -> Provider:
    known = known_providers(explicit_file)
    if name in known:
        entry, source = known[name]
    elif name.startswith("openrouter:") and len(name) > len("openrouter:"):
        slug = name.split(":", 1)[1]
        entry, source = dict(known["openrouter"][0]), "preset"
        extra = dict(entry.get("extra_body") or {})
        routing = extra.get("provider") if isinstance(extra.get("provider"), dict) else {}
        entry["extra_body"] = dict(extra, provider=dict(routing, only=[slug], allow_fallbacks=False))
    else:
        names = ", ".join(sorted(known) + ["openrouter:<slug>"])
        raise ProviderError(f"unknown provider {name!r}; known providers: {names} "
                        "(or use --base-url and --model)")
    for key in ("base_url", "model"):
        if not entry.get(key):
            raise ProviderError(f"provider {name!r} ({source}) has no {key}")
    fields = {k: entry[k] for k in PROVIDER_FIELDS if k in entry}
    return Provider(name=name, source=source, **fields)


def api_key_for(provider: Provider, cli_key: str | None = None) -> str | None:
    """The API key, from --api-key or the provider's environment variable; a required key that is
    missing, or one with spaces or control characters (a CRLF file), stops everything before a
    single request (exit 2). The message names where the key came from, never the key."""
    key = cli_key or (os.environ.get(provider.api_key_env) if provider.api_key_env else None)
    where = "--api-key" if cli_key else f"the environment variable {provider.api_key_env}"
    if not key and provider.api_key_required:
        if not provider.api_key_env:
            raise ProviderError(f"provider {provider.name!r} ({provider.source}) needs an API key but names no "
                                "variable to read it from: add api_key_env = \"NAME_OF_VARIABLE\" to its entry "
                                "(or api_key_required = false for an endpoint without keys); nothing was sent")
        raise ProviderError(f"provider {provider.name!r} needs an API key: set {where} (nothing was sent)")
    if key and (key != key.strip() or any(ord(c) < 33 or ord(c) > 126 for c in key)):
        raise ProviderError(f"the API key in {where} contains spaces, control or non-ASCII characters (a line "
                            "break from a file?); fix it (nothing was sent)")
    return key


def check_base_url(url: str, source: str) -> str:
    """An http(s) URL with a host, or a usage error naming where it came from (requests would
    otherwise fail every attempt of every request as if the network were down)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderError(f"{source}: {public_url(url)!r} is not an http:// or https:// URL with a host "
                        "(expected e.g. --base-url http://127.0.0.1:8000/v1)")
    return url
