"""claude-local as a developer meets it: typed into their own interactive login shell (bash,
zsh, fish) in a real terminal (tmux on the control machine, `ssh -tt` to the host).

In a configured project it opens at the prompt (no theme picker, security notes, trust or
auto-mode question), asks before running a Bash command (default permission mode) and shows
the command's output once accepted; in any other folder it still asks for folder trust."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from lab import fleet

from .conftest import Lab, start_lab
from .deploy_helpers import deploy, write_inventory
from .terminal import Terminal

pytestmark = pytest.mark.lab
HOST = "laptop"
SHELLS = {"dev": "bash", "zoe": "zsh", "finn": "fish"}
# Each shell's default prompt in the home directory: the shell is ready for input.
PROMPTS = {"bash": "dev@laptop:~$", "zsh": "laptop%", "fish": "finn@laptop ~>"}
# Text of the screens a first run may put before the prompt.
FIRST_RUN = ("Choose the text style", "Security notes", "Quick safety check", "trust this folder",
             "Make auto mode your default", "Select login method", "Detected a custom API key")
READY = "? for shortcuts"  # the input box's footer: claude waits for a prompt
if shutil.which("tmux") is None:
    pytest.skip("tmux is missing on the control machine (apt-get install tmux)", allow_module_level=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    """The laptop with three developers, each with a configured ~/project and an unconfigured
    ~/other, deployed once."""
    spec = {"name": "tty", "subnet": "10.242.0.0/16", "hosts": [{
        "name": HOST, "ram_gib": 24, "users": [{"name": u, "shell": s} for u, s in SHELLS.items()]}]}
    path = tmp_path_factory.mktemp("tty") / "tty.yaml"
    path.write_text(yaml.safe_dump(spec))
    lab = start_lab(path)
    try:
        for user in SHELLS:
            lab.ssh(HOST, "mkdir -p ~/project ~/other", user=user)
        inventory = write_inventory(path.with_name("inventory.py"), lab, {HOST: {
            "claude_projects": {u: [f"/home/{u}/project"] for u in SHELLS}}})
        code, _, err = deploy(lab, inventory)
        assert code == 0, err[-3000:]
        yield lab
    finally:
        fleet.down(lab.spec.name)


@pytest.fixture
def open_terminal(lab: Lab, tmp_path: Path) -> Iterator[Callable[[str], Terminal]]:
    """Opens a developer's terminal, at their shell's prompt; closed after the test."""
    opened: list[Terminal] = []

    def opener(user: str) -> Terminal:
        term = Terminal(lab, HOST, user, tmp_path / f"tmux-{len(opened)}")
        opened.append(term)
        term.wait_for(PROMPTS[SHELLS[user]])
        return term

    yield opener
    for term in opened:
        term.close()


def model(lab: Lab) -> str:
    """The derived model, as the local profile names it."""
    return json.loads(lab.ssh(HOST, "cat ~/.claude-local/settings.json", user="dev").stdout)["model"]


def start_in_project(lab: Lab, term: Terminal) -> str:
    """claude-local started in the configured project, at its prompt; the screen."""
    term.run("cd ~/project; claude-local")
    screen = term.wait_for("Claude Code v", READY)
    assert model(lab) in screen and "~/project" in screen, screen
    return screen


@pytest.mark.parametrize("user", SHELLS)
def test_configured_project_opens_at_the_prompt_and_asks_before_bash(lab: Lab, open_terminal, user: str):
    term = open_terminal(user)
    screen = start_in_project(lab, term)
    assert not [t for t in FIRST_RUN if t in screen], f"a first-run screen:\n{screen}"

    term.type("please use Bash")  # the stand-in answers with one Bash call: `stand-in`
    term.wait_for("please use Bash")
    term.press("Enter", "Do you want to proceed?", "Bash(stand-in)")
    # 1. Yes; claude runs the command in bash or zsh (zsh says "command not found: stand-in")
    term.press("Enter", "command not found")
    screen = term.wait_for(f"Hello from {model(lab)}", READY)
    assert "Do you want to proceed?" not in screen, screen

    term.keys("C-c")
    term.wait_for("Press Ctrl-C again to exit")
    term.keys("C-c")
    term.wait_for("Resume this session with")


def test_configured_project_shows_no_settings_warning(lab: Lab, open_terminal):
    """Claude Code shows its settings warnings within about 10 s of the start."""
    term = open_terminal("dev")
    start_in_project(lab, term)
    warned, screen = term.poll(("is ignored",), timeout=20)
    assert not warned, f"a settings warning:\n{screen}"


@pytest.mark.parametrize("user", SHELLS)
def test_unconfigured_folder_asks_for_trust(lab: Lab, open_terminal, user: str):
    term = open_terminal(user)
    term.run("cd ~/other; claude-local")
    screen = term.wait_for("Quick safety check", "Yes, I trust this folder")
    assert f"/home/{user}/other" in screen, screen
    screen = term.press("Escape", "Claude Code didn't start because this folder isn't trusted.")
    assert READY not in screen, screen
