"""Wire Claude Code to the local model for every developer user and every tier.

Per user: a managed block in the rc file of the login shell defines the alias (default
`claude-local`) that runs claude with the local environment and its own profile directory
(CLAUDE_CONFIG_DIR), so `/model` choices never leak into the cloud profile. Configured
projects get `model` and `env` merged into `.claude/settings.json`. Air-gapped hosts, which have
no cloud, also get onboarding and trust pre-seeded in `~/.claude.json` and the local model as
the user-level default, so plain `claude` works there."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import operation

from .facts import Account, AccountsFact, HostHardware
from .ops import failure
from .settings import ConfigError, HostConfig
from .shell import as_account
from .sizing import Decision
from .rendering import render
from . import summary, textedit
from .textedit import MARKDOWN, JsonEditError, apply_block
from .userfiles import MISSING, DirectoriesFact, FileState, editable, observe, write_text

# The lowest uid of an ordinary (human) account: system accounts are never developer users.
FIRST_UID = {"Linux": 1000, "Darwin": 501}

TIERS = ("ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL",
         "ANTHROPIC_DEFAULT_FABLE_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL")
# Switches that send Claude Code to a cloud provider instead of ANTHROPIC_BASE_URL: set to "0".
PROVIDER_SWITCHES = ("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY",
                     "CLAUDE_CODE_USE_ANTHROPIC_AWS", "CLAUDE_CODE_USE_ANTHROPIC_GOOGLE_CLOUD", "CLAUDE_CODE_USE_MANTLE",
                     "CLAUDE_CODE_USE_GATEWAY")
# Cloud credentials, endpoints and headers a developer's shell may export: emptied, so none of
# them reaches the local server or redirects a request.
CLOUD_SETTINGS = ("CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_CUSTOM_HEADERS", "ANTHROPIC_BEDROCK_BASE_URL",
                  "ANTHROPIC_VERTEX_BASE_URL", "ANTHROPIC_VERTEX_PROJECT_ID", "ANTHROPIC_FOUNDRY_BASE_URL",
                  "ANTHROPIC_FOUNDRY_RESOURCE", "ANTHROPIC_FOUNDRY_API_KEY", "AWS_BEARER_TOKEN_BEDROCK",
                  "CLAUDE_CODE_SKIP_BEDROCK_AUTH", "CLAUDE_CODE_SKIP_VERTEX_AUTH", "CLAUDE_CODE_SKIP_FOUNDRY_AUTH",
                  "CLAUDE_CODE_EXTRA_BODY")
# Variables no settings file can neutralise (read before settings, or making Claude Code ignore
# them: a socket, host-managed routing, credentials on file descriptors, other OAuth state
# files, ignored trust), and credentials we never hand to a local server: the alias removes
# them from the environment itself.
UNSET_IN_ALIAS = ("CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_CUSTOM_HEADERS",
                  "AWS_BEARER_TOKEN_BEDROCK", "ANTHROPIC_FOUNDRY_API_KEY", "ANTHROPIC_UNIX_SOCKET",
                  "CLAUDE_CODE_PROVIDER_MANAGED_BY_HOST", "CLAUDE_CODE_HOST_AUTH_ENV_VAR",
                  "CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR", "CLAUDE_CODE_API_KEY_FILE_DESCRIPTOR",
                  "CLAUDE_CODE_GATEWAY_TOKEN_FILE_DESCRIPTOR", "CLAUDE_CODE_WEBSOCKET_AUTH_FILE_DESCRIPTOR",
                  "CLAUDE_CODE_CUSTOM_OAUTH_URL", "USE_LOCAL_OAUTH", "USE_STAGING_OAUTH",
                  "CLAUDE_CODE_IGNORE_PERSISTED_TRUST")
# Sign-in variables Claude Code ignores (and warns about) in a project's settings: profile only.
PROFILE_ONLY = ("CLAUDE_CODE_OAUTH_TOKEN",)
THEMES = ("dark", "light", "dark-daltonized", "light-daltonized", "dark-ansi", "light-ansi")


def base_url(ollama_host: str) -> str:
    """Where clients reach the server (a wildcard bind is reached on loopback); the root, not /v1."""
    hostname, _, port = ollama_host.rpartition(":")
    if hostname in ("0.0.0.0", "[::]", "::"):
        hostname = "127.0.0.1"
    return f"http://{hostname}:{port}"


def local_environment(config: HostConfig, decision: Decision) -> dict[str, str]:
    """The variables that point every Claude Code tier at the derived model, and neutralise
    every cloud setting a developer's shell may carry (provider switches, model names,
    credentials, endpoints: see docs/claude-code-environment.md). They go into settings files'
    `env`, which wins over the shell's exports."""
    env = {
        "ANTHROPIC_BASE_URL": base_url(config.ollama_host),
        "ANTHROPIC_AUTH_TOKEN": "ollama",
        "ANTHROPIC_API_KEY": "",
        "ANTHROPIC_MODEL": decision.name,
        "ANTHROPIC_SMALL_FAST_MODEL": decision.name,
        **{tier: decision.name for tier in TIERS},
        **{switch: "0" for switch in PROVIDER_SWITCHES},
        **{name: "" for name in CLOUD_SETTINGS},
        "CLAUDE_CODE_MAX_CONTEXT_TOKENS": str(decision.num_ctx),
        "CLAUDE_CODE_ATTRIBUTION_HEADER": "0",
        "CLAUDE_CODE_TOTAL_TOKENS_REMINDER": "off",
        "DISABLE_UPDATES": "1",
    }
    if config.network == "airgapped":
        env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
        env["CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL"] = "1"
    return env


