"""`localcode pull`: on a pull-mode host, as root, from its timer (`--scheduled`) or by hand.

One run at a time (a lock; an overlapping trigger stops at once). A scheduled run goes on only
when due (localcode/pull.py). The run fetches the team configuration and, for a new revision,
installs the toolkit from it (localcode-pull-toolkit); then a fresh process of that toolkit
(`localcode pull --apply`) validates this host's data, deploys it on @local and runs the doctor.
Every run ends in /var/lib/localcode/last-run.json (and at pull_report_url when set). A
configuration that fails validation changes nothing on the host; the status says why."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from pydantic import ValidationError
from pyinfra.api.exceptions import PyinfraError

from .localfiles import write_atomically
from .pull import (LOCK, PULL_HOME, REVISION, PULL_SETTINGS, STATE_DIR, STATUS, PullSettings, Status, doctor_summary, due,
                   now_iso, operations, parse_settings, parse_status)

VENV = f"{PULL_HOME}/venv"
CONFIG = f"{PULL_HOME}/config"
RUN_INVENTORY = f"{PULL_HOME}/run/this-machine.py"
HELPER = "/usr/local/lib/localcode/bin/localcode-pull-toolkit"


@contextlib.contextmanager
def exclusive(path: str) -> Iterator[bool]:
    """Whether this process holds the run lock (released when it exits, however it exits)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def write_status(status: Status, path: str = STATUS) -> None:
    """In root's own directory, whole or not at all."""
    write_atomically(Path(path), status.model_dump_json(indent=1) + "\n")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def fetch_revision(settings: PullSettings) -> str:
    """The revision the configuration's branch points at now (git), or the tarball's sha256."""
    if settings.config_url.endswith(".tar.gz"):
        answer = requests.get(f"{settings.config_url}.sha256", timeout=30)
        answer.raise_for_status()
        revision = answer.text[:200].split()[0] if answer.text.strip() else ""
    else:
        git = settings.git or "git"
        done = subprocess.run([git, "-C", CONFIG, "fetch", "--quiet", "origin", settings.branch],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"cannot fetch {settings.config_url}: {_last_line(done.stderr)}")
        revision = subprocess.run([git, "-C", CONFIG, "rev-parse", "FETCH_HEAD"], capture_output=True, text=True,
                                  check=True).stdout.strip()
    if not REVISION.fullmatch(revision):
        raise RuntimeError(f"{settings.config_url}: not a revision: {revision[:80]!r}")
    return revision


def installed_revision() -> str | None:
    try:
        return Path(VENV, ".localcode-revision").read_text().strip() or None
    except OSError:
        return None


def attempt(settings: PullSettings, last: Status | None, now: float) -> Status:
    """One run; the status it ends with (before the report)."""
    carried = {"applied_revision": last.applied_revision if last else None,
               "last_success": last.last_success if last else None}
    failures = (last.consecutive_failures if last else 0) + 1
    status = Status(host=settings.host, when=now_iso(now), result="failed", consecutive_failures=failures, **carried)
    try:
        revision = fetch_revision(settings)
    except (RuntimeError, requests.RequestException, subprocess.SubprocessError) as exc:
        return status.model_copy(update={"result": "unreachable", "reason": str(exc)})
    status.revision = revision
    if installed_revision() != revision:
        done = subprocess.run([HELPER, PULL_HOME, f"{VENV}/bin/python", settings.git or "-", settings.config_url,
                               settings.branch, settings.wheels_url or "-", revision], capture_output=True, text=True,
                              timeout=1800)
        if done.returncode != 0:
            result = "unreachable" if "cannot fetch" in done.stderr or "cannot download" in done.stderr else "failed"
            return status.model_copy(update={"result": result, "reason": _last_line(done.stderr)})
    applied = subprocess.run([f"{VENV}/bin/localcode", "pull", "--apply"], capture_output=True, text=True,
                             timeout=6 * 3600)
    try:
        outcome = json.loads(applied.stdout)
    except ValueError:
        return status.model_copy(update={"reason": f"the toolkit at {revision[:12]} failed: "
                                                   f"{_last_line(applied.stderr)}"})
    update = {k: outcome[k] for k in ("result", "reason", "operations", "changes", "sizing", "doctor", "versions")
              if isinstance(outcome, dict) and k in outcome}
    if update.get("result") == "ok":
        update.update(applied_revision=revision, last_success=status.when, consecutive_failures=0)
    try:  # validated: what the toolkit of a new revision printed is held to the status's types
        return Status.model_validate(status.model_dump() | update)
    except ValidationError as exc:
        return status.model_copy(update={"reason": f"the toolkit at {revision[:12]} answered unreadably: "
                                                   f"{exc.errors()[0]['msg']}"})


