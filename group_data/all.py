"""Defaults for every host, generated from HostConfig (localcode/settings.py) by `make defaults`
(`localcode defaults`): change a default or its description there, never here. Override per group
(group_data/<group>.py) or per host (inventory data); every key is validated before any host is
touched."""

# Developer accounts to wire Claude Code for (login names that exist on the host).
developer_users = []
# "online" hosts download from the internet (or a mirror); "airgapped" hosts reach nothing.
network = "online"

# --- Sizing ---------------------------------------------------------------------------------------
# Overrides of the automatic choice (None = let sizing decide). Checked against the memory budget:
# an override that does not fit is applied with a warning, never silently.
model = None  # the model instead of the sizing's, e.g. "qwen3-coder:30b"
num_ctx = None  # the context length instead of the sizing's, e.g. 131072
kv_cache_type = None  # the KV cache type instead of the sizing's: "f16" | "q8_0" | "q4_0"
model_preferences = []  # Models to prefer, best first (the rest keep the catalog's order).
# Models to add to the catalog (same fields as localcode/catalog.yaml, every number with its
# source).
extra_models = []
# Smallest context worth running Claude Code with: its first request alone is ~12K tokens.
min_context = 65536
# KV cache types to consider, in order of preference (quantized ones force flash attention).
kv_cache_types = ["f16", "q8_0"]
gpu_reserve_mib = 457  # per GPU, kept free by Ollama (CUDA/ROCm)
metal_reserve_mib = 512  # kept free on Apple Silicon
# Apple Silicon only: the GPU memory limit (sysctl iogpu.wired_limit_mb) the deploy sets and keeps
# across reboots, and the sizing counts on. None leaves macOS's default (about 2/3 of RAM up to 36
# GiB, 3/4 above); "auto" = RAM minus os_reserve_gib (at most RAM minus 2 GiB, never below the
# default); or a size in GiB, at most RAM minus 2 GiB. Removing it restores the default.
apple_gpu_memory = None
# AMD GPUs: "auto" counts each card Ollama's ROCm build runs, natively or with the
# HSA_OVERRIDE_GFX_VERSION the server then gets (localcode/amd_gfx.yaml; an
# HSA_OVERRIDE_GFX_VERSION in ollama_environment wins over the table); "off" sizes the host
# without them and hides them from Ollama (ROCR_VISIBLE_DEVICES=-1, OLLAMA_VULKAN=0).
amd_gpu = "auto"
compute_buffer_mib = 2048  # llama.cpp compute graph; >= 0.30 uses batch 2048 above 32K
# RAM left to the OS and the developer's tools on CPU hosts (and on Macs by apple_gpu_memory
# "auto")
os_reserve_gib = 4.0
num_parallel = 1  # OLLAMA_NUM_PARALLEL: KV memory is multiplied by it
allow_cpu = True  # size CPU-only hosts (slow) instead of leaving them without a model
slow_max_active_params_b = 5.0  # on CPU / split hosts only MoE or small models (speed)

# --- Ollama ---------------------------------------------------------------------------------------
ollama_min_version = "0.14.3"  # the floor; raised to the chosen model's minimum
ollama_version = "0.30.0"  # the pinned target for installs and upgrades
ollama_upgrade = False  # upgrade hosts already at or above the floor to the target
ollama_downgrade = False  # with ollama_upgrade: also move hosts *down* to the target
# Where releases come from on the internet: {version} and {file} (ollama-linux-amd64.tar.zst,
# sha256sum.txt). `localcode bundle` fetches from here too, whatever the host's ollama_source.
ollama_url_template = "https://github.com/ollama/ollama/releases/download/v{version}/{file}"
ollama_host = "127.0.0.1:11434"  # loopback: the API has no authentication
ollama_allow_remote = False  # must be True for an ollama_host beyond loopback
ollama_keep_alive = "5m"  # OLLAMA_KEEP_ALIVE: how long an idle model stays loaded
# More server variables, e.g. {"CUDA_VISIBLE_DEVICES": "0", "HTTPS_PROXY": "http://proxy:3128"}:
# only Ollama's own tuning, GPU selection and proxy variables (listed in localcode/settings.py,
# each value checked); loader, PATH/HOME, OLLAMA_ORIGINS and the keys above are refused with a
# reason.
ollama_environment = {}

