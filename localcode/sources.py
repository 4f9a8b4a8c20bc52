"""Where releases and models come from, per kind: the internet, a bundle on the control
machine (pushed to the host over SSH with rsync, only the missing files, resumable), or a
mirror (a static HTTP server serving a bundle directory; the control machine carries no bytes).
A bundle's files are staged on the host and installed from there with the same verified
helpers as downloads (file:// URLs)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from pyinfra.api.command import RsyncCommand

from .bundle_index import claude_path, ollama_path
from .shell import command

HOST_CACHE = "/var/cache/localcode/bundle"


def release_template(kind: str, source: str, internet_template: str, mirror_url: str | None) -> str:
    """The URL template ({version}, {file}) for Ollama ("ollama") or Claude Code ("claude")."""
    layout = (ollama_path if kind == "ollama" else claude_path)("{version}", "{file}")
    if source == "mirror":
        return f"{mirror_url}/{layout}"
    if source == "bundle":
        return f"file://{HOST_CACHE}/{layout}"
    return internet_template


def push(bundle_dir: str, paths: list[str], dest: str = HOST_CACHE):
    """Commands that rsync the given bundle-relative files to dest on the host, keeping their
    relative paths; partial transfers are kept and resumed (rsync's delta transfer) next run."""
    listing = "\n".join(sorted(paths)) + "\n"
    lists = Path(tempfile.gettempdir()) / "localcode-rsync"
    lists.mkdir(exist_ok=True)
    files_from = lists / f"{hashlib.sha256(listing.encode()).hexdigest()[:16]}.txt"
    files_from.write_text(listing)
    # rsync's own transfer checksum is off: every file is sha256-verified on arrival anyway.
    flags = ["--times", "--partial", "--checksum-choice=none", "--chmod=D0755,F0644", f"--files-from={files_from}"]
    yield command("mkdir", "-p", dest)
    yield RsyncCommand(f"{bundle_dir.rstrip('/')}/", f"{dest}/", flags)
