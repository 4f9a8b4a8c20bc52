"""Rendering of templates/ (the files we put on hosts)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .shell import fish_quote, sh_quote

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
_ENV = Environment(loader=FileSystemLoader(str(TEMPLATES)), keep_trailing_newline=True, undefined=StrictUndefined,
                   autoescape=False)
_ENV.filters.update(sh=sh_quote, fish=fish_quote)  # quoting for the shell templates


def render(name: str, **context) -> bytes:
    return _ENV.get_template(name).render(**context).encode()
