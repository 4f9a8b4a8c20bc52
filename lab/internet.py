"""The lab's "internet": a release mirror (nginx) and an OCI model registry (docker-registry)
on the control machine, offered to online hosts only, through unix sockets bridged into each
online host's network namespace. Air-gapped hosts get no bridge, so they reach nothing."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from . import mirror, pypi, registry, rootfs
from .paths import CACHE_DIR, REPO_ROOT
from .procs import spawn
from .spec import LabSpec
from .state import LabState


def _wait_for_socket(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            with socket.socket(socket.AF_UNIX) as sock:
                try:
                    sock.connect(str(path))
                    return
                except OSError:
                    pass
        time.sleep(0.05)
    raise RuntimeError(f"lab service did not come up on {path}")


def start(spec: LabSpec, state: LabState, base: Path, log=print) -> None:
    """Build (or reuse) the mirror tree and registry storage, then start both services.
    Each listens on a control-side unix socket that online hosts are bridged to."""
    run = base / "run"
    run.mkdir(parents=True, exist_ok=True)
    services = state.data.setdefault("services", {"procs": []})
    mirror_root = mirror.build_mirror_tree(
        CACHE_DIR / "mirror" / spec.name,
        list(spec.internet.ollama_versions),
        spec.internet.claude_code_version,
        spec.internet.registry_url,
    )
    services["mirror_root"] = str(mirror_root)
    services["mirror_socket"] = str(run / "mirror.sock")
    services["mirror_tcp_port"] = registry.free_port()
    conf = run / "nginx.conf"
    mirror.write_nginx_config(conf, mirror_root, run / "mirror.sock", services["mirror_tcp_port"], run / "nginx")
    state.add_proc(services, spawn(mirror.nginx_argv(conf), run / "nginx.log"))

    storage = registry.seeded_storage()
    services["registry_tcp_port"] = registry.free_port()
    services["registry_socket"] = str(run / "registry.sock")
    reg_conf = run / "registry.yml"
    registry.write_config(reg_conf, storage, f"127.0.0.1:{services['registry_tcp_port']}")
    state.add_proc(services, spawn(registry.registry_argv(reg_conf), run / "registry.log"))
    relay = ["socat", f"UNIX-LISTEN:{run / 'registry.sock'},fork,mode=600",
             f"TCP:127.0.0.1:{services['registry_tcp_port']}"]
    state.add_proc(services, spawn(relay, run / "registry-relay.log"))
    _wait_for_socket(run / "mirror.sock")
    _wait_for_socket(run / "registry.sock")
    log(f"internet: mirror {mirror_root} and model registry up")


def bridge_argvs(spec: LabSpec, state: LabState, netns: str) -> list[list[str]]:
    """Commands that make the mirror and registry appear on 127.0.0.1 inside one host."""
    services = state.data["services"]
    pairs = (
        (spec.internet.mirror_port, services["mirror_socket"]),
        (spec.internet.registry_port, services["registry_socket"]),
    )
    return [
        ["ip", "netns", "exec", netns, "socat",
         f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", f"UNIX-CONNECT:{sock}"]
        for port, sock in pairs
    ]


def build_bundle(state: LabState, log=print) -> Path:
    """The lab's bundle, built like an operator's (`localcode bundle --inventory`) from the lab's
    internet: the releases the lab's hosts pin and the models they are sized for, fetched from
    the control side of the release mirror and the model registry, and the toolkit's wheels for
    the hosts' Python (from the control machine's package index), which also become the lab's
    PyPI."""
    import os

    from localcode.bundle import build, pinned_releases
    from localcode.gather import gather_fleet
    from .inventory import lab_bundle_dir

    services = state.data["services"]
    os.environ["LOCALCODE_LAB"] = state.lab_name
    configs, plans = gather_fleet(str(REPO_ROOT / "inventory/lab.py"))
    models = sorted({p.decision.model for p in plans if p.decision and p.decision.model})
    mirror = f"http://127.0.0.1:{services['mirror_tcp_port']}"
    target = lab_bundle_dir(Path(services["mirror_root"]))
    index, fetched = build(target, models, ("linux-amd64",),
                           pinned_releases(configs, "ollama", base=f"{mirror}/ollama/releases/download"),
                           pinned_releases(configs, "claude", base=f"{mirror}/claude-code-releases"),
                           f"http://127.0.0.1:{services['registry_tcp_port']}", progress=False,
                           pythons=(rootfs.PYTHON,))
    projects = pypi.publish(Path(services["mirror_root"]), target)
    log(f"lab bundle {target}: Ollama {' + '.join(index.ollama_versions)}, Claude Code "
        f"{' + '.join(index.claude_versions)}, models {', '.join(m.name for m in index.models)}, "
        f"toolkit wheels for {', '.join(index.wheel_sets)} (also the lab's PyPI: {projects} projects); "
        f"{fetched / 1e6:.1f} MB downloaded")
    return target
