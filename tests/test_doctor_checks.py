"""The doctor's checks (pure) over gathered data: one broken thing fails exactly its check."""

from __future__ import annotations

import json

from localcode.doctor import FAIL, PASS, SKIP, evaluate, html, memory, table
from localcode.facts import HostHardware
from localcode.plan import plan_host
from localcode.settings import validate_host_data
from localcode.sizing import GiB
from localcode.userfiles import FileState

CONFIG = validate_host_data("ws", {"developer_users": ["dev"]})
PLAN = plan_host("ws", CONFIG, HostHardware("Linux", "x86_64", 64 * GiB, login="root"))
D = PLAN.decision
SETTINGS = "/home/dev/.claude-local/settings.json"
RC = "/home/dev/.bashrc"


def files(**texts: str) -> dict[str, FileState]:
    return {SETTINGS: FileState(texts.get("settings", json.dumps({"model": D.name})), "644", 1000, 1000),
            RC: FileState(texts.get("rc", "# >>> localcode >>>\nalias claude-local='env claude'\n"
                                          "# <<< localcode <<<\n"), "644", 1000, 1000)}


def healthy() -> dict:
    tags = {"models": [{"name": D.model}, {"name": D.name}]}
    show = {"parameters": f"num_ctx                        {D.num_ctx}"}
    smoke = 'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"get_weather","input":{}}}'
    return {
        "version": ['{"version":"0.30.0"}'], "service": ["active"], "listen": ["127.0.0.1:11434"],
        "tags": [json.dumps(tags)], "show": [json.dumps(show)],
        "env": [f"OLLAMA_HOST=127.0.0.1:11434 OLLAMA_KV_CACHE_TYPE={D.kv_cache_type}" if D.kv_cache_type != "f16"
                else "OLLAMA_HOST=127.0.0.1:11434"],
        "smoke": smoke.splitlines(), "claude": ["2.1.330 (Claude Code)"],
        "files": files(),
    }


def run(data: dict):
    return evaluate("ws", CONFIG, PLAN, data, {"dev": [SETTINGS]}, {"dev": [RC]}, deep=False)


def failed(report) -> set[str]:
    return {c.name for c in report.checks if c.status == FAIL}


def test_a_healthy_host_passes_every_check():
    report = run(healthy())
    assert report.ok and {c.status for c in report.checks} == {PASS}
    assert "✓" in table([report]) and "1 of 1 hosts pass" in html([report])
    bars = memory(PLAN, CONFIG)
    assert bars["weights"] + bars["kv_cache"] + bars["buffers"] + bars["free"] == bars["budget"]


def test_each_breakage_fails_exactly_its_check():
    cases = {
        "service": {"service": ["inactive"], "version": [""]},
        "loopback": {"listen": ["0.0.0.0:11434"]},
        "models": {"tags": [json.dumps({"models": [{"name": D.model}]})]},
        "context": {"show": [json.dumps({"parameters": "num_ctx                        4096"})]},
        "tool call": {"smoke": ['data: {"type":"content_block_start","content_block":{"type":"text","text":"{}"}}']},
        "claude": {"claude": []},
        "alias dev": {"files": files(rc="export A=1\n")},
        "settings dev": {"files": files(settings="{broken")},
    }
    for check, change in cases.items():
        report = run({**healthy(), **change})
        assert failed(report) == {check}, (check, [(c.name, c.status, c.detail) for c in report.checks])
        assert all(c.remedy for c in report.checks if c.status == FAIL)


def test_a_stopped_server_skips_what_depends_on_it():
    report = run({**healthy(), "service": ["inactive"], "version": [""]})
    statuses = {c.name: c.status for c in report.checks}
    assert statuses["service"] == FAIL and statuses["ollama"] == SKIP and "models" not in statuses


def test_cloud_settings_in_a_login_environment_are_reported_not_fixed():
    from localcode.doctor import WARN, cloud_environment_check
    from localcode.wiring import local_environment

    ours = set(local_environment(CONFIG, D))
    clean = cloud_environment_check("dev", ["EDITOR"], ours)
    assert clean.status == PASS and clean.detail == "no cloud settings"
    covered = cloud_environment_check("dev", ["CLAUDE_CODE_USE_BEDROCK", "ANTHROPIC_MODEL", "AWS_PROFILE"], ours)
    assert covered.status == PASS and "ANTHROPIC_MODEL" in covered.detail
    winning = cloud_environment_check("dev", ["ANTHROPIC_BETAS", "ANTHROPIC_MODEL"], ours)
    assert winning.status == WARN and winning.detail.startswith("ANTHROPIC_BETAS in dev's login environment")
