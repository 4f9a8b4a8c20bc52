"""The lab's model registry: Debian's docker-registry (distribution 2.8) serving the synthetic models.

The Ollama stand-in pulls from it as if it were https://registry.ollama.ai (the URL is baked into
the stand-in's release, see lab/standin/build_release.py).

* ensure_registry_binary() gets /usr/bin/docker-registry out of the Debian package without
  installing it (`apt-get download` + `dpkg-deb -x` into CACHE_DIR/docker-registry/<version>/);
  installing would start a daemon on :5000 on machines without systemd.
* write_config() / registry_argv() / start_registry() run it on 127.0.0.1:<port> with filesystem
  storage, no auth, quiet logs.
* RegistryClient pushes over the OCI distribution protocol (POST upload → PUT ?digest=, HEAD to
  skip existing blobs, PUT manifest with the Docker v2 content type).
* seeded_storage() returns a storage directory under CACHE_DIR holding every synthetic model as
  library/<model>:<tag> (+ alias tags), built once per (generator source, model list).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

from lab import paths
from lab.files import locked

PACKAGE = "docker-registry"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
STORAGE_FORMAT = 1  # bump when the seeding code (not the generator) changes what is stored
HTTP_SECRET = "localcode-lab-registry"  # fixed: the registry warns (and randomises) without one


class RegistryError(RuntimeError):
    pass


# --------------------------------------------------------------------------- the binary


def _cache_root() -> Path:
    return Path(paths.CACHE_DIR) / "docker-registry"


@functools.lru_cache(maxsize=1)
def _candidate_version() -> str | None:
    """The version apt would download (None if apt has no lists for it); asked once per process."""
    try:
        out = subprocess.run(["apt-cache", "show", "--no-all-versions", PACKAGE], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"^Version:\s*(\S+)", out.stdout, re.M)
    return m.group(1) if out.returncode == 0 and m else None


def _safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+~-]", "_", version)


def _binary_in(entry: Path) -> Path:
    return entry / "usr" / "bin" / "docker-registry"


def _apt_download(workdir: Path) -> Path:
    cmd = ["apt-get", "download", "-o", "APT::Sandbox::User=root", PACKAGE]
    out = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        upd = subprocess.run(["apt-get", "update"], capture_output=True, text=True, timeout=600)
        if upd.returncode != 0:
            raise RegistryError(f"apt-get download {PACKAGE} failed ({out.stderr.strip()}) and apt-get update "
                                f"failed too:\n{upd.stderr[-2000:]}")
        out = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RegistryError(f"apt-get download {PACKAGE} failed:\n{out.stderr[-2000:]}")
    debs = sorted(workdir.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise RegistryError(f"apt-get download {PACKAGE} wrote no .deb in {workdir}")
    return debs[0]


def _deb_version(deb: Path) -> str:
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0 or not out.stdout.strip():
        raise RegistryError(f"dpkg-deb -f {deb} Version failed: {out.stderr.strip()}")
    return out.stdout.strip()


def ensure_registry_binary() -> Path:
    """Path to a cached docker-registry binary (CACHE_DIR/docker-registry/<version>/usr/bin/...)."""
    root = _cache_root()
    version = _candidate_version()
    if version:
        b = _binary_in(root / _safe(version))
        if b.is_file():
            return b
    elif root.is_dir():  # apt has no lists: take any cached version
        cached = sorted(p for p in root.iterdir() if p.is_dir() and _binary_in(p).is_file())
        if cached:
            return _binary_in(cached[-1])
    with locked(root / ".lock"):
        if version and _binary_in(root / _safe(version)).is_file():
            return _binary_in(root / _safe(version))
        work = Path(tempfile.mkdtemp(dir=root, prefix=".fetch-"))
        try:
            deb = _apt_download(work)
            got = _deb_version(deb)
            entry = root / _safe(got)
            if not _binary_in(entry).is_file():
                tree = work / "tree"
                out = subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], capture_output=True, text=True,
                                     timeout=300)
                if out.returncode != 0 or not _binary_in(tree).is_file():
                    raise RegistryError(f"dpkg-deb -x {deb.name} failed: {out.stderr.strip()}")
                shutil.copy2(deb, tree / deb.name)
                if entry.exists():
                    shutil.rmtree(entry)
                os.rename(tree, entry)
            return _binary_in(entry)
        finally:
            shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- config / process


def _addr(addr) -> str:
    if isinstance(addr, int):
        return f"127.0.0.1:{addr}"
    return str(addr)


def write_config(path, storage_dir, addr, *, readonly: bool = False) -> Path:
    """A registry config: filesystem storage at storage_dir, http.addr = addr ("127.0.0.1:5000" or a
    port number), no auth, only errors logged, no access log. readonly=True refuses pushes (use it
    when serving a cached seeded storage)."""
    cfg = {
        "version": 0.1,
        "log": {"level": "error", "formatter": "text", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(Path(storage_dir).resolve())},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}, "readonly": {"enabled": bool(readonly)}},
        },
        "http": {"addr": _addr(addr), "secret": HTTP_SECRET},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=True))
    return path


def registry_argv(config_path) -> list[str]:
    """The command that serves a registry with this config (the lab records the PID itself)."""
    return [str(ensure_registry_binary()), "serve", str(config_path)]


def wait_ready(url: str, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RegistryError(f"registry exited with {proc.returncode} before it answered on {url}")
        try:
            r = requests.get(url.rstrip("/") + "/v2/", timeout=2)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except requests.RequestException as e:
            last = str(e)
        time.sleep(0.05)
    raise RegistryError(f"registry at {url} not ready after {timeout}s: {last}")


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a service the lab starts (the mirror and the registry)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(storage, port: int, log_path, *, readonly: bool = False) -> subprocess.Popen:
    """Start docker-registry on 127.0.0.1:port over storage (stdout+stderr → log_path), wait until
    /v2/ answers. The config is written next to the log. Stop it with stop_registry(proc)."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cfg = write_config(log_path.with_name(log_path.name + ".config.yml"), storage, port, readonly=readonly)
    log = open(log_path, "ab")
    try:
        proc = subprocess.Popen(registry_argv(cfg), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    finally:
        log.close()
    proc.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    try:
        wait_ready(proc.url, proc=proc)  # type: ignore[attr-defined]
    except RegistryError:
        stop_registry(proc)
        raise
    return proc


def stop_registry(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """SIGTERM (then SIGKILL) the registry started by start_registry; returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


# --------------------------------------------------------------------------- push / pull client


class RegistryClient:
    """Minimal OCI distribution client (no auth)."""

    def __init__(self, base_url: str, session: requests.Session | None = None, timeout: float = 60):
        self.base = base_url.rstrip("/")
        self.s = session or requests.Session()
        self.timeout = timeout

    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self.s.head(f"{self.base}/v2/{repo}/blobs/{digest}", timeout=self.timeout)
        if r.status_code == 200:
            return True
        if r.status_code == 404:
            return False
        raise RegistryError(f"HEAD blob {repo}@{digest}: HTTP {r.status_code}")

    def push_blob(self, repo: str, digest: str, data: bytes) -> bool:
        """Upload unless present; returns True if uploaded."""
        if self.blob_exists(repo, digest):
            return False
        r = self.s.post(f"{self.base}/v2/{repo}/blobs/uploads/", timeout=self.timeout)
        if r.status_code != 202 or "Location" not in r.headers:
            raise RegistryError(f"POST upload {repo}: HTTP {r.status_code} {r.text[:500]}")
        loc = requests.compat.urljoin(self.base + "/", r.headers["Location"])
        sep = "&" if "?" in loc else "?"
        r = self.s.put(f"{loc}{sep}digest={digest}", data=data,
                       headers={"Content-Type": "application/octet-stream"}, timeout=self.timeout)
        if r.status_code != 201:
            raise RegistryError(f"PUT blob {repo}@{digest}: HTTP {r.status_code} {r.text[:500]}")
        return True

    def push_manifest(self, repo: str, reference: str, manifest: bytes, media_type: str = MANIFEST_V2) -> str:
        r = self.s.put(f"{self.base}/v2/{repo}/manifests/{reference}", data=manifest,
                       headers={"Content-Type": media_type}, timeout=self.timeout)
        if r.status_code != 201:
            raise RegistryError(f"PUT manifest {repo}:{reference}: HTTP {r.status_code} {r.text[:500]}")
        want = "sha256:" + hashlib.sha256(manifest).hexdigest()
        got = r.headers.get("Docker-Content-Digest", "")
        if got and got != want:
            raise RegistryError(f"manifest {repo}:{reference} stored as {got}, expected {want}")
        return want

    def get_manifest(self, repo: str, reference: str) -> requests.Response:
        return self.s.get(f"{self.base}/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_V2},
                          timeout=self.timeout)

    def get_blob(self, repo: str, digest: str, byte_range: tuple[int, int] | None = None) -> requests.Response:
        headers = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
        return self.s.get(f"{self.base}/v2/{repo}/blobs/{digest}", headers=headers, timeout=self.timeout)


def push_model(client: RegistryClient, model, with_aliases: bool = True) -> list[str]:
    """Push one synthetic_models.SyntheticModel; returns the references pushed."""
    repo = model.repository
    for layer in model.layers:
        client.push_blob(repo, layer["digest"], model.blobs[layer["digest"]])
    client.push_blob(repo, model.config_digest, model.blobs[model.config_digest])
    refs = model.references() if with_aliases else [model.reference]
    for ref in refs:
        client.push_manifest(repo, ref, model.manifest)
    return refs


# --------------------------------------------------------------------------- seeding


def _synthetic_module():
    """lab/standin/synthetic_models.py, imported by path (it is not a package of localcode)."""
    path = Path(paths.STANDIN_DIR) / "synthetic_models.py"
    name = "localcode_lab_synthetic_models"
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RegistryError(f"cannot import {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def generator_hash() -> str:
    """Hash of what decides the synthetic models' bytes: the generator and the stand-in modules it uses."""
    h = hashlib.sha256(f"storage-format {STORAGE_FORMAT}\n".encode())
    standin = Path(paths.STANDIN_DIR)
    for rel in ("synthetic_models.py", "ollama_standin/gguf.py", "ollama_standin/goformat.py"):
        p = standin / rel
        h.update(rel.encode() + b"\0" + (p.read_bytes() if p.is_file() else b"") + b"\0")
    return h.hexdigest()


def storage_key(models: list[str] | None) -> str:
    mod = _synthetic_module()
    tags = sorted(mod.model_tags() if models is None else {mod.spec_for(t)["tag"] for t in models})
    h = hashlib.sha256((generator_hash() + "\n" + "\n".join(tags)).encode())
    return h.hexdigest()[:16]


def seeded_storage(models: list[str] | None = None) -> Path:
    """A registry storage dir (CACHE_DIR/registry-storage/<key>) holding the synthetic models as
    library/<model>:<tag> plus their alias tags. Built once (temporary registry, push, stop, rename);
    treat it as read-only (serve it with write_config(..., readonly=True))."""
    mod = _synthetic_module()
    key = storage_key(models)
    base = Path(paths.CACHE_DIR) / "registry-storage"
    dest = base / key
    if dest.is_dir():
        return dest
    with locked(base / ".lock"):
        if dest.is_dir():
            return dest
        work = Path(tempfile.mkdtemp(dir=base, prefix=f".build-{key}-"))
        storage = work / "storage"
        storage.mkdir()
        proc = start_registry(storage, free_port(), work / "registry.log")
        try:
            client = RegistryClient(proc.url)  # type: ignore[attr-defined]
            for m in mod.build_all(models):
                push_model(client, m)
        except Exception:
            stop_registry(proc)
            shutil.rmtree(work, ignore_errors=True)
            raise
        stop_registry(proc)
        try:
            os.rename(storage, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return dest


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="seed / serve the lab's model registry")
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--serve", action="store_true", help="serve the seeded storage (read-only) until ^C")
    ap.add_argument("models", nargs="*")
    a = ap.parse_args(argv)
    storage = seeded_storage(a.models or None)
    print(storage)
    if a.serve:
        log = Path(tempfile.mkdtemp(prefix="registry-")) / "registry.log"
        proc = start_registry(storage, a.port, log, readonly=True)
        print(f"serving on {proc.url} (log {log})")  # type: ignore[attr-defined]
        try:
            proc.wait()
        except KeyboardInterrupt:
            stop_registry(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
