"""Plan-level tests (pyinfra @fake hosts): the exact Ollama install commands for a Mac with and
without Homebrew, from each source, and for a Linux laptop onboarded by its (non-root)
developer."""

from __future__ import annotations

import logging
import re

from pyinfra.context import ctx_state

from .plan_harness import M, FakeMac, accounts, linux_base, linux_hardware, no_ollama, plan_deploy

BASE = "/usr/local/lib/localcode/ollama"
HELPER = "/usr/local/lib/localcode/bin/localcode-install-release"
BREW_PATH = {"PATH": "/opt/homebrew/bin:/usr/bin:/bin:/usr/sbin:/sbin"}


def mac(brew: bool, app: bool = False, brew_ollama: str | None = None, tarball: str | None = None, **data) -> dict:
    """A Mac (tests/plan_harness.py's FakeMac): Homebrew (and its formula's version), our active
    CLI tarball release (`tarball`, linked from /usr/local/bin), Ollama.app."""
    return FakeMac(homebrew=brew, app=app, brew_ollama=brew_ollama, tarball=tarball).host(**data)


def global_arguments(host: str, op_name: str) -> dict:
    """The pyinfra global arguments (_env, _sudo_user, ...) of one planned operation."""
    state = ctx_state.get()
    (op_hash,) = [h for h, meta in state.op_meta.items() if op_name in meta.names]
    (data,) = [ops[op_hash] for h, ops in state.ops.items() if h.name == host]
    return data.global_arguments


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
    brew = ops["Ollama formula (Homebrew)"]
    assert brew.commands == ["brew install ollama"]
    assert brew.sudo and brew.sudo_user == "ana"  # Homebrew refuses root: run as the prefix owner
    # pyinfra's brew operation runs `brew` from PATH: Homebrew's prefix is put there.
    assert global_arguments("@fake/mac-brew", "Ollama formula (Homebrew)")["_env"] == BREW_PATH
    plist = agent_plist(ops["Ollama LaunchAgent"])
    assert "<string>/opt/homebrew/opt/ollama/bin/ollama</string>" in plist
    for key, value in (("OLLAMA_HOST", "127.0.0.1:11434"), ("OLLAMA_FLASH_ATTENTION", "1"),
                       ("OLLAMA_KV_CACHE_TYPE", "q8_0")):
        assert f"<key>{key}</key>\n        <string>{value}</string>" in plist
    assert "<key>KeepAlive</key>\n    <true/>" in plist
    assert ops["Ollama LaunchAgent loaded (launchctl bootstrap)"].commands == [
        "/bin/launchctl bootstrap gui/501 /Users/ana/Library/LaunchAgents/com.localcode.ollama.plist"]
    assert not any("brew services" in c for op in ops.values() for c in op.commands)


def test_mac_with_homebrew_upgrades_the_formula(monkeypatch):
    host = mac(brew=True, brew_ollama="0.13.0", ollama_upgrade=True)
    ops = by_name(plan_deploy([("@fake/mac-brew", host)], monkeypatch)["@fake/mac-brew"])
    assert ops["Ollama formula (Homebrew)"].commands == ["brew upgrade ollama"]


# The version switch on macOS: BSD mv -h renames the new link over `current` (a link to a
# directory) instead of moving it into that directory; /usr/local/bin may not exist yet.
ACTIVATE = [
    f"ln -sfn {BASE}/0.30.0-darwin {BASE}/current.new",
    f"mv -f -h {BASE}/current.new {BASE}/current",
    "mkdir -p /usr/local/bin",
    f"ln -sfn {BASE}/current/ollama /usr/local/bin/ollama.new",
    "mv -f -h /usr/local/bin/ollama.new /usr/local/bin/ollama",
]


def test_mac_without_homebrew_uses_the_verified_cli_tarball(monkeypatch):
    ops = by_name(plan_deploy([("@fake/mac-bare", mac(brew=False))], monkeypatch)["@fake/mac-bare"])
    release = ops["Ollama CLI tarball (verified)"]
    assert release.sudo
    assert release.commands == [
        f"{HELPER} https://github.com/ollama/ollama/releases/download/v0.30.0/sha256sum.txt {BASE}/0.30.0-darwin "
        "https://github.com/ollama/ollama/releases/download/v0.30.0/ollama-darwin.tgz"]
    activate = ops["Activate the Ollama release"]
    assert activate.sudo and activate.commands == ACTIVATE
    plist = agent_plist(ops["Ollama LaunchAgent"])
    assert "<string>/usr/local/bin/ollama</string>" in plist
    assert not any(re.search(r"\bbrew\b", c) for op in ops.values() for c in op.commands)


