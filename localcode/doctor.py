"""`localcode doctor INVENTORY`: prove every host works. Per host, in two round trips (the
hardware fact for the sizing, then one command gathering the rest), then one pure check each:
the running Ollama against the effective floor (and known bugs), the service, a loopback-only
listener, base and derived models with the planned num_ctx and server environment, a
streaming /v1/messages tool-call smoke test, Claude Code's version, each developer's alias and
settings files. `--deep` also runs `claude -p` as each developer user. What a host should have
is asked of the deploy (`server_environment`, `account_files`), never re-derived here."""

from __future__ import annotations

import ipaddress
import json
import plistlib
import re
import shlex
from dataclasses import asdict, dataclass, field

from packaging.version import Version
from pyinfra.api import FactBase
from pyinfra.api.exceptions import FactProcessError

from .apple import GpuLimit
from .claude import mac_claude
from .facts import MARK, OllamaFact, OllamaState, ShownModel, Unreadable, parse_ollama, sections
from .ollama.common import server_environment
from .ollama.macos import LABEL, LAUNCHCTL, LAUNCHD_LOG, agent_owner, launch_agent
from .plan import HostPlan
from .settings import HostConfig
from .sizing import Decision, gib
from .rendering import render
from .report import text_table
from .shell import sh_quote
from .userfiles import MISSING, FileState, FilesFact, parse_files, reader
from .versions import effective_floor, known_issue_warnings
from .wiring import UserFile, account_files, candidate_paths, local_environment

# Variables of a cloud setup (provider, model, credentials, endpoint) we look for in a
# developer's login environment.
CLOUD_NAMES = r"(ANTHROPIC_[A-Z0-9_]*|CLAUDE_CODE_(USE_[A-Z]+|OAUTH_TOKEN|SKIP_[A-Z_]*|SUBAGENT_MODEL)|AWS_[A-Z_]+|CLOUD_ML_REGION|GOOGLE_[A-Z_]+)"

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
SMOKE_TOOL = {"name": "get_weather", "description": "Get the current weather for a city.",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
# The bind is judged where the server really listens (the loopback check), not in its environment.
BIND = "OLLAMA_HOST"
# The tools the doctor runs on a Mac, by their absolute paths: SSH's PATH there is
# /usr/bin:/bin:/usr/sbin:/sbin (docs/notes/macos.md).
MAC_TOOLS = {"launchctl": LAUNCHCTL, "netstat": "/usr/sbin/netstat", "curl": "/usr/bin/curl", "su": "/usr/bin/su",
             "tail": "/usr/bin/tail"}


@dataclass
class Check:
    name: str
    status: str
    detail: str
    remedy: str = ""


@dataclass
class HostReport:
    host: str
    checks: list[Check] = field(default_factory=list)
    plan: dict | None = None
    memory: dict | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.status != FAIL for c in self.checks)

    def as_dict(self) -> dict:
        return {"host": self.host, "ok": self.ok, "error": self.error, "plan": self.plan, "memory": self.memory,
                "checks": [asdict(c) for c in self.checks]}


def smoke_body(model: str) -> str:
    return json.dumps({"model": model, "max_tokens": 256, "stream": True, "tools": [SMOKE_TOOL],
                       "messages": [{"role": "user", "content": "What is the weather in Paris? "
                                     "Use the get_weather tool."}]})


