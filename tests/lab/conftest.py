"""Lab fixtures: a real fleet (systemd-nspawn hosts in network namespaces, reached over SSH).

Each test module that needs hosts gets its own lab with its own name and subnet, so tests
that change hosts cannot leak into each other and a developer's running `lab` is untouched."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lab import fleet
from lab.spec import LabSpec, load_spec
from lab.state import LabState

REPO = Path(__file__).resolve().parents[2]

if os.geteuid() != 0:
    pytest.skip("lab tests need root", allow_module_level=True)


@dataclass
class Lab:
    spec: LabSpec
    state: LabState
    up_seconds: float

    def ssh(self, host: str, command: str, user: str = "root", check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*fleet.ssh_argv(self.state, host, user), command],
            capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{user}@{host}: {command!r} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def address(self, host: str) -> str:
        return self.state.data["hosts"][host]["address"]

    def control_address(self, host: str) -> str:
        return self.state.data["hosts"][host]["control_address"]

    def pyinfra_env(self) -> dict[str, str]:
        return {**os.environ, "LOCALCODE_LAB": self.spec.name}


def lab_spec_file(tmp_path: Path, name: str, subnet: str, hosts: list[str] | None = None) -> Path:
    """The default fleet (inventory/lab.yaml) under another name and subnet, optionally
    reduced to some hosts."""
    raw = yaml.safe_load((REPO / "inventory/lab.yaml").read_text())
    raw.update(name=name, subnet=subnet)
    if hosts is not None:
        raw["hosts"] = [h for h in raw["hosts"] if h["name"] in hosts]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def start_lab(path: Path) -> Lab:
    spec = load_spec(path)
    started = time.monotonic()
    state = fleet.up(spec, path)
    return Lab(spec, state, time.monotonic() - started)


def q(text: str) -> str:
    return shlex.quote(text)
