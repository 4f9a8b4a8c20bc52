"""Ollama version policy (pure): the effective floor, whether to install, upgrade or keep,
and the known-bug warnings. Never downgrades unless asked."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import Version

# Releases below these carry known problems for Claude Code (https://github.com/ollama/ollama/releases).
KNOWN_ISSUES = (
    ("0.17.1", "CVE-2026-7482 (unauthenticated heap read via /api/create) is fixed in 0.17.1"),
    ("0.19.0", "streaming tool-call fixes on /v1/messages (https://github.com/ollama/ollama/issues/14816) arrived in 0.18.0/0.19.0"),
)


@dataclass(frozen=True)
class VersionChoice:
    action: str               # "install" | "upgrade" | "keep"
    version: str | None       # the version the host ends with (None: keep what is there)
    floor: str
    reason: str
    warnings: tuple[str, ...] = ()


def effective_floor(min_version: str, model_min: str | None) -> str:
    """The floor is raised to what the chosen model needs (e.g. gemma4 needs 0.20.0)."""
    if model_min and Version(model_min) > Version(min_version):
        return model_min
    return min_version


def known_issue_warnings(version: str) -> tuple[str, ...]:
    return tuple(f"Ollama {version} is below {fixed}: {why}"
                 for fixed, why in KNOWN_ISSUES if Version(version) < Version(fixed))


def choose_version(installed: str | None, target: str, floor: str, upgrade: bool,
                 downgrade: bool = False) -> VersionChoice:
    """What to do with the host's Ollama binary.

    - none installed: install the pinned target;
    - below the floor: upgrade to the target;
    - at or above the floor: keep, unless `upgrade` asks for the target (never a downgrade
      unless `downgrade` is set too)."""
    if Version(target) < Version(floor):
        raise ValueError(f"ollama_version {target} is below the effective floor {floor}")
    if installed is None:
        return VersionChoice("install", target, floor, f"Ollama not installed: install {target}",
                           known_issue_warnings(target))
    have, want = Version(installed), Version(target)
    if have < Version(floor):
        return VersionChoice("upgrade", target, floor, f"Ollama {installed} is below the floor {floor}: upgrade to {target}",
                           known_issue_warnings(target))
    if upgrade and have != want and (have < want or downgrade):
        verb = "upgrade" if have < want else "downgrade"
        return VersionChoice("upgrade", target, floor, f"ollama_upgrade: {verb} {installed} to {target}",
                           known_issue_warnings(target))
    why = (f"Ollama {installed} meets the floor {floor}"
           + ("" if upgrade or have == want else f"; ollama_upgrade is off (target {target})")
           + (f"; not downgrading to {target}" if upgrade and have > want and not downgrade else ""))
    return VersionChoice("keep", installed, floor, why, known_issue_warnings(installed))
