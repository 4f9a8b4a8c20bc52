"""Ollama on Linux, verified, under our own sandboxed systemd service.

Layout: every release unpacked (after its sha256 is checked) into its own directory
`/usr/local/lib/localcode/ollama/<version>-<arch>[-rocm]`, so an old `lib/ollama` is never
mixed with a new one; `current` points at the active one and `/usr/local/bin/ollama` at
`current/bin/ollama`. Switching is two atomic renames. The service restarts only when the
binary, the unit or the environment changed, and then the *running* server's version is
checked (an upgraded binary can sit beside a stale server)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pyinfra import host
from pyinfra.api import FactBase, operation
from pyinfra.api.exceptions import FactProcessError
from pyinfra.operations import systemd

from .. import sources, summary
from ..facts import MARK, OllamaFact, OllamaState, sections
from ..ops import failure, switch_link
from ..rendering import render
from ..settings import HostConfig
from ..shell import as_account, command, sh_quote
from ..sizing import Decision
from ..userfiles import ManagedFile, ensure_file
from .common import (BASE, BIN_LINK, install_release, parse_releases, releases_command, running_version,
                     server_environment, version_choice)

MANUAL_LIB = "/usr/local/lib/ollama"  # what install.sh leaves; stale libs crash new binaries
UNIT = "/etc/systemd/system/ollama.service"
DROPIN = "/etc/systemd/system/ollama.service.d/localcode.conf"
SERVICE_HOME = "/usr/share/ollama"
HOME_DIRS = ("/home", "/root", "/run/user")    # what ProtectHome= hides
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class OllamaLayout:
    releases: tuple[str, ...]
    current: str | None
    bin_kind: str            # "link" | "file" | "missing"
    bin_target: str | None
    manual_lib: bool
    tools: tuple[str, ...] = field(default=())
    user_groups: tuple[str, ...] | None = None     # groups of the `ollama` user; None: no such user
    group_exists: bool = False                     # the `ollama` group
    device_groups: tuple[str, ...] = ()            # render / video, where they exist
    active: bool = False
    enabled: bool = False
    store: str = "default"   # OLLAMA_MODELS: "default" (not set), "missing", "link", or its owner's name


class OllamaLayoutFact(FactBase):
    """What of our release layout (and of a manual install.sh install) is on the host, which
    tools the install needs are present, the service account and the service state: one round
    trip."""

    def default(self) -> OllamaLayout:
        return OllamaLayout((), None, "missing", None, False)

    def command(self, store: str | None = None) -> str:
        where = sh_quote(store) if store else None
        return "; ".join([
            # Checked without following a link: root never enters a tree another account controls.
            f"echo {MARK}store; if [ -L {where} ]; then echo link; elif [ -d {where} ]; then "
            f"stat -c %U {where}; else echo missing; fi" if where else f"echo {MARK}store; echo default",
            *releases_command(),
            f"echo {MARK}manual-lib; [ -d {MANUAL_LIB} ] && echo yes",
            f"echo {MARK}tools; for t in curl zstd tar; do command -v $t >/dev/null && echo $t; done",
            f"echo {MARK}user; id -Gn ollama 2>/dev/null",
            f"echo {MARK}group; getent group ollama >/dev/null && echo yes",
            f"echo {MARK}device-groups; for g in render video; do getent group $g >/dev/null && echo $g; done",
            f"echo {MARK}service; systemctl is-active ollama 2>/dev/null; systemctl is-enabled ollama 2>/dev/null",
            "true",
        ])

    def process(self, output: list[str]) -> OllamaLayout:
        s = sections(output)
        releases = parse_releases(s)
        store = (s.get("store") or ["default"])[0].strip()
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", store):
            raise FactProcessError("ollama layout: unexpected report of the model store (OLLAMA_MODELS)")
        user = [line for line in s.get("user", []) if line.strip()]
        service = [line.strip() for line in s.get("service", [])]
        return OllamaLayout(releases.names, releases.current, releases.bin_kind, releases.bin_target,
                            bool(s.get("manual-lib")),
                            tuple(s.get("tools", [])), tuple(user[0].split()) if user else None,
                            bool(s.get("group")), tuple(s.get("device-groups", [])),
                            "active" in service, "enabled" in service, store)


class OllamaHostFact(FactBase):
    """The server's state (OllamaFact) and, on Linux, our layout (OllamaLayoutFact) together:
    one round trip for everything the Ollama step decides on."""

    def command(self, api: str, show: tuple[str, ...], layout: bool, store: str | None = None) -> str:
        parts = [OllamaFact().command(api=api, show=show)]
        if layout:
            parts.append(OllamaLayoutFact().command(store=store))
        return "; ".join(parts)

    def default(self) -> tuple[OllamaState, OllamaLayout | None]:
        return OllamaState(None, None, None), OllamaLayoutFact().default()

    def process(self, output: list[str]) -> tuple[OllamaState, OllamaLayout | None]:
        has_layout = f"{MARK}releases" in output
        return OllamaFact().process(output), OllamaLayoutFact().process(output) if has_layout else None


def release_dir_name(version: str, arch: str, rocm: bool) -> str:
    return f"{version}-{arch}" + ("-rocm" if rocm else "")


def release_files(arch: str, rocm: bool) -> list[str]:
    """The release's archives in unpack order (the ROCm libraries on top)."""
    return [f"ollama-linux-{arch}.tar.zst"] + ([f"ollama-linux-{arch}-rocm.tar.zst"] if rocm else [])


