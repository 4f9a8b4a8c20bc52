"""Ollama on macOS, run by our own LaunchAgent whose EnvironmentVariables carry the server
settings (Ollama.app would override them and auto-update: it is reported when present).

The binary: the Homebrew formula (never the app, never `brew services`) where Homebrew is
installed and the host takes Ollama from the internet; otherwise the CLI tarball from the
host's ollama_source (the internet, a bundle or a mirror), checked against sha256sum.txt and
unpacked into its own directory `/usr/local/lib/localcode/ollama/<version>-darwin`, with
`current` and /usr/local/bin/ollama switched by atomic renames, as on Linux.

Over SSH (and sudo) macOS's PATH is /usr/bin:/bin:/usr/sbin:/sbin: ollama (ours in
/usr/local/bin or Homebrew's) and launchd's tools are named by their absolute paths. Homebrew is
read from its files (brew refuses to run as root) and run as the owner of its repository. The
LaunchAgent lives in the owner's GUI domain, which exists only while they are logged in at the
Mac's screen: without it the plist is written and loads at their next login. The sources of
these behaviours are in docs/notes/macos.md."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from pyinfra import host
from pyinfra.api import FactBase, operation
from pyinfra.api.exceptions import FactProcessError
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
BREW_PATHS = ("/opt/homebrew/bin/brew", "/usr/local/bin/brew")  # Apple Silicon, Intel
LAUNCHCTL = "/bin/launchctl"
# launchd's own messages about our agent (spawn failures), in the unified log.
LAUNCHD_LOG = f"log show --last 10m --predicate 'eventMessage CONTAINS \"{LABEL}\"'"
TARBALL = "ollama-darwin.tgz"
SUFFIX = "-darwin"   # of our release directories
# How long a reload waits, polling each second, for launchd to let go of the label after
# `bootout` (it returns first; measured settling times are about 5 s).
BOOTOUT_WAIT_S = 10
# Reload a loaded LaunchAgent whose plist changed. $1 domain, $2 label, $3 plist, $4 seconds.
# bootstrap is retried once on launchd's "5: Input/output error", the label still draining.
RELOAD_SCRIPT = f"""d=$1 l=$2 p=$3 n=$4
{LAUNCHCTL} bootout "$d/$l" 2>/dev/null
i=0
while {LAUNCHCTL} print "$d/$l" >/dev/null 2>&1; do
  i=$((i + 1))
  [ "$i" -le "$n" ] || {{ echo "launchctl bootout $d/$l: still loaded after $n s" >&2; exit 1; }}
  /bin/sleep 1
done
bootstrap() {{ out=$({LAUNCHCTL} bootstrap "$d" "$p" 2>&1); }}
bootstrap && exit 0
case $out in *"5: Input/output error"*) /bin/sleep 1; bootstrap && exit 0 ;; esac
echo "launchctl bootstrap $d $p: $out" >&2
exit 1
"""


def agent_owner(config: HostConfig) -> str | None:
    """Whose GUI session runs the server: the first developer (None: nobody to run it)."""
    return config.developer_users[0] if config.developer_users else None


def launch_agent(owner: str) -> str:
    """The LaunchAgent's path, in its owner's home."""
    return f"/Users/{owner}/Library/LaunchAgents/{LABEL}.plist"


def agent_log(owner: str) -> str:
    """Where the LaunchAgent's server writes its output."""
    return f"/Users/{owner}/Library/Logs/localcode-ollama.log"


def log_hint(owner: str) -> str:
    """Where an operator reads why the server did not come up: its own output, then launchd's."""
    return f"{agent_log(owner)}; launchd: {LAUNCHD_LOG}"


@dataclass(frozen=True)
class Homebrew:
    """Homebrew on a Mac: its brew and the owner of its repository. brew refuses to run as root
    (services and --prefix aside), so whatever it runs, it runs as that account."""

    brew: str
    owner: str

    @property
    def prefix(self) -> str:
        return self.brew.removesuffix("/bin/brew")

    def environment(self) -> dict[str, str]:
        """pyinfra's brew operations and facts run `brew` from PATH, and over SSH macOS's PATH has
        no Homebrew (https://github.com/pyinfra-dev/pyinfra/issues/507): this prefix first."""
        return {"PATH": f"{self.prefix}/bin:/usr/bin:/bin:/usr/sbin:/sbin"}

    def arguments(self) -> dict[str, object]:
        """pyinfra global arguments that run an operation as the owner, with the prefix on PATH."""
        return {"_env": self.environment(), "_sudo": True, "_sudo_user": self.owner, "_use_sudo_login": True}


def homebrew_command() -> list[str]:
    """Shell (section `brew`, $p the prefix) that finds Homebrew and the owner of its repository:
    the prefix itself on Apple Silicon, `<prefix>/Homebrew` on Intel, whose /usr/local is root's."""
    return [
        "p=; for b in " + " ".join(BREW_PATHS) + "; do [ -x \"$b\" ] && p=${b%/bin/brew} && break; done",
        f"echo {MARK}brew; if [ -n \"$p\" ]; then echo \"$p/bin/brew\"; r=$p; "
        "[ -d \"$p/Homebrew\" ] && r=$p/Homebrew; /usr/bin/stat -f %Su \"$r\"; fi",
    ]


