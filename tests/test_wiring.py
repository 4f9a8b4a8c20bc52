"""Wiring (pure): the alias in each shell's syntax, the environment for every tier, project
settings merged without touching other keys, air-gapped defaults."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from localcode.facts import Account
from localcode.settings import validate_host_data
from localcode.sizing import Decision
from localcode.textedit import BEGIN, END
from localcode.userfiles import FileState
from localcode.wiring import account_files, base_url, candidate_paths, local_environment, rc_paths, user_edits

DECISION = Decision("qwen3-coder:30b", "localcode/qwen3-coder:30b-128k", 131072, "q8_0", 40 * 2**30,
                    30 * 2**30, "GPU", "fits", min_ollama="0.14.3")


def account(shell: str, name: str = "dev") -> Account:
    return Account(name, 1000, 1000, f"/home/{name}", shell)


AIRGAPPED = {"network": "airgapped", "ollama_source": "mirror", "claude_source": "mirror", "model_source": "mirror",
             "mirror_url": "http://mirror.internal/localcode"}


def config(**data):
    return validate_host_data("h", {"developer_users": ["dev"], **data})


def test_airgapped_environment_adds_no_egress():
    air = local_environment(config(**AIRGAPPED), DECISION)
    assert air == {**local_environment(config(), DECISION), "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                   "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1"}


def test_base_url_is_the_root_and_never_a_wildcard():
    assert base_url("127.0.0.1:11434") == "http://127.0.0.1:11434"
    assert base_url("0.0.0.0:8000") == "http://127.0.0.1:8000"


# What claude-local's profile and every configured project must carry, spelled out here (not
# taken from the module) so that dropping a variable from the code fails a test.
EXPECTED_ENV = {
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:11434", "ANTHROPIC_AUTH_TOKEN": "ollama", "ANTHROPIC_API_KEY": "",
    "ANTHROPIC_MODEL": DECISION.name, "ANTHROPIC_SMALL_FAST_MODEL": DECISION.name,
    "ANTHROPIC_DEFAULT_OPUS_MODEL": DECISION.name, "ANTHROPIC_DEFAULT_SONNET_MODEL": DECISION.name,
    "ANTHROPIC_DEFAULT_HAIKU_MODEL": DECISION.name, "ANTHROPIC_DEFAULT_FABLE_MODEL": DECISION.name,
    "CLAUDE_CODE_SUBAGENT_MODEL": DECISION.name,
    "CLAUDE_CODE_USE_BEDROCK": "0", "CLAUDE_CODE_USE_VERTEX": "0", "CLAUDE_CODE_USE_FOUNDRY": "0",
    "CLAUDE_CODE_USE_ANTHROPIC_AWS": "0", "CLAUDE_CODE_USE_ANTHROPIC_GOOGLE_CLOUD": "0", "CLAUDE_CODE_USE_MANTLE": "0",
    "CLAUDE_CODE_USE_GATEWAY": "0", "CLAUDE_CODE_EXTRA_BODY": "",
    "CLAUDE_CODE_OAUTH_TOKEN": "", "ANTHROPIC_CUSTOM_HEADERS": "", "ANTHROPIC_BEDROCK_BASE_URL": "",
    "ANTHROPIC_VERTEX_BASE_URL": "", "ANTHROPIC_VERTEX_PROJECT_ID": "", "ANTHROPIC_FOUNDRY_BASE_URL": "",
    "ANTHROPIC_FOUNDRY_RESOURCE": "", "ANTHROPIC_FOUNDRY_API_KEY": "", "AWS_BEARER_TOKEN_BEDROCK": "",
    "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "", "CLAUDE_CODE_SKIP_VERTEX_AUTH": "", "CLAUDE_CODE_SKIP_FOUNDRY_AUTH": "",
    "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "131072", "CLAUDE_CODE_ATTRIBUTION_HEADER": "0",
    "CLAUDE_CODE_TOTAL_TOKENS_REMINDER": "off", "DISABLE_UPDATES": "1",
}
UNSET = ["CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_CUSTOM_HEADERS", "AWS_BEARER_TOKEN_BEDROCK",
         "ANTHROPIC_FOUNDRY_API_KEY", "ANTHROPIC_UNIX_SOCKET", "CLAUDE_CODE_PROVIDER_MANAGED_BY_HOST",
         "CLAUDE_CODE_HOST_AUTH_ENV_VAR", "CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR", "CLAUDE_CODE_API_KEY_FILE_DESCRIPTOR",
         "CLAUDE_CODE_GATEWAY_TOKEN_FILE_DESCRIPTOR", "CLAUDE_CODE_WEBSOCKET_AUTH_FILE_DESCRIPTOR",
         "CLAUDE_CODE_CUSTOM_OAUTH_URL", "USE_LOCAL_OAUTH", "USE_STAGING_OAUTH", "CLAUDE_CODE_IGNORE_PERSISTED_TRUST"]


def test_profile_settings_carry_exactly_the_local_environment():
    assert local_environment(config(), DECISION) == EXPECTED_ENV
    edits = {e.path: e for e in user_edits(config(), DECISION, account("/bin/bash"), {})}
    profile = json.loads(edits["/home/dev/.claude-local/settings.json"].text)
    assert profile == {"model": DECISION.name, "env": EXPECTED_ENV, "permissions": {"defaultMode": "default"},
                       "theme": "dark"}
    auto = json.loads({e.path: e for e in user_edits(config(claude_permission_mode="auto"), DECISION,
                                                      account("/bin/bash"), {})}[
        "/home/dev/.claude-local/settings.json"].text)
    assert auto["permissions"] == {"defaultMode": "auto"}


def run_alias(tmp_path, rc_text: str, shell: list[str], exports: dict[str, str]) -> dict[str, str]:
    """Source the rc text in a shell whose environment carries `exports`, run the alias with a
    fake claude that prints its environment."""
    (tmp_path / "rc").write_text(rc_text)
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "claude").write_text('#!/bin/sh\nenv\necho "ARGS=$*"\n')
    (fake / "claude").chmod(0o755)
    script = tmp_path / "run.sh"
    script.write_text(f"PATH={shlex.quote(str(fake))}:$PATH\nshopt -s expand_aliases\n"
                      f". {shlex.quote(str(tmp_path / 'rc'))}\nclaude-local\n")
    out = subprocess.run([*shell, str(script)], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", **exports}).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_alias_selects_the_profile_and_drops_cloud_credentials(tmp_path):
    """bash here; zsh uses the same alias syntax and is exercised in its real login shell on the lab."""
    rc = next(e for e in user_edits(config(), DECISION, account("/bin/bash"), {}) if e.path.endswith(".bashrc"))
    cloud = {name: "from-the-cloud" for name in UNSET} | {"EDITOR": "vim"}
    env = run_alias(tmp_path, rc.text, ["bash"], cloud)
    assert env["CLAUDE_CONFIG_DIR"] == "/home/dev/.claude-local" and env["EDITOR"] == "vim"
    assert env["ARGS"] == "--settings /home/dev/.claude-local/settings.json"
    assert not set(UNSET) & set(env), env


def test_fish_gets_its_own_conf_d_file():
    edits = user_edits(config(), DECISION, account("/usr/bin/fish"), {})
    fish = next(e for e in edits if e.path == "/home/dev/.config/fish/conf.d/localcode.fish")
    assert "function claude-local --wraps claude" in fish.text
    assert fish.text.endswith("CLAUDE_CONFIG_DIR='/home/dev/.claude-local' claude "
                              "--settings '/home/dev/.claude-local/settings.json' $argv\nend\n")
    assert all(f" -u {name} " in fish.text for name in UNSET)


def test_the_local_profile_opens_at_the_prompt_and_trusts_only_configured_projects():
    project = "/home/dev/src/app"
    cloud = {"/home/dev/.claude.json": FileState('{"theme": "light-daltonized", "numStartups": 9}', "600")}
    edits = {e.path: e for e in user_edits(config(claude_projects={"dev": [project]}), DECISION,
                                           account("/bin/bash"), cloud)}
    first_run = json.loads(edits["/home/dev/.claude-local/.claude.json"].text)
    assert first_run == {"hasCompletedOnboarding": True, "lastOnboardingVersion": "2.1.330",
                         "hasSeenAutoDefaultNudge": True, "projects": {project: {"hasTrustDialogAccepted": True}}}
    assert json.loads(edits["/home/dev/.claude-local/settings.json"].text)["theme"] == "light-daltonized"
    plain = {e.path: e for e in user_edits(config(), DECISION, account("/bin/bash"), {})}
    assert json.loads(plain["/home/dev/.claude-local/settings.json"].text)["theme"] == "dark"
    assert "projects" not in json.loads(plain["/home/dev/.claude-local/.claude.json"].text)


def test_bash_login_file_gets_the_block_unless_it_sources_bashrc():
    plain = rc_paths(account("/bin/bash"), {})
    assert plain == ["/home/dev/.bashrc", "/home/dev/.profile"]
    sourcing = {"/home/dev/.profile": FileState('. "$HOME/.bashrc"\n', "644")}
    assert rc_paths(account("/bin/bash"), sourcing) == ["/home/dev/.bashrc"]
    own_profile = {"/home/dev/.bash_profile": FileState("export A=1\n", "644")}
    assert rc_paths(account("/bin/bash"), own_profile) == ["/home/dev/.bashrc", "/home/dev/.bash_profile"]


def test_existing_rc_text_stays_byte_identical():
    before = "# mine\nalias ll='ls -l'\n"
    edits = user_edits(config(), DECISION, account("/bin/zsh"), {"/home/dev/.zshrc": FileState(before, "600")})
    rc = next(e for e in edits if e.path == "/home/dev/.zshrc")
    assert rc.text.startswith(before) and rc.text.rstrip().endswith(END) and BEGIN in rc.text


def test_project_settings_merge_keeps_other_keys_and_trust_is_seeded():
    project = "/home/dev/src/app"
    existing = {f"{project}/.claude/settings.json": FileState(
        '{\n  "permissions": {"allow": ["Bash(make:*)"]},\n  "env": {"FOO": "1"}\n}\n', "644")}
    edits = {e.path: e for e in user_edits(config(claude_projects={"dev": [project]}), DECISION,
                                           account("/bin/bash"), existing)}
    settings = json.loads(edits[f"{project}/.claude/settings.json"].text)
    assert settings["permissions"] == {"allow": ["Bash(make:*)"], "defaultMode": "default"}
    # Claude Code ignores (and warns about) a sign-in token in project settings: profile only.
    assert settings["env"] == {"FOO": "1", **{k: v for k, v in EXPECTED_ENV.items() if k != "CLAUDE_CODE_OAUTH_TOKEN"}}
    assert settings["model"] == DECISION.name
    assert '  "permissions": {"allow": ["Bash(make:*)"], "defaultMode": "default"},' in \
        edits[f"{project}/.claude/settings.json"].text
    trust = json.loads(edits["/home/dev/.claude.json"].text)
    assert trust["projects"][project]["hasTrustDialogAccepted"] is True
    assert "hasCompletedOnboarding" not in trust


def test_airgapped_users_get_plain_claude_local_and_onboarding():
    edits = {e.path: e for e in user_edits(config(**AIRGAPPED), DECISION, account("/bin/bash"), {})}
    user = json.loads(edits["/home/dev/.claude/settings.json"].text)
    assert user["model"] == DECISION.name and user["env"]["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert json.loads(edits["/home/dev/.claude.json"].text)["hasCompletedOnboarding"] is True


def test_optional_gitignore_and_claude_md():
    project = "/srv/app"
    edits = {e.path: e for e in user_edits(
        config(claude_projects={"dev": [project]}, claude_project_gitignore=True, claude_project_claude_md=True),
        DECISION, account("/bin/bash"), {f"{project}/CLAUDE.md": FileState("# App\n", "644")})}
    assert ".claude/settings.json" in edits[f"{project}/.gitignore"].text
    md = edits[f"{project}/CLAUDE.md"].text
    assert md.startswith("# App\n") and "## Model setup" in md and "<!-- >>> localcode >>> -->" in md


def test_projects_of_unknown_users_are_rejected():
    with pytest.raises(Exception, match="not in developer_users"):
        validate_host_data("h", {"developer_users": ["dev"], "claude_projects": {"eve": ["/srv/x"]}})


def test_auto_permission_mode_is_warned_about_in_the_plan():
    from localcode.facts import HostHardware
    from localcode.plan import plan_host

    facts = HostHardware("Linux", "x86_64", 64 * 2**30, login="root")
    assert not any("auto" in w for w in plan_host("h", config(), facts).warnings)
    warned = plan_host("h", config(claude_permission_mode="auto"), facts).warnings
    assert any("classifier, which runs on the local model" in w for w in warned)
    with pytest.raises(Exception, match="claude_permission_mode"):
        config(claude_permission_mode="bypassPermissions")


def test_first_run_state_is_seeded_once_and_never_reset():
    seeded = {e.path: e for e in user_edits(config(), DECISION, account("/bin/bash"), {})}
    path = "/home/dev/.claude-local/.claude.json"
    later = json.loads(seeded[path].text) | {"lastOnboardingVersion": "2.1.400", "numStartups": 4}
    again = {e.path: e for e in user_edits(config(), DECISION, account("/bin/bash"),
                                           {path: FileState(json.dumps(later), "600")})}
    assert json.loads(again[path].text) == later


def test_account_files_are_exactly_the_files_user_edits_writes():
    project = "/home/dev/src/app"
    with_project = config(claude_projects={"dev": [project]}, claude_project_gitignore=True,
                          claude_project_claude_md=True)
    for data, shell in ((config(), "/bin/bash"), (config(**AIRGAPPED), "/bin/zsh"), (with_project, "/usr/bin/fish"),
                        (config(), "/bin/sh")):
        written = [(e.path, e.why) for e in user_edits(data, DECISION, account(shell), {})]
        assert written == [(f.path, f.why) for f in account_files(data, account(shell), {})]
    assert [(f.path, f.kind) for f in account_files(with_project, account("/usr/bin/fish"), {})] == [
        ("/home/dev/.config/fish/conf.d/localcode.fish", "alias"),
        ("/home/dev/.claude-local/settings.json", "settings"), ("/home/dev/.claude-local/.claude.json", "state"),
        (f"{project}/.claude/settings.json", "settings"), (f"{project}/.gitignore", "text"),
        (f"{project}/CLAUDE.md", "text"), ("/home/dev/.claude.json", "state")]
    air = [(f.path, f.kind) for f in account_files(config(**AIRGAPPED), account("/bin/zsh"), {})]
    assert ("/home/dev/.claude/settings.json", "settings") in air and air[-1] == ("/home/dev/.claude.json", "state")


def test_a_bash_login_file_is_read_and_gets_the_alias():
    login = {"/home/dev/.bash_login": FileState("export A=1\n", "644")}
    assert [f.path for f in account_files(config(), account("/bin/bash"), login) if f.kind == "alias"] == \
        ["/home/dev/.bashrc", "/home/dev/.bash_login"]
    two = validate_host_data("h", {"developer_users": ["dev", "eve"], "claude_projects": {"dev": ["/srv/app"]}})
    read = candidate_paths(two, {"dev": account("/bin/bash"), "eve": None})
    assert list(read) == ["dev"]
    assert {"/home/dev/.bashrc", "/home/dev/.bash_profile", "/home/dev/.bash_login", "/home/dev/.profile",
            "/home/dev/.claude/settings.json", "/home/dev/.claude.json", "/srv/app/.claude/settings.json",
            "/home/dev/.claude-local/.claude.json"} <= set(read["dev"])
    assert len(read["dev"]) == len(set(read["dev"]))
