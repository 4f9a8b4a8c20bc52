"""Running the real deploy (`pyinfra ... deploy.py`) against a lab, with per-host data
overrides written into a temporary inventory file."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from lab import fleet

from .conftest import REPO, Lab, start_lab


def write_inventory(path: Path, lab: Lab, overrides: dict[str, dict] | None = None) -> Path:
    """An inventory of the running lab with extra data for some hosts."""
    path.write_text(
        "from lab.inventory import lab_groups\n"
        f"_overrides = {overrides or {}!r}\n"
        f"_groups = lab_groups({lab.spec.name!r})\n"
        "for _name, _hosts in _groups.items():\n"
        "    globals()[_name] = [(h, {**d, **_overrides.get(h, {})}) for h, d in _hosts]\n"
    )
    return path


def deploy(lab: Lab, inventory: Path, *args: str, timeout: float = 600) -> tuple[int, dict | None, str]:
    """Run the deploy with --json; returns (exit code, parsed JSON or None, stderr)."""
    result = subprocess.run(
        [str(REPO / ".venv/bin/pyinfra"), "-y", "--json", str(inventory), "deploy.py", *args],
        cwd=REPO, env=lab.pyinfra_env(), capture_output=True, text=True, timeout=timeout,
    )
    try:
        parsed = json.loads(result.stdout)
    except ValueError:
        parsed = None
    return result.returncode, parsed, result.stderr


def changed_ops(results: dict) -> list[tuple[str, list[str]]]:
    """(operation, hosts) for every operation that changed something or failed."""
    return [(op["name"], op["success"] + op["error"]) for op in results["results"]["operations"]
            if op["success"] or op["error"]]


def failed_hosts(results: dict) -> set[str]:
    return {h for op in results["results"]["operations"] for h in op["error"]}


def host_specific_names(results: dict, lab: Lab) -> list[str]:
    """Operation names that mention something only some hosts have (a developer, a model, a
    version): pyinfra's results table names a row after one host's variant, so a true name is
    one that holds for every host it counts."""
    specific = {u.name for h in lab.spec.hosts for u in h.users} | {"gpt-oss", "devstral", "gemma4", "qwen3", "0.30.0"}
    return [op["name"] for op in results["results"]["operations"]
            if any(word in op["name"] for word in specific)]


def outbound_packets(lab: Lab, host: str) -> int:
    ns = lab.state.data["hosts"][host]["netns"]
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "egress"],
                         capture_output=True, text=True, check=True).stdout
    return sum(int(part.split()[0]) for part in out.split("counter packets ")[1:])


def count_egress(lab: Lab, host: str) -> None:
    """Count the host's attempts to reach anything: new TCP connections and UDP (DNS included)
    leaving by any interface but loopback. (The kernel's own IPv6 neighbour discovery is no
    attempt to reach a host and is not counted.) A default route towards the control machine
    (which drops everything a lab host opens) is added meanwhile: without a route the kernel
    refuses a packet before any hook sees it, and an attempt would go uncounted."""
    ns = lab.state.data["hosts"][host]["netns"]
    subprocess.run(["ip", "-n", ns, "route", "replace", "default", "via", lab.control_address(host)], check=True)
    rules = ("table inet egress {\n chain out {\n  type filter hook output priority 0; policy accept;\n"
             "  oifname \"lo\" accept\n  tcp flags & (syn | ack) == syn counter\n  meta l4proto udp counter\n"
             " }\n}\n")
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True)


def repository_archive(prefix: str = "localcode/") -> bytes:
    """The repository as a developer's clone has it (tracked and new files, nothing ignored)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in filter(None, listed):
            if (REPO / name).is_file():
                tar.add(REPO / name, arcname=f"{prefix}{name}")
    return buffer.getvalue()


def console(lab: Lab, host: str, script: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """A root shell on a lab host without SSH, as at its console: the script runs in the
    namespaces of the container's init (found as the child of the systemd-nspawn we started)."""
    record = lab.state.data["hosts"][host]
    nspawn = next(p["pid"] for p in record["procs"] if p["argv0"] == "systemd-nspawn")
    init = Path(f"/proc/{nspawn}/task/{nspawn}/children").read_text().split()[0]
    return subprocess.run(["nsenter", "-t", init, "-a", "--", "/usr/bin/env", "-i",
                           "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "/bin/sh", "-c", script],
                          capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def lab_with_bundle(spec: dict, directory: Path) -> Iterator[Lab]:
    """A lab of its own from a spec, with the lab's bundle built (its wheels are also the lab's
    PyPI); taken down afterwards."""
    path = directory / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    lab = start_lab(path)
    try:
        subprocess.run([str(REPO / ".venv/bin/python"), "-m", "lab", "bundle", "--spec", str(path)],
                       cwd=REPO, check=True, capture_output=True)
        yield lab
    finally:
        fleet.down(lab.spec.name)
