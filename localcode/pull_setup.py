"""The deploy step that puts a host in pull mode (or takes it out): the toolkit and the team's
configuration in PULL_HOME (localcode-pull-toolkit), /etc/localcode/pull.json, and what runs
`localcode pull`: a systemd timer with two services (the scheduled run, which keeps to the
interval and backs off after failures, and the manual one, `systemctl start
localcode-pull.service`, which runs at once), or on macOS a LaunchDaemon in the system domain.
The runner itself is localcode/pull_runner.py; the pure parts are localcode/pull.py."""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import FactBase, operation
from pyinfra.api.exceptions import FactProcessError
from pyinfra.operations import systemd

from . import helper_scripts, summary
from .facts import MARK, sections
from .ops import failure
from .pull import (LAUNCH_DAEMON, PULL_HOME, PULL_SETTINGS, REVISION, UNITS, PullSettings, settings_for,
                   settings_text)
from .rendering import render
from .settings import HostConfig, interval_seconds
from .shell import command, sh_quote
from .userfiles import FileState, ManagedFile, ensure_files, up_to_date

UNIT_DIR = "/etc/systemd/system"
LABEL = "com.localcode.pull"
# Where a Python for the toolkit's venv may be (3.11 or newer, with venv): the system's, or
# on macOS Homebrew's (the system's is 3.9).
PYTHONS = {"Linux": ("/usr/bin/python3", "/usr/local/bin/python3"),
           "Darwin": ("/opt/homebrew/bin/python3", "/usr/local/bin/python3")}
GITS = {"Linux": ("/usr/bin/git", "/usr/local/bin/git"), "Darwin": ("/opt/homebrew/bin/git", "/usr/local/bin/git")}
PROGRAMS = frozenset(p for table in (PYTHONS, GITS) for paths in table.values() for p in paths)


@dataclass(frozen=True)
class PullHost:
    """What the host has for pull mode: a usable Python and git, the toolkit's revision and
    the configuration's, and whether the timer (or LaunchDaemon) is enabled and running."""

    python: str | None
    git: str | None
    toolkit_revision: str | None
    config_revision: str | None
    scheduled: bool


class PullHostFact(FactBase):
    def command(self, os_name: str) -> str:
        home = sh_quote(PULL_HOME)
        pythons = " ".join(sh_quote(p) for p in PYTHONS[os_name])
        gits = " ".join(sh_quote(g) for g in GITS[os_name])
        check = sh_quote("import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))")
        scheduled = ("systemctl is-enabled localcode-pull.timer 2>/dev/null; systemctl is-active "
                     "localcode-pull.timer 2>/dev/null" if os_name == "Linux" else
                     f"/bin/launchctl print system/{LABEL} >/dev/null 2>&1 && echo enabled && echo active")
        return "; ".join([
            f"echo {MARK}python; for p in {pythons}; do [ -x \"$p\" ] && \"$p\" -c {check} 2>/dev/null "
            "&& echo \"$p\" && break; done",
            f"g=; for c in {gits}; do [ -x \"$c\" ] && g=$c && break; done; echo {MARK}git; echo \"$g\"",
            f"echo {MARK}toolkit; cat {home}/venv/.localcode-revision 2>/dev/null",
            f"echo {MARK}config; cat {home}/config/.localcode-revision 2>/dev/null || "
            f"{{ [ -n \"$g\" ] && \"$g\" -C {home}/config rev-parse HEAD 2>/dev/null; }}",
            f"echo {MARK}scheduled; {scheduled}",
            "true",
        ])

    def process(self, output: list[str]) -> PullHost:
        """Strictly: a program only from our own candidate list, a revision only as a git or
        sha256 hex digest (the revision files sit in root's tree, but a mangled one must not
        pass for a match)."""
        s = sections(output)

        def one(name: str, allowed) -> str | None:
            lines = [line.strip() for line in s.get(name, []) if line.strip()]
            if lines and not allowed(lines[0]):
                raise FactProcessError(f"pull mode: unexpected {name} report: {lines[0][:80]!r}")
            return lines[0] if lines else None

        def revision(value: str) -> bool:
            return REVISION.fullmatch(value) is not None

        state = [line.strip() for line in s.get("scheduled", [])]
        return PullHost(one("python", PROGRAMS.__contains__), one("git", PROGRAMS.__contains__),
                        one("toolkit", revision), one("config", revision), "enabled" in state and "active" in state)

    def default(self) -> PullHost:
        return PullHost(None, None, None, None, False)


def managed_paths(os_name: str) -> list[str]:
    units = [f"{UNIT_DIR}/{unit}" for unit in UNITS] if os_name == "Linux" else [LAUNCH_DAEMON]
    return [PULL_SETTINGS, *units]


