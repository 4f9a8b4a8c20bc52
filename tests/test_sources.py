"""Bundle pushes on the control machine: rsync's file list lives in a private directory from
mkdtemp (no fixed name another local account could pre-link), survives until the deploy has
executed, and is gone when the process exits."""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pyinfra.api.command import RsyncCommand

from localcode import sources

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """tempfile's directory for this test, and a fresh per-process list directory."""
    monkeypatch.setattr(sources.tempfile, "tempdir", str(tmp_path))
    sources._lists_dir.cache_clear()
    yield tmp_path
    sources._lists_dir.cache_clear()


def files_from(commands: list) -> Path:
    rsync = next(c for c in commands if isinstance(c, RsyncCommand))
    flag = next(f for f in rsync.flags if f.startswith("--files-from="))
    return Path(shlex.split(flag.removeprefix("--files-from="))[0])


def test_the_list_is_in_a_private_directory_and_holds_the_paths(private_tmp):
    listing = files_from(list(sources.push("/srv/bundle", ["models/b", "models/a"])))
    assert listing.read_text() == "models/a\nmodels/b\n"
    parent = listing.parent
    assert parent.parent == private_tmp and parent.name.startswith("localcode-rsync-")
    info = parent.lstat()
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()


def test_a_planted_link_at_the_old_fixed_name_is_never_written(private_tmp):
    victim = private_tmp / "victim"
    victim.write_text("root's file\n")
    old = private_tmp / "localcode-rsync"
    old.mkdir()
    paths = ["models/manifests/registry.ollama.ai/library/m/t", "models/blobs/sha256-00"]
    name = hashlib.sha256(("\n".join(sorted(paths)) + "\n").encode()).hexdigest()[:16]
    (old / f"{name}.txt").symlink_to(victim)
    listing = files_from(list(sources.push("/srv/bundle", paths)))
    assert victim.read_text() == "root's file\n"
    assert listing.parent != old and not listing.is_symlink()


def test_each_push_gets_its_own_file_in_one_directory(private_tmp):
    first = files_from(list(sources.push("/srv/bundle", ["a"])))
    second = files_from(list(sources.push("/srv/bundle", ["a"])))
    assert first != second and first.parent == second.parent
    assert first.read_text() == second.read_text() == "a\n"


def test_paths_reach_the_local_shell_quoted(private_tmp, monkeypatch):
    monkeypatch.setattr(sources.tempfile, "tempdir", str(private_tmp / "dir with space"))
    (private_tmp / "dir with space").mkdir()
    sources._lists_dir.cache_clear()
    rsync = next(c for c in sources.push("/srv/my bundle;x", ["a"]) if isinstance(c, RsyncCommand))
    assert shlex.split(rsync.src) == ["/srv/my bundle;x/"]
    assert files_from([rsync]).read_text() == "a\n"


def test_the_directory_is_removed_when_the_process_exits(tmp_path):
    code = ("import tempfile; tempfile.tempdir = " + repr(str(tmp_path)) + "\n"
            "from localcode import sources\n"
            "from pyinfra.api.command import RsyncCommand\n"
            "c = [c for c in sources.push('/srv/bundle', ['a']) if isinstance(c, RsyncCommand)][0]\n"
            "print([f for f in c.flags if f.startswith('--files-from=')][0].split('=', 1)[1])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    listing = Path(shlex.split(out.strip())[0])
    assert listing.parent.parent == tmp_path
    assert not listing.parent.exists()
    assert list(tmp_path.iterdir()) == []
