#!/usr/bin/env python3
"""Build a release of the Ollama stand-in laid out like the real GitHub release.

    python3 lab/standin/build_release.py --version 0.21.0 --registry http://127.0.0.1:5000 --out DIR [--arch amd64]

writes DIR/v<version>/ollama-linux-<arch>.tar.zst and DIR/v<version>/sha256sum.txt
(`<sha256>  <file name>` for every tarball in that directory). The tarball holds

    bin/ollama                          #!/usr/bin/python3 launcher (0755)
    lib/ollama/ollama_standin/*.py      the stand-in package
    lib/ollama/ollama_standin/baked.json  {"version", "registry", "arch"}: what it pretends to be and
                                        the registry standing in for https://registry.ollama.ai

The output is byte-reproducible: fixed order, mtimes, owners and modes, and zstd at a fixed level
with one thread. Needs the `zstd` binary.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = HERE / "ollama_standin"
PACKAGE = "ollama_standin"
MTIME = 1_704_067_200  # 2024-01-01T00:00:00Z
ZSTD_LEVEL = 19

LAUNCHER = """#!/usr/bin/python3
# ollama stand-in launcher: runs the package in ../lib/ollama (stdlib only, no pip packages)
import os
import sys

sys.dont_write_bytecode = True
_lib = os.path.join(os.path.dirname(os.path.realpath(__file__)), os.pardir, "lib", "ollama")
sys.path.insert(0, os.path.normpath(_lib))

from ollama_standin.cli import main  # noqa: E402

sys.exit(main())
"""

_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


def tarball_name(arch: str) -> str:
    return f"ollama-linux-{arch}.tar.zst"


def package_files() -> list[tuple[str, bytes]]:
    """(path inside lib/ollama/ollama_standin, bytes) for every source file, sorted."""
    out = []
    for p in sorted(PACKAGE_DIR.rglob("*")):
        if not p.is_file() or "__pycache__" in p.parts or p.suffix in (".pyc", ".pyo"):
            continue
        rel = p.relative_to(PACKAGE_DIR).as_posix()
        if rel == "baked.json":
            continue
        out.append((rel, p.read_bytes()))
    return out


def baked_config(version: str, registry_url: str, arch: str) -> bytes:
    return (json.dumps({"version": version, "registry": registry_url, "arch": arch}, indent=2, sort_keys=True)
            + "\n").encode()


def _info(name: str, mode: int, size: int = 0, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.mtime = MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def tar_bytes(version: str, registry_url: str, arch: str) -> bytes:
    """The uncompressed tar (GNU format), deterministic."""
    buf = io.BytesIO()
    files = package_files() + [("baked.json", baked_config(version, registry_url, arch))]
    files.sort()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        tf.addfile(_info("bin", 0o755, kind=tarfile.DIRTYPE))
        launcher = LAUNCHER.encode()
        tf.addfile(_info("bin/ollama", 0o755, len(launcher)), io.BytesIO(launcher))
        tf.addfile(_info("lib", 0o755, kind=tarfile.DIRTYPE))
        tf.addfile(_info("lib/ollama", 0o755, kind=tarfile.DIRTYPE))
        base = f"lib/ollama/{PACKAGE}"
        tf.addfile(_info(base, 0o755, kind=tarfile.DIRTYPE))
        made = {base}
        for rel, data in files:
            parts = rel.split("/")[:-1]
            for i in range(len(parts)):
                d = base + "/" + "/".join(parts[: i + 1])
                if d not in made:
                    tf.addfile(_info(d, 0o755, kind=tarfile.DIRTYPE))
                    made.add(d)
            tf.addfile(_info(f"{base}/{rel}", 0o644, len(data)), io.BytesIO(data))
    return buf.getvalue()


def _zstd(data: bytes) -> bytes:
    exe = shutil.which("zstd")
    if not exe:
        raise RuntimeError("zstd is required (apt-get install zstd)")
    proc = subprocess.run([exe, "-q", f"-{ZSTD_LEVEL}", "-T1", "-c"], input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"zstd failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_sha256sums(version_dir: Path) -> Path:
    """sha256sum.txt over the release's tarballs, one `<hex>  <name>` line each, sorted by name."""
    lines = [f"{_sha256(p)}  {p.name}\n" for p in sorted(version_dir.glob("ollama-linux-*.tar.zst"))]
    out = version_dir / "sha256sum.txt"
    fd, tmp = tempfile.mkstemp(dir=version_dir, prefix=".sha256sum.")
    with os.fdopen(fd, "w") as f:
        f.write("".join(lines))
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    return out


def build_release(version: str, registry_url: str, out_dir, arch: str = "amd64") -> Path:
    """Write out_dir/v<version>/ollama-linux-<arch>.tar.zst (+ sha256sum.txt); returns the tarball path."""
    version = str(version).removeprefix("v")
    if not _VERSION_RE.match(version):
        raise ValueError(f"bad version {version!r} (expected e.g. 0.21.0)")
    if arch not in ("amd64", "arm64"):
        raise ValueError(f"bad arch {arch!r} (amd64 or arm64)")
    if not re.match(r"^https?://[^/\s]+", registry_url):
        raise ValueError(f"bad registry URL {registry_url!r}")
    vdir = Path(out_dir) / f"v{version}"
    vdir.mkdir(parents=True, exist_ok=True)
    data = _zstd(tar_bytes(version, registry_url.rstrip("/"), arch))
    target = vdir / tarball_name(arch)
    fd, tmp = tempfile.mkstemp(dir=vdir, prefix=".tarball.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    if arch == "amd64":
        # Like upstream: a ROCm overlay unpacked on top on AMD hosts (lib/ollama/rocm/).
        rocm = vdir / f"ollama-linux-{arch}-rocm.tar.zst"
        fd, tmp = tempfile.mkstemp(dir=vdir, prefix=".tarball.")
        with os.fdopen(fd, "wb") as f:
            f.write(_zstd(rocm_tar_bytes(version)))
        os.chmod(tmp, 0o644)
        os.replace(tmp, rocm)
    write_sha256sums(vdir)
    return target


def rocm_tar_bytes(version: str) -> bytes:
    """The ROCm overlay: only a marker library directory (the stand-in does no inference)."""
    buf = io.BytesIO()
    note = f"ollama stand-in {version}: ROCm overlay placeholder\n".encode()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for d in ("lib", "lib/ollama", "lib/ollama/rocm"):
            tf.addfile(_info(d, 0o755, kind=tarfile.DIRTYPE))
        tf.addfile(_info("lib/ollama/rocm/README", 0o644, len(note)), io.BytesIO(note))
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", required=True, help="Ollama version to pretend to be, e.g. 0.21.0")
    ap.add_argument("--registry", required=True, help="registry base URL standing in for registry.ollama.ai")
    ap.add_argument("--out", required=True, help="output directory (gets v<version>/)")
    ap.add_argument("--arch", default="amd64", choices=["amd64", "arm64"])
    a = ap.parse_args(argv)
    try:
        path = build_release(a.version, a.registry, a.out, a.arch)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"build_release: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
