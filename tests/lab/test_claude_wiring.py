"""Issue 6 on the lab, as each developer user: the alias in a real interactive login shell of
the user's own shell, plain `claude` in a configured project, a haiku subagent sent the
derived model, and pre-existing user content preserved byte for byte."""

from __future__ import annotations

import json

import pytest

from lab import fleet

from .conftest import Lab, lab_spec_file, q, start_lab
from .deploy_helpers import changed_ops, deploy, host_specific_names, write_inventory

pytestmark = pytest.mark.lab
HOSTS = ("laptop", "gpuws", "bigbox")
LOG = "/usr/share/ollama/.ollama/standin-requests.jsonl"
LOGIN = {"bash": "bash -lic", "zsh": "zsh -lic", "fish": "fish -lic"}
PROJECT_SETTINGS = '{\n    "permissions": {"allow": ["Bash(make test:*)"]},\n    "env": {"EDITOR": "vim"}\n}\n'
CLAUDE_JSON = '{"numStartups": 3, "projects": {"/tmp": {"allowedTools": []}}}'
RC_LINES = "# my own settings\nexport PAGER=less\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    path = lab_spec_file(tmp_path_factory.mktemp("wire"), "wire", "10.220.0.0/16", hosts=list(HOSTS))
    lab = start_lab(path)
    yield lab
    fleet.down(lab.spec.name)


def users(lab: Lab):
    return [(h.name, u) for h in lab.spec.hosts for u in h.users]


def rc_file(user) -> str:
    return {"bash": ".bashrc", "zsh": ".zshrc", "fish": ".config/fish/config.fish"}[user.shell]


def seed_user_content(lab: Lab) -> dict[tuple[str, str], dict[str, str]]:
    """Pre-existing files the deploy must preserve; returns their texts per (host, user)."""
    seeded = {}
    for host, user in users(lab):
        home = f"/home/{user.name}"
        files = {f"{home}/{rc_file(user)}": RC_LINES, f"{home}/project/.claude/settings.json": PROJECT_SETTINGS,
                 f"{home}/.claude.json": CLAUDE_JSON}
        for path, text in files.items():
            lab.ssh(host, f"mkdir -p $(dirname {q(path)}) && printf %s {q(text)} > {q(path)}", user=user.name)
        seeded[(host, user.name)] = files
    return seeded


def derived(lab: Lab, host: str) -> str:
    names = json.loads(lab.ssh(host, "curl -sf http://127.0.0.1:11434/api/tags").stdout)["models"]
    return next(m["name"] for m in names if m["name"].startswith("localcode/"))


def messages_since(lab: Lab, host: str, start: int) -> list[dict]:
    lines = lab.ssh(host, f"tail -n +{start + 1} {LOG}").stdout.splitlines()
    return [json.loads(line) for line in lines if '"/v1/messages"' in line]


def log_length(lab: Lab, host: str) -> int:
    return int(lab.ssh(host, f"wc -l < {LOG}").stdout)


