"""Sizing over reference machines (each decision is listed in the README) and its properties."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localcode.catalog import builtin_catalog
from localcode.settings import HostConfig
from localcode.apple import plan_limit
from localcode.sizing import (
    GiB, Decision, Gpu, Hardware, Override, budgets, context_steps, decide, derived_name, metal_working_set,
    need_bytes, way_out,
)

MODELS = [m.spec() for m in builtin_catalog().models]
POLICY = HostConfig().policy()  # the defaults a host without overrides gets
RANK = {m.tag: m.rank for m in MODELS}


def nvidia(*sizes: int) -> tuple[Gpu, ...]:
    return tuple(Gpu("nvidia", s * GiB) for s in sizes)


# name: (hardware, expected model, expected num_ctx, expected KV type; or None, None, None and the
# way out the reason must name). The README's table "Reference machines" lists the same decisions
# with their reasons.
def raised(ram_gib: int) -> Hardware:
    """An Apple Silicon Mac with `apple_gpu_memory = "auto"` (RAM minus the 4 GiB OS reserve)."""
    limit = plan_limit("auto", ram_gib * GiB, running_mb=0, daemon=False, os_reserve_bytes=4 * GiB)
    return Hardware(ram_gib * GiB, apple_silicon=True, wired_limit_bytes=limit.wired_limit_bytes)


REFERENCE = {
    "8 GiB CPU-only": (Hardware(8 * GiB), None, None, "2.5 GiB more RAM for qwen3.5:4b"),
    "16 GiB CPU-only": (Hardware(16 * GiB), "gemma4:e4b", 98304, "q8_0"),
    "8 GiB Apple": (Hardware(8 * GiB, apple_silicon=True), None, None, "2.4 GiB more unified memory for qwen3.5:4b"),
    "16 GiB Apple": (Hardware(16 * GiB, apple_silicon=True), "qwen3.5:9b", 98304, "q8_0"),
    "18 GiB Apple": (Hardware(18 * GiB, apple_silicon=True), "qwen3.5:9b", 131072, "q8_0"),
    "24 GiB Apple": (Hardware(24 * GiB, apple_silicon=True), "gemma4:e4b", 131072, "f16"),
    "32 GiB Apple": (Hardware(32 * GiB, apple_silicon=True), "gemma4:26b", 98304, "q8_0"),
    "36 GiB Apple": (Hardware(36 * GiB, apple_silicon=True), "devstral-small-2:24b", 98304, "q8_0"),
    "16 GiB Apple, raised limit": (raised(16), "qwen3.5:9b", 131072, "q8_0"),
    "18 GiB Apple, raised limit": (raised(18), "gemma4:e4b", 131072, "f16"),
    "24 GiB Apple, raised limit": (raised(24), "gpt-oss:20b", 131072, "f16"),
    "36 GiB Apple, raised limit": (raised(36), "devstral-small-2:24b", 131072, "q8_0"),
    "48 GiB Apple": (Hardware(48 * GiB, apple_silicon=True), "devstral-small-2:24b", 196608, "q8_0"),
    "64 GiB Apple": (Hardware(64 * GiB, apple_silicon=True), "devstral-small-2:24b", 262144, "q8_0"),
    "128 GiB Apple": (Hardware(128 * GiB, apple_silicon=True), "devstral-small-2:24b", 262144, "f16"),
    "8 GiB NVIDIA + 16 GiB RAM": (Hardware(16 * GiB, nvidia(8)), "qwen3.5:4b", 98304, "q8_0"),
    "12 GiB NVIDIA + 32 GiB RAM": (Hardware(32 * GiB, nvidia(12)), "qwen3.5:9b", 131072, "q8_0"),
    "16 GiB NVIDIA + 32 GiB RAM": (Hardware(32 * GiB, nvidia(16)), "gemma4:e4b", 131072, "f16"),
    "24 GiB NVIDIA + 64 GiB RAM": (Hardware(64 * GiB, nvidia(24)), "devstral-small-2:24b", 65536, "q8_0"),
    "2x24 GiB NVIDIA + 128 GiB RAM": (Hardware(128 * GiB, nvidia(24, 24)), "devstral-small-2:24b", 262144, "q8_0"),
    "80 GiB NVIDIA + 256 GiB RAM": (Hardware(256 * GiB, nvidia(80)), "devstral-small-2:24b", 262144, "f16"),
    "16 GiB AMD + 32 GiB RAM": (Hardware(32 * GiB, (Gpu("amd", 16 * GiB),)), "gemma4:e4b", 131072, "f16"),
}


@pytest.mark.parametrize("name", REFERENCE)
def test_reference_machines(name):
    hw, model, ctx, kv_or_way = REFERENCE[name]
    d = decide(hw, MODELS, POLICY)
    assert d.reason
    if model is None:
        assert (d.model, d.num_ctx, d.kv_cache_type) == (None, None, None), d.reason
        assert d.reason.startswith("no model fits") and f"cheapest way out: {kv_or_way}" in d.reason, d.reason
        assert d.need_bytes is None and d.name is None
    else:
        assert (d.model, d.num_ctx, d.kv_cache_type) == (model, ctx, kv_or_way), d.reason
        assert d.need_bytes <= d.budget_bytes
        assert d.name == derived_name(model, ctx)
        assert not d.name.startswith("claude-")
        assert d.flash_attention == (kv_or_way != "f16")


def test_every_common_machine_gets_a_model():
    """Macs from 16 GB, GPUs from 8 GiB and CPU-only hosts from 16 GiB get a model, at 64K or more."""
    machines = [Hardware(r * GiB, apple_silicon=True) for r in (16, 18, 24, 32, 36)]
    machines += [Hardware(16 * GiB, nvidia(v)) for v in (8, 10, 12)] + [Hardware(16 * GiB)]
    for hw in machines:
        d = decide(hw, MODELS, POLICY)
        assert d.model is not None and d.num_ctx >= 65536, (hw, d.reason)


def test_cpu_only_hosts_are_flagged_slow_and_only_get_few_active_parameters():
    d = decide(Hardware(64 * GiB), MODELS, POLICY)
    assert d.slow and "CPU only" in d.tier
    active = {m.tag: m.active_params_b for m in MODELS}
    assert active[d.model] <= POLICY.slow_max_active_params_b


def test_apple_working_set():
    assert metal_working_set(32 * GiB, None) == 32 * GiB * 2 // 3
    assert metal_working_set(36 * GiB, None) == 27 * GiB  # 28991.03 MB logged on 36 GB Macs
    assert metal_working_set(64 * GiB, None) == 64 * GiB * 3 // 4
    assert metal_working_set(64 * GiB, 56 * 1024 * GiB // 1024) == 56 * GiB
    raised = decide(Hardware(32 * GiB, apple_silicon=True, wired_limit_bytes=28 * GiB), MODELS, POLICY)
    default = decide(Hardware(32 * GiB, apple_silicon=True), MODELS, POLICY)
    assert RANK[raised.model] < RANK[default.model]
    assert "iogpu.wired_limit_mb" in raised.tier


def test_gpu_budget_subtracts_reserve_per_gpu_and_extra_compute_buffers():
    policy = POLICY
    one = budgets(Hardware(64 * GiB, nvidia(24)), policy)[0].bytes
    two = budgets(Hardware(64 * GiB, nvidia(24, 24)), policy)[0].bytes
    assert one == 24 * GiB - policy.gpu_reserve_bytes
    assert two == 2 * one - policy.compute_buffer_bytes


def test_need_formula():
    m = next(m for m in MODELS if m.tag == "gpt-oss:20b")
    p = replace(POLICY, num_parallel=2)
    assert need_bytes(m, 65536, "f16", p) == (
        m.weights_bytes + 2 * (m.kv_bytes_per_token_f16 * 65536 + m.kv_fixed_bytes) + p.compute_buffer_bytes)
    assert need_bytes(m, 65536, "q8_0", p) < need_bytes(m, 65536, "f16", p)


def test_f16_preferred_at_equal_context():
    d = decide(Hardware(256 * GiB, nvidia(80)), MODELS, POLICY)
    assert d.kv_cache_type == "f16"
    only_q8 = decide(Hardware(256 * GiB, nvidia(80)), MODELS, replace(POLICY, kv_cache_types=("q8_0",)))
    assert only_q8.kv_cache_type == "q8_0"


def test_override_within_budget_has_no_warning():
    d = decide(Hardware(128 * GiB, nvidia(24, 24)), MODELS, POLICY, override=Override(model="qwen3-coder:30b"))
    assert d.model == "qwen3-coder:30b" and not d.warnings and d.need_bytes <= d.budget_bytes
    assert d.reason.startswith("override (model=qwen3-coder:30b)")


def test_override_beyond_budget_warns_never_silently():
    hw = Hardware(16 * GiB, nvidia(12))
    d = decide(hw, MODELS, replace(POLICY, allow_cpu=False), Override(model="devstral-small-2:24b", num_ctx=262144))
    assert d.need_bytes > d.budget_bytes
    assert any("exceeds the memory budget" in w for w in d.warnings)
    split = decide(Hardware(64 * GiB, nvidia(24)), MODELS, POLICY, Override(model="qwen3-coder:30b", num_ctx=262144))
    assert any("split onto the CPU" in w for w in split.warnings)
    small = decide(Hardware(64 * GiB, nvidia(24)), MODELS, POLICY, override=Override(num_ctx=32768))
    assert any("below 65536" in w for w in small.warnings)


def test_override_kv_type_is_honoured():
    d = decide(Hardware(128 * GiB, nvidia(24, 24)), MODELS, POLICY, override=Override(kv_cache_type="f16"))
    assert d.kv_cache_type == "f16" and d.need_bytes <= d.budget_bytes


def test_unknown_override_model_is_an_error():
    with pytest.raises(ValueError, match="not in the catalog"):
        decide(Hardware(64 * GiB), MODELS, POLICY, override=Override(model="nope:1b"))


def test_way_out_names_the_apple_gpu_memory_limit_first():
    """A Mac whose default GPU limit is just short is told the limit that fits, before anything
    that costs context or money."""
    e4b = [m for m in MODELS if m.tag == "gemma4:e4b"]
    hw = Hardware(18 * GiB, apple_silicon=True)
    d = decide(hw, e4b, POLICY)
    assert d.model is None
    assert ("cheapest way out: raise the Apple GPU memory limit to 13 GiB (apple_gpu_memory = 13) for gemma4:e4b"
            in d.reason)
    raised = Hardware(18 * GiB, apple_silicon=True, wired_limit_bytes=13 * GiB)
    assert decide(raised, e4b, POLICY).model == "gemma4:e4b"
    # not past RAM less the OS reserve: an 8 GiB Mac is told to get more memory instead
    assert "apple_gpu_memory" not in decide(Hardware(8 * GiB, apple_silicon=True), MODELS, POLICY).reason


def test_way_out_names_a_smaller_context_and_allow_cpu():
    hw = Hardware(16 * GiB, nvidia(8))
    policy = replace(POLICY, allow_cpu=False, min_context=131072)
    d = decide(hw, MODELS, policy)
    assert d.model is None
    assert "cheapest way out: a smaller context (min_context 98304 would fit qwen3.5:4b)" in d.reason
    assert "; or a CPU split (allow_cpu would run gpt-oss:20b, slowly)" in d.reason
    assert decide(hw, MODELS, replace(policy, min_context=98304)).model == "qwen3.5:4b"


@pytest.mark.parametrize(("hw", "more"), [
    (Hardware(8 * GiB), lambda extra: Hardware(int((8 + extra) * GiB))),
    (Hardware(8 * GiB, apple_silicon=True), lambda extra: Hardware(int((8 + extra) * GiB), apple_silicon=True)),
    (Hardware(8 * GiB, nvidia(6)), lambda extra: Hardware(8 * GiB, (Gpu("nvidia", int((6 + extra) * GiB)),))),
])
def test_more_memory_is_the_least_that_fits(hw, more):
    """The figure named is enough, and 0.1 GiB less is not (for the memory the way out names)."""
    policy = replace(POLICY, allow_cpu=not hw.gpus)
    ways = [w for w in way_out(hw, MODELS, policy) if " more " in w.text]
    assert len(ways) == 1
    extra = float(ways[0].text.split(" GiB more ")[0])
    assert decide(more(extra), MODELS, policy).model is not None
    assert decide(more(extra - 0.1), MODELS, policy).model is None


def test_min_context_is_a_context_step():
    m = next(m for m in MODELS if m.tag == "qwen3.5:4b")
    assert context_steps(m, replace(POLICY, min_context=40000))[-1] == 40000


def test_derived_names():
    assert derived_name("qwen3-coder:30b", 131072) == "localcode/qwen3-coder:30b-128k"
    assert derived_name("glm-4.7-flash:latest", 202752) == "localcode/glm-4.7-flash:198k"


# --- properties ------------------------------------------------------------------------------

def outcome(d: Decision) -> tuple:
    """How good a decision is, in the order sizing promises: fits at all, fast before slow,
    better rank, larger context."""
    if d.model is None:
        return (0,)
    return (1, not d.slow, -RANK[d.model], d.num_ctx)


hardware = st.one_of(
    st.builds(lambda r: Hardware(r * GiB), st.integers(1, 512)),
    st.builds(lambda r, w: Hardware(r * GiB, apple_silicon=True, wired_limit_bytes=w),
              st.integers(8, 512), st.none()),
    st.builds(lambda r, v, n, vendor: Hardware(r * GiB, tuple(Gpu(vendor, v * GiB) for _ in range(n))),
              st.integers(8, 512), st.integers(4, 96), st.integers(1, 4), st.sampled_from(["nvidia", "amd"])),
)


@settings(max_examples=300, deadline=None)
@given(hardware)
def test_every_way_out_makes_a_model_fit(hw):
    """When nothing fits, the reason names at least one way out, and each one works."""
    d = decide(hw, MODELS, POLICY)
    if d.model is None:
        ways = way_out(hw, MODELS, POLICY)
        assert ways and f"cheapest way out: {ways[0].text}" in d.reason
        for way in ways:
            assert decide(way.hw, MODELS, way.policy).model is not None, way.text


@settings(max_examples=300, deadline=None)
@given(hardware)
def test_need_within_budget_and_context_at_least_64k(hw):
    d = decide(hw, MODELS, POLICY)
    if d.model is None:
        assert d.num_ctx is None and d.reason.startswith("no model fits")
    else:
        assert d.need_bytes <= d.budget_bytes
        assert d.num_ctx >= 65536


def grow(hw: Hardware, ram: int, vram: int) -> Hardware:
    return Hardware(hw.ram_bytes + ram * GiB, tuple(Gpu(g.vendor, g.vram_bytes + vram * GiB) for g in hw.gpus),
                    hw.apple_silicon, hw.wired_limit_bytes)


@settings(max_examples=300, deadline=None)
@given(hardware, st.integers(0, 256), st.integers(0, 64))
def test_monotone_in_memory(hw, more_ram, more_vram):
    before, after = decide(hw, MODELS, POLICY), decide(grow(hw, more_ram, more_vram), MODELS, POLICY)
    assert outcome(after) >= outcome(before), (before.reason, after.reason)


# AMD cards (localcode/amd.py): the sizing counts only the cards Ollama's ROCm build will use.
from localcode.amd import gfx_table, judge, plan_amd  # noqa: E402  (this section's own)

_TABLE = gfx_table()
AMD_TARGETS = st.one_of(st.none(), st.sampled_from(sorted(
    {t for row in _TABLE.native for t in row.targets} | set(_TABLE.overrides) | set(_TABLE.no_gpu)
    | {"gfx1013", "gfx1152", "gfx1200"})))
amd_host = st.builds(
    lambda ram, cards: (Hardware(ram * GiB, tuple(Gpu("amd", v * GiB, f"card{i}") for i, (v, _) in enumerate(cards))),
                        {f"card{i}": gfx for i, (_, gfx) in enumerate(cards) if gfx}),
    st.integers(8, 512), st.lists(st.tuples(st.integers(1, 96), AMD_TARGETS), min_size=1, max_size=4))
OLLAMA_VERSIONS = st.sampled_from(["0.14.3", "0.18.0", "0.30.0", "0.31.2"])


def planned(hw: Hardware, targets: dict[str, str], version: str) -> Hardware:
    """The hardware sizing sees: only the AMD cards the plan keeps (as plan.plan_hardware does)."""
    return replace(hw, gpus=plan_amd(hw.gpus, targets, version, policy=POLICY).gpus)


@settings(max_examples=300, deadline=None)
@given(amd_host, OLLAMA_VERSIONS)
def test_a_card_ollama_skips_never_adds_budget(host, version):
    """Whatever its target: a card the rule finds unusable changes nothing when taken away, and
    the planned hardware keeps need <= budget and num_ctx >= 64K."""
    hw, targets = host
    d = decide(planned(hw, targets, version), MODELS, POLICY)
    for gpu in hw.gpus:
        if not judge(targets.get(gpu.name), version).usable:
            without = replace(hw, gpus=tuple(g for g in hw.gpus if g != gpu))
            assert decide(planned(without, targets, version), MODELS, POLICY) == d, gpu
    if d.model is not None:
        assert d.need_bytes <= d.budget_bytes and d.num_ctx >= 65536


@settings(max_examples=300, deadline=None)
@given(amd_host, OLLAMA_VERSIONS, st.integers(0, 256), st.integers(0, 64))
def test_monotone_in_memory_with_amd_targets(host, version, more_ram, more_vram):
    hw, targets = host
    grown = Hardware(hw.ram_bytes + more_ram * GiB, tuple(replace(g, vram_bytes=g.vram_bytes + more_vram * GiB)
                                                          for g in hw.gpus))
    before = decide(planned(hw, targets, version), MODELS, POLICY)
    after = decide(planned(grown, targets, version), MODELS, POLICY)
    assert outcome(after) >= outcome(before), (before.reason, after.reason)