@operation()
def release(version: str, arch: str, rocm: bool, url_template: str, bundle_dir: str | None = None):
    """Download (or, from a bundle, push), verify and unpack one release into its own
    directory, unless it is there."""
    name = release_dir_name(version, arch, rocm)
    layout = host.get_fact(OllamaLayoutFact)
    if name in layout.releases:
        host.noop(f"Ollama {version} ({arch}{', ROCm' if rocm else ''}) already unpacked in {BASE}/{name}")
        return
    missing = [t for t in ("curl", "zstd", "tar") if t not in layout.tools]
    if missing:
        yield from failure._inner(message=f"Ollama install needs {', '.join(missing)} on the host: install them first")
        return
    yield from install_release(url_template, version, release_files(arch, rocm), f"{BASE}/{name}", bundle_dir,
                               "Linux")


@operation()
def activate(version: str, arch: str, rocm: bool):
    """Point `current` and /usr/local/bin/ollama at the release; retire an install.sh install."""
    name = release_dir_name(version, arch, rocm)
    layout = host.get_fact(OllamaLayoutFact)
    want_bin = f"{BASE}/current/bin/ollama"
    if layout.current == name and layout.bin_kind == "link" and layout.bin_target == want_bin and not layout.manual_lib:
        host.noop(f"Ollama {version} is the active release")
        return
    if layout.bin_kind == "file" or layout.manual_lib:
        # install.sh layout: its binary and its lib/ollama go, never mixed with ours.
        yield command("rm", "-rf", MANUAL_LIB)
        if layout.bin_kind == "file":
            yield command("rm", "-f", BIN_LINK)
    if layout.current != name:
        yield from switch_link(f"{BASE}/{name}", f"{BASE}/current", "Linux")
    if layout.bin_kind != "link" or layout.bin_target != want_bin:
        yield from switch_link(want_bin, BIN_LINK, "Linux")


def unit_path(path: str) -> str:
    """A path as one word of a systemd path-list setting: quoted, `%` not a specifier."""
    escaped = path.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def unit(config: HostConfig) -> bytes:
    """Our sandboxed systemd unit. The server writes only its home and the model store
    (OLLAMA_MODELS when set); a store under a home directory is bound into an otherwise empty
    /home, /root and /run/user."""
    store = config.ollama_environment.get("OLLAMA_MODELS")
    in_home = store is not None and any(store == d or store.startswith(f"{d}/") for d in HOME_DIRS)
    writable = [SERVICE_HOME] + ([store] if store and not in_home else [])
    return render("ollama.service.j2", binary=BIN_LINK, source="deploy.py",
                  writable=[unit_path(p) for p in writable], home_store=unit_path(store) if in_home else None)


def linux_files(config: HostConfig, decision: Decision, gpu_environment: dict[str, str] | None = None
                ) -> list[ManagedFile]:
    """Our systemd unit and its drop-in with the server environment (with the plan's GPU part)."""
    return [
        ManagedFile(UNIT, unit(config), "0644"),
        ManagedFile(DROPIN, render("ollama-environment.conf.j2",
                                   environment=server_environment(config, decision, gpu_environment)), "0644"),
    ]


