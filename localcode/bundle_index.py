"""The bundle's layout and index (`bundle.json`), pure. A bundle directory is laid out like
the real sources, so a static HTTP server serving it *is* a mirror:

    ollama/releases/download/v<ver>/<file>             like GitHub releases (+ sha256sum.txt)
    claude-code-releases/<ver>/manifest.json           like downloads.claude.ai
    claude-code-releases/<ver>/<platform>/claude
    models/manifests/registry.ollama.ai/<ns>/<model>/<tag>   like an Ollama store
    models/blobs/sha256-<hex>
    wheels/                                            the toolkit's Python wheels (localcode/wheels.py)
    bundle.json                                        this index
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

INDEX = "bundle.json"
REGISTRY_HOST = "registry.ollama.ai"
REGISTRY_URL = f"https://{REGISTRY_HOST}"  # where hosts pull models from: `localcode bundle`'s default
PLATFORMS = ("linux-amd64", "linux-arm64", "darwin")
OLLAMA_FILES = {"linux-amd64": ("ollama-linux-amd64.tar.zst", "ollama-linux-amd64-rocm.tar.zst"),
                "linux-arm64": ("ollama-linux-arm64.tar.zst",),
                "darwin": ("ollama-darwin.tgz",)}
CLAUDE_PLATFORMS = {"linux-amd64": ("linux-x64",), "linux-arm64": ("linux-arm64",),
                    "darwin": ("darwin-arm64", "darwin-x64")}
Digest = str


class BundleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class BundleModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    manifest: str                 # path of the manifest file in the bundle
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")   # of the manifest bytes
    blobs: tuple[BundleFile, ...]


class BundleIndex(BaseModel):
    """What a bundle carries. Several releases of each kind: the hosts it serves may pin
    different versions, and each must find its own."""

    model_config = ConfigDict(extra="forbid")
    format: int = 2
    ollama_versions: tuple[str, ...] = ()
    claude_versions: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    files: tuple[BundleFile, ...] = ()
    models: tuple[BundleModel, ...] = ()
    # The toolkit's wheels, requirement files and link page, and the (platform, Python) sets.
    wheels: tuple[BundleFile, ...] = ()
    wheel_sets: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _one_release_each(cls, data: Any) -> Any:
        """Format 1 (bundles built before several versions could be carried) named one release
        of each kind; such a bundle on disk still loads."""
        if isinstance(data, dict) and data.get("format") == 1:
            data = dict(data, format=2)
            for kind in ("ollama", "claude"):
                one = data.pop(f"{kind}_version", None)
                data[f"{kind}_versions"] = (one,) if one else ()
        return data

    def model(self, name: str) -> BundleModel | None:
        return next((m for m in self.models if m.name == name), None)

    def file(self, path: str) -> BundleFile | None:
        return next((f for f in self.files if f.path == path), None)


def load_index(bundle: Path) -> BundleIndex:
    return BundleIndex.model_validate_json((bundle / INDEX).read_text())


def save_index(bundle: Path, index: BundleIndex) -> None:
    tmp = bundle / f".{INDEX}.tmp"
    tmp.write_text(json.dumps(index.model_dump(mode="json"), indent=1, sort_keys=True) + "\n")
    tmp.replace(bundle / INDEX)


def split_name(name: str) -> tuple[str, str, str]:
    """(namespace, model, tag) of an Ollama name: `qwen3-coder:30b` -> library/qwen3-coder/30b."""
    path, _, tag = name.partition(":")
    namespace, _, model = path.rpartition("/")
    return namespace or "library", model, tag or "latest"


def manifest_path(name: str) -> str:
    namespace, model, tag = split_name(name)
    return f"models/manifests/{REGISTRY_HOST}/{namespace}/{model}/{tag}"


def blob_path(digest: str) -> str:
    return f"models/blobs/{digest.replace(':', '-')}"


def ollama_path(version: str, file: str) -> str:
    return f"ollama/releases/download/v{version}/{file}"


def claude_path(version: str, file: str) -> str:
    return f"claude-code-releases/{version}/{file}"


def manifest_digests(manifest: bytes) -> list[tuple[str, int]]:
    """(digest, size) of the config and every layer of a Docker v2 manifest."""
    doc = json.loads(manifest)
    entries = [doc["config"], *doc["layers"]]
    for entry in entries:
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", entry.get("digest", "")):
            raise ValueError(f"manifest entry with an invalid digest: {entry!r}")
    return [(e["digest"], int(e["size"])) for e in entries]