def test_mac_with_the_pinned_tarball_active_installs_nothing(monkeypatch):
    ops = by_name(plan_deploy([("@fake/mac-bare", mac(brew=False, tarball="0.30.0"))], monkeypatch)["@fake/mac-bare"])
    assert not [name for name in ops if "CLI tarball" in name or name.startswith("Activate the Ollama")], list(ops)
    assert "<string>/usr/local/bin/ollama</string>" in agent_plist(ops["Ollama LaunchAgent"])


def test_mac_from_a_mirror_uses_the_tarball_even_with_homebrew(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="pyinfra")
    host = mac(brew=True, ollama_source="mirror", mirror_url="http://mirror.example:8080")
    ops = by_name(plan_deploy([("@fake/mac-mirror", host)], monkeypatch)["@fake/mac-mirror"])
    assert "Homebrew is installed but needs the internet; ollama_source is mirror" in caplog.text
    assert ops["Ollama CLI tarball (verified)"].commands == [
        f"{HELPER} http://mirror.example:8080/ollama/releases/download/v0.30.0/sha256sum.txt {BASE}/0.30.0-darwin "
        "http://mirror.example:8080/ollama/releases/download/v0.30.0/ollama-darwin.tgz"]
    assert ops["Activate the Ollama release"].commands == ACTIVATE
    assert "<string>/usr/local/bin/ollama</string>" in agent_plist(ops["Ollama LaunchAgent"])
    assert not any(re.search(r"\bbrew\b", c) for op in ops.values() for c in op.commands)


def test_mac_from_a_bundle_pushes_the_tarball_and_installs_it_from_file(monkeypatch, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="pyinfra")
    (tmp_path / "bundle.json").write_text("{}")
    host = mac(brew=True, ollama_source="bundle", bundle_dir=str(tmp_path))
    ops = by_name(plan_deploy([("@fake/mac-bundle", host)], monkeypatch)["@fake/mac-bundle"])
    assert "Homebrew is installed but needs the internet; ollama_source is bundle" in caplog.text
    release = ops["Ollama CLI tarball (verified)"]
    cache, staged = "/var/cache/localcode/bundle", "ollama/releases/download/v0.30.0"
    mkdir, rsync, install, remove = release.commands
    assert mkdir == f"mkdir -p {cache}"
    # macOS's rsync (2.6.9 or openrsync) has no --checksum-choice: rsync would pass it on.
    assert rsync.startswith(f"RsyncCommand({tmp_path}/, {cache}/, ['--times', '--partial', '--chmod=D0755,F0644', "
                            "'--files-from="), rsync
    assert install == (f"{HELPER} file://{cache}/{staged}/sha256sum.txt {BASE}/0.30.0-darwin "
                       f"file://{cache}/{staged}/ollama-darwin.tgz")
    assert remove == f"rm -f {cache}/{staged}/sha256sum.txt {cache}/{staged}/ollama-darwin.tgz"
    assert ops["Activate the Ollama release"].commands == ACTIVATE
    assert not any(re.search(r"\bbrew\b", c) for op in ops.values() for c in op.commands)


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
    assert names.index("Ollama release (verified)") < names.index("Activate the Ollama release") \
        < names.index("Restart Ollama (binary, unit or environment changed)")
    release = by_name(ops)["Ollama release (verified)"]
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


def test_mac_claude_code_from_the_homebrew_cask_runs_as_homebrews_owner(monkeypatch):
    host = mac(brew=True)
    host["claude_install_method"] = "brew"
    ops = by_name(plan_deploy([("@fake/mac-cask", host)], monkeypatch)["@fake/mac-cask"])
    cask = ops["Claude Code (Homebrew cask)"]
    assert cask.commands == ["brew install --cask claude-code"]
    assert cask.sudo and cask.sudo_user == "ana"
    assert global_arguments("@fake/mac-cask", "Claude Code (Homebrew cask)")["_env"] == BREW_PATH
    assert "Claude Code release (verified)" not in ops


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
