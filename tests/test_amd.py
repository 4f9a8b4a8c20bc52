"""AMD GPUs that Ollama's ROCm build does not list: the gfx target decoded from the kernel's and
rocm-smi's numbers, the table (localcode/amd_gfx.yaml), the per-card rule, the plan (sizing only
the cards Ollama will use, saying why) and the server environment the deploy writes from it."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from localcode.amd import (GfxTable, gfx_from_hsa, gfx_from_kfd, gfx_from_rocm_smi, gfx_table, judge,
                           plan_amd)
from localcode.facts import HostHardware
from localcode.ollama.common import server_environment
from localcode.plan import plan_host, plan_lines, table
from localcode.settings import validate_host_data
from localcode.sizing import GiB, Gpu, Hardware

from .plan_harness import M, accounts, linux_base, no_ollama, plan_deploy

PIN = "0.30.0"


def amd(*cards: tuple[str, int]) -> tuple[Gpu, ...]:
    """AMD cards (rocm-smi's names card0, card1, ...) of these GiB."""
    return tuple(Gpu("amd", gib * GiB, f"card{i}") for i, (_, gib) in enumerate(cards))


def targets(*cards: tuple[str, int]) -> dict[str, str]:
    return {f"card{i}": gfx for i, (gfx, _) in enumerate(cards) if gfx}


# --- decoding ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "gfx"), [
    (110003, "gfx1103"), (100301, "gfx1031"), (100302, "gfx1032"), (100304, "gfx1034"), (90012, "gfx90c"),
    (90010, "gfx90a"), (90402, "gfx942"), (110501, "gfx1151"), (120001, "gfx1201"), (100100, "gfx1010"),
    (0, None), (100316, None), (101600, None), (50000, None), (2000000, None)])
def test_kfd_value_decodes_as_ollama_does(value, gfx):
    """Major in decimal, minor and stepping in hex (discover/amd.go gfxTargetFromKFDVersion)."""
    assert gfx_from_kfd(value) == gfx


@pytest.mark.parametrize(("printed", "gfx"), [
    ("gfx1032", "gfx1032"), ("gfx90a", "gfx90a"), ("gfx942", "gfx942"), ("gfx1151", "gfx1151"),
    # the lossy decimal form of rocm-smi before its fix: minor 0 prints as major*1000 + stepping
    ("gfx9010", "gfx90a"), ("gfx9012", "gfx90c"), ("gfx9006", "gfx906"), ("gfx11000", "gfx1100"),
    ("gfx11003", "gfx1103"), ("gfx12001", "gfx1201"), ("gfx8003", "gfx803"),
    # minor != 0 prints the same in both forms
    ("gfx1010", "gfx1010"), ("gfx1036", "gfx1036"),
    ("gfx99999", None), ("gfx5", None), ("GFX1032", None), ("gfx10 32", None), ("", None)])
def test_rocm_smi_gfx_version_both_forms(printed, gfx):
    assert gfx_from_rocm_smi(printed) == gfx


@pytest.mark.parametrize(("value", "gfx"), [
    ("10.3.0", "gfx1030"), ("11.0.0", "gfx1100"), ("9.0.10", "gfx90a"), ("12.0.1", "gfx1201"),
    ("10.3.16", None), ("10.3", None), ("x.y.z", None), ("99.0.0", None)])
def test_override_values_name_targets(value, gfx):
    """As Ollama's rocmGFXTargetOverride reads HSA_OVERRIDE_GFX_VERSION."""
    assert gfx_from_hsa(value) == gfx


# --- the table -----------------------------------------------------------------------------------

def test_every_row_has_its_source():
    t = gfx_table()
    rows = [*t.native, *t.overrides.values(), *t.no_gpu.values(), t.integrated]
    assert all(re.search(r"https://\S+", row.source) for row in rows)


def test_native_targets_by_version():
    t = gfx_table()
    assert {"gfx1030", "gfx1100", "gfx1151"} <= t.native_at("0.14.3")
    assert "gfx1150" not in t.native_at("0.14.3") and "gfx1150" in t.native_at(PIN)
    assert "gfx1010" in t.native_at(PIN) and "gfx1010" not in t.native_at("0.31.2")
    assert "gfx1103" not in t.native_at(PIN)  # built, but not in the rocBLAS it ships
    assert t.native_at("0.5.0") == t.native_at("0.12.4")  # below the first row: the first row


