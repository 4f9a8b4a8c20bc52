"""Our small static helper scripts (localcode/scripts/), installed on every host. They take
data only as arguments, so no data is ever interpolated into a shell string."""

from __future__ import annotations

from pathlib import Path

from .userfiles import HELPER_DIR, ManagedFile, ensure_files

SCRIPTS = Path(__file__).with_name("scripts")


def path(script: str) -> str:
    """Where a helper script lives on the host."""
    return f"{HELPER_DIR}/{script}"


def managed_paths() -> list[str]:
    return [f.path for f in managed_files()]


def managed_files() -> list[ManagedFile]:
    return [ManagedFile(path(s.name), s.read_bytes(), "0755") for s in sorted(SCRIPTS.iterdir())]


def install(observed: dict) -> None:
    """All of them as one operation: the operator reads one line, not one per script."""
    ensure_files(name="localcode helper scripts", files=managed_files(), observed=observed)
