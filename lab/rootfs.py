"""The lab hosts' shared read-only root: a Debian rootfs built once by debootstrap and cached
outside the clone, rebuilt only when its recipe changes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from .files import locked
from .paths import CACHE_DIR

SUITE = "bookworm"
MIRROR = os.environ.get("LOCALCODE_LAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = (
    "openssh-server", "sudo", "procps", "iproute2", "curl", "ca-certificates", "zstd",
    "python3", "systemd", "systemd-sysv", "dbus", "libpam-systemd", "zsh", "fish", "rsync",
    "acl", "less", "python3-venv", "git",
)
PYTHON = "3.11"  # bookworm's python3: the toolkit wheels the lab's bundle carries
SSHD_CONFIG = """\
# localcode lab: key-only root login, no DNS lookups (hosts have no resolver)
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 200
"""
# Bump when the post-install steps below change: part of the cache key.
POST_INSTALL_REVISION = 2


def recipe() -> dict[str, object]:
    return {
        "suite": SUITE,
        "variant": "minbase",
        "packages": sorted(PACKAGES),
        "sshd_config": SSHD_CONFIG,
        "post_install_revision": POST_INSTALL_REVISION,
    }


def recipe_key() -> str:
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]


def rootfs_path() -> Path:
    return CACHE_DIR / "rootfs" / f"{SUITE}-{recipe_key()}"


def ensure_rootfs(log=print) -> Path:
    """Return the cached rootfs for the current recipe, building it first if needed."""
    target = rootfs_path()
    if (target / "usr/lib/os-release").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked(target.parent / ".lock"):  # labs coming up side by side build it once
        if (target / "usr/lib/os-release").exists():
            return target
        return _build(target, log)


def _build(target: Path, log) -> Path:
    """debootstrap into a private directory, then one rename: a reader sees all of it or none."""
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is missing: run `make setup` (apt-get install debootstrap)")
    building = target.with_name(f".build-{target.name}-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    debs = CACHE_DIR / "debootstrap-debs"
    debs.mkdir(parents=True, exist_ok=True)
    log(f"building the lab rootfs {target.name} with debootstrap (about a minute, cached after)")
    subprocess.run(
        [
            "debootstrap", "--variant=minbase", f"--cache-dir={debs}",
            "--include=" + ",".join(PACKAGES), SUITE, str(building), MIRROR,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _post_install(building)
    building.rename(target)
    return target


def _post_install(root: Path) -> None:
    """Make the tree a neutral template: every host gets its own keys and machine id."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    (root / "etc/ssh/sshd_config.d/lab.conf").write_text(SSHD_CONFIG)
    # No per-user systemd manager on SSH logins: nothing here uses `systemctl --user`, and with
    # a dozen hosts booting at once user@0.service timed out and left the boot "degraded".
    (root / "etc/systemd/system/user@.service").symlink_to("/dev/null")
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)
