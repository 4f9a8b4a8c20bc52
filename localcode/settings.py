"""Every value a deploy takes from inventory and group_data, validated before any host is
touched. A bad value stops the whole run with a message naming host, key, value and what was
expected."""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
from pathlib import Path
import re
import textwrap
import weakref
from typing import Annotated, Any, Callable, Literal

from packaging.version import Version
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails
from pyinfra.api.exceptions import PyinfraError

from .catalog import Catalog, CatalogEntry, ModelTag, VersionStr, effective_catalog
from .sizing import MiB, GiB, Override, Policy

# Accounts that services run as (Debian, Red Hat, macOS without its '_' prefix, Ollama's own):
# wiring writes shell files and settings as the user, so it must be a person. Hosts also check
# the uid; this list catches the usual names before any host is touched.
SYSTEM_ACCOUNTS = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data",
    "backup", "list", "irc", "gnats", "nobody", "nfsnobody", "adm", "halt", "shutdown", "operator", "ftp",
    "messagebus", "dbus", "sshd", "syslog", "uuidd", "tcpdump", "tss", "dnsmasq", "avahi", "colord", "polkitd",
    "rtkit", "pulse", "geoclue", "usbmux", "lightdm", "gdm", "chrony", "postfix", "sssd", "rpc", "rpcuser",
    "nginx", "apache", "mysql", "postgres", "redis", "ollama",
})
# macOS service accounts (_www, _spotlight, ...), Debian's (_apt, _chrony), systemd's dynamic ones.
SYSTEM_ACCOUNT_PREFIXES = ("_", "systemd-")


def _check_user_name(value: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
        raise ValueError("expected a POSIX login name (lowercase letters, digits, '_', '-'; at most 32)")
    if value in SYSTEM_ACCOUNTS or value.startswith(SYSTEM_ACCOUNT_PREFIXES):
        raise ValueError("a system account that services run as, not a developer's login")
    return value


UserName = Annotated[str, AfterValidator(_check_user_name)]


def _check_host_port(value: str) -> str:
    match = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})", value)
    if not match or not 1 <= int(match[2]) <= 65535:
        raise ValueError("expected host:port, e.g. 127.0.0.1:11434")
    return value


def is_loopback(host_port: str) -> bool:
    """A literal 127.0.0.0/8 address, [::1] or exactly localhost: any other name (localhost.lan)
    is resolved through DNS and may bind Ollama's unauthenticated API anywhere."""
    host = host_port.rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        if host.startswith("["):
            return ipaddress.IPv6Address(host[1:-1]).is_loopback
        return ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        return False


def _check_duration(value: str) -> str:
    if not re.fullmatch(r"-1|0|(\d{1,6}(ms|s|m|h))+", value):
        raise ValueError("expected a Go duration like 5m, 1h30m, 0 or -1 (keep loaded forever)")
    return value


def _check_plain(value: str) -> str:
    """Values written into unit files, plists and Modelfiles: one printable line that no quoting
    rule of theirs treats specially."""
    if not value.isprintable() or re.search(r'["\\$`]', value) or len(value) > 1024:
        raise ValueError("expected one line of printable text (at most 1024 characters) without quotes, "
                         "backslashes, '$' or '`'")
    return value


CREDENTIALS_REFUSED = ("credentials in a URL are refused (they would show in logs and on every host); "
                       "put them in a netrc file, .npmrc or the mirror's own configuration")


def _check_no_credentials(value: str) -> str:
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@", value):
        raise ValueError(CREDENTIALS_REFUSED)
    return value


def redact_credentials(text: str) -> str:
    """Hide the userinfo of URLs (and proxy-style user:password@host) in messages we print."""
    text = re.sub(r"(://)[^\s/?#@'\"]+@", r"\1***@", text)
    return re.sub(r"(?<![\w.%+~-])([\w.%+~-]+):[^\s/@'\"]+@", r"\1:***@", text)


OLLAMA_RELEASES = "https://github.com/ollama/ollama/releases/download/v{version}/{file}"
CLAUDE_RELEASES = "https://downloads.claude.ai/claude-code-releases/{version}/{file}"


def url_template(example: str):
    """A validator of release URL templates: http(s), exactly {version} and {file}."""
    def check(value: str) -> str:
        _check_no_credentials(value)
        fields = set(re.findall(r"{([^{}]*)}", value))
        if not re.fullmatch(r"https?://[^\s\"'`$;|&<>]+", value) or fields != {"version", "file"}:
            raise ValueError(f"expected an http(s) URL template with {{version}} and {{file}}, e.g. {example}")
        return value

    return AfterValidator(check)


ModelfileString = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_check_plain)]


