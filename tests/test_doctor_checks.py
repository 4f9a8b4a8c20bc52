"""The doctor's checks (pure) over recorded outputs of its fact: one broken thing fails exactly
its check."""

from __future__ import annotations

import base64
import json

from localcode.apple import GpuLimit
from localcode.doctor import (FAIL, PASS, SKIP, WARN, DoctorFact, Listener, Service, alias_check,
                              cloud_environment_check, context_check, deep_check, doctor_arguments, evaluate,
                              gpu_memory_check, html, loopback_check, memory, models_check, parse_doctor,
                              parse_netstat, parse_ss, server_check, settings_check, table)
from localcode.facts import MARK, Account, HostHardware, OllamaState, ShownModel, Unreadable
from localcode.ollama.common import server_environment
from localcode.plan import plan_host
from localcode.settings import validate_host_data
from localcode.sizing import GiB, MiB
from localcode.userfiles import FileState
from localcode.wiring import UserFile, local_environment

CONFIG = validate_host_data("ws", {"developer_users": ["dev"]})
DEV = Account("dev", 1000, 1000, "/home/dev", "/bin/bash")
PLAN = plan_host("ws", CONFIG, HostHardware("Linux", "x86_64", 64 * GiB, login="root", accounts={"dev": DEV}))
D = PLAN.decision
SETTINGS = "/home/dev/.claude-local/settings.json"
STATE = "/home/dev/.claude-local/.claude.json"
RC = "/home/dev/.bashrc"
PROFILE = "/home/dev/.profile"
BLOCK = "# >>> localcode >>>\nalias claude-local='env claude'\n# <<< localcode <<<\n"

# Recorded from a lab host (Linux, systemd) after the deploy, one list of lines per section.
SS = ["LISTEN 0      128      0.0.0.0:22    0.0.0.0:*", "LISTEN 0      5      127.0.0.1:11434 0.0.0.0:*",
      "LISTEN 0      5      127.0.0.1:5000  0.0.0.0:*", "LISTEN 0      128         [::]:22       [::]:*"]
SYSTEMD_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin OLLAMA_HOST=127.0.0.1:11434 "
               "OLLAMA_KEEP_ALIVE=5m OLLAMA_NUM_PARALLEL=1"]
SMOKE = ["event: message_start",
         'data: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[]}}',
         "", "event: content_block_start",
         'data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t",'
         '"name":"get_weather","input":{}}}']
# A Mac (launchd, BSD netstat) after the deploy.
NETSTAT = ["Active Internet connections (including servers)",
           "Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)",
           "tcp4       0      0  127.0.0.1.11434        *.*                    LISTEN",
           "tcp4       0      0  192.168.1.20.50512     17.57.146.20.5223      ESTABLISHED",
           "tcp46      0      0  *.5000                 *.*                    LISTEN",
           "tcp6       0      0  ::1.631                *.*                    LISTEN"]
LAUNCHCTL = ["gui/501/com.localcode.ollama = {", "\tactive count = 1",
             "\tpath = /Users/ana/Library/LaunchAgents/com.localcode.ollama.plist", "\ttype = LaunchAgent",
             "\tstate = running", "", "\tprogram = /opt/homebrew/opt/ollama/bin/ollama", "\tendpoints = {",
             "\t\tstate = active", "\t}", "}"]


def file_lines(path: str, text: str) -> list[str]:
    """One file as the read helper reports it (userfiles.READ_SCRIPT)."""
    data = text.encode()
    return [f"{MARK}file:{path}", f"file 1000 1000 644 {len(data)}", base64.b64encode(data).decode()]


def healthy_files() -> dict[str, str]:
    return {RC: BLOCK, PROFILE: '. "$HOME/.bashrc"\n', SETTINGS: json.dumps({"model": D.name}),
            STATE: json.dumps({"hasCompletedOnboarding": True})}