@dataclass(frozen=True)
class Service:
    """The Ollama service as its manager reports it: systemd's `is-active` answer, or the
    LaunchAgent's launchd state ("not loaded" when launchd does not know it), with whether its
    owner has a GUI session (the gui/<uid> domain the agent loads into) and its plist exists."""

    manager: str  # "systemd" | "launchd"
    state: str
    session: bool = True
    installed: bool = True

    @property
    def running(self) -> bool:
        return self.state == ("active" if self.manager == "systemd" else "running")

    @property
    def log(self) -> str:
        return ("journalctl -u ollama" if self.manager == "systemd"
                else f"~/Library/Logs/localcode-ollama.log; launchd: {LAUNCHD_LOG}")


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket: its local address as the host names it (IPv6 in brackets, `*`
    for every address) and port."""

    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.address.strip("[]").partition("%")[0]).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True)
class Smoke:
    """The streamed /v1/messages answer: the kinds of content block it started, and its start
    (for the report when no tool call came back)."""

    blocks: tuple[str, ...]
    excerpt: str


@dataclass(frozen=True)
class Gathered:
    """What DoctorFact read on one host, parsed."""

    ollama: OllamaState | Unreadable
    service: Service
    listeners: tuple[Listener, ...]
    environment: dict[str, str] | Unreadable  # the service's environment
    smoke: Smoke
    claude: str | None
    files: dict[str, FileState]
    cloud_env: dict[str, tuple[str, ...]]  # per developer, with --deep
    deep: dict[str, dict | None]           # per developer, with --deep


SS_LINE = re.compile(r"LISTEN\s+\d+\s+\d+\s+(\S+):(\d{1,5})\s+\S+\s*")
NETSTAT_LINE = re.compile(r"tcp(?:4|6|46)\s+\d+\s+\d+\s+(\S+)\.(\d{1,5})\s+\S+\s+LISTEN(?:\s.*)?")


def parse_ss(lines: list[str]) -> tuple[Listener, ...]:
    """`ss -Hltn` (Linux): `LISTEN 0 4096 127.0.0.1:11434 0.0.0.0:*`, IPv6 as `[::1]:11434`."""
    return tuple(Listener(m.group(1), int(m.group(2))) for m in map(SS_LINE.fullmatch, lines) if m)


def parse_netstat(lines: list[str]) -> tuple[Listener, ...]:
    """`netstat -anp tcp` (macOS): `tcp4 0 0 127.0.0.1.11434 *.* LISTEN`, the port after the
    last dot; IPv6 addresses get brackets, as ss writes them."""
    found = []
    for match in map(NETSTAT_LINE.fullmatch, lines):
        if match:
            address = match.group(1)
            found.append(Listener(f"[{address}]" if ":" in address else address, int(match.group(2))))
    return tuple(found)


def parse_launchd_state(lines: list[str]) -> str:
    """The service's state in `launchctl print gui/UID/LABEL` (its first `state = ` line; the
    nested blocks come after it); "not loaded" when launchd does not know the service."""
    return next((m.group(1) for m in (re.fullmatch(r"\s*state = (.+?)\s*", line) for line in lines) if m),
                "not loaded")


def parse_systemd_environment(lines: list[str]) -> dict[str, str] | Unreadable:
    """`systemctl show -p Environment --value`: shell-quoted KEY=VALUE words on one line."""
    try:
        words = shlex.split(" ".join(lines))
    except ValueError as exc:
        return Unreadable(f"systemctl show -p Environment: {exc}")
    if not all("=" in word for word in words):
        return Unreadable("systemctl show -p Environment: a word without '='")
    return dict(word.split("=", 1) for word in words)


def parse_plist_environment(path: str, state: FileState) -> dict[str, str] | Unreadable:
    """The LaunchAgent's EnvironmentVariables (no path: the host has no developer to own it)."""
    if not path:
        return Unreadable("no LaunchAgent: no developer user owns one on this host")
    if state.text is None:
        return Unreadable(f"{path} is {state.problem or 'missing'}")
    try:
        agent = plistlib.loads(state.text.encode("utf-8", "surrogateescape"))
    except Exception as exc:  # noqa: BLE001 - malformed input raises many kinds (expat, ValueError, AttributeError)
        return Unreadable(f"{path} is not a valid plist ({type(exc).__name__})")  # never its content
    env = agent.get("EnvironmentVariables") if isinstance(agent, dict) else None
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        return Unreadable(f"{path} has no EnvironmentVariables of strings")
    return dict(env)


