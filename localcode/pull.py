"""Pull mode, the pure parts: what a pull-mode host keeps (its settings file, written by a push
or by onboarding), when a scheduled run is due (the interval, and a growing back-off after
failures), and the status each run records (`/var/lib/localcode/last-run.json`), which
`localcode doctor --reports DIR` turns into the fleet table without SSH.

A host in pull mode runs `localcode pull` from a systemd timer (macOS: a LaunchDaemon) every
CHECK_EVERY_S: a scheduled run deploys when the interval has passed since the last success, or,
after failures, when the back-off has; `systemctl start localcode-pull.service` runs at once."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from .rendering import render
from .report import text_table
from .settings import HostConfig, interval_seconds

PULL_HOME = "/usr/local/lib/localcode/pull"    # venv/ (the toolkit), config/ (the team's configuration)
PULL_SETTINGS = "/etc/localcode/pull.json"
STATE_DIR = "/var/lib/localcode"
STATUS = f"{STATE_DIR}/last-run.json"
LOCK = f"{STATE_DIR}/pull.lock"
CHECK_EVERY_S = 15 * 60
FIRST_BACKOFF_S = 15 * 60
REVISION = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # a git commit, or a configuration tarball's sha256
REPORT_MAX_BYTES = 1 << 20  # a status file is about 2 KB
UNITS = ("localcode-pull.service", "localcode-pull-scheduled.service", "localcode-pull.timer")
LAUNCH_DAEMON = "/Library/LaunchDaemons/com.localcode.pull.plist"

Result = Literal["running", "ok", "failed", "invalid-config", "unreachable"]


class PullSettings(BaseModel):
    """/etc/localcode/pull.json: what the host's runner needs, from its inventory data."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str                     # its name in the team inventory
    config_url: str
    branch: str
    inventory: str
    interval_s: int = Field(gt=0)
    report_url: str | None = None
    # Where pip takes the toolkit's wheels: None = the package index, else a mirror serving a bundle.
    wheels_url: str | None = None
    git: str | None = None        # the host's git, by its absolute path (a tarball configuration needs none)


def settings_for(config: HostConfig, host_name: str) -> PullSettings | None:
    """The pull settings this host's data asks for (None: pull mode off)."""
    if config.pull_interval is None or config.pull_config_url is None:
        return None
    mirrored = "mirror" in config.sources().values()
    return PullSettings(host=config.inventory_name or host_name, config_url=config.pull_config_url,
                        branch=config.pull_config_branch, inventory=config.pull_inventory,
                        interval_s=interval_seconds(config.pull_interval), report_url=config.pull_report_url,
                        wheels_url=f"{config.mirror_url}/wheels" if mirrored and config.mirror_url else None)


def settings_text(settings: PullSettings) -> str:
    return json.dumps(settings.model_dump(mode="json"), indent=1, sort_keys=True) + "\n"


def parse_settings(text: str) -> PullSettings:
    try:
        return PullSettings.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(f"{PULL_SETTINGS}: not what a push writes: {exc.errors()[0]['msg']}") from None


