"""The lab's file helpers, one of each: caches and state are shared by concurrent `python -m lab`
runs and test sessions, so every write is atomic and every rebuild is done under a lock."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write through a synced temporary file beside path, so a reader (or a crash) sees the old
    content or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with removed_on_failure(tmp):
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)


@contextlib.contextmanager
def removed_on_failure(tmp: Path | str) -> Iterator[None]:
    """Remove the temporary file tmp when the block fails, so an interrupted write into place
    leaves nothing behind for the next run to trip over."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from path, or None when it is missing, unreadable or not an object: a stamp
    that cannot be trusted means "redo", never an error."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def sha256_file(path: Path) -> str:
    """The file's sha256 as hex, read in chunks (release tarballs are hundreds of MB)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@contextlib.contextmanager
def locked(path: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive flock on path (created, with its folder) for the block. wait=False raises
    BlockingIOError at once when another process holds it, for callers that fail fast."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
