"""The Ollama model store is a tree the `ollama` account controls, and the deploy runs as root.
Here the test plays that account (as after a compromise of the server): before a deploy that
syncs a model from the bundle it links directories of its store (the model's manifest
directory, the library, blobs, a manifest, a blob, the old staging path beside the store) to
root's directories. Every victim stays byte-, owner- and mode-identical with nothing created in
it, and the run either converges or fails the host naming the path and why. The staging
directory is root's alone: the account cannot reach it, and a host where it was tampered with
anyway is refused."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from localcode.bundle_index import load_index
from lab import fleet
from lab.inventory import lab_bundle_dir
from localcode.sources import MODEL_STAGING

from .conftest import REPO, Lab, lab_spec_file, q, start_lab
from .deploy_helpers import changed_ops, deploy, write_inventory

pytestmark = pytest.mark.lab
HOST = "airgap"
STORE = "/usr/share/ollama/.ollama/models"
MODEL = "gemma4:e4b"  # the air-gapped host's model
VICTIMS = ("/etc/cron.d", "/etc/profile.d", "/root/victim-dir")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    path = lab_spec_file(tmp_path_factory.mktemp("atkstore"), "atkstore", "10.237.0.0/16", hosts=[HOST])
    lab = start_lab(path)
    subprocess.run([str(REPO / ".venv/bin/python"), "-m", "lab", "bundle", "--spec", str(path)],
                   cwd=REPO, check=True, capture_output=True)
    lab.ssh(HOST, "mkdir -m 0700 /root/victim-dir && echo 'root only' > /root/victim-dir/keep")
    yield lab
    fleet.down(lab.spec.name)


@dataclass(frozen=True)
class Model:
    manifest: str  # the manifest's path in the store
    big_blob: str  # the largest blob's path in the store

    @property
    def manifest_dir(self) -> str:
        return self.manifest.rsplit("/", 1)[0]

    @property
    def library(self) -> str:
        return self.manifest_dir.rsplit("/", 1)[0]


@pytest.fixture(scope="module")
def model(lab: Lab) -> Model:
    entry = next(m for m in load_index(lab_bundle_dir(Path(lab.state.data["services"]["mirror_root"]))).models
                 if m.name == MODEL)
    big = max(entry.blobs, key=lambda b: b.size)
    return Model(f"{STORE}/{entry.manifest.removeprefix('models/')}", f"{STORE}/{big.path.removeprefix('models/')}")


def as_ollama(lab: Lab, script: str, check: bool = True):
    """A shell script run as the `ollama` account (its uid, gid and groups)."""
    return lab.ssh(HOST, f"setpriv --reuid=ollama --regid=ollama --init-groups sh -c {q(script)}", check=check)


def snapshot(lab: Lab) -> str:
    """Every victim entry: type, owner, mode, size, mtime, ctime, link target, and each file's
    sha256 (a file created and removed again still shows in its directory's times)."""
    paths = " ".join(VICTIMS)
    return lab.ssh(HOST, f"find {paths} -printf '%p %y %U:%G %m %s %T@ %C@ %l\\n' | sort; "
                         f"find {paths} -type f -exec sha256sum {{}} + | sort").stdout


def without_model(lab: Lab, model: Model) -> None:
    """The base model's manifest and largest blob gone, so the deploy syncs it."""
    lab.ssh(HOST, f"rm -rf {q(model.manifest)} {q(model.big_blob)} && systemctl restart ollama")


def converged(lab: Lab, tmp_path: Path) -> None:
    code, _, err = deploy(lab, write_inventory(tmp_path / "converge.py", lab), "--limit", HOST)
    assert code == 0, err


def attacked_run(lab: Lab, tmp_path: Path) -> tuple[int, str]:
    """The real deploy with every victim watched; returns (exit code, stderr)."""
    before = snapshot(lab)
    code, _, err = deploy(lab, write_inventory(tmp_path / "attacked.py", lab), "--limit", HOST)
    assert snapshot(lab) == before, err
    return code, err


def assert_failed_naming(code: int, err: str, *words: str) -> None:
    assert code != 0, err
    assert f"[{HOST}]" in err, err
    for word in words:
        assert word in err, err


def test_clean_run_syncs_the_model_as_its_owner(lab: Lab, model: Model, tmp_path):
    converged(lab, tmp_path)
    without_model(lab, model)
    code, results, err = deploy(lab, write_inventory(tmp_path / "clean.py", lab), "--limit", HOST)
    assert code == 0, err
    assert any(name.startswith("Base model") for name, _ in changed_ops(results))
    owners = lab.ssh(HOST, f"stat -c '%U:%G %a' {q(model.manifest)} {q(model.big_blob)} "
                           f"{q(model.manifest_dir)}").stdout.split("\n")
    assert owners[:3] == ["ollama:ollama 644", "ollama:ollama 644", "ollama:ollama 755"]
    assert lab.ssh(HOST, f"stat -c '%U %a %F' {MODEL_STAGING}").stdout.strip() == "root 700 directory"
    assert lab.ssh(HOST, f"find {MODEL_STAGING} -type f").stdout == ""  # installed files left it
    tags = lab.ssh(HOST, "curl -sf http://127.0.0.1:11434/api/tags").stdout
    assert f'"{MODEL}"' in tags
    code, results, err = deploy(lab, write_inventory(tmp_path / "again.py", lab), "--limit", HOST)
    assert code == 0 and changed_ops(results) == [], err


def test_the_owner_cannot_reach_the_staging_directory(lab: Lab, tmp_path):
    converged(lab, tmp_path)
    for script in (f"mkdir -p {MODEL_STAGING}/x", f"ln -s /etc/cron.d {MODEL_STAGING}/models",
                   "ln -s /etc/cron.d /var/cache/localcode/x", f"ls {MODEL_STAGING}"):
        result = as_ollama(lab, script, check=False)
        assert result.returncode != 0 and "Permission denied" in result.stderr, script


def test_model_directory_linked_to_cron_d(lab: Lab, model: Model, tmp_path):
    """The classic: the model's manifest directory points at /etc/cron.d, so a manifest written
    through it as root would be a cron job."""
    converged(lab, tmp_path)
    without_model(lab, model)
    as_ollama(lab, f"rm -rf {q(model.manifest_dir)} && mkdir -p {q(model.library)} && "
                   f"ln -s /etc/cron.d {q(model.manifest_dir)}")
    try:
        code, err = attacked_run(lab, tmp_path)
        assert_failed_naming(code, err, model.manifest_dir, "not installed as ollama", "permission denied",
                             "symbolic link to /etc/cron.d")
    finally:
        as_ollama(lab, f"rm -f {q(model.manifest_dir)}")
    converged(lab, tmp_path)


def test_library_linked_to_a_root_only_directory(lab: Lab, model: Model, tmp_path):
    converged(lab, tmp_path)
    without_model(lab, model)
    aside = f"{model.library}.aside"
    as_ollama(lab, f"mkdir -p {q(model.library)} && mv {q(model.library)} {q(aside)} && "
                   f"ln -s /root/victim-dir {q(model.library)}")
    try:
        code, err = attacked_run(lab, tmp_path)
        assert_failed_naming(code, err, model.manifest_dir, "not installed as ollama",
                             f"{model.library} is a symbolic link to /root/victim-dir")
    finally:
        as_ollama(lab, f"rm -f {q(model.library)} && mv {q(aside)} {q(model.library)}")
    converged(lab, tmp_path)


def test_blobs_linked_to_profile_d(lab: Lab, model: Model, tmp_path):
    converged(lab, tmp_path)
    without_model(lab, model)
    as_ollama(lab, f"mv {STORE}/blobs {STORE}/blobs.aside && ln -s /etc/profile.d {STORE}/blobs")
    try:
        code, err = attacked_run(lab, tmp_path)
        assert_failed_naming(code, err, f"{STORE}/blobs", "not installed as ollama",
                             f"{STORE}/blobs is a symbolic link to /etc/profile.d")
    finally:
        as_ollama(lab, f"rm -f {STORE}/blobs && mv {STORE}/blobs.aside {STORE}/blobs")
    converged(lab, tmp_path)


def test_manifest_and_blob_linked_to_root_files(lab: Lab, model: Model, tmp_path):
    """Links in place of the files themselves are replaced, never written through: the run
    converges and the store holds the verified files."""
    converged(lab, tmp_path)
    without_model(lab, model)
    victim_file = lab.ssh(HOST, "find /etc/cron.d -type f | head -1").stdout.strip()
    as_ollama(lab, f"mkdir -p {q(model.manifest_dir)} && ln -s {q(victim_file)} {q(model.manifest)} && "
                   f"ln -s /root/victim-dir/keep {q(model.big_blob)}")
    code, err = attacked_run(lab, tmp_path)
    assert code == 0, err
    kinds = lab.ssh(HOST, f"stat -c '%F %U' {q(model.manifest)} {q(model.big_blob)}").stdout.split("\n")
    assert kinds[:2] == ["regular file ollama", "regular file ollama"]


def test_old_staging_path_beside_the_store_is_ignored(lab: Lab, model: Model, tmp_path):
    old = f"{STORE.rsplit('/', 1)[0]}/localcode-incoming"
    converged(lab, tmp_path)
    without_model(lab, model)
    as_ollama(lab, f"rm -rf {q(old)} && ln -s /etc/cron.d {q(old)}")
    try:
        code, err = attacked_run(lab, tmp_path)
        assert code == 0, err
        assert lab.ssh(HOST, f"readlink {q(old)}").stdout.strip() == "/etc/cron.d"
    finally:
        as_ollama(lab, f"rm -f {q(old)}")


@pytest.mark.parametrize("tamper, why", [
    (f"rm -rf {MODEL_STAGING} && ln -s /root/victim-dir {MODEL_STAGING}", "it is a symbolic link (to /root/victim-dir)"),
    (f"chown ollama {MODEL_STAGING}", "it belongs to uid"),
    (f"chmod 0755 {MODEL_STAGING}", "its mode is drwxr-xr-x"),
    ("chown ollama /var/cache/localcode", "/var/cache/localcode belongs to uid"),
])
def test_a_tampered_staging_directory_is_refused(lab: Lab, model: Model, tmp_path, tamper: str, why: str):
    """A host where the staging directory (or a directory above it) was made reachable by
    another account: nothing is staged there, the host fails naming it."""
    converged(lab, tmp_path)
    without_model(lab, model)
    lab.ssh(HOST, tamper)
    try:
        code, err = attacked_run(lab, tmp_path)
        assert_failed_naming(code, err, f"refusing to stage in {MODEL_STAGING}", why)
        assert lab.ssh(HOST, f"test -e {q(model.manifest)}", check=False).returncode != 0
    finally:
        lab.ssh(HOST, f"chown root /var/cache/localcode; rm -f {MODEL_STAGING}; mkdir -p {MODEL_STAGING}; "
                      f"chown root:root {MODEL_STAGING}; chmod 0700 {MODEL_STAGING}")
    converged(lab, tmp_path)
