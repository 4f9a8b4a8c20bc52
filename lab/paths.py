"""Where the lab keeps things: caches survive across runs and clones, state is per lab."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(os.environ.get("LOCALCODE_LAB_CACHE", "/var/cache/localcode-lab"))
STATE_ROOT = Path(os.environ.get("LOCALCODE_LAB_STATE", "/var/lib/localcode-lab"))
STANDIN_DIR = Path(__file__).resolve().parent / "standin"


def lab_dir(lab_name: str) -> Path:
    """The per-lab directory: state file, keys, host layers, overlays, service files."""
    return STATE_ROOT / lab_name
