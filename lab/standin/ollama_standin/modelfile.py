"""Modelfile parsing and printing, following ollama/parser/parser.go's state machine.

FROM / PARAMETER / TEMPLATE / SYSTEM / LICENSE / ADAPTER / MESSAGE / RENDERER / PARSER / REQUIRES;
values may be "quoted" or \"\"\"triple quoted\"\"\" (spanning lines); # starts a comment line.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from .goformat import go_fmt_float


class ParserError(ValueError):
    pass


ERR_INVALID_COMMAND = ('command must be one of "from", "license", "template", "system", "adapter", '
                       '"renderer", "parser", "parameter", "message", or "requires"')
ERR_INVALID_ROLE = 'message role must be one of "system", "user", or "assistant"'
ERR_MISSING_FROM = "no FROM line"
ERR_UNEXPECTED_EOF = "unexpected EOF"

DEPRECATED_PARAMETERS = ["penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock",
                         "mirostat", "mirostat_tau", "mirostat_eta"]

# api.Options / api.Runner fields → kind
OPTION_KINDS = {
    "num_ctx": "int", "num_batch": "int", "num_gpu": "int", "main_gpu": "int", "use_mmap": "boolptr",
    "num_thread": "int", "num_keep": "int", "seed": "int", "num_predict": "int", "top_k": "int",
    "top_p": "float", "min_p": "float", "typical_p": "float", "repeat_last_n": "int", "temperature": "float",
    "repeat_penalty": "float", "presence_penalty": "float", "frequency_penalty": "float", "stop": "slice",
}


@dataclass
class Command:
    name: str
    args: str

    def __str__(self) -> str:
        if self.name == "model":
            return f"FROM {self.args}"
        if self.name in ("license", "template", "system", "adapter", "renderer", "parser", "requires"):
            return f"{self.name.upper()} {quote(self.args)}"
        if self.name == "message":
            role, _, msg = self.args.partition(": ")
            return f"MESSAGE {role} {quote(msg)}"
        return f"PARAMETER {self.name} {quote(self.args)}"


def quote(s: str) -> str:
    if "\n" in s or s.startswith(" ") or s.endswith(" "):
        if '"' in s:
            return '"""' + s + '"""'
        return '"' + s + '"'
    return s


def unquote(s: str) -> tuple[str, bool]:
    if s.startswith('"""'):
        if len(s) >= 6 and s.endswith('"""'):
            return s[3:-3], True
        return "", False
    if s.startswith('"'):
        if len(s) >= 2 and s.endswith('"'):
            return s[1:-1], True
        return "", False
    return s, True


def modelfile_string(cmds: list[tuple[str, str]]) -> str:
    return "".join(str(Command(n, a)) + "\n" for n, a in cmds)


_NIL, _NAME, _VALUE, _PARAM, _MESSAGE, _COMMENT = range(6)


def _is_alpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _is_num(c: str) -> bool:
    return "0" <= c <= "9"


def _is_space(c: str) -> bool:
    return c in " \t"


def _is_nl(c: str) -> bool:
    return c in "\r\n"


def _valid_command(s: str) -> bool:
    return s.lower() in ("from", "license", "template", "system", "adapter", "renderer", "parser", "parameter",
                         "message", "requires")


def _next_state(r: str, cs: int) -> tuple[int, str]:
    """parseRuneForState → (next state, rune to keep ('' for none)); raises on bad input."""
    if cs == _NIL:
        if r == "#":
            return _COMMENT, ""
        if _is_space(r) or _is_nl(r):
            return _NIL, ""
        return _NAME, r
    if cs == _NAME:
        if _is_alpha(r):
            return _NAME, r
        if _is_space(r):
            return _VALUE, ""
        raise ParserError(ERR_INVALID_COMMAND)
    if cs == _VALUE:
        if _is_nl(r) or _is_space(r):
            return _NIL, r
        return _VALUE, r
    if cs == _PARAM:
        if _is_alpha(r) or _is_num(r) or r == "_":
            return _PARAM, r
        if _is_space(r):
            return _VALUE, ""
        raise EOFError(ERR_UNEXPECTED_EOF)
    if cs == _MESSAGE:
        if _is_alpha(r):
            return _MESSAGE, r
        if _is_space(r):
            return _VALUE, ""
        raise EOFError(ERR_UNEXPECTED_EOF)
    if cs == _COMMENT:
        if _is_nl(r):
            return _NIL, ""
        return _COMMENT, ""
    raise ParserError("")


