"""What Ollama's install needs on every operating system: where our releases live and how
they are installed (from any source) and switched, the server's environment, the install
decision and the check of the *running* server's version."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from gevent import sleep
from packaging.version import Version
from pyinfra import host
from pyinfra.api import FactBase, FunctionCommand, operation
from pyinfra.api.command import PyinfraCommand
from pyinfra.api.exceptions import FactProcessError

from .. import helper_scripts, sources
from ..facts import MARK, OllamaFact, OllamaState, sections
from ..ops import api_json, failure
from ..settings import HostConfig
from ..shell import command, sh_quote
from ..sizing import Decision
from ..versions import VersionChoice, effective_floor, choose_version

BASE = "/usr/local/lib/localcode/ollama"
INSTALL_HELPER = helper_scripts.path("localcode-install-release")
BIN_LINK = "/usr/local/bin/ollama"
@dataclass(frozen=True)
class Releases:
    """Our unpacked releases, the active one, and what /usr/local/bin/ollama is."""

    names: tuple[str, ...]
    current: str | None
    bin_kind: str            # "link" | "file" | "missing"
    bin_target: str | None


def releases_command() -> list[str]:
    """The shell (the same on Linux and macOS) that reports our releases and links, in sections."""
    base = sh_quote(BASE)
    return [
        f"echo {MARK}releases; for d in {base}/*/; do [ -d \"$d\" ] && basename \"$d\"; done 2>/dev/null",
        f"echo {MARK}current; readlink {base}/current 2>/dev/null",
        f"echo {MARK}bin-link; if [ -L {BIN_LINK} ]; then echo link; readlink {BIN_LINK}; "
        f"elif [ -e {BIN_LINK} ]; then echo file; else echo missing; fi",
    ]


def parse_releases(s: dict[str, list[str]]) -> Releases:
    """The releases from a fact's sections; an unexpected report fails the host alone."""
    names = tuple(r for r in s.get("releases", []) if r and not r.endswith(".partial") and r != "current")
    current = next((Path(c).name for c in s.get("current", []) if c), None)
    kind_lines = s.get("bin-link", [])
    if not kind_lines or kind_lines[0] not in ("link", "file", "missing"):
        raise FactProcessError(f"ollama layout: unexpected report of {BIN_LINK}")
    target = kind_lines[1] if kind_lines[0] == "link" and len(kind_lines) > 1 else None
    return Releases(names, current, kind_lines[0], target)


class ReleasesFact(FactBase):
    """Our releases and links alone, read again by the operations that install and activate a
    release when they run: one round trip."""

    def default(self) -> Releases:
        return Releases((), None, "missing", None)

    def command(self) -> str:
        return "; ".join([*releases_command(), "true"])

    def process(self, output: list[str]) -> Releases:
        return parse_releases(sections(output))


def install_release(url_template: str, version: str, files: list[str], dest: str, bundle_dir: str | None,
                    os_name: str) -> Iterator[PyinfraCommand]:
    """Commands that verify and unpack one release into `dest` with our helper, from wherever
    the template points (a bundle's files are pushed first and removed once unpacked)."""
    sums = url_template.format(version=version, file="sha256sum.txt")
    archives = [url_template.format(version=version, file=f) for f in files]
    staged = [url.removeprefix(f"file://{sources.HOST_CACHE}/") for url in (sums, *archives)]
    if bundle_dir:
        yield from sources.push(bundle_dir, staged, os_name=os_name)
    yield command(INSTALL_HELPER, sums, dest, *archives)
    if bundle_dir:
        yield command("rm", "-f", *(f"{sources.HOST_CACHE}/{path}" for path in staged))


def server_environment(config: HostConfig, decision: Decision,
                       gpu_environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """The service's environment: loopback by default, the sizing's KV cache type (a quantized
    one needs flash attention forced on), no cloud models on air-gapped hosts, and what the plan
    decided for the host's GPUs (HostPlan.gpu_environment: HSA_OVERRIDE_GFX_VERSION for an AMD
    card Ollama's ROCm build lacks, ...). The host's own ollama_environment wins over all of it."""
    env = {
        "OLLAMA_HOST": config.ollama_host,
        "OLLAMA_KEEP_ALIVE": config.ollama_keep_alive,
        "OLLAMA_NUM_PARALLEL": str(config.num_parallel),
    }
    if decision.kv_cache_type and decision.kv_cache_type != "f16":
        env["OLLAMA_FLASH_ATTENTION"] = "1"
        env["OLLAMA_KV_CACHE_TYPE"] = decision.kv_cache_type
    if config.network == "airgapped":
        env["OLLAMA_NO_CLOUD"] = "1"
    env.update(gpu_environment or {})
    env.update(config.ollama_environment)
    return dict(sorted(env.items()))


SYSTEMD_LOGS = "journalctl -u ollama"  # where a Linux server's failure is read


@operation()
def running_version(api: str, version: str | None, minimum: str | None = None, timeout_s: int = 60,
                    logs: str = SYSTEMD_LOGS):
    """Check the *running* server reports the expected version (after a restart, wait for it).
    Without an exact version (Homebrew decides it) the server must be at least `minimum`.
    `logs`: where the operator reads why the service did not come up (on this host's system)."""
    state = host.get_fact(OllamaFact, api=api)
    if state.server_version is not None and (
            state.server_version == version
            or (version is None and (minimum is None or Version(state.server_version) >= Version(minimum)))):
        host.noop(f"Ollama server at {api} reports {state.server_version}")
        return
    if version is None and state.server_version is not None:
        yield from failure._inner(message=f"Ollama server at {api} reports {state.server_version}, below the "
                                          f"floor {minimum}: upgrade it (ollama_upgrade) or lower ollama_min_version")
        return
    if version is None:
        version = ""  # any version once the server answers: checked against the floor next run
    yield FunctionCommand(wait_for_version, (api, version, timeout_s, logs), {})


def wait_for_version(state, host, api: str, version: str, timeout_s: int,  # noqa: ARG001
                     logs: str = SYSTEMD_LOGS) -> bool:
    """Poll /api/version once a second until the server reports `version` (any, when empty)."""
    got = None
    for _ in range(timeout_s):
        answer = api_json(host, api, "/api/version", timeout_s=2)
        got = answer.get("version") if isinstance(answer, dict) else None
        if isinstance(got, str) and got and (not version or got == version):
            return True
        sleep(1)
    host.log(f"Ollama server at {api} reports {got or 'nothing (not running)'}, expected {version}: the service did "
             f"not come up at the installed version (see {logs})")
    return False


def version_choice(config: HostConfig, decision: Decision, state: OllamaState) -> VersionChoice:
    floor = effective_floor(config.ollama_min_version, decision.min_ollama)
    return choose_version(state.binary_version, config.ollama_version, floor,
                        config.ollama_upgrade, config.ollama_downgrade)
