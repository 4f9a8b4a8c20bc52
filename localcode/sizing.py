"""Memory-fit sizing: which model and which context fit a host. Pure functions, no hosts.

Budget (what the model may use):
- NVIDIA/AMD: sum over GPUs of (VRAM - per-GPU reserve), less one compute buffer per extra GPU
  (each GPU holds its own; the need below counts one);
- Apple Silicon: Metal's working set (2/3 of RAM below 36 GiB, 3/4 from 36 GiB, or the
  `iogpu.wired_limit_mb` setting) less the Metal reserve;
- CPU only, or a GPU host where nothing fits in VRAM: RAM less an OS reserve (plus the usable
  VRAM when layers can be split), flagged as slow.
Need = weights + KV(num_ctx, KV type) x parallel + fixed KV x parallel + one compute buffer.

Choice: the best-ranked model whose need at the minimum context (min_context) fits; then the
largest context step up to the model's trained maximum that fits, with f16 KV where it reaches
that context and q8_0 (which needs flash attention) where only it does. A fast tier (all in GPU
memory) beats a slow one; on slow tiers only models with few active parameters are considered
(a dense 24B model on a CPU answers at a few tokens per second).

Monotone: with more memory the outcome never gets worse, in this order: fast before slow,
then model rank, then context.

Nothing fits: the reason names the ways out, cheapest first (`way_out`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

GiB = 1024**3
MiB = 1024**2

Vendor = Literal["nvidia", "amd"]
KvType = Literal["f16", "q8_0", "q4_0"]
# Bytes per element relative to f16: q8_0 stores 32 values in 34 bytes, q4_0 in 18 bytes.
KV_FACTORS: dict[str, float] = {"f16": 1.0, "q8_0": 34 / 64, "q4_0": 18 / 64}
CONTEXT_STEPS = (65536, 98304, 131072, 196608, 262144, 393216, 524288, 786432, 1048576)
# Minimum contexts below 64K a way out may offer: Claude Code's first request alone is ~12K
# tokens, so below 32K a session is spent compacting.
SMALLER_CONTEXTS = (49152, 32768)


@dataclass(frozen=True)
class Gpu:
    vendor: Vendor
    vram_bytes: int
    name: str = ""


@dataclass(frozen=True)
class Hardware:
    """What sizing needs to know about a host (from facts, or from `localcode plan` flags)."""

    ram_bytes: int
    gpus: tuple[Gpu, ...] = ()
    apple_silicon: bool = False
    wired_limit_bytes: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One catalog entry, reduced to what sizing uses."""

    tag: str
    rank: int
    weights_bytes: int
    kv_bytes_per_token_f16: int
    kv_fixed_bytes: int
    max_context: int
    min_ollama: str
    capabilities: tuple[str, ...] = ("completion", "tools")
    active_params_b: float = 0.0


@dataclass(frozen=True)
class Policy:
    """Sizing knobs, built by HostConfig.policy() from the host's validated config: their
    defaults live in HostConfig alone, so none here can drift from group_data."""

    min_context: int
    kv_cache_types: tuple[KvType, ...]
    gpu_reserve_bytes: int
    metal_reserve_bytes: int
    compute_buffer_bytes: int
    os_reserve_bytes: int
    num_parallel: int
    allow_cpu: bool
    # On the slow tiers (CPU, GPU+CPU split) speed follows the parameters read per token:
    # only models with at most this many active parameters (MoE, small) are considered there.
    slow_max_active_params_b: float


@dataclass(frozen=True)
class Override:
    model: str | None = None
    num_ctx: int | None = None
    kv_cache_type: KvType | None = None


@dataclass(frozen=True)
class Budget:
    bytes: int
    tier: str
    slow: bool