def parse_homebrew(s: dict[str, list[str]]) -> Homebrew | None:
    lines = [line.strip() for line in s.get("brew", []) if line.strip()]
    if not lines:
        return None
    if len(lines) != 2:
        raise FactProcessError("homebrew: expected brew and the owner of its repository")
    return Homebrew(lines[0], lines[1])


def formula_version(opt_link: str) -> str | None:
    """The formula's version from its opt link (`../Cellar/ollama/0.30.0_1`), without Homebrew's
    revision suffix."""
    match = re.fullmatch(r"(?:.*/)?Cellar/ollama/([0-9][^/_]*)(?:_[0-9]+)?/?", opt_link.strip())
    return match.group(1) if match else None


@dataclass(frozen=True)
class MacOllama:
    homebrew: Homebrew | None
    brew_version: str | None     # the formula's linked keg (Homebrew's opt link)
    releases: Releases           # our CLI tarball installs
    app: bool                    # /Applications/Ollama.app
    owner_uid: int | None
    session: bool                # the owner's GUI domain exists (logged in at the Mac's screen)
    agent_loaded: bool

    def uses_formula(self, config: HostConfig) -> bool:
        """Homebrew installs from the internet: an air-gapped, bundle or mirror Mac takes the tarball."""
        return self.homebrew is not None and config.ollama_source == "internet"

    def program(self, config: HostConfig) -> str:
        """The ollama the LaunchAgent runs, by its absolute path."""
        return f"{self.homebrew.prefix}/opt/ollama/bin/ollama" if self.uses_formula(config) else BIN_LINK

    @property
    def tarball_version(self) -> str | None:
        """The active CLI tarball release, if any."""
        current = self.releases.current
        return current.removesuffix(SUFFIX) if current and current.endswith(SUFFIX) else None


class MacOllamaFact(FactBase):
    """Homebrew and its ollama formula (read from Homebrew's files, never by running brew: facts
    run as root), our tarball releases, Ollama.app, the owner's GUI domain and whether our
    LaunchAgent is loaded there: one round trip."""

    def command(self, owner: str) -> str:
        user = sh_quote(owner)
        return "; ".join([
            *homebrew_command(),
            f"echo {MARK}brew-ollama; [ -n \"$p\" ] && [ -x \"$p/opt/ollama/bin/ollama\" ] && "
            "/usr/bin/readlink \"$p/opt/ollama\"",
            *releases_command(),
            f"echo {MARK}app; [ -d /Applications/Ollama.app ] && echo yes",
            f"u=$(/usr/bin/id -u {user} 2>/dev/null); echo {MARK}uid; echo \"$u\"",
            f"echo {MARK}session; [ -n \"$u\" ] && {LAUNCHCTL} print \"gui/$u\" >/dev/null 2>&1 && echo yes",
            f"echo {MARK}agent; [ -n \"$u\" ] && {LAUNCHCTL} print \"gui/$u/{LABEL}\" >/dev/null 2>&1 && echo loaded",
            "true",
        ])

    def process(self, output: list[str]) -> MacOllama:
        s = sections(output)
        uid = next((line.strip() for line in s.get("uid", []) if line.strip()), "")
        return MacOllama(
            homebrew=parse_homebrew(s),
            brew_version=next((formula_version(line) for line in s.get("brew-ollama", []) if line.strip()), None),
            releases=parse_releases(s),
            app=bool(s.get("app")),
            owner_uid=int(uid) if uid.isdigit() else None,
            session=bool(s.get("session")),
            agent_loaded=bool(s.get("agent")),
        )


@dataclass(frozen=True)
class MacServer(OllamaState):
    """The server as the deploy found it, with what the macOS step leaves for the model steps:
    the ollama the LaunchAgent runs (absolute) and, while the owner has no GUI session, why the
    server does not run during this deploy."""

    program: str = BIN_LINK
    waiting: str | None = None

    @classmethod
    def of(cls, state: OllamaState, program: str, waiting: str | None = None) -> MacServer:
        return cls(**{f.name: getattr(state, f.name) for f in fields(OllamaState)}, program=program, waiting=waiting)


@operation()
def agent_bootstrap(plist: str, uid: int, owner: str, mac: MacOllama):
    """Load the LaunchAgent into the owner's GUI domain unless it is loaded there; without that
    domain (the owner is not logged in at the Mac's screen) it loads at their next login."""
    if not mac.session:
        host.noop(f"LaunchAgent {LABEL} loads at {owner}'s next login (no gui/{uid} domain now)")
        return
    if mac.agent_loaded:
        host.noop(f"LaunchAgent {LABEL} is loaded in gui/{uid}")
        return
    yield command(LAUNCHCTL, "bootstrap", f"gui/{uid}", plist)