def parse_smoke(lines: list[str]) -> Smoke:
    """Server-sent events: `data: {...}` lines, of which `content_block_start` names the block."""
    blocks = []
    for line in lines:
        if not line.startswith("data:"):
            continue
        try:
            event = json.loads(line.removeprefix("data:"))
        except ValueError:
            continue
        if not isinstance(event, dict) or event.get("type") != "content_block_start":
            continue
        block = event.get("content_block")
        if isinstance(block, dict):
            blocks.append(str(block.get("type")))
    return Smoke(tuple(blocks), "\n".join(lines)[:120].strip())


def _json(lines: list[str]) -> dict | None:
    try:
        value = json.loads("\n".join(lines).strip() or "null")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class DoctorFact(FactBase):
    """Everything the checks read, in one round trip: the Ollama fact's requests, the service
    and its environment, the listeners and the smoke test (each the host's own tool, chosen by
    its OS), Claude Code's version, the developers' files read as each developer, and with
    `deep_alias` each developer's login environment and a `claude -p` answer."""

    def default(self) -> Gathered:
        return parse_doctor([])

    def command(self, api: str, derived: str, os_name: str,
                accounts: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...], users: tuple[str, ...], agent: str | None = None, owner_uid: int | None = None,
                deep_alias: str | None = None) -> str:
        url = f"http://{api}"
        parts = [OllamaFact().command(api=api, show=(derived,))]
        mac = os_name == "Darwin"

        def tool(name: str) -> str:
            return MAC_TOOLS[name] if mac else name

        if mac:
            # The owner's GUI domain (it exists while they are logged in at the Mac's screen) and
            # our agent in it.
            domain, service = f"gui/{owner_uid}", f"gui/{owner_uid}/{LABEL}"
            parts += [f"echo {MARK}session; " + (f"{LAUNCHCTL} print {sh_quote(domain)} >/dev/null 2>&1 && echo yes"
                                                 if owner_uid is not None else "true"),
                      f"echo {MARK}service:launchd; " + (f"{LAUNCHCTL} print {sh_quote(service)} 2>/dev/null"
                                                         if owner_uid is not None else "true"),
                      f"echo {MARK}listen:netstat; {tool('netstat')} -anp tcp 2>/dev/null",
                      f"echo {MARK}env:launchd; printf '%s\\n' {sh_quote(agent or '')}"]
        else:
            parts += [f"echo {MARK}service:systemd; systemctl is-active ollama 2>/dev/null",
                      f"echo {MARK}listen:ss; ss -Hltn 2>/dev/null",
                      f"echo {MARK}env:systemd; systemctl show ollama -p Environment --value 2>/dev/null"]
        parts += [
            f"echo {MARK}smoke; {tool('curl')} -sN --max-time 120 -X POST -H 'content-type: application/json' "
            f"-H 'anthropic-version: 2023-06-01' -d {sh_quote(smoke_body(derived))} {sh_quote(url + '/v1/messages')}",
            f"echo; echo {MARK}claude; " + (f'{mac_claude()}; [ -n "$c" ] && "$c" --version 2>/dev/null' if mac
                                             else "claude --version 2>/dev/null"),
            FilesFact().command(accounts=accounts),  # as each developer, like the deploy
        ]
        for user in users if deep_alias else ():
            cmd = sh_quote(f"{deep_alias} -p 'Say hi' --output-format json")
            # Names only (values may be secrets) of the cloud settings the developer's login
            # environment carries, as their own shell loads it.
            names = "env | cut -d= -f1 | grep -E " + sh_quote(CLOUD_NAMES)
            parts.append(f"echo {MARK}cloud-env:{sh_quote(user)}; {tool('su')} - {sh_quote(user)} -c "
                         f"{sh_quote('exec $SHELL -lic ' + sh_quote(names))} 2>/dev/null")
            parts.append(f"echo {MARK}deep:{sh_quote(user)}; {tool('su')} - {sh_quote(user)} -c "
                         f"{sh_quote('exec $SHELL -lic ' + cmd)} 2>/dev/null | {tool('tail')} -n 1")
        return "; ".join(parts + ["true"])

    def process(self, output: list[str]) -> Gathered:
        return parse_doctor(output)


