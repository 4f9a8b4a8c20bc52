"""Onboarding one machine (pure parts, and a Mac at plan level): which inventory host it is,
the data its @local deploy gets, the inventory written for it, and the wheels a bundle carries
for it (one requirements file whose markers pick this machine's set)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from localcode import wheels
from localcode.onboarding import Entry, OnboardError, find_entry, inventory_text, onboard_data
from localcode.settings import validate_inventory

from .plan_harness import deploy_mac, fresh_mac

REPO = Path(__file__).resolve().parent.parent
TEAM = [("mac-ana.example.internal", {"developer_users": ["ana"], "ssh_user": "admin"}),
        ("ws-dana.example.internal", {"developer_users": ["dana"], "ssh_hostname": "10.0.0.7"}),
        ("ws-shared", {"developer_users": ["eli", "fay"], "model_preferences": ["qwen3-coder:30b"]})]


@pytest.mark.parametrize(("names", "found"), [
    (("mac-ana", "mac-ana.example.internal"), "mac-ana.example.internal"),   # host name, qualified
    (("mac-ana",), "mac-ana.example.internal"),                               # short name only
    (("ws-shared.corp.example", "ws-shared"), "ws-shared"),                   # qualified here, short there
    (("10.0.0.7",), "ws-dana.example.internal"),                              # by its ssh_hostname
    (("MAC-ANA",), "mac-ana.example.internal"),                               # names are case-blind
    (("new-laptop",), None),                                                  # not in the inventory
])
def test_the_machine_is_found_by_its_names(names, found):
    assert find_entry(TEAM, tuple(n.lower() for n in names), None).name == found


def test_an_explicit_host_wins_and_must_exist():
    assert find_entry(TEAM, ("new-laptop",), "ws-shared").name == "ws-shared"
    with pytest.raises(OnboardError, match="--host ghost: no such host in the inventory"):
        find_entry(TEAM, ("new-laptop",), "ghost")


def test_two_matching_hosts_are_an_error_naming_both():
    twins = [("dev1.a.example", {}), ("dev1.b.example", {})]
    with pytest.raises(OnboardError, match="dev1.a.example, dev1.b.example; choose one with --host"):
        find_entry(twins, ("dev1",), None)


def test_the_local_data_keeps_ours_adds_the_developer_and_the_source(tmp_path):
    entry = find_entry(TEAM, ("ws-shared",), None)
    data = onboard_data(entry, "fay", None, None)
    assert data == {"developer_users": ["eli", "fay"], "model_preferences": ["qwen3-coder:30b"],
                    "inventory_name": "ws-shared"}
    data = onboard_data(Entry("mac-ana.example.internal", dict(TEAM[0][1])), "newhire", str(tmp_path), None)
    assert "ssh_user" not in data  # the connector's keys are not ours (and @local has no SSH)
    assert data["developer_users"] == ["ana", "newhire"]
    assert {data[k] for k in ("ollama_source", "claude_source", "model_source")} == {"bundle"}
    assert data["bundle_dir"] == str(tmp_path.resolve())
    data = onboard_data(Entry(None, {}), None, None, "http://mirror.internal/localcode/")
    assert data == {"ollama_source": "mirror", "claude_source": "mirror", "model_source": "mirror",
                    "mirror_url": "http://mirror.internal/localcode"}
    assert "developer_users" not in onboard_data(Entry(None, {}), "root", None, None)


def test_the_written_inventory_is_the_machine_alone_as_pyinfra_reads_it(tmp_path):
    data = {"developer_users": ["ana"], "claude_projects": {"ana": ["/Users/ana/src/app"]}, "ollama_version": "0.30.0",
            "model_preferences": ["devstral-small-2:24b"], "claude_permission_mode": "acceptEdits"}
    path = tmp_path / "this-machine.py"
    path.write_text(inventory_text(data, "mac-ana in inventory/team.py"))
    script = ("import sys, json; from localcode.gather import loaded; (h,) = list(loaded(sys.argv[1])[1]); "
              "print(json.dumps([h.name, {k: h.data.get(k) for k in json.loads(sys.argv[2])}]))")
    out = subprocess.run([sys.executable, "-c", script, str(path), json.dumps(list(data))], cwd=REPO,
                         check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == ["@local", data]
    validate_inventory([("@local", data)])


def test_a_mac_onboards_as_root_through_sudo_with_its_developer_files_as_the_developer(monkeypatch):
    """`localcode onboard` runs the deploy as root (sudo) on @local: the Mac's rules hold (no
    brew as root, absolute paths, launchd domains), and ana's files are written as ana."""
    data = onboard_data(find_entry(TEAM, ("mac-ana",), None), "ana", None, None)
    deploy = deploy_mac(fresh_mac(login="root"), monkeypatch, name="@fake/mac", **data)
    ops = deploy.by_name()
    assert ops["localcode helper scripts"].sudo is False  # already root: no sudo of its own
    assert ops["Ollama formula (Homebrew)"].sudo_user == "ana"  # brew as its owner, never as root
    assert ops["Ollama LaunchAgent loaded (launchctl bootstrap)"].commands[0].startswith("/bin/launchctl bootstrap gui/501 ")
    assert any(c.endswith(" /usr/bin/sudo -n -u ana --") for c in ops["Developer files"].commands), \
        ops["Developer files"].commands


