"""Plan-level runs of the real deploy.py against `@fake` hosts (scripted command outputs):
which operations it records for a host, with which commands and privileges, and which facts
it reads. This is how the macOS paths are tested on a Linux machine: `FakeMac` models a Mac
as docs/notes/macos.md describes it, and its assertions fail a test on a command the real
Mac would refuse."""

from __future__ import annotations

import base64
import io
import os
import posixpath
import re
import shlex
import stat
import subprocess
import sys
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.api.connect import connect_all
from pyinfra.connectors.fake import FakeConnector
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host, ctx_inventory, ctx_state

from localcode import settings

REPO = Path(__file__).resolve().parents[1]
M = "::localcode::"


@dataclass
class PlannedOp:
    name: str
    sudo: bool
    sudo_user: str | None
    commands: list[str]
    uploads: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)  # the operation's _env
    runs: bool = True  # its `_if` holds in a run where every earlier operation succeeded

    def text(self) -> str:
        return "\n".join(self.commands)


@dataclass(frozen=True)
class FactRun:
    """A fact's command as the deploy sent it, with the privileges pyinfra ran it under."""

    command: str
    sudo: bool
    sudo_user: str | None
    env: dict[str, str]


@dataclass
class Deploy:
    """What the deploy planned for one host: its operations in order and the facts it read."""

    ops: list[PlannedOp]
    facts: list[FactRun]

    def by_name(self) -> dict[str, PlannedOp]:
        return {op.name: op for op in self.ops}


def _render(command) -> tuple[str | None, tuple[str, str] | None]:
    if isinstance(command, FileUploadCommand):
        src = command.src
        content = src.getvalue() if isinstance(src, (io.StringIO, io.BytesIO)) else \
            Path(src).read_text() if isinstance(src, str) else ""
        return None, (command.dest, content if isinstance(content, str) else content.decode())
    if isinstance(command, StringCommand):
        return command.get_masked_value(), None
    return repr(command), None


def plan_deploy(hosts: list[tuple[str, dict]], monkeypatch) -> dict[str, list[PlannedOp]]:
    """Load deploy.py for fake hosts and expand every recorded operation's commands."""
    return {name: deploy.ops for name, deploy in plan_hosts(hosts, monkeypatch).items()}


def plan_hosts(hosts: list[tuple[str, dict]], monkeypatch) -> dict[str, Deploy]:
    """plan_deploy, with the facts each host was asked for."""
    # Imported here: pyinfra_cli patches the process with gevent on import, and the lab tests
    # (threads, subprocesses) are collected into the same process.
    from pyinfra_cli.util import load_deploy_file

    facts: dict[str, list[FactRun]] = {}
    run = FakeConnector.run_shell_command

    def recorded(self, command, *args, **arguments):
        text = command if isinstance(command, str) else command.get_masked_value()
        fact = FactRun(text, bool(arguments.get("_sudo")), arguments.get("_sudo_user"), dict(arguments.get("_env") or {}))
        facts.setdefault(self.host.name, []).append(fact)
        return run(self, command, *args, **arguments)

    monkeypatch.setattr(FakeConnector, "run_shell_command", recorded)
    # Each plan is a run of its own: settings caches the validated inventory under pyinfra's
    # `inventory` context object, whose hash is the inventory's of the moment, so a new
    # inventory at a freed one's address would find that one's hosts.
    monkeypatch.setattr(settings, "_VALIDATED", weakref.WeakKeyDictionary())
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PYINFRA_FAKE_DELAY", "0")
    state = State(check_for_changes=False)
    state.cwd = str(REPO)
    ctx_state.set(state)
    inventory = Inventory(([(name, {"fake_delay": 0, "fake_delay_jitter": 0, **data}) for name, data in hosts], {}))
    ctx_inventory.set(inventory)
    state.init(inventory, Config())
    connect_all(state)
    load_deploy_file(state, str(REPO / "deploy.py"))
    planned: dict[str, Deploy] = {}
    for host in inventory:
        ops = []
        for op_hash in state.get_op_order():
            data = state.ops[host].get(op_hash)
            if data is None:
                continue
            commands, uploads = [], {}
            with ctx_host.use(host):
                for command in data.command_generator():
                    text, upload = _render(command)
                    if text is not None:
                        commands.append(text)
                    if upload is not None:
                        uploads[upload[0]] = upload[1]
            args = data.global_arguments
            # A run where every operation succeeds: `_if` sees the earlier ones' changes.
            conditions = args.get("_if") or []
            runs = all(condition() for condition in (conditions if isinstance(conditions, list) else [conditions]))
            data.operation_meta.set_complete(True, commands if runs else [], CommandOutput([]))
            ops.append(PlannedOp(sorted(state.op_meta[op_hash].names)[0], bool(args.get("_sudo")),
                                 args.get("_sudo_user"), commands, uploads, dict(args.get("_env") or {}), runs))
        planned[host.name] = Deploy(ops, facts.get(host.name, []))
    return planned


