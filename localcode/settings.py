"""Every value a deploy takes from inventory and group_data, validated before any host is
touched. A bad value stops the whole run with a message naming host, key, value and what was
expected."""

from __future__ import annotations

import difflib
from pathlib import Path
import re
import weakref
from typing import Annotated, Any, Literal

from packaging.version import Version
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pyinfra.api.exceptions import PyinfraError

from .catalog import Catalog, CatalogEntry, ModelTag, VersionStr, effective_catalog
from .sizing import MiB, GiB, Override, Policy

def _check_user_name(value: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
        raise ValueError("expected a POSIX login name (lowercase letters, digits, '_', '-'; at most 32)")
    return value


UserName = Annotated[str, AfterValidator(_check_user_name)]
LOOPBACK = ("127.", "localhost", "[::1]", "::1")
# Server variables we set from their own keys; ollama_environment may not override them.
MANAGED_OLLAMA_ENV = {"OLLAMA_HOST", "OLLAMA_KEEP_ALIVE", "OLLAMA_NUM_PARALLEL", "OLLAMA_FLASH_ATTENTION",
                      "OLLAMA_KV_CACHE_TYPE", "OLLAMA_NO_CLOUD"}


def _check_host_port(value: str) -> str:
    if not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}", value) or int(value.rsplit(":", 1)[1]) > 65535:
        raise ValueError("expected host:port, e.g. 127.0.0.1:11434")
    return value


def _check_duration(value: str) -> str:
    if not re.fullmatch(r"-1|0|(\d+(ms|s|m|h))+", value):
        raise ValueError("expected a Go duration like 5m, 1h30m, 0 or -1 (keep loaded forever)")
    return value


def _check_env_value(value: str) -> str:
    if re.search(r'["\\\n\r$`]', value):
        raise ValueError("expected a plain value without quotes, backslashes, '$', '`' or newlines")
    return value


OLLAMA_RELEASES = "https://github.com/ollama/ollama/releases/download/v{version}/{file}"
CLAUDE_RELEASES = "https://downloads.claude.ai/claude-code-releases/{version}/{file}"


def url_template(example: str):
    """A validator of release URL templates: http(s), exactly {version} and {file}."""
    def check(value: str) -> str:
        fields = set(re.findall(r"{([^{}]*)}", value))
        if not re.fullmatch(r"https?://[^\s\"'`$;|&<>]+", value) or fields != {"version", "file"}:
            raise ValueError(f"expected an http(s) URL template with {{version}} and {{file}}, e.g. {example}")
        return value

    return AfterValidator(check)


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
    seed: int | None = None
    num_predict: int | None = Field(default=None, ge=-2)
    stop: tuple[Annotated[str, AfterValidator(_check_env_value)], ...] | None = None

    def items(self):
        return [(k, v) for k, v in self.model_dump().items() if v is not None]


def _check_project_dir(value: str) -> str:
    if not value.startswith("/") or not re.fullmatch(r"[A-Za-z0-9._/@+-]+", value) or "/../" in value + "/" \
            or value.endswith("/..") or "//" in value:
        raise ValueError("expected an absolute directory path without '..', spaces or shell characters")
    return value.rstrip("/") or "/"


def _check_mirror_url(value: str) -> str:
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~/-]*)?", value):
        raise ValueError("expected an http(s) base URL like http://mirror.internal/localcode (no query, no spaces)")
    return value.rstrip("/")


ProjectDir = Annotated[str, AfterValidator(_check_project_dir)]
Source = Literal["internet", "bundle", "mirror"]
EnvName = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$")]
EnvValue = Annotated[str, AfterValidator(_check_env_value)]
# Data keys that belong to pyinfra itself (connectors, global arguments), not to us.
PYINFRA_KEY_PREFIXES = ("ssh_", "fake_", "local_", "chroot_", "docker_", "podman_", "winrm_", "vagrant_",
                        "terraform_", "dockerssh_", "_")


class ConfigError(PyinfraError):
    """Invalid inventory or group_data; pyinfra prints it without a traceback and exits 1."""