def healthy(**changes: list[str] | dict[str, str]) -> dict:
    """The sections of a healthy Linux host's output; `files` maps paths to their texts."""
    tags = {"models": [{"name": n, "digest": "sha256:" + "0" * 64, "size": 1} for n in (D.model, D.name)]}
    show = {"parameters": f"num_ctx                        {D.num_ctx}"}
    return {"bin": ["/usr/local/bin/ollama"], "client": ["ollama version is 0.30.0"],
            "version": ['{"version":"0.30.0"}'], "tags": [json.dumps(tags)],
            f"show:{D.name}": ["", json.dumps(show), "200"], "service:systemd": ["active"], "listen:ss": SS,
            "env:systemd": SYSTEMD_ENV, "smoke": SMOKE, "claude": ["2.1.330 (Claude Code)"],
            "files": healthy_files()} | changes


def output(parts: dict) -> list[str]:
    lines = []
    for name, value in parts.items():
        if name == "files":
            lines += [line for path, text in value.items() for line in file_lines(path, text)]
        else:
            lines += [f"{MARK}{name}", *value]
    return lines


def run(parts: dict, deep: bool = False):
    return evaluate("ws", CONFIG, PLAN, DoctorFact().process(output(parts)), deep=deep)


def failed(report) -> set[str]:
    return {c.name for c in report.checks if c.status == FAIL}


def test_the_recorded_environment_is_what_the_deploy_writes():
    assert {k: v for k, v in (w.split("=", 1) for w in SYSTEMD_ENV[0].split())} == \
        {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **server_environment(CONFIG, D)}


def test_a_healthy_host_passes_every_check():
    report = run(healthy())
    assert report.ok and {c.status for c in report.checks} == {PASS}, report.checks
    assert "✓" in table([report]) and "1 of 1 hosts pass" in html([report])
    bars = memory(PLAN, CONFIG)
    assert bars["weights"] + bars["kv_cache"] + bars["buffers"] + bars["free"] == bars["budget"]


def test_each_breakage_fails_exactly_its_check():
    files = healthy_files()
    cases = {
        "service": {"service:systemd": ["inactive"], "version": [""]},
        "loopback": {"listen:ss": ["LISTEN 0      4096         0.0.0.0:11434      0.0.0.0:*"]},
        "models": {"tags": [json.dumps({"models": [{"name": D.model, "digest": "sha256:0", "size": 1}]})]},
        "context": {f"show:{D.name}": ["", json.dumps({"parameters": "num_ctx                        4096"}), "200"]},
        "tool call": {"smoke": ['data: {"type":"content_block_start","content_block":{"type":"text","text":"{}"}}']},
        "claude": {"claude": []},
        "alias dev": {"files": files | {RC: "export A=1\n"}},
        "settings dev": {"files": files | {SETTINGS: "{broken"}},
    }
    for check, change in cases.items():
        report = run(healthy(**change))
        assert failed(report) == {check}, (check, [(c.name, c.status, c.detail) for c in report.checks])
        assert all(c.remedy for c in report.checks if c.status == FAIL)


def test_a_stopped_server_skips_what_depends_on_it():
    report = run(healthy(**{"service:systemd": ["inactive"], "version": [""]}))
    statuses = {c.name: c.status for c in report.checks}
    assert statuses["service"] == FAIL and statuses["ollama"] == SKIP and "models" not in statuses


def test_a_missing_derived_model_skips_context_and_tool_call():
    tags = {"models": [{"name": D.model, "digest": "sha256:0", "size": 1}]}
    report = run(healthy(tags=[json.dumps(tags)], **{f"show:{D.name}": ["", '{"error":"not found"}', "404"]}))
    statuses = {c.name: c.status for c in report.checks}
    assert statuses["models"] == FAIL and statuses["context"] == SKIP and statuses["tool call"] == SKIP


