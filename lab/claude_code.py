"""The real Claude Code release for the lab: pinned npm tarballs, verified, cached, extracted.

Since 2.1.113 `@anthropic-ai/claude-code` is a 32 KB wrapper and the program is a native binary in
the per-platform package `@anthropic-ai/claude-code-<platform>` (`package/claude`, no Node needed).
We `npm pack` both tarballs (pinned: an unpinned `npm pack` once returned a stale version), check
the digests npm reports against the bytes on disk (and against the digests pinned below for the
default version), then extract the binary once.

Cache layout (under CACHE_DIR, default /var/cache/localcode-lab):

    npm/<npm filename>.tgz                         the tarball exactly as npm packed it
    npm/<npm filename>.tgz.json                    its verified digests (written only after checking)
    claude-code/<version>/<platform>/claude        the binary, 0755
    claude-code/<version>/<platform>/claude.json   sha256, size, buildDate, tarball integrity
    .claude-code.lock                              flock held while fetching/extracting

Every file is written to a temporary name in its final directory and renamed into place; the
`.json` stamps are written last, so an interrupted run is redone, never trusted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform as _platform
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from lab import paths
from lab.files import atomic_write_text, locked, read_json, removed_on_failure

DEFAULT_CLAUDE_VERSION = "2.1.330"
WRAPPER_PACKAGE = "@anthropic-ai/claude-code"
PLATFORMS = (
    "linux-x64",
    "linux-x64-musl",
    "linux-arm64",
    "linux-arm64-musl",
    "darwin-x64",
    "darwin-arm64",
)

# `npm view <pkg>@<ver> dist.integrity`, recorded when the version was pinned. A tarball whose
# digest differs from these is refused even if npm itself is happy with it.
KNOWN_INTEGRITY: dict[tuple[str, str], str] = {
    (WRAPPER_PACKAGE, "2.1.330"): "sha512-KQMl6kixLMGHRCDUhkUPebuBhw13MpxlH3+17QzHQx40FNVd1z3uFKUSqQXB5zF9vLQGcpoC/8wWe5R35lsWvQ==",
    (WRAPPER_PACKAGE + "-linux-x64", "2.1.330"): "sha512-9Gn+V7DtJ8M1nztP9CeDVl9g3RtrepI7rOFTyPRRnZe8D6zebIHKmC7OvBauucuAP0X0k85SDN/LPVZyjsGezQ==",
}

_PINNED_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")
_NPM_TIMEOUT_S = 900
_CHUNK = 1 << 20


class ClaudeCodeFetchError(RuntimeError):
    """The Claude Code release could not be fetched, verified or extracted."""


@dataclass(frozen=True)
class NpmTarball:
    name: str
    version: str
    path: Path
    integrity: str  # ssri string as npm reports it, e.g. "sha512-…"
    shasum: str  # sha1 hex
    size: int
    published: str | None  # registry publish time, "YYYY-MM-DDTHH:MM:SSZ", if npm told us


@dataclass(frozen=True)
class ClaudeCodeRelease:
    version: str
    platform: str
    binary: Path
    sha256: str
    size: int
    build_date: str  # what the lab's manifest.json says as buildDate
    wrapper: NpmTarball  # @anthropic-ai/claude-code
    platform_tarball: NpmTarball  # @anthropic-ai/claude-code-<platform>


def platform_package(platform: str) -> str:
    if platform not in PLATFORMS:
        raise ValueError(f"unknown Claude Code platform {platform!r}; one of {', '.join(PLATFORMS)}")
    return f"{WRAPPER_PACKAGE}-{platform}"


def check_pinned_version(version: str) -> str:
    if not isinstance(version, str) or not _PINNED_VERSION.match(version):
        raise ValueError(f"Claude Code version must be pinned (e.g. {DEFAULT_CLAUDE_VERSION}), got {version!r}")
    return version


def host_platform() -> str | None:
    """The Claude Code platform key this machine can run (glibc Linux only), or None."""
    if os.uname().sysname != "Linux":
        return None
    return {"x86_64": "linux-x64", "aarch64": "linux-arm64"}.get(_platform.machine())


def npm_tarball_filename(name: str, version: str) -> str:
    """npm pack's file name: "@scope/pkg" → "scope-pkg-<version>.tgz"."""
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


