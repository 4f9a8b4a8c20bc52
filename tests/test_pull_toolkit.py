"""localcode-pull-toolkit with a tarball configuration: a download that does not match the
sha256 published beside it changes nothing (the configuration in use stays)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "localcode/scripts/localcode-pull-toolkit"


def tarball(path: Path, files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def test_a_tarball_that_fails_its_checksum_changes_nothing(tmp_path):
    home = tmp_path / "pull"
    (home / "config").mkdir(parents=True)
    (home / "config/.localcode-revision").write_text("old\n")
    (home / "config/inventory.py").write_text("in use\n")
    served = tmp_path / "served"
    served.mkdir()
    tarball(served / "team.tar.gz", {"inventory.py": "tampered\n"})
    (served / "team.tar.gz.sha256").write_text(hashlib.sha256(b"what the team published").hexdigest() + "\n")
    done = subprocess.run([str(SCRIPT), str(home), "/usr/bin/python3", "-", f"file://{served}/team.tar.gz", "main", "-"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "checksum mismatch" in done.stderr and "nothing was changed" in done.stderr
    assert (home / "config/inventory.py").read_text() == "in use\n"
    assert sorted(p.name for p in home.iterdir()) == ["config"]  # no download left behind, no venv made
