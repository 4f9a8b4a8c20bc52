"""The running lab as pyinfra inventory groups (used by inventory/lab.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localcode.settings import SOURCE_KEYS

from .spec import LabHost, LabSpec
from .state import load_state

GROUPS = ("online", "airgapped", "gpu", "nvidia", "amd", "cpu_only")
HostEntry = tuple[str, dict[str, Any]]


def _memberships(host: LabHost) -> set[str]:
    vendors = {g.vendor for g in host.gpus}
    groups = {host.network} | vendors
    groups.add("gpu" if vendors else "cpu_only")
    return groups


def lab_bundle_dir(mirror_root: Path) -> Path:
    """The lab's bundle lives inside the mirror tree, so the lab mirror also serves it."""
    return mirror_root / "bundle"


def source_data(source: str, spec: LabSpec, mirror_root: Path) -> dict[str, Any]:
    """Deploy data that points a host at the lab's internet, its mirror or its bundle."""
    mirror = spec.internet.mirror_url
    if source == "internet":
        # The lab's release mirror is laid out like the real sources: only the base changes.
        return {"ollama_url_template": f"{mirror}/ollama/releases/download/v{{version}}/{{file}}",
                "claude_url_template": f"{mirror}/claude-code-releases/{{version}}/{{file}}"}
    if source == "mirror":
        return {**dict.fromkeys(SOURCE_KEYS, "mirror"), "mirror_url": f"{mirror}/bundle"}
    return {**dict.fromkeys(SOURCE_KEYS, "bundle"), "bundle_dir": str(lab_bundle_dir(mirror_root))}


def lab_groups(lab_name: str) -> dict[str, list[HostEntry]]:
    """Group name -> [(host name, connection data)]; fails clearly when the lab is not up."""
    state = load_state(lab_name)
    if state is None or not state.data.get("ready"):
        raise RuntimeError(f"lab {lab_name!r} is not up: run `python -m lab up` first")
    spec = LabSpec.model_validate(state.data["spec"])
    ssh_dir = Path(state.data["ssh_dir"])
    groups: dict[str, list[HostEntry]] = {name: [] for name in GROUPS}
    for host in spec.hosts:
        data = {
            "ssh_hostname": state.data["hosts"][host.name]["address"],
            "ssh_user": "root",
            "ssh_key": str(ssh_dir / "id_ed25519"),
            "ssh_known_hosts_file": str(ssh_dir / "known_hosts"),
            "ssh_strict_host_key_checking": "yes",
            "developer_users": [u.name for u in host.users],
        }
        data.update(source_data(host.deploy_source, spec, Path(state.data["services"]["mirror_root"])))
        for group in _memberships(host):
            groups[group].append((host.name, data))
    return groups
