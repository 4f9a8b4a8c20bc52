"""Pull mode on the lab: one push puts a host in pull mode; from then on the control machine
cannot reach it (SSH blocked) and the host follows the team's configuration repository by
itself (served by the lab mirror over git's dumb HTTP protocol), reporting each run to the
mirror (WebDAV PUT). A changed model parameter converges, a configuration that fails validation
leaves the host as it was and says why, overlapping triggers run once, a run cut short is picked
up, `localcode doctor --reports` shows the fleet without SSH, and pull mode off removes the timer."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import fleet
from lab.inventory import source_data
from lab.mirror import GIT_PATH, REPORTS_PATH

from .conftest import REPO, Lab
from .deploy_helpers import changed_ops, console, deploy, lab_with_bundle, repository_archive, write_inventory

pytestmark = pytest.mark.lab
HOST, USER = "roamer", "rita"
RUNNER = "/usr/local/lib/localcode/pull/venv/bin/localcode"
MODELFILE_DIR = "/usr/local/lib/localcode/models"


class TeamRepository:
    """The team's configuration: a working copy on the control machine, published to a bare
    repository inside the lab mirror's tree."""

    def __init__(self, work: Path, bare: Path):
        self.work, self.bare = work, bare

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(["git", "-c", "user.name=Platform", "-c", "user.email=platform@example.internal",
                               *args], cwd=cwd or self.work, check=True, capture_output=True, text=True).stdout.strip()

    def publish(self, inventory: str, message: str) -> str:
        """Commit the team inventory and publish it; the new revision."""
        (self.work / "inventory/team.py").write_text(inventory)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", str(self.bare), "HEAD:main")
        self.git("update-server-info", cwd=self.bare)
        return self.git("rev-parse", "HEAD")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    spec = {"name": "pull", "subnet": "10.248.0.0/16",
            "hosts": [{"name": HOST, "ram_gib": 24, "users": [{"name": USER}]}]}
    with lab_with_bundle(spec, tmp_path_factory.mktemp("pull")) as lab:
        yield lab


def mirror_root(lab: Lab) -> Path:
    return Path(lab.state.data["services"]["mirror_root"])


def pull_data(lab: Lab) -> dict:
    mirror = lab.spec.internet.mirror_url
    return {"pull_interval": "6h", "pull_config_url": f"{mirror}{GIT_PATH}/team.git",
            "pull_report_url": f"{mirror}{REPORTS_PATH}", **source_data("internet", lab.spec, mirror_root(lab))}


def team_inventory(lab: Lab, **extra) -> str:
    data = {"developer_users": [USER], **pull_data(lab), **extra}
    return f'"""The team."""\n\nlaptops = [({HOST!r}, {data!r})]\n'


@pytest.fixture(scope="module")
def team(lab: Lab, tmp_path_factory) -> TeamRepository:
    work = tmp_path_factory.mktemp("team") / "work"
    work.mkdir()
    subprocess.run(["tar", "-xzf", "-", "-C", str(work)], input=repository_archive(prefix=""), check=True)
    bare = mirror_root(lab) / GIT_PATH.lstrip("/") / "team.git"
    for earlier in (bare, mirror_root(lab) / REPORTS_PATH.lstrip("/")):  # the mirror tree is kept between labs
        shutil.rmtree(earlier, ignore_errors=True)
    bare.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    repo = TeamRepository(work, bare)
    repo.git("init", "-q", "-b", "main")
    repo.publish(team_inventory(lab), "The team")
    return repo


def status(lab: Lab) -> dict:
    return json.loads(console(lab, HOST, "cat /var/lib/localcode/last-run.json").stdout)


def ssh_blocked(lab: Lab, blocked: bool) -> None:
    """The control machine reaches the host over SSH, or not at all."""
    ns = lab.state.data["hosts"][HOST]["netns"]
    rules = ("table inet nossh {\n chain in {\n  type filter hook input priority 0; policy accept;\n"
             "  tcp dport 22 drop\n }\n}\n")
    if blocked:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True)
    else:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "nossh"], check=True)


def mirror_blocked(lab: Lab, blocked: bool) -> None:
    """The lab mirror (the configuration repository, the report URL) unreachable from the host."""
    ns = lab.state.data["hosts"][HOST]["netns"]
    port = lab.spec.internet.mirror_port
    rules = ("table inet nomirror {\n chain out {\n  type filter hook output priority 0; policy accept;\n"
             f"  tcp dport {port} reject with tcp reset\n }}\n}}\n")
    if blocked:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True)
    else:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "nomirror"], check=True)


def modelfile(lab: Lab) -> str:
    return console(lab, HOST, f"cat {MODELFILE_DIR}/*.Modelfile").stdout