def parse_doctor(output: list[str]) -> Gathered:
    s = sections(output)
    files = parse_files(output)
    try:
        ollama: OllamaState | Unreadable = parse_ollama(output)
    except FactProcessError as exc:
        ollama = Unreadable(str(exc))
    if "service:launchd" in s:
        agent = next((line for line in s.get("env:launchd", []) if line), "")
        service = Service("launchd", parse_launchd_state(s["service:launchd"]), session=bool(s.get("session")),
                          installed=files.get(agent, MISSING).exists)
        listeners = parse_netstat(s.get("listen:netstat", []))
        environment = parse_plist_environment(agent, files.get(agent, MISSING))
    else:
        service = Service("systemd", next((line.strip() for line in s.get("service:systemd", []) if line.strip()),
                                          "unknown"))
        listeners = parse_ss(s.get("listen:ss", []))
        environment = parse_systemd_environment(s.get("env:systemd", []))
    return Gathered(
        ollama=ollama, service=service, listeners=listeners, environment=environment,
        smoke=parse_smoke(s.get("smoke", [])),
        claude=next((line.split()[0] for line in s.get("claude", []) if line.strip()), None),
        files=files,
        cloud_env={name.removeprefix("cloud-env:"): tuple(n.strip() for n in lines if n.strip())
                   for name, lines in s.items() if name.startswith("cloud-env:")},
        deep={name.removeprefix("deep:"): _json(lines) for name, lines in s.items() if name.startswith("deep:")},
    )


# The checks: pure, one each, from parsed facts and what the deploy would write.

def service_check(service: Service) -> Check:
    """The service runs. On a Mac whose LaunchAgent owner is not logged in at the GUI, an
    installed agent is a warning, not a failure: nothing is broken (launchd loads it at their
    next login), but nothing that needs the server could be checked either."""
    if service.manager == "systemd":
        detail, remedy = f"ollama service {service.state}", "systemctl enable --now ollama; see journalctl -u ollama"
    elif not service.session and service.installed:
        return Check("service", WARN, f"LaunchAgent {LABEL} installed; it loads at its owner's next GUI login "
                                      "(nobody is logged in at the Mac's screen as that user now)",
                     "log in as that user at the Mac (or through Fast User Switching), then run the doctor again")
    else:
        detail, remedy = (f"LaunchAgent {LABEL} {service.state if service.installed else 'not installed'}",
                          f"redeploy (it bootstraps the LaunchAgent); see {service.log}")
    return Check("service", PASS if service.running else FAIL, detail, "" if service.running else remedy)


def server_check(state: OllamaState | Unreadable, floor: str, service: Service, api: str) -> Check:
    """The running server's version against the effective floor and known bugs; when it does not
    answer, a failure only if the service claims to run (otherwise the service check says it)."""
    if isinstance(state, Unreadable):
        return Check("ollama", FAIL, f"the server at {api} answers unreadably: {state.message}",
                     f"read {service.log}")
    version = state.server_version
    if version is None:
        if not service.running:
            return Check("ollama", SKIP, f"no Ollama server answers at {api}")
        return Check("ollama", FAIL, f"no Ollama server answers at {api}",
                     f"the service runs but does not answer: read {service.log}")
    if Version(version) < Version(floor):
        return Check("ollama", FAIL, f"server {version} is below the effective floor {floor}",
                     "set ollama_upgrade = True (or raise ollama_version) and redeploy")
    issues = known_issue_warnings(version)
    return Check("ollama", WARN if issues else PASS, f"server {version} (floor {floor})" +
                 (f"; {'; '.join(issues)}" if issues else ""), "upgrade: ollama_upgrade = True" if issues else "")


