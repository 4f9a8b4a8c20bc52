"""The one place that builds and quotes shell commands. Data (model names, paths, users,
URLs) only ever reaches a shell through these helpers, never through string formatting."""

from __future__ import annotations

import shlex

from pyinfra.api import QuoteString, StringCommand


def sh_quote(value: str) -> str:
    """Quote one word for a POSIX shell (facts build their command as a plain string)."""
    return shlex.quote(value)


def command(program: str, *args: str | QuoteString) -> StringCommand:
    """An operation command: the program is ours, every argument is quoted by pyinfra."""
    return StringCommand(program, *(a if isinstance(a, QuoteString) else QuoteString(a) for a in args))


def as_account(os_name: str, user: str) -> list[str]:
    """The argv prefix that runs a program as `user` (from root), so the kernel applies that
    account's permissions inside trees it controls: no link it plants can lead anywhere it
    could not write itself. Linux: runuser (util-linux); macOS: sudo."""
    if os_name == "Darwin":
        return ["/usr/bin/sudo", "-n", "-u", user, "--"]
    return ["runuser", "-u", user, "--"]


def fish_quote(value: str) -> str:
    """Quote one word for fish (single quotes; backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
