"""Pull mode: when a scheduled run is due (interval, back-off, a run cut short), the status a
run records and the fleet table built from collected files (pure); and the deploy step at plan
level on a Linux host and on a Mac (the Mac's rules: absolute paths, the system launchd domain)."""

from __future__ import annotations

import json

import pytest

from localcode import pull
from localcode.settings import HostConfig, validate_host_data, ConfigError

from .plan_harness import M, accounts, fresh_mac, linux_base, linux_hardware, no_ollama, plan_hosts

HOUR = 3600.0
T0 = 1_800_000_000.0  # a fixed "now"
PULL = {"pull_interval": "6h", "pull_config_url": "https://git.example.internal/platform/localcode.git",
        "pull_report_url": "https://reports.example.internal/localcode"}
HELPER = "/usr/local/lib/localcode/bin/localcode-pull-toolkit"


def status(**fields) -> pull.Status:
    return pull.Status(host="ws", when=pull.now_iso(T0), result="ok", last_success=pull.now_iso(T0), **fields)


def test_a_scheduled_run_keeps_to_the_interval():
    assert pull.due(None, int(6 * HOUR), T0) == (True, "no run recorded yet")
    assert pull.due(status(), int(6 * HOUR), T0 + 5 * HOUR)[0] is False
    assert pull.due(status(), int(6 * HOUR), T0 + 6 * HOUR) == (True, "the interval has passed")


def test_failures_back_off_doubling_up_to_the_interval():
    waits = [pull.backoff_s(n, int(6 * HOUR)) for n in range(1, 8)]
    assert waits == [900, 1800, 3600, 7200, 14400, 21600, 21600]
    failing = status(consecutive_failures=3).model_copy(update={"result": "unreachable", "reason": "mirror down"})
    go, why = pull.due(failing, int(6 * HOUR), T0 + 3599)
    assert not go and "backing off after 3 failed run(s) (mirror down)" in why
    assert pull.due(failing, int(6 * HOUR), T0 + 3600)[0]


def test_a_run_cut_short_is_due_at_once():
    cut = status().model_copy(update={"result": "running"})
    assert pull.due(cut, int(6 * HOUR), T0 + 60) == (True, f"the run started at {pull.now_iso(T0)} did not finish")


def test_the_settings_follow_the_hosts_data():
    config = HostConfig(**PULL, inventory_name="ws-dana.example.internal")
    settings = pull.settings_for(config, "@local")
    assert (settings.host, settings.interval_s, settings.branch, settings.wheels_url) == (
        "ws-dana.example.internal", 21600, "main", None)
    mirrored = HostConfig(**PULL, ollama_source="mirror", claude_source="mirror", model_source="mirror",
                          mirror_url="http://mirror.internal/localcode")
    assert pull.settings_for(mirrored, "ws").wheels_url == "http://mirror.internal/localcode/wheels"
    assert pull.settings_for(HostConfig(), "ws") is None
    assert pull.parse_settings(pull.settings_text(settings)) == settings
    with pytest.raises(ValueError, match="not what a push writes"):
        pull.parse_settings('{"host": "ws"}')


