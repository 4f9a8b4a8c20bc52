"""Files we share with their owners (rc files, settings JSON) and files we own entirely.

Files in a tree another account controls (a developer's home or project) are read and written
*as that account* (runuser on Linux, sudo on macOS), so the kernel's permissions apply: a link
or a swapped directory planted there can only lead where the account could already write, and
never to a file it cannot read. Reads come back in one round trip; the new text is computed by
a pure edit (localcode/textedit.py) and written only when it changed, atomically (a temporary
file from mktemp beside the destination, renamed over it)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import FactBase, FileUploadCommand, operation
from pyinfra.api.exceptions import FactProcessError

from .facts import MARK, sections
from .shell import as_account, command, sh_quote

HELPER_DIR = "/usr/local/lib/localcode/bin"
WRITE_HELPER = f"{HELPER_DIR}/localcode-write-file"
STAGING = "/usr/local/lib/localcode/staging"  # root-only: never stage in a world-writable /tmp
MAX_BYTES = 1 << 20  # rc and settings files are small; a larger one is not ours to load into memory

# Run by `sh -c` as the file's account with the paths as arguments (no data in the script): per
# path a marker line (`file:PATH`), then `missing`, `other` (not a regular file), `unreadable`, `large SIZE`,
# or `file UID GID MODE SIZE` and the base64 content. A symbolic link is reported first as
# `link UID TARGET_BASE64` (its owner and fully resolved target), then what the target is.
READ_SCRIPT = r"""
meta() { stat -c '%u %g %a %s' -- "$1" 2>/dev/null || stat -f '%u %g %Lp %z' -- "$1" 2>/dev/null; }
# A file swapped for a fifo between the check and the read must not hang the run: where
# timeout(1) exists, the open happens inside it.
if command -v timeout >/dev/null 2>&1; then content() { timeout 10 base64 -- "$1"; }
else content() { base64 < "$1"; }; fi
for p do
  echo "MARKfile:$p"
  if [ -L "$p" ]; then
    t=$(readlink -f -- "$p" 2>/dev/null || realpath -- "$p" 2>/dev/null) || t=
    m=$(meta "$p") || m=
    echo "link ${m%% *} $(printf %s "$t" | base64 | tr -d '\n')"
    [ -n "$t" ] || { echo missing; continue; }
    p=$t
  fi
  if [ ! -e "$p" ] && [ ! -L "$p" ]; then echo missing
  elif [ -L "$p" ] || [ ! -f "$p" ]; then echo other
  elif ! m=$(meta "$p"); then echo unreadable
  elif [ "${m##* }" -gt MAX_BYTES ]; then echo "large ${m##* }"
  elif b=$(content "$p" 2>/dev/null); then echo "file $m"; printf '%s\n' "$b"
  else echo unreadable
  fi
done
""".replace("MAX_BYTES", str(MAX_BYTES)).replace("MARK", MARK)


@dataclass(frozen=True)
class Link:
    """A symbolic link where we expected a file: its owner and its fully resolved target."""

    uid: int | None
    target: str


@dataclass(frozen=True)
class FileState:
    """A file as found on the host (text None: missing or not usable; `problem` says why not).
    Bytes that are not UTF-8 survive the round trip (surrogateescape), so digests and rewrites
    stay exact. Behind a link, text, owner and mode are the target's."""

    text: str | None
    mode: str | None            # octal without leading zeros, e.g. "644"
    uid: int | None = None
    gid: int | None = None
    link: Link | None = None
    problem: str | None = None  # "unreadable", "not a regular file", "larger than …"

    @property
    def exists(self) -> bool:
        """Something is there (a file, a link, or a file we cannot use)."""
        return self.text is not None or self.problem is not None or self.link is not None

    @property
    def sha256(self) -> str | None:
        return None if self.text is None else hashlib.sha256(self.text.encode("utf-8", "surrogateescape")).hexdigest()


MISSING = FileState(None, None)
_FILE = re.compile(r"file (\d{1,10}) (\d{1,10}) ([0-7]{1,4}) (\d{1,12})")
_LINK = re.compile(r"link (\d{0,10}) ([A-Za-z0-9+/=]*)")


