"""Onboarding one machine, on the machine itself.

`./onboard` (or `make onboard`) makes the clone's virtual environment and installs the toolkit,
then runs `localcode onboard`: it finds this machine in the team inventory (by host name, or
`--host NAME`), writes a one-host inventory for `@local` with that host's merged data, and runs
the deploy as root through sudo (one password prompt): system steps as root, each developer's
files as that developer. `pyinfra @local deploy.py` run by a developer (sudo per system step)
goes through `system_arguments` and `with_invoking_developer` instead."""

from __future__ import annotations

import os
import pprint
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import PYINFRA_KEY_PREFIXES, SOURCE_KEYS, HostConfig

DEFAULT_INVENTORY = "inventory/team.py"


def system_arguments(login: str) -> dict[str, bool]:
    """Global arguments for system-level operations: sudo unless we already are root."""
    return {} if login == "root" else {"_sudo": True}


def with_invoking_developer(config: HostConfig, login: str) -> HostConfig:
    """A developer onboarding their own machine is its developer user, unless data names one."""
    if config.developer_users or login == "root" or not login:
        return config
    return config.model_copy(update={"developer_users": (login,)})


class OnboardError(ValueError):
    """This machine cannot be matched or set up as asked; the message says what to change."""


@dataclass(frozen=True)
class Entry:
    """This machine's host in the inventory (None: not there) and its merged data."""

    name: str | None
    data: dict[str, Any]


def machine_names() -> tuple[str, ...]:
    """What this machine may be called in an inventory: its host name, short and qualified."""
    names = [socket.gethostname(), socket.getfqdn()]
    names += [name.split(".", 1)[0] for name in names]
    return tuple(dict.fromkeys(n.lower() for n in names if n))


def find_entry(hosts: list[tuple[str, dict[str, Any]]], names: tuple[str, ...], explicit: str | None) -> Entry:
    """The inventory host that is this machine: the one named `explicit`, else the one whose
    name, ssh_hostname or first label is one of `names`. None found: HostConfig's defaults."""
    if explicit is not None:
        found = [(name, data) for name, data in hosts if name == explicit]
        if not found:
            raise OnboardError(f"--host {explicit}: no such host in the inventory "
                               f"(hosts: {', '.join(name for name, _ in hosts) or 'none'})")
        return Entry(*found[0])
    wanted = set(names)

    def aliases(name: str, data: dict[str, Any]) -> set[str]:
        values = {name.lower(), name.lower().split(".", 1)[0]}
        if isinstance(data.get("ssh_hostname"), str):
            values |= {data["ssh_hostname"].lower(), data["ssh_hostname"].lower().split(".", 1)[0]}
        return values

    found = [(name, data) for name, data in hosts if aliases(name, data) & wanted]
    if len(found) > 1:
        raise OnboardError(f"this machine ({', '.join(names)}) matches several hosts: "
                           f"{', '.join(name for name, _ in found)}; choose one with --host NAME")
    return Entry(*found[0]) if found else Entry(None, {})


def onboard_data(entry: Entry, developer: str | None, bundle: str | None, mirror: str | None) -> dict[str, Any]:
    """The deploy data for @local: the host's own keys (pyinfra's connector keys left out), the
    invoking developer among its developer users, and the bundle or mirror to install from."""
    data = {k: v for k, v in entry.data.items() if not k.startswith(PYINFRA_KEY_PREFIXES)}
    if entry.name is not None:
        data["inventory_name"] = entry.name
    if developer and developer != "root":
        listed = list(data.get("developer_users") or [])
        data["developer_users"] = listed + [developer] * (developer not in listed)
    if bundle is not None:
        data.update(dict.fromkeys(SOURCE_KEYS, "bundle"), bundle_dir=str(Path(bundle).resolve()))
    elif mirror is not None:
        data.update(dict.fromkeys(SOURCE_KEYS, "mirror"), mirror_url=mirror.rstrip("/"))
    return data


def inventory_text(data: dict[str, Any], origin: str) -> str:
    """A pyinfra inventory with this machine alone, as @local."""
    return (f'"""This machine, onboarded with `localcode onboard` ({origin})."""\n\n'
            f"hosts = [(\"@local\", {pprint.pformat(data, sort_dicts=True)})]\n")


def invoking_developer() -> str | None:
    """Who runs the onboarding: the sudo caller when run through sudo, else this account."""
    if os.geteuid() == 0:
        return os.environ.get("SUDO_USER") or None
    return pwd.getpwuid(os.getuid()).pw_name


def run(inventory: str | None, host: str | None, bundle: str | None, mirror: str | None, dry: bool) -> int:
    """Onboard this machine; returns the deploy's exit code (2: nothing was run)."""
    from .gather import loaded
    from .settings import ConfigError, validate_inventory

    path = inventory or (DEFAULT_INVENTORY if Path(DEFAULT_INVENTORY).exists() else None)
    try:
        hosts = [(h.name, h.data.dict()) for h in loaded(path)[1]] if path else []
        entry = find_entry(hosts, machine_names(), host)
        developer = invoking_developer()
        data = onboard_data(entry, developer, bundle, mirror)
        validate_inventory([("@local", data)])
    except (OnboardError, ConfigError) as exc:
        print(f"onboard: {exc}", file=sys.stderr)
        return 2
    if entry.name is None:
        print(f"onboard: warning: this machine ({', '.join(machine_names())}) is not in "
              f"{path or 'any inventory'}: HostConfig's defaults apply; add it there (or use --host NAME)",
              file=sys.stderr)
    origin = f"{entry.name} in {path}" if entry.name else "not in the inventory: defaults"
    print(f"onboard: this machine is {origin}; developer users: "
          f"{', '.join(data.get('developer_users') or []) or 'none'}", file=sys.stderr)
    scratch = tempfile.mkdtemp(prefix="localcode-onboard-")
    try:
        generated = Path(scratch) / "this-machine.py"
        generated.write_text(inventory_text(data, origin))
        os.chmod(scratch, 0o755)  # root reads it through sudo; nothing in it is secret beyond the inventory's
        deploy = [str(Path(sys.executable).with_name("pyinfra")), "-y", *(["--dry"] if dry else []),
                  str(generated), "deploy.py"]
        # Root runs the deploy from the developer's clone: no bytecode files of root's in it.
        argv = ["env", "PYTHONDONTWRITEBYTECODE=1", *deploy]
        if os.geteuid() != 0:
            print("onboard: system steps run as root: sudo may ask for your password", file=sys.stderr)
            argv = ["sudo", "--", *argv]
        code = subprocess.run(argv).returncode
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if code == 0 and not dry:
        print("onboard: done; open a new terminal (or `exec $SHELL -l`) and run `claude-local`", file=sys.stderr)
    return code
