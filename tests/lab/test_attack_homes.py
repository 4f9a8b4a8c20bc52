"""The deploy, run as root, against developers who attack it from their own homes and projects.

Each attack is planted as the developer over SSH, then the real deploy runs. Afterwards every
victim (root's files and directories, /etc/shadow, a host key, another user's private
`~/.claude.json`) is byte-, owner- and mode-identical, nothing was created where it should not
be, and a refused file is named in the run's output with host, user and path. The ordinary
dotfiles link (`~/.bashrc -> ~/dotfiles/bashrc`) keeps working, and a loop that swaps a
directory for a link while the deploy runs wins nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from lab import fleet

from .conftest import Lab, q, start_lab
from .deploy_helpers import deploy, write_inventory

pytestmark = pytest.mark.lab
HOST = "homes"
DEVELOPERS = ["dev", "zoe", "finn"]
PROJECT = "/home/dev/project"
VICTIM_DIR = "/root/victim-dir"
# Files and directories no developer may read or change through the deploy.
VICTIMS = ["/root/.bashrc", "/etc/shadow", "/etc/ssh/ssh_host_ed25519_key", "/home/vic/.claude.json",
           VICTIM_DIR, "/etc/sudoers.d", "/etc/fish/conf.d", "/root"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    spec = {"name": "atkhome", "subnet": "10.240.0.0/16", "hosts": [{
        "name": HOST, "ram_gib": 24,
        "users": [{"name": "dev", "shell": "bash"}, {"name": "zoe", "shell": "zsh"},
                  {"name": "finn", "shell": "fish"}, {"name": "vic", "shell": "bash"}]}]}
    path = tmp_path_factory.mktemp("atkhome") / "atkhome.yaml"
    path.write_text(yaml.safe_dump(spec))
    lab = start_lab(path)
    lab.ssh(HOST, f"mkdir -m 0700 {VICTIM_DIR} && echo secret > {VICTIM_DIR}/keep && chmod 0600 {VICTIM_DIR}/keep")
    lab.ssh(HOST, "printf '%s' '{\"oauthAccount\": {\"token\": \"vic-secret\"}}' > ~/.claude.json "
                  "&& chmod 0600 ~/.claude.json", user="vic")
    lab.ssh(HOST, f"mkdir -p {PROJECT}", user="dev")
    yield lab
    fleet.down(lab.spec.name)


def inventory(lab: Lab, tmp_path: Path) -> Path:
    return write_inventory(tmp_path / "inv.py", lab, {HOST: {
        "developer_users": DEVELOPERS, "claude_projects": {"dev": [PROJECT]}, "claude_project_gitignore": True}})


def victims(lab: Lab) -> str:
    """Content digest, owner, group and mode of every victim, and the listing of each victim
    directory (a new entry there is a file the deploy should never have made)."""
    script = ("for v in \"$@\"; do stat -c '%n %U %G %a %F' \"$v\" || continue; "
              "if [ -d \"$v\" ]; then ls -la --time-style=+ \"$v\"; else sha256sum \"$v\"; fi; done")
    return lab.ssh(HOST, f"sh -c {q(script)} victims {' '.join(VICTIMS)}").stdout


def run(lab: Lab, tmp_path: Path) -> tuple[int, str]:
    """The deploy's exit code and output, ending with the host's entry in the run's summary."""
    code, results, err = deploy(lab, inventory(lab, tmp_path))
    got = (results or {}).get("localcode") or [{}]
    return code, f"{err}\nsummary: {got[0].get('result')}: {got[0].get('reason', '')}"


@pytest.fixture(scope="module")
def baseline(lab: Lab, tmp_path_factory) -> str:
    """The host converged once, cleanly; the victims as they must stay."""
    code, err = run(lab, tmp_path_factory.mktemp("first"))
    assert code == 0, err[-3000:]
    return victims(lab)


def as_user(lab: Lab, user: str, script: str) -> None:
    lab.ssh(HOST, script, user=user)