def test_one_push_then_the_host_follows_the_repository_alone(lab: Lab, team: TeamRepository, tmp_path):
    first = team.git("rev-parse", "HEAD")
    code, results, err = deploy(lab, write_inventory(tmp_path / "push.py", lab, {HOST: pull_data(lab)}))
    assert code == 0, err[-3000:]
    assert ("Pull mode: toolkit and configuration", [HOST]) in changed_ops(results)
    code, results, err = deploy(lab, write_inventory(tmp_path / "again.py", lab, {HOST: pull_data(lab)}))
    assert code == 0 and changed_ops(results) == [], err[-3000:]
    timer = console(lab, HOST, "systemctl is-enabled localcode-pull.timer; systemctl is-active localcode-pull.timer")
    assert timer.stdout.split() == ["enabled", "active"]
    verified = console(lab, HOST, "systemd-analyze verify --man=no /etc/systemd/system/localcode-pull.timer "
                                  "/etc/systemd/system/localcode-pull.service "
                                  "/etc/systemd/system/localcode-pull-scheduled.service 2>&1 | grep -v 'process list'")
    assert verified.stdout.strip() == "", verified.stdout

    ssh_blocked(lab, True)
    try:
        assert subprocess.run([*fleet.ssh_argv(lab.state, HOST, "root"), "-o", "ConnectTimeout=3", "true"],
                              capture_output=True).returncode != 0
        # A changed model parameter in the served configuration: the host converges to it.
        second = team.publish(team_inventory(lab, model_parameters={"temperature": 0.2}), "Cooler model")
        run = console(lab, HOST, "systemctl start localcode-pull.service")
        assert run.returncode == 0, run.stderr
        got = status(lab)
        assert (got["result"], got["revision"], got["applied_revision"]) == ("ok", second, second), got
        assert any("created localcode/" in change for change in got["changes"]), got
        assert got["doctor"]["ok"] and got["report"].startswith("sent to "), got
        assert "PARAMETER temperature 0.2" in modelfile(lab)
        assert first != second
        reported = json.loads((mirror_root(lab) / REPORTS_PATH.lstrip("/") / f"{HOST}.json").read_text())
        assert reported["revision"] == second and reported["result"] == "ok"

        # A value that fails validation: nothing on the host changes; the status says why.
        before = modelfile(lab)
        broken = team.publish(team_inventory(lab, model_parameters={"temperature": 0.2}, num_ctx="lots"), "Oops")
        run = console(lab, HOST, "systemctl start localcode-pull.service")
        got = status(lab)
        assert run.returncode != 0 and got["result"] == "invalid-config", got
        assert "num_ctx" in got["reason"] and got["revision"] == broken and got["applied_revision"] == second, got
        assert modelfile(lab) == before

        # The mirror (configuration and report URL) down: the run says so and keeps the status here.
        mirror_blocked(lab, True)
        try:
            run = console(lab, HOST, "systemctl start localcode-pull.service")
        finally:
            mirror_blocked(lab, False)
        got = status(lab)
        assert run.returncode != 0 and got["result"] == "unreachable", got
        assert got["reason"].startswith("cannot fetch ") and got["report"].startswith("not sent to "), got
        assert (got["consecutive_failures"], got["applied_revision"]) == (2, second), got

        # The scheduled run backs off after failures; the manual one does not wait.
        scheduled = console(lab, HOST, "systemctl start localcode-pull-scheduled.service; "
                                       "journalctl -u localcode-pull-scheduled.service -n 5 --no-pager -o cat")
        assert "backing off after 2 failed run(s)" in scheduled.stdout, scheduled.stdout
        assert status(lab)["when"] == got["when"]

        # Fixed: two triggers at once run once.
        fixed = team.publish(team_inventory(lab, model_parameters={"temperature": 0.2}), "Fixed")
        both = console(lab, HOST, f"{RUNNER} pull & {RUNNER} pull & wait")
        assert both.stderr.count("another pull run holds the lock") == 1, both.stderr
        got = status(lab)
        assert (got["result"], got["applied_revision"], got["consecutive_failures"]) == ("ok", fixed, 0), got

        # A run cut short (the machine went down mid-run) is picked up by the next scheduled run.
        console(lab, HOST, "systemctl start --no-block localcode-pull.service; for i in $(seq 100); do "
                           "grep -q '\"result\": \"running\"' /var/lib/localcode/last-run.json && break; sleep 0.1; "
                           "done; systemctl kill -s KILL localcode-pull.service; sleep 1")
        assert status(lab)["result"] == "running"
        console(lab, HOST, "systemctl start localcode-pull-scheduled.service")
        assert status(lab)["result"] == "ok"
    finally:
        ssh_blocked(lab, False)

    # The fleet from the collected status files, without SSH.
    reports = mirror_root(lab) / REPORTS_PATH.lstrip("/")
    shown = subprocess.run([str(REPO / ".venv/bin/localcode"), "doctor", "--reports", str(reports), "--json",
                            "--html", str(tmp_path / "fleet.html")], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    (row,) = json.loads(shown.stdout)
    assert (row["host"], row["result"], row["applied_revision"]) == (HOST, "ok", fixed)
    assert HOST in (tmp_path / "fleet.html").read_text()

    # Pull mode off: the timer and its units go.
    code, results, err = deploy(lab, write_inventory(tmp_path / "off.py", lab))
    assert code == 0 and ("Pull mode", [HOST]) in changed_ops(results), err[-3000:]
    gone = console(lab, HOST, "systemctl is-enabled localcode-pull.timer; ls /etc/systemd/system/localcode-pull* "
                              "/usr/local/lib/localcode/pull 2>&1")
    assert "No such file" in gone.stdout and "enabled" not in gone.stdout.split(), gone.stdout
