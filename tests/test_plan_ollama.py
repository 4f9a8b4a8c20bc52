"""Plan-level tests (pyinfra @fake hosts): the exact Ollama install commands for a Mac with and
without Homebrew, and for a Linux laptop onboarded by its (non-root) developer."""

from __future__ import annotations

import logging

from .plan_harness import M, accounts, darwin_hardware, linux_base, linux_hardware, no_ollama, plan_deploy


def mac(brew: bool, app: bool = False) -> dict:
    fact = [f"{M}brew", *(["/opt/homebrew/bin/brew", "ana"] if brew else []), f"{M}brew-ollama",
            f"{M}tarball", f"{M}app", *(["yes"] if app else []), f"{M}uid", "501", f"{M}agent"]
    return {"developer_users": ["ana"], "fake_responses": {
        "uname -s; uname -m": darwin_hardware(48) + accounts(("ana", 501, "/Users/ana", "/bin/zsh")),
        "list --versions ollama": fact,
        "/api/tags": no_ollama(),
    }}


PLIST = "/Users/ana/Library/LaunchAgents/com.localcode.ollama.plist"


def agent_plist(op) -> str:
    """The LaunchAgent's text, staged by root and written into place by the developer."""
    write = op.commands[-1]
    assert write.startswith("/usr/local/lib/localcode/bin/localcode-write-file ") and \
        write.endswith(f" {PLIST} 644 /usr/bin/sudo -n -u ana --"), write
    (content,) = op.uploads.values()
    return content


def by_name(ops):
    return {op.name: op for op in ops}


def test_mac_with_homebrew(monkeypatch):
    ops = by_name(plan_deploy([("@fake/mac-brew", mac(brew=True))], monkeypatch)["@fake/mac-brew"])
    brew = ops["brew install ollama"]
    assert brew.commands == ["/opt/homebrew/bin/brew install ollama"]
    assert brew.sudo and brew.sudo_user == "ana"  # Homebrew refuses root: run as the prefix owner
    plist = agent_plist(ops["Ollama LaunchAgent"])
    assert "<string>/opt/homebrew/opt/ollama/bin/ollama</string>" in plist
    for key, value in (("OLLAMA_HOST", "127.0.0.1:11434"), ("OLLAMA_FLASH_ATTENTION", "1"),
                       ("OLLAMA_KV_CACHE_TYPE", "q8_0")):
        assert f"<key>{key}</key>\n        <string>{value}</string>" in plist
    assert "<key>KeepAlive</key>\n    <true/>" in plist
    assert ops["Ollama LaunchAgent loaded (launchctl bootstrap)"].commands == [
        "launchctl bootstrap gui/501 /Users/ana/Library/LaunchAgents/com.localcode.ollama.plist"]
    assert not any("brew services" in c for op in ops.values() for c in op.commands)


def test_mac_without_homebrew_uses_the_verified_cli_tarball(monkeypatch):
    ops = by_name(plan_deploy([("@fake/mac-bare", mac(brew=False))], monkeypatch)["@fake/mac-bare"])
    release = ops["Ollama 0.30.0 CLI tarball (verified)"]
    assert release.sudo
    assert release.commands == [
        "/usr/local/lib/localcode/bin/localcode-install-release "
        "https://github.com/ollama/ollama/releases/download/v0.30.0/sha256sum.txt "
        "/usr/local/lib/localcode/ollama/0.30.0-darwin "
        "https://github.com/ollama/ollama/releases/download/v0.30.0/ollama-darwin.tgz",
        "ln -sfn /usr/local/lib/localcode/ollama/0.30.0-darwin /usr/local/lib/localcode/ollama/current",
        "ln -sfn /usr/local/lib/localcode/ollama/current/ollama /usr/local/bin/ollama",
    ]
    plist = agent_plist(ops["Ollama LaunchAgent"])
    assert "<string>/usr/local/bin/ollama</string>" in plist
    assert not any("brew" in c for op in ops.values() for c in op.commands)