@dataclass(frozen=True)
class Decision:
    model: str | None
    name: str | None
    num_ctx: int | None
    kv_cache_type: str | None
    budget_bytes: int
    need_bytes: int | None
    tier: str
    reason: str
    slow: bool = False
    min_ollama: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def headroom_bytes(self) -> int | None:
        return None if self.need_bytes is None else self.budget_bytes - self.need_bytes

    @property
    def flash_attention(self) -> bool:
        """A quantized KV cache only works with flash attention forced on."""
        return self.kv_cache_type not in (None, "f16")

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model, "name": self.name, "num_ctx": self.num_ctx,
            "kv_cache_type": self.kv_cache_type, "flash_attention": self.flash_attention,
            "budget_bytes": self.budget_bytes, "need_bytes": self.need_bytes,
            "headroom_bytes": self.headroom_bytes, "tier": self.tier, "slow": self.slow,
            "min_ollama": self.min_ollama, "reason": self.reason, "warnings": list(self.warnings),
        }


def gib(n: int | float) -> str:
    return f"{n / GiB:.1f} GiB"


def metal_working_set(ram_bytes: int, wired_limit_bytes: int | None) -> int:
    """What Metal lets the GPU wire: the iogpu limit when set, else Apple's default
    recommendedMaxWorkingSetSize, 2/3 of RAM below 36 GiB and 3/4 from 36 GiB. Logged by
    others (not measured here): 16 GB 10922.67 MB
    (https://github.com/abetlen/llama-cpp-python/issues/687), 32 GB 21845.34 MB
    (https://github.com/ollama/ollama/issues/434), 36 GB 28991.03 MB = 27 GiB (public llama.cpp
    logs of 36 GB M4 Max machines), 64 GB 49152 MiB
    (https://github.com/ggml-org/llama.cpp/issues/1870), 96 GB 73728 MB
    (https://github.com/ggml-org/llama.cpp/issues/3213). macOS 26 gives a 128 GB Mac 107.52 GiB
    (0.84, https://github.com/antirez/ds4/pull/893); 3/4 stays as the conservative floor."""
    if wired_limit_bytes:
        return wired_limit_bytes
    return ram_bytes * 2 // 3 if ram_bytes < 36 * GiB else ram_bytes * 3 // 4


def budgets(hw: Hardware, policy: Policy) -> list[Budget]:
    """The budgets to try in order: fast (all in GPU memory) first, then the slow fallback."""
    cpu_bytes = max(0, hw.ram_bytes - policy.os_reserve_bytes)
    if hw.apple_silicon:
        working_set = metal_working_set(hw.ram_bytes, hw.wired_limit_bytes)
        how = "iogpu.wired_limit_mb" if hw.wired_limit_bytes else "Metal working set"
        return [Budget(max(0, working_set - policy.metal_reserve_bytes),
                       f"Apple Silicon, {gib(hw.ram_bytes)} unified ({how})", False)]
    if hw.gpus:
        usable = sum(max(0, g.vram_bytes - policy.gpu_reserve_bytes) for g in hw.gpus)
        usable -= (len(hw.gpus) - 1) * policy.compute_buffer_bytes
        names = _describe_gpus(hw.gpus)
        tiers = [Budget(max(0, usable), f"GPU: {names}", False)]
        if policy.allow_cpu:
            tiers.append(Budget(max(0, usable) + cpu_bytes, f"GPU+CPU split: {names} + RAM (slow)", True))
        return tiers
    if not policy.allow_cpu:
        return [Budget(0, "CPU only (not allowed by policy)", True)]
    return [Budget(cpu_bytes, f"CPU only, {gib(hw.ram_bytes)} RAM (slow)", True)]


def _describe_gpus(gpus: tuple[Gpu, ...]) -> str:
    counts: dict[tuple[str, int], int] = {}
    for g in gpus:
        key = (g.vendor.upper() if g.vendor == "amd" else "NVIDIA", round(g.vram_bytes / GiB))
        counts[key] = counts.get(key, 0) + 1
    return " + ".join(f"{n}x {vendor} {size} GiB" if n > 1 else f"{vendor} {size} GiB"
                      for (vendor, size), n in counts.items())


def need_bytes(model: ModelSpec, num_ctx: int, kv_type: str, policy: Policy) -> int:
    kv = int(model.kv_bytes_per_token_f16 * KV_FACTORS[kv_type] * num_ctx)
    return model.weights_bytes + (kv + model.kv_fixed_bytes) * policy.num_parallel + policy.compute_buffer_bytes


