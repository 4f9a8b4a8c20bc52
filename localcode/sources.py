"""Where releases and models come from, per kind: the internet, a bundle on the control
machine (pushed to the host over SSH with rsync, only the missing files, resumable), or a
mirror (a static HTTP server serving a bundle directory; the control machine carries no bytes).
A bundle's files are staged on the host and installed from there with the same verified
helpers as downloads (file:// URLs)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile

from pyinfra.api.command import RsyncCommand

from .bundle_index import claude_path, ollama_path
from .shell import command, sh_quote

HOST_CACHE = "/var/cache/localcode/bundle"
# Models arrive here (root's alone, 0700) and are verified before the store's owner writes them
# into the store: never inside the store, a tree another account controls.
MODEL_STAGING = "/var/cache/localcode/incoming"


def release_template(kind: str, source: str, internet_template: str, mirror_url: str | None) -> str:
    """The URL template ({version}, {file}) for Ollama ("ollama") or Claude Code ("claude")."""
    layout = (ollama_path if kind == "ollama" else claude_path)("{version}", "{file}")
    if source == "mirror":
        return f"{mirror_url}/{layout}"
    if source == "bundle":
        return f"file://{HOST_CACHE}/{layout}"
    return internet_template


@functools.cache
def _lists_dir() -> str:
    """This process's private directory (mkdtemp: 0700, a fresh name) for rsync's file lists,
    removed when the process exits: the lists are read when the deploy executes, after every
    operation was planned, and no other local account can plant a link where they are written."""
    path = tempfile.mkdtemp(prefix="localcode-rsync-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def push(bundle_dir: str, paths: list[str], dest: str = HOST_CACHE, os_name: str = "Linux"):
    """Commands that rsync the given bundle-relative files to dest on the host, keeping their
    relative paths; partial transfers are kept and resumed (rsync's delta transfer) next run."""
    fd, files_from = tempfile.mkstemp(suffix=".txt", dir=_lists_dir())
    with os.fdopen(fd, "w") as listing:
        listing.write("\n".join(sorted(paths)) + "\n")
    # rsync's own transfer checksum is off: every file is sha256-verified on arrival anyway. rsync
    # hands --checksum-choice to the host's rsync (server_options in
    # https://github.com/RsyncProject/rsync/blob/master/options.c), and macOS's has no such option
    # (2.6.9, or openrsync since 15.4:
    # https://derflounder.wordpress.com/2025/04/06/rsync-replaced-with-openrsync-on-macos-sequoia/):
    # there it stays on.
    # pyinfra joins the flags and paths into one local shell command line: they are quoted.
    flags = ["--times", "--partial", *(["--checksum-choice=none"] if os_name == "Linux" else []),
             "--chmod=D0755,F0644", f"--files-from={sh_quote(files_from)}"]
    yield command("mkdir", "-p", dest)
    yield RsyncCommand(sh_quote(f"{bundle_dir.rstrip('/')}/"), f"{dest}/", flags)
