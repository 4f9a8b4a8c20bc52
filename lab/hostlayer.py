"""Each lab host's own read-only layer over the shared rootfs: identity, keys, developer
accounts, fake hardware and an optional preinstalled Ollama. The writable overlay above it then
holds exactly what a deploy changed."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .spec import LabHost

FAKES = Path(__file__).with_name("fakes")
LAB_ETC = "etc/localcode-lab"

MEMINFO_UNIT = """\
[Unit]
Description=localcode lab: present this host's RAM size in /proc/meminfo
DefaultDependencies=no
Before=sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/mount --bind /etc/localcode-lab/meminfo /proc/meminfo

[Install]
WantedBy=sysinit.target
"""

# What Ollama's install.sh writes (https://github.com/ollama/ollama/blob/main/scripts/install.sh).
INSTALL_SH_UNIT = """\
[Unit]
Description=Ollama Service
After=network-online.target

[Service]
ExecStart=/usr/local/bin/ollama serve
User=ollama
Group=ollama
Restart=always
RestartSec=3
Environment="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

[Install]
WantedBy=default.target
"""


def fake_meminfo(ram_gib: int, template: str) -> str:
    """A /proc/meminfo for a machine with ram_gib of RAM: the kernel keeps ~2% for itself, as
    on real machines, so MemTotal is a little under the nominal size."""
    total_kb = int(ram_gib * 1024 * 1024 * 0.98)
    overrides = {
        "MemTotal": total_kb,
        "MemFree": int(total_kb * 0.85),
        "MemAvailable": int(total_kb * 0.9),
        "SwapTotal": 0,
        "SwapFree": 0,
    }
    lines = []
    for line in template.splitlines():
        key = line.split(":", 1)[0]
        if key in overrides:
            lines.append(f"{key + ':':<16}{overrides[key]:>8} kB")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


@contextmanager
def _mounted(lower: Path, upper: Path, work: Path, merged: Path) -> Iterator[Path]:
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)],
        check=True,
    )
    try:
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)
        shutil.rmtree(work)


def _chroot(root: Path, *argv: str) -> None:
    subprocess.run(["chroot", str(root), *argv], check=True, stdout=subprocess.DEVNULL)


def _write(root: Path, relative: str, content: str | bytes, mode: int = 0o644) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    path.chmod(mode)
    return path


def _enable(root: Path, unit: str, target: str) -> None:
    link = root / f"etc/systemd/system/{target}.wants/{unit}"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(f"/etc/systemd/system/{unit}")


def build_layer(
    host: LabHost,
    lab_name: str,
    rootfs: Path,
    layer: Path,
    scratch: Path,
    authorized_key: str,
    ollama_tarball: Path | None,
    pip_index: str | None = None,
) -> str:
    """(Re)build the host's layer; return its SSH host public key line. An online host's pip
    reads the lab's PyPI (`pip_index`), as a laptop's reads pypi.org."""
    shutil.rmtree(layer, ignore_errors=True)
    layer.mkdir(parents=True)
    machine_id = hashlib.sha256(f"{lab_name}/{host.name}".encode()).hexdigest()[:32]
    _write(layer, "etc/hostname", f"{host.name}\n")
    _write(layer, "etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{host.name}\n::1\tlocalhost\n")
    _write(layer, "etc/machine-id", f"{machine_id}\n", 0o444)
    _write(layer, "root/.ssh/authorized_keys", authorized_key, 0o600).parent.chmod(0o700)

    key = layer / "etc/ssh/ssh_host_ed25519_key"
    key.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}", "-f", str(key)],
        check=True,
    )

    if pip_index:
        _write(layer, "etc/pip.conf", f"[global]\nindex-url = {pip_index}\n")
    _write(layer, f"{LAB_ETC}/meminfo", fake_meminfo(host.ram_gib, Path("/proc/meminfo").read_text()))
    _write(layer, "etc/systemd/system/lab-meminfo.service", MEMINFO_UNIT)
    _enable(layer, "lab-meminfo.service", "sysinit.target")
    gpus = [{"vendor": g.vendor, "gib": g.gib, "name": g.product_name, **({"gfx": g.gfx} if g.gfx else {})}
            for g in host.gpus]
    _write(layer, f"{LAB_ETC}/gpus.json", json.dumps(gpus, indent=1) + "\n")
    for vendor, tool in (("nvidia", "nvidia-smi"), ("amd", "rocm-smi")):
        if any(g.vendor == vendor for g in host.gpus):
            _write(layer, f"usr/bin/{tool}", (FAKES / tool).read_bytes(), 0o755)

    with _mounted(rootfs, layer, scratch / "work", scratch / "merged") as root:
        for user in host.users:
            _chroot(root, "useradd", "--create-home", "--user-group", "--shell", user.shell_path, user.name)
            _chroot(root, "install", "-d", "-o", user.name, "-g", user.name, "-m", "0700", f"/home/{user.name}/.ssh")
            _chroot(root, "install", "-o", user.name, "-g", user.name, "-m", "0600",
                    "/root/.ssh/authorized_keys", f"/home/{user.name}/.ssh/authorized_keys")
            if user.sudo_password:
                _chroot(root, "usermod", "-aG", "sudo", user.name)
                subprocess.run(["chroot", str(root), "chpasswd"], input=f"{user.name}:{user.sudo_password}\n",
                               text=True, check=True)
        if host.ollama_preinstalled:
            _preinstall_ollama(root, ollama_tarball)
    return key.with_suffix(".pub").read_text().strip()


def _preinstall_ollama(root: Path, tarball: Path | None) -> None:
    """Install an Ollama the way its official install.sh does, to test upgrades over it."""
    if tarball is None or not tarball.exists():
        raise RuntimeError(f"preinstalled Ollama tarball missing: {tarball}")
    subprocess.run(["tar", "-I", "zstd", "-xf", str(tarball), "-C", str(root / "usr/local")], check=True)
    _chroot(root, "useradd", "-r", "-s", "/bin/false", "-U", "-m", "-d", "/usr/share/ollama", "ollama")
    _write(root, "etc/systemd/system/ollama.service", INSTALL_SH_UNIT)
    _enable(root, "ollama.service", "default.target")
