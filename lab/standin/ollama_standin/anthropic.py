"""The Anthropic Messages API (POST /v1/messages), shaped like ollama/anthropic + middleware/anthropic.go.

The stand-in does not run a model. It answers deterministically:
* a `tool_use` block when tools are offered, the latest user text names one of them (whole word,
  text inside <system-reminder> blocks ignored) and the conversation holds no tool_result yet —
  once per conversation, since a server that always answers tool_use makes Claude Code loop;
* otherwise a short text naming the model: "Hello from <model> (ollama stand-in)".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

FILLER_WORD = "stand-in"


class BadRequest(ValueError):
    pass


def error_type(code: int) -> str:
    return {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 429: "rate_limit_error", 503: "overloaded_error",
            529: "overloaded_error"}.get(code, "api_error")


def new_error(code: int, message: str) -> dict:
    """anthropic.NewError."""
    return {"type": "error", "error": {"type": error_type(code), "message": message},
            "request_id": "req_" + os.urandom(12).hex()}


def message_id() -> str:
    return "msg_" + os.urandom(12).hex()


def validate(req: Any) -> None:
    """AnthropicMessagesMiddleware's checks (400s)."""
    if not isinstance(req, dict):
        raise BadRequest("json: cannot unmarshal into Go value of type anthropic.MessagesRequest")
    if not req.get("model"):
        raise BadRequest("model is required")
    mt = req.get("max_tokens")
    if not isinstance(mt, (int, float)) or isinstance(mt, bool) or mt <= 0:
        raise BadRequest("max_tokens is required and must be positive")
    if not req.get("messages"):
        raise BadRequest("messages is required")
    for m in req["messages"]:
        if not isinstance(m, dict):
            raise BadRequest("invalid message format")
        c = m.get("content")
        if isinstance(c, list):
            for b in c:
                if not isinstance(b, dict):
                    raise BadRequest("invalid content block format")
                if b.get("type") == "tool_use":
                    if not b.get("id"):
                        raise BadRequest("tool_use block missing required 'id' field")
                    if not b.get("name"):
                        raise BadRequest("tool_use block missing required 'name' field")


def _blocks(content) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)


def latest_user_text(messages: list[dict]) -> str:
    for m in reversed(messages):
        if m.get("role") != "user":
            continue
        texts = [b.get("text") or "" for b in _blocks(m.get("content")) if b.get("type") == "text"]
        text = "\n".join(_REMINDER.sub("", t) for t in texts)
        if text.strip():
            return text
    return ""


def has_tool_result(messages: list[dict]) -> bool:
    return any(b.get("type") == "tool_result" for m in messages for b in _blocks(m.get("content")))


def requested_tool(req: dict) -> dict | None:
    tools = [t for t in (req.get("tools") or []) if isinstance(t, dict) and t.get("name")]
    if not tools:
        return None
    msgs = req.get("messages") or []
    if has_tool_result(msgs):
        return None
    text = latest_user_text(msgs)
    best = None
    for t in tools:
        m = re.search(r"(?<![A-Za-z0-9_])" + re.escape(t["name"]) + r"(?![A-Za-z0-9_])", text)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), t)
    return best[1] if best else None


def _fill(schema: dict, snippet: str | None):
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if t == "string":
        return snippet if snippet is not None else FILLER_WORD
    if t == "integer":
        return 1
    if t == "number":
        return 1
    if t == "boolean":
        return False
    if t == "array":
        return []
    if t == "object":
        return {}
    return snippet if snippet is not None else FILLER_WORD


