"""Processes the lab starts, recorded by PID and start time so that only they are ever
signalled (a recycled PID belongs to someone else)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcRecord:
    pid: int
    start_ticks: int
    argv0: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ProcRecord:
        return cls(int(data["pid"]), int(data["start_ticks"]), str(data["argv0"]))

    def alive(self) -> bool:
        """True while the very process we started runs (same PID and same start time)."""
        return _start_ticks(self.pid) == self.start_ticks


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def spawn(argv: list[str], log_path: Path, cgroups: list[Path] = ()) -> ProcRecord:
    """Start a long-running process in its own session, output appended to log_path, placed
    in the given cgroup directories (created if missing) before it runs."""
    for cgroup in cgroups:
        cgroup.mkdir(parents=True, exist_ok=True)

    def enter_cgroups() -> None:
        for cgroup in cgroups:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=enter_cgroups if cgroups else None,
        )
    ticks = _start_ticks(proc.pid)
    if ticks is None:
        raise RuntimeError(f"{argv[0]} exited at once; see {log_path}")
    return ProcRecord(proc.pid, ticks, argv[0])


def stop_all(records: list[ProcRecord], timeout: float = 10.0) -> list[ProcRecord]:
    """SIGTERM every still-running record at once, SIGKILL what outlives the timeout.
    Returns the records that were running."""
    running = [r for r in records if r.alive()]
    for record in running:
        os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(r.alive() for r in running):
        _reap()
        time.sleep(0.05)
    for record in running:
        if record.alive():
            os.kill(record.pid, signal.SIGKILL)
    while any(r.alive() for r in running):
        _reap()
        time.sleep(0.05)
    return running


def _cgroup_pids(cgroup: Path) -> set[int]:
    pids: set[int] = set()
    for procs in cgroup.rglob("cgroup.procs"):
        try:
            pids.update(int(line) for line in procs.read_text().split())
        except OSError:
            pass
    return pids


def remove_cgroups(cgroups: list[Path], timeout: float = 10.0) -> None:
    """SIGKILL whatever still runs in the lab's own cgroups (a container whose systemd-nspawn
    died leaves its systemd running), then remove the directories bottom-up."""
    existing = [c for c in cgroups if c.is_dir()]
    deadline = time.monotonic() + timeout
    while pids := set().union(*(_cgroup_pids(c) for c in existing)):
        if time.monotonic() > deadline:
            raise OSError(f"processes {sorted(pids)} survive SIGKILL in {existing}")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap()
        time.sleep(0.05)
    for cgroup in existing:
        for sub in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            sub.rmdir()
        cgroup.rmdir()
        try:
            cgroup.parent.rmdir()  # shared by concurrent labs: only when it is empty
        except OSError:
            pass


def _reap() -> None:
    """Collect exited children of this process so they stop showing as zombies."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
