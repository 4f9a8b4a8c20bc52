"""Ollama on macOS, run by our own LaunchAgent whose EnvironmentVariables carry the server
settings (Ollama.app would override them and auto-update: it is reported when present).

The binary: the Homebrew formula (never the app, never `brew services`) where Homebrew is
installed and the host takes Ollama from the internet; otherwise the CLI tarball from the
host's ollama_source (the internet, a bundle or a mirror), checked against sha256sum.txt and
unpacked into its own directory `/usr/local/lib/localcode/ollama/<version>-darwin`, with
`current` and /usr/local/bin/ollama switched by atomic renames, as on Linux."""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import FactBase, operation
from pyinfra.operations import brew

from .. import apple, sources
from ..facts import MARK, OllamaState, sections
from ..ops import failure, switch_link
from ..plan import HostPlan
from ..rendering import render
from ..settings import HostConfig
from ..shell import as_account, command, sh_quote
from ..userfiles import MISSING, FileState, editable, observe, write_text
from ..versions import effective_floor, choose_version
from .common import (BASE, BIN_LINK, Releases, ReleasesFact, install_release, parse_releases, releases_command,
                     running_version, server_environment)

LABEL = "com.localcode.ollama"
BREW_PATHS = ("/opt/homebrew/bin/brew", "/usr/local/bin/brew")
TARBALL = "ollama-darwin.tgz"
SUFFIX = "-darwin"   # of our release directories


def agent_owner(config: HostConfig) -> str | None:
    """Whose GUI session runs the server: the first developer (None: nobody to run it)."""
    return config.developer_users[0] if config.developer_users else None


def launch_agent(owner: str) -> str:
    """The LaunchAgent's path, in its owner's home."""
    return f"/Users/{owner}/Library/LaunchAgents/{LABEL}.plist"


@dataclass(frozen=True)
class MacOllama:
    brew: str | None
    brew_owner: str | None
    brew_version: str | None     # `brew list --versions ollama`
    releases: Releases           # our CLI tarball installs
    app: bool                    # /Applications/Ollama.app
    owner_uid: int | None
    agent_loaded: bool

    @property
    def tarball_version(self) -> str | None:
        """The active CLI tarball release, if any."""
        current = self.releases.current
        return current.removesuffix(SUFFIX) if current and current.endswith(SUFFIX) else None


class MacOllamaFact(FactBase):
    """Homebrew and its ollama formula, our tarball releases, Ollama.app, and whether our
    LaunchAgent is loaded in the owner's GUI domain: one round trip."""

    def command(self, owner: str) -> str:
        user = sh_quote(owner)
        return "; ".join([
            "brew=; for b in " + " ".join(BREW_PATHS) + "; do [ -x \"$b\" ] && brew=$b && break; done",
            f"echo {MARK}brew; echo \"$brew\"; [ -n \"$brew\" ] && stat -f %Su \"${{brew%/bin/brew}}\"",
            f"echo {MARK}brew-ollama; [ -n \"$brew\" ] && \"$brew\" list --versions ollama 2>/dev/null",
            *releases_command(),
            f"echo {MARK}app; [ -d /Applications/Ollama.app ] && echo yes",
            f"echo {MARK}uid; id -u {user} 2>/dev/null",
            f"echo {MARK}agent; launchctl print gui/$(id -u {user})/{LABEL} >/dev/null 2>&1 && echo loaded",
            "true",
        ])

    def process(self, output: list[str]) -> MacOllama:
        s = sections(output)
        brew_lines = [line for line in s.get("brew", []) if line]
        versions = (s.get("brew-ollama") or [""])[0].split()
        uid = (s.get("uid") or [""])[0]
        return MacOllama(
            brew=brew_lines[0] if brew_lines else None,
            brew_owner=brew_lines[1] if len(brew_lines) > 1 else None,
            brew_version=versions[-1] if len(versions) > 1 else None,
            releases=parse_releases(s),
            app=bool(s.get("app")),
            owner_uid=int(uid) if uid.isdigit() else None,
            agent_loaded=bool(s.get("agent")),
        )


def brew_prefix(brew_bin: str) -> str:
    return brew_bin.removesuffix("/bin/brew")


def brew_environment(brew_bin: str) -> dict[str, str]:
    """pyinfra's brew operations and facts run `brew` from PATH, and over SSH macOS's PATH has
    no Homebrew (https://github.com/pyinfra-dev/pyinfra/issues/507): this host's prefix first."""
    return {"PATH": f"{brew_prefix(brew_bin)}/bin:/usr/bin:/bin:/usr/sbin:/sbin"}


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


