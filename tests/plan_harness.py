"""Plan-level runs of the real deploy.py against `@fake` hosts (scripted command outputs):
which operations it records for a host, with which commands and privileges. This is how
the macOS paths are tested on a Linux machine."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.api.connect import connect_all
from pyinfra.context import ctx_host, ctx_inventory, ctx_state

REPO = Path(__file__).resolve().parents[1]
M = "::localcode::"


@dataclass
class PlannedOp:
    name: str
    sudo: bool
    sudo_user: str | None
    commands: list[str]
    uploads: dict[str, str]

    def text(self) -> str:
        return "\n".join(self.commands)


def _render(command) -> tuple[str | None, tuple[str, str] | None]:
    if isinstance(command, FileUploadCommand):
        src = command.src
        content = src.getvalue() if isinstance(src, (io.StringIO, io.BytesIO)) else \
            Path(src).read_text() if isinstance(src, str) else ""
        return None, (command.dest, content if isinstance(content, str) else content.decode())
    if isinstance(command, StringCommand):
        return command.get_masked_value(), None
    return repr(command), None


def plan_deploy(hosts: list[tuple[str, dict]], monkeypatch) -> dict[str, list[PlannedOp]]:
    """Load deploy.py for fake hosts and expand every recorded operation's commands."""
    # Imported here: pyinfra_cli patches the process with gevent on import, and the lab tests
    # (threads, subprocesses) are collected into the same process.
    from pyinfra_cli.util import load_deploy_file

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PYINFRA_FAKE_DELAY", "0")
    state = State(check_for_changes=False)
    state.cwd = str(REPO)
    ctx_state.set(state)
    inventory = Inventory(([(name, {"fake_delay": 0, "fake_delay_jitter": 0, **data}) for name, data in hosts], {}))
    ctx_inventory.set(inventory)
    state.init(inventory, Config())
    connect_all(state)
    load_deploy_file(state, str(REPO / "deploy.py"))
    planned: dict[str, list[PlannedOp]] = {}
    for host in inventory:
        ops = []
        for op_hash in state.get_op_order():
            data = state.ops[host].get(op_hash)
            if data is None:
                continue
            commands, uploads = [], {}
            with ctx_host.use(host):
                for command in data.command_generator():
                    text, upload = _render(command)
                    if text is not None:
                        commands.append(text)
                    if upload is not None:
                        uploads[upload[0]] = upload[1]
            args = data.global_arguments
            ops.append(PlannedOp(sorted(state.op_meta[op_hash].names)[0], bool(args.get("_sudo")),
                                 args.get("_sudo_user"), commands, uploads))
        planned[host.name] = ops
    return planned


def darwin_hardware(ram_gib: int = 48, login: str = "ana", wired_limit_mb: int = 0,
                    iogpu_daemon: bool = False) -> list[str]:
    """A Mac's hardware fact: `sysctl iogpu.wired_limit_mb` (0: macOS's default) and whether our
    LaunchDaemon that keeps it across reboots is installed."""
    return [f"{M}uname", "Darwin", "arm64", f"{M}login", login, f"{M}darwin", str(ram_gib * 1024**3),
            "Apple M4 Pro", str(wired_limit_mb), f"{M}iogpu-daemon", *(["present"] if iogpu_daemon else [])]


def linux_base() -> dict:
    """The Ollama layout of a Linux host with nothing of ours installed yet."""
    return {"for t in curl zstd tar": [f"{M}releases", f"{M}current", f"{M}bin-link", "missing", f"{M}manual-lib",
                                       f"{M}tools", "curl", "zstd", "tar"]}


def linux_hardware(ram_gib: int = 64, nvidia_mib: tuple[int, ...] = (), login: str = "root") -> list[str]:
    out = [f"{M}uname", "Linux", "x86_64", f"{M}login", login, f"{M}meminfo", f"MemTotal: {ram_gib * 1024 * 1024} kB"]
    if nvidia_mib:
        out += [f"{M}nvidia", *(f"NVIDIA GeForce RTX 4090, {m}" for m in nvidia_mib), f"{M}nvidia-rc", "0"]
    return out


def accounts(*entries: tuple[str, int, str, str], macos: bool = False) -> list[str]:
    """The AccountsFact part of the hardware fact for (user, uid, home, shell): getent passwd
    lines, or on macOS a dscl record after each user's marker, as the host prints them."""
    if not macos:
        return [f"{M}users", *(f"{u}:x:{uid}:{uid}::{home}:{shell}" for u, uid, home, shell in entries)]
    return [f"{M}users", *(line for u, uid, home, shell in entries for line in (
        f"{M}dscl:{u}", f"NFSHomeDirectory: {home}", f"PrimaryGroupID: {uid}", f"UniqueID: {uid}",
        f"UserShell: {shell}"))]


def no_ollama() -> list[str]:
    return [f"{M}bin", "", f"{M}client", f"{M}version", "", f"{M}tags"]
