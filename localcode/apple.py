"""Apple Silicon's GPU memory limit (`apple_gpu_memory`): how much unified memory Metal lets the
GPU wire, which is the sizing's budget there. macOS's default is about 2/3 of RAM below 36 GiB
and 3/4 from 36 GiB; `sysctl iogpu.wired_limit_mb=N` raises it (0 restores the default) until the
next reboot, and it feeds the `recommendedMaxWorkingSetSize` that Ollama reads
(https://github.com/ollama/ollama/blob/v0.32.15/discover/gpu_info_darwin.m).

What the limit will be is decided here once, from the host's data and facts (`plan_limit`):
the plan sizes with it and the deploy sets it, so the two agree. The deploy step (`apply`)
runs inside the macOS Ollama step: Ollama reads the working set once, when its server starts
("metal never updates free VRAM",
https://github.com/ollama/ollama/blob/02725d3d64510e335bbb0940196ab22385651bc2/discover/runner.go),
so a changed limit restarts the server there.

Kept across reboots by a LaunchDaemon that runs sysctl at boot, not by /etc/sysctl.conf:
macOS has not applied that file since Catalina (10.15) by several reports
(https://gist.github.com/dtmrc/a415b5dbe63013e88b232aa51e3f9164,
https://github.com/facebook/watchman/issues/880), and no source shows it applying `iogpu.*`
on macOS 14 or 15 (uncertain: no reboot test found either way)."""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.operation import OperationMeta

from .facts import IOGPU_DAEMON, IOGPU_LABEL
from .rendering import render
from .shell import command
from .sizing import GiB, MiB, gib, metal_working_set
from .userfiles import MISSING, FileState, ensure_file

SYSCTL = "/usr/sbin/sysctl"  # every tool on a Mac by its absolute path (docs/notes/macos.md)
KEY = "iogpu.wired_limit_mb"
# What a limit always leaves to macOS itself, whatever apple_gpu_memory says.
MIN_FREE_BYTES = 2 * GiB


@dataclass(frozen=True)
class GpuLimit:
    """The limit (MiB; 0 is macOS's default) as the host runs it and as the deploy leaves it."""

    ram_bytes: int
    running_mb: int
    daemon: bool                   # our LaunchDaemon is installed
    planned_mb: int | None = None  # None: not ours to manage, left as it is

    @property
    def after_mb(self) -> int:
        return self.running_mb if self.planned_mb is None else self.planned_mb

    @property
    def wired_limit_bytes(self) -> int | None:
        """What the sizing takes as the host's limit: the one in force after the deploy."""
        return self.after_mb * MiB or None

    def working_set(self, limit_mb: int) -> int:
        """What Metal lets the GPU wire under this limit."""
        return metal_working_set(self.ram_bytes, limit_mb * MiB or None)

    def change(self) -> str | None:
        """The plan's line when the deploy changes the limit in force."""
        if self.planned_mb is None or self.planned_mb == self.running_mb:
            return None
        before, after = self.working_set(self.running_mb), self.working_set(self.planned_mb)
        if self.planned_mb == 0:
            return f"GPU memory limit restored from {before / GiB:.1f} GiB to the system default, {gib(after)}"
        verb = "raised" if after >= before else "lowered"
        return (f"GPU memory limit {verb} from {before / GiB:.1f} to {after / GiB:.1f} GiB "
                f"({KEY}={self.planned_mb}, kept across reboots)")

    def as_dict(self) -> dict[str, object]:
        return {"running_mb": self.running_mb, "planned_mb": self.planned_mb,
                "working_set_bytes": self.working_set(self.after_mb)}


def plan_limit(setting: str | float | None, ram_bytes: int, running_mb: int, daemon: bool,
               os_reserve_bytes: int) -> GpuLimit:
    """What the deploy leaves: unset keeps a limit set by hand (or none) untouched, but removes
    ours (0: the default); "auto" is RAM minus the OS reserve, at most RAM minus 2 GiB and
    never below the default (then the default); a number of GiB is taken as it is. A number
    above RAM minus 2 GiB raises ValueError naming the key."""
    if setting is None:
        return GpuLimit(ram_bytes, running_mb, daemon, 0 if daemon else None)
    ceiling = ram_bytes - MIN_FREE_BYTES
    if setting == "auto":
        wanted = min(ram_bytes - os_reserve_bytes, ceiling)
        planned = wanted // MiB if wanted > metal_working_set(ram_bytes, None) else 0
        return GpuLimit(ram_bytes, running_mb, daemon, planned)
    wanted = int(float(setting) * GiB)
    if wanted > ceiling:
        raise ValueError(f"apple_gpu_memory = {setting!r}: above RAM minus 2 GiB on this host "
                         f"({gib(ram_bytes)} RAM); at most {ceiling / GiB:.1f}, or \"auto\"")
    return GpuLimit(ram_bytes, running_mb, daemon, wanted // MiB)


def daemon_plist(limit_mb: int) -> bytes:
    return render("com.localcode.iogpu.plist.j2", label=IOGPU_LABEL, sysctl=SYSCTL, setting=f"{KEY}={limit_mb}")


@operation()
def running_limit(limit: GpuLimit):
    """Set the limit in force now (sysctl), unless it already is the planned one."""
    if limit.planned_mb is None:
        host.noop(f"apple_gpu_memory is unset and no LaunchDaemon of ours: {KEY} left at {limit.running_mb}")
        return
    if limit.running_mb == limit.planned_mb:
        host.noop(f"{KEY} is already {limit.planned_mb}" + (" (the system default)" if not limit.planned_mb else ""))
        return
    yield command(SYSCTL, f"{KEY}={limit.planned_mb}")


@operation()
def remove_daemon(observed: FileState):
    """Remove our LaunchDaemon (the limit goes back to the default at the next boot too)."""
    if not observed.exists:
        host.noop(f"no {IOGPU_DAEMON}: nothing to remove")
        return
    # Loaded only after a reboot (it runs once at boot): bootout fails harmlessly otherwise.
    yield command("/bin/sh", "-c", '/bin/launchctl bootout "$1" 2>/dev/null; /bin/rm -f "$2"', "localcode",
                  f"system/{IOGPU_LABEL}", IOGPU_DAEMON)


def apply(limit: GpuLimit | None, observed: dict[str, FileState]) -> OperationMeta | None:
    """Set the planned limit and keep it across reboots (a root-owned LaunchDaemon with
    RunAtLoad, not loaded now: sysctl has just set the limit), or restore the default and
    remove the daemon. Returns the operation that sets the limit in force (None: not Apple
    Silicon): when it changed, the server must restart."""
    if limit is None:
        return None
    now = running_limit(name=f"GPU memory limit ({KEY})", limit=limit)
    state = observed.get(IOGPU_DAEMON, MISSING)
    if limit.planned_mb:
        ensure_file(name=f"GPU memory limit at boot (LaunchDaemon {IOGPU_LABEL})", path=IOGPU_DAEMON,
                    content=daemon_plist(limit.planned_mb), mode="0644", observed=state)
    else:
        remove_daemon(name=f"GPU memory limit at boot: no LaunchDaemon {IOGPU_LABEL}", observed=state)
    return now
