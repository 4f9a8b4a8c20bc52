"""Ollama on every host: installed or upgraded (verified), running as a service bound to
loopback, per operating system (linux.py: systemd; macos.py: a LaunchAgent), with what both
share in common.py."""

from __future__ import annotations

from pyinfra import host

from ..facts import IOGPU_DAEMON, OllamaState
from ..ops import failure
from ..plan import HostPlan
from ..settings import HostConfig
from .linux import ARCHES, DROPIN, UNIT, OllamaHostFact, install_linux
from .macos import install_macos

__all__ = ["OllamaHostFact", "install", "managed_paths"]


def managed_paths(os_name: str) -> list[str]:
    return {"Linux": [UNIT, DROPIN], "Darwin": [IOGPU_DAEMON]}.get(os_name, [])


def install(config: HostConfig, host_plan: HostPlan, observed: dict) -> OllamaState:
    """Install or upgrade Ollama on this host and run it as a service (by OS). Returns the
    server's state as observed before (with `/api/show` of the derived model) for later steps."""
    facts = host_plan.facts
    derived = host_plan.decision.name
    state, layout = host.get_fact(OllamaHostFact, api=config.ollama_host, show=(derived,) if derived else (),
                                  store=config.ollama_environment.get("OLLAMA_MODELS"),
                                  layout=facts.os == "Linux")
    if facts.os == "Linux":
        if facts.arch not in ARCHES:
            failure(name="Unsupported host", message=f"no Ollama Linux release for architecture {facts.arch}")
            return state
        rocm = any(g.vendor == "amd" for g in facts.gpus)
        install_linux(config, host_plan.decision, ARCHES[facts.arch], rocm, observed, state, layout,
                      host_plan.gpu_environment)
    elif facts.os == "Darwin":
        state = install_macos(config, host_plan, state, observed)
    else:
        failure(name="Unsupported host", message=f"unsupported OS {facts.os}")
    return state
