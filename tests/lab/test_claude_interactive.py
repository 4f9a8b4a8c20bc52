"""claude-local as a developer meets it: typed into their own interactive login shell (bash,
zsh, fish) in a real terminal (tmux on the control machine, `ssh -tt` to the host).

In a configured project it opens at the prompt (no theme picker, security notes, trust or
auto-mode question), asks before running a Bash command (default permission mode) and shows
the command's output once accepted; in any other folder it still asks for folder trust."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from lab import fleet

from .conftest import Lab, start_lab
from .deploy_helpers import deploy, write_inventory

pytestmark = pytest.mark.lab
HOST = "laptop"
SHELLS = {"dev": "bash", "zoe": "zsh", "finn": "fish"}
# Each shell's default prompt in the home directory: the shell is ready for input.
PROMPTS = {"bash": "dev@laptop:~$", "zsh": "laptop%", "fish": "finn@laptop ~>"}
# Text of the screens a first run may put before the prompt.
FIRST_RUN = ("Choose the text style", "Security notes", "Quick safety check", "trust this folder",
             "Make auto mode your default", "Select login method", "Detected a custom API key")
READY = "? for shortcuts"  # the input box's footer: claude waits for a prompt
WAIT = 60.0
RETRY = 3.0  # a dialog may drop a key that arrives while it is still being set up: pressed again after this
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


class Terminal:
    """A 200x50 terminal on the developer's login shell, on a tmux server of its own (its
    socket at `socket`)."""

    def __init__(self, lab: Lab, user: str, socket: Path):
        self.socket = str(socket)
        ssh = fleet.ssh_argv(lab.state, HOST, user)
        self.tmux("new-session", "-d", "-x", "200", "-y", "50", "-s", "main",
                  shlex.join([ssh[0], "-tt", *ssh[1:]]))

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", *args], check=True,
                              capture_output=True, text=True, timeout=30).stdout

    def screen(self) -> str:
        """The visible text, wrapped lines joined."""
        return self.tmux("capture-pane", "-p", "-J", "-t", "main")

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "main", "-l", text)

    def run(self, command: str) -> None:
        """Types a shell command line, then Enter."""
        self.type(command)
        self.keys("Enter")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "main", *keys)

    def poll(self, texts: tuple[str, ...], timeout: float) -> tuple[bool, str]:
        """(whether the screen showed every text within `timeout` s, the last screen)."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if all(t in screen for t in texts):
                return True, screen
            if time.monotonic() > deadline:
                return False, screen
            time.sleep(0.2)

    def wait_for(self, *texts: str, timeout: float = WAIT) -> str:
        """The screen once it shows every text; fails with the screen after `timeout` s."""
        shown, screen = self.poll(texts, timeout)
        if not shown:
            raise AssertionError(f"after {timeout:.0f}s the screen lacks {texts}:\n{screen}")
        return screen

    def press(self, key: str, *texts: str, timeout: float = WAIT) -> str:
        """Presses the key, again every RETRY s, until the screen shows every text; the screen."""
        deadline = time.monotonic() + timeout
        while True:
            self.keys(key)
            shown, screen = self.poll(texts, RETRY)
            if shown:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"after {timeout:.0f}s of {key} the screen lacks {texts}:\n{screen}")

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def open_terminal(lab: Lab, tmp_path: Path) -> Iterator[Callable[[str], Terminal]]:
    """Opens a developer's terminal, at their shell's prompt; closed after the test."""
    opened: list[Terminal] = []

    def opener(user: str) -> Terminal:
        term = Terminal(lab, user, tmp_path / f"tmux-{len(opened)}")
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
