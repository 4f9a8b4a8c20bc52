"""Operations every step uses: fail one host with a clear message, ask the Ollama server's API
from the control machine (JSON parsed here, never on the host with sed), switch a link atomically."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pyinfra.api import StringCommand, operation

from .shell import command

# Renaming a new link over one that points at a directory must replace the link, not move the
# new one into that directory: GNU mv -T; BSD mv -h (macOS's mv since file_cmds-353, 2022:
# https://github.com/apple-oss-distributions/file_cmds/blob/main/mv/mv.1).
RENAME_OVER_LINK = {"Linux": ("-T",), "Darwin": ("-f", "-h")}


@operation()
def failure(message: str):
    """Fail this host (not the run) with a clear message."""
    yield command("sh", "-c", 'echo "$1" >&2; exit 1', "localcode", message)


def api_json(host, api: str, path: str, body: dict | None = None, timeout_s: int = 30) -> Any:
    """The Ollama server's JSON answer at `path` (a POST of `body` when given), fetched on the
    host and parsed here with a real JSON parser; None when no JSON came back."""
    args = ["-s", "--max-time", str(timeout_s)]
    if body is not None:
        args += ["-X", "POST", "-H", "Content-Type: application/json", "-d", json.dumps(body)]
    status, output = host.run_shell_command(command("curl", *args, f"http://{api}{path}"))
    try:
        return json.loads(output.stdout) if status else None
    except ValueError:
        return None


def switch_link(target: str, link: str, os_name: str) -> Iterator[StringCommand]:
    """Point `link` at `target` atomically: a new link beside it, renamed over it (rename(2)),
    so a reader sees the old target or the new one, never no link."""
    yield command("ln", "-sfn", target, f"{link}.new")
    yield command("mv", *RENAME_OVER_LINK[os_name], f"{link}.new", link)


class StreamedCommand(StringCommand):
    """A command whose few lines (a start line, bounded progress, an end line) the operator sees
    live, prefixed with the host, under the operation's own privileges (sudo included)."""

    def execute(self, state, host, connector_arguments):
        connector_arguments.update(self.connector_arguments)
        return host.run_shell_command(self, print_output=True, print_input=state.print_input, **connector_arguments)


def streamed(program: str, *args: str) -> StreamedCommand:
    """Like shell.command(), printed live (see StreamedCommand)."""
    plain = command(program, *args)
    return StreamedCommand(*plain.bits)