def tool_input(tool: dict, user_text: str) -> dict:
    """Required properties get the first backtick-quoted snippet (or a filler word); a quoted
    `name=value` sets that property explicitly, optional ones included (a test-double
    affordance, e.g. `subagent_type=quick` to make Claude Code start a given subagent)."""
    schema = tool.get("input_schema") or {}
    props = schema.get("properties") or {}
    snippets = re.findall(r"`([^`]+)`", user_text)
    assigned = dict(s.split("=", 1) for s in snippets if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", s))
    plain = [s for s in snippets if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", s)]
    snippet = plain[0] if plain else None
    out = {}
    for name in schema.get("required") or []:
        out[name] = _fill(props.get(name) or {}, snippet)
    out.update({k: v for k, v in assigned.items() if k in props})
    return out


def estimate_tokens(obj) -> int:
    n = len(json.dumps(obj, ensure_ascii=False)) if not isinstance(obj, str) else len(obj)
    return max(1, (n + 3) // 4)


def answer_text(model: str) -> str:
    return f"Hello from {model} (ollama stand-in)"


def tool_call_id(req: dict) -> str:
    h = hashlib.sha256(json.dumps(req.get("messages"), sort_keys=True, default=str).encode()).hexdigest()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "call_" + "".join(alphabet[int(h[i * 2:i * 2 + 2], 16) % 36] for i in range(8))


def plan(req: dict) -> dict:
    """What to answer: {'text': str | None, 'tool': (id, name, input) | None, usage…}."""
    input_tokens = estimate_tokens({k: req.get(k) for k in ("system", "messages", "tools")})
    tool = requested_tool(req)
    if tool is not None:
        args = tool_input(tool, latest_user_text(req.get("messages") or []))
        out_tokens = estimate_tokens(args)
        return {"text": None, "tool": (tool_call_id(req), tool["name"], args), "input_tokens": input_tokens,
                "output_tokens": out_tokens, "stop_reason": "tool_use"}
    text = answer_text(req.get("model", ""))
    return {"text": text, "tool": None, "input_tokens": input_tokens, "output_tokens": estimate_tokens(text),
            "stop_reason": "end_turn"}


def response(msg_id: str, model: str, p: dict) -> dict:
    """anthropic.ToMessagesResponse."""
    content = []
    if p["text"]:
        content.append({"type": "text", "text": p["text"]})
    if p["tool"]:
        tid, name, args = p["tool"]
        content.append({"type": "tool_use", "id": tid, "name": name, "input": args})
    return {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": p["stop_reason"],
            "usage": {"input_tokens": p["input_tokens"], "output_tokens": p["output_tokens"]}}


def stream_events(msg_id: str, model: str, p: dict, delta_input_tokens: bool) -> list[tuple[str, dict]]:
    """anthropic.StreamConverter's event sequence for one answer."""
    ev: list[tuple[str, dict]] = [("message_start", {
        "type": "message_start",
        "message": {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
                    "usage": {"input_tokens": p["input_tokens"], "output_tokens": 0}},
    })]
    index = 0
    if p["text"]:
        ev.append(("content_block_start", {"type": "content_block_start", "index": index,
                                           "content_block": {"type": "text", "text": ""}}))
        words = p["text"].split(" ")
        chunks = [" ".join(words[:2]), " " + " ".join(words[2:])] if len(words) > 2 else [p["text"]]
        for c in chunks:
            ev.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                               "delta": {"type": "text_delta", "text": c}}))
        ev.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    if p["tool"]:
        tid, name, args = p["tool"]
        ev.append(("content_block_start", {"type": "content_block_start", "index": index,
                                           "content_block": {"type": "tool_use", "id": tid, "name": name,
                                                             "input": {}}}))
        from .goformat import go_json

        ev.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                           "delta": {"type": "input_json_delta",
                                                     "partial_json": go_json(args, sort_keys=True)}}))
        ev.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    usage = {"output_tokens": p["output_tokens"]}
    if delta_input_tokens:
        usage = {"input_tokens": p["input_tokens"], "output_tokens": p["output_tokens"]}
    ev.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": p["stop_reason"]},
                                 "usage": usage}))
    ev.append(("message_stop", {"type": "message_stop"}))
    return ev
