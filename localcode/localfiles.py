"""Files the `localcode` command writes on the machine it runs on (the run summary, a bundle's
wheel index, a pull-mode host's status): whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str, mode: int = 0o644) -> Path:
    """Through a fresh name beside `path` (mkstemp: never an existing file or link), then one
    rename: a reader, or a crash, sees the old content or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
