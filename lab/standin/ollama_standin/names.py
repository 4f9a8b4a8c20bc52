"""Model names as ollama/types/model/name.go parses them.

`qwen3-coder:30b` → registry.ollama.ai/library/qwen3-coder:30b; `user/model` → tag latest;
`host/ns/model:tag` keeps its host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MISSING = "!MISSING!"


def _is_alnum_us(c: str) -> bool:
    return ("A" <= c <= "Z") or ("a" <= c <= "z") or ("0" <= c <= "9") or c == "_"


def _valid_part(kind: str, s: str) -> bool:
    if kind == "host":
        if not (1 <= len(s) <= 350):
            return False
    elif not (1 <= len(s) <= 80):
        return False
    for i, c in enumerate(s):
        if i == 0:
            if not _is_alnum_us(c):
                return False
            continue
        if c in "_-":
            continue
        if c == ".":
            if kind == "namespace":
                return False
            continue
        if c == ":":
            if kind not in ("host", "digest"):
                return False
            continue
        if not _is_alnum_us(c):
            return False
    return True


def _cut_promised(s: str, sep: str) -> tuple[str, str, bool]:
    i = s.rfind(sep)
    if i < 0:
        return s, "", False
    before, after = s[:i], s[i + len(sep) :]
    return before or MISSING, after or MISSING, True


@dataclass(frozen=True)
class Name:
    host: str = ""
    namespace: str = ""
    model: str = ""
    tag: str = ""
    scheme: str = "https"

    @classmethod
    def parse(cls, s: str) -> "Name":
        bare = cls.parse_bare(s)
        return replace(
            bare,
            host=bare.host or DEFAULT_HOST,
            namespace=bare.namespace or DEFAULT_NAMESPACE,
            tag=bare.tag or DEFAULT_TAG,
        )

    @classmethod
    def parse_bare(cls, s: str) -> "Name":
        tag = ""
        if s.rfind(":") > s.rfind("/"):
            s, tag, _ = _cut_promised(s, ":")
        s, model, promised = _cut_promised(s, "/")
        if not promised:
            return cls(model=s, tag=tag)
        s, namespace, promised = _cut_promised(s, "/")
        if not promised:
            return cls(namespace=s, model=model, tag=tag)
        scheme, sep, h = s.partition("://")
        if not sep:
            h, scheme = scheme, "https"
        return cls(host=h, namespace=namespace, model=model, tag=tag, scheme=scheme or "https")

    @classmethod
    def from_filepath(cls, rel: str) -> "Name":
        parts = rel.split(os.sep)
        if len(parts) != 4:
            return cls()
        n = cls(host=parts[0], namespace=parts[1], model=parts[2], tag=parts[3])
        return n if n.is_valid() else cls()

    def is_valid(self) -> bool:
        return (
            _valid_part("host", self.host)
            and _valid_part("namespace", self.namespace)
            and _valid_part("model", self.model)
            and _valid_part("tag", self.tag)
        )

    def filepath(self) -> str:
        return os.path.join(self.host, self.namespace, self.model, self.tag)

    def __str__(self) -> str:  # Name.String()
        out = ""
        if self.host:
            out += self.host + "/"
        if self.namespace:
            out += self.namespace + "/"
        out += self.model
        if self.tag:
            out += ":" + self.tag
        return out

    def display_shortest(self) -> str:
        out = ""
        if self.host.lower() != DEFAULT_HOST:
            out += f"{self.host}/{self.namespace}/"
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            out += f"{self.namespace}/"
        return out + f"{self.model}:{self.tag}"

    def repository(self) -> str:
        """The registry repository: namespace/model (e.g. library/gpt-oss)."""
        return f"{self.namespace}/{self.model}"

    def key(self) -> tuple[str, str, str, str]:
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())
