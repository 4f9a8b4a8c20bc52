"""Apple Silicon's GPU memory limit (apple_gpu_memory): the pure decision, the plan that sizes
with it, and plan-level runs of the deploy on `@fake` Macs: the exact commands that set it and
keep it across reboots, no change when it is already in place, its removal, and the plan equal
to `localcode plan`'s what-if machine."""

from __future__ import annotations

import base64
import json
import logging
import plistlib
import subprocess
import sys

import pytest
from pyinfra.api.exceptions import FactProcessError

from localcode.apple import GpuLimit, daemon_plist, plan_limit
from localcode.facts import HostHardware, parse_hardware
from localcode.plan import plan_hardware, plan_host, plan_lines
from localcode.settings import ConfigError, validate_host_data
from localcode.sizing import GiB, Hardware, MiB

from .plan_harness import (MAC_OLLAMA_FACT, M, REPO, FakeMac, accounts, darwin_hardware, linux_base, linux_hardware,
                           no_ollama, plan_deploy)

DAEMON = "/Library/LaunchDaemons/com.localcode.iogpu.plist"
SET_NOW = "GPU memory limit (iogpu.wired_limit_mb)"
AT_BOOT = "GPU memory limit at boot (LaunchDaemon com.localcode.iogpu)"
REMOVE = "GPU memory limit at boot: no LaunchDaemon com.localcode.iogpu"
RELOAD = "Restart the Ollama server (binary or GPU memory limit changed)"
RESERVE = 4 * GiB  # os_reserve_gib's default


# The decision, pure.

def test_auto_is_ram_less_the_os_reserve_in_mib():
    assert plan_limit("auto", 16 * GiB, 0, False, RESERVE) == GpuLimit(16 * GiB, 0, False, 12288)
    assert plan_limit("auto", 128 * GiB, 0, False, RESERVE).planned_mb == 124 * 1024


def test_auto_leaves_two_gib_and_never_lowers_the_default():
    assert plan_limit("auto", 16 * GiB, 0, False, 1 * GiB).planned_mb == 14 * 1024  # RAM - 2 GiB, not RAM - 1
    # 8 GiB - 4 GiB is below macOS's own 2/3 (5.3 GiB): the default stays, or comes back.
    assert plan_limit("auto", 8 * GiB, 0, False, RESERVE).planned_mb == 0
    assert plan_limit("auto", 8 * GiB, 6144, True, RESERVE).planned_mb == 0


def test_a_size_in_gib_up_to_ram_less_two_gib():
    assert plan_limit(14, 16 * GiB, 0, False, RESERVE).planned_mb == 14336
    assert plan_limit(12.5, 16 * GiB, 0, False, RESERVE).planned_mb == 12800
    with pytest.raises(ValueError, match=r"apple_gpu_memory = 14\.5: above RAM minus 2 GiB on this host "
                                         r"\(16\.0 GiB RAM\); at most 14\.0"):
        plan_limit(14.5, 16 * GiB, 0, False, RESERVE)


def test_unset_leaves_a_limit_alone_unless_it_is_ours():
    assert plan_limit(None, 16 * GiB, 0, False, RESERVE).planned_mb is None
    hand_set = plan_limit(None, 16 * GiB, 13000, False, RESERVE)
    assert hand_set.planned_mb is None and hand_set.wired_limit_bytes == 13000 * MiB  # sized as it runs
    ours = plan_limit(None, 16 * GiB, 12288, True, RESERVE)
    assert ours.planned_mb == 0 and ours.wired_limit_bytes is None  # restored: sized at the default


def test_the_plans_line_says_what_changes():
    assert GpuLimit(16 * GiB, 0, False, 12288).change() == (
        "GPU memory limit raised from 10.7 to 12.0 GiB (iogpu.wired_limit_mb=12288, kept across reboots)")
    assert GpuLimit(16 * GiB, 12288, True, 0).change() == (
        "GPU memory limit restored from 12.0 GiB to the system default, 10.7 GiB")
    assert GpuLimit(48 * GiB, 0, False, 20480).change().startswith("GPU memory limit lowered from 36.0 to 20.0 GiB")
    assert GpuLimit(16 * GiB, 12288, True, 12288).change() is None
    assert GpuLimit(16 * GiB, 12288, False, None).change() is None