def context_steps(model: ModelSpec, policy: Policy) -> list[int]:
    """Context sizes to try for a model, largest first: min_context, the steps above it and the
    trained maximum."""
    steps = {s for s in CONTEXT_STEPS if policy.min_context <= s <= model.max_context}
    if model.max_context >= policy.min_context:
        steps |= {policy.min_context, model.max_context}
    return sorted(steps, reverse=True)


def best_fit(model: ModelSpec, budget: int, policy: Policy,
             kv_types: tuple[str, ...] | None = None) -> tuple[int, str, int] | None:
    """Largest (num_ctx, kv type, need) of the model within budget; at equal context the
    earlier KV type in the policy's order (f16 first) wins."""
    for ctx in context_steps(model, policy):
        for kv in kv_types or policy.kv_cache_types:
            need = need_bytes(model, ctx, kv, policy)
            if need <= budget:
                return ctx, kv, need
    return None


def derived_name(tag: str, num_ctx: int) -> str:
    """Our derived model's name: in our own namespace, never `claude-*` (Claude Code ignores
    CLAUDE_CODE_MAX_CONTEXT_TOKENS for such names)."""
    model, _, variant = tag.partition(":")
    suffix = f"{num_ctx // 1024}k"
    return f"localcode/{model}:{suffix if variant in ('', 'latest') else f'{variant}-{suffix}'}"


def decide(hw: Hardware, models: list[ModelSpec], policy: Policy,
           override: Override = Override()) -> Decision:
    """Size one host. Models must be the agent-capable catalog in preference order."""
    if override.model or override.num_ctx or override.kv_cache_type:
        return _decide_override(hw, models, policy, override)
    ranked = _ranked(models)
    fit = _first_fit(hw, ranked, policy)
    if fit is not None:
        return fit
    last = budgets(hw, policy)[-1]
    return Decision(None, None, None, None, last.bytes, None, last.tier, _nothing_fits(hw, ranked, policy, last),
                    last.slow)


def _ranked(models: list[ModelSpec]) -> list[ModelSpec]:
    return [m for m in sorted(models, key=lambda m: m.rank) if "tools" in m.capabilities]


def _first_fit(hw: Hardware, ranked: list[ModelSpec], policy: Policy) -> Decision | None:
    """The best-ranked model that fits at min_context, at its largest context; fast tiers first."""
    for tier in budgets(hw, policy):
        candidates = _tier_candidates(ranked, tier, policy)
        for model in candidates:
            fit = best_fit(model, tier.bytes, policy)
            if fit is None:
                continue
            ctx, kv, need = fit
            skipped = [m.tag for m in candidates if m.rank < model.rank]
            why = (f"{model.tag} is the best-ranked model that fits"
                   + (f" among models with <= {policy.slow_max_active_params_b:g}B active parameters" if tier.slow else "")
                   + (f" ({', '.join(skipped)} need more than {gib(tier.bytes)} at {policy.min_context // 1024}K)" if skipped else "")
                   + f"; {ctx // 1024}K context with {kv} KV cache needs {gib(need)}")
            return Decision(model.tag, derived_name(model.tag, ctx), ctx, kv, tier.bytes, need, tier.tier,
                            why, tier.slow, model.min_ollama)
    return None


def _tier_candidates(ranked: list[ModelSpec], tier: Budget, policy: Policy) -> list[ModelSpec]:
    if not tier.slow:
        return ranked
    return [m for m in ranked if m.active_params_b <= policy.slow_max_active_params_b]


def _least_need(models: list[ModelSpec], policy: Policy) -> tuple[ModelSpec, str, int] | None:
    """The model and KV type that need the least memory at min_context, and that need."""
    options = [(m, kv, need_bytes(m, policy.min_context, kv, policy)) for m in models for kv in policy.kv_cache_types]
    return min(options, key=lambda o: o[2], default=None)


