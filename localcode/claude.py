"""Claude Code on every host, pinned and verified, never self-updating.

Native (default): the release binary for the host's platform, checked against the sha256 and
size in that release's manifest.json, in `/usr/local/lib/localcode/claude/<version>/claude`
with `/usr/local/bin/claude` pointing at it (on every user's PATH). Alternatives: `npm` (the
pinned wrapper and platform packages, Node >= 22 checked) and, on macOS, the Homebrew cask.

On macOS, where SSH's PATH has neither /usr/local/bin nor Homebrew's prefix, Claude Code, node
and npm are named by their absolute paths, and Homebrew's brew and npm run as the owner of its
repository (brew refuses root; npm -g as root would leave root's files in that prefix)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import FactBase, operation
from pyinfra.operations import brew

from .facts import MARK, HostHardware, sections
from . import helper_scripts, sources, summary
from .ollama.macos import Homebrew, homebrew_command, parse_homebrew
from .ops import failure, switch_link
from .settings import HostConfig
from .shell import command
from .textedit import JsonEditError, set_json
from .userfiles import MISSING, write_text

BASE = "/usr/local/lib/localcode/claude"
BIN_LINK = "/usr/local/bin/claude"
INSTALL_HELPER = helper_scripts.path("localcode-install-claude")
MANAGED_SETTINGS = {"Linux": "/etc/claude-code/managed-settings.json",
                    "Darwin": "/Library/Application Support/ClaudeCode/managed-settings.json"}
# Managed-settings variables that would take claude-local away from the local server.
POLICY_OVERRIDES = {"CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY",
                    "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL",
                    "ANTHROPIC_DEFAULT_SONNET_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL"}
PLATFORMS = {("Linux", "x86_64"): "linux-x64", ("Linux", "aarch64"): "linux-arm64",
             ("Darwin", "arm64"): "darwin-arm64", ("Darwin", "x86_64"): "darwin-x64"}
# Claude Code on a Mac: our link, then the cask's or npm's in Homebrew's prefix (on an Intel Mac
# that is /usr/local/bin/claude, our link's own path).
MAC_CLAUDE = (BIN_LINK, "/opt/homebrew/bin/claude")


def mac_claude() -> str:
    """Shell that sets $c to the first Claude Code of MAC_CLAUDE there is (empty: none)."""
    return "c=; for b in " + " ".join(MAC_CLAUDE) + '; do [ -x "$b" ] && c=$b && break; done'


@dataclass(frozen=True)
class ClaudeInstall:
    version: str | None          # what `claude --version` reports (on a Mac, the first of MAC_CLAUDE)
    link: str | None             # where /usr/local/bin/claude points
    releases: tuple[str, ...]
    node_major: int | None
    musl: bool
    homebrew: Homebrew | None = None  # macOS


class ClaudeInstallFact(FactBase):
    """The Claude Code installed (on PATH; on a Mac the first of MAC_CLAUDE), our release layout,
    Node's major version and the libc, and on a Mac Homebrew (whose node it is there): one trip."""

    def default(self) -> ClaudeInstall:
        return ClaudeInstall(None, None, (), None, False)

    def command(self, os_name: str) -> str:
        mac = os_name == "Darwin"
        other = f'{mac_claude()}; [ -n "$c" ] && "$c" --version 2>/dev/null' if mac else "claude --version 2>/dev/null"
        readlink = "/usr/bin/readlink" if mac else "readlink"
        return "; ".join([
            *(homebrew_command() if mac else []),
            # Our own install names its version in the link; only another one is asked (slow start).
            f"echo {MARK}version; l=$({readlink} {BIN_LINK} 2>/dev/null); case \"$l\" in {BASE}/*/claude) "
            f"v=${{l#{BASE}/}}; echo \"${{v%%/*}}\" ;; *) {other} ;; esac",
            f"echo {MARK}link; {readlink} {BIN_LINK} 2>/dev/null",
            f"echo {MARK}releases; for d in {BASE}/*/; do [ -x \"$d/claude\" ] && basename \"$d\"; done 2>/dev/null",
            f"echo {MARK}node; " + ('[ -n "$p" ] && [ -x "$p/bin/node" ] && "$p/bin/node" --version 2>/dev/null'
                                    if mac else "node --version 2>/dev/null"),
            *([] if mac else [f"echo {MARK}musl; ldd --version 2>&1 | grep -qi musl && echo yes"]),
            "true",
        ])

    def process(self, output: list[str]) -> ClaudeInstall:
        s = sections(output)
        version = next((line.split()[0] for line in s.get("version", []) if line.strip()), None)
        node = next((line.strip().lstrip("v").split(".")[0] for line in s.get("node", []) if line.strip()), "")
        return ClaudeInstall(version, next((x for x in s.get("link", []) if x), None),
                             tuple(x for x in s.get("releases", []) if x),
                             int(node) if node.isdigit() else None, bool(s.get("musl")), parse_homebrew(s))


