"""An unreachable host is an expected failure: one line for it, no library traceback, in the
deploy, `plan`, `bundle --inventory` and `doctor` (a host whose SSH port answers and hangs up,
which makes paramiko log "Error reading SSH protocol banner")."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def hangup_port():
    """A TCP port that accepts connections and closes them at once."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def run(argv: list[str], tmp_path: Path, port: int) -> subprocess.CompletedProcess:
    inventory = tmp_path / "ghosts.py"
    inventory.write_text(f'hosts = [("ghost", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}, '
                         f'"ssh_connect_retries": 0, "developer_users": ["dev"]}})]\n')
    return subprocess.run([*argv, str(inventory)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.parametrize("command", [["doctor"], ["plan"]])
def test_localcode_commands_report_an_unreachable_host_in_one_line(tmp_path, hangup_port, command):
    result = run([sys.executable, "-m", "localcode.cli", *command], tmp_path, hangup_port)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "ghost" in output, output
    assert "Traceback" not in output and "EOFError" not in output, output
    assert sum("ghost" in line for line in output.splitlines()) <= 3, output  # a line or two, not a dump


def test_the_deploy_reports_an_unreachable_host_without_a_traceback(tmp_path, hangup_port):
    run([sys.executable, "-c", "pass"], tmp_path, hangup_port)  # writes the inventory
    result = subprocess.run([str(REPO / ".venv/bin/pyinfra"), "-y", str(tmp_path / "ghosts.py"), "deploy.py"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "ghost" in output, output
    assert "Traceback" not in output and "EOFError" not in output, output
