"""The lab description (`inventory/lab.yaml`), validated before anything is created."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

import yaml
from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from localcode.settings import HostConfig

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,14}$"
USER_PATTERN = r"^[a-z_][a-z0-9_-]{0,30}$"
SHELLS = {"bash": "/bin/bash", "zsh": "/bin/zsh", "fish": "/usr/bin/fish"}


class LabSpecError(ValueError):
    """The lab file is unreadable or invalid; the message names the file, key and value."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_version(value: str) -> str:
    try:
        Version(value)
    except InvalidVersion as exc:
        raise ValueError(f"not a version number: {value!r}") from exc
    return value


VersionStr = Annotated[str, AfterValidator(_check_version)]


class Gpu(Strict):
    vendor: Literal["nvidia", "amd"]
    gib: int = Field(gt=0, le=512)
    model: str | None = Field(default=None, pattern=r"^[A-Za-z0-9 ._-]{1,60}$")
    # AMD only: the LLVM target the fake rocm-smi reports as "GFX Version" (default gfx1100), e.g.
    # gfx1032 for a card Ollama runs only with HSA_OVERRIDE_GFX_VERSION. The kernel's view
    # (/sys/class/kfd) cannot be faked in a container (sysfs is read-only there and has no mount
    # point for it), so lab hosts answer through the hardware fact's rocm-smi fallback.
    gfx: str | None = Field(default=None, pattern=r"^gfx[0-9a-f]{3,5}$")

    @model_validator(mode="after")
    def _gfx_is_amd(self) -> Gpu:
        if self.gfx is not None and self.vendor != "amd":
            raise ValueError("gfx is for AMD GPUs only")
        return self

    @property
    def product_name(self) -> str:
        if self.model:
            return self.model
        if self.vendor == "nvidia":
            return f"NVIDIA Lab GPU {self.gib}GB"
        return f"AMD Radeon Lab GPU {self.gib}GB"


class DeveloperUser(Strict):
    name: str = Field(pattern=USER_PATTERN)
    shell: Literal["bash", "zsh", "fish"] = "bash"
    # A new machine's developer: an administrator (the sudo group) whose sudo asks this password.
    sudo_password: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{6,40}$")

    @property
    def shell_path(self) -> str:
        return SHELLS[self.shell]


class LabHost(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    ram_gib: int = Field(gt=0, le=4096)
    gpus: tuple[Gpu, ...] = ()
    network: Literal["online", "airgapped"] = "online"
    users: tuple[DeveloperUser, ...] = Field(min_length=1)
    ollama_preinstalled: VersionStr | None = None
    # Where the deploy takes Ollama, Claude Code and models from on this host (default:
    # the lab's internet when online, the lab bundle when air-gapped).
    source: Literal["internet", "mirror", "bundle"] | None = None

    @property
    def deploy_source(self) -> str:
        return self.source or ("internet" if self.network == "online" else "bundle")

    @field_validator("users")
    @classmethod
    def _unique_users(cls, users: tuple[DeveloperUser, ...]) -> tuple[DeveloperUser, ...]:
        names = [u.name for u in users]
        reserved = {"root", "ollama"} & set(names)
        if reserved:
            raise ValueError(f"reserved user name(s): {sorted(reserved)}")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate user names: {names}")
        return users


class Internet(Strict):
    """What the lab's control side offers to online hosts."""

    mirror_port: int = Field(default=8080, gt=0, lt=65536)
    registry_port: int = Field(default=5000, gt=0, lt=65536)
    ollama_versions: tuple[VersionStr, ...] = ("0.13.5", "0.14.3", "0.21.0", "0.30.0")
    # The one Claude Code release the mirror carries: the version hosts pin unless told otherwise.
    claude_code_version: VersionStr = HostConfig().claude_version

    @field_validator("ollama_versions")
    @classmethod
    def _carries_the_pin(cls, versions: tuple[str, ...]) -> tuple[str, ...]:
        """Hosts install HostConfig's ollama_version unless told otherwise: without it every
        default deploy would fail against the mirror."""
        pinned = HostConfig().ollama_version
        if pinned not in versions:
            raise ValueError(f"must include {pinned}, the ollama_version hosts pin by default (localcode's HostConfig)")
        return versions

    @property
    def mirror_url(self) -> str:
        """The mirror's base URL as seen from inside an online host."""
        return f"http://127.0.0.1:{self.mirror_port}"

    @property
    def registry_url(self) -> str:
        """The model registry's base URL as seen from inside an online host."""
        return f"http://127.0.0.1:{self.registry_port}"


class LabSpec(Strict):
    name: str = Field(default="lab", pattern=NAME_PATTERN)
    subnet: str = "10.213.0.0/16"
    internet: Internet = Internet()
    hosts: tuple[LabHost, ...] = Field(min_length=1, max_length=64)

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        net = ipaddress.ip_network(value, strict=True)
        if net.version != 4 or net.prefixlen > 16:
            raise ValueError("expected an IPv4 network of /16 or larger, e.g. 10.213.0.0/16")
        return value

    @model_validator(mode="after")
    def _unique_hosts(self) -> LabSpec:
        names = [h.name for h in self.hosts]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate host names: {names}")
        for host in self.hosts:
            if host.network == "airgapped" and host.deploy_source != "bundle":
                raise ValueError(f"host {host.name}: an air-gapped host can only use source 'bundle'")
            if host.ollama_preinstalled and host.ollama_preinstalled not in self.internet.ollama_versions:
                raise ValueError(
                    f"host {host.name}: ollama_preinstalled {host.ollama_preinstalled} is not in "
                    f"internet.ollama_versions {list(self.internet.ollama_versions)}"
                )
        return self

    def host_addresses(self, index: int) -> tuple[str, str]:
        """(control side, host side) addresses of the /30 link of the index-th host."""
        base = ipaddress.ip_network(self.subnet).network_address + (index + 1) * 256
        return str(base + 1), str(base + 2)


def load_spec(path: Path) -> LabSpec:
    """Read and validate a lab file; errors name the file, the key path and the value."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LabSpecError(f"{path}: cannot read lab file: {exc}") from exc
    try:
        return LabSpec.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {key} = {err.get('input')!r}: {err['msg']}")
        raise LabSpecError(f"{path}: invalid lab file:\n" + "\n".join(lines)) from exc
