"""claude-local and configured projects against the cloud setups developers already have.

One deploy on a laptop with three developers (bash, zsh, fish); then, per setup, the
developer's own exports (in their rc file, before our managed block, as real setups have
them) and settings files are rewritten and three runs checked: `claude-local` in an
interactive login shell and plain `claude` in the configured project reach only the derived
model on the local server, with `Authorization: Bearer ollama` and none of the developer's
credentials or headers (a loopback capture on the host reads what was sent); plain `claude`
outside any project keeps the cloud setup, so nothing reaches the local server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import yaml

from lab import fleet

from .conftest import Lab, q, start_lab
from .deploy_helpers import deploy, write_inventory

pytestmark = pytest.mark.lab
HOST = "laptop"
SHELLS = {"dev": "bash", "zoe": "zsh", "finn": "fish"}
RC = {"bash": ".bashrc", "zsh": ".zshrc", "fish": ".config/fish/config.fish"}
LOG = "/usr/share/ollama/.ollama/standin-requests.jsonl"
HEADERS = "/root/messages-headers.jsonl"
BEGIN, END = "# >>> my cloud setup >>>", "# <<< my cloud setup <<<"
# Replaces the developer's own section of an rc file (argv: path, new section body).
REWRITE = ("import sys\npath, body = sys.argv[1:]\ntext = open(path).read()\n"
           f"head, rest = text.split({BEGIN!r})\n_, tail = rest.split({END!r})\n"
           f"open(path, 'w').write(head + {BEGIN!r} + '\\n' + body + {END!r} + tail)\n")
# Runs as root on the host: appends the headers of every POST /v1/messages sent to the local
# server (loopback port 11434) as one JSON object per line (argv: output path).
CAPTURE = """\
import json, socket, struct, sys
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
sock.bind(("lo", 0))
out = open(sys.argv[1], "a", buffering=1)
while True:
    frame, address = sock.recvfrom(65535)
    if address[2] == socket.PACKET_OUTGOING or frame[12:14] != b"\\x08\\x00" or frame[23] != 6:
        continue
    ip = frame[14:]
    tcp = ip[(ip[0] & 15) * 4:]
    payload = tcp[(tcp[12] >> 4) * 4:]
    if struct.unpack("!H", tcp[2:4])[0] == 11434 and payload.startswith(b"POST /v1/messages"):
        lines = payload.split(b"\\r\\n\\r\\n", 1)[0].decode("latin-1").split("\\r\\n")[1:]
        out.write(json.dumps({k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}) + "\\n")
