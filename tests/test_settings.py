"""Inventory and group_data values are validated before any host is touched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from localcode.settings import ConfigError, HostConfig, validate_host_data, validate_inventory

REPO = Path(__file__).resolve().parents[1]


def group_data_defaults() -> dict:
    namespace: dict = {}
    exec((REPO / "group_data/all.py").read_text(), namespace)
    return {k: v for k, v in namespace.items() if not k.startswith("_")}


def test_group_data_all_matches_the_validated_defaults():
    documented = group_data_defaults()
    defaults = HostConfig().model_dump()
    assert set(documented) == set(defaults)
    config = validate_host_data("h", documented)
    assert config == HostConfig()


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"num_ctx": "lots"}, "num_ctx = 'lots'", "valid integer"),
        ({"model": "nosuch:1b"}, "model = 'nosuch:1b'", "not in the catalog"),
        ({"ollama_version": "latest-ish"}, "ollama_version = 'latest-ish'", "not a version number"),
        ({"model": "qwen3-coder:30b; rm -rf /"}, "model = 'qwen3-coder:30b; rm -rf /'", "Ollama model name"),
        ({"model": "$(reboot):x"}, "model = '$(reboot):x'", "Ollama model name"),
        ({"developer_users": ["ok", "../etc"]}, "developer_users.1 = '../etc'", "POSIX login name"),
        ({"kv_cache_type": "q2"}, "kv_cache_type = 'q2'", "'f16', 'q8_0' or 'q4_0'"),
        ({"num_parallel": 0}, "num_parallel = 0", "greater than or equal to 1"),
        ({"network": "wifi"}, "network = 'wifi'", "'online' or 'airgapped'"),
        ({"modle": "x"}, "modle = 'x'", "did you mean 'model'"),
        ({"ollama_version": "0.13.0"}, "ollama_version = '0.13.0'", "below ollama_min_version"),
        ({"model_preferences": ["ghost:1b"]}, "model_preferences", "not in the catalog"),
        ({"allow_cpu": "sometimes"}, "allow_cpu = 'sometimes'", "valid boolean"),
        ({"network": "airgapped"}, "network = 'airgapped'", "needs 'bundle' or 'mirror' sources"),
        ({"model_source": "bundle"}, "bundle_dir = None", "localcode bundle"),
        ({"model_source": "bundle", "bundle_dir": "/nonexistent/bundle"}, "bundle_dir = '/nonexistent/bundle'",
         "no bundle.json"),
        ({"claude_source": "mirror"}, "mirror_url = None", "serving a bundle directory"),
        ({"mirror_url": "http://m/x;rm -rf /"}, "mirror_url = 'http://m/x;rm -rf /'", "http(s) base URL"),
        ({"bundle_dir": "relative/dir"}, "bundle_dir = 'relative/dir'", "absolute directory path"),
        ({"claude_projects": {"dev": ["/srv/../etc"]}, "developer_users": ["dev"]}, "claude_projects.dev.0",
         "without '..'"),
        ({"ollama_host": "0.0.0.0:11434"}, "ollama_host = '0.0.0.0:11434'", "ollama_allow_remote"),
        ({"ollama_environment": {"OLLAMA_HOST": "0.0.0.0"}}, "ollama_environment", "set from their own keys"),
        ({"model_parameters": {"num_ctx": 8192}}, "model_parameters.num_ctx", "unknown key"),
        ({"claude_version": "stable"}, "claude_version = 'stable'", "not a version number"),
    ],
)
def test_bad_values_name_host_key_value_and_expectation(data, key, expected):
    with pytest.raises(ConfigError) as info:
        validate_host_data("ws-dana", data)
    message = str(info.value)
    assert "host ws-dana" in message and key in message and expected in message


def test_pyinfra_keys_are_not_ours():
    validate_host_data("h", {"ssh_user": "root", "ssh_port": 22, "_sudo": True})


def test_extra_models_join_the_catalog_and_preferences_reorder():
    extra = {
        "tag": "team/coder:7b", "rank": 1, "rank_basis": "ours", "active_params_b": 7.0,
        "download_bytes": 5 * 10**9, "weights_bytes": 5 * 10**9, "kv_bytes_per_token_f16": 57344,
        "kv_fixed_bytes": 0, "max_context": 131072, "capabilities": ["completion", "tools"],
        "min_ollama": "0.14.3",
        "sources": {k: "test" for k in ("size", "kv", "max_context", "capabilities", "min_ollama", "active_params_b")},
    }
    config = validate_host_data("h", {"extra_models": [extra], "model_preferences": ["gpt-oss:20b", "team/coder:7b"]})
    ranked = [m.tag for m in sorted(config.catalog().models, key=lambda m: m.rank)]
    assert ranked[:3] == ["gpt-oss:20b", "team/coder:7b", "devstral-small-2:24b"]


def test_extra_model_without_tools_is_rejected():
    bad = {"tag": "x/y:1b", "capabilities": ["completion"]}
    with pytest.raises(ConfigError, match="extra_models.0"):
        validate_host_data("h", {"extra_models": [bad]})


def test_inventory_error_lists_every_bad_host():
    with pytest.raises(ConfigError) as info:
        validate_inventory([("a", {"num_ctx": "x"}), ("b", {}), ("c", {"model": "no:1"})])
    text = str(info.value)
    assert "host a" in text and "host c" in text and "host b" not in text
    assert text.endswith("no host was changed.")


def test_bad_group_data_stops_the_pyinfra_run(tmp_path):
    """The real CLI: a bad value fails the run with our message and no traceback."""
    inventory = tmp_path / "inv.py"
    inventory.write_text('hosts = [("@local", {"num_ctx": "lots"})]\n')
    result = subprocess.run(
        [str(REPO / ".venv/bin/pyinfra"), str(inventory), "deploy.py", "--dry", "-y"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "num_ctx = 'lots'" in output and "Traceback" not in output