@operation()
def agent_reload(plist: str, uid: int, mac: MacOllama):
    """Reload the loaded LaunchAgent after its plist changed: bootout, wait until launchd has let
    go of the label (bounded), bootstrap (retried once on launchd's Input/output error)."""
    if not (mac.session and mac.agent_loaded):
        host.noop(f"LaunchAgent {LABEL} is not loaded in gui/{uid}: it loads with the new plist")
        return
    yield command("/bin/sh", "-c", RELOAD_SCRIPT, "localcode-reload", f"gui/{uid}", LABEL, plist, str(BOOTOUT_WAIT_S))


@operation()
def agent_restart(uid: int, mac: MacOllama):
    """Restart the loaded LaunchAgent's server after a binary or GPU memory limit change (its
    plist is the same): kickstart -k."""
    if not (mac.session and mac.agent_loaded):
        host.noop(f"LaunchAgent {LABEL} is not loaded in gui/{uid}: it starts with the new binary")
        return
    yield command(LAUNCHCTL, "kickstart", "-k", f"gui/{uid}/{LABEL}")


def install_macos(config: HostConfig, host_plan: HostPlan, state: OllamaState,
                  observed: dict[str, FileState]) -> OllamaState:
    """`observed`: our root-owned files as the deploy found them (the GPU memory limit's LaunchDaemon).
    Returns the server's state for the model steps (a MacServer once the LaunchAgent is planned)."""
    decision, login = host_plan.decision, host_plan.facts.login
    if not config.developer_users:
        failure(name="Ollama LaunchAgent owner", message="macOS: developer_users is empty: the LaunchAgent "
                "runs in a developer's session; set developer_users for this host")
        return state
    owner = agent_owner(config)
    mac = host.get_fact(MacOllamaFact, owner=owner)
    if mac.owner_uid is None:
        failure(name="Ollama LaunchAgent owner", message=f"macOS: developer user {owner} does not exist")
        return state
    if mac.app:
        host.log("warning: /Applications/Ollama.app is installed: it overrides the server environment from its "
                 "own settings and auto-updates; quit it and remove it from Login Items on managed Macs")
    floor = effective_floor(config.ollama_min_version, decision.min_ollama)
    formula = mac.uses_formula(config)
    if mac.homebrew and not formula:
        host.log(f"ollama: Homebrew is installed but needs the internet; ollama_source is {config.ollama_source}: "
                 "the verified CLI tarball instead of the formula")
    # Where Homebrew is installed, the ollama on the host may be the formula's: only our own
    # release counts for the tarball then.
    installed = mac.brew_version if formula else mac.tarball_version or (None if mac.homebrew else state.binary_version)
    choice = choose_version(installed, config.ollama_version, floor, config.ollama_upgrade, config.ollama_downgrade)
    binary_changed = []
    if formula:
        # Homebrew refuses to run as root: run it as the owner of its repository. The formula's
        # version is Homebrew's, not our pin: the floor is checked against the running server below.
        # pyinfra's brew.packages is called only to install or upgrade: its own fact (`brew list
        # --versions`, as the owner) costs a round trip on those runs alone.
        host.log(f"ollama: Homebrew formula ({choice.reason}; the version is Homebrew's current formula)")
        if choice.action != "keep":
            binary_changed.append(brew.packages(
                name="Ollama formula (Homebrew)", packages=["ollama"],
                latest=installed is not None, **mac.homebrew.arguments()))
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
        return state
    program = mac.program(config)
    content = render("com.localcode.ollama.plist.j2", label=LABEL, binary=program,
                     environment=server_environment(config, decision, host_plan.gpu_environment), log=agent_log(owner))
    plist = write_text(name="Ollama LaunchAgent", path=agent, text=content.decode(), before=before,
                       why="the Ollama LaunchAgent", run_as=tuple(as_account("Darwin", owner)), _sudo=True)
    uid = mac.owner_uid
    agent_bootstrap(name="Ollama LaunchAgent loaded (launchctl bootstrap)", plist=agent, uid=uid, owner=owner,
                    mac=mac, _sudo=True)
    agent_reload(name="Reload the Ollama LaunchAgent (its plist changed)", plist=agent, uid=uid, mac=mac,
                 _sudo=True, _if=plist.did_change)
    agent_restart(name="Restart the Ollama server (binary or GPU memory limit changed)", uid=uid, mac=mac,
                  _sudo=True,
                  _if=lambda: not plist.did_change() and any(op.did_change() for op in restart_for))
    if not mac.session:
        waiting = (f"the Ollama server starts when {owner} next logs in at the Mac's screen (no gui/{uid} "
                   "domain now: the LaunchAgent loads at next login)")
        host.log(f"ollama: {waiting}")
        return MacServer.of(state, program, waiting)
    running_version(name="Ollama server runs the expected version", api=config.ollama_host,
                    version=expected, minimum=floor, logs=log_hint(owner))
    return MacServer.of(state, program)


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