# --- Models ---------------------------------------------------------------------------------------
# PARAMETERs of the derived model besides num_ctx (which the sizing sets), e.g. {"temperature":
# 0.2, "top_p": 0.9}; empty keeps each model's own defaults.
model_parameters = {}
model_digests = {}  # pin base models by manifest digest: {"qwen3-coder:30b": "sha256:..."}
prune_models = False  # delete models that neither the sizing nor keep_models declares
keep_models = []  # models pruning must keep

# --- Claude Code ----------------------------------------------------------------------------------
claude_version = "2.1.330"  # pinned; `claude --version` is checked after install
claude_install_method = "native"  # "native" (verified binary), "npm", or "brew" (macOS cask)
# Where native binaries come from on the internet: {version} and {file} (manifest.json,
# linux-x64/claude, ...). `localcode bundle` fetches from here too, whatever the host's
# claude_source.
claude_url_template = "https://downloads.claude.ai/claude-code-releases/{version}/{file}"
claude_npm_registry = None  # npm method: a registry or mirror URL (None: npm's default)
claude_alias = "claude-local"  # the shell alias that runs Claude Code on the local model
# The local alias keeps its own profile (CLAUDE_CONFIG_DIR=~/<this>): `/model` choices made there
# never leak into the developer's cloud profile in ~/.claude.
claude_local_profile = ".claude-local"
# Project directories per developer user whose .claude/settings.json points at the local model:
# {"dana": ["/home/dana/src/app"]}
claude_projects = {}
claude_project_gitignore = False  # add .claude/settings.json to the project's .gitignore
claude_project_claude_md = False  # add a "Model setup" section to the project's CLAUDE.md
# permissions.defaultMode in the local profile and configured projects: "default" (ask before a
# tool's first use), "acceptEdits", "plan", "dontAsk", or "auto" (each checked action is first
# judged by a classifier request, which goes to the local model: slow, and the plan warns).
# bypassPermissions is refused.
claude_permission_mode = "default"

# --- Sources --------------------------------------------------------------------------------------
# "internet" (default), "bundle" (bundle_dir on the control machine, made by `localcode bundle`,
# pushed to hosts over SSH, only missing files) or "mirror" (hosts fetch from mirror_url, any
# static HTTP server serving a bundle directory; the control machine carries no bytes).
ollama_source = "internet"  # where the Ollama release comes from
claude_source = "internet"  # where Claude Code comes from
model_source = "internet"  # where base models come from
bundle_dir = None  # the bundle directory on the control machine, for the 'bundle' sources
mirror_url = None  # the URL serving a bundle directory, for the 'mirror' sources

# --- Pull mode ------------------------------------------------------------------------------------
# The host fetches the team configuration on a schedule and deploys itself on @local as root (a
# systemd timer, or a LaunchDaemon on macOS), recording each run in
# /var/lib/localcode/last-run.json.
# how often the host fetches pull_config_url and deploys itself on @local, e.g. "6h" (m, h, d; at
# least 15m). None: pull mode off (a timer left from before is removed).
pull_interval = None
# a random delay of up to this before each pull run, spreading a fleet's runs (systemd
# RandomizedDelaySec; on macOS a random sleep)
pull_splay = "30m"
# the team configuration (this repository with its inventory): a git URL, or an http(s) URL of a
# .tar.gz with <url>.sha256 beside it
pull_config_url = None
pull_config_branch = "main"  # the git branch a pull-mode host follows
# the inventory file inside the configuration that names this host
pull_inventory = "inventory/team.py"
# each pull run's status is PUT to <url>/<host>.json (any server that accepts PUT, e.g. nginx with
# WebDAV); `localcode doctor --reports DIR` reads the collected files
pull_report_url = None
# this host's name in the team inventory when the deploy runs on it as @local (onboarding and pull
# mode set it)
inventory_name = None