@operation()
def account(layout: OllamaLayout):
    """The `ollama` system user and group (as install.sh makes them), in render/video where
    those groups exist (GPU device access). Ours rather than pyinfra's server.group and
    server.user(system=True): those read /etc/group, uname, /etc/passwd, /etc/group and uname
    again on every run, all of which the layout fact has already reported (measured on a lab
    host, a no-op deploy with them and systemd.service below: 4 -> 11 remote commands, 5 theirs)."""
    missing = [g for g in layout.device_groups if g not in (layout.user_groups or ())]
    if layout.group_exists and layout.user_groups is not None and not missing:
        host.noop("the ollama user and group exist")
        return
    if not layout.group_exists:
        yield command("groupadd", "--system", "ollama")
    if layout.user_groups is None:
        yield command("useradd", "--system", "--shell", "/bin/false", "--gid", "ollama", "--create-home",
                      "--home-dir", SERVICE_HOME, "ollama")
    if missing:
        yield command("usermod", "--append", "--groups", ",".join(missing), "ollama")


@operation()
def store_directory(store: str, layout: OllamaLayout):
    """OLLAMA_MODELS exists before the sandboxed service starts (the unit makes it writable,
    and systemd refuses to start with a missing path): made by the `ollama` account itself, so
    it can only be made where that account may write."""
    if layout.store == "ollama":
        host.noop(f"the model store {store} exists and belongs to ollama")
        return
    if layout.store == "missing":
        yield command(*as_account("Linux", "ollama"), "mkdir", "-p", "-m", "0755", store)
        return
    why = "is a symbolic link" if layout.store == "link" else f"belongs to {layout.store}, not to ollama"
    yield from failure._inner(message=f"OLLAMA_MODELS {store} {why}: give the server its own directory")


@operation()
def enabled_and_running(layout: OllamaLayout):
    """`systemctl enable --now` unless the layout fact saw the service enabled and active. Ours
    rather than pyinfra's systemd.service(running=True, enabled=True), which asks systemctl twice
    more on every run (2 of the 4 -> 11 remote commands per no-op deploy measured in account())."""
    if layout.active and layout.enabled:
        host.noop("ollama.service is enabled and running")
        return
    yield command("systemctl", "enable", "--now", "ollama.service")


def install_linux(config: HostConfig, decision: Decision, arch: str, rocm: bool, observed: dict,
                  state: OllamaState, layout: OllamaLayout, gpu_environment: dict[str, str] | None = None) -> None:
    """The Linux steps, in order; restarts are driven by what changed. Decisions use the state
    observed when the deploy started; `gpu_environment` is the plan's (HostPlan.gpu_environment)."""
    choice = version_choice(config, decision, state)
    host.log(f"ollama: {choice.reason}")
    for warning in choice.warnings:
        host.log(f"warning: {warning}")

    account(name="Ollama system user and group", layout=layout)
    store = config.ollama_environment.get("OLLAMA_MODELS")
    if store:
        store_directory(name="Ollama model store (OLLAMA_MODELS)", store=store, layout=layout)
    changed = []
    if choice.action != "keep":
        template = sources.release_template("ollama", config.ollama_source, config.ollama_url_template,
                                            config.mirror_url)
        host.log(f"ollama: installing {choice.version} ({arch}{', ROCm' if rocm else ''})")
        changed.append(release(name="Ollama release (verified)", version=choice.version,
                               arch=arch, rocm=rocm, url_template=template,
                               bundle_dir=config.bundle_dir if config.ollama_source == "bundle" else None))
        changed.append(activate(name="Activate the Ollama release", version=choice.version, arch=arch, rocm=rocm))
        summary.change(host, f"Ollama {state.binary_version or 'none'} -> {choice.version}", changed[-1])
    unit_files = [ensure_file(name=f"Ollama {'unit' if f.path == UNIT else 'server environment'}", path=f.path,
                              content=f.content, mode=f.mode, observed=observed.get(f.path))
                  for f in linux_files(config, decision, gpu_environment)]
    changed += unit_files
    systemd.daemon_reload(name="Reload systemd units", _if=lambda: any(op.did_change() for op in unit_files))
    restart = systemd.service(name="Restart Ollama (binary, unit or environment changed)", service="ollama.service",
                              restarted=True, _if=lambda: any(op.did_change() for op in changed))
    enabled_and_running(name="Ollama service enabled and running", layout=layout)
    running_version(name="Ollama server runs the expected version", api=config.ollama_host, version=choice.version,
                    _if=lambda: restart.did_change() or state.server_version != choice.version)
