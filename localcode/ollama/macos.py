"""Ollama on macOS: the Homebrew formula (never the app, never `brew services`), or the
verified CLI tarball on Macs without Homebrew, run by our own LaunchAgent whose
EnvironmentVariables carry the server settings (Ollama.app would override them and
auto-update: it is reported when present)."""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import FactBase, operation

from ..facts import MARK, OllamaState, sections
from ..ops import failure
from ..rendering import render
from ..settings import HostConfig
from ..shell import as_account, command, sh_quote
from ..sizing import Decision
from ..userfiles import MISSING, editable, observe, write_text
from ..versions import effective_floor, choose_version
from .common import BASE, BIN_LINK, INSTALL_HELPER, running_version, server_environment

LABEL = "com.localcode.ollama"
BREW_PATHS = ("/opt/homebrew/bin/brew", "/usr/local/bin/brew")


@dataclass(frozen=True)
class MacOllama:
    brew: str | None
    brew_owner: str | None
    brew_version: str | None     # `brew list --versions ollama`
    tarball_version: str | None  # our CLI tarball install, if any
    app: bool                    # /Applications/Ollama.app
    owner_uid: int | None
    agent_loaded: bool


class MacOllamaFact(FactBase):
    """Homebrew and its ollama formula, our tarball install, Ollama.app, and whether our
    LaunchAgent is loaded in the owner's GUI domain: one round trip."""

    def command(self, owner: str) -> str:
        user = sh_quote(owner)
        return "; ".join([
            "brew=; for b in " + " ".join(BREW_PATHS) + "; do [ -x \"$b\" ] && brew=$b && break; done",
            f"echo {MARK}brew; echo \"$brew\"; [ -n \"$brew\" ] && stat -f %Su \"${{brew%/bin/brew}}\"",
            f"echo {MARK}brew-ollama; [ -n \"$brew\" ] && \"$brew\" list --versions ollama 2>/dev/null",
            f"echo {MARK}tarball; readlink {BASE}/current 2>/dev/null",
            f"echo {MARK}app; [ -d /Applications/Ollama.app ] && echo yes",
            f"echo {MARK}uid; id -u {user} 2>/dev/null",
            f"echo {MARK}agent; launchctl print gui/$(id -u {user})/{LABEL} >/dev/null 2>&1 && echo loaded",
            "true",
        ])

    def process(self, output: list[str]) -> MacOllama:
        s = sections(output)
        brew_lines = [line for line in s.get("brew", []) if line]
        versions = (s.get("brew-ollama") or [""])[0].split()
        tarball = (s.get("tarball") or [""])[0].rsplit("/", 1)[-1]
        uid = (s.get("uid") or [""])[0]
        return MacOllama(
            brew=brew_lines[0] if brew_lines else None,
            brew_owner=brew_lines[1] if len(brew_lines) > 1 else None,
            brew_version=versions[-1] if len(versions) > 1 else None,
            tarball_version=tarball.removesuffix("-darwin") or None,
            app=bool(s.get("app")),
            owner_uid=int(uid) if uid.isdigit() else None,
            agent_loaded=bool(s.get("agent")),
        )


def brew_prefix(brew: str) -> str:
    return brew.removesuffix("/bin/brew")


@operation()
def agent_reload(plist: str, uid: int):
    """Reload the LaunchAgent (its plist or the binary changed): bootout, then bootstrap."""
    domain = f"gui/{uid}"
    yield command("sh", "-c", 'launchctl bootout "$1/$2" 2>/dev/null; launchctl bootstrap "$1" "$3"',
                  "localcode", domain, LABEL, plist)


@operation()
def agent_loaded(plist: str, owner: str):
    """Load the LaunchAgent into the owner's GUI domain unless it is loaded."""
    mac = host.get_fact(MacOllamaFact, owner=owner)
    if mac.agent_loaded:
        host.noop(f"LaunchAgent {LABEL} is loaded")
        return
    yield command("launchctl", "bootstrap", f"gui/{mac.owner_uid}", plist)