def test_listeners_from_ss_and_netstat():
    assert parse_ss(SS) == (Listener("0.0.0.0", 22), Listener("127.0.0.1", 11434), Listener("127.0.0.1", 5000),
                            Listener("[::]", 22))
    assert parse_ss(["LISTEN 0      4096       127.0.0.1:11434      0.0.0.0:*"]) == (Listener("127.0.0.1", 11434),)
    assert parse_ss(["State Recv-Q Send-Q Local Address:Port Peer Address:Port", "LISTEN 0 5 garbage"]) == ()
    assert parse_ss(["LISTEN 0 4096 [::1]:11434 [::]:*", "LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:*"]) == \
        (Listener("[::1]", 11434), Listener("127.0.0.53%lo", 53))
    assert parse_netstat(NETSTAT) == (Listener("127.0.0.1", 11434), Listener("*", 5000), Listener("[::1]", 631))
    assert parse_netstat(["tcp46      0      0  *.11434                *.*                    LISTEN"]) == \
        (Listener("*", 11434),)


def test_loopback_check_judges_only_the_ollama_port():
    assert loopback_check(parse_ss(SS), 11434, False).status == PASS
    assert loopback_check(parse_netstat(NETSTAT), 11434, False).status == PASS
    assert loopback_check(parse_ss(["LISTEN 0 4096 [::1]:11434 [::]:*"]), 11434, False).status == PASS
    wildcard = loopback_check(parse_netstat(["tcp46  0  0  *.11434  *.*  LISTEN"]), 11434, False)
    assert wildcard.status == FAIL and "*:11434" in wildcard.detail and wildcard.remedy
    assert loopback_check(parse_netstat(["tcp46  0  0  *.11434  *.*  LISTEN"]), 11434, True).status == WARN
    nothing = loopback_check(parse_ss(SS), 8080, False)
    assert nothing.status == FAIL and nothing.detail == "nothing listens on the Ollama port"


def test_the_service_environment_is_compared_key_by_key_with_the_deploys():
    planned = server_environment(CONFIG, D)
    shown = ShownModel({"num_ctx": D.num_ctx}, None, ())
    env = parse_doctor(output(healthy())).environment
    assert context_check(shown, env, planned, D).status == PASS
    quantized = context_check(shown, env | {"OLLAMA_KV_CACHE_TYPE": "q4_0"}, planned, D)
    assert quantized.status == FAIL and "KV q4_0 (planned f16)" in quantized.detail
    assert "OLLAMA_KV_CACHE_TYPE=q4_0 is not planned" in quantized.detail
    changed = context_check(shown, {k: v for k, v in env.items() if k != "OLLAMA_KEEP_ALIVE"}
                            | {"OLLAMA_NUM_PARALLEL": "4"}, planned, D)
    assert changed.status == FAIL
    assert "OLLAMA_KEEP_ALIVE is unset (planned 5m); OLLAMA_NUM_PARALLEL is 4 (planned 1)" in changed.detail
    # Where the server binds is the loopback check's: it sees the real listener.
    assert context_check(shown, env | {"OLLAMA_HOST": "0.0.0.0:11434"}, planned, D).status == PASS
    unreadable = context_check(shown, Unreadable("systemctl show -p Environment: No closing quotation"), planned, D)
    assert unreadable.status == FAIL and "No closing quotation" in unreadable.detail
    quoted = parse_doctor(output(healthy(**{"env:systemd": ['"OLLAMA_ORIGINS=a b" OLLAMA_HOST=127.0.0.1:11434']})))
    assert quoted.environment == {"OLLAMA_ORIGINS": "a b", "OLLAMA_HOST": "127.0.0.1:11434"}


def mac_plan():
    ana = Account("ana", 501, 20, "/Users/ana", "/bin/zsh")
    config = validate_host_data("mac", {"developer_users": ["ana"]})
    return config, plan_host("mac", config, HostHardware("Darwin", "arm64", 64 * GiB, login="root",
                                                         accounts={"ana": ana}))


def plist(environment: dict[str, str]) -> str:
    from localcode.rendering import render

    return render("com.localcode.ollama.plist.j2", label="com.localcode.ollama", binary="/usr/local/bin/ollama",
                  environment=environment, log="/Users/ana/Library/Logs/localcode-ollama.log").decode()