def loopback_check(listeners: tuple[Listener, ...], port: int, allow_remote: bool) -> Check:
    """Only loopback addresses listen on the Ollama port (its API has no authentication)."""
    ours = [listener for listener in listeners if listener.port == port]
    where = ", ".join(str(listener) for listener in ours)
    if not ours:
        return Check("loopback", FAIL, "nothing listens on the Ollama port", "start the service")
    if all(listener.loopback for listener in ours):
        return Check("loopback", PASS, f"listening on {where}")
    if allow_remote:
        return Check("loopback", WARN, f"listening on {where} (allowed by ollama_allow_remote)")
    return Check("loopback", FAIL, f"listening on {where}: beyond loopback, the API has no auth",
                 "set OLLAMA_HOST back to 127.0.0.1:11434 (ollama_host) and redeploy")


def models_check(installed: set[str], decision: Decision) -> Check:
    if decision.model is None:
        return Check("models", WARN, f"no model planned: {decision.reason}")
    missing = [m for m in (decision.model, decision.name) if m not in installed]
    if missing:
        return Check("models", FAIL, f"missing {missing}", "redeploy to pull the base model and create the derived one")
    return Check("models", PASS, f"{decision.model} and {decision.name}")


def environment_differences(running: dict[str, str], planned: dict[str, str]) -> list[str]:
    """Key by key, how the service's environment differs from the deploy's: every planned
    variable, and any other OLLAMA_ one (the server reads those too)."""
    keys = sorted(set(planned) | {k for k in running if k.startswith("OLLAMA_")})
    differences = []
    for key in keys:
        have, want = running.get(key), planned.get(key)
        if have == want:
            continue
        if want is None:
            differences.append(f"{key}={have} is not planned")
        elif have is None:
            differences.append(f"{key} is unset (planned {want})")
        else:
            differences.append(f"{key} is {have} (planned {want})")
    return differences


def context_check(shown: ShownModel | None, environment: dict[str, str] | Unreadable, planned: dict[str, str],
                  decision: Decision) -> Check:
    """The derived model's num_ctx and the server environment (the KV cache type among it) as
    the deploy writes them; the bind is left to the loopback check."""
    num_ctx = shown.parameters.get("num_ctx") if shown else None
    if isinstance(environment, Unreadable):
        kv, differences = "unknown", [f"cannot be read: {environment.message}"]
    else:
        kv = environment.get("OLLAMA_KV_CACHE_TYPE", "f16")
        differences = environment_differences({k: v for k, v in environment.items() if k != BIND},
                                              {k: v for k, v in planned.items() if k != BIND})
    ok = num_ctx == decision.num_ctx and not differences
    detail = f"num_ctx {num_ctx} (planned {decision.num_ctx}), KV {kv} (planned {decision.kv_cache_type})"
    detail += f"; server environment: {'; '.join(differences)}" if differences else ", server environment as planned"
    return Check("context", PASS if ok else FAIL, detail,
                 "" if ok else "redeploy: the derived model and server environment are rewritten")


def tool_call_check(smoke: Smoke) -> Check:
    if "tool_use" in smoke.blocks:
        return Check("tool call", PASS, "streaming /v1/messages returned a tool_use block")
    return Check("tool call", FAIL, f"no tool_use block in the streamed answer ({smoke.excerpt or 'no answer'})",
                 "this model does not call tools reliably here: prefer another (model_preferences)")


def claude_check(version: str | None, pinned: str) -> Check:
    ok = version == pinned
    return Check("claude", PASS if ok else FAIL, f"claude {version or 'not found'} (pinned {pinned})",
                 "" if ok else "redeploy to install the pinned Claude Code")


def alias_check(user: str, alias: str, rc_files: dict[str, FileState]) -> Check:
    """Every rc file the deploy writes for the login shell defines the alias in our block."""
    missing = [path for path, state in rc_files.items()
               if not (alias in (state.text or "") and "localcode" in (state.text or ""))]
    if missing:
        return Check(f"alias {user}", FAIL, f"{alias} is not defined in {', '.join(missing)}",
                     "redeploy to write the alias block")
    return Check(f"alias {user}", PASS, f"{alias} defined in {', '.join(rc_files)}")