def test_the_table_refuses_contradictions():
    raw = gfx_table().model_dump()
    with pytest.raises(ValidationError, match="more than one"):
        GfxTable.model_validate({**raw, "no_gpu": {**raw["no_gpu"], "gfx1030": {"why": "x", "source": "https://x.y/z"}}})
    bad_override = {**raw["overrides"], "gfx1032": {"hsa": "9.0.0", "source": "https://x.y/z"}}
    with pytest.raises(ValidationError, match="no target of the newest build"):
        GfxTable.model_validate({**raw, "overrides": bad_override})
    with pytest.raises(ValidationError, match="ascending"):
        GfxTable.model_validate({**raw, "native": list(reversed(raw["native"]))})


# --- one card --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("gfx", "version", "kind", "override"), [
    ("gfx1100", PIN, "native", None),
    ("gfx1151", "0.14.3", "native", None),
    ("gfx1031", PIN, "override", "10.3.0"),
    ("gfx1032", PIN, "override", "10.3.0"),
    ("gfx1034", PIN, "override", "10.3.0"),
    ("gfx1035", PIN, "override", "10.3.0"),
    ("gfx1103", PIN, "override", "11.0.0"),
    ("gfx90c", PIN, "unusable", None),
    ("gfx1036", PIN, "unusable", None),
    ("gfx803", PIN, "unusable", None),
    ("gfx906", PIN, "unusable", None),
    ("gfx1010", PIN, "native", None),
    ("gfx1010", "0.31.2", "unusable", None),
    ("gfx1150", "0.14.3", "unusable", None),
    ("gfx1152", PIN, "unusable", None),
    (None, PIN, "unknown", None),
])
def test_rule(gfx, version, kind, override):
    verdict = judge(gfx, version)
    assert (verdict.kind, verdict.override) == (kind, override), verdict.why
    assert verdict.usable == (kind != "unusable")


def test_reasons_name_the_target_and_the_version():
    assert judge("gfx1010", "0.31.2").why == ("gfx1010 is not in Ollama 0.31.2's ROCm build "
                                              "(the build has it from 0.12.4 until 0.31.2)")
    assert judge("gfx1152", PIN).why.endswith("has no known override")
    assert "gfx900" in judge("gfx90c", PIN).why
    assert judge("gfx1103", PIN).caveat and "WMMA" in judge("gfx1103", PIN).caveat


def test_the_hosts_own_override_wins_over_the_table():
    assert judge("gfx90c", PIN, own_override="10.3.0").kind == "native"  # the operator's call
    assert judge("gfx1032", PIN, own_override="11.0.0").override is None  # theirs, not the table's
    refused = judge("gfx1100", PIN, own_override="9.0.0")
    assert refused.kind == "unusable" and "gfx900" in refused.why


# --- a host's cards ------------------------------------------------------------------------------------

def test_an_overridable_card_counts_and_the_server_gets_the_override():
    plan = plan_amd(amd(("gfx1032", 8)), targets(("gfx1032", 8)), PIN)
    assert plan.gpus == amd(("gfx1032", 8))
    assert plan.environment == {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}
    assert plan.notes and "HSA_OVERRIDE_GFX_VERSION=10.3.0" in plan.notes[0] and not plan.warnings


def test_an_unusable_card_is_left_out_with_a_warning_naming_it():
    plan = plan_amd(amd(("gfx90c", 2)), targets(("gfx90c", 2)), PIN)
    assert plan.gpus == () and plan.environment == {}
    (warning,) = plan.warnings
    assert warning.startswith("AMD card0 (gfx90c, 2 GiB) is not used:") and "sized as if it were absent" in warning
    assert "Vulkan" in warning  # Vulkan is on by default from 0.30.0
    assert "Vulkan" not in plan_amd(amd(("gfx90c", 2)), targets(("gfx90c", 2)), "0.21.0").warnings[0]


