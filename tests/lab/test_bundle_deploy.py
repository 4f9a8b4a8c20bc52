"""Issue 7 on the lab: air-gapped and mirrored hosts converge from one bundle format, second
runs move no payload, interrupted transfers resume to verified files, tampering is caught."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from localcode.bundle_index import load_index
from lab import fleet
from lab.inventory import lab_bundle_dir
from localcode.sources import MODEL_STAGING

from .conftest import REPO, Lab, lab_spec_file, start_lab
from .deploy_helpers import changed_ops, count_egress, deploy, outbound_packets, write_inventory

pytestmark = pytest.mark.lab
STORE = "/usr/share/ollama/.ollama/models"


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    path = lab_spec_file(tmp_path_factory.mktemp("bundle"), "bndl", "10.221.0.0/16", hosts=["laptop", "airgap"])
    lab = start_lab(path)
    subprocess.run([str(REPO / ".venv/bin/python"), "-m", "lab", "bundle", "--spec", str(path)],
                   cwd=REPO, check=True, capture_output=True)
    yield lab
    fleet.down(lab.spec.name)


def descendants(pid: int) -> list[int]:
    """The processes below pid right now (from each /proc/<pid>/stat's parent), parents first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(0), [])
        found += kids
        todo += kids
    return found


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process this test started and everything it started (rsync, ssh), by PID:
    the tree is taken while it is alive, so no PID can have been reused; then its own process
    group, for a child forked meanwhile."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def bundle_dir(lab: Lab) -> Path:
    return lab_bundle_dir(Path(lab.state.data["services"]["mirror_root"]))


def received_bytes(lab: Lab, host: str) -> int:
    """Bytes the host received on its only link (the control side's veth transmit counter)."""
    veth = lab.state.data["hosts"][host]["veth"]
    return int(Path(f"/sys/class/net/{veth}/statistics/tx_bytes").read_text())


def test_airgapped_host_converges_from_the_bundle_and_stays_offline(lab: Lab, tmp_path):
    payload = sum(f.size for f in load_index(bundle_dir(lab)).files)
    before = received_bytes(lab, "airgap")
    code, _, err = deploy(lab, write_inventory(tmp_path / "inv.py", lab), "--limit", "airgap")
    assert code == 0, err
    first = received_bytes(lab, "airgap") - before
    assert first > payload / 2  # the releases and the model crossed the link

    user = lab.spec.hosts[-1].users[0].name
    count_egress(lab, "airgap")
    out = lab.ssh("airgap", "cd ~ && env | grep -c ANTHROPIC_; CLAUDE_CODE_MAX_RETRIES=0 claude -p hi "
                            "--output-format json 2>/dev/null", user=user, check=False).stdout
    count, _, body = out.partition("\n")
    assert count.strip() == "0" and json.loads(body)["is_error"] is False
    assert outbound_packets(lab, "airgap") == 0  # claude -p tried no other host, not even DNS
    lab.ssh("airgap", f"curl -s --max-time 1 http://{lab.control_address('airgap')}:9/", check=False)
    assert outbound_packets(lab, "airgap") > 0  # the counter does see an attempt
    ns = lab.state.data["hosts"]["airgap"]["netns"]
    subprocess.run(["ip", "-n", ns, "route", "del", "default"], check=True)

    before = received_bytes(lab, "airgap")
    code, results, err = deploy(lab, write_inventory(tmp_path / "again.py", lab), "--limit", "airgap")
    assert code == 0 and changed_ops(results) == [], err
    second = received_bytes(lab, "airgap") - before
    print(f"\nair-gapped host received {first} bytes on the first run, {second} on the second (SSH only)")
    assert second < 256 * 1024 < first


def deployed_airgap(lab: Lab, tmp_path) -> None:
    """The air-gapped host converged (a no-op when an earlier test did it)."""
    code, _, err = deploy(lab, write_inventory(tmp_path / "converge.py", lab), "--limit", "airgap")
    assert code == 0, err


def mirror_data(lab: Lab) -> dict:
    return {"laptop": {"ollama_source": "mirror", "claude_source": "mirror", "model_source": "mirror",
                       "mirror_url": f"{lab.spec.internet.mirror_url}/bundle"}}


def test_online_host_converges_from_the_mirror(lab: Lab, tmp_path):
    inventory = write_inventory(tmp_path / "mirror.py", lab, mirror_data(lab))
    code, _, err = deploy(lab, inventory, "--limit", "laptop")
    assert code == 0, err
    tags = json.loads(lab.ssh("laptop", "curl -sf http://127.0.0.1:11434/api/tags").stdout)["models"]
    assert any(m["name"].startswith("localcode/") for m in tags)
    before = received_bytes(lab, "laptop")
    code, results, err = deploy(lab, inventory, "--limit", "laptop")
    assert code == 0 and changed_ops(results) == [], err
    assert received_bytes(lab, "laptop") - before < 256 * 1024


def test_killed_transfer_resumes_to_a_verified_blob(lab: Lab, tmp_path):
    """A big blob is pushed to the air-gapped host; rsync is killed mid-blob; the re-run completes
    it from the partial file, and the store only ever holds the verified blob."""
    deployed_airgap(lab, tmp_path)
    index = load_index(bundle_dir(lab))
    model = next(m for m in index.models if m.name == "gemma4:e4b")  # the air-gapped host's model
    big = max(model.blobs, key=lambda b: b.size)
    lab.ssh("airgap", f"systemctl stop ollama && rm -rf {STORE}/blobs/{Path(big.path).name} "
                      f"{STORE}/{model.manifest.removeprefix('models/')} && systemctl start ollama")
    throttle = tmp_path / "bin"
    throttle.mkdir()
    (throttle / "rsync").write_text(f"#!/bin/sh\nexec {shutil.which('rsync')} --bwlimit=200 \"$@\"\n")
    (throttle / "rsync").chmod(0o755)
    env = {**lab.pyinfra_env(), "PATH": f"{throttle}:{os.environ['PATH']}"}
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen([str(REPO / ".venv/bin/pyinfra"), "-y", str(write_inventory(tmp_path / "k.py", lab)),
                             "deploy.py", "--limit", "airgap"], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    incoming = f"{MODEL_STAGING}/models/blobs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        sizes = lab.ssh("airgap", f"find {incoming} -type f -printf '%s\\n' 2>/dev/null; true").stdout.split()
        if any(int(s) > 0 for s in sizes):
            break
        time.sleep(0.2)
    assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
    kill_tree(proc)
    partial = lab.ssh("airgap", f"find {incoming} -type f 2>/dev/null; true").stdout.split()
    assert partial, "the kill happened before any byte arrived"
    assert lab.ssh("airgap", f"test -e {STORE}/blobs/{Path(big.path).name}", check=False).returncode != 0

    code, _, err = deploy(lab, write_inventory(tmp_path / "resume.py", lab), "--limit", "airgap")
    assert code == 0, err
    digest = lab.ssh("airgap", f"sha256sum {STORE}/blobs/{Path(big.path).name}").stdout.split()[0]
    assert digest == big.sha256
    leftovers = lab.ssh("airgap", f"find {STORE} -name '*partial*' -o -name '.*' -type f; true").stdout.strip()
    assert leftovers == ""


def test_tampered_blob_is_rejected(lab: Lab, tmp_path):
    deployed_airgap(lab, tmp_path)
    tampered = tmp_path / "bundle"
    shutil.copytree(bundle_dir(lab), tampered, copy_function=os.link)
    index = load_index(tampered)
    model = next(m for m in index.models if m.name == "gemma4:e4b")
    blob = tampered / max(model.blobs, key=lambda b: b.size).path
    data = bytearray(blob.read_bytes())
    data[100] ^= 0x01
    blob.unlink()
    blob.write_bytes(bytes(data))  # a new file: the hard-linked original stays intact
    lab.ssh("airgap", f"systemctl stop ollama && rm -rf {STORE}/blobs/{blob.name} "
                      f"{STORE}/{model.manifest.removeprefix('models/')} && systemctl start ollama")
    code, results, err = deploy(lab, write_inventory(tmp_path / "t.py", lab, {"airgap": {"bundle_dir": str(tampered)}}),
                                "--limit", "airgap")
    assert code != 0, err
    assert "rejected (tampered or corrupt)" in err, err
    assert lab.ssh("airgap", f"test -e {STORE}/blobs/{blob.name}", check=False).returncode != 0


def test_interrupted_bundle_build_resumes(lab: Lab, tmp_path):
    services = lab.state.data["services"]
    mirror = f"http://127.0.0.1:{services['mirror_tcp_port']}"
    argv = [str(REPO / ".venv/bin/localcode"), "bundle", str(tmp_path / "b"), "--model", "gpt-oss:20b",
            "--ollama-url", f"{mirror}/ollama/releases/download", "--claude-url", f"{mirror}/claude-code-releases",
            "--registry", f"http://127.0.0.1:{services['registry_tcp_port']}", "--quiet"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    claude = tmp_path / "b/claude-code-releases" / lab.spec.internet.claude_code_version / "linux-x64/claude.partial"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (claude.exists() and claude.stat().st_size > 1 << 20):
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert claude.exists(), "the build finished before it could be interrupted"
    kept = claude.stat().st_size
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=True).stdout
    total, fetched = (float(x.split()[0]) for x in done.split("; ")[1].split(", "))
    assert fetched < total and fetched <= total - kept / 1e6 + 0.1, done
    assert not claude.exists() and claude.with_suffix("").exists()
