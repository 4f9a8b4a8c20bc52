"""Just enough of Go's text/template parser to answer what Ollama asks of a model's template.

* vars(): template.Vars (ollama/template/template.go) — the lower-cased identifiers used; the
  `tools` capability is "tools" in vars, `insert` is "suffix".
* infer_thinking_tags(): thinking.InferTags (ollama/thinking/template.go) — inside a
  `range` over .Messages, the list around a `.Thinking` field starts and ends with text (the tags).

It does not execute templates: the stand-in never renders prompts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class TemplateError(ValueError):
    pass


@dataclass
class Text:
    text: str


@dataclass
class Action:
    fields: list[list[str]]  # FieldNode idents, e.g. [["Thinking"]]
    variables: list[list[str]]  # VariableNode idents, e.g. [["$", "Tools"]]


@dataclass
class Branch:
    kind: str  # if | range | with | define | block | template
    pipe: Action
    body: list = field(default_factory=list)
    else_body: list | None = None


_IDENT_RE = re.compile(
    r"(?P<var>\$[A-Za-z0-9_]*)(?P<vchain>(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(?<![A-Za-z0-9_)\]])(?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)"
)


def _strip_strings(s: str) -> str:
    out, i, n = [], 0, len(s)
    while i < n:
        c = s[i]
        if c == '"':
            j = i + 1
            while j < n and s[j] != '"':
                j += 2 if s[j] == "\\" else 1
            out.append('""')
            i = j + 1
        elif c == "`":
            j = s.find("`", i + 1)
            out.append('""')
            i = (j + 1) if j >= 0 else n
        elif c == "'":
            j = i + 1
            while j < n and s[j] != "'":
                j += 2 if s[j] == "\\" else 1
            out.append("0")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _parse_pipe(src: str) -> Action:
    s = _strip_strings(src)
    # declarations ($x := ..., $i, $e := ...) are not part of the commands
    m = re.match(r"\s*(\$[A-Za-z0-9_]*\s*(,\s*\$[A-Za-z0-9_]*\s*)?)(:=|=)(?!=)", s)
    if m:
        s = s[m.end():]
    fields, variables = [], []
    for mm in _IDENT_RE.finditer(s):
        if mm.group("var") is not None:
            chain = [x for x in mm.group("vchain").split(".") if x]
            variables.append([mm.group("var")] + chain)
        else:
            fields.append([x for x in mm.group("field").split(".") if x])
    return Action(fields=fields, variables=variables)


def _lex(src: str):
    """Yield ('text', s) and ('action', s) items, applying {{- / -}} trimming like text/template."""
    items = []
    pos = 0
    n = len(src)
    trim_next = False
    while pos < n:
        start = src.find("{{", pos)
        if start < 0:
            text = src[pos:]
            if trim_next:
                text = text.lstrip(" \t\r\n")
            if text:
                items.append(("text", text))
            break
        text = src[pos:start]
        if trim_next:
            text = text.lstrip(" \t\r\n")
            trim_next = False
        left_trim = src.startswith("{{- ", start) or src.startswith("{{-\t", start) or \
            src.startswith("{{-\n", start) or src.startswith("{{-\r", start)
        if left_trim:
            text = text.rstrip(" \t\r\n")
        if text:
            items.append(("text", text))
        i = start + 2 + (2 if left_trim else 0)
        # comment: {{/* … */}} or {{- /* … */ -}}
        if src.startswith("/*", i):
            end = src.find("*/", i + 2)
            if end < 0:
                raise TemplateError("unclosed comment")
            after = end + 2
            if src.startswith(" -}}", after):
                pos, trim_next = after + 4, True
            elif src.startswith("}}", after):
                pos = after + 2
            else:
                raise TemplateError("comment ends before closing delimiter")
            continue
        # find the closing delimiter outside string literals
        k = i
        while k < n:
            c = src[k]
            if c == '"':
                k += 1
                while k < n and src[k] != '"':
                    k += 2 if src[k] == "\\" else 1
                k += 1
                continue
            if c == "`":
                e = src.find("`", k + 1)
                if e < 0:
                    raise TemplateError("unterminated raw quoted string")
                k = e + 1
                continue
            if c == "'":
                k += 1
                while k < n and src[k] != "'":
                    k += 2 if src[k] == "\\" else 1
                k += 1
                continue
            if src.startswith("}}", k):
                break
            k += 1
        if k >= n:
            raise TemplateError("unclosed action")
        body = src[i:k]
        right_trim = len(body) >= 2 and body.endswith("-") and body[-2] in " \t\r\n"
        if right_trim:
            body = body[:-1]
        items.append(("action", body.strip()))
        pos = k + 2
        trim_next = right_trim
    return items


def parse(src: str) -> list:
    """Parse into a tree of Text / Action / Branch nodes (TemplateError on unbalanced blocks)."""
    root: list = []
    stack: list[tuple[list, Branch | None]] = [(root, None)]

    def current() -> list:
        return stack[-1][0]

    for kind, val in _lex(src):
        if kind == "text":
            current().append(Text(val))
            continue
        word = val.split(None, 1)
        kw = word[0] if word else ""
        rest = word[1] if len(word) > 1 else ""
        if kw in ("if", "range", "with", "define", "block"):
            b = Branch(kind=kw, pipe=_parse_pipe(rest if kw not in ("define",) else ""))
            current().append(b)
            stack.append((b.body, b))
        elif kw == "else":
            if len(stack) < 2:
                raise TemplateError("unexpected {{else}}")
            _, br = stack.pop()
            br.else_body = []
            sub = rest.split(None, 1)
            if sub and sub[0] in ("if", "with"):
                # {{else if x}} ≡ {{else}}{{if x}} … with one shared {{end}}
                inner = Branch(kind=sub[0], pipe=_parse_pipe(sub[1] if len(sub) > 1 else ""))
                br.else_body.append(inner)
                stack.append((br.else_body, _ElseChain(br)))
                stack.append((inner.body, inner))
            else:
                stack.append((br.else_body, br))
        elif kw == "end":
            if len(stack) < 2:
                raise TemplateError("unexpected {{end}}")
            stack.pop()
            while len(stack) > 1 and isinstance(stack[-1][1], _ElseChain):
                stack.pop()
        elif kw == "template":
            current().append(Branch(kind="template", pipe=_parse_pipe(rest)))
        else:
            current().append(_parse_pipe(val))
    if len(stack) != 1:
        raise TemplateError("unexpected EOF")
    return root


class _ElseChain(Branch):
    def __init__(self, parent: Branch):
        super().__init__(kind="elsechain", pipe=Action([], []))
        self.parent = parent


def vars_of(src: str) -> list[str]:
    """template.Vars: sorted lower-cased identifiers of fields and variables."""
    names: set[str] = set()

    def visit(nodes):
        for nd in nodes:
            if isinstance(nd, Action):
                for f in nd.fields:
                    names.update(x.lower() for x in f)
                for v in nd.variables:
                    names.update(x.lower() for x in v)
            elif isinstance(nd, Branch):
                visit([nd.pipe])
                visit(nd.body)
                if nd.else_body:
                    visit(nd.else_body)

    visit(parse(src))
    return sorted(names)


def infer_thinking_tags(src: str) -> tuple[str, str]:
    """thinking.InferTags: (opening, closing) tags around .Thinking inside range .Messages."""
    opening, closing = "", ""
    tree = parse(src)

    def range_uses_messages(b: Branch) -> bool:
        return any(f and f[0] == "Messages" for f in b.pipe.fields)

    def on_thinking(ancestors):
        nonlocal opening, closing
        rng = next((a for a in reversed(ancestors) if isinstance(a, Branch) and a.kind == "range"), None)
        if rng is None or not range_uses_messages(rng):
            return
        lst = next((a for a in reversed(ancestors) if isinstance(a, list)), None)
        if not lst:
            return
        if isinstance(lst[0], Text):
            opening = lst[0].text.strip()
        if isinstance(lst[-1], Text):
            closing = lst[-1].text.strip()

    def visit_list(lst, ancestors):
        anc = ancestors + [lst]
        for nd in lst:
            visit_node(nd, anc)

    def visit_node(nd, ancestors):
        if isinstance(nd, Action):
            for f in nd.fields:
                if f and f[0] == "Thinking":
                    on_thinking(ancestors)
        elif isinstance(nd, Branch):
            anc = ancestors + [nd]
            visit_node(nd.pipe, anc)
            visit_list(nd.body, anc)
            if nd.else_body is not None:
                visit_list(nd.else_body, anc)

    visit_list(tree, [])
    return opening, closing
