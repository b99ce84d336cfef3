"""k2vv's own schema rules, one behaviour each: which drafts are read, how 2020-12 is desugared, how
`$ref`s are resolved, how ECMA-262 patterns run on Python's `re`. The suite (test_schema_suite.py)
covers what it can; these cover the cases it does not, and name the rule when one breaks."""
import pytest

import k2vv
from conftest import call_verdict

OBJ = {"type": "object"}


@pytest.mark.parametrize("uri, draft", [
    ("http://json-schema.org/draft-07/schema#", k2vv.DRAFT07),
    ("http://json-schema.org/draft-07/schema", k2vv.DRAFT07),
    ("http://json-schema.org/draft-04/schema#", "http://json-schema.org/draft-04/schema#"),
    ("https://json-schema.org/draft/2020-12/schema", "2020-12"),
    ("https://json-schema.org/draft/2020-12/schema#", "2020-12"),
    ("https://json-schema.org/draft/2019-09/schema", "2019-09"),
])
def test_standard_metaschemas_name_their_draft(uri, draft):
    assert k2vv.schema_draft({"$schema": uri}) == draft
    assert not k2vv.tool_schema({**OBJ, "$schema": uri}).unscored


@pytest.mark.parametrize("uri", [
    "http://localhost:1234/draft2020-12/metaschema-no-validation.json",  # merely contains "2020-12"
    "https://example.com/draft-07/schema#",
    "http://json-schema.org/draft/2020-12/schema",  # http: not the 2020-12 meta-schema's URI
    "https://json-schema.org/draft-07/schema#",
])
def test_any_other_metaschema_is_custom_and_unscored(uri):
    schema = {**OBJ, "$schema": uri, "properties": {"n": {"minimum": 10}}}
    assert k2vv.tool_schema(schema).unscored == \
        f"custom meta-schema {uri!r} is not judged (k2vv reads the standard drafts only)"
    assert call_verdict(schema, {"n": 1}) == "unscored"