# Recorded from Macs: `launchctl print gui/501/com.localcode.ollama` of an agent that exited
# (KeepAlive restarts it; launchd throttles), and `netstat -anp tcp` of a server bound to every
# address and of one on IPv6 loopback alone.
LAUNCHCTL_EXITED = ["gui/501/com.localcode.ollama = {", "\tactive count = 0",
                    "\tpath = /Users/ana/Library/LaunchAgents/com.localcode.ollama.plist", "\ttype = LaunchAgent",
                    "\tstate = spawn scheduled", "", "\tprogram = /usr/local/bin/ollama", "\targuments = {",
                    "\t\t/usr/local/bin/ollama", "\t\tserve", "\t}", "", "\truns = 14",
                    "\tlast exit code = 1", "}"]
NETSTAT_EVERYWHERE = ["Active Internet connections (including servers)",
                      "Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)",
                      "tcp46      0      0  *.11434                *.*                    LISTEN",
                      "tcp4       0      0  *.22                   *.*                    LISTEN"]
NETSTAT_IPV6 = ["tcp6       0      0  ::1.11434              *.*                    LISTEN"]
AGENT = "/Users/ana/Library/LaunchAgents/com.localcode.ollama.plist"


def mac_parts(config, plan) -> dict:
    """A healthy Mac's sections (the developer logged in at the GUI, the agent running)."""
    d = plan.decision
    tags = {"models": [{"name": n, "digest": "sha256:0", "size": 1} for n in (d.model, d.name)]}
    return {"version": ['{"version":"0.30.0"}'], "tags": [json.dumps(tags)],
            f"show:{d.name}": ["", json.dumps({"parameters": f"num_ctx {d.num_ctx}"}), "200"],
            "session": ["yes"], "service:launchd": LAUNCHCTL, "listen:netstat": NETSTAT, "env:launchd": [AGENT],
            "smoke": SMOKE, "claude": ["2.1.330 (Claude Code)"],
            "files": {AGENT: plist(server_environment(config, d)), "/Users/ana/.zshrc": BLOCK,
                      "/Users/ana/.claude-local/settings.json": json.dumps({"model": d.name}),
                      "/Users/ana/.claude-local/.claude.json": "{}"}}


def test_a_mac_is_read_with_launchctl_netstat_and_its_launch_agent():
    config, plan = mac_plan()
    d = plan.decision
    args = doctor_arguments(config, plan, deep=False)
    agent = AGENT
    assert args["agent"] == agent and args["owner_uid"] == 501
    assert any(agent in paths and prefix[-2] == "ana" for prefix, paths in args["accounts"])
    command = DoctorFact().command(**args)
    assert "launchctl print gui/501/com.localcode.ollama" in command and "netstat -anp tcp" in command
    assert "systemctl" not in command and "ss -Hltn" not in command

    parts = mac_parts(config, plan)
    report = evaluate("mac", config, plan, parse_doctor(output(parts)), deep=False)
    assert report.ok and {c.status for c in report.checks} == {PASS}, report.checks

    stray = plist(server_environment(config, d) | {"OLLAMA_FLASH_ATTENTION": "0"})
    report = evaluate("mac", config, plan, parse_doctor(output(parts | {"files": parts["files"] | {agent: stray}})),
                      deep=False)
    assert failed(report) == {"context"}
    assert "OLLAMA_FLASH_ATTENTION is 0 (planned 1)" in next(c.detail for c in report.checks if c.name == "context")

    unknown = ['Bad request.', 'Could not find service "com.localcode.ollama" in domain for user gui: 501']
    stopped = evaluate("mac", config, plan, parse_doctor(output(parts | {"service:launchd": unknown,
                                                                         "version": [""]})), deep=False)
    service = next(c for c in stopped.checks if c.name == "service")
    assert service.status == FAIL and service.detail == "LaunchAgent com.localcode.ollama not loaded"
    assert "localcode-ollama.log" in service.remedy

    gone = parse_doctor(output({k: v for k, v in parts.items() if k != "files"}))
    assert gone.environment == Unreadable(f"{agent} is missing")
    for hostile in ("<plist><dict><key>a</key>", "<plist><dict><key>a</key><date>secret</date></dict></plist>",
                    "<plist><array/></plist>"):
        environment = parse_doctor(output(parts | {"files": {agent: hostile}})).environment
        assert isinstance(environment, Unreadable) and agent in environment.message
        assert "secret" not in environment.message