def alias_block(shell: str, alias: str, config_dir: str, model: str) -> str:
    """The block body defining the alias in the shell's own syntax (templates/claude-local.*.j2).
    The profile's settings.json is also passed with --settings, which outranks project settings:
    a repository's own (or, started in the home, the cloud profile read as one) cannot redirect it."""
    template = "claude-local.fish.j2" if shell == "fish" else "claude-local.sh.j2"
    return render(template, alias=alias, config_dir=config_dir, settings=f"{config_dir}/settings.json", model=model,
                  unset=UNSET_IN_ALIAS).decode().rstrip()


@dataclass(frozen=True)
class Edit:
    path: str
    text: str
    why: str


@dataclass(frozen=True)
class UserFile:
    """A file wiring writes for a developer, and why. `kind` says what the doctor checks in it:
    "alias" (the rc block), "settings" (settings.json with our model), "state" (.claude.json),
    "text" (a managed block in a project file)."""

    path: str
    why: str
    kind: str


def login_shell(account: Account) -> str:
    return account.shell.rsplit("/", 1)[-1]


def rc_candidates(account: Account) -> list[str]:
    """Every rc file `rc_paths` may choose for this login shell; for bash, ~/.bashrc then the
    login files in the order a bash login shell looks for them."""
    home = account.home
    return {"zsh": [f"{home}/.zshrc"], "fish": [f"{home}/.config/fish/conf.d/localcode.fish"],
            "bash": [f"{home}/.bashrc", f"{home}/.bash_profile", f"{home}/.bash_login", f"{home}/.profile"],
            }.get(login_shell(account), [f"{home}/.profile"])


def rc_paths(account: Account, existing: dict[str, FileState]) -> list[str]:
    """Where the alias goes for this login shell; a bash login shell reads only the first of
    its login files that exists, which on many systems does not source ~/.bashrc."""
    candidates = rc_candidates(account)
    if login_shell(account) != "bash":
        return candidates
    bashrc, *logins = candidates
    login = next((p for p in logins if existing.get(p, MISSING).exists), logins[-1])
    login_text = existing.get(login, MISSING).text or ""
    return [bashrc] + ([] if ".bashrc" in login_text else [login])


def cloud_profile(home: str) -> tuple[str, str]:
    """The cloud profile's files wiring reads the developer's theme from (settings, then the older place)."""
    return f"{home}/.claude/settings.json", f"{home}/.claude.json"


def account_files(config: HostConfig, account: Account, existing: dict[str, FileState]) -> list[UserFile]:
    """Pure: the files this developer gets and why, in the order they are written: the deploy
    writes exactly these and the doctor checks exactly these. `existing` decides only which
    bash login file gets the alias."""
    home = account.home
    profile = f"{home}/{config.claude_local_profile}"
    projects = config.claude_projects.get(account.name, ())
    files = [UserFile(path, f"the {config.claude_alias} alias", "alias") for path in rc_paths(account, existing)]
    files += [UserFile(f"{profile}/settings.json", "the local profile's model and environment", "settings"),
              UserFile(f"{profile}/.claude.json", "the local profile's first run and project trust", "state")]
    if config.network == "airgapped":
        files.append(UserFile(f"{home}/.claude/settings.json", "the local model as the user default", "settings"))
    for project in projects:
        files.append(UserFile(f"{project}/.claude/settings.json", "the project's local model settings", "settings"))
        if config.claude_project_gitignore:
            files.append(UserFile(f"{project}/.gitignore", "the .gitignore entry", "text"))
        if config.claude_project_claude_md:
            files.append(UserFile(f"{project}/CLAUDE.md", "the Model setup section", "text"))
    if config.network == "airgapped" or projects:
        files.append(UserFile(f"{home}/.claude.json", "onboarding and project trust", "state"))
    return files


