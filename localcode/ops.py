"""Operations every step uses: fail one host with a clear message, and ask the Ollama server's
API from the control machine (JSON parsed here, never on the host with sed)."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import operation

from .shell import command


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
