"""A stand-in for the `ollama` binary (CLI + HTTP server), Python 3.11 standard library only.

What version it pretends to be and where its registry lives are baked into `baked.json` beside
this file by lab/standin/build_release.py; nothing a deploy writes is consulted for either.
"""

from __future__ import annotations

import json
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
BAKED_PATH = os.path.join(_HERE, "baked.json")


def _load() -> dict:
    try:
        with open(BAKED_PATH, encoding="utf-8") as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


BAKED = _load()
VERSION: str = str(BAKED.get("version") or "0.0.0")
REGISTRY_URL: str = str(BAKED.get("registry") or "https://registry.ollama.ai")
ARCH: str = str(BAKED.get("arch") or "amd64")
