"""The organisation's managed settings: what in them wins over claude-local (pure)."""

from __future__ import annotations

import json

from localcode.claude import forced_by_policy


def test_a_forced_provider_endpoint_or_model_is_reported():
    managed = {"env": {"CLAUDE_CODE_USE_BEDROCK": "1", "ANTHROPIC_BASE_URL": "https://gw.corp", "DISABLE_UPDATES": "1",
                       "CLAUDE_CODE_USE_VERTEX": "0"}, "model": "claude-sonnet-4-5", "permissions": {}}
    assert forced_by_policy(json.dumps(managed)) == ["env ANTHROPIC_BASE_URL=https://gw.corp",
                                                     "env CLAUDE_CODE_USE_BEDROCK=1", "model claude-sonnet-4-5"]


def test_ordinary_or_unreadable_managed_settings_force_nothing():
    for text in ("", "{}", '{"env": {"DISABLE_UPDATES": "1"}}', "{broken", "[]", '{"env": []}'):
        assert forced_by_policy(text) == [], text