def parse_files(output: list[str]) -> dict[str, FileState]:
    """Strictly parse READ_SCRIPT's output. A line we do not expect fails the host with the
    path and the kind of problem, never with the content (it may be a private file)."""
    states: dict[str, FileState] = {}
    for name, lines in sections(output).items():
        if not name.startswith("file:"):
            continue  # the fact's other sections (the doctor reads files with its own checks)
        path = name.removeprefix("file:")
        link = None
        if lines and lines[0].startswith("link "):
            match = _LINK.fullmatch(lines[0])
            try:
                target = base64.b64decode(match.group(2), validate=True).decode("utf-8", "surrogateescape") \
                    if match else None
            except (binascii.Error, ValueError):
                target = None
            if target is None:
                raise FactProcessError(f"files: unexpected link report for {path}")
            link = Link(int(match.group(1)) if match.group(1) else None, target)
            lines = lines[1:]
        head = lines[0] if lines else ""
        if head == "missing":
            states[path] = FileState(None, None, link=link)
        elif head in ("other", "unreadable"):
            states[path] = FileState(None, None, link=link,
                                     problem="not a regular file" if head == "other" else "unreadable")
        elif head.startswith("large "):
            states[path] = FileState(None, None, link=link, problem=f"larger than {MAX_BYTES // 1024} KiB")
        elif match := _FILE.fullmatch(head):
            try:
                data = base64.b64decode("".join(lines[1:]), validate=True)
            except (binascii.Error, ValueError):
                raise FactProcessError(f"files: content of {path} did not arrive intact") from None
            uid, gid, mode, _ = match.groups()
            states[path] = FileState(data.decode("utf-8", "surrogateescape"), mode, int(uid), int(gid), link)
        else:
            raise FactProcessError(f"files: unexpected report for {path}")
    return states


class FilesFact(FactBase):
    """Contents, owner and mode of several files, in one round trip: root's own files read as
    root, each account's files read as that account (`readers`: user -> argv prefix that runs
    a program as them; empty when the deploy already runs as that user)."""

    def default(self) -> dict:
        return {}

    def command(self, paths: tuple[str, ...] = (),
                accounts: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()) -> str:
        """`accounts`: (argv prefix that runs a program as the account, its paths) pairs."""
        parts = [" ".join(sh_quote(w) for w in [*prefix, "sh", "-c", READ_SCRIPT, "localcode-read", *group])
                 for prefix, group in (((), paths), *accounts) if group]
        return "; ".join(parts + ["true"])

    def process(self, output: list[str]) -> dict[str, FileState]:
        return parse_files(output)


def reader(os_name: str, login: str, user: str) -> tuple[str, ...]:
    """How the deploy reads `user`'s files: as that user (from root), or directly when it
    already runs as them (onboarding one's own machine)."""
    return () if login == user else tuple(as_account(os_name, user))


def observe(paths: list[str], account_paths: dict[str, list[str]], os_name: str,
            login: str) -> dict[str, FileState]:
    """The files we manage (root's) and the developers' files we edit (read as each
    developer), as they are now: one round trip."""
    accounts = tuple((reader(os_name, login, user), tuple(ps)) for user, ps in account_paths.items())
    return host.get_fact(FilesFact, paths=tuple(paths), accounts=accounts)


def editable(state: FileState, uid: int, roots: tuple[str, ...]) -> str | None:
    """Why we will not edit this file for account `uid` (None: we may). A link is followed only
    in the ordinary dotfiles case: the link and its target both the account's own, the target
    a regular file inside the account's home or project (`roots`)."""
    if state.link is not None:
        target = state.link.target
        inside = any(target.startswith(root.rstrip("/") + "/") for root in roots)
        if state.link.uid != uid:
            return f"is a symbolic link not owned by the account (to {target})"
        if not inside:
            return f"is a symbolic link to {target}, outside {' and '.join(roots)}"
        if state.problem is None and state.text is not None and state.uid != uid:
            return f"is a symbolic link to {target}, which the account does not own"
    if state.problem is not None:
        return f"is {state.problem}" + (f" (a link to {state.link.target})" if state.link else "")
    return None


