"""The lab's release mirror: a file tree laid out like the real download sites, served by nginx.

Tree (URL path = path under `root`; a deploy only swaps the base URL):

    ollama/releases/download/v<ver>/ollama-linux-<arch>.tar.zst   ← https://github.com/ollama/ollama/releases/download/…
    ollama/releases/download/v<ver>/sha256sum.txt
    claude-code-releases/<ver>/<platform>/claude                  ← https://downloads.claude.ai/claude-code-releases/…
    claude-code-releases/<ver>/manifest.json
    claude-code-releases/stable, latest                           (bare version string)
    npm/anthropic-ai-claude-code-<ver>.tgz                        (for an offline `npm install -g`)
    npm/anthropic-ai-claude-code-<platform>-<ver>.tgz
    pypi/simple/<project>/index.html                              ← https://pypi.org/simple/… (lab/pypi.py)
    git/<name>.git/                                               a team's configuration repository (dumb HTTP)
    reports/<host>.json                                           what pull-mode hosts PUT (WebDAV)
    .localcode-mirror.json                                        (build stamp; nginx answers 404 for dot files)

The Ollama files come from the stand-in builder (lab/standin/build_release.py, run as a
subprocess) and are cached under CACHE_DIR/ollama-standin/<ver>-<arch>-<key>/, where key hashes
the version, arch, registry URL and every file of lab/standin/. The Claude Code files come from
lab.claude_code (real binary, cached). Files are hard-linked from the cache into the
tree (copied when the cache is on another filesystem): never edit a mirror file in place — to
tamper in a test, write a new file and rename it over the old one.

Nothing here starts or stops processes: `write_nginx_config` + `nginx_argv` give the lab's
lifecycle code what to run (in the foreground; it records the PID). SIGTERM (fast) or SIGQUIT
(graceful) to the master stops it and removes the unix socket; after SIGKILL the socket file
stays and must be removed before the next start ("Address already in use").
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lab import paths
from lab.claude_code import check_pinned_version, claude_code_release, platform_package
from lab.files import atomic_write_text, locked, read_json, removed_on_failure, sha256_file

log = logging.getLogger(__name__)

OLLAMA_RELEASES_PATH = "/ollama/releases/download"  # + /v<ver>/<file>
CLAUDE_RELEASES_PATH = "/claude-code-releases"  # + /<ver>/<platform>/claude, /<ver>/manifest.json, /stable
NPM_PATH = "/npm"  # + /<npm tarball filename>
PYPI_PATH = "/pypi/simple"  # + /<project>/ (lab/pypi.py)
REPORTS_PATH = "/reports"  # + /<host>.json: PUT by pull-mode hosts
GIT_PATH = "/git"  # + /<name>.git: repositories served over git's dumb HTTP protocol
STAMP_NAME = ".localcode-mirror.json"
LOCK_NAME = ".localcode-mirror.lock"
STANDIN_BUILDER = "build_release.py"
NGINX_APT_PACKAGE = "nginx-light"

_STAMP_FORMAT = 1
_OLLAMA_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?$")
_OLLAMA_ARCHES = ("amd64", "arm64")
_STANDIN_TIMEOUT_S = 600


class MirrorError(RuntimeError):
    """The mirror tree could not be built."""


class NginxNotInstalled(RuntimeError):
    """No nginx binary on this machine."""


# --------------------------------------------------------------------------- small helpers


def _place(src: Path, dst: Path) -> None:
    """Put src's content at dst atomically: hard link if possible, else copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    with removed_on_failure(tmp):
        try:
            os.link(src, tmp)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
                raise
            shutil.copy2(src, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dst)