def settings_check(user: str, files: list[tuple[UserFile, FileState]], model: str | None) -> Check:
    """The JSON files the deploy writes for the developer are valid, and each settings.json
    names the derived model (when one is planned)."""
    problems = []
    for wanted, state in files:
        if state.text is None:
            problems.append(f"{wanted.path} is {state.problem}" if state.problem else f"{wanted.path} missing")
            continue
        try:
            doc = json.loads(state.text)
        except ValueError as exc:
            problems.append(f"{wanted.path} is not valid JSON ({exc})")
            continue
        if wanted.kind == "settings" and model and (not isinstance(doc, dict) or doc.get("model") != model):
            found = doc.get("model") if isinstance(doc, dict) else None
            problems.append(f"{wanted.path}: model is {found!r}, not {model}")
    if problems:
        return Check(f"settings {user}", FAIL, "; ".join(problems),
                     "fix or remove the broken file, then redeploy (invalid JSON is never rewritten)")
    return Check(f"settings {user}", PASS, f"{len(files)} settings files valid")


def deep_check(user: str, answer: dict | None, model: str, alias: str) -> Check:
    """`claude-local -p` as the developer was answered by the derived model."""
    ok = bool(answer) and answer.get("is_error") is False and model in (answer.get("modelUsage") or {})
    return Check(f"claude -p {user}", PASS if ok else FAIL, f"answered by {model}" if ok else f"no answer from {model}",
                 "" if ok else f"run {alias} -p hi as {user} and read its error")


def cloud_environment_check(user: str, names: list[str] | tuple[str, ...], overridden: set[str]) -> Check:
    """Cloud settings in the developer's login environment: those our settings override are
    only listed; one they would not override wins over configured projects (reported, not fixed)."""
    found = sorted({n.strip() for n in names if re.fullmatch(CLOUD_NAMES, n.strip())})
    winning = [n for n in found if n not in overridden and not n.startswith(("AWS_", "CLOUD_ML_", "GOOGLE_"))]
    if winning:
        return Check(f"cloud env {user}", WARN, f"{', '.join(winning)} in {user}'s login environment would win over "
                                                 "the local alias and configured projects",
                     f"ask {user} to unset them for local sessions")
    detail = f"overridden for local sessions: {', '.join(found)}" if found else "no cloud settings"
    return Check(f"cloud env {user}", PASS, detail)


def gpu_memory_check(limit: GpuLimit) -> Check:
    """Apple Silicon: the GPU memory limit in force (the sizing's budget), and whether it is the
    one the deploy sets and keeps across reboots. A limit that differs after a reboot means our
    LaunchDaemon did not apply it."""
    now = gib(limit.working_set(limit.running_mb))
    if not limit.running_mb:
        detail = f"GPU memory limit: system default, {now}"
    elif limit.daemon:
        raised = limit.working_set(limit.running_mb) >= limit.working_set(0)
        detail = f"GPU memory limit {now} ({'raised' if raised else 'lowered'} by localcode)"
    else:
        detail = f"GPU memory limit {now} (set outside localcode)"
    if limit.planned_mb is None:
        if limit.running_mb:
            return Check("gpu memory", WARN, f"{detail}: lost at the next reboot, and the sizing counts on it",
                         "set apple_gpu_memory for this host: the deploy then keeps a limit across reboots")
        return Check("gpu memory", PASS, detail)
    planned = gib(limit.working_set(limit.planned_mb))
    if limit.running_mb != limit.planned_mb:
        return Check("gpu memory", FAIL, f"{detail}; the deploy sets {planned} and the sizing counts on it",
                     "redeploy; if a reboot undoes it again, see docs/notes/macos.md (the LaunchDaemon)")
    if limit.daemon != bool(limit.planned_mb):
        return Check("gpu memory", WARN, f"{detail}; " + ("not kept across reboots (no LaunchDaemon)"
                                                          if limit.planned_mb else "our LaunchDaemon is still there"),
                     "redeploy")
    return Check("gpu memory", PASS, detail)


