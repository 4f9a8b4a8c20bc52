"""A developer's terminal on a lab host: tmux on the control machine running `ssh -tt` into
their login shell, read as the screen shows it and typed into key by key."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

from lab import fleet

from .conftest import Lab

WAIT = 60.0
RETRY = 3.0  # a dialog may drop a key that arrives while it is still being set up: pressed again after this


class Terminal:
    """A 200x50 terminal on a developer's login shell on a lab host, on a tmux server of its
    own (its socket at `socket`; closing it stops that server only)."""

    def __init__(self, lab: Lab, host: str, user: str, socket: Path):
        self.socket = str(socket)
        ssh = fleet.ssh_argv(lab.state, host, user)
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
