"""Managed blocks and JSON key edits leave everything we don't own byte-identical."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localcode.textedit import BEGIN, END, JsonEditError, apply_block, set_json

USER_SETTINGS = """{
    "$schema": "https://json.schemastore.org/claude-code-settings.json",
    "permissions": {"allow": ["Bash(npm test:*)"], "deny": []},
    "theme":   "dark",
    "env": {
        "EDITOR": "vim",
        "ANTHROPIC_BASE_URL": "https://old.example"
    },
    "unicode": "caf\\u00e9 \\"quoted\\" , {braces}"
}
"""


def test_set_json_changes_only_our_values():
    out = set_json(USER_SETTINGS, ("env",), {"ANTHROPIC_BASE_URL": "http://127.0.0.1:11434", "DISABLE_UPDATES": "1"})
    out = set_json(out, (), {"model": "localcode/qwen3-coder:30b-128k"})
    doc = json.loads(out)
    assert doc["env"] == {"EDITOR": "vim", "ANTHROPIC_BASE_URL": "http://127.0.0.1:11434", "DISABLE_UPDATES": "1"}
    assert doc["model"] == "localcode/qwen3-coder:30b-128k"
    # Every line we don't own is byte-identical and in its order (a trailing comma may be added
    # to the member before an insertion).
    ours = ("ANTHROPIC_BASE_URL", "DISABLE_UPDATES", '"model"')
    original = [line for line in USER_SETTINGS.splitlines() if not any(o in line for o in ours)]
    result = [line for line in out.splitlines() if not any(o in line for o in ours)]
    assert [line.rstrip(",") for line in result] == [line.rstrip(",") for line in original]
    assert sum(a != b for a, b in zip(result, original)) <= 2


def test_equal_values_change_nothing():
    once = set_json(USER_SETTINGS, ("env",), {"DISABLE_UPDATES": "1"})
    assert set_json(once, ("env",), {"DISABLE_UPDATES": "1"}) == once
    assert set_json(USER_SETTINGS, ("env",), {"EDITOR": "vim"}) == USER_SETTINGS


def test_missing_objects_are_created_in_the_documents_style():
    assert json.loads(set_json("", ("env",), {"A": "1"})) == {"env": {"A": "1"}}
    assert set_json('{"a": 1}', ("env",), {"A": "1"}) == '{"a": 1, "env": {"A": "1"}}'
    nested = set_json('{\n  "projects": {\n    "/x": {}\n  }\n}\n', ("projects", "/home/u/p"),
                      {"hasTrustDialogAccepted": True})
    assert nested == ('{\n  "projects": {\n    "/x": {},\n    "/home/u/p": {\n'
                      '      "hasTrustDialogAccepted": true\n    }\n  }\n}\n')


@pytest.mark.parametrize("bad", ["{", "[1, 2]", '{"env": "not an object"}', "// comment\n{}"])
def test_refuses_what_it_cannot_edit_safely(bad):
    with pytest.raises(JsonEditError):
        set_json(bad, ("env",), {"A": "1"})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5), st.sampled_from([None, 2, 4, "\t"]),
       st.dictionaries(st.sampled_from(["A", "B", "model"]), json_values, min_size=1, max_size=3))
def test_other_keys_survive_any_document(doc, indent, ours):
    text = json.dumps(doc, indent=indent)
    out = set_json(text, ("env",), ours) if not isinstance(doc.get("env", {}), dict) is False else None
    if out is None:
        return
    result = json.loads(out)
    assert {k: v for k, v in result.items() if k != "env"} == {k: v for k, v in doc.items() if k != "env"}
    env_before = doc.get("env", {})
    assert result["env"] == {**env_before, **ours}
    assert set_json(out, ("env",), ours) == out


def test_block_appended_then_replaced_in_place():
    rc = "# my bashrc\nexport PATH=$HOME/bin:$PATH\n"
    once = apply_block(rc, "alias claude-local='env A=1 claude'")
    assert once.startswith(rc) and once.endswith(f"{BEGIN}\nalias claude-local='env A=1 claude'\n{END}\n")
    with_after = once + "alias ll='ls -l'\n"
    twice = apply_block(with_after, "alias claude-local='env A=2 claude'")
    assert twice == with_after.replace("A=1", "A=2")
    assert apply_block(twice, "alias claude-local='env A=2 claude'") == twice


def test_block_in_a_file_without_trailing_newline_and_in_an_empty_file():
    assert apply_block("x=1", "y") == f"x=1\n\n{BEGIN}\ny\n{END}\n"
    assert apply_block("", "y") == f"{BEGIN}\ny\n{END}\n"
