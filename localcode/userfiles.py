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
    """A file as found on the host (text None: missing). Bytes that are not UTF-8 survive the
    round trip (surrogateescape), so digests and rewrites stay exact."""

    text: str | None
    mode: str | None            # octal without leading zeros, e.g. "644"
    uid: int | None = None
    gid: int | None = None

    @property
    def sha256(self) -> str | None:
        return None if self.text is None else hashlib.sha256(self.text.encode("utf-8", "surrogateescape")).hexdigest()


MISSING = FileState(None, None)


class FilesFact(FactBase):
    """Contents, owner and mode of several files (base64, so any byte survives): one round trip."""

    def default(self) -> dict:
        return {}

    def command(self, paths: tuple[str, ...]) -> str:
        parts = []
        for path in paths:
            p = sh_quote(path)
            parts.append(f"echo {MARK}{p}; if [ -f {p} ]; then (stat -c '%u %g %a' {p} 2>/dev/null || "
                         f"stat -f '%u %g %Lp' {p}); base64 < {p}; else echo missing; fi")
        return "; ".join(parts + ["true"])

    def process(self, output: list[str]) -> dict[str, FileState]:
        states: dict[str, FileState] = {}
        for path, lines in _sections(output).items():
            if not path:
                continue
            if lines == ["missing"]:
                states[path] = MISSING
                continue
            try:
                uid, gid, mode = lines[0].split()
                data = base64.b64decode("".join(lines[1:]))
                states[path] = FileState(data.decode("utf-8", "surrogateescape"), mode, int(uid), int(gid))
            except (ValueError, IndexError) as exc:
                raise FactProcessError(f"cannot read {path} ({exc}); raw output:\n" + "\n".join(output)) from None
        return states


def observe(paths: list[str]) -> dict[str, FileState]:
    """The files we manage or edit on a host, as they are now (one round trip)."""
    return host.get_fact(FilesFact, paths=tuple(paths))


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
class ManagedFile:
    """A file we own entirely (helper scripts, unit files, Modelfiles), root-owned."""
    path: str
    content: bytes
    mode: str


@operation()
def ensure_file(path: str, content: bytes, mode: str, observed: FileState | None):
    """Write a root-owned file we own entirely, atomically, unless it already has this content,
    owner and mode (as observed when the deploy started)."""
    digest = hashlib.sha256(content).hexdigest()
    if observed is not None and (observed.sha256, observed.uid, observed.gid, observed.mode) == (
            digest, 0, 0, mode.lstrip("0")):
        host.noop(f"{path} is up to date")
        return
    yield command("mkdir", "-p", path.rsplit("/", 1)[0])
    yield FileUploadCommand(io.BytesIO(content), f"{path}.localcode-new")
    yield command("chown", "0:0", f"{path}.localcode-new")
    yield command("chmod", mode, f"{path}.localcode-new")
    yield command("mv", "-f", f"{path}.localcode-new", path)