def candidate_paths(config: HostConfig, accounts: dict[str, Account | None]) -> dict[str, list[str]]:
    """Every file wiring may read, per developer (read as that developer), so they come back in
    one round trip: each rc file the login shell may use, the cloud profile and the files
    the developer gets."""
    per_user: dict[str, list[str]] = {}
    for name in config.developer_users:
        account = accounts.get(name)
        if account is None:
            continue
        gets = [f.path for f in account_files(config, account, {})]
        per_user[name] = list(dict.fromkeys([*rc_candidates(account), *cloud_profile(account.home), *gets]))
    return per_user


def claude_md_section(config: HostConfig, decision: Decision) -> str:
    return (f"## Model setup\n\nThis project runs Claude Code on a local model: `{decision.name}` "
            f"({decision.model}, {decision.num_ctx // 1024}K context, KV cache {decision.kv_cache_type}) served by "
            f"Ollama at {base_url(config.ollama_host)}. `.claude/settings.json` points every model tier at it; "
            f"`{config.claude_alias}` does the same from any directory.")


def cloud_theme(*documents: str) -> str:
    """The theme the developer chose in their cloud profile (its settings.json, then the older
    place, `~/.claude.json`), else dark."""
    for document in documents:
        try:
            theme = json.loads(document).get("theme") if document.strip() else None
        except (ValueError, AttributeError):
            theme = None
        if theme in THEMES:
            return theme
    return "dark"


def user_edits(config: HostConfig, decision: Decision, account: Account,
               existing: dict[str, FileState]) -> list[Edit]:
    """Pure: the files one developer user gets (`account_files`), as full new texts."""
    env = local_environment(config, decision)
    profile = f"{account.home}/{config.claude_local_profile}"
    projects = config.claude_projects.get(account.name, ())
    texts: dict[str, str] = {}

    def text(path: str) -> str:
        return existing.get(path, MISSING).text or ""

    def merged(path: str, *changes: tuple[tuple[str, ...], dict], edit=textedit.set_json) -> str:
        """The file's text with each (object path, members) set (by `edit`); other keys untouched."""
        current = text(path)
        try:
            for where, values in changes:
                current = edit(current, where, values)
        except JsonEditError as exc:
            raise JsonEditError(f"{path}: {exc}") from None
        return current

    local_settings = (((), {"model": decision.name}), (("env",), env),
                      (("permissions",), {"defaultMode": config.claude_permission_mode}))
    project_settings = (local_settings[0], (("env",), {k: v for k, v in env.items() if k not in PROFILE_ONLY}),
                        local_settings[2])
    body = alias_block(login_shell(account), config.claude_alias, profile, decision.name)
    for path in rc_paths(account, existing):
        texts[path] = f"{body}\n" if path.endswith("/localcode.fish") else apply_block(text(path), body)
    theme = cloud_theme(*(text(path) for path in cloud_profile(account.home)))
    texts[f"{profile}/settings.json"] = textedit.seed_json(merged(f"{profile}/settings.json", *local_settings), (),
                                                           {"theme": theme})
    # The local profile is ours: its first run opens at the prompt (onboarding done, no
    # auto-mode offer; the developer's theme is in its settings.json, where Claude Code keeps
    # it); only configured projects are trusted. Seeded once: what Claude Code or the developer
    # changes there afterwards stays.
    first_run = {"hasCompletedOnboarding": True, "lastOnboardingVersion": config.claude_version,
                 "hasSeenAutoDefaultNudge": True}
    texts[f"{profile}/.claude.json"] = merged(
        f"{profile}/.claude.json", ((), first_run),
        *((("projects", p), {"hasTrustDialogAccepted": True}) for p in projects), edit=textedit.seed_json)
    claude_json = f"{account.home}/.claude.json"
    cloud_changes: list[tuple[tuple[str, ...], dict]] = []
    if config.network == "airgapped":
        cloud_changes.append(((), {"hasCompletedOnboarding": True}))
        user_settings = f"{account.home}/.claude/settings.json"
        texts[user_settings] = merged(user_settings, *local_settings, ((), {"skipWebFetchPreflight": True}))
    for project in projects:
        cloud_changes.append((("projects", project), {"hasTrustDialogAccepted": True}))
        settings_path = f"{project}/.claude/settings.json"
        texts[settings_path] = merged(settings_path, *project_settings)
        if config.claude_project_gitignore:
            texts[f"{project}/.gitignore"] = apply_block(text(f"{project}/.gitignore"), ".claude/settings.json")
        if config.claude_project_claude_md:
            texts[f"{project}/CLAUDE.md"] = apply_block(text(f"{project}/CLAUDE.md"),
                                                        claude_md_section(config, decision), MARKDOWN)
    if cloud_changes:
        texts[claude_json] = merged(claude_json, *cloud_changes)
    return [Edit(f.path, texts[f.path], f.why) for f in account_files(config, account, existing)]


