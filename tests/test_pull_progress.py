"""Pull progress an operator can read across a fleet: the pull helper against the stand-in
server pulling a 200 MB model from a real registry prints a start line, at most one line per
10% of the whole model (none per small layer) and an end line with size, time and rate."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

try:
    from tests.test_standin_harness import Standin, reg
except ImportError:  # tests/ not a package
    from test_standin_harness import Standin, reg

PULL = Path(__file__).resolve().parents[1] / "localcode/scripts/localcode-pull"
MODEL = "bench/big:1"
MIB = 200


@pytest.fixture(scope="module")
def registry_with_a_big_model():
    """A writable registry of our own holding one model: a config blob and a 200 MB layer."""
    work = Path(tempfile.mkdtemp(prefix="pull-progress-"))
    registry = reg.start_registry(work / "storage", reg.free_port(), work / "registry.log")
    client = reg.RegistryClient(registry.url)
    layer = os.urandom(MIB << 20)
    config = b'{"model_format":"gguf","model_family":"bench"}'
    blobs = [(f"sha256:{hashlib.sha256(b).hexdigest()}", b) for b in (config, layer)]
    for digest, data in blobs:
        assert client.push_blob("bench/big", digest, data)
    client.push_manifest("bench/big", "1", json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": blobs[0][0],
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": blobs[1][0], "size": len(layer)}],
    }).encode())
    yield registry
    reg.stop_registry(registry)


def test_a_big_pull_prints_bounded_progress(registry_with_a_big_model):
    server = Standin("0.30.0", name="progress", registry_url=registry_with_a_big_model.url).start()
    try:
        done = subprocess.run(["sh", str(PULL), server.url.removeprefix("http://"), MODEL, str((MIB << 20) + 47)],
                              capture_output=True, text=True, timeout=300)
    finally:
        server.stop()
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert lines[0] == f"{MODEL}: pulling 209 MB", lines
    assert re.fullmatch(rf"{re.escape(MODEL)}: pulled 209 MB in \d+s \(\d+\.\d MB/s\)", lines[-1]), lines
    middle = lines[1:-1]
    assert len(middle) <= 9 and all(re.fullmatch(rf"{re.escape(MODEL)}: [1-9]0% of 209 MB", m) for m in middle), lines
    assert [int(m.split()[1].rstrip("%")) for m in middle] == sorted({int(m.split()[1].rstrip("%")) for m in middle})


def test_an_unknown_model_fails_with_the_servers_error(registry_with_a_big_model):
    server = Standin("0.30.0", name="progress-missing", registry_url=registry_with_a_big_model.url).start()
    try:
        done = subprocess.run(["sh", str(PULL), server.url.removeprefix("http://"), "bench/none:1"],
                              capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    assert done.returncode != 0 and "bench/none:1" in done.stderr and "pulled" not in done.stdout
