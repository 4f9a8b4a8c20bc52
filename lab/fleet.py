"""`python -m lab up | down | status`: bring the lab fleet up, tear it down, show it.

Each host: an overlay root (lower = its own layer over the cached rootfs), its own network
namespace joined to the control machine by a veth pair, real systemd under systemd-nspawn,
sshd with a per-host key pinned in the lab's known_hosts."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import hostlayer, internet, mirror, rootfs
from .paths import lab_dir
from .procs import ProcRecord, remove_cgroups, spawn, stop_all
from .spec import LabHost, LabSpec
from .state import LabState, load_state, locked

REQUIRED_TOOLS = ("ip", "systemd-nspawn", "ssh", "ssh-keygen", "socat", "nft", "mount", "chroot", "zstd")
BOOT_TIMEOUT_S = 60
CGROUP_ROOTS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


def _container_cgroups(machine: str) -> list[Path]:
    """Each container's systemd gets a cgroup of its own in every systemd-managed hierarchy
    (with --keep-unit it would otherwise share ours, and containers booting side by side then
    remove each other's unit cgroups: "Failed at step CGROUP")."""
    roots = [r for r in CGROUP_ROOTS if (r / "cgroup.procs").exists()]
    if Path("/sys/fs/cgroup/systemd").exists():  # hybrid/legacy: the top dir is a tmpfs
        roots = [r for r in roots if r != Path("/sys/fs/cgroup")]
    return [r / "localcode-lab" / machine for r in roots]


class LabError(RuntimeError):
    """A lab operation failed; the message says what and where to look."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def _names(spec: LabSpec, host: LabHost, index: int) -> dict[str, str]:
    tag = hashlib.sha256(f"{spec.name}/{host.name}".encode()).hexdigest()[:8]
    control, address = spec.host_addresses(index)
    return {
        "netns": f"lc-{spec.name}-{host.name}",
        "veth": f"lc{tag}",
        "machine": f"{spec.name}-{host.name}",
        "address": address,
        "control_address": control,
    }


def ssh_argv(state: LabState, host: str, user: str = "root") -> list[str]:
    """An ssh command line to a lab host with strict host-key checking."""
    base = Path(state.data["ssh_dir"])
    return [
        "ssh", "-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={base / 'known_hosts'}", "-o", "IdentitiesOnly=yes",
        "-o", "ConnectTimeout=3", "-i", str(base / "id_ed25519"),
        f"{user}@{state.data['hosts'][host]['address']}",
    ]


def _check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, overlay mounts, systemd-nspawn)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise LabError(f"missing tools {missing}: run `make setup` to install the lab's Debian packages")


def up(spec: LabSpec, spec_path: Path, log=print) -> LabState:
    """Start the fleet; a leftover of a crashed run is cleaned up first."""
    _check_prerequisites()
    with locked(spec.name):
        leftover = load_state(spec.name)
        if leftover is not None:
            log(f"lab {spec.name!r}: found state of an earlier run; cleaning it up first")
            _teardown(leftover, log)
        started = time.monotonic()
        base = lab_dir(spec.name)
        root = rootfs.ensure_rootfs(log)
        state = LabState(spec.name, {
            "name": spec.name, "spec_path": str(spec_path.resolve()), "spec": spec.model_dump(mode="json"),
            "ssh_dir": str(base / "ssh"), "nft_table": f"localcode_lab_{spec.name.replace('-', '_')}",
            "hosts": {}, "services": {"procs": []}, "ready": False,
        })
        state.save()
        try:
            _make_ssh_key(base / "ssh")
            _firewall(state, spec)
            internet.start(spec, state, base, log)
            authorized = (base / "ssh/id_ed25519.pub").read_text()
            with ThreadPoolExecutor(max_workers=max(1, len(spec.hosts))) as pool:
                futures = [
                    pool.submit(_host_up, spec, state, host, index, root, authorized)
                    for index, host in enumerate(spec.hosts)
                ]
                host_keys = [f.result() for f in futures]
            (base / "ssh/known_hosts").write_text("".join(host_keys))
            with ThreadPoolExecutor(max_workers=max(1, len(spec.hosts))) as pool:
                list(pool.map(lambda h: _wait_booted(state, h.name), spec.hosts))
        except BaseException:
            log(f"lab {spec.name!r}: start failed; tearing down what was started")
            _teardown(state, log)
            raise
        state.data["ready"] = True
        state.save()
        log(f"lab {spec.name!r}: {len(spec.hosts)} hosts up in {time.monotonic() - started:.1f}s")
        return state


def _make_ssh_key(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    if not key.exists():
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "localcode-lab", "-f", str(key))


def _firewall(state: LabState, spec: LabSpec) -> None:
    """Hosts may answer the control machine but never open connections to it: without this,
    anything listening on the control machine's 0.0.0.0 would be reachable from air-gapped hosts.
    Nothing from a lab host is ever forwarded beyond the control machine either."""
    table = state.data["nft_table"]
    state.data["nft_created"] = True
    state.save()
    ruleset = (
        f"table inet {table} {{\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f'    iifname "lc*" ip saddr {spec.subnet} ct state established,related accept\n'
        f'    iifname "lc*" ip saddr {spec.subnet} drop\n'
        "  }\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        f'    ip saddr {spec.subnet} drop\n'
        "  }\n"
        "}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=ruleset, text=True, check=True)


def _host_up(spec: LabSpec, state: LabState, host: LabHost, index: int, root: Path, authorized: str) -> str:
    base = lab_dir(spec.name) / "hosts" / host.name
    names = _names(spec, host, index)
    record = state.host(host.name)
    record.update(names, index=index, upper=str(base / "upper"), merged=str(base / "merged"))
    state.save()

    tarball = None
    if host.ollama_preinstalled:
        mirror_root = Path(state.data["services"]["mirror_root"])
        tarball = mirror_root / f"ollama/releases/download/v{host.ollama_preinstalled}/ollama-linux-amd64.tar.zst"
    record["mounts"].append(str(base / "scratch/merged"))
    state.save()
    pip_index = f"{spec.internet.mirror_url}{mirror.PYPI_PATH}/" if host.network == "online" else None
    host_key = hostlayer.build_layer(host, spec.name, root, base / "layer", base / "scratch", authorized, tarball,
                                     pip_index)

    _run("ip", "netns", "add", names["netns"])
    veth, peer = names["veth"], names["veth"] + "p"
    _run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
    _run("ip", "link", "set", peer, "netns", names["netns"])
    _run("ip", "-n", names["netns"], "link", "set", peer, "name", "eth0")
    _run("ip", "addr", "add", f"{names['control_address']}/30", "dev", veth)
    _run("ip", "link", "set", veth, "up")
    _run("ip", "-n", names["netns"], "addr", "add", f"{names['address']}/30", "dev", "eth0")
    _run("ip", "-n", names["netns"], "link", "set", "eth0", "up")
    _run("ip", "-n", names["netns"], "link", "set", "lo", "up")

    for d in ("upper", "work", "merged"):
        (base / d).mkdir(parents=True, exist_ok=True)
    record["mounts"].append(str(base / "merged"))
    state.save()
    _run("mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={base / 'layer'}:{root},upperdir={base / 'upper'},workdir={base / 'work'}",
         str(base / "merged"))

    _boot(state, record, base)
    if host.network == "online":
        for argv in internet.bridge_argvs(spec, state, names["netns"]):
            state.add_proc(record, spawn(argv, base / "bridge.log"))
    keytype, key = host_key.split()[:2]
    return f"{names['address']} {keytype} {key}\n"


def _boot(state: LabState, record: dict, base: Path) -> None:
    """Start the host's systemd under systemd-nspawn, in cgroups of its own."""
    nspawn = [
        "systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--boot", "--console=passive",
        f"--network-namespace-path=/run/netns/{record['netns']}", f"--machine={record['machine']}",
        "-D", str(base / "merged"),
    ]
    cgroups = _container_cgroups(record["machine"])
    record["cgroups"] = [str(c) for c in cgroups]
    state.save()
    state.add_proc(record, spawn(nspawn, base / "console.log", cgroups))


def power(lab_name: str, host: str, on: bool) -> None:
    """Cut one host's power (its systemd and everything in its cgroups killed at once) or boot
    it again on the same disk and network: for fault tests ("host down mid-run")."""
    with locked(lab_name):
        state = load_state(lab_name)
        if state is None or host not in state.data["hosts"]:
            raise LabError(f"lab {lab_name!r} has no host {host!r}")
        record = state.data["hosts"][host]
        nspawn = [p for p in (ProcRecord.from_json(p) for p in record["procs"]) if p.argv0 == "systemd-nspawn"]
        if on:
            if not any(p.alive() for p in nspawn):
                record["procs"] = [p for p in record["procs"] if p["argv0"] != "systemd-nspawn"]
                _boot(state, record, lab_dir(lab_name) / "hosts" / host)
                _wait_booted(state, host)
            return
        stop_all(nspawn, timeout=0)
        remove_cgroups([Path(c) for c in record.get("cgroups", [])])


def _wait_booted(state: LabState, host: str) -> None:
    """Wait until sshd answers and systemd has finished booting; a degraded boot is an error."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [*ssh_argv(state, host), "systemctl is-system-running --wait"],
            capture_output=True, text=True,
        )
        last = (probe.stdout + probe.stderr).strip()
        if last == "running":
            return
        if last == "degraded":
            failed = subprocess.run(
                [*ssh_argv(state, host), "systemctl --failed --no-legend --plain"],
                capture_output=True, text=True,
            ).stdout
            raise LabError(f"host {host}: boot degraded, failed units:\n{failed}")
        time.sleep(0.1)
    console = lab_dir(state.lab_name) / "hosts" / host / "console.log"
    raise LabError(f"host {host}: not reachable over SSH after {BOOT_TIMEOUT_S}s ({last}); see {console}")


def down(lab_name: str, log=print) -> bool:
    """Stop everything `up` recorded; safe to run twice. Returns whether anything was up."""
    with locked(lab_name):
        state = load_state(lab_name)
        if state is None:
            log(f"lab {lab_name!r}: nothing to stop")
            return False
        _teardown(state, log)
        return True


def _teardown(state: LabState, log=print) -> None:
    started = time.monotonic()
    stopped = stop_all(state.all_procs(), timeout=15)
    problems: list[str] = []
    for name, host in state.data.get("hosts", {}).items():
        try:
            remove_cgroups([Path(c) for c in host.get("cgroups", [])])
        except OSError as exc:
            problems.append(f"{name}: cgroup: {exc}")
        for mount in reversed(host.get("mounts", [])):
            if os.path.ismount(mount):
                result = _run("umount", mount, check=False)
                if result.returncode != 0:
                    problems.append(f"{name}: umount {mount}: {result.stderr.strip()}")
        if host.get("netns") and Path(f"/run/netns/{host['netns']}").exists():
            _run("ip", "netns", "del", host["netns"], check=False)
        if host.get("veth") and Path(f"/sys/class/net/{host['veth']}").exists():
            _run("ip", "link", "del", host["veth"], check=False)
        if host.get("machine"):
            shutil.rmtree(f"/run/systemd/nspawn/propagate/{host['machine']}", ignore_errors=True)
    if state.data.get("nft_created"):
        _run("nft", "delete", "table", "inet", state.data["nft_table"], check=False)
    if problems:
        raise LabError("lab teardown incomplete (state kept; run `python -m lab down` again):\n" + "\n".join(problems))
    base = lab_dir(state.lab_name)
    shutil.rmtree(base / "hosts", ignore_errors=True)
    shutil.rmtree(base / "run", ignore_errors=True)
    state.path.unlink()
    log(f"lab {state.lab_name!r}: stopped {len(stopped)} processes, removed hosts in {time.monotonic() - started:.1f}s")


def status(lab_name: str) -> list[dict[str, object]]:
    """One row per host: profile and whether its systemd and sshd answer."""
    state = load_state(lab_name)
    if state is None:
        return []
    spec = LabSpec.model_validate(state.data["spec"])
    rows = []
    for host in spec.hosts:
        record = state.data["hosts"].get(host.name, {})
        probe = subprocess.run([*ssh_argv(state, host.name), "systemctl is-system-running"],
                               capture_output=True, text=True) if record.get("address") else None
        rows.append({
            "host": host.name,
            "address": record.get("address", "-"),
            "network": host.network,
            "ram_gib": host.ram_gib,
            "gpus": ", ".join(f"{g.vendor} {g.gib} GiB" for g in host.gpus) or "none",
            "users": ", ".join(f"{u.name} ({u.shell})" for u in host.users),
            "ollama": host.ollama_preinstalled or "-",
            "state": (probe.stdout.strip() or "unreachable") if probe else "not started",
        })
    return rows
