"""The stand-in's release tarball: layout like the real ollama-linux-<arch>.tar.zst, reproducible."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile

import pytest

try:
    from tests.test_standin_harness import STANDIN_DIR, build_release
except ImportError:  # tests/ not a package
    from test_standin_harness import STANDIN_DIR, build_release

REGISTRY = "http://127.0.0.1:5000"


def members(tarball) -> dict[str, tarfile.TarInfo]:
    raw = subprocess.run(["zstd", "-dc", str(tarball)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        return {m.name: m for m in tf.getmembers()}, raw


def test_cli_writes_tarball_and_sha256sum(tmp_path):
    out = subprocess.run([sys.executable, str(STANDIN_DIR / "build_release.py"), "--version", "0.14.3",
                          "--registry", REGISTRY, "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    vdir = tmp_path / "v0.14.3"
    tarball = vdir / "ollama-linux-amd64.tar.zst"
    assert out.stdout.strip() == str(tarball)
    rocm = vdir / "ollama-linux-amd64-rocm.tar.zst"  # the ROCm overlay, as upstream ships for amd64
    assert sorted(p.name for p in vdir.iterdir()) == [rocm.name, tarball.name, "sha256sum.txt"]
    sums = (vdir / "sha256sum.txt").read_text()
    assert sums == (f"{hashlib.sha256(rocm.read_bytes()).hexdigest()}  {rocm.name}\n"
                    f"{hashlib.sha256(tarball.read_bytes()).hexdigest()}  {tarball.name}\n")
    check = subprocess.run(["sha256sum", "-c", "sha256sum.txt"], cwd=vdir, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout == f"{rocm.name}: OK\n{tarball.name}: OK\n"
    listing = subprocess.run(["tar", "-I", "zstd", "-tf", str(rocm)], capture_output=True, text=True).stdout
    assert listing.split() == ["lib/", "lib/ollama/", "lib/ollama/rocm/", "lib/ollama/rocm/README"]
    assert tarball.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic


def test_tarball_layout(tmp_path):
    tarball = build_release.build_release("0.21.0", REGISTRY, tmp_path)
    ms, _ = members(tarball)
    assert list(ms)[:5] == ["bin", "bin/ollama", "lib", "lib/ollama", "lib/ollama/ollama_standin"]
    launcher = ms["bin/ollama"]
    assert launcher.isfile() and launcher.mode == 0o755
    for name, m in ms.items():
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "root", "root")
        assert m.mode == (0o755 if m.isdir() or name == "bin/ollama" else 0o644), name
        assert name == "bin" or name.startswith(("bin/", "lib"))
    files = {n for n, m in ms.items() if m.isfile()}
    assert {"lib/ollama/ollama_standin/__init__.py", "lib/ollama/ollama_standin/cli.py",
            "lib/ollama/ollama_standin/server.py", "lib/ollama/ollama_standin/baked.json"} <= files
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in ms)
    dest = tmp_path / "x"
    subprocess.run(["tar", "--zstd", "-xf", str(tarball), "-C", str(dest.mkdir() or dest)], check=True)
    text = (dest / "bin/ollama").read_text()
    assert text.startswith("#!/usr/bin/python3\n")
    assert json.loads((dest / "lib/ollama/ollama_standin/baked.json").read_text()) == \
        {"arch": "amd64", "registry": REGISTRY, "version": "0.21.0"}
    out = subprocess.run([str(dest / "bin/ollama"), "--version"], capture_output=True, text=True,
                         env={"OLLAMA_HOST": "127.0.0.1:9", "PATH": "/usr/bin:/bin"})
    assert out.stdout.splitlines()[-1] == "Warning: client version is 0.21.0"
    assert not list(dest.rglob("__pycache__"))  # running it wrote no bytecode into the install


def test_build_is_byte_reproducible(tmp_path):
    a = build_release.build_release("0.30.0", REGISTRY, tmp_path / "a")
    b = build_release.build_release("0.30.0", REGISTRY, tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    assert (a.parent / "sha256sum.txt").read_bytes() == (b.parent / "sha256sum.txt").read_bytes()
    c = build_release.build_release("0.30.0", REGISTRY + "1", tmp_path / "c")
    assert c.read_bytes() != a.read_bytes()  # the baked registry is part of the release


def test_both_arches_are_listed(tmp_path):
    build_release.build_release("0.13.5", REGISTRY, tmp_path)
    build_release.build_release("0.13.5", REGISTRY, tmp_path, arch="arm64")
    lines = (tmp_path / "v0.13.5" / "sha256sum.txt").read_text().splitlines()
    assert [l.split("  ")[1] for l in lines] == ["ollama-linux-amd64-rocm.tar.zst", "ollama-linux-amd64.tar.zst",
                                                  "ollama-linux-arm64.tar.zst"]
    assert all(re.fullmatch(r"[0-9a-f]{64}  ollama-linux-(amd64|amd64-rocm|arm64)\.tar\.zst", l) for l in lines)


@pytest.mark.parametrize("kw", [{"version": "latest"}, {"registry_url": "ftp://x"}, {"arch": "s390x"}])
def test_bad_arguments(tmp_path, kw):
    args = {"version": "0.21.0", "registry_url": REGISTRY, "out_dir": tmp_path, **kw}
    with pytest.raises(ValueError):
        build_release.build_release(**args)
