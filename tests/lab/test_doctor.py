"""Issue 8 on the lab: after the full deploy every host passes the doctor; breaking one thing on
one host makes exactly that check fail, with its reason, and the exit status says so."""

from __future__ import annotations

import json
import subprocess

import pytest

from lab import fleet

from .conftest import REPO, Lab, lab_spec_file, start_lab

pytestmark = pytest.mark.lab
DROPIN = "/etc/systemd/system/ollama.service.d/localcode.conf"


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    path = lab_spec_file(tmp_path_factory.mktemp("doctor"), "doc", "10.222.0.0/16", hosts=["laptop", "airgap"])
    lab = start_lab(path)
    run = lambda *argv: subprocess.run(argv, cwd=REPO, env=lab.pyinfra_env(), capture_output=True, text=True)  # noqa: E731
    assert run(str(REPO / ".venv/bin/python"), "-m", "lab", "bundle", "--spec", str(path)).returncode == 0
    deployed = run(str(REPO / ".venv/bin/pyinfra"), "-y", "inventory/lab.py", "deploy.py")
    assert deployed.returncode == 0, deployed.stderr
    # After pyinfra's results, a line per host with what it got.
    report = deployed.stderr.split("--> What each host got:", 1)[1]
    for host in ("laptop", "airgap"):
        line = next(l for l in report.splitlines() if l.strip().startswith(host))
        assert " ok " in line and "Ollama" in line and "wired" in line, report
    yield lab
    fleet.down(lab.spec.name)


def doctor(lab: Lab, *args: str) -> tuple[int, list[dict]]:
    result = subprocess.run([str(REPO / ".venv/bin/localcode"), "doctor", "inventory/lab.py", "--json", *args],
                            cwd=REPO, env=lab.pyinfra_env(), capture_output=True, text=True, timeout=300)
    assert result.stdout.strip(), result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout)


def failing(reports: list[dict]) -> dict[str, dict[str, str]]:
    return {r["host"]: {c["name"]: c["detail"] for c in r["checks"] if c["status"] == "fail"}
            for r in reports if not r["ok"]}


def test_all_hosts_pass_deep(lab: Lab, tmp_path):
    code, reports = doctor(lab, "--deep", "--html", str(tmp_path / "report.html"))
    assert code == 0, failing(reports)
    names = {c["name"] for r in reports for c in r["checks"]}
    assert {"service", "ollama", "loopback", "models", "context", "tool call", "claude"} <= names
    assert any(n.startswith("claude -p ") for n in names)
    page = (tmp_path / "report.html").read_text()
    assert "2 of 2 hosts pass" in page and 'class="bar"' in page and "<script" not in page


@pytest.mark.parametrize(("host", "break_it", "repair", "check", "reason"), [
    ("laptop", "systemctl stop ollama", "systemctl start ollama", "service", "inactive"),
    ("laptop", f"sed -i s/127.0.0.1:11434/0.0.0.0:11434/ {DROPIN} && systemctl daemon-reload && "
               "systemctl restart ollama && sleep 1",
     f"sed -i s/0.0.0.0:11434/127.0.0.1:11434/ {DROPIN} && systemctl daemon-reload && systemctl restart ollama "
     "&& sleep 1", "loopback", "0.0.0.0:11434"),
    ("airgap", "ollama rm $(ollama list | awk '/^localcode\\//{print $1}')", None, "models", "missing"),
    ("airgap", "cp ~carol/.claude-local/settings.json /root/settings.keep && "
               "printf '{broken' > ~carol/.claude-local/settings.json",
     "cp /root/settings.keep ~carol/.claude-local/settings.json", "settings carol", "not valid JSON"),
])
def test_one_breakage_fails_exactly_its_check(lab: Lab, host, break_it, repair, check, reason):
    lab.ssh(host, break_it)
    try:
        code, reports = doctor(lab)
        assert code == 1
        assert set(failing(reports)) == {host}
        failed = failing(reports)[host]
        assert set(failed) == {check}, failed
        assert reason in failed[check]
        report = next(r for r in reports if r["host"] == host)
        assert next(c for c in report["checks"] if c["name"] == check)["remedy"]
    finally:
        if repair:
            lab.ssh(host, repair)
        else:  # a removed derived model comes back with a deploy
            subprocess.run([str(REPO / ".venv/bin/pyinfra"), "-y", "inventory/lab.py", "deploy.py", "--limit", host],
                           cwd=REPO, env=lab.pyinfra_env(), capture_output=True, check=True)
    assert doctor(lab)[0] == 0