def test_the_launch_daemon_runs_sysctl_at_boot_as_root():
    daemon = plistlib.loads(daemon_plist(12288))
    assert daemon == {"Label": "com.localcode.iogpu", "UserName": "root", "RunAtLoad": True,
                      "ProgramArguments": ["/usr/sbin/sysctl", "iogpu.wired_limit_mb=12288"]}


# The plan sizes with the limit the deploy sets.

def mac_facts(ram_gib: int, limit_mb: int = 0, daemon: bool = False) -> HostHardware:
    return HostHardware("Darwin", "arm64", ram_gib * GiB, wired_limit_bytes=limit_mb * MiB or None, login="root",
                        iogpu_daemon=daemon)


def test_the_plan_budgets_with_the_limit_to_be_set():
    config = validate_host_data("mac", {"apple_gpu_memory": 13})
    plan = plan_host("mac", config, mac_facts(16))
    assert plan.decision.budget_bytes == 13 * GiB - 512 * MiB
    assert plan.hardware == "16 GiB RAM unified (Apple Silicon)"  # as found
    assert "GPU memory limit raised from 10.7 to 13.0 GiB (iogpu.wired_limit_mb=13312, kept across reboots)" \
        in plan_lines(plan)
    assert plan.as_dict()["gpu_memory_limit"] == {"running_mb": 0, "planned_mb": 13312,
                                                   "working_set_bytes": 13 * GiB}
    unset = plan_host("mac", validate_host_data("mac", {}), mac_facts(16))
    assert unset.decision.budget_bytes == 16 * GiB * 2 // 3 - 512 * MiB
    assert not any("GPU memory limit" in line for line in plan_lines(unset))


def test_a_limit_the_hosts_ram_cannot_give_fails_that_host_with_the_key():
    plan = plan_host("mac", validate_host_data("mac", {"apple_gpu_memory": 15}), mac_facts(16))
    assert plan.decision is None and plan.error.startswith("apple_gpu_memory = 15")
    assert plan_host("big", validate_host_data("big", {"apple_gpu_memory": 15}), mac_facts(32)).decision is not None


def test_elsewhere_the_key_is_ignored_with_a_warning():
    config = validate_host_data("ws", {"apple_gpu_memory": "auto"})
    plan = plan_hardware("ws", config, Hardware(64 * GiB))
    assert plan.gpu_limit is None and plan.decision is not None
    assert "apple_gpu_memory = 'auto' is ignored: not an Apple Silicon Mac" in plan.warnings
    intel = plan_host("intel", config, HostHardware("Darwin", "x86_64", 32 * GiB, login="root"))
    assert intel.gpu_limit is None and any("ignored" in w for w in intel.warnings)


# Validation of the key, without a host.

@pytest.mark.parametrize("value", [None, "auto", 1, 12, 12.5, 1024])
def test_accepted_values(value):
    assert validate_host_data("mac", {"apple_gpu_memory": value}).apple_gpu_memory == value


@pytest.mark.parametrize("value", [0, -4, 0.5, 2048, float("nan"), float("inf"), True, "12", "Auto", "12GiB", [12]])
def test_refused_values_name_host_and_key(value):
    with pytest.raises(ConfigError) as info:
        validate_host_data("mac-1", {"apple_gpu_memory": value})
    message = str(info.value)
    assert "invalid data for host mac-1" in message and f"apple_gpu_memory = {value!r}: expected None" in message