def install_macos(config: HostConfig, host_plan: HostPlan, state: OllamaState, observed: dict[str, FileState]) -> None:
    """`observed`: our root-owned files as the deploy found them (the GPU memory limit's LaunchDaemon)."""
    decision, login = host_plan.decision, host_plan.facts.login
    if not config.developer_users:
        failure(name="Ollama LaunchAgent owner", message="macOS: developer_users is empty: the LaunchAgent "
                "runs in a developer's session; set developer_users for this host")
        return
    owner = agent_owner(config)
    mac = host.get_fact(MacOllamaFact, owner=owner)
    if mac.owner_uid is None:
        failure(name="Ollama LaunchAgent owner", message=f"macOS: developer user {owner} does not exist")
        return
    if mac.app:
        host.log("warning: /Applications/Ollama.app is installed: it overrides the server environment from its "
                 "own settings and auto-updates; quit it and remove it from Login Items on managed Macs")
    floor = effective_floor(config.ollama_min_version, decision.min_ollama)
    # Homebrew installs from the internet: an air-gapped, bundle or mirror Mac takes the tarball.
    formula = mac.brew is not None and config.ollama_source == "internet"
    if mac.brew and not formula:
        host.log(f"ollama: Homebrew is installed but needs the internet; ollama_source is {config.ollama_source}: "
                 "the verified CLI tarball instead of the formula")
    # Where Homebrew is installed, the ollama on the host may be the formula's: only our own
    # release counts for the tarball then.
    installed = mac.brew_version if formula else mac.tarball_version or (None if mac.brew else state.binary_version)
    choice = choose_version(installed, config.ollama_version, floor, config.ollama_upgrade, config.ollama_downgrade)
    binary_changed = []
    if formula:
        # Homebrew refuses to run as root: run it as the prefix's owner. The formula's version is
        # Homebrew's, not our pin: the floor is checked against the running server below. pyinfra's
        # brew.packages is called only to install or upgrade: its own fact (`brew list --versions`)
        # costs a round trip on those runs alone.
        host.log(f"ollama: Homebrew formula ({choice.reason}; the version is Homebrew's current formula)")
        if choice.action != "keep":
            binary_changed.append(brew.packages(
                name="Ollama formula (Homebrew)", packages=["ollama"],
                latest=installed is not None, _env=brew_environment(mac.brew), _sudo=True,
                _sudo_user=mac.brew_owner or owner, _use_sudo_login=True))
        binary = f"{brew_prefix(mac.brew)}/opt/ollama/bin/ollama"
        expected = None
    else:
        host.log(f"ollama: CLI tarball from {config.ollama_source} ({choice.reason})")
        if choice.action != "keep":
            template = sources.release_template("ollama", config.ollama_source, config.ollama_url_template,
                                                config.mirror_url)
            binary_changed.append(release(name="Ollama CLI tarball (verified)",
                                          version=choice.version, url_template=template,
                                          bundle_dir=config.bundle_dir if config.ollama_source == "bundle" else None,
                                          _sudo=True))
            binary_changed.append(activate(name="Activate the Ollama release", version=choice.version,
                                           _sudo=True))
        binary = BIN_LINK
        expected = choice.version
    # Apple Silicon's GPU memory limit, set before the server (re)starts: Ollama reads it once.
    limit = apple.apply(host_plan.gpu_limit, observed)
    restart_for = binary_changed + ([limit] if limit else [])
    # The LaunchAgent lives in the developer's home: read and written as the developer.
    home = f"/Users/{owner}"
    agent = launch_agent(owner)
    before = observe([], {owner: [agent]}, "Darwin", login).get(agent, MISSING)
    refusal = editable(before, mac.owner_uid, (home,))
    if refusal:
        failure(name="Ollama LaunchAgent", message=f"{host.name}: user {owner}: {agent} {refusal}: refusing to edit it")
        return
    content = render("com.localcode.ollama.plist.j2", label=LABEL, binary=binary,
                     environment=server_environment(config, decision, host_plan.gpu_environment), log=f"{home}/Library/Logs/localcode-ollama.log")
    plist = write_text(name="Ollama LaunchAgent", path=agent, text=content.decode(), before=before,
                       why="the Ollama LaunchAgent", run_as=tuple(as_account("Darwin", owner)), _sudo=True)
    agent_reload(name="Reload the Ollama LaunchAgent (plist, binary or GPU memory limit changed)", plist=agent,
                 uid=mac.owner_uid, _sudo=True,
                 _if=lambda: plist.did_change() or any(op.did_change() for op in restart_for))
    agent_loaded(name="Ollama LaunchAgent loaded (launchctl bootstrap)", plist=agent, owner=owner, _sudo=True)
    running_version(name="Ollama server runs the expected version", api=config.ollama_host,
                    version=expected, minimum=floor)


@operation()
def release(version: str, url_template: str, bundle_dir: str | None = None):
    """Download (or, from a bundle, push), verify and unpack the CLI tarball into its own
    directory, unless it is there."""
    name = f"{version}{SUFFIX}"
    if name in host.get_fact(ReleasesFact).names:
        host.noop(f"Ollama {version} (CLI tarball) already unpacked in {BASE}/{name}")
        return
    yield from install_release(url_template, version, [TARBALL], f"{BASE}/{name}", bundle_dir, "Darwin")


@operation()
def activate(version: str):
    """Point `current` and /usr/local/bin/ollama at the release."""
    name = f"{version}{SUFFIX}"
    releases = host.get_fact(ReleasesFact)
    want_bin = f"{BASE}/current/ollama"   # the tarball holds the binary at its top
    if releases.current == name and releases.bin_kind == "link" and releases.bin_target == want_bin:
        host.noop(f"Ollama {version} is the active release")
        return
    if releases.current != name:
        yield from switch_link(f"{BASE}/{name}", f"{BASE}/current", "Darwin")
    if releases.bin_kind != "link" or releases.bin_target != want_bin:
        # A fresh macOS has no /usr/local/bin (https://github.com/beeware/briefcase-macOS-app-template/issues/79).
        yield command("mkdir", "-p", "/usr/local/bin")
        yield from switch_link(want_bin, BIN_LINK, "Darwin")