def platform(facts: HostHardware, musl: bool) -> str | None:
    key = PLATFORMS.get((facts.os, facts.arch))
    return f"{key}-musl" if key and musl and facts.os == "Linux" else key


@operation()
def native(version: str, platform_: str, url_template: str, state: ClaudeInstall, os_name: str,
           bundle_dir: str | None = None):
    """Download (or push from a bundle), verify and install the pinned binary, then point
    /usr/local/bin/claude at it (atomically; a fresh Mac has no /usr/local/bin)."""
    dest = f"{BASE}/{version}"
    if version in state.releases and state.link == f"{dest}/claude":
        host.noop(f"Claude Code {version} is installed and on PATH")
        return
    if version not in state.releases:
        urls = [url_template.format(version=version, file=f) for f in ("manifest.json", f"{platform_}/claude")]
        staged = [url.removeprefix(f"file://{sources.HOST_CACHE}/") for url in urls]
        if bundle_dir:
            yield from sources.push(bundle_dir, staged, os_name=os_name)
        yield command(INSTALL_HELPER, *urls, platform_, version, dest)
        if bundle_dir:
            yield command("rm", "-f", *(f"{sources.HOST_CACHE}/{path}" for path in staged))
    if os_name == "Darwin":
        yield command("mkdir", "-p", BIN_LINK.rsplit("/", 1)[0])
    yield from switch_link(f"{dest}/claude", BIN_LINK, os_name)


@operation()
def npm(version: str, registry: str | None, state: ClaudeInstall, program: str = "npm"):
    """The pinned npm packages (the wrapper pulls the platform binary package), with `program`
    (on a Mac Homebrew's npm, run as the owner of its prefix). Ours rather than pyinfra's
    npm.packages: its NpmPackages fact (pyinfra 3.10) does not parse scoped names such as
    @anthropic-ai/claude-code, so it would install again on every run, after one more round trip
    (`npm list -g`)."""
    if state.version == version:
        host.noop(f"Claude Code {version} is installed (npm)")
        return
    if state.node_major is None:
        yield from failure._inner(message="claude_install_method npm: Node.js is not installed")
        return
    if state.node_major < 22:
        host.log(f"warning: Node {state.node_major} is older than Claude Code's engines.node >= 22")
    args = ["install", "-g", f"@anthropic-ai/claude-code@{version}"]
    if registry:
        args += ["--registry", registry]
    yield command(program, *args)


@operation()
def reports_version(version: str, os_name: str):
    """`claude --version` (on PATH; on a Mac the first of MAC_CLAUDE) must print the pinned
    version (run when an install changed something or the version observed at the start was
    another)."""
    if os_name == "Darwin":
        yield command("/bin/sh", "-c", mac_claude() + '; v=$([ -n "$c" ] && "$c" --version 2>/dev/null | '
                      '/usr/bin/cut -d" " -f1); [ "$v" = "$1" ] || { echo "claude --version reports ${v:-nothing}, '
                      'expected $1" >&2; exit 1; }', "localcode", version)
        return
    yield command("sh", "-c", 'v=$(claude --version 2>/dev/null | cut -d" " -f1); [ "$v" = "$1" ] || '
                  '{ echo "claude --version reports ${v:-nothing}, expected $1" >&2; exit 1; }', "localcode", version)


