"""Shared helpers for the Ollama stand-in tests (no tests here).

Expensive things are process-wide singletons, so every test module shares them:
* registry(): Debian's docker-registry on a free 127.0.0.1 port serving the seeded synthetic
  models (read-only), stopped at exit;
* install(version): the stand-in release for that version, built with build_release.py against that
  registry and unpacked (bin/ollama, lib/ollama/…).
Standin(...) runs `bin/ollama serve` on a free loopback port with its own HOME and OLLAMA_MODELS.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from lab import registry as reg
from lab.paths import STANDIN_DIR

sys.path.insert(0, str(STANDIN_DIR))
import build_release  # noqa: E402
import synthetic_models  # noqa: E402

WORK = Path(tempfile.mkdtemp(prefix="standin-tests-"))
atexit.register(shutil.rmtree, WORK, True)

_registry = None
_installs: dict[str, Path] = {}


def registry():
    """The shared read-only registry process (has .url)."""
    global _registry
    if _registry is None or _registry.poll() is not None:
        storage = reg.seeded_storage()
        _registry = reg.start_registry(storage, reg.free_port(), WORK / "registry.log", readonly=True)
        atexit.register(reg.stop_registry, _registry)
    return _registry


def install(version: str, registry_url: str | None = None) -> Path:
    """Unpacked stand-in release for version (baked registry = registry().url unless given)."""
    url = registry_url or registry().url
    key = f"{version}@{url}"
    if key not in _installs:
        out = WORK / "releases" / str(len(_installs))
        tarball = build_release.build_release(version, url, out)
        dest = WORK / "install" / str(len(_installs))
        dest.mkdir(parents=True)
        subprocess.run(["tar", "--zstd", "-xf", str(tarball), "-C", str(dest)], check=True)
        _installs[key] = dest
    return _installs[key]


def sideload(models_dir: Path, tags: list[str], aliases: bool = False) -> list:
    models = synthetic_models.build_all(tags)
    synthetic_models.write_store(models_dir, models, aliases)
    return models


def tool_path() -> str:
    """A PATH with only the tools the stand-in may use (ssh-keygen), so a GPU tool installed on the
    test machine (nvidia-smi, rocm-smi) cannot change what the stand-in reports."""
    d = WORK / "bin"
    if not d.is_dir():
        d.mkdir()
        for tool in ("ssh-keygen",):
            found = shutil.which(tool)
            if found:
                (d / tool).symlink_to(found)
    return str(d)


def base_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "PYTHON"))}
    env.update({"HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1", "PATH": tool_path()})
    return env


class Standin:
    def __init__(self, version: str = "0.21.0", *, models: Path | None = None, env: dict | None = None,
                 log: bool = True, name: str | None = None, registry_url: str | None = None):
        self.version = version
        self.root = Path(tempfile.mkdtemp(prefix=f"{name or 'srv'}-", dir=WORK))
        self.home = self.root / "home"
        self.home.mkdir()
        self.models = models if models is not None else self.root / "models"
        self.port = reg.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.root / "requests.jsonl" if log else None
        self.bin = install(version, registry_url) / "bin" / "ollama"
        self.env = base_env(self.home)
        self.env["OLLAMA_HOST"] = f"127.0.0.1:{self.port}"
        if self.models is not None:
            self.env["OLLAMA_MODELS"] = str(self.models)
        if self.log is not None:
            self.env["OLLAMA_STANDIN_LOG"] = str(self.log)
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.stderr_path = self.root / "serve.stderr"

    def start(self) -> "Standin":
        err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([str(self.bin), "serve"], env=self.env, stdout=err, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        err.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"stand-in exited {self.proc.returncode}: {self.stderr_path.read_text()}")
            try:
                if requests.get(self.url + "/api/version", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.03)
        raise RuntimeError("stand-in did not come up: " + self.stderr_path.read_text())

    def stop(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode if self.proc else None

    def cli(self, *args: str, env: dict | None = None, version: str | None = None, input: str | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        e = dict(self.env)
        e.update(env or {})
        exe = install(version) / "bin" / "ollama" if version else self.bin
        return subprocess.run([str(exe), *args], env=e, capture_output=True, text=True, timeout=60, input=input,
                              cwd=cwd)

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kw)

    def post(self, path: str, body=None, **kw) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=60, **kw)

    def delete(self, path: str, body=None) -> requests.Response:
        return requests.delete(self.url + path, json=body, timeout=30)

    def ndjson(self, path: str, body) -> tuple[int, list[dict]]:
        r = requests.post(self.url + path, json=body, timeout=60, stream=True)
        lines = [json.loads(line) for line in r.iter_lines() if line.strip()]
        return r.status_code, lines

    def requests_logged(self) -> list[dict]:
        if self.log is None or not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def blob(self, digest: str) -> Path:
        return self.models / "blobs" / digest.replace(":", "-")

    def manifest(self, name: str, tag: str) -> Path:
        return self.models / "manifests" / "registry.ollama.ai" / "library" / name / tag