# --------------------------------------------------------------------------- helpers


def _cache_dir(cache_dir: Path | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else paths.CACHE_DIR


def _hash_file(path: Path, *algorithms: str) -> dict[str, hashlib._Hash]:
    hashes = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            for h in hashes.values():
                h.update(chunk)
    return hashes


def _npm_env(npm_cache: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(npm_config_update_notifier="false", npm_config_fund="false", npm_config_audit="false")
    if npm_cache is not None:
        # A throwaway npm cache: nothing stale from ~/.npm can answer, and the 175 MB tarball is
        # not kept twice (ours is the cache).
        env["npm_config_cache"] = str(npm_cache)
    return env


def _npm() -> str:
    npm = shutil.which("npm")
    if not npm:
        raise ClaudeCodeFetchError("npm not found: install the Debian packages nodejs and npm")
    return npm


def _verify_integrity(path: Path, integrity: str, shasum: str | None, size: int | None) -> None:
    """Check the file's bytes against an ssri string ("sha512-<b64> [sha1-<b64>]…") and sha1 hex."""
    if size is not None and path.stat().st_size != size:
        raise ClaudeCodeFetchError(f"{path}: size {path.stat().st_size} != {size} reported by npm")
    wanted: dict[str, set[str]] = {}
    for token in integrity.split():
        algo, _, b64 = token.partition("-")
        if algo in ("sha512", "sha384", "sha256", "sha1") and b64:
            wanted.setdefault(algo, set()).add(b64.split("?")[0])
    if "sha512" not in wanted:
        raise ClaudeCodeFetchError(f"{path}: npm reported no sha512 integrity ({integrity!r})")
    hashes = _hash_file(path, *wanted, "sha1")
    for algo, b64s in wanted.items():
        got = base64.b64encode(hashes[algo].digest()).decode()
        if got not in b64s:
            raise ClaudeCodeFetchError(f"{path}: {algo} integrity mismatch (npm said {sorted(b64s)}, file is {got})")
    if shasum and hashes["sha1"].hexdigest() != shasum.lower():
        raise ClaudeCodeFetchError(f"{path}: sha1 {hashes['sha1'].hexdigest()} != shasum {shasum} reported by npm")


def _publish_time(name: str, version: str, npm_cache: Path | None = None) -> str | None:
    """The registry's publish time of name@version as "YYYY-MM-DDTHH:MM:SSZ" (None if npm can't say)."""
    try:
        out = subprocess.run(
            [_npm(), "view", f"{name}@{version}", "time", "--json"],
            capture_output=True, text=True, timeout=120, env=_npm_env(npm_cache), cwd=tempfile.gettempdir(),
        )
        stamp = json.loads(out.stdout)[version]
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(timezone.utc)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _tarball_from_sidecar(tgz: Path, name: str, version: str) -> NpmTarball | None:
    meta = read_json(tgz.with_name(tgz.name + ".json"))
    if not meta or meta.get("name") != name or meta.get("version") != version:
        return None
    known = KNOWN_INTEGRITY.get((name, version))
    if known and known not in meta.get("integrity", "").split():
        return None
    try:
        st = tgz.stat()
        # Size and mtime as recorded right after verification: an in-place edit (e.g. through a
        # hard link in a mirror tree) changes the mtime, and the tarball is then fetched again.
        if st.st_size != meta["size"] or st.st_mtime_ns != meta["mtime_ns"]:
            return None
    except (OSError, KeyError):
        return None
    return NpmTarball(name, version, tgz, meta["integrity"], meta["shasum"], meta["size"], meta.get("published"))


# --------------------------------------------------------------------------- npm tarballs


def npm_pack(name: str, version: str, dest_dir: Path) -> NpmTarball:
    """`npm pack name@version` into dest_dir once, verified; later calls reuse the verified file.

    Verification: sha512 (and any other algorithm in the ssri string), sha1 and size of the bytes
    on disk must equal what `npm pack --json` reports, and the integrity must equal
    KNOWN_INTEGRITY for pinned (name, version) pairs. The sidecar `<file>.json` is written only
    after that, so its presence means "verified".
    """
    check_pinned_version(version)
    dest_dir = Path(dest_dir)
    tgz = dest_dir / npm_tarball_filename(name, version)
    cached = _tarball_from_sidecar(tgz, name, version)
    if cached:
        return cached

    dest_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest_dir, prefix=".pack-"))
    try:
        (work / "out").mkdir()
        proc = subprocess.run(
            [_npm(), "pack", "--json", "--pack-destination", str(work / "out"), f"{name}@{version}"],
            capture_output=True, text=True, timeout=_NPM_TIMEOUT_S, env=_npm_env(work / ".npm-cache"), cwd=work,
        )
        if proc.returncode != 0:
            raise ClaudeCodeFetchError(f"npm pack {name}@{version} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        try:
            report = json.loads(proc.stdout[proc.stdout.index("[") :])[0]
        except (ValueError, IndexError, KeyError) as e:
            raise ClaudeCodeFetchError(f"npm pack {name}@{version}: unreadable --json output: {proc.stdout[:500]!r}") from e
        if report.get("name") != name or report.get("version") != version:
            raise ClaudeCodeFetchError(
                f"npm pack {name}@{version} produced {report.get('name')}@{report.get('version')} (stale npm cache?)"
            )
        packed = work / "out" / Path(str(report.get("filename"))).name
        integrity = report.get("integrity") or ""
        known = KNOWN_INTEGRITY.get((name, version))
        if known and known not in integrity.split():
            raise ClaudeCodeFetchError(f"{name}@{version}: npm reported integrity {integrity!r}, pinned is {known!r}")
        _verify_integrity(packed, integrity, report.get("shasum"), report.get("size"))
        os.chmod(packed, 0o644)
        os.replace(packed, tgz)
        st = tgz.stat()
        size = st.st_size
        meta = {
            "name": name,
            "version": version,
            "integrity": integrity,
            "shasum": report.get("shasum"),
            "size": size,
            "mtime_ns": st.st_mtime_ns,
            "published": _publish_time(name, version, work / ".npm-cache"),
        }
        atomic_write_text(tgz.with_name(tgz.name + ".json"), json.dumps(meta, indent=2) + "\n")
        return NpmTarball(name, version, tgz, integrity, meta["shasum"], size, meta["published"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- the binary


def claude_version_output(binary: Path, timeout: float = 60) -> str:
    """Run `<binary> --version` in a throwaway HOME with updates and telemetry off; return stdout."""
    with tempfile.TemporaryDirectory(prefix="claude-home-") as home:
        env = {
            "HOME": home,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DISABLE_UPDATES": "1",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_ERROR_REPORTING": "1",
        }
        proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise ClaudeCodeFetchError(f"{binary} --version exited {proc.returncode}: {proc.stderr.strip()[-1000:]}")
    return proc.stdout.strip()


def _release_from_stamp(bin_path: Path, version: str, platform: str, wrapper: NpmTarball | None,
                        plat: NpmTarball | None) -> ClaudeCodeRelease | None:
    if wrapper is None or plat is None:
        return None
    stamp = read_json(bin_path.with_name("claude.json"))
    if not stamp or stamp.get("version") != version or stamp.get("platform") != platform:
        return None
    if stamp.get("tarball_integrity") != plat.integrity:
        return None
    try:
        st = bin_path.stat()
    except OSError:
        return None
    if st.st_size != stamp.get("size") or st.st_mtime_ns != stamp.get("mtime_ns") or not st.st_mode & 0o100:
        return None
    return ClaudeCodeRelease(version, platform, bin_path, stamp["sha256"], stamp["size"], stamp["build_date"], wrapper, plat)


def _extract_binary(tgz: Path, bin_path: Path, version: str, platform: str) -> tuple[str, int]:
    """Extract package/claude to bin_path atomically; return (sha256 hex, size)."""
    bin_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=bin_path.parent, prefix=".claude.")
    with removed_on_failure(tmp):
        sha = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out, tarfile.open(tgz, "r|gz") as tf:
            for member in tf:
                if member.name != "package/claude":
                    continue
                if not member.isfile():
                    raise ClaudeCodeFetchError(f"{tgz}: package/claude is not a regular file")
                src = tf.extractfile(member)
                while chunk := src.read(_CHUNK):
                    sha.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                break
            else:
                raise ClaudeCodeFetchError(f"{tgz}: no package/claude inside")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o755)
        if platform == host_platform():
            said = claude_version_output(Path(tmp))
            if said != f"{version} (Claude Code)":
                raise ClaudeCodeFetchError(f"{tgz}: extracted binary says {said!r}, expected '{version} (Claude Code)'")
        os.replace(tmp, bin_path)
        return sha.hexdigest(), size


def claude_code_release(version: str = DEFAULT_CLAUDE_VERSION, platform: str = "linux-x64", *,
                        cache_dir: Path | None = None) -> ClaudeCodeRelease:
    """Fetch (once) and describe the pinned release: binary path, sha256, size, both tarballs.

    Warm (everything cached and stamped): reads three small JSON files and stats three files; no
    network, no re-hashing. Cold: two `npm pack`s (~175 MB for linux-x64), digest checks,
    extraction, and `claude --version` when the platform runs on this machine.
    """
    check_pinned_version(version)
    plat_name = platform_package(platform)
    cache = _cache_dir(cache_dir)
    npm_dir = cache / "npm"
    bin_path = cache / "claude-code" / version / platform / "claude"

    def warm() -> ClaudeCodeRelease | None:
        return _release_from_stamp(
            bin_path, version, platform,
            _tarball_from_sidecar(npm_dir / npm_tarball_filename(WRAPPER_PACKAGE, version), WRAPPER_PACKAGE, version),
            _tarball_from_sidecar(npm_dir / npm_tarball_filename(plat_name, version), plat_name, version),
        )

    release = warm()
    if release:
        return release
    with locked(cache / ".claude-code.lock"):
        release = warm()  # another process may have finished while we waited
        if release:
            return release
        wrapper = npm_pack(WRAPPER_PACKAGE, version, npm_dir)
        plat = npm_pack(plat_name, version, npm_dir)
        # Re-verify the cached tarball's bytes before extracting from it (it may be a reused file).
        _verify_integrity(plat.path, plat.integrity, plat.shasum, plat.size)
        sha256, size = _extract_binary(plat.path, bin_path, version, platform)
        build_date = plat.published or datetime.fromtimestamp(plat.path.stat().st_mtime, timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        stamp = {
            "version": version,
            "platform": platform,
            "sha256": sha256,
            "size": size,
            "build_date": build_date,
            "tarball_integrity": plat.integrity,
            "mtime_ns": bin_path.stat().st_mtime_ns,
        }
        atomic_write_text(bin_path.with_name("claude.json"), json.dumps(stamp, indent=2) + "\n")
        return ClaudeCodeRelease(version, platform, bin_path, sha256, size, build_date, wrapper, plat)


def fetch_claude_code(version: str = DEFAULT_CLAUDE_VERSION, platform: str = "linux-x64", *,
                      cache_dir: Path | None = None) -> Path:
    """The real Claude Code binary for version/platform, from the cache (fetched once). Mode 0755."""
    return claude_code_release(version, platform, cache_dir=cache_dir).binary