def server_checks(config: HostConfig, decision: Decision, gathered: Gathered,
                  gpu_environment: dict[str, str] | None = None) -> list[Check]:
    """The server's checks; those that need it to answer are left out when it does not (one
    cause, one failure), those that need the derived model skipped when it is missing."""
    state = gathered.ollama
    floor = effective_floor(config.ollama_min_version, decision.min_ollama)
    checks = [service_check(gathered.service), server_check(state, floor, gathered.service, config.ollama_host)]
    if isinstance(state, Unreadable) or state.server_version is None:
        return checks
    checks.append(loopback_check(gathered.listeners, int(config.ollama_host.rpartition(":")[2]),
                                 config.ollama_allow_remote))
    installed = {m.name for m in state.models}
    checks.append(models_check(installed, decision))
    if decision.model is None:
        return checks
    if decision.name not in installed:
        return checks + [Check("context", SKIP, f"{decision.name} is missing"),
                         Check("tool call", SKIP, f"{decision.name} is missing")]
    return checks + [context_check(state.shown.get(decision.name), gathered.environment,
                                   server_environment(config, decision, gpu_environment), decision),
                     tool_call_check(gathered.smoke)]


def evaluate(host: str, config: HostConfig, plan: HostPlan, gathered: Gathered, deep: bool) -> HostReport:
    """Pure: the checks for one host from what DoctorFact gathered; each developer's files are
    those the deploy writes for them (`account_files`)."""
    decision = plan.decision
    if decision is None:
        return HostReport(host, plan=plan.as_dict(), error=plan.error or "no sizing")
    report = HostReport(host, plan=plan.as_dict())
    report.checks += server_checks(config, decision, gathered, plan.gpu_environment)
    if plan.gpu_limit is not None:
        report.checks.append(gpu_memory_check(plan.gpu_limit))
    report.checks.append(claude_check(gathered.claude, config.claude_version))
    accounts = plan.facts.accounts if plan.facts else {}
    users = [user for user in config.developer_users if accounts.get(user) is not None]
    for user in users:
        files = [(f, gathered.files.get(f.path, MISSING))
                 for f in account_files(config, accounts[user], gathered.files)]
        report.checks.append(alias_check(user, config.claude_alias, {f.path: s for f, s in files if f.kind == "alias"}))
        report.checks.append(settings_check(user, [(f, s) for f, s in files if f.kind in ("settings", "state")],
                                            decision.name if decision.model else None))
    if deep and decision.model:
        overridden = set(local_environment(config, decision))
        for user in users:
            report.checks.append(deep_check(user, gathered.deep.get(user), decision.name, config.claude_alias))
            report.checks.append(cloud_environment_check(user, gathered.cloud_env.get(user, ()), overridden))
    return report


def memory(plan: HostPlan, config: HostConfig) -> dict | None:
    """Bytes for the memory bar: weights, KV cache at num_ctx, buffers, free, against the budget."""
    d = plan.decision
    if d is None or d.model is None:
        return None
    entry = config.catalog().by_tag()[d.model]
    policy = config.policy()
    buffers = policy.compute_buffer_bytes
    kv = d.need_bytes - entry.weights_bytes - buffers
    return {"budget": d.budget_bytes, "weights": entry.weights_bytes, "kv_cache": kv, "buffers": buffers,
            "free": d.budget_bytes - d.need_bytes}


