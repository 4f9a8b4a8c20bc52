"""AMD GPUs and Ollama's ROCm build (pure): a card's gfx target decoded from what the host
reports, and per card whether Ollama uses it as it is, only with HSA_OVERRIDE_GFX_VERSION in the
server's environment, or not at all (localcode/amd_gfx.yaml, every row with its source). The
sizing counts only the cards Ollama will use; the server gets the override the plan decided."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from packaging.version import Version
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .catalog import VersionStr
from .sizing import GiB, Gpu, Policy

AMD_GFX_PATH = Path(__file__).with_name("amd_gfx.yaml")
# An LLVM target name as Ollama prints it: major in decimal, minor and stepping one hex digit each.
GFX_PATTERN = r"gfx[0-9]{1,2}[0-9a-f]{2}"
HSA_VERSION = re.compile(r"([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{1,2})")
MAJORS = range(6, 20)  # GCN 1 (gfx6xx) to RDNA 4 (gfx12xx) and some room: any other major is garbage
# Vulkan is on by default from this release (envconfig EnableVulkan(true)), so Ollama may reach
# a card its ROCm build skips: https://github.com/ollama/ollama/blob/v0.30.0/envconfig/config.go
VULKAN_DEFAULT = Version("0.30.0")


def gfx_from_kfd(value: int) -> str | None:
    """The kernel's gfx_target_version (major*10000 + minor*100 + stepping) as a target name,
    the way Ollama's gfxTargetFromKFDVersion writes it (discover/amd.go): 110003 -> gfx1103,
    100301 -> gfx1031, 90012 -> gfx90c. None for 0 (a CPU node) and for values no target has."""
    major, minor, stepping = value // 10000, value // 100 % 100, value % 100
    if value <= 0 or major not in MAJORS or minor > 0xF or stepping > 0xF:
        return None
    return f"gfx{major}{minor:x}{stepping:x}"


def gfx_from_hsa(value: str) -> str | None:
    """An HSA_OVERRIDE_GFX_VERSION value (x.y.z) as the target it names, as Ollama reads it
    (rocmGFXTargetOverride: each part at most 15): 10.3.0 -> gfx1030, 9.0.10 -> gfx90a."""
    match = HSA_VERSION.fullmatch(value.strip())
    if not match:
        return None
    major, minor, stepping = (int(part) for part in match.groups())
    if major not in MAJORS or minor > 0xF or stepping > 0xF:
        return None
    return f"gfx{major}{minor:x}{stepping:x}"


def gfx_from_rocm_smi(text: str) -> str | None:
    """rocm-smi's "GFX Version" as a target name. Newer rocm-smi prints the name itself
    (gfx1032, gfx90a); older ones rebuild it from the kernel's value with a lossy decimal formula,
    major*100 + minor*10 + stepping, or major*1000 + stepping when minor is 0
    (rsmi_get_gfx_target_version in https://github.com/ROCm/rocm_smi_lib/blob/a1295714f2f6eefa5c55bf5779d17d163ed0e3d0/src/rocm_smi_utils.cc;
    fixed in ROCm 6.3/6.4: https://github.com/ROCm/rocm_smi_lib/blob/develop/CHANGELOG.md): gfx90a
    comes out as gfx9010, gfx1100 as gfx11000, gfx1103 as gfx11003. Both forms are decoded; None
    where neither gives a plausible target (the plan then counts the card and says so)."""
    if not re.fullmatch(r"gfx[0-9a-f]{3,5}", text):
        return None
    digits = text[3:]
    major = digits[:-2]
    if major.isdigit() and int(major) in MAJORS and len(digits) <= 4:
        return text  # the name itself (read so, the lossy gfx9010 would have major 90)
    if digits.isdigit():  # the lossy form of a minor-0 target: major*1000 + stepping
        major_number, stepping = divmod(int(digits), 1000)
        if major_number in MAJORS and stepping <= 0xF:
            return f"gfx{major_number}0{stepping:x}"
    return None


# --- the table (localcode/amd_gfx.yaml) --------------------------------------------------------

Gfx = Annotated[str, Field(pattern=f"^{GFX_PATTERN}$")]
Source = Annotated[str, Field(min_length=10, max_length=600, pattern=r"^[ -~]*https://[ -~]*$")]
Text = Annotated[str, Field(min_length=1, max_length=400, pattern=r"^[ -~]*$")]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NativeRow(_Row):
    ollama: VersionStr
    targets: tuple[Gfx, ...] = Field(min_length=1)
    source: Source
    note: Text | None = None


class OverrideRow(_Row):
    hsa: Annotated[str, Field(pattern=r"^[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}$")]
    source: Source
    caveat: Text | None = None


class NoGpuRow(_Row):
    why: Text
    source: Source


class IntegratedRow(_Row):
    targets: tuple[Gfx, ...]
    from_ollama: VersionStr
    source: Source


class GfxTable(_Row):
    native: tuple[NativeRow, ...] = Field(min_length=1)
    overrides: dict[Gfx, OverrideRow]
    no_gpu: dict[Gfx, NoGpuRow]
    integrated: IntegratedRow

    @model_validator(mode="after")
    def _consistent(self) -> GfxTable:
        """Rows by ascending version; a target that is ever native needs no override and is no
        non-GPU; an override names a target that is native in the newest build."""
        versions = [Version(row.ollama) for row in self.native]
        if versions != sorted(set(versions)):
            raise ValueError("native rows must be in ascending Ollama version, each version once")
        ever = {t for row in self.native for t in row.targets}
        twice = sorted((set(self.overrides) & (set(self.no_gpu) | ever)) | (set(self.no_gpu) & ever))
        if twice:
            raise ValueError(f"targets in more than one of native, overrides and no_gpu: {twice}")
        for gfx, row in self.overrides.items():
            if gfx_from_hsa(row.hsa) not in self.native[-1].targets:
                raise ValueError(f"{gfx}: override {row.hsa} names no target of the newest build")
        return self

    def native_at(self, version: str) -> frozenset[str]:
        """The native targets of that Ollama version's Linux ROCm build."""
        rows = [row for row in self.native if Version(row.ollama) <= Version(version)] or [self.native[0]]
        return frozenset(rows[-1].targets)

    def native_range(self, gfx: str) -> str | None:
        """The Ollama versions whose build has the target, for messages ("from 0.12.4 until 0.31.2")."""
        rows = [i for i, row in enumerate(self.native) if gfx in row.targets]
        if not rows:
            return None
        first, last = self.native[rows[0]].ollama, rows[-1]
        return f"from {first}" + ("" if last == len(self.native) - 1 else f" until {self.native[last + 1].ollama}")


@cache
def gfx_table() -> GfxTable:
    return GfxTable.model_validate(yaml.safe_load(AMD_GFX_PATH.read_text()))


# --- per card ----------------------------------------------------------------------------------

Kind = Literal["native", "override", "unknown", "unusable"]


@dataclass(frozen=True)
class Verdict:
    """What Ollama does with one card: runs it as it is (native; unknown: the target could not
    be read, counted as before), with the override, or not at all (why)."""

    kind: Kind
    override: str | None = None  # the HSA_OVERRIDE_GFX_VERSION value this card needs
    why: str = ""
    caveat: str | None = None

    @property
    def usable(self) -> bool:
        return self.kind != "unusable"


def judge(gfx: str | None, version: str, own_override: str | None = None, table: GfxTable | None = None) -> Verdict:
    """One card on Ollama `version`. A host's own HSA_OVERRIDE_GFX_VERSION (ollama_environment)
    wins over the table: the card then runs as the target it names, if that version has it."""
    table = table or gfx_table()
    native = table.native_at(version)
    if own_override is not None:
        named = gfx_from_hsa(own_override)
        if named in native:
            return Verdict("native", why=f"runs as {named} (ollama_environment HSA_OVERRIDE_GFX_VERSION={own_override})")
        return Verdict("unusable", why=f"ollama_environment HSA_OVERRIDE_GFX_VERSION={own_override} "
                                       + (f"names {named}, which Ollama {version}'s ROCm build does not have" if named
                                          else "names no gfx target"))
    if gfx is None:
        return Verdict("unknown", why="its gfx target could not be read: counted as a GPU Ollama supports")
    if gfx in table.no_gpu:
        return Verdict("unusable", why=f"{gfx}: {table.no_gpu[gfx].why}")
    if gfx in native:
        return Verdict("native", why=f"{gfx} is in Ollama {version}'s ROCm build")
    row = table.overrides.get(gfx)
    if row is not None and gfx_from_hsa(row.hsa) in native:
        return Verdict("override", row.hsa, f"{gfx} is not in Ollama {version}'s ROCm build: runs as "
                                            f"{gfx_from_hsa(row.hsa)} with HSA_OVERRIDE_GFX_VERSION={row.hsa}",
                       row.caveat)
    ever = table.native_range(gfx)
    return Verdict("unusable", why=f"{gfx} is not in Ollama {version}'s ROCm build"
                                   + (f" (the build has it {ever})" if ever else " and has no known override"))


@dataclass(frozen=True)
class AmdPlan:
    """The AMD cards the sizing counts, what the server's environment gains for them, and what
    the plan says about the others."""

    gpus: tuple[Gpu, ...]
    environment: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def plan_amd(gpus: tuple[Gpu, ...], targets: dict[str, str], version: str, *, own_override: str | None = None,
             enabled: bool = True, read: bool = True, floor: str | None = None, policy: Policy | None = None,
             table: GfxTable | None = None) -> AmdPlan:
    """Decide every AMD card of a host (`targets`: card name -> gfx, as the host reported them;
    `read`: whether the host was asked at all, so a missing target is worth a warning).

    - enabled False (amd_gpu = "off"): no card counts; ROCm and Vulkan are told to leave them.
    - Ollama applies one HSA_OVERRIDE_GFX_VERSION to every AMD GPU: a card that needs an
      override counts only beside cards that need the same value and no native card (the
      value whose cards give the larger GPU budget wins, as sizing counts it with `policy`); the
      others are left out with the reason.
    - A card Ollama would not use is left out, with a warning naming it and its target.
    - `floor`: the oldest Ollama a host may keep; a card judged differently there is warned about."""
    table = table or gfx_table()
    amd = tuple(g for g in gpus if g.vendor == "amd")
    if not amd:
        return AmdPlan(())
    if not enabled:
        return AmdPlan((), {"ROCR_VISIBLE_DEVICES": "-1", "OLLAMA_VULKAN": "0"},
                       notes=(f'amd_gpu = "off": {_cards(amd)} left out of the sizing and hidden from Ollama '
                              "(ROCR_VISIBLE_DEVICES=-1, OLLAMA_VULKAN=0)",))
    verdicts = {g.name: judge(targets.get(g.name), version, own_override, table) for g in amd}
    needed: dict[str, list[Gpu]] = {}
    for g in amd:
        if verdicts[g.name].override:
            needed.setdefault(verdicts[g.name].override, []).append(g)
    natives = [g for g in amd if verdicts[g.name].kind in ("native", "unknown")]
    chosen = None if natives or not needed else max(needed, key=lambda v: (_budget(needed[v], policy), v))
    kept: list[Gpu] = []
    notes: list[str] = []
    warnings: list[str] = []
    for g in amd:
        v, gfx = verdicts[g.name], targets.get(g.name)
        label = f"AMD {g.name} ({gfx or 'gfx target unknown'}, {g.vram_bytes / GiB:.0f} GiB)"
        if v.override and v.override != chosen:
            why = (f"it needs HSA_OVERRIDE_GFX_VERSION={v.override}, which Ollama would apply to every AMD GPU, "
                   f"{natives[0].name} included, which runs without one" if natives else
                   f"it needs HSA_OVERRIDE_GFX_VERSION={v.override}, but Ollama applies one value to every AMD GPU "
                   f"and the cards that give more memory need {chosen}")
            v = Verdict("unusable", why=why)
        if not v.usable:
            warnings.append(f"{label} is not used: {v.why}; sized as if it were absent"
                            + (" (Ollama may still reach it through Vulkan; amd_gpu = \"off\" prevents that)"
                               if Version(version) >= VULKAN_DEFAULT else ""))
            continue
        kept.append(g)
        if v.kind == "override":
            notes.append(f"{label}: {v.why}")
        elif v.kind == "unknown" and read:
            warnings.append(f"{label}: {v.why}")
        if v.caveat:
            warnings.append(f"{label}: {v.caveat}")
        if floor is not None and Version(floor) < Version(version):
            old = judge(gfx, floor, own_override, table)
            if (old.usable, old.override) != (v.usable, v.override):
                warnings.append(f"{label}: a host that keeps an older Ollama (ollama_upgrade off) may run it "
                                f"differently; on {floor}: {old.why}")
    environment = {"HSA_OVERRIDE_GFX_VERSION": chosen} if chosen else {}
    integrated = [g for g in kept if targets.get(g.name) in table.integrated.targets]
    if integrated and Version(version) >= Version(table.integrated.from_ollama):
        environment["OLLAMA_IGPU_ENABLE"] = "1"
        notes.append(f"{_cards(integrated)} integrated: OLLAMA_IGPU_ENABLE=1 (Ollama "
                     f"{table.integrated.from_ollama} and later leave integrated GPUs out without it)")
    return AmdPlan(tuple(kept), environment, tuple(notes), tuple(warnings))


def _budget(gpus: list[Gpu], policy: Policy | None) -> int:
    """What a group of cards adds to the GPU budget, as sizing.budgets counts it (VRAM alone
    without a policy): more of it never loses to less."""
    if policy is None:
        return sum(g.vram_bytes for g in gpus)
    return (sum(max(0, g.vram_bytes - policy.gpu_reserve_bytes) for g in gpus)
            - (len(gpus) - 1) * policy.compute_buffer_bytes)


def _cards(gpus: list[Gpu] | tuple[Gpu, ...]) -> str:
    names = ", ".join(g.name for g in gpus)
    return f"AMD {names}" if len(gpus) == 1 else f"AMD GPUs {names}"
