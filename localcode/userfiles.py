"""Files we share with their owners (rc files, settings JSON): read them all in one round
trip, compute the new text with a pure edit (localcode/textedit.py), and write only when it
changed, atomically, owned by the user."""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import FactBase, FileUploadCommand, operation
from pyinfra.api.exceptions import FactProcessError

from .facts import MARK, _sections
from . import helpers
from .shell import command, sh_quote

WRITE_HELPER = helpers.path("localcode-write-file")


@dataclass(frozen=True)
class FileState:
    text: str | None      # None: missing
    mode: str | None      # octal, e.g. "644"


class FilesFact(FactBase):
    """Contents and modes of several files, base64 so any byte survives: one round trip."""

    def default(self) -> dict:
        return {}

    def command(self, paths: tuple[str, ...]) -> str:
        parts = []
        for path in paths:
            p = sh_quote(path)
            parts.append(f"echo {MARK}{p}; if [ -f {p} ]; then (stat -c %a {p} 2>/dev/null || stat -f %Lp {p}); "
                         f"base64 < {p}; else echo missing; fi")
        return "; ".join(parts + ["true"])

    def process(self, output: list[str]) -> dict[str, FileState]:
        states: dict[str, FileState] = {}
        for path, lines in _sections(output).items():
            if not path:
                continue
            if lines == ["missing"]:
                states[path] = FileState(None, None)
                continue
            try:
                states[path] = FileState(base64.b64decode("".join(lines[1:])).decode(), lines[0].strip())
            except (ValueError, IndexError, UnicodeDecodeError) as exc:
                raise FactProcessError(f"cannot read {path} ({exc}); raw output:\n" + "\n".join(output)) from None
        return states


class DirectoriesFact(FactBase):
    """Which of the given directories exist."""

    def default(self) -> set:
        return set()

    def command(self, paths: tuple[str, ...]) -> str:
        return "; ".join([f"[ -d {sh_quote(p)} ] && echo {sh_quote(p)}" for p in paths] + ["true"])

    def process(self, output: list[str]) -> set[str]:
        return set(output)


@operation()
def write_text(path: str, text: str, before: str | None, uid: int, gid: int, mode: str, why: str):
    """Replace the file with `text` (atomically, owned uid:gid) unless it already holds it."""
    if before == text:
        host.noop(f"{path}: {why} already in place")
        return
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    staged = f"{helpers.STAGING}/{digest}"
    yield FileUploadCommand(io.StringIO(text), staged)
    yield command(WRITE_HELPER, staged, path, str(uid), str(gid), mode)
