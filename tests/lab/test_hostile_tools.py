"""A GPU tool that prints garbage on one host (negative sizes, `²`, 1e400, absurd sizes, bytes
that are not UTF-8, JSON that is not rocm-smi's): that host fails alone, the message naming the
host, the tool and a short excerpt, without a traceback, in the deploy and in `localcode plan`,
`localcode bundle --inventory` and `localcode doctor`; the other host converges."""

from __future__ import annotations

import base64
import json
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from lab import fleet

from .conftest import REPO, Lab, lab_spec_file, q, start_lab
from .deploy_helpers import changed_ops, deploy, write_inventory

pytestmark = pytest.mark.lab

# (tool, what it prints, what the message says after "gpuws: hardware: ")
GARBAGE = {
    "negative": ("nvidia-smi", b"NVIDIA GeForce RTX 4090, -24576\n",
                 "nvidia-smi line 1: memory.total is not a whole number of MiB: 'NVIDIA GeForce RTX 4090, -24576'"),
    "superscript": ("nvidia-smi", "NVIDIA GeForce RTX 4090, ²\n".encode(),
                    "nvidia-smi: non-ASCII or control bytes in line 1: 'NVIDIA GeForce RTX 4090, ??'"),
    "float overflow": ("nvidia-smi", b"NVIDIA GeForce RTX 4090, 1e400\n", "nvidia-smi line 1: memory.total "
                       "is not a whole number of MiB: 'NVIDIA GeForce RTX 4090, 1e400'"),
    "10^26 MiB": ("nvidia-smi", b"NVIDIA GeForce RTX 4090, 100000000000000000000000000\n",
                  "nvidia-smi line 1: memory.total out of range (256 MiB to 1 TiB)"),
    "non-UTF-8": ("nvidia-smi", b"NVIDIA GeForce RTX 4090, \xff\xfe24576\n",
                  "nvidia-smi: non-ASCII or control bytes in line 1: 'NVIDIA GeForce RTX 4090, ??24576'"),
    "rocm-smi one byte": ("rocm-smi", b'{"card0": {"VRAM Total Memory (B)": "1"}}\n',
                          "rocm-smi card0: VRAM Total Memory (B) out of range (256 MiB to 1 TiB): '1'"),
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    path = lab_spec_file(tmp_path_factory.mktemp("hostile"), "hostile", "10.246.0.0/16", hosts=["laptop", "gpuws"])
    lab = start_lab(path)
    yield lab
    fleet.down(lab.spec.name)


@contextmanager
def broken(lab: Lab, tool: str, printed: bytes) -> Iterator[None]:
    """gpuws's `tool` replaced (ahead of the lab's fake on PATH) by one printing these bytes."""
    data = base64.b64encode(printed).decode()
    lab.ssh("gpuws", f"echo {data} | base64 -d > /root/{tool}.out && "
                     f"printf '#!/bin/sh\\ncat /root/{tool}.out\\n' > /usr/local/bin/{tool} && "
                     f"chmod 755 /usr/local/bin/{tool} && [ \"$(command -v {tool})\" = /usr/local/bin/{tool} ]")
    try:
        yield
    finally:
        lab.ssh("gpuws", f"rm -f /usr/local/bin/{q(tool)} /root/{q(tool)}.out")


def localcode(lab: Lab, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(REPO / ".venv/bin/localcode"), *args], cwd=REPO, env=lab.pyinfra_env(),
                            capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


@pytest.mark.parametrize("case", GARBAGE, ids=GARBAGE)
def test_plan_names_host_tool_and_excerpt(lab: Lab, tmp_path, case):
    tool, printed, expected = GARBAGE[case]
    inventory = write_inventory(tmp_path / "inv.py", lab)
    with broken(lab, tool, printed):
        result = localcode(lab, "plan", str(inventory))
    assert result.returncode == 1
    assert f"gpuws: error: hardware: {expected}" in result.stdout, result.stdout
    laptop = next(line for line in result.stdout.splitlines() if line.startswith("laptop "))
    assert "ERROR" not in laptop and "24 GiB RAM" in laptop


def test_deploy_fails_the_broken_host_alone_and_the_other_converges(lab: Lab, tmp_path):
    tool, printed, expected = GARBAGE["non-UTF-8"]
    inventory = write_inventory(tmp_path / "inv.py", lab)
    with broken(lab, tool, printed):
        code, results, err = deploy(lab, inventory)
        assert code != 0 and results is not None, err
        assert results["results"]["failed_hosts"] == ["gpuws"]
        assert "Traceback" not in err and f"gpuws: hardware: {expected}" in err, err[-3000:]
        assert lab.ssh("laptop", "systemctl is-active ollama && claude --version").returncode == 0
        # gpuws was not touched: nothing of ours is there
        assert lab.ssh("gpuws", "ls /usr/local/lib/localcode", check=False).returncode != 0

        code, results, err = deploy(lab, inventory)
        assert changed_ops(results) == [("Hardware facts", ["gpuws"])], err[-3000:]


def test_bundle_and_doctor_report_the_broken_host(lab: Lab, tmp_path):
    tool, printed, expected = GARBAGE["superscript"]
    inventory = write_inventory(tmp_path / "inv.py", lab)
    services = lab.state.data["services"]
    mirror = f"http://127.0.0.1:{services['mirror_tcp_port']}"
    with broken(lab, tool, printed):
        bundle = localcode(lab, "bundle", str(tmp_path / "bundle"), "--inventory", str(inventory), "--quiet",
                           "--ollama-url", f"{mirror}/ollama/releases/download",
                           "--claude-url", f"{mirror}/claude-code-releases",
                           "--registry", f"http://127.0.0.1:{services['registry_tcp_port']}", timeout=600)
        doctor = localcode(lab, "doctor", str(inventory))
    assert bundle.returncode == 0, bundle.stderr
    assert f"warning: no sizing for gpuws (hardware: {expected}); add its model with --model" in bundle.stderr
    index = json.loads(Path(tmp_path / "bundle" / "bundle.json").read_text())
    assert index["models"], index  # the laptop's model, all the same

    assert doctor.returncode == 1
    assert f"gpuws: ✗ hardware: {expected}" in doctor.stdout, doctor.stdout
    assert not any(line.startswith("laptop: ✗ hardware") for line in doctor.stdout.splitlines())
