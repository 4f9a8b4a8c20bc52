"""`lab down` removes exactly what `lab up` made; a crashed run is cleaned up by the next `up`."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from lab import fleet
from lab.procs import ProcRecord
from lab.state import load_state

from .conftest import lab_spec_file, start_lab

pytestmark = pytest.mark.lab


def lab_traces(name: str, veths: list[str], state_data: dict) -> list[str]:
    """Everything of this lab still present on the control machine."""
    traces = []
    mounts = Path("/proc/mounts").read_text()
    traces += [line for line in mounts.splitlines() if f"/localcode-lab/{name}/" in line]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    traces += [line for line in netns.splitlines() if line.startswith(f"lc-{name}-")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    traces += [v for v in veths if f" {v}@" in links or f" {v}:" in links]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    traces += [line for line in tables.splitlines() if line.endswith(state_data["nft_table"])]
    owners = [state_data["services"], *state_data["hosts"].values()]
    traces += [f"pid {p['pid']}" for o in owners for p in o["procs"] if ProcRecord.from_json(p).alive()]
    traces += [c for h in state_data["hosts"].values() for c in h.get("cgroups", []) if Path(c).exists()]
    return traces


def test_down_leaves_nothing_and_is_safe_twice(tmp_path):
    lab = start_lab(lab_spec_file(tmp_path, "clean", "10.216.0.0/16", hosts=["laptop", "airgap"]))
    data = lab.state.data
    veths = [h["veth"] for h in data["hosts"].values()]
    assert lab_traces("clean", veths, data) != []  # the probe sees a running lab
    assert fleet.down("clean") is True
    assert lab_traces("clean", veths, data) == []
    assert load_state("clean") is None
    assert fleet.down("clean") is False


def test_up_after_a_crash_cleans_up_first(tmp_path):
    path = lab_spec_file(tmp_path, "crash", "10.217.0.0/16", hosts=["laptop"])
    first = start_lab(path)
    data = first.state.data
    # A crash: the lab's processes die without `down`, leaving mounts, netns and state behind.
    for proc in data["hosts"]["laptop"]["procs"]:
        os.kill(proc["pid"], signal.SIGKILL)
    messages: list[str] = []
    second = fleet.up(first.spec, path, log=messages.append)
    try:
        assert any("cleaning it up first" in m for m in messages)
        assert second.data["hosts"]["laptop"]["procs"] != data["hosts"]["laptop"]["procs"]
        out = subprocess.run([*fleet.ssh_argv(second, "laptop"), "hostname"], capture_output=True, text=True)
        assert out.stdout.strip() == "laptop"
    finally:
        fleet.down("crash")
    assert lab_traces("crash", [data["hosts"]["laptop"]["veth"]], second.data) == []
