"""Rendering of templates/ (the files we put on hosts)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
_ENV = Environment(loader=FileSystemLoader(str(TEMPLATES)), keep_trailing_newline=True, undefined=StrictUndefined,
                   autoescape=False)


def render(name: str, **context) -> bytes:
    return _ENV.get_template(name).render(**context).encode()