def _file_id(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def parse_sha256sums(text: str) -> dict[str, str]:
    """`sha256sum` output ("<hex>  <name>" or "<hex> *<name>") → {name: hex}."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line.strip("\r"))
        if m:
            sums[m.group(2)] = m.group(1).lower()
    return sums


# --------------------------------------------------------------------------- Ollama stand-in


def standin_source_hash(standin_dir: Path | None = None) -> str:
    """sha256 over every file of the stand-in source tree (relative path + bytes), caches excluded."""
    standin_dir = Path(standin_dir or paths.STANDIN_DIR)
    h = hashlib.sha256()
    if not standin_dir.is_dir():
        return h.hexdigest()
    for dirpath, dirnames, filenames in os.walk(standin_dir):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", ".pytest_cache"))
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")) or name.startswith(".#"):
                continue
            p = Path(dirpath) / name
            rel = p.relative_to(standin_dir).as_posix()
            h.update(rel.encode() + b"\0")
            if p.is_symlink():
                h.update(b"L" + os.readlink(p).encode() + b"\0")
            else:
                h.update(b"F" + p.read_bytes() + b"\0")
    return h.hexdigest()


def ollama_tarball_name(arch: str) -> str:
    return f"ollama-linux-{arch}.tar.zst"


@dataclass(frozen=True)
class OllamaRelease:
    version: str
    arch: str
    tarball: Path
    sha256sums: Path
    sha256: str


def _ollama_key(version: str, arch: str, registry_url: str, standin_hash: str) -> str:
    blob = json.dumps({"v": version, "arch": arch, "registry": registry_url, "standin": standin_hash}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _ollama_from_cache(entry: Path, version: str, arch: str) -> OllamaRelease | None:
    meta = read_json(entry / ".stamp.json")
    if not meta:
        return None
    tarball, sums = entry / ollama_tarball_name(arch), entry / "sha256sum.txt"
    if _file_id(tarball) != meta.get("tarball") or _file_id(sums) != meta.get("sha256sums"):
        return None
    return OllamaRelease(version, arch, tarball, sums, meta["sha256"])


def build_standin_release(version: str, registry_url: str, arch: str = "amd64", *,
                          cache_dir: Path | None = None, standin_dir: Path | None = None,
                          standin_hash: str | None = None) -> OllamaRelease:
    """The stand-in Ollama release for version/arch, built once per input hash (cached)."""
    standin_dir = Path(standin_dir or paths.STANDIN_DIR)
    builder = standin_dir / STANDIN_BUILDER
    if standin_hash is None:
        standin_hash = standin_source_hash(standin_dir)
    key = _ollama_key(version, arch, registry_url, standin_hash)
    base = Path(cache_dir or paths.CACHE_DIR) / "ollama-standin"
    entry = base / f"{version}-{arch}-{key}"
    cached = _ollama_from_cache(entry, version, arch)
    if cached:
        return cached
    if not builder.is_file():
        raise MirrorError(f"Ollama stand-in builder missing: {builder}")
    with locked(base / ".lock"):
        cached = _ollama_from_cache(entry, version, arch)
        if cached:
            return cached
        work = Path(tempfile.mkdtemp(dir=base, prefix=".build-"))
        try:
            argv = [sys.executable, str(builder), "--version", version, "--registry", registry_url,
                    "--out", str(work), "--arch", arch]
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=_STANDIN_TIMEOUT_S,
                                  cwd=paths.REPO_ROOT)
            if proc.returncode != 0:
                raise MirrorError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
            built = work / f"v{version}"
            tarball, sums = built / ollama_tarball_name(arch), built / "sha256sum.txt"
            for p in (tarball, sums):
                if not p.is_file():
                    raise MirrorError(f"stand-in builder did not write {p.relative_to(work)} (argv: {argv})")
            listed = parse_sha256sums(sums.read_text()).get(tarball.name)
            actual = sha256_file(tarball)
            if listed != actual:
                raise MirrorError(f"stand-in {tarball.name}: sha256 {actual} but sha256sum.txt says {listed}")
            for p in built.iterdir():
                os.chmod(p, 0o644)
            meta = {"version": version, "arch": arch, "registry": registry_url, "standin": standin_hash,
                    "sha256": actual, "tarball": _file_id(tarball), "sha256sums": _file_id(sums)}
            atomic_write_text(built / ".stamp.json", json.dumps(meta, indent=2) + "\n")
            if entry.exists():  # stale/partial entry from an interrupted or tampered run
                shutil.rmtree(entry)
            os.rename(built, entry)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        result = _ollama_from_cache(entry, version, arch)
        if result is None:
            raise MirrorError(f"stand-in cache entry {entry} inconsistent right after building it")
        return result


# --------------------------------------------------------------------------- the tree


def claude_manifest(version: str, build_date: str, platforms: dict[str, tuple[str, int]]) -> dict:
    """manifest.json as downloads.claude.ai publishes it: platforms = {key: (sha256 hex, size)}."""
    return {
        "version": version,
        "buildDate": build_date,
        "platforms": {k: {"checksum": sha, "size": size} for k, (sha, size) in sorted(platforms.items())},
    }


def _normalize_ollama_version(v: str) -> str:
    v = str(v).removeprefix("v")
    if not _OLLAMA_VERSION.match(v):
        raise ValueError(f"bad Ollama version {v!r} (expected e.g. 0.14.3)")
    return v


def build_mirror_tree(root: Path, ollama_versions: list[str], claude_version: str, registry_url: str, *,
                      claude_platforms: tuple[str, ...] = ("linux-x64",),
                      ollama_arches: tuple[str, ...] = ("amd64",),
                      cache_dir: Path | None = None,
                      standin_dir: Path | None = None) -> Path:
    """Lay out (or bring up to date) the mirror under root; returns root.

    Each part — one Ollama version, the Claude Code release, the channel pointers, the npm
    tarballs — is redone only when its inputs changed or its files are not the ones last placed
    (compared by inode, size and mtime against root/.localcode-mirror.json). Versions no longer
    asked for are removed. Unchanged inputs → nothing in the tree is written. Needs the stand-in
    builder only when an Ollama release is not cached yet; network (npm) only on a cold cache.
    """
    if not re.match(r"^https?://[^\s]+$", str(registry_url)):
        raise ValueError(f"registry_url must be an http(s) URL, got {registry_url!r}")
    versions = sorted({_normalize_ollama_version(v) for v in ollama_versions})
    for arch in ollama_arches:
        if arch not in _OLLAMA_ARCHES:
            raise ValueError(f"bad Ollama arch {arch!r}; one of {_OLLAMA_ARCHES}")
    for p in claude_platforms:
        platform_package(p)  # validates
    if not claude_platforms:
        raise ValueError("claude_platforms must name at least one platform")
    check_pinned_version(claude_version)
    root = Path(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / LOCK_NAME):
        _sync_tree(root, versions, claude_version, registry_url, tuple(claude_platforms), tuple(ollama_arches),
                   cache_dir, standin_dir)
    return root


def _sync_tree(root: Path, versions: list[str], claude_version: str, registry_url: str,
               claude_platforms: tuple[str, ...], ollama_arches: tuple[str, ...],
               cache_dir: Path | None, standin_dir: Path | None) -> None:
    stamp_path = root / STAMP_NAME
    old = read_json(stamp_path) or {}
    if old.get("format") != _STAMP_FORMAT:
        old = {}
    old_parts: dict = old.get("parts", {})
    parts: dict[str, dict] = {}

    def up_to_date(name: str, key: dict) -> bool:
        prev = old_parts.get(name)
        if not prev or prev.get("key") != key:
            return False
        return all(_file_id(root / rel) == fid for rel, fid in prev.get("files", {}).items())

    def record(name: str, key: dict, rels: list[str]) -> None:
        parts[name] = {"key": key, "files": {rel: _file_id(root / rel) for rel in rels}}

    changed = False

    # Ollama stand-in releases: one part per version (all arches, one sha256sum.txt, as upstream)
    standin_hash = standin_source_hash(standin_dir) if versions else ""
    ollama_base = OLLAMA_RELEASES_PATH.lstrip("/")
    for v in versions:
        name = f"ollama/{v}"
        key = {"version": v, "arches": list(ollama_arches), "registry": registry_url, "standin": standin_hash}
        tar_rels = [f"{ollama_base}/v{v}/{ollama_tarball_name(a)}" for a in ollama_arches]
        rocm_rels = [f"{ollama_base}/v{v}/ollama-linux-{a}-rocm.tar.zst" for a in ollama_arches if a == "amd64"]
        sums_rel = f"{ollama_base}/v{v}/sha256sum.txt"
        if up_to_date(name, key):
            parts[name] = old_parts[name]
            continue
        built = [build_standin_release(v, registry_url, a, cache_dir=cache_dir, standin_dir=standin_dir,
                                       standin_hash=standin_hash) for a in ollama_arches]
        for rel, tar_rel in zip(built, tar_rels):
            _place(rel.tarball, root / tar_rel)
        for rocm_rel in rocm_rels:  # the ROCm overlay the builder writes beside the amd64 tarball
            _place(built[list(ollama_arches).index("amd64")].tarball.with_name(Path(rocm_rel).name), root / rocm_rel)
        if len(built) == 1:
            _place(built[0].sha256sums, root / sums_rel)
        else:
            sums: dict[str, str] = {}
            for rel in built:
                sums.update(parse_sha256sums(rel.sha256sums.read_text()))
            atomic_write_text(root / sums_rel, "".join(f"{h}  {n}\n" for n, h in sorted(sums.items())))
        record(name, key, tar_rels + rocm_rels + [sums_rel])
        changed = True
        log.info("mirror: placed Ollama stand-in %s (%s)", v, ", ".join(ollama_arches))

    # Claude Code: binary per platform, manifest.json, npm tarballs
    claude_base = CLAUDE_RELEASES_PATH.lstrip("/")
    npm_base = NPM_PATH.lstrip("/")
    releases = {p: None for p in claude_platforms}
    cc_key = {"version": claude_version, "platforms": list(claude_platforms)}
    cc_rels = [f"{claude_base}/{claude_version}/{p}/claude" for p in claude_platforms]
    cc_rels.append(f"{claude_base}/{claude_version}/manifest.json")
    for p in claude_platforms:
        releases[p] = claude_code_release(claude_version, p, cache_dir=cache_dir)  # warm: stamps only
    cc_key["sha256"] = {p: r.sha256 for p, r in releases.items()}
    cc_key["build_date"] = releases[claude_platforms[0]].build_date
    if up_to_date("claude-code", cc_key):
        parts["claude-code"] = old_parts["claude-code"]
    else:
        for p, r in releases.items():
            _place(r.binary, root / f"{claude_base}/{claude_version}/{p}/claude")
        manifest = claude_manifest(claude_version, cc_key["build_date"],
                                   {p: (r.sha256, r.size) for p, r in releases.items()})
        atomic_write_text(root / f"{claude_base}/{claude_version}/manifest.json", json.dumps(manifest, indent=2) + "\n")
        record("claude-code", cc_key, cc_rels)
        changed = True
        log.info("mirror: placed Claude Code %s (%s)", claude_version, ", ".join(claude_platforms))

    ch_key = {"version": claude_version}
    ch_rels = [f"{claude_base}/stable", f"{claude_base}/latest"]
    if up_to_date("channels", ch_key):
        parts["channels"] = old_parts["channels"]
    else:
        for rel in ch_rels:
            with contextlib.suppress(OSError):
                if (root / rel).read_text() == claude_version:
                    continue
            atomic_write_text(root / rel, claude_version)  # bare version, no newline, like upstream
        record("channels", ch_key, ch_rels)
        changed = True

    first = releases[claude_platforms[0]]
    tarballs = [first.wrapper] + [r.platform_tarball for r in releases.values()]
    npm_key = {t.path.name: t.integrity for t in tarballs}
    npm_rels = [f"{npm_base}/{t.path.name}" for t in tarballs]
    if up_to_date("npm", npm_key):
        parts["npm"] = old_parts["npm"]
    else:
        for t in tarballs:
            _place(t.path, root / npm_base / t.path.name)
        record("npm", npm_key, npm_rels)
        changed = True

    # Prune what is no longer asked for (and temp files left by a crash) in the managed folders.
    keep = {rel for part in parts.values() for rel in part["files"]}
    keep_dirs = {str(Path(rel).parent) for rel in keep}
    keep_dirs |= {str(p) for rel in keep for p in Path(rel).parents}
    for managed in (ollama_base, claude_base, npm_base):
        top = root / managed
        if not top.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(top, topdown=False):
            d = Path(dirpath)
            for fname in filenames:
                rel = str((d / fname).relative_to(root))
                if rel not in keep:
                    _remove(d / fname)
                    changed = True
            for dname in dirnames:
                rel = str((d / dname).relative_to(root))
                if rel not in keep_dirs:
                    _remove(d / dname)
                    changed = True

    if changed or old_parts != parts:
        atomic_write_text(stamp_path, json.dumps({"format": _STAMP_FORMAT, "parts": parts}, indent=2) + "\n")


# --------------------------------------------------------------------------- nginx


def ensure_nginx() -> Path:
    """Path of the nginx binary; NginxNotInstalled (naming the apt package) if there is none."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])
    found = shutil.which("nginx", path=search)
    if not found:
        raise NginxNotInstalled(
            f"nginx not found (looked in {search}). Install the Debian package {NGINX_APT_PACKAGE} "
            f"(`apt-get install --no-install-recommends {NGINX_APT_PACKAGE}`; on bookworm it pulls the "
            "binary package `nginx`) — the lab Makefile does this. The lab runs nginx itself as a plain "
            "process: its init script/service is not needed (stop or mask it if apt started one on :80)."
        )
    return Path(found)


def _nginx_quote(value: str | Path, what: str) -> str:
    s = str(value)
    if any(c in s for c in '"\\$\n\r;{}') or not s:
        raise ValueError(f"{what} {s!r}: characters nginx config can't take safely")
    return f'"{s}"'


def write_nginx_config(path: Path, root: Path, listen_unix: Path, listen_tcp_port: int | None, run_dir: Path, *,
                       user: str | None = "root") -> None:
    """Write a standalone nginx config serving root (read-only, static) on a unix socket (+ TCP).

    Everything nginx writes (pid, logs, temp dirs, lock) lives in run_dir, which is created.
    `user` is the account workers run as when the master runs as root (None: nginx's default;
    ignored with a warning when the master is not root). Content types: sha256sum.txt and the
    stable/latest pointers are text/plain, manifest.json application/json, everything else
    application/octet-stream. No directory listings (directories answer 404), dot files 404,
    Range requests as nginx does by default (206 + Content-Range); PUT only under
    REPORTS_PATH (WebDAV), where pull-mode hosts send their status.
    """
    path, root, listen_unix, run_dir = (Path(p).absolute() for p in (path, root, listen_unix, run_dir))
    if len(os.fsencode(str(listen_unix))) >= 108:
        raise ValueError(f"unix socket path too long for sun_path (max 107 bytes): {listen_unix}")
    if listen_tcp_port is not None and not (isinstance(listen_tcp_port, int) and 0 < listen_tcp_port < 65536):
        raise ValueError(f"bad TCP port {listen_tcp_port!r}")
    if user is not None and not re.match(r"^[a-z_][a-z0-9_-]*\$?$", user):
        raise ValueError(f"bad user name {user!r}")
    q = _nginx_quote
    run = run_dir
    lines = [
        "# Generated by lab.mirror.write_nginx_config — the lab's release mirror.",
        "daemon off;",
        "master_process on;",
        "worker_processes 1;",
        f"pid {q(run / 'nginx.pid', 'pid')};",
        f"lock_file {q(run / 'nginx.lock', 'lock file')};",
        f"error_log {q(run / 'error.log', 'error log')} notice;",
    ]
    if user is not None:
        lines.append(f"user {user};")
    lines += [
        "events { worker_connections 512; }",
        "http {",
        "    types {",
        "        application/json json;",
        "        text/plain txt;",
        "        text/html html;",
        "    }",
        "    default_type application/octet-stream;",
        f"    access_log {q(run / 'access.log', 'access log')};",
        f"    client_body_temp_path {q(run / 'client_body', 'temp path')};",
        f"    proxy_temp_path {q(run / 'proxy', 'temp path')};",
        f"    fastcgi_temp_path {q(run / 'fastcgi', 'temp path')};",
        f"    uwsgi_temp_path {q(run / 'uwsgi', 'temp path')};",
        f"    scgi_temp_path {q(run / 'scgi', 'temp path')};",
        "    sendfile on;",
        "    tcp_nopush on;",
        "    keepalive_timeout 30s;",
        "    server_tokens off;",
        "    autoindex off;",
        "    server {",
        f"        listen {q('unix:' + str(listen_unix), 'unix socket')};",
    ]
    if listen_tcp_port is not None:
        lines.append(f"        listen 127.0.0.1:{listen_tcp_port};")
    lines += [
        "        server_name _;",
        f"        root {q(root, 'root')};",
        "        location / {",
        "            try_files $uri =404;",
        "        }",
        # Where pull-mode hosts PUT their status (pull_report_url), as a WebDAV share would take it.
        f"        location {REPORTS_PATH}/ {{",
        "            dav_methods PUT;",
        "            create_full_put_path on;",
        "            dav_access user:rw group:r all:r;",
        "        }",
        # The lab's PyPI (lab/pypi.py): a project's page is its directory's index.html.
        f"        location {PYPI_PATH}/ {{",
        "            index index.html;",
        "            try_files $uri $uri/ =404;",
        "        }",
        "        location ~ /\\. {",
        "            return 404;",
        "        }",
        f"        location ~ ^{CLAUDE_RELEASES_PATH}/(stable|latest)$ {{",
        "            types { }",
        "            default_type text/plain;",
        "            try_files $uri =404;",
        "        }",
        "    }",
        "}",
        "",
    ]
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines))


def nginx_argv(config_path: Path, *, nginx_bin: Path | None = None) -> list[str]:
    """argv to run nginx in the foreground with config_path (startup errors go to stderr)."""
    config_path = Path(config_path).absolute()
    nginx = nginx_bin or ensure_nginx()
    return [str(nginx), "-e", "stderr", "-p", f"{config_path.parent}/", "-c", str(config_path)]


def check_nginx_config(config_path: Path, *, nginx_bin: Path | None = None) -> None:
    """`nginx -t` on the config; raises MirrorError with nginx's message if it is rejected."""
    proc = subprocess.run(nginx_argv(config_path, nginx_bin=nginx_bin) + ["-t", "-q"],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise MirrorError(f"nginx rejected {config_path}: {proc.stderr.strip()}")
