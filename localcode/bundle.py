"""`localcode bundle`: on a connected machine, gather everything a fleet needs into one
directory: the Ollama release tarballs (with `sha256sum.txt`) and Claude Code binaries (with
their `manifest.json`) of every version its hosts pin, and model manifests and blobs fetched
over the registry protocol. Every file is sha256-verified before it is kept; downloads resume
with Range; blobs come several at a time; re-running fetches only what is missing."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import requests
from packaging.version import Version
from tqdm import tqdm

from .bundle_index import (
    CLAUDE_PLATFORMS, OLLAMA_FILES, REGISTRY_URL, BundleFile, BundleIndex, BundleModel, blob_path, claude_path,
    manifest_digests, manifest_path, ollama_path, save_index, split_name,
)
from . import wheels
from .settings import HostConfig

CHUNK = 4 << 20
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


class BundleError(RuntimeError):
    """A download failed or did not verify; the message names the URL."""


ReleaseKind = Literal["ollama", "claude"]
# How releases lie under a base URL given instead of the hosts' url templates (`--ollama-url`,
# `--claude-url`): as upstream lays them out, and as a bundle or the lab's mirror does.
BASE_LAYOUTS: dict[ReleaseKind, str] = {"ollama": "v{version}/{file}", "claude": "{version}/{file}"}


@dataclass(frozen=True)
class Release:
    """One Ollama or Claude Code release to carry: its version, where its internet copy comes
    from (a url template with {version} and {file}) and the hosts that install it (none:
    no inventory, HostConfig's default)."""

    version: str
    url_template: str
    hosts: tuple[str, ...] = ()

    def url(self, file: str) -> str:
        return self.url_template.format(version=self.version, file=file)


def pinned_releases(configs: Mapping[str, HostConfig], kind: ReleaseKind, version: str | None = None,
                    base: str | None = None) -> list[Release]:
    """The releases of one kind that these hosts install: each pinned version once, with the
    hosts that pin it, from the url template of the first of them. A host's template says where
    the internet copy comes from whatever its source (a bundle host's as much as an online
    one's). Without hosts, HostConfig's defaults. `version` replaces every pin; `base` every
    template (a base URL laid out like upstream's)."""
    pins = [(host, configs[host]) for host in sorted(configs)] or [(None, HostConfig())]
    releases: dict[str, Release] = {}
    for host, config in pins:
        pinned = version or getattr(config, f"{kind}_version")
        template = f"{base.rstrip('/')}/{BASE_LAYOUTS[kind]}" if base else getattr(config, f"{kind}_url_template")
        known = releases.setdefault(pinned, Release(pinned, template))
        if host is not None:
            releases[pinned] = replace(known, hosts=(*known.hosts, host))
    return sorted(releases.values(), key=lambda r: Version(r.version))


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


def fetch_ollama(f: Fetcher, release: Release, platforms: tuple[str, ...]) -> list[BundleFile]:
    sums_url = release.url("sha256sum.txt")
    sums_bytes = f.text(sums_url)
    sums = parse_sums(sums_bytes.decode())
    sums_rel = ollama_path(release.version, "sha256sum.txt")
    (f.root / sums_rel).parent.mkdir(parents=True, exist_ok=True)
    (f.root / sums_rel).write_bytes(sums_bytes)
    out = [BundleFile(path=sums_rel, size=len(sums_bytes), sha256=hashlib.sha256(sums_bytes).hexdigest())]
    wanted = [name for p in platforms for name in OLLAMA_FILES[p] if name in sums]
    missing = [name for p in platforms for name in OLLAMA_FILES[p][:1] if name not in sums]
    if missing:
        raise BundleError(f"{sums_url} lists no {missing}")
    with ThreadPoolExecutor(f.workers) as pool:
        out += list(pool.map(lambda n: f.file(release.url(n), ollama_path(release.version, n), sums[n]), wanted))
    return out


def fetch_claude(f: Fetcher, release: Release, platforms: tuple[str, ...]) -> list[BundleFile]:
    manifest_url = release.url("manifest.json")
    raw = f.text(manifest_url)
    manifest = json.loads(raw)
    rel = claude_path(release.version, "manifest.json")
    (f.root / rel).parent.mkdir(parents=True, exist_ok=True)
    (f.root / rel).write_bytes(raw)
    out = [BundleFile(path=rel, size=len(raw), sha256=hashlib.sha256(raw).hexdigest())]
    for platform in (p for group in platforms for p in CLAUDE_PLATFORMS[group]):
        entry = manifest.get("platforms", {}).get(platform)
        if entry is None:
            raise BundleError(f"{manifest_url} has no {platform}")
        out.append(f.file(release.url(f"{platform}/claude"), claude_path(release.version, f"{platform}/claude"),
                          entry["checksum"], entry.get("size")))
    return out


def fetch_models(f: Fetcher, registry: str, names: list[str]) -> list[BundleModel]:
    """Every model's manifest first, then all their blobs at once (several in parallel, shared
    blobs once), then the manifests are written: a model is only listed once its blobs are here."""
    def repo(name: str) -> str:
        namespace, model, _ = split_name(name)
        return f"{registry}/v2/{namespace}/{model}"

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


def build(root: Path, models: list[str], platforms: tuple[str, ...], ollama: Sequence[Release],
          claude: Sequence[Release], registry: str = REGISTRY_URL, workers: int = 4,
          progress: bool = True, pythons: tuple[str, ...] = ()) -> tuple[BundleIndex, int]:
    """Fill the bundle directory; returns its index and how many bytes this run downloaded.
    With `pythons`, also the toolkit's wheels for each platform and Python."""
    root.mkdir(parents=True, exist_ok=True)
    fetcher = Fetcher(root, progress, workers)
    try:
        files: list[BundleFile] = []
        for release in ollama:
            files += fetch_ollama(fetcher, release, platforms)
        for release in claude:
            files += fetch_claude(fetcher, release, platforms)
        bundled = fetch_models(fetcher, registry.rstrip("/"), sorted(set(models)))
    finally:
        fetcher.close()
    try:
        carried = [BundleFile(path=p, size=n, sha256=h) for p, n, h in wheels.gather(root, platforms, pythons)] \
            if pythons else []
    except wheels.WheelError as exc:
        raise BundleError(str(exc)) from exc
    index = BundleIndex(ollama_versions=tuple(r.version for r in ollama),
                        claude_versions=tuple(r.version for r in claude), platforms=platforms,
                        files=tuple(files), models=tuple(bundled), wheels=tuple(carried),
                        wheel_sets=tuple(f"{p}-py{v}" for p in platforms for v in pythons))
    save_index(root, index)
    return index, fetcher.fetched_bytes
