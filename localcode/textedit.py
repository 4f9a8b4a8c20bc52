"""Edits of files we share with their owner (pure functions): a managed block in a shell rc
file, and keys we own in a JSON document. Everything else stays byte-identical, and when our
part already matches nothing changes at all."""

from __future__ import annotations

import json
import re
from typing import Any

BEGIN = "# >>> localcode >>>"
END = "# <<< localcode <<<"
MARKDOWN = ("<!-- >>> localcode >>> -->", "<!-- <<< localcode <<< -->")


def apply_block(text: str, body: str, markers: tuple[str, str] = (BEGIN, END)) -> str:
    """Put `body` between our markers: replace an existing block in place, else append one."""
    begin, end = markers
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    pattern = re.compile(rf"^{re.escape(begin)}\n.*?^{re.escape(end)}\n?", re.S | re.M)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + ("\n" if text else "") + block


class JsonEditError(ValueError):
    """The document is not JSON we can edit (the message says where)."""


def set_json(text: str, path: tuple[str, ...], values: dict[str, Any]) -> str:
    """Set `values` as members of the object at `path` (objects along the path are created when
    missing). Only the spans of those members' values change; other keys, their order, spacing
    and indentation stay byte-identical, and equal values change nothing."""
    if not text.strip():
        text = "{}\n"
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise JsonEditError(f"not valid JSON ({exc}); refusing to rewrite it") from None
    if not isinstance(document, dict):
        raise JsonEditError("the top level is not a JSON object")
    for depth in range(len(path)):
        start, end = _object_span(text, path[:depth])
        if path[depth] not in _members(text, start, end):
            nested: Any = dict(values)
            for key in reversed(path[depth + 1:]):
                nested = {key: nested}
            return _insert(text, start, end, path[depth], nested)
    for key, value in values.items():
        start, end = _object_span(text, path)
        members = _members(text, start, end)
        if key not in members:
            text = _insert(text, start, end, key, value)
            continue
        _, v_start, v_end = members[key]
        if json.loads(text[v_start:v_end]) != value:
            indent = _member_indent(text, start, members)
            unit = _unit(text, start, indent) if indent is not None else "  "
            text = text[:v_start] + _dump(value, indent, unit) + text[v_end:]
    return text


def seed_json(text: str, path: tuple[str, ...], values: dict[str, Any]) -> str:
    """Like set_json, but only for members that are absent: state the program itself keeps
    afterwards (a theme the developer changed, a version it recorded) is never reset."""
    current = json.loads(text) if text.strip() else {}
    for key in path:
        current = current.get(key) if isinstance(current, dict) else None
    present = set(current) if isinstance(current, dict) else set()
    missing = {k: v for k, v in values.items() if k not in present}
    return set_json(text, path, missing) if missing else text


def _object_span(text: str, path: tuple[str, ...]) -> tuple[int, int]:
    """(index of '{', index of its matching '}') of the object at path."""
    start = _skip_ws(text, 0)
    end = _value_end(text, start) - 1
    for depth, key in enumerate(path):
        _, v_start, v_end = _members(text, start, end)[key]
        if text[v_start] != "{":
            raise JsonEditError(f"{'.'.join(path[:depth + 1])} is not an object; refusing to replace it")
        start, end = v_start, v_end - 1
    return start, end


def _members(text: str, start: int, end: int) -> dict[str, tuple[int, int, int]]:
    """Member name -> (key start, value start, value end) in the object text[start..end]."""
    members: dict[str, tuple[int, int, int]] = {}
    i = _skip_ws(text, start + 1)
    while i < end:
        key_end = _string_end(text, i)
        key = json.loads(text[i:key_end])
        v_start = _skip_ws(text, _skip_ws(text, key_end) + 1)  # past ':'
        v_end = _value_end(text, v_start)
        members[key] = (i, v_start, v_end)
        i = _skip_ws(text, v_end)
        if text[i] == ",":
            i = _skip_ws(text, i + 1)
    return members


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _string_end(text: str, i: int) -> int:
    i += 1
    while text[i] != '"':
        i += 2 if text[i] == "\\" else 1
    return i + 1


def _value_end(text: str, i: int) -> int:
    if text[i] == '"':
        return _string_end(text, i)
    if text[i] in "{[":
        depth = 0
        while True:
            if text[i] == '"':
                i = _string_end(text, i)
                continue
            if text[i] in "{[":
                depth += 1
            elif text[i] in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
    return re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null").match(text, i).end()


def _line_indent(text: str, pos: int) -> str:
    line_start = text.rfind("\n", 0, pos) + 1
    return re.match(r"[ \t]*", text[line_start:]).group(0)


def _member_indent(text: str, start: int, members: dict[str, tuple[int, int, int]]) -> str | None:
    """How the object's members are indented: None when they share the object's line."""
    first_key = min(m[0] for m in members.values()) if members else None
    if first_key is None or "\n" not in text[start:first_key]:
        return None
    return _line_indent(text, first_key)


def _dump(value: Any, indent: str | None, unit: str = "  ") -> str:
    """A value in the document's style: multi-line objects indented one step deeper."""
    if indent is None or not isinstance(value, (dict, list)) or not value:
        return json.dumps(value)
    return json.dumps(value, indent=unit).replace("\n", "\n" + indent)


def _unit(text: str, start: int, indent: str) -> str:
    """One indentation step: a member's indent beyond its object's own line."""
    return indent[len(_line_indent(text, start)):] or "  "


def _insert(text: str, start: int, end: int, key: str, value: Any) -> str:
    members = _members(text, start, end)
    member = f"{json.dumps(key)}: "
    if members:
        indent = _member_indent(text, start, members)
        last_end = max(m[2] for m in members.values())
        if indent is None:
            return text[:last_end] + f", {member}{json.dumps(value)}" + text[last_end:]
        return text[:last_end] + f",\n{indent}{member}{_dump(value, indent, _unit(text, start, indent))}" + text[last_end:]
    outer = _line_indent(text, start)
    inner = outer + "  "
    return text[:start + 1] + f"\n{inner}{member}{_dump(value, inner)}\n{outer}" + text[end:]