def _files(settings: PullSettings, config: HostConfig, os_name: str) -> list[ManagedFile]:
    runner = f"{PULL_HOME}/venv/bin/localcode"
    files = [ManagedFile(PULL_SETTINGS, settings_text(settings).encode(), "0644")]
    if os_name == "Linux":
        for unit in UNITS:
            text = render(f"{unit}.j2", runner=runner, splay_s=interval_seconds(config.pull_splay))
            files.append(ManagedFile(f"{UNIT_DIR}/{unit}", text, "0644"))
    else:
        text = render(f"{LABEL}.plist.j2", label=LABEL, runner=runner, splay_s=interval_seconds(config.pull_splay))
        files.append(ManagedFile(LAUNCH_DAEMON, text, "0644"))
    return files


@operation()
def toolkit(settings: PullSettings, python: str, state: PullHost):
    """The configuration cloned and the toolkit installed from it (helper script), unless the
    toolkit already comes from the configuration's revision. Later revisions are the runner's."""
    if state.toolkit_revision and state.toolkit_revision == state.config_revision:
        host.noop(f"the toolkit is installed from configuration revision {state.toolkit_revision[:12]}")
        return
    yield command(helper_scripts.path("localcode-pull-toolkit"), PULL_HOME, python, settings.git or "-",
                  settings.config_url, settings.branch, settings.wheels_url or "-")


@operation()
def scheduled(os_name: str, state: PullHost, reload: bool):
    """The timer enabled and running, restarted when its units changed (a running timer keeps
    its old schedule until then); macOS: the LaunchDaemon loaded into the system domain,
    reloaded when its plist changed."""
    if os_name == "Linux":
        if state.scheduled and not reload:
            host.noop("localcode-pull.timer is enabled and running")
            return
        yield command("systemctl", "enable", "--now", "localcode-pull.timer")
        if state.scheduled:
            yield command("systemctl", "restart", "localcode-pull.timer")
        return
    if state.scheduled and not reload:
        host.noop(f"{LABEL} is loaded")
        return
    yield command("/bin/sh", "-c", '/bin/launchctl bootout "$1" 2>/dev/null; /bin/launchctl bootstrap system "$2"',
                  "localcode", f"system/{LABEL}", LAUNCH_DAEMON)


@operation()
def turned_off(os_name: str, observed: dict[str, FileState]):
    """Pull mode off: the timer (or LaunchDaemon), its units, the settings and the toolkit
    removed; the last status stays (the history of the host)."""
    present = [p for p in managed_paths(os_name) if (state := observed.get(p)) is not None and state.exists]
    if not present:
        host.noop("pull mode is off")
        return
    if os_name == "Linux":
        yield command("/bin/sh", "-c", 'systemctl disable --now localcode-pull.timer 2>/dev/null; true')
    else:
        yield command("/bin/sh", "-c", '/bin/launchctl bootout "$1" 2>/dev/null; true', "localcode", f"system/{LABEL}")
    yield command("rm", "-rf", "--", *present, PULL_HOME)
    if os_name == "Linux":
        yield command("systemctl", "daemon-reload")


def setup(config: HostConfig, os_name: str, observed: dict) -> None:
    """Pull mode on or off, as the host's data says."""
    settings = settings_for(config, host.name)
    if settings is None:
        turned_off(name="Pull mode", os_name=os_name, observed=observed)
        return
    state = host.get_fact(PullHostFact, os_name=os_name)
    needs_git = not settings.config_url.endswith(".tar.gz")
    if state.python is None or (needs_git and state.git is None):
        missing = "python3 (3.11 or newer, with venv)" if state.python is None else "git"
        hint = ("apt-get install python3-venv git" if os_name == "Linux" else "brew install python@3.13 git")
        failure(name="Pull mode", message=f"{host.name}: pull mode needs {missing} on the host ({hint})")
        return
    settings = settings.model_copy(update={"git": state.git if needs_git else None})
    host.log(f"pull: every {config.pull_interval} from {settings.config_url} ({settings.branch}), "
             f"as {settings.host} of {settings.inventory}")
    installed = toolkit(name="Pull mode: toolkit and configuration", settings=settings, python=state.python,
                        state=state)
    wanted = _files(settings, config, os_name)
    written = ensure_files(name="Pull mode: settings and schedule", files=wanted, observed=observed)
    if os_name == "Linux":
        systemd.daemon_reload(name="Reload systemd units (pull mode)", _if=written.did_change)
    scheduled(name="Pull mode: scheduled", os_name=os_name, state=state,
              reload=any(not up_to_date(f, observed.get(f.path)) for f in wanted if f.path != PULL_SETTINGS))
    summary.change(host, f"pull mode every {config.pull_interval}", installed)

