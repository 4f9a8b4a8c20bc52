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
        ({"ollama_environment": {"OLLAMA_HOST": "0.0.0.0"}}, "ollama_environment.OLLAMA_HOST = '0.0.0.0'",
         "set from its own key ollama_host"),
        ({"ollama_host": "localhost.lan:11434"}, "ollama_host = 'localhost.lan:11434'", "ollama_allow_remote"),
        ({"developer_users": ["root"]}, "developer_users.0 = 'root'", "a system account"),
        ({"claude_projects": {"dev": ["/etc/app"]}, "developer_users": ["dev"]}, "claude_projects.dev.0 = '/etc/app'",
         "a system path (/etc holds the system's configuration)"),
        ({"model_parameters": {"stop": ["END\u2028"]}}, "model_parameters.stop.0 = 'END\\u2028'", "printable"),
        ({"model_parameters": {"seed": 2**40}}, "model_parameters.seed = 1099511627776", "less than or equal"),
        ({"model_parameters": {"num_ctx": 8192}}, "model_parameters.num_ctx", "unknown key"),
        ({"claude_version": "stable"}, "claude_version = 'stable'", "not a version number"),
    ],
)
def test_bad_values_name_host_key_value_and_expectation(data, key, expected):
    with pytest.raises(ConfigError) as info:
        validate_host_data("ws-dana", data)
    message = str(info.value)
    assert "host ws-dana" in message and key in message and expected in message


@pytest.mark.parametrize("host_port", ["127.0.0.1:11434", "127.0.0.2:11434", "127.255.0.9:8080", "[::1]:11434",
                                       "localhost:11434"])
def test_loopback_addresses_need_no_permission(host_port):
    assert validate_host_data("h", {"ollama_host": host_port}).ollama_host == host_port


@pytest.mark.parametrize("host_port", ["localhost.lan:11434", "127.0.0.1.nip.io:11434", "127.1:11434",
                                       "localhost.:11434", "[::]:11434", "[::ffff:7f00:1]:11434",
                                       "0.0.0.0:11434", "10.0.0.5:11434", "ws-dana.lan:11434"])
def test_anything_else_needs_allow_remote(host_port):
    with pytest.raises(ConfigError, match="beyond loopback"):
        validate_host_data("h", {"ollama_host": host_port})
    assert validate_host_data("h", {"ollama_host": host_port, "ollama_allow_remote": True}).ollama_host == host_port


def test_realistic_server_environment_is_accepted():
    env = {
        "OLLAMA_MODELS": "/srv/ollama/models", "CUDA_VISIBLE_DEVICES": "0,1", "OLLAMA_CONTEXT_LENGTH": "65536",
        "OLLAMA_MAX_LOADED_MODELS": "2", "OLLAMA_MAX_QUEUE": "512", "OLLAMA_GPU_OVERHEAD": "536870912",
        "OLLAMA_LOAD_TIMEOUT": "10m", "OLLAMA_SCHED_SPREAD": "1", "OLLAMA_DEBUG": "2", "OLLAMA_NOPRUNE": "true",
        "OLLAMA_LLM_LIBRARY": "cuda_v12", "OLLAMA_NEW_ENGINE": "1", "ROCR_VISIBLE_DEVICES": "GPU-4f5e6a7b8c9d0e1f",
        "HIP_VISIBLE_DEVICES": "0", "GPU_DEVICE_ORDINAL": "0", "HSA_OVERRIDE_GFX_VERSION": "10.3.0",
        "HTTPS_PROXY": "http://proxy.internal:3128", "HTTP_PROXY": "http://proxy.internal:3128",
        "NO_PROXY": "localhost,127.0.0.1,.internal,10.0.0.0/8",
    }
    assert validate_host_data("h", {"ollama_environment": env}).ollama_environment == env


@pytest.mark.parametrize("models", ["/var/lib/ollama/models", "/home/dana/ollama-models", "/Users/ana/.ollama/models",
                                    "/data/ollama", "/var/home/dana/models"])
