"""What each host got from a run, for the operator: printed after pyinfra's own results, added
to its `--json` output and written to `localcode-last-run.json` beside the inventory (the
doctor's HTML report shows it).

The deploy's steps note, while they record operations, what a change would mean on this host
("Ollama 0.13.5 -> 0.30.0", "pulled gpt-oss:20b"); after the run a note counts only when its
operation really changed something. Failures come from pyinfra's state: the operation that
failed and its last error line."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .localfiles import write_atomically

LAST_RUN = "localcode-last-run.json"


@dataclass
class HostNotes:
    sizing: str = ""
    changes: list[tuple[str, Any]] = field(default_factory=list)  # (what it means, the operation's meta)


_NOTES: dict[str, HostNotes] = {}


def _notes(host) -> HostNotes:
    return _NOTES.setdefault(host.name, HostNotes())


def sizing(host, line: str) -> None:
    """The host's sizing decision, in one line."""
    _notes(host).sizing = line


def change(host, what: str, operation) -> None:
    """What `operation` (as returned where it was recorded) means on this host, if it changes."""
    _notes(host).changes.append((what, operation))


def _changed(operation) -> bool:
    return operation.is_complete() and operation.did_change()


def _failure(state, host) -> tuple[str, str]:
    """(the operation that failed, its last error line)."""
    for op_hash in state.get_op_order():
        data = state.ops.get(host, {}).get(op_hash)
        meta = getattr(data, "operation_meta", None)
        if meta is not None and meta.is_complete() and meta.did_error():
            lines = [line for line in meta.stderr_lines if line.strip()]
            return sorted(state.op_meta[op_hash].names)[0], (lines[-1] if lines else "no error output")
    return "connection", "the host stopped answering"


def build(state) -> list[dict[str, Any]]:
    """One entry per host: result (ok, failed, unreachable), what changed, the sizing, and for a
    failure the reason and the next step."""
    hosts = []
    for host in state.inventory:
        notes = _NOTES.get(host.name, HostNotes())
        entry: dict[str, Any] = {"host": host.name, "sizing": notes.sizing}
        if host not in state.activated_hosts:
            entry.update(result="unreachable", changes=[], reason="no SSH connection",
                         next=f"check that `ssh {host.data.get('ssh_user') or 'root'}@{host.name}` works, then re-run")
        else:
            counts = Counter(what for what, op in notes.changes if _changed(op))
            entry["changes"] = [f"{what} ({n} files)" if n > 1 else what for what, n in counts.items()]
            if host in state.failed_hosts:
                operation, reason = _failure(state, host)
                entry.update(result="failed", reason=f"{operation}: {reason}",
                             next="fix what the reason says, then re-run; `localcode doctor INVENTORY` shows the host")
            else:
                entry["result"] = "ok"
        hosts.append(entry)
    return hosts


def lines(summary: list[dict[str, Any]]) -> list[str]:
    """The summary for people: a line per host, its sizing and, for a failure, what to do."""
    width = max((len(h["host"]) for h in summary), default=0)
    out = []
    for h in summary:
        what = "; ".join(h["changes"]) if h["changes"] else "no changes"
        out.append(f"{h['host'].ljust(width)}  {h['result']:<11}  {what}")
        pad = " " * (width + 2)
        if h["sizing"]:
            out.append(f"{pad}sizing: {h['sizing']}")
        if h["result"] != "ok":
            out.append(f"{pad}why: {h['reason']}")
            out.append(f"{pad}next: {h['next']}")
    return out


def write(summary: list[dict[str, Any]], directory: Path) -> Path:
    """`localcode-last-run.json` in `directory`, written atomically."""
    return write_atomically(directory / LAST_RUN, json.dumps({"hosts": summary}, indent=2) + "\n", 0o600)


def read(directory: Path) -> list[dict[str, Any]] | None:
    """The last run's summary beside an inventory, if there is one we can read."""
    try:
        hosts = json.loads((directory / LAST_RUN).read_text())["hosts"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return hosts if isinstance(hosts, list) else None
