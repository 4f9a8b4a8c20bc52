"""macOS as it really behaves, at plan level: the deploy on fake Macs (tests/plan_harness.py's
FakeMac), one test per behaviour docs/notes/macos.md records, then whole deploys (a fresh Mac
with and without Homebrew, one whose developer is logged out, upgrades) with their exact
commands. Every deploy is held to the Mac's rules (FakeMac.assert_runs_as_on_a_mac): no
program looked up on PATH, nothing linked into a missing /usr/local/bin, Homebrew never run as
root, no launchctl into a GUI domain that does not exist."""

from __future__ import annotations

import logging

import pytest

from localcode.facts import HostHardware
from localcode.ollama.macos import BOOTOUT_WAIT_S, MacOllamaFact, formula_version
from localcode.plan import plan_host
from localcode.settings import validate_host_data
from localcode.sizing import GiB

from .plan_harness import (M, Deploy, FakeMac, PlannedOp, deploy_mac, fresh_mac, launchd_stub, plan_hosts,
                           programs, run_with)

BASE = "/usr/local/lib/localcode/ollama"
HELPERS = "/usr/local/lib/localcode/bin"
PLIST = "/Users/ana/Library/LaunchAgents/com.localcode.ollama.plist"
LOG = "/Users/ana/Library/Logs/localcode-ollama.log"
RELEASES = "https://github.com/ollama/ollama/releases/download/v0.30.0"
CLAUDE = "https://downloads.claude.ai/claude-code-releases/2.1.330"
BREW_PATH = {"PATH": "/opt/homebrew/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
LOADED = "Ollama LaunchAgent loaded (launchctl bootstrap)"
RELOAD = "Reload the Ollama LaunchAgent (its plist changed)"
RESTART = "Restart the Ollama server (binary or GPU memory limit changed)"
RUNNING = "Ollama server runs the expected version"
CHECK_CLAUDE = ("/bin/sh -c 'c=; for b in /usr/local/bin/claude /opt/homebrew/bin/claude; do [ -x \"$b\" ] && c=$b "
                "&& break; done; v=$([ -n \"$c\" ] && \"$c\" --version 2>/dev/null | /usr/bin/cut -d\" \" -f1); "
                "[ \"$v\" = \"$1\" ] || { echo \"claude --version reports ${v:-nothing}, expected $1\" >&2; exit 1; }' "
                "localcode 2.1.330")
CLAUDE_RELEASE = [f"{HELPERS}/localcode-install-claude {CLAUDE}/manifest.json {CLAUDE}/darwin-arm64/claude "
                  "darwin-arm64 2.1.330 /usr/local/lib/localcode/claude/2.1.330",
                  "mkdir -p /usr/local/bin",
                  "ln -sfn /usr/local/lib/localcode/claude/2.1.330/claude /usr/local/bin/claude.new",
                  "mv -f -h /usr/local/bin/claude.new /usr/local/bin/claude"]
TARBALL = [f"{HELPERS}/localcode-install-release {RELEASES}/sha256sum.txt {BASE}/0.30.0-darwin "
           f"{RELEASES}/ollama-darwin.tgz"]
SWITCH_CURRENT = [f"ln -sfn {BASE}/0.30.0-darwin {BASE}/current.new", f"mv -f -h {BASE}/current.new {BASE}/current"]
ACTIVATE = [*SWITCH_CURRENT, "mkdir -p /usr/local/bin",
            f"ln -sfn {BASE}/current/ollama /usr/local/bin/ollama.new",
            "mv -f -h /usr/local/bin/ollama.new /usr/local/bin/ollama"]


def decision(ram_gib: int = 48):
    """The sizing a 48 GiB Mac gets (the model names in the model steps' commands)."""
    return plan_host("mac", validate_host_data("mac", {}), HostHardware("Darwin", "arm64", ram_gib * GiB,
                                                                         login="root")).decision


def model_steps(program: str) -> dict[str, list[str]]:
    """The base and derived model's commands, the derived one created with `program`."""
    d = decision()
    modelfile = f"/usr/local/lib/localcode/models/{d.name.replace('/', '_').replace(':', '_')}.Modelfile"
    return {"Base model": [f"{HELPERS}/localcode-pull 127.0.0.1:11434 {d.model} "
                           f"{validate_host_data('mac', {}).catalog().by_tag()[d.model].download_bytes}"],
            "Derived model": [f"env OLLAMA_HOST=127.0.0.1:11434 {program} create {d.name} -f {modelfile}",
                              f"FunctionCommand(_confirm_parameters, ('127.0.0.1:11434', '{d.name}', "
                              f"{{'num_ctx': {d.num_ctx}}}), {{}})"]}


def wait_for(version: str) -> str:
    logs = f"{LOG}; launchd: log show --last 10m --predicate 'eventMessage CONTAINS \"com.localcode.ollama\"'"
    return f"FunctionCommand(wait_for_version, ('127.0.0.1:11434', '{version}', 60, {logs!r}), {{}})"


def ran(deploy: Deploy, *names: str) -> dict[str, list[str]]:
    """The commands of the named operations that run (an operation that does not: absent)."""
    ops = deploy.by_name()
    return {name: ops[name].commands for name in names if name in ops and ops[name].runs}


def plist_of(deploy: Deploy) -> str:
    (text,) = deploy.by_name()["Ollama LaunchAgent"].uploads.values()
    return text


# One test per behaviour.

def test_over_ssh_the_path_has_neither_usr_local_bin_nor_homebrew(monkeypatch):
    mac = fresh_mac()
    # The rule: a bare program outside /usr/bin:/bin:/usr/sbin:/sbin is not found.
    for command in ("env OLLAMA_HOST=127.0.0.1:11434 ollama create m -f f", "claude --version",
                    "sh -c 'v=$(claude --version)'", "npm install -g x", "brew install ollama"):
        assert [run.word for run in programs(command, mac) if run.resolved is None], command
    assert all(run.resolved for run in programs("env OLLAMA_HOST=x /usr/local/bin/ollama rm m; mkdir -p /a", mac))
    assert programs("brew install ollama", mac, BREW_PATH["PATH"])[0].resolved == "/opt/homebrew/bin/brew"
    bare = Deploy([PlannedOp("Derived model", True, None, ["env OLLAMA_HOST=x ollama create m -f f"], {})], [])
    with pytest.raises(AssertionError, match="ollama is not on PATH /usr/bin:/bin:/usr/sbin:/sbin"):
        mac.assert_no_path_lookup(bare)
    # The deploy names what is not there by its absolute path: the formula's ollama for the
    # models (created, pruned), Homebrew's npm, Claude Code where it may be.
    mac = fresh_mac(node="v22.12.0")
    deploy = deploy_mac(mac, monkeypatch, claude_install_method="npm", prune_models=True)
    ops = deploy.by_name()
    assert ops["Derived model"].commands[0].startswith(
        "env OLLAMA_HOST=127.0.0.1:11434 /opt/homebrew/opt/ollama/bin/ollama create ")
    assert ops["Claude Code (npm)"].commands == ["/opt/homebrew/bin/npm install -g @anthropic-ai/claude-code@2.1.330"]
    assert ops["claude --version reports the pinned version"].commands == [CHECK_CLAUDE]
    installed = FakeMac(tarball="0.30.0", homebrew=False)
    host = installed.host(prune_models=True)
    host["fake_responses"]["/api/tags"] = [  # a running server with a model nobody declared
        f"{M}bin", "/usr/local/bin/ollama", f"{M}client", "ollama version is 0.30.0", f"{M}version",
        '{"version":"0.30.0"}', f"{M}tags", '{"models":[{"name":"old:1b","digest":"d","size":1}]}']
    deploy = plan_hosts([("@fake/mac", host)], monkeypatch)["@fake/mac"]
    installed.assert_runs_as_on_a_mac(deploy)
    assert deploy.by_name()["Prune undeclared models"].commands == [
        "env OLLAMA_HOST=127.0.0.1:11434 /usr/local/bin/ollama rm old:1b"]


def test_a_fresh_mac_has_no_usr_local_bin(monkeypatch):
    deploy = deploy_mac(fresh_mac(homebrew=False), monkeypatch)
    ops = deploy.by_name()
    assert ops["Activate the Ollama release"].commands == ACTIVATE
    assert ops["Claude Code release (verified)"].commands == CLAUDE_RELEASE
    unmade = Deploy([PlannedOp("Activate", True, None, ACTIVATE[:2] + ACTIVATE[3:], {})], [])
    with pytest.raises(AssertionError, match="/usr/local/bin does not exist yet"):
        FakeMac().assert_usr_local_bin_made_first(unmade)


def test_brew_refuses_root(monkeypatch):
    # Homebrew's repository belongs to an admin account, not to the developer: brew and npm run
    # as that account, with its prefix on PATH.
    mac = fresh_mac(brew_owner="admin", node="v22.12.0")
    for method, name, command in (("brew", "Claude Code (Homebrew cask)", "brew install --cask claude-code"),
                                  ("npm", "Claude Code (npm)",
                                   "/opt/homebrew/bin/npm install -g @anthropic-ai/claude-code@2.1.330")):
        deploy = deploy_mac(mac, monkeypatch, claude_install_method=method)
        ops = deploy.by_name()
        for op in (ops["Ollama formula (Homebrew)"], ops[name]):
            assert (op.sudo, op.sudo_user, op.env) == (True, "admin", BREW_PATH), op.name
        assert ops["Ollama formula (Homebrew)"].commands == ["brew install ollama"]
        assert ops[name].commands == [command]
        # pyinfra's own brew facts ran as the owner too; ours never run brew.
        brew_facts = [f for f in deploy.facts if "brew list" in f.command or "brew --version" in f.command]
        assert brew_facts and all(f.sudo_user == "admin" for f in brew_facts)
    as_root = Deploy([PlannedOp("Ollama formula (Homebrew)", True, None, ["brew install ollama"], {}, BREW_PATH)], [])
    with pytest.raises(AssertionError, match="/opt/homebrew/bin/brew runs as root, not admin"):
        mac.assert_brew_as_owner(as_root)


def test_homebrews_ollama_is_read_from_its_files_never_by_running_brew():
    command = MacOllamaFact().command(owner="ana")
    mac = fresh_mac()
    assert not [run for run in programs(command, mac) if run.resolved is None or run.word.endswith("brew")]
    assert '/usr/bin/readlink "$p/opt/ollama"' in command
    # Intel: the prefix /usr/local is root's, the repository /usr/local/Homebrew the owner's.
    assert '[ -d "$p/Homebrew" ] && r=$p/Homebrew; /usr/bin/stat -f %Su "$r"' in command
    assert formula_version("../Cellar/ollama/0.30.0") == "0.30.0"
    assert formula_version("../Cellar/ollama/0.30.0_1") == "0.30.0"  # Homebrew's revision
    assert formula_version("../Cellar/other/1.0") is None
    fact = MacOllamaFact().process(FakeMac(brew_ollama="0.29.1_2", brew_owner="admin").ollama_fact())
    assert (fact.brew_version, fact.homebrew.brew, fact.homebrew.owner) == ("0.29.1", "/opt/homebrew/bin/brew",
                                                                              "admin")


def test_a_logged_out_developer_has_no_gui_domain(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger="pyinfra")  # noops are logged at debug level
    mac = fresh_mac(homebrew=False, logged_in=False)
    deploy = deploy_mac(mac, monkeypatch)
    ops = deploy.by_name()
    assert PLIST in ops["Ollama LaunchAgent"].text()  # written all the same
    assert ops[LOADED].commands == [] and not ops[RELOAD].commands and not ops[RESTART].commands
    assert "LaunchAgent com.localcode.ollama loads at ana's next login (no gui/501 domain now)" in caplog.text
    assert "the Ollama server starts when ana next logs in at the Mac's screen" in caplog.text
    # Nothing waits for a server that cannot start: no version check, no models until then.
    assert RUNNING not in ops and "Base model" not in ops and "Derived model" not in ops
    assert "deploy again then for" in caplog.text
    assert ops["Claude Code release (verified)"].commands == CLAUDE_RELEASE
    into_nothing = Deploy([PlannedOp(LOADED, True, None, [f"/bin/launchctl bootstrap gui/501 {PLIST}"], {})], [])
    with pytest.raises(AssertionError, match="bootstrap gui/501"):
        mac.assert_launchd_usable(into_nothing)


def test_bootout_returns_before_launchd_lets_go_of_the_label(monkeypatch, tmp_path):
    mac = FakeMac(homebrew=False, tarball="0.30.0", agent_loaded=True, files={PLIST: "<plist>older</plist>"})
    deploy = deploy_mac(mac, monkeypatch)
    (reload,) = ran(deploy, RELOAD).values()
    assert not ran(deploy, RESTART)  # the reload restarts it
    (command,) = reload
    assert command.startswith("/bin/sh -c ") and command.endswith(
        f" localcode-reload gui/501 com.localcode.ollama {PLIST} {BOOTOUT_WAIT_S}")

    def attempt(name: str, script: str, draining: int, eio_after_drain: int = 0):
        directory = tmp_path / name
        directory.mkdir()
        done = run_with(script, launchd_stub(directory, draining, eio_after_drain))
        return done, (directory / "calls").read_text().split("\n")

    # launchd still knows the label for 3 seconds: bootstrapping at once fails, ours waits.
    naive = (f"/bin/sh -c '/bin/launchctl bootout \"$1/$2\"; /bin/launchctl bootstrap \"$1\" \"$3\"' x "
             f"gui/501 com.localcode.ollama {PLIST}")
    done, _ = attempt("naive", naive, draining=3)
    assert done.returncode == 5 and "5: Input/output error" in done.stderr
    done, calls = attempt("waits", command, draining=3)
    assert done.returncode == 0, done.stderr
    assert calls[0] == "bootout gui/501/com.localcode.ollama" and calls.count("sleep") == 3
    assert calls[-2] == f"bootstrap gui/501 {PLIST}"
    # A label still draining after the bound fails with the reason; one more EIO is retried once.
    done, calls = attempt("stuck", command, draining=BOOTOUT_WAIT_S + 1)
    assert done.returncode == 1 and not [c for c in calls if c.startswith("bootstrap")]
    assert f"launchctl bootout gui/501/com.localcode.ollama: still loaded after {BOOTOUT_WAIT_S} s" in done.stderr
    done, calls = attempt("eio-once", command, draining=1, eio_after_drain=1)
    assert done.returncode == 0 and len([c for c in calls if c.startswith("bootstrap")]) == 2
    done, _ = attempt("eio-twice", command, draining=1, eio_after_drain=2)
    assert done.returncode == 1
    assert f"launchctl bootstrap gui/501 {PLIST}: Bootstrap failed: 5: Input/output error" in done.stderr


def test_a_new_binary_restarts_the_loaded_server_with_kickstart(monkeypatch):
    first = deploy_mac(fresh_mac(homebrew=False), monkeypatch)
    mac = FakeMac(homebrew=False, tarball="0.29.0", agent_loaded=True, files={PLIST: plist_of(first)})
    deploy = deploy_mac(mac, monkeypatch, ollama_upgrade=True)
    assert ran(deploy, LOADED, RELOAD, RESTART) == {
        LOADED: [], RESTART: ["/bin/launchctl kickstart -k gui/501/com.localcode.ollama"]}


# Whole deploys.

def test_fresh_mac_with_homebrew(monkeypatch):
    deploy = deploy_mac(fresh_mac(), monkeypatch)
    expected = {
        "Ollama formula (Homebrew)": ["brew install ollama"],
        LOADED: [f"/bin/launchctl bootstrap gui/501 {PLIST}"],
        RELOAD: [],  # the new plist: loaded just above, nothing to reload
        RUNNING: [wait_for("")],
        **model_steps("/opt/homebrew/opt/ollama/bin/ollama"),
        "Claude Code release (verified)": CLAUDE_RELEASE,
        "claude --version reports the pinned version": [CHECK_CLAUDE],
    }
    assert ran(deploy, *expected, RELOAD, RESTART) == expected
    assert deploy.by_name()["Ollama formula (Homebrew)"].sudo_user == "ana"
    assert "<string>/opt/homebrew/opt/ollama/bin/ollama</string>" in plist_of(deploy)
    assert f"<string>{LOG}</string>" in plist_of(deploy)


def test_fresh_mac_without_homebrew(monkeypatch):
    deploy = deploy_mac(fresh_mac(homebrew=False), monkeypatch)
    expected = {
        "Ollama CLI tarball (verified)": TARBALL,
        "Activate the Ollama release": ACTIVATE,
        LOADED: [f"/bin/launchctl bootstrap gui/501 {PLIST}"],
        RELOAD: [],
        RUNNING: [wait_for("0.30.0")],
        **model_steps("/usr/local/bin/ollama"),
        "Claude Code release (verified)": CLAUDE_RELEASE,
        "claude --version reports the pinned version": [CHECK_CLAUDE],
    }
    assert ran(deploy, *expected, RELOAD, RESTART) == expected
    assert "<string>/usr/local/bin/ollama</string>" in plist_of(deploy)
    assert not [op.name for op in deploy.ops if "Homebrew" in op.name]


def test_fresh_mac_with_the_developer_logged_out(monkeypatch):
    deploy = deploy_mac(fresh_mac(homebrew=False, logged_in=False), monkeypatch)
    expected = {
        "Ollama CLI tarball (verified)": TARBALL,
        "Activate the Ollama release": ACTIVATE,
        LOADED: [],  # loads at ana's next login
        RELOAD: [],
        "Claude Code release (verified)": CLAUDE_RELEASE,
        "claude --version reports the pinned version": [CHECK_CLAUDE],
    }
    assert ran(deploy, *expected, RELOAD, RESTART, RUNNING, "Base model", "Derived model") == expected
    assert "<string>/usr/local/bin/ollama</string>" in plist_of(deploy)


def test_upgrade_of_a_mac_in_use(monkeypatch):
    """Ollama 0.29.0 (tarball) and Claude Code 2.1.300 running, the LaunchAgent as the last
    deploy wrote it: the new release is switched in and the server restarted, nothing reloaded."""
    first = deploy_mac(fresh_mac(homebrew=False), monkeypatch)
    mac = FakeMac(homebrew=False, tarball="0.29.0", agent_loaded=True, claude="2.1.300",
                  files={PLIST: plist_of(first)})
    deploy = deploy_mac(mac, monkeypatch, ollama_upgrade=True)
    expected = {
        "Ollama CLI tarball (verified)": TARBALL,
        "Activate the Ollama release": SWITCH_CURRENT,  # /usr/local/bin/ollama already points at current
        "Ollama LaunchAgent": [],
        LOADED: [],
        RESTART: ["/bin/launchctl kickstart -k gui/501/com.localcode.ollama"],
        RUNNING: [wait_for("0.30.0")],
        "Claude Code release (verified)": CLAUDE_RELEASE,
        "claude --version reports the pinned version": [CHECK_CLAUDE],
    }
    assert ran(deploy, *expected, RELOAD) == expected


def test_upgrade_of_the_homebrew_formula(monkeypatch):
    first = deploy_mac(fresh_mac(), monkeypatch)
    mac = FakeMac(brew_ollama="0.29.0", agent_loaded=True, files={PLIST: plist_of(first)})
    deploy = deploy_mac(mac, monkeypatch, ollama_upgrade=True)
    assert ran(deploy, "Ollama formula (Homebrew)", LOADED, RELOAD, RESTART, RUNNING) == {
        "Ollama formula (Homebrew)": ["brew upgrade ollama"], LOADED: [],
        RESTART: ["/bin/launchctl kickstart -k gui/501/com.localcode.ollama"], RUNNING: [wait_for("")]}