def test_model_store_outside_system_trees_is_accepted(models):
    validate_host_data("h", {"ollama_environment": {"OLLAMA_MODELS": models}})


def test_model_store_path_is_normalized():
    """models.py puts its staging directory next to the store: a trailing '/' must not move it inside."""
    config = validate_host_data("h", {"ollama_environment": {"OLLAMA_MODELS": "/srv/ollama/models/"}})
    assert config.ollama_environment == {"OLLAMA_MODELS": "/srv/ollama/models"}


def test_every_refused_server_variable_is_named_with_its_reason():
    with pytest.raises(ConfigError) as info:
        validate_host_data("h", {"ollama_environment": {"LD_PRELOAD": "/tmp/x.so", "OLLAMA_ORIGINS": "*",
                                                        "CUDA_VISIBLE_DEVICES": "0"}})
    lines = str(info.value).splitlines()
    assert lines[1:] == [
        "  ollama_environment.LD_PRELOAD = '/tmp/x.so': refused: read by the dynamic loader: it would load other "
        "code into the server",
        "  ollama_environment.OLLAMA_ORIGINS = '*': refused: lets web pages in any browser on the machine call the "
        "API (cross-origin requests)",
    ]


@pytest.mark.parametrize("project", ["/home/dana/src/app", "/Users/ana/code/app", "/var/home/dana/src", "/srv/app",
                                     "/opt/projects/app", "/Volumes/Work/src", "/mnt/data/src", "/home/dana/src/app/"])
def test_project_directories_of_developers_are_accepted(project):
    config = validate_host_data("h", {"developer_users": ["dana"], "claude_projects": {"dana": [project]}})
    assert config.claude_projects["dana"] == (project.rstrip("/"),)


def test_projects_of_two_users_may_share_a_prefix_but_not_a_tree():
    data = {"developer_users": ["dana", "eli"],
            "claude_projects": {"dana": ["/srv/app", "/srv/app/lib"], "eli": ["/srv/app2"]}}
    validate_host_data("h", data)
    with pytest.raises(ConfigError, match="claude_projects.eli.0 = '/srv/app/lib': inside dana's project"):
        validate_host_data("h", {**data, "claude_projects": {"dana": ["/srv/app"], "eli": ["/srv/app/lib"]}})


def test_bundle_dir_keeps_its_own_rules():
    """The bundle is on the control machine: any absolute directory there."""
    validate_host_data("h", {"bundle_dir": "/var/cache/localcode-bundle"}, for_deploy=False)


def test_model_parameters_within_bounds_are_accepted():
    params = {"stop": ["<|im_end|>", "</s>", "User:"], "seed": 42, "num_predict": 4096, "temperature": 0.2}
    config = validate_host_data("h", {"model_parameters": params})
    assert dict(config.model_parameters.items())["stop"] == ("<|im_end|>", "</s>", "User:")


@pytest.mark.parametrize(("data", "shown"), [
    ({"mirror_url": "https://dev:hunter2@mirror.internal/b"}, "mirror_url = 'https://***@mirror.internal/b'"),
    ({"mirror_url": "https://dev:hunter2@mirror internal"}, "mirror_url = 'https://***@mirror internal'"),
    ({"claude_npm_registry": "https://dev:hunter2@npm.internal/"}, "'https://***@npm.internal/'"),
    ({"ollama_environment": {"HTTPS_PROXY": "dev:hunter2@proxy:3128"}}, "'dev:***@proxy:3128'"),
    ({"ollama_environment": {"NO_PROXY": "https://dev:hunter2@x y"}}, "'https://***@x y'"),
])
def test_credentials_are_refused_and_never_echoed(data, shown):
    with pytest.raises(ConfigError) as info:
        validate_host_data("h", data)
    assert shown in str(info.value) and "hunter2" not in str(info.value)


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