def test_mac_with_ollama_app_warns(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    plan_deploy([("@fake/mac-app", mac(brew=True, app=True))], monkeypatch)
    assert "Ollama.app is installed" in caplog.text


def test_linux_laptop_onboarded_by_its_developer_uses_sudo(monkeypatch):
    laptop = {"fake_responses": {
        **linux_base(),
        "uname -s; uname -m": linux_hardware(32, (16384,), login="dana"),
        # The onboarding developer is only known once the login is: their account comes later.
        "getent passwd": accounts(("dana", 1000, "/home/dana", "/bin/bash")),
        "/api/tags": no_ollama(),
    }}
    ops = plan_deploy([("@fake/laptop", laptop)], monkeypatch)["@fake/laptop"]
    system = [op for op in ops if op.commands or op.uploads]
    assert system and all(op.sudo for op in system), [(op.name, op.sudo) for op in system]
    names = [op.name for op in ops]
    assert names.index("Ollama 0.30.0 release (verified)") < names.index("Activate Ollama 0.30.0") \
        < names.index("Restart Ollama (binary, unit or environment changed)")
    release = by_name(ops)["Ollama 0.30.0 release (verified)"]
    assert release.commands == [
        "/usr/local/lib/localcode/bin/localcode-install-release "
        "https://github.com/ollama/ollama/releases/download/v0.30.0/sha256sum.txt "
        "/usr/local/lib/localcode/ollama/0.30.0-amd64 "
        "https://github.com/ollama/ollama/releases/download/v0.30.0/ollama-linux-amd64.tar.zst"]


def test_linux_as_root_needs_no_sudo(monkeypatch):
    host = {"fake_responses": {**linux_base(), "uname -s; uname -m": linux_hardware(64),
                               "/api/tags": no_ollama()}}
    ops = plan_deploy([("@fake/ws", host)], monkeypatch)["@fake/ws"]
    assert ops and not any(op.sudo for op in ops)


def test_mac_claude_code_from_the_homebrew_cask_runs_as_the_developer(monkeypatch):
    host = mac(brew=True)
    host["claude_install_method"] = "brew"
    ops = by_name(plan_deploy([("@fake/mac-cask", host)], monkeypatch)["@fake/mac-cask"])
    cask = ops["Claude Code (Homebrew cask)"]
    assert cask.commands == ["/opt/homebrew/bin/brew install --cask claude-code"]
    assert cask.sudo and cask.sudo_user == "ana"
    assert "Claude Code 2.1.330 (verified)" not in ops


def store_host(report: str) -> dict:
    """A root-run Linux host whose OLLAMA_MODELS is reported as `report` by the layout fact."""
    base = linux_base()
    layout = base["for t in curl zstd tar"]
    return {"developer_users": ["dev"], "ollama_environment": {"OLLAMA_MODELS": "/srv/ollama/models"},
            "fake_responses": {"for t in curl zstd tar": [f"{M}store", report, *layout],
                               "uname -s; uname -m": linux_hardware(64) + accounts(("dev", 1000, "/home/dev", "/bin/bash")),
                               "/api/tags": no_ollama()}}


def test_a_missing_model_store_is_made_by_the_ollama_account(monkeypatch):
    ops = by_name(plan_deploy([("@fake/ws", store_host("missing"))], monkeypatch)["@fake/ws"])
    assert ops["Ollama model store (OLLAMA_MODELS)"].commands == [
        "runuser -u ollama -- mkdir -p -m 0755 /srv/ollama/models"]
    ops = by_name(plan_deploy([("@fake/ws", store_host("ollama"))], monkeypatch)["@fake/ws"])
    assert ops["Ollama model store (OLLAMA_MODELS)"].commands == []


def test_a_model_store_that_is_a_link_or_another_accounts_fails_the_host(monkeypatch):
    for report, why in (("link", "is a symbolic link"), ("dev", "belongs to dev, not to ollama")):
        ops = by_name(plan_deploy([("@fake/ws", store_host(report))], monkeypatch)["@fake/ws"])
        text = ops["Ollama model store (OLLAMA_MODELS)"].text()
        assert f"OLLAMA_MODELS /srv/ollama/models {why}" in text and "exit 1" in text, text
