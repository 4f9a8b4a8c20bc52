"""The sizing plan: one decision per host with its reasoning, as a table for people and as
JSON for machines. `size_host` is the deploy's step; the rest is pure."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from .amd import plan_amd
from .apple import GpuLimit, plan_limit
from .facts import HardwareFact, HostHardware, Unreadable
from . import summary
from .report import text_table
from .settings import HostConfig
from .sizing import GiB, MiB, Decision, Hardware, decide, gib


@dataclass(frozen=True)
class HostPlan:
    host: str
    hardware: str
    decision: Decision | None
    warnings: tuple[str, ...] = field(default=())
    error: str | None = None
    facts: HostHardware | None = None
    gpu_limit: GpuLimit | None = None  # Apple Silicon: the GPU memory limit now and after the deploy
    # What the server's environment gains for the host's GPUs (an AMD card's HSA_OVERRIDE_GFX_VERSION,
    # ...): the deploy writes it, the doctor expects it (ollama.common.server_environment).
    gpu_environment: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what the plan did that is no warning (an AMD card's override)

    def as_dict(self) -> dict[str, object]:
        base: dict[str, object] = {"host": self.host, "hardware": self.hardware}
        if self.decision is not None:
            base.update(self.decision.as_dict())
            base["warnings"] = list(self.warnings)
        if self.gpu_limit is not None:
            base["gpu_memory_limit"] = self.gpu_limit.as_dict()
        if self.gpu_environment:
            base["gpu_environment"] = dict(self.gpu_environment)
        if self.notes:
            base["notes"] = list(self.notes)
        if self.error is not None:
            base["error"] = self.error
        return base


def size(config: HostConfig, hw: Hardware) -> Decision:
    models = [entry.spec() for entry in config.catalog().models]
    return decide(hw, models, config.policy(), config.override())


def describe(hw: Hardware) -> str:
    parts = [f"{hw.ram_bytes / GiB:.0f} GiB RAM" + (" unified (Apple Silicon)" if hw.apple_silicon else "")]
    parts += [f"{g.vendor} {g.vram_bytes / GiB:.0f} GiB" for g in hw.gpus]
    if hw.wired_limit_bytes:
        parts.append(f"iogpu limit {hw.wired_limit_bytes / GiB:.0f} GiB")
    return ", ".join(parts) if hw.gpus or hw.apple_silicon else parts[0] + ", no GPU"


def plan_host(name: str, config: HostConfig, facts: HostHardware | Unreadable | None) -> HostPlan:
    """The host's plan, or its error when its hardware could not be read (None: the fact
    command said nothing at all)."""
    if facts is None:
        return HostPlan(name, "?", None, error="hardware: no output from the hardware command")
    if isinstance(facts, Unreadable):
        return HostPlan(name, "?", None, error=facts.message)
    return plan_hardware(name, config, facts.hardware(), facts.iogpu_daemon, facts)


def plan_hardware(name: str, config: HostConfig, hw: Hardware, iogpu_daemon: bool = False,
                  facts: HostHardware | None = None) -> HostPlan:
    """Size the hardware as the deploy leaves it: on Apple Silicon with the GPU memory limit
    the deploy sets (apple_gpu_memory), with only the AMD cards Ollama will use (localcode/amd.py,
    judged for the ollama_version the deploy installs), so the plan and the deploy agree.
    `localcode plan`'s what-if machines come through here too. A limit the host's RAM cannot give
    fails this host."""
    warnings = facts.warnings if facts else ()
    amd = plan_amd(hw.gpus, facts.gfx_targets if facts else {}, config.ollama_version,
                   own_override=config.ollama_environment.get("HSA_OVERRIDE_GFX_VERSION"),
                   enabled=config.amd_gpu == "auto", read=facts is not None, floor=config.ollama_min_version,
                   policy=config.policy())
    described = describe(hw)
    hw = replace(hw, gpus=tuple(g for g in hw.gpus if g.vendor != "amd" or g in amd.gpus))
    warnings += amd.warnings
    limit = None
    if hw.apple_silicon:
        try:
            limit = plan_limit(config.apple_gpu_memory, hw.ram_bytes, (hw.wired_limit_bytes or 0) // MiB,
                               iogpu_daemon, config.policy().os_reserve_bytes)
        except ValueError as exc:
            return HostPlan(name, described, None, error=str(exc), facts=facts)
    elif config.apple_gpu_memory is not None:
        warnings += (f"apple_gpu_memory = {config.apple_gpu_memory!r} is ignored: not an Apple Silicon Mac",)
    decision = size(config, hw if limit is None else replace(hw, wired_limit_bytes=limit.wired_limit_bytes))
    return HostPlan(name, described, decision, warnings + decision.warnings + config_warnings(config),
                    facts=facts, gpu_limit=limit, gpu_environment=amd.environment, notes=amd.notes)


def config_warnings(config: HostConfig) -> tuple[str, ...]:
    """Choices that work but cost the developer: said in the plan, before anything runs."""
    if config.claude_permission_mode == "auto":
        return ("claude_permission_mode 'auto': before each checked action Claude Code asks a classifier, "
                "which runs on the local model (a second slow request per action); 'default' asks the developer",)
    return ()


def size_host(host, config: HostConfig) -> HostPlan:
    """Deploy step: gather the hardware fact (one round trip), decide, and log the decision
    with its reason so `pyinfra ... --dry` shows it. A host whose hardware cannot be read gets
    a plan with its error: the deploy fails that host alone, the others go on."""
    result = plan_host(host.name, config, host.get_fact(HardwareFact, users=config.developer_users))
    for line in plan_lines(result):
        host.log(line)
    summary.sizing(host, decision_line(result))
    return result


def decision_line(plan: HostPlan) -> str:
    """The sizing decision in one line (the run's summary)."""
    d = plan.decision
    if d is None:
        return f"failed: {plan.error}"
    if d.model is None:
        return f"no model ({d.reason})"
    return f"{d.model} at {d.num_ctx // 1024}K context, KV {d.kv_cache_type}, {d.tier} ({plan.hardware})"


def plan_lines(plan: HostPlan) -> list[str]:
    d = plan.decision
    if d is None:
        return [f"sizing failed: {plan.error}"]
    lines = [f"hardware: {plan.hardware} -> {d.tier}"]
    change = plan.gpu_limit.change() if plan.gpu_limit else None
    if change:
        lines.append(change)
    if d.model is None:
        lines.append(f"sizing: no model ({d.reason})")
    else:
        lines.append(f"sizing: {d.model} as {d.name}, num_ctx {d.num_ctx}, KV {d.kv_cache_type}"
                     f"{' (flash attention on)' if d.flash_attention else ''}; budget {gib(d.budget_bytes)}, "
                     f"need {gib(d.need_bytes)}, headroom {gib(d.headroom_bytes)}")
        lines.append(f"why: {d.reason}")
    lines += [f"note: {n}" for n in plan.notes]
    lines += [f"warning: {w}" for w in plan.warnings]
    return lines


def table(plans: list[HostPlan]) -> str:
    """A fleet table for people, the reasoning and warnings below it."""
    header = ("HOST", "HARDWARE", "MODEL", "NUM_CTX", "KV", "BUDGET", "NEED", "HEADROOM", "TIER")
    rows = []
    for p in plans:
        d = p.decision
        if d is None:
            rows.append((p.host, p.hardware, "ERROR", "-", "-", "-", "-", "-", "-"))
        elif d.model is None:
            rows.append((p.host, p.hardware, "none fits", "-", "-", gib(d.budget_bytes), "-", "-", d.tier))
        else:
            rows.append((p.host, p.hardware, d.model, str(d.num_ctx), d.kv_cache_type, gib(d.budget_bytes),
                         gib(d.need_bytes), gib(d.headroom_bytes), d.tier))
    out = [text_table(list(header), [list(r) for r in rows])]
    out.append("")
    for p in plans:
        if p.error is not None:
            out.append(f"{p.host}: error: {p.error}")
        change = p.gpu_limit.change() if p.gpu_limit else None
        if change:
            out.append(f"{p.host}: {change}")
        if p.decision is not None:
            out.append(f"{p.host}: {p.decision.reason}")
        for n in p.notes:
            out.append(f"{p.host}: note: {n}")
        for w in p.warnings:
            out.append(f"{p.host}: warning: {w}")
    return "\n".join(out)


def as_json(plans: list[HostPlan]) -> str:
    return json.dumps([p.as_dict() for p in plans], indent=2)
