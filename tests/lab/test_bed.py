"""The test bed is real: per-host hardware facts, systemd, SSH, the lab internet, the Ollama
stand-in under systemd and the real Claude Code binary talking to it."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import REPO, Lab, lab_spec_file, q, start_lab

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    path = lab_spec_file(tmp_path_factory.mktemp("bed"), "bed", "10.215.0.0/16")
    lab = start_lab(path)
    print(f"\nlab up (default fleet, {len(lab.spec.hosts)} hosts): {lab.up_seconds:.1f}s")
    yield lab
    from lab import fleet

    fleet.down(lab.spec.name)


def mem_total_gib(lab: Lab, host: str) -> float:
    line = lab.ssh(host, "grep MemTotal /proc/meminfo").stdout
    return int(line.split()[1]) / 1024 / 1024


def test_hosts_boot_real_systemd_with_their_identity(lab: Lab):
    for host in lab.spec.hosts:
        out = lab.ssh(host.name, "hostname; systemctl is-system-running; ps -o comm= -p 1").stdout.split()
        assert out == [host.name, "running", "systemd"]


def test_facts_differ_per_host(lab: Lab):
    for host in lab.spec.hosts:
        gib = mem_total_gib(lab, host.name)
        assert host.ram_gib * 0.95 < gib <= host.ram_gib, (host.name, gib)
        nvidia = [g for g in host.gpus if g.vendor == "nvidia"]
        amd = [g for g in host.gpus if g.vendor == "amd"]
        smi = lab.ssh(host.name, "command -v nvidia-smi >/dev/null && nvidia-smi "
                      "--query-gpu=name,memory.total --format=csv,noheader,nounits", check=False)
        if nvidia:
            rows = [line.rsplit(", ", 1) for line in smi.stdout.splitlines()]
            assert [int(mib) for _, mib in rows] == [g.gib * 1024 for g in nvidia]
            assert [name for name, _ in rows] == [g.product_name for g in nvidia]
        else:
            assert smi.returncode != 0 and smi.stdout == ""
        rocm = lab.ssh(host.name, "command -v rocm-smi >/dev/null && rocm-smi --showmeminfo vram --json",
                       check=False)
        if amd:
            cards = json.loads(rocm.stdout)
            assert [int(c["VRAM Total Memory (B)"]) for c in cards.values()] == [g.gib * 1024**3 for g in amd]
        else:
            assert rocm.returncode != 0


def test_developer_users_have_their_login_shell_and_home(lab: Lab):
    for host in lab.spec.hosts:
        for user in host.users:
            entry = lab.ssh(host.name, f"getent passwd {q(user.name)}").stdout.strip().split(":")
            assert entry[5] == f"/home/{user.name}" and entry[6] == user.shell_path
            owner = lab.ssh(host.name, f"stat -c %U {q(entry[5])}").stdout.strip()
            assert owner == user.name
            assert lab.ssh(host.name, "id -un", user=user.name).stdout.strip() == user.name


def test_preinstalled_standin_runs_under_systemd(lab: Lab):
    host = next(h for h in lab.spec.hosts if h.ollama_preinstalled)
    lab.ssh(host.name, "systemctl is-active ollama && systemctl is-enabled ollama")
    version = lab.ssh(host.name, "curl -sf --retry 20 --retry-connrefused --retry-delay 1 "
                                 "http://127.0.0.1:11434/api/version").stdout
    assert json.loads(version) == {"version": host.ollama_preinstalled}
    cli = lab.ssh(host.name, "ollama --version").stdout
    assert cli.strip() == f"ollama version is {host.ollama_preinstalled}"
    # Loopback only, as install.sh leaves it.
    listeners = lab.ssh(host.name, "ss -Hltn 'sport = :11434'").stdout
    assert [line.split()[3] for line in listeners.splitlines()] == ["127.0.0.1:11434"]


def test_online_hosts_reach_the_lab_internet(lab: Lab):
    internet = lab.spec.internet
    for host in (h for h in lab.spec.hosts if h.network == "online"):
        stable = lab.ssh(host.name, f"curl -sf {internet.mirror_url}/claude-code-releases/stable").stdout
        assert stable.strip() == internet.claude_code_version
        tags = lab.ssh(host.name, f"curl -sf {internet.registry_url}/v2/library/gpt-oss/tags/list").stdout
        assert "20b" in json.loads(tags)["tags"]


def test_airgapped_hosts_reach_nothing(lab: Lab):
    internet = lab.spec.internet
    airgapped = [h for h in lab.spec.hosts if h.network == "airgapped"]
    online = next(h for h in lab.spec.hosts if h.network == "online")
    assert airgapped
    for host in airgapped:
        for url in (
            f"{internet.mirror_url}/claude-code-releases/stable",
            f"{internet.registry_url}/v2/",
            f"http://{lab.control_address(host.name)}:22/",       # the control machine itself
            f"http://{lab.address(online.name)}:22/",             # another lab host
            "http://1.1.1.1/",                                    # anything else
        ):
            result = lab.ssh(host.name, f"curl -s --max-time 2 -o /dev/null {q(url)}", check=False)
            assert result.returncode in (6, 7, 28), (host.name, url, result.returncode)
        routes = lab.ssh(host.name, "ip route").stdout
        assert "default" not in routes


def test_real_claude_code_talks_to_the_standin(lab: Lab):
    """The pinned Claude Code binary from the mirror, pointed at the stand-in, gets an answer,
    and the stand-in logged the model name it was sent."""
    host = next(h for h in lab.spec.hosts if h.network == "online" and not h.ollama_preinstalled)
    user = host.users[0].name
    mirror = lab.spec.internet.mirror_url
    version = lab.spec.internet.claude_code_version
    standin = lab.spec.internet.ollama_versions[-1]
    install = f"""
