"""One source for every default: HostConfig. group_data/all.py is generated from it, the
sizing policy takes its values from it, the lab's Claude Code pin follows it, and `localcode
bundle` carries the releases an inventory's hosts pin (not HostConfig's) from the hosts' own
url templates."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lab.spec import Internet
from localcode.bundle import pinned_releases
from localcode.bundle_index import BundleIndex, claude_path, ollama_path
from localcode.settings import SECTIONS, HostConfig, group_data_defaults, validate_host_data
from localcode.sizing import Policy

from .plan_harness import REPO, linux_hardware

DEFAULT = HostConfig()


def run_group_data(text: str) -> dict:
    namespace: dict = {}
    exec(text, namespace)
    return {k: v for k, v in namespace.items() if not k.startswith("_")}


def test_committed_group_data_is_what_the_generator_prints():
    assert (REPO / "group_data/all.py").read_text() == group_data_defaults(), \
        "group_data/all.py differs from HostConfig: run `make defaults`"


def test_generated_group_data_round_trips_to_the_defaults():
    data = run_group_data(group_data_defaults())
    assert list(data) == list(HostConfig.model_fields)
    assert validate_host_data("h", data) == DEFAULT


def test_every_key_says_what_it_does_and_sections_open_at_keys():
    undocumented = [name for name, field in HostConfig.model_fields.items() if not field.description]
    assert undocumented == []
    assert set(SECTIONS) <= set(HostConfig.model_fields)
    text = group_data_defaults()
    assert all(len(line) <= 100 for line in text.splitlines())
    for name, field in HostConfig.model_fields.items():
        first_words = " ".join(field.description.split()[:4])
        assert first_words in " ".join(line.lstrip("# ") for line in text.splitlines()), name


def test_localcode_defaults_prints_the_generated_file():
    result = subprocess.run([sys.executable, "-m", "localcode.cli", "defaults"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout == group_data_defaults()


def test_the_sizing_policy_has_no_defaults_of_its_own():
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(Policy))
    policy = HostConfig(num_parallel=3, gpu_reserve_mib=100, min_context=131072).policy()
    assert (policy.num_parallel, policy.gpu_reserve_bytes, policy.min_context) == (3, 100 << 20, 131072)
    assert DEFAULT.policy().gpu_reserve_bytes == HostConfig.model_fields["gpu_reserve_mib"].default << 20


def test_the_lab_carries_the_pinned_claude_code_by_default():
    assert Internet().claude_code_version == DEFAULT.claude_version
    assert DEFAULT.ollama_version in Internet().ollama_versions


def test_without_hosts_the_releases_are_hostconfigs():
    [ollama] = pinned_releases({}, "ollama")
    [claude] = pinned_releases({}, "claude")
    assert (ollama.version, ollama.url_template, ollama.hosts) == \
        (DEFAULT.ollama_version, DEFAULT.ollama_url_template, ())
    assert (claude.version, claude.url_template) == (DEFAULT.claude_version, DEFAULT.claude_url_template)


def test_hosts_that_disagree_get_every_version_they_pin():
    mirror = "http://mirror.internal/ollama/v{version}/{file}"
    configs = {"new": HostConfig(),
               "old-b": HostConfig(ollama_version="0.21.0"),
               "old-a": HostConfig(ollama_version="0.21.0", ollama_url_template=mirror, ollama_source="bundle",
                                   bundle_dir="/srv/bundle")}
    releases = pinned_releases(configs, "ollama")
    assert [(r.version, r.hosts) for r in releases] == \
        [("0.21.0", ("old-a", "old-b")), (DEFAULT.ollama_version, ("new",))]
    # A bundle host's template still says where the internet copy is: the first host's is used.
    assert releases[0].url("sha256sum.txt") == "http://mirror.internal/ollama/v0.21.0/sha256sum.txt"
    assert releases[1].url("x") == DEFAULT.ollama_url_template.format(version=DEFAULT.ollama_version, file="x")
    [one] = pinned_releases(configs, "claude")
    assert one.hosts == ("new", "old-a", "old-b")


def test_explicit_version_and_base_replace_the_pins_and_templates():
    configs = {"a": HostConfig(ollama_version="0.21.0"), "b": HostConfig()}
    [release] = pinned_releases(configs, "ollama", version="0.14.3", base="http://m/ollama/")
    assert (release.version, release.hosts) == ("0.14.3", ("a", "b"))
    assert release.url("f") == "http://m/ollama/v0.14.3/f"
    [claude] = pinned_releases(configs, "claude", base="http://m/claude")
    assert claude.url("manifest.json") == f"http://m/claude/{DEFAULT.claude_version}/manifest.json"


def test_an_old_single_version_bundle_index_still_loads():
    index = BundleIndex.model_validate({"format": 1, "ollama_version": "0.30.0", "claude_version": None})
    assert (index.ollama_versions, index.claude_versions, index.format) == (("0.30.0",), (), 2)


class Upstream:
    """Ollama releases, Claude Code releases and a model registry over HTTP from one thread;
    the registry answers any model name with the same small manifest, whatever the sizing chose."""

    def __init__(self, ollama_versions: list[str], claude_version: str):
        self.files: dict[str, bytes] = {}
        for version in ollama_versions:
            release = f"ollama {version}".encode() * 1000
            self.files[f"/ollama/v{version}/ollama-linux-amd64.tar.zst"] = release
            self.files[f"/ollama/v{version}/sha256sum.txt"] = \
                f"{hashlib.sha256(release).hexdigest()}  ./ollama-linux-amd64.tar.zst\n".encode()
        binary = b"claude" * 1000
        self.files[f"/claude/{claude_version}/linux-x64/claude"] = binary
        self.files[f"/claude/{claude_version}/manifest.json"] = json.dumps({"platforms": {"linux-x64": {
            "checksum": hashlib.sha256(binary).hexdigest(), "size": len(binary)}}}).encode()
        blobs = [b'{"model_format":"gguf"}', b"GGUF" * 1000]
        self.blobs = {f"sha256:{hashlib.sha256(b).hexdigest()}": b for b in blobs}
        digests = list(self.blobs)
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": digests[0], "size": len(blobs[0])},
            "layers": [{"digest": digests[1], "size": len(blobs[1])}]}).encode()
        self.requested: list[str] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                upstream.requested.append(self.path)
                body = upstream.files.get(self.path)
                if re.fullmatch(r"/registry/v2/.+/manifests/[^/]+", self.path):
                    body = upstream.manifest
                elif match := re.fullmatch(r"/registry/v2/.+/blobs/(sha256:[0-9a-f]{64})", self.path):
                    body = upstream.blobs.get(match[1])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def upstream():
    up = Upstream(["0.21.0", DEFAULT.ollama_version], DEFAULT.claude_version)
    yield up
    up.server.shutdown()
    up.server.server_close()


def fleet(directory: Path, upstream: Upstream, groups: dict[str, dict]) -> Path:
    """An inventory of @fake hosts (one per group, named after it) whose releases come from the
    upstream, with each group's data in group_data/<group>.py beside it."""
    host = {"fake_delay": 0, "fake_delay_jitter": 0,
            "fake_responses": {"uname -s; uname -m": linux_hardware(64, (24576,))}}
    (directory / "group_data").mkdir(parents=True)
    templates = {"ollama_url_template": f"{upstream.url}/ollama/v{{version}}/{{file}}",
                 "claude_url_template": f"{upstream.url}/claude/{{version}}/{{file}}"}
    for group, data in groups.items():
        (directory / "group_data" / f"{group}.py").write_text(
            "".join(f"{key} = {value!r}\n" for key, value in {**templates, **data}.items()))
    inventory = directory / "fleet.py"
    inventory.write_text("".join(f"{group} = [('@fake/{group}', {host!r})]\n" for group in groups))
    return inventory