def darwin_hardware(ram_gib: int = 48, login: str = "ana", wired_limit_mb: int = 0,
                    iogpu_daemon: bool = False) -> list[str]:
    """A Mac's hardware fact: `sysctl iogpu.wired_limit_mb` (0: macOS's default) and whether our
    LaunchDaemon that keeps it across reboots is installed."""
    return [f"{M}uname", "Darwin", "arm64", f"{M}login", login, f"{M}darwin", str(ram_gib * 1024**3),
            "Apple M4 Pro", str(wired_limit_mb), f"{M}iogpu-daemon", *(["present"] if iogpu_daemon else [])]


def linux_base() -> dict:
    """The Ollama layout of a Linux host with nothing of ours installed yet."""
    return {"for t in curl zstd tar": [f"{M}releases", f"{M}current", f"{M}bin-link", "missing", f"{M}manual-lib",
                                       f"{M}tools", "curl", "zstd", "tar"]}


def linux_hardware(ram_gib: int = 64, nvidia_mib: tuple[int, ...] = (), login: str = "root") -> list[str]:
    out = [f"{M}uname", "Linux", "x86_64", f"{M}login", login, f"{M}meminfo", f"MemTotal: {ram_gib * 1024 * 1024} kB"]
    if nvidia_mib:
        out += [f"{M}nvidia", *(f"NVIDIA GeForce RTX 4090, {m}" for m in nvidia_mib), f"{M}nvidia-rc", "0"]
    return out


def accounts(*entries: tuple[str, int, str, str], macos: bool = False) -> list[str]:
    """The AccountsFact part of the hardware fact for (user, uid, home, shell): getent passwd
    lines, or on macOS a dscl record after each user's marker, as the host prints them."""
    if not macos:
        return [f"{M}users", *(f"{u}:x:{uid}:{uid}::{home}:{shell}" for u, uid, home, shell in entries)]
    return [f"{M}users", *(line for u, uid, home, shell in entries for line in (
        f"{M}dscl:{u}", f"NFSHomeDirectory: {home}", f"PrimaryGroupID: {uid}", f"UniqueID: {uid}",
        f"UserShell: {shell}"))]


def no_ollama() -> list[str]:
    return [f"{M}bin", "", f"{M}client", f"{M}version", "", f"{M}tags"]


# A Mac as docs/notes/macos.md describes it.

# What a command finds over SSH (and sudo): the stock directories only.
SSH_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
# The stock programs our commands and facts name bare, where a macOS 14/15 has them.
STOCK = {
    "/bin": {"bash", "cat", "chmod", "cp", "date", "echo", "launchctl", "ln", "ls", "mkdir", "mv", "ps", "pwd",
             "realpath", "rm", "rmdir", "sh", "sleep", "test", "zsh"},
    "/usr/bin": {"awk", "base64", "basename", "curl", "cut", "dirname", "dscl", "env", "find", "grep", "gzip",
                 "head", "id", "mktemp", "printf", "readlink", "rsync", "sed", "shasum", "sort", "stat", "su",
                 "sudo", "tail", "tar", "touch", "tr", "uname", "wc", "xargs"},
    "/usr/sbin": {"chown", "netstat", "sysctl"},
    "/sbin": {"sha256sum"},
}
# Shell builtins and reserved words: never looked up on PATH.
BUILTINS = {".", ":", "[", "break", "cd", "command", "continue", "echo", "eval", "exec", "exit", "export",
            "false", "local", "printf", "read", "return", "set", "shift", "test", "trap", "true", "umask", "unset",
            "wait"}
