"""What each host got from a run (pure): notes count only when their operation changed
something, failures carry the failing operation and its last error line, unreachable hosts the
next step; the file beside the inventory round-trips; the doctor's report shows it."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from localcode import summary
from localcode.doctor import HostReport, html

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Op:
    changed: bool = False
    error: bool = False
    stderr_lines: list[str] = field(default_factory=list)
    complete: bool = True

    def is_complete(self) -> bool:
        return self.complete

    def did_change(self) -> bool:
        return self.changed

    def did_error(self) -> bool:
        return self.error


@dataclass(frozen=True)
class Host:
    """What the summary reads of a pyinfra host (its data answers `.get`, like pyinfra's)."""
    name: str
    data: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(get=lambda key, default=None: "root"),
                                  hash=False, compare=False)


def host(name: str) -> Host:
    return Host(name)


def test_a_run_is_summarised_per_host(tmp_path, monkeypatch):
    monkeypatch.setattr(summary, "_NOTES", {})
    ws, laptop, ghost = host("ws"), host("laptop"), host("ghost")
    summary.sizing(ws, "gpt-oss:20b at 128K context, KV f16, CPU only")
    summary.change(ws, "Ollama 0.13.5 -> 0.30.0", Op(changed=True))
    summary.change(ws, "pulled gpt-oss:20b", Op(changed=False))
    for _ in range(3):
        summary.change(ws, "wired dev", Op(changed=True))
    summary.change(laptop, "pulled gpt-oss:20b", Op(complete=False))  # never ran: the host failed first
    failing = Op(error=True, stderr_lines=["", "laptop: user dev: /home/dev/.zshrc is a symbolic link: refusing"])
    state = SimpleNamespace(
        inventory=[ws, laptop, ghost], activated_hosts={ws, laptop}, failed_hosts={laptop},
        get_op_order=lambda: ["a", "b"], op_meta={"a": SimpleNamespace(names={"Ollama release (verified)"}),
                                                   "b": SimpleNamespace(names={"Developers: the alias"})},
        ops={laptop: {"a": SimpleNamespace(operation_meta=Op()), "b": SimpleNamespace(operation_meta=failing)}})
    built = {h["host"]: h for h in summary.build(state)}
    assert built["ws"] == {"host": "ws", "sizing": "gpt-oss:20b at 128K context, KV f16, CPU only", "result": "ok",
                           "changes": ["Ollama 0.13.5 -> 0.30.0", "wired dev (3 files)"]}
    assert built["laptop"]["result"] == "failed" and built["laptop"]["changes"] == []
    assert built["laptop"]["reason"] == ("Developers: the alias: laptop: user dev: /home/dev/.zshrc is a symbolic "
                                         "link: refusing")
    assert built["ghost"]["result"] == "unreachable" and "ssh root@ghost" in built["ghost"]["next"]
    text = "\n".join(summary.lines(list(built.values())))
    assert "ws      ok           Ollama 0.13.5 -> 0.30.0; wired dev (3 files)" in text
    assert "laptop  failed       no changes" in text and "why: Developers: the alias" in text
    summary.write(list(built.values()), tmp_path)
    assert summary.read(tmp_path) == list(built.values())
    page = html([HostReport("ws"), HostReport("ghost", error="unreachable")], last_run=summary.read(tmp_path))
    assert "last deploy: ok · Ollama 0.13.5 -&gt; 0.30.0; wired dev (3 files)" in page
    assert "last deploy: unreachable" in page


def test_a_second_run_says_no_changes(monkeypatch):
    monkeypatch.setattr(summary, "_NOTES", {})
    ws = host("ws")
    summary.change(ws, "pulled gpt-oss:20b", Op(changed=False))
    state = SimpleNamespace(inventory=[ws], activated_hosts={ws}, failed_hosts=set(), get_op_order=list, ops={},
                            op_meta={})
    assert summary.lines(summary.build(state)) == ["ws  ok           no changes"]


def test_an_unreadable_last_run_file_is_ignored(tmp_path):
    assert summary.read(tmp_path) is None
    (tmp_path / summary.LAST_RUN).write_text("{not json")
    assert summary.read(tmp_path) is None


FAILING_DEPLOY = '''
from pyinfra.operations import server
from localcode import pyinfra_compat

pyinfra_compat.install()
server.shell(name="Refuse", commands=["echo 'user dev: /home/dev/.zshrc is a symbolic link' >&2; exit 3"])
'''


@pytest.mark.parametrize("json_output", [False, True])
def test_the_summary_comes_also_when_the_only_host_failed(tmp_path, json_output):
    """pyinfra stops with "No hosts remaining!" before its results when the last host fails; the
    operator of a one-host fleet still learns why (on the terminal, in --json, beside the inventory)."""
    (tmp_path / "deploy.py").write_text(FAILING_DEPLOY)
    argv = [str(REPO / ".venv/bin/pyinfra"), "-y", *(["--json"] if json_output else []), "@local", "deploy.py"]
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "No hosts remaining" in result.stderr, result.stderr
    reason = "Refuse: user dev: /home/dev/.zshrc is a symbolic link"
    if json_output:
        assert json.loads(result.stdout)["localcode"][0] | {"next": ""} == {
            "host": "@local", "sizing": "", "changes": [], "result": "failed", "reason": reason, "next": ""}
    else:
        assert "--> What each host got:" in result.stderr and f"why: {reason}" in result.stderr, result.stderr
    assert summary.read(tmp_path)[0]["reason"] == reason