def bundle(upstream: Upstream, target: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYINFRA_FAKE_DELAY": "0", "PYINFRA_FAKE_DELAY_JITTER": "0"}
    return subprocess.run([sys.executable, "-m", "localcode.cli", "bundle", str(target), "--quiet",
                           "--registry", f"{upstream.url}/registry", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_bundle_carries_the_ollama_version_the_inventory_pins(upstream, tmp_path):
    """group_data pins 0.21.0 for the fleet's only host (which takes it from the bundle): the
    bundle carries 0.21.0, fetched from the host's own url template, and not HostConfig's pin."""
    inventory = fleet(tmp_path / "inv", upstream, {"pinned": {
        "ollama_version": "0.21.0", "ollama_source": "bundle", "claude_source": "bundle", "model_source": "bundle",
        "bundle_dir": "/srv/localcode-bundle"}})
    done = bundle(upstream, tmp_path / "b", "--inventory", str(inventory))
    assert done.returncode == 0, done.stderr
    index = BundleIndex.model_validate_json((tmp_path / "b/bundle.json").read_text())
    assert (index.ollama_versions, index.claude_versions) == (("0.21.0",), (DEFAULT.claude_version,))
    assert (tmp_path / "b" / ollama_path("0.21.0", "ollama-linux-amd64.tar.zst")).is_file()
    assert (tmp_path / "b" / claude_path(DEFAULT.claude_version, "linux-x64/claude")).is_file()
    assert not any(DEFAULT.ollama_version in path for path in upstream.requested)
    assert f"Ollama 0.21.0 for @fake/pinned from {upstream.url}/ollama/v{{version}}/{{file}}" in done.stdout
    assert f"Claude Code {DEFAULT.claude_version} for @fake/pinned" in done.stdout
    assert "bundle " in done.stdout and "Ollama 0.21.0, Claude Code" in done.stdout


def test_bundle_carries_every_version_when_hosts_disagree(upstream, tmp_path):
    inventory = fleet(tmp_path / "inv", upstream, {"pinned": {"ollama_version": "0.21.0"}, "current": {}})
    done = bundle(upstream, tmp_path / "b", "--inventory", str(inventory))
    assert done.returncode == 0, done.stderr
    index = BundleIndex.model_validate_json((tmp_path / "b/bundle.json").read_text())
    assert index.ollama_versions == ("0.21.0", DEFAULT.ollama_version)
    for version in index.ollama_versions:
        assert (tmp_path / "b" / ollama_path(version, "ollama-linux-amd64.tar.zst")).is_file()
    assert "Ollama 0.21.0 for @fake/pinned from" in done.stdout
    assert f"Ollama {DEFAULT.ollama_version} for @fake/current from" in done.stdout


def test_bundle_without_inventory_takes_hostconfigs_versions(upstream, tmp_path):
    done = bundle(upstream, tmp_path / "b", "--model", "team/tiny:1b",
                  "--ollama-url", f"{upstream.url}/ollama", "--claude-url", f"{upstream.url}/claude")
    assert done.returncode == 0, done.stderr
    index = BundleIndex.model_validate_json((tmp_path / "b/bundle.json").read_text())
    assert (index.ollama_versions, index.claude_versions) == ((DEFAULT.ollama_version,), (DEFAULT.claude_version,))
    assert f"Ollama {DEFAULT.ollama_version} for HostConfig's default" in done.stdout
