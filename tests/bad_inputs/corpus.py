"""Invalid inventory / group_data values: each must stop the run with a message naming the host
and the key (and what was expected), exit non-zero, and change no host.

Each case: (id, host data, text the error must contain besides the host name)."""

from __future__ import annotations

NOT_TOOLS = {"tag": "x/y:1b", "rank": 1, "rank_basis": "t", "active_params_b": 1.0, "download_bytes": 1,
             "weights_bytes": 1, "kv_bytes_per_token_f16": 1, "kv_fixed_bytes": 0, "max_context": 131072,
             "capabilities": ["completion"], "min_ollama": "0.14.3",
             "sources": {k: "t" for k in ("size", "kv", "max_context", "capabilities", "min_ollama", "active_params_b")}}

CASES: list[tuple[str, dict, str]] = [
    # wrong types and ranges
    ("num_ctx-type", {"num_ctx": "lots"}, "num_ctx = 'lots'"),
    ("num_ctx-small", {"num_ctx": 1000}, "num_ctx = 1000"),
    ("num_ctx-huge", {"num_ctx": 10**9}, "num_ctx = 1000000000"),
    ("num_parallel-zero", {"num_parallel": 0}, "num_parallel = 0"),
    ("gpu_reserve-negative", {"gpu_reserve_mib": -1}, "gpu_reserve_mib = -1"),
    ("allow_cpu-type", {"allow_cpu": "sometimes"}, "allow_cpu = 'sometimes'"),
    ("kv-type", {"kv_cache_type": "q2"}, "kv_cache_type = 'q2'"),
    ("temperature-type", {"model_parameters": {"temperature": "hot"}}, "model_parameters.temperature = 'hot'"),
    ("network-value", {"network": "wifi"}, "network = 'wifi'"),
    ("install-method", {"claude_install_method": "curl|sh"}, "claude_install_method = 'curl|sh'"),
    # unknown keys
    ("unknown-key", {"modle": "qwen3-coder:30b"}, "modle = 'qwen3-coder:30b': unknown key (did you mean 'model'?)"),
    ("unknown-key-typo", {"ollama_verison": "0.30.0"}, "ollama_verison"),
    ("unknown-parameter", {"model_parameters": {"num_ctx": 8192}}, "model_parameters.num_ctx"),
    # models: unknown, and shell metacharacters / injection
    ("model-unknown", {"model": "nosuch:1b"}, "model = 'nosuch:1b': not in the catalog"),
    ("model-semicolon", {"model": "qwen3-coder:30b; rm -rf /"}, "model = 'qwen3-coder:30b; rm -rf /'"),
    ("model-subshell", {"model": "$(reboot):x"}, "model = '$(reboot):x'"),
    ("model-backticks", {"model": "`id`:latest"}, "model = '`id`:latest'"),
    ("model-traversal", {"model": "../../etc/passwd:x"}, "model = '../../etc/passwd:x'"),
    ("preference-unknown", {"model_preferences": ["ghost:1b"]}, "model_preferences"),
    ("digest-bad", {"model_digests": {"gpt-oss:20b": "sha256:zzz"}}, "model_digests.gpt-oss:20b = 'sha256:zzz'"),
    ("extra-model-no-tools", {"extra_models": [NOT_TOOLS]}, "extra_models.0.capabilities"),
    # user names and paths
    ("user-space", {"developer_users": ["Bad User"]}, "developer_users.0 = 'Bad User'"),
    ("user-injection", {"developer_users": ["dev; rm -rf ~"]}, "developer_users.0 = 'dev; rm -rf ~'"),
    ("user-missing", {"developer_users": ["ghost"]}, "['ghost'] do not exist"),
    ("project-relative", {"claude_projects": {"dev": ["src/app"]}}, "claude_projects.dev.0 = 'src/app'"),
    ("project-subshell", {"claude_projects": {"dev": ["/home/dev/$(id)"]}}, "claude_projects.dev.0 = '/home/dev/$(id)'"),
    ("project-traversal", {"claude_projects": {"dev": ["/home/dev/../../etc"]}}, "without '..'"),
    ("project-missing", {"claude_projects": {"dev": ["/home/dev/nowhere"]}}, "['/home/dev/nowhere'] do not exist"),
    ("project-stranger", {"claude_projects": {"eve": ["/srv"]}}, "users ['eve'] are not in developer_users"),
    ("bundle-relative", {"bundle_dir": "bundles/x"}, "bundle_dir = 'bundles/x'"),
    ("bundle-missing", {"model_source": "bundle", "bundle_dir": "/nonexistent/bundle"}, "no bundle.json"),
    ("alias-injection", {"claude_alias": "claude local; rm"}, "claude_alias = 'claude local; rm'"),
    # URLs
    ("url-scheme", {"ollama_url_template": "ftp://x/{version}/{file}"}, "ollama_url_template = 'ftp://x/{version}/{file}'"),
    ("url-no-file", {"ollama_url_template": "https://x/{version}"}, "ollama_url_template = 'https://x/{version}'"),
    ("url-injection", {"ollama_url_template": "https://x/{version}/{file}; curl evil|sh"}, "ollama_url_template"),
    ("claude-url-backtick", {"claude_url_template": "http://x/{version}/{file}`id`"}, "claude_url_template"),
    ("mirror-injection", {"mirror_url": "http://m/x;rm"}, "mirror_url = 'http://m/x;rm'"),
    ("mirror-missing", {"model_source": "mirror"}, "mirror_url = None"),
    ("host-no-port", {"ollama_host": "localhost"}, "ollama_host = 'localhost'"),
    ("host-wildcard", {"ollama_host": "0.0.0.0:11434"}, "beyond loopback"),
    # versions
    ("version-word", {"ollama_version": "latest-ish"}, "ollama_version = 'latest-ish'"),
    ("version-prefix", {"ollama_min_version": "v0.14"}, "ollama_min_version = 'v0.14'"),
    ("version-below-floor", {"ollama_version": "0.13.0"}, "below ollama_min_version"),
    ("claude-version-word", {"claude_version": "stable"}, "claude_version = 'stable'"),
    # server environment
    ("keep-alive", {"ollama_keep_alive": "forever"}, "ollama_keep_alive = 'forever'"),
    ("env-managed", {"ollama_environment": {"OLLAMA_HOST": "0.0.0.0"}}, "set from their own keys"),
    ("env-name", {"ollama_environment": {"lowercase": "x"}}, "ollama_environment.lowercase"),
    ("env-quote", {"ollama_environment": {"HTTPS_PROXY": 'http://a"b'}}, "ollama_environment.HTTPS_PROXY"),
    ("airgapped-internet", {"network": "airgapped", "ollama_source": "internet", "claude_source": "internet",
                            "model_source": "internet"}, "needs 'bundle' or 'mirror' sources"),
]

# Cases only a connected host can reveal (accounts and directories exist or not).
ON_HOST = {"user-missing", "project-missing"}
