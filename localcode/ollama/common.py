"""What Ollama's install needs on every operating system: where our releases live, the
server's environment, the install decision and the check of the *running* server's version."""

from __future__ import annotations

from gevent import sleep
from packaging.version import Version
from pyinfra import host
from pyinfra.api import FunctionCommand, operation

from .. import helper_scripts
from ..facts import OllamaFact, OllamaState
from ..ops import api_json, failure
from ..settings import HostConfig
from ..sizing import Decision
from ..versions import VersionChoice, effective_floor, choose_version

BASE = "/usr/local/lib/localcode/ollama"
INSTALL_HELPER = helper_scripts.path("localcode-install-release")
BIN_LINK = "/usr/local/bin/ollama"


def server_environment(config: HostConfig, decision: Decision) -> dict[str, str]:
    """The service's environment: loopback by default, the sizing's KV cache type (a quantized
    one needs flash attention forced on), no cloud models on air-gapped hosts."""
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
    env.update(config.ollama_environment)
    return dict(sorted(env.items()))


@operation()
def running_version(api: str, version: str | None, minimum: str | None = None, timeout_s: int = 60):
    """Check the *running* server reports the expected version (after a restart, wait for it).
    Without an exact version (Homebrew decides it) the server must be at least `minimum`."""
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
    yield FunctionCommand(wait_for_version, (api, version, timeout_s), {})


def wait_for_version(state, host, api: str, version: str, timeout_s: int) -> bool:  # noqa: ARG001
    """Poll /api/version once a second until the server reports `version` (any, when empty)."""
    got = None
    for _ in range(timeout_s):
        answer = api_json(host, api, "/api/version", timeout_s=2)
        got = answer.get("version") if isinstance(answer, dict) else None
        if isinstance(got, str) and got and (not version or got == version):
            return True
        sleep(1)
    host.log(f"Ollama server at {api} reports {got or 'nothing (not running)'}, expected {version}: the service did "
             "not come up at the installed version (see journalctl -u ollama)")
    return False


def version_choice(config: HostConfig, decision: Decision, state: OllamaState) -> VersionChoice:
    floor = effective_floor(config.ollama_min_version, decision.min_ollama)
    return choose_version(state.binary_version, config.ollama_version, floor,
                        config.ollama_upgrade, config.ollama_downgrade)