def test_the_mac_doctor_names_every_tool_by_its_path():
    from .plan_harness import FakeMac, programs

    config, plan = mac_plan()
    command = DoctorFact().command(**doctor_arguments(config, plan, deep=True))
    runs = programs(command, FakeMac())
    assert not [run.word for run in runs if run.resolved is None]
    words = {run.word for run in runs}
    assert {"/bin/launchctl", "/usr/sbin/netstat", "/usr/bin/curl", "/usr/bin/su", "/usr/bin/tail"} <= words
    assert not {"launchctl", "netstat", "claude", "su", "tail"} & words
    assert "c=; for b in /usr/local/bin/claude /opt/homebrew/bin/claude;" in command
    assert "/bin/launchctl print gui/501 >/dev/null 2>&1 && echo yes" in command


def test_a_mac_agent_that_keeps_exiting_fails_the_service_check():
    config, plan = mac_plan()
    gathered = parse_doctor(output(mac_parts(config, plan) | {"service:launchd": LAUNCHCTL_EXITED,
                                                                      "version": [""]}))
    assert gathered.service == Service("launchd", "spawn scheduled", session=True, installed=True)
    report = evaluate("mac", config, plan, gathered, deep=False)
    service = next(c for c in report.checks if c.name == "service")
    assert service.status == FAIL and service.detail == "LaunchAgent com.localcode.ollama spawn scheduled"
    assert "localcode-ollama.log" in service.remedy and "log show --last 10m" in service.remedy
    assert {c.name: c.status for c in report.checks}["ollama"] == SKIP


def test_a_mac_server_bound_to_every_address_fails_loopback():
    config, plan = mac_plan()
    report = evaluate("mac", config, plan, parse_doctor(output(mac_parts(config, plan)
                                                               | {"listen:netstat": NETSTAT_EVERYWHERE})), deep=False)
    assert failed(report) == {"loopback"}
    assert next(c for c in report.checks if c.name == "loopback").detail.startswith("listening on *:11434")
    assert loopback_check(parse_netstat(NETSTAT_IPV6), 11434, False).status == PASS


def test_a_mac_whose_developer_is_logged_out_warns_and_checks_nothing_that_needs_the_server():
    """launchd has no gui/501 domain: `launchctl print` of the domain and of the agent fail and
    the server does not answer. An installed agent is a warning (it loads at the next login),
    not a failure; a missing one still fails."""
    config, plan = mac_plan()
    logged_out = mac_parts(config, plan) | {
        "session": [], "service:launchd": ["Bad request.", "Could not find domain for user gui: 501"],
        "listen:netstat": NETSTAT[:2], "version": [""], "smoke": []}
    gathered = parse_doctor(output(logged_out))
    assert gathered.service == Service("launchd", "not loaded", session=False, installed=True)
    report = evaluate("mac", config, plan, gathered, deep=False)
    statuses = {c.name: c.status for c in report.checks}
    assert report.ok and statuses["service"] == WARN and statuses["ollama"] == SKIP
    assert "loopback" not in statuses and "models" not in statuses
    service = next(c for c in report.checks if c.name == "service")
    assert "loads at its owner's next GUI login" in service.detail and "log in as that user" in service.remedy
    files = {k: v for k, v in logged_out["files"].items() if k != AGENT}
    missing = evaluate("mac", config, plan, parse_doctor(output(logged_out | {"files": files})), deep=False)
    service = next(c for c in missing.checks if c.name == "service")
    assert service.status == FAIL and service.detail == "LaunchAgent com.localcode.ollama not installed"