# (attack id, user, shell lines that plant it, lines that undo it, path the run must name or
# None when the deploy simply never touches the planted name)
ATTACKS = [
    ("temp-name-link-to-root-rc", "dev",
     "ln -s /root/.bashrc ~/.bashrc.localcode-new && sed -i '/localcode >>>/,/localcode <<</d' ~/.bashrc",
     "rm -f ~/.bashrc.localcode-new", None),
    ("zshrc-link-to-shadow", "zoe", "rm -f ~/.zshrc && ln -s /etc/shadow ~/.zshrc", "rm -f ~/.zshrc",
     "/home/zoe/.zshrc"),
    ("gitignore-link-to-host-key", "dev", f"rm -f {PROJECT}/.gitignore && ln -s /etc/ssh/ssh_host_ed25519_key "
     f"{PROJECT}/.gitignore", f"rm -f {PROJECT}/.gitignore", f"{PROJECT}/.gitignore"),
    ("claude-json-link-to-another-users-token", "dev",
     "rm -f ~/.claude.json && ln -s /home/vic/.claude.json ~/.claude.json", "rm -f ~/.claude.json",
     "/home/dev/.claude.json"),
    ("profile-dir-link-to-root", "dev", f"rm -rf ~/.claude-local && ln -s {VICTIM_DIR} ~/.claude-local",
     "rm -f ~/.claude-local", "/home/dev/.claude-local"),
    ("project-claude-dir-link-to-sudoers", "dev",
     f"rm -rf {PROJECT}/.claude && ln -s /etc/sudoers.d {PROJECT}/.claude", f"rm -f {PROJECT}/.claude",
     f"{PROJECT}/.claude"),
    ("fish-config-dir-link-to-etc", "finn", "rm -rf ~/.config && ln -s /etc ~/.config", "rm -f ~/.config",
     "/home/finn/.config"),
]


@pytest.mark.parametrize(("attack", "user", "plant", "undo", "named"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack_is_blocked(lab: Lab, baseline: str, tmp_path, attack, user, plant, undo, named):
    as_user(lab, user, plant)
    try:
        code, err = run(lab, tmp_path)
        assert victims(lab) == baseline, f"{attack}: a victim changed\n{err[-3000:]}"
        if named is not None:
            assert code != 0, f"{attack}: the deploy did not refuse\n{err[-3000:]}"
            assert HOST in err and f"user {user}" in err and named in err, err[-3000:]
            summary_line = err.rsplit("\nsummary: ", 1)[1]
            assert summary_line.startswith("failed: ") and named in summary_line, summary_line
        else:
            assert code == 0, err[-3000:]
    finally:
        as_user(lab, user, undo)
    # Once the developer undoes it, the next deploy converges again.
    code, err = run(lab, tmp_path)
    assert code == 0, f"{attack}: no convergence after undoing it\n{err[-3000:]}"
    assert victims(lab) == baseline


def test_a_dotfiles_link_is_edited_in_place(lab: Lab, baseline: str, tmp_path):
    """The ordinary case: `~/.bashrc` links to a file in the developer's own dotfiles repo."""
    as_user(lab, "dev", "mkdir -p ~/dotfiles && sed '/localcode >>>/,/localcode <<</d' ~/.bashrc > ~/dotfiles/bashrc "
                        "&& echo 'export MINE=1' >> ~/dotfiles/bashrc && chmod 0640 ~/dotfiles/bashrc "
                        "&& rm ~/.bashrc && ln -s dotfiles/bashrc ~/.bashrc")
    code, err = run(lab, tmp_path)
    assert code == 0, err[-3000:]
    out = lab.ssh(HOST, "readlink ~/.bashrc; stat -c '%U %a' ~/dotfiles/bashrc; cat ~/dotfiles/bashrc; "
                        "bash -lic 'type claude-local' 2>/dev/null", user="dev").stdout
    assert out.startswith("dotfiles/bashrc\ndev 640\n"), out
    assert "export MINE=1" in out and "# >>> localcode >>>" in out and "claude-local is aliased" in out
    assert victims(lab) == baseline


def test_racing_a_directory_swap_wins_nothing(lab: Lab, baseline: str, tmp_path):
    """While the deploy runs, the developer swaps `~/.claude-local` between a fresh directory
    and a link to a root-only directory as fast as they can (bounded to the deploy's runs)."""
    race = ("end=$(( $(date +%s) + 90 )); while [ \"$(date +%s)\" -lt \"$end\" ]; do "
            "rm -rf ~/.claude-local; mkdir ~/.claude-local 2>/dev/null; "
            f"rm -rf ~/.claude-local; ln -s {VICTIM_DIR} ~/.claude-local 2>/dev/null; done")
    pid = lab.ssh(HOST, f"nohup sh -c {q(race)} >/dev/null 2>&1 & echo $!", user="dev").stdout.strip()
    try:
        started = time.monotonic()
        runs = 0
        while time.monotonic() - started < 60 and runs < 4:
            as_user(lab, "dev", "rm -f ~/.claude-local/settings.json 2>/dev/null; true")  # make the deploy write
            run(lab, tmp_path)
            runs += 1
            assert victims(lab) == baseline, f"a victim changed during run {runs}"
    finally:
        lab.ssh(HOST, f"kill {pid}", user="dev", check=False)
    as_user(lab, "dev", "rm -rf ~/.claude-local")
    code, err = run(lab, tmp_path)
    assert code == 0, err[-3000:]
    assert victims(lab) == baseline