def test_native_cards_need_nothing():
    plan = plan_amd(amd(("gfx1100", 24), ("gfx1101", 16)), targets(("gfx1100", 24), ("gfx1101", 16)), PIN)
    assert len(plan.gpus) == 2 and plan.environment == {} and not plan.warnings and not plan.notes


def test_one_override_for_every_card_so_no_override_beside_a_native_card():
    cards = (("gfx1100", 24), ("gfx1032", 8))
    plan = plan_amd(amd(*cards), targets(*cards), PIN)
    assert [g.name for g in plan.gpus] == ["card0"] and plan.environment == {}
    assert "card1" in plan.warnings[0] and "card0 included" in plan.warnings[0]


def test_two_override_values_the_larger_budget_wins():
    cards = (("gfx1032", 8), ("gfx1103", 4), ("gfx1031", 12))
    plan = plan_amd(amd(*cards), targets(*cards), PIN)
    assert [g.name for g in plan.gpus] == ["card0", "card2"]
    assert plan.environment["HSA_OVERRIDE_GFX_VERSION"] == "10.3.0"
    assert any("card1" in w and "need 10.3.0" in w for w in plan.warnings)


def test_an_integrated_card_gets_ollama_igpu_enable_from_0_30():
    plan = plan_amd(amd(("gfx1103", 8)), targets(("gfx1103", 8)), PIN)
    assert plan.environment == {"HSA_OVERRIDE_GFX_VERSION": "11.0.0", "OLLAMA_IGPU_ENABLE": "1"}
    assert any("WMMA" in w for w in plan.warnings)  # the caveat, as a warning
    assert "OLLAMA_IGPU_ENABLE" not in plan_amd(amd(("gfx1103", 8)), targets(("gfx1103", 8)), "0.21.0").environment


def test_amd_gpu_off_leaves_every_card_out_and_hides_them_from_ollama():
    plan = plan_amd(amd(("gfx1100", 24)), targets(("gfx1100", 24)), PIN, enabled=False)
    assert plan.gpus == () and plan.environment == {"ROCR_VISIBLE_DEVICES": "-1", "OLLAMA_VULKAN": "0"}


def test_an_unknown_target_counts_as_before_and_a_read_host_says_so():
    assert plan_amd(amd(("", 16)), {}, PIN, read=False) == plan_amd(amd(("", 16)), {}, PIN, read=False)
    assert plan_amd(amd(("", 16)), {}, PIN, read=False).warnings == ()
    plan = plan_amd(amd(("", 16)), {}, PIN)
    assert plan.gpus == amd(("", 16)) and "could not be read" in plan.warnings[0]


def test_a_card_judged_otherwise_on_the_floor_is_warned_about():
    plan = plan_amd(amd(("gfx1150", 16)), targets(("gfx1150", 16)), PIN, floor="0.14.3")
    assert plan.gpus and "on 0.14.3" in plan.warnings[0] and "from 0.18.0" in plan.warnings[0]
    assert not plan_amd(amd(("gfx1100", 16)), targets(("gfx1100", 16)), PIN, floor="0.14.3").warnings


# --- the plan and the server environment ------------------------------------------------------------

def on_gpu(plan) -> bool:
    return plan.decision.tier.startswith("GPU:")


def on_cpu(plan) -> bool:
    return plan.decision.tier.startswith("CPU only")


def linux_amd(ram_gib: int, *cards: tuple[str, int]) -> HostHardware:
    return HostHardware("Linux", "x86_64", ram_gib * GiB, amd(*cards), login="root", gfx_targets=targets(*cards))


def test_plan_sizes_an_overridden_card_and_carries_the_environment():
    config = validate_host_data("ws", {})
    plan = plan_host("ws", config, linux_amd(32, ("gfx1032", 8)))
    assert on_gpu(plan) and plan.gpu_environment == {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}
    assert plan.as_dict()["gpu_environment"] == {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}
    assert any(line.startswith("note: AMD card0 (gfx1032, 8 GiB)") for line in plan_lines(plan))
    assert server_environment(config, plan.decision, plan.gpu_environment)["HSA_OVERRIDE_GFX_VERSION"] == "10.3.0"