def doctor_arguments(config: HostConfig, plan: HostPlan, deep: bool) -> dict:
    """DoctorFact's arguments for one host: the files wiring may read (the same round trip
    finds which it wrote), read as each developer, and on macOS the LaunchAgent of the first
    developer (as the deploy installs it)."""
    facts = plan.facts
    accounts = facts.accounts if facts else {}
    paths = candidate_paths(config, accounts)
    os_name = facts.os if facts else "Linux"
    owner = agent_owner(config)
    owner_account = accounts.get(owner) if owner else None
    agent = launch_agent(owner) if os_name == "Darwin" and owner and owner_account else None
    if agent:
        paths[owner] = [*paths[owner], agent]
    readers = tuple((reader(os_name, facts.login, user), tuple(ps)) for user, ps in paths.items()) if facts else ()
    derived = plan.decision.name if plan.decision and plan.decision.name else "none"
    return {"api": config.ollama_host, "derived": derived, "os_name": os_name, "accounts": readers,
            "users": tuple(paths), "agent": agent, "owner_uid": owner_account.uid if agent else None,
            "deep_alias": config.claude_alias if deep else None}


def run(inventory_path: str, deep: bool = False) -> list[HostReport]:
    from .gather import connected, per_host, plans

    reports = []
    with connected(inventory_path) as (state, inventory, configs):
        host_plans = plans(state, inventory, configs)  # the hardware fact also reads the accounts
        gathered = per_host(state, inventory, DoctorFact,
                            lambda host: doctor_arguments(configs[host.name], host_plans[host.name], deep))
        for host in inventory:
            plan = host_plans[host.name]
            if host not in gathered or plan.decision is None:
                reports.append(HostReport(host.name, error=plan.error or "unreachable (SSH connection failed)"))
                continue
            report = evaluate(host.name, configs[host.name], plan, gathered[host], deep)
            report.memory = memory(plan, configs[host.name])
            reports.append(report)
    return reports


MARKS = {PASS: "✓", WARN: "!", FAIL: "✗", SKIP: "·"}
SEVERITY = {PASS: 0, SKIP: 0, WARN: 1, FAIL: 2}


def column(check: Check) -> str:
    """The table column of a check: per-user checks share one ("alias", "settings", "deep")."""
    if check.name.startswith("claude -p"):
        return "deep"
    return "cloud env" if check.name.startswith("cloud env") else check.name.split()[0]


def table(reports: list[HostReport]) -> str:
    """One row per host, a mark per check, then each failure's reason and remedy."""
    names = list(dict.fromkeys(column(c) for r in reports for c in r.checks))
    header = ["HOST", "RESULT", *names]
    rows = []
    for r in reports:
        worst: dict[str, str] = {}
        for c in r.checks:
            key = column(c)
            if SEVERITY[c.status] > SEVERITY[worst.get(key, PASS)]:
                worst[key] = c.status
            worst.setdefault(key, c.status)
        rows.append([r.host, "ok" if r.ok else "FAIL", *(MARKS[worst[n]] if n in worst else "-" for n in names)])
    lines = [text_table(header, rows)]
    details = []
    for r in reports:
        if r.error:
            details.append(f"{r.host}: ✗ {r.error}")
        for c in r.checks:
            if c.status in (WARN, FAIL):
                details.append(f"{r.host}: {MARKS[c.status]} {c.name}: {c.detail}" + (f"\n    fix: {c.remedy}" if c.remedy else ""))
    return "\n".join(lines + ([""] + details if details else []))


def html(reports: list[HostReport], generated: str = "", last_run: list[dict] | None = None) -> str:
    """A self-contained page (inline CSS, no scripts): per host its checks, a memory bar and what
    the last deploy did to it (localcode-last-run.json beside the inventory)."""
    return render("report.html.j2",
        reports=[r.as_dict() | {"ok": r.ok} for r in reports], ok_count=sum(r.ok for r in reports),
        last_run={h.get("host"): h for h in last_run or () if isinstance(h, dict)},
        generated=generated, marks=MARKS, gib=lambda n: f"{n / 2**30:.1f} GiB",
        pct=lambda part, whole: f"{max(0.0, 100 * part / whole):.2f}" if whole else "0").decode()
