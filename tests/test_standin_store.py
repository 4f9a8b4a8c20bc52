"""The stand-in's on-disk store and its startup prune (server/images.go PruneLayers, per version)."""

from __future__ import annotations

import hashlib
import os
import stat
import time

import pytest

try:
    from tests.test_standin_harness import Standin, sideload
except ImportError:  # tests/ not a package
    from test_standin_harness import Standin, sideload

ORPHAN = b"an unreferenced blob"
ORPHAN_NAME = "sha256-" + hashlib.sha256(ORPHAN).hexdigest()
PARTIAL = ORPHAN_NAME.replace(hashlib.sha256(ORPHAN).hexdigest()[:8], "0" * 8) + "-partial"


def seed(root, old: bool):
    """A store with one model, an orphan blob, a partial download and an empty manifest dir."""
    models = root / "models"
    m = sideload(models, ["qwen2.5-coder:7b"])[0]
    blobs = models / "blobs"
    (blobs / ORPHAN_NAME).write_bytes(ORPHAN)
    (blobs / PARTIAL).write_bytes(b"half")
    (blobs / (PARTIAL + "-0")).write_text('{"N":0,"Offset":0,"Size":8,"Completed":4}')
    empty = models / "manifests" / "registry.ollama.ai" / "library" / "gone"
    empty.mkdir(parents=True)
    if old:
        t = time.time() - 2 * 3600
        for p in blobs.iterdir():
            os.utime(p, (t, t))
    return models, m


def names(models):
    return {p.name for p in (models / "blobs").iterdir()}


def started(version, models, env=None):
    s = Standin(version, models=models, env=env, name=f"prune-{version}")
    s.start()
    s.stop()
    return s


def test_prune_before_0_21_deletes_at_once(tmp_path):
    models, m = seed(tmp_path, old=False)
    started("0.14.3", models)
    left = names(models)
    assert ORPHAN_NAME not in left and PARTIAL not in left and PARTIAL + "-0" not in left
    assert {d.replace(":", "-") for d in m.blobs} <= left  # referenced blobs stay
    assert not (models / "manifests" / "registry.ollama.ai" / "library" / "gone").exists()


def test_prune_from_0_21_has_a_one_hour_grace(tmp_path):
    models, m = seed(tmp_path, old=False)
    started("0.21.0", models)
    assert {ORPHAN_NAME, PARTIAL, PARTIAL + "-0"} <= names(models)  # younger than an hour: kept
    t = time.time() - 2 * 3600
    for p in (models / "blobs").iterdir():
        os.utime(p, (t, t))
    started("0.21.0", models)
    left = names(models)
    assert not ({ORPHAN_NAME, PARTIAL, PARTIAL + "-0"} & left)
    assert {d.replace(":", "-") for d in m.blobs} <= left


def test_prune_from_0_30_too(tmp_path):
    models, _ = seed(tmp_path, old=True)
    started("0.30.0", models)
    assert ORPHAN_NAME not in names(models)


@pytest.mark.parametrize("value", ["1", "true"])
def test_noprune_keeps_everything(tmp_path, value):
    models, _ = seed(tmp_path, old=True)
    started("0.14.3", models, env={"OLLAMA_NOPRUNE": value})
    assert {ORPHAN_NAME, PARTIAL, PARTIAL + "-0"} <= names(models)


def test_corrupt_manifest_skips_prune(tmp_path):
    models, _ = seed(tmp_path, old=True)
    bad = models / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    started("0.14.3", models)
    assert ORPHAN_NAME in names(models)


def test_store_layout_and_modes(tmp_path):
    s = Standin("0.21.0", name="layout")
    s.start()
    try:
        s.post("/api/pull", {"model": "gpt-oss:20b", "stream": False})
        s.post("/api/create", {"model": "user/ctx:big", "from": "gpt-oss:20b", "parameters": {"num_ctx": 131072},
                               "stream": False})
        s.post("/api/copy", {"source": "gpt-oss:20b", "destination": "gpt-oss:mine"})
    finally:
        s.stop()
    root = s.models
    expected = {
        "manifests/registry.ollama.ai/library/gpt-oss/20b",
        "manifests/registry.ollama.ai/library/gpt-oss/mine",
        "manifests/registry.ollama.ai/user/ctx/big",
    }
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert expected <= files
    assert all(f.startswith("manifests/") or
               (f.startswith("blobs/sha256-") and len(f) == len("blobs/sha256-") + 64) for f in files)
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o755 if p.is_dir() else 0o644), (p, oct(mode))
    for f in files:
        if f.startswith("blobs/"):
            digest = f.split("sha256-")[1]
            assert hashlib.sha256((root / f).read_bytes()).hexdigest() == digest


def test_existing_blob_is_trusted_without_rehashing(tmp_path):
    models = tmp_path / "models"
    m = sideload(models, ["qwen2.5-coder:7b"])[0]
    big = m.layers[0]["digest"]
    path = models / "blobs" / big.replace(":", "-")
    path.write_bytes(b"corrupted but trusted")
    manifest = models / "manifests" / "registry.ollama.ai" / "library" / "qwen2.5-coder" / "7b"
    manifest.unlink()
    s = Standin("0.21.0", models=models, env={"OLLAMA_NOPRUNE": "1"}, name="trust")
    s.start()
    try:
        code, lines = s.ndjson("/api/pull", {"model": "qwen2.5-coder:7b"})
        assert lines[-1] == {"status": "success"}
        hit = [l for l in lines if l.get("digest") == big]
        assert hit == [{"status": f"pulling {big[7:19]}", "digest": big, "total": len(b"corrupted but trusted"),
                        "completed": len(b"corrupted but trusted")}]
        assert path.read_bytes() == b"corrupted but trusted"
    finally:
        s.stop()