def test_plan_sizes_a_host_with_an_unusable_card_as_cpu_only():
    config = validate_host_data("apu", {})
    with_card = plan_host("apu", config, linux_amd(24, ("gfx90c", 2)))
    without = plan_host("apu", config, HostHardware("Linux", "x86_64", 24 * GiB, login="root"))
    assert with_card.decision == without.decision and on_cpu(with_card)
    assert with_card.hardware == "24 GiB RAM, amd 2 GiB"  # what the host has; the warning says why
    assert "apu: warning: AMD card0 (gfx90c, 2 GiB) is not used" in table([with_card])
    assert "HSA_OVERRIDE_GFX_VERSION" not in server_environment(config, with_card.decision, with_card.gpu_environment)


def test_the_hosts_ollama_environment_wins():
    config = validate_host_data("ws", {"ollama_environment": {"HSA_OVERRIDE_GFX_VERSION": "10.3.1"}})
    plan = plan_host("ws", config, linux_amd(32, ("gfx1032", 8)))
    # 10.3.1 names gfx1031, which the build lacks: the card is left out, and the server gets theirs
    assert on_cpu(plan) and "10.3.1" in plan.warnings[0]
    assert server_environment(config, plan.decision, plan.gpu_environment)["HSA_OVERRIDE_GFX_VERSION"] == "10.3.1"
    config = validate_host_data("ws", {"ollama_environment": {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}})
    plan = plan_host("ws", config, linux_amd(32, ("gfx90c", 8)))
    assert on_gpu(plan) and plan.gpu_environment == {"OLLAMA_IGPU_ENABLE": "1"}


def test_amd_gpu_off_in_the_plan():
    config = validate_host_data("ws", {"amd_gpu": "off"})
    plan = plan_host("ws", config, linux_amd(32, ("gfx1100", 16)))
    assert on_cpu(plan) and plan.gpu_environment["ROCR_VISIBLE_DEVICES"] == "-1"


def test_what_if_machines_are_counted_as_before():
    from localcode.plan import plan_hardware
    plan = plan_hardware("what-if", validate_host_data("w", {}), Hardware(32 * GiB, (Gpu("amd", 16 * GiB),)))
    assert on_gpu(plan) and not plan.warnings and plan.gpu_environment == {}


def rocm_host(card_gfx: str, gib: int = 8) -> dict:
    """A Linux host with one AMD card whose kernel reports its target (KFD topology)."""
    kfd = {"gfx1032": "100302", "gfx90c": "90012"}[card_gfx]
    hardware = [f"{M}uname", "Linux", "x86_64", f"{M}login", "root", f"{M}meminfo", f"MemTotal: {32 * 1024 * 1024} kB",
                f"{M}amd", f'{{"card0": {{"VRAM Total Memory (B)": "{gib * GiB}"}}}}', f"{M}amd-rc", "0",
                f"{M}kfd", "node 0 gfx_target_version 0", f"node 1 gfx_target_version {kfd}", "end"]
    return {"developer_users": ["dev"], "fake_responses": {
        **linux_base(), "uname -s; uname -m": hardware + accounts(("dev", 1000, "/home/dev", "/bin/bash")),
        "/api/tags": no_ollama()}}


def dropin(ops) -> str:
    (op,) = [op for op in ops if op.name == "Ollama server environment"]
    return "\n".join([*op.commands, *op.uploads.values()])


def test_the_deploy_writes_the_override_into_the_drop_in(monkeypatch):
    planned = plan_deploy([("@fake/radeon", rocm_host("gfx1032")), ("@fake/renoir", rocm_host("gfx90c", 2))],
                          monkeypatch)
    assert 'Environment="HSA_OVERRIDE_GFX_VERSION=10.3.0"' in dropin(planned["@fake/radeon"])
    assert "HSA_OVERRIDE_GFX_VERSION" not in dropin(planned["@fake/renoir"])


def test_the_lab_gives_a_gfx_target_to_amd_cards_only():
    from lab.spec import Gpu as LabGpu

    assert LabGpu(vendor="amd", gib=8, gfx="gfx1032").gfx == "gfx1032"
    for bad in ({"vendor": "nvidia", "gib": 8, "gfx": "gfx1032"}, {"vendor": "amd", "gib": 8, "gfx": "1032; rm"}):
        with pytest.raises(ValidationError):
            LabGpu(**bad)
