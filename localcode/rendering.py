"""Rendering of the templates (templates/, shipped as the package `localcode.templates`)."""

from __future__ import annotations

from importlib.resources import files

from jinja2 import Environment, FunctionLoader, StrictUndefined, select_autoescape

from .shell import fish_quote, sh_quote


def _source(name: str) -> str:
    return files("localcode.templates").joinpath(name).read_text()


_ENV = Environment(loader=FunctionLoader(_source), keep_trailing_newline=True, undefined=StrictUndefined,
                   autoescape=select_autoescape(["html.j2"], default_for_string=False, default=False))
_ENV.filters.update(sh=sh_quote, fish=fish_quote)  # quoting for the shell templates


def render(name: str, **context) -> bytes:
    return _ENV.get_template(name).render(**context).encode()
