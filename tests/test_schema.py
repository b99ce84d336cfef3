"""Compiling tool schemas from a test set someone else wrote: nothing in a schema may run code,
fetch a URL, read a file or crash k2vv. Hostile inputs form a table, as in fastjsonschema's
tests/test_security.py."""
import builtins
import http.server
import json
import threading

import pytest

import k2vv
import k2vv_judge
from conftest import call_verdict

MARK = "K2VV_PWNED"
# Each payload, if it ever ran, would set builtins.K2VV_PWNED.
RUN = f"__import__('builtins').__setattr__('{MARK}', 1)"
HOSTILE = {
    "dependencies_key_breakout": {"type": "object", "dependencies": {f"\\\" and ''' and {RUN}:pass#": ["b"]}},
    "property_name_quote": {"type": "object", "properties": {f'"); {RUN}; ("': {"type": "string"}},
                            "required": [f'"); {RUN}; ("']},
    "property_name_backslash": {"type": "object", "properties": {f"\\\"\n{RUN}\n#": {"type": "integer"}}},
    "pattern_quote": {"type": "object", "properties": {"a": {"type": "string", "pattern": f'"); {RUN}; #'}}},
    "pattern_properties_key": {"type": "object", "patternProperties": {f"^a\"'''{RUN}": {"type": "string"}}},
    "enum_code": {"type": "object", "properties": {"a": {"enum": [f"'+{RUN}+'", f'"+{RUN}+"']}}},
    "const_nul": {"type": "object", "properties": {"a": {"const": "x\x00y"}}},
    "description_newlines": {"type": "object", "description": f"\n{RUN}\n", "properties": {}},
    "default_code": {"type": "object", "properties": {"a": {"type": "string", "default": f"{RUN}"}}},
    "ref_name_breakout": {"type": "object", "definitions": {f'x"]; {RUN}; #': {"type": "string"}},
                          "properties": {"a": {"$ref": f'#/definitions/x"]; {RUN}; #'}}},
    "format_code": {"type": "object", "properties": {"a": {"type": "string", "format": f'"+{RUN}+"'}}},
    "deeply_nested": None,  # built below: 150 levels, past Python's indentation limit of 100
    "redos_free_bad_regex": {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?P<"}}},
}


_deep = {}
for _ in range(150):
    _deep = {"type": "object", "properties": {"a": _deep}}
HOSTILE["deeply_nested"] = _deep


@pytest.fixture(autouse=True)
def no_mark():
    yield
    assert not hasattr(builtins, MARK), "a schema ran code"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_schema_compiles_to_nothing_that_runs(name):
    compiled = k2vv_judge.compile_tool_schema(HOSTILE[name])
    if compiled.validate is not None:
        for instance in ({}, {"a": "x", "b": 1}, {f'"); {RUN}; ("': "x"}, {"a": 1}):
            k2vv_judge.check_instance(compiled, instance)
    else:
        assert compiled.unscored  # refused: the dataset's problem, reported, never a crash
    assert not hasattr(builtins, MARK)


def test_guard_rejects_the_fastjsonschema_2_21_injection(monkeypatch):
    """fastjsonschema <= 2.21.2 escaped only quotes (notes §2e). Reproduce that escaper: the code it
    generates for the payload is valid Python that calls __import__ — the guard must refuse it."""
    import fastjsonschema.generator as generator
    monkeypatch.setattr(generator.CodeGenerator, "e", lambda self, s: str(s).replace('"', '\\"'))
    compiled = k2vv_judge.compile_tool_schema(HOSTILE["dependencies_key_breakout"])
    assert compiled.validate is None and "__import__" in compiled.unscored


@pytest.mark.parametrize("source", [
    "import os\ndef validate(data): return os.system('true')",
    "def validate(data): return eval('1')",
    "def validate(data): return (lambda: 1)()",
    "class X: pass\ndef validate(data): return data",
    "def validate(data): return data.__class__",
    "def validate(data): return open('/etc/hostname')",
])
def test_guard_refuses_code_outside_the_allowlist(source):
    with pytest.raises(ValueError):
        k2vv_judge._check_generated_code(compile(source, "<test>", "exec"))


class _Counter(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):
        type(self).hits += 1
        body = b'{"type": "string"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_remote_refs_are_never_fetched_nor_files_read(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"type": "string", "description": "SECRET-CONTENT"}')
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for ref in [f"http://127.0.0.1:{server.server_port}/schema.json", f"file://{secret}",
                    "https://example.invalid/x.json", "urn:x:y", "other.json#/a"]:
            compiled = k2vv_judge.compile_tool_schema({"type": "object", "properties": {"a": {"$ref": ref}}})
            assert compiled.validate is None and compiled.unscored, ref
            assert "SECRET-CONTENT" not in compiled.unscored
        assert _Counter.hits == 0
    finally:
        server.shutdown()


def test_every_open_data_schema_compiles_without_false_alarm():
    """The guard's allowlist costs no real schema: all ~7,600 tool schemas of the open data compile."""
    import gzip
    from conftest import ROOT
    refused = []
    for name in ("bfcl-live.jsonl.gz", "k2vv-dialect.jsonl.gz"):
        for line in gzip.decompress((ROOT / "tests/data" / name).read_bytes()).decode().splitlines():
            for tool in json.loads(line).get("tools", []):
                compiled = k2vv_judge.tool_schema(tool["function"].get("parameters"))
                if compiled.unscored and "generated code" in compiled.unscored:
                    refused.append((tool["function"]["name"], compiled.unscored))
    assert refused == []


def test_the_schema_memo_forgets_its_oldest_entries_and_verdicts_stay(monkeypatch):
    monkeypatch.setattr(k2vv_judge._SCHEMA_CACHE, "limit", 3)
    schemas = [{"type": "object", "properties": {f"p{i}": {"type": "integer"}}, "required": [f"p{i}"]}
               for i in range(10)]
    cases = [(s, {f"p{i}": i}, "valid") for i, s in enumerate(schemas)] + \
            [(s, {f"p{i}": "x"}, "invalid") for i, s in enumerate(schemas)] + \
            [(s, {}, "invalid") for s in schemas]
    for schema, instance, expected in cases:
        assert call_verdict(schema, instance) == expected
        assert len(k2vv_judge._SCHEMA_CACHE) <= 3