set -eu
cd /tmp
curl -sf -o manifest.json {mirror}/claude-code-releases/{version}/manifest.json
curl -sf -o claude {mirror}/claude-code-releases/{version}/linux-x64/claude
want=$(python3 -c 'import json; print(json.load(open("manifest.json"))["platforms"]["linux-x64"]["checksum"])')
echo "$want  claude" | sha256sum -c --quiet
install -m 0755 claude /usr/local/bin/claude && rm claude
curl -sf -O {mirror}/ollama/releases/download/v{standin}/ollama-linux-amd64.tar.zst
curl -sf -O {mirror}/ollama/releases/download/v{standin}/sha256sum.txt
grep 'ollama-linux-amd64.tar.zst$' sha256sum.txt | sed 's#  \\./#  #' | sha256sum -c --quiet
mkdir -p /opt/standin && tar -I zstd -xf ollama-linux-amd64.tar.zst -C /opt/standin
useradd -r -s /bin/false -U -m -d /usr/share/ollama ollama
systemd-run --unit=standin -p User=ollama -p Group=ollama /opt/standin/bin/ollama serve
for i in $(seq 50); do curl -sf http://127.0.0.1:11434/api/version >/dev/null && break; sleep 0.2; done
/opt/standin/bin/ollama pull gpt-oss:20b >/dev/null
"""
    lab.ssh(host.name, install)
    assert lab.ssh(host.name, "claude --version").stdout.strip() == f"{version} (Claude Code)"
    env = (
        "ANTHROPIC_BASE_URL=http://127.0.0.1:11434 ANTHROPIC_AUTH_TOKEN=ollama ANTHROPIC_API_KEY= "
        "ANTHROPIC_MODEL=gpt-oss:20b ANTHROPIC_DEFAULT_HAIKU_MODEL=gpt-oss:20b "
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_UPDATES=1 CLAUDE_CODE_MAX_RETRIES=0"
    )
    answer = lab.ssh(host.name, f"cd ~ && {env} claude -p hi --output-format json", user=user, timeout=120)
    result = json.loads(answer.stdout)
    assert result["is_error"] is False, result
    assert "gpt-oss:20b" in result["result"]
    assert "gpt-oss:20b" in result["modelUsage"]
    log = lab.ssh(host.name, "cat /usr/share/ollama/.ollama/standin-requests.jsonl").stdout
    messages = [json.loads(line) for line in log.splitlines() if "/v1/messages" in line]
    assert messages and {m["model"] for m in messages} == {"gpt-oss:20b"}


def test_pyinfra_reaches_every_lab_host_with_strict_host_keys(lab: Lab):
    result = subprocess.run(
        [str(REPO / ".venv/bin/pyinfra"), "inventory/lab.py", "fact", "server.Hostname", "--json", "-y"],
        cwd=REPO, env=lab.pyinfra_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["server.Hostname"] == {h.name: h.name for h in lab.spec.hosts}