# The wheels a bundle carries.

def pin(name: str, version: str, filename: str, sha: str) -> wheels.Pin:
    return wheels.Pin(name, version, filename, f"https://files.example/{filename}", sha * 64)


def test_one_requirements_file_installs_exactly_each_machines_set():
    sets = {("linux-amd64", "3.11"): [pin("pyyaml", "6.0.4", "PyYAML-6.0.4-cp311-cp311-manylinux_2_17_x86_64.whl", "a"),
                                      pin("six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl", "c")],
            ("darwin", "3.13"): [pin("pyyaml", "6.0.4", "PyYAML-6.0.4-cp313-cp313-macosx_11_0_arm64.whl", "b"),
                                 pin("six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl", "c")]}
    text = wheels.requirements_text(sets)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines[0].startswith("pyyaml==6.0.4 ; ") and "--hash=sha256:" + "a" * 64 in lines[0] \
        and "--hash=sha256:" + "b" * 64 in lines[0]
    assert lines[1].count("--hash=") == 1  # one wheel for both sets: its hash once
    machines = {("linux-amd64", "3.11"): {"sys_platform": "linux", "platform_machine": "x86_64", "python_version": "3.11"},
                ("darwin", "3.13"): {"sys_platform": "darwin", "platform_machine": "arm64", "python_version": "3.13"},
                ("linux-arm64", "3.11"): {"sys_platform": "linux", "platform_machine": "aarch64", "python_version": "3.11"}}
    for machine, env in machines.items():
        picked = [Requirement(line.split(" --hash")[0]) for line in lines]
        chosen = sorted(r.name for r in picked if Marker(str(r.marker)).evaluate(env))
        assert chosen == (["pyyaml", "six"] if machine in sets else []), machine


def test_pip_reports_are_read_strictly():
    good = {"install": [{"metadata": {"name": "six", "version": "1.17.0"}, "download_info": {
        "url": "https://files.example/six-1.17.0-py2.py3-none-any.whl", "archive_info": {"hashes": {"sha256": "c" * 64}}}}]}
    assert wheels.pins_from_report(good) == [pin("six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl", "c")]
    sdist = json.loads(json.dumps(good).replace("-py2.py3-none-any.whl", ".tar.gz"))
    unhashed = json.loads(json.dumps(good).replace('"sha256": "' + "c" * 64, '"sha256": "zz'))
    for bad in (sdist, unhashed):
        with pytest.raises(wheels.WheelError, match="no wheel with a published sha256"):
            wheels.pins_from_report(bad)


def test_the_link_page_escapes_names():
    page = wheels.link_page(['a"b<c>.whl'])
    assert 'href="a&quot;b&lt;c&gt;.whl"' in page


def test_the_toolkit_requirements_are_the_projects():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert list(wheels.BUILD_REQUIREMENTS) == project["build-system"]["requires"]
    assert wheels.toolkit_requirements() == project["project"]["dependencies"] + project["build-system"]["requires"]


def test_a_python_too_old_or_malformed_is_refused():
    assert wheels.python_tag("3.13") == "3.13"
    for bad in ("3.9", "3.10", "3", "3.11.2", "py3.11"):
        with pytest.raises(ValueError):
            wheels.python_tag(bad)