def destination(path: str, state: FileState) -> str:
    """Where a write goes: the file itself, or the target of a dotfiles link (the link stays)."""
    return state.link.target if state.link is not None else path


class DirectoriesFact(FactBase):
    """Owner uid of each given path that is a real directory ("link" for a symbolic link,
    nothing when missing): project directories must be their developer's own."""

    def default(self) -> dict:
        return {}

    def command(self, paths: tuple[str, ...]) -> str:
        script = ("for p do if [ -L \"$p\" ]; then echo \"link $p\"; elif [ -d \"$p\" ]; then "
                  "echo \"$(stat -c %u -- \"$p\" 2>/dev/null || stat -f %u -- \"$p\") $p\"; fi; done")
        return " ".join(sh_quote(w) for w in ["sh", "-c", script, "localcode-dirs", *paths]) + "; true"

    def process(self, output: list[str]) -> dict[str, str]:
        found = {}
        for line in output:
            owner, _, path = line.partition(" ")
            if not re.fullmatch(r"link|\d{1,10}", owner):
                raise FactProcessError("directories: unexpected output line")
            found[path] = owner
        return found


def private_mode(path: str) -> bool:
    """Files that hold account state or tokens: owner only."""
    return path.endswith("/.claude.json")


@operation()
def write_text(path: str, text: str, before: FileState, why: str, run_as: tuple[str, ...] = ()):
    """Replace the file with `text`, as the account `run_as` runs a program as (nothing: root,
    for our own files), unless it already
    holds it. The helper writes a mktemp file beside the destination and renames it over, as
    that user; a new file gets 0644 (0600 for private ones), an existing one keeps its mode
    without set-id bits."""
    if before.text == text:
        host.noop(f"{path}: {why} already in place")
        return
    mode = f"{int(before.mode, 8) & 0o777:o}" if before.mode else ("600" if private_mode(path) else "644")
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    staged = f"{STAGING}/{digest}"
    yield command("mkdir", "-p", "-m", "0700", STAGING)
    yield FileUploadCommand(io.BytesIO(text.encode("utf-8", "surrogateescape")), staged)
    yield command(WRITE_HELPER, staged, destination(path, before), mode, *run_as)


@dataclass(frozen=True)
class ManagedFile:
    """A file we own entirely (helper scripts, unit files, Modelfiles), root-owned."""
    path: str
    content: bytes
    mode: str


def up_to_date(file: ManagedFile, observed: FileState | None) -> bool:
    """The file already has this content, root's ownership and this mode (as observed when the
    deploy started)."""
    return observed is not None and (observed.sha256, observed.uid, observed.gid, observed.mode) == (
        hashlib.sha256(file.content).hexdigest(), 0, 0, file.mode.lstrip("0"))


def _replace(file: ManagedFile):
    """Commands that write a root-owned file atomically (root's own tree: a fixed temporary name
    beside it is safe)."""
    yield command("mkdir", "-p", file.path.rsplit("/", 1)[0])
    yield FileUploadCommand(io.BytesIO(file.content), f"{file.path}.localcode-new")
    yield command("chown", "0:0", f"{file.path}.localcode-new")
    yield command("chmod", file.mode, f"{file.path}.localcode-new")
    yield command("mv", "-f", f"{file.path}.localcode-new", file.path)


@operation()
def ensure_file(path: str, content: bytes, mode: str, observed: FileState | None):
    """Write a root-owned file we own entirely, atomically, unless it is up to date."""
    file = ManagedFile(path, content, mode)
    if up_to_date(file, observed):
        host.noop(f"{path} is up to date")
        return
    yield from _replace(file)


@operation()
def ensure_files(files: list[ManagedFile], observed: dict[str, FileState]):
    """Several root-owned files as one operation (our helper scripts): only the stale ones are
    written."""
    stale = [f for f in files if not up_to_date(f, observed.get(f.path))]
    if not stale:
        host.noop(f"all {len(files)} files are up to date")
        return
    for file in stale:
        yield from _replace(file)
