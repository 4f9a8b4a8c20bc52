"""The bundle carries the versions the inventory pins: group_data pins the air-gapped group to
an older Ollama than HostConfig's default, `localcode bundle --inventory` carries that release
(and only it), and the air-gapped host converges to it from the bundle."""

from __future__ import annotations

import json
import subprocess

import pytest
from packaging.version import Version

from lab import fleet
from localcode.bundle_index import load_index, ollama_path
from localcode.catalog import builtin_catalog
from localcode.settings import HostConfig

from .conftest import REPO, Lab, lab_spec_file, start_lab
from .deploy_helpers import deploy, write_inventory

pytestmark = pytest.mark.lab
PINNED = "0.21.0"
MODEL = "gemma4:e4b"  # what the air-gapped host (16 GiB AMD) is sized for


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    path = lab_spec_file(tmp_path_factory.mktemp("bver"), "bver", "10.243.0.0/16", hosts=["airgap"])
    lab = start_lab(path)
    yield lab
    fleet.down(lab.spec.name)


def test_airgapped_host_converges_to_the_ollama_its_group_data_pins(lab: Lab, tmp_path):
    default = HostConfig().ollama_version
    assert PINNED != default and PINNED in lab.spec.internet.ollama_versions
    floor = next(m.min_ollama for m in builtin_catalog().models if m.tag == MODEL)
    assert Version(PINNED) >= Version(floor)

    bundle = tmp_path / "bundle"
    inventory_dir = tmp_path / "inventory"
    (inventory_dir / "group_data").mkdir(parents=True)
    (inventory_dir / "group_data/airgapped.py").write_text(f"ollama_version = {PINNED!r}\n")
    inventory = write_inventory(inventory_dir / "bver.py", lab, {"airgap": {"bundle_dir": str(bundle)}})

    services = lab.state.data["services"]
    mirror = f"http://127.0.0.1:{services['mirror_tcp_port']}"
    built = subprocess.run(
        [str(REPO / ".venv/bin/localcode"), "bundle", str(bundle), "--inventory", str(inventory), "--quiet",
         "--ollama-url", f"{mirror}/ollama/releases/download", "--claude-url", f"{mirror}/claude-code-releases",
         "--registry", f"http://127.0.0.1:{services['registry_tcp_port']}"],
        cwd=REPO, env=lab.pyinfra_env(), capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    print(f"\n{built.stdout}")
    assert f"Ollama {PINNED} for airgap from {mirror}/ollama/releases/download/v{{version}}/{{file}}" in built.stdout
    index = load_index(bundle)
    assert index.ollama_versions == (PINNED,) and [m.name for m in index.models] == [MODEL]
    assert (bundle / ollama_path(PINNED, "ollama-linux-amd64.tar.zst")).is_file()
    assert not (bundle / ollama_path(default, "sha256sum.txt")).exists()

    code, _, err = deploy(lab, inventory, "--limit", "airgap")
    assert code == 0, err[-3000:]
    running = json.loads(lab.ssh("airgap", "curl -sf http://127.0.0.1:11434/api/version").stdout)["version"]
    assert running == PINNED
