"""AMD cards Ollama's ROCm build does not list, on the lab: a host with an RX 6600 (gfx1032) gets
HSA_OVERRIDE_GFX_VERSION=10.3.0 in its drop-in and is sized on its GPU; a host whose only GPU is a
Renoir iGPU (gfx90c) is sized CPU-only with a warning naming the card and its target; `localcode
plan` shows both and the doctor finds the running server's environment as planned.

The kernel's KFD topology cannot be faked inside the containers, so the hosts answer through the
hardware fact's fallback, the lab's rocm-smi (`--showproductname --json`, "GFX Version")."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from lab import fleet

from .conftest import REPO, Lab, start_lab
from .deploy_helpers import deploy, failed_hosts, write_inventory

pytestmark = pytest.mark.lab
DROPIN = "/etc/systemd/system/ollama.service.d/localcode.conf"
SPEC = {
    "name": "amdgfx",
    "subnet": "10.244.0.0/16",
    "hosts": [
        {"name": "radeon", "ram_gib": 32, "users": [{"name": "dev", "shell": "bash"}],
         "gpus": [{"vendor": "amd", "gib": 8, "model": "AMD Radeon RX 6600", "gfx": "gfx1032"}]},
        {"name": "renoir", "ram_gib": 16, "users": [{"name": "dev", "shell": "bash"}],
         "gpus": [{"vendor": "amd", "gib": 2, "model": "AMD Radeon Graphics", "gfx": "gfx90c"}]},
    ],
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    path = tmp_path_factory.mktemp("amdgfx") / "amdgfx.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    lab = start_lab(path)
    yield lab
    fleet.down(lab.spec.name)


def localcode(lab: Lab, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(REPO / ".venv/bin/localcode"), *args], cwd=REPO, env=lab.pyinfra_env(),
                            capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def test_the_lab_reports_each_cards_target(lab: Lab):
    answer = json.loads(lab.ssh("radeon", "rocm-smi --showproductname --json").stdout)
    assert answer["card0"]["GFX Version"] == "gfx1032"


def test_plan_shows_the_override_and_the_card_left_out(lab: Lab, tmp_path):
    result = localcode(lab, "plan", str(write_inventory(tmp_path / "inv.py", lab)))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()[:1] in (["radeon"], ["renoir"])}
    assert "amd 8 GiB" in rows["radeon"] and "GPU: AMD 8 GiB" in rows["radeon"], result.stdout
    assert "amd 2 GiB" in rows["renoir"] and "CPU only" in rows["renoir"], result.stdout
    assert ("radeon: note: AMD card0 (gfx1032, 8 GiB): gfx1032 is not in Ollama 0.30.0's ROCm build: runs as "
            "gfx1030 with HSA_OVERRIDE_GFX_VERSION=10.3.0") in result.stdout
    assert "renoir: warning: AMD card0 (gfx90c, 2 GiB) is not used: gfx90c: no target to override it to" \
        in result.stdout
    as_json = {p["host"]: p for p in json.loads(localcode(lab, "plan", str(tmp_path / "inv.py"), "--json").stdout)}
    assert as_json["radeon"]["gpu_environment"] == {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}
    assert "gpu_environment" not in as_json["renoir"]


def test_deploy_writes_the_override_and_the_doctor_agrees(lab: Lab, tmp_path):
    inventory = write_inventory(tmp_path / "inv.py", lab)
    code, results, err = deploy(lab, inventory)
    assert code == 0 and results is not None and not failed_hosts(results), err[-3000:]
    assert 'Environment="HSA_OVERRIDE_GFX_VERSION=10.3.0"' in lab.ssh("radeon", f"cat {DROPIN}").stdout
    running = lab.ssh("radeon", "systemctl show ollama -p Environment --value").stdout.split()
    assert "HSA_OVERRIDE_GFX_VERSION=10.3.0" in running
    assert "HSA_OVERRIDE_GFX_VERSION" not in lab.ssh("renoir", f"cat {DROPIN}").stdout
    # The deploy sized as the plan did: GPU on radeon, CPU only on renoir.
    sizing = {h["host"]: h["sizing"] for h in results["localcode"]}
    assert "GPU: AMD 8 GiB" in sizing["radeon"] and "CPU only" in sizing["renoir"], sizing
    doctor = localcode(lab, "doctor", str(inventory), "--json")
    reports = {r["host"]: r for r in json.loads(doctor.stdout)}
    context = {h: next(c for c in r["checks"] if c["name"] == "context") for h, r in reports.items()}
    assert doctor.returncode == 0 and all(c["status"] == "pass" for c in context.values()), doctor.stdout[-3000:]