class ModelParameters(BaseModel):
    """Modelfile PARAMETERs for the derived model (num_ctx comes from the sizing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(default=None, ge=0, le=5)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0, le=100000)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repeat_penalty: float | None = Field(default=None, ge=0, le=5)
    repeat_last_n: int | None = Field(default=None, ge=-1, le=1048576)
    presence_penalty: float | None = Field(default=None, ge=-5, le=5)
    frequency_penalty: float | None = Field(default=None, ge=-5, le=5)
    seed: int | None = Field(default=None, ge=-1, le=2**31 - 1)
    num_predict: int | None = Field(default=None, ge=-2, le=1048576)
    stop: Annotated[tuple[ModelfileString, ...], Field(max_length=16)] | None = None

    def items(self):
        return [(k, v) for k, v in self.model_dump().items() if v is not None]


def _check_absolute_dir(value: str) -> str:
    """Absolute and normalized (so that equal directories compare equal as strings), without
    characters a shell or a unit file would interpret."""
    if not value.startswith("/") or not re.fullmatch(r"[A-Za-z0-9._/@+-]+", value) or "//" in value \
            or any(part in (".", "..") for part in value.split("/")):
        raise ValueError("expected an absolute directory path in normal form (without '..', '.', '//', spaces "
                         "or shell characters)")
    return value.rstrip("/") or "/"


# Trees that are never a developer's project or a model store, with why; the longest matching
# tree decides, so None marks an ordinary place inside a system tree.
SYSTEM_TREES: dict[str, str | None] = {
    "/etc": "holds the system's configuration",
    **dict.fromkeys(("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"),
                    "holds installed system software"),
    "/boot": "holds the boot loader and kernels",
    **dict.fromkeys(("/dev", "/proc", "/sys"), "is a kernel file system"),
    "/run": "holds services' runtime state",
    "/root": "is the root account's home",
    "/var": "holds system state (logs, spools, databases, web roots)",
    "/var/home": None,        # the homes of image-based systems (Fedora Silverblue, Kinoite, ...)
    "/var/lib/ollama": None,  # the Ollama data directory of distribution packages
    **dict.fromkeys(("/tmp", "/var/tmp", "/Users/Shared"),
                    "is world-writable: any local user can create or replace a directory there first"),
    "/snap": "holds snap packages",
    "/nix": "is the Nix store",
    "/opt/homebrew": "holds Homebrew's installed software",
    "/System": "holds macOS system files",
    "/Library": "holds macOS system-wide settings and support files",
    "/Applications": "holds installed applications",
    "/private": "holds macOS system state (the real /etc, /var and /tmp)",
}
HOME_ROOTS = ("/home", "/Users", "/var/home")


def system_path_reason(path: str) -> str | None:
    """Why a normalized absolute path is no place for a developer's files or the model store."""
    if path == "/":
        return "the root directory: name a directory beneath it"
    tree = max((t for t in SYSTEM_TREES if path == t or path.startswith(t + "/")), key=len, default=None)
    if tree is not None and SYSTEM_TREES[tree] is not None:
        return f"a system path ({tree} {SYSTEM_TREES[tree]})"
    parent = path.rsplit("/", 1)[0] or "/"
    if parent == "/" or path in HOME_ROOTS:
        return "a directory shared by the whole machine: name a directory beneath it"
    if parent in HOME_ROOTS:
        return "a whole home directory: name a directory beneath it"
    return None


def _check_own_dir(value: str) -> str:
    """A project directory or the model store: a normalized path outside every system tree."""
    path = _check_absolute_dir(value)
    reason = system_path_reason(path)
    if reason:
        raise ValueError(reason)
    return path


def check_base_url(value: str) -> str:
    """A mirror's base URL, or one that `localcode bundle` fetches releases or models under."""
    _check_no_credentials(value)
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~/-]*)?", value):
        raise ValueError("expected an http(s) base URL like http://mirror.internal/localcode (no query, no spaces)")
    return value.rstrip("/")


INTERVAL = re.compile(r"^([1-9][0-9]{0,4})(m|h|d)$")
_INTERVAL_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def interval_seconds(value: str) -> int:
    """ "6h" -> 21600: a duration in minutes (m), hours (h) or days (d)."""
    match = INTERVAL.match(value)
    if not match:
        raise ValueError('expected a duration like "30m", "6h" or "1d"')
    return int(match[1]) * _INTERVAL_SECONDS[match[2]]


def check_pull_interval(value: str) -> str:
    if interval_seconds(value) < 15 * 60:
        raise ValueError("at least 15m: every run reads the whole host (facts, doctor)")
    return value


def check_splay(value: str) -> str:
    interval_seconds(value)
    return value


def check_config_url(value: str) -> str:
    """Where a pull-mode host fetches the team configuration: a git repository (https, http,
    ssh, scp-like user@host:path, or file:// for a local copy) or an http(s) tarball (.tar.gz,
    with <url>.sha256 beside it)."""
    _check_no_credentials(value)
    if not re.fullmatch(r"(https?|ssh|file)://[A-Za-z0-9.:/_~@+-]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._~/+-]+",
                        value):
        raise ValueError("expected a git URL (https://, ssh://, user@host:path, file:///) or an http(s) "
                         "URL of a .tar.gz; no query, no spaces")
    return value


