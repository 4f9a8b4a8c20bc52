"""`localcode doctor INVENTORY`: prove every host works. Per host, in two round trips (the
hardware fact for the sizing, then one command gathering the rest), then pure checks: the
running Ollama against the effective floor (and known bugs), the service, a loopback-only
listener, base and derived models with the planned num_ctx and KV type, a streaming
/v1/messages tool-call smoke test, Claude Code's version, each developer's alias and settings
files. `--deep` also runs `claude -p` as each developer user."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from packaging.version import Version
from pyinfra.api import FactBase

from .facts import MARK, sections, parse_parameters
from .plan import HostPlan
from .settings import HostConfig
from .rendering import render
from .report import text_table
from .shell import sh_quote
from .userfiles import MISSING, FileState, FilesFact, parse_files, reader
from .wiring import local_environment

# Variables of a cloud setup (provider, model, credentials, endpoint) we look for in a
# developer's login environment.
CLOUD_NAMES = r"(ANTHROPIC_[A-Z0-9_]*|CLAUDE_CODE_(USE_[A-Z]+|OAUTH_TOKEN|SKIP_[A-Z_]*|SUBAGENT_MODEL)|AWS_[A-Z_]+|CLOUD_ML_REGION|GOOGLE_[A-Z_]+)"
from .versions import effective_floor, known_issue_warnings

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
SMOKE_TOOL = {"name": "get_weather", "description": "Get the current weather for a city.",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


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


class DoctorFact(FactBase):
    """Everything the checks read, in one round trip."""

    def default(self) -> dict:
        return {}

    def command(self, api: str, derived: str, accounts: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...],
                users: tuple[str, ...], deep_alias: str | None = None) -> str:
        url = f"http://{api}"
        port = api.rsplit(":", 1)[1]
        show = sh_quote(json.dumps({"model": derived}))
        parts = [
            f"echo {MARK}version; curl -s --max-time 5 {sh_quote(url + '/api/version')}; echo",
            f"echo {MARK}service; if command -v systemctl >/dev/null; then systemctl is-active ollama; "
            "else launchctl list 2>/dev/null | grep -q com.localcode.ollama && echo active || echo inactive; fi",
            f"echo {MARK}listen; (ss -Hltn 2>/dev/null | awk '{{print $4}}' || netstat -anp tcp | awk '/LISTEN/{{print $4}}') "
            f"| grep -E '[:.]{port}$'",
            f"echo {MARK}tags; curl -s --max-time 5 {sh_quote(url + '/api/tags')}; echo",
            f"echo {MARK}show; curl -s --max-time 5 -X POST -d {show} {sh_quote(url + '/api/show')}; echo",
            f"echo {MARK}env; systemctl show ollama -p Environment --value 2>/dev/null; "
            "cat /Users/*/Library/LaunchAgents/com.localcode.ollama.plist 2>/dev/null",
            f"echo {MARK}smoke; curl -sN --max-time 120 -X POST -H 'content-type: application/json' "
            f"-H 'anthropic-version: 2023-06-01' -d {sh_quote(smoke_body(derived))} {sh_quote(url + '/v1/messages')}",
            f"echo; echo {MARK}claude; claude --version 2>/dev/null",
        ]
        parts.append(FilesFact().command(accounts=accounts))  # as each developer, like the deploy
        for user in users if deep_alias else ():
            cmd = sh_quote(f"{deep_alias} -p 'Say hi' --output-format json")
            # Names only (values may be secrets) of the cloud settings the developer's login
            # environment carries, as their own shell loads it.
            names = "env | cut -d= -f1 | grep -E " + sh_quote(CLOUD_NAMES)
            parts.append(f"echo {MARK}cloud-env:{sh_quote(user)}; su - {sh_quote(user)} -c "
                         f"{sh_quote('exec $SHELL -lic ' + sh_quote(names))} 2>/dev/null")
            parts.append(f"echo {MARK}deep:{sh_quote(user)}; su - {sh_quote(user)} -c {sh_quote('exec $SHELL -lic ' + cmd)} "
                         "2>/dev/null | tail -n 1")
        return "; ".join(parts + ["true"])

    def process(self, output: list[str]) -> dict:
        return {**sections(output), "files": parse_files(output)}


def _json(lines: list[str]) -> dict | None:
    try:
        value = json.loads("\n".join(lines).strip() or "null")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _file(sections: dict, path: str) -> FileState:
    return sections.get("files", {}).get(path, MISSING)


def evaluate(host: str, config: HostConfig, plan: HostPlan, data: dict, checked_files: dict[str, list[str]],
             alias_files: dict[str, list[str]], deep: bool) -> HostReport:
    """Pure: the checks for one host from what DoctorFact gathered."""
    report = HostReport(host, plan=plan.as_dict())
    d = plan.decision
    add = report.checks.append

    def server_checks() -> None:
        version = (_json(data.get("version", [])) or {}).get("version")
        floor = effective_floor(config.ollama_min_version, d.min_ollama if d else None)
        active = (data.get("service") or [""])[0].strip()
        add(Check("service", PASS if active == "active" else FAIL, f"ollama service {active or 'unknown'}",
                  "" if active == "active" else "systemctl enable --now ollama; see journalctl -u ollama"))
        if version is None:
            # Everything below asks the server: one cause, one failure.
            add(Check("ollama", SKIP if active != "active" else FAIL, f"no Ollama server answers at {config.ollama_host}",
                      "" if active != "active" else "the service runs but does not answer: read journalctl -u ollama"))
            return
        if Version(version) < Version(floor):
            add(Check("ollama", FAIL, f"server {version} is below the effective floor {floor}",
                      "set ollama_upgrade = True (or raise ollama_version) and redeploy"))
        else:
            issues = known_issue_warnings(version)
            add(Check("ollama", WARN if issues else PASS, f"server {version} (floor {floor})" +
                      (f"; {'; '.join(issues)}" if issues else ""), "upgrade: ollama_upgrade = True" if issues else ""))

        listeners = [line.strip() for line in data.get("listen", []) if line.strip()]
        loopback = all(re.match(r"^(127\.|\[::1\]|::1|localhost)", a) for a in listeners)
        if not listeners:
            add(Check("loopback", FAIL, "nothing listens on the Ollama port", "start the service"))
        elif loopback or config.ollama_allow_remote:
            add(Check("loopback", PASS if loopback else WARN, f"listening on {', '.join(listeners)}"
                      + ("" if loopback else " (allowed by ollama_allow_remote)")))
        else:
            add(Check("loopback", FAIL, f"listening on {', '.join(listeners)}: beyond loopback, the API has no auth",
                      "set OLLAMA_HOST back to 127.0.0.1:11434 (ollama_host) and redeploy"))

        if d is None or d.model is None:
            add(Check("models", WARN, f"no model planned: {d.reason if d else plan.error}"))
            return
        tags = {m.get("name"): m for m in (_json(data.get("tags", [])) or {}).get("models", [])}
        missing = [m for m in (d.model, d.name) if m not in tags]
        add(Check("models", FAIL if missing else PASS, f"missing {missing}" if missing else f"{d.model} and {d.name}",
                  "redeploy to pull the base model and create the derived one" if missing else ""))
        if d.name in missing:
            add(Check("context", SKIP, f"{d.name} is missing"))
            add(Check("tool call", SKIP, f"{d.name} is missing"))
            return

        shown = _json(data.get("show", [])) or {}
        params = parse_parameters(shown.get("parameters", "")) if shown else {}
        env_text = " ".join(data.get("env", []))
        kv = re.search(r"OLLAMA_KV_CACHE_TYPE(?:=|</key>\s*<string>)(\w+)", env_text)
        kv_type = kv.group(1) if kv else "f16"
        ctx_ok = params.get("num_ctx") == d.num_ctx
        add(Check("context", PASS if ctx_ok and kv_type == d.kv_cache_type else FAIL,
                  f"num_ctx {params.get('num_ctx')} (planned {d.num_ctx}), KV {kv_type} (planned {d.kv_cache_type})",
                  "" if ctx_ok and kv_type == d.kv_cache_type else "redeploy: the derived model and server environment are rewritten"))

        smoke = "\n".join(data.get("smoke", []))
        tool_use = re.search(r'"content_block"\s*:\s*\{[^}]*"type"\s*:\s*"tool_use"', smoke)
        add(Check("tool call", PASS if tool_use else FAIL,
                  "streaming /v1/messages returned a tool_use block" if tool_use else
                  f"no tool_use block in the streamed answer ({smoke[:120].strip() or 'no answer'})",
                  "" if tool_use else "this model does not call tools reliably here: prefer another (model_preferences)"))

    server_checks()
    claude = next((line.split()[0] for line in data.get("claude", []) if line.strip()), None)
    add(Check("claude", PASS if claude == config.claude_version else FAIL,
              f"claude {claude or 'not found'} (pinned {config.claude_version})",
              "" if claude == config.claude_version else "redeploy to install the pinned Claude Code"))

    for user, paths in alias_files.items():
        texts = {p: _file(data, p).text or "" for p in paths}
        found = [p for p in paths if config.claude_alias in texts[p] and "localcode" in texts[p]]
        add(Check(f"alias {user}", PASS if found else FAIL,
                  f"{config.claude_alias} defined in {', '.join(found)}" if found else
                  f"{config.claude_alias} is in none of {', '.join(paths)}",
                  "" if found else "redeploy to write the alias block"))
    for user, paths in checked_files.items():
        problems = []
        for path in paths:
            state = _file(data, path)
            text = state.text
            if text is None:
                problems.append(f"{path} is {state.problem}" if state.problem else f"{path} missing")
                continue
            try:
                doc = json.loads(text)
            except ValueError as exc:
                problems.append(f"{path} is not valid JSON ({exc})")
                continue
            if path.endswith("settings.json") and d and d.model and doc.get("model") != d.name:
                problems.append(f"{path}: model is {doc.get('model')!r}, not {d.name}")
        add(Check(f"settings {user}", FAIL if problems else PASS,
                  "; ".join(problems) if problems else f"{len(paths)} settings files valid",
                  "fix or remove the broken file, then redeploy (invalid JSON is never rewritten)" if problems else ""))
    if deep and d and d.model:
        for user in alias_files:
            answer = _json(data.get(f"deep:{user}", []))
            ok = bool(answer) and answer.get("is_error") is False and d.name in answer.get("modelUsage", {})
            add(Check(f"claude -p {user}", PASS if ok else FAIL,
                      f"answered by {d.name}" if ok else f"no answer from {d.name}",
                      "" if ok else f"run {config.claude_alias} -p hi as {user} and read its error"))
            add(cloud_environment_check(user, data.get(f"cloud-env:{user}", []), set(local_environment(config, d))))
    return report


def cloud_environment_check(user: str, names: list[str], overridden: set[str]) -> Check:
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


def files_to_check(config: HostConfig, accounts: dict) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(settings files per user, rc files per user) that wiring writes."""
    settings_files: dict[str, list[str]] = {}
    rc_files: dict[str, list[str]] = {}
    for name in config.developer_users:
        account = accounts.get(name)
        if account is None:
            continue
        home = account.home
        rc_files[name] = [f"{home}/{p}" for p in (".bashrc", ".bash_profile", ".profile", ".zshrc",
                                                  ".config/fish/conf.d/localcode.fish")]
        paths = [f"{home}/{config.claude_local_profile}/settings.json"]
        paths += [f"{project}/.claude/settings.json" for project in config.claude_projects.get(name, ())]
        if config.network == "airgapped":
            paths.append(f"{home}/.claude/settings.json")
        if config.network == "airgapped" or config.claude_projects.get(name):
            paths.append(f"{home}/.claude.json")
        settings_files[name] = paths
    return settings_files, rc_files


