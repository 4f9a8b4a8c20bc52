"""`localcode bundle`: on a connected machine, gather everything a fleet needs into one
directory: Ollama release tarballs with `sha256sum.txt`, Claude Code binaries with their
`manifest.json`, and model manifests and blobs fetched over the registry protocol. Every
file is sha256-verified before it is kept; downloads resume with Range; blobs come several
at a time; re-running fetches only what is missing."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm import tqdm

from .bundle_index import (
    CLAUDE_PLATFORMS, OLLAMA_FILES, BundleFile, BundleIndex, BundleModel, blob_path, claude_path,
    manifest_digests, manifest_path, ollama_path, save_index, split_name,
)

CHUNK = 4 << 20
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


class BundleError(RuntimeError):
    """A download failed or did not verify; the message names the URL."""


@dataclass(frozen=True)
class Sources:
    ollama_base: str = "https://github.com/ollama/ollama/releases/download"
    claude_base: str = "https://downloads.claude.ai/claude-code-releases"
    registry: str = "https://registry.ollama.ai"


class Fetcher:
    """Verified, resumable downloads into the bundle, with one progress bar for the bytes."""

    def __init__(self, root: Path, progress: bool = True, workers: int = 4):
        self.root = root
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=workers, pool_maxsize=workers)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.workers = workers
        self.bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
                        desc="bundle", dynamic_ncols=True)
        self.lock = threading.Lock()
        self.fetched_bytes = 0

    def close(self) -> None:
        self.bar.close()

    def text(self, url: str, headers: dict | None = None) -> bytes:
        response = self.session.get(url, headers=headers or {}, timeout=60)
        if response.status_code != 200:
            raise BundleError(f"GET {url}: HTTP {response.status_code}")
        return response.content

    def file(self, url: str, relative: str, sha256: str, size: int | None = None) -> BundleFile:
        """Download url to root/relative unless it is already there and verified."""
        dest = self.root / relative
        stamp = dest.with_name(dest.name + ".sha256")
        if dest.exists() and stamp.exists() and stamp.read_text().split() == [sha256, str(dest.stat().st_size)]:
            return BundleFile(path=relative, size=dest.stat().st_size, sha256=sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        digest = hashlib.sha256()
        have = 0
        if partial.exists():
            with open(partial, "rb") as existing:
                for chunk in iter(lambda: existing.read(CHUNK), b""):
                    digest.update(chunk)
                    have += len(chunk)
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self.session.get(url, headers=headers, stream=True, timeout=60) as response:
            if response.status_code == 416 and have:
                pass  # the partial file is already complete
            elif response.status_code not in (200, 206):
                raise BundleError(f"GET {url}: HTTP {response.status_code}")
            else:
                if response.status_code == 200 and have:  # server ignored Range: start over
                    digest, have = hashlib.sha256(), 0
                    partial.unlink()
                total = have + int(response.headers.get("Content-Length", 0))
                with self.lock:
                    self.bar.total += max(total - have, 0)
                    self.bar.refresh()
                with open(partial, "ab") as out, ThreadPoolExecutor(1) as hasher:
                    # Hash and write in another thread (both release the GIL) while this one reads.
                    pending = None
                    for chunk in response.iter_content(CHUNK):
                        if pending is not None:
                            pending.result()
                        pending = hasher.submit(lambda c: (out.write(c), digest.update(c)), chunk)
                        have += len(chunk)
                        with self.lock:
                            self.fetched_bytes += len(chunk)
                            self.bar.update(len(chunk))
                    if pending is not None:
                        pending.result()
        if digest.hexdigest() != sha256:
            partial.unlink()
            raise BundleError(f"{url}: sha256 {digest.hexdigest()} does not match the expected {sha256}; discarded")
        if size is not None and have != size:
            partial.unlink()
            raise BundleError(f"{url}: {have} bytes, expected {size}; discarded")
        os.replace(partial, dest)
        stamp.write_text(f"{sha256} {have}\n")
        return BundleFile(path=relative, size=have, sha256=sha256)


def parse_sums(text: str) -> dict[str, str]:
    sums = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].removeprefix("./").lstrip("*")] = parts[0]
    return sums


def fetch_ollama(f: Fetcher, sources: Sources, version: str, platforms: tuple[str, ...]) -> list[BundleFile]:
    base = f"{sources.ollama_base}/v{version}"
    sums_bytes = f.text(f"{base}/sha256sum.txt")
    sums = parse_sums(sums_bytes.decode())
    sums_rel = ollama_path(version, "sha256sum.txt")
    (f.root / sums_rel).parent.mkdir(parents=True, exist_ok=True)
    (f.root / sums_rel).write_bytes(sums_bytes)
    out = [BundleFile(path=sums_rel, size=len(sums_bytes), sha256=hashlib.sha256(sums_bytes).hexdigest())]
    wanted = [name for p in platforms for name in OLLAMA_FILES[p] if name in sums]
    missing = [name for p in platforms for name in OLLAMA_FILES[p][:1] if name not in sums]
    if missing:
        raise BundleError(f"{base}/sha256sum.txt lists no {missing}")
    with ThreadPoolExecutor(f.workers) as pool:
        out += list(pool.map(lambda n: f.file(f"{base}/{n}", ollama_path(version, n), sums[n]), wanted))
    return out


def fetch_claude(f: Fetcher, sources: Sources, version: str, platforms: tuple[str, ...]) -> list[BundleFile]:
    base = f"{sources.claude_base}/{version}"
    raw = f.text(f"{base}/manifest.json")
    manifest = json.loads(raw)
    rel = claude_path(version, "manifest.json")
    (f.root / rel).parent.mkdir(parents=True, exist_ok=True)
    (f.root / rel).write_bytes(raw)
    out = [BundleFile(path=rel, size=len(raw), sha256=hashlib.sha256(raw).hexdigest())]
    for platform in (p for group in platforms for p in CLAUDE_PLATFORMS[group]):
        entry = manifest.get("platforms", {}).get(platform)
        if entry is None:
            raise BundleError(f"{base}/manifest.json has no {platform}")
        out.append(f.file(f"{base}/{platform}/claude", claude_path(version, f"{platform}/claude"),
                          entry["checksum"], entry.get("size")))
    return out


def fetch_models(f: Fetcher, sources: Sources, names: list[str]) -> list[BundleModel]:
    """Every model's manifest first, then all their blobs at once (several in parallel, shared
    blobs once), then the manifests are written: a model is only listed once its blobs are here."""
    def repo(name: str) -> str:
        namespace, model, _ = split_name(name)
        return f"{sources.registry}/v2/{namespace}/{model}"

    with ThreadPoolExecutor(f.workers) as pool:
        manifests = dict(zip(names, pool.map(
            lambda n: f.text(f"{repo(n)}/manifests/{split_name(n)[2]}", {"Accept": MANIFEST_TYPE}), names)))
        wanted = {digest: (repo(name), size) for name, raw in manifests.items()
                  for digest, size in manifest_digests(raw)}
        fetched = dict(zip(wanted, pool.map(
            lambda d: f.file(f"{wanted[d][0]}/blobs/{d}", blob_path(d), d.split(":", 1)[1], wanted[d][1]), wanted)))
    models = []
    for name, raw in manifests.items():
        rel = manifest_path(name)
        (f.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (f.root / rel).write_bytes(raw)
        blobs = tuple(fetched[d] for d, _ in manifest_digests(raw))
        models.append(BundleModel(name=name, manifest=rel, digest="sha256:" + hashlib.sha256(raw).hexdigest(),
                                  blobs=blobs))
    return models


def build(root: Path, models: list[str], platforms: tuple[str, ...], ollama_version: str | None,
          claude_version: str | None, sources: Sources = Sources(), workers: int = 4,
          progress: bool = True) -> tuple[BundleIndex, int]:
    """Fill the bundle directory; returns its index and how many bytes this run downloaded."""
    root.mkdir(parents=True, exist_ok=True)
    fetcher = Fetcher(root, progress, workers)
    try:
        files: list[BundleFile] = []
        if ollama_version:
            files += fetch_ollama(fetcher, sources, ollama_version, platforms)
        if claude_version:
            files += fetch_claude(fetcher, sources, claude_version, platforms)
        bundled = fetch_models(fetcher, sources, sorted(set(models)))
    finally:
        fetcher.close()
    index = BundleIndex(ollama_version=ollama_version, claude_version=claude_version, platforms=platforms,
                        files=tuple(files), models=tuple(bundled))
    save_index(root, index)
    return index, fetcher.fetched_bytes