def _nothing_fits(hw: Hardware, ranked: list[ModelSpec], policy: Policy, last: Budget) -> str:
    if not ranked:
        return "no model fits: the catalog has no tools-capable model"
    least = _least_need(_tier_candidates(ranked, last, policy), policy)
    if least is None:
        reason = (f"no model fits: none has <= {policy.slow_max_active_params_b:g}B active parameters, "
                  f"which a slow tier needs (slow_max_active_params_b)")
    else:
        model, kv, need = least
        reason = (f"no model fits: the smallest, {model.tag}, needs {gib(need)} at {policy.min_context // 1024}K "
                  f"context ({kv} KV), budget is {gib(last.bytes)}")
    ways = [w.text for w in way_out(hw, ranked, policy)]
    if ways:
        reason += f"; cheapest way out: {ways[0]}" + "".join(f"; or {w}" for w in ways[1:])
    return reason


@dataclass(frozen=True)
class WayOut:
    """A change after which a model fits: what to tell the operator, and the host and policy as
    they would be (so that the advice can be checked by sizing them)."""

    text: str
    hw: Hardware
    policy: Policy


def way_out(hw: Hardware, models: list[ModelSpec], policy: Policy) -> list[WayOut]:
    """When nothing fits: the changes that would make a model fit, cheapest first. Settings come
    before hardware: the Apple GPU memory limit (up to RAM less the OS reserve), a smaller
    minimum context (more compaction), a CPU split (slow); then more RAM, then more VRAM or
    unified memory. Figures are rounded up, so that following one is enough."""
    ranked = _ranked(models)
    ways = _raise_apple_limit(hw, ranked, policy) if hw.apple_silicon else []
    contexts = sorted({c for c in CONTEXT_STEPS + SMALLER_CONTEXTS if c < policy.min_context}, reverse=True)
    smaller = [way for ctx in contexts
               for way in _way(f"a smaller context (min_context {ctx} would fit {{model}})", hw, ranked,
                               replace(policy, min_context=ctx))]
    ways += smaller[:1]
    if not policy.allow_cpu:
        ways += _way("a CPU split (allow_cpu would run {model}, slowly)", hw, ranked, replace(policy, allow_cpu=True))
    return ways + _more_memory(hw, ranked, policy)


def _way(text: str, hw: Hardware, ranked: list[ModelSpec], policy: Policy) -> list[WayOut]:
    """The change as a way out if a model fits after it ({model} in the text names which)."""
    fit = _first_fit(hw, ranked, policy)
    return [] if fit is None else [WayOut(text.format(model=fit.model), hw, policy)]


def _raise_apple_limit(hw: Hardware, ranked: list[ModelSpec], policy: Policy) -> list[WayOut]:
    least = _least_need(ranked, policy)
    if least is None:
        return []
    limit = math.ceil((least[2] + policy.metal_reserve_bytes) / GiB) * GiB
    if limit > hw.ram_bytes - policy.os_reserve_bytes:
        return []
    size = limit // GiB
    return _way(f"raise the Apple GPU memory limit to {size} GiB (apple_gpu_memory = {size}) for {{model}}",
                replace(hw, wired_limit_bytes=limit), ranked, policy)