"""
CLOUD_PROFILE = json.dumps({"model": "opus", "env": {"CLAUDE_CODE_USE_BEDROCK": "1"}})
TEAM_REPO = json.dumps({"model": "opus", "env": {"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "us-east5",
                                                 "ANTHROPIC_VERTEX_PROJECT_ID": "corp-project"}})
FAST = "CLAUDE_CODE_MAX_RETRIES=0"
CLOUD_CREDENTIALS = ("x-api-key", "x-corp")


@dataclass(frozen=True)
class Setup:
    """A developer's cloud setup: shell exports, settings files (relative to the home) and the
    directory claude-local is started in."""

    id: str
    user: str
    exports: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    cwd: str = "~"


SETUPS = [
    Setup("model", "dev", {"ANTHROPIC_MODEL": "claude-sonnet-4-5"}),
    Setup("small-fast-model", "zoe", {"ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4-5"}),
    Setup("bedrock", "finn", {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "us-east-1", "AWS_PROFILE": "corp"}),
    Setup("vertex", "dev", {"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "us-east5",
                            "ANTHROPIC_VERTEX_PROJECT_ID": "corp-project"}),
    Setup("foundry", "zoe", {"CLAUDE_CODE_USE_FOUNDRY": "1", "ANTHROPIC_FOUNDRY_RESOURCE": "corp-foundry"}),
    Setup("gateway", "finn", {"ANTHROPIC_BASE_URL": "https://gateway.corp.example"}),
    Setup("api-key", "dev", {"ANTHROPIC_API_KEY": "sk-ant-test"}),
    Setup("auth-token", "zoe", {"ANTHROPIC_AUTH_TOKEN": "corp-token"}),
    Setup("oauth-token", "finn", {"CLAUDE_CODE_OAUTH_TOKEN": "oauth-test"}),
    Setup("custom-headers", "dev", {"ANTHROPIC_CUSTOM_HEADERS": "X-Corp: 1"}),
    Setup("sonnet-tier", "zoe", {"ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-4-5"}),
    Setup("subagent-model", "finn", {"CLAUDE_CODE_SUBAGENT_MODEL": "claude-opus-4-1"}),
    Setup("cloud-profile", "dev", {}, {".claude/settings.json": CLOUD_PROFILE}),
    Setup("cloud-profile-elsewhere", "finn", {}, {".claude/settings.json": CLOUD_PROFILE}, cwd="/tmp"),
    Setup("team-repo-settings", "zoe", {}, {"work/.claude/settings.json": TEAM_REPO}, cwd="~/work"),
    Setup("bedrock-everything", "zoe",
          {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "eu-west-1", "ANTHROPIC_MODEL": "claude-opus-4-1",
           "ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_CUSTOM_HEADERS": "X-Corp: 1",
           "CLAUDE_CODE_OAUTH_TOKEN": "oauth-test"}, {".claude/settings.json": CLOUD_PROFILE}, cwd="/tmp"),
    Setup("gateway-everything", "finn",
          {"ANTHROPIC_BASE_URL": "https://gateway.corp.example", "ANTHROPIC_AUTH_TOKEN": "corp-token",
           "ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-4-5",
           "ANTHROPIC_SMALL_FAST_MODEL": "claude-haiku-4-5", "CLAUDE_CODE_USE_VERTEX": "1",
           "CLOUD_ML_REGION": "us-east5", "ANTHROPIC_VERTEX_PROJECT_ID": "corp"}),
]
ALL_FILES = sorted({path for s in SETUPS for path in s.files})


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    spec = {"name": "envs", "subnet": "10.241.0.0/16", "hosts": [{
        "name": HOST, "ram_gib": 24, "users": [{"name": u, "shell": s} for u, s in SHELLS.items()]}]}
    path = tmp_path_factory.mktemp("envs") / "envs.yaml"
    path.write_text(yaml.safe_dump(spec))
    lab = start_lab(path)
    yield lab
    fleet.down(lab.spec.name)


@pytest.fixture(scope="module")
def model(lab: Lab, tmp_path_factory) -> str:
    """Each developer's project and (empty) own section in the rc file, then one deploy; the
    derived model's name."""
    for user, shell in SHELLS.items():
        lab.ssh(HOST, f"mkdir -p ~/project ~/work ~/.config/fish "
                      f"&& printf '\\n%s\\n%s\\n' {q(BEGIN)} {q(END)} >> ~/{RC[shell]}", user=user)
    inventory = write_inventory(tmp_path_factory.mktemp("inv") / "envs.py", lab, {HOST: {
        "claude_projects": {u: [f"/home/{u}/project"] for u in SHELLS}}})
    code, _, err = deploy(lab, inventory)
    assert code == 0, err[-3000:]
    for user, shell in SHELLS.items():
        rc = lab.ssh(HOST, f"cat ~/{RC[shell]}", user=user).stdout
        if shell != "fish":  # fish: our block has its own conf.d file
            assert rc.index(END) < rc.index("# >>> localcode >>>"), rc
    tags = json.loads(lab.ssh(HOST, "curl -sf http://127.0.0.1:11434/api/tags").stdout)["models"]
    return next(m["name"] for m in tags if m["name"].startswith("localcode/"))


@pytest.fixture(scope="module")
def capture(lab: Lab) -> Iterator[None]:
    """The loopback capture of request headers, for the module's runs; stopped by its PID."""
    command = f"touch {HEADERS}; nohup python3 -c {q(CAPTURE)} {HEADERS} >/dev/null 2>&1 & echo $!"
    pid = lab.ssh(HOST, command).stdout.strip()
    yield
    lab.ssh(HOST, f"kill {pid}")


def exports(shell: str, env: dict[str, str]) -> str:
    if shell == "fish":
        return "".join(f"set -gx {name} {q(value)}\n" for name, value in env.items())
    return "".join(f"export {name}={q(value)}\n" for name, value in env.items())


