"""The model catalog (localcode/catalog.yaml), validated, with operators' additions and
preference order from group_data applied."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Annotated

import yaml
from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from .sizing import ModelSpec

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
# Ollama model names: [namespace/]model[:tag]; no shell metacharacters, no path tricks.
MODEL_TAG_PATTERN = r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?:[A-Za-z0-9][A-Za-z0-9._-]*$"
CAPABILITIES = {"completion", "tools", "insert", "vision", "embedding", "thinking", "audio"}


def check_version(value: str) -> str:
    try:
        Version(value)
    except InvalidVersion as exc:
        raise ValueError(f"not a version number like 0.14.3: {value!r}") from exc
    if not re.fullmatch(r"\d+(\.\d+){1,3}", value):
        raise ValueError(f"expected a release version like 0.14.3, got {value!r}")
    return value


def check_model_tag(value: str) -> str:
    if len(value) > 120 or not re.fullmatch(MODEL_TAG_PATTERN, value):
        raise ValueError("expected an Ollama model name like qwen3-coder:30b or team/model:tag "
                         "(lowercase letters, digits, '.', '_', '-'; one ':' before the tag)")
    return value


VersionStr = Annotated[str, AfterValidator(check_version)]
ModelTag = Annotated[str, AfterValidator(check_model_tag)]


# Free text from inventory (extra_models) that ends up in logs and reports: one printable line.
PlainText = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")]


class CatalogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tag: ModelTag
    rank: int = Field(ge=1, le=1000)
    rank_basis: PlainText
    active_params_b: float = Field(gt=0, le=10000)
    download_bytes: int = Field(gt=0, le=2**50)
    weights_bytes: int = Field(gt=0, le=2**50)
    kv_bytes_per_token_f16: int = Field(gt=0, le=2**30)
    kv_fixed_bytes: int = Field(ge=0, le=2**50)
    max_context: int = Field(ge=65536, le=1048576)
    capabilities: tuple[str, ...]
    min_ollama: VersionStr
    sources: dict[Annotated[str, Field(max_length=40)], PlainText]
    digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")

    @field_validator("capabilities")
    @classmethod
    def _agent_capable(cls, caps: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(caps) - CAPABILITIES
        if unknown:
            raise ValueError(f"unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}")
        if "tools" not in caps:
            raise ValueError("only tools-capable models belong in the catalog (Claude Code needs tool calls)")
        return caps

    @field_validator("sources")
    @classmethod
    def _sourced(cls, sources: dict[str, str]) -> dict[str, str]:
        missing = {"size", "kv", "max_context", "capabilities", "min_ollama", "active_params_b"} - set(sources)
        if missing:
            raise ValueError(f"every number needs a source; missing: {sorted(missing)}")
        return sources

    def spec(self) -> ModelSpec:
        return ModelSpec(self.tag, self.rank, self.weights_bytes, self.kv_bytes_per_token_f16,
                         self.kv_fixed_bytes, self.max_context, self.min_ollama, self.capabilities,
                         self.active_params_b)


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    models: tuple[CatalogEntry, ...]

    def by_tag(self) -> dict[str, CatalogEntry]:
        return {m.tag: m for m in self.models}


@cache
def builtin_catalog() -> Catalog:
    return Catalog.model_validate(yaml.safe_load(CATALOG_PATH.read_text()))


def effective_catalog(extra_models: tuple[CatalogEntry, ...] = (), preferences: tuple[str, ...] = ()) -> Catalog:
    """The built-in catalog plus operators' models (which replace same-tag entries), re-ranked
    so that `preferences` come first in the given order and the rest keep their order."""
    merged = {m.tag: m for m in builtin_catalog().models}
    merged.update({m.tag: m for m in extra_models})
    unknown = [t for t in preferences if t not in merged]
    if unknown:
        raise ValueError(f"model_preferences names models not in the catalog: {unknown}; known: {sorted(merged)}")
    ordered = [merged[t] for t in preferences]
    ordered += sorted((m for m in merged.values() if m.tag not in preferences), key=lambda m: m.rank)
    return Catalog(models=tuple(m.model_copy(update={"rank": i}) for i, m in enumerate(ordered, 1)))