def check_host_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}", value):
        raise ValueError("expected a host name like ws-dana.example.internal")
    return value


def _check_relative_path(value: str) -> str:
    parts = value.split("/")
    if not all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", p) for p in parts) or ".." in parts:
        raise ValueError("expected a path inside the configuration like inventory/team.py")
    return value


RelativePath = Annotated[str, AfterValidator(_check_relative_path)]


def check_branch(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}", value) or ".." in value or value.endswith((".lock", "/")):
        raise ValueError("expected a git branch name like main or release/2026")
    return value


def _check_registry_url(value: str) -> str:
    _check_no_credentials(value)
    if not re.fullmatch(r"https?://[A-Za-z0-9.:/_-]+", value):
        raise ValueError("expected an http(s) registry URL like https://registry.npmjs.org/")
    return value


def _matching(pattern: str, expected: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(expected)
        return value

    return check


def _whole_number(low: int, high: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not re.fullmatch(r"\d{1,15}", value) or not low <= int(value) <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return value

    return check


def _check_proxy_url(value: str) -> str:
    if "@" in value:  # Go also reads user:password@proxy without a scheme
        raise ValueError(CREDENTIALS_REFUSED)
    if not re.fullmatch(r"((https?|socks5h?)://)?[A-Za-z0-9.-]+(:\d{1,5})?/?", value):
        raise ValueError("expected a proxy URL like http://proxy.internal:3128")
    return value


_BOOLEAN = _matching(r"1|0|t|f|T|F|true|false|True|False|TRUE|FALSE", "expected 1, 0, true or false")
_DEVICES = _matching(r"[A-Za-z0-9-]{1,64}(,[A-Za-z0-9-]{1,64}){0,63}",
                     "expected GPU indexes or UUIDs separated by commas, e.g. 0,1 or GPU-4f5e...")
# The server variables of Ollama's envconfig that ollama_environment may set, each with its format.
OLLAMA_ENV_FORMATS: dict[str, Callable[[str], str]] = {
    "OLLAMA_MODELS": _check_own_dir,
    "OLLAMA_CONTEXT_LENGTH": _whole_number(0, 1048576),
    "OLLAMA_MAX_LOADED_MODELS": _whole_number(0, 64),
    "OLLAMA_MAX_QUEUE": _whole_number(1, 65536),
    "OLLAMA_GPU_OVERHEAD": _whole_number(0, 2**40),
    "OLLAMA_LOAD_TIMEOUT": _check_duration,
    "OLLAMA_SCHED_SPREAD": _BOOLEAN,
    "OLLAMA_NOPRUNE": _BOOLEAN,
    "OLLAMA_NEW_ENGINE": _BOOLEAN,
    "OLLAMA_VULKAN": _BOOLEAN,
    "OLLAMA_DEBUG": _matching(r"1|0|2|true|false", "expected 0, 1 (debug), 2 (trace), true or false"),
    "OLLAMA_LLM_LIBRARY": _matching(r"[a-z0-9_]{1,32}", "expected a runner library name like cpu_avx2 or cuda_v12"),
    "CUDA_VISIBLE_DEVICES": _DEVICES,
    "HIP_VISIBLE_DEVICES": _DEVICES,
    "ROCR_VISIBLE_DEVICES": _DEVICES,
    "GPU_DEVICE_ORDINAL": _DEVICES,
    "GGML_VK_VISIBLE_DEVICES": _DEVICES,
    "HSA_OVERRIDE_GFX_VERSION": _matching(r"\d{1,2}\.\d{1,2}\.\d{1,2}", "expected a gfx version like 10.3.0"),
    "HTTPS_PROXY": _check_proxy_url,
    "HTTP_PROXY": _check_proxy_url,
    "NO_PROXY": _matching(r"[A-Za-z0-9.*:/\[\]-]{1,255}(,[A-Za-z0-9.*:/\[\]-]{1,255}){0,63}",
                          "expected hosts, domains or CIDRs separated by commas"),
}
# Why the server variables people reach for are refused (any other name is refused too).
OLLAMA_ENV_REFUSED: dict[str, str] = {
    "OLLAMA_HOST": "set from its own key ollama_host (which keeps the API on loopback)",
    "OLLAMA_KEEP_ALIVE": "set from its own key ollama_keep_alive",
    "OLLAMA_NUM_PARALLEL": "set from its own key num_parallel (the sizing multiplies the KV cache by it)",
    "OLLAMA_FLASH_ATTENTION": "set from the sizing (choose the KV cache with kv_cache_type)",
    "OLLAMA_KV_CACHE_TYPE": "set from the sizing (choose it with kv_cache_type)",
    "OLLAMA_NO_CLOUD": "set from its own key network (air-gapped hosts get OLLAMA_NO_CLOUD=1)",
    "OLLAMA_ORIGINS": "lets web pages in any browser on the machine call the API (cross-origin requests)",
    "OLLAMA_REMOTES": "lets the server forward requests to other hosts",
    "OLLAMA_LIBRARY_PATH": "makes the server load its GPU libraries (code) from that directory",
    "OLLAMA_RUNNERS_DIR": "makes the server run its runners (code) from that directory",
    "OLLAMA_DEBUG_LOG_REQUESTS": "writes every request (the developer's code) to a temporary directory",
    "PATH": "decides which programs the server runs",
    "HOME": "moves the server's home (its key pair and default model store)",
    "SSL_CERT_FILE": "replaces the certificate authorities the server trusts for downloads",
    "SSL_CERT_DIR": "replaces the certificate authorities the server trusts for downloads",
}
OLLAMA_ENV_REFUSED_PREFIXES: dict[str, str] = {
    "LD_": "read by the dynamic loader: it would load other code into the server",
    "DYLD_": "read by macOS's dynamic loader: it would load other code into the server",
}


def check_server_variable(name: str, value: str) -> str:
    """One ollama_environment entry, normalized; the ValueError says why it is refused."""
    refused = OLLAMA_ENV_REFUSED.get(name) or next(
        (why for prefix, why in OLLAMA_ENV_REFUSED_PREFIXES.items() if name.startswith(prefix)), None)
    if refused:
        raise ValueError(f"refused: {refused}")
    if name not in OLLAMA_ENV_FORMATS:
        raise ValueError(f"not a server variable localcode lets you set; allowed: "
                         f"{', '.join(sorted(OLLAMA_ENV_FORMATS))}")
    return OLLAMA_ENV_FORMATS[name](_check_plain(value))


# No Mac has more memory: a larger apple_gpu_memory is a slip (MiB written for GiB, say).
GPU_MEMORY_MAX_GIB = 1024


def check_gpu_memory(value: Any) -> Any:
    """apple_gpu_memory without the host: None, "auto" or a plausible number of GiB. The bound
    that needs the host's RAM is checked once its facts are known (localcode/apple.py)."""
    if value is None or value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not (math.isfinite(value) and 1 <= value <= GPU_MEMORY_MAX_GIB):
        raise ValueError(f'expected None (macOS\'s default), "auto" (RAM minus os_reserve_gib) or a size in GiB '
                         f"from 1 to {GPU_MEMORY_MAX_GIB} (at most the host's RAM minus 2 GiB)")
    return value


# A bad item of a collection: (its location inside the key, its value, why).
ItemProblem = tuple[tuple[str | int, ...], Any, str]


def _refuse_items(title: str, problems: list[ItemProblem]) -> None:
    """Report each bad item of a collection under its own key (key.item = value: why)."""
    if problems:
        raise ValidationError.from_exception_data(title, [
            InitErrorDetails(type="value_error", loc=loc, input=value, ctx={"error": why})
            for loc, value, why in problems])


def _shared_project_problems(projects: dict[str, tuple[str, ...]]) -> list[ItemProblem]:
    """A project directory belongs to one developer: the same directory for two users, or one
    inside another user's, would let one developer's settings land in the other's tree."""
    problems: list[ItemProblem] = []
    seen: list[tuple[str, str]] = []
    for user, dirs in projects.items():
        for index, path in enumerate(dirs):
            for other, earlier in seen:
                if path == earlier:
                    why = "listed twice" if other == user else f"also a project directory of {other}"
                elif other == user:
                    continue
                elif path.startswith(earlier + "/"):
                    why = f"inside {other}'s project directory {earlier}"
                elif earlier.startswith(path + "/"):
                    why = f"contains {other}'s project directory {earlier}"
                else:
                    continue
                problems.append(((user, index), path, why))
                break
            seen.append((user, path))
    return problems


OwnDir = Annotated[str, AfterValidator(_check_own_dir)]
AbsoluteDir = Annotated[str, AfterValidator(_check_absolute_dir)]
Source = Literal["internet", "bundle", "mirror"]
SOURCE_KEYS = ("ollama_source", "claude_source", "model_source")
# Data keys that belong to pyinfra itself (connectors, global arguments), not to us.
PYINFRA_KEY_PREFIXES = ("ssh_", "fake_", "local_", "chroot_", "docker_", "podman_", "winrm_", "vagrant_",
                        "terraform_", "dockerssh_", "_")


class ConfigError(PyinfraError):
    """Invalid inventory or group_data; pyinfra prints it without a traceback and exits 1."""


class HostConfig(BaseModel):
    """The localcode keys of one host's data. Each field's default and description here are the
    only ones: group_data/all.py is generated from them (`localcode defaults`, `make defaults`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    developer_users: tuple[UserName, ...] = Field(
        (), description="Developer accounts to wire Claude Code for (login names that exist on the host).")
    network: Literal["online", "airgapped"] = Field(
        "online", description='"online" hosts download from the internet (or a mirror); "airgapped" hosts '
                              "reach nothing.")

    # Overrides of the sizing decision.
    model: ModelTag | None = Field(None, description='the model instead of the sizing\'s, e.g. "qwen3-coder:30b"')
    num_ctx: int | None = Field(
        None, ge=2048, le=1048576, description="the context length instead of the sizing's, e.g. 131072")
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] | None = Field(
        None, description='the KV cache type instead of the sizing\'s: "f16" | "q8_0" | "q4_0"')

    # Catalog and sizing policy.
    model_preferences: tuple[ModelTag, ...] = Field(
        (), description="Models to prefer, best first (the rest keep the catalog's order).")
    extra_models: tuple[CatalogEntry, ...] = Field(
        (), description="Models to add to the catalog (same fields as localcode/catalog.yaml, every number "
                        "with its source).")
    min_context: int = Field(
        65536, ge=16384, le=1048576,
        description="Smallest context worth running Claude Code with: its first request alone is ~12K tokens.")
    kv_cache_types: tuple[Literal["f16", "q8_0", "q4_0"], ...] = Field(
        ("f16", "q8_0"), min_length=1,
        description="KV cache types to consider, in order of preference (quantized ones force flash attention).")
    gpu_reserve_mib: int = Field(457, ge=0, le=65536, description="per GPU, kept free by Ollama (CUDA/ROCm)")
    metal_reserve_mib: int = Field(512, ge=0, le=65536, description="kept free on Apple Silicon")
    apple_gpu_memory: Literal["auto"] | float | None = Field(
        None,
        description='Apple Silicon only: the GPU memory limit (sysctl iogpu.wired_limit_mb) the deploy sets and '
                    'keeps across reboots, and the sizing counts on. None leaves macOS\'s default (about 2/3 of '
                    'RAM up to 36 GiB, 3/4 above); "auto" = RAM minus os_reserve_gib (at most RAM minus 2 GiB, '
                    "never below the default); or a size in GiB, at most RAM minus 2 GiB. Removing it restores "
                    "the default.")
    amd_gpu: Literal["auto", "off"] = Field(
        "auto",
        description='AMD GPUs: "auto" counts each card Ollama\'s ROCm build runs, natively or with the '
                    "HSA_OVERRIDE_GFX_VERSION the server then gets (localcode/amd_gfx.yaml; an "
                    "HSA_OVERRIDE_GFX_VERSION in ollama_environment wins over the table); \"off\" sizes the host "
                    "without them and hides them from Ollama (ROCR_VISIBLE_DEVICES=-1, OLLAMA_VULKAN=0).")
    compute_buffer_mib: int = Field(
        2048, ge=0, le=65536, description="llama.cpp compute graph; >= 0.30 uses batch 2048 above 32K")
    os_reserve_gib: float = Field(
        4.0, ge=0, le=1024,
        description='RAM left to the OS and the developer\'s tools on CPU hosts (and on Macs by apple_gpu_memory "auto")')
    num_parallel: int = Field(1, ge=1, le=64, description="OLLAMA_NUM_PARALLEL: KV memory is multiplied by it")
    allow_cpu: bool = Field(True, description="size CPU-only hosts (slow) instead of leaving them without a model")
    slow_max_active_params_b: float = Field(
        5.0, gt=0, le=1000, description="on CPU / split hosts only MoE or small models (speed)")

    # Ollama versions and server.
    ollama_min_version: VersionStr = Field("0.14.3", description="the floor; raised to the chosen model's minimum")
    ollama_version: VersionStr = Field("0.30.0", description="the pinned target for installs and upgrades")
    ollama_upgrade: bool = Field(False, description="upgrade hosts already at or above the floor to the target")
    ollama_downgrade: bool = Field(False, description="with ollama_upgrade: also move hosts *down* to the target")
    ollama_url_template: Annotated[str, url_template(OLLAMA_RELEASES)] = Field(
        OLLAMA_RELEASES,
        description="Where releases come from on the internet: {version} and {file} (ollama-linux-amd64.tar.zst, "
                    "sha256sum.txt). `localcode bundle` fetches from here too, whatever the host's ollama_source.")
    ollama_host: Annotated[str, AfterValidator(_check_host_port)] = Field(
        "127.0.0.1:11434", description="loopback: the API has no authentication")
    ollama_allow_remote: bool = Field(False, description="must be True for an ollama_host beyond loopback")
    ollama_keep_alive: Annotated[str, AfterValidator(_check_duration)] = Field(
        "5m", description="OLLAMA_KEEP_ALIVE: how long an idle model stays loaded")
    ollama_environment: dict[str, str] = Field(
        {}, description='More server variables, e.g. {"CUDA_VISIBLE_DEVICES": "0", "HTTPS_PROXY": '
                        '"http://proxy:3128"}: only Ollama\'s own tuning, GPU selection and proxy variables '
                        "(listed in localcode/settings.py, each value checked); loader, PATH/HOME, OLLAMA_ORIGINS "
                        "and the keys above are refused with a reason.")

    # Models on the host.
    model_parameters: ModelParameters = Field(
        ModelParameters(),
        description='PARAMETERs of the derived model besides num_ctx (which the sizing sets), e.g. '
                    '{"temperature": 0.2, "top_p": 0.9}; empty keeps each model\'s own defaults.')
    model_digests: dict[ModelTag, Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]] = Field(
        {}, description='pin base models by manifest digest: {"qwen3-coder:30b": "sha256:..."}')
    prune_models: bool = Field(False, description="delete models that neither the sizing nor keep_models declares")
    keep_models: tuple[ModelTag, ...] = Field((), description="models pruning must keep")

    # Claude Code.
    claude_version: VersionStr = Field("2.1.330", description="pinned; `claude --version` is checked after install")
    claude_install_method: Literal["native", "npm", "brew"] = Field(
        "native", description='"native" (verified binary), "npm", or "brew" (macOS cask)')
    claude_url_template: Annotated[str, url_template(CLAUDE_RELEASES)] = Field(
        CLAUDE_RELEASES,
        description="Where native binaries come from on the internet: {version} and {file} (manifest.json, "
                    "linux-x64/claude, ...). `localcode bundle` fetches from here too, whatever the host's "
                    "claude_source.")
    claude_npm_registry: Annotated[str, AfterValidator(_check_registry_url)] | None = Field(
        None, description="npm method: a registry or mirror URL (None: npm's default)")
    claude_alias: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")] = Field(
        "claude-local", description="the shell alias that runs Claude Code on the local model")
    claude_local_profile: Annotated[str, Field(pattern=r"^\.[a-z][a-z0-9._-]{0,30}$")] = Field(
        ".claude-local",
        description="The local alias keeps its own profile (CLAUDE_CONFIG_DIR=~/<this>): `/model` choices made "
                    "there never leak into the developer's cloud profile in ~/.claude.")
    claude_projects: dict[UserName, tuple[OwnDir, ...]] = Field(
        {}, description="Project directories per developer user whose .claude/settings.json points at the local "
                        'model: {"dana": ["/home/dana/src/app"]}')
    claude_project_gitignore: bool = Field(
        False, description="add .claude/settings.json to the project's .gitignore")
    claude_project_claude_md: bool = Field(
        False, description='add a "Model setup" section to the project\'s CLAUDE.md')
    claude_permission_mode: Literal["default", "acceptEdits", "plan", "dontAsk", "auto"] = Field(
        "default",
        description='permissions.defaultMode in the local profile and configured projects: "default" (ask before '
                    'a tool\'s first use), "acceptEdits", "plan", "dontAsk", or "auto" (each checked action is '
                    "first judged by a classifier request, which goes to the local model: slow, and the plan "
                    "warns). bypassPermissions is refused.")

    # Where Ollama, Claude Code and models come from.
    ollama_source: Source = Field("internet", description="where the Ollama release comes from")
    claude_source: Source = Field("internet", description="where Claude Code comes from")
    model_source: Source = Field("internet", description="where base models come from")
    bundle_dir: AbsoluteDir | None = Field(
        None, description="the bundle directory on the control machine, for the 'bundle' sources")
    mirror_url: Annotated[str, AfterValidator(check_base_url)] | None = Field(
        None, description="the URL serving a bundle directory, for the 'mirror' sources")

    # Pull mode: the host fetches the team's configuration and deploys itself on a schedule.
    pull_interval: Annotated[str, AfterValidator(check_pull_interval)] | None = Field(
        None, description='how often the host fetches pull_config_url and deploys itself on @local, e.g. "6h" '
                          "(m, h, d; at least 15m). None: pull mode off (a timer left from before is removed).")
    pull_splay: Annotated[str, AfterValidator(check_splay)] = Field(
        "30m", description="a random delay of up to this before each pull run, spreading a fleet's runs "
                           "(systemd RandomizedDelaySec; on macOS a random sleep)")
    pull_config_url: Annotated[str, AfterValidator(check_config_url)] | None = Field(
        None, description="the team configuration (this repository with its inventory): a git URL, or an "
                          "http(s) URL of a .tar.gz with <url>.sha256 beside it")
    pull_config_branch: Annotated[str, AfterValidator(check_branch)] = Field(
        "main", description="the git branch a pull-mode host follows")
    pull_inventory: RelativePath = Field(
        "inventory/team.py", description="the inventory file inside the configuration that names this host")
    pull_report_url: Annotated[str, AfterValidator(check_base_url)] | None = Field(
        None, description="each pull run's status is PUT to <url>/<host>.json (any server that accepts PUT, e.g. "
                          "nginx with WebDAV); `localcode doctor --reports DIR` reads the collected files")
    inventory_name: Annotated[str, AfterValidator(check_host_name)] | None = Field(
        None, description="this host's name in the team inventory when the deploy runs on it as @local "
                          "(onboarding and pull mode set it)")

    @field_validator("apple_gpu_memory", mode="before")
    @classmethod
    def _gpu_memory(cls, value: Any) -> Any:
        """Checked before pydantic's own parsing, which would take True or "12" for a number."""
        return check_gpu_memory(value)

    @field_validator("developer_users")
    @classmethod
    def _distinct_users(cls, users: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({u for u in users if users.count(u) > 1})
        if twice:
            raise ValueError(f"{twice} listed more than once")
        return users

    @field_validator("claude_projects")
    @classmethod
    def _one_owner_per_project(cls, projects: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        _refuse_items("claude_projects", _shared_project_problems(projects))
        return projects

    @field_validator("ollama_environment")
    @classmethod
    def _allowed_server_variables(cls, env: dict[str, str]) -> dict[str, str]:
        checked: dict[str, str] = {}
        problems: list[ItemProblem] = []
        for name, value in env.items():
            try:
                checked[name] = check_server_variable(name, value)
            except ValueError as exc:
                problems.append(((name,), value, str(exc)))
        _refuse_items("ollama_environment", problems)
        return checked

    def sources(self) -> dict[str, Source]:
        """Where each kind comes from, by its key."""
        return {key: getattr(self, key) for key in SOURCE_KEYS}

    def catalog(self) -> Catalog:
        return effective_catalog(self.extra_models, self.model_preferences)

    def policy(self) -> Policy:
        return Policy(
            min_context=self.min_context, kv_cache_types=self.kv_cache_types,
            gpu_reserve_bytes=self.gpu_reserve_mib * MiB, metal_reserve_bytes=self.metal_reserve_mib * MiB,
            compute_buffer_bytes=self.compute_buffer_mib * MiB, os_reserve_bytes=int(self.os_reserve_gib * GiB),
            num_parallel=self.num_parallel, allow_cpu=self.allow_cpu,
            slow_max_active_params_b=self.slow_max_active_params_b,
        )

    def override(self) -> Override:
        return Override(self.model, self.num_ctx, self.kv_cache_type)


# The generated group_data/all.py in sections: the key that opens each, its title and what
# the section's keys have in common.
SECTIONS: dict[str, tuple[str, str]] = {
    "model": ("Sizing", "Overrides of the automatic choice (None = let sizing decide). Checked against the "
                        "memory budget: an override that does not fit is applied with a warning, never silently."),
    "ollama_min_version": ("Ollama", ""),
    "model_parameters": ("Models", ""),
    "claude_version": ("Claude Code", ""),
    "pull_interval": ("Pull mode", "The host fetches the team configuration on a schedule and deploys itself "
                                   "on @local as root (a systemd timer, or a LaunchDaemon on macOS), recording "
                                   "each run in /var/lib/localcode/last-run.json."),
    "ollama_source": ("Sources", '"internet" (default), "bundle" (bundle_dir on the control machine, made by '
                                 "`localcode bundle`, pushed to hosts over SSH, only missing files) or "
                                 '"mirror" (hosts fetch from mirror_url, any static HTTP server serving a bundle '
                                 "directory; the control machine carries no bytes)."),
}
GROUP_DATA_WIDTH = 100
GROUP_DATA_HEADER = '''"""Defaults for every host, generated from HostConfig (localcode/settings.py) by `make defaults`
(`localcode defaults`): change a default or its description there, never here. Override per group
(group_data/<group>.py) or per host (inventory data); every key is validated before any host is
touched."""'''


def python_literal(value: Any) -> str:
    """A default as Python source in group_data's style: lists for tuples, double quotes."""
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_none=True)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(map(python_literal, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{python_literal(k)}: {python_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, GROUP_DATA_WIDTH - 2, initial_indent="# ", subsequent_indent="# ",
                         break_on_hyphens=False) if text else []


def group_data_defaults() -> str:
    """group_data/all.py from HostConfig alone: every key, its default and what it does, so the
    documented defaults can never differ from the ones a deploy applies."""
    defaults = HostConfig()
    lines = [GROUP_DATA_HEADER, ""]
    for name, field in HostConfig.model_fields.items():
        if name in SECTIONS:
            title, note = SECTIONS[name]
            lines += ["", f"# --- {title} ".ljust(GROUP_DATA_WIDTH, "-"), *_comment(note)]
        assignment = f"{name} = {python_literal(getattr(defaults, name))}"
        inline = f"{assignment}  # {field.description}"
        lines += [inline] if len(inline) <= GROUP_DATA_WIDTH else [*_comment(field.description or ""), assignment]
    return "\n".join(lines) + "\n"


def our_keys(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not k.startswith(PYINFRA_KEY_PREFIXES)}


def validate_host_data(host_name: str, data: dict[str, Any], for_deploy: bool = True) -> HostConfig:
    """Validate one host's merged data; ConfigError lists every problem with host and key.
    `for_deploy` also requires what a deploy reads on the control machine (the bundle)."""
    ours = our_keys(data)
    try:
        config = HostConfig.model_validate(ours)
    except ValidationError as exc:
        raise ConfigError(format_errors(host_name, exc)) from None
    problems = _cross_check(config, for_deploy)
    if problems:
        raise ConfigError(redact_credentials("\n".join([f"invalid data for host {host_name}:", *problems])))
    return config


def _cross_check(config: HostConfig, for_deploy: bool) -> list[str]:
    """Checks that involve several keys or the catalog."""
    try:
        known = config.catalog().by_tag()
    except ValueError as exc:
        return [f"  model_preferences = {list(config.model_preferences)!r}: {exc}"]
    problems = []
    if config.model is not None and config.model not in known:
        problems.append(f"  model = {config.model!r}: not in the catalog; expected one of {sorted(known)} "
                        f"or a model added under extra_models")
    if not is_loopback(config.ollama_host) and not config.ollama_allow_remote:
        problems.append(f"  ollama_host = {config.ollama_host!r}: binds Ollama's unauthenticated API beyond "
                        f"loopback (127.x.x.x, [::1] or localhost); set ollama_allow_remote = True for this host "
                        f"if that is intended")
    sources = config.sources()
    if "bundle" in sources.values():
        if config.bundle_dir is None:
            problems.append(f"  bundle_dir = None: {[k for k, v in sources.items() if v == 'bundle']} use the bundle; "
                            f"set bundle_dir to a directory made by `localcode bundle`")
        elif for_deploy and not Path(config.bundle_dir, "bundle.json").is_file():
            problems.append(f"  bundle_dir = {config.bundle_dir!r}: no bundle.json there (run `localcode bundle`)")
    if "mirror" in sources.values() and config.mirror_url is None:
        problems.append(f"  mirror_url = None: {[k for k, v in sources.items() if v == 'mirror']} use a mirror; "
                        f"set mirror_url to the URL serving a bundle directory")
    if config.network == "airgapped":
        online = [k for k, v in sources.items() if v == "internet"]
        if online:
            problems.append(f"  network = 'airgapped': {online} are 'internet'; an air-gapped host needs "
                            f"'bundle' or 'mirror' sources")
    if config.pull_interval is not None:
        if config.pull_config_url is None:
            problems.append(f"  pull_interval = {config.pull_interval!r}: pull mode needs pull_config_url, "
                            f"where the host fetches the team configuration")
        bundled = [k for k, v in sources.items() if v == "bundle"]
        if bundled:
            problems.append(f"  pull_interval = {config.pull_interval!r}: {bundled} are 'bundle', which the control "
                            f"machine pushes; a host that deploys itself needs 'internet' or 'mirror' sources")
    strangers = sorted(set(config.claude_projects) - set(config.developer_users))
    if strangers:
        problems.append(f"  claude_projects = {dict(config.claude_projects)!r}: users {strangers} are not in "
                        f"developer_users {list(config.developer_users)}")
    if Version(config.ollama_version) < Version(config.ollama_min_version):
        problems.append(f"  ollama_version = {config.ollama_version!r}: below ollama_min_version "
                        f"{config.ollama_min_version!r}")
    return problems


def format_errors(host_name: str, exc: ValidationError) -> str:
    """One line per error: key, value (credentials in it hidden) and what was expected."""
    lines = [f"invalid data for host {host_name}:"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if p != "[key]"]
        key = ".".join(loc) or "(host data)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(loc[0], HostConfig.model_fields, n=1)
            msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
        value = err.get("input")
        shown = f" = {redact_credentials(repr(value))}" if loc and not isinstance(value, dict) else ""
        lines.append(f"  {key}{shown}: {msg}")
    return "\n".join(lines)


def validate_inventory(hosts: list[tuple[str, dict[str, Any]]], for_deploy: bool = True) -> dict[str, HostConfig]:
    """Validate every host before any is touched; one error lists all bad hosts."""
    configs: dict[str, HostConfig] = {}
    problems: list[str] = []
    for name, data in hosts:
        try:
            configs[name] = validate_host_data(name, data, for_deploy)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems) + "\nno host was changed.")
    return configs


_VALIDATED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def host_config(host, inventory) -> HostConfig:
    """This host's validated config. The first call validates *every* host of the inventory,
    so one bad value anywhere stops the run before any host is changed."""
    if inventory not in _VALIDATED:
        _VALIDATED[inventory] = validate_inventory([(h.name, h.data.dict()) for h in inventory])
    return _VALIDATED[inventory][host.name]
