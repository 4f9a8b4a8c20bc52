"""Issue 9's faults on the lab: each has a clear outcome, leaves no partial state, and the next
run converges. (A corrupt tarball, a stale lib dir from a manual install and SSH cut mid-transfer
are covered in test_ollama_deploy.py and test_bundle_deploy.py.)"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from lab import fleet

from .conftest import REPO, Lab, lab_spec_file, start_lab
from .deploy_helpers import changed_ops, deploy, write_inventory

pytestmark = pytest.mark.lab
STORE = "/usr/share/ollama/.ollama"


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    path = lab_spec_file(tmp_path_factory.mktemp("faults"), "flt", "10.224.0.0/16", hosts=["laptop", "gpuws"])
    lab = start_lab(path)
    yield lab
    fleet.down(lab.spec.name)


def converges(lab: Lab, inventory) -> None:
    code, _, err = deploy(lab, inventory)
    assert code == 0, err
    code, results, err = deploy(lab, inventory)
    assert code == 0 and changed_ops(results) == [], err


def test_host_down_mid_run(lab: Lab, tmp_path):
    inventory = write_inventory(tmp_path / "inv.py", lab)
    proc = subprocess.Popen([str(REPO / ".venv/bin/pyinfra"), "-y", str(inventory), "deploy.py"], cwd=REPO,
                            env=lab.pyinfra_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60  # wait until the run is executing operations, then cut gpuws
    while time.monotonic() < deadline:
        if lab.ssh("gpuws", "test -d /usr/local/lib/localcode/bin", check=False).returncode == 0:
            break
        time.sleep(0.2)
    fleet.power(lab.spec.name, "gpuws", on=False)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0, output
    assert "[gpuws]" in output and "Error" in output  # the summary names the host that went away
    assert lab.ssh("laptop", "systemctl is-active ollama && claude --version").returncode == 0  # the other finished
    fleet.power(lab.spec.name, "gpuws", on=True)
    converges(lab, inventory)


def test_ollama_stopped_before_the_model_step(lab: Lab, tmp_path):
    """The server is down and the derived model gone: the run starts the service before any
    model operation and recreates the model."""
    inventory = write_inventory(tmp_path / "inv.py", lab)
    converges(lab, inventory)
    derived = next(m["name"] for m in json.loads(lab.ssh("laptop", "curl -sf 127.0.0.1:11434/api/tags").stdout)["models"]
                   if m["name"].startswith("localcode/"))
    lab.ssh("laptop", f"ollama rm {derived} && systemctl stop ollama")
    code, _, err = deploy(lab, inventory)
    assert code == 0, err
    assert lab.ssh("laptop", "systemctl is-active ollama").stdout.strip() == "active"
    assert derived in lab.ssh("laptop", "ollama list").stdout
    converges(lab, inventory)


def test_disk_full_during_a_blob_sync(lab: Lab, tmp_path):
    """The store's filesystem fills up mid-sync (a 2 MiB tmpfs as the Ollama home): the host
    fails with the reason, nothing partial is in the store, and with space back it converges."""
    subprocess.run([str(REPO / ".venv/bin/python"), "-m", "lab", "bundle", "--spec", lab.state.data["spec_path"]],
                   cwd=REPO, check=True, capture_output=True)
    mirror = {"gpuws": {"ollama_source": "mirror", "claude_source": "mirror", "model_source": "mirror",
                        "mirror_url": f"{lab.spec.internet.mirror_url}/bundle"}}
    inventory = write_inventory(tmp_path / "mirror.py", lab, mirror)
    lab.ssh("gpuws", f"systemctl stop ollama && mount -t tmpfs -o size=2m tmpfs {STORE} && "
                     f"chown ollama:ollama {STORE} && systemctl start ollama")
    try:
        code, _, err = deploy(lab, inventory, "--limit", "gpuws")
        assert code != 0
        assert "No space left on device" in err or "cannot download" in err, err
        partial = lab.ssh("gpuws", f"find {STORE}/models -name '*partial*'; ls {STORE}/models/manifests 2>/dev/null",
                          check=False).stdout.strip()
        assert partial == ""  # no partial blob and no manifest pointing at missing blobs
    finally:
        lab.ssh("gpuws", f"systemctl stop ollama; umount {STORE}; systemctl start ollama")
    converges(lab, inventory)