def run(inventory_path: str, deep: bool = False) -> list[HostReport]:
    from .gather import connected, per_host, plans

    reports = []
    with connected(inventory_path) as (state, inventory, configs):
        host_plans = plans(state, inventory, configs)  # the hardware fact also reads the accounts
        wanted = {name: files_to_check(configs[name], plan.facts.accounts)
                  for name, plan in host_plans.items() if plan.facts is not None}

        def doctor_args(host):
            config, plan = configs[host.name], host_plans[host.name]
            settings_files, rc_files = wanted.get(host.name, ({}, {}))
            facts = plan.facts
            accounts = tuple((reader(facts.os, facts.login, user), tuple(settings_files.get(user, []) + paths))
                             for user, paths in rc_files.items()) if facts else ()
            derived = plan.decision.name if plan.decision and plan.decision.name else "none"
            return {"api": config.ollama_host, "derived": derived, "accounts": accounts,
                    "users": tuple(rc_files), "deep_alias": config.claude_alias if deep else None}

        gathered = per_host(state, inventory, DoctorFact, doctor_args)
        for host in inventory:
            plan = host_plans[host.name]
            if host not in gathered or plan.decision is None:
                reports.append(HostReport(host.name, error=plan.error or "unreachable (SSH connection failed)"))
                continue
            settings_files, rc_files = wanted[host.name]
            report = evaluate(host.name, configs[host.name], plan, gathered[host], settings_files, rc_files, deep)
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


def html(reports: list[HostReport], generated: str = "") -> str:
    """A self-contained page (inline CSS, no scripts): per host its checks and a memory bar."""
    return render("report.html.j2",
        reports=[r.as_dict() | {"ok": r.ok} for r in reports], ok_count=sum(r.ok for r in reports),
        generated=generated, marks=MARKS, gib=lambda n: f"{n / 2**30:.1f} GiB",
        pct=lambda part, whole: f"{max(0.0, 100 * part / whole):.2f}" if whole else "0").decode()