def report(status: Status, settings: PullSettings) -> str:
    """PUT the status to the report URL; how it went, for the status itself."""
    if not settings.report_url:
        return ""
    url = f"{settings.report_url}/{settings.host}.json"
    try:
        answer = requests.put(url, data=status.model_dump_json(indent=1), timeout=30,
                              headers={"Content-Type": "application/json"})
    except requests.RequestException as exc:
        return f"not sent to {url}: {type(exc).__name__}"
    return f"sent to {url}" if answer.ok else f"not sent to {url}: HTTP {answer.status_code}"


def run(scheduled: bool, splay_s: int = 0) -> int:
    """The whole run; exit code 0 when the host converged (or had nothing due)."""
    os.makedirs(STATE_DIR, mode=0o755, exist_ok=True)
    with exclusive(LOCK) as held:
        if not held:
            print("another pull run holds the lock: this one stops", file=sys.stderr)
            return 0
        settings = parse_settings(Path(PULL_SETTINGS).read_text())
        last = parse_status(Path(STATUS).read_text()) if Path(STATUS).exists() else None
        if scheduled:
            go, why = due(last, settings.interval_s, time.time())
            print(f"pull: {why}", file=sys.stderr)
            if not go:
                return 0
            time.sleep(random.uniform(0, splay_s))
        now = time.time()
        # Recorded first: a run cut short (a reboot) leaves "running", and the next run is due.
        write_status(Status(host=settings.host, when=now_iso(now), result="running",
                            revision=last.revision if last else None,
                            applied_revision=last.applied_revision if last else None,
                            last_success=last.last_success if last else None,
                            consecutive_failures=last.consecutive_failures if last else 0))
        status = attempt(settings, last, now)
        status.report = report(status, settings)
        write_status(status)
        print(f"pull: {status.result}{': ' + status.reason if status.reason else ''}"
              f"{' (' + status.report + ')' if status.report else ''}", file=sys.stderr)
        return 0 if status.result == "ok" else 1


def apply() -> int:
    """`localcode pull --apply` (a fresh process of the toolkit just installed): validate this
    host's data in the configuration, deploy it on @local, run the doctor; one JSON object out."""
    from .gather import loaded
    from .onboarding import find_entry, inventory_text, onboard_data
    from .settings import validate_inventory

    settings = parse_settings(Path(PULL_SETTINGS).read_text())
    os.chdir(CONFIG)  # as `pyinfra` does: group_data/ beside the deploy
    try:
        hosts = [(h.name, h.data.dict()) for h in loaded(settings.inventory)[1]]
        data = onboard_data(find_entry(hosts, (), settings.host), None, None, None)
        validate_inventory([("@local", data)])
    except (PyinfraError, ValueError, OSError) as exc:  # invalid data, no such host, an unreadable inventory
        print(json.dumps({"result": "invalid-config", "reason": str(exc).replace("\nno host was changed.", "")}))
        return 0
    Path(RUN_INVENTORY).parent.mkdir(mode=0o700, exist_ok=True)
    Path(RUN_INVENTORY).write_text(inventory_text(data, f"{settings.host} in {settings.inventory}, pull mode"))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    deployed = subprocess.run([f"{VENV}/bin/pyinfra", "-y", "--json", RUN_INVENTORY, "deploy.py"],
                              capture_output=True, text=True, env=env)
    try:
        results = json.loads(deployed.stdout)
    except ValueError:
        results = None
    mine = ((results or {}).get("localcode") or [{}])[0]
    checked = subprocess.run([f"{VENV}/bin/localcode", "doctor", RUN_INVENTORY, "--json"], capture_output=True,
                             text=True, env=env)
    try:
        doctor, versions = doctor_summary(json.loads(checked.stdout)[0])
    except (ValueError, IndexError):
        doctor, versions = doctor_summary(None)
    ok = deployed.returncode == 0 and mine.get("result") == "ok"
    reason = "" if ok else (mine.get("reason") or _last_line(deployed.stderr))
    print(json.dumps({"result": "ok" if ok else "failed", "reason": reason, "operations": operations(results),
                      "changes": mine.get("changes", []), "sizing": mine.get("sizing", ""), "doctor": doctor,
                      "versions": versions}))
    return 0