OPENERS = {"if", "then", "else", "elif", "do", "while", "until", "!", "{"}
CLOSERS = {"fi", "done", "esac", "}"}
# Wrappers whose argument is itself a command.
SUDO_OPTIONS_WITH_VALUE = {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-T", "-U"}


@dataclass(frozen=True)
class Run:
    """One program a command runs: its word, where it resolves (None: not found), the PATH, and
    the account a `sudo -u` inside the command runs it as (None: the command's own)."""

    word: str
    resolved: str | None
    path: str
    user: str | None = None


def _split(script: str) -> list[tuple[str, str, list[str]]]:
    """A small POSIX shell tokenizer: ("op", text, []) for ; && || | & ( ) ;; newline and
    redirections, ("word", text, substitutions) for words (quotes removed; the scripts of any
    $(...) or `...` inside, to be read as commands of their own)."""
    tokens: list[tuple[str, str, list[str]]] = []
    i, n = 0, len(script)
    word: list[str] | None = None
    subs: list[str] = []

    def end_word() -> None:
        nonlocal word, subs
        if word is not None:
            tokens.append(("word", "".join(word), subs))
        word, subs = None, []

    def substitution(start: int) -> int:
        """Read `$(` ... `)` from `start` (just after `$(`): its script into subs; the index after it."""
        depth, j, quote = 1, start, None
        while j < n:
            c = script[j]
            if quote:
                if c == "\\" and quote == '"':
                    j += 1
                elif c == quote:
                    quote = None
            elif c in "'\"":
                quote = c
            elif c == "\\":
                j += 1
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    subs.append(script[start:j])
                    return j + 1
            j += 1
        raise ValueError(f"unterminated $( in {script!r}")

    def dollar(j: int) -> int:
        """A `$` expansion at j: arithmetic and ${...} stay in the word, $(...) is a substitution."""
        if script.startswith("$((", j):
            k = script.index("))", j)
            word.append(script[j:k + 2])
            return k + 2
        if script.startswith("$(", j):
            word.append("$(...)")
            return substitution(j + 2)
        if script.startswith("${", j):
            k = script.index("}", j)
            word.append(script[j:k + 1])
            return k + 1
        word.append("$")
        return j + 1

    while i < n:
        c = script[i]
        if c in " \t":
            end_word()
            i += 1
        elif c == "#" and word is None:
            while i < n and script[i] != "\n":
                i += 1
        elif c == "\n":
            end_word()
            tokens.append(("op", "\n", []))
            i += 1
        elif c == "\\":
            word = word if word is not None else []
            if i + 1 < n and script[i + 1] != "\n":
                word.append(script[i + 1])
            i += 2
        elif c == "'":
            word = word if word is not None else []
            k = script.index("'", i + 1)
            word.append(script[i + 1:k])
            i = k + 1
        elif c == '"':
            word = word if word is not None else []
            i += 1
            while script[i] != '"':
                if script[i] == "\\" and script[i + 1] in '$`"\\\n':
                    word.append(script[i + 1])
                    i += 2
                elif script[i] == "$":
                    i = dollar(i)
                else:
                    word.append(script[i])
                    i += 1
            i += 1
        elif c == "$":
            word = word if word is not None else []
            i = dollar(i)
        elif c in ";&|()<>":
            if c in "<>" and word is not None and "".join(word).isdigit():
                word, subs = None, []  # an io number: 2>/dev/null
            end_word()
            for op in (";;", "&&", "||", ">>", ">&", "<&", ";", "&", "|", "(", ")", ">", "<"):
                if script.startswith(op, i):
                    tokens.append(("op", op, []))
                    i += len(op)
                    break
        else:
            word = word if word is not None else []
            word.append(c)
            i += 1
    end_word()
    return tokens


def _commands(script: str) -> tuple[list[list[tuple[str, list[str]]]], set[str]]:
    """The simple commands of a script (each a list of (word, substitutions)), and the functions
    it defines. Reserved words, for/case headers and redirections are left out."""
    tokens = _split(script)
    commands: list[list[tuple[str, list[str]]]] = []
    functions: set[str] = set()
    current: list[tuple[str, list[str]]] = []
    skip_until: str | None = None  # "do" after for, "in" after case, ")" for a case pattern
    in_case = False
    i = 0
    while i < len(tokens):
        kind, text, subs = tokens[i]
        if skip_until is not None:
            if (kind, text) in (("word", skip_until), ("op", skip_until)):
                if skip_until == "in":
                    skip_until, in_case = ")", True
                    if i + 1 < len(tokens) and tokens[i + 1][:2] == ("op", "\n"):
                        i += 1
                else:
                    skip_until = None
            elif kind == "word" and text == "esac":
                skip_until, in_case = None, False
            i += 1
            continue
        if kind == "op":
            if text in (">", ">>", ">&", "<", "<&"):
                i += 2  # the redirection's target
                continue
            if current:
                commands.append(current)
                current = []
            if text == ";;" and in_case:
                skip_until = ")"
            i += 1
            continue
        if not current:
            if text in OPENERS or text in CLOSERS:
                if text == "esac":
                    in_case = False
                i += 1
                continue
            if text == "for":
                skip_until = "do"
                i += 1
                continue
            if text == "case":
                skip_until = "in"
                i += 1
                continue
            if i + 2 < len(tokens) and tokens[i + 1][:2] == ("op", "(") and tokens[i + 2][:2] == ("op", ")"):
                functions.add(text)
                i += 3
                continue
        if in_case and not current and text == "esac":
            in_case = False
            i += 1
            continue
        current.append((text, subs))
        i += 1
    if current:
        commands.append(current)
    return commands, functions


def _resolve(word: str, path: str, mac: FakeMac) -> str | None:
    for directory in path.split(":"):
        if word in mac.directory(directory):
            return f"{directory}/{word}"
    return None


def programs(script: str, mac: FakeMac, path: str = SSH_PATH, known: frozenset[str] = frozenset(),
             user: str | None = None) -> list[Run]:
    """Every program a shell command runs (through sudo, env, sh -c and command substitutions),
    with where `path` resolves it on this Mac. Builtins, shell functions, programs named by a
    variable and names the script first asks `command -v` about (`known`, from an enclosing
    script) are not lookups that can fail."""
    commands, functions = _commands(script)
    runs: list[Run] = []
    guarded: set[str] = set(known) | functions
    for words in commands:
        for _, subs in words:
            for sub in subs:
                runs += programs(sub, mac, path, frozenset(guarded), user)
        rest = [w for w, _ in words]
        while rest and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", rest[0]):
            if rest[0].startswith("PATH="):
                path = rest[0].removeprefix("PATH=")
            rest = rest[1:]
        while rest:
            word, args = rest[0], rest[1:]
            name = posixpath.basename(word)
            if word == "command" and args[:1] == ["-v"]:
                guarded.update(args[1:])
                break
            if word in BUILTINS or word in functions or word in known or word.startswith("$"):
                if word == "export":
                    for arg in args:
                        if arg.startswith("PATH="):
                            path = arg.removeprefix("PATH=")
                if word in ("exec", "command"):
                    rest = args
                    continue
                break
            resolved = word if word.startswith("/") else _resolve(word, path, mac)
            if resolved is None and word in guarded:
                break
            runs.append(Run(word, resolved, path, user))
            if name == "sudo":
                user = "root"
                while args and args[0].startswith("-") and args[0] != "--":
                    if args[0] == "-u":
                        user = args[1]
                    args = args[2:] if args[0] in SUDO_OPTIONS_WITH_VALUE else args[1:]
                rest = args[1:] if args[:1] == ["--"] else args
            elif name == "env":
                while args and (args[0].startswith("-") or "=" in args[0]):
                    if args[0].startswith("PATH="):
                        path = args[0].removeprefix("PATH=")
                    args = args[1:]
                rest = args
            elif name in ("sh", "bash", "zsh") and "-c" in args:
                runs += programs(args[args.index("-c") + 1], mac, path, frozenset(guarded), user)
                break
            else:
                break
    return runs


def shell_commands(op: PlannedOp) -> list[str]:
    """The operation's shell commands (not pyinfra's file, rsync or Python steps)."""
    return [c for c in op.commands if not re.match(r"[A-Z][A-Za-z]*Command\(", c)]


@dataclass(frozen=True)
class FakeMac:
    """A Mac the plan tests deploy to, answering our facts as a real one would, and the rules a
    real one enforces (docs/notes/macos.md):

    - over SSH, and through sudo, PATH is /usr/bin:/bin:/usr/sbin:/sbin: a program elsewhere
      (Homebrew's, or ours in /usr/local/bin) is found only by its absolute path;
    - a fresh macOS has no /usr/local/bin;
    - brew refuses to run as root: Homebrew's programs run as the owner of its repository;
    - a LaunchAgent's gui/<uid> domain exists only while its owner is logged in at the GUI;
    - `launchctl bootout` returns before launchd lets go of the label (see launchd_stub)."""

    homebrew: bool = True
    brew_owner: str = "ana"         # owner of /opt/homebrew
    brew_ollama: str | None = None  # the formula's linked version
    node: str | None = None         # Homebrew's node, `vX.Y.Z`
    tarball: str | None = None      # our active CLI tarball release (linked from /usr/local/bin)
    app: bool = False               # /Applications/Ollama.app
    logged_in: bool = True          # the developer's gui/<uid> domain exists
    agent_loaded: bool = False
    claude: str | None = None       # our Claude Code release, linked from /usr/local/bin
    developer: str = "ana"
    uid: int = 501
    login: str = "ana"              # who the deploy runs as
    ram_gib: int = 48
    files: dict[str, str] = field(default_factory=dict)  # developer files as the read helper reports them

    @property
    def home(self) -> str:
        return f"/Users/{self.developer}"

    def directory(self, path: str) -> set[str]:
        """The programs in a directory of this Mac."""
        found = set(STOCK.get(path, ()))
        if self.homebrew and path == "/opt/homebrew/bin":
            found |= {"brew"} | ({"ollama"} if self.brew_ollama else set()) | ({"node", "npm"} if self.node else set())
        if path == "/usr/local/bin":
            found |= ({"ollama"} if self.tarball else set()) | ({"claude"} if self.claude else set())
        return found

    def releases(self) -> list[str]:
        """Our Ollama releases and links (ReleasesFact, and part of MacOllamaFact)."""
        base = "/usr/local/lib/localcode/ollama"
        return [f"{M}releases", *([f"{self.tarball}-darwin", f"{M}current", f"{base}/{self.tarball}-darwin",
                                  f"{M}bin-link", "link", f"{base}/current/ollama"]
                                 if self.tarball else [f"{M}current", f"{M}bin-link", "missing"])]

    def ollama_fact(self) -> list[str]:
        """MacOllamaFact's output."""
        return [f"{M}brew", *(["/opt/homebrew/bin/brew", self.brew_owner] if self.homebrew else []),
                f"{M}brew-ollama", *([f"../Cellar/ollama/{self.brew_ollama}"] if self.brew_ollama else []),
                *self.releases(), f"{M}app", *(["yes"] if self.app else []), f"{M}uid", str(self.uid),
                f"{M}session", *(["yes"] if self.logged_in else []),
                f"{M}agent", *(["loaded"] if self.agent_loaded else [])]

    def claude_fact(self) -> list[str]:
        """ClaudeInstallFact's output on a Mac."""
        claude = "/usr/local/lib/localcode/claude"
        return [f"{M}brew", *(["/opt/homebrew/bin/brew", self.brew_owner] if self.homebrew else []),
                f"{M}version", *([self.claude] if self.claude else []),
                f"{M}link", *([f"{claude}/{self.claude}/claude"] if self.claude else []),
                f"{M}releases", *([self.claude] if self.claude else []),
                f"{M}node", *([self.node] if self.node else [])]

    def read_files(self) -> list[str]:
        """The read helper's report of the developer files given (each 0644, the developer's)."""
        lines = []
        for path, text in self.files.items():
            data = text.encode()
            lines += [f"{M}file:{path}", f"file {self.uid} 20 644 {len(data)}", base64.b64encode(data).decode()]
        return lines

    def host(self, **data) -> dict:
        """The inventory data of this Mac: the developer, `data`, and the facts' answers."""
        return {"developer_users": [self.developer], **data, "fake_responses": {
            "uname -s; uname -m": darwin_hardware(self.ram_gib, login=self.login)
            + accounts((self.developer, self.uid, self.home, "/bin/zsh"), macos=True),
            MAC_OLLAMA_FACT: self.ollama_fact(),
            RELEASES_FACT: self.releases(),
            MAC_CLAUDE_FACT: self.claude_fact(),
            "/api/tags": no_ollama(),
            **({"localcode-read": self.read_files()} if self.files else {}),
            # pyinfra's own brew facts, as the owner of the prefix
            re.compile(r"\( brew --version \)"): ["Homebrew 4.4.20"],
            re.compile(r"then \( brew list --versions \)"): [f"ollama {self.brew_ollama}"] if self.brew_ollama else [],
        }}

    # The rules.

    def runner(self, sudo: bool, sudo_user: str | None) -> str:
        return (sudo_user or "root") if sudo else self.login

    def runs(self, deploy: Deploy) -> list[tuple[str, Run, str]]:
        """(where, program, who runs it) for every operation command and fact of the deploy."""
        found = []
        for op in deploy.ops:
            for command in shell_commands(op):
                for run in programs(command, self, op.env.get("PATH", SSH_PATH)):
                    found.append((f"operation {op.name!r}: {command}", run,
                                  run.user or self.runner(op.sudo, op.sudo_user)))
        for fact in deploy.facts:
            for run in programs(fact.command, self, fact.env.get("PATH", SSH_PATH)):
                found.append((f"fact: {fact.command[:200]}", run, run.user or self.runner(fact.sudo, fact.sudo_user)))
        return found

    def assert_no_path_lookup(self, deploy: Deploy) -> None:
        """Every program resolves: named by its absolute path, or found where the command's
        PATH looks (SSH's unless the operation sets its own)."""
        missing = [f"{where}: {run.word} is not on PATH {run.path}" for where, run, _ in self.runs(deploy)
                   if run.resolved is None]
        assert not missing, "\n".join(missing)

    def assert_brew_as_owner(self, deploy: Deploy) -> None:
        """Homebrew's package managers (brew, and the npm of its prefix) run as the owner of its
        repository: brew refuses root, and npm -g as root would leave root's files there."""
        wrong = [f"{where}: {run.resolved} runs as {who}, not {self.brew_owner}"
                 for where, run, who in self.runs(deploy)
                 if run.resolved in ("/opt/homebrew/bin/brew", "/opt/homebrew/bin/npm") and who != self.brew_owner]
        assert not wrong, "\n".join(wrong)

    def assert_launchd_usable(self, deploy: Deploy) -> None:
        """No launchctl command into the developer's GUI domain while it does not exist (launchctl
        bootstrap fails there with 125)."""
        if self.logged_in:
            return
        wrong = [f"operation {op.name!r}: {command}" for op in deploy.ops for command in shell_commands(op)
                 if f"gui/{self.uid}" in command and "launchctl" in command]
        assert not wrong, "\n".join(wrong)

    def assert_usr_local_bin_made_first(self, deploy: Deploy) -> None:
        """Nothing is linked or moved into /usr/local/bin before a command creates it (a fresh
        macOS has none)."""
        made = False
        for op in deploy.ops:
            for command in shell_commands(op):
                words = shlex.split(command)
                if words[:2] in (["mkdir", "-p"], ["/bin/mkdir", "-p"]) and "/usr/local/bin" in words[2:]:
                    made = True
                if posixpath.basename(words[0]) in ("ln", "mv") and posixpath.dirname(words[-1]) == "/usr/local/bin":
                    assert made, f"operation {op.name!r}: {command}: /usr/local/bin does not exist yet"

    def assert_runs_as_on_a_mac(self, deploy: Deploy) -> None:
        """Every rule above."""
        self.assert_no_path_lookup(deploy)
        self.assert_brew_as_owner(deploy)
        self.assert_launchd_usable(deploy)
        self.assert_usr_local_bin_made_first(deploy)


# Distinctive parts of our macOS facts' commands, to answer them (MacOllamaFact before
# ReleasesFact: it holds the releases' command too).
MAC_OLLAMA_FACT = "/Applications/Ollama.app"
RELEASES_FACT = f"echo {M}releases; for d in /usr/local/lib/localcode/ollama/"
MAC_CLAUDE_FACT = '"$p/bin/node" --version'


def fresh_mac(homebrew: bool = True, logged_in: bool = True, **mac) -> FakeMac:
    """A Mac nothing of ours has touched: no /usr/local/bin, no Ollama, no Claude Code, no
    LaunchAgent; with or without Homebrew (owned by the developer, ana, uid 501), with the
    developer logged in at the GUI or not."""
    return FakeMac(homebrew=homebrew, logged_in=logged_in, **mac)


def deploy_mac(mac: FakeMac, monkeypatch, name: str = "@fake/mac", **data) -> Deploy:
    """Plan the deploy for one fake Mac, with host data `data`, and hold it to the Mac's rules."""
    deploy = plan_hosts([(name, mac.host(**data))], monkeypatch)[name]
    mac.assert_runs_as_on_a_mac(deploy)
    return deploy


def launchd_stub(directory: Path, draining: int, eio_after_drain: int = 0) -> dict[str, str]:
    """A launchctl and a sleep for running our launchd scripts here: `bootout` returns at once,
    but launchd still knows the label for `draining` more `print`s (a sleep each, in real
    time about a second); a `bootstrap` meanwhile fails with "5: Input/output error", and so do
    the first `eio_after_drain` bootstraps after it. Every call is logged to `calls`. Returns
    the replacements for /bin/launchctl and /bin/sleep."""
    state = directory / "state"
    state.write_text("loaded\n0\n0\n")
    launchctl = directory / "launchctl"
    launchctl.write_text(f"""#!{sys.executable}
import sys
from pathlib import Path
state = Path({str(state)!r})
loaded, draining, eio = state.read_text().split()
draining, eio = int(draining), int(eio)
with open({str(directory / 'calls')!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
verb = sys.argv[1]
if verb == "bootout":
    loaded, draining, eio = "gone", {draining}, {eio_after_drain}
    code = 0
elif verb == "print":
    code = 0 if loaded == "loaded" or draining > 0 else 113
elif verb == "bootstrap":
    if draining > 0 or eio > 0:
        eio = eio - 1 if draining == 0 else eio
        print("Bootstrap failed: 5: Input/output error", file=sys.stderr)
        code = 5
    else:
        loaded, code = "loaded", 0
else:
    code = 0
state.write_text(f"{{loaded}}\\n{{draining}}\\n{{eio}}\\n")
sys.exit(code)
""")
    sleep = directory / "sleep"
    sleep.write_text(f"""#!{sys.executable}
from pathlib import Path
state = Path({str(state)!r})
loaded, draining, eio = state.read_text().split()
state.write_text(f"{{loaded}}\\n{{max(0, int(draining) - 1)}}\\n{{eio}}\\n")
with open({str(directory / 'calls')!r}, "a") as log:
    log.write("sleep\\n")
""")
    for program in (launchctl, sleep):
        program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return {"/bin/launchctl": str(launchctl), "/bin/sleep": str(sleep)}


def run_with(command: str, replacements: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a planned `/bin/sh -c SCRIPT ARGS...` command here, its programs replaced by stubs."""
    words = shlex.split(command)
    assert words[:2] == ["/bin/sh", "-c"], command
    script = words[2]
    for program, stub in replacements.items():
        script = script.replace(program, stub)
    return subprocess.run(["sh", "-c", script, *words[3:]], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.defpath})