def apply_setup(lab: Lab, setup: Setup) -> None:
    """As the developer: their exports in their rc file and their settings files; their login
    shell then carries the exports."""
    shell = SHELLS[setup.user]
    files = " ".join(f"&& mkdir -p $(dirname ~/{path}) && printf %s {q(text)} > ~/{path}"
                     for path, text in setup.files.items())
    lab.ssh(HOST, f"python3 -c {q(REWRITE)} ~/{RC[shell]} {q(exports(shell, setup.exports))} "
                  f"&& rm -f {' '.join(f'~/{p}' for p in ALL_FILES)} {files}", user=setup.user)
    seen = lab.ssh(HOST, f"{shell} -lic env 2>/dev/null", user=setup.user).stdout
    assert all(f"{k}={v}\n" in seen for k, v in setup.exports.items()), f"the login shell lacks the exports:\n{seen}"


def mark(lab: Lab) -> tuple[int, int]:
    """The lengths of the server's request log and of the header capture."""
    log, headers = lab.ssh(HOST, f"wc -l < {LOG}; wc -l < {HEADERS}").stdout.split()
    return int(log), int(headers)


def models_since(lab: Lab, start: tuple[int, int]) -> list[str]:
    """The model of every /v1/messages request logged since the mark."""
    lines = lab.ssh(HOST, f"tail -n +{start[0] + 1} {LOG}").stdout.splitlines()
    return [entry["model"] for entry in map(json.loads, lines) if entry["path"] == "/v1/messages"]


def headers_since(lab: Lab, start: tuple[int, int], count: int) -> list[dict[str, str]]:
    """The headers of the `count` requests captured since the mark (the capture may lag a
    moment behind the server's log)."""
    deadline = time.monotonic() + 10
    while True:
        lines = lab.ssh(HOST, f"tail -n +{start[1] + 1} {HEADERS}").stdout.splitlines()
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.2)


def run_claude(lab: Lab, user: str, command: str) -> tuple[dict | None, str]:
    """(the JSON result or None, everything the run printed)."""
    result = lab.ssh(HOST, command, user=user, check=False, timeout=120)
    out = result.stdout
    try:
        return json.loads(out[out.index("{"):]), out + result.stderr
    except ValueError:
        return None, out + result.stderr


def assert_local_only(lab: Lab, model: str, setup: Setup, command: str) -> None:
    """The run answers, and every request it sent went to the derived model with the local
    token and none of the developer's credentials or headers."""
    start = mark(lab)
    result, out = run_claude(lab, setup.user, f"{FAST} {SHELLS[setup.user]} -lic {q(command)}")
    sent = models_since(lab, start)
    assert result is not None and result["is_error"] is False, f"{command!r} failed:\n{out[-3000:]}"
    assert sent and set(sent) == {model}, f"{command!r} sent {sent}\n{out[-3000:]}"
    assert set(result["modelUsage"]) == {model}, result
    headers = headers_since(lab, start, len(sent))
    assert len(headers) == len(sent), f"captured {headers} for {sent}"
    for sent_headers in headers:
        assert sent_headers.get("authorization") == "Bearer ollama", sent_headers
        assert not set(CLOUD_CREDENTIALS) & set(sent_headers), sent_headers


@pytest.mark.parametrize("setup", SETUPS, ids=[s.id for s in SETUPS])
def test_claude_local_reaches_only_the_derived_model(lab: Lab, model: str, capture: None, setup: Setup):
    apply_setup(lab, setup)
    assert_local_only(lab, model, setup, f"cd {setup.cwd} && claude-local -p hi --output-format json")


@pytest.mark.parametrize("setup", SETUPS, ids=[s.id for s in SETUPS])
def test_plain_claude_in_the_project_reaches_only_the_derived_model(lab: Lab, model: str, capture: None,
                                                                    setup: Setup):
    apply_setup(lab, setup)
    assert_local_only(lab, model, setup, "cd ~/project && claude -p hi --output-format json")


@pytest.mark.parametrize("setup", SETUPS, ids=[s.id for s in SETUPS])
def test_plain_claude_outside_projects_stays_off_the_local_server(lab: Lab, model: str, capture: None,
                                                                  setup: Setup):
    apply_setup(lab, setup)
    start = mark(lab)
    command = "cd /tmp && claude -p hi --output-format json"
    result, out = run_claude(lab, setup.user, f"{FAST} {SHELLS[setup.user]} -lic {q(command)}")
    assert models_since(lab, start) == [], f"plain claude outside projects reached the local server:\n{out[-3000:]}"
    assert result is None or result["is_error"] is True, f"plain claude outside projects answered:\n{out[-3000:]}"