def _check_time(value: str) -> str:
    """An ISO 8601 time with its zone (a report from a host is read strictly)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("expected an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ValueError("expected a time with its zone")
    return value


Time = Annotated[str, AfterValidator(_check_time)]
Revision = Annotated[str, Field(pattern=REVISION.pattern)]


class DoctorVerdict(TypedDict):
    ok: bool
    failed: dict[str, str]   # check -> its detail


class Status(BaseModel):
    """One run, as last-run.json records it and the report URL receives it. Collected reports
    come from hosts: every field is checked before a table or page shows it."""

    model_config = ConfigDict(extra="forbid")
    host: str = Field(pattern=r"^[A-Za-z0-9@][A-Za-z0-9@/._-]{0,252}$")
    when: Time                              # ISO 8601, UTC
    result: Result
    reason: str = ""
    revision: Revision | None = None        # the configuration revision this run applied (or tried)
    applied_revision: Revision | None = None  # the last revision that converged
    last_success: Time | None = None
    consecutive_failures: int = Field(0, ge=0)
    versions: dict[str, str] = Field(default_factory=dict)
    sizing: str = ""
    changes: list[str] = Field(default_factory=list)
    operations: list[dict[str, str]] = Field(default_factory=list)  # {"name", "result": changed|no change|error}
    doctor: DoctorVerdict | None = None
    report: str = ""                                                # how sending it to report_url went


def parse_status(text: str) -> Status | None:
    try:
        return Status.model_validate_json(text)
    except ValidationError:
        return None


def now_iso(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")


def _seconds(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def backoff_s(failures: int, interval_s: int) -> int:
    """How long a scheduled run waits after `failures` failures in a row: 15 min, doubling,
    never more than the interval."""
    return min(FIRST_BACKOFF_S * 2 ** max(failures - 1, 0), interval_s)


def due(last: Status | None, interval_s: int, now: float) -> tuple[bool, str]:
    """Whether a scheduled run deploys now, and why (not)."""
    if last is None:
        return True, "no run recorded yet"
    if last.result == "running":  # this run holds the lock: that one was cut short (a reboot)
        return True, f"the run started at {last.when} did not finish"
    attempted = _seconds(last.when) or 0.0
    if last.consecutive_failures:
        wait = backoff_s(last.consecutive_failures, interval_s)
        if now < attempted + wait:
            return False, (f"backing off after {last.consecutive_failures} failed run(s) ({last.reason}); "
                           f"next try at {now_iso(attempted + wait)}")
        return True, f"{last.consecutive_failures} failed run(s), back-off over"
    succeeded = _seconds(last.last_success) or attempted
    if now < succeeded + interval_s:
        return False, f"the last run converged at {last.last_success}; next at {now_iso(succeeded + interval_s)}"
    return True, "the interval has passed"


def operations(results: dict | None) -> list[dict[str, str]]:
    """Each operation of a `pyinfra --json` run with its result on this one host."""
    out = []
    for op in ((results or {}).get("results") or {}).get("operations") or []:
        result = "error" if op.get("error") else "changed" if op.get("success") else "no change"
        out.append({"name": str(op.get("name", "")), "result": result})
    return out


def doctor_summary(report: dict | None) -> tuple[DoctorVerdict, dict[str, str]]:
    """The doctor's verdict ({"ok", "failed"}) and the versions it saw, from its JSON for one host."""
    if not report:
        return {"ok": False, "failed": {"doctor": "no report"}}, {}
    checks = report.get("checks") or []
    failed = {c["name"]: c.get("detail", "") for c in checks if c.get("status") == "fail"}
    versions = {c["name"]: c.get("detail", "") for c in checks if c.get("name") in ("ollama", "claude")}
    return {"ok": bool(report.get("ok")), "failed": failed}, versions


def read_reports(directory: Path) -> tuple[list[Status], list[str]]:
    """The status files collected in a directory (`<host>.json`, as pull runs PUT them), and the
    files that are not one (named, so a broken upload is seen, not skipped silently)."""
    statuses, unreadable = [], []
    for path in sorted(directory.glob("*.json")):
        try:
            with open(path, "rb") as upload:
                raw = upload.read(REPORT_MAX_BYTES + 1)
            status = parse_status(raw.decode()) if len(raw) <= REPORT_MAX_BYTES else None
        except (OSError, UnicodeDecodeError):
            status = None
        if status is None:
            unreadable.append(path.name)
        else:
            statuses.append(status)
    return statuses, unreadable


def _age_s(status: Status, now: float) -> float:
    return now - datetime.fromisoformat(status.when).timestamp()


def fleet_html(statuses: list[Status], now: float, directory: str, generated: str) -> str:
    rows = []
    for s in sorted(statuses, key=lambda s: s.host):
        age = _age_s(s, now)
        rows.append(s.model_dump() | {"age": f"{age / 3600:.1f} h ago", "stale": age > 2 * 86400})
    return render("fleet-status.html.j2", statuses=rows, converged=sum(s.result == "ok" for s in statuses),
                  directory=directory, generated=generated).decode()


def fleet_table(statuses: list[Status], now: float) -> str:
    """The fleet as its collected status files show it."""
    rows = []
    for s in sorted(statuses, key=lambda s: s.host):
        age = _age_s(s, now)
        doctor = "-" if not s.doctor else ("ok" if s.doctor["ok"] else f"fail: {', '.join(s.doctor['failed'])}")
        rows.append([s.host, f"{s.when} ({age / 3600:.1f} h ago)", s.result, (s.revision or "-")[:12],
                     (s.applied_revision or "-")[:12], s.sizing or "-", doctor, s.reason or "-"])
    return text_table(["HOST", "LAST RUN", "RESULT", "REVISION", "APPLIED", "SIZING", "DOCTOR", "WHY"], rows)