def test_a_linux_host_is_read_with_systemd_and_ss():
    args = doctor_arguments(CONFIG, PLAN, deep=True)
    assert args["agent"] is None and args["users"] == ("dev",)
    command = DoctorFact().command(**args)
    assert "systemctl show ollama -p Environment --value" in command and "ss -Hltn" in command
    assert "launchctl" not in command and "netstat" not in command and "awk" not in command
    assert "/home/dev/.bash_login" in command  # every login file wiring may choose


def test_the_alias_is_checked_in_every_rc_file_the_deploy_writes():
    login = "/home/dev/.bash_login"
    files = healthy_files() | {login: "export A=1\n"}  # bash reads it before ~/.profile
    report = run(healthy(files=files))
    alias = next(c for c in report.checks if c.name == "alias dev")
    assert failed(report) == {"alias dev"} and alias.detail == f"claude-local is not defined in {login}"
    assert run(healthy(files=files | {login: BLOCK})).ok
    assert alias_check("dev", "claude-local", {RC: FileState(BLOCK, "644")}).status == PASS


def test_settings_are_the_json_files_the_deploy_writes():
    profile = UserFile(SETTINGS, "the local profile's model and environment", "settings")
    state = UserFile(STATE, "the local profile's first run and project trust", "state")
    ok = settings_check("dev", [(profile, FileState(json.dumps({"model": D.name}), "644")),
                                (state, FileState("{}", "600"))], D.name)
    assert ok.status == PASS and ok.detail == "2 settings files valid"
    wrong = settings_check("dev", [(profile, FileState('{"model": "opus"}', "644")), (state, FileState("[]", "600"))],
                           D.name)
    assert wrong.status == FAIL and wrong.detail == f"{SETTINGS}: model is 'opus', not {D.name}"
    missing = settings_check("dev", [(profile, FileState(None, None)),
                                     (state, FileState(None, None, problem="unreadable"))], D.name)
    assert missing.detail == f"{SETTINGS} missing; {STATE} is unreadable"
    report = run(healthy(files=healthy_files() | {STATE: "{"}))
    assert failed(report) == {"settings dev"}


def test_server_check_against_the_floor_and_unreadable_answers():
    active, stopped = Service("systemd", "active"), Service("systemd", "inactive")
    assert server_check(OllamaState(None, None, "0.30.0"), "0.14.3", active, "127.0.0.1:11434").status == PASS
    old = server_check(OllamaState(None, None, "0.12.0"), "0.14.3", active, "127.0.0.1:11434")
    assert old.status == FAIL and "below the effective floor 0.14.3" in old.detail
    silent = server_check(OllamaState(None, None, None), "0.14.3", active, "127.0.0.1:11434")
    assert silent.status == FAIL and "journalctl -u ollama" in silent.remedy
    assert server_check(OllamaState(None, None, None), "0.14.3", stopped, "127.0.0.1:11434").status == SKIP
    garbled = parse_doctor(output(healthy(version=["<html>proxy error</html>"])))
    assert isinstance(garbled.ollama, Unreadable)
    report = run(healthy(version=["<html>proxy error</html>"]))
    assert failed(report) == {"ollama"} and "cannot parse /api/version" in report.checks[1].detail


def test_models_check_without_a_planned_model_warns():
    from dataclasses import replace

    none = replace(D, model=None, name=None, reason="nothing fits")
    assert models_check(set(), none) == models_check({"x"}, none)
    assert models_check(set(), none).status == WARN and "nothing fits" in models_check(set(), none).detail
    assert models_check({D.model, D.name}, D).status == PASS


def test_the_smoke_answer_is_read_as_server_sent_events():
    report = run(healthy(smoke=["data: [1]", "data: 3", "data: {broken", 'data: {"type":"content_block_start"}']))
    assert failed(report) == {"tool call"}
    silent = next(c for c in run(healthy(smoke=[])).checks if c.name == "tool call")
    assert silent.detail == "no tool_use block in the streamed answer (no answer)"