# The deploy on @fake Macs.

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mac(ram_gib: int = 16, limit_mb: int = 0, daemon: bytes | None = None, **data) -> dict:
    """A Mac with Homebrew's ollama formula current (no install), `limit_mb` in force and, when
    given, our LaunchDaemon with that content (root's, 0644)."""
    files = [f"{M}file:{DAEMON}", f"file 0 0 644 {len(daemon)}", b64(daemon)] if daemon is not None else []
    return {"developer_users": ["ana"], **data, "fake_responses": {
        "uname -s; uname -m": darwin_hardware(ram_gib, wired_limit_mb=limit_mb, iogpu_daemon=daemon is not None)
        + accounts(("ana", 501, "/Users/ana", "/bin/zsh"), macos=True),
        MAC_OLLAMA_FACT: FakeMac(brew_ollama="0.30.0", agent_loaded=True).ollama_fact(),
        "/api/tags": no_ollama(),
        **({"localcode-read": files} if files else {}),
    }}


def deploy(monkeypatch, host: dict, name: str = "@fake/mac") -> dict:
    return {op.name: op for op in plan_deploy([(name, host)], monkeypatch)[name]}


def test_setting_the_limit_now_and_at_every_boot(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    ops = deploy(monkeypatch, mac(16, apple_gpu_memory="auto"))
    assert "GPU memory limit raised from 10.7 to 12.0 GiB (iogpu.wired_limit_mb=12288" in caplog.text
    now = ops[SET_NOW]
    assert now.commands == ["/usr/sbin/sysctl iogpu.wired_limit_mb=12288"] and now.sudo
    boot = ops[AT_BOOT]
    assert boot.sudo and boot.commands == [  # root's own file, written as root, atomically
        "mkdir -p /Library/LaunchDaemons", f"chown 0:0 {DAEMON}.localcode-new", f"chmod 0644 {DAEMON}.localcode-new",
        f"mv -f {DAEMON}.localcode-new {DAEMON}"]
    assert boot.uploads == {f"{DAEMON}.localcode-new": daemon_plist(12288).decode()}
    assert REMOVE not in ops
    # Ollama reads the limit when its server starts: a changed limit restarts it, after the limit.
    names = list(ops)
    assert names.index(SET_NOW) < names.index(RELOAD)


def test_nothing_changes_when_the_limit_and_its_daemon_are_in_place(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger="pyinfra")  # noops are logged at debug level
    ops = deploy(monkeypatch, mac(16, limit_mb=12288, daemon=daemon_plist(12288), apple_gpu_memory="auto"))
    assert ops[SET_NOW].commands == [] and ops[AT_BOOT].commands == [] and not ops[AT_BOOT].uploads
    assert "iogpu.wired_limit_mb is already 12288" in caplog.text and f"{DAEMON} is up to date" in caplog.text
    assert "GPU memory limit raised" not in caplog.text


def test_a_new_size_rewrites_the_daemon_and_sets_the_limit(monkeypatch):
    ops = deploy(monkeypatch, mac(16, limit_mb=12288, daemon=daemon_plist(12288), apple_gpu_memory=13))
    assert ops[SET_NOW].commands == ["/usr/sbin/sysctl iogpu.wired_limit_mb=13312"]
    assert ops[AT_BOOT].uploads == {f"{DAEMON}.localcode-new": daemon_plist(13312).decode()}


def test_removing_the_key_restores_the_default_and_removes_the_daemon(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    ops = deploy(monkeypatch, mac(16, limit_mb=12288, daemon=daemon_plist(12288)))
    assert "GPU memory limit restored from 12.0 GiB to the system default, 10.7 GiB" in caplog.text
    assert ops[REMOVE].commands == [
        "/bin/sh -c '/bin/launchctl bootout \"$1\" 2>/dev/null; /bin/rm -f \"$2\"' localcode "
        f"system/com.localcode.iogpu {DAEMON}"]
    assert ops[SET_NOW].commands == ["/usr/sbin/sysctl iogpu.wired_limit_mb=0"]
    assert AT_BOOT not in ops


def test_a_mac_that_never_had_it_sees_no_change(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger="pyinfra")  # noops are logged at debug level
    for limit_mb in (0, 20480):  # the default, or a limit someone set by hand: not ours, left as it is
        ops = deploy(monkeypatch, mac(32, limit_mb=limit_mb))
        assert ops[SET_NOW].commands == [] and ops[REMOVE].commands == []
        assert f"apple_gpu_memory is unset and no LaunchDaemon of ours: iogpu.wired_limit_mb left at {limit_mb}" \
            in caplog.text
        assert f"no {DAEMON}: nothing to remove" in caplog.text


def test_a_linux_host_gets_no_limit_and_a_warning(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    host = {"apple_gpu_memory": 12, "fake_responses": {**linux_base(), "uname -s; uname -m": linux_hardware(64),
                                                       "/api/tags": no_ollama()}}
    ops = deploy(monkeypatch, host, "@fake/ws")
    assert "apple_gpu_memory = 12.0 is ignored: not an Apple Silicon Mac" in caplog.text
    assert not [name for name in ops if "GPU memory" in name]
    assert not any("sysctl" in c or "LaunchDaemons" in c for op in ops.values() for c in op.commands)


def test_a_limit_above_the_macs_ram_fails_that_mac_alone(monkeypatch):
    planned = plan_deploy([("@fake/mac16", mac(16, apple_gpu_memory=15)),
                           ("@fake/mac32", mac(32, apple_gpu_memory=15))], monkeypatch)
    failed = planned["@fake/mac16"]
    assert len(failed) == 1 and "exit 1" in failed[0].text()
    assert "@fake/mac16: apple_gpu_memory = 15.0: above RAM minus 2 GiB on this host (16.0 GiB RAM); at most 14.0" \
        in failed[0].text()
    assert [op.commands for op in planned["@fake/mac32"] if op.name == SET_NOW] == [
        ["/usr/sbin/sysctl iogpu.wired_limit_mb=15360"]]


def what_if(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localcode.cli", "plan", *args], cwd=REPO, capture_output=True,
                          text=True, check=True)


@pytest.mark.parametrize("setting", ["auto", "13"])
def test_the_deploys_plan_on_a_16_gb_mac_is_localcode_plans(monkeypatch, caplog, setting):
    """What `pyinfra ... --dry` logs for a 16 GB Mac is what `localcode plan --ram-gib 16 --apple
    --apple-gpu-memory SETTING` says: the limit's change, the model (or none) and why."""
    caplog.set_level(logging.INFO, logger="pyinfra")
    args = ("--ram-gib", "16", "--apple", "--apple-gpu-memory", setting)
    expected = json.loads(what_if(*args, "--json").stdout)
    notes = [line.removeprefix("what-if: ") for line in what_if(*args).stdout.splitlines()
             if line.startswith("what-if: ")]
    deploy(monkeypatch, mac(16, apple_gpu_memory=setting if setting == "auto" else float(setting)))
    assert notes[0].startswith("GPU memory limit raised from 10.7 to ") and notes[0] in caplog.text
    if expected["model"] is None:
        assert f"sizing: no model ({expected['reason']})" in caplog.text
    else:
        assert (f"sizing: {expected['model']} as {expected['name']}, num_ctx {expected['num_ctx']}, "
                f"KV {expected['kv_cache_type']}") in caplog.text
        assert f"why: {expected['reason']}" in caplog.text
    assert f"-> {expected['tier']}" in caplog.text


def test_the_hardware_fact_reads_whether_our_daemon_is_installed():
    assert parse_hardware(darwin_hardware(16, wired_limit_mb=12288, iogpu_daemon=True)).iogpu_daemon
    assert not parse_hardware(darwin_hardware(16)).iogpu_daemon
    with pytest.raises(FactProcessError, match="iogpu-daemon: expected 'present' or nothing"):
        parse_hardware(darwin_hardware(16) + ["yes"])