def parse(text: str) -> list[Command]:
    """ParseFile. Raises ParserError('(line N): …') / ParserError('no FROM line') / EOFError."""
    if text.startswith("\ufeff"):
        text = text[1:]
    cmds: list[Command] = []
    cmd_name = ""
    curr = _NIL
    line = 1
    buf: list[str] = []
    role = ""
    for r in text:
        if _is_nl(r):
            line += 1
        try:
            nxt, keep = _next_state(r, curr)
        except EOFError:
            raise ParserError(f"{ERR_UNEXPECTED_EOF}: {''.join(buf)}")
        except ParserError as e:
            raise ParserError(f"(line {line}): {e}")
        if nxt != curr:
            b = "".join(buf)
            if curr == _NAME:
                if not _valid_command(b):
                    raise ParserError(f"(line {line}): {ERR_INVALID_COMMAND}")
                s = b.lower()
                if s == "from":
                    cmd_name = "model"
                elif s == "parameter":
                    nxt = _PARAM
                elif s == "message":
                    nxt = _MESSAGE
                    cmd_name = s
                else:
                    cmd_name = s
            elif curr == _PARAM:
                cmd_name = b
            elif curr == _MESSAGE:
                if b not in ("system", "user", "assistant"):
                    raise ParserError(f"(line {line}): {ERR_INVALID_ROLE}")
                role = b
            elif curr == _VALUE:
                s, ok = unquote(b.strip())
                if not ok or _is_space(keep):
                    buf.append(keep)
                    continue
                if role:
                    s = role + ": " + s
                    role = ""
                cmds.append(Command(cmd_name, s))
            buf = []
            curr = nxt
        if keep and keep.isprintable():
            buf.append(keep)
    if curr in (_COMMENT, _NIL):
        pass
    elif curr == _VALUE:
        s, ok = unquote("".join(buf).strip())
        if not ok:
            raise ParserError(f"{ERR_UNEXPECTED_EOF}: {''.join(buf)}")
        if role:
            s = role + ": " + s
        cmds.append(Command(cmd_name, s))
    else:
        raise ParserError(f"{ERR_UNEXPECTED_EOF}: {''.join(buf)}")
    if not any(c.name == "model" for c in cmds):
        raise ParserError(ERR_MISSING_FROM)
    return cmds


def _go_parse_int(s: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", s):
        raise ValueError
    return int(s, 10)


def _go_parse_bool(s: str) -> bool:
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError


def format_params(name: str, value: str):
    """api.FormatParams for one parameter → (key, typed value)."""
    kind = OPTION_KINDS.get(name)
    if kind is None:
        raise ParserError(f"unknown parameter '{name}'")
    if kind == "float":
        try:
            return float(value)
        except ValueError:
            raise ParserError(f"invalid float value [{value}]")
    if kind == "int":
        try:
            return _go_parse_int(value)
        except ValueError:
            raise ParserError(f"invalid int value [{value}]")
    if kind == "boolptr":
        try:
            return _go_parse_bool(value)
        except ValueError:
            raise ParserError(f"invalid bool value [{value}]")
    if kind == "slice":
        return [value]
    return value


def expand_path(path: str, relative_dir: str) -> str:
    if os.path.isabs(path) or path.startswith("\\") or path.startswith("/"):
        return os.path.abspath(path)
    if path.startswith("~"):
        return os.path.abspath(os.path.expanduser(path))
    return os.path.abspath(os.path.join(relative_dir, path))


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(os.path.realpath(path), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def create_request(cmds: list[Command], relative_dir: str, warn=print) -> dict:
    """Modelfile.CreateRequest: the JSON body of POST /api/create (files still as local paths)."""
    req: dict = {}
    params: dict = {}
    licenses: list[str] = []
    messages: list[dict] = []
    for c in cmds:
        if c.name == "model":
            path = expand_path(c.args, relative_dir)
            if not os.path.exists(path):
                req["from"] = c.args
                continue
            if os.path.isdir(path):
                files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith((".gguf", ".bin")))
                if not files:
                    raise ParserError("no Modelfile or safetensors files found")
            else:
                files = [path]
            req.setdefault("files", {}).update({f: sha256_file(f) for f in files})
        elif c.name == "adapter":
            path = expand_path(c.args, relative_dir)
            req["adapters"] = {path: sha256_file(path)}
        elif c.name in ("template", "system", "renderer", "parser"):
            req[c.name] = c.args
        elif c.name == "requires":
            v = c.args[1:] if c.args.startswith("v") else c.args
            if not re.fullmatch(r"\d+(\.\d+){0,2}(-[0-9A-Za-z.-]+)?", v):
                raise ParserError("requires must be a valid semver (e.g. 0.14.0)")
            req["requires"] = v
        elif c.name == "license":
            licenses.append(c.args)
        elif c.name == "message":
            role, _, msg = c.args.partition(": ")
            messages.append({"role": role, "content": msg})
        else:
            if c.name in DEPRECATED_PARAMETERS:
                warn(f"warning: parameter {c.name} is deprecated")
                continue
            v = format_params(c.name, c.args)
            if isinstance(v, list) and isinstance(params.get(c.name), list):
                params[c.name] = params[c.name] + v
            else:
                params[c.name] = v
    if params:
        req["parameters"] = params
    if messages:
        req["messages"] = messages
    if licenses:
        req["license"] = licenses
    return req


def param_value_text(v) -> str:
    """%v of a parameter value for PARAMETER lines."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return go_fmt_float(float(v))
    return str(v)
