"""lab.registry: Debian's docker-registry, the push client and the seeded storage."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest
import requests
import yaml

from lab import paths
from lab import registry as reg

try:
    from tests.test_standin_harness import registry, synthetic_models
except ImportError:  # tests/ not a package
    from test_standin_harness import registry, synthetic_models


def test_binary_comes_from_the_debian_package_without_installing_it():
    b = reg.ensure_registry_binary()
    assert b.is_file() and os.access(b, os.X_OK)
    assert str(b).startswith(str(paths.CACHE_DIR / "docker-registry"))
    out = subprocess.run([str(b), "--version"], capture_output=True, text=True, timeout=30)
    assert "github.com/docker/distribution 2.8" in out.stdout
    assert reg.ensure_registry_binary() == b  # cached
    dpkg = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "docker-registry"], capture_output=True, text=True)
    assert "install ok installed" not in dpkg.stdout


def test_config_and_argv(tmp_path):
    cfg = reg.write_config(tmp_path / "c.yml", tmp_path / "store", 5123)
    d = yaml.safe_load(cfg.read_text())
    assert d["http"]["addr"] == "127.0.0.1:5123"
    assert d["storage"]["filesystem"]["rootdirectory"] == str((tmp_path / "store").resolve())
    assert d["log"]["accesslog"]["disabled"] is True and d["log"]["level"] == "error"
    assert "auth" not in d and d["storage"]["maintenance"]["readonly"]["enabled"] is False
    assert reg.write_config(tmp_path / "r.yml", tmp_path, "127.0.0.1:9", readonly=True).read_text().count(
        "enabled: true") == 2  # delete + readonly
    argv = reg.registry_argv(cfg)
    assert argv == [str(reg.ensure_registry_binary()), "serve", str(cfg)]


def test_seeded_storage_is_cached_and_keyed():
    s1 = reg.seeded_storage()
    assert s1.parent == paths.CACHE_DIR / "registry-storage"
    assert reg.seeded_storage() == s1
    assert reg.seeded_storage(["gpt-oss:20b"]) != s1
    assert (s1 / "docker" / "registry" / "v2" / "repositories" / "library" / "qwen3-coder").is_dir()


def test_every_model_is_served_byte_identical():
    url = registry().url
    client = reg.RegistryClient(url)
    for m in synthetic_models.build_all():
        for ref in m.references():
            r = client.get_manifest(m.repository, ref)
            assert r.status_code == 200, (m.tag, ref)
            assert r.content == m.manifest
            assert r.headers["Docker-Content-Digest"] == m.manifest_digest
            assert r.headers["Content-Type"] == reg.MANIFEST_V2
        for d in [l["digest"] for l in m.layers] + [m.config_digest]:
            r = requests.head(f"{url}/v2/{m.repository}/blobs/{d}", timeout=10)
            assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(m.blobs[d])
    # `gpt-oss:20b` → repository library/gpt-oss, tag 20b
    assert client.get_manifest("library/gpt-oss", "20b").status_code == 200
    assert client.get_manifest("library/gpt-oss", "nope").status_code == 404


def test_blob_range_requests():
    m = synthetic_models.build_all(["qwen3-coder:30b"])[0]
    d = m.layers[0]["digest"]
    data = m.blobs[d]
    client = reg.RegistryClient(registry().url)
    r = client.get_blob(m.repository, d)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == d[7:]
    assert r.headers.get("Docker-Content-Digest") == d
    r = client.get_blob(m.repository, d, (1000, 1999))
    assert r.status_code == 206 and r.content == data[1000:2000]
    assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"


def test_seeded_registry_is_read_only():
    r = requests.post(f"{registry().url}/v2/library/x/blobs/uploads/", timeout=10)
    assert r.status_code == 405


def test_push_client_round_trip(tmp_path):
    proc = reg.start_registry(tmp_path / "storage", reg.free_port(), tmp_path / "reg.log")
    try:
        client = reg.RegistryClient(proc.url)
        m = synthetic_models.build_all(["qwen2.5-coder:7b"])[0]
        refs = reg.push_model(client, m)
        assert refs == ["7b"]
        assert client.get_manifest("library/qwen2.5-coder", "7b").content == m.manifest
        # existing blobs are skipped (HEAD first)
        assert client.push_blob(m.repository, m.config_digest, m.blobs[m.config_digest]) is False
        other = b"fresh"
        assert client.push_blob(m.repository, "sha256:" + hashlib.sha256(other).hexdigest(), other) is True
        with pytest.raises(reg.RegistryError):
            client.push_manifest("library/broken", "1", json.dumps({
                "schemaVersion": 2, "mediaType": reg.MANIFEST_V2,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "digest": "sha256:" + "0" * 64, "size": 1}, "layers": []}).encode())
    finally:
        assert reg.stop_registry(proc) is not None
    assert proc.poll() is not None
