"""Onboarding as a developer does it on a new machine: a clone copied into their home, one
command typed into their login shell in a real terminal, sudo's password typed when it asks.

An online machine installs the toolkit from its package index (the lab's PyPI) and everything
else from the internet; an air-gapped one installs everything, the toolkit's wheels included,
from a bundle directory and tries no network at all (the egress counter). Afterwards the doctor
passes for the host, `claude-local -p` answers, and a second onboarding changes nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import fleet
from lab.inventory import lab_bundle_dir, source_data

from .conftest import REPO, Lab, q
from .deploy_helpers import count_egress, lab_with_bundle, outbound_packets, repository_archive, write_inventory
from .terminal import Terminal

pytestmark = pytest.mark.lab
ONLINE, AIRGAPPED = "fresh", "vault"
USERS = {ONLINE: ("nina", "nina-sudo-1"), AIRGAPPED: ("omar", "omar-sudo-1")}
USB = "/media/usb/localcode-bundle"
if shutil.which("tmux") is None:
    pytest.skip("tmux is missing on the control machine (apt-get install tmux)", allow_module_level=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    """Two new machines (python3 with venv, git, sudo with a password for their developer), and
    the bundle the air-gapped one is carried on a USB disk."""
    spec = {"name": "onbd", "subnet": "10.247.0.0/16", "hosts": [
        {"name": ONLINE, "ram_gib": 24, "users": [{"name": USERS[ONLINE][0], "sudo_password": USERS[ONLINE][1]}]},
        {"name": AIRGAPPED, "ram_gib": 24, "network": "airgapped",
         "users": [{"name": USERS[AIRGAPPED][0], "sudo_password": USERS[AIRGAPPED][1]}]}]}
    with lab_with_bundle(spec, tmp_path_factory.mktemp("onbd")) as lab:
        yield lab


def copy_clone(lab: Lab, host: str, team_inventory: str) -> None:
    """The clone in the developer's home, with the team inventory that names this machine."""
    user = USERS[host][0]
    subprocess.run([*fleet.ssh_argv(lab.state, host, user), "tar -xzf - -C ~"], input=repository_archive(),
                   check=True, capture_output=True)
    lab.ssh(host, f"cat > ~/localcode/inventory/team.py <<'EOF'\n{team_inventory}EOF", user=user)


def onboard(lab: Lab, host: str, args: str, socket: Path, password: bool) -> tuple[int, str, float]:
    """Types the onboarding command into the developer's login shell (and sudo's password when
    asked); (exit code, its output, seconds)."""
    user, secret = USERS[host]
    term = Terminal(lab, host, user, socket)
    try:
        term.wait_for(f"{user}@{host}:~$")
        started = time.monotonic()
        term.run(f"cd ~/localcode && ./onboard {args} 2>&1 | tee ~/onboard.log; echo ONBOARD-EXIT'='${{PIPESTATUS[0]}}")
        if password:
            term.wait_for(f"[sudo] password for {user}:", timeout=300)
            term.type(secret)
            term.keys("Enter")
        screen = term.wait_for("ONBOARD-EXIT=", timeout=900)
        took = time.monotonic() - started
    finally:
        term.close()
    code = int(screen.split("ONBOARD-EXIT=", 1)[1].split()[0])
    return code, lab.ssh(host, "cat ~/onboard.log", user=user).stdout, took


def doctor(lab: Lab, host: str, tmp_path: Path) -> dict:
    inventory = write_inventory(tmp_path / "doctor-inv.py", lab)
    result = subprocess.run([str(REPO / ".venv/bin/localcode"), "doctor", str(inventory), "--json"], cwd=REPO,
                            env=lab.pyinfra_env(), capture_output=True, text=True, timeout=300)
    assert result.stdout.strip(), result.stderr[-3000:]
    return {r["host"]: r for r in json.loads(result.stdout)}[host]


def claude_local_answers(lab: Lab, host: str) -> None:
    user = USERS[host][0]
    out = lab.ssh(host, "cd ~ && bash -lic 'claude-local -p hi --output-format json' 2>/dev/null",
                  user=user, check=False).stdout
    assert json.loads(out.strip().splitlines()[-1])["is_error"] is False, out


def assert_no_changes(log: str) -> None:
    summary = log.split("--> What each host got:", 1)[1]
    assert "@local" in summary and " ok " in summary and "no changes" in summary, summary


def test_an_online_machine_onboards_itself_from_a_clone(lab: Lab, tmp_path):
    mirror = source_data("internet", lab.spec, Path(lab.state.data["services"]["mirror_root"]))
    copy_clone(lab, ONLINE, f"laptops = [({ONLINE!r}, {{'developer_users': ['nina'], **{mirror!r}}})]\n")
    code, log, took = onboard(lab, ONLINE, "", tmp_path / "tmux-1", password=True)
    assert code == 0, log[-4000:]
    assert f"this machine is {ONLINE} in inventory/team.py" in log
    print(f"\nonboarding {ONLINE} (online) took {took:.0f} s")
    # Root ran the deploy from the clone and left no file of its own there.
    assert lab.ssh(ONLINE, "find ~/localcode ! -user nina", user="nina").stdout == ""
    report = doctor(lab, ONLINE, tmp_path)
    assert report["ok"], report
    claude_local_answers(lab, ONLINE)
    code, log, _ = onboard(lab, ONLINE, "", tmp_path / "tmux-2", password=True)
    assert code == 0, log[-4000:]
    assert_no_changes(log)


def test_an_airgapped_machine_onboards_itself_from_a_bundle_on_a_usb_disk(lab: Lab, tmp_path):
    bundle = lab_bundle_dir(Path(lab.state.data["services"]["mirror_root"]))
    subprocess.run(f"tar -C {q(str(bundle))} -cf - . | {' '.join(map(q, fleet.ssh_argv(lab.state, AIRGAPPED, 'root')))} "
                   f"'mkdir -p {USB} && tar -xf - -C {USB}'", shell=True, check=True, capture_output=True)
    copy_clone(lab, AIRGAPPED, f"airgapped = [({AIRGAPPED!r}, {{'developer_users': ['omar']}})]\n")
    count_egress(lab, AIRGAPPED)
    code, log, took = onboard(lab, AIRGAPPED, f"--bundle {USB}", tmp_path / "tmux-1", password=True)
    assert code == 0, log[-4000:]
    print(f"\nonboarding {AIRGAPPED} (air-gapped, from the bundle) took {took:.0f} s")
    assert "no package index" in log
    assert outbound_packets(lab, AIRGAPPED) == 0  # not one connection attempt, not even DNS
    report = doctor(lab, AIRGAPPED, tmp_path)
    assert report["ok"], report
    claude_local_answers(lab, AIRGAPPED)
    assert outbound_packets(lab, AIRGAPPED) == 0
    code, log, _ = onboard(lab, AIRGAPPED, f"--bundle {USB}", tmp_path / "tmux-2", password=True)
    assert code == 0, log[-4000:]
    assert_no_changes(log)
