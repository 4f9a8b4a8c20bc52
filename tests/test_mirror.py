"""The lab's release mirror: the real Claude Code release, the Ollama stand-in, nginx serving them.

Tests marked `npm_download` need the npm registry on their first run (the ~175 MB
@anthropic-ai/claude-code-linux-x64 tarball); they are part of the normal suite and reuse the
lab cache (CACHE_DIR, default /var/cache/localcode-lab, env LOCALCODE_LAB_CACHE) afterwards.
Tests of the Ollama part skip while lab/standin/build_release.py does not exist.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from localcode.bundle_index import blob_path, claude_path, manifest_path, ollama_path
from lab import claude_code as cc
from lab import mirror
from lab.paths import STANDIN_DIR

REPO = Path(__file__).resolve().parents[1]

CLAUDE_VERSION = cc.DEFAULT_CLAUDE_VERSION
OLLAMA_VERSIONS = ["0.14.3", "0.17.1"]
REGISTRY_URL = "http://127.0.0.1:5000"  # fixed, so the stand-in cache is reused across runs
HAVE_STANDIN = (STANDIN_DIR / mirror.STANDIN_BUILDER).is_file()
needs_standin = pytest.mark.skipif(
    not HAVE_STANDIN, reason=f"Ollama stand-in builder {STANDIN_DIR / mirror.STANDIN_BUILDER} does not exist yet"
)
npm_download = pytest.mark.npm_download


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and dir under root → (inode, size, mtime_ns)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    def __init__(self, base: Path, root: Path):
        self.sock = base / "run" / "mirror.sock"
        self.port = _free_port()
        self.conf = base / "nginx.conf"
        self.run_dir = base / "run"
        mirror.write_nginx_config(self.conf, root, self.sock, self.port, self.run_dir)
        self.stderr = open(base / "nginx.stderr", "wb")
        self.proc = subprocess.Popen(mirror.nginx_argv(self.conf), stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=self.stderr)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited {self.proc.returncode}: {(base / 'nginx.stderr').read_text()}"
                                   f"{(self.run_dir / 'error.log').read_text() if (self.run_dir / 'error.log').exists() else ''}")
            if self.sock.exists():
                try:
                    requests.get(self.url + "/", timeout=1)
                    break
                except requests.ConnectionError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not come up in 10 s")
            time.sleep(0.02)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def release() -> cc.ClaudeCodeRelease:
    return cc.claude_code_release(CLAUDE_VERSION, "linux-x64")


@pytest.fixture(scope="module")
def tree(tmp_path_factory, release) -> Path:
    root = tmp_path_factory.mktemp("mirror") / "root"
    versions = OLLAMA_VERSIONS if HAVE_STANDIN else []
    return mirror.build_mirror_tree(root, versions, CLAUDE_VERSION, REGISTRY_URL)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tree):
    nginx = Nginx(tmp_path_factory.mktemp("nginx"), tree)
    yield nginx
    nginx.stop()


# --------------------------------------------------------------------------- no network needed


def test_nginx_config_is_accepted_and_standalone(tmp_path):
    conf, run = tmp_path / "nginx.conf", tmp_path / "run dir"  # a space must survive quoting
    mirror.write_nginx_config(conf, tmp_path / "root", run / "m.sock", 18081, run)
    text = conf.read_text()
    for needle in ("daemon off;", "master_process on;", f'pid "{run}/nginx.pid";', "autoindex off;",
                   "sendfile on;", "default_type application/octet-stream;", f'listen "unix:{run}/m.sock";',
                   "listen 127.0.0.1:18081;", "user root;"):
        assert needle in text
    assert "include" not in text and "/var/log" not in text and "/var/lib/nginx" not in text
    mirror.check_nginx_config(conf)
    mirror.write_nginx_config(conf, tmp_path / "root", run / "m.sock", None, run, user=None)
    assert "127.0.0.1" not in conf.read_text() and "user " not in conf.read_text()
    mirror.check_nginx_config(conf)


def test_nginx_config_refuses_what_it_cannot_express(tmp_path):
    with pytest.raises(ValueError, match="too long"):
        mirror.write_nginx_config(tmp_path / "c", tmp_path, tmp_path / ("s" * 120), None, tmp_path)
    with pytest.raises(ValueError, match="nginx config"):
        mirror.write_nginx_config(tmp_path / "c", tmp_path / 'a"b', tmp_path / "s", None, tmp_path)
    with pytest.raises(ValueError, match="port"):
        mirror.write_nginx_config(tmp_path / "c", tmp_path, tmp_path / "s", 70000, tmp_path)
    assert not (tmp_path / "c").exists()


def test_ensure_nginx_names_the_apt_package(monkeypatch):
    assert mirror.ensure_nginx().name == "nginx"
    monkeypatch.setattr(mirror.shutil, "which", lambda *a, **k: None)
    with pytest.raises(mirror.NginxNotInstalled, match="nginx-light"):
        mirror.ensure_nginx()


def test_parse_sha256sums():
    a, b = "a" * 64, "B" * 64
    assert mirror.parse_sha256sums(f"{a}  x.tar.zst\n{b} *y.tgz\nnoise\n") == {"x.tar.zst": a, "y.tgz": b.lower()}


def test_unpinned_versions_are_refused(tmp_path):
    for bad in ("latest", "^2.1.0", "2.1", "", "2.1.330 || 3"):
        with pytest.raises(ValueError, match="pinned"):
            cc.npm_pack(cc.WRAPPER_PACKAGE, bad, tmp_path)
    with pytest.raises(ValueError, match="platform"):
        cc.fetch_claude_code(CLAUDE_VERSION, "beos-x64", cache_dir=tmp_path)


def test_standin_hash_covers_every_source_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.txt").write_text("b")
    h1 = mirror.standin_source_hash(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    assert mirror.standin_source_hash(tmp_path) == h1
    (tmp_path / "sub" / "b.txt").write_text("c")
    h2 = mirror.standin_source_hash(tmp_path)
    assert h2 != h1
    (tmp_path / "sub" / "b.txt").rename(tmp_path / "sub" / "c.txt")
    assert mirror.standin_source_hash(tmp_path) not in (h1, h2)


# --------------------------------------------------------------------------- the real Claude Code release


@npm_download
def test_npm_pack_refuses_a_tarball_with_the_wrong_digest(tmp_path, monkeypatch):
    key = (cc.WRAPPER_PACKAGE, CLAUDE_VERSION)
    monkeypatch.setitem(cc.KNOWN_INTEGRITY, key, "sha512-" + base64.b64encode(b"\0" * 64).decode())
    with pytest.raises(cc.ClaudeCodeFetchError, match="integrity"):
        cc.npm_pack(cc.WRAPPER_PACKAGE, CLAUDE_VERSION, tmp_path)
    assert not list(tmp_path.glob("*.tgz*")), "an unverified tarball was left in the cache"


@npm_download
def test_claude_code_binary_is_cached_verified_and_runs(release, monkeypatch):
    binary = cc.fetch_claude_code(CLAUDE_VERSION)
    assert binary == release.binary == cc.paths.CACHE_DIR / "claude-code" / CLAUDE_VERSION / "linux-x64" / "claude"
    assert binary.stat().st_mode & 0o777 == 0o755
    assert cc.claude_version_output(binary) == f"{CLAUDE_VERSION} (Claude Code)"
    for tgz, name in ((release.wrapper, cc.WRAPPER_PACKAGE), (release.platform_tarball, cc.platform_package("linux-x64"))):
        assert tgz.path.parent == cc.paths.CACHE_DIR / "npm" and tgz.name == name and tgz.version == CLAUDE_VERSION
        assert tgz.integrity == cc.KNOWN_INTEGRITY[(name, CLAUDE_VERSION)]
    assert release.platform_tarball.size > 100_000_000 and release.wrapper.size < 100_000

    # Warm: no npm, no subprocess at all, and the same answer.
    def no_subprocess(*a, **k):
        raise AssertionError(f"warm fetch ran a subprocess: {a}")

    monkeypatch.setattr(cc.subprocess, "run", no_subprocess)
    t = time.perf_counter()
    assert cc.claude_code_release(CLAUDE_VERSION) == release
    assert time.perf_counter() - t < 0.5


# --------------------------------------------------------------------------- served by nginx


@npm_download
def test_claude_binary_matches_manifest(server, tree, release):
    r = requests.get(f"{server.url}/claude-code-releases/{CLAUDE_VERSION}/manifest.json", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    manifest = r.json()
    assert set(manifest) == {"version", "buildDate", "platforms"}
    assert manifest["version"] == CLAUDE_VERSION
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", manifest["buildDate"])
    assert list(manifest["platforms"]) == ["linux-x64"]
    entry = manifest["platforms"]["linux-x64"]
    assert set(entry) == {"checksum", "size"}

    h, size = hashlib.sha256(), 0
    with requests.get(f"{server.url}/claude-code-releases/{CLAUDE_VERSION}/linux-x64/claude", stream=True,
                      timeout=60) as r:
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/octet-stream"
        for chunk in r.iter_content(1 << 20):
            h.update(chunk)
            size += len(chunk)
    assert (h.hexdigest(), size) == (entry["checksum"], entry["size"])
    # …and the manifest was computed from the file, not copied from a stamp that could be wrong.
    assert _sha256(tree / f"claude-code-releases/{CLAUDE_VERSION}/linux-x64/claude") == entry["checksum"]


@npm_download
def test_range_requests(server, tree):
    path = f"/claude-code-releases/{CLAUDE_VERSION}/linux-x64/claude"
    local = tree / path.lstrip("/")
    size = local.stat().st_size
    with open(local, "rb") as f:
        f.seek(1_000_000)
        middle = f.read(4096)
        f.seek(size - 100)
        tail = f.read()
    r = requests.get(server.url + path, headers={"Range": "bytes=1000000-1004095"}, timeout=10)
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes 1000000-1004095/{size}"
    assert r.content == middle
    r = requests.get(server.url + path, headers={"Range": f"bytes={size - 100}-"}, timeout=10)
    assert (r.status_code, r.content, r.headers["Content-Range"]) == (206, tail, f"bytes {size - 100}-{size - 1}/{size}")
    r = requests.get(server.url + path, headers={"Range": f"bytes={size}-"}, timeout=10)
    assert r.status_code == 416


@npm_download
def test_channel_pointers_hold_the_bare_version(server):
    for channel in ("stable", "latest"):
        r = requests.get(f"{server.url}/claude-code-releases/{channel}", timeout=10)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "text/plain"
        assert r.text == CLAUDE_VERSION


@npm_download
def test_missing_things_are_404(server):
    for path in (
        "/claude-code-releases/9.9.9/linux-x64/claude",
        "/claude-code-releases/9.9.9/manifest.json",
        f"/claude-code-releases/{CLAUDE_VERSION}/darwin-arm64/claude",
        "/ollama/releases/download/v0.0.1/ollama-linux-amd64.tar.zst",
        "/ollama/releases/download/v0.0.1/sha256sum.txt",
        "/claude-code-releases/",  # no directory listings
        "/npm/",
        f"/{mirror.STAMP_NAME}",  # build stamp and lock are not served
        f"/{mirror.LOCK_NAME}",
    ):
        r = requests.get(server.url + path, timeout=10)
        assert r.status_code == 404, path


@npm_download
def test_unix_socket_with_curl(server, release):
    out = subprocess.run(["curl", "-fsS", "--unix-socket", str(server.sock), "http://mirror/claude-code-releases/stable"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == CLAUDE_VERSION
    out = subprocess.run(["curl", "-fsS", "--unix-socket", str(server.sock), "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                          f"http://mirror/npm/{release.platform_tarball.path.name}"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == f"200 {release.platform_tarball.size}", out.stderr


@npm_download
def test_npm_tarballs_are_served_verbatim(server, release):
    r = requests.get(f"{server.url}/npm/{release.wrapper.path.name}", timeout=10)
    assert r.status_code == 200
    assert "sha512-" + base64.b64encode(hashlib.sha512(r.content).digest()).decode() == release.wrapper.integrity
    r = requests.head(f"{server.url}/npm/{release.platform_tarball.path.name}", timeout=10)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == release.platform_tarball.size


@needs_standin
@npm_download
def test_ollama_tarballs_match_sha256sum_txt(server, tmp_path):
    for version in OLLAMA_VERSIONS:
        base = f"{server.url}/ollama/releases/download/v{version}"
        dest = tmp_path / version
        dest.mkdir()
        sums = requests.get(f"{base}/sha256sum.txt", timeout=10)
        assert sums.status_code == 200 and sums.headers["Content-Type"] == "text/plain"
        (dest / "sha256sum.txt").write_bytes(sums.content)
        with requests.get(f"{base}/ollama-linux-amd64.tar.zst", stream=True, timeout=60) as r:
            assert r.status_code == 200 and r.headers["Content-Type"] == "application/octet-stream"
            with open(dest / "ollama-linux-amd64.tar.zst", "wb") as f:
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
        out = subprocess.run(["sha256sum", "-c", "--ignore-missing", "sha256sum.txt"], cwd=dest,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "ollama-linux-amd64.tar.zst: OK" in out.stdout.splitlines()


@needs_standin
@npm_download
def test_ollama_tarball_is_a_zstd_tar_with_bin_ollama(tree):
    tarball = tree / f"ollama/releases/download/v{OLLAMA_VERSIONS[0]}/ollama-linux-amd64.tar.zst"
    out = subprocess.run(["tar", "--zstd", "-tf", str(tarball)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert {"bin/ollama", "./bin/ollama"} & set(out.stdout.splitlines())


@npm_download
def test_nginx_stops_on_sigterm_and_removes_its_socket(tmp_path, tree):
    nginx = Nginx(tmp_path, tree)
    assert requests.get(nginx.url + "/claude-code-releases/stable", timeout=5).text == CLAUDE_VERSION
    assert nginx.stop() == 0
    assert not nginx.sock.exists()
    assert not (nginx.run_dir / "nginx.pid").exists()


# --------------------------------------------------------------------------- cache behaviour


@npm_download
def test_rebuild_with_unchanged_inputs_is_a_noop(tree):
    before = _snapshot(tree)
    t = time.perf_counter()
    mirror.build_mirror_tree(tree, OLLAMA_VERSIONS if HAVE_STANDIN else [], CLAUDE_VERSION, REGISTRY_URL)
    took = time.perf_counter() - t
    assert _snapshot(tree) == before
    assert took < 1.0, f"warm rebuild took {took:.2f} s"


@npm_download
def test_rebuild_redoes_only_what_changed(tmp_path, release):
    root = tmp_path / "root"
    mirror.build_mirror_tree(root, [], CLAUDE_VERSION, REGISTRY_URL)
    binary = root / f"claude-code-releases/{CLAUDE_VERSION}/linux-x64/claude"
    first = _snapshot(root)
    assert binary.stat().st_ino == release.binary.stat().st_ino  # hard-linked from the cache
    assert sorted(p.name for p in (root / "npm").iterdir()) == sorted(
        [release.wrapper.path.name, release.platform_tarball.path.name])

    # A pointer replaced behind the mirror's back is put back; nothing else is touched.
    tmp = root / "claude-code-releases" / "stable.new"
    tmp.write_text("0.0.1")
    os.replace(tmp, root / "claude-code-releases" / "stable")
    leftover = root / "npm" / ".crash.tmp"
    leftover.write_text("x")
    mirror.build_mirror_tree(root, [], CLAUDE_VERSION, REGISTRY_URL)
    assert (root / "claude-code-releases" / "stable").read_text() == CLAUDE_VERSION
    assert not leftover.exists()
    after = _snapshot(root)
    changed = {k for k in first.keys() | after.keys() if first.get(k) != after.get(k) and not (root / k).is_dir()}
    assert changed == {"claude-code-releases/stable", mirror.STAMP_NAME}, changed

    # Unknown versions in the managed folders go away.
    stray = root / "claude-code-releases" / "1.0.0" / "linux-x64" / "claude"
    stray.parent.mkdir(parents=True)
    stray.write_text("old")
    mirror.build_mirror_tree(root, [], CLAUDE_VERSION, REGISTRY_URL)
    assert not (root / "claude-code-releases" / "1.0.0").exists()
    assert binary.stat().st_ino == first[str(binary.relative_to(root))][0]


@needs_standin
@npm_download
def test_ollama_versions_come_and_go_without_touching_claude_code(tmp_path):
    root = tmp_path / "root"
    mirror.build_mirror_tree(root, [], CLAUDE_VERSION, REGISTRY_URL)
    binary = root / f"claude-code-releases/{CLAUDE_VERSION}/linux-x64/claude"
    claude_ino = binary.stat().st_ino
    # Adding an Ollama version leaves Claude Code alone; a new registry URL rebuilds the stand-in.
    mirror.build_mirror_tree(root, OLLAMA_VERSIONS[:1], CLAUDE_VERSION, REGISTRY_URL)
    ollama = root / f"ollama/releases/download/v{OLLAMA_VERSIONS[0]}/ollama-linux-amd64.tar.zst"
    ino = ollama.stat().st_ino
    assert binary.stat().st_ino == claude_ino
    mirror.build_mirror_tree(root, OLLAMA_VERSIONS[:1], CLAUDE_VERSION, REGISTRY_URL + "/other")
    assert ollama.stat().st_ino != ino
    assert binary.stat().st_ino == claude_ino
    # Dropping the version removes it from the tree.
    mirror.build_mirror_tree(root, [], CLAUDE_VERSION, REGISTRY_URL)
    assert not (root / "ollama/releases/download" / f"v{OLLAMA_VERSIONS[0]}").exists()


@needs_standin
@npm_download
def test_standin_source_change_rebuilds_the_ollama_release(tmp_path):
    standin = tmp_path / "standin"
    shutil.copytree(STANDIN_DIR, standin, ignore=shutil.ignore_patterns("__pycache__"))
    root = tmp_path / "root"
    rel = f"ollama/releases/download/v{OLLAMA_VERSIONS[0]}/ollama-linux-amd64.tar.zst"
    mirror.build_mirror_tree(root, OLLAMA_VERSIONS[:1], CLAUDE_VERSION, REGISTRY_URL, standin_dir=standin)
    ino = (root / rel).stat().st_ino
    mirror.build_mirror_tree(root, OLLAMA_VERSIONS[:1], CLAUDE_VERSION, REGISTRY_URL, standin_dir=standin)
    assert (root / rel).stat().st_ino == ino
    with open(standin / mirror.STANDIN_BUILDER, "a") as f:
        f.write("\n# changed by test_standin_source_change_rebuilds_the_ollama_release\n")
    mirror.build_mirror_tree(root, OLLAMA_VERSIONS[:1], CLAUDE_VERSION, REGISTRY_URL, standin_dir=standin)
    assert (root / rel).stat().st_ino != ino
    stamp = json.loads((root / mirror.STAMP_NAME).read_text())
    assert stamp["parts"][f"ollama/{OLLAMA_VERSIONS[0]}"]["key"]["standin"] == mirror.standin_source_hash(standin)


# --------------------------------------------------------------------------- `localcode bundle` verifies what it fetches


class Upstream:
    """The three sources `localcode bundle` reads (Ollama releases, Claude Code releases, the
    model registry), laid out as files under one root and served over HTTP from a thread."""

    OLLAMA, CLAUDE, MODEL = "1.0.0", "2.0.0", "team/tiny:1b"

    def __init__(self, root: Path):
        self.root = root
        release = b"an ollama release" * 1000
        self.put(f"ollama/v{self.OLLAMA}/ollama-linux-amd64.tar.zst", release)
        self.put(f"ollama/v{self.OLLAMA}/sha256sum.txt",
                 f"{hashlib.sha256(release).hexdigest()}  ollama-linux-amd64.tar.zst\n".encode())
        binary = b"a claude binary" * 1000
        self.put(f"claude/{self.CLAUDE}/linux-x64/claude", binary)
        self.put(f"claude/{self.CLAUDE}/manifest.json", json.dumps({"platforms": {"linux-x64": {
            "checksum": hashlib.sha256(binary).hexdigest(), "size": len(binary)}}}).encode())
        blobs = [b'{"model_format":"gguf"}', b"GGUF weights" * 2000]
        digests = [f"sha256:{hashlib.sha256(b).hexdigest()}" for b in blobs]
        for digest, blob in zip(digests, blobs):
            self.put(f"registry/v2/team/tiny/blobs/{digest}", blob)
        self.put("registry/v2/team/tiny/manifests/1b", json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": digests[0], "size": len(blobs[0])},
            "layers": [{"digest": digests[1], "size": len(blobs[1])}]}).encode())
        self.weights = digests[1]
        handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
        handler.log_message = lambda *a: None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def put(self, path: str, data: bytes) -> None:
        (self.root / path).parent.mkdir(parents=True, exist_ok=True)
        (self.root / path).write_bytes(data)

    def corrupt(self, path: str) -> None:
        """Serve the file with one byte changed (same size): only its sha256 can tell."""
        data = bytearray((self.root / path).read_bytes())
        data[len(data) // 2] ^= 0x01
        (self.root / path).write_bytes(bytes(data))

    def bundle(self, directory: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(REPO / ".venv/bin/localcode"), "bundle", str(directory), "--model", self.MODEL, "--quiet",
             "--ollama-version", self.OLLAMA, "--claude-version", self.CLAUDE,
             "--ollama-url", f"{self.url}/ollama", "--claude-url", f"{self.url}/claude",
             "--registry", f"{self.url}/registry"], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture
def upstream(tmp_path):
    up = Upstream(tmp_path / "upstream")
    yield up
    up.server.shutdown()
    up.server.server_close()


def _kept(bundle: Path, relative: str) -> list[str]:
    """What the bundle holds of a file: itself, its .partial or its .sha256 stamp."""
    return [p.name for p in (bundle / relative).parent.glob(Path(relative).name + "*")] \
        if (bundle / relative).parent.is_dir() else []


def test_bundle_of_intact_sources_is_complete(upstream, tmp_path):
    done = upstream.bundle(tmp_path / "bundle")
    assert done.returncode == 0, done.stderr
    index = json.loads((tmp_path / "bundle/bundle.json").read_text())
    assert [m["name"] for m in index["models"]] == [upstream.MODEL]
    assert (tmp_path / "bundle" / blob_path(upstream.weights)).is_file()


def test_a_corrupted_release_is_refused_and_not_kept(upstream, tmp_path):
    release = f"ollama/v{upstream.OLLAMA}/ollama-linux-amd64.tar.zst"
    upstream.corrupt(release)
    done = upstream.bundle(tmp_path / "bundle")
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {upstream.url}/{release}: sha256 ") and "discarded" in done.stderr
    assert _kept(tmp_path / "bundle", ollama_path(upstream.OLLAMA, "ollama-linux-amd64.tar.zst")) == []
    assert not (tmp_path / "bundle/bundle.json").exists()


def test_a_corrupted_claude_binary_is_refused_and_not_kept(upstream, tmp_path):
    upstream.corrupt(f"claude/{upstream.CLAUDE}/linux-x64/claude")
    done = upstream.bundle(tmp_path / "bundle")
    assert done.returncode == 1
    assert f"{upstream.url}/claude/{upstream.CLAUDE}/linux-x64/claude: sha256 " in done.stderr, done.stderr
    assert _kept(tmp_path / "bundle", claude_path(upstream.CLAUDE, "linux-x64/claude")) == []
    assert not (tmp_path / "bundle/bundle.json").exists()


def test_a_corrupted_blob_is_refused_and_not_kept(upstream, tmp_path):
    upstream.corrupt(f"registry/v2/team/tiny/blobs/{upstream.weights}")
    done = upstream.bundle(tmp_path / "bundle")
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {upstream.url}/registry/v2/team/tiny/blobs/{upstream.weights}: sha256 ")
    assert _kept(tmp_path / "bundle", blob_path(upstream.weights)) == []
    assert not (tmp_path / "bundle" / manifest_path(upstream.MODEL)).exists()
    assert not (tmp_path / "bundle/bundle.json").exists()
    # Once the registry serves the right bytes, the same directory completes.
    upstream.put(f"registry/v2/team/tiny/blobs/{upstream.weights}", b"GGUF weights" * 2000)
    assert upstream.bundle(tmp_path / "bundle").returncode == 0
    assert (tmp_path / "bundle" / manifest_path(upstream.MODEL)).is_file()


def _tiny_wheel(directory: Path, name: str, version: str) -> Path:
    """A minimal valid wheel (metadata only)."""
    import zipfile

    dist = f"{name.replace('-', '_')}-{version}"
    path = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def test_the_lab_pypi_serves_the_bundles_wheels_to_pip(tmp_path):
    """pip, pointed at the lab's PyPI as an online lab host's /etc/pip.conf points it, finds a
    wheel the bundle carries and checks it against the index's sha256."""
    from localcode.bundle_index import BundleFile, BundleIndex, save_index
    from lab import pypi

    root = tmp_path / "root"
    wheels_dir = root / "bundle" / "wheels"
    wheels_dir.mkdir(parents=True)
    wheel = _tiny_wheel(wheels_dir, "demo-pkg", "1.0")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    save_index(root / "bundle", BundleIndex(wheels=(BundleFile(path=f"wheels/{wheel.name}", size=wheel.stat().st_size,
                                                                sha256=digest),)))
    assert pypi.publish(root, root / "bundle") == 1
    nginx = Nginx(tmp_path, root)
    try:
        page = requests.get(f"{nginx.url}{mirror.PYPI_PATH}/demo-pkg/", timeout=5)
        assert page.headers["Content-Type"].startswith("text/html")
        assert f"/bundle/wheels/{wheel.name}#sha256={digest}" in page.text
        got = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--isolated", "-d",
                              str(tmp_path / "got"), "--index-url", f"{nginx.url}{mirror.PYPI_PATH}/", "demo-pkg"],
                             capture_output=True, text=True)
        assert got.returncode == 0, got.stderr
        assert (tmp_path / "got" / wheel.name).read_bytes() == wheel.read_bytes()
        wheel.write_bytes(wheel.read_bytes() + b"tampered")  # the index's sha256 no longer holds
        (tmp_path / "got" / wheel.name).unlink()
        got = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--isolated", "-d",
                              str(tmp_path / "got"), "--index-url", f"{nginx.url}{mirror.PYPI_PATH}/", "demo-pkg"],
                             capture_output=True, text=True)
        assert got.returncode != 0 and "HASH" in got.stderr.upper(), got.stderr
    finally:
        nginx.stop()
