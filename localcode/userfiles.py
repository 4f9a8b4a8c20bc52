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
from .shell import command, sh_quote

HELPER_DIR = "/usr/local/lib/localcode/bin"
WRITE_HELPER = f"{HELPER_DIR}/localcode-write-file"
STAGING = "/usr/local/lib/localcode/staging"  # root-only: never stage in a world-writable /tmp


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
    staged = f"{STAGING}/{digest}"
    yield command("mkdir", "-p", "-m", "0700", STAGING)
    yield FileUploadCommand(io.StringIO(text), staged)
    yield command(WRITE_HELPER, staged, path, str(uid), str(gid), mode)


@dataclass(frozen=True)
class FileMeta:
    sha256: str
    uid: int
    gid: int
    mode: str   # octal without leading zeros, e.g. "755"


@dataclass(frozen=True)
class ManagedFile:
    """A file we own entirely (helper scripts, unit files, Modelfiles), root-owned."""
    path: str
    content: bytes
    mode: str


class FileDigestsFact(FactBase):
    """sha256, owner and mode of several files in one round trip (None for a missing file), so
    an unchanged set of managed files costs one command, not three per file."""

    def default(self) -> dict:
        return {}

    def command(self, paths: tuple[str, ...]) -> str:
        parts = []
        for path in paths:
            p = sh_quote(path)
            parts.append(f"echo {MARK}{p}; if [ -f {p} ]; then (sha256sum {p} 2>/dev/null || shasum -a 256 {p}) "
                         f"| cut -d' ' -f1; (stat -c '%u %g %a' {p} 2>/dev/null || stat -f '%u %g %Lp' {p}); "
                         "else echo missing; fi")
        return "; ".join(parts + ["true"])

    def process(self, output: list[str]) -> dict[str, FileMeta | None]:
        metas: dict[str, FileMeta | None] = {}
        for path, lines in _sections(output).items():
            if not path:
                continue
            if lines == ["missing"]:
                metas[path] = None
                continue
            try:
                uid, gid, mode = lines[1].split()
                metas[path] = FileMeta(lines[0].strip(), int(uid), int(gid), mode)
            except (IndexError, ValueError):
                raise FactProcessError(f"cannot read {path}; raw output:\n" + "\n".join(output)) from None
        return metas


def observe(paths: list[str]) -> dict[str, FileMeta | None]:
    """The current state of all the files we manage on a host (one round trip)."""
    return host.get_fact(FileDigestsFact, paths=tuple(paths))


@operation()
def ensure_file(path: str, content: bytes, mode: str, observed: FileMeta | None):
    """Write a root-owned file we own entirely, atomically, unless it already has this content,
    owner and mode (as observed when the deploy started)."""
    digest = hashlib.sha256(content).hexdigest()
    if observed == FileMeta(digest, 0, 0, mode.lstrip("0")):
        host.noop(f"{path} is up to date")
        return
    yield command("mkdir", "-p", path.rsplit("/", 1)[0])
    yield FileUploadCommand(io.BytesIO(content), f"{path}.localcode-new")
    yield command("chown", "0:0", f"{path}.localcode-new")
    yield command("chmod", mode, f"{path}.localcode-new")
    yield command("mv", "-f", f"{path}.localcode-new", path)
