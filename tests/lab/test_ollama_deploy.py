"""Ollama on the lab: installed and upgraded, verified, service-managed (sandboxed),
idempotent, and a tampered release fails its host only while the previous version keeps running."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from lab import fleet

from .conftest import Lab, lab_spec_file, start_lab
from .deploy_helpers import changed_ops, deploy, failed_hosts, write_inventory

pytestmark = pytest.mark.lab
ONLINE = ("laptop", "gpuws", "bigbox")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    path = lab_spec_file(tmp_path_factory.mktemp("ollama"), "olla", "10.218.0.0/16", hosts=list(ONLINE))
    lab = start_lab(path)
    yield lab
    fleet.down(lab.spec.name)


def server_version(lab: Lab, host: str) -> str:
    out = lab.ssh(host, "curl -sf --retry 10 --retry-connrefused --retry-delay 1 http://127.0.0.1:11434/api/version").stdout
    return json.loads(out)["version"]


def assert_sandboxed(lab: Lab, host: str) -> None:
    """The running server is sandboxed: systemd's own exposure score is at most 4.5, the GPU
    device groups stay reachable (everything else is closed), the process has no capabilities."""
    report = lab.ssh(host, "systemd-analyze security ollama.service").stdout
    overall = next(line for line in report.splitlines() if "Overall exposure level" in line)
    assert float(re.search(r": (\d+\.\d+) ", overall).group(1)) <= 4.5, report
    devices = lab.ssh(host, "systemctl show -p DevicePolicy -p DeviceAllow ollama.service").stdout.splitlines()
    assert "DevicePolicy=closed" in devices, devices
    allowed = dict(line.removeprefix("DeviceAllow=").split() for line in devices if line.startswith("DeviceAllow="))
    assert {group: allowed.get(group) for group in ("char-nvidia*", "char-drm", "char-kfd")} == \
        {"char-nvidia*": "rw", "char-drm": "rw", "char-kfd": "rw"}, devices
    status = lab.ssh(host, "grep -E '^(CapBnd|CapEff|NoNewPrivs):' /proc/$(systemctl show -p MainPID --value ollama)/status")
    assert status.stdout.split() == ["CapEff:", "0000000000000000", "CapBnd:", "0000000000000000", "NoNewPrivs:", "1"]


def tampered_release(lab: Lab, version: str) -> str:
    """A copy of a mirror release whose tarball no longer matches its sha256sum.txt; returns
    the URL template that points at it."""
    root = Path(lab.state.data["services"]["mirror_root"])
    source = root / f"ollama/releases/download/v{version}"
    target = root / f"tampered/v{version}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copyfile(source / "sha256sum.txt", target / "sha256sum.txt")
    data = bytearray((source / "ollama-linux-amd64.tar.zst").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (target / "ollama-linux-amd64.tar.zst").write_bytes(bytes(data))
    return f"{lab.spec.internet.mirror_url}/tampered/v{{version}}/{{file}}"


def test_install_upgrade_idempotence_and_tamper(lab: Lab, tmp_path):
    preinstalled = next(h for h in lab.spec.hosts if h.ollama_preinstalled)
    assert server_version(lab, preinstalled.name) == preinstalled.ollama_preinstalled

    # First run: fresh hosts get the pinned target, the old install.sh host is upgraded.
    first = {h: {"ollama_version": "0.21.0"} for h in ONLINE}
    code, results, err = deploy(lab, write_inventory(tmp_path / "first.py", lab, first))
    assert code == 0, err
    for host in ONLINE:
        assert server_version(lab, host) == "0.21.0"
        lab.ssh(host, "systemctl is-active ollama && systemctl is-enabled ollama")
        listeners = lab.ssh(host, "ss -Hltn").stdout
        ports = [line.split()[3] for line in listeners.splitlines() if line.split()[3].endswith(":11434")]
        assert ports == ["127.0.0.1:11434"], listeners
        verify = lab.ssh(host, "systemd-analyze verify /etc/systemd/system/ollama.service", check=False)
        assert verify.returncode == 0 and verify.stderr == "" and verify.stdout == "", verify
        assert_sandboxed(lab, host)
    # The install.sh layout is gone: no stale lib/ollama beside the new release.
    lab.ssh(preinstalled.name, "test ! -e /usr/local/lib/ollama && test -L /usr/local/bin/ollama")
    assert lab.ssh(preinstalled.name, "ollama --version").stdout.strip() == "ollama version is 0.21.0"

    # Second run: nothing changes.
    code, results, err = deploy(lab, write_inventory(tmp_path / "again.py", lab, first))
    assert code == 0, err
    assert changed_ops(results) == []

    # Upgrade everyone to 0.30.0, but gpuws gets a tampered tarball: it fails alone, keeps 0.21.0.
    upgrade = {h: {"ollama_version": "0.30.0", "ollama_upgrade": True} for h in ONLINE}
    upgrade["gpuws"]["ollama_url_template"] = tampered_release(lab, "0.30.0")
    code, results, err = deploy(lab, write_inventory(tmp_path / "tamper.py", lab, upgrade))
    assert code != 0
    assert failed_hosts(results) == {"gpuws"}
    assert "checksum mismatch" in err and "nothing was changed" in err
    assert server_version(lab, "gpuws") == "0.21.0"
    assert lab.ssh("gpuws", "readlink /usr/local/lib/localcode/ollama/current").stdout.strip().endswith("/0.21.0-amd64")
    assert lab.ssh("gpuws", "ls /usr/local/lib/localcode/ollama").stdout.split() == ["0.21.0-amd64", "current"]
    for host in ("laptop", "bigbox"):
        assert server_version(lab, host) == "0.30.0"
        # The switch renamed a new link over `current`: no stray link beside it, none moved into
        # the release it pointed at.
        releases = "/usr/local/lib/localcode/ollama"
        assert lab.ssh(host, f"ls {releases}").stdout.split() == ["0.21.0-amd64", "0.30.0-amd64", "current"]
        assert lab.ssh(host, f"readlink {releases}/current").stdout.strip() == f"{releases}/0.30.0-amd64"
        assert lab.ssh(host, f"find {releases}/0.21.0-amd64 -maxdepth 1 -type l").stdout == ""