def install_macos(config: HostConfig, decision: Decision, state: OllamaState, login: str) -> None:
    if not config.developer_users:
        failure(name="Ollama LaunchAgent owner", message="macOS: developer_users is empty: the LaunchAgent "
                "runs in a developer's session; set developer_users for this host")
        return
    owner = config.developer_users[0]
    mac = host.get_fact(MacOllamaFact, owner=owner)
    if mac.owner_uid is None:
        failure(name="Ollama LaunchAgent owner", message=f"macOS: developer user {owner} does not exist")
        return
    if mac.app:
        host.log("warning: /Applications/Ollama.app is installed: it overrides the server environment from its "
                 "own settings and auto-updates; quit it and remove it from Login Items on managed Macs")
    floor = effective_floor(config.ollama_min_version, decision.min_ollama)
    installed = mac.brew_version if mac.brew else mac.tarball_version or state.binary_version
    choice = choose_version(installed, config.ollama_version, floor, config.ollama_upgrade, config.ollama_downgrade)
    binary_changed = []
    if mac.brew:
        # Homebrew refuses to run as root: run it as the prefix's owner. The formula's version is
        # Homebrew's, not our pin: the floor is checked against the running server below.
        brew_user = mac.brew_owner or owner
        host.log(f"ollama: Homebrew formula ({choice.reason}; the version is Homebrew's current formula)")
        if choice.action != "keep":
            verb = "install" if installed is None else "upgrade"
            binary_changed.append(brew(name=f"brew {verb} ollama", brew_bin=mac.brew, verb=verb,
                                       _sudo=True, _sudo_user=brew_user, _use_sudo_login=True))
        binary = f"{brew_prefix(mac.brew)}/opt/ollama/bin/ollama"
        expected = None
    else:
        host.log(f"ollama: CLI tarball ({choice.reason})")
        if choice.action != "keep":
            binary_changed.append(darwin_release(name=f"Ollama {choice.version} CLI tarball (verified)",
                                                 version=choice.version, url_template=config.ollama_url_template,
                                                 _sudo=True))
        binary = BIN_LINK
        expected = choice.version
    # The LaunchAgent lives in the developer's home: read and written as the developer.
    home = f"/Users/{owner}"
    agent = f"{home}/Library/LaunchAgents/{LABEL}.plist"
    before = observe([], {owner: [agent]}, "Darwin", login).get(agent, MISSING)
    refusal = editable(before, mac.owner_uid, (home,))
    if refusal:
        failure(name="Ollama LaunchAgent", message=f"{host.name}: user {owner}: {agent} {refusal}: refusing to edit it")
        return
    content = render("com.localcode.ollama.plist.j2", label=LABEL, binary=binary,
                     environment=server_environment(config, decision), log=f"{home}/Library/Logs/localcode-ollama.log")
    plist = write_text(name="Ollama LaunchAgent", path=agent, text=content.decode(), before=before,
                       why="the Ollama LaunchAgent", run_as=tuple(as_account("Darwin", owner)), _sudo=True)
    agent_reload(name="Reload the Ollama LaunchAgent (plist or binary changed)", plist=agent, uid=mac.owner_uid,
                 _sudo=True, _if=lambda: plist.did_change() or any(op.did_change() for op in binary_changed))
    agent_loaded(name="Ollama LaunchAgent loaded (launchctl bootstrap)", plist=agent, owner=owner, _sudo=True)
    running_version(name="Ollama server runs the expected version", api=config.ollama_host,
                    version=expected, minimum=floor)


@operation()
def brew(brew_bin: str, verb: str):
    yield command(brew_bin, verb, "ollama")


@operation()
def darwin_release(version: str, url_template: str):
    """The CLI tarball into its own directory, then the stable symlinks (as on Linux)."""
    name = f"{version}-darwin"
    dest = f"{BASE}/{name}"
    yield command(INSTALL_HELPER, url_template.format(version=version, file="sha256sum.txt"), dest,
                  url_template.format(version=version, file="ollama-darwin.tgz"))
    yield command("ln", "-sfn", dest, f"{BASE}/current")
    yield command("ln", "-sfn", f"{BASE}/current/ollama", BIN_LINK)
