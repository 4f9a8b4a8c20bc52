"""Plan-level tests (pyinfra @fake hosts): each developer's files are written by the helper
*as that developer* (runuser on Linux, sudo on macOS), through a dotfiles link only to its
target, and a file planted as a link elsewhere is refused with host, user and path."""

from __future__ import annotations

import base64

from .plan_harness import (MAC_OLLAMA_FACT, M, FakeMac, accounts, darwin_hardware, linux_base, linux_hardware,
                           no_ollama, plan_deploy)

HELPER = "/usr/local/lib/localcode/bin/localcode-write-file"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def host(hardware: list[str], user: tuple[str, int, str, str], files: list[str] | None = None,
         macos: bool = False) -> dict:
    return {"developer_users": [user[0]], "fake_responses": {
        **linux_base(), "uname -s; uname -m": hardware + accounts(user, macos=macos), "/api/tags": no_ollama(),
        **({"localcode-read": files} if files else {})}}


def writes(ops) -> dict[str, str]:
    """Destination path -> the write helper's command, per developer file written."""
    found = {}
    for op in ops:
        for command in op.commands:
            if command.startswith(HELPER):
                found[command.split()[2]] = command
    return found


def test_linux_files_are_written_as_the_developer(monkeypatch):
    ops = plan_deploy([("@fake/ws", host(linux_hardware(64), ("dev", 1000, "/home/dev", "/bin/bash")))],
                      monkeypatch)["@fake/ws"]
    found = writes(ops)
    assert found["/home/dev/.bashrc"].endswith(" 644 runuser -u dev --")
    assert found["/home/dev/.claude-local/settings.json"].endswith(" 644 runuser -u dev --")
    managed = found["/etc/claude-code/managed-settings.json"]
    assert managed.endswith("/etc/claude-code/managed-settings.json 644")  # root's own file, as root


def test_mac_files_are_written_as_the_developer_through_sudo(monkeypatch):
    mac = host(darwin_hardware(48, login="root"), ("ana", 501, "/Users/ana", "/bin/zsh"), macos=True)
    mac["fake_responses"][MAC_OLLAMA_FACT] = FakeMac().ollama_fact()
    found = writes(plan_deploy([("@fake/mac", mac)], monkeypatch)["@fake/mac"])
    assert found["/Users/ana/.zshrc"].endswith(" 644 /usr/bin/sudo -n -u ana --")


def test_a_dotfiles_link_is_edited_at_its_target(monkeypatch):
    files = [f"{M}file:/home/dev/.bashrc", f"link 1000 {b64('/home/dev/dotfiles/bashrc')}",
             "file 1000 1000 640 10", b64("export A=1\n")]
    ops = plan_deploy([("@fake/ws", host(linux_hardware(64), ("dev", 1000, "/home/dev", "/bin/bash"), files))],
                      monkeypatch)["@fake/ws"]
    found = writes(ops)
    assert found["/home/dev/dotfiles/bashrc"].endswith(" 640 runuser -u dev --")  # the link stays; its mode is not used
    assert "/home/dev/.bashrc" not in found


def test_a_planted_link_is_refused_before_any_of_the_developers_files_is_written(monkeypatch):
    files = [f"{M}file:/home/dev/.bashrc", f"link 1000 {b64('/home/dev/dotfiles/bashrc')}",
             "file 1000 1000 640 10", b64("export A=1\n"),
             f"{M}file:/home/dev/.profile", f"link 1000 {b64('/etc/shadow')}", "unreadable"]
    ops = plan_deploy([("@fake/ws", host(linux_hardware(64), ("dev", 1000, "/home/dev", "/bin/bash"), files))],
                      monkeypatch)["@fake/ws"]
    assert not [path for path in writes(ops) if path.startswith("/home/dev/")]
    refusal = next(op for op in ops if "/home/dev/.profile" in op.text())
    assert refusal.name == "Developer files"
    assert "@fake/ws: user dev: /home/dev/.profile is a symbolic link to /etc/shadow, outside /home/dev" in refusal.text()
    assert "exit 1" in refusal.text()


def test_onboarding_developer_writes_as_themselves_under_sudo(monkeypatch):
    laptop = {"fake_responses": {**linux_base(), "uname -s; uname -m": linux_hardware(64, login="dana"),
                                 "getent passwd": accounts(("dana", 1000, "/home/dana", "/bin/bash")),
                                 "/api/tags": no_ollama()}}
    ops = plan_deploy([("@fake/laptop", laptop)], monkeypatch)["@fake/laptop"]
    rc = next(op for op in ops if any(c.startswith(HELPER) and "/home/dana/.bashrc" in c for c in op.commands))
    assert rc.sudo and rc.text().endswith("runuser -u dana --")