class HostConfig(BaseModel):
    """The localcode keys of one host's data (defaults documented in group_data/all.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    developer_users: tuple[UserName, ...] = ()
    network: Literal["online", "airgapped"] = "online"

    # Overrides of the sizing decision.
    model: ModelTag | None = None
    num_ctx: int | None = Field(default=None, ge=2048, le=1048576)
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] | None = None

    # Catalog and sizing policy.
    model_preferences: tuple[ModelTag, ...] = ()
    extra_models: tuple[CatalogEntry, ...] = ()
    min_context: int = Field(default=65536, ge=16384, le=1048576)
    kv_cache_types: tuple[Literal["f16", "q8_0", "q4_0"], ...] = Field(default=("f16", "q8_0"), min_length=1)
    gpu_reserve_mib: int = Field(default=457, ge=0, le=65536)
    metal_reserve_mib: int = Field(default=512, ge=0, le=65536)
    compute_buffer_mib: int = Field(default=2048, ge=0, le=65536)
    os_reserve_gib: float = Field(default=4.0, ge=0, le=1024)
    num_parallel: int = Field(default=1, ge=1, le=64)
    allow_cpu: bool = True
    slow_max_active_params_b: float = Field(default=5.0, gt=0, le=1000)

    # Models on the host.
    model_parameters: ModelParameters = ModelParameters()
    model_digests: dict[ModelTag, Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]] = {}
    prune_models: bool = False
    keep_models: tuple[ModelTag, ...] = ()

    # Claude Code.
    claude_version: VersionStr = "2.1.330"
    claude_install_method: Literal["native", "npm", "brew"] = "native"
    claude_url_template: Annotated[str, url_template(CLAUDE_RELEASES)] = CLAUDE_RELEASES
    claude_npm_registry: Annotated[str, Field(pattern=r"^https?://[A-Za-z0-9.:/_-]+$")] | None = None
    claude_alias: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")] = "claude-local"
    claude_local_profile: Annotated[str, Field(pattern=r"^\.[a-z][a-z0-9._-]{0,30}$")] = ".claude-local"
    claude_projects: dict[UserName, tuple[ProjectDir, ...]] = {}
    claude_project_gitignore: bool = False
    claude_project_claude_md: bool = False

    # Where Ollama, Claude Code and models come from: the internet (default), a bundle directory
    # on the control machine (pushed over SSH, only missing files), or a mirror serving a bundle.
    ollama_source: Source = "internet"
    claude_source: Source = "internet"
    model_source: Source = "internet"
    bundle_dir: ProjectDir | None = None
    mirror_url: Annotated[str, AfterValidator(_check_mirror_url)] | None = None

    # Ollama versions.
    ollama_min_version: VersionStr = "0.14.3"
    ollama_version: VersionStr = "0.30.0"
    ollama_upgrade: bool = False
    ollama_downgrade: bool = False
    ollama_url_template: Annotated[str, url_template(OLLAMA_RELEASES)] = OLLAMA_RELEASES
    ollama_host: Annotated[str, AfterValidator(_check_host_port)] = "127.0.0.1:11434"
    ollama_allow_remote: bool = False
    ollama_keep_alive: Annotated[str, AfterValidator(_check_duration)] = "5m"
    ollama_environment: dict[EnvName, EnvValue] = {}

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
        raise ConfigError("\n".join([f"invalid data for host {host_name}:", *problems]))
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
    if not config.ollama_host.startswith(LOOPBACK) and not config.ollama_allow_remote:
        problems.append(f"  ollama_host = {config.ollama_host!r}: binds Ollama's unauthenticated API beyond "
                        f"loopback; set ollama_allow_remote = True for this host if that is intended")
    managed = sorted(MANAGED_OLLAMA_ENV & set(config.ollama_environment))
    if managed:
        problems.append(f"  ollama_environment = {config.ollama_environment!r}: {managed} are set from their own "
                        f"keys (ollama_host, ollama_keep_alive, num_parallel, sizing, network)")
    sources = {"ollama_source": config.ollama_source, "claude_source": config.claude_source,
               "model_source": config.model_source}
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
    strangers = sorted(set(config.claude_projects) - set(config.developer_users))
    if strangers:
        problems.append(f"  claude_projects = {dict(config.claude_projects)!r}: users {strangers} are not in "
                        f"developer_users {list(config.developer_users)}")
    if Version(config.ollama_version) < Version(config.ollama_min_version):
        problems.append(f"  ollama_version = {config.ollama_version!r}: below ollama_min_version "
                        f"{config.ollama_min_version!r}")
    return problems


def format_errors(host_name: str, exc: ValidationError) -> str:
    lines = [f"invalid data for host {host_name}:"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "(host data)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(loc[0], HostConfig.model_fields, n=1)
            msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
        value = err.get("input")
        shown = f" = {value!r}" if loc and not isinstance(value, dict) else ""
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
