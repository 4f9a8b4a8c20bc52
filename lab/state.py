"""The lab's state file: every resource is recorded *before* it is created, so `lab down`
after a crash removes exactly what was made, and nothing else."""

from __future__ import annotations

import json
import threading
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

from . import files
from .paths import lab_dir
from .procs import ProcRecord


class LabState:
    """A JSON document at <lab dir>/state.json, saved atomically after every change."""

    def __init__(self, lab_name: str, data: dict[str, Any]):
        self.lab_name = lab_name
        self.data = data
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return state_path(self.lab_name)

    def save(self) -> None:
        """Write atomically; host bring-up threads share one state, so saves are serialised."""
        with self._lock:
            files.atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")

    def host(self, name: str) -> dict[str, Any]:
        return self.data["hosts"].setdefault(name, {"mounts": [], "procs": []})

    def add_proc(self, owner: dict[str, Any], record: ProcRecord) -> None:
        owner.setdefault("procs", []).append(record.to_json())
        self.save()

    def all_procs(self) -> list[ProcRecord]:
        owners = [self.data.get("services", {}), *self.data.get("hosts", {}).values()]
        return [ProcRecord.from_json(p) for o in owners for p in o.get("procs", [])]


def state_path(lab_name: str) -> Path:
    return lab_dir(lab_name) / "state.json"


def load_state(lab_name: str) -> LabState | None:
    path = state_path(lab_name)
    if not path.exists():
        return None
    return LabState(lab_name, json.loads(path.read_text()))


@contextmanager
def locked(lab_name: str) -> Iterator[None]:
    """Serialise up/down of one lab; a second caller fails fast instead of racing."""
    lock = lab_dir(lab_name) / "lock"
    with ExitStack() as stack:
        try:
            stack.enter_context(files.locked(lock, wait=False))
        except BlockingIOError:
            raise RuntimeError(f"lab {lab_name!r} is busy: another `python -m lab` command holds {lock}") from None
        yield