def test_wiring_per_developer_user(lab: Lab, tmp_path):
    seeded = seed_user_content(lab)
    projects = {h.name: {"claude_projects": {u.name: [f"/home/{u.name}/project"] for u in h.users}}
                for h in lab.spec.hosts}
    inventory = write_inventory(tmp_path / "wire.py", lab, projects)
    code, results, err = deploy(lab, inventory)
    assert code == 0, err
    # What each host got, in the run's --json output: every developer wired, every host ok.
    got = {h["host"]: h for h in results["localcode"]}
    assert set(got) == set(HOSTS) and all(h["result"] == "ok" for h in got.values()), got
    for host, user in users(lab):
        assert any(c.startswith(f"wired {user.name}") for c in got[host]["changes"]), got[host]

    for host, user in users(lab):
        model = derived(lab, host)
        home = f"/home/{user.name}"
        # Our files belong to the user; their own text is still there, byte for byte.
        for path, text in seeded[(host, user.name)].items():
            now = lab.ssh(host, f"cat {q(path)}").stdout
            if path.endswith(("rc", "config.fish")):
                assert now.startswith(text) if user.shell != "fish" else now == text
        owners = lab.ssh(host, f"stat -c %U {home}/project/.claude/settings.json {home}/.claude.json "
                               f"{home}/.claude-local/settings.json").stdout.split()
        assert owners == [user.name] * 3
        settings = json.loads(lab.ssh(host, f"cat {home}/project/.claude/settings.json").stdout)
        assert settings["permissions"] == {"allow": ["Bash(make test:*)"], "defaultMode": "default"}
        assert settings["env"]["EDITOR"] == "vim"
        assert settings["model"] == model
        trust = json.loads(lab.ssh(host, f"cat {home}/.claude.json").stdout)
        assert trust["numStartups"] == 3 and trust["projects"]["/tmp"] == {"allowedTools": []}
        assert trust["projects"][f"{home}/project"]["hasTrustDialogAccepted"] is True

        # The alias, in an interactive login shell of the user's own shell.
        start = log_length(lab, host)
        out = lab.ssh(host, f"{LOGIN[user.shell]} {q('claude-local -p hi --output-format json')} 2>/dev/null",
                      user=user.name, timeout=180).stdout
        result = json.loads(out[out.index("{"):])
        assert result["is_error"] is False and model in result["modelUsage"], result
        assert {m["model"] for m in messages_since(lab, host, start)} == {model}

        # Plain claude in the configured project: the project's settings alone point it home.
        start = log_length(lab, host)
        plain = lab.ssh(host, f"cd {home}/project && env | grep -c ANTHROPIC_ ; "
                              "CLAUDE_CODE_MAX_RETRIES=0 claude -p hi --output-format json 2>/dev/null",
                        user=user.name, timeout=180, check=False).stdout
        count, _, body = plain.partition("\n")
        assert count.strip() == "0"
        assert json.loads(body)["is_error"] is False
        assert {m["model"] for m in messages_since(lab, host, start)} == {model}


def test_haiku_subagent_is_sent_the_derived_model(lab: Lab):
    host, user = users(lab)[0]
    model = derived(lab, host)
    agent = "---\nname: quick\ndescription: A quick helper for small lookups\nmodel: haiku\n---\nAnswer briefly.\n"
    lab.ssh(host, f"mkdir -p ~/.claude-local/agents && printf %s {q(agent)} > ~/.claude-local/agents/quick.md",
            user=user.name)
    start = log_length(lab, host)
    prompt = "use the Agent tool with `look around` and `subagent_type=quick`"
    lab.ssh(host, f"{LOGIN[user.shell]} {q('claude-local -p ' + q(prompt) + ' --output-format json')}",
            user=user.name, timeout=180)
    sent = messages_since(lab, host, start)
    assert len(sent) >= 3  # main turn, the subagent's turn(s), the main turn after the tool result
    assert {m["model"] for m in sent} == {model}


def test_second_run_changes_nothing(lab: Lab, tmp_path):
    projects = {h.name: {"claude_projects": {u.name: [f"/home/{u.name}/project"] for u in h.users}}
                for h in lab.spec.hosts}
    before = {(h, u.name): lab.ssh(h, f"cat /home/{u.name}/{rc_file(u)} /home/{u.name}/.claude.json").stdout
              for h, u in users(lab)}
    code, results, err = deploy(lab, write_inventory(tmp_path / "again.py", lab, projects))
    assert code == 0, err
    assert changed_ops(results) == []
    assert host_specific_names(results, lab) == []
    assert all(h["result"] == "ok" and h["changes"] == [] for h in results["localcode"]), results["localcode"]
    after = {(h, u.name): lab.ssh(h, f"cat /home/{u.name}/{rc_file(u)} /home/{u.name}/.claude.json").stdout
             for h, u in users(lab)}
    assert after == before