def _more_memory(hw: Hardware, ranked: list[ModelSpec], policy: Policy) -> list[WayOut]:
    """The least memory to add for the smallest model: RAM for a CPU or split run (when the
    policy allows one), VRAM for a run all in GPU memory, unified memory for a Mac (at macOS's
    default GPU limit)."""
    least = _least_need(ranked, policy)
    if least is None:
        return []
    if hw.apple_silicon:
        want = least[2] + policy.metal_reserve_bytes  # working set needed: 2/3 of RAM, 3/4 from 36 GiB
        ram = -(-3 * want // 2)
        if ram >= 36 * GiB:
            ram = max(36 * GiB, -(-4 * want // 3))
        extra = _round_up(ram - hw.ram_bytes)
        bigger = replace(hw, ram_bytes=hw.ram_bytes + extra, wired_limit_bytes=None)
        return _way(f"{gib(extra)} more unified memory for {{model}}", bigger, ranked, policy)
    ways: list[WayOut] = []
    last = budgets(hw, policy)[-1]
    least_slow = _least_need(_tier_candidates(ranked, last, policy), policy)
    if policy.allow_cpu and least_slow is not None:
        gpu_part = last.bytes - max(0, hw.ram_bytes - policy.os_reserve_bytes)
        extra = _round_up(least_slow[2] - gpu_part + policy.os_reserve_bytes - hw.ram_bytes)
        ways += _way(f"{gib(extra)} more RAM for {{model}} (slow)", replace(hw, ram_bytes=hw.ram_bytes + extra),
                     ranked, policy)
    if hw.gpus:
        usable = (sum(max(0, g.vram_bytes - policy.gpu_reserve_bytes) for g in hw.gpus)
                  - (len(hw.gpus) - 1) * policy.compute_buffer_bytes)
        each = _round_up(-(-(least[2] - usable) // len(hw.gpus)))
        more = tuple(replace(g, vram_bytes=g.vram_bytes + each) for g in hw.gpus)
        ways += _way(f"{gib(each)} more VRAM{' per GPU' if len(hw.gpus) > 1 else ''} for {{model}}",
                     replace(hw, gpus=more), ranked, policy)
    return ways


def _round_up(n: int) -> int:
    """n bytes rounded up to the 0.1 GiB that `gib` prints."""
    return -(-n * 10 // GiB) * GiB // 10


def _decide_override(hw: Hardware, models: list[ModelSpec], policy: Policy, override: Override) -> Decision:
    """Honour an operator's choice, sized as far as it leaves us free, and say when it overruns."""
    by_tag = {m.tag: m for m in models}
    auto = decide(hw, models, policy) if override.model is None else None
    tag = override.model or (auto.model if auto else None)
    if tag is None or tag not in by_tag:
        raise ValueError(f"unknown model {tag!r}: not in the catalog")
    model = by_tag[tag]
    tiers = budgets(hw, policy)
    kv_types = (override.kv_cache_type,) if override.kv_cache_type else policy.kv_cache_types
    warnings: list[str] = []
    chosen = None
    for tier in tiers:
        if override.num_ctx:
            kv = next((k for k in kv_types if need_bytes(model, override.num_ctx, k, policy) <= tier.bytes), kv_types[-1])
            need = need_bytes(model, override.num_ctx, kv, policy)
            if need <= tier.bytes:
                chosen = (tier, override.num_ctx, kv, need)
                break
        else:
            fit = best_fit(model, tier.bytes, policy, kv_types)
            if fit:
                chosen = (tier, *fit)
                break
    if chosen is None:
        tier = tiers[-1]
        ctx = override.num_ctx or policy.min_context
        kv = kv_types[-1]
        need = need_bytes(model, ctx, kv, policy)
        warnings.append(f"override exceeds the memory budget: needs {gib(need)}, budget {gib(tier.bytes)} "
                        f"(expect CPU offload or out-of-memory failures)")
        chosen = (tier, ctx, kv, need)
    tier, ctx, kv, need = chosen
    if tier.slow and not tiers[0].slow:
        warnings.append(f"override does not fit in GPU memory ({gib(tiers[0].bytes)}): layers will be "
                        f"split onto the CPU (slow)")
    if ctx < policy.min_context:
        warnings.append(f"num_ctx {ctx} is below {policy.min_context}: Claude Code's first request "
                        f"alone is ~12K tokens and long sessions will be truncated")
    if ctx > model.max_context:
        warnings.append(f"num_ctx {ctx} exceeds {model.tag}'s trained context {model.max_context}: Ollama caps it")
    parts = [f"{k}={v}" for k, v in (("model", override.model), ("num_ctx", override.num_ctx),
                                     ("kv_cache_type", override.kv_cache_type)) if v]
    reason = f"override ({', '.join(parts)}): {tag} at {ctx // 1024}K context with {kv} KV cache needs {gib(need)}"
    return Decision(tag, derived_name(tag, ctx), ctx, kv, tier.bytes, need, tier.tier, reason,
                    tier.slow, model.min_ollama, tuple(warnings))