def account_problems(config: HostConfig, accounts: dict[str, Account | None], os_name: str) -> list[str]:
    """Pure: why the developer users on this host cannot be wired (missing, or not ordinary
    human accounts: a system account would hand root's deploy to whoever controls it)."""
    problems = []
    missing = [u for u in config.developer_users if accounts.get(u) is None]
    if missing:
        problems.append(f"{missing} do not exist")
    floor = FIRST_UID.get(os_name, 1000)
    system = [f"{a.name} (uid {a.uid})" for a in accounts.values()
              if a is not None and a.name in config.developer_users and a.uid < floor]
    if system:
        problems.append(f"{system} are system accounts (developer users need uid >= {floor})")
    odd_homes = [f"{a.name} ({a.home!r})" for a in accounts.values()
                 if a is not None and a.name in config.developer_users
                 and (not a.home.startswith("/") or a.home.rstrip("/") in ("", "/root", "/etc", "/usr", "/var"))]
    if odd_homes:
        problems.append(f"{odd_homes} have no home of their own")
    return problems


def project_problems(config: HostConfig, accounts: dict[str, Account | None], owners: dict[str, str]) -> list[str]:
    """Pure: project directories must exist, be real directories (not links) and belong to
    their developer (never another account's tree)."""
    problems = []
    for user, projects in config.claude_projects.items():
        account = accounts.get(user)
        for project in projects:
            owner = owners.get(project)
            if owner is None:
                problems.append(f"{project} does not exist (localcode never creates project directories)")
            elif owner == "link":
                problems.append(f"{project} is a symbolic link (name the real directory)")
            elif account is not None and int(owner) != account.uid:
                problems.append(f"{project} belongs to uid {owner}, not to {user} (uid {account.uid})")
    return problems


def wire(config: HostConfig, decision: Decision, facts: HostHardware, observed: dict) -> None:
    """Write every developer user's files (only those whose text changes), each as that
    developer. `observed` holds the files already read with the host's other files (see
    `candidate_paths`)."""
    if decision.model is None:
        host.noop(f"Claude Code wiring skipped: no local model ({decision.reason})")
        return
    accounts = dict(facts.accounts)
    if any(u not in accounts for u in config.developer_users):  # the onboarding developer, found late
        accounts = host.get_fact(AccountsFact, users=config.developer_users)
    problems = account_problems(config, accounts, facts.os)
    if problems:  # a data error: stop the whole run before any host is changed
        raise ConfigError(f"invalid data for host {host.name}:\n  developer_users = "
                          f"{list(config.developer_users)!r}: {'; '.join(problems)} on {host.name}\nno host was changed.")
    projects = tuple(p for ps in config.claude_projects.values() for p in ps)
    owners = host.get_fact(DirectoriesFact, paths=projects) if projects else {}
    problems = project_problems(config, accounts, owners)
    if problems:
        raise ConfigError(f"invalid data for host {host.name}:\n  claude_projects = {dict(config.claude_projects)!r}: "
                          f"{'; '.join(problems)} on {host.name}\nno host was changed.")
    per_user = candidate_paths(config, accounts)
    wanted = [p for ps in per_user.values() for p in ps]
    existing = observed if all(p in observed for p in wanted) else observe([], per_user, facts.os, facts.login)
    for name in config.developer_users:
        account = accounts[name]
        try:
            edits = user_edits(config, decision, account, existing)
        except JsonEditError as exc:
            edits, refusals = [], [f"{host.name}: user {name}: {exc}"]
        else:
            roots = (account.home, *config.claude_projects.get(name, ()))
            refusals = [f"{host.name}: user {name}: {edit.path} {why}: refusing to edit it; fix or remove it, "
                        f"then re-run" for edit in edits
                        if (why := editable(existing.get(edit.path, MISSING), account.uid, roots))]
        writes = [(edit, existing.get(edit.path, MISSING)) for edit in edits]
        stale = [edit for edit, before in writes if before.text != edit.text]
        for edit in stale:
            host.log(f"{name}: {edit.why} -> {edit.path}")
        # One operation per developer: every host's nth developer shares a row of pyinfra's results
        # table, and "Developer files" is true of each of them.
        wired = developer_files(name="Developer files", writes=writes, refusals=refusals,
                                run_as=tuple(as_account(facts.os, name)))
        summary.change(host, f"wired {name} ({len(stale)} files)" if len(stale) > 1 else f"wired {name}", wired)


@operation()
def developer_files(writes: list[tuple[Edit, FileState]], refusals: list[str], run_as: tuple[str, ...]):
    """A developer's files, each written (as the developer) only when its text changes; a file we
    refuse to edit fails the host before any of them is written."""
    if refusals:
        yield from failure._inner(message="\n".join(refusals))
        return
    for edit, before in writes:
        yield from write_text._inner(path=edit.path, text=edit.text, before=before, why=edit.why, run_as=run_as)
