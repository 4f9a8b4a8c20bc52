"""Our small static helper scripts (localcode/scripts/), installed once per host. They take
data only as arguments, so no data is ever interpolated into a shell string."""

from __future__ import annotations

from pathlib import Path

from pyinfra.operations import files

SCRIPTS = Path(__file__).with_name("scripts")
HELPER_DIR = "/usr/local/lib/localcode/bin"
STAGING = "/usr/local/lib/localcode/staging"  # root-only: never stage in a world-writable /tmp


def path(script: str) -> str:
    """Where a helper script lives on the host."""
    return f"{HELPER_DIR}/{script}"


def root_group(os_name: str) -> str:
    return "wheel" if os_name == "Darwin" else "root"


def install(os_name: str) -> None:
    group = root_group(os_name)
    files.directory(name="localcode helper directory", path=HELPER_DIR, user="root", group=group, mode="0755")
    for script in sorted(SCRIPTS.iterdir()):
        files.put(name=f"localcode helper {script.name}", src=str(script), dest=path(script.name),
                  user="root", group=group, mode="0755")
    files.directory(name="localcode staging directory", path=STAGING, user="root", group=group, mode="0700")