def install(config: HostConfig, facts: HostHardware, owned: dict) -> None:
    state = host.get_fact(ClaudeInstallFact, os_name=facts.os)
    method = config.claude_install_method
    installed = None
    if method == "native":
        target = platform(facts, state.musl)
        if target is None:
            failure(name="Claude Code platform", message=f"no Claude Code build for {facts.os} {facts.arch}")
            return
        template = sources.release_template("claude", config.claude_source, config.claude_url_template,
                                            config.mirror_url)
        installed = native(name="Claude Code release (verified)", version=config.claude_version,
                           platform_=target, url_template=template, state=state, os_name=facts.os,
                           bundle_dir=config.bundle_dir if config.claude_source == "bundle" else None)
    elif facts.os == "Darwin" and state.homebrew is None:
        failure(name="Claude Code (Homebrew)", message=f"claude_install_method {method} on macOS needs Homebrew "
                                                        "(its cask, or its node and npm): it is not installed")
        return
    elif method == "npm":
        # On a Mac: Homebrew's npm as the owner of its prefix, where npm -g installs.
        on_mac = {"program": f"{state.homebrew.prefix}/bin/npm", **state.homebrew.arguments()} if state.homebrew else {}
        installed = npm(name="Claude Code (npm)", version=config.claude_version,
                        registry=config.claude_npm_registry, state=state, **on_mac)
    elif facts.os != "Darwin":
        failure(name="Claude Code cask", message="claude_install_method brew needs macOS with Homebrew")
        return
    elif state.version != config.claude_version:
        # The cask, installed or upgraded only when another version is found (its version is
        # Homebrew's, checked against the pin below), as the owner of Homebrew's repository:
        # Homebrew refuses root. pyinfra's brew.casks reads `brew --version` and the installed
        # casks: two round trips, on those runs alone.
        installed = brew.casks(name="Claude Code (Homebrew cask)", casks=["claude-code"], latest=True,
                               **state.homebrew.arguments())
    if installed is not None:
        summary.change(host, f"Claude Code {state.version or 'none'} -> {config.claude_version}", installed)
    reports_version(name="claude --version reports the pinned version", version=config.claude_version,
                    os_name=facts.os,
                    _if=lambda: (installed is not None and installed.did_change())
                    or state.version != config.claude_version)
    no_self_updates(facts.os, owned)


def managed_paths(os_name: str) -> list[str]:
    return [MANAGED_SETTINGS[os_name]] if os_name in MANAGED_SETTINGS else []


def forced_by_policy(managed_text: str) -> list[str]:
    """Pure: the organisation's managed settings that win over our local profile and projects
    (they have the highest precedence): a provider switch, an endpoint, a model."""
    try:
        managed = json.loads(managed_text) if managed_text.strip() else {}
    except ValueError:
        return []
    env = managed.get("env") if isinstance(managed, dict) and isinstance(managed.get("env"), dict) else {}
    forced = [f"env {k}={env[k]}" for k in sorted(env) if k in POLICY_OVERRIDES and str(env[k]) not in ("", "0")]
    if isinstance(managed, dict) and managed.get("model"):
        forced.append(f"model {managed['model']}")
    return forced


def no_self_updates(os_name: str, owned: dict) -> None:
    """Managed hosts never self-update: DISABLE_UPDATES in the managed settings (highest
    precedence, for every user and profile); other keys there stay as they are, and where they
    force a provider, an endpoint or a model, the run says so."""
    path = MANAGED_SETTINGS[os_name]
    state = owned.get(path, MISSING)
    for setting in forced_by_policy(state.text or ""):
        host.log(f"warning: {path} sets {setting}: the organisation's managed settings win over "
                 f"claude-local and configured projects")
    try:
        text = set_json(state.text or "", ("env",), {"DISABLE_UPDATES": "1"})
    except JsonEditError as exc:
        failure(name="Claude Code managed settings", message=f"{path}: {exc}")
        return
    write_text(name="Claude Code managed settings: no self-updates", path=path, text=text, before=state,
               why="DISABLE_UPDATES")