@pytest.mark.parametrize(("data", "complaint"), [
    ({"pull_interval": "6h"}, "pull mode needs pull_config_url"),
    ({**PULL, "ollama_source": "bundle", "bundle_dir": "/srv/b"}, "a host that deploys itself needs 'internet' or"),
    ({**PULL, "pull_interval": "5m"}, "at least 15m"),
    ({**PULL, "pull_config_url": "https://git.example.internal/x.git?ref=$(id)"}, "expected a git URL"),
    ({**PULL, "pull_report_url": "ftp://reports"}, "expected an http(s) base URL"),
])
def test_pull_settings_are_validated(data, complaint):
    with pytest.raises(ConfigError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        validate_host_data("ws", data, for_deploy=False)


def test_a_run_is_read_from_pyinfra_and_the_doctor():
    results = {"results": {"operations": [{"name": "Derived model", "success": ["@local"], "error": [], "no_change": []},
                                          {"name": "Base model", "success": [], "error": [], "no_change": ["@local"]}]}}
    assert pull.operations(results) == [{"name": "Derived model", "result": "changed"},
                                        {"name": "Base model", "result": "no change"}]
    report = {"ok": False, "checks": [{"name": "ollama", "status": "pass", "detail": "server 0.30.0 (floor 0.14.3)"},
                                      {"name": "claude", "status": "pass", "detail": "claude 2.1.330 (pinned 2.1.330)"},
                                      {"name": "tool call", "status": "fail", "detail": "no tool_use block"}]}
    verdict, versions = pull.doctor_summary(report)
    assert verdict == {"ok": False, "failed": {"tool call": "no tool_use block"}}
    assert versions == {"ollama": "server 0.30.0 (floor 0.14.3)", "claude": "claude 2.1.330 (pinned 2.1.330)"}
    assert pull.doctor_summary(None)[0]["ok"] is False


def test_the_fleet_table_comes_from_collected_files(tmp_path):
    (tmp_path / "ws.json").write_text(status(revision="a" * 40, applied_revision="a" * 40, sizing="gpt-oss:20b at 128K",
                                             doctor={"ok": True, "failed": {}}).model_dump_json())
    (tmp_path / "mac.json").write_text(status(revision="b" * 40).model_copy(update={
        "host": "mac", "result": "invalid-config", "reason": "num_ctx = 'lots'"}).model_dump_json())
    (tmp_path / "junk.json").write_text("<html>502 Bad Gateway</html>")
    statuses, unreadable = pull.read_reports(tmp_path)
    assert [s.host for s in statuses] == ["mac", "ws"] and unreadable == ["junk.json"]
    table = pull.fleet_table(statuses, T0 + 2 * HOUR).splitlines()
    assert table[0].split()[:3] == ["HOST", "LAST", "RUN"]
    assert "invalid-config" in table[1] and "num_ctx = 'lots'" in table[1] and "2.0 h ago" in table[1]
    assert "aaaaaaaaaaaa" in table[2] and "gpt-oss:20b at 128K" in table[2] and " ok " in table[2]
    page = pull.fleet_html(statuses, T0, str(tmp_path), "now")
    assert "num_ctx = &#39;lots&#39;" in page and "<script" not in page


@pytest.mark.parametrize("change", [
    {"when": "yesterday"},                                   # not a time
    {"when": "2026-12-03T06:51:26"},                         # no zone
    {"revision": "HEAD; rm -rf /"},                          # not a revision
    {"consecutive_failures": -1},
    {"doctor": {"ok": "maybe", "failed": []}},               # not the doctor's verdict
    {"host": "<script>alert(1)</script>"},
    {"surprise": 1},                                         # a key no run writes
])
def test_a_report_from_a_host_is_read_strictly(tmp_path, change):
    good = json.loads(status().model_dump_json())
    (tmp_path / "ws.json").write_text(json.dumps(good | change))
    (tmp_path / "big.json").write_text(json.dumps(good | {"reason": "x" * pull.REPORT_MAX_BYTES}))
    statuses, unreadable = pull.read_reports(tmp_path)
    assert statuses == [] and unreadable == ["big.json", "ws.json"]


# The deploy step at plan level.

def linux_host(python: bool = True, **data) -> dict:
    pull_fact = [f"{M}python", *(["/usr/bin/python3"] if python else []), f"{M}git", "/usr/bin/git",
                 f"{M}toolkit", f"{M}config", f"{M}scheduled"]
    return {"developer_users": ["dev"], **data, "fake_responses": {
        **linux_base(), "uname -s; uname -m": linux_hardware(32) + accounts(("dev", 1000, "/home/dev", "/bin/bash")),
        "/api/tags": no_ollama(), "import sys, venv, ensurepip": pull_fact}}


def test_a_push_puts_a_linux_host_in_pull_mode(monkeypatch):
    ops = plan_hosts([("@fake/ws", linux_host(**PULL))], monkeypatch)["@fake/ws"].by_name()
    assert ops["Pull mode: toolkit and configuration"].commands == [
        f"{HELPER} /usr/local/lib/localcode/pull /usr/bin/python3 /usr/bin/git {PULL['pull_config_url']} main -"]
    written = ops["Pull mode: settings and schedule"].uploads
    settings = json.loads(written["/etc/localcode/pull.json.localcode-new"])
    assert settings == {"host": "@fake/ws", "git": "/usr/bin/git", "config_url": PULL["pull_config_url"], "branch": "main",
                        "inventory": "inventory/team.py", "interval_s": 21600, "report_url": PULL["pull_report_url"],
                        "wheels_url": None}
    timer = written["/etc/systemd/system/localcode-pull.timer.localcode-new"]
    assert "RandomizedDelaySec=1800" in timer and "Unit=localcode-pull-scheduled.service" in timer
    assert "ExecStart=/usr/local/lib/localcode/pull/venv/bin/localcode pull --scheduled" in \
        written["/etc/systemd/system/localcode-pull-scheduled.service.localcode-new"]
    assert ops["Pull mode: scheduled"].commands == ["systemctl enable --now localcode-pull.timer"]


def test_a_changed_timer_is_restarted_an_unchanged_one_left_alone(monkeypatch):
    """A running timer keeps its old schedule until restarted: restart it when its units changed."""
    from localcode import pull_setup
    from localcode.userfiles import FileState

    config = HostConfig(**PULL)
    settings = pull.settings_for(config, "@fake/ws").model_copy(update={"git": "/usr/bin/git"})
    current = {f.path: FileState(f.content.decode(), f.mode.lstrip("0"), 0, 0)
               for f in pull_setup._files(settings, config, "Linux")}
    for splay, expected in (("30m", []), ("1h", ["systemctl enable --now localcode-pull.timer",
                                                  "systemctl restart localcode-pull.timer"])):
        data = linux_host(**PULL, pull_splay=splay)
        data["fake_responses"]["import sys, venv, ensurepip"] = [
            f"{M}python", "/usr/bin/python3", f"{M}git", "/usr/bin/git", f"{M}toolkit", "a" * 40, f"{M}config",
            "a" * 40, f"{M}scheduled", "enabled", "active"]
        monkeypatch.setattr(pull_setup, "up_to_date", lambda f, observed: f.content.decode() == (
            current[f.path].text if f.path in current else None))
        ops = plan_hosts([("@fake/ws", data)], monkeypatch)["@fake/ws"].by_name()
        assert ops["Pull mode: scheduled"].commands == expected, splay
        assert ops["Pull mode: toolkit and configuration"].commands == []


def test_a_host_without_a_usable_python_fails_alone_with_the_fix(monkeypatch):
    ops = plan_hosts([("@fake/ws", linux_host(python=False, **PULL))], monkeypatch)["@fake/ws"].by_name()
    assert "@fake/ws: pull mode needs python3 (3.11 or newer, with venv) on the host (apt-get install python3-venv git)" \
        in ops["Pull mode"].text() and "exit 1" in ops["Pull mode"].text()


@pytest.mark.parametrize(("section", "line"), [
    ("python", "/tmp/evil/python3"), ("git", "/home/dev/bin/git"), ("toolkit", "main"), ("config", "a" * 39 + "Z"),
])
def test_the_pull_fact_is_parsed_strictly(section, line):
    from pyinfra.api.exceptions import FactProcessError

    from localcode.pull_setup import PullHostFact

    answer = {"python": "/usr/bin/python3", "git": "/usr/bin/git", "toolkit": "a" * 40, "config": "b" * 64,
              "scheduled": "enabled"}
    def output() -> list[str]:
        return [text for name, value in answer.items() for text in (f"{M}{name}", value)]

    fact = PullHostFact()
    assert fact.process(output()).config_revision == "b" * 64
    answer[section] = line
    with pytest.raises(FactProcessError, match=f"unexpected {section} report"):
        fact.process(output())


def test_pull_mode_off_touches_nothing_that_is_not_there(monkeypatch):
    ops = plan_hosts([("@fake/ws", linux_host())], monkeypatch)["@fake/ws"].by_name()
    assert ops["Pull mode"].commands == [] and "Pull mode: toolkit and configuration" not in ops


def test_a_mac_gets_a_launch_daemon_in_the_system_domain(monkeypatch):
    mac = fresh_mac()
    data = mac.host(**PULL)
    data["fake_responses"]["import sys, venv, ensurepip"] = [
        f"{M}python", "/opt/homebrew/bin/python3", f"{M}git", "/opt/homebrew/bin/git", f"{M}toolkit", f"{M}config",
        f"{M}scheduled"]
    deploy = plan_hosts([("@fake/mac", data)], monkeypatch)["@fake/mac"]
    mac.assert_runs_as_on_a_mac(deploy)
    ops = deploy.by_name()
    plist = ops["Pull mode: settings and schedule"].uploads["/Library/LaunchDaemons/com.localcode.pull.plist.localcode-new"]
    assert "<string>--scheduled</string>" in plist and "<integer>900</integer>" in plist
    assert ops["Pull mode: scheduled"].commands == [
        "/bin/sh -c '/bin/launchctl bootout \"$1\" 2>/dev/null; /bin/launchctl bootstrap system \"$2\"' localcode "
        "system/com.localcode.pull /Library/LaunchDaemons/com.localcode.pull.plist"]
    assert ops["Pull mode: toolkit and configuration"].commands[0].split()[2] == "/opt/homebrew/bin/python3"