def test_deep_checks_read_each_developers_answer_and_login_environment():
    answer = json.dumps({"is_error": False, "modelUsage": {D.name: {}}})
    parts = healthy(**{"cloud-env:dev": ["ANTHROPIC_BETAS"], "deep:dev": [answer]})
    report = run(parts, deep=True)
    statuses = {c.name: c.status for c in report.checks}
    assert statuses["claude -p dev"] == PASS and statuses["cloud env dev"] == WARN
    assert deep_check("dev", {"is_error": True}, D.name, "claude-local").status == FAIL
    assert deep_check("dev", None, D.name, "claude-local").remedy == "run claude-local -p hi as dev and read its error"


def test_cloud_settings_in_a_login_environment_are_reported_not_fixed():
    ours = set(local_environment(CONFIG, D))
    clean = cloud_environment_check("dev", ["EDITOR"], ours)
    assert clean.status == PASS and clean.detail == "no cloud settings"
    covered = cloud_environment_check("dev", ["CLAUDE_CODE_USE_BEDROCK", "ANTHROPIC_MODEL", "AWS_PROFILE"], ours)
    assert covered.status == PASS and "ANTHROPIC_MODEL" in covered.detail
    winning = cloud_environment_check("dev", ["ANTHROPIC_BETAS", "ANTHROPIC_MODEL"], ours)
    assert winning.status == WARN and winning.detail.startswith("ANTHROPIC_BETAS in dev's login environment")


def test_the_gpu_memory_limit_in_force_on_a_mac():
    raised = gpu_memory_check(GpuLimit(16 * GiB, 12288, True, 12288))
    assert (raised.status, raised.detail) == (PASS, "GPU memory limit 12.0 GiB (raised by localcode)")
    default = gpu_memory_check(GpuLimit(16 * GiB, 0, False, None))
    assert (default.status, default.detail) == (PASS, "GPU memory limit: system default, 10.7 GiB")
    # A reboot that undid the limit: the model was sized for more than the Mac now gives.
    undone = gpu_memory_check(GpuLimit(16 * GiB, 0, True, 12288))
    assert undone.status == FAIL and undone.detail == ("GPU memory limit: system default, 10.7 GiB; the deploy "
                                                       "sets 12.0 GiB and the sizing counts on it")
    assert "redeploy" in undone.remedy and "docs/notes/macos.md" in undone.remedy
    by_hand = gpu_memory_check(GpuLimit(16 * GiB, 13000, False, None))
    assert by_hand.status == WARN and by_hand.detail.startswith("GPU memory limit 12.7 GiB (set outside localcode): "
                                                                "lost at the next reboot")
    unpersisted = gpu_memory_check(GpuLimit(16 * GiB, 12288, False, 12288))
    assert unpersisted.status == WARN and "not kept across reboots" in unpersisted.detail
    leftover = gpu_memory_check(GpuLimit(16 * GiB, 0, True, 0))
    assert leftover.status == WARN and "our LaunchDaemon is still there" in leftover.detail


def test_a_mac_reports_its_gpu_memory_limit_and_other_hosts_none():
    ana = Account("ana", 501, 20, "/Users/ana", "/bin/zsh")
    config = validate_host_data("mac", {"developer_users": ["ana"], "apple_gpu_memory": "auto"})
    facts = HostHardware("Darwin", "arm64", 16 * GiB, wired_limit_bytes=12288 * MiB, login="root",
                         accounts={"ana": ana}, iogpu_daemon=True)
    report = evaluate("mac", config, plan_host("mac", config, facts), parse_doctor([]), deep=False)
    check = next(c for c in report.checks if c.name == "gpu memory")
    assert (check.status, check.detail) == (PASS, "GPU memory limit 12.0 GiB (raised by localcode)")
    assert "gpu" in table([report]).splitlines()[0].split()
    assert not [c for c in run(healthy()).checks if c.name == "gpu memory"]
